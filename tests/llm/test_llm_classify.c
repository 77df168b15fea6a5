/*
 * test_llm_classify.c - every row of the failure table of
 * docs/deliberation.md §4 as the worker classifies it
 * (workers/llm/classify.h): statuses, curl errors, the worker's own
 * aborts, Retry-After as seconds and as an HTTP-date, both error body
 * shapes of vLLM, context length, and the stream-level outcomes.
 */
#include <curl/curl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "classify.h"

#define NOW ((time_t)1764806400) /* 2025-12-04 00:00:00 GMT */

static llm_failure_t status(long code, const char *body, const char *retry_after)
{
    classify_in_t in = {0};
    llm_failure_t f;
    memset(&f, 0, sizeof(f));
    in.status = code;
    in.body = body;
    in.body_len = body != NULL ? strlen(body) : 0;
    in.retry_after = retry_after;
    in.now = NOW;
    assert_true(classify_transfer(&in, &f));
    return f;
}

static void expect(const llm_failure_t *f, const char *kind, bool retryable, int64_t after)
{
    assert_string_equal(f->kind, kind);
    assert_int_equal(f->retryable, retryable);
    assert_int_equal(f->retry_after_ms, after);
}

static const char *VLLM_400 =
    "{\"object\":\"error\",\"message\":\"This model's maximum context length is 4096 tokens. "
    "However, you requested 5000 tokens (4500 in the messages, 500 in the completion).\","
    "\"type\":\"BadRequestError\",\"param\":null,\"code\":400}";
static const char *OPENAI_CTX =
    "{\"error\":{\"message\":\"Please reduce the length of the messages.\",\"type\":"
    "\"invalid_request_error\",\"param\":\"messages\",\"code\":\"context_length_exceeded\"}}";
static const char *LLAMACPP_CTX =
    "{\"error\":{\"code\":400,\"message\":\"the request exceeds the available context size, try "
    "increasing it\",\"type\":\"exceed_context_size_error\",\"n_prompt_tokens\":9000,\"n_ctx\":4096}}";
static const char *NEW_VLLM =
    "{\"error\":{\"message\":\"The model `x` does not exist.\",\"type\":\"NotFoundError\","
    "\"param\":\"model\",\"code\":404}}";

static void statuses(void **state)
{
    llm_failure_t f;
    (void)state;
    f = status(429, "{\"error\":{\"message\":\"slow down\"}}", "7");
    expect(&f, "llm_rate_limited", true, 7000);
    assert_non_null(strstr(f.message, "slow down"));
    f = status(429, NULL, NULL);
    expect(&f, "llm_rate_limited", true, -1);
    f = status(408, NULL, NULL);
    expect(&f, "llm_timeout", true, -1);
    for (long s = 500; s <= 504; s++) {
        f = status(s, "oops", NULL);
        expect(&f, "llm_unavailable", true, -1);
    }
    f = status(503, NULL, "2");
    expect(&f, "llm_unavailable", true, 2000);
    f = status(401, "{\"error\":{\"message\":\"bad key\"}}", NULL);
    expect(&f, "llm_auth", false, -1);
    assert_non_null(strstr(f.message, "bad key"));
    f = status(403, NULL, "5"); /* not retryable: no retry-after either */
    expect(&f, "llm_auth", false, -1);
    f = status(400, "{\"object\":\"error\",\"message\":\"temperature must be >= 0\",\"code\":400}", NULL);
    expect(&f, "llm_bad_request", false, -1);
    assert_non_null(strstr(f.message, "temperature must be >= 0"));
    f = status(404, NEW_VLLM, NULL);
    expect(&f, "llm_bad_request", false, -1);
    assert_non_null(strstr(f.message, "does not exist"));
    f = status(422, "{\"detail\":[]}", NULL);
    expect(&f, "llm_bad_request", false, -1);
    f = status(405, NULL, NULL);
    expect(&f, "llm_bad_request", false, -1);
    f = status(302, NULL, NULL);
    expect(&f, "llm_unavailable", true, -1);
}

static void context_length(void **state)
{
    llm_failure_t f;
    (void)state;
    f = status(400, VLLM_400, NULL);
    expect(&f, "llm_context_length", false, -1);
    assert_non_null(strstr(f.message, "maximum context length is 4096"));
    f = status(400, OPENAI_CTX, NULL);
    expect(&f, "llm_context_length", false, -1);
    f = status(400, LLAMACPP_CTX, NULL);
    expect(&f, "llm_context_length", false, -1);
    f = status(400, "{\"error\":{\"message\":\"Input too long: exceeds the Context Length\"}}", NULL);
    expect(&f, "llm_context_length", false, -1);
    /* a 500 that talks about context is still a server failure */
    f = status(500, VLLM_400, NULL);
    expect(&f, "llm_unavailable", true, -1);
    assert_false(classify_is_context_length("{\"message\":\"bad temperature\"}", 29));
}

static void error_bodies(void **state)
{
    char msg[128];
    long code;
    (void)state;
    classify_error_message(VLLM_400, strlen(VLLM_400), msg, sizeof(msg), &code);
    assert_int_equal(code, 400);
    assert_memory_equal(msg, "This model's maximum context length", 35);
    classify_error_message(NEW_VLLM, strlen(NEW_VLLM), msg, sizeof(msg), &code);
    assert_int_equal(code, 404);
    assert_string_equal(msg, "The model `x` does not exist.");
    classify_error_message(OPENAI_CTX, strlen(OPENAI_CTX), msg, sizeof(msg), &code);
    assert_int_equal(code, 0); /* a string code */
    assert_string_equal(msg, "Please reduce the length of the messages.");
    classify_error_message("{\"error\":\"plain\"}", 17, msg, sizeof(msg), &code);
    assert_string_equal(msg, "plain");
    classify_error_message("<html>\n502 Bad Gateway</html>", 29, msg, sizeof(msg), &code);
    assert_string_equal(msg, "<html> 502 Bad Gateway</html>");
    classify_error_message(NULL, 0, msg, sizeof(msg), &code);
    assert_string_equal(msg, "");
}

static void retry_after(void **state)
{
    (void)state;
    assert_int_equal(classify_retry_after("0", NOW), 0);
    assert_int_equal(classify_retry_after("120", NOW), 120000);
    assert_int_equal(classify_retry_after(" 3 ", NOW), 3000);
    assert_int_equal(classify_retry_after("99999999999", NOW), 24 * 3600 * 1000LL);
    assert_int_equal(classify_retry_after("Thu, 04 Dec 2025 00:00:30 GMT", NOW), 30000);
    assert_int_equal(classify_retry_after("Thursday, 04-Dec-25 00:01:00 GMT", NOW), 60000);
    assert_int_equal(classify_retry_after("Thu Dec  4 00:00:05 2025", NOW), 5000);
    assert_int_equal(classify_retry_after("Wed, 03 Dec 2025 23:00:00 GMT", NOW), 0); /* past */
    assert_int_equal(classify_retry_after("soon", NOW), -1);
    assert_int_equal(classify_retry_after("5s", NOW), -1);
    assert_int_equal(classify_retry_after(NULL, NOW), -1);
    {
        llm_failure_t f = status(429, NULL, "Thu, 04 Dec 2025 00:00:10 GMT");
        expect(&f, "llm_rate_limited", true, 10000);
    }
}

static llm_failure_t transfer(int cc, llm_abort_t abort, long st, bool got_body)
{
    classify_in_t in = {0};
    llm_failure_t f;
    memset(&f, 0, sizeof(f));
    in.curl_code = cc;
    in.abort = abort;
    in.limit_ms = 1500;
    in.status = st;
    in.got_body = got_body;
    in.now = NOW;
    assert_true(classify_transfer(&in, &f));
    return f;
}

static void transport_and_aborts(void **state)
{
    llm_failure_t f;
    classify_in_t ok = {0};
    (void)state;
    f = transfer(CURLE_COULDNT_CONNECT, 0, 0, false);
    expect(&f, "llm_unavailable", true, -1);
    f = transfer(CURLE_COULDNT_RESOLVE_HOST, 0, 0, false);
    expect(&f, "llm_unavailable", true, -1);
    f = transfer(CURLE_SSL_CONNECT_ERROR, 0, 0, false);
    expect(&f, "llm_unavailable", true, -1);
    f = transfer(CURLE_OPERATION_TIMEDOUT, 0, 0, false); /* the connect limit */
    expect(&f, "llm_unavailable", true, -1);
    f = transfer(CURLE_RECV_ERROR, 0, 0, false); /* reset before an answer */
    expect(&f, "llm_unavailable", true, -1);
    f = transfer(CURLE_GOT_NOTHING, 0, 0, false);
    expect(&f, "llm_unavailable", true, -1);
    f = transfer(CURLE_RECV_ERROR, 0, 200, true); /* reset mid-stream */
    expect(&f, "llm_truncated", true, -1);
    f = transfer(CURLE_PARTIAL_FILE, 0, 200, true);
    expect(&f, "llm_truncated", true, -1);
    f = transfer(CURLE_WRITE_ERROR, LLM_ABORT_STALL, 200, true);
    expect(&f, "llm_stalled", true, -1);
    assert_non_null(strstr(f.message, "1500 ms"));
    f = transfer(0, LLM_ABORT_TTFT, 0, false);
    expect(&f, "llm_timeout", true, -1);
    f = transfer(0, LLM_ABORT_TOTAL, 200, true);
    expect(&f, "llm_timeout", true, -1);
    f = transfer(CURLE_WRITE_ERROR, LLM_ABORT_TOO_LARGE, 200, true);
    expect(&f, "llm_result_too_large", false, -1);
    f = transfer(0, LLM_ABORT_CANCEL, 0, false);
    expect(&f, "cancelled", false, -1);
    f = transfer(0, LLM_ABORT_SHUTDOWN, 0, false);
    expect(&f, "llm_unavailable", true, -1);
    ok.status = 200;
    assert_false(classify_transfer(&ok, &f));
}

static void stream_outcomes(void **state)
{
    sse_chat_t c;
    llm_failure_t f;
    (void)state;
    sse_chat_init(&c, 0);
    strcpy(c.finish_reason, "stop");
    c.done = c.usage_seen = true;
    c.chunks = 3;
    assert_false(classify_stream(&c, true, false, &f));
    c.done = false;
    assert_true(classify_stream(&c, true, false, &f));
    expect(&f, "llm_truncated", true, -1);
    assert_non_null(strstr(f.message, "[DONE]"));
    c.done = true;
    c.usage_seen = false;
    assert_true(classify_stream(&c, true, false, &f));
    expect(&f, "llm_truncated", true, -1);
    assert_non_null(strstr(f.message, "usage"));
    c.usage_seen = true;
    strcpy(c.finish_reason, "length");
    assert_false(classify_stream(&c, true, false, &f)); /* a cut answer is an answer */
    assert_true(classify_stream(&c, true, true, &f));   /* but not a cut JSON */
    expect(&f, "llm_bad_output", true, -1);
    c.bad_chunks = 1;
    strcpy(c.finish_reason, "stop");
    assert_true(classify_stream(&c, true, false, &f));
    expect(&f, "llm_bad_output", true, -1);
    c.bad_chunks = 0;
    c.error = strdup("{\"error\":{\"message\":\"maximum context length is 10\",\"code\":400}}");
    assert_true(classify_stream(&c, true, false, &f));
    expect(&f, "llm_context_length", false, -1);
    free(c.error);
    c.error = strdup("{\"error\":{\"message\":\"engine died\"}}");
    assert_true(classify_stream(&c, true, false, &f));
    expect(&f, "llm_unavailable", true, -1);
    sse_chat_finish(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(statuses),
        cmocka_unit_test(context_length),
        cmocka_unit_test(error_bodies),
        cmocka_unit_test(retry_after),
        cmocka_unit_test(transport_and_aborts),
        cmocka_unit_test(stream_outcomes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
