/*
 * handler.h - the step handlers of cerebelum-llm-worker (cbm.llm.generate,
 * cbm.llm.critique, cbm.llm.revise, cbm.llm.score): one chat completion per
 * task, streamed from an OpenAI-compatible server, reported as the step's
 * result or as a failure of the contract's kinds (docs/deliberation.md §4,
 * docs/llm-worker.md). No retries here, ever: the step's retry policy
 * decides.
 *
 * Threads: the handlers run on the worker SDK's slot threads, many at once;
 * they share one llm_ctx_t (read-only once set up) and its HTTP client.
 */
#ifndef CBM_LLM_HANDLER_H
#define CBM_LLM_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#include "call.h"
#include "cerebelum/cerebelum.h"
#include "http.h"

/* What every call of this worker shares. */
typedef struct llm_ctx {
    http_t *http;
    const char *base_url;      /* e.g. "http://127.0.0.1:8000/v1", no trailing '/' */
    const char *api_key;       /* Bearer token of the model server, or NULL */
    call_opts_t call;          /* the default model, the served models */
    int64_t ttft_ms, stall_ms, total_ms;
    size_t max_result_bytes;
} llm_ctx_t;

/* The arg a handler is registered with: the shared context and the phase
 * the handler serves (its args.phase must match). */
typedef struct llm_handler_arg {
    llm_ctx_t *ctx;
    const char *phase;
} llm_handler_arg_t;

/* The handler (cbm_step_fn); arg is an llm_handler_arg_t. */
void llm_handle(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg);

/* GET <base_url>/models: the ids it lists, in *names (an array of *n
 * malloc'd strings; llm_models_free). 0, or -1 with the reason in why
 * (the server is down, answers an error, or answers something that is not
 * a model list, or lists none). */
int llm_fetch_models(http_t *http, const char *base_url, const char *api_key, int64_t timeout_ms,
                     char ***names, size_t *n, char *why, size_t whylen);
void llm_models_free(char **names, size_t n);

#endif
