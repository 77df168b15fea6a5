/*
 * bus_none.c - cerebelum/bus.h's bus in a build without libnats (meson
 * -Dnats=disabled, or libnats not found): every call says so. Triggers as
 * data (cbm_trigger_*) work in every build.
 */
#include "cbm_internal.h"
#include "cerebelum/bus.h"

bool cbm_bus_available(void) { return false; }

int cbm_bus_create(cbm_bus_t **out, cbm_engine_t *e, const cbm_bus_opts_t *opts, cbm_error_t *err)
{
    *out = NULL;
    return cbm_error_set(err, CBM_EINVAL,
                         "this cerebelum was built without NATS (libnats-dev; meson -Dnats=enabled)");
}

int cbm_bus_health(cbm_bus_t *bus, char **json_out)
{
    *json_out = NULL;
    return CBM_EINVAL;
}

void cbm_bus_destroy(cbm_bus_t *bus) { (void)bus; }
