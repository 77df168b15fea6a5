/*
 * delib_select.c - the built-in handlers of a deliberation's child as pure
 * functions (delib_select.h): select ranks the surviving proposals and
 * selects (docs/deliberation.md §5), finish applies a person's pick.
 *
 * select sees only its direct dependencies: the final proposal of each agent
 * and, with scoring, its score. So the "usage" of its result counts the
 * calls whose results it sees — the final proposals' and the judge's — not
 * the generate, critique and revise calls of earlier rounds; the history
 * has every call's usage.
 *
 * Scores are rounded to 12 decimal places before anything compares them, so
 * that a weighted mean that is 0.86 in decimal ranks (and prints) as 0.86.
 */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "cbm_internal.h"
#include "engine/blueprint.h"
#include "engine/delib.h"
#include "engine/delib_select.h"
#include "engine/json_text.h"

#define KIND_BAD_INPUT "deliberation_bad_input"
#define KIND_QUORUM "deliberation_quorum"
#define KIND_BAD_PICK "deliberation_bad_pick"

/* Room for a profile id (a name, at most 128 bytes) and "#16". */
#define AGENT_NAME 160
#define STEP_NAME 64

typedef struct agent {
    char name[AGENT_NAME];
    char final[STEP_NAME];   /* the step of its final proposal */
    char score_step[STEP_NAME];
    const cJSON *proposal;   /* the call result, when it survived */
    double score;            /* with scoring, when it survived */
    const cJSON *criteria;   /* handler scoring: its criteria, or NULL */
    bool alive;
} agent_t;

typedef struct sel {
    cJSON *in;               /* the parsed input (owned) */
    const cJSON *deps;
    const cJSON *council;    /* inputs.council */
    const cJSON *rubric;     /* judge: the council's rubric */
    int n, last_round;
    int scoring;             /* 0 judge, 1 handler, 2 none */
    int rule;                /* 0 top_score, 1 threshold_first, 2 approval, 3 all */
    int top_k, min_proposals;
    double threshold;
    agent_t a[BP_DELIB_MAX_AGENTS];
    cJSON *failed;           /* the result's failed array */
    bool ok;                 /* false after an allocation failed */
} sel_t;

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* printf into a string from cJSON's allocator; NULL when out of memory. */
static char *fmt(const char *f, ...) CBM_PRINTF(1, 2);
static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s;
    int n;
    va_start(ap, f);
    n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    if (n < 0 || (s = cJSON_malloc((size_t)n + 1)) == NULL) return NULL;
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

static char *dup_str(const char *s)
{
    return fmt("%s", s);
}

/* Set the failure outcome; CBM_ENOMEM when its strings cannot be made. */
static int fail(char **kind, char **message, const char *k, char *msg)
{
    if (msg == NULL || (*kind = dup_str(k)) == NULL) {
        cJSON_free(msg);
        return CBM_ENOMEM;
    }
    *message = msg;
    return 0;
}

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

static void add_num(cJSON *to, const char *key, double v, bool *ok)
{
    add_item(to, key, cJSON_CreateNumber(v), ok);
}

static void add_copy(cJSON *to, const char *key, const cJSON *v, bool *ok)
{
    add_item(to, key, cJSON_Duplicate(v, true), ok);
}

static const cJSON *get(const cJSON *o, const char *key)
{
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static const char *get_str(const cJSON *o, const char *key)
{
    const cJSON *v = get(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* An integer in [min, max], or -1. */
static int get_int(const cJSON *o, const char *key, int min, int max)
{
    const cJSON *v = get(o, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= min && v->valuedouble <= max) ||
        floor(v->valuedouble) != v->valuedouble)
        return -1;
    return (int)v->valuedouble;
}

static int name_index(const char *s, const char *const *names)
{
    for (int i = 0; s != NULL && names[i] != NULL; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

static double round12(double v)
{
    return round(v * 1e12) / 1e12;
}

/* A number from 0 to 1, or -1. */
static double unit_number(const cJSON *v)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > 1)
        return -1;
    return v->valuedouble;
}

/* ------------------------------------------------------------------------ */
/* Reading the input                                                        */
/* ------------------------------------------------------------------------ */

/* NULL when the input is of the shape select needs, else why not (static). */
static const char *read_input(sel_t *s)
{
    static const char *const scorings[] = {"judge", "handler", "none", NULL};
    static const char *const rules[] = {"top_score", "threshold_first", "approval", "all", NULL};
    static const char *const topologies[] = {"none", "ring", "all_to_all", NULL};
    const cJSON *inputs = get(s->in, "inputs"), *params = get(inputs, "params"), *sel, *def,
                *agents, *it;
    int p = 0, topology, rounds, expansion;

    s->deps = get(s->in, "deps");
    if (!cJSON_IsObject(s->deps)) return "its input has no deps object";
    if ((it = get(get(s->in, "args"), "expansion")) != NULL &&
        ((expansion = get_int(get(s->in, "args"), "expansion", 1, 1000000)) < 0 ||
         expansion != DELIB_EXPANSION_VERSION))
        return "its args name an expansion version it does not know";
    s->council = get(inputs, "council");
    if (get_str(s->council, "name") == NULL || get_str(s->council, "version") == NULL)
        return "inputs.council needs a name and a version";
    def = get(s->council, "definition");
    agents = get(def, "agents");
    if (!cJSON_IsArray(agents)) agents = NULL;
    cJSON_ArrayForEach(it, agents) {
        if (get_str(it, "id") == NULL) return "an agent of the council has no id";
        p++;
    }
    if (p < 1) return "the council has no agents";
    if ((s->n = get_int(params, "agents", 1, BP_DELIB_MAX_AGENTS)) < 0)
        return "inputs.params.agents must be an integer from 1 to 16";
    if ((topology = name_index(get_str(params, "topology"), topologies)) < 0)
        return "inputs.params.topology must be none, ring or all_to_all";
    if ((rounds = get_int(params, "rounds", 0, BP_DELIB_MAX_ROUNDS)) < 0)
        return "inputs.params.rounds must be an integer from 0 to 5";
    s->last_round = topology == 0 ? 0 : rounds;
    if ((s->scoring = name_index(get_str(get(params, "scoring"), "mode"), scorings)) < 0)
        return "inputs.params.scoring.mode must be judge, handler or none";
    sel = get(params, "selection");
    if ((s->rule = name_index(get_str(sel, "rule"), rules)) < 0)
        return "inputs.params.selection.rule must be top_score, threshold_first, approval or "
               "all";
    if ((s->top_k = get_int(sel, "top_k", 1, BP_DELIB_MAX_AGENTS)) < 0 ||
        (s->min_proposals = get_int(sel, "min_proposals", 1, BP_DELIB_MAX_AGENTS)) < 0)
        return "inputs.params.selection needs top_k and min_proposals from 1 to 16";
    if (s->rule <= 1 && s->scoring == 2) return "selection rule needs scoring";
    s->threshold = -1;
    if (s->rule == 1 && (s->threshold = unit_number(get(sel, "threshold"))) < 0)
        return "inputs.params.selection.threshold must be a number from 0 to 1";
    if (s->scoring == 0) {
        s->rubric = get(def, "rubric");
        if (!cJSON_IsObject(s->rubric) || s->rubric->child == NULL)
            return "scoring judge needs the council's rubric";
        cJSON_ArrayForEach(it, s->rubric) {
            const cJSON *w = get(it, "weight");
            if (!cJSON_IsNumber(w) || !isfinite(w->valuedouble) || w->valuedouble <= 0)
                return "a criterion of the rubric has no positive weight";
        }
    }
    for (int i = 0; i < s->n; i++) {
        agent_t *a = &s->a[i];
        const char *id = NULL;
        int k = 0;
        cJSON_ArrayForEach(it, agents) {
            if (k++ == i % p) id = get_str(it, "id");
        }
        if (i < p) snprintf(a->name, sizeof(a->name), "%.128s", id);
        else snprintf(a->name, sizeof(a->name), "%.128s#%d", id, i / p + 1);
        if (s->last_round == 0) snprintf(a->final, sizeof(a->final), "gen.%d", i);
        else snprintf(a->final, sizeof(a->final), "rev.%d.%d", s->last_round, i);
        snprintf(a->score_step, sizeof(a->score_step), "score.%d", i);
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Proposals and scores                                                     */
/* ------------------------------------------------------------------------ */

static void add_failed(sel_t *s, const agent_t *a, const char *step, const char *kind,
                       char *message)
{
    cJSON *f = add_item(s->failed, NULL, cJSON_CreateObject(), &s->ok);
    if (message == NULL) s->ok = false;
    add_str(f, "agent", a->name, &s->ok);
    add_str(f, "step", step, &s->ok);
    add_str(f, "kind", kind, &s->ok);
    add_str(f, "message", message != NULL ? message : "", &s->ok);
    cJSON_free(message);
}

/* A dependency that is not a usable result: missing, skipped, an error
 * object. True when it was one of those (the agent is then failed). */
static bool not_a_result(sel_t *s, const agent_t *a, const char *step, const cJSON *v)
{
    const char *kind;
    if (v == NULL || cJSON_IsNull(v)) {
        add_failed(s, a, step, "deliberation_missing", fmt("%s has no result", step));
        return true;
    }
    if (cJSON_IsTrue(get(v, "skipped"))) {
        const char *because = get_str(v, "because");
        add_failed(s, a, because != NULL ? because : step, "deliberation_skipped",
                   because != NULL ? fmt("%s was skipped because %.128s failed", step, because)
                                   : fmt("%s was skipped", step));
        return true;
    }
    kind = get_str(v, "kind");
    if (kind != NULL && get(v, "content") == NULL && get(v, "score") == NULL) {
        const char *message = get_str(v, "message");
        add_failed(s, a, step, kind, dup_str(message != NULL ? message : ""));
        return true;
    }
    return false;
}

/* The judge's score of a proposal: the rubric's weighted mean, or -1 (and
 * the agent failed). */
static double judge_score(sel_t *s, const agent_t *a, const cJSON *v)
{
    const cJSON *crit = get(get(v, "content_json"), "criteria"), *it;
    double sum = 0, weights = 0;
    if (!cJSON_IsObject(crit)) {
        add_failed(s, a, a->score_step, "deliberation_bad_score",
                   fmt("%s: the judge's answer has no criteria", a->score_step));
        return -1;
    }
    cJSON_ArrayForEach(it, s->rubric) {
        double w = get(it, "weight")->valuedouble, c = unit_number(get(crit, it->string));
        if (c < 0) {
            add_failed(s, a, a->score_step, "deliberation_bad_score",
                       fmt("%s: criterion '%.128s' is missing or not a number from 0 to 1",
                           a->score_step, it->string));
            return -1;
        }
        sum += w * c;
        weights += w;
    }
    return round12(sum / weights);
}

static void read_agent(sel_t *s, agent_t *a)
{
    const cJSON *p = get(s->deps, a->final), *v;
    double score = 0;

    if (not_a_result(s, a, a->final, p)) return;
    if (!cJSON_IsString(get(p, "content"))) {
        add_failed(s, a, a->final, "deliberation_bad_proposal",
                   fmt("%s: the result has no content", a->final));
        return;
    }
    if (s->scoring != 2) {
        v = get(s->deps, a->score_step);
        if (not_a_result(s, a, a->score_step, v)) return;
        if (s->scoring == 0) {
            if ((score = judge_score(s, a, v)) < 0) return;
        } else {
            const cJSON *crit = get(v, "criteria");
            if ((score = unit_number(get(v, "score"))) < 0) {
                add_failed(s, a, a->score_step, "deliberation_bad_score",
                           fmt("%s: score is missing or not a number from 0 to 1",
                               a->score_step));
                return;
            }
            score = round12(score);
            a->criteria = cJSON_IsObject(crit) ? crit : NULL;
        }
    }
    a->proposal = p;
    a->score = score;
    a->alive = true;
}

/* ------------------------------------------------------------------------ */
/* The result                                                               */
/* ------------------------------------------------------------------------ */

/* A proposal as in winner and candidates. */
static cJSON *proposal_json(sel_t *s, const agent_t *a)
{
    cJSON *o = cJSON_CreateObject();
    const cJSON *cj = get(a->proposal, "content_json");
    if (o == NULL) s->ok = false;
    add_str(o, "agent", a->name, &s->ok);
    add_str(o, "step", a->final, &s->ok);
    add_copy(o, "content", get(a->proposal, "content"), &s->ok);
    if (cj != NULL) add_copy(o, "content_json", cj, &s->ok);
    add_item(o, "score", s->scoring == 2 ? cJSON_CreateNull() : cJSON_CreateNumber(a->score),
             &s->ok);
    return o;
}

static cJSON *criteria_json(sel_t *s, const agent_t *a)
{
    const cJSON *crit = get(get(get(s->deps, a->score_step), "content_json"), "criteria"), *it;
    cJSON *o;
    if (s->scoring == 1) return a->criteria != NULL ? cJSON_Duplicate(a->criteria, true) : NULL;
    if ((o = cJSON_CreateObject()) == NULL) {
        s->ok = false;
        return NULL;
    }
    cJSON_ArrayForEach(it, s->rubric) add_copy(o, it->string, get(crit, it->string), &s->ok);
    return o;
}

/* Sum of the usage of every call result among the dependencies. */
static cJSON *usage_json(sel_t *s)
{
    static const char *const keys[] = {"prompt_tokens", "completion_tokens", "cached_tokens"};
    double sums[3] = {0, 0, 0}, calls = 0;
    const cJSON *it;
    cJSON *o = cJSON_CreateObject();
    cJSON_ArrayForEach(it, s->deps) {
        const cJSON *u = get(it, "usage");
        if (!cJSON_IsObject(u)) continue;
        calls++;
        for (int k = 0; k < 3; k++) {
            const cJSON *v = get(u, keys[k]);
            if (cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble > 0)
                sums[k] += floor(v->valuedouble);
        }
    }
    if (o == NULL) s->ok = false;
    add_num(o, "calls", calls, &s->ok);
    for (int k = 0; k < 3; k++) add_num(o, keys[k], sums[k], &s->ok);
    return o;
}

/* The survivors by score, highest first; ties: the lower agent index. */
static size_t ranked(const sel_t *s, const agent_t **out)
{
    size_t n = 0;
    for (int i = 0; i < s->n; i++) {
        size_t k;
        if (!s->a[i].alive) continue;
        for (k = n; k > 0 && out[k - 1]->score < s->a[i].score; k--) out[k] = out[k - 1];
        out[k] = &s->a[i];
        n++;
    }
    return n;
}

/* "dev-2 (gen.1: llm_timeout), ..." of the failed agents. */
static char *failed_text(const sel_t *s)
{
    size_t len = 1;
    const cJSON *f;
    char *t, *p;
    cJSON_ArrayForEach(f, s->failed) len += strlen(get_str(f, "agent")) +
                                            strlen(get_str(f, "step")) +
                                            strlen(get_str(f, "kind")) + 8;
    if ((t = p = cJSON_malloc(len)) == NULL) return NULL;
    *p = '\0';
    cJSON_ArrayForEach(f, s->failed)
        p += sprintf(p, "%s%s (%s: %s)", p == t ? "" : ", ", get_str(f, "agent"),
                     get_str(f, "step"), get_str(f, "kind"));
    return t;
}

static cJSON *build_result(sel_t *s, const agent_t *const *rank, size_t nrank)
{
    cJSON *r = cJSON_CreateObject(), *arr, *c;
    const agent_t *winner = NULL;
    size_t k;

    if (r == NULL) s->ok = false;
    if (s->rule == 0 && nrank > 0) winner = rank[0];
    if (s->rule == 1) {
        for (int i = 0; i < s->n && winner == NULL; i++)
            if (s->a[i].alive && s->a[i].score >= s->threshold) winner = &s->a[i];
        if (winner == NULL && nrank > 0) winner = rank[0];
    }
    add_item(r, "winner", winner != NULL ? proposal_json(s, winner) : cJSON_CreateNull(), &s->ok);
    arr = add_item(r, "ranking", cJSON_CreateArray(), &s->ok);
    for (k = 0; s->scoring != 2 && k < nrank; k++) {
        cJSON *e = add_item(arr, NULL, cJSON_CreateObject(), &s->ok), *crit;
        add_str(e, "agent", rank[k]->name, &s->ok);
        add_num(e, "score", rank[k]->score, &s->ok);
        if ((crit = criteria_json(s, rank[k])) != NULL) add_item(e, "criteria", crit, &s->ok);
    }
    arr = add_item(r, "candidates", cJSON_CreateArray(), &s->ok);
    if (s->rule == 3 || s->scoring == 2) {
        /* Agent order: every survivor (all), or the first top_k. */
        k = 0;
        for (int i = 0; i < s->n; i++) {
            if (!s->a[i].alive || (s->rule != 3 && k == (size_t)s->top_k)) continue;
            add_item(arr, NULL, proposal_json(s, &s->a[i]), &s->ok);
            k++;
        }
    } else {
        for (k = 0; k < nrank && k < (size_t)s->top_k; k++)
            add_item(arr, NULL, proposal_json(s, rank[k]), &s->ok);
    }
    add_item(r, "failed", s->failed, &s->ok);
    s->failed = NULL; /* the result owns it, or add_item deleted it */
    add_item(r, "usage", usage_json(s), &s->ok);
    c = add_item(r, "council", cJSON_CreateObject(), &s->ok);
    add_str(c, "name", get_str(s->council, "name"), &s->ok);
    add_str(c, "version", get_str(s->council, "version"), &s->ok);
    return r;
}

static int parse_input(const char *input_json, cJSON **in, char **fail_kind, char **fail_message)
{
    int rc;
    if ((*in = json_text_parse(input_json, &rc)) != NULL) return 0;
    if (rc == CBM_ENOMEM) return rc;
    return fail(fail_kind, fail_message, KIND_BAD_INPUT, dup_str("its input is not JSON"));
}

int delib_select(const char *input_json, char **result_json, char **fail_kind,
                 char **fail_message)
{
    sel_t s = {.ok = true};
    const agent_t *rank[BP_DELIB_MAX_AGENTS];
    const char *why;
    cJSON *result = NULL;
    size_t nrank, alive;
    int rc;

    if (result_json == NULL || fail_kind == NULL || fail_message == NULL) return CBM_EINVAL;
    *result_json = *fail_kind = *fail_message = NULL;
    if (input_json == NULL) return CBM_EINVAL;
    if ((rc = parse_input(input_json, &s.in, fail_kind, fail_message)) != 0 || s.in == NULL)
        return rc;
    if ((why = read_input(&s)) != NULL) {
        rc = fail(fail_kind, fail_message, KIND_BAD_INPUT, fmt("deliberation select: %s", why));
        goto done;
    }
    if ((s.failed = cJSON_CreateArray()) == NULL) {
        rc = CBM_ENOMEM;
        goto done;
    }
    for (int i = 0; i < s.n; i++) read_agent(&s, &s.a[i]);
    if (!s.ok) {
        rc = CBM_ENOMEM;
        goto done;
    }
    nrank = ranked(&s, rank);
    alive = nrank;
    if (alive < (size_t)s.min_proposals) {
        char *who = failed_text(&s);
        rc = fail(fail_kind, fail_message, KIND_QUORUM,
                  who == NULL ? NULL
                              : fmt("%zu of %d proposals survived, %d needed; failed: %s", alive,
                                    s.n, s.min_proposals, who));
        cJSON_free(who);
        goto done;
    }
    result = build_result(&s, rank, nrank);
    if (!s.ok || (*result_json = cJSON_PrintUnformatted(result)) == NULL) rc = CBM_ENOMEM;
done:
    cJSON_Delete(result);
    cJSON_Delete(s.failed);
    cJSON_Delete(s.in);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* finish                                                                   */
/* ------------------------------------------------------------------------ */

int delib_finish(const char *input_json, char **result_json, char **fail_kind,
                 char **fail_message)
{
    cJSON *in = NULL, *result = NULL;
    const cJSON *deps, *sel, *pick, *cands, *it, *chosen = NULL, *agent, *index;
    size_t ncand = 0;
    int rc;

    if (result_json == NULL || fail_kind == NULL || fail_message == NULL) return CBM_EINVAL;
    *result_json = *fail_kind = *fail_message = NULL;
    if (input_json == NULL) return CBM_EINVAL;
    if ((rc = parse_input(input_json, &in, fail_kind, fail_message)) != 0 || in == NULL)
        return rc;
    deps = get(in, "deps");
    sel = get(deps, "select");
    pick = get(deps, "pick");
    cands = get(sel, "candidates");
    if (!cJSON_IsArray(cands) || !cJSON_IsObject(pick)) {
        rc = fail(fail_kind, fail_message, KIND_BAD_INPUT,
                  dup_str("deliberation finish: its input needs deps.select with candidates and "
                          "deps.pick, an object"));
        goto done;
    }
    cJSON_ArrayForEach(it, cands) ncand++;
    agent = get(pick, "agent");
    index = get(pick, "index");
    if ((agent == NULL) == (index == NULL) || (agent != NULL && !cJSON_IsString(agent)) ||
        (index != NULL && get_int(pick, "index", 0, INT32_MAX) < 0)) {
        rc = fail(fail_kind, fail_message, KIND_BAD_PICK,
                  dup_str("the pick must be {\"agent\": <a candidate's agent>} or {\"index\": "
                          "<a candidate's position, from 0>}"));
        goto done;
    }
    if (agent != NULL) {
        cJSON_ArrayForEach(it, cands) {
            const char *a = get_str(it, "agent");
            if (chosen == NULL && a != NULL && strcmp(a, agent->valuestring) == 0) chosen = it;
        }
        if (chosen == NULL) {
            rc = fail(fail_kind, fail_message, KIND_BAD_PICK,
                      fmt("the pick names agent '%.128s', which is not a candidate",
                          agent->valuestring));
            goto done;
        }
    } else {
        int i = get_int(pick, "index", 0, INT32_MAX);
        if ((size_t)i >= ncand) {
            rc = fail(fail_kind, fail_message, KIND_BAD_PICK,
                      fmt("the pick names candidate %d, and there %s %zu", i,
                          ncand == 1 ? "is" : "are", ncand));
            goto done;
        }
        chosen = cJSON_GetArrayItem(cands, i);
    }
    if ((result = cJSON_Duplicate(sel, true)) == NULL) {
        rc = CBM_ENOMEM;
        goto done;
    }
    {
        cJSON *w = cJSON_Duplicate(chosen, true);
        bool ok = w != NULL && (get(result, "winner") != NULL
                                    ? cJSON_ReplaceItemInObjectCaseSensitive(result, "winner", w)
                                    : cJSON_AddItemToObject(result, "winner", w));
        if (!ok) {
            cJSON_Delete(w);
            rc = CBM_ENOMEM;
            goto done;
        }
    }
    if ((*result_json = cJSON_PrintUnformatted(result)) == NULL) rc = CBM_ENOMEM;
done:
    cJSON_Delete(result);
    cJSON_Delete(in);
    return rc;
}
