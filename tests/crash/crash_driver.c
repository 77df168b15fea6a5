/*
 * crash_driver - one engine process of the crash test (tests/crash/crash_test.sh),
 * which SIGKILLs it at random moments and starts it again.
 *
 *   crash_driver URL GEN RUNS_FILE ACKED_FILE BATCHES BATCH_SIZE
 *
 * Runs the blueprint a -> (b, c) -> d. Every handler run appends, as it
 * starts, "GEN EXECUTION STEP" to RUNS_FILE (one write(2) with O_APPEND, so a line is
 * whole even when the process is killed) and returns {"gen": GEN}, so the
 * test can tell which process's run the engine recorded. Starts BATCHES
 * batches of BATCH_SIZE executions (100 ms apart), appending each id to ACKED_FILE only
 * after the start returned (= acknowledged), then waits until no execution is
 * running and exits 0.
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

static void work(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    char line[128], res[64];
    /* Step b is slow (5-15 ms), so a kill nearly always finds one running. */
    long us = strcmp(call->step, "b") == 0 ? 5000 + rand() % 10000 : rand() % 1000;
    struct timespec ts = {0, us * 1000L};
    int n;
    (void)arg;
    /* Logged as the run starts: a run cut short by the kill counts too. */
    n = snprintf(line, sizeof(line), "%d %s %s\n", gen, call->execution_id, call->step);
    if (write(runs_fd, line, (size_t)n) != n) abort();
    nanosleep(&ts, NULL);
    snprintf(res, sizeof(res), "{\"gen\": %d}", gen);
    cbm_step_ok(out, res);
}

int main(int argc, char **argv)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    int batches, size;
    FILE *acked;
    char (*ids)[37];

    if (argc != 7) {
        fprintf(stderr, "usage: crash_driver URL GEN RUNS_FILE ACKED_FILE BATCHES BATCH_SIZE\n");
        return 2;
    }
    o.database_url = argv[1];
    gen = atoi(argv[2]);
    batches = atoi(argv[5]);
    size = atoi(argv[6]);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    runs_fd = open(argv[3], O_WRONLY | O_CREAT | O_APPEND, 0644);
    acked = fopen(argv[4], "a");
    ids = calloc((size_t)size, sizeof(*ids));
    if (runs_fd < 0 || acked == NULL || ids == NULL) return 2;

    if (cbm_engine_create(&e, &o, &err) != 0 || cbm_engine_register_step(e, "work", work, NULL) != 0 ||
        cbm_engine_start(e, &err) != 0)
        goto fail;
    if (cbm_engine_register_blueprint(
            e,
            "{\"name\":\"crash\",\"steps\":[{\"name\":\"a\",\"handler\":\"work\"},"
            "{\"name\":\"b\",\"handler\":\"work\",\"depends_on\":[\"a\"]},"
            "{\"name\":\"c\",\"handler\":\"work\",\"depends_on\":[\"a\"]},"
            "{\"name\":\"d\",\"handler\":\"work\",\"depends_on\":[\"b\",\"c\"]}]}",
            NULL, &err) != 0)
        goto fail;
    for (int b = 0; b < batches; b++) {
        if (cbm_execution_start_many(e, "crash", NULL, (size_t)size, ids, &err) != 0) goto fail;
        for (int i = 0; i < size; i++) fprintf(acked, "%s\n", ids[i]);
        fflush(acked);
        if (b + 1 < batches) usleep(100000); /* a steady stream, not a flood */
    }
    for (;;) {
        cbm_list_opts_t lo = {0};
        cbm_execution_info_t *page = NULL;
        size_t n = 0;
        lo.status = "running";
        lo.limit = 1;
        if (cbm_execution_list(e, &lo, &page, &n, &err) != 0) goto fail;
        cbm_execution_infos_free(page, n);
        if (n == 0) break;
        usleep(50000);
    }
    fclose(acked);
    close(runs_fd);
    free(ids);
    cbm_engine_destroy(e);
    return 0;
fail:
    fprintf(stderr, "crash_driver gen %d: %s: %s\n", gen, cbm_err_name(err.code), err.message);
    cbm_engine_destroy(e);
    return 1;
}
