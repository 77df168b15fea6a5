/*
 * http_pbjson.c - a WorkflowService reply (protobuf-c) as the JSON of
 * docs/http.md, read off the message's descriptor, so each new field of
 * workflow.proto shows in the HTTP API without code here:
 *   - a string field named *_json holds JSON text: it becomes the value
 *     itself under the name without _json (state_json -> "state");
 *   - "" (proto3's unset string) becomes null;
 *   - enums become their value's name, lower case, without the enum's
 *     prefix (EXECUTION_STATUS_RUNNING -> "running"; 0 -> null);
 *   - map<string,string> fields become objects; bytes are left out (no
 *     WorkflowService reply has any).
 */
#include "http.h"

#include <ctype.h>
#include <protobuf-c/protobuf-c.h>
#include <string.h>

static cJSON *scalar(const ProtobufCFieldDescriptor *f, const void *p);

/* "EXECUTION_STATUS_RUNNING" of enum "cerebelum.v1.ExecutionStatus":
 * strip the enum's name in upper snake case, lower the rest. */
static cJSON *enum_name(const ProtobufCEnumDescriptor *ed, int v)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, v);
    char prefix[128], out[128];
    size_t n = 0, k = 0;
    const char *name;

    if (ev == NULL) return cJSON_CreateNumber(v);
    if (v == 0) return cJSON_CreateNull();
    /* ExecutionStatus -> EXECUTION_STATUS_ */
    for (const char *s = ed->short_name; *s != '\0' && n + 3 < sizeof(prefix); s++) {
        if (isupper((unsigned char)*s) && s != ed->short_name) prefix[n++] = '_';
        prefix[n++] = (char)toupper((unsigned char)*s);
    }
    prefix[n++] = '_';
    prefix[n] = '\0';
    name = ev->name;
    if (strncmp(name, prefix, n) == 0) name += n;
    for (; *name != '\0' && k + 1 < sizeof(out); name++) out[k++] = (char)tolower((unsigned char)*name);
    out[k] = '\0';
    return cJSON_CreateString(out);
}

static bool is_json_field(const char *name)
{
    size_t n = strlen(name);
    return n > 5 && strcmp(name + n - 5, "_json") == 0;
}

static cJSON *string_value(const ProtobufCFieldDescriptor *f, const char *s)
{
    cJSON *v;
    if (s == NULL || s[0] == '\0') return cJSON_CreateNull();
    if (is_json_field(f->name) && (v = cJSON_Parse(s)) != NULL) return v;
    return cJSON_CreateString(s);
}

static bool is_map_entry(const ProtobufCMessageDescriptor *d)
{
    return d->n_fields == 2 && strcmp(d->fields[0].name, "key") == 0 &&
           strcmp(d->fields[1].name, "value") == 0 &&
           d->fields[0].type == PROTOBUF_C_TYPE_STRING &&
           d->fields[1].type == PROTOBUF_C_TYPE_STRING;
}

/* The value at p (a pointer to the field's storage) of a non-repeated
 * field, or of one element of a repeated one. */
static cJSON *scalar(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: return string_value(f, *(char *const *)p);
    case PROTOBUF_C_TYPE_BOOL: return cJSON_CreateBool(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: return cJSON_CreateNumber(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: return cJSON_CreateNumber(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: return cJSON_CreateNumber((double)*(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return cJSON_CreateNumber((double)*(const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT: return cJSON_CreateNumber(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE: return cJSON_CreateNumber(*(const double *)p);
    case PROTOBUF_C_TYPE_ENUM: return enum_name(f->descriptor, *(const int *)p);
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        return m != NULL ? http_pb_to_json(m) : cJSON_CreateNull();
    }
    default: return NULL; /* bytes: not shown */
    }
}

/* The JSON name: without _json, and state_json -> state. */
static void json_name(const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    if (is_json_field(name)) n -= 5;
    if (n >= cap) n = cap - 1;
    memcpy(out, name, n);
    out[n] = '\0';
}

cJSON *http_pb_to_json(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    cJSON *o = cJSON_CreateObject();

    if (o == NULL) return NULL;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m + f->offset;
        char name[128];
        cJSON *v = NULL;

        if (f->type == PROTOBUF_C_TYPE_BYTES) continue;
        json_name(f->name, name, sizeof(name));
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t count = *(const size_t *)((const char *)m + f->quantifier_offset);
            const char *arr = *(char *const *)base;
            bool map = f->type == PROTOBUF_C_TYPE_MESSAGE && is_map_entry(f->descriptor);
            size_t size = f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE
                              ? sizeof(void *)
                          : f->type == PROTOBUF_C_TYPE_INT64 || f->type == PROTOBUF_C_TYPE_UINT64 ||
                                  f->type == PROTOBUF_C_TYPE_SINT64 ||
                                  f->type == PROTOBUF_C_TYPE_FIXED64 ||
                                  f->type == PROTOBUF_C_TYPE_SFIXED64 ||
                                  f->type == PROTOBUF_C_TYPE_DOUBLE
                              ? 8
                          : f->type == PROTOBUF_C_TYPE_BOOL ? sizeof(protobuf_c_boolean)
                                                            : 4;
            v = map ? cJSON_CreateObject() : cJSON_CreateArray();
            for (size_t k = 0; v != NULL && k < count; k++) {
                const void *el = arr + k * size;
                if (map) {
                    const ProtobufCMessageDescriptor *ed = f->descriptor;
                    const ProtobufCMessage *e = *(ProtobufCMessage *const *)el;
                    const char *key = *(char *const *)((const char *)e + ed->fields[0].offset);
                    const char *val = *(char *const *)((const char *)e + ed->fields[1].offset);
                    cJSON_AddStringToObject(v, key != NULL ? key : "", val != NULL ? val : "");
                } else {
                    cJSON *x = scalar(f, el);
                    if (x == NULL) {
                        cJSON_Delete(v);
                        v = NULL;
                        break;
                    }
                    cJSON_AddItemToArray(v, x);
                }
            }
        } else {
            v = scalar(f, base);
        }
        if (v == NULL) {
            cJSON_Delete(o);
            return NULL;
        }
        cJSON_AddItemToObject(o, name, v);
    }
    return o;
}
