/*
 * blueprint.c - parse and validate blueprint JSON into the immutable graph of
 * blueprint.h, and derive its canonical JSON and version; check execution
 * inputs against a blueprint's declarations; RFC 3339 times. The parser is
 * split by pass across engine/bp_*.c (see blueprint_internal.h); this file
 * holds memory, the tables, pass 1 and bp_parse_json.
 *
 * The one validator: the C builder emits JSON and comes through here too. The
 * format is described in docs/blueprints.md (and docs/blueprint.schema.json);
 * every error message this file can produce is listed there.
 *
 * Parsing runs in passes, so that each pass can assume what the previous ones
 * checked:
 *   1. the JSON text (cJSON), the top-level object and its keys, then the
 *      top-level input declarations;
 *   2. each step on its own (name, keys allowed for its kind, field types,
 *      retry policy, kind-specific fields, the syntax of its diverge rules,
 *      branch entries, conditions, paths and input template), steps[] first
 *      and then timeline[], which is also the order of bp->steps;
 *   3. step names: a sorted index, which finds duplicates and serves lookups;
 *   4. dependencies: names to indexes, timeline links added, sorted, deduped;
 *      then each step's dependents;
 *   5. cycles (an iterative depth-first search, so a long chain cannot blow
 *      the stack);
 *   6. routing: diverge targets (back_to backwards, skip_to forwards), branch
 *      targets (direct dependents), template references (dependencies,
 *      declared inputs);
 *   7. the canonical JSON, printed from the model (never from the input), and
 *      its SHA-256.
 *
 * Unknown keys are errors, not ignored: a misspelt "depend_on" that is silently
 * dropped would run a step before its inputs exist.
 *
 * JSON values a blueprint keeps (diverge patterns, branch conditions, input
 * templates and defaults) are stored as canonical cJSON trees: deep copies
 * with every object's keys sorted, repeated keys and non-finite numbers
 * refused. The canonical JSON prints those trees, and the decider evaluates
 * the very same trees (match.h).
 *
 * Memory: everything a blueprint owns is allocated with cJSON_malloc() and
 * freed with cJSON_free(), the same allocator that produces canonical_json.
 * With cJSON's default hooks that is plain malloc/free; the unit tests install
 * failing hooks to check that every allocation failure returns CBM_ENOMEM and
 * leaks nothing. cJSON's parser cannot tell an allocation failure from
 * malformed text; json_text.h can, so out-of-memory while parsing the text
 * is CBM_ENOMEM too.
 */
#include <openssl/evp.h>
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
#include "engine/json_text.h"
#include "engine/match.h"

const char *const bp_kind_names[NKINDS] = {
    [BP_TASK] = "task",
    [BP_SLEEP] = "sleep",
    [BP_APPROVAL] = "approval",
    [BP_SIGNAL] = "signal",
    [BP_SUBWORKFLOW] = "subworkflow",
    [BP_DELIBERATION] = "deliberation",
};

const char *const bp_action_names[NACTIONS] = {
    [BP_ACTION_RETRY] = "retry",
    [BP_ACTION_BACK_TO] = "back_to",
    [BP_ACTION_SKIP_TO] = "skip_to",
    [BP_ACTION_FAIL] = "fail",
    [BP_ACTION_CONTINUE] = "continue",
};

const char *bp_action_name(int action)
{
    return action >= 0 && (size_t)action < NACTIONS ? bp_action_names[action] : NULL;
}

const char *const bp_input_type_names[NINPUT_TYPES] = {
    [BP_IN_ANY] = NULL,
    [BP_IN_STRING] = "string",
    [BP_IN_NUMBER] = "number",
    [BP_IN_INTEGER] = "integer",
    [BP_IN_BOOLEAN] = "boolean",
    [BP_IN_OBJECT] = "object",
    [BP_IN_ARRAY] = "array",
};
/* "must be <noun>" */
const char *const bp_input_type_nouns[NINPUT_TYPES] = {
    [BP_IN_ANY] = "a value",
    [BP_IN_STRING] = "a string",
    [BP_IN_NUMBER] = "a number",
    [BP_IN_INTEGER] = "an integer",
    [BP_IN_BOOLEAN] = "a boolean",
    [BP_IN_OBJECT] = "an object",
    [BP_IN_ARRAY] = "an array",
};

/* Allowed keys, NULL-terminated; at most 32 per list (see check_keys). */
const char *const bp_top_keys[] = {"name", "steps", "timeline", "inputs", "timeout_ms", NULL};
const char *const bp_retry_keys[] = {"max_attempts", "initial_ms", "max_ms",
                                         "multiplier", "non_retryable", NULL};
const char *const bp_diverge_keys[] = {"match", "on", "action", "target", "max_iterations",
                                           NULL};
const char *const bp_branch_keys[] = {"when", "to", "otherwise", NULL};
const char *const bp_cond_keys[] = {"path", "op", "value", "and", "or", "not", NULL};
const char *const bp_input_keys[] = {"type", "required", "default", NULL};

/* Step keys and the kinds they belong to. The order is the order in which
 * fields are checked and listed in messages. */
const struct bp_step_field bp_step_fields[NSTEP_FIELDS] = {
    {"name", ALL_KINDS},
    {"kind", ALL_KINDS},
    {"handler", ALL_KINDS},
    {"queue", ALL_KINDS},
    {"depends_on", ALL_KINDS},
    {"timeout_ms", ALL_KINDS},
    {"retry", ALL_KINDS},
    {"heartbeat_timeout_ms", KIND_BIT(BP_TASK)},
    {"requires", KIND_BIT(BP_TASK)},
    {"args", KIND_BIT(BP_TASK)},
    {"duration_ms", KIND_BIT(BP_SLEEP)},
    {"until", KIND_BIT(BP_SLEEP)},
    {"approval_type", KIND_BIT(BP_APPROVAL)},
    {"signal", KIND_BIT(BP_SIGNAL)},
    {"blueprint", KIND_BIT(BP_SUBWORKFLOW)},
    {"version", KIND_BIT(BP_SUBWORKFLOW)},
    {"inputs", KIND_BIT(BP_SUBWORKFLOW)},
    {"council", KIND_BIT(BP_DELIBERATION)},
    {"council_version", KIND_BIT(BP_DELIBERATION)},
    {"task", KIND_BIT(BP_DELIBERATION)},
    {"context", KIND_BIT(BP_DELIBERATION)},
    {"agents", KIND_BIT(BP_DELIBERATION)},
    {"rounds", KIND_BIT(BP_DELIBERATION)},
    {"topology", KIND_BIT(BP_DELIBERATION)},
    {"scoring", KIND_BIT(BP_DELIBERATION)},
    {"selection", KIND_BIT(BP_DELIBERATION)},
    {"model", KIND_BIT(BP_DELIBERATION)},
    {"call", KIND_BIT(BP_DELIBERATION)},
    {"budget", KIND_BIT(BP_DELIBERATION)},
    {"diverge", ALL_KINDS},
    {"branch", ALL_KINDS},
};
_Static_assert(sizeof(bp_step_fields) / sizeof(bp_step_fields[0]) == NSTEP_FIELDS,
               "NSTEP_FIELDS matches the table");

/* ------------------------------------------------------------------------ */
/* Memory                                                                   */
/* ------------------------------------------------------------------------ */

void *bp_xcalloc(size_t n, size_t size)
{
    void *p;
    if (n == 0) n = 1;
    if (size != 0 && n > SIZE_MAX / size) return NULL;
    p = cJSON_malloc(n * size);
    if (p != NULL) memset(p, 0, n * size);
    return p;
}

char *bp_xstrdup(const char *s)
{
    size_t len = strlen(s) + 1;
    char *p = cJSON_malloc(len);
    if (p != NULL) memcpy(p, s, len);
    return p;
}

static void step_finish(bp_step_t *s)
{
    cJSON_free(s->name);
    cJSON_free(s->handler);
    cJSON_free(s->queue);
    cJSON_free(s->deps);
    cJSON_free(s->dependents);
    for (size_t i = 0; i < s->retry.n_non_retryable; i++) cJSON_free(s->retry.non_retryable[i]);
    cJSON_free(s->retry.non_retryable);
    cJSON_free(s->approval_type);
    cJSON_free(s->signal);
    for (size_t i = 0; i < s->nrequires; i++) {
        cJSON_free(s->requires[i].key);
        cJSON_free(s->requires[i].value);
    }
    cJSON_free(s->requires);
    cJSON_Delete(s->args);
    cJSON_free(s->args_json);
    cJSON_free(s->sub_blueprint);
    cJSON_free(s->sub_version);
    cJSON_Delete(s->sub_inputs);
    cJSON_free(s->sub_inputs_json);
    bp_delib_free(s->delib);
    for (size_t i = 0; i < s->ndiverge; i++) cJSON_Delete(s->diverge[i].match);
    cJSON_free(s->diverge);
    for (size_t i = 0; i < s->nbranch; i++) cJSON_Delete(s->branch[i].when);
    cJSON_free(s->branch);
}

void bp_destroy(bp_blueprint_t *bp)
{
    if (bp == NULL) return;
    for (size_t i = 0; i < bp->nsteps; i++) step_finish(&bp->steps[i]);
    cJSON_free(bp->steps);
    for (size_t i = 0; i < bp->ninputs; i++) {
        cJSON_free(bp->inputs[i].name);
        cJSON_Delete(bp->inputs[i].default_value);
    }
    cJSON_free(bp->inputs);
    cJSON_free(bp->canonical_json);
    cJSON_free(bp->name);
    cJSON_free(bp);
}

int bp_oom(parser_t *p)
{
    return cbm_error_set(p->err, CBM_ENOMEM, "out of memory while parsing blueprint");
}

/* ------------------------------------------------------------------------ */
/* Pass 1 and the whole                                                     */
/* ------------------------------------------------------------------------ */

static void text_position(const char *json, size_t off, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (json[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

/* what: "blueprint" or "inputs"; the messages of inputs start "inputs: ". */
cJSON *bp_parse_text(const char *json, size_t len, const char *what, cbm_error_t *err,
                     int *rc)
{
    const char *end = NULL;
    const char *prefix = strcmp(what, "inputs") == 0 ? "inputs: " : "";
    size_t off, line, col;
    cJSON *root;

    if (len == 0) {
        *rc = cbm_error_set(err, CBM_EJSON, "%smalformed JSON: empty input", prefix);
        return NULL;
    }
    /* Bytes PostgreSQL would refuse, and \u0000 (cut by cJSON, refused by
     * jsonb), are refused here, before anything is parsed or stored. A
     * length that counts the string's terminator (sizeof a literal) is no
     * NUL inside the text. */
    if (len > 0 && json[len - 1] == '\0') len--;
    if ((*rc = cbm_json_check(json, len, what, err)) != 0) return NULL;
    root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    off = end != NULL && end >= json && (size_t)(end - json) <= len ? (size_t)(end - json) : 0;
    if (root == NULL && json_text_well_formed(json, len)) {
        *rc = cbm_error_set(err, CBM_ENOMEM, "%sout of memory while parsing JSON", prefix);
        return NULL;
    }
    if (root == NULL) {
        text_position(json, off, &line, &col);
        *rc = cbm_error_set(err, CBM_EJSON, "%smalformed JSON at line %zu, column %zu (byte %zu)",
                            prefix, line, col, off);
        return NULL;
    }
    /* cJSON stops after the first value; anything but white space after it
     * (up to a NUL, which ends a C string) is an error, not ignored. */
    while (off < len && (json[off] == ' ' || json[off] == '\t' || json[off] == '\n' ||
                         json[off] == '\r'))
        off++;
    if (off < len && json[off] != '\0') {
        cJSON_Delete(root);
        text_position(json, off, &line, &col);
        *rc = cbm_error_set(err, CBM_EJSON,
                            "%smalformed JSON: unexpected text after the %s at line %zu, "
                            "column %zu (byte %zu)",
                            prefix, what, line, col, off);
        return NULL;
    }
    return root;
}

/* Pass 1: the top-level object. Fills *name, *steps, *timeline and *inputs
 * (each may be NULL) and *n, the total number of steps. */
static int parse_top(const cJSON *root, const char **bp_name, const cJSON **steps,
                     const cJSON **timeline, const cJSON **inputs, size_t *n, cbm_error_t *err)
{
    char label[NAME_MAX_LEN + 16];
    const cJSON *name, *it;
    int rc;

    if (!cJSON_IsObject(root))
        return cbm_error_set(err, CBM_EBLUEPRINT, "blueprint must be a JSON object");
    name = cJSON_GetObjectItemCaseSensitive(root, "name");
    if ((rc = bp_check_name(name, "blueprint", err)) != 0) return rc;
    snprintf(label, sizeof(label), "blueprint '%s'", name->valuestring);
    if ((rc = bp_check_keys(root, bp_top_keys, label, err)) != 0) return rc;

    *bp_name = name->valuestring;
    *steps = cJSON_GetObjectItemCaseSensitive(root, "steps");
    *timeline = cJSON_GetObjectItemCaseSensitive(root, "timeline");
    *inputs = cJSON_GetObjectItemCaseSensitive(root, "inputs");
    if (*steps != NULL && !cJSON_IsArray(*steps))
        return cbm_error_set(err, CBM_EBLUEPRINT, "%s: steps must be an array", label);
    if (*timeline != NULL && !cJSON_IsArray(*timeline))
        return cbm_error_set(err, CBM_EBLUEPRINT, "%s: timeline must be an array", label);
    if (*inputs != NULL && !cJSON_IsObject(*inputs))
        return cbm_error_set(err, CBM_EBLUEPRINT, "%s: inputs must be an object", label);
    *n = 0;
    cJSON_ArrayForEach(it, *steps) (*n)++;
    cJSON_ArrayForEach(it, *timeline) (*n)++;
    if (*n == 0) return cbm_error_set(err, CBM_EBLUEPRINT, "%s has no steps", label);
    return 0;
}

static bool input_name_ok(const char *s)
{
    for (; *s != '\0'; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int cmp_input(const void *a, const void *b)
{
    return strcmp(((const bp_input_t *)a)->name, ((const bp_input_t *)b)->name);
}

/* Pass 1, continued: the input declarations, stored sorted by name. */
static int parse_inputs(parser_t *p, const cJSON *obj)
{
    bp_blueprint_t *bp = p->bp;
    const cJSON *it;
    size_t n = 0;
    int rc;

    bp->inputs_declared = true;
    cJSON_ArrayForEach(it, obj) n++;
    if (n == 0) return 0;
    if ((bp->inputs = bp_xcalloc(n, sizeof(bp_input_t))) == NULL) return bp_oom(p);
    cJSON_ArrayForEach(it, obj) {
        const char *name = it->string;
        char label[NAME_MAX_LEN + 16];
        const cJSON *f;

        if (name[0] == '\0')
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "blueprint '%s': input name is empty",
                                 bp->name);
        if (strlen(name) > NAME_MAX_LEN)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "blueprint '%s': input name '%.40s...' is longer than %d "
                                 "characters",
                                 bp->name, name, NAME_MAX_LEN);
        if (!input_name_ok(name))
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "blueprint '%s': input name '%.64s' may only contain letters, "
                                 "digits, '_' and '-'",
                                 bp->name, name);
        bp_input_t *in = &bp->inputs[bp->ninputs];
        if ((in->name = bp_xstrdup(name)) == NULL) return bp_oom(p);
        bp->ninputs++;
        snprintf(label, sizeof(label), "input '%s'", name);
        if (!cJSON_IsObject(it))
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s must be an object", label);
        if ((rc = bp_check_keys(it, bp_input_keys, label, p->err)) != 0) return rc;
        if ((f = cJSON_GetObjectItemCaseSensitive(it, "type")) != NULL) {
            size_t t;
            for (t = 1; t < NINPUT_TYPES; t++)
                if (cJSON_IsString(f) && strcmp(f->valuestring, bp_input_type_names[t]) == 0) break;
            if (t == NINPUT_TYPES)
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "%s: type must be one of string, number, integer, boolean, "
                                     "object, array",
                                     label);
            in->type = (bp_input_type_t)t;
        }
        if ((f = cJSON_GetObjectItemCaseSensitive(it, "required")) != NULL) {
            if (!cJSON_IsBool(f))
                return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: required must be true or false",
                                     label);
            in->required = cJSON_IsTrue(f);
        }
        if ((f = cJSON_GetObjectItemCaseSensitive(it, "default")) != NULL) {
            if (in->required)
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "%s: a required input cannot have a default", label);
            if (!bp_type_ok(in->type, f))
                return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: default must be %s", label,
                                     bp_input_type_nouns[in->type]);
            if ((rc = bp_canon_field(p, f, label, "default", &in->default_value)) != 0) return rc;
        }
    }
    qsort(bp->inputs, bp->ninputs, sizeof(bp_input_t), cmp_input);
    for (size_t i = 1; i < bp->ninputs; i++)
        if (strcmp(bp->inputs[i - 1].name, bp->inputs[i].name) == 0)
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "blueprint '%s': duplicate input '%s'",
                                 bp->name, bp->inputs[i].name);
    return 0;
}

static int parse_steps(parser_t *p, const cJSON *list, const char *list_name, size_t *i)
{
    const cJSON *it;
    size_t pos = 0;
    int rc;
    cJSON_ArrayForEach(it, list) {
        step_src_t *src = &p->src[*i];
        src->list = list_name;
        src->pos = pos;
        src->after_prev = strcmp(list_name, "timeline") == 0 && pos > 0;
        if ((rc = bp_parse_step(p, it, &p->bp->steps[*i], src)) != 0) return rc;
        (*i)++;
        pos++;
    }
    return 0;
}

int bp_parse_json(const char *json, size_t len, bp_blueprint_t **out, cbm_error_t *err)
{
    parser_t p = {.err = err};
    const cJSON *steps = NULL, *timeline = NULL, *inputs = NULL;
    const char *name = NULL;
    cJSON *root;
    size_t n = 0, i = 0;
    int rc;

    if (out == NULL) return cbm_error_set(err, CBM_EINVAL, "bp_parse_json: out is NULL");
    *out = NULL;
    if (json == NULL) return cbm_error_set(err, CBM_EINVAL, "bp_parse_json: json is NULL");

    if ((root = bp_parse_text(json, len, "blueprint", err, &rc)) == NULL) return rc;
    if ((rc = parse_top(root, &name, &steps, &timeline, &inputs, &n, err)) != 0) goto out;

    p.bp = bp_xcalloc(1, sizeof(*p.bp));
    if (p.bp == NULL || (p.bp->name = bp_xstrdup(name)) == NULL ||
        (p.bp->steps = bp_xcalloc(n, sizeof(bp_step_t))) == NULL ||
        (p.src = bp_xcalloc(n, sizeof(step_src_t))) == NULL) {
        rc = bp_oom(&p);
        goto out;
    }
    p.bp->nsteps = n; /* the steps are zeroed, so bp_destroy copes with a partial parse */

    {
        const cJSON *to = cJSON_GetObjectItemCaseSensitive(root, "timeout_ms");
        char label[NAME_MAX_LEN + 16];
        snprintf(label, sizeof(label), "blueprint '%s'", name);
        if (to != NULL && (rc = bp_get_ms(to, label, "timeout_ms", 1, &p.bp->timeout_ms, err)) != 0)
            goto out;
    }
    if ((inputs != NULL && (rc = parse_inputs(&p, inputs)) != 0) ||
        (rc = parse_steps(&p, steps, "steps", &i)) != 0 ||
        (rc = parse_steps(&p, timeline, "timeline", &i)) != 0 || (rc = bp_index_names(&p)) != 0 ||
        (rc = bp_resolve_deps(&p)) != 0 || (rc = bp_find_dependents(&p)) != 0 ||
        (rc = bp_check_cycles(&p)) != 0 || (rc = bp_check_routing(&p)) != 0 ||
        (rc = bp_make_canonical(&p)) != 0)
        goto out;
    assert(i == n);
    *out = p.bp;
    p.bp = NULL;
out:
    bp_destroy(p.bp);
    cJSON_free(p.src);
    cJSON_free(p.by_name);
    cJSON_free(p.mark);
    cJSON_free(p.stack);
    cJSON_Delete(root);
    return rc;
}

/* A linear scan: blueprints are tens of steps, and callers that look names up
 * in a hot path can keep their own index. */
int bp_step_index(const bp_blueprint_t *bp, const char *name)
{
    if (bp == NULL || name == NULL) return -1;
    for (size_t i = 0; i < bp->nsteps && i <= (size_t)INT_MAX; i++)
        if (strcmp(bp->steps[i].name, name) == 0) return (int)i;
    return -1;
}

