/*
 * child.c - sub-workflows in the runtime: starting a child once the
 * parent's ChildStarted is durable, telling the parent when the child ends,
 * reconciling through the store when the two lost touch, and cancelling
 * children with their parent. See docs/architecture.md, "Sub-workflows".
 *
 * Everything that reads the store runs as a job on the reader thread
 * (rt_job_child); the loop only decides with what comes back. The parent's
 * step knows its child's id (deterministic: dc_child_id), so every path
 * below can be repeated: starting an existing child is a conflicting insert
 * that changes nothing, and a ChildCompleted that no longer applies (the
 * step moved on) is dropped before it is decided.
 *
 * Three ways the parent hears of the end of a child:
 *   - in this process, directly: the child's terminal decision commits and
 *     a ChildCompleted input is pushed to the parent (loaded if it
 *     hibernated), as fire() does for a timer;
 *   - otherwise through the parent's durable child:<step> timer (a state
 *     timer, re-armed with back-off up to a minute): each firing makes the
 *     engine that runs the parent read the child's projection; terminal
 *     gives ChildCompleted, missing starts it (again);
 *   - on every load of the parent (a wake-up, resurrection) the same look.
 *
 * And the other way, a child whose parent ended without it (a crash cut the
 * parent's cascade short) is cancelled when the engine resumes it
 * (rt_parent_check), or, if it waits and so is not loaded at start, when
 * the walk of rt_orphans_walk finds it.
 */
#include <cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/delib.h"
#include "engine/runtime_internal.h"

enum { LOOK_CHILD, LOOK_PARENT };

static bool terminal_status(const char *s)
{
    return strcmp(s, "completed") == 0 || strcmp(s, "failed") == 0 ||
           strcmp(s, "cancelled") == 0;
}

/* Queue an input for execution id, loading it if it is not in memory (like
 * a timer that fires). Takes ev's contents. An execution leaving memory
 * (dead) or an engine stopping drops it: the durable paths (the parent's
 * child timer, resurrection) bring it back. */
static void deliver(rt_t *rt, const char *id, eng_event_t *ev)
{
    rt_exec_t *ex;
    if (rt->stopping || rt->client_only) {
        ev_finish(ev);
        return;
    }
    ex = rt_map_get(rt, id);
    if (ex != NULL && ex->dead) {
        ev_finish(ev);
        return;
    }
    if (ex == NULL) {
        if ((ex = rt_exec_new(rt, id)) == NULL) {
            ev_finish(ev);
            return;
        }
        rt_pend_push(ex, ev);
        rt_start_load(rt, ex);
        return;
    }
    if (rt_pend_push(ex, ev) == 0 && !ex->committing && !ex->loading) rt_process(rt, ex, 0);
    rt_maybe_free(rt, ex);
}

/* A failure of the parent's step before its child could start. */
static void fail_step(rt_t *rt, const char *parent, const char *child, const char *kind,
                      const char *message)
{
    eng_event_t ev = {0};
    cJSON *o = cJSON_CreateObject();
    ev.type = EV_STEP_FAILED;
    ev.step = -1; /* resolved from the child's id (rt_child_resolve) */
    if (o != NULL && cJSON_AddStringToObject(o, "kind", kind) != NULL &&
        cJSON_AddStringToObject(o, "message", message) != NULL &&
        cJSON_AddBoolToObject(o, "retryable", 0) != NULL)
        ev.json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    ev.name = strdup(child);
    if (ev.json == NULL || ev.name == NULL) {
        ev_finish(&ev);
        return;
    }
    cbm_log_warn("execution %s: child %s cannot start (%s): %s", parent, child, kind, message);
    deliver(rt, parent, &ev);
}

void rt_child_resolve(const st_exec_t *st, eng_event_t *ev)
{
    if (ev->step >= 0 || ev->name == NULL ||
        (ev->type != EV_CHILD_COMPLETED && ev->type != EV_STEP_FAILED))
        return;
    for (size_t i = 0; i < st->bp->nsteps; i++) {
        const st_step_t *s = &st->steps[i];
        if (s->child != NULL && s->status == SS_WAITING && s->wait == SW_CHILD &&
            strcmp(s->child, ev->name) == 0) {
            ev->step = (int)i;
            ev->attempt = s->attempt;
            break;
        }
    }
    if (ev->type == EV_STEP_FAILED) { /* a StepFailed names no child */
        free(ev->name);
        ev->name = NULL;
    }
}

/* ---------------------------------------------------- the reader's side */

/* The ChildCompleted json of a terminal child, from its last event. */
static int terminal_outcome(store_t *s, rt_child_t *j, int64_t last_seq)
{
    store_event_t *evs = NULL;
    size_t n = 0;
    cJSON *p = NULL;
    const cJSON *v;
    int rc = store_read_history(s, j->child, last_seq, &evs, &n, &j->err);
    if (rc != 0) return rc;
    if (n == 0 || (p = cJSON_Parse(evs[0].payload)) == NULL) {
        rc = cbm_error_set(&j->err, CBM_ESTORE, "child %s: no terminal event at seq %lld",
                           j->child, (long long)last_seq);
        goto out;
    }
    if (strcmp(evs[0].type, "ExecutionCompleted") == 0)
        v = cJSON_GetObjectItemCaseSensitive(p, "result");
    else if (strcmp(evs[0].type, "ExecutionFailed") == 0)
        v = cJSON_GetObjectItemCaseSensitive(p, "error");
    else
        v = p; /* ExecutionCancelled: {"reason": ...} */
    if (v == NULL || (j->outcome = cJSON_PrintUnformatted(v)) == NULL)
        rc = cbm_error_set(&j->err, CBM_ESTORE, "child %s: unreadable %s", j->child, evs[0].type);
out:
    cJSON_Delete(p);
    store_events_free(evs, n);
    return rc;
}

/* A deliberation's child does not exist: read the council (pinned, or the
 * latest), check it can run the step and the budget, generate the child's
 * blueprint and register it (idempotent: same bytes, same version), and
 * make the child's inputs from the step's input document (doc, recorded in
 * ChildStarted) and the council snapshot. Refusals are the step's failure:
 * council_unknown, council_invalid, deliberation_over_budget. */
static int prepare_delib(store_t *s, rt_child_t *j, const char *doc)
{
    const bp_step_t *b = j->dstep;
    const bp_delib_t *d = b->delib;
    store_council_t *c = NULL;
    bp_blueprint_t *parsed = NULL;
    char *bpjson = NULL, *inputs = NULL, *norm = NULL;
    cbm_error_t e2 = {0};
    int agents = 0, rc;
    int64_t max_tokens = 0;

    rc = store_council_get(s, d->council, d->council_version, &c, &e2);
    if (rc == CBM_ENOTFOUND) {
        j->fail_kind = "council_unknown";
        if (d->council_version != NULL)
            cbm_error_set(&j->err, CBM_ENOTFOUND, "council '%s' has no version %s", d->council,
                          d->council_version);
        else
            cbm_error_set(&j->err, CBM_ENOTFOUND, "no council named '%s'", d->council);
        return 0;
    }
    if (rc != 0) return cbm_error_set(&j->err, rc, "%s", e2.message);
    if ((rc = delib_agents(b, c->definition, &agents, &max_tokens, &e2)) == 0 &&
        (rc = delib_check_budget(b, agents, max_tokens, &e2)) != 0) {
        if (rc == CBM_EINVAL) {
            j->fail_kind = "deliberation_over_budget";
            rc = 0;
            cbm_error_set(&j->err, CBM_EINVAL, "%s", e2.message);
        }
        goto out;
    }
    if (rc == 0) rc = delib_expand(b, j->parent_bp, c->definition, &bpjson, &e2);
    if (rc == 0) rc = delib_child_inputs(b, doc, c->version, c->definition, &inputs, &e2);
    if (rc == CBM_EINVAL || rc == CBM_EJSON) {
        j->fail_kind = "council_invalid";
        rc = 0;
        cbm_error_set(&j->err, CBM_EINVAL, "%s", e2.message);
        goto out;
    }
    if (rc != 0) {
        cbm_error_set(&j->err, rc, "%s", e2.message);
        goto out;
    }
    if ((rc = bp_parse_json(bpjson, strlen(bpjson), &parsed, &e2)) != 0) {
        cbm_error_set(&j->err, rc, "deliberation '%s': generated blueprint: %s", b->name,
                      e2.message);
        goto out;
    }
    if ((j->bp = rt_find_blueprint(j->rt, parsed->name, parsed->version)) == NULL) {
        if ((rc = store_put_blueprint(s, parsed->name, parsed->version, parsed->canonical_json,
                                      NULL, &e2)) != 0) {
            cbm_error_set(&j->err, rc, "%s", e2.message);
            goto out;
        }
        {
            char name[256], version[65];
            snprintf(name, sizeof(name), "%s", parsed->name);
            memcpy(version, parsed->version, sizeof(version));
            rt_add_blueprint(j->rt, &parsed, 0);
            j->bp = rt_find_blueprint(j->rt, name, version);
        }
        if (j->bp == NULL) {
            rc = cbm_error_set(&j->err, CBM_ENOMEM, "out of memory");
            goto out;
        }
    }
    if (bp_check_inputs(j->bp, inputs, &norm, &e2) != 0) {
        j->fail_kind = "council_invalid";
        cbm_error_set(&j->err, CBM_EINVAL, "deliberation '%s': %s", b->name, e2.message);
    } else if ((j->inputs = strdup(norm)) == NULL) {
        rc = cbm_error_set(&j->err, CBM_ENOMEM, "out of memory");
    }
    cJSON_free(norm);
out:
    bp_destroy(parsed);
    cJSON_free(bpjson);
    cJSON_free(inputs);
    store_councils_free(c, c != NULL ? 1 : 0);
    return rc;
}

/* The child does not exist: what to start it with. Its inputs are those
 * the parent recorded in ChildStarted; its blueprint is the version the step
 * names, or the store's latest. A blueprint that does not exist, or inputs
 * it refuses, are the step's failure, not the job's. */
static int prepare_start(store_t *s, rt_child_t *j)
{
    store_event_t *evs = NULL;
    size_t n = 0;
    cJSON *p = NULL;
    const cJSON *child, *in;
    char *latest = NULL, *json = NULL, *text = NULL;
    const char *version;
    bp_blueprint_t *parsed = NULL;
    cbm_error_t e2 = {0};
    int rc = store_read_history(s, j->parent, j->seq, &evs, &n, &j->err);

    if (rc != 0) return rc;
    if (n == 0 || strcmp(evs[0].type, "ChildStarted") != 0 ||
        (p = cJSON_Parse(evs[0].payload)) == NULL ||
        !cJSON_IsString(child = cJSON_GetObjectItemCaseSensitive(p, "child")) ||
        strcmp(child->valuestring, j->child) != 0 ||
        (in = cJSON_GetObjectItemCaseSensitive(p, "inputs")) == NULL) {
        rc = cbm_error_set(&j->err, CBM_ESTORE, "execution %s: event %lld is not the ChildStarted "
                           "of %s", j->parent, (long long)j->seq, j->child);
        goto out;
    }
    if ((text = cJSON_PrintUnformatted(in)) == NULL) {
        rc = cbm_error_set(&j->err, CBM_ENOMEM, "out of memory");
        goto out;
    }
    if (j->dstep != NULL) {
        rc = prepare_delib(s, j, text);
        goto out;
    }
    version = j->version;
    if (version == NULL) {
        rc = store_get_blueprint(s, j->blueprint, NULL, &latest, NULL, &e2);
        version = latest;
    }
    if (rc == 0 && (j->bp = rt_find_blueprint(j->rt, j->blueprint, version)) == NULL) {
        rc = store_get_blueprint(s, j->blueprint, version, NULL, &json, &e2);
        if (rc == 0 && (rc = bp_parse_json(json, strlen(json), &parsed, &e2)) == 0) {
            rt_add_blueprint(j->rt, &parsed, 0);
            j->bp = rt_find_blueprint(j->rt, j->blueprint, version);
        }
    }
    if (rc == CBM_ENOTFOUND) {
        rc = 0;
        j->fail_kind = "child_blueprint_unknown";
        if (j->version != NULL)
            cbm_error_set(&j->err, CBM_ENOTFOUND, "blueprint '%s' has no version %s",
                          j->blueprint, j->version);
        else
            cbm_error_set(&j->err, CBM_ENOTFOUND, "no blueprint named '%s'", j->blueprint);
    } else if (rc != 0) {
        cbm_error_set(&j->err, rc, "%s", e2.message);
    } else if (j->bp == NULL) {
        rc = cbm_error_set(&j->err, CBM_ENOMEM, "out of memory");
    } else {
        char *norm = NULL;
        if (bp_check_inputs(j->bp, text, &norm, &e2) != 0) {
            j->fail_kind = "child_inputs_invalid";
            cbm_error_set(&j->err, CBM_EINVAL, "blueprint '%s': %s", j->blueprint, e2.message);
        } else {
            j->inputs = strdup(norm);
            cJSON_free(norm);
            if (j->inputs == NULL) rc = cbm_error_set(&j->err, CBM_ENOMEM, "out of memory");
        }
    }
out:
    free(text);
    free(latest);
    free(json);
    cJSON_Delete(p);
    store_events_free(evs, n);
    return rc;
}

void rt_job_child(store_t *s, cm_req_t *r)
{
    rt_child_t *j = (rt_child_t *)r;
    store_execution_t *x = NULL;
    const char *id = j->kind == LOOK_CHILD ? j->child : j->parent;
    int rc = store_get_execution(s, id, &x, &j->err);

    if (rc == 0) {
        if ((j->status = strdup(x->status)) == NULL)
            rc = cbm_error_set(&j->err, CBM_ENOMEM, "out of memory");
        else if (j->kind == LOOK_CHILD && terminal_status(x->status))
            rc = terminal_outcome(s, j, x->last_seq);
    } else if (rc == CBM_ENOTFOUND) {
        rc = j->kind == LOOK_CHILD ? prepare_start(s, j) : 0;
    }
    store_executions_free(x, x != NULL ? 1 : 0);
    r->d.result_code = rc;
}

/* ------------------------------------------------------ the loop's side */

static rt_child_t *job_new(rt_t *rt, int kind)
{
    rt_child_t *j = calloc(1, sizeof(*j));
    if (j == NULL) return NULL;
    j->rt = rt;
    j->kind = kind;
    j->req.owner = j;
    j->req.job = rt_job_child;
    return j;
}

static void job_free(rt_child_t *j)
{
    free(j->status);
    free(j->outcome);
    free(j->inputs);
    free(j);
}

void rt_child_ensure(rt_t *rt, rt_exec_t *ex, size_t i)
{
    const st_step_t *s = &ex->st.steps[i];
    const bp_step_t *b = &ex->bp->steps[i];
    rt_exec_t *c = rt_map_get(rt, s->child);
    rt_child_t *j;

    ex->dispatched[i] = s->attempt;
    /* Running here: it tells the parent itself when it ends. */
    if (c != NULL && !c->dead) return;
    if ((j = job_new(rt, LOOK_CHILD)) == NULL) return; /* the child timer tries again */
    memcpy(j->parent, ex->id, sizeof(j->parent));
    snprintf(j->child, sizeof(j->child), "%s", s->child);
    j->step = b->name;
    j->blueprint = b->sub_blueprint;
    j->version = b->sub_version;
    if (b->kind == BP_DELIBERATION) {
        j->dstep = b;
        j->parent_bp = ex->bp->name;
    }
    j->attempt = s->attempt;
    j->seq = s->child_seq;
    cm_submit(rt->rd, &j->req);
}

static void start_child(rt_t *rt, rt_child_t *j)
{
    rt_exec_t *ex;
    eng_event_t ev = {0};
    cbm_error_t err = {0};

    if (rt_map_get(rt, j->child) != NULL) return; /* being started, or loaded, here */
    if (rt_check_handlers(rt, j->bp, &err) != 0) {
        fail_step(rt, j->parent, j->child, "child_not_runnable", err.message);
        return;
    }
    if ((ex = rt_exec_new(rt, j->child)) == NULL) return;
    if (rt_exec_set_bp(ex, j->bp) != 0) {
        ex->dead = 1;
        rt_maybe_free(rt, ex);
        return;
    }
    ev.type = EV_EXECUTION_STARTED;
    ev.step = -1;
    ev.blueprint = strdup(j->bp->name);
    ev.version = strdup(j->bp->version);
    ev.json = j->inputs;
    j->inputs = NULL;
    ev.name = strdup(j->parent);
    ev.text = strdup(j->step);
    ev.attempt = j->attempt;
    if (ev.blueprint == NULL || ev.version == NULL || ev.name == NULL || ev.text == NULL ||
        rt_pend_push(ex, &ev) != 0) {
        ev_finish(&ev);
        ex->dead = 1;
    } else {
        cbm_log_debug("execution %s: starting child %s (%s)", j->parent, j->child, j->bp->name);
        rt_process(rt, ex, 0);
    }
    rt_maybe_free(rt, ex);
}

static void cancel_event(eng_event_t *ev, const char *parent, const char *how)
{
    char reason[128];
    memset(ev, 0, sizeof(*ev));
    ev->type = EV_CANCEL_REQUESTED;
    ev->step = -1;
    snprintf(reason, sizeof(reason), "parent execution %s %s", parent, how);
    ev->text = strdup(reason);
}

void rt_on_child(rt_t *rt, rt_child_t *j)
{
    int rc = j->req.d.result_code;
    eng_event_t ev = {0};

    if (rt->stopping) {
        /* nothing: the durable paths take it up at the next start */
    } else if (rc != 0) {
        cbm_log_warn("execution %s: cannot look at %s %s: %s", j->parent,
                     j->kind == LOOK_CHILD ? "child" : "parent",
                     j->kind == LOOK_CHILD ? j->child : j->parent, j->err.message);
    } else if (j->kind == LOOK_PARENT) {
        /* A child whose parent ended without it (a crash cut the parent's
         * cascade short, or it ended in another process): cancel it. */
        if (j->status != NULL && terminal_status(j->status)) {
            cancel_event(&ev, j->parent, j->status);
            if (ev.text != NULL) deliver(rt, j->child, &ev);
        }
    } else if (j->status != NULL) {
        if (terminal_status(j->status)) {
            ev.type = EV_CHILD_COMPLETED;
            ev.step = -1; /* resolved from the child's id */
            ev.name = strdup(j->child);
            ev.text = strdup(j->status);
            ev.json = j->outcome;
            j->outcome = NULL;
            if (ev.name != NULL && ev.text != NULL) deliver(rt, j->parent, &ev);
            else ev_finish(&ev);
        }
        /* Still running: here (hibernated: its timers wake it), in another
         * engine, or resumed at the next start; it reports when it ends. */
    } else if (j->fail_kind != NULL) {
        fail_step(rt, j->parent, j->child, j->fail_kind, j->err.message);
    } else {
        start_child(rt, j);
    }
    job_free(j);
}

/* The ChildCompleted json of a child that ended here: what its terminal
 * event says, in the form rt_job_child reads it back in. */
static char *outcome_of(const st_exec_t *st)
{
    cJSON *o;
    char *out;
    if (st->status == XS_COMPLETED) return cbm_strdup(st->result != NULL ? st->result : "null");
    if (st->status == XS_FAILED) return cbm_strdup(st->error != NULL ? st->error : "null");
    if ((o = cJSON_CreateObject()) == NULL) return NULL;
    out = cJSON_AddStringToObject(o, "reason", st->cancel_reason != NULL ? st->cancel_reason : "")
              ? cJSON_PrintUnformatted(o)
              : NULL;
    cJSON_Delete(o);
    return out;
}

void rt_child_ended(rt_t *rt, rt_exec_t *ex, int cascade)
{
    const st_exec_t *st = &ex->st;
    eng_event_t ev = {0};

    if (st->parent_id != NULL) {
        ev.type = EV_CHILD_COMPLETED;
        ev.step = -1;
        ev.name = cbm_strdup(ex->id);
        ev.text = cbm_strdup(st_status_name(st->status));
        ev.json = outcome_of(st);
        if (ev.name != NULL && ev.text != NULL && ev.json != NULL) deliver(rt, st->parent_id, &ev);
        else ev_finish(&ev);
    }
    /* A parent that ends while children run (failed, cancelled) takes them
     * with it. Only when the loop committed the end itself: an execution
     * ended elsewhere was cascaded there (cbm_execution_cancel), and a
     * cascade from every load of a finished parent would load its finished
     * children, which report back to it, which loads it again... */
    if (!cascade || st->status == XS_COMPLETED) return;
    for (size_t i = 0; i < st->bp->nsteps; i++) {
        const st_step_t *s = &st->steps[i];
        if (s->child == NULL || s->status != SS_WAITING || s->wait != SW_CHILD) continue;
        cancel_event(&ev, ex->id, st_status_name(st->status));
        if (ev.text != NULL) deliver(rt, s->child, &ev);
    }
}

void rt_child_orphans(rt_t *rt, rt_exec_t *ex, char *const *waited, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        bool held = false;
        eng_event_t ev;
        for (size_t i = 0; i < ex->bp->nsteps && !held; i++)
            held = ex->st.steps[i].child != NULL && strcmp(ex->st.steps[i].child, waited[k]) == 0;
        if (held) continue;
        /* Best effort: a crash right here leaves the old child running to
         * its end (its result is ignored: its step has moved on). */
        cbm_log_info("execution %s: child %s abandoned by a loop; cancelling it", ex->id,
                     waited[k]);
        cancel_event(&ev, ex->id, "re-opened the step that waited for it");
        if (ev.text != NULL) deliver(rt, waited[k], &ev);
    }
}

void rt_parent_check(rt_t *rt, rt_exec_t *ex)
{
    rt_child_t *j;
    if (ex->st.parent_id == NULL || rt->client_only || (j = job_new(rt, LOOK_PARENT)) == NULL)
        return;
    snprintf(j->parent, sizeof(j->parent), "%s", ex->st.parent_id);
    memcpy(j->child, ex->id, sizeof(j->child));
    cm_submit(rt->rd, &j->req);
}

/* ------------------------------------------------------------- orphans */

/* A start no longer loads the executions that wait, so their parents are
 * not checked as they resume: the walk looks at every unfinished execution
 * in pages (store_orphans: its first event names its parent), after the
 * engine is ready, one page in flight at a time so loads and refills keep
 * their turn on the reader. */
void rt_orphans_walk(rt_t *rt, const char *after)
{
    rt_orphans_t *o;
    if (rt->stopping || rt->client_only || (o = calloc(1, sizeof(*o))) == NULL) return;
    o->rt = rt;
    snprintf(o->after, sizeof(o->after), "%s", after != NULL ? after : "");
    {
        /* Only the shards this engine holds now (a walk goes on with the
         * shards it started with; one it lost meanwhile costs a cancel that
         * the new owner would make too). */
        int oom = 0;
        o->shards = rt_owned_list(rt, &o->nshards, &oom);
        if (oom) {
            free(o);
            return;
        }
    }
    o->req.owner = o;
    o->req.job = rt_job_orphans;
    cm_submit(rt->rd, &o->req);
}

void rt_job_orphans(store_t *s, cm_req_t *r)
{
    rt_orphans_t *o = (rt_orphans_t *)r;
    cbm_error_t err = {0};
    store_set_shards(s, o->shards, o->nshards);
    r->d.result_code = store_orphans(s, o->after[0] != '\0' ? o->after : NULL, ORPHAN_PAGE,
                                     &o->found, &o->n, o->last, &err);
    if (r->d.result_code != 0)
        cbm_log_warn("looking for children of ended parents: %s", err.message);
}

void rt_on_orphans(rt_t *rt, rt_orphans_t *o)
{
    for (size_t i = 0; o->req.d.result_code == 0 && i < o->n; i++) {
        eng_event_t ev;
        cbm_log_info("execution %s: its parent %s has %s; cancelling it", o->found[i].id,
                     o->found[i].parent, o->found[i].parent_status);
        cancel_event(&ev, o->found[i].parent, o->found[i].parent_status);
        if (ev.text != NULL) deliver(rt, o->found[i].id, &ev);
    }
    /* A failed page ends the walk (logged): the next start walks again. */
    if (o->req.d.result_code == 0 && o->last[0] != '\0') rt_orphans_walk(rt, o->last);
    free(o->found);
    free(o->shards);
    free(o);
}
