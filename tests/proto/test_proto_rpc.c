/*
 * test_proto_rpc.c - every RPC of both services over loopback TCP and a unix
 * socket, and the statuses the transport produces by itself: UNIMPLEMENTED
 * (unknown path, method without handler), INVALID_ARGUMENT (no message,
 * undecodable bytes), RESOURCE_EXHAUSTED (request and reply over the cap),
 * handler error statuses and their CBM_E* mapping, a port already in use, a
 * server that is not there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define CALL(cl, m, req, rep, st)                                              \
    rpc_client_call((cl), (m), &(req).base, (ProtobufCMessage **)(rep), 5000, (st))

static void expect_ok(int rc, const rpc_status_t *st)
{
    if (rc != 0)
        fprintf(stderr, "call failed: rc=%d status=%s message=\"%s\"\n", rc,
                rpc_status_name(st->code), st->message);
    assert_int_equal(rc, 0);
    assert_int_equal(st->code, GRPC_STATUS_OK);
}

static void expect_status(int rc, const rpc_status_t *st, grpc_status_code want)
{
    if (st->code != want)
        fprintf(stderr, "expected %s, got %s (\"%s\")\n", rpc_status_name(want),
                rpc_status_name(st->code), st->message);
    assert_string_equal(rpc_status_name(st->code), rpc_status_name(want));
    assert_int_equal(rc, rpc_status_to_cbm(want));
}

/* Call all fifteen methods and check each reply against the echo rules. */
static void exercise_all(rpc_client_t *cl)
{
    rpc_status_t st;
    int rc;

    { /* RegisterWorker: repeated field and map */
        Cerebelum__V1__RegisterWorkerRequest r = CEREBELUM__V1__REGISTER_WORKER_REQUEST__INIT;
        Cerebelum__V1__RegisterWorkerRequest__CapabilitiesEntry e1 =
            CEREBELUM__V1__REGISTER_WORKER_REQUEST__CAPABILITIES_ENTRY__INIT, e2 = e1;
        Cerebelum__V1__RegisterWorkerRequest__CapabilitiesEntry *caps[2] = {&e1, &e2};
        char *queues[3] = {"gpu", "cpu", "io"};
        Cerebelum__V1__RegisterWorkerResponse *rep = NULL;
        e1.key = "model"; e1.value = "llama";        /* 5 + 5 */
        e2.key = "vram"; e2.value = "80G";           /* 4 + 3 */
        r.worker_id = "w-1";
        r.n_queues = 3;
        r.queues = queues;
        r.n_capabilities = 2;
        r.capabilities = caps;
        r.max_concurrency = 8;
        r.sdk_version = "c/1";                       /* 3 */
        rc = CALL(cl, RPC_REGISTER_WORKER, r, &rep, &st);
        expect_ok(rc, &st);
        assert_int_equal(rep->heartbeat_interval_ms, 8003);
        assert_int_equal(rep->max_wait_ms, 20);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    { /* PollTask: a task */
        Cerebelum__V1__PollTaskRequest r = CEREBELUM__V1__POLL_TASK_REQUEST__INIT;
        char *queues[1] = {"gpu"};
        Cerebelum__V1__Task *t = NULL;
        r.worker_id = "w-1";
        r.n_queues = 1;
        r.queues = queues;
        r.wait_ms = 3;
        rc = CALL(cl, RPC_POLL_TASK, r, &t, &st);
        expect_ok(rc, &st);
        assert_false(t->empty);
        assert_string_equal(t->task_id, "task-for-w-1");
        assert_string_equal(t->execution_id, "exec-1");
        assert_string_equal(t->step, "step-a");
        assert_int_equal(t->attempt, 3);
        assert_string_equal(t->queue, "gpu");
        assert_string_equal(t->input_json, "{\"x\":1}");
        assert_int_equal(t->lease_ms, 30000);
        assert_string_equal(t->blueprint, "bp");
        assert_int_equal(t->timeout_ms, 5000);
        protobuf_c_message_free_unpacked(&t->base, NULL);
    }
    { /* PollTask: empty */
        Cerebelum__V1__PollTaskRequest r = CEREBELUM__V1__POLL_TASK_REQUEST__INIT;
        Cerebelum__V1__Task *t = NULL;
        r.worker_id = "w-1";
        r.wait_ms = 7;
        rc = CALL(cl, RPC_POLL_TASK, r, &t, &st);
        expect_ok(rc, &st);
        assert_true(t->empty);
        assert_string_equal(t->task_id, "");
        protobuf_c_message_free_unpacked(&t->base, NULL);
    }
    { /* Heartbeat */
        Cerebelum__V1__HeartbeatRequest r = CEREBELUM__V1__HEARTBEAT_REQUEST__INIT;
        char *ids[2] = {"t1", "t2"};
        Cerebelum__V1__HeartbeatResponse *rep = NULL;
        r.worker_id = "stranger";
        r.n_task_ids = 2;
        r.task_ids = ids;
        rc = CALL(cl, RPC_HEARTBEAT, r, &rep, &st);
        expect_ok(rc, &st);
        assert_int_equal(rep->lease_extension_ms, 2000);
        assert_int_equal(rep->n_cancel_task_ids, 1);
        assert_string_equal(rep->cancel_task_ids[0], "t1");
        assert_true(rep->unknown_worker);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    { /* SubmitResult: all four statuses */
        Cerebelum__V1__SubmitResultRequest r = CEREBELUM__V1__SUBMIT_RESULT_REQUEST__INIT;
        Cerebelum__V1__TaskError e = CEREBELUM__V1__TASK_ERROR__INIT;
        Cerebelum__V1__SleepRequest s = CEREBELUM__V1__SLEEP_REQUEST__INIT;
        Cerebelum__V1__ApprovalRequest a = CEREBELUM__V1__APPROVAL_REQUEST__INIT;
        Cerebelum__V1__SubmitResultResponse *rep = NULL;
        r.worker_id = "w-1";
        r.task_id = "t1";
        r.attempt = 2;

        r.status = CEREBELUM__V1__TASK_STATUS__SUCCESS;
        r.result_json = "{\"n\":42}";
        rc = CALL(cl, RPC_SUBMIT_RESULT, r, &rep, &st);
        expect_ok(rc, &st);
        assert_true(rep->accepted);
        assert_string_equal(rep->ignored_reason, "success:t1:{\"n\":42}:2");
        protobuf_c_message_free_unpacked(&rep->base, NULL);

        r.status = CEREBELUM__V1__TASK_STATUS__FAILED;
        r.result_json = "";
        e.kind = "timeout";
        e.message = "upstream slow";
        e.retryable = 1;
        e.details_json = "[1]";
        r.error = &e;
        rc = CALL(cl, RPC_SUBMIT_RESULT, r, &rep, &st);
        expect_ok(rc, &st);
        assert_false(rep->accepted);
        assert_string_equal(rep->ignored_reason, "failed:timeout:upstream slow:1:[1]");
        protobuf_c_message_free_unpacked(&rep->base, NULL);

        r.status = CEREBELUM__V1__TASK_STATUS__SLEEP;
        r.error = NULL;
        s.duration_ms = 86400000ull * 60; /* two months */
        s.data_json = "{\"s\":1}";
        r.sleep = &s;
        rc = CALL(cl, RPC_SUBMIT_RESULT, r, &rep, &st);
        expect_ok(rc, &st);
        assert_string_equal(rep->ignored_reason, "sleep:5184000000:{\"s\":1}");
        protobuf_c_message_free_unpacked(&rep->base, NULL);

        r.status = CEREBELUM__V1__TASK_STATUS__APPROVAL;
        r.sleep = NULL;
        a.type = "signoff";
        a.data_json = "{\"amount\":10}";
        a.timeout_ms = 3600000;
        r.approval = &a;
        rc = CALL(cl, RPC_SUBMIT_RESULT, r, &rep, &st);
        expect_ok(rc, &st);
        assert_string_equal(rep->ignored_reason, "approval:signoff:{\"amount\":10}:3600000");
        protobuf_c_message_free_unpacked(&rep->base, NULL);

        r.status = CEREBELUM__V1__TASK_STATUS__TASK_STATUS_UNSPECIFIED;
        rc = CALL(cl, RPC_SUBMIT_RESULT, r, &rep, &st);
        expect_status(rc, &st, GRPC_STATUS_INVALID_ARGUMENT);
        assert_null(rep);
    }
    { /* UnregisterWorker */
        Cerebelum__V1__UnregisterWorkerRequest r = CEREBELUM__V1__UNREGISTER_WORKER_REQUEST__INIT;
        Cerebelum__V1__UnregisterWorkerResponse *rep = NULL;
        r.worker_id = "w-1";
        r.reason = "bye";
        rc = CALL(cl, RPC_UNREGISTER_WORKER, r, &rep, &st);
        expect_ok(rc, &st);
        assert_int_equal(rep->released_tasks, 6);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    { /* RegisterBlueprint, and a handler's own INVALID_ARGUMENT */
        Cerebelum__V1__RegisterBlueprintRequest r = CEREBELUM__V1__REGISTER_BLUEPRINT_REQUEST__INIT;
        Cerebelum__V1__RegisterBlueprintResponse *rep = NULL;
        r.blueprint_json = "{\"name\":\"bp\"}";
        rc = CALL(cl, RPC_REGISTER_BLUEPRINT, r, &rep, &st);
        expect_ok(rc, &st);
        assert_string_equal(rep->name, "{\"name\":\"bp\"}");
        assert_string_equal(rep->version, "v-sha");
        assert_true(rep->created);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
        rep = NULL;
        r.blueprint_json = "nope";
        rc = CALL(cl, RPC_REGISTER_BLUEPRINT, r, &rep, &st);
        expect_status(rc, &st, GRPC_STATUS_INVALID_ARGUMENT);
        assert_string_equal(st.message, "blueprint: not a JSON object");
        assert_null(rep);
    }
    { /* StartExecution */
        Cerebelum__V1__StartExecutionRequest r = CEREBELUM__V1__START_EXECUTION_REQUEST__INIT;
        Cerebelum__V1__StartExecutionResponse *rep = NULL;
        r.blueprint = "bp";
        r.inputs_json = "{\"a\":\"\xc3\xa9\"}"; /* UTF-8 survives */
        r.idempotency_key = "k1";
        rc = CALL(cl, RPC_START_EXECUTION, r, &rep, &st);
        expect_ok(rc, &st);
        assert_string_equal(rep->execution_id, "bp/k1/{\"a\":\"\xc3\xa9\"}");
        assert_false(rep->created);
        assert_string_equal(rep->version, "latest");
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    { /* GetExecution, and NOT_FOUND -> CBM_ENOTFOUND */
        Cerebelum__V1__GetExecutionRequest r = CEREBELUM__V1__GET_EXECUTION_REQUEST__INIT;
        Cerebelum__V1__GetExecutionResponse *rep = NULL;
        r.execution_id = "e-9";
        rc = CALL(cl, RPC_GET_EXECUTION, r, &rep, &st);
        expect_ok(rc, &st);
        assert_non_null(rep->execution);
        assert_string_equal(rep->execution->execution_id, "e-9");
        assert_int_equal(rep->execution->status,
                         CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_COMPLETED);
        assert_string_equal(rep->execution->result_json, "{\"ok\":true}");
        assert_int_equal(rep->execution->started_at_ms, 1700000000000LL);
        assert_int_equal(rep->execution->finished_at_ms, 1700000000500LL);
        assert_int_equal(rep->execution->last_seq, 42);
        assert_string_equal(rep->state_json, "{}");
        protobuf_c_message_free_unpacked(&rep->base, NULL);
        rep = NULL;
        r.execution_id = "missing";
        rc = CALL(cl, RPC_GET_EXECUTION, r, &rep, &st);
        expect_status(rc, &st, GRPC_STATUS_NOT_FOUND);
        assert_int_equal(rc, CBM_ENOTFOUND);
        assert_string_equal(st.message, "execution missing not found");
    }
    { /* ListExecutions */
        Cerebelum__V1__ListExecutionsRequest r = CEREBELUM__V1__LIST_EXECUTIONS_REQUEST__INIT;
        Cerebelum__V1__ListExecutionsResponse *rep = NULL;
        r.status = CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_AWAITING_APPROVAL;
        r.blueprint = "bp";
        r.after = "cursor";
        r.limit = 3;
        rc = CALL(cl, RPC_LIST_EXECUTIONS, r, &rep, &st);
        expect_ok(rc, &st);
        assert_int_equal(rep->n_executions, 3);
        assert_string_equal(rep->executions[2]->execution_id, "e2");
        assert_string_equal(rep->executions[2]->blueprint, "bp");
        assert_int_equal(rep->executions[2]->status,
                         CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_AWAITING_APPROVAL);
        assert_string_equal(rep->next_after, "cursor+");
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    { /* GetHistory */
        Cerebelum__V1__GetHistoryRequest r = CEREBELUM__V1__GET_HISTORY_REQUEST__INIT;
        Cerebelum__V1__GetHistoryResponse *rep = NULL;
        r.execution_id = "e-1";
        r.after_seq = 10;
        r.limit = 3;
        rc = CALL(cl, RPC_GET_HISTORY, r, &rep, &st);
        expect_ok(rc, &st);
        assert_int_equal(rep->n_events, 3);
        assert_int_equal(rep->events[0]->seq, 11);
        assert_int_equal(rep->events[2]->seq, 13);
        assert_string_equal(rep->events[1]->type, "StepScheduled");
        assert_string_equal(rep->events[1]->payload_json, "e-1");
        assert_int_equal(rep->events[2]->recorded_at_ms, 1700000000002LL);
        assert_true(rep->more);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    { /* Approve */
        Cerebelum__V1__ApproveRequest r = CEREBELUM__V1__APPROVE_REQUEST__INIT;
        Cerebelum__V1__ApproveResponse *rep = NULL;
        r.execution_id = "e-1";  /* 3 */
        r.step = "sign";         /* 4 */
        r.data_json = "{}";      /* 2 */
        r.actor = "alice";       /* 5 */
        rc = CALL(cl, RPC_APPROVE, r, &rep, &st);
        expect_ok(rc, &st);
        assert_int_equal(rep->seq, 14);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    { /* Reject, and FAILED_PRECONDITION -> CBM_ESTATE */
        Cerebelum__V1__RejectRequest r = CEREBELUM__V1__REJECT_REQUEST__INIT;
        Cerebelum__V1__RejectResponse *rep = NULL;
        r.execution_id = "e-1";
        r.reason = "too expensive";
        rc = CALL(cl, RPC_REJECT, r, &rep, &st);
        expect_ok(rc, &st);
        assert_int_equal(rep->seq, 113);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
        rep = NULL;
        r.execution_id = "done";
        rc = CALL(cl, RPC_REJECT, r, &rep, &st);
        expect_status(rc, &st, GRPC_STATUS_FAILED_PRECONDITION);
        assert_int_equal(rc, CBM_ESTATE);
    }
    { /* Signal */
        Cerebelum__V1__SignalRequest r = CEREBELUM__V1__SIGNAL_REQUEST__INIT;
        Cerebelum__V1__SignalResponse *rep = NULL;
        r.execution_id = "e-1";
        r.name = "go";
        r.data_json = "[1,2]";
        rc = CALL(cl, RPC_SIGNAL, r, &rep, &st);
        expect_ok(rc, &st);
        assert_int_equal(rep->seq, 207);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    { /* Cancel */
        Cerebelum__V1__CancelRequest r = CEREBELUM__V1__CANCEL_REQUEST__INIT;
        Cerebelum__V1__CancelResponse *rep = NULL;
        r.execution_id = "e-1";
        r.reason = "stop";
        rc = CALL(cl, RPC_CANCEL, r, &rep, &st);
        expect_ok(rc, &st);
        assert_int_equal(rep->seq, 304);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    { /* ListWorkers: a repeated message with a map inside */
        Cerebelum__V1__ListWorkersRequest r = CEREBELUM__V1__LIST_WORKERS_REQUEST__INIT;
        Cerebelum__V1__ListWorkersResponse *rep = NULL;
        r.queue = "gpu";
        rc = CALL(cl, RPC_LIST_WORKERS, r, &rep, &st);
        expect_ok(rc, &st);
        assert_int_equal(rep->n_workers, 1);
        assert_string_equal(rep->workers[0]->worker_id, "w-1");
        assert_int_equal(rep->workers[0]->n_queues, 1);
        assert_string_equal(rep->workers[0]->queues[0], "gpu");
        assert_int_equal(rep->workers[0]->n_capabilities, 1);
        assert_string_equal(rep->workers[0]->capabilities[0]->key, "gpu");
        assert_string_equal(rep->workers[0]->capabilities[0]->value, "a100");
        assert_int_equal(rep->workers[0]->max_concurrency, 4);
        assert_true(rep->workers[0]->alive);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
}

static void test_all_rpcs_tcp(void **state)
{
    fx_t fx;
    fx_init(&fx, "127.0.0.1:0");
    assert_int_equal(fx_start(&fx), 0);
    assert_true(rpc_server_port(fx.srv) > 0);
    rpc_client_t *cl = fx_client(&fx, NULL);
    exercise_all(cl);
    exercise_all(cl); /* the connection is reused */
    rpc_client_destroy(cl);
    fx_stop(&fx);
}

static void test_all_rpcs_unix(void **state)
{
    char dir[] = "/tmp/cbm-proto-XXXXXX";
    char addr[300], path[280];
    fx_t fx;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/grpc.sock", dir);
    snprintf(addr, sizeof(addr), "unix:%s", path);
    fx_init(&fx, addr);
    assert_int_equal(fx_start(&fx), 0);
    assert_int_equal(access(path, F_OK), 0);
    rpc_client_t *cl = fx_client(&fx, NULL);
    exercise_all(cl);
    rpc_client_destroy(cl);
    fx_stop(&fx);
    unlink(path); /* gRPC removes it at shutdown; be sure */
    assert_int_equal(rmdir(dir), 0);
}

static void test_unknown_method(void **state)
{
    fx_t fx;
    rpc_status_t st;
    void *rep = NULL;
    size_t n = 0;
    fx_init(&fx, "127.0.0.1:0");
    assert_int_equal(fx_start(&fx), 0);
    rpc_client_t *cl = fx_client(&fx, NULL);

    int rc = rpc_client_call_raw(cl, "/cerebelum.v1.WorkerService/Nope", "", 0, &rep, &n,
                                 5000, &st);
    expect_status(rc, &st, GRPC_STATUS_UNIMPLEMENTED);
    assert_string_equal(st.message, "unknown method /cerebelum.v1.WorkerService/Nope");
    assert_null(rep);
    /* More than the two armed generic requests, to see them re-armed. */
    for (int i = 0; i < 5; i++) {
        rc = rpc_client_call_raw(cl, "/other.Service/Method", NULL, 0, &rep, &n, 5000, &st);
        expect_status(rc, &st, GRPC_STATUS_UNIMPLEMENTED);
    }
    assert_int_equal(atomic_load(&fx.handled), 0);
    rpc_client_destroy(cl);
    fx_stop(&fx);
}

static void test_method_without_handler(void **state)
{
    fx_t fx;
    rpc_status_t st;
    Cerebelum__V1__ListWorkersRequest r = CEREBELUM__V1__LIST_WORKERS_REQUEST__INIT;
    Cerebelum__V1__ListWorkersResponse *rep = NULL;
    fx_init(&fx, "127.0.0.1:0");
    fx.opts.handlers[RPC_LIST_WORKERS] = NULL;
    assert_int_equal(fx_start(&fx), 0);
    rpc_client_t *cl = fx_client(&fx, NULL);
    int rc = CALL(cl, RPC_LIST_WORKERS, r, &rep, &st);
    expect_status(rc, &st, GRPC_STATUS_UNIMPLEMENTED);
    assert_string_equal(st.message, "/cerebelum.v1.WorkflowService/ListWorkers is not served here");
    assert_null(rep);
    rpc_client_destroy(cl);
    fx_stop(&fx);
}

static void test_invalid_argument(void **state)
{
    static const unsigned char garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                            0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const unsigned char wrong_type[] = {0x08, 0x01}; /* field 1 as varint */
    static const unsigned char truncated[] = {0x0a, 0x10, 'a', 'b'}; /* says 16, has 2 */
    /* Field number 0 (invalid), its tag written in two bytes: protobuf-c
     * 1.4 decodes it as an unknown field that it then cannot encode again
     * (found by tests/fuzz/fuzz_proto). */
    static const unsigned char field_zero[] = {0x80, 0x00, 0x33};
    const char *path = rpc_method_path(RPC_POLL_TASK);
    fx_t fx;
    rpc_status_t st;
    void *rep = NULL;
    size_t n = 0;
    int rc;

    fx_init(&fx, "127.0.0.1:0");
    assert_int_equal(fx_start(&fx), 0);
    rpc_client_t *cl = fx_client(&fx, NULL);

    rc = rpc_client_call_raw(cl, path, garbage, sizeof(garbage), &rep, &n, 5000, &st);
    expect_status(rc, &st, GRPC_STATUS_INVALID_ARGUMENT);
    assert_string_equal(st.message, "request does not decode as cerebelum.v1.PollTaskRequest");
    rc = rpc_client_call_raw(cl, path, wrong_type, sizeof(wrong_type), &rep, &n, 5000, &st);
    expect_status(rc, &st, GRPC_STATUS_INVALID_ARGUMENT);
    rc = rpc_client_call_raw(cl, path, truncated, sizeof(truncated), &rep, &n, 5000, &st);
    expect_status(rc, &st, GRPC_STATUS_INVALID_ARGUMENT);
    rc = rpc_client_call_raw(cl, path, field_zero, sizeof(field_zero), &rep, &n, 5000, &st);
    expect_status(rc, &st, GRPC_STATUS_INVALID_ARGUMENT);
    assert_string_equal(st.message, "request does not decode as cerebelum.v1.PollTaskRequest");
    rc = rpc_client_call_raw(cl, path, NULL, 0, &rep, &n, 5000, &st); /* no message */
    expect_status(rc, &st, GRPC_STATUS_INVALID_ARGUMENT);
    assert_string_equal(st.message, "no request message (expected cerebelum.v1.PollTaskRequest)");
    {
        /* Strings must be UTF-8 without NUL (protobuf-c would cut one at a
         * NUL; PostgreSQL refuses the rest), nested messages included. */
        static const unsigned char bad_utf8[] = {0x0a, 0x03, 'w', 0xff, 0xfe};
        static const unsigned char with_nul[] = {0x0a, 0x03, 'a', 0x00, 'b'};
        static const unsigned char surrogate[] = {0x0a, 0x03, 0xed, 0xa0, 0x80};
        /* RegisterWorkerRequest.capabilities {"k": "\xff"}: a map entry
         * is a nested message. */
        static const unsigned char nested[] = {0x1a, 0x06, 0x0a, 0x01, 'k', 0x12, 0x01, 0xff};
        rc = rpc_client_call_raw(cl, path, bad_utf8, sizeof(bad_utf8), &rep, &n, 5000, &st);
        expect_status(rc, &st, GRPC_STATUS_INVALID_ARGUMENT);
        assert_string_equal(st.message, "cerebelum.v1.PollTaskRequest: field worker_id is not "
                                        "valid UTF-8 (byte 1)");
        rc = rpc_client_call_raw(cl, path, with_nul, sizeof(with_nul), &rep, &n, 5000, &st);
        expect_status(rc, &st, GRPC_STATUS_INVALID_ARGUMENT);
        assert_string_equal(st.message, "cerebelum.v1.PollTaskRequest: field worker_id holds a "
                                        "NUL byte (byte 1)");
        rc = rpc_client_call_raw(cl, path, surrogate, sizeof(surrogate), &rep, &n, 5000, &st);
        expect_status(rc, &st, GRPC_STATUS_INVALID_ARGUMENT);
        rc = rpc_client_call_raw(cl, rpc_method_path(RPC_REGISTER_WORKER), nested, sizeof(nested),
                                 &rep, &n, 5000, &st);
        expect_status(rc, &st, GRPC_STATUS_INVALID_ARGUMENT);
        assert_string_equal(st.message, "cerebelum.v1.RegisterWorkerRequest: field value is not "
                                        "valid UTF-8 (byte 0)");
    }
    assert_int_equal(atomic_load(&fx.handled), 0);

    /* An empty message is a valid encoding of the all-defaults request. */
    rc = rpc_client_call_raw(cl, path, "", 0, &rep, &n, 5000, &st);
    expect_ok(rc, &st);
    assert_non_null(rep);
    Cerebelum__V1__Task *t = cerebelum__v1__task__unpack(NULL, n, rep);
    assert_non_null(t);
    assert_string_equal(t->task_id, "task-for-");
    cerebelum__v1__task__free_unpacked(t, NULL);
    free(rep);
    assert_int_equal(atomic_load(&fx.handled), 1);
    rpc_client_destroy(cl);
    fx_stop(&fx);
}

static void test_resource_exhausted(void **state)
{
    fx_t fx;
    rpc_status_t st;
    rpc_client_options_t o = {0};
    rpc_client_t *big = NULL, *cl;
    Cerebelum__V1__PollTaskRequest r = CEREBELUM__V1__POLL_TASK_REQUEST__INIT;
    Cerebelum__V1__Task *t = NULL;
    size_t n = 5u << 20;
    char *huge = malloc(n + 1);
    int rc;

    assert_non_null(huge);
    memset(huge, 'w', n);
    huge[n] = '\0';
    fx_init(&fx, "127.0.0.1:0");
    assert_int_equal(fx_start(&fx), 0);

    /* A client that allows itself 8 MiB, so the server's cap is what bites. */
    o.target = fx.target;
    o.max_message_bytes = 8u << 20;
    assert_int_equal(rpc_client_create(&o, &big, NULL), 0);
    r.worker_id = huge;
    rc = CALL(big, RPC_POLL_TASK, r, &t, &st);
    fprintf(stderr, "5 MiB request -> %s \"%s\"\n", rpc_status_name(st.code), st.message);
    expect_status(rc, &st, GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_null(t);
    assert_int_equal(atomic_load(&fx.handled), 0);

    /* The server keeps serving on the same connection. */
    r.worker_id = "small";
    rc = CALL(big, RPC_POLL_TASK, r, &t, &st);
    expect_ok(rc, &st);
    protobuf_c_message_free_unpacked(&t->base, NULL);
    t = NULL;

    /* A default client refuses to send it at all. */
    cl = fx_client(&fx, NULL);
    r.worker_id = huge;
    rc = CALL(cl, RPC_POLL_TASK, r, &t, &st);
    expect_status(rc, &st, GRPC_STATUS_RESOURCE_EXHAUSTED);

    /* A reply over the cap: the server refuses to send it. */
    Cerebelum__V1__GetExecutionRequest g = CEREBELUM__V1__GET_EXECUTION_REQUEST__INIT;
    Cerebelum__V1__GetExecutionResponse *grep = NULL;
    g.execution_id = "huge";
    rc = CALL(big, RPC_GET_EXECUTION, g, &grep, &st);
    fprintf(stderr, "5 MiB reply -> %s \"%s\"\n", rpc_status_name(st.code), st.message);
    expect_status(rc, &st, GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_null(grep);

    rpc_client_destroy(cl);
    rpc_client_destroy(big);
    fx_stop(&fx);
    free(huge);
}

static void test_port_in_use(void **state)
{
    fx_t a, b;
    char addr[64];
    fx_init(&a, "127.0.0.1:0");
    assert_int_equal(fx_start(&a), 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", rpc_server_port(a.srv));
    fx_init(&b, addr);
    int rc = fx_start(&b);
    fprintf(stderr, "second bind: rc=%d \"%s\"\n", rc, b.err.message);
    assert_int_equal(rc, CBM_EIO);
    assert_null(b.srv);
    fx_stop(&b);
    fx_stop(&a);
}

static void test_bad_options(void **state)
{
    fx_t fx;
    fx_init(&fx, "127.0.0.1:0");
    fx.opts.tls_cert_pem = "x"; /* cert without key */
    assert_int_equal(fx_start(&fx), CBM_EINVAL);
    fx_stop(&fx);
    fx_init(&fx, "");
    assert_int_equal(fx_start(&fx), CBM_EINVAL);
    fx_stop(&fx);
    fx_init(&fx, "127.0.0.1:0");
    fx.opts.tls_cert_pem = "not a pem";
    fx.opts.tls_key_pem = "not a pem";
    int rc = fx_start(&fx);
    fprintf(stderr, "garbage TLS material: rc=%d \"%s\"\n", rc, fx.err.message);
    assert_int_equal(rc, CBM_EIO);
    fx_stop(&fx);
    fx_init(&fx, "127.0.0.1:0");
    fx.opts.token = ""; /* an empty token would accept "Bearer " */
    assert_int_equal(fx_start(&fx), CBM_EINVAL);
    fx_stop(&fx);
}

static void test_nobody_listening(void **state)
{
    fx_t fx;
    rpc_status_t st;
    char target[300];
    fx_init(&fx, "127.0.0.1:0");
    assert_int_equal(fx_start(&fx), 0);
    snprintf(target, sizeof(target), "%s", fx.target);
    fx_stop(&fx); /* the port is free again */

    rpc_client_options_t o = {0};
    rpc_client_t *cl = NULL;
    o.target = target;
    assert_int_equal(rpc_client_create(&o, &cl, NULL), 0);
    Cerebelum__V1__ListWorkersRequest r = CEREBELUM__V1__LIST_WORKERS_REQUEST__INIT;
    Cerebelum__V1__ListWorkersResponse *rep = NULL;
    int rc = CALL(cl, RPC_LIST_WORKERS, r, &rep, &st);
    expect_status(rc, &st, GRPC_STATUS_UNAVAILABLE);
    assert_int_equal(rc, CBM_EUNAVAIL);
    rpc_client_destroy(cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_rpcs_tcp),
        cmocka_unit_test(test_all_rpcs_unix),
        cmocka_unit_test(test_unknown_method),
        cmocka_unit_test(test_method_without_handler),
        cmocka_unit_test(test_invalid_argument),
        cmocka_unit_test(test_resource_exhausted),
        cmocka_unit_test(test_port_in_use),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_nobody_listening),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
