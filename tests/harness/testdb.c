/* testdb.c - see testdb.h. Uses blocking libpq: test code, not engine code. */
#include "testdb.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

static const char *admin_url(void)
{
    const char *u = getenv("CEREBELUM_TEST_DATABASE_URL");
    return (u != NULL && *u != '\0') ? u : NULL;
}

int testdb_exec(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    PGresult *r;
    int rc = 0;

    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "testdb: connect %s: %s", url, PQerrorMessage(c));
        PQfinish(c);
        return -1;
    }
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "testdb: %s: %s", sql, PQerrorMessage(c));
        rc = -1;
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}

int testdb_create(char *url, size_t size)
{
    static int counter;
    const char *admin = admin_url();
    char name[64], sql[128];
    const char *slash;

    if (admin == NULL) return -1;
    snprintf(name, sizeof(name), "cbm_t_%ld_%d_%d", (long)time(NULL), (int)getpid(), counter++);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    if (testdb_exec(admin, sql) != 0) abort();
    slash = strrchr(admin, '/');
    if (slash == NULL || (size_t)(slash - admin) + strlen(name) + 2 > size) abort();
    snprintf(url, size, "%.*s/%s", (int)(slash - admin), admin, name);
    return 0;
}

void testdb_drop(const char *url)
{
    const char *admin = admin_url();
    const char *slash = strrchr(url, '/');
    char sql[160];

    if (admin == NULL || slash == NULL) return;
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", slash + 1);
    testdb_exec(admin, sql);
}
