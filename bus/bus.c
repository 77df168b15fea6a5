/*
 * bus.c - the bus of cerebelum/bus.h: one NATS connection (reconnecting by
 * itself, SendAsap so a small Fetch is not held 1 ms by the flusher), a
 * watcher thread that reads the stored triggers every two seconds and keeps
 * exactly one runner per live (name, version), and the health answer.
 *
 * Consumers are created or bound by name, never created by the
 * subscription: a durable js_PullSubscribe created would be deleted by an
 * unsubscribe, one bound by name survives (c-stack.md section 6, pitfall 2).
 */
#include "bus/bus_internal.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cbm_internal.h"
#include "engine_internal.h"

#define WATCH_MS 2000

int64_t bus_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

bool cbm_bus_available(void) { return true; }

void bus_set_state(runner_t *r, const char *state, const char *error)
{
    pthread_mutex_lock(&r->bus->mu);
    snprintf(r->state, sizeof(r->state), "%s", state);
    snprintf(r->error, sizeof(r->error), "%s", error != NULL ? error : "");
    pthread_mutex_unlock(&r->bus->mu);
}

/* ---- stream and consumer -------------------------------------------------- */

static int ensure_stream(cbm_bus_t *b, const trigger_t *t, char *msg, size_t msglen)
{
    jsStreamInfo *si = NULL;
    jsStreamConfig sc;
    jsErrCode jerr = 0;
    natsStatus s;
    int n = 0;

    s = js_GetStreamInfo(&si, b->js, t->stream, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    si = NULL;
    if (s == NATS_OK) return 0;
    if (jerr != JSStreamNotFoundErr && s != NATS_NOT_FOUND) {
        snprintf(msg, msglen, "stream %s: %s (JetStream error %d)", t->stream,
                 natsStatus_GetText(s), (int)jerr);
        return CBM_EUNAVAIL;
    }
    while (t->stream_subjects[n] != NULL) n++;
    jsStreamConfig_Init(&sc);
    sc.Name = t->stream;
    sc.Subjects = (const char **)t->stream_subjects;
    sc.SubjectsLen = n;
    sc.Storage = js_FileStorage;
    sc.Duplicates = (int64_t)600 * 1000000000; /* 10 min of Msg-Id dedup */
    s = js_AddStream(&si, b->js, &sc, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    if (s == NATS_OK || jerr == JSStreamNameExistErr) return 0;
    snprintf(msg, msglen, "stream %s: cannot create it: %s (JetStream error %d)", t->stream,
             natsStatus_GetText(s), (int)jerr);
    return CBM_EUNAVAIL;
}

static int ensure_consumer(cbm_bus_t *b, const trigger_t *t, char *msg, size_t msglen)
{
    jsConsumerInfo *ci = NULL;
    jsConsumerConfig cc;
    jsErrCode jerr = 0;
    natsStatus s;
    int rc = 0;

    s = js_GetConsumerInfo(&ci, b->js, t->stream, t->consumer, NULL, &jerr);
    if (s == NATS_OK) {
        const char *f = ci->Config != NULL ? ci->Config->FilterSubject : NULL;
        if (f == NULL || strcmp(f, t->subject) != 0) {
            snprintf(msg, msglen, "consumer %s of stream %s filters '%s', the trigger wants '%s' "
                     "(delete the consumer or name another)", t->consumer, t->stream,
                     f != NULL ? f : "", t->subject);
            rc = CBM_EINVAL;
        }
        jsConsumerInfo_Destroy(ci);
        return rc;
    }
    if (jerr != JSConsumerNotFoundErr) {
        snprintf(msg, msglen, "consumer %s of stream %s: %s (JetStream error %d)", t->consumer,
                 t->stream, natsStatus_GetText(s), (int)jerr);
        return CBM_EUNAVAIL;
    }
    jsConsumerConfig_Init(&cc);
    cc.Durable = t->consumer;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = t->ack_wait_ms * 1000000;
    cc.FilterSubject = t->subject;
    ci = NULL;
    s = js_AddConsumer(&ci, b->js, t->stream, &cc, NULL, &jerr);
    jsConsumerInfo_Destroy(ci);
    if (s == NATS_OK) return 0;
    snprintf(msg, msglen, "consumer %s of stream %s: cannot create it: %s (JetStream error %d)",
             t->consumer, t->stream, natsStatus_GetText(s), (int)jerr);
    return CBM_EUNAVAIL;
}

int bus_subscribe(cbm_bus_t *b, const trigger_t *t, natsSubscription **sub, char *msg,
                  size_t msglen)
{
    jsSubOptions so;
    jsErrCode jerr = 0;
    natsStatus s;
    int rc;

    *sub = NULL;
    if (t->stream_subjects != NULL && (rc = ensure_stream(b, t, msg, msglen)) != 0) return rc;
    if ((rc = ensure_consumer(b, t, msg, msglen)) != 0) return rc;
    jsSubOptions_Init(&so);
    so.Stream = t->stream;
    so.Consumer = t->consumer;
    s = js_PullSubscribe(sub, b->js, t->subject, t->consumer, NULL, &so, &jerr);
    if (s == NATS_OK) return 0;
    *sub = NULL;
    snprintf(msg, msglen, "bind to consumer %s of stream %s: %s (JetStream error %d)",
             t->consumer, t->stream, natsStatus_GetText(s), (int)jerr);
    return CBM_EUNAVAIL;
}

/* ---- the watcher ---------------------------------------------------------- */

static void remove_runner(cbm_bus_t *b, runner_t *r)
{
    runner_t **p;
    runner_stop(r);
    pthread_mutex_lock(&b->mu);
    for (p = &b->runners; *p != r; p = &(*p)->next) {}
    *p = r->next;
    pthread_mutex_unlock(&b->mu);
    trigger_destroy(r->t);
    free(r);
}

/* Bring the runners in line with the stored triggers. */
static void sync_runners(cbm_bus_t *b)
{
    cbm_trigger_info_t *ts = NULL;
    cbm_error_t err = {0};
    runner_t *r, *next;
    size_t n = 0;

    if (cbm_trigger_list(b->engine, &ts, &n, &err) != 0) {
        cbm_log_warn("bus: cannot read the triggers: %s", err.message);
        return; /* the runners keep going; try again later */
    }
    for (r = b->runners; r != NULL; r = next) { /* gone or changed: stop */
        size_t i;
        next = r->next;
        for (i = 0; i < n; i++)
            if (strcmp(ts[i].name, r->t->name) == 0 && strcmp(ts[i].version, r->t->version) == 0)
                break;
        if (i == n) remove_runner(b, r);
    }
    for (size_t i = 0; i < n; i++) { /* new: start */
        trigger_t *t = NULL;
        for (r = b->runners; r != NULL && strcmp(r->t->name, ts[i].name) != 0; r = r->next) {}
        if (r != NULL) continue;
        if (trigger_parse(ts[i].definition, strlen(ts[i].definition), &t, &err) != 0) {
            cbm_log_warn("bus: stored trigger %s does not parse: %s", ts[i].name, err.message);
            continue;
        }
        if ((r = calloc(1, sizeof(*r))) == NULL) {
            trigger_destroy(t);
            continue;
        }
        r->bus = b;
        r->t = t;
        atomic_store(&r->last_fetch_us, bus_now_us());
        snprintf(r->state, sizeof(r->state), "starting");
        if (runner_start(r) != 0) {
            trigger_destroy(t);
            free(r);
            continue;
        }
        pthread_mutex_lock(&b->mu);
        r->next = b->runners;
        b->runners = r;
        pthread_mutex_unlock(&b->mu);
        cbm_log_info("bus: trigger %s started (stream %s, consumer %s)", t->name, t->stream,
                     t->consumer);
    }
    cbm_trigger_infos_free(ts, n);
}

/* Write each runner's health to the database (cbm_trigger_health_list
 * reads it, from any process: `cerebelum bus`). */
static void report(cbm_bus_t *b)
{
    char host[128] = "?", process[160];
    int64_t now = bus_now_us();

    gethostname(host, sizeof(host) - 1);
    snprintf(process, sizeof(process), "%s:%d", host, (int)getpid());
    for (runner_t *r = b->runners; r != NULL; r = r->next) {
        store_trigger_health_t h = {0};
        char state[16], error[256];
        cbm_error_t err = {0};

        pthread_mutex_lock(&b->mu);
        memcpy(state, r->state, sizeof(state));
        memcpy(error, r->error, sizeof(error));
        pthread_mutex_unlock(&b->mu);
        h.trigger = r->t->name;
        h.process = process;
        h.state = state;
        h.error = error;
        h.wait_ms = r->t->wait_ms;
        h.last_fetch_ms_ago = (now - atomic_load(&r->last_fetch_us)) / 1000;
        h.messages = (int64_t)atomic_load(&r->messages);
        h.started = (int64_t)atomic_load(&r->started);
        h.existing = (int64_t)atomic_load(&r->existing);
        h.failures = (int64_t)atomic_load(&r->failures);
        h.naks = (int64_t)atomic_load(&r->naks);
        if (cbm__trigger_health_put(b->engine, &h, &err) != 0) break; /* store down: later */
    }
}

static void *watch(void *arg)
{
    cbm_bus_t *b = arg;

    pthread_mutex_lock(&b->mu);
    while (!b->stopping) {
        struct timespec until;
        pthread_mutex_unlock(&b->mu);
        sync_runners(b);
        report(b);
        pthread_mutex_lock(&b->mu);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += WATCH_MS / 1000;
        while (!b->stopping && pthread_cond_timedwait(&b->cv, &b->mu, &until) == 0) {}
    }
    pthread_mutex_unlock(&b->mu);
    while (b->runners != NULL) remove_runner(b, b->runners);
    nats_ReleaseThreadMemory();
    return NULL;
}

/* ---- the bus -------------------------------------------------------------- */

int cbm_bus_create(cbm_bus_t **out, cbm_engine_t *e, const cbm_bus_opts_t *opts, cbm_error_t *err)
{
    natsOptions *no = NULL;
    cbm_bus_t *b;
    natsStatus s;
    const char *hook = getenv("CEREBELUM_TEST_EXIT_BEFORE_ACK");

    *out = NULL;
    if (e == NULL || opts == NULL || opts->url == NULL || opts->url[0] == '\0')
        return cbm_error_set(err, CBM_EINVAL, "bus: a NATS URL is required");
    if ((b = calloc(1, sizeof(*b))) == NULL)
        return cbm_error_set(err, CBM_ENOMEM, "bus: out of memory");
    b->engine = e;
    b->exit_before_ack = hook != NULL && strcmp(hook, "1") == 0;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    s = natsOptions_Create(&no);
    if (s == NATS_OK) s = natsOptions_SetURL(no, opts->url);
    if (s == NATS_OK) s = natsOptions_SetSendAsap(no, true);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(no, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(no, 250);
    if (s == NATS_OK) s = natsOptions_SetName(no, "cerebelum");
    if (s == NATS_OK) s = natsConnection_Connect(&b->nc, no);
    natsOptions_Destroy(no);
    if (s == NATS_OK) s = natsConnection_JetStream(&b->js, b->nc, NULL);
    if (s != NATS_OK) {
        int rc = cbm_error_set(err, s == NATS_NO_MEMORY ? CBM_ENOMEM : CBM_EUNAVAIL,
                               "bus: cannot connect to NATS at %s: %s", opts->url,
                               natsStatus_GetText(s));
        cbm_bus_destroy(b);
        return rc;
    }
    if (pthread_create(&b->watcher, NULL, watch, b) != 0) {
        jsCtx_Destroy(b->js);
        b->js = NULL;
        cbm_bus_destroy(b);
        return cbm_error_set(err, CBM_ENOMEM, "bus: cannot start a thread");
    }
    *out = b;
    return 0;
}

void cbm_bus_destroy(cbm_bus_t *b)
{
    if (b == NULL) return;
    if (b->js != NULL) { /* the watcher runs: stop it, it stops the runners */
        pthread_mutex_lock(&b->mu);
        b->stopping = true;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->watcher, NULL);
    }
    jsCtx_Destroy(b->js);
    natsConnection_Destroy(b->nc);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

int cbm_bus_health(cbm_bus_t *b, char **json_out)
{
    cJSON *o = cJSON_CreateObject(), *arr = NULL;
    bool ok = true, connected;
    int64_t now = bus_now_us();

    *json_out = NULL;
    if (o == NULL || (arr = cJSON_AddArrayToObject(o, "triggers")) == NULL) goto oom;
    connected = natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED;
    ok = connected;
    pthread_mutex_lock(&b->mu);
    for (runner_t *r = b->runners; r != NULL; r = r->next) {
        cJSON *t = cJSON_CreateObject();
        int64_t ago = (now - atomic_load(&r->last_fetch_us)) / 1000;
        bool stale = ago > 3 * (int64_t)r->t->wait_ms;
        if (t == NULL || !cJSON_AddItemToArray(arr, t)) {
            cJSON_Delete(t);
            pthread_mutex_unlock(&b->mu);
            goto oom;
        }
        if (stale || strcmp(r->state, "error") == 0) ok = false;
        cJSON_AddStringToObject(t, "name", r->t->name);
        cJSON_AddStringToObject(t, "version", r->t->version);
        cJSON_AddStringToObject(t, "stream", r->t->stream);
        cJSON_AddStringToObject(t, "consumer", r->t->consumer);
        cJSON_AddStringToObject(t, "state", r->state);
        cJSON_AddNumberToObject(t, "last_fetch_ms_ago", (double)ago);
        cJSON_AddNumberToObject(t, "fetch_wait_ms", r->t->wait_ms);
        cJSON_AddBoolToObject(t, "stale", stale);
        cJSON_AddNumberToObject(t, "messages", (double)atomic_load(&r->messages));
        cJSON_AddNumberToObject(t, "started", (double)atomic_load(&r->started));
        cJSON_AddNumberToObject(t, "existing", (double)atomic_load(&r->existing));
        cJSON_AddNumberToObject(t, "acks", (double)atomic_load(&r->acks));
        cJSON_AddNumberToObject(t, "failures", (double)atomic_load(&r->failures));
        cJSON_AddNumberToObject(t, "naks", (double)atomic_load(&r->naks));
        if (r->error[0] != '\0') cJSON_AddStringToObject(t, "error", r->error);
    }
    pthread_mutex_unlock(&b->mu);
    if (cJSON_AddBoolToObject(o, "ok", ok) == NULL ||
        cJSON_AddBoolToObject(o, "connected", connected) == NULL ||
        (*json_out = cJSON_PrintUnformatted(o)) == NULL)
        goto oom;
    cJSON_Delete(o);
    return 0;
oom:
    cJSON_Delete(o);
    return CBM_ENOMEM;
}
