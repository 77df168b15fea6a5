/* event.c - event type names, payload encoding and decoding (see event.h). */
#include "engine/event.h"

#include <cJSON.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/blueprint.h"
#include "engine/json_text.h"

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
    free(ev->set);
    ev->blueprint = ev->version = ev->json = ev->name = ev->text = ev->who = NULL;
    ev->set = NULL;
    ev->nset = 0;
}

char *json_normalize(const char *text)
{
    char *out = NULL;
    if (text == NULL || json_normalize_field(text, "JSON", &out, NULL) != 0) return NULL;
    return out;
}

int json_normalize_field(const char *text, const char *field, char **out, cbm_error_t *err)
{
    cJSON *j;
    int rc;

    *out = NULL;
    if ((rc = cbm_json_check(text, strlen(text), field, err)) != 0) return rc;
    /* Out of memory is not malformed text (json_text.h). */
    if ((j = json_text_parse(text, &rc)) == NULL)
        return rc == CBM_ENOMEM ? cbm_error_set(err, CBM_ENOMEM, "out of memory")
                                : cbm_error_set(err, CBM_EJSON, "%s is not valid JSON", field);
    *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return *out == NULL ? cbm_error_set(err, CBM_ENOMEM, "out of memory") : 0;
}

bool json_int_in(const cJSON *v, int64_t min, int64_t max, int64_t *out)
{
    int64_t i;
    /* Compare as a double first: converting NaN, an infinity or a value
     * beyond int64_t is undefined behaviour. */
    if (!cJSON_IsNumber(v) || !(v->valuedouble > -9.2e18 && v->valuedouble < 9.2e18)) return false;
    i = (int64_t)v->valuedouble;
    if (i < min || i > max) return false;
    *out = i;
    return true;
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
/* "key": [<step names of ev->set>] */
static bool add_set(cJSON *o, const char *key, const eng_event_t *ev, const bp_blueprint_t *bp)
{
    cJSON *a = cJSON_AddArrayToObject(o, key);
    if (a == NULL) return false;
    for (size_t i = 0; i < ev->nset; i++) {
        cJSON *s = cJSON_CreateString(bp->steps[ev->set[i]].name);
        if (s == NULL || !cJSON_AddItemToArray(a, s)) {
            cJSON_Delete(s);
            return false;
        }
    }
    return true;
}

static char *encode_rare(const eng_event_t *ev, const char *step, const bp_blueprint_t *bp)
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
    case EV_DIVERGE_TAKEN: {
        const bp_diverge_t *r = &bp->steps[ev->step].diverge[ev->rule];
        ADD_NUM("rule", ev->rule);
        ADD_STR("on", r->on == BP_ON_ERROR ? "error" : "result");
        ADD_STR("action", bp_action_name(ev->action));
        if (ev->action == BP_ACTION_BACK_TO || ev->action == BP_ACTION_SKIP_TO ||
            ev->action == BP_ACTION_RETRY)
            ADD_STR("target", bp->steps[ev->target].name);
        if (ev->action == BP_ACTION_BACK_TO || ev->action == BP_ACTION_RETRY) {
            ADD_NUM("iteration", ev->iteration);
            ok = ok && add_set(o, "reopened", ev, bp);
        } else if (ev->action == BP_ACTION_SKIP_TO) {
            ok = ok && add_set(o, "skipped", ev, bp);
        }
        break;
    }
    case EV_CHILD_STARTED:
        ADD_NUM("attempt", ev->attempt);
        ADD_STR("child", ev->name);
        ADD_STR("blueprint", ev->blueprint);
        if (ev->version != NULL) ADD_STR("version", ev->version);
        else ok = ok && cJSON_AddNullToObject(o, "version") != NULL;
        ADD_RAW("inputs", ev->json);
        break;
    case EV_CHILD_COMPLETED:
        ADD_NUM("attempt", ev->attempt);
        ADD_STR("child", ev->name);
        ADD_STR("status", ev->text);
        ADD_RAW(ev->text != NULL && strcmp(ev->text, "completed") == 0 ? "result" : "error",
                ev->json);
        break;
    case EV_BRANCH_TAKEN:
        if (ev->rule >= 0) ADD_NUM("entry", ev->rule);
        else ok = ok && cJSON_AddNullToObject(o, "entry") != NULL;
        if (ev->target >= 0) ADD_STR("to", bp->steps[ev->target].name);
        else ok = ok && cJSON_AddNullToObject(o, "to") != NULL;
        ok = ok && add_set(o, "skipped", ev, bp);
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
        /* The signal's idempotency key (cbm_execution_signal_key), when it
         * was given one: store_signal_key_seq finds it here. */
        if (ev->text != NULL) ADD_STR("key", ev->text);
        break;
    case EV_CANCEL_REQUESTED:
    case EV_EXECUTION_CANCELLED:
        ADD_STR("reason", ev->text);
        break;
    case EV_RESULT_IGNORED:
        ADD_NUM("attempt", ev->attempt);
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
        if (ev->name != NULL) /* a child: ids are UUIDs, steps are names */
            return fmt("{\"blueprint\":\"%s\",\"version\":\"%s\",\"inputs\":%s,\"parent\":"
                       "{\"execution_id\":\"%s\",\"step\":\"%s\",\"attempt\":%d}}",
                       ev->blueprint, ev->version, ev->json, ev->name,
                       ev->text != NULL ? ev->text : "", ev->attempt);
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
        return encode_rare(ev, step, bp);
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
    out->attempt = 1;
    if (cJSON_IsNumber(a)) {
        int64_t v;
        if (!json_int_in(a, 1, EV_MAX_ATTEMPT, &v))
            return cbm_error_set(err, CBM_EJSON, "event %lld: attempt out of range",
                                 (long long)out->seq);
        out->attempt = (int)v;
    }
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

/* p[key], a number in [min, max], into *dst; 0 when absent or not a number
 * (as payloads have always been read). */
static int get_num(const cJSON *p, const char *key, int64_t min, int64_t max, int64_t *dst,
                   eng_event_t *out, cbm_error_t *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, key);
    *dst = 0;
    if (cJSON_IsNumber(v) && !json_int_in(v, min, max, dst))
        return cbm_error_set(err, CBM_EJSON, "event %lld: %s out of range", (long long)out->seq,
                             key);
    return 0;
}

static int get_time(const cJSON *p, const char *key, int64_t *dst, eng_event_t *out,
                    cbm_error_t *err)
{
    return get_num(p, key, -EV_MAX_TIME_US, EV_MAX_TIME_US, dst, out, err);
}

static int take_json(const cJSON *p, const char *key, eng_event_t *out, cbm_error_t *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, key);
    if (v == NULL)
        return cbm_error_set(err, CBM_EJSON, "event %lld: missing %s", (long long)out->seq, key);
    out->json = cJSON_PrintUnformatted(v);
    return out->json != NULL ? 0 : cbm_error_set(err, CBM_ENOMEM, "out of memory");
}

/* p[key]: a step name (into *idx) or, when nullable, null (-1). */
static int get_step_ref(const cJSON *p, const char *key, bool nullable, const bp_blueprint_t *bp,
                        int *idx, eng_event_t *out, cbm_error_t *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, key);
    *idx = -1;
    if (nullable && cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v) || (*idx = bp_step_index(bp, v->valuestring)) < 0)
        return cbm_error_set(err, CBM_EJSON, "event %lld: %s is not a step of blueprint %s",
                             (long long)out->seq, key, bp->name);
    return 0;
}

/* p[key]: an array of step names, into out->set. */
static int get_set(const cJSON *p, const char *key, const bp_blueprint_t *bp, eng_event_t *out,
                   cbm_error_t *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(p, key), *it;
    int n = cJSON_GetArraySize(a);
    if (!cJSON_IsArray(a))
        return cbm_error_set(err, CBM_EJSON, "event %lld: missing %s", (long long)out->seq, key);
    if (n > 0 && (out->set = calloc((size_t)n, sizeof(*out->set))) == NULL)
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    cJSON_ArrayForEach(it, a) {
        int idx = cJSON_IsString(it) ? bp_step_index(bp, it->valuestring) : -1;
        if (idx < 0)
            return cbm_error_set(err, CBM_EJSON, "event %lld: %s names no step of blueprint %s",
                                 (long long)out->seq, key, bp->name);
        out->set[out->nset++] = idx;
    }
    return 0;
}

/* The routing events: the rule must exist and say what the payload says. */
static int decode_routing(const cJSON *p, const bp_blueprint_t *bp, eng_event_t *out,
                          cbm_error_t *err)
{
    const bp_step_t *s;
    const cJSON *r;
    int64_t v;
    int rc = get_step(p, bp, out, err);
    if (rc != 0) return rc;
    s = &bp->steps[out->step];
    out->target = -1;
    out->rule = -1;
    if (out->type == EV_BRANCH_TAKEN) {
        r = cJSON_GetObjectItemCaseSensitive(p, "entry");
        if (cJSON_IsNumber(r)) out->rule = r->valueint;
        if ((!cJSON_IsNull(r) && (out->rule < 0 || (size_t)out->rule >= s->nbranch)))
            return cbm_error_set(err, CBM_EJSON, "event %lld: step '%s' has no branch entry there",
                                 (long long)out->seq, s->name);
        if ((rc = get_step_ref(p, "to", true, bp, &out->target, out, err)) != 0) return rc;
        return get_set(p, "skipped", bp, out, err);
    }
    r = cJSON_GetObjectItemCaseSensitive(p, "rule");
    if (cJSON_IsNumber(r)) out->rule = r->valueint;
    if (out->rule < 0 || (size_t)out->rule >= s->ndiverge)
        return cbm_error_set(err, CBM_EJSON, "event %lld: step '%s' has no diverge rule there",
                             (long long)out->seq, s->name);
    out->action = (int)s->diverge[out->rule].action;
    r = cJSON_GetObjectItemCaseSensitive(p, "action");
    if (!cJSON_IsString(r) || strcmp(r->valuestring, bp_action_name(out->action)) != 0)
        return cbm_error_set(err, CBM_EJSON, "event %lld: action does not match diverge[%d] of "
                             "step '%s'", (long long)out->seq, out->rule, s->name);
    switch (out->action) {
    case BP_ACTION_RETRY:
    case BP_ACTION_BACK_TO:
        if ((rc = get_num(p, "iteration", 0, BP_MAX_ITERATIONS, &v, out, err)) != 0) return rc;
        out->iteration = (int)v;
        if ((rc = get_step_ref(p, "target", false, bp, &out->target, out, err)) != 0) return rc;
        return get_set(p, "reopened", bp, out, err);
    case BP_ACTION_SKIP_TO:
        if ((rc = get_step_ref(p, "target", false, bp, &out->target, out, err)) != 0) return rc;
        return get_set(p, "skipped", bp, out, err);
    default:
        return 0;
    }
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
    p = json_text_parse(payload, &rc);
    if (rc == CBM_ENOMEM) return cbm_error_set(err, rc, "event %lld: out of memory", (long long)seq);
    rc = 0;
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
        if ((out->blueprint = strdup(b->valuestring)) == NULL ||
            (out->version = strdup(v->valuestring)) == NULL) {
            rc = cbm_error_set(err, CBM_ENOMEM, "out of memory");
            break;
        }
        /* Inputs are always an object (bp_check_inputs, or a child's template). */
        if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(p, "inputs"))) {
            rc = cbm_error_set(err, CBM_EJSON, "event %lld: inputs is not an object",
                               (long long)seq);
            break;
        }
        rc = take_json(p, "inputs", out, err);
        if (rc == 0 && cJSON_GetObjectItemCaseSensitive(p, "parent") != NULL) {
            const cJSON *par = cJSON_GetObjectItemCaseSensitive(p, "parent");
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(par, "attempt");
            int64_t v = 0;
            if ((rc = take_str(par, "execution_id", &out->name, out, err)) == 0 &&
                (rc = take_str(par, "step", &out->text, out, err)) == 0 && cJSON_IsNumber(a) &&
                !json_int_in(a, 0, EV_MAX_ATTEMPT, &v))
                rc = cbm_error_set(err, CBM_EJSON, "event %lld: parent attempt out of range",
                                   (long long)seq);
            out->attempt = (int)v;
        }
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
        if ((rc = get_step(p, bp, out, err)) == 0)
            rc = get_time(p, "due_us", &out->due_us, out, err);
        break;
    case EV_SLEEP_STARTED:
        if ((rc = get_step(p, bp, out, err)) == 0 && (rc = take_json(p, "result", out, err)) == 0)
            rc = get_time(p, "until_us", &out->due_us, out, err);
        break;
    case EV_TIMER_FIRED:
        rc = take_str(p, "key", &out->name, out, err);
        break;
    case EV_DIVERGE_TAKEN:
    case EV_BRANCH_TAKEN:
        rc = decode_routing(p, bp, out, err);
        break;
    case EV_CHILD_STARTED: {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, "version");
        if ((rc = get_step(p, bp, out, err)) == 0 &&
            (rc = take_str(p, "child", &out->name, out, err)) == 0 &&
            (rc = take_str(p, "blueprint", &out->blueprint, out, err)) == 0 &&
            cJSON_IsString(v) && (out->version = strdup(v->valuestring)) == NULL)
            rc = cbm_error_set(err, CBM_ENOMEM, "out of memory");
        if (rc == 0) rc = take_json(p, "inputs", out, err);
        break;
    }
    case EV_CHILD_COMPLETED:
        if ((rc = get_step(p, bp, out, err)) == 0 &&
            (rc = take_str(p, "child", &out->name, out, err)) == 0 &&
            (rc = take_str(p, "status", &out->text, out, err)) == 0)
            rc = take_json(p, strcmp(out->text, "completed") == 0 ? "result" : "error", out, err);
        break;
    case EV_APPROVAL_REQUESTED:
        if ((rc = get_step(p, bp, out, err)) == 0 &&
            (rc = take_str(p, "type", &out->name, out, err)) == 0 &&
            (rc = take_json(p, "data", out, err)) == 0 &&
            (rc = get_num(p, "timeout_ms", 0, EV_MAX_TIME_US / 1000, &out->timeout_ms, out,
                          err)) == 0)
            rc = get_time(p, "deadline_us", &out->due_us, out, err);
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
        if (rc == 0 && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(p, "key")))
            rc = take_str(p, "key", &out->text, out, err); /* optional */
        break;
    case EV_CANCEL_REQUESTED:
    case EV_EXECUTION_CANCELLED:
        rc = take_str(p, "reason", &out->text, out, err);
        break;
    case EV_RESULT_IGNORED:
        if ((rc = get_step(p, bp, out, err)) == 0)
            rc = take_str(p, "reason", &out->text, out, err);
        break;
    default:
        break;
    }
    cJSON_Delete(p);
    if (rc != 0) ev_finish(out);
    return rc;
}
