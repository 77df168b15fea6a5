/*
 * http_api.c - the /api/v1 routes (docs/http.md).
 *
 * The execution and council routes build the WorkflowService's own request
 * message from the URL, the query and the JSON body, run the same work the
 * gRPC handler runs (svc_run, workflow_service.c: one code path per
 * meaning), and answer its reply message as JSON (http_pbjson.c). What
 * gRPC's precheck() answers on its loop is checked here first, with HTTP's
 * codes. Workers come from the server's loop (http_workers.c), blueprints'
 * lists from the store (http_metrics.c), triggers from cerebelum/bus.h.
 */
#include "http.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "cbm_internal.h"
#include "cerebelum/bus.h"
#include "workflow_service.h"

#define MAX_SEGS 6

/* ---- inputs ------------------------------------------------------------- */

/* The body as a JSON object into *obj (an empty body: {} when empty_ok).
 * Otherwise a 400 in rp and -1. */
static int body_object(const http_req_t *r, http_reply_t *rp, bool empty_ok, cJSON **obj)
{
    const char *end = NULL;
    *obj = NULL;
    if (r->body_len == 0 || strspn(r->body, " \t\r\n") == r->body_len) {
        if (!empty_ok) return http_error(rp, 400, "a JSON object body is required"), -1;
        if ((*obj = cJSON_CreateObject()) == NULL) return http_error(rp, 500, "out of memory"), -1;
        return 0;
    }
    if (strlen(r->body) != r->body_len)
        return http_error(rp, 400, "the body holds a NUL byte"), -1;
    *obj = cJSON_ParseWithLengthOpts(r->body, r->body_len, &end, 0);
    if (*obj == NULL) {
        size_t at = end != NULL ? (size_t)(end - r->body) : 0;
        return http_error(rp, 400, "the body is not JSON (at byte %zu)", at), -1;
    }
    if (!cJSON_IsObject(*obj)) {
        cJSON_Delete(*obj);
        *obj = NULL;
        return http_error(rp, 400, "the body must be a JSON object"), -1;
    }
    return 0;
}

/* A string member: *out = its value, "" when absent or null. -1 (400 set)
 * when it is something else. */
static int str_field(const cJSON *o, const char *key, const char **out, http_reply_t *rp)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = "";
    if (v == NULL || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) return http_error(rp, 400, "'%s' must be a string", key), -1;
    *out = v->valuestring;
    return 0;
}

/* A member that is any JSON value, as JSON text (malloc'd; "" static when
 * absent or null, never to be freed: see free_text). */
static char *json_field(const cJSON *o, const char *key, int *oom)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    char *t;
    if (v == NULL || cJSON_IsNull(v)) return (char *)protobuf_c_empty_string;
    if ((t = cJSON_PrintUnformatted(v)) == NULL) {
        *oom = 1;
        return (char *)protobuf_c_empty_string;
    }
    return t;
}

static void free_text(char *t)
{
    if (t != protobuf_c_empty_string) free(t);
}

/* An unsigned decimal query argument in [lo, hi]; absent: *out unchanged. */
static int num_arg(const http_req_t *r, const char *name, uint64_t lo, uint64_t hi,
                   uint64_t *out, http_reply_t *rp)
{
    const char *s = http_arg(r, name);
    char *end;
    unsigned long long v;
    if (s == NULL || s[0] == '\0') return 0;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (s[0] == '-' || *end != '\0' || errno != 0 || v < lo || v > hi)
        return http_error(rp, 400, "'%s' must be a whole number from %llu to %llu", name,
                          (unsigned long long)lo, (unsigned long long)hi), -1;
    *out = v;
    return 0;
}

static bool is_uuid(const char *s)
{
    uuid_t u;
    return s != NULL && uuid_parse(s, u) == 0;
}

static int status_filter(const char *s, Cerebelum__V1__ExecutionStatus *out, http_reply_t *rp)
{
    char name[80] = "EXECUTION_STATUS_";
    size_t n = strlen(name);
    const ProtobufCEnumValue *v;

    *out = CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_UNSPECIFIED;
    if (s == NULL || s[0] == '\0') return 0;
    for (const char *p = s; *p != '\0' && n + 1 < sizeof(name); p++)
        name[n++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    name[n] = '\0';
    v = protobuf_c_enum_descriptor_get_value_by_name(&cerebelum__v1__execution_status__descriptor,
                                                     name);
    if (v == NULL || v->value == 0 || strlen(s) + 17 != n)
        return http_error(rp, 400, "unknown status '%s' (running, sleeping, awaiting_approval, "
                          "awaiting_signal, awaiting_child, completed, failed, cancelled)", s), -1;
    *out = (Cerebelum__V1__ExecutionStatus)v->value;
    return 0;
}

/* ---- running a WorkflowService method ------------------------------------ */

/* Run it and put its reply as JSON (status ok_status) or the error in rp.
 * Returns the engine's code. */
static int run(const http_req_t *r, rpc_method_t m, const ProtobufCMessage *in, int ok_status,
               http_reply_t *rp)
{
    ProtobufCMessage *out = NULL;
    cbm_error_t err = {0};
    int rc = svc_run(http_engine(r->srv), m, in, &out, &err);

    if (rc != 0) {
        http_error_rc(rp, rc, err.message);
        return rc;
    }
    rp->status = ok_status;
    if ((rp->json = http_pb_to_json(out)) == NULL) http_error(rp, 500, "out of memory");
    protobuf_c_message_free_unpacked(out, NULL);
    return 0;
}

/* ---- executions ---------------------------------------------------------- */

static int list_executions(const http_req_t *r, http_reply_t *rp)
{
    Cerebelum__V1__ListExecutionsRequest rq = CEREBELUM__V1__LIST_EXECUTIONS_REQUEST__INIT;
    const char *after = http_arg(r, "after"), *bp = http_arg(r, "blueprint");
    uint64_t limit = 0;

    if (status_filter(http_arg(r, "status"), &rq.status, rp) != 0 ||
        num_arg(r, "limit", 1, 1000, &limit, rp) != 0)
        return 0;
    if (after != NULL && after[0] != '\0' && !is_uuid(after))
        return http_error(rp, 400, "'after' must be an execution id (a page's next_after)");
    if (after != NULL) rq.after = (char *)after;
    if (bp != NULL) rq.blueprint = (char *)bp;
    rq.limit = (uint32_t)limit;
    run(r, RPC_LIST_EXECUTIONS, &rq.base, 200, rp);
    return 0;
}

/* A start item from a JSON object (its strings borrowed, inputs_json
 * malloc'd: free_text). -1 with a 400 in rp (prefix names the item). */
static int start_item(const cJSON *o, Cerebelum__V1__StartExecutionRequest *rq, const char *what,
                      http_reply_t *rp)
{
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "inputs");
    const char *s;
    int oom = 0;

    cerebelum__v1__start_execution_request__init(rq);
    if (!cJSON_IsObject(o)) return http_error(rp, 400, "%s: must be a JSON object", what), -1;
    if (str_field(o, "blueprint", &s, rp) != 0) return -1;
    if (s[0] == '\0') return http_error(rp, 400, "%s'blueprint' is required", what), -1;
    rq->blueprint = (char *)s;
    if (str_field(o, "version", &s, rp) != 0) return -1;
    rq->version = (char *)s;
    if (str_field(o, "idempotency_key", &s, rp) != 0) return -1;
    rq->idempotency_key = (char *)s;
    if (in != NULL && !cJSON_IsNull(in) && !cJSON_IsObject(in))
        return http_error(rp, 400, "%s'inputs' must be a JSON object", what), -1;
    rq->inputs_json = json_field(o, "inputs", &oom);
    if (oom) return http_error(rp, 500, "out of memory"), -1;
    return 0;
}

static int start_execution(const http_req_t *r, http_reply_t *rp)
{
    Cerebelum__V1__StartExecutionRequest rq;
    cJSON *body;

    if (body_object(r, rp, false, &body) != 0) return 0;
    if (start_item(body, &rq, "", rp) == 0) {
        if (run(r, RPC_START_EXECUTION, &rq.base, 201, rp) == 0) {
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(rp->json, "created");
            if (!cJSON_IsTrue(c)) rp->status = 200;
        }
        free_text(rq.inputs_json);
    }
    cJSON_Delete(body);
    return 0;
}

static int start_batch(const http_req_t *r, http_reply_t *rp)
{
    Cerebelum__V1__StartExecutionsRequest rq = CEREBELUM__V1__START_EXECUTIONS_REQUEST__INIT;
    Cerebelum__V1__StartExecutionRequest *items = NULL, **ptrs = NULL;
    const cJSON *arr, *it;
    cJSON *body;
    size_t n, k = 0;

    if (body_object(r, rp, false, &body) != 0) return 0;
    arr = cJSON_GetObjectItemCaseSensitive(body, "items");
    if (!cJSON_IsArray(arr)) {
        http_error(rp, 400, "'items' must be an array of start requests");
        goto out;
    }
    n = (size_t)cJSON_GetArraySize(arr);
    if (n == 0 || n > RPC_MAX_START_BATCH) {
        http_error(rp, 400, "'items' has %zu entries: 1 to %d", n, RPC_MAX_START_BATCH);
        goto out;
    }
    if ((items = calloc(n, sizeof(*items))) == NULL || (ptrs = calloc(n, sizeof(*ptrs))) == NULL) {
        http_error(rp, 500, "out of memory");
        goto out;
    }
    cJSON_ArrayForEach(it, arr) {
        char what[40];
        snprintf(what, sizeof(what), "items[%zu]: ", k);
        if (start_item(it, &items[k], what, rp) != 0) goto out;
        ptrs[k] = &items[k];
        k++;
    }
    rq.n_items = n;
    rq.items = ptrs;
    run(r, RPC_START_EXECUTIONS, &rq.base, 200, rp);
out:
    for (size_t i = 0; i < k; i++) free_text(items[i].inputs_json);
    free(items);
    free(ptrs);
    cJSON_Delete(body);
    return 0;
}

static int get_execution(const http_req_t *r, const char *id, http_reply_t *rp)
{
    Cerebelum__V1__GetExecutionRequest rq = CEREBELUM__V1__GET_EXECUTION_REQUEST__INIT;
    rq.execution_id = (char *)id;
    run(r, RPC_GET_EXECUTION, &rq.base, 200, rp);
    return 0;
}

static int get_history(const http_req_t *r, const char *id, http_reply_t *rp)
{
    Cerebelum__V1__GetHistoryRequest rq = CEREBELUM__V1__GET_HISTORY_REQUEST__INIT;
    uint64_t after = 0, limit = 0;

    if (num_arg(r, "after_seq", 0, INT64_MAX, &after, rp) != 0 ||
        num_arg(r, "limit", 1, 10000, &limit, rp) != 0)
        return 0;
    rq.execution_id = (char *)id;
    rq.after_seq = after;
    rq.limit = (uint32_t)limit;
    run(r, RPC_GET_HISTORY, &rq.base, 200, rp);
    return 0;
}

/* approve, reject, signal, cancel */
static int decide(const http_req_t *r, const char *id, const char *what, http_reply_t *rp)
{
    cJSON *body;
    const char *step = "", *actor = "", *reason = "", *name = "";
    char *data = (char *)protobuf_c_empty_string;
    int oom = 0;

    if (body_object(r, rp, true, &body) != 0) return 0;
    if (strcmp(what, "approve") == 0) {
        Cerebelum__V1__ApproveRequest rq = CEREBELUM__V1__APPROVE_REQUEST__INIT;
        if (str_field(body, "step", &step, rp) != 0 || str_field(body, "actor", &actor, rp) != 0)
            goto out;
        data = json_field(body, "response", &oom);
        rq.execution_id = (char *)id;
        rq.step = (char *)step;
        rq.actor = (char *)actor;
        rq.data_json = data;
        if (!oom) run(r, RPC_APPROVE, &rq.base, 200, rp);
    } else if (strcmp(what, "reject") == 0) {
        Cerebelum__V1__RejectRequest rq = CEREBELUM__V1__REJECT_REQUEST__INIT;
        if (str_field(body, "step", &step, rp) != 0 || str_field(body, "actor", &actor, rp) != 0 ||
            str_field(body, "reason", &reason, rp) != 0)
            goto out;
        rq.execution_id = (char *)id;
        rq.step = (char *)step;
        rq.actor = (char *)actor;
        rq.reason = (char *)reason;
        run(r, RPC_REJECT, &rq.base, 200, rp);
    } else if (strcmp(what, "signal") == 0) {
        Cerebelum__V1__SignalRequest rq = CEREBELUM__V1__SIGNAL_REQUEST__INIT;
        if (str_field(body, "name", &name, rp) != 0) goto out;
        if (name[0] == '\0') {
            http_error(rp, 400, "'name' is required: the signal a step waits for");
            goto out;
        }
        data = json_field(body, "data", &oom);
        rq.execution_id = (char *)id;
        rq.name = (char *)name;
        rq.data_json = data;
        if (!oom) run(r, RPC_SIGNAL, &rq.base, 200, rp);
    } else {
        Cerebelum__V1__CancelRequest rq = CEREBELUM__V1__CANCEL_REQUEST__INIT;
        if (str_field(body, "reason", &reason, rp) != 0) goto out;
        rq.execution_id = (char *)id;
        rq.reason = (char *)reason;
        run(r, RPC_CANCEL, &rq.base, 200, rp);
    }
    if (oom) http_error(rp, 500, "out of memory");
out:
    free_text(data);
    cJSON_Delete(body);
    return 0;
}

/* ---- councils ------------------------------------------------------------ */

static int councils(const http_req_t *r, const char *name, http_reply_t *rp)
{
    bool get = strcmp(r->method, "GET") == 0;

    if (name == NULL && get) {
        Cerebelum__V1__ListCouncilsRequest rq = CEREBELUM__V1__LIST_COUNCILS_REQUEST__INIT;
        run(r, RPC_LIST_COUNCILS, &rq.base, 200, rp);
    } else if (name == NULL && strcmp(r->method, "POST") == 0) {
        Cerebelum__V1__PutCouncilRequest rq = CEREBELUM__V1__PUT_COUNCIL_REQUEST__INIT;
        cJSON *body;
        if (body_object(r, rp, false, &body) != 0) return 0;
        cJSON_Delete(body);
        rq.council_json = (char *)r->body;
        if (run(r, RPC_PUT_COUNCIL, &rq.base, 201, rp) == 0 &&
            !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rp->json, "created")))
            rp->status = 200;
    } else if (name != NULL && get) {
        Cerebelum__V1__GetCouncilRequest rq = CEREBELUM__V1__GET_COUNCIL_REQUEST__INIT;
        const char *v = http_arg(r, "version");
        rq.name = (char *)name;
        if (v != NULL) rq.version = (char *)v;
        run(r, RPC_GET_COUNCIL, &rq.base, 200, rp);
    } else if (name != NULL && strcmp(r->method, "DELETE") == 0) {
        Cerebelum__V1__DeleteCouncilRequest rq = CEREBELUM__V1__DELETE_COUNCIL_REQUEST__INIT;
        rq.name = (char *)name;
        run(r, RPC_DELETE_COUNCIL, &rq.base, 200, rp);
    } else {
        rp->allow = name == NULL ? "GET, POST" : "GET, DELETE";
        http_error(rp, 405, "%s is not allowed here (%s)", r->method, rp->allow);
    }
    return 0;
}

/* ---- blueprints, workers, triggers ---------------------------------------- */

static int register_blueprint(const http_req_t *r, http_reply_t *rp)
{
    Cerebelum__V1__RegisterBlueprintRequest rq = CEREBELUM__V1__REGISTER_BLUEPRINT_REQUEST__INIT;
    cJSON *body;
    if (body_object(r, rp, false, &body) != 0) return 0;
    cJSON_Delete(body);
    rq.blueprint_json = (char *)r->body;
    if (run(r, RPC_REGISTER_BLUEPRINT, &rq.base, 201, rp) == 0 &&
        !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rp->json, "created")))
        rp->status = 200;
    return 0;
}

static int workers(const http_req_t *r, http_reply_t *rp)
{
    int rc;
    if (http_workers_of(r->srv) == NULL) {
        rp->json = cJSON_CreateObject();
        if (rp->json != NULL) cJSON_AddArrayToObject(rp->json, "workers");
        return 0;
    }
    rc = http_workers_ask(http_workers_of(r->srv), http_arg(r, "queue"), &rp->json, NULL, NULL,
                          2000);
    if (rc != 0) http_error_rc(rp, rc == CBM_ESHUTDOWN ? CBM_EUNAVAIL : rc,
                               "the server's loop did not answer");
    return 0;
}

static int triggers(const http_req_t *r, http_reply_t *rp)
{
    cbm_trigger_info_t *t = NULL;
    cbm_error_t err = {0};
    size_t n = 0;
    cJSON *arr;
    int rc = cbm_trigger_list(http_engine(r->srv), &t, &n, &err);

    if (rc != 0) return http_error_rc(rp, rc, err.message);
    if ((rp->json = cJSON_CreateObject()) == NULL ||
        (arr = cJSON_AddArrayToObject(rp->json, "triggers")) == NULL)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject(), *def = cJSON_Parse(t[i].definition);
        if (o == NULL) {
            cJSON_Delete(def);
            goto oom;
        }
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "name", t[i].name);
        cJSON_AddStringToObject(o, "version", t[i].version);
        if (def != NULL) cJSON_AddItemToObject(o, "trigger", def);
        else cJSON_AddNullToObject(o, "trigger");
        cJSON_AddNumberToObject(o, "updated_at_ms", (double)(t[i].updated_at_us / 1000));
    }
    cbm_trigger_infos_free(t, n);
    return 0;
oom:
    cbm_trigger_infos_free(t, n);
    return http_error(rp, 500, "out of memory");
}

/* ---- routing ------------------------------------------------------------- */

static int only(const http_req_t *r, const char *allow, http_reply_t *rp)
{
    /* allow is "GET" or "POST" (HEAD rides with GET) */
    if (strcmp(r->method, allow) == 0) return 1;
    if (strcmp(allow, "GET") == 0 && strcmp(r->method, "HEAD") == 0) return 1;
    rp->allow = strcmp(allow, "GET") == 0 ? "GET, HEAD" : allow;
    http_error(rp, 405, "%s is not allowed here (%s)", r->method, rp->allow);
    return 0;
}

int http_api(const http_req_t *r, http_reply_t *rp)
{
    char path[1024], *seg[MAX_SEGS], *save = NULL, *p;
    size_t n = 0;

    if (strncmp(r->path, "/api/v1/", 8) != 0 || strlen(r->path) >= sizeof(path))
        return http_error(rp, 404, "no such path: %s (the API is under /api/v1/)", r->path);
    snprintf(path, sizeof(path), "%s", r->path + 8);
    for (p = strtok_r(path, "/", &save); p != NULL; p = strtok_r(NULL, "/", &save)) {
        if (n == MAX_SEGS) return http_error(rp, 404, "no such path: %s", r->path);
        seg[n++] = p;
    }
    if (n == 0) return http_error(rp, 404, "no such path: %s", r->path);

    if (strcmp(seg[0], "executions") == 0) {
        if (n == 1) {
            if (strcmp(r->method, "POST") == 0) return start_execution(r, rp);
            if (only(r, "GET", rp)) list_executions(r, rp);
            return 0;
        }
        if (n == 2 && strcmp(seg[1], "batch") == 0) {
            if (only(r, "POST", rp)) start_batch(r, rp);
            return 0;
        }
        if (!is_uuid(seg[1]))
            return http_error(rp, 404, "execution %s not found", seg[1]);
        if (n == 2) {
            if (only(r, "GET", rp)) get_execution(r, seg[1], rp);
            return 0;
        }
        if (n == 3 && strcmp(seg[2], "history") == 0) {
            if (only(r, "GET", rp)) get_history(r, seg[1], rp);
            return 0;
        }
        if (n == 3 && (strcmp(seg[2], "approve") == 0 || strcmp(seg[2], "reject") == 0 ||
                       strcmp(seg[2], "signal") == 0 || strcmp(seg[2], "cancel") == 0)) {
            if (only(r, "POST", rp)) decide(r, seg[1], seg[2], rp);
            return 0;
        }
    } else if (strcmp(seg[0], "stream") == 0 && n >= 2 && strcmp(seg[1], "executions") == 0) {
        if (n == 2) {
            if (only(r, "GET", rp)) http_sse_list(r, rp);
            return 0;
        }
        if (n == 3) {
            if (!is_uuid(seg[2])) return http_error(rp, 404, "execution %s not found", seg[2]);
            if (only(r, "GET", rp)) http_sse_execution(r, seg[2], rp);
            return 0;
        }
    } else if (strcmp(seg[0], "workers") == 0 && n == 1) {
        if (only(r, "GET", rp)) workers(r, rp);
        return 0;
    } else if (strcmp(seg[0], "blueprints") == 0) {
        if (n == 1) {
            if (strcmp(r->method, "POST") == 0) return register_blueprint(r, rp);
            if (only(r, "GET", rp)) http_blueprints(r, NULL, NULL, rp);
            return 0;
        }
        if (n == 2 || (n == 4 && strcmp(seg[2], "versions") == 0)) {
            if (only(r, "GET", rp)) http_blueprints(r, seg[1], n == 4 ? seg[3] : NULL, rp);
            return 0;
        }
    } else if (strcmp(seg[0], "councils") == 0 && n <= 2) {
        return councils(r, n == 2 ? seg[1] : NULL, rp);
    } else if (strcmp(seg[0], "triggers") == 0 && n == 1) {
        if (only(r, "GET", rp)) triggers(r, rp);
        return 0;
    }
    return http_error(rp, 404, "no such path: %s", r->path);
}
