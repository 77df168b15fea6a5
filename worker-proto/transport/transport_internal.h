/*
 * transport_internal.h - shared by the files of the transport only.
 */
#ifndef CBM_TRANSPORT_INTERNAL_H
#define CBM_TRANSPORT_INTERNAL_H

#include <stdarg.h>
#include <stdio.h>

#include "grpc_transport.h"

#if defined(__GNUC__)
#define RPC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define RPC_PRINTF(a, b)
#endif

#define RPC_CONTAINER_OF(ptr, type, member)                                    \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* 0 when the hand-written method table matches the generated descriptors. */
int rpc_methods_check(void);

/* Fill err (may be NULL) and return code. */
int rpc_error_set(cbm_error_t *err, int code, const char *fmt, ...) RPC_PRINTF(3, 4);

#endif
