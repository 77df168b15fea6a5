/*
 * prompt.h - the `{{variable}}` templates of councils (docs/deliberation.md,
 * "Templates"): checked when a council is put, rendered by the LLM worker.
 *
 * Pure functions on strings; no I/O, no allocation but the rendered text.
 * Threads: any.
 */
#ifndef CBM_ENGINE_PROMPT_H
#define CBM_ENGINE_PROMPT_H

#include <cJSON.h>
#include <stddef.h>

#include "cerebelum/error.h"

/* The phases of a call, and the council's system prompt (PROMPT_SYSTEM), as
 * bits: a variable is allowed in the phases of its mask. */
typedef enum prompt_phase {
    PROMPT_SYSTEM = 1 << 0,
    PROMPT_GENERATE = 1 << 1,
    PROMPT_CRITIQUE = 1 << 2,
    PROMPT_REVISE = 1 << 3,
    PROMPT_SCORE = 1 << 4,
} prompt_phase_t;

/* "generate", "critique", "revise", "score", "system" -> its phase; 0 for
 * anything else. */
prompt_phase_t prompt_phase_of(const char *name);

/* Check @p tmpl for @p phase: every `{{` opens a known variable allowed in
 * that phase and is closed by `}}`. CBM_EINVAL with "<what>: <problem> at
 * byte N" (what: e.g. "prompts.generate") otherwise. */
int prompt_check(const char *tmpl, prompt_phase_t phase, const char *what, cbm_error_t *err);

/* Render @p tmpl: each `{{name}}` becomes the member `name` of @p vars (a
 * JSON object): a string as its text, any other value as compact JSON, a
 * missing member as the empty string. *out is malloc'd (the caller frees).
 * CBM_EINVAL for a template prompt_check() would refuse (any phase's
 * variables are accepted here), CBM_ENOMEM. */
int prompt_render(const char *tmpl, const cJSON *vars, char **out, cbm_error_t *err);

#endif
