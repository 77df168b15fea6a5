/*
 * test_llm_call.c - building an LLM call from a task's input and its result
 * from the answer (workers/llm/call.h): the council of docs/deliberation.md
 * §1 in the child inputs of §3, one call per phase; messages rendered,
 * agent overrides, critiques numbered in natural order, the rubric and the
 * score's schema, the seed, skipped dependencies, bad input, and the §4
 * result with its checks.
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

#include "call.h"

#define EXEC "11111111-2222-3333-4444-555555555555"

static const char *COUNCIL =
    "{\"name\":\"dev\",\"version\":\"abc\",\"definition\":{\"name\":\"dev\",\"role\":\"developer\","
    "\"model\":{\"name\":\"qwen2.5-7b-instruct\",\"temperature\":0.7,\"top_p\":1.0,\"max_tokens\":1024},"
    "\"system_prompt\":\"You are {{agent}}, {{persona}}. You work as a {{role}}.\","
    "\"prompts\":{\"generate\":\"Task:\\n{{task}}\\n\\nContext:\\n{{context}}\\n\\nWrite your proposal.\","
    "\"critique\":\"Task:\\n{{task}}\\n\\nCritique this proposal:\\n{{proposal}}\","
    "\"revise\":\"Round {{round}}. Your proposal:\\n{{proposal}}\\n\\nCritiques:\\n{{critiques}}\\n\\nRevise it.\","
    "\"score\":\"Score this proposal:\\n{{proposal}}\\n\\nRubric:\\n{{rubric}}\"},"
    "\"rubric\":{\"correctness\":{\"weight\":0.6,\"description\":\"it solves the task\"},"
    "\"clarity\":{\"weight\":0.4,\"description\":\"it is easy to follow\"}},"
    "\"judge\":{\"persona\":\"an impartial senior reviewer\",\"temperature\":0.0},"
    "\"agents\":[{\"id\":\"dev-1\",\"persona\":\"a careful engineer\"},"
    "{\"id\":\"dev-2\",\"persona\":\"a pragmatic engineer\",\"temperature\":0.9},"
    "{\"id\":\"dev-3\",\"persona\":\"a security-minded engineer\",\"model\":\"other-model\"}]}}";

static const char *PARAMS =
    "{\"agents\":3,\"rounds\":1,\"topology\":\"ring\",\"scoring\":{\"mode\":\"judge\"},"
    "\"model\":{\"name\":\"qwen2.5-7b-instruct\",\"temperature\":0.5,\"top_p\":0.95,\"max_tokens\":512}}";

static const char *const SERVED[] = {"qwen2.5-7b-instruct", "small"};
static const call_opts_t OPTS = {"qwen2.5-7b-instruct", SERVED, 2};

static const char *params = NULL; /* NULL: PARAMS */

/* The input of a call: the child's inputs, deps and args. malloc'd. */
static char *input(const char *deps, const char *args)
{
    const char *PARAMS_ = params != NULL ? params : PARAMS;
    size_t n = strlen(COUNCIL) + strlen(PARAMS_) + strlen(deps) + strlen(args) + 256;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n,
             "{\"inputs\":{\"task\":\"fix the bug\",\"context\":{\"plan\":\"p\"},\"council\":%s,"
             "\"params\":%s},\"deps\":%s,\"args\":%s}",
             COUNCIL, PARAMS_, deps, args);
    return s;
}

/* Build; the request body parsed. */
static cJSON *build(const char *step, int attempt, const char *phase, const char *deps,
                    const char *args, const call_opts_t *o, llm_call_t *c)
{
    char *in = input(deps, args);
    cbm_step_call_t sc = {EXEC, step, attempt, in};
    llm_failure_t f = {0};
    int rc = call_build(&sc, phase, o, c, &f);
    cJSON *body;
    free(in);
    if (rc != 0) fail_msg("call_build: %d %s: %s", rc, f.kind, f.message);
    if (c->skipped != NULL) return NULL;
    body = cJSON_Parse(c->body);
    assert_non_null(body);
    return body;
}

static const char *msg(const cJSON *body, int i)
{
    const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItem(body, "messages"), i);
    return cJSON_GetObjectItem(m, "content")->valuestring;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static void generate(void **state)
{
    llm_call_t c, c2;
    cJSON *body, *body2;
    (void)state;
    body = build("gen.1", 1, "generate", "{}",
                 "{\"phase\":\"generate\",\"agent\":1,\"round\":0}", &OPTS, &c);
    assert_string_equal(c.agent, "dev-2");
    assert_string_equal(c.phase, "generate");
    assert_string_equal(c.task_id, EXEC "/gen.1/1");
    assert_int_equal(c.seed, 744605511); /* python: int(sha256(...)[:4]) >> 1 */
    assert_false(c.schema);
    /* python: sha256(json.dumps(messages, sort_keys=True, separators=(",", ":"),
     * ensure_ascii=False)), as the stub's journal has it */
    assert_string_equal(c.prompt_sha256,
                        "599b1a08c0b2330e504337f2b53ea4c377f775157a6253051372845fe70be131");
    assert_string_equal(msg(body, 0), "You are dev-2, a pragmatic engineer. You work as a developer.");
    assert_string_equal(msg(body, 1), "Task:\nfix the bug\n\nContext:\n{\"plan\":\"p\"}\n\nWrite your proposal.");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(body, "messages"), 0), "role")->valuestring, "system");
    assert_string_equal(cJSON_GetObjectItem(body, "model")->valuestring, "qwen2.5-7b-instruct");
    assert_true(num(body, "temperature") == 0.9); /* the agent's */
    assert_true(num(body, "top_p") == 0.95);     /* the params' */
    assert_true(num(body, "max_tokens") == 512);
    assert_true(num(body, "n") == 1);
    assert_true(num(body, "seed") == 744605511);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(body, "stream")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "stream_options"), "include_usage")));
    assert_null(cJSON_GetObjectItem(body, "response_format"));

    /* Another attempt: another seed, the same prompt. */
    body2 = build("gen.1", 2, "generate", "{}",
                  "{\"phase\":\"generate\",\"agent\":4,\"round\":0}", &OPTS, &c2);
    assert_int_equal(c2.seed, 1019446458);
    assert_string_equal(c2.agent, "dev-2#2"); /* 4 mod 3, the second use of the profile */
    assert_string_equal(c2.agent_id, "dev-2");  /* {{agent}}: the same prompt */
    assert_string_equal(c.prompt_sha256, c2.prompt_sha256);
    cJSON_Delete(body);
    cJSON_Delete(body2);
    call_finish(&c);
    call_finish(&c2);

    /* dev-3 asks for a model the server does not list: the default */
    body = build("gen.2", 1, "generate", "{}", "{\"phase\":\"generate\",\"agent\":2}", &OPTS, &c);
    assert_string_equal(cJSON_GetObjectItem(body, "model")->valuestring, "qwen2.5-7b-instruct");
    assert_true(num(body, "temperature") == 0.5);
    cJSON_Delete(body);
    call_finish(&c);
    {
        call_opts_t any = {"qwen2.5-7b-instruct", NULL, 0};
        body = build("gen.2", 1, NULL, "{}", "{\"phase\":\"generate\",\"agent\":2}", &any, &c);
        assert_string_equal(cJSON_GetObjectItem(body, "model")->valuestring, "other-model");
        cJSON_Delete(body);
        call_finish(&c);
    }
}

static void critique_and_revise(void **state)
{
    llm_call_t c;
    cJSON *body;
    (void)state;
    body = build("crit.1.0", 1, "critique",
                 "{\"gen.1\":{\"agent\":\"dev-2\",\"phase\":\"generate\",\"content\":\"PROPOSAL B\"}}",
                 "{\"phase\":\"critique\",\"agent\":0,\"target\":1,\"round\":1}", &OPTS, &c);
    assert_string_equal(c.agent, "dev-1");
    assert_string_equal(msg(body, 1), "Task:\nfix the bug\n\nCritique this proposal:\nPROPOSAL B");
    cJSON_Delete(body);
    call_finish(&c);

    /* all_to_all critiques, listed out of order, numbered in natural order */
    body = build("rev.1.1", 1, "revise",
                 "{\"crit.1.2.1\":{\"content\":\"from two\"},\"crit.1.10.1\":{\"content\":\"from ten\"},"
                 "\"gen.1\":{\"content\":\"MINE\"},\"crit.1.0.1\":{\"content\":\"from zero\"}}",
                 "{\"phase\":\"revise\",\"agent\":1,\"round\":1}", &OPTS, &c);
    assert_string_equal(msg(body, 1), "Round 1. Your proposal:\nMINE\n\nCritiques:\n"
                                      "1. from zero\n2. from two\n3. from ten\n\nRevise it.");
    cJSON_Delete(body);
    call_finish(&c);
}

static void score(void **state)
{
    llm_call_t c;
    cJSON *body, *rf, *schema, *crit;
    (void)state;
    body = build("score.2", 1, "score", "{\"rev.1.2\":{\"content\":\"FINAL\"}}",
                 "{\"phase\":\"score\",\"agent\":2,\"round\":0}", &OPTS, &c);
    assert_string_equal(c.agent, "judge");
    assert_true(c.schema);
    assert_int_equal(c.ncriteria, 2);
    assert_string_equal(msg(body, 0), "You are judge, an impartial senior reviewer. You work as a developer.");
    /* in name order, whatever the object's order */
    assert_string_equal(msg(body, 1), "Score this proposal:\nFINAL\n\nRubric:\n"
                                      "- clarity (weight 0.4): it is easy to follow\n"
                                      "- correctness (weight 0.6): it solves the task");
    assert_true(num(body, "temperature") == 0.0); /* the judge's */
    rf = cJSON_GetObjectItem(body, "response_format");
    assert_string_equal(cJSON_GetObjectItem(rf, "type")->valuestring, "json_schema");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(rf, "json_schema"), "name")->valuestring, "score");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(rf, "json_schema"), "strict")));
    schema = cJSON_GetObjectItem(cJSON_GetObjectItem(rf, "json_schema"), "schema");
    crit = cJSON_GetObjectItem(cJSON_GetObjectItem(schema, "properties"), "criteria");
    {
        char *s = cJSON_PrintUnformatted(crit);
        assert_string_equal(s, "{\"type\":\"object\",\"properties\":{"
                               "\"clarity\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1},"
                               "\"correctness\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1}},"
                               "\"required\":[\"clarity\",\"correctness\"],\"additionalProperties\":false}");
        free(s);
        s = cJSON_PrintUnformatted(cJSON_GetObjectItem(schema, "required"));
        assert_string_equal(s, "[\"criteria\",\"rationale\"]");
        free(s);
    }
    cJSON_Delete(body);
    call_finish(&c);
}

static void skipped(void **state)
{
    llm_call_t c;
    (void)state;
    assert_null(build("crit.1.0", 1, "critique",
                      "{\"gen.1\":{\"kind\":\"llm_context_length\",\"message\":\"too long\",\"retryable\":false}}",
                      "{\"phase\":\"critique\",\"agent\":0,\"target\":1,\"round\":1}", &OPTS, &c));
    assert_string_equal(c.skipped, "{\"skipped\":true,\"agent\":\"dev-1\",\"because\":\"gen.1\","
                                   "\"error\":{\"kind\":\"llm_context_length\",\"message\":\"too long\"}}");
    assert_null(c.body);
    call_finish(&c);
    /* a skip skips what depends on it, naming the step that failed */
    assert_null(build("score.0", 1, "score",
                      "{\"rev.1.0\":{\"skipped\":true,\"agent\":\"dev-1\",\"because\":\"crit.1.2\","
                      "\"error\":{\"kind\":\"llm_timeout\",\"message\":\"m\"}}}",
                      "{\"phase\":\"score\",\"agent\":0}", &OPTS, &c));
    assert_string_equal(c.skipped, "{\"skipped\":true,\"agent\":\"judge\",\"because\":\"crit.1.2\","
                                   "\"error\":{\"kind\":\"llm_timeout\",\"message\":\"m\"}}");
    call_finish(&c);
    assert_null(build("rev.1.1", 1, "revise",
                      "{\"gen.1\":{\"content\":\"x\"},\"crit.1.0\":{\"kind\":\"llm_timeout\",\"message\":\"m\"}}",
                      "{\"phase\":\"revise\",\"agent\":1,\"round\":1}", &OPTS, &c));
    assert_string_equal(c.skipped, "{\"skipped\":true,\"agent\":\"dev-2\",\"because\":\"crit.1.0\","
                                   "\"error\":{\"kind\":\"llm_timeout\",\"message\":\"m\"}}");
    call_finish(&c);
}

static void refused(const char *text, const char *phase, const char *expect)
{
    cbm_step_call_t sc = {EXEC, "s", 1, text};
    llm_call_t c;
    llm_failure_t f = {0};
    assert_int_equal(call_build(&sc, phase, &OPTS, &c, &f), 1);
    assert_string_equal(f.kind, "llm_bad_input");
    assert_false(f.retryable);
    if (strstr(f.message, expect) == NULL) fail_msg("'%s' does not say '%s'", f.message, expect);
    assert_null(c.agent);
    assert_null(c.body);
}

static void bad_input(void **state)
{
    char *in;
    (void)state;
    refused("not json", NULL, "not a JSON object");
    refused("{\"inputs\":{}}", NULL, "args is missing");
    in = input("{}", "{\"phase\":\"vote\",\"agent\":0}");
    refused(in, NULL, "args.phase must be");
    free(in);
    in = input("{}", "{\"phase\":\"generate\",\"agent\":0}");
    refused(in, "critique", "args.phase is generate but this is the critique handler");
    free(in);
    in = input("{}", "{\"phase\":\"generate\",\"agent\":-1}");
    refused(in, NULL, "args.agent must be an integer");
    free(in);
    in = input("{}", "{\"phase\":\"generate\",\"agent\":0.5}");
    refused(in, NULL, "args.agent must be an integer");
    free(in);
    in = input("{}", "{\"phase\":\"critique\",\"agent\":0,\"round\":1}");
    refused(in, NULL, "deps hold no proposal");
    free(in);
    in = input("{\"gen.0\":{\"content\":\"a\"},\"rev.1.0\":{\"content\":\"b\"}}",
               "{\"phase\":\"score\",\"agent\":0}");
    refused(in, NULL, "deps hold two proposals (gen.0 and rev.1.0)");
    free(in);
    in = input("[1]", "{\"phase\":\"generate\",\"agent\":0}");
    refused(in, NULL, "deps must be an object");
    free(in);
    refused("{\"inputs\":{\"council\":{\"definition\":{\"agents\":[]}}},\"args\":{\"phase\":\"generate\",\"agent\":0}}",
            NULL, "agents must be a non-empty array");
    refused("{\"inputs\":{\"council\":{\"definition\":{\"agents\":[{\"id\":\"a\"}],\"system_prompt\":\"{{task\","
            "\"prompts\":{\"generate\":\"x\"}},\"params\":{\"model\":{\"name\":\"m\"}}}},"
            "\"args\":{\"phase\":\"generate\",\"agent\":0}}",
            NULL, "system_prompt: template: unclosed '{{' at byte 0");
    refused("{\"inputs\":{\"council\":{\"definition\":{\"agents\":[{\"id\":\"a\"}],\"system_prompt\":\"s\","
            "\"prompts\":{}}}},\"args\":{\"phase\":\"generate\",\"agent\":0}}",
            NULL, "prompts.generate must be a string");
    refused("{\"inputs\":{\"council\":{\"definition\":{\"agents\":[{\"id\":\"a\"}],\"system_prompt\":\"s\","
            "\"prompts\":{\"score\":\"{{rubric}}\"}}}},\"deps\":{\"gen.0\":{}},"
            "\"args\":{\"phase\":\"score\",\"agent\":0}}",
            NULL, "rubric must be a non-empty object to score");
}

static void chat_with(sse_chat_t *ch, const char *content)
{
    sse_chat_init(ch, 0);
    llm_buf_add(&ch->content, content, strlen(content));
    strcpy(ch->finish_reason, "stop");
    strcpy(ch->model, "served-name");
    ch->usage_seen = ch->done = true;
    ch->prompt_tokens = 812;
    ch->completion_tokens = 377;
    ch->cached_tokens = 64;
}

static void results(void **state)
{
    llm_call_t c;
    sse_chat_t ch;
    llm_failure_t f = {0};
    char *json = NULL, expect[1024];
    cJSON *body;
    (void)state;

    body = build("gen.1", 1, "generate", "{}", "{\"phase\":\"generate\",\"agent\":1}", &OPTS, &c);
    chat_with(&ch, "the \"answer\"");
    assert_int_equal(call_result(&c, &ch, 41, 2210, 1 << 20, &json, &f), 0);
    snprintf(expect, sizeof(expect),
             "{\"agent\":\"dev-2\",\"phase\":\"generate\",\"content\":\"the \\\"answer\\\"\","
             "\"finish_reason\":\"stop\",\"model\":\"served-name\",\"seed\":744605511,"
             "\"usage\":{\"prompt_tokens\":812,\"completion_tokens\":377,\"cached_tokens\":64},"
             "\"ttft_ms\":41,\"latency_ms\":2210,\"prompt_sha256\":\"%s\"}",
             c.prompt_sha256);
    assert_string_equal(json, expect);
    free(json);
    /* over the limit */
    assert_int_equal(call_result(&c, &ch, 41, 2210, 100, &json, &f), 1);
    assert_null(json);
    assert_string_equal(f.kind, "llm_result_too_large");
    assert_false(f.retryable);
    sse_chat_finish(&ch);
    cJSON_Delete(body);
    call_finish(&c);

    body = build("score.0", 1, "score", "{\"gen.0\":{\"content\":\"P\"}}",
                 "{\"phase\":\"score\",\"agent\":0}", &OPTS, &c);
    chat_with(&ch, "{\"criteria\":{\"correctness\":0.9,\"clarity\":0.8},\"rationale\":\"fine\"}");
    assert_int_equal(call_result(&c, &ch, 1, 2, 1 << 20, &json, &f), 0);
    assert_non_null(strstr(json, "\"content_json\":{\"criteria\":{\"correctness\":0.9,\"clarity\":0.8},"
                                 "\"rationale\":\"fine\"},\"finish_reason\""));
    free(json);
    sse_chat_finish(&ch);
    chat_with(&ch, "```json\n{\"criteria\":{\"correctness\":1,\"clarity\":0},\"rationale\":\"\"}\n```\n");
    assert_int_equal(call_result(&c, &ch, 1, 2, 1 << 20, &json, &f), 0);
    free(json);
    sse_chat_finish(&ch);
    {
        static const char *const BAD[] = {
            "not json", "[1]", "{\"rationale\":\"r\"}",
            "{\"criteria\":{\"correctness\":0.9},\"rationale\":\"r\"}",
            "{\"criteria\":{\"correctness\":1.5,\"clarity\":0},\"rationale\":\"r\"}",
            "{\"criteria\":{\"correctness\":\"high\",\"clarity\":0},\"rationale\":\"r\"}",
            "{\"criteria\":{\"correctness\":1,\"clarity\":0}}",
        };
        for (size_t i = 0; i < sizeof(BAD) / sizeof(BAD[0]); i++) {
            chat_with(&ch, BAD[i]);
            assert_int_equal(call_result(&c, &ch, 1, 2, 1 << 20, &json, &f), 1);
            assert_string_equal(f.kind, "llm_bad_output");
            assert_true(f.retryable);
            sse_chat_finish(&ch);
        }
    }
    cJSON_Delete(body);
    call_finish(&c);
}

static void step_response_format(void **state)
{
    llm_call_t c;
    sse_chat_t ch;
    llm_failure_t f = {0};
    char *json = NULL;
    cJSON *body;
    (void)state;
    params = "{\"model\":{\"name\":\"qwen2.5-7b-instruct\",\"response_format\":{\"type\":\"json_object\"}}}";
    body = build("gen.0", 1, "generate", "{}", "{\"phase\":\"generate\",\"agent\":0}", &OPTS, &c);
    assert_true(c.schema);
    assert_false(c.score);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "response_format"), "type")->valuestring,
                        "json_object");
    chat_with(&ch, "{\"plan\": [1, 2]}");
    assert_int_equal(call_result(&c, &ch, 1, 2, 1 << 20, &json, &f), 0);
    assert_non_null(strstr(json, "\"content_json\":{\"plan\":[1,2]}"));
    free(json);
    sse_chat_finish(&ch);
    chat_with(&ch, "prose, not JSON");
    assert_int_equal(call_result(&c, &ch, 1, 2, 1 << 20, &json, &f), 1);
    assert_string_equal(f.kind, "llm_bad_output");
    sse_chat_finish(&ch);
    cJSON_Delete(body);
    call_finish(&c);
    /* the score keeps its own schema */
    body = build("score.0", 1, "score", "{\"gen.0\":{\"content\":\"P\"}}", "{\"phase\":\"score\",\"agent\":0}",
                 &OPTS, &c);
    assert_true(c.score);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "response_format"), "type")->valuestring,
                        "json_schema");
    cJSON_Delete(body);
    call_finish(&c);
    params = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(generate),
        cmocka_unit_test(critique_and_revise),
        cmocka_unit_test(score),
        cmocka_unit_test(skipped),
        cmocka_unit_test(bad_input),
        cmocka_unit_test(results),
        cmocka_unit_test(step_response_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
