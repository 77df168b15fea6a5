/*
 * delib.h - the deliberation step kind's pure parts (docs/deliberation.md):
 * how many LLM calls a deliberation makes and the budget check, the
 * expansion of a step and a council into the blueprint of its child
 * execution, and the child's inputs. Nothing here does I/O or reads a
 * clock: the same arguments give the same bytes, on any engine of the same
 * DELIB_EXPANSION_VERSION, from any thread.
 *
 * At child start the runtime, holding the step, its input document and the
 * council snapshot (name, version, definition), calls in this order:
 *   delib_agents()        N and the effective max_tokens (refuses a council
 *                         that cannot run the step);
 *   delib_check_budget()  refuses with the message of
 *                         deliberation_over_budget;
 *   delib_expand()        the child's blueprint (canonical JSON), to be
 *                         registered (idempotent: its version is the SHA-256);
 *   delib_child_inputs()  the child's inputs.
 */
#ifndef CBM_ENGINE_DELIB_H
#define CBM_ENGINE_DELIB_H

#include <stdint.h>

#include "cerebelum/error.h"
#include "engine/blueprint.h"

/* The version of the expansion: bumped whenever delib_expand() would produce
 * other bytes for the same arguments. Recorded in the generated blueprint, in
 * the args of its select (and finish) step: {"phase": "select",
 * "expansion": 1}. */
#define DELIB_EXPANSION_VERSION 1

/* The generated blueprint is named DELIB_NAME_PREFIX "<blueprint>.<step>". */
#define DELIB_NAME_PREFIX "_delib."

/*
 * The LLM calls of one deliberation when every call succeeds at its first
 * attempt: N generate, per round N critiques and N revisions (ring) or
 * N(N-1) critiques and N revisions (all_to_all), none for topology none, and
 * N score calls for scoring judge (handler scoring runs the user's handler,
 * no LLM call). agents >= 1, rounds >= 0.
 */
int64_t delib_llm_calls(bp_topology_t topology, int agents, int rounds, bp_scoring_t scoring);

/*
 * The budget of a deliberation step (step->delib set) with `agents` agents
 * and max_tokens completion tokens per call (0: unknown, the token check is
 * skipped): calls x call.retry.max_attempts must be at most budget.max_calls,
 * and calls x max_tokens at most budget.max_completion_tokens, where set.
 * Returns 0, or CBM_EINVAL with err's message naming the step, e.g. "step
 * 'd': budget.max_calls is 10 but the deliberation may make up to 24 calls
 * (12 calls × 2 attempts)". The parser runs it when the step gives agents
 * (reporting CBM_EBLUEPRINT); the runtime when the child starts.
 */
int delib_check_budget(const bp_step_t *step, int agents, int64_t max_tokens, cbm_error_t *err);

/*
 * What a council (council_json: the definition object as text, as the
 * council module stored it) makes of a deliberation step: *agents is N (the
 * step's agents, or the council's size) and *max_tokens the completion
 * tokens per call (the step's model.max_tokens, else the council's, else 0:
 * unknown). The definition is read defensively: returns CBM_EJSON (not
 * JSON), CBM_ENOMEM, or CBM_EINVAL with a message naming the council when it
 * cannot run this step: not an object; no name; agents not an array of 1 to
 * 16 objects with an "id" string; queue not a name; model.max_tokens not an
 * integer from 1 to 1000000; topology ring or all_to_all with fewer than 2
 * agents; scoring judge without a rubric (a non-empty object);
 * selection.min_proposals above N.
 */
int delib_agents(const bp_step_t *step, const char *council_json, int *agents,
                 int64_t *max_tokens, cbm_error_t *err);

/*
 * The blueprint of a deliberation step's child (docs/deliberation.md §3):
 * named DELIB_NAME_PREFIX "<parent_blueprint>.<step>", with N agents
 * (delib_agents()) and the step's rounds, topology, scoring, selection, call
 * settings and budget.timeout_ms (the child's timeout_ms); its LLM steps on
 * the council's queue (default "llm") with its requires. The result is the
 * canonical JSON of the blueprint, checked by bp_parse_json(), so its SHA-256
 * is the version registration gives it.
 *
 * Pure and deterministic: no I/O, no clock, the same bytes for the same
 * arguments (DELIB_EXPANSION_VERSION pins the function). On success *out is
 * NUL-terminated text owned by the caller (free with cJSON_free()). Errors:
 * those of delib_agents(); CBM_EINVAL when the step is not a deliberation or
 * the generated blueprint does not validate (a council field such as
 * requires that the blueprint format refuses; the message names the council
 * and quotes the parser's); CBM_ENOMEM. *out is NULL on failure.
 */
int delib_expand(const bp_step_t *step, const char *parent_blueprint, const char *council_json,
                 char **out, cbm_error_t *err);

/*
 * The inputs of a deliberation step's child, frozen in its ExecutionStarted:
 *   {"task": ..., "context": ...,
 *    "council": {"name", "version", "definition"},
 *    "params": {"agents": N, "rounds", "topology", "scoring": {"mode",
 *               "handler"?, "queue"?}, "selection": {"rule", "top_k",
 *               "min_proposals", "threshold"?}, "model": {...}}}
 * task and context are the step's templates filled from step_input_json
 * (the step's input document, {"inputs": ..., "deps": {...}}: what
 * dc_step_input() gives), as a subworkflow's inputs; model is the council's
 * model object with the step's overrides put over it. council_version is
 * the version of council_json. On success *out (unformatted JSON, free with
 * cJSON_free()) is set; errors as delib_agents(), and CBM_EJSON for a step
 * input that is not JSON.
 */
int delib_child_inputs(const bp_step_t *step, const char *step_input_json,
                       const char *council_version, const char *council_json, char **out,
                       cbm_error_t *err);

#endif
