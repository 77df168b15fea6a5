/*
 * cbm_internal.h - helpers shared by every module of the library but not part
 * of the public API: error filling, logging, small allocation wrappers.
 */
#ifndef CBM_INTERNAL_H
#define CBM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cerebelum/error.h"

#if defined(__GNUC__)
#define CBM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CBM_PRINTF(a, b)
#endif

/* Fill err (may be NULL) and return code, so callers can write
 * `return cbm_error_set(err, CBM_EINVAL, "step %s: ...", name);`. */
int cbm_error_set(cbm_error_t *err, int code, const char *fmt, ...) CBM_PRINTF(3, 4);
void cbm_error_clear(cbm_error_t *err);

/* Logging to stderr, filtered by CEREBELUM_LOG (error|warn|info|debug;
 * default warn). Thread-safe. */
enum { CBM_LOG_ERROR = 0, CBM_LOG_WARN = 1, CBM_LOG_INFO = 2, CBM_LOG_DEBUG = 3 };
void cbm_log(int level, const char *fmt, ...) CBM_PRINTF(2, 3);
#define cbm_log_error(...) cbm_log(CBM_LOG_ERROR, __VA_ARGS__)
#define cbm_log_warn(...) cbm_log(CBM_LOG_WARN, __VA_ARGS__)
#define cbm_log_info(...) cbm_log(CBM_LOG_INFO, __VA_ARGS__)
#define cbm_log_debug(...) cbm_log(CBM_LOG_DEBUG, __VA_ARGS__)
/* The format (log.c): human lines (default) or one JSON object per line
 * (time, level, component, execution, step, message), also chosen by
 * CEREBELUM_LOG_FORMAT=json. Set it before any thread logs. */
void cbm_log_set_json(bool on);
bool cbm_log_is_json(void);
/* Write one line now in the current format, whatever the level filter says
 * (a program's own lines: "serving on ..."); NULL fields are null. */
void cbm_log_write(int level, const char *component, const char *execution, const char *step,
                   const char *message);

/* The one string hash of the house (FNV-1a, 32 bits; hash.c): hash tables
 * keyed by execution ids. Not for anything an attacker could aim at. */
uint32_t cbm_hash_str(const char *s);

/* SHA-256 of data[0..len) as 64 lower-case hex digits and a NUL: the
 * version of a blueprint or a council (their canonical JSON). 0, or
 * CBM_ENOMEM when libcrypto could not digest (it allocates). */
int cbm_sha256_hex(const void *data, size_t len, char out[65]);

/* strdup that tolerates NULL (returns NULL). */
char *cbm_strdup(const char *s);

/* Text that enters the engine (text.c): valid UTF-8 (RFC 3629) and no NUL
 * byte, or PostgreSQL refuses it, with every other decision of its batch.
 * cbm_text_problem: -1 when s[0..len) is fine, else the offset of the first
 * bad byte and *why ("is not valid UTF-8", "holds a NUL byte").
 * cbm_text_check / cbm_str_check: 0, or CBM_EINVAL with "<field> is not
 * valid UTF-8 (byte N)". cbm_json_check: the same for JSON text, which
 * also refuses the escape \u0000 inside a string (a NUL is never stored;
 * docs/architecture.md). NULL is fine for all three. */
long cbm_text_problem(const char *s, size_t len, const char **why);
int cbm_text_check(const char *s, size_t len, const char *field, cbm_error_t *err);
int cbm_str_check(const char *s, const char *field, cbm_error_t *err);
int cbm_json_check(const char *s, size_t len, const char *field, cbm_error_t *err);
/* For text recorded as it is whatever it holds (a handler's error message):
 * a malloc'd copy with each bad byte replaced by U+FFFD; NULL for NULL or
 * out of memory. */
char *cbm_text_sanitize(const char *s);
/* Make a message valid UTF-8 in place: a sequence cut at its end is
 * dropped, any other bad byte becomes '?'. cbm_error_set does it. */
void cbm_text_fix_inplace(char *s);

#endif
