/*
 * test_late_commit.c - a dead engine's last commit never strands an
 * execution (issue 9, defect 7), reproduced deterministically on a real
 * PostgreSQL:
 *
 *   1. engine A (a child process) runs a steady stream of starts of a
 *      blueprint with a task, a 300 ms sleep (a timer that fires) and a task
 *      (A's handler never returns, so A commits nothing but starts; B's
 *      returns at once);
 *   2. the test takes LOCK TABLE cbm_events IN SHARE MODE, so A's next group
 *      commit (with a start in it: A's starter waits on it) stops inside
 *      PostgreSQL, waiting for that lock; its backend (found by its
 *      application_name, "cerebelum committer") is then paused with SIGSTOP;
 *   3. A is killed with SIGKILL, the test's lock released, and engine B
 *      started on the same database; once B has started, the backend is
 *      resumed and its statement carries on;
 *   4. every execution in the database, and every start A had acknowledged,
 *      must complete in B, without another restart, well before B's sweep
 *      for stranded executions (30 s) could rescue one.
 *
 * Before the fix, the resumed statement committed after B had read the
 * unfinished executions: the execution it started was `running` with
 * nothing scheduled and belonged to no engine. With the fence (migration
 * 006) B declares A dead before it reads, and the resumed statement is
 * refused. (A pause inside the commit's fsync is no such case: the WAL lock
 * it holds makes every other commit, B's start included, wait for it.)
 */
#include <errno.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "cerebelum/cerebelum.h"
#include "tests/harness/testdb.h"

static char url[512];
static volatile pid_t paused_backend = 0;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (paused_backend > 0) kill(paused_backend, SIGCONT);
    exit(1);
}

static void resume_backend(void)
{
    if (paused_backend > 0) kill(paused_backend, SIGCONT);
}

static const char *BP =
    "{\"name\":\"lc\",\"steps\":["
    "{\"name\":\"a\",\"handler\":\"work\"},"
    "{\"name\":\"nap\",\"kind\":\"sleep\",\"duration_ms\":300,\"depends_on\":[\"a\"]},"
    "{\"name\":\"c\",\"handler\":\"work\",\"depends_on\":[\"nap\"]}]}";

static int in_a; /* engine A's handlers never finish: its commits are starts only */

static void h_work(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    if (in_a) uv_sleep(60000);
    cbm_step_ok(out, "1");
}

static cbm_engine_t *engine(void)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    o.database_url = url;
    if (cbm_engine_create(&e, &o, &err) != 0 || cbm_engine_register_step(e, "work", h_work, NULL) != 0)
        die("create: %s", err.message);
    if (cbm_engine_start(e, &err) != 0) die("start: %s", err.message);
    if (cbm_engine_register_blueprint(e, BP, NULL, &err) != 0) die("register: %s", err.message);
    return e;
}

/* Engine A: start executions for ever, writing each acknowledged id. */
static void run_a(int fd)
{
    cbm_engine_t *e = engine();
    for (;;) {
        char id[37], line[40];
        cbm_error_t err = {0};
        if (cbm_execution_start(e, "lc", "{}", id, &err) != 0) _exit(3);
        snprintf(line, sizeof(line), "%s\n", id);
        if (write(fd, line, 37) != 37) _exit(4);
        uv_sleep(2);
    }
}

static PGresult *q(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) die("%s: %s", sql, PQerrorMessage(c));
    return r;
}

static pid_t committer_backend(PGconn *c)
{
    for (int i = 0; i < 500; i++) {
        PGresult *r = q(c, "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                           " AND application_name = 'cerebelum committer'");
        pid_t pid = PQntuples(r) == 1 ? (pid_t)atoi(PQgetvalue(r, 0, 0)) : 0;
        PQclear(r);
        if (pid > 0) return pid;
        uv_sleep(10);
    }
    die("no committer backend found");
    return 0;
}

static void one_round(int round)
{
    int fds[2];
    pid_t a;
    char buf[37 * 4096];
    size_t have = 0, acked;
    PGconn *c = PQconnectdb(url);
    pid_t backend;
    PGconn *lk = PQconnectdb(url);
    cbm_engine_t *b;
    PGresult *r;
    int left = -1;

    if (PQstatus(c) != CONNECTION_OK) die("connect: %s", PQerrorMessage(c));
    if (pipe(fds) != 0) die("pipe");
    if ((a = fork()) < 0) die("fork");
    if (a == 0) {
        in_a = 1;
        close(fds[0]);
        run_a(fds[1]);
        _exit(0);
    }
    close(fds[1]);
    /* Let A run a while: some executions done, some asleep, some new. */
    while (have < 37 * (20 + (size_t)round * 10)) {
        ssize_t k = read(fds[0], buf + have, sizeof(buf) - have);
        if (k <= 0) die("engine A ended early");
        have += (size_t)k;
    }
    backend = committer_backend(c);
    /* A's next commit waits for the test's lock, inside PostgreSQL. */
    if (PQstatus(lk) != CONNECTION_OK) die("connect: %s", PQerrorMessage(lk));
    PQclear(PQexec(lk, "BEGIN"));
    r = PQexec(lk, "LOCK TABLE cbm_events IN SHARE MODE");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) die("lock: %s", PQerrorMessage(lk));
    PQclear(r);
    for (int i = 0;; i++) {
        char sql[160];
        int waiting;
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND wait_event_type = 'Lock'",
                 (int)backend);
        r = q(c, sql);
        waiting = atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
        if (waiting) break;
        if (i == 500) die("A's commit never waited for the lock");
        uv_sleep(10);
    }
    paused_backend = backend;
    kill(backend, SIGSTOP);
    kill(a, SIGKILL);
    waitpid(a, NULL, 0);
    for (;;) {
        ssize_t k = read(fds[0], buf + have, sizeof(buf) - have);
        if (k <= 0) break;
        have += (size_t)k;
    }
    close(fds[0]);
    acked = have / 37;
    printf("round %d: engine A acknowledged %zu starts; backend %d paused in a commit\n", round,
           acked, (int)backend);

    r = PQexec(lk, "COMMIT");
    PQclear(r);
    PQfinish(lk);
    b = engine();
    resume_backend();
    paused_backend = 0;

    /* Everything must finish in B, with no other restart, and well before
     * the engine's sweep for stranded executions (30 s; store_stranded)
     * could have rescued what the late commit left behind. */
    for (int i = 0; i < 150 && left != 0; i++) {
        r = q(c, "SELECT count(*) FROM cbm_executions WHERE status <> 'completed'");
        left = atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
        if (left != 0) uv_sleep(100);
    }
    if (left != 0) {
        r = q(c, "SELECT id, status FROM cbm_executions WHERE status <> 'completed' LIMIT 5");
        for (int i = 0; i < PQntuples(r); i++)
            fprintf(stderr, "  stranded: %s %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
        PQclear(r);
        die("round %d: %d executions never completed in the new engine", round, left);
    }
    for (size_t i = 0; i < acked; i++) {
        char id[37];
        cbm_execution_info_t *x = NULL;
        cbm_error_t err = {0};
        memcpy(id, buf + i * 37, 36);
        id[36] = '\0';
        if (cbm_execution_get(b, id, &x, &err) != 0) die("acknowledged %s lost: %s", id, err.message);
        if (strcmp(x->status, "completed") != 0) die("%s is %s", id, x->status);
        cbm_execution_info_free(x);
    }
    r = q(c, "SELECT count(*) FROM cbm_timers");
    if (atoi(PQgetvalue(r, 0, 0)) != 0) die("timer rows left");
    PQclear(r);
    r = q(c, "SELECT count(*) FROM cbm_executions");
    printf("round %d: all %s executions completed in the new engine\n", round, PQgetvalue(r, 0, 0));
    PQclear(r);
    cbm_engine_destroy(b);
    PQfinish(c);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (testdb_create(url, sizeof(url)) != 0) return TESTDB_SKIP;
    atexit(resume_backend);
    for (int round = 1; round <= 2; round++) one_round(round);
    testdb_drop(url);
    printf("ok\n");
    return 0;
}
