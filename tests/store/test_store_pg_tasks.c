/*
 * test_store_pg_tasks.c - the remote task queue of the store (store.h,
 * "Remote task queue"): rows written and deleted by decisions, claims
 * (oldest first, queues, capabilities, sticky, concurrent claims never
 * share a row, the plan reads the index whatever the backlog), heartbeats,
 * unclaims, expiry and release.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/store_pg_internal.h"
#include "store_test.h"

/* Execution id with one decision inserting a task per (step, queue). */
static void add_tasks(fixture_t *f, const char *id, int64_t expected, const char *const *steps,
                      const char *const *queues, const char *const *requires, size_t n)
{
    tdec_t t;
    store_task_t tk[8];
    cbm_error_t err = {0};

    assert_true(n <= 8);
    tdec_init(&t, id, expected, 1, expected == 0, "running");
    memset(tk, 0, sizeof(tk));
    for (size_t i = 0; i < n; i++) {
        tk[i].step = (char *)steps[i];
        tk[i].attempt = 1;
        tk[i].queue = (char *)queues[i];
        tk[i].payload = (char *)"{\"in\":1}";
        tk[i].requires = requires != NULL ? (char *)requires[i] : NULL;
        tk[i].handler = (char *)"h";
        tk[i].blueprint = (char *)"bp";
        tk[i].lease_ms = 0;
        tk[i].timeout_ms = 5000;
    }
    t.d.tasks = tk;
    t.d.ntasks = n;
    if (append1(f, &t, &err) != 0) fail_msg("append: %s", err.message);
}

static const char *Q1[] = {"q1"};

void test_tasks_claim_order(void **state)
{
    fixture_t *f = *state;
    char a[37], b[37], c[37];
    const char *steps[] = {"s"}, *qb[] = {"q2"};
    const char *const qs[] = {"q1", "q2"};
    store_claimed_t got;
    bool found;
    cbm_error_t err = {0};

    new_id(a), new_id(b), new_id(c);
    add_tasks(f, a, 0, steps, Q1, NULL, 1);
    add_tasks(f, b, 0, steps, qb, NULL, 1);
    add_tasks(f, c, 0, steps, Q1, NULL, 1);
    /* Oldest first across the worker's queues. */
    assert_code(store_task_claim(f->s, "w1", qs, 2, NULL, 1000, NULL, &got, &found, &err), 0);
    assert_true(found);
    assert_string_equal(got.execution_id, a);
    assert_string_equal(got.step, "s");
    assert_string_equal(got.handler, "h");
    assert_string_equal(got.queue, "q1");
    assert_string_equal(got.blueprint, "bp");
    assert_int_equal(got.attempt, 1);
    assert_int_equal(got.lease_ms, 1000); /* the default: the row has none */
    assert_int_equal(got.timeout_ms, 5000);
    assert_string_equal(sql_text(f, "SELECT lease_owner FROM cbm_tasks WHERE id = %lld",
                                 (long long)got.id),
                        "w1");
    store_claimed_clear(&got);
    assert_code(store_task_claim(f->s, "w1", qs, 2, NULL, 1000, NULL, &got, &found, &err), 0);
    assert_string_equal(got.execution_id, b);
    store_claimed_clear(&got);
    /* Only q2 asked: nothing left there. */
    assert_code(store_task_claim(f->s, "w1", qs + 1, 1, NULL, 1000, NULL, &got, &found, &err), 0);
    assert_false(found);
    assert_code(store_task_claim(f->s, "w2", qs, 1, NULL, 1000, NULL, &got, &found, &err), 0);
    assert_string_equal(got.execution_id, c);
    store_claimed_clear(&got);
    assert_code(store_task_claim(f->s, "w2", qs, 2, NULL, 1000, NULL, &got, &found, &err), 0);
    assert_false(found);
}

void test_tasks_capabilities_and_sticky(void **state)
{
    fixture_t *f = *state;
    char a[37], b[37];
    const char *steps[] = {"gpu", "cpu"}, *queues[] = {"q1", "q1"};
    const char *req[] = {"{\"gpu\":\"true\",\"model\":\"m1\"}", NULL};
    store_claimed_t got;
    store_task_t want = {0};
    bool found;
    cbm_error_t err = {0};

    new_id(a), new_id(b);
    add_tasks(f, a, 0, steps, queues, req, 2);
    /* A worker without the capabilities skips the gpu task. */
    assert_code(store_task_claim(f->s, "cpu", Q1, 1, "{\"gpu\":\"false\"}", 1000, NULL, &got,
                                 &found, &err), 0);
    assert_true(found);
    assert_string_equal(got.step, "cpu");
    store_claimed_clear(&got);
    assert_code(store_task_claim(f->s, "cpu", Q1, 1, "{\"model\":\"m1\"}", 1000, NULL, &got,
                                 &found, &err), 0);
    assert_false(found);
    /* Sticky: a named attempt, only if it is free and matches. */
    add_tasks(f, b, 0, steps + 1, queues, NULL, 1);
    memcpy(want.execution_id, b, 37);
    want.step = (char *)"cpu";
    want.attempt = 1;
    assert_code(store_task_claim(f->s, "any", Q1, 1,
                                 "{\"gpu\":\"true\",\"model\":\"m1\",\"extra\":\"x\"}", 1000, &want,
                                 &got, &found, &err), 0);
    assert_true(found);
    assert_string_equal(got.execution_id, b); /* not the older gpu task */
    store_claimed_clear(&got);
    assert_code(store_task_claim(f->s, "any", Q1, 1, NULL, 1000, &want, &got, &found, &err), 0);
    assert_false(found); /* leased already */
    assert_code(store_task_claim(f->s, "gpu", Q1, 1,
                                 "{\"gpu\":\"true\",\"model\":\"m1\",\"extra\":\"x\"}", 1000, NULL,
                                 &got, &found, &err), 0);
    assert_true(found);
    assert_string_equal(got.step, "gpu");
    store_claimed_clear(&got);
}

void test_tasks_heartbeat_unclaim_expiry(void **state)
{
    fixture_t *f = *state;
    char a[37];
    const char *steps[] = {"x", "y"}, *queues[] = {"q1", "q1"};
    store_claimed_t t1, t2;
    store_task_t *exp = NULL;
    int64_t ids[3], *held = NULL;
    size_t nheld = 0, nexp = 0;
    bool found;
    cbm_error_t err = {0};

    new_id(a);
    add_tasks(f, a, 0, steps, queues, NULL, 2);
    assert_code(store_task_claim(f->s, "w1", Q1, 1, NULL, 60000, NULL, &t1, &found, &err), 0);
    assert_code(store_task_claim(f->s, "w2", Q1, 1, NULL, 60000, NULL, &t2, &found, &err), 0);
    /* w1 holds t1 only; an id that is not a task is simply not held. */
    ids[0] = t1.id, ids[1] = t2.id, ids[2] = 999999;
    assert_code(store_task_heartbeat(f->s, "w1", ids, 3, 60000, &held, &nheld, &err), 0);
    assert_int_equal(nheld, 1);
    assert_int_equal(held[0], t1.id);
    free(held);
    /* Unclaim gives t2 back unleased (by its holder only). */
    assert_code(store_task_unclaim(f->s, t2.id, "w1", &err), 0);
    assert_string_equal(sql_text(f, "SELECT lease_owner FROM cbm_tasks WHERE id = %lld",
                                 (long long)t2.id),
                        "w2");
    assert_code(store_task_unclaim(f->s, t2.id, "w2", &err), 0);
    assert_string_equal(sql_text(f, "SELECT coalesce(lease_owner, 'none') FROM cbm_tasks WHERE id = %lld",
                                 (long long)t2.id),
                        "none");
    /* Nothing has expired yet; make t1's lease run out. */
    assert_code(store_task_expired(f->s, NULL, 10, &exp, &nexp, &err), 0);
    assert_int_equal(nexp, 0);
    sql_exec(f, "UPDATE cbm_tasks SET lease_expires_at = now() - interval '1 second' WHERE id = %lld",
             (long long)t1.id);
    assert_code(store_task_expired(f->s, NULL, 10, &exp, &nexp, &err), 0);
    assert_int_equal(nexp, 1);
    assert_string_equal(exp[0].execution_id, a);
    assert_string_equal(exp[0].step, t1.step);
    assert_int_equal(exp[0].attempt, 1);
    store_tasks_free(exp, nexp);
    /* Marked while the engine fails it: not returned again at once, and its
     * old holder no longer holds it. */
    assert_code(store_task_expired(f->s, NULL, 10, &exp, &nexp, &err), 0);
    assert_int_equal(nexp, 0);
    assert_code(store_task_heartbeat(f->s, "w1", ids, 1, 60000, &held, &nheld, &err), 0);
    assert_int_equal(nheld, 0);
    /* Release: every task a worker leases. */
    store_claimed_clear(&t2);
    assert_code(store_task_claim(f->s, "w3", Q1, 1, NULL, 60000, NULL, &t2, &found, &err), 0);
    assert_true(found);
    assert_code(store_task_expired(f->s, "w3", 0, &exp, &nexp, &err), 0);
    assert_int_equal(nexp, 1);
    assert_string_equal(exp[0].step, t2.step);
    store_tasks_free(exp, nexp);
    store_claimed_clear(&t1);
    store_claimed_clear(&t2);
}

void test_tasks_done_with_decision(void **state)
{
    fixture_t *f = *state;
    char a[37];
    const char *steps[] = {"x"};
    store_task_ref_t done = {(char *)"x", 1};
    store_task_t next = {0};
    tdec_t t;
    cbm_error_t err = {0};

    new_id(a);
    add_tasks(f, a, 0, steps, Q1, NULL, 1);
    sql_exec(f, "UPDATE cbm_tasks SET lease_owner = 'w' WHERE execution_id = '%s'", a);
    /* The decision that ends attempt 1 deletes its row (leased or not) and
     * the one of attempt 2 comes with it, atomically. */
    tdec_init(&t, a, 1, 1, false, "running");
    t.d.tasks_done = &done;
    t.d.ntasks_done = 1;
    next.step = (char *)"x";
    next.attempt = 2;
    next.queue = (char *)"q1";
    next.payload = (char *)"{}";
    t.d.tasks = &next;
    t.d.ntasks = 1;
    if (append1(f, &t, &err) != 0) fail_msg("append: %s", err.message);
    assert_string_equal(sql_text(f, "SELECT string_agg(step || attempt || ':' || handler || ':' ||"
                                    " requires::text || ':' || coalesce(lease_owner, '-'), ',')"
                                    " FROM cbm_tasks WHERE execution_id = '%s'", a),
                        "x2:x:{}:-");
}

/* Concurrent claims on their own connections never get the same row. */
typedef struct claimer {
    const char *url;
    char worker[16];
    int got;
    int64_t ids[64];
    int rc;
} claimer_t;

static void *claim_all(void *arg)
{
    claimer_t *c = arg;
    store_t *s = NULL;
    cbm_error_t err = {0};
    if ((c->rc = store_open(c->url, &s, &err)) != 0) return NULL;
    for (;;) {
        store_claimed_t got;
        bool found;
        if ((c->rc = store_task_claim(s, c->worker, Q1, 1, NULL, 60000, NULL, &got, &found,
                                      &err)) != 0 || !found)
            break;
        if (c->got < 64) c->ids[c->got] = got.id;
        c->got++;
        store_claimed_clear(&got);
    }
    store_close(s);
    return NULL;
}

void test_tasks_concurrent_claims(void **state)
{
    fixture_t *f = *state;
    claimer_t cl[4];
    pthread_t th[4];
    int total = 0;
    const char *steps[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    const char *queues[] = {"q1", "q1", "q1", "q1", "q1", "q1", "q1", "q1"};

    for (int i = 0; i < 6; i++) {
        char id[37];
        new_id(id);
        add_tasks(f, id, 0, steps, queues, NULL, 8);
    }
    for (int i = 0; i < 4; i++) {
        memset(&cl[i], 0, sizeof(cl[i]));
        cl[i].url = f->url;
        snprintf(cl[i].worker, sizeof(cl[i].worker), "c%d", i);
        pthread_create(&th[i], NULL, claim_all, &cl[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(cl[i].rc, 0);
        total += cl[i].got;
    }
    /* Each of the 48 tasks claimed exactly once (a claim that finds every
     * candidate held may stop early: the rest are then still unleased). */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_tasks WHERE lease_owner IS NOT NULL"),
                     total);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < cl[i].got && k < 64; k++)
            assert_string_equal(sql_text(f, "SELECT lease_owner FROM cbm_tasks WHERE id = %lld",
                                         (long long)cl[i].ids[k]),
                                cl[i].worker);
    assert_true(total >= 40);
}

/* The claim reads the ready index, never the whole backlog, under custom
 * and generic plans, for one queue or several; and locks what it found
 * through the primary key. */
void test_tasks_claim_plan(void **state)
{
    fixture_t *f = *state;
    static const char *const modes[] = {"force_custom_plan", "force_generic_plan"};
    static const char *const args[] = {"'w', '{q1}', '{}', 1000",
                                       "'w', '{q0,q1,q2}', '{\"gpu\":\"true\"}', 1000"};
    char *prep, *plan;

    /* Prepared on an empty table under the store's session settings, as the
     * server's claim connections are: the generic plan must still lock each
     * candidate through the primary key, not by walking cbm_tasks_ready with
     * id (its third column) as the only condition. */
    sql_exec(f, "SET enable_seqscan = off; SET enable_bitmapscan = off;"
                " SET plan_cache_mode = force_generic_plan; SET jit = off");
    assert_true(asprintf(&prep, "PREPARE claim0(text, text[], jsonb, int8) AS %s",
                         store_pg_sql_task_claim) > 0);
    sql_exec(f, "%s", prep);
    free(prep);
    plan = sql_explain(f, "EXECUTE claim0('w', '{q1}', '{}', 1000)");
    if (strstr(plan, "Index Scan using cbm_tasks_pkey on cbm_tasks c") == NULL)
        fail_msg("the claim prepared on an empty table locks its candidates without the"
                 " primary key:\n%s", plan);
    free(plan);
    sql_exec(f, "RESET ALL");

    sql_exec(f, "INSERT INTO cbm_tasks (queue, execution_id, step, attempt, payload)"
                " SELECT 'q' || (g %% 3), gen_random_uuid(), 's', 1, '{}'"
                " FROM generate_series(1, 20000) g");
    sql_exec(f, "ANALYZE cbm_tasks");
    assert_true(asprintf(&prep, "PREPARE claim(text, text[], jsonb, int8) AS %s",
                         store_pg_sql_task_claim) > 0);
    sql_exec(f, "%s", prep);
    free(prep);
    for (size_t m = 0; m < 2; m++) {
        sql_exec(f, "SET plan_cache_mode = %s", modes[m]);
        for (size_t a = 0; a < 2; a++) {
            char q[160], *plan;
            snprintf(q, sizeof(q), "EXECUTE claim(%s)", args[a]);
            plan = sql_explain(f, q);
            if (strstr(plan, "cbm_tasks_ready") == NULL || strstr(plan, "Seq Scan") != NULL)
                fail_msg("%s, %s: the claim does not read cbm_tasks_ready:\n%s", modes[m], q,
                         plan);
            free(plan);
        }
    }
}
