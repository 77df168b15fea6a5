/*
 * json_text.h - parsing JSON text with cJSON, telling out-of-memory from
 * malformed text.
 *
 * cJSON's parser returns NULL both for text that is not JSON and when an
 * allocation fails, so a caller cannot say CBM_ENOMEM: it said CBM_EJSON,
 * and an allocation failure became a refused blueprint, an unreadable
 * history, or (cbm_step_ok) a step failed for a result that was fine. The
 * functions here parse with cJSON and, when it fails, check the text with
 * a syntax checker that allocates nothing: well-formed text that cJSON
 * could not parse means it ran out of memory.
 *
 * The checker accepts a subset of what cJSON accepts (strict JSON, nesting
 * at most JSON_TEXT_MAX_DEPTH deep, numbers of at most 63 characters, no
 * raw control characters in strings, no lone UTF-16 surrogates), so
 * malformed text never reads as out-of-memory; a text cJSON accepts beyond
 * that subset (a number like "01", say) that fails for lack of memory still
 * reads as malformed.
 */
#ifndef CBM_ENGINE_JSON_TEXT_H
#define CBM_ENGINE_JSON_TEXT_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#define JSON_TEXT_MAX_DEPTH 500

/* Does text[0..len) start with one well-formed JSON value (after optional
 * white space)? Like cJSON, what follows the value is not looked at. */
bool json_text_well_formed(const char *text, size_t len);

/* cJSON_Parse(text); on NULL, *rc is CBM_ENOMEM or CBM_EJSON (text NULL:
 * CBM_EJSON). Free with cJSON_Delete. */
cJSON *json_text_parse(const char *text, int *rc);

/* json_normalize() with a reason: 0 and *out (unformatted, malloc'd), or
 * CBM_EJSON or CBM_ENOMEM and *out NULL. */
int json_text_normalize(const char *text, char **out);

#endif
