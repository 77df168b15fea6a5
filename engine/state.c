/*
 * state.c - the reducer. Pure: it reads nothing but the state, the event and
 * the blueprint, and writes nothing but the state. Whatever the engine knows
 * about an execution, it knows because an event said so; that includes its
 * active durable timers, which are derived here from the events that set and
 * clear them.
 */
#include "engine/state.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/json_text.h"

static const char *const timer_kind_names[] = {"sleep",   "approval", "signal", "retry",
                                               "timeout", "wake",     "deadline", "child"};

const char *st_timer_kind_name(st_timer_kind_t k)
{
    return (size_t)k < sizeof(timer_kind_names) / sizeof(*timer_kind_names) ? timer_kind_names[k]
                                                                           : "unknown";
}

int st_timer_kind_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof(timer_kind_names) / sizeof(*timer_kind_names); i++)
        if (strcmp(timer_kind_names[i], name) == 0) return (int)i;
    return -1;
}

int st_init(st_exec_t *st, const char *id, const bp_blueprint_t *bp)
{
    memset(st, 0, sizeof(*st));
    snprintf(st->id, sizeof(st->id), "%s", id);
    st->bp = bp;
    st->steps = calloc(bp->nsteps ? bp->nsteps : 1, sizeof(st_step_t));
    if (st->steps == NULL) return CBM_ENOMEM;
    for (size_t i = 0; i < bp->nsteps; i++) {
        if (bp->steps[i].ndiverge == 0) continue;
        st->steps[i].iters = calloc(bp->steps[i].ndiverge, sizeof(int));
        if (st->steps[i].iters == NULL) {
            st_finish(st);
            return CBM_ENOMEM;
        }
    }
    return 0;
}

void st_finish(st_exec_t *st)
{
    if (st == NULL) return;
    if (st->steps != NULL && st->bp != NULL) {
        for (size_t i = 0; i < st->bp->nsteps; i++) {
            free(st->steps[i].result);
            free(st->steps[i].error);
            free(st->steps[i].pending);
            free(st->steps[i].iters);
            free(st->steps[i].child);
        }
    }
    for (size_t i = 0; i < st->nsignals; i++) {
        free(st->signals[i].name);
        free(st->signals[i].payload);
    }
    free(st->signals);
    free(st->timers);
    free(st->steps);
    free(st->inputs);
    free(st->result);
    free(st->error);
    free(st->cancel_reason);
    free(st->parent_id);
    free(st->parent_step);
    memset(st, 0, sizeof(*st));
}

const char *st_status_name(st_exec_status_t s)
{
    switch (s) {
    case XS_RUNNING: return "running";
    case XS_COMPLETED: return "completed";
    case XS_FAILED: return "failed";
    case XS_CANCELLED: return "cancelled";
    }
    return "unknown";
}

bool st_terminal(const st_exec_t *st)
{
    return st->status != XS_RUNNING;
}

bool st_only_waiting(const st_exec_t *st)
{
    if (st_terminal(st) || st->cancel_requested || st->deadline_fired) return false;
    for (size_t i = 0; i < st->bp->nsteps; i++) {
        const st_step_t *s = &st->steps[i];
        if (s->fired) return false;
        if (s->status == SS_SCHEDULED && s->wait != SW_SIGNAL) return false;
        if (s->status == SS_FAILED) return false;
    }
    /* Pending steps whose dependencies are done would be scheduled by the
     * decider; the caller asks after deciding, so none are left. */
    return true;
}

const char *st_projection_status(const st_exec_t *st)
{
    bool approval = false, signal = false, active = false, waiting = false, child = false;
    if (st_terminal(st)) return st_status_name(st->status);
    for (size_t i = 0; i < st->bp->nsteps; i++) {
        const st_step_t *s = &st->steps[i];
        if (s->status == SS_WAITING && s->wait == SW_APPROVAL) approval = true;
        else if (s->status == SS_SCHEDULED && s->wait == SW_SIGNAL) signal = true;
        else if (s->status == SS_WAITING && s->wait == SW_CHILD) child = true;
        else if (s->status == SS_WAITING || s->status == SS_BACKOFF) waiting = true;
        else if (s->status == SS_SCHEDULED) active = true;
    }
    if (active) return "running";
    if (approval) return "awaiting_approval";
    if (signal) return "awaiting_signal";
    if (child) return "awaiting_child";
    if (waiting) return "sleeping";
    return "running";
}

const st_timer_t *st_timer_find(const st_exec_t *st, const char *key)
{
    for (size_t i = 0; i < st->ntimers; i++)
        if (strcmp(st->timers[i].key, key) == 0) return &st->timers[i];
    return NULL;
}

static int timer_set(st_exec_t *st, st_timer_kind_t kind, const char *step, int64_t due)
{
    char key[160];
    st_timer_t *t;
    if (step != NULL) snprintf(key, sizeof(key), "%s:%s", st_timer_kind_name(kind), step);
    else snprintf(key, sizeof(key), "%s", st_timer_kind_name(kind));
    t = (st_timer_t *)st_timer_find(st, key);
    if (t == NULL) {
        if (st->ntimers == st->captimers) {
            size_t cap = st->captimers ? st->captimers * 2 : 4;
            st_timer_t *n = realloc(st->timers, cap * sizeof(*n));
            if (n == NULL) return CBM_ENOMEM;
            st->timers = n;
            st->captimers = cap;
        }
        t = &st->timers[st->ntimers++];
        snprintf(t->key, sizeof(t->key), "%s", key);
    }
    t->kind = kind;
    t->due_us = due;
    return 0;
}

static void timer_clear_key(st_exec_t *st, const char *key)
{
    for (size_t i = 0; i < st->ntimers; i++) {
        if (strcmp(st->timers[i].key, key) == 0) {
            st->timers[i] = st->timers[--st->ntimers];
            return;
        }
    }
}

static void timer_clear(st_exec_t *st, st_timer_kind_t kind, const char *step)
{
    char key[160];
    snprintf(key, sizeof(key), "%s:%s", st_timer_kind_name(kind), step);
    timer_clear_key(st, key);
}

static char *take(char **p)
{
    char *s = *p;
    *p = NULL;
    return s;
}

static int step_fail(st_step_t *s, const char *kind, const char *message, bool retryable)
{
    cJSON *o = cJSON_CreateObject();
    char *error = NULL;
    if (o != NULL && cJSON_AddStringToObject(o, "kind", kind) != NULL &&
        cJSON_AddStringToObject(o, "message", message != NULL ? message : "") != NULL &&
        cJSON_AddBoolToObject(o, "retryable", retryable) != NULL)
        error = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (error == NULL) return CBM_ENOMEM;
    free(s->error);
    s->error = error;
    s->status = SS_FAILED;
    s->wait = SW_NONE;
    return 0;
}

/* Where the routing of a step that just completed starts. */
static st_route_t first_route(const bp_step_t *b)
{
    for (size_t r = 0; r < b->ndiverge; r++)
        if (b->diverge[r].on == BP_ON_RESULT) return SR_DIVERGE;
    return b->nbranch > 0 ? SR_BRANCH : SR_DONE;
}

/* A deliberation's child ended (docs/deliberation.md §2, §5). Completed:
 * its result is {"select" or "finish": <the deliberation's result>}, and the
 * step's result is that inner value. Failed with a kind of the deliberation
 * itself (deliberation_quorum, deliberation_bad_pick, ...): the step fails
 * with that kind, not retryable (another child would fail the same way);
 * any other failure is child_failed as for a subworkflow, naming the inner
 * step and kind. Cancelled: child_cancelled. */
static int delib_ended(st_exec_t *st, size_t i, eng_event_t *ev)
{
    st_step_t *s = &st->steps[i];
    cJSON *doc = ev->json != NULL ? cJSON_Parse(ev->json) : NULL;
    const cJSON *k, *m, *at;
    char msg[400];
    int rc = 0;

    if (ev->json != NULL && doc == NULL) return CBM_ENOMEM; /* normalised JSON */
    if (strcmp(ev->text, "completed") == 0) {
        const cJSON *inner = cJSON_IsObject(doc) && doc->child != NULL ? doc->child : doc;
        char *res = inner != NULL ? cJSON_PrintUnformatted(inner) : strdup("null");
        if (res == NULL) rc = CBM_ENOMEM;
        else {
            s->status = SS_COMPLETED;
            s->route = first_route(&st->bp->steps[i]);
            free(s->result);
            s->result = res;
        }
    } else if (strcmp(ev->text, "cancelled") == 0) {
        snprintf(msg, sizeof(msg), "child execution %s cancelled", s->child);
        rc = step_fail(s, "child_cancelled", msg, false);
    } else {
        k = cJSON_GetObjectItemCaseSensitive(doc, "kind");
        m = cJSON_GetObjectItemCaseSensitive(doc, "message");
        at = cJSON_GetObjectItemCaseSensitive(doc, "step");
        if (cJSON_IsString(k) && strncmp(k->valuestring, "deliberation_", 13) == 0) {
            rc = step_fail(s, k->valuestring, cJSON_IsString(m) ? m->valuestring : "", false);
        } else {
            snprintf(msg, sizeof(msg), "child execution %s failed (%s%s%s)", s->child,
                     cJSON_IsString(k) ? k->valuestring : "unknown",
                     cJSON_IsString(at) && at->valuestring[0] ? " at step " : "",
                     cJSON_IsString(at) ? at->valuestring : "");
            rc = step_fail(s, "child_failed", msg, true);
        }
    }
    cJSON_Delete(doc);
    return rc;
}

static void clear_step_timers(st_exec_t *st, const char *name)
{
    static const st_timer_kind_t kinds[] = {TK_SLEEP,   TK_APPROVAL, TK_SIGNAL,
                                            TK_RETRY,   TK_TIMEOUT,  TK_CHILD};
    for (size_t k = 0; k < sizeof(kinds) / sizeof(*kinds); k++) timer_clear(st, kinds[k], name);
}

/* Back to pending, to run again (back_to, retry): what it had is dropped
 * from the state (the history keeps it), a running attempt is abandoned (its
 * outcome no longer applies), and the retry policy starts counting anew. */
static void reopen(st_exec_t *st, size_t i)
{
    st_step_t *s = &st->steps[i];
    free(s->result);
    free(s->error);
    free(s->pending);
    s->result = s->error = s->pending = NULL;
    s->status = SS_PENDING;
    s->wait = SW_NONE;
    s->fired = 0;
    s->base = s->attempt;
    free(s->child);
    s->child = NULL;
    s->child_seq = s->child_at_us = 0;
    s->route = SR_DIVERGE;
    s->forced = 0;
    clear_step_timers(st, st->bp->steps[i].name);
}

static int skip(st_exec_t *st, size_t i)
{
    st_step_t *s = &st->steps[i];
    if (s->status != SS_PENDING && s->status != SS_SKIPPED) return CBM_EINVAL;
    free(s->result);
    s->result = NULL;
    s->status = SS_SKIPPED;
    s->route = SR_DONE;
    s->forced = 0;
    return 0;
}

/* A failed step counts as completed with its error object as its result
 * (continue and skip_to on an error). */
static void error_as_result(st_step_t *s)
{
    free(s->result);
    s->result = s->error;
    s->error = NULL;
    s->status = SS_COMPLETED;
}

static int apply_diverge(st_exec_t *st, size_t i, const eng_event_t *ev)
{
    const bp_step_t *b = &st->bp->steps[i];
    st_step_t *s = &st->steps[i];
    const bp_diverge_t *r;
    int rc = 0;

    if (ev->rule < 0 || (size_t)ev->rule >= b->ndiverge) return CBM_EINVAL;
    r = &b->diverge[ev->rule];
    if (ev->action != (int)r->action) return CBM_EINVAL;
    if (r->on == BP_ON_RESULT ? (s->status != SS_COMPLETED || s->route != SR_DIVERGE)
                              : s->status != SS_FAILED)
        return CBM_EINVAL;
    for (size_t k = 0; k < ev->nset; k++)
        if (ev->set[k] < 0 || (size_t)ev->set[k] >= st->bp->nsteps) return CBM_EINVAL;
    switch (r->action) {
    case BP_ACTION_RETRY:
    case BP_ACTION_BACK_TO: {
        int target = r->action == BP_ACTION_RETRY ? (int)i : r->target;
        if (ev->target != target || ev->iteration != s->iters[ev->rule] + 1 ||
            ev->iteration > r->max_iterations)
            return CBM_EINVAL;
        s->iters[ev->rule] = ev->iteration;
        for (size_t k = 0; k < ev->nset; k++) reopen(st, (size_t)ev->set[k]);
        st->steps[target].forced = 1;
        break;
    }
    case BP_ACTION_SKIP_TO:
        if (ev->target != r->target) return CBM_EINVAL;
        if (s->status == SS_FAILED) error_as_result(s);
        s->route = SR_DONE;
        for (size_t k = 0; k < ev->nset && rc == 0; k++) rc = skip(st, (size_t)ev->set[k]);
        st->steps[r->target].forced = 1;
        break;
    case BP_ACTION_FAIL:
        s->route = SR_DONE; /* ExecutionFailed follows */
        break;
    case BP_ACTION_CONTINUE:
        if (s->status == SS_FAILED) error_as_result(s);
        s->route = b->nbranch > 0 ? SR_BRANCH : SR_DONE;
        break;
    }
    return rc;
}

static int apply_branch(st_exec_t *st, size_t i, const eng_event_t *ev)
{
    const bp_step_t *b = &st->bp->steps[i];
    st_step_t *s = &st->steps[i];
    int rc = 0;
    /* SR_DIVERGE: no diverge rule matched (which is not recorded). */
    if (s->status != SS_COMPLETED || s->route == SR_DONE) return CBM_EINVAL;
    if (ev->rule >= (int)b->nbranch || (ev->rule >= 0 && ev->target != b->branch[ev->rule].to) ||
        (ev->rule < 0 && ev->target >= 0))
        return CBM_EINVAL;
    for (size_t k = 0; k < ev->nset; k++)
        if (ev->set[k] < 0 || (size_t)ev->set[k] >= st->bp->nsteps) return CBM_EINVAL;
    s->route = SR_DONE;
    for (size_t k = 0; k < ev->nset && rc == 0; k++) rc = skip(st, (size_t)ev->set[k]);
    return rc;
}

/* The step's kind decides what waiting means once it is scheduled. */
static int apply_scheduled(st_exec_t *st, size_t i, eng_event_t *ev)
{
    const bp_step_t *b = &st->bp->steps[i];
    st_step_t *s = &st->steps[i];
    s->status = SS_SCHEDULED;
    s->attempt = ev->attempt;
    s->fired = 0;
    s->forced = 0;
    s->wait = SW_NONE;
    if (b->kind == BP_SIGNAL) {
        s->wait = SW_SIGNAL;
        if (b->timeout_ms > 0)
            return timer_set(st, TK_SIGNAL, b->name, ev->at_us + b->timeout_ms * 1000);
    } else if (b->kind == BP_TASK && b->timeout_ms > 0) {
        return timer_set(st, TK_TIMEOUT, b->name, ev->at_us + b->timeout_ms * 1000);
    }
    return 0;
}

int st_apply(st_exec_t *st, eng_event_t *ev)
{
    st_step_t *s = NULL;
    const char *name = NULL;
    int rc = 0;

    if (ev->seq != st->seq + 1) return CBM_EINVAL;
    if (ev->type != EV_EXECUTION_STARTED && st->seq == 0) return CBM_EINVAL;
    if (st_terminal(st)) return CBM_EINVAL;
    if (ev->step >= 0) {
        if ((size_t)ev->step >= st->bp->nsteps) return CBM_EINVAL;
        s = &st->steps[ev->step];
        name = st->bp->steps[ev->step].name;
    }

    switch (ev->type) {
    case EV_EXECUTION_STARTED:
        if (st->seq != 0) return CBM_EINVAL;
        st->inputs = take(&ev->json);
        st->started_at_us = ev->at_us;
        if (ev->name != NULL) {
            if (ev->text == NULL) return CBM_EINVAL;
            st->parent_id = take(&ev->name);
            st->parent_step = take(&ev->text);
            st->parent_attempt = ev->attempt;
        }
        if (st->bp->timeout_ms > 0)
            rc = timer_set(st, TK_DEADLINE, NULL, ev->at_us + st->bp->timeout_ms * 1000);
        break;
    case EV_STEP_SCHEDULED:
        if (s == NULL || s->status == SS_COMPLETED || s->status == SS_SCHEDULED ||
            s->status == SS_SKIPPED || ev->attempt <= s->attempt)
            return CBM_EINVAL;
        rc = apply_scheduled(st, (size_t)ev->step, ev);
        break;
    case EV_STEP_STARTED:
        if (s == NULL || s->status != SS_SCHEDULED) return CBM_EINVAL;
        break;
    case EV_STEP_COMPLETED:
        if (s == NULL || (s->status != SS_SCHEDULED && s->status != SS_WAITING)) return CBM_EINVAL;
        if (st->bp->steps[ev->step].kind == BP_SIGNAL) {
            /* Completed from a signal that was buffered before the wait. */
            const char *want = st->bp->steps[ev->step].signal;
            for (size_t k = 0; k < st->nsignals; k++) {
                if (strcmp(st->signals[k].name, want) == 0) {
                    free(st->signals[k].name);
                    free(st->signals[k].payload);
                    memmove(&st->signals[k], &st->signals[k + 1],
                            (st->nsignals - k - 1) * sizeof(*st->signals));
                    st->nsignals--;
                    break;
                }
            }
            timer_clear(st, TK_SIGNAL, name);
        }
        s->status = SS_COMPLETED;
        s->route = first_route(&st->bp->steps[ev->step]);
        s->wait = SW_NONE;
        s->fired = 0;
        free(s->result);
        s->result = take(&ev->json);
        free(s->pending);
        s->pending = NULL;
        timer_clear(st, TK_TIMEOUT, name);
        timer_clear(st, TK_SLEEP, name);
        break;
    case EV_STEP_FAILED:
        if (s == NULL || (s->status != SS_SCHEDULED && s->status != SS_WAITING)) return CBM_EINVAL;
        s->status = SS_FAILED;
        s->wait = SW_NONE;
        s->fired = 0;
        free(s->error);
        s->error = take(&ev->json);
        timer_clear(st, TK_TIMEOUT, name);
        timer_clear(st, TK_SIGNAL, name);
        timer_clear(st, TK_CHILD, name); /* a child that could not start */
        break;
    case EV_STEP_RETRY_SCHEDULED:
        if (s == NULL || s->status != SS_FAILED) return CBM_EINVAL;
        s->status = SS_BACKOFF;
        rc = timer_set(st, TK_RETRY, name, ev->due_us);
        break;
    case EV_SLEEP_STARTED:
        /* A sleep step, or a task that finished with "done, now sleep". */
        if (s == NULL || s->status == SS_COMPLETED || s->status == SS_SKIPPED ||
            ev->attempt < s->attempt)
            return CBM_EINVAL;
        s->forced = 0;
        s->status = SS_WAITING;
        s->wait = SW_SLEEP;
        s->attempt = ev->attempt;
        free(s->pending);
        s->pending = take(&ev->json);
        timer_clear(st, TK_TIMEOUT, name);
        rc = timer_set(st, TK_SLEEP, name, ev->due_us);
        break;
    case EV_TIMER_FIRED: {
        const st_timer_t *t = st_timer_find(st, ev->name);
        const char *colon = strchr(ev->name, ':');
        int idx;
        /* "wake" is a notification row written by an outside decision, not
         * part of the state: its firing is recorded and changes nothing. */
        if (strcmp(ev->name, "wake") == 0) break;
        if (t == NULL) return CBM_EINVAL;
        if (t->kind == TK_DEADLINE) {
            st->deadline_fired = 1;
            timer_clear_key(st, ev->name);
            break;
        }
        if (t->kind == TK_CHILD) {
            /* The runtime looks at the child after this commits; the timer
             * comes back later, as long as the child has run so far. */
            int64_t wait;
            if (colon == NULL || (idx = bp_step_index(st->bp, colon + 1)) < 0) return CBM_EINVAL;
            wait = ev->at_us - st->steps[idx].child_at_us;
            if (wait < ST_CHILD_CHECK_MIN_US) wait = ST_CHILD_CHECK_MIN_US;
            if (wait > ST_CHILD_CHECK_MAX_US) wait = ST_CHILD_CHECK_MAX_US;
            rc = timer_set(st, TK_CHILD, colon + 1, ev->at_us + wait);
            break;
        }
        if (t->kind != TK_WAKE) {
            if (colon == NULL || (idx = bp_step_index(st->bp, colon + 1)) < 0) return CBM_EINVAL;
            st->steps[idx].fired = 1 + (int)t->kind;
        }
        timer_clear_key(st, ev->name);
        break;
    }
    case EV_APPROVAL_REQUESTED:
        if (s == NULL || s->status == SS_COMPLETED || s->status == SS_SKIPPED ||
            ev->attempt < s->attempt)
            return CBM_EINVAL;
        s->forced = 0;
        s->status = SS_WAITING;
        s->wait = SW_APPROVAL;
        s->attempt = ev->attempt;
        timer_clear(st, TK_TIMEOUT, name);
        if (ev->due_us > 0) rc = timer_set(st, TK_APPROVAL, name, ev->due_us);
        break;
    case EV_APPROVAL_GRANTED:
        if (s == NULL || s->status != SS_WAITING || s->wait != SW_APPROVAL) return CBM_EINVAL;
        s->status = SS_COMPLETED;
        s->route = first_route(&st->bp->steps[ev->step]);
        s->wait = SW_NONE;
        free(s->result);
        s->result = take(&ev->json);
        timer_clear(st, TK_APPROVAL, name);
        break;
    case EV_APPROVAL_REJECTED:
        if (s == NULL || s->status != SS_WAITING || s->wait != SW_APPROVAL) return CBM_EINVAL;
        rc = step_fail(s, "approval_rejected", ev->text, false);
        timer_clear(st, TK_APPROVAL, name);
        break;
    case EV_APPROVAL_TIMED_OUT:
        if (s == NULL || s->status != SS_WAITING || s->wait != SW_APPROVAL) return CBM_EINVAL;
        s->fired = 0;
        rc = step_fail(s, "approval_timeout", "nobody decided before the deadline", false);
        timer_clear(st, TK_APPROVAL, name);
        break;
    case EV_SIGNAL_RECEIVED: {
        /* The first step waiting for this signal takes it; else it is kept. */
        size_t i;
        for (i = 0; i < st->bp->nsteps; i++) {
            if (st->steps[i].status == SS_SCHEDULED && st->steps[i].wait == SW_SIGNAL &&
                strcmp(st->bp->steps[i].signal, ev->name) == 0)
                break;
        }
        if (i < st->bp->nsteps) {
            st_step_t *w = &st->steps[i];
            w->status = SS_COMPLETED;
            w->route = first_route(&st->bp->steps[i]);
            w->wait = SW_NONE;
            free(w->result);
            w->result = take(&ev->json);
            timer_clear(st, TK_SIGNAL, st->bp->steps[i].name);
        } else {
            st_signal_t *n = realloc(st->signals, (st->nsignals + 1) * sizeof(*n));
            if (n == NULL) return CBM_ENOMEM;
            st->signals = n;
            n[st->nsignals].name = take(&ev->name);
            n[st->nsignals].payload = take(&ev->json);
            st->nsignals++;
        }
        break;
    }
    case EV_CHILD_STARTED:
        if (s == NULL || !bp_step_has_child(&st->bp->steps[ev->step]) ||
            s->status == SS_COMPLETED || s->status == SS_SCHEDULED || s->status == SS_SKIPPED ||
            s->status == SS_WAITING || ev->attempt <= s->attempt || ev->name == NULL)
            return CBM_EINVAL;
        s->status = SS_WAITING;
        s->wait = SW_CHILD;
        s->attempt = ev->attempt;
        s->forced = 0;
        s->fired = 0;
        free(s->child);
        s->child = take(&ev->name);
        s->child_seq = ev->seq;
        s->child_at_us = ev->at_us;
        rc = timer_set(st, TK_CHILD, name, ev->at_us + ST_CHILD_CHECK_MIN_US);
        break;
    case EV_CHILD_COMPLETED:
        /* Only the child of the current attempt counts. */
        if (s == NULL || s->status != SS_WAITING || s->wait != SW_CHILD ||
            ev->attempt != s->attempt || ev->name == NULL || s->child == NULL ||
            strcmp(ev->name, s->child) != 0 || ev->text == NULL)
            return CBM_EINVAL;
        s->wait = SW_NONE;
        timer_clear(st, TK_CHILD, name);
        if (st->bp->steps[ev->step].kind == BP_DELIBERATION) {
            rc = delib_ended(st, (size_t)ev->step, ev);
        } else if (strcmp(ev->text, "completed") == 0) {
            s->status = SS_COMPLETED;
            s->route = first_route(&st->bp->steps[ev->step]);
            free(s->result);
            s->result = take(&ev->json);
        } else {
            /* A failed child may be retried (a new child); a cancelled one
             * was stopped on purpose and is not. */
            bool cancelled = strcmp(ev->text, "cancelled") == 0;
            char msg[200];
            snprintf(msg, sizeof(msg), "child execution %s %s", s->child, ev->text);
            rc = step_fail(s, cancelled ? "child_cancelled" : "child_failed", msg, !cancelled);
        }
        break;
    case EV_DIVERGE_TAKEN:
        if (s == NULL) return CBM_EINVAL;
        rc = apply_diverge(st, (size_t)ev->step, ev);
        break;
    case EV_BRANCH_TAKEN:
        if (s == NULL) return CBM_EINVAL;
        rc = apply_branch(st, (size_t)ev->step, ev);
        break;
    case EV_CANCEL_REQUESTED:
        st->cancel_requested = 1;
        free(st->cancel_reason);
        st->cancel_reason = take(&ev->text);
        break;
    case EV_EXECUTION_COMPLETED:
        st->status = XS_COMPLETED;
        free(st->result); /* NULL, unless a snapshot said otherwise */
        st->result = take(&ev->json);
        st->ntimers = 0;
        break;
    case EV_EXECUTION_FAILED:
        st->status = XS_FAILED;
        free(st->error);
        st->error = take(&ev->json);
        st->ntimers = 0;
        break;
    case EV_EXECUTION_CANCELLED:
        st->status = XS_CANCELLED;
        st->ntimers = 0;
        break;
    default:
        /* Types of later features: recorded, no effect on this state yet. */
        break;
    }
    if (rc != 0) return rc;
    st->seq = ev->seq;
    st->updated_at_us = ev->at_us;
    return 0;
}

static const char *step_status_name(st_step_status_t s)
{
    switch (s) {
    case SS_PENDING: return "pending";
    case SS_SCHEDULED: return "scheduled";
    case SS_WAITING: return "waiting";
    case SS_BACKOFF: return "backoff";
    case SS_COMPLETED: return "completed";
    case SS_FAILED: return "failed";
    case SS_SKIPPED: return "skipped";
    }
    return "unknown";
}

static bool add_raw(cJSON *obj, const char *key, const char *json)
{
    if (json == NULL) return cJSON_AddNullToObject(obj, key) != NULL;
    return cJSON_AddRawToObject(obj, key, json) != NULL;
}

/* Every member or none: a snapshot that lacks one (an allocation failed)
 * would restore a different state, so any failure gives NULL. */
static bool add_step(cJSON *steps, const bp_step_t *b, const st_step_t *st)
{
    cJSON *s = cJSON_AddObjectToObject(steps, b->name);
    bool ok = s != NULL && cJSON_AddStringToObject(s, "status", step_status_name(st->status)) &&
              cJSON_AddNumberToObject(s, "attempt", st->attempt) &&
              cJSON_AddNumberToObject(s, "wait", st->wait) &&
              cJSON_AddNumberToObject(s, "fired", st->fired) && add_raw(s, "result", st->result) &&
              add_raw(s, "error", st->error) && add_raw(s, "pending", st->pending) &&
              cJSON_AddNumberToObject(s, "base", st->base) &&
              cJSON_AddNumberToObject(s, "route", st->route) &&
              cJSON_AddBoolToObject(s, "forced", st->forced);

    if (ok && st->child != NULL)
        ok = cJSON_AddStringToObject(s, "child", st->child) &&
             cJSON_AddNumberToObject(s, "child_seq", (double)st->child_seq) &&
             cJSON_AddNumberToObject(s, "child_at_us", (double)st->child_at_us);
    if (ok && b->ndiverge > 0) {
        cJSON *it = cJSON_AddArrayToObject(s, "iters");
        ok = it != NULL;
        for (size_t r = 0; ok && r < b->ndiverge; r++) {
            cJSON *n = cJSON_CreateNumber(st->iters[r]);
            if (n == NULL || !cJSON_AddItemToArray(it, n)) {
                cJSON_Delete(n);
                ok = false;
            }
        }
    }
    return ok;
}

static bool add_signal(cJSON *signals, const st_signal_t *sig)
{
    cJSON *g = cJSON_CreateObject();

    if (g == NULL || !cJSON_AddStringToObject(g, "name", sig->name) ||
        !add_raw(g, "payload", sig->payload) || !cJSON_AddItemToArray(signals, g)) {
        cJSON_Delete(g);
        return false;
    }
    return true;
}

char *st_to_json(const st_exec_t *st)
{
    cJSON *o = cJSON_CreateObject(), *steps, *timers, *signals;
    char *out = NULL;
    bool ok;

    if (o == NULL) return NULL;
    ok = cJSON_AddStringToObject(o, "id", st->id) &&
         cJSON_AddStringToObject(o, "blueprint", st->bp->name) &&
         cJSON_AddStringToObject(o, "version", st->bp->version) &&
         cJSON_AddStringToObject(o, "status", st_status_name(st->status)) &&
         cJSON_AddNumberToObject(o, "seq", (double)st->seq) &&
         cJSON_AddNumberToObject(o, "started_at_us", (double)st->started_at_us) &&
         cJSON_AddNumberToObject(o, "updated_at_us", (double)st->updated_at_us) &&
         add_raw(o, "inputs", st->inputs) && add_raw(o, "result", st->result) &&
         add_raw(o, "error", st->error) &&
         cJSON_AddBoolToObject(o, "cancel_requested", st->cancel_requested) &&
         cJSON_AddBoolToObject(o, "deadline_fired", st->deadline_fired) &&
         (st->cancel_reason != NULL ? cJSON_AddStringToObject(o, "cancel_reason", st->cancel_reason)
                                    : cJSON_AddNullToObject(o, "cancel_reason")) != NULL;
    if (ok && st->parent_id != NULL) {
        cJSON *p = cJSON_AddObjectToObject(o, "parent");
        ok = p != NULL && cJSON_AddStringToObject(p, "execution_id", st->parent_id) &&
             cJSON_AddStringToObject(p, "step", st->parent_step) &&
             cJSON_AddNumberToObject(p, "attempt", st->parent_attempt);
    }
    steps = ok ? cJSON_AddObjectToObject(o, "steps") : NULL;
    ok = steps != NULL;
    for (size_t i = 0; ok && i < st->bp->nsteps; i++)
        ok = add_step(steps, &st->bp->steps[i], &st->steps[i]);
    /* Timers in key order, so equal sets print equally. */
    timers = ok ? cJSON_AddObjectToObject(o, "timers") : NULL;
    ok = timers != NULL;
    for (size_t n = 0; ok && n < st->ntimers; n++) {
        const st_timer_t *best = NULL;
        for (size_t i = 0; i < st->ntimers; i++) {
            const st_timer_t *t = &st->timers[i];
            if (cJSON_GetObjectItemCaseSensitive(timers, t->key) != NULL) continue;
            if (best == NULL || strcmp(t->key, best->key) < 0) best = t;
        }
        ok = cJSON_AddNumberToObject(timers, best->key, (double)best->due_us) != NULL;
    }
    signals = ok ? cJSON_AddArrayToObject(o, "signals") : NULL;
    ok = signals != NULL;
    for (size_t i = 0; ok && i < st->nsignals; i++) ok = add_signal(signals, &st->signals[i]);
    if (ok) out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

/* The JSON text of member key (NULL for null or absent), unformatted. */
static int raw_member(const cJSON *o, const char *key, char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (v == NULL || cJSON_IsNull(v)) return 0;
    *out = cJSON_PrintUnformatted(v);
    return *out != NULL ? 0 : CBM_ENOMEM;
}

/* o[key] as an integer in [min, max] into *out (0 when absent or not a
 * number); false when out of range (json_int_in, event.h). */
static bool num_member(const cJSON *o, const char *key, int64_t min, int64_t max, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = 0;
    return !cJSON_IsNumber(v) || json_int_in(v, min, max, out);
}

/* The same into an int (every bound here is within int). */
static bool int_member(const cJSON *o, const char *key, int64_t min, int64_t max, int *out)
{
    int64_t v;
    if (!num_member(o, key, min, max, &v)) return false;
    *out = (int)v;
    return true;
}

static int step_status_from(const char *s)
{
    static const char *const names[] = {"pending",   "scheduled", "waiting", "backoff",
                                        "completed", "failed",    "skipped"};
    for (int i = 0; i < 7; i++)
        if (strcmp(names[i], s) == 0) return i;
    return -1;
}

int st_from_json(st_exec_t *st, const char *json)
{
    const cJSON *v, *steps, *timers, *signals, *it;
    int rc;
    cJSON *o = json_text_parse(json, &rc);

    if (o == NULL) return rc; /* CBM_EJSON or CBM_ENOMEM */
    rc = CBM_EINVAL;
    v = cJSON_GetObjectItemCaseSensitive(o, "version");
    if (!cJSON_IsString(v) || strcmp(v->valuestring, st->bp->version) != 0) goto out;
    v = cJSON_GetObjectItemCaseSensitive(o, "status");
    if (!cJSON_IsString(v)) goto out;
    if (strcmp(v->valuestring, "running") == 0) st->status = XS_RUNNING;
    else if (strcmp(v->valuestring, "completed") == 0) st->status = XS_COMPLETED;
    else if (strcmp(v->valuestring, "failed") == 0) st->status = XS_FAILED;
    else if (strcmp(v->valuestring, "cancelled") == 0) st->status = XS_CANCELLED;
    else goto out;
    /* A snapshot follows at least ExecutionStarted: seq >= 1. */
    if (!num_member(o, "seq", 1, EV_MAX_TIME_US, &st->seq) ||
        !num_member(o, "started_at_us", -EV_MAX_TIME_US, EV_MAX_TIME_US, &st->started_at_us) ||
        !num_member(o, "updated_at_us", -EV_MAX_TIME_US, EV_MAX_TIME_US, &st->updated_at_us))
        goto out;
    st->cancel_requested = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "cancel_requested"));
    st->deadline_fired = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "deadline_fired"));
    v = cJSON_GetObjectItemCaseSensitive(o, "cancel_reason");
    if (cJSON_IsString(v) && (st->cancel_reason = strdup(v->valuestring)) == NULL) goto oom;
    v = cJSON_GetObjectItemCaseSensitive(o, "parent");
    if (v != NULL) {
        const cJSON *pid = cJSON_GetObjectItemCaseSensitive(v, "execution_id");
        const cJSON *pst = cJSON_GetObjectItemCaseSensitive(v, "step");
        if (!cJSON_IsString(pid) || !cJSON_IsString(pst)) goto out;
        if ((st->parent_id = strdup(pid->valuestring)) == NULL ||
            (st->parent_step = strdup(pst->valuestring)) == NULL)
            goto oom;
        if (!int_member(v, "attempt", 0, EV_MAX_ATTEMPT, &st->parent_attempt)) goto out;
    }
    if (raw_member(o, "inputs", &st->inputs) || raw_member(o, "result", &st->result) ||
        raw_member(o, "error", &st->error))
        goto oom;
    /* Every state past ExecutionStarted has inputs, an object (ev_decode);
     * the decider reads them. */
    if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(o, "inputs"))) goto out;
    steps = cJSON_GetObjectItemCaseSensitive(o, "steps");
    for (size_t i = 0; i < st->bp->nsteps; i++) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(steps, st->bp->steps[i].name);
        const cJSON *status = cJSON_GetObjectItemCaseSensitive(s, "status");
        st_step_t *d = &st->steps[i];
        int wait, route;
        if (!cJSON_IsString(status) || step_status_from(status->valuestring) < 0) goto out;
        d->status = (st_step_status_t)step_status_from(status->valuestring);
        if (!int_member(s, "attempt", 0, EV_MAX_ATTEMPT, &d->attempt) ||
            !int_member(s, "wait", SW_NONE, SW_CHILD, &wait) ||
            !int_member(s, "fired", 0, 1 + TK_CHILD, &d->fired) ||
            !int_member(s, "base", 0, d->attempt, &d->base) ||
            !int_member(s, "route", SR_DIVERGE, SR_DONE, &route) ||
            !num_member(s, "child_seq", 0, EV_MAX_TIME_US, &d->child_seq) ||
            !num_member(s, "child_at_us", -EV_MAX_TIME_US, EV_MAX_TIME_US, &d->child_at_us))
            goto out;
        d->wait = (st_wait_t)wait;
        d->route = (st_route_t)route;
        d->forced = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "forced"));
        {
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(s, "child");
            if (cJSON_IsString(c) && (d->child = strdup(c->valuestring)) == NULL) goto oom;
        }
        if (d->iters != NULL) {
            const cJSON *its = cJSON_GetObjectItemCaseSensitive(s, "iters");
            if (its != NULL && (!cJSON_IsArray(its) ||
                                (size_t)cJSON_GetArraySize(its) != st->bp->steps[i].ndiverge))
                goto out;
            for (size_t r = 0; its != NULL && r < st->bp->steps[i].ndiverge; r++) {
                const cJSON *n = cJSON_GetArrayItem(its, (int)r);
                int64_t v = 0;
                if (cJSON_IsNumber(n) && !json_int_in(n, 0, BP_MAX_ITERATIONS, &v)) goto out;
                d->iters[r] = (int)v;
            }
        }
        if (raw_member(s, "result", &d->result) || raw_member(s, "error", &d->error) ||
            raw_member(s, "pending", &d->pending))
            goto oom;
    }
    timers = cJSON_GetObjectItemCaseSensitive(o, "timers");
    signals = cJSON_GetObjectItemCaseSensitive(o, "signals");
    /* Keys of the timers are read below: an array has none. */
    if ((timers != NULL && !cJSON_IsObject(timers)) || (signals != NULL && !cJSON_IsArray(signals)))
        goto out;
    cJSON_ArrayForEach(it, timers) {
        char kind[16];
        const char *colon = strchr(it->string, ':');
        int64_t due;
        int k;
        snprintf(kind, sizeof(kind), "%.*s", colon ? (int)(colon - it->string) : 15, it->string);
        if ((k = st_timer_kind_from_name(kind)) < 0 ||
            !json_int_in(it, -EV_MAX_TIME_US, EV_MAX_TIME_US, &due))
            goto out;
        if (timer_set(st, (st_timer_kind_t)k, colon ? colon + 1 : NULL, due)) goto oom;
    }
    cJSON_ArrayForEach(it, signals) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
        st_signal_t *n = realloc(st->signals, (st->nsignals + 1) * sizeof(*n)), *g;
        if (n == NULL) goto oom;
        st->signals = n;
        /* Counted at once, so st_finish frees whatever it holds. */
        g = &n[st->nsignals++];
        g->payload = NULL;
        g->name = strdup(cJSON_IsString(name) ? name->valuestring : "");
        if (g->name == NULL || raw_member(it, "payload", &g->payload)) goto oom;
        if (g->payload == NULL && (g->payload = strdup("null")) == NULL) goto oom;
    }
    rc = 0;
    goto out;
oom:
    rc = CBM_ENOMEM;
out:
    cJSON_Delete(o);
    return rc;
}
