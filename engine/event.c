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
    free(ev->name);
    free(ev->text);
    free(ev->who);
    ev->blueprint = ev->version = ev->json = ev->name = ev->text = ev->who = NULL;
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

/* Encoding of the rarer events, where strings from users (reasons, names of
 * people) need JSON escaping: build with cJSON. */
static char *encode_rare(const eng_event_t *ev, const char *step)
{
    cJSON *o = cJSON_CreateObject();
    char *out = NULL;
    int ok = o != NULL;

#define ADD_RAW(k, v) ok = ok && cJSON_AddRawToObject(o, k, (v) != NULL ? (v) : "null") != NULL
#define ADD_STR(k, v) ok = ok && cJSON_AddStringToObject(o, k, (v) != NULL ? (v) : "") != NULL
#define ADD_NUM(k, v) ok = ok && cJSON_AddNumberToObject(o, k, (double)(v)) != NULL
    if (ev->step >= 0) ADD_STR("step", step);
    switch (ev->type) {
    case EV_STEP_RETRY_SCHEDULED:
        ADD_NUM("attempt", ev->attempt);
        ADD_NUM("due_us", ev->due_us);
        break;
    case EV_SLEEP_STARTED:
        ADD_NUM("attempt", ev->attempt);
        ADD_NUM("until_us", ev->due_us);
        ADD_RAW("result", ev->json);
        break;
    case EV_TIMER_FIRED:
        ADD_STR("key", ev->name);
        break;
    case EV_APPROVAL_REQUESTED:
        ADD_NUM("attempt", ev->attempt);
        ADD_STR("type", ev->name);
        ADD_RAW("data", ev->json);
        ADD_NUM("timeout_ms", ev->timeout_ms);
        ADD_NUM("deadline_us", ev->due_us);
        break;
    case EV_APPROVAL_GRANTED:
        ADD_RAW("response", ev->json);
        ADD_STR("by", ev->who);
        break;
    case EV_APPROVAL_REJECTED:
        ADD_STR("reason", ev->text);
        ADD_STR("by", ev->who);
        break;
    case EV_SIGNAL_RECEIVED:
        ADD_STR("name", ev->name);
        ADD_RAW("payload", ev->json);
        break;
    case EV_CANCEL_REQUESTED:
    case EV_EXECUTION_CANCELLED:
        ADD_STR("reason", ev->text);
        break;
    default:
        break;
    }
#undef ADD_RAW
#undef ADD_STR
#undef ADD_NUM
    if (ok) out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

char *ev_encode(const eng_event_t *ev, const bp_blueprint_t *bp)
{
    const char *step = (ev->step >= 0 && bp != NULL) ? bp->steps[ev->step].name : "";

    /* The hot events are built by concatenation: names are validated
     * ([A-Za-z0-9_.-]), versions are hex, and json members are normalised
     * JSON, so the result is valid JSON. */
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
    case EV_APPROVAL_TIMED_OUT:
        return fmt("{\"step\":\"%s\"}", step);
    default:
        return encode_rare(ev, step);
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

static int take_str(const cJSON *p, const char *key, char **dst, eng_event_t *out,
                    cbm_error_t *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, key);
    if (!cJSON_IsString(v))
        return cbm_error_set(err, CBM_EJSON, "event %lld: missing %s", (long long)out->seq, key);
    *dst = strdup(v->valuestring);
    return *dst != NULL ? 0 : cbm_error_set(err, CBM_ENOMEM, "out of memory");
}

static int64_t get_i64(const cJSON *p, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
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
    case EV_STEP_RETRY_SCHEDULED:
        rc = get_step(p, bp, out, err);
        out->due_us = get_i64(p, "due_us");
        break;
    case EV_SLEEP_STARTED:
        if ((rc = get_step(p, bp, out, err)) == 0) rc = take_json(p, "result", out, err);
        out->due_us = get_i64(p, "until_us");
        break;
    case EV_TIMER_FIRED:
        rc = take_str(p, "key", &out->name, out, err);
        break;
    case EV_APPROVAL_REQUESTED:
        if ((rc = get_step(p, bp, out, err)) == 0 &&
            (rc = take_str(p, "type", &out->name, out, err)) == 0)
            rc = take_json(p, "data", out, err);
        out->timeout_ms = get_i64(p, "timeout_ms");
        out->due_us = get_i64(p, "deadline_us");
        break;
    case EV_APPROVAL_GRANTED:
        if ((rc = get_step(p, bp, out, err)) == 0 && (rc = take_json(p, "response", out, err)) == 0)
            rc = take_str(p, "by", &out->who, out, err);
        break;
    case EV_APPROVAL_REJECTED:
        if ((rc = get_step(p, bp, out, err)) == 0 &&
            (rc = take_str(p, "reason", &out->text, out, err)) == 0)
            rc = take_str(p, "by", &out->who, out, err);
        break;
    case EV_APPROVAL_TIMED_OUT:
        rc = get_step(p, bp, out, err);
        break;
    case EV_SIGNAL_RECEIVED:
        if ((rc = take_str(p, "name", &out->name, out, err)) == 0)
            rc = take_json(p, "payload", out, err);
        break;
    case EV_CANCEL_REQUESTED:
    case EV_EXECUTION_CANCELLED:
        rc = take_str(p, "reason", &out->text, out, err);
        break;
    default:
        break;
    }
    cJSON_Delete(p);
    if (rc != 0) ev_finish(out);
    return rc;
}
