/*
 * test_trigger_loaded.c - signal and approval triggers reach an execution
 * that is LOADED (in the engine's memory: a handler of it is running), not
 * only a hibernated one (trigger_test.sh covers those): an embedded engine
 * and a bus in this process, a real nats-server (tests/harness/with-nats.sh)
 * and PostgreSQL. The blueprint runs a step whose handler blocks until the
 * test lets it go, beside a signal step and an approval step; the signal
 * and the approval arrive on NATS while the handler runs. Also: the same
 * signal again with the trigger's key of that message (what its
 * redelivery would carry) is found delivered and delivers nothing. And a
 * batch of starts with one input the blueprint refuses: the others start,
 * the bad one is recorded and terminated (the runner's fallback).
 */
#include <nats/nats.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cerebelum/bus.h"
#include "cerebelum/cerebelum.h"
#include "tests/harness/testdb.h"

static char url[512];
static const char *nats_url;
static atomic_int held, release_hold;

static void h_hold(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    atomic_store(&held, 1);
    for (int i = 0; i < 3000 && !atomic_load(&release_hold); i++) usleep(10 * 1000);
    cbm_step_ok(out, "{\"held\": true}");
}

static void h_noop(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_ok(out, "{}");
}

/* How many events of type the execution has. */
static int events_of(cbm_engine_t *e, const char *id, const char *type)
{
    cbm_event_t *ev = NULL;
    cbm_error_t err = {0};
    size_t n = 0;
    int k = 0;
    if (cbm_execution_history(e, id, 1, &ev, &n, &err) != 0) fail_msg("history: %s", err.message);
    for (size_t i = 0; i < n; i++) k += strcmp(ev[i].type, type) == 0;
    cbm_events_free(ev, n);
    return k;
}

static void publish(jsCtx *js, const char *subject, const char *data, const char *msg_id)
{
    jsPubOptions po;
    jsErrCode jerr = 0;
    jsPubAck *pa = NULL;
    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    if (js_Publish(&pa, js, subject, data, (int)strlen(data), &po, &jerr) != NATS_OK)
        fail_msg("publish %s: JetStream error %d", subject, (int)jerr);
    jsPubAck_Destroy(pa);
}

static void test_signal_and_approval_reach_a_loaded_execution(void **state)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t eo = {0};
    cbm_bus_t *bus = NULL;
    cbm_bus_opts_t bo = {0};
    cbm_error_t err = {0};
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    cbm_execution_info_t *x = NULL;
    char id[37], trig[512], data[256], subj[64];
    int pid = (int)getpid();
    bool delivered = true;
    (void)state;

    eo.database_url = url;
    assert_int_equal(cbm_engine_create(&e, &eo, &err), 0);
    assert_int_equal(cbm_engine_register_step(e, "hold", h_hold, NULL), 0);
    assert_int_equal(cbm_engine_register_step(e, "noop", h_noop, NULL), 0);
    if (cbm_engine_start(e, &err) != 0) fail_msg("start: %s", err.message);
    if (cbm_engine_register_blueprint(
            e,
            "{\"name\": \"loaded\", \"steps\": ["
            "{\"name\": \"hold\", \"handler\": \"hold\"},"
            "{\"name\": \"go\", \"kind\": \"signal\", \"signal\": \"go\"},"
            "{\"name\": \"ok\", \"kind\": \"approval\", \"approval_type\": \"plan\"},"
            "{\"name\": \"end\", \"handler\": \"noop\", \"depends_on\": [\"hold\", \"go\", \"ok\"]}]}",
            NULL, &err) != 0)
        fail_msg("register: %s", err.message);
    snprintf(trig, sizeof(trig),
             "{\"name\": \"lsig\", \"stream\": \"L%d\", \"stream_subjects\": [\"l%d.>\"],"
             " \"consumer\": \"lsig\", \"subject\": \"l%d.signal\", \"action\": \"signal\","
             " \"execution\": \"$.msg.data.execution\", \"signal\": \"go\","
             " \"inputs\": {\"v\": \"$.msg.data.v\"}, \"wait_ms\": 100}",
             pid, pid, pid);
    if (cbm_trigger_put(e, trig, NULL, NULL, &err) != 0) fail_msg("put: %s", err.message);
    snprintf(trig, sizeof(trig),
             "{\"name\": \"lappr\", \"stream\": \"L%d\", \"stream_subjects\": [\"l%d.>\"],"
             " \"consumer\": \"lappr\", \"subject\": \"l%d.approve\", \"action\": \"approve\","
             " \"execution\": \"$.msg.data.execution\", \"step\": \"ok\","
             " \"inputs\": {\"by\": \"$.msg.data.by\"}, \"wait_ms\": 100}",
             pid, pid, pid);
    if (cbm_trigger_put(e, trig, NULL, NULL, &err) != 0) fail_msg("put: %s", err.message);
    bo.url = nats_url;
    if (cbm_bus_create(&bus, e, &bo, &err) != 0) fail_msg("bus: %s", err.message);
    for (int i = 0; i < 200; i++) { /* both consumers fetching */
        char *h = NULL;
        int fetching = 0;
        if (cbm_bus_health(bus, &h) == 0)
            for (const char *p = h; (p = strstr(p, "\"state\":\"fetching\"")) != NULL; p++)
                fetching++;
        free(h);
        if (fetching == 2) break;
        usleep(50 * 1000);
    }
    if (natsConnection_ConnectTo(&nc, nats_url) != NATS_OK ||
        natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
        fail_msg("nats: %s", nats_url);

    if (cbm_execution_start(e, "loaded", "{}", id, &err) != 0) fail_msg("start: %s", err.message);
    for (int i = 0; i < 1000 && !atomic_load(&held); i++) usleep(10 * 1000);
    assert_true(atomic_load(&held)); /* loaded: its handler runs */

    snprintf(data, sizeof(data), "{\"execution\": \"%s\", \"v\": 7}", id);
    snprintf(subj, sizeof(subj), "l%d.signal", pid);
    publish(js, subj, data, "sig-1");
    snprintf(data, sizeof(data), "{\"execution\": \"%s\", \"by\": \"po\"}", id);
    snprintf(subj, sizeof(subj), "l%d.approve", pid);
    publish(js, subj, data, "appr-1");
    for (int i = 0; i < 1000; i++) {
        if (events_of(e, id, "SignalReceived") == 1 && events_of(e, id, "ApprovalGranted") == 1)
            break;
        usleep(10 * 1000);
    }
    assert_int_equal(events_of(e, id, "SignalReceived"), 1);
    assert_int_equal(events_of(e, id, "ApprovalGranted"), 1);
    assert_false(atomic_load(&release_hold)); /* still loaded when both came */

    /* The trigger's key for that message (key msg_id): delivered already. */
    if (cbm_execution_signal_key(e, id, "go", "{\"v\": 8}", "trig:lsig:sig-1", &delivered, &err) != 0)
        fail_msg("signal again: %s", err.message);
    assert_false(delivered);
    assert_int_equal(events_of(e, id, "SignalReceived"), 1);

    atomic_store(&release_hold, 1);
    if (cbm_execution_wait(e, id, 30000, &x, &err) != 0) fail_msg("wait: %s", err.message);
    assert_string_equal(x->status, "completed");
    cbm_execution_info_free(x);
    x = NULL;
    {
        /* Each wait took its message's data. */
        cbm_event_t *ev = NULL;
        size_t n = 0;
        int sig_ok = 0, appr_ok = 0;
        assert_int_equal(cbm_execution_history(e, id, 1, &ev, &n, &err), 0);
        for (size_t i = 0; i < n; i++) {
            if (strcmp(ev[i].type, "SignalReceived") == 0)
                sig_ok = strstr(ev[i].payload, "\"v\":7") != NULL &&
                         strstr(ev[i].payload, "trig:lsig:sig-1") != NULL;
            if (strcmp(ev[i].type, "ApprovalGranted") == 0)
                appr_ok = strstr(ev[i].payload, "\"by\":\"po\"") != NULL;
        }
        if (!sig_ok || !appr_ok)
            for (size_t i = 0; i < n; i++) printf("# %s %s\n", ev[i].type, ev[i].payload);
        assert_true(sig_ok);
        assert_true(appr_ok);
        cbm_events_free(ev, n);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    cbm_bus_destroy(bus);
    cbm_engine_destroy(e);
}

static int count_keys(cbm_engine_t *e, const char *prefix)
{
    cbm_execution_info_t *xs = NULL;
    cbm_list_opts_t lo = {0};
    cbm_error_t err = {0};
    size_t n = 0;
    int k = 0;
    lo.blueprint = "needs";
    lo.limit = 100;
    if (cbm_execution_list(e, &lo, &xs, &n, &err) != 0) fail_msg("list: %s", err.message);
    for (size_t i = 0; i < n; i++)
        k += xs[i].idempotency_key != NULL &&
             strncmp(xs[i].idempotency_key, prefix, strlen(prefix)) == 0;
    cbm_execution_infos_free(xs, n);
    return k;
}

/* A batch of starts with one input the blueprint refuses: the batch's one
 * start call fails, the messages are done one by one, the bad one is
 * recorded and terminated, the others start once each. The messages wait
 * in the stream before the bus starts, so the first Fetch takes them all
 * and one worker takes the fetched batch whole. */
static void test_a_bad_input_in_a_batch(void **state)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t eo = {0};
    cbm_bus_t *bus = NULL;
    cbm_bus_opts_t bo = {0};
    cbm_error_t err = {0};
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamConfig sc;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    cbm_trigger_failure_t *f = NULL;
    size_t nf = 0;
    char trig[512], stream[32], subj[64], subjects[64];
    const char *subjp = subjects;
    static const char *const ns[] = {"1", "2", "\"x\"", "4", "5"};
    int pid = (int)getpid();
    (void)state;

    eo.database_url = url;
    assert_int_equal(cbm_engine_create(&e, &eo, &err), 0);
    assert_int_equal(cbm_engine_register_step(e, "noop", h_noop, NULL), 0);
    if (cbm_engine_start(e, &err) != 0) fail_msg("start: %s", err.message);
    if (cbm_engine_register_blueprint(
            e,
            "{\"name\": \"needs\", \"inputs\": {\"n\": {\"type\": \"number\", \"required\": true}},"
            " \"steps\": [{\"name\": \"a\", \"handler\": \"noop\"}]}",
            NULL, &err) != 0)
        fail_msg("register: %s", err.message);
    snprintf(stream, sizeof(stream), "B%d", pid);
    snprintf(subjects, sizeof(subjects), "b%d.>", pid);
    snprintf(subj, sizeof(subj), "b%d.go", pid);
    if (natsConnection_ConnectTo(&nc, nats_url) != NATS_OK ||
        natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
        fail_msg("nats: %s", nats_url);
    jsStreamConfig_Init(&sc);
    sc.Name = stream;
    sc.Subjects = &subjp;
    sc.SubjectsLen = 1;
    if (js_AddStream(&si, js, &sc, NULL, &jerr) != NATS_OK) fail_msg("stream: %d", (int)jerr);
    jsStreamInfo_Destroy(si);
    for (int i = 0; i < 5; i++) {
        char data[128], id[16];
        snprintf(data, sizeof(data), "{\"k\": \"a%d\", \"n\": %s}", i, ns[i]);
        snprintf(id, sizeof(id), "b-%d", i);
        publish(js, subj, data, id);
    }
    snprintf(trig, sizeof(trig),
             "{\"name\": \"batchy\", \"stream\": \"%s\", \"consumer\": \"batchy\","
             " \"subject\": \"%s\", \"blueprint\": \"needs\", \"key\": \"$.msg.data.k\","
             " \"inputs\": {\"n\": \"$.msg.data.n\"}, \"wait_ms\": 100, \"ack_wait_ms\": 2000}",
             stream, subj);
    if (cbm_trigger_put(e, trig, NULL, NULL, &err) != 0) fail_msg("put: %s", err.message);
    bo.url = nats_url;
    if (cbm_bus_create(&bus, e, &bo, &err) != 0) fail_msg("bus: %s", err.message);
    for (int i = 0; i < 1000 && (count_keys(e, "trig:batchy:") < 4 || nf < 1); i++) {
        cbm_trigger_failures_free(f, nf);
        f = NULL;
        nf = 0;
        if (cbm_trigger_failures(e, "batchy", 0, &f, &nf, &err) != 0)
            fail_msg("failures: %s", err.message);
        usleep(10 * 1000);
    }
    sleep(3); /* past ack_wait: nothing comes back */
    assert_int_equal(count_keys(e, "trig:batchy:"), 4);
    assert_int_equal(count_keys(e, "trig:batchy:a2"), 0);
    cbm_trigger_failures_free(f, nf);
    assert_int_equal(cbm_trigger_failures(e, "batchy", 0, &f, &nf, &err), 0);
    assert_int_equal(nf, 1);
    if (strstr(f[0].data, "\"x\"") == NULL) fail_msg("the refused message: %s", f[0].data);
    printf("# refused: %s\n", f[0].reason);
    cbm_trigger_failures_free(f, nf);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    cbm_bus_destroy(bus);
    cbm_engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_and_approval_reach_a_loaded_execution),
        cmocka_unit_test(test_a_bad_input_in_a_batch),
    };
    int rc;

    nats_url = getenv("CEREBELUM_TEST_NATS_URL");
    if (nats_url == NULL || nats_url[0] == '\0') {
        printf("CEREBELUM_TEST_NATS_URL unset: skipped\n");
        return TESTDB_SKIP;
    }
    if (testdb_create(url, sizeof(url)) != 0) {
        printf("no test database (CEREBELUM_TEST_DATABASE_URL): skipped\n");
        return TESTDB_SKIP;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    nats_Close();
    testdb_drop(url);
    return rc;
}
