/*
 * scenarios_remote.c - the scenarios of tests/scenarios (scenario.h), run
 * with REMOTE workers: every task step of each blueprint is moved to the
 * queue "scn", a real `cerebelum serve` runs the engine on the test
 * PostgreSQL, and two worker threads speaking the WorkerService protocol
 * (long poll, submit) answer each attempt from the scenario's script. The
 * history, status and result must be exactly what the same scenario gives
 * with in-process handlers (tests/integration/test_scenarios.c).
 *
 * Usage: scenarios_remote CEREBELUM DIR [NAME...]
 */
#include <cJSON.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cerebelum/client.h"
#include "grpc_transport.h"
#include "tests/harness/scenario.h"
#include "tests/harness/testdb.h"

#define NWORKERS 2

static char url[512], addr[256], errfile[] = "/tmp/cbm-scn-remote.XXXXXX";
static pid_t server = -1;
static _Atomic(const scn_t *) current;
static atomic_int stopping, bad_outcomes;

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- the server ------------------------------------------------------------- */

static int start_server(const char *exe)
{
    int fd = mkstemp(errfile);
    if (fd < 0) return -1;
    if ((server = fork()) == 0) {
        dup2(fd, 2);
        execl(exe, exe, "serve", "--listen", "127.0.0.1:0", "--database-url", url, (char *)NULL);
        _exit(127);
    }
    close(fd);
    for (int i = 0; i < 600; i++) {
        char line[512];
        FILE *f = fopen(errfile, "r");
        while (f != NULL && fgets(line, sizeof(line), f) != NULL)
            if (sscanf(line, "cerebelum: serving on %255s", addr) == 1) {
                fclose(f);
                return 0;
            }
        if (f != NULL) fclose(f);
        if (waitpid(server, NULL, WNOHANG) == server) break;
        msleep(100);
    }
    fprintf(stderr, "the server did not start\n");
    return -1;
}

static int stop_server(void)
{
    int st = 0;
    if (server <= 0) return 0;
    kill(server, SIGTERM);
    waitpid(server, &st, 0);
    server = -1;
    unlink(errfile);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* ---- the workers ------------------------------------------------------------- */

static void worker_main(void *arg)
{
    const char *wid = arg;
    rpc_client_options_t o = {0};
    rpc_client_t *c = NULL;
    int registered = 0;

    o.target = addr;
    if (rpc_client_create(&o, &c, NULL) != 0) return;
    while (!atomic_load(&stopping)) {
        Cerebelum__V1__PollTaskRequest rq = CEREBELUM__V1__POLL_TASK_REQUEST__INIT;
        Cerebelum__V1__SubmitResultRequest sr = CEREBELUM__V1__SUBMIT_RESULT_REQUEST__INIT;
        Cerebelum__V1__TaskError te = CEREBELUM__V1__TASK_ERROR__INIT;
        Cerebelum__V1__Task *t = NULL;
        ProtobufCMessage *rep = NULL;
        const scn_t *s;
        scn_outcome_t out;
        rpc_status_t st;

        if (!registered) {
            Cerebelum__V1__RegisterWorkerRequest rr = CEREBELUM__V1__REGISTER_WORKER_REQUEST__INIT;
            char *q[] = {(char *)"scn"};
            rr.worker_id = (char *)wid;
            rr.n_queues = 1;
            rr.queues = q;
            if (rpc_client_call(c, RPC_REGISTER_WORKER, &rr.base, &rep, 5000, &st) != 0) {
                msleep(100);
                continue;
            }
            protobuf_c_message_free_unpacked(rep, NULL);
            registered = 1;
        }
        rq.worker_id = (char *)wid;
        rq.wait_ms = 300;
        if (rpc_client_call(c, RPC_POLL_TASK, &rq.base, (ProtobufCMessage **)&t, 5000, &st) != 0) {
            registered = 0;
            msleep(50);
            continue;
        }
        if (t->empty || (s = atomic_load(&current)) == NULL) {
            protobuf_c_message_free_unpacked(&t->base, NULL);
            continue;
        }
        sr.worker_id = (char *)wid;
        sr.task_id = t->task_id;
        sr.attempt = t->attempt;
        if (scn_outcome(s, t->step, (int)t->attempt, &out) != 0) {
            atomic_fetch_add(&bad_outcomes, 1);
            sr.status = CEREBELUM__V1__TASK_STATUS__FAILED;
            te.kind = (char *)"bad_scenario";
            te.message = out.message != NULL ? out.message : (char *)"";
            sr.error = &te;
        } else if (out.ok) {
            sr.status = CEREBELUM__V1__TASK_STATUS__SUCCESS;
            sr.result_json = out.json;
        } else {
            sr.status = CEREBELUM__V1__TASK_STATUS__FAILED;
            te.kind = out.kind;
            te.message = out.message;
            te.retryable = out.retryable;
            sr.error = &te;
        }
        for (int tries = 0; tries < 50; tries++) {
            if (rpc_client_call(c, RPC_SUBMIT_RESULT, &sr.base, &rep, 10000, &st) == 0) {
                protobuf_c_message_free_unpacked(rep, NULL);
                break;
            }
            msleep(100);
        }
        scn_outcome_finish(&out);
        protobuf_c_message_free_unpacked(&t->base, NULL);
    }
    rpc_client_destroy(c);
}

/* ---- one scenario ----------------------------------------------------------------- */

/* Every task step on queue "scn" (timeline names become step objects). */
static char *remote_blueprint(const char *json)
{
    cJSON *bp = cJSON_Parse(json), *steps, *tl, *it;
    char *out;
    if (bp == NULL) return NULL;
    steps = cJSON_GetObjectItemCaseSensitive(bp, "steps");
    cJSON_ArrayForEach(it, steps) {
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(it, "kind");
        if (kind != NULL && !(cJSON_IsString(kind) && strcmp(kind->valuestring, "task") == 0))
            continue;
        cJSON_DeleteItemFromObjectCaseSensitive(it, "queue");
        cJSON_AddStringToObject(it, "queue", "scn");
    }
    tl = cJSON_GetObjectItemCaseSensitive(bp, "timeline");
    for (int i = 0; tl != NULL && i < cJSON_GetArraySize(tl); i++) {
        cJSON *e = cJSON_GetArrayItem(tl, i);
        if (cJSON_IsString(e)) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", e->valuestring);
            cJSON_AddStringToObject(o, "queue", "scn");
            cJSON_ReplaceItemInArray(tl, i, o);
        } else if (cJSON_IsObject(e)) {
            const cJSON *kind = cJSON_GetObjectItemCaseSensitive(e, "kind");
            if (kind != NULL && !(cJSON_IsString(kind) && strcmp(kind->valuestring, "task") == 0))
                continue;
            cJSON_DeleteItemFromObjectCaseSensitive(e, "queue");
            cJSON_AddStringToObject(e, "queue", "scn");
        }
    }
    out = cJSON_PrintUnformatted(bp);
    cJSON_Delete(bp);
    return out;
}

static int is_final(const char *status)
{
    return strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
           strcmp(status, "cancelled") == 0;
}

static int run_one(cbm_client_t *c, scn_t *s)
{
    cbm_error_t err = {0};
    cbm_execution_info_t *info = NULL;
    cbm_event_t *ev = NULL;
    const char **types = NULL;
    char *bp = remote_blueprint(s->blueprint_json), *name = NULL, id[37], why[8192] = "";
    size_t n = 0;
    int rc = -1;
    cJSON *doc;

    if (bp == NULL) {
        snprintf(why, sizeof(why), "cannot rewrite the blueprint");
        goto out;
    }
    doc = cJSON_Parse(bp);
    name = strdup(cJSON_GetObjectItemCaseSensitive(doc, "name")->valuestring);
    cJSON_Delete(doc);
    atomic_store(&current, s);
    /* Sub-workflow children first: their task steps are remote too. */
    for (size_t k = 0; k < s->nchildren; k++) {
        char *child = remote_blueprint(s->children_json[k]);
        int r = -1;
        if (child == NULL) snprintf(err.message, sizeof(err.message), "cannot rewrite it");
        else r = cbm_client_register_blueprint(c, child, NULL, &err);
        free(child);
        if (r != 0) {
            snprintf(why, sizeof(why), "children[%zu]: %s", k, err.message);
            goto out;
        }
    }
    if (cbm_client_register_blueprint(c, bp, NULL, &err) != 0 ||
        cbm_client_start(c, name, s->inputs_json, NULL, id, &err) != 0) {
        snprintf(why, sizeof(why), "server: %s", err.message);
        goto out;
    }
    for (int i = 0; i < 600; i++) {
        cbm_execution_info_free(info);
        info = NULL;
        if (cbm_client_get(c, id, &info, NULL, &err) != 0) {
            snprintf(why, sizeof(why), "get: %s", err.message);
            goto out;
        }
        if (is_final(info->status)) break;
        msleep(50);
    }
    if (cbm_client_history(c, id, 1, &ev, &n, &err) != 0) {
        snprintf(why, sizeof(why), "history: %s", err.message);
        goto out;
    }
    if (!is_final(info->status)) {
        size_t len = (size_t)snprintf(why, sizeof(why), "still %s after 30 s; history:",
                                      info->status);
        for (size_t i = 0; i < n && len < sizeof(why) - 256; i++)
            len += (size_t)snprintf(why + len, sizeof(why) - len, "\n    %s %s", ev[i].type,
                                    ev[i].payload);
        goto out;
    }
    if ((types = calloc(n + 1, sizeof(*types))) == NULL) goto out;
    for (size_t i = 0; i < n; i++) types[i] = ev[i].type;
    rc = scn_check(s, types, n, info->status, info->result, why, sizeof(why));
out:
    atomic_store(&current, NULL);
    if (rc != 0) fprintf(stderr, "FAIL %s (remote) (%s)\n  %s\n", s->name, s->path, why);
    else printf("ok   %s (remote)\n", s->name);
    free(types);
    free(bp);
    free(name);
    cbm_events_free(ev, n);
    cbm_execution_info_free(info);
    return rc;
}

int main(int argc, char **argv)
{
    char **files = NULL, wids[NWORKERS][16];
    size_t nfiles = 0;
    int failed = 0;
    uv_thread_t th[NWORKERS];
    cbm_client_t *c = NULL;

    if (argc < 3) {
        fprintf(stderr, "usage: %s CEREBELUM DIR [NAME...]\n", argv[0]);
        return 2;
    }
    if (scn_files(argv[2], argv + 3, argc - 3, &files, &nfiles) != 0) return 2;
    if (nfiles == 0) {
        fprintf(stderr, "no scenarios in %s\n", argv[2]);
        return 1;
    }
    if (testdb_create(url, sizeof(url)) != 0) {
        scn_files_free(files, nfiles);
        return TESTDB_SKIP;
    }
    if (start_server(argv[1]) != 0 || cbm_client_connect(&c, addr, NULL, NULL) != 0) {
        stop_server();
        testdb_drop(url);
        scn_files_free(files, nfiles);
        return 1;
    }
    for (int i = 0; i < NWORKERS; i++) {
        snprintf(wids[i], sizeof(wids[i]), "scn-w%d", i);
        uv_thread_create(&th[i], worker_main, wids[i]);
    }
    for (size_t i = 0; i < nfiles; i++) {
        char path[4096], why[512];
        scn_t s;
        snprintf(path, sizeof(path), "%s/%s", argv[2], files[i]);
        if (scn_load(path, &s, why, sizeof(why)) != 0) {
            fprintf(stderr, "FAIL %s\n", why);
            failed++;
        } else {
            failed += run_one(c, &s) != 0;
            scn_finish(&s);
        }
    }
    scn_files_free(files, nfiles);
    atomic_store(&stopping, 1);
    for (int i = 0; i < NWORKERS; i++) uv_thread_join(&th[i]);
    cbm_client_destroy(c);
    if (stop_server() != 0) {
        fprintf(stderr, "FAIL the server did not stop cleanly\n");
        failed++;
    }
    if (atomic_load(&bad_outcomes) > 0) {
        fprintf(stderr, "FAIL %d malformed scripted outcomes\n", atomic_load(&bad_outcomes));
        failed++;
    }
    testdb_drop(url);
    printf("%zu scenarios with remote workers, %d failed\n", nfiles, failed);
    return failed ? 1 : 0;
}
