/*
 * ws_polls.c - long polls of the WorkerService (worker_service.h): a poll
 * claims at once; if nothing is there it parks until a task of its queues is
 * committed (the engine's hook, handed over with a uv_async), its deadline,
 * or the periodic sweep; sticky routing offers a task to the poll of the
 * worker that ran the execution's last step first. Claims run on the thread
 * pool; a task claimed for a poll that went away is given back.
 */
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "ws_internal.h"

/* ---- polls --------------------------------------------------------------------- */

static void poll_claim(poll_t *p);

static void poll_unpark(poll_t *p)
{
    p->parked = 0;
}

static void poll_park(poll_t *p)
{
    p->parked = 1;
}

static void poll_link(poll_t *p)
{
    wsvc_t *ws = p->ws;
    p->prev = NULL;
    p->next = ws->polls;
    if (ws->polls != NULL) ws->polls->prev = p;
    ws->polls = p;
}

static void poll_unlink(poll_t *p)
{
    wsvc_t *ws = p->ws;
    if (p->prev != NULL) p->prev->next = p->next;
    else if (ws->polls == p) ws->polls = p->next;
    if (p->next != NULL) p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

static void poll_freed(uv_handle_t *h)
{
    poll_t *p = h->data;
    strv_free(p->queues, p->nq);
    free(p->worker_id);
    free(p->caps);
    free(p->want.step);
    free(p);
}

/* Done with p: off the lists, timer closed, freed when libuv is done. */
static void poll_end(poll_t *p)
{
    if (p->closing) return;
    p->closing = 1;
    poll_unpark(p);
    poll_unlink(p);
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, poll_freed);
}

void poll_answer_empty(poll_t *p)
{
    Cerebelum__V1__Task t = CEREBELUM__V1__TASK__INIT;
    if (p->call != NULL) {
        t.empty = 1;
        rpc_call_reply(p->call, &t.base);
        p->call = NULL;
    }
    poll_end(p);
}

static void on_poll_gone(rpc_call_t *call, void *data)
{
    poll_t *p = data;
    (void)call;
    p->call = NULL;
    if (!p->claiming) poll_end(p); /* else the claim's done() ends it */
}

static void on_poll_deadline(uv_timer_t *t)
{
    poll_t *p = t->data;
    p->expired = 1;
    if (!p->claiming) poll_answer_empty(p);
}

static void unclaim_work(wjob_t *j, store_t *s)
{
    j->rc = store_task_unclaim(s, j->task.id, j->worker_id, &j->err);
}

static void unclaim_done(wjob_t *j)
{
    if (j->rc != 0)
        cbm_log_warn("serve: could not give back task %lld (its lease runs out instead): %s",
                     (long long)j->task.id, j->err.message);
}

static void claim_work(wjob_t *j, store_t *s)
{
    poll_t *p = j->poll;
    const store_task_t *want = j->want_used ? &j->want : NULL;
    j->rc = store_task_claim(s, p->worker_id, (const char *const *)p->queues, p->nq, p->caps,
                             j->ws->lease_ms, want, &j->task, &j->found, &j->err);
    if (j->rc == 0 && !j->found && want != NULL)
        j->rc = store_task_claim(s, p->worker_id, (const char *const *)p->queues, p->nq, p->caps,
                                 j->ws->lease_ms, NULL, &j->task, &j->found, &j->err);
}

static void claim_done(wjob_t *j)
{
    poll_t *p = j->poll;
    wsvc_t *ws = j->ws;

    p->claiming = 0;
    if (j->want_used) {
        free(p->want.step);
        p->want.step = NULL;
    }
    if (j->rc != 0) {
        /* The store is down: the poll waits (and the sweep tries again). */
        cbm_log_warn("serve: claiming a task failed: %s", j->err.message);
    } else if (j->found) {
        if (p->call != NULL) {
            Cerebelum__V1__Task t = CEREBELUM__V1__TASK__INIT;
            char tid[256];
            worker_t *w = worker_find(ws, p->worker_id);
            snprintf(tid, sizeof(tid), "%lld:%s:%d:%s", (long long)j->task.id,
                     j->task.execution_id, j->task.attempt, j->task.step);
            t.task_id = tid;
            t.execution_id = j->task.execution_id;
            t.step = j->task.step;
            t.handler = j->task.handler;
            t.attempt = (uint32_t)j->task.attempt;
            t.queue = j->task.queue;
            t.input_json = j->task.payload;
            t.lease_ms = (uint32_t)(j->task.lease_ms > UINT32_MAX ? UINT32_MAX : j->task.lease_ms);
            t.blueprint = j->task.blueprint;
            t.timeout_ms = (uint32_t)(j->task.timeout_ms > UINT32_MAX ? UINT32_MAX
                                                                      : j->task.timeout_ms);
            if (rpc_call_reply(p->call, &t.base) == 0) {
                p->call = NULL;
                if (w != NULL) w->active++;
                poll_end(p);
                return;
            }
            p->call = NULL;
        }
        /* Nobody to hand it to: give it back at once (else its lease
         * runs out). */
        {
            wjob_t *u = job_new(ws, unclaim_work, unclaim_done);
            if (u != NULL) {
                u->task.id = j->task.id;
                if ((u->worker_id = strdup(p->worker_id)) == NULL) job_free(u);
                else job_queue(u, NULL);
            }
        }
        poll_end(p);
        return;
    }
    if (p->call == NULL) {
        poll_end(p);
    } else if (p->again && !p->expired && !ws->draining) {
        p->again = 0;
        poll_claim(p);
    } else if (p->expired || ws->draining) {
        poll_answer_empty(p);
    } else {
        poll_park(p);
    }
}

static void poll_claim(poll_t *p)
{
    wjob_t *j;
    poll_unpark(p);
    if ((j = job_new(p->ws, claim_work, claim_done)) == NULL) {
        poll_park(p);
        return;
    }
    j->poll = p;
    /* The job reads its own copy: the loop may set a new want meanwhile. */
    if (p->want.step != NULL) {
        j->want = p->want;
        j->want_used = 1;
    }
    p->claiming = 1;
    p->again = 0;
    if (job_queue(j, NULL) != 0) {
        p->claiming = 0;
        poll_park(p);
    }
}

void on_poll(rpc_call_t *call, const Cerebelum__V1__PollTaskRequest *rq, wsvc_t *ws)
{
    worker_t *w;
    poll_t *p;
    int64_t wait, left;

    if (rq->worker_id[0] == '\0') {
        rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "worker_id is required");
        return;
    }
    if ((w = worker_find(ws, rq->worker_id)) == NULL) {
        rpc_call_fail(call, GRPC_STATUS_FAILED_PRECONDITION,
                      "worker '%.64s' is not registered: call RegisterWorker", rq->worker_id);
        return;
    }
    w->last_seen_ms = now_ms();
    for (size_t i = 0; i < rq->n_queues; i++)
        if (!worker_serves(w, rq->queues[i])) {
            rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                          "queues[%zu]: worker '%.64s' did not register queue '%.64s'", i,
                          rq->worker_id, rq->queues[i]);
            return;
        }
    if ((p = calloc(1, sizeof(*p))) == NULL) {
        rpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    p->ws = ws;
    p->call = call;
    p->worker_id = strdup(w->id);
    p->caps = strdup(w->caps_json);
    if (rq->n_queues > 0) {
        p->queues = strv_dup(rq->queues, rq->n_queues);
        p->nq = rq->n_queues;
    } else {
        p->queues = strv_dup(w->queues, w->nqueues);
        p->nq = w->nqueues;
    }
    uv_timer_init(ws->loop, &p->timer);
    p->timer.data = p;
    poll_link(p);
    if (p->worker_id == NULL || p->caps == NULL || p->queues == NULL) {
        rpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        p->call = NULL;
        poll_end(p);
        return;
    }
    rpc_call_on_cancel(call, on_poll_gone, p);
    /* Never past the client's deadline: answer empty a little before. */
    wait = rq->wait_ms > MAX_WAIT_MS ? MAX_WAIT_MS : rq->wait_ms;
    left = rpc_call_remaining_ms(call);
    if (left != INT64_MAX && wait > left - EARLY_MS) wait = left > EARLY_MS ? left - EARLY_MS : 0;
    if (wait > 0) uv_timer_start(&p->timer, on_poll_deadline, (uint64_t)wait, 0);
    else p->expired = 1;
    poll_claim(p);
}

/* ---- new tasks from the engine -------------------------------------------------- */

/* Engine thread. */
void on_engine_task(void *arg, const char *queue, const char *execution_id,
                           const char *step, int attempt)
{
    wsvc_t *ws = arg;
    note_t *n = calloc(1, sizeof(*n));
    if (n == NULL || (n->queue = strdup(queue)) == NULL || (n->step = strdup(step)) == NULL) {
        if (n != NULL) free(n->queue);
        free(n);
        return; /* the sweep finds it */
    }
    snprintf(n->execution_id, sizeof(n->execution_id), "%s", execution_id);
    n->attempt = attempt;
    cbm_mailbox_post(&ws->notes, &n->mail);
}

static bool poll_takes(const poll_t *p, const char *queue)
{
    for (size_t i = 0; i < p->nq; i++)
        if (strcmp(p->queues[i], queue) == 0) return true;
    return false;
}

void on_notify(cbm_mailbox_t *mb, cbm_mail_t *mail)
{
    wsvc_t *ws = mb->data;

    while (mail != NULL) {
        note_t *n = CBM_MAIL_OWNER(mail, note_t, mail);
        cbm_mail_t *next = mail->next;
        poll_t *pick = NULL;
        const char *sticky = ws->draining ? NULL : sticky_worker(ws, n->execution_id);

        poll_t *mine = NULL;
        for (poll_t *p = ws->polls; p != NULL && !ws->draining; p = p->next) {
            if (p->closing || p->call == NULL || !poll_takes(p, n->queue)) continue;
            if (sticky != NULL && strcmp(p->worker_id, sticky) == 0 &&
                (mine == NULL || (p->parked && !mine->parked)))
                mine = p;
            if (pick == NULL && p->parked) pick = p;
        }
        if (mine != NULL && mine->want.step == NULL) {
            /* Sticky: the worker that ran the execution's last step takes
             * this attempt by name, now, or right after its claim in flight. */
            memcpy(mine->want.execution_id, n->execution_id, 37);
            mine->want.step = n->step;
            mine->want.attempt = n->attempt;
            n->step = NULL;
            if (mine->parked) poll_claim(mine);
            else mine->again = 1;
        } else if (pick != NULL) {
            /* Claimed by its key too (the primary key's row, no walk of the
             * queue's window and no SKIP LOCKED race with other polls); if
             * another poll took it meanwhile, the claim falls back to the
             * queue. */
            if (pick->want.step == NULL) {
                memcpy(pick->want.execution_id, n->execution_id, 37);
                pick->want.step = n->step;
                pick->want.attempt = n->attempt;
                n->step = NULL;
            }
            poll_claim(pick);
        } else {
            /* No parked poll: a claim in flight may have started before
             * this commit and come back empty; have those look once more.
             * (Workers busy: the task waits for their next poll.) */
            for (poll_t *p = ws->polls; p != NULL; p = p->next)
                if (p->claiming && poll_takes(p, n->queue)) p->again = 1;
        }
        free(n->queue);
        free(n->step);
        free(n);
        mail = next;
    }
}

void on_sweep(uv_timer_t *t)
{
    wsvc_t *ws = t->data;
    /* Tasks this process was not told of (another engine's, a retry made
     * by an outside decision): every parked poll looks again. */
    for (poll_t *p = ws->polls; p != NULL; p = p->next)
        if (p->parked) poll_claim(p);
}
