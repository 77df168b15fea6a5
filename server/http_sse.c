/*
 * http_sse.c - server-sent events (docs/http.md, "Live updates"): one
 * execution's new events and state, or the list's changed executions.
 *
 * Polling, on purpose: a stream is libmicrohttpd's content reader, run on
 * its connection's own thread (http.c), which sleeps POLL_MS between two
 * reads of the store through the engine's public API. It costs one small
 * query per stream and tick, touches nothing on the engine's loop, needs no
 * subscription bookkeeping in the engine, and is correct across engines on
 * one database (it reads what is committed, whoever committed it). A hook
 * on the engine's commits would answer sooner and cost less with many
 * viewers; the consoles this serves are few.
 */
#include "http.h"

#include <inttypes.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cbm_internal.h"
#include "workflow_service.h"

#define POLL_MS 250
#define KEEPALIVE_MS 15000
#define LIST_LIMIT 100

typedef struct seen {
    char id[37];
    int64_t seq;
} seen_t;

typedef struct stream {
    http_srv_t *srv;
    int list;                /* the list (else one execution) */
    char id[37];
    int64_t after;           /* last seq sent */
    Cerebelum__V1__ExecutionStatus status;
    char *blueprint;
    seen_t *seen;
    size_t nseen;
    char *buf;
    size_t len, off, cap;
    int polled, ended, warned;
    uint64_t last_write_ms;
} stream_t;

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static int put(stream_t *s, const char *text)
{
    size_t n = strlen(text);
    if (s->len + n + 1 > s->cap) {
        size_t cap = (s->len + n + 1) * 2;
        char *b = realloc(s->buf, cap);
        if (b == NULL) return -1;
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, text, n + 1);
    s->len += n;
    return 0;
}

/* "id: ..\nevent: NAME\ndata: JSON\n\n" (JSON printed unformatted: one line). */
static int put_event(stream_t *s, const char *name, int64_t id, const cJSON *data)
{
    char head[96];
    char *text = cJSON_PrintUnformatted(data);
    int rc;
    if (text == NULL) return -1;
    if (id > 0) snprintf(head, sizeof(head), "id: %" PRId64 "\nevent: %s\ndata: ", id, name);
    else snprintf(head, sizeof(head), "event: %s\ndata: ", name);
    rc = put(s, head) != 0 || put(s, text) != 0 || put(s, "\n\n") != 0 ? -1 : 0;
    cJSON_free(text);
    return rc;
}

/* GetExecution's reply as JSON ({"execution", "state"}), or NULL with rc. */
static cJSON *execution_json(stream_t *s, int *rc, cbm_error_t *err)
{
    Cerebelum__V1__GetExecutionRequest rq = CEREBELUM__V1__GET_EXECUTION_REQUEST__INIT;
    ProtobufCMessage *out = NULL;
    cJSON *j;

    rq.execution_id = s->id;
    if ((*rc = svc_run(http_engine(s->srv), RPC_GET_EXECUTION, &rq.base, &out, err)) != 0)
        return NULL;
    j = http_pb_to_json(out);
    protobuf_c_message_free_unpacked(out, NULL);
    if (j == NULL) *rc = CBM_ENOMEM;
    return j;
}

static bool final_status(const cJSON *x)
{
    const char *st = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(x, "execution"),
                                         "status"));
    return st != NULL && (strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0 ||
                          strcmp(st, "cancelled") == 0);
}

static void warn(stream_t *s, int rc, const char *msg)
{
    char line[400];
    if (s->warned++) return; /* once per outage */
    line[0] = ':';
    line[1] = ' ';
    /* gRPC's wording: a server error gets a reference, its detail the log */
    svc_error_text(rc, msg, line + 2, sizeof(line) - 2);
    for (char *p = line; *p != '\0'; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    /* a comment line, then the blank line that ends it */
    if (put(s, line) == 0) put(s, "\n\n");
}

static void poll_execution(stream_t *s)
{
    cbm_event_t *evs = NULL;
    size_t n = 0;
    cbm_error_t err = {0};
    cJSON *x;
    int rc;

    rc = cbm_execution_history(http_engine(s->srv), s->id, s->after + 1, &evs, &n, &err);
    if (rc != 0) {
        warn(s, rc, err.message);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject(), *p = cJSON_Parse(evs[i].payload);
        if (e == NULL) {
            cJSON_Delete(p);
            break;
        }
        cJSON_AddNumberToObject(e, "seq", (double)evs[i].seq);
        cJSON_AddStringToObject(e, "type", evs[i].type);
        if (p != NULL) cJSON_AddItemToObject(e, "payload", p);
        else cJSON_AddNullToObject(e, "payload");
        cJSON_AddNumberToObject(e, "recorded_at_ms", (double)(evs[i].recorded_at_us / 1000));
        rc = put_event(s, "history", evs[i].seq, e);
        cJSON_Delete(e);
        if (rc != 0) break;
        s->after = evs[i].seq;
    }
    cbm_events_free(evs, n);
    if (n == 0 && s->polled > 1) return;
    if ((x = execution_json(s, &rc, &err)) == NULL) {
        warn(s, rc, err.message);
        return;
    }
    s->warned = 0;
    if (final_status(x)) {
        const cJSON *last = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(x, "execution"), "last_seq");
        /* Ended, and every event up to its last was sent: the end. */
        if (cJSON_IsNumber(last) && (int64_t)last->valuedouble <= s->after) {
            put_event(s, "end", 0, x);
            s->ended = 1;
            cJSON_Delete(x);
            return;
        }
    }
    put_event(s, "execution", 0, x);
    cJSON_Delete(x);
}

static void poll_list(stream_t *s)
{
    Cerebelum__V1__ListExecutionsRequest rq = CEREBELUM__V1__LIST_EXECUTIONS_REQUEST__INIT;
    ProtobufCMessage *out = NULL;
    cbm_error_t err = {0};
    const Cerebelum__V1__ListExecutionsResponse *lr;
    seen_t *now;
    int rc;

    rq.status = s->status;
    if (s->blueprint != NULL) rq.blueprint = s->blueprint;
    rq.limit = LIST_LIMIT;
    if ((rc = svc_run(http_engine(s->srv), RPC_LIST_EXECUTIONS, &rq.base, &out, &err)) != 0)
    {
        warn(s, rc, err.message);
        return;
    }
    s->warned = 0;
    lr = (const void *)out;
    if ((now = calloc(lr->n_executions + 1, sizeof(*now))) == NULL) goto out;
    for (size_t i = 0; i < lr->n_executions; i++) {
        const Cerebelum__V1__Execution *x = lr->executions[i];
        int64_t seq = (int64_t)x->last_seq;
        bool same = false;
        snprintf(now[i].id, sizeof(now[i].id), "%s", x->execution_id);
        now[i].seq = seq;
        for (size_t k = 0; k < s->nseen && !same; k++)
            same = strcmp(s->seen[k].id, now[i].id) == 0 && s->seen[k].seq == seq;
        if (!same) {
            cJSON *j = http_pb_to_json(&x->base);
            if (j != NULL) put_event(s, "execution", 0, j);
            cJSON_Delete(j);
        }
    }
    free(s->seen);
    s->seen = now;
    s->nseen = lr->n_executions;
out:
    protobuf_c_message_free_unpacked(out, NULL);
}

static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max)
{
    stream_t *s = cls;
    (void)pos;

    for (;;) {
        if (s->off < s->len) {
            size_t n = s->len - s->off < max ? s->len - s->off : max;
            memcpy(out, s->buf + s->off, n);
            s->off += n;
            s->last_write_ms = mono_ms();
            return (ssize_t)n;
        }
        s->off = s->len = 0;
        if (s->ended || http_stopping(s->srv)) return MHD_CONTENT_READER_END_OF_STREAM;
        if (s->polled) uv_sleep(POLL_MS);
        if (http_stopping(s->srv)) return MHD_CONTENT_READER_END_OF_STREAM;
        s->polled++;
        if (s->list) poll_list(s);
        else poll_execution(s);
        if (s->len == 0 && mono_ms() - s->last_write_ms >= KEEPALIVE_MS) put(s, ": keepalive\n\n");
    }
}

static void stream_free(void *cls)
{
    stream_t *s = cls;
    free(s->blueprint);
    free(s->seen);
    free(s->buf);
    free(s);
}

static int open_stream(stream_t *s, http_reply_t *rp)
{
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
                                                               reader, s, stream_free);
    if (r == NULL) {
        stream_free(s);
        return http_error(rp, 500, "out of memory");
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    s->last_write_ms = mono_ms();
    rp->stream = r;
    return 0;
}

int http_sse_execution(const http_req_t *r, const char *id, http_reply_t *rp)
{
    stream_t *s;
    cbm_execution_info_t *x = NULL;
    cbm_error_t err = {0};
    const char *from = http_arg(r, "after_seq");
    int rc;

    /* Unknown: a plain 404, no stream. */
    if ((rc = cbm_execution_get(http_engine(r->srv), id, &x, &err)) != 0)
        return http_error_rc(rp, rc, err.message);
    cbm_execution_info_free(x);
    if (from == NULL)
        from = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Last-Event-ID");
    if ((s = calloc(1, sizeof(*s))) == NULL) return http_error(rp, 500, "out of memory");
    s->srv = r->srv;
    snprintf(s->id, sizeof(s->id), "%s", id);
    if (from != NULL && from[0] != '\0') {
        char *end;
        long long v = strtoll(from, &end, 10);
        if (*end != '\0' || v < 0) {
            stream_free(s);
            return http_error(rp, 400, "'after_seq' (or Last-Event-ID) must be a seq");
        }
        s->after = v;
    }
    return open_stream(s, rp);
}

int http_sse_list(const http_req_t *r, http_reply_t *rp)
{
    const char *st = http_arg(r, "status"), *bp = http_arg(r, "blueprint");
    stream_t *s = calloc(1, sizeof(*s));

    if (s == NULL) return http_error(rp, 500, "out of memory");
    s->srv = r->srv;
    s->list = 1;
    if (st != NULL && st[0] != '\0') {
        /* the list route's own check (same names) */
        static const char *const names[] = {"running", "sleeping", "awaiting_approval",
                                            "awaiting_signal", "completed", "failed",
                                            "cancelled", "awaiting_child"};
        s->status = CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_UNSPECIFIED;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (strcmp(st, names[i]) == 0) s->status = (Cerebelum__V1__ExecutionStatus)(i + 1);
        if (s->status == CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_UNSPECIFIED) {
            stream_free(s);
            return http_error(rp, 400, "unknown status '%s'", st);
        }
    }
    if (bp != NULL && bp[0] != '\0' && (s->blueprint = strdup(bp)) == NULL) {
        stream_free(s);
        return http_error(rp, 500, "out of memory");
    }
    return open_stream(s, rp);
}
