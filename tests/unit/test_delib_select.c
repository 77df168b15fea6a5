/*
 * test_delib_select.c - the built-in handlers of a deliberation's child as
 * pure functions (engine/delib_select.h): ranking, ties, thresholds, the
 * quorum, failed and skipped agents, bad scores, usage, the rules all and
 * approval, and finish's pick.
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
#include "engine/delib_select.h"

#define VERSION "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* The council of docs/deliberation.md §1, shortened: three agents, the
 * rubric correctness 0.6, clarity 0.4. */
#define COUNCIL                                                                             \
    "{\"name\":\"dev\",\"version\":\"" VERSION "\",\"definition\":{\"name\":\"dev\","       \
    "\"role\":\"developer\",\"model\":{\"name\":\"m\"},\"rubric\":{\"correctness\":{\"weight\":" \
    "0.6,\"description\":\"d\"},\"clarity\":{\"weight\":0.4,\"description\":\"d\"}},"      \
    "\"agents\":[{\"id\":\"dev-1\"},{\"id\":\"dev-2\"},{\"id\":\"dev-3\"}]}}"

/* The select step's input. params: the params object's members after
 * "agents"; deps: the deps object's members. */
static char *input(int agents, const char *params, const char *deps)
{
    size_t n = strlen(params) + strlen(deps) + 2048;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n,
             "{\"inputs\":{\"task\":\"t\",\"context\":null,\"council\":" COUNCIL ","
             "\"params\":{\"agents\":%d,%s,\"model\":{\"name\":\"m\"}}},\"deps\":{%s},"
             "\"args\":{\"expansion\":1,\"phase\":\"select\"}}",
             agents, params, deps);
    return s;
}

/* Ring, one round, judge scoring, the given selection. */
#define RING_JUDGE(selection)                                                              \
    "\"rounds\":1,\"topology\":\"ring\",\"scoring\":{\"mode\":\"judge\"},\"selection\":" \
    selection

/* A call result of agent a with the given content and usage. */
#define PROPOSAL(a, content, pt, ct)                                                        \
    "{\"agent\":\"" a "\",\"phase\":\"revise\",\"content\":\"" content "\",\"finish_reason\":" \
    "\"stop\",\"model\":\"m\",\"usage\":{\"prompt_tokens\":" #pt ",\"completion_tokens\":"    \
    #ct ",\"cached_tokens\":1}}"
/* The judge's answer with these criteria. */
#define JUDGE(c1, c2)                                                                      \
    "{\"agent\":\"judge\",\"phase\":\"score\",\"content\":\"{}\",\"content_json\":{"        \
    "\"criteria\":{\"correctness\":" #c1 ",\"clarity\":" #c2 "},\"rationale\":\"r\"},"      \
    "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5,\"cached_tokens\":0}}"

static char *select_ok(const char *in)
{
    char *result = NULL, *kind = NULL, *message = NULL;
    int rc = delib_select(in, &result, &kind, &message);
    if (rc != 0) fail_msg("delib_select: %s", cbm_err_name(rc));
    if (result == NULL) fail_msg("delib_select failed: %s: %s", kind, message);
    assert_null(kind);
    assert_null(message);
    return result;
}

static void select_fails(const char *in, const char *want_kind, const char *want_message)
{
    char *result = NULL, *kind = NULL, *message = NULL;
    int rc = delib_select(in, &result, &kind, &message);
    assert_int_equal(rc, 0);
    if (result != NULL) fail_msg("delib_select succeeded: %s", result);
    assert_non_null(kind);
    assert_non_null(message);
    assert_string_equal(kind, want_kind);
    if (want_message != NULL) assert_string_equal(message, want_message);
    cJSON_free(kind);
    cJSON_free(message);
}

/* The value at path of the result text, printed. */
static char *at(const char *result, const char *key)
{
    cJSON *r = cJSON_Parse(result);
    char *out;
    assert_non_null(r);
    out = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(r, key));
    cJSON_Delete(r);
    return out;
}

static void assert_at(const char *result, const char *key, const char *want)
{
    char *got = at(result, key);
    assert_non_null(got);
    if (strcmp(got, want) != 0) fail_msg("%s:\n  got:  %s\n  want: %s", key, got, want);
    cJSON_free(got);
}

/* The three proposals of ring R=1 and their scores: 0.5, 0.86, 0.7. */
#define THREE_SCORED                                                              \
    "\"rev.1.0\":" PROPOSAL("dev-1", "p0", 100, 10) ",\"rev.1.1\":" PROPOSAL("dev-2", "p1", 200, \
                                                                             20)  \
    ",\"rev.1.2\":" PROPOSAL("dev-3", "p2", 300, 30) ",\"score.0\":" JUDGE(0.5, 0.5)          \
    ",\"score.1\":" JUDGE(0.9, 0.8) ",\"score.2\":" JUDGE(0.7, 0.7)

static void test_top_score(void **state)
{
    (void)state;
    char *in = input(3, RING_JUDGE("{\"rule\":\"top_score\",\"top_k\":2,\"min_proposals\":1}"),
                     THREE_SCORED);
    char *r = select_ok(in);
    assert_string_equal(
        r, "{\"winner\":{\"agent\":\"dev-2\",\"step\":\"rev.1.1\",\"content\":\"p1\",\"score\":0.86},"
           "\"ranking\":[{\"agent\":\"dev-2\",\"score\":0.86,\"criteria\":{\"correctness\":0.9,"
           "\"clarity\":0.8}},{\"agent\":\"dev-3\",\"score\":0.7,\"criteria\":{\"correctness\":0.7,"
           "\"clarity\":0.7}},{\"agent\":\"dev-1\",\"score\":0.5,\"criteria\":{\"correctness\":0.5,"
           "\"clarity\":0.5}}],"
           "\"candidates\":[{\"agent\":\"dev-2\",\"step\":\"rev.1.1\",\"content\":\"p1\",\"score\":"
           "0.86},{\"agent\":\"dev-3\",\"step\":\"rev.1.2\",\"content\":\"p2\",\"score\":0.7}],"
           "\"failed\":[],"
           "\"usage\":{\"calls\":6,\"prompt_tokens\":630,\"completion_tokens\":75,"
           "\"cached_tokens\":3},"
           "\"council\":{\"name\":\"dev\",\"version\":\"" VERSION "\"}}");
    cJSON_free(r);
    free(in);
}

/* Equal scores: the lower agent index first, and it wins. */
static void test_ties(void **state)
{
    (void)state;
    char *in = input(3, RING_JUDGE("{\"rule\":\"top_score\",\"top_k\":3,\"min_proposals\":1}"),
                     "\"rev.1.0\":" PROPOSAL("dev-1", "p0", 1, 1) ",\"rev.1.1\":" PROPOSAL(
                         "dev-2", "p1", 1, 1) ",\"rev.1.2\":" PROPOSAL("dev-3", "p2", 1, 1)
                     ",\"score.0\":" JUDGE(0.5, 0.5) ",\"score.1\":" JUDGE(0.8, 0.8)
                     ",\"score.2\":" JUDGE(0.8, 0.8));
    char *r = select_ok(in);
    assert_at(r, "winner", "{\"agent\":\"dev-2\",\"step\":\"rev.1.1\",\"content\":\"p1\",\"score\":0.8}");
    char *ranking = at(r, "ranking");
    assert_non_null(strstr(ranking, "[{\"agent\":\"dev-2\",\"score\":0.8,"));
    assert_non_null(strstr(ranking, "},{\"agent\":\"dev-3\",\"score\":0.8,"));
    assert_non_null(strstr(ranking, "},{\"agent\":\"dev-1\",\"score\":0.5,"));
    cJSON_free(ranking);
    cJSON_free(r);
    free(in);
    /* 0.6 * 0.7 + 0.4 * 0.4 and 0.6 * 0.4 + 0.4 * 0.85 are both 0.58 in
     * decimal, not in binary: rounded, they tie. */
    in = input(2, "\"rounds\":0,\"topology\":\"none\",\"scoring\":{\"mode\":\"judge\"},"
                  "\"selection\":{\"rule\":\"top_score\",\"top_k\":3,\"min_proposals\":1}",
               "\"gen.0\":" PROPOSAL("dev-1", "p0", 1, 1) ",\"gen.1\":" PROPOSAL("dev-2", "p1", 1,
                                                                                  1)
               ",\"score.0\":" JUDGE(0.4, 0.85) ",\"score.1\":" JUDGE(0.7, 0.4));
    r = select_ok(in);
    assert_at(r, "winner", "{\"agent\":\"dev-1\",\"step\":\"gen.0\",\"content\":\"p0\",\"score\":0.58}");
    cJSON_free(r);
    free(in);
}

static void test_threshold_first(void **state)
{
    (void)state;
    static const struct {
        const char *threshold, *winner;
    } cases[] = {{"0.6", "dev-2"}, {"0.5", "dev-1"}, {"0.7", "dev-2"}, {"0.9", "dev-2"},
                 {"0", "dev-1"}};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char sel[256], want[64];
        snprintf(sel, sizeof(sel),
                 RING_JUDGE("{\"rule\":\"threshold_first\",\"threshold\":%s,\"top_k\":3,"
                            "\"min_proposals\":1}"),
                 cases[k].threshold);
        char *in = input(3, sel, THREE_SCORED), *r = select_ok(in), *w = at(r, "winner");
        snprintf(want, sizeof(want), "{\"agent\":\"%s\"", cases[k].winner);
        if (strncmp(w, want, strlen(want)) != 0)
            fail_msg("threshold %s: winner %s, want %s", cases[k].threshold, w, cases[k].winner);
        /* The ranking and candidates are by score all the same. */
        assert_non_null(strstr(r, "\"candidates\":[{\"agent\":\"dev-2\""));
        cJSON_free(w);
        cJSON_free(r);
        free(in);
    }
    /* With dev-1 failed, 0.55 is nobody's: the top score wins. */
    char *in = input(3, RING_JUDGE("{\"rule\":\"threshold_first\",\"threshold\":0.55,\"top_k\":3,"
                                   "\"min_proposals\":1}"),
                     "\"rev.1.0\":{\"kind\":\"llm_timeout\",\"message\":\"slow\",\"retryable\":true},"
                     "\"rev.1.1\":" PROPOSAL("dev-2", "p1", 1, 1) ",\"rev.1.2\":" PROPOSAL(
                         "dev-3", "p2", 1, 1) ",\"score.0\":{\"skipped\":true,\"agent\":0,"
                                              "\"because\":\"rev.1.0\"},"
                     "\"score.1\":" JUDGE(0.5, 0.5) ",\"score.2\":" JUDGE(0.6, 0.4));
    char *r = select_ok(in);
    assert_at(r, "winner", "{\"agent\":\"dev-3\",\"step\":\"rev.1.2\",\"content\":\"p2\",\"score\":0.52}");
    cJSON_free(r);
    free(in);
}

/* Failed and skipped agents are listed, and the others go on. */
static void test_failed_and_skipped(void **state)
{
    (void)state;
    char *in = input(3, RING_JUDGE("{\"rule\":\"top_score\",\"top_k\":3,\"min_proposals\":1}"),
                     "\"rev.1.0\":{\"skipped\":true,\"agent\":\"dev-1\",\"because\":\"gen.0\"},"
                     "\"rev.1.1\":" PROPOSAL("dev-2", "p1", 7, 3) ","
                     "\"rev.1.2\":{\"kind\":\"llm_context_length\",\"message\":\"too long\","
                     "\"retryable\":false},"
                     "\"score.0\":{\"skipped\":true,\"agent\":\"judge\",\"because\":\"gen.0\"},"
                     "\"score.1\":" JUDGE(1, 1) ","
                     "\"score.2\":{\"skipped\":true,\"agent\":\"judge\",\"because\":\"rev.1.2\"}");
    char *r = select_ok(in);
    assert_at(r, "failed",
              "[{\"agent\":\"dev-1\",\"step\":\"gen.0\",\"kind\":\"deliberation_skipped\","
              "\"message\":\"rev.1.0 was skipped because gen.0 failed\"},"
              "{\"agent\":\"dev-3\",\"step\":\"rev.1.2\",\"kind\":\"llm_context_length\","
              "\"message\":\"too long\"}]");
    assert_at(r, "winner", "{\"agent\":\"dev-2\",\"step\":\"rev.1.1\",\"content\":\"p1\",\"score\":1}");
    assert_at(r, "usage", "{\"calls\":2,\"prompt_tokens\":17,\"completion_tokens\":8,"
                          "\"cached_tokens\":1}");
    cJSON_free(r);
    free(in);
}

/* A skipped marker that carries the failed call's error: the agent is
 * listed with that kind and message, at the step that failed. */
static void test_skipped_with_error(void **state)
{
    (void)state;
    char *in = input(3, RING_JUDGE("{\"rule\":\"top_score\",\"top_k\":3,\"min_proposals\":1}"),
                     "\"rev.1.0\":{\"skipped\":true,\"agent\":\"dev-1\",\"because\":\"gen.0\","
                     "\"error\":{\"kind\":\"llm_context_length\",\"message\":\"too long\"}},"
                     "\"rev.1.1\":" PROPOSAL("dev-2", "p1", 7, 3) ","
                     "\"rev.1.2\":" PROPOSAL("dev-3", "p2", 7, 3) ","
                     "\"score.0\":{\"skipped\":true,\"agent\":\"judge\",\"because\":\"gen.0\","
                     "\"error\":{\"kind\":\"llm_context_length\",\"message\":\"too long\"}},"
                     "\"score.1\":" JUDGE(1, 1) ",\"score.2\":" JUDGE(0, 0));
    char *r = select_ok(in);
    assert_at(r, "failed",
              "[{\"agent\":\"dev-1\",\"step\":\"gen.0\",\"kind\":\"llm_context_length\","
              "\"message\":\"too long\"}]");
    cJSON_free(r);
    free(in);
}

static void test_quorum(void **state)
{
    (void)state;
    char *in = input(3, RING_JUDGE("{\"rule\":\"top_score\",\"top_k\":3,\"min_proposals\":2}"),
                     "\"rev.1.0\":{\"skipped\":true,\"agent\":\"dev-1\",\"because\":\"gen.0\"},"
                     "\"rev.1.1\":" PROPOSAL("dev-2", "p1", 7, 3) ","
                     "\"rev.1.2\":{\"kind\":\"llm_context_length\",\"message\":\"too long\","
                     "\"retryable\":false},"
                     "\"score.0\":{\"skipped\":true,\"because\":\"gen.0\"},"
                     "\"score.1\":" JUDGE(1, 1) ",\"score.2\":{\"skipped\":true}");
    select_fails(in, "deliberation_quorum",
                 "1 of 3 proposals survived, 2 needed; failed: dev-1 (gen.0: "
                 "deliberation_skipped), dev-3 (rev.1.2: llm_context_length)");
    free(in);
    /* Nobody. */
    in = input(2, "\"rounds\":0,\"topology\":\"none\",\"scoring\":{\"mode\":\"none\"},"
                  "\"selection\":{\"rule\":\"all\",\"top_k\":3,\"min_proposals\":1}",
               "\"gen.0\":{\"kind\":\"llm_auth\",\"message\":\"401\",\"retryable\":false},"
               "\"gen.1\":{\"kind\":\"llm_auth\",\"message\":\"401\",\"retryable\":false}");
    select_fails(in, "deliberation_quorum",
                 "0 of 2 proposals survived, 1 needed; failed: dev-1 (gen.0: llm_auth), dev-2 "
                 "(gen.1: llm_auth)");
    free(in);
}

static void test_bad_scores(void **state)
{
    (void)state;
    char *in = input(
        3, RING_JUDGE("{\"rule\":\"top_score\",\"top_k\":3,\"min_proposals\":1}"),
        "\"rev.1.0\":" PROPOSAL("dev-1", "p0", 1, 1) ",\"rev.1.1\":" PROPOSAL("dev-2", "p1", 1, 1)
        ",\"rev.1.2\":" PROPOSAL("dev-3", "p2", 1, 1) ","
        "\"score.0\":{\"agent\":\"judge\",\"content\":\"x\",\"content_json\":{\"criteria\":"
        "{\"correctness\":0.5},\"rationale\":\"r\"}},"
        "\"score.1\":" JUDGE(1.5, 0.5) ","
        "\"score.2\":{\"agent\":\"judge\",\"content\":\"not json\"}");
    select_fails(in, "deliberation_quorum",
                 "0 of 3 proposals survived, 1 needed; failed: dev-1 (score.0: "
                 "deliberation_bad_score), dev-2 (score.1: deliberation_bad_score), dev-3 "
                 "(score.2: deliberation_bad_score)");
    free(in);
    in = input(4, RING_JUDGE("{\"rule\":\"top_score\",\"top_k\":3,\"min_proposals\":1}"),
               "\"rev.1.0\":" PROPOSAL("dev-1", "p0", 1, 1) ",\"rev.1.1\":{\"agent\":\"dev-2\"},"
               "\"rev.1.2\":" PROPOSAL("dev-3", "p2", 1, 1) ",\"rev.1.3\":" PROPOSAL("dev-1", "p3", 1, 1)
               ",\"score.0\":" JUDGE("0.5", 0.5) ",\"score.1\":" JUDGE(1, 1) ","
               "\"score.2\":{\"kind\":\"llm_bad_output\",\"message\":\"not JSON\"},"
               "\"score.3\":" JUDGE(0, 0.25));
    char *r = select_ok(in);
    assert_at(r, "failed",
              "[{\"agent\":\"dev-1\",\"step\":\"score.0\",\"kind\":\"deliberation_bad_score\","
              "\"message\":\"score.0: criterion 'correctness' is missing or not a number from 0 "
              "to 1\"},{\"agent\":\"dev-2\",\"step\":\"rev.1.1\",\"kind\":"
              "\"deliberation_bad_proposal\",\"message\":\"rev.1.1: the result has no content\"},"
              "{\"agent\":\"dev-3\",\"step\":\"score.2\",\"kind\":\"llm_bad_output\",\"message\":"
              "\"not JSON\"}]");
    assert_at(r, "winner", "{\"agent\":\"dev-1#2\",\"step\":\"rev.1.3\",\"content\":\"p3\","
                           "\"score\":0.1}");
    cJSON_free(r);
    free(in);
}

static void test_handler_scoring(void **state)
{
    (void)state;
    char *in = input(2, "\"rounds\":2,\"topology\":\"ring\",\"scoring\":{\"mode\":\"handler\","
                        "\"handler\":\"t\",\"queue\":\"ci\"},\"selection\":{\"rule\":\"top_score\","
                        "\"top_k\":1,\"min_proposals\":2}",
                     "\"rev.2.0\":" PROPOSAL("dev-1", "p0", 1, 2) ",\"rev.2.1\":" PROPOSAL(
                         "dev-2", "p1", 3, 4) ",\"score.0\":{\"score\":0.25,\"criteria\":{\"lint\":"
                                              "1,\"tests\":0}},\"score.1\":{\"score\":0.75}");
    char *r = select_ok(in);
    assert_at(r, "ranking", "[{\"agent\":\"dev-2\",\"score\":0.75},{\"agent\":\"dev-1\",\"score\":"
                            "0.25,\"criteria\":{\"lint\":1,\"tests\":0}}]");
    assert_at(r, "candidates", "[{\"agent\":\"dev-2\",\"step\":\"rev.2.1\",\"content\":\"p1\","
                               "\"score\":0.75}]");
    /* The handler's results carry no usage: two calls. */
    assert_at(r, "usage", "{\"calls\":2,\"prompt_tokens\":4,\"completion_tokens\":6,"
                          "\"cached_tokens\":2}");
    cJSON_free(r);
    free(in);
    in = input(2, "\"rounds\":0,\"topology\":\"none\",\"scoring\":{\"mode\":\"handler\","
                  "\"handler\":\"t\",\"queue\":\"ci\"},\"selection\":{\"rule\":\"top_score\","
                  "\"top_k\":1,\"min_proposals\":1}",
               "\"gen.0\":" PROPOSAL("dev-1", "p0", 1, 2) ",\"gen.1\":" PROPOSAL("dev-2", "p1", 3,
                                                                                  4)
               ",\"score.0\":{\"score\":1.25},\"score.1\":{\"score\":\"high\"}");
    select_fails(in, "deliberation_quorum",
                 "0 of 2 proposals survived, 1 needed; failed: dev-1 (score.0: "
                 "deliberation_bad_score), dev-2 (score.1: deliberation_bad_score)");
    free(in);
}

static void test_all_without_scoring(void **state)
{
    (void)state;
    char *in = input(4, "\"rounds\":0,\"topology\":\"none\",\"scoring\":{\"mode\":\"none\"},"
                        "\"selection\":{\"rule\":\"all\",\"top_k\":1,\"min_proposals\":2}",
                     "\"gen.0\":" PROPOSAL("dev-1", "p0", 1, 1) ","
                     "\"gen.1\":{\"kind\":\"llm_timeout\",\"message\":\"m\",\"retryable\":true},"
                     "\"gen.2\":{\"agent\":\"dev-3\",\"content\":\"p2\",\"content_json\":{\"x\":1}},"
                     "\"gen.3\":" PROPOSAL("dev-1", "p3", 1, 1));
    char *r = select_ok(in);
    /* Every survivor, in agent order, whatever top_k; the fourth agent is
     * the first profile's second use. */
    assert_string_equal(
        r, "{\"winner\":null,\"ranking\":[],\"candidates\":[{\"agent\":\"dev-1\",\"step\":"
           "\"gen.0\",\"content\":\"p0\",\"score\":null},{\"agent\":\"dev-3\",\"step\":\"gen.2\","
           "\"content\":\"p2\",\"content_json\":{\"x\":1},\"score\":null},{\"agent\":\"dev-1#2\","
           "\"step\":\"gen.3\",\"content\":\"p3\",\"score\":null}],\"failed\":[{\"agent\":"
           "\"dev-2\",\"step\":\"gen.1\",\"kind\":\"llm_timeout\",\"message\":\"m\"}],\"usage\":{"
           "\"calls\":2,\"prompt_tokens\":2,\"completion_tokens\":2,\"cached_tokens\":2},"
           "\"council\":{\"name\":\"dev\",\"version\":\"" VERSION "\"}}");
    cJSON_free(r);
    free(in);
}

static void test_approval(void **state)
{
    (void)state;
    char *in = input(3, RING_JUDGE("{\"rule\":\"approval\",\"top_k\":2,\"min_proposals\":1}"),
                     THREE_SCORED);
    char *r = select_ok(in);
    assert_at(r, "winner", "null");
    assert_at(r, "candidates", "[{\"agent\":\"dev-2\",\"step\":\"rev.1.1\",\"content\":\"p1\","
                               "\"score\":0.86},{\"agent\":\"dev-3\",\"step\":\"rev.1.2\","
                               "\"content\":\"p2\",\"score\":0.7}]");
    cJSON_free(r);
    free(in);
    /* Without scoring: the first top_k in agent order. */
    in = input(3, "\"rounds\":1,\"topology\":\"all_to_all\",\"scoring\":{\"mode\":\"none\"},"
                  "\"selection\":{\"rule\":\"approval\",\"top_k\":2,\"min_proposals\":1}",
               "\"rev.1.0\":{\"skipped\":true,\"because\":\"crit.1.1.0\"},\"rev.1.1\":" PROPOSAL(
                   "dev-2", "p1", 1, 1) ",\"rev.1.2\":" PROPOSAL("dev-3", "p2", 1, 1));
    r = select_ok(in);
    assert_at(r, "candidates", "[{\"agent\":\"dev-2\",\"step\":\"rev.1.1\",\"content\":\"p1\","
                               "\"score\":null},{\"agent\":\"dev-3\",\"step\":\"rev.1.2\","
                               "\"content\":\"p2\",\"score\":null}]");
    assert_at(r, "ranking", "[]");
    cJSON_free(r);
    free(in);
}

static void test_bad_input(void **state)
{
    (void)state;
    char *result = NULL, *kind = NULL, *message = NULL;
    select_fails("{\"inputs\":", "deliberation_bad_input", "its input is not JSON");
    select_fails("{\"inputs\":{}}", "deliberation_bad_input",
                 "deliberation select: its input has no deps object");
    select_fails("{\"inputs\":{},\"deps\":{}}", "deliberation_bad_input",
                 "deliberation select: inputs.council needs a name and a version");
    char *in = input(17, RING_JUDGE("{\"rule\":\"top_score\",\"top_k\":2,\"min_proposals\":1}"), "");
    select_fails(in, "deliberation_bad_input",
                 "deliberation select: inputs.params.agents must be an integer from 1 to 16");
    free(in);
    in = input(3, RING_JUDGE("{\"rule\":\"best\",\"top_k\":2,\"min_proposals\":1}"), "");
    select_fails(in, "deliberation_bad_input", NULL);
    free(in);
    in = input(3, "\"rounds\":1,\"topology\":\"ring\",\"scoring\":{\"mode\":\"none\"},"
                  "\"selection\":{\"rule\":\"top_score\",\"top_k\":2,\"min_proposals\":1}", "");
    select_fails(in, "deliberation_bad_input", "deliberation select: selection rule needs scoring");
    free(in);
    in = input(3, RING_JUDGE("{\"rule\":\"threshold_first\",\"top_k\":2,\"min_proposals\":1}"),
               "");
    select_fails(in, "deliberation_bad_input",
                 "deliberation select: inputs.params.selection.threshold must be a number from 0 "
                 "to 1");
    free(in);
    in = input(3, RING_JUDGE("{\"rule\":\"top_score\",\"top_k\":2,\"min_proposals\":1}"), "");
    char *v2 = strstr(in, "\"expansion\":1");
    v2[12] = '2';
    select_fails(in, "deliberation_bad_input",
                 "deliberation select: its args name an expansion version it does not know");
    free(in);
    assert_int_equal(delib_select(NULL, &result, &kind, &message), CBM_EINVAL);
    assert_int_equal(delib_select("{}", NULL, &kind, &message), CBM_EINVAL);
    assert_null(result);
    /* Without args (a hand-made input) the expansion is not checked. */
    in = input(2, "\"rounds\":0,\"topology\":\"none\",\"scoring\":{\"mode\":\"none\"},"
                  "\"selection\":{\"rule\":\"all\",\"top_k\":3,\"min_proposals\":1}",
               "\"gen.0\":" PROPOSAL("dev-1", "p0", 1, 1) ",\"gen.1\":" PROPOSAL("dev-2", "p1", 1, 1));
    *strstr(in, ",\"args\"") = '}';
    strstr(in, "}\"args\"")[1] = '\0';
    cJSON_free(select_ok(in));
    free(in);
}

/* ------------------------------------------------------------------------ */
/* finish                                                                   */
/* ------------------------------------------------------------------------ */

static char *finish_input(const char *select_result, const char *pick)
{
    size_t n = strlen(select_result) + strlen(pick) + 256;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "{\"inputs\":{},\"deps\":{\"pick\":%s,\"select\":%s},\"args\":{\"expansion\":1,"
                   "\"phase\":\"finish\"}}",
             pick, select_result);
    return s;
}

static void finish_fails(const char *in, const char *want_kind, const char *want_message)
{
    char *result = NULL, *kind = NULL, *message = NULL;
    assert_int_equal(delib_finish(in, &result, &kind, &message), 0);
    if (result != NULL) fail_msg("delib_finish succeeded: %s", result);
    assert_string_equal(kind, want_kind);
    assert_string_equal(message, want_message);
    cJSON_free(kind);
    cJSON_free(message);
}

static void test_finish(void **state)
{
    (void)state;
    char *in = input(3, RING_JUDGE("{\"rule\":\"approval\",\"top_k\":2,\"min_proposals\":1}"),
                     THREE_SCORED);
    char *sel = select_ok(in), *result = NULL, *kind = NULL, *message = NULL, *fin;
    free(in);

    /* By agent, and by index: the same. */
    in = finish_input(sel, "{\"agent\":\"dev-3\"}");
    assert_int_equal(delib_finish(in, &result, &kind, &message), 0);
    assert_null(kind);
    assert_at(result, "winner", "{\"agent\":\"dev-3\",\"step\":\"rev.1.2\",\"content\":\"p2\","
                                "\"score\":0.7}");
    /* Everything else is select's. */
    char *c1 = at(result, "candidates"), *c2 = at(sel, "candidates");
    assert_string_equal(c1, c2);
    cJSON_free(c1);
    cJSON_free(c2);
    assert_non_null(strstr(result, "\"council\":{\"name\":\"dev\""));
    free(in);
    in = finish_input(sel, "{\"index\":1,\"note\":\"fine\"}");
    fin = result;
    result = NULL;
    assert_int_equal(delib_finish(in, &result, &kind, &message), 0);
    assert_string_equal(result, fin);
    cJSON_free(result);
    cJSON_free(fin);
    free(in);

    in = finish_input(sel, "{\"agent\":\"dev-1\"}");
    finish_fails(in, "deliberation_bad_pick",
                 "the pick names agent 'dev-1', which is not a candidate");
    free(in);
    in = finish_input(sel, "{\"index\":2}");
    finish_fails(in, "deliberation_bad_pick", "the pick names candidate 2, and there are 2");
    free(in);
    static const char *const bad[] = {"{}", "{\"index\":-1}", "{\"index\":0.5}",
                                      "{\"agent\":1}", "{\"agent\":\"dev-2\",\"index\":0}"};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        in = finish_input(sel, bad[k]);
        finish_fails(in, "deliberation_bad_pick",
                     "the pick must be {\"agent\": <a candidate's agent>} or {\"index\": <a "
                     "candidate's position, from 0>}");
        free(in);
    }
    in = finish_input(sel, "\"dev-2\"");
    finish_fails(in, "deliberation_bad_input",
                 "deliberation finish: its input needs deps.select with candidates and "
                 "deps.pick, an object");
    free(in);
    finish_fails("{\"deps\":{\"pick\":{\"index\":0}}}", "deliberation_bad_input",
                 "deliberation finish: its input needs deps.select with candidates and "
                 "deps.pick, an object");
    finish_fails("[", "deliberation_bad_input", "its input is not JSON");
    assert_int_equal(delib_finish(NULL, &result, &kind, &message), CBM_EINVAL);
    cJSON_free(sel);
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

typedef int (*handler_fn)(const char *, char **, char **, char **);

/* Every allocation failure is CBM_ENOMEM with nothing set and nothing
 * leaked, or (where cJSON's parser cannot tell) a bad-input failure; then
 * the outcome of a run without failures. */
static void oom_loop(handler_fn fn, const char *in)
{
    char *want_r = NULL, *want_k = NULL, *want_m = NULL;
    assert_int_equal(fn(in, &want_r, &want_k, &want_m), 0);
    for (long fail_at = 0;; fail_at++) {
        char *r = NULL, *k = NULL, *m = NULL;
        cJSON_Hooks hooks = {failing_malloc, free};
        alloc_countdown = fail_at;
        cJSON_InitHooks(&hooks);
        int rc = fn(in, &r, &k, &m);
        alloc_countdown = -1;
        cJSON_InitHooks(NULL);
        if (rc == CBM_ENOMEM) {
            assert_true(r == NULL && k == NULL && m == NULL);
        } else if (rc == 0 && k != NULL && strcmp(k, "deliberation_bad_input") == 0 &&
                   want_k == NULL) {
            cJSON_free(k);
            cJSON_free(m);
        } else {
            assert_int_equal(rc, 0);
            if (want_r != NULL) assert_string_equal(r, want_r);
            else assert_string_equal(m, want_m);
            cJSON_free(r);
            cJSON_free(k);
            cJSON_free(m);
            break;
        }
        assert_true(fail_at < 100000);
    }
    cJSON_free(want_r);
    cJSON_free(want_k);
    cJSON_free(want_m);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    char *in = input(3, RING_JUDGE("{\"rule\":\"approval\",\"top_k\":2,\"min_proposals\":1}"),
                     THREE_SCORED);
    char *sel = select_ok(in), *fin;
    oom_loop(delib_select, in);
    free(in);
    in = input(3, RING_JUDGE("{\"rule\":\"top_score\",\"top_k\":3,\"min_proposals\":3}"),
               "\"rev.1.0\":{\"skipped\":true,\"because\":\"gen.0\"},\"rev.1.1\":" PROPOSAL(
                   "dev-2", "p1", 1, 1) ",\"rev.1.2\":{\"kind\":\"k\",\"message\":\"m\"},"
                                        "\"score.1\":" JUDGE(1, 1));
    oom_loop(delib_select, in); /* the quorum's message */
    free(in);
    fin = finish_input(sel, "{\"index\":0}");
    oom_loop(delib_finish, fin);
    free(fin);
    cJSON_free(sel);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_top_score),
        cmocka_unit_test(test_ties),
        cmocka_unit_test(test_threshold_first),
        cmocka_unit_test(test_failed_and_skipped),
        cmocka_unit_test(test_skipped_with_error),
        cmocka_unit_test(test_quorum),
        cmocka_unit_test(test_bad_scores),
        cmocka_unit_test(test_handler_scoring),
        cmocka_unit_test(test_all_without_scoring),
        cmocka_unit_test(test_approval),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_finish),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
