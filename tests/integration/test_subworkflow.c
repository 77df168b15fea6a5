/*
 * test_subworkflow.c - sub-workflows end to end on a real PostgreSQL: a
 * child completes and its parent uses the result (and a later step sees it
 * in its deps); a failed child is a failed step (retry, diverge, the
 * parent's failure); a child blueprint that does not exist, or inputs it
 * refuses, fail the step; cancelling the parent cancels its children, and a
 * parent that fails takes its children with it; the parent hibernates while
 * its child sleeps; the engine is stopped mid-child and a new one finishes
 * both (state before == state after, live == fold); a child that ended in
 * another process, or that a crash lost before it started, is found by the
 * parent's child timer or by the parent's resurrection; histories link both
 * ways.
 */
#include <cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

#include "cerebelum/cerebelum.h"
#include "engine/blueprint.h"
#include "engine/event.h"
#include "engine/state.h"
#include "tests/harness/testdb.h"

char *cbm__debug_state_json(cbm_engine_t *e, const char *id);

static char url[512];

/* ---- blueprints ---------------------------------------------------------- */

static const char *const DOUBLE =
    "{\"name\":\"double\",\"inputs\":{\"n\":{\"type\":\"number\",\"required\":true},"
    "\"tag\":{\"type\":\"string\"}},"
    "\"steps\":[{\"name\":\"twice\",\"handler\":\"twice\"}]}";

static const char *const PARENT =
    "{\"name\":\"par\",\"steps\":["
    "{\"name\":\"prep\",\"handler\":\"prep\"},"
    "{\"name\":\"sub\",\"kind\":\"subworkflow\",\"blueprint\":\"double\",\"depends_on\":[\"prep\"],"
    " \"inputs\":{\"n\":\"$.deps.prep.n\",\"tag\":\"$.inputs.tag\"}},"
    "{\"name\":\"after\",\"handler\":\"echo\",\"depends_on\":[\"sub\"]}]}";

static const char *const CFAIL =
    "{\"name\":\"cfail\",\"steps\":[{\"name\":\"boom\",\"handler\":\"fail\"}]}";

/* Retried once, then continued on its error. */
static const char *const PRETRY =
    "{\"name\":\"pretry\",\"steps\":["
    "{\"name\":\"sub\",\"kind\":\"subworkflow\",\"blueprint\":\"cfail\","
    " \"retry\":{\"max_attempts\":2,\"initial_ms\":10},"
    " \"diverge\":[{\"match\":{\"kind\":\"child_failed\"},\"on\":\"error\",\"action\":\"continue\"}]},"
    "{\"name\":\"after\",\"handler\":\"echo\",\"depends_on\":[\"sub\"]}]}";

/* No rule: the failed child fails the parent. */
static const char *const PFAIL =
    "{\"name\":\"pfail\",\"steps\":["
    "{\"name\":\"sub\",\"kind\":\"subworkflow\",\"blueprint\":\"cfail\"}]}";

static const char *const PUNKNOWN =
    "{\"name\":\"punknown\",\"steps\":["
    "{\"name\":\"sub\",\"kind\":\"subworkflow\",\"blueprint\":\"nowhere\"}]}";

/* "n" must be a number; this passes a string. */
static const char *const PBADIN =
    "{\"name\":\"pbadin\",\"steps\":["
    "{\"name\":\"sub\",\"kind\":\"subworkflow\",\"blueprint\":\"double\","
    " \"inputs\":{\"n\":\"not a number\"}}]}";

/* A child that waits for a person. */
static const char *const CAPPROVE =
    "{\"name\":\"capprove\",\"steps\":[{\"name\":\"ok\",\"kind\":\"approval\"}]}";

static const char *const PAPPROVE =
    "{\"name\":\"papprove\",\"steps\":["
    "{\"name\":\"sub\",\"kind\":\"subworkflow\",\"blueprint\":\"capprove\"},"
    "{\"name\":\"after\",\"handler\":\"echo\",\"depends_on\":[\"sub\"]}]}";

/* A child that sleeps long; its parent has a time-out. */
static const char *const CLONG =
    "{\"name\":\"clong\",\"steps\":[{\"name\":\"nap\",\"kind\":\"sleep\",\"duration_ms\":600000}]}";

static const char *const PDEADLINE =
    "{\"name\":\"pdeadline\",\"timeout_ms\":1500,\"steps\":["
    "{\"name\":\"sub\",\"kind\":\"subworkflow\",\"blueprint\":\"clong\"}]}";

/* A child that sleeps a little, then works; its parent waits at a gate
 * afterwards. */
static const char *const CSLEEP =
    "{\"name\":\"csleep\",\"steps\":["
    "{\"name\":\"nap\",\"kind\":\"sleep\",\"duration_ms\":2500},"
    "{\"name\":\"work\",\"handler\":\"prep\",\"depends_on\":[\"nap\"]}]}";

static const char *const PSLEEP =
    "{\"name\":\"psleep\",\"steps\":["
    "{\"name\":\"sub\",\"kind\":\"subworkflow\",\"blueprint\":\"csleep\"},"
    "{\"name\":\"after\",\"handler\":\"gate\",\"depends_on\":[\"sub\"]}]}";

/* A loop re-opens a step whose child runs: "again" sends the execution back
 * to "prep" once, re-opening "sub" while its child waits for an approval. */
static const char *const PLOOP =
    "{\"name\":\"ploop\",\"steps\":["
    "{\"name\":\"prep\",\"handler\":\"prep\"},"
    "{\"name\":\"sub\",\"kind\":\"subworkflow\",\"blueprint\":\"capprove\",\"depends_on\":[\"prep\"]},"
    "{\"name\":\"again\",\"handler\":\"again\",\"depends_on\":[\"prep\"],"
    " \"diverge\":[{\"match\":{\"again\":true},\"action\":\"back_to\",\"target\":\"prep\","
    "  \"max_iterations\":1}]}]}";

/* ---- handlers ------------------------------------------------------------ */

static void h_prep(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_ok(out, "{\"n\": 21}");
}

/* {"v": 2n, "tag": tag} */
static void h_twice(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *in = cJSON_Parse(call->input_json);
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(in, "inputs");
    const cJSON *tag = cJSON_GetObjectItemCaseSensitive(inputs, "tag");
    char buf[128];
    (void)arg;
    snprintf(buf, sizeof(buf), "{\"v\": %g, \"tag\": \"%s\"}",
             2 * cJSON_GetObjectItemCaseSensitive(inputs, "n")->valuedouble,
             cJSON_IsString(tag) ? tag->valuestring : "-");
    cbm_step_ok(out, buf);
    cJSON_Delete(in);
}

/* Its dependencies' results. */
static void h_echo(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *in = cJSON_Parse(call->input_json);
    char *deps = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(in, "deps"));
    (void)arg;
    cbm_step_ok(out, deps);
    free(deps);
    cJSON_Delete(in);
}

static void h_fail(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_fail(out, "boom", "failed on purpose", false);
}

typedef struct gate {
    uv_mutex_t mu;
    uv_cond_t cv;
    int entered, open;
} gate_t;

static gate_t gate;

static void h_gate(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    uv_mutex_lock(&gate.mu);
    gate.entered = 1;
    uv_cond_broadcast(&gate.cv);
    while (!gate.open) uv_cond_wait(&gate.cv, &gate.mu);
    uv_mutex_unlock(&gate.mu);
    cbm_step_ok(out, "{\"gate\": \"passed\"}");
}

/* Attempt 1 passes the gate and asks for another round; later ones not. */
static void h_again(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    if (call->attempt > 1) {
        cbm_step_ok(out, "{\"again\": false}");
        return;
    }
    (void)arg;
    uv_mutex_lock(&gate.mu);
    gate.entered = 1;
    uv_cond_broadcast(&gate.cv);
    while (!gate.open) uv_cond_wait(&gate.cv, &gate.mu);
    uv_mutex_unlock(&gate.mu);
    cbm_step_ok(out, "{\"again\": true}");
}

/* ---- helpers ------------------------------------------------------------- */

static const char *ALL[14];

static void all_init(void)
{
    const char *const a[] = {DOUBLE, PARENT, CFAIL, PRETRY,   PFAIL,  PUNKNOWN, PBADIN,
                                  CAPPROVE, PAPPROVE, CLONG, PDEADLINE, CSLEEP, PSLEEP, PLOOP};
    memcpy(ALL, a, sizeof(ALL));
}

static cbm_engine_t *engine_opts(bool client_only)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    o.database_url = url;
    o.client_only = client_only;
    assert_int_equal(cbm_engine_create(&e, &o, &err), 0);
    if (!client_only) {
        assert_int_equal(cbm_engine_register_step(e, "prep", h_prep, NULL), 0);
        assert_int_equal(cbm_engine_register_step(e, "twice", h_twice, NULL), 0);
        assert_int_equal(cbm_engine_register_step(e, "echo", h_echo, NULL), 0);
        assert_int_equal(cbm_engine_register_step(e, "fail", h_fail, NULL), 0);
        assert_int_equal(cbm_engine_register_step(e, "gate", h_gate, NULL), 0);
        assert_int_equal(cbm_engine_register_step(e, "again", h_again, NULL), 0);
    }
    if (cbm_engine_start(e, &err) != 0) fail_msg("start: %s", err.message);
    for (size_t i = 0; i < sizeof(ALL) / sizeof(*ALL); i++)
        if (cbm_engine_register_blueprint(e, ALL[i], NULL, &err) != 0)
            fail_msg("register: %s", err.message);
    return e;
}

static cbm_engine_t *engine(void)
{
    return engine_opts(false);
}

static void start(cbm_engine_t *e, const char *bp, const char *inputs, char id[37])
{
    cbm_error_t err = {0};
    if (cbm_execution_start(e, bp, inputs, id, &err) != 0) fail_msg("start: %s", err.message);
}

static cbm_execution_info_t *wait_end(cbm_engine_t *e, const char *id)
{
    cbm_error_t err = {0};
    cbm_execution_info_t *info = NULL;
    if (cbm_execution_wait(e, id, 30000, &info, &err) != 0) fail_msg("wait: %s", err.message);
    return info;
}

static void wait_status(cbm_engine_t *e, const char *id, const char *status)
{
    for (int i = 0; i < 1500; i++) {
        cbm_execution_info_t *x = NULL;
        cbm_error_t err = {0};
        int same;
        if (cbm_execution_get(e, id, &x, &err) == 0) {
            same = strcmp(x->status, status) == 0;
            cbm_execution_info_free(x);
            if (same) return;
        }
        uv_sleep(10);
    }
    fail_msg("execution %s never became %s", id, status);
}

static cbm_event_t *history(cbm_engine_t *e, const char *id, size_t *n)
{
    cbm_event_t *ev = NULL;
    cbm_error_t err = {0};
    if (cbm_execution_history(e, id, 1, &ev, n, &err) != 0) fail_msg("history: %s", err.message);
    return ev;
}

/* The event types of id's history, comma-separated (malloc'd). */
static char *types_of(cbm_engine_t *e, const char *id)
{
    size_t n = 0, len = 1;
    cbm_event_t *ev = history(e, id, &n);
    char *out;
    for (size_t i = 0; i < n; i++) len += strlen(ev[i].type) + 1;
    out = calloc(1, len);
    for (size_t i = 0; i < n; i++) {
        if (i) strcat(out, ",");
        strcat(out, ev[i].type);
    }
    cbm_events_free(ev, n);
    return out;
}

/* The string member key of the payload of the idx-th (0-based) event of
 * type type in id's history (malloc'd), or NULL. */
static char *payload_str(cbm_engine_t *e, const char *id, const char *type, int idx,
                         const char *path1, const char *path2)
{
    size_t n = 0;
    cbm_event_t *ev = history(e, id, &n);
    char *out = NULL;
    for (size_t i = 0; i < n && out == NULL; i++) {
        cJSON *p;
        const cJSON *v;
        if (strcmp(ev[i].type, type) != 0 || idx-- > 0) continue;
        p = cJSON_Parse(ev[i].payload);
        v = cJSON_GetObjectItemCaseSensitive(p, path1);
        if (path2 != NULL) v = cJSON_GetObjectItemCaseSensitive(v, path2);
        if (cJSON_IsString(v)) out = strdup(v->valuestring);
        else if (cJSON_IsNumber(v)) asprintf(&out, "%d", v->valueint);
        cJSON_Delete(p);
    }
    cbm_events_free(ev, n);
    return out;
}

/* The child of id's idx-th (0-based) ChildStarted, once it is recorded
 * (malloc'd; NULL if it never is within 5 s). */
static char *wait_child(cbm_engine_t *e, const char *id, int idx)
{
    char *child = NULL;
    for (int i = 0; i < 500 && (child = payload_str(e, id, "ChildStarted", idx, "child", NULL)) ==
                                   NULL; i++)
        uv_sleep(10);
    return child;
}

/* The state folded from the first upto events of id's history (all: 0). */
static char *folded(cbm_engine_t *e, const char *id, const char *bpjson, int64_t upto)
{
    size_t n = 0;
    cbm_event_t *ev = history(e, id, &n);
    cbm_error_t err = {0};
    bp_blueprint_t *bp = NULL;
    st_exec_t st;
    char *out;
    assert_int_equal(bp_parse_json(bpjson, strlen(bpjson), &bp, &err), 0);
    assert_int_equal(st_init(&st, id, bp), 0);
    for (size_t i = 0; i < n && (upto == 0 || ev[i].seq <= upto); i++) {
        eng_event_t x;
        if (ev_decode(ev[i].type, ev[i].payload, ev[i].seq, ev[i].recorded_at_us, bp, &x, &err) !=
            0)
            fail_msg("decode %s: %s", ev[i].type, err.message);
        assert_int_equal(st_apply(&st, &x), 0);
        ev_finish(&x);
    }
    out = st_to_json(&st);
    st_finish(&st);
    bp_destroy(bp);
    cbm_events_free(ev, n);
    return out;
}

static void gate_reset(void)
{
    uv_mutex_lock(&gate.mu);
    gate.entered = gate.open = 0;
    uv_mutex_unlock(&gate.mu);
}

static void gate_wait_entered(void)
{
    uv_mutex_lock(&gate.mu);
    while (!gate.entered) uv_cond_wait(&gate.cv, &gate.mu);
    uv_mutex_unlock(&gate.mu);
}

static void gate_open(void)
{
    uv_mutex_lock(&gate.mu);
    gate.open = 1;
    uv_cond_broadcast(&gate.cv);
    uv_mutex_unlock(&gate.mu);
}

/* The child's ExecutionStarted names the parent, step and attempt. */
static void assert_linked(cbm_engine_t *e, const char *parent, const char *child,
                          const char *step, const char *attempt)
{
    char *p = payload_str(e, child, "ExecutionStarted", 0, "parent", "execution_id");
    char *s = payload_str(e, child, "ExecutionStarted", 0, "parent", "step");
    char *a = payload_str(e, child, "ExecutionStarted", 0, "parent", "attempt");
    assert_non_null(p);
    assert_string_equal(p, parent);
    assert_string_equal(s, step);
    assert_string_equal(a, attempt);
    free(p);
    free(s);
    free(a);
}

/* ---- tests --------------------------------------------------------------- */

static void test_child_result_reaches_parent(void **state)
{
    cbm_engine_t *e = engine();
    cbm_execution_info_t *info, *cinfo = NULL;
    cbm_error_t err = {0};
    char id[37], *child, *types, *live;
    cJSON *r;
    (void)state;

    start(e, "par", "{\"tag\": \"x\"}", id);
    info = wait_end(e, id);
    assert_string_equal(info->status, "completed");
    /* after's deps hold the child's result: {"twice": {"v": 42, "tag": "x"}}. */
    r = cJSON_Parse(info->result);
    {
        const cJSON *tw = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "after"), "sub"),
            "twice");
        assert_non_null(tw);
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(tw, "v")->valueint, 42);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(tw, "tag")->valuestring, "x");
    }
    cJSON_Delete(r);
    types = types_of(e, id);
    assert_string_equal(types, "ExecutionStarted,StepScheduled,StepCompleted,ChildStarted,"
                               "ChildCompleted,StepScheduled,StepCompleted,ExecutionCompleted");
    free(types);

    /* Both histories name each other; the child ran with the built inputs. */
    child = payload_str(e, id, "ChildStarted", 0, "child", NULL);
    assert_non_null(child);
    {
        char *c2 = payload_str(e, id, "ChildCompleted", 0, "child", NULL);
        char *st = payload_str(e, id, "ChildCompleted", 0, "status", NULL);
        assert_string_equal(c2, child);
        assert_string_equal(st, "completed");
        free(c2);
        free(st);
    }
    assert_linked(e, id, child, "sub", "1");
    assert_int_equal(cbm_execution_get(e, child, &cinfo, &err), 0);
    assert_string_equal(cinfo->status, "completed");
    assert_string_equal(cinfo->blueprint, "double");
    assert_non_null(strstr(cinfo->inputs, "\"n\": 21"));
    assert_non_null(strstr(cinfo->inputs, "\"tag\": \"x\""));
    cbm_execution_info_free(cinfo);
    /* Neither is held any longer; the folds are complete. */
    live = cbm__debug_state_json(e, id);
    assert_null(live);
    free(child);
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
}

static void test_failed_child_retry_and_diverge(void **state)
{
    cbm_engine_t *e = engine();
    cbm_execution_info_t *info;
    char id[37], *c1, *c2, *types;
    (void)state;

    /* Two attempts, two children, both failed; the rule continues. */
    start(e, "pretry", "{}", id);
    info = wait_end(e, id);
    assert_string_equal(info->status, "completed");
    assert_non_null(strstr(info->result, "child_failed"));
    types = types_of(e, id);
    assert_string_equal(types, "ExecutionStarted,ChildStarted,ChildCompleted,StepRetryScheduled,"
                               "TimerFired,ChildStarted,ChildCompleted,DivergeTaken,"
                               "StepScheduled,StepCompleted,ExecutionCompleted");
    free(types);
    c1 = payload_str(e, id, "ChildStarted", 0, "child", NULL);
    c2 = payload_str(e, id, "ChildStarted", 1, "child", NULL);
    assert_string_not_equal(c1, c2);
    assert_linked(e, id, c1, "sub", "1");
    assert_linked(e, id, c2, "sub", "2");
    free(c1);
    free(c2);
    cbm_execution_info_free(info);

    /* Without a rule the parent fails, naming the step and the kind. */
    start(e, "pfail", "{}", id);
    info = wait_end(e, id);
    assert_string_equal(info->status, "failed");
    assert_non_null(strstr(info->error, "\"step\": \"sub\""));
    assert_non_null(strstr(info->error, "\"kind\": \"child_failed\""));
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
}

static void test_child_cannot_start(void **state)
{
    cbm_engine_t *e = engine();
    cbm_execution_info_t *info, *x = NULL;
    cbm_error_t err = {0};
    char id[37], *child;
    (void)state;

    /* No such blueprint: accepted at start, the step fails when the child
     * would start, not retryable. */
    start(e, "punknown", "{}", id);
    info = wait_end(e, id);
    assert_string_equal(info->status, "failed");
    assert_non_null(strstr(info->error, "\"kind\": \"child_blueprint_unknown\""));
    assert_non_null(strstr(info->error, "no blueprint named 'nowhere'"));
    child = payload_str(e, id, "ChildStarted", 0, "child", NULL);
    assert_int_equal(cbm_execution_get(e, child, &x, &err), CBM_ENOTFOUND);
    free(child);
    cbm_execution_info_free(info);

    /* Inputs the child's blueprint refuses. */
    start(e, "pbadin", "{}", id);
    info = wait_end(e, id);
    assert_string_equal(info->status, "failed");
    assert_non_null(strstr(info->error, "\"kind\": \"child_inputs_invalid\""));
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
}

static void test_cancel_cascades(void **state)
{
    cbm_engine_t *e = engine();
    cbm_execution_info_t *info;
    cbm_error_t err = {0};
    char id[37], *child, *reason;
    (void)state;

    /* Cancelling the parent cancels the child waiting for its approval. */
    start(e, "papprove", "{}", id);
    wait_status(e, id, "awaiting_child");
    child = wait_child(e, id, 0);
    assert_non_null(child);
    wait_status(e, child, "awaiting_approval");
    assert_int_equal(cbm_execution_cancel(e, id, "no longer needed", &err), 0);
    info = wait_end(e, child);
    assert_string_equal(info->status, "cancelled");
    cbm_execution_info_free(info);
    reason = payload_str(e, child, "ExecutionCancelled", 0, "reason", NULL);
    assert_non_null(strstr(reason, id));
    free(reason);
    /* Cancelling again is a no-op (and would finish a cut cascade). */
    assert_int_equal(cbm_execution_cancel(e, id, "again", &err), 0);
    free(child);
    /* And then all is quiet: finished parents and children do not keep
     * loading each other. (The heap's copy of the parent's cleared child
     * timer, due a second after ChildStarted, loads it once more first.) */
    {
        cbm_engine_stats_t s1, s2;
        uv_sleep(1500);
        cbm_engine_get_stats(e, &s1);
        uv_sleep(1000);
        cbm_engine_get_stats(e, &s2);
        assert_int_equal(s2.woken, s1.woken);
    }

    /* A parent that fails (its time-out) takes its sleeping child along. */
    start(e, "pdeadline", "{}", id);
    info = wait_end(e, id);
    assert_string_equal(info->status, "failed");
    assert_non_null(strstr(info->error, "execution_timeout"));
    cbm_execution_info_free(info);
    child = payload_str(e, id, "ChildStarted", 0, "child", NULL);
    info = wait_end(e, child);
    assert_string_equal(info->status, "cancelled");
    cbm_execution_info_free(info);
    free(child);
    cbm_engine_destroy(e);
}

/* A loop that re-opens a step while its child runs cancels that child; the
 * step's next attempt starts a new child. */
static void test_loop_abandons_child(void **state)
{
    cbm_engine_t *e;
    cbm_execution_info_t *info;
    char id[37], *first, *second = NULL, *reason;
    (void)state;

    gate_reset();
    e = engine();
    start(e, "ploop", "{}", id);
    first = wait_child(e, id, 0);
    assert_non_null(first);
    wait_status(e, first, "awaiting_approval");
    gate_wait_entered();
    gate_open(); /* "again" asks for another round: "sub" is re-opened */
    info = wait_end(e, first);
    assert_string_equal(info->status, "cancelled");
    cbm_execution_info_free(info);
    reason = payload_str(e, first, "ExecutionCancelled", 0, "reason", NULL);
    assert_non_null(reason);
    assert_non_null(strstr(reason, "re-opened"));
    free(reason);
    second = wait_child(e, id, 1);
    assert_non_null(second);
    assert_string_not_equal(first, second);
    wait_status(e, second, "awaiting_approval");
    wait_status(e, id, "awaiting_child");
    free(first);
    free(second);
    cbm_engine_destroy(e);
}

/*
 * The parent hibernates while its child sleeps; the engine stops mid-child;
 * a new engine finishes both. The parent's state folded before the stop is
 * the same after it (a prefix: the new engine may have recorded a child
 * timer since), its live state equals the fold once it runs again.
 */
static void test_hibernate_restart_mid_child(void **state)
{
    cbm_engine_t *e = engine();
    cbm_execution_info_t *info;
    char id[37], *child = NULL, *before, *after, *live, *types;
    int away = 0;
    int64_t seq;
    (void)state;

    gate_reset();
    start(e, "psleep", "{}", id);
    child = wait_child(e, id, 0);
    assert_non_null(child);
    wait_status(e, child, "sleeping");
    wait_status(e, id, "awaiting_child");
    /* Out of memory while it waits (it comes back briefly for its child
     * timer, so look a few times). */
    for (int i = 0; i < 100 && !away; i++) {
        live = cbm__debug_state_json(e, id);
        away = live == NULL;
        free(live);
        if (!away) uv_sleep(10);
    }
    assert_true(away);
    {
        cbm_execution_info_t *x = NULL;
        cbm_error_t err = {0};
        assert_int_equal(cbm_execution_get(e, id, &x, &err), 0);
        seq = x->last_seq;
        cbm_execution_info_free(x);
    }
    before = folded(e, id, PSLEEP, seq);
    assert_non_null(strstr(before, "\"sub\":{\"status\":\"waiting\""));
    cbm_engine_destroy(e);

    e = engine();
    /* The child wakes, works and ends; the parent takes its result and
     * waits at the gate in "after". */
    gate_wait_entered();
    uv_sleep(100); /* let the decision that scheduled it settle */
    live = cbm__debug_state_json(e, id);
    assert_non_null(live);
    after = folded(e, id, PSLEEP, 0);
    assert_string_equal(live, after);
    assert_non_null(strstr(live, "\"sub\":{\"status\":\"completed\""));
    /* What was folded before the stop is a prefix of what is there now. */
    free(after);
    after = folded(e, id, PSLEEP, seq);
    assert_string_equal(after, before);
    gate_open();
    info = wait_end(e, id);
    assert_string_equal(info->status, "completed");
    assert_non_null(strstr(info->result, "gate"));
    cbm_execution_info_free(info);
    info = wait_end(e, child);
    assert_string_equal(info->status, "completed");
    cbm_execution_info_free(info);
    assert_linked(e, id, child, "sub", "1");
    types = types_of(e, child);
    assert_string_equal(types, "ExecutionStarted,SleepStarted,TimerFired,StepCompleted,"
                               "StepScheduled,StepCompleted,ExecutionCompleted");
    free(types);
    free(live);
    free(after);
    free(before);
    free(child);
    cbm_engine_destroy(e);
}

/* The child is approved from another process (a client-only engine, which
 * runs nothing): the engine running the parent learns it through the
 * parent's child timer. */
static void test_child_ended_elsewhere(void **state)
{
    cbm_engine_t *e = engine(), *c = engine_opts(true);
    cbm_execution_info_t *info;
    cbm_error_t err = {0};
    char id[37], *child = NULL, *types;
    (void)state;

    start(e, "papprove", "{}", id);
    child = wait_child(e, id, 0);
    assert_non_null(child);
    wait_status(e, child, "awaiting_approval");
    if (cbm_execution_approve(c, child, "ok", "{\"yes\": 1}", "ann", &err) != 0)
        fail_msg("approve: %s", err.message);
    info = wait_end(e, id);
    assert_string_equal(info->status, "completed");
    assert_non_null(strstr(info->result, "\"yes\": 1"));
    cbm_execution_info_free(info);
    types = types_of(e, id);
    /* Nothing here told the parent: its child timer did (by loading it
     * ahead of the due time, which looks at the child, or by firing). */
    assert_non_null(strstr(types, "ChildCompleted,StepScheduled,StepCompleted,ExecutionCompleted"));
    free(types);
    free(child);
    cbm_engine_destroy(c);
    cbm_engine_destroy(e);
}

/* A crash between the parent's ChildStarted and the child's insert: the
 * child is not there. The next engine starts it from the recorded inputs,
 * under the same id. */
static void test_lost_child_started_again(void **state)
{
    cbm_engine_t *e = engine();
    cbm_execution_info_t *info;
    char id[37], *child = NULL, sql[512];
    (void)state;

    start(e, "papprove", "{}", id);
    child = wait_child(e, id, 0);
    assert_non_null(child);
    wait_status(e, child, "awaiting_approval");
    cbm_engine_destroy(e);
    snprintf(sql, sizeof(sql),
             "DELETE FROM cbm_timers WHERE execution_id = '%s';"
             "DELETE FROM cbm_snapshots WHERE execution_id = '%s';"
             "DELETE FROM cbm_events WHERE execution_id = '%s';"
             "DELETE FROM cbm_executions WHERE id = '%s'",
             child, child, child, child);
    assert_int_equal(testdb_exec(url, sql), 0);

    e = engine();
    wait_status(e, child, "awaiting_approval");
    assert_linked(e, id, child, "sub", "1");
    {
        cbm_error_t err = {0};
        if (cbm_execution_approve(e, child, "ok", "{}", "bob", &err) != 0)
            fail_msg("approve: %s", err.message);
    }
    info = wait_end(e, id);
    assert_string_equal(info->status, "completed");
    cbm_execution_info_free(info);
    free(child);
    cbm_engine_destroy(e);
}

/* A crash cut the cancel cascade short: the parent's ExecutionCancelled is
 * in the store, the child still waits. The next engine resumes the child,
 * sees its parent ended, and cancels it. */
static void test_cut_cascade_finished_at_resume(void **state)
{
    cbm_engine_t *e = engine();
    cbm_execution_info_t *info;
    char id[37], *child = NULL, *reason, sql[1024];
    (void)state;

    start(e, "papprove", "{}", id);
    child = wait_child(e, id, 0);
    assert_non_null(child);
    wait_status(e, child, "awaiting_approval");
    cbm_engine_destroy(e);
    /* What the parent's cancellation wrote, and nothing of the cascade. */
    snprintf(sql, sizeof(sql),
             "UPDATE cbm_executions SET status = 'cancelled', last_seq = last_seq + 1 "
             "WHERE id = '%s';"
             "INSERT INTO cbm_events SELECT id, last_seq, 'CancelRequested', "
             "'{\"reason\":\"cut\"}', now() FROM cbm_executions WHERE id = '%s';"
             "UPDATE cbm_executions SET last_seq = last_seq + 1 WHERE id = '%s';"
             "INSERT INTO cbm_events SELECT id, last_seq, 'ExecutionCancelled', "
             "'{\"reason\":\"cut\"}', now() FROM cbm_executions WHERE id = '%s';"
             "DELETE FROM cbm_timers WHERE execution_id = '%s'",
             id, id, id, id, id);
    assert_int_equal(testdb_exec(url, sql), 0);

    e = engine();
    info = wait_end(e, child);
    assert_string_equal(info->status, "cancelled");
    cbm_execution_info_free(info);
    reason = payload_str(e, child, "ExecutionCancelled", 0, "reason", NULL);
    assert_non_null(strstr(reason, id));
    free(reason);
    free(folded(e, id, PAPPROVE, 0)); /* the hand-written history folds */
    free(child);
    cbm_engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_child_result_reaches_parent),
        cmocka_unit_test(test_failed_child_retry_and_diverge),
        cmocka_unit_test(test_child_cannot_start),
        cmocka_unit_test(test_cancel_cascades),
        cmocka_unit_test(test_loop_abandons_child),
        cmocka_unit_test(test_hibernate_restart_mid_child),
        cmocka_unit_test(test_child_ended_elsewhere),
        cmocka_unit_test(test_lost_child_started_again),
        cmocka_unit_test(test_cut_cascade_finished_at_resume),
    };
    int rc;
    if (testdb_create(url, sizeof(url)) != 0) return TESTDB_SKIP;
    uv_mutex_init(&gate.mu);
    uv_cond_init(&gate.cv);
    all_init();
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    uv_cond_destroy(&gate.cv);
    uv_mutex_destroy(&gate.mu);
    testdb_drop(url);
    return rc;
}
