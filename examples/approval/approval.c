/*
 * approval - a workflow that prepares a purchase, waits (durably, with a
 * deadline) for a person to approve it, and then either places the order or
 * ends rejected; the decision comes from a second process.
 *
 *   approval start [AMOUNT]        start one and wait for the outcome
 *   approval approve ID [WHO]      approve it (from another shell)
 *   approval reject ID REASON      reject it (from another shell)
 *   approval demo                  start one, approve it from a second
 *                                  process, and print the outcome
 *
 * `start` runs an engine; `approve` and `reject` are client-only processes:
 * they decide through the store and run nothing, so they work whether or not
 * the engine is up (it picks the decision up when it runs). The approval
 * step's deadline is 10 minutes: with no decision by then it fails with
 * "approval_timeout". With CEREBELUM_DATABASE_URL unset every process uses the
 * embedded store in ./.cerebelum (or $CEREBELUM_STATE_DIR).
 */
#include <cJSON.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include <cerebelum/cerebelum.h>

extern char **environ;

static const char *BLUEPRINT =
    "{\"name\": \"purchase\", \"timeline\": ["
    "  {\"name\": \"prepare\"},"
    "  {\"name\": \"review\", \"kind\": \"approval\", \"approval_type\": \"purchase\","
    "   \"timeout_ms\": 600000},"
    "  {\"name\": \"order\"}]}";

static void prepare(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *in = cJSON_Parse(call->input_json);
    cJSON *amount = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(in, "inputs"),
                                                     "amount");
    char buf[128];
    (void)arg;
    snprintf(buf, sizeof(buf), "{\"item\": \"GPU node\", \"amount\": %g}",
             cJSON_IsNumber(amount) ? amount->valuedouble : 100.0);
    printf("  prepared: %s\n", buf);
    fflush(stdout);
    cbm_step_ok(out, buf);
    cJSON_Delete(in);
}

static void order(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *in = cJSON_Parse(call->input_json);
    char *review = cJSON_PrintUnformatted(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(in, "deps"), "review"));
    (void)arg;
    printf("  ordered, with approval %s\n", review != NULL ? review : "null");
    cbm_step_ok(out, "{\"ordered\": true}");
    free(review);
    cJSON_Delete(in);
}

static int fail(const char *what, const cbm_error_t *err)
{
    fprintf(stderr, "approval: %s: %s: %s\n", what, cbm_err_name(err->code), err->message);
    return 1;
}

static cbm_engine_t *open_engine(bool client_only, cbm_error_t *err)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    o.client_only = client_only;
    if (cbm_engine_create(&e, &o, err) != 0) return NULL;
    if (!client_only) {
        cbm_engine_register_step(e, "prepare", prepare, NULL);
        cbm_engine_register_step(e, "order", order, NULL);
    }
    if (cbm_engine_start(e, err) != 0) {
        cbm_engine_destroy(e);
        return NULL;
    }
    return e;
}

/* Start one purchase; with self_approve, approve it from a child process. */
static int run_start(double amount, const char *self)
{
    cbm_error_t err = {0};
    cbm_engine_t *e = open_engine(false, &err);
    cbm_execution_info_t *info = NULL;
    char id[37], inputs[64];
    int rc = 1;

    if (e == NULL) return fail("engine", &err);
    if (cbm_engine_register_blueprint(e, BLUEPRINT, NULL, &err) != 0) {
        cbm_engine_destroy(e);
        return fail("blueprint", &err);
    }
    snprintf(inputs, sizeof(inputs), "{\"amount\": %g}", amount);
    if (cbm_execution_start(e, "purchase", inputs, id, &err) != 0) {
        cbm_engine_destroy(e);
        return fail("start", &err);
    }
    printf("execution %s started; its step 'review' waits for approval.\n", id);
    if (self == NULL) {
        printf("From another shell:\n  approval approve %s alice\n  approval reject %s \"too "
               "expensive\"\n",
               id, id);
    }
    fflush(stdout);
    if (self != NULL) {
        /* A second process decides; this one only waits. */
        char *argv[] = {(char *)self, "approve", id, "demo-approver", NULL};
        pid_t pid;
        int status;
        for (int i = 0; i < 500; i++) {
            cbm_execution_info_t *x = NULL;
            int waiting;
            if (cbm_execution_get(e, id, &x, &err) != 0) break;
            waiting = strcmp(x->status, "awaiting_approval") == 0;
            cbm_execution_info_free(x);
            if (waiting) break;
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
        if (posix_spawn(&pid, self, NULL, NULL, argv, environ) != 0 ||
            waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "approval: the approving process failed\n");
            cbm_engine_destroy(e);
            return 1;
        }
    }
    if (cbm_execution_wait(e, id, -1, &info, &err) != 0) {
        cbm_engine_destroy(e);
        return fail("wait", &err);
    }
    if (strcmp(info->status, "completed") == 0) {
        printf("execution %s completed: %s\n", id, info->result);
        rc = 0;
    } else {
        /* Rejected or timed out: the order step never ran. */
        printf("execution %s %s: %s (nothing was ordered)\n", id, info->status,
               info->error != NULL ? info->error : "");
        rc = 3;
    }
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
    return rc;
}

static int run_decide(const char *id, bool approve, const char *arg)
{
    cbm_error_t err = {0};
    cbm_engine_t *e = open_engine(true, &err);
    int rc;
    if (e == NULL) return fail("engine", &err);
    if (approve) {
        char resp[160];
        snprintf(resp, sizeof(resp), "{\"approved_by\": \"%s\"}", arg != NULL ? arg : "someone");
        rc = cbm_execution_approve(e, id, "review", resp, arg, &err);
    } else {
        rc = cbm_execution_reject(e, id, "review", arg, NULL, &err);
    }
    cbm_engine_destroy(e);
    if (rc != 0) return fail(approve ? "approve" : "reject", &err);
    printf("%s %s\n", approve ? "approved" : "rejected", id);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "start") == 0)
        return run_start(argc > 2 ? atof(argv[2]) : 100.0, NULL);
    if (argc >= 2 && strcmp(argv[1], "demo") == 0) return run_start(250.0, argv[0]);
    if (argc >= 3 && strcmp(argv[1], "approve") == 0)
        return run_decide(argv[2], true, argc > 3 ? argv[3] : NULL);
    if (argc >= 4 && strcmp(argv[1], "reject") == 0) return run_decide(argv[2], false, argv[3]);
    fprintf(stderr, "usage: approval start [AMOUNT] | approve ID [WHO] | reject ID REASON | demo\n");
    return 2;
}
