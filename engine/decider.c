/* decider.c - see decider.h. */
#include "engine/decider.h"

#include <cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"

static bool deps_completed(const st_exec_t *st, const bp_step_t *s)
{
    for (size_t d = 0; d < s->ndeps; d++)
        if (st->steps[s->deps[d]].status != SS_COMPLETED) return false;
    return true;
}

static bool is_sink(const bp_blueprint_t *bp, size_t i)
{
    for (size_t j = 0; j < bp->nsteps; j++)
        for (size_t d = 0; d < bp->steps[j].ndeps; d++)
            if (bp->steps[j].deps[d] == i) return false;
    return true;
}

/* {"<sink>":<result>,...}: the results of the steps nothing depends on. */
static char *execution_result(const st_exec_t *st)
{
    size_t cap = 3, len;
    char *out, *p;

    for (size_t i = 0; i < st->bp->nsteps; i++)
        if (is_sink(st->bp, i))
            cap += strlen(st->bp->steps[i].name) + strlen(st->steps[i].result) + 4;
    if ((out = malloc(cap)) == NULL) return NULL;
    p = out;
    *p++ = '{';
    for (size_t i = 0; i < st->bp->nsteps; i++) {
        if (!is_sink(st->bp, i)) continue;
        if (p[-1] != '{') *p++ = ',';
        len = (size_t)sprintf(p, "\"%s\":%s", st->bp->steps[i].name, st->steps[i].result);
        p += len;
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

/* {"step":..,"kind":..,"message":..} from the failed step's error object. */
static char *execution_error(const st_exec_t *st, size_t i)
{
    cJSON *se = cJSON_Parse(st->steps[i].error), *o = cJSON_CreateObject();
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(se, "kind");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(se, "message");
    char *out = NULL;

    if (o != NULL && cJSON_AddStringToObject(o, "step", st->bp->steps[i].name) != NULL &&
        cJSON_AddStringToObject(o, "kind", cJSON_IsString(k) ? k->valuestring : "error") != NULL &&
        cJSON_AddStringToObject(o, "message", cJSON_IsString(m) ? m->valuestring : "") != NULL)
        out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    cJSON_Delete(se);
    return out;
}

int dc_decide(const st_exec_t *st, eng_event_t *out, size_t cap, size_t *n)
{
    const bp_blueprint_t *bp = st->bp;
    bool all_done = true;

    *n = 0;
    if (st_terminal(st)) return 0;

    for (size_t i = 0; i < bp->nsteps; i++) {
        if (st->steps[i].status == SS_FAILED) {
            memset(&out[0], 0, sizeof(out[0]));
            out[0].type = EV_EXECUTION_FAILED;
            out[0].step = -1;
            out[0].json = execution_error(st, i);
            if (out[0].json == NULL) return CBM_ENOMEM;
            *n = 1;
            return 0;
        }
        if (st->steps[i].status != SS_COMPLETED) all_done = false;
    }
    if (all_done) {
        memset(&out[0], 0, sizeof(out[0]));
        out[0].type = EV_EXECUTION_COMPLETED;
        out[0].step = -1;
        out[0].json = execution_result(st);
        if (out[0].json == NULL) return CBM_ENOMEM;
        *n = 1;
        return 0;
    }
    for (size_t i = 0; i < bp->nsteps && *n < cap; i++) {
        if (st->steps[i].status != SS_PENDING || !deps_completed(st, &bp->steps[i])) continue;
        memset(&out[*n], 0, sizeof(out[0]));
        out[*n].type = EV_STEP_SCHEDULED;
        out[*n].step = (int)i;
        out[*n].attempt = st->steps[i].attempt + 1;
        (*n)++;
    }
    return 0;
}

char *dc_step_input(const st_exec_t *st, size_t step)
{
    const bp_step_t *s = &st->bp->steps[step];
    size_t cap = strlen(st->inputs) + 32, len;
    char *out, *p;

    for (size_t d = 0; d < s->ndeps; d++)
        cap += strlen(st->bp->steps[s->deps[d]].name) + strlen(st->steps[s->deps[d]].result) + 4;
    if ((out = malloc(cap)) == NULL) return NULL;
    len = (size_t)sprintf(out, "{\"inputs\":%s,\"deps\":{", st->inputs);
    p = out + len;
    for (size_t d = 0; d < s->ndeps; d++) {
        size_t j = s->deps[d];
        if (d > 0) *p++ = ',';
        p += sprintf(p, "\"%s\":%s", st->bp->steps[j].name, st->steps[j].result);
    }
    strcpy(p, "}}");
    return out;
}
