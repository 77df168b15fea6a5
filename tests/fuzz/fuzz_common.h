/*
 * fuzz_common.h - what the fuzz targets share (docs/fuzzing.md): splitting
 * an input into parts, the fixed blueprint that histories and snapshots are
 * replayed against, and FZ_CHECK for properties.
 *
 * A target's findings are crashes, sanitizer reports (ASan, LSan, UBSan) and
 * failed FZ_CHECKs: a property that must hold for every input (a state that
 * folds also restores from its snapshot, a condition the validator accepts
 * also evaluates). FZ_CHECK aborts, so libFuzzer saves the input.
 */
#ifndef CBM_TESTS_FUZZ_COMMON_H
#define CBM_TESTS_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/blueprint.h"
#include "engine/state.h"
#include "store/store.h"

#define FZ_CHECK(cond, ...)                                                     \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "FZ_CHECK failed at %s:%d: %s\n", __FILE__,         \
                    __LINE__, #cond);                                           \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
            abort();                                                            \
        }                                                                       \
    } while (0)

/* The input as a NUL-terminated copy (malloc'd; NULL on OOM). Bytes after an
 * embedded NUL are invisible to the C-string parsers, as they are to the
 * engine's. */
char *fz_text(const uint8_t *data, size_t size);

/* Split text in place at each occurrence of sep (not kept): parts[0..n),
 * at most max of them (the last keeps the rest). Returns n >= 1. */
size_t fz_split(char *text, const char *sep, char **parts, size_t max);

/* The blueprint that fuzz_history and fuzz_snapshot replay against: every
 * step kind, retry, time-outs, every diverge action, a branch, a remote
 * queue, declared inputs and an execution-wide deadline. Parsed once, never
 * freed (the process ends with it). */
const bp_blueprint_t *fz_blueprint(void);
/* Its JSON text. */
extern const char fz_blueprint_json[];

/* The execution id every replayed history has. */
#define FZ_EXECUTION_ID "00000000-0000-4000-8000-00000000f022"
/* The time of event seq: 1 ms apart from a fixed start. */
#define FZ_T0_US INT64_C(1767225600000000) /* 2026-01-01T00:00:00Z */
static inline int64_t fz_event_time(int64_t seq) { return FZ_T0_US + seq * 1000; }

/* fuzz_replay.c: fold snapshot (NULL: none) and evs as an engine resuming the
 * execution does (dec_fold), and check the properties of fuzz_history.c. */
void fz_replay(const char *snapshot, const store_event_t *evs, size_t n);
/* The next decision on st, folded from evs (no snapshot), with the incoming
 * events in[0..nin) (ev_finish()ed here): dec_build, as the engine decides;
 * its encoded events, appended to evs, must fold to the same state. st is
 * the live state afterwards (or partly applied, when dec_build failed). */
void fz_check_decision(st_exec_t *st, const store_event_t *evs, size_t n, eng_event_t *in,
                       size_t nin);
/* The seq of a snapshot's text (its "seq", 0 when there is none), which the
 * store keeps beside it; the events that follow it start after it. */
int64_t fz_snapshot_seq(const char *snapshot);

/* Canonical text of a state (st_to_json); aborts on OOM, which is not a
 * finding here. */
char *fz_state_json(const st_exec_t *st);

#endif
