/* committer.c - see committer.h. */
#include "engine/committer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cbm_internal.h"

struct committer {
    uv_loop_t *loop;
    cbm_mailbox_t done;           /* finished requests, to the loop */
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cv;
    store_t *store;
    char *url;
    int max_batch;
    cm_done_cb cb;
    void *ctx;
    cm_stats_t *stats;
    store_t *life;                /* the incarnation's lock (cm_set_life) */
    char engine_id[37];
    int64_t lock_key;

    /* Guarded by mu. */
    cm_req_t *qhead, *qtail;      /* waiting to be committed */
    int stopping;                 /* give up on an unreachable store */
    int exiting;                  /* thread exits once the queue is empty */
    int busy;                     /* a batch is being committed */
    size_t outstanding;           /* submitted and not yet called back */
};

static int stopping(committer_t *c)
{
    int s;
    uv_mutex_lock(&c->mu);
    s = c->stopping;
    uv_mutex_unlock(&c->mu);
    return s;
}

/*
 * After a connection loss mid-commit we do not know whether the transaction
 * committed. Reconnect (with back-off), then look at each decision's last seq:
 * already there means it committed; unchanged means it did not.
 * Returns 0 when reconnected (results set for resolved decisions, the rest
 * left at CBM_EUNAVAIL to retry), CBM_ESHUTDOWN when asked to stop meanwhile.
 */
static int recover(committer_t *c, cm_req_t **batch, size_t n)
{
    int backoff = 100;
    cbm_error_t err;

    for (;;) {
        if (stopping(c)) return CBM_ESHUTDOWN;
        uv_sleep((unsigned)backoff);
        if (store_reconnect(c->store, &err) == 0) break;
        atomic_fetch_add(&c->stats->errors, 1);
        cbm_log_warn("store unreachable, retrying in %d ms: %s", backoff, err.message);
        backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
    }
    cbm_log_info("store reconnected");
    for (size_t i = 0; i < n; i++) {
        store_decision_t *d = &batch[i]->d;
        int64_t last = 0;
        if (store_last_seq(c->store, d->execution_id, &last, &err) != 0) return CBM_EUNAVAIL;
        if (last >= d->expected_seq + (int64_t)d->nevents) d->result_code = 0;
        else if (last == d->expected_seq) d->result_code = CBM_EUNAVAIL;
        else d->result_code = CBM_ECONFLICT;
    }
    return 0;
}

/*
 * The life connection holds this engine's lock. If its session was lost (the
 * server restarted, the backend was terminated), take the lock again before
 * committing, so that an engine starting now does not take us for dead;
 * if one already did, the commits fail with CBM_EFENCED whatever we do.
 */
static void keep_life(committer_t *c)
{
    cbm_error_t err;
    int rc;

    if (c->life == NULL || store_life_ok(c->life)) return;
    if (store_reconnect(c->life, &err) != 0) {
        cbm_log_warn("engine %s: life connection lost: %s", c->engine_id, err.message);
        return;
    }
    if ((rc = store_engine_relock(c->life, c->engine_id, c->lock_key, &err)) != 0)
        cbm_log_error("engine %s: %s", c->engine_id, err.message);
    else
        cbm_log_info("engine %s: life connection re-established", c->engine_id);
}

/* Commit one batch until every decision has a final result. */
static void commit_batch(committer_t *c, cm_req_t **batch, size_t n)
{
    store_decision_t **ds = malloc(n * sizeof(*ds));
    size_t m;
    uint64_t t0;
    cbm_error_t err;

    for (size_t i = 0; i < n; i++) batch[i]->d.result_code = CBM_EUNAVAIL;
    for (;;) {
        int rc;
        m = 0;
        for (size_t i = 0; i < n; i++)
            if (batch[i]->d.result_code == CBM_EUNAVAIL) ds[m++] = &batch[i]->d;
        if (m == 0) break;
        t0 = uv_hrtime();
        rc = store_append(c->store, ds, m, &err);
        if (rc == 0 || rc != CBM_EUNAVAIL) {
            /* A transaction that answered (committed, or refused some). */
            cbm_hist_observe(&c->stats->m.batch, cbm_batch_bounds, cbm_batch_nbounds,
                             (int64_t)m);
            cbm_hist_observe(&c->stats->m.duration_us, cbm_commit_bounds_us,
                             cbm_commit_nbounds, (int64_t)((uv_hrtime() - t0) / 1000));
            if (rc == CBM_EEXIST || rc == CBM_EINVAL) {
                /* Only idempotency keys already taken, or decisions whose
                 * data the store refused, were turned down (each is
                 * answered alone); the rest committed. */
                atomic_fetch_add(&c->stats->commits, 1);
                cbm_log_debug("commit of %zu decisions: %s", m, err.message);
            } else if (rc != 0) {
                atomic_fetch_add(&c->stats->errors, 1);
                if (rc != CBM_EFENCED || atomic_fetch_add(&c->stats->fenced, 1) == 0)
                    cbm_log_error("commit of %zu decisions failed: %s", m, err.message);
            } else {
                atomic_fetch_add(&c->stats->commits, 1);
            }
            for (size_t i = 0; i < m; i++)
                if (rc != 0 && ds[i]->result_code == CBM_EUNAVAIL) ds[i]->result_code = rc;
            break;
        }
        atomic_fetch_add(&c->stats->errors, 1);
        cbm_log_warn("store connection lost during commit: %s", err.message);
        if (recover(c, batch, n) == CBM_ESHUTDOWN) {
            for (size_t i = 0; i < n; i++)
                if (batch[i]->d.result_code == CBM_EUNAVAIL) batch[i]->d.result_code = CBM_ESHUTDOWN;
            break;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (batch[i]->d.result_code == 0) {
            atomic_fetch_add(&c->stats->decisions, 1);
            atomic_fetch_add(&c->stats->events, batch[i]->d.nevents);
            cbm_commit_metrics_events(&c->stats->m, batch[i]->d.events, batch[i]->d.nevents);
        }
    }
    free(ds);
}

static void thread_main(void *arg)
{
    committer_t *c = arg;
    cm_req_t **batch = malloc((size_t)c->max_batch * sizeof(*batch));
    cm_req_t **jobs = malloc((size_t)c->max_batch * sizeof(*jobs));

    uv_mutex_lock(&c->mu);
    for (;;) {
        size_t n = 0;
        while (c->qhead == NULL && !c->exiting) uv_cond_wait(&c->cv, &c->mu);
        if (c->qhead == NULL) break;
        while (c->qhead != NULL && n < (size_t)c->max_batch) {
            batch[n++] = c->qhead;
            c->qhead = c->qhead->next;
        }
        if (c->qhead == NULL) c->qtail = NULL;
        c->busy = 1;
        uv_mutex_unlock(&c->mu);

        {
            size_t nd = 0, nj = 0;
            for (size_t i = 0; i < n; i++) {
                if (batch[i]->job != NULL) jobs[nj++] = batch[i];
                else batch[nd++] = batch[i];
            }
            /* Decisions first, in one transaction; then the jobs, in order. */
            if (nd > 0) keep_life(c);
            if (nd > 0) commit_batch(c, batch, nd);
            for (size_t j = 0; j < nj; j++) {
                if (!store_ok(c->store)) store_reconnect(c->store, NULL);
                jobs[j]->job(c->store, jobs[j]);
                batch[nd + j] = jobs[j];
            }
        }

        for (size_t i = 0; i + 1 < n; i++) batch[i]->mail.next = &batch[i + 1]->mail;
        cbm_mailbox_post_list(&c->done, &batch[0]->mail, &batch[n - 1]->mail);
        uv_mutex_lock(&c->mu);
        c->busy = 0;
    }
    uv_mutex_unlock(&c->mu);
    free(batch);
    free(jobs);
}

static void on_done(cbm_mailbox_t *mb, cbm_mail_t *m)
{
    committer_t *c = mb->data;
    while (m != NULL) {
        cbm_mail_t *next = m->next;
        c->outstanding--;
        c->cb(CBM_MAIL_OWNER(m, cm_req_t, mail), c->ctx);
        m = next;
    }
}

int cm_create(committer_t **out, uv_loop_t *loop, store_t **store, const char *url,
              int max_batch, cm_done_cb cb, void *ctx, cm_stats_t *stats)
{
    committer_t *c = calloc(1, sizeof(*c));
    if (c == NULL) return CBM_ENOMEM;
    c->loop = loop;
    c->store = *store;
    c->url = cbm_strdup(url);
    c->max_batch = max_batch > 0 ? max_batch : 512;
    c->cb = cb;
    c->ctx = ctx;
    c->stats = stats;
    uv_mutex_init(&c->mu);
    uv_cond_init(&c->cv);
    if (cbm_mailbox_init(&c->done, loop, on_done, c) != 0) {
        uv_cond_destroy(&c->cv);
        uv_mutex_destroy(&c->mu);
        free(c->url);
        free(c);
        return CBM_ENOMEM;
    }
    if (uv_thread_create(&c->thread, thread_main, c) != 0) {
        cbm_mailbox_close(&c->done, NULL);
        uv_cond_destroy(&c->cv);
        uv_mutex_destroy(&c->mu);
        free(c->url);
        free(c);
        return CBM_ENOMEM;
    }
    *store = NULL;
    *out = c;
    return 0;
}

void cm_set_life(committer_t *c, store_t **life, const char *engine_id, int64_t lock_key)
{
    c->life = *life;
    *life = NULL;
    snprintf(c->engine_id, sizeof(c->engine_id), "%s", engine_id);
    c->lock_key = lock_key;
}

void cm_submit(committer_t *c, cm_req_t *r)
{
    r->next = NULL;
    c->outstanding++;
    uv_mutex_lock(&c->mu);
    if (c->qtail != NULL) c->qtail->next = r;
    else c->qhead = r;
    c->qtail = r;
    uv_cond_signal(&c->cv);
    uv_mutex_unlock(&c->mu);
}

int cm_idle(committer_t *c)
{
    return c->outstanding == 0;
}

void cm_stop(committer_t *c)
{
    uv_mutex_lock(&c->mu);
    c->stopping = 1;
    uv_cond_signal(&c->cv);
    uv_mutex_unlock(&c->mu);
}

static void on_close(uv_handle_t *h)
{
    cbm_mailbox_t *mb = h->data;
    committer_t *c = mb->data;
    cbm_mailbox_finish(mb);
    store_close(c->store);
    store_close(c->life);
    uv_cond_destroy(&c->cv);
    uv_mutex_destroy(&c->mu);
    free(c->url);
    free(c);
}

void cm_close(committer_t *c)
{
    uv_mutex_lock(&c->mu);
    c->stopping = 1;
    c->exiting = 1;
    uv_cond_signal(&c->cv);
    uv_mutex_unlock(&c->mu);
    uv_thread_join(&c->thread);
    if (c->life != NULL && store_life_ok(c->life)) {
        /* A graceful stop: nothing of ours is in flight any more. */
        cbm_error_t err;
        if (store_engine_unregister(c->life, c->engine_id, &err) != 0)
            cbm_log_warn("engine %s: %s", c->engine_id, err.message);
    }
    {
        /* Deliver anything finished after the last wake-up. */
        cbm_mail_t *m = cbm_mailbox_take(&c->done);
        if (m != NULL) on_done(&c->done, m);
    }
    cbm_mailbox_close(&c->done, on_close);
}
