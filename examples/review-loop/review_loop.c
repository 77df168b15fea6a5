/*
 * review-loop - routing on results: generate a draft, check it, go back to
 * generate while the check says "revise" (at most 3 times), then branch:
 * a passing draft with a good score is published, anything else goes to an
 * editor; notify runs after whichever of the two ran.
 *
 *   review-loop [TOPIC [EXPECT]]
 *
 * The generator gets better with every attempt (its attempt number keeps
 * growing across the loop's iterations). A topic starting with "hard" needs
 * one round more and ends with an editor; EXPECT (publish, escalate or
 * loop_limit) says how the run must end, for the tests. Prints each step as
 * it runs, the result and the history; exit status 0 when it ended as
 * expected (by default: completed).
 */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cerebelum/cerebelum.h>

static const char *BLUEPRINT =
    "{\"name\": \"review\","
    " \"inputs\": {\"topic\": {\"type\": \"string\", \"required\": true}},"
    " \"steps\": ["
    "  {\"name\": \"generate\"},"
    "  {\"name\": \"check\", \"depends_on\": [\"generate\"],"
    "   \"diverge\": [{\"match\": {\"verdict\": \"revise\"}, \"action\": \"back_to\","
    "                  \"target\": \"generate\", \"max_iterations\": 3}],"
    "   \"branch\": [{\"when\": {\"and\": [{\"path\": \"verdict\", \"op\": \"==\", \"value\": \"pass\"},"
    "                                  {\"path\": \"score\", \"op\": \">=\", \"value\": 0.8}]},"
    "                \"to\": \"publish\"},"
    "               {\"otherwise\": \"escalate\"}]},"
    "  {\"name\": \"publish\", \"depends_on\": [\"check\"]},"
    "  {\"name\": \"escalate\", \"depends_on\": [\"check\"]},"
    "  {\"name\": \"notify\", \"depends_on\": [\"publish\", \"escalate\"]}"
    " ]}";

static const char *topic_of(cJSON *in)
{
    cJSON *t = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(in, "inputs"),
                                                "topic");
    return cJSON_IsString(t) ? t->valuestring : "";
}

static cJSON *dep(cJSON *in, const char *step)
{
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(in, "deps"), step);
}

/* Draft quality: 0.45 per attempt; "hard" topics start lower; "hopeless"
 * ones never improve. */
static void generate(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *in = cJSON_Parse(call->input_json);
    const char *topic = topic_of(in);
    double q = 0.45 * call->attempt;
    char buf[256];
    (void)arg;
    if (strncmp(topic, "hard", 4) == 0) q -= 0.3;
    if (strncmp(topic, "hopeless", 8) == 0) q = 0.1;
    snprintf(buf, sizeof(buf), "{\"text\": \"draft %d about %s\", \"quality\": %.2f}",
             call->attempt, topic, q > 1 ? 1.0 : q);
    printf("  %-8s attempt %d: %s\n", call->step, call->attempt, buf);
    cbm_step_ok(out, buf);
    cJSON_Delete(in);
}

static void check(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *in = cJSON_Parse(call->input_json);
    cJSON *q = cJSON_GetObjectItemCaseSensitive(dep(in, "generate"), "quality");
    double score = cJSON_IsNumber(q) ? q->valuedouble : 0;
    char buf[128];
    (void)arg;
    snprintf(buf, sizeof(buf), "{\"verdict\": \"%s\", \"score\": %.2f}",
             score < 0.5 ? "revise" : "pass", score);
    printf("  %-8s attempt %d: %s\n", call->step, call->attempt, buf);
    cbm_step_ok(out, buf);
    cJSON_Delete(in);
}

static void finish(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    char buf[128];
    (void)arg;
    snprintf(buf, sizeof(buf), "{\"%s\": true}", call->step);
    printf("  %-8s attempt %d: %s\n", call->step, call->attempt, buf);
    cbm_step_ok(out, buf);
}

/* notify says which arm ran: the other one's result is null. */
static void notify(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *in = cJSON_Parse(call->input_json);
    const char *arm = cJSON_IsNull(dep(in, "publish")) ? "escalate" : "publish";
    char buf[128];
    (void)arg;
    snprintf(buf, sizeof(buf), "{\"after\": \"%s\"}", arm);
    printf("  %-8s attempt %d: %s\n", call->step, call->attempt, buf);
    cbm_step_ok(out, buf);
    cJSON_Delete(in);
}

int main(int argc, char **argv)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t opts = {0};
    cbm_error_t err = {0};
    cbm_execution_info_t *info = NULL;
    cbm_event_t *events = NULL;
    size_t nevents = 0;
    const char *expect = argc > 2 ? argv[2] : NULL;
    char id[37], inputs[256];
    cJSON *in = cJSON_CreateObject();
    char *text;
    int ok = 0;

    cJSON_AddStringToObject(in, "topic", argc > 1 ? argv[1] : "cats");
    text = cJSON_PrintUnformatted(in);
    snprintf(inputs, sizeof(inputs), "%s", text);
    free(text);
    cJSON_Delete(in);

    if (cbm_engine_create(&e, &opts, &err) != 0) goto fail;
    cbm_engine_register_step(e, "generate", generate, NULL);
    cbm_engine_register_step(e, "check", check, NULL);
    cbm_engine_register_step(e, "publish", finish, NULL);
    cbm_engine_register_step(e, "escalate", finish, NULL);
    cbm_engine_register_step(e, "notify", notify, NULL);
    if (cbm_engine_start(e, &err) != 0) goto fail;
    if (cbm_engine_register_blueprint(e, BLUEPRINT, NULL, &err) != 0) goto fail;
    if (cbm_execution_start(e, "review", inputs, id, &err) != 0) goto fail;
    printf("execution %s started with %s\n", id, inputs);
    if (cbm_execution_wait(e, id, 60000, &info, &err) != 0) goto fail;
    printf("execution %s: %s\n  result: %s\n", id, info->status,
           info->result ? info->result : "null");
    if (info->error) printf("  error: %s\n", info->error);
    if (cbm_execution_history(e, id, 1, &events, &nevents, &err) != 0) goto fail;
    printf("history (%zu events):\n", nevents);
    for (size_t i = 0; i < nevents; i++)
        printf("  %2lld %-18s %s\n", (long long)events[i].seq, events[i].type, events[i].payload);
    cbm_events_free(events, nevents);
    if (expect == NULL) {
        ok = strcmp(info->status, "completed") == 0;
    } else if (strcmp(expect, "loop_limit") == 0) {
        ok = strcmp(info->status, "failed") == 0 && info->error != NULL &&
             strstr(info->error, "loop_limit") != NULL;
    } else {
        char want[64];
        snprintf(want, sizeof(want), "\"after\": \"%s\"", expect);
        ok = strcmp(info->status, "completed") == 0 && info->result != NULL &&
             strstr(info->result, want) != NULL;
    }
    if (!ok) fprintf(stderr, "review-loop: did not end as expected (%s)\n", expect ? expect : "completed");
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
    return ok ? 0 : 1;
fail:
    fprintf(stderr, "review-loop: %s (%s)\n", err.message, cbm_strerror(err.code));
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
    return 1;
}
