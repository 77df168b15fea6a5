/*
 * test_outbox_nats.c - the outbox publisher against a real nats-server -js
 * and PostgreSQL (tests/harness/with-postgres.sh tests/harness/with-nats.sh;
 * skipped, exit 77, without either).
 *
 * test_outage: the publisher drains what executions commit; NATS is stopped
 * (kill of its pid) while more executions finish (their rows wait), then
 * started again on the same port and store: every event arrives, once, and
 * in seq order per execution; the stream holds exactly one message per
 * event.
 *
 * test_kill_after_ack: a publisher in a child process exits between the
 * PubAcks and the delete of their rows (CEREBELUM_TEST_OUTBOX_EXIT_AFTER_ACK,
 * test only); the next publisher publishes those rows again, the stream
 * acknowledges them as duplicates and stores nothing new: one message per
 * msg id.
 *
 * test_wake_on_commit: a commit that writes rows wakes the publisher through
 * PostgreSQL's NOTIFY, long before its poll.
 *
 * test_short_window: an existing stream with a 2 s duplicate window is used
 * as it is and its window reported (the publisher warns about it).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <nats/nats.h>

#include "bus/outbox.h"
#include "tests/harness/testdb.h"
#include "tests/store/store_test.h"

extern char **environ;

static const char *nats_url;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* nexec executions, each: started (decision 1), two step completions
 * (decision 2), completed (decision 3); decision k of every execution in one
 * group commit. Returns the ids (ids[i] of 37 bytes). */
static void run_executions(fixture_t *f, char (*ids)[37], size_t nexec)
{
    tdec_t *t = calloc(nexec, sizeof(*t));
    store_decision_t **ds = calloc(nexec, sizeof(*ds));
    cbm_error_t err = {0};

    assert_non_null(t);
    assert_non_null(ds);
    for (size_t i = 0; i < nexec; i++) new_id(ids[i]);
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < nexec; i++) {
            int64_t expected = k == 0 ? 0 : k == 1 ? 1 : 3;
            tdec_init(&t[i], ids[i], expected, k == 1 ? 2 : 1, k == 0,
                      k == 2 ? "completed" : "running");
            t[i].ev[0].type = (char *)(k == 0 ? "ExecutionStarted" : k == 1 ? "StepCompleted"
                                                                           : "ExecutionCompleted");
            ds[i] = &t[i].d;
        }
        if (store_append(f->s, ds, nexec, &err) != 0) fail_msg("append: %s", err.message);
    }
    free(ds);
    free(t);
}

static int64_t rows(fixture_t *f)
{
    return sql_int(f, "SELECT count(*) FROM cbm_outbox");
}

static void wait_rows(fixture_t *f, int64_t want, int timeout_ms)
{
    for (int t = 0; t < timeout_ms && rows(f) != want; t += 50) sleep_ms(50);
    assert_int_equal(rows(f), want);
}

static pid_t nats_pid(void)
{
    FILE *p = fopen(getenv("CEREBELUM_TEST_NATS_PIDFILE"), "r");
    long pid = 0;

    assert_non_null(p);
    assert_int_equal(fscanf(p, "%ld", &pid), 1);
    fclose(p);
    return (pid_t)pid;
}

static void nats_stop(void)
{
    pid_t pid = nats_pid();

    assert_int_equal(kill(pid, SIGTERM), 0);
    for (int i = 0; i < 100 && kill(pid, 0) == 0; i++) sleep_ms(50);
    assert_int_not_equal(kill(pid, 0), 0);
}

static void nats_start(void)
{
    char *argv[] = {(char *)"nats-server", (char *)"-c", getenv("CEREBELUM_TEST_NATS_CONF"), NULL};
    posix_spawn_file_actions_t fa;
    pid_t pid;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    /* Not our child for long: the harness stops it through the pid file. */
    assert_int_equal(posix_spawnp(&pid, "nats-server", &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 100; i++) {
        natsConnection *nc = NULL;
        if (natsConnection_ConnectTo(&nc, nats_url) == NATS_OK) {
            natsConnection_Destroy(nc);
            return;
        }
        sleep_ms(50);
    }
    fail_msg("nats-server did not come back");
}

/* Every message of stream, in stream order: each msg id once, and per
 * execution the seqs increasing. Returns how many. */
static uint64_t check_stream(const char *stream, uint64_t want)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    jsErrCode je = 0;
    uint64_t n;
    char(*seen)[64];

    assert_int_equal(natsConnection_ConnectTo(&nc, nats_url), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    assert_int_equal(js_GetStreamInfo(&si, js, stream, NULL, &je), NATS_OK);
    n = si->State.Msgs;
    if (n != want) fail_msg("stream %s holds %llu messages, expected %llu", stream,
                            (unsigned long long)n, (unsigned long long)want);
    seen = calloc(n + 1, sizeof(*seen));
    assert_non_null(seen);
    for (uint64_t q = si->State.FirstSeq, i = 0; i < n; q++, i++) {
        natsMsg *m = NULL;
        const char *id = NULL;
        assert_int_equal(js_GetMsg(&m, js, stream, q, NULL, &je), NATS_OK);
        assert_int_equal(natsMsgHeader_Get(m, "Nats-Msg-Id", &id), NATS_OK);
        snprintf(seen[i], sizeof(seen[i]), "%s", id);
        for (uint64_t j = 0; j < i; j++) {
            if (strcmp(seen[j], id) == 0) fail_msg("msg id %s stored twice", id);
            /* same execution earlier in the stream: lower seq */
            if (strncmp(seen[j], id, 36) == 0 &&
                strtoll(seen[j] + 37, NULL, 10) >= strtoll(id + 37, NULL, 10))
                fail_msg("%s after %s: out of order", id, seen[j]);
        }
        natsMsg_Destroy(m);
    }
    free(seen);
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return n;
}

static void test_outage(void **state)
{
    fixture_t *f = *state;
    bus_outbox_config_t cfg = {0};
    bus_outbox_t *o = NULL;
    bus_outbox_counters_t c;
    cbm_error_t err = {0};
    char ids[40][37];

    cfg.db_url = f->url;
    cfg.nats_url = nats_url;
    cfg.stream = "T_OUTAGE";
    cfg.subject = "outage.{blueprint}.{event}";
    cfg.poll_ms = 100;
    cfg.ack_wait_ms = 500;
    cfg.configure = true;
    assert_code(bus_outbox_start(&cfg, &o, &err), 0);
    run_executions(f, ids, 10);
    wait_rows(f, 0, 10000);

    nats_stop();
    run_executions(f, ids + 10, 30); /* they finish while NATS is away */
    sleep_ms(1500);                  /* the publisher tries, fails, backs off */
    assert_int_equal(rows(f), 120);
    bus_outbox_counters(o, &c);
    assert_false(c.nats_connected);

    nats_start();
    wait_rows(f, 0, 30000);
    assert_int_equal(check_stream("T_OUTAGE", 160), 160);
    bus_outbox_counters(o, &c);
    assert_true(c.holds_lock);
    assert_int_equal(c.published, 160);
    assert_int_equal(c.dup_window_ms, BUS_OUTBOX_DUP_WINDOW_MS_DEFAULT);
    bus_outbox_stop(o);
}

static void test_kill_after_ack(void **state)
{
    fixture_t *f = *state;
    bus_outbox_config_t cfg = {0};
    bus_outbox_t *o = NULL;
    bus_outbox_counters_t c;
    cbm_error_t err = {0};
    char ids[5][37], exe[4096];
    char *argv[] = {exe, (char *)"--child-publisher", f->url, NULL};
    pid_t pid;
    int status = 0;
    ssize_t len;

    assert_code(store_outbox_configure(f->s, true, "kill.{blueprint}.{event}", 65536, &err), 0);
    run_executions(f, ids, 5);
    assert_int_equal(rows(f), 20);

    len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    assert_true(len > 0);
    exe[len] = '\0';
    setenv("CEREBELUM_TEST_OUTBOX_EXIT_AFTER_ACK", "86", 1);
    assert_int_equal(posix_spawn(&pid, exe, NULL, NULL, argv, environ), 0);
    unsetenv("CEREBELUM_TEST_OUTBOX_EXIT_AFTER_ACK");
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 86);
    /* Published and acknowledged (the first round: the first row of each
     * execution), not deleted. */
    assert_int_equal(rows(f), 20);
    assert_int_equal(check_stream("T_KILL", 5), 5);

    cfg.db_url = f->url;
    cfg.nats_url = nats_url;
    cfg.stream = "T_KILL";
    cfg.subject = "kill.{blueprint}.{event}";
    cfg.poll_ms = 100;
    assert_code(bus_outbox_start(&cfg, &o, &err), 0);
    wait_rows(f, 0, 10000);
    bus_outbox_counters(o, &c);
    assert_int_equal(c.published, 20);
    assert_int_equal(c.duplicates, 5);
    bus_outbox_stop(o);
    assert_int_equal(check_stream("T_KILL", 20), 20);
}

/* A commit wakes the publisher (NOTIFY cbm_outbox), from whichever
 * process: with a 60 s poll the rows still go within a second. */
static void test_wake_on_commit(void **state)
{
    fixture_t *f = *state;
    bus_outbox_config_t cfg = {0};
    bus_outbox_t *o = NULL;
    cbm_error_t err = {0};
    char ids[3][37];

    cfg.db_url = f->url;
    cfg.nats_url = nats_url;
    cfg.stream = "T_WAKE";
    cfg.subject = "wake.{blueprint}.{event}";
    cfg.poll_ms = 60000;
    cfg.configure = true;
    assert_code(bus_outbox_start(&cfg, &o, &err), 0);
    sleep_ms(500); /* connected, locked, listening, idle */
    run_executions(f, ids, 3);
    wait_rows(f, 0, 1000);
    bus_outbox_stop(o);
    assert_int_equal(check_stream("T_WAKE", 12), 12);
}

/* An existing stream with a short duplicate window is used as it is, and
 * the publisher reports the window it found (and warns in its log). */
static void test_short_window(void **state)
{
    fixture_t *f = *state;
    bus_outbox_config_t cfg = {0};
    bus_outbox_t *o = NULL;
    bus_outbox_counters_t c;
    cbm_error_t err = {0};
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamConfig sc;
    jsStreamInfo *si = NULL;
    jsErrCode je = 0;
    const char *subjects[1] = {"short.>"};
    char ids[1][37];

    assert_int_equal(natsConnection_ConnectTo(&nc, nats_url), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    jsStreamConfig_Init(&sc);
    sc.Name = "T_SHORT";
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Duplicates = (int64_t)2000 * 1000000; /* 2 s */
    assert_int_equal(js_AddStream(&si, js, &sc, NULL, &je), NATS_OK);
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);

    cfg.db_url = f->url;
    cfg.nats_url = nats_url;
    cfg.stream = "T_SHORT";
    cfg.subject = "short.{blueprint}.{event}";
    cfg.poll_ms = 100;
    cfg.configure = true;
    assert_code(bus_outbox_start(&cfg, &o, &err), 0);
    run_executions(f, ids, 1);
    wait_rows(f, 0, 10000);
    bus_outbox_counters(o, &c);
    assert_int_equal(c.dup_window_ms, 2000);
    bus_outbox_stop(o);
    assert_int_equal(check_stream("T_SHORT", 4), 4);
}

/* The child of test_kill_after_ack: a publisher that exits (the test hook)
 * after its first PubAcks. */
static int child_publisher(const char *db_url)
{
    bus_outbox_config_t cfg = {0};
    bus_outbox_t *o = NULL;
    cbm_error_t err = {0};

    cfg.db_url = db_url;
    cfg.nats_url = nats_url;
    cfg.stream = "T_KILL";
    cfg.subject = "kill.{blueprint}.{event}";
    cfg.poll_ms = 100;
    if (bus_outbox_start(&cfg, &o, &err) != 0) return 2;
    sleep(20);
    return 3; /* the hook never fired */
}

int main(int argc, char **argv)
{
    char url[512];
    int rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill_after_ack, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_outage, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_wake_on_commit, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_short_window, fixture_setup, fixture_teardown),
    };

    nats_url = getenv("CEREBELUM_TEST_NATS_URL");
    if (nats_url == NULL || getenv("CEREBELUM_TEST_NATS_CONF") == NULL) {
        fprintf(stderr, "no test nats-server (tests/harness/with-nats.sh): skipped\n");
        return 77;
    }
    if (argc == 3 && strcmp(argv[1], "--child-publisher") == 0) return child_publisher(argv[2]);
    if (testdb_create(url, sizeof(url)) != 0) {
        fprintf(stderr, "no test PostgreSQL (CEREBELUM_TEST_DATABASE_URL): skipped\n");
        return TESTDB_SKIP;
    }
    testdb_drop(url);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    nats_Close();
    return rc;
}
