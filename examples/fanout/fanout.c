/*
 * fanout - one step fans out to N parallel steps and a join, built with the
 * C blueprint builder:
 *
 *   split -> work_0 .. work_{N-1} (in parallel) -> join
 *
 *   fanout [N] [EXECUTIONS]
 *
 * split returns the list of numbers 1..N; work_i squares number i; join adds
 * the squares. The result must be N(N+1)(2N+1)/6: the program checks it and
 * exits 0 only if every execution completed with the right sum.
 */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cerebelum/cerebelum.h>

static int N = 8;

static void split(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *arr = cJSON_CreateArray();
    char *json;
    (void)call;
    (void)arg;
    for (int i = 1; i <= N; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(i));
    json = cJSON_PrintUnformatted(arr);
    cbm_step_ok(out, json);
    free(json);
    cJSON_Delete(arr);
}

static void work(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *in = cJSON_Parse(call->input_json);
    cJSON *nums = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(in, "deps"), "split");
    int i = atoi(call->step + strlen("work_"));
    cJSON *v = cJSON_GetArrayItem(nums, i);
    char buf[64];
    (void)arg;
    if (!cJSON_IsNumber(v)) {
        cbm_step_fail(out, "bad_input", "split result has no such item", false);
    } else {
        snprintf(buf, sizeof(buf), "%.0f", v->valuedouble * v->valuedouble);
        cbm_step_ok(out, buf);
    }
    cJSON_Delete(in);
}

static void join(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *in = cJSON_Parse(call->input_json);
    cJSON *deps = cJSON_GetObjectItemCaseSensitive(in, "deps"), *d;
    double sum = 0;
    char buf[64];
    (void)arg;
    cJSON_ArrayForEach(d, deps) sum += d->valuedouble;
    snprintf(buf, sizeof(buf), "{\"sum\": %.0f, \"parts\": %d}", sum, cJSON_GetArraySize(deps));
    cbm_step_ok(out, buf);
    cJSON_Delete(in);
}

int main(int argc, char **argv)
{
    int execs = argc > 2 ? atoi(argv[2]) : 1;
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t opts = {0};
    cbm_error_t err = {0};
    cbm_builder_t *b;
    char *json = NULL, (*ids)[37] = NULL;
    char **names;
    const char *first = "split";
    int bad = 0;
    long long want;

    if (argc > 1) N = atoi(argv[1]);
    if (N < 1 || N > 1000 || execs < 1) {
        fprintf(stderr, "usage: fanout [N 1..1000] [EXECUTIONS]\n");
        return 2;
    }
    want = (long long)N * (N + 1) * (2 * N + 1) / 6;

    /* Build split -> work_i -> join with the builder. */
    b = cbm_builder_create("fanout");
    names = calloc((size_t)N, sizeof(*names));
    cbm_builder_add_step(b, "split", NULL, NULL, 0);
    for (int i = 0; i < N; i++) {
        names[i] = malloc(32);
        snprintf(names[i], 32, "work_%d", i);
        cbm_builder_add_step(b, names[i], "work", &first, 1);
    }
    cbm_builder_add_step(b, "join", NULL, (const char *const *)names, (size_t)N);
    cbm_builder_to_json(b, &json);
    cbm_builder_destroy(b);

    ids = calloc((size_t)execs, sizeof(*ids));
    if (cbm_engine_create(&e, &opts, &err) != 0) goto fail;
    cbm_engine_register_step(e, "split", split, NULL);
    cbm_engine_register_step(e, "work", work, NULL);
    cbm_engine_register_step(e, "join", join, NULL);
    if (cbm_engine_start(e, &err) != 0) goto fail;
    if (cbm_engine_register_blueprint(e, json, NULL, &err) != 0) goto fail;
    if (cbm_execution_start_many(e, "fanout", NULL, (size_t)execs, ids, &err) != 0) goto fail;
    printf("started %d execution(s) of split -> %d parallel steps -> join\n", execs, N);
    for (int i = 0; i < execs; i++) {
        cbm_execution_info_t *info = NULL;
        cJSON *r, *sum;
        if (cbm_execution_wait(e, ids[i], 120000, &info, &err) != 0) goto fail;
        r = cJSON_Parse(info->result ? info->result : "null");
        sum = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "join"), "sum");
        if (strcmp(info->status, "completed") != 0 || !cJSON_IsNumber(sum) ||
            (long long)sum->valuedouble != want) {
            printf("execution %s: %s, result %s (want sum %lld)\n", ids[i], info->status,
                   info->result ? info->result : "null", want);
            bad++;
        } else if (i == 0) {
            printf("execution %s: %s, result %s\n", ids[i], info->status, info->result);
        }
        cJSON_Delete(r);
        cbm_execution_info_free(info);
    }
    printf("%d of %d executions completed with sum %lld\n", execs - bad, execs, want);
    for (int i = 0; i < N; i++) free(names[i]);
    free(names);
    free(ids);
    free(json);
    cbm_engine_destroy(e);
    return bad == 0 ? 0 : 1;

fail:
    fprintf(stderr, "fanout: %s: %s\n", cbm_err_name(err.code), err.message);
    for (int i = 0; i < N; i++) free(names[i]);
    free(names);
    free(ids);
    free(json);
    cbm_engine_destroy(e);
    return 2;
}
