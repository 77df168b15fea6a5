/*
 * log.c - leveled logging to stderr, filtered by CEREBELUM_LOG, in one of
 * two formats: the human line (default) or, with cbm_log_set_json() or
 * CEREBELUM_LOG_FORMAT=json (`cerebelum serve --log-format json`), one JSON
 * object per line: time (UTC, RFC 3339 with milliseconds), level,
 * component, execution, step, message.
 *
 * Call sites mostly say which component they are in by the message's first
 * word ("server: ...", "store: ..."): in JSON that word becomes the
 * component (else "engine", where most lines come from) and is cut from the
 * message. An execution is recognised where the message names one as
 * "execution <uuid>"; cbm_log_write() takes all fields explicitly. Either
 * way a line is one fprintf, so lines stay whole across threads.
 */
#include "cbm_internal.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int log_level = -1;
static int log_json = -1;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

static int level_from_env(void)
{
    const char *s = getenv("CEREBELUM_LOG");
    if (s == NULL) return CBM_LOG_WARN;
    if (strcmp(s, "error") == 0) return CBM_LOG_ERROR;
    if (strcmp(s, "info") == 0) return CBM_LOG_INFO;
    if (strcmp(s, "debug") == 0) return CBM_LOG_DEBUG;
    return CBM_LOG_WARN;
}

static bool json_on(void)
{
    /* A benign race: every thread computes the same value. */
    if (log_json < 0) {
        const char *f = getenv("CEREBELUM_LOG_FORMAT");
        log_json = f != NULL && strcmp(f, "json") == 0;
    }
    return log_json == 1;
}

void cbm_log_set_json(bool on)
{
    log_json = on ? 1 : 0;
}

bool cbm_log_is_json(void)
{
    return json_on();
}

/* s as a JSON string (quoted) into out, cut to fit; s must be UTF-8. */
static size_t json_str(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    if (cap < 3) return 0;
    if (s == NULL) {
        snprintf(out, cap, "null");
        return strlen(out);
    }
    out[n++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && n + 8 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            out[n++] = '\\';
            out[n++] = (char)*p;
        } else if (*p == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else if (*p < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", *p);
        } else {
            out[n++] = (char)*p;
        }
    }
    out[n++] = '"';
    out[n] = '\0';
    return n;
}

void cbm_log_write(int level, const char *component, const char *execution, const char *step,
                   const char *message)
{
    struct timespec ts;
    struct tm tm;

    if (level < CBM_LOG_ERROR || level > CBM_LOG_DEBUG) level = CBM_LOG_ERROR;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    if (json_on()) {
        char msg[1400], comp[80], ex[80], st[300], text[1024];
        snprintf(text, sizeof(text), "%s", message != NULL ? message : "");
        cbm_text_fix_inplace(text);
        json_str(msg, sizeof(msg), text);
        json_str(comp, sizeof(comp), component != NULL ? component : "engine");
        json_str(ex, sizeof(ex), execution);
        if (step != NULL) {
            snprintf(text, sizeof(text), "%s", step);
            cbm_text_fix_inplace(text);
        }
        json_str(st, sizeof(st), step != NULL ? text : NULL);
        fprintf(stderr,
                "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\","
                "\"component\":%s,\"execution\":%s,\"step\":%s,\"message\":%s}\n",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                ts.tv_nsec / 1000000, level_names[level], comp, ex, st, msg);
        return;
    }
    fprintf(stderr, "%02d:%02d:%02d.%03ld cerebelum %s: %s%s%s\n", tm.tm_hour, tm.tm_min,
            tm.tm_sec, ts.tv_nsec / 1000000, level_names[level],
            component != NULL ? component : "", component != NULL ? ": " : "",
            message != NULL ? message : "");
}

/* "execution <uuid>" in msg: the uuid into out. */
static bool find_execution(const char *msg, char out[37])
{
    for (const char *p = strstr(msg, "execution "); p != NULL; p = strstr(p + 1, "execution ")) {
        const char *u = p + 10;
        size_t i = 0;
        for (; i < 36 && u[i] != '\0'; i++) {
            bool dash = i == 8 || i == 13 || i == 18 || i == 23;
            if (dash ? u[i] != '-' : !isxdigit((unsigned char)u[i])) break;
        }
        if (i == 36) {
            memcpy(out, u, 36);
            out[36] = '\0';
            return true;
        }
    }
    return false;
}

void cbm_log(int level, const char *fmt, ...)
{
    char buf[1024], comp[32], ex[37];
    const char *msg = buf, *component = NULL;
    va_list ap;
    size_t w = 0;

    if (log_level < 0) log_level = level_from_env();
    if (level > log_level) return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (!json_on()) {
        cbm_log_write(level, NULL, NULL, NULL, buf);
        return;
    }
    /* "server: ..." -> component "server" */
    while (w < sizeof(comp) - 1 && (islower((unsigned char)buf[w]) || buf[w] == '_')) w++;
    if (w > 0 && buf[w] == ':' && buf[w + 1] == ' ') {
        memcpy(comp, buf, w);
        comp[w] = '\0';
        component = comp;
        msg = buf + w + 2;
    }
    cbm_log_write(level, component, find_execution(msg, ex) ? ex : NULL, NULL, msg);
}

char *cbm_strdup(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}
