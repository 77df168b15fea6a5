/*
 * deliberation.c - `cerebelum deliberation show ID`: the LLM calls of the
 * deliberations of an execution, read from histories (docs/cli.md).
 *
 * ID is an execution with deliberation steps (each ChildStarted of a
 * generated `_delib.` blueprint names one child), or such a child itself.
 * For each child: the council snapshot it started with, one line per call
 * step (phase, agent, status, attempts, tokens, latency, finish reason, the
 * prompt's hash) folded from its history, and the outcome. Everything comes
 * from GetHistory; nothing here knows more of the engine than docs/
 * deliberation.md says.
 */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#define DELIB_PREFIX "_delib."

typedef struct call {
    char *step;
    int attempts;
    const char *status;  /* scheduled, completed, failed */
    cJSON *result;       /* StepCompleted's result, or StepFailed's error */
} call_t;

typedef struct delib {
    char *step;          /* the parent's step ("" when ID is the child) */
    char *child;
    cJSON *council;      /* {"name", "version"} of the snapshot */
    call_t *calls;
    size_t ncalls;
    const char *status;  /* running, completed, failed, cancelled */
    cJSON *outcome;      /* the deliberation's result, or the failure */
} delib_t;

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static call_t *call_of(delib_t *d, const char *step)
{
    call_t *n;
    for (size_t i = 0; i < d->ncalls; i++)
        if (strcmp(d->calls[i].step, step) == 0) return &d->calls[i];
    if ((n = realloc(d->calls, (d->ncalls + 1) * sizeof(*n))) == NULL) return NULL;
    d->calls = n;
    n = &d->calls[d->ncalls];
    memset(n, 0, sizeof(*n));
    if ((n->step = strdup(step)) == NULL) return NULL;
    d->ncalls++;
    return n;
}

/* Fold the child's events into d. Returns 0 or CBM_ENOMEM. */
static int fold(delib_t *d, const cbm_event_t *ev, size_t n)
{
    d->status = "running";
    for (size_t i = 0; i < n; i++) {
        cJSON *p = cJSON_Parse(ev[i].payload);
        const char *step = str(p, "step");
        call_t *c = NULL;
        if (p == NULL) return CBM_ENOMEM; /* the server sends valid JSON */
        if (strcmp(ev[i].type, "ExecutionStarted") == 0) {
            const cJSON *co = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(p, "inputs"), "council");
            cJSON_Delete(d->council);
            d->council = cJSON_CreateObject();
            cJSON_AddStringToObject(d->council, "name", str(co, "name") ? str(co, "name") : "");
            cJSON_AddStringToObject(d->council, "version",
                                    str(co, "version") ? str(co, "version") : "");
        } else if (step != NULL && (strcmp(ev[i].type, "StepScheduled") == 0 ||
                                    strcmp(ev[i].type, "StepCompleted") == 0 ||
                                    strcmp(ev[i].type, "StepFailed") == 0)) {
            if ((c = call_of(d, step)) == NULL) {
                cJSON_Delete(p);
                return CBM_ENOMEM;
            }
            if (ev[i].type[4] == 'S') { /* StepScheduled */
                c->attempts++;
                c->status = "scheduled";
            } else {
                int ok = ev[i].type[4] == 'C';
                cJSON_Delete(c->result);
                c->result = cJSON_DetachItemFromObjectCaseSensitive(p, ok ? "result" : "error");
                c->status = ok ? "completed" : "failed";
            }
        } else if (strncmp(ev[i].type, "Execution", 9) == 0) {
            const char *what = ev[i].type + 9;
            cJSON *r = cJSON_DetachItemFromObjectCaseSensitive(
                p, strcmp(what, "Completed") == 0 ? "result" : strcmp(what, "Failed") == 0 ? "error" : "reason");
            cJSON_Delete(d->outcome);
            /* Completed: {"select" or "finish": <the deliberation's result>}. */
            d->outcome = r;
            if (cJSON_IsObject(r) && strcmp(what, "Completed") == 0 && r->child != NULL)
                d->outcome = cJSON_DetachItemViaPointer(r, r->child), cJSON_Delete(r);
            d->status = strcmp(what, "Completed") == 0 ? "completed"
                        : strcmp(what, "Failed") == 0  ? "failed"
                                                       : "cancelled";
        }
        cJSON_Delete(p);
    }
    return 0;
}

static void delib_free(delib_t *d)
{
    for (size_t i = 0; i < d->ncalls; i++) {
        free(d->calls[i].step);
        cJSON_Delete(d->calls[i].result);
    }
    free(d->calls);
    free(d->step);
    free(d->child);
    cJSON_Delete(d->council);
    cJSON_Delete(d->outcome);
}

static void print_text(const delib_t *d)
{
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(d->outcome, "winner");
    const cJSON *rank = cJSON_GetObjectItemCaseSensitive(d->outcome, "ranking"), *k;
    const cJSON *failed = cJSON_GetObjectItemCaseSensitive(d->outcome, "failed");
    double pt = 0, ct = 0;
    int llm = 0;

    printf("deliberation %s  child %s  %s  council %s@%.12s\n", d->step[0] ? d->step : "-",
           d->child, d->status, str(d->council, "name") ? str(d->council, "name") : "?",
           str(d->council, "version") ? str(d->council, "version") : "?");
    printf("  %-14s %-9s %-10s %-10s %3s %11s %9s %-8s %s\n", "STEP", "PHASE", "AGENT", "STATUS",
           "TRY", "TOKENS", "LATENCY", "FINISH", "PROMPT");
    for (size_t i = 0; i < d->ncalls; i++) {
        const call_t *c = &d->calls[i];
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(c->result, "usage");
        const char *phase = str(c->result, "phase"), *agent = str(c->result, "agent");
        char tokens[32] = "-", lat[32] = "-";
        const char *status = c->status;
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c->result, "skipped"))) status = "skipped";
        else if (strcmp(c->status, "completed") == 0 && str(c->result, "kind") != NULL &&
                 cJSON_GetObjectItemCaseSensitive(c->result, "content") == NULL)
            status = str(c->result, "kind"); /* an error object, kept by diverge */
        else if (strcmp(c->status, "failed") == 0 && str(c->result, "kind") != NULL)
            status = str(c->result, "kind");
        if (u != NULL && phase != NULL) { /* an LLM call (select sums what it saw) */
            snprintf(tokens, sizeof(tokens), "%.0f+%.0f", num(u, "prompt_tokens"),
                     num(u, "completion_tokens"));
            pt += num(u, "prompt_tokens");
            ct += num(u, "completion_tokens");
            llm++;
        }
        if (cJSON_GetObjectItemCaseSensitive(c->result, "latency_ms") != NULL)
            snprintf(lat, sizeof(lat), "%.0f ms", num(c->result, "latency_ms"));
        printf("  %-14s %-9s %-10s %-10s %3d %11s %9s %-8s %.12s\n", c->step, phase ? phase : "-",
               agent ? agent : "-", status, c->attempts, tokens, lat,
               str(c->result, "finish_reason") ? str(c->result, "finish_reason") : "-",
               str(c->result, "prompt_sha256") ? str(c->result, "prompt_sha256") : "-");
    }
    printf("  LLM calls: %d, tokens %.0f prompt + %.0f completion\n", llm, pt, ct);
    if (strcmp(d->status, "completed") == 0) {
        if (str(w, "agent") != NULL)
            printf("  winner: %s (%s)%s%.3f\n", str(w, "agent"), str(w, "step") ? str(w, "step") : "",
                   cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(w, "score")) ? ", score " : "",
                   num(w, "score"));
        cJSON_ArrayForEach(k, rank)
            printf("  rank: %-10s %.3f\n", str(k, "agent") ? str(k, "agent") : "?",
                   num(k, "score"));
        cJSON_ArrayForEach(k, failed)
            printf("  failed: %s at %s: %s: %s\n", str(k, "agent") ? str(k, "agent") : "?",
                   str(k, "step") ? str(k, "step") : "?", str(k, "kind") ? str(k, "kind") : "?",
                   str(k, "message") ? str(k, "message") : "");
    } else if (d->outcome != NULL) {
        char *o = cJSON_PrintUnformatted(d->outcome);
        printf("  %s: %s\n", d->status, o != NULL ? o : "");
        cJSON_free(o);
    }
}

static cJSON *to_json(const delib_t *d)
{
    cJSON *o = cJSON_CreateObject(), *a;
    cJSON_AddStringToObject(o, "step", d->step);
    cJSON_AddStringToObject(o, "child", d->child);
    cJSON_AddStringToObject(o, "status", d->status);
    cJSON_AddItemToObject(o, "council", cJSON_Duplicate(d->council, 1));
    a = cJSON_AddArrayToObject(o, "calls");
    for (size_t i = 0; i < d->ncalls; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "step", d->calls[i].step);
        cJSON_AddStringToObject(c, "status", d->calls[i].status);
        cJSON_AddNumberToObject(c, "attempts", d->calls[i].attempts);
        cJSON_AddItemToObject(c, strcmp(d->calls[i].status, "failed") == 0 ? "error" : "result",
                              d->calls[i].result != NULL ? cJSON_Duplicate(d->calls[i].result, 1)
                                                         : cJSON_CreateNull());
        cJSON_AddItemToArray(a, c);
    }
    cJSON_AddItemToObject(o, "outcome",
                          d->outcome != NULL ? cJSON_Duplicate(d->outcome, 1) : cJSON_CreateNull());
    return o;
}

/* The deliberation children of id: (step, child) pairs, or id itself. */
static int children(cbm_client_t *cl, const char *id, delib_t **out, size_t *n, cbm_error_t *err)
{
    cbm_event_t *ev = NULL;
    size_t nev = 0;
    int rc = cbm_client_history(cl, id, 1, &ev, &nev, err);

    *out = NULL;
    *n = 0;
    if (rc != 0) return rc;
    for (size_t i = 0; i < nev; i++) {
        cJSON *p = cJSON_Parse(ev[i].payload);
        const char *bp = str(p, "blueprint");
        int self = i == 0 && strcmp(ev[i].type, "ExecutionStarted") == 0 && bp != NULL &&
                   strncmp(bp, DELIB_PREFIX, strlen(DELIB_PREFIX)) == 0;
        if (self || (strcmp(ev[i].type, "ChildStarted") == 0 && bp != NULL &&
                     strncmp(bp, DELIB_PREFIX, strlen(DELIB_PREFIX)) == 0)) {
            delib_t *m = realloc(*out, (*n + 1) * sizeof(*m));
            if (m == NULL) {
                cJSON_Delete(p);
                rc = CBM_ENOMEM;
                break;
            }
            *out = m;
            memset(&m[*n], 0, sizeof(*m));
            m[*n].step = strdup(self ? "" : str(p, "step"));
            m[*n].child = strdup(self ? id : str(p, "child"));
            (*n)++;
        }
        cJSON_Delete(p);
        if (self) break;
    }
    cbm_events_free(ev, nev);
    return rc;
}

int cli_cmd_deliberation_show(const cli_opts_t *o)
{
    delib_t *ds = NULL;
    size_t n = 0;
    cbm_error_t err = {0};
    cli_conn_t c;
    cJSON *all = NULL;
    int rc;

    if ((rc = cli_conn_open(o, &c)) != CLI_OK) return rc;
    if ((rc = children(c.client, o->args[0], &ds, &n, &err)) != 0) {
        rc = cli_report(&c, rc, &err);
        goto out;
    }
    if (n == 0) {
        cli_errorf("execution %s has no deliberation", o->args[0]);
        rc = CLI_REFUSED;
        goto out;
    }
    if (o->json) all = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) {
        cbm_event_t *ev = NULL;
        size_t nev = 0;
        /* A child not started yet (the council is being read) has none. */
        rc = cbm_client_history(c.client, ds[i].child, 1, &ev, &nev, &err);
        if (rc == CBM_ENOTFOUND) {
            ds[i].status = "starting";
        } else if (rc != 0) {
            rc = cli_report(&c, rc, &err);
            goto out;
        } else {
            rc = fold(&ds[i], ev, nev);
            cbm_events_free(ev, nev);
            if (rc != 0) {
                cli_errorf("out of memory");
                rc = CLI_REFUSED;
                goto out;
            }
        }
        if (o->json) cJSON_AddItemToArray(all, to_json(&ds[i]));
        else print_text(&ds[i]);
    }
    if (o->json) {
        char *text = cJSON_Print(all);
        if (text != NULL) puts(text);
        cJSON_free(text);
    }
    rc = CLI_OK;
out:
    cJSON_Delete(all);
    for (size_t i = 0; i < n; i++) delib_free(&ds[i]);
    free(ds);
    cli_conn_close(&c);
    return rc;
}
