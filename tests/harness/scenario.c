/* scenario.c - see scenario.h. */
#include <dirent.h>
#include "tests/harness/scenario.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (f == NULL) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) != NULL) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else {
            buf[n] = '\0';
        }
    }
    fclose(f);
    return buf;
}

int scn_load(const char *path, scn_t *s, char *err, size_t errlen)
{
    char *text = slurp(path);
    const cJSON *v;
    memset(s, 0, sizeof(*s));
    if (text == NULL) {
        snprintf(err, errlen, "%s: cannot read", path);
        return -1;
    }
    s->doc = cJSON_Parse(text);
    free(text);
    s->path = strdup(path);
    if (s->doc == NULL || !cJSON_IsObject(s->doc)) {
        snprintf(err, errlen, "%s: not a JSON object", path);
        goto fail;
    }
    v = cJSON_GetObjectItemCaseSensitive(s->doc, "name");
    s->name = cJSON_IsString(v) ? v->valuestring : path;
    v = cJSON_GetObjectItemCaseSensitive(s->doc, "blueprint");
    if (!cJSON_IsObject(v)) {
        snprintf(err, errlen, "%s: blueprint must be an object", path);
        goto fail;
    }
    s->blueprint_json = cJSON_PrintUnformatted(v);
    v = cJSON_GetObjectItemCaseSensitive(s->doc, "children");
    if (v != NULL) {
        const cJSON *c;
        if (!cJSON_IsArray(v) || (s->children_json = calloc((size_t)cJSON_GetArraySize(v) + 1,
                                                            sizeof(char *))) == NULL) {
            snprintf(err, errlen, "%s: children must be an array of blueprints", path);
            goto fail;
        }
        cJSON_ArrayForEach(c, v) {
            if (!cJSON_IsObject(c)) {
                snprintf(err, errlen, "%s: children must be an array of blueprints", path);
                goto fail;
            }
            s->children_json[s->nchildren++] = cJSON_PrintUnformatted(c);
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(s->doc, "inputs");
    s->inputs_json = v != NULL ? cJSON_PrintUnformatted(v) : strdup("{}");
    s->script = cJSON_GetObjectItemCaseSensitive(s->doc, "script");
    if (s->script != NULL && !cJSON_IsObject(s->script)) {
        snprintf(err, errlen, "%s: script must be an object of step -> [outcomes]", path);
        goto fail;
    }
    s->expect = cJSON_GetObjectItemCaseSensitive(s->doc, "expect");
    if (!cJSON_IsObject(s->expect) ||
        !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(s->expect, "events")) ||
        !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(s->expect, "status"))) {
        snprintf(err, errlen, "%s: expect needs events (an array) and status", path);
        goto fail;
    }
    return 0;
fail:
    scn_finish(s);
    return -1;
}

void scn_finish(scn_t *s)
{
    cJSON_Delete(s->doc);
    free(s->path);
    free(s->blueprint_json);
    free(s->inputs_json);
    for (size_t i = 0; i < s->nchildren; i++) free(s->children_json[i]);
    free(s->children_json);
    memset(s, 0, sizeof(*s));
}

int scn_outcome(const scn_t *s, const char *step, int attempt, scn_outcome_t *o)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(s->script, step), *it, *f;
    int n = cJSON_GetArraySize(list);
    memset(o, 0, sizeof(*o));
    if (!cJSON_IsArray(list) || n == 0) {
        char buf[256];
        snprintf(buf, sizeof(buf), "{\"step\":\"%s\",\"attempt\":%d}", step, attempt);
        o->ok = true;
        o->json = strdup(buf);
        return 0;
    }
    it = cJSON_GetArrayItem(list, attempt <= n ? attempt - 1 : n - 1);
    if ((f = cJSON_GetObjectItemCaseSensitive(it, "ok")) != NULL) {
        o->ok = true;
        o->json = cJSON_PrintUnformatted(f);
        return 0;
    }
    if (cJSON_IsObject(f = cJSON_GetObjectItemCaseSensitive(it, "fail"))) {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(f, "kind");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(f, "message");
        o->kind = strdup(cJSON_IsString(k) ? k->valuestring : "error");
        o->message = strdup(cJSON_IsString(m) ? m->valuestring : "");
        o->retryable = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(f, "retryable"));
        return 0;
    }
    o->message = strdup("scenario outcome must be {\"ok\": ...} or {\"fail\": {...}}");
    return -1;
}

void scn_outcome_finish(scn_outcome_t *o)
{
    free(o->json);
    free(o->kind);
    free(o->message);
    memset(o, 0, sizeof(*o));
}

int scn_check(const scn_t *s, const char *const *types, size_t ntypes, const char *status,
              const char *result_json, char *err, size_t errlen)
{
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(s->expect, "events");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(s->expect, "status");
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(s->expect, "result");
    size_t nwant = (size_t)cJSON_GetArraySize(want), i = 0, len = 0;
    const cJSON *it;
    char got[4096] = "";

    for (size_t k = 0; k < ntypes && len < sizeof(got) - 64; k++)
        len += (size_t)snprintf(got + len, sizeof(got) - len, "%s%s", k ? "," : "", types[k]);
    cJSON_ArrayForEach(it, want) {
        if (i >= ntypes || !cJSON_IsString(it) || strcmp(it->valuestring, types[i]) != 0) {
            snprintf(err, errlen, "%s: event %zu: want %s, got %s\n  history: %s", s->name, i + 1,
                     cJSON_IsString(it) ? it->valuestring : "?", i < ntypes ? types[i] : "(end)",
                     got);
            return -1;
        }
        i++;
    }
    if (ntypes != nwant) {
        snprintf(err, errlen, "%s: %zu events, want %zu\n  history: %s", s->name, ntypes, nwant,
                 got);
        return -1;
    }
    if (strcmp(st->valuestring, status) != 0) {
        snprintf(err, errlen, "%s: status %s, want %s", s->name, status, st->valuestring);
        return -1;
    }
    if (res != NULL) {
        cJSON *r = cJSON_Parse(result_json != NULL ? result_json : "null");
        int same = r != NULL && cJSON_Compare(r, res, true);
        char *w = cJSON_PrintUnformatted(res);
        if (!same)
            snprintf(err, errlen, "%s: result %s, want %s", s->name,
                     result_json ? result_json : "null", w ? w : "?");
        free(w);
        cJSON_Delete(r);
        if (!same) return -1;
    }
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int scn_files(const char *dir, char *const *only, int nonly, char ***files, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    *files = NULL;
    *n = 0;
    if (d == NULL) {
        perror(dir);
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        int want = nonly == 0;
        char **nf;
        if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0) continue;
        for (int k = 0; k < nonly; k++) want |= strcmp(only[k], de->d_name) == 0;
        if (!want) continue;
        if ((nf = realloc(*files, (*n + 1) * sizeof(*nf))) == NULL ||
            (nf[*n] = strdup(de->d_name)) == NULL) {
            if (nf != NULL) *files = nf;
            closedir(d);
            scn_files_free(*files, *n);
            *files = NULL;
            *n = 0;
            return -1;
        }
        *files = nf;
        (*n)++;
    }
    closedir(d);
    if (*n > 1) qsort(*files, *n, sizeof(**files), cmp_names);
    return 0;
}

void scn_files_free(char **files, size_t n)
{
    for (size_t i = 0; i < n; i++) free(files[i]);
    free(files);
}
