/*
 * test_store_pg_concurrency.c - the store under more than one connection:
 * migrations racing, two engines racing on the same executions, the
 * connection dropped under the store, and the group-commit throughput
 * (CBM_STORE_BENCH=1; printed, not asserted). Registered in test_store_pg.c.
 */
#include "tests/store/store_test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/harness/testdb.h"

typedef struct migrator {
    const char *url;
    pthread_barrier_t *barrier;
    int rc;
    char message[512];
} migrator_t;

static void *migrate_thread(void *arg)
{
    migrator_t *m = arg;
    cbm_error_t err = {0};
    store_t *s = NULL;

    m->rc = store_open(m->url, &s, &err);
    pthread_barrier_wait(m->barrier);
    if (m->rc == 0) m->rc = store_migrate(s, &err);
    snprintf(m->message, sizeof(m->message), "%s", err.message);
    store_close(s);
    return NULL;
}

void test_migrate_concurrent(void **state)
{
    enum { NT = 4 };
    char url[512];
    pthread_barrier_t barrier;
    pthread_t th[NT];
    migrator_t m[NT];
    PGconn *c;
    PGresult *r;

    (void)state;
    for (int round = 0; round < 3; round++) {
        assert_int_equal(testdb_create(url, sizeof(url)), 0);
        pthread_barrier_init(&barrier, NULL, NT);
        for (int i = 0; i < NT; i++) {
            m[i] = (migrator_t){.url = url, .barrier = &barrier};
            assert_int_equal(pthread_create(&th[i], NULL, migrate_thread, &m[i]), 0);
        }
        for (int i = 0; i < NT; i++) {
            pthread_join(th[i], NULL);
            if (m[i].rc != 0) fail_msg("migrator %d: %d %s", i, m[i].rc, m[i].message);
        }
        pthread_barrier_destroy(&barrier);
        c = PQconnectdb(url);
        r = PQexec(c, "SELECT count(*), (SELECT count(*) FROM pg_tables WHERE tablename LIKE 'cbm_%') FROM cbm_schema_version");
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        assert_string_equal(PQgetvalue(r, 0, 0), "10");
        assert_string_equal(PQgetvalue(r, 0, 1), "16");
        PQclear(r);
        PQfinish(c);
        testdb_drop(url);
    }
}

/* Two engines (threads, each with its own handle) race on the same
 * executions with batches. Whatever interleaving the server picks, every
 * decision must end committed or CBM_ECONFLICT, and each history must stay
 * gap-free with its projection at its last seq. */
enum { RACE_EXECS = 16, RACE_ROUNDS = 300 };

/* The tdec_t holding decision d (d is its first member). */
#define container_of_tdec(d) ((tdec_t *)(void *)(d))

typedef struct racer {
    const char *url;
    char (*ids)[37];
    pthread_barrier_t *barrier;
    unsigned seed;
    size_t sent, committed, conflicts;
    int rc;
    char message[512];
} racer_t;

static void *race_thread(void *arg)
{
    racer_t *r = arg;
    store_t *s = NULL;
    cbm_error_t err = {0};
    int64_t seen[RACE_EXECS];
    tdec_t t[RACE_EXECS];
    store_decision_t *ds[RACE_EXECS];

    r->rc = store_open(r->url, &s, &err);
    for (int i = 0; i < RACE_EXECS && r->rc == 0; i++) r->rc = store_last_seq(s, r->ids[i], &seen[i], &err);
    pthread_barrier_wait(r->barrier);
    for (int round = 0; round < RACE_ROUNDS && r->rc == 0; round++) {
        size_t n = 0;
        int rc;
        /* a random half of the executions, in a random rotation */
        int start = rand_r(&r->seed) % RACE_EXECS;
        for (int k = 0; k < RACE_EXECS; k++) {
            int i = (start + k) % RACE_EXECS;
            if (rand_r(&r->seed) % 2 == 0) continue;
            tdec_init(&t[i], r->ids[i], seen[i], 1, false, "running");
            ds[n++] = &t[i].d;
        }
        r->sent += n;
        rc = store_append(s, ds, n, &err);
        if (rc != 0 && rc != CBM_ECONFLICT) {
            r->rc = rc;
            break;
        }
        for (size_t k = 0; k < n && r->rc == 0; k++) {
            int i = (int)(container_of_tdec(ds[k]) - t);
            if (ds[k]->result_code == 0) {
                seen[i]++;
                r->committed++;
            } else if (ds[k]->result_code == CBM_ECONFLICT) {
                r->conflicts++;
                r->rc = store_last_seq(s, r->ids[i], &seen[i], &err);
            } else {
                r->rc = ds[k]->result_code;
            }
        }
    }
    snprintf(r->message, sizeof(r->message), "%s", err.message);
    store_close(s);
    return NULL;
}

void test_conflict_race(void **state)
{
    fixture_t *f = *state;
    char ids[RACE_EXECS][37];
    pthread_barrier_t barrier;
    pthread_t th[2];
    racer_t r[2];

    for (int i = 0; i < RACE_EXECS; i++) {
        new_id(ids[i]);
        create_exec(f, ids[i], 1, "running");
    }
    pthread_barrier_init(&barrier, NULL, 2);
    for (int i = 0; i < 2; i++) {
        r[i] = (racer_t){.url = f->url, .ids = ids, .barrier = &barrier, .seed = 1234u + (unsigned)i};
        assert_int_equal(pthread_create(&th[i], NULL, race_thread, &r[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        if (r[i].rc != 0) fail_msg("racer %d: %s: %s", i, cbm_err_name(r[i].rc), r[i].message);
    }
    pthread_barrier_destroy(&barrier);
    printf("# race: committed %zu + %zu, conflicts %zu + %zu\n", r[0].committed, r[1].committed,
           r[0].conflicts, r[1].conflicts);
    /* Every committed decision is one event; no gaps; projections agree. */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_events"),
                     RACE_EXECS + r[0].committed + r[1].committed);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM (SELECT execution_id FROM cbm_events GROUP BY 1 "
                                "HAVING max(seq) <> count(*) OR min(seq) <> 1) g"), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_executions x WHERE last_seq <> "
                                "(SELECT max(seq) FROM cbm_events v WHERE v.execution_id = x.id)"), 0);
    assert_int_equal(r[0].committed + r[1].committed + r[0].conflicts + r[1].conflicts,
                     r[0].sent + r[1].sent);
    /* Batches lock in execution id order: the server never had to break a
     * deadlock (store_append would have retried it, hiding it). The racers'
     * backends report their statistics as they exit. */
    nanosleep(&(struct timespec){.tv_nsec = 300 * 1000 * 1000}, NULL);
    assert_int_equal(sql_int(f, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"), 0);
}

static void terminate_others(fixture_t *f)
{
    assert_int_equal(sql_int(f, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                "WHERE datname = current_database() AND pid <> pg_backend_pid()"), 1);
    /* pg_terminate_backend only signals; wait until the backend is gone. */
    for (int i = 0; i < 500; i++) {
        if (sql_int(f, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid()") == 0)
            return;
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    }
    fail_msg("backend did not exit");
}

void test_connection_loss(void **state)
{
    fixture_t *f = *state;
    char id[37];
    tdec_t t;
    cbm_error_t err = {0};
    int64_t last;

    new_id(id);
    create_exec(f, id, 1, "running");
    assert_true(store_ok(f->s));

    terminate_others(f);
    tdec_init(&t, id, 1, 1, false, "running");
    assert_code(append1(f, &t, &err), CBM_EUNAVAIL);
    assert_code(err.code, CBM_EUNAVAIL);
    assert_code(t.d.result_code, CBM_EUNAVAIL);
    assert_false(store_ok(f->s));
    assert_code(store_last_seq(f->s, id, &last, &err), CBM_EUNAVAIL);

    assert_code(store_reconnect(f->s, &err), 0);
    assert_true(store_ok(f->s));
    assert_code(store_last_seq(f->s, id, &last, &err), 0);
    assert_int_equal(last, 1); /* the lost batch did not commit */
    assert_code(append1(f, &t, &err), 0);
    assert_code(store_last_seq(f->s, id, &last, &err), 0);
    assert_int_equal(last, 2);

    /* Lost while idle, then a read fails, then it recovers. */
    terminate_others(f);
    assert_code(store_last_seq(f->s, id, &last, &err), CBM_EUNAVAIL);
    assert_code(store_reconnect(f->s, &err), 0);
    assert_code(store_last_seq(f->s, id, &last, &err), 0);
    assert_int_equal(last, 2);
}

/* A writer commits to two executions as fast as it can, with snapshots now
 * and then, while this thread loads them. Each load must see one moment:
 * a projection, a snapshot and events that agree (the store checks that
 * the events run exactly from snapshot_seq + 1 to last_seq, and fails with
 * CBM_ESTORE otherwise; read in READ COMMITTED, the history read after the
 * projection picks up the writer's newer events and this test fails). */
typedef struct load_writer {
    const char *url;
    const char *ids[2];
    volatile int done; /* set by the writer, read after join or polled */
    int rc;
    size_t rounds;
    char message[512];
} load_writer_t;

static void *load_writer_thread(void *arg)
{
    load_writer_t *w = arg;
    store_t *s = NULL;
    cbm_error_t err = {0};
    int64_t last[2] = {1, 1};
    char snaps[2][64];
    tdec_t t[2];
    store_decision_t *ds[2] = {&t[0].d, &t[1].d};

    w->rc = store_open(w->url, &s, &err);
    for (size_t round = 0; round < 400 && w->rc == 0; round++) {
        for (int i = 0; i < 2; i++) {
            size_t nev = 1 + (round + (size_t)i) % 3;
            tdec_init(&t[i], w->ids[i], last[i], nev, false, round == 399 ? "completed" : "running");
            if ((round + (size_t)i) % 4 == 0) {
                int64_t at = last[i] + (int64_t)nev - (int64_t)(round % 2);
                snprintf(snaps[i], sizeof(snaps[i]), "{\"at\": %lld}", (long long)at);
                t[i].d.snapshot = snaps[i];
                t[i].d.snapshot_seq = at;
            }
            last[i] += (int64_t)nev;
        }
        w->rc = store_append(s, ds, 2, &err);
        w->rounds++;
    }
    snprintf(w->message, sizeof(w->message), "%s", err.message);
    store_close(s);
    __atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

void test_load_consistent(void **state)
{
    fixture_t *f = *state;
    char ids[2][37];
    load_writer_t w = {.url = f->url, .ids = {ids[0], ids[1]}};
    pthread_t th;
    size_t loads = 0, unfinished = 0, snapshots_seen = 0;
    cbm_error_t err = {0};

    for (int i = 0; i < 2; i++) {
        new_id(ids[i]);
        create_exec(f, ids[i], 1, "running");
    }
    assert_int_equal(pthread_create(&th, NULL, load_writer_thread, &w), 0);
    while (!__atomic_load_n(&w.done, __ATOMIC_ACQUIRE)) {
        store_execution_t *x;
        store_event_t *ev;
        size_t n;
        int rc = store_load_execution(f->s, ids[loads % 2], &x, &ev, &n, &err);

        if (rc != 0) {
            __atomic_store_n(&w.done, 1, __ATOMIC_RELEASE); /* cannot stop it; just report */
            pthread_join(th, NULL);
            fail_msg("load %zu: %s", loads, err.message);
        }
        if (x->snapshot != NULL) {
            char want[64];
            snprintf(want, sizeof(want), "{\"at\": %lld}", (long long)x->snapshot_seq);
            assert_string_equal(x->snapshot, want);
            snapshots_seen++;
        }
        assert_int_equal(n, (size_t)(x->last_seq - x->snapshot_seq));
        store_events_free(ev, n);
        store_executions_free(x, 1);
        loads++;
        if (loads % 8 == 0) {
            store_unfinished_t u;
            if (store_load_unfinished(f->s, &u, &err) != 0) {
                pthread_join(th, NULL);
                fail_msg("load_unfinished: %s", err.message);
            }
            store_unfinished_free(&u);
            unfinished++;
        }
    }
    pthread_join(th, NULL);
    if (w.rc != 0) fail_msg("writer: %s: %s", cbm_err_name(w.rc), w.message);
    printf("# load race: %zu writer rounds, %zu loads (%zu with a snapshot), %zu resurrections\n",
           w.rounds, loads, snapshots_seen, unfinished);
    assert_true(loads > 0);
}

/* ----------------------------------------------------------------- bench */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Group commit throughput: batches of B decisions (3 events, a timer and a
 * projection update each) on executions that already exist. */
void test_bench_group_commit(void **state)
{
    fixture_t *f = *state;
    static const size_t sizes[] = {1, 10, 100, 500};
    enum { EXECS = 500 };
    tdec_t *t = calloc(EXECS, sizeof(*t));
    store_decision_t **ds = calloc(EXECS, sizeof(*ds));
    char (*ids)[37] = calloc(EXECS, 37);
    int64_t *last = calloc(EXECS, sizeof(*last));
    store_timer_t timer = {.kind = (char *)"sleep", .key = (char *)"k", .due_at_us = 1};
    cbm_error_t err = {0};

    if (getenv("CBM_STORE_BENCH") == NULL) {
        free(t); free(ds); free(ids); free(last);
        skip();
    }
    if (getenv("CBM_STORE_BENCH_SQL") != NULL) /* e.g. a storage parameter to compare */
        PQclear(PQexec(f->pg, getenv("CBM_STORE_BENCH_SQL")));
    for (size_t i = 0; i < EXECS; i++) {
        new_id(ids[i]);
        last[i] = create_exec(f, ids[i], 1, "running");
    }
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        size_t b = sizes[si], batches = 0, decisions = 0;
        double t0 = now_s(), el;

        while ((el = now_s() - t0) < 2.0) {
            for (size_t i = 0; i < b; i++) {
                size_t k = (batches * b + i) % EXECS;
                tdec_init(&t[i], ids[k], last[k], 3, false, "running");
                t[i].d.timers_set = &timer;
                t[i].d.ntimers_set = 1;
                ds[i] = &t[i].d;
                last[k] += 3;
            }
            if (store_append(f->s, ds, b, &err) != 0) fail_msg("append: %s", err.message);
            batches++;
            decisions += b;
        }
        printf("# bench: batch %4zu: %7.0f decisions/s, %7.0f event rows/s, %6.0f commits/s, %.2f ms/batch\n",
               b, (double)decisions / el, 3.0 * (double)decisions / el, (double)batches / el,
               1000.0 * el / (double)batches);
    }
    free(t); free(ds); free(ids); free(last);
}
