/*
 * client_probe.c - calls of the public client (cerebelum/client.h) that the
 * `cerebelum` program does not make, for cli_test.sh to check:
 *
 *   client_probe ADDR approve-only ID     Approve with no step named (the
 *                                         server picks the only waiting one)
 *   client_probe ADDR history ID FROM     events from seq FROM: "seq type" lines
 *   client_probe ADDR null-args           NULL arguments are CBM_EINVAL, not crashes
 *
 * Prints "rc=<CBM name> <message>" for the call's outcome on the last line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cerebelum/client.h"

static int outcome(int rc, const cbm_error_t *err)
{
    printf("rc=%s %s\n", cbm_err_name(rc), rc != 0 ? err->message : "");
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    cbm_client_t *c = NULL;
    cbm_error_t err = {0};
    int rc;

    if (argc < 3) {
        fprintf(stderr, "usage: client_probe ADDR approve-only ID | history ID FROM | null-args\n");
        return 2;
    }
    if ((rc = cbm_client_connect(&c, argv[1], NULL, &err)) != 0) return outcome(rc, &err);
    if (strcmp(argv[2], "approve-only") == 0 && argc == 4) {
        rc = cbm_client_approve(c, argv[3], "", NULL, "probe", &err);
    } else if (strcmp(argv[2], "history") == 0 && argc == 5) {
        cbm_event_t *evs = NULL;
        size_t n = 0;
        rc = cbm_client_history(c, argv[3], atoll(argv[4]), &evs, &n, &err);
        for (size_t i = 0; rc == 0 && i < n; i++) printf("%lld %s\n", (long long)evs[i].seq, evs[i].type);
        cbm_events_free(evs, n);
    } else if (strcmp(argv[2], "null-args") == 0) {
        cbm_execution_info_t *info = NULL;
        char id[37];
        int bad = 0;
        bad |= cbm_client_start(c, NULL, NULL, NULL, id, &err) != CBM_EINVAL;
        bad |= cbm_client_get(c, NULL, &info, NULL, &err) != CBM_EINVAL;
        bad |= cbm_client_approve(c, "x", NULL, NULL, NULL, &err) != CBM_EINVAL;
        bad |= cbm_client_signal(c, "x", "", NULL, &err) != CBM_EINVAL;
        bad |= cbm_client_connect(NULL, "x", NULL, &err) != CBM_EINVAL;
        rc = bad ? CBM_EIO : 0;
        if (bad) snprintf(err.message, sizeof(err.message), "a NULL argument was not refused");
    } else {
        fprintf(stderr, "client_probe: unknown probe '%s'\n", argv[2]);
        cbm_client_destroy(c);
        return 2;
    }
    cbm_client_destroy(c);
    return outcome(rc, &err);
}
