/* log.c - minimal leveled logging to stderr, configured by CEREBELUM_LOG. */
#include "cbm_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int log_level = -1;

static int level_from_env(void)
{
    const char *s = getenv("CEREBELUM_LOG");
    if (s == NULL) return CBM_LOG_WARN;
    if (strcmp(s, "error") == 0) return CBM_LOG_ERROR;
    if (strcmp(s, "info") == 0) return CBM_LOG_INFO;
    if (strcmp(s, "debug") == 0) return CBM_LOG_DEBUG;
    return CBM_LOG_WARN;
}

void cbm_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    char buf[1024];
    va_list ap;
    struct timespec ts;
    struct tm tm;

    /* A benign race: every thread computes the same value. */
    if (log_level < 0) log_level = level_from_env();
    if (level > log_level) return;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    /* One fprintf per line keeps lines whole across threads. */
    fprintf(stderr, "%02d:%02d:%02d.%03ld cerebelum %s: %s\n", tm.tm_hour, tm.tm_min,
            tm.tm_sec, ts.tv_nsec / 1000000, names[level], buf);
}

char *cbm_strdup(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}
