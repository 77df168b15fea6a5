/*
 * transport_internal.h - shared by the files of the transport only.
 */
#ifndef CBM_TRANSPORT_INTERNAL_H
#define CBM_TRANSPORT_INTERNAL_H

#include <stdarg.h>
#include <stdio.h>

#include "cbm_internal.h" /* cbm_error_set, shared with the whole library */
#include "grpc_transport.h"

#define RPC_CONTAINER_OF(ptr, type, member)                                    \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* 0 when the hand-written method table matches the generated descriptors. */
int rpc_methods_check(void);

#endif
