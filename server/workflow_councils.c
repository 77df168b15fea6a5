/*
 * workflow_councils.c - the work of PutCouncil, GetCouncil, ListCouncils and
 * DeleteCouncil (workflow_service.h; docs/protocol.md): each one call of the
 * engine's council API (cerebelum.h, "Councils") and its reply. Runs on the
 * thread pool, like every WorkflowService job; the loop side (request
 * checks, replies, errors through svc_fail) is workflow_service.c's.
 */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "workflow_service.h"

typedef Cerebelum__V1__PutCouncilRequest put_rq_t;
typedef Cerebelum__V1__GetCouncilRequest get_rq_t;
typedef Cerebelum__V1__DeleteCouncilRequest delete_rq_t;

/* A reply message on the heap, from its INIT value; NULL when out of memory. */
static void *new_msg(const void *init, size_t size)
{
    void *m = malloc(size);
    if (m != NULL) memcpy(m, init, size);
    return m;
}
#define NEW(T, INIT) ((T *)new_msg(&(T)INIT, sizeof(T)))

static int oom(cbm_error_t *err)
{
    return cbm_error_set(err, CBM_ENOMEM, "out of memory");
}

static int put(cbm_engine_t *e, const put_rq_t *rq, ProtobufCMessage **out, cbm_error_t *err)
{
    Cerebelum__V1__PutCouncilResponse *rp;
    char version[65];
    bool created = false;
    const cJSON *name;
    cJSON *doc;
    int rc;

    if ((rc = cbm_council_put(e, rq->council_json, version, &created, err)) != 0) return rc;
    rp = NEW(Cerebelum__V1__PutCouncilResponse, CEREBELUM__V1__PUT_COUNCIL_RESPONSE__INIT);
    if (rp == NULL) return oom(err);
    *out = &rp->base;
    rp->created = created;
    /* It validated, so it parses and has a name. */
    doc = cJSON_Parse(rq->council_json);
    name = cJSON_GetObjectItemCaseSensitive(doc, "name");
    rc = svc_set_str(&rp->name, cJSON_IsString(name) ? name->valuestring : NULL);
    cJSON_Delete(doc);
    if (rc != 0 || svc_set_str(&rp->version, version) != 0) return oom(err);
    return 0;
}

static int get(cbm_engine_t *e, const get_rq_t *rq, ProtobufCMessage **out, cbm_error_t *err)
{
    Cerebelum__V1__GetCouncilResponse *rp;
    char version[65], *json = NULL;
    int rc;

    if ((rc = cbm_council_get(e, rq->name, rq->version[0] != '\0' ? rq->version : NULL, &json,
                              version, err)) != 0)
        return rc;
    rp = NEW(Cerebelum__V1__GetCouncilResponse, CEREBELUM__V1__GET_COUNCIL_RESPONSE__INIT);
    if (rp == NULL) {
        free(json);
        return oom(err);
    }
    *out = &rp->base;
    rp->council_json = json; /* malloc'd: the reply frees it */
    if (svc_set_str(&rp->name, rq->name) != 0 || svc_set_str(&rp->version, version) != 0)
        return oom(err);
    return 0;
}

static int list(cbm_engine_t *e, ProtobufCMessage **out, cbm_error_t *err)
{
    Cerebelum__V1__ListCouncilsResponse *rp;
    cbm_council_info_t *cs = NULL;
    size_t n = 0;
    int rc;

    if ((rc = cbm_council_list(e, &cs, &n, err)) != 0) return rc;
    rp = NEW(Cerebelum__V1__ListCouncilsResponse, CEREBELUM__V1__LIST_COUNCILS_RESPONSE__INIT);
    if (rp == NULL || (n > 0 && (rp->councils = calloc(n, sizeof(*rp->councils))) == NULL)) {
        free(rp);
        cbm_council_infos_free(cs, n);
        return oom(err);
    }
    *out = &rp->base;
    for (size_t i = 0; i < n && rc == 0; i++) {
        Cerebelum__V1__Council *c = NEW(Cerebelum__V1__Council, CEREBELUM__V1__COUNCIL__INIT);
        if (c == NULL) {
            rc = oom(err);
            break;
        }
        rp->councils[rp->n_councils++] = c;
        c->agents = cs[i].agents > 0 ? (uint32_t)cs[i].agents : 0;
        c->created_at_ms = cs[i].created_at_us / 1000;
        if (svc_set_str(&c->name, cs[i].name) != 0 || svc_set_str(&c->version, cs[i].version) != 0 ||
            svc_set_str(&c->role, cs[i].role) != 0)
            rc = oom(err);
    }
    cbm_council_infos_free(cs, n);
    return rc;
}

static int delete(cbm_engine_t *e, const delete_rq_t *rq, ProtobufCMessage **out,
                  cbm_error_t *err)
{
    Cerebelum__V1__DeleteCouncilResponse *rp;
    int rc;

    if ((rc = cbm_council_delete(e, rq->name, err)) != 0) return rc;
    rp = NEW(Cerebelum__V1__DeleteCouncilResponse, CEREBELUM__V1__DELETE_COUNCIL_RESPONSE__INIT);
    if (rp == NULL) return oom(err);
    *out = &rp->base;
    return 0;
}

int svc_council(cbm_engine_t *e, rpc_method_t m, const ProtobufCMessage *rq,
                ProtobufCMessage **out, cbm_error_t *err)
{
    int rc;

    *out = NULL;
    switch (m) {
    case RPC_PUT_COUNCIL: rc = put(e, (const put_rq_t *)(const void *)rq, out, err); break;
    case RPC_GET_COUNCIL: rc = get(e, (const get_rq_t *)(const void *)rq, out, err); break;
    case RPC_LIST_COUNCILS: rc = list(e, out, err); break;
    case RPC_DELETE_COUNCIL: rc = delete(e, (const delete_rq_t *)(const void *)rq, out, err); break;
    default: return cbm_error_set(err, CBM_EINVAL, "not a council method");
    }
    if (rc != 0 && *out != NULL) {
        protobuf_c_message_free_unpacked(*out, NULL);
        *out = NULL;
    }
    return rc;
}
