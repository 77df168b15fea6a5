/*
 * bp_delib.c - pass 2 of the blueprint parser for the fields of a
 * deliberation step (docs/deliberation.md, docs/blueprints.md
 * "deliberation"): council, templates, agents and rounds, topology, scoring,
 * selection, model overrides, call settings and budget, then what the kind
 * requires of them together, the budget included when the number of agents
 * is known. The references of the task and context templates are checked
 * against the step's dependencies in pass 6 (bp_graph.c), the canonical form
 * printed in pass 7 (bp_canonical.c).
 */
#include <assert.h>
#include <cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/blueprint_internal.h"
#include "engine/delib.h"

const char *const bp_delib_scoring_keys[] = {"mode", "handler", "queue", NULL};
const char *const bp_delib_selection_keys[] = {"rule", "top_k", "min_proposals", "threshold",
                                               NULL};
const char *const bp_delib_model_keys[] = {"temperature", "top_p", "max_tokens",
                                           "response_format", NULL};
const char *const bp_delib_call_keys[] = {"timeout_ms", "heartbeat_timeout_ms", "retry", NULL};
const char *const bp_delib_budget_keys[] = {"max_calls", "max_completion_tokens", "timeout_ms",
                                            NULL};
const char *const bp_topology_names[] = {[BP_TOPOLOGY_NONE] = "none",
                                         [BP_TOPOLOGY_RING] = "ring",
                                         [BP_TOPOLOGY_ALL_TO_ALL] = "all_to_all", NULL};
const char *const bp_scoring_names[] = {[BP_SCORING_JUDGE] = "judge",
                                        [BP_SCORING_HANDLER] = "handler",
                                        [BP_SCORING_NONE] = "none", NULL};
const char *const bp_selection_names[] = {[BP_SELECT_TOP_SCORE] = "top_score",
                                          [BP_SELECT_THRESHOLD_FIRST] = "threshold_first",
                                          [BP_SELECT_APPROVAL] = "approval",
                                          [BP_SELECT_ALL] = "all", NULL};

#define MAX_CALLS_MAX 100000
#define MAX_TOKENS_MAX 1000000
#define MAX_COMPLETION_TOKENS_MAX 1000000000
#define TOP_K_DEFAULT 3

void bp_delib_free(bp_delib_t *d)
{
    if (d == NULL) return;
    cJSON_free(d->council);
    cJSON_free(d->council_version);
    cJSON_Delete(d->task);
    cJSON_Delete(d->context);
    cJSON_free(d->scoring_handler);
    cJSON_free(d->scoring_queue);
    cJSON_Delete(d->response_format);
    for (size_t i = 0; i < d->call_retry.n_non_retryable; i++)
        cJSON_free(d->call_retry.non_retryable[i]);
    cJSON_free(d->call_retry.non_retryable);
    cJSON_free(d);
}

/* One of names (NULL-terminated), or -1. */
static int name_index(const cJSON *item, const char *const *names)
{
    if (!cJSON_IsString(item)) return -1;
    for (int i = 0; names[i] != NULL; i++)
        if (strcmp(item->valuestring, names[i]) == 0) return i;
    return -1;
}

/* An object field of the step: checked for its keys; label "step 'd': x". */
static int sub_object(parser_t *p, const cJSON *it, const char *label, const char *field,
                      const char *const *keys, char *sublabel, size_t size)
{
    if (!cJSON_IsObject(it))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: %s must be an object", label, field);
    snprintf(sublabel, size, "%s: %s", label, field);
    return bp_check_keys(it, keys, sublabel, p->err);
}

/* A number in [min, max] (min excluded when open_min). */
static int get_number(parser_t *p, const cJSON *it, const char *label, const char *field,
                      double min, bool open_min, double max, double *out)
{
    double v = cJSON_IsNumber(it) ? it->valuedouble : NAN;
    if (!isfinite(v) || v < min || (open_min && v == min) || v > max) {
        if (open_min)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: %s must be a number greater than %g and at most %g", label,
                                 field, min, max);
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: %s must be a number from %g to %g",
                             label, field, min, max);
    }
    *out = v;
    return 0;
}

/* An integer in [min, max], or null (*out left as it is: the default). */
static int get_int_or_null(parser_t *p, const cJSON *it, const char *label, const char *field,
                           int64_t min, int64_t max, int64_t *out)
{
    if (cJSON_IsNull(it)) return 0;
    return bp_get_int(it, label, field, min, max, out, p->err);
}

static int parse_template_field(parser_t *p, const cJSON *it, const char *label,
                                const char *field, cJSON **out)
{
    int rc;
    if ((rc = bp_canon_field(p, it, label, field, out)) != 0) return rc;
    return bp_check_template_syntax(p, *out, label, field);
}

static int parse_scoring(parser_t *p, const cJSON *obj, const char *label, bp_delib_t *d)
{
    char sl[NAME_MAX_LEN + 32];
    const cJSON *it;
    int rc, k;
    if ((rc = sub_object(p, obj, label, "scoring", bp_delib_scoring_keys, sl, sizeof(sl))) != 0)
        return rc;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "mode")) != NULL) {
        if ((k = name_index(it, bp_scoring_names)) < 0)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: scoring.mode must be judge, handler or none", label);
        d->scoring = (bp_scoring_t)k;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "handler")) != NULL) {
        if (d->scoring != BP_SCORING_HANDLER)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: scoring.handler is only for mode handler", label);
        if ((rc = bp_get_ident(it, label, "scoring.handler", false, &d->scoring_handler, p)) != 0)
            return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "queue")) != NULL) {
        if (d->scoring != BP_SCORING_HANDLER)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: scoring.queue is only for mode handler", label);
        if ((rc = bp_get_ident(it, label, "scoring.queue", true, &d->scoring_queue, p)) != 0)
            return rc;
    }
    if (d->scoring == BP_SCORING_HANDLER) {
        if (d->scoring_handler == NULL)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: scoring.handler is required for mode handler", label);
        if (d->scoring_queue == NULL && (d->scoring_queue = bp_xstrdup(DEFAULT_QUEUE)) == NULL)
            return bp_oom(p);
    }
    return 0;
}

static int parse_selection(parser_t *p, const cJSON *obj, const char *label, bp_delib_t *d)
{
    char sl[NAME_MAX_LEN + 32];
    const cJSON *it;
    int64_t v;
    int rc, k;
    if ((rc = sub_object(p, obj, label, "selection", bp_delib_selection_keys, sl, sizeof(sl))) !=
        0)
        return rc;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "rule")) != NULL) {
        if ((k = name_index(it, bp_selection_names)) < 0)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: selection.rule must be top_score, threshold_first, approval "
                                 "or all",
                                 label);
        d->rule = (bp_selection_t)k;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "top_k")) != NULL) {
        rc = bp_get_int(it, label, "selection.top_k", 1, BP_DELIB_MAX_AGENTS, &v, p->err);
        if (rc != 0) return rc;
        d->top_k = (int)v;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "min_proposals")) != NULL) {
        rc = bp_get_int(it, label, "selection.min_proposals", 1, BP_DELIB_MAX_AGENTS, &v, p->err);
        if (rc != 0) return rc;
        d->min_proposals = (int)v;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "threshold")) != NULL) {
        if (d->rule != BP_SELECT_THRESHOLD_FIRST)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: selection.threshold is only for rule threshold_first", label);
        if ((rc = get_number(p, it, label, "selection.threshold", 0, false, 1, &d->threshold)) != 0)
            return rc;
    }
    if (d->rule == BP_SELECT_THRESHOLD_FIRST && d->threshold < 0)
        return cbm_error_set(p->err, CBM_EBLUEPRINT,
                             "%s: selection.threshold is required for rule threshold_first", label);
    return 0;
}

static int parse_model(parser_t *p, const cJSON *obj, const char *label, bp_delib_t *d)
{
    char sl[NAME_MAX_LEN + 32];
    const cJSON *it;
    int rc;
    if ((rc = sub_object(p, obj, label, "model", bp_delib_model_keys, sl, sizeof(sl))) != 0)
        return rc;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "temperature")) != NULL &&
        (rc = get_number(p, it, label, "model.temperature", 0, false, 2, &d->temperature)) != 0)
        return rc;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "top_p")) != NULL &&
        (rc = get_number(p, it, label, "model.top_p", 0, true, 1, &d->top_p)) != 0)
        return rc;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "max_tokens")) != NULL &&
        (rc = bp_get_int(it, label, "model.max_tokens", 1, MAX_TOKENS_MAX, &d->max_tokens,
                         p->err)) != 0)
        return rc;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "response_format")) != NULL) {
        if (!cJSON_IsObject(it))
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: model.response_format must be an object", label);
        if ((rc = bp_canon_field(p, it, label, "model.response_format", &d->response_format)) != 0)
            return rc;
    }
    return 0;
}

static int parse_call(parser_t *p, const cJSON *obj, const char *label, bp_delib_t *d)
{
    char sl[NAME_MAX_LEN + 32];
    const cJSON *it;
    int rc;
    if ((rc = sub_object(p, obj, label, "call", bp_delib_call_keys, sl, sizeof(sl))) != 0)
        return rc;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "timeout_ms")) != NULL &&
        (rc = bp_get_ms(it, label, "call.timeout_ms", 0, &d->call_timeout_ms, p->err)) != 0)
        return rc;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "heartbeat_timeout_ms")) != NULL) {
        rc = bp_get_ms(it, label, "call.heartbeat_timeout_ms", 0, &d->call_heartbeat_timeout_ms,
                       p->err);
        if (rc != 0) return rc;
        if (d->call_timeout_ms > 0 && d->call_heartbeat_timeout_ms > d->call_timeout_ms)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: call.heartbeat_timeout_ms (%" PRId64
                                 ") must be at most call.timeout_ms (%" PRId64 ")",
                                 label, d->call_heartbeat_timeout_ms, d->call_timeout_ms);
    }
    /* The messages of the retry object read "step 'd': call: retry.…". */
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "retry")) != NULL &&
        (rc = bp_parse_retry(it, sl, &d->call_retry, p)) != 0)
        return rc;
    return 0;
}

static int parse_budget(parser_t *p, const cJSON *obj, const char *label, bp_delib_t *d)
{
    char sl[NAME_MAX_LEN + 32];
    const cJSON *it;
    int rc;
    if ((rc = sub_object(p, obj, label, "budget", bp_delib_budget_keys, sl, sizeof(sl))) != 0)
        return rc;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "max_calls")) != NULL &&
        (rc = get_int_or_null(p, it, label, "budget.max_calls", 1, MAX_CALLS_MAX, &d->max_calls)) !=
            0)
        return rc;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "max_completion_tokens")) != NULL &&
        (rc = get_int_or_null(p, it, label, "budget.max_completion_tokens", 1,
                              MAX_COMPLETION_TOKENS_MAX, &d->max_completion_tokens)) != 0)
        return rc;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "timeout_ms")) != NULL &&
        (rc = bp_get_ms(it, label, "budget.timeout_ms", 0, &d->budget_timeout_ms, p->err)) != 0)
        return rc;
    return 0;
}

/* The fields, in the order of bp_step_fields; checks that need several of
 * them wait for bp_finish_delib. */
int bp_parse_delib(parser_t *p, const cJSON *obj, const char *label, bp_step_t *s)
{
    bp_delib_t *d;
    const cJSON *it;
    int64_t v;
    int rc, k;

    assert(s->delib == NULL);
    if ((d = s->delib = bp_xcalloc(1, sizeof(*d))) == NULL) return bp_oom(p);
    d->rounds = -1; /* not given: depends on the topology */
    d->topology = BP_TOPOLOGY_RING;
    d->scoring = BP_SCORING_JUDGE;
    d->rule = BP_SELECT_TOP_SCORE;
    d->top_k = TOP_K_DEFAULT;
    d->min_proposals = 1;
    d->threshold = -1;
    d->temperature = -1;
    d->top_p = -1;
    d->call_retry.max_attempts = DEFAULT_MAX_ATTEMPTS;
    d->call_retry.initial_ms = DEFAULT_INITIAL_MS;
    d->call_retry.max_ms = DEFAULT_MAX_MS;
    d->call_retry.multiplier = DEFAULT_MULTIPLIER;

    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "council")) != NULL &&
        (rc = bp_get_ident(it, label, "council", true, &d->council, p)) != 0)
        return rc;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "council_version")) != NULL &&
        !cJSON_IsNull(it)) {
        bool ok = cJSON_IsString(it) && strlen(it->valuestring) == 64;
        for (size_t i = 0; ok && i < 64; i++) {
            char c = it->valuestring[i];
            ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        }
        if (!ok)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: council_version must be a council version (64 lowercase hex "
                                 "digits) or null",
                                 label);
        if ((d->council_version = bp_xstrdup(it->valuestring)) == NULL) return bp_oom(p);
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "task")) != NULL) {
        if (cJSON_IsNull(it))
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: task must not be null", label);
        if ((rc = parse_template_field(p, it, label, "task", &d->task)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "context")) != NULL) {
        if ((rc = parse_template_field(p, it, label, "context", &d->context)) != 0) return rc;
    } else if ((d->context = cJSON_CreateNull()) == NULL) {
        return bp_oom(p);
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "agents")) != NULL && !cJSON_IsNull(it)) {
        if ((rc = bp_get_int(it, label, "agents", 1, BP_DELIB_MAX_AGENTS, &v, p->err)) != 0)
            return rc;
        d->agents = (int)v;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "rounds")) != NULL) {
        if ((rc = bp_get_int(it, label, "rounds", 0, BP_DELIB_MAX_ROUNDS, &v, p->err)) != 0)
            return rc;
        d->rounds = (int)v;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "topology")) != NULL) {
        if ((k = name_index(it, bp_topology_names)) < 0)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: topology must be none, ring or all_to_all", label);
        d->topology = (bp_topology_t)k;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "scoring")) != NULL &&
        (rc = parse_scoring(p, it, label, d)) != 0)
        return rc;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "selection")) != NULL &&
        (rc = parse_selection(p, it, label, d)) != 0)
        return rc;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "model")) != NULL &&
        (rc = parse_model(p, it, label, d)) != 0)
        return rc;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "call")) != NULL &&
        (rc = parse_call(p, it, label, d)) != 0)
        return rc;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "budget")) != NULL &&
        (rc = parse_budget(p, it, label, d)) != 0)
        return rc;
    return 0;
}

/* What the kind requires of its fields together, after they are parsed. */
int bp_finish_delib(parser_t *p, const char *label, bp_step_t *s)
{
    bp_delib_t *d = s->delib;
    size_t namelen;

    assert(d != NULL);
    if (d->council == NULL)
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: deliberation needs council", label);
    if (d->task == NULL)
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: deliberation needs task", label);
    if (d->rounds < 0) d->rounds = d->topology == BP_TOPOLOGY_NONE ? 0 : 1;
    if (d->topology == BP_TOPOLOGY_NONE && d->rounds > 0)
        return cbm_error_set(p->err, CBM_EBLUEPRINT,
                             "%s: topology none has no rounds (rounds is %d)", label, d->rounds);
    if (d->topology != BP_TOPOLOGY_NONE && d->agents == 1)
        return cbm_error_set(p->err, CBM_EBLUEPRINT,
                             "%s: topology %s needs at least 2 agents (agents is 1)", label,
                             bp_topology_names[d->topology]);
    if ((d->rule == BP_SELECT_TOP_SCORE || d->rule == BP_SELECT_THRESHOLD_FIRST) &&
        d->scoring == BP_SCORING_NONE)
        return cbm_error_set(p->err, CBM_EBLUEPRINT,
                             "%s: selection rule %s needs scoring (scoring.mode is none)", label,
                             bp_selection_names[d->rule]);
    if (d->agents > 0 && d->min_proposals > d->agents)
        return cbm_error_set(p->err, CBM_EBLUEPRINT,
                             "%s: selection.min_proposals (%d) must be at most agents (%d)", label,
                             d->min_proposals, d->agents);
    /* The child's blueprint is named after this one and the step. */
    namelen = strlen(DELIB_NAME_PREFIX) + strlen(p->bp->name) + 1 + strlen(s->name);
    if (namelen > NAME_MAX_LEN)
        return cbm_error_set(p->err, CBM_EBLUEPRINT,
                             "%s: the name of the deliberation's blueprint, '%s%s.%s', would be "
                             "longer than %d characters",
                             label, DELIB_NAME_PREFIX, p->bp->name, s->name, NAME_MAX_LEN);
    if (d->agents > 0 && delib_check_budget(s, d->agents, d->max_tokens, p->err) != 0)
        return p->err != NULL ? (p->err->code = CBM_EBLUEPRINT) : CBM_EBLUEPRINT;
    return 0;
}
