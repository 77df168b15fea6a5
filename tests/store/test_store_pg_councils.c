/*
 * test_store_pg_councils.c - councils in the store (store.h, "Councils";
 * migration 007): put is idempotent and says whether it made a version
 * live, "latest" follows puts and deletes, a deleted version stays readable
 * by version, lists show the latest live version of each name with its
 * role and agent count, and the text comes back byte for byte. The engine's
 * own checks (validation, canonical form) are test_council.c's; here the
 * definitions only need to be JSON with a role and agents.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/harness/testdb.h"
#include "tests/store/store_test.h"

#define DEF_A "{\"name\":\"dev\",\"role\":\"developer\",\"agents\":[{\"id\":\"a\"},{\"id\":\"b\"}]}"
#define DEF_B "{\"name\":\"dev\",\"role\":\"developer\",\"agents\":[{\"id\":\"a\"}]}"
#define DEF_QA "{\"name\":\"qa\",\"role\":\"tester\",\"agents\":[{\"id\":\"q\"}]}"

static bool put(fixture_t *f, const char *name, const char *version, const char *def)
{
    cbm_error_t err = {0};
    bool created = false;
    if (store_council_put(f->s, name, version, def, &created, &err) != 0)
        fail_msg("put %s %s: %s", name, version, err.message);
    return created;
}

/* The version get(name, NULL) answers, or the error code as text. */
static const char *latest(fixture_t *f, const char *name)
{
    static char v[600];
    store_council_t *c = NULL;
    cbm_error_t err = {0};
    int rc = store_council_get(f->s, name, NULL, &c, &err);
    if (rc != 0) {
        assert_null(c);
        snprintf(v, sizeof(v), "%s: %s", cbm_err_name(rc), err.message);
        return v;
    }
    snprintf(v, sizeof(v), "%s", c->version);
    assert_int_equal(c->deleted_at_us, 0);
    store_councils_free(c, 1);
    return v;
}

static void test_put_get(void **state)
{
    fixture_t *f = *state;
    store_council_t *c = NULL;
    cbm_error_t err = {0};

    assert_string_equal(latest(f, "dev"), "CBM_ENOTFOUND: no council named 'dev'");
    assert_true(put(f, "dev", "va", DEF_A));
    assert_false(put(f, "dev", "va", DEF_A));
    assert_string_equal(latest(f, "dev"), "va");
    assert_true(put(f, "dev", "vb", DEF_B));
    assert_string_equal(latest(f, "dev"), "vb");
    /* A live version put again is not made the latest. */
    assert_false(put(f, "dev", "va", DEF_A));
    assert_string_equal(latest(f, "dev"), "vb");

    assert_code(store_council_get(f->s, "dev", "va", &c, &err), 0);
    assert_string_equal(c->name, "dev");
    assert_string_equal(c->version, "va");
    assert_string_equal(c->definition, DEF_A); /* byte for byte */
    assert_string_equal(c->role, "developer");
    assert_int_equal(c->agents, 2);
    assert_true(c->created_at_us > 1700000000000000);
    assert_true(c->put_at_us >= c->created_at_us);
    assert_int_equal(c->deleted_at_us, 0);
    store_councils_free(c, 1);
    assert_code(store_council_get(f->s, "dev", "vz", &c, &err), CBM_ENOTFOUND);
    assert_null(c);
    assert_string_equal(err.message, "council 'dev' has no version vz");
    assert_code(store_council_put(f->s, "dev", NULL, DEF_A, NULL, &err), CBM_EINVAL);
}

static void test_delete(void **state)
{
    fixture_t *f = *state;
    store_council_t *c = NULL, *l = NULL;
    cbm_error_t err = {0};
    size_t n = 0;

    assert_code(store_council_delete(f->s, "dev", &err), CBM_ENOTFOUND);
    assert_string_equal(err.message, "no council named 'dev'");
    put(f, "dev", "va", DEF_A);
    put(f, "dev", "vb", DEF_B);
    put(f, "qa", "vq", DEF_QA);
    assert_code(store_council_delete(f->s, "dev", &err), 0);
    assert_string_equal(latest(f, "dev"), "CBM_ENOTFOUND: no council named 'dev'");
    assert_code(store_council_delete(f->s, "dev", &err), CBM_ENOTFOUND);
    /* Every version stays readable by version, marked deleted. */
    assert_code(store_council_get(f->s, "dev", "va", &c, &err), 0);
    assert_string_equal(c->definition, DEF_A);
    assert_true(c->deleted_at_us >= c->put_at_us);
    store_councils_free(c, 1);
    assert_code(store_council_list(f->s, &l, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(l[0].name, "qa");
    store_councils_free(l, n);

    /* Putting an old version back makes it live and the latest; the other
     * stays deleted until it is put too. */
    assert_true(put(f, "dev", "va", DEF_A));
    assert_string_equal(latest(f, "dev"), "va");
    assert_false(put(f, "dev", "va", DEF_A));
    assert_true(put(f, "dev", "vb", DEF_B));
    assert_string_equal(latest(f, "dev"), "vb");
    assert_code(store_council_get(f->s, "dev", "va", &c, &err), 0);
    assert_int_equal(c->deleted_at_us, 0);
    store_councils_free(c, 1);
}

static void test_list(void **state)
{
    fixture_t *f = *state;
    store_council_t *l = (store_council_t *)1;
    cbm_error_t err = {0};
    size_t n = 9;

    assert_code(store_council_list(f->s, &l, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_null(l);
    put(f, "qa", "vq", DEF_QA);
    put(f, "dev", "va", DEF_A);
    put(f, "dev", "vb", DEF_B);
    assert_code(store_council_list(f->s, &l, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(l[0].name, "dev"); /* by name */
    assert_string_equal(l[0].version, "vb");
    assert_string_equal(l[0].role, "developer");
    assert_int_equal(l[0].agents, 1);
    assert_null(l[0].definition);
    assert_true(l[0].created_at_us > 0);
    assert_string_equal(l[1].name, "qa");
    assert_string_equal(l[1].role, "tester");
    store_councils_free(l, n);
    /* The latest index serves "latest" (a plan check, on a table too small
     * for the planner to prefer it unasked). */
    sql_exec(f, "SET enable_seqscan = off");
    {
        char *plan = sql_explain(f, "SELECT version FROM cbm_councils WHERE name = 'dev' AND"
                                    " deleted_at IS NULL ORDER BY put_at DESC LIMIT 1");
        if (strstr(plan, "cbm_councils_latest") == NULL) fail_msg("plan:\n%s", plan);
        free(plan);
    }
}

int main(void)
{
    char url[512];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_delete, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_list, fixture_setup, fixture_teardown),
    };

    if (testdb_create(url, sizeof(url)) != 0) {
        fprintf(stderr, "no test PostgreSQL (CEREBELUM_TEST_DATABASE_URL): skipped\n");
        return TESTDB_SKIP;
    }
    testdb_drop(url);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
