/*
 * cerebelum-llm-worker - runs the LLM calls of deliberations
 * (docs/deliberation.md, docs/llm-worker.md): a remote worker of the C SDK
 * (cerebelum/worker.h) whose handlers cbm.llm.generate, .critique, .revise
 * and .score each send one streamed chat completion to an OpenAI-compatible
 * server (vLLM, llama.cpp's server, a hosted API).
 *
 *   cerebelum-llm-worker --base-url http://127.0.0.1:8000/v1 [--server HOST:PORT]
 *                        [--model NAME] [--queue Q]... [--capability K=V]...
 *                        [--concurrency N] [limits] [--token T] [TLS options]
 *
 * Start-up: GET <base-url>/models until the model server answers with a
 * model list (1 s doubling to 30 s between tries, forever): no task is taken
 * before the worker knows its model. Then it registers on its queues with
 * the capability model=<model> (and those given). SIGINT or SIGTERM drains
 * it: no new tasks, running calls finish and report, then it exits 0.
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "cerebelum/worker.h"
#include "handler.h"
#include "http.h"

#define MAX_LIST 32
#define MAX_RESULT_LIMIT (4u << 20) /* the transport's message size */

static const char *PROG = "cerebelum-llm-worker";

/* The stop a signal asks for, seen by the start-up wait and the worker. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    cbm_worker_t *worker;
} S = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, NULL};

enum {
    O_SERVER = 256, O_BASE_URL, O_MODEL, O_QUEUE, O_CAP, O_CONC, O_CONNECT, O_TTFT, O_STALL,
    O_TOTAL, O_MAXRES, O_TOKEN, O_ID, O_TLS_CA, O_TLS_NAME, O_TLS_CERT, O_TLS_KEY, O_LLM_CA,
    O_HELP,
};

static const struct option OPTS[] = {
    {"server", required_argument, NULL, O_SERVER},
    {"base-url", required_argument, NULL, O_BASE_URL},
    {"model", required_argument, NULL, O_MODEL},
    {"queue", required_argument, NULL, O_QUEUE},
    {"capability", required_argument, NULL, O_CAP},
    {"concurrency", required_argument, NULL, O_CONC},
    {"connect-timeout-ms", required_argument, NULL, O_CONNECT},
    {"ttft-timeout-ms", required_argument, NULL, O_TTFT},
    {"stall-timeout-ms", required_argument, NULL, O_STALL},
    {"total-timeout-ms", required_argument, NULL, O_TOTAL},
    {"max-result-bytes", required_argument, NULL, O_MAXRES},
    {"token", required_argument, NULL, O_TOKEN},
    {"worker-id", required_argument, NULL, O_ID},
    {"id", required_argument, NULL, O_ID},
    {"tls-ca", required_argument, NULL, O_TLS_CA},
    {"tls-server-name", required_argument, NULL, O_TLS_NAME},
    {"tls-client-cert", required_argument, NULL, O_TLS_CERT},
    {"tls-client-key", required_argument, NULL, O_TLS_KEY},
    {"llm-ca", required_argument, NULL, O_LLM_CA},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

static int usage(FILE *f, int rc)
{
    fprintf(f,
            "usage: %s --base-url URL [options]\n"
            "  --base-url URL          the OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1\n"
            "                          ($CEREBELUM_LLM_BASE_URL); key: $CEREBELUM_LLM_API_KEY\n"
            "  --model NAME            the model to ask (default: the first of GET /models)\n"
            "  --server ADDR           cerebelum serve, host:port or unix:/path\n"
            "                          ($CEREBELUM_SERVER, default 127.0.0.1:7233)\n"
            "  --queue Q               a queue to serve (repeatable; default llm)\n"
            "  --capability K=V        a capability label (repeatable; model=<model> is added)\n"
            "  --concurrency N         calls at once (default 8)\n"
            "  --connect-timeout-ms N  connecting to the model server (default 10000)\n"
            "  --ttft-timeout-ms N     until the first byte of the answer (default 120000)\n"
            "  --stall-timeout-ms N    no byte mid-stream (default 30000)\n"
            "  --total-timeout-ms N    one whole call (default 600000; 0: none)\n"
            "  --max-result-bytes N    largest step result (default 1048576, below 4 MiB)\n"
            "  --token TOKEN           bearer token of cerebelum serve ($CEREBELUM_TOKEN)\n"
            "  --worker-id ID          this worker's id (default: host-pid-random)\n"
            "  --tls-ca FILE           TLS to cerebelum serve, trusting this CA (PEM)\n"
            "                          ($CEREBELUM_TLS_CA; client: $CEREBELUM_TLS_CLIENT_CERT/KEY)\n"
            "  --tls-server-name N     expect this name in its certificate\n"
            "  --tls-client-cert F     present this certificate (PEM), with --tls-client-key F\n"
            "  --llm-ca FILE           CA file for an https model server\n",
            PROG);
    return rc;
}

static int read_file(const char *path, char **out)
{
    FILE *f = fopen(path, "rb");
    long n;
    *out = NULL;
    if (f == NULL) return -1;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
        (*out = malloc((size_t)n + 1)) == NULL || fread(*out, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(*out);
        *out = NULL;
        return -1;
    }
    (*out)[n] = '\0';
    fclose(f);
    return 0;
}

static int number(const char *opt, const char *s, long long min, long long max, long long *v)
{
    char *end;
    *v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || *v < min || *v > max) {
        fprintf(stderr, "%s: --%s must be an integer from %lld to %lld\n", PROG, opt, min, max);
        return -1;
    }
    return 0;
}

/* SIGINT/SIGTERM are blocked in every thread; this one takes them. */
static void *signal_thread(void *arg)
{
    sigset_t set;
    int sig = 0;
    (void)arg;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigwait(&set, &sig);
    pthread_mutex_lock(&S.mu);
    if (S.stop == 0) fprintf(stderr, "%s: %s: draining\n", PROG, sig == SIGINT ? "SIGINT" : "SIGTERM");
    S.stop = 1;
    if (S.worker != NULL) cbm_worker_stop(S.worker);
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.mu);
    return NULL;
}

/* Wait ms unless a stop comes; 1 when it did. */
static int wait_or_stop(int64_t ms)
{
    struct timespec ts;
    int stop;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&S.mu);
    while (!S.stop && pthread_cond_timedwait(&S.cv, &S.mu, &ts) == 0) {}
    stop = S.stop;
    pthread_mutex_unlock(&S.mu);
    return stop;
}

/* GET /models until it answers; 1 when a stop came first. */
static int wait_for_models(http_t *http, const char *base, const char *key, char ***names,
                           size_t *n)
{
    int64_t backoff = 1000;
    for (;;) {
        char why[512];
        if (llm_fetch_models(http, base, key, 10000, names, n, why, sizeof(why)) == 0) return 0;
        fprintf(stderr, "%s: the model server at %s does not answer with a model list (%s); "
                        "trying again in %lld s\n",
                PROG, base, why, (long long)(backoff / 1000));
        if (wait_or_stop(backoff)) return 1;
        backoff = backoff * 2 > 30000 ? 30000 : backoff * 2;
    }
}

/* Everything the options say. */
typedef struct config {
    cbm_worker_opts_t wo;
    cbm_worker_label_t caps[MAX_LIST + 1]; /* + model=<model> */
    const char *queues[MAX_LIST];
    llm_ctx_t ctx;
    llm_handler_arg_t hargs[4]; /* one per handler, as long as the worker */
    http_opts_t ho;
    const char *model, *pem_path[3];
    char *pem[3], *base;
    long long conc;
} config_t;

/* Options and environment into c. -1: go on; else the exit code. */
static int parse(int argc, char **argv, config_t *c)
{
    long long v;
    int opt;

    c->conc = 8;
    c->ctx.ttft_ms = 120000;
    c->ctx.stall_ms = 30000;
    c->ctx.total_ms = 600000;
    c->ctx.max_result_bytes = 1u << 20;
    c->ho.connect_timeout_ms = 10000;
    c->wo.server = getenv("CEREBELUM_SERVER");
    c->wo.token = getenv("CEREBELUM_TOKEN");
    c->ctx.base_url = getenv("CEREBELUM_LLM_BASE_URL");
    c->ctx.api_key = getenv("CEREBELUM_LLM_API_KEY");
    c->pem_path[0] = getenv("CEREBELUM_TLS_CA"); /* as the CLI */
    c->pem_path[1] = getenv("CEREBELUM_TLS_CLIENT_CERT");
    c->pem_path[2] = getenv("CEREBELUM_TLS_CLIENT_KEY");
    while ((opt = getopt_long(argc, argv, "h", OPTS, NULL)) != -1) {
        switch (opt) {
        case O_SERVER: c->wo.server = optarg; break;
        case O_BASE_URL: c->ctx.base_url = optarg; break;
        case O_MODEL: c->model = optarg; break;
        case O_QUEUE:
            if (c->wo.nqueues == MAX_LIST) return fprintf(stderr, "%s: too many queues\n", PROG), 2;
            c->queues[c->wo.nqueues++] = optarg;
            break;
        case O_CAP: {
            char *eq = strchr(optarg, '=');
            if (eq == NULL || eq == optarg) return usage(stderr, 2);
            if (c->wo.ncapabilities == MAX_LIST)
                return fprintf(stderr, "%s: too many capabilities\n", PROG), 2;
            *eq = '\0';
            if (strcmp(optarg, "model") == 0) {
                fprintf(stderr, "%s: the capability model is the model's name; use --model\n", PROG);
                return 2;
            }
            c->caps[c->wo.ncapabilities].key = optarg;
            c->caps[c->wo.ncapabilities++].value = eq + 1;
            break;
        }
        case O_CONC: if (number("concurrency", optarg, 1, 256, &c->conc)) return 2; break;
        case O_CONNECT:
            if (number("connect-timeout-ms", optarg, 1, 3600000, &v)) return 2;
            c->ho.connect_timeout_ms = v;
            break;
        case O_TTFT:
            if (number("ttft-timeout-ms", optarg, 0, 86400000, &v)) return 2;
            c->ctx.ttft_ms = v;
            break;
        case O_STALL:
            if (number("stall-timeout-ms", optarg, 0, 86400000, &v)) return 2;
            c->ctx.stall_ms = v;
            break;
        case O_TOTAL:
            if (number("total-timeout-ms", optarg, 0, 86400000, &v)) return 2;
            c->ctx.total_ms = v;
            break;
        case O_MAXRES:
            if (number("max-result-bytes", optarg, 1024, MAX_RESULT_LIMIT - 65536, &v)) return 2;
            c->ctx.max_result_bytes = (size_t)v;
            break;
        case O_TOKEN: c->wo.token = optarg; break;
        case O_ID: c->wo.worker_id = optarg; break;
        case O_TLS_CA: c->pem_path[0] = optarg; break;
        case O_TLS_CERT: c->pem_path[1] = optarg; break;
        case O_TLS_KEY: c->pem_path[2] = optarg; break;
        case O_TLS_NAME: c->wo.tls_server_name = optarg; break;
        case O_LLM_CA: c->ho.cainfo = optarg; break;
        case O_HELP: case 'h': return usage(stdout, 0);
        default: return usage(stderr, 2);
        }
    }
    if (optind < argc || c->ctx.base_url == NULL || c->ctx.base_url[0] == '\0')
        return usage(stderr, 2);
    if (c->wo.server == NULL) c->wo.server = "127.0.0.1:7233";
    if (c->wo.nqueues == 0) c->queues[c->wo.nqueues++] = "llm";
    if ((c->pem_path[1] == NULL) != (c->pem_path[2] == NULL)) {
        fprintf(stderr, "%s: --tls-client-cert and --tls-client-key go together\n", PROG);
        return 2;
    }
    for (int i = 0; i < 3; i++)
        if (c->pem_path[i] != NULL && read_file(c->pem_path[i], &c->pem[i]) != 0) {
            fprintf(stderr, "%s: cannot read %s\n", PROG, c->pem_path[i]);
            return 2;
        }
    c->wo.tls_root_pem = c->pem[0];
    c->wo.tls_cert_pem = c->pem[1];
    c->wo.tls_key_pem = c->pem[2];
    if ((c->base = strdup(c->ctx.base_url)) == NULL) return 1;
    while (c->base[0] != '\0' && c->base[strlen(c->base) - 1] == '/')
        c->base[strlen(c->base) - 1] = '\0';
    c->ctx.base_url = c->base;
    return -1;
}

/* The model (c->model, or the first listed) and the worker's options that
 * follow from it. */
static void take_models(config_t *c, char **models, size_t n)
{
    if (c->model == NULL) {
        c->model = models[0];
    } else {
        size_t i = 0;
        while (i < n && strcmp(models[i], c->model) != 0) i++;
        if (i == n)
            fprintf(stderr, "%s: warning: %s does not list the model %s; asking for it anyway\n",
                    PROG, c->base, c->model);
    }
    c->ctx.call.default_model = c->model;
    c->ctx.call.served = (const char *const *)models;
    c->ctx.call.nserved = n;
    c->caps[c->wo.ncapabilities].key = "model";
    c->caps[c->wo.ncapabilities++].value = c->model;
    c->wo.queues = c->queues;
    c->wo.capabilities = c->caps;
    c->wo.concurrency = (int)c->conc;
}

/* Create the worker (unless a stop came first), register the handlers and
 * run until drained. The exit code. */
static int run_worker(config_t *c)
{
    static const char *const PHASES[] = {"generate", "critique", "revise", "score"};
    cbm_error_t err = {0};
    int rc, stopped;

    pthread_mutex_lock(&S.mu);
    stopped = S.stop;
    rc = stopped ? 0 : cbm_worker_create(&S.worker, &c->wo, &err);
    pthread_mutex_unlock(&S.mu);
    if (stopped) return 0;
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", PROG, err.message);
        return 1;
    }
    for (int i = 0; i < 4; i++) {
        char name[32];
        c->hargs[i].ctx = &c->ctx;
        c->hargs[i].phase = PHASES[i];
        snprintf(name, sizeof(name), "cbm.llm.%s", PHASES[i]);
        cbm_worker_register_handler(S.worker, name, llm_handle, &c->hargs[i]);
    }
    fprintf(stderr, "%s: %s: serving %zu queue(s) of %s with model %s at %s, %lld at once\n", PROG,
            cbm_worker_id(S.worker), c->wo.nqueues, c->wo.server, c->model, c->base, c->conc);
    rc = cbm_worker_run(S.worker, &err) == 0 ? 0 : 1;
    if (rc != 0) fprintf(stderr, "%s: %s\n", PROG, err.message);
    {
        cbm_worker_stats_t st;
        cbm_worker_get_stats(S.worker, &st);
        fprintf(stderr, "%s: stopped: %llu tasks, %llu results accepted\n", PROG,
                (unsigned long long)st.tasks, (unsigned long long)st.submitted);
    }
    return rc;
}

int main(int argc, char **argv)
{
    config_t c;
    http_t *http = NULL;
    char **models = NULL;
    size_t nmodels = 0;
    sigset_t set;
    pthread_t sig;
    int rc;

    memset(&c, 0, sizeof(c));
    if ((rc = parse(argc, argv, &c)) >= 0) goto out;
    rc = 1;
    /* Before any thread exists, so that every thread inherits the mask. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "%s: libcurl does not initialise\n", PROG);
        goto out;
    }
    if (pthread_create(&sig, NULL, signal_thread, NULL) != 0) {
        curl_global_cleanup();
        goto out;
    }
    c.ho.max_connections = (int)c.conc;
    if (http_create(&http, &c.ho) != 0) {
        fprintf(stderr, "%s: cannot start the HTTP client\n", PROG);
    } else if (wait_for_models(http, c.base, c.ctx.api_key, &models, &nmodels) != 0) {
        rc = 0; /* stopped before it began: nothing was taken */
    } else {
        take_models(&c, models, nmodels);
        c.ctx.http = http;
        rc = run_worker(&c);
    }
    /* End the signal thread: a SIGTERM of our own (blocked everywhere, so
     * its sigwait takes it), with stop already set so it says nothing. */
    pthread_mutex_lock(&S.mu);
    if (!S.stop) {
        S.stop = 2;
        pthread_kill(sig, SIGTERM);
    }
    pthread_mutex_unlock(&S.mu);
    pthread_join(sig, NULL);
    cbm_worker_destroy(S.worker);
    http_destroy(http);
    curl_global_cleanup();
out:
    llm_models_free(models, nmodels);
    for (int i = 0; i < 3; i++) free(c.pem[i]);
    free(c.base);
    return rc;
}
