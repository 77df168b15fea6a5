/*
 * engines.c - `cerebelum engines`: the engines registered on a database and
 * the shards each holds (issue 13; docs/architecture.md, "Shards"). Read
 * from the database directly (--database-url or $CEREBELUM_DATABASE_URL),
 * through a client-only engine, like the trigger commands.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"

int cli_cmd_engines(const cli_opts_t *o)
{
    cbm_engine_opts_t eo = {0};
    cbm_engine_t *e = NULL;
    cbm_engine_info_t *es = NULL;
    cbm_error_t err = {0};
    size_t n = 0;
    const char *url = o->database_url != NULL ? o->database_url : getenv("CEREBELUM_DATABASE_URL");
    int rc;

    if (url == NULL || url[0] == '\0') {
        cli_errorf("engines are listed from the database: give --database-url URL or set "
                   "CEREBELUM_DATABASE_URL");
        return CLI_USAGE;
    }
    eo.database_url = url;
    eo.client_only = true;
    eo.connect_timeout_ms = 5000;
    if ((rc = cbm_engine_create(&e, &eo, &err)) == 0) rc = cbm_engine_start(e, &err);
    if (rc == 0) rc = cbm_engine_list_engines(e, &es, &n, &err);
    if (rc != 0) {
        cli_errorf("cannot list the engines: %s", err.message);
        cbm_engine_destroy(e);
        return rc == CBM_EUNAVAIL ? CLI_UNREACHABLE : CLI_REFUSED;
    }
    if (o->json) printf("[");
    else printf("%-36s %-16s %7s %9s %6s %s\n", "ENGINE", "HOST", "PID", "SEEN", "SHARDS", "HELD");
    for (size_t i = 0; i < n; i++) {
        if (o->json)
            printf("%s\n {\"id\": \"%s\", \"host\": \"%s\", \"pid\": %d, \"seen_ms_ago\": %lld,"
                   " \"nshards\": %d, \"shards\": \"%s\"}",
                   i > 0 ? "," : "", es[i].id, es[i].host != NULL ? es[i].host : "", es[i].pid,
                   (long long)es[i].seen_ms_ago, es[i].nshards,
                   es[i].shards != NULL ? es[i].shards : "");
        else
            printf("%-36s %-16.16s %7d %7lldms %6d %s\n", es[i].id,
                   es[i].host != NULL ? es[i].host : "", es[i].pid, (long long)es[i].seen_ms_ago,
                   es[i].nshards, es[i].shards != NULL && es[i].shards[0] ? es[i].shards : "-");
    }
    if (o->json) printf("%s]\n", n > 0 ? "\n" : "");
    cbm_engine_infos_free(es, n);
    cbm_engine_destroy(e);
    return CLI_OK;
}
