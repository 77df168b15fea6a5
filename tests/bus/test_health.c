/*
 * test_health.c - the server's health answer over real gRPC (GetHealth,
 * server/health.h): an embedded engine serving on loopback, a client of
 * cerebelum/client.h asking. The store reachable; a stored trigger that no
 * serve ever ran, one whose report is fresh and one whose consumer had not
 * fetched for three fetch waits (stale); the outbox off, then on with rows
 * that no publisher takes (stale past a threshold, with the reason). Needs
 * PostgreSQL only: the health is read from the database, whichever process
 * runs the bus.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cerebelum/bus.h"
#include "cerebelum/cerebelum.h"
#include "cerebelum/client.h"
#include "cerebelum/server.h"
#include "sdk-c/engine_internal.h"
#include "tests/harness/testdb.h"

static char url[512];

#define TRIGGER(name)                                                                          \
    "{\"name\": \"" name "\", \"stream\": \"S\", \"consumer\": \"" name "\", \"subject\": "    \
    "\"s." name "\", \"blueprint\": \"h.flow\", \"wait_ms\": 200}"

static void h_prep(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_ok(out, "{}");
}

static const cbm_health_check_t *check_of(const cbm_health_t *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->checks[i].name, name) == 0) return &h->checks[i];
    fail_msg("no check '%s' in the health answer", name);
    return NULL;
}

static cbm_health_t *health(cbm_client_t *c, int64_t threshold_ms)
{
    cbm_health_t *h = NULL;
    cbm_error_t err = {0};
    if (cbm_client_health(c, threshold_ms, &h, &err) != 0) fail_msg("GetHealth: %s", err.message);
    for (size_t i = 0; i < h->n; i++)
        printf("# %-6s %-20s %s\n", h->checks[i].ok ? "OK" : "NOT OK", h->checks[i].name,
               h->checks[i].detail);
    return h;
}

static void expect(const cbm_health_t *h, const char *name, int ok, const char *detail_has)
{
    const cbm_health_check_t *c = check_of(h, name);
    if (c->ok != ok) fail_msg("%s: ok %d, want %d (%s)", name, c->ok, ok, c->detail);
    if (detail_has != NULL && strstr(c->detail, detail_has) == NULL)
        fail_msg("%s: detail '%s' does not say '%s'", name, c->detail, detail_has);
}

static void report(cbm_engine_t *e, const char *trigger, int64_t last_fetch_ms_ago,
                   const char *state, const char *error)
{
    store_trigger_health_t r = {0};
    cbm_error_t err = {0};
    r.trigger = (char *)trigger;
    r.process = (char *)"test:1";
    r.state = (char *)state;
    r.error = (char *)error;
    r.wait_ms = 200;
    r.last_fetch_ms_ago = last_fetch_ms_ago;
    r.messages = 3;
    if (cbm__trigger_health_put(e, &r, &err) != 0) fail_msg("report: %s", err.message);
}

static void test_health_over_grpc(void **state)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t eo = {0};
    cbm_server_t *srv = NULL;
    cbm_server_opts_t so = {0};
    cbm_client_t *c = NULL;
    cbm_client_opts_t co = {0};
    cbm_error_t err = {0};
    cbm_health_t *h;
    char id[37];
    (void)state;

    eo.database_url = url;
    assert_int_equal(cbm_engine_create(&e, &eo, &err), 0);
    assert_int_equal(cbm_engine_register_step(e, "prep", h_prep, NULL), 0);
    so.listen = "127.0.0.1:0";
    if (cbm_server_create(&srv, e, &so, &err) != 0) fail_msg("server: %s", err.message);
    if (cbm_engine_start(e, &err) != 0) fail_msg("engine start: %s", err.message);
    if (cbm_server_start(srv, &err) != 0) fail_msg("server start: %s", err.message);
    assert_int_equal(cbm_client_connect(&c, cbm_server_address(srv), &co, &err), 0);
    assert_int_equal(cbm_client_health(c, -1, &h, &err), CBM_EINVAL);
    assert_null(h);

    /* Nothing stored, the outbox off: healthy. */
    h = health(c, 0);
    assert_true(h->ok);
    assert_int_equal(h->n, 2);
    assert_string_equal(h->checks[0].name, "store");
    expect(h, "store", 1, "reachable");
    expect(h, "outbox", 1, "off");
    cbm_health_free(h);

    /* A trigger no serve --nats ever ran; one running; one stale; one in error. */
    if (cbm_trigger_put(e, TRIGGER("never"), NULL, NULL, &err) != 0) fail_msg("put: %s", err.message);
    if (cbm_trigger_put(e, TRIGGER("fresh"), NULL, NULL, &err) != 0) fail_msg("put: %s", err.message);
    if (cbm_trigger_put(e, TRIGGER("stale"), NULL, NULL, &err) != 0) fail_msg("put: %s", err.message);
    if (cbm_trigger_put(e, TRIGGER("broken"), NULL, NULL, &err) != 0) fail_msg("put: %s", err.message);
    report(e, "fresh", 50, "fetching", NULL);
    report(e, "stale", 5000, "fetching", NULL); /* 5 s without a fetch; 3 waits are 0.6 s */
    report(e, "broken", 50, "error", "stream not found");
    h = health(c, 0);
    assert_false(h->ok);
    assert_int_equal(h->n, 6);
    expect(h, "store", 1, NULL);
    expect(h, "trigger never", 0, "not running");
    expect(h, "trigger fresh", 1, "fetching");
    expect(h, "trigger stale", 0, "stale: its consumer has not fetched for");
    expect(h, "trigger broken", 0, "error: stream not found");
    expect(h, "outbox", 1, NULL);
    cbm_health_free(h);
    assert_int_equal(cbm_trigger_delete(e, "never", &err), 0);
    assert_int_equal(cbm_trigger_delete(e, "stale", &err), 0);
    assert_int_equal(cbm_trigger_delete(e, "broken", &err), 0);
    h = health(c, 0);
    assert_true(h->ok);
    cbm_health_free(h);

    /* The outbox on, rows written, no publisher: stale past the threshold. */
    assert_int_equal(testdb_exec(url, "INSERT INTO cbm_outbox_config DEFAULT VALUES"), 0);
    if (cbm_engine_register_blueprint(e, "{\"name\":\"h.flow\",\"steps\":[{\"name\":\"prep\"}]}",
                                      NULL, &err) != 0)
        fail_msg("register: %s", err.message);
    if (cbm_execution_start(e, "h.flow", "{}", id, &err) != 0) fail_msg("start: %s", err.message);
    {
        cbm_execution_info_t *x = NULL;
        if (cbm_execution_wait(e, id, 30000, &x, &err) != 0) fail_msg("wait: %s", err.message);
        cbm_execution_info_free(x);
    }
    usleep(300 * 1000);
    h = health(c, 0); /* 60 s: young rows are fine */
    assert_true(h->ok);
    expect(h, "outbox", 1, "rows waiting");
    cbm_health_free(h);
    h = health(c, 100);
    assert_false(h->ok);
    expect(h, "trigger fresh", 1, NULL);
    expect(h, "outbox", 0, "STALE: ");
    expect(h, "outbox", 0, "is a publisher (serve --nats) running");
    cbm_health_free(h);

    cbm_client_destroy(c);
    cbm_server_stop(srv);
    cbm_server_destroy(srv);
    cbm_engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_over_grpc),
    };
    int rc;

    if (testdb_create(url, sizeof(url)) != 0) {
        printf("no test database (CEREBELUM_TEST_DATABASE_URL): skipped\n");
        return TESTDB_SKIP;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(url);
    return rc;
}
