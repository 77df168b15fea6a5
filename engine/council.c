/*
 * council.c - see council.h. One pass over the input both checks each field
 * (in the order of the table in docs/deliberation.md, section 1) and adds it
 * to the canonical tree, so what is checked is exactly what is kept.
 *
 * The JSON text is read as blueprints are (bp_parse_text: the same refusal
 * of bytes PostgreSQL cannot store, the same positions in messages, the same
 * out-of-memory detection) and names follow the blueprint rule
 * (bp_name_chars_ok): a council's queue and requires end up in the steps of
 * a generated blueprint, which must accept them.
 */
#include "engine/council.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/blueprint_internal.h"
#include "engine/prompt.h"

#define NAME_RULE "1 to 128 letters, digits, '_', '.' or '-'"

typedef struct ctx {
    cbm_error_t *err;
    char who[160];   /* "council 'dev'", or "council" before the name is known */
} ctx_t;

/* CBM_EINVAL with "<who>: <message>". */
static int bad(ctx_t *c, const char *fmt, ...) CBM_PRINTF(2, 3);
static int bad(ctx_t *c, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return cbm_error_set(c->err, CBM_EINVAL, "%s: %s", c->who, msg);
}

static int oom(ctx_t *c)
{
    return cbm_error_set(c->err, CBM_ENOMEM, "%s: out of memory", c->who);
}

static bool name_ok(const char *s)
{
    return s[0] != '\0' && strlen(s) <= NAME_MAX_LEN && bp_name_chars_ok(s);
}

static bool has_control(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return true;
    return false;
}

/* Every member of obj is in allowed (NULL-terminated), once: the blueprints'
 * check (its messages name the key and list the allowed ones), with the
 * council's code. where: "" for the top level, else the object's label. */
static int check_keys(ctx_t *c, const cJSON *obj, const char *const *allowed, const char *where)
{
    char label[256];
    snprintf(label, sizeof(label), "%s%s%s", c->who, where[0] != '\0' ? ": " : "", where);
    if (bp_check_keys(obj, allowed, label, c->err) == 0) return 0;
    if (c->err != NULL) c->err->code = CBM_EINVAL;
    return CBM_EINVAL;
}

/* Add a copy of s to obj under key. */
static int add_str(ctx_t *c, cJSON *obj, const char *key, const char *s)
{
    return cJSON_AddStringToObject(obj, key, s) != NULL ? 0 : oom(c);
}

static int add_num(ctx_t *c, cJSON *obj, const char *key, double v)
{
    return cJSON_AddNumberToObject(obj, key, v) != NULL ? 0 : oom(c);
}

/* A string member that must be there and not be empty. */
static int req_text(ctx_t *c, const cJSON *obj, const char *key, const char *label,
                    cJSON *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (v == NULL) return bad(c, "%s is required", label);
    if (!cJSON_IsString(v) || v->valuestring[0] == '\0')
        return bad(c, "%s must be a non-empty string", label);
    return add_str(c, out, key, v->valuestring);
}

/* An optional number member in [lo, hi] (lo excluded when lo_open), copied
 * to out when given. */
static int opt_num(ctx_t *c, const cJSON *obj, const char *key, const char *label, double lo,
                   bool lo_open, double hi, const char *range, cJSON *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    double d;
    if (v == NULL) return 0;
    d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!isfinite(d) || d < lo || (lo_open && d == lo) || d > hi)
        return bad(c, "%s must be a number %s", label, range);
    return add_num(c, out, key, d);
}

static int opt_temperature(ctx_t *c, const cJSON *obj, const char *label, cJSON *out)
{
    char l[96];
    snprintf(l, sizeof(l), "%s.temperature", label);
    return opt_num(c, obj, "temperature", l, 0, false, 2, "from 0 to 2", out);
}

/* A template member, checked for its phase. */
static int template(ctx_t *c, const cJSON *obj, const char *key, const char *label,
                    prompt_phase_t phase, cJSON *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char what[256];
    if (v == NULL) return bad(c, "%s is required", label);
    if (!cJSON_IsString(v)) return bad(c, "%s must be a string", label);
    snprintf(what, sizeof(what), "%s: %s", c->who, label);
    if (prompt_check(v->valuestring, phase, what, c->err) != 0) return CBM_EINVAL;
    return add_str(c, out, key, v->valuestring);
}

static int cmp_member(const void *a, const void *b)
{
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

/* The members of obj sorted by name into *sorted (malloc'd; NULL when
 * none), a name given twice refused (what: "capability", "criterion"). */
static int sorted_members(ctx_t *c, const cJSON *obj, const char *label, const char *what,
                          const cJSON ***sorted, size_t *n)
{
    const cJSON *it;
    size_t k = 0;

    *sorted = NULL;
    *n = (size_t)cJSON_GetArraySize(obj);
    if (*n == 0) return 0;
    if ((*sorted = malloc(*n * sizeof(**sorted))) == NULL) return oom(c);
    cJSON_ArrayForEach(it, obj) (*sorted)[k++] = it;
    qsort((void *)*sorted, *n, sizeof(**sorted), cmp_member);
    for (k = 1; k < *n; k++)
        if (strcmp((*sorted)[k - 1]->string, (*sorted)[k]->string) == 0) {
            bad(c, "%s: duplicate %s '%.64s'", label, what, (*sorted)[k]->string);
            free((void *)*sorted);
            *sorted = NULL;
            return CBM_EINVAL;
        }
    return 0;
}

/* ---- the parts, in table order -------------------------------------------- */

static int parse_requires(ctx_t *c, const cJSON *in, cJSON *root)
{
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(in, "requires"), **m = NULL;
    cJSON *out;
    size_t n = 0;
    int rc;

    if ((out = cJSON_AddObjectToObject(root, "requires")) == NULL) return oom(c);
    if (obj == NULL) return 0;
    if (!cJSON_IsObject(obj)) return bad(c, "requires must be an object of strings");
    if ((rc = sorted_members(c, obj, "requires", "capability", &m, &n)) != 0) return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *k = m[i]->string;
        if (!name_ok(k))
            rc = bad(c, "requires: capability name '%.64s' must be " NAME_RULE, k);
        else if (!cJSON_IsString(m[i]) || strlen(m[i]->valuestring) > NAME_MAX_LEN ||
                 has_control(m[i]->valuestring))
            rc = bad(c, "requires.%s must be a string of at most 128 bytes without control "
                        "characters", k);
        else
            rc = add_str(c, out, k, m[i]->valuestring);
    }
    free((void *)m);
    return rc;
}

static const char *const model_keys[] = {"name", "temperature", "top_p", "max_tokens", NULL};

static int parse_model(ctx_t *c, const cJSON *in, cJSON *root)
{
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(in, "model"), *mt;
    cJSON *out;
    int rc;

    if (obj == NULL) return bad(c, "model is required");
    if (!cJSON_IsObject(obj)) return bad(c, "model must be an object");
    if ((rc = check_keys(c, obj, model_keys, "model")) != 0) return rc;
    if ((out = cJSON_AddObjectToObject(root, "model")) == NULL) return oom(c);
    if ((rc = req_text(c, obj, "name", "model.name", out)) != 0 ||
        (rc = opt_temperature(c, obj, "model", out)) != 0 ||
        (rc = opt_num(c, obj, "top_p", "model.top_p", 0, true, 1,
                      "greater than 0 and at most 1", out)) != 0)
        return rc;
    if ((mt = cJSON_GetObjectItemCaseSensitive(obj, "max_tokens")) == NULL) return 0;
    if (!cJSON_IsNumber(mt) || !isfinite(mt->valuedouble) ||
        floor(mt->valuedouble) != mt->valuedouble || mt->valuedouble < 1 ||
        mt->valuedouble > 1000000)
        return bad(c, "model.max_tokens must be an integer from 1 to 1000000");
    return add_num(c, out, "max_tokens", mt->valuedouble);
}

static const char *const prompt_keys[] = {"generate", "critique", "revise", "score", NULL};
static const prompt_phase_t prompt_phases[] = {PROMPT_GENERATE, PROMPT_CRITIQUE, PROMPT_REVISE,
                                               PROMPT_SCORE};

static int parse_prompts(ctx_t *c, const cJSON *in, cJSON *root)
{
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(in, "prompts");
    cJSON *out;
    int rc;

    if ((rc = template(c, in, "system_prompt", "system_prompt", PROMPT_SYSTEM, root)) != 0)
        return rc;
    if (obj == NULL) return bad(c, "prompts is required");
    if (!cJSON_IsObject(obj)) return bad(c, "prompts must be an object");
    if ((rc = check_keys(c, obj, prompt_keys, "prompts")) != 0) return rc;
    if ((out = cJSON_AddObjectToObject(root, "prompts")) == NULL) return oom(c);
    for (size_t i = 0; prompt_keys[i] != NULL; i++) {
        char label[32];
        snprintf(label, sizeof(label), "prompts.%s", prompt_keys[i]);
        if ((rc = template(c, obj, prompt_keys[i], label, prompt_phases[i], out)) != 0)
            return rc;
    }
    return 0;
}

static const char *const criterion_keys[] = {"weight", "description", NULL};

static int parse_criterion(ctx_t *c, const cJSON *cr, cJSON *rubric)
{
    const cJSON *w, *d;
    char label[160];
    cJSON *out;
    int rc;

    if (cr->string[0] == '\0' || strlen(cr->string) > NAME_MAX_LEN || has_control(cr->string))
        return bad(c, "rubric: criterion name '%.64s' must be 1 to 128 bytes without control "
                      "characters", cr->string);
    snprintf(label, sizeof(label), "rubric.%s", cr->string);
    if (!cJSON_IsObject(cr)) return bad(c, "%s must be an object {weight, description}", label);
    if ((rc = check_keys(c, cr, criterion_keys, label)) != 0) return rc;
    w = cJSON_GetObjectItemCaseSensitive(cr, "weight");
    d = cJSON_GetObjectItemCaseSensitive(cr, "description");
    if (w == NULL) return bad(c, "%s.weight is required", label);
    if (!cJSON_IsNumber(w) || !isfinite(w->valuedouble) || w->valuedouble <= 0)
        return bad(c, "%s.weight must be a number greater than 0", label);
    if (d == NULL) return bad(c, "%s.description is required", label);
    if (!cJSON_IsString(d)) return bad(c, "%s.description must be a string", label);
    if ((out = cJSON_AddObjectToObject(rubric, cr->string)) == NULL) return oom(c);
    if ((rc = add_num(c, out, "weight", w->valuedouble)) != 0) return rc;
    return add_str(c, out, "description", d->valuestring);
}

static int parse_rubric(ctx_t *c, const cJSON *in, cJSON *root)
{
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(in, "rubric"), **m = NULL;
    cJSON *out;
    size_t n = 0;
    int rc;

    if (obj == NULL) return 0;
    if (!cJSON_IsObject(obj)) return bad(c, "rubric must be an object");
    if (cJSON_GetArraySize(obj) == 0) return bad(c, "rubric must not be empty");
    if ((out = cJSON_AddObjectToObject(root, "rubric")) == NULL) return oom(c);
    if ((rc = sorted_members(c, obj, "rubric", "criterion", &m, &n)) != 0) return rc;
    for (size_t i = 0; i < n && rc == 0; i++) rc = parse_criterion(c, m[i], out);
    free((void *)m);
    return rc;
}

/* persona (required), model (a model name), temperature: the judge's and
 * each agent's optional settings. */
static int parse_actor(ctx_t *c, const cJSON *obj, const char *label, cJSON *out)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(obj, "model");
    char l[96];
    int rc;

    snprintf(l, sizeof(l), "%s.persona", label);
    if ((rc = req_text(c, obj, "persona", l, out)) != 0) return rc;
    if (model != NULL) {
        snprintf(l, sizeof(l), "%s.model", label);
        if ((rc = req_text(c, obj, "model", l, out)) != 0) return rc;
    }
    return opt_temperature(c, obj, label, out);
}

static const char *const judge_keys[] = {"persona", "model", "temperature", NULL};

static int parse_judge(ctx_t *c, const cJSON *in, cJSON *root)
{
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(in, "judge");
    cJSON *out;
    int rc;

    if (obj == NULL) return 0;
    if (!cJSON_IsObject(obj)) return bad(c, "judge must be an object");
    if ((rc = check_keys(c, obj, judge_keys, "judge")) != 0) return rc;
    if ((out = cJSON_AddObjectToObject(root, "judge")) == NULL) return oom(c);
    return parse_actor(c, obj, "judge", out);
}

static const char *const agent_keys[] = {"id", "persona", "model", "temperature", NULL};

static int parse_agents(ctx_t *c, const cJSON *in, cJSON *root)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(in, "agents"), *a;
    cJSON *out;
    int n, i = 0, rc;

    if (arr == NULL) return bad(c, "agents is required");
    if (!cJSON_IsArray(arr)) return bad(c, "agents must be an array");
    if ((n = cJSON_GetArraySize(arr)) == 0) return bad(c, "agents must not be empty");
    if (n > COUNCIL_MAX_AGENTS)
        return bad(c, "agents: at most %d agents, not %d", COUNCIL_MAX_AGENTS, n);
    if ((out = cJSON_AddArrayToObject(root, "agents")) == NULL) return oom(c);
    cJSON_ArrayForEach(a, arr) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id"), *o;
        char label[32];
        cJSON *ag;
        int j = 0;

        snprintf(label, sizeof(label), "agents[%d]", i);
        if (!cJSON_IsObject(a)) return bad(c, "%s must be an object", label);
        if ((rc = check_keys(c, a, agent_keys, label)) != 0) return rc;
        if (id == NULL) return bad(c, "%s.id is required", label);
        if (!cJSON_IsString(id) || !name_ok(id->valuestring))
            return bad(c, "%s.id must be " NAME_RULE, label);
        cJSON_ArrayForEach(o, out) {
            if (strcmp(cJSON_GetObjectItemCaseSensitive(o, "id")->valuestring,
                       id->valuestring) == 0)
                return bad(c, "%s.id '%s' is already the id of agents[%d]", label,
                           id->valuestring, j);
            j++;
        }
        if ((ag = cJSON_CreateObject()) == NULL || !cJSON_AddItemToArray(out, ag)) {
            cJSON_Delete(ag);
            return oom(c);
        }
        if ((rc = add_str(c, ag, "id", id->valuestring)) != 0 ||
            (rc = parse_actor(c, a, label, ag)) != 0)
            return rc;
        i++;
    }
    return 0;
}

static const char *const top_keys[] = {"name",   "role",          "queue",   "requires",
                                       "model",  "system_prompt", "prompts", "rubric",
                                       "judge",  "agents",        NULL};

/* Pass over the input tree, building the canonical one in root. */
static int build(ctx_t *c, const cJSON *in, cJSON *root)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(in, "name");
    const cJSON *queue;
    int rc;

    if (!cJSON_IsObject(in)) return bad(c, "the definition must be a JSON object");
    if (name == NULL) return bad(c, "name is required");
    if (!cJSON_IsString(name) || !name_ok(name->valuestring))
        return bad(c, "name must be " NAME_RULE);
    snprintf(c->who, sizeof(c->who), "council '%s'", name->valuestring);
    if ((rc = check_keys(c, in, top_keys, "")) != 0) return rc;
    if ((rc = add_str(c, root, "name", name->valuestring)) != 0 ||
        (rc = req_text(c, in, "role", "role", root)) != 0)
        return rc;
    queue = cJSON_GetObjectItemCaseSensitive(in, "queue");
    if (queue != NULL && (!cJSON_IsString(queue) || !name_ok(queue->valuestring)))
        return bad(c, "queue must be " NAME_RULE);
    if ((rc = add_str(c, root, "queue",
                      queue != NULL ? queue->valuestring : COUNCIL_DEFAULT_QUEUE)) != 0 ||
        (rc = parse_requires(c, in, root)) != 0 || (rc = parse_model(c, in, root)) != 0 ||
        (rc = parse_prompts(c, in, root)) != 0 || (rc = parse_rubric(c, in, root)) != 0 ||
        (rc = parse_judge(c, in, root)) != 0 || (rc = parse_agents(c, in, root)) != 0)
        return rc;
    return 0;
}

static const char *member_text(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key)->valuestring;
}

static void point_at_parts(council_t *k)
{
    const cJSON *r = k->root;
    k->name = member_text(r, "name");
    k->role = member_text(r, "role");
    k->queue = member_text(r, "queue");
    k->requires = cJSON_GetObjectItemCaseSensitive(r, "requires");
    k->model = cJSON_GetObjectItemCaseSensitive(r, "model");
    k->system_prompt = member_text(r, "system_prompt");
    k->prompts = cJSON_GetObjectItemCaseSensitive(r, "prompts");
    k->rubric = cJSON_GetObjectItemCaseSensitive(r, "rubric");
    k->judge = cJSON_GetObjectItemCaseSensitive(r, "judge");
    k->agents = cJSON_GetObjectItemCaseSensitive(r, "agents");
    k->nagents = (size_t)cJSON_GetArraySize(k->agents);
}

int council_parse(const char *json, size_t len, council_t **out, cbm_error_t *err)
{
    ctx_t c = {.err = err, .who = "council"};
    council_t *k = NULL;
    cJSON *in;
    int rc;

    *out = NULL;
    if (json == NULL) return cbm_error_set(err, CBM_EINVAL, "council: no JSON given");
    if ((in = bp_parse_text(json, len, "council", err, &rc)) == NULL) return rc;
    if ((k = calloc(1, sizeof(*k))) == NULL || (k->root = cJSON_CreateObject()) == NULL) {
        rc = oom(&c);
        goto fail;
    }
    if ((rc = build(&c, in, k->root)) != 0) goto fail;
    if ((k->canonical = cJSON_PrintUnformatted(k->root)) == NULL ||
        cbm_sha256_hex(k->canonical, strlen(k->canonical), k->version) != 0) {
        rc = oom(&c);
        goto fail;
    }
    point_at_parts(k);
    cJSON_Delete(in);
    *out = k;
    return 0;
fail:
    cJSON_Delete(in);
    council_destroy(k);
    return rc;
}

void council_destroy(council_t *c)
{
    if (c == NULL) return;
    cJSON_Delete(c->root);
    free(c->canonical);
    free(c);
}
