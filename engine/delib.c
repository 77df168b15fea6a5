/*
 * delib.c - the deliberation kind's call count and budget check (delib.h).
 */
#include <inttypes.h>
#include <stdio.h>

#include "cbm_internal.h"
#include "engine/delib.h"

int64_t delib_llm_calls(bp_topology_t topology, int agents, int rounds, bp_scoring_t scoring)
{
    int64_t n = agents, calls = n;
    if (topology == BP_TOPOLOGY_RING) calls += (int64_t)rounds * 2 * n;
    else if (topology == BP_TOPOLOGY_ALL_TO_ALL) calls += (int64_t)rounds * n * n;
    if (scoring == BP_SCORING_JUDGE) calls += n;
    return calls;
}

int delib_check_budget(const bp_step_t *step, int agents, int64_t max_tokens, cbm_error_t *err)
{
    const bp_delib_t *d = step->delib;
    int64_t calls, attempts, worst;

    if (d == NULL || agents < 1)
        return cbm_error_set(err, CBM_EINVAL, "delib_check_budget: not a deliberation step");
    calls = delib_llm_calls(d->topology, agents, d->rounds, d->scoring);
    attempts = d->call_retry.max_attempts;
    worst = calls * attempts;
    if (d->max_calls > 0 && worst > d->max_calls)
        return cbm_error_set(err, CBM_EINVAL,
                             "step '%s': budget.max_calls is %" PRId64
                             " but the deliberation may make up to %" PRId64 " calls (%" PRId64
                             " calls × %" PRId64 " attempt%s)",
                             step->name, d->max_calls, worst, calls, attempts,
                             attempts == 1 ? "" : "s");
    if (d->max_completion_tokens > 0 && max_tokens > 0 &&
        calls * max_tokens > d->max_completion_tokens)
        return cbm_error_set(err, CBM_EINVAL,
                             "step '%s': budget.max_completion_tokens is %" PRId64
                             " but the deliberation may use up to %" PRId64
                             " completion tokens (%" PRId64 " calls × %" PRId64 " max_tokens)",
                             step->name, d->max_completion_tokens, calls * max_tokens, calls,
                             max_tokens);
    return 0;
}
