/*
 * classify.h - what went wrong with a call to the model server, in the terms
 * of the contract (docs/deliberation.md §4, the table of failure kinds):
 * a kind, whether the step's retry policy may try again, and how long it
 * must wait at least (a Retry-After header).
 *
 * The worker never retries by itself: this is all it tells the engine. Pure
 * functions; threads: any.
 */
#ifndef CBM_LLM_CLASSIFY_H
#define CBM_LLM_CLASSIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sse.h"

/* Why the worker itself ended a transfer (0: it did not). */
typedef enum llm_abort {
    LLM_ABORT_NONE = 0,
    LLM_ABORT_CANCEL,    /* the server cancelled the task */
    LLM_ABORT_TTFT,      /* no response byte within the time-to-first-token limit */
    LLM_ABORT_STALL,     /* no byte for the stall limit, mid-stream */
    LLM_ABORT_TOTAL,     /* the whole call took longer than its limit */
    LLM_ABORT_TOO_LARGE, /* the answer outgrew --max-result-bytes */
    LLM_ABORT_SHUTDOWN,  /* the worker is going away */
    LLM_ABORT_NOMEM,     /* out of memory while reading the answer */
} llm_abort_t;

/* A failure as the step reports it. kind is a static string. */
typedef struct llm_failure {
    const char *kind;
    bool retryable;
    int64_t retry_after_ms; /* -1: none */
    char message[512];
} llm_failure_t;

/* How one HTTP transfer ended. */
typedef struct classify_in {
    int curl_code;            /* its CURLcode (0: CURLE_OK) */
    llm_abort_t abort;        /* the worker's reason, if it stopped it */
    int64_t limit_ms;         /* the limit that fired (for the message) */
    long status;              /* the HTTP status; 0 when none came */
    const char *retry_after;  /* the Retry-After header's value, or NULL */
    const char *body;         /* the body of a non-2xx answer (may be NULL) */
    size_t body_len;
    bool got_body;            /* any byte of a 2xx body came */
    const char *curl_error;   /* curl's error text (CURLOPT_ERRORBUFFER), or NULL */
    time_t now;               /* the wall clock, for a Retry-After HTTP-date */
} classify_in_t;

/* Classify a finished transfer. true: it failed, *f says how; false: a 2xx
 * answer that came whole as far as HTTP goes (read the stream next). */
bool classify_transfer(const classify_in_t *in, llm_failure_t *f);

/* Classify a 2xx stream that was read to its end: an in-band error event, no
 * chunk at all, a truncated stream (sse_chat_complete), or, with a JSON
 * schema asked, a finish_reason "length". true: it failed, *f says how. */
bool classify_stream(const sse_chat_t *c, bool want_usage, bool schema, llm_failure_t *f);

/* A Retry-After value (delay-seconds or an HTTP-date) in ms from @p now;
 * -1 when absent or unreadable, 0 for a date already past. At most a day. */
int64_t classify_retry_after(const char *value, time_t now);

/* The message of an error body, in either shape vLLM sends
 * ({"object":"error","message":..,"code":..} or {"error":{"message":..,
 * "code":..}}), or the body's first bytes when it is something else; and its
 * code when it has a numeric one (else 0). */
void classify_error_message(const char *body, size_t len, char *msg, size_t size, long *code);

/* Whether an error body says the prompt is longer than the model's context
 * (vLLM "maximum context length", OpenAI "context_length_exceeded",
 * llama.cpp "exceed_context_size_error"). */
bool classify_is_context_length(const char *body, size_t len);

#endif
