/*
 * faultpq.h - statement-failure injection for the store (tests/fault/,
 * docs/testing.md).
 *
 * libpq is a shared library, so the fault-store executable links the
 * store's objects with -Wl,--wrap=PQexec,--wrap=PQexecParams,
 * --wrap=PQexecPrepared,--wrap=PQprepare,--wrap=PQconnectdbParams (every
 * libpq call of store/pg/ that sends something or connects): the wrappers
 * here count those calls made inside a library call (FA(), faultalloc.h)
 * and make the Nth go wrong in one of four ways, the ways a real server and
 * network go wrong:
 *
 *   FP_ERROR  the server refuses it: instead of the statement the server
 *             runs one that raises SQLSTATE XX000 (the transaction, if one
 *             is open, is then aborted as by any failed statement; a COMMIT
 *             or ROLLBACK ends it first, as a failed COMMIT does)
 *   FP_DROP   the connection is lost before it is sent (the socket is shut
 *             down under libpq), so it never runs
 *   FP_LOST   it runs (and commits, outside a transaction), then the
 *             connection is lost before the answer: the caller sees a lost
 *             connection and cannot know
 *   FP_NULL   libpq cannot allocate the result: NULL, nothing sent
 *
 * A connection attempt (store_open) that is the Nth fails to connect in
 * every mode.
 */
#ifndef CBM_TEST_FAULTPQ_H
#define CBM_TEST_FAULTPQ_H

#include <stdbool.h>

typedef enum fp_mode {
    FP_ERROR = 0,
    FP_DROP,
    FP_LOST,
    FP_NULL,
    FP_NMODES
} fp_mode_t;

const char *fp_mode_name(fp_mode_t m);

/* Make the n-th call counted from now go wrong (n >= 1; 0: none). */
void fp_arm(long n, fp_mode_t mode);
/* No more failures; fp_fired and fp_what still tell what happened. */
void fp_disarm(void);
/* Did it? */
bool fp_fired(void);
/* Calls counted since fp_arm. */
long fp_count(void);
/* What the failed call was: its SQL (the text of a prepared statement),
 * or "connect"; "" before one failed. */
const char *fp_what(void);

#endif
