/*
 * test_deliberation.c - the deliberation step in the runtime, embedded, on a
 * real PostgreSQL (docs/deliberation.md). The council's queue is "local",
 * so its LLM calls run as local steps with fake handlers here (the real
 * worker and the stub are tests/llm's): what is tested is the engine's part
 * — the child started from the generated blueprint with the council
 * snapshot, the built-in select and finish, the result unwrapped into the
 * parent's step, failure kinds, the approval pick, and a council edited
 * while a deliberation runs.
 */
#include <cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "cerebelum/cerebelum.h"
#include "engine/decider.h"
#include "tests/harness/testdb.h"

static char url[512];

#define PROMPTS                                                                          \
    "\"system_prompt\": \"You are {{agent}}, {{persona}}.\", \"prompts\": {\"generate\": " \
    "\"{{task}}\", \"critique\": \"{{proposal}}\", \"revise\": \"{{critiques}}\", "        \
    "\"score\": \"{{rubric}} {{proposal}}\"}"
#define COUNCIL(name, persona)                                                           \
    "{\"name\": \"" name "\", \"role\": \"developer\", \"queue\": \"local\", "            \
    "\"model\": {\"name\": \"m\", \"max_tokens\": 100}, " PROMPTS ", "                    \
    "\"rubric\": {\"correctness\": {\"weight\": 1, \"description\": \"right\"}}, "        \
    "\"agents\": [{\"id\": \"a1\", \"persona\": \"" persona "\"}, "                       \
    "{\"id\": \"a2\", \"persona\": \"quick\"}, {\"id\": \"a3\", \"persona\": \"sharp\"}]}"

/* ---- fake LLM calls ----------------------------------------------------- */

static atomic_int fail_gen;       /* bit i: generate of agent i fails for good */
static atomic_int calls;          /* calls made */
static char seen_persona[64];     /* agent 0's persona in its last generate */
static uv_mutex_t mu;
static uv_cond_t cv;
static int gate_closed, gate_waiting;

static void fake_llm(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *in = cJSON_Parse(call->input_json), *res;
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(in, "args");
    const cJSON *deps = cJSON_GetObjectItemCaseSensitive(in, "deps"), *d;
    const cJSON *agents = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(in, "inputs"),
                                             "council"),
            "definition"),
        "agents");
    const char *phase = arg;
    int agent = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(args, "agent"));
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(agents, agent % cJSON_GetArraySize(agents)), "id"));
    char *text;

    atomic_fetch_add(&calls, 1);
    assert_non_null(id);
    /* A dependency that failed or was skipped: skip, as the worker does. */
    cJSON_ArrayForEach(d, deps)
    {
        if (cJSON_GetObjectItemCaseSensitive(d, "kind") != NULL ||
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "skipped"))) {
            const cJSON *b = cJSON_GetObjectItemCaseSensitive(d, "because");
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(d, "error");
            res = cJSON_CreateObject();
            cJSON_AddBoolToObject(res, "skipped", 1);
            cJSON_AddStringToObject(res, "agent", id);
            cJSON_AddStringToObject(res, "because", cJSON_IsString(b) ? b->valuestring : d->string);
            if (e == NULL) e = d; /* the error object itself */
            {
                cJSON *eo = cJSON_AddObjectToObject(res, "error");
                cJSON_AddStringToObject(eo, "kind", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "kind")));
                cJSON_AddStringToObject(eo, "message", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "message")));
            }
            text = cJSON_PrintUnformatted(res);
            cbm_step_ok(out, text);
            cJSON_free(text);
            cJSON_Delete(res);
            cJSON_Delete(in);
            return;
        }
    }
    if (strcmp(phase, "generate") == 0) {
        if (agent == 0) {
            const char *p = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                cJSON_GetArrayItem(agents, 0), "persona"));
            uv_mutex_lock(&mu);
            snprintf(seen_persona, sizeof(seen_persona), "%s", p != NULL ? p : "");
            gate_waiting++;
            uv_cond_broadcast(&cv);
            while (gate_closed) uv_cond_wait(&cv, &mu);
            uv_mutex_unlock(&mu);
        }
        if (atomic_load(&fail_gen) & (1 << agent)) {
            cbm_step_fail(out, "llm_context_length", "the prompt is too long", false);
            cJSON_Delete(in);
            return;
        }
    }
    res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "agent", id);
    cJSON_AddStringToObject(res, "phase", phase);
    {
        char content[128];
        snprintf(content, sizeof(content), "%s by %s in %s", phase, id, call->step);
        cJSON_AddStringToObject(res, "content", content);
    }
    if (strcmp(phase, "score") == 0) {
        /* The judge prefers later agents: a3 > a2 > a1. */
        cJSON *cj = cJSON_AddObjectToObject(res, "content_json");
        cJSON *cr = cJSON_AddObjectToObject(cj, "criteria");
        cJSON_AddNumberToObject(cr, "correctness", 0.5 + 0.1 * agent);
        cJSON_AddStringToObject(cj, "rationale", "fake");
    }
    cJSON_AddStringToObject(res, "finish_reason", "stop");
    {
        cJSON *u = cJSON_AddObjectToObject(res, "usage");
        cJSON_AddNumberToObject(u, "prompt_tokens", 10);
        cJSON_AddNumberToObject(u, "completion_tokens", 5);
        cJSON_AddNumberToObject(u, "cached_tokens", 0);
    }
    text = cJSON_PrintUnformatted(res);
    cbm_step_ok(out, text);
    cJSON_free(text);
    cJSON_Delete(res);
    cJSON_Delete(in);
}

/* ---- fixtures ------------------------------------------------------------ */

static cbm_engine_t *engine(void)
{
    static const char *phases[] = {"generate", "critique", "revise", "score"};
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    o.database_url = url;
    assert_int_equal(cbm_engine_create(&e, &o, &err), 0);
    for (size_t i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof(name), "cbm.llm.%s", phases[i]);
        assert_int_equal(cbm_engine_register_step(e, name, fake_llm, (void *)phases[i]), 0);
    }
    if (cbm_engine_start(e, &err) != 0) fail_msg("start: %s", err.message);
    return e;
}

static void put_council(cbm_engine_t *e, const char *json, char v[65])
{
    cbm_error_t err = {0};
    if (cbm_council_put(e, json, v, NULL, &err) != 0) fail_msg("council: %s", err.message);
}

static void put_bp(cbm_engine_t *e, const char *json)
{
    cbm_error_t err = {0};
    if (cbm_engine_register_blueprint(e, json, NULL, &err) != 0) fail_msg("blueprint: %s", err.message);
}

static cbm_execution_info_t *run(cbm_engine_t *e, const char *bp, char id[37])
{
    cbm_execution_info_t *x = NULL;
    cbm_error_t err = {0};
    if (cbm_execution_start(e, bp, "{\"task\": \"fix it\"}", id, &err) != 0)
        fail_msg("start: %s", err.message);
    if (cbm_execution_wait(e, id, 60000, &x, &err) != 0) fail_msg("wait: %s", err.message);
    return x;
}

/* The deliberation's result: the parent's step d, from its state. */
static cJSON *step_result(cbm_engine_t *e, const char *id)
{
    cbm_execution_info_t *x = NULL;
    cbm_error_t err = {0};
    cJSON *r;
    if (cbm_execution_get(e, id, &x, &err) != 0) fail_msg("get: %s", err.message);
    r = cJSON_Parse(x->result);
    cbm_execution_info_free(x);
    assert_non_null(r);
    return r; /* {"d": <the deliberation's result>} */
}

#define BP(name, extra)                                                                     \
    "{\"name\": \"" name "\", \"steps\": [{\"name\": \"d\", \"kind\": \"deliberation\", "    \
    "\"council\": \"dev\", \"task\": \"$.inputs.task\", \"topology\": \"ring\", "           \
    "\"rounds\": 1" extra "}]}"

/* ---- tests --------------------------------------------------------------- */

static void test_ring_judge(void **state)
{
    cbm_engine_t *e = engine();
    char v[65], id[37];
    cbm_execution_info_t *x;
    cJSON *r, *d;
    (void)state;
    put_council(e, COUNCIL("dev", "careful"), v);
    put_bp(e, BP("dl_ring", ", \"agents\": 3"));
    atomic_store(&calls, 0);
    x = run(e, "dl_ring", id);
    if (strcmp(x->status, "completed") != 0) fail_msg("%s: %s", x->status, x->error);
    cbm_execution_info_free(x);
    assert_int_equal(atomic_load(&calls), 12); /* 3 gen, 3 crit, 3 rev, 3 score */
    r = step_result(e, id);
    d = cJSON_GetObjectItemCaseSensitive(r, "d");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                            cJSON_GetObjectItemCaseSensitive(d, "winner"), "agent")),
                        "a3");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(d, "ranking")), 3);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(d, "failed")), 0);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                            cJSON_GetObjectItemCaseSensitive(d, "council"), "version")),
                        v);
    cJSON_Delete(r);
    cbm_engine_destroy(e);
}

/* Agent 0's generate fails for good: its line of the ring is skipped, the
 * others go on, and the result says who failed where. */
static void test_agent_lost(void **state)
{
    cbm_engine_t *e = engine();
    char v[65], id[37];
    cbm_execution_info_t *x;
    cJSON *r, *f;
    (void)state;
    put_council(e, COUNCIL("dev", "careful"), v);
    put_bp(e, BP("dl_lost", ", \"agents\": 3, \"selection\": {\"min_proposals\": 2}"));
    atomic_store(&fail_gen, 1);
    x = run(e, "dl_lost", id);
    atomic_store(&fail_gen, 0);
    if (strcmp(x->status, "completed") != 0) fail_msg("%s: %s", x->status, x->error);
    cbm_execution_info_free(x);
    r = step_result(e, id);
    f = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "d"), "failed");
    assert_int_equal(cJSON_GetArraySize(f), 1);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                            cJSON_GetArrayItem(f, 0), "agent")),
                        "a1");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                            cJSON_GetArrayItem(f, 0), "kind")),
                        "llm_context_length");
    cJSON_Delete(r);
    cbm_engine_destroy(e);
}

/* Two of three agents lost with min_proposals 2: deliberation_quorum. */
static void test_quorum(void **state)
{
    cbm_engine_t *e = engine();
    char v[65], id[37];
    cbm_execution_info_t *x;
    (void)state;
    put_council(e, COUNCIL("dev", "careful"), v);
    put_bp(e, BP("dl_quorum", ", \"agents\": 3, \"selection\": {\"min_proposals\": 2}"));
    atomic_store(&fail_gen, 3);
    x = run(e, "dl_quorum", id);
    atomic_store(&fail_gen, 0);
    assert_string_equal(x->status, "failed");
    if (strstr(x->error, "\"kind\": \"deliberation_quorum\"") == NULL) fail_msg("error: %s", x->error);
    cbm_execution_info_free(x);
    cbm_engine_destroy(e);
}

static void test_unknown_council_and_budget(void **state)
{
    cbm_engine_t *e = engine();
    char v[65], id[37];
    cbm_execution_info_t *x;
    (void)state;
    put_council(e, COUNCIL("dev", "careful"), v);
    put_bp(e, "{\"name\": \"dl_nocouncil\", \"steps\": [{\"name\": \"d\", \"kind\": "
              "\"deliberation\", \"council\": \"nobody\", \"task\": \"$.inputs.task\"}]}");
    x = run(e, "dl_nocouncil", id);
    assert_string_equal(x->status, "failed");
    assert_non_null(strstr(x->error, "\"kind\": \"council_unknown\""));
    assert_non_null(strstr(x->error, "no council named 'nobody'"));
    cbm_execution_info_free(x);
    /* agents from the council (3): 12 calls, more than max_calls allows. */
    put_bp(e, BP("dl_budget", ", \"budget\": {\"max_calls\": 10}"));
    x = run(e, "dl_budget", id);
    assert_string_equal(x->status, "failed");
    assert_non_null(strstr(x->error, "\"kind\": \"deliberation_over_budget\""));
    assert_non_null(strstr(x->error, "max_calls is 10"));
    cbm_execution_info_free(x);
    cbm_engine_destroy(e);
}

/* A council put again while a deliberation runs: the running one keeps the
 * snapshot it started with; the next one takes the new version. */
static void test_council_edit_midrun(void **state)
{
    cbm_engine_t *e = engine();
    char v1[65], v2[65], id[37], child[37];
    cbm_execution_info_t *x = NULL;
    cbm_event_t *ev = NULL;
    size_t n = 0;
    cbm_error_t err = {0};
    (void)state;
    put_council(e, COUNCIL("dev", "careful"), v1);
    put_bp(e, BP("dl_edit", ", \"agents\": 3"));
    uv_mutex_lock(&mu);
    gate_closed = 1;
    gate_waiting = 0;
    uv_mutex_unlock(&mu);
    assert_int_equal(cbm_execution_start(e, "dl_edit", "{\"task\": \"t\"}", id, &err), 0);
    uv_mutex_lock(&mu);
    while (gate_waiting == 0) uv_cond_wait(&cv, &mu);
    uv_mutex_unlock(&mu);
    put_council(e, COUNCIL("dev", "reckless"), v2);
    assert_string_not_equal(v1, v2);
    uv_mutex_lock(&mu);
    gate_closed = 0;
    uv_cond_broadcast(&cv);
    uv_mutex_unlock(&mu);
    assert_int_equal(cbm_execution_wait(e, id, 60000, &x, &err), 0);
    assert_string_equal(x->status, "completed");
    cbm_execution_info_free(x);
    assert_string_equal(seen_persona, "careful");
    /* The child's ExecutionStarted holds the old snapshot. */
    assert_int_equal(dc_child_id(id, "d", 1, child), 0);
    assert_int_equal(cbm_execution_history(e, child, 1, &ev, &n, &err), 0);
    assert_true(n > 0);
    assert_string_equal(ev[0].type, "ExecutionStarted");
    assert_non_null(strstr(ev[0].payload, v1));
    assert_null(strstr(ev[0].payload, "reckless"));
    cbm_events_free(ev, n);
    /* The next deliberation takes the new one. */
    x = run(e, "dl_edit", id);
    assert_string_equal(x->status, "completed");
    cbm_execution_info_free(x);
    assert_string_equal(seen_persona, "reckless");
    cbm_engine_destroy(e);
}

/* selection approval: a person picks among the candidates on the child's
 * pick step; the parent's result names the pick. */
static void test_approval_pick(void **state)
{
    cbm_engine_t *e = engine();
    char v[65], id[37], child[37];
    cbm_execution_info_t *x = NULL;
    cbm_error_t err = {0};
    cJSON *r;
    int i;
    (void)state;
    put_council(e, COUNCIL("dev", "careful"), v);
    put_bp(e, BP("dl_pick", ", \"agents\": 3, \"selection\": {\"rule\": \"approval\"}"));
    assert_int_equal(cbm_execution_start(e, "dl_pick", "{\"task\": \"t\"}", id, &err), 0);
    assert_int_equal(dc_child_id(id, "d", 1, child), 0);
    for (i = 0; i < 600; i++) {
        if (cbm_execution_get(e, child, &x, &err) == 0) {
            bool waiting = strcmp(x->status, "awaiting_approval") == 0;
            cbm_execution_info_free(x);
            if (waiting) break;
        }
        uv_sleep(50);
    }
    assert_true(i < 600);
    if (cbm_execution_approve(e, child, "pick", "{\"agent\": \"a1\"}", "lead", &err) != 0)
        fail_msg("approve: %s", err.message);
    assert_int_equal(cbm_execution_wait(e, id, 60000, &x, &err), 0);
    if (strcmp(x->status, "completed") != 0) fail_msg("%s: %s", x->status, x->error);
    cbm_execution_info_free(x);
    r = step_result(e, id);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "d"),
                                                             "winner"),
                            "agent")),
                        "a1");
    cJSON_Delete(r);
    cbm_engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_judge),
        cmocka_unit_test(test_agent_lost),
        cmocka_unit_test(test_quorum),
        cmocka_unit_test(test_unknown_council_and_budget),
        cmocka_unit_test(test_council_edit_midrun),
        cmocka_unit_test(test_approval_pick),
    };
    int rc;
    if (uv_mutex_init(&mu) != 0 || uv_cond_init(&cv) != 0) return 1;
    if (testdb_create(url, sizeof(url)) != 0) return TESTDB_SKIP;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(url);
    return rc;
}
