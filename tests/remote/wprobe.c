/*
 * wprobe.c - a raw WorkerService client for remote_test.sh: one protocol
 * call per invocation (so a test can hold, kill or replay any step of a
 * worker's life), plus a minimal worker loop. It speaks the protocol
 * directly through the transport, not through the worker SDK, so the
 * server is checked against the protocol itself.
 *
 *   wprobe ADDR register WID QUEUES [CAPS]     QUEUES "a,b"; CAPS "k=v,k2=v2"
 *   wprobe ADDR poll WID WAIT_MS [QUEUES]      -> "task TID EXEC STEP ATTEMPT HANDLER LEASE"
 *                                                 or "empty"
 *   wprobe ADDR submit WID TID ok JSON         -> "accepted" / "ignored: REASON"
 *   wprobe ADDR submit WID TID fail KIND RETRYABLE(0|1)
 *   wprobe ADDR submit WID TID raw STATUS      status number, no payload
 *   wprobe ADDR heartbeat WID [TID...]         -> "extension MS", "cancel TID"..., or
 *                                                 "unknown_worker"
 *   wprobe ADDR unregister WID                 -> "released N"
 *   wprobe ADDR workers [QUEUE]                -> "worker ID queues=.. active=N alive=B"
 *   wprobe ADDR work WID QUEUES CAPS COUNT     run tasks until COUNT are accepted:
 *                                                 handler "echo": result {"by":WID,"step":..}
 *                                                 handler "slow": the same after 100 ms
 *                                                 handler "hang": never answers
 *                                              reconnecting with back-off and jitter when
 *                                              the server goes away; prints
 *                                              "done EXEC STEP ATTEMPT accepted|ignored"
 *
 * An RPC error prints "error STATUS_NAME: message" and exits 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "grpc_transport.h"

static rpc_client_t *cli;

static int call(rpc_method_t m, const ProtobufCMessage *rq, ProtobufCMessage **rp, int64_t ms,
                rpc_status_t *st)
{
    return rpc_client_call(cli, m, rq, rp, ms, st);
}

static int die(const rpc_status_t *st)
{
    printf("error %s: %s\n", rpc_status_name(st->code), st->message);
    return 1;
}

static size_t split(char *s, char **out, size_t max)
{
    size_t n = 0;
    for (char *t = strtok(s, ","); t != NULL && n < max; t = strtok(NULL, ",")) out[n++] = t;
    return n;
}

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int do_register(const char *wid, char *queues, char *caps, int quiet)
{
    Cerebelum__V1__RegisterWorkerRequest rq = CEREBELUM__V1__REGISTER_WORKER_REQUEST__INIT;
    Cerebelum__V1__RegisterWorkerRequest__CapabilitiesEntry ent[16], *entp[16];
    Cerebelum__V1__RegisterWorkerResponse *rp = NULL;
    char *q[16], *c[16], qbuf[512], cbuf[512];
    rpc_status_t st;
    size_t nc = 0;

    snprintf(qbuf, sizeof(qbuf), "%s", queues);
    snprintf(cbuf, sizeof(cbuf), "%s", caps != NULL ? caps : "");
    rq.worker_id = (char *)wid;
    rq.n_queues = split(qbuf, q, 16);
    rq.queues = q;
    if (cbuf[0] != '\0') nc = split(cbuf, c, 16);
    for (size_t i = 0; i < nc; i++) {
        Cerebelum__V1__RegisterWorkerRequest__CapabilitiesEntry e =
            CEREBELUM__V1__REGISTER_WORKER_REQUEST__CAPABILITIES_ENTRY__INIT;
        char *eq = strchr(c[i], '=');
        ent[i] = e;
        if (eq != NULL) *eq = '\0';
        ent[i].key = c[i];
        ent[i].value = eq != NULL ? eq + 1 : (char *)"";
        entp[i] = &ent[i];
    }
    rq.n_capabilities = nc;
    rq.capabilities = entp;
    rq.max_concurrency = 1;
    rq.sdk_version = (char *)"wprobe";
    if (call(RPC_REGISTER_WORKER, &rq.base, (ProtobufCMessage **)&rp, 5000, &st) != 0) {
        if (quiet) return -1;
        return die(&st);
    }
    if (!quiet) printf("ok heartbeat_interval_ms=%u max_wait_ms=%u\n", rp->heartbeat_interval_ms,
                       rp->max_wait_ms);
    protobuf_c_message_free_unpacked(&rp->base, NULL);
    return 0;
}

static int submit(const char *wid, const char *tid, int status, const char *json,
                  const char *kind, int retryable, char *reason, size_t cap, rpc_status_t *st)
{
    Cerebelum__V1__SubmitResultRequest rq = CEREBELUM__V1__SUBMIT_RESULT_REQUEST__INIT;
    Cerebelum__V1__TaskError er = CEREBELUM__V1__TASK_ERROR__INIT;
    Cerebelum__V1__SubmitResultResponse *rp = NULL;
    int rc;

    rq.worker_id = (char *)wid;
    rq.task_id = (char *)tid;
    rq.status = (Cerebelum__V1__TaskStatus)status;
    if (json != NULL) rq.result_json = (char *)json;
    if (kind != NULL) {
        er.kind = (char *)kind;
        er.message = (char *)"from wprobe";
        er.retryable = retryable;
        rq.error = &er;
    }
    rc = call(RPC_SUBMIT_RESULT, &rq.base, (ProtobufCMessage **)&rp, 10000, st);
    if (rc != 0) return -1;
    snprintf(reason, cap, "%s", rp->accepted ? "" : rp->ignored_reason);
    rc = rp->accepted ? 1 : 0;
    protobuf_c_message_free_unpacked(&rp->base, NULL);
    return rc;
}

/* The worker loop of `work`. */
static int work(const char *wid, char *queues, char *caps, int count)
{
    int done = 0, backoff = 50, registered = 0;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();

    setvbuf(stdout, NULL, _IOLBF, 0);
    while (done < count) {
        Cerebelum__V1__PollTaskRequest rq = CEREBELUM__V1__POLL_TASK_REQUEST__INIT;
        Cerebelum__V1__Task *t = NULL;
        rpc_status_t st;
        char reason[200], result[512];
        int rc;

        if (!registered) {
            if (do_register(wid, queues, caps, 1) != 0) goto retry;
            registered = 1;
        }
        rq.worker_id = (char *)wid;
        rq.wait_ms = 2000;
        if (call(RPC_POLL_TASK, &rq.base, (ProtobufCMessage **)&t, 5000, &st) != 0) {
            if (st.code == GRPC_STATUS_FAILED_PRECONDITION) registered = 0;
            goto retry;
        }
        backoff = 50;
        if (t->empty) {
            protobuf_c_message_free_unpacked(&t->base, NULL);
            continue;
        }
        if (strcmp(t->handler, "hang") == 0) {
            printf("hanging %s %s %u\n", t->execution_id, t->step, t->attempt);
            for (;;) pause();
        }
        if (strcmp(t->handler, "slow") == 0) msleep(100);
        snprintf(result, sizeof(result), "{\"by\":\"%s\",\"step\":\"%s\",\"attempt\":%u}", wid,
                 t->step, t->attempt);
        /* Submit until the server answers (it may be restarting). */
        for (int tries = 0;; tries++) {
            rc = submit(wid, t->task_id, CEREBELUM__V1__TASK_STATUS__SUCCESS, result, NULL, 0,
                        reason, sizeof(reason), &st);
            if (rc >= 0 || tries > 600) break;
            msleep(backoff + (int)(rand_r(&seed) % 50));
            backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
        }
        backoff = 50;
        if (rc >= 0) {
            printf("done %s %s %u %s%s\n", t->execution_id, t->step, t->attempt,
                   rc ? "accepted" : "ignored: ", rc ? "" : reason);
            if (rc) done++;
        }
        protobuf_c_message_free_unpacked(&t->base, NULL);
        continue;
    retry:
        /* The server went away (or is starting): back off, with jitter. */
        msleep(backoff + (int)(rand_r(&seed) % (backoff / 2 + 1)));
        backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    rpc_client_options_t o = {0};
    cbm_error_t err = {0};
    rpc_status_t st;
    const char *cmd;
    int rc = 0;

    if (argc < 3) {
        fprintf(stderr, "usage: wprobe ADDR COMMAND ...\n");
        return 2;
    }
    o.target = argv[1];
    cmd = argv[2];
    if (rpc_client_create(&o, &cli, &err) != 0) {
        fprintf(stderr, "wprobe: %s\n", err.message);
        return 2;
    }
    if (strcmp(cmd, "register") == 0 && argc >= 5) {
        rc = do_register(argv[3], argv[4], argc > 5 ? argv[5] : NULL, 0);
    } else if (strcmp(cmd, "poll") == 0 && argc >= 5) {
        Cerebelum__V1__PollTaskRequest rq = CEREBELUM__V1__POLL_TASK_REQUEST__INIT;
        Cerebelum__V1__Task *t = NULL;
        char *q[16], qbuf[512];
        rq.worker_id = argv[3];
        rq.wait_ms = (uint32_t)atoi(argv[4]);
        if (argc > 5) {
            snprintf(qbuf, sizeof(qbuf), "%s", argv[5]);
            rq.n_queues = split(qbuf, q, 16);
            rq.queues = q;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        if (call(RPC_POLL_TASK, &rq.base, (ProtobufCMessage **)&t, rq.wait_ms + 5000, &st) != 0) {
            rc = die(&st);
        } else {
            if (t->empty) printf("empty\n");
            else printf("task %s %s %s %u %s %u\n", t->task_id, t->execution_id, t->step,
                        t->attempt, t->handler, t->lease_ms);
            protobuf_c_message_free_unpacked(&t->base, NULL);
        }
    } else if (strcmp(cmd, "submit") == 0 && argc >= 7) {
        char reason[200];
        int r;
        if (strcmp(argv[5], "ok") == 0)
            r = submit(argv[3], argv[4], CEREBELUM__V1__TASK_STATUS__SUCCESS, argv[6], NULL, 0,
                       reason, sizeof(reason), &st);
        else if (strcmp(argv[5], "fail") == 0 && argc >= 8)
            r = submit(argv[3], argv[4], CEREBELUM__V1__TASK_STATUS__FAILED, NULL, argv[6],
                       atoi(argv[7]), reason, sizeof(reason), &st);
        else
            r = submit(argv[3], argv[4], atoi(argv[6]), NULL, NULL, 0, reason, sizeof(reason),
                       &st);
        if (r < 0) rc = die(&st);
        else printf("%s%s\n", r ? "accepted" : "ignored: ", r ? "" : reason);
    } else if (strcmp(cmd, "heartbeat") == 0 && argc >= 4) {
        Cerebelum__V1__HeartbeatRequest rq = CEREBELUM__V1__HEARTBEAT_REQUEST__INIT;
        Cerebelum__V1__HeartbeatResponse *rp = NULL;
        rq.worker_id = argv[3];
        rq.n_task_ids = (size_t)(argc - 4);
        rq.task_ids = argv + 4;
        if (call(RPC_HEARTBEAT, &rq.base, (ProtobufCMessage **)&rp, 5000, &st) != 0) {
            rc = die(&st);
        } else {
            if (rp->unknown_worker) printf("unknown_worker\n");
            else printf("extension %u\n", rp->lease_extension_ms);
            for (size_t i = 0; i < rp->n_cancel_task_ids; i++)
                printf("cancel %s\n", rp->cancel_task_ids[i]);
            protobuf_c_message_free_unpacked(&rp->base, NULL);
        }
    } else if (strcmp(cmd, "unregister") == 0 && argc >= 4) {
        Cerebelum__V1__UnregisterWorkerRequest rq = CEREBELUM__V1__UNREGISTER_WORKER_REQUEST__INIT;
        Cerebelum__V1__UnregisterWorkerResponse *rp = NULL;
        rq.worker_id = argv[3];
        rq.reason = (char *)"test";
        if (call(RPC_UNREGISTER_WORKER, &rq.base, (ProtobufCMessage **)&rp, 10000, &st) != 0) {
            rc = die(&st);
        } else {
            printf("released %u\n", rp->released_tasks);
            protobuf_c_message_free_unpacked(&rp->base, NULL);
        }
    } else if (strcmp(cmd, "workers") == 0) {
        Cerebelum__V1__ListWorkersRequest rq = CEREBELUM__V1__LIST_WORKERS_REQUEST__INIT;
        Cerebelum__V1__ListWorkersResponse *rp = NULL;
        if (argc > 3) rq.queue = argv[3];
        if (call(RPC_LIST_WORKERS, &rq.base, (ProtobufCMessage **)&rp, 5000, &st) != 0) {
            rc = die(&st);
        } else {
            for (size_t i = 0; i < rp->n_workers; i++) {
                Cerebelum__V1__Worker *w = rp->workers[i];
                printf("worker %s queues=", w->worker_id);
                for (size_t k = 0; k < w->n_queues; k++) printf("%s%s", k ? "," : "", w->queues[k]);
                printf(" caps=");
                for (size_t k = 0; k < w->n_capabilities; k++)
                    printf("%s%s=%s", k ? "," : "", w->capabilities[k]->key,
                           w->capabilities[k]->value);
                printf(" active=%u alive=%d\n", w->active_tasks, (int)w->alive);
            }
            protobuf_c_message_free_unpacked(&rp->base, NULL);
        }
    } else if (strcmp(cmd, "work") == 0 && argc >= 7) {
        rc = work(argv[3], argv[4], argv[5], atoi(argv[6]));
    } else {
        fprintf(stderr, "wprobe: bad command\n");
        rc = 2;
    }
    rpc_client_destroy(cli);
    return rc;
}
