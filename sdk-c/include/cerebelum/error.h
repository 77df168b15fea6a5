/*
 * cerebelum/error.h - the one error space of the library.
 *
 * Every fallible public function returns an int: 0 on success, a negative
 * CBM_E* code on failure. Where a code alone is not enough (which step of a
 * blueprint is wrong, what PostgreSQL said), functions also take an optional
 * cbm_error_t that receives a human-readable message.
 */
#ifndef CEREBELUM_ERROR_H
#define CEREBELUM_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CBM_BUILDING_LIBRARY)
#define CBM_EXTERN __attribute__((visibility("default")))
#else
#define CBM_EXTERN
#endif

/* X-macro list: name, value, message. Values are stable API. */
#define CBM_ERRNO_MAP(XX)                                                      \
    XX(EINVAL, -1, "invalid argument")                                         \
    XX(ENOMEM, -2, "out of memory")                                            \
    XX(ENOTFOUND, -3, "not found")                                             \
    XX(ECONFLICT, -4, "concurrent modification (stale sequence)")              \
    XX(ESTORE, -5, "store error")                                              \
    XX(EJSON, -6, "malformed JSON")                                            \
    XX(EBLUEPRINT, -7, "invalid blueprint")                                    \
    XX(ETIMEDOUT, -8, "timed out")                                             \
    XX(ESHUTDOWN, -9, "engine is shutting down")                               \
    XX(EEXIST, -10, "already exists")                                          \
    XX(ESTATE, -11, "not allowed in the current state")                        \
    XX(EUNAVAIL, -12, "store unavailable")                                     \
    XX(EHANDLER, -13, "no handler registered for step")                        \
    XX(EIO, -14, "I/O error")                                                  \
    XX(EFENCED, -15, "engine fenced: another engine took over its executions")

enum {
#define XX(name, val, msg) CBM_##name = (val),
    CBM_ERRNO_MAP(XX)
#undef XX
};

/** Detail of a failure. Stack-allocate it; no clean-up is needed. */
typedef struct cbm_error {
    int code;           /**< the CBM_E* code, 0 when no error */
    char message[512];  /**< NUL-terminated human-readable detail */
} cbm_error_t;

/** Static message for a CBM_E* code ("unknown error" for others). Never NULL. */
CBM_EXTERN const char *cbm_strerror(int code);

/** Name of a CBM_E* code, e.g. "CBM_EINVAL". Never NULL. */
CBM_EXTERN const char *cbm_err_name(int code);

#ifdef __cplusplus
}
#endif
#endif
