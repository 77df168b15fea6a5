/*
 * test_store_pg_keys.c - conformance of idempotency keys (migration 004,
 * store_decision_t.idempotency_key, store_find_by_key), of
 * store_put_blueprint's "inserted" answer, and of listing newest first.
 *
 * Keys are checked the three ways a second start with a key can meet the
 * first: already committed (an earlier batch), in the same batch, and at
 * the same moment from another connection (threads racing on one key).
 */
#include "tests/store/store_test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness/testdb.h"

void test_blueprint_inserted(void **state)
{
    fixture_t *f = *state;
    cbm_error_t err = {0};
    bool inserted = false;

    assert_code(store_put_blueprint(f->s, "flow", "v1", "{\"a\":1}", &inserted, &err), 0);
    assert_true(inserted);
    assert_code(store_put_blueprint(f->s, "flow", "v1", "{\"a\":1}", &inserted, &err), 0);
    assert_false(inserted);
    assert_code(store_put_blueprint(f->s, "flow", "v2", "{\"a\":2}", &inserted, &err), 0);
    assert_true(inserted);
    /* Putting v1 again does not make it the latest. */
    assert_code(store_put_blueprint(f->s, "flow", "v1", "{\"a\":1}", &inserted, &err), 0);
    assert_false(inserted);
    {
        char *v = NULL;
        assert_code(store_get_blueprint(f->s, "flow", NULL, &v, NULL, &err), 0);
        assert_string_equal(v, "v2");
        free(v);
    }
    /* A failed put says "not inserted". */
    inserted = true;
    assert_code(store_put_blueprint(f->s, "bad", "v1", "{nope", &inserted, &err), CBM_ESTORE);
    assert_false(inserted);
}

void test_key_unique(void **state)
{
    fixture_t *f = *state;
    char a[37], b[37], c[37], d[37];
    tdec_t ta, tb, tc, td;
    store_decision_t *ds[2];
    store_execution_t *x = NULL;
    cbm_error_t err = {0};

    new_id(a);
    new_id(b);
    new_id(c);
    new_id(d);
    tdec_init(&ta, a, 0, 1, true, "running");
    ta.d.idempotency_key = "order-42";
    assert_code(append1(f, &ta, &err), 0);
    assert_string_equal(sql_text(f, "SELECT idempotency_key FROM cbm_executions WHERE id = '%s'", a),
                        "order-42");

    /* The same key again (same blueprint), batched with an unrelated new
     * execution: only the keyed one is refused, the other commits. */
    tdec_init(&tb, b, 0, 2, true, "running");
    tb.d.idempotency_key = "order-42";
    tdec_init(&tc, c, 0, 1, true, "running");
    ds[0] = &tb.d;
    ds[1] = &tc.d;
    assert_code(store_append(f->s, ds, 2, &err), CBM_EEXIST);
    assert_code(tb.d.result_code, CBM_EEXIST);
    assert_code(tc.d.result_code, 0);
    assert_non_null(strstr(err.message, "idempotency key"));
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_executions WHERE id = '%s'", b), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_events WHERE execution_id = '%s'", b), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_executions WHERE id = '%s'", c), 1);

    /* The same key for another blueprint is another key. */
    tdec_init(&td, d, 0, 1, true, "running");
    td.d.blueprint = "other";
    td.d.idempotency_key = "order-42";
    assert_code(append1(f, &td, &err), 0);

    /* Lookup: the holder, with its key in the projection. */
    assert_code(store_find_by_key(f->s, "bp", "order-42", &x, &err), 0);
    assert_string_equal(x->id, a);
    assert_string_equal(x->idempotency_key, "order-42");
    store_executions_free(x, 1);
    assert_code(store_find_by_key(f->s, "other", "order-42", &x, &err), 0);
    assert_string_equal(x->id, d);
    store_executions_free(x, 1);
    assert_code(store_find_by_key(f->s, "bp", "order-43", &x, &err), CBM_ENOTFOUND);
    assert_null(x);
    assert_code(store_find_by_key(f->s, "bp", NULL, &x, &err), CBM_EINVAL);
    /* Executions without a key have none in the projection. */
    assert_code(store_get_execution(f->s, c, &x, &err), 0);
    assert_null(x->idempotency_key);
    store_executions_free(x, 1);
    assert_code(store_get_execution(f->s, a, &x, &err), 0);
    assert_string_equal(x->idempotency_key, "order-42");
    store_executions_free(x, 1);
}

void test_key_same_batch(void **state)
{
    fixture_t *f = *state;
    enum { N = 5 };
    tdec_t t[N];
    store_decision_t *ds[N];
    char ids[N][37];
    cbm_error_t err = {0};
    int committed = 0, taken = 0;

    /* Three claims of "k1", two of "k2", all new, in one batch. */
    for (int i = 0; i < N; i++) {
        new_id(ids[i]);
        tdec_init(&t[i], ids[i], 0, 1, true, "running");
        t[i].d.idempotency_key = i < 3 ? "k1" : "k2";
        ds[i] = &t[i].d;
    }
    assert_code(store_append(f->s, ds, N, &err), CBM_EEXIST);
    for (int i = 0; i < N; i++) {
        if (t[i].d.result_code == 0) committed++;
        else if (t[i].d.result_code == CBM_EEXIST) taken++;
        else fail_msg("decision %d: %s", i, cbm_err_name(t[i].d.result_code));
    }
    assert_int_equal(committed, 2);
    assert_int_equal(taken, 3);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_executions"), 2);
    assert_int_equal(sql_int(f, "SELECT count(DISTINCT idempotency_key) FROM cbm_executions"), 2);
    /* The one that committed is the one the lookup names. */
    for (int i = 0; i < N; i++) {
        if (t[i].d.result_code != 0) continue;
        assert_string_equal(sql_text(f, "SELECT id FROM cbm_executions WHERE idempotency_key = '%s'",
                                     t[i].d.idempotency_key),
                            ids[i]);
    }
}

/* Threads, each on its own connection, start with the same key at once. */
enum { KEY_RACERS = 8, KEY_ROUNDS = 20 };

typedef struct key_racer {
    const char *url;
    pthread_barrier_t *barrier;
    int committed, taken, rc;
    char message[512];
} key_racer_t;

static void *key_race_thread(void *arg)
{
    key_racer_t *r = arg;
    store_t *s = NULL;
    cbm_error_t err = {0};

    r->rc = store_open(r->url, &s, &err);
    for (int round = 0; round < KEY_ROUNDS; round++) {
        char id[37], key[32];
        tdec_t t;
        store_decision_t *ds[1] = {&t.d};

        pthread_barrier_wait(r->barrier);
        if (r->rc != 0) continue;
        new_id(id);
        snprintf(key, sizeof(key), "race-%d", round);
        tdec_init(&t, id, 0, 1, true, "running");
        t.d.idempotency_key = key;
        store_append(s, ds, 1, &err);
        if (t.d.result_code == 0) r->committed++;
        else if (t.d.result_code == CBM_EEXIST) r->taken++;
        else r->rc = t.d.result_code;
    }
    snprintf(r->message, sizeof(r->message), "%s", err.message);
    store_close(s);
    return NULL;
}

void test_key_race(void **state)
{
    fixture_t *f = *state;
    pthread_barrier_t barrier;
    pthread_t th[KEY_RACERS];
    key_racer_t r[KEY_RACERS];
    int committed = 0, taken = 0;

    pthread_barrier_init(&barrier, NULL, KEY_RACERS);
    for (int i = 0; i < KEY_RACERS; i++) {
        r[i] = (key_racer_t){.url = f->url, .barrier = &barrier};
        assert_int_equal(pthread_create(&th[i], NULL, key_race_thread, &r[i]), 0);
    }
    for (int i = 0; i < KEY_RACERS; i++) {
        pthread_join(th[i], NULL);
        if (r[i].rc != 0) fail_msg("racer %d: %s: %s", i, cbm_err_name(r[i].rc), r[i].message);
        committed += r[i].committed;
        taken += r[i].taken;
    }
    pthread_barrier_destroy(&barrier);
    /* Exactly one start per key committed; every other was told so. */
    assert_int_equal(committed, KEY_ROUNDS);
    assert_int_equal(taken, KEY_ROUNDS * (KEY_RACERS - 1));
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_executions"), KEY_ROUNDS);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_events"), KEY_ROUNDS);
}

void test_list_newest_first(void **state)
{
    fixture_t *f = *state;
    enum { N = 23 };
    char ids[N][37], cursor[37] = "";
    store_list_filter_t flt = {.newest_first = true, .limit = 5};
    cbm_error_t err = {0};
    size_t seen = 0;

    /* One at a time, so created_at increases; then ties on created_at for
     * a few, to exercise the id tie-break in descending order too. */
    for (int i = 0; i < N; i++) {
        new_id(ids[i]);
        create_exec(f, ids[i], 1, i % 2 ? "running" : "completed");
    }
    sql_exec(f, "UPDATE cbm_executions SET created_at = (SELECT min(created_at) FROM cbm_executions)"
                " WHERE id IN (SELECT id FROM cbm_executions ORDER BY created_at LIMIT 6)");
    {
        PGresult *want = PQexec(f->pg, "SELECT id FROM cbm_executions ORDER BY created_at DESC, id DESC");
        assert_int_equal(PQntuples(want), N);
        for (;;) {
            store_execution_t *xs;
            size_t n;
            flt.after_id = cursor[0] != '\0' ? cursor : NULL;
            if (store_list_executions(f->s, &flt, &xs, &n, &err) != 0) fail_msg("list: %s", err.message);
            for (size_t i = 0; i < n; i++)
                assert_string_equal(xs[i].id, PQgetvalue(want, (int)(seen + i), 0));
            seen += n;
            if (n > 0) snprintf(cursor, sizeof(cursor), "%s", xs[n - 1].id);
            store_executions_free(xs, n);
            if (n == 0) break;
        }
        PQclear(want);
    }
    assert_int_equal(seen, N);
    /* The newest of all is the last created. */
    {
        store_execution_t *xs;
        size_t n;
        store_list_filter_t one = {.newest_first = true, .limit = 1};
        assert_code(store_list_executions(f->s, &one, &xs, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(xs[0].id, ids[N - 1]);
        store_executions_free(xs, n);
        /* with a filter: the newest running one */
        one.status = "running";
        assert_code(store_list_executions(f->s, &one, &xs, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(xs[0].id, ids[N - 1 - ((N - 1) % 2 ? 0 : 1)]);
        store_executions_free(xs, n);
    }
    /* The plan walks an index backwards, without a sort (a table this
     * small would be read whole otherwise). */
    sql_exec(f, "SET enable_seqscan = off");
    {
        char *plan = sql_explain(f, "SELECT id FROM cbm_executions ORDER BY created_at DESC, id DESC LIMIT 5");
        if (strstr(plan, "Scan Backward using cbm_executions_created") == NULL || strstr(plan, "Sort") != NULL)
            fail_msg("not a backward index scan:\n%s", plan);
        free(plan);
    }
}
