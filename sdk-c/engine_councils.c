/*
 * engine_councils.c - the councils of the public engine API (cerebelum.h,
 * "Councils"): engine/council.h validates and makes the canonical form, the
 * store keeps it (store.h, "Councils"). Each call is one store call on the
 * engine's read connection (cbm__engine_read); nothing is cached, so every
 * process that shares the database sees the same councils at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "cerebelum/cerebelum.h"
#include "engine/council.h"
#include "engine_internal.h"

typedef struct put_args {
    const council_t *c;
    bool created;
} put_args_t;

static int do_put(store_t *s, void *arg, cbm_error_t *err)
{
    put_args_t *a = arg;
    return store_council_put(s, a->c->name, a->c->version, a->c->canonical, &a->created, err);
}

int cbm_council_put(cbm_engine_t *e, const char *json, char version_out[65], bool *created,
                    cbm_error_t *err)
{
    put_args_t a = {0};
    council_t *c = NULL;
    int rc;

    if (created != NULL) *created = false;
    if (e == NULL || json == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    if ((rc = council_parse(json, strlen(json), &c, err)) != 0) return rc;
    a.c = c;
    if ((rc = cbm__engine_read(e, do_put, &a, err)) == 0) {
        if (version_out != NULL) memcpy(version_out, c->version, 65);
        if (created != NULL) *created = a.created;
    }
    council_destroy(c);
    return rc;
}

typedef struct get_args {
    const char *name, *version;
    store_council_t *row;
} get_args_t;

static int do_get(store_t *s, void *arg, cbm_error_t *err)
{
    get_args_t *a = arg;
    return store_council_get(s, a->name, a->version, &a->row, err);
}

int cbm_council_get(cbm_engine_t *e, const char *name, const char *version, char **json_out,
                    char version_out[65], cbm_error_t *err)
{
    get_args_t a = {.name = name, .version = version};
    int rc;

    if (json_out != NULL) *json_out = NULL;
    if (name == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL council name");
    if ((rc = cbm_str_check(name, "council name", err)) != 0 ||
        (rc = cbm_str_check(version, "council version", err)) != 0 ||
        (rc = cbm__engine_read(e, do_get, &a, err)) != 0)
        return rc;
    if (version_out != NULL) snprintf(version_out, 65, "%s", a.row->version);
    if (json_out != NULL) {
        *json_out = a.row->definition; /* taken over */
        a.row->definition = NULL;
    }
    store_councils_free(a.row, 1);
    return 0;
}

typedef struct list_args {
    store_council_t *rows;
    size_t n;
} list_args_t;

static int do_list(store_t *s, void *arg, cbm_error_t *err)
{
    list_args_t *a = arg;
    return store_council_list(s, &a->rows, &a->n, err);
}

int cbm_council_list(cbm_engine_t *e, cbm_council_info_t **out, size_t *n, cbm_error_t *err)
{
    list_args_t a = {0};
    cbm_council_info_t *infos;
    int rc;

    if (out == NULL || n == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    *out = NULL;
    *n = 0;
    if ((rc = cbm__engine_read(e, do_list, &a, err)) != 0 || a.n == 0) return rc;
    if ((infos = calloc(a.n, sizeof(*infos))) == NULL) {
        store_councils_free(a.rows, a.n);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    /* The strings move over; the store's row keeps nothing to free twice. */
    for (size_t i = 0; i < a.n; i++) {
        infos[i].name = a.rows[i].name;
        infos[i].version = a.rows[i].version;
        infos[i].role = a.rows[i].role;
        infos[i].agents = a.rows[i].agents;
        infos[i].created_at_us = a.rows[i].created_at_us;
        a.rows[i].name = a.rows[i].version = a.rows[i].role = NULL;
    }
    store_councils_free(a.rows, a.n);
    *out = infos;
    *n = a.n;
    return 0;
}

void cbm_council_infos_free(cbm_council_info_t *infos, size_t n)
{
    if (infos == NULL) return;
    for (size_t i = 0; i < n; i++) {
        free(infos[i].name);
        free(infos[i].version);
        free(infos[i].role);
    }
    free(infos);
}

static int do_delete(store_t *s, void *arg, cbm_error_t *err)
{
    return store_council_delete(s, arg, err);
}

int cbm_council_delete(cbm_engine_t *e, const char *name, cbm_error_t *err)
{
    int rc;
    if (name == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL council name");
    if ((rc = cbm_str_check(name, "council name", err)) != 0) return rc;
    return cbm__engine_read(e, do_delete, (void *)(uintptr_t)name, err);
}
