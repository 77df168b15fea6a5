/*
 * council.h - councils as data (docs/deliberation.md, section 1): the one
 * validator of a council definition, its canonical JSON and its version.
 *
 * council_parse() checks every field of the format, refuses unknown keys and
 * bad templates (prompt.h), and builds the canonical definition: keys in the
 * documented order, object members that carry no order (requires, rubric)
 * sorted by name, the documented defaults written out (queue "llm",
 * requires {}), no white space. Equal meaning gives equal text, and the
 * version is the SHA-256 (hex) of that text, as for blueprints.
 *
 * The canonical JSON is what the store keeps and what readers get back. A
 * reader that needs the fields (the deliberation step when its child
 * starts: the agents, the queue, requires, the model) parses it again with
 * council_parse(): the stored text passes the same check, and the council_t
 * points at each part. Parsing canonical text gives back the same text and
 * version.
 *
 * Pure functions on memory; no I/O. Threads: any.
 */
#ifndef CBM_ENGINE_COUNCIL_H
#define CBM_ENGINE_COUNCIL_H

#include <cJSON.h>
#include <stddef.h>

#include "cerebelum/error.h"

#define COUNCIL_MAX_AGENTS 16
#define COUNCIL_DEFAULT_QUEUE "llm"

typedef struct council {
    cJSON *root;             /* the canonical definition (owned) */
    char *canonical;         /* root printed: the text that was hashed */
    char version[65];        /* SHA-256 hex of canonical */
    /* Parts of root (borrowed: valid until council_destroy). */
    const char *name;
    const char *role;
    const char *queue;       /* "llm" when the definition gave none */
    const cJSON *requires;   /* object of strings, {} when none */
    const cJSON *model;      /* {"name", and "temperature", "top_p",
                                "max_tokens" when given} */
    const char *system_prompt;
    const cJSON *prompts;    /* {"generate", "critique", "revise", "score"} */
    const cJSON *rubric;     /* criterion -> {"weight", "description"}, in
                                name order; NULL when none */
    const cJSON *judge;      /* {"persona", "model"?, "temperature"?}; NULL */
    const cJSON *agents;     /* array of {"id", "persona", "model"?,
                                "temperature"?}, in the given order */
    size_t nagents;          /* 1..COUNCIL_MAX_AGENTS */
} council_t;

/*
 * Validate the council in json[0..len) (a trailing NUL counted in len is
 * ignored) and build its canonical form. *out is owned by the caller
 * (council_destroy). Errors, *out NULL:
 *   CBM_EINVAL  text PostgreSQL could not store (not UTF-8, a NUL, \u0000),
 *               or an invalid council; the message names the field and
 *               starts with "council '<name>': " once the name is known
 *               ("council: " before), e.g. "council 'dev': prompts.critique:
 *               unknown variable 'tsak' at byte 12"
 *   CBM_EJSON   not JSON ("malformed JSON at line L, column C (byte N)")
 *   CBM_ENOMEM
 */
int council_parse(const char *json, size_t len, council_t **out, cbm_error_t *err);

void council_destroy(council_t *c);

#endif
