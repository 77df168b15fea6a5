/*
 * bp_canonical.c - pass 7: the canonical JSON, printed from the model, and its
 * SHA-256 (the version).
 */
#include <assert.h>
#include <cJSON.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/blueprint_internal.h"
#include "engine/match.h"

/* ------------------------------------------------------------------------ */
/* Pass 7: canonical JSON and version                                       */
/* ------------------------------------------------------------------------ */

/* Integers are printed by us, not as cJSON doubles: "%1.15g" would turn
 * 1000000000000000 into 1e+15. */
static bool add_int(cJSON *obj, const char *key, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    return cJSON_AddRawToObject(obj, key, buf) != NULL;
}

/* Add a copy of a (canonical) tree the blueprint owns. */
static bool add_copy(cJSON *obj, const char *key, const cJSON *v)
{
    cJSON *c = cJSON_Duplicate(v, true);
    if (c == NULL) return false;
    if (!cJSON_AddItemToObject(obj, key, c)) {
        cJSON_Delete(c);
        return false;
    }
    return true;
}

static bool add_to_array(cJSON *arr, cJSON *item)
{
    if (item == NULL) return false;
    if (!cJSON_AddItemToArray(arr, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

/* A retry policy as {"max_attempts", "initial_ms", "max_ms", "multiplier",
 * "non_retryable"}, every field written. */
static bool add_retry(cJSON *o, const char *key, const bp_retry_t *r)
{
    cJSON *retry, *nr;
    if ((retry = cJSON_AddObjectToObject(o, key)) == NULL ||
        !add_int(retry, "max_attempts", r->max_attempts) ||
        !add_int(retry, "initial_ms", r->initial_ms) || !add_int(retry, "max_ms", r->max_ms) ||
        !cJSON_AddNumberToObject(retry, "multiplier", r->multiplier) ||
        (nr = cJSON_AddArrayToObject(retry, "non_retryable")) == NULL)
        return false;
    for (size_t k = 0; k < r->n_non_retryable; k++)
        if (!add_to_array(nr, cJSON_CreateString(r->non_retryable[k]))) return false;
    return true;
}

/* An integer, or null for 0 (a bound or a count not set). */
static bool add_int_or_null(cJSON *o, const char *key, int64_t v)
{
    return v > 0 ? add_int(o, key, v) : cJSON_AddNullToObject(o, key) != NULL;
}

/* The deliberation kind's fields, every one written with its default, so
 * that steps that mean the same have the same version. Only the model
 * overrides that are set are written: an absent one means "the council's". */
static bool canonical_delib(const bp_step_t *s, cJSON *o)
{
    const bp_delib_t *d = s->delib;
    cJSON *obj;
    if (!cJSON_AddStringToObject(o, "council", d->council) ||
        !(d->council_version != NULL ? cJSON_AddStringToObject(o, "council_version",
                                                               d->council_version) != NULL
                                     : cJSON_AddNullToObject(o, "council_version") != NULL) ||
        !add_copy(o, "task", d->task) || !add_copy(o, "context", d->context) ||
        !add_int_or_null(o, "agents", d->agents) || !add_int(o, "rounds", d->rounds) ||
        !cJSON_AddStringToObject(o, "topology", bp_topology_names[d->topology]))
        return false;
    if ((obj = cJSON_AddObjectToObject(o, "scoring")) == NULL ||
        !cJSON_AddStringToObject(obj, "mode", bp_scoring_names[d->scoring]))
        return false;
    if (d->scoring_handler != NULL &&
        (!cJSON_AddStringToObject(obj, "handler", d->scoring_handler) ||
         !cJSON_AddStringToObject(obj, "queue", d->scoring_queue)))
        return false;
    if ((obj = cJSON_AddObjectToObject(o, "selection")) == NULL ||
        !cJSON_AddStringToObject(obj, "rule", bp_selection_names[d->rule]) ||
        !add_int(obj, "top_k", d->top_k) || !add_int(obj, "min_proposals", d->min_proposals) ||
        (d->threshold >= 0 && !cJSON_AddNumberToObject(obj, "threshold", d->threshold)))
        return false;
    if ((obj = cJSON_AddObjectToObject(o, "model")) == NULL ||
        (d->temperature >= 0 && !cJSON_AddNumberToObject(obj, "temperature", d->temperature)) ||
        (d->top_p >= 0 && !cJSON_AddNumberToObject(obj, "top_p", d->top_p)) ||
        (d->max_tokens > 0 && !add_int(obj, "max_tokens", d->max_tokens)) ||
        (d->response_format != NULL && !add_copy(obj, "response_format", d->response_format)))
        return false;
    if ((obj = cJSON_AddObjectToObject(o, "call")) == NULL ||
        !add_int(obj, "timeout_ms", d->call_timeout_ms) ||
        !add_int(obj, "heartbeat_timeout_ms", d->call_heartbeat_timeout_ms) ||
        !add_retry(obj, "retry", &d->call_retry))
        return false;
    if ((obj = cJSON_AddObjectToObject(o, "budget")) == NULL ||
        !add_int_or_null(obj, "max_calls", d->max_calls) ||
        !add_int_or_null(obj, "max_completion_tokens", d->max_completion_tokens) ||
        !add_int(obj, "timeout_ms", d->budget_timeout_ms))
        return false;
    return true;
}

/* The fields added after the first release: printed only when a blueprint
 * uses them (or differs from their default), so that every blueprint that
 * does not keeps its canonical JSON and version. */
static bool canonical_extras(const bp_blueprint_t *bp, const bp_step_t *s, cJSON *o)
{
    cJSON *arr, *obj;
    if (s->heartbeat_timeout_ms > 0 && !add_int(o, "heartbeat_timeout_ms", s->heartbeat_timeout_ms))
        return false;
    if (s->nrequires > 0) {
        if ((obj = cJSON_AddObjectToObject(o, "requires")) == NULL) return false;
        for (size_t k = 0; k < s->nrequires; k++)
            if (!cJSON_AddStringToObject(obj, s->requires[k].key, s->requires[k].value))
                return false;
    }
    if (s->sleep_ms >= 0 && !add_int(o, "duration_ms", s->sleep_ms)) return false;
    if (s->sleep_until_us >= 0) {
        char t[32];
        bp_format_time(s->sleep_until_us, t);
        if (!cJSON_AddStringToObject(o, "until", t)) return false;
    }
    if (s->approval_type != NULL && strcmp(s->approval_type, s->name) != 0 &&
        !cJSON_AddStringToObject(o, "approval_type", s->approval_type))
        return false;
    if (s->signal != NULL && strcmp(s->signal, s->name) != 0 &&
        !cJSON_AddStringToObject(o, "signal", s->signal))
        return false;
    if (s->sub_blueprint != NULL && !cJSON_AddStringToObject(o, "blueprint", s->sub_blueprint))
        return false;
    if (s->sub_version != NULL && !cJSON_AddStringToObject(o, "version", s->sub_version))
        return false;
    if (s->sub_inputs != NULL && !add_copy(o, "inputs", s->sub_inputs)) return false;
    if (s->ndiverge > 0) {
        if ((arr = cJSON_AddArrayToObject(o, "diverge")) == NULL) return false;
        for (size_t k = 0; k < s->ndiverge; k++) {
            const bp_diverge_t *d = &s->diverge[k];
            if (!add_to_array(arr, obj = cJSON_CreateObject()) || !add_copy(obj, "match", d->match) ||
                !cJSON_AddStringToObject(obj, "on", d->on == BP_ON_ERROR ? "error" : "result") ||
                !cJSON_AddStringToObject(obj, "action", bp_action_names[d->action]))
                return false;
            if (d->target >= 0 &&
                !cJSON_AddStringToObject(obj, "target", bp->steps[d->target].name))
                return false;
            if (d->max_iterations > 0 && !add_int(obj, "max_iterations", d->max_iterations))
                return false;
        }
    }
    if (s->nbranch > 0) {
        if ((arr = cJSON_AddArrayToObject(o, "branch")) == NULL) return false;
        for (size_t k = 0; k < s->nbranch; k++) {
            const bp_branch_t *b = &s->branch[k];
            if (!add_to_array(arr, obj = cJSON_CreateObject())) return false;
            if (b->when == NULL) {
                if (!cJSON_AddStringToObject(obj, "otherwise", bp->steps[b->to].name)) return false;
            } else if (!add_copy(obj, "when", b->when) ||
                       !cJSON_AddStringToObject(obj, "to", bp->steps[b->to].name)) {
                return false;
            }
        }
    }
    if (s->args != NULL && !add_copy(o, "args", s->args)) return false;
    if (s->delib != NULL && !canonical_delib(s, o)) return false;
    return true;
}

static cJSON *canonical_step(const bp_blueprint_t *bp, const bp_step_t *s)
{
    cJSON *o = cJSON_CreateObject(), *deps;
    if (o == NULL) return NULL;
    if (!cJSON_AddStringToObject(o, "name", s->name) ||
        !cJSON_AddStringToObject(o, "kind", bp_kind_names[s->kind]) ||
        !cJSON_AddStringToObject(o, "handler", s->handler) ||
        !cJSON_AddStringToObject(o, "queue", s->queue) ||
        (deps = cJSON_AddArrayToObject(o, "depends_on")) == NULL)
        goto fail;
    for (size_t k = 0; k < s->ndeps; k++)
        if (!add_to_array(deps, cJSON_CreateString(bp->steps[s->deps[k]].name))) goto fail;
    if (!add_int(o, "timeout_ms", s->timeout_ms) || !add_retry(o, "retry", &s->retry) ||
        !canonical_extras(bp, s, o))
        goto fail;
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

/* "inputs": {"<name>": {"type"?, "required", "default"?}, ...} in name order. */
static bool canonical_inputs(const bp_blueprint_t *bp, cJSON *root)
{
    cJSON *ins = cJSON_AddObjectToObject(root, "inputs"), *o;
    if (ins == NULL) return false;
    for (size_t i = 0; i < bp->ninputs; i++) {
        const bp_input_t *in = &bp->inputs[i];
        if ((o = cJSON_AddObjectToObject(ins, in->name)) == NULL) return false;
        if (in->type != BP_IN_ANY &&
            !cJSON_AddStringToObject(o, "type", bp_input_type_names[in->type]))
            return false;
        if (!cJSON_AddBoolToObject(o, "required", in->required)) return false;
        if (in->default_value != NULL && !add_copy(o, "default", in->default_value)) return false;
    }
    return true;
}

int bp_make_canonical(parser_t *p)
{
    bp_blueprint_t *bp = p->bp;
    cJSON *root = cJSON_CreateObject(), *steps;

    if (root == NULL || !cJSON_AddStringToObject(root, "name", bp->name) ||
        (bp->inputs_declared && !canonical_inputs(bp, root)) ||
        (bp->timeout_ms > 0 && !cJSON_AddNumberToObject(root, "timeout_ms", (double)bp->timeout_ms)) ||
        (steps = cJSON_AddArrayToObject(root, "steps")) == NULL)
        goto fail;
    for (size_t i = 0; i < bp->nsteps; i++)
        if (!add_to_array(steps, canonical_step(bp, &bp->steps[i]))) goto fail;
    bp->canonical_json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    root = NULL;
    if (bp->canonical_json == NULL) goto fail;

    if (cbm_sha256_hex(bp->canonical_json, strlen(bp->canonical_json), bp->version) != 0)
        goto fail;
    return 0;
fail:
    cJSON_Delete(root);
    return bp_oom(p);
}

