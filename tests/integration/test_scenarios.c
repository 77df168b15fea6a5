/*
 * test_scenarios.c - runs every scenario of tests/scenarios (scenario.h)
 * against the real engine on the test PostgreSQL: one engine per scenario
 * with an in-process handler for each of the blueprint's task steps that
 * answers from the scenario's script, then the history, status and result
 * are compared with the expectation.
 *
 * Usage: test_scenarios DIR [NAME...]   (NAMEs: run only those files)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cerebelum/cerebelum.h"
#include "engine/blueprint.h"
#include "tests/harness/scenario.h"
#include "tests/harness/testdb.h"

static char url[512];

static void h_scripted(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    const scn_t *s = arg;
    scn_outcome_t o;
    if (scn_outcome(s, call->step, call->attempt, &o) != 0)
        cbm_step_fail(out, "bad_scenario", o.message, false);
    else if (o.ok)
        cbm_step_ok(out, o.json);
    else
        cbm_step_fail(out, o.kind, o.message, o.retryable);
    scn_outcome_finish(&o);
}

/* A scripted handler for each task step of bp. */
static int register_handlers(cbm_engine_t *e, scn_t *s, const bp_blueprint_t *bp, char *why,
                             size_t whylen)
{
    for (size_t i = 0; i < bp->nsteps; i++) {
        int r;
        if (bp->steps[i].kind != BP_TASK) continue;
        r = cbm_engine_register_step(e, bp->steps[i].handler, h_scripted, s);
        if (r != 0 && r != CBM_EEXIST) {
            snprintf(why, whylen, "register step: %s", cbm_strerror(r));
            return -1;
        }
    }
    return 0;
}

/* 0 passed, -1 failed (message printed). */
static int run_one(scn_t *s)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t opts = {0};
    cbm_error_t err = {0};
    bp_blueprint_t *bp = NULL;
    cbm_execution_info_t *info = NULL;
    cbm_event_t *ev = NULL;
    const char **types = NULL;
    size_t n = 0;
    char id[37], why[8192] = "";
    int rc = -1;

    if (bp_parse_json(s->blueprint_json, strlen(s->blueprint_json), &bp, &err) != 0) {
        snprintf(why, sizeof(why), "blueprint: %s", err.message);
        goto out;
    }
    opts.database_url = url;
    if (cbm_engine_create(&e, &opts, &err) != 0) {
        snprintf(why, sizeof(why), "engine: %s", err.message);
        goto out;
    }
    if (register_handlers(e, s, bp, why, sizeof(why)) != 0) goto out;
    for (size_t c = 0; c < s->nchildren; c++) {
        bp_blueprint_t *cbp = NULL;
        int r;
        if (bp_parse_json(s->children_json[c], strlen(s->children_json[c]), &cbp, &err) != 0) {
            snprintf(why, sizeof(why), "children[%zu]: %s", c, err.message);
            goto out;
        }
        r = register_handlers(e, s, cbp, why, sizeof(why));
        bp_destroy(cbp);
        if (r != 0) goto out;
    }
    if (cbm_engine_start(e, &err) != 0) {
        snprintf(why, sizeof(why), "engine: %s", err.message);
        goto out;
    }
    for (size_t c = 0; c < s->nchildren; c++) {
        if (cbm_engine_register_blueprint(e, s->children_json[c], NULL, &err) != 0) {
            snprintf(why, sizeof(why), "children[%zu]: %s", c, err.message);
            goto out;
        }
    }
    if (cbm_engine_register_blueprint(e, s->blueprint_json, NULL, &err) != 0 ||
        cbm_execution_start(e, bp->name, s->inputs_json, id, &err) != 0) {
        snprintf(why, sizeof(why), "engine: %s", err.message);
        goto out;
    }
    if (cbm_execution_wait(e, id, 30000, &info, &err) != 0) {
        /* Say where it stands: the history so far. */
        size_t len = (size_t)snprintf(why, sizeof(why), "engine: %s\n  history:", err.message);
        if (cbm_execution_history(e, id, 1, &ev, &n, &err) == 0)
            for (size_t i = 0; i < n && len < sizeof(why) - 256; i++)
                len += (size_t)snprintf(why + len, sizeof(why) - len, "\n    %s %s", ev[i].type,
                                        ev[i].payload);
        goto out;
    }
    if (cbm_execution_history(e, id, 1, &ev, &n, &err) != 0) {
        snprintf(why, sizeof(why), "history: %s", err.message);
        goto out;
    }
    if ((types = calloc(n + 1, sizeof(*types))) == NULL) goto out;
    for (size_t i = 0; i < n; i++) types[i] = ev[i].type;
    rc = scn_check(s, types, n, info->status, info->result, why, sizeof(why));
out:
    if (rc != 0) fprintf(stderr, "FAIL %s (%s)\n  %s\n", s->name, s->path, why);
    else printf("ok   %s\n", s->name);
    free(types);
    cbm_events_free(ev, n);
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
    bp_destroy(bp);
    return rc;
}

int main(int argc, char **argv)
{
    char **files = NULL;
    size_t nfiles = 0;
    int failed = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [NAME...]\n", argv[0]);
        return 2;
    }
    if (scn_files(argv[1], argv + 2, argc - 2, &files, &nfiles) != 0) return 2;
    if (nfiles == 0) {
        fprintf(stderr, "no scenarios in %s\n", argv[1]);
        return 1;
    }
    if (testdb_create(url, sizeof(url)) != 0) {
        scn_files_free(files, nfiles);
        return TESTDB_SKIP;
    }
    for (size_t i = 0; i < nfiles; i++) {
        char path[4096], why[512];
        scn_t s;
        snprintf(path, sizeof(path), "%s/%s", argv[1], files[i]);
        if (scn_load(path, &s, why, sizeof(why)) != 0) {
            fprintf(stderr, "FAIL %s\n", why);
            failed++;
        } else {
            failed += run_one(&s) != 0;
            scn_finish(&s);
        }
    }
    scn_files_free(files, nfiles);
    testdb_drop(url);
    printf("%zu scenarios, %d failed\n", nfiles, failed);
    return failed ? 1 : 0;
}
