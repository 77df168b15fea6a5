/*
 * bp_inputs.c - checking an execution's inputs against the blueprint's
 * declarations (bp_check_inputs).
 */
#include <assert.h>
#include <cJSON.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/blueprint_internal.h"
#include "engine/match.h"

/* ------------------------------------------------------------------------ */
/* Execution inputs                                                         */
/* ------------------------------------------------------------------------ */

static const bp_input_t *input_decl(const bp_blueprint_t *bp, const char *name)
{
    return bp_find_input(bp, name, strlen(name));
}

int bp_check_inputs(const bp_blueprint_t *bp, const char *inputs_json, char **normalized_out,
                cbm_error_t *err)
{
    const char *text = inputs_json != NULL && inputs_json[0] != '\0' ? inputs_json : "{}";
    const cJSON **keys = NULL;
    cJSON *root;
    const cJSON *it;
    size_t n = 0, i = 0;
    int rc = 0;

    if (normalized_out != NULL) *normalized_out = NULL;
    if (bp == NULL) return cbm_error_set(err, CBM_EINVAL, "bp_check_inputs: bp is NULL");
    if ((root = bp_parse_text(text, strlen(text), "inputs", err, &rc)) == NULL) return rc;
    if (!cJSON_IsObject(root)) {
        rc = cbm_error_set(err, CBM_EINVAL, "inputs must be a JSON object");
        goto out;
    }

    /* Repeated keys, found by sorting (inputs may be large). */
    cJSON_ArrayForEach(it, root) n++;
    if ((keys = bp_xcalloc(n, sizeof(*keys))) == NULL) goto nomem;
    cJSON_ArrayForEach(it, root) keys[i++] = it;
    if (n > 1) qsort(keys, n, sizeof(*keys), bp_cmp_member);
    for (i = 1; i < n; i++)
        if (strcmp(keys[i - 1]->string, keys[i]->string) == 0) {
            rc = cbm_error_set(err, CBM_EINVAL, "input '%.64s' is given twice", keys[i]->string);
            goto out;
        }

    if (bp->inputs_declared) {
        cJSON_ArrayForEach(it, root) {
            const bp_input_t *in = input_decl(bp, it->string);
            if (in == NULL) {
                char list[256] = "";
                size_t used = 0;
                for (size_t k = 0; k < bp->ninputs; k++) {
                    int w = snprintf(list + used, sizeof(list) - used, "%s%s", k ? ", " : "",
                                     bp->inputs[k].name);
                    if (w < 0 || (size_t)w >= sizeof(list) - used) break;
                    used += (size_t)w;
                }
                if (bp->ninputs == 0)
                    rc = cbm_error_set(err, CBM_EINVAL,
                                       "unknown input '%.64s' (blueprint '%s' declares no inputs)",
                                       it->string, bp->name);
                else
                    rc = cbm_error_set(err, CBM_EINVAL, "unknown input '%.64s' (declared: %s)",
                                       it->string, list);
                goto out;
            }
            if (!bp_type_ok(in->type, it)) {
                rc = cbm_error_set(err, CBM_EINVAL, "input '%s' must be %s (got %s)", in->name,
                                   bp_input_type_nouns[in->type], bp_json_type_name(it));
                goto out;
            }
        }
        for (size_t k = 0; k < bp->ninputs; k++) {
            const bp_input_t *in = &bp->inputs[k];
            cJSON *c;
            if (cJSON_GetObjectItemCaseSensitive(root, in->name) != NULL) continue;
            if (in->required) {
                rc = cbm_error_set(err, CBM_EINVAL, "input '%s' is required", in->name);
                goto out;
            }
            if (in->default_value == NULL) continue;
            if ((c = cJSON_Duplicate(in->default_value, true)) == NULL) goto nomem;
            if (!cJSON_AddItemToObject(root, in->name, c)) {
                cJSON_Delete(c);
                goto nomem;
            }
        }
    }
    if (normalized_out != NULL && (*normalized_out = cJSON_PrintUnformatted(root)) == NULL)
        goto nomem;
    goto out;
nomem:
    rc = cbm_error_set(err, CBM_ENOMEM, "out of memory while checking inputs");
out:
    cJSON_free(keys);
    cJSON_Delete(root);
    return rc;
}

