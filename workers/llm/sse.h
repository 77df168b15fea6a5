/*
 * sse.h - reading a streamed chat completion (workers/llm): an incremental
 * parser of Server-Sent Events, and an accumulator of the OpenAI
 * `chat.completion.chunk` objects they carry.
 *
 * The parser takes the body as it arrives, in chunks cut anywhere (inside a
 * line, between `\r` and `\n`, inside a UTF-8 sequence), and hands each
 * event's data to a callback once the blank line that ends it has arrived.
 * Lines end with `\n`, `\r\n` or `\r`; `data:` fields of one event are joined
 * with `\n`; comments (`:` lines) and the other fields (event, id, retry)
 * are skipped. An event cut off by the end of the stream is dropped, as the
 * SSE specification says.
 *
 * The accumulator (sse_chat_event as the parser's callback) keeps what the
 * result needs: the content deltas of choice 0, its finish_reason, the model,
 * the usage chunk (`"choices": []`, sent last with stream_options
 * include_usage), whether `data: [DONE]` came, and an in-band error event
 * (vLLM sends `data: {"error": ...}` when a request fails mid-stream).
 *
 * Threads: none of their own; a parser belongs to one transfer.
 */
#ifndef CBM_LLM_SSE_H
#define CBM_LLM_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Called with each event's data (NUL-terminated, len bytes). Return 0 to go
 * on, anything else to stop: sse_feed then returns that value. */
typedef int (*sse_event_cb)(void *ctx, const char *data, size_t len);

typedef struct sse_parser {
    llm_buf_t line;     /* the line being read */
    llm_buf_t data;     /* the data of the event being read */
    bool has_data;      /* a data field was seen in this event */
    bool after_cr;      /* the last byte fed ended a line with '\r' */
    size_t max_event;   /* the longest line or event accepted */
    int status;         /* sticky: 0, the callback's stop value, or an error */
    sse_event_cb cb;
    void *ctx;
} sse_parser_t;

/* Errors of sse_feed besides the callback's values. */
#define SSE_ENOMEM (-2)   /* = CBM_ENOMEM */
#define SSE_ETOOBIG (-100) /* a line or an event longer than max_event */

/* Set a parser up; max_event 0 means 8 MiB. */
void sse_init(sse_parser_t *p, size_t max_event, sse_event_cb cb, void *ctx);
/* Free its memory. */
void sse_finish(sse_parser_t *p);
/* Feed n bytes. 0, or the first non-zero value of the callback, or
 * SSE_ENOMEM / SSE_ETOOBIG; once non-zero every later call returns it and
 * parses nothing. */
int sse_feed(sse_parser_t *p, const char *buf, size_t n);

/* What a streamed (or plain) chat completion said. */
typedef struct sse_chat {
    llm_buf_t content;        /* content deltas of choice 0, joined */
    char finish_reason[32];   /* "" until one came */
    char model[256];          /* the first chunk's model, "" if none */
    bool usage_seen;
    int64_t prompt_tokens, completion_tokens, cached_tokens;
    bool done;                /* data: [DONE] came */
    int chunks;               /* events parsed as chunk objects */
    int bad_chunks;           /* events that were not (not JSON, no object) */
    char *error;              /* malloc'd JSON text of the first in-band
                                 error ({"error": ...} or {"object": "error",
                                 ...}), or NULL */
    size_t max_content;       /* 0: no limit; past it, too_large and stop */
    bool too_large;
} sse_chat_t;

/* The value sse_chat_event returns to stop the parser (content too large or
 * out of memory). */
#define SSE_CHAT_STOP 1

void sse_chat_init(sse_chat_t *c, size_t max_content);
void sse_chat_finish(sse_chat_t *c);
/* The parser's callback (ctx: an sse_chat_t). */
int sse_chat_event(void *ctx, const char *data, size_t len);
/* Take a non-streamed `chat.completion` body (a server that ignored
 * "stream": true): fills the same fields, done = true. 0, or -1 when the
 * body is not such an object (bad_chunks is then 1). */
int sse_chat_body(sse_chat_t *c, const char *body, size_t len);
/* The stream is whole: a finish_reason, [DONE], and the usage chunk when
 * it was asked for. Anything less is llm_truncated. */
bool sse_chat_complete(const sse_chat_t *c, bool want_usage);

#endif
