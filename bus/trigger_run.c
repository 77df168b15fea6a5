/*
 * trigger_run.c - a runner: the thread of one trigger (bus_internal.h).
 *
 * Loop: Fetch a small batch from the durable pull consumer (it returns
 * NATS_TIMEOUT after wait_ms when there is nothing, which is normal), and
 * for each message (handled by a pool of worker threads, in no particular
 * order, while the runner fetches the next batch):
 *
 *   1. trigger_eval: the idempotency keys and inputs. Bad data: a row in
 *      cbm_trigger_failures, then Term (never redelivered). If that row
 *      cannot be written (store down) the message is nak'ed instead, so
 *      nothing is terminated unrecorded.
 *   2. cbm_execution_start_opts with each key: it returns once the start is
 *      durable; created or already existing both count. Inputs a blueprint
 *      refuses are bad data (1). The store down, an unknown blueprint (not
 *      registered yet) or a shutdown: NakWithDelay(nak_delay_ms), so the
 *      message comes back when things may have changed.
 *   3. AckSync: the ack follows the commit. A crash between 2 and 3, or an
 *      ack that is lost, means a redelivery, which lands on the existing
 *      executions (step 2 again): no duplicate, and the message is acked.
 *
 * Starts (action start) are done a batch at a time: a worker takes every
 * queued message (up to TAKE_MAX), evaluates each, starts all their jobs in
 * one cbm__execution_start_keyed call (one commit), then acks them all
 * back to back (natsMsg_Ack, pipelined) and waits for one flush (the server
 * has read them); a batch that fails as a whole is done again message by
 * message (the steps above), which isolates a bad message.
 *
 * CEREBELUM_TEST_EXIT_BEFORE_ACK=1 (read at cbm_bus_create; for the tests
 * only) makes the process _exit(3) after the first message's starts
 * committed and before its ack: the crash of step 3.
 */
#include "bus/bus_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cbm_internal.h"
#include "engine_internal.h"

#define EXCERPT 1024
/* A worker takes at most this many queued messages at once (starts). */
#define TAKE_MAX 64
/* A batch of more starts than this is done message by message. */
#define MAX_BATCH_STARTS 1024

/* Sleep ms in small steps, waking early on stop. */
static void nap(runner_t *r, int ms)
{
    for (; ms > 0 && !atomic_load(&r->stop); ms -= 50) usleep(50 * 1000);
}

static void nak(runner_t *r, natsMsg *m)
{
    atomic_fetch_add(&r->naks, 1);
    natsMsg_NakWithDelay(m, r->t->nak_delay_ms, NULL);
}

/* Record m as refused for reason, then terminate it; nak if the record
 * cannot be written. */
static void refuse(runner_t *r, natsMsg *m, const trig_msg_t *v, const char *reason)
{
    char excerpt[EXCERPT + 1];
    size_t n = v->len < EXCERPT ? v->len : EXCERPT;
    store_trigger_failure_t f = {0};
    cbm_error_t err = {0};
    int rc;

    memcpy(excerpt, v->data != NULL ? v->data : "", n);
    excerpt[n] = '\0';
    f.trigger = r->t->name;
    f.stream = (char *)(v->stream != NULL ? v->stream : r->t->stream);
    f.seq = (int64_t)v->seq;
    f.subject = cbm_text_sanitize(v->subject != NULL ? v->subject : "");
    f.reason = cbm_text_sanitize(reason);
    f.data = cbm_text_sanitize(excerpt);
    if (f.subject == NULL || f.reason == NULL || f.data == NULL) {
        rc = CBM_ENOMEM;
    } else {
        rc = cbm__trigger_failure_add(r->bus->engine, &f, &err);
    }
    if (rc != 0) {
        cbm_log_warn("bus: trigger %s: cannot record refused message %s:%llu (%s): %s",
                     r->t->name, f.stream, (unsigned long long)v->seq, reason, err.message);
        nak(r, m);
    } else {
        cbm_log_warn("bus: trigger %s: refused message %s:%llu: %s", r->t->name, f.stream,
                     (unsigned long long)v->seq, reason);
        atomic_fetch_add(&r->failures, 1);
        natsMsg_Term(m, NULL);
    }
    free(f.subject);
    free(f.reason);
    free(f.data);
}

/* Is a start's error the message's fault (bad data), not the store's? */
static bool data_error(int rc)
{
    return rc == CBM_EJSON || rc == CBM_EINVAL;
}

/* Do job j: start with its key (created or existing), or make the
 * decision. A decision refused because it was made already ("already"
 * in CBM_ESTATE's message: approved, rejected, cancelled or finished; what
 * a redelivery after a crash between commit and ack finds) counts as
 * existing; another CBM_ESTATE (the step is not waiting yet) is returned.
 * A signal carries the job's key (cbm_execution_signal_key): one found
 * delivered already counts as existing, so a redelivered message does not
 * signal twice. */
static int act(runner_t *r, const trig_job_t *j, bool *created, cbm_error_t *err)
{
    cbm_engine_t *e = r->bus->engine;
    char who[96];
    int rc;

    snprintf(who, sizeof(who), "trigger:%s", r->t->name);
    *created = true;
    switch (r->t->act) {
    case TRIG_ACT_START: {
        cbm_start_opts_t so = {.idempotency_key = j->key};
        char id[37];
        return cbm_execution_start_opts(e, r->t->blueprint, j->inputs, &so, id, created, err);
    }
    case TRIG_ACT_SIGNAL: {
        /* The message's key goes with the signal: a redelivery finds it
         * delivered (exactly once, like a start). */
        bool delivered = false;
        rc = cbm_execution_signal_key(e, j->execution, j->signal, j->inputs, j->key, &delivered,
                                      err);
        if (rc == 0) *created = delivered;
        break;
    }
    case TRIG_ACT_APPROVE:
        rc = cbm_execution_approve(e, j->execution, j->step, j->inputs, who, err);
        break;
    case TRIG_ACT_REJECT:
        rc = cbm_execution_reject(e, j->execution, j->step,
                                  j->reason != NULL ? j->reason : "rejected by a NATS trigger", who,
                                  err);
        break;
    default:
        rc = cbm_execution_cancel(e, j->execution,
                                  j->reason != NULL ? j->reason : "cancelled by a NATS trigger", err);
        break;
    }
    if (rc == CBM_ESTATE && strstr(err->message, "already") != NULL) {
        *created = false;
        return 0;
    }
    return rc;
}

/* A decision that does not apply yet is nak'ed this many times (with the
 * delay), then refused as bad data. */
#define NOT_YET_TRIES 10

/* A message being handled: its view for trigger_eval and its jobs. */
typedef struct pmsg {
    natsMsg *m;
    jsMsgMetaData *md;
    const char **keys, **vals;
    trig_msg_t v;
    trig_job_t *jobs;
    size_t njobs;
} pmsg_t;

static void pmsg_free(pmsg_t *p)
{
    trig_jobs_free(p->jobs, p->njobs);
    free(p->vals);
    free((void *)p->keys);
    jsMsgMetaData_Destroy(p->md);
}

/* Read message p->m and compute its jobs: 0 when they are ready to be
 * done, 1 when the message was dealt with here (refused or nak'ed). */
static int prepare(runner_t *r, pmsg_t *p)
{
    natsMsg *m = p->m;
    int nkeys = 0, rc;
    char reason[640];

    atomic_fetch_add(&r->messages, 1);
    p->v.subject = natsMsg_GetSubject(m);
    p->v.data = natsMsg_GetData(m);
    p->v.len = (size_t)natsMsg_GetDataLength(m);
    if (natsMsg_GetMetaData(&p->md, m) == NATS_OK) {
        p->v.stream = p->md->Stream;
        p->v.seq = p->md->Sequence.Stream;
    }
    if (natsMsgHeader_Get(m, "Nats-Msg-Id", &p->v.msg_id) != NATS_OK) p->v.msg_id = NULL;
    if (natsMsgHeader_Keys(m, &p->keys, &nkeys) == NATS_OK && nkeys > 0 &&
        (p->vals = calloc((size_t)nkeys, sizeof(*p->vals))) != NULL) {
        for (int i = 0; i < nkeys; i++)
            if (natsMsgHeader_Get(m, p->keys[i], &p->vals[i]) != NATS_OK) p->vals[i] = "";
        p->v.hdr_keys = p->keys;
        p->v.hdr_vals = p->vals;
        p->v.nhdr = (size_t)nkeys;
    }
    if (p->md == NULL) {
        /* Not a JetStream message (cannot be, from a pull consumer). */
        nak(r, m);
        return 1;
    }
    rc = trigger_eval(r->t, &p->v, &p->jobs, &p->njobs, reason, sizeof(reason));
    if (rc == CBM_EINVAL) {
        refuse(r, m, &p->v, reason);
        return 1;
    }
    if (rc != 0) {
        nak(r, m);
        return 1;
    }
    return 0;
}

/* Its jobs are durable: ack (a synchronous ack: the server has it). */
static void ack(runner_t *r, pmsg_t *p)
{
    jsErrCode jerr = 0;

    if (r->bus->exit_before_ack) _exit(3); /* the test hook: committed, not acked */
    if (natsMsg_AckSync(p->m, NULL, &jerr) == NATS_OK) {
        atomic_fetch_add(&r->acks, 1);
    } else {
        /* Redelivered after AckWait: it lands on what exists. */
        cbm_log_warn("bus: trigger %s: ack of %s:%llu failed (JetStream error %d)", r->t->name,
                     p->v.stream, (unsigned long long)p->v.seq, (int)jerr);
    }
}

/* Do p's jobs one by one, then ack; on a failure refuse or nak instead. */
static void act_and_ack(runner_t *r, pmsg_t *p)
{
    char reason[640];
    int rc;

    for (size_t i = 0; i < p->njobs; i++) {
        cbm_error_t err = {0};
        bool created = false;

        rc = act(r, &p->jobs[i], &created, &err);
        if (rc == 0) {
            atomic_fetch_add(created ? &r->started : &r->existing, 1);
            continue;
        }
        if (data_error(rc) || (rc == CBM_ENOTFOUND && r->t->act != TRIG_ACT_START) ||
            (rc == CBM_ESTATE && p->md->NumDelivered >= NOT_YET_TRIES)) {
            snprintf(reason, sizeof(reason), "%s %.64s (key %.200s): %.300s", r->t->action,
                     r->t->act == TRIG_ACT_START ? r->t->blueprint : p->jobs[i].execution,
                     p->jobs[i].key, err.message);
            refuse(r, p->m, &p->v, reason);
        } else {
            cbm_log_warn("bus: trigger %s: %s (key %s): %s; nak, again in %d ms", r->t->name,
                         r->t->action, p->jobs[i].key, err.message, r->t->nak_delay_ms);
            bus_set_state(r, "fetching", err.message);
            nak(r, p->m);
        }
        return;
    }
    ack(r, p);
}

static void handle(runner_t *r, natsMsg *m)
{
    pmsg_t p = {.m = m};
    if (prepare(r, &p) == 0) act_and_ack(r, &p);
    pmsg_free(&p);
}

/* The starts of several messages at once (action start): every job of
 * every message in one cbm__execution_start_keyed call, so the batch costs
 * one blueprint lookup and one commit instead of a read, a lookup and a
 * share of a commit per message; then each message is acked. If the call
 * fails (a bad input among them, the store down), each message is done on
 * its own (act_and_ack), which finds the culprit and refuses or naks it;
 * what the batch did start is found there by its keys. */
static void handle_batch(runner_t *r, natsMsg **ms, int k)
{
    pmsg_t *p = calloc((size_t)k, sizeof(*p));
    const char **inputs = NULL, **keys = NULL;
    char (*ids)[37] = NULL;
    bool *created = NULL;
    size_t n = 0, at = 0;
    cbm_error_t err = {0};
    int rc = CBM_ENOMEM;

    if (p == NULL) {
        for (int i = 0; i < k; i++) handle(r, ms[i]);
        return;
    }
    for (int i = 0; i < k; i++) {
        p[i].m = ms[i];
        if (prepare(r, &p[i]) != 0) {
            pmsg_free(&p[i]);
            memset(&p[i], 0, sizeof(p[i])); /* done with */
            continue;
        }
        n += p[i].njobs;
    }
    if (n > MAX_BATCH_STARTS) {
        rc = CBM_EINVAL; /* big for_each arrays: message by message */
    } else if (n > 0 && (inputs = calloc(n, sizeof(*inputs))) != NULL &&
        (keys = calloc(n, sizeof(*keys))) != NULL && (ids = calloc(n, sizeof(*ids))) != NULL &&
        (created = calloc(n, sizeof(*created))) != NULL) {
        for (int i = 0; i < k; i++)
            for (size_t j = 0; p[i].m != NULL && j < p[i].njobs; j++, at++) {
                inputs[at] = p[i].jobs[j].inputs;
                keys[at] = p[i].jobs[j].key;
            }
        rc = cbm__execution_start_keyed(r->bus->engine, r->t->blueprint, inputs, keys, n, ids,
                                        created, &err);
    } else if (n == 0) {
        rc = 0; /* nothing to start (empty for_each arrays): ack them */
    }
    if (rc != 0)
        cbm_log_info("bus: trigger %s: a batch of %zu starts failed (%s); one message at a time",
                     r->t->name, n, rc == CBM_EINVAL && n > MAX_BATCH_STARTS ? "too many"
                                                                            : err.message);
    at = 0;
    for (int i = 0; i < k; i++) {
        if (p[i].m == NULL) continue;
        if (rc == 0) {
            for (size_t j = 0; j < p[i].njobs; j++, at++)
                atomic_fetch_add(created[at] ? &r->started : &r->existing, 1);
            /* Committed: the acks go out back to back (pipelined), and one
             * flush below waits until the server has read them all. */
            if (r->bus->exit_before_ack) _exit(3); /* the test hook */
            if (natsMsg_Ack(p[i].m, NULL) == NATS_OK)
                atomic_fetch_add(&r->acks, 1);
            else
                cbm_log_warn("bus: trigger %s: ack of %s:%llu failed", r->t->name, p[i].v.stream,
                             (unsigned long long)p[i].v.seq);
        } else {
            act_and_ack(r, &p[i]);
        }
        pmsg_free(&p[i]);
    }
    /* A lost ack only means a redelivery, which lands on what exists. */
    if (rc == 0 && natsConnection_FlushTimeout(r->bus->nc, 5000) != NATS_OK)
        cbm_log_warn("bus: trigger %s: the acks of a batch were not confirmed by a flush",
                     r->t->name);
    free(created);
    free(ids);
    free(keys);
    free(inputs);
    free(p);
}

/* Fetched messages go to a queue that CONCURRENCY worker threads take
 * them from, and the runner fetches again at once (at most QCAP messages
 * wait): each start waits for its commit (a few ms) and the engine's
 * committer puts concurrent starts into one transaction, so parallel
 * handling and the next Fetch overlapping the current batch's commits and
 * acks are what make one trigger take more than a few hundred messages a
 * second. Messages are therefore started in no particular order; each is
 * acked after its own starts. */
#define CONCURRENCY 16
#define QCAP 512

static void *work(void *arg)
{
    runner_t *r = arg;
    natsMsg *ms[TAKE_MAX];

    for (;;) {
        int k = 0, take;
        pthread_mutex_lock(&r->qmu);
        while (r->qlen == 0 && !r->qclose) pthread_cond_wait(&r->qcv, &r->qmu);
        if (r->qlen == 0) {
            pthread_mutex_unlock(&r->qmu);
            break;
        }
        /* Starts are done in batches: what waits, up to TAKE_MAX. */
        take = r->t->act == TRIG_ACT_START ? (r->qlen < TAKE_MAX ? r->qlen : TAKE_MAX) : 1;
        for (; k < take; k++) {
            ms[k] = r->q[r->qhead];
            r->qhead = (r->qhead + 1) % QCAP;
            r->qlen--;
        }
        pthread_cond_broadcast(&r->qspace);
        pthread_mutex_unlock(&r->qmu);
        if (atomic_load(&r->stop)) {
            for (int i = 0; i < k; i++) natsMsg_Nak(ms[i], NULL); /* someone else's, at once */
        } else if (k == 1) {
            handle(r, ms[0]);
        } else {
            handle_batch(r, ms, k);
        }
        for (int i = 0; i < k; i++) natsMsg_Destroy(ms[i]);
    }
    nats_ReleaseThreadMemory();
    return NULL;
}

/* Hand the list's messages to the workers (the list keeps none), all at
 * once when they fit, so that one worker takes the fetched batch whole. */
static void enqueue(runner_t *r, natsMsgList *list, int cap)
{
    pthread_mutex_lock(&r->qmu);
    for (int i = 0; i < list->Count; i++) {
        while (r->qlen >= cap) {
            pthread_cond_broadcast(&r->qcv);
            pthread_cond_wait(&r->qspace, &r->qmu);
        }
        r->q[(r->qhead + r->qlen) % QCAP] = list->Msgs[i];
        r->qlen++;
        list->Msgs[i] = NULL;
    }
    if (r->qlen > TAKE_MAX || r->t->act != TRIG_ACT_START)
        pthread_cond_broadcast(&r->qcv);
    else
        pthread_cond_signal(&r->qcv);
    pthread_mutex_unlock(&r->qmu);
}

static int start_workers(runner_t *r)
{
    pthread_mutex_init(&r->qmu, NULL);
    pthread_cond_init(&r->qcv, NULL);
    pthread_cond_init(&r->qspace, NULL);
    if ((r->q = calloc(QCAP, sizeof(*r->q))) == NULL) return CBM_ENOMEM;
    for (r->nworkers = 0; r->nworkers < CONCURRENCY; r->nworkers++)
        if (pthread_create(&r->workers[r->nworkers], NULL, work, r) != 0) break;
    return r->nworkers > 0 ? 0 : CBM_ENOMEM;
}

/* Let the workers finish what is queued (nak'ed: stop is set) and end. */
static void stop_workers(runner_t *r)
{
    pthread_mutex_lock(&r->qmu);
    r->qclose = true;
    pthread_cond_broadcast(&r->qcv);
    pthread_mutex_unlock(&r->qmu);
    for (int i = 0; i < r->nworkers; i++) pthread_join(r->workers[i], NULL);
    free(r->q);
    pthread_cond_destroy(&r->qspace);
    pthread_cond_destroy(&r->qcv);
    pthread_mutex_destroy(&r->qmu);
}

static void *run(void *arg)
{
    runner_t *r = arg;
    natsSubscription *sub = NULL;
    char msg[256];
    bool erred = false;
    int cap = r->t->batch * 2 < QCAP ? r->t->batch * 2 : QCAP;

    if (start_workers(r) != 0) {
        bus_set_state(r, "error", "cannot start worker threads");
        atomic_store(&r->stop, true);
    }
    while (!atomic_load(&r->stop)) {
        natsMsgList list = {0};
        jsErrCode jerr = 0;
        natsStatus s;

        if (sub == NULL) {
            if (bus_subscribe(r->bus, r->t, &sub, msg, sizeof(msg)) != 0) {
                cbm_log_warn("bus: trigger %s: %s; again in 1 s", r->t->name, msg);
                bus_set_state(r, "error", msg);
                nap(r, 1000);
                continue;
            }
            bus_set_state(r, "fetching", NULL);
        }
        s = natsSubscription_Fetch(&list, sub, r->t->batch, r->t->wait_ms, &jerr);
        atomic_store(&r->last_fetch_us, bus_now_us());
        if ((s == NATS_OK || s == NATS_TIMEOUT) && erred) {
            bus_set_state(r, "fetching", NULL);
            erred = false;
        }
        if (s == NATS_TIMEOUT) continue;
        if (s != NATS_OK) {
            /* Disconnected (the connection comes back by itself) or the
             * consumer went away: bind again after a pause. */
            snprintf(msg, sizeof(msg), "fetch: %s (JetStream error %d)", natsStatus_GetText(s),
                     (int)jerr);
            bus_set_state(r, "error", msg);
            erred = true;
            natsMsgList_Destroy(&list);
            if (s == NATS_INVALID_SUBSCRIPTION || s == NATS_CONNECTION_CLOSED || jerr != 0) {
                natsSubscription_Destroy(sub);
                sub = NULL;
            }
            nap(r, 250);
            continue;
        }
        enqueue(r, &list, cap);
        natsMsgList_Destroy(&list); /* the array; the messages are the workers' */
    }
    stop_workers(r);
    natsSubscription_Destroy(sub);
    nats_ReleaseThreadMemory();
    return NULL;
}

int runner_start(runner_t *r)
{
    return pthread_create(&r->thread, NULL, run, r) == 0 ? 0 : CBM_ENOMEM;
}

void runner_stop(runner_t *r)
{
    atomic_store(&r->stop, true);
    pthread_join(r->thread, NULL);
}
