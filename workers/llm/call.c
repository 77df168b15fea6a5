/*
 * call.c - building an LLM call from a task's input, and its result from the
 * answer (call.h; docs/deliberation.md §1, §3, §4).
 *
 * Which dependency is what: the expansion (engine/delib.h) names a
 * proposal `gen.<i>` or `rev.<r>.<i>` and a critique `crit.<r>.…`. A
 * critique, a revision and a score each depend on exactly one proposal, so
 * the proposal is the one dependency with such a name; the critiques are
 * the `crit.` ones, numbered in the natural order of their names (crit.1.2
 * before crit.1.10) so the prompt, and with it the prompt's hash, does not
 * depend on the order the deps object happens to have.
 *
 * Out of memory: the strings this file copies and the JSON it prints are
 * checked (CBM_ENOMEM); a cJSON node that cannot be allocated while a tree
 * is built is left out by cJSON itself, unchecked, as a trade of a worker
 * program (not the library) for readable builders.
 */
#include "call.h"

#include <cJSON.h>
#include <stdbool.h>
#include <ctype.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "engine/prompt.h"

/* ------------------------------------------------------------------ helpers */

static int bad(llm_failure_t *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(llm_failure_t *f, const char *fmt, ...)
{
    va_list ap;
    f->kind = "llm_bad_input";
    f->retryable = false;
    f->retry_after_ms = -1;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof(f->message), fmt, ap);
    va_end(ap);
    return 1;
}

static const cJSON *get(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = get(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void sha256_hex(const char *text, size_t len, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!EVP_Digest(text, len, md, &n, EVP_sha256(), NULL) || n != 32) {
        hex[0] = '\0'; /* only when libcrypto itself cannot allocate */
        return;
    }
    for (unsigned i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

uint32_t call_seed(const char *task_id)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!EVP_Digest(task_id, strlen(task_id), md, &n, EVP_sha256(), NULL) || n != 32) return 0;
    return ((uint32_t)md[0] << 24 | (uint32_t)md[1] << 16 | (uint32_t)md[2] << 8 | md[3]) >> 1;
}

/* Names compared with their digit runs as numbers: gen.2 < gen.10. */
static int natcmp(const char *a, const char *b)
{
    while (*a != '\0' && *b != '\0') {
        if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
            const char *ea = a, *eb = b;
            while (*a == '0') a++;
            while (*b == '0') b++;
            for (ea = a; isdigit((unsigned char)*ea); ea++) {}
            for (eb = b; isdigit((unsigned char)*eb); eb++) {}
            if (ea - a != eb - b) return (ea - a) < (eb - b) ? -1 : 1;
            for (; a < ea; a++, b++)
                if (*a != *b) return *a < *b ? -1 : 1;
            continue;
        }
        if (*a != *b) return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
        a++;
        b++;
    }
    return *a == *b ? 0 : (*a == '\0' ? -1 : 1);
}

static int cmp_items(const void *x, const void *y)
{
    const cJSON *a = *(const cJSON *const *)x, *b = *(const cJSON *const *)y;
    return natcmp(a->string, b->string);
}

static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* A dependency that failed for good (an error object) or was skipped. */
static bool dep_failed(const cJSON *d)
{
    return cJSON_IsObject(d) && (cJSON_IsTrue(get(d, "skipped")) ||
                                 (cJSON_IsString(get(d, "kind")) && cJSON_IsString(get(d, "message"))));
}

/* A dependency's text: the content of a call's result, a string as it is,
 * anything else as compact JSON. malloc'd; NULL when out of memory. */
static char *dep_text(const cJSON *d)
{
    const char *content = str(d, "content");
    if (content != NULL) return strdup(content);
    if (cJSON_IsString(d)) return strdup(d->valuestring);
    return cJSON_PrintUnformatted(d);
}

/* ------------------------------------------------------------- variables */

/* "1. …\n2. …" of the critiques among the sorted deps. */
static int critiques_text(const cJSON *const *deps, size_t n, llm_buf_t *b)
{
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        char num[24], *t;
        int rc;
        if (!has_prefix(deps[i]->string, "crit.")) continue;
        if ((t = dep_text(deps[i])) == NULL) return CBM_ENOMEM;
        snprintf(num, sizeof(num), "%s%d. ", k > 0 ? "\n" : "", k + 1);
        k++;
        rc = llm_buf_add(b, num, strlen(num)) || llm_buf_add(b, t, strlen(t));
        free(t);
        if (rc != 0) return CBM_ENOMEM;
    }
    return llm_buf_add(b, "", 0) != 0 ? CBM_ENOMEM : 0;
}

/* One criterion's line of the rubric. */
static int rubric_line(const cJSON *c, llm_call_t *call, llm_buf_t *b, llm_failure_t *f)
{
    const cJSON *w = get(c, "weight");
    const char *d = str(c, "description");
    char line[96];

    if (!cJSON_IsNumber(w))
        return bad(f, "inputs.council.definition.rubric.%s.weight must be a number", c->string);
    snprintf(line, sizeof(line), "%s- ", call->ncriteria > 0 ? "\n" : "");
    if (llm_buf_add(b, line, strlen(line)) || llm_buf_add(b, c->string, strlen(c->string)))
        return CBM_ENOMEM;
    snprintf(line, sizeof(line), " (weight %g): ", w->valuedouble);
    if (llm_buf_add(b, line, strlen(line)) ||
        llm_buf_add(b, d != NULL ? d : "", d != NULL ? strlen(d) : 0))
        return CBM_ENOMEM;
    return (call->criteria[call->ncriteria++] = strdup(c->string)) != NULL ? 0 : CBM_ENOMEM;
}

static int cmp_names(const void *x, const void *y)
{
    return strcmp((*(const cJSON *const *)x)->string, (*(const cJSON *const *)y)->string);
}

/* "- name (weight w): description" per criterion, in name order (a JSON
 * object has no order; the canonical council has them so already); the
 * names into call. */
static int rubric_text(const cJSON *rubric, llm_call_t *call, llm_buf_t *b, llm_failure_t *f)
{
    const cJSON *c, **sorted;
    size_t n = (size_t)cJSON_GetArraySize(rubric), k = 0;
    int rc = 0;

    if (!cJSON_IsObject(rubric) || n == 0)
        return bad(f, "inputs.council.definition.rubric must be a non-empty object to score");
    if ((call->criteria = calloc(n, sizeof(char *))) == NULL) return CBM_ENOMEM;
    if ((sorted = calloc(n, sizeof(*sorted))) == NULL) return CBM_ENOMEM;
    cJSON_ArrayForEach(c, rubric) sorted[k++] = c;
    qsort(sorted, n, sizeof(*sorted), cmp_names);
    for (k = 0; k < n && rc == 0; k++) rc = rubric_line(sorted[k], call, b, f);
    free(sorted);
    return rc;
}

/* The score's JSON schema: {"criteria": {<each criterion>: number 0..1},
 * "rationale": string}, everything required. */
static cJSON *score_format(const llm_call_t *call)
{
    cJSON *rf = cJSON_CreateObject(), *js, *schema, *props, *crit, *cprops, *req, *creq, *num;
    js = cJSON_AddObjectToObject(rf, "json_schema");
    cJSON_AddStringToObject(rf, "type", "json_schema");
    cJSON_AddStringToObject(js, "name", "score");
    cJSON_AddBoolToObject(js, "strict", 1);
    schema = cJSON_AddObjectToObject(js, "schema");
    cJSON_AddStringToObject(schema, "type", "object");
    props = cJSON_AddObjectToObject(schema, "properties");
    crit = cJSON_AddObjectToObject(props, "criteria");
    cJSON_AddStringToObject(crit, "type", "object");
    cprops = cJSON_AddObjectToObject(crit, "properties");
    creq = cJSON_AddArrayToObject(crit, "required");
    for (size_t i = 0; i < call->ncriteria; i++) {
        num = cJSON_AddObjectToObject(cprops, call->criteria[i]);
        cJSON_AddStringToObject(num, "type", "number");
        cJSON_AddNumberToObject(num, "minimum", 0);
        cJSON_AddNumberToObject(num, "maximum", 1);
        cJSON_AddItemToArray(creq, cJSON_CreateString(call->criteria[i]));
    }
    cJSON_AddBoolToObject(crit, "additionalProperties", 0);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(props, "rationale"), "type", "string");
    req = cJSON_AddArrayToObject(schema, "required");
    cJSON_AddItemToArray(req, cJSON_CreateString("criteria"));
    cJSON_AddItemToArray(req, cJSON_CreateString("rationale"));
    cJSON_AddBoolToObject(schema, "additionalProperties", 0);
    return rf; /* cJSON's adders do nothing on a NULL parent: print checks */
}

static const char *pick_model(const call_opts_t *o, const char *asked)
{
    if (asked == NULL || o->nserved == 0) return asked != NULL ? asked : o->default_model;
    for (size_t i = 0; i < o->nserved; i++)
        if (strcmp(o->served[i], asked) == 0) return asked;
    return o->default_model;
}

/* ----------------------------------------------------------------- build */

typedef struct build {
    cJSON *in, *vars, *msgs, *req;
    const cJSON **deps;
    size_t ndeps;
    llm_buf_t text; /* critiques, rubric */
    char *system, *user, *proposal;
} build_t;

static void build_free(build_t *b)
{
    cJSON_Delete(b->in);
    cJSON_Delete(b->vars);
    cJSON_Delete(b->msgs);
    cJSON_Delete(b->req);
    free(b->deps);
    llm_buf_finish(&b->text);
    free(b->system);
    free(b->user);
    free(b->proposal);
}

/* The deps object's members, sorted by name. */
static int sort_deps(build_t *b, const cJSON *deps, llm_failure_t *f)
{
    const cJSON *d;
    if (deps == NULL || cJSON_IsNull(deps)) return 0;
    if (!cJSON_IsObject(deps)) return bad(f, "deps must be an object");
    b->ndeps = (size_t)cJSON_GetArraySize(deps);
    if (b->ndeps == 0) return 0;
    if ((b->deps = calloc(b->ndeps, sizeof(*b->deps))) == NULL) return CBM_ENOMEM;
    b->ndeps = 0;
    cJSON_ArrayForEach(d, deps) b->deps[b->ndeps++] = d;
    qsort(b->deps, b->ndeps, sizeof(*b->deps), cmp_items);
    return 0;
}

/* The skip of a call whose dependency dep failed or was skipped: because
 * names the step that failed and error holds its kind and message, both
 * carried over from a skip (docs/deliberation.md §3). */
static int skipped_result(llm_call_t *call, const cJSON *dep)
{
    bool skip = cJSON_IsTrue(get(dep, "skipped"));
    const char *because = skip && str(dep, "because") != NULL ? str(dep, "because") : dep->string;
    const cJSON *e = skip ? get(dep, "error") : dep;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "skipped", 1);
    cJSON_AddStringToObject(r, "agent", call->agent);
    cJSON_AddStringToObject(r, "because", because);
    if (str(e, "kind") != NULL) {
        cJSON *eo = cJSON_AddObjectToObject(r, "error");
        cJSON_AddStringToObject(eo, "kind", str(e, "kind"));
        cJSON_AddStringToObject(eo, "message", str(e, "message") != NULL ? str(e, "message") : "");
    }
    call->skipped = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return call->skipped != NULL ? 0 : CBM_ENOMEM;
}

/* Render one template; bad input when it does not render. */
static int render(const char *tmpl, const char *what, const cJSON *vars, char **out,
                  llm_failure_t *f)
{
    cbm_error_t err = {0};
    int rc;
    if (tmpl == NULL) return bad(f, "inputs.council.definition.%s must be a string", what);
    rc = prompt_render(tmpl, vars, out, &err);
    if (rc == CBM_ENOMEM) return rc;
    if (rc != 0) return bad(f, "inputs.council.definition.%s: %s", what, err.message);
    return 0;
}

/* The variables of §1 for this call. */
static int set_vars(build_t *b, const cJSON *inputs, const cJSON *def, const char *persona,
                    prompt_phase_t ph, llm_call_t *call, const cJSON *args, llm_failure_t *f)
{
    const cJSON *round = get(args, "round"), *role = get(def, "role");
    int rc;

    if ((b->vars = cJSON_CreateObject()) == NULL) return CBM_ENOMEM;
    cJSON_AddStringToObject(b->vars, "agent", call->agent_id);
    cJSON_AddStringToObject(b->vars, "persona", persona != NULL ? persona : "");
    if (role != NULL) cJSON_AddItemReferenceToObject(b->vars, "role", (cJSON *)role);
    if (get(inputs, "task") != NULL)
        cJSON_AddItemReferenceToObject(b->vars, "task", (cJSON *)get(inputs, "task"));
    if (get(inputs, "context") != NULL)
        cJSON_AddItemReferenceToObject(b->vars, "context", (cJSON *)get(inputs, "context"));
    cJSON_AddNumberToObject(b->vars, "round", cJSON_IsNumber(round) ? round->valuedouble : 0);
    if (ph != PROMPT_GENERATE) {
        const cJSON *prop = NULL;
        for (size_t i = 0; i < b->ndeps; i++) {
            if (!has_prefix(b->deps[i]->string, "gen.") && !has_prefix(b->deps[i]->string, "rev."))
                continue;
            if (prop != NULL)
                return bad(f, "deps hold two proposals (%s and %s); a %s call takes one",
                           prop->string, b->deps[i]->string, call->phase);
            prop = b->deps[i];
        }
        if (prop == NULL)
            return bad(f, "deps hold no proposal (a gen.* or rev.* step) for the %s call",
                       call->phase);
        if ((b->proposal = dep_text(prop)) == NULL) return CBM_ENOMEM;
        cJSON_AddStringToObject(b->vars, "proposal", b->proposal);
    }
    if (ph == PROMPT_REVISE) {
        if ((rc = critiques_text(b->deps, b->ndeps, &b->text)) != 0) return rc;
        cJSON_AddStringToObject(b->vars, "critiques", llm_buf_str(&b->text));
    } else if (ph == PROMPT_SCORE) {
        if ((rc = rubric_text(get(def, "rubric"), call, &b->text, f)) != 0) return rc;
        cJSON_AddStringToObject(b->vars, "rubric", llm_buf_str(&b->text));
    }
    return 0;
}

/* The request: model parameters, messages, seed, stream, schema. */
static int make_request(build_t *b, const cJSON *params, const cJSON *over, llm_call_t *call,
                        const call_opts_t *o, llm_failure_t *f)
{
    const cJSON *model = get(params, "model"), *v;
    const char *name = str(over, "model") != NULL ? str(over, "model") : str(model, "name");
    char *text;

    if ((name = pick_model(o, name)) == NULL)
        return bad(f, "inputs.params.model.name is missing and the worker has no default model");
    if ((call->model = strdup(name)) == NULL) return CBM_ENOMEM;
    if ((b->req = cJSON_CreateObject()) == NULL) return CBM_ENOMEM;
    cJSON_AddStringToObject(b->req, "model", name);
    cJSON_AddItemReferenceToObject(b->req, "messages", b->msgs);
    v = cJSON_IsNumber(get(over, "temperature")) ? get(over, "temperature") : get(model, "temperature");
    if (cJSON_IsNumber(v)) cJSON_AddNumberToObject(b->req, "temperature", v->valuedouble);
    if (cJSON_IsNumber(v = get(model, "top_p"))) cJSON_AddNumberToObject(b->req, "top_p", v->valuedouble);
    if (cJSON_IsNumber(v = get(model, "max_tokens")))
        cJSON_AddNumberToObject(b->req, "max_tokens", v->valuedouble);
    cJSON_AddNumberToObject(b->req, "n", 1);
    cJSON_AddNumberToObject(b->req, "seed", call->seed);
    cJSON_AddBoolToObject(b->req, "stream", 1);
    cJSON_AddBoolToObject(cJSON_AddObjectToObject(b->req, "stream_options"), "include_usage", 1);
    if (call->score) {
        cJSON_AddItemToObject(b->req, "response_format", score_format(call));
    } else if (cJSON_IsObject(v = get(model, "response_format"))) {
        /* the step's model.response_format, for the other phases: JSON
         * asked (json_schema, json_object) means content_json */
        const char *type = str(v, "type");
        cJSON_AddItemToObject(b->req, "response_format", cJSON_Duplicate(v, 1));
        call->schema = type != NULL && (strcmp(type, "json_schema") == 0 ||
                                         strcmp(type, "json_object") == 0);
    }
    if ((text = cJSON_PrintUnformatted(b->req)) == NULL) return CBM_ENOMEM;
    call->body = text;
    return 0;
}

/* args.phase, checked against the handler's phase. */
static int take_phase(const cJSON *args, const char *phase, llm_call_t *call, prompt_phase_t *ph,
                      llm_failure_t *f)
{
    const char *name = str(args, "phase");
    *ph = prompt_phase_of(name);
    if (*ph == 0 || *ph == PROMPT_SYSTEM)
        return bad(f, "args.phase must be generate, critique, revise or score");
    if (phase != NULL && strcmp(phase, name) != 0)
        return bad(f, "args.phase is %s but this is the %s handler", name, phase);
    snprintf(call->phase, sizeof(call->phase), "%s", name);
    call->schema = call->score = *ph == PROMPT_SCORE;
    return 0;
}

/* The acting agent: agents[args.agent mod P], or the judge to score. Its
 * id and its name into call. */
static int take_actor(const cJSON *def, const cJSON *args, prompt_phase_t ph, llm_call_t *call,
                      const cJSON **actor, llm_failure_t *f)
{
    const cJSON *agents = get(def, "agents"), *idx = get(args, "agent");
    const char *id = "judge";
    int k, p;

    if (!cJSON_IsObject(def)) return bad(f, "inputs.council.definition must be an object");
    if (!cJSON_IsArray(agents) || cJSON_GetArraySize(agents) == 0)
        return bad(f, "inputs.council.definition.agents must be a non-empty array");
    if (!cJSON_IsNumber(idx) || idx->valuedouble < 0 || idx->valuedouble > 1e6 ||
        idx->valuedouble != (double)(int)idx->valuedouble)
        return bad(f, "args.agent must be an integer >= 0");
    p = cJSON_GetArraySize(agents);
    k = (int)idx->valuedouble % p;
    if (ph == PROMPT_SCORE) {
        *actor = get(def, "judge");
    } else {
        *actor = cJSON_GetArrayItem(agents, k);
        if ((id = str(*actor, "id")) == NULL)
            return bad(f, "inputs.council.definition.agents[%d].id must be a string", k);
    }
    if ((call->agent_id = strdup(id)) == NULL) return CBM_ENOMEM;
    if (ph == PROMPT_SCORE || (int)idx->valuedouble < p) {
        call->agent = strdup(id);
    } else { /* the k-th reuse of a profile: "<id>#<k>" (deliberation.md §2) */
        size_t n = strlen(id) + 16;
        if ((call->agent = malloc(n)) != NULL)
            snprintf(call->agent, n, "%s#%d", id, (int)idx->valuedouble / p + 1);
    }
    return call->agent != NULL ? 0 : CBM_ENOMEM;
}

/* The two messages, rendered, and the hash of their canonical JSON. */
static int make_messages(build_t *b, const cJSON *def, llm_call_t *call, llm_failure_t *f)
{
    char what[32], *text;
    cJSON *sys, *user;
    int rc;

    if ((rc = render(str(def, "system_prompt"), "system_prompt", b->vars, &b->system, f)) != 0)
        return rc;
    snprintf(what, sizeof(what), "prompts.%s", call->phase);
    if ((rc = render(str(get(def, "prompts"), call->phase), what, b->vars, &b->user, f)) != 0)
        return rc;
    /* Keys in sorted order: the messages' compact JSON is then the
     * canonical JSON (sorted keys, no spaces, UTF-8 as it is) that
     * prompt_sha256 hashes, the same text the stub hashes in its journal. */
    b->msgs = cJSON_CreateArray();
    sys = cJSON_CreateObject();
    user = cJSON_CreateObject();
    cJSON_AddStringToObject(sys, "content", b->system);
    cJSON_AddStringToObject(sys, "role", "system");
    cJSON_AddStringToObject(user, "content", b->user);
    cJSON_AddStringToObject(user, "role", "user");
    cJSON_AddItemToArray(b->msgs, sys);
    cJSON_AddItemToArray(b->msgs, user);
    if ((text = cJSON_PrintUnformatted(b->msgs)) == NULL) return CBM_ENOMEM;
    sha256_hex(text, strlen(text), call->prompt_sha256);
    free(text);
    return 0;
}

int call_build(const cbm_step_call_t *sc, const char *phase, const call_opts_t *o,
               llm_call_t *call, llm_failure_t *f)
{
    build_t b = {0};
    const cJSON *inputs, *args, *def, *actor = NULL;
    prompt_phase_t ph;
    int rc;

    memset(call, 0, sizeof(*call));
    snprintf(call->task_id, sizeof(call->task_id), "%s/%s/%d", sc->execution_id, sc->step,
             sc->attempt);
    call->seed = call_seed(call->task_id);
    if (sc->input_json == NULL || !cJSON_IsObject(b.in = cJSON_Parse(sc->input_json))) {
        rc = bad(f, "the task's input is not a JSON object");
        goto out;
    }
    inputs = get(b.in, "inputs");
    args = get(b.in, "args");
    def = get(get(inputs, "council"), "definition");
    if (!cJSON_IsObject(args)) {
        rc = bad(f, "args is missing: an LLM step of a deliberation carries "
                    "{\"phase\", \"agent\", \"round\"}");
        goto out;
    }
    if ((rc = take_phase(args, phase, call, &ph, f)) != 0 ||
        (rc = take_actor(def, args, ph, call, &actor, f)) != 0 ||
        (rc = sort_deps(&b, get(b.in, "deps"), f)) != 0)
        goto out;
    for (size_t i = 0; i < b.ndeps; i++)
        if (dep_failed(b.deps[i])) {
            rc = skipped_result(call, b.deps[i]);
            goto out;
        }
    if ((rc = set_vars(&b, inputs, def, str(actor, "persona"), ph, call, args, f)) != 0 ||
        (rc = make_messages(&b, def, call, f)) != 0)
        goto out;
    rc = make_request(&b, get(inputs, "params"), actor, call, o, f);
out:
    build_free(&b);
    if (rc != 0) call_finish(call);
    return rc;
}

void call_finish(llm_call_t *call)
{
    free(call->agent);
    free(call->agent_id);
    free(call->skipped);
    free(call->body);
    free(call->model);
    for (size_t i = 0; i < call->ncriteria; i++) free(call->criteria[i]);
    free(call->criteria);
    call->agent = call->agent_id = call->skipped = call->body = call->model = NULL;
    call->criteria = NULL;
    call->ncriteria = 0;
}

/* ---------------------------------------------------------------- result */

/* The content as the asked JSON, or NULL with *f; for a score, checked
 * against the rubric. A fenced block (```json … ```), which models add when
 * nothing enforces the schema, is read for its inside. */
static cJSON *content_json(const llm_call_t *call, const char *content, llm_failure_t *f)
{
    const char *s = content, *e = content + strlen(content);
    const cJSON *crit;
    cJSON *j;

    while (s < e && isspace((unsigned char)*s)) s++;
    while (e > s && isspace((unsigned char)e[-1])) e--;
    if (e - s >= 6 && strncmp(s, "```", 3) == 0 && strncmp(e - 3, "```", 3) == 0) {
        const char *nl = memchr(s, '\n', (size_t)(e - s));
        if (nl != NULL && nl < e - 3) {
            s = nl + 1;
            e -= 3;
        }
    }
    j = cJSON_ParseWithLength(s, (size_t)(e - s));
    f->kind = "llm_bad_output";
    f->retryable = true;
    f->retry_after_ms = -1;
    if (!call->score) {
        if (j != NULL) return j;
        snprintf(f->message, sizeof(f->message), "the answer is not JSON: %.80s", content);
        return NULL;
    }
    if (!cJSON_IsObject(j)) {
        snprintf(f->message, sizeof(f->message), "the answer is not a JSON object: %.80s", content);
        goto bad;
    }
    crit = get(j, "criteria");
    if (!cJSON_IsObject(crit)) {
        snprintf(f->message, sizeof(f->message), "the answer has no criteria object");
        goto bad;
    }
    for (size_t i = 0; i < call->ncriteria; i++) {
        const cJSON *v = get(crit, call->criteria[i]);
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1) {
            snprintf(f->message, sizeof(f->message),
                     "criteria.%s of the answer is not a number from 0 to 1", call->criteria[i]);
            goto bad;
        }
    }
    if (!cJSON_IsString(get(j, "rationale"))) {
        snprintf(f->message, sizeof(f->message), "the answer has no rationale string");
        goto bad;
    }
    return j;
bad:
    cJSON_Delete(j);
    return NULL;
}

int call_result(const llm_call_t *call, const sse_chat_t *chat, int64_t ttft_ms,
                int64_t latency_ms, size_t max_bytes, char **json, llm_failure_t *f)
{
    cJSON *r = NULL, *cj = NULL, *u;
    const char *content = llm_buf_str(&chat->content);
    size_t n;

    *json = NULL;
    if (call->schema && (cj = content_json(call, content, f)) == NULL) return 1;
    if ((r = cJSON_CreateObject()) == NULL) {
        cJSON_Delete(cj);
        return CBM_ENOMEM;
    }
    cJSON_AddStringToObject(r, "agent", call->agent);
    cJSON_AddStringToObject(r, "phase", call->phase);
    cJSON_AddStringToObject(r, "content", content);
    if (cj != NULL) cJSON_AddItemToObject(r, "content_json", cj);
    cJSON_AddStringToObject(r, "finish_reason", chat->finish_reason);
    cJSON_AddStringToObject(r, "model", chat->model[0] != '\0' ? chat->model : call->model);
    cJSON_AddNumberToObject(r, "seed", call->seed);
    u = cJSON_AddObjectToObject(r, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)chat->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)chat->completion_tokens);
    cJSON_AddNumberToObject(u, "cached_tokens", (double)chat->cached_tokens);
    cJSON_AddNumberToObject(r, "ttft_ms", (double)ttft_ms);
    cJSON_AddNumberToObject(r, "latency_ms", (double)latency_ms);
    cJSON_AddStringToObject(r, "prompt_sha256", call->prompt_sha256);
    *json = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    if (*json == NULL) return CBM_ENOMEM;
    if ((n = strlen(*json)) > max_bytes) {
        free(*json);
        *json = NULL;
        f->kind = "llm_result_too_large";
        f->retryable = false;
        f->retry_after_ms = -1;
        snprintf(f->message, sizeof(f->message), "the result is %zu bytes, over the limit of %zu",
                 n, max_bytes);
        return 1;
    }
    return 0;
}
