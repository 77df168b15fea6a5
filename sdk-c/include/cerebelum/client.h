/**
 * @file client.h
 * @brief The C client of a Cerebelum server's WorkflowService (gRPC).
 *
 * A program that does not embed the engine talks to `cerebelum serve` with
 * this: register blueprints, start executions, read them and their histories,
 * and decide waiting executions. The calls mirror the engine API of
 * cerebelum.h and return the same types (cbm_execution_info_t, cbm_event_t),
 * freed with the same functions.
 *
 * Errors: every call returns 0 or a CBM_E* code, and fills the optional
 * cbm_error_t with the server's message. gRPC statuses map as in
 * docs/protocol.md: INVALID_ARGUMENT -> CBM_EINVAL, NOT_FOUND ->
 * CBM_ENOTFOUND, FAILED_PRECONDITION -> CBM_ESTATE, UNAVAILABLE (server down,
 * unreachable, or its store down) -> CBM_EUNAVAIL, DEADLINE_EXCEEDED ->
 * CBM_ETIMEDOUT, and anything else (UNAUTHENTICATED, UNIMPLEMENTED,
 * INTERNAL, ...) -> CBM_EIO with the status name leading the message, e.g.
 * "UNAUTHENTICATED: missing or wrong bearer token".
 *
 * Deadlines: every call has one (10 s unless set otherwise). A server that is
 * down answers CBM_EUNAVAIL at once (connection refused); one that does not
 * answer gives CBM_ETIMEDOUT when the deadline passes. No call blocks longer.
 *
 * Threads: a client may be used by any number of threads at once;
 * cbm_client_connect() and cbm_client_destroy() excepted.
 *
 * Ownership: strings passed in are copied or only read during the call;
 * objects returned through out-parameters belong to the caller.
 */
#ifndef CEREBELUM_CLIENT_H
#define CEREBELUM_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cerebelum/cerebelum.h"
#include "cerebelum/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A connection to one server (opaque). */
typedef struct cbm_client cbm_client_t;

/** The per-call deadline used when none is set, in milliseconds. */
#define CBM_CLIENT_DEFAULT_TIMEOUT_MS 10000

/** Options for cbm_client_connect(). Zero-initialise, then set what you need. */
typedef struct cbm_client_opts {
    /** Sent as `authorization: Bearer <token>` on every call; NULL: none. */
    const char *token;
    /** PEM text (not a file name) of the CA or self-signed certificate that
     *  signed the server's certificate. Setting it turns TLS on. */
    const char *tls_root_pem;
    /** TLS with the system's default roots (when tls_root_pem is NULL). */
    bool tls;
    /** Check the server certificate against this name instead of the host
     *  part of the target (NULL: the host part). */
    const char *tls_server_name;
    /** Deadline of each call in ms; 0: CBM_CLIENT_DEFAULT_TIMEOUT_MS. */
    int timeout_ms;
    /** mTLS: PEM text of this client's certificate chain and of its private
     *  key, presented to a server that requires client certificates; both
     *  or neither (CBM_EINVAL otherwise). Setting them turns TLS on. Copied
     *  by cbm_client_connect: they may be freed when it returns. */
    const char *tls_cert_pem;
    const char *tls_key_pem;
} cbm_client_opts_t;

/**
 * Create a client for the server at @p target ("host:port" or
 * "unix:/path"). Nothing is sent yet: the connection is made by the first
 * call, so an unreachable server shows up there (CBM_EUNAVAIL), not here.
 * @p opts may be NULL. *out is owned by the caller (cbm_client_destroy).
 * Returns CBM_EINVAL for a missing target, CBM_EIO if the channel cannot be
 * created.
 */
CBM_EXTERN int cbm_client_connect(cbm_client_t **out, const char *target,
                                  const cbm_client_opts_t *opts, cbm_error_t *err);

/** Close the connection and free the client. No call may be running on it.
 *  NULL is a no-op. */
CBM_EXTERN void cbm_client_destroy(cbm_client_t *c);

/** Set the deadline of later calls, in ms (<= 0: back to the default). */
CBM_EXTERN void cbm_client_set_timeout(cbm_client_t *c, int timeout_ms);

/**
 * Register a blueprint given as JSON text (validated by the server:
 * CBM_EINVAL with a message naming the step). If @p version_out is not NULL
 * it receives the version (SHA-256 hex, 65 bytes with the NUL).
 */
CBM_EXTERN int cbm_client_register_blueprint(cbm_client_t *c, const char *json,
                                             char version_out[65], cbm_error_t *err);

/** cbm_client_register_blueprint() that also says, in @p *created (may be
 *  NULL), whether the server stored a new version (true) or already had it
 *  (false: nothing changed). */
CBM_EXTERN int cbm_client_put_blueprint(cbm_client_t *c, const char *json, char version_out[65],
                                        bool *created, cbm_error_t *err);

/**
 * Start an execution of the latest version of @p blueprint with
 * @p inputs_json (a JSON object; NULL: {}). @p idempotency_key may be NULL;
 * with one, a repeated start returns the execution the first one created
 * (as cbm_start_opts_t describes). Returns once the start is durable, with
 * the id in @p id_out. CBM_ENOTFOUND: unknown blueprint; CBM_ESTATE: the
 * server cannot run one of its steps (no handler).
 */
CBM_EXTERN int cbm_client_start(cbm_client_t *c, const char *blueprint,
                                const char *inputs_json, const char *idempotency_key,
                                char id_out[37], cbm_error_t *err);

/**
 * cbm_client_start() with options (cerebelum.h's cbm_start_opts_t: an
 * idempotency key, a version; NULL: none). @p *created (may be NULL): true
 * if this call created the execution, false if the key named an existing
 * one. @p version_out (may be NULL): the blueprint version it runs.
 * CBM_ENOTFOUND also for a version the server does not have.
 */
CBM_EXTERN int cbm_client_start_opts(cbm_client_t *c, const char *blueprint,
                                     const char *inputs_json, const cbm_start_opts_t *opts,
                                     char id_out[37], bool *created, char version_out[65],
                                     cbm_error_t *err);

/** Most items one cbm_client_start_many() call may carry: the server's
 *  limit (docs/protocol.md, StartExecutions). Send larger batches in pieces. */
#define CBM_CLIENT_MAX_START_BATCH 1000

/** One start of a batch (cbm_client_start_many). Zero-initialise, then set
 *  what you need; the strings are only read during the call. */
typedef struct cbm_client_start_item {
    const char *blueprint;       /**< blueprint name; required (NULL or "" fails this item) */
    const char *inputs_json;     /**< a JSON object; NULL: {} */
    const char *idempotency_key; /**< NULL: none; as cbm_start_opts_t describes */
    const char *version;         /**< NULL: the latest registered version */
} cbm_client_start_item_t;

/** The outcome of one item of a batch; caller-allocated, nothing to free. */
typedef struct cbm_client_start_result {
    /** 0: started, or its key named an existing execution; otherwise the
     *  CBM_E* code of this item's failure (mapped from its gRPC status as
     *  the calls of this header are: CBM_ENOTFOUND, CBM_EINVAL...). */
    int code;
    /** The item's gRPC status code number (0 = OK), for the finer detail
     *  that code cannot carry. */
    int status;
    char id[37];         /**< the execution's id; "" when code != 0 */
    bool created;        /**< false: the key matched an existing execution */
    char version[65];    /**< the blueprint version it runs ("" if unknown) */
    char message[256];   /**< why it failed (the server's words); "" when code == 0 */
} cbm_client_start_result_t;

/**
 * Start @p n executions in one call (StartExecutions), the i-th as
 * cbm_client_start_opts() would start @p items[i]: an item with an
 * idempotency key that already exists answers that execution with
 * created = false, and an item that fails (unknown blueprint, bad inputs)
 * gets its own error in @p results[i] while the others start. @p results is
 * an array of @p n the caller owns; it is filled in the order of the items.
 *
 * Returns 0 once the call is answered, whatever the items' outcomes (look at
 * each results[i].code). Errors of the whole call, with no item started:
 * CBM_EINVAL for n == 0 (INVALID_ARGUMENT) or n > CBM_CLIENT_MAX_START_BATCH
 * (the server's RESOURCE_EXHAUSTED; the message begins with
 * "RESOURCE_EXHAUSTED"), and the errors of any call (CBM_EUNAVAIL,
 * CBM_ETIMEDOUT...). The limits are the server's to enforce: this function
 * sends what it is given. CBM_EIO for a reply without one result per item.
 * The deadline is the client's, for the whole batch.
 */
CBM_EXTERN int cbm_client_start_many(cbm_client_t *c, const cbm_client_start_item_t *items,
                                     size_t n, cbm_client_start_result_t *results,
                                     cbm_error_t *err);

/**
 * Read an execution. *out is owned by the caller (cbm_execution_info_free).
 * Its status is one of running, sleeping, awaiting_approval,
 * awaiting_signal, awaiting_child, completed, failed, cancelled (or "unknown" from a newer
 * server). If @p state_json is not NULL it receives the server's reduced
 * state as JSON text (malloc'd, caller frees; "{}" if the server sent none):
 * {"steps": {"<step>": {"status", "attempt", "result" or "error"}}}.
 * CBM_ENOTFOUND if there is no such execution.
 */
CBM_EXTERN int cbm_client_get(cbm_client_t *c, const char *id, cbm_execution_info_t **out,
                              char **state_json, cbm_error_t *err);

/**
 * A page of executions matching @p opts (NULL: all), in the server's order.
 * Pass the last id as opts->after for the next page; an empty page is the
 * end. *out is an array of *n infos owned by the caller
 * (cbm_execution_infos_free).
 */
CBM_EXTERN int cbm_client_list(cbm_client_t *c, const cbm_list_opts_t *opts,
                               cbm_execution_info_t **out, size_t *n, cbm_error_t *err);

/**
 * The events of an execution with seq >= @p from_seq (1 for all), in order;
 * as many calls as the server's page size needs. *events is an array of *n
 * owned by the caller (cbm_events_free). CBM_ENOTFOUND if unknown.
 */
CBM_EXTERN int cbm_client_history(cbm_client_t *c, const char *id, int64_t from_seq,
                                  cbm_event_t **events, size_t *n, cbm_error_t *err);

/**
 * Decisions from outside, as in cerebelum.h (cbm_execution_approve and the
 * rest): each is durable when the call returns. A decision that does not
 * apply (the execution is finished, the step is not waiting, it was already
 * decided) is CBM_ESTATE with the server's reason; an unknown execution or
 * step is CBM_ENOTFOUND.
 */
/** Approve the approval step @p step waits for; @p response_json (NULL: {})
 *  becomes the step's result. @p who is recorded (may be NULL). */
CBM_EXTERN int cbm_client_approve(cbm_client_t *c, const char *id, const char *step,
                                  const char *response_json, const char *who, cbm_error_t *err);
/** Reject it: the step fails with kind "approval_rejected" and @p reason. */
CBM_EXTERN int cbm_client_reject(cbm_client_t *c, const char *id, const char *step,
                                 const char *reason, const char *who, cbm_error_t *err);
/** Deliver signal @p name with @p payload_json (any JSON value; NULL: null). */
CBM_EXTERN int cbm_client_signal(cbm_client_t *c, const char *id, const char *name,
                                 const char *payload_json, cbm_error_t *err);
/** Cancel an execution (@p reason may be NULL). Cancelling a cancelled one
 *  succeeds; a completed or failed one is CBM_ESTATE. */
CBM_EXTERN int cbm_client_cancel(cbm_client_t *c, const char *id, const char *reason,
                                 cbm_error_t *err);

/**
 * Councils (cerebelum.h, "Councils"; docs/councils.md), on the server's
 * store: the calls of the engine API over PutCouncil, GetCouncil,
 * ListCouncils and DeleteCouncil, with the same arguments and results.
 */
/** Validate and store a council (JSON text). An invalid one is CBM_EINVAL
 *  with the server's message ("council 'dev': agents must not be empty"),
 *  also for text that is not JSON. @p version_out and @p created as
 *  cbm_council_put() says (either may be NULL). */
CBM_EXTERN int cbm_client_council_put(cbm_client_t *c, const char *json, char version_out[65],
                                      bool *created, cbm_error_t *err);
/** Council @p name at @p version (NULL: the latest live one; a deleted
 *  version is still found by its version). @p *json_out (may be NULL): its
 *  canonical JSON, malloc'd, the caller frees; @p version_out (may be
 *  NULL): its version. CBM_ENOTFOUND for an unknown name or version. */
CBM_EXTERN int cbm_client_council_get(cbm_client_t *c, const char *name, const char *version,
                                      char **json_out, char version_out[65], cbm_error_t *err);
/** The latest live version of every council, by name. *out is an array of
 *  *n owned by the caller (cbm_council_infos_free); created_at_us has
 *  millisecond precision (the protocol's). */
CBM_EXTERN int cbm_client_council_list(cbm_client_t *c, cbm_council_info_t **out, size_t *n,
                                       cbm_error_t *err);
/** Soft-delete council @p name (every version stays readable by version).
 *  CBM_ENOTFOUND when it has no live version. */
CBM_EXTERN int cbm_client_council_delete(cbm_client_t *c, const char *name, cbm_error_t *err);

/** A worker registered with the server (ListWorkers). */
typedef struct cbm_worker_info {
    char *worker_id;
    char **queues;             /**< the queues it serves */
    size_t nqueues;
    char **cap_keys;           /**< its capabilities, as registered */
    char **cap_values;
    size_t ncaps;
    uint32_t max_concurrency;
    uint32_t active_tasks;     /**< tasks handed to it and not yet answered */
    int64_t registered_at_ms;  /**< Unix time, milliseconds */
    int64_t last_seen_at_ms;   /**< last RegisterWorker, PollTask or Heartbeat */
    int alive;                 /**< seen recently (docs/protocol.md) */
    char *sdk_version;
} cbm_worker_info_t;

/**
 * The workers registered with the server (a server restart forgets them
 * until they register again), those serving @p queue only when it is not
 * NULL or "". *out is an array of *n owned by the caller
 * (cbm_worker_infos_free).
 */
CBM_EXTERN int cbm_client_workers(cbm_client_t *c, const char *queue, cbm_worker_info_t **out,
                                  size_t *n, cbm_error_t *err);
CBM_EXTERN void cbm_worker_infos_free(cbm_worker_info_t *w, size_t n);

/** One check of the server's health. */
typedef struct cbm_health_check {
    char *name;                /**< "store", "outbox", or "trigger NAME" */
    int ok;
    char *detail;              /**< one line: the state, or why it is not ok */
} cbm_health_check_t;

/** The server's health (GetHealth; docs/protocol.md). */
typedef struct cbm_health {
    int ok;                    /**< every check is ok */
    cbm_health_check_t *checks; /**< store, each stored trigger by name, outbox */
    size_t n;
} cbm_health_t;

/**
 * The server's health: its store reachable; each stored NATS trigger as
 * the serve running it last reported (not ok: never run, in error, or
 * stale: its consumer had not fetched for three fetch waits, or its
 * process stopped reporting); the outbox (not ok: its oldest row waits
 * longer than @p outbox_threshold_ms, 0 = 60 s). A server that cannot
 * reach its store answers with that check not ok. *out is owned by the
 * caller (cbm_health_free).
 */
CBM_EXTERN int cbm_client_health(cbm_client_t *c, int64_t outbox_threshold_ms,
                                 cbm_health_t **out, cbm_error_t *err);
CBM_EXTERN void cbm_health_free(cbm_health_t *h);

#ifdef __cplusplus
}
#endif
#endif
