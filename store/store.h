/*
 * store.h - the store port: what the engine needs from durable storage.
 *
 * A store handle wraps ONE database connection and is used by one thread at a
 * time; every call blocks. The engine never calls these on its loop thread: a
 * committer thread owns one handle for writes (engine/committer.c), and the
 * SDK's read calls use their own handle under a mutex. Backends: store/pg/
 * (PostgreSQL via libpq). A SQLite backend can implement the same functions.
 *
 * Ownership: every out-parameter allocated by the store is owned by the caller
 * and freed with the matching *_free function below.
 */
#ifndef CBM_STORE_H
#define CBM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cerebelum/error.h"

typedef struct store store_t;

/* One event row. */
typedef struct store_event {
    char execution_id[37];   /* canonical lower-case UUID text */
    int64_t seq;             /* 1, 2, 3... per execution, no gaps */
    char *type;              /* e.g. "StepCompleted" */
    char *payload;           /* JSON text (an object) */
    int64_t recorded_at_us;  /* microseconds since the Unix epoch, set by the
                                engine from its (injectable) clock and stored
                                as given, so rebuilt state equals live state
                                (exact for |value| < 2^53 us, i.e. the years
                                1685 to 2255) */
} store_event_t;

/* The projection of an execution (cbm_executions). */
typedef struct store_execution {
    char id[37];
    char *blueprint;         /* blueprint name */
    char *version;           /* blueprint version (sha256 hex) */
    char *status;            /* running, sleeping, ..., completed, failed, cancelled */
    char *inputs;            /* JSON text */
    char *result;            /* JSON text or NULL */
    char *error;             /* JSON text or NULL */
    int64_t last_seq;
    int64_t created_at_us;
    int64_t updated_at_us;
    char *idempotency_key;   /* the key it was started with, or NULL */
    /* The execution's latest snapshot (cbm_snapshots), filled ONLY by
     * store_load_unfinished and store_load_execution, which then return just
     * the events with seq > snapshot_seq: snapshot is the JSON text exactly
     * as the engine wrote it (json, not jsonb), snapshot_seq the seq of the
     * last event it covers. NULL/0 when the execution has none, and always
     * NULL/0 from store_get_execution and store_list_executions. */
    char *snapshot;
    int64_t snapshot_seq;
} store_execution_t;

/* A durable timer row (cbm_timers): set and cleared by decisions, read back
 * by the scheduler with store_timers_due(). */
typedef struct store_timer {
    char execution_id[37];
    char *kind;              /* sleep, approval, signal, retry, timeout */
    char *key;               /* unique per execution, e.g. the step name */
    int64_t due_at_us;       /* microseconds since the Unix epoch; exact for
                                |value| < 2^53 like recorded_at_us */
} store_timer_t;

/* A remote task row (cbm_tasks): one attempt of a step that runs on a worker
 * polling its queue. The engine inserts it with the decision that schedules
 * the attempt and deletes it with the decision that ends the attempt
 * (completed, failed, timed out, cancelled...), so a row exists exactly while
 * the attempt is the step's current one and is running. */
typedef struct store_task {
    char execution_id[37];
    char *step;
    int attempt;
    char *queue;
    char *payload;           /* JSON text: the step's input */
    char *handler;           /* the handler the worker runs (NULL: the step) */
    char *blueprint;         /* the blueprint name (NULL: "") */
    char *requires;          /* JSON object of capabilities; NULL = {} */
    int64_t lease_ms;        /* lease a claim takes; 0 = the server's default */
    int64_t timeout_ms;      /* start-to-close limit shown to workers; 0 = none */
} store_task_t;

/* Names one task attempt of an execution (the decision's). */
typedef struct store_task_ref {
    char *step;
    int attempt;
} store_task_ref_t;

/*
 * One decision: everything one engine decision writes for ONE execution. It is
 * committed atomically, and a batch of decisions for DIFFERENT executions is
 * committed in one transaction (group commit).
 */
typedef struct store_decision {
    char execution_id[37];
    int64_t expected_seq;       /* last seq the engine saw; events[0].seq must
                                   be expected_seq + 1 (optimistic lock) */
    store_event_t *events;      /* nevents >= 1, seq contiguous */
    size_t nevents;

    /* Projection. When is_new, a cbm_executions row is inserted with
     * blueprint/version/inputs; otherwise the row is updated. status is always
     * set; result/error may be NULL (left NULL in the row). */
    bool is_new;
    const char *blueprint;
    const char *version;
    const char *inputs;
    const char *status;
    const char *result;
    const char *error;
    /* Only with is_new: the start's idempotency key (NULL = none). Unique per
     * blueprint (migration 004): if another execution of the same blueprint
     * holds it already, or an earlier decision of the same batch claims it,
     * this decision is rejected with CBM_EEXIST and the rest of the batch
     * commits; store_find_by_key then names the holder. */
    const char *idempotency_key;

    store_timer_t *timers_set;  /* upserted (execution_id, key); of several
                                   with one key the last wins */
    size_t ntimers_set;
    char **timers_cleared;      /* keys deleted for this execution; clears
                                   apply before sets, so a key both cleared
                                   and set ends up set (re-armed) */
    size_t ntimers_cleared;
    store_task_t *tasks;        /* inserted; a duplicate (execution_id, step,
                                   attempt) fails the whole batch (CBM_ESTORE) */
    size_t ntasks;
    store_task_ref_t *tasks_done; /* deleted (those that exist), leased or not:
                                     attempts this decision ended */
    size_t ntasks_done;
    /* The execution_id members of events, timers_set and tasks are not read:
     * the decision's execution_id is used for every row. */

    /* Optional snapshot of the execution's state, for long histories. NULL =
     * none (the stored snapshot, if any, is left as it is). Otherwise a JSON
     * value (stored as json: the text is kept byte for byte) that replaces the
     * execution's snapshot row in the same statement, so it commits or not
     * with the decision's events. snapshot_seq is the seq of the last event
     * it covers: 1 <= snapshot_seq <= the decision's last event seq (an
     * engine invariant, asserted). The row is never deleted, not even when
     * the execution ends: it is one row per execution, and it keeps
     * store_load_execution of a finished execution short. */
    const char *snapshot;
    int64_t snapshot_seq;

    /* Shard fencing (migration 010): > 0, the token of the execution's
     * shard lease this engine loaded (or created) it under; the commit is
     * refused for this decision alone (result_code CBM_EFENCED, the rest of
     * the batch commits) unless the store's fence engine (store_set_fence)
     * still holds the shard with that token. 0: no lease needed (outside
     * decisions, starts of executions another engine will run). */
    int64_t shard_token;

    /* Out: 0 if committed, CBM_ECONFLICT if (execution_id, seq) already
     * existed or the projection's last_seq was not expected_seq (stale
     * expected_seq; also is_new for an execution that exists),
     * CBM_ENOTFOUND if !is_new and the execution does not exist, CBM_EEXIST
     * if is_new and its idempotency_key is taken (see above), another
     * CBM_E* (the function's return value) when the batch as a whole failed. */
    int result_code;
} store_decision_t;

typedef struct store_list_filter {
    const char *status;       /* NULL = any */
    const char *blueprint;    /* NULL = any */
    const char *after_id;     /* keyset cursor: executions created after this
                                 one (ordered by created_at, id); NULL = start.
                                 An id that names no execution gives
                                 CBM_ENOTFOUND, a malformed one CBM_EINVAL */
    size_t limit;             /* 0 = 100 */
    bool newest_first;        /* order by (created_at, id) descending; the
                                 cursor then gives executions created BEFORE
                                 after_id. Same indexes, scanned backwards */
} store_list_filter_t;

/* Open a connection (libpq conninfo or postgres:// URL). Applies nothing.
 * Returns CBM_EUNAVAIL with PostgreSQL's message when it cannot connect.
 * Defaults connect_timeout=10 and TCP keepalives (30 s idle); the URL may
 * override them. Needs PostgreSQL 14 or newer. */
int store_open(const char *url, store_t **out, cbm_error_t *err);
void store_close(store_t *s);

/* True when the connection is healthy; false after a connection loss.
 * store_reconnect() tries once to re-establish it. */
bool store_ok(store_t *s);
int store_reconnect(store_t *s, cbm_error_t *err);

/* Apply the versioned migrations (store/migrations/NNN_*.sql) that are not yet
 * recorded in cbm_schema_version, each in a transaction, under an advisory
 * lock so concurrent engines do not race. Idempotent. */
int store_migrate(store_t *s, cbm_error_t *err);

/*
 * Commit n decisions (for n distinct executions) in ONE transaction. The
 * number of SQL statements does not grow with n (multi-row, unnest arrays).
 * Returns 0 when every decision committed. If the batch fails because one
 * decision conflicts, the store retries the others without it, so a conflict
 * never blocks other executions: each decision's result_code says what
 * happened to it. Returns CBM_EUNAVAIL on connection loss: then NO decision is
 * known to be committed, and the caller must check with store_last_seq()
 * after reconnecting (the commit may or may not have happened).
 * When some decisions were rejected one by one and all the others committed,
 * returns CBM_ECONFLICT (or, if no rejection was a conflict, CBM_ENOTFOUND
 * when one was for an unknown execution, else CBM_EEXIST: idempotency keys
 * taken).
 * Any other failure (CBM_ESTORE: invalid JSON, a duplicate task...) fails
 * the whole batch: nothing is written, every result_code is set to it.
 */
int store_append(store_t *s, store_decision_t *const *ds, size_t n, cbm_error_t *err);

/* Last committed seq of an execution (0 if it has no events). */
int store_last_seq(store_t *s, const char *execution_id, int64_t *out, cbm_error_t *err);

/* Events of an execution with seq >= from_seq, in order. Always the events
 * themselves: snapshots are not consulted. */
int store_read_history(store_t *s, const char *execution_id, int64_t from_seq,
                       store_event_t **out, size_t *n, cbm_error_t *err);

/* Projection of one execution; CBM_ENOTFOUND if none (*out = NULL), CBM_EINVAL
 * if id is not a UUID. Free with store_executions_free(*out, 1). JSON members
 * are PostgreSQL's jsonb rendering (keys sorted, ", " and ": "), not the
 * bytes given. */
int store_get_execution(store_t *s, const char *id, store_execution_t **out, cbm_error_t *err);

/* Page of executions matching filter, ordered by (created_at, id) (or the
 * reverse with f->newest_first), using an index (keyset pagination, no
 * OFFSET). */
int store_list_executions(store_t *s, const store_list_filter_t *f,
                          store_execution_t **out, size_t *n, cbm_error_t *err);

/* Every execution whose status is not terminal (completed, failed,
 * cancelled), with its events, for resurrection, read from one snapshot
 * (REPEATABLE READ, READ ONLY). execs[i]'s events are events[first[i] ..
 * first[i]+count[i]): all of them when execs[i].snapshot is NULL, else only
 * those with seq > execs[i].snapshot_seq (the state is the snapshot, then
 * these events applied). CBM_ESTORE, naming the execution, when some
 * execution's events do not run exactly from snapshot_seq + 1 to last_seq
 * (rows removed behind the store's back). */
typedef struct store_unfinished {
    store_execution_t *execs;
    size_t nexecs;
    store_event_t *events;
    size_t nevents;
    size_t *first;
    size_t *count;
} store_unfinished_t;
int store_load_unfinished(store_t *s, store_unfinished_t *out, cbm_error_t *err);
/* The same for the executions whose projection is 'running' (a step is
 * scheduled: a handler or a worker may be running it), and only those:
 * what an engine must hold from its start. Executions that only wait
 * (sleeping, awaiting_approval, awaiting_signal, awaiting_child) stay in the
 * store until a timer or a decision brings them in. */
int store_load_running(store_t *s, store_unfinished_t *out, cbm_error_t *err);
/* The same for the executions whose ids are given (any status; ids that do
 * not exist are simply absent from out), from one snapshot, in two queries
 * whatever n is: how the engine wakes many hibernated executions at once. */
int store_load_executions(store_t *s, const char *const *ids, size_t n, store_unfinished_t *out,
                          cbm_error_t *err);
void store_unfinished_free(store_unfinished_t *u);

/*
 * One execution's projection and its history, from ONE consistent snapshot
 * (a REPEATABLE READ, READ ONLY transaction), for an engine that hibernated
 * the execution or decides for it in another process (approve, signal,
 * cancel). Like store_load_unfinished, when the execution has a snapshot
 * (*x)->snapshot/snapshot_seq are set and *events holds only the events with
 * seq > snapshot_seq (possibly none: *events = NULL, *n = 0); without one,
 * every event. Terminal executions load too. CBM_ENOTFOUND when there is no
 * such execution, CBM_EINVAL when id is not a UUID, CBM_ESTORE when the
 * events do not run exactly from snapshot_seq + 1 to last_seq (checked, as
 * by store_load_unfinished); on any failure *x = NULL,
 * *events = NULL, *n = 0. Free with store_executions_free(*x, 1) and
 * store_events_free(*events, *n).
 */
int store_load_execution(store_t *s, const char *id, store_execution_t **x,
                         store_event_t **events, size_t *n, cbm_error_t *err);

/*
 * Durable timers with due_at_us <= until_us, ordered by (due_at, execution_id,
 * key), at most limit of them (limit 0 gives none, without a query). One
 * index range scan of cbm_timers_due, no sort, whatever the table's size; a
 * scheduler pages through a backlog by calling again after firing (firing
 * clears or re-arms each timer in a decision). until_us >= 2^53 means every
 * timer, <= -2^53 none. *out is NULL when *n is 0; free with
 * store_timers_free(*out, *n).
 */
int store_timers_due(store_t *s, int64_t until_us, size_t limit, store_timer_t **out, size_t *n,
                     cbm_error_t *err);
/*
 * The same range after a cursor, for a scheduler that pages through a
 * window without reading it again: with after->key set, only timers whose
 * (due_at, execution_id, key) come after (after->due_at_us,
 * after->execution_id, after->key) (a keyset: one index range scan that
 * starts there); with after->key NULL, only those with due_at >
 * after->due_at_us (all of that time were read). after NULL is
 * store_timers_due. after->due_at_us must be within +-2^53 (CBM_EINVAL).
 */
int store_timers_page(store_t *s, const store_timer_t *after, int64_t until_us, size_t limit,
                      store_timer_t **out, size_t *n, cbm_error_t *err);
void store_timers_free(store_timer_t *t, size_t n);

/* The seq of the SignalReceived event of execution_id that carries signal
 * idempotency key `key` (its payload's "key": cbm_execution_signal_key), or
 * *seq = 0 when there is none. Reads cbm_events itself, so events covered by
 * a snapshot count too: one range scan of the primary key (execution_id).
 * Exact together with the optimistic lock: a signal that commits after
 * this read moves the execution's last seq, so a decision appended with the
 * seq read before it is refused (CBM_ECONFLICT) and made again. */
int store_signal_key_seq(store_t *s, const char *execution_id, const char *key, int64_t *seq,
                         cbm_error_t *err);

/* The execution of blueprint started with idempotency key, as
 * store_get_execution returns it; CBM_ENOTFOUND (*out = NULL) if none. */
int store_find_by_key(store_t *s, const char *blueprint, const char *key,
                      store_execution_t **out, cbm_error_t *err);

/* Blueprints (cbm_blueprints): keyed by (name, version); inserting an
 * existing (name, version) is a no-op (it does not make that version the
 * latest again either), and *inserted (if not NULL) says which it was: true
 * when this call stored the row. get with version NULL returns the
 * latest registered version of name; CBM_ENOTFOUND if none. *version_out and
 * *json_out (either pointer may be NULL if not wanted) are malloc'd, freed
 * with free(). The definition column is jsonb, so json_out is PostgreSQL's
 * rendering of it (keys reordered, whitespace normalised), not the canonical
 * bytes that were hashed: parse it, do not re-hash it. */
int store_put_blueprint(store_t *s, const char *name, const char *version,
                        const char *canonical_json, bool *inserted, cbm_error_t *err);
int store_get_blueprint(store_t *s, const char *name, const char *version,
                        char **version_out, char **json_out, cbm_error_t *err);

/* ---- Councils (migration 007; store_pg_councils.c) ------------------------
 *
 * Councils as data (docs/deliberation.md, section 1; docs/councils.md): rows
 * (name, version, definition) of cbm_councils, where definition is the
 * canonical JSON the caller validated (engine/council.h) and version its
 * SHA-256. The text is kept as given (a text column, not jsonb), so what is
 * read back hashes to its version. A delete is soft: it hides every version
 * of the name from "latest" and from lists, and leaves each readable by its
 * version. Each call is one statement, atomic on its own; none holds locks
 * after it returns.
 */

/* A council row. The strings are malloc'd; free with store_councils_free. */
typedef struct store_council {
    char *name;
    char *version;
    char *definition;        /* the canonical JSON; NULL from store_council_list */
    char *role;              /* the definition's role */
    int agents;              /* the length of the definition's agents */
    int64_t created_at_us;   /* when this version was first stored */
    int64_t put_at_us;       /* when a put last made it live */
    int64_t deleted_at_us;   /* 0: live; else when it was deleted */
} store_council_t;

/*
 * Put version of council name with its canonical definition. Absent: it is
 * inserted. Present but deleted: it is live again and becomes the name's
 * latest version (put_at is set). Present and live: nothing changes, not
 * even which version is the latest (as for blueprints). *created (may be
 * NULL) is true when this call made the version live (inserted or brought
 * back), false when it was live already. Concurrent puts of one version are
 * safe (ON CONFLICT): exactly one of them reports created. CBM_EINVAL for a
 * NULL argument; CBM_ESTORE, CBM_EUNAVAIL as any call.
 */
int store_council_put(store_t *s, const char *name, const char *version, const char *definition,
                      bool *created, cbm_error_t *err);

/*
 * One version of council name (deleted or not: a running deliberation may
 * have pinned it; deleted_at_us says), or with version NULL the latest live
 * one (the newest put_at). *out is one row, owned by the caller
 * (store_councils_free(*out, 1)); NULL on any error. CBM_ENOTFOUND: "no
 * council named 'N'" when version is NULL and no version is live, "council
 * 'N' has no version V" otherwise.
 */
int store_council_get(store_t *s, const char *name, const char *version,
                      store_council_t **out, cbm_error_t *err);

/* The latest live version of every council, by name, without definitions
 * (role and agents are read from them). Councils are few: one query, no
 * paging. *out is NULL when *n is 0; free with store_councils_free. */
int store_council_list(store_t *s, store_council_t **out, size_t *n, cbm_error_t *err);

/* Soft-delete every live version of council name. CBM_ENOTFOUND ("no
 * council named 'N'") when none is live; deleting again is that too. */
int store_council_delete(store_t *s, const char *name, cbm_error_t *err);

void store_councils_free(store_council_t *c, size_t n);

/* ---- Triggers (migration 008; store_pg_triggers.c) ------------------------
 *
 * NATS triggers as data (docs/bus.md): one row per name in cbm_triggers with
 * the canonical definition bus/trigger.h made and its version; a delete is
 * soft. Refused messages go to cbm_trigger_failures, once per (trigger,
 * stream, seq). Each call is one statement.
 */
typedef struct store_trigger {
    char *name;
    char *version;
    char *definition;
    int64_t updated_at_us;
} store_trigger_t;

/* Insert or replace trigger name (a deleted one comes back). *changed (may
 * be NULL): false when that version was live already (nothing changed). */
int store_trigger_put(store_t *s, const char *name, const char *version, const char *definition,
                      bool *changed, cbm_error_t *err);
/* Every live trigger, by name. *out NULL when *n is 0; store_triggers_free. */
int store_trigger_list(store_t *s, store_trigger_t **out, size_t *n, cbm_error_t *err);
/* CBM_ENOTFOUND ("no trigger named 'N'") when none is live. */
int store_trigger_delete(store_t *s, const char *name, cbm_error_t *err);
void store_triggers_free(store_trigger_t *t, size_t n);

typedef struct store_trigger_failure {
    int64_t id;
    char *trigger, *stream, *subject, *reason, *data;
    int64_t seq;
    int64_t at_us;
} store_trigger_failure_t;

/* Record a refused message; a second record of (trigger, stream, seq) is a
 * no-op. data is cut to 1 KiB and made valid UTF-8 by the caller. */
int store_trigger_failure_add(store_t *s, const store_trigger_failure_t *f, cbm_error_t *err);
/* The newest limit failures (of trigger, or all when NULL), newest first. */
int store_trigger_failure_list(store_t *s, const char *trigger, size_t limit,
                               store_trigger_failure_t **out, size_t *n, cbm_error_t *err);
void store_trigger_failures_free(store_trigger_failure_t *f, size_t n);

/* A running trigger's report (cbm_trigger_health). */
typedef struct store_trigger_health {
    char *trigger, *process, *state, *error;
    int wait_ms;
    int64_t last_fetch_ms_ago;  /* put: how long ago; list: computed by the database */
    int64_t messages, started, existing, failures, naks;
    int64_t reported_ms_ago;    /* list only */
} store_trigger_health_t;

/* Upsert the report of h->trigger. */
int store_trigger_health_put(store_t *s, const store_trigger_health_t *h, cbm_error_t *err);
/* Every report, by trigger. */
int store_trigger_health_list(store_t *s, store_trigger_health_t **out, size_t *n,
                              cbm_error_t *err);
void store_trigger_healths_free(store_trigger_health_t *h, size_t n);

/*
 * Remote task queue (cbm_tasks). Rows are written and deleted only by
 * decisions (store_append); these calls lease them. A store_t used for these
 * may run with synchronous_commit off (store_tasks_relaxed): a lease lost in a
 * crash only means the task is handed out again, at least once delivery.
 */

/* A task as a worker receives it. */
typedef struct store_claimed {
    int64_t id;                /* cbm_tasks.id */
    char execution_id[37];
    char *step;
    char *handler;
    char *queue;
    char *blueprint;
    char *payload;             /* JSON text */
    int attempt;
    int64_t lease_ms;          /* the lease taken */
    int64_t timeout_ms;
} store_claimed_t;
void store_claimed_clear(store_claimed_t *c);

/* Commit this connection's writes without waiting for the WAL flush. */
int store_tasks_relaxed(store_t *s, cbm_error_t *err);

/*
 * Lease the oldest unleased task of one of queues[0..nq) whose requires are
 * all among capabilities (a JSON object of strings; NULL = {}), to worker,
 * for the task's lease_ms (default_lease_ms when it has none). Skips rows
 * other transactions hold (FOR UPDATE SKIP LOCKED), so concurrent claims
 * never wait for each other or get the same task. With want (sticky
 * routing) only that attempt is considered. *found is false when there was
 * none (out untouched).
 */
int store_task_claim(store_t *s, const char *worker, const char *const *queues, size_t nq,
                     const char *capabilities, int64_t default_lease_ms,
                     const store_task_t *want, store_claimed_t *out, bool *found,
                     cbm_error_t *err);

/* Extend the leases worker holds among ids[0..n) by each task's lease
 * (default_lease_ms when none). *held (malloc'd, NULL when *nheld is 0)
 * receives the ids still held by worker; the others it must give up. */
int store_task_heartbeat(store_t *s, const char *worker, const int64_t *ids, size_t n,
                         int64_t default_lease_ms, int64_t **held, size_t *nheld,
                         cbm_error_t *err);

/* Give back a task that was claimed but could not be handed over (the poll
 * went away): unleased at once, its attempt not counted. */
int store_task_unclaim(store_t *s, int64_t id, const char *worker, cbm_error_t *err);

/*
 * One lease of grace, taken once when a server starts, before its first
 * expiry scan: every lease a worker holds is made to run at least one lease
 * (its task's lease_ms, else default_lease_ms) plus extra_ms from now, those
 * that ran out while no server ran included. A worker still running a task
 * across the restart (an LLM call of minutes) can then reconnect (extra_ms
 * covers its reconnect back-off), register again, heartbeat and submit,
 * instead of the call being paid for a second time. *n: leases extended.
 */
int store_task_grace(store_t *s, int64_t default_lease_ms, int64_t extra_ms, size_t *n,
                     cbm_error_t *err);

/*
 * Leases that ran out (lease_expires_at <= now), at most limit, oldest
 * first; with worker != NULL instead every task that worker leases, expired
 * or not (it left). Each row returned is marked as being failed by the
 * engine (lease_owner "!expired" and 30 s more), so a scan a moment later
 * does not return it again while the engine's decision is in flight; if that
 * decision never comes (a crash) it is returned again 30 s later. *out
 * entries carry execution_id, step, attempt (and queue); free with
 * store_tasks_free.
 */
int store_task_expired(store_t *s, const char *worker, size_t limit, store_task_t **out,
                       size_t *n, cbm_error_t *err);
void store_tasks_free(store_task_t *t, size_t n);

void store_events_free(store_event_t *ev, size_t n);
void store_executions_free(store_execution_t *ex, size_t n);

/* ---- Engines and fencing (migration 006; store_pg_engines.c) -----------
 *
 * An engine that runs executions is an incarnation: a cbm_engines row and a
 * session advisory lock held by its "life" connection for as long as it
 * lives. Its committer's connection is fenced by its id: every store_append
 * there also locks the row FOR SHARE, in the same transaction, and fails
 * with CBM_EFENCED (SQLSTATE CB002; the whole batch, nothing written) when
 * the row is gone. A starting engine deletes the rows of dead incarnations
 * (store_engine_fence_dead) before it reads the unfinished executions, so a
 * dead engine's commit still in flight either lands before that read or
 * never.
 */

/* Name the connection in pg_stat_activity ("cerebelum <role>"), again after
 * every store_reconnect. */
void store_set_role(store_t *s, const char *role);

/* Commit this connection's decisions under engine_id's fence (NULL: none,
 * for decisions made outside an engine: approve, signal, cancel). */
void store_set_fence(store_t *s, const char *engine_id);

/* On the life connection: take a new incarnation's lock and insert its row.
 * Fills id_out and *key_out (for store_engine_relock). */
int store_engine_register(store_t *life, char id_out[37], int64_t *key_out, cbm_error_t *err);

/* Fence every other incarnation whose lock can be taken within grace_ms
 * (its session is gone): delete its row, waiting for a commit of its that
 * holds the row. *fenced says how many. Blocks as long as such a commit
 * does (a paused backend: until it resumes). */
int store_engine_fence_dead(store_t *life, const char *self, int grace_ms, size_t *fenced,
                            cbm_error_t *err);

/* Without blocking: is the life connection's session still there? */
bool store_life_ok(store_t *s);

/* After the life connection was re-established: take the lock again (waits
 * while another engine holds it, fencing us) and check the row. CBM_EFENCED
 * when it is gone. */
int store_engine_relock(store_t *life, const char *self, int64_t key, cbm_error_t *err);

/* Graceful stop: delete the incarnation's row. */
int store_engine_unregister(store_t *life, const char *self, cbm_error_t *err);

/* ---- Shards (migration 010; store_pg_shards.c) ---------------------------
 *
 * Every execution belongs to shard cbm_shard_of(id) of S (fixed when the
 * database was created: $CEREBELUM_SHARDS at the first migration, else 256).
 * cbm_shard_leases holds one row per shard: owner, expiry, and a fencing
 * token that grows at every change of owner. An engine runs only the
 * executions of the shards it holds (engine/shards.c), and its commits
 * check each decision's shard_token (store_decision_t). Expiry is judged by
 * the database's clock alone, so engines' clocks do not matter.
 */

/* S of this database. */
int store_shard_count(store_t *s, int *out, cbm_error_t *err);

/* The shard of an execution id: the same hash as cbm_shard_of (the last 32
 * bits of the UUID, modulo nshards). -1 for a malformed id. */
int store_shard_of(const char *id, int nshards);

/* Restrict this connection's store_load_running, store_timers_due/page,
 * store_orphans and store_stranded to executions of shards[0..n) (copied).
 * shards NULL: no restriction (the default). n 0 with shards non-NULL:
 * nothing at all. */
int store_set_shards(store_t *s, const int *shards, size_t n);

/* One lease this engine holds. */
typedef struct store_lease {
    int shard;
    int64_t token;
} store_lease_t;

/*
 * One round of an engine's lease manager, in one transaction:
 *   - renew every lease engine holds (expires = now + lease_ms) and mark
 *     the engine seen (cbm_engines.seen_at);
 *   - count the live engines (seen within lease_ms; this one included);
 *   - take up to `want` free or expired shards (FOR UPDATE SKIP LOCKED:
 *     a shard whose previous owner's commit still holds its row is left
 *     for a later round), each with token + 1.
 * want < 0: take none. *held (malloc'd, NULL when *nheld is 0; free())
 * receives every lease engine holds afterwards, by shard; *live the live
 * engines. CBM_EFENCED when engine's row is gone (it was found dead).
 */
int store_leases_round(store_t *s, const char *engine, int64_t lease_ms, int want,
                       store_lease_t **held, size_t *nheld, int *live, cbm_error_t *err);

/* Give up shards[0..n) if engine holds them (owner NULL, expired now; the
 * token stays, the next owner adds one). Waits for engine's own commits
 * holding those rows. */
int store_leases_release(store_t *s, const char *engine, const int *shards, size_t n,
                         cbm_error_t *err);

/* Wake-ups across processes: every commit that sets a "wake" timer row (a
 * decision for an execution made by a process that does not hold its
 * shard: a start, an approval, a signal, a child's end) notifies channel
 * cbm_wake with the execution id, at commit. An engine LISTENs on a
 * connection of its own (store_wake_listen), and store_wake_wait calls cb
 * with each id received, waiting at most timeout_ms for the first.
 * CBM_EUNAVAIL when the connection broke (reconnect, LISTEN again). */
int store_wake_listen(store_t *s, cbm_error_t *err);
int store_wake_wait(store_t *s, int64_t timeout_ms, void (*cb)(const char *id, void *arg),
                    void *arg, cbm_error_t *err);

/* A live or dead engine as `cerebelum engines` lists it. */
typedef struct store_engine_row {
    char id[37];
    char *host;
    int pid;
    int64_t started_at_us;
    int64_t seen_ms_ago;
    int nshards;              /* leases held and not expired */
    char *shards;             /* their numbers, "0-3,9" (ranges) */
} store_engine_row_t;

/* Every registered engine, oldest first, with the shards it holds. */
int store_engines_list(store_t *s, store_engine_row_t **out, size_t *n, cbm_error_t *err);
void store_engine_rows_free(store_engine_row_t *r, size_t n);

/* A sub-workflow's child whose parent has ended without it (a crash cut
 * the parent's cascade short): id, its parent, the parent's status. */
typedef struct store_orphan {
    char id[37];
    char parent[37];
    char parent_status[16];
} store_orphan_t;

/* Of the unfinished executions with an id after after_id (NULL: from the
 * first), in id order, look at the next `scan` of them (the partial index
 * of unfinished executions) and return those that are children of an
 * ended parent (*out, malloc'd, NULL when *n is 0; free with free()).
 * *last receives the id of the last one looked at ("" when none was left:
 * the walk is over), to pass as after_id for the next page. Each page
 * reads at most `scan` first events, so a walk of many executions never
 * holds the connection long. */
int store_orphans(store_t *s, const char *after_id, size_t scan, store_orphan_t **out, size_t *n,
                  char last[37], cbm_error_t *err);

/* The safety net: unfinished executions ('running' or 'sleeping') with no
 * timer and no remote task, untouched for older_than_us: nothing will move
 * them unless an engine loads them. At most limit ids, oldest first; free
 * *ids with free(). */
int store_stranded(store_t *s, int64_t older_than_us, size_t limit, char (**ids)[37], size_t *n,
                   cbm_error_t *err);

/*
 * The transactional outbox (migration 009, docs/outbox.md). Lifecycle events
 * are written to cbm_outbox by store_append itself, in the decision's
 * statement, while the database's outbox is on; these calls switch it and
 * serve the one publisher (bus/outbox.c).
 */
#define CBM_OUTBOX_SUBJECT_DEFAULT "cerebelum.execution.{blueprint}.{event}"

/* Turn the database's outbox on (subject template, NULL or "" = the default;
 * payload cap in bytes) or off. It applies to every process's next commit:
 * the setting is a row in the database, not in a process. */
int store_outbox_configure(store_t *s, bool enabled, const char *subject, int64_t max_payload,
                           cbm_error_t *err);

/* One outbox row; the strings are malloc'd, freed by store_outbox_rows_free. */
typedef struct store_outbox_row {
    int64_t id;
    char execution_id[37];
    int64_t seq;
    char *subject;
    char *msg_id;            /* "<execution_id>:<seq>" */
    char *payload;           /* JSON text */
} store_outbox_row_t;

/* Try to take the publisher's session advisory lock (one publisher per
 * database) on this connection: *got says whether it did. The lock goes with
 * the session: after store_reconnect, take it again. */
int store_outbox_try_lock(store_t *s, bool *got, cbm_error_t *err);

/* LISTEN on channel cbm_outbox, which every commit that writes outbox rows
 * notifies (store_append); then store_outbox_wait returns when one arrives
 * (drained), when fd (if >= 0) is readable, or after timeout_ms. Returns 0,
 * or CBM_EUNAVAIL when the connection broke. */
int store_outbox_listen(store_t *s, cbm_error_t *err);
int store_outbox_wait(store_t *s, int fd, int64_t timeout_ms, cbm_error_t *err);

/* Of the limit oldest rows (by id), the oldest row of each execution, in id
 * order (so no execution has two rows in one round). *out NULL when *n is 0;
 * free with store_outbox_rows_free(*out, *n). */
int store_outbox_read(store_t *s, size_t limit, store_outbox_row_t **out, size_t *n,
                      cbm_error_t *err);
/* Delete the rows with these ids (published and acknowledged). */
int store_outbox_delete(store_t *s, const int64_t *ids, size_t n, cbm_error_t *err);
void store_outbox_rows_free(store_outbox_row_t *r, size_t n);

/* The outbox as health shows it. */
typedef struct store_outbox_stats {
    bool enabled;            /* cbm_outbox_config has its row */
    char subject[256];       /* its template ("" when off) */
    int64_t max_payload;
    int64_t rows;            /* rows waiting */
    int64_t oldest_age_ms;   /* age of the oldest row (0 when none) */
} store_outbox_stats_t;
int store_outbox_stats(store_t *s, store_outbox_stats_t *out, cbm_error_t *err);

#endif
