/*
 * bp_step.c - pass 2 of the blueprint parser: one step on its own (keys for its
 * kind, field types, retry, kind fields, diverge rules, branch entries,
 * conditions, input templates).
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
/* Pass 2: one step                                                         */
/* ------------------------------------------------------------------------ */

/* "a, b and c" of the kinds in mask. */
static void kinds_text(unsigned mask, char *buf, size_t size)
{
    size_t used = 0, n = 0, total = 0;
    for (size_t k = 0; k < NKINDS; k++) total += (mask >> k) & 1u;
    buf[0] = '\0';
    for (size_t k = 0; k < NKINDS; k++) {
        if (!((mask >> k) & 1u)) continue;
        int w = snprintf(buf + used, size - used, "%s%s", n == 0 ? "" : n + 1 == total ? " and " : ", ",
                         bp_kind_names[k]);
        if (w < 0 || (size_t)w >= size - used) return;
        used += (size_t)w;
        n++;
    }
}

/* The step's keys: each known, allowed for the step's kind, given once. */
static int check_step_keys(const cJSON *obj, bp_step_kind_t kind, const char *label,
                           cbm_error_t *err)
{
    uint64_t seen = 0;
    const cJSON *it;
    _Static_assert(NSTEP_FIELDS <= 64, "the step's keys fit the mask");
    cJSON_ArrayForEach(it, obj) {
        size_t k;
        for (k = 0; k < NSTEP_FIELDS; k++)
            if (strcmp(it->string, bp_step_fields[k].key) == 0) break;
        if (k == NSTEP_FIELDS) {
            char list[400] = "";
            size_t used = 0;
            for (size_t j = 0; j < NSTEP_FIELDS; j++) {
                if (!(bp_step_fields[j].kinds & KIND_BIT(kind))) continue;
                int n = snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "",
                                 bp_step_fields[j].key);
                if (n < 0 || (size_t)n >= sizeof(list) - used) break;
                used += (size_t)n;
            }
            return cbm_error_set(err, CBM_EBLUEPRINT, "%s: unknown key '%.64s' (allowed: %s)",
                                 label, it->string, list);
        }
        if (!(bp_step_fields[k].kinds & KIND_BIT(kind))) {
            char kinds[128];
            kinds_text(bp_step_fields[k].kinds, kinds, sizeof(kinds));
            return cbm_error_set(err, CBM_EBLUEPRINT, "%s: %s is only for kind%s %s", label,
                                 bp_step_fields[k].key,
                                 (bp_step_fields[k].kinds & (bp_step_fields[k].kinds - 1)) ? "s" : "",
                                 kinds);
        }
        if (seen & (UINT64_C(1) << k))
            return cbm_error_set(err, CBM_EBLUEPRINT, "%s: duplicate key '%s'", label,
                                 bp_step_fields[k].key);
        seen |= UINT64_C(1) << k;
    }
    return 0;
}

static int cmp_capability(const void *a, const void *b)
{
    return strcmp(((const bp_capability_t *)a)->key, ((const bp_capability_t *)b)->key);
}

/* requires: {"name": "value", ...}, stored sorted by name. */
static int parse_requires(parser_t *p, const cJSON *obj, const char *label, bp_step_t *s)
{
    const cJSON *it;
    size_t n = 0;

    if (!cJSON_IsObject(obj))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: requires must be an object of strings",
                             label);
    cJSON_ArrayForEach(it, obj) n++;
    if (n == 0) return 0;
    if ((s->requires = bp_xcalloc(n, sizeof(bp_capability_t))) == NULL) return bp_oom(p);
    cJSON_ArrayForEach(it, obj) {
        const char *k = it->string;
        if (k[0] == '\0')
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: requires: capability name is empty",
                                 label);
        if (strlen(k) > NAME_MAX_LEN || !bp_name_chars_ok(k))
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: requires: capability name '%.64s' must be 1 to 128 letters, "
                                 "digits, '_', '.' or '-'",
                                 label, k);
        if (!cJSON_IsString(it))
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: requires.%s must be a string", label,
                                 k);
        if (strlen(it->valuestring) > NAME_MAX_LEN)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: requires.%s is longer than %d characters", label, k,
                                 NAME_MAX_LEN);
        for (const char *c = it->valuestring; *c != '\0'; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "%s: requires.%s contains a control character", label, k);
        bp_capability_t *cap = &s->requires[s->nrequires];
        if ((cap->key = bp_xstrdup(k)) == NULL) return bp_oom(p);
        s->nrequires++;
        if ((cap->value = bp_xstrdup(it->valuestring)) == NULL) return bp_oom(p);
    }
    qsort(s->requires, s->nrequires, sizeof(bp_capability_t), cmp_capability);
    for (size_t i = 1; i < s->nrequires; i++)
        if (strcmp(s->requires[i - 1].key, s->requires[i].key) == 0)
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: requires: duplicate capability '%s'",
                                 label, s->requires[i].key);
    return 0;
}

/* args: a constant object, kept canonical with its text (the decider copies
 * the text into the step's input). */
static int parse_args(parser_t *p, const cJSON *obj, const char *label, bp_step_t *s)
{
    int rc;
    if (!cJSON_IsObject(obj))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: args must be an object", label);
    if ((rc = bp_canon_field(p, obj, label, "args", &s->args)) != 0) return rc;
    if ((s->args_json = cJSON_PrintUnformatted(s->args)) == NULL) return bp_oom(p);
    if (strlen(s->args_json) > BP_MAX_ARGS_BYTES)
        return cbm_error_set(p->err, CBM_EBLUEPRINT,
                             "%s: args is larger than %d bytes (as canonical JSON)", label,
                             BP_MAX_ARGS_BYTES);
    return 0;
}

/* A template reference "$.inputs[.path]" or "$.deps.<step>[path]"; on
 * success step and step_len name the step of a deps reference (length 0 for
 * an inputs reference), and input and input_len the first key after inputs
 * (length 0 for "$.inputs" itself). */
bool bp_reference_parts(const char *ref, const char **step, size_t *step_len,
                        const char **input, size_t *input_len)
{
    const char *r = ref + 2;
    *step_len = *input_len = 0;
    if (!json_path_valid(r) || strlen(r) > MATCH_PATH_MAX) return false;
    if (strncmp(r, "inputs", 6) == 0 && (r[6] == '\0' || r[6] == '.')) {
        if (r[6] == '.') {
            *input = r + 7;
            while ((*input)[*input_len] != '\0' && (*input)[*input_len] != '.' &&
                   (*input)[*input_len] != '[')
                (*input_len)++;
        }
        return true;
    }
    if (strncmp(r, "deps.", 5) == 0) {
        *step = r + 5;
        while ((*step)[*step_len] != '\0' && (*step)[*step_len] != '.' &&
               (*step)[*step_len] != '[')
            (*step_len)++;
        return *step_len > 0;
    }
    return false;
}

/* Every reference in the template: syntax only (pass 2). field: the key the
 * template is under ("inputs", "task", "context"). */
int bp_check_template_syntax(parser_t *p, const cJSON *t, const char *label, const char *field)
{
    const cJSON *it;
    int rc;
    if (cJSON_IsString(t) && match_is_reference(t->valuestring)) {
        const char *a, *b;
        size_t la, lb;
        if (!bp_reference_parts(t->valuestring, &a, &la, &b, &lb))
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: %s: malformed reference '%.64s' (expected $.inputs or "
                                 "$.deps.<step>, then an optional path)",
                                 label, field, t->valuestring);
        return 0;
    }
    cJSON_ArrayForEach(it, t) {
        if ((rc = bp_check_template_syntax(p, it, label, field)) != 0) return rc;
    }
    return 0;
}

static int parse_template(parser_t *p, const cJSON *obj, const char *label, bp_step_t *s)
{
    int rc;
    if (!cJSON_IsObject(obj))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: inputs must be an object", label);
    if (obj->child == NULL) return 0; /* {} is what a child gets without a template */
    if ((rc = bp_canon_field(p, obj, label, "inputs", &s->sub_inputs)) != 0) return rc;
    if ((rc = bp_check_template_syntax(p, s->sub_inputs, label, "inputs")) != 0) return rc;
    if ((s->sub_inputs_json = cJSON_PrintUnformatted(s->sub_inputs)) == NULL) return bp_oom(p);
    return 0;
}

static int parse_diverge(parser_t *p, const cJSON *arr, const char *label, bp_step_t *s)
{
    const cJSON *r;
    size_t n = 0;
    int rc;

    if (!cJSON_IsArray(arr))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: diverge must be an array of rules",
                             label);
    cJSON_ArrayForEach(r, arr) n++;
    if (n == 0) return 0;
    if (n > MAX_RULES)
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: diverge has more than %d rules", label,
                             MAX_RULES);
    if ((s->diverge = bp_xcalloc(n, sizeof(bp_diverge_t))) == NULL) return bp_oom(p);
    cJSON_ArrayForEach(r, arr) {
        char rl[NAME_MAX_LEN + 48];
        size_t i = s->ndiverge;
        bp_diverge_t *d = &s->diverge[i];
        const cJSON *it, *target, *maxit;
        int64_t v;

        snprintf(rl, sizeof(rl), "%s: diverge[%zu]", label, i);
        s->ndiverge++;
        d->target = -1;
        if (!cJSON_IsObject(r))
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s must be an object", rl);
        if ((rc = bp_check_keys(r, bp_diverge_keys, rl, p->err)) != 0) return rc;

        if ((it = cJSON_GetObjectItemCaseSensitive(r, "match")) == NULL)
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: match is missing", rl);
        if ((rc = bp_canon_field(p, it, rl, "match", &d->match)) != 0) return rc;
        if ((it = cJSON_GetObjectItemCaseSensitive(r, "on")) != NULL) {
            if (cJSON_IsString(it) && strcmp(it->valuestring, "result") == 0) d->on = BP_ON_RESULT;
            else if (cJSON_IsString(it) && strcmp(it->valuestring, "error") == 0) d->on = BP_ON_ERROR;
            else
                return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: on must be 'result' or 'error'",
                                     rl);
        }
        if ((it = cJSON_GetObjectItemCaseSensitive(r, "action")) == NULL)
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: action is missing", rl);
        if (!cJSON_IsString(it))
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: action must be a string", rl);
        size_t a;
        for (a = 0; a < NACTIONS; a++)
            if (strcmp(it->valuestring, bp_action_names[a]) == 0) break;
        if (a == NACTIONS)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: unknown action '%.64s' (expected retry, back_to, skip_to, "
                                 "fail or continue)",
                                 rl, it->valuestring);
        d->action = (bp_action_t)a;

        bool jumps = d->action == BP_ACTION_BACK_TO || d->action == BP_ACTION_SKIP_TO;
        bool loops = d->action == BP_ACTION_BACK_TO || d->action == BP_ACTION_RETRY;
        target = cJSON_GetObjectItemCaseSensitive(r, "target");
        if (jumps && target == NULL)
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: target is required for action %s",
                                 rl, bp_action_names[a]);
        if (!jumps && target != NULL)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: target is only for actions back_to and skip_to", rl);
        if (target != NULL && !cJSON_IsString(target))
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: target must be a step name", rl);
        maxit = cJSON_GetObjectItemCaseSensitive(r, "max_iterations");
        if (loops && maxit == NULL)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: max_iterations is required for action %s", rl,
                                 bp_action_names[a]);
        if (!loops && maxit != NULL)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: max_iterations is only for actions retry and back_to", rl);
        if (maxit != NULL) {
            rc = bp_get_int(maxit, rl, "max_iterations", 1, BP_MAX_ITERATIONS, &v, p->err);
            if (rc != 0) return rc;
            d->max_iterations = (int)v;
        }
        /* A rule that an earlier rule always pre-empts is a mistake. */
        for (size_t k = 0; k < i; k++)
            if (s->diverge[k].on == d->on && match_subsumes(s->diverge[k].match, d->match))
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "%s: diverge[%zu] is unreachable: diverge[%zu] matches every "
                                     "%s it matches",
                                     label, i, k, d->on == BP_ON_ERROR ? "error" : "result");
    }
    return 0;
}

static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">=", "in", "exists", NULL};

/* A branch condition, recursively; the messages say only which entry. */
static int check_cond(parser_t *p, const cJSON *c, const char *label)
{
    const cJSON *it, *path, *op, *value;
    size_t nkeys = 0, k;
    int rc;

    if (!cJSON_IsObject(c))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: condition must be an object", label);
    char cl[NAME_MAX_LEN + 64];
    snprintf(cl, sizeof(cl), "%s: condition", label);
    if ((rc = bp_check_keys(c, bp_cond_keys, cl, p->err)) != 0) return rc;
    cJSON_ArrayForEach(it, c) nkeys++;

    static const char *const combinators[] = {"and", "or", "not"};
    for (k = 0; k < 3; k++) {
        const char *name = combinators[k];
        if ((it = cJSON_GetObjectItemCaseSensitive(c, name)) == NULL) continue;
        if (nkeys != 1)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: a condition with '%s' has no other keys", label, name);
        if (k == 2) return check_cond(p, it, label);
        if (!cJSON_IsArray(it) || it->child == NULL)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: %s must be a non-empty array of conditions", label, name);
        const cJSON *sub;
        cJSON_ArrayForEach(sub, it) {
            if ((rc = check_cond(p, sub, label)) != 0) return rc;
        }
        return 0;
    }

    path = cJSON_GetObjectItemCaseSensitive(c, "path");
    op = cJSON_GetObjectItemCaseSensitive(c, "op");
    value = cJSON_GetObjectItemCaseSensitive(c, "value");
    if (path == NULL)
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: path is missing", label);
    if (!cJSON_IsString(path))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: path must be a string", label);
    if (strlen(path->valuestring) > MATCH_PATH_MAX)
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: path is longer than %d characters",
                             label, MATCH_PATH_MAX);
    if (!json_path_valid(path->valuestring))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: malformed path '%.64s'", label,
                             path->valuestring);
    if (op == NULL) return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: op is missing", label);
    if (!cJSON_IsString(op))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: op must be a string", label);
    for (k = 0; ops[k] != NULL; k++)
        if (strcmp(op->valuestring, ops[k]) == 0) break;
    if (ops[k] == NULL)
        return cbm_error_set(p->err, CBM_EBLUEPRINT,
                             "%s: unknown op '%.16s' (expected ==, !=, <, <=, >, >=, in or "
                             "exists)",
                             label, op->valuestring);
    if (strcmp(ops[k], "exists") == 0) {
        if (value != NULL)
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: op 'exists' takes no value", label);
        return 0;
    }
    if (value == NULL)
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: op '%s' needs a value", label, ops[k]);
    if (strcmp(ops[k], "in") == 0 && !cJSON_IsArray(value))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: op 'in' needs an array value", label);
    if (ops[k][0] == '<' || ops[k][0] == '>') {
        if (!cJSON_IsNumber(value) && !cJSON_IsString(value))
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: op '%s' needs a number or a string value", label, ops[k]);
    }
    return 0;
}

static int parse_branch(parser_t *p, const cJSON *arr, const char *label, bp_step_t *s)
{
    const cJSON *e;
    size_t n = 0;
    int rc;

    if (!cJSON_IsArray(arr))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: branch must be an array of entries",
                             label);
    cJSON_ArrayForEach(e, arr) n++;
    if (n == 0) return 0;
    if (n > MAX_RULES)
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: branch has more than %d entries", label,
                             MAX_RULES);
    /* Diverge runs first: a rule that takes every result and does not
     * continue leaves the branch nothing to decide. */
    for (size_t k = 0; k < s->ndiverge; k++) {
        const bp_diverge_t *d = &s->diverge[k];
        if (d->on == BP_ON_RESULT && d->action != BP_ACTION_CONTINUE && cJSON_IsString(d->match) &&
            strcmp(d->match->valuestring, "_") == 0)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: branch is unreachable: diverge[%zu] takes every result", label,
                                 k);
    }
    if ((s->branch = bp_xcalloc(n, sizeof(bp_branch_t))) == NULL) return bp_oom(p);
    cJSON_ArrayForEach(e, arr) {
        char el[NAME_MAX_LEN + 48];
        size_t i = s->nbranch;
        bp_branch_t *b = &s->branch[i];
        const cJSON *when, *to, *otherwise;

        snprintf(el, sizeof(el), "%s: branch[%zu]", label, i);
        s->nbranch++;
        b->to = -1;
        if (!cJSON_IsObject(e))
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s must be an object", el);
        if ((rc = bp_check_keys(e, bp_branch_keys, el, p->err)) != 0) return rc;
        when = cJSON_GetObjectItemCaseSensitive(e, "when");
        to = cJSON_GetObjectItemCaseSensitive(e, "to");
        otherwise = cJSON_GetObjectItemCaseSensitive(e, "otherwise");
        if (otherwise != NULL) {
            if (when != NULL || to != NULL)
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "%s: otherwise cannot be combined with when or to", el);
            if (!cJSON_IsString(otherwise))
                return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: otherwise must be a step name",
                                     el);
            if (i + 1 != n)
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "%s: otherwise must be the last entry", el);
            continue;
        }
        if (when == NULL) return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: when is missing", el);
        if (to == NULL) return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: to is missing", el);
        if (!cJSON_IsString(to))
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: to must be a step name", el);
        if ((rc = check_cond(p, when, el)) != 0) return rc;
        if ((rc = bp_canon_field(p, when, el, "when", &b->when)) != 0) return rc;
        for (size_t k = 0; k < i; k++)
            if (json_equal(s->branch[k].when, b->when))
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "%s is unreachable: branch[%zu] has the same condition", el, k);
    }
    return 0;
}

static int parse_step_fields(parser_t *p, const cJSON *obj, const char *label, bp_step_t *s,
                             step_src_t *src)
{
    const cJSON *it;
    int rc;

    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "kind")) != NULL) {
        size_t k;
        if (!cJSON_IsString(it))
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: kind must be a string", label);
        for (k = 0; k < NKINDS; k++)
            if (strcmp(it->valuestring, bp_kind_names[k]) == 0) break;
        if (k == NKINDS)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: unknown kind '%.64s' (expected task, sleep, approval, "
                                 "signal, subworkflow or deliberation)",
                                 label, it->valuestring);
        s->kind = (bp_step_kind_t)k;
    }
    if ((rc = check_step_keys(obj, s->kind, label, p->err)) != 0) return rc;

    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "handler")) != NULL) {
        if ((rc = bp_get_ident(it, label, "handler", false, &s->handler, p)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "queue")) != NULL) {
        if ((rc = bp_get_ident(it, label, "queue", true, &s->queue, p)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "depends_on")) != NULL) {
        const cJSON *d;
        size_t i = 0;
        if (!cJSON_IsArray(it))
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: depends_on must be an array of step names", label);
        cJSON_ArrayForEach(d, it) {
            if (!cJSON_IsString(d))
                return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: depends_on[%zu] must be a string",
                                     label, i);
            i++;
        }
        src->depends_on = it;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "timeout_ms")) != NULL) {
        if ((rc = bp_get_ms(it, label, "timeout_ms", 0, &s->timeout_ms, p->err)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "retry")) != NULL) {
        if ((rc = bp_parse_retry(it, label, &s->retry, p)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "heartbeat_timeout_ms")) != NULL) {
        rc = bp_get_ms(it, label, "heartbeat_timeout_ms", 0, &s->heartbeat_timeout_ms, p->err);
        if (rc != 0) return rc;
        if (s->timeout_ms > 0 && s->heartbeat_timeout_ms > s->timeout_ms)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: heartbeat_timeout_ms (%" PRId64
                                 ") must be at most timeout_ms (%" PRId64 ")",
                                 label, s->heartbeat_timeout_ms, s->timeout_ms);
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "requires")) != NULL) {
        if ((rc = parse_requires(p, it, label, s)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "args")) != NULL) {
        if ((rc = parse_args(p, it, label, s)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "duration_ms")) != NULL) {
        if ((rc = bp_get_ms(it, label, "duration_ms", 0, &s->sleep_ms, p->err)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "until")) != NULL) {
        const char *why = NULL;
        if (!cJSON_IsString(it))
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: until must be a string (an RFC 3339 time)", label);
        if (bp_parse_time(it->valuestring, &s->sleep_until_us, &why) != 0)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: until '%.64s' is not a valid RFC 3339 time: %s", label,
                                 it->valuestring, why);
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "approval_type")) != NULL) {
        if ((rc = bp_get_ident(it, label, "approval_type", true, &s->approval_type, p)) != 0)
            return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "signal")) != NULL) {
        if ((rc = bp_get_ident(it, label, "signal", true, &s->signal, p)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "blueprint")) != NULL) {
        if ((rc = bp_get_ident(it, label, "blueprint", true, &s->sub_blueprint, p)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "version")) != NULL) {
        bool ok = cJSON_IsString(it) && strlen(it->valuestring) == 64;
        for (size_t i = 0; ok && i < 64; i++) {
            char c = it->valuestring[i];
            ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        }
        if (!ok)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: version must be a blueprint version (64 lowercase hex "
                                 "digits)",
                                 label);
        if ((s->sub_version = bp_xstrdup(it->valuestring)) == NULL) return bp_oom(p);
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "inputs")) != NULL) {
        if ((rc = parse_template(p, it, label, s)) != 0) return rc;
    }
    if (s->kind == BP_DELIBERATION && (rc = bp_parse_delib(p, obj, label, s)) != 0) return rc;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "diverge")) != NULL) {
        if ((rc = parse_diverge(p, it, label, s)) != 0) return rc;
        src->diverge = it;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "branch")) != NULL) {
        if ((rc = parse_branch(p, it, label, s)) != 0) return rc;
        src->branch = it;
    }
    return 0;
}

/* entry: a step object, or (in the timeline) a string naming a task step. */
int bp_parse_step(parser_t *p, const cJSON *entry, bp_step_t *s, step_src_t *src)
{
    char where[48], label[NAME_MAX_LEN + 16];
    const cJSON *name = entry;
    bool timeline = strcmp(src->list, "timeline") == 0;
    int rc;

    snprintf(where, sizeof(where), "%s[%zu]", src->list, src->pos);
    s->kind = BP_TASK;
    s->retry.max_attempts = DEFAULT_MAX_ATTEMPTS;
    s->retry.initial_ms = DEFAULT_INITIAL_MS;
    s->retry.max_ms = DEFAULT_MAX_MS;
    s->retry.multiplier = DEFAULT_MULTIPLIER;
    s->sleep_ms = -1;
    s->sleep_until_us = -1;

    if (cJSON_IsObject(entry)) {
        name = cJSON_GetObjectItemCaseSensitive(entry, "name");
    } else if (!(timeline && cJSON_IsString(entry))) {
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s must be %s", where,
                             timeline ? "a step name or a step object" : "an object");
    }
    if ((rc = bp_check_name(name, where, p->err)) != 0) return rc;
    if ((s->name = bp_xstrdup(name->valuestring)) == NULL) return bp_oom(p);
    snprintf(label, sizeof(label), "step '%s'", s->name);

    if (cJSON_IsObject(entry) && (rc = parse_step_fields(p, entry, label, s, src)) != 0) return rc;

    /* What each kind needs, and its defaults. */
    if (s->kind == BP_SLEEP) {
        if (s->sleep_ms >= 0 && s->sleep_until_us >= 0)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: sleep takes duration_ms or until, not both", label);
        if (s->sleep_ms < 0 && s->sleep_until_us < 0)
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: sleep needs duration_ms or until",
                                 label);
    }
    if (s->kind == BP_SUBWORKFLOW && s->sub_blueprint == NULL)
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: subworkflow needs blueprint", label);
    if (s->kind == BP_DELIBERATION && (rc = bp_finish_delib(p, label, s)) != 0) return rc;
    if (s->kind == BP_APPROVAL && s->approval_type == NULL &&
        (s->approval_type = bp_xstrdup(s->name)) == NULL)
        return bp_oom(p);
    if (s->kind == BP_SIGNAL && s->signal == NULL && (s->signal = bp_xstrdup(s->name)) == NULL)
        return bp_oom(p);
    if (s->handler == NULL && (s->handler = bp_xstrdup(s->name)) == NULL) return bp_oom(p);
    if (s->queue == NULL && (s->queue = bp_xstrdup(DEFAULT_QUEUE)) == NULL) return bp_oom(p);
    return 0;
}

