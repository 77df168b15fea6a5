/*
 * client.c - blocking unary calls for the worker SDK, the CLI and the tests.
 *
 * One channel per rpc_client_t; each call gets its own pluck completion
 * queue, so any number of threads can call at once without sharing a queue.
 * The gRPC C core only does I/O while some thread waits on a queue, and a
 * pluck waits only for its own call; a background thread parked in
 * grpc_completion_queue_next on an idle queue keeps the channel's
 * connection work (connect, keepalive, GOAWAY handling) moving between calls
 * (c-stack.md §3, pitfall 1).
 *
 * Calls in flight are kept in a locked list so that rpc_client_cancel_all()
 * can cancel them from another thread (a worker stopping during a long poll).
 */
#include "transport_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

typedef struct inflight {
    grpc_call *call;
    struct inflight *prev, *next;
} inflight_t;

struct rpc_client {
    grpc_channel *channel;
    void *handles[RPC_METHOD_COUNT];
    char *auth; /* "Bearer <token>" or NULL */
    size_t max_message;
    grpc_completion_queue *idle_cq;
    uv_thread_t idle_thread;
    uv_mutex_t lock; /* guards calls, stopped */
    inflight_t *calls;
    int stopped;
};

static void idle_thread_main(void *arg)
{
    rpc_client_t *c = arg;
    while (grpc_completion_queue_next(c->idle_cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                      NULL).type != GRPC_QUEUE_SHUTDOWN)
        ;
}

int rpc_client_create(const rpc_client_options_t *o, rpc_client_t **out, cbm_error_t *err)
{
    rpc_client_t *c;
    grpc_channel_credentials *creds;

    *out = NULL;
    if (o == NULL || o->target == NULL || o->target[0] == '\0')
        return cbm_error_set(err, CBM_EINVAL, "rpc client: target required");
    if ((o->tls_cert_pem == NULL) != (o->tls_key_pem == NULL))
        return cbm_error_set(err, CBM_EINVAL, "rpc client: mTLS needs both a certificate and a key");
    if (o->max_message_bytes > INT_MAX)
        return cbm_error_set(err, CBM_EINVAL, "rpc client: max_message_bytes over %d", INT_MAX);
    if (rpc_methods_check() != 0)
        return cbm_error_set(err, CBM_EINVAL,
                             "rpc client: method table does not match the .proto files");

    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return cbm_error_set(err, CBM_ENOMEM, "rpc client: out of memory");
    if (uv_mutex_init(&c->lock) != 0) {
        free(c);
        return cbm_error_set(err, CBM_EIO, "rpc client: uv_mutex_init failed");
    }
    c->max_message = o->max_message_bytes ? o->max_message_bytes : RPC_DEFAULT_MAX_MESSAGE;
    if (o->token != NULL && o->token[0] != '\0') {
        size_t n = strlen(o->token) + sizeof("Bearer ");
        c->auth = malloc(n);
        if (c->auth == NULL) {
            uv_mutex_destroy(&c->lock);
            free(c);
            return cbm_error_set(err, CBM_ENOMEM, "rpc client: out of memory");
        }
        snprintf(c->auth, n, "Bearer %s", o->token);
    }

    grpc_init();
    if (o->tls || o->tls_root_pem != NULL || o->tls_cert_pem != NULL) {
        grpc_ssl_pem_key_cert_pair pair = {o->tls_key_pem, o->tls_cert_pem};
        creds = grpc_ssl_credentials_create(o->tls_root_pem,
                                            o->tls_cert_pem != NULL ? &pair : NULL, NULL, NULL);
    } else {
        creds = grpc_insecure_credentials_create();
    }
    grpc_arg args[6] = {
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = (int)c->max_message},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
         .value.integer = (int)c->max_message},
    };
    size_t nargs = 2;
    if (o->tls_server_name != NULL) {
        args[nargs].type = GRPC_ARG_STRING;
        args[nargs].key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        args[nargs].value.string = (char *)(uintptr_t)o->tls_server_name;
        nargs++;
    }
    if (o->max_reconnect_backoff_ms > 0) {
        args[nargs].type = GRPC_ARG_INTEGER;
        args[nargs].key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
        args[nargs].value.integer = o->max_reconnect_backoff_ms;
        nargs++;
        args[nargs].type = GRPC_ARG_INTEGER;
        args[nargs].key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
        args[nargs].value.integer = o->max_reconnect_backoff_ms < 1000 ? o->max_reconnect_backoff_ms : 1000;
        nargs++;
    }
    grpc_channel_args cargs = {nargs, args};
    c->channel = creds != NULL ? grpc_channel_create(o->target, creds, &cargs) : NULL;
    if (creds != NULL)
        grpc_channel_credentials_release(creds);
    if (c->channel == NULL) {
        free(c->auth);
        uv_mutex_destroy(&c->lock);
        free(c);
        grpc_shutdown();
        return cbm_error_set(err, CBM_EIO, "rpc client: cannot create a channel to %s", o->target);
    }
    for (int m = 0; m < RPC_METHOD_COUNT; m++)
        c->handles[m] = grpc_channel_register_call(c->channel,
                                                   rpc_method_path((rpc_method_t)m), NULL, NULL);
    c->idle_cq = grpc_completion_queue_create_for_next(NULL);
    if (uv_thread_create(&c->idle_thread, idle_thread_main, c) != 0) {
        grpc_completion_queue_shutdown(c->idle_cq);
        idle_thread_main(c);
        grpc_completion_queue_destroy(c->idle_cq);
        grpc_channel_destroy(c->channel);
        free(c->auth);
        uv_mutex_destroy(&c->lock);
        free(c);
        grpc_shutdown();
        return cbm_error_set(err, CBM_EIO, "rpc client: cannot start its thread");
    }
    *out = c;
    return 0;
}

void rpc_client_cancel_all(rpc_client_t *c)
{
    uv_mutex_lock(&c->lock);
    c->stopped = 1;
    for (inflight_t *f = c->calls; f != NULL; f = f->next)
        grpc_call_cancel(f->call, NULL);
    uv_mutex_unlock(&c->lock);
}

void rpc_client_destroy(rpc_client_t *c)
{
    if (c == NULL)
        return;
    rpc_client_cancel_all(c);
    grpc_completion_queue_shutdown(c->idle_cq);
    uv_thread_join(&c->idle_thread);
    grpc_completion_queue_destroy(c->idle_cq);
    grpc_channel_destroy(c->channel);
    free(c->auth);
    uv_mutex_destroy(&c->lock);
    free(c);
    grpc_shutdown();
}

static void set_status(rpc_status_t *st, grpc_status_code code, const char *fmt, ...) CBM_PRINTF(3, 4);
static void set_status(rpc_status_t *st, grpc_status_code code, const char *fmt, ...)
{
    if (st != NULL) {
        va_list ap;
        st->code = code;
        va_start(ap, fmt);
        vsnprintf(st->message, sizeof(st->message), fmt, ap);
        va_end(ap);
    }
}

/* One call: handle != NULL for a registered method, else path. */
static int do_call(rpc_client_t *c, void *handle, const char *path, const void *data,
                   size_t len, void **reply, size_t *reply_len, int64_t timeout_ms,
                   rpc_status_t *st)
{
    grpc_completion_queue *cq;
    grpc_call *call;
    gpr_timespec deadline;
    inflight_t node = {0};
    grpc_metadata auth_md;
    grpc_metadata_array imd, tmd;
    grpc_byte_buffer *send_bb = NULL, *recv_bb = NULL;
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    size_t n = 0;
    int rc;

    *reply = NULL;
    *reply_len = 0;
    if (data != NULL && len > c->max_message) {
        set_status(st, GRPC_STATUS_RESOURCE_EXHAUSTED,
                   "request of %zu bytes exceeds the %zu-byte message limit", len, c->max_message);
        return CBM_EINVAL;
    }
    deadline = timeout_ms > 0
        ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN))
        : gpr_inf_future(GPR_CLOCK_REALTIME);

    cq = grpc_completion_queue_create_for_pluck(NULL);
    uv_mutex_lock(&c->lock);
    if (c->stopped) {
        uv_mutex_unlock(&c->lock);
        grpc_completion_queue_shutdown(cq);
        grpc_completion_queue_destroy(cq);
        set_status(st, GRPC_STATUS_CANCELLED, "client is stopping");
        return CBM_ESHUTDOWN;
    }
    if (handle != NULL) {
        call = grpc_channel_create_registered_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS,
                                                   cq, handle, deadline, NULL);
    } else {
        grpc_slice method = grpc_slice_from_copied_string(path);
        call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                        method, NULL, deadline, NULL);
        grpc_slice_unref(method);
    }
    node.call = call;
    node.next = c->calls;
    if (c->calls != NULL)
        c->calls->prev = &node;
    c->calls = &node;
    uv_mutex_unlock(&c->lock);

    grpc_metadata_array_init(&imd);
    grpc_metadata_array_init(&tmd);
    memset(ops, 0, sizeof(ops));
    memset(&auth_md, 0, sizeof(auth_md));
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (c->auth != NULL) {
        auth_md.key = grpc_slice_from_static_string("authorization");
        auth_md.value = grpc_slice_from_static_string(c->auth);
        ops[n].data.send_initial_metadata.count = 1;
        ops[n].data.send_initial_metadata.metadata = &auth_md;
    }
    n++;
    if (data != NULL) {
        grpc_slice s = grpc_slice_from_copied_buffer(data, len);
        send_bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = send_bb;
        n++;
    }
    ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n++].data.recv_initial_metadata.recv_initial_metadata = &imd;
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &recv_bb;
    ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[n].data.recv_status_on_client.trailing_metadata = &tmd;
    ops[n].data.recv_status_on_client.status = &code;
    ops[n].data.recv_status_on_client.status_details = &details;
    n++;

    grpc_call_error e = grpc_call_start_batch(call, ops, n, &node, NULL);
    if (e != GRPC_CALL_OK) {
        set_status(st, GRPC_STATUS_INTERNAL, "grpc_call_start_batch: error %d", (int)e);
        rc = CBM_EIO;
    } else {
        grpc_event ev = grpc_completion_queue_pluck(cq, &node,
                                                    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
            set_status(st, GRPC_STATUS_INTERNAL, "call batch failed");
            rc = CBM_EIO;
        } else {
            char *msg = grpc_slice_to_c_string(details);
            set_status(st, code, "%s", msg);
            gpr_free(msg);
            rc = rpc_status_to_cbm(code);
            if (code == GRPC_STATUS_OK && recv_bb != NULL) {
                grpc_byte_buffer_reader r;
                if (grpc_byte_buffer_reader_init(&r, recv_bb)) {
                    grpc_slice all = grpc_byte_buffer_reader_readall(&r);
                    grpc_byte_buffer_reader_destroy(&r);
                    *reply_len = GRPC_SLICE_LENGTH(all);
                    *reply = malloc(*reply_len ? *reply_len : 1);
                    if (*reply == NULL) {
                        *reply_len = 0;
                        set_status(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                        rc = CBM_ENOMEM;
                    } else {
                        memcpy(*reply, GRPC_SLICE_START_PTR(all), *reply_len);
                    }
                    grpc_slice_unref(all);
                } else {
                    set_status(st, GRPC_STATUS_INTERNAL, "cannot read the reply");
                    rc = CBM_EIO;
                }
            }
        }
    }

    uv_mutex_lock(&c->lock);
    if (node.prev != NULL)
        node.prev->next = node.next;
    else
        c->calls = node.next;
    if (node.next != NULL)
        node.next->prev = node.prev;
    uv_mutex_unlock(&c->lock);

    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&imd);
    grpc_metadata_array_destroy(&tmd);
    if (send_bb != NULL)
        grpc_byte_buffer_destroy(send_bb);
    if (recv_bb != NULL)
        grpc_byte_buffer_destroy(recv_bb);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_completion_queue_destroy(cq);
    return rc;
}

int rpc_client_call_raw(rpc_client_t *c, const char *path, const void *data, size_t len,
                        void **reply, size_t *reply_len, int64_t timeout_ms, rpc_status_t *st)
{
    return do_call(c, NULL, path, data, len, reply, reply_len, timeout_ms, st);
}

int rpc_client_call(rpc_client_t *c, rpc_method_t m, const ProtobufCMessage *request,
                    ProtobufCMessage **reply, int64_t timeout_ms, rpc_status_t *st)
{
    uint8_t stackbuf[512];
    uint8_t *buf = stackbuf;
    void *out = NULL;
    size_t out_len = 0;
    int rc;

    *reply = NULL;
    if ((unsigned)m >= RPC_METHOD_COUNT || request == NULL ||
        request->descriptor != rpc_method_input(m)) {
        set_status(st, GRPC_STATUS_INVALID_ARGUMENT, "request is not of the method's type");
        return CBM_EINVAL;
    }
    size_t n = protobuf_c_message_get_packed_size(request);
    if (n > sizeof(stackbuf)) {
        buf = malloc(n);
        if (buf == NULL) {
            set_status(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            return CBM_ENOMEM;
        }
    }
    protobuf_c_message_pack(request, buf);
    rc = do_call(c, c->handles[m], NULL, buf, n, &out, &out_len, timeout_ms, st);
    if (buf != stackbuf)
        free(buf);
    if (rc == 0) {
        *reply = protobuf_c_message_unpack(rpc_method_output(m), NULL, out_len, out);
        if (*reply == NULL) {
            set_status(st, GRPC_STATUS_INTERNAL, "reply does not decode as %s",
                       rpc_method_output(m)->name);
            rc = CBM_EIO;
        }
    }
    free(out);
    return rc;
}
