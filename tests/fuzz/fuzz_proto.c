/*
 * fuzz_proto.c - the gRPC request decoders: protobuf-c unpack of the request
 * message of each method `cerebelum serve` accepts (WorkerService and
 * WorkflowService), as the transport decodes a call (server.c, decode), then
 * what the server does with a decoded request that can run without a server.
 *
 * The decoder is the transport's, rpc_message_unpack (protobuf-c's unpack
 * and a check of field numbers).
 *
 * Input: one byte that picks the method (modulo RPC_METHOD_COUNT, in the
 * order of RPC_METHOD_MAP), then the serialized request.
 *
 * For every request that decodes:
 *  - every field is read (strings, bytes, repeated fields, sub-messages,
 *    maps), so ASan sees a decoded message that points outside itself;
 *  - it is copied as the WorkflowService copies each request for its job
 *    (pack, unpack: copy_message in cli/service.c), which must succeed and
 *    pack to the same bytes;
 *  - the conversions the handlers make: RegisterBlueprint's blueprint_json
 *    through bp_parse_json; PutCouncil's council_json through
 *    council_parse; StartExecution's inputs_json through
 *    bp_check_inputs (against the fixed blueprint); Approve and Signal's
 *    data_json through json_normalize (cbm_execution_approve/_signal);
 *    SubmitResult through cbm_step_ok/_fail/_sleep/_approval as on_submit
 *    does, and the outcome, made into the step's event as the runtime does
 *    (rt_outcome_event), decided on an execution whose remote step "b" runs
 *    attempt 1 (dec_build), with the history refolded (fz_check_decision).
 *
 * Not reached: the handlers' own checks in cli/ (precheck, name_ok,
 * parse_task_id, on_register, on_heartbeat) are static and answer through a
 * live rpc_call_t; they need a running server (tests/proto, tests/cli).
 */
#include <string.h>
#include <uuid/uuid.h>

#include "engine/council.h"
#include "engine/decision.h"
#include "engine/runtime_internal.h"
#include "fuzz_common.h"
#include "grpc_transport.h"
#include "sdk-c/engine_remote.h"

/* Touch every byte a decoded message points to; returns a checksum so the
 * reads are not optimised away. */
static size_t walk(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    size_t sum = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m + f->offset;
        size_t count = 1;
        const void *elems = base;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
            continue; /* another member of its oneof is the one set */
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            count = *(const size_t *)((const char *)m + f->quantifier_offset);
            elems = *(void *const *)base;
            if (count > 0) FZ_CHECK(elems != NULL, "repeated %s: NULL array", f->name);
        }
        for (size_t k = 0; k < count; k++) {
            switch (f->type) {
            case PROTOBUF_C_TYPE_STRING: {
                const char *s = ((const char *const *)elems)[k];
                if (s != NULL) sum += strlen(s);
                break;
            }
            case PROTOBUF_C_TYPE_BYTES: {
                const ProtobufCBinaryData *b = &((const ProtobufCBinaryData *)elems)[k];
                for (size_t j = 0; j < b->len; j++) sum += b->data[j];
                break;
            }
            case PROTOBUF_C_TYPE_MESSAGE: {
                const ProtobufCMessage *sub = ((const ProtobufCMessage *const *)elems)[k];
                if (sub != NULL) sum += walk(sub);
                break;
            }
            default:
                sum += (unsigned char)((const char *)elems)[k];
                break;
            }
        }
    }
    return sum;
}

/* copy_message of cli/service.c, and the bytes must survive it (a request
 * with a field numbered 0 did not: commit d9f0edd). */
static void check_copy(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m), n2;
    uint8_t *buf = malloc(n ? n : 1), *buf2;
    ProtobufCMessage *copy;
    FZ_CHECK(buf != NULL, "out of memory");
    FZ_CHECK(protobuf_c_message_pack(m, buf) == n, "pack size differs from get_packed_size");
    copy = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
    FZ_CHECK(copy != NULL, "%s: a decoded request does not decode again after packing",
             m->descriptor->name);
    n2 = protobuf_c_message_get_packed_size(copy);
    buf2 = malloc(n2 ? n2 : 1);
    FZ_CHECK(buf2 != NULL, "out of memory");
    protobuf_c_message_pack(copy, buf2);
    FZ_CHECK(n2 == n && memcmp(buf, buf2, n) == 0, "%s: the copy packs differently",
             m->descriptor->name);
    free(buf2);
    free(buf);
    protobuf_c_message_free_unpacked(copy, NULL);
}

static void normalize(const char *json, const char *dflt)
{
    free(json_normalize(json[0] != '\0' ? json : dflt));
}

/* The history on which a worker's result lands: "b" (queue q) runs attempt 1. */
static const char *const base_history[][2] = {
    {"ExecutionStarted", "{\"blueprint\":\"fz\",\"version\":\"%s\",\"inputs\":{\"n\":1}}"},
    {"StepScheduled", "{\"step\":\"a\",\"attempt\":1}"},
    {"StepCompleted", "{\"step\":\"a\",\"attempt\":1,\"result\":{\"v\":1}}"},
    {"StepScheduled", "{\"step\":\"b\",\"attempt\":1}"},
};
#define NBASE (sizeof(base_history) / sizeof(base_history[0]))

/* The outcome as the runtime makes it into the step's event
 * (rt_outcome_event, engine/runtime.c), then decided. */
static void decide_outcome(struct cbm_step_out *out)
{
    const bp_blueprint_t *bp = fz_blueprint();
    static char started[256];
    store_event_t evs[NBASE];
    eng_event_t ev = {0};
    st_exec_t st;
    cbm_error_t err = {0};
    int64_t now;

    snprintf(started, sizeof(started), base_history[0][1], bp->version);
    for (size_t i = 0; i < NBASE; i++) {
        memset(&evs[i], 0, sizeof(evs[i]));
        evs[i].seq = (int64_t)i + 1;
        evs[i].recorded_at_us = fz_event_time(evs[i].seq);
        evs[i].type = (char *)base_history[i][0];
        evs[i].payload = i == 0 ? started : (char *)base_history[i][1];
    }
    FZ_CHECK(dec_fold(&st, FZ_EXECUTION_ID, bp, NULL, evs, NBASE, &err) == 0,
             "the base history does not fold: %s", err.message);
    now = fz_event_time(st.seq) + 500;
    ev.step = bp_step_index(bp, "b");
    ev.attempt = 1;
    switch (out->kind) {
    case CBM_OUT_OK:
        ev.type = EV_STEP_COMPLETED;
        ev.json = out->result;
        out->result = NULL;
        break;
    case CBM_OUT_SLEEP:
        ev.type = EV_SLEEP_STARTED;
        ev.json = out->result;
        ev.due_us = now + out->ms * 1000;
        out->result = NULL;
        break;
    case CBM_OUT_APPROVAL:
        ev.type = EV_APPROVAL_REQUESTED;
        ev.json = out->result;
        ev.name = out->type;
        ev.timeout_ms = out->ms;
        ev.due_us = out->ms > 0 ? now + out->ms * 1000 : 0;
        out->result = NULL;
        out->type = NULL;
        break;
    default:
        ev.type = EV_STEP_FAILED;
        ev.json = out->error;
        out->error = NULL;
        break;
    }
    fz_check_decision(&st, evs, NBASE, &ev, 1);
    st_finish(&st);
}

/* on_submit (cli/worker_service.c), from the status on. */
static void submit(const Cerebelum__V1__SubmitResultRequest *rq)
{
    struct cbm_step_out *out = cbm__step_out_new();
    int rc;
    FZ_CHECK(out != NULL, "out of memory");
    switch (rq->status) {
    case CEREBELUM__V1__TASK_STATUS__SUCCESS:
        rc = cbm_step_ok(out, rq->result_json[0] ? rq->result_json : "null");
        break;
    case CEREBELUM__V1__TASK_STATUS__FAILED:
        if (rq->error == NULL || rq->error->kind[0] == '\0') goto bad;
        rc = cbm_step_fail(out, rq->error->kind, rq->error->message, rq->error->retryable);
        break;
    case CEREBELUM__V1__TASK_STATUS__SLEEP:
        if (rq->sleep == NULL) goto bad;
        rc = cbm_step_sleep(out, rq->sleep->data_json[0] ? rq->sleep->data_json : "null",
                            rq->sleep->duration_ms > INT64_MAX ? INT64_MAX
                                                               : (int64_t)rq->sleep->duration_ms);
        break;
    case CEREBELUM__V1__TASK_STATUS__APPROVAL:
        if (rq->approval == NULL) goto bad;
        rc = cbm_step_approval(out, rq->approval->type,
                               rq->approval->data_json[0] ? rq->approval->data_json : "null",
                               rq->approval->timeout_ms > INT64_MAX
                                   ? INT64_MAX
                                   : (int64_t)rq->approval->timeout_ms);
        break;
    default:
        goto bad;
    }
    if (rc == 0) decide_outcome(out);
bad:
    cbm__step_out_free(out);
}

static void convert(rpc_method_t m, const ProtobufCMessage *msg)
{
    uuid_t u;
    switch (m) {
    case RPC_REGISTER_BLUEPRINT: {
        const Cerebelum__V1__RegisterBlueprintRequest *rq = (const void *)msg;
        bp_blueprint_t *bp = NULL;
        cbm_error_t err = {0};
        if (bp_parse_json(rq->blueprint_json, strlen(rq->blueprint_json), &bp, &err) == 0)
            bp_destroy(bp);
        break;
    }
    case RPC_PUT_COUNCIL: {
        const Cerebelum__V1__PutCouncilRequest *rq = (const void *)msg;
        council_t *c = NULL;
        if (council_parse(rq->council_json, strlen(rq->council_json), &c, NULL) == 0)
            council_destroy(c);
        break;
    }
    case RPC_START_EXECUTION: {
        const Cerebelum__V1__StartExecutionRequest *rq = (const void *)msg;
        char *norm = NULL;
        cbm_error_t err = {0};
        if (bp_check_inputs(fz_blueprint(), rq->inputs_json, &norm, &err) == 0) cJSON_free(norm);
        break;
    }
    case RPC_APPROVE: {
        const Cerebelum__V1__ApproveRequest *rq = (const void *)msg;
        (void)uuid_parse(rq->execution_id, u);
        normalize(rq->data_json, "{}");
        break;
    }
    case RPC_SIGNAL: {
        const Cerebelum__V1__SignalRequest *rq = (const void *)msg;
        (void)uuid_parse(rq->execution_id, u);
        normalize(rq->data_json, "null");
        break;
    }
    case RPC_SUBMIT_RESULT:
        submit((const void *)msg);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rpc_method_t m;
    const ProtobufCMessageDescriptor *d;
    ProtobufCMessage *msg;
    volatile size_t sum;

    if (size < 1) return 0;
    m = (rpc_method_t)(data[0] % RPC_METHOD_COUNT);
    d = rpc_method_input(m);
    FZ_CHECK(d != NULL, "method %d has no input type", (int)m);
    msg = rpc_message_unpack(d, size - 1, data + 1);
    if (msg == NULL) return 0;
    FZ_CHECK(msg->descriptor == d, "unpacked as another type");
    sum = walk(msg);
    (void)sum;
    check_copy(msg);
    convert(m, msg);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
}
