/*
 * bp_fixtures.h - what the blueprint test files share: parsing helpers with
 * asserts that print both sides, and two blueprints used by several files
 * (the review loop of docs/blueprints.md, and one with every field).
 */
#ifndef CBM_TEST_BP_FIXTURES_H
#define CBM_TEST_BP_FIXTURES_H

#include <stddef.h>

#include "cerebelum/error.h"
#include "engine/blueprint.h"

#define ONE_STEP "\"steps\":[{\"name\":\"a\"}]"
/* A blueprint of one step 'a' with the given extra fields. */
#define STEP(fields) "{\"name\":\"x\",\"steps\":[{\"name\":\"a\"," fields "}]}"
#define VERSION_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

int parse_exact(const char *json, bp_blueprint_t **out, cbm_error_t *err);
bp_blueprint_t *parse_ok(const char *json);
void assert_contains(const char *haystack, const char *needle);
void expect_error(const char *json, int code, const char *want1, const char *want2);
void expect_message(const char *json, const char *message);
void version_of(const char *json, char version[65]);
void assert_same_version(const char *a, const char *b);
void assert_other_version(const char *a, const char *b);
void assert_fixed_point(const char *json);
void assert_deps(const bp_blueprint_t *bp, const char *step, const size_t *want, size_t n);

/* The review loop of docs/blueprints.md, as the text gives it. */
extern const char *const review_loop;
/* Every field in one blueprint. */
extern const char *const everything;

#endif
