/*
 * builder.c - the public blueprint builder (cbm_builder_*).
 *
 * The builder only collects steps and prints them as blueprint JSON
 * ({"name": ..., "steps": [{"name", "handler", "depends_on"}, ...]}), plus any
 * other field set with cbm_builder_set() (a kind, diverge rules, a branch,
 * input declarations: any key of the format, as a JSON value). It checks
 * nothing but its arguments: names, fields, duplicates and cycles are
 * validated when the JSON is registered, by the same bp_parse_json() that
 * reads hand-written blueprints, so the two ways of writing a blueprint cannot
 * drift apart.
 *
 * Memory comes from cJSON_malloc(), like the blueprint model, so that the unit
 * tests' failing allocator reaches it too; with cJSON's default hooks (the
 * library never changes them) that is malloc, and the JSON text handed out is
 * freed with free().
 */
#include <cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cerebelum/cerebelum.h"
#include "engine/json_text.h"

typedef struct builder_step {
    char *name;
    char *handler; /* NULL: the step's name */
    char **deps;
    size_t ndeps;
    cJSON *extra; /* fields set with cbm_builder_set, in order; NULL: none */
} builder_step_t;

struct cbm_builder {
    char *name;
    cJSON *extra; /* top-level fields set with cbm_builder_set */
    builder_step_t *steps;
    size_t nsteps, cap;
};

static char *xstrdup(const char *s)
{
    size_t len = strlen(s) + 1;
    char *p = cJSON_malloc(len);
    if (p != NULL) memcpy(p, s, len);
    return p;
}

static void step_finish(builder_step_t *s)
{
    cJSON_free(s->name);
    cJSON_free(s->handler);
    for (size_t i = 0; i < s->ndeps; i++) cJSON_free(s->deps[i]);
    cJSON_free(s->deps);
    cJSON_Delete(s->extra);
}

cbm_builder_t *cbm_builder_create(const char *name)
{
    cbm_builder_t *b;
    if (name == NULL) return NULL;
    if ((b = cJSON_malloc(sizeof(*b))) == NULL) return NULL;
    memset(b, 0, sizeof(*b));
    if ((b->name = xstrdup(name)) == NULL) {
        cJSON_free(b);
        return NULL;
    }
    return b;
}

void cbm_builder_destroy(cbm_builder_t *b)
{
    if (b == NULL) return;
    for (size_t i = 0; i < b->nsteps; i++) step_finish(&b->steps[i]);
    cJSON_free(b->steps);
    cJSON_Delete(b->extra);
    cJSON_free(b->name);
    cJSON_free(b);
}

/* Make room for one more step; the array doubles. */
static int reserve(cbm_builder_t *b)
{
    size_t cap;
    builder_step_t *steps;
    if (b->nsteps < b->cap) return 0;
    cap = b->cap ? b->cap * 2 : 8;
    if (cap > SIZE_MAX / sizeof(*steps)) return CBM_ENOMEM;
    /* cJSON's hooks have no realloc: allocate and copy. */
    if ((steps = cJSON_malloc(cap * sizeof(*steps))) == NULL) return CBM_ENOMEM;
    if (b->nsteps > 0) memcpy(steps, b->steps, b->nsteps * sizeof(*steps));
    cJSON_free(b->steps);
    b->steps = steps;
    b->cap = cap;
    return 0;
}

int cbm_builder_add_step(cbm_builder_t *b, const char *name, const char *handler,
                         const char *const *deps, size_t ndeps)
{
    builder_step_t s = {0};
    if (b == NULL || name == NULL || (deps == NULL && ndeps > 0)) return CBM_EINVAL;
    for (size_t i = 0; i < ndeps; i++)
        if (deps[i] == NULL) return CBM_EINVAL;
    if (reserve(b) != 0) return CBM_ENOMEM;

    if ((s.name = xstrdup(name)) == NULL) goto nomem;
    if (handler != NULL && (s.handler = xstrdup(handler)) == NULL) goto nomem;
    if (ndeps > 0) {
        if (ndeps > SIZE_MAX / sizeof(char *) ||
            (s.deps = cJSON_malloc(ndeps * sizeof(char *))) == NULL)
            goto nomem;
        for (; s.ndeps < ndeps; s.ndeps++)
            if ((s.deps[s.ndeps] = xstrdup(deps[s.ndeps])) == NULL) goto nomem;
    }
    b->steps[b->nsteps++] = s;
    return 0;
nomem:
    step_finish(&s);
    return CBM_ENOMEM;
}

/* Keys the builder writes itself. */
static bool reserved_key(const char *step, const char *key)
{
    static const char *const top[] = {"name", "steps", "timeline", NULL};
    static const char *const in_step[] = {"name", "handler", "depends_on", NULL};
    for (const char *const *k = step != NULL ? in_step : top; *k != NULL; k++)
        if (strcmp(*k, key) == 0) return true;
    return false;
}

int cbm_builder_set(cbm_builder_t *b, const char *step, const char *key, const char *value_json)
{
    cJSON **extra = NULL, *value;
    const char *end = NULL;
    size_t len;

    if (b == NULL || key == NULL || value_json == NULL || reserved_key(step, key)) return CBM_EINVAL;
    if (step == NULL) {
        extra = &b->extra;
    } else {
        for (size_t i = 0; i < b->nsteps && extra == NULL; i++)
            if (strcmp(b->steps[i].name, step) == 0) extra = &b->steps[i].extra;
        if (extra == NULL) return CBM_EINVAL;
    }
    len = strlen(value_json);
    value = cJSON_ParseWithLengthOpts(value_json, len, &end, 0);
    if (value == NULL) return json_text_well_formed(value_json, len) ? CBM_ENOMEM : CBM_EJSON;
    while (end != NULL && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (end == NULL || *end != '\0') {
        cJSON_Delete(value);
        return CBM_EJSON;
    }
    if (*extra == NULL && (*extra = cJSON_CreateObject()) == NULL) {
        cJSON_Delete(value);
        return CBM_ENOMEM;
    }
    if (cJSON_GetObjectItemCaseSensitive(*extra, key) != NULL) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(*extra, key, value)) {
            cJSON_Delete(value);
            return CBM_ENOMEM;
        }
    } else if (!cJSON_AddItemToObject(*extra, key, value)) {
        cJSON_Delete(value);
        return CBM_ENOMEM;
    }
    return 0;
}

/* Copies of the fields in extra, appended to o. */
static bool add_extra(cJSON *o, const cJSON *extra)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, extra) {
        cJSON *c = cJSON_Duplicate(it, true);
        if (c == NULL) return false;
        if (!cJSON_AddItemToObject(o, it->string, c)) {
            cJSON_Delete(c);
            return false;
        }
    }
    return true;
}

static cJSON *step_json(const builder_step_t *s)
{
    cJSON *o = cJSON_CreateObject(), *deps;
    if (o == NULL) return NULL;
    if (!cJSON_AddStringToObject(o, "name", s->name) ||
        !cJSON_AddStringToObject(o, "handler", s->handler ? s->handler : s->name) ||
        (deps = cJSON_AddArrayToObject(o, "depends_on")) == NULL)
        goto fail;
    for (size_t i = 0; i < s->ndeps; i++) {
        cJSON *d = cJSON_CreateString(s->deps[i]);
        if (d == NULL) goto fail;
        if (!cJSON_AddItemToArray(deps, d)) {
            cJSON_Delete(d);
            goto fail;
        }
    }
    if (!add_extra(o, s->extra)) goto fail;
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

int cbm_builder_to_json(const cbm_builder_t *b, char **json)
{
    cJSON *root, *steps;
    if (json != NULL) *json = NULL;
    if (b == NULL || json == NULL) return CBM_EINVAL;

    root = cJSON_CreateObject();
    if (root == NULL || !cJSON_AddStringToObject(root, "name", b->name) ||
        !add_extra(root, b->extra) || (steps = cJSON_AddArrayToObject(root, "steps")) == NULL)
        goto fail;
    for (size_t i = 0; i < b->nsteps; i++) {
        cJSON *o = step_json(&b->steps[i]);
        if (o == NULL) goto fail;
        if (!cJSON_AddItemToArray(steps, o)) {
            cJSON_Delete(o);
            goto fail;
        }
    }
    *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return *json != NULL ? 0 : CBM_ENOMEM;
fail:
    cJSON_Delete(root);
    return CBM_ENOMEM;
}
