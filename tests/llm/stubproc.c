/*
 * stubproc.c - see stubproc.h.
 */
#include "stubproc.h"

#include <arpa/inet.h>
#include <cJSON.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int stubproc_free_port(void)
{
    struct sockaddr_in a = {0};
    socklen_t n = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &n) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

int stubproc_start(stubproc_t *s, const char *script, int port, const char *const *args)
{
    char pfile[64], portarg[16];
    const char *argv[32];
    int n = 0;

    memset(s, 0, sizeof(*s));
    snprintf(pfile, sizeof(pfile), "/tmp/cbm-llmstub-%d-%d.port", (int)getpid(), rand());
    snprintf(portarg, sizeof(portarg), "%d", port);
    unlink(pfile);
    argv[n++] = "python3";
    argv[n++] = script;
    argv[n++] = "--port";
    argv[n++] = portarg;
    argv[n++] = "--port-file";
    argv[n++] = pfile;
    for (int i = 0; args != NULL && args[i] != NULL && n < 30; i++) argv[n++] = args[i];
    argv[n] = NULL;
    if ((s->pid = fork()) < 0) return -1;
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) dup2(fd, 1); /* its "listening" line */
        execvp("python3", (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 300; i++) { /* 15 s */
        FILE *f = fopen(pfile, "r");
        if (f != NULL) {
            int ok = fscanf(f, "%d", &s->port) == 1;
            fclose(f);
            if (ok && s->port > 0) break;
        }
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            fprintf(stderr, "stubproc: llmstub.py exited at start\n");
            s->pid = 0;
            return -1;
        }
        sleep_ms(50);
    }
    unlink(pfile);
    if (s->port <= 0) {
        fprintf(stderr, "stubproc: no port file from llmstub.py\n");
        stubproc_stop(s);
        return -1;
    }
    snprintf(s->root, sizeof(s->root), "http://127.0.0.1:%d", s->port);
    snprintf(s->base, sizeof(s->base), "%s/v1", s->root);
    return 0;
}

void stubproc_stop(stubproc_t *s)
{
    if (s->pid <= 0) return;
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 40; i++) {
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            s->pid = 0;
            return;
        }
        sleep_ms(50);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

static size_t keep(char *p, size_t size, size_t n, void *ud)
{
    return llm_buf_add(ud, p, size * n) == 0 ? size * n : 0;
}

static int request(const stubproc_t *s, const char *path, const char *body, llm_buf_t *out)
{
    CURL *e = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    char url[256];
    long status = -1;

    snprintf(url, sizeof(url), "%s%s", s->root, path);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, keep);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
    if (body != NULL) curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    if (curl_easy_perform(e) == CURLE_OK) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    return (int)status;
}

int stubproc_post(const stubproc_t *s, const char *path, const char *body)
{
    llm_buf_t b = {0};
    int st = request(s, path, body, &b);
    llm_buf_finish(&b);
    return st;
}

char *stubproc_get(const stubproc_t *s, const char *path)
{
    llm_buf_t b = {0};
    if (request(s, path, NULL, &b) != 200) {
        llm_buf_finish(&b);
        return NULL;
    }
    return b.p;
}

char *stubproc_entry(const stubproc_t *s, const char *task, int wait_ms)
{
    for (int waited = 0;; waited += 50) {
        char *j = stubproc_get(s, "/_stub/journal"), *out = NULL;
        cJSON *a = j != NULL ? cJSON_Parse(j) : NULL, *e;
        int settled = 0;
        cJSON_ArrayForEach(e, a) {
            const cJSON *t = cJSON_GetObjectItem(e, "task"), *st = cJSON_GetObjectItem(e, "status");
            if (!cJSON_IsString(t) || strcmp(t->valuestring, task) != 0) continue;
            settled = cJSON_IsString(st) && strcmp(st->valuestring, "in_flight") != 0;
            if (settled) out = cJSON_PrintUnformatted(e);
        }
        cJSON_Delete(a);
        free(j);
        if (out != NULL || waited >= wait_ms) return out;
        sleep_ms(50);
    }
}
