/*
 * remote.c - the runtime's side of remote tasks (runtime.h, "remote
 * tasks"): the hook told of committed task rows, and the outcomes remote
 * workers send back, decided on the loop like a local handler's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/runtime_internal.h"

/* ----------------------------------------------------------- remote tasks */

void rt_set_tasks_hook(rt_t *rt, rt_tasks_fn fn, void *arg)
{
    rt->on_tasks = fn;
    rt->on_tasks_arg = arg;
}

static void do_clear_hook(rt_t *rt, rt_call_t *c)
{
    rt->on_tasks = NULL;
    rt->on_tasks_arg = NULL;
    if (c != NULL) rt_answer_result(rt, c, 0);
}

void rt_clear_tasks_hook(rt_t *rt)
{
    rt_call_t c = {0};
    if (!rt->started || rt->closed) {
        do_clear_hook(rt, NULL);
        return;
    }
    c.fn = do_clear_hook;
    rt_post_and_wait(rt, &c);
}

static void do_task_result(rt_t *rt, rt_call_t *c)
{
    rt_exec_t *ex = rt_map_get(rt, c->id);
    eng_event_t ev;
    int step;

    if (rt->stopping) {
        rt_answer_result(rt, c, CBM_ESHUTDOWN);
        return;
    }
    if (ex == NULL && !rt->client_only) {
        /* Not held here (hibernated, not read back since a restart, or
         * finished): read it, and decide once it is loaded. */
        if ((ex = rt_exec_new(rt, c->id)) == NULL) {
            rt_answer_result(rt, c, CBM_ENOMEM);
            return;
        }
        rt_start_load(rt, ex);
    }
    if (ex != NULL && ex->loading) {
        c->rnext = NULL;
        if (ex->rwait == NULL) {
            ex->rwait = c;
        } else {
            rt_call_t *t = ex->rwait;
            while (t->rnext != NULL) t = t->rnext;
            t->rnext = c;
        }
        return;
    }
    if (ex != NULL && ex->dead && ex->bp != NULL && st_terminal(&ex->st)) {
        /* Loaded just now and found ended: nothing to record. */
        c->accepted = 0;
        snprintf(c->reason, sizeof(c->reason), "execution %s", st_status_name(ex->st.status));
        rt_answer_result(rt, c, 0);
        return;
    }
    if (ex == NULL || ex->dead || ex->bp == NULL) {
        /* Unknown to the store, or dropped: the caller finds out which from
         * the store. */
        rt_answer_result(rt, c, CBM_ENOTFOUND);
        return;
    }
    if ((step = bp_step_index(ex->bp, c->step)) < 0) {
        c->accepted = 0;
        snprintf(c->reason, sizeof(c->reason), "no step '%.64s' in blueprint %s", c->step,
                 ex->bp->name);
        rt_answer_result(rt, c, 0);
        return;
    }
    rt_outcome_event(rt, step, c->attempt, c->out, &ev);
    ev.origin = c;
    if (rt_pend_push(ex, &ev) != 0) {
        rt_answer_result(rt, c, CBM_ENOMEM);
        return;
    }
    if (!ex->committing && !ex->loading) rt_process(rt, ex, 0);
    rt_maybe_free(rt, ex);
}

void rt_results_resume(rt_t *rt, rt_exec_t *ex)
{
    rt_call_t *c = ex->rwait;
    ex->rwait = NULL;
    while (c != NULL) {
        rt_call_t *next = c->rnext;
        c->rnext = NULL;
        do_task_result(rt, c);
        c = next;
    }
}

int rt_task_result(rt_t *rt, const char *id, const char *step, int attempt,
                   struct cbm_step_out *out, int from_worker, int *accepted, char *reason,
                   size_t cap)
{
    rt_call_t c = {0};
    c.fn = do_task_result;
    snprintf(c.id, sizeof(c.id), "%s", id);
    c.step = step;
    c.attempt = attempt;
    c.out = out;
    c.from_worker = from_worker;
    rt_post_and_wait(rt, &c);
    *accepted = c.accepted;
    if (reason != NULL && cap > 0) snprintf(reason, cap, "%s", c.accepted ? "" : c.reason);
    return c.rc;
}

void rt_call_free(rt_call_t *c)
{
    if (c->own_out != NULL) {
        free(c->own_out->result);
        free(c->own_out->error);
        free(c->own_out->type);
        free(c->own_out);
    }
    free(c->own_step);
    free(c);
}

int rt_task_result_async(rt_t *rt, const char *id, const char *step, int attempt,
                         const struct cbm_step_out *out, int from_worker, rt_result_fn on_done,
                         void *arg)
{
    rt_call_t *c;
    if (!rt->started) return CBM_ESTATE;
    if ((c = calloc(1, sizeof(*c))) == NULL) return CBM_ENOMEM;
    c->own_step = strdup(step);
    c->own_out = calloc(1, sizeof(*c->own_out));
    if (c->own_step == NULL || c->own_out == NULL) {
        rt_call_free(c);
        return CBM_ENOMEM;
    }
    *c->own_out = *out;
    c->own_out->cancel = NULL;
    c->own_out->result = out->result != NULL ? strdup(out->result) : NULL;
    c->own_out->error = out->error != NULL ? strdup(out->error) : NULL;
    c->own_out->type = out->type != NULL ? strdup(out->type) : NULL;
    if ((out->result != NULL && c->own_out->result == NULL) ||
        (out->error != NULL && c->own_out->error == NULL) ||
        (out->type != NULL && c->own_out->type == NULL)) {
        rt_call_free(c);
        return CBM_ENOMEM;
    }
    c->fn = do_task_result;
    snprintf(c->id, sizeof(c->id), "%s", id);
    c->step = c->own_step;
    c->attempt = attempt;
    c->out = c->own_out;
    c->from_worker = from_worker;
    c->on_done = on_done;
    c->done_arg = arg;
    cbm_mailbox_post(&rt->inbox, &c->mail);
    return 0;
}
