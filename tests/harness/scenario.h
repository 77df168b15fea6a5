/*
 * scenario.h - scenarios as data (the JSON files in tests/scenarios): a blueprint, the
 * execution's inputs, a script saying what each attempt of each step
 * returns, and what must come of it (the event types in order, the final
 * status, optionally the result).
 *
 *   {"name": "...", "blueprint": {...}, "children": [{...}, ...], "inputs": {...},
 *    "script": {"<step>": [<outcome of attempt 1>, <attempt 2>, ...]},
 *    "expect": {"events": ["ExecutionStarted", ...], "status": "completed",
 *               "result": {...}}}
 *
 * An outcome is {"ok": <result>} or {"fail": {"kind": .., "message": ..,
 * "retryable": ..}}. Attempts past the end of a step's list repeat its last
 * outcome; a step with no list returns {"ok": {"step": <name>, "attempt": n}}.
 * Attempt numbers keep growing across loop iterations, so "attempt n" is the
 * n-th time the step ran in the execution.
 *
 * "children" (optional) are the blueprints that the blueprint's subworkflow
 * steps start; they are registered first, and their task steps answer from
 * the same script (so give them step names of their own; each child counts
 * its attempts from 1). The expectation is about the parent only.
 *
 * scn_outcome() is all a runner needs to answer a step, so the same cases
 * can drive in-process handlers (tests/integration/test_scenarios.c) or
 * remote workers.
 */
#ifndef CBM_TEST_SCENARIO_H
#define CBM_TEST_SCENARIO_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct scn {
    char *path;
    cJSON *doc;              /* the whole file, owned */
    const char *name;
    char *blueprint_json;    /* the blueprint, printed */
    char *inputs_json;       /* the inputs, printed ({} when absent) */
    char **children_json;    /* the child blueprints, printed */
    size_t nchildren;
    const cJSON *script;     /* object, may be NULL */
    const cJSON *expect;     /* object */
} scn_t;

typedef struct scn_outcome {
    bool ok;
    char *json;              /* ok: the result (JSON text, malloc'd) */
    char *kind;              /* failure: kind, message (malloc'd) */
    char *message;
    bool retryable;
} scn_outcome_t;

/* Load and check a scenario file. Returns 0, or -1 with a message in err. */
int scn_load(const char *path, scn_t *out, char *err, size_t errlen);
void scn_finish(scn_t *s);

/* What attempt `attempt` (1-based) of step returns. Returns 0 or -1 (a
 * malformed outcome: the message is in o->message). Free with
 * scn_outcome_finish. Safe from any thread: it only reads the scenario. */
int scn_outcome(const scn_t *s, const char *step, int attempt, scn_outcome_t *o);
void scn_outcome_finish(scn_outcome_t *o);

/* The scenario files of dir (names ending in .json), sorted; with nonly > 0
 * only those named in only[]. *files (malloc'd names, free with
 * scn_files_free) may be empty. Returns 0, or -1 (dir unreadable, printed). */
int scn_files(const char *dir, char *const *only, int nonly, char ***files, size_t *n);
void scn_files_free(char **files, size_t n);

/* Compare a history (event types in order) and the final status and result
 * with the expectation. Returns 0, or -1 with what differs in err. */
int scn_check(const scn_t *s, const char *const *types, size_t ntypes, const char *status,
              const char *result_json, char *err, size_t errlen);

#endif
