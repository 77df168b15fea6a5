/*
 * faultalloc.c - see faultalloc.h.
 *
 * The wrappers are the link-time targets of --wrap: __wrap_malloc is what
 * every malloc() of the executable's objects calls, and __real_malloc the
 * allocator underneath (AddressSanitizer's in the sanitizer build). This
 * file must therefore call the __real_ functions itself.
 *
 * The record of live allocations is an open-addressing hash table keyed by
 * the pointer XOR an odd constant: LeakSanitizer scans memory for values
 * that look like pointers, and a plain table would make every block it
 * holds look reachable.
 */
#include "tests/harness/faultalloc.h"

#include <cJSON.h>
#include <execinfo.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cerebelum/error.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_vasprintf(char **out, const char *fmt, va_list ap);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_asprintf(char **out, const char *fmt, ...);
int __wrap_vasprintf(char **out, const char *fmt, va_list ap);

#define HIDE UINT64_C(0x5a17c3e94b2d6f01) /* odd: a hidden pointer is never 0 */

typedef struct rec {
    uint64_t key;      /* pointer ^ HIDE; 0 = empty slot */
    uint32_t iter;     /* the iteration that made it */
    uint32_t ord;      /* its number within that iteration */
    size_t size;
} rec_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local int depth;      /* > 0: inside a library call */
static rec_t *tab;
static size_t tab_cap, tab_used;
static long armed;              /* the allocation to fail, 0 = none */
static long counted;            /* allocations counted since fa_arm */
static bool fired;
static uint32_t iter;           /* the open iteration, 0 = none */
static uint32_t iter_seq;       /* iterations so far */
static uint32_t iter_ord;       /* allocations recorded in the open iteration */
static long cur_n;              /* the allocation fa_loop is failing, for messages */
static const char *cur_what = "";

/* Totals for fa_report. */
#define MAX_SITES 8192
static uint64_t sites[MAX_SITES];
static size_t nsites;
static long total_failed, total_loops, total_absorbed;
static long by_code[32];

static size_t slot_of(uint64_t key)
{
    return (size_t)((key * UINT64_C(0x9e3779b97f4a7c15)) >> 17) & (tab_cap - 1);
}

static void tab_put(uint64_t key, uint32_t it, uint32_t ord, size_t size);

static void tab_grow(void)
{
    rec_t *old = tab;
    size_t old_cap = tab_cap;

    tab_cap = tab_cap ? tab_cap * 2 : 4096;
    tab = __real_calloc(tab_cap, sizeof(*tab));
    if (tab == NULL) abort();
    tab_used = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].key != 0) tab_put(old[i].key, old[i].iter, old[i].ord, old[i].size);
    __real_free(old);
}

static void tab_put(uint64_t key, uint32_t it, uint32_t ord, size_t size)
{
    size_t i;

    if ((tab_used + 1) * 2 > tab_cap) tab_grow();
    for (i = slot_of(key); tab[i].key != 0; i = (i + 1) & (tab_cap - 1))
        if (tab[i].key == key) break;
    if (tab[i].key == 0) tab_used++;
    tab[i] = (rec_t){key, it, ord, size};
}

/* Remove key; returns whether it was there (and its record in *out). */
static bool tab_take(uint64_t key, rec_t *out)
{
    size_t i, j;

    if (tab_cap == 0) return false;
    for (i = slot_of(key); tab[i].key != key; i = (i + 1) & (tab_cap - 1))
        if (tab[i].key == 0) return false;
    if (out != NULL) *out = tab[i];
    /* Backward-shift deletion keeps every probe chain unbroken. */
    for (j = (i + 1) & (tab_cap - 1); tab[j].key != 0; j = (j + 1) & (tab_cap - 1)) {
        size_t home = slot_of(tab[j].key);
        bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            tab[i] = tab[j];
            i = j;
        }
    }
    tab[i].key = 0;
    tab_used--;
    return true;
}

static uint64_t hide(const void *p)
{
    return (uint64_t)(uintptr_t)p ^ HIDE;
}

static void note_site(void)
{
    void *frames[12];
    int n = backtrace(frames, 12);
    uint64_t h = UINT64_C(1469598103934665603);

    /* frames[0..1] are this file; the rest say where the allocation was. */
    for (int i = 2; i < n && i < 8; i++) h = (h ^ (uint64_t)(uintptr_t)frames[i]) * UINT64_C(1099511628211);
    const char *at = getenv("CBM_FAULT_AT");
    bool seen = false;

    /* CBM_FAULT_AT=N prints where allocation N of each scenario fails;
     * CBM_FAULT_AT=new where each new call stack fails. */
    for (size_t i = 0; i < nsites && !seen; i++) seen = sites[i] == h;
    if (!seen && nsites < MAX_SITES) sites[nsites++] = h;
    if (at != NULL && (strcmp(at, "new") == 0 ? !seen : atol(at) == armed)) {
        fprintf(stderr, "faultalloc: %s: allocation %ld fails here:\n", cur_what, armed);
        backtrace_symbols_fd(frames + 2, n - 2, 2);
    }
}

/* Counts an allocation made inside a library call; true when it must fail. */
static bool must_fail(void)
{
    bool fail;

    if (depth <= 0) return false;
    pthread_mutex_lock(&mu);
    counted++;
    fail = armed != 0 && counted == armed;
    if (fail) fired = true;
    pthread_mutex_unlock(&mu);
    if (fail) note_site();
    return fail;
}

static void record(void *p, size_t size)
{
    if (p == NULL || depth <= 0) return;
    pthread_mutex_lock(&mu);
    if (iter != 0) tab_put(hide(p), iter, ++iter_ord, size);
    pthread_mutex_unlock(&mu);
}

/* Forget p; returns whether it was recorded. */
static bool forget(void *p)
{
    bool had;

    if (p == NULL) return false;
    pthread_mutex_lock(&mu);
    had = tab_take(hide(p), NULL);
    pthread_mutex_unlock(&mu);
    return had;
}

void *__wrap_malloc(size_t n)
{
    void *p;
    if (must_fail()) return NULL;
    p = __real_malloc(n);
    record(p, n);
    return p;
}

void *__wrap_calloc(size_t n, size_t size)
{
    void *p;
    if (must_fail()) return NULL;
    p = __real_calloc(n, size);
    record(p, n * size);
    return p;
}

/* A block keeps its record across realloc: a buffer made before the
 * iteration that grows during it is not the iteration's. */
void *__wrap_realloc(void *p, size_t n)
{
    rec_t r;
    bool had;
    void *q;

    if (p == NULL) return __wrap_malloc(n);
    if (must_fail()) return NULL;
    pthread_mutex_lock(&mu);
    had = tab_take(hide(p), &r);
    pthread_mutex_unlock(&mu);
    q = __real_realloc(p, n);
    pthread_mutex_lock(&mu);
    if (q == NULL && n != 0 && had) tab_put(r.key, r.iter, r.ord, r.size); /* p lives on */
    else if (q != NULL && had) tab_put(hide(q), r.iter, r.ord, n);
    pthread_mutex_unlock(&mu);
    return q;
}

void __wrap_free(void *p)
{
    forget(p);
    __real_free(p);
}

char *__wrap_strdup(const char *s)
{
    char *p;
    if (must_fail()) return NULL;
    p = __real_strdup(s);
    record(p, strlen(s) + 1);
    return p;
}

char *__wrap_strndup(const char *s, size_t n)
{
    char *p;
    if (must_fail()) return NULL;
    p = __real_strndup(s, n);
    record(p, p != NULL ? strlen(p) + 1 : 0);
    return p;
}

int __wrap_vasprintf(char **out, const char *fmt, va_list ap)
{
    int n;
    if (must_fail()) {
        *out = NULL;
        return -1;
    }
    n = __real_vasprintf(out, fmt, ap);
    if (n >= 0) record(*out, (size_t)n + 1);
    return n;
}

int __wrap_asprintf(char **out, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = __wrap_vasprintf(out, fmt, ap);
    va_end(ap);
    return n;
}

/* EVP_Digest allocates inside OpenSSL (a context, a fetched method). Its
 * allocations are not routed here: OpenSSL's own failure paths are not
 * under test (and were seen to leak). The call as a whole counts as one
 * allocation and fails as OpenSSL does when out of memory. */
int __real_EVP_Digest(const void *data, size_t count, unsigned char *md, unsigned int *size,
                      const EVP_MD *type, ENGINE *impl);
int __wrap_EVP_Digest(const void *data, size_t count, unsigned char *md, unsigned int *size,
                      const EVP_MD *type, ENGINE *impl);
int __wrap_EVP_Digest(const void *data, size_t count, unsigned char *md, unsigned int *size,
                      const EVP_MD *type, ENGINE *impl)
{
    if (must_fail()) return 0;
    return __real_EVP_Digest(data, count, md, size, type, impl);
}

void fa_init(void)
{
    cJSON_Hooks hooks = {__wrap_malloc, __wrap_free};
    void *frames[2];

    cJSON_InitHooks(&hooks);
    backtrace(frames, 2); /* loads what backtrace needs, outside any count */
}

void fa_enter(void)
{
    depth++;
}

void fa_leave(void)
{
    depth--;
}

bool fa_inside(void)
{
    return depth > 0;
}

void fa_arm(long n)
{
    pthread_mutex_lock(&mu);
    armed = n;
    counted = 0;
    fired = false;
    pthread_mutex_unlock(&mu);
}

bool fa_fired(void)
{
    return fired;
}

long fa_count(void)
{
    return counted;
}

void fa_begin(void)
{
    pthread_mutex_lock(&mu);
    iter = ++iter_seq;
    iter_ord = 0;
    pthread_mutex_unlock(&mu);
}

size_t fa_end(const char *what)
{
    size_t leaked = 0;

    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < tab_cap; i++) {
        if (tab[i].key == 0 || tab[i].iter != iter) continue;
        if (leaked++ < 5)
            fprintf(stderr, "faultalloc: %s: allocation #%u of the run (%zu bytes) leaked\n", what,
                    tab[i].ord, tab[i].size);
    }
    iter = 0;
    pthread_mutex_unlock(&mu);
    return leaked;
}

void fa_reset(void)
{
    depth = 0;
    fa_arm(0);
    pthread_mutex_lock(&mu);
    iter = 0;
    pthread_mutex_unlock(&mu);
}

int fa_wrong(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "faultalloc: %s, failing allocation %ld: ", cur_what, cur_n);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return FA_WRONG;
}

long fa_loop(const char *what, fa_run_fn run, void *arg, unsigned flags)
{
    long n, base, absorbed = 0;
    size_t leaked;
    clock_t t0 = clock();
    int rc;

    fa_reset();
    cur_what = what;
    cur_n = 0;
    /* The baseline also warms up what is made once (OpenSSL's method
     * caches), so that later runs see only their own allocations. */
    fa_begin();
    rc = run(arg);
    leaked = fa_end(what);
    if (rc != 0) fail_msg("%s: fails with no allocation failing: %s", what, cbm_err_name(rc));
    if (leaked != 0) fail_msg("%s: leaks %zu allocations with none failing", what, leaked);
    base = fa_count();
    for (n = 1;; n++) {
        bool hit;

        cur_n = n;
        fa_arm(n);
        fa_begin();
        rc = run(arg);
        hit = fa_fired();
        leaked = fa_end(what);
        fa_arm(0);
        if (leaked != 0)
            fail_msg("%s: with allocation %ld failing, %zu allocations leaked (%s)", what, n,
                     leaked, cbm_err_name(rc));
        if (rc == FA_WRONG) fail_msg("%s: wrong result with allocation %ld failing", what, n);
        if (!hit) {
            if (rc != 0)
                fail_msg("%s: run %ld failed (%s) with no allocation failing", what, n,
                         cbm_err_name(rc));
            break;
        }
        if (rc == 0 && (flags & FA_ABSORBS)) {
            absorbed++;
            continue;
        }
        if (rc == 0) fail_msg("%s: allocation %ld failed, yet the run succeeded", what, n);
        if (rc != CBM_ENOMEM && !(rc == CBM_EJSON && (flags & FA_EJSON)))
            fail_msg("%s: allocation %ld failed: got %s, not CBM_ENOMEM", what, n,
                     cbm_err_name(rc));
        if (-rc > 0 && -rc < 32) by_code[-rc]++;
        if (n > 4 * base + 100)
            fail_msg("%s: still failing at allocation %ld of a %ld-allocation run", what, n, base);
    }
    total_failed += n - 1;
    total_loops++;
    cur_what = "";
    cur_n = 0;
    total_absorbed += absorbed;
    printf("faultalloc: %-44s %6ld allocations failed in turn", what, n - 1);
    if (absorbed > 0) printf(" (%ld absorbed)", absorbed);
    printf(" %6.2f s\n", (double)(clock() - t0) / CLOCKS_PER_SEC);
    return n - 1;
}

size_t fa_sites(void)
{
    return nsites;
}

void fa_report(void)
{
    printf("faultalloc: %ld scenarios, %ld allocations failed in turn (%ld absorbed by design), "
           "%zu distinct call stacks\n",
           total_loops, total_failed, total_absorbed, nsites);
    for (int c = 1; c < 32; c++)
        if (by_code[c] != 0) printf("faultalloc:   %-16s %ld\n", cbm_err_name(-c), by_code[c]);
}
