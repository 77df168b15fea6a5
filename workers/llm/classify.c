/*
 * classify.c - HTTP outcomes to the contract's failure kinds (classify.h,
 * docs/deliberation.md §4).
 *
 * The one judgement call: a connection that breaks after a 2xx stream began
 * is llm_truncated (the answer was cut), before any answer llm_unavailable;
 * both are retryable, so only the name differs.
 */
#include "classify.h"

#include <cJSON.h>
#include <ctype.h>
#include <stdarg.h>
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#define DAY_MS (24 * 3600 * 1000LL)

static void set(llm_failure_t *f, const char *kind, bool retryable, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set(llm_failure_t *f, const char *kind, bool retryable, const char *fmt, ...)
{
    va_list ap;
    f->kind = kind;
    f->retryable = retryable;
    f->retry_after_ms = -1;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof(f->message), fmt, ap);
    va_end(ap);
}

/* Case-insensitive search of needle in hay[0..len). */
static bool ci_find(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++) {
        size_t k = 0;
        while (k < n && tolower((unsigned char)hay[i + k]) == tolower((unsigned char)needle[k])) k++;
        if (k == n) return true;
    }
    return false;
}

int64_t classify_retry_after(const char *value, time_t now)
{
    const char *p = value;
    int64_t secs = 0;
    time_t t;

    if (value == NULL) return -1;
    while (*p == ' ' || *p == '\t') p++;
    if (isdigit((unsigned char)*p)) {
        for (; isdigit((unsigned char)*p); p++)
            if (secs < DAY_MS / 1000) secs = secs * 10 + (*p - '0');
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
        if (*p != '\0') return -1;
        return secs * 1000 > DAY_MS ? DAY_MS : secs * 1000;
    }
    if ((t = curl_getdate(p, NULL)) == -1) return -1;
    if (t <= now) return 0;
    return (int64_t)(t - now) * 1000 > DAY_MS ? DAY_MS : (int64_t)(t - now) * 1000;
}

void classify_error_message(const char *body, size_t len, char *msg, size_t size, long *code)
{
    cJSON *o = body != NULL && len > 0 ? cJSON_ParseWithLength(body, len) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error"), *m, *c;
    const cJSON *where = cJSON_IsObject(e) ? e : o;

    *code = 0;
    msg[0] = '\0';
    m = cJSON_GetObjectItemCaseSensitive(where, "message");
    c = cJSON_GetObjectItemCaseSensitive(where, "code");
    if (cJSON_IsNumber(c)) *code = (long)c->valuedouble;
    if (cJSON_IsString(m)) {
        snprintf(msg, size, "%s", m->valuestring);
    } else if (cJSON_IsString(e)) { /* {"error": "text"} (some proxies) */
        snprintf(msg, size, "%s", e->valuestring);
    } else if (body != NULL && len > 0) {
        size_t n = len < 200 ? len : 200;
        snprintf(msg, size, "%.*s", (int)n, body);
        for (char *p = msg; *p; p++)
            if ((unsigned char)*p < 0x20) *p = ' ';
    }
    cJSON_Delete(o);
}

bool classify_is_context_length(const char *body, size_t len)
{
    static const char *const says[] = {"maximum context length", "context length",
                                       "context_length_exceeded", "exceed_context_size",
                                       "context size", "context window"};
    if (body == NULL) return false;
    for (size_t i = 0; i < sizeof(says) / sizeof(says[0]); i++)
        if (ci_find(body, len, says[i])) return true;
    return false;
}

/* A non-2xx answer. */
static void classify_status(long status, const char *body, size_t len, const char *retry_after,
                            time_t now, llm_failure_t *f)
{
    char msg[400];
    long code;

    classify_error_message(body, len, msg, sizeof(msg), &code);
    if (status == 429) {
        set(f, "llm_rate_limited", true, "HTTP 429 from the model server: %s", msg);
    } else if (status == 408) {
        set(f, "llm_timeout", true, "HTTP 408 from the model server: %s", msg);
    } else if (status == 401 || status == 403) {
        set(f, "llm_auth", false, "HTTP %ld from the model server: %s", status, msg);
    } else if ((status == 400 || status == 413 || status == 422) &&
               classify_is_context_length(body, len)) {
        set(f, "llm_context_length", false, "the prompt is too long for the model (HTTP %ld): %s",
            status, msg);
    } else if (status >= 400 && status < 500) {
        set(f, "llm_bad_request", false, "HTTP %ld from the model server: %s", status, msg);
    } else {
        /* 5xx, and what a model server should never say here (1xx, 3xx):
         * another attempt, maybe on another worker, may do better. */
        set(f, "llm_unavailable", true, "HTTP %ld from the model server: %s", status, msg);
    }
    f->retry_after_ms = f->retryable ? classify_retry_after(retry_after, now) : -1;
}

static bool broken_connection(int cc)
{
    switch (cc) {
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

bool classify_transfer(const classify_in_t *in, llm_failure_t *f)
{
    const char *cerr = in->curl_error != NULL && in->curl_error[0] != '\0'
                           ? in->curl_error
                           : curl_easy_strerror((CURLcode)in->curl_code);

    switch (in->abort) {
    case LLM_ABORT_NONE:
        break;
    case LLM_ABORT_CANCEL:
        set(f, "cancelled", false, "the server cancelled the task; the call was aborted");
        return true;
    case LLM_ABORT_TTFT:
        set(f, "llm_timeout", true, "no answer from the model server within %lld ms",
            (long long)in->limit_ms);
        return true;
    case LLM_ABORT_TOTAL:
        set(f, "llm_timeout", true, "the call took longer than %lld ms", (long long)in->limit_ms);
        return true;
    case LLM_ABORT_STALL:
        set(f, "llm_stalled", true, "the stream stalled: no byte for %lld ms",
            (long long)in->limit_ms);
        return true;
    case LLM_ABORT_TOO_LARGE:
        set(f, "llm_result_too_large", false, "the answer exceeds %lld bytes",
            (long long)in->limit_ms);
        return true;
    case LLM_ABORT_SHUTDOWN:
        set(f, "llm_unavailable", true, "the worker stopped during the call");
        return true;
    case LLM_ABORT_NOMEM:
        set(f, "llm_unavailable", true, "the worker ran out of memory reading the answer");
        return true;
    }
    if (in->curl_code != CURLE_OK) {
        if (in->status >= 200 && in->status < 300 && in->got_body && broken_connection(in->curl_code))
            set(f, "llm_truncated", true, "the stream broke off: %s", cerr);
        else if (in->curl_code == CURLE_SEND_FAIL_REWIND)
            set(f, "llm_unavailable", true, "the connection closed before any answer; the "
                                            "request was not sent again");
        else if (in->curl_code == CURLE_OPERATION_TIMEDOUT)
            set(f, "llm_unavailable", true, "cannot connect to the model server: %s", cerr);
        else
            set(f, "llm_unavailable", true, "the model server is unreachable: %s", cerr);
        return true;
    }
    if (in->status >= 200 && in->status < 300) return false;
    classify_status(in->status, in->body, in->body_len, in->retry_after, in->now, f);
    return true;
}

bool classify_stream(const sse_chat_t *c, bool want_usage, bool schema, llm_failure_t *f)
{
    if (c->error != NULL) {
        /* An error in the stream: classified as its code would be as a
         * status (a context length, a 5xx); no code, a server failure. */
        char msg[400];
        long code;
        size_t n = strlen(c->error);
        classify_error_message(c->error, n, msg, sizeof(msg), &code);
        if (code >= 400 && code < 600) {
            classify_status(code, c->error, n, NULL, 0, f);
        } else {
            set(f, "llm_unavailable", true, "the model server failed mid-stream: %s", msg);
        }
        return true;
    }
    if (c->bad_chunks > 0) {
        /* A piece of the answer is lost in an event that does not parse. */
        set(f, "llm_bad_output", true, "the model server's stream holds %d event(s) that are "
                                       "not JSON objects", c->bad_chunks);
        return true;
    }
    if (!sse_chat_complete(c, want_usage)) {
        set(f, "llm_truncated", true, "the stream ended without %s",
            c->finish_reason[0] == '\0' ? "a finish reason"
            : !c->done                  ? "data: [DONE]"
                                        : "the usage chunk");
        return true;
    }
    if (schema && strcmp(c->finish_reason, "length") == 0) {
        set(f, "llm_bad_output", true, "the answer was cut at max_tokens (finish_reason length) "
                                       "before its JSON was whole");
        return true;
    }
    return false;
}
