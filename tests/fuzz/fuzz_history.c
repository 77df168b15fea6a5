/*
 * fuzz_history.c - history replay: stored events decoded (ev_decode) and
 * folded through the reducer (st_apply) by dec_fold(), the function an engine
 * resumes an execution with, against the fixed blueprint of fuzz_common.c.
 *
 * Input: one stored event per line, "<Type> <payload JSON>", e.g.
 *   ExecutionStarted {"blueprint":"fz","version":"...","inputs":{}}
 *   StepScheduled {"step":"a","attempt":1}
 * An optional first line "Snapshot <st_to_json text>" is the snapshot the
 * fold starts from (the events then follow its "seq"). Events get seq 1, 2,
 * ... (after the snapshot's) and times 1 ms apart.
 *
 * Properties, for every input:
 *  - the fold succeeds or fails with a message (never crashes, leaks, or
 *    trips UBSan);
 *  - a state that folds restores from its own snapshot text, to the same
 *    text (what the engine writes every DEC_SNAPSHOT_EVERY events);
 *  - the next decision on it (dec_build, what the engine does after the
 *    fold) runs, and, for a history without a snapshot, its encoded events,
 *    appended to the history, fold to the same state as the live one (the
 *    state-equality rule of docs/architecture.md). A snapshot can describe a
 *    state no history reaches, so after one only "runs" is checked.
 */
#include <string.h>

#include "fuzz_common.h"

#define MAX_EVENTS 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fz_text(data, size), *line, *next;
    const char *snapshot = NULL;
    store_event_t *evs = calloc(MAX_EVENTS, sizeof(*evs));
    size_t n = 0;
    int64_t seq0 = 0;

    if (text == NULL || evs == NULL) goto out;
    for (line = text; line != NULL && n < MAX_EVENTS; line = next) {
        char *sp;
        if ((next = strchr(line, '\n')) != NULL) *next++ = '\0';
        if (*line == '\0') continue;
        sp = strchr(line, ' ');
        if (sp != NULL) *sp++ = '\0';
        if (line == text && strcmp(line, "Snapshot") == 0) {
            snapshot = sp != NULL ? sp : "";
            seq0 = fz_snapshot_seq(snapshot);
            continue;
        }
        evs[n].seq = seq0 + (int64_t)n + 1;
        evs[n].recorded_at_us = fz_event_time(evs[n].seq);
        memcpy(evs[n].execution_id, FZ_EXECUTION_ID, sizeof(evs[n].execution_id));
        evs[n].type = line;
        evs[n].payload = sp != NULL ? sp : "";
        n++;
    }

    fz_replay(snapshot, evs, n);
out:
    free(evs);
    free(text);
    return 0;
}
