/*
 * test_json_text.c - the syntax checker that tells cJSON's out-of-memory
 * from malformed text (engine/json_text.h). What it calls well-formed,
 * cJSON must accept: otherwise malformed text would read as out-of-memory.
 * Checked on hand-picked texts and on a few hundred thousand mutations of
 * them; out-of-memory itself is the fault suite's (tests/fault/).
 */
#include <cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/json_text.h"

static const char *const good[] = {
    "0", "-0", "1.5e+10", "-12.25E-3", "\"\"", "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"",
    "\"\\u00e9\\ud83d\\ude00\"", "true", "false", "null", "[]", "{}", " [1, [2, [3]], {}] ",
    "{\"a\":{\"b\":[true,false,null]},\"\":\"x\"}", "\"caf\xc3\xa9\"", "1 trailing is ignored",
};

static const char *const bad[] = {
    "", "  ", ".5", "+1", "-", "1.", "1e", "[1,]", "{\"a\":1,}", "{a:1}", "[1 2]",
    "\"\\udc00\"", "\"\\ud800\"", "\"\\ud800\\u0041\"", "\"\\x\"", "\"a\x01b\"", "\"open",
    "tru", "nul", "[", "{\"a\"", "{\"a\":}", "'a'",
};

/* Well-formed must mean cJSON accepts. */
static void agrees(const char *text, size_t len)
{
    char *copy = malloc(len + 1);
    cJSON *j;

    memcpy(copy, text, len);
    copy[len] = '\0';
    if (json_text_well_formed(copy, len)) {
        j = cJSON_ParseWithLength(copy, len);
        if (j == NULL) fail_msg("well-formed, yet cJSON refuses: %s", copy);
        cJSON_Delete(j);
    }
    free(copy);
}

static void test_examples(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
        if (!json_text_well_formed(good[i], strlen(good[i]))) fail_msg("refused: %s", good[i]);
        agrees(good[i], strlen(good[i]));
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (json_text_well_formed(bad[i], strlen(bad[i]))) fail_msg("accepted: %s", bad[i]);
}

static void test_depth(void **state)
{
    char *t = malloc(2 * JSON_TEXT_MAX_DEPTH + 3);
    size_t n;

    (void)state;
    for (size_t depth = JSON_TEXT_MAX_DEPTH; depth <= JSON_TEXT_MAX_DEPTH + 1; depth++) {
        n = 0;
        for (size_t i = 0; i < depth; i++) t[n++] = '[';
        for (size_t i = 0; i < depth; i++) t[n++] = ']';
        t[n] = '\0';
        assert_int_equal(json_text_well_formed(t, n), depth <= JSON_TEXT_MAX_DEPTH);
        agrees(t, n);
    }
    free(t);
}

static void test_mutations(void **state)
{
    static const char alphabet[] = "{}[],:\"\\u0123456789abcdefABCDEF.eE+- \t\ntrufalsn\x01\xc3\xa9";
    unsigned seed = 12345;
    char buf[128];

    (void)state;
    for (int round = 0; round < 300000; round++) {
        const char *base = good[(size_t)round % (sizeof(good) / sizeof(*good))];
        size_t len = strlen(base);
        int edits = 1 + (int)(seed % 3);

        memcpy(buf, base, len);
        for (int e = 0; e < edits; e++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = len > 0 ? (seed >> 8) % (len + 1) : 0;
            char c = alphabet[(seed >> 20) % (sizeof(alphabet) - 1)];
            switch ((seed >> 16) % 3) {
            case 0: /* replace */
                if (at < len) buf[at] = c;
                break;
            case 1: /* insert */
                if (len + 1 < sizeof(buf)) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = c;
                    len++;
                }
                break;
            default: /* delete */
                if (at < len) {
                    memmove(buf + at, buf + at + 1, len - at - 1);
                    len--;
                }
                break;
            }
        }
        agrees(buf, len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_examples),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
