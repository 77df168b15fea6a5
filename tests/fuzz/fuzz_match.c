/*
 * fuzz_match.c - the routing evaluator (engine/match.c): branch conditions,
 * diverge patterns, JSON paths and sub-workflow input templates.
 *
 * Input: up to three JSON texts separated by lines "%%":
 *   A (a condition, a pattern or a template), B (a document: a step's
 *   result), C (a second pattern).
 * Every function of match.h is called on the raw trees: none may crash, leak
 * or trip UBSan, whatever the trees (the evaluator is also handed trees no
 * validator has seen). Then the validator is consulted, by embedding A and C
 * in a blueprint (as a branch condition, and as diverge patterns), and the
 * properties the engine relies on are checked on what it accepts:
 *  - an accepted condition evaluates (cond_eval never says CBM_EINVAL);
 *  - an accepted pattern subsumes itself, and when pattern A subsumes
 *    pattern C, every document C matches A matches too (match_subsumes is
 *    how the validator proves a rule unreachable; a wrong "yes" would refuse
 *    good blueprints, a wrong "no" is harmless, so this checks the "yes").
 */
#include <string.h>

#include "engine/match.h"
#include "fuzz_common.h"

#define SEP "\n%%\n"

/* Parse a blueprint made of fmt with the texts spliced in; NULL if refused. */
static bp_blueprint_t *embed(const char *fmt, const char *a, const char *c)
{
    size_t cap = strlen(fmt) + strlen(a) + strlen(c) + 1;
    char *json = malloc(cap);
    bp_blueprint_t *bp = NULL;
    cbm_error_t err = {0};
    if (json == NULL) return NULL;
    snprintf(json, cap, fmt, a, c);
    if (bp_parse_json(json, strlen(json), &bp, &err) != 0) bp = NULL;
    free(json);
    return bp;
}

static void raw_calls(const cJSON *a, const cJSON *b, const cJSON *c)
{
    cJSON *t = NULL;
    bool out;
    (void)cond_eval(a, b, &out);
    (void)cond_eval(a, b, NULL);
    (void)match_pattern(a, b);
    (void)match_pattern(c, b);
    (void)match_subsumes(a, c);
    (void)json_equal(a, b);
    if (cJSON_IsString(a)) {
        (void)json_path_valid(a->valuestring);
        (void)json_path_get(b, a->valuestring);
        (void)match_is_reference(a->valuestring);
    }
    if (match_template(a, b, &t) == 0) cJSON_Delete(t);
}

static void validated(const char *a_text, const char *c_text, const cJSON *b)
{
    bp_blueprint_t *bp;
    /* A as a branch condition. */
    bp = embed("{\"name\":\"m\",\"steps\":[{\"name\":\"s\",\"branch\":"
               "[{\"when\":%s,\"to\":\"t\"}]},"
               "{\"name\":\"t\",\"depends_on\":[\"s\"]}]}%s",
               a_text, ""); /* no second text here */
    if (bp != NULL) {
        const cJSON *when = bp->steps[0].branch[0].when;
        bool out;
        int rc = cond_eval(when, b, &out);
        char *w = cJSON_PrintUnformatted(when);
        FZ_CHECK(rc == 0, "an accepted condition does not evaluate: %s", w ? w : "?");
        cJSON_free(w);
        bp_destroy(bp);
    }
    /* A and C as patterns, of two steps (one step's later rule would be
     * refused as unreachable when A subsumes C). */
    bp = embed("{\"name\":\"m\",\"steps\":[{\"name\":\"s\",\"diverge\":[{\"match\":%s,"
               "\"action\":\"fail\"}]},{\"name\":\"u\",\"diverge\":[{\"match\":%s,"
               "\"action\":\"fail\"}]}]}",
               a_text, c_text);
    if (bp != NULL) {
        const cJSON *pa = bp->steps[0].diverge[0].match, *pc = bp->steps[1].diverge[0].match;
        char *sa = cJSON_PrintUnformatted(pa), *sc = cJSON_PrintUnformatted(pc);
        FZ_CHECK(match_subsumes(pa, pa), "an accepted pattern does not subsume itself: %s",
                 sa ? sa : "?");
        if (match_subsumes(pa, pc) && match_pattern(pc, b))
            FZ_CHECK(match_pattern(pa, b), "%s subsumes %s, which matches a value it does not",
                     sa ? sa : "?", sc ? sc : "?");
        cJSON_free(sa);
        cJSON_free(sc);
        bp_destroy(bp);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fz_text(data, size), *parts[3] = {"", "", ""};
    cJSON *a, *b, *c;

    if (text == NULL) return 0;
    fz_split(text, SEP, parts, 3);
    a = cJSON_Parse(parts[0]);
    b = cJSON_Parse(parts[1]);
    c = cJSON_Parse(parts[2]);
    raw_calls(a, b, c);
    raw_calls(b, a, c);
    if (a != NULL && c != NULL) validated(parts[0], parts[2], b);
    else if (a != NULL) validated(parts[0], parts[0], b);
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
    free(text);
    return 0;
}
