/*
 * grpc_transport.h - the gRPC transport of the Cerebelum wire protocol
 * (cerebelum.v1.WorkerService and cerebelum.v1.WorkflowService), built on the
 * gRPC C core and protobuf-c. Private to the library: the engine's gRPC
 * front end, the worker SDK, the CLI and the tests use it; users never see it.
 *
 * Server. rpc_server_create() binds one address, registers every method of
 * both services and starts ONE completion-queue thread. That thread does no
 * work of its own: it hands every completion to the uv loop (a locked list
 * and uv_async_send), so all call handling, decoding and every handler run on
 * the loop thread, next to the engine state they touch. A handler gets the
 * decoded request and a call handle; it answers at once with rpc_call_reply()
 * or rpc_call_fail(), or parks the handle (a long poll) after registering a
 * cancel callback with rpc_call_on_cancel(), and answers later.
 *
 * The transport answers on its own, before any handler runs:
 *   - an unknown method path                         -> UNIMPLEMENTED
 *   - a method that has no handler                   -> UNIMPLEMENTED
 *   - token configured, `authorization: Bearer <token>` absent or wrong
 *                                                    -> UNAUTHENTICATED
 *   - no request message, or bytes that do not decode -> INVALID_ARGUMENT
 *   - a request over max_message_bytes -> RESOURCE_EXHAUSTED (said by the gRPC
 *     core itself; the handler never sees the call)
 *   - a reply over max_message_bytes   -> RESOURCE_EXHAUSTED (rpc_call_reply)
 *
 * Client. rpc_client_t is a channel plus one background thread parked in
 * grpc_completion_queue_next (the C core does I/O only while some thread
 * waits on a queue). rpc_client_call() is a blocking unary call with a
 * deadline on its own pluck queue; any number of threads may call at once.
 *
 * Threads. rpc_server_* and rpc_call_* are called on the loop thread only;
 * rpc_client_* are thread-safe (create/destroy excepted).
 */
#ifndef CBM_GRPC_TRANSPORT_H
#define CBM_GRPC_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "cerebelum/error.h"
#include "worker.pb-c.h"
#include "workflow.pb-c.h"

/* Every method of both services. The order is the declaration order in the
 * .proto files, so the generated service descriptors can be indexed by it. */
#define RPC_METHOD_MAP(XX)                                                     \
    XX(REGISTER_WORKER, WorkerService, RegisterWorker)                         \
    XX(POLL_TASK, WorkerService, PollTask)                                     \
    XX(HEARTBEAT, WorkerService, Heartbeat)                                    \
    XX(SUBMIT_RESULT, WorkerService, SubmitResult)                             \
    XX(UNREGISTER_WORKER, WorkerService, UnregisterWorker)                     \
    XX(REGISTER_BLUEPRINT, WorkflowService, RegisterBlueprint)                 \
    XX(START_EXECUTION, WorkflowService, StartExecution)                       \
    XX(GET_EXECUTION, WorkflowService, GetExecution)                           \
    XX(LIST_EXECUTIONS, WorkflowService, ListExecutions)                       \
    XX(GET_HISTORY, WorkflowService, GetHistory)                               \
    XX(APPROVE, WorkflowService, Approve)                                      \
    XX(REJECT, WorkflowService, Reject)                                        \
    XX(SIGNAL, WorkflowService, Signal)                                        \
    XX(CANCEL, WorkflowService, Cancel)                                        \
    XX(LIST_WORKERS, WorkflowService, ListWorkers)                             \
    XX(START_EXECUTIONS, WorkflowService, StartExecutions)                     \
    XX(PUT_COUNCIL, WorkflowService, PutCouncil)                               \
    XX(GET_COUNCIL, WorkflowService, GetCouncil)                               \
    XX(LIST_COUNCILS, WorkflowService, ListCouncils)                           \
    XX(DELETE_COUNCIL, WorkflowService, DeleteCouncil)                         \
    XX(GET_HEALTH, WorkflowService, GetHealth)

typedef enum rpc_method {
#define XX(id, svc, name) RPC_##id,
    RPC_METHOD_MAP(XX)
#undef XX
    RPC_METHOD_COUNT
} rpc_method_t;

/** The path of a method, e.g. "/cerebelum.v1.WorkerService/PollTask". */
const char *rpc_method_path(rpc_method_t m);
/** Descriptors of a method's request and reply messages. */
const ProtobufCMessageDescriptor *rpc_method_input(rpc_method_t m);
const ProtobufCMessageDescriptor *rpc_method_output(rpc_method_t m);

/**
 * Decode a message of type d (protobuf_c_message_unpack), refusing what
 * protobuf-c accepts but cannot encode again: a field numbered 0 (invalid in
 * protobuf), which protobuf-c 1.4 takes for an unknown field when its tag is
 * written in more than one byte. A request that decodes here can be copied
 * (packed and unpacked) by a handler. NULL when it does not decode; free the
 * result with protobuf_c_message_free_unpacked().
 */
ProtobufCMessage *rpc_message_unpack(const ProtobufCMessageDescriptor *d, size_t len,
                                     const uint8_t *data);

/** Default cap on a request or reply message, in bytes (4 MiB). */
#define RPC_DEFAULT_MAX_MESSAGE (4u * 1024u * 1024u)

/** Most items one StartExecutions call may carry (docs/protocol.md): more is
 *  RESOURCE_EXHAUSTED for the whole call. Bounds the work and the reply one
 *  call can cause; 1000 small starts stay far below the message cap. */
#define RPC_MAX_START_BATCH 1000

/** A gRPC status with its message, as a client saw it or a server sent it. */
typedef struct rpc_status {
    grpc_status_code code;
    char message[256];
} rpc_status_t;

/** Name of a gRPC status code, e.g. "UNAUTHENTICATED". Never NULL. */
const char *rpc_status_name(grpc_status_code code);

/** The CBM_E* code a failed call maps to (OK -> 0). */
int rpc_status_to_cbm(grpc_status_code code);

/* ---- server ------------------------------------------------------------ */

typedef struct rpc_server rpc_server_t;
typedef struct rpc_call rpc_call_t;

/**
 * A method handler. Runs on the loop thread. `request` is the decoded
 * request (cast it to the method's type, e.g. Cerebelum__V1__PollTaskRequest);
 * it belongs to the call and lives until the call is answered or cancelled.
 * Before returning, the handler must either answer (rpc_call_reply or
 * rpc_call_fail) or register a cancel callback with rpc_call_on_cancel() and
 * keep `call` to answer later.
 */
typedef void (*rpc_handler_cb)(rpc_call_t *call, const ProtobufCMessage *request,
                               void *user_data);

/**
 * Told on the loop thread that a call that was not answered yet is gone: the
 * client cancelled it, its deadline passed, its connection broke, or the
 * server is shutting down. Nothing is sent; `call` is freed after the callback
 * returns, and the handler must neither answer it nor touch it again.
 */
typedef void (*rpc_cancel_cb)(rpc_call_t *call, void *call_data);

/** Told on the loop thread when rpc_server_shutdown() has finished. */
typedef void (*rpc_shutdown_cb)(rpc_server_t *srv, void *data);

typedef struct rpc_server_options {
    /** "host:port" (port 0 picks a free port; see rpc_server_port) or
     *  "unix:/path". Required. */
    const char *listen_addr;
    /** TLS: PEM texts. With cert and key set the port speaks TLS only. With
     *  client_ca also set, clients must present a certificate it signed (mTLS). */
    const char *tls_cert_pem;
    const char *tls_key_pem;
    const char *tls_client_ca_pem;
    /** With a token set, every call needs `authorization: Bearer <token>`. */
    const char *token;
    /** Cap on one request and one reply message; 0 = RPC_DEFAULT_MAX_MESSAGE. */
    size_t max_message_bytes;
    /** One handler per method; NULL answers UNIMPLEMENTED. */
    rpc_handler_cb handlers[RPC_METHOD_COUNT];
    void *user_data; /**< passed to every handler */
} rpc_server_options_t;

/**
 * Bind, start listening and start the completion-queue thread. Call on the
 * loop thread; the options are copied. On failure returns a CBM_E* code
 * (CBM_EIO: the address could not be bound or TLS material was refused) with
 * detail in err, and *out stays NULL. The server holds the loop alive (an
 * active uv_async) until rpc_server_shutdown() finishes.
 */
int rpc_server_create(uv_loop_t *loop, const rpc_server_options_t *opts,
                      rpc_server_t **out, cbm_error_t *err);

/** The TCP port bound (useful with port 0); 1 for a unix socket. */
int rpc_server_port(const rpc_server_t *srv);

/**
 * Graceful shutdown: stop accepting calls, cancel every unanswered call (each
 * parked call's cancel callback runs), wait for the gRPC core to finish, stop
 * and join the completion-queue thread, close the uv_async. `cb` runs on the
 * loop thread when all that is done; then call rpc_server_destroy(). Calling
 * it twice is a bug.
 */
void rpc_server_shutdown(rpc_server_t *srv, rpc_shutdown_cb cb, void *data);

/** Free a server whose shutdown callback has run. NULL is a no-op. */
void rpc_server_destroy(rpc_server_t *srv);

/* ---- one server call ------------------------------------------------------ */

/** The method being called. */
rpc_method_t rpc_call_method(const rpc_call_t *call);

/**
 * Milliseconds until the client's deadline (0 when it has passed), or
 * INT64_MAX when the client set none. A long poll uses it to answer
 * `empty` before the client gives up.
 */
int64_t rpc_call_remaining_ms(const rpc_call_t *call);

/** The client's address as gRPC names it ("ipv4:127.0.0.1:5432"). Owned by
 *  the call. */
const char *rpc_call_peer(rpc_call_t *call);

/**
 * Register the callback that is told if the call goes away before it is
 * answered. Required before a handler returns without answering.
 */
void rpc_call_on_cancel(rpc_call_t *call, rpc_cancel_cb cb, void *call_data);

/**
 * Answer with status OK and `reply` (must be of the method's reply type; the
 * transport packs it, the caller keeps ownership of it). After this the call
 * handle is gone. A reply larger than max_message_bytes is not sent: the
 * client gets RESOURCE_EXHAUSTED and this returns CBM_EINVAL.
 */
int rpc_call_reply(rpc_call_t *call, const ProtobufCMessage *reply);

/**
 * Answer with an error status (not GRPC_STATUS_OK) and a message, printf-style.
 * After this the call handle is gone.
 */
int rpc_call_fail(rpc_call_t *call, grpc_status_code code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- client ------------------------------------------------------------ */

typedef struct rpc_client rpc_client_t;

typedef struct rpc_client_options {
    /** "host:port" or "unix:/path". Required. */
    const char *target;
    /** Sent as `authorization: Bearer <token>` on every call when set. */
    const char *token;
    /** TLS on: with tls_root_pem NULL the system's default roots are trusted
     *  (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH may point elsewhere). */
    int tls;
    /** TLS: the PEM of the CA (or self-signed certificate) to trust; setting
     *  it turns TLS on too. cert/key: the client's own certificate for mTLS. */
    const char *tls_root_pem;
    const char *tls_cert_pem;
    const char *tls_key_pem;
    /** Check the server certificate against this name instead of the host
     *  part of target (tests: a certificate for "localhost" on 127.0.0.1). */
    const char *tls_server_name;
    /** Cap on one request and one reply; 0 = RPC_DEFAULT_MAX_MESSAGE. */
    size_t max_message_bytes;
    /** Longest pause between the channel's attempts to reconnect to a server
     *  that went away, in ms; 0 = gRPC's default (120 s). A worker sets a
     *  few seconds so that it is back soon after a server restart. */
    int max_reconnect_backoff_ms;
} rpc_client_options_t;

/** Create a channel (it connects lazily, on the first call). The options are
 *  copied. Returns 0 or a CBM_E* code with detail in err. */
int rpc_client_create(const rpc_client_options_t *opts, rpc_client_t **out,
                      cbm_error_t *err);

/** Cancel calls in flight, join the background thread, free. NULL: no-op.
 *  No call may be running or start on it during or after this. */
void rpc_client_destroy(rpc_client_t *c);

/**
 * Blocking unary call. `request` must be of the method's request type. On
 * status OK, *reply is set to a message the caller frees with
 * protobuf_c_message_free_unpacked(*reply, NULL), and 0 is returned.
 * Otherwise *reply stays NULL and the mapped CBM_E* code is returned
 * (rpc_status_to_cbm). `status` (may be NULL) receives the status and its
 * message either way. timeout_ms <= 0 means no deadline.
 */
int rpc_client_call(rpc_client_t *c, rpc_method_t m, const ProtobufCMessage *request,
                    ProtobufCMessage **reply, int64_t timeout_ms, rpc_status_t *status);

/**
 * Same on raw bytes and any path, for tests and tools: `data` NULL sends no
 * message at all. On return *reply (malloc'd, may be NULL if the server sent
 * no message) and *reply_len are set; the caller frees *reply with free().
 * Returns 0 when the status is OK, the mapped CBM_E* code otherwise.
 */
int rpc_client_call_raw(rpc_client_t *c, const char *path, const void *data,
                        size_t len, void **reply, size_t *reply_len,
                        int64_t timeout_ms, rpc_status_t *status);

/**
 * Make every call in flight on this client return now (with CANCELLED) and
 * every later call fail at once with CBM_ESHUTDOWN. Thread-safe; for a worker
 * that stops while a long poll is out.
 */
void rpc_client_cancel_all(rpc_client_t *c);

#endif
