/*
 * runtime_decide.c - the loop's decisions (runtime.h): one decision per
 * execution from its pending inputs and the decider, its commit's outcome
 * (committed, stale, fenced, refused, a key taken), and what an execution
 * does after it (dispatch, child looks, hibernation). Split from runtime.c,
 * which keeps executions in memory, step dispatch, the inbox and the
 * lifecycle.
 */
#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cbm_internal.h"
#include "engine/committer.h"
#include "engine/decider.h"
#include "engine/decision.h"
#include "engine/event.h"
#include "engine/runtime.h"
#include "engine/runtime_internal.h"
#include "engine/state.h"

/* --------------------------------------------------------------- decisions */

static void decision_free(rt_decision_t *d)
{
    dec_release(&d->req.d);
    free(d->sched);
    free(d->calls);
    for (size_t i = 0; i < d->nwaited; i++) free(d->waited[i]);
    free(d->waited);
    free(d);
}

/* Answer a remote result's caller (rt_task_result). */
void rt_answer_result(rt_t *rt, rt_call_t *c, int rc)
{
    c->rc = rc;
    rt_call_complete(rt, c);
}

/* Why a remote outcome for step ev->step, attempt ev->attempt, no longer
 * applies. */
static void ignored_reason(const st_exec_t *st, const eng_event_t *ev, char *buf, size_t cap)
{
    const st_step_t *s = &st->steps[ev->step];
    if (st_terminal(st))
        snprintf(buf, cap, "execution %s", st_status_name(st->status));
    else if (s->attempt != ev->attempt)
        snprintf(buf, cap, "stale attempt %d (current %d)", ev->attempt, s->attempt);
    else if (s->status == SS_COMPLETED)
        snprintf(buf, cap, "already completed");
    else
        snprintf(buf, cap, "attempt %d already ended", ev->attempt);
}

/* Does an input still apply to the state? A handler's outcome applies to the
 * attempt it ran; a timer only if the state still has it at that due time. */
static bool input_applies(const st_exec_t *st, const eng_event_t *ev)
{
    const st_step_t *s = ev->step >= 0 ? &st->steps[ev->step] : NULL;
    if (st_terminal(st)) return false;
    switch (ev->type) {
    case EV_EXECUTION_STARTED:
        return st->seq == 0;
    case EV_STEP_FAILED:
        /* A subworkflow step whose child could not start. */
        if (s != NULL && s->status == SS_WAITING && s->wait == SW_CHILD)
            return s->attempt == ev->attempt;
        /* fall through */
    case EV_STEP_COMPLETED:
    case EV_SLEEP_STARTED:
    case EV_APPROVAL_REQUESTED:
        return s != NULL && s->status == SS_SCHEDULED && s->wait == SW_NONE &&
               s->attempt == ev->attempt;
    case EV_CHILD_COMPLETED:
        return s != NULL && s->status == SS_WAITING && s->wait == SW_CHILD &&
               s->attempt == ev->attempt && strcmp(s->child, ev->name) == 0;
    case EV_TIMER_FIRED: {
        const st_timer_t *t;
        if (strcmp(ev->name, "wake") == 0) return true;
        t = st_timer_find(st, ev->name);
        return t != NULL && t->due_us == ev->due_us;
    }
    default:
        return true;
    }
}

/*
 * One decision: the inputs that still apply (a start, handler outcomes,
 * timers), then whatever the decider derives from the new state, applied to
 * the live state and committed as one unit. A failure here is a bug or
 * out-of-memory: the execution is dropped from memory (never half-committed)
 * and resumes from the store later.
 */
void rt_process(rt_t *rt, rt_exec_t *ex, int force)
{
    rt_decision_t *d;
    eng_event_t *in;
    size_t nin = 0;
    int wake = 0, rc;

    if (ex->committing || ex->loading || ex->dead || ex->bp == NULL) return;
    if (ex->npend == 0 && !force) {
        rt_settle(rt, ex);
        return;
    }
    in = ex->pend;
    for (size_t i = 0; i < ex->npend; i++) {
        rt_call_t *c = in[i].origin;
        bool applies;
        rt_child_resolve(&ex->st, &in[i]);
        applies = input_applies(&ex->st, &in[i]);
        /* Two outcomes of one attempt in one batch: the first one counts. */
        for (size_t k = 0; applies && c != NULL && k < nin; k++)
            if (in[k].origin != NULL && in[k].type != EV_RESULT_IGNORED &&
                in[k].step == in[i].step && in[k].attempt == in[i].attempt)
                applies = false;
        if (!applies && c != NULL) {
            ignored_reason(&ex->st, &in[i], c->reason, sizeof(c->reason));
            c->accepted = 0;
            if (c->from_worker && !st_terminal(&ex->st)) {
                /* Recorded, so the history shows what was ignored and why. */
                int step = in[i].step, attempt = in[i].attempt;
                ev_finish(&in[i]);
                in[i].type = EV_RESULT_IGNORED;
                in[i].step = step;
                in[i].attempt = attempt;
                in[i].origin = c;
                applies = (in[i].text = strdup(c->reason)) != NULL;
            }
            if (!applies) {
                ev_finish(&in[i]);
                rt_answer_result(rt, c, 0);
                continue;
            }
        } else if (applies && c != NULL) {
            c->accepted = 1;
        }
        if (applies) {
            if (in[i].type == EV_TIMER_FIRED && strcmp(in[i].name, "wake") == 0) wake = 1;
            /* The child timer: look at the child once this commits. */
            if (in[i].type == EV_TIMER_FIRED && strncmp(in[i].name, "child:", 6) == 0) {
                int k = bp_step_index(ex->bp, in[i].name + 6);
                if (k >= 0) ex->dispatched[k] = 0;
            }
            if (nin != i) {
                in[nin] = in[i];
                memset(&in[i], 0, sizeof(in[i]));
            }
            nin++;
        } else {
            cbm_log_debug("execution %s: %s no longer applies; ignored", ex->id,
                          ev_type_name(in[i].type));
            ev_finish(&in[i]);
        }
    }
    ex->npend = 0;
    if ((d = calloc(1, sizeof(*d))) == NULL ||
        (nin > 0 && (d->calls = calloc(nin, sizeof(*d->calls))) == NULL)) {
        rc = CBM_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < nin; i++) d->calls[i] = in[i].origin;
    /* The children waited for now: a loop may re-open their steps. */
    for (size_t i = 0; i < ex->bp->nsteps; i++) {
        const st_step_t *s = &ex->st.steps[i];
        char **nw;
        if (s->child == NULL || s->status != SS_WAITING || s->wait != SW_CHILD) continue;
        if ((nw = realloc(d->waited, (d->nwaited + 1) * sizeof(*nw))) == NULL) break;
        d->waited = nw;
        if ((nw[d->nwaited] = strdup(s->child)) != NULL) d->nwaited++;
    }
    rc = dec_build(&ex->st, in, nin, clock_now_us(rt->clock), &d->req.d, &d->sched, &d->nsched);
    for (size_t i = 0; i < nin; i++) ev_finish(&in[i]);
    if (rc == 0 && wake) rc = dec_clear_timer(&d->req.d, "wake");
    /* A client-only process runs nothing, and an engine runs only the
     * executions of its shards: whatever it schedules for another's is for
     * the engine that holds that shard, which the "wake" row calls. */
    if (rc == 0 && (rt->client_only || ex->token == 0) && d->nsched > 0 && !st_terminal(&ex->st))
        rc = dec_add_timer(&d->req.d, "wake", "wake", clock_now_us(rt->clock));
    d->req.d.shard_token = ex->token;
    if (rc != 0) goto fail;
    d->ex = ex;
    d->nin = nin;
    d->start = ex->start;
    ex->start = NULL;
    /* A start's idempotency key goes with its first decision; the caller's
     * string outlives the decision's commit (the caller waits for it). */
    if (d->start != NULL && d->start->keys != NULL && d->req.d.is_new)
        d->req.d.idempotency_key = d->start->keys[ex->start_i];
    d->terminal = st_terminal(&ex->st);
    d->req.owner = d;
    if (d->req.d.nevents == 0) {
        rt_answer_start(rt, d->start, 0);
        for (size_t i = 0; i < d->nin; i++)
            if (d->calls[i] != NULL) rt_answer_result(rt, d->calls[i], 0);
        decision_free(d);
        rt_settle(rt, ex);
        return;
    }
    ex->committing = 1;
    cm_submit(rt->cm, &d->req);
    return;

fail:
    cbm_log_error("execution %s: decision failed (%s); dropped from memory", ex->id,
                  cbm_strerror(rc));
    if (d != NULL && d->calls != NULL) {
        /* dec_build ran: the inputs are finished, their callers in calls. */
        for (size_t i = 0; i < nin; i++)
            if (d->calls[i] != NULL) rt_answer_result(rt, d->calls[i], rc);
    } else {
        for (size_t i = 0; i < nin; i++) {
            if (in[i].origin != NULL) rt_answer_result(rt, in[i].origin, rc);
            ev_finish(&in[i]);
        }
    }
    if (d != NULL) {
        free(d->calls);
        for (size_t i = 0; i < d->nwaited; i++) free(d->waited[i]);
        free(d->waited);
        rt_answer_start(rt, d->start, rc);
        d->start = NULL;
        free(d);
    }
    ex->dead = 1;
}

/*
 * After a decision (or a load): run what is scheduled and not yet running,
 * take the next inputs, and leave memory if only waiting is left.
 */
void rt_settle(rt_t *rt, rt_exec_t *ex)
{
    if (ex->dead || ex->committing || ex->loading || ex->bp == NULL) return;
    if (st_terminal(&ex->st) || rt->client_only || ex->token == 0) {
        /* Ended, or not this engine's to run (another holds its shard). */
        ex->dead = 1;
        return;
    }
    if (!rt->stopping) {
        /* Leases not renewed in time (this process was paused, the
         * database unreachable): start nothing until they are. */
        int stale = rt->nshards > 0 && clock_mono_us() > atomic_load(&rt->lease_until_us);
        for (size_t i = 0; i < ex->bp->nsteps && !ex->dead; i++) {
            const st_step_t *s = &ex->st.steps[i];
            if (s->status == SS_SCHEDULED && ex->bp->steps[i].kind == BP_TASK &&
                !bp_step_remote(&ex->bp->steps[i]) && ex->dispatched[i] != s->attempt) {
                if (stale) atomic_store(&rt->held_back, 1);
                else rt_dispatch(rt, ex, i);
            }
            else if (s->status == SS_WAITING && s->wait == SW_CHILD &&
                     ex->dispatched[i] != s->attempt)
                rt_child_ensure(rt, ex, i);
        }
    }
    if (ex->dead) return;
    if (ex->npend > 0) {
        rt_process(rt, ex, 0);
    } else if (ex->reload) {
        ex->reload = 0;
        rt_start_load(rt, ex);
    } else if (ex->running == 0 && ex->pins == 0 && st_only_waiting(&ex->st)) {
        /* Hibernate: its timers are in the store (and the heap); a wake-up
         * loads it back. */
        atomic_fetch_add(&rt->hibernated, 1);
        ex->dead = 1;
    }
}

/* See on_decision. The failure goes first, so the inputs still pending
 * no longer apply (and their callers hear so); a second refusal (the
 * failure itself refused) drops the execution from memory. */
static void refused(rt_t *rt, rt_exec_t *ex)
{
    eng_event_t ev = {0};

    cbm_log_error("execution %s: the store refused a decision's data; failing the execution",
                  ex->id);
    ev.type = EV_EXECUTION_FAILED;
    ev.step = -1;
    ev.json = strdup("{\"kind\":\"store_refused\",\"message\":\"the store refused the data "
                     "of a decision of this execution; the engine's log has the detail\"}");
    if (ex->refused++ > 0 || ev.json == NULL || rt_pend_push(ex, &ev) != 0) {
        ev_finish(&ev);
        ex->dead = 1;
        return;
    }
    ev = ex->pend[ex->npend - 1];
    memmove(&ex->pend[1], &ex->pend[0], (ex->npend - 1) * sizeof(ex->pend[0]));
    ex->pend[0] = ev;
    rt_start_load(rt, ex);
}

static void on_decision(rt_t *rt, rt_decision_t *d)
{
    rt_exec_t *ex = d->ex;
    int rc = d->req.d.result_code;

    ex->committing = 0;
    if (rc == 0) {
        int earlier = 0;
        const sched_entry_t *top = sched_peek(rt->sched);
        for (size_t i = 0; !rt->client_only && i < d->req.d.ntimers_set; i++) {
            const store_timer_t *t = &d->req.d.timers_set[i];
            if (top == NULL || t->due_at_us < top->due_us) earlier = 1;
            sched_push(rt->sched, ex->id, t->key, t->due_at_us);
        }
        if (earlier) rt_arm_fire(rt);
        rt_answer_start(rt, d->start, 0);
        for (size_t i = 0; i < d->nin; i++)
            if (d->calls[i] != NULL) rt_answer_result(rt, d->calls[i], 0);
        for (size_t i = 0; rt->on_tasks != NULL && i < d->req.d.ntasks; i++) {
            const store_task_t *t = &d->req.d.tasks[i];
            rt->on_tasks(rt->on_tasks_arg, t->queue, ex->id, t->step, t->attempt);
        }
        if (d->terminal) {
            ex->dead = 1;
            rt_notify_terminal(rt, ex->id);
            rt_child_ended(rt, ex, 1);
        } else if (d->nwaited > 0) {
            rt_child_orphans(rt, ex, d->waited, d->nwaited);
        }
    } else if (rc == CBM_EEXIST && d->req.d.is_new && d->start != NULL) {
        /* Its idempotency key is held by another execution (started here,
         * elsewhere, or earlier): this one never existed. The caller looks
         * the holder up. */
        if (d->start->codes != NULL) d->start->codes[ex->start_i] = CBM_EEXIST;
        rt_answer_start(rt, d->start, 0);
        d->start = NULL;
        ex->dead = 1;
    } else if (rc == CBM_EINVAL && !d->req.d.is_new) {
        /* The store refused this decision's data (alone: the rest of its
         * batch committed). Its inputs cannot be recorded, and leaving the
         * execution as it was would leave it running with nothing to run:
         * read it back and fail it, with the reason recorded. */
        for (size_t i = 0; i < d->nin; i++)
            if (d->calls[i] != NULL) rt_answer_result(rt, d->calls[i], rc);
        refused(rt, ex);
    } else if (rc == CBM_EFENCED && d->req.d.shard_token > 0) {
        /* Another engine holds its shard now (this one was paused, or its
         * lease ran out): drop the shard's executions and look at the
         * leases again. Nothing of this decision was written. */
        rt_answer_start(rt, d->start, rc);
        d->start = NULL;
        for (size_t i = 0; i < d->nin; i++)
            if (d->calls[i] != NULL) rt_answer_result(rt, d->calls[i], rc);
        rt_shard_refused(rt, ex);
    } else if (rc == CBM_ECONFLICT && d->req.d.is_new && ex->st.parent_id != NULL) {
        /* A child started again (after a crash, or by two engines): it
         * exists, and its parent hears of it through the store. */
        cbm_log_debug("child execution %s exists already", ex->id);
        ex->dead = 1;
    } else if (rc == CBM_ECONFLICT && !d->req.d.is_new) {
        /* Someone else (an approval from another rt_process, another engine)
         * decided first: read the execution again and re-apply what we had
         * to say that still applies. */
        cbm_log_info("execution %s: decided elsewhere meanwhile; reloading", ex->id);
        for (size_t i = 0; i < d->nin && !ex->dead; i++) {
            eng_event_t ev;
            const store_event_t *se = &d->req.d.events[i];
            if (ev_decode(se->type, se->payload, se->seq, se->recorded_at_us, ex->bp, &ev, NULL) ==
                0) {
                /* Its caller goes on waiting, for the decision after the
                 * reload. */
                ev.origin = d->calls[i];
                d->calls[i] = NULL;
                /* A timer's due time is not in its event, so a re-decoded
                 * TimerFired no longer matches; the timer's row is still in
                 * the store if it still holds, and the next refill fires it. */
                if (rt_pend_push(ex, &ev) != 0) {
                    ex->dead = 1;
                    if (ev.origin != NULL) rt_answer_result(rt, ev.origin, CBM_ENOMEM);
                }
            }
        }
        for (size_t i = 0; i < d->nin; i++)
            if (d->calls[i] != NULL) rt_answer_result(rt, d->calls[i], CBM_ECONFLICT);
        if (!ex->dead) rt_start_load(rt, ex);
    } else {
        if (rc != CBM_ESHUTDOWN)
            cbm_log_error("execution %s: commit failed: %s", ex->id, cbm_strerror(rc));
        rt_answer_start(rt, d->start, rc);
        for (size_t i = 0; i < d->nin; i++)
            if (d->calls[i] != NULL) rt_answer_result(rt, d->calls[i], rc);
        ex->dead = 1;
    }
    decision_free(d);
    rt_settle(rt, ex);
    rt_maybe_free(rt, ex);
}

void rt_on_commit(cm_req_t *req, void *ctx)
{
    rt_t *rt = ctx;
    if (req->job == rt_job_load) rt_on_loaded(rt, req->owner);
    else if (req->job == rt_job_refill) rt_on_refilled(rt, req->owner);
    else if (req->job == rt_job_child) rt_on_child(rt, req->owner);
    else if (req->job == rt_job_orphans) rt_on_orphans(rt, req->owner);
    else if (req->job == rt_job_take) rt_on_taken(rt, req->owner);
    else on_decision(rt, req->owner);
    rt_maybe_quiesce(rt);
}
