/*
 * remote-worker - a remote worker for examples/remote/pipeline.json: runs the
 * steps of the queues it is given for a `cerebelum serve` (cerebelum/worker.h).
 *
 *   remote-worker SERVER QUEUE[,QUEUE...] [--capability KEY=VALUE]...
 *                 [--concurrency N] [--id ID] [--token TOKEN]
 *
 * The handlers are ordinary step handlers (the cbm_step_fn of embedded
 * steps); which of them a worker runs is decided by the queues it serves and
 * the capabilities it has. SIGINT or SIGTERM drains it: running steps finish
 * and report, then it unregisters and exits 0.
 *
 *   fetch    {"inputs": {"url"}}            -> {"url", "text"}
 *   infer    {"deps": {"fetch": {"text"}}}  -> {"words", "summary", "device"}
 *   publish  {"deps": {"infer": {...}}}     -> {"published": true, "summary"}
 */
#include <cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cerebelum/worker.h>

static const char *worker_id = "?";

/* The value of inputs.<key> or deps.<step>.<key> in a step's input. */
static const cJSON *field(const cJSON *in, const char *where, const char *step, const char *key)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(in, where);
    if (step != NULL) o = cJSON_GetObjectItemCaseSensitive(o, step);
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static void fetch(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *in = cJSON_Parse(call->input_json), *r;
    const cJSON *url = field(in, "inputs", NULL, "url");
    char *text;

    (void)arg;
    if (!cJSON_IsString(url)) {
        cbm_step_fail(out, "bad_input", "inputs.url must be a string", false);
        cJSON_Delete(in);
        return;
    }
    r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "url", url->valuestring);
    cJSON_AddStringToObject(r, "text", "durable workflows survive crashes and restarts");
    text = cJSON_PrintUnformatted(r);
    fprintf(stderr, "[%s] fetch %s (attempt %d)\n", worker_id, url->valuestring, call->attempt);
    cbm_step_ok(out, text);
    free(text);
    cJSON_Delete(r);
    cJSON_Delete(in);
}

static void infer(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *in = cJSON_Parse(call->input_json), *r;
    const cJSON *text = field(in, "deps", "fetch", "text");
    int words = 0, inword = 0;
    char summary[128], *json;

    (void)arg;
    if (!cJSON_IsString(text)) {
        cbm_step_fail(out, "bad_input", "deps.fetch.text must be a string", false);
        cJSON_Delete(in);
        return;
    }
    for (const char *p = text->valuestring; *p; p++) {
        if (*p != ' ' && !inword) words++;
        inword = *p != ' ';
    }
    snprintf(summary, sizeof(summary), "%d words, starting '%.12s'", words, text->valuestring);
    r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "words", words);
    cJSON_AddStringToObject(r, "summary", summary);
    cJSON_AddStringToObject(r, "device", "gpu");
    json = cJSON_PrintUnformatted(r);
    fprintf(stderr, "[%s] infer: %s\n", worker_id, summary);
    cbm_step_ok(out, json);
    free(json);
    cJSON_Delete(r);
    cJSON_Delete(in);
}

static void publish(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *in = cJSON_Parse(call->input_json), *r;
    const cJSON *summary = field(in, "deps", "infer", "summary");
    char *json;

    (void)arg;
    r = cJSON_CreateObject();
    cJSON_AddTrueToObject(r, "published");
    cJSON_AddStringToObject(r, "summary", cJSON_IsString(summary) ? summary->valuestring : "");
    json = cJSON_PrintUnformatted(r);
    fprintf(stderr, "[%s] publish %s\n", worker_id, call->execution_id);
    cbm_step_ok(out, json);
    free(json);
    cJSON_Delete(r);
    cJSON_Delete(in);
}

/* SIGINT/SIGTERM are blocked in every thread; this one waits for them and
 * stops the worker (cbm_worker_stop is thread-safe, not signal-safe, so it
 * is not called from a signal handler). */
static void *signal_thread(void *arg)
{
    sigset_t set;
    int sig = 0;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigwait(&set, &sig);
    fprintf(stderr, "[%s] %s: draining\n", worker_id, sig == SIGINT ? "SIGINT" : "SIGTERM");
    cbm_worker_stop(arg);
    return NULL;
}

static int usage(void)
{
    fprintf(stderr, "usage: remote-worker SERVER QUEUE[,QUEUE...] [--capability KEY=VALUE]... "
                    "[--concurrency N] [--id ID] [--token TOKEN]\n");
    return 2;
}

int main(int argc, char **argv)
{
    cbm_worker_opts_t o = {0};
    cbm_worker_label_t caps[8];
    const char *queues[8];
    char *qbuf;
    cbm_worker_t *w = NULL;
    cbm_error_t err = {0};
    sigset_t set;
    pthread_t sig;
    int rc;

    if (argc < 3) return usage();
    o.server = argv[1];
    qbuf = argv[2];
    for (char *q = strtok(qbuf, ","); q != NULL && o.nqueues < 8; q = strtok(NULL, ","))
        queues[o.nqueues++] = q;
    o.queues = queues;
    o.capabilities = caps;
    for (int i = 3; i < argc; i++) {
        if (i + 1 >= argc) return usage();
        if (strcmp(argv[i], "--capability") == 0 && o.ncapabilities < 8) {
            char *eq = strchr(argv[++i], '=');
            if (eq == NULL) return usage();
            *eq = '\0';
            caps[o.ncapabilities].key = argv[i];
            caps[o.ncapabilities++].value = eq + 1;
        } else if (strcmp(argv[i], "--concurrency") == 0) {
            o.concurrency = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--id") == 0) {
            o.worker_id = argv[++i];
        } else if (strcmp(argv[i], "--token") == 0) {
            o.token = argv[++i];
        } else {
            return usage();
        }
    }
    /* Before any thread exists, so every thread inherits the mask. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    if ((rc = cbm_worker_create(&w, &o, &err)) != 0) {
        fprintf(stderr, "remote-worker: %s\n", err.message);
        return 1;
    }
    worker_id = cbm_worker_id(w);
    cbm_worker_register_handler(w, "fetch", fetch, NULL);
    cbm_worker_register_handler(w, "infer", infer, NULL);
    cbm_worker_register_handler(w, "publish", publish, NULL);
    pthread_create(&sig, NULL, signal_thread, w);
    fprintf(stderr, "[%s] serving queue(s) %s of %s\n", worker_id, argv[2], o.server);
    rc = cbm_worker_run(w, &err);
    if (rc != 0) {
        fprintf(stderr, "remote-worker: %s\n", err.message);
        pthread_kill(sig, SIGTERM); /* blocked: sigwait takes it */
    }
    pthread_join(sig, NULL);
    {
        cbm_worker_stats_t st;
        cbm_worker_get_stats(w, &st);
        fprintf(stderr, "[%s] stopped: %llu tasks, %llu results accepted\n", worker_id,
                (unsigned long long)st.tasks, (unsigned long long)st.submitted);
    }
    cbm_worker_destroy(w);
    return rc == 0 ? 0 : 1;
}
