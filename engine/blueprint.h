/*
 * blueprint.h - the validated in-memory workflow graph.
 *
 * A blueprint comes from JSON (the cerebelum blueprint format, docs/blueprints.md)
 * or from the C builder, which emits the same JSON; both go through
 * bp_parse_json(), so there is one validator. The canonical JSON (keys in a
 * fixed order, defaults made explicit) is what is stored, and its SHA-256 (hex)
 * is the version.
 *
 * Immutable after parsing: the engine shares one blueprint between all its
 * executions of that version, from any thread.
 */
#ifndef CBM_ENGINE_BLUEPRINT_H
#define CBM_ENGINE_BLUEPRINT_H

#include <stddef.h>
#include <stdint.h>

#include "cerebelum/error.h"

typedef enum bp_step_kind {
    BP_TASK = 0,
    BP_SLEEP,
    BP_APPROVAL,
    BP_SIGNAL,
    BP_SUBWORKFLOW,
    BP_DELIBERATION,
} bp_step_kind_t;

typedef struct bp_retry {
    int max_attempts;        /* 1 = no retry (the default) */
    int64_t initial_ms;      /* first back-off, default 1000 */
    int64_t max_ms;          /* cap, default 60000 */
    double multiplier;       /* default 2.0 */
    char **non_retryable;    /* error kinds never retried */
    size_t n_non_retryable;
} bp_retry_t;

typedef struct bp_step {
    char *name;              /* unique within the blueprint */
    bp_step_kind_t kind;
    char *handler;           /* handler name; defaults to name */
    char *queue;             /* "local" (default) or a remote queue name */
    size_t *deps;            /* indexes into blueprint->steps */
    size_t ndeps;
    int64_t timeout_ms;      /* start-to-close; 0 = none */
    bp_retry_t retry;
} bp_step_t;

typedef struct bp_blueprint {
    char *name;
    char version[65];        /* SHA-256 hex of canonical_json */
    char *canonical_json;    /* NUL-terminated */
    bp_step_t *steps;        /* declaration order: the steps array, then the
                                timeline; each step's deps are sorted,
                                deduplicated indexes (a dependency may have a
                                higher index); the graph is acyclic */
    size_t nsteps;
} bp_blueprint_t;

/* Parse and validate blueprint JSON text (len bytes, need not be
 * NUL-terminated). On success *out is a new blueprint owned by the caller
 * (free with bp_destroy). On failure returns CBM_EJSON (malformed JSON) or
 * CBM_EBLUEPRINT and fills err with a message naming the step and the problem,
 * e.g. "step 'b': depends_on names unknown step 'x'". */
int bp_parse_json(const char *json, size_t len, bp_blueprint_t **out, cbm_error_t *err);

/* Index of the step named name, or -1. */
int bp_step_index(const bp_blueprint_t *bp, const char *name);

/* Free a blueprint (NULL is a no-op). Blueprints are allocated through
 * cJSON's allocator; free them only with this. */
void bp_destroy(bp_blueprint_t *bp);

#endif
