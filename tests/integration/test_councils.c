/*
 * test_councils.c - councils through the public engine API (cerebelum.h,
 * "Councils") on a real PostgreSQL: put twice (created, then not, one
 * version), get the latest and by version, delete (latest gone, the version
 * still readable, out of the list), put again after the delete, a refusal
 * with its message, and everything still there after the engine is
 * destroyed and another one started on the same database, a client-only one
 * included.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cerebelum/cerebelum.h"
#include "tests/harness/testdb.h"

static char url[512];

#define PROMPTS                                                                          \
    "\"system_prompt\": \"You are {{agent}}, {{persona}}.\", \"prompts\": {\"generate\": " \
    "\"{{task}}\", \"critique\": \"{{proposal}}\", \"revise\": \"{{critiques}}\", "        \
    "\"score\": \"{{rubric}} {{proposal}}\"}"
/* Two versions of "dev" (one agent, then two) and a "qa". */
static const char DEV1[] = "{\"name\": \"dev\", \"role\": \"developer\", \"model\": {\"name\": "
                           "\"m\"}, " PROMPTS ", \"agents\": [{\"id\": \"a\", \"persona\": "
                           "\"careful\"}]}";
static const char DEV1_AGAIN[] = "{\"agents\": [{\"persona\": \"careful\", \"id\": \"a\"}],"
                                 " \"model\": {\"name\": \"m\"}, \"role\": \"developer\", "
                                 "\"queue\": \"llm\", \"name\": \"dev\", " PROMPTS "}";
static const char DEV2[] = "{\"name\": \"dev\", \"role\": \"developer\", \"model\": {\"name\": "
                           "\"m\"}, " PROMPTS ", \"agents\": [{\"id\": \"a\", \"persona\": "
                           "\"careful\"}, {\"id\": \"b\", \"persona\": \"quick\"}]}";
static const char QA[] = "{\"name\": \"qa\", \"role\": \"tester\", \"model\": {\"name\": \"m\"}, "
                         PROMPTS ", \"agents\": [{\"id\": \"q\", \"persona\": \"thorough\"}]}";

static cbm_engine_t *engine(bool client_only)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    o.database_url = url;
    o.client_only = client_only;
    assert_int_equal(cbm_engine_create(&e, &o, &err), 0);
    if (cbm_engine_start(e, &err) != 0) fail_msg("start: %s", err.message);
    return e;
}

static bool put(cbm_engine_t *e, const char *json, char v[65])
{
    cbm_error_t err = {0};
    bool created = true;
    if (cbm_council_put(e, json, v, &created, &err) != 0) fail_msg("put: %s", err.message);
    return created;
}

/* The latest version of name into v; 0 or the error code. */
static int latest(cbm_engine_t *e, const char *name, char v[65], char **json)
{
    cbm_error_t err = {0};
    int rc = cbm_council_get(e, name, NULL, json, v, &err);
    if (rc == CBM_ENOTFOUND) {
        char want[128];
        snprintf(want, sizeof(want), "no council named '%s'", name);
        assert_string_equal(err.message, want);
    }
    return rc;
}

static void test_put_get_delete(void **state)
{
    cbm_engine_t *e = engine(false);
    char v1[65], v1b[65], v2[65], vq[65], got[65], *json = NULL;
    cbm_council_info_t *l = NULL;
    cbm_error_t err = {0};
    size_t n = 0;
    (void)state;

    assert_true(put(e, DEV1, v1));
    assert_false(put(e, DEV1_AGAIN, v1b)); /* same meaning, other text */
    assert_string_equal(v1, v1b);
    assert_int_equal(latest(e, "dev", got, &json), 0);
    assert_string_equal(got, v1);
    /* The canonical JSON comes back: key order of the format, queue and
     * requires written out. */
    assert_non_null(strstr(json, "{\"name\":\"dev\",\"role\":\"developer\",\"queue\":\"llm\","
                                 "\"requires\":{},\"model\":{\"name\":\"m\"}"));
    free(json);
    assert_true(put(e, DEV2, v2));
    assert_string_not_equal(v1, v2);
    assert_int_equal(latest(e, "dev", got, NULL), 0);
    assert_string_equal(got, v2);
    assert_true(put(e, QA, vq));

    assert_int_equal(cbm_council_list(e, &l, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(l[0].name, "dev");
    assert_string_equal(l[0].version, v2);
    assert_string_equal(l[0].role, "developer");
    assert_int_equal(l[0].agents, 2);
    assert_true(l[0].created_at_us > 0);
    assert_string_equal(l[1].name, "qa");
    cbm_council_infos_free(l, n);

    /* Delete: no latest, versions readable, out of the list. */
    assert_int_equal(cbm_council_delete(e, "dev", &err), 0);
    assert_int_equal(latest(e, "dev", got, &json), CBM_ENOTFOUND);
    assert_null(json);
    assert_int_equal(cbm_council_get(e, "dev", v1, &json, got, &err), 0);
    assert_string_equal(got, v1);
    assert_non_null(strstr(json, "\"persona\":\"careful\""));
    free(json);
    assert_int_equal(cbm_council_list(e, &l, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(l[0].name, "qa");
    cbm_council_infos_free(l, n);
    assert_int_equal(cbm_council_delete(e, "dev", &err), CBM_ENOTFOUND);
    assert_int_equal(cbm_council_get(e, "dev", "0123", NULL, NULL, &err), CBM_ENOTFOUND);
    assert_string_equal(err.message, "council 'dev' has no version 0123");

    /* Put again after the delete: back, and the latest. */
    assert_true(put(e, DEV1, v1b));
    assert_int_equal(latest(e, "dev", got, NULL), 0);
    assert_string_equal(got, v1);
    cbm_engine_destroy(e);
}

static void test_refused(void **state)
{
    cbm_engine_t *e = engine(false), *idle = NULL;
    cbm_error_t err = {0};
    char v[65] = "untouched";
    bool created = true;
    (void)state;

    assert_int_equal(cbm_council_put(e, "{\"name\": \"bad\", \"role\": \"r\", \"model\": "
                                        "{\"name\": \"m\"}, " PROMPTS ", \"agents\": []}",
                                     v, &created, &err),
                     CBM_EINVAL);
    assert_string_equal(err.message, "council 'bad': agents must not be empty");
    assert_false(created);
    assert_string_equal(v, "untouched");
    assert_int_equal(cbm_council_put(e, "{\"name\":", v, NULL, &err), CBM_EJSON);
    assert_int_equal(cbm_council_get(e, "bad", NULL, NULL, NULL, &err), CBM_ENOTFOUND);
    assert_int_equal(cbm_council_get(e, "b\xff", NULL, NULL, NULL, &err), CBM_EINVAL);
    assert_int_equal(cbm_council_delete(e, "nosuch", &err), CBM_ENOTFOUND);
    /* An engine that is not started answers CBM_ESTATE. */
    assert_int_equal(cbm_engine_create(&idle, NULL, &err), 0);
    assert_int_equal(cbm_council_put(idle, DEV1, v, NULL, &err), CBM_ESTATE);
    assert_int_equal(cbm_council_list(idle, &(cbm_council_info_t *){NULL}, &(size_t){0}, &err),
                     CBM_ESTATE);
    cbm_engine_destroy(idle);
    cbm_engine_destroy(e);
}

/* Runs after test_put_get_delete: what it left survives the engine. */
static void test_after_restart(void **state)
{
    cbm_engine_t *e = engine(true);
    char v1[65], v[65], *json = NULL;
    cbm_council_info_t *l = NULL;
    cbm_error_t err = {0};
    size_t n = 0;
    (void)state;

    /* DEV1 again is no news: stored and live before the restart. */
    assert_false(put(e, DEV1, v1));
    assert_int_equal(latest(e, "dev", v, &json), 0);
    assert_string_equal(v, v1);
    free(json);
    assert_int_equal(cbm_council_list(e, &l, &n, &err), 0);
    assert_int_equal(n, 2);
    cbm_council_infos_free(l, n);
    cbm_engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_delete),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_after_restart),
    };
    int rc;
    if (testdb_create(url, sizeof(url)) != 0) return TESTDB_SKIP;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(url);
    return rc;
}
