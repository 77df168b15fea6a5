/*
 * pgembed.h - the embedded default store: a private PostgreSQL that the
 * engine initialises (initdb) in a state directory and runs on a unix socket
 * there, with no TCP listener. Used when no database URL is configured, so
 * `examples/hello` works on a machine with PostgreSQL's server package and
 * nothing set up.
 *
 * Runs external programs (initdb, pg_ctl) with posix_spawn: call it before
 * any library that dislikes fork (gRPC) is initialised.
 */
#ifndef CBM_SDK_PGEMBED_H
#define CBM_SDK_PGEMBED_H

#include "cerebelum/error.h"

typedef struct pgembed pgembed_t;

/* Initialise (first time) and start the server in state_dir; *url_out is a
 * libpq conninfo for it (owned by the caller). If a server already runs on
 * that directory it is reused, and pgembed_stop() will leave it running. */
int pgembed_start(const char *state_dir, pgembed_t **out, char **url_out, cbm_error_t *err);

/* Stop the server if this process started it; free. NULL is a no-op. */
void pgembed_stop(pgembed_t *pg);

#endif
