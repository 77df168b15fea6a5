/*
 * fuzz_blueprint.c - the blueprint parser and validator (bp_parse_json), its
 * canonical form, and the check of an execution's inputs (bp_check_inputs).
 *
 * Input: blueprint JSON text, optionally followed by a line "%%" and the
 * inputs JSON of an execution. The blueprint part is handed over in a buffer
 * of exactly its length, not NUL-terminated, as bp_parse_json allows, so
 * ASan sees a read past its end.
 *
 * Properties:
 *  - a refused blueprint has a code (CBM_EJSON, CBM_EBLUEPRINT, CBM_EINVAL)
 *    and a message;
 *  - a valid blueprint's canonical JSON parses again to the same canonical
 *    JSON and version (the version is the identity of a blueprint);
 *  - step names are unique (bp_step_index finds each step at its index);
 *  - inputs are accepted or refused with CBM_EJSON / CBM_EINVAL and a
 *    message; accepted inputs, normalised, are accepted again unchanged.
 */
#include <string.h>

#include "fuzz_common.h"

#define SEP "\n%%\n"

static void check_canonical(const bp_blueprint_t *bp)
{
    bp_blueprint_t *again = NULL;
    cbm_error_t err = {0};
    int rc = bp_parse_json(bp->canonical_json, strlen(bp->canonical_json), &again, &err);
    FZ_CHECK(rc == 0, "canonical JSON does not parse: %s\n  %s", err.message, bp->canonical_json);
    FZ_CHECK(strcmp(again->canonical_json, bp->canonical_json) == 0,
             "canonical JSON is not stable:\n  %s\n  %s", bp->canonical_json,
             again->canonical_json);
    FZ_CHECK(strcmp(again->version, bp->version) == 0, "version differs");
    bp_destroy(again);
}

static void check_inputs(const bp_blueprint_t *bp, const char *inputs)
{
    cbm_error_t err = {0};
    char *norm = NULL, *norm2 = NULL;
    int rc = bp_check_inputs(bp, inputs, &norm, &err);
    if (rc != 0) {
        FZ_CHECK((rc == CBM_EJSON || rc == CBM_EINVAL || rc == CBM_ENOMEM) && err.code == rc &&
                     err.message[0] != '\0',
                 "inputs refused without a reason: %d", rc);
        return;
    }
    FZ_CHECK(norm != NULL, "accepted inputs have no normalised form");
    rc = bp_check_inputs(bp, norm, &norm2, &err);
    FZ_CHECK(rc == 0, "normalised inputs refused: %s\n  %s", err.message, norm);
    FZ_CHECK(strcmp(norm, norm2) == 0, "normalising is not stable:\n  %s\n  %s", norm, norm2);
    cJSON_free(norm);
    cJSON_free(norm2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *sep = memmem(data, size, SEP, strlen(SEP));
    size_t len = sep != NULL ? (size_t)(sep - data) : size;
    char *json = malloc(len ? len : 1), *inputs = NULL;
    bp_blueprint_t *bp = NULL;
    cbm_error_t err = {0};
    int rc;

    if (json == NULL) return 0;
    if (len > 0) memcpy(json, data, len);
    if (sep != NULL) {
        size_t off = len + strlen(SEP);
        inputs = fz_text(data + off, size - off);
    }
    rc = bp_parse_json(json, len, &bp, &err);
    if (rc != 0) {
        FZ_CHECK(bp == NULL, "a refused blueprint is returned");
        /* CBM_EINVAL: text the store would refuse (not UTF-8, a NUL), once the
         * edge checks of issue 9 are in. */
        FZ_CHECK((rc == CBM_EJSON || rc == CBM_EBLUEPRINT || rc == CBM_EINVAL ||
                  rc == CBM_ENOMEM) &&
                     err.code == rc && err.message[0] != '\0',
                 "blueprint refused without a reason: %d", rc);
        goto out;
    }
    check_canonical(bp);
    for (size_t i = 0; i < bp->nsteps; i++)
        FZ_CHECK(bp_step_index(bp, bp->steps[i].name) == (int)i, "step name '%s' is not unique",
                 bp->steps[i].name);
    check_inputs(bp, inputs != NULL ? inputs : "{}");
out:
    bp_destroy(bp);
    free(inputs);
    free(json);
    return 0;
}
