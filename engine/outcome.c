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

int cbm_step_ok(cbm_step_out_t *out, const char *result_json)
{
    char *norm;
    int rc;
    if (out == NULL || out->set) return CBM_EINVAL;
    rc = json_text_normalize(result_json != NULL ? result_json : "null", &norm);
    if (rc == CBM_ENOMEM) return rc; /* nothing recorded: the handler may try again */
    if (rc != 0) {
        cbm_step_fail(out, "bad_result", "step result is not valid JSON", false);
        return CBM_EJSON;
    }
    out->set = 1;
    out->result = norm;
    return 0;
}

int cbm_step_fail(cbm_step_out_t *out, const char *kind, const char *message, bool retryable)
{
    cJSON *o;
    if (out == NULL || out->set) return CBM_EINVAL;
    o = cJSON_CreateObject();
    if (o != NULL && cJSON_AddStringToObject(o, "kind", kind != NULL ? kind : "error") != NULL &&
        cJSON_AddStringToObject(o, "message", message != NULL ? message : "") != NULL &&
        cJSON_AddBoolToObject(o, "retryable", retryable) != NULL)
        out->error = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (out->error == NULL) return CBM_ENOMEM;
    out->set = 2;
    return 0;
}

/* Ten years: anything longer is a mistake, not a plan. */
#define MAX_WAIT_MS (10LL * 366 * 24 * 3600 * 1000)

int cbm_step_sleep(cbm_step_out_t *out, const char *result_json, int64_t duration_ms)
{
    char *norm;
    int rc;
    if (out == NULL || out->set) return CBM_EINVAL;
    if (duration_ms < 0 || duration_ms > MAX_WAIT_MS) {
        cbm_step_fail(out, "bad_sleep", "sleep duration must be 0 to 10 years", false);
        return CBM_EINVAL;
    }
    rc = json_text_normalize(result_json != NULL ? result_json : "null", &norm);
    if (rc == CBM_ENOMEM) return rc;
    if (rc != 0) {
        cbm_step_fail(out, "bad_result", "step result is not valid JSON", false);
        return CBM_EJSON;
    }
    out->set = 3;
    out->result = norm;
    out->ms = duration_ms;
    return 0;
}

int cbm_step_approval(cbm_step_out_t *out, const char *type, const char *data_json,
                      int64_t timeout_ms)
{
    char *norm;
    int rc;
    if (out == NULL || out->set) return CBM_EINVAL;
    if (timeout_ms < 0 || timeout_ms > MAX_WAIT_MS) {
        cbm_step_fail(out, "bad_approval", "approval timeout must be 0 to 10 years", false);
        return CBM_EINVAL;
    }
    rc = json_text_normalize(data_json != NULL ? data_json : "null", &norm);
    if (rc == CBM_ENOMEM) return rc;
    if (rc != 0) {
        cbm_step_fail(out, "bad_result", "approval data is not valid JSON", false);
        return CBM_EJSON;
    }
    out->type = strdup(type != NULL && *type ? type : "approval");
    if (out->type == NULL) {
        free(norm);
        return CBM_ENOMEM;
    }
    out->set = 4;
    out->result = norm;
    out->ms = timeout_ms;
    return 0;
}

