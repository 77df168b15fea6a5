/*
 * gen_seeds.c - writes the seed corpora of tests/fuzz (docs/fuzzing.md):
 *
 *   build-fuzz/tests/fuzz/gen_seeds <repository root> <output dir>
 *
 * makes <output dir>/<target>/ for every target:
 *   blueprint  the blueprints of the scenario files (tests/scenarios) and of
 *              examples/remote/pipeline.json,
 *              the fixed blueprint, and the documented examples below, some
 *              with execution inputs;
 *   match      each branch condition and diverge pattern of the scenarios,
 *              with the results their scripts give, and hand-made ones;
 *   history    histories of the fixed blueprint (fuzz_common.c) as the engine
 *              writes them: the scripts below are played through dec_build,
 *              the engine's decision function, so every event is one the
 *              engine would store; some start from a snapshot;
 *   snapshot   the snapshots (st_to_json) of those executions along the way;
 *   proto      a request of every method, serialized.
 * The committed corpus was made with it (then trimmed by hand; seeds for
 * findings are added by hand, named regress-*). Not a test; built with the
 * fuzz targets.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/decision.h"
#include "fuzz_common.h"
#include "grpc_transport.h"

static const char *out_root;
static int failures;

/* ---- files -------------------------------------------------------------------- */

static void put(const char *target, const char *name, const void *data, size_t len)
{
    char path[4096];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", out_root, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/%s/%s", out_root, target, name);
    if ((f = fopen(path, "wb")) == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void puts_file(const char *target, const char *name, const char *text)
{
    put(target, name, text, strlen(text));
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* A growing string. */
typedef struct sb {
    char *s;
    size_t n, cap;
} sb_t;

static void sb_add(sb_t *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->n + (size_t)n + 1 > b->cap) {
        b->cap = (b->n + (size_t)n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        if (b->s == NULL) abort();
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

/* ---- blueprints and match seeds from the scenarios -------------------------------- */

static const char *const doc_blueprints[] = {
    /* docs/blueprints.md */
    "{\"name\": \"order\", \"steps\": [\n"
    "  {\"name\": \"fetch\", \"handler\": \"fetch_v2\", \"timeout_ms\": 5000,\n"
    "   \"retry\": {\"max_attempts\": 3, \"non_retryable\": [\"bad_input\"]}},\n"
    "  {\"name\": \"price\", \"depends_on\": [\"fetch\"]},\n"
    "  {\"name\": \"stock\", \"depends_on\": [\"fetch\"], \"queue\": \"inventory\"},\n"
    "  {\"name\": \"ship\",  \"depends_on\": [\"price\", \"stock\"]}]}\n",
    "{\"name\": \"etl\", \"timeline\": [\"extract\", \"transform\", {\"name\": \"load\", "
    "\"queue\": \"db\"}]}\n",
    "{\"name\": \"in\", \"inputs\": {\"topic\": {\"type\": \"string\", \"required\": true},\n"
    "  \"threshold\": {\"type\": \"number\", \"default\": 0.8}, \"tags\": {\"type\": \"array\"},\n"
    "  \"rounds\": {\"type\": \"integer\", \"default\": 3}, \"extra\": {}},\n"
    " \"steps\": [{\"name\": \"a\"}]}\n%%\n{\"topic\": \"cats\", \"tags\": [1, \"x\"]}\n",
    "{\"name\": \"kinds\", \"timeout_ms\": 60000, \"steps\": [\n"
    "  {\"name\": \"nap\", \"kind\": \"sleep\", \"duration_ms\": 0},\n"
    "  {\"name\": \"wait\", \"kind\": \"sleep\", \"until\": \"2026-12-01T11:30:00.25+01:30\"},\n"
    "  {\"name\": \"ok\", \"kind\": \"approval\", \"approval_type\": \"signoff\", \"timeout_ms\": "
    "5,\n"
    "   \"depends_on\": [\"nap\", \"wait\"]},\n"
    "  {\"name\": \"sig\", \"kind\": \"signal\", \"signal\": \"go.now\", \"depends_on\": "
    "[\"ok\"]},\n"
    "  {\"name\": \"gpu\", \"queue\": \"gpu\", \"requires\": {\"gpu\": \"true\", \"arch\": "
    "\"sm90\"},\n"
    "   \"timeout_ms\": 100, \"heartbeat_timeout_ms\": 50, \"depends_on\": [\"sig\"]},\n"
    "  {\"name\": \"think\", \"kind\": \"deliberation\", \"depends_on\": [\"gpu\"], \"council\": "
    "\"dev\",\n"
    "   \"task\": {\"t\": \"$.deps.gpu.text\"}, \"agents\": 3, \"topology\": \"all_to_all\",\n"
    "   \"scoring\": {\"mode\": \"handler\", \"handler\": \"lint\"},\n"
    "   \"selection\": {\"rule\": \"threshold_first\", \"threshold\": 0.5, \"min_proposals\": "
    "2},\n"
    "   \"model\": {\"max_tokens\": 100}, \"call\": {\"retry\": {\"max_attempts\": 2}},\n"
    "   \"budget\": {\"max_calls\": 30, \"max_completion_tokens\": 1500}},\n"
    "  {\"name\": \"use\", \"depends_on\": [\"think\"], \"args\": {\"phase\": \"x\", \"n\": "
    "1}}]}\n",
    "{\"name\": \"parent\", \"inputs\": {\"topic\": {\"type\": \"string\"}}, \"steps\": [\n"
    "  {\"name\": \"generate\"},\n"
    "  {\"name\": \"review_child\", \"kind\": \"subworkflow\", \"depends_on\": [\"generate\"],\n"
    "   \"blueprint\": \"review\", \"version\": "
    "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\n"
    "   \"inputs\": {\"topic\": \"$.inputs.topic\", \"draft\": \"$.deps.generate.text\",\n"
    "              \"parts\": [\"$.deps.generate.parts[0]\", \"$5\"], \"strict\": true}}]}\n",
    "{\"name\": \"routing\", \"steps\": [\n"
    "  {\"name\": \"generate\"},\n"
    "  {\"name\": \"check\", \"depends_on\": [\"generate\"], \"retry\": {\"max_attempts\": 2,\n"
    "   \"initial_ms\": 5, \"max_ms\": 50, \"multiplier\": 1.5},\n"
    "   \"diverge\": [\n"
    "    {\"match\": {\"status\": \"pending\"}, \"action\": \"retry\", \"max_iterations\": 10},\n"
    "    {\"match\": {\"verdict\": \"revise\"}, \"action\": \"back_to\", \"target\": "
    "\"generate\",\n"
    "     \"max_iterations\": 3},\n"
    "    {\"match\": {\"cached\": true}, \"action\": \"skip_to\", \"target\": \"notify\"},\n"
    "    {\"match\": {\"kind\": \"validation\"}, \"on\": \"error\", \"action\": \"fail\"},\n"
    "    {\"match\": {\"kind\": \"approval_rejected\"}, \"on\": \"error\", \"action\": "
    "\"continue\"}],\n"
    "   \"branch\": [\n"
    "    {\"when\": {\"path\": \"score\", \"op\": \">=\", \"value\": 0.8}, \"to\": \"publish\"},\n"
    "    {\"when\": {\"and\": [{\"path\": \"flags[0]\", \"op\": \"exists\"},\n"
    "      {\"not\": {\"path\": \"tier\", \"op\": \"in\", \"value\": [\"gold\", \"silver\"]}}]},\n"
    "     \"to\": \"audit\"},\n"
    "    {\"otherwise\": \"escalate\"}]},\n"
    "  {\"name\": \"publish\", \"depends_on\": [\"check\"]},\n"
    "  {\"name\": \"audit\", \"depends_on\": [\"check\"]},\n"
    "  {\"name\": \"escalate\", \"depends_on\": [\"check\"]},\n"
    "  {\"name\": \"notify\", \"depends_on\": [\"publish\", \"escalate\", \"audit\"]}]}\n",
};

/* Hand-made match seeds: condition / pattern, document, second pattern. */
static const char *const doc_matches[] = {
    "{\"path\": \"score\", \"op\": \">=\", \"value\": 0.8}\n%%\n{\"score\": 0.9}\n%%\n{\"score\": "
    "\"_\"}",
    "{\"and\": [{\"path\": \"flags[0]\", \"op\": \"exists\"}, {\"not\": {\"path\": \"tier\", "
    "\"op\": \"in\", \"value\": [\"gold\", \"silver\"]}}]}\n%%\n"
    "{\"flags\": [null], \"tier\": \"bronze\"}\n%%\n{\"tier\": \"bronze\"}",
    "{\"or\": [{\"path\": \"m[1][0].k\", \"op\": \"==\", \"value\": {\"a\": [1, 2.0]}}, "
    "{\"path\": \"\", \"op\": \"!=\", \"value\": null}]}\n%%\n"
    "{\"m\": [0, [{\"k\": {\"a\": [1, 2]}}]]}\n%%\n{\"m\": \"_\"}",
    "{\"path\": \"[2].name\", \"op\": \"<\", \"value\": \"m\"}\n%%\n"
    "[0, 1, {\"name\": \"k\"}]\n%%\n[\"_\", \"_\", {\"name\": \"k\"}]",
    "{\"status\": \"error\"}\n%%\n{\"status\": \"error\", \"code\": 7}\n%%\n"
    "{\"status\": \"error\", \"code\": 7}",
    "\"$.deps.gen.parts[0]\"\n%%\n{\"inputs\": {\"topic\": \"t\"}, \"deps\": {\"gen\": "
    "{\"parts\": [\"p\"]}}}\n%%\n\"_\"",
    "{\"x\": \"$.inputs.topic\", \"y\": [\"$.deps.a\", \"$5\", {\"z\": \"$.inputs\"}]}\n%%\n"
    "{\"inputs\": {\"topic\": \"t\"}, \"deps\": {\"a\": 1}}\n%%\n{\"x\": \"_\"}",
    "{\"not\": {\"path\": \"a.b\", \"op\": \"exists\"}}\n%%\n{\"a\": {\"c\": 1}}\n%%\n1.0",
    "{\"path\": \"n\", \"op\": \"in\", \"value\": [1, \"1\", true, null, [1]]}\n%%\n{\"n\": "
    "1e0}\n%%\n"
    "{\"n\": 1}",
};

/* "cond\n%%\ndoc\n%%\npattern" seeds of one scenario step. */
static int scenario_matches(const char *base, const cJSON *step, const cJSON *script, int k)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(step, "name");
    const cJSON *outs = cJSON_IsString(name)
                            ? cJSON_GetObjectItemCaseSensitive(script, name->valuestring)
                            : NULL;
    const cJSON *rules[2] = {cJSON_GetObjectItemCaseSensitive(step, "branch"),
                             cJSON_GetObjectItemCaseSensitive(step, "diverge")};
    const cJSON *out, *rule;
    for (int r = 0; r < 2; r++) {
        cJSON_ArrayForEach(rule, rules[r]) {
            const cJSON *what = cJSON_GetObjectItemCaseSensitive(rule, r == 0 ? "when" : "match");
            if (what == NULL) continue;
            cJSON_ArrayForEach(out, outs) {
                const cJSON *doc = cJSON_GetObjectItemCaseSensitive(out, "ok");
                char *a = cJSON_PrintUnformatted(what), *b, *text, file[256];
                if (doc == NULL) doc = cJSON_GetObjectItemCaseSensitive(out, "fail");
                b = cJSON_PrintUnformatted(doc);
                text = malloc(strlen(a) + 2 * strlen(b) + 16);
                sprintf(text, "%s\n%%%%\n%s\n%%%%\n%s", a, b, b);
                snprintf(file, sizeof(file), "%s-%d", base, k++);
                puts_file("match", file, text);
                free(text);
                free(a);
                free(b);
            }
        }
    }
    return k;
}

static void scenario_seeds(const char *root)
{
    char dir[4096];
    struct dirent **names;
    int n;
    snprintf(dir, sizeof(dir), "%s/tests/scenarios", root);
    if ((n = scandir(dir, &names, NULL, alphasort)) < 0) {
        perror(dir);
        exit(1);
    }
    for (int i = 0; i < n; i++) {
        char path[4096 + 256], base[256], *text, *bp_text;
        cJSON *doc, *bp, *steps, *st;
        int k = 0;
        size_t len = strlen(names[i]->d_name);
        if (len < 6 || strcmp(names[i]->d_name + len - 5, ".json") != 0) goto next;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        snprintf(base, sizeof(base), "scenario-%.*s", (int)(len - 5), names[i]->d_name);
        if ((text = slurp(path)) == NULL || (doc = cJSON_Parse(text)) == NULL) {
            fprintf(stderr, "gen_seeds: %s does not parse\n", path);
            exit(1);
        }
        bp = cJSON_GetObjectItemCaseSensitive(doc, "blueprint");
        bp_text = cJSON_Print(bp);
        puts_file("blueprint", base, bp_text);
        free(bp_text);
        steps = cJSON_GetObjectItemCaseSensitive(bp, "steps");
        cJSON_ArrayForEach(st, steps)
            k = scenario_matches(base, st, cJSON_GetObjectItemCaseSensitive(doc, "script"), k);
        steps = cJSON_GetObjectItemCaseSensitive(bp, "timeline");
        cJSON_ArrayForEach(st, steps)
            k = scenario_matches(base, st, cJSON_GetObjectItemCaseSensitive(doc, "script"), k);
        cJSON_Delete(doc);
        free(text);
    next:
        free(names[i]);
    }
    free(names);
}

static void blueprint_seeds(const char *root)
{
    char path[4096], name[64], *text;
    snprintf(path, sizeof(path), "%s/examples/remote/pipeline.json", root);
    if ((text = slurp(path)) == NULL) {
        perror(path);
        exit(1);
    }
    puts_file("blueprint", "example-remote-pipeline", text);
    free(text);
    puts_file("blueprint", "fixed-fz", fz_blueprint_json);
    for (size_t i = 0; i < sizeof(doc_blueprints) / sizeof(*doc_blueprints); i++) {
        snprintf(name, sizeof(name), "doc-%zu", i);
        puts_file("blueprint", name, doc_blueprints[i]);
    }
    for (size_t i = 0; i < sizeof(doc_matches) / sizeof(*doc_matches); i++) {
        snprintf(name, sizeof(name), "doc-%zu", i);
        puts_file("match", name, doc_matches[i]);
    }
}

/* ---- histories ------------------------------------------------------------------- */

/* A run of the fixed blueprint: its state and what it stored. */
typedef struct run {
    const char *name;
    st_exec_t st;
    sb_t hist;          /* "<Type> <payload>\n" per event */
    size_t nevents;
    int64_t now;
    size_t snap_at;     /* write a "Snapshot + rest" history from this event count */
    char *snap;         /* the snapshot taken there */
    sb_t after;         /* the events after it */
    int nsnaps;
} run_t;

static int step_of(const char *name)
{
    int i = bp_step_index(fz_blueprint(), name);
    if (i < 0) {
        fprintf(stderr, "gen_seeds: no step %s\n", name);
        exit(1);
    }
    return i;
}

static void write_snapshot(run_t *r)
{
    char file[128], *s = fz_state_json(&r->st);
    snprintf(file, sizeof(file), "%s-%d", r->name, r->nsnaps++);
    puts_file("snapshot", file, s);
    free(s);
}

/* Decide with the incoming event ev (NULL: none); false when it did not apply. */
static bool decide(run_t *r, eng_event_t *ev)
{
    store_decision_t d = {0};
    size_t *sched = NULL, nsched = 0;
    int rc;
    r->now += 1000;
    rc = dec_build(&r->st, ev, ev != NULL, r->now, &d, &sched, &nsched);
    if (ev != NULL) ev_finish(ev);
    free(sched);
    if (rc != 0) {
        fprintf(stderr, "gen_seeds: %s: decision refused (%s)\n", r->name, cbm_strerror(rc));
        failures++;
        return false;
    }
    for (size_t i = 0; i < d.nevents; i++) {
        sb_add(&r->hist, "%s %s\n", d.events[i].type, d.events[i].payload);
        if (r->snap != NULL) sb_add(&r->after, "%s %s\n", d.events[i].type, d.events[i].payload);
        r->nevents++;
    }
    if (r->snap == NULL && r->snap_at > 0 && r->nevents >= r->snap_at) {
        r->snap = fz_state_json(&r->st);
        write_snapshot(r);
    }
    dec_release(&d);
    return true;
}

static char *sdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL) abort();
    return d;
}

/* The key of the active timer of step (any kind), or NULL. */
static const char *timer_of(const st_exec_t *st, const char *step)
{
    for (size_t i = 0; i < st->ntimers; i++) {
        const char *c = strchr(st->timers[i].key, ':');
        if (c != NULL && strcmp(c + 1, step) == 0) return st->timers[i].key;
    }
    return NULL;
}

/*
 * One answer of a script: "<step> <what> [args]" or "! <what> [args]":
 *   a ok {"v":1}            the step's attempt completes with this result
 *   a fail KIND [retry]     it fails with this kind (retryable with "retry")
 *   a sleep MS {"r":1}      a task that says: done, now sleep MS (cbm_step_sleep)
 *   a approval TYPE         a task that asks for an approval (cbm_step_approval)
 *   a fire                  the step's timer fires (sleep, approval, retry, ...)
 *   d grant {"ok":true}     the approval is granted; "d reject why" rejected
 *   f child STATUS {...}    the step's child ends (completed, failed, cancelled)
 *   b ignored               a late result of the step, ignored
 *   ! signal NAME {...}     a signal arrives; "! cancel why"; "! fire KEY"
 */
static bool answer(run_t *r, const char *line)
{
    char who[32], what[32], arg[512] = "", *json;
    eng_event_t ev = {0};
    const st_step_t *s = NULL;
    int n = sscanf(line, "%31s %31s %511[^\n]", who, what, arg);
    if (n < 2) abort();
    ev.step = -1;
    if (strcmp(who, "!") != 0) {
        ev.step = step_of(who);
        s = &r->st.steps[ev.step];
        ev.attempt = s->attempt;
    }
    if (strcmp(what, "ok") == 0) {
        ev.type = EV_STEP_COMPLETED;
        ev.json = json_normalize(arg);
    } else if (strcmp(what, "fail") == 0) {
        char kind[64] = "error", retry[16] = "";
        sscanf(arg, "%63s %15s", kind, retry);
        ev.type = EV_STEP_FAILED;
        json = malloc(256);
        snprintf(json, 256, "{\"kind\":\"%s\",\"message\":\"%s on purpose\",\"retryable\":%s}",
                 kind, kind, strcmp(retry, "retry") == 0 ? "true" : "false");
        ev.json = json;
    } else if (strcmp(what, "sleep") == 0) {
        long long ms = 0;
        int off = 0;
        sscanf(arg, "%lld %n", &ms, &off);
        ev.type = EV_SLEEP_STARTED;
        ev.json = json_normalize(arg + off);
        ev.due_us = r->now + 1000 + ms * 1000;
    } else if (strcmp(what, "approval") == 0) {
        ev.type = EV_APPROVAL_REQUESTED;
        ev.name = sdup(arg);
        ev.json = sdup("{\"doc\":\"x\"}");
        ev.timeout_ms = 60000;
        ev.due_us = r->now + 1000 + 60000000;
    } else if (strcmp(what, "fire") == 0) {
        const char *key = s != NULL ? timer_of(&r->st, who) : arg;
        if (key == NULL) {
            fprintf(stderr, "gen_seeds: %s: step %s has no timer\n", r->name, who);
            failures++;
            return false;
        }
        ev.type = EV_TIMER_FIRED;
        ev.name = sdup(key);
    } else if (strcmp(what, "grant") == 0) {
        ev.type = EV_APPROVAL_GRANTED;
        ev.json = json_normalize(arg);
        ev.who = sdup("ann");
    } else if (strcmp(what, "reject") == 0) {
        ev.type = EV_APPROVAL_REJECTED;
        ev.text = sdup(arg);
        ev.who = sdup("bob");
    } else if (strcmp(what, "child") == 0) {
        char status[32] = "";
        int off = 0;
        sscanf(arg, "%31s %n", status, &off);
        ev.type = EV_CHILD_COMPLETED;
        ev.name = sdup(s->child != NULL ? s->child : "none");
        ev.text = sdup(status);
        ev.json = json_normalize(arg + off);
    } else if (strcmp(what, "ignored") == 0) {
        ev.type = EV_RESULT_IGNORED;
        ev.text = sdup("late result of an attempt that is over");
    } else if (strcmp(what, "signal") == 0) {
        char name[64] = "";
        int off = 0;
        sscanf(arg, "%63s %n", name, &off);
        ev.type = EV_SIGNAL_RECEIVED;
        ev.name = sdup(name);
        ev.json = json_normalize(arg + off);
    } else if (strcmp(what, "cancel") == 0) {
        ev.type = EV_CANCEL_REQUESTED;
        ev.text = sdup(arg);
    } else {
        fprintf(stderr, "gen_seeds: unknown answer '%s'\n", line);
        exit(1);
    }
    return decide(r, &ev);
}

typedef struct script {
    const char *name;
    const char *inputs;
    size_t snap_at;
    const char *answers[24];
} script_t;

static const script_t scripts[] = {
    {"happy", "{\"n\":2,\"s\":\"x\"}", 8,
     {"a ok {\"v\":1}", "b ok {\"x\":1}", "c fire", "! signal go {\"x\":5}",
      "f child completed {\"r\":1}", "g fire"}},
    {"otherwise-approval", "{}", 6,
     {"a ok {\"v\":1}", "b ok {\"x\":0}", "d grant {\"ok\":true}", "e fire"}},
    {"approval-rejected-continue", "{}", 0,
     {"a ok {}", "b ok {\"x\":-1}", "d reject no budget", "! signal go null",
      "f child failed {\"step\":\"k\",\"kind\":\"boom\",\"message\":\"m\"}", "f fire",
      "f child cancelled {\"reason\":\"stop\"}"}},
    {"approval-timeout", "{}", 0, {"a ok {}", "b ok {}", "d fire"}},
    {"retry-policy", "{\"n\":7}", 5,
     {"a fail flaky retry", "a fire", "a fail flaky retry", "a fire", "a fail flaky retry"}},
    {"retry-rule", "{}", 0,
     {"a ok {\"v\":\"again\"}", "a ok {\"v\":\"again\"}", "a ok {\"v\":\"again\"}"}},
    {"continue-on-error", "{}", 0, {"a fail soft", "b ok {\"x\":3}", "c fire", "e fire"}},
    {"fail-on-error", "{}", 0, {"a fail fatal retry"}},
    {"back-to", "{}", 7,
     {"a ok {\"v\":1}", "b ok {\"v\":\"back\"}", "a ok {\"v\":2}", "b ignored",
      "b ok {\"v\":\"back\"}", "a ok {\"v\":3}", "b ok {\"v\":\"back\"}", "a ok {}",
      "b ok {\"v\":\"back\"}"}},
    {"skip-to", "{}", 0,
     {"a ok {}", "b ok {\"v\":\"skip\",\"x\":9}", "f child completed 1", "g fire"}},
    {"fail-on-result", "{}", 0, {"a ok {}", "b ok {\"v\":\"stop\"}"}},
    {"timeouts", "{}", 3, {"a fire", "a fire", "a ok {}", "b fire", "! fire wake"}},
    {"task-sleeps", "{}", 0, {"a sleep 5000 {\"slept\":true}", "a fire", "b approval manager",
                              "b grant {\"x\":2}", "c fire", "e fire"}},
    {"signal-early", "{}", 4, {"! signal go {\"early\":1}", "! signal other 2", "a ok {}",
                               "b ok {\"x\":5}", "c fire", "! cancel enough"}},
    {"deadline", "{}", 0, {"a ok {}", "! fire deadline"}},
    {"cancel", "{}", 0, {"a ok {}", "! cancel user asked"}},
    /* Executions still running, waiting for something. */
    {"running-remote", "{\"s\":\"\\u00e9\"}", 0, {"a ok {\"v\":[1,2,{\"k\":\"w\"}]}"}},
    {"running-backoff", "{}", 0, {"a fail flaky retry"}},
    {"waiting-approval", "{}", 0, {"a ok {}", "b ok {}"}},
    {"waiting-sleep", "{}", 0, {"a ok {}", "b ok {\"x\":2}"}},
    {"waiting-signal", "{}", 0, {"a ok {}", "b ok {\"x\":2}", "c fire"}},
    {"waiting-child", "{}", 0, {"a ok {}", "b ok {\"x\":2}", "c fire", "! signal go 1"}},
    /* The child:<step> timer re-arms itself until the child ends. */
    {"child-timer", "{}", 0,
     {"a ok {}", "b ok {\"x\":2}", "c fire", "! signal go 1", "f fire", "f fire",
      "f child completed {\"r\":2}"}},
    /* An execution that is itself the child of a subworkflow step ("child-of"
     * names it: its ExecutionStarted has a parent). */
    {"child-of-parent", "{\"n\":4}", 0, {"a ok {}", "b ok {\"x\":1}"}},
};

static void history_seeds(void)
{
    const bp_blueprint_t *bp = fz_blueprint();
    for (size_t i = 0; i < sizeof(scripts) / sizeof(*scripts); i++) {
        const script_t *sc = &scripts[i];
        run_t r = {.name = sc->name, .now = FZ_T0_US, .snap_at = sc->snap_at};
        eng_event_t ev = {0};
        char file[128];
        if (st_init(&r.st, FZ_EXECUTION_ID, bp) != 0) abort();
        ev.type = EV_EXECUTION_STARTED;
        ev.step = -1;
        ev.blueprint = sdup(bp->name);
        ev.version = sdup(bp->version);
        ev.json = sdup(sc->inputs);
        if (strncmp(sc->name, "child-of", 8) == 0) {
            ev.name = sdup("00000000-0000-4000-8000-0000000000aa");
            ev.text = sdup("sub");
            ev.attempt = 2;
        }
        if (decide(&r, &ev))
            for (size_t k = 0; sc->answers[k] != NULL && !st_terminal(&r.st); k++)
                if (!answer(&r, sc->answers[k])) break;
        snprintf(file, sizeof(file), "%s", sc->name);
        put("history", file, r.hist.s, r.hist.n);
        write_snapshot(&r);
        if (r.snap != NULL) {
            sb_t h = {0};
            sb_add(&h, "Snapshot %s\n%s", r.snap, r.after.s != NULL ? r.after.s : "");
            snprintf(file, sizeof(file), "%s-from-snapshot", sc->name);
            put("history", file, h.s, h.n);
            free(h.s);
        }
        free(r.snap);
        free(r.after.s);
        free(r.hist.s);
        st_finish(&r.st);
    }
}

/* ---- requests -------------------------------------------------------------------- */

static void put_request(rpc_method_t m, const char *name, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n + 1);
    char file[128];
    if (buf == NULL) abort();
    buf[0] = (uint8_t)m;
    protobuf_c_message_pack(msg, buf + 1);
    snprintf(file, sizeof(file), "%02d-%s", (int)m, name);
    put("proto", file, buf, n + 1);
    free(buf);
}

#define TASK_ID "7:" FZ_EXECUTION_ID ":1:b"

static void proto_seeds(void)
{
    char *queues[] = {"q", "gpu"}, *tids[] = {TASK_ID, "8:x:1:a"};
    {
        Cerebelum__V1__RegisterWorkerRequest__CapabilitiesEntry e1 =
            CEREBELUM__V1__REGISTER_WORKER_REQUEST__CAPABILITIES_ENTRY__INIT;
        Cerebelum__V1__RegisterWorkerRequest__CapabilitiesEntry e2 =
            CEREBELUM__V1__REGISTER_WORKER_REQUEST__CAPABILITIES_ENTRY__INIT;
        Cerebelum__V1__RegisterWorkerRequest__CapabilitiesEntry *caps[] = {&e1, &e2};
        Cerebelum__V1__RegisterWorkerRequest r = CEREBELUM__V1__REGISTER_WORKER_REQUEST__INIT;
        e1.key = "gpu", e1.value = "1", e2.key = "arch", e2.value = "sm90";
        r.worker_id = "w-1", r.queues = queues, r.n_queues = 2;
        r.capabilities = caps, r.n_capabilities = 2, r.max_concurrency = 4;
        r.sdk_version = "cerebelum-c/0.1.0";
        put_request(RPC_REGISTER_WORKER, "register", &r.base);
    }
    {
        Cerebelum__V1__PollTaskRequest r = CEREBELUM__V1__POLL_TASK_REQUEST__INIT;
        r.worker_id = "w-1", r.queues = queues, r.n_queues = 1, r.wait_ms = 1000;
        put_request(RPC_POLL_TASK, "poll", &r.base);
    }
    {
        Cerebelum__V1__HeartbeatRequest r = CEREBELUM__V1__HEARTBEAT_REQUEST__INIT;
        r.worker_id = "w-1", r.task_ids = tids, r.n_task_ids = 2;
        put_request(RPC_HEARTBEAT, "heartbeat", &r.base);
    }
    {
        static const char *const results[] = {"{\"x\":1}", "{\"v\":\"back\"}", "{\"v\":\"skip\"}",
                                              "{\"v\":\"stop\",\"x\":[1,{\"y\":null}]}", ""};
        Cerebelum__V1__SubmitResultRequest r = CEREBELUM__V1__SUBMIT_RESULT_REQUEST__INIT;
        Cerebelum__V1__TaskError e = CEREBELUM__V1__TASK_ERROR__INIT;
        Cerebelum__V1__SleepRequest s = CEREBELUM__V1__SLEEP_REQUEST__INIT;
        Cerebelum__V1__ApprovalRequest a = CEREBELUM__V1__APPROVAL_REQUEST__INIT;
        char name[32];
        r.worker_id = "w-1", r.task_id = TASK_ID, r.attempt = 1;
        r.status = CEREBELUM__V1__TASK_STATUS__SUCCESS;
        for (size_t i = 0; i < sizeof(results) / sizeof(*results); i++) {
            r.result_json = (char *)results[i];
            snprintf(name, sizeof(name), "submit-ok-%zu", i);
            put_request(RPC_SUBMIT_RESULT, name, &r.base);
        }
        r.result_json = "";
        r.status = CEREBELUM__V1__TASK_STATUS__FAILED;
        e.kind = "soft", e.message = "it broke", e.retryable = true, e.details_json = "{\"t\":1}";
        r.error = &e;
        put_request(RPC_SUBMIT_RESULT, "submit-failed", &r.base);
        r.error = NULL;
        r.status = CEREBELUM__V1__TASK_STATUS__SLEEP;
        s.duration_ms = 5000, s.data_json = "{\"later\":true}";
        r.sleep = &s;
        put_request(RPC_SUBMIT_RESULT, "submit-sleep", &r.base);
        r.sleep = NULL;
        r.status = CEREBELUM__V1__TASK_STATUS__APPROVAL;
        a.type = "manager", a.data_json = "{\"doc\":1}", a.timeout_ms = 60000;
        r.approval = &a;
        put_request(RPC_SUBMIT_RESULT, "submit-approval", &r.base);
    }
    {
        Cerebelum__V1__UnregisterWorkerRequest r = CEREBELUM__V1__UNREGISTER_WORKER_REQUEST__INIT;
        r.worker_id = "w-1", r.reason = "draining";
        put_request(RPC_UNREGISTER_WORKER, "unregister", &r.base);
    }
    {
        Cerebelum__V1__RegisterBlueprintRequest r =
            CEREBELUM__V1__REGISTER_BLUEPRINT_REQUEST__INIT;
        r.blueprint_json = (char *)fz_blueprint_json;
        put_request(RPC_REGISTER_BLUEPRINT, "register-blueprint", &r.base);
    }
    {
        Cerebelum__V1__StartExecutionRequest r = CEREBELUM__V1__START_EXECUTION_REQUEST__INIT;
        r.blueprint = "fz", r.inputs_json = "{\"n\":3,\"s\":\"hi\"}", r.idempotency_key = "k-1";
        put_request(RPC_START_EXECUTION, "start", &r.base);
        r.version = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        r.inputs_json = "{\"n\":1.5}";
        put_request(RPC_START_EXECUTION, "start-version", &r.base);
    }
    {
        Cerebelum__V1__GetExecutionRequest r = CEREBELUM__V1__GET_EXECUTION_REQUEST__INIT;
        r.execution_id = FZ_EXECUTION_ID;
        put_request(RPC_GET_EXECUTION, "get", &r.base);
    }
    {
        Cerebelum__V1__ListExecutionsRequest r = CEREBELUM__V1__LIST_EXECUTIONS_REQUEST__INIT;
        r.status = CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_RUNNING;
        r.blueprint = "fz", r.after = FZ_EXECUTION_ID, r.limit = 10;
        put_request(RPC_LIST_EXECUTIONS, "list", &r.base);
    }
    {
        Cerebelum__V1__GetHistoryRequest r = CEREBELUM__V1__GET_HISTORY_REQUEST__INIT;
        r.execution_id = FZ_EXECUTION_ID, r.after_seq = 3, r.limit = 100;
        put_request(RPC_GET_HISTORY, "history", &r.base);
    }
    {
        Cerebelum__V1__ApproveRequest r = CEREBELUM__V1__APPROVE_REQUEST__INIT;
        r.execution_id = FZ_EXECUTION_ID, r.step = "d", r.data_json = "{\"ok\":true}";
        r.actor = "ann";
        put_request(RPC_APPROVE, "approve", &r.base);
    }
    {
        Cerebelum__V1__RejectRequest r = CEREBELUM__V1__REJECT_REQUEST__INIT;
        r.execution_id = FZ_EXECUTION_ID, r.step = "d", r.reason = "no", r.actor = "bob";
        put_request(RPC_REJECT, "reject", &r.base);
    }
    {
        Cerebelum__V1__SignalRequest r = CEREBELUM__V1__SIGNAL_REQUEST__INIT;
        r.execution_id = FZ_EXECUTION_ID, r.name = "go", r.data_json = "[1,2]";
        put_request(RPC_SIGNAL, "signal", &r.base);
    }
    {
        Cerebelum__V1__CancelRequest r = CEREBELUM__V1__CANCEL_REQUEST__INIT;
        r.execution_id = FZ_EXECUTION_ID, r.reason = "enough";
        put_request(RPC_CANCEL, "cancel", &r.base);
    }
    {
        Cerebelum__V1__ListWorkersRequest r = CEREBELUM__V1__LIST_WORKERS_REQUEST__INIT;
        r.queue = "gpu";
        put_request(RPC_LIST_WORKERS, "list-workers", &r.base);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: gen_seeds <repository root> <output dir>\n");
        return 2;
    }
    out_root = argv[2];
    if (mkdir(out_root, 0755) != 0 && errno != EEXIST) {
        perror(out_root);
        return 1;
    }
    scenario_seeds(argv[1]);
    blueprint_seeds(argv[1]);
    history_seeds();
    proto_seeds();
    if (failures > 0) fprintf(stderr, "gen_seeds: %d script steps did not apply\n", failures);
    return failures > 0;
}
