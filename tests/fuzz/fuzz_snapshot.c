/*
 * fuzz_snapshot.c - the snapshot reader: st_from_json() on any text, as
 * dec_fold() calls it when an engine resumes an execution whose history has
 * a snapshot (store: cbm_snapshots), against the fixed blueprint of
 * fuzz_common.c; then the checks of fuzz_history that apply after a
 * snapshot (the restored state restores again to the same text; the next
 * decision on it runs).
 *
 * Input: the snapshot text itself (a seed is any st_to_json() output; its
 * "version" must be the fixed blueprint's for it to restore at all).
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fz_text(data, size);
    if (text == NULL) return 0;
    fz_replay(text, NULL, 0);
    free(text);
    return 0;
}
