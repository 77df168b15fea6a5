/*
 * remote.c - the runtime's side of remote tasks (runtime.h, "remote
 * tasks"): the hook told of committed task rows, and the outcomes remote
 * workers send back, decided on the loop like a local handler's.
 */
#include <stdio.h>
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
    if (ex == NULL || ex->dead || ex->bp == NULL) {
        /* Not held here (finished, unknown, dropped, or still being read):
         * the caller finds out which from the store. */
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
