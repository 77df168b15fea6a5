/*
 * trigger.c - see trigger.h. Parsing builds the canonical tree field by
 * field in a fixed order (defaults written out), so two definitions that
 * mean the same have the same canonical text and version. Evaluation walks
 * the inputs template once per job, replacing each string that is a path
 * with a copy of the value it names.
 */
#include "bus/trigger.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cbm_internal.h"

#define KEY_MAX 256

enum { R_BAD, R_DATA, R_SUBJECT, R_HEADER, R_STREAM, R_SEQ, R_ITEM, R_INDEX };

/* The root of path p; *rest: what follows it (segments, or the header
 * name for R_HEADER). */
static int path_root(const char *p, const char **rest)
{
    static const struct { const char *prefix; int root; } roots[] = {
        {"$.msg.data", R_DATA},     {"$.msg.subject", R_SUBJECT}, {"$.msg.headers.", R_HEADER},
        {"$.msg.stream", R_STREAM}, {"$.msg.seq", R_SEQ},         {"$.item", R_ITEM},
        {"$.index", R_INDEX},
    };
    for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
        size_t n = strlen(roots[i].prefix);
        if (strncmp(p, roots[i].prefix, n) != 0) continue;
        *rest = p + n;
        if (roots[i].root == R_HEADER) return **rest != '\0' ? R_HEADER : R_BAD;
        if (roots[i].root == R_DATA || roots[i].root == R_ITEM)
            return **rest == '\0' || **rest == '.' || **rest == '[' ? roots[i].root : R_BAD;
        return **rest == '\0' ? roots[i].root : R_BAD;
    }
    return R_BAD;
}

/* Follow segments ".name" and "[N]" from v. With v NULL only the syntax is
 * checked: true when well-formed. Otherwise *out is the node or NULL. */
static bool walk(const cJSON *v, const char *s, const cJSON **out)
{
    char name[256];

    while (*s != '\0') {
        if (*s == '.') {
            size_t n = strcspn(s + 1, ".[");
            if (n == 0 || n >= sizeof(name)) return false;
            memcpy(name, s + 1, n);
            name[n] = '\0';
            s += 1 + n;
            if (v != NULL) v = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, name) : NULL;
        } else if (*s == '[') {
            char *end;
            long i = strtol(s + 1, &end, 10);
            if (end == s + 1 || *end != ']' || i < 0) return false;
            s = end + 1;
            if (v != NULL) v = cJSON_IsArray(v) ? cJSON_GetArrayItem(v, (int)i) : NULL;
        } else {
            return false;
        }
        if (v == NULL && out != NULL) break;
    }
    if (out != NULL) *out = v;
    return true;
}

static bool is_path(const char *s) { return s[0] == '$' && s[1] == '.'; }

/* ---- parse ---------------------------------------------------------------- */

typedef struct ctx {
    cbm_error_t *err;
    char who[96];
    bool has_for_each;
} ctx_t;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int bad(ctx_t *c, const char *field, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return cbm_error_set(c->err, CBM_EINVAL, "%s: %s: %s", c->who, field, msg);
}

static bool name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max) return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.') return false;
    return true;
}

/* A required (or optional, with dflt) string field; *out malloc'd. */
static int get_str(ctx_t *c, const cJSON *in, const char *field, const char *dflt, char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(in, field);
    if (v == NULL || cJSON_IsNull(v)) {
        if (dflt == NULL) return bad(c, field, "is required");
        v = NULL;
    } else if (!cJSON_IsString(v) || v->valuestring[0] == '\0') {
        return bad(c, field, "must be a non-empty string");
    }
    if ((*out = strdup(v != NULL ? v->valuestring : dflt)) == NULL)
        return cbm_error_set(c->err, CBM_ENOMEM, "trigger: out of memory");
    return 0;
}

static int get_int(ctx_t *c, const cJSON *in, const char *field, int64_t dflt, int64_t lo,
                   int64_t hi, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(in, field);
    *out = dflt;
    if (v == NULL) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int64_t)v->valuedouble ||
        v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return bad(c, field, "must be an integer from %lld to %lld", (long long)lo, (long long)hi);
    *out = (int64_t)v->valuedouble;
    return 0;
}

static int check_path(ctx_t *c, const char *field, const char *p)
{
    const char *rest;
    int r = path_root(p, &rest);
    if (r == R_BAD)
        return bad(c, field, "'%s' is not a path ($.msg.data..., $.msg.subject, "
                   "$.msg.headers.NAME, $.msg.stream, $.msg.seq, $.item..., $.index)", p);
    if ((r == R_ITEM || r == R_INDEX) && !c->has_for_each)
        return bad(c, field, "'%s' needs for_each", p);
    if ((r == R_DATA || r == R_ITEM) && !walk(NULL, rest, NULL))
        return bad(c, field, "'%s': bad segment (.name or [N])", p);
    return 0;
}

/* Every path string in the template, recursively. */
static int check_template(ctx_t *c, const cJSON *v)
{
    int rc;
    if (cJSON_IsString(v) && is_path(v->valuestring)) return check_path(c, "inputs", v->valuestring);
    for (const cJSON *k = v->child; k != NULL; k = k->next)
        if ((rc = check_template(c, k)) != 0) return rc;
    return 0;
}

static int by_key(const void *a, const void *b)
{
    return strcmp((*(cJSON *const *)a)->string, (*(cJSON *const *)b)->string);
}

/* Sort the keys of every object in v, so a template's key order (which
 * JSON does not give meaning) changes neither the version nor the inputs. */
static int sort_keys(cJSON *v)
{
    cJSON **a;
    size_t n = 0, i = 0;

    for (cJSON *k = v->child; k != NULL; k = k->next) {
        if (sort_keys(k) != 0) return CBM_ENOMEM;
        n++;
    }
    if (!cJSON_IsObject(v) || n < 2) return 0;
    if ((a = malloc(n * sizeof(*a))) == NULL) return CBM_ENOMEM;
    for (cJSON *k = v->child; k != NULL; k = k->next) a[i++] = k;
    qsort(a, n, sizeof(*a), by_key);
    for (i = 0; i < n; i++) {
        a[i]->next = i + 1 < n ? a[i + 1] : NULL;
        a[i]->prev = i > 0 ? a[i - 1] : a[n - 1];
    }
    v->child = a[0];
    free(a);
    return 0;
}

static int add(cJSON *o, const char *k, cJSON *v)
{
    if (v == NULL || !cJSON_AddItemToObject(o, k, v)) {
        cJSON_Delete(v);
        return CBM_ENOMEM;
    }
    return 0;
}

static int build_canonical(trigger_t *t, cbm_error_t *err)
{
    cJSON *o = cJSON_CreateObject(), *subs = NULL;
    int rc = o == NULL ? CBM_ENOMEM : 0;

    if (rc == 0) rc = add(o, "name", cJSON_CreateString(t->name));
    if (rc == 0) rc = add(o, "stream", cJSON_CreateString(t->stream));
    if (rc == 0 && t->stream_subjects != NULL) {
        rc = add(o, "stream_subjects", subs = cJSON_CreateArray());
        for (size_t i = 0; rc == 0 && t->stream_subjects[i] != NULL; i++)
            if (!cJSON_AddItemToArray(subs, cJSON_CreateString(t->stream_subjects[i])))
                rc = CBM_ENOMEM;
    }
    if (rc == 0) rc = add(o, "consumer", cJSON_CreateString(t->consumer));
    if (rc == 0) rc = add(o, "subject", cJSON_CreateString(t->subject));
    if (rc == 0) rc = add(o, "action", cJSON_CreateString(t->action));
    if (rc == 0 && t->blueprint != NULL) rc = add(o, "blueprint", cJSON_CreateString(t->blueprint));
    if (rc == 0 && t->execution != NULL) rc = add(o, "execution", cJSON_CreateString(t->execution));
    if (rc == 0 && t->step != NULL) rc = add(o, "step", cJSON_CreateString(t->step));
    if (rc == 0 && t->signal != NULL) rc = add(o, "signal", cJSON_CreateString(t->signal));
    if (rc == 0 && t->reason != NULL) rc = add(o, "reason", cJSON_CreateString(t->reason));
    if (rc == 0) rc = add(o, "inputs", cJSON_Duplicate(t->inputs, true));
    if (rc == 0 && t->for_each != NULL) rc = add(o, "for_each", cJSON_CreateString(t->for_each));
    if (rc == 0)
        rc = add(o, "key", cJSON_CreateString(t->key_kind == TRIG_KEY_MSG_ID      ? "msg_id"
                                              : t->key_kind == TRIG_KEY_STREAM_SEQ ? "stream_seq"
                                                                                  : t->key_path));
    if (rc == 0) rc = add(o, "batch", cJSON_CreateNumber(t->batch));
    if (rc == 0) rc = add(o, "wait_ms", cJSON_CreateNumber(t->wait_ms));
    if (rc == 0) rc = add(o, "ack_wait_ms", cJSON_CreateNumber((double)t->ack_wait_ms));
    if (rc == 0) rc = add(o, "nak_delay_ms", cJSON_CreateNumber(t->nak_delay_ms));
    if (rc == 0 && (t->canonical = cJSON_PrintUnformatted(o)) == NULL) rc = CBM_ENOMEM;
    if (rc == 0 && cbm_sha256_hex(t->canonical, strlen(t->canonical), t->version) != 0)
        rc = CBM_ENOMEM;
    cJSON_Delete(o);
    return rc == 0 ? 0 : cbm_error_set(err, rc, "trigger: out of memory");
}

/* A template string field (a path, checked, or a literal). */
static int get_tmpl(ctx_t *c, const cJSON *in, const char *field, char **out)
{
    int rc;
    if ((rc = get_str(c, in, field, NULL, out)) != 0) return rc;
    return is_path(*out) ? check_path(c, field, *out) : 0;
}

/* What each action needs, and nothing another action uses. */
static int parse_action(ctx_t *c, const cJSON *in, trigger_t *t)
{
    static const char *const fields[] = {"blueprint", "execution", "step", "signal", "reason"};
    /* per action: 2 required, 1 optional, 0 refused (the order of fields) */
    static const int need[5][5] = {
        {2, 0, 0, 0, 0}, {0, 2, 0, 2, 0}, {0, 2, 2, 0, 0}, {0, 2, 2, 0, 1}, {0, 2, 0, 0, 1},
    };
    char **dst[5] = {&t->blueprint, &t->execution, &t->step, &t->signal, &t->reason};
    int rc;

    for (int i = 0; i < 5; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(in, fields[i]);
        if (need[t->act][i] == 0) {
            if (v != NULL) return bad(c, fields[i], "does not apply to action %s", t->action);
            continue;
        }
        if (v == NULL && need[t->act][i] == 2)
            return bad(c, fields[i], "is required for action %s", t->action);
        if (v == NULL) continue;
        if (i == 0) {
            if ((rc = get_str(c, in, fields[i], NULL, dst[i])) != 0) return rc;
        } else if ((rc = get_tmpl(c, in, fields[i], dst[i])) != 0) {
            return rc;
        }
    }
    return 0;
}

static int parse_fields(ctx_t *c, const cJSON *in, trigger_t *t)
{
    static const char *const known[] = {"name", "stream", "stream_subjects", "consumer",
        "subject", "action", "blueprint", "execution", "step", "signal", "reason", "inputs",
        "for_each", "key", "batch", "wait_ms", "ack_wait_ms", "nak_delay_ms", NULL};
    static const char *const acts[] = {"start", "signal", "approve", "reject", "cancel", NULL};
    const cJSON *v;
    int64_t n;
    int rc;

    for (v = in->child; v != NULL; v = v->next) {
        size_t i;
        for (i = 0; known[i] != NULL && strcmp(known[i], v->string) != 0; i++) {}
        if (known[i] == NULL) return bad(c, v->string, "unknown field");
    }
    if ((rc = get_str(c, in, "stream", NULL, &t->stream)) != 0 ||
        (rc = get_str(c, in, "consumer", NULL, &t->consumer)) != 0 ||
        (rc = get_str(c, in, "subject", NULL, &t->subject)) != 0 ||
        (rc = get_str(c, in, "action", "start", &t->action)) != 0)
        return rc;
    if (!name_ok(t->stream, 64) || strchr(t->stream, '.') != NULL)
        return bad(c, "stream", "letters, digits, - and _ only (1-64)");
    if (!name_ok(t->consumer, 64) || strchr(t->consumer, '.') != NULL)
        return bad(c, "consumer", "letters, digits, - and _ only (1-64)");
    if (strpbrk(t->subject, " \t\r\n") != NULL) return bad(c, "subject", "holds white space");
    for (t->act = 0; acts[t->act] != NULL && strcmp(acts[t->act], t->action) != 0; t->act++) {}
    if (acts[t->act] == NULL)
        return bad(c, "action", "'%s' is not one of start, signal, approve, reject, cancel",
                   t->action);
    if ((v = cJSON_GetObjectItemCaseSensitive(in, "stream_subjects")) != NULL) {
        int cnt = cJSON_GetArraySize(v);
        if (!cJSON_IsArray(v) || cnt == 0)
            return bad(c, "stream_subjects", "must be a non-empty array of subjects");
        if ((t->stream_subjects = calloc((size_t)cnt + 1, sizeof(char *))) == NULL)
            return cbm_error_set(c->err, CBM_ENOMEM, "trigger: out of memory");
        for (int i = 0; i < cnt; i++) {
            const cJSON *s = cJSON_GetArrayItem(v, i);
            if (!cJSON_IsString(s) || s->valuestring[0] == '\0')
                return bad(c, "stream_subjects", "item %d is not a non-empty string", i);
            if ((t->stream_subjects[i] = strdup(s->valuestring)) == NULL)
                return cbm_error_set(c->err, CBM_ENOMEM, "trigger: out of memory");
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(in, "for_each")) != NULL) {
        if (!cJSON_IsString(v)) return bad(c, "for_each", "must be a path");
        c->has_for_each = false; /* $.item inside for_each makes no sense */
        if ((rc = check_path(c, "for_each", v->valuestring)) != 0) return rc;
        if ((t->for_each = strdup(v->valuestring)) == NULL)
            return cbm_error_set(c->err, CBM_ENOMEM, "trigger: out of memory");
        c->has_for_each = true;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(in, "inputs")) != NULL) {
        if (!cJSON_IsObject(v)) return bad(c, "inputs", "must be a JSON object (a template)");
        if ((rc = check_template(c, v)) != 0) return rc;
        if ((t->inputs = cJSON_Duplicate(v, true)) != NULL && sort_keys(t->inputs) != 0) {
            cJSON_Delete(t->inputs);
            t->inputs = NULL;
        }
    } else {
        /* The default: the message itself (and the item). */
        t->inputs = cJSON_CreateObject();
        if (t->inputs != NULL && (cJSON_AddStringToObject(t->inputs, "data", "$.msg.data") == NULL ||
                                  cJSON_AddStringToObject(t->inputs, "subject", "$.msg.subject") == NULL ||
                                  (t->for_each != NULL &&
                                   cJSON_AddStringToObject(t->inputs, "item", "$.item") == NULL))) {
            cJSON_Delete(t->inputs);
            t->inputs = NULL;
        }
    }
    if (t->inputs == NULL) return cbm_error_set(c->err, CBM_ENOMEM, "trigger: out of memory");
    if ((rc = parse_action(c, in, t)) != 0) return rc;
    v = cJSON_GetObjectItemCaseSensitive(in, "key");
    if (v == NULL || (cJSON_IsString(v) && strcmp(v->valuestring, "msg_id") == 0)) {
        t->key_kind = TRIG_KEY_MSG_ID;
    } else if (cJSON_IsString(v) && strcmp(v->valuestring, "stream_seq") == 0) {
        t->key_kind = TRIG_KEY_STREAM_SEQ;
    } else if (cJSON_IsString(v) && is_path(v->valuestring)) {
        const char *rest;
        if (path_root(v->valuestring, &rest) == R_ITEM || path_root(v->valuestring, &rest) == R_INDEX)
            return bad(c, "key", "'%s': the key is the message's ($.item and $.index are added "
                       "by for_each itself)", v->valuestring);
        if ((rc = check_path(c, "key", v->valuestring)) != 0) return rc;
        t->key_kind = TRIG_KEY_PATH;
        if ((t->key_path = strdup(v->valuestring)) == NULL)
            return cbm_error_set(c->err, CBM_ENOMEM, "trigger: out of memory");
    } else {
        return bad(c, "key", "must be \"msg_id\", \"stream_seq\" or a path such as "
                   "\"$.msg.data.idempotency_key\"");
    }
    if ((rc = get_int(c, in, "batch", 10, 1, 256, &n)) != 0) return rc;
    t->batch = (int)n;
    if ((rc = get_int(c, in, "wait_ms", 1000, 10, 60000, &n)) != 0) return rc;
    t->wait_ms = (int)n;
    if ((rc = get_int(c, in, "ack_wait_ms", 30000, 1000, 3600000, &n)) != 0) return rc;
    t->ack_wait_ms = n;
    if ((rc = get_int(c, in, "nak_delay_ms", 1000, 10, 600000, &n)) != 0) return rc;
    t->nak_delay_ms = (int)n;
    return 0;
}

int trigger_parse(const char *json, size_t len, trigger_t **out, cbm_error_t *err)
{
    ctx_t c = {.err = err, .who = "trigger"};
    cJSON *in;
    trigger_t *t;
    int rc;

    *out = NULL;
    if (json == NULL) return cbm_error_set(err, CBM_EINVAL, "trigger: no JSON given");
    if ((rc = cbm_json_check(json, len, "trigger", err)) != 0) return rc;
    if ((in = cJSON_ParseWithLength(json, len)) == NULL)
        return cbm_error_set(err, CBM_EJSON, "trigger: not JSON");
    if (!cJSON_IsObject(in)) {
        cJSON_Delete(in);
        return cbm_error_set(err, CBM_EINVAL, "trigger: must be a JSON object");
    }
    if ((t = calloc(1, sizeof(*t))) == NULL) {
        cJSON_Delete(in);
        return cbm_error_set(err, CBM_ENOMEM, "trigger: out of memory");
    }
    if ((rc = get_str(&c, in, "name", NULL, &t->name)) == 0) {
        if (!name_ok(t->name, 64))
            rc = bad(&c, "name", "letters, digits, - _ and . only (1-64)");
        else
            snprintf(c.who, sizeof(c.who), "trigger '%s'", t->name);
    }
    if (rc == 0) rc = parse_fields(&c, in, t);
    if (rc == 0) rc = build_canonical(t, err);
    cJSON_Delete(in);
    if (rc != 0) {
        trigger_destroy(t);
        return rc;
    }
    *out = t;
    return 0;
}

void trigger_destroy(trigger_t *t)
{
    if (t == NULL) return;
    free(t->name);
    free(t->stream);
    free(t->consumer);
    free(t->subject);
    free(t->action);
    free(t->blueprint);
    free(t->execution);
    free(t->step);
    free(t->signal);
    free(t->reason);
    if (t->stream_subjects != NULL)
        for (size_t i = 0; t->stream_subjects[i] != NULL; i++) free(t->stream_subjects[i]);
    free(t->stream_subjects);
    cJSON_Delete(t->inputs);
    free(t->for_each);
    free(t->key_path);
    free(t->canonical);
    free(t);
}

/* ---- eval ----------------------------------------------------------------- */

typedef struct ectx {
    const trig_msg_t *m;
    const cJSON *data;     /* NULL: the data is not JSON */
    const cJSON *item;
    int index;
    char *reason;
    size_t rlen;
    bool oom;
} ectx_t;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static cJSON *poison(ectx_t *e, const char *fmt, ...)
{
    va_list ap;
    if (e->reason[0] != '\0') return NULL; /* the first reason wins */
    va_start(ap, fmt);
    vsnprintf(e->reason, e->rlen, fmt, ap);
    va_end(ap);
    return NULL;
}

static const char *header(const trig_msg_t *m, const char *name)
{
    for (size_t i = 0; i < m->nhdr; i++)
        if (strcmp(m->hdr_keys[i], name) == 0) return m->hdr_vals[i];
    for (size_t i = 0; i < m->nhdr; i++)
        if (strcasecmp(m->hdr_keys[i], name) == 0) return m->hdr_vals[i];
    return NULL;
}

/* A new node with the value path p names in message e, or NULL (poison or
 * out of memory, e->oom says). */
static cJSON *resolve(ectx_t *e, const char *p)
{
    const char *rest;
    const cJSON *v = NULL;
    cJSON *r;

    switch (path_root(p, &rest)) {
    case R_SUBJECT: r = cJSON_CreateString(e->m->subject != NULL ? e->m->subject : ""); break;
    case R_STREAM: r = cJSON_CreateString(e->m->stream != NULL ? e->m->stream : ""); break;
    case R_SEQ: r = cJSON_CreateNumber((double)e->m->seq); break;
    case R_INDEX: r = cJSON_CreateNumber(e->index); break;
    case R_HEADER: {
        const char *h = header(e->m, rest);
        if (h == NULL) return poison(e, "%s: the message has no header '%s'", p, rest);
        r = cJSON_CreateString(h);
        break;
    }
    case R_DATA:
    case R_ITEM:
        if (path_root(p, &rest) == R_DATA) {
            if (e->data == NULL) return poison(e, "%s: the message's data is not JSON", p);
            walk(e->data, rest, &v);
        } else {
            walk(e->item, rest, &v);
        }
        if (v == NULL) return poison(e, "%s: not found in the message", p);
        r = cJSON_Duplicate(v, true);
        break;
    default: return poison(e, "%s: not a path", p);
    }
    if (r == NULL) e->oom = true;
    return r;
}

/* A copy of template v with every path replaced. */
static cJSON *expand(ectx_t *e, const cJSON *v)
{
    cJSON *r;
    if (cJSON_IsString(v) && is_path(v->valuestring)) return resolve(e, v->valuestring);
    if (!cJSON_IsObject(v) && !cJSON_IsArray(v)) {
        if ((r = cJSON_Duplicate(v, false)) == NULL) e->oom = true;
        return r;
    }
    if ((r = cJSON_IsObject(v) ? cJSON_CreateObject() : cJSON_CreateArray()) == NULL) {
        e->oom = true;
        return NULL;
    }
    for (const cJSON *k = v->child; k != NULL; k = k->next) {
        cJSON *x = expand(e, k);
        bool ok = x != NULL && (cJSON_IsObject(v) ? cJSON_AddItemToObject(r, k->string, x)
                                                  : cJSON_AddItemToArray(r, x));
        if (!ok) {
            if (x != NULL) e->oom = true;
            cJSON_Delete(x);
            cJSON_Delete(r);
            return NULL;
        }
    }
    return r;
}

/* The message's key part, malloc'd; NULL: poison or oom. */
static char *message_key(const trigger_t *t, ectx_t *e)
{
    char buf[64], *s = NULL;
    cJSON *v;

    if (t->key_kind == TRIG_KEY_MSG_ID && e->m->msg_id != NULL && e->m->msg_id[0] != '\0')
        return (s = strdup(e->m->msg_id)) == NULL ? (e->oom = true, NULL) : s;
    if (t->key_kind != TRIG_KEY_PATH) {
        snprintf(buf, sizeof(buf), "%" PRIu64, e->m->seq);
        if ((s = malloc(strlen(e->m->stream != NULL ? e->m->stream : "") + strlen(buf) + 2)) == NULL)
            return e->oom = true, NULL;
        sprintf(s, "%s:%s", e->m->stream != NULL ? e->m->stream : "", buf);
        return s;
    }
    if ((v = resolve(e, t->key_path)) == NULL) return NULL;
    if (cJSON_IsString(v) && v->valuestring[0] != '\0') {
        s = strdup(v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        s = cJSON_PrintUnformatted(v);
    } else {
        cJSON_Delete(v);
        return poison(e, "key %s: must be a non-empty string or a number", t->key_path), NULL;
    }
    cJSON_Delete(v);
    if (s == NULL) e->oom = true;
    return s;
}

/* "trig:<name>:<k>[:<i>]", with k hashed when the whole would be too long. */
static char *full_key(const char *name, const char *k, int index)
{
    char hex[65], idx[24] = "", *s;
    size_t n;

    if (index >= 0) snprintf(idx, sizeof(idx), ":%d", index);
    n = strlen("trig:") + strlen(name) + 1 + strlen(k) + strlen(idx);
    if (n > KEY_MAX) {
        if (cbm_sha256_hex(k, strlen(k), hex) != 0) return NULL;
        k = NULL;
    }
    if ((s = malloc(n > KEY_MAX ? KEY_MAX + 1 : n + 1)) == NULL) return NULL;
    if (k != NULL)
        sprintf(s, "trig:%s:%s%s", name, k, idx);
    else
        snprintf(s, KEY_MAX + 1, "trig:%s:sha256:%s%s", name, hex, idx);
    return s;
}

void trig_jobs_free(trig_job_t *jobs, size_t n)
{
    if (jobs == NULL) return;
    for (size_t i = 0; i < n; i++) {
        free(jobs[i].key);
        free(jobs[i].inputs);
        free(jobs[i].execution);
        free(jobs[i].step);
        free(jobs[i].signal);
        free(jobs[i].reason);
    }
    free(jobs);
}

/* A template string field for one job: the text of what a path names (a
 * string, or a number printed), or the literal; NULL template: NULL. */
static int expand_str(ectx_t *e, const char *field, const char *tmpl, char **out)
{
    cJSON *v;
    *out = NULL;
    if (tmpl == NULL) return 0;
    if (!is_path(tmpl)) return (*out = strdup(tmpl)) == NULL ? CBM_ENOMEM : 0;
    if ((v = resolve(e, tmpl)) == NULL) return e->oom ? CBM_ENOMEM : CBM_EINVAL;
    if (cJSON_IsString(v) && v->valuestring[0] != '\0')
        *out = strdup(v->valuestring);
    else if (cJSON_IsNumber(v))
        *out = cJSON_PrintUnformatted(v);
    else
        poison(e, "%s %s: must be a non-empty string or a number", field, tmpl);
    cJSON_Delete(v);
    if (*out == NULL) return e->reason[0] != '\0' ? CBM_EINVAL : CBM_ENOMEM;
    return 0;
}

static int make_job(const trigger_t *t, ectx_t *e, const char *k, int index, trig_job_t *j)
{
    cJSON *in;
    int rc;

    if ((rc = expand_str(e, "execution", t->execution, &j->execution)) != 0 ||
        (rc = expand_str(e, "step", t->step, &j->step)) != 0 ||
        (rc = expand_str(e, "signal", t->signal, &j->signal)) != 0 ||
        (rc = expand_str(e, "reason", t->reason, &j->reason)) != 0)
        return rc;
    if ((in = expand(e, t->inputs)) == NULL) return e->oom ? CBM_ENOMEM : CBM_EINVAL;
    j->inputs = cJSON_PrintUnformatted(in);
    cJSON_Delete(in);
    j->key = full_key(t->name, k, index);
    return j->inputs != NULL && j->key != NULL ? 0 : CBM_ENOMEM;
}

int trigger_eval(const trigger_t *t, const trig_msg_t *m, trig_job_t **jobs, size_t *n,
                 char *reason, size_t reason_len)
{
    ectx_t e = {.m = m, .index = -1, .reason = reason, .rlen = reason_len};
    cJSON *data = NULL, *arr = NULL;
    trig_job_t *out = NULL;
    size_t cnt = 1;
    char *k = NULL;
    int rc = 0;

    *jobs = NULL;
    *n = 0;
    reason[0] = '\0';
    if (m->data != NULL && m->len > 0) data = cJSON_ParseWithLength(m->data, m->len);
    e.data = data;
    if ((k = message_key(t, &e)) == NULL) {
        rc = e.oom ? CBM_ENOMEM : CBM_EINVAL;
        goto done;
    }
    if (t->for_each != NULL) {
        if ((arr = resolve(&e, t->for_each)) == NULL) {
            rc = e.oom ? CBM_ENOMEM : CBM_EINVAL;
            goto done;
        }
        if (!cJSON_IsArray(arr)) {
            poison(&e, "for_each %s: not an array", t->for_each);
            rc = CBM_EINVAL;
            goto done;
        }
        cnt = (size_t)cJSON_GetArraySize(arr);
        if (cnt > 1000) {
            poison(&e, "for_each %s: %zu items (at most 1000)", t->for_each, cnt);
            rc = CBM_EINVAL;
            goto done;
        }
        if (cnt == 0) goto done;
    }
    if ((out = calloc(cnt, sizeof(*out))) == NULL) {
        rc = CBM_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < cnt && rc == 0; i++) {
        if (arr != NULL) {
            e.item = cJSON_GetArrayItem(arr, (int)i);
            e.index = (int)i;
        }
        rc = make_job(t, &e, k, arr != NULL ? (int)i : -1, &out[i]);
    }
    if (rc == 0) {
        *jobs = out;
        *n = cnt;
        out = NULL;
    }
done:
    if (rc == CBM_ENOMEM) snprintf(reason, reason_len, "out of memory");
    trig_jobs_free(out, cnt);
    cJSON_Delete(arr);
    cJSON_Delete(data);
    free(k);
    return rc;
}
