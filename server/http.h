/*
 * http.h - the HTTP side of the server (docs/http.md): the JSON API that
 * mirrors the WorkflowService, server-sent events, /metrics, /healthz,
 * /readyz. Private to server/; cbm_server_start starts it when
 * cbm_server_opts_t.http_listen is set, cbm_server_stop stops it first.
 *
 * Threads. libmicrohttpd runs a listening thread and one thread per
 * connection (http.c says why); every handler runs there and may block on
 * the engine's public API or on the store, never on the engine's loop or on
 * the gRPC server's loop. What only the server's loop knows (registered
 * workers) is asked of it through http_workers (a mailbox and a wait).
 *
 * Files: http.c (daemon, auth, routing, replies), http_api.c (the
 * /api/v1 routes), http_pbjson.c (protobuf replies as JSON), http_sse.c
 * (streams), http_metrics.c (/metrics, /readyz, the store queries),
 * http_workers.c (the loop hop); http_none.c when built without
 * libmicrohttpd.
 */
#ifndef CBM_SERVER_HTTP_H
#define CBM_SERVER_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <cJSON.h>

#include "cerebelum/cerebelum.h"
#include "mailbox.h"

/* ---- the loop hop for workers (http_workers.c; always built) ------------- */

struct wsvc;

typedef struct http_workers {
    cbm_mailbox_t asks;     /* http_ask_t from HTTP threads */
    struct wsvc *ws;
    int open;               /* loop thread */
} http_workers_t;

/* On the server's loop (or before it runs). 0 or a libuv error. */
int http_workers_init(http_workers_t *hw, uv_loop_t *loop, struct wsvc *ws);
/* Loop thread: stop answering (asks still waiting get CBM_ESHUTDOWN). */
void http_workers_close(http_workers_t *hw);
/* After the loop ran the close out. */
void http_workers_finish(http_workers_t *hw);
/* Any thread but the loop's: the workers registered with this server that
 * serve @p queue (NULL or "": all), as {"workers": [...]} (docs/http.md),
 * into *out (the caller frees it); or the count of workers and of those
 * alive (out NULL, counts non-NULL). 0, CBM_ETIMEDOUT (the loop did not
 * answer within timeout_ms), CBM_ESHUTDOWN, CBM_ENOMEM. */
int http_workers_ask(http_workers_t *hw, const char *queue, cJSON **out, size_t *nworkers,
                     size_t *nalive, int timeout_ms);
/* Leases that ran out since the server started (worker_service.c). */
uint64_t wsvc_leases_expired(struct wsvc *ws);

/* ---- the HTTP server ---------------------------------------------------- */

typedef struct http_srv http_srv_t;

typedef struct http_opts {
    const char *listen;       /* "host:port" (port 0: any free one) */
    const char *token;        /* NULL: none */
    const char *cert_pem;     /* TLS: both or neither */
    const char *key_pem;
    size_t max_body;          /* 0: 1 MiB */
    cbm_engine_t *engine;
    http_workers_t *workers;
} http_opts_t;

/* Whether this build has HTTP (libmicrohttpd). */
bool http_available(void);
/* Bind and serve. CBM_EINVAL without libmicrohttpd (or without its TLS
 * when a certificate is given) and for a malformed address, CBM_EIO when
 * the address cannot be bound, CBM_EUNAVAIL when the store's URL is
 * unknown, CBM_ENOMEM. */
int http_start(const http_opts_t *o, http_srv_t **out, cbm_error_t *err);
/* "127.0.0.1:41234" (the bound port). */
const char *http_address(const http_srv_t *h);
/* Stop: streams end, connections close, threads are joined; then free.
 * NULL is a no-op. */
void http_stop(http_srv_t *h);

/* ---- shared by the http_*.c files (libmicrohttpd builds only) ------------ */

/* A request as the routes see it. */
typedef struct http_req {
    http_srv_t *srv;
    const char *method;
    const char *path;         /* without the query */
    struct MHD_Connection *conn;
    const char *body;         /* NUL-terminated; "" when none */
    size_t body_len;
} http_req_t;

/* What a route answers: a status and a JSON body (owned), or a stream
 * (http_sse.c's, set by it). */
typedef struct http_reply {
    int status;
    cJSON *json;
    struct MHD_Response *stream;
    const char *allow;        /* 405: the methods allowed */
} http_reply_t;

cbm_engine_t *http_engine(const http_srv_t *h);
http_workers_t *http_workers_of(const http_srv_t *h);
bool http_stopping(const http_srv_t *h);
struct http_db *http_db_of(http_srv_t *h);

/* A query argument, or NULL. */
const char *http_arg(const http_req_t *r, const char *name);
/* Set an error reply: {"error": {"code", "message"}}. Returns 0. */
int http_error(http_reply_t *rp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The reply for an engine error code and its detail (server errors get a
 * reference and go to the log, as gRPC's do). */
int http_error_rc(http_reply_t *rp, int rc, const char *detail);

/* http_api.c: route an /api/v1 request (after auth). */
int http_api(const http_req_t *r, http_reply_t *rp);
/* http_pbjson.c: a protobuf-c message as JSON (docs/http.md's rules:
 * *_json fields as values under the name without _json, enums as lower-case
 * names, "" as null, maps as objects). NULL on out-of-memory. */
struct ProtobufCMessage;
cJSON *http_pb_to_json(const struct ProtobufCMessage *m);
/* http_sse.c */
int http_sse_execution(const http_req_t *r, const char *id, http_reply_t *rp);
int http_sse_list(const http_req_t *r, http_reply_t *rp);
/* http_metrics.c: the store connection of /metrics, /readyz and the
 * blueprint routes (one, behind a mutex, reconnected when lost). */
typedef struct http_db http_db_t;
int http_db_create(http_db_t **out, const char *url);
void http_db_destroy(http_db_t *db);
/* Run fn with the connection (a PGconn *), under the mutex; connects first
 * if needed. fn returns 0 or a CBM_E* code. */
typedef int (*http_db_fn)(void *conn, void *arg, char *msg, size_t cap);
int http_db_run(http_db_t *db, http_db_fn fn, void *arg, char *msg, size_t cap);
int http_metrics(const http_req_t *r, http_reply_t *rp, char **text);
int http_readyz(const http_req_t *r, http_reply_t *rp);
/* The console's files (server/console/, embedded by console/embed.py):
 * served at /console/<name>, index.html also at /. */
typedef struct http_asset {
    const char *path;
    const char *type;
    const unsigned char *body;
    size_t len;
} http_asset_t;
extern const http_asset_t http_console_assets[];
extern const size_t http_console_nassets;

/* The blueprint routes (http_metrics.c, beside the other SQL). */
int http_blueprints(const http_req_t *r, const char *name, const char *version,
                    http_reply_t *rp);

#endif
