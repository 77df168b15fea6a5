/*
 * delib_select.h - the two built-in local step handlers of a deliberation's
 * child (docs/deliberation.md §3, §5), as pure functions of the step's input
 * text: cbm.deliberation.select ranks the proposals and selects, and
 * cbm.deliberation.finish applies a person's pick (selection approval).
 * The runtime wraps them as handlers: a result goes to cbm_step_ok(), a
 * failure to cbm_step_fail(kind, message, false) — every failure here is
 * final.
 *
 * Both return 0 with exactly one outcome set: *result_json (the step's
 * result), or *fail_kind and *fail_message; CBM_ENOMEM with none set; or
 * CBM_EINVAL for a NULL argument. Every string returned is allocated with
 * cJSON's allocator: free it with cJSON_free(). No I/O, no clock, no global
 * state: safe from any thread.
 */
#ifndef CBM_ENGINE_DELIB_SELECT_H
#define CBM_ENGINE_DELIB_SELECT_H

/*
 * The select step. input_json is its input, {"inputs": <the child's
 * inputs: task, context, council {name, version, definition}, params {agents,
 * rounds, topology, scoring, selection, model}>, "deps": {<every final
 * proposal and every score>}, "args": {"phase": "select", "expansion": 1}}.
 *
 * A final proposal survives when it is a call result (an object with a
 * "content" string) and, with scoring, its score is valid: judge — the score
 * call's content_json.criteria has a number from 0 to 1 for every criterion
 * of the council's rubric, and the score is the rubric's weighted mean;
 * handler — the result's "score" is a number from 0 to 1 (its "criteria", an
 * object, is passed on). A proposal or score that is an error object
 * ({kind, message, ...}), a skipped marker ({"skipped": true, "because"}), or
 * anything else makes the agent failed (kinds: the error's own,
 * deliberation_skipped, deliberation_missing, deliberation_bad_proposal,
 * deliberation_bad_score).
 *
 * The result: {"winner", "ranking", "candidates", "failed", "usage",
 * "council"} (docs/deliberation.md §5). Fewer survivors than
 * selection.min_proposals fail with kind deliberation_quorum; an input not
 * of this shape with deliberation_bad_input.
 */
int delib_select(const char *input_json, char **result_json, char **fail_kind,
                 char **fail_message);

/*
 * The finish step (selection approval). input_json is {"inputs": ...,
 * "deps": {"select": <select's result>, "pick": <the approval's response>},
 * "args": {"phase": "finish", ...}}. The response names a candidate, by
 * {"agent": "<name>"} or by {"index": i} (its position in candidates, from
 * 0); the result is select's with "winner" set to that candidate. A response
 * that names none fails with kind deliberation_bad_pick; an input not of
 * this shape with deliberation_bad_input.
 */
int delib_finish(const char *input_json, char **result_json, char **fail_kind,
                 char **fail_message);

#endif
