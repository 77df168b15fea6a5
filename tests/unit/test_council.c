/*
 * test_council.c - councils as data (engine/council.h): the example of
 * docs/deliberation.md section 1 is valid, the canonical form and version
 * are stable under formatting and key order and change with the meaning,
 * and every refusal says what it refuses (a table: one change to the
 * example, the message expected).
 */
#include <cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/council.h"

/* docs/deliberation.md, section 1. */
static const char EXAMPLE[] =
    "{\"name\": \"dev\",\n"
    " \"role\": \"developer\",\n"
    " \"queue\": \"gpu\",\n"
    " \"requires\": {\"gpu\": \"true\"},\n"
    " \"model\": {\"name\": \"qwen2.5-7b-instruct\", \"temperature\": 0.7, \"top_p\": 1.0, "
    "\"max_tokens\": 1024},\n"
    " \"system_prompt\": \"You are {{agent}}, {{persona}}. You work as a {{role}}.\",\n"
    " \"prompts\": {\n"
    "   \"generate\": \"Task:\\n{{task}}\\n\\nContext:\\n{{context}}\\n\\nWrite your proposal.\",\n"
    "   \"critique\": \"Task:\\n{{task}}\\n\\nCritique this proposal:\\n{{proposal}}\",\n"
    "   \"revise\":   \"Task:\\n{{task}}\\n\\nYour proposal:\\n{{proposal}}\\n\\nCritiques:\\n"
    "{{critiques}}\\n\\nRevise it.\",\n"
    "   \"score\":    \"Task:\\n{{task}}\\n\\nScore this proposal:\\n{{proposal}}\\n\\nRubric:\\n"
    "{{rubric}}\"},\n"
    " \"rubric\": {\"correctness\": {\"weight\": 0.6, \"description\": \"it solves the task\"},\n"
    "            \"clarity\":     {\"weight\": 0.4, \"description\": \"it is easy to follow\"}},\n"
    " \"judge\": {\"persona\": \"an impartial senior reviewer\"},\n"
    " \"agents\": [{\"id\": \"dev-1\", \"persona\": \"a careful engineer\"},\n"
    "            {\"id\": \"dev-2\", \"persona\": \"a pragmatic engineer\", \"temperature\": 0.9},\n"
    "            {\"id\": \"dev-3\", \"persona\": \"a security-minded engineer\", \"model\": "
    "\"other-model\"}]}";

static council_t *parse_ok(const char *json)
{
    council_t *c = NULL;
    cbm_error_t err = {0};
    if (council_parse(json, strlen(json), &c, &err) != 0) fail_msg("refused: %s", err.message);
    return c;
}

/* The member of v at path ("model.temperature", "agents.1.id"); with
 * parent set, its parent instead and *last the last segment. */
static cJSON *at(cJSON *v, const char *path, bool parent, char *last)
{
    char buf[128], *seg, *save = NULL, *next;
    snprintf(buf, sizeof(buf), "%s", path);
    for (seg = strtok_r(buf, ".", &save); seg != NULL; seg = next) {
        next = strtok_r(NULL, ".", &save);
        if (parent && next == NULL) {
            strcpy(last, seg);
            return v;
        }
        v = cJSON_IsArray(v) ? cJSON_GetArrayItem(v, atoi(seg))
                             : cJSON_GetObjectItemCaseSensitive(v, seg);
        if (v == NULL) fail_msg("no %s in the example", path);
    }
    return v;
}

/* base with the member at path set to value (JSON text), or removed when
 * value is NULL; malloc'd. */
static char *edit(const char *base, const char *path, const char *value)
{
    cJSON *root = cJSON_Parse(base), *parent;
    char last[64], *out;

    assert_non_null(root);
    parent = at(root, path, true, last);
    if (value == NULL) {
        if (cJSON_IsArray(parent)) cJSON_DeleteItemFromArray(parent, atoi(last));
        else cJSON_DeleteItemFromObjectCaseSensitive(parent, last);
    } else {
        cJSON *v = cJSON_Parse(value);
        assert_non_null(v);
        if (cJSON_IsArray(parent)) {
            assert_true(cJSON_ReplaceItemInArray(parent, atoi(last), v));
        } else {
            cJSON_DeleteItemFromObjectCaseSensitive(parent, last);
            assert_true(cJSON_AddItemToObject(parent, last, v));
        }
    }
    out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

static char *changed(const char *path, const char *value)
{
    return edit(EXAMPLE, path, value);
}

/* Two edits of the example. */
static char *changed2(const char *p1, const char *v1, const char *p2, const char *v2)
{
    char *once = changed(p1, v1), *twice = edit(once, p2, v2);
    free(once);
    return twice;
}

static void example_is_valid(void **state)
{
    council_t *c = parse_ok(EXAMPLE);
    (void)state;
    assert_string_equal(c->name, "dev");
    assert_string_equal(c->role, "developer");
    assert_string_equal(c->queue, "gpu");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(c->requires, "gpu")->valuestring, "true");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(c->model, "name")->valuestring,
                        "qwen2.5-7b-instruct");
    assert_int_equal(c->nagents, 3);
    assert_int_equal(cJSON_GetArraySize(c->agents), 3);
    assert_non_null(c->judge);
    /* The rubric in name order: clarity before correctness. */
    assert_string_equal(c->rubric->child->string, "clarity");
    assert_int_equal(strlen(c->version), 64);
    assert_int_equal(strspn(c->version, "0123456789abcdef"), 64);
    council_destroy(c);
}

/* The form itself is pinned: keys in table order, defaults written out. */
static void canonical_text(void **state)
{
    council_t *c = parse_ok(
        "{\"agents\":[{\"persona\":\"p\",\"id\":\"a\"}],\"prompts\":{\"score\":\"s\","
        "\"revise\":\"r\",\"critique\":\"c\",\"generate\":\"g\"},\"system_prompt\":\"sys\","
        "\"model\":{\"max_tokens\":1e3,\"name\":\"m\",\"temperature\":0.50},\"role\":\"qa\","
        "\"name\":\"x\"}");
    (void)state;
    assert_string_equal(c->canonical,
                        "{\"name\":\"x\",\"role\":\"qa\",\"queue\":\"llm\",\"requires\":{},"
                        "\"model\":{\"name\":\"m\",\"temperature\":0.5,\"max_tokens\":1000},"
                        "\"system_prompt\":\"sys\",\"prompts\":{\"generate\":\"g\","
                        "\"critique\":\"c\",\"revise\":\"r\",\"score\":\"s\"},"
                        "\"agents\":[{\"id\":\"a\",\"persona\":\"p\"}]}");
    assert_null(c->rubric);
    assert_null(c->judge);
    council_destroy(c);
}

static void assert_same(const char *a, const char *b, bool same)
{
    council_t *x = parse_ok(a), *y = parse_ok(b);
    if (same) {
        assert_string_equal(x->canonical, y->canonical);
        assert_string_equal(x->version, y->version);
    } else {
        assert_string_not_equal(x->version, y->version);
    }
    council_destroy(x);
    council_destroy(y);
}

/* The example's top-level keys in reverse order, pretty-printed. */
static char *reversed(void)
{
    cJSON *v = cJSON_Parse(EXAMPLE), *r = cJSON_CreateObject();
    char *text;
    for (int i = cJSON_GetArraySize(v) - 1; i >= 0; i--) {
        cJSON *it = cJSON_DetachItemFromArray(v, i);
        assert_true(cJSON_AddItemToObject(r, it->string, it));
    }
    text = cJSON_Print(r);
    cJSON_Delete(v);
    cJSON_Delete(r);
    return text;
}

static void check_same(char *a, char *b, bool same)
{
    assert_same(a, b, same);
    free(a);
    free(b);
}

static void version_stable(void **state)
{
    council_t *c = parse_ok(EXAMPLE), *again;
    (void)state;

    /* Canonical text parses back to itself. */
    again = parse_ok(c->canonical);
    assert_string_equal(again->canonical, c->canonical);
    assert_string_equal(again->version, c->version);
    council_destroy(again);
    council_destroy(c);
    /* White space, key order (at every level) and number spelling change
     * nothing. */
    check_same(strdup(EXAMPLE), reversed(), true);
    check_same(strdup(EXAMPLE),
               changed("rubric", "{\"clarity\": {\"description\": \"it is easy to follow\", "
                                 "\"weight\": 0.40},  \"correctness\": {\"weight\": 6e-1, "
                                 "\"description\": \"it solves the task\"}}"),
               true);
    check_same(strdup(EXAMPLE), changed("model.max_tokens", "1024.0"), true);
    /* Defaults given explicitly are the same council. */
    check_same(changed2("queue", NULL, "requires", NULL),
               changed2("queue", "\"llm\"", "requires", "{}"), true);
    /* A change of meaning is a new version: a persona, the agents' order. */
    check_same(strdup(EXAMPLE), changed("agents.1.persona", "\"a lazy engineer\""), false);
    check_same(strdup(EXAMPLE),
               changed2("agents.0", "{\"id\": \"dev-3\", \"persona\": \"a security-minded "
                                    "engineer\", \"model\": \"other-model\"}",
                        "agents.2", "{\"id\": \"dev-1\", \"persona\": \"a careful engineer\"}"),
               false);
}

typedef struct refusal {
    const char *path;   /* what is changed in the example */
    const char *value;  /* its new JSON value; NULL: removed */
    const char *message;
} refusal_t;

#define C "council 'dev': "
#define NAME_RULE "1 to 128 letters, digits, '_', '.' or '-'"

static const refusal_t refusals[] = {
    {"name", NULL, "council: name is required"},
    {"name", "5", "council: name must be " NAME_RULE},
    {"name", "\"\"", "council: name must be " NAME_RULE},
    {"name", "\"a b\"", "council: name must be " NAME_RULE},
    {"extra", "1",
     C "unknown key 'extra' (allowed: name, role, queue, requires, model, system_prompt, "
       "prompts, rubric, judge, agents)"},
    {"role", NULL, C "role is required"},
    {"role", "3", C "role must be a non-empty string"},
    {"role", "\"\"", C "role must be a non-empty string"},
    {"queue", "\"g p u\"", C "queue must be " NAME_RULE},
    {"queue", "7", C "queue must be " NAME_RULE},
    {"requires", "[]", C "requires must be an object of strings"},
    {"requires", "{\"gpu\": true}",
     C "requires.gpu must be a string of at most 128 bytes without control characters"},
    {"requires", "{\"a b\": \"x\"}", C "requires: capability name 'a b' must be " NAME_RULE},
    {"model", NULL, C "model is required"},
    {"model", "\"qwen\"", C "model must be an object"},
    {"model.seed", "1", C "model: unknown key 'seed' (allowed: name, temperature, top_p, max_tokens)"},
    {"model.name", NULL, C "model.name is required"},
    {"model.name", "\"\"", C "model.name must be a non-empty string"},
    {"model.temperature", "2.5", C "model.temperature must be a number from 0 to 2"},
    {"model.temperature", "-0.1", C "model.temperature must be a number from 0 to 2"},
    {"model.temperature", "\"hot\"", C "model.temperature must be a number from 0 to 2"},
    {"model.top_p", "0", C "model.top_p must be a number greater than 0 and at most 1"},
    {"model.top_p", "1.01", C "model.top_p must be a number greater than 0 and at most 1"},
    {"model.max_tokens", "0", C "model.max_tokens must be an integer from 1 to 1000000"},
    {"model.max_tokens", "1.5", C "model.max_tokens must be an integer from 1 to 1000000"},
    {"model.max_tokens", "1000001", C "model.max_tokens must be an integer from 1 to 1000000"},
    {"system_prompt", NULL, C "system_prompt is required"},
    {"system_prompt", "[]", C "system_prompt must be a string"},
    {"system_prompt", "\"Do {{task}}\"",
     C "system_prompt: variable 'task' is not available here (byte 3)"},
    {"prompts", NULL, C "prompts is required"},
    {"prompts", "[]", C "prompts must be an object"},
    {"prompts.summary", "\"x\"", C "prompts: unknown key 'summary' (allowed: generate, critique, revise, score)"},
    {"prompts.score", NULL, C "prompts.score is required"},
    {"prompts.generate", "7", C "prompts.generate must be a string"},
    {"prompts.critique", "\"Task {{tsak}}\"",
     C "prompts.critique: unknown variable 'tsak' at byte 5"},
    {"prompts.generate", "\"{{proposal}}\"",
     C "prompts.generate: variable 'proposal' is not available here (byte 0)"},
    {"prompts.revise", "\"x {{task\"", C "prompts.revise: unclosed '{{' at byte 2"},
    {"prompts.score", "\"{{ }}\"", C "prompts.score: '{{' without a variable name at byte 0"},
    {"prompts.critique", "\"{{critiques}}\"",
     C "prompts.critique: variable 'critiques' is not available here (byte 0)"},
    {"rubric", "[]", C "rubric must be an object"},
    {"rubric", "{}", C "rubric must not be empty"},
    {"rubric.clarity", "1", C "rubric.clarity must be an object {weight, description}"},
    {"rubric.clarity.weight", "0", C "rubric.clarity.weight must be a number greater than 0"},
    {"rubric.clarity.weight", "\"high\"",
     C "rubric.clarity.weight must be a number greater than 0"},
    {"rubric.clarity.weight", NULL, C "rubric.clarity.weight is required"},
    {"rubric.clarity.description", NULL, C "rubric.clarity.description is required"},
    {"rubric.clarity.description", "1", C "rubric.clarity.description must be a string"},
    {"rubric.clarity.extra", "1", C "rubric.clarity: unknown key 'extra' (allowed: weight, description)"},
    {"judge", "\"x\"", C "judge must be an object"},
    {"judge.persona", NULL, C "judge.persona is required"},
    {"judge.model", "\"\"", C "judge.model must be a non-empty string"},
    {"judge.temperature", "-1", C "judge.temperature must be a number from 0 to 2"},
    {"judge.rounds", "1", C "judge: unknown key 'rounds' (allowed: persona, model, temperature)"},
    {"agents", NULL, C "agents is required"},
    {"agents", "{}", C "agents must be an array"},
    {"agents", "[]", C "agents must not be empty"},
    {"agents.1", "\"dev-2\"", C "agents[1] must be an object"},
    {"agents.0.id", NULL, C "agents[0].id is required"},
    {"agents.0.id", "\"a b\"", C "agents[0].id must be " NAME_RULE},
    {"agents.2.id", "\"dev-1\"", C "agents[2].id 'dev-1' is already the id of agents[0]"},
    {"agents.1.persona", NULL, C "agents[1].persona is required"},
    {"agents.1.persona", "2", C "agents[1].persona must be a non-empty string"},
    {"agents.1.temperature", "3", C "agents[1].temperature must be a number from 0 to 2"},
    {"agents.2.model", "1", C "agents[2].model must be a non-empty string"},
    {"agents.0.role", "\"x\"", C "agents[0]: unknown key 'role' (allowed: id, persona, model, temperature)"},
};

static void refuse(const char *json, int code, const char *message)
{
    council_t *c = (council_t *)1;
    cbm_error_t err = {0};
    int rc = council_parse(json, strlen(json), &c, &err);
    if (rc != code)
        fail_msg("%s: code %d, want %d (%s)", message, rc, code, err.message);
    assert_null(c);
    assert_string_equal(err.message, message);
}

static void refusals_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        char *json = changed(refusals[i].path, refusals[i].value);
        refuse(json, CBM_EINVAL, refusals[i].message);
        free(json);
    }
}

/* What a one-member change cannot express. */
static void refusals_of_text(void **state)
{
    cJSON *v = cJSON_Parse(EXAMPLE), *agents = cJSON_GetObjectItem(v, "agents");
    char *s, id[16];
    (void)state;

    for (int i = 3; i < 17; i++) {
        cJSON *a = cJSON_CreateObject();
        snprintf(id, sizeof(id), "dev-%d", i + 1);
        cJSON_AddStringToObject(a, "id", id);
        cJSON_AddStringToObject(a, "persona", "p");
        cJSON_AddItemToArray(agents, a);
    }
    s = cJSON_PrintUnformatted(v);
    refuse(s, CBM_EINVAL, C "agents: at most 16 agents, not 17");
    free(s);
    cJSON_DeleteItemFromArray(agents, 16);
    s = cJSON_PrintUnformatted(v);
    council_destroy(parse_ok(s)); /* 16 is fine */
    free(s);
    cJSON_Delete(v);

    refuse("[1, 2]", CBM_EINVAL, "council: the definition must be a JSON object");
    refuse("{\"name\": \"dev\", \"role\": \"a\", \"role\": \"b\"}", CBM_EINVAL,
           C "duplicate key 'role'");
    refuse("{\"name\": \"dev\", \"requires\": {\"gpu\": \"a\", \"gpu\": \"b\"}, \"role\": \"r\"}",
           CBM_EINVAL, C "requires: duplicate capability 'gpu'");
    refuse("{\"name\": \"dev\"", CBM_EJSON, "malformed JSON at line 1, column 14 (byte 13)");
    refuse("{\"name\": \"d\\u0000ev\"}", CBM_EINVAL,
           "council holds \\u0000 (a NUL character, which is not stored; encode binary data, "
           "e.g. in base64) at byte 11");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(example_is_valid), cmocka_unit_test(canonical_text),
        cmocka_unit_test(version_stable),   cmocka_unit_test(refusals_table),
        cmocka_unit_test(refusals_of_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
