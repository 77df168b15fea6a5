/*
 * stubproc.h - tests/llmstub/llmstub.py as a child process of an LLM worker
 * test: started on a port of its own, scripted and read over HTTP, killed
 * at the end. The child gets PR_SET_PDEATHSIG, so a test that crashes or is
 * killed takes its stub with it.
 */
#ifndef CBM_TEST_STUBPROC_H
#define CBM_TEST_STUBPROC_H

#include <sys/types.h>

typedef struct stubproc {
    pid_t pid;
    int port;
    char base[160];    /* http://127.0.0.1:PORT/v1 */
    char root[128];    /* http://127.0.0.1:PORT */
} stubproc_t;

/* Start llmstub.py (@p script) with @p args (NULL-terminated, may be NULL)
 * on @p port (0: any; its port is read from a port file). 0, or -1 with a
 * message on stderr. */
int stubproc_start(stubproc_t *s, const char *script, int port, const char *const *args);
/* SIGTERM, then SIGKILL after 2 s; waits. Idempotent. */
void stubproc_stop(stubproc_t *s);
/* POST @p body (JSON) to @p path; returns the HTTP status (-1: no answer). */
int stubproc_post(const stubproc_t *s, const char *path, const char *body);
/* GET @p path; the body (malloc'd) or NULL. */
char *stubproc_get(const stubproc_t *s, const char *path);
/* The journal entry (compact JSON, malloc'd) whose task is @p task, once its
 * status is not in_flight, waiting up to @p wait_ms; NULL if none. */
char *stubproc_entry(const stubproc_t *s, const char *task, int wait_ms);
/* A port free now (bound and released). */
int stubproc_free_port(void);

#endif
