/*
 * hello - the smallest whole Cerebelum program: three steps in a timeline
 * (greet -> shout -> measure), run durably.
 *
 *   hello [NAME]
 *
 * With CEREBELUM_DATABASE_URL unset it runs on the embedded default store: a
 * private PostgreSQL in ./.cerebelum (or $CEREBELUM_STATE_DIR), started and
 * stopped by the engine. It prints each step as it runs, the result, and the
 * execution's history as stored. Exit status 0 when the workflow completed.
 */
#include <cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cerebelum/cerebelum.h>

static const char *BLUEPRINT =
    "{\"name\": \"hello\","
    " \"timeline\": [\"greet\", \"shout\", \"measure\"]}";

/* Each handler gets {"inputs": {...}, "deps": {"<step>": <result>}}. */
static void greet(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *in = cJSON_Parse(call->input_json);
    cJSON *inputs = cJSON_GetObjectItemCaseSensitive(in, "inputs");
    cJSON *name = cJSON_GetObjectItemCaseSensitive(inputs, "name");
    char buf[256];

    (void)arg;
    if (!cJSON_IsString(name)) {
        cbm_step_fail(out, "bad_input", "inputs.name must be a string", false);
    } else {
        snprintf(buf, sizeof(buf), "{\"greeting\": \"Hello, %s!\"}", name->valuestring);
        printf("  step %-8s (attempt %d): %s\n", call->step, call->attempt, buf);
        cbm_step_ok(out, buf);
    }
    cJSON_Delete(in);
}

static void shout(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *in = cJSON_Parse(call->input_json);
    cJSON *g = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(in, "deps"), "greet"),
        "greeting");
    cJSON *res = cJSON_CreateObject();
    char *text, *json;

    (void)arg;
    text = strdup(cJSON_IsString(g) ? g->valuestring : "");
    for (char *p = text; *p; p++) *p = (char)toupper((unsigned char)*p);
    cJSON_AddStringToObject(res, "shout", text);
    json = cJSON_PrintUnformatted(res);
    printf("  step %-8s (attempt %d): %s\n", call->step, call->attempt, json);
    cbm_step_ok(out, json);
    free(json);
    free(text);
    cJSON_Delete(res);
    cJSON_Delete(in);
}

static void measure(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *in = cJSON_Parse(call->input_json);
    cJSON *s = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(in, "deps"), "shout"),
        "shout");
    char buf[64];

    (void)arg;
    snprintf(buf, sizeof(buf), "{\"length\": %zu}", cJSON_IsString(s) ? strlen(s->valuestring) : 0);
    printf("  step %-8s (attempt %d): %s\n", call->step, call->attempt, buf);
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
    char id[37], version[65], inputs[256];
    int ok = 0;
    cJSON *in = cJSON_CreateObject();
    char *in_text;

    cJSON_AddStringToObject(in, "name", argc > 1 ? argv[1] : "world");
    in_text = cJSON_PrintUnformatted(in);
    snprintf(inputs, sizeof(inputs), "%s", in_text);
    free(in_text);
    cJSON_Delete(in);

    if (cbm_engine_create(&e, &opts, &err) != 0) goto fail;
    cbm_engine_register_step(e, "greet", greet, NULL);
    cbm_engine_register_step(e, "shout", shout, NULL);
    cbm_engine_register_step(e, "measure", measure, NULL);
    printf("starting the engine (%s)\n",
           getenv("CEREBELUM_DATABASE_URL") ? "CEREBELUM_DATABASE_URL"
                                            : "embedded PostgreSQL in the state directory");
    if (cbm_engine_start(e, &err) != 0) goto fail;
    if (cbm_engine_register_blueprint(e, BLUEPRINT, version, &err) != 0) goto fail;
    printf("blueprint hello, version %.12s...\n", version);
    if (cbm_execution_start(e, "hello", inputs, id, &err) != 0) goto fail;
    printf("execution %s started with %s\n", id, inputs);
    if (cbm_execution_wait(e, id, 60000, &info, &err) != 0) goto fail;
    printf("execution %s: %s\n", id, info->status);
    printf("  result: %s\n", info->result ? info->result : "null");
    if (info->error) printf("  error: %s\n", info->error);
    ok = strcmp(info->status, "completed") == 0;
    if (cbm_execution_history(e, id, 1, &events, &nevents, &err) != 0) goto fail;
    printf("history (%zu events):\n", nevents);
    for (size_t i = 0; i < nevents; i++)
        printf("  %2lld %-18s %s\n", (long long)events[i].seq, events[i].type, events[i].payload);
    cbm_events_free(events, nevents);
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
    return ok ? 0 : 1;

fail:
    fprintf(stderr, "hello: %s: %s\n", cbm_err_name(err.code), err.message);
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
    return 2;
}
