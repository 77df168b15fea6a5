/*
 * http.c - libcurl multi on a libuv thread (http.h).
 *
 * The curl side follows c-stack.md §7: CURLMOPT_SOCKETFUNCTION maps each
 * socket curl wants watched to a uv_poll, CURLMOPT_TIMERFUNCTION to one
 * uv_timer, and each poll or timer event goes back to curl through
 * curl_multi_socket_action, after which finished transfers are collected
 * with curl_multi_info_read. Two traps handled here: libuv reports POLLERR
 * as an error status and stops the poll (it is re-armed if curl still wants
 * the socket), and curl_multi_cleanup does not always tell us about the
 * idle connections it closes (their polls are closed from our own list).
 *
 * Never twice: curl silently sends a request again when a reused
 * keep-alive connection turns out dead before any answer byte, and the
 * model server may have taken the first one (a reset right after the
 * request: the generation was paid for). The body is given through a read
 * callback whose seek always fails, so such a resend ends the transfer
 * with CURLE_SEND_FAIL_REWIND instead, which is classified llm_unavailable
 * (retryable: the step's policy decides, with a new attempt and seed).
 *
 * A request's end is signalled only from its timer's close callback: by
 * then nothing of the loop refers to it any more, and the waiting thread
 * may free it at once.
 */
#include "http.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cerebelum/error.h"

#define DEFAULT_MAX_RESP (64u << 10)

typedef struct sock {
    uv_poll_t poll;
    curl_socket_t fd;
    int events;
    bool removed;
    http_t *h;
    struct sock *next, *prev;
} sock_t;

struct http {
    uv_loop_t loop;
    uv_async_t async;
    uv_timer_t timer; /* curl's */
    uv_thread_t thread;
    CURLM *multi;
    int64_t connect_timeout_ms;
    char *cainfo;

    uv_mutex_t mu; /* guards queue, stopping, aborts, the requests' state and abort_req */
    http_req_t *queue;
    bool stopping, aborts;
    uint64_t transfers, connections;

    /* the loop thread's */
    http_req_t *running;
    sock_t *socks;
    int nrunning;
};

/* ------------------------------------------------------------ the lists */

static void req_link(http_req_t **head, http_req_t *r)
{
    r->prev = NULL;
    r->next = *head;
    if (*head != NULL) (*head)->prev = r;
    *head = r;
}

static void req_unlink(http_req_t **head, http_req_t *r)
{
    if (r->prev != NULL) r->prev->next = r->next;
    else *head = r->next;
    if (r->next != NULL) r->next->prev = r->prev;
    r->next = r->prev = NULL;
}

/* -------------------------------------------------------- ending requests */

static void on_req_closed(uv_handle_t *t)
{
    http_req_t *r = t->data;
    http_t *h = r->h;
    uv_mutex_lock(&h->mu);
    r->state = HTTP_DONE;
    uv_cond_signal(&r->done);
    uv_mutex_unlock(&h->mu); /* r may be gone from here on */
}

/* Take r out of curl and end it. abort: the worker's reason (0: curl's
 * own end, curl_code already set). Not from inside a curl callback. */
static void finish(http_t *h, http_req_t *r, llm_abort_t abort, int64_t limit_ms)
{
    if (abort != LLM_ABORT_NONE && r->abort == LLM_ABORT_NONE) {
        r->abort = abort;
        r->abort_limit_ms = limit_ms;
    }
    if (r->easy != NULL) {
        long conns = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
        curl_easy_getinfo(r->easy, CURLINFO_NUM_CONNECTS, &conns);
        uv_mutex_lock(&h->mu);
        h->transfers++;
        h->connections += (uint64_t)(conns > 0 ? conns : 0);
        uv_mutex_unlock(&h->mu);
        curl_multi_remove_handle(h->multi, r->easy);
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
    }
    curl_slist_free_all(r->hdrs);
    r->hdrs = NULL;
    r->elapsed_ms = (int64_t)(uv_now(&h->loop) - r->t_start);
    req_unlink(&h->running, r);
    h->nrunning--;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_req_closed);
}

static void collect(http_t *h)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
        http_req_t *r = NULL;
        if (m->msg != CURLMSG_DONE) continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        r->curl_code = m->data.result;
        finish(h, r, LLM_ABORT_NONE, 0);
    }
}

/* ------------------------------------------------------------- limits */

/* The request's limits, lazily: the timer is set for the nearest deadline
 * and, when it fires, either a limit passed or the deadline moved (bytes
 * came) and it is set again. */
static void arm_limits(http_req_t *r, uint64_t now);

static void on_limit(uv_timer_t *t)
{
    http_req_t *r = t->data;
    http_t *h = r->h;
    uint64_t now = uv_now(&h->loop);

    if (r->total_ms > 0 && now >= r->t_start + (uint64_t)r->total_ms) {
        finish(h, r, LLM_ABORT_TOTAL, r->total_ms);
    } else if (!r->got_body && r->ttft_ms > 0 && now >= r->t_start + (uint64_t)r->ttft_ms) {
        finish(h, r, LLM_ABORT_TTFT, r->ttft_ms);
    } else if (r->got_body && r->stall_ms > 0 && now >= r->t_last + (uint64_t)r->stall_ms) {
        finish(h, r, LLM_ABORT_STALL, r->stall_ms);
    } else {
        arm_limits(r, now);
    }
}

static void arm_limits(http_req_t *r, uint64_t now)
{
    uint64_t at = UINT64_MAX;
    if (r->total_ms > 0) at = r->t_start + (uint64_t)r->total_ms;
    if (!r->got_body && r->ttft_ms > 0 && r->t_start + (uint64_t)r->ttft_ms < at)
        at = r->t_start + (uint64_t)r->ttft_ms;
    if (r->got_body && r->stall_ms > 0 && r->t_last + (uint64_t)r->stall_ms < at)
        at = r->t_last + (uint64_t)r->stall_ms;
    if (at == UINT64_MAX) return;
    uv_timer_start(&r->timer, on_limit, at > now ? at - now : 0, 0);
}

/* -------------------------------------------------- the request's callbacks */

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    http_req_t *r = ud;
    size_t len = size * n, k;
    char *colon;

    r->t_last = uv_now(&r->h->loop);
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) { /* a new answer (after a 100) */
        r->retry_after[0] = r->content_type[0] = '\0';
        return len;
    }
    if ((colon = memchr(p, ':', len)) == NULL) return len;
    k = (size_t)(colon - p);
    {
        char *v = colon + 1, *e = p + len, *dst = NULL;
        size_t cap = 0;
        if (k == 11 && strncasecmp(p, "Retry-After", 11) == 0) {
            dst = r->retry_after;
            cap = sizeof(r->retry_after);
        } else if (k == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
            dst = r->content_type;
            cap = sizeof(r->content_type);
        }
        if (dst == NULL) return len;
        while (v < e && (*v == ' ' || *v == '\t')) v++;
        while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ')) e--;
        if ((size_t)(e - v) >= cap) e = v + cap - 1;
        memcpy(dst, v, (size_t)(e - v));
        dst[e - v] = '\0';
    }
    return len;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
    http_req_t *r = ud;
    size_t len = size * n;
    size_t cap = r->max_resp > 0 ? r->max_resp : DEFAULT_MAX_RESP;

    if (r->status == 0) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
    r->t_last = uv_now(&r->h->loop);
    if (!r->got_body) {
        r->got_body = true;
        r->first_byte_ms = (int64_t)(r->t_last - r->t_start);
        arm_limits(r, r->t_last); /* the stall limit starts now */
    }
    if (r->status >= 200 && r->status < 300 && r->on_body != NULL) {
        int rc = r->on_body(r->ctx, p, len);
        if (rc != 0) {
            r->abort = (llm_abort_t)rc;
            return 0; /* CURLE_WRITE_ERROR: curl ends the transfer */
        }
        return len;
    }
    if (r->resp.len < cap) {
        size_t take = len < cap - r->resp.len ? len : cap - r->resp.len;
        if (llm_buf_add(&r->resp, p, take) != 0) {
            r->abort = LLM_ABORT_NOMEM;
            return 0;
        }
    }
    return len;
}

static size_t on_read(char *p, size_t size, size_t n, void *ud)
{
    http_req_t *r = ud;
    size_t take = r->body_len - r->body_at;
    if (take > size * n) take = size * n;
    memcpy(p, r->body + r->body_at, take);
    r->body_at += take;
    return take;
}

static int on_seek(void *ud, curl_off_t offset, int origin)
{
    (void)ud;
    (void)offset;
    (void)origin;
    return CURL_SEEKFUNC_CANTSEEK; /* never sent twice */
}

/* ------------------------------------------------------ curl multi on uv */

static void on_sock_closed(uv_handle_t *p)
{
    free(p->data);
}

static void sock_close(http_t *h, sock_t *s)
{
    uv_poll_stop(&s->poll);
    s->removed = true;
    if (s->prev != NULL) s->prev->next = s->next;
    else h->socks = s->next;
    if (s->next != NULL) s->next->prev = s->prev;
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock_t *s = p->data;
    http_t *h = s->h;
    int flags = 0, running;

    /* An error (POLLERR, e.g. a reset) comes with no events: let curl try
     * what it was waiting for too, so that it reads the socket's own error
     * ("Connection reset by peer") rather than a bare "select/poll returned
     * error". */
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
        events = s->events;
    }
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(h->multi, s->fd, flags, &running);
    /* libuv stopped the poll on an error; curl may still want the socket.
     * s stays allocated until its close callback, so `removed` is safe to
     * read here. */
    if (status < 0 && !s->removed) uv_poll_start(&s->poll, s->events, on_poll);
    collect(h);
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    http_t *h = userp;
    sock_t *s = socketp;
    (void)e;

    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            curl_multi_assign(h->multi, fd, NULL);
            sock_close(h, s);
        }
        return 0;
    }
    if (s == NULL) {
        if ((s = calloc(1, sizeof(*s))) == NULL) return -1;
        if (uv_poll_init_socket(&h->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->fd = fd;
        s->h = h;
        s->poll.data = s;
        s->next = h->socks;
        if (h->socks != NULL) h->socks->prev = s;
        h->socks = s;
        curl_multi_assign(h->multi, fd, s);
    }
    s->events = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&s->poll, s->events, on_poll);
    return 0;
}

static void on_curl_timer_fired(uv_timer_t *t)
{
    http_t *h = t->data;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collect(h);
}

static int on_curl_timer(CURLM *m, long ms, void *userp)
{
    http_t *h = userp;
    (void)m;
    if (ms < 0) uv_timer_stop(&h->timer);
    else uv_timer_start(&h->timer, on_curl_timer_fired, (uint64_t)ms, 0);
    return 0;
}

/* ------------------------------------------------------ starting requests */

/* The request is the loop's from here on; it ends with finish(). */
static void begin(http_t *h, http_req_t *r)
{
    r->t_start = r->t_last = uv_now(&h->loop);
    r->first_byte_ms = -1;
    uv_timer_init(&h->loop, &r->timer);
    r->timer.data = r;
    req_link(&h->running, r);
    h->nrunning++;
}

static void start(http_t *h, http_req_t *r)
{
    CURL *e;

    begin(h, r);
    if ((e = r->easy = curl_easy_init()) == NULL) {
        r->curl_code = CURLE_OUT_OF_MEMORY;
        finish(h, r, LLM_ABORT_NONE, 0);
        return;
    }
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curl_error);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)h->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    if (h->cainfo != NULL) curl_easy_setopt(e, CURLOPT_CAINFO, h->cainfo);
    /* "Expect:" off: no 100-continue round trip before a large body. */
    r->hdrs = curl_slist_append(NULL, "Expect:");
    for (struct curl_slist *x = r->headers; x != NULL && r->hdrs != NULL; x = x->next) {
        struct curl_slist *n = curl_slist_append(r->hdrs, x->data);
        if (n == NULL) {
            curl_slist_free_all(r->hdrs);
            r->hdrs = NULL;
        }
    }
    if (r->hdrs == NULL) {
        r->curl_code = CURLE_OUT_OF_MEMORY;
        finish(h, r, LLM_ABORT_NONE, 0);
        return;
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
    if (r->body != NULL) {
        /* The body through a read callback that cannot rewind, so that
         * curl cannot send it a second time (see the top comment). */
        r->body_len = strlen(r->body);
        r->body_at = 0;
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, r);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, r);
    }
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        r->curl_code = CURLE_FAILED_INIT;
        finish(h, r, LLM_ABORT_NONE, 0);
        return;
    }
    arm_limits(r, r->t_start);
}

static void on_async(uv_async_t *a)
{
    http_t *h = a->data;
    http_req_t *q, *r, *next;
    bool stop, aborts;

    uv_mutex_lock(&h->mu);
    q = h->queue;
    h->queue = NULL;
    stop = h->stopping;
    aborts = h->aborts;
    h->aborts = false;
    for (r = q; r != NULL; r = r->next) r->state = HTTP_RUNNING;
    uv_mutex_unlock(&h->mu);

    /* The queue is newest first: start the oldest first. */
    for (r = q; r != NULL && r->next != NULL; r = r->next) {}
    for (; r != NULL; r = next) {
        llm_abort_t why;
        next = r->prev;
        r->next = r->prev = NULL;
        uv_mutex_lock(&h->mu);
        why = stop ? LLM_ABORT_SHUTDOWN : r->abort_req;
        uv_mutex_unlock(&h->mu);
        if (why != LLM_ABORT_NONE) {
            begin(h, r);
            finish(h, r, why, 0);
        } else {
            start(h, r);
        }
    }
    if (aborts || stop) {
        for (r = h->running; r != NULL; r = next) {
            llm_abort_t why;
            next = r->next;
            if (r->easy == NULL) continue; /* already ending */
            uv_mutex_lock(&h->mu);
            why = stop ? LLM_ABORT_SHUTDOWN : r->abort_req;
            uv_mutex_unlock(&h->mu);
            if (why != LLM_ABORT_NONE) finish(h, r, why, 0);
        }
    }
    if (stop) {
        /* Everything is ending; closing curl's handles and ours lets the
         * loop run out once the requests' timers are closed. */
        curl_multi_cleanup(h->multi);
        h->multi = NULL;
        while (h->socks != NULL) sock_close(h, h->socks);
        uv_close((uv_handle_t *)&h->timer, NULL);
        uv_close((uv_handle_t *)&h->async, NULL);
    }
}

static void loop_main(void *arg)
{
    http_t *h = arg;
    uv_run(&h->loop, UV_RUN_DEFAULT);
}

/* ------------------------------------------------------------------ API */

int http_create(http_t **out, const http_opts_t *opts)
{
    http_t *h = calloc(1, sizeof(*h));
    int maxc = opts != NULL && opts->max_connections > 0 ? opts->max_connections : 8;

    *out = NULL;
    if (h == NULL) return CBM_ENOMEM;
    h->connect_timeout_ms =
        opts != NULL && opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 10000;
    if (opts != NULL && opts->cainfo != NULL && (h->cainfo = strdup(opts->cainfo)) == NULL) {
        free(h);
        return CBM_ENOMEM;
    }
    if ((h->multi = curl_multi_init()) == NULL) {
        free(h->cainfo);
        free(h);
        return CBM_EIO;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)maxc);
    if (uv_loop_init(&h->loop) != 0) {
        curl_multi_cleanup(h->multi);
        free(h->cainfo);
        free(h);
        return CBM_EIO;
    }
    uv_mutex_init(&h->mu);
    uv_async_init(&h->loop, &h->async, on_async);
    h->async.data = h;
    uv_timer_init(&h->loop, &h->timer);
    h->timer.data = h;
    if (uv_thread_create(&h->thread, loop_main, h) != 0) {
        uv_close((uv_handle_t *)&h->async, NULL);
        uv_close((uv_handle_t *)&h->timer, NULL);
        uv_run(&h->loop, UV_RUN_DEFAULT);
        uv_loop_close(&h->loop);
        uv_mutex_destroy(&h->mu);
        curl_multi_cleanup(h->multi);
        free(h->cainfo);
        free(h);
        return CBM_EIO;
    }
    *out = h;
    return 0;
}

void http_destroy(http_t *h)
{
    if (h == NULL) return;
    uv_mutex_lock(&h->mu);
    h->stopping = true;
    uv_async_send(&h->async); /* under the lock: see http_perform */
    uv_mutex_unlock(&h->mu);
    uv_thread_join(&h->thread);
    uv_loop_close(&h->loop);
    uv_mutex_destroy(&h->mu);
    free(h->cainfo);
    free(h);
}

int http_perform(http_t *h, http_req_t *r)
{
    r->h = h;
    r->first_byte_ms = -1;
    uv_mutex_lock(&h->mu);
    if (h->stopping) {
        uv_mutex_unlock(&h->mu);
        return CBM_ESHUTDOWN;
    }
    if (r->abort_req != LLM_ABORT_NONE) { /* aborted before it began */
        r->abort = r->abort_req;
        r->state = HTTP_DONE;
        uv_mutex_unlock(&h->mu);
        return 0;
    }
    if (uv_cond_init(&r->done) != 0) {
        uv_mutex_unlock(&h->mu);
        return CBM_ENOMEM;
    }
    r->state = HTTP_QUEUED;
    req_link(&h->queue, r);
    /* Sent under the lock: the loop closes the async handle only after it
     * read `stopping` under this lock, so a send made while it was false
     * reaches an open handle. */
    uv_async_send(&h->async);
    while (r->state != HTTP_DONE) uv_cond_wait(&r->done, &h->mu);
    uv_mutex_unlock(&h->mu);
    uv_cond_destroy(&r->done);
    return 0;
}

void http_abort(http_t *h, http_req_t *r, llm_abort_t why)
{
    bool wake;
    uv_mutex_lock(&h->mu);
    if (r->state != HTTP_DONE && r->abort_req == LLM_ABORT_NONE) r->abort_req = why;
    /* Once stopping, the loop ends every transfer itself and the async
     * handle may already be closed. */
    wake = !h->stopping && (r->state == HTTP_QUEUED || r->state == HTTP_RUNNING);
    if (wake) {
        h->aborts = true;
        uv_async_send(&h->async); /* under the lock: see http_perform */
    }
    uv_mutex_unlock(&h->mu);
}

void http_stats(http_t *h, uint64_t *transfers, uint64_t *connections)
{
    uv_mutex_lock(&h->mu);
    *transfers = h->transfers;
    *connections = h->connections;
    uv_mutex_unlock(&h->mu);
}
