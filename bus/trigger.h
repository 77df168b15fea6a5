/*
 * trigger.h - a NATS JetStream trigger as data (docs/bus.md): its
 * definition (parse, validate, canonical JSON and version) and what it makes
 * of one message (the idempotency keys and the inputs of the executions to
 * start). Nothing here talks to NATS or to the store, so it is built with or
 * without libnats and is unit-tested on plain message views
 * (tests/unit/test_trigger.c); bus/trigger_run.c feeds it real messages.
 *
 * A definition:
 *
 *   {"name": "fleet-roles",                  letters, digits, - _ . (1-64)
 *    "stream": "PLANNING_EVENTS",            the JetStream stream
 *    "stream_subjects": ["planning.>"],      optional: create the stream if absent
 *    "consumer": "cbm-fleet-roles",          durable pull consumer (created if absent)
 *    "subject": "planning.plan.approved",    its filter subject
 *    "action": "start",                      start | signal | approve | reject | cancel
 *    "blueprint": "deliberate",              start: what to start
 *    "execution": "$.msg.data.execution_id", the others: which execution (a path or an id)
 *    "step": "sign_off",                     approve, reject: the step waiting (path or name)
 *    "signal": "go",                         signal: its name (path or name)
 *    "reason": "$.msg.data.reason",          reject, cancel (path or text)
 *    "inputs": {"role": "$.item", "story": "$.msg.data.payload.story_id"},
 *    "for_each": "$.msg.data.payload.roles", optional: one execution per item
 *    "key": "$.msg.data.idempotency_key",    "msg_id" (default) | "stream_seq" | a path
 *    "batch": 10, "wait_ms": 1000, "ack_wait_ms": 30000, "nak_delay_ms": 1000}
 *
 * Paths: a template string that is exactly a path is replaced by the value
 * it names (any JSON value); other strings are kept. Roots: $.msg.data
 * (the message's data as JSON) then .field or [N] segments, $.msg.subject,
 * $.msg.headers.NAME, $.msg.stream, $.msg.seq, and with for_each $.item
 * (then segments) and $.index. A path that names nothing in a message makes
 * that message bad data (poison), with a reason that says which path.
 */
#ifndef CBM_BUS_TRIGGER_H
#define CBM_BUS_TRIGGER_H

#include <cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "cerebelum/error.h"

enum { TRIG_KEY_MSG_ID, TRIG_KEY_STREAM_SEQ, TRIG_KEY_PATH };
enum { TRIG_ACT_START, TRIG_ACT_SIGNAL, TRIG_ACT_APPROVE, TRIG_ACT_REJECT, TRIG_ACT_CANCEL };

typedef struct trigger {
    char *name, *stream, *consumer, *subject, *action, *blueprint;
    int act;                   /* TRIG_ACT_* */
    char *execution, *step, *signal, *reason;  /* templates: a path or a literal */
    char **stream_subjects;    /* NULL-terminated, or NULL */
    cJSON *inputs;             /* the template (a JSON object) */
    char *for_each;            /* a path, or NULL */
    int key_kind;              /* TRIG_KEY_* */
    char *key_path;            /* TRIG_KEY_PATH: the path */
    int batch;                 /* messages per Fetch (1-256; default 10) */
    int wait_ms;               /* a Fetch's wait (10-60000; default 1000) */
    int64_t ack_wait_ms;       /* the consumer's AckWait (default 30000) */
    int nak_delay_ms;          /* redelivery delay while the store is down (default 1000) */
    char *canonical;           /* the canonical JSON */
    char version[65];          /* its SHA-256 hex */
} trigger_t;

/* Parse and validate a definition. CBM_EJSON (not JSON), CBM_EINVAL with
 * "trigger 'N': <field>: <problem>", CBM_ENOMEM. *out: trigger_destroy. */
int trigger_parse(const char *json, size_t len, trigger_t **out, cbm_error_t *err);
void trigger_destroy(trigger_t *t);

/* One message as the trigger sees it; borrowed strings. */
typedef struct trig_msg {
    const char *subject;
    const char *data;
    size_t len;
    const char *stream;
    uint64_t seq;                /* stream sequence */
    const char *msg_id;          /* the Nats-Msg-Id header, or NULL */
    const char *const *hdr_keys; /* nhdr header names and values */
    const char *const *hdr_vals;
    size_t nhdr;
} trig_msg_t;

/* One execution to start (idempotency key and inputs, JSON object text),
 * or one decision: execution, step, signal, reason (those the action
 * uses; NULL otherwise) and inputs as the signal's payload or the
 * approval's response. */
typedef struct trig_job {
    char *key;
    char *inputs;
    char *execution, *step, *signal, *reason;
} trig_job_t;

void trig_jobs_free(trig_job_t *jobs, size_t n);

/* The executions message m asks for: *n jobs (0 for an empty for_each
 * array). Keys are "trig:<name>:<key>" (":<index>" added with for_each;
 * a key part that would make the key longer than 256 bytes is replaced by
 * "sha256:<hex of it>"). CBM_EINVAL: the message is bad data, and reason
 * (NUL-terminated) says why; CBM_ENOMEM. */
int trigger_eval(const trigger_t *t, const trig_msg_t *m, trig_job_t **jobs, size_t *n,
                 char *reason, size_t reason_len);

#endif
