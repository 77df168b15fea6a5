/*
 * outbox.h - the outbox publisher: sends the database's outbox rows
 * (cbm_outbox, migration 009) to NATS JetStream, and the outbox's health.
 *
 * Rows are written by the group commit itself (store/pg/store_pg_append.c)
 * whenever the database's outbox is on, whichever process decides; this
 * module only drains them. One publisher per database holds a PostgreSQL
 * advisory lock; a second one started against the same database waits,
 * taking over when the first one's session ends. The publisher runs on its
 * own thread with its own database connection and NATS connection, never on
 * an engine loop. Contract and argument: docs/outbox.md.
 *
 * The publisher needs libnats (meson feature `nats`, CBM_HAVE_NATS); without
 * it bus_outbox_start returns CBM_ESTATE and rows are still written (and
 * wait) when the outbox is on. bus_outbox_health needs only the store.
 */
#ifndef CBM_BUS_OUTBOX_H
#define CBM_BUS_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cerebelum/error.h"
#include "store/store.h"

typedef struct bus_outbox bus_outbox_t;

/* Defaults for the fields left 0/NULL. */
#define BUS_OUTBOX_STREAM_DEFAULT "CEREBELUM_EXECUTIONS"
#define BUS_OUTBOX_MAX_PAYLOAD_DEFAULT 65536
#define BUS_OUTBOX_DUP_WINDOW_MS_DEFAULT (10 * 60 * 1000)

typedef struct bus_outbox_config {
    const char *db_url;        /* required: libpq conninfo or URL */
    const char *nats_url;      /* required: e.g. nats://127.0.0.1:4222 */
    const char *subject;       /* template with {blueprint} and {event};
                                  NULL = CBM_OUTBOX_SUBJECT_DEFAULT. Gives
                                  the subjects of a stream created here
                                  (its tokens before the first placeholder,
                                  then ">"), so pass the database's template
                                  even without configure */
    int64_t max_payload;       /* bytes of an event payload kept; 0 = default;
                                  < 0 = keep none (always the marker) */
    const char *stream;        /* stream created if absent; NULL = default */
    int64_t dup_window_ms;     /* the Duplicates window a created stream gets,
                                  and below which an existing one is warned
                                  about; 0 = 10 min */
    size_t batch;              /* rows read per round; 0 = 256 */
    int64_t poll_ms;           /* idle poll interval; 0 = 1000 */
    int64_t ack_wait_ms;       /* PubAck timeout; 0 = 2000 */
    bool configure;            /* also turn the database's outbox on with
                                  subject and max_payload (what `serve --nats`
                                  does); false: use the database's setting */
} bus_outbox_config_t;

/*
 * Start the publisher: turns the outbox on when cfg->configure, then starts
 * the thread, which connects (retrying with back-off while PostgreSQL or NATS
 * is down), ensures the stream and checks its duplicate window (a warning
 * says what a short one means), takes the advisory lock, and drains. cfg's
 * strings are copied. *out is owned by the caller, freed by bus_outbox_stop.
 * Returns CBM_ESTATE without libnats, CBM_EINVAL for a missing URL, and the
 * store's error when configure fails. Any thread.
 */
int bus_outbox_start(const bus_outbox_config_t *cfg, bus_outbox_t **out, cbm_error_t *err);

/* Stop the thread (finishing the round in flight: rows not yet acknowledged
 * stay and are published by the next publisher), close its connections and
 * free o. NULL is a no-op. Does not turn the database's outbox off. */
void bus_outbox_stop(bus_outbox_t *o);

/* Wake the publisher now (after a commit), instead of at its next poll.
 * Thread-safe, cheap, callable from a committer thread. */
void bus_outbox_wake(bus_outbox_t *o);

/* What the publisher has done so far (for tests, benchmarks and health). */
typedef struct bus_outbox_counters {
    bool holds_lock;           /* this one is the database's publisher */
    bool nats_connected;
    uint64_t published;        /* rows acknowledged and deleted */
    uint64_t duplicates;       /* of those, acknowledged as duplicates */
    uint64_t failures;         /* publishes failed or timed out (retried) */
    int64_t dup_window_ms;     /* the stream's Duplicates window (0 = unknown) */
} bus_outbox_counters_t;
void bus_outbox_counters(bus_outbox_t *o, bus_outbox_counters_t *out);

/*
 * The outbox's health in one line for `cerebelum bus` and the server's
 * health answer, from the database (so it works with no publisher in this
 * process): "outbox: off", "outbox: on, 0 rows waiting", or, when the oldest
 * row is older than threshold_ms, "outbox: STALE: 1203 rows waiting, oldest
 * 95.2 s (threshold 60 s): is a publisher (serve --nats) running and NATS
 * reachable?". *stale (may be NULL) is set accordingly. line is always
 * NUL-terminated. Returns 0 or the store's error (line then says so).
 */
int bus_outbox_health(store_t *s, int64_t threshold_ms, char *line, size_t len, bool *stale,
                      cbm_error_t *err);

#endif
