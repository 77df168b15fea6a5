/* fuzz_common.c - see fuzz_common.h. */
#include "fuzz_common.h"

#include <string.h>

const char fz_blueprint_json[] =
    "{\"name\": \"fz\", \"timeout_ms\": 3600000,\n"
    " \"inputs\": {\"n\": {\"type\": \"integer\", \"default\": 1}, \"s\": {\"type\": "
    "\"string\"}},\n"
    " \"steps\": [\n"
    "  {\"name\": \"a\", \"timeout_ms\": 1000,\n"
    "   \"retry\": {\"max_attempts\": 3, \"initial_ms\": 10, \"max_ms\": 100,\n"
    "             \"non_retryable\": [\"fatal\"]},\n"
    "   \"diverge\": [{\"match\": {\"v\": \"again\"}, \"action\": \"retry\", \"max_iterations\": "
    "2},\n"
    "               {\"match\": {\"kind\": \"soft\"}, \"on\": \"error\", \"action\": "
    "\"continue\"},\n"
    "               {\"match\": {\"kind\": \"fatal\"}, \"on\": \"error\", \"action\": "
    "\"fail\"}]},\n"
    "  {\"name\": \"b\", \"depends_on\": [\"a\"], \"queue\": \"q\", \"requires\": {\"gpu\": "
    "\"1\"},\n"
    "   \"timeout_ms\": 1000, \"heartbeat_timeout_ms\": 500,\n"
    "   \"diverge\": [{\"match\": {\"v\": \"back\"}, \"action\": \"back_to\", \"target\": \"a\",\n"
    "                \"max_iterations\": 3},\n"
    "               {\"match\": {\"v\": \"skip\"}, \"action\": \"skip_to\", \"target\": \"f\"},\n"
    "               {\"match\": {\"v\": \"stop\"}, \"action\": \"fail\"}],\n"
    "   \"branch\": [{\"when\": {\"path\": \"x\", \"op\": \">=\", \"value\": 1}, \"to\": \"c\"},\n"
    "              {\"otherwise\": \"d\"}]},\n"
    "  {\"name\": \"c\", \"kind\": \"sleep\", \"depends_on\": [\"b\"], \"duration_ms\": 1000},\n"
    "  {\"name\": \"d\", \"kind\": \"approval\", \"depends_on\": [\"b\"], \"timeout_ms\": 5000,\n"
    "   \"diverge\": [{\"match\": {\"kind\": \"approval_rejected\"}, \"on\": \"error\",\n"
    "                \"action\": \"continue\"}]},\n"
    "  {\"name\": \"e\", \"kind\": \"signal\", \"signal\": \"go\", \"depends_on\": [\"c\", "
    "\"d\"],\n"
    "   \"timeout_ms\": 5000},\n"
    "  {\"name\": \"f\", \"kind\": \"subworkflow\", \"depends_on\": [\"e\"], \"blueprint\": "
    "\"child\",\n"
    "   \"inputs\": {\"x\": \"$.deps.e.x\", \"n\": \"$.inputs.n\"}, \"retry\": {\"max_attempts\": "
    "2}},\n"
    "  {\"name\": \"g\", \"kind\": \"sleep\", \"depends_on\": [\"f\"], \"until\": "
    "\"2026-01-01T00:00:01Z\"}\n"
    " ]}\n";

char *fz_text(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL) return NULL;
    if (size > 0) memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

size_t fz_split(char *text, const char *sep, char **parts, size_t max)
{
    size_t n = 0, seplen = strlen(sep);
    char *p = text;
    while (n + 1 < max) {
        char *q = strstr(p, sep);
        if (q == NULL) break;
        *q = '\0';
        parts[n++] = p;
        p = q + seplen;
    }
    parts[n++] = p;
    return n;
}

const bp_blueprint_t *fz_blueprint(void)
{
    static bp_blueprint_t *bp;
    if (bp == NULL) {
        cbm_error_t err = {0};
        if (bp_parse_json(fz_blueprint_json, strlen(fz_blueprint_json), &bp, &err) != 0) {
            fprintf(stderr, "fuzz_common: the fixed blueprint does not parse: %s\n", err.message);
            abort();
        }
    }
    return bp;
}

char *fz_state_json(const st_exec_t *st)
{
    char *s = st_to_json(st);
    if (s == NULL) {
        fprintf(stderr, "fuzz_common: st_to_json: out of memory\n");
        abort();
    }
    return s;
}
