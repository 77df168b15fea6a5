/* decision.c - see decision.h. */
#include "engine/decision.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/decider.h"

void dec_release(store_decision_t *d)
{
    for (size_t i = 0; i < d->nevents; i++) {
        free(d->events[i].type);
        free(d->events[i].payload);
    }
    free(d->events);
    for (size_t i = 0; i < d->ntimers_set; i++) {
        free(d->timers_set[i].kind);
        free(d->timers_set[i].key);
    }
    free(d->timers_set);
    for (size_t i = 0; i < d->ntimers_cleared; i++) free(d->timers_cleared[i]);
    free(d->timers_cleared);
    free((char *)d->inputs);
    free((char *)d->result);
    free((char *)d->error);
    free((char *)d->snapshot);
    for (size_t i = 0; i < d->ntasks; i++) {
        free(d->tasks[i].payload);
        free(d->tasks[i].requires);
    }
    free(d->tasks);
    free(d->tasks_done);
    d->tasks = NULL;
    d->tasks_done = NULL;
    d->ntasks = d->ntasks_done = 0;
    d->snapshot = NULL;
    d->events = NULL;
    d->nevents = 0;
    d->timers_set = NULL;
    d->timers_cleared = NULL;
    d->ntimers_set = d->ntimers_cleared = 0;
    d->inputs = d->result = d->error = NULL;
}

int dec_add_timer(store_decision_t *d, const char *kind, const char *key, int64_t due_us)
{
    store_timer_t *n = realloc(d->timers_set, (d->ntimers_set + 1) * sizeof(*n));
    if (n == NULL) return CBM_ENOMEM;
    d->timers_set = n;
    memset(&n[d->ntimers_set], 0, sizeof(*n));
    memcpy(n[d->ntimers_set].execution_id, d->execution_id, sizeof(d->execution_id));
    n[d->ntimers_set].kind = strdup(kind);
    n[d->ntimers_set].key = strdup(key);
    n[d->ntimers_set].due_at_us = due_us;
    d->ntimers_set++;
    return n[d->ntimers_set - 1].kind && n[d->ntimers_set - 1].key ? 0 : CBM_ENOMEM;
}

int dec_clear_timer(store_decision_t *d, const char *key)
{
    char **n = realloc(d->timers_cleared, (d->ntimers_cleared + 1) * sizeof(*n));
    if (n == NULL) return CBM_ENOMEM;
    d->timers_cleared = n;
    n[d->ntimers_cleared] = strdup(key);
    return n[d->ntimers_cleared++] != NULL ? 0 : CBM_ENOMEM;
}

/* The attempt of step i that runs on a remote worker now (its task row
 * exists), or 0. */
static int live_task(const st_exec_t *st, size_t i)
{
    const st_step_t *s = &st->steps[i];
    /* An execution that ended (cancelled, failed, timed out) runs nothing,
     * though its steps keep the status they had. */
    if (st_terminal(st) || !bp_step_remote(&st->bp->steps[i]) || s->status != SS_SCHEDULED ||
        s->wait != SW_NONE)
        return 0;
    return s->attempt;
}

/* {"<capability>":"<value>",...} of a step, or NULL when it requires none. */
static char *requires_json(const bp_step_t *b, int *rc)
{
    cJSON *o;
    char *out;
    *rc = 0;
    if (b->nrequires == 0) return NULL;
    if ((o = cJSON_CreateObject()) == NULL) goto oom;
    for (size_t k = 0; k < b->nrequires; k++)
        if (cJSON_AddStringToObject(o, b->requires[k].key, b->requires[k].value) == NULL) {
            cJSON_Delete(o);
            goto oom;
        }
    out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (out != NULL) return out;
oom:
    *rc = CBM_ENOMEM;
    return NULL;
}

/* Task rows: one per remote attempt that started running in this decision,
 * and a delete for each that stopped (before[i]: the live attempt of step i
 * before the decision). Strings other than payload and requires point into
 * the blueprint. */
static int diff_tasks(const st_exec_t *st, const int *before, store_decision_t *d)
{
    const bp_blueprint_t *bp = st->bp;
    size_t nnew = 0, ndone = 0;
    int rc;

    for (size_t i = 0; i < bp->nsteps; i++) {
        int now = live_task(st, i);
        if (now != before[i]) {
            nnew += now != 0;
            ndone += before[i] != 0;
        }
    }
    if (nnew > 0 && (d->tasks = calloc(nnew, sizeof(*d->tasks))) == NULL) return CBM_ENOMEM;
    if (ndone > 0 && (d->tasks_done = calloc(ndone, sizeof(*d->tasks_done))) == NULL)
        return CBM_ENOMEM;
    for (size_t i = 0; i < bp->nsteps; i++) {
        const bp_step_t *b = &bp->steps[i];
        int now = live_task(st, i);
        if (now == before[i]) continue;
        if (before[i] != 0) {
            d->tasks_done[d->ntasks_done].step = b->name;
            d->tasks_done[d->ntasks_done++].attempt = before[i];
        }
        if (now != 0) {
            store_task_t *t = &d->tasks[d->ntasks++];
            memcpy(t->execution_id, st->id, sizeof(t->execution_id));
            t->step = b->name;
            t->attempt = now;
            t->queue = b->queue;
            t->handler = b->handler;
            t->blueprint = bp->name;
            t->lease_ms = b->heartbeat_timeout_ms;
            t->timeout_ms = b->timeout_ms;
            if ((t->payload = dc_step_input(st, i)) == NULL) return CBM_ENOMEM;
            t->requires = requires_json(b, &rc);
            if (rc != 0) return rc;
        }
    }
    return 0;
}

/* Grow the event array to hold one more. */
static store_event_t *new_event(store_decision_t *d, size_t *cap)
{
    if (d->nevents == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        store_event_t *n = realloc(d->events, c * sizeof(*n));
        if (n == NULL) return NULL;
        d->events = n;
        *cap = c;
    }
    memset(&d->events[d->nevents], 0, sizeof(store_event_t));
    return &d->events[d->nevents];
}

static int add_event(st_exec_t *st, store_decision_t *d, size_t *cap, eng_event_t *ev,
                     int64_t now, size_t *sched, size_t *nsched)
{
    store_event_t *se = new_event(d, cap);
    int rc;
    if (se == NULL) return CBM_ENOMEM;
    ev->seq = st->seq + 1;
    ev->at_us = now;
    memcpy(se->execution_id, st->id, sizeof(se->execution_id));
    se->seq = ev->seq;
    se->recorded_at_us = now;
    se->type = strdup(ev_type_name(ev->type));
    se->payload = ev_encode(ev, st->bp);
    if (se->type == NULL || se->payload == NULL) {
        free(se->type);
        free(se->payload);
        return CBM_ENOMEM;
    }
    if ((rc = st_apply(st, ev)) != 0) {
        free(se->type);
        free(se->payload);
        return rc;
    }
    d->nevents++;
    if (ev->type == EV_STEP_SCHEDULED && st->bp->steps[ev->step].kind == BP_TASK &&
        !bp_step_remote(&st->bp->steps[ev->step]))
        sched[(*nsched)++] = (size_t)ev->step;
    return 0;
}

int dec_build(st_exec_t *st, eng_event_t *in, size_t nin, int64_t now_us, store_decision_t *d,
              size_t **sched_out, size_t *nsched)
{
    size_t nsteps = st->bp->nsteps, cap = 0, cap_dec = 2 * nsteps + 2, ndec;
    size_t sched_cap = nin + 4 * nsteps + 4;
    st_timer_t *before = NULL;
    size_t nbefore = st->ntimers;
    int *tasks_before = calloc(nsteps ? nsteps : 1, sizeof(*tasks_before));
    eng_event_t *dec = calloc(cap_dec, sizeof(*dec));
    size_t *sched = calloc(sched_cap, sizeof(*sched));
    int64_t expected = st->seq;
    int is_new = st->seq == 0;
    int rc = CBM_ENOMEM;

    *nsched = 0;
    memcpy(d->execution_id, st->id, sizeof(d->execution_id));
    if (dec == NULL || sched == NULL || tasks_before == NULL) goto done;
    for (size_t i = 0; i < nsteps; i++) tasks_before[i] = live_task(st, i);
    if (nbefore > 0) {
        if ((before = malloc(nbefore * sizeof(*before))) == NULL) goto done;
        memcpy(before, st->timers, nbefore * sizeof(*before));
    }
    for (size_t i = 0; i < nin; i++)
        if ((rc = add_event(st, d, &cap, &in[i], now_us, sched, nsched)) != 0) goto done;
    /* The decider's layers: each may follow from the previous one. A step
     * can change state a bounded number of times per decision, so this ends;
     * the bound is a guard against a decider bug, not a limit users meet. */
    for (int layer = 0; layer < 4 * (int)nsteps + 8; layer++) {
        if ((rc = dc_decide(st, now_us, dec, cap_dec, &ndec)) != 0) goto done;
        if (ndec == 0) break;
        if (*nsched + ndec > sched_cap) {
            size_t *n = realloc(sched, (*nsched + ndec + sched_cap) * sizeof(*n));
            if (n == NULL) goto done;
            sched = n;
            sched_cap = *nsched + ndec + sched_cap;
        }
        for (size_t i = 0; i < ndec; i++) {
            rc = add_event(st, d, &cap, &dec[i], now_us, sched, nsched);
            ev_finish(&dec[i]);
            if (rc != 0) {
                for (size_t j = i + 1; j < ndec; j++) ev_finish(&dec[j]);
                goto done;
            }
        }
    }
    rc = CBM_ENOMEM;
    d->expected_seq = expected;
    d->status = st_projection_status(st);
    if (is_new) {
        d->is_new = true;
        d->blueprint = st->bp->name;
        d->version = st->bp->version;
        if ((d->inputs = cbm_strdup(st->inputs)) == NULL) goto done;
    }
    if ((st->result != NULL && (d->result = strdup(st->result)) == NULL) ||
        (st->error != NULL && (d->error = strdup(st->error)) == NULL))
        goto done;
    /* Timers: what the state gained or changed is set, what it lost cleared. */
    for (size_t i = 0; i < st->ntimers; i++) {
        const st_timer_t *t = &st->timers[i];
        bool same = false;
        for (size_t j = 0; j < nbefore && !same; j++)
            same = strcmp(before[j].key, t->key) == 0 && before[j].due_us == t->due_us;
        if (!same && dec_add_timer(d, st_timer_kind_name(t->kind), t->key, t->due_us) != 0)
            goto done;
    }
    for (size_t j = 0; j < nbefore; j++)
        if (st_timer_find(st, before[j].key) == NULL && dec_clear_timer(d, before[j].key) != 0)
            goto done;
    if ((rc = diff_tasks(st, tasks_before, d)) != 0) goto done;
    rc = CBM_ENOMEM;
    /* A finished execution needs no wake-up call either (a "wake" row is
     * written by outside decisions and is not part of the state). */
    if (st_terminal(st) && dec_clear_timer(d, "wake") != 0) goto done;
    /* Long histories get a snapshot, so a rebuild folds only what follows. */
    if (!st_terminal(st) && st->seq / DEC_SNAPSHOT_EVERY > expected / DEC_SNAPSHOT_EVERY) {
        if ((d->snapshot = st_to_json(st)) == NULL) goto done;
        d->snapshot_seq = st->seq;
    }
    rc = 0;
done:
    free(before);
    free(tasks_before);
    free(dec);
    if (rc != 0) {
        free(sched);
        *nsched = 0;
        dec_release(d);
        return rc;
    }
    *sched_out = sched;
    return 0;
}

int dec_fold(st_exec_t *st, const char *id, const bp_blueprint_t *bp, const char *snapshot,
             const store_event_t *evs, size_t n, cbm_error_t *err)
{
    int rc = st_init(st, id, bp);
    if (rc != 0) return cbm_error_set(err, rc, "out of memory");
    if (snapshot != NULL && (rc = st_from_json(st, snapshot)) != 0)
        return cbm_error_set(err, rc, "execution %s: its snapshot does not restore", id);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        eng_event_t ev;
        rc = ev_decode(evs[i].type, evs[i].payload, evs[i].seq, evs[i].recorded_at_us, bp, &ev, err);
        if (rc == 0 && (rc = st_apply(st, &ev)) != 0)
            cbm_error_set(err, rc, "execution %s: event %lld (%s) does not follow its history", id,
                          (long long)evs[i].seq, evs[i].type);
        ev_finish(&ev);
    }
    return rc;
}
