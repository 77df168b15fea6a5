/*
 * test_llm_sse.c - the LLM worker's SSE parser and chunk accumulator
 * (workers/llm/sse.h): a recorded vLLM stream fed in every two-piece split,
 * byte by byte, and in random multi-piece splits, with "\n", "\r\n" and
 * "\r" line ends; comments, other fields, multi-line data, the usage chunk,
 * a missing [DONE], an in-band error, events that are not JSON, limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sse.h"

/* A stream as vLLM sends it with stream_options.include_usage: a role
 * chunk, content, a keep-alive comment, the finish chunk, the usage chunk
 * with empty choices, [DONE]. The content holds a 2-byte UTF-8 letter that
 * splits cut in half. */
static const char *STREAM =
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
    "\"model\":\"qwen2.5-7b-instruct\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
    "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
    "\"model\":\"qwen2.5-7b-instruct\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},"
    "\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
    ": ping\n\n"
    "event: message\nid: 7\nretry: 100\n"
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
    "\"model\":\"qwen2.5-7b-instruct\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo, \\u00e9t\xc3\xa9\"},"
    "\"logprobs\":null,\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
    "\"model\":\"qwen2.5-7b-instruct\",\"choices\":[{\"index\":0,\"delta\":{},"
    "\"logprobs\":null,\"finish_reason\":\"stop\",\"stop_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
    "\"model\":\"qwen2.5-7b-instruct\",\"choices\":[],\"usage\":{\"prompt_tokens\":812,"
    "\"total_tokens\":815,\"completion_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":64}}}\n\n"
    "data: [DONE]\n\n";

static const char *CONTENT = "Hello, \xc3\xa9t\xc3\xa9";

/* Parse text fed in the pieces that cuts[0..ncuts) (ascending) make. */
static void parse_cut(const char *text, size_t n, const size_t *cuts, size_t ncuts, sse_chat_t *c)
{
    sse_parser_t p;
    size_t at = 0;
    sse_chat_init(c, 0);
    sse_init(&p, 0, sse_chat_event, c);
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        assert_int_equal(sse_feed(&p, text + at, end - at), 0);
        at = end;
    }
    sse_finish(&p);
}

static void check_whole(const sse_chat_t *c)
{
    assert_string_equal(llm_buf_str(&c->content), CONTENT);
    assert_string_equal(c->finish_reason, "stop");
    assert_string_equal(c->model, "qwen2.5-7b-instruct");
    assert_true(c->usage_seen);
    assert_int_equal(c->prompt_tokens, 812);
    assert_int_equal(c->completion_tokens, 3);
    assert_int_equal(c->cached_tokens, 64);
    assert_true(c->done);
    assert_int_equal(c->chunks, 5);
    assert_int_equal(c->bad_chunks, 0);
    assert_null(c->error);
    assert_true(sse_chat_complete(c, true));
}

/* text with every "\n" replaced by eol. malloc'd. */
static char *with_eol(const char *text, const char *eol)
{
    size_t n = 0, k = strlen(eol);
    char *out, *o;
    for (const char *p = text; *p; p++) n += *p == '\n' ? k : 1;
    o = out = malloc(n + 1);
    assert_non_null(out);
    for (const char *p = text; *p; p++) {
        if (*p == '\n') {
            memcpy(o, eol, k);
            o += k;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

static void every_split(const char *text)
{
    size_t n = strlen(text);
    for (size_t i = 0; i <= n; i++) {
        sse_chat_t c;
        parse_cut(text, n, &i, 1, &c);
        check_whole(&c);
        sse_chat_finish(&c);
    }
}

static void whole_and_every_two_piece_split(void **state)
{
    static const char *const EOLS[] = {"\n", "\r\n", "\r"};
    (void)state;
    for (size_t e = 0; e < 3; e++) {
        char *text = with_eol(STREAM, EOLS[e]);
        every_split(text);
        free(text);
    }
}

static void byte_by_byte_and_random_splits(void **state)
{
    static const char *const EOLS[] = {"\n", "\r\n", "\r"};
    unsigned seed = 12345;
    (void)state;
    for (size_t e = 0; e < 3; e++) {
        char *text = with_eol(STREAM, EOLS[e]);
        size_t n = strlen(text), *cuts = malloc(n * sizeof(size_t));
        sse_chat_t c;
        assert_non_null(cuts);
        for (size_t i = 0; i + 1 < n; i++) cuts[i] = i + 1;
        parse_cut(text, n, cuts, n - 1, &c); /* one byte at a time */
        check_whole(&c);
        sse_chat_finish(&c);
        for (int round = 0; round < 500; round++) {
            /* 1 to 40 cuts anywhere, sorted, repeats allowed (empty feeds) */
            size_t k = 1 + (size_t)rand_r(&seed) % 40;
            for (size_t i = 0; i < k; i++) cuts[i] = (size_t)rand_r(&seed) % (n + 1);
            for (size_t i = 1; i < k; i++)
                for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                    size_t t = cuts[j];
                    cuts[j] = cuts[j - 1];
                    cuts[j - 1] = t;
                }
            parse_cut(text, n, cuts, k, &c);
            check_whole(&c);
            sse_chat_finish(&c);
        }
        free(cuts);
        free(text);
    }
}

static int count_events(void *ctx, const char *data, size_t len)
{
    llm_buf_t *b = ctx;
    assert_int_equal(strlen(data), len);
    llm_buf_add(b, "[", 1);
    llm_buf_add(b, data, len);
    llm_buf_add(b, "]", 1);
    return 0;
}

static void fields_comments_multiline(void **state)
{
    sse_parser_t p;
    llm_buf_t got = {0};
    const char *text = "\xEF\xBB\xBF" "data: a\n"  /* a BOM before the first field */
                       "data:b\n"       /* no space after the colon */
                       "data:  c\n\n"   /* only one space is dropped */
                       ":comment\n"
                       "data\n\n"       /* a field without a colon: empty data */
                       "event: x\n\n"   /* no data: no event */
                       "foo: bar\ndata: d\r\n\r\n"
                       "data: cut off by the end";
    (void)state;
    sse_init(&p, 0, count_events, &got);
    assert_int_equal(sse_feed(&p, text, strlen(text)), 0);
    assert_string_equal(llm_buf_str(&got), "[a\nb\n c][][d]");
    sse_finish(&p);
    llm_buf_finish(&got);
}

static int stop_at_second(void *ctx, const char *data, size_t len)
{
    int *n = ctx;
    (void)data;
    (void)len;
    return ++*n == 2 ? 42 : 0;
}

static void stop_and_limits(void **state)
{
    sse_parser_t p;
    int n = 0;
    char big[200];
    (void)state;
    sse_init(&p, 0, stop_at_second, &n);
    assert_int_equal(sse_feed(&p, "data: 1\n\ndata: 2\n\ndata: 3\n\n", 27), 42);
    assert_int_equal(sse_feed(&p, "data: 4\n\n", 9), 42); /* sticky */
    assert_int_equal(n, 2);
    sse_finish(&p);

    memset(big, 'x', sizeof(big));
    sse_init(&p, 100, stop_at_second, &n);
    assert_int_equal(sse_feed(&p, big, sizeof(big)), SSE_ETOOBIG); /* a line */
    sse_finish(&p);
    sse_init(&p, 100, stop_at_second, &n);
    for (int i = 0; i < 30; i++) {
        int rc = sse_feed(&p, "data: 0123456789\n", 17); /* an event of many lines */
        if (rc != 0) {
            assert_int_equal(rc, SSE_ETOOBIG);
            break;
        }
        assert_true(i < 10);
    }
    sse_finish(&p);
}

static void parse_whole(const char *text, sse_chat_t *c, size_t max)
{
    sse_parser_t p;
    sse_chat_init(c, max);
    sse_init(&p, 0, sse_chat_event, c);
    sse_feed(&p, text, strlen(text));
    sse_finish(&p);
}

static void incomplete_streams(void **state)
{
    sse_chat_t c;
    char *cut;
    (void)state;
    /* no [DONE] */
    cut = strdup(STREAM);
    *strstr(cut, "data: [DONE]") = '\0';
    parse_whole(cut, &c, 0);
    assert_true(c.usage_seen);
    assert_false(c.done);
    assert_false(sse_chat_complete(&c, true));
    sse_chat_finish(&c);
    /* no usage chunk: whole only when it was not asked for */
    strcpy(cut, STREAM);
    memmove(strstr(cut, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
                        "\"created\":1,\"model\":\"qwen2.5-7b-instruct\",\"choices\":[],"),
            strstr(cut, "data: [DONE]"), strlen("data: [DONE]\n\n") + 1);
    parse_whole(cut, &c, 0);
    assert_false(c.usage_seen);
    assert_true(c.done);
    assert_false(sse_chat_complete(&c, true));
    assert_true(sse_chat_complete(&c, false));
    sse_chat_finish(&c);
    /* no finish reason */
    parse_whole("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n"
                "data: [DONE]\n\n", &c, 0);
    assert_string_equal(c.finish_reason, "");
    assert_false(sse_chat_complete(&c, false));
    sse_chat_finish(&c);
    free(cut);
}

static void errors_bad_chunks_and_size(void **state)
{
    sse_chat_t c;
    (void)state;
    parse_whole("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n"
                "data: {\"error\":{\"object\":\"error\",\"message\":\"boom\",\"code\":500}}\n\n"
                "data: [DONE]\n\n", &c, 0);
    assert_non_null(c.error);
    assert_non_null(strstr(c.error, "boom"));
    assert_int_equal(c.chunks, 1);
    sse_chat_finish(&c);

    parse_whole("data: {\"object\":\"error\",\"message\":\"flat\",\"code\":503}\n\n", &c, 0);
    assert_non_null(c.error);
    assert_non_null(strstr(c.error, "flat"));
    assert_int_equal(c.chunks, 0);
    sse_chat_finish(&c);

    parse_whole("data: {not json\n\ndata: 17\n\n", &c, 0);
    assert_int_equal(c.bad_chunks, 2);
    assert_int_equal(c.chunks, 0);
    sse_chat_finish(&c);

    /* choice 1 of n > 1 is not choice 0 */
    parse_whole("data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"no\"}},"
                "{\"index\":0,\"delta\":{\"content\":\"yes\"},\"finish_reason\":\"length\"}]}\n\n", &c, 0);
    assert_string_equal(llm_buf_str(&c.content), "yes");
    assert_string_equal(c.finish_reason, "length");
    sse_chat_finish(&c);

    /* content over the limit stops the parser */
    {
        sse_parser_t p;
        const char *ev = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"0123456789\"}}]}\n\n";
        int rc = 0, i;
        sse_chat_init(&c, 25);
        sse_init(&p, 0, sse_chat_event, &c);
        for (i = 0; i < 5 && rc == 0; i++) rc = sse_feed(&p, ev, strlen(ev));
        assert_int_equal(rc, SSE_CHAT_STOP);
        assert_int_equal(i, 3);
        assert_true(c.too_large);
        assert_int_equal(c.content.len, 20);
        sse_finish(&p);
        sse_chat_finish(&c);
    }
}

static void plain_body(void **state)
{
    sse_chat_t c;
    const char *body = "{\"id\":\"x\",\"object\":\"chat.completion\",\"model\":\"m\",\"choices\":"
                       "[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},"
                       "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,"
                       "\"completion_tokens\":1}}";
    (void)state;
    sse_chat_init(&c, 0);
    assert_int_equal(sse_chat_body(&c, body, strlen(body)), 0);
    assert_string_equal(llm_buf_str(&c.content), "hi");
    assert_true(sse_chat_complete(&c, true));
    assert_int_equal(c.cached_tokens, 0);
    sse_chat_finish(&c);
    sse_chat_init(&c, 0);
    assert_int_equal(sse_chat_body(&c, "[1]", 3), -1);
    assert_int_equal(c.bad_chunks, 1);
    sse_chat_finish(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(whole_and_every_two_piece_split),
        cmocka_unit_test(byte_by_byte_and_random_splits),
        cmocka_unit_test(fields_comments_multiline),
        cmocka_unit_test(stop_and_limits),
        cmocka_unit_test(incomplete_streams),
        cmocka_unit_test(errors_bad_chunks_and_size),
        cmocka_unit_test(plain_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
