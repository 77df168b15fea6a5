/*
 * event.h - the event catalogue (DESIGN.md section 3) and the decoded form of
 * an event that the reducer folds.
 *
 * On the wire and in the store an event is (type name, JSON payload text). The
 * engine builds payloads by concatenation from already-normalised JSON pieces
 * (results are normalised by the worker thread that produced them), and the
 * reducer works on eng_event_t, so the loop thread parses no JSON on the live
 * path. Rebuilding from the store decodes each payload once (ev_decode).
 */
#ifndef CBM_ENGINE_EVENT_H
#define CBM_ENGINE_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cerebelum/error.h"

#define EV_TYPE_MAP(XX)          \
    XX(EXECUTION_STARTED, "ExecutionStarted")     \
    XX(STEP_SCHEDULED, "StepScheduled")           \
    XX(STEP_STARTED, "StepStarted")               \
    XX(STEP_COMPLETED, "StepCompleted")           \
    XX(STEP_FAILED, "StepFailed")                 \
    XX(STEP_RETRY_SCHEDULED, "StepRetryScheduled") \
    XX(DIVERGE_TAKEN, "DivergeTaken")             \
    XX(BRANCH_TAKEN, "BranchTaken")               \
    XX(JUMP_TAKEN, "JumpTaken")                   \
    XX(SLEEP_STARTED, "SleepStarted")             \
    XX(TIMER_FIRED, "TimerFired")                 \
    XX(APPROVAL_REQUESTED, "ApprovalRequested")   \
    XX(APPROVAL_GRANTED, "ApprovalGranted")       \
    XX(APPROVAL_REJECTED, "ApprovalRejected")     \
    XX(APPROVAL_TIMED_OUT, "ApprovalTimedOut")    \
    XX(SIGNAL_RECEIVED, "SignalReceived")         \
    XX(CHILD_STARTED, "ChildStarted")             \
    XX(CHILD_COMPLETED, "ChildCompleted")         \
    XX(CANCEL_REQUESTED, "CancelRequested")       \
    XX(RESULT_IGNORED, "ResultIgnored")           \
    XX(EXECUTION_COMPLETED, "ExecutionCompleted") \
    XX(EXECUTION_FAILED, "ExecutionFailed")       \
    XX(EXECUTION_CANCELLED, "ExecutionCancelled")

typedef enum ev_type {
    EV_UNKNOWN = 0,
#define XX(sym, name) EV_##sym,
    EV_TYPE_MAP(XX)
#undef XX
} ev_type_t;

const char *ev_type_name(ev_type_t t);
ev_type_t ev_type_from_name(const char *name);

/*
 * A decoded event. String members are owned by the event (ev_finish frees
 * them); which members are set depends on the type (payload keys in quotes):
 *   ExecutionStarted:   blueprint, version, json = "inputs"; a child
 *                       execution also has "parent": {"execution_id" =
 *                       name, "step" = text, "attempt" = attempt}, the
 *                       subworkflow step (and attempt) that started it
 *   StepScheduled:      step, attempt
 *   StepCompleted:      step, attempt, json = "result"
 *   StepFailed:         step, attempt, json = "error" {kind,message,retryable}
 *   StepRetryScheduled: step, attempt (the next one), due_us = "due_us"
 *   SleepStarted:       step, attempt, due_us = "until_us", json = "result"
 *   DivergeTaken:       step, rule = "rule", action = "action" (bp_action_t;
 *                       also "on" for reading), target = "target" (back_to,
 *                       skip_to), iteration = "iteration" (retry, back_to),
 *                       set = "reopened" (retry, back_to) or "skipped"
 *                       (skip_to), step names in step order
 *   BranchTaken:        step, rule = "entry" (-1/null: none held), target =
 *                       "to" (-1/null: none), set = "skipped"
 *   JumpTaken:          not emitted (re-opening is part of DivergeTaken)
 *   ChildStarted:       step, attempt, name = "child" (the child's id),
 *                       blueprint, version (NULL/null: the latest when the
 *                       child starts), json = "inputs"
 *                       (the parent's state keeps the child's id and this
 *                       event's seq, and arms the timer "child:<step>")
 *   ChildCompleted:     step, attempt, name = "child", text = "status"
 *                       (completed, failed, cancelled), json = "result"
 *                       (completed: the child's execution result) or
 *                       "error" (failed: the child's execution error
 *                       {step,kind,message}; cancelled: {"reason": ..},
 *                       the child's ExecutionCancelled payload). Inputs the
 *                       runtime makes from a child's end carry step -1 and
 *                       are resolved by the child's id (rt_child_resolve)
 *   TimerFired:         name = "key"; "child:<step>" re-arms itself (the
 *                       runtime then looks at the child)
 *   ApprovalRequested:  step, attempt, name = "type", json = "data",
 *                       timeout_ms, due_us = "deadline_us" (0: none)
 *   ApprovalGranted:    step, json = "response", who = "by"
 *   ApprovalRejected:   step, text = "reason", who = "by"
 *   ApprovalTimedOut:   step
 *   SignalReceived:     name, json = "payload"
 *   CancelRequested:    text = "reason"
 *   ResultIgnored:      step, attempt, text = "reason" (a remote worker's
 *                       result that came too late or twice; changes nothing)
 *   ExecutionCompleted: json = "result"
 *   ExecutionFailed:    json = "error" {step,kind,message}
 *   ExecutionCancelled: text = "reason"
 * step is an index into the blueprint (-1 when the type has none).
 */
typedef struct eng_event {
    ev_type_t type;
    int64_t seq;
    int64_t at_us;
    int step;
    int attempt;
    char *blueprint;
    char *version;
    char *json;
    char *name;
    char *text;
    char *who;
    int64_t due_us;
    int64_t timeout_ms;
    /* Routing (DivergeTaken, BranchTaken). */
    int rule;
    int action;
    int target;
    int iteration;
    int *set;           /* step indexes, owned */
    size_t nset;
    void *origin;       /* runtime only, never encoded: the caller waiting for
                           this input's fate (a remote result), or NULL */
} eng_event_t;

struct bp_blueprint;

void ev_finish(eng_event_t *ev);

/* Payload text of ev (malloc'd; NULL on OOM). bp names the steps. */
char *ev_encode(const eng_event_t *ev, const struct bp_blueprint *bp);

/* Decode a stored (type, payload) pair. bp may be NULL only for
 * ExecutionStarted (which names the blueprint). JSON members are normalised
 * with cJSON_PrintUnformatted, the same form the live path uses. CBM_EJSON
 * for a payload that does not follow, CBM_ENOMEM. */
int ev_decode(const char *type, const char *payload, int64_t seq, int64_t at_us,
              const struct bp_blueprint *bp, eng_event_t *out, cbm_error_t *err);

/* Normalise JSON text (parse + unformatted print). NULL if it does not parse
 * or holds text the store refuses (cbm_json_check). */
char *json_normalize(const char *text);

/* The same with the reason: 0 and *out (free it), CBM_EINVAL naming field
 * (not UTF-8, a NUL), CBM_EJSON (does not parse), CBM_ENOMEM. */
int json_normalize_field(const char *text, const char *field, char **out, cbm_error_t *err);

/* Bounds of the numbers a stored payload or snapshot may hold: an attempt, a
 * time in microseconds (|t| <= 2^53, the range a JSON number and the store
 * keep exactly; now + 10 years stays far inside int64_t). A decoder refuses
 * a number outside its bounds rather than convert it: the conversion of a
 * double out of range (1e300) is undefined, and a huge attempt or time
 * would overflow later arithmetic. */
#define EV_MAX_ATTEMPT 1000000000
#define EV_MAX_TIME_US (INT64_C(1) << 53)

struct cJSON;
/* v as an integer in [min, max] (a fraction is cut off) into *out; false
 * when v is not a number or is out of range (NaN and infinities included). */
bool json_int_in(const struct cJSON *v, int64_t min, int64_t max, int64_t *out);

#endif
