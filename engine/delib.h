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

#endif
