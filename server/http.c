/*
 * http.c - the HTTP daemon (http.h, docs/http.md): libmicrohttpd, bearer
 * token, bodies, routing, JSON replies.
 *
 * Threads. libmicrohttpd runs one thread per connection
 * (MHD_USE_THREAD_PER_CONNECTION) rather than a small epoll pool: every
 * handler here blocks, on the engine's public API (which waits for
 * PostgreSQL) or, for a server-sent-events stream, between two polls of the
 * store, for as long as a browser keeps the page open. In a pool each such
 * call would hold a pool thread and starve the others; one thread per
 * connection makes blocking harmless and is bounded by the connection
 * limit (MAX_CONNECTIONS). The engine's loop is never touched.
 *
 * A request: the first call of the access handler sees the headers (an
 * announced Content-Length over the limit is answered 413 at once), the
 * next ones the body (gathered up to the limit; past it the rest is
 * dropped and the answer is 413), the last one dispatches: /healthz,
 * /readyz and /metrics without a token, everything under /api/ with it.
 */
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cbm_internal.h"
#include "engine_remote.h"
#include "workflow_service.h"

#define DEFAULT_MAX_BODY (1u << 20)
#define MAX_CONNECTIONS 256
#define IDLE_TIMEOUT_S 120

struct http_srv {
    struct MHD_Daemon *d;
    cbm_engine_t *engine;
    http_workers_t *workers;
    http_db_t *db;
    char *token;
    size_t max_body;
    atomic_int stopping;
    char address[300];
};

typedef struct conn_state {
    char *buf;
    size_t len, cap;
    int too_big;
    int started;   /* the first call (headers) is done */
} conn_state_t;

cbm_engine_t *http_engine(const http_srv_t *h) { return h->engine; }
http_workers_t *http_workers_of(const http_srv_t *h) { return h->workers; }
bool http_stopping(const http_srv_t *h) { return atomic_load(&((http_srv_t *)h)->stopping) != 0; }
http_db_t *http_db_of(http_srv_t *h) { return h->db; }
bool http_available(void) { return true; }

const char *http_arg(const http_req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

static const char *code_of(int status)
{
    switch (status) {
    case 400: return "bad_request";
    case 401: return "unauthorized";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 409: return "conflict";
    case 413: return "payload_too_large";
    case 503: return "unavailable";
    case 504: return "timeout";
    default: return "internal";
    }
}

int http_error(http_reply_t *rp, int status, const char *fmt, ...)
{
    char msg[700];
    va_list ap;
    cJSON *e;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    cJSON_Delete(rp->json);
    rp->status = status;
    rp->json = cJSON_CreateObject();
    if (rp->json != NULL && (e = cJSON_AddObjectToObject(rp->json, "error")) != NULL) {
        cJSON_AddStringToObject(e, "code", code_of(status));
        cJSON_AddStringToObject(e, "message", msg);
    }
    return 0;
}

int http_error_rc(http_reply_t *rp, int rc, const char *detail)
{
    char msg[600];
    int status;

    switch (rc) {
    case CBM_EINVAL: case CBM_EJSON: case CBM_EBLUEPRINT: status = 400; break;
    case CBM_ENOTFOUND: status = 404; break;
    case CBM_ESTATE: case CBM_EHANDLER: case CBM_EEXIST: case CBM_ECONFLICT: status = 409; break;
    case CBM_EUNAVAIL: case CBM_ESHUTDOWN: case CBM_EFENCED: status = 503; break;
    case CBM_ETIMEDOUT: status = 504; break;
    default: status = 500; break;
    }
    /* The gRPC service's wording: detail for the request's own errors, a
     * reference (and the log) for the server's. */
    svc_error_text(rc, detail, msg, sizeof(msg));
    return http_error(rp, status, "%s", msg);
}

/* ---- auth ---------------------------------------------------------------- */

static bool same_token(const char *given, const char *want)
{
    size_t n = strlen(want);
    return given != NULL && strlen(given) == n && CRYPTO_memcmp(given, want, n) == 0;
}

static bool authorised(const http_srv_t *h, struct MHD_Connection *c)
{
    const char *auth, *cookie;

    if (h->token == NULL) return true;
    auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0) {
        const char *t = auth + 7;
        while (*t == ' ') t++;
        if (same_token(t, h->token)) return true;
    }
    cookie = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, "cerebelum_token");
    return same_token(cookie, h->token);
}

/* ---- replies ------------------------------------------------------------- */

static enum MHD_Result send_text(struct MHD_Connection *c, int status, const char *type,
                                 char *text, const char *allow, bool challenge)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    enum MHD_Result ok;

    if (r == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (allow != NULL) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (challenge) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_reply(struct MHD_Connection *c, http_reply_t *rp)
{
    char *text;
    enum MHD_Result ok;

    if (rp->stream != NULL) {
        ok = MHD_queue_response(c, MHD_HTTP_OK, rp->stream);
        MHD_destroy_response(rp->stream);
        rp->stream = NULL;
        return ok;
    }
    if (rp->json == NULL) http_error(rp, 500, "out of memory");
    if (rp->json == NULL || (text = cJSON_PrintUnformatted(rp->json)) == NULL) {
        cJSON_Delete(rp->json);
        rp->json = NULL;
        return MHD_NO;
    }
    ok = send_text(c, rp->status != 0 ? rp->status : 200, "application/json", text, rp->allow,
                   rp->status == 401);
    cJSON_Delete(rp->json);
    rp->json = NULL;
    return ok;
}

/* A console file: no token (the page asks for it and sends it to the
 * API); a policy that lets the page load only its own files. */
static enum MHD_Result send_asset(struct MHD_Connection *c, const http_asset_t *a)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(a->len, (void *)a->body, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ok;

    if (r == NULL) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, a->type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'self'; style-src 'self'; img-src 'self' data:; "
                            "frame-ancestors 'none'");
    ok = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_error(struct MHD_Connection *c, int status, const char *msg)
{
    http_reply_t rp = {0};
    http_error(&rp, status, "%s", msg);
    return send_reply(c, &rp);
}

/* ---- dispatch ------------------------------------------------------------ */

static enum MHD_Result dispatch(http_srv_t *h, struct MHD_Connection *c, const char *url,
                                const char *method, conn_state_t *cs)
{
    http_req_t r = {.srv = h, .method = method, .path = url, .conn = c,
                    .body = cs->buf != NULL ? cs->buf : "", .body_len = cs->len};
    http_reply_t rp = {0};
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

    if (strcmp(url, "/healthz") == 0) {
        if (!get) {
            rp.allow = "GET, HEAD";
            http_error(&rp, 405, "%s /healthz: use GET", method);
        } else if ((rp.json = cJSON_CreateObject()) != NULL) {
            cJSON_AddStringToObject(rp.json, "status", "ok");
        }
        return send_reply(c, &rp);
    }
    if (strcmp(url, "/readyz") == 0) {
        if (!get) {
            rp.allow = "GET, HEAD";
            http_error(&rp, 405, "%s /readyz: use GET", method);
        } else {
            http_readyz(&r, &rp);
        }
        return send_reply(c, &rp);
    }
    if (strcmp(url, "/metrics") == 0) {
        char *text = NULL;
        if (!get) {
            rp.allow = "GET, HEAD";
            http_error(&rp, 405, "%s /metrics: use GET", method);
            return send_reply(c, &rp);
        }
        if (http_metrics(&r, &rp, &text) != 0 || text == NULL) return send_reply(c, &rp);
        return send_text(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, NULL, false);
    }
    if (strcmp(url, "/") == 0 || strncmp(url, "/console/", 9) == 0) {
        const char *want = strcmp(url, "/") == 0 ? "/console/index.html" : url;
        for (size_t i = 0; i < http_console_nassets; i++) {
            const http_asset_t *a = &http_console_assets[i];
            if (strcmp(a->path, want) != 0) continue;
            if (!get) {
                rp.allow = "GET, HEAD";
                http_error(&rp, 405, "%s %s: use GET", method, url);
                return send_reply(c, &rp);
            }
            return send_asset(c, a);
        }
    }
    if (strncmp(url, "/api/", 5) == 0 || strcmp(url, "/api") == 0) {
        if (!authorised(h, c)) {
            http_error(&rp, 401, "%s", h->token != NULL ? "a valid token is required "
                                       "(Authorization: Bearer TOKEN, or the cerebelum_token cookie)"
                                       : "unauthorised");
            return send_reply(c, &rp);
        }
        if (cs->too_big) {
            http_error(&rp, 413, "the body is larger than %zu bytes", h->max_body);
            return send_reply(c, &rp);
        }
        http_api(&r, &rp);
        return send_reply(c, &rp);
    }
    http_error(&rp, 404, "no such path: %s", url);
    return send_reply(c, &rp);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **con_cls)
{
    http_srv_t *h = cls;
    conn_state_t *cs = *con_cls;
    (void)version;

    if (cs == NULL) {
        const char *cl;
        if ((cs = calloc(1, sizeof(*cs))) == NULL) return MHD_NO;
        *con_cls = cs;
        cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL && strtoull(cl, NULL, 10) > h->max_body) {
            char msg[120];
            cs->too_big = 1;
            /* Refuse before reading it (auth first: a stranger learns
             * nothing but 401). */
            if (strncmp(url, "/api", 4) == 0 && !authorised(h, c)) return dispatch(h, c, url, method, cs);
            snprintf(msg, sizeof(msg), "the body is larger than %zu bytes", h->max_body);
            return send_error(c, 413, msg);
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (cs->too_big) return MHD_YES;
        if (cs->len + n > h->max_body) {
            cs->too_big = 1;
            free(cs->buf);
            cs->buf = NULL;
            cs->len = cs->cap = 0;
            return MHD_YES;
        }
        if (cs->len + n + 1 > cs->cap) {
            size_t cap = (cs->len + n + 1) * 2;
            char *b = realloc(cs->buf, cap);
            if (b == NULL) return MHD_NO;
            cs->buf = b;
            cs->cap = cap;
        }
        memcpy(cs->buf + cs->len, upload, n);
        cs->len += n;
        cs->buf[cs->len] = '\0';
        return MHD_YES;
    }
    if (cs->started) return MHD_YES; /* a response is queued already */
    cs->started = 1;
    return dispatch(h, c, url, method, cs);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode why)
{
    conn_state_t *cs = *con_cls;
    (void)cls;
    (void)c;
    (void)why;
    if (cs == NULL) return;
    free(cs->buf);
    free(cs);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    cbm_log_info("http: %s", msg);
}

/* ---- start, stop ----------------------------------------------------------- */

/* "host:port" or "[v6]:port" into an address. */
static int parse_listen(const char *listen, struct sockaddr_storage *ss, cbm_error_t *err)
{
    char host[256];
    const char *colon, *port;
    struct addrinfo hints = {0}, *ai = NULL;
    int rc;

    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - listen - 1) >= sizeof(host))
            return cbm_error_set(err, CBM_EINVAL, "--http %s: want HOST:PORT", listen);
        memcpy(host, listen + 1, (size_t)(close - listen - 1));
        host[close - listen - 1] = '\0';
        port = close + 2;
    } else {
        if ((colon = strrchr(listen, ':')) == NULL || (size_t)(colon - listen) >= sizeof(host))
            return cbm_error_set(err, CBM_EINVAL, "--http %s: want HOST:PORT", listen);
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
        port = colon + 1;
    }
    if (port[0] == '\0' || strspn(port, "0123456789") != strlen(port) || atoi(port) > 65535)
        return cbm_error_set(err, CBM_EINVAL, "--http %s: bad port", listen);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if ((rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai)) != 0 || ai == NULL)
        return cbm_error_set(err, CBM_EINVAL, "--http %s: %s", listen, gai_strerror(rc));
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    return 0;
}

int http_start(const http_opts_t *o, http_srv_t **out, cbm_error_t *err)
{
    struct sockaddr_storage ss;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ERROR_LOG | MHD_USE_POLL;
    const union MHD_DaemonInfo *info;
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    char ip[INET6_ADDRSTRLEN];
    const char *url = cbm__engine_url(o->engine);
    http_srv_t *h;
    int rc, port;

    *out = NULL;
    if ((rc = parse_listen(o->listen, &ss, err)) != 0) return rc;
    if (o->cert_pem != NULL && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return cbm_error_set(err, CBM_EINVAL, "this libmicrohttpd has no TLS");
    if (url == NULL) return cbm_error_set(err, CBM_EUNAVAIL, "the engine is not started");
    if ((h = calloc(1, sizeof(*h))) == NULL) return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    h->engine = o->engine;
    h->workers = o->workers;
    h->max_body = o->max_body > 0 ? o->max_body : DEFAULT_MAX_BODY;
    if ((o->token != NULL && (h->token = strdup(o->token)) == NULL) ||
        http_db_create(&h->db, url) != 0) {
        http_stop(h);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    if (o->cert_pem != NULL) flags |= MHD_USE_TLS;
    if (o->cert_pem != NULL)
        h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
                                MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S,
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                                MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
                                MHD_OPTION_HTTPS_MEM_KEY, o->key_pem,
                                MHD_OPTION_HTTPS_MEM_CERT, o->cert_pem, MHD_OPTION_END);
    else
        h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
                                MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S,
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                                MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h, MHD_OPTION_END);
    if (h->d == NULL) {
        http_stop(h);
        return cbm_error_set(err, CBM_EIO, "--http %s: cannot listen there (in use? a bad "
                                           "certificate?)", o->listen);
    }
    info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_LISTEN_FD);
    port = 0;
    if (info != NULL && getsockname(info->listen_fd, (struct sockaddr *)&bound, &blen) == 0)
        port = ntohs(bound.ss_family == AF_INET6
                         ? ((struct sockaddr_in6 *)&bound)->sin6_port
                         : ((struct sockaddr_in *)&bound)->sin_port);
    if (ss.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip));
        snprintf(h->address, sizeof(h->address), "[%s]:%d", ip, port);
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
        snprintf(h->address, sizeof(h->address), "%s:%d", ip, port);
    }
    *out = h;
    return 0;
}

const char *http_address(const http_srv_t *h)
{
    return h != NULL ? h->address : NULL;
}

void http_stop(http_srv_t *h)
{
    if (h == NULL) return;
    atomic_store(&h->stopping, 1); /* streams end at their next poll */
    if (h->d != NULL) MHD_stop_daemon(h->d);
    http_db_destroy(h->db);
    if (h->token != NULL) {
        memset(h->token, 0, strlen(h->token));
        free(h->token);
    }
    free(h);
}
