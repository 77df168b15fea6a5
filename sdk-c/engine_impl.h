/*
 * engine_impl.h - the engine handle's fields and helpers shared by the files
 * of the C API that implement it (engine_api.c, engine_outside.c); private to
 * sdk-c (engine_internal.h is what other modules may call).
 */
#ifndef CBM_ENGINE_IMPL_H
#define CBM_ENGINE_IMPL_H

#include <uv.h>

#include "cerebelum/cerebelum.h"
#include "engine/blueprint.h"
#include "engine/lease.h"
#include "engine/runtime.h"
#include "pgembed.h"
#include "store/store.h"

struct cbm_engine {
    rt_t *rt;
    char *url;                /* resolved store URL (after start) */
    char *state_dir;          /* embedded store, when url was not given */
    pgembed_t *pg;
    int connect_timeout_ms;
    int threads;
    int started;
    int client_only;
    uv_mutex_t rd_mu;         /* guards rd */
    store_t *rd;              /* reads and blueprint writes */
    char engine_id[37];       /* this incarnation ("" for client-only) */
    int64_t lease_ms;         /* shard lease time */
    lm_t *lm;                 /* the lease manager (not client-only) */
};

/* An id that is not a UUID names no execution: CBM_ENOTFOUND. */
int eng_known_id(const char *id, cbm_error_t *err);

/* Make sure blueprint (name, version) is in the runtime, reading it from the
 * store if needed (version NULL: the latest; latest: register it as the
 * latest). Caller holds e->rd_mu. */
const bp_blueprint_t *eng_load_blueprint(cbm_engine_t *e, const char *name,
                                         const char *version, int latest, cbm_error_t *err);

#endif
