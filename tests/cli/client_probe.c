/*
 * client_probe.c - calls of the public client (cerebelum/client.h) that the
 * `cerebelum` program does not make, for cli_test.sh to check:
 *
 *   client_probe ADDR approve-only ID     Approve with no step named (the
 *                                         server picks the only waiting one)
 *   client_probe ADDR history ID FROM     events from seq FROM: "seq type" lines
 *   client_probe ADDR null-args           NULL arguments are CBM_EINVAL, not crashes
 *   client_probe ADDR start-items ITEM... one StartExecutions call; ITEM is
 *                                         "blueprint;inputs;key;version" (an
 *                                         empty part is NULL, missing trailing
 *                                         parts too); prints one line per item:
 *                                         "I code=<CBM name> created=<0|1> id=<id>
 *                                         version=<v> msg=<message>"
 *   client_probe ADDR start-many N BP     one StartExecutions call of N plain
 *                                         items of BP (N may be 0 or too many)
 *   client_probe ADDR council-get NAME [V] GetCouncil: "version=<v>" and the
 *                                         canonical JSON on the next line
 *   client_probe ADDR council-list        ListCouncils: "name version role
 *                                         agents created_at_ms>0" lines
 *
 * Prints "rc=<CBM name> <message>" for the call's outcome on the last line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cerebelum/client.h"

/* Split "a;b;c;d" in place into up to 4 parts; "" parts become NULL. */
static void split_item(char *s, cbm_client_start_item_t *it)
{
    const char **parts[4] = {&it->blueprint, &it->inputs_json, &it->idempotency_key,
                             &it->version};
    for (int k = 0; k < 4 && s != NULL; k++) {
        char *semi = strchr(s, ';');
        if (semi != NULL) *semi = '\0';
        *parts[k] = s[0] != '\0' ? s : NULL;
        s = semi != NULL ? semi + 1 : NULL;
    }
}

static int start_items(cbm_client_t *c, cbm_client_start_item_t *items, size_t n,
                       cbm_error_t *err)
{
    cbm_client_start_result_t *res = calloc(n ? n : 1, sizeof(*res));
    int rc;

    if (res == NULL) return CBM_ENOMEM;
    rc = cbm_client_start_many(c, items, n, res, err);
    for (size_t i = 0; rc == 0 && i < n; i++)
        printf("%zu code=%s created=%d id=%s version=%s msg=%s\n", i, cbm_err_name(res[i].code),
               res[i].created ? 1 : 0, res[i].id, res[i].version, res[i].message);
    free(res);
    return rc;
}

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
        fprintf(stderr, "usage: client_probe ADDR approve-only ID | history ID FROM | null-args"
                        " | start-items ITEM... | start-many N BP | council-get NAME [V]"
                        " | council-list\n");
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
    } else if (strcmp(argv[2], "start-items") == 0) {
        size_t n = (size_t)(argc - 3);
        cbm_client_start_item_t *items = calloc(n ? n : 1, sizeof(*items));
        for (size_t i = 0; items != NULL && i < n; i++) split_item(argv[3 + i], &items[i]);
        rc = items != NULL ? start_items(c, items, n, &err) : CBM_ENOMEM;
        free(items);
    } else if (strcmp(argv[2], "start-many") == 0 && argc == 5) {
        size_t n = (size_t)atoll(argv[3]);
        cbm_client_start_item_t *items = calloc(n ? n : 1, sizeof(*items));
        for (size_t i = 0; items != NULL && i < n; i++) items[i].blueprint = argv[4];
        rc = items != NULL ? start_items(c, items, n, &err) : CBM_ENOMEM;
        free(items);
    } else if (strcmp(argv[2], "council-get") == 0 && (argc == 4 || argc == 5)) {
        char version[65] = "", *json = NULL;
        rc = cbm_client_council_get(c, argv[3], argc == 5 ? argv[4] : NULL, &json, version, &err);
        if (rc == 0) printf("version=%s\n%s\n", version, json);
        else if (json != NULL) rc = CBM_EIO; /* must stay NULL on an error */
        free(json);
    } else if (strcmp(argv[2], "council-list") == 0 && argc == 3) {
        cbm_council_info_t *cs = NULL;
        size_t n = 0;
        rc = cbm_client_council_list(c, &cs, &n, &err);
        for (size_t i = 0; rc == 0 && i < n; i++)
            printf("%s %s %s %d %d\n", cs[i].name, cs[i].version, cs[i].role, cs[i].agents,
                   cs[i].created_at_us > 0);
        cbm_council_infos_free(cs, n);
    } else if (strcmp(argv[2], "null-args") == 0) {
        cbm_execution_info_t *info = NULL;
        char id[37];
        int bad = 0;
        bad |= cbm_client_start(c, NULL, NULL, NULL, id, &err) != CBM_EINVAL;
        bad |= cbm_client_get(c, NULL, &info, NULL, &err) != CBM_EINVAL;
        bad |= cbm_client_approve(c, "x", NULL, NULL, NULL, &err) != CBM_EINVAL;
        bad |= cbm_client_signal(c, "x", "", NULL, &err) != CBM_EINVAL;
        bad |= cbm_client_connect(NULL, "x", NULL, &err) != CBM_EINVAL;
        bad |= cbm_client_start_many(c, NULL, 1, NULL, &err) != CBM_EINVAL;
        bad |= cbm_client_council_put(c, NULL, NULL, NULL, &err) != CBM_EINVAL;
        bad |= cbm_client_council_get(c, NULL, NULL, NULL, NULL, &err) != CBM_EINVAL;
        bad |= cbm_client_council_list(c, NULL, NULL, &err) != CBM_EINVAL;
        bad |= cbm_client_council_delete(c, NULL, &err) != CBM_EINVAL;
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
