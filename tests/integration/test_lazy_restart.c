/*
 * test_lazy_restart.c - an engine starts with only what was running; what
 * waits stays in the store until its timer or a decision brings it in
 * (docs/architecture.md, "Restart: what is loaded, and how the rest comes
 * in"). On a real PostgreSQL:
 *   - a restart with a sleeper, an approval waiter, a signal waiter, a
 *     parent whose child sleeps, an execution-wide deadline, an execution
 *     to cancel, and a running step: only the running one is loaded at
 *     start; each of the others completes (the approval, signal and cancel
 *     decided from a client-only engine, as another process would), the
 *     child's end reaches its hibernated parent, the deadline fires, and no
 *     step runs twice;
 *   - a sleeper whose timer is far beyond the timer window at the restart
 *     is read in as time brings it into the window, and wakes when due
 *     (a fake clock moves the hours);
 *   - a child whose parent ended without cancelling it (a crash between the
 *     two) is found at start and cancelled, though it is not loaded.
 */
#include <libpq-fe.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

#include "cerebelum/cerebelum.h"
#include "engine/blueprint.h"
#include "engine/decision.h"
#include "engine/event.h"
#include "engine/state.h"
#include "scheduler/clock.h"
#include "store/store.h"
#include "tests/harness/testdb.h"

void cbm__set_clock(cbm_engine_t *e, const cbm_clock_t *clock);

static char url[512];

/* ---- step runs, counted per (execution, step) ---------------------------- */

#define MAX_RUNS 256
static struct {
    char id[37];
    char step[32];
    int n;
} runs[MAX_RUNS];
static size_t nruns;
static uv_mutex_t runs_mu;

static void h_ok(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    size_t i;
    (void)arg;
    uv_mutex_lock(&runs_mu);
    for (i = 0; i < nruns; i++)
        if (strcmp(runs[i].id, call->execution_id) == 0 && strcmp(runs[i].step, call->step) == 0)
            break;
    if (i == nruns && nruns < MAX_RUNS) {
        snprintf(runs[i].id, sizeof(runs[i].id), "%s", call->execution_id);
        snprintf(runs[i].step, sizeof(runs[i].step), "%s", call->step);
        nruns++;
    }
    if (i < MAX_RUNS) runs[i].n++;
    uv_mutex_unlock(&runs_mu);
    cbm_step_ok(out, "{}");
}

static int runs_of(const char *id, const char *step)
{
    int n = 0;
    uv_mutex_lock(&runs_mu);
    for (size_t i = 0; i < nruns; i++)
        if (strcmp(runs[i].id, id) == 0 && strcmp(runs[i].step, step) == 0) n = runs[i].n;
    uv_mutex_unlock(&runs_mu);
    return n;
}

static void no_step_ran_twice(void)
{
    uv_mutex_lock(&runs_mu);
    for (size_t i = 0; i < nruns; i++)
        if (runs[i].n != 1)
            fail_msg("step %s of %s ran %d times", runs[i].step, runs[i].id, runs[i].n);
    uv_mutex_unlock(&runs_mu);
}

/* ---- helpers ------------------------------------------------------------- */

static cbm_engine_t *engine(const cbm_clock_t *clock, bool client_only)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    o.database_url = url;
    o.client_only = client_only;
    assert_int_equal(cbm_engine_create(&e, &o, &err), 0);
    cbm_engine_register_step(e, "ok", h_ok, NULL);
    if (clock != NULL) cbm__set_clock(e, clock);
    if (cbm_engine_start(e, &err) != 0) fail_msg("start: %s", err.message);
    return e;
}

static void reg(cbm_engine_t *e, const char *json)
{
    cbm_error_t err = {0};
    if (cbm_engine_register_blueprint(e, json, NULL, &err) != 0)
        fail_msg("register: %s", err.message);
}

static void start(cbm_engine_t *e, const char *bp, char id[37])
{
    cbm_error_t err = {0};
    if (cbm_execution_start(e, bp, "{}", id, &err) != 0) fail_msg("start %s: %s", bp, err.message);
}

static char *status_of(cbm_engine_t *e, const char *id)
{
    cbm_execution_info_t *x = NULL;
    cbm_error_t err = {0};
    char *s;
    if (cbm_execution_get(e, id, &x, &err) != 0) fail_msg("get: %s", err.message);
    s = strdup(x->status);
    cbm_execution_info_free(x);
    return s;
}

/* Poll until the projection has this status (or fail after 15 s). */
static void wait_status(cbm_engine_t *e, const char *id, const char *status)
{
    for (int i = 0; i < 1500; i++) {
        char *s = status_of(e, id);
        int same = strcmp(s, status) == 0;
        free(s);
        if (same) return;
        uv_sleep(10);
    }
    fail_msg("execution %s never reached status %s", id, status);
}

/* Wait for the end; the status and (when error_has) the error. */
static void wait_end(cbm_engine_t *e, const char *id, const char *status, const char *error_has)
{
    cbm_execution_info_t *info = NULL;
    cbm_error_t err = {0};
    if (cbm_execution_wait(e, id, 30000, &info, &err) != 0) fail_msg("wait %s: %s", id, err.message);
    if (strcmp(info->status, status) != 0)
        fail_msg("execution %s ended %s (%s), expected %s", id, info->status,
                 info->error != NULL ? info->error : "", status);
    if (error_has != NULL && (info->error == NULL || strstr(info->error, error_has) == NULL))
        fail_msg("execution %s: error %s, expected one with %s", id,
                 info->error != NULL ? info->error : "(none)", error_has);
    cbm_execution_info_free(info);
}

static int sql_int(const char *sql, const char *arg)
{
    PGconn *c = PQconnectdb(url);
    const char *params[1] = {arg};
    PGresult *r = PQexecParams(c, sql, arg != NULL ? 1 : 0, NULL, params, NULL, NULL, 0);
    int n = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : -1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return n;
}

static void sql_text(const char *sql, const char *arg, char *out, size_t cap)
{
    PGconn *c = PQconnectdb(url);
    const char *params[1] = {arg};
    PGresult *r = PQexecParams(c, sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) fail_msg("%s: no row", sql);
    snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
}

/* ---- a restart with every kind of wait ----------------------------------- */

static void test_restart_brings_each_in(void **state)
{
    cbm_engine_t *e, *cl;
    cbm_engine_stats_t st;
    cbm_error_t err = {0};
    char sl[37], ap[37], sg[37], pa[37], dl[37], cx[37], rm[37];
    (void)state;

    e = engine(NULL, false);
    reg(e, "{\"name\":\"lz_sleep\",\"timeline\":[{\"name\":\"z\",\"kind\":\"sleep\",\"duration_ms\":3000},"
           "{\"name\":\"b\",\"handler\":\"ok\"}]}");
    reg(e, "{\"name\":\"lz_appr\",\"timeline\":[{\"name\":\"a\",\"handler\":\"ok\"},"
           "{\"name\":\"sign\",\"kind\":\"approval\"},{\"name\":\"b\",\"handler\":\"ok\"}]}");
    reg(e, "{\"name\":\"lz_sig\",\"timeline\":[{\"name\":\"go\",\"kind\":\"signal\",\"signal\":\"go\"},"
           "{\"name\":\"b\",\"handler\":\"ok\"}]}");
    reg(e, "{\"name\":\"lz_child\",\"timeline\":[{\"name\":\"nap\",\"kind\":\"sleep\",\"duration_ms\":3000},"
           "{\"name\":\"w\",\"handler\":\"ok\"}]}");
    reg(e, "{\"name\":\"lz_par\",\"steps\":[{\"name\":\"sub\",\"kind\":\"subworkflow\",\"blueprint\":\"lz_child\"},"
           "{\"name\":\"after\",\"handler\":\"ok\",\"depends_on\":[\"sub\"]}]}");
    reg(e, "{\"name\":\"lz_dl\",\"timeout_ms\":3000,\"timeline\":[{\"name\":\"z\",\"kind\":\"sleep\","
           "\"duration_ms\":3600000},{\"name\":\"b\",\"handler\":\"ok\"}]}");
    reg(e, "{\"name\":\"lz_cx\",\"timeline\":[{\"name\":\"z\",\"kind\":\"sleep\",\"duration_ms\":3600000},"
           "{\"name\":\"b\",\"handler\":\"ok\"}]}");
    reg(e, "{\"name\":\"lz_remote\",\"timeline\":[{\"name\":\"far\",\"queue\":\"nobody_polls\"}]}");
    start(e, "lz_sleep", sl);
    start(e, "lz_appr", ap);
    start(e, "lz_sig", sg);
    start(e, "lz_par", pa);
    start(e, "lz_dl", dl);
    start(e, "lz_cx", cx);
    start(e, "lz_remote", rm);
    wait_status(e, sl, "sleeping");
    wait_status(e, ap, "awaiting_approval");
    wait_status(e, sg, "awaiting_signal");
    wait_status(e, pa, "awaiting_child");
    assert_int_equal(sql_int("SELECT count(*) FROM cbm_executions WHERE blueprint = 'lz_child'"
                             " AND status = 'sleeping'", NULL), 1);
    wait_status(e, dl, "sleeping");
    wait_status(e, cx, "sleeping");
    wait_status(e, rm, "running");
    assert_int_equal(runs_of(ap, "a"), 1);
    cbm_engine_destroy(e);

    /* Only the running one comes back at start; the rest stay in the store. */
    e = engine(NULL, false);
    cbm_engine_get_stats(e, &st);
    assert_int_equal(st.resumed, 1);

    /* Decisions from another engine (client only: it runs nothing and
     * reaches the running engine through the store, as a CLI would). */
    cl = engine(NULL, true);
    if (cbm_execution_approve(cl, ap, "sign", "{\"ok\":true}", "ann", &err) != 0)
        fail_msg("approve: %s", err.message);
    if (cbm_execution_signal(cl, sg, "go", "{\"now\":true}", &err) != 0)
        fail_msg("signal: %s", err.message);
    if (cbm_execution_cancel(cl, cx, "no longer wanted", &err) != 0)
        fail_msg("cancel: %s", err.message);

    wait_end(e, ap, "completed", NULL);
    wait_end(e, sg, "completed", NULL);
    wait_end(e, cx, "cancelled", NULL);
    wait_end(e, sl, "completed", NULL);
    wait_end(e, pa, "completed", NULL); /* the child's end reached its parent */
    wait_end(e, dl, "failed", "execution_timeout");
    {
        char *s = status_of(e, rm);
        assert_string_equal(s, "running");
        free(s);
    }

    assert_int_equal(runs_of(sl, "b"), 1);
    assert_int_equal(runs_of(ap, "b"), 1);
    assert_int_equal(runs_of(sg, "b"), 1);
    assert_int_equal(runs_of(pa, "after"), 1);
    assert_int_equal(runs_of(dl, "b"), 0);
    assert_int_equal(runs_of(cx, "b"), 0);
    no_step_ran_twice();
    /* And the store agrees: one StepCompleted per step at most. */
    assert_int_equal(sql_int("SELECT count(*) FROM (SELECT 1 FROM cbm_events WHERE type = "
                             "'StepCompleted' GROUP BY execution_id, payload->>'step' HAVING "
                             "count(*) > 1) d", NULL), 0);
    /* The tests share a database: leave nothing running. */
    if (cbm_execution_cancel(cl, rm, NULL, &err) != 0) fail_msg("cancel: %s", err.message);
    wait_end(e, rm, "cancelled", NULL);
    cbm_engine_destroy(cl);
    cbm_engine_destroy(e);
}

/* ---- a sleeper beyond the window ----------------------------------------- */

static void test_far_sleeper_after_restart(void **state)
{
    static clock_fake_t fake;
    cbm_engine_t *e;
    cbm_engine_stats_t st;
    char id[37];
    (void)state;

    clock_fake_init(&fake, clock_now_us(&clock_system));
    e = engine(&fake.clock, false);
    reg(e, "{\"name\":\"lz_far\",\"timeline\":[{\"name\":\"z\",\"kind\":\"sleep\",\"duration_ms\":7200000},"
           "{\"name\":\"b\",\"handler\":\"ok\"}]}");
    start(e, "lz_far", id);
    wait_status(e, id, "sleeping");
    cbm_engine_destroy(e);

    e = engine(&fake.clock, false);
    uv_sleep(1500); /* a refill or two: the window (60 s) does not reach it */
    cbm_engine_get_stats(e, &st);
    assert_int_equal(st.resumed, 0);
    assert_int_equal(st.woken, 0);
    /* Two hours later but five seconds: the window has reached it. */
    clock_fake_advance(&fake, 7200000000LL - 5000000);
    uv_sleep(1500);
    cbm_engine_get_stats(e, &st);
    assert_int_equal(st.timers_fired, 0);
    {
        char *s = status_of(e, id);
        assert_string_equal(s, "sleeping");
        free(s);
    }
    /* Due: it wakes (the next refill re-arms the fire timer on this clock). */
    clock_fake_advance(&fake, 5000000);
    wait_end(e, id, "completed", NULL);
    assert_int_equal(runs_of(id, "b"), 1);
    /* Decided when due by this clock: TimerFired at the due time or just
     * after (the clock stood still meanwhile). */
    assert_int_equal(sql_int("SELECT count(*) FROM cbm_events f JOIN cbm_events s USING "
                             "(execution_id) WHERE f.execution_id = $1 AND f.type = 'TimerFired' "
                             "AND s.type = 'SleepStarted' AND extract(epoch FROM f.recorded_at) * 1e6 "
                             "- (s.payload->>'until_us')::float8 BETWEEN 0 AND 1000000", id), 1);
    cbm_engine_destroy(e);
}

/* ---- a child orphaned by a crash ----------------------------------------- */

/* Cancel an execution the way cbm_execution_cancel does, but stop before
 * its children: what a crash between the two leaves. */
static void cancel_without_cascade(const char *id)
{
    store_t *s = NULL;
    store_execution_t *x = NULL;
    store_event_t *evs = NULL;
    size_t n = 0, *sched = NULL, nsched = 0;
    bp_blueprint_t *bp = NULL;
    char *json = NULL;
    st_exec_t st;
    eng_event_t ev = {0};
    store_decision_t d, *dp = &d;
    cbm_error_t err = {0};

    memset(&d, 0, sizeof(d));
    if (store_open(url, &s, &err) != 0 || store_load_execution(s, id, &x, &evs, &n, &err) != 0 ||
        store_get_blueprint(s, x->blueprint, x->version, NULL, &json, &err) != 0 ||
        bp_parse_json(json, strlen(json), &bp, &err) != 0 ||
        dec_fold(&st, id, bp, x->snapshot, evs, n, &err) != 0)
        fail_msg("load %s: %s", id, err.message);
    ev.type = EV_CANCEL_REQUESTED;
    ev.step = -1;
    ev.text = strdup("stopped by hand");
    if (dec_build(&st, &ev, 1, clock_now_us(&clock_system), &d, &sched, &nsched) != 0 ||
        store_append(s, &dp, 1, &err) != 0 || d.result_code != 0)
        fail_msg("cancel %s: %s", id, err.message);
    ev_finish(&ev);
    dec_release(&d);
    free(sched);
    st_finish(&st);
    bp_destroy(bp);
    free(json);
    store_executions_free(x, 1);
    store_events_free(evs, n);
    store_close(s);
}

static void test_orphan_found_at_start(void **state)
{
    cbm_engine_t *e;
    char pa[37], child[37];
    (void)state;

    e = engine(NULL, false);
    reg(e, "{\"name\":\"lz_capp\",\"steps\":[{\"name\":\"ok\",\"kind\":\"approval\"}]}");
    reg(e, "{\"name\":\"lz_papp\",\"steps\":[{\"name\":\"sub\",\"kind\":\"subworkflow\",\"blueprint\":\"lz_capp\"},"
           "{\"name\":\"after\",\"handler\":\"ok\",\"depends_on\":[\"sub\"]}]}");
    start(e, "lz_papp", pa);
    wait_status(e, pa, "awaiting_child");
    for (int i = 0; i < 1000 && sql_int("SELECT count(*) FROM cbm_executions WHERE blueprint ="
                                        " 'lz_capp' AND status = 'awaiting_approval'", NULL) != 1; i++)
        uv_sleep(10);
    sql_text("SELECT id::text FROM cbm_executions WHERE blueprint = 'lz_capp' AND $1::text IS NOT NULL",
             pa, child, sizeof(child));
    cbm_engine_destroy(e);

    cancel_without_cascade(pa);
    assert_int_equal(sql_int("SELECT count(*) FROM cbm_executions WHERE id = $1::uuid AND status ="
                             " 'awaiting_approval'", child), 1);

    /* The child waits for a person and has no timer: nothing loads it but
     * the walk at start, which finds its parent ended. */
    e = engine(NULL, false);
    wait_end(e, child, "cancelled", NULL);
    assert_int_equal(sql_int("SELECT count(*) FROM cbm_events WHERE execution_id = $1::uuid AND type ="
                             " 'CancelRequested' AND payload::text LIKE '%cancelled%'", child), 1);
    wait_end(e, pa, "cancelled", NULL);
    assert_int_equal(runs_of(pa, "after"), 0);
    cbm_engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_brings_each_in),
        cmocka_unit_test(test_far_sleeper_after_restart),
        cmocka_unit_test(test_orphan_found_at_start),
    };
    int rc;
    uv_mutex_init(&runs_mu);
    if (testdb_create(url, sizeof(url)) != 0) return TESTDB_SKIP;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(url);
    uv_mutex_destroy(&runs_mu);
    return rc;
}
