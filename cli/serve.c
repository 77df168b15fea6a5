/*
 * serve.c - `cerebelum serve`: an embedded engine behind the gRPC server.
 *
 * Two loops. The engine runs its own loop on its own thread
 * (cbm_engine_start); the gRPC server runs on a second uv loop here, on the
 * main thread, and reaches the engine only through the public API, from the
 * thread pool (service.c). Keeping them apart means a slow RPC can never
 * stall the engine's loop, at the price of a thread hop per call.
 *
 * Shutdown (SIGTERM or SIGINT): new calls are answered UNAVAILABLE, calls in
 * flight get up to DRAIN_MS to finish and reply; then the server stops
 * (rpc_server_shutdown cancels what is left), the loop waits for the last
 * jobs (an engine call cannot be interrupted), and the engine is destroyed,
 * which lets its in-flight commits and running handlers finish. A second
 * signal exits at once with status 1.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "service.h"
#include "worker_service.h"

#define DRAIN_MS 10000

typedef struct server {
    uv_loop_t loop;
    svc_t svc;
    rpc_server_t *rpc;
    uv_signal_t sigterm, sigint;
    uv_timer_t drain_timer;
    int stopping;      /* a signal came */
    int rpc_down;      /* rpc_server_shutdown was called */
    int rpc_closed;    /* ... and has finished */
    int closed;        /* handles closed */
} server_t;

/* ---- demo handlers (--demo-handlers, for tests only) ----------------------- */

/* "echo": the step's result is its input document. */
static void demo_echo(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cbm_step_ok(out, call->input_json);
}

/* "fail": fails, not retryable, with kind "demo". */
static void demo_fail(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cbm_step_fail(out, "demo", "the demo handler 'fail' always fails", false);
}

/* ---- shutdown ---------------------------------------------------------------- */

static void close_handles(server_t *s)
{
    if (s->closed) return;
    s->closed = 1;
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->drain_timer, NULL);
    wsvc_close(s->svc.ws);
}

/* Done when the server has stopped and no job is left: closing the last
 * handles lets uv_run return. */
static void maybe_done(server_t *s)
{
    if (s->rpc_closed && s->svc.inflight == 0) close_handles(s);
}

static void on_rpc_closed(rpc_server_t *srv, void *data)
{
    server_t *s = data;
    s->rpc_closed = 1;
    maybe_done(s);
}

static void stop_rpc(server_t *s)
{
    if (s->rpc_down) return;
    s->rpc_down = 1;
    uv_timer_stop(&s->drain_timer);
    rpc_server_shutdown(s->rpc, on_rpc_closed, s);
}

static void on_idle(svc_t *svc)
{
    server_t *s = svc->data;
    if (!s->rpc_down) stop_rpc(s);
    else maybe_done(s);
}

static void on_drain_timeout(uv_timer_t *t)
{
    server_t *s = t->data;
    fprintf(stderr, "cerebelum: %d call(s) still running after %d ms; stopping anyway\n",
            s->svc.inflight, DRAIN_MS);
    stop_rpc(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
    server_t *s = h->data;

    if (s->stopping) {
        fprintf(stderr, "cerebelum: second signal, exiting now\n");
        _exit(CLI_REFUSED);
    }
    s->stopping = 1;
    fprintf(stderr, "cerebelum: %s received, shutting down\n",
            signum == SIGTERM ? "SIGTERM" : "SIGINT");
    uv_timer_start(&s->drain_timer, on_drain_timeout, DRAIN_MS, 0);
    wsvc_drain(s->svc.ws);
    svc_drain(&s->svc, on_idle);
}

/* ---- start-up ---------------------------------------------------------------- */

/* Read a PEM file named by an option; NULL path: NULL, no error. */
static int read_pem(const char *what, const char *path, char **out)
{
    *out = NULL;
    if (path == NULL) return 0;
    if ((*out = cli_read_file(path)) == NULL) {
        cli_errorf("cannot read %s %s: %s", what, path, strerror(errno));
        return -1;
    }
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

static const char *env_or(const char *flag, const char *env, const char *dflt)
{
    const char *v;
    if (flag != NULL) return flag;
    v = getenv(env);
    return v != NULL && v[0] != '\0' ? v : dflt;
}

int cli_serve(const cli_opts_t *o)
{
    const char *listen = env_or(o->listen, "CEREBELUM_LISTEN", "127.0.0.1:7233");
    const char *token = env_or(o->token, "CEREBELUM_TOKEN", NULL);
    char *cert = NULL, *key = NULL, *client_ca = NULL;
    cbm_engine_opts_t eo = {0};
    rpc_server_options_t ro = {0};
    cbm_engine_t *engine = NULL;
    wsvc_t *ws = NULL;
    server_t s;
    cbm_error_t err = {0};
    char addr[512];
    int rc = CLI_REFUSED;

    memset(&s, 0, sizeof(s));
    if (o->token != NULL && o->token[0] == '\0') {
        /* Not "no token": a server that was meant to require one. */
        cli_errorf("--token is empty (leave it out to serve without a token)");
        return CLI_USAGE;
    }
    if (read_pem("--tls-cert", env_or(o->tls_cert, "CEREBELUM_TLS_CERT", NULL), &cert) != 0 ||
        read_pem("--tls-key", env_or(o->tls_key, "CEREBELUM_TLS_KEY", NULL), &key) != 0 ||
        read_pem("--tls-client-ca", env_or(o->tls_client_ca, "CEREBELUM_TLS_CLIENT_CA", NULL),
                 &client_ca) != 0) {
        rc = CLI_USAGE;
        goto free_pem;
    }
    if ((cert == NULL) != (key == NULL) || (client_ca != NULL && cert == NULL)) {
        cli_errorf("TLS needs both --tls-cert and --tls-key (and --tls-client-ca needs them too)");
        rc = CLI_USAGE;
        goto free_pem;
    }

    /* RPC jobs share libuv's pool with the engine's step handlers; give it
     * room for both (it is sized on first use, unless the user chose). */
    setenv("UV_THREADPOOL_SIZE", "16", 0);
    signal(SIGPIPE, SIG_IGN);

    /* The engine: the database URL (flag, then CEREBELUM_DATABASE_URL, which
     * the engine reads itself), else its private PostgreSQL in the state dir. */
    eo.database_url = o->database_url;
    eo.state_dir = o->state_dir;
    if (cbm_engine_create(&engine, &eo, &err) != 0) {
        cli_errorf("cannot create the engine: %s", err.message);
        goto free_pem;
    }
    if (o->demo_handlers && (cbm_engine_register_step(engine, "echo", demo_echo, NULL) != 0 ||
                             cbm_engine_register_step(engine, "fail", demo_fail, NULL) != 0)) {
        cli_errorf("cannot register the demo handlers");
        goto destroy_engine;
    }
    if (uv_loop_init(&s.loop) != 0) {
        cli_errorf("cannot create an event loop");
        goto destroy_engine;
    }
    s.svc.loop = &s.loop;
    s.svc.engine = engine;
    s.svc.data = &s;
    /* The WorkerService hooks into the engine before it starts (it is told
     * of every remote task the engine commits), and opens its own store
     * connections once the engine knows its database. */
    if (wsvc_create(&s.loop, engine, &s.svc, NULL, &ws, &err) != 0) {
        cli_errorf("cannot create the worker service: %s", err.message);
        goto close_loop_early;
    }
    if (cbm_engine_start(engine, &err) != 0) {
        cli_errorf("cannot start the engine: %s", err.message);
        goto close_loop_early;
    }
    if (wsvc_start(ws, &err) != 0) {
        cli_errorf("cannot open the task store: %s", err.message);
        goto close_loop_early;
    }
    ro.listen_addr = listen;
    ro.tls_cert_pem = cert;
    ro.tls_key_pem = key;
    ro.tls_client_ca_pem = client_ca;
    ro.token = token;
    ro.max_message_bytes = o->max_message_bytes;
    svc_install(&s.svc, &ro);
    wsvc_install(ws, &ro);
    if (rpc_server_create(&s.loop, &ro, &s.rpc, &err) != 0) {
        cli_errorf("cannot listen on %s: %s", listen, err.message);
        goto close_loop_early;
    }
    uv_signal_init(&s.loop, &s.sigterm);
    uv_signal_init(&s.loop, &s.sigint);
    uv_timer_init(&s.loop, &s.drain_timer);
    s.sigterm.data = s.sigint.data = s.drain_timer.data = &s;
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    uv_signal_start(&s.sigint, on_signal, SIGINT);

    bound_address(listen, rpc_server_port(s.rpc), addr, sizeof(addr));
    fprintf(stderr, "cerebelum: serving on %s%s%s\n", addr, cert != NULL ? " (TLS)" : "",
            token != NULL ? " (token required)" : "");

    uv_run(&s.loop, UV_RUN_DEFAULT);
    rpc_server_destroy(s.rpc);
    rc = CLI_OK;
    goto close_loop;
close_loop_early:
    wsvc_close(ws); /* a failed start: close what was opened */
    uv_run(&s.loop, UV_RUN_DEFAULT);
close_loop:
    if (uv_loop_close(&s.loop) != 0) {
        cli_errorf("internal error: handles left open at exit");
        rc = CLI_REFUSED;
    }
destroy_engine:
    cbm_engine_destroy(engine);
    /* After the engine: its thread may tell the service of tasks until it stops. */
    wsvc_destroy(ws);
    if (rc == CLI_OK) fprintf(stderr, "cerebelum: stopped\n");
free_pem:
    free(cert);
    free(key);
    free(client_ca);
    return rc;
}
