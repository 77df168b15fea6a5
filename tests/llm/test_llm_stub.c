/*
 * test_llm_stub.c - the LLM worker's handlers (workers/llm/handler.h)
 * against tests/llmstub over real HTTP, called directly as the SDK calls
 * them: a call that completes (its §4 result, and the stub's journal
 * agreeing on task, prompt hash and seed), a score with its content_json,
 * every scripted fault classified as docs/deliberation.md §4 says (429 with
 * Retry-After, context length, a stall and a hang the stub sees aborted, a
 * reset, bad JSON, a cut stream...), a cancel that aborts the transfer, the
 * API key, the model list, a skip that sends nothing, results over the
 * limit, and many calls at once on a few threads (calls/s and CPU per call
 * are printed).
 *
 * argv[1]: tests/llmstub/llmstub.py. The stub is a child that dies with the
 * test (stubproc.c), and is stopped at the end of the group.
 */
#include <cJSON.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "engine/step_out.h"
#include "handler.h"
#include "stubproc.h"

static const char *script;
static stubproc_t stub;
static http_t *http;
static char *served[2] = {"stub-model", "other-model"};
static llm_ctx_t ctx;
static llm_handler_arg_t gen_arg = {&ctx, "generate"}, score_arg = {&ctx, "score"};
static int seq;

static const char *COUNCIL =
    "{\"name\":\"dev\",\"version\":\"abc\",\"definition\":{\"name\":\"dev\",\"role\":\"developer\","
    "\"model\":{\"name\":\"stub-model\",\"temperature\":0.7,\"max_tokens\":1024},"
    "\"system_prompt\":\"You are {{agent}}, {{persona}}. You work as a {{role}}.\","
    "\"prompts\":{\"generate\":\"Task:\\n{{task}}\\n\\nContext:\\n{{context}}\\n\\nWrite your proposal.\","
    "\"critique\":\"{{task}} {{proposal}}\",\"revise\":\"{{proposal}} {{critiques}}\","
    "\"score\":\"Score this proposal:\\n{{proposal}}\\n\\nRubric:\\n{{rubric}}\"},"
    "\"rubric\":{\"correctness\":{\"weight\":0.6,\"description\":\"it solves the task\"},"
    "\"clarity\":{\"weight\":0.4,\"description\":\"it is easy to follow\"}},"
    "\"judge\":{\"persona\":\"an impartial senior reviewer\"},"
    "\"agents\":[{\"id\":\"dev-1\",\"persona\":\"a careful engineer\"},"
    "{\"id\":\"dev-2\",\"persona\":\"a pragmatic engineer\",\"temperature\":0.9}]}}";

/* A task: its ids and input. */
typedef struct task {
    char exec[64], step[32], id[128];
    char *input;
    cbm_step_call_t call;
} task_t;

static void task_init(task_t *t, const char *phase, int agent, const char *deps)
{
    size_t n = strlen(COUNCIL) + strlen(deps) + 512;
    snprintf(t->exec, sizeof(t->exec), "00000000-0000-4000-8000-%012d", ++seq);
    if (strcmp(phase, "score") == 0) snprintf(t->step, sizeof(t->step), "score.%d", agent);
    else snprintf(t->step, sizeof(t->step), "gen.%d", agent);
    snprintf(t->id, sizeof(t->id), "%s/%s/1", t->exec, t->step);
    t->input = malloc(n);
    assert_non_null(t->input);
    snprintf(t->input, n,
             "{\"inputs\":{\"task\":\"add retries to the uploader\",\"context\":{\"n\":%d},"
             "\"council\":%s,\"params\":{\"model\":{\"name\":\"stub-model\",\"max_tokens\":200}}},"
             "\"deps\":%s,\"args\":{\"phase\":\"%s\",\"agent\":%d,\"round\":0}}",
             seq, COUNCIL, deps, phase, agent);
    t->call.execution_id = t->exec;
    t->call.step = t->step;
    t->call.attempt = 1;
    t->call.input_json = t->input;
}

/* What a handler ended the step with. */
typedef struct outcome {
    cbm_out_kind_t kind;
    cJSON *result, *error;
} outcome_t;

static outcome_t run_with(task_t *t, llm_handler_arg_t *arg, cbm_cancel_slot_t *slot)
{
    struct cbm_step_out out = {0};
    outcome_t o = {0};
    out.cancel = slot;
    llm_handle(&t->call, &out, arg);
    o.kind = out.kind;
    if (out.result != NULL) o.result = cJSON_Parse(out.result);
    if (out.error != NULL) o.error = cJSON_Parse(out.error);
    free(out.result);
    free(out.error);
    free(out.type);
    free(t->input);
    t->input = NULL;
    return o;
}

static void outcome_free(outcome_t *o)
{
    cJSON_Delete(o->result);
    cJSON_Delete(o->error);
}

static const char *s_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double n_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    if (!cJSON_IsNumber(v)) fail_msg("%s is not a number", k);
    return v->valuedouble;
}

static void expect_failure(const outcome_t *o, const char *kind, bool retryable)
{
    char *e = o->error != NULL ? cJSON_PrintUnformatted(o->error) : NULL;
    if (o->kind != CBM_OUT_FAILED || strcmp(s_of(o->error, "kind"), kind) != 0 ||
        cJSON_IsTrue(cJSON_GetObjectItem(o->error, "retryable")) != retryable)
        fail_msg("expected %s (retryable %d), got kind %d: %s", kind, retryable, o->kind,
                 e != NULL ? e : "(no error)");
    free(e);
}

static void script_fault(const char *task, const char *rule)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"match\":\"%s\",%s}", task, rule);
    assert_int_equal(stubproc_post(&stub, "/_stub/script", body), 200);
}

static char *entry(const char *task)
{
    char *e = stubproc_entry(&stub, task, 3000);
    if (e == NULL) fail_msg("no settled journal entry for %s", task);
    return e;
}

/* ------------------------------------------------------------------ tests */

static void generate_completes(void **state)
{
    task_t t;
    outcome_t o;
    cJSON *u, *j;
    char *e;
    (void)state;
    task_init(&t, "generate", 1, "{}");
    o = run_with(&t, &gen_arg, NULL);
    if (o.kind != CBM_OUT_OK) fail_msg("failed: %s", cJSON_PrintUnformatted(o.error));
    assert_string_equal(s_of(o.result, "agent"), "dev-2");
    assert_string_equal(s_of(o.result, "phase"), "generate");
    assert_true(strlen(s_of(o.result, "content")) > 20);
    assert_null(cJSON_GetObjectItem(o.result, "content_json"));
    assert_non_null(s_of(o.result, "finish_reason"));
    assert_string_equal(s_of(o.result, "model"), "stub-model");
    u = cJSON_GetObjectItem(o.result, "usage");
    assert_true(n_of(u, "prompt_tokens") > 10);
    assert_true(n_of(u, "completion_tokens") >= 20);
    assert_true(n_of(u, "cached_tokens") == 0);
    assert_true(n_of(o.result, "ttft_ms") >= 0);
    assert_true(n_of(o.result, "latency_ms") >= n_of(o.result, "ttft_ms"));
    /* the stub saw this very call, whole */
    e = entry(t.id);
    j = cJSON_Parse(e);
    assert_string_equal(s_of(j, "status"), "completed");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "stream")));
    assert_string_equal(s_of(j, "prompt_sha256"), s_of(o.result, "prompt_sha256"));
    assert_true(n_of(j, "seed") == n_of(o.result, "seed"));
    assert_true(n_of(j, "completion_tokens") == n_of(u, "completion_tokens"));
    cJSON_Delete(j);
    free(e);
    outcome_free(&o);
}

static void score_has_content_json(void **state)
{
    task_t t;
    outcome_t o;
    const cJSON *cj, *crit;
    (void)state;
    task_init(&t, "score", 0, "{\"gen.0\":{\"agent\":\"dev-1\",\"content\":\"Retry with back-off.\"}}");
    o = run_with(&t, &score_arg, NULL);
    if (o.kind != CBM_OUT_OK) fail_msg("failed: %s", cJSON_PrintUnformatted(o.error));
    assert_string_equal(s_of(o.result, "agent"), "judge");
    cj = cJSON_GetObjectItem(o.result, "content_json");
    crit = cJSON_GetObjectItem(cj, "criteria");
    assert_true(n_of(crit, "correctness") >= 0 && n_of(crit, "correctness") <= 1);
    assert_true(n_of(crit, "clarity") >= 0 && n_of(crit, "clarity") <= 1);
    assert_non_null(s_of(cj, "rationale"));
    outcome_free(&o);
}

static void skipped_sends_nothing(void **state)
{
    task_t t;
    outcome_t o;
    (void)state;
    task_init(&t, "score", 1, "{\"rev.1.1\":{\"kind\":\"llm_timeout\",\"message\":\"m\",\"retryable\":true}}");
    o = run_with(&t, &score_arg, NULL);
    assert_int_equal(o.kind, CBM_OUT_OK);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o.result, "skipped")));
    assert_string_equal(s_of(o.result, "because"), "rev.1.1");
    assert_null(stubproc_entry(&stub, t.id, 0));
    outcome_free(&o);
}

typedef struct fault_case {
    const char *rule;    /* the rule's fault and knobs */
    bool score;          /* a score call (a schema asked) */
    const char *kind;
    bool retryable;
    int64_t retry_after_ms; /* expected in the error object (0: none) */
    const char *journal;    /* the stub's status for it */
} fault_case_t;

static const fault_case_t FAULTS[] = {
    {"\"fault\":\"429\",\"retry_after_s\":3", false, "llm_rate_limited", true, 3000, "fault"},
    {"\"fault\":\"429\"", false, "llm_rate_limited", true, 0, "fault"},
    {"\"fault\":\"503\",\"retry_after_s\":1", false, "llm_unavailable", true, 1000, "fault"},
    {"\"fault\":\"500\"", false, "llm_unavailable", true, 0, "fault"},
    {"\"fault\":\"502\"", false, "llm_unavailable", true, 0, "fault"},
    {"\"fault\":\"504\"", false, "llm_unavailable", true, 0, "fault"},
    {"\"fault\":\"408\"", false, "llm_timeout", true, 0, "fault"},
    {"\"fault\":\"400\"", false, "llm_bad_request", false, 0, "fault"},
    {"\"fault\":\"404\"", false, "llm_bad_request", false, 0, "fault"},
    {"\"fault\":\"422\"", false, "llm_bad_request", false, 0, "fault"},
    {"\"fault\":\"401\"", false, "llm_auth", false, 0, "fault"},
    {"\"fault\":\"403\"", false, "llm_auth", false, 0, "fault"},
    {"\"fault\":\"context_length\"", false, "llm_context_length", false, 0, "fault"},
    {"\"fault\":\"context_length_nested\"", false, "llm_context_length", false, 0, "fault"},
    {"\"fault\":\"reset\"", false, "llm_unavailable", true, 0, "fault"},
    {"\"fault\":\"reset\",\"after_tokens\":4", false, "llm_truncated", true, 0, "fault"},
    {"\"fault\":\"bad_json\",\"after_tokens\":2", false, "llm_bad_output", true, 0, "fault"},
    {"\"fault\":\"bad_schema\"", true, "llm_bad_output", true, 0, "fault"},
    {"\"fault\":\"length\"", true, "llm_bad_output", true, 0, "fault"},
    {"\"fault\":\"no_done\"", false, "llm_truncated", true, 0, "fault"},
    {"\"fault\":\"no_done\",\"after_tokens\":3", false, "llm_truncated", true, 0, "fault"},
    {"\"fault\":\"stall\",\"after_tokens\":3", false, "llm_stalled", true, 0, "aborted"},
    {"\"fault\":\"hang\"", false, "llm_timeout", true, 0, "aborted"},
};

static void faults_classified(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(FAULTS) / sizeof(FAULTS[0]); i++) {
        const fault_case_t *fc = &FAULTS[i];
        task_t t;
        outcome_t o;
        cJSON *j;
        char *e;
        const cJSON *ra;
        task_init(&t, fc->score ? "score" : "generate", 0,
                  fc->score ? "{\"gen.0\":{\"content\":\"P\"}}" : "{}");
        script_fault(t.id, fc->rule);
        /* Short limits only where they are the point: a loaded machine
         * must not turn a slow answer into a stall elsewhere. */
        if (strstr(fc->rule, "hang") != NULL) ctx.ttft_ms = 800;
        if (strstr(fc->rule, "stall") != NULL) ctx.stall_ms = 400;
        o = run_with(&t, fc->score ? &score_arg : &gen_arg, NULL);
        ctx.ttft_ms = ctx.stall_ms = 15000;
        print_message("%-45s -> %s: %s\n", fc->rule, s_of(o.error, "kind"), s_of(o.error, "message"));
        expect_failure(&o, fc->kind, fc->retryable);
        ra = cJSON_GetObjectItem(o.error, "retry_after_ms");
        if (fc->retry_after_ms > 0) {
            assert_true(cJSON_IsNumber(ra));
            assert_int_equal((int64_t)ra->valuedouble, fc->retry_after_ms);
        } else {
            assert_null(ra);
        }
        e = entry(t.id);
        j = cJSON_Parse(e);
        if (strcmp(s_of(j, "status"), fc->journal) != 0)
            fail_msg("%s: journal says %s, expected %s", fc->rule, e, fc->journal);
        cJSON_Delete(j);
        free(e);
        outcome_free(&o);
    }
}

static void total_time_limit(void **state)
{
    task_t t;
    outcome_t o;
    char *e;
    (void)state;
    ctx.total_ms = 700; /* the stall limit stays long: the total one ends it */
    task_init(&t, "generate", 0, "{}");
    script_fault(t.id, "\"fault\":\"stall\",\"after_tokens\":2");
    o = run_with(&t, &gen_arg, NULL);
    ctx.total_ms = 60000;
    expect_failure(&o, "llm_timeout", true);
    assert_non_null(strstr(s_of(o.error, "message"), "longer than 700 ms"));
    e = entry(t.id);
    assert_non_null(strstr(e, "\"status\":\"aborted\""));
    free(e);
    outcome_free(&o);
}

/* A cancel slot as the SDK provides one: it keeps the handler's callback,
 * which the test then calls from its own thread. */
typedef struct test_slot {
    cbm_cancel_slot_t slot; /* first */
    pthread_mutex_t mu;
    void (*fn)(void *);
    void *arg;
} test_slot_t;

static void slot_set(cbm_cancel_slot_t *s, void (*fn)(void *), void *arg)
{
    test_slot_t *t = (test_slot_t *)s;
    pthread_mutex_lock(&t->mu);
    t->fn = fn;
    t->arg = arg;
    pthread_mutex_unlock(&t->mu);
}

typedef struct cancel_run {
    task_t t;
    test_slot_t slot;
    outcome_t o;
} cancel_run_t;

static void *cancel_thread(void *arg)
{
    cancel_run_t *c = arg;
    c->o = run_with(&c->t, &gen_arg, &c->slot.slot);
    return NULL;
}

static void cancel_aborts_the_transfer(void **state)
{
    cancel_run_t c;
    pthread_t th;
    char *e;
    cJSON *j;
    int64_t before = ctx.ttft_ms;
    (void)state;
    memset(&c, 0, sizeof(c));
    c.slot.slot.set = slot_set;
    pthread_mutex_init(&c.slot.mu, NULL);
    ctx.ttft_ms = 60000; /* only the cancel may end it */
    task_init(&c.t, "generate", 0, "{}");
    script_fault(c.t.id, "\"fault\":\"hang\"");
    assert_int_equal(pthread_create(&th, NULL, cancel_thread, &c), 0);
    /* wait until the stub has the request in flight */
    for (int i = 0;; i++) {
        char *jn = stubproc_get(&stub, "/_stub/journal");
        int seen = jn != NULL && strstr(jn, c.t.id) != NULL;
        free(jn);
        if (seen) break;
        assert_true(i < 500);
        usleep(20000);
    }
    pthread_mutex_lock(&c.slot.mu);
    assert_non_null(c.slot.fn);
    c.slot.fn(c.slot.arg); /* as the SDK does, from another thread */
    pthread_mutex_unlock(&c.slot.mu);
    pthread_join(th, NULL);
    ctx.ttft_ms = before;
    expect_failure(&c.o, "cancelled", false);
    e = entry(c.t.id);
    j = cJSON_Parse(e);
    assert_string_equal(s_of(j, "status"), "aborted");
    cJSON_Delete(j);
    free(e);
    outcome_free(&c.o);
    pthread_mutex_destroy(&c.slot.mu);
}

static void early_set(cbm_cancel_slot_t *s, void (*fn)(void *), void *arg)
{
    (void)s;
    fn(arg); /* the server cancelled before the handler asked */
}

static void cancel_before_the_call(void **state)
{
    task_t t;
    outcome_t o;
    cbm_cancel_slot_t slot = {early_set};
    (void)state;
    task_init(&t, "generate", 0, "{}");
    o = run_with(&t, &gen_arg, &slot);
    expect_failure(&o, "cancelled", false);
    assert_null(stubproc_entry(&stub, t.id, 200));
    outcome_free(&o);
}

static void results_over_the_limit(void **state)
{
    task_t t;
    outcome_t o;
    size_t before = ctx.max_result_bytes;
    (void)state;
    ctx.max_result_bytes = 60; /* the content alone passes it mid-stream */
    task_init(&t, "generate", 0, "{}");
    o = run_with(&t, &gen_arg, NULL);
    expect_failure(&o, "llm_result_too_large", false);
    outcome_free(&o);
    ctx.max_result_bytes = 700; /* the content fits, the whole result does not */
    task_init(&t, "generate", 0, "{}");
    o = run_with(&t, &gen_arg, NULL);
    if (o.kind == CBM_OUT_FAILED) expect_failure(&o, "llm_result_too_large", false);
    outcome_free(&o);
    ctx.max_result_bytes = before;
}

static void models_and_api_key(void **state)
{
    char **names = NULL, why[256];
    size_t n = 0;
    stubproc_t keyed;
    const char *const args[] = {"--api-key", "k3y", "--models", "stub-model", NULL};
    llm_ctx_t kctx;
    llm_handler_arg_t karg = {&kctx, "generate"};
    task_t t;
    outcome_t o;
    (void)state;
    assert_int_equal(llm_fetch_models(http, stub.base, NULL, 5000, &names, &n, why, sizeof(why)), 0);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "stub-model");
    assert_string_equal(names[1], "other-model");
    llm_models_free(names, n);
    /* a server that is not there */
    assert_int_equal(llm_fetch_models(http, "http://127.0.0.1:1/v1", NULL, 5000, &names, &n, why,
                                      sizeof(why)), -1);
    assert_non_null(strstr(why, "onnect"));
    /* something that is not a model list */
    {
        char url[160];
        snprintf(url, sizeof(url), "%s/_stub", stub.root);
        assert_int_equal(llm_fetch_models(http, url, NULL, 5000, &names, &n, why, sizeof(why)), -1);
    }

    assert_int_equal(stubproc_start(&keyed, script, 0, args), 0);
    assert_int_equal(llm_fetch_models(http, keyed.base, NULL, 5000, &names, &n, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "HTTP 401"));
    assert_int_equal(llm_fetch_models(http, keyed.base, "k3y", 5000, &names, &n, why, sizeof(why)), 0);
    llm_models_free(names, n);
    kctx = ctx;
    kctx.base_url = keyed.base;
    kctx.api_key = "k3y";
    task_init(&t, "generate", 0, "{}");
    o = run_with(&t, &karg, NULL);
    assert_int_equal(o.kind, CBM_OUT_OK);
    outcome_free(&o);
    kctx.api_key = "wrong";
    task_init(&t, "generate", 0, "{}");
    o = run_with(&t, &karg, NULL);
    expect_failure(&o, "llm_auth", false);
    outcome_free(&o);
    stubproc_stop(&keyed);
    /* the model server gone: unavailable, retryable */
    task_init(&t, "generate", 0, "{}");
    o = run_with(&t, &karg, NULL);
    expect_failure(&o, "llm_unavailable", true);
    outcome_free(&o);
}

/* Many calls at once: THREADS slot threads, CALLS each. */
enum { THREADS = 8, CALLS = 40 };
static int ok_count;
static pthread_mutex_t count_mu = PTHREAD_MUTEX_INITIALIZER;

static void *slot(void *arg)
{
    (void)arg;
    for (int i = 0; i < CALLS; i++) {
        task_t t;
        outcome_t o;
        pthread_mutex_lock(&count_mu);
        task_init(&t, "generate", i % 2, "{}");
        pthread_mutex_unlock(&count_mu);
        o = run_with(&t, &gen_arg, NULL);
        pthread_mutex_lock(&count_mu);
        ok_count += o.kind == CBM_OUT_OK;
        pthread_mutex_unlock(&count_mu);
        outcome_free(&o);
    }
    return NULL;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void many_at_once(void **state)
{
    pthread_t th[THREADS];
    struct timespec a, b;
    double wall, cpu0 = cpu_s(), cpu;
    uint64_t t0, c0, t1, c1;
    (void)state;
    ok_count = 0;
    http_stats(http, &t0, &c0);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < THREADS; i++) assert_int_equal(pthread_create(&th[i], NULL, slot, NULL), 0);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    wall = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    cpu = cpu_s() - cpu0;
    assert_int_equal(ok_count, THREADS * CALLS);
    http_stats(http, &t1, &c1);
    assert_int_equal(t1 - t0, THREADS * CALLS);
    /* keep-alive: connections are reused, at most one per slot is opened */
    print_message("%llu transfers opened %llu new connections\n", (unsigned long long)(t1 - t0),
                  (unsigned long long)(c1 - c0));
    assert_true(c1 - c0 <= THREADS);
    print_message("%d calls, %d at once: %.0f calls/s, %.0f us of this process's CPU per call\n",
                  THREADS * CALLS, THREADS, THREADS * CALLS / wall, cpu / (THREADS * CALLS) * 1e6);
}

static int setup(void **state)
{
    const char *const args[] = {"--models", "stub-model,other-model", NULL};
    http_opts_t ho = {0};
    (void)state;
    if (stubproc_start(&stub, script, 0, args) != 0) return -1;
    ho.connect_timeout_ms = 2000;
    ho.max_connections = 8;
    if (http_create(&http, &ho) != 0) return -1;
    ctx.http = http;
    ctx.base_url = stub.base;
    ctx.call.default_model = "stub-model";
    ctx.call.served = (const char *const *)served;
    ctx.call.nserved = 2;
    ctx.ttft_ms = 15000;
    ctx.stall_ms = 15000;
    ctx.total_ms = 60000;
    ctx.max_result_bytes = 1 << 20;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    http_destroy(http);
    stubproc_stop(&stub);
    return 0;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(generate_completes),
        cmocka_unit_test(score_has_content_json),
        cmocka_unit_test(skipped_sends_nothing),
        cmocka_unit_test(faults_classified),
        cmocka_unit_test(total_time_limit),
        cmocka_unit_test(cancel_aborts_the_transfer),
        cmocka_unit_test(cancel_before_the_call),
        cmocka_unit_test(results_over_the_limit),
        cmocka_unit_test(models_and_api_key),
        cmocka_unit_test(many_at_once),
    };
    int rc;
    if (argc < 2) {
        fprintf(stderr, "usage: test_llm_stub LLMSTUB.PY\n");
        return 2;
    }
    script = argv[1];
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
