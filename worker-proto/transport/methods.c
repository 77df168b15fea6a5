/*
 * methods.c - the method table of the wire protocol and the helpers both the
 * server and the client need: status names, status -> CBM_E* mapping.
 *
 * The paths are written out rather than built from the protoc-c service
 * descriptors so that they are constants; rpc_methods_check() compares the
 * two once, so a .proto edit that reorders or renames a method fails loudly
 * at start-up instead of routing calls to the wrong handler.
 */
#include "transport_internal.h"

#include <stdbool.h>
#include <string.h>

typedef struct method_info {
    const char *path;
    const ProtobufCServiceDescriptor *service;
} method_info_t;

#define SVC_WorkerService cerebelum__v1__worker_service__descriptor
#define SVC_WorkflowService cerebelum__v1__workflow_service__descriptor

static const method_info_t methods[RPC_METHOD_COUNT] = {
#define XX(id, svc, name)                                                      \
    [RPC_##id] = {"/cerebelum.v1." #svc "/" #name, &SVC_##svc},
    RPC_METHOD_MAP(XX)
#undef XX
};

/* The index of a method inside its own service, in declaration order: the
 * workflow service's methods follow the worker service's in the map. */
static unsigned method_index(rpc_method_t m)
{
    if (methods[m].service == &SVC_WorkflowService)
        return (unsigned)m - (unsigned)RPC_REGISTER_BLUEPRINT;
    return (unsigned)m;
}

static const ProtobufCMethodDescriptor *method_desc(rpc_method_t m)
{
    return &methods[m].service->methods[method_index(m)];
}

const char *rpc_method_path(rpc_method_t m)
{
    return (unsigned)m < RPC_METHOD_COUNT ? methods[m].path : NULL;
}

const ProtobufCMessageDescriptor *rpc_method_input(rpc_method_t m)
{
    return (unsigned)m < RPC_METHOD_COUNT ? method_desc(m)->input : NULL;
}

const ProtobufCMessageDescriptor *rpc_method_output(rpc_method_t m)
{
    return (unsigned)m < RPC_METHOD_COUNT ? method_desc(m)->output : NULL;
}

/* No unknown field numbered 0 in m or in any message inside it. */
static bool field_numbers_ok(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (size_t i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0) return false;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *member = (const char *)m + f->offset;
        ProtobufCMessage *const *subs = (ProtobufCMessage *const *)(const void *)member;
        size_t n = 1;
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(const void *)((const char *)m + f->quantifier_offset) != f->id)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = *(const size_t *)(const void *)((const char *)m + f->quantifier_offset);
            subs = *(ProtobufCMessage **const *)(const void *)member;
        }
        for (size_t k = 0; k < n; k++)
            if (subs[k] != NULL && !field_numbers_ok(subs[k])) return false;
    }
    return true;
}

ProtobufCMessage *rpc_message_unpack(const ProtobufCMessageDescriptor *d, size_t len,
                                     const uint8_t *data)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, data);
    if (m != NULL && !field_numbers_ok(m)) {
        protobuf_c_message_free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

int rpc_methods_check(void)
{
    for (unsigned m = 0; m < RPC_METHOD_COUNT; m++) {
        const ProtobufCServiceDescriptor *svc = methods[m].service;
        unsigned i = method_index((rpc_method_t)m);
        char path[256];
        if (i >= svc->n_methods)
            return -1;
        snprintf(path, sizeof(path), "/%s/%s", svc->name, svc->methods[i].name);
        if (strcmp(path, methods[m].path) != 0)
            return -1;
    }
    if (SVC_WorkerService.n_methods + SVC_WorkflowService.n_methods != RPC_METHOD_COUNT)
        return -1;
    return 0;
}

const char *rpc_status_name(grpc_status_code code)
{
    switch (code) {
    case GRPC_STATUS_OK: return "OK";
    case GRPC_STATUS_CANCELLED: return "CANCELLED";
    case GRPC_STATUS_UNKNOWN: return "UNKNOWN";
    case GRPC_STATUS_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case GRPC_STATUS_DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case GRPC_STATUS_NOT_FOUND: return "NOT_FOUND";
    case GRPC_STATUS_ALREADY_EXISTS: return "ALREADY_EXISTS";
    case GRPC_STATUS_PERMISSION_DENIED: return "PERMISSION_DENIED";
    case GRPC_STATUS_RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case GRPC_STATUS_FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case GRPC_STATUS_ABORTED: return "ABORTED";
    case GRPC_STATUS_OUT_OF_RANGE: return "OUT_OF_RANGE";
    case GRPC_STATUS_UNIMPLEMENTED: return "UNIMPLEMENTED";
    case GRPC_STATUS_INTERNAL: return "INTERNAL";
    case GRPC_STATUS_UNAVAILABLE: return "UNAVAILABLE";
    case GRPC_STATUS_DATA_LOSS: return "DATA_LOSS";
    case GRPC_STATUS_UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "UNKNOWN_STATUS";
    }
}

int rpc_status_to_cbm(grpc_status_code code)
{
    switch (code) {
    case GRPC_STATUS_OK: return 0;
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_OUT_OF_RANGE:
    case GRPC_STATUS_RESOURCE_EXHAUSTED: return CBM_EINVAL;
    case GRPC_STATUS_DEADLINE_EXCEEDED: return CBM_ETIMEDOUT;
    case GRPC_STATUS_NOT_FOUND: return CBM_ENOTFOUND;
    case GRPC_STATUS_ALREADY_EXISTS: return CBM_EEXIST;
    case GRPC_STATUS_FAILED_PRECONDITION: return CBM_ESTATE;
    case GRPC_STATUS_ABORTED: return CBM_ECONFLICT;
    case GRPC_STATUS_UNAVAILABLE: return CBM_EUNAVAIL;
    default: return CBM_EIO;
    }
}
