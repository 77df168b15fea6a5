/*
 * format.c - what the read commands print: a readable form for people and a
 * --json form for programs.
 *
 * The JSON forms are stable (docs/cli.md): payloads that are JSON on the wire
 * (inputs, results, errors, event payloads, state) are embedded as JSON
 * values, not as strings, so `jq .result.greet` works. Times are UTC
 * RFC 3339 strings with milliseconds in the readable form and integer
 * milliseconds since the epoch in the JSON form.
 */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

const char *fmt_time_us(int64_t us, char buf[64])
{
    time_t secs = (time_t)(us / 1000000);
    struct tm tm;

    if (us <= 0 || gmtime_r(&secs, &tm) == NULL) return strcpy(buf, "-");
    size_t n = strftime(buf, 64, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, 64 - n, ".%03dZ", (int)((us / 1000) % 1000));
    return buf;
}

/* Add text as a JSON value when it parses, else as a string (never lose it). */
static void add_json(cJSON *obj, const char *key, const char *text)
{
    cJSON *v = text != NULL ? cJSON_Parse(text) : NULL;
    if (text == NULL) cJSON_AddNullToObject(obj, key);
    else if (v != NULL) cJSON_AddItemToObject(obj, key, v);
    else cJSON_AddStringToObject(obj, key, text);
}

static cJSON *execution_obj(const cbm_execution_info_t *x)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) return NULL;
    cJSON_AddStringToObject(o, "id", x->id);
    cJSON_AddStringToObject(o, "blueprint", x->blueprint);
    cJSON_AddStringToObject(o, "version", x->version);
    cJSON_AddStringToObject(o, "status", x->status);
    add_json(o, "inputs", x->inputs);
    add_json(o, "result", x->result);
    add_json(o, "error", x->error);
    cJSON_AddNumberToObject(o, "last_seq", (double)x->last_seq);
    cJSON_AddNumberToObject(o, "started_at_ms", (double)(x->created_at_us / 1000));
    cJSON_AddNumberToObject(o, "updated_at_ms", (double)(x->updated_at_us / 1000));
    return o;
}

static void print_json(FILE *f, cJSON *v)
{
    char *s = v != NULL ? cJSON_Print(v) : NULL;
    if (s != NULL) fprintf(f, "%s\n", s);
    else fprintf(f, "null\n");
    free(s);
    cJSON_Delete(v);
}

/* Compact one-line JSON of a JSON text (as given if it does not parse). */
static void put_compact(FILE *f, const char *text)
{
    cJSON *v = cJSON_Parse(text);
    char *s = v != NULL ? cJSON_PrintUnformatted(v) : NULL;
    fputs(s != NULL ? s : text, f);
    free(s);
    cJSON_Delete(v);
}

void fmt_execution_json(FILE *f, const cbm_execution_info_t *x, const char *state_json)
{
    cJSON *o = execution_obj(x);
    if (o != NULL && state_json != NULL) add_json(o, "state", state_json);
    print_json(f, o);
}

/* Steps still in progress: every step whose latest event is not a final
 * one, in the order the state lists them; "-" when none. */
static void put_current(FILE *f, const cJSON *steps)
{
    const cJSON *s;
    int n = 0;
    cJSON_ArrayForEach(s, steps) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(s, "status");
        const char *v = cJSON_IsString(st) ? st->valuestring : "";
        if (strcmp(v, "completed") == 0 || strcmp(v, "failed") == 0) continue;
        fprintf(f, "%s%s (%s)", n++ ? ", " : "", s->string, v);
    }
    if (n == 0) fputs("-", f);
    fputc('\n', f);
}

void fmt_execution_text(FILE *f, const cbm_execution_info_t *x, const char *state_json)
{
    cJSON *state = state_json != NULL ? cJSON_Parse(state_json) : NULL;
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(state, "steps");
    const cJSON *s;
    char t1[64], t2[64];

    fprintf(f, "id:         %s\n", x->id);
    fprintf(f, "blueprint:  %s\n", x->blueprint);
    fprintf(f, "version:    %s\n", x->version);
    fprintf(f, "status:     %s\n", x->status);
    fprintf(f, "started:    %s\n", fmt_time_us(x->created_at_us, t1));
    fprintf(f, "updated:    %s (seq %lld)\n", fmt_time_us(x->updated_at_us, t2),
            (long long)x->last_seq);
    fputs("current:    ", f);
    if (strcmp(x->status, "completed") == 0 || strcmp(x->status, "failed") == 0 ||
        strcmp(x->status, "cancelled") == 0)
        fputs("-\n", f); /* finished: whatever was waiting will not run */
    else
        put_current(f, steps);
    fputs("inputs:     ", f);
    put_compact(f, x->inputs);
    fputc('\n', f);
    if (x->result != NULL) {
        fputs("result:     ", f);
        put_compact(f, x->result);
        fputc('\n', f);
    }
    if (x->error != NULL) {
        fputs("error:      ", f);
        put_compact(f, x->error);
        fputc('\n', f);
    }
    if (cJSON_GetArraySize(steps) > 0) fputs("steps:\n", f);
    cJSON_ArrayForEach(s, steps) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(s, "status");
        const cJSON *at = cJSON_GetObjectItemCaseSensitive(s, "attempt");
        const cJSON *res = cJSON_GetObjectItemCaseSensitive(s, "result");
        const cJSON *er = cJSON_GetObjectItemCaseSensitive(s, "error");
        char *v = res != NULL ? cJSON_PrintUnformatted(res)
                  : er != NULL ? cJSON_PrintUnformatted(er) : NULL;
        fprintf(f, "  %-20s %-18s attempt %-3d %s\n", s->string,
                cJSON_IsString(st) ? st->valuestring : "?",
                cJSON_IsNumber(at) ? at->valueint : 0, v != NULL ? v : "");
        free(v);
    }
    cJSON_Delete(state);
}

void fmt_list_json(FILE *f, const cbm_execution_info_t *xs, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a != NULL && i < n; i++) {
        cJSON *o = execution_obj(&xs[i]);
        if (o != NULL) cJSON_AddItemToArray(a, o);
    }
    print_json(f, a);
}

void fmt_list_text(FILE *f, const cbm_execution_info_t *xs, size_t n)
{
    char t1[64], t2[64];
    fprintf(f, "%-36s  %-17s  %-20s  %-24s  %s\n", "ID", "STATUS", "BLUEPRINT", "STARTED",
            "UPDATED");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%-36s  %-17s  %-20s  %-24s  %s\n", xs[i].id, xs[i].status, xs[i].blueprint,
                fmt_time_us(xs[i].created_at_us, t1), fmt_time_us(xs[i].updated_at_us, t2));
}

void fmt_history_json(FILE *f, const cbm_event_t *evs, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a != NULL && i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        if (o == NULL) break;
        cJSON_AddNumberToObject(o, "seq", (double)evs[i].seq);
        cJSON_AddStringToObject(o, "type", evs[i].type);
        add_json(o, "payload", evs[i].payload);
        cJSON_AddNumberToObject(o, "recorded_at_ms", (double)(evs[i].recorded_at_us / 1000));
        cJSON_AddItemToArray(a, o);
    }
    print_json(f, a);
}

/* The payload as key=value pairs: strings bare, anything else compact JSON. */
static void put_payload(FILE *f, const char *payload)
{
    cJSON *p = cJSON_Parse(payload);
    const cJSON *m;
    int first = 1;

    if (!cJSON_IsObject(p)) {
        put_compact(f, payload);
        cJSON_Delete(p);
        return;
    }
    cJSON_ArrayForEach(m, p) {
        char *v = cJSON_IsString(m) ? NULL : cJSON_PrintUnformatted(m);
        fprintf(f, "%s%s=%s", first ? "" : " ", m->string,
                cJSON_IsString(m) ? m->valuestring : v != NULL ? v : "?");
        free(v);
        first = 0;
    }
    cJSON_Delete(p);
}

void fmt_history_text(FILE *f, const cbm_event_t *evs, size_t n)
{
    char t[64];
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%4lld  %s  %-20s  ", (long long)evs[i].seq,
                fmt_time_us(evs[i].recorded_at_us, t), evs[i].type);
        put_payload(f, evs[i].payload);
        fputc('\n', f);
    }
}

void fmt_workers_json(FILE *f, const cbm_worker_info_t *ws, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a != NULL && i < n; i++) {
        cJSON *o = cJSON_CreateObject(), *q, *caps;
        if (o == NULL) break;
        cJSON_AddStringToObject(o, "worker_id", ws[i].worker_id);
        q = cJSON_AddArrayToObject(o, "queues");
        for (size_t k = 0; q != NULL && k < ws[i].nqueues; k++)
            cJSON_AddItemToArray(q, cJSON_CreateString(ws[i].queues[k]));
        caps = cJSON_AddObjectToObject(o, "capabilities");
        for (size_t k = 0; caps != NULL && k < ws[i].ncaps; k++)
            cJSON_AddStringToObject(caps, ws[i].cap_keys[k], ws[i].cap_values[k]);
        cJSON_AddNumberToObject(o, "max_concurrency", ws[i].max_concurrency);
        cJSON_AddNumberToObject(o, "active_tasks", ws[i].active_tasks);
        cJSON_AddNumberToObject(o, "registered_at_ms", (double)ws[i].registered_at_ms);
        cJSON_AddNumberToObject(o, "last_seen_at_ms", (double)ws[i].last_seen_at_ms);
        cJSON_AddBoolToObject(o, "alive", ws[i].alive);
        cJSON_AddStringToObject(o, "sdk_version", ws[i].sdk_version);
        cJSON_AddItemToArray(a, o);
    }
    print_json(f, a);
}

void fmt_workers_text(FILE *f, const cbm_worker_info_t *ws, size_t n)
{
    char t[64];
    fprintf(f, "%-24s  %-20s  %-8s  %-5s  %-24s  %s\n", "WORKER", "QUEUES", "TASKS", "ALIVE",
            "LAST SEEN", "CAPABILITIES");
    for (size_t i = 0; i < n; i++) {
        char queues[256] = "", caps[512] = "", tasks[32];
        size_t ql = 0, cl = 0;
        for (size_t k = 0; k < ws[i].nqueues && ql < sizeof(queues); k++)
            ql += (size_t)snprintf(queues + ql, sizeof(queues) - ql, "%s%s", k ? "," : "",
                                   ws[i].queues[k]);
        for (size_t k = 0; k < ws[i].ncaps && cl < sizeof(caps); k++)
            cl += (size_t)snprintf(caps + cl, sizeof(caps) - cl, "%s%s=%s", k ? " " : "",
                                   ws[i].cap_keys[k], ws[i].cap_values[k]);
        snprintf(tasks, sizeof(tasks), "%u/%u", ws[i].active_tasks, ws[i].max_concurrency);
        fprintf(f, "%-24s  %-20s  %-8s  %-5s  %-24s  %s\n", ws[i].worker_id, queues, tasks,
                ws[i].alive ? "yes" : "no", fmt_time_us(ws[i].last_seen_at_ms * 1000, t), caps);
    }
}

void fmt_councils_json(FILE *f, const cbm_council_info_t *cs, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a != NULL && i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        if (o == NULL) break;
        cJSON_AddStringToObject(o, "name", cs[i].name);
        cJSON_AddStringToObject(o, "version", cs[i].version);
        cJSON_AddStringToObject(o, "role", cs[i].role);
        cJSON_AddNumberToObject(o, "agents", cs[i].agents);
        cJSON_AddNumberToObject(o, "created_at_ms", (double)(cs[i].created_at_us / 1000));
        cJSON_AddItemToArray(a, o);
    }
    print_json(f, a);
}

void fmt_councils_text(FILE *f, const cbm_council_info_t *cs, size_t n)
{
    char t[64];
    fprintf(f, "%-20s  %-16s  %6s  %-24s  %s\n", "NAME", "ROLE", "AGENTS", "CREATED", "VERSION");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%-20s  %-16s  %6d  %-24s  %s\n", cs[i].name, cs[i].role, cs[i].agents,
                fmt_time_us(cs[i].created_at_us, t), cs[i].version);
}

void fmt_council_json(FILE *f, const char *name, const char *version, const char *definition)
{
    cJSON *o = cJSON_CreateObject();
    if (o != NULL) {
        cJSON_AddStringToObject(o, "name", name);
        cJSON_AddStringToObject(o, "version", version);
        add_json(o, "definition", definition);
    }
    print_json(f, o);
}

void fmt_council_text(FILE *f, const char *definition)
{
    cJSON *v = cJSON_Parse(definition);
    if (v == NULL) fprintf(f, "%s\n", definition); /* never lose it */
    else print_json(f, v);
}
