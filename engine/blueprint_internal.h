/*
 * blueprint_internal.h - what the blueprint parser's files share (limits,
 * the tables of names and allowed keys, the parser's state, and the helpers
 * one pass calls in another). Private to engine/blueprint*.c and bp_*.c:
 *   blueprint.c     memory, pass 1 (top level), bp_parse_json, the tables
 *   bp_values.c     field checks and the JSON values a blueprint keeps
 *   bp_time.c       RFC 3339 times
 *   bp_step.c       pass 2: one step and its rules
 *   bp_delib.c      pass 2 for the deliberation kind's fields
 *   bp_graph.c      passes 3-6: names, dependencies, cycles, routing
 *   bp_canonical.c  pass 7: canonical JSON and version
 *   bp_inputs.c     checking an execution's inputs
 */
#ifndef CBM_ENGINE_BLUEPRINT_INTERNAL_H
#define CBM_ENGINE_BLUEPRINT_INTERNAL_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cerebelum/error.h"
#include "engine/blueprint.h"

#define NAME_MAX_LEN 128
/* Largest integer a JSON number (a double, in cJSON) holds exactly. */
#define INT_FIELD_MAX INT64_C(9007199254740991)
#define MAX_ATTEMPTS_MAX 1000
/* Diverge rules and branch entries per step (each new rule is compared with
 * the ones before it). */
#define MAX_RULES 1000

#define DEFAULT_QUEUE "local"
#define DEFAULT_MAX_ATTEMPTS 1
#define DEFAULT_INITIAL_MS 1000
#define DEFAULT_MAX_MS 60000
#define DEFAULT_MULTIPLIER 2.0

#define NKINDS ((size_t)BP_DELIBERATION + 1)
#define NACTIONS ((size_t)BP_ACTION_CONTINUE + 1)
#define NINPUT_TYPES ((size_t)BP_IN_ARRAY + 1)

extern const char *const bp_kind_names[NKINDS];
extern const char *const bp_action_names[NACTIONS];
extern const char *const bp_input_type_names[NINPUT_TYPES];
/* "must be <noun>" */
extern const char *const bp_input_type_nouns[NINPUT_TYPES];

/* Allowed keys, NULL-terminated; at most 32 per list (see bp_check_keys). */
extern const char *const bp_top_keys[];
extern const char *const bp_retry_keys[];
extern const char *const bp_diverge_keys[];
extern const char *const bp_branch_keys[];
extern const char *const bp_cond_keys[];
extern const char *const bp_input_keys[];
extern const char *const bp_delib_scoring_keys[];
extern const char *const bp_delib_selection_keys[];
extern const char *const bp_delib_model_keys[];
extern const char *const bp_delib_call_keys[];
extern const char *const bp_delib_budget_keys[];
extern const char *const bp_topology_names[];
extern const char *const bp_scoring_names[];
extern const char *const bp_selection_names[];

/* Step keys and the kinds they belong to. The order is the order in which
 * fields are checked and listed in messages. */
#define KIND_BIT(k) (1u << (k))
#define ALL_KINDS ((1u << NKINDS) - 1)
#define NSTEP_FIELDS 31
struct bp_step_field {
    const char *key;
    unsigned kinds;
};
extern const struct bp_step_field bp_step_fields[NSTEP_FIELDS];

/* Where a step was declared, kept while parsing for messages and passes 4
 * and 6. The cJSON pointers are into the input tree, alive until the end. */
typedef struct step_src {
    const char *list;          /* "steps" or "timeline" */
    size_t pos;                /* index in that list */
    const cJSON *depends_on;   /* the validated array, or NULL */
    const cJSON *diverge;      /* the validated array, or NULL */
    const cJSON *branch;       /* the validated array, or NULL */
    bool after_prev;           /* a timeline entry after the first */
} step_src_t;

typedef struct parser {
    cbm_error_t *err;
    bp_blueprint_t *bp;
    step_src_t *src;           /* nsteps entries */
    bp_step_t **by_name;       /* nsteps pointers, sorted by name */
    unsigned *mark;            /* pass 6: per step, the search that saw it */
    unsigned gen;              /* pass 6: the current search */
    size_t *stack;             /* pass 6: nsteps entries */
} parser_t;

int bp_canon_field(parser_t *p, const cJSON *in, const char *label, const char *field,
                   cJSON **out);
int bp_check_cycles(parser_t *p);
int bp_check_keys(const cJSON *obj, const char *const *allowed, const char *label,
                  cbm_error_t *err);
int bp_check_name(const cJSON *item, const char *where, cbm_error_t *err);
int bp_check_routing(parser_t *p);
int bp_check_template_syntax(parser_t *p, const cJSON *t, const char *label, const char *field);
void bp_delib_free(bp_delib_t *d);
int bp_finish_delib(parser_t *p, const char *label, bp_step_t *s);
int bp_parse_delib(parser_t *p, const cJSON *obj, const char *label, bp_step_t *s);
int bp_cmp_member(const void *a, const void *b);
int bp_find_dependents(parser_t *p);
const bp_input_t *bp_find_input(const bp_blueprint_t *bp, const char *name, size_t len);
int bp_get_ident(const cJSON *item, const char *label, const char *field, bool name_chars,
                 char **out, parser_t *p);
int bp_get_int(const cJSON *item, const char *label, const char *field, int64_t min,
               int64_t max, int64_t *out, cbm_error_t *err);
int bp_get_ms(const cJSON *item, const char *label, const char *field, int64_t min,
              int64_t *out, cbm_error_t *err);
int bp_index_names(parser_t *p);
const char *bp_json_type_name(const cJSON *v);
int bp_make_canonical(parser_t *p);
bool bp_name_chars_ok(const char *s);
int bp_oom(parser_t *p);
int bp_parse_retry(const cJSON *obj, const char *label, bp_retry_t *r, parser_t *p);
int bp_parse_step(parser_t *p, const cJSON *entry, bp_step_t *s, step_src_t *src);
cJSON *bp_parse_text(const char *json, size_t len, const char *what, cbm_error_t *err,
                     int *rc);
bool bp_reference_parts(const char *ref, const char **step, size_t *step_len,
                        const char **input, size_t *input_len);
int bp_resolve_deps(parser_t *p);
bool bp_type_ok(bp_input_type_t t, const cJSON *v);
void *bp_xcalloc(size_t n, size_t size);
char *bp_xstrdup(const char *s);

#endif
