/*
 * match.h - pure evaluation of the data that routes a workflow: diverge
 * patterns, branch conditions, JSON paths and sub-workflow input templates.
 *
 * Everything here is a function of its arguments: no allocation except where
 * a function returns a new tree, no global state, safe from any thread. The
 * blueprint parser (blueprint.c) validates patterns, conditions, paths and
 * templates and keeps them as cJSON trees in the blueprint; the decider hands
 * those trees and a step's result (or error) to these functions. The format is
 * described in docs/blueprints.md, "Routing".
 */
#ifndef CBM_ENGINE_MATCH_H
#define CBM_ENGINE_MATCH_H

#include <cJSON.h>
#include <stdbool.h>

/* Longest path accepted in a blueprint (bytes). */
#define MATCH_PATH_MAX 512

/*
 * Structural subset match of value against a diverge pattern:
 *  - the string "_" matches any value (but not a missing one);
 *  - an object matches an object that has every key of the pattern (the
 *    value's other keys do not matter) with a value that matches;
 *  - an array matches an array of the same length, element by element;
 *  - a string, number, true, false or null matches an equal scalar of the
 *    same type (numbers by numeric equality: 1 and 1.0 are equal).
 * A NULL pattern or value gives false. Of repeated keys in the value the first
 * counts.
 */
bool match_pattern(const cJSON *pattern, const cJSON *value);

/*
 * True when every value that matches `specific` also matches `general` (so a
 * rule with the specific pattern after one with the general pattern can never
 * be reached). Exact for the pattern language above.
 */
bool match_subsumes(const cJSON *general, const cJSON *specific);

/*
 * Deep equality of two JSON values: same type; numbers numerically; objects
 * with the same keys (order does not matter) and equal values; arrays element
 * by element. NULL equals nothing, not even NULL.
 */
bool json_equal(const cJSON *a, const cJSON *b);

/*
 * Path syntax: "" (the value itself), or keys separated by '.', each key
 * followed by any number of [n] indexes (n: 1 to 9 decimal digits); the path
 * may start with an index. A key is one or more bytes other than '.', '[', ']'
 * and control characters. Examples: "score", "items[0].score", "[2]",
 * "m[1][0].k". Malformed: "a..b", ".a", "a.", "a[", "a[x]", "a[]", "a[0]b".
 */
bool json_path_valid(const char *path);

/*
 * The value at path in root (see json_path_valid), or NULL when root or path
 * is NULL, the path is malformed, or any part of it is missing: a key of a
 * non-object, an index of a non-array or past its end. Keys are
 * case-sensitive; of repeated keys the first counts.
 */
const cJSON *json_path_get(const cJSON *root, const char *path);

/*
 * Evaluate a branch condition (as validated by the blueprint parser) against
 * value, the step's result:
 *   {"path": P, "op": OP, "value": V}  with OP one of
 *     ==, !=   deep equality (json_equal) / its negation;
 *     < <= > >=  both numbers (numeric order) or both strings (byte order);
 *                any other pair of types is false, not an error;
 *     in       V is an array and one of its elements equals the value;
 *     exists   the path resolves (to anything, null included); takes no V;
 *   {"and": [C, ...]}, {"or": [C, ...]}  (short-circuit, left to right),
 *   {"not": C}.
 * A path that does not resolve makes every comparison false, != and in
 * included, and exists false; only "not" turns that into true.
 * Returns 0 and sets *out, or CBM_EINVAL (out not set) for a NULL out or a
 * condition the parser would have rejected.
 */
int cond_eval(const cJSON *cond, const cJSON *value, bool *out);

/*
 * True when s is a template reference: a string that starts with "$.".
 * Validity of the rest is the parser's business (docs/blueprints.md).
 */
bool match_is_reference(const char *s);

/*
 * Build a sub-workflow's inputs from its template: a deep copy of tmpl in
 * which every string that is a reference "$.<path>" is replaced by a copy of
 * json_path_get(data, "<path>"), or by null where that path does not
 * resolve. data is the step's input, {"inputs": {...}, "deps": {"<step>":
 * <result>, ...}}. A NULL tmpl gives {}. On success *out is a new tree owned
 * by the caller (cJSON_Delete); returns 0, or CBM_EINVAL (NULL out) or
 * CBM_ENOMEM (*out is then NULL).
 */
int match_template(const cJSON *tmpl, const cJSON *data, cJSON **out);

#endif
