/*
 * cerebelum/server.h - serve an embedded engine over gRPC from your own
 * program: the WorkflowService (clients: cerebelum.h's operations, the CLI,
 * cerebelum/client.h) and the WorkerService (remote workers:
 * cerebelum/worker.h), as `cerebelum serve` does (docs/protocol.md).
 *
 * Order of calls:
 *
 *     cbm_engine_create(&e, ...);  cbm_engine_register_step(e, ...);
 *     cbm_server_create(&srv, e, &opts, &err);   // before the engine starts
 *     cbm_engine_start(e, &err);
 *     cbm_server_start(srv, &err);               // binds, serves on its thread
 *     ...                                        // cbm_server_address(srv)
 *     cbm_server_stop(srv);                      // graceful, blocks
 *     cbm_server_destroy(srv);                   // before the engine
 *     cbm_engine_destroy(e);
 *
 * The server is created before the engine starts because the WorkerService
 * must hear of every remote task the engine commits, from the first one.
 *
 * Threads. The server runs on a thread of its own with its own event loop;
 * RPCs reach the engine through its public API, so a slow call never stalls
 * the engine's loop. The functions here may be called from any thread but
 * the server's own, one at a time.
 *
 * Ownership. The server borrows the engine (which must outlive it) and
 * copies every option string.
 */
#ifndef CEREBELUM_SERVER_H
#define CEREBELUM_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cerebelum/cerebelum.h"
#include "cerebelum/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A gRPC server over one engine (opaque). */
typedef struct cbm_server cbm_server_t;

/** Options for cbm_server_create(). Zero-initialise, then set what you need. */
typedef struct cbm_server_opts {
    /** "host:port" (port 0: any free port, see cbm_server_address) or
     *  "unix:/path". NULL: "127.0.0.1:7233". */
    const char *listen;
    /** Bearer token every call must carry (`authorization: Bearer <token>`).
     *  NULL: none. An empty string is refused (CBM_EINVAL): it is not "no
     *  token". */
    const char *token;
    /** TLS: PEM text (not file names) of the server's certificate chain and
     *  private key, both or neither. */
    const char *tls_cert_pem;
    const char *tls_key_pem;
    /** mTLS: PEM text of the CA that signs client certificates; with it,
     *  clients must present one. Needs tls_cert_pem. */
    const char *tls_client_ca_pem;
    /** Largest request or reply, in bytes; 0: the transport's default
     *  (4 MiB). Larger requests are answered RESOURCE_EXHAUSTED. */
    size_t max_message_bytes;
    /** Lease a claimed remote task gets, in ms (a step's own
     *  heartbeat_timeout_ms overrides it); 0: $CEREBELUM_LEASE_MS, else
     *  30000. */
    int64_t lease_ms;
    /** cbm_server_stop: how long calls in flight may take to finish, in ms;
     *  0: 10000. */
    int drain_ms;
    /** HTTP (docs/http.md): "host:port" (port 0: any free port, see
     *  cbm_server_http_address) where the JSON API, its server-sent events,
     *  /metrics, /healthz and /readyz are served, on threads of their own.
     *  NULL: no HTTP. It shares @ref token (Authorization: Bearer, or the
     *  cerebelum_token cookie) and the TLS certificate with gRPC; bodies are
     *  limited to @ref max_message_bytes (0: 1 MiB). CBM_EINVAL from
     *  cbm_server_create for "" or when the library was built without
     *  libmicrohttpd (cbm_server_http_available()). */
    const char *http_listen;
} cbm_server_opts_t;

/**
 * Create a server for @p engine, which must be created and not yet started
 * (CBM_ESTATE otherwise). Nothing listens yet. @p opts may be NULL.
 * Errors: CBM_EINVAL (empty token, a certificate without its key, a client
 * CA without a certificate), CBM_ENOMEM.
 */
CBM_EXTERN int cbm_server_create(cbm_server_t **out, cbm_engine_t *engine,
                                 const cbm_server_opts_t *opts, cbm_error_t *err);

/**
 * Bind the listen address and start serving on the server's thread (and
 * HTTP on its own threads when http_listen is set). The engine must have
 * been started (CBM_ESTATE). Errors: CBM_EIO (an address cannot be bound:
 * in use, bad form, bad certificate), CBM_EINVAL (a malformed HTTP
 * address), CBM_EUNAVAIL (the task store cannot be opened), CBM_ESTATE
 * (already started).
 */
CBM_EXTERN int cbm_server_start(cbm_server_t *srv, cbm_error_t *err);

/** The address being served ("127.0.0.1:41234" for a listen address with
 *  port 0), valid from cbm_server_start until cbm_server_destroy; NULL
 *  before. */
CBM_EXTERN const char *cbm_server_address(const cbm_server_t *srv);

/** The HTTP address being served ("127.0.0.1:8233"), while running with
 *  http_listen set; NULL otherwise. */
CBM_EXTERN const char *cbm_server_http_address(const cbm_server_t *srv);

/** Whether this library was built with HTTP (libmicrohttpd). */
CBM_EXTERN bool cbm_server_http_available(void);

/**
 * Stop gracefully, and return when stopped: new calls are answered
 * UNAVAILABLE, parked long polls are answered (empty), calls in flight get
 * up to drain_ms to finish and reply; then the listener closes and what is
 * left is cancelled. Tasks leased to workers stay leased in the store (a
 * worker's result reaches the next server, or the lease runs out). A no-op
 * when not running.
 */
CBM_EXTERN void cbm_server_stop(cbm_server_t *srv);

/** Stop if running, detach from the engine, and free. Call it before
 *  cbm_engine_destroy. NULL is a no-op. */
CBM_EXTERN void cbm_server_destroy(cbm_server_t *srv);

#ifdef __cplusplus
}
#endif
#endif
