/*
 * workflow_service.c - WorkflowService handlers of the server (server.c; see
 * workflow_service.h).
 *
 * Life of a call: handler (loop) -> job on the thread pool (blocking engine
 * calls, builds the reply message) -> after-work (loop) -> rpc_call_reply or
 * rpc_call_fail. The request belongs to the call and dies with it, so the
 * handler unpacks a private copy for the job. Replies are built from malloc'd
 * pieces only, so protobuf_c_message_free_unpacked() frees them (unset string
 * fields keep protobuf-c's shared empty default, which it knows not to free).
 *
 * What the engine API cannot say yet, and how this file copes:
 *   - Approve/Reject/Signal/Cancel `seq`: the engine does not return it, so
 *     it is looked up in the history afterwards (the latest matching event).
 *   - Approve/Reject without a step: the one step whose latest event is
 *     ApprovalRequested, found by folding the history.
 *   - GetExecution `state_json`: folded here from the history (each step's
 *     latest event), not read from the engine's reducer.
 */
#include "workflow_service.h"

#include <cJSON.h>
#include <ctype.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "cbm_internal.h"
#include "sdk-c/engine_internal.h"

typedef struct job {
    uv_work_t req;
    svc_t *svc;
    rpc_call_t *call;      /* NULL once the call is gone */
    rpc_method_t method;
    ProtobufCMessage *in;  /* private copy of the request */
    ProtobufCMessage *out; /* the reply, built by the work */
    int rc;
    cbm_error_t err;
} job_t;

grpc_status_code svc_status_of(int rc)
{
    switch (rc) {
    case 0: return GRPC_STATUS_OK;
    case CBM_EINVAL:
    case CBM_EJSON:
    case CBM_EBLUEPRINT: return GRPC_STATUS_INVALID_ARGUMENT;
    case CBM_ENOTFOUND: return GRPC_STATUS_NOT_FOUND;
    case CBM_ESTATE:
    case CBM_EHANDLER: return GRPC_STATUS_FAILED_PRECONDITION;
    case CBM_EUNAVAIL:
    case CBM_ESHUTDOWN:
    case CBM_EFENCED: return GRPC_STATUS_UNAVAILABLE;
    case CBM_ETIMEDOUT: return GRPC_STATUS_DEADLINE_EXCEEDED;
    case CBM_ECONFLICT: return GRPC_STATUS_ABORTED;
    case CBM_EEXIST: return GRPC_STATUS_ALREADY_EXISTS;
    case CBM_ENOMEM: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    default: return GRPC_STATUS_INTERNAL;
    }
}

/*
 * An error to a client. Errors of the request itself (invalid, not found,
 * conflicting...) carry the engine's own message, which names what is
 * wrong. Errors of the server (the store, memory, I/O, a fenced engine)
 * carry no detail that could hold SQL or a server's words: a stable message
 * and a reference, and the detail goes to the log under that reference.
 * Either way the message is one line.
 */
void svc_error_text(int rc, const char *detail, char *msg, size_t cap)
{
    switch (rc) {
    case CBM_EINVAL: case CBM_EJSON: case CBM_EBLUEPRINT: case CBM_ENOTFOUND:
    case CBM_ESTATE: case CBM_EHANDLER: case CBM_ETIMEDOUT: case CBM_ECONFLICT:
    case CBM_EEXIST: case CBM_ESHUTDOWN:
        snprintf(msg, cap, "%s", detail != NULL && *detail ? detail : cbm_strerror(rc));
        break;
    default: {
        unsigned char r[4];
        char ref[9];
        if (RAND_bytes(r, sizeof(r)) != 1) memset(r, 0, sizeof(r));
        snprintf(ref, sizeof(ref), "%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
        cbm_log_error("ref %s: %s: %s", ref, cbm_err_name(rc), detail != NULL ? detail : "");
        snprintf(msg, cap, "%s (ref %s; the server's log has the detail)", cbm_strerror(rc),
                 ref);
    }
    }
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

void svc_fail(rpc_call_t *call, int rc, const char *detail)
{
    char msg[600];
    svc_error_text(rc, detail, msg, sizeof(msg));
    rpc_call_fail(call, svc_status_of(rc), "%s", msg);
}

static int fail(job_t *j, int rc, const char *msg)
{
    j->rc = rc;
    snprintf(j->err.message, sizeof(j->err.message), "%s", msg);
    return rc;
}

/* A reply message on the heap, initialised from its INIT value; NULL (and
 * the job failed with CBM_ENOMEM) when out of memory. */
static void *alloc_msg(job_t *j, const void *init, size_t size)
{
    void *m = malloc(size);
    if (m == NULL) {
        fail(j, CBM_ENOMEM, "out of memory");
        return NULL;
    }
    memcpy(m, init, size);
    return m;
}
#define NEW(T, INIT, j) ((T *)alloc_msg((j), &(T)INIT, sizeof(T)))

/* ---- executions ------------------------------------------------------------ */

static const struct {
    const char *name;
    Cerebelum__V1__ExecutionStatus code;
} statuses[] = {
    {"running", CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_RUNNING},
    {"sleeping", CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_SLEEPING},
    {"awaiting_approval", CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_AWAITING_APPROVAL},
    {"awaiting_signal", CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_AWAITING_SIGNAL},
    {"completed", CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_COMPLETED},
    {"failed", CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_FAILED},
    {"cancelled", CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_CANCELLED},
    {"awaiting_child", CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_AWAITING_CHILD},
};
#define NSTATUSES (sizeof(statuses) / sizeof(statuses[0]))

static Cerebelum__V1__ExecutionStatus status_code(const char *name)
{
    for (size_t i = 0; name != NULL && i < NSTATUSES; i++)
        if (strcmp(name, statuses[i].name) == 0) return statuses[i].code;
    return CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_UNSPECIFIED;
}

static const char *status_name(Cerebelum__V1__ExecutionStatus code)
{
    for (size_t i = 0; i < NSTATUSES; i++)
        if (statuses[i].code == code) return statuses[i].name;
    return NULL;
}

static int is_final(Cerebelum__V1__ExecutionStatus s)
{
    return s == CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_COMPLETED ||
           s == CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_FAILED ||
           s == CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_CANCELLED;
}

/* An optional string field: proto3's "" is "not given". */
static const char *opt(const char *s)
{
    return s[0] != '\0' ? s : NULL;
}

/* strdup of a string that may be NULL; sets *bad on out-of-memory. */
static char *dup_or_empty(const char *s, int *bad)
{
    char *d;
    if (s == NULL || s[0] == '\0') return (char *)protobuf_c_empty_string;
    if ((d = strdup(s)) == NULL) {
        *bad = 1;
        return (char *)protobuf_c_empty_string;
    }
    return d;
}

static Cerebelum__V1__Execution *execution_msg(job_t *j, const cbm_execution_info_t *x)
{
    Cerebelum__V1__Execution *m = NEW(Cerebelum__V1__Execution, CEREBELUM__V1__EXECUTION__INIT, j);
    int bad = 0;

    if (m == NULL) return NULL;
    m->execution_id = dup_or_empty(x->id, &bad);
    m->blueprint = dup_or_empty(x->blueprint, &bad);
    m->version = dup_or_empty(x->version, &bad);
    m->status = status_code(x->status);
    m->inputs_json = dup_or_empty(x->inputs, &bad);
    m->result_json = dup_or_empty(x->result, &bad);
    m->error_json = dup_or_empty(x->error, &bad);
    m->started_at_ms = x->created_at_us / 1000;
    m->updated_at_ms = x->updated_at_us / 1000;
    m->finished_at_ms = is_final(m->status) ? m->updated_at_ms : 0;
    m->last_seq = x->last_seq > 0 ? (uint64_t)x->last_seq : 0;
    m->idempotency_key = dup_or_empty(x->idempotency_key, &bad);
    if (bad) {
        protobuf_c_message_free_unpacked(&m->base, NULL);
        fail(j, CBM_ENOMEM, "out of memory");
        return NULL;
    }
    return m;
}

/* "StepRetryScheduled" -> "retry_scheduled", "ApprovalRequested" ->
 * "approval_requested": a step's status is the name of its latest event. */
static void event_status(const char *type, char *out, size_t cap)
{
    size_t n = 0;
    if (strncmp(type, "Step", 4) == 0 && isupper((unsigned char)type[4])) type += 4;
    for (const char *p = type; *p != '\0' && n + 2 < cap; p++) {
        if (isupper((unsigned char)*p) && p != type) out[n++] = '_';
        out[n++] = (char)tolower((unsigned char)*p);
    }
    out[n] = '\0';
}

/* Set a step's outcome in the state from an event that ends it: its result
 * or error (an approval's decision is the step's result, a rejection or a
 * time-out its error, as cerebelum.h describes). */
static int fold_outcome(cJSON *s, const char *type, cJSON *payload)
{
    const char *status = NULL, *key = NULL;
    cJSON *v = NULL;

    if (strcmp(type, "StepCompleted") == 0) {
        status = "completed";
        key = "result";
        v = cJSON_DetachItemFromObjectCaseSensitive(payload, "result");
    } else if (strcmp(type, "StepFailed") == 0) {
        status = "failed";
        key = "error";
        v = cJSON_DetachItemFromObjectCaseSensitive(payload, "error");
    } else if (strcmp(type, "ApprovalGranted") == 0) {
        status = "completed";
        key = "result";
        v = cJSON_DetachItemFromObjectCaseSensitive(payload, "response");
    } else if (strcmp(type, "ApprovalRejected") == 0 || strcmp(type, "ApprovalTimedOut") == 0) {
        const cJSON *reason = cJSON_GetObjectItemCaseSensitive(payload, "reason");
        status = "failed";
        key = "error";
        if ((v = cJSON_CreateObject()) == NULL) return -1;
        cJSON_AddStringToObject(v, "kind", type[8] == 'R' ? "approval_rejected"
                                                          : "approval_timeout");
        cJSON_AddStringToObject(v, "message", cJSON_IsString(reason) ? reason->valuestring : "");
    } else {
        return 0;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(s, "status");
    cJSON_DeleteItemFromObjectCaseSensitive(s, "result");
    cJSON_DeleteItemFromObjectCaseSensitive(s, "error");
    if (cJSON_AddStringToObject(s, "status", status) == NULL) {
        cJSON_Delete(v);
        return -1;
    }
    if (v != NULL) cJSON_AddItemToObject(s, key, v);
    return 0;
}

/* The reduced state as the protocol describes it, folded from the history:
 * {"steps": {"<step>": {"status", "attempt", "result" | "error"}}}, steps in
 * the order they first appear. A step's status is its latest event's name
 * ("scheduled", "approval_requested", ...), or completed/failed once an
 * event ended it. Events without a "step" are skipped, so a signal step
 * stays "scheduled" after its signal came (SignalReceived names the signal,
 * not the step, and the blueprint is not at hand here). */
static cJSON *state_tree(const cbm_event_t *evs, size_t n)
{
    cJSON *root = cJSON_CreateObject(), *steps = cJSON_AddObjectToObject(root, "steps");

    if (root == NULL || steps == NULL) goto oom;
    for (size_t i = 0; i < n; i++) {
        cJSON *p = cJSON_Parse(evs[i].payload);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(p, "step");
        const cJSON *attempt = cJSON_GetObjectItemCaseSensitive(p, "attempt");
        cJSON *s;
        char status[64];

        /* A remote result that came too late or twice changes nothing. */
        if (!cJSON_IsString(name) || strcmp(evs[i].type, "ResultIgnored") == 0) {
            cJSON_Delete(p);
            continue;
        }
        s = cJSON_GetObjectItemCaseSensitive(steps, name->valuestring);
        if (s == NULL && (s = cJSON_AddObjectToObject(steps, name->valuestring)) == NULL) {
            cJSON_Delete(p);
            goto oom;
        }
        event_status(evs[i].type, status, sizeof(status));
        cJSON_DeleteItemFromObjectCaseSensitive(s, "status");
        cJSON_AddStringToObject(s, "status", status);
        if (cJSON_IsNumber(attempt)) {
            cJSON_DeleteItemFromObjectCaseSensitive(s, "attempt");
            cJSON_AddNumberToObject(s, "attempt", attempt->valuedouble);
        }
        if (fold_outcome(s, evs[i].type, p) != 0) {
            cJSON_Delete(p);
            goto oom;
        }
        cJSON_Delete(p);
    }
    return root;
oom:
    cJSON_Delete(root);
    return NULL;
}

static char *state_from_history(const cbm_event_t *evs, size_t n)
{
    cJSON *root = state_tree(evs, n);
    char *out = root != NULL ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return out;
}

/* ---- the work of each method (thread pool) --------------------------------- */

static void do_register(job_t *j)
{
    const Cerebelum__V1__RegisterBlueprintRequest *rq = (const void *)j->in;
    Cerebelum__V1__RegisterBlueprintResponse *rp;
    char version[65];
    cJSON *doc, *name;
    bool created = false;
    int bad = 0;

    if (rq->blueprint_json[0] == '\0') {
        fail(j, CBM_EINVAL, "blueprint_json is empty");
        return;
    }
    if ((j->rc = cbm_engine_put_blueprint(j->svc->engine, rq->blueprint_json, version, &created,
                                          &j->err)) != 0)
        return;
    rp = NEW(Cerebelum__V1__RegisterBlueprintResponse,
             CEREBELUM__V1__REGISTER_BLUEPRINT_RESPONSE__INIT, j);
    if (rp == NULL) return;
    /* It validated, so it parses and has a name. */
    doc = cJSON_Parse(rq->blueprint_json);
    name = cJSON_GetObjectItemCaseSensitive(doc, "name");
    rp->name = dup_or_empty(cJSON_IsString(name) ? name->valuestring : NULL, &bad);
    cJSON_Delete(doc);
    rp->version = dup_or_empty(version, &bad);
    rp->created = created;
    j->out = &rp->base;
    if (bad) fail(j, CBM_ENOMEM, "out of memory");
}

static void do_start(job_t *j)
{
    const Cerebelum__V1__StartExecutionRequest *rq = (const void *)j->in;
    Cerebelum__V1__StartExecutionResponse *rp;
    cbm_execution_info_t *x = NULL;
    cbm_start_opts_t so = {0};
    bool created = false;
    char id[37];
    int bad = 0;

    so.idempotency_key = opt(rq->idempotency_key);
    so.version = opt(rq->version);
    if ((j->rc = cbm_execution_start_opts(j->svc->engine, rq->blueprint, opt(rq->inputs_json),
                                          &so, id, &created, &j->err)) != 0)
        return;
    /* The version it runs: read back, since start does not return it. A
     * failure here does not undo the start, so it is not an error. */
    cbm_execution_get(j->svc->engine, id, &x, NULL);
    rp = NEW(Cerebelum__V1__StartExecutionResponse,
             CEREBELUM__V1__START_EXECUTION_RESPONSE__INIT, j);
    if (rp != NULL) {
        rp->execution_id = dup_or_empty(id, &bad);
        rp->created = created;
        rp->version = dup_or_empty(x != NULL ? x->version : NULL, &bad);
        j->out = &rp->base;
        if (bad) fail(j, CBM_ENOMEM, "out of memory");
    }
    cbm_execution_info_free(x);
}

/* Each step's outcome from the engine's own reducer (cbm__engine_state):
 * a finished step's status, result and error, and a child step's child id,
 * replace what the history fold read, so that what a step's result is (a
 * deliberation's is its child's select result, unwrapped) is said in one
 * place, the engine. The in-progress statuses stay the events' names. */
static int engine_outcomes(job_t *j, const char *id, char **state)
{
    char *json = NULL;
    cJSON *mine = NULL, *eng = NULL, *steps, *s;
    int rc = cbm__engine_state(j->svc->engine, id, &json, &j->err);

    if (rc != 0) return rc;
    mine = cJSON_Parse(*state);
    eng = cJSON_Parse(json);
    free(json);
    if (mine == NULL || eng == NULL) goto oom;
    steps = cJSON_GetObjectItemCaseSensitive(mine, "steps");
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(eng, "steps"))
    {
        const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "status"));
        cJSON *m = cJSON_GetObjectItemCaseSensitive(steps, s->string), *v;
        bool done = st != NULL && (strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0);
        const char *child = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "child"));
        if (m == NULL) continue; /* never started */
        if (child != NULL) {
            cJSON_DeleteItemFromObjectCaseSensitive(m, "child");
            if (cJSON_AddStringToObject(m, "child", child) == NULL) goto oom;
        }
        if (!done) continue;
        cJSON_DeleteItemFromObjectCaseSensitive(m, "status");
        cJSON_DeleteItemFromObjectCaseSensitive(m, "result");
        cJSON_DeleteItemFromObjectCaseSensitive(m, "error");
        if (cJSON_AddStringToObject(m, "status", st) == NULL) goto oom;
        v = cJSON_DetachItemFromObjectCaseSensitive(s, st[0] == 'c' ? "result" : "error");
        if (v != NULL) cJSON_AddItemToObject(m, st[0] == 'c' ? "result" : "error", v);
    }
    if ((json = cJSON_PrintUnformatted(mine)) == NULL) goto oom;
    free(*state);
    *state = json;
    cJSON_Delete(mine);
    cJSON_Delete(eng);
    return 0;
oom:
    cJSON_Delete(mine);
    cJSON_Delete(eng);
    return cbm_error_set(&j->err, CBM_ENOMEM, "out of memory");
}

static void do_get(job_t *j)
{
    const Cerebelum__V1__GetExecutionRequest *rq = (const void *)j->in;
    Cerebelum__V1__GetExecutionResponse *rp;
    cbm_execution_info_t *x = NULL;
    cbm_event_t *evs = NULL;
    size_t n = 0;
    char *state;

    if ((j->rc = cbm_execution_get(j->svc->engine, rq->execution_id, &x, &j->err)) != 0) return;
    if ((j->rc = cbm_execution_history(j->svc->engine, rq->execution_id, 1, &evs, &n,
                                       &j->err)) != 0)
        goto out;
    rp = NEW(Cerebelum__V1__GetExecutionResponse, CEREBELUM__V1__GET_EXECUTION_RESPONSE__INIT, j);
    if (rp == NULL) goto out;
    j->out = &rp->base;
    if ((rp->execution = execution_msg(j, x)) == NULL) goto out;
    if ((state = state_from_history(evs, n)) == NULL ||
        (j->rc = engine_outcomes(j, rq->execution_id, &state)) != 0) {
        free(state);
        if (j->rc == 0) fail(j, CBM_ENOMEM, "out of memory");
        goto out;
    }
    rp->state_json = state;
out:
    cbm_events_free(evs, n);
    cbm_execution_info_free(x);
}

static void do_list(job_t *j)
{
    const Cerebelum__V1__ListExecutionsRequest *rq = (const void *)j->in;
    Cerebelum__V1__ListExecutionsResponse *rp;
    cbm_list_opts_t lo = {0};
    cbm_execution_info_t *xs = NULL;
    size_t n = 0;

    if (rq->status != CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_UNSPECIFIED &&
        (lo.status = status_name(rq->status)) == NULL) {
        fail(j, CBM_EINVAL, "unknown status filter");
        return;
    }
    lo.blueprint = opt(rq->blueprint);
    lo.after = opt(rq->after);
    lo.newest_first = true; /* docs/protocol.md */
    lo.limit = rq->limit == 0 ? 50 : rq->limit > 1000 ? 1000 : rq->limit;
    if ((j->rc = cbm_execution_list(j->svc->engine, &lo, &xs, &n, &j->err)) != 0) return;
    rp = NEW(Cerebelum__V1__ListExecutionsResponse,
             CEREBELUM__V1__LIST_EXECUTIONS_RESPONSE__INIT, j);
    if (rp == NULL) goto out;
    j->out = &rp->base;
    if (n > 0 && (rp->executions = calloc(n, sizeof(*rp->executions))) == NULL) {
        fail(j, CBM_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if ((rp->executions[i] = execution_msg(j, &xs[i])) == NULL) goto out;
        rp->n_executions++;
    }
    /* A full page may have a successor; an empty next page then ends it. */
    if (n == lo.limit) {
        int bad = 0;
        rp->next_after = dup_or_empty(xs[n - 1].id, &bad);
        if (bad) fail(j, CBM_ENOMEM, "out of memory");
    }
out:
    cbm_execution_infos_free(xs, n);
}

static void do_history(job_t *j)
{
    const Cerebelum__V1__GetHistoryRequest *rq = (const void *)j->in;
    Cerebelum__V1__GetHistoryResponse *rp;
    cbm_execution_info_t *x = NULL;
    cbm_event_t *evs = NULL;
    size_t n = 0, take, limit = rq->limit == 0 ? 1000 : rq->limit > 10000 ? 10000 : rq->limit;
    int64_t from = rq->after_seq >= INT64_MAX ? INT64_MAX : (int64_t)rq->after_seq + 1;

    if ((j->rc = cbm_execution_history(j->svc->engine, rq->execution_id, from, &evs, &n,
                                       &j->err)) != 0)
        return;
    /* The store returns no events for an unknown id: tell that apart. */
    if (n == 0 && (j->rc = cbm_execution_get(j->svc->engine, rq->execution_id, &x,
                                             &j->err)) != 0)
        goto out;
    rp = NEW(Cerebelum__V1__GetHistoryResponse, CEREBELUM__V1__GET_HISTORY_RESPONSE__INIT, j);
    if (rp == NULL) goto out;
    j->out = &rp->base;
    rp->more = n > limit;
    take = n > limit ? limit : n;
    if (take > 0 && (rp->events = calloc(take, sizeof(*rp->events))) == NULL) {
        fail(j, CBM_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < take; i++) {
        Cerebelum__V1__Event *e = NEW(Cerebelum__V1__Event, CEREBELUM__V1__EVENT__INIT, j);
        int bad = 0;
        if (e == NULL) goto out;
        rp->events[rp->n_events++] = e;
        e->seq = evs[i].seq > 0 ? (uint64_t)evs[i].seq : 0;
        e->type = dup_or_empty(evs[i].type, &bad);
        e->payload_json = dup_or_empty(evs[i].payload, &bad);
        e->recorded_at_ms = evs[i].recorded_at_us / 1000;
        if (bad) {
            fail(j, CBM_ENOMEM, "out of memory");
            goto out;
        }
    }
out:
    cbm_events_free(evs, n);
    cbm_execution_info_free(x);
}

/* ---- decisions ----------------------------------------------------------------- */

/* The seq of the latest event of @p type (whose payload's @p key is @p value,
 * when key is set): the protocol's answer to a decision, which the engine
 * API does not return. 0 if it cannot be read; the decision stands anyway. */
static uint64_t find_seq(job_t *j, const char *id, const char *type, const char *key,
                         const char *value)
{
    cbm_event_t *evs = NULL;
    size_t n = 0;
    uint64_t seq = 0;

    if (cbm_execution_history(j->svc->engine, id, 1, &evs, &n, NULL) != 0) return 0;
    for (size_t i = n; i-- > 0 && seq == 0;) {
        cJSON *p;
        const cJSON *v;
        if (strcmp(evs[i].type, type) != 0) continue;
        if (key == NULL) {
            seq = (uint64_t)evs[i].seq;
            break;
        }
        p = cJSON_Parse(evs[i].payload);
        v = cJSON_GetObjectItemCaseSensitive(p, key);
        if (cJSON_IsString(v) && strcmp(v->valuestring, value) == 0) seq = (uint64_t)evs[i].seq;
        cJSON_Delete(p);
    }
    cbm_events_free(evs, n);
    return seq;
}

/* No step named: the protocol means "the only one waiting for an approval".
 * *step is malloc'd. */
static int waiting_step(job_t *j, const char *id, char **step)
{
    cbm_event_t *evs = NULL;
    size_t n = 0;
    cJSON *state, *s;
    char names[256] = "";
    int count = 0, rc;

    *step = NULL;
    if ((rc = cbm_execution_history(j->svc->engine, id, 1, &evs, &n, &j->err)) != 0)
        return j->rc = rc;
    state = state_tree(evs, n);
    cbm_events_free(evs, n);
    if (state == NULL) return fail(j, CBM_ENOMEM, "out of memory");
    if (n == 0) { /* every execution has at least its ExecutionStarted */
        cJSON_Delete(state);
        j->rc = CBM_ENOTFOUND;
        snprintf(j->err.message, sizeof(j->err.message), "no execution %s", id);
        return CBM_ENOTFOUND;
    }
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(state, "steps")) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(s, "status");
        if (!cJSON_IsString(st) || strcmp(st->valuestring, "approval_requested") != 0) continue;
        if (count++ == 0) *step = strdup(s->string);
        snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
                 count > 1 ? ", " : "", s->string);
    }
    cJSON_Delete(state);
    if (count == 1) return *step != NULL ? 0 : fail(j, CBM_ENOMEM, "out of memory");
    free(*step);
    *step = NULL;
    if (count == 0) return fail(j, CBM_ESTATE, "no step of the execution waits for an approval");
    j->rc = CBM_ESTATE;
    snprintf(j->err.message, sizeof(j->err.message),
             "%d steps wait for an approval (%s): name one", count, names);
    return CBM_ESTATE;
}

/* Approve and Reject share all but the engine call and the event. */
static void do_decide_approval(job_t *j, int approve)
{
    const Cerebelum__V1__ApproveRequest *ap = approve ? (const void *)j->in : NULL;
    const Cerebelum__V1__RejectRequest *rj = approve ? NULL : (const void *)j->in;
    const char *id = approve ? ap->execution_id : rj->execution_id;
    const char *given = approve ? ap->step : rj->step;
    const char *actor = approve ? ap->actor : rj->actor;
    const char *step;
    char *found = NULL;
    uint64_t seq;

    if (given[0] == '\0' && waiting_step(j, id, &found) != 0) return;
    step = found != NULL ? found : given;
    if (approve)
        j->rc = cbm_execution_approve(j->svc->engine, id, step, opt(ap->data_json), opt(actor),
                                      &j->err);
    else
        j->rc = cbm_execution_reject(j->svc->engine, id, step, opt(rj->reason), opt(actor),
                                     &j->err);
    if (j->rc == 0) {
        seq = find_seq(j, id, approve ? "ApprovalGranted" : "ApprovalRejected", "step", step);
        if (approve) {
            Cerebelum__V1__ApproveResponse *rp =
                NEW(Cerebelum__V1__ApproveResponse, CEREBELUM__V1__APPROVE_RESPONSE__INIT, j);
            if (rp != NULL) {
                rp->seq = seq;
                j->out = &rp->base;
            }
        } else {
            Cerebelum__V1__RejectResponse *rp =
                NEW(Cerebelum__V1__RejectResponse, CEREBELUM__V1__REJECT_RESPONSE__INIT, j);
            if (rp != NULL) {
                rp->seq = seq;
                j->out = &rp->base;
            }
        }
    }
    free(found);
}

static void do_approve(job_t *j) { do_decide_approval(j, 1); }
static void do_reject(job_t *j) { do_decide_approval(j, 0); }

static void do_signal(job_t *j)
{
    const Cerebelum__V1__SignalRequest *rq = (const void *)j->in;
    Cerebelum__V1__SignalResponse *rp;

    if ((j->rc = cbm_execution_signal(j->svc->engine, rq->execution_id, rq->name,
                                      opt(rq->data_json), &j->err)) != 0)
        return;
    rp = NEW(Cerebelum__V1__SignalResponse, CEREBELUM__V1__SIGNAL_RESPONSE__INIT, j);
    if (rp == NULL) return;
    j->out = &rp->base;
    rp->seq = find_seq(j, rq->execution_id, "SignalReceived", "name", rq->name);
}

static void do_cancel(job_t *j)
{
    const Cerebelum__V1__CancelRequest *rq = (const void *)j->in;
    Cerebelum__V1__CancelResponse *rp;

    if ((j->rc = cbm_execution_cancel(j->svc->engine, rq->execution_id, opt(rq->reason),
                                      &j->err)) != 0)
        return;
    rp = NEW(Cerebelum__V1__CancelResponse, CEREBELUM__V1__CANCEL_RESPONSE__INIT, j);
    if (rp == NULL) return;
    j->out = &rp->base;
    rp->seq = find_seq(j, rq->execution_id, "CancelRequested", NULL, NULL);
}

/* ---- the loop side ----------------------------------------------------------- */

static void work_cb(uv_work_t *req)
{
    job_t *j = (job_t *)req;

    switch (j->method) {
    case RPC_REGISTER_BLUEPRINT: do_register(j); break;
    case RPC_START_EXECUTION: do_start(j); break;
    case RPC_GET_EXECUTION: do_get(j); break;
    case RPC_LIST_EXECUTIONS: do_list(j); break;
    case RPC_GET_HISTORY: do_history(j); break;
    case RPC_APPROVE: do_approve(j); break;
    case RPC_REJECT: do_reject(j); break;
    case RPC_SIGNAL: do_signal(j); break;
    case RPC_CANCEL: do_cancel(j); break;
    case RPC_START_EXECUTIONS:
        j->rc = svc_start_batch(j->svc->engine, (const void *)j->in, &j->out, &j->err);
        break;
    case RPC_PUT_COUNCIL:
    case RPC_GET_COUNCIL:
    case RPC_LIST_COUNCILS:
    case RPC_DELETE_COUNCIL:
        j->rc = svc_council(j->svc->engine, j->method, j->in, &j->out, &j->err);
        break;
    case RPC_GET_HEALTH: j->rc = svc_health(j->svc->engine, j->in, &j->out, &j->err); break;
    default: fail(j, CBM_EINVAL, "method not served"); break;
    }
}

int svc_run(cbm_engine_t *e, rpc_method_t m, const ProtobufCMessage *in, ProtobufCMessage **out,
            cbm_error_t *err)
{
    svc_t svc = {0};
    job_t j = {0};

    svc.engine = e;
    j.svc = &svc;
    j.method = m;
    j.in = (ProtobufCMessage *)in; /* read only: the work never changes it */
    work_cb(&j.req);
    if (j.rc == 0 && j.out == NULL) fail(&j, CBM_ESTORE, "no reply was built");
    if (j.rc != 0) {
        if (j.out != NULL) protobuf_c_message_free_unpacked(j.out, NULL);
        j.out = NULL;
        if (err != NULL) *err = j.err;
    }
    *out = j.out;
    return j.rc;
}

static void job_free(job_t *j)
{
    if (j->out != NULL) protobuf_c_message_free_unpacked(j->out, NULL);
    if (j->in != NULL) protobuf_c_message_free_unpacked(j->in, NULL);
    free(j);
}

static void after_work_cb(uv_work_t *req, int status)
{
    job_t *j = (job_t *)req;
    svc_t *svc = j->svc;

    if (j->call != NULL) {
        if (status != 0)
            rpc_call_fail(j->call, GRPC_STATUS_INTERNAL, "work cancelled: %s", uv_strerror(status));
        else if (j->rc != 0)
            svc_fail(j->call, j->rc, j->err.message);
        else if (j->out == NULL) /* a bug: success without a reply */
            rpc_call_fail(j->call, GRPC_STATUS_INTERNAL, "no reply was built");
        else
            rpc_call_reply(j->call, j->out);
    }
    job_free(j);
    svc_job_end(svc);
}

void svc_job_begin(svc_t *svc)
{
    svc->inflight++;
}

void svc_job_end(svc_t *svc)
{
    svc->inflight--;
    if (svc->draining && svc->inflight == 0 && svc->on_idle != NULL) svc->on_idle(svc);
}

/* The call died before its work finished: forget it, drop the reply later. */
static void on_call_gone(rpc_call_t *call, void *data)
{
    job_t *j = data;
    j->call = NULL;
}

/* Ids are opaque on the wire (docs/protocol.md): one that is not a UUID
 * names no execution, which is NOT_FOUND, not a malformed request. */
static int check_id(rpc_call_t *call, const char *id)
{
    uuid_t u;
    if (id[0] == '\0')
        return rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "execution_id is required"), -1;
    if (uuid_parse(id, u) != 0)
        return rpc_call_fail(call, GRPC_STATUS_NOT_FOUND, "execution %s not found", id), -1;
    return 0;
}

/* Checks that need no engine, answered on the loop before any work. */
static int precheck(rpc_call_t *call, rpc_method_t m, const ProtobufCMessage *request)
{
    switch (m) {
    case RPC_START_EXECUTION: {
        const Cerebelum__V1__StartExecutionRequest *rq = (const void *)request;
        if (rq->blueprint[0] == '\0')
            return rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "blueprint is required"), -1;
        return 0;
    }
    case RPC_START_EXECUTIONS: {
        /* The whole call's limits; an item's own faults are its result. */
        size_t n = ((const Cerebelum__V1__StartExecutionsRequest *)(const void *)request)->n_items;
        if (n == 0)
            return rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "items is empty"), -1;
        if (n > RPC_MAX_START_BATCH)
            return rpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                 "%zu items: at most %d per StartExecutions call", n,
                                 RPC_MAX_START_BATCH), -1;
        return 0;
    }
    case RPC_GET_EXECUTION:
        return check_id(call, ((const Cerebelum__V1__GetExecutionRequest *)(const void *)request)
                                  ->execution_id);
    case RPC_GET_HISTORY:
        return check_id(call, ((const Cerebelum__V1__GetHistoryRequest *)(const void *)request)
                                  ->execution_id);
    case RPC_APPROVE:
        return check_id(call, ((const Cerebelum__V1__ApproveRequest *)(const void *)request)
                                  ->execution_id);
    case RPC_REJECT:
        return check_id(call, ((const Cerebelum__V1__RejectRequest *)(const void *)request)
                                  ->execution_id);
    case RPC_CANCEL:
        return check_id(call, ((const Cerebelum__V1__CancelRequest *)(const void *)request)
                                  ->execution_id);
    case RPC_SIGNAL: {
        const Cerebelum__V1__SignalRequest *rq = (const void *)request;
        if (rq->name[0] == '\0')
            return rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "name is required"), -1;
        return check_id(call, rq->execution_id);
    }
    case RPC_PUT_COUNCIL:
        if (((const Cerebelum__V1__PutCouncilRequest *)(const void *)request)->council_json[0] ==
            '\0')
            return rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "council_json is empty"), -1;
        return 0;
    case RPC_GET_COUNCIL:
        if (((const Cerebelum__V1__GetCouncilRequest *)(const void *)request)->name[0] == '\0')
            return rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "name is required"), -1;
        return 0;
    case RPC_DELETE_COUNCIL:
        if (((const Cerebelum__V1__DeleteCouncilRequest *)(const void *)request)->name[0] == '\0')
            return rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "name is required"), -1;
        return 0;
    case RPC_LIST_EXECUTIONS: {
        const char *after = ((const Cerebelum__V1__ListExecutionsRequest *)(const void *)request)->after;
        uuid_t u;
        if (after[0] != '\0' && uuid_parse(after, u) != 0)
            return rpc_call_fail(call, GRPC_STATUS_NOT_FOUND,
                                 "list cursor: execution %s not found", after), -1;
        return 0;
    }
    default:
        return 0;
    }
}

/* An unpacked copy of a message (the call's request dies with the call). */
static ProtobufCMessage *copy_message(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    ProtobufCMessage *out;

    if (buf == NULL) return NULL;
    protobuf_c_message_pack(m, buf);
    out = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
    free(buf);
    return out;
}

static void on_call(rpc_call_t *call, const ProtobufCMessage *request, void *user_data)
{
    svc_t *svc = user_data;
    rpc_method_t m = rpc_call_method(call);
    job_t *j;
    int rc;

    if (svc->draining) {
        rpc_call_fail(call, GRPC_STATUS_UNAVAILABLE, "server is shutting down");
        return;
    }
    if (precheck(call, m, request) != 0) return;
    if ((j = calloc(1, sizeof(*j))) == NULL || (j->in = copy_message(request)) == NULL) {
        free(j);
        rpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->svc = svc;
    j->call = call;
    j->method = m;
    if ((rc = uv_queue_work(svc->loop, &j->req, work_cb, after_work_cb)) != 0) {
        job_free(j);
        rpc_call_fail(call, GRPC_STATUS_INTERNAL, "cannot queue the work: %s", uv_strerror(rc));
        return;
    }
    rpc_call_on_cancel(call, on_call_gone, j);
    svc_job_begin(svc);
}

void svc_install(svc_t *svc, rpc_server_options_t *opts)
{
    opts->handlers[RPC_REGISTER_BLUEPRINT] = on_call;
    opts->handlers[RPC_START_EXECUTION] = on_call;
    opts->handlers[RPC_GET_EXECUTION] = on_call;
    opts->handlers[RPC_LIST_EXECUTIONS] = on_call;
    opts->handlers[RPC_GET_HISTORY] = on_call;
    opts->handlers[RPC_APPROVE] = on_call;
    opts->handlers[RPC_REJECT] = on_call;
    opts->handlers[RPC_SIGNAL] = on_call;
    opts->handlers[RPC_CANCEL] = on_call;
    opts->handlers[RPC_START_EXECUTIONS] = on_call;
    opts->handlers[RPC_PUT_COUNCIL] = on_call;
    opts->handlers[RPC_GET_COUNCIL] = on_call;
    opts->handlers[RPC_LIST_COUNCILS] = on_call;
    opts->handlers[RPC_DELETE_COUNCIL] = on_call;
    opts->handlers[RPC_GET_HEALTH] = on_call;
    opts->user_data = svc;
}

void svc_drain(svc_t *svc, svc_idle_cb on_idle)
{
    svc->draining = 1;
    svc->on_idle = on_idle;
    if (svc->inflight == 0 && on_idle != NULL) on_idle(svc);
}
