/*
 * test_store_pg_shards.c - shard leases and their fence (migration 010,
 * store.h "Shards"): the hash agrees with the database's, a lease round
 * takes, renews, balances by the live count and never takes a shard whose
 * row a commit holds, and a decision whose shard moved on is refused alone
 * while the rest of its batch commits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cbm_internal.h"
#include "tests/store/store_test.h"
#include "tests/harness/testdb.h"

static void engine_row(fixture_t *f, const char *id)
{
    sql_exec(f, "INSERT INTO cbm_engines (id, lock_key) VALUES ('%s', 1)", id);
}

/* The C hash is the database's, for every id tried. */
static void test_shard_of_agrees(void **state)
{
    fixture_t *f = *state;
    int s = 0;
    cbm_error_t err = {0};

    assert_code(store_shard_count(f->s, &s, &err), 0);
    assert_int_equal(s, 256);
    for (int i = 0; i < 200; i++) {
        char id[37];
        new_id(id);
        assert_int_equal(store_shard_of(id, s), (int)sql_int(f, "SELECT cbm_shard_of('%s')", id));
    }
    assert_int_equal(store_shard_of("00000000-0000-4000-8000-0000ffffffff", 256), 255);
    assert_int_equal(store_shard_of("not a uuid", 256), -1);
    /* The projection stores it. */
    {
        char id[37];
        new_id(id);
        create_exec(f, id, 1, "running");
        assert_int_equal(sql_int(f, "SELECT shard FROM cbm_executions WHERE id = '%s'", id),
                         store_shard_of(id, 256));
    }
}

static void test_lease_rounds(void **state)
{
    fixture_t *f = *state;
    const char *a = "aaaaaaaa-0000-4000-8000-000000000001", *b = "bbbbbbbb-0000-4000-8000-000000000002";
    store_lease_t *held = NULL;
    size_t n = 0;
    int live = 0;
    cbm_error_t err = {0};

    /* No engine row: fenced. */
    assert_code(store_leases_round(f->s, a, 5000, 10, &held, &n, &live, &err), CBM_EFENCED);
    engine_row(f, a);
    assert_code(store_leases_round(f->s, a, 5000, 300, &held, &n, &live, &err), 0);
    assert_int_equal(n, 256);
    assert_int_equal(live, 1);
    assert_true(held[0].shard == 0 && held[0].token == 1 && held[255].shard == 255);
    free(held);
    /* A second engine: nothing free. */
    engine_row(f, b);
    assert_code(store_leases_round(f->s, b, 5000, 128, &held, &n, &live, &err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(live, 2);
    /* a gives 128 up; b takes them, each with the token grown. */
    {
        int give[128];
        for (int i = 0; i < 128; i++) give[i] = 128 + i;
        assert_code(store_leases_release(f->s, a, give, 128, &err), 0);
    }
    assert_code(store_leases_round(f->s, b, 5000, 200, &held, &n, &live, &err), 0);
    assert_int_equal(n, 128);
    assert_true(held[0].shard == 128 && held[0].token == 2);
    free(held);
    /* Expired leases are taken too; renewed ones are not. */
    sql_exec(f, "UPDATE cbm_shard_leases SET expires_at = now() - interval '1 s' WHERE shard < 10");
    assert_code(store_leases_round(f->s, b, 5000, 200, &held, &n, &live, &err), 0);
    assert_int_equal(n, 138);
    free(held);
    assert_code(store_leases_round(f->s, a, 5000, -1, &held, &n, &live, &err), 0);
    assert_int_equal(n, 118);
    free(held);
    {
        store_engine_row_t *rows = NULL;
        size_t nr = 0;
        assert_code(store_engines_list(f->s, &rows, &nr, &err), 0);
        assert_int_equal(nr, 2);
        assert_string_equal(rows[0].id, a);
        assert_int_equal(rows[0].nshards, 118);
        assert_string_equal(rows[0].shards, "10-127");
        assert_string_equal(rows[1].shards, "0-9,128-255");
        store_engine_rows_free(rows, nr);
    }
}

/* A batch with one decision whose shard moved to another engine: that one
 * is refused (CBM_EFENCED), the others commit. */
static void test_fence_per_decision(void **state)
{
    fixture_t *f = *state;
    const char *a = "aaaaaaaa-0000-4000-8000-000000000001", *b = "bbbbbbbb-0000-4000-8000-000000000002";
    char ids[3][37];
    tdec_t t[3];
    store_decision_t *ds[3];
    store_lease_t *held = NULL;
    size_t n = 0;
    int live = 0;
    cbm_error_t err = {0};

    engine_row(f, a);
    engine_row(f, b);
    assert_code(store_leases_round(f->s, a, 5000, 256, &held, &n, &live, &err), 0);
    free(held);
    /* Three executions in three different shards, created under a's leases. */
    for (int i = 0; i < 3; i++) {
        do new_id(ids[i]);
        while (i > 0 && (store_shard_of(ids[i], 256) == store_shard_of(ids[0], 256) ||
                         store_shard_of(ids[i], 256) == store_shard_of(ids[i - 1], 256)));
    }
    store_set_fence(f->s, a);
    for (int i = 0; i < 3; i++) {
        tdec_init(&t[i], ids[i], 0, 1, true, "running");
        t[i].d.shard_token = 1;
        assert_code(append1(f, &t[i], &err), 0);
    }
    /* b takes the shard of ids[1] (token 2). */
    sql_exec(f, "UPDATE cbm_shard_leases SET owner = '%s', token = token + 1 WHERE shard = %d", b,
             store_shard_of(ids[1], 256));
    for (int i = 0; i < 3; i++) {
        tdec_init(&t[i], ids[i], 1, 1, false, "running");
        t[i].d.shard_token = 1;
        ds[i] = &t[i].d;
    }
    assert_code(store_append(f->s, ds, 3, &err), CBM_EFENCED);
    assert_code(t[0].d.result_code, 0);
    assert_code(t[1].d.result_code, CBM_EFENCED);
    assert_code(t[2].d.result_code, 0);
    assert_int_equal(sql_int(f, "SELECT last_seq FROM cbm_executions WHERE id = '%s'", ids[1]), 1);
    assert_int_equal(sql_int(f, "SELECT last_seq FROM cbm_executions WHERE id = '%s'", ids[0]), 2);
    /* Token 0: no lease needed (an outside decision, a start for another
     * engine); b's own token commits. */
    tdec_init(&t[1], ids[1], 1, 1, false, "running");
    t[1].d.shard_token = 0;
    assert_code(append1(f, &t[1], &err), 0);
    store_set_fence(f->s, b);
    tdec_init(&t[1], ids[1], 2, 1, false, "running");
    t[1].d.shard_token = 2;
    assert_code(append1(f, &t[1], &err), 0);
    /* a's row freed and taken again by a: the old token is still refused. */
    store_set_fence(f->s, a);
    sql_exec(f, "UPDATE cbm_shard_leases SET owner = '%s', token = token + 1 WHERE shard = %d", a,
             store_shard_of(ids[1], 256));
    tdec_init(&t[1], ids[1], 3, 1, false, "running");
    t[1].d.shard_token = 1;
    assert_code(append1(f, &t[1], &err), CBM_EFENCED);
    store_set_fence(f->s, NULL);
}

/* A take waits out (skips) a shard whose row a commit of the holder still
 * holds: the commit's transaction is left open on another connection. */
static void test_take_skips_held_row(void **state)
{
    fixture_t *f = *state;
    const char *a = "aaaaaaaa-0000-4000-8000-000000000001", *b = "bbbbbbbb-0000-4000-8000-000000000002";
    store_lease_t *held = NULL;
    size_t n = 0;
    int live = 0;
    cbm_error_t err = {0};

    engine_row(f, a);
    engine_row(f, b);
    assert_code(store_leases_round(f->s, a, 5000, 256, &held, &n, &live, &err), 0);
    free(held);
    sql_exec(f, "UPDATE cbm_shard_leases SET expires_at = now() - interval '1 s'");
    /* a's commit in flight on shard 7: the fence holds its row FOR SHARE. */
    sql_exec(f, "BEGIN");
    sql_exec(f, "SELECT cbm_fence_shards('%s', ARRAY[(SELECT id FROM (SELECT "
                "gen_random_uuid() AS id FROM generate_series(1, 5000)) g WHERE cbm_shard_of(id) = 7"
                " LIMIT 1)], ARRAY[1::int8])", a);
    assert_code(store_leases_round(f->s, b, 5000, 256, &held, &n, &live, &err), 0);
    assert_int_equal(n, 255);
    for (size_t i = 0; i < n; i++) assert_int_not_equal(held[i].shard, 7);
    free(held);
    sql_exec(f, "COMMIT");
    assert_code(store_leases_round(f->s, b, 5000, 256, &held, &n, &live, &err), 0);
    assert_int_equal(n, 256);
    free(held);
}

int main(void)
{
    char url[512];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shard_of_agrees, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_lease_rounds, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_fence_per_decision, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_take_skips_held_row, fixture_setup, fixture_teardown),
    };

    if (testdb_create(url, sizeof(url)) != 0) {
        fprintf(stderr, "no test PostgreSQL (CEREBELUM_TEST_DATABASE_URL): skipped\n");
        return TESTDB_SKIP;
    }
    testdb_drop(url);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
