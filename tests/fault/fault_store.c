/*
 * fault_store.c - the store under injected failures (docs/testing.md),
 * against the private PostgreSQL of tests/harness/with-postgres.sh.
 *
 * One scenario uses every call of store.h the engine and the worker service
 * make: open, register and read a blueprint, group commits that start two
 * executions (an idempotency key, timers, remote tasks) and carry them on
 * (timers cleared and set, tasks ended and added, a snapshot, a stale
 * decision beside a good one, the ends), claims (by queue and
 * capabilities, sticky), heartbeats, an unclaim, a release, every read and
 * load. It runs once with no failure, then again with its 1st, 2nd, 3rd...
 * allocation failing (test_alloc), or its 1st, 2nd, 3rd... statement
 * failing in each way of faultpq.h (test_stmt_*), until a run meets no
 * failure. After each run:
 *
 *   - the call that met the failure returned an error (CBM_ENOMEM for an
 *     allocation; CBM_ESTORE or CBM_EUNAVAIL for a statement), never
 *     success; the only failure a call may absorb is that of the COMMIT or
 *     ROLLBACK that ends a read-only transaction, which it ignores by
 *     design (the next call then finds the connection lost, if it was);
 *   - the database is consistent: each execution's last_seq is the number
 *     and the highest seq of its events, no row belongs to an execution
 *     that does not exist, and each execution's rows are exactly those of
 *     the first k of its decisions for some k (a decision is all or
 *     nothing, and nothing of a decision that was not written is there);
 *   - the same store handle (reconnected if the connection was lost) runs
 *     the whole scenario again, with no failure, to the expected end;
 *   - nothing the run allocated is still allocated.
 */
#include <libpq-fe.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cbm_internal.h"
#include "store/store.h"
#include "tests/harness/faultalloc.h"
#include "tests/harness/faultpq.h"
#include "tests/harness/testdb.h"
#include "tests/store/store_test.h"

/* ------------------------------------------------------------- the plan */

typedef struct task_ref {
    const char *step;
    int attempt;
} task_ref_t;

/* One decision of the scenario, for execution A or B. */
typedef struct plan_dec {
    int exec;                 /* 0: A, 1: B */
    int nev;
    bool is_new;
    bool stale;               /* expected_seq two behind: rejected */
    const char *status;
    const char *set[3];       /* timer keys set */
    const char *clear[3];     /* timer keys cleared */
    task_ref_t add[2];        /* tasks inserted */
    task_ref_t done[2];       /* tasks ended */
    int snapshot_seq;         /* 0: none */
} plan_dec_t;

enum { A1, B1, A2, B2, A3, B3, A4, NDEC };

static const plan_dec_t plan[NDEC] = {
    [A1] = {0, 3, true, false, "running", {"sleep:a", "retry:b"}, {0}, {{"ta", 1}}, {{0}}, 0},
    [B1] = {1, 2, true, false, "running", {0}, {0}, {{"tb", 1}}, {{0}}, 0},
    [A2] = {0, 2, false, false, "sleeping", {"sleep:c"}, {"sleep:a"}, {{0}}, {{"ta", 1}}, 4},
    [B2] = {1, 1, false, false, "running", {0}, {0}, {{"tb", 2}}, {{"tb", 1}}, 0},
    [A3] = {0, 1, false, true, "running", {"sleep:x"}, {0}, {{"tx", 1}}, {{0}}, 0},
    [B3] = {1, 1, false, false, "completed", {0}, {0}, {{0}}, {{"tb", 2}}, 0},
    [A4] = {0, 1, false, false, "completed", {0}, {"sleep:c", "retry:b"}, {{0}}, {{0}}, 0},
};

/* What an execution's rows are after its first k decisions. */
typedef struct checkpoint {
    int64_t last_seq;
    char status[16];
    char timers[128];         /* keys, sorted, comma-separated */
    char tasks[128];          /* step/attempt, sorted, comma-separated */
    int64_t snapshot_seq;
} checkpoint_t;

typedef struct model {
    checkpoint_t cp[2][8];    /* per execution; cp[x][0] is "nothing" */
    size_t ncp[2];
} model_t;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted, comma-separated. */
static void join(char *out, size_t size, char **items, size_t n)
{
    size_t len = 0;

    qsort(items, n, sizeof(*items), cmp_str);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, size - len, "%s%s", i ? "," : "", items[i]);
}

static void remove_item(char **items, size_t *n, const char *what)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(items[i], what) == 0) {
            free(items[i]);
            items[i] = items[--*n];
            return;
        }
}

static void build_model(model_t *m)
{
    for (int x = 0; x < 2; x++) {
        char *timers[8], *tasks[8];
        size_t nt = 0, nk = 0;
        int64_t seq = 0, snap = 0;

        m->ncp[x] = 1;
        memset(&m->cp[x][0], 0, sizeof(m->cp[x][0]));
        for (int d = 0; d < NDEC; d++) {
            const plan_dec_t *p = &plan[d];
            checkpoint_t *c;
            if (p->exec != x || p->stale) continue;
            seq += p->nev;
            for (size_t i = 0; i < 3 && p->clear[i]; i++) remove_item(timers, &nt, p->clear[i]);
            for (size_t i = 0; i < 3 && p->set[i]; i++) {
                remove_item(timers, &nt, p->set[i]);
                timers[nt++] = strdup(p->set[i]);
            }
            for (size_t i = 0; i < 2 && p->done[i].step; i++) {
                char ref[32];
                snprintf(ref, sizeof(ref), "%s/%d", p->done[i].step, p->done[i].attempt);
                remove_item(tasks, &nk, ref);
            }
            for (size_t i = 0; i < 2 && p->add[i].step; i++) {
                char ref[32];
                snprintf(ref, sizeof(ref), "%s/%d", p->add[i].step, p->add[i].attempt);
                tasks[nk++] = strdup(ref);
            }
            if (p->snapshot_seq != 0) snap = p->snapshot_seq;
            c = &m->cp[x][m->ncp[x]++];
            c->last_seq = seq;
            snprintf(c->status, sizeof(c->status), "%s", p->status);
            join(c->timers, sizeof(c->timers), timers, nt);
            join(c->tasks, sizeof(c->tasks), tasks, nk);
            c->snapshot_seq = snap;
        }
        for (size_t i = 0; i < nt; i++) free(timers[i]);
        for (size_t i = 0; i < nk; i++) free(tasks[i]);
    }
}

/* --------------------------------------------------------- the scenario */

/* A decision of the plan with its own storage. */
typedef struct pdec {
    tdec_t t;
    store_timer_t timers[3];
    char *cleared[3];
    store_task_t tasks[2];
    store_task_ref_t done[2];
} pdec_t;

typedef struct srun {
    int k;                    /* run number: every name of the run has it */
    char bp[32], queue[32], worker[32], key[32];
    char id[2][37];           /* executions A and B */
    int64_t seq[2];           /* decisions built so far */
    int step;                 /* calls made */
    const char *step_name;    /* the last one */
    int fault_step;           /* the call in which the fault happened, 0: none */
    bool alloc;               /* allocation faults (else statement faults) */
} srun_t;

static void pdec_init(pdec_t *p, srun_t *r, int d)
{
    const plan_dec_t *pl = &plan[d];
    const char *id = r->id[pl->exec];
    int64_t expected = pl->stale ? r->seq[pl->exec] - 2 : r->seq[pl->exec];
    size_t n;

    memset(p, 0, sizeof(*p));
    tdec_init(&p->t, id, expected, (size_t)pl->nev, pl->is_new, pl->status);
    p->t.d.blueprint = r->bp;
    p->t.d.idempotency_key = pl->is_new && pl->exec == 0 ? r->key : NULL;
    for (n = 0; n < 3 && pl->set[n]; n++) {
        p->timers[n].kind = (char *)"sleep";
        p->timers[n].key = (char *)pl->set[n];
        p->timers[n].due_at_us = 1700000000000000 + 1000 * (int64_t)(d * 3 + (int)n);
    }
    p->t.d.timers_set = p->timers;
    p->t.d.ntimers_set = n;
    for (n = 0; n < 3 && pl->clear[n]; n++) p->cleared[n] = (char *)pl->clear[n];
    p->t.d.timers_cleared = p->cleared;
    p->t.d.ntimers_cleared = n;
    for (n = 0; n < 2 && pl->add[n].step; n++) {
        store_task_t *t = &p->tasks[n];
        t->step = (char *)pl->add[n].step;
        t->attempt = pl->add[n].attempt;
        t->queue = r->queue;
        t->payload = (char *)"{\"in\":[1,\"two\"]}";
        t->handler = (char *)"h";
        t->blueprint = r->bp;
        t->requires = strcmp(t->step, "ta") == 0 ? (char *)"{\"gpu\":\"x\"}" : NULL;
        t->timeout_ms = 5000;
    }
    p->t.d.tasks = p->tasks;
    p->t.d.ntasks = n;
    for (n = 0; n < 2 && pl->done[n].step; n++) {
        p->done[n].step = (char *)pl->done[n].step;
        p->done[n].attempt = pl->done[n].attempt;
    }
    p->t.d.tasks_done = p->done;
    p->t.d.ntasks_done = n;
    if (pl->snapshot_seq != 0) {
        p->t.d.snapshot = "{\"snap\":true}";
        p->t.d.snapshot_seq = pl->snapshot_seq;
    }
    if (!pl->stale) r->seq[pl->exec] += pl->nev;
}

static bool fired(const srun_t *r)
{
    return r->alloc ? fa_fired() : fp_fired();
}

/* Run one call of the scenario: a code other than `expect` ends it. */
#define CALL(name, expr, expect)                                       \
    do {                                                               \
        r->step++;                                                     \
        r->step_name = (name);                                         \
        FA(rc = (expr));                                               \
        if (r->fault_step == 0 && fired(r)) r->fault_step = r->step;   \
        if (rc == (expect)) {                                          \
            rc = 0;                                                    \
        } else {                                                       \
            if (rc == 0) rc = fa_wrong("%s: succeeded, expected %s", (name), cbm_err_name(expect)); \
            goto out;                                                  \
        }                                                              \
    } while (0)

#define WANT(cond, ...)                                                \
    do {                                                               \
        if (!(cond)) {                                                 \
            rc = fa_wrong(__VA_ARGS__);                                \
            goto out;                                                  \
        }                                                              \
    } while (0)

static int append(store_t *s, srun_t *r, const int *which, size_t n, cbm_error_t *err)
{
    pdec_t p[2];
    store_decision_t *ds[2];

    for (size_t i = 0; i < n; i++) {
        pdec_init(&p[i], r, which[i]);
        ds[i] = &p[i].t.d;
    }
    return store_append(s, ds, n, err);
}

static void run_names(srun_t *r, int k, bool alloc)
{
    memset(r, 0, sizeof(*r));
    r->k = k;
    r->alloc = alloc;
    snprintf(r->bp, sizeof(r->bp), "bp%d", k);
    snprintf(r->queue, sizeof(r->queue), "q%d", k);
    snprintf(r->worker, sizeof(r->worker), "w%d", k);
    snprintf(r->key, sizeof(r->key), "key%d", k);
    new_id(r->id[0]);
    new_id(r->id[1]);
}

/* Leases: both tasks, a heartbeat, one given back and claimed by name; the
 * decisions that end and add attempts; a release and an expiry scan. */
static int leases(store_t *s, srun_t *r)
{
    const char *queues[1] = {r->queue};
    cbm_error_t err = {0};
    store_claimed_t c1 = {0}, c2 = {0}, c3 = {0}, c4 = {0};
    store_task_t want = {0}, *expired = NULL;
    int64_t *held = NULL, hb[2];
    size_t nheld = 0, nexp = 0;
    bool found = false;
    int rc = 0;

    CALL("claim 1", store_task_claim(s, r->worker, queues, 1, "{\"gpu\":\"x\"}", 30000, NULL, &c1,
                                     &found, &err), 0);
    WANT(found, "claim 1 found nothing");
    CALL("claim 2", store_task_claim(s, r->worker, queues, 1, "{\"gpu\":\"x\"}", 30000, NULL, &c2,
                                     &found, &err), 0);
    WANT(found && c1.id != c2.id, "claim 2");
    hb[0] = c1.id;
    hb[1] = c2.id;
    CALL("heartbeat", store_task_heartbeat(s, r->worker, hb, 2, 30000, &held, &nheld, &err), 0);
    WANT(nheld == 2, "%zu leases held", nheld);
    CALL("unclaim", store_task_unclaim(s, strcmp(c1.step, "tb") == 0 ? c1.id : c2.id, r->worker,
                                       &err), 0);
    memcpy(want.execution_id, r->id[1], 37);
    want.step = (char *)"tb";
    want.attempt = 1;
    CALL("claim by name", store_task_claim(s, r->worker, queues, 1, NULL, 30000, &want, &c3,
                                           &found, &err), 0);
    WANT(found && strcmp(c3.step, "tb") == 0 && strcmp(c3.payload, "{\"in\": [1, \"two\"]}") == 0,
         "claim by name: %s", found ? c3.payload : "none");

    CALL("append A2 B2", append(s, r, (int[]){A2, B2}, 2, &err), 0);
    CALL("claim 3", store_task_claim(s, r->worker, queues, 1, NULL, 30000, NULL, &c4, &found,
                                     &err), 0);
    WANT(found && strcmp(c4.step, "tb") == 0 && c4.attempt == 2, "claim 3");
    CALL("release", store_task_expired(s, r->worker, 0, &expired, &nexp, &err), 0);
    WANT(nexp == 1 && strcmp(expired[0].step, "tb") == 0, "%zu released", nexp);
    store_tasks_free(expired, nexp);
    expired = NULL;
    CALL("expired", store_task_expired(s, NULL, 10, &expired, &nexp, &err), 0);
    WANT(nexp == 0, "%zu expired", nexp);
out:
    store_claimed_clear(&c1);
    store_claimed_clear(&c2);
    store_claimed_clear(&c3);
    store_claimed_clear(&c4);
    store_tasks_free(expired, nexp);
    free(held);
    return rc;
}

/* Every read, with A at seq 5 (a snapshot at 4) and B at seq 3. */
static int reads(store_t *s, srun_t *r)
{
    const char *ids[2] = {r->id[0], r->id[1]};
    store_list_filter_t lf = {.blueprint = r->bp, .limit = 1};
    cbm_error_t err = {0};
    store_execution_t *x = NULL, *xs = NULL, *page = NULL;
    store_event_t *evs = NULL;
    store_unfinished_t u = {0};
    store_timer_t *timers = NULL;
    int64_t last = 0;
    size_t n = 0, nx = 0, npage = 0, ntimers = 0;
    int rc = 0;

    CALL("last_seq", store_last_seq(s, r->id[0], &last, &err), 0);
    WANT(last == 5, "last_seq %lld", (long long)last);
    CALL("read_history", store_read_history(s, r->id[0], 2, &evs, &n, &err), 0);
    WANT(n == 4 && evs[0].seq == 2 && strcmp(evs[3].payload, "{\"seq\":5}") == 0, "history");
    store_events_free(evs, n);
    evs = NULL;
    CALL("get_execution", store_get_execution(s, r->id[0], &x, &err), 0);
    WANT(strcmp(x->status, "sleeping") == 0 && x->last_seq == 5, "A is %s", x->status);
    store_executions_free(x, 1);
    x = NULL;
    CALL("list", store_list_executions(s, &lf, &page, &npage, &err), 0);
    WANT(npage == 1, "list: %zu", npage);
    lf.after_id = page[0].id;
    CALL("list page 2", store_list_executions(s, &lf, &xs, &nx, &err), 0);
    WANT(nx == 1 && strcmp(xs[0].id, page[0].id) != 0, "list page 2: %zu", nx);
    CALL("load_execution", store_load_execution(s, r->id[0], &x, &evs, &n, &err), 0);
    WANT(x->snapshot_seq == 4 && strcmp(x->snapshot, "{\"snap\":true}") == 0 && n == 1 &&
             evs[0].seq == 5, "load_execution");
    CALL("load_executions", store_load_executions(s, ids, 2, &u, &err), 0);
    WANT(u.nexecs == 2 && u.nevents == 4, "load_executions: %zu, %zu", u.nexecs, u.nevents);
    store_unfinished_free(&u);
    CALL("load_unfinished", store_load_unfinished(s, &u, &err), 0);
    WANT(u.nexecs == 2, "load_unfinished: %zu", u.nexecs);
    CALL("timers_due", store_timers_due(s, INT64_MAX, 100, &timers, &ntimers, &err), 0);
    WANT(ntimers == 2 && strcmp(timers[0].key, "retry:b") == 0, "timers_due: %zu", ntimers);
out:
    store_executions_free(x, x != NULL ? 1 : 0);
    store_executions_free(xs, nx);
    store_executions_free(page, npage);
    store_events_free(evs, n);
    store_unfinished_free(&u);
    store_timers_free(timers, ntimers);
    return rc;
}

/* Everything after the open. */
static int scenario(store_t *s, srun_t *r)
{
    static const char bp_json[] = "{\"name\":\"x\",\"steps\":[{\"name\":\"a\"}]}";
    cbm_error_t err = {0};
    store_execution_t *x = NULL;
    store_unfinished_t u = {0};
    char *version = NULL, *json = NULL;
    bool inserted = false;
    int rc = 0;

    CALL("put_blueprint", store_put_blueprint(s, r->bp, "v1", bp_json, &inserted, &err), 0);
    WANT(inserted, "blueprint not inserted");
    CALL("get_blueprint", store_get_blueprint(s, r->bp, NULL, &version, &json, &err), 0);
    WANT(strcmp(version, "v1") == 0, "version %s", version);
    CALL("append A1 B1", append(s, r, (int[]){A1, B1}, 2, &err), 0);
    CALL("find_by_key", store_find_by_key(s, r->bp, r->key, &x, &err), 0);
    WANT(strcmp(x->id, r->id[0]) == 0, "key holder %s", x->id);
    if ((rc = leases(s, r)) != 0 || (rc = reads(s, r)) != 0) goto out;
    /* A stale decision beside a good one, then the end. */
    CALL("append A3 B3", append(s, r, (int[]){A3, B3}, 2, &err), CBM_ECONFLICT);
    CALL("append A4", append(s, r, (int[]){A4}, 1, &err), 0);
    CALL("load_unfinished at the end", store_load_unfinished(s, &u, &err), 0);
    WANT(u.nexecs == 0, "load_unfinished at the end: %zu", u.nexecs);
out:
    store_executions_free(x, x != NULL ? 1 : 0);
    store_unfinished_free(&u);
    free(version);
    free(json);
    return rc;
}

static int open_and_run(const char *url, store_t **s, srun_t *r)
{
    cbm_error_t err = {0};
    int rc;

    *s = NULL;
    r->step = 1;
    r->step_name = "open";
    FA(rc = store_open(url, s, &err));
    if (fired(r)) r->fault_step = 1;
    if (rc != 0) return rc;
    return scenario(*s, r);
}

/* ---------------------------------------------------------- the checks */

static void check_consistent(fixture_t *f, const char *what)
{
    long bad = sql_int(
        f, "SELECT (SELECT count(*) FROM cbm_executions x WHERE x.last_seq <>"
           "  (SELECT count(*) FROM cbm_events e WHERE e.execution_id = x.id) OR x.last_seq <>"
           "  coalesce((SELECT max(seq) FROM cbm_events e WHERE e.execution_id = x.id), 0))"
           " + (SELECT count(*) FROM cbm_events e WHERE NOT EXISTS"
           "  (SELECT 1 FROM cbm_executions x WHERE x.id = e.execution_id))"
           " + (SELECT count(*) FROM cbm_timers t WHERE NOT EXISTS"
           "  (SELECT 1 FROM cbm_executions x WHERE x.id = t.execution_id))"
           " + (SELECT count(*) FROM cbm_tasks t WHERE NOT EXISTS"
           "  (SELECT 1 FROM cbm_executions x WHERE x.id = t.execution_id))"
           " + (SELECT count(*) FROM cbm_snapshots n WHERE NOT EXISTS"
           "  (SELECT 1 FROM cbm_executions x WHERE x.id = n.execution_id AND n.seq <= x.last_seq))");
    if (bad != 0) fail_msg("%s: the database is inconsistent (%ld rows)", what, bad);
}

/* Execution id's rows; final: they must be those of its whole plan. */
static void check_exec(fixture_t *f, const model_t *m, int x, const char *id, bool final,
                       const char *what)
{
    char sql[1024];
    checkpoint_t got;
    const checkpoint_t *want = NULL;
    PGresult *res;

    snprintf(sql, sizeof(sql),
             "SELECT coalesce((SELECT last_seq FROM cbm_executions WHERE id = '%s'), 0),"
             " coalesce((SELECT status FROM cbm_executions WHERE id = '%s'), ''),"
             " coalesce((SELECT string_agg(key, ',' ORDER BY key) FROM cbm_timers"
             "  WHERE execution_id = '%s'), ''),"
             " coalesce((SELECT string_agg(step || '/' || attempt, ',' ORDER BY step || '/' ||"
             "  attempt) FROM cbm_tasks WHERE execution_id = '%s'), ''),"
             " coalesce((SELECT seq FROM cbm_snapshots WHERE execution_id = '%s'), 0)",
             id, id, id, id, id);
    res = PQexec(f->pg, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) fail_msg("%s: %s", sql, PQerrorMessage(f->pg));
    got.last_seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    snprintf(got.status, sizeof(got.status), "%s", PQgetvalue(res, 0, 1));
    snprintf(got.timers, sizeof(got.timers), "%s", PQgetvalue(res, 0, 2));
    snprintf(got.tasks, sizeof(got.tasks), "%s", PQgetvalue(res, 0, 3));
    got.snapshot_seq = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
    PQclear(res);
    for (size_t i = 0; i < m->ncp[x]; i++)
        if (m->cp[x][i].last_seq == got.last_seq) want = &m->cp[x][i];
    if (want == NULL || (final && want != &m->cp[x][m->ncp[x] - 1]))
        fail_msg("%s: execution %c stands at seq %lld", what, 'A' + x, (long long)got.last_seq);
    if (strcmp(got.status, want->status) != 0 || strcmp(got.timers, want->timers) != 0 ||
        strcmp(got.tasks, want->tasks) != 0 || got.snapshot_seq != want->snapshot_seq)
        fail_msg("%s: execution %c at seq %lld: status '%s' timers '%s' tasks '%s' snapshot "
                 "%lld; its decisions say '%s' '%s' '%s' %lld",
                 what, 'A' + x, (long long)got.last_seq, got.status, got.timers, got.tasks,
                 (long long)got.snapshot_seq, want->status, want->timers, want->tasks,
                 (long long)want->snapshot_seq);
}

/* May a call succeed although its statement failed? Only the end of a
 * read-only transaction, which the store ignores by design. */
static bool absorbable(void)
{
    const char *w = fp_what();
    return strncmp(w, "COMMIT", 6) == 0 || strncmp(w, "ROLLBACK", 8) == 0;
}

/* Did the run that met failure n end as it must? */
static void judge(const srun_t *r, int rc, long n, const char *what)
{
    if (rc == FA_WRONG) fail_msg("%s: wrong result with failure %ld (%s)", what, n, r->step_name);
    if (r->alloc) {
        if (rc == 0) fail_msg("%s: allocation %ld failed in %s, yet it succeeded", what, n,
                              r->step_name);
        if (rc != CBM_ENOMEM)
            fail_msg("%s: allocation %ld failed in %s: got %s", what, n, r->step_name,
                     cbm_err_name(rc));
        if (r->fault_step != r->step)
            fail_msg("%s: allocation %ld failed in call %d, and call %d (%s) failed", what, n,
                     r->fault_step, r->step, r->step_name);
        return;
    }
    if (rc == 0 && !absorbable())
        fail_msg("%s: statement %ld (%s) failed, yet the scenario succeeded", what, n, fp_what());
    if (rc == 0) return;
    if (rc != CBM_ESTORE && rc != CBM_EUNAVAIL)
        fail_msg("%s: statement %ld (%s) failed in %s: got %s", what, n, fp_what(), r->step_name,
                 cbm_err_name(rc));
    if (r->fault_step != r->step && !(absorbable() && rc == CBM_EUNAVAIL))
        fail_msg("%s: statement %ld (%s) failed in call %d (succeeded), and call %d (%s) failed"
                 " with %s", what, n, fp_what(), r->fault_step, r->step, r->step_name,
                 cbm_err_name(rc));
}

static void clean(fixture_t *f)
{
    sql_exec(f, "DELETE FROM cbm_tasks; DELETE FROM cbm_timers; DELETE FROM cbm_snapshots;"
                " DELETE FROM cbm_events; DELETE FROM cbm_executions; DELETE FROM cbm_blueprints");
}

/* ------------------------------------------------------------ the loop */

static long total_runs, total_reruns;

/* The test database over the server's Unix socket when there is one:
 * faster than TCP, and these runs are round trips. */
static void store_url(const fixture_t *f, char *url, size_t size)
{
    const char *dir = getenv("CEREBELUM_TEST_PGSOCKDIR"), *port = getenv("CEREBELUM_TEST_PGPORT");
    const char *db = strrchr(f->url, '/');

    if (dir != NULL && port != NULL && db != NULL)
        snprintf(url, size, "postgresql://postgres@%s?host=%s&port=%s", db, dir, port);
    else
        snprintf(url, size, "%s", f->url);
}

static long iterate(fixture_t *f, bool alloc, fp_mode_t mode, const char *what)
{
    static int k;
    model_t m;
    char url[600];
    int rerun_step = 0;
    long n;

    build_model(&m);
    store_url(f, url, sizeof(url));
    fa_reset();
    for (n = 0;; n++) {
        store_t *s = NULL;
        srun_t r, again;
        char label[256];
        bool hit;
        size_t leaked;
        cbm_error_t err = {0};
        int rc;

        if (alloc) fa_arm(n);
        else fp_arm(n, mode);
        fa_begin();
        run_names(&r, ++k, alloc);
        rc = open_and_run(url, &s, &r);
        hit = fired(&r);
        fa_arm(0);
        fp_disarm();
        total_runs++;
        if (n == 0 && rc != 0)
            fail_msg("%s: %s (%s) with no failure injected", what, cbm_err_name(rc), r.step_name);
        if (n > 0 && !hit && rc != 0)
            fail_msg("%s: run %ld failed (%s in %s) with no failure injected", what, n,
                     cbm_err_name(rc), r.step_name);
        if (hit) judge(&r, rc, n, what);
        snprintf(label, sizeof(label), "%s, failure %ld (%s%s%s)", what, n,
                 alloc ? r.step_name : fp_what(), alloc ? "" : " in ", alloc ? "" : r.step_name);
        check_consistent(f, label);
        for (int x = 0; x < 2; x++) check_exec(f, &m, x, r.id[x], !hit, label);
        clean(f);
        /* The same handle, after a failure, does the whole thing: after
         * each statement failure, and after the first allocation failure
         * in each call (the others of that call would only repeat it). */
        if (hit && (!alloc || r.step != rerun_step)) {
            rerun_step = r.step;
            run_names(&again, ++k, alloc);
            if (s == NULL) {
                FA(rc = store_open(url, &s, &err));
                if (rc != 0) fail_msg("%s: reopen: %s", label, err.message);
            } else if (!store_ok(s) && store_reconnect(s, &err) != 0) {
                fail_msg("%s: reconnect: %s", label, err.message);
            }
            rc = scenario(s, &again);
            if (rc != 0)
                fail_msg("%s: then the scenario failed in %s: %s", label, again.step_name,
                         cbm_err_name(rc));
            total_reruns++;
            check_consistent(f, label);
            for (int x = 0; x < 2; x++) check_exec(f, &m, x, again.id[x], true, label);
            clean(f);
        }
        FA(store_close(s));
        if ((leaked = fa_end(what)) != 0) fail_msg("%s: %zu allocations leaked", label, leaked);
        if (n > 0 && !hit) break;
    }
    printf("fault_store: %-22s %4ld %s failed in turn\n", what, n - 1,
           alloc ? "allocations" : "statements");
    return n - 1;
}

static int setup(void **state)
{
    fixture_t *f;
    char sql[256];

    if (getenv("CEREBELUM_TEST_DATABASE_URL") == NULL) {
        fprintf(stderr, "no test server (tests/harness/with-postgres.sh)\n");
        exit(TESTDB_SKIP);
    }
    fixture_setup(state);
    f = *state;
    /* Durability is not under test here, and each commit's flush would
     * make the runs slow. */
    snprintf(sql, sizeof(sql), "ALTER DATABASE %s SET synchronous_commit = off",
             sql_text(f, "SELECT current_database()"));
    sql_exec(f, "%s", sql);
    sql_exec(f, "SET synchronous_commit = off");
    return 0;
}

static void test_alloc(void **state)
{
    iterate(*state, true, FP_ERROR, "allocations");
}

static void test_stmt_error(void **state)
{
    iterate(*state, false, FP_ERROR, "statements: error");
}

static void test_stmt_drop(void **state)
{
    iterate(*state, false, FP_DROP, "statements: drop");
}

static void test_stmt_lost(void **state)
{
    iterate(*state, false, FP_LOST, "statements: lost");
}

static void test_stmt_null(void **state)
{
    iterate(*state, false, FP_NULL, "statements: null");
}

static void test_report(void **state)
{
    (void)state;
    printf("fault_store: %ld runs of the scenario, %ld reruns after a failure", total_runs,
           total_reruns);
    if (fa_sites() > 0) printf(", %zu distinct call stacks failed", fa_sites());
    printf("\n");
}

/* Argument: "alloc" (allocation failures), "statements-1" (statements
 * refused by the server, connections dropped before them) or
 * "statements-2" (answers lost after them, no result from libpq): three
 * tests, so that each stays short. */
int main(int argc, char **argv)
{
    const struct CMUnitTest alloc[] = {
        cmocka_unit_test_setup_teardown(test_alloc, setup, fixture_teardown),
        cmocka_unit_test(test_report),
    };
    const struct CMUnitTest statements1[] = {
        cmocka_unit_test_setup_teardown(test_stmt_error, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stmt_drop, setup, fixture_teardown),
        cmocka_unit_test(test_report),
    };
    const struct CMUnitTest statements2[] = {
        cmocka_unit_test_setup_teardown(test_stmt_lost, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stmt_null, setup, fixture_teardown),
        cmocka_unit_test(test_report),
    };
    const char *what = argc == 2 ? argv[1] : "";

    fa_init();
    if (strcmp(what, "alloc") == 0) return cmocka_run_group_tests(alloc, NULL, NULL);
    if (strcmp(what, "statements-1") == 0) return cmocka_run_group_tests(statements1, NULL, NULL);
    if (strcmp(what, "statements-2") == 0) return cmocka_run_group_tests(statements2, NULL, NULL);
    fprintf(stderr, "usage: %s alloc|statements-1|statements-2\n", argv[0]);
    return 2;
}
