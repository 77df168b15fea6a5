/*
 * handler.c - one LLM call per task (handler.h): build it (call.c), send it
 * through the shared HTTP client (http.c) while the SSE parser (sse.c)
 * reads the stream, classify what went wrong (classify.c), and end the step.
 *
 * A cancel from the server (cbm_step_on_cancel) aborts the transfer; the
 * handler still ends the step (with kind "cancelled"), and the SDK drops
 * that outcome.
 */
#include "handler.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cbm_internal.h"
#include "sse.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The stream of one call, read on the HTTP thread. */
typedef struct reading {
    sse_parser_t parser;
    sse_chat_t chat;
    llm_buf_t plain;      /* a body that is not an event stream */
    size_t max_plain;
    int kind;             /* 0 undecided, 1 event stream, 2 plain */
    http_req_t *req;
    int64_t t0, ttft_ms;
} reading_t;

static int on_body(void *ctx, const char *data, size_t len)
{
    reading_t *rd = ctx;
    int rc;

    if (rd->kind == 0)
        rd->kind = strncmp(rd->req->content_type, "text/event-stream", 17) == 0 ||
                           rd->req->content_type[0] == '\0'
                       ? 1
                       : 2;
    if (rd->kind == 2) {
        if (rd->plain.len + len > rd->max_plain) return LLM_ABORT_TOO_LARGE;
        return llm_buf_add(&rd->plain, data, len) == 0 ? 0 : LLM_ABORT_NOMEM;
    }
    rc = sse_feed(&rd->parser, data, len);
    if (rd->ttft_ms < 0 && rd->chat.content.len > 0) rd->ttft_ms = now_ms() - rd->t0;
    if (rc == 0) return 0;
    if (rc == SSE_ETOOBIG || rd->chat.too_large) return LLM_ABORT_TOO_LARGE;
    return LLM_ABORT_NOMEM;
}

typedef struct cancel {
    http_t *http;
    http_req_t *req;
} cancel_t;

static void on_cancel(void *arg)
{
    cancel_t *c = arg;
    http_abort(c->http, c->req, LLM_ABORT_CANCEL);
}

static void fail(cbm_step_out_t *out, const char *task, const llm_failure_t *f)
{
    if (strcmp(f->kind, "cancelled") != 0)
        cbm_log_warn("llm %s: %s: %s", task, f->kind, f->message);
    if (f->retryable && f->retry_after_ms >= 0)
        cbm_step_fail_after(out, f->kind, f->message, f->retry_after_ms);
    else
        cbm_step_fail(out, f->kind, f->message, f->retryable);
}

/* The headers of a call. NULL when out of memory. */
static struct curl_slist *headers(const llm_ctx_t *ctx, const char *task_id, bool stream)
{
    struct curl_slist *h = NULL, *n;
    char line[512];
    const char *fixed[] = {"Content-Type: application/json",
                           stream ? "Accept: text/event-stream" : "Accept: application/json"};

    for (size_t i = 0; i < 2; i++) {
        if ((n = curl_slist_append(h, fixed[i])) == NULL) goto oom;
        h = n;
    }
    if (task_id != NULL) {
        snprintf(line, sizeof(line), "X-Cerebelum-Task: %s", task_id);
        if ((n = curl_slist_append(h, line)) == NULL) goto oom;
        h = n;
    }
    if (ctx->api_key != NULL && ctx->api_key[0] != '\0') {
        char *auth = malloc(strlen(ctx->api_key) + 32);
        if (auth == NULL) goto oom;
        sprintf(auth, "Authorization: Bearer %s", ctx->api_key);
        n = curl_slist_append(h, auth);
        free(auth);
        if (n == NULL) goto oom;
        h = n;
    }
    return h;
oom:
    curl_slist_free_all(h);
    return NULL;
}

/* Send the built call and end the step. req and cancel live in the
 * handler's frame: the SDK may call the cancel function until the handler
 * returns, and it must find them there. */
static void run(llm_ctx_t *ctx, llm_call_t *c, cbm_step_out_t *out, http_req_t *r,
                cancel_t *cancel)
{
    reading_t rd;
    llm_failure_t f = {0};
    classify_in_t ci = {0};
    char url[1024], *json = NULL;
    int64_t latency;
    int rc;

    memset(&rd, 0, sizeof(rd));
    sse_chat_init(&rd.chat, ctx->max_result_bytes);
    sse_init(&rd.parser, 0, sse_chat_event, &rd.chat);
    rd.max_plain = ctx->max_result_bytes * 2 + 65536;
    rd.req = r;
    rd.ttft_ms = -1;
    snprintf(url, sizeof(url), "%s/chat/completions", ctx->base_url);
    r->url = url;
    r->body = c->body;
    r->ttft_ms = ctx->ttft_ms;
    r->stall_ms = ctx->stall_ms;
    r->total_ms = ctx->total_ms;
    r->on_body = on_body;
    r->ctx = &rd;
    if ((r->headers = headers(ctx, c->task_id, true)) == NULL) {
        cbm_step_fail(out, "llm_unavailable", "the worker is out of memory", true);
        goto out;
    }
    cbm_step_on_cancel(out, on_cancel, cancel);
    rd.t0 = now_ms();
    rc = http_perform(ctx->http, r);
    latency = now_ms() - rd.t0;
    if (rc != 0) {
        f.kind = "llm_unavailable";
        f.retryable = true;
        f.retry_after_ms = -1;
        snprintf(f.message, sizeof(f.message), "the worker is stopping: %s", cbm_strerror(rc));
        fail(out, c->task_id, &f);
        goto out;
    }
    ci.curl_code = r->curl_code;
    ci.abort = r->abort;
    ci.limit_ms = r->abort == LLM_ABORT_TOO_LARGE ? (int64_t)ctx->max_result_bytes
                                                   : r->abort_limit_ms;
    ci.status = r->status;
    ci.retry_after = r->retry_after[0] != '\0' ? r->retry_after : NULL;
    ci.body = llm_buf_str(&r->resp);
    ci.body_len = r->resp.len;
    ci.got_body = r->got_body;
    ci.curl_error = r->curl_error;
    ci.now = time(NULL);
    if (classify_transfer(&ci, &f)) {
        fail(out, c->task_id, &f);
        goto out;
    }
    if (rd.kind == 2 && sse_chat_body(&rd.chat, llm_buf_str(&rd.plain), rd.plain.len) != 0 &&
        rd.chat.too_large) {
        f.kind = "llm_result_too_large";
        f.retryable = false;
        snprintf(f.message, sizeof(f.message), "the answer exceeds %zu bytes",
                 ctx->max_result_bytes);
        fail(out, c->task_id, &f);
        goto out;
    }
    if (classify_stream(&rd.chat, true, c->schema, &f)) {
        fail(out, c->task_id, &f);
        goto out;
    }
    if (rd.ttft_ms < 0) rd.ttft_ms = r->first_byte_ms >= 0 ? r->first_byte_ms : 0;
    rc = call_result(c, &rd.chat, rd.ttft_ms, latency, ctx->max_result_bytes, &json, &f);
    if (rc == 1) {
        fail(out, c->task_id, &f);
    } else if (rc != 0) {
        cbm_step_fail(out, "llm_unavailable", "the worker is out of memory", true);
    } else if (cbm_step_ok(out, json) != 0) {
        cbm_step_fail(out, "llm_unavailable", "the worker could not record the result", true);
    }
out:
    free(json);
    curl_slist_free_all(r->headers);
    llm_buf_finish(&r->resp);
    llm_buf_finish(&rd.plain);
    sse_finish(&rd.parser);
    sse_chat_finish(&rd.chat);
}

void llm_handle(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    const llm_handler_arg_t *a = arg;
    llm_call_t c;
    llm_failure_t f = {0};
    http_req_t req;
    cancel_t cancel = {a->ctx->http, &req};
    int rc = call_build(call, a->phase, &a->ctx->call, &c, &f);

    if (rc == 1) {
        fail(out, c.task_id, &f);
        return;
    }
    if (rc != 0) {
        cbm_step_fail(out, "llm_unavailable", "the worker is out of memory", true);
        return;
    }
    if (c.skipped != NULL) {
        cbm_step_ok(out, c.skipped);
    } else {
        memset(&req, 0, sizeof(req));
        run(a->ctx, &c, out, &req, &cancel);
    }
    call_finish(&c);
}

/* ---------------------------------------------------------------- models */

void llm_models_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

int llm_fetch_models(http_t *http, const char *base_url, const char *api_key, int64_t timeout_ms,
                     char ***names, size_t *n, char *why, size_t whylen)
{
    llm_ctx_t hc = {.api_key = api_key};
    http_req_t req;
    char url[1024];
    cJSON *o = NULL;
    const cJSON *m, *data;
    size_t k = 0;
    int rc = -1;

    *names = NULL;
    *n = 0;
    memset(&req, 0, sizeof(req));
    snprintf(url, sizeof(url), "%s/models", base_url);
    req.url = url;
    req.total_ms = timeout_ms;
    req.max_resp = 4u << 20;
    if ((req.headers = headers(&hc, NULL, false)) == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    if (http_perform(http, &req) != 0) {
        snprintf(why, whylen, "the worker is stopping");
        goto out;
    }
    if (req.abort != LLM_ABORT_NONE || req.curl_code != CURLE_OK) {
        snprintf(why, whylen, "%s", req.abort == LLM_ABORT_TOTAL ? "no answer in time"
                                    : req.curl_error[0] != '\0'
                                        ? req.curl_error
                                        : curl_easy_strerror((CURLcode)req.curl_code));
        goto out;
    }
    if (req.status != 200) {
        char msg[300];
        long code;
        classify_error_message(llm_buf_str(&req.resp), req.resp.len, msg, sizeof(msg), &code);
        snprintf(why, whylen, "HTTP %ld: %s", req.status, msg);
        goto out;
    }
    o = cJSON_ParseWithLength(llm_buf_str(&req.resp), req.resp.len);
    data = cJSON_GetObjectItemCaseSensitive(o, "data");
    if (!cJSON_IsArray(data) || cJSON_GetArraySize(data) == 0) {
        snprintf(why, whylen, "the answer is not a model list ({\"data\": [{\"id\": ...}]})");
        goto out;
    }
    if ((*names = calloc((size_t)cJSON_GetArraySize(data), sizeof(char *))) == NULL) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    cJSON_ArrayForEach(m, data) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
        if (!cJSON_IsString(id)) continue;
        if (((*names)[k] = strdup(id->valuestring)) == NULL) break;
        k++;
    }
    *n = k;
    if (k == 0) {
        snprintf(why, whylen, "the model list names no model");
        llm_models_free(*names, 0);
        *names = NULL;
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(o);
    curl_slist_free_all(req.headers);
    llm_buf_finish(&req.resp);
    return rc;
}
