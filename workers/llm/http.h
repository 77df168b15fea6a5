/*
 * http.h - the LLM worker's HTTP client: one libuv thread running a libcurl
 * multi handle (docs: /work/shared/notes/c-stack.md §7), shared by every
 * slot thread of the worker.
 *
 * A slot thread fills an http_req_t and calls http_perform(), which hands
 * the request to the loop thread (a locked list and uv_async_send) and
 * waits on the request's condition variable until the transfer has ended.
 * The body of a 2xx answer goes to the request's callback as it arrives
 * (the SSE parser), on the loop thread. Limits, checked by a timer per
 * request: time to the first body byte, a stall (no byte for N ms once the
 * body began), total time; the connect time-out is curl's. http_abort()
 * ends a transfer from any thread (a cancelled task): the connection is
 * closed, which is how a model server learns to stop generating.
 *
 * HTTP/1.1 with keep-alive: curl's multi handle keeps a cache of idle
 * connections (as many as the worker's concurrency), so consecutive calls
 * reuse them; an aborted transfer's connection is closed, never reused.
 *
 * Threads: http_create/http_destroy from one thread; http_perform and
 * http_abort from any. curl_global_init must have been called before.
 */
#ifndef CBM_LLM_HTTP_H
#define CBM_LLM_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <uv.h>

#include "buf.h"
#include "classify.h"

typedef struct http http_t;

typedef struct http_opts {
    int64_t connect_timeout_ms; /* 0: 10000 */
    int max_connections;        /* idle connections kept (0: 8) */
    const char *cainfo;         /* CA file for https (NULL: the system's) */
} http_opts_t;

/* Receives the body of a 2xx answer, on the loop thread. Return 0 to go on,
 * or an llm_abort_t to end the transfer for that reason. */
typedef int (*http_body_cb)(void *ctx, const char *data, size_t len);

typedef enum http_state { HTTP_IDLE = 0, HTTP_QUEUED, HTTP_RUNNING, HTTP_DONE } http_state_t;

typedef struct http_req {
    /* in, set by the caller (zero the whole struct first) */
    const char *url;
    const char *body;             /* POST body (JSON); NULL: GET */
    struct curl_slist *headers;   /* extra headers (the caller's) */
    int64_t ttft_ms;              /* first body byte within (0: no limit) */
    int64_t stall_ms;             /* no byte for this long mid-body (0: none) */
    int64_t total_ms;             /* the whole transfer (0: no limit) */
    http_body_cb on_body;         /* NULL: a 2xx body is kept in `resp` */
    void *ctx;
    size_t max_resp;              /* most of a body kept in resp (0: 64 KiB) */

    /* out, valid once http_perform returned */
    int curl_code;                /* CURLcode */
    char curl_error[CURL_ERROR_SIZE];
    long status;                  /* 0 when no answer came */
    char retry_after[64];         /* the Retry-After header, "" if none */
    char content_type[128];
    llm_buf_t resp;               /* a non-2xx body, or 2xx without on_body
                                     (capped; free with llm_buf_finish) */
    bool got_body;                /* some body byte came */
    llm_abort_t abort;            /* why the worker ended it (0: it did not) */
    int64_t abort_limit_ms;       /* the limit of that reason */
    int64_t first_byte_ms;        /* from the start to the first body byte (-1: none) */
    int64_t elapsed_ms;           /* from the start to the end */

    /* private to http.c */
    http_state_t state;
    llm_abort_t abort_req;        /* asked by http_abort, under the lock */
    CURL *easy;
    struct curl_slist *hdrs;
    size_t body_len, body_at;     /* the body, and how much curl has read */
    uv_timer_t timer;
    uv_cond_t done;
    uint64_t t_start, t_last;     /* uv_now() of the start and of the last byte */
    int64_t resp_dropped;
    struct http_req *next, *prev;
    http_t *h;
} http_req_t;

/* Start the loop thread. CBM_ENOMEM, CBM_EIO (libcurl or libuv refused). */
int http_create(http_t **out, const http_opts_t *opts);

/* End every transfer (LLM_ABORT_SHUTDOWN), stop the thread, free. NULL is a
 * no-op. No http_perform may be waiting any more once it returns. */
void http_destroy(http_t *h);

/* Counters (for tests and monitoring): transfers ended, and the new
 * connections they opened (fewer than transfers when keep-alive works). */
void http_stats(http_t *h, uint64_t *transfers, uint64_t *connections);

/* Run @p r and wait for its end. 0: it ran (status, curl_code, abort say
 * how it ended); CBM_ESHUTDOWN: the client is being destroyed. A request
 * http_abort() reached before this call ends at once with that reason. */
int http_perform(http_t *h, http_req_t *r);

/* End @p r for @p why as soon as the loop can, from any thread. A request
 * already done is left as it is; one not yet performed ends at once when it
 * is. The first reason wins. */
void http_abort(http_t *h, http_req_t *r, llm_abort_t why);

#endif
