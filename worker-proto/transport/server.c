/*
 * server.c - the gRPC server of the wire protocol on a libuv loop.
 *
 * The gRPC C core has no server layer: every call is a small state machine
 * driven by batches and tags. Each tag here is an rpc_tag_t with a function;
 * ONE thread blocks in grpc_completion_queue_next and appends every completed
 * tag to a locked list, then wakes the loop with uv_async_send; the loop
 * drains the list and runs each tag's function. So every piece of call state
 * is touched by the loop thread only, and grpc_call_start_batch (which must
 * be serialised per call) is only ever called from there.
 *
 * A call (rpc_call_t) has up to three tags:
 *   t_new    the core matched an incoming call to one of our armed requests
 *            (success=0: the server is shutting down and the request died);
 *   t_close  RECV_CLOSE_ON_SERVER, started as soon as the call arrives: it
 *            completes when the status is sent or, before that, when the
 *            call dies (client cancel, deadline, broken connection, shutdown)
 *            -- that is how a parked call learns it is gone;
 *   t_send   the one reply batch (initial metadata, message, status).
 * A call is freed when no batch is outstanding and it is no longer with a
 * handler. Requests are armed per method (RPC_ARMED_PER_METHOD) and re-armed
 * as each is used; calls beyond that wait inside the core, not dropped.
 *
 * Unregistered paths reach a generic request (grpc_server_request_call);
 * without one they would hang until the client's deadline.
 *
 * Shutdown (all on the loop): grpc_server_shutdown_and_notify +
 * grpc_server_cancel_all_calls; armed requests come back with success=0 and
 * parked calls through t_close (their cancel callbacks run); once the notify
 * tag is in and no call or request is left, grpc_server_destroy and
 * grpc_completion_queue_shutdown; the CQ thread sees GRPC_QUEUE_SHUTDOWN,
 * posts a last wake-up and exits; the loop joins it, destroys the queue and
 * only then closes the uv_async (sending on a closed handle is undefined).
 */
#include "transport_internal.h"

#include <assert.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#define RPC_ARMED_PER_METHOD 4
#define RPC_ARMED_GENERIC 2
#define RPC_GENERIC (-1)

typedef struct rpc_tag rpc_tag_t;
struct rpc_tag {
    void (*fn)(rpc_tag_t *t, int ok);
    rpc_tag_t *next;
    int ok;
};

typedef enum call_state {
    CALL_ARMED,    /* waiting in the core for a client */
    CALL_HANDLER,  /* with a handler, not answered yet */
    CALL_ANSWERED, /* reply or status batch started */
    CALL_GONE,     /* died before an answer; handler told */
} call_state_t;

struct rpc_call {
    rpc_server_t *srv;
    int method; /* rpc_method_t, or RPC_GENERIC */
    call_state_t state;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_call_details details; /* generic requests only */
    rpc_tag_t t_new, t_close, t_send;
    int close_cancelled; /* written by the core when t_close completes */
    int close_pending, send_pending;
    int in_handler; /* never free under a running handler */
    ProtobufCMessage *request;
    grpc_byte_buffer *reply_bb;
    rpc_cancel_cb cancel_cb;
    void *cancel_data;
    char *peer;
};

typedef enum server_state {
    SRV_RUNNING,
    SRV_SHUTTING_DOWN, /* waiting for the core and the calls */
    SRV_DRAINING,      /* queue shut down, waiting for the CQ thread */
    SRV_CLOSED,        /* shutdown callback ran */
} server_state_t;

struct rpc_server {
    uv_loop_t *loop;
    uv_thread_t loop_thread;
    grpc_server *server;
    grpc_completion_queue *cq;
    void *method_handles[RPC_METHOD_COUNT];
    rpc_handler_cb handlers[RPC_METHOD_COUNT];
    void *user_data;
    char *auth_expected; /* "Bearer <token>", or NULL */
    size_t max_message;
    int port;

    uv_thread_t cq_thread;
    uv_async_t async;
    uv_mutex_t lock; /* guards head, tail, cq_done */
    rpc_tag_t *head, *tail;
    int cq_done;

    server_state_t state;
    int armed; /* requests armed in the core */
    int live;  /* calls arrived and not freed */
    int notified;
    rpc_tag_t t_shutdown;
    rpc_shutdown_cb shutdown_cb;
    void *shutdown_data;
};

static void on_new_call(rpc_tag_t *t, int ok);
static void on_close(rpc_tag_t *t, int ok);
static void on_send(rpc_tag_t *t, int ok);
static void check_finished(rpc_server_t *srv);

static int on_loop_thread(const rpc_server_t *srv)
{
    uv_thread_t self = uv_thread_self();
    return uv_thread_equal(&self, &srv->loop_thread);
}

/* ---- the completion-queue thread ---------------------------------------- */

static void cq_thread_main(void *arg)
{
    rpc_server_t *srv = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(srv->cq,
            gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        rpc_tag_t *t = ev.tag;
        t->ok = ev.success;
        t->next = NULL;
        uv_mutex_lock(&srv->lock);
        if (srv->tail != NULL)
            srv->tail->next = t;
        else
            srv->head = t;
        srv->tail = t;
        uv_mutex_unlock(&srv->lock);
        uv_async_send(&srv->async);
    }
    uv_mutex_lock(&srv->lock);
    srv->cq_done = 1;
    uv_mutex_unlock(&srv->lock);
    uv_async_send(&srv->async);
}

static void on_async_closed(uv_handle_t *h)
{
    rpc_server_t *srv = h->data;
    srv->state = SRV_CLOSED;
    if (srv->shutdown_cb != NULL)
        srv->shutdown_cb(srv, srv->shutdown_data);
}

static void on_async(uv_async_t *h)
{
    rpc_server_t *srv = h->data;
    uv_mutex_lock(&srv->lock);
    rpc_tag_t *t = srv->head;
    int done = srv->cq_done;
    srv->head = srv->tail = NULL;
    uv_mutex_unlock(&srv->lock);

    while (t != NULL) {
        rpc_tag_t *next = t->next;
        t->fn(t, t->ok);
        t = next;
    }
    /* cq_done is set after the thread's last append, so every tag it posted
     * was in the list taken above. */
    if (done && srv->state == SRV_DRAINING && srv->cq != NULL) {
        uv_thread_join(&srv->cq_thread);
        grpc_completion_queue_destroy(srv->cq);
        srv->cq = NULL;
        uv_close((uv_handle_t *)&srv->async, on_async_closed);
    }
}

/* ---- arming requests ------------------------------------------------------ */

static void call_free(rpc_call_t *c)
{
    rpc_server_t *srv = c->srv;
    int was_live = c->call != NULL;
    if (c->call != NULL)
        grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    if (c->method == RPC_GENERIC)
        grpc_call_details_destroy(&c->details);
    if (c->payload != NULL)
        grpc_byte_buffer_destroy(c->payload);
    if (c->reply_bb != NULL)
        grpc_byte_buffer_destroy(c->reply_bb);
    if (c->request != NULL)
        protobuf_c_message_free_unpacked(c->request, NULL);
    if (c->peer != NULL)
        gpr_free(c->peer);
    free(c);
    if (was_live) {
        srv->live--;
        check_finished(srv);
    }
}

static void maybe_free(rpc_call_t *c)
{
    if (c->in_handler || c->close_pending || c->send_pending ||
        c->state == CALL_HANDLER)
        return;
    call_free(c);
}

static int arm(rpc_server_t *srv, int method)
{
    rpc_call_t *c = calloc(1, sizeof(*c));
    grpc_call_error e;
    if (c == NULL)
        return CBM_ENOMEM;
    c->srv = srv;
    c->method = method;
    c->state = CALL_ARMED;
    c->t_new.fn = on_new_call;
    c->t_close.fn = on_close;
    c->t_send.fn = on_send;
    grpc_metadata_array_init(&c->md);
    if (method == RPC_GENERIC) {
        grpc_call_details_init(&c->details);
        e = grpc_server_request_call(srv->server, &c->call, &c->details, &c->md,
                                     srv->cq, srv->cq, &c->t_new);
    } else {
        e = grpc_server_request_registered_call(srv->server,
            srv->method_handles[method], &c->call, &c->deadline, &c->md,
            &c->payload, srv->cq, srv->cq, &c->t_new);
    }
    if (e != GRPC_CALL_OK) {
        gpr_log(GPR_ERROR, "cerebelum: cannot arm a request: grpc_call_error %d", (int)e);
        call_free(c);
        return CBM_EIO;
    }
    srv->armed++;
    return 0;
}

/* ---- answering ------------------------------------------------------------ */

/* Start the answer batch: initial metadata, the message if any, the status. */
static int send_answer(rpc_call_t *c, grpc_byte_buffer *bb, grpc_status_code code,
                       const char *message)
{
    grpc_op ops[3];
    size_t n = 0;
    grpc_slice details = grpc_slice_from_copied_string(message ? message : "");
    grpc_call_error e;

    memset(ops, 0, sizeof(ops));
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].data.send_initial_metadata.count = 0;
    n++;
    if (bb != NULL) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = bb;
        n++;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.trailing_metadata_count = 0;
    ops[n].data.send_status_from_server.status = code;
    ops[n].data.send_status_from_server.status_details =
        message != NULL ? &details : NULL;
    n++;

    c->state = CALL_ANSWERED;
    c->reply_bb = bb; /* destroyed when the call is freed */
    c->send_pending = 1;
    e = grpc_call_start_batch(c->call, ops, n, &c->t_send, NULL);
    grpc_slice_unref(details); /* only has to live through start_batch */
    if (e != GRPC_CALL_OK) {
        gpr_log(GPR_ERROR, "cerebelum: cannot send an answer: grpc_call_error %d", (int)e);
        c->send_pending = 0;
        maybe_free(c);
        return CBM_EIO;
    }
    return 0;
}

static int vfail(rpc_call_t *c, grpc_status_code code, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    return send_answer(c, NULL, code, msg);
}

static int fail_now(rpc_call_t *c, grpc_status_code code, const char *fmt, ...) CBM_PRINTF(3, 4);
static int fail_now(rpc_call_t *c, grpc_status_code code, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = vfail(c, code, fmt, ap);
    va_end(ap);
    return rc;
}

int rpc_call_fail(rpc_call_t *c, grpc_status_code code, const char *fmt, ...)
{
    va_list ap;
    int rc;
    assert(on_loop_thread(c->srv));
    assert(c->state == CALL_HANDLER && "answering a call twice, or after its cancel callback");
    assert(code != GRPC_STATUS_OK);
    va_start(ap, fmt);
    rc = vfail(c, code, fmt, ap);
    va_end(ap);
    return rc;
}

int rpc_call_reply(rpc_call_t *c, const ProtobufCMessage *reply)
{
    assert(on_loop_thread(c->srv));
    assert(c->state == CALL_HANDLER && "answering a call twice, or after its cancel callback");
    assert(reply != NULL && reply->descriptor == rpc_method_output((rpc_method_t)c->method));

    size_t n = protobuf_c_message_get_packed_size(reply);
    if (n > c->srv->max_message) {
        fail_now(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                 "reply of %zu bytes exceeds the %zu-byte message limit",
                 n, c->srv->max_message);
        return CBM_EINVAL;
    }
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(reply, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return send_answer(c, bb, GRPC_STATUS_OK, NULL);
}

/* ---- call accessors ------------------------------------------------------- */

rpc_method_t rpc_call_method(const rpc_call_t *c)
{
    return (rpc_method_t)c->method;
}

int64_t rpc_call_remaining_ms(const rpc_call_t *c)
{
    gpr_timespec dl = gpr_convert_clock_type(c->deadline, GPR_CLOCK_MONOTONIC);
    if (gpr_time_cmp(dl, gpr_inf_future(GPR_CLOCK_MONOTONIC)) >= 0)
        return INT64_MAX;
    gpr_timespec left = gpr_time_sub(dl, gpr_now(GPR_CLOCK_MONOTONIC));
    int64_t ms = gpr_time_to_millis(left);
    return ms > 0 ? ms : 0;
}

const char *rpc_call_peer(rpc_call_t *c)
{
    if (c->peer == NULL && c->call != NULL)
        c->peer = grpc_call_get_peer(c->call);
    return c->peer != NULL ? c->peer : "";
}

void rpc_call_on_cancel(rpc_call_t *c, rpc_cancel_cb cb, void *call_data)
{
    assert(on_loop_thread(c->srv));
    assert(c->state == CALL_HANDLER);
    c->cancel_cb = cb;
    c->cancel_data = call_data;
}

/* ---- the call state machine ----------------------------------------------- */

/* Constant-time compare of the authorization header with the expected value,
 * so the time taken does not tell how much of a guessed token was right. */
static int auth_ok(const rpc_call_t *c, const char *expected)
{
    size_t want = strlen(expected);
    int found = 0;
    for (size_t i = 0; i < c->md.count; i++) {
        const grpc_metadata *m = &c->md.metadata[i];
        if (!grpc_slice_str_cmp(m->key, "authorization")) {
            size_t len = GRPC_SLICE_LENGTH(m->value);
            const unsigned char *v = GRPC_SLICE_START_PTR(m->value);
            unsigned char diff = len != want;
            if (len == 0)
                continue;
            for (size_t j = 0; j < want; j++)
                diff |= (unsigned char)(v[j < len ? j : 0] ^ (unsigned char)expected[j]);
            found |= diff == 0;
        }
    }
    return found;
}

/* Read a varint at *p (< end); false when truncated or too long. */
static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7F) << shift;
        if ((b & 0x80) == 0) return true;
    }
    return false;
}

/*
 * Every string field of a request, nested messages included, must be valid
 * UTF-8 and hold no NUL: protobuf-c hands strings over as C strings (a NUL
 * would cut one, silently) and PostgreSQL refuses other bytes (and would
 * fail a whole group commit with them). protobuf-c keeps no lengths, so the
 * check walks the wire bytes with the message's descriptor. Returns true
 * with *field and *why set for the first bad string; false otherwise
 * (including malformed wire data, which the unpack then refuses).
 */
static bool wire_bad_string(const ProtobufCMessageDescriptor *d, const uint8_t *p,
                            const uint8_t *end, int depth, const char **field, const char **why,
                            long *at)
{
    if (depth > 32) return false;
    while (p < end) {
        uint64_t tag, len;
        const ProtobufCFieldDescriptor *f;
        if (!wire_varint(&p, end, &tag)) return false;
        switch (tag & 7) {
        case 0:
            if (!wire_varint(&p, end, &len)) return false;
            break;
        case 1:
            if (end - p < 8) return false;
            p += 8;
            break;
        case 5:
            if (end - p < 4) return false;
            p += 4;
            break;
        case 2:
            if (!wire_varint(&p, end, &len) || len > (uint64_t)(end - p)) return false;
            f = tag >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3))
                                       : NULL;
            if (f != NULL && f->type == PROTOBUF_C_TYPE_STRING) {
                long bad = cbm_text_problem((const char *)p, (size_t)len, why);
                if (bad >= 0) {
                    *field = f->name;
                    *at = bad;
                    return true;
                }
            } else if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                       wire_bad_string(f->descriptor, p, p + len, depth + 1, field, why, at)) {
                return true;
            }
            p += len;
            break;
        default:
            return false; /* groups and unknown wire types: unpack decides */
        }
    }
    return false;
}

/* NULL when the bytes do not decode; *bad_field set (and NULL returned) when
 * a string field is not valid UTF-8 or holds a NUL. */
static ProtobufCMessage *decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d,
                                char *bad, size_t badsz)
{
    grpc_byte_buffer_reader r;
    ProtobufCMessage *m = NULL;
    const char *field = NULL, *why = NULL;
    long at = 0;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return NULL;
    grpc_slice all = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    if (wire_bad_string(d, GRPC_SLICE_START_PTR(all), GRPC_SLICE_END_PTR(all), 0, &field, &why,
                        &at))
        snprintf(bad, badsz, "field %s %s (byte %ld)", field, why, at);
    else
        m = rpc_message_unpack(d, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
    return m;
}

static void dispatch(rpc_call_t *c)
{
    rpc_server_t *srv = c->srv;

    if (c->method == RPC_GENERIC) {
        char *path = grpc_slice_to_c_string(c->details.method);
        fail_now(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method %s", path);
        gpr_free(path);
        return;
    }
    if (srv->state != SRV_RUNNING) {
        fail_now(c, GRPC_STATUS_UNAVAILABLE, "server is shutting down");
        return;
    }
    if (srv->auth_expected != NULL && !auth_ok(c, srv->auth_expected)) {
        fail_now(c, GRPC_STATUS_UNAUTHENTICATED,
                 "missing or wrong bearer token (authorization metadata)");
        return;
    }
    rpc_method_t m = (rpc_method_t)c->method;
    if (srv->handlers[m] == NULL) {
        fail_now(c, GRPC_STATUS_UNIMPLEMENTED, "%s is not served here", rpc_method_path(m));
        return;
    }
    const ProtobufCMessageDescriptor *in = rpc_method_input(m);
    if (c->payload == NULL) {
        fail_now(c, GRPC_STATUS_INVALID_ARGUMENT, "no request message (expected %s)", in->name);
        return;
    }
    char bad[160] = "";
    c->request = decode(c->payload, in, bad, sizeof(bad));
    grpc_byte_buffer_destroy(c->payload);
    c->payload = NULL;
    if (bad[0] != '\0') {
        fail_now(c, GRPC_STATUS_INVALID_ARGUMENT, "%s: %s", in->name, bad);
        return;
    }
    if (c->request == NULL) {
        fail_now(c, GRPC_STATUS_INVALID_ARGUMENT,
                 "request does not decode as %s", in->name);
        return;
    }

    c->state = CALL_HANDLER;
    c->in_handler = 1;
    srv->handlers[m](c, c->request, srv->user_data);
    c->in_handler = 0;
    /* A handler that keeps a call must be able to hear that it died. */
    assert(c->state != CALL_HANDLER || c->cancel_cb != NULL);
    maybe_free(c);
}

static void on_new_call(rpc_tag_t *t, int ok)
{
    rpc_call_t *c = RPC_CONTAINER_OF(t, rpc_call_t, t_new);
    rpc_server_t *srv = c->srv;
    grpc_op op;

    srv->armed--;
    if (!ok) { /* the server is shutting down: the request died unused */
        if (c->call != NULL) {
            grpc_call_unref(c->call);
            c->call = NULL;
        }
        call_free(c);
        check_finished(srv);
        return;
    }
    srv->live++;
    if (srv->state == SRV_RUNNING && arm(srv, c->method) != 0)
        gpr_log(GPR_ERROR, "cerebelum: %s: one fewer armed request",
                c->method == RPC_GENERIC ? "generic" : rpc_method_path((rpc_method_t)c->method));

    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    c->close_pending = 1;
    if (grpc_call_start_batch(c->call, &op, 1, &c->t_close, NULL) != GRPC_CALL_OK) {
        c->close_pending = 0;
        fail_now(c, GRPC_STATUS_INTERNAL, "cannot watch the call");
        return;
    }
    dispatch(c);
}

static void on_close(rpc_tag_t *t, int ok)
{
    rpc_call_t *c = RPC_CONTAINER_OF(t, rpc_call_t, t_close);
    c->close_pending = 0;
    if (c->state == CALL_HANDLER) {
        /* Not answered, yet closed: the call died (close_cancelled is 1). */
        c->state = CALL_GONE;
        if (c->cancel_cb != NULL) {
            c->in_handler = 1;
            c->cancel_cb(c, c->cancel_data);
            c->in_handler = 0;
        }
    }
    maybe_free(c);
}

static void on_send(rpc_tag_t *t, int ok)
{
    rpc_call_t *c = RPC_CONTAINER_OF(t, rpc_call_t, t_send);
    c->send_pending = 0;
    maybe_free(c);
}

/* ---- shutdown ------------------------------------------------------------- */

static void check_finished(rpc_server_t *srv)
{
    if (srv->state != SRV_SHUTTING_DOWN || !srv->notified || srv->live > 0 ||
        srv->armed > 0)
        return;
    srv->state = SRV_DRAINING;
    grpc_server_destroy(srv->server);
    srv->server = NULL;
    grpc_completion_queue_shutdown(srv->cq);
}

static void on_shutdown_notified(rpc_tag_t *t, int ok)
{
    rpc_server_t *srv = RPC_CONTAINER_OF(t, rpc_server_t, t_shutdown);
    srv->notified = 1;
    check_finished(srv);
}

void rpc_server_shutdown(rpc_server_t *srv, rpc_shutdown_cb cb, void *data)
{
    assert(on_loop_thread(srv));
    assert(srv->state == SRV_RUNNING && "rpc_server_shutdown called twice");
    srv->state = SRV_SHUTTING_DOWN;
    srv->shutdown_cb = cb;
    srv->shutdown_data = data;
    srv->t_shutdown.fn = on_shutdown_notified;
    grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->t_shutdown);
    grpc_server_cancel_all_calls(srv->server);
}

static void free_server(rpc_server_t *srv);

void rpc_server_destroy(rpc_server_t *srv)
{
    if (srv == NULL)
        return;
    assert(srv->state == SRV_CLOSED && "destroy before the shutdown callback");
    free_server(srv);
}

int rpc_server_port(const rpc_server_t *srv)
{
    return srv->port;
}

/* ---- creation ------------------------------------------------------------- */

static grpc_server_credentials *make_credentials(const rpc_server_options_t *o)
{
    if (o->tls_cert_pem == NULL)
        return grpc_insecure_server_credentials_create();
    grpc_ssl_pem_key_cert_pair pair = {o->tls_key_pem, o->tls_cert_pem};
    return grpc_ssl_server_credentials_create_ex(o->tls_client_ca_pem, &pair, 1,
        o->tls_client_ca_pem != NULL ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                     : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        NULL);
}

/* Drain a queue nobody else waits on, after grpc_completion_queue_shutdown. */
static void drain_here(grpc_completion_queue *cq)
{
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                      NULL).type != GRPC_QUEUE_SHUTDOWN)
        ;
}

static void free_server(rpc_server_t *srv)
{
    uv_mutex_destroy(&srv->lock);
    free(srv->auth_expected);
    free(srv);
    grpc_shutdown();
}

static void on_failed_async_closed(uv_handle_t *h)
{
    free_server(h->data);
}

/* Undo a creation that failed. No CQ thread runs, so the queue is drained
 * on this thread; a started server is shut down the same way. */
static void abandon(rpc_server_t *srv, int started, int async_open)
{
    if (started) {
        grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->t_shutdown);
        grpc_server_cancel_all_calls(srv->server);
        for (;;) {
            grpc_event ev = grpc_completion_queue_next(srv->cq,
                gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
            if (ev.tag == &srv->t_shutdown)
                break;
            /* Only armed requests can be queued: nothing was answered. */
            rpc_call_t *c = RPC_CONTAINER_OF(ev.tag, rpc_call_t, t_new);
            if (c->call != NULL)
                grpc_call_unref(c->call);
            c->call = NULL;
            call_free(c);
        }
    }
    if (srv->server != NULL)
        grpc_server_destroy(srv->server);
    grpc_completion_queue_shutdown(srv->cq);
    drain_here(srv->cq);
    grpc_completion_queue_destroy(srv->cq);
    if (async_open)
        uv_close((uv_handle_t *)&srv->async, on_failed_async_closed);
    else
        free_server(srv);
}

int rpc_server_create(uv_loop_t *loop, const rpc_server_options_t *o,
                      rpc_server_t **out, cbm_error_t *err)
{
    rpc_server_t *srv;
    grpc_server_credentials *creds;
    int rc;

    *out = NULL;
    if (loop == NULL || o == NULL || o->listen_addr == NULL || o->listen_addr[0] == '\0')
        return cbm_error_set(err, CBM_EINVAL, "rpc server: listen address required");
    if ((o->tls_cert_pem == NULL) != (o->tls_key_pem == NULL))
        return cbm_error_set(err, CBM_EINVAL, "rpc server: TLS needs both a certificate and a key");
    if (o->tls_client_ca_pem != NULL && o->tls_cert_pem == NULL)
        return cbm_error_set(err, CBM_EINVAL, "rpc server: a client CA needs TLS (certificate and key)");
    if (o->max_message_bytes > INT_MAX)
        return cbm_error_set(err, CBM_EINVAL, "rpc server: max_message_bytes over %d", INT_MAX);
    if (o->token != NULL && o->token[0] == '\0')
        return cbm_error_set(err, CBM_EINVAL, "rpc server: empty token");
    if (rpc_methods_check() != 0)
        return cbm_error_set(err, CBM_EINVAL,
                             "rpc server: method table does not match the .proto files");

    srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return cbm_error_set(err, CBM_ENOMEM, "rpc server: out of memory");
    if (uv_mutex_init(&srv->lock) != 0) {
        free(srv);
        return cbm_error_set(err, CBM_EIO, "rpc server: uv_mutex_init failed");
    }
    srv->loop = loop;
    srv->loop_thread = uv_thread_self();
    srv->max_message = o->max_message_bytes ? o->max_message_bytes : RPC_DEFAULT_MAX_MESSAGE;
    srv->user_data = o->user_data;
    srv->t_shutdown.fn = on_shutdown_notified;
    memcpy(srv->handlers, o->handlers, sizeof(srv->handlers));
    if (o->token != NULL) {
        size_t n = strlen(o->token) + sizeof("Bearer ");
        srv->auth_expected = malloc(n);
        if (srv->auth_expected == NULL) {
            uv_mutex_destroy(&srv->lock);
            free(srv);
            return cbm_error_set(err, CBM_ENOMEM, "rpc server: out of memory");
        }
        snprintf(srv->auth_expected, n, "Bearer %s", o->token);
    }

    grpc_init();
    grpc_arg args[] = {
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = (int)srv->max_message},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
         .value.integer = (int)srv->max_message},
        /* Linux SO_REUSEPORT would let a second server bind a port that is
         * in use and split the traffic: a bind must fail instead. */
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0},
    };
    grpc_channel_args cargs = {sizeof(args) / sizeof(args[0]), args};
    srv->cq = grpc_completion_queue_create_for_next(NULL);
    srv->server = grpc_server_create(&cargs, NULL);
    grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
    for (int m = 0; m < RPC_METHOD_COUNT; m++) {
        srv->method_handles[m] = grpc_server_register_method(srv->server,
            rpc_method_path((rpc_method_t)m), NULL,
            GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
        if (srv->method_handles[m] == NULL) {
            abandon(srv, 0, 0);
            return cbm_error_set(err, CBM_EIO, "rpc server: cannot register %s",
                                 rpc_method_path((rpc_method_t)m));
        }
    }
    creds = make_credentials(o);
    if (creds == NULL) {
        abandon(srv, 0, 0);
        return cbm_error_set(err, CBM_EIO, "rpc server: TLS credentials refused");
    }
    srv->port = grpc_server_add_http2_port(srv->server, o->listen_addr, creds);
    grpc_server_credentials_release(creds);
    if (srv->port == 0) {
        abandon(srv, 0, 0);
        return cbm_error_set(err, CBM_EIO,
            "rpc server: cannot listen on %s (in use, bad address, or bad TLS material)",
            o->listen_addr);
    }
    rc = uv_async_init(loop, &srv->async, on_async);
    if (rc != 0) {
        abandon(srv, 0, 0);
        return cbm_error_set(err, CBM_EIO, "rpc server: uv_async_init: %s", uv_strerror(rc));
    }
    srv->async.data = srv;

    grpc_server_start(srv->server);
    srv->state = SRV_RUNNING;
    rc = 0;
    for (int m = 0; m < RPC_METHOD_COUNT && rc == 0; m++)
        for (int i = 0; i < RPC_ARMED_PER_METHOD && rc == 0; i++)
            rc = arm(srv, m);
    for (int i = 0; i < RPC_ARMED_GENERIC && rc == 0; i++)
        rc = arm(srv, RPC_GENERIC);
    if (rc == 0 && uv_thread_create(&srv->cq_thread, cq_thread_main, srv) != 0)
        rc = CBM_EIO;
    if (rc != 0) {
        abandon(srv, 1, 1);
        return cbm_error_set(err, rc, "rpc server: cannot start (%s)",
                             rc == CBM_ENOMEM ? "out of memory" : "gRPC refused");
    }
    *out = srv;
    return 0;
}
