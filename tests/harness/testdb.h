/*
 * testdb.h - per-test databases on the private PostgreSQL started by
 * tests/harness/with-postgres.sh (CEREBELUM_TEST_DATABASE_URL).
 *
 * testdb_create() makes a fresh, empty database with a unique name and returns
 * its URL; testdb_drop() removes it. Tests that find no server skip (exit 77,
 * meson's "skipped") rather than pass.
 */
#ifndef CBM_TESTDB_H
#define CBM_TESTDB_H

#include <stddef.h>

/* Exit code meson treats as a skipped test. */
#define TESTDB_SKIP 77

/* Writes the new database's URL into url (size bytes). Returns 0, or -1 when
 * no test server is configured (the caller should exit(TESTDB_SKIP)); aborts
 * on any other failure. */
int testdb_create(char *url, size_t size);
void testdb_drop(const char *url);

/* Run one SQL statement on url; returns 0 or -1 (message on stderr). */
int testdb_exec(const char *url, const char *sql);

#endif
