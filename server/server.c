/*
 * server.c - cbm_server_* (cerebelum/server.h): the WorkflowService
 * (workflow_service.c) and the WorkerService (worker_service.c,
 * ws_polls.c) of an embedded engine, behind the gRPC transport, on a thread
 * and a uv loop of the server's own. `cerebelum serve` is this plus option
 * parsing and signals (cli/serve.c).
 *
 * Two loops. The engine runs its loop on its own thread; the server's loop
 * reaches the engine through the public API, from the thread pool, except
 * for SubmitResult, which is posted into the engine's inbox and answered
 * from the commit through a mailbox (worker_service.c, on_results), with no
 * thread waiting. Keeping the loops apart means a slow RPC can never stall
 * the engine's loop, at the price of a thread hop per call (issue 10 moves
 * the services onto the engine's loop; this file is where that happens).
 *
 * Stopping (cbm_server_stop, from any other thread): a uv_async asks the
 * loop to drain: new calls are answered UNAVAILABLE, parked polls answered,
 * calls in flight get drain_ms to finish and reply; then the transport shuts
 * down (cancelling what is left), the loop waits for its last jobs (an
 * engine call cannot be interrupted), closes its handles and returns; the
 * caller joins the thread.
 */
#include "cerebelum/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cbm_internal.h"
#include "engine_remote.h"
#include "grpc_transport.h"
#include "http.h"
#include "worker_service.h"
#include "workflow_service.h"

#define DEFAULT_LISTEN "127.0.0.1:7233"
#define DEFAULT_DRAIN_MS 10000

enum { SRV_CREATED, SRV_RUNNING, SRV_STOPPED };

struct cbm_server {
    cbm_engine_t *engine;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t stop_async;     /* cbm_server_stop -> the loop */
    uv_timer_t drain_timer;
    svc_t svc;
    wsvc_t *ws;
    rpc_server_t *rpc;
    char *listen, *token, *cert, *key, *client_ca;
    char *http_listen;         /* NULL: no HTTP */
    http_srv_t *http;          /* running while the server runs */
    http_workers_t hw;         /* the HTTP threads' way to the loop */
    int hw_ready;
    size_t max_message_bytes;
    int drain_ms;
    int state;
    char address[512];
    /* cbm_server_start: the transport is created on the loop's thread (it
     * checks that it is called there), which reports back. */
    rpc_server_options_t ro;
    uv_mutex_t mu;
    uv_cond_t cv;
    int created;       /* guarded by mu: rpc_server_create has returned */
    int create_rc;
    cbm_error_t create_err;
    /* Loop thread only, once running. */
    int draining;      /* a stop was asked */
    int rpc_down;      /* rpc_server_shutdown was called */
    int rpc_closed;    /* ... and has finished */
    int closed;        /* handles closed */
};

/* ---- stopping (loop thread) ---------------------------------------------- */

static void close_handles(cbm_server_t *s)
{
    if (s->closed) return;
    s->closed = 1;
    uv_close((uv_handle_t *)&s->stop_async, NULL);
    uv_close((uv_handle_t *)&s->drain_timer, NULL);
    if (s->hw_ready) http_workers_close(&s->hw);
    wsvc_close(s->ws);
}

/* Done when the transport has stopped and no job is left: closing the last
 * handles lets uv_run return. */
static void maybe_done(cbm_server_t *s)
{
    if (s->rpc_closed && s->svc.inflight == 0) close_handles(s);
}

static void on_rpc_closed(rpc_server_t *rpc, void *data)
{
    cbm_server_t *s = data;
    (void)rpc;
    s->rpc_closed = 1;
    maybe_done(s);
}

static void stop_rpc(cbm_server_t *s)
{
    if (s->rpc_down) return;
    s->rpc_down = 1;
    uv_timer_stop(&s->drain_timer);
    rpc_server_shutdown(s->rpc, on_rpc_closed, s);
}

static void on_idle(svc_t *svc)
{
    cbm_server_t *s = svc->data;
    if (!s->rpc_down) stop_rpc(s);
    else maybe_done(s);
}

static void on_drain_timeout(uv_timer_t *t)
{
    cbm_server_t *s = t->data;
    cbm_log_warn("server: %d call(s) still running after %d ms; stopping anyway", s->svc.inflight,
                 s->drain_ms);
    stop_rpc(s);
}

static void on_stop(uv_async_t *h)
{
    cbm_server_t *s = h->data;
    if (s->draining) return;
    s->draining = 1;
    uv_timer_start(&s->drain_timer, on_drain_timeout, (uint64_t)s->drain_ms, 0);
    wsvc_drain(s->ws);
    svc_drain(&s->svc, on_idle);
}

static void loop_main(void *arg)
{
    cbm_server_t *s = arg;
    int rc = rpc_server_create(&s->loop, &s->ro, &s->rpc, &s->create_err);
    uv_mutex_lock(&s->mu);
    s->create_rc = rc;
    s->created = 1;
    uv_cond_signal(&s->cv);
    uv_mutex_unlock(&s->mu);
    if (rc == 0) uv_run(&s->loop, UV_RUN_DEFAULT);
}

/* ---- public ------------------------------------------------------------- */

static char *dup_opt(const char *v, int *bad)
{
    char *d = cbm_strdup(v);
    if (v != NULL && d == NULL) *bad = 1;
    return d;
}

static void free_opts(cbm_server_t *s)
{
    free(s->listen);
    free(s->token);
    free(s->cert);
    if (s->key != NULL) { /* a private key: not left in freed memory */
        memset(s->key, 0, strlen(s->key));
        free(s->key);
    }
    free(s->client_ca);
    free(s->http_listen);
}

int cbm_server_create(cbm_server_t **out, cbm_engine_t *engine, const cbm_server_opts_t *opts,
                      cbm_error_t *err)
{
    static const cbm_server_opts_t none = {0};
    wsvc_opts_t wo = {0};
    cbm_server_t *s;
    int bad = 0, rc;

    if (out == NULL || engine == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    *out = NULL;
    if (opts == NULL) opts = &none;
    if (cbm__engine_url(engine) != NULL)
        return cbm_error_set(err, CBM_ESTATE,
                             "create the server before cbm_engine_start: the worker service must "
                             "hear of every remote task from the first");
    if (opts->token != NULL && opts->token[0] == '\0')
        return cbm_error_set(err, CBM_EINVAL, "empty token (NULL serves without one)");
    if ((opts->tls_cert_pem == NULL) != (opts->tls_key_pem == NULL) ||
        (opts->tls_client_ca_pem != NULL && opts->tls_cert_pem == NULL))
        return cbm_error_set(err, CBM_EINVAL, "TLS needs both a certificate and its key (and a "
                                              "client CA needs them too)");
    if ((rc = cbm_str_check(opts->token, "token", err)) != 0) return rc;
    if (opts->http_listen != NULL && opts->http_listen[0] == '\0')
        return cbm_error_set(err, CBM_EINVAL, "empty http_listen (NULL serves no HTTP)");
    if (opts->http_listen != NULL && !http_available())
        return cbm_error_set(err, CBM_EINVAL,
                             "http_listen: this build has no HTTP (libmicrohttpd-dev)");
    if ((s = calloc(1, sizeof(*s))) == NULL) return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    s->engine = engine;
    s->listen = dup_opt(opts->listen != NULL ? opts->listen : DEFAULT_LISTEN, &bad);
    s->token = dup_opt(opts->token, &bad);
    s->cert = dup_opt(opts->tls_cert_pem, &bad);
    s->key = dup_opt(opts->tls_key_pem, &bad);
    s->client_ca = dup_opt(opts->tls_client_ca_pem, &bad);
    s->http_listen = dup_opt(opts->http_listen, &bad);
    s->max_message_bytes = opts->max_message_bytes;
    s->drain_ms = opts->drain_ms > 0 ? opts->drain_ms : DEFAULT_DRAIN_MS;
    if (bad || uv_loop_init(&s->loop) != 0) {
        free_opts(s);
        free(s);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    uv_mutex_init(&s->mu);
    uv_cond_init(&s->cv);
    s->svc.loop = &s->loop;
    s->svc.engine = engine;
    s->svc.data = s;
    wo.lease_ms = opts->lease_ms;
    /* It hooks into the engine now (told of every remote task the engine
     * commits), and opens its store connections at start. */
    if ((rc = wsvc_create(&s->loop, engine, &s->svc, &wo, &s->ws, err)) != 0) {
        uv_cond_destroy(&s->cv);
        uv_mutex_destroy(&s->mu);
        uv_loop_close(&s->loop);
        free_opts(s);
        free(s);
        return rc;
    }
    s->state = SRV_CREATED;
    *out = s;
    return 0;
}

/* "host:0" -> "host:<bound port>"; other addresses unchanged. */
static void bound_address(const char *listen, int port, char *out, size_t cap)
{
    const char *colon = strrchr(listen, ':');
    if (strncmp(listen, "unix:", 5) == 0 || colon == NULL)
        snprintf(out, cap, "%s", listen);
    else
        snprintf(out, cap, "%.*s:%d", (int)(colon - listen), listen, port);
}

int cbm_server_start(cbm_server_t *s, cbm_error_t *err)
{
    int rc;

    if (s == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL server");
    if (s->state != SRV_CREATED || s->created)
        return cbm_error_set(err, CBM_ESTATE, "server already started");
    if ((rc = wsvc_start(s->ws, err)) != 0) return rc;
    memset(&s->ro, 0, sizeof(s->ro));
    s->ro.listen_addr = s->listen;
    s->ro.tls_cert_pem = s->cert;
    s->ro.tls_key_pem = s->key;
    s->ro.tls_client_ca_pem = s->client_ca;
    s->ro.token = s->token;
    s->ro.max_message_bytes = s->max_message_bytes;
    svc_install(&s->svc, &s->ro);
    wsvc_install(s->ws, &s->ro);
    uv_async_init(&s->loop, &s->stop_async, on_stop);
    uv_timer_init(&s->loop, &s->drain_timer);
    s->stop_async.data = s->drain_timer.data = s;
    if (s->http_listen != NULL) {
        if (http_workers_init(&s->hw, &s->loop, s->ws) != 0) {
            close_handles(s);
            uv_run(&s->loop, UV_RUN_DEFAULT);
            return cbm_error_set(err, CBM_ENOMEM, "cannot set up the HTTP side");
        }
        s->hw_ready = 1;
    }
    if (uv_thread_create(&s->thread, loop_main, s) != 0) {
        s->created = 1;
        s->create_rc = cbm_error_set(&s->create_err, CBM_ENOMEM, "cannot start the server's thread");
    } else {
        uv_mutex_lock(&s->mu);
        while (!s->created) uv_cond_wait(&s->cv, &s->mu);
        uv_mutex_unlock(&s->mu);
        if (s->create_rc != 0) uv_thread_join(&s->thread);
    }
    if ((rc = s->create_rc) != 0) {
        /* Nothing runs the loop: close its handles here (the worker
         * service's timers run since wsvc_start); destroy frees. */
        close_handles(s);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        if (err != NULL) *err = s->create_err;
        return rc;
    }
    bound_address(s->listen, rpc_server_port(s->rpc), s->address, sizeof(s->address));
    s->state = SRV_RUNNING;
    if (s->http_listen != NULL) {
        http_opts_t ho = {.listen = s->http_listen, .token = s->token, .cert_pem = s->cert,
                          .key_pem = s->key, .max_body = s->max_message_bytes,
                          .engine = s->engine, .workers = &s->hw};
        if ((rc = http_start(&ho, &s->http, err)) != 0) {
            cbm_server_stop(s);
            return rc;
        }
    }
    return 0;
}

const char *cbm_server_http_address(const cbm_server_t *s)
{
    return s != NULL && s->state == SRV_RUNNING ? http_address(s->http) : NULL;
}

bool cbm_server_http_available(void)
{
    return http_available();
}

const char *cbm_server_address(const cbm_server_t *s)
{
    return s != NULL && s->state != SRV_CREATED && s->address[0] != '\0' ? s->address : NULL;
}

void cbm_server_stop(cbm_server_t *s)
{
    if (s == NULL || s->state != SRV_RUNNING) return;
    /* HTTP first: its threads may be waiting on the loop (workers). */
    http_stop(s->http);
    s->http = NULL;
    uv_async_send(&s->stop_async);
    uv_thread_join(&s->thread);
    rpc_server_destroy(s->rpc);
    s->rpc = NULL;
    s->state = SRV_STOPPED;
}

void cbm_server_destroy(cbm_server_t *s)
{
    if (s == NULL) return;
    cbm_server_stop(s);
    if (s->state == SRV_CREATED || s->rpc == NULL) {
        /* Never served (or stopped): close what is still open. */
        if (!s->closed) {
            s->closed = 1;
            wsvc_close(s->ws);
        }
        uv_run(&s->loop, UV_RUN_DEFAULT);
    }
    if (uv_loop_close(&s->loop) != 0) cbm_log_error("server: handles left open at exit");
    if (s->hw_ready) http_workers_finish(&s->hw);
    uv_cond_destroy(&s->cv);
    uv_mutex_destroy(&s->mu);
    /* From here the engine tells this server of no more tasks. */
    cbm__engine_clear_tasks_hook(s->engine);
    wsvc_destroy(s->ws);
    free_opts(s);
    free(s);
}
