/*
 * engine_outside.c - decisions from outside (cerebelum.h: approve, reject,
 * signal, cancel), made against the execution's history in the store.
 * Split from engine_api.c, which keeps the engine's life, starts, reads and
 * the remote-task entry points.
 */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>
#include <uv.h>

#include "cbm_internal.h"
#include "cerebelum/cerebelum.h"
#include "engine/blueprint.h"
#include "engine/decision.h"
#include "engine/event.h"
#include "engine/json_text.h"
#include "engine/lease.h"
#include "engine/runtime.h"
#include "engine/runtime_internal.h"
#include "engine/state.h"
#include "engine_internal.h"
#include "engine_impl.h"
#include "engine/metrics.h"
#include "engine_remote.h"
#include "pgembed.h"
#include "scheduler/clock.h"
#include "store/store.h"

/* ------------------------------------------------ decisions from outside */

/*
 * An outside decision (approve, reject, signal, cancel) is made against the
 * execution's history in the store, not against any engine's memory, so it
 * works whether the execution is running here, hibernating, held by another
 * process, or no engine is up at all. It is committed with the optimistic
 * lock (retried on a conflict); if it leaves task steps to run, this engine
 * loads it at once (rt_refresh), or, from a client-only engine, a "wake"
 * timer row due now tells the engine that runs executions to load it.
 */
typedef struct ext_cmd {
    enum { EXT_APPROVE, EXT_REJECT, EXT_SIGNAL, EXT_CANCEL } kind;
    const char *step;
    const char *name;
    const char *json;     /* normalised */
    const char *text;
    const char *who;
    int depth;            /* cancel: how deep in a cascade of children */
    const char *key;      /* signal: its idempotency key, or NULL */
    bool *existing;       /* signal with a key: set when it was delivered already */
} ext_cmd_t;

/* Children a cancelled execution leaves running: filled by ext_try. */
typedef struct ext_kids {
    char (*ids)[37];
    size_t n;
} ext_kids_t;

/* The children that st's subworkflow steps still wait for. */
static int kids_of(const st_exec_t *st, ext_kids_t *k)
{
    size_t n = 0;
    for (size_t i = 0; i < st->bp->nsteps; i++)
        n += st->steps[i].child != NULL && st->steps[i].status == SS_WAITING &&
             st->steps[i].wait == SW_CHILD;
    k->n = 0;
    if (n == 0) return 0;
    if ((k->ids = calloc(n, sizeof(*k->ids))) == NULL) return CBM_ENOMEM;
    for (size_t i = 0; i < st->bp->nsteps; i++)
        if (st->steps[i].child != NULL && st->steps[i].status == SS_WAITING &&
            st->steps[i].wait == SW_CHILD)
            snprintf(k->ids[k->n++], 37, "%s", st->steps[i].child);
    return 0;
}

/* Was the approval of step already decided (granted, rejected, timed out)? */
static const char *approval_outcome(const store_event_t *evs, size_t n, const char *step)
{
    char needle[160];
    snprintf(needle, sizeof(needle), "\"step\":\"%s\"", step);
    for (size_t i = n; i-- > 0;) {
        const char *t = evs[i].type;
        if (strstr(evs[i].payload, needle) == NULL) continue;
        if (strcmp(t, "ApprovalGranted") == 0) return "approved";
        if (strcmp(t, "ApprovalRejected") == 0) return "rejected";
        if (strcmp(t, "ApprovalTimedOut") == 0) return "timed out";
    }
    return NULL;
}

/* The event the command becomes, or an error saying why it does not apply.
 * Returns 1 for "nothing to do" (cancelling a cancelled execution). */
static int ext_event(const st_exec_t *st, const ext_cmd_t *c, const store_event_t *evs, size_t n,
                     eng_event_t *ev, cbm_error_t *err)
{
    int idx = -1;
    memset(ev, 0, sizeof(*ev));
    ev->step = -1;
    if (c->kind == EXT_CANCEL) {
        if (st->status == XS_CANCELLED) return 1;
        if (st_terminal(st))
            return cbm_error_set(err, CBM_ESTATE, "execution %s is already %s", st->id,
                                 st_status_name(st->status));
        ev->type = EV_CANCEL_REQUESTED;
        ev->text = strdup(c->text != NULL ? c->text : "");
        return ev->text != NULL ? 0 : CBM_ENOMEM;
    }
    if (st_terminal(st))
        return cbm_error_set(err, CBM_ESTATE, "execution %s is already %s", st->id,
                             st_status_name(st->status));
    if (c->kind == EXT_SIGNAL) {
        ev->type = EV_SIGNAL_RECEIVED;
        ev->name = strdup(c->name);
        ev->json = strdup(c->json);
        if (c->key != NULL && (ev->text = strdup(c->key)) == NULL) return CBM_ENOMEM;
        return ev->name != NULL && ev->json != NULL ? 0 : CBM_ENOMEM;
    }
    idx = bp_step_index(st->bp, c->step);
    if (idx < 0)
        return cbm_error_set(err, CBM_ENOTFOUND, "execution %s has no step '%s'", st->id, c->step);
    if (st->steps[idx].status != SS_WAITING || st->steps[idx].wait != SW_APPROVAL) {
        const char *done = approval_outcome(evs, n, c->step);
        if (done != NULL)
            return cbm_error_set(err, CBM_ESTATE,
                                 "the approval of step '%s' was already decided (%s)", c->step,
                                 done);
        return cbm_error_set(err, CBM_ESTATE, "step '%s' of execution %s is not waiting for an "
                                              "approval", c->step, st->id);
    }
    ev->step = idx;
    ev->who = strdup(c->who != NULL ? c->who : "");
    if (c->kind == EXT_APPROVE) {
        ev->type = EV_APPROVAL_GRANTED;
        ev->json = strdup(c->json);
        return ev->who != NULL && ev->json != NULL ? 0 : CBM_ENOMEM;
    }
    ev->type = EV_APPROVAL_REJECTED;
    ev->text = strdup(c->text != NULL ? c->text : "");
    return ev->who != NULL && ev->text != NULL ? 0 : CBM_ENOMEM;
}

/* One attempt under rd_mu: 0 done, CBM_ECONFLICT to try again, else error. */
static int ext_try(cbm_engine_t *e, const char *id, const ext_cmd_t *c, ext_kids_t *kids,
                   cbm_error_t *err)
{
    store_execution_t *x = NULL;
    store_event_t *evs = NULL;
    size_t n = 0, *sched = NULL, nsched = 0;
    const bp_blueprint_t *bp;
    st_exec_t st;
    eng_event_t ev;
    store_decision_t d;
    store_decision_t *dp = &d;
    int rc, inited = 0;

    memset(&d, 0, sizeof(d));
    memset(&ev, 0, sizeof(ev));
    rc = store_load_execution(e->rd, id, &x, &evs, &n, err);
    if (rc == CBM_EUNAVAIL && store_reconnect(e->rd, NULL) == 0)
        rc = store_load_execution(e->rd, id, &x, &evs, &n, err);
    if (rc == CBM_ENOTFOUND) return cbm_error_set(err, rc, "no execution %s", id);
    if (rc != 0) return rc;
    if ((bp = eng_load_blueprint(e, x->blueprint, x->version, 0, err)) == NULL) {
        rc = err != NULL && err->code ? err->code : CBM_ENOTFOUND;
        goto out;
    }
    inited = 1;
    if ((rc = dec_fold(&st, x->id, bp, x->snapshot, evs, n, err)) != 0) goto out;
    if (c->kind == EXT_SIGNAL && c->key != NULL) {
        /* Delivered already (a redelivered trigger message, a client's
         * retry)? Read after the load: a keyed signal committed since then
         * is found here, one committed later moves the seq and this
         * decision's append is refused and made again (store.h). */
        int64_t seq = 0;
        if ((rc = store_signal_key_seq(e->rd, x->id, c->key, &seq, err)) != 0) goto out;
        if (seq > 0) {
            *c->existing = true;
            goto out;
        }
    }
    if ((rc = ext_event(&st, c, evs, n, &ev, err)) != 0) {
        /* Cancelled already: its children are cancelled (again: finishing
         * a cascade that a crash cut short). */
        if (rc == 1) rc = kids_of(&st, kids);
        goto out;
    }
    if ((rc = dec_build(&st, &ev, 1, clock_now_us(&clock_system), &d, &sched, &nsched)) != 0)
        goto out;
    /* An engine that runs executions loads it at once itself (rt_refresh,
     * after the commit; a crash in between resumes it at the next start);
     * a client-only one, or one that does not hold its shard, leaves a
     * "wake" row for the engine that runs it. */
    if ((nsched > 0 || !rt_runs(e->rt, id)) && !st_terminal(&st) &&
        (e->client_only || !rt_runs(e->rt, id)) &&
        (rc = dec_add_timer(&d, "wake", "wake", clock_now_us(&clock_system))) != 0)
        goto out;
    rc = store_append(e->rd, &dp, 1, err);
    if (rc == 0) rc = d.result_code;
    if (rc == 0 && st.status == XS_CANCELLED) rc = kids_of(&st, kids);
    if (rc == CBM_ECONFLICT || rc == CBM_ENOTFOUND) rc = CBM_ECONFLICT;
out:
    ev_finish(&ev);
    dec_release(&d);
    free(sched);
    if (inited) st_finish(&st);
    store_executions_free(x, x != NULL ? 1 : 0);
    store_events_free(evs, n);
    return rc;
}

/* A cascade stops this deep (a blueprint cannot start itself through its
 * children for ever without a deeper bug). */
#define MAX_CASCADE 32

static int ext_decide(cbm_engine_t *e, const char *id, const ext_cmd_t *c, cbm_error_t *err)
{
    ext_kids_t kids = {0};
    int rc = CBM_ECONFLICT;
    if (e == NULL || id == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    if (!e->started) return cbm_error_set(err, CBM_ESTATE, "engine not started");
    if ((rc = eng_known_id(id, err)) != 0) return rc;
    /* What a person typed goes into the history: PostgreSQL must take it. */
    if ((rc = cbm_str_check(c->step, "step", err)) != 0 ||
        (rc = cbm_str_check(c->name, "signal name", err)) != 0 ||
        (rc = cbm_str_check(c->text, "reason", err)) != 0 ||
        (rc = cbm_str_check(c->who, "actor", err)) != 0)
        return rc;
    rc = CBM_ECONFLICT;
    cbm_error_clear(err);
    for (int attempt = 0; attempt < 20 && rc == CBM_ECONFLICT; attempt++) {
        uv_mutex_lock(&e->rd_mu);
        free(kids.ids);
        kids.ids = NULL;
        kids.n = 0;
        rc = ext_try(e, id, c, &kids, err);
        uv_mutex_unlock(&e->rd_mu);
    }
    /* An execution cancelled (by this call or by an earlier one, in any
     * process) cancels the children it waits for, and they theirs. Done
     * after the parent's cancellation is durable; a crash in between leaves
     * children that the engine cancels when it resumes them (their parent
     * has ended), or that the next cancel of the parent finishes. */
    for (size_t i = 0; rc == 0 && i < kids.n && c->depth < MAX_CASCADE; i++) {
        char reason[96];
        ext_cmd_t cc = {EXT_CANCEL, NULL, NULL, NULL, reason, NULL, c->depth + 1, NULL, NULL};
        cbm_error_t e2 = {0};
        snprintf(reason, sizeof(reason), "parent execution %s cancelled", id);
        if (ext_decide(e, kids.ids[i], &cc, &e2) != 0 && e2.code != CBM_ESTATE &&
            e2.code != CBM_ENOTFOUND)
            cbm_log_warn("execution %s: cancelling child %s: %s", id, kids.ids[i], e2.message);
    }
    free(kids.ids);
    if (rc == CBM_ECONFLICT)
        return cbm_error_set(err, rc, "execution %s kept changing; decision not taken", id);
    if (rc == 0) rt_refresh(e->rt, id);
    return rc;
}

static int normalize_arg(const char *json, const char *dflt, const char *field, char **out,
                         cbm_error_t *err)
{
    return json_normalize_field(json != NULL ? json : dflt, field, out, err);
}

int cbm_execution_approve(cbm_engine_t *e, const char *id, const char *step,
                          const char *response_json, const char *who, cbm_error_t *err)
{
    ext_cmd_t c = {EXT_APPROVE, step, NULL, NULL, NULL, who, 0, NULL, NULL};
    char *json;
    int rc;
    if (step == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL step");
    if ((rc = normalize_arg(response_json, "{}", "response", &json, err)) != 0) return rc;
    c.json = json;
    rc = ext_decide(e, id, &c, err);
    free(json);
    return rc;
}

int cbm_execution_reject(cbm_engine_t *e, const char *id, const char *step, const char *reason,
                         const char *who, cbm_error_t *err)
{
    ext_cmd_t c = {EXT_REJECT, step, NULL, NULL, reason, who, 0, NULL, NULL};
    if (step == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL step");
    return ext_decide(e, id, &c, err);
}

int cbm_execution_signal(cbm_engine_t *e, const char *id, const char *name,
                         const char *payload_json, cbm_error_t *err)
{
    return cbm_execution_signal_key(e, id, name, payload_json, NULL, NULL, err);
}

/* Signal keys are kept short and text-only: they go into the event. */
#define MAX_SIGNAL_KEY 256

int cbm_execution_signal_key(cbm_engine_t *e, const char *id, const char *name,
                             const char *payload_json, const char *key, bool *delivered,
                             cbm_error_t *err)
{
    ext_cmd_t c = {EXT_SIGNAL, NULL, name, NULL, NULL, NULL, 0, key, NULL};
    bool existing = false;
    char *json;
    int rc;
    if (delivered != NULL) *delivered = false;
    if (name == NULL || *name == '\0') return cbm_error_set(err, CBM_EINVAL, "empty signal name");
    if (key != NULL) {
        if (*key == '\0' || strlen(key) > MAX_SIGNAL_KEY)
            return cbm_error_set(err, CBM_EINVAL, "a signal's idempotency key has 1 to %d bytes",
                                 MAX_SIGNAL_KEY);
        if ((rc = cbm_str_check(key, "signal idempotency key", err)) != 0) return rc;
    }
    c.existing = &existing;
    if ((rc = normalize_arg(payload_json, "null", "signal payload", &json, err)) != 0) return rc;
    c.json = json;
    rc = ext_decide(e, id, &c, err);
    free(json);
    if (rc == 0 && delivered != NULL) *delivered = !existing;
    return rc;
}

int cbm_execution_cancel(cbm_engine_t *e, const char *id, const char *reason, cbm_error_t *err)
{
    ext_cmd_t c = {EXT_CANCEL, NULL, NULL, NULL, reason, NULL, 0, NULL, NULL};
    return ext_decide(e, id, &c, err);
}
