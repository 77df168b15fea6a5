/*
 * prompt.c - see prompt.h. One scanner serves both the check and the
 * rendering, so what a council put accepts is exactly what the worker can
 * render.
 */
#include "engine/prompt.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"

#define ALL_CALLS (PROMPT_GENERATE | PROMPT_CRITIQUE | PROMPT_REVISE | PROMPT_SCORE)

static const struct {
    const char *name;
    unsigned phases;
} VARS[] = {
    {"agent", PROMPT_SYSTEM | ALL_CALLS},
    {"persona", PROMPT_SYSTEM | ALL_CALLS},
    {"role", PROMPT_SYSTEM | ALL_CALLS},
    {"task", ALL_CALLS},
    {"context", ALL_CALLS},
    {"round", ALL_CALLS},
    {"proposal", PROMPT_CRITIQUE | PROMPT_REVISE | PROMPT_SCORE},
    {"critiques", PROMPT_REVISE},
    {"rubric", PROMPT_SCORE},
};

prompt_phase_t prompt_phase_of(const char *name)
{
    static const struct {
        const char *name;
        prompt_phase_t phase;
    } P[] = {{"system", PROMPT_SYSTEM},     {"generate", PROMPT_GENERATE},
             {"critique", PROMPT_CRITIQUE}, {"revise", PROMPT_REVISE},
             {"score", PROMPT_SCORE}};
    for (size_t i = 0; name != NULL && i < sizeof(P) / sizeof(P[0]); i++)
        if (strcmp(P[i].name, name) == 0) return P[i].phase;
    return 0;
}

static bool is_space(char c) { return c == ' ' || c == '\t'; }

/* At tmpl[*at] == "{{": the variable's name (start, length) and the offset
 * after its "}}". false with *why when it is not a well-formed
 * placeholder. */
static bool placeholder(const char *tmpl, size_t at, size_t *name, size_t *len, size_t *end,
                        const char **why)
{
    size_t i = at + 2;
    while (is_space(tmpl[i])) i++;
    *name = i;
    while ((tmpl[i] >= 'a' && tmpl[i] <= 'z') || tmpl[i] == '_') i++;
    *len = i - *name;
    while (is_space(tmpl[i])) i++;
    if (*len == 0) {
        *why = tmpl[i] == '\0' ? "unclosed '{{'" : "'{{' without a variable name";
        return false;
    }
    if (tmpl[i] != '}' || tmpl[i + 1] != '}') {
        *why = "unclosed '{{'";
        return false;
    }
    *end = i + 2;
    return true;
}

static int var_index(const char *name, size_t len)
{
    for (size_t k = 0; k < sizeof(VARS) / sizeof(VARS[0]); k++)
        if (strlen(VARS[k].name) == len && memcmp(VARS[k].name, name, len) == 0) return (int)k;
    return -1;
}

/* Walk the template; for each placeholder that passes the check call
 * @p emit (when not NULL). @p phase 0 accepts every phase's variables. */
typedef int (*emit_fn)(void *ctx, const char *text, size_t n, int var);

static int scan(const char *tmpl, unsigned phase, const char *what, emit_fn emit, void *ctx,
                cbm_error_t *err)
{
    size_t i = 0, lit = 0;
    const char *why;

    if (tmpl == NULL) return cbm_error_set(err, CBM_EINVAL, "%s: missing", what);
    while (tmpl[i] != '\0') {
        size_t name, len, end;
        int k;
        if (tmpl[i] != '{' || tmpl[i + 1] != '{') {
            i++;
            continue;
        }
        if (!placeholder(tmpl, i, &name, &len, &end, &why))
            return cbm_error_set(err, CBM_EINVAL, "%s: %s at byte %zu", what, why, i);
        if ((k = var_index(tmpl + name, len)) < 0)
            return cbm_error_set(err, CBM_EINVAL, "%s: unknown variable '%.*s' at byte %zu", what,
                                 (int)(len > 40 ? 40 : len), tmpl + name, i);
        if (phase != 0 && (VARS[k].phases & phase) == 0)
            return cbm_error_set(err, CBM_EINVAL, "%s: variable '%s' is not available here "
                                 "(byte %zu)", what, VARS[k].name, i);
        if (emit != NULL) {
            int rc;
            if ((rc = emit(ctx, tmpl + lit, i - lit, -1)) != 0 || (rc = emit(ctx, NULL, 0, k)) != 0)
                return cbm_error_set(err, rc, "out of memory");
        }
        i = lit = end;
    }
    if (emit != NULL && i > lit && emit(ctx, tmpl + lit, i - lit, -1) != 0)
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    return 0;
}

int prompt_check(const char *tmpl, prompt_phase_t phase, const char *what, cbm_error_t *err)
{
    return scan(tmpl, (unsigned)phase, what, NULL, NULL, err);
}

typedef struct {
    char *buf;
    size_t len, cap;
    const cJSON *vars;
} out_t;

static int put(out_t *o, const char *s, size_t n)
{
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        char *b;
        while (cap < o->len + n + 1) cap *= 2;
        if ((b = realloc(o->buf, cap)) == NULL) return CBM_ENOMEM;
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
    return 0;
}

static int emit_out(void *ctx, const char *text, size_t n, int var)
{
    out_t *o = ctx;
    const cJSON *v;
    char *json;
    int rc;

    if (var < 0) return put(o, text, n);
    v = cJSON_GetObjectItemCaseSensitive(o->vars, VARS[var].name);
    if (v == NULL || cJSON_IsNull(v)) return put(o, "", 0);
    if (cJSON_IsString(v)) return put(o, v->valuestring, strlen(v->valuestring));
    if ((json = cJSON_PrintUnformatted(v)) == NULL) return CBM_ENOMEM;
    rc = put(o, json, strlen(json));
    cJSON_free(json);
    return rc;
}

int prompt_render(const char *tmpl, const cJSON *vars, char **out, cbm_error_t *err)
{
    out_t o = {.vars = vars};
    int rc;

    *out = NULL;
    if ((rc = put(&o, "", 0)) != 0) return cbm_error_set(err, rc, "out of memory");
    if ((rc = scan(tmpl, 0, "template", emit_out, &o, err)) != 0) {
        free(o.buf);
        return rc;
    }
    *out = o.buf;
    return 0;
}
