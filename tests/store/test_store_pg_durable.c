/*
 * test_store_pg_durable.c - what durable timers, hibernation and decisions
 * made from other processes need from the store: timers set and cleared by
 * decisions and read back in due order (store_timers_due), snapshots of
 * state written with a decision, and the loads that return a snapshot plus
 * the events after it (store_load_execution, store_load_unfinished).
 * Registered in test_store_pg.c.
 */
#include "tests/store/store_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cbm_internal.h"
#include "store/pg/store_pg_internal.h"

/* Every timer the store holds, in due order, as "id:key:kind:due,...". */
static char *timers_list(fixture_t *f)
{
    store_timer_t *t;
    size_t n, len = 1;
    cbm_error_t err = {0};
    char *out, *p;

    if (store_timers_due(f->s, INT64_MAX, 1000, &t, &n, &err) != 0) fail_msg("due: %s", err.message);
    for (size_t i = 0; i < n; i++) len += 37 + strlen(t[i].key) + strlen(t[i].kind) + 24 + 4;
    out = calloc(1, len);
    assert_non_null(out);
    p = out;
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s%s:%s:%s:%lld", i > 0 ? "," : "", t[i].execution_id, t[i].key, t[i].kind,
                     (long long)t[i].due_at_us);
    store_timers_free(t, n);
    return out;
}

/* A decision that clears one timer and sets another of the same execution;
 * clears apply before sets; keys are per execution. */
void test_timers_clear_and_set(void **state)
{
    fixture_t *f = *state;
    char a[37], b[37];
    tdec_t t[2];
    store_decision_t *ds[2] = {&t[0].d, &t[1].d};
    store_timer_t ta[3] = {
        {.kind = (char *)"sleep", .key = (char *)"x", .due_at_us = 100},
        {.kind = (char *)"approval", .key = (char *)"y", .due_at_us = 200},
        {.kind = (char *)"timeout", .key = (char *)"z", .due_at_us = 300},
    };
    store_timer_t tb = {.kind = (char *)"sleep", .key = (char *)"x", .due_at_us = 150};
    store_timer_t set_w = {.kind = (char *)"signal", .key = (char *)"w", .due_at_us = 50};
    store_timer_t rearm_z = {.kind = (char *)"retry", .key = (char *)"z", .due_at_us = 400};
    char *clear_x[2] = {(char *)"x", (char *)"nope"}; /* an unknown key is a no-op */
    char *clear_z = (char *)"z";
    cbm_error_t err = {0};
    char want[1024], *got;

    new_id(a);
    new_id(b);
    if (strcmp(a, b) > 0) { /* a < b, so ties on due order a first */
        char tmp[37];
        memcpy(tmp, a, 37);
        memcpy(a, b, 37);
        memcpy(b, tmp, 37);
    }
    tdec_init(&t[0], a, 0, 1, true, "sleeping");
    t[0].d.timers_set = ta;
    t[0].d.ntimers_set = 3;
    tdec_init(&t[1], b, 0, 1, true, "sleeping");
    t[1].d.timers_set = &tb;
    t[1].d.ntimers_set = 1;
    if (store_append(f->s, ds, 2, &err) != 0) fail_msg("append: %s", err.message);
    got = timers_list(f);
    snprintf(want, sizeof(want), "%s:x:sleep:100,%s:x:sleep:150,%s:y:approval:200,%s:z:timeout:300",
             a, b, a, a);
    assert_string_equal(got, want);
    free(got);

    /* a: clear x (and an unknown key), set w. b's x is another execution's
     * and stays. */
    tdec_init(&t[0], a, 1, 1, false, "sleeping");
    t[0].d.timers_cleared = clear_x;
    t[0].d.ntimers_cleared = 2;
    t[0].d.timers_set = &set_w;
    t[0].d.ntimers_set = 1;
    if (append1(f, &t[0], &err) != 0) fail_msg("append: %s", err.message);
    got = timers_list(f);
    snprintf(want, sizeof(want), "%s:w:signal:50,%s:x:sleep:150,%s:y:approval:200,%s:z:timeout:300",
             a, b, a, a);
    assert_string_equal(got, want);
    free(got);

    /* Clear z and set z in one decision: the clear applies first, so z is
     * re-armed with the new kind and due time. In the same batch b clears
     * its only timer. */
    tdec_init(&t[0], a, 2, 1, false, "sleeping");
    t[0].d.timers_cleared = &clear_z;
    t[0].d.ntimers_cleared = 1;
    t[0].d.timers_set = &rearm_z;
    t[0].d.ntimers_set = 1;
    tdec_init(&t[1], b, 1, 1, false, "running");
    t[1].d.timers_cleared = clear_x;
    t[1].d.ntimers_cleared = 1;
    if (store_append(f->s, ds, 2, &err) != 0) fail_msg("append: %s", err.message);
    got = timers_list(f);
    snprintf(want, sizeof(want), "%s:w:signal:50,%s:y:approval:200,%s:z:retry:400", a, a, a);
    assert_string_equal(got, want);
    free(got);
    /* One row per key, all under a's id. */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_timers"), 3);

    /* A stale decision's timer changes are not written. */
    tdec_init(&t[0], a, 2, 1, false, "sleeping");
    t[0].d.timers_cleared = clear_x;
    t[0].d.ntimers_cleared = 1;
    t[0].d.timers_set = &tb;
    t[0].d.ntimers_set = 1;
    assert_code(append1(f, &t[0], &err), CBM_ECONFLICT);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_timers"), 3);
}

typedef struct exp_timer {
    char id[37];
    char key[8];
    int64_t due;
} exp_timer_t;

static int cmp_exp(const void *pa, const void *pb)
{
    const exp_timer_t *x = pa, *y = pb;
    int c;

    if (x->due != y->due) return x->due < y->due ? -1 : 1;
    if ((c = strcmp(x->id, y->id)) != 0) return c;
    return strcmp(x->key, y->key);
}

static void check_due(fixture_t *f, const exp_timer_t *all, size_t nall, int64_t until, size_t limit)
{
    store_timer_t *t = (store_timer_t *)&t;
    size_t n = 99, want = 0;
    cbm_error_t err = {0};

    for (size_t i = 0; i < nall; i++) want += all[i].due <= until;
    if (limit < want) want = limit;
    if (store_timers_due(f->s, until, limit, &t, &n, &err) != 0) fail_msg("due: %s", err.message);
    assert_int_equal(n, want);
    if (n == 0) assert_null(t);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(t[i].execution_id, all[i].id);
        assert_string_equal(t[i].key, all[i].key);
        assert_string_equal(t[i].kind, "sleep");
        assert_int_equal(t[i].due_at_us, all[i].due);
    }
    store_timers_free(t, n);
}

/* Due order is (due_at, execution_id, key) across executions; limit cuts
 * it; until is inclusive; a scheduler pages by firing (clearing) what it
 * got and asking again. */
void test_timers_due_order(void **state)
{
    fixture_t *f = *state;
    enum { NE = 5, NK = 3 };
    static const int64_t dues[NE][NK] = {
        {1000, 2000, 1000},
        {1000, -5, 3000},
        {2000, 1000, 1000},
        {4102444800000000LL, 2000, 0},
        {3000, 1000, 2000},
    };
    exp_timer_t all[NE * NK];
    char ids[NE][37];
    cbm_error_t err = {0};
    store_timer_t *t = NULL;
    size_t n, fired = 0;
    int64_t seqs[NE];

    for (int e = 0; e < NE; e++) {
        store_timer_t ts[NK];
        char keys[NK][8];
        tdec_t d;

        new_id(ids[e]);
        for (int k = 0; k < NK; k++) {
            snprintf(keys[k], sizeof(keys[k]), "k%d", (NK - k) % NK); /* set out of key order */
            ts[k] = (store_timer_t){.kind = (char *)"sleep", .key = keys[k], .due_at_us = dues[e][k]};
            all[e * NK + k] = (exp_timer_t){.due = dues[e][k]};
            memcpy(all[e * NK + k].id, ids[e], 37);
            memcpy(all[e * NK + k].key, keys[k], sizeof(keys[k]));
        }
        tdec_init(&d, ids[e], 0, 1, true, "sleeping");
        d.d.timers_set = ts;
        d.d.ntimers_set = NK;
        if (append1(f, &d, &err) != 0) fail_msg("append: %s", err.message);
        seqs[e] = 1;
    }
    qsort(all, NE * NK, sizeof(all[0]), cmp_exp);

    check_due(f, all, NE * NK, INT64_MAX, 1000);           /* everything */
    check_due(f, all, NE * NK, INT64_C(1) << 53, 1000);    /* "beyond exact" is everything too */
    check_due(f, all, NE * NK, 1000, 1000);                /* inclusive bound, ties */
    check_due(f, all, NE * NK, 999, 1000);
    check_due(f, all, NE * NK, 2000, 4);                   /* limit inside a tie */
    check_due(f, all, NE * NK, 2000, 1);
    check_due(f, all, NE * NK, -6, 10);                    /* before every timer */
    check_due(f, all, NE * NK, -5, 10);                    /* the one before the epoch */
    check_due(f, all, NE * NK, INT64_MIN, 10);             /* none */
    check_due(f, all, NE * NK, INT64_MAX, 0);              /* limit 0: none */
    check_due(f, all, NE * NK, 4102444800000000LL, SIZE_MAX);

    /* Pages after a cursor (store_timers_page), 2 at a time, reading
     * nothing twice: the same sequence, ties across pages included. */
    {
        store_timer_t cur = {{0}, NULL, NULL, 0};
        char ckey[8] = "";
        size_t got = 0, want = 0;

        for (size_t i = 0; i < NE * NK; i++) want += all[i].due <= 3000;
        for (int first = 1;; first = 0) {
            if (store_timers_page(f->s, first ? NULL : &cur, 3000, 2, &t, &n, &err) != 0)
                fail_msg("page: %s", err.message);
            if (n == 0) break;
            for (size_t i = 0; i < n; i++, got++) {
                assert_string_equal(t[i].execution_id, all[got].id);
                assert_string_equal(t[i].key, all[got].key);
            }
            memcpy(cur.execution_id, t[n - 1].execution_id, 37);
            snprintf(ckey, sizeof(ckey), "%s", t[n - 1].key);
            cur.key = ckey;
            cur.due_at_us = t[n - 1].due_at_us;
            store_timers_free(t, n);
        }
        assert_int_equal(got, want);
        /* With no key, the cursor is a time: everything due after it. */
        cur.key = NULL;
        cur.due_at_us = 1000;
        if (store_timers_page(f->s, &cur, 3000, 100, &t, &n, &err) != 0) fail_msg("page: %s", err.message);
        got = 0;
        for (size_t i = 0; i < NE * NK; i++) got += all[i].due > 1000 && all[i].due <= 3000;
        assert_int_equal(n, got);
        for (size_t i = 0; i < n; i++) assert_true(t[i].due_at_us > 1000);
        store_timers_free(t, n);
    }

    /* Page through what is due at 3000, 4 at a time, firing each page: every
     * timer comes exactly once, in due order across pages. */
    for (;;) {
        if (store_timers_due(f->s, 3000, 4, &t, &n, &err) != 0) fail_msg("due: %s", err.message);
        if (n == 0) break;
        for (size_t i = 0; i < n; i++) {
            char *key = t[i].key;
            tdec_t d;
            int e = -1;

            assert_string_equal(t[i].execution_id, all[fired + i].id);
            assert_string_equal(t[i].key, all[fired + i].key);
            for (int j = 0; j < NE; j++)
                if (strcmp(ids[j], t[i].execution_id) == 0) e = j;
            assert_true(e >= 0);
            tdec_init(&d, ids[e], seqs[e], 1, false, "running");
            d.d.timers_cleared = &key;
            d.d.ntimers_cleared = 1;
            if (append1(f, &d, &err) != 0) fail_msg("fire: %s", err.message);
            seqs[e]++;
        }
        fired += n;
        store_timers_free(t, n);
    }
    assert_null(t);
    assert_int_equal(fired, NE * NK - 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_timers"), 1);
}

/* store_timers_due reads cbm_timers_due in index order, with no sort and no
 * sequential scan, over 100k timers, in both plan modes of the prepared
 * statement. */
void test_timers_due_plan(void **state)
{
    fixture_t *f = *state;
    static const char *const modes[] = {"force_custom_plan", "force_generic_plan"};
    static const char *const args[] = {"1700000100000000, 100", "NULL, 1000", "1700004000000000, 5"};
    char *prep;
    store_timer_t *t;
    size_t n;
    cbm_error_t err = {0};
    struct timespec t0, t1;
    PGresult *want;

    /* 100k timers over 20k executions, 5000 distinct due times (ties). */
    sql_exec(f, "INSERT INTO cbm_timers (execution_id, key, kind, due_at)"
                " SELECT md5((i %% 20000)::text)::uuid, 'k' || (i / 20000), 'sleep',"
                "  'epoch'::timestamptz + (1700000000000000 + (i %% 5000)::int8 * 1000000) * interval '1 microsecond'"
                " FROM generate_series(0, 99999) i");
    sql_exec(f, "ANALYZE cbm_timers");
    assert_true(asprintf(&prep, "PREPARE due(int8, int8) AS %s", store_pg_sql_timers_due) > 0);
    sql_exec(f, "%s", prep);
    free(prep);
    for (size_t m = 0; m < 2; m++) {
        sql_exec(f, "SET plan_cache_mode = %s", modes[m]);
        for (size_t a = 0; a < 3; a++) {
            char q[128], *plan;

            snprintf(q, sizeof(q), "EXECUTE due(%s)", args[a]);
            plan = sql_explain(f, q);
            if (strstr(plan, "Index Scan using cbm_timers_due on cbm_timers") == NULL ||
                strstr(plan, "Sort") != NULL || strstr(plan, "Seq Scan") != NULL)
                fail_msg("%s, %s:\n%s", modes[m], q, plan);
            free(plan);
        }
    }

    /* And the store returns exactly what the ORDER BY says. */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (store_timers_due(f->s, 1700000100000000LL, 1000, &t, &n, &err) != 0)
        fail_msg("due: %s", err.message);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(n, 1000); /* 101 due times x 20 timers each are due */
    want = PQexec(f->pg, "SELECT execution_id, key, " PG_US("due_at") " FROM cbm_timers"
                         " ORDER BY due_at, execution_id, key LIMIT 1000");
    assert_int_equal(PQntuples(want), 1000);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(t[i].execution_id, PQgetvalue(want, (int)i, 0));
        assert_string_equal(t[i].key, PQgetvalue(want, (int)i, 1));
        assert_int_equal(t[i].due_at_us, strtoll(PQgetvalue(want, (int)i, 2), NULL, 10));
    }
    PQclear(want);
    store_timers_free(t, n);
    printf("store_timers_due: 1000 of 100k timers in %.2f ms\n",
           (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
}

/* The store's own connection is back outside any transaction. */
static void assert_idle(fixture_t *f)
{
    assert_int_equal(PQtransactionStatus(f->s->conn), PQTRANS_IDLE);
}

static void check_load(fixture_t *f, const char *id, const char *snapshot, int64_t snapshot_seq,
                       int64_t last_seq, const char *status)
{
    store_execution_t *x;
    store_event_t *ev;
    size_t n;
    cbm_error_t err = {0};

    if (store_load_execution(f->s, id, &x, &ev, &n, &err) != 0) fail_msg("load: %s", err.message);
    assert_idle(f);
    assert_string_equal(x->id, id);
    assert_string_equal(x->status, status);
    assert_int_equal(x->last_seq, last_seq);
    if (snapshot == NULL) assert_null(x->snapshot);
    else assert_string_equal(x->snapshot, snapshot);
    assert_int_equal(x->snapshot_seq, snapshot_seq);
    assert_int_equal(n, (size_t)(last_seq - snapshot_seq));
    if (n == 0) assert_null(ev);
    for (size_t i = 0; i < n; i++) {
        char want[32];
        assert_string_equal(ev[i].execution_id, id);
        assert_int_equal(ev[i].seq, snapshot_seq + 1 + (int64_t)i);
        snprintf(want, sizeof(want), "{\"seq\":%lld}", (long long)ev[i].seq);
        assert_string_equal(ev[i].payload, want);
        assert_int_equal(ev[i].recorded_at_us, 1700000000000000LL + ev[i].seq);
    }
    store_events_free(ev, n);
    store_executions_free(x, 1);
}

/* A snapshot written with a decision comes back byte for byte, with only
 * the events after it; read_history still has everything; the row is
 * replaced by later snapshots and kept when the execution ends. */
void test_snapshot_roundtrip(void **state)
{
    fixture_t *f = *state;
    /* json keeps the text: whitespace, key order, duplicate keys, escapes */
    static const char snap1[] = "{ \"steps\" : {\"b\":1, \"a\":[1, 2.50, 1e3]},\n \"dup\":1,\"dup\":2,"
                                " \"s\":\"q\\\"b\\\\ \\u00e9 \xe2\x82\xac {x,y} NULL\" }";
    static const char snap2[] = "[\"second\", {\"k\": null}]";
    char id[37];
    tdec_t t;
    store_execution_t *x;
    store_event_t *ev;
    size_t n;
    cbm_error_t err = {0};

    new_id(id);
    tdec_init(&t, id, 0, 3, true, "running");
    t.d.snapshot = snap1;
    t.d.snapshot_seq = 2;
    if (append1(f, &t, &err) != 0) fail_msg("append: %s", err.message);
    check_load(f, id, snap1, 2, 3, "running");

    /* The other reads ignore snapshots. */
    assert_code(store_read_history(f->s, id, 1, &ev, &n, &err), 0);
    assert_int_equal(n, 3);
    store_events_free(ev, n);
    assert_code(store_get_execution(f->s, id, &x, &err), 0);
    assert_null(x->snapshot);
    assert_int_equal(x->snapshot_seq, 0);
    store_executions_free(x, 1);

    /* A decision without a snapshot leaves the row alone. */
    tdec_init(&t, id, 3, 2, false, "sleeping");
    if (append1(f, &t, &err) != 0) fail_msg("append: %s", err.message);
    check_load(f, id, snap1, 2, 5, "sleeping");

    /* A snapshot at the decision's last seq: nothing left to replay. */
    tdec_init(&t, id, 5, 2, false, "running");
    t.d.snapshot = snap2;
    t.d.snapshot_seq = 7;
    if (append1(f, &t, &err) != 0) fail_msg("append: %s", err.message);
    check_load(f, id, snap2, 7, 7, "running");
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_snapshots"), 1);

    /* A stale decision's snapshot is not written. */
    tdec_init(&t, id, 5, 1, false, "running");
    t.d.snapshot = snap1;
    t.d.snapshot_seq = 6;
    assert_code(append1(f, &t, &err), CBM_ECONFLICT);
    check_load(f, id, snap2, 7, 7, "running");

    /* A snapshot at an earlier seq than the decision's first event is
     * allowed: it replaces the row, and more events are replayed. */
    tdec_init(&t, id, 7, 2, false, "running");
    t.d.snapshot = snap1;
    t.d.snapshot_seq = 6;
    if (append1(f, &t, &err) != 0) fail_msg("append: %s", err.message);
    check_load(f, id, snap1, 6, 9, "running");

    /* Invalid JSON: the decision is refused for its data; nothing of it is
     * written. */
    tdec_init(&t, id, 9, 1, false, "running");
    t.d.snapshot = "{\"broken\": ";
    t.d.snapshot_seq = 10;
    assert_code(append1(f, &t, &err), CBM_EINVAL);
    assert_code(t.d.result_code, CBM_EINVAL);
    check_load(f, id, snap1, 6, 9, "running");

    /* The execution ends: its snapshot stays, it still loads (short), and
     * resurrection no longer sees it. */
    tdec_init(&t, id, 9, 1, false, "completed");
    t.d.result = "{\"ok\": true}";
    if (append1(f, &t, &err) != 0) fail_msg("append: %s", err.message);
    check_load(f, id, snap1, 6, 10, "completed");
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_snapshots"), 1);
    {
        store_unfinished_t u;
        assert_code(store_load_unfinished(f->s, &u, &err), 0);
        assert_idle(f);
        assert_int_equal(u.nexecs, 0);
        store_unfinished_free(&u);
    }
}

/* Snapshots in a group commit: many executions, some with one, all in one
 * transaction; load_unfinished pairs each snapshot with its later events. */
void test_snapshot_batch(void **state)
{
    fixture_t *f = *state;
    enum { N = 300 };
    tdec_t *t = calloc(N, sizeof(*t));
    store_decision_t *ds[N];
    char ids[N][37], snaps[N][48];
    cbm_error_t err = {0};
    store_unfinished_t u;

    assert_non_null(t);
    for (int i = 0; i < N; i++) {
        new_id(ids[i]);
        tdec_init(&t[i], ids[i], 0, 4, true, "running");
        if (i % 3 != 0) { /* a third without snapshot */
            snprintf(snaps[i], sizeof(snaps[i]), "{\"exec\": %d,  \"at\": %d}", i, 1 + i % 4);
            t[i].d.snapshot = snaps[i];
            t[i].d.snapshot_seq = 1 + i % 4;
        }
        ds[i] = &t[i].d;
    }
    if (store_append(f->s, ds, N, &err) != 0) fail_msg("append: %s", err.message);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_snapshots"), N - N / 3);
    assert_int_equal(sql_int(f, "SELECT count(DISTINCT xmin::text) FROM "
                                "(SELECT xmin FROM cbm_snapshots UNION ALL SELECT xmin FROM cbm_events) r"), 1);

    /* A second round: half of them move their snapshot forward, a few end. */
    for (int i = 0; i < N; i++) {
        tdec_init(&t[i], ids[i], 4, 2, false, i % 10 == 0 ? "completed" : "sleeping");
        if (i % 2 == 0) {
            snprintf(snaps[i], sizeof(snaps[i]), "{\"exec\": %d,  \"at\": 5}", i);
            t[i].d.snapshot = snaps[i];
            t[i].d.snapshot_seq = 5;
        }
    }
    if (store_append(f->s, ds, N, &err) != 0) fail_msg("append: %s", err.message);

    assert_code(store_load_unfinished(f->s, &u, &err), 0);
    assert_idle(f);
    assert_int_equal(u.nexecs, N - N / 10);
    for (size_t k = 0; k < u.nexecs; k++) {
        const store_execution_t *x = &u.execs[k];
        int i = -1;
        int64_t snap_seq;

        for (int j = 0; j < N; j++)
            if (strcmp(ids[j], x->id) == 0) i = j;
        assert_true(i >= 0 && i % 10 != 0);
        snap_seq = i % 2 == 0 ? 5 : i % 3 != 0 ? 1 + i % 4 : 0;
        assert_int_equal(x->snapshot_seq, snap_seq);
        if (snap_seq == 0) {
            assert_null(x->snapshot);
        } else {
            char want[48];
            snprintf(want, sizeof(want), "{\"exec\": %d,  \"at\": %lld}", i, (long long)snap_seq);
            assert_string_equal(x->snapshot, want);
        }
        assert_int_equal(x->last_seq, 6);
        assert_int_equal(u.count[k], (size_t)(6 - snap_seq));
        for (size_t j = 0; j < u.count[k]; j++) {
            const store_event_t *e = &u.events[u.first[k] + j];
            assert_string_equal(e->execution_id, x->id);
            assert_int_equal(e->seq, snap_seq + 1 + (int64_t)j);
        }
    }
    store_unfinished_free(&u);
    free(t);
}

/* store_load_execution without snapshots, and its failures, each leaving
 * the connection outside any transaction. */
void test_load_execution(void **state)
{
    fixture_t *f = *state;
    char id[37];
    tdec_t t;
    store_execution_t *x = (store_execution_t *)&x;
    store_event_t *ev = (store_event_t *)&ev;
    size_t n = 99;
    cbm_error_t err = {0};

    new_id(id);
    create_exec(f, id, 3, "running");
    tdec_init(&t, id, 3, 4, false, "waiting_approval");
    if (append1(f, &t, &err) != 0) fail_msg("append: %s", err.message);
    check_load(f, id, NULL, 0, 7, "waiting_approval");

    new_id(id);
    assert_code(store_load_execution(f->s, id, &x, &ev, &n, &err), CBM_ENOTFOUND);
    assert_code(err.code, CBM_ENOTFOUND);
    assert_null(x);
    assert_null(ev);
    assert_int_equal(n, 0);
    assert_idle(f);
    x = (store_execution_t *)&x;
    assert_code(store_load_execution(f->s, "nope", &x, &ev, &n, &err), CBM_EINVAL);
    assert_null(x);
    assert_idle(f);

    /* The connection is still good for everything else. */
    check_load(f, t.d.execution_id, NULL, 0, 7, "waiting_approval");
}

/* A history that does not match its projection (rows removed behind the
 * store's back) is reported, not handed to the engine to rebuild a wrong
 * state from. */
void test_load_inconsistent(void **state)
{
    fixture_t *f = *state;
    char id[37];
    tdec_t t;
    store_execution_t *x;
    store_event_t *ev;
    size_t n;
    store_unfinished_t u;
    cbm_error_t err = {0};

    new_id(id);
    tdec_init(&t, id, 0, 5, true, "running");
    t.d.snapshot = "{}";
    t.d.snapshot_seq = 2;
    if (append1(f, &t, &err) != 0) fail_msg("append: %s", err.message);

    sql_exec(f, "DELETE FROM cbm_events WHERE execution_id = '%s' AND seq = 4", id);
    assert_code(store_load_execution(f->s, id, &x, &ev, &n, &err), CBM_ESTORE);
    assert_non_null(strstr(err.message, id));
    assert_null(x);
    assert_null(ev);
    assert_int_equal(n, 0);
    assert_idle(f);
    assert_code(store_load_unfinished(f->s, &u, &err), CBM_ESTORE);
    assert_null(u.execs);
    assert_idle(f);

    /* A gap the snapshot covers does not matter: those events are not read. */
    sql_exec(f, "UPDATE cbm_snapshots SET seq = 4");
    check_load(f, id, "{}", 4, 5, "running");
    assert_code(store_load_unfinished(f->s, &u, &err), 0);
    assert_int_equal(u.nexecs, 1);
    assert_int_equal(u.count[0], 1);
    store_unfinished_free(&u);

    /* A snapshot beyond the history. */
    sql_exec(f, "UPDATE cbm_snapshots SET seq = 6");
    assert_code(store_load_execution(f->s, id, &x, &ev, &n, &err), CBM_ESTORE);
    assert_idle(f);
}

/* Resurrection's event query visits only the events after each snapshot:
 * a range of cbm_events' primary key per unfinished execution, never a
 * sequential scan of every event. */
void test_unfinished_plan(void **state)
{
    fixture_t *f = *state;
    char *plan;

    /* 500 unfinished executions of 200 events with snapshots at 190 for
     * most, among 5000 finished ones of 40 events. */
    sql_exec(f, "INSERT INTO cbm_executions (id, blueprint, version, status, inputs, last_seq)"
                " SELECT md5('u' || i)::uuid, 'bp', 'v1', 'running', '{}'::jsonb, 200 FROM generate_series(1, 500) i"
                " UNION ALL SELECT md5('f' || i)::uuid, 'bp', 'v1', 'completed', '{}', 40"
                " FROM generate_series(1, 5000) i");
    sql_exec(f, "INSERT INTO cbm_events (execution_id, seq, type, payload, recorded_at)"
                " SELECT md5('u' || i)::uuid, s, 'T', ('{\"seq\":' || s || '}')::json, 'epoch'::timestamptz"
                " FROM generate_series(1, 500) i, generate_series(1, 200) s"
                " UNION ALL SELECT md5('f' || i)::uuid, s, 'T', '{}', 'epoch'::timestamptz"
                " FROM generate_series(1, 5000) i, generate_series(1, 40) s");
    sql_exec(f, "INSERT INTO cbm_snapshots SELECT md5('u' || i)::uuid, 190, '{}'"
                " FROM generate_series(1, 450) i");
    sql_exec(f, "ANALYZE");
    plan = sql_explain(f, store_pg_sql_unfinished_events);
    if (strstr(plan, "cbm_events_pkey") == NULL || strstr(plan, "Seq Scan on cbm_events") != NULL ||
        strstr(plan, "seq > COALESCE(sn.seq") == NULL)
        fail_msg("resurrection plan:\n%s", plan);
    free(plan);
    {
        store_unfinished_t u;
        cbm_error_t err = {0};
        size_t want = 450 * 10 + 50 * 200;

        assert_code(store_load_unfinished(f->s, &u, &err), 0);
        assert_int_equal(u.nexecs, 500);
        assert_int_equal(u.nevents, want);
        store_unfinished_free(&u);
    }
}

/*
 * The append statement is prepared once per connection and keeps its generic
 * plan, built from the statistics of the moment. Built while the tables were
 * empty, it used to join the batch to cbm_executions and cbm_timers by hash
 * over sequential scans, and kept doing so once they held 100k rows (512
 * wake-ups took 40 to 130 ms to commit instead of about 10). The session
 * settings of store_open keep it an index plan whatever the statistics said.
 */
void test_append_plan(void **state)
{
    fixture_t *f = *state;
    char q[512], *plan = NULL;
    size_t len;
    PGresult *r;

    /* Built on empty tables: a few decisions that set and clear timers. */
    for (int i = 0; i < 6; i++) {
        char id[37];
        tdec_t t;
        store_timer_t tm = {{0}, "sleep", "sleep:z", 1700000000000000LL};
        char *clear[1] = {"sleep:z"};
        cbm_error_t err = {0};

        new_id(id);
        tdec_init(&t, id, 0, 2, true, "sleeping");
        t.d.timers_set = &tm;
        t.d.ntimers_set = 1;
        if (append1(f, &t, &err) != 0) fail_msg("create: %s", err.message);
        tdec_init(&t, id, 2, 1, false, "completed");
        t.d.timers_cleared = clear;
        t.d.ntimers_cleared = 1;
        if (append1(f, &t, &err) != 0) fail_msg("update: %s", err.message);
    }
    /* Then they grow, with no ANALYZE (an autoanalyze comes when it comes). */
    sql_exec(f, "INSERT INTO cbm_executions (id, blueprint, version, status, inputs, last_seq)"
                " SELECT md5('x' || i)::uuid, 'bp', 'v1', 'sleeping', '{}'::jsonb, 2"
                " FROM generate_series(1, 100000) i");
    sql_exec(f, "INSERT INTO cbm_timers (execution_id, key, kind, due_at)"
                " SELECT md5('x' || i)::uuid, 'sleep:z', 'sleep', now() FROM generate_series(1, 100000) i");
    sql_exec(f, "INSERT INTO cbm_tasks (queue, execution_id, step, attempt, payload)"
                " SELECT 'q', md5('x' || i)::uuid, 's', 1, '{}' FROM generate_series(1, 20000) i");
    /* The plan the store's own session runs (the statement is cbm_0). */
    len = (size_t)snprintf(q, sizeof(q), "EXPLAIN EXECUTE cbm_%d(", (int)STMT_APPEND);
    for (int i = 1; i <= APPEND_NCOLS; i++) len += (size_t)snprintf(q + len, sizeof(q) - len, "'{}', ");
    snprintf(q + len, sizeof(q) - len, "NULL)");
    r = PQexec(f->s->conn, q);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) fail_msg("%s: %s", q, PQerrorMessage(f->s->conn));
    for (int i = 0, at = 0; i < PQntuples(r); i++) {
        const char *line = PQgetvalue(r, i, 0);
        plan = realloc(plan, (size_t)at + strlen(line) + 2);
        assert_non_null(plan);
        at += sprintf(plan + at, "%s\n", line);
    }
    PQclear(r);
    if (strstr(plan, "Seq Scan on cbm_executions") != NULL || strstr(plan, "Seq Scan on cbm_timers") != NULL ||
        strstr(plan, "Seq Scan on cbm_tasks") != NULL || strstr(plan, "cbm_executions_pkey") == NULL)
        fail_msg("append plan after the tables grew:\n%s", plan);
    free(plan);
}

/* store_load_running loads the executions whose projection is 'running'
 * and nothing else: those that only wait stay in the store. */
void test_load_running(void **state)
{
    fixture_t *f = *state;
    static const char *const statuses[] = {"running", "sleeping", "awaiting_approval",
                                           "awaiting_signal", "awaiting_child", "completed",
                                           "running"};
    char ids[7][37];
    store_unfinished_t u;
    cbm_error_t err = {0};

    for (int i = 0; i < 7; i++) {
        new_id(ids[i]);
        create_exec(f, ids[i], 3, statuses[i]);
    }
    assert_code(store_load_running(f->s, &u, &err), 0);
    assert_int_equal(u.nexecs, 2);
    assert_int_equal(u.nevents, 6);
    for (size_t i = 0; i < u.nexecs; i++) {
        assert_string_equal(u.execs[i].status, "running");
        assert_true(strcmp(u.execs[i].id, ids[0]) == 0 || strcmp(u.execs[i].id, ids[6]) == 0);
        assert_int_equal(u.count[i], 3);
    }
    store_unfinished_free(&u);
}

/* store_orphans walks the unfinished executions a page at a time and
 * names the children whose parent has ended. */
void test_orphans(void **state)
{
    fixture_t *f = *state;
    char parents[2][37], kids[4][37], other[37], after[37] = "", last[37];
    store_orphan_t *o;
    size_t n, found = 0, pages = 0;
    cbm_error_t err = {0};

    new_id(parents[0]);
    new_id(parents[1]);
    create_exec(f, parents[0], 2, "cancelled");
    create_exec(f, parents[1], 2, "awaiting_child");
    for (int i = 0; i < 4; i++) {
        tdec_t t;
        char payload[160];

        new_id(kids[i]);
        tdec_init(&t, kids[i], 0, 2, true, i == 3 ? "completed" : "sleeping");
        t.ev[0].type = (char *)"ExecutionStarted";
        snprintf(payload, sizeof(payload),
                 "{\"blueprint\":\"bp\",\"inputs\":{},\"parent\":{\"execution_id\":\"%s\","
                 "\"step\":\"s\",\"attempt\":1}}", parents[i == 1]);
        t.ev[0].payload = payload;
        if (append1(f, &t, &err) != 0) fail_msg("child: %s", err.message);
    }
    new_id(other);
    create_exec(f, other, 2, "sleeping");
    /* kids 0 and 2: unfinished, parent cancelled; kid 1: parent running;
     * kid 3: finished. Pages of 2 over 5 unfinished executions. */
    for (;;) {
        assert_code(store_orphans(f->s, after[0] ? after : NULL, 2, &o, &n, last, &err), 0);
        pages++;
        for (size_t i = 0; i < n; i++, found++) {
            assert_true(strcmp(o[i].id, kids[0]) == 0 || strcmp(o[i].id, kids[2]) == 0);
            assert_string_equal(o[i].parent, parents[0]);
            assert_string_equal(o[i].parent_status, "cancelled");
        }
        free(o);
        if (last[0] == '\0') break;
        assert_true(after[0] == '\0' || strcmp(last, after) > 0);
        memcpy(after, last, sizeof(after));
    }
    assert_int_equal(found, 2);
    assert_int_equal(pages, 4); /* 2 + 2 + 1 candidates, then none */
}
