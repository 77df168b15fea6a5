/*
 * test_starts.c - idempotent starts and blueprint versions, end to end on a
 * real PostgreSQL: one key started from 8 threads on two engines at once,
 * the same key after a restart, two versions of one blueprint running side
 * by side (across a restart too), starting an explicit old version,
 * registering the same content twice, and listing newest first.
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
#include <uv.h>

#include <cmocka.h>

#include "cerebelum/cerebelum.h"
#include "tests/harness/testdb.h"

static char url[512];

static void h_add(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_ok(out, "1");
}

/* Finishes, then puts the execution to sleep (a durable timer) for 1.5 s. */
static void h_nap(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_sleep(out, "\"napped\"", 1500);
}

static cbm_engine_t *engine(void)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    o.database_url = url;
    assert_int_equal(cbm_engine_create(&e, &o, &err), 0);
    assert_int_equal(cbm_engine_register_step(e, "add", h_add, NULL), 0);
    assert_int_equal(cbm_engine_register_step(e, "nap", h_nap, NULL), 0);
    if (cbm_engine_start(e, &err) != 0) fail_msg("start: %s", err.message);
    return e;
}

/* Register json; returns whether it was new, the version in v. */
static bool put(cbm_engine_t *e, const char *json, char v[65])
{
    cbm_error_t err = {0};
    bool created = true;
    if (cbm_engine_put_blueprint(e, json, v, &created, &err) != 0)
        fail_msg("register: %s", err.message);
    return created;
}

static cbm_execution_info_t *wait_done(cbm_engine_t *e, const char *id)
{
    cbm_execution_info_t *x = NULL;
    cbm_error_t err = {0};
    if (cbm_execution_wait(e, id, 30000, &x, &err) != 0) fail_msg("wait %s: %s", id, err.message);
    if (strcmp(x->status, "completed") != 0) fail_msg("%s is %s: %s", id, x->status, x->error);
    return x;
}

/* ---- one key, 8 threads, 2 engines ---------------------------------------- */

enum { STARTERS = 8 };

typedef struct starter {
    cbm_engine_t *e;
    uv_barrier_t *barrier;
    const char *key;
    char id[37];
    bool created;
    int rc;
    char message[512];
} starter_t;

static void start_thread(void *arg)
{
    starter_t *s = arg;
    cbm_start_opts_t o = {0};
    cbm_error_t err = {0};

    o.idempotency_key = s->key;
    uv_barrier_wait(s->barrier);
    s->rc = cbm_execution_start_opts(s->e, "keyed", "{\"n\": 1}", &o, s->id, &s->created, &err);
    snprintf(s->message, sizeof(s->message), "%s", err.message);
}

static void test_key_from_many_threads(void **state)
{
    cbm_engine_t *e[2] = {engine(), engine()};
    char v[65];
    cbm_list_opts_t lo = {0};
    cbm_execution_info_t *xs = NULL, *x;
    size_t n = 0;
    cbm_error_t err = {0};
    (void)state;

    put(e[0], "{\"name\":\"keyed\",\"timeline\":[{\"name\":\"a\",\"handler\":\"add\"}]}", v);
    for (int round = 0; round < 5; round++) {
        uv_barrier_t barrier;
        uv_thread_t th[STARTERS];
        starter_t s[STARTERS];
        char key[32];
        int created = 0;

        snprintf(key, sizeof(key), "order-%d", round);
        uv_barrier_init(&barrier, STARTERS);
        for (int i = 0; i < STARTERS; i++) {
            s[i] = (starter_t){.e = e[i % 2], .barrier = &barrier, .key = key};
            assert_int_equal(uv_thread_create(&th[i], start_thread, &s[i]), 0);
        }
        for (int i = 0; i < STARTERS; i++) uv_thread_join(&th[i]);
        uv_barrier_destroy(&barrier);
        for (int i = 0; i < STARTERS; i++) {
            if (s[i].rc != 0) fail_msg("starter %d: %s: %s", i, cbm_err_name(s[i].rc), s[i].message);
            if (strcmp(s[i].id, s[0].id) != 0)
                fail_msg("round %d: starter %d got %s, starter 0 got %s", round, i, s[i].id, s[0].id);
            created += s[i].created;
        }
        assert_int_equal(created, 1);
        x = wait_done(e[0], s[0].id);
        assert_string_equal(x->idempotency_key, key);
        cbm_execution_info_free(x);
    }
    /* Exactly one execution per key. */
    lo.blueprint = "keyed";
    lo.limit = 100;
    assert_int_equal(cbm_execution_list(e[0], &lo, &xs, &n, &err), 0);
    assert_int_equal(n, 5);
    cbm_execution_infos_free(xs, n);
    cbm_engine_destroy(e[0]);
    cbm_engine_destroy(e[1]);
}

/* ---- the same key after a restart ------------------------------------------ */

static void test_key_after_restart(void **state)
{
    cbm_engine_t *e = engine();
    cbm_start_opts_t o = {0};
    cbm_error_t err = {0};
    char v[65], first[37], again[37];
    bool created = false;
    cbm_execution_info_t *x;
    (void)state;

    /* Sleeps in the middle: still unfinished when the engine goes. */
    put(e, "{\"name\":\"kr\",\"timeline\":[{\"name\":\"a\",\"handler\":\"nap\"},"
           "{\"name\":\"b\",\"handler\":\"add\"}]}", v);
    o.idempotency_key = "restart-1";
    assert_int_equal(cbm_execution_start_opts(e, "kr", NULL, &o, first, &created, &err), 0);
    assert_true(created);
    cbm_engine_destroy(e);

    e = engine();
    assert_int_equal(cbm_execution_start_opts(e, "kr", "{\"other\": 2}", &o, again, &created, &err), 0);
    assert_false(created);
    assert_string_equal(again, first);
    x = wait_done(e, first);
    assert_string_equal(x->inputs, "{}"); /* the first start's, not the repeat's */
    cbm_execution_info_free(x);
    /* After it finished, the key still names it: keys are never reused. */
    assert_int_equal(cbm_execution_start_opts(e, "kr", NULL, &o, again, &created, &err), 0);
    assert_false(created);
    assert_string_equal(again, first);
    /* A different key is a different execution. */
    o.idempotency_key = "restart-2";
    assert_int_equal(cbm_execution_start_opts(e, "kr", NULL, &o, again, &created, &err), 0);
    assert_true(created);
    assert_string_not_equal(again, first);
    cbm_execution_info_free(wait_done(e, again));

    /* Bad options. */
    o.idempotency_key = "";
    assert_int_equal(cbm_execution_start_opts(e, "kr", NULL, &o, again, &created, &err), CBM_EINVAL);
    {
        char big[300];
        memset(big, 'k', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        o.idempotency_key = big;
        assert_int_equal(cbm_execution_start_opts(e, "kr", NULL, &o, again, &created, &err),
                         CBM_EINVAL);
        assert_non_null(strstr(err.message, "idempotency key"));
    }
    o.idempotency_key = "restart-3";
    assert_int_equal(cbm_execution_start_opts(e, "nosuch", NULL, &o, again, &created, &err),
                     CBM_ENOTFOUND);
    /* NULL opts: a plain start. */
    assert_int_equal(cbm_execution_start_opts(e, "kr", NULL, NULL, again, &created, &err), 0);
    assert_true(created);
    cbm_execution_info_free(wait_done(e, again));
    cbm_engine_destroy(e);
}

/* ---- versions side by side ---------------------------------------------------- */

/* v1: a (naps), then b. v2: a (naps), then c and d. Results name the leaves. */
static const char *V1 = "{\"name\":\"ver\",\"timeline\":[{\"name\":\"a\",\"handler\":\"nap\"},"
                        "{\"name\":\"b\",\"handler\":\"add\"}]}";
static const char *V2 = "{\"name\":\"ver\",\"steps\":[{\"name\":\"a\",\"handler\":\"nap\"},"
                        "{\"name\":\"c\",\"handler\":\"add\",\"depends_on\":[\"a\"]},"
                        "{\"name\":\"d\",\"handler\":\"add\",\"depends_on\":[\"a\"]}]}";
/* V1 again, written differently: same canonical JSON, same version. */
static const char *V1_AGAIN = "{ \"timeline\": [ {\"handler\": \"nap\", \"name\": \"a\"},"
                              " {\"handler\": \"add\", \"name\": \"b\"} ], \"name\": \"ver\" }";

static void check_run(cbm_engine_t *e, const char *id, const char *version, int v1)
{
    cbm_execution_info_t *x = wait_done(e, id);
    assert_string_equal(x->version, version);
    if (v1) {
        assert_non_null(strstr(x->result, "\"b\""));
        assert_null(strstr(x->result, "\"c\""));
    } else {
        assert_non_null(strstr(x->result, "\"c\""));
        assert_non_null(strstr(x->result, "\"d\""));
        assert_null(strstr(x->result, "\"b\""));
    }
    cbm_execution_info_free(x);
}

static void test_versions_side_by_side(void **state)
{
    cbm_engine_t *e = engine();
    cbm_start_opts_t o = {0};
    cbm_error_t err = {0};
    char v1[65], v2[65], vv[65], x1[37], x2[37], x3[37], x4[37];
    bool created;
    (void)state;

    assert_true(put(e, V1, v1));
    assert_int_equal(cbm_execution_start(e, "ver", NULL, x1, &err), 0);     /* on v1 */
    assert_true(put(e, V2, v2));
    assert_string_not_equal(v1, v2);
    assert_int_equal(cbm_execution_start(e, "ver", NULL, x2, &err), 0);     /* on v2 */
    /* Registering v1 again is a no-op: same version, not created, and v2
     * stays the latest. */
    assert_false(put(e, V1_AGAIN, vv));
    assert_string_equal(vv, v1);
    assert_false(put(e, V2, vv));
    /* Restart while both sleep: each resumes on its own version. */
    cbm_engine_destroy(e);
    e = engine();
    /* An explicit old version, and the latest. */
    o.version = v1;
    assert_int_equal(cbm_execution_start_opts(e, "ver", NULL, &o, x3, &created, &err), 0);
    assert_true(created);
    assert_int_equal(cbm_execution_start(e, "ver", NULL, x4, &err), 0);
    check_run(e, x1, v1, 1);
    check_run(e, x2, v2, 0);
    check_run(e, x3, v1, 1);
    check_run(e, x4, v2, 0);
    cbm_engine_destroy(e);

    /* A fresh engine with nothing running: the explicit old version is
     * loaded from the store. */
    e = engine();
    assert_int_equal(cbm_execution_start_opts(e, "ver", NULL, &o, x3, &created, &err), 0);
    check_run(e, x3, v1, 1);
    o.version = "0000000000000000000000000000000000000000000000000000000000000000";
    assert_int_equal(cbm_execution_start_opts(e, "ver", NULL, &o, x3, &created, &err),
                     CBM_ENOTFOUND);
    assert_non_null(strstr(err.message, "has no version"));
    o.version = "";
    assert_int_equal(cbm_execution_start_opts(e, "ver", NULL, &o, x3, &created, &err), CBM_EINVAL);
    cbm_engine_destroy(e);
}

/* ---- lists newest first ------------------------------------------------------- */

static void test_list_newest_first(void **state)
{
    enum { N = 12 };
    cbm_engine_t *e = engine();
    char v[65], ids[N][37], after[37] = "";
    cbm_list_opts_t lo = {0};
    cbm_error_t err = {0};
    int seen = 0;
    (void)state;

    put(e, "{\"name\":\"newest\",\"timeline\":[{\"name\":\"a\",\"handler\":\"add\"}]}", v);
    for (int i = 0; i < N; i++) assert_int_equal(cbm_execution_start(e, "newest", NULL, ids[i], &err), 0);
    lo.blueprint = "newest";
    lo.limit = 5;
    lo.newest_first = true;
    for (;;) {
        cbm_execution_info_t *page = NULL;
        size_t n = 0;
        lo.after = after[0] ? after : NULL;
        assert_int_equal(cbm_execution_list(e, &lo, &page, &n, &err), 0);
        for (size_t i = 0; i < n; i++) assert_string_equal(page[i].id, ids[N - 1 - seen - (int)i]);
        seen += (int)n;
        if (n > 0) snprintf(after, sizeof(after), "%s", page[n - 1].id);
        cbm_execution_infos_free(page, n);
        if (n == 0) break;
    }
    assert_int_equal(seen, N);
    for (int i = 0; i < N; i++) cbm_execution_info_free(wait_done(e, ids[i]));
    cbm_engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_from_many_threads),
        cmocka_unit_test(test_key_after_restart),
        cmocka_unit_test(test_versions_side_by_side),
        cmocka_unit_test(test_list_newest_first),
    };
    int rc;
    if (testdb_create(url, sizeof(url)) != 0) return TESTDB_SKIP;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(url);
    return rc;
}
