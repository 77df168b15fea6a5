/*
 * fault_unit.c - the allocation-failure run of the pure engine (docs/testing.md):
 * each scenario below runs once with no failure, then again with its 1st,
 * 2nd, 3rd... allocation failing, until a run meets no failure; every run
 * must end with CBM_ENOMEM (or the documented CBM_EJSON of cJSON's parser),
 * never crash, and leak nothing (tests/harness/faultalloc.h).
 *
 * What runs: blueprint parsing, validation and canonicalisation (every
 * blueprint of tests/scenarios and of the unit fixtures); input checks;
 * every scenario of tests/scenarios through the decision loop (the reducer,
 * the decider, routing, event encoding; tests/fault/minieng.c) and cases of
 * our own for the kinds the files do not have (sleep, approval, signal,
 * remote tasks, cancel, deadlines); rebuilding each history from its stored
 * events (decoding, folding), with and without a snapshot, and the snapshot
 * round trip; templates; councils (validation, canonical form, version);
 * the timer heap.
 *
 * Argument: the tests/scenarios directory.
 */
#include <cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cbm_internal.h"
#include "cerebelum/cerebelum.h"
#include "engine/blueprint.h"
#include "engine/council.h"
#include "engine/decision.h"
#include "engine/event.h"
#include "engine/match.h"
#include "engine/runtime_internal.h"
#include "engine/state.h"
#include "scheduler/sched.h"
#include "tests/fault/minieng.h"
#include "tests/harness/faultalloc.h"
#include "tests/harness/scenario.h"
#include "tests/unit/bp_fixtures.h"

static const char *scenario_dir;

static bp_blueprint_t *parse_or_die(const char *json)
{
    bp_blueprint_t *bp = NULL;
    cbm_error_t err = {0};
    if (bp_parse_json(json, strlen(json), &bp, &err) != 0) fail_msg("%s: %s", json, err.message);
    return bp;
}

static int same(const char *what, const char *got, const char *want)
{
    if (got == NULL && want == NULL) return 0;
    if (got != NULL && want != NULL && strcmp(got, want) == 0) return 0;
    return fa_wrong("%s is %s, want %s", what, got ? got : "(null)", want ? want : "(null)");
}

/* ------------------------------------------------------------ blueprints */

typedef struct parse_arg {
    const char *json;
    bp_blueprint_t *want;
} parse_arg_t;

static int run_parse(void *arg)
{
    parse_arg_t *a = arg;
    bp_blueprint_t *bp = NULL;
    cbm_error_t err = {0};
    int rc;

    FA(rc = bp_parse_json(a->json, strlen(a->json), &bp, &err));
    if (rc != 0) return bp != NULL ? fa_wrong("a failed parse set its blueprint") : rc;
    rc = same("canonical JSON", bp->canonical_json, a->want->canonical_json);
    if (rc == 0) rc = same("version", bp->version, a->want->version);
    bp_destroy(bp);
    return rc;
}

static void parse_loop(const char *what, const char *json)
{
    parse_arg_t a = {json, parse_or_die(json)};
    char name[128];

    snprintf(name, sizeof(name), "parse %s", what);
    fa_loop(name, run_parse, &a, 0);
    bp_destroy(a.want);
}

static void test_parse(void **state)
{
    char **files = NULL, err[512];
    size_t n = 0;

    (void)state;
    parse_loop("review_loop", review_loop);
    parse_loop("everything", everything);
    assert_int_equal(scn_files(scenario_dir, NULL, 0, &files, &n), 0);
    for (size_t i = 0; i < n; i++) {
        char path[1024];
        scn_t s;
        snprintf(path, sizeof(path), "%s/%s", scenario_dir, files[i]);
        if (scn_load(path, &s, err, sizeof(err)) != 0) fail_msg("%s", err);
        parse_loop(s.name, s.blueprint_json);
        for (size_t c = 0; c < s.nchildren; c++) parse_loop(s.name, s.children_json[c]);
        scn_finish(&s);
    }
    scn_files_free(files, n);
}

typedef struct inputs_arg {
    const bp_blueprint_t *bp;
    const char *inputs;
    int want_rc;
    const char *want;
} inputs_arg_t;

static int run_inputs(void *arg)
{
    inputs_arg_t *a = arg;
    char *out = NULL;
    cbm_error_t err = {0};
    int rc;

    FA(rc = bp_check_inputs(a->bp, a->inputs, &out, &err));
    if (rc != 0 && out != NULL) return fa_wrong("a failed check set its output");
    if (rc == a->want_rc && rc != 0) return 0; /* the expected refusal */
    if (rc != 0) return rc;
    rc = a->want_rc != 0 ? fa_wrong("inputs accepted") : same("inputs", out, a->want);
    cJSON_free(out);
    return rc;
}

static void test_inputs(void **state)
{
    bp_blueprint_t *bp = parse_or_die(everything);
    inputs_arg_t ok = {bp, "{\"t\":\"x\",\"n\":4}", 0,
                       "{\"t\":\"x\",\"n\":4,\"o\":{\"y\":[1,{\"a\":1,\"b\":2}]}}"};
    inputs_arg_t refused = {bp, "{\"t\":\"x\",\"extra\":null}", CBM_EINVAL, NULL};

    (void)state;
    fa_loop("inputs", run_inputs, &ok, 0);
    /* A refusal that needs no allocation is found before any can fail, so
     * it is checked once, not in a loop. */
    assert_int_equal(run_inputs(&refused), 0);
    bp_destroy(bp);
}

/* ------------------------------------------------- executions and folds */

typedef struct exec_arg {
    me_case_t c;
    const bp_blueprint_t *bp;
    const char *inputs;
    me_result_t want;
} exec_arg_t;

static int run_exec(void *arg)
{
    exec_arg_t *a = arg;
    me_result_t got;
    int rc = me_run(&a->c, a->bp, a->inputs, &got);

    if (rc != 0) return rc;
    if ((rc = same("status", got.status, a->want.status)) == 0 &&
        (rc = same("result", got.result, a->want.result)) == 0 &&
        (rc = same("error", got.error, a->want.error)) == 0 &&
        (rc = same("state", got.state, a->want.state)) == 0 && got.nevents != a->want.nevents)
        rc = fa_wrong("%zu events, want %zu", got.nevents, a->want.nevents);
    for (size_t i = 0; rc == 0 && i < got.nevents; i++)
        if ((rc = same("event type", got.events[i].type, a->want.events[i].type)) == 0)
            rc = same("event payload", got.events[i].payload, a->want.events[i].payload);
    me_result_finish(&got);
    return rc;
}

/* Fold events [from, to) onto snapshot (NULL: none); *json the state. */
static int fold(const exec_arg_t *a, const char *snapshot, size_t from, size_t to, char **json)
{
    st_exec_t st;
    cbm_error_t err = {0};
    int rc;

    *json = NULL;
    FA(rc = dec_fold(&st, "00000000-0000-4000-8000-000000000001", a->bp, snapshot,
                     a->want.events + from, to - from, &err));
    if (rc == 0) {
        FA(*json = st_to_json(&st));
        if (*json == NULL) rc = CBM_ENOMEM;
    }
    st_finish(&st);
    return rc;
}

/* The history rebuilt as the engine does after a restart must give the
 * live state: the first half of the events folded, its snapshot written,
 * then restored and the rest of the events folded onto it. (Every event is
 * decoded once, and the snapshot makes the round trip.) */
static int run_fold(void *arg)
{
    exec_arg_t *a = arg;
    size_t n = a->want.nevents, half = n / 2;
    char *first = NULL, *rest = NULL;
    int rc;

    if ((rc = fold(a, NULL, 0, half, &first)) == 0 && (rc = fold(a, first, half, n, &rest)) == 0)
        rc = same("state from a snapshot", rest, a->want.state);
    free(first);
    free(rest);
    return rc;
}

static void exec_loops(const char *name, exec_arg_t *a)
{
    char what[160];
    int rc;

    /* The baseline, outside any count: what every later run must give. */
    rc = me_run(&a->c, a->bp, a->inputs, &a->want);
    if (rc != 0) fail_msg("%s: %s", name, cbm_err_name(rc));
    snprintf(what, sizeof(what), "run %s", name);
    fa_loop(what, run_exec, a, 0);
    snprintf(what, sizeof(what), "fold %s", name);
    fa_loop(what, run_fold, a, 0);
}

static void test_scenarios(void **state)
{
    char **files = NULL, err[512];
    size_t n = 0;

    (void)state;
    assert_int_equal(scn_files(scenario_dir, NULL, 0, &files, &n), 0);
    assert_true(n > 0);
    for (size_t i = 0; i < n; i++) {
        char path[1024];
        const char **types;
        bp_blueprint_t *children[8];
        exec_arg_t a = {0};
        scn_t s;

        snprintf(path, sizeof(path), "%s/%s", scenario_dir, files[i]);
        if (scn_load(path, &s, err, sizeof(err)) != 0) fail_msg("%s", err);
        assert_true(s.nchildren <= 8);
        for (size_t c = 0; c < s.nchildren; c++) children[c] = parse_or_die(s.children_json[c]);
        a.c = (me_case_t){.scn = &s, .children = children, .nchildren = s.nchildren};
        a.bp = parse_or_die(s.blueprint_json);
        a.inputs = s.inputs_json;
        exec_loops(s.name, &a);
        /* The loop ran the scenario as the engine does. */
        types = calloc(a.want.nevents + 1, sizeof(*types));
        for (size_t k = 0; k < a.want.nevents; k++) types[k] = a.want.events[k].type;
        if (scn_check(&s, types, a.want.nevents, a.want.status,
                      a.want.result, err, sizeof(err)) != 0)
            fail_msg("%s", err);
        free(types);
        me_result_finish(&a.want);
        bp_destroy((bp_blueprint_t *)a.bp);
        for (size_t c = 0; c < s.nchildren; c++) bp_destroy(children[c]);
        scn_finish(&s);
    }
    scn_files_free(files, n);
}

/* The kinds the scenario files do not have: waiting (sleep, approval with
 * a deadline, a signal that arrives before its step waits), a task with a
 * time-out, retries and an error kind that is never retried, a remote task
 * with capabilities, a diverge rule and a branch; the execution-wide
 * deadline. */
static const char waits_bp[] =
    "{\"name\":\"waits\",\"timeout_ms\":3600000,"
    "\"inputs\":{\"n\":{\"type\":\"integer\",\"default\":3},\"who\":{\"type\":\"string\"}},"
    "\"timeline\":["
    "{\"name\":\"prep\",\"timeout_ms\":1000,"
    " \"retry\":{\"max_attempts\":3,\"initial_ms\":10,\"non_retryable\":[\"fatal\"]}},"
    "{\"name\":\"nap\",\"kind\":\"sleep\",\"duration_ms\":500},"
    "{\"name\":\"ok\",\"kind\":\"approval\",\"timeout_ms\":60000},"
    "{\"name\":\"go\",\"kind\":\"signal\",\"signal\":\"go\",\"timeout_ms\":60000},"
    "{\"name\":\"far\",\"queue\":\"gpu\",\"requires\":{\"gpu\":\"a100\",\"os\":\"linux\"},"
    " \"heartbeat_timeout_ms\":1000,\"timeout_ms\":5000},"
    "{\"name\":\"route\","
    " \"diverge\":[{\"match\":{\"again\":true},\"action\":\"retry\",\"max_iterations\":2}],"
    " \"branch\":[{\"when\":{\"path\":\"x\",\"op\":\"==\",\"value\":1},\"to\":\"left\"},"
    "  {\"otherwise\":\"right\"}]}],"
    "\"steps\":[{\"name\":\"left\",\"depends_on\":[\"route\"]},"
    " {\"name\":\"right\",\"depends_on\":[\"route\"]}]}";
static const char waits_script[] =
    "{\"script\":{"
    "\"prep\":[{\"fail\":{\"kind\":\"flaky\",\"message\":\"try \\\"again\\\"\",\"retryable\":true}},"
    "  {\"ok\":{\"ready\":true}}],"
    "\"far\":[{\"ok\":[1,2,{\"deep\":null}]}],"
    "\"route\":[{\"ok\":{\"again\":true}},{\"ok\":{\"x\":1}}]}}";
static const char hang_script[] =
    "{\"script\":{\"prep\":[{\"hang\":true},{\"ok\":1}],\"route\":[{\"ok\":{\"x\":2}}]}}";
static const char deadline_bp[] =
    "{\"name\":\"deadline\",\"timeout_ms\":1000,"
    "\"timeline\":[\"a\",{\"name\":\"long\",\"kind\":\"sleep\",\"duration_ms\":10000},\"b\"]}";
static const char fatal_script[] =
    "{\"script\":{\"prep\":[{\"fail\":{\"kind\":\"fatal\",\"message\":\"no\",\"retryable\":true}}]}}";

static const me_input_t waits_inputs[] = {
    {.type = "SignalReceived", .name = "go", .json = "{\"s\":\"early\"}"},
    {.after = "ApprovalRequested", .type = "ApprovalGranted", .step = "ok",
     .json = "{\"fine\":true}", .who = "ann \"the reviewer\""},
    {.after = "StepCompleted", .type = "ResultIgnored", .step = "prep", .attempt = 1,
     .text = "late"},
};
static const me_input_t approve_only[] = {
    {.after = "ApprovalRequested", .type = "ApprovalGranted", .step = "ok", .json = "1",
     .who = "ann"},
};
static const me_input_t cancel_inputs[] = {
    {.after = "SleepStarted", .type = "CancelRequested", .text = "changed \\ my mind"},
};
static const me_input_t reject_inputs[] = {
    {.after = "ApprovalRequested", .type = "ApprovalRejected", .step = "ok", .text = "not now",
     .who = "bob"},
};

static void own_case(const char *name, const char *bp_json, const char *script,
                     const me_input_t *inputs, size_t ninputs, const char *want_status,
                     const char *want_error)
{
    scn_t s = {0};
    exec_arg_t a = {0};

    s.name = name;
    s.doc = cJSON_Parse(script);
    s.script = cJSON_GetObjectItemCaseSensitive(s.doc, "script");
    a.c = (me_case_t){.scn = &s, .inputs = inputs, .ninputs = ninputs};
    a.bp = parse_or_die(bp_json);
    a.inputs = "{\"who\":\"me\"}";
    exec_loops(name, &a);
    if (strcmp(a.want.status, want_status) != 0)
        fail_msg("%s: status %s, want %s", name, a.want.status, want_status);
    if (want_error != NULL && (a.want.error == NULL || strstr(a.want.error, want_error) == NULL))
        fail_msg("%s: error %s, want %s", name, a.want.error ? a.want.error : "none", want_error);
    if (want_error != NULL && strcmp(name, "timeouts") == 0) {
        int timeouts = 0;
        for (size_t i = 0; i < a.want.nevents; i++)
            timeouts += strstr(a.want.events[i].payload, "\"kind\":\"timeout\"") != NULL;
        if (timeouts != 1) fail_msg("%s: %d attempts timed out, want 1", name, timeouts);
    }
    me_result_finish(&a.want);
    bp_destroy((bp_blueprint_t *)a.bp);
    cJSON_Delete(s.doc);
}

static void test_own_cases(void **state)
{
    (void)state;
    own_case("waits", waits_bp, waits_script, waits_inputs, 3, "completed", NULL);
    own_case("cancel", waits_bp, waits_script, cancel_inputs, 1, "cancelled", NULL);
    own_case("reject", waits_bp, waits_script, reject_inputs, 1, "failed", "approval_rejected");
    /* Nobody approves: the approval's deadline fails it. */
    own_case("approval timeout", waits_bp, waits_script, NULL, 0, "failed", "approval_timeout");
    own_case("non-retryable", waits_bp, fatal_script, NULL, 0, "failed", "fatal");
    /* The first attempt never answers: its time-out fails it, the retry
     * runs; then no signal comes, and the signal's deadline fails it. */
    own_case("timeouts", waits_bp, hang_script, approve_only, 1, "failed", "signal_timeout");
    own_case("deadline", deadline_bp, "{}", NULL, 0, "failed", "execution_timeout");
}

/* ------------------------------------------------------------- the rest */

typedef struct tmpl_arg {
    cJSON *tmpl, *data;
    char *want;
} tmpl_arg_t;

static int run_template(void *arg)
{
    tmpl_arg_t *a = arg;
    cJSON *out = NULL;
    char *text;
    int rc;

    FA(rc = match_template(a->tmpl, a->data, &out));
    if (rc != 0) return out != NULL ? fa_wrong("a failed template set its output") : rc;
    text = cJSON_PrintUnformatted(out);
    rc = same("template", text, a->want);
    free(text);
    cJSON_Delete(out);
    return rc;
}

static void test_template(void **state)
{
    tmpl_arg_t a;

    (void)state;
    a.tmpl = cJSON_Parse("{\"a\":\"$.inputs.x\",\"b\":[1,\"$.deps.s\",{\"c\":\"lit\"}],"
                         "\"m\":\"$.deps.missing\"}");
    a.data = cJSON_Parse("{\"inputs\":{\"x\":[1,2,3]},\"deps\":{\"s\":{\"k\":\"v\"}}}");
    a.want = strdup("{\"a\":[1,2,3],\"b\":[1,{\"k\":\"v\"},{\"c\":\"lit\"}],\"m\":null}");
    fa_loop("template", run_template, &a, 0);
    cJSON_Delete(a.tmpl);
    cJSON_Delete(a.data);
    free(a.want);
}

/* ------------------------------------------------------------ councils */

/* Every kind of field of the format (docs/deliberation.md, section 1). */
static const char council_json[] =
    "{\"agents\": [{\"id\": \"a\", \"persona\": \"careful\", \"temperature\": 0.9},"
    " {\"id\": \"b\", \"persona\": \"quick\", \"model\": \"m2\"}],"
    " \"name\": \"dev\", \"role\": \"developer\", \"queue\": \"gpu\","
    " \"requires\": {\"z\": \"1\", \"gpu\": \"true\"},"
    " \"model\": {\"name\": \"m\", \"temperature\": 0.7, \"top_p\": 1, \"max_tokens\": 64},"
    " \"system_prompt\": \"You are {{agent}}, {{persona}}.\","
    " \"prompts\": {\"generate\": \"{{task}} {{context}}\", \"critique\": \"{{proposal}}\","
    " \"revise\": \"{{critiques}}\", \"score\": \"{{rubric}}\"},"
    " \"rubric\": {\"x\": {\"weight\": 1, \"description\": \"d\"},"
    " \"c\": {\"weight\": 2, \"description\": \"e\"}},"
    " \"judge\": {\"persona\": \"fair\", \"model\": \"m3\", \"temperature\": 0}}";

typedef struct council_arg {
    council_t *want;
} council_arg_t;

static int run_council(void *arg)
{
    council_arg_t *a = arg;
    council_t *c = NULL;
    cbm_error_t err = {0};
    int rc;

    FA(rc = council_parse(council_json, strlen(council_json), &c, &err));
    if (rc != 0) return c != NULL ? fa_wrong("a failed council parse set its council") : rc;
    rc = same("council canonical JSON", c->canonical, a->want->canonical);
    if (rc == 0) rc = same("council version", c->version, a->want->version);
    council_destroy(c);
    return rc;
}

static void test_council(void **state)
{
    council_arg_t a = {NULL};
    cbm_error_t err = {0};

    (void)state;
    if (council_parse(council_json, strlen(council_json), &a.want, &err) != 0)
        fail_msg("council: %s", err.message);
    fa_loop("council", run_council, &a, 0);
    council_destroy(a.want);
}

/* Timers pushed out of order, duplicates among them, and popped back in
 * order; the heap and its set grow several times. */
static int run_sched(void *arg)
{
    sched_t *s;
    int64_t last = INT64_MIN;
    size_t n = 0;
    int rc = 0;

    (void)arg;
    FA(s = sched_create());
    if (s == NULL) return CBM_ENOMEM;
    for (int i = 0; i < 300 && rc == 0; i++) {
        char key[32];
        snprintf(key, sizeof(key), "sleep:s%d", i % 150);
        FA(rc = sched_push(s, "00000000-0000-4000-8000-000000000001", key,
                           (int64_t)((i * 7919) % 150)));
    }
    while (rc == 0 && sched_size(s) > 0) {
        sched_entry_t e;
        FA(rc = sched_pop(s, &e));
        if (rc != 0) break;
        if (e.due_us < last) rc = fa_wrong("popped %lld after %lld", (long long)e.due_us,
                                           (long long)last);
        last = e.due_us;
        free(e.key);
        n++;
    }
    if (rc == 0 && n != 150) rc = fa_wrong("%zu timers popped, want 150", n);
    sched_destroy(s);
    return rc;
}

static void test_sched(void **state)
{
    (void)state;
    fa_loop("timer heap", run_sched, NULL, 0);
}

/* What handlers call: every outcome, and a blueprint built in C. */
static void outcome_clear(struct cbm_step_out *o)
{
    free(o->result);
    free(o->error);
    free(o->type);
    memset(o, 0, sizeof(*o));
}

static int run_outcomes(void *arg)
{
    struct cbm_step_out o = {0};
    int rc;

    (void)arg;
    FA(rc = cbm_step_ok(&o, " {\"b\" : [1, 2.5, \"\\u00e9\"]} "));
    if (rc == 0) rc = same("ok", o.result, "{\"b\":[1,2.5,\"\u00e9\"]}");
    outcome_clear(&o);
    if (rc == 0) FA(rc = cbm_step_fail(&o, "boom", "it \"broke\"", true));
    if (rc == 0) rc = same("fail", o.error, "{\"kind\":\"boom\",\"message\":\"it \\\"broke\\\"\",\"retryable\":true}");
    outcome_clear(&o);
    if (rc == 0) FA(rc = cbm_step_sleep(&o, "[null]", 5));
    if (rc == 0) rc = same("sleep", o.result, "[null]");
    outcome_clear(&o);
    if (rc == 0) FA(rc = cbm_step_approval(&o, "review", "{\"x\":1}", 10));
    if (rc == 0) rc = same("approval", o.type, "review");
    outcome_clear(&o);
    return rc;
}

static int run_builder(void *arg)
{
    cbm_builder_t *b;
    char *json = NULL;
    int rc = 0;

    FA(b = cbm_builder_create("built"));
    if (b == NULL) return CBM_ENOMEM;
    for (int i = 0; i < 6 && rc == 0; i++) {
        char name[8];
        snprintf(name, sizeof(name), "s%d", i);
        FA(rc = cbm_builder_add_step(b, name, i % 2 ? "h" : NULL, (const char *[]){"s0", "s1"},
                                     i > 1 ? 2 : 0));
    }
    if (rc == 0) FA(rc = cbm_builder_set(b, "s3", "retry", "{\"max_attempts\":3}"));
    if (rc == 0) FA(rc = cbm_builder_set(b, NULL, "inputs", "{\"a\":{\"type\":\"string\"}}"));
    if (rc == 0) FA(rc = cbm_builder_to_json(b, &json));
    if (rc == 0) rc = same("built", json, arg);
    cbm_builder_destroy(b);
    free(json);
    return rc;
}

static void test_outcomes_and_builder(void **state)
{
    char *want = NULL;
    int rc;

    (void)state;
    fa_loop("handler outcomes", run_outcomes, NULL, 0);
    /* The builder's JSON, from a run with nothing failing. */
    {
        cbm_builder_t *b = cbm_builder_create("built");
        for (int i = 0; i < 6; i++) {
            char name[8];
            snprintf(name, sizeof(name), "s%d", i);
            cbm_builder_add_step(b, name, i % 2 ? "h" : NULL, (const char *[]){"s0", "s1"},
                                 i > 1 ? 2 : 0);
        }
        cbm_builder_set(b, "s3", "retry", "{\"max_attempts\":3}");
        cbm_builder_set(b, NULL, "inputs", "{\"a\":{\"type\":\"string\"}}");
        rc = cbm_builder_to_json(b, &want);
        cbm_builder_destroy(b);
        assert_int_equal(rc, 0);
    }
    fa_loop("builder", run_builder, want, 0);
    free(want);
}

static void test_report(void **state)
{
    (void)state;
    fa_report();
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_inputs),
        cmocka_unit_test(test_scenarios),
        cmocka_unit_test(test_own_cases),
        cmocka_unit_test(test_template),
        cmocka_unit_test(test_council),
        cmocka_unit_test(test_sched),
        cmocka_unit_test(test_outcomes_and_builder),
        cmocka_unit_test(test_report),
    };

    fa_init();
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCENARIO_DIR\n", argv[0]);
        return 2;
    }
    scenario_dir = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
