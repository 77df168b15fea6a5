/*
 * cli.h - private header of the `cerebelum` program: the parsed command line,
 * exit codes, and the entry points of its parts.
 *
 *   main.c      command-line parsing, usage, dispatch
 *   commands.c  the client commands, on the public client (cerebelum/client.h)
 *   format.c    human-readable and --json output of executions and events
 *   deliberation.c  `deliberation show`: the LLM calls of deliberations
 *   serve.c     `cerebelum serve`: the engine, the gRPC server, signals
 *   bus.c       `trigger put|list|rm|failures`, `bus`, `publish` (NATS)
 *   engines.c   `engines`: the engines on a database and their shards
 *   service.c   the WorkflowService handlers of the server
 */
#ifndef CBM_CLI_H
#define CBM_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cerebelum/cerebelum.h"
#include "cerebelum/client.h"

/* Exit codes (docs/cli.md). */
enum {
    CLI_OK = 0,          /* done */
    CLI_REFUSED = 1,     /* the server said no: not found, invalid, wrong state,
                            unauthenticated; serve: could not start */
    CLI_USAGE = 2,       /* bad command line, unreadable file, bad JSON argument */
    CLI_UNREACHABLE = 3, /* no server, no answer in time, or it is unavailable */
};

/* Everything the command line can say; NULL/0 = not given. */
typedef struct cli_opts {
    /* client */
    const char *server;
    const char *token;
    const char *tls_ca;
    const char *tls_server_name;
    const char *tls_client_cert;  /* mTLS: this client's certificate and key */
    const char *tls_client_key;
    bool tls;
    int timeout_ms;
    bool json;
    /* start */
    const char *input;
    const char *idem_key;
    const char *bp_version;   /* start --version, council show --version */
    const char *from_file;    /* start --from-file: JSON lines, "-" = stdin */
    /* list */
    const char *status;
    const char *blueprint;
    const char *after;
    size_t limit;
    /* approve, reject, signal, cancel */
    const char *response;
    const char *who;
    const char *reason;
    const char *payload;
    /* serve */
    const char *listen;
    const char *database_url;
    const char *state_dir;
    const char *tls_cert;
    const char *tls_key;
    const char *tls_client_ca;
    size_t max_message_bytes;
    bool demo_handlers;
    const char *nats_url;     /* serve, publish, bus: --nats (else $CEREBELUM_NATS_URL) */
    const char *http_listen;  /* serve: --http (else $CEREBELUM_HTTP) */
    const char *log_format;   /* serve: --log-format (else $CEREBELUM_LOG_FORMAT) */
    /* publish */
    const char *data;
    const char *msg_id;
#define CLI_MAX_HEADERS 16
    const char *headers[CLI_MAX_HEADERS]; /* "K=V" */
    int nheaders;
    int count;                /* publish --count */
    /* positional arguments after the command words */
    char **args;
    int nargs;
} cli_opts_t;

/* Print "cerebelum: <message>\n" on stderr. */
void cli_errorf(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Read a whole file into a malloc'd NUL-terminated string; NULL with errno
 * set on failure. */
char *cli_read_file(const char *path);

/* A connection of a client command (commands.c). */
typedef struct cli_conn {
    cbm_client_t *client;
    const char *target;
    int timeout_ms;
} cli_conn_t;

/* Make the client from --server/--token/--tls-* (or their environment
 * variables); an exit code. */
int cli_conn_open(const cli_opts_t *o, cli_conn_t *c);
void cli_conn_close(cli_conn_t *c);
/* Say what went wrong with a call (one line on stderr); its exit code. */
int cli_report(const cli_conn_t *c, int rc, const cbm_error_t *err);

/* The client commands; each returns an exit code. */
int cli_cmd_register(const cli_opts_t *o);
int cli_cmd_start(const cli_opts_t *o);
int cli_cmd_list(const cli_opts_t *o);
int cli_cmd_show(const cli_opts_t *o);
int cli_cmd_deliberation_show(const cli_opts_t *o);  /* deliberation.c */
int cli_cmd_history(const cli_opts_t *o);
int cli_cmd_approve(const cli_opts_t *o);
int cli_cmd_reject(const cli_opts_t *o);
int cli_cmd_signal(const cli_opts_t *o);
int cli_cmd_cancel(const cli_opts_t *o);
int cli_cmd_workers(const cli_opts_t *o);
int cli_cmd_health(const cli_opts_t *o);
int cli_cmd_council_put(const cli_opts_t *o);
int cli_cmd_council_list(const cli_opts_t *o);
int cli_cmd_council_show(const cli_opts_t *o);
int cli_cmd_council_rm(const cli_opts_t *o);
/* bus.c: NATS triggers (on the database: a client-only engine) and publish */
int cli_cmd_trigger_put(const cli_opts_t *o);
int cli_cmd_trigger_list(const cli_opts_t *o);
int cli_cmd_trigger_rm(const cli_opts_t *o);
int cli_cmd_trigger_failures(const cli_opts_t *o);
int cli_cmd_bus(const cli_opts_t *o);
int cli_cmd_publish(const cli_opts_t *o);
/* engines.c: the engines on a database and their shards */
int cli_cmd_engines(const cli_opts_t *o);

/* `cerebelum serve`; returns the exit code. */
int cli_serve(const cli_opts_t *o);

/* ---- format.c ------------------------------------------------------------ */

/* "2024-05-01T12:00:00.123Z" (UTC) into buf; "-" for 0. */
const char *fmt_time_us(int64_t us, char buf[64]);

/* One execution, as JSON or as text, with its state when given. */
void fmt_execution_json(FILE *f, const cbm_execution_info_t *x, const char *state_json);
void fmt_execution_text(FILE *f, const cbm_execution_info_t *x, const char *state_json);
void fmt_list_json(FILE *f, const cbm_execution_info_t *xs, size_t n);
void fmt_list_text(FILE *f, const cbm_execution_info_t *xs, size_t n);
void fmt_history_json(FILE *f, const cbm_event_t *evs, size_t n);
void fmt_history_text(FILE *f, const cbm_event_t *evs, size_t n);
void fmt_workers_json(FILE *f, const cbm_worker_info_t *ws, size_t n);
void fmt_workers_text(FILE *f, const cbm_worker_info_t *ws, size_t n);
void fmt_councils_json(FILE *f, const cbm_council_info_t *cs, size_t n);
void fmt_councils_text(FILE *f, const cbm_council_info_t *cs, size_t n);
/* One council: {"name", "version", "definition": {...}}, or for people the
 * definition alone, pretty-printed (it can be put again as it is). */
void fmt_council_json(FILE *f, const char *name, const char *version, const char *definition);
void fmt_council_text(FILE *f, const char *definition);

#endif
