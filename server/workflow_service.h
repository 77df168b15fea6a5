/*
 * workflow_service.h - the WorkflowService of the server (cerebelum/server.h),
 * on the public engine
 * API (cerebelum.h).
 *
 * The handlers run on the server's uv loop thread (the transport calls them
 * there) and never block it: each copies its request, hands the blocking
 * engine call to the libuv thread pool (uv_queue_work), and answers in the
 * after-work callback, back on the loop. A call that dies while its work runs
 * (client gone, deadline, server shutdown) is forgotten; the work still
 * finishes (an engine call cannot be interrupted) and its reply is dropped.
 */
#ifndef CBM_SERVER_WORKFLOW_SERVICE_H
#define CBM_SERVER_WORKFLOW_SERVICE_H

#include <uv.h>

#include "cerebelum/cerebelum.h"
#include "grpc_transport.h"

typedef struct svc svc_t;
typedef void (*svc_idle_cb)(svc_t *svc);

struct svc {
    uv_loop_t *loop;
    cbm_engine_t *engine;
    int inflight;        /* jobs queued or running (loop thread only) */
    int draining;        /* new calls are answered UNAVAILABLE */
    svc_idle_cb on_idle; /* called when draining and inflight drops to 0 */
    void *data;          /* for the owner */
    struct wsvc *ws;     /* the WorkerService (worker_service.h), or NULL */
};

/* A job of the server's begins / ends (loop thread): jobs in flight keep a
 * draining server up. */
void svc_job_begin(svc_t *svc);
void svc_job_end(svc_t *svc);

/* Fill the WorkflowService handlers into opts (user_data = svc), except
 * ListWorkers, which the WorkerService serves (wsvc_install). */
void svc_install(svc_t *svc, rpc_server_options_t *opts);

/* From now on answer new calls UNAVAILABLE ("server is shutting down"); the
 * jobs in flight finish and reply. on_idle runs (on the loop) once none is
 * left, at once if none is. */
void svc_drain(svc_t *svc, svc_idle_cb on_idle);

/* The gRPC status for a CBM_E* code. */
grpc_status_code svc_status_of(int cbm_code);

/* Answer call with rc's status: the request's own errors with detail, the
 * server's with a stable message and a reference logged with the detail
 * (no SQL text reaches a client). One line. */
void svc_fail(rpc_call_t *call, int rc, const char *detail);

/* The message svc_fail would send for rc, into msg (one line; a server
 * error is logged with a reference and the message gives the reference). */
void svc_error_text(int rc, const char *detail, char *msg, size_t cap);

/* A reply's string field: a strdup of s, or protobuf-c's shared empty
 * default for NULL or "" (which protobuf_c_message_free_unpacked knows not
 * to free). 0 or CBM_ENOMEM. */
int svc_set_str(char **field, const char *s);

/* The work of PutCouncil, GetCouncil, ListCouncils and DeleteCouncil
 * (workflow_councils.c; thread pool): method m with request rq on engine e,
 * the reply into *out (malloc'd pieces only, like svc_start_batch's). 0, or
 * the engine's CBM_E* code with err filled and *out NULL. */
int svc_council(cbm_engine_t *e, rpc_method_t m, const ProtobufCMessage *rq,
                ProtobufCMessage **out, cbm_error_t *err);

/* The work of GetHealth (workflow_health.c; thread pool): the server's
 * health (server/health.h) as a GetHealthResponse into *out (malloc'd
 * pieces only). 0, or CBM_ENOMEM/CBM_ESTATE with err filled and *out NULL;
 * a store that does not answer is a check that is not ok, not an error. */
int svc_health(cbm_engine_t *e, const ProtobufCMessage *in, ProtobufCMessage **out,
               cbm_error_t *err);

/* One WorkflowService method's work, synchronously on the calling thread
 * (the HTTP API's threads, http_api.c: the same code path as gRPC's): @p in
 * is a request of method @p m (borrowed), *out its reply (free it with
 * protobuf_c_message_free_unpacked). The checks that precheck() makes on
 * the loop for gRPC are the caller's. 0, or the engine's CBM_E* code with
 * err filled and *out NULL. Not ListWorkers (the loop's). */
int svc_run(cbm_engine_t *e, rpc_method_t m, const ProtobufCMessage *in, ProtobufCMessage **out,
            cbm_error_t *err);

/* The work of StartExecutions (workflow_batch.c; thread pool): start the
 * items of @p rq, each with its own result or error, into *out (a
 * StartExecutionsResponse, malloc'd pieces only: free it with
 * protobuf_c_message_free_unpacked). The item count is checked before
 * (1..RPC_MAX_START_BATCH). Returns 0, or CBM_ENOMEM with err filled and
 * *out NULL: an item's failure is its result, not the call's. */
int svc_start_batch(cbm_engine_t *e, const Cerebelum__V1__StartExecutionsRequest *rq,
                    ProtobufCMessage **out, cbm_error_t *err);

#endif
