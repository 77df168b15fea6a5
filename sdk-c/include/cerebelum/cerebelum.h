/**
 * @file cerebelum.h
 * @brief The public C API of Cerebelum: embed a durable workflow engine.
 *
 * A program creates an engine on a PostgreSQL URL (or lets it start a private
 * PostgreSQL in a state directory), registers step handlers and blueprints,
 * starts executions with JSON inputs and waits for their results. Every step
 * event is committed to PostgreSQL before the engine acts on it; after a crash
 * the next engine on the same database resumes every unfinished execution.
 *
 * Threads: every function here may be called from any thread except where a
 * comment says otherwise. Step handlers run on the engine's worker threads,
 * never on the caller's thread and never on the engine's event-loop thread.
 *
 * Ownership: strings passed in are copied unless stated; objects returned
 * through out-parameters belong to the caller and are freed with the matching
 * *_free / *_destroy function. Every destroy function accepts NULL.
 */
#ifndef CEREBELUM_H
#define CEREBELUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cerebelum/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Steps                                                                    */
/* ------------------------------------------------------------------------ */

/** What a step handler is given. Valid only during the handler call. */
typedef struct cbm_step_call {
    const char *execution_id; /**< UUID text of the execution */
    const char *step;         /**< step name in the blueprint */
    int attempt;              /**< 1 for the first run of this step */
    /** JSON object text: {"inputs": <execution inputs>, "deps": {"<dep>":
     *  <result of that dependency>, ...}}. */
    const char *input_json;
} cbm_step_call_t;

/** Where a handler puts its outcome (opaque; see cbm_step_ok/cbm_step_fail). */
typedef struct cbm_step_out cbm_step_out_t;

/**
 * A step handler. Runs on an engine worker thread. It must finish by calling
 * exactly one of cbm_step_ok() or cbm_step_fail() on @p out; a handler that
 * calls neither fails the step with error kind "no_result". Steps are run at
 * least once: after a crash, a step that had started but whose completion was
 * not yet recorded runs again, so handlers with outside effects should be
 * idempotent (execution_id + step is a natural idempotency key).
 */
typedef void (*cbm_step_fn)(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg);

/** Finish the step successfully with @p result_json (any JSON value; copied).
 *  Returns CBM_EJSON if it does not parse (the step then fails), CBM_ENOMEM
 *  when out of memory (nothing is recorded: call it again, or fail). The
 *  other outcome functions below answer CBM_ENOMEM the same way. */
CBM_EXTERN int cbm_step_ok(cbm_step_out_t *out, const char *result_json);

/** Finish the step with an error of @p kind (e.g. "timeout", "bad_input") and
 *  a human-readable @p message (both copied). With no retry policy the
 *  execution fails with this error recorded. */
CBM_EXTERN int cbm_step_fail(cbm_step_out_t *out, const char *kind, const char *message,
                             bool retryable);

/** Fail the step with a retryable error of @p kind whose next attempt must
 *  not start before @p retry_after_ms have passed (what an HTTP server's
 *  `Retry-After` asked for): the retry policy waits the longer of this and
 *  its own back-off. Without a retry policy the execution fails as with
 *  cbm_step_fail(). Values above one day are taken as one day; 0 or less is
 *  cbm_step_fail(..., true). The error object records `retry_after_ms`. */
CBM_EXTERN int cbm_step_fail_after(cbm_step_out_t *out, const char *kind, const char *message,
                                   int64_t retry_after_ms);

/** Called when the attempt a handler is running has been given up by the
 *  engine (see cbm_step_on_cancel()). */
typedef void (*cbm_cancel_fn)(void *arg);

/**
 * Ask to be told when the attempt this handler runs is cancelled: the
 * server listed its task in cancel_task_ids (execution cancelled, step timed
 * out, lease lost). @p fn(@p arg) is then called once, on another thread,
 * while the handler still runs (at once if the cancel came before this
 * call); it should only signal the handler to stop (abort a transfer, set a
 * flag) and return: it runs under a worker lock, so it must not call
 * worker functions or block. The handler still returns an outcome, which is
 * dropped. @p arg must stay valid until the handler returns; a second call
 * replaces the first. Remote workers (cerebelum/worker.h) only: in an
 * embedded engine the callback is never called (an abandoned attempt runs to
 * its end and its outcome is ignored).
 */
CBM_EXTERN void cbm_step_on_cancel(cbm_step_out_t *out, cbm_cancel_fn fn, void *arg);

/** Finish the step successfully with @p result_json, then put the execution
 *  to sleep for @p duration_ms (durably: a timer in the store) before the
 *  steps that depend on it run. */
CBM_EXTERN int cbm_step_sleep(cbm_step_out_t *out, const char *result_json, int64_t duration_ms);

/** Finish the step by asking for a person's approval of @p type with
 *  @p data_json; the step's result becomes the approval's response. With
 *  @p timeout_ms > 0 the step fails with kind "approval_timeout" when nobody
 *  decides in time; a rejection fails it with kind "approval_rejected". */
CBM_EXTERN int cbm_step_approval(cbm_step_out_t *out, const char *type, const char *data_json,
                                 int64_t timeout_ms);

/* ------------------------------------------------------------------------ */
/* Blueprint builder: emits blueprint JSON, validated like any other.        */
/* ------------------------------------------------------------------------ */

typedef struct cbm_builder cbm_builder_t;

/** New builder for a blueprint called @p name. NULL on out-of-memory. */
CBM_EXTERN cbm_builder_t *cbm_builder_create(const char *name);
/** Free a builder (NULL is a no-op). */
CBM_EXTERN void cbm_builder_destroy(cbm_builder_t *b);
/** Add a task step run by the handler registered under @p handler (NULL: the
 *  step's own name) that depends on the @p ndeps steps named in @p deps. */
CBM_EXTERN int cbm_builder_add_step(cbm_builder_t *b, const char *name, const char *handler,
                                    const char *const *deps, size_t ndeps);
/** Set any other field of step @p step (or of the blueprint itself when
 *  @p step is NULL) to the JSON value @p value_json: kinds and their fields,
 *  retry, timeout_ms, diverge, branch, inputs (docs/blueprints.md). The value
 *  is copied; nothing is validated until the JSON is registered. */
CBM_EXTERN int cbm_builder_set(cbm_builder_t *b, const char *step, const char *key,
                               const char *value_json);
/** The blueprint as JSON text; *json is malloc'd and owned by the caller.
 *  Nothing is validated here: registering the JSON validates it. */
CBM_EXTERN int cbm_builder_to_json(const cbm_builder_t *b, char **json);

/* ------------------------------------------------------------------------ */
/* Engine                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct cbm_engine cbm_engine_t;

/** Options for cbm_engine_create(). Zero-initialise, then set what you need. */
typedef struct cbm_engine_opts {
    /** libpq URL or conninfo of the store. NULL: $CEREBELUM_DATABASE_URL, and
     *  if that is unset too, a private PostgreSQL that the engine initialises
     *  and starts in @ref state_dir and stops on destroy. */
    const char *database_url;
    /** Directory for the private PostgreSQL (NULL: $CEREBELUM_STATE_DIR, else
     *  "./.cerebelum"). Ignored when a database URL is given. */
    const char *state_dir;
    /** Worker threads that run local step handlers (0: 4). */
    int threads;
    /** How long cbm_engine_start() keeps retrying an unreachable database
     *  before it gives up with CBM_EUNAVAIL, in ms (0: 30000; <0: forever). */
    int connect_timeout_ms;
    /** Most decisions committed in one transaction (0: 512). */
    int max_batch;
    /** Client only: connect and serve reads and outside decisions (start,
     *  get, list, history, approve, reject, signal, cancel) but run nothing:
     *  no execution is resumed or woken here and no step handler runs. For
     *  tools and processes that act on executions an engine elsewhere runs. */
    bool client_only;
    /** Shard lease time in ms (0: $CEREBELUM_SHARD_LEASE_MS, else 5000; at least
     *  100). Several engines may run on one database: each runs the
     *  executions of the shards it leases, renews its leases every third of
     *  this, and another engine takes the shards of one that stopped
     *  renewing once they expire (at once when its session is gone, as
     *  after a kill -9 on the database's host). docs/architecture.md,
     *  "Shards". */
    int64_t lease_ms;
} cbm_engine_opts_t;

/** Create an engine. Nothing is connected or started until
 *  cbm_engine_start(). *out is owned by the caller (cbm_engine_destroy). */
CBM_EXTERN int cbm_engine_create(cbm_engine_t **out, const cbm_engine_opts_t *opts,
                                 cbm_error_t *err);

/** Register @p fn as the handler called @p name. Call before
 *  cbm_engine_start(). @p arg is passed through untouched. */
CBM_EXTERN int cbm_engine_register_step(cbm_engine_t *e, const char *name, cbm_step_fn fn,
                                        void *arg);

/**
 * Connect to the store (retrying with back-off up to connect_timeout_ms),
 * apply schema migrations, load every execution that was running (a step
 * scheduled) and resume it, and start the engine's threads. Executions that
 * only wait (a sleep, an approval, a signal, a child) stay in the store: the
 * engine's timer window and the decisions made for them bring each in when
 * it has something to do. Blueprints that the resumed executions use are
 * loaded from the store. Returns CBM_EUNAVAIL (with the database's message in
 * @p err) if the store stays unreachable.
 */
CBM_EXTERN int cbm_engine_start(cbm_engine_t *e, cbm_error_t *err);

/** Stop accepting work, let in-flight commits finish, stop the threads and
 *  free everything (and stop the private PostgreSQL, if any). Running step
 *  handlers are waited for; their results are committed if the store is up.
 *  Unfinished executions stay in the store and resume on the next start. */
CBM_EXTERN void cbm_engine_destroy(cbm_engine_t *e);

/**
 * Register a blueprint given as JSON text. It is validated (CBM_EJSON or
 * CBM_EBLUEPRINT with a message naming the step and the problem; CBM_EINVAL
 * for text that is not UTF-8 or holds a NUL or the escape \u0000, which
 * PostgreSQL could not store), stored, and
 * becomes the latest version of its name. The version is the SHA-256 of the
 * blueprint's canonical JSON, so content already stored (under any
 * formatting) is the same version: registering it again is a no-op that
 * changes nothing, not even which version is the latest (to run an older
 * version, name it: cbm_execution_start_opts()). If @p version_out is not
 * NULL it receives the version (SHA-256 hex, 65 bytes with the NUL).
 * Requires a started engine.
 */
CBM_EXTERN int cbm_engine_register_blueprint(cbm_engine_t *e, const char *json,
                                             char version_out[65], cbm_error_t *err);

/**
 * cbm_engine_register_blueprint() that also says, in @p *created (may be
 * NULL), whether this call stored a new version (true) or found that version
 * already stored (false: nothing changed).
 */
CBM_EXTERN int cbm_engine_put_blueprint(cbm_engine_t *e, const char *json, char version_out[65],
                                        bool *created, cbm_error_t *err);

/**
 * Start an execution of the latest version of @p blueprint with
 * @p inputs_json (a JSON object; NULL means {}). Returns once the start is
 * durably committed, with the new execution's id (UUID text) in @p id_out.
 * Errors: CBM_ENOTFOUND (unknown blueprint), CBM_EJSON / CBM_EINVAL (inputs
 * not a JSON object), CBM_EHANDLER (a local step has no registered handler).
 */
CBM_EXTERN int cbm_execution_start(cbm_engine_t *e, const char *blueprint,
                                   const char *inputs_json, char id_out[37],
                                   cbm_error_t *err);

/**
 * Start @p n executions of the latest version of @p blueprint at once, the
 * i-th with @p inputs[i] (NULL entries mean {}). Their starts are committed
 * together (one transaction for many), so this is the fast way to start a
 * batch. Returns once all are durable; @p ids receives the n ids. On error
 * nothing is reported as started (some may have been: they run normally).
 */
CBM_EXTERN int cbm_execution_start_many(cbm_engine_t *e, const char *blueprint,
                                        const char *const *inputs, size_t n,
                                        char (*ids)[37], cbm_error_t *err);

/** Options of cbm_execution_start_opts(). Zero-initialise, then set what
 *  you need; all-zero (or a NULL pointer) starts like cbm_execution_start(). */
typedef struct cbm_start_opts {
    /** Idempotency key (NULL: none; at most 256 bytes). The same key for the
     *  same blueprint names the same execution, forever: the first start
     *  with it creates the execution, every later one (from any thread,
     *  process or engine, before or after a restart, concurrent or not)
     *  returns that execution's id with *created = false and starts
     *  nothing. Inputs and version of a repeated start are not compared
     *  with the first one's. */
    const char *idempotency_key;
    /** Blueprint version to run (SHA-256 hex as registration returned);
     *  NULL: the latest registered version. CBM_ENOTFOUND if the store has
     *  no such version of the blueprint. */
    const char *version;
} cbm_start_opts_t;

/**
 * Start an execution of @p blueprint with @p inputs_json (a JSON object;
 * NULL means {}), with the options in @p opts (NULL: none). Returns once the
 * start is durably committed, with the execution's id in @p id_out and, in
 * @p *created (may be NULL), true if this call created it, false if
 * opts->idempotency_key named an execution that already existed (id_out is
 * then that execution's id). The execution runs the version it started on
 * until it ends, whatever is registered later, across restarts too.
 * Errors as cbm_execution_start(), and CBM_EINVAL for an empty or too long
 * key.
 */
CBM_EXTERN int cbm_execution_start_opts(cbm_engine_t *e, const char *blueprint,
                                        const char *inputs_json, const cbm_start_opts_t *opts,
                                        char id_out[37], bool *created, cbm_error_t *err);

/** Snapshot of an execution's projection. */
typedef struct cbm_execution_info {
    char id[37];
    char *blueprint;
    char *version;
    char *status;   /**< running, completed, failed, cancelled, ... */
    char *inputs;   /**< JSON text */
    char *result;   /**< JSON object {"<step>": <result>} of the steps that
                         no other step depends on, once completed; else NULL */
    char *error;    /**< JSON text {"step","kind","message"} or NULL */
    int64_t last_seq;
    int64_t created_at_us;
    int64_t updated_at_us;
    char *idempotency_key; /**< the key it was started with, or NULL */
} cbm_execution_info_t;

/** Free an info returned by this API (NULL is a no-op). */
CBM_EXTERN void cbm_execution_info_free(cbm_execution_info_t *info);

/** Read an execution's current projection from the store. */
CBM_EXTERN int cbm_execution_get(cbm_engine_t *e, const char *id, cbm_execution_info_t **out,
                                 cbm_error_t *err);

/** Wait until the execution is completed, failed or cancelled, or until
 *  @p timeout_ms passes (CBM_ETIMEDOUT; <0 waits forever), then return its
 *  projection as cbm_execution_get() does. */
CBM_EXTERN int cbm_execution_wait(cbm_engine_t *e, const char *id, int timeout_ms,
                                  cbm_execution_info_t **out, cbm_error_t *err);

/** One event of a history. */
typedef struct cbm_event {
    int64_t seq;
    char *type;     /**< e.g. "StepCompleted" */
    char *payload;  /**< JSON object text */
    int64_t recorded_at_us;
} cbm_event_t;

/** The events of an execution with seq >= @p from_seq (1 for all), in order.
 *  *events is an array of *n owned by the caller (cbm_events_free). */
CBM_EXTERN int cbm_execution_history(cbm_engine_t *e, const char *id, int64_t from_seq,
                                     cbm_event_t **events, size_t *n, cbm_error_t *err);
CBM_EXTERN void cbm_events_free(cbm_event_t *events, size_t n);

/** Filter and cursor for cbm_execution_list(). */
typedef struct cbm_list_opts {
    const char *status;    /**< NULL: any */
    const char *blueprint; /**< NULL: any */
    const char *after;     /**< id of the last execution of the previous page,
                                NULL for the first page */
    size_t limit;          /**< 0: 100 */
    /** false: oldest first; true: newest first (then @ref after gives the
     *  executions started before it) */
    bool newest_first;
} cbm_list_opts_t;

/** A page of executions, oldest first (or newest first, as opts says). *out is an array of *n infos owned by
 *  the caller (cbm_execution_infos_free). Pass the last id as opts->after to
 *  get the next page; an empty page means the end. */
CBM_EXTERN int cbm_execution_list(cbm_engine_t *e, const cbm_list_opts_t *opts,
                                  cbm_execution_info_t **out, size_t *n, cbm_error_t *err);
CBM_EXTERN void cbm_execution_infos_free(cbm_execution_info_t *infos, size_t n);

/**
 * Decisions from outside. Each works whether or not this engine holds the
 * execution in memory and whether or not this process started it: the
 * decision is made against the execution's history in the store and
 * committed there with the optimistic lock; the engine that runs the
 * execution picks it up. A decision that does not apply (the execution is
 * finished, the step is not waiting, it was already decided) is refused with
 * CBM_ESTATE and a message saying why; an unknown execution or step gives
 * CBM_ENOTFOUND. Nothing changes on an error.
 */
/** Approve the approval that step @p step waits for; @p response_json (NULL:
 *  {}) becomes the step's result. @p who is recorded (may be NULL). */
CBM_EXTERN int cbm_execution_approve(cbm_engine_t *e, const char *id, const char *step,
                                     const char *response_json, const char *who,
                                     cbm_error_t *err);
/** Reject it: the step fails with kind "approval_rejected" and @p reason. */
CBM_EXTERN int cbm_execution_reject(cbm_engine_t *e, const char *id, const char *step,
                                    const char *reason, const char *who, cbm_error_t *err);
/** Deliver signal @p name with @p payload_json (NULL: null) to an execution.
 *  A signal that arrives before the execution waits for it is kept and
 *  consumed when the wait begins. */
CBM_EXTERN int cbm_execution_signal(cbm_engine_t *e, const char *id, const char *name,
                                    const char *payload_json, cbm_error_t *err);
/** cbm_execution_signal with an idempotency key: @p key (NULL: none, as
 *  cbm_execution_signal; else 1-256 bytes of text) is recorded in the
 *  SignalReceived event, in the same commit. A second signal with the same
 *  key to the same execution delivers nothing and succeeds with
 *  @p *delivered false (may be NULL; true when this call delivered it):
 *  what a NATS signal trigger's message redelivered after a crash between
 *  its commit and its ack finds (docs/bus.md). Keys are per execution. */
CBM_EXTERN int cbm_execution_signal_key(cbm_engine_t *e, const char *id, const char *name,
                                        const char *payload_json, const char *key,
                                        bool *delivered, cbm_error_t *err);
/** Cancel an execution: no new step is scheduled, its timers are cleared,
 *  running attempts are abandoned, and it ends "cancelled". Cancelling a
 *  cancelled execution succeeds and changes nothing; cancelling a completed
 *  or failed one is CBM_ESTATE. */
CBM_EXTERN int cbm_execution_cancel(cbm_engine_t *e, const char *id, const char *reason,
                                    cbm_error_t *err);

/* ------------------------------------------------------------------------ */
/* Councils                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * A council is the data of a deliberation (docs/deliberation.md, section 1;
 * docs/councils.md): a role, a model, prompt templates, a rubric and 1 to 16
 * agents. It is stored in the engine's database, versioned by content like a
 * blueprint: the version is the SHA-256 (hex) of its canonical JSON. Each
 * call below is one statement on the engine's store, durable when it
 * returns, and works on any started engine, client-only ones included.
 */

/**
 * Validate and store the council given as JSON text. Invalid: CBM_EINVAL
 * with a message that starts with "council '<name>': " and names the field
 * (e.g. "council 'dev': prompts.critique: unknown variable 'tsak' at byte
 * 12"), CBM_EINVAL too for text that is not UTF-8 or holds a NUL or the
 * escape \u0000; CBM_EJSON when it is not JSON. Valid: stored under its
 * version, which @p version_out (may be NULL) receives (64 hex digits and a
 * NUL). @p *created (may be NULL) is true when this call made that version
 * live: it was new, or deleted and now restored, and it is then the
 * council's latest version; false when it was stored and live already, and
 * then nothing changes, not even which version is the latest. Requires a
 * started engine (CBM_ESTATE). CBM_EUNAVAIL, CBM_ESTORE: the store.
 */
CBM_EXTERN int cbm_council_put(cbm_engine_t *e, const char *json, char version_out[65],
                               bool *created, cbm_error_t *err);

/**
 * The council @p name: the version @p version, deleted or not (a running
 * deliberation may have pinned it), or with @p version NULL the latest live
 * version. @p *json_out (may be NULL) receives its canonical JSON, malloc'd,
 * owned by the caller (free()); @p version_out (may be NULL) its version.
 * CBM_ENOTFOUND ("no council named 'N'", "council 'N' has no version V");
 * CBM_EINVAL for a NULL name, or a name or version that is not UTF-8.
 * *json_out is NULL on any error.
 */
CBM_EXTERN int cbm_council_get(cbm_engine_t *e, const char *name, const char *version,
                               char **json_out, char version_out[65], cbm_error_t *err);

/** A council as cbm_council_list() shows it: its latest live version. */
typedef struct cbm_council_info {
    char *name;
    char *version;          /**< SHA-256 hex of the canonical JSON */
    char *role;
    int agents;             /**< how many agents it has */
    int64_t created_at_us;  /**< when this version was first stored (Unix
                                 time, microseconds) */
} cbm_council_info_t;

/** Every council that has a live version, by name. *out is an array of *n
 *  owned by the caller (cbm_council_infos_free); NULL when *n is 0. */
CBM_EXTERN int cbm_council_list(cbm_engine_t *e, cbm_council_info_t **out, size_t *n,
                                cbm_error_t *err);
/** Free what cbm_council_list() or cbm_client_council_list() returned. */
CBM_EXTERN void cbm_council_infos_free(cbm_council_info_t *infos, size_t n);

/**
 * Delete council @p name: every version of it leaves the list and "latest"
 * (a get without version is CBM_ENOTFOUND), and each stays readable by its
 * version, so a deliberation running on one is not disturbed. Putting a
 * version again brings it back. CBM_ENOTFOUND when the name has no live
 * version (deleting twice included); CBM_EINVAL for a NULL name or one that
 * is not UTF-8.
 */
CBM_EXTERN int cbm_council_delete(cbm_engine_t *e, const char *name, cbm_error_t *err);

/** Counters, for monitoring and benchmarks. */
typedef struct cbm_engine_stats {
    uint64_t commits;        /**< store transactions committed */
    uint64_t decisions;      /**< execution decisions committed */
    uint64_t events;         /**< events appended */
    uint64_t steps_run;      /**< handler invocations */
    uint64_t store_errors;   /**< failed store attempts (retried) */
    uint64_t resumed;        /**< executions resumed at start */
    uint64_t active;         /**< executions in memory now */
    uint64_t hibernated;     /**< times an execution left memory to wait */
    uint64_t woken;          /**< times one was loaded back from the store */
    uint64_t timers_fired;   /**< durable timers that came due here */
    uint64_t shard_refusals; /**< decisions refused because their shard had
                                  moved to another engine (the shard was then
                                  dropped; docs/architecture.md, "Shards") */
    uint64_t shards_held;    /**< shards this engine holds now */
} cbm_engine_stats_t;

CBM_EXTERN void cbm_engine_get_stats(cbm_engine_t *e, cbm_engine_stats_t *out);

/** An engine registered on the database (docs/architecture.md, "Shards"). */
typedef struct cbm_engine_info {
    char id[37];             /**< the incarnation, new at each start */
    char *host;              /**< where it runs */
    int pid;
    int64_t started_at_us;   /**< microseconds since the Unix epoch */
    int64_t seen_ms_ago;     /**< since its lease manager last renewed */
    int nshards;             /**< shard leases it holds, unexpired */
    char *shards;            /**< their numbers as ranges, "0-85,200" */
} cbm_engine_info_t;

/** Every engine registered on @p e's database, oldest first, with the
 *  shards each holds; also on a client-only engine (`cerebelum engines`).
 *  An engine killed a moment ago is listed until another fences it (at its
 *  next lease round). *out is owned by the caller: cbm_engine_infos_free.
 *  Any thread. */
CBM_EXTERN int cbm_engine_list_engines(cbm_engine_t *e, cbm_engine_info_t **out, size_t *n,
                                       cbm_error_t *err);
CBM_EXTERN void cbm_engine_infos_free(cbm_engine_info_t *info, size_t n);

#ifdef __cplusplus
}
#endif
#endif
