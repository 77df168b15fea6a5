/*
 * call.h - one LLM call of a deliberation (docs/deliberation.md §3, §4):
 * from the task's input to the chat completion request, and from the
 * answer to the step's result.
 *
 * call_build reads the input {"inputs": {task, context, council, params},
 * "deps": {...}, "args": {phase, agent, target, round}}, picks the acting
 * agent (agents[args.agent mod P]; the council's judge in the score phase),
 * renders the council's system prompt and the phase's prompt with the
 * variables of §1 (engine/prompt.h), and writes the request body. A call
 * whose dependencies hold an error object or a skip completes at once with
 * {"skipped": true, "agent", "because"} and no request (because: the step
 * that failed, carried over from a skip). call_result turns
 * what the stream said into the §4 result.
 *
 * Pure functions (no I/O); threads: any.
 */
#ifndef CBM_LLM_CALL_H
#define CBM_LLM_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cerebelum/cerebelum.h"
#include "classify.h"
#include "sse.h"

/* What the worker knows that the task does not say. */
typedef struct call_opts {
    /* The model to ask when the call names none, or one the server does not
     * serve (the result's `model` says what answered). */
    const char *default_model;
    /* The models GET /v1/models listed (none: any name is sent as it is). */
    const char *const *served;
    size_t nserved;
} call_opts_t;

/* A call, built. Free with call_finish. */
typedef struct llm_call {
    char *agent;             /* the acting agent's name in results: its profile's
                                id, "<id>#<k>" for the k-th reuse of a profile
                                (deliberation.md §2), "judge" to score */
    char *agent_id;          /* its profile's id: the {{agent}} of templates */
    char phase[16];          /* generate | critique | revise | score */
    char *skipped;           /* non-NULL: complete with this result, no request */
    char *body;              /* the request's JSON text */
    char *model;             /* the model asked for */
    char task_id[256];       /* "<execution>/<step>/<attempt>" (X-Cerebelum-Task) */
    uint32_t seed;           /* first 31 bits of SHA-256(task_id) */
    char prompt_sha256[65];  /* SHA-256 hex of the messages array as canonical
                                JSON (sorted keys, compact, UTF-8 as it is) */
    bool schema;             /* JSON was asked (response_format): content_json */
    bool score;              /* ... and it is the score's, checked against the rubric */
    char **criteria;         /* the rubric's criteria, for the schema's check */
    size_t ncriteria;
} llm_call_t;

/*
 * Build the call of @p sc for a handler of phase @p phase (NULL: any).
 * 0: built (call->skipped or call->body set). 1: the input is not what §3
 * says, *f is llm_bad_input. CBM_ENOMEM. On any return call_finish frees
 * what was built.
 */
int call_build(const cbm_step_call_t *sc, const char *phase, const call_opts_t *o,
               llm_call_t *call, llm_failure_t *f);

void call_finish(llm_call_t *call);

/* The seed of an attempt: the first 31 bits of SHA-256(task_id). */
uint32_t call_seed(const char *task_id);

/*
 * The step's result for a stream that came whole (classify_stream found
 * nothing wrong), as §4's JSON text in *json (malloc'd). 0: done. 1: a
 * failure, *f says which (llm_bad_output: content that is not JSON when
 * JSON was asked, or not the score's; llm_result_too_large: over
 * @p max_bytes). CBM_ENOMEM.
 */
int call_result(const llm_call_t *call, const sse_chat_t *chat, int64_t ttft_ms,
                int64_t latency_ms, size_t max_bytes, char **json, llm_failure_t *f);

#endif
