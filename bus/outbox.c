/*
 * outbox.c - the outbox publisher (outbox.h; docs/outbox.md).
 *
 * One thread, one PostgreSQL connection (holding the publisher's advisory
 * lock: one publisher per database) and one NATS connection. It works in
 * rounds: read the oldest row of each execution among the `batch` oldest
 * rows (store_outbox_read), publish them all asynchronously with
 * Nats-Msg-Id = "<execution>:<seq>", wait for their PubAcks, delete the
 * acknowledged rows in one statement, repeat. A row is deleted only after
 * its PubAck; a failed or timed-out publish leaves it for a later round
 * (after a back-off), so nothing is lost. Because an execution never has two
 * rows in one round, and its rows' ids follow its seqs, a failure can never
 * let an execution's later event overtake an earlier one. A row published
 * whose delete did not happen (a crash, a lost PubAck) is published again;
 * the stream drops it within its Duplicates window (checked at connect).
 *
 * PubAcks arrive on a nats.c thread (the context's AckHandler); it marks the
 * row under `mu` and the round's thread reads the marks once
 * js_PublishAsyncComplete returns. Connection handling is deliberately
 * plain: while NATS is reconnecting no round starts (nothing piles up in
 * nats.c's reconnect buffer), and a closed connection is rebuilt.
 */
#include "bus/outbox.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "cbm_internal.h"

enum { ROW_PENDING = 0, ROW_ACKED = 1, ROW_FAILED = 2 };

struct bus_outbox {
    /* Configuration (copied). */
    char *db_url, *nats_url, *stream, *stream_subject;
    size_t batch;
    int64_t poll_ms, ack_wait_ms, dup_window_ms;
    int test_exit_after_ack;        /* CEREBELUM_TEST_OUTBOX_EXIT_AFTER_ACK */

    pthread_t thread;
    pthread_mutex_t mu;
    bool stopping;                  /* under mu */
    int wake[2];                    /* a pipe: a byte wakes the thread */

    /* The round in flight, under mu (the ack handler reads it). */
    store_outbox_row_t *rows;
    size_t nrows;
    unsigned char *state;
    size_t hint;                    /* where the next ack probably is */
    bus_outbox_counters_t counters; /* under mu */

    /* Thread only. */
    store_t *store;
    natsConnection *nc;
    jsCtx *js;
};

static char *dup_or(const char *s, const char *dflt)
{
    return strdup(s != NULL && s[0] != '\0' ? s : dflt);
}

/* The stream's subject filter: the template's tokens up to the first one
 * with a placeholder, then ">" ("cerebelum.execution.>" for the default);
 * a template that starts with a placeholder gets its placeholders as "*". */
static char *stream_subject_of(const char *tmpl)
{
    const char *brace = strchr(tmpl, '{');
    size_t len = strlen(tmpl);
    char *out;

    if (brace == NULL) return strdup(tmpl);
    while (brace > tmpl && brace[-1] != '.') brace--;
    if (brace > tmpl) {
        size_t k = (size_t)(brace - tmpl);
        out = malloc(k + 2);
        if (out == NULL) return NULL;
        memcpy(out, tmpl, k);
        memcpy(out + k, ">", 2);
        return out;
    }
    out = malloc(len + 1);
    if (out == NULL) return NULL;
    {
        size_t j = 0;
        for (size_t i = 0; i < len; i++) {
            if (tmpl[i] == '{') {
                while (i < len && tmpl[i] != '.') i++;
                out[j++] = '*';
                if (i < len) out[j++] = '.';
            } else {
                out[j++] = tmpl[i];
            }
        }
        out[j] = '\0';
    }
    return out;
}

/* Wait until woken (bus_outbox_wake, stop, or with listen a commit that
 * wrote outbox rows: PostgreSQL's NOTIFY), or ms elapsed. Returns false once
 * stopping. */
static bool nap(bus_outbox_t *o, int64_t ms, bool listen)
{
    char buf[64];
    bool go;

    if (listen && o->store != NULL && store_ok(o->store)) {
        cbm_error_t err = {0};
        store_outbox_wait(o->store, o->wake[0], ms, &err); /* a failure shows next round */
    } else {
        struct pollfd p = {o->wake[0], POLLIN, 0};
        poll(&p, 1, (int)ms);
    }
    while (read(o->wake[0], buf, sizeof(buf)) > 0) {}
    pthread_mutex_lock(&o->mu);
    go = !o->stopping;
    pthread_mutex_unlock(&o->mu);
    return go;
}

/* nats.c thread: one PubAck, or the error of one publish. */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    bus_outbox_t *o = closure;
    const char *id = NULL;

    (void)js;
    natsMsgHeader_Get(msg, "Nats-Msg-Id", &id);
    pthread_mutex_lock(&o->mu);
    if (o->rows != NULL && id != NULL) {
        for (size_t k = 0; k < o->nrows; k++) {
            size_t i = (o->hint + k) % o->nrows;
            if (strcmp(o->rows[i].msg_id, id) != 0) continue;
            if (pa != NULL) {
                o->state[i] = ROW_ACKED;
                if (pa->Duplicate) o->counters.duplicates++;
            } else {
                o->state[i] = ROW_FAILED;
                o->counters.failures++;
                cbm_log_warn("outbox: publish of %s failed: %s (retried)", id,
                             pae != NULL ? natsStatus_GetText(pae->Err) : "?");
            }
            o->hint = i + 1;
            break;
        }
    }
    pthread_mutex_unlock(&o->mu);
    natsMsg_Destroy(msg);
}

static void nats_drop(bus_outbox_t *o)
{
    jsCtx_Destroy(o->js);
    o->js = NULL;
    natsConnection_Destroy(o->nc);
    o->nc = NULL;
    pthread_mutex_lock(&o->mu);
    o->counters.nats_connected = false;
    pthread_mutex_unlock(&o->mu);
}

/* Create the stream if absent; check its duplicate window. */
static void ensure_stream(bus_outbox_t *o)
{
    jsStreamInfo *si = NULL;
    jsErrCode je = 0;
    natsStatus s = js_GetStreamInfo(&si, o->js, o->stream, NULL, &je);

    if (s == NATS_NOT_FOUND || je == JSStreamNotFoundErr) {
        jsStreamConfig sc;
        const char *subjects[1] = {o->stream_subject};

        jsStreamConfig_Init(&sc);
        sc.Name = o->stream;
        sc.Subjects = subjects;
        sc.SubjectsLen = 1;
        sc.Storage = js_FileStorage;
        sc.Duplicates = o->dup_window_ms * 1000000;
        je = 0;
        s = js_AddStream(&si, o->js, &sc, NULL, &je);
        if (s == NATS_OK)
            cbm_log_info("outbox: created stream %s on %s (duplicate window %lld s)", o->stream,
                         o->stream_subject, (long long)(o->dup_window_ms / 1000));
    }
    if (s != NATS_OK || si == NULL) {
        cbm_log_error("outbox: stream %s: %s (JetStream error %d); publishing anyway", o->stream,
                      natsStatus_GetText(s), (int)je);
        jsStreamInfo_Destroy(si);
        return;
    }
    {
        int64_t win = si->Config->Duplicates / 1000000;
        pthread_mutex_lock(&o->mu);
        o->counters.dup_window_ms = win;
        pthread_mutex_unlock(&o->mu);
        if (win < o->dup_window_ms)
            cbm_log_warn("outbox: stream %s drops duplicate message ids for %.0f s only, less than "
                         "%.0f s. A row published whose delete did not happen (a crash of the "
                         "publisher, a PubAck lost in an outage of NATS) is published again "
                         "when the publisher recovers; if that is later than the window, the "
                         "event is stored twice and consumers see it twice (they can "
                         "deduplicate on execution_id and seq). Raise the stream's Duplicates "
                         "to cover the longest outage you want bridged without duplicates.",
                         o->stream, (double)win / 1000.0, (double)o->dup_window_ms / 1000.0);
    }
    jsStreamInfo_Destroy(si);
}

static int nats_connect(bus_outbox_t *o)
{
    natsOptions *opts = NULL;
    jsOptions jo;
    natsStatus s;

    if ((s = natsOptions_Create(&opts)) == NATS_OK &&
        (s = natsOptions_SetURL(opts, o->nats_url)) == NATS_OK &&
        (s = natsOptions_SetSendAsap(opts, true)) == NATS_OK &&
        (s = natsOptions_SetTimeout(opts, 2000)) == NATS_OK &&
        (s = natsOptions_SetMaxReconnect(opts, -1)) == NATS_OK &&
        (s = natsOptions_SetReconnectWait(opts, 250)) == NATS_OK)
        s = natsConnection_Connect(&o->nc, opts);
    natsOptions_Destroy(opts);
    if (s == NATS_OK) {
        jsOptions_Init(&jo);
        jo.Wait = o->ack_wait_ms;
        jo.PublishAsync.AckHandler = on_ack;
        jo.PublishAsync.AckHandlerClosure = o;
        jo.PublishAsync.MaxPending = (int64_t)o->batch * 2;
        s = natsConnection_JetStream(&o->js, o->nc, &jo);
    }
    if (s != NATS_OK) {
        cbm_log_warn("outbox: NATS %s: %s (retrying)", o->nats_url, natsStatus_GetText(s));
        nats_drop(o);
        return CBM_EUNAVAIL;
    }
    pthread_mutex_lock(&o->mu);
    o->counters.nats_connected = true;
    pthread_mutex_unlock(&o->mu);
    ensure_stream(o);
    return 0;
}

/* One round. Returns the number of rows read (0: idle), or a CBM_E* code
 * when some publish failed or the store did. */
static int publish_round(bus_outbox_t *o)
{
    store_outbox_row_t *rows = NULL;
    size_t n = 0, nacked = 0, nfailed = 0;
    int64_t *ids = NULL;
    unsigned char *state;
    cbm_error_t err = {0};
    jsPubOptions cpo;
    natsStatus s = NATS_OK;
    int rc = store_outbox_read(o->store, o->batch, &rows, &n, &err);

    if (rc != 0) {
        cbm_log_warn("outbox: %s", err.message);
        return rc;
    }
    if (n == 0) return 0;
    state = calloc(n, 1);
    ids = malloc(n * sizeof(*ids));
    if (state == NULL || ids == NULL) {
        free(state);
        free(ids);
        store_outbox_rows_free(rows, n);
        return CBM_ENOMEM;
    }
    pthread_mutex_lock(&o->mu);
    o->rows = rows;
    o->nrows = n;
    o->state = state;
    o->hint = 0;
    pthread_mutex_unlock(&o->mu);

    for (size_t i = 0; i < n && s == NATS_OK; i++) {
        natsMsg *m = NULL;
        jsPubOptions po;

        jsPubOptions_Init(&po);
        po.MsgId = rows[i].msg_id;
        po.MaxWait = o->ack_wait_ms;
        s = natsMsg_Create(&m, rows[i].subject, NULL, rows[i].payload, (int)strlen(rows[i].payload));
        if (s == NATS_OK) s = js_PublishMsgAsync(o->js, &m, &po);
        natsMsg_Destroy(m); /* NULL once the library took it */
    }
    jsPubOptions_Init(&cpo);
    cpo.MaxWait = o->ack_wait_ms + 500;
    if (js_PublishAsyncComplete(o->js, &cpo) != NATS_OK) {
        natsMsgList pending;
        /* Acks that never came: give up on them (their rows stay). */
        if (js_PublishAsyncGetPendingList(&pending, o->js) == NATS_OK) natsMsgList_Destroy(&pending);
    }

    pthread_mutex_lock(&o->mu);
    for (size_t i = 0; i < n; i++) {
        if (state[i] == ROW_ACKED) ids[nacked++] = rows[i].id;
        else nfailed++;
    }
    o->rows = NULL;
    o->nrows = 0;
    o->state = NULL;
    pthread_mutex_unlock(&o->mu);

    if (o->test_exit_after_ack > 0 && nacked > 0) {
        /* TEST ONLY (CEREBELUM_TEST_OUTBOX_EXIT_AFTER_ACK): die between the
         * PubAcks and the delete, as a crash there would. */
        cbm_log_warn("outbox: test hook: exiting after %zu PubAcks, before their delete", nacked);
        _exit(o->test_exit_after_ack);
    }
    rc = store_outbox_delete(o->store, ids, nacked, &err);
    if (rc != 0) cbm_log_warn("outbox: %s (the rows will be published again)", err.message);
    pthread_mutex_lock(&o->mu);
    if (rc == 0) o->counters.published += nacked;
    pthread_mutex_unlock(&o->mu);
    free(ids);
    free(state);
    store_outbox_rows_free(rows, n);
    if (rc != 0) return rc;
    if (nfailed > 0 || s != NATS_OK) return CBM_EUNAVAIL;
    return (int)n;
}

/* PostgreSQL up and the lock held? Returns false to wait and retry. */
static bool store_ready(bus_outbox_t *o)
{
    cbm_error_t err = {0};
    bool got = false, held;

    pthread_mutex_lock(&o->mu);
    held = o->counters.holds_lock;
    pthread_mutex_unlock(&o->mu);
    if (o->store == NULL && store_open(o->db_url, &o->store, &err) != 0) {
        cbm_log_warn("outbox: %s (retrying)", err.message);
        return false;
    }
    if (!store_ok(o->store)) {
        held = false;
        if (store_reconnect(o->store, &err) != 0) {
            cbm_log_warn("outbox: %s (retrying)", err.message);
            got = false;
            goto done;
        }
    }
    if (held) return true;
    if (store_outbox_try_lock(o->store, &got, &err) != 0 ||
        (got && store_outbox_listen(o->store, &err) != 0)) {
        cbm_log_warn("outbox: %s (retrying)", err.message);
        got = false;
    } else if (got) {
        cbm_log_info("outbox: this process is the database's outbox publisher");
    }
done:
    pthread_mutex_lock(&o->mu);
    o->counters.holds_lock = got;
    pthread_mutex_unlock(&o->mu);
    return got;
}

static void *thread_main(void *arg)
{
    bus_outbox_t *o = arg;
    int64_t backoff = 0;

    for (;;) {
        int r;

        if (!store_ready(o)) {
            if (!nap(o, o->poll_ms, false)) break;
            continue;
        }
        if (o->nc != NULL && natsConnection_Status(o->nc) == NATS_CONN_STATUS_CLOSED) nats_drop(o);
        if (o->nc == NULL && nats_connect(o) != 0) r = CBM_EUNAVAIL;
        else if (natsConnection_Status(o->nc) != NATS_CONN_STATUS_CONNECTED) r = CBM_EUNAVAIL;
        else r = publish_round(o);
        pthread_mutex_lock(&o->mu);
        o->counters.nats_connected = o->nc != NULL &&
                                     natsConnection_Status(o->nc) == NATS_CONN_STATUS_CONNECTED;
        pthread_mutex_unlock(&o->mu);
        if (r > 0) {
            backoff = 0;
            pthread_mutex_lock(&o->mu);
            r = o->stopping ? -1 : 1;
            pthread_mutex_unlock(&o->mu);
            if (r < 0) break;
            continue; /* maybe more rows: next round at once */
        }
        if (r == 0) {
            if (!nap(o, o->poll_ms, true)) break;
            continue;
        }
        backoff = backoff == 0 ? 100 : backoff * 2;
        if (backoff > 5000) backoff = 5000;
        if (!nap(o, backoff, false)) break;
    }
    nats_drop(o);
    store_close(o->store);
    o->store = NULL;
    return NULL;
}

static void free_outbox(bus_outbox_t *o)
{
    free(o->db_url);
    free(o->nats_url);
    free(o->stream);
    free(o->stream_subject);
    free(o);
}

int bus_outbox_start(const bus_outbox_config_t *cfg, bus_outbox_t **out, cbm_error_t *err)
{
    bus_outbox_t *o;
    const char *subject = cfg->subject != NULL && cfg->subject[0] != '\0'
                              ? cfg->subject
                              : CBM_OUTBOX_SUBJECT_DEFAULT;
    const char *hook = getenv("CEREBELUM_TEST_OUTBOX_EXIT_AFTER_ACK");

    *out = NULL;
    if (cfg->db_url == NULL || cfg->nats_url == NULL)
        return cbm_error_set(err, CBM_EINVAL, "outbox: a database URL and a NATS URL are needed");
    if (cfg->configure) {
        store_t *s = NULL;
        int64_t cap = cfg->max_payload == 0   ? BUS_OUTBOX_MAX_PAYLOAD_DEFAULT
                      : cfg->max_payload < 0 ? 0
                                              : cfg->max_payload;
        int rc = store_open(cfg->db_url, &s, err);
        if (rc == 0) rc = store_outbox_configure(s, true, subject, cap, err);
        store_close(s);
        if (rc != 0) return rc;
    }
    o = calloc(1, sizeof(*o));
    if (o == NULL) return cbm_error_set(err, CBM_ENOMEM, "outbox: out of memory");
    o->db_url = strdup(cfg->db_url);
    o->nats_url = strdup(cfg->nats_url);
    o->stream = dup_or(cfg->stream, BUS_OUTBOX_STREAM_DEFAULT);
    o->stream_subject = stream_subject_of(subject);
    o->batch = cfg->batch > 0 ? cfg->batch : 256;
    o->poll_ms = cfg->poll_ms > 0 ? cfg->poll_ms : 1000;
    o->ack_wait_ms = cfg->ack_wait_ms > 0 ? cfg->ack_wait_ms : 2000;
    o->dup_window_ms = cfg->dup_window_ms > 0 ? cfg->dup_window_ms : BUS_OUTBOX_DUP_WINDOW_MS_DEFAULT;
    o->test_exit_after_ack = hook != NULL ? atoi(hook) : 0;
    if (o->db_url == NULL || o->nats_url == NULL || o->stream == NULL || o->stream_subject == NULL) {
        free_outbox(o);
        return cbm_error_set(err, CBM_ENOMEM, "outbox: out of memory");
    }
    if (pipe2(o->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        free_outbox(o);
        return cbm_error_set(err, CBM_EIO, "outbox: pipe: %s", strerror(errno));
    }
    pthread_mutex_init(&o->mu, NULL);
    if (pthread_create(&o->thread, NULL, thread_main, o) != 0) {
        pthread_mutex_destroy(&o->mu);
        close(o->wake[0]);
        close(o->wake[1]);
        free_outbox(o);
        return cbm_error_set(err, CBM_ENOMEM, "outbox: cannot start its thread");
    }
    *out = o;
    return 0;
}

void bus_outbox_wake(bus_outbox_t *o)
{
    ssize_t r;

    if (o == NULL) return;
    r = write(o->wake[1], "w", 1); /* full pipe: a wake-up is pending anyway */
    (void)r;
}

void bus_outbox_counters(bus_outbox_t *o, bus_outbox_counters_t *out)
{
    pthread_mutex_lock(&o->mu);
    *out = o->counters;
    pthread_mutex_unlock(&o->mu);
}

void bus_outbox_stop(bus_outbox_t *o)
{
    if (o == NULL) return;
    pthread_mutex_lock(&o->mu);
    o->stopping = true;
    pthread_mutex_unlock(&o->mu);
    bus_outbox_wake(o);
    pthread_join(o->thread, NULL);
    pthread_mutex_destroy(&o->mu);
    close(o->wake[0]);
    close(o->wake[1]);
    free_outbox(o);
}
