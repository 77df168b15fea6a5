/*
 * test_server_embed.c - a program that embeds the engine and serves remote
 * workers itself, through cerebelum/server.h, with no `cerebelum` binary
 * (issue 10). Only the public headers are used, and the public shared
 * library is linked, as a user's program would be.
 *
 * The blueprint mixes a local step, a step on the "gpu" queue (run by a
 * worker of the C worker SDK in this process, over real gRPC on loopback)
 * and a local step after it. The WorkflowService is served too (a client of
 * cerebelum/client.h reads an execution). Also: the call order the header
 * promises is enforced, and a graceful stop with the worker still polling.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cerebelum/cerebelum.h"
#include "cerebelum/client.h"
#include "cerebelum/server.h"
#include "cerebelum/worker.h"
#include "tests/harness/testdb.h"

static char url[512];

static const char *BP =
    "{\"name\":\"embed\",\"steps\":["
    "{\"name\":\"prep\",\"handler\":\"prep\"},"
    "{\"name\":\"infer\",\"queue\":\"gpu\",\"handler\":\"infer\",\"depends_on\":[\"prep\"]},"
    "{\"name\":\"post\",\"handler\":\"post\",\"depends_on\":[\"infer\"]}]}";

static void h_prep(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_ok(out, "{\"prepared\":true}");
}

static void h_post(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)arg;
    /* The remote step's result is in this step's input. */
    cbm_step_ok(out, strstr(call->input_json, "\"by\":\"worker\"") != NULL ? "\"seen\""
                                                                       : "\"missing\"");
}

/* On the worker, in this same process. */
static void h_infer(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_ok(out, "{\"by\":\"worker\"}");
}

static cbm_engine_t *engine(void)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    o.database_url = url;
    assert_int_equal(cbm_engine_create(&e, &o, &err), 0);
    assert_int_equal(cbm_engine_register_step(e, "prep", h_prep, NULL), 0);
    assert_int_equal(cbm_engine_register_step(e, "post", h_post, NULL), 0);
    return e;
}

static cbm_worker_t *worker(const char *server)
{
    static const char *const queues[] = {"gpu"};
    cbm_worker_opts_t wo = {0};
    cbm_worker_t *w = NULL;
    cbm_error_t err = {0};
    wo.server = server;
    wo.token = "s3cret";
    wo.queues = queues;
    wo.nqueues = 1;
    wo.concurrency = 4;
    wo.poll_wait_ms = 2000;
    if (cbm_worker_create(&w, &wo, &err) != 0) fail_msg("worker: %s", err.message);
    assert_int_equal(cbm_worker_register_handler(w, "infer", h_infer, NULL), 0);
    if (cbm_worker_start(w, &err) != 0) fail_msg("worker start: %s", err.message);
    return w;
}

static void test_embedded_server_serves_workers(void **state)
{
    enum { N = 20 };
    cbm_engine_t *e = engine();
    cbm_server_t *srv = NULL;
    cbm_server_opts_t so = {0};
    cbm_worker_t *w;
    cbm_error_t err = {0};
    char ids[N][37];
    (void)state;

    so.listen = "127.0.0.1:0";
    so.token = "s3cret";
    so.drain_ms = 2000;
    if (cbm_server_create(&srv, e, &so, &err) != 0) fail_msg("server: %s", err.message);
    assert_null(cbm_server_address(srv));
    if (cbm_engine_start(e, &err) != 0) fail_msg("engine start: %s", err.message);
    if (cbm_server_start(srv, &err) != 0) fail_msg("server start: %s", err.message);
    assert_int_equal(cbm_server_start(srv, &err), CBM_ESTATE);
    assert_non_null(cbm_server_address(srv));
    assert_null(strstr(cbm_server_address(srv), ":0"));
    if (cbm_engine_register_blueprint(e, BP, NULL, &err) != 0) fail_msg("bp: %s", err.message);

    w = worker(cbm_server_address(srv));
    for (int i = 0; i < N; i++)
        if (cbm_execution_start(e, "embed", "{}", ids[i], &err) != 0) fail_msg("start: %s", err.message);
    for (int i = 0; i < N; i++) {
        cbm_execution_info_t *x = NULL;
        if (cbm_execution_wait(e, ids[i], 30000, &x, &err) != 0) fail_msg("wait: %s", err.message);
        assert_string_equal(x->status, "completed");
        if (strstr(x->result, "\"post\": \"seen\"") == NULL) fail_msg("result: %s", x->result);
        cbm_execution_info_free(x);
    }
    {
        cbm_worker_stats_t ws;
        cbm_worker_get_stats(w, &ws);
        assert_int_equal(ws.submitted, N);
    }

    /* The WorkflowService of the same server, with the token. */
    {
        cbm_client_t *c = NULL;
        cbm_client_opts_t co = {0};
        cbm_execution_info_t *x = NULL;
        co.token = "s3cret";
        assert_int_equal(cbm_client_connect(&c, cbm_server_address(srv), &co, &err), 0);
        if (cbm_client_get(c, ids[0], &x, NULL, &err) != 0) fail_msg("client get: %s", err.message);
        assert_string_equal(x->status, "completed");
        cbm_execution_info_free(x);
        co.token = "wrong";
        cbm_client_destroy(c);
        assert_int_equal(cbm_client_connect(&c, cbm_server_address(srv), &co, &err), 0);
        assert_int_not_equal(cbm_client_get(c, ids[0], &x, NULL, &err), 0);
        cbm_client_destroy(c);
    }

    /* A graceful stop while the worker's polls are parked: they are
     * answered, and the stop returns. */
    cbm_server_stop(srv);
    cbm_server_stop(srv); /* a no-op */
    cbm_worker_destroy(w);
    cbm_server_destroy(srv);
    cbm_engine_destroy(e);
}

static void test_call_order_and_options(void **state)
{
    cbm_engine_t *e = engine();
    cbm_server_t *srv = NULL;
    cbm_server_opts_t so = {0};
    cbm_error_t err = {0};
    (void)state;

    so.token = "";
    assert_int_equal(cbm_server_create(&srv, e, &so, &err), CBM_EINVAL);
    so.token = NULL;
    so.tls_cert_pem = "-----BEGIN CERTIFICATE-----";
    assert_int_equal(cbm_server_create(&srv, e, &so, &err), CBM_EINVAL);
    so.tls_cert_pem = NULL;
    /* Created and destroyed without ever serving. */
    assert_int_equal(cbm_server_create(&srv, e, &so, &err), 0);
    cbm_server_destroy(srv);
    srv = NULL;
    /* After the engine started: too late to hear of every task. */
    if (cbm_engine_start(e, &err) != 0) fail_msg("engine start: %s", err.message);
    assert_int_equal(cbm_server_create(&srv, e, &so, &err), CBM_ESTATE);
    assert_null(srv);
    cbm_server_destroy(NULL);
    cbm_engine_destroy(e);
}

static void test_address_in_use(void **state)
{
    cbm_engine_t *e1 = engine(), *e2 = engine();
    cbm_server_t *s1 = NULL, *s2 = NULL;
    cbm_server_opts_t so = {0};
    cbm_error_t err = {0};
    (void)state;

    so.listen = "127.0.0.1:0";
    assert_int_equal(cbm_server_create(&s1, e1, &so, &err), 0);
    assert_int_equal(cbm_engine_start(e1, &err), 0);
    assert_int_equal(cbm_server_start(s1, &err), 0);
    so.listen = cbm_server_address(s1);
    assert_int_equal(cbm_server_create(&s2, e2, &so, &err), 0);
    assert_int_equal(cbm_engine_start(e2, &err), 0);
    assert_int_equal(cbm_server_start(s2, &err), CBM_EIO);
    assert_null(cbm_server_address(s2));
    cbm_server_destroy(s2);
    cbm_server_destroy(s1);
    cbm_engine_destroy(e2);
    cbm_engine_destroy(e1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedded_server_serves_workers),
        cmocka_unit_test(test_call_order_and_options),
        cmocka_unit_test(test_address_in_use),
    };
    int rc;
    if (testdb_create(url, sizeof(url)) != 0) return TESTDB_SKIP;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(url);
    return rc;
}
