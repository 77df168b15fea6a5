/*
 * store_test.h - the fixture and decision helpers shared by the store
 * conformance suite (test_store_pg.c, test_store_pg_concurrency.c).
 *
 * Each test gets a fresh database, migrated, a store handle on it, and a
 * plain libpq connection of its own for checking the tables directly.
 */
#ifndef CBM_STORE_TEST_H
#define CBM_STORE_TEST_H

#include <libpq-fe.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store/store.h"

/* Compare CBM_E* codes, printing both by name on failure. */
#define assert_code(actual, expected)                                                       \
    do {                                                                                    \
        int a_ = (actual), e_ = (expected);                                                 \
        if (a_ != e_)                                                                       \
            fail_msg("%s is %s (%d), expected %s (%d)", #actual, cbm_err_name(a_), a_,     \
                     cbm_err_name(e_), e_);                                                 \
    } while (0)

typedef struct fixture {
    char url[512];
    store_t *s;
    PGconn *pg; /* the suite's own connection, for checks */
} fixture_t;

/* cmocka setup/teardown: *state is a fixture_t. */
int fixture_setup(void **state);
int fixture_teardown(void **state);

/* One value of a one-row query on the fixture's connection ("" for NULL);
 * the text lives in a static buffer until the next call. */
char *sql_text(fixture_t *f, const char *fmt, ...);
#define sql_int(f, ...) strtoll(sql_text((f), __VA_ARGS__), NULL, 10)
/* Run a statement on the fixture's connection, failing the test if it
 * fails. */
void sql_exec(fixture_t *f, const char *fmt, ...);
/* Every line of EXPLAIN <sql>, joined by newlines (malloc'd). */
char *sql_explain(fixture_t *f, const char *sql);

void new_id(char out[37]);

#define MAXEV 8

/* A decision with its own event storage (d first, so a store_decision_t *
 * from it converts back). */
typedef struct tdec {
    store_decision_t d;
    store_event_t ev[MAXEV];
} tdec_t;

/* nev events of type "StepCompleted" with payload {"seq":<seq>}, recorded
 * at 1700000000000000 + seq microseconds, for execution id after seq
 * expected; blueprint "bp" v1 inputs {"x":1} when is_new. */
void tdec_init(tdec_t *t, const char *id, int64_t expected, size_t nev, bool is_new,
               const char *status);
int append1(fixture_t *f, tdec_t *t, cbm_error_t *err);
/* Create execution id with nev events; returns its last seq. */
int64_t create_exec(fixture_t *f, const char *id, size_t nev, const char *status);

/* Tests in test_store_pg_concurrency.c. */
void test_migrate_concurrent(void **state);
void test_conflict_race(void **state);
void test_connection_loss(void **state);
void test_load_consistent(void **state);
void test_bench_group_commit(void **state);

/* Tests in test_store_pg_keys.c: idempotency keys, blueprint puts, lists
 * newest first. */
void test_blueprint_inserted(void **state);
void test_key_unique(void **state);
void test_key_same_batch(void **state);
void test_key_race(void **state);
void test_list_newest_first(void **state);

/* Tests in test_store_pg_durable.c: timers, snapshots, single loads. */
void test_timers_clear_and_set(void **state);
void test_timers_due_order(void **state);
void test_timers_due_plan(void **state);
void test_snapshot_roundtrip(void **state);
void test_snapshot_batch(void **state);
void test_load_execution(void **state);
void test_load_inconsistent(void **state);
void test_unfinished_plan(void **state);
void test_append_plan(void **state);
void test_load_running(void **state);
void test_orphans(void **state);

/* Tests in test_store_pg_tasks.c: the remote task queue. */
void test_tasks_claim_order(void **state);
void test_tasks_capabilities_and_sticky(void **state);
void test_tasks_heartbeat_unclaim_expiry(void **state);
void test_tasks_done_with_decision(void **state);
void test_tasks_concurrent_claims(void **state);
void test_tasks_claim_plan(void **state);

#endif
