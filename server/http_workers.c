/*
 * http_workers.c - the HTTP threads ask the server's loop about registered
 * workers (http.h): workers live in memory on that loop
 * (worker_service.c), so an ask is posted to a mailbox there and the asking
 * thread waits (bounded) for the loop to fill the answer in. The ask is
 * shared by both sides with a reference count, so a caller that stops
 * waiting leaves it to the loop to free. Always built (no libmicrohttpd
 * needed): the loop side is plain libuv.
 */
#include "http.h"

#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "ws_internal.h"

typedef struct http_ask {
    cbm_mail_t mail;
    uv_mutex_t mu;
    uv_cond_t cv;
    int refs;
    int done;
    int rc;
    char *queue;     /* NULL: all */
    int want_json;
    cJSON *json;
    size_t n, alive;
} http_ask_t;

static void ask_release(http_ask_t *a)
{
    int left;
    uv_mutex_lock(&a->mu);
    left = --a->refs;
    uv_mutex_unlock(&a->mu);
    if (left > 0) return;
    cJSON_Delete(a->json);
    free(a->queue);
    uv_cond_destroy(&a->cv);
    uv_mutex_destroy(&a->mu);
    free(a);
}

static void ask_finish(http_ask_t *a, int rc)
{
    uv_mutex_lock(&a->mu);
    a->rc = rc;
    a->done = 1;
    uv_cond_signal(&a->cv);
    uv_mutex_unlock(&a->mu);
    ask_release(a);
}

/* The worker as ListWorkers shows it (worker_service.c's on_list_workers). */
static cJSON *worker_json(const wsvc_t *ws, const worker_t *w, int64_t now, bool *alive)
{
    cJSON *o = cJSON_CreateObject(), *q, *caps;
    if (o == NULL) return NULL;
    *alive = now - w->last_seen_ms <= 3 * (ws->lease_ms / 3) + MAX_WAIT_MS;
    cJSON_AddStringToObject(o, "worker_id", w->id);
    if ((q = cJSON_AddArrayToObject(o, "queues")) != NULL)
        for (size_t i = 0; i < w->nqueues; i++)
            cJSON_AddItemToArray(q, cJSON_CreateString(w->queues[i]));
    if ((caps = cJSON_AddObjectToObject(o, "capabilities")) != NULL)
        for (size_t i = 0; i < w->ncaps; i++) cJSON_AddStringToObject(caps, w->capk[i], w->capv[i]);
    cJSON_AddNumberToObject(o, "max_concurrency", w->max_concurrency);
    cJSON_AddNumberToObject(o, "active_tasks", w->active);
    cJSON_AddNumberToObject(o, "registered_at_ms", (double)w->registered_ms);
    cJSON_AddNumberToObject(o, "last_seen_at_ms", (double)w->last_seen_ms);
    cJSON_AddBoolToObject(o, "alive", *alive);
    if (w->sdk != NULL && w->sdk[0] != '\0') cJSON_AddStringToObject(o, "sdk_version", w->sdk);
    else cJSON_AddNullToObject(o, "sdk_version");
    return o;
}

static void answer(http_workers_t *hw, http_ask_t *a)
{
    wsvc_t *ws = hw->ws;
    int64_t now = now_ms();
    cJSON *arr = NULL;

    if (a->want_json) {
        if ((a->json = cJSON_CreateObject()) == NULL ||
            (arr = cJSON_AddArrayToObject(a->json, "workers")) == NULL) {
            ask_finish(a, CBM_ENOMEM);
            return;
        }
    }
    for (worker_t *w = ws->workers; w != NULL; w = w->next) {
        bool alive;
        cJSON *o;
        if (a->queue != NULL && !worker_serves(w, a->queue)) continue;
        if ((o = worker_json(ws, w, now, &alive)) == NULL) {
            ask_finish(a, CBM_ENOMEM);
            return;
        }
        a->n++;
        a->alive += alive;
        if (arr != NULL) cJSON_AddItemToArray(arr, o);
        else cJSON_Delete(o);
    }
    ask_finish(a, 0);
}

static void on_asks(cbm_mailbox_t *mb, cbm_mail_t *m)
{
    http_workers_t *hw = mb->data;
    while (m != NULL) {
        cbm_mail_t *next = m->next;
        answer(hw, CBM_MAIL_OWNER(m, http_ask_t, mail));
        m = next;
    }
}

int http_workers_init(http_workers_t *hw, uv_loop_t *loop, struct wsvc *ws)
{
    int rc;
    memset(hw, 0, sizeof(*hw));
    hw->ws = ws;
    if ((rc = cbm_mailbox_init(&hw->asks, loop, on_asks, hw)) != 0) return rc;
    hw->open = 1;
    return 0;
}

void http_workers_close(http_workers_t *hw)
{
    if (!hw->open) return;
    hw->open = 0;
    cbm_mailbox_close(&hw->asks, NULL);
}

void http_workers_finish(http_workers_t *hw)
{
    cbm_mail_t *m = cbm_mailbox_take(&hw->asks);
    while (m != NULL) {
        cbm_mail_t *next = m->next;
        ask_finish(CBM_MAIL_OWNER(m, http_ask_t, mail), CBM_ESHUTDOWN);
        m = next;
    }
    cbm_mailbox_finish(&hw->asks);
}

int http_workers_ask(http_workers_t *hw, const char *queue, cJSON **out, size_t *nworkers,
                     size_t *nalive, int timeout_ms)
{
    http_ask_t *a = calloc(1, sizeof(*a));
    uint64_t deadline;
    int rc;

    if (out != NULL) *out = NULL;
    if (a == NULL) return CBM_ENOMEM;
    if (queue != NULL && queue[0] != '\0' && (a->queue = strdup(queue)) == NULL) {
        free(a);
        return CBM_ENOMEM;
    }
    uv_mutex_init(&a->mu);
    uv_cond_init(&a->cv);
    a->refs = 2;
    a->want_json = out != NULL;
    cbm_mailbox_post(&hw->asks, &a->mail);
    deadline = uv_hrtime() + (uint64_t)timeout_ms * 1000000u;
    uv_mutex_lock(&a->mu);
    while (!a->done) {
        uint64_t now = uv_hrtime();
        if (now >= deadline || uv_cond_timedwait(&a->cv, &a->mu, deadline - now) != 0) break;
    }
    rc = a->done ? a->rc : CBM_ETIMEDOUT;
    if (a->done && rc == 0) {
        if (out != NULL) {
            *out = a->json;
            a->json = NULL;
        }
        if (nworkers != NULL) *nworkers = a->n;
        if (nalive != NULL) *nalive = a->alive;
    }
    uv_mutex_unlock(&a->mu);
    ask_release(a);
    return rc;
}
