/* event.c - event type names, payload encoding and decoding (see event.h). */
#include "engine/event.h"

#include <cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/blueprint.h"

static const char *const type_names[] = {
    "Unknown",
#define XX(sym, name) name,
    EV_TYPE_MAP(XX)
#undef XX
};

const char *ev_type_name(ev_type_t t)
{
    if ((size_t)t >= sizeof(type_names) / sizeof(type_names[0])) return "Unknown";
    return type_names[t];
}

ev_type_t ev_type_from_name(const char *name)
{
    for (size_t i = 1; i < sizeof(type_names) / sizeof(type_names[0]); i++)
        if (strcmp(type_names[i], name) == 0) return (ev_type_t)i;
    return EV_UNKNOWN;
}

void ev_finish(eng_event_t *ev)
{
    if (ev == NULL) return;
    free(ev->blueprint);
    free(ev->version);
    free(ev->json);
    ev->blueprint = ev->version = ev->json = NULL;
}

char *json_normalize(const char *text)
{
    cJSON *j = cJSON_Parse(text);
    char *out;
    if (j == NULL) return NULL;
    out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}

/* asprintf that returns NULL on failure. */
static char *fmt(const char *f, ...) CBM_PRINTF(1, 2);
static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s = NULL;
    int n;
    va_start(ap, f);
    n = vasprintf(&s, f, ap);
    va_end(ap);
    return n < 0 ? NULL : s;
}

char *ev_encode(const eng_event_t *ev, const bp_blueprint_t *bp)
{
    const char *step = (ev->step >= 0 && bp != NULL) ? bp->steps[ev->step].name : "";

    /* Names are validated ([A-Za-z0-9_.-]), versions are hex, and json members
     * are normalised JSON, so concatenation yields valid JSON. */
    switch (ev->type) {
    case EV_EXECUTION_STARTED:
        return fmt("{\"blueprint\":\"%s\",\"version\":\"%s\",\"inputs\":%s}", ev->blueprint,
                   ev->version, ev->json);
    case EV_STEP_SCHEDULED:
        return fmt("{\"step\":\"%s\",\"attempt\":%d}", step, ev->attempt);
    case EV_STEP_COMPLETED:
        return fmt("{\"step\":\"%s\",\"attempt\":%d,\"result\":%s}", step, ev->attempt, ev->json);
    case EV_STEP_FAILED:
        return fmt("{\"step\":\"%s\",\"attempt\":%d,\"error\":%s}", step, ev->attempt, ev->json);
    case EV_EXECUTION_COMPLETED:
        return fmt("{\"result\":%s}", ev->json);
    case EV_EXECUTION_FAILED:
        return fmt("{\"error\":%s}", ev->json);
    default:
        return fmt("{}");
    }
}

static int get_step(const cJSON *p, const bp_blueprint_t *bp, eng_event_t *out, cbm_error_t *err)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(p, "step");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(p, "attempt");
    if (!cJSON_IsString(s) || bp == NULL)
        return cbm_error_set(err, CBM_EJSON, "event %lld: missing step", (long long)out->seq);
    out->step = bp_step_index(bp, s->valuestring);
    if (out->step < 0)
        return cbm_error_set(err, CBM_EJSON, "event %lld: step '%s' not in blueprint %s",
                             (long long)out->seq, s->valuestring, bp->name);
    out->attempt = cJSON_IsNumber(a) ? a->valueint : 1;
    return 0;
}

static int take_json(const cJSON *p, const char *key, eng_event_t *out, cbm_error_t *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, key);
    if (v == NULL)
        return cbm_error_set(err, CBM_EJSON, "event %lld: missing %s", (long long)out->seq, key);
    out->json = cJSON_PrintUnformatted(v);
    return out->json != NULL ? 0 : cbm_error_set(err, CBM_ENOMEM, "out of memory");
}

int ev_decode(const char *type, const char *payload, int64_t seq, int64_t at_us,
              const bp_blueprint_t *bp, eng_event_t *out, cbm_error_t *err)
{
    cJSON *p;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    out->type = ev_type_from_name(type);
    out->seq = seq;
    out->at_us = at_us;
    out->step = -1;
    if (out->type == EV_UNKNOWN)
        return cbm_error_set(err, CBM_EJSON, "event %lld: unknown type '%s'", (long long)seq, type);
    p = cJSON_Parse(payload);
    if (p == NULL || !cJSON_IsObject(p)) {
        cJSON_Delete(p);
        return cbm_error_set(err, CBM_EJSON, "event %lld (%s): payload is not a JSON object",
                             (long long)seq, type);
    }
    switch (out->type) {
    case EV_EXECUTION_STARTED: {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(p, "blueprint");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, "version");
        if (!cJSON_IsString(b) || !cJSON_IsString(v)) {
            rc = cbm_error_set(err, CBM_EJSON, "event %lld: ExecutionStarted without blueprint",
                               (long long)seq);
            break;
        }
        out->blueprint = strdup(b->valuestring);
        out->version = strdup(v->valuestring);
        rc = take_json(p, "inputs", out, err);
        break;
    }
    case EV_STEP_SCHEDULED:
    case EV_STEP_STARTED:
        rc = get_step(p, bp, out, err);
        break;
    case EV_STEP_COMPLETED:
        if ((rc = get_step(p, bp, out, err)) == 0) rc = take_json(p, "result", out, err);
        break;
    case EV_STEP_FAILED:
        if ((rc = get_step(p, bp, out, err)) == 0) rc = take_json(p, "error", out, err);
        break;
    case EV_EXECUTION_COMPLETED:
        rc = take_json(p, "result", out, err);
        break;
    case EV_EXECUTION_FAILED:
        rc = take_json(p, "error", out, err);
        break;
    default:
        break;
    }
    cJSON_Delete(p);
    if (rc != 0) ev_finish(out);
    return rc;
}
