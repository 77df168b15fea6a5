/*
 * outbox_none.c - the publisher's entry points in a build without libnats
 * (outbox.h): starting one says why it cannot. Rows are still written while
 * the database's outbox is on, and wait for a publisher built with NATS.
 */
#include "bus/outbox.h"

#include <string.h>

#include "cbm_internal.h"

int bus_outbox_start(const bus_outbox_config_t *cfg, bus_outbox_t **out, cbm_error_t *err)
{
    (void)cfg;
    *out = NULL;
    return cbm_error_set(err, CBM_ESTATE,
                         "outbox: this build has no NATS support (libnats was not found)");
}

void bus_outbox_stop(bus_outbox_t *o) { (void)o; }
void bus_outbox_wake(bus_outbox_t *o) { (void)o; }

void bus_outbox_counters(bus_outbox_t *o, bus_outbox_counters_t *out)
{
    (void)o;
    memset(out, 0, sizeof(*out));
}
