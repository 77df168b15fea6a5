/*
 * delib.c - the deliberation kind's pure parts (delib.h): the call count and
 * the budget check, reading a council definition, the expansion of a step
 * into its child's blueprint, and the child's inputs.
 *
 * The expansion builds the blueprint as a cJSON tree in the format of
 * docs/blueprints.md and returns what bp_parse_json() makes of it: the
 * canonical JSON. So the generated blueprint is checked by the one
 * validator, and the text returned is the text registration stores. Step
 * names are fixed by docs/deliberation.md §3 (gen.<i>, crit.<r>.<i>,
 * crit.<r>.<i>.<j>, rev.<r>.<i>, score.<i>, select, pick, finish); so are
 * their handlers, dependencies and args. Every step but the last (select,
 * or finish with selection approval) is an ancestor of it, so the child's
 * execution result is {"select": <the deliberation's result>} (or
 * {"finish": ...}).
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/blueprint_internal.h"
#include "engine/delib.h"
#include "engine/json_text.h"
#include "engine/match.h"

#define DEFAULT_LLM_QUEUE "llm"
#define MAX_TOKENS_MAX 1000000

int64_t delib_llm_calls(bp_topology_t topology, int agents, int rounds, bp_scoring_t scoring)
{
    int64_t n = agents, calls = n;
    if (topology == BP_TOPOLOGY_RING) calls += (int64_t)rounds * 2 * n;
    else if (topology == BP_TOPOLOGY_ALL_TO_ALL) calls += (int64_t)rounds * n * n;
    if (scoring == BP_SCORING_JUDGE) calls += n;
    return calls;
}

int delib_check_budget(const bp_step_t *step, int agents, int64_t max_tokens, cbm_error_t *err)
{
    const bp_delib_t *d = step->delib;
    int64_t calls, attempts, worst;

    if (d == NULL || agents < 1)
        return cbm_error_set(err, CBM_EINVAL, "delib_check_budget: not a deliberation step");
    calls = delib_llm_calls(d->topology, agents, d->rounds, d->scoring);
    attempts = d->call_retry.max_attempts;
    worst = calls * attempts;
    if (d->max_calls > 0 && worst > d->max_calls)
        return cbm_error_set(err, CBM_EINVAL,
                             "step '%s': budget.max_calls is %" PRId64
                             " but the deliberation may make up to %" PRId64 " calls (%" PRId64
                             " calls × %" PRId64 " attempt%s)",
                             step->name, d->max_calls, worst, calls, attempts,
                             attempts == 1 ? "" : "s");
    if (d->max_completion_tokens > 0 && max_tokens > 0 &&
        calls * max_tokens > d->max_completion_tokens)
        return cbm_error_set(err, CBM_EINVAL,
                             "step '%s': budget.max_completion_tokens is %" PRId64
                             " but the deliberation may use up to %" PRId64
                             " completion tokens (%" PRId64 " calls × %" PRId64 " max_tokens)",
                             step->name, d->max_completion_tokens, calls * max_tokens, calls,
                             max_tokens);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The council definition                                                   */
/* ------------------------------------------------------------------------ */

/* What the expansion and the child's inputs read of a council. The council
 * module validates definitions when they are stored; this is read again
 * defensively, as the text comes from the database. */
typedef struct council {
    cJSON *root;             /* owned */
    const char *name;
    const char *queue;       /* DEFAULT_LLM_QUEUE when absent */
    const cJSON *requires;   /* NULL when absent */
    const cJSON *model;      /* NULL when absent */
    int size;                /* P: the number of agent profiles */
    int64_t max_tokens;      /* model.max_tokens; 0 when absent */
    bool rubric;             /* a non-empty rubric object */
} council_t;

static int council_read(const bp_step_t *step, const char *json, council_t *c, cbm_error_t *err)
{
    const cJSON *it, *a;
    int rc;

    memset(c, 0, sizeof(*c));
    if (json == NULL)
        return cbm_error_set(err, CBM_EINVAL, "step '%s': no council definition", step->name);
    if ((c->root = json_text_parse(json, &rc)) == NULL)
        return cbm_error_set(err, rc, "step '%s': council definition: %s", step->name,
                             rc == CBM_ENOMEM ? "out of memory" : "malformed JSON");
    if (!cJSON_IsObject(c->root))
        return cbm_error_set(err, CBM_EINVAL, "step '%s': council definition must be an object",
                             step->name);
    it = cJSON_GetObjectItemCaseSensitive(c->root, "name");
    if (!cJSON_IsString(it) || it->valuestring[0] == '\0')
        return cbm_error_set(err, CBM_EINVAL, "step '%s': council definition has no name",
                             step->name);
    c->name = it->valuestring;
#define BAD(...) cbm_error_set(err, CBM_EINVAL, __VA_ARGS__)
    it = cJSON_GetObjectItemCaseSensitive(c->root, "agents");
    if (!cJSON_IsArray(it)) it = NULL;
    cJSON_ArrayForEach(a, it) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        if (!cJSON_IsObject(a) || !cJSON_IsString(id) || id->valuestring[0] == '\0')
            return BAD("step '%s': council '%.128s': agents[%d] must be an object with an id",
                       step->name, c->name, c->size);
        c->size++;
    }
    if (c->size < 1 || c->size > BP_DELIB_MAX_AGENTS)
        return BAD("step '%s': council '%.128s': agents must be an array of 1 to %d agents",
                   step->name, c->name, BP_DELIB_MAX_AGENTS);
    c->queue = DEFAULT_LLM_QUEUE;
    if ((it = cJSON_GetObjectItemCaseSensitive(c->root, "queue")) != NULL) {
        if (!cJSON_IsString(it) || it->valuestring[0] == '\0' ||
            strlen(it->valuestring) > NAME_MAX_LEN || !bp_name_chars_ok(it->valuestring))
            return BAD("step '%s': council '%.128s': queue must be a name", step->name, c->name);
        c->queue = it->valuestring;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(c->root, "requires")) != NULL) {
        if (!cJSON_IsObject(it))
            return BAD("step '%s': council '%.128s': requires must be an object", step->name,
                       c->name);
        c->requires = it;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(c->root, "model")) != NULL) {
        const cJSON *mt = cJSON_GetObjectItemCaseSensitive(it, "max_tokens");
        if (!cJSON_IsObject(it))
            return BAD("step '%s': council '%.128s': model must be an object", step->name,
                       c->name);
        if (mt != NULL) {
            double v = cJSON_IsNumber(mt) ? mt->valuedouble : NAN;
            if (!(v >= 1 && v <= MAX_TOKENS_MAX && floor(v) == v))
                return BAD("step '%s': council '%.128s': model.max_tokens must be an integer "
                           "from 1 to %d",
                           step->name, c->name, MAX_TOKENS_MAX);
            c->max_tokens = (int64_t)v;
        }
        c->model = it;
    }
    it = cJSON_GetObjectItemCaseSensitive(c->root, "rubric");
    c->rubric = cJSON_IsObject(it) && it->child != NULL;
#undef BAD
    return 0;
}

/* N and max_tokens, and what the council must have for this step. */
static int council_fit(const bp_step_t *step, const council_t *c, int *agents,
                       int64_t *max_tokens, cbm_error_t *err)
{
    const bp_delib_t *d = step->delib;
    int n = d->agents > 0 ? d->agents : c->size;

    if (d->topology != BP_TOPOLOGY_NONE && n < 2)
        return cbm_error_set(err, CBM_EINVAL,
                             "step '%s': council '%.128s' has 1 agent, and topology %s needs at "
                             "least 2",
                             step->name, c->name, bp_topology_names[d->topology]);
    if (d->scoring == BP_SCORING_JUDGE && !c->rubric)
        return cbm_error_set(err, CBM_EINVAL,
                             "step '%s': council '%.128s' has no rubric, which scoring mode judge "
                             "needs",
                             step->name, c->name);
    if (d->min_proposals > n)
        return cbm_error_set(err, CBM_EINVAL,
                             "step '%s': selection.min_proposals (%d) is more than the %d agents "
                             "of council '%.128s'",
                             step->name, d->min_proposals, n, c->name);
    *agents = n;
    *max_tokens = d->max_tokens > 0 ? d->max_tokens : c->max_tokens;
    return 0;
}

static int check_step(const bp_step_t *step, cbm_error_t *err)
{
    if (step == NULL || step->kind != BP_DELIBERATION || step->delib == NULL)
        return cbm_error_set(err, CBM_EINVAL, "not a deliberation step");
    return 0;
}

int delib_agents(const bp_step_t *step, const char *council_json, int *agents,
                 int64_t *max_tokens, cbm_error_t *err)
{
    council_t c;
    int rc;
    if ((rc = check_step(step, err)) != 0) return rc;
    if ((rc = council_read(step, council_json, &c, err)) == 0)
        rc = council_fit(step, &c, agents, max_tokens, err);
    cJSON_Delete(c.root);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Building JSON                                                            */
/* ------------------------------------------------------------------------ */

/* The builders below take a flag that turns false at the first allocation
 * that fails, so that the tree is built in straight lines and checked once. */

static cJSON *add_item(cJSON *to, const char *key, cJSON *item, bool *ok)
{
    if (item == NULL || to == NULL ||
        !(key != NULL ? cJSON_AddItemToObject(to, key, item) : cJSON_AddItemToArray(to, item))) {
        cJSON_Delete(item);
        *ok = false;
        return NULL;
    }
    return item;
}

static void add_str(cJSON *to, const char *key, const char *v, bool *ok)
{
    add_item(to, key, cJSON_CreateString(v), ok);
}

/* Integers as integers (the canonical form prints them so anyway). */
static void add_num(cJSON *to, const char *key, int64_t v, bool *ok)
{
    add_item(to, key, cJSON_CreateNumber((double)v), ok);
}

static void add_copy(cJSON *to, const char *key, const cJSON *v, bool *ok)
{
    add_item(to, key, cJSON_Duplicate(v, true), ok);
}

static cJSON *add_obj(cJSON *to, const char *key, bool *ok)
{
    return add_item(to, key, cJSON_CreateObject(), ok);
}

static cJSON *add_arr(cJSON *to, const char *key, bool *ok)
{
    return add_item(to, key, cJSON_CreateArray(), ok);
}

static cJSON *retry_json(const bp_retry_t *r, bool *ok)
{
    cJSON *o = cJSON_CreateObject(), *nr;
    if (o == NULL) {
        *ok = false;
        return NULL;
    }
    add_num(o, "max_attempts", r->max_attempts, ok);
    add_num(o, "initial_ms", r->initial_ms, ok);
    add_num(o, "max_ms", r->max_ms, ok);
    add_item(o, "multiplier", cJSON_CreateNumber(r->multiplier), ok);
    nr = add_arr(o, "non_retryable", ok);
    for (size_t k = 0; k < r->n_non_retryable; k++) add_str(nr, NULL, r->non_retryable[k], ok);
    return o;
}

/* ------------------------------------------------------------------------ */
/* The expansion                                                            */
/* ------------------------------------------------------------------------ */

/* Step names are at most "crit.5.15.14"; the room is for the compiler, who
 * cannot know that the numbers are small. */
#define SNAME 64

typedef struct expansion {
    const bp_delib_t *d;
    const council_t *c;
    int n;
    cJSON *steps;            /* the blueprint's steps array */
    bool ok;
} expansion_t;

/* The proposal of agent i after round r: gen.<i> for round 0, rev.<r>.<i>. */
static void proposal_name(int r, int i, char name[SNAME])
{
    if (r == 0) snprintf(name, SNAME, "gen.%d", i);
    else snprintf(name, SNAME, "rev.%d.%d", r, i);
}

/* A step {"name", "handler", "queue", "depends_on": [], "args": {"phase"}};
 * the caller adds the dependencies to the returned array and the rest of
 * args. */
static cJSON *new_step(expansion_t *x, const char *name, const char *handler, const char *queue,
                       const char *phase, cJSON **deps, cJSON **args)
{
    cJSON *s = add_obj(x->steps, NULL, &x->ok);
    add_str(s, "name", name, &x->ok);
    add_str(s, "handler", handler, &x->ok);
    add_str(s, "queue", queue, &x->ok);
    *deps = add_arr(s, "depends_on", &x->ok);
    *args = add_obj(s, "args", &x->ok);
    add_str(*args, "phase", phase, &x->ok);
    return s;
}

/* What every call of the deliberation carries: the call settings, and the
 * rule that makes an agent's failure its result rather than the child's. */
static void call_settings(expansion_t *x, cJSON *s)
{
    cJSON *rules, *rule;
    if (x->d->call_timeout_ms > 0) add_num(s, "timeout_ms", x->d->call_timeout_ms, &x->ok);
    add_item(s, "retry", retry_json(&x->d->call_retry, &x->ok), &x->ok);
    rules = add_arr(s, "diverge", &x->ok);
    rule = add_obj(rules, NULL, &x->ok);
    add_obj(rule, "match", &x->ok); /* {} matches every error object */
    add_str(rule, "on", "error", &x->ok);
    add_str(rule, "action", "continue", &x->ok);
}

/* An LLM call: on the council's queue, with its requires. */
static cJSON *llm_step(expansion_t *x, const char *name, const char *handler, const char *phase,
                       int agent, int round, cJSON **deps, cJSON **args)
{
    cJSON *s = new_step(x, name, handler, x->c->queue, phase, deps, args);
    add_num(*args, "agent", agent, &x->ok);
    add_num(*args, "round", round, &x->ok);
    call_settings(x, s);
    if (x->d->call_heartbeat_timeout_ms > 0)
        add_num(s, "heartbeat_timeout_ms", x->d->call_heartbeat_timeout_ms, &x->ok);
    if (x->c->requires != NULL) add_copy(s, "requires", x->c->requires, &x->ok);
    return s;
}

static void expand_rounds(expansion_t *x)
{
    const bp_delib_t *d = x->d;
    char name[SNAME], dep[SNAME];
    cJSON *deps, *args;
    int n = x->n;

    for (int r = 1; r <= d->rounds; r++) {
        /* Critiques of the proposals of round r - 1. */
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                if (j == i) continue;
                if (d->topology == BP_TOPOLOGY_RING) {
                    if (j != (i + 1) % n) continue;
                    snprintf(name, SNAME, "crit.%d.%d", r, i);
                } else {
                    snprintf(name, SNAME, "crit.%d.%d.%d", r, i, j);
                }
                llm_step(x, name, "cbm.llm.critique", "critique", i, r, &deps, &args);
                add_num(args, "target", j, &x->ok);
                proposal_name(r - 1, j, dep);
                add_str(deps, NULL, dep, &x->ok);
            }
        }
        /* Each author revises its proposal with the critiques of it. */
        for (int i = 0; i < n; i++) {
            snprintf(name, SNAME, "rev.%d.%d", r, i);
            llm_step(x, name, "cbm.llm.revise", "revise", i, r, &deps, &args);
            proposal_name(r - 1, i, dep);
            add_str(deps, NULL, dep, &x->ok);
            for (int k = 0; k < n; k++) {
                if (k == i) continue;
                if (d->topology == BP_TOPOLOGY_RING) {
                    if ((k + 1) % n != i) continue;
                    snprintf(dep, SNAME, "crit.%d.%d", r, k);
                } else {
                    snprintf(dep, SNAME, "crit.%d.%d.%d", r, k, i);
                }
                add_str(deps, NULL, dep, &x->ok);
            }
        }
    }
}

static void expand_steps(expansion_t *x)
{
    const bp_delib_t *d = x->d;
    char name[SNAME], dep[SNAME];
    cJSON *deps, *args, *s, *select_deps;
    int n = x->n, last = d->topology == BP_TOPOLOGY_NONE ? 0 : d->rounds;

    for (int i = 0; i < n; i++) {
        snprintf(name, SNAME, "gen.%d", i);
        llm_step(x, name, "cbm.llm.generate", "generate", i, 0, &deps, &args);
    }
    if (d->topology != BP_TOPOLOGY_NONE) expand_rounds(x);
    for (int i = 0; d->scoring != BP_SCORING_NONE && i < n; i++) {
        snprintf(name, SNAME, "score.%d", i);
        if (d->scoring == BP_SCORING_JUDGE) {
            llm_step(x, name, "cbm.llm.score", "score", i, 0, &deps, &args);
        } else {
            /* The user's check: its own queue, the call's time-out and retry,
             * but not the LLM worker's heartbeat or the council's requires. */
            s = new_step(x, name, d->scoring_handler, d->scoring_queue, "score", &deps, &args);
            add_num(args, "agent", i, &x->ok);
            add_num(args, "round", 0, &x->ok);
            call_settings(x, s);
        }
        proposal_name(last, i, dep);
        add_str(deps, NULL, dep, &x->ok);
    }
    new_step(x, "select", "cbm.deliberation.select", "local", "select", &select_deps, &args);
    add_num(args, "expansion", DELIB_EXPANSION_VERSION, &x->ok);
    for (int i = 0; i < n; i++) {
        proposal_name(last, i, dep);
        add_str(select_deps, NULL, dep, &x->ok);
        if (d->scoring == BP_SCORING_NONE) continue;
        snprintf(dep, SNAME, "score.%d", i);
        add_str(select_deps, NULL, dep, &x->ok);
    }
    if (d->rule == BP_SELECT_APPROVAL) {
        s = add_obj(x->steps, NULL, &x->ok);
        add_str(s, "name", "pick", &x->ok);
        add_str(s, "kind", "approval", &x->ok);
        add_str(s, "approval_type", "deliberation_pick", &x->ok);
        deps = add_arr(s, "depends_on", &x->ok);
        add_str(deps, NULL, "select", &x->ok);
        new_step(x, "finish", "cbm.deliberation.finish", "local", "finish", &deps, &args);
        add_num(args, "expansion", DELIB_EXPANSION_VERSION, &x->ok);
        add_str(deps, NULL, "select", &x->ok);
        add_str(deps, NULL, "pick", &x->ok);
    }
}

/* The declared inputs of the child (delib_child_inputs() gives them). */
static void declare_inputs(cJSON *root, bool *ok)
{
    static const char *const names[] = {"task", "context", "council", "params"};
    cJSON *ins = add_obj(root, "inputs", ok);
    for (size_t k = 0; k < 4; k++) {
        cJSON *in = add_obj(ins, names[k], ok);
        if (k >= 2) add_str(in, "type", "object", ok);
        add_item(in, "required", cJSON_CreateTrue(), ok);
    }
}

int delib_expand(const bp_step_t *step, const char *parent_blueprint, const char *council_json,
                 char **out, cbm_error_t *err)
{
    expansion_t x = {0};
    council_t c = {0};
    bp_blueprint_t *bp = NULL;
    cJSON *root = NULL;
    char *text = NULL, name[3 * NAME_MAX_LEN];
    int64_t max_tokens;
    int rc;

    if (out == NULL) return cbm_error_set(err, CBM_EINVAL, "delib_expand: out is NULL");
    *out = NULL;
    if ((rc = check_step(step, err)) != 0) return rc;
    if (parent_blueprint == NULL)
        return cbm_error_set(err, CBM_EINVAL, "delib_expand: no parent blueprint");
    if ((rc = council_read(step, council_json, &c, err)) != 0 ||
        (rc = council_fit(step, &c, &x.n, &max_tokens, err)) != 0)
        goto done;

    x.d = step->delib;
    x.c = &c;
    x.ok = true;
    snprintf(name, sizeof(name), "%s%s.%s", DELIB_NAME_PREFIX, parent_blueprint, step->name);
    root = cJSON_CreateObject();
    add_str(root, "name", name, &x.ok);
    declare_inputs(root, &x.ok);
    if (x.d->budget_timeout_ms > 0) add_num(root, "timeout_ms", x.d->budget_timeout_ms, &x.ok);
    x.steps = add_arr(root, "steps", &x.ok);
    if (root != NULL && x.ok) expand_steps(&x);
    if (root == NULL || !x.ok || (text = cJSON_PrintUnformatted(root)) == NULL) {
        rc = cbm_error_set(err, CBM_ENOMEM, "out of memory while expanding a deliberation");
        goto done;
    }
    /* The one validator; its canonical JSON is the result. */
    if ((rc = bp_parse_json(text, strlen(text), &bp, err)) != 0) {
        if (rc == CBM_EBLUEPRINT) {
            char msg[sizeof(err->message)];
            snprintf(msg, sizeof(msg), "%s", err->message);
            rc = cbm_error_set(err, CBM_EINVAL,
                               "step '%s': council '%.128s' makes an invalid blueprint: %s",
                               step->name, c.name, msg);
        }
        goto done;
    }
    *out = bp->canonical_json;
    bp->canonical_json = NULL;
done:
    bp_destroy(bp);
    cJSON_free(text);
    cJSON_Delete(root);
    cJSON_Delete(c.root);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The child's inputs                                                       */
/* ------------------------------------------------------------------------ */

/* Set key of m to v: in the place of the key's value when there is one
 * (the council's order is kept), else at the end. */
static void set_item(cJSON *m, const char *key, cJSON *v, bool *ok)
{
    if (m == NULL || v == NULL || cJSON_GetObjectItemCaseSensitive(m, key) == NULL) {
        add_item(m, key, v, ok);
    } else if (!cJSON_ReplaceItemInObjectCaseSensitive(m, key, v)) {
        cJSON_Delete(v);
        *ok = false;
    }
}

/* The council's model with the step's overrides put over it. */
static cJSON *merged_model(const bp_delib_t *d, const council_t *c, bool *ok)
{
    cJSON *m = c->model != NULL ? cJSON_Duplicate(c->model, true) : cJSON_CreateObject();
    if (m == NULL) {
        *ok = false;
        return NULL;
    }
    if (d->temperature >= 0) set_item(m, "temperature", cJSON_CreateNumber(d->temperature), ok);
    if (d->top_p >= 0) set_item(m, "top_p", cJSON_CreateNumber(d->top_p), ok);
    if (d->max_tokens > 0) set_item(m, "max_tokens", cJSON_CreateNumber((double)d->max_tokens), ok);
    if (d->response_format != NULL)
        set_item(m, "response_format", cJSON_Duplicate(d->response_format, true), ok);
    return m;
}

static void add_params(cJSON *root, const bp_delib_t *d, const council_t *c, int n, bool *ok)
{
    cJSON *params = add_obj(root, "params", ok), *o;
    add_num(params, "agents", n, ok);
    add_num(params, "rounds", d->rounds, ok);
    add_str(params, "topology", bp_topology_names[d->topology], ok);
    o = add_obj(params, "scoring", ok);
    add_str(o, "mode", bp_scoring_names[d->scoring], ok);
    if (d->scoring_handler != NULL) {
        add_str(o, "handler", d->scoring_handler, ok);
        add_str(o, "queue", d->scoring_queue, ok);
    }
    o = add_obj(params, "selection", ok);
    add_str(o, "rule", bp_selection_names[d->rule], ok);
    add_num(o, "top_k", d->top_k, ok);
    add_num(o, "min_proposals", d->min_proposals, ok);
    if (d->threshold >= 0) add_item(o, "threshold", cJSON_CreateNumber(d->threshold), ok);
    add_item(params, "model", merged_model(d, c, ok), ok);
}

int delib_child_inputs(const bp_step_t *step, const char *step_input_json,
                       const char *council_version, const char *council_json, char **out,
                       cbm_error_t *err)
{
    council_t c = {0};
    cJSON *data = NULL, *root = NULL, *v = NULL, *council;
    int64_t max_tokens;
    bool ok = true;
    int n, rc;

    if (out == NULL) return cbm_error_set(err, CBM_EINVAL, "delib_child_inputs: out is NULL");
    *out = NULL;
    if ((rc = check_step(step, err)) != 0) return rc;
    if (council_version == NULL)
        return cbm_error_set(err, CBM_EINVAL, "delib_child_inputs: no council version");
    if ((rc = council_read(step, council_json, &c, err)) != 0 ||
        (rc = council_fit(step, &c, &n, &max_tokens, err)) != 0)
        goto done;
    if ((data = json_text_parse(step_input_json, &rc)) == NULL) {
        rc = cbm_error_set(err, rc, "step '%s': its input: %s", step->name,
                           rc == CBM_ENOMEM ? "out of memory" : "malformed JSON");
        goto done;
    }
    if ((root = cJSON_CreateObject()) == NULL) ok = false;
    /* The templates, as a subworkflow's inputs: a missing value is null. */
    if (ok && match_template(step->delib->task, data, &v) != 0) ok = false;
    add_item(root, "task", v, &ok);
    v = NULL;
    if (ok && match_template(step->delib->context, data, &v) != 0) ok = false;
    add_item(root, "context", v, &ok);
    council = add_obj(root, "council", &ok);
    add_str(council, "name", c.name, &ok);
    add_str(council, "version", council_version, &ok);
    add_copy(council, "definition", c.root, &ok);
    add_params(root, step->delib, &c, n, &ok);
    if (!ok || (*out = cJSON_PrintUnformatted(root)) == NULL)
        rc = cbm_error_set(err, CBM_ENOMEM, "out of memory while building a deliberation's inputs");
done:
    cJSON_Delete(root);
    cJSON_Delete(data);
    cJSON_Delete(c.root);
    return rc;
}
