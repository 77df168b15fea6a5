/*
 * cbm_internal.h - helpers shared by every module of the library but not part
 * of the public API: error filling, logging, small allocation wrappers.
 */
#ifndef CBM_INTERNAL_H
#define CBM_INTERNAL_H

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

/* strdup that tolerates NULL (returns NULL). */
char *cbm_strdup(const char *s);

#endif
