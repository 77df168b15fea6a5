/*
 * cerebelum/bus.h - NATS JetStream triggers (docs/bus.md).
 *
 * A trigger is data: which stream and durable pull consumer to read, which
 * subject, which blueprint to start, an inputs template over the message,
 * an optional for_each over an array in the message, and the idempotency
 * key (the Nats-Msg-Id header, the stream sequence, or a path into the
 * message's data). Triggers are stored in the engine's database
 * (cbm_trigger_put and friends, which work in every build); a bus
 * (cbm_bus_*, which needs a build with libnats) runs every stored trigger
 * on its own thread against one NATS server.
 *
 * Exactly once: each message starts its executions with the idempotency
 * key "trig:<trigger>:<key>[:<item index>]", waits until the start is
 * durable (created or already existing both count), and only then acks it
 * with a synchronous ack; a message redelivered after a crash or a lost ack
 * lands on the executions that exist. Bad data is recorded
 * (cbm_trigger_failures) and terminated; while the store is down messages
 * are nak'ed with a delay.
 *
 * Threads: every function may be called from any thread. Ownership as in
 * cerebelum.h.
 */
#ifndef CEREBELUM_BUS_H
#define CEREBELUM_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cerebelum/cerebelum.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Validate and store trigger @p json (replacing the one of that name).
 *  CBM_EJSON, CBM_EINVAL ("trigger 'N': field: problem"), store errors.
 *  @p version_out (may be NULL) receives the SHA-256 of its canonical JSON;
 *  @p *changed (may be NULL) is false when that version was stored already.
 *  A running bus picks the change up within a few seconds. */
CBM_EXTERN int cbm_trigger_put(cbm_engine_t *e, const char *json, char version_out[65],
                               bool *changed, cbm_error_t *err);

/** A stored trigger. */
typedef struct cbm_trigger_info {
    char *name;
    char *version;
    char *definition;        /**< canonical JSON */
    int64_t updated_at_us;
} cbm_trigger_info_t;

/** Every stored trigger, by name; *out (NULL when *n is 0) is freed with
 *  cbm_trigger_infos_free. */
CBM_EXTERN int cbm_trigger_list(cbm_engine_t *e, cbm_trigger_info_t **out, size_t *n,
                                cbm_error_t *err);
CBM_EXTERN void cbm_trigger_infos_free(cbm_trigger_info_t *t, size_t n);

/** Delete trigger @p name (CBM_ENOTFOUND when there is none). A running bus
 *  stops it within a few seconds; its durable consumer stays on the server. */
CBM_EXTERN int cbm_trigger_delete(cbm_engine_t *e, const char *name, cbm_error_t *err);

/** A message a trigger refused as bad data (and terminated). */
typedef struct cbm_trigger_failure {
    int64_t id;
    char *trigger, *stream, *subject;
    int64_t seq;             /**< stream sequence */
    char *reason;
    char *data;              /**< the first 1 KiB of the message's data */
    int64_t at_us;
} cbm_trigger_failure_t;

/** The newest @p limit (0: 100) failures of @p trigger (NULL: all), newest
 *  first; free with cbm_trigger_failures_free. */
CBM_EXTERN int cbm_trigger_failures(cbm_engine_t *e, const char *trigger, size_t limit,
                                    cbm_trigger_failure_t **out, size_t *n, cbm_error_t *err);
CBM_EXTERN void cbm_trigger_failures_free(cbm_trigger_failure_t *f, size_t n);

/** What the bus running a trigger last reported (every 2 s, to the
 *  database, so any process can read it). */
typedef struct cbm_trigger_health {
    char *trigger;
    char *process;           /**< "host:pid" of the serve running it */
    char *state;             /**< "starting", "fetching", "error" */
    char *error;             /**< the last problem, "" when none */
    int wait_ms;             /**< its fetch wait */
    int64_t last_fetch_ms_ago, reported_ms_ago;
    int64_t messages, started, existing, failures, naks;
    /** When it last reported it had not fetched for three fetch waits, or
     *  it has not reported for three report periods (6 s: the process is
     *  gone): nobody is consuming. */
    bool stale;
} cbm_trigger_health_t;

/** The reports of every trigger that has run, by name (deleted ones
 *  included); free with cbm_trigger_healths_free. */
CBM_EXTERN int cbm_trigger_health_list(cbm_engine_t *e, cbm_trigger_health_t **out, size_t *n,
                                       cbm_error_t *err);
CBM_EXTERN void cbm_trigger_healths_free(cbm_trigger_health_t *h, size_t n);

/** Was this library built with NATS (libnats)? Without it cbm_bus_create
 *  answers CBM_EINVAL "built without NATS". */
CBM_EXTERN bool cbm_bus_available(void);

/** A bus: the stored triggers of one engine running against one NATS
 *  server (opaque). */
typedef struct cbm_bus cbm_bus_t;

typedef struct cbm_bus_opts {
    const char *url;         /**< "nats://host:port" (required) */
} cbm_bus_opts_t;

/**
 * Connect to NATS (with reconnects: the connection comes back by itself)
 * and start a thread per stored trigger, on a started engine (which must
 * outlive the bus). Each trigger's stream is created when the definition
 * gives stream_subjects and it is missing; its durable consumer is created
 * when missing, then bound by name. A trigger that cannot start (no such
 * stream, say) is retried and shows in cbm_bus_health. Triggers put or
 * deleted later are picked up within a few seconds.
 * Errors: CBM_EINVAL (no URL, built without NATS), CBM_EUNAVAIL (NATS
 * cannot be reached), store errors.
 */
CBM_EXTERN int cbm_bus_create(cbm_bus_t **out, cbm_engine_t *e, const cbm_bus_opts_t *opts,
                              cbm_error_t *err);

/** Health as JSON text (malloc'd; free()): {"ok": bool, "connected": bool,
 *  "triggers": [{"name", "version", "state", "last_fetch_ms_ago",
 *  "fetch_wait_ms", "stale", "messages", "started", "existing", "failures",
 *  "naks", "error"}]}. A trigger is stale, and ok false, when its consumer
 *  has not fetched for three fetch waits. */
CBM_EXTERN int cbm_bus_health(cbm_bus_t *bus, char **json_out);

/** Stop every trigger thread (each finishes the message it holds), close
 *  the connection and free. NULL is a no-op. */
CBM_EXTERN void cbm_bus_destroy(cbm_bus_t *bus);

#ifdef __cplusplus
}
#endif
#endif
