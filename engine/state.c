/*
 * state.c - the reducer. Pure: it reads nothing but the state and the event,
 * and writes nothing but the state. Whatever the engine knows about an
 * execution, it knows because an event said so.
 */
#include "engine/state.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"

int st_init(st_exec_t *st, const char *id, const bp_blueprint_t *bp)
{
    memset(st, 0, sizeof(*st));
    snprintf(st->id, sizeof(st->id), "%s", id);
    st->bp = bp;
    st->steps = calloc(bp->nsteps ? bp->nsteps : 1, sizeof(st_step_t));
    return st->steps != NULL ? 0 : CBM_ENOMEM;
}

void st_finish(st_exec_t *st)
{
    if (st == NULL) return;
    if (st->steps != NULL && st->bp != NULL) {
        for (size_t i = 0; i < st->bp->nsteps; i++) {
            free(st->steps[i].result);
            free(st->steps[i].error);
        }
    }
    free(st->steps);
    free(st->inputs);
    free(st->result);
    free(st->error);
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

static char *take(char **p)
{
    char *s = *p;
    *p = NULL;
    return s;
}

int st_apply(st_exec_t *st, eng_event_t *ev)
{
    st_step_t *s = NULL;

    if (ev->seq != st->seq + 1) return CBM_EINVAL;
    if (ev->type != EV_EXECUTION_STARTED && st->seq == 0) return CBM_EINVAL;
    if (st_terminal(st)) return CBM_EINVAL;
    if (ev->step >= 0) {
        if ((size_t)ev->step >= st->bp->nsteps) return CBM_EINVAL;
        s = &st->steps[ev->step];
    }

    switch (ev->type) {
    case EV_EXECUTION_STARTED:
        if (st->seq != 0) return CBM_EINVAL;
        st->inputs = take(&ev->json);
        st->started_at_us = ev->at_us;
        break;
    case EV_STEP_SCHEDULED:
        if (s == NULL || s->status == SS_COMPLETED) return CBM_EINVAL;
        s->status = SS_SCHEDULED;
        s->attempt = ev->attempt;
        break;
    case EV_STEP_STARTED:
        if (s == NULL || s->status != SS_SCHEDULED) return CBM_EINVAL;
        break;
    case EV_STEP_COMPLETED:
        if (s == NULL || s->status != SS_SCHEDULED) return CBM_EINVAL;
        s->status = SS_COMPLETED;
        free(s->result);
        s->result = take(&ev->json);
        break;
    case EV_STEP_FAILED:
        if (s == NULL || s->status != SS_SCHEDULED) return CBM_EINVAL;
        s->status = SS_FAILED;
        free(s->error);
        s->error = take(&ev->json);
        break;
    case EV_EXECUTION_COMPLETED:
        st->status = XS_COMPLETED;
        st->result = take(&ev->json);
        break;
    case EV_EXECUTION_FAILED:
        st->status = XS_FAILED;
        st->error = take(&ev->json);
        break;
    case EV_EXECUTION_CANCELLED:
        st->status = XS_CANCELLED;
        break;
    default:
        /* Types of later features: recorded, no effect on this state yet. */
        break;
    }
    st->seq = ev->seq;
    st->updated_at_us = ev->at_us;
    return 0;
}

static const char *step_status_name(st_step_status_t s)
{
    switch (s) {
    case SS_PENDING: return "pending";
    case SS_SCHEDULED: return "scheduled";
    case SS_COMPLETED: return "completed";
    case SS_FAILED: return "failed";
    }
    return "unknown";
}

static void add_raw(cJSON *obj, const char *key, const char *json)
{
    if (json == NULL) cJSON_AddNullToObject(obj, key);
    else cJSON_AddRawToObject(obj, key, json);
}

char *st_to_json(const st_exec_t *st)
{
    cJSON *o = cJSON_CreateObject(), *steps;
    char *out;

    if (o == NULL) return NULL;
    cJSON_AddStringToObject(o, "id", st->id);
    cJSON_AddStringToObject(o, "blueprint", st->bp->name);
    cJSON_AddStringToObject(o, "version", st->bp->version);
    cJSON_AddStringToObject(o, "status", st_status_name(st->status));
    cJSON_AddNumberToObject(o, "seq", (double)st->seq);
    cJSON_AddNumberToObject(o, "started_at_us", (double)st->started_at_us);
    cJSON_AddNumberToObject(o, "updated_at_us", (double)st->updated_at_us);
    add_raw(o, "inputs", st->inputs);
    add_raw(o, "result", st->result);
    add_raw(o, "error", st->error);
    steps = cJSON_AddObjectToObject(o, "steps");
    for (size_t i = 0; steps != NULL && i < st->bp->nsteps; i++) {
        cJSON *s = cJSON_AddObjectToObject(steps, st->bp->steps[i].name);
        if (s == NULL) break;
        cJSON_AddStringToObject(s, "status", step_status_name(st->steps[i].status));
        cJSON_AddNumberToObject(s, "attempt", st->steps[i].attempt);
        add_raw(s, "result", st->steps[i].result);
        add_raw(s, "error", st->steps[i].error);
    }
    out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}
