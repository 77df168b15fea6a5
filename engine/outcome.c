/*
 * outcome.c - what a step handler says it did: cbm_step_ok, cbm_step_fail,
 * cbm_step_sleep, cbm_step_approval (cerebelum.h). They run on the handler's
 * pool thread and only fill the handler's cbm_step_out; the loop turns it
 * into the step's event when the handler returns.
 */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/event.h"
#include "engine/json_text.h"
#include "engine/runtime_internal.h"

/* ---------------------------------------------------------------- outcomes */

/* A handler's JSON, normalised; on a problem the step fails (not
 * retryable: the same code gives the same answer) with the reason. */
static int take_json(cbm_step_out_t *out, const char *json, const char *field, char **norm)
{
    cbm_error_t err = {0};
    int rc = json_normalize_field(json != NULL ? json : "null", field, norm, &err);
    if (rc != 0 && rc != CBM_ENOMEM) cbm_step_fail(out, "bad_result", err.message, false);
    return rc;
}

int outcome_ok_checked(cbm_step_out_t *out, const char *result_json, const char *field,
                       cbm_error_t *err)
{
    char *norm;
    int rc;
    if (out == NULL || out->kind != CBM_OUT_NONE)
        return cbm_error_set(err, CBM_EINVAL, "outcome already set");
    rc = json_normalize_field(result_json != NULL ? result_json : "null", field, &norm, err);
    if (rc != 0) return rc;
    out->kind = CBM_OUT_OK;
    out->result = norm;
    return 0;
}

int cbm_step_ok(cbm_step_out_t *out, const char *result_json)
{
    char *norm;
    int rc;
    if (out == NULL || out->kind != CBM_OUT_NONE) return CBM_EINVAL;
    if ((rc = take_json(out, result_json, "step result", &norm)) != 0) return rc;
    out->kind = CBM_OUT_OK;
    out->result = norm;
    return 0;
}

/* A Retry-After longer than a day is a mistake: capped there. */
#define MAX_RETRY_AFTER_MS (24LL * 3600 * 1000)

/* The error object {"kind","message","retryable"[,"retry_after_ms"]}. */
static int fail(cbm_step_out_t *out, const char *kind, const char *message, bool retryable,
                int64_t retry_after_ms)
{
    cJSON *o;
    char *k, *m;
    if (out == NULL || out->kind != CBM_OUT_NONE) return CBM_EINVAL;
    /* Recorded whatever they hold: bytes that are not UTF-8 become U+FFFD
     * (the failure must be stored; refusing it would lose it). */
    k = cbm_text_sanitize(kind != NULL && *kind ? kind : "error");
    m = cbm_text_sanitize(message != NULL ? message : "");
    o = cJSON_CreateObject();
    if (o == NULL || k == NULL || m == NULL || cJSON_AddStringToObject(o, "kind", k) == NULL ||
        cJSON_AddStringToObject(o, "message", m) == NULL ||
        cJSON_AddBoolToObject(o, "retryable", retryable) == NULL ||
        (retry_after_ms > 0 &&
         cJSON_AddNumberToObject(o, "retry_after_ms", (double)retry_after_ms) == NULL)) {
        cJSON_Delete(o);
        free(k);
        free(m);
        return CBM_ENOMEM;
    }
    out->error = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    free(k);
    free(m);
    if (out->error == NULL) return CBM_ENOMEM;
    out->kind = CBM_OUT_FAILED;
    return 0;
}

int cbm_step_fail(cbm_step_out_t *out, const char *kind, const char *message, bool retryable)
{
    return fail(out, kind, message, retryable, 0);
}

int cbm_step_fail_after(cbm_step_out_t *out, const char *kind, const char *message,
                        int64_t retry_after_ms)
{
    if (retry_after_ms > MAX_RETRY_AFTER_MS) retry_after_ms = MAX_RETRY_AFTER_MS;
    return fail(out, kind, message, true, retry_after_ms < 0 ? 0 : retry_after_ms);
}

void cbm_step_on_cancel(cbm_step_out_t *out, cbm_cancel_fn fn, void *arg)
{
    if (out != NULL && out->cancel != NULL) out->cancel->set(out->cancel, fn, arg);
}

/* Ten years: anything longer is a mistake, not a plan. */
#define MAX_WAIT_MS (10LL * 366 * 24 * 3600 * 1000)

int cbm_step_sleep(cbm_step_out_t *out, const char *result_json, int64_t duration_ms)
{
    char *norm;
    int rc;
    if (out == NULL || out->kind != CBM_OUT_NONE) return CBM_EINVAL;
    if (duration_ms < 0 || duration_ms > MAX_WAIT_MS) {
        cbm_step_fail(out, "bad_sleep", "sleep duration must be 0 to 10 years", false);
        return CBM_EINVAL;
    }
    if ((rc = take_json(out, result_json, "step result", &norm)) != 0) return rc;
    out->kind = CBM_OUT_SLEEP;
    out->result = norm;
    out->ms = duration_ms;
    return 0;
}

int cbm_step_approval(cbm_step_out_t *out, const char *type, const char *data_json,
                      int64_t timeout_ms)
{
    char *norm;
    int rc;
    if (out == NULL || out->kind != CBM_OUT_NONE) return CBM_EINVAL;
    if (timeout_ms < 0 || timeout_ms > MAX_WAIT_MS) {
        cbm_step_fail(out, "bad_approval", "approval timeout must be 0 to 10 years", false);
        return CBM_EINVAL;
    }
    if ((rc = take_json(out, data_json, "approval data", &norm)) != 0) return rc;
    out->type = cbm_text_sanitize(type != NULL && *type ? type : "approval");
    if (out->type == NULL) {
        free(norm);
        return CBM_ENOMEM;
    }
    out->kind = CBM_OUT_APPROVAL;
    out->result = norm;
    out->ms = timeout_ms;
    return 0;
}

