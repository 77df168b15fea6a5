/*
 * fuzz_replay.c - the replay that fuzz_history and fuzz_snapshot share
 * (fz_replay, fuzz_common.h).
 */
#include <stdbool.h>
#include <string.h>

#include "engine/decision.h"
#include "fuzz_common.h"

/* Fold [snapshot] + evs (+ more) into a fresh state; returns dec_fold's code. */
static int fold(st_exec_t *st, const char *snapshot, const store_event_t *evs, size_t n,
                cbm_error_t *err)
{
    return dec_fold(st, FZ_EXECUTION_ID, fz_blueprint(), snapshot, evs, n, err);
}

/* The snapshot's seq, as the store would keep it beside the snapshot. */
int64_t fz_snapshot_seq(const char *snapshot)
{
    cJSON *o = cJSON_Parse(snapshot);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "seq");
    int64_t seq = 0;
    if (cJSON_IsNumber(s) && s->valuedouble >= 0 && s->valuedouble < 1e9)
        seq = (int64_t)s->valuedouble;
    cJSON_Delete(o);
    return seq;
}

/* The state restores from its own snapshot, to the same text. */
static void check_snapshot(const st_exec_t *st)
{
    char *a = fz_state_json(st), *b;
    st_exec_t r;
    int rc;
    FZ_CHECK(st_init(&r, FZ_EXECUTION_ID, fz_blueprint()) == 0, "st_init");
    rc = st_from_json(&r, a);
    FZ_CHECK(rc == 0, "a folded state does not restore from its snapshot (%d): %s", rc, a);
    b = fz_state_json(&r);
    FZ_CHECK(strcmp(a, b) == 0, "snapshot round trip differs:\n  %s\n  %s", a, b);
    free(a);
    free(b);
    st_finish(&r);
}

void fz_check_decision(st_exec_t *st, const store_event_t *evs, size_t n, eng_event_t *in,
                       size_t nin)
{
    store_decision_t d = {0};
    size_t *sched = NULL, nsched = 0;
    store_event_t *all;
    st_exec_t replay;
    cbm_error_t err = {0};
    char *live, *again;
    int64_t now = fz_event_time(st->seq) + 500;
    int rc = dec_build(st, in, nin, now, &d, &sched, &nsched);

    for (size_t i = 0; i < nin; i++) ev_finish(&in[i]);
    /* CBM_EINVAL with nin > 0: an incoming event that does not apply (the
     * runtime checks the step and attempt first). Without: the decider said
     * something the reducer refuses, from a state the reducer accepted. Not
     * abort-worthy by itself (the history may be one no engine writes), but
     * the engine would be stuck on it: keep it visible when hunting with
     * FZ_STRICT=1. */
    if (rc != 0) {
        if (rc != CBM_ENOMEM && nin == 0 && getenv("FZ_STRICT") != NULL) {
            char *s = fz_state_json(st);
            FZ_CHECK(0, "dec_build: %s on %s", cbm_strerror(rc), s);
        }
        return;
    }
    free(sched);
    if (d.nevents == 0) {
        dec_release(&d);
        return;
    }
    all = malloc((n + d.nevents) * sizeof(*all));
    FZ_CHECK(all != NULL, "out of memory");
    if (n > 0) memcpy(all, evs, n * sizeof(*all));
    memcpy(all + n, d.events, d.nevents * sizeof(*all));
    rc = fold(&replay, NULL, all, n + d.nevents, &err);
    live = fz_state_json(st);
    FZ_CHECK(rc == 0, "the engine's own decision does not fold: %s\n  live state: %s",
             err.message, live);
    again = fz_state_json(&replay);
    FZ_CHECK(strcmp(live, again) == 0, "replayed state differs from the live one:\n  %s\n  %s",
             live, again);
    free(live);
    free(again);
    st_finish(&replay);
    free(all);
    dec_release(&d);
}

void fz_replay(const char *snapshot, const store_event_t *evs, size_t n)
{
    st_exec_t st;
    cbm_error_t err = {0};
    int rc = fold(&st, snapshot, evs, n, &err);
    if (rc != 0) {
        FZ_CHECK(err.code == rc && err.message[0] != '\0', "a refused history has no reason");
        st_finish(&st);
        return;
    }
    /* Nothing folded (no event, no snapshot): nothing to check. */
    if (st.seq == 0) {
        st_finish(&st);
        return;
    }
    check_snapshot(&st);
    if (st_terminal(&st)) {
        st_finish(&st);
        return;
    }
    if (snapshot == NULL) {
        fz_check_decision(&st, evs, n, NULL, 0);
    } else {
        /* A snapshot can describe states no history reaches (a step in
         * back-off at attempt 0): the decision on it must not crash, but it
         * need not fold back. */
        store_decision_t d = {0};
        size_t *sched = NULL, nsched = 0;
        if (dec_build(&st, NULL, 0, fz_event_time(st.seq) + 500, &d, &sched, &nsched) == 0) {
            free(sched);
            dec_release(&d);
        }
    }
    st_finish(&st);
}
