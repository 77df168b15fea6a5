/*
 * workflow_batch.c - the work of StartExecutions (workflow_service.h): many
 * starts in one call, each with its own result.
 *
 * How the items reach the engine, for throughput without giving up any
 * item's own answer:
 *   - items with neither an idempotency key nor a version are grouped by
 *     blueprint and each group is started with one cbm_execution_start_many
 *     (one transaction for the group). If that call refuses the group for
 *     its inputs (CBM_EJSON, CBM_EINVAL: checked before anything is
 *     written), the group is started again item by item, so only the bad
 *     items fail. Any other failure (unknown blueprint, no handler, the
 *     store) is every item's of the group: for a store failure some may
 *     have started anyway, as cbm_execution_start_many says, and starting
 *     them again could run them twice;
 *   - items with a key or a version go one by one through
 *     cbm_execution_start_opts, which looks the key up first and so answers
 *     an existing key with its execution and created = false. Correct
 *     first; a keyed batch path in the engine (rt_start_executions already
 *     takes keys) would save a transaction per item.
 * The version of each result is read back as StartExecution does: once per
 * group (one start_many resolves one version for all), once per other item.
 */
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "workflow_service.h"

typedef Cerebelum__V1__StartExecutionRequest item_t;
typedef Cerebelum__V1__StartExecutionResult result_t;

static const char *opt(const char *s)
{
    return s[0] != '\0' ? s : NULL;
}

int svc_set_str(char **field, const char *s)
{
    if (s == NULL || s[0] == '\0') {
        *field = (char *)protobuf_c_empty_string;
        return 0;
    }
    return (*field = strdup(s)) != NULL ? 0 : CBM_ENOMEM;
}

/* The version an execution runs, into r (empty if it cannot be read: the
 * start stands anyway). */
static int set_version(cbm_engine_t *e, result_t *r, const char *id)
{
    cbm_execution_info_t *x = NULL;
    int rc;

    cbm_execution_get(e, id, &x, NULL);
    rc = svc_set_str(&r->version, x != NULL ? x->version : NULL);
    cbm_execution_info_free(x);
    return rc;
}

static int set_ok(result_t *r, const char *id, bool created)
{
    r->created = created;
    return svc_set_str(&r->execution_id, id);
}

/* The item failed with rc: its status and the message StartExecution would
 * have sent. */
static int set_error(result_t *r, int rc, const char *detail)
{
    Cerebelum__V1__ItemError *ie = malloc(sizeof(*ie));
    char msg[600];

    if (ie == NULL) return CBM_ENOMEM;
    *ie = (Cerebelum__V1__ItemError)CEREBELUM__V1__ITEM_ERROR__INIT;
    r->error = ie;
    ie->code = (int32_t)svc_status_of(rc);
    svc_error_text(rc, detail, msg, sizeof(msg));
    return svc_set_str(&ie->message, msg);
}

static int start_one(cbm_engine_t *e, const item_t *it, result_t *r)
{
    cbm_start_opts_t so = {0};
    cbm_error_t err = {0};
    bool created = false;
    char id[37];
    int rc;

    if (it->blueprint[0] == '\0') return set_error(r, CBM_EINVAL, "blueprint is required");
    so.idempotency_key = opt(it->idempotency_key);
    so.version = opt(it->version);
    rc = cbm_execution_start_opts(e, it->blueprint, opt(it->inputs_json), &so, id, &created, &err);
    if (rc != 0) return set_error(r, rc, err.message);
    if ((rc = set_ok(r, id, created)) != 0) return rc;
    return set_version(e, r, id);
}

static bool groupable(const item_t *it)
{
    return it->blueprint[0] != '\0' && it->idempotency_key[0] == '\0' && it->version[0] == '\0';
}

/* Start the groupable items of blueprint items[first]->blueprint from
 * index first on, marking them done. */
static int start_group(cbm_engine_t *e, item_t *const *items, result_t **res, bool *done,
                       size_t n, size_t first)
{
    const char *bp = items[first]->blueprint;
    const char **inputs = NULL;
    size_t *idx = NULL, m = 0;
    char (*ids)[37] = NULL;
    cbm_error_t err = {0};
    int rc = 0;

    if ((inputs = calloc(n, sizeof(*inputs))) == NULL || (idx = calloc(n, sizeof(*idx))) == NULL ||
        (ids = calloc(n, sizeof(*ids))) == NULL) {
        rc = CBM_ENOMEM;
        goto out;
    }
    for (size_t i = first; i < n; i++) {
        if (done[i] || !groupable(items[i]) || strcmp(items[i]->blueprint, bp) != 0) continue;
        idx[m] = i;
        inputs[m++] = opt(items[i]->inputs_json);
        done[i] = true;
    }
    rc = cbm_execution_start_many(e, bp, inputs, m, ids, &err);
    if (rc == CBM_EJSON || rc == CBM_EINVAL) {
        /* Refused before anything was written: one by one, so that only
         * the bad items fail. */
        rc = 0;
        for (size_t k = 0; k < m && rc == 0; k++) rc = start_one(e, items[idx[k]], res[idx[k]]);
        goto out;
    }
    if (rc != 0) {
        int code = rc;
        rc = 0;
        for (size_t k = 0; k < m && rc == 0; k++) rc = set_error(res[idx[k]], code, err.message);
        goto out;
    }
    for (size_t k = 0; k < m && rc == 0; k++) rc = set_ok(res[idx[k]], ids[k], true);
    /* One start_many resolves one version for all of its executions. */
    if (rc == 0 && m > 0 && (rc = set_version(e, res[idx[0]], ids[0])) == 0)
        for (size_t k = 1; k < m && rc == 0; k++)
            rc = svc_set_str(&res[idx[k]]->version, res[idx[0]]->version);
out:
    free(inputs);
    free(idx);
    free(ids);
    return rc;
}

int svc_start_batch(cbm_engine_t *e, const Cerebelum__V1__StartExecutionsRequest *rq,
                    ProtobufCMessage **out, cbm_error_t *err)
{
    Cerebelum__V1__StartExecutionsResponse *rp = malloc(sizeof(*rp));
    size_t n = rq->n_items;
    bool *done = NULL;
    int rc = 0;

    *out = NULL;
    if (rp == NULL) return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    *rp = (Cerebelum__V1__StartExecutionsResponse)CEREBELUM__V1__START_EXECUTIONS_RESPONSE__INIT;
    if ((rp->results = calloc(n ? n : 1, sizeof(*rp->results))) == NULL ||
        (done = calloc(n ? n : 1, sizeof(*done))) == NULL) {
        rc = CBM_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        result_t *r = malloc(sizeof(*r));
        if (r == NULL) {
            rc = CBM_ENOMEM;
            goto out;
        }
        *r = (result_t)CEREBELUM__V1__START_EXECUTION_RESULT__INIT;
        rp->results[rp->n_results++] = r;
    }
    for (size_t i = 0; i < n && rc == 0; i++)
        if (!done[i] && groupable(rq->items[i]))
            rc = start_group(e, (item_t *const *)rq->items, rp->results, done, n, i);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (done[i]) continue;
        done[i] = true;
        rc = start_one(e, rq->items[i], rp->results[i]);
    }
out:
    free(done);
    if (rc != 0) {
        /* Out of memory part way: the items started so far run normally,
         * as after a lost reply; a retry with keys finds them. */
        protobuf_c_message_free_unpacked(&rp->base, NULL);
        return cbm_error_set(err, rc, "out of memory");
    }
    *out = &rp->base;
    return 0;
}
