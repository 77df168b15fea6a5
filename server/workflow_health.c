/*
 * workflow_health.c - the work of GetHealth (workflow_service.h;
 * docs/protocol.md): server_health_gather (health.h) turned into its reply.
 * Runs on the thread pool, like every WorkflowService job: the gathering
 * reads the store.
 */
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "server/health.h"
#include "workflow_service.h"

int svc_health(cbm_engine_t *e, const ProtobufCMessage *in, ProtobufCMessage **out,
               cbm_error_t *err)
{
    const Cerebelum__V1__GetHealthRequest *rq = (const void *)in;
    Cerebelum__V1__GetHealthResponse *rp = NULL;
    server_health_t h;
    int rc;

    *out = NULL;
    if ((rc = server_health_gather(e, rq->outbox_threshold_ms, &h, err)) != 0) goto done;
    if ((rp = malloc(sizeof(*rp))) == NULL) goto oom;
    cerebelum__v1__get_health_response__init(rp);
    *out = &rp->base;
    rp->ok = h.ok;
    if ((rp->checks = calloc(h.n ? h.n : 1, sizeof(*rp->checks))) == NULL) goto oom;
    for (size_t i = 0; i < h.n; i++) {
        Cerebelum__V1__HealthCheck *c = malloc(sizeof(*c));
        if (c == NULL) goto oom;
        cerebelum__v1__health_check__init(c);
        rp->checks[rp->n_checks++] = c;
        c->ok = h.checks[i].ok;
        if (svc_set_str(&c->name, h.checks[i].name) != 0 ||
            svc_set_str(&c->detail, h.checks[i].detail) != 0)
            goto oom;
    }
    goto done;
oom:
    rc = cbm_error_set(err, CBM_ENOMEM, "health: out of memory");
    if (*out != NULL) protobuf_c_message_free_unpacked(*out, NULL);
    *out = NULL;
done:
    server_health_finish(&h);
    return rc;
}
