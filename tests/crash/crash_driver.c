/*
 * crash_driver - one engine process of the crash test (tests/crash/crash_test.sh),
 * which SIGKILLs it at random moments and starts it again.
 *
 *   crash_driver run URL GEN RUNS_FILE ACKED_FILE BATCHES BATCH_SIZE [final]
 *   crash_driver approve URL GEN
 *
 * run: an engine with two blueprints:
 *   crash:  a -> (b, c) -> d                      (b is slow: 5-15 ms)
 *   crash2: a -> nap (sleep 150 ms) -> f (fails its first attempt, retried
 *           after 50 ms) -> ask (approval) -> d
 * Every handler run appends, as it starts, "GEN EXECUTION STEP ATTEMPT" to
 * RUNS_FILE (one write(2) with O_APPEND, so a line is whole even when the
 * process is killed) and returns {"gen": GEN}, so the test can tell which
 * process's run the engine recorded. Starts BATCHES batches (100 ms apart) of
 * BATCH_SIZE "crash" and BATCH_SIZE/2 "crash2" executions, appending each id
 * to ACKED_FILE only after the start returned (= acknowledged), then waits
 * until no execution is running; with "final", until every execution has
 * finished, approving the approvals itself.
 * approve: a client-only process (runs nothing) that approves every
 * execution waiting for an approval, whether or not an engine is up.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cerebelum/cerebelum.h>

static int gen;
static int runs_fd;

static void log_run(const cbm_step_call_t *call)
{
    char line[160];
    int n = snprintf(line, sizeof(line), "%d %s %s %d\n", gen, call->execution_id, call->step,
                     call->attempt);
    if (write(runs_fd, line, (size_t)n) != n) abort();
}

static void work(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    char res[64];
    /* Step b is slow (5-15 ms), so a kill nearly always finds one running. */
    long us = strcmp(call->step, "b") == 0 ? 5000 + rand() % 10000 : rand() % 1000;
    struct timespec ts = {0, us * 1000L};
    (void)arg;
    /* Logged as the run starts: a run cut short by the kill counts too. */
    log_run(call);
    nanosleep(&ts, NULL);
    snprintf(res, sizeof(res), "{\"gen\": %d}", gen);
    cbm_step_ok(out, res);
}

static void flaky(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    char res[64];
    (void)arg;
    log_run(call);
    if (call->attempt == 1) {
        cbm_step_fail(out, "flaky", "first attempts fail", true);
        return;
    }
    snprintf(res, sizeof(res), "{\"gen\": %d}", gen);
    cbm_step_ok(out, res);
}

/* Approve every execution waiting for an approval; returns how many. */
static int approve_all(cbm_engine_t *e)
{
    cbm_list_opts_t lo = {0};
    char after[37] = "";
    int n_ok = 0;
    lo.status = "awaiting_approval";
    lo.limit = 200;
    for (;;) {
        cbm_execution_info_t *page = NULL;
        size_t n = 0;
        cbm_error_t err = {0};
        lo.after = after[0] ? after : NULL;
        if (cbm_execution_list(e, &lo, &page, &n, &err) != 0 || n == 0) {
            cbm_execution_infos_free(page, n);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            char resp[64];
            snprintf(resp, sizeof(resp), "{\"approved_in\": %d}", gen);
            /* Another approver may have been first: that is refused, fine. */
            if (cbm_execution_approve(e, page[i].id, "ask", resp, "crash-test", &err) == 0) n_ok++;
        }
        snprintf(after, sizeof(after), "%s", page[n - 1].id);
        cbm_execution_infos_free(page, n);
    }
    return n_ok;
}

static size_t count_status(cbm_engine_t *e, const char *status)
{
    cbm_list_opts_t lo = {0};
    cbm_execution_info_t *page = NULL;
    size_t n = 0;
    cbm_error_t err = {0};
    lo.status = status;
    lo.limit = 1;
    if (cbm_execution_list(e, &lo, &page, &n, &err) != 0) return 1;
    cbm_execution_infos_free(page, n);
    return n;
}

int main(int argc, char **argv)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    int batches, size, final;
    FILE *acked;
    char (*ids)[37];

    if (argc == 4 && strcmp(argv[1], "approve") == 0) {
        o.database_url = argv[2];
        o.client_only = true;
        gen = atoi(argv[3]);
        if (cbm_engine_create(&e, &o, &err) != 0 || cbm_engine_start(e, &err) != 0) goto fail;
        printf("approved %d\n", approve_all(e));
        cbm_engine_destroy(e);
        return 0;
    }
    if (argc < 8 || strcmp(argv[1], "run") != 0) {
        fprintf(stderr, "usage: crash_driver run URL GEN RUNS ACKED BATCHES SIZE [final]\n"
                        "       crash_driver approve URL GEN\n");
        return 2;
    }
    o.database_url = argv[2];
    gen = atoi(argv[3]);
    batches = atoi(argv[6]);
    size = atoi(argv[7]);
    final = argc > 8 && strcmp(argv[8], "final") == 0;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    runs_fd = open(argv[4], O_WRONLY | O_CREAT | O_APPEND, 0644);
    acked = fopen(argv[5], "a");
    ids = calloc((size_t)size, sizeof(*ids));
    if (runs_fd < 0 || acked == NULL || ids == NULL) return 2;

    if (cbm_engine_create(&e, &o, &err) != 0 || cbm_engine_register_step(e, "work", work, NULL) != 0 ||
        cbm_engine_register_step(e, "flaky", flaky, NULL) != 0 || cbm_engine_start(e, &err) != 0)
        goto fail;
    if (cbm_engine_register_blueprint(
            e,
            "{\"name\":\"crash\",\"steps\":[{\"name\":\"a\",\"handler\":\"work\"},"
            "{\"name\":\"b\",\"handler\":\"work\",\"depends_on\":[\"a\"]},"
            "{\"name\":\"c\",\"handler\":\"work\",\"depends_on\":[\"a\"]},"
            "{\"name\":\"d\",\"handler\":\"work\",\"depends_on\":[\"b\",\"c\"]}]}",
            NULL, &err) != 0 ||
        cbm_engine_register_blueprint(
            e,
            "{\"name\":\"crash2\",\"timeline\":[{\"name\":\"a\",\"handler\":\"work\"},"
            "{\"name\":\"nap\",\"kind\":\"sleep\",\"duration_ms\":150},"
            "{\"name\":\"f\",\"handler\":\"flaky\",\"retry\":{\"max_attempts\":3,\"initial_ms\":50}},"
            "{\"name\":\"ask\",\"kind\":\"approval\"},{\"name\":\"d\",\"handler\":\"work\"}]}",
            NULL, &err) != 0)
        goto fail;
    for (int b = 0; b < batches; b++) {
        if (cbm_execution_start_many(e, "crash", NULL, (size_t)size, ids, &err) != 0) goto fail;
        for (int i = 0; i < size; i++) fprintf(acked, "%s\n", ids[i]);
        if (cbm_execution_start_many(e, "crash2", NULL, (size_t)size / 2, ids, &err) != 0)
            goto fail;
        for (int i = 0; i < size / 2; i++) fprintf(acked, "%s\n", ids[i]);
        fflush(acked);
        if (b + 1 < batches) usleep(100000); /* a steady stream, not a flood */
    }
    for (;;) {
        size_t left;
        /* Approve first, then look: an approval makes its execution run. */
        if (final) approve_all(e);
        left = count_status(e, "running");
        if (final) left += count_status(e, "sleeping") + count_status(e, "awaiting_approval");
        if (left == 0) break;
        usleep(50000);
    }
    /* The engine may still finish a handler while it stops: close after. */
    cbm_engine_destroy(e);
    fclose(acked);
    close(runs_fd);
    free(ids);
    return 0;
fail:
    fprintf(stderr, "crash_driver gen %d: %s: %s\n", gen, cbm_err_name(err.code), err.message);
    cbm_engine_destroy(e);
    return 1;
}
