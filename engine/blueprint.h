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
 * executions of that version, from any thread. That includes the cJSON trees
 * it holds (patterns, conditions, templates, defaults): read them, never
 * modify them; match.h evaluates them.
 */
#ifndef CBM_ENGINE_BLUEPRINT_H
#define CBM_ENGINE_BLUEPRINT_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cerebelum/error.h"

/* Longest duration or time-out a blueprint may hold: 10 years of 365 days, in
 * milliseconds. Applies to every *_ms field (timeout_ms, heartbeat_timeout_ms,
 * duration_ms, retry.initial_ms, retry.max_ms), so that now_us + ms * 1000
 * cannot overflow. */
#define BP_MAX_DURATION_MS INT64_C(315360000000)
/* Largest max_iterations of a diverge rule. */
#define BP_MAX_ITERATIONS 10000
/* Largest args object of a task step, in bytes of its canonical JSON. */
#define BP_MAX_ARGS_BYTES 65536

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

/* What a diverge rule matches: the step's result (it completed) or its error
 * (it failed, after its retry policy gave up): the error object
 * {"kind": ..., "message": ..., "retryable": ...}. */
typedef enum bp_match_on {
    BP_ON_RESULT = 0,
    BP_ON_ERROR,
} bp_match_on_t;

/* What a matching diverge rule does (docs/blueprints.md, "Diverge"). */
typedef enum bp_action {
    BP_ACTION_RETRY = 0,     /* run the step again (a back_to to itself) */
    BP_ACTION_BACK_TO,       /* re-open target (an ancestor) and every step that
                                depends on it, directly or not */
    BP_ACTION_SKIP_TO,       /* skip the steps between this one and target (a
                                descendant); target runs next */
    BP_ACTION_FAIL,          /* fail the execution */
    BP_ACTION_CONTINUE,      /* go on as if no rule matched; on error: the step
                                counts as completed, the error object its result */
} bp_action_t;

/* One diverge rule. Rules are tried in order; the first whose pattern matches
 * (match_pattern(), match.h) is taken. */
typedef struct bp_diverge {
    cJSON *match;            /* the pattern, canonical (object keys sorted);
                                owned by the blueprint */
    bp_match_on_t on;        /* default BP_ON_RESULT */
    bp_action_t action;
    int target;              /* back_to, skip_to: index into steps; -1 otherwise */
    int max_iterations;      /* retry, back_to: how many times this rule's jump
                                may be taken in one execution, 1 .. 10000 (the
                                next match fails the execution with kind
                                loop_limit); 0 for the other actions */
} bp_diverge_t;

/* One branch entry. Entries are tried in order; the first whose condition
 * holds (cond_eval(), match.h, on the step's result) picks its step. The
 * otherwise entry, if any, is the last one and has when == NULL. */
typedef struct bp_branch {
    cJSON *when;             /* the condition, canonical (object keys sorted);
                                owned; NULL for otherwise */
    int to;                  /* index into steps: a step that depends directly
                                on this one */
} bp_branch_t;

/* --- kind deliberation (docs/deliberation.md, docs/blueprints.md) ------- */

/* Most agents of a deliberation, most rounds. */
#define BP_DELIB_MAX_AGENTS 16
#define BP_DELIB_MAX_ROUNDS 5

typedef enum bp_topology {
    BP_TOPOLOGY_NONE = 0,    /* best of N: no critique */
    BP_TOPOLOGY_RING,        /* agent i critiques agent (i + 1) mod N */
    BP_TOPOLOGY_ALL_TO_ALL,  /* every agent critiques every other */
} bp_topology_t;

typedef enum bp_scoring {
    BP_SCORING_JUDGE = 0,    /* one LLM call per proposal, against the rubric */
    BP_SCORING_HANDLER,      /* a handler of the user's per proposal */
    BP_SCORING_NONE,
} bp_scoring_t;

typedef enum bp_selection {
    BP_SELECT_TOP_SCORE = 0,
    BP_SELECT_THRESHOLD_FIRST,
    BP_SELECT_APPROVAL,
    BP_SELECT_ALL,
} bp_selection_t;

/* The fields of a deliberation step, defaults filled in. Owned by the step. */
typedef struct bp_delib {
    char *council;           /* the council's name */
    char *council_version;   /* 64 lowercase hex digits; NULL = the latest when
                                the child starts */
    cJSON *task;             /* template (any JSON, canonical): the task */
    cJSON *context;          /* template (canonical); a JSON null when not set */
    int agents;              /* 1 .. BP_DELIB_MAX_AGENTS; 0 = the council's
                                size, known when the child starts */
    int rounds;              /* 0 .. BP_DELIB_MAX_ROUNDS; default 1 (0 for
                                topology none) */
    bp_topology_t topology;  /* default ring */
    bp_scoring_t scoring;    /* scoring.mode, default judge */
    char *scoring_handler;   /* scoring.handler: mode handler only, else NULL */
    char *scoring_queue;     /* scoring.queue: mode handler only (default
                                "local"), else NULL */
    bp_selection_t rule;     /* selection.rule, default top_score */
    int top_k;               /* 1 .. 16, default 3 */
    int min_proposals;       /* 1 .. 16, default 1 */
    double threshold;        /* 0 .. 1 for threshold_first; -1 otherwise */
    /* model: overrides of the council's model; unset ones are absent */
    double temperature;      /* 0 .. 2; -1 = not set */
    double top_p;            /* (0, 1]; -1 = not set */
    int64_t max_tokens;      /* 1 .. 1000000; 0 = not set */
    cJSON *response_format;  /* an object (canonical); NULL = not set */
    /* call: every LLM call of the deliberation */
    int64_t call_timeout_ms;            /* 0 = none */
    int64_t call_heartbeat_timeout_ms;  /* 0 = none; at most call_timeout_ms
                                           when that is set */
    bp_retry_t call_retry;
    /* budget */
    int64_t max_calls;       /* 1 .. 100000, attempts included; 0 = no bound */
    int64_t max_completion_tokens; /* 1 .. 1e9; 0 = no bound */
    int64_t budget_timeout_ms;     /* the child's timeout_ms; 0 = none */
} bp_delib_t;

/* A capability a task requires of the worker that runs it. */
typedef struct bp_capability {
    char *key;               /* a name */
    char *value;             /* any string */
} bp_capability_t;

typedef struct bp_step {
    char *name;              /* unique within the blueprint */
    bp_step_kind_t kind;
    char *handler;           /* handler name; defaults to name */
    char *queue;             /* "local" (default) or a remote queue name */
    size_t *deps;            /* indexes into blueprint->steps */
    size_t ndeps;
    int64_t timeout_ms;      /* 0 = none. task: start-to-close of one attempt;
                                approval: deadline for the decision; signal:
                                deadline for the signal; other kinds: no effect.
                                At most BP_MAX_DURATION_MS. */
    bp_retry_t retry;

    /* --- derived ------------------------------------------------------ */
    size_t *dependents;      /* the steps whose deps include this one, sorted */
    size_t ndependents;

    /* --- kind sleep (-1 in both for every other kind) ------------------- */
    int64_t sleep_ms;        /* duration_ms, 0 .. BP_MAX_DURATION_MS; -1 when
                                not set */
    int64_t sleep_until_us;  /* until, microseconds since 1970-01-01T00:00:00Z
                                (>= 0); -1 when not set. Exactly one of the two
                                is set on a sleep step. */

    /* --- kind approval ------------------------------------------------- */
    char *approval_type;     /* approval steps: approval_type, default the
                                step's name; NULL for other kinds */

    /* --- kind signal --------------------------------------------------- */
    char *signal;            /* signal steps: the signal name waited for,
                                default the step's name; NULL for other kinds */

    /* --- kind task ----------------------------------------------------- */
    int64_t heartbeat_timeout_ms; /* 0 = none; at most timeout_ms when that
                                     is set; 0 for other kinds */
    bp_capability_t *requires;    /* sorted by key, keys unique; NULL when none */
    size_t nrequires;
    cJSON *args;             /* args: a constant object (canonical), copied
                                into the step's input as "args"; NULL when
                                not set ({} is set) */
    char *args_json;         /* the same as JSON text, at most
                                BP_MAX_ARGS_BYTES; NULL with it */

    /* --- kind subworkflow (all NULL for other kinds) -------------------- */
    char *sub_blueprint;     /* blueprint: the child blueprint's name */
    char *sub_version;       /* version: 64 lowercase hex digits; NULL = the
                                latest version when the child starts */
    cJSON *sub_inputs;       /* inputs: the template (an object, canonical);
                                NULL = the child starts with {}; build the
                                child's inputs with match_template() */
    char *sub_inputs_json;   /* the same template as JSON text; NULL with it */

    /* --- kind deliberation (NULL for other kinds) ----------------------- */
    bp_delib_t *delib;

    /* --- routing (any kind) -------------------------------------------- */
    bp_diverge_t *diverge;   /* rules in order; NULL when none */
    size_t ndiverge;
    bp_branch_t *branch;     /* entries in order; NULL when none */
    size_t nbranch;
} bp_step_t;

/* Type of a declared input. */
typedef enum bp_input_type {
    BP_IN_ANY = 0,           /* no type given: any JSON value */
    BP_IN_STRING,
    BP_IN_NUMBER,            /* any finite number */
    BP_IN_INTEGER,           /* a number without a fractional part, |n| <= 2^53 - 1 */
    BP_IN_BOOLEAN,
    BP_IN_OBJECT,
    BP_IN_ARRAY,
} bp_input_type_t;

/* One declared execution input (top-level "inputs"). */
typedef struct bp_input {
    char *name;              /* [A-Za-z0-9_-], 1 .. 128 characters */
    bp_input_type_t type;
    bool required;           /* default false; a required input has no default */
    cJSON *default_value;    /* canonical; owned; NULL when none */
} bp_input_t;

typedef struct bp_blueprint {
    char *name;
    char version[65];        /* SHA-256 hex of canonical_json */
    char *canonical_json;    /* NUL-terminated */
    bp_step_t *steps;        /* declaration order: the steps array, then the
                                timeline; each step's deps are sorted,
                                deduplicated indexes (a dependency may have a
                                higher index); the graph is acyclic (diverge
                                jumps are not dependencies) */
    size_t nsteps;
    int64_t timeout_ms;      /* top-level "timeout_ms": the execution-wide
                                deadline from its start; 0 = none */
    bool inputs_declared;    /* the blueprint has a top-level "inputs" (maybe
                                empty): execution inputs are then checked
                                strictly by bp_check_inputs() */
    bp_input_t *inputs;      /* sorted by name; NULL when none */
    size_t ninputs;
} bp_blueprint_t;

/* A task step that runs on a remote worker (its queue is not "local"). */
static inline bool bp_step_remote(const bp_step_t *s)
{
    return s->kind == BP_TASK && s->queue != NULL && strcmp(s->queue, "local") != 0;
}

/* Parse and validate blueprint JSON text (len bytes, need not be
 * NUL-terminated). On success *out is a new blueprint owned by the caller
 * (free with bp_destroy). On failure returns CBM_EJSON (malformed JSON),
 * CBM_EINVAL (text that is not UTF-8, or holds a NUL or \u0000: what
 * PostgreSQL could not store; cbm_json_check), CBM_ENOMEM, or
 * CBM_EBLUEPRINT and fills err with a message naming the step and the problem,
 * e.g. "step 'b': depends_on names unknown step 'x'". */
int bp_parse_json(const char *json, size_t len, bp_blueprint_t **out, cbm_error_t *err);

/* "retry", "back_to", "skip_to", "fail", "continue"; NULL for other values. */
const char *bp_action_name(int action);

/* Index of the step named name, or -1. */
int bp_step_index(const bp_blueprint_t *bp, const char *name);

/*
 * Check an execution's inputs against the blueprint's declarations and fill
 * in defaults. inputs_json is a JSON object (NULL or "" mean {}). Without a
 * top-level "inputs" in the blueprint any object is accepted as it is. With
 * one (even {}): a required input must be present; a present input must have
 * its declared type (null is not a value of any type except "any"); keys that
 * are not declared are refused; absent inputs with a default get it. A key
 * given twice is refused in either case. On success *normalized_out (may be
 * NULL to only check) receives the inputs as unformatted JSON, given keys in
 * their order and then the defaults in name order; free it with cJSON_free().
 * Errors: CBM_EJSON (not JSON), CBM_EINVAL (not an object, or the checks
 * above; the message names the input, e.g. "input 'n' must be an integer
 * (got string)"), CBM_ENOMEM.
 */
int bp_check_inputs(const bp_blueprint_t *bp, const char *inputs_json, char **normalized_out,
                    cbm_error_t *err);

/*
 * Parse an RFC 3339 date-time ("2026-12-01T10:00:00Z",
 * "2026-12-01T11:30:00.25+01:30"; 'T' and 'Z' may be lowercase) into
 * microseconds since 1970-01-01T00:00:00Z. Fractional seconds beyond the
 * microsecond are truncated. Rejected, with *why (may be NULL) set to a
 * static reason: other syntax, month/day/hour/minute/second/offset out of
 * range (second 60, a leap second, included), a day the month does not have
 * (2026-02-30, 2025-02-29), a time before 1970. Returns 0 or CBM_EINVAL.
 */
int bp_parse_time(const char *text, int64_t *us_out, const char **why);

/* Format microseconds since the epoch (>= 0) as RFC 3339 in UTC, the form the
 * canonical JSON uses: "2026-12-01T10:00:00Z", with a fraction of up to six
 * digits (trailing zeros dropped) when there is one. buf needs 32 bytes. */
void bp_format_time(int64_t us, char buf[32]);

/* Free a blueprint (NULL is a no-op). Blueprints are allocated through
 * cJSON's allocator; free them only with this. */
void bp_destroy(bp_blueprint_t *bp);

#endif
