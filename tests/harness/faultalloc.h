/*
 * faultalloc.h - allocation-failure injection for the fault suite
 * (tests/fault/, docs/testing.md).
 *
 * A fault-test executable is linked against the library's internal static
 * archive with -Wl,--wrap=malloc,--wrap=calloc,... (FAULTALLOC_WRAP in
 * tests/fault/meson.build), so every call the executable's own objects make
 * to those functions, the library's included, lands in the wrappers of
 * faultalloc.c. cJSON (a shared library) is routed through them with
 * cJSON_InitHooks (fa_init); OpenSSL's EVP_Digest, which allocates inside
 * OpenSSL, is wrapped too and counts as one allocation.
 *
 * Only allocations made inside a library call count: the test wraps each
 * call it drives in FA_CALL(), and allocations elsewhere (the test's own
 * bookkeeping, cmocka) are never failed. Inside, allocations are numbered
 * 1, 2, 3...; fa_arm(n) makes the n-th fail (return NULL), once.
 *
 * Leaks are found per iteration: every live allocation is recorded with
 * the iteration it was made in (fa_begin), so after the iteration's own
 * clean-up fa_end() reports the allocations of that iteration that are
 * still live. The records hide their pointers from LeakSanitizer, which
 * still checks the whole run at exit.
 *
 * fa_loop() is the whole method: run a scenario with no failure (the
 * baseline), then with allocation 1, 2, 3... failing in turn until a run
 * meets no injected failure, checking after each that the scenario said
 * so with an allowed error code and leaked nothing.
 */
#ifndef CBM_TEST_FAULTALLOC_H
#define CBM_TEST_FAULTALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Install the cJSON hooks (first thing in main). */
void fa_init(void);

/* Enter and leave the library: allocations count (and may fail) only in
 * between. Nests. FA(stmt) runs stmt inside, e.g.
 * FA(rc = bp_parse_json(json, len, &bp, &err)). */
void fa_enter(void);
void fa_leave(void);
/* Inside a library call (on this thread)? */
bool fa_inside(void);
#define FA(stmt)     \
    do {             \
        fa_enter();  \
        stmt;        \
        fa_leave();  \
    } while (0)

/* Fail the n-th allocation counted from now (n >= 1); 0 disarms. Resets
 * the count. */
void fa_arm(long n);
/* Did the armed failure happen? */
bool fa_fired(void);
/* Allocations counted since the last fa_arm. */
long fa_count(void);

/* An iteration of a scenario: fa_begin() starts recording its allocations,
 * fa_end() returns how many of them are still live (and prints the first
 * few: ordinal within the iteration and size). */
void fa_begin(void);
size_t fa_end(const char *what);

/* What a scenario returns when it finds a wrong result (after printing
 * what was wrong with fa_wrong): fa_loop then fails, naming the
 * allocation that was failing. */
#define FA_WRONG (-1000)
int fa_wrong(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Forget any armed failure and open iteration (after a failed test). */
void fa_reset(void);

/* fa_loop flags. */
enum {
    /* CBM_EJSON is allowed too: cJSON's parser cannot tell its own
     * allocation failure from malformed text (blueprint.c says so). */
    FA_EJSON = 1,
    /* A failed allocation may be absorbed by design (a cache or an index
     * that is kept smaller): the run may then succeed, with the right
     * result. */
    FA_ABSORBS = 2,
};

/*
 * The method. run(arg) runs the scenario once and returns 0 when it
 * completed (having checked its own results: FA_WRONG when one is wrong)
 * or the CBM_E* code that stopped it; it must free what it allocated
 * either way. Fails the test (cmocka) when a run with an injected failure
 * returns 0 (unless FA_ABSORBS) or a code other than CBM_ENOMEM (and
 * CBM_EJSON with FA_EJSON), when a run leaks, or when a run without one
 * fails. Returns the number of allocations that were failed in turn (the
 * allocations the scenario makes).
 */
typedef int (*fa_run_fn)(void *arg);
long fa_loop(const char *what, fa_run_fn run, void *arg, unsigned flags);

/* Totals over every fa_loop of the process: allocations failed, distinct
 * call stacks (6 frames) that failed, and how often each error code came
 * back. Printed by fa_report(). */
void fa_report(void);
/* Distinct call stacks (6 frames) at which an allocation was failed. */
size_t fa_sites(void);

#endif
