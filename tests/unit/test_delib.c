/*
 * test_delib.c - the expansion of a deliberation step into its child's
 * blueprint, and the child's inputs (engine/delib.h, docs/deliberation.md
 * §3).
 *
 * Golden files: tests/unit/golden/delib_<case>.json hold the expansion of
 * each case below, byte for byte (the text delib_expand() returns, then a
 * newline). A change of the expansion shows as a failed comparison; when it
 * is meant, bump DELIB_EXPANSION_VERSION and regenerate the files with
 *
 *   CBM_UPDATE_GOLDEN=1 meson test -C <build> test_delib
 *
 * (the test then writes the files instead of comparing, and passes), and
 * review the diff. The test finds the folder through its first argument
 * (meson passes it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cerebelum/cerebelum.h"
#include "engine/blueprint.h"
#include "engine/delib.h"
#include "tests/unit/bp_fixtures.h"

static const char *golden_dir = "tests/unit/golden";

/* The council of docs/deliberation.md §1. */
static const char *const council_dev =
    "{\"name\": \"dev\", \"role\": \"developer\", \"queue\": \"gpu\",\n"
    " \"requires\": {\"gpu\": \"true\"},\n"
    " \"model\": {\"name\": \"qwen2.5-7b-instruct\", \"temperature\": 0.7, \"top_p\": 1.0, "
    "\"max_tokens\": 1024},\n"
    " \"system_prompt\": \"You are {{agent}}, {{persona}}. You work as a {{role}}.\",\n"
    " \"prompts\": {\"generate\": \"Task:\\n{{task}}\\n\\nContext:\\n{{context}}\\n\\nWrite your "
    "proposal.\",\n"
    "   \"critique\": \"Task:\\n{{task}}\\n\\nCritique this proposal:\\n{{proposal}}\",\n"
    "   \"revise\": \"Task:\\n{{task}}\\n\\nYour proposal:\\n{{proposal}}\\n\\nCritiques:\\n"
    "{{critiques}}\\n\\nRevise it.\",\n"
    "   \"score\": \"Task:\\n{{task}}\\n\\nScore this proposal:\\n{{proposal}}\\n\\nRubric:\\n"
    "{{rubric}}\"},\n"
    " \"rubric\": {\"correctness\": {\"weight\": 0.6, \"description\": \"it solves the task\"},\n"
    "            \"clarity\": {\"weight\": 0.4, \"description\": \"it is easy to follow\"}},\n"
    " \"judge\": {\"persona\": \"an impartial senior reviewer\"},\n"
    " \"agents\": [{\"id\": \"dev-1\", \"persona\": \"a careful engineer\"},\n"
    "            {\"id\": \"dev-2\", \"persona\": \"a pragmatic engineer\", \"temperature\": 0.9},\n"
    "            {\"id\": \"dev-3\", \"persona\": \"a security-minded engineer\", \"model\": "
    "\"other-model\"}]}";

/* A council with the defaults: queue llm, no requires, no rubric. */
static const char *const council_min =
    "{\"name\":\"min\",\"model\":{\"name\":\"m\"},\"agents\":[{\"id\":\"a\"},{\"id\":\"b\"}]}";

/* The parent blueprint "feature": a plan step and the deliberation
 * "deliberate" with the given fields (after council and task). */
static bp_blueprint_t *parent(const char *fields)
{
    char json[4096];
    snprintf(json, sizeof(json),
             "{\"name\":\"feature\",\"steps\":[{\"name\":\"plan\"},{\"name\":\"deliberate\","
             "\"kind\":\"deliberation\",\"depends_on\":[\"plan\"],\"council\":\"dev\","
             "\"task\":\"$.inputs.task\",\"context\":{\"plan\":\"$.deps.plan\"}%s}]}",
             fields);
    return parse_ok(json);
}

static const bp_step_t *delib_step(const bp_blueprint_t *bp)
{
    return &bp->steps[bp_step_index(bp, "deliberate")];
}

static char *expand_ok(const bp_step_t *s, const char *council)
{
    char *out = (char *)&out;
    cbm_error_t err = {0};
    int rc = delib_expand(s, "feature", council, &out, &err);
    if (rc != 0) fail_msg("delib_expand: %s: %s", cbm_err_name(rc), err.message);
    assert_non_null(out);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Golden files                                                             */
/* ------------------------------------------------------------------------ */

#define CALL ",\"call\":{\"timeout_ms\":300000,\"heartbeat_timeout_ms\":30000," \
             "\"retry\":{\"max_attempts\":3,\"initial_ms\":1000}}"

static const struct golden_case {
    const char *name;
    const char *fields;
} golden_cases[] = {
    {"ring_n3_r1_judge",
     ",\"agents\":3,\"rounds\":1,\"topology\":\"ring\",\"scoring\":{\"mode\":\"judge\"},"
     "\"selection\":{\"rule\":\"top_score\",\"min_proposals\":2}" CALL
     ",\"budget\":{\"max_calls\":40,\"timeout_ms\":1800000}"},
    {"all_to_all_n3_r1_judge",
     ",\"agents\":3,\"rounds\":1,\"topology\":\"all_to_all\"" CALL},
    {"none_n4_r0_judge", ",\"agents\":4,\"topology\":\"none\"" CALL},
    {"ring_n2_r2_handler",
     ",\"agents\":2,\"rounds\":2,\"scoring\":{\"mode\":\"handler\",\"handler\":\"run_tests\","
     "\"queue\":\"ci\"}" CALL},
    {"ring_n3_r1_none_all",
     ",\"agents\":3,\"scoring\":{\"mode\":\"none\"},\"selection\":{\"rule\":\"all\"}" CALL},
    {"ring_n3_r1_judge_approval",
     ",\"agents\":3,\"selection\":{\"rule\":\"approval\",\"top_k\":2}" CALL},
};

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_golden(void **state)
{
    bool update = getenv("CBM_UPDATE_GOLDEN") != NULL && getenv("CBM_UPDATE_GOLDEN")[0] == '1';
    (void)state;
    for (size_t k = 0; k < sizeof(golden_cases) / sizeof(golden_cases[0]); k++) {
        char path[1024];
        bp_blueprint_t *bp = parent(golden_cases[k].fields);
        char *out = expand_ok(delib_step(bp), council_dev);
        size_t len = strlen(out);
        snprintf(path, sizeof(path), "%s/delib_%s.json", golden_dir, golden_cases[k].name);
        if (update) {
            FILE *f = fopen(path, "wb");
            if (f == NULL) fail_msg("cannot write %s", path);
            fwrite(out, 1, len, f);
            fputc('\n', f);
            fclose(f);
            printf("wrote %s\n", path);
        } else {
            char *want = read_file(path);
            if (want == NULL) fail_msg("cannot read %s (CBM_UPDATE_GOLDEN=1 writes it)", path);
            if (strlen(want) != len + 1 || want[len] != '\n' || memcmp(want, out, len) != 0)
                fail_msg("expansion %s differs from %s:\n  got:  %s\n  want: %s",
                         golden_cases[k].name, path, out, want);
            free(want);
        }
        /* The same arguments, the same bytes. */
        char *again = expand_ok(delib_step(bp), council_dev);
        assert_string_equal(again, out);
        cJSON_free(again);
        cJSON_free(out);
        bp_destroy(bp);
    }
}

/* ------------------------------------------------------------------------ */
/* The shape, for every combination                                         */
/* ------------------------------------------------------------------------ */

static const bp_step_t *find(const bp_blueprint_t *bp, const char *fmt, ...)
{
    char name[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    int i = bp_step_index(bp, name);
    if (i < 0) fail_msg("no step %s in %s", name, bp->canonical_json);
    return &bp->steps[i];
}

/* Does s depend directly on the step named name? */
static bool has_dep(const bp_blueprint_t *bp, const bp_step_t *s, const char *name)
{
    for (size_t k = 0; k < s->ndeps; k++)
        if (strcmp(bp->steps[s->deps[k]].name, name) == 0) return true;
    return false;
}

static void proposal(int r, int i, char *name, size_t size)
{
    if (r == 0) snprintf(name, size, "gen.%d", i);
    else snprintf(name, size, "rev.%d.%d", r, i);
}

static void check_args(const bp_step_t *s, const char *phase, int agent, int target, int round)
{
    char want[128];
    if (target >= 0)
        snprintf(want, sizeof(want),
                 "{\"agent\":%d,\"phase\":\"%s\",\"round\":%d,\"target\":%d}", agent, phase,
                 round, target);
    else
        snprintf(want, sizeof(want), "{\"agent\":%d,\"phase\":\"%s\",\"round\":%d}", agent, phase,
                 round);
    assert_non_null(s->args_json);
    assert_string_equal(s->args_json, want);
}

/* An LLM step: the council's queue and requires, the call settings, the
 * diverge rule {"match": {}, "on": "error", "action": "continue"}. */
static void check_call(const bp_step_t *s, const char *queue, int64_t timeout_ms, int attempts)
{
    assert_string_equal(s->queue, queue);
    assert_int_equal(s->timeout_ms, timeout_ms);
    assert_int_equal(s->retry.max_attempts, attempts);
    assert_int_equal(s->ndiverge, 1);
    assert_int_equal(s->diverge[0].on, BP_ON_ERROR);
    assert_int_equal(s->diverge[0].action, BP_ACTION_CONTINUE);
    assert_true(cJSON_IsObject(s->diverge[0].match) && s->diverge[0].match->child == NULL);
}

/* Expand one combination and check it against docs/deliberation.md §3. */
static void check_shape(bp_topology_t topo, int n, int rounds, bp_scoring_t scoring,
                        bp_selection_t rule, const char *council)
{
    static const char *const topos[] = {"none", "ring", "all_to_all"};
    static const char *const modes[] = {"judge", "handler", "none"};
    static const char *const rules[] = {"top_score", "threshold_first", "approval", "all"};
    char fields[512], name[64], dep[64];
    snprintf(fields, sizeof(fields),
             ",\"agents\":%d,\"rounds\":%d,\"topology\":\"%s\",\"scoring\":{\"mode\":\"%s\"%s},"
             "\"selection\":{\"rule\":\"%s\"%s},\"call\":{\"timeout_ms\":5000,"
             "\"heartbeat_timeout_ms\":100,\"retry\":{\"max_attempts\":2}}",
             n, rounds, topos[topo], modes[scoring],
             scoring == BP_SCORING_HANDLER ? ",\"handler\":\"h\"" : "", rules[rule],
             rule == BP_SELECT_THRESHOLD_FIRST ? ",\"threshold\":0.5" : "");
    bp_blueprint_t *pb = parent(fields);
    char *text = expand_ok(delib_step(pb), council);
    bp_blueprint_t *bp = parse_ok(text);
    const char *queue = strcmp(council, council_dev) == 0 ? "gpu" : "llm";
    size_t nsteps = 0, nllm = 0;
    int last = topo == BP_TOPOLOGY_NONE ? 0 : rounds;

    /* Parsing it again gives it back: it is canonical. */
    assert_string_equal(bp->canonical_json, text);
    assert_string_equal(bp->name, "_delib.feature.deliberate");
    for (int i = 0; i < n; i++) {
        const bp_step_t *s = find(bp, "gen.%d", i);
        assert_string_equal(s->handler, "cbm.llm.generate");
        assert_int_equal(s->ndeps, 0);
        check_args(s, "generate", i, -1, 0);
        check_call(s, queue, 5000, 2);
        assert_int_equal(s->heartbeat_timeout_ms, 100);
        assert_int_equal(s->nrequires, strcmp(queue, "gpu") == 0 ? 1 : 0);
        nsteps++;
        nllm++;
    }
    for (int r = 1; topo != BP_TOPOLOGY_NONE && r <= rounds; r++) {
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                const bp_step_t *s;
                if (j == i || (topo == BP_TOPOLOGY_RING && j != (i + 1) % n)) continue;
                s = topo == BP_TOPOLOGY_RING ? find(bp, "crit.%d.%d", r, i)
                                             : find(bp, "crit.%d.%d.%d", r, i, j);
                assert_string_equal(s->handler, "cbm.llm.critique");
                assert_int_equal(s->ndeps, 1);
                proposal(r - 1, j, dep, sizeof(dep));
                assert_true(has_dep(bp, s, dep));
                check_args(s, "critique", i, j, r);
                check_call(s, queue, 5000, 2);
                nsteps++;
                nllm++;
            }
            const bp_step_t *rev = find(bp, "rev.%d.%d", r, i);
            assert_string_equal(rev->handler, "cbm.llm.revise");
            proposal(r - 1, i, dep, sizeof(dep));
            assert_true(has_dep(bp, rev, dep));
            /* Its own proposal and every critique of it. */
            assert_int_equal(rev->ndeps, topo == BP_TOPOLOGY_RING ? 2 : (size_t)n);
            for (int k = 0; k < n; k++) {
                if (k == i || (topo == BP_TOPOLOGY_RING && (k + 1) % n != i)) continue;
                if (topo == BP_TOPOLOGY_RING) snprintf(dep, sizeof(dep), "crit.%d.%d", r, k);
                else snprintf(dep, sizeof(dep), "crit.%d.%d.%d", r, k, i);
                assert_true(has_dep(bp, rev, dep));
            }
            check_args(rev, "revise", i, -1, r);
            check_call(rev, queue, 5000, 2);
            nsteps++;
            nllm++;
        }
    }
    const bp_step_t *sel = find(bp, "select");
    assert_string_equal(sel->handler, "cbm.deliberation.select");
    assert_string_equal(sel->queue, "local");
    assert_string_equal(sel->args_json, "{\"expansion\":1,\"phase\":\"select\"}");
    assert_int_equal(sel->ndiverge, 0);
    assert_int_equal(sel->ndeps, (size_t)n * (scoring == BP_SCORING_NONE ? 1 : 2));
    nsteps++;
    for (int i = 0; i < n; i++) {
        proposal(last, i, dep, sizeof(dep));
        assert_true(has_dep(bp, sel, dep));
        if (scoring == BP_SCORING_NONE) continue;
        const bp_step_t *s = find(bp, "score.%d", i);
        snprintf(name, sizeof(name), "score.%d", i);
        assert_true(has_dep(bp, sel, name));
        assert_int_equal(s->ndeps, 1);
        assert_true(has_dep(bp, s, dep));
        check_args(s, "score", i, -1, 0);
        if (scoring == BP_SCORING_JUDGE) {
            assert_string_equal(s->handler, "cbm.llm.score");
            check_call(s, queue, 5000, 2);
            nllm++;
        } else {
            assert_string_equal(s->handler, "h");
            check_call(s, "local", 5000, 2);
            assert_int_equal(s->heartbeat_timeout_ms, 0);
            assert_int_equal(s->nrequires, 0);
        }
        nsteps++;
    }
    const bp_step_t *sink = sel;
    if (rule == BP_SELECT_APPROVAL) {
        const bp_step_t *pick = find(bp, "pick"), *fin = find(bp, "finish");
        assert_int_equal(pick->kind, BP_APPROVAL);
        assert_string_equal(pick->approval_type, "deliberation_pick");
        assert_int_equal(pick->ndeps, 1);
        assert_true(has_dep(bp, pick, "select"));
        assert_string_equal(fin->handler, "cbm.deliberation.finish");
        assert_string_equal(fin->queue, "local");
        assert_string_equal(fin->args_json, "{\"expansion\":1,\"phase\":\"finish\"}");
        assert_int_equal(fin->ndeps, 2);
        assert_true(has_dep(bp, fin, "select"));
        assert_true(has_dep(bp, fin, "pick"));
        sink = fin;
        nsteps += 2;
    }
    /* Nothing else; the LLM calls are those delib_llm_calls() counts. */
    assert_int_equal(bp->nsteps, nsteps);
    assert_int_equal((int64_t)nllm, delib_llm_calls(topo, n, topo == BP_TOPOLOGY_NONE ? 0 : rounds,
                                                    scoring));
    /* One sink: every other step is an ancestor of it (in a DAG every step
     * reaches a sink). */
    for (size_t i = 0; i < bp->nsteps; i++)
        if (&bp->steps[i] != sink && bp->steps[i].ndependents == 0)
            fail_msg("step %s is a sink besides %s", bp->steps[i].name, sink->name);
    assert_int_equal(sink->ndependents, 0);
    /* The declared inputs. */
    assert_true(bp->inputs_declared);
    assert_int_equal(bp->ninputs, 4);
    bp_destroy(bp);
    cJSON_free(text);
    bp_destroy(pb);
}

static void test_every_combination(void **state)
{
    static const int sizes[] = {1, 2, 3, 5, 16};
    (void)state;
    for (int t = 0; t < 3; t++)
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++)
            for (int r = 0; r <= BP_DELIB_MAX_ROUNDS; r++)
                for (int sc = 0; sc < 3; sc++)
                    for (int rule = 0; rule < 4; rule++) {
                        int n = sizes[k];
                        if (t == BP_TOPOLOGY_NONE && r > 0) continue;
                        if (t != BP_TOPOLOGY_NONE && n < 2) continue;
                        if (sc == BP_SCORING_NONE &&
                            (rule == BP_SELECT_TOP_SCORE || rule == BP_SELECT_THRESHOLD_FIRST))
                            continue;
                        /* The big ones once, not for every rule. */
                        if (n == 16 && r > 1 && (rule > 0 || sc > 0)) continue;
                        check_shape((bp_topology_t)t, n, r, (bp_scoring_t)sc,
                                    (bp_selection_t)rule, council_dev);
                    }
    /* A council with the defaults: queue llm, no requires. */
    check_shape(BP_TOPOLOGY_RING, 2, 1, BP_SCORING_NONE, BP_SELECT_ALL, council_min);
    check_shape(BP_TOPOLOGY_ALL_TO_ALL, 3, 2, BP_SCORING_HANDLER, BP_SELECT_APPROVAL, council_min);
}

/* ------------------------------------------------------------------------ */
/* N from the council, the budget, councils that do not fit                 */
/* ------------------------------------------------------------------------ */

static void test_agents_from_council(void **state)
{
    (void)state;
    cbm_error_t err = {0};
    int n = -1;
    int64_t mt = -1;
    bp_blueprint_t *pb = parent("");
    const bp_step_t *s = delib_step(pb);

    /* N is the council's size; max_tokens the council's. */
    assert_int_equal(delib_agents(s, council_dev, &n, &mt, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(mt, 1024);
    char *text = expand_ok(s, council_dev);
    bp_blueprint_t *bp = parse_ok(text);
    assert_true(bp_step_index(bp, "gen.2") >= 0);
    assert_true(bp_step_index(bp, "gen.3") < 0);
    assert_true(bp_step_index(bp, "crit.1.2") >= 0);
    bp_destroy(bp);
    cJSON_free(text);
    /* The budget check at child start, with those numbers. */
    assert_int_equal(delib_check_budget(s, n, mt, &err), 0);
    bp_destroy(pb);

    pb = parent(",\"model\":{\"max_tokens\":100},\"budget\":{\"max_calls\":11,"
                "\"max_completion_tokens\":1000}");
    s = delib_step(pb);
    assert_int_equal(delib_agents(s, council_dev, &n, &mt, &err), 0);
    assert_int_equal(mt, 100); /* the step's override */
    assert_int_equal(delib_check_budget(s, n, mt, &err), CBM_EINVAL);
    assert_string_equal(err.message, "step 'deliberate': budget.max_calls is 11 but the "
                                     "deliberation may make up to 12 calls (12 calls × 1 "
                                     "attempt)");
    /* With 2 agents: 8 calls, 800 tokens. */
    assert_int_equal(delib_agents(s, council_min, &n, &mt, &err), CBM_EINVAL);
    assert_string_equal(err.message, "step 'deliberate': council 'min' has no rubric, which "
                                     "scoring mode judge needs");
    bp_destroy(pb);
    pb = parent(",\"scoring\":{\"mode\":\"none\"},\"selection\":{\"rule\":\"all\"},"
                "\"budget\":{\"max_calls\":6,\"max_completion_tokens\":1000}");
    s = delib_step(pb);
    assert_int_equal(delib_agents(s, council_min, &n, &mt, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(mt, 0); /* unknown: the token check is skipped */
    assert_int_equal(delib_check_budget(s, n, mt, &err), 0);
    assert_int_equal(delib_check_budget(s, n, 166, &err), 0);
    assert_int_equal(delib_check_budget(s, n, 167, &err), CBM_EINVAL);
    bp_destroy(pb);
}

static void expect_council_error(const char *fields, const char *council, int code,
                                 const char *message)
{
    bp_blueprint_t *pb = parent(fields);
    const bp_step_t *s = delib_step(pb);
    cbm_error_t err = {0};
    char *out = (char *)&out;
    int n;
    int64_t mt;
    assert_int_equal(delib_expand(s, "feature", council, &out, &err), code);
    assert_null(out);
    assert_string_equal(err.message, message);
    memset(&err, 0, sizeof(err));
    if (strstr(message, "makes an invalid blueprint") != NULL) {
        /* Only the expansion sees the blueprint. */
        bp_destroy(pb);
        return;
    }
    assert_int_equal(delib_agents(s, council, &n, &mt, &err), code);
    assert_string_equal(err.message, message);
    memset(&err, 0, sizeof(err));
    out = (char *)&out;
    assert_int_equal(delib_child_inputs(s, "{\"inputs\":{},\"deps\":{}}", VERSION_A, council, &out,
                                        &err),
                     code);
    assert_null(out);
    assert_string_equal(err.message, message);
    bp_destroy(pb);
}

static void test_council_errors(void **state)
{
    (void)state;
    expect_council_error("", "{\"name\":", CBM_EJSON,
                         "step 'deliberate': council definition: malformed JSON");
    expect_council_error("", NULL, CBM_EINVAL, "step 'deliberate': no council definition");
    expect_council_error("", "[1]", CBM_EINVAL,
                         "step 'deliberate': council definition must be an object");
    expect_council_error("", "{\"agents\":[{\"id\":\"a\"}]}", CBM_EINVAL,
                         "step 'deliberate': council definition has no name");
    expect_council_error("", "{\"name\":\"c\",\"rubric\":{\"x\":{}}}", CBM_EINVAL,
                         "step 'deliberate': council 'c': agents must be an array of 1 to 16 "
                         "agents");
    expect_council_error("", "{\"name\":\"c\",\"agents\":[]}", CBM_EINVAL,
                         "step 'deliberate': council 'c': agents must be an array of 1 to 16 "
                         "agents");
    expect_council_error("", "{\"name\":\"c\",\"agents\":{\"id\":\"a\"}}", CBM_EINVAL,
                         "step 'deliberate': council 'c': agents must be an array of 1 to 16 "
                         "agents");
    expect_council_error("",
                         "{\"name\":\"c\",\"agents\":[{\"id\":\"1\"},{\"id\":\"2\"},{\"id\":\"3\"},"
                         "{\"id\":\"4\"},{\"id\":\"5\"},{\"id\":\"6\"},{\"id\":\"7\"},{\"id\":\"8\"},"
                         "{\"id\":\"9\"},{\"id\":\"10\"},{\"id\":\"11\"},{\"id\":\"12\"},{\"id\":\"13\"},"
                         "{\"id\":\"14\"},{\"id\":\"15\"},{\"id\":\"16\"},{\"id\":\"17\"}]}",
                         CBM_EINVAL,
                         "step 'deliberate': council 'c': agents must be an array of 1 to 16 "
                         "agents");
    expect_council_error("", "{\"name\":\"c\",\"agents\":[{\"id\":\"a\"},{\"persona\":\"p\"}]}",
                         CBM_EINVAL,
                         "step 'deliberate': council 'c': agents[1] must be an object with an id");
    expect_council_error("", "{\"name\":\"c\",\"queue\":\"a b\",\"agents\":[{\"id\":\"a\"}]}",
                         CBM_EINVAL, "step 'deliberate': council 'c': queue must be a name");
    expect_council_error("", "{\"name\":\"c\",\"requires\":[],\"agents\":[{\"id\":\"a\"}]}",
                         CBM_EINVAL, "step 'deliberate': council 'c': requires must be an object");
    expect_council_error("", "{\"name\":\"c\",\"model\":\"m\",\"agents\":[{\"id\":\"a\"}]}",
                         CBM_EINVAL, "step 'deliberate': council 'c': model must be an object");
    expect_council_error("",
                         "{\"name\":\"c\",\"model\":{\"max_tokens\":0.5},\"agents\":[{\"id\":\"a\"}]}",
                         CBM_EINVAL,
                         "step 'deliberate': council 'c': model.max_tokens must be an integer "
                         "from 1 to 1000000");
    /* It cannot run this step. */
    expect_council_error("", "{\"name\":\"c\",\"rubric\":{\"x\":{}},\"agents\":[{\"id\":\"a\"}]}",
                         CBM_EINVAL,
                         "step 'deliberate': council 'c' has 1 agent, and topology ring needs at "
                         "least 2");
    expect_council_error(",\"topology\":\"all_to_all\"",
                         "{\"name\":\"c\",\"rubric\":{\"x\":{}},\"agents\":[{\"id\":\"a\"}]}",
                         CBM_EINVAL,
                         "step 'deliberate': council 'c' has 1 agent, and topology all_to_all "
                         "needs at least 2");
    expect_council_error("", "{\"name\":\"c\",\"rubric\":{},\"agents\":[{\"id\":\"a\"},{\"id\":\"b\"}]}",
                         CBM_EINVAL,
                         "step 'deliberate': council 'c' has no rubric, which scoring mode judge "
                         "needs");
    expect_council_error(",\"selection\":{\"min_proposals\":3}", council_min, CBM_EINVAL,
                         "step 'deliberate': council 'min' has no rubric, which scoring mode "
                         "judge needs");
    expect_council_error(",\"scoring\":{\"mode\":\"none\"},\"selection\":{\"rule\":\"all\","
                         "\"min_proposals\":3}",
                         council_min, CBM_EINVAL,
                         "step 'deliberate': selection.min_proposals (3) is more than the 2 "
                         "agents of council 'min'");
    /* What the blueprint format refuses comes back naming the council. */
    expect_council_error(",\"scoring\":{\"mode\":\"none\"},\"selection\":{\"rule\":\"all\"}",
                         "{\"name\":\"c\",\"requires\":{\"gpu\":1},\"agents\":[{\"id\":\"a\"},"
                         "{\"id\":\"b\"}]}",
                         CBM_EINVAL,
                         "step 'deliberate': council 'c' makes an invalid blueprint: step "
                         "'gen.0': requires.gpu must be a string");
    /* With topology none one agent is enough. */
    bp_blueprint_t *pb = parent(",\"topology\":\"none\",\"scoring\":{\"mode\":\"none\"},"
                                "\"selection\":{\"rule\":\"all\"}");
    char *text = expand_ok(delib_step(pb),
                           "{\"name\":\"solo\",\"agents\":[{\"id\":\"a\"}]}");
    assert_string_equal(
        text, "{\"name\":\"_delib.feature.deliberate\",\"inputs\":{\"context\":{\"required\":true},"
              "\"council\":{\"type\":\"object\",\"required\":true},\"params\":{\"type\":\"object\","
              "\"required\":true},\"task\":{\"required\":true}},\"steps\":[{\"name\":\"gen.0\","
              "\"kind\":\"task\",\"handler\":\"cbm.llm.generate\",\"queue\":\"llm\",\"depends_on\":[],"
              "\"timeout_ms\":0,\"retry\":{\"max_attempts\":1,\"initial_ms\":1000,\"max_ms\":60000,"
              "\"multiplier\":2,\"non_retryable\":[]},\"diverge\":[{\"match\":{},\"on\":\"error\","
              "\"action\":\"continue\"}],\"args\":{\"agent\":0,\"phase\":\"generate\",\"round\":0}},"
              "{\"name\":\"select\",\"kind\":\"task\",\"handler\":\"cbm.deliberation.select\","
              "\"queue\":\"local\",\"depends_on\":[\"gen.0\"],\"timeout_ms\":0,\"retry\":{"
              "\"max_attempts\":1,\"initial_ms\":1000,\"max_ms\":60000,\"multiplier\":2,"
              "\"non_retryable\":[]},\"args\":{\"expansion\":1,\"phase\":\"select\"}}]}");
    cJSON_free(text);
    /* Not a deliberation step. */
    cbm_error_t err = {0};
    char *out = NULL;
    assert_int_equal(delib_expand(&pb->steps[0], "feature", council_dev, &out, &err), CBM_EINVAL);
    assert_int_equal(delib_expand(delib_step(pb), "feature", council_dev, NULL, &err), CBM_EINVAL);
    assert_int_equal(delib_expand(delib_step(pb), NULL, council_dev, &out, &err), CBM_EINVAL);
    assert_null(out);
    bp_destroy(pb);
}

/* ------------------------------------------------------------------------ */
/* The child's inputs                                                       */
/* ------------------------------------------------------------------------ */

static void test_child_inputs(void **state)
{
    (void)state;
    cbm_error_t err = {0};
    char *out = NULL;
    bp_blueprint_t *pb = parent(",\"model\":{\"temperature\":0.2,\"response_format\":{\"type\":"
                                "\"json_object\"}},\"selection\":{\"rule\":\"threshold_first\","
                                "\"threshold\":0.75,\"min_proposals\":2}");
    const bp_step_t *s = delib_step(pb);
    const char *input = "{\"inputs\":{\"task\":\"write a parser\"},\"deps\":{\"plan\":"
                        "{\"steps\":[1,2]}}}";
    assert_int_equal(delib_child_inputs(s, input, VERSION_A, council_min, &out, &err),
                     CBM_EINVAL); /* no rubric */
    assert_int_equal(delib_child_inputs(s, input, VERSION_A, council_dev, &out, &err), 0);
    cJSON *got = cJSON_Parse(out), *want_def = cJSON_Parse(council_dev);
    assert_non_null(got);
    /* The definition as it was given. */
    cJSON *council = cJSON_GetObjectItemCaseSensitive(got, "council");
    assert_true(cJSON_Compare(cJSON_GetObjectItemCaseSensitive(council, "definition"), want_def,
                              true));
    cJSON_DeleteItemFromObjectCaseSensitive(council, "definition");
    char *rest = cJSON_PrintUnformatted(got);
    assert_string_equal(
        rest, "{\"task\":\"write a parser\",\"context\":{\"plan\":{\"steps\":[1,2]}},"
              "\"council\":{\"name\":\"dev\",\"version\":\"" VERSION_A "\"},"
              "\"params\":{\"agents\":3,\"rounds\":1,\"topology\":\"ring\",\"scoring\":{\"mode\":"
              "\"judge\"},\"selection\":{\"rule\":\"threshold_first\",\"top_k\":3,"
              "\"min_proposals\":2,\"threshold\":0.75},\"model\":{\"name\":\"qwen2.5-7b-instruct\","
              "\"temperature\":0.2,\"top_p\":1,\"max_tokens\":1024,\"response_format\":{\"type\":"
              "\"json_object\"}}}}");
    cJSON_free(rest);
    cJSON_free(out);
    cJSON_Delete(got);
    cJSON_Delete(want_def);
    /* The child blueprint accepts them. */
    char *text = expand_ok(s, council_dev), *norm = NULL;
    bp_blueprint_t *child = parse_ok(text);
    assert_int_equal(delib_child_inputs(s, input, VERSION_A, council_dev, &out, &err), 0);
    assert_int_equal(bp_check_inputs(child, out, &norm, &err), 0);
    cJSON_free(norm);
    cJSON_free(out);
    bp_destroy(child);
    cJSON_free(text);
    /* A missing reference is null; handler scoring carries its handler. */
    bp_destroy(pb);
    pb = parent(",\"agents\":2,\"scoring\":{\"mode\":\"handler\",\"handler\":\"t\"}");
    s = delib_step(pb);
    assert_int_equal(delib_child_inputs(s, "{\"inputs\":{},\"deps\":{}}", VERSION_A, council_min,
                                        &out, &err),
                     0);
    assert_string_equal(out, "{\"task\":null,\"context\":{\"plan\":null},\"council\":{\"name\":"
                             "\"min\",\"version\":\"" VERSION_A "\",\"definition\":{\"name\":"
                             "\"min\",\"model\":{\"name\":\"m\"},\"agents\":[{\"id\":\"a\"},"
                             "{\"id\":\"b\"}]}},\"params\":{\"agents\":2,\"rounds\":1,"
                             "\"topology\":\"ring\",\"scoring\":{\"mode\":\"handler\",\"handler\":"
                             "\"t\",\"queue\":\"local\"},\"selection\":{\"rule\":\"top_score\","
                             "\"top_k\":3,\"min_proposals\":1},\"model\":{\"name\":\"m\"}}}");
    cJSON_free(out);
    out = (char *)&out;
    assert_int_equal(delib_child_inputs(s, "{\"inputs\":", VERSION_A, council_min, &out, &err),
                     CBM_EJSON);
    assert_null(out);
    assert_int_equal(delib_child_inputs(s, "{}", NULL, council_min, &out, &err), CBM_EINVAL);
    bp_destroy(pb);
}

/* ------------------------------------------------------------------------ */
/* Out of memory                                                            */
/* ------------------------------------------------------------------------ */

static long alloc_countdown = -1;

static void *failing_malloc(size_t n)
{
    if (alloc_countdown == 0) return NULL;
    if (alloc_countdown > 0) alloc_countdown--;
    return malloc(n);
}

static void set_failing_allocator(long fail_at)
{
    cJSON_Hooks hooks = {failing_malloc, free};
    alloc_countdown = fail_at;
    cJSON_InitHooks(&hooks);
}

static void reset_allocator(void)
{
    alloc_countdown = -1;
    cJSON_InitHooks(NULL);
}

/* Every allocation failure is CBM_ENOMEM (or CBM_EJSON, where cJSON's parser
 * cannot tell), leaks nothing, and the result is the same once allocations
 * stop failing. */
static void test_out_of_memory(void **state)
{
    (void)state;
    bp_blueprint_t *pb = parent(",\"agents\":2,\"scoring\":{\"mode\":\"handler\",\"handler\":\"t\"},"
                                "\"selection\":{\"rule\":\"approval\"}");
    const bp_step_t *s = delib_step(pb);
    char *want = expand_ok(s, council_dev), *want_in = NULL;
    cbm_error_t err = {0};
    const char *input = "{\"inputs\":{\"task\":\"t\"},\"deps\":{\"plan\":[1]}}";
    assert_int_equal(delib_child_inputs(s, input, VERSION_A, council_dev, &want_in, &err), 0);
    for (long fail_at = 0;; fail_at++) {
        char *out = NULL;
        set_failing_allocator(fail_at);
        int rc = delib_expand(s, "feature", council_dev, &out, &err);
        reset_allocator();
        if (rc == 0) {
            assert_string_equal(out, want);
            cJSON_free(out);
            break;
        }
        assert_null(out);
        if (rc != CBM_ENOMEM && rc != CBM_EJSON)
            fail_msg("allocation %ld: %s (%s)", fail_at, cbm_err_name(rc), err.message);
        assert_true(fail_at < 100000);
    }
    for (long fail_at = 0;; fail_at++) {
        char *out = NULL;
        set_failing_allocator(fail_at);
        int rc = delib_child_inputs(s, input, VERSION_A, council_dev, &out, &err);
        reset_allocator();
        if (rc == 0) {
            assert_string_equal(out, want_in);
            cJSON_free(out);
            break;
        }
        assert_null(out);
        if (rc != CBM_ENOMEM && rc != CBM_EJSON)
            fail_msg("allocation %ld: %s (%s)", fail_at, cbm_err_name(rc), err.message);
        assert_true(fail_at < 100000);
    }
    cJSON_free(want);
    cJSON_free(want_in);
    bp_destroy(pb);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_every_combination),
        cmocka_unit_test(test_agents_from_council),
        cmocka_unit_test(test_council_errors),
        cmocka_unit_test(test_child_inputs),
        cmocka_unit_test(test_out_of_memory),
    };
    if (argc > 1) golden_dir = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
