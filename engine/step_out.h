/*
 * step_out.h - what a step handler said it did (cerebelum.h's
 * cbm_step_out_t): the vocabulary shared by the engine, which turns it into
 * the step's event (rt_outcome_event), and the worker SDK, which sends it to
 * the server (sdk-c/worker.c). Nothing else: including it pulls in neither
 * libuv nor the runtime.
 *
 * The outcome functions (cbm_step_ok, cbm_step_fail, cbm_step_sleep,
 * cbm_step_approval; engine/outcome.c) fill it, once.
 */
#ifndef CBM_ENGINE_STEP_OUT_H
#define CBM_ENGINE_STEP_OUT_H

#include <stdint.h>

#include "cerebelum/error.h"

/* Kinds of outcome: name, value, meaning. */
#define CBM_OUT_MAP(XX)                                                        \
    XX(NONE, 0, "nothing said yet")                                            \
    XX(OK, 1, "completed with a result")                                       \
    XX(FAILED, 2, "failed")                                                    \
    XX(SLEEP, 3, "completed, then sleeps")                                     \
    XX(APPROVAL, 4, "waits for a person's approval")

typedef enum cbm_out_kind {
#define XX(name, val, what) CBM_OUT_##name = (val),
    CBM_OUT_MAP(XX)
#undef XX
} cbm_out_kind_t;

/* Where cbm_step_on_cancel() leaves its callback: the runner of the
 * attempt (the worker SDK) provides one; NULL where nothing can cancel. */
typedef struct cbm_cancel_slot cbm_cancel_slot_t;
struct cbm_cancel_slot {
    void (*set)(cbm_cancel_slot_t *slot, void (*fn)(void *arg), void *arg);
};

struct cbm_step_out {
    cbm_out_kind_t kind;
    char *result;   /* normalised JSON (OK, SLEEP) or the approval's data */
    char *error;    /* normalised JSON {"kind","message","retryable"} (FAILED) */
    char *type;     /* approval type (APPROVAL) */
    int64_t ms;     /* sleep duration (SLEEP) or approval time-out (APPROVAL) */
    cbm_cancel_slot_t *cancel; /* set by the runner before the handler runs */
};

/* cbm_step_ok for a result that must be refused, not recorded, when it is
 * bad (a worker's SubmitResult): 0, or CBM_EINVAL / CBM_EJSON / CBM_ENOMEM
 * with the reason naming field, and out left unset. */
int outcome_ok_checked(struct cbm_step_out *out, const char *result_json, const char *field,
                       cbm_error_t *err);

#endif
