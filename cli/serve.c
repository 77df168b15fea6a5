/*
 * serve.c - `cerebelum serve`: option parsing and signals around the
 * library's server (cerebelum/server.h), over an embedded engine.
 *
 * With --nats URL (or $CEREBELUM_NATS_URL) the stored NATS triggers run
 * too (cerebelum/bus.h), started after the engine and the server and
 * stopped first, so no message is taken in that could not be started.
 *
 * Shutdown (SIGTERM or SIGINT): cbm_server_stop drains (new calls answered
 * UNAVAILABLE, calls in flight get up to 10 s to finish), then the engine
 * is destroyed, which lets its in-flight commits and running handlers
 * finish. A second signal exits at once with status 1.
 *
 * With --http ADDR (or $CEREBELUM_HTTP) the server also serves HTTP
 * (docs/http.md). With --log-format json (or $CEREBELUM_LOG_FORMAT=json)
 * every line this process writes on stderr is a JSON object (sdk-c/log.c),
 * its own lines ("serving on", errors) included.
 *
 * Signals are blocked in every thread (the engine's and the server's
 * inherit the mask) and taken by the main thread with sigwait; once the
 * first one came, they are unblocked in the main thread only, with a
 * handler that exits.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus/outbox.h"
#include "cbm_internal.h"
#include "cli.h"
#include "sdk-c/engine_remote.h"
#include "cerebelum/bus.h"
#include "cerebelum/server.h"
#ifdef CBM_HAVE_NATS
#include <nats/nats.h>
#endif

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

static void on_second_signal(int signum)
{
    static const char human[] = "cerebelum: second signal, exiting now\n";
    static const char json[] = "{\"time\":null,\"level\":\"warn\",\"component\":\"serve\","
                               "\"execution\":null,\"step\":null,"
                               "\"message\":\"second signal, exiting now\"}\n";
    const char *msg = cbm_log_is_json() ? json : human;
    size_t n = cbm_log_is_json() ? sizeof(json) - 1 : sizeof(human) - 1;
    (void)signum;
    if (write(STDERR_FILENO, msg, n) < 0) { /* nothing to do */ }
    _exit(CLI_REFUSED);
}

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

/* A line of serve's own on stderr: "cerebelum: TEXT", or a JSON object
 * (component "serve") with --log-format json. */
static void serve_line(const char *text)
{
    if (cbm_log_is_json()) cbm_log_write(CBM_LOG_INFO, "serve", NULL, NULL, text);
    else fprintf(stderr, "cerebelum: %s\n", text);
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
    cbm_server_opts_t so = {0};
    cbm_engine_t *engine = NULL;
    cbm_server_t *srv = NULL;
    cbm_bus_t *bus = NULL;
    bus_outbox_t *outbox = NULL;
    const char *nats = env_or(o->nats_url, "CEREBELUM_NATS_URL", NULL);
    const char *http = env_or(o->http_listen, "CEREBELUM_HTTP", NULL);
    const char *log_format = env_or(o->log_format, "CEREBELUM_LOG_FORMAT", "human");
    char line[1200];
    cbm_error_t err = {0};
    sigset_t sigs;
    int rc = CLI_REFUSED, signum = 0;

    if (strcmp(log_format, "json") == 0) {
        cbm_log_set_json(true);
    } else if (strcmp(log_format, "human") == 0) {
        cbm_log_set_json(false);
    } else {
        cli_errorf("--log-format %s: want human or json", log_format);
        return CLI_USAGE;
    }
    if (http != NULL && !cbm_server_http_available()) {
        cli_errorf("--http: this cerebelum was built without HTTP (libmicrohttpd-dev)");
        return CLI_USAGE;
    }
    if (http != NULL && http[0] == '\0') {
        cli_errorf("--http is empty (want HOST:PORT, e.g. 127.0.0.1:8233)");
        return CLI_USAGE;
    }
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
    if (nats != NULL && !cbm_bus_available()) {
        cli_errorf("--nats: this cerebelum was built without NATS (libnats-dev)");
        rc = CLI_USAGE;
        goto free_pem;
    }

    /* Before any thread exists: every thread inherits the mask. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
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
        goto destroy;
    }
    so.listen = listen;
    so.token = token;
    so.tls_cert_pem = cert;
    so.tls_key_pem = key;
    so.tls_client_ca_pem = client_ca;
    so.max_message_bytes = o->max_message_bytes;
    so.http_listen = http;
    if (cbm_server_create(&srv, engine, &so, &err) != 0) {
        cli_errorf("cannot create the server: %s", err.message);
        goto destroy;
    }
    if (cbm_engine_start(engine, &err) != 0) {
        cli_errorf("cannot start the engine: %s", err.message);
        goto destroy;
    }
    if (cbm_server_start(srv, &err) != 0) {
        cli_errorf("cannot listen on %s%s%s: %s", listen, http != NULL ? " or " : "",
                   http != NULL ? http : "", err.message);
        goto destroy;
    }
    if (nats != NULL) {
        cbm_bus_opts_t bo = {.url = nats};
        if (cbm_bus_create(&bus, engine, &bo, &err) != 0) {
            cli_errorf("cannot start the NATS triggers: %s", err.message);
            cbm_server_stop(srv);
            goto destroy;
        }
        /* The outbox: this database's decisions write their lifecycle
         * events as rows from now on (whoever decides), and this process
         * publishes them while it holds the database's publisher lock. */
        bus_outbox_config_t oc = {.db_url = cbm__engine_url(engine), .nats_url = nats,
                                  .configure = true};
        if (bus_outbox_start(&oc, &outbox, &err) != 0) {
            cli_errorf("cannot start the outbox publisher: %s", err.message);
            cbm_server_stop(srv);
            goto destroy;
        }
    }
    snprintf(line, sizeof(line), "serving on %s%s%s%s%s%s%s", cbm_server_address(srv),
             cert != NULL ? " (TLS)" : "", token != NULL ? " (token required)" : "",
             nats != NULL ? ", triggers on " : "", nats != NULL ? nats : "",
             http != NULL ? ", HTTP on " : "", http != NULL ? cbm_server_http_address(srv) : "");
    serve_line(line);

    while (sigwait(&sigs, &signum) != 0) {}
    serve_line(signum == SIGTERM ? "SIGTERM received, shutting down"
                                 : "SIGINT received, shutting down");
    signal(SIGTERM, on_second_signal);
    signal(SIGINT, on_second_signal);
    pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
    cbm_bus_destroy(bus);
    bus = NULL;
    bus_outbox_stop(outbox);
    outbox = NULL;
    cbm_server_stop(srv);
    rc = CLI_OK;
destroy:
    cbm_bus_destroy(bus);
    bus_outbox_stop(outbox);
#ifdef CBM_HAVE_NATS
    if (nats != NULL) nats_Close();
#endif
    cbm_server_destroy(srv);
    cbm_engine_destroy(engine);
    if (rc == CLI_OK) serve_line("stopped");
free_pem:
    free(cert);
    free(key);
    free(client_ca);
    return rc;
}
