/*
 * test_match.c - pure evaluation of routing data (engine/match.h): diverge
 * patterns, subsumption, deep equality, JSON paths, branch conditions with
 * every operator and combinator, missing paths, type mismatches, and input
 * templates.
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

#include "cerebelum/error.h"
#include "engine/match.h"

static cJSON *J(const char *text)
{
    cJSON *j = cJSON_Parse(text);
    if (j == NULL) fail_msg("bad JSON in test: %s", text);
    return j;
}

static bool pat(const char *pattern, const char *value)
{
    cJSON *p = J(pattern), *v = J(value);
    bool r = match_pattern(p, v);
    cJSON_Delete(p);
    cJSON_Delete(v);
    return r;
}

static bool eq(const char *a, const char *b)
{
    cJSON *x = J(a), *y = J(b);
    bool r = json_equal(x, y);
    cJSON_Delete(x);
    cJSON_Delete(y);
    return r;
}

static bool subsumes(const char *g, const char *s)
{
    cJSON *x = J(g), *y = J(s);
    bool r = match_subsumes(x, y);
    cJSON_Delete(x);
    cJSON_Delete(y);
    return r;
}

/* cond_eval must succeed; returns its verdict. */
static bool cond(const char *c, const char *value)
{
    cJSON *cj = J(c), *v = J(value);
    bool out = !false;
    int rc = cond_eval(cj, v, &out);
    if (rc != 0) fail_msg("cond_eval(%s) failed: %d", c, rc);
    cJSON_Delete(cj);
    cJSON_Delete(v);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Patterns                                                                 */
/* ------------------------------------------------------------------------ */

static void test_pattern_scalars(void **state)
{
    (void)state;
    assert_true(pat("1", "1"));
    assert_true(pat("1", "1.0"));
    assert_false(pat("1", "2"));
    assert_false(pat("1", "\"1\""));
    assert_true(pat("\"ok\"", "\"ok\""));
    assert_false(pat("\"ok\"", "\"OK\""));
    assert_true(pat("true", "true"));
    assert_false(pat("true", "false"));
    assert_false(pat("true", "1"));
    assert_true(pat("false", "false"));
    assert_true(pat("null", "null"));
    assert_false(pat("null", "false"));
    assert_false(pat("null", "{}"));
}

static void test_pattern_wildcard(void **state)
{
    (void)state;
    assert_true(pat("\"_\"", "1"));
    assert_true(pat("\"_\"", "null"));
    assert_true(pat("\"_\"", "{\"a\":[1,2]}"));
    assert_true(pat("\"_\"", "\"_\""));
    /* Present with any value, but present. */
    assert_true(pat("{\"status\":\"_\"}", "{\"status\":null}"));
    assert_false(pat("{\"status\":\"_\"}", "{\"state\":1}"));
    assert_true(pat("[\"_\",2]", "[{\"x\":1},2]"));
    assert_false(pat("[\"_\",2]", "[1]"));
    /* Only the exact string "_" is the wildcard. */
    assert_false(pat("\"__\"", "1"));
    /* A missing value matches nothing, not even the wildcard. */
    cJSON *p = J("\"_\"");
    assert_false(match_pattern(p, NULL));
    assert_false(match_pattern(NULL, p));
    cJSON_Delete(p);
}

static void test_pattern_objects(void **state)
{
    (void)state;
    /* Subset: the value's other keys do not matter. */
    assert_true(pat("{\"status\":\"error\"}", "{\"status\":\"error\",\"code\":7}"));
    assert_true(pat("{}", "{\"a\":1}"));
    assert_true(pat("{}", "{}"));
    assert_false(pat("{}", "[]"));
    assert_false(pat("{\"status\":\"error\"}", "{\"status\":\"ok\"}"));
    assert_false(pat("{\"status\":\"error\",\"code\":7}", "{\"status\":\"error\"}"));
    assert_false(pat("{\"a\":1}", "[{\"a\":1}]"));
    /* Nested subsets. */
    assert_true(pat("{\"r\":{\"score\":1}}", "{\"r\":{\"score\":1,\"why\":\"x\"},\"z\":0}"));
    assert_false(pat("{\"r\":{\"score\":1}}", "{\"r\":{\"score\":2}}"));
    /* Keys are case-sensitive; of repeated keys in the value the first counts. */
    assert_false(pat("{\"A\":1}", "{\"a\":1}"));
    assert_true(pat("{\"a\":1}", "{\"a\":1,\"a\":2}"));
    assert_false(pat("{\"a\":2}", "{\"a\":1,\"a\":2}"));
}

static void test_pattern_arrays(void **state)
{
    (void)state;
    assert_true(pat("[]", "[]"));
    assert_false(pat("[]", "[1]"));
    assert_true(pat("[1,\"x\"]", "[1,\"x\"]"));
    assert_false(pat("[1,\"x\"]", "[\"x\",1]"));
    assert_false(pat("[1]", "[1,2]"));
    assert_false(pat("[1,2]", "[1]"));
    /* Elements are patterns too: subset objects inside arrays. */
    assert_true(pat("[{\"k\":1}]", "[{\"k\":1,\"j\":2}]"));
    assert_false(pat("[1]", "{\"0\":1}"));
}

static void test_pattern_error_objects(void **state)
{
    (void)state;
    /* on: error matches the error object {kind, message, retryable}. */
    const char *err = "{\"kind\":\"timeout\",\"message\":\"took 5s\",\"retryable\":true}";
    assert_true(pat("{\"kind\":\"timeout\"}", err));
    assert_true(pat("{\"kind\":\"_\",\"retryable\":true}", err));
    assert_false(pat("{\"kind\":\"validation\"}", err));
    assert_false(pat("{\"retryable\":false}", err));
}

static void test_subsumes(void **state)
{
    (void)state;
    assert_true(subsumes("\"_\"", "1"));
    assert_true(subsumes("\"_\"", "\"_\""));
    assert_false(subsumes("1", "\"_\""));
    assert_true(subsumes("{}", "{\"a\":1}"));
    assert_true(subsumes("{\"a\":\"_\"}", "{\"a\":1,\"b\":2}"));
    assert_false(subsumes("{\"a\":1,\"b\":2}", "{\"a\":1}"));
    assert_false(subsumes("{\"a\":1}", "{\"a\":2}"));
    assert_true(subsumes("{\"a\":1}", "{\"a\":1}"));
    assert_true(subsumes("[\"_\",1]", "[{\"x\":1},1]"));
    assert_false(subsumes("[\"_\"]", "[1,2]"));
    assert_false(subsumes("{}", "[]"));
    assert_false(subsumes("[]", "{}"));
    assert_true(subsumes("2", "2.0"));
    assert_false(match_subsumes(NULL, NULL));
}

static void test_json_equal(void **state)
{
    (void)state;
    assert_true(eq("{\"a\":1,\"b\":[1,{\"c\":null}]}", "{\"b\":[1,{\"c\":null}],\"a\":1.0}"));
    assert_false(eq("{\"a\":1}", "{\"a\":1,\"b\":2}"));
    assert_false(eq("{\"a\":1,\"b\":2}", "{\"a\":1}"));
    assert_false(eq("{\"a\":1,\"b\":2}", "{\"a\":1,\"c\":2}"));
    assert_false(eq("[1,2]", "[2,1]"));
    assert_false(eq("[1,2]", "[1,2,3]"));
    assert_true(eq("[]", "[]"));
    assert_false(eq("[]", "{}"));
    assert_false(eq("0", "false"));
    assert_false(eq("\"1\"", "1"));
    assert_true(eq("\"caf\\u00e9\"", "\"caf\\u00e9\""));
    assert_false(json_equal(NULL, NULL));
}

/* ------------------------------------------------------------------------ */
/* Paths                                                                    */
/* ------------------------------------------------------------------------ */

static void test_path_syntax(void **state)
{
    (void)state;
    static const char *const good[] = {
        "", "score", "items[0].score", "[2]", "m[1][0].k", "a.b.c", "a-b.c_d", "x y",
        "caf\xc3\xa9", "a[123456789]", "$", "a:b",
    };
    static const char *const bad[] = {
        "a..b", ".a", "a.", "a[", "a[x]", "a[]", "a[0]b", "a]", "[0", "a[-1]", "a[1234567890]",
        "a.[0]", "..", ".", "a\tb", "a[0]..b", "[0].", "a[ 1]",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!json_path_valid(good[i])) fail_msg("'%s' should be a valid path", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (json_path_valid(bad[i])) fail_msg("'%s' should be malformed", bad[i]);
    assert_false(json_path_valid(NULL));
}

static void test_path_get(void **state)
{
    (void)state;
    cJSON *r = J("{\"score\":0.9,\"items\":[{\"score\":3},{\"score\":4,\"tags\":[\"a\",\"b\"]}],"
                 "\"m\":[[1,2],[3]],\"n\":null,\"a.b\":5,\"d\":{\"e\":{\"f\":\"deep\"}}}");
    const cJSON *v;

    assert_ptr_equal(json_path_get(r, ""), r);
    v = json_path_get(r, "score");
    assert_true(cJSON_IsNumber(v) && v->valuedouble == 0.9);
    v = json_path_get(r, "items[1].score");
    assert_true(cJSON_IsNumber(v) && v->valuedouble == 4);
    v = json_path_get(r, "items[1].tags[1]");
    assert_string_equal(v->valuestring, "b");
    v = json_path_get(r, "m[1][0]");
    assert_true(cJSON_IsNumber(v) && v->valuedouble == 3);
    v = json_path_get(r, "d.e.f");
    assert_string_equal(v->valuestring, "deep");
    /* Present null is found. */
    assert_true(cJSON_IsNull(json_path_get(r, "n")));

    /* Missing: key, index past the end, key of a non-object, index of a
     * non-array, deeper than the value. */
    assert_null(json_path_get(r, "nope"));
    assert_null(json_path_get(r, "items[2]"));
    assert_null(json_path_get(r, "items[0].tags"));
    assert_null(json_path_get(r, "score.x"));
    assert_null(json_path_get(r, "score[0]"));
    assert_null(json_path_get(r, "items.score"));
    assert_null(json_path_get(r, "n.x"));
    assert_null(json_path_get(r, "d.e.f.g"));
    /* A '.' in a key cannot be addressed: it splits the path. */
    assert_null(json_path_get(r, "a.b"));
    /* Malformed or NULL. */
    assert_null(json_path_get(r, "a..b"));
    assert_null(json_path_get(r, NULL));
    assert_null(json_path_get(NULL, "score"));
    cJSON_Delete(r);

    /* A leading index on an array value. */
    r = J("[{\"k\":1},{\"k\":2}]");
    v = json_path_get(r, "[1].k");
    assert_true(cJSON_IsNumber(v) && v->valuedouble == 2);
    assert_null(json_path_get(r, "k"));
    cJSON_Delete(r);
}

/* ------------------------------------------------------------------------ */
/* Conditions                                                               */
/* ------------------------------------------------------------------------ */

#define R "{\"score\":0.8,\"name\":\"beta\",\"ok\":true,\"n\":null,\"tags\":[\"x\",\"y\"]," \
          "\"items\":[{\"score\":3}],\"obj\":{\"a\":1,\"b\":[1,2]},\"count\":3}"

static void test_cond_equality(void **state)
{
    (void)state;
    assert_true(cond("{\"path\":\"score\",\"op\":\"==\",\"value\":0.8}", R));
    assert_false(cond("{\"path\":\"score\",\"op\":\"==\",\"value\":0.9}", R));
    assert_true(cond("{\"path\":\"count\",\"op\":\"==\",\"value\":3.0}", R));
    assert_true(cond("{\"path\":\"name\",\"op\":\"==\",\"value\":\"beta\"}", R));
    assert_true(cond("{\"path\":\"ok\",\"op\":\"==\",\"value\":true}", R));
    assert_true(cond("{\"path\":\"n\",\"op\":\"==\",\"value\":null}", R));
    assert_true(cond("{\"path\":\"obj\",\"op\":\"==\",\"value\":{\"b\":[1,2],\"a\":1}}", R));
    assert_false(cond("{\"path\":\"obj\",\"op\":\"==\",\"value\":{\"a\":1}}", R));
    assert_true(cond("{\"path\":\"tags\",\"op\":\"==\",\"value\":[\"x\",\"y\"]}", R));
    assert_true(cond("{\"path\":\"items[0].score\",\"op\":\"==\",\"value\":3}", R));
    /* Type mismatch is not equal, and not an error. */
    assert_false(cond("{\"path\":\"count\",\"op\":\"==\",\"value\":\"3\"}", R));
    assert_false(cond("{\"path\":\"ok\",\"op\":\"==\",\"value\":1}", R));

    assert_true(cond("{\"path\":\"name\",\"op\":\"!=\",\"value\":\"alpha\"}", R));
    assert_false(cond("{\"path\":\"name\",\"op\":\"!=\",\"value\":\"beta\"}", R));
    assert_true(cond("{\"path\":\"count\",\"op\":\"!=\",\"value\":\"3\"}", R));
    /* The whole value, with the empty path. */
    assert_true(cond("{\"path\":\"\",\"op\":\"==\",\"value\":7}", "7"));
}

static void test_cond_ordering(void **state)
{
    (void)state;
    assert_true(cond("{\"path\":\"score\",\"op\":\">=\",\"value\":0.8}", R));
    assert_false(cond("{\"path\":\"score\",\"op\":\">\",\"value\":0.8}", R));
    assert_true(cond("{\"path\":\"score\",\"op\":\"<=\",\"value\":0.8}", R));
    assert_false(cond("{\"path\":\"score\",\"op\":\"<\",\"value\":0.8}", R));
    assert_true(cond("{\"path\":\"score\",\"op\":\"<\",\"value\":1}", R));
    assert_true(cond("{\"path\":\"score\",\"op\":\">\",\"value\":-1}", R));
    assert_true(cond("{\"path\":\"count\",\"op\":\">\",\"value\":2.5}", R));
    assert_false(cond("{\"path\":\"count\",\"op\":\"<=\",\"value\":2}", R));
    /* Strings by byte order. */
    assert_true(cond("{\"path\":\"name\",\"op\":\">\",\"value\":\"alpha\"}", R));
    assert_true(cond("{\"path\":\"name\",\"op\":\"<\",\"value\":\"gamma\"}", R));
    assert_true(cond("{\"path\":\"name\",\"op\":\"<=\",\"value\":\"beta\"}", R));
    assert_true(cond("{\"path\":\"name\",\"op\":\">=\",\"value\":\"beta\"}", R));
    assert_false(cond("{\"path\":\"name\",\"op\":\"<\",\"value\":\"Beta\"}", R));
    assert_true(cond("{\"path\":\"name\",\"op\":\">\",\"value\":\"Beta\"}", R));
    /* String against number, number against string, booleans, null, objects:
     * false whichever the operator, never an error. */
    static const char *const ops[] = {"<", "<=", ">", ">="};
    for (size_t i = 0; i < 4; i++) {
        char c[128];
        snprintf(c, sizeof(c), "{\"path\":\"name\",\"op\":\"%s\",\"value\":5}", ops[i]);
        assert_false(cond(c, R));
        snprintf(c, sizeof(c), "{\"path\":\"count\",\"op\":\"%s\",\"value\":\"5\"}", ops[i]);
        assert_false(cond(c, R));
        snprintf(c, sizeof(c), "{\"path\":\"ok\",\"op\":\"%s\",\"value\":0}", ops[i]);
        assert_false(cond(c, R));
        snprintf(c, sizeof(c), "{\"path\":\"n\",\"op\":\"%s\",\"value\":0}", ops[i]);
        assert_false(cond(c, R));
        snprintf(c, sizeof(c), "{\"path\":\"obj\",\"op\":\"%s\",\"value\":\"a\"}", ops[i]);
        assert_false(cond(c, R));
        snprintf(c, sizeof(c), "{\"path\":\"missing\",\"op\":\"%s\",\"value\":0}", ops[i]);
        assert_false(cond(c, R));
    }
}

static void test_cond_in_exists(void **state)
{
    (void)state;
    assert_true(cond("{\"path\":\"name\",\"op\":\"in\",\"value\":[\"alpha\",\"beta\"]}", R));
    assert_false(cond("{\"path\":\"name\",\"op\":\"in\",\"value\":[\"alpha\",\"gamma\"]}", R));
    assert_false(cond("{\"path\":\"name\",\"op\":\"in\",\"value\":[]}", R));
    assert_true(cond("{\"path\":\"count\",\"op\":\"in\",\"value\":[1,2,3]}", R));
    assert_false(cond("{\"path\":\"count\",\"op\":\"in\",\"value\":[\"3\"]}", R));
    assert_true(cond("{\"path\":\"tags\",\"op\":\"in\",\"value\":[[\"x\",\"y\"],1]}", R));
    assert_true(cond("{\"path\":\"n\",\"op\":\"in\",\"value\":[null]}", R));

    assert_true(cond("{\"path\":\"score\",\"op\":\"exists\"}", R));
    assert_true(cond("{\"path\":\"n\",\"op\":\"exists\"}", R)); /* null is present */
    assert_true(cond("{\"path\":\"items[0].score\",\"op\":\"exists\"}", R));
    assert_false(cond("{\"path\":\"items[1]\",\"op\":\"exists\"}", R));
    assert_false(cond("{\"path\":\"nope\",\"op\":\"exists\"}", R));
    assert_false(cond("{\"path\":\"score.x\",\"op\":\"exists\"}", R));
}

static void test_cond_missing_path(void **state)
{
    (void)state;
    /* Every comparison on a missing path is false, != and in included. */
    static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
    for (size_t i = 0; i < 6; i++) {
        char c[128];
        snprintf(c, sizeof(c), "{\"path\":\"absent\",\"op\":\"%s\",\"value\":\"\"}", ops[i]);
        assert_false(cond(c, R));
        snprintf(c, sizeof(c), "{\"path\":\"items[5].score\",\"op\":\"%s\",\"value\":1}", ops[i]);
        assert_false(cond(c, R));
    }
    assert_false(cond("{\"path\":\"absent\",\"op\":\"in\",\"value\":[null]}", R));
    /* Only not turns it into true. */
    assert_true(cond("{\"not\":{\"path\":\"absent\",\"op\":\"==\",\"value\":1}}", R));
    assert_true(cond("{\"not\":{\"path\":\"absent\",\"op\":\"exists\"}}", R));
    /* A missing or non-object result: paths do not resolve. */
    cJSON *c = J("{\"path\":\"score\",\"op\":\"exists\"}");
    bool out = true;
    assert_int_equal(cond_eval(c, NULL, &out), 0);
    assert_false(out);
    cJSON_Delete(c);
    assert_false(cond("{\"path\":\"score\",\"op\":\"==\",\"value\":1}", "[1]"));
    assert_false(cond("{\"path\":\"score\",\"op\":\"!=\",\"value\":1}", "\"text\""));
}

static void test_cond_combinators(void **state)
{
    (void)state;
    const char *yes = "{\"path\":\"ok\",\"op\":\"==\",\"value\":true}";
    const char *no = "{\"path\":\"ok\",\"op\":\"==\",\"value\":false}";
    char c[512];

    snprintf(c, sizeof(c), "{\"and\":[%s,%s]}", yes, yes);
    assert_true(cond(c, R));
    snprintf(c, sizeof(c), "{\"and\":[%s,%s]}", yes, no);
    assert_false(cond(c, R));
    snprintf(c, sizeof(c), "{\"and\":[%s]}", no);
    assert_false(cond(c, R));
    snprintf(c, sizeof(c), "{\"or\":[%s,%s]}", no, yes);
    assert_true(cond(c, R));
    snprintf(c, sizeof(c), "{\"or\":[%s,%s]}", no, no);
    assert_false(cond(c, R));
    snprintf(c, sizeof(c), "{\"not\":%s}", no);
    assert_true(cond(c, R));
    snprintf(c, sizeof(c), "{\"not\":{\"not\":%s}}", yes);
    assert_true(cond(c, R));
    /* Nested: score >= 0.5 and (name in [..] or not exists(x)). */
    assert_true(cond("{\"and\":[{\"path\":\"score\",\"op\":\">=\",\"value\":0.5},"
                     "{\"or\":[{\"path\":\"name\",\"op\":\"in\",\"value\":[\"zeta\"]},"
                     "{\"not\":{\"path\":\"x\",\"op\":\"exists\"}}]}]}",
                     R));
    assert_false(cond("{\"and\":[{\"path\":\"score\",\"op\":\">=\",\"value\":0.5},"
                      "{\"or\":[{\"path\":\"name\",\"op\":\"in\",\"value\":[\"zeta\"]},"
                      "{\"not\":{\"path\":\"score\",\"op\":\"exists\"}}]}]}",
                      R));
    /* Short-circuit: a later malformed condition is never reached. */
    snprintf(c, sizeof(c), "{\"or\":[%s,{\"path\":\"a..b\",\"op\":\"==\",\"value\":1}]}", yes);
    assert_true(cond(c, R));
    snprintf(c, sizeof(c), "{\"and\":[%s,{\"bogus\":1}]}", no);
    assert_false(cond(c, R));
}

static void test_cond_invalid(void **state)
{
    (void)state;
    /* Conditions the parser rejects give CBM_EINVAL, never a verdict. */
    static const char *const bad[] = {
        "[]",
        "{}",
        "{\"and\":[]}",
        "{\"or\":{}}",
        "{\"not\":5}",
        "{\"path\":\"a\"}",
        "{\"op\":\"==\",\"value\":1}",
        "{\"path\":\"a..b\",\"op\":\"==\",\"value\":1}",
        "{\"path\":\"a\",\"op\":\"~\",\"value\":1}",
        "{\"path\":\"a\",\"op\":\"==\"}",
        "{\"path\":\"a\",\"op\":\"in\",\"value\":1}",
        "{\"path\":\"a\",\"op\":\"<\",\"value\":true}",
        "{\"path\":5,\"op\":\"==\",\"value\":1}",
    };
    cJSON *v = J(R);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cJSON *c = J(bad[i]);
        bool out = true;
        if (cond_eval(c, v, &out) != CBM_EINVAL) fail_msg("'%s' should be refused", bad[i]);
        cJSON_Delete(c);
    }
    cJSON *c = J("{\"path\":\"a\",\"op\":\"exists\"}");
    assert_int_equal(cond_eval(c, v, NULL), CBM_EINVAL);
    assert_int_equal(cond_eval(NULL, v, &(bool){false}), CBM_EINVAL);
    cJSON_Delete(c);
    cJSON_Delete(v);
}

/* ------------------------------------------------------------------------ */
/* Templates                                                                */
/* ------------------------------------------------------------------------ */

static void test_template(void **state)
{
    (void)state;
    cJSON *t = J("{\"topic\":\"$.inputs.topic\",\"all\":\"$.inputs\",\"draft\":\"$.deps.gen.text\","
                 "\"first\":\"$.deps.gen.parts[0]\",\"lit\":\"plain\",\"dollar\":\"$5\","
                 "\"n\":3,\"list\":[\"$.inputs.n\",\"x\",{\"deep\":\"$.deps.gen\"}],"
                 "\"gone\":\"$.deps.gen.nothing\",\"t\":true,\"z\":null}");
    cJSON *data = J("{\"inputs\":{\"topic\":\"cats\",\"n\":2},"
                    "\"deps\":{\"gen\":{\"text\":\"hello\",\"parts\":[\"he\",\"llo\"]}}}");
    cJSON *out = NULL;
    char *text;

    assert_int_equal(match_template(t, data, &out), 0);
    text = cJSON_PrintUnformatted(out);
    assert_string_equal(text,
                        "{\"topic\":\"cats\",\"all\":{\"topic\":\"cats\",\"n\":2},\"draft\":\"hello\","
                        "\"first\":\"he\",\"lit\":\"plain\",\"dollar\":\"$5\",\"n\":3,"
                        "\"list\":[2,\"x\",{\"deep\":{\"text\":\"hello\",\"parts\":[\"he\",\"llo\"]}}],"
                        "\"gone\":null,\"t\":true,\"z\":null}");
    cJSON_free(text);
    cJSON_Delete(out);

    /* No template: {}. */
    assert_int_equal(match_template(NULL, data, &out), 0);
    assert_true(cJSON_IsObject(out) && out->child == NULL);
    cJSON_Delete(out);
    /* No data: every reference is null. */
    assert_int_equal(match_template(t, NULL, &out), 0);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(out, "topic")));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(out, "lit")->valuestring, "plain");
    cJSON_Delete(out);
    assert_int_equal(match_template(t, data, NULL), CBM_EINVAL);

    assert_true(match_is_reference("$.inputs"));
    assert_false(match_is_reference("$inputs"));
    assert_false(match_is_reference("$"));
    assert_false(match_is_reference(NULL));
    cJSON_Delete(t);
    cJSON_Delete(data);
}

/* match_template under allocation failure: ENOMEM and nothing leaked. */
static long countdown = -1;
static void *failing_malloc(size_t n)
{
    if (countdown == 0) return NULL;
    if (countdown > 0) countdown--;
    return malloc(n);
}

static void test_template_out_of_memory(void **state)
{
    (void)state;
    cJSON *t = J("{\"a\":\"$.inputs.x\",\"b\":[1,\"$.deps.s\",{\"c\":\"lit\"}]}");
    cJSON *data = J("{\"inputs\":{\"x\":[1,2,3]},\"deps\":{\"s\":{\"k\":\"v\"}}}");
    for (long fail_at = 0;; fail_at++) {
        cJSON *out = NULL;
        cJSON_Hooks hooks = {failing_malloc, free};
        countdown = fail_at;
        cJSON_InitHooks(&hooks);
        int rc = match_template(t, data, &out);
        countdown = -1;
        cJSON_InitHooks(NULL);
        if (rc == 0) {
            cJSON_Delete(out);
            break;
        }
        assert_int_equal(rc, CBM_ENOMEM);
        assert_null(out);
        assert_true(fail_at < 1000);
    }
    cJSON_Delete(t);
    cJSON_Delete(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pattern_scalars),
        cmocka_unit_test(test_pattern_wildcard),
        cmocka_unit_test(test_pattern_objects),
        cmocka_unit_test(test_pattern_arrays),
        cmocka_unit_test(test_pattern_error_objects),
        cmocka_unit_test(test_subsumes),
        cmocka_unit_test(test_json_equal),
        cmocka_unit_test(test_path_syntax),
        cmocka_unit_test(test_path_get),
        cmocka_unit_test(test_cond_equality),
        cmocka_unit_test(test_cond_ordering),
        cmocka_unit_test(test_cond_in_exists),
        cmocka_unit_test(test_cond_missing_path),
        cmocka_unit_test(test_cond_combinators),
        cmocka_unit_test(test_cond_invalid),
        cmocka_unit_test(test_template),
        cmocka_unit_test(test_template_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
