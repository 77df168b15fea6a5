/*
 * sse.c - the SSE parser and the chat.completion.chunk accumulator of the
 * LLM worker (sse.h).
 *
 * The parser copies each line into a buffer before looking at it: lines of
 * a chat stream are short (one chunk object each), so the copy costs less
 * than the bookkeeping of parsing in place across the caller's chunks.
 */
#include "sse.h"

#include <cJSON.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_MAX_EVENT (8u << 20)

void sse_init(sse_parser_t *p, size_t max_event, sse_event_cb cb, void *ctx)
{
    memset(p, 0, sizeof(*p));
    p->max_event = max_event > 0 ? max_event : DEFAULT_MAX_EVENT;
    p->cb = cb;
    p->ctx = ctx;
}

void sse_finish(sse_parser_t *p)
{
    llm_buf_finish(&p->line);
    llm_buf_finish(&p->data);
}

/* One whole line (without its end). */
static int take_line(sse_parser_t *p)
{
    const char *s = llm_buf_str(&p->line), *colon, *value;
    size_t n = p->line.len, flen;

    if (n == 0) { /* a blank line ends the event */
        int rc = 0;
        if (p->has_data) rc = p->cb(p->ctx, llm_buf_str(&p->data), p->data.len);
        llm_buf_reset(&p->data);
        p->has_data = false;
        return rc;
    }
    if (s[0] == ':') return 0; /* a comment (keep-alive pings) */
    colon = memchr(s, ':', n);
    flen = colon != NULL ? (size_t)(colon - s) : n;
    if (flen != 4 || memcmp(s, "data", 4) != 0) return 0; /* event, id, retry, unknown */
    value = colon != NULL ? colon + 1 : s + n;
    if (value < s + n && *value == ' ') value++;
    if (p->has_data && llm_buf_add(&p->data, "\n", 1) != 0) return SSE_ENOMEM;
    if (llm_buf_add(&p->data, value, (size_t)(s + n - value)) != 0) return SSE_ENOMEM;
    p->has_data = true;
    return p->data.len > p->max_event ? SSE_ETOOBIG : 0;
}

int sse_feed(sse_parser_t *p, const char *buf, size_t n)
{
    size_t i = 0;

    while (p->status == 0 && i < n) {
        size_t j = i;
        if (p->after_cr) { /* the '\n' of a "\r\n" cut between two feeds */
            p->after_cr = false;
            if (buf[i] == '\n') {
                i++;
                continue;
            }
        }
        while (j < n && buf[j] != '\n' && buf[j] != '\r') j++;
        if (j > i) {
            if (p->line.len + (j - i) > p->max_event) {
                p->status = SSE_ETOOBIG;
                break;
            }
            if (llm_buf_add(&p->line, buf + i, j - i) != 0) {
                p->status = SSE_ENOMEM;
                break;
            }
        }
        if (j == n) break; /* the line goes on in the next feed */
        /* A UTF-8 byte order mark may open the stream: it is not a field. */
        if (p->line.len >= 3 && memcmp(p->line.p, "\xEF\xBB\xBF", 3) == 0) {
            memmove(p->line.p, p->line.p + 3, p->line.len - 2);
            p->line.len -= 3;
        }
        p->status = take_line(p);
        llm_buf_reset(&p->line);
        if (buf[j] == '\r') {
            if (j + 1 < n) {
                if (buf[j + 1] == '\n') j++;
            } else {
                p->after_cr = true;
            }
        }
        i = j + 1;
    }
    return p->status;
}

/* ------------------------------------------------------------ accumulator */

void sse_chat_init(sse_chat_t *c, size_t max_content)
{
    memset(c, 0, sizeof(*c));
    c->max_content = max_content;
}

void sse_chat_finish(sse_chat_t *c)
{
    llm_buf_finish(&c->content);
    free(c->error);
    c->error = NULL;
}

static int64_t num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 ? (int64_t)v->valuedouble : 0;
}

static void take_usage(sse_chat_t *c, const cJSON *usage)
{
    if (!cJSON_IsObject(usage)) return; /* null in the chunks before the last */
    c->usage_seen = true;
    c->prompt_tokens = num(usage, "prompt_tokens");
    c->completion_tokens = num(usage, "completion_tokens");
    c->cached_tokens = num(cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens_details"),
                           "cached_tokens");
}

/* Take one chunk object (or a whole completion: `message` instead of
 * `delta`). SSE_CHAT_STOP when the content grew too large or memory ran
 * out. */
static int take_object(sse_chat_t *c, const cJSON *o)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(o, "model");
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(o, "choices"), *ch;

    const cJSON *object = cJSON_GetObjectItemCaseSensitive(o, "object");

    if (cJSON_GetObjectItemCaseSensitive(o, "error") != NULL ||
        (cJSON_IsString(object) && strcmp(object->valuestring, "error") == 0)) {
        if (c->error == NULL && (c->error = cJSON_PrintUnformatted(o)) == NULL)
            return SSE_CHAT_STOP;
        return 0;
    }
    c->chunks++;
    if (c->model[0] == '\0' && cJSON_IsString(model))
        snprintf(c->model, sizeof(c->model), "%s", model->valuestring);
    cJSON_ArrayForEach(ch, choices) {
        const cJSON *idx = cJSON_GetObjectItemCaseSensitive(ch, "index");
        const cJSON *delta = cJSON_GetObjectItemCaseSensitive(ch, "delta");
        const cJSON *fr = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason"), *text;
        if (cJSON_IsNumber(idx) && idx->valuedouble != 0) continue; /* n = 1: only choice 0 */
        if (delta == NULL) delta = cJSON_GetObjectItemCaseSensitive(ch, "message");
        text = cJSON_GetObjectItemCaseSensitive(delta, "content");
        if (cJSON_IsString(text) && text->valuestring[0] != '\0') {
            size_t n = strlen(text->valuestring);
            if (c->max_content > 0 && c->content.len + n > c->max_content) {
                c->too_large = true;
                return SSE_CHAT_STOP;
            }
            if (llm_buf_add(&c->content, text->valuestring, n) != 0) return SSE_CHAT_STOP;
        }
        if (cJSON_IsString(fr) && fr->valuestring[0] != '\0')
            snprintf(c->finish_reason, sizeof(c->finish_reason), "%s", fr->valuestring);
    }
    take_usage(c, cJSON_GetObjectItemCaseSensitive(o, "usage"));
    return 0;
}

int sse_chat_event(void *ctx, const char *data, size_t len)
{
    sse_chat_t *c = ctx;
    cJSON *o;
    int rc;

    while (len > 0 && (*data == ' ' || *data == '\t')) data++, len--;
    while (len > 0 && (data[len - 1] == ' ' || data[len - 1] == '\t')) len--;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        c->done = true;
        return 0;
    }
    o = cJSON_ParseWithLength(data, len);
    if (!cJSON_IsObject(o)) {
        c->bad_chunks++;
        cJSON_Delete(o);
        return 0;
    }
    rc = take_object(c, o);
    cJSON_Delete(o);
    return rc;
}

int sse_chat_body(sse_chat_t *c, const char *body, size_t len)
{
    cJSON *o = cJSON_ParseWithLength(body, len);
    int rc;

    if (!cJSON_IsObject(o) || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, "choices"))) {
        c->bad_chunks++;
        cJSON_Delete(o);
        return -1;
    }
    rc = take_object(c, o);
    cJSON_Delete(o);
    c->done = true;
    return rc == 0 ? 0 : -1;
}

bool sse_chat_complete(const sse_chat_t *c, bool want_usage)
{
    return c->finish_reason[0] != '\0' && c->done && (c->usage_seen || !want_usage);
}
