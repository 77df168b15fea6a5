/*
 * test_prompt.c - council templates (engine/prompt.h): what the check
 * accepts and refuses, per phase, and what rendering makes of each kind of
 * value.
 */
#include <cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/prompt.h"

static void check_ok(void **state)
{
    cbm_error_t err = {0};
    (void)state;
    assert_int_equal(prompt_check("plain text, { and } alone", PROMPT_GENERATE, "t", &err), 0);
    assert_int_equal(prompt_check("Task: {{task}} / {{ context }}", PROMPT_GENERATE, "t", &err), 0);
    assert_int_equal(prompt_check("{{proposal}}{{critiques}}", PROMPT_REVISE, "t", &err), 0);
    assert_int_equal(prompt_check("You are {{agent}}, {{persona}}, a {{role}}", PROMPT_SYSTEM,
                                  "system_prompt", &err), 0);
    assert_int_equal(prompt_check("{{rubric}} {{proposal}}", PROMPT_SCORE, "t", &err), 0);
    assert_int_equal(prompt_phase_of("critique"), PROMPT_CRITIQUE);
    assert_int_equal(prompt_phase_of("system"), PROMPT_SYSTEM);
    assert_int_equal(prompt_phase_of("vote"), 0);
}

static void refused(const char *tmpl, prompt_phase_t phase, const char *msg)
{
    cbm_error_t err = {0};
    assert_int_equal(prompt_check(tmpl, phase, "prompts.generate", &err), CBM_EINVAL);
    assert_string_equal(err.message, msg);
}

static void check_refuses(void **state)
{
    (void)state;
    refused("Task: {{task", PROMPT_GENERATE, "prompts.generate: unclosed '{{' at byte 6");
    refused("{{", PROMPT_GENERATE, "prompts.generate: unclosed '{{' at byte 0");
    refused("a {{ }} b", PROMPT_GENERATE, "prompts.generate: '{{' without a variable name at byte 2");
    refused("{{tsak}}", PROMPT_GENERATE, "prompts.generate: unknown variable 'tsak' at byte 0");
    refused("{{task}", PROMPT_GENERATE, "prompts.generate: unclosed '{{' at byte 0");
    refused("x {{proposal}}", PROMPT_GENERATE,
            "prompts.generate: variable 'proposal' is not available here (byte 2)");
    refused("{{task}}", PROMPT_SYSTEM,
            "prompts.generate: variable 'task' is not available here (byte 0)");
    refused("{{critiques}}", PROMPT_SCORE,
            "prompts.generate: variable 'critiques' is not available here (byte 0)");
}

static void render(void **state)
{
    cJSON *v = cJSON_Parse("{\"task\":\"fix the bug\",\"context\":{\"plan\":[1,2]},"
                           "\"round\":1,\"persona\":null}");
    char *out = NULL;
    cbm_error_t err = {0};
    (void)state;
    assert_non_null(v);
    assert_int_equal(prompt_render("T={{task}}; C={{ context }}; R={{round}}; P=[{{persona}}]; "
                                   "A=[{{agent}}]; {x}", v, &out, &err), 0);
    assert_string_equal(out, "T=fix the bug; C={\"plan\":[1,2]}; R=1; P=[]; A=[]; {x}");
    free(out);
    assert_int_equal(prompt_render("", v, &out, &err), 0);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(prompt_render("{{nope}}", v, &out, &err), CBM_EINVAL);
    assert_null(out);
    cJSON_Delete(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(check_ok),
        cmocka_unit_test(check_refuses),
        cmocka_unit_test(render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
