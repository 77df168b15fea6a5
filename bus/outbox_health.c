/*
 * outbox_health.c - the outbox's health line (outbox.h). Separate from the
 * publisher so that it builds without libnats: rows can wait in a database
 * whatever this binary was built with.
 */
#include "bus/outbox.h"

#include <stdio.h>

#include "cbm_internal.h"

int bus_outbox_health(store_t *s, int64_t threshold_ms, char *line, size_t len, bool *stale,
                      cbm_error_t *err)
{
    store_outbox_stats_t st;
    int rc = store_outbox_stats(s, &st, err);
    bool old = false;

    if (rc != 0) {
        snprintf(line, len, "outbox: unknown (%s)", cbm_err_name(rc));
    } else if (!st.enabled && st.rows == 0) {
        snprintf(line, len, "outbox: off");
    } else {
        old = threshold_ms >= 0 && st.rows > 0 && st.oldest_age_ms > threshold_ms;
        if (old)
            snprintf(line, len,
                     "outbox: STALE: %lld rows waiting, oldest %.1f s (threshold %g s): is a "
                     "publisher (serve --nats) running and NATS reachable?",
                     (long long)st.rows, (double)st.oldest_age_ms / 1000.0,
                     (double)threshold_ms / 1000.0);
        else if (st.rows > 0)
            snprintf(line, len, "outbox: %s, %lld rows waiting, oldest %.1f s",
                     st.enabled ? "on" : "off (rows left)", (long long)st.rows,
                     (double)st.oldest_age_ms / 1000.0);
        else
            snprintf(line, len, "outbox: on, 0 rows waiting");
    }
    if (stale != NULL) *stale = old;
    return rc;
}
