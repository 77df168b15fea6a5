/*
 * bus.c - the NATS commands (docs/bus.md, docs/cli.md):
 *
 *   trigger put|list|rm|failures  triggers as data, on the database itself
 *                                 through a client-only engine (--database-url
 *                                 or $CEREBELUM_DATABASE_URL): a running
 *                                 `serve --nats` picks changes up within a
 *                                 few seconds.
 *   bus                           each stored trigger: what the serve running
 *                                 it last reported (database: when it last
 *                                 fetched, counters) and its consumer as the
 *                                 NATS server sees it; one that has not
 *                                 fetched for three fetch waits, never ran,
 *                                 or is in error makes it exit 1.
 *   publish                       one JetStream publish (Debian has no NATS
 *                                 CLI), printing the stream and sequence.
 *
 * Not through the gRPC server (yet): these need the database URL.
 */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef CBM_HAVE_NATS
#include <nats/nats.h>
#endif

#include "bus/outbox.h"
#include "cerebelum/bus.h"
#include "cli.h"
#include "sdk-c/engine_internal.h"

/* A client-only engine on the database; an exit code. */
static int open_db(const cli_opts_t *o, cbm_engine_t **e)
{
    cbm_engine_opts_t eo = {0};
    cbm_error_t err = {0};
    const char *url = o->database_url != NULL ? o->database_url : getenv("CEREBELUM_DATABASE_URL");
    int rc;

    *e = NULL;
    if (url == NULL || url[0] == '\0') {
        cli_errorf("triggers live in the database: give --database-url URL or set "
                   "CEREBELUM_DATABASE_URL");
        return CLI_USAGE;
    }
    eo.database_url = url;
    eo.client_only = true;
    eo.connect_timeout_ms = 5000;
    if ((rc = cbm_engine_create(e, &eo, &err)) == 0) rc = cbm_engine_start(*e, &err);
    if (rc != 0) {
        cli_errorf("cannot open the database: %s", err.message);
        cbm_engine_destroy(*e);
        *e = NULL;
        return rc == CBM_EUNAVAIL ? CLI_UNREACHABLE : CLI_REFUSED;
    }
    return CLI_OK;
}

static int refused(int rc, const cbm_error_t *err)
{
    cli_errorf("%s", err->message[0] != '\0' ? err->message : cbm_strerror(rc));
    return rc == CBM_EUNAVAIL ? CLI_UNREACHABLE : CLI_REFUSED;
}

int cli_cmd_trigger_put(const cli_opts_t *o)
{
    const char *path = o->args[0];
    char *json = cli_read_file(strcmp(path, "-") == 0 ? "/dev/stdin" : path), version[65];
    cbm_engine_t *e = NULL;
    cbm_error_t err = {0};
    bool changed = false;
    int rc;

    if (json == NULL) {
        cli_errorf("cannot read %s: %s", path, strerror(errno));
        return CLI_USAGE;
    }
    if ((rc = open_db(o, &e)) == CLI_OK) {
        if ((rc = cbm_trigger_put(e, json, version, &changed, &err)) != 0)
            rc = refused(rc, &err);
        else if (o->json)
            printf("{\"version\": \"%s\", \"changed\": %s}\n", version, changed ? "true" : "false");
        else
            printf("%s%s\n", version, changed ? "" : " (unchanged)");
    }
    cbm_engine_destroy(e);
    free(json);
    return rc;
}

static const char *field(const cJSON *d, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(d, k);
    return cJSON_IsString(v) ? v->valuestring : "-";
}

int cli_cmd_trigger_list(const cli_opts_t *o)
{
    cbm_trigger_info_t *ts = NULL;
    cbm_engine_t *e = NULL;
    cbm_error_t err = {0};
    size_t n = 0;
    int rc;

    if ((rc = open_db(o, &e)) != CLI_OK) return rc;
    if ((rc = cbm_trigger_list(e, &ts, &n, &err)) != 0) {
        rc = refused(rc, &err);
        goto done;
    }
    if (o->json) printf("[");
    else printf("%-20s %-16s %-20s %-28s %-16s %s\n", "NAME", "STREAM", "CONSUMER", "SUBJECT",
                "BLUEPRINT", "VERSION");
    for (size_t i = 0; i < n; i++) {
        cJSON *d = cJSON_Parse(ts[i].definition);
        if (o->json)
            printf("%s\n {\"name\": \"%s\", \"version\": \"%s\", \"definition\": %s}",
                   i > 0 ? "," : "", ts[i].name, ts[i].version, ts[i].definition);
        else
            printf("%-20s %-16s %-20s %-28s %-16s %.12s\n", ts[i].name, field(d, "stream"),
                   field(d, "consumer"), field(d, "subject"), field(d, "blueprint"),
                   ts[i].version);
        cJSON_Delete(d);
    }
    if (o->json) printf("%s]\n", n > 0 ? "\n" : "");
done:
    cbm_trigger_infos_free(ts, n);
    cbm_engine_destroy(e);
    return rc;
}

int cli_cmd_trigger_rm(const cli_opts_t *o)
{
    cbm_engine_t *e = NULL;
    cbm_error_t err = {0};
    int rc;

    if ((rc = open_db(o, &e)) != CLI_OK) return rc;
    if ((rc = cbm_trigger_delete(e, o->args[0], &err)) != 0) rc = refused(rc, &err);
    cbm_engine_destroy(e);
    return rc;
}

int cli_cmd_trigger_failures(const cli_opts_t *o)
{
    cbm_trigger_failure_t *f = NULL;
    cbm_engine_t *e = NULL;
    cbm_error_t err = {0};
    size_t n = 0;
    int rc;

    if ((rc = open_db(o, &e)) != CLI_OK) return rc;
    if ((rc = cbm_trigger_failures(e, NULL, o->limit, &f, &n, &err)) != 0) {
        rc = refused(rc, &err);
        goto done;
    }
    if (o->json) {
        cJSON *arr = cJSON_CreateArray();
        char *s;
        for (size_t i = 0; i < n && arr != NULL; i++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddItemToArray(arr, x);
            cJSON_AddNumberToObject(x, "id", (double)f[i].id);
            cJSON_AddStringToObject(x, "trigger", f[i].trigger);
            cJSON_AddStringToObject(x, "stream", f[i].stream);
            cJSON_AddNumberToObject(x, "seq", (double)f[i].seq);
            cJSON_AddStringToObject(x, "subject", f[i].subject);
            cJSON_AddStringToObject(x, "reason", f[i].reason);
            cJSON_AddStringToObject(x, "data", f[i].data);
            cJSON_AddNumberToObject(x, "at_us", (double)f[i].at_us);
        }
        if ((s = cJSON_Print(arr)) != NULL) printf("%s\n", s);
        free(s);
        cJSON_Delete(arr);
    } else {
        char at[64];
        printf("%-24s %-20s %-24s %-28s %s\n", "AT", "TRIGGER", "STREAM:SEQ", "SUBJECT", "REASON");
        for (size_t i = 0; i < n; i++) {
            char where[96];
            snprintf(where, sizeof(where), "%s:%lld", f[i].stream, (long long)f[i].seq);
            printf("%-24s %-20s %-24s %-28s %s\n", fmt_time_us(f[i].at_us, at), f[i].trigger,
                   where, f[i].subject, f[i].reason);
        }
    }
done:
    cbm_trigger_failures_free(f, n);
    cbm_engine_destroy(e);
    return rc;
}

#ifdef CBM_HAVE_NATS
static const char *nats_url(const cli_opts_t *o)
{
    const char *v = o->nats_url != NULL ? o->nats_url : getenv("CEREBELUM_NATS_URL");
    return v != NULL && v[0] != '\0' ? v : "nats://127.0.0.1:4222";
}

static int nats_open(const cli_opts_t *o, natsConnection **nc, jsCtx **js)
{
    natsOptions *no = NULL;
    natsStatus s = natsOptions_Create(&no);

    *nc = NULL;
    *js = NULL;
    if (s == NATS_OK) s = natsOptions_SetURL(no, nats_url(o));
    if (s == NATS_OK) s = natsOptions_SetSendAsap(no, true);
    if (s == NATS_OK) s = natsConnection_Connect(nc, no);
    natsOptions_Destroy(no);
    if (s == NATS_OK) s = natsConnection_JetStream(js, *nc, NULL);
    if (s != NATS_OK) {
        cli_errorf("cannot reach NATS at %s: %s", nats_url(o), natsStatus_GetText(s));
        natsConnection_Destroy(*nc);
        *nc = NULL;
        return CLI_UNREACHABLE;
    }
    return CLI_OK;
}

static void nats_done(natsConnection *nc, jsCtx *js)
{
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
}

/* s with every "{n}" replaced by i (malloc'd; NULL for NULL). */
static char *subst(const char *s, int i)
{
    char num[16], *out, *p;
    size_t k = 0;
    if (s == NULL) return NULL;
    for (const char *q = s; (q = strstr(q, "{n}")) != NULL; q += 3) k++;
    snprintf(num, sizeof(num), "%d", i);
    if ((out = p = malloc(strlen(s) + k * strlen(num) + 1)) == NULL) return NULL;
    while (*s != '\0') {
        if (strncmp(s, "{n}", 3) == 0) {
            p += sprintf(p, "%s", num);
            s += 3;
        } else {
            *p++ = *s++;
        }
    }
    *p = '\0';
    return out;
}

static int publish_one(const cli_opts_t *o, jsCtx *js, int i)
{
    natsMsg *m = NULL;
    jsPubAck *pa = NULL;
    jsPubOptions po;
    jsErrCode jerr = 0;
    char *data = subst(o->data != NULL ? o->data : "", i), *id = subst(o->msg_id, i);
    natsStatus s = data == NULL ? NATS_NO_MEMORY : NATS_OK;
    int rc = CLI_OK;

    if (s == NATS_OK) s = natsMsg_Create(&m, o->args[0], NULL, data, (int)strlen(data));
    for (int i = 0; s == NATS_OK && i < o->nheaders; i++) {
        char k[256];
        const char *eq = strchr(o->headers[i], '=');
        snprintf(k, sizeof(k), "%.*s", (int)(eq - o->headers[i]), o->headers[i]);
        s = natsMsgHeader_Add(m, k, eq + 1);
    }
    jsPubOptions_Init(&po);
    po.MsgId = id;
    if (s == NATS_OK) s = js_PublishMsg(&pa, js, m, &po, &jerr);
    if (s != NATS_OK) {
        cli_errorf("publish to %s: %s%s (JetStream error %d)", o->args[0], natsStatus_GetText(s),
                   s == NATS_NO_RESPONDERS ? ": no stream takes this subject" : "", (int)jerr);
        rc = CLI_REFUSED;
    } else if (o->count <= 1) {
        printf("stream %s seq %llu%s\n", pa->Stream, (unsigned long long)pa->Sequence,
               pa->Duplicate ? " (duplicate: dropped by Msg-Id)" : "");
    }
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    free(data);
    free(id);
    return rc;
}

int cli_cmd_publish(const cli_opts_t *o)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    int rc, i, n = o->count > 0 ? o->count : 1;

    if ((rc = nats_open(o, &nc, &js)) != CLI_OK) {
        nats_Close();
        return rc;
    }
    for (i = 0; i < n && rc == CLI_OK; i++) rc = publish_one(o, js, i);
    if (n > 1 && rc == CLI_OK) printf("published %d\n", n);
    nats_done(nc, js);
    return rc;
}

static const cbm_trigger_health_t *health_of(const cbm_trigger_health_t *h, size_t n,
                                             const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(h[i].trigger, name) == 0) return &h[i];
    return NULL;
}

/* One trigger's line: the runner's own report (database) and, when NATS
 * answers, its consumer as the server sees it. Returns true when healthy. */
static bool bus_line(const cli_opts_t *o, jsCtx *js, const cbm_trigger_info_t *t,
                     const cbm_trigger_health_t *h, cJSON *arr)
{
    cJSON *d = cJSON_Parse(t->definition);
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    char state[200], fetch[32] = "-";
    bool ok = true;
    natsStatus s = js != NULL ? js_GetConsumerInfo(&ci, js, field(d, "stream"),
                                                   field(d, "consumer"), NULL, &jerr)
                              : NATS_NOT_FOUND;

    if (h == NULL) {
        snprintf(state, sizeof(state), "NOT RUNNING (no serve --nats has run it)");
        ok = false;
    } else if (h->stale) {
        snprintf(state, sizeof(state), "STALE: no fetch for %.1f s (3 waits are %.1f s)%s%s",
                 (double)h->last_fetch_ms_ago / 1000, 3.0 * h->wait_ms / 1000,
                 h->reported_ms_ago > 6000 ? "; no report from " : "",
                 h->reported_ms_ago > 6000 ? h->process : "");
        ok = false;
    } else if (strcmp(h->state, "error") == 0) {
        snprintf(state, sizeof(state), "ERROR: %s", h->error);
        ok = false;
    } else {
        snprintf(state, sizeof(state), "fetching");
    }
    if (h != NULL) snprintf(fetch, sizeof(fetch), "%.1fs", (double)h->last_fetch_ms_ago / 1000);
    if (o->json) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, x);
        cJSON_AddStringToObject(x, "trigger", t->name);
        cJSON_AddStringToObject(x, "stream", field(d, "stream"));
        cJSON_AddStringToObject(x, "consumer", field(d, "consumer"));
        cJSON_AddBoolToObject(x, "ok", ok);
        cJSON_AddStringToObject(x, "state", state);
        if (h != NULL) {
            cJSON_AddStringToObject(x, "process", h->process);
            cJSON_AddNumberToObject(x, "last_fetch_ms_ago", (double)h->last_fetch_ms_ago);
            cJSON_AddNumberToObject(x, "messages", (double)h->messages);
            cJSON_AddNumberToObject(x, "started", (double)h->started);
            cJSON_AddNumberToObject(x, "existing", (double)h->existing);
            cJSON_AddNumberToObject(x, "failures", (double)h->failures);
            cJSON_AddNumberToObject(x, "naks", (double)h->naks);
        }
        if (s == NATS_OK) {
            cJSON_AddNumberToObject(x, "pending", (double)ci->NumPending);
            cJSON_AddNumberToObject(x, "ack_pending", (double)ci->NumAckPending);
            cJSON_AddNumberToObject(x, "waiting", (double)ci->NumWaiting);
        }
    } else {
        char p[24] = "-", a[24] = "-", w[24] = "-";
        if (s == NATS_OK) {
            snprintf(p, sizeof(p), "%llu", (unsigned long long)ci->NumPending);
            snprintf(a, sizeof(a), "%lld", (long long)ci->NumAckPending);
            snprintf(w, sizeof(w), "%lld", (long long)ci->NumWaiting);
        }
        printf("%-20s %-16s %-20s %8s %8s %8s %9s %8lld %8lld %8lld %6lld  %s\n", t->name,
               field(d, "stream"), field(d, "consumer"), p, a, w, fetch,
               h != NULL ? (long long)h->started : 0LL, h != NULL ? (long long)h->existing : 0LL,
               h != NULL ? (long long)h->failures : 0LL, h != NULL ? (long long)h->naks : 0LL,
               state);
    }
    jsConsumerInfo_Destroy(ci);
    cJSON_Delete(d);
    return ok;
}

/* The outbox's health line (bus_outbox_health), on the engine's read
 * connection. Stale: its oldest row waits longer than a minute. */
typedef struct outbox_health {
    char line[512];
    bool stale;
} outbox_health_t;

static int outbox_line(store_t *s, void *arg, cbm_error_t *err)
{
    outbox_health_t *h = arg;
    return bus_outbox_health(s, 60000, h->line, sizeof(h->line), &h->stale, err);
}

int cli_cmd_bus(const cli_opts_t *o)
{
    outbox_health_t oh = {0};
    cbm_trigger_info_t *ts = NULL;
    cbm_trigger_health_t *hs = NULL;
    cbm_engine_t *e = NULL;
    cbm_error_t err = {0};
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    cJSON *arr = NULL;
    size_t n = 0, nh = 0;
    int rc, bad = 0;

    if ((rc = open_db(o, &e)) != CLI_OK) return rc;
    if ((rc = cbm_trigger_list(e, &ts, &n, &err)) != 0 ||
        (rc = cbm_trigger_health_list(e, &hs, &nh, &err)) != 0) {
        rc = refused(rc, &err);
        goto done;
    }
    if (nats_open(o, &nc, &js) != CLI_OK) bad++; /* said why; the reports still show */
    if (o->json) arr = cJSON_CreateArray();
    else
        printf("%-20s %-16s %-20s %8s %8s %8s %9s %8s %8s %8s %6s  %s\n", "TRIGGER", "STREAM",
               "CONSUMER", "PENDING", "ACKPEND", "WAITING", "FETCHED", "STARTED", "EXISTING",
               "FAILED", "NAKS", "STATE");
    for (size_t i = 0; i < n; i++)
        if (!bus_line(o, js, &ts[i], health_of(hs, nh, ts[i].name), arr)) bad++;
    if (o->json) {
        char *s = cJSON_Print(arr);
        if (s != NULL) printf("%s\n", s);
        free(s);
        cJSON_Delete(arr);
    }
    /* The outbox, after the triggers (text only: --json keeps its array). */
    if (cbm__engine_read(e, outbox_line, &oh, &err) != 0) {
        cli_errorf("outbox: %s", err.message);
        bad++;
    } else {
        if (!o->json) printf("%s\n", oh.line);
        if (oh.stale) bad++;
    }
    rc = bad > 0 ? CLI_REFUSED : CLI_OK;
done:
    nats_done(nc, js);
    cbm_trigger_healths_free(hs, nh);
    cbm_trigger_infos_free(ts, n);
    cbm_engine_destroy(e);
    return rc;
}
#else
int cli_cmd_publish(const cli_opts_t *o)
{
    cli_errorf("this cerebelum was built without NATS (libnats-dev)");
    return CLI_USAGE;
}

int cli_cmd_bus(const cli_opts_t *o)
{
    cli_errorf("this cerebelum was built without NATS (libnats-dev)");
    return CLI_USAGE;
}
#endif
