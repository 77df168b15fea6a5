/*
 * registry.c - the runtime's blueprints (every version ever added, the
 * latest of each name) and step handlers (registered before the start).
 * Thread-safe where runtime.h says so.
 */
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/delib_select.h"
#include "engine/runtime_internal.h"

/* ------------------------------------------------------------- blueprints */

void rt_add_blueprint(rt_t *rt, bp_blueprint_t **bpp, int latest)
{
    bp_blueprint_t *bp = *bpp;
    *bpp = NULL;
    uv_mutex_lock(&rt->mu);
    for (size_t i = 0; i < rt->nbps; i++) {
        if (strcmp(rt->bps[i]->name, bp->name) == 0 &&
            strcmp(rt->bps[i]->version, bp->version) == 0) {
            /* Known: make it the latest by moving it to the end. */
            bp_blueprint_t *known = rt->bps[i];
            if (latest) {
                memmove(&rt->bps[i], &rt->bps[i + 1], (rt->nbps - i - 1) * sizeof(*rt->bps));
                rt->bps[rt->nbps - 1] = known;
            }
            uv_mutex_unlock(&rt->mu);
            bp_destroy(bp);
            return;
        }
    }
    if (rt->nbps == rt->capbps) {
        size_t cap = rt->capbps ? rt->capbps * 2 : 16;
        bp_blueprint_t **n = realloc(rt->bps, cap * sizeof(*n));
        if (n == NULL) {
            uv_mutex_unlock(&rt->mu);
            bp_destroy(bp);
            return;
        }
        rt->bps = n;
        rt->capbps = cap;
    }
    if (latest) {
        rt->bps[rt->nbps++] = bp;
    } else {
        /* Searches go from the end, so the front is "oldest". */
        memmove(&rt->bps[1], &rt->bps[0], rt->nbps * sizeof(*rt->bps));
        rt->bps[0] = bp;
        rt->nbps++;
    }
    uv_mutex_unlock(&rt->mu);
}

const bp_blueprint_t *rt_find_blueprint(rt_t *rt, const char *name, const char *version)
{
    const bp_blueprint_t *found = NULL;
    uv_mutex_lock(&rt->mu);
    for (size_t i = rt->nbps; i-- > 0;) {
        if (strcmp(rt->bps[i]->name, name) == 0 &&
            (version == NULL || strcmp(rt->bps[i]->version, version) == 0)) {
            found = rt->bps[i];
            break;
        }
    }
    uv_mutex_unlock(&rt->mu);
    return found;
}

const rt_handler_t *rt_find_handler(rt_t *rt, const char *name)
{
    for (size_t i = 0; i < rt->nhandlers; i++)
        if (strcmp(rt->handlers[i].name, name) == 0) return &rt->handlers[i];
    return NULL;
}

int rt_check_handlers(rt_t *rt, const bp_blueprint_t *bp, cbm_error_t *err)
{
    for (size_t i = 0; i < bp->nsteps; i++) {
        const bp_step_t *s = &bp->steps[i];
        /* A remote step runs on a worker polling its queue. */
        if (s->kind != BP_TASK || bp_step_remote(s)) continue;
        if (rt_find_handler(rt, s->handler) == NULL)
            return cbm_error_set(err, CBM_EHANDLER,
                                 "blueprint '%s', step '%s': no handler registered as '%s'",
                                 bp->name, s->name, s->handler);
    }
    return 0;
}

/* The built-in local steps of a deliberation's child (docs/deliberation.md
 * §3): pure functions of their input (engine/delib_select.h). */
static void builtin_delib(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    int (*fn)(const char *, char **, char **, char **) = arg == NULL ? delib_select : delib_finish;
    char *result = NULL, *kind = NULL, *message = NULL;
    int rc = fn(call->input_json, &result, &kind, &message);

    if (rc != 0) cbm_step_fail(out, "out_of_memory", "out of memory", true);
    else if (result != NULL) cbm_step_ok(out, result);
    else cbm_step_fail(out, kind, message, false);
    cJSON_free(result);
    cJSON_free(kind);
    cJSON_free(message);
}

int rt_register_builtins(rt_t *rt)
{
    static int finish_tag;
    int rc = rt_register_handler(rt, "cbm.deliberation.select", builtin_delib, NULL);
    return rc != 0 ? rc : rt_register_handler(rt, "cbm.deliberation.finish", builtin_delib, &finish_tag);
}

int rt_register_handler(rt_t *rt, const char *name, cbm_step_fn fn, void *arg)
{
    rt_handler_t *n;
    if (rt->started) return CBM_ESTATE;
    if (rt_find_handler(rt, name) != NULL) return CBM_EEXIST;
    n = realloc(rt->handlers, (rt->nhandlers + 1) * sizeof(*n));
    if (n == NULL) return CBM_ENOMEM;
    rt->handlers = n;
    n[rt->nhandlers].name = strdup(name);
    if (n[rt->nhandlers].name == NULL) return CBM_ENOMEM;
    n[rt->nhandlers].fn = fn;
    n[rt->nhandlers].arg = arg;
    rt->nhandlers++;
    return 0;
}
