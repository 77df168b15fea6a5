/*
 * bp_time.c - RFC 3339 times: bp_parse_time, bp_format_time.
 */
#include <assert.h>
#include <cJSON.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/blueprint_internal.h"
#include "engine/match.h"

/* ------------------------------------------------------------------------ */
/* RFC 3339 times                                                           */
/* ------------------------------------------------------------------------ */

#define US_PER_S INT64_C(1000000)
/* 9999-12-31T23:59:59.999999Z, the last time with a four-digit year. */
#define TIME_MAX_US (INT64_C(253402300799) * US_PER_S + 999999)

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int64_t y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* Exactly n decimal digits at *s; advances *s. */
static bool take_digits(const char **s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*s)[i];
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    *s += n;
    *out = v;
    return true;
}

static bool take_char(const char **s, char a, char b)
{
    if (**s != a && **s != b) return false;
    (*s)++;
    return true;
}

int bp_parse_time(const char *text, int64_t *us_out, const char **why)
{
    const char *s = text, *reason = NULL;
    int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
    int64_t frac = 0, us;

    if (why != NULL) *why = NULL;
    if (text == NULL || us_out == NULL) {
        reason = "no time given";
        goto bad;
    }
    if (!take_digits(&s, 4, &y) || !take_char(&s, '-', '-') || !take_digits(&s, 2, &mo) ||
        !take_char(&s, '-', '-') || !take_digits(&s, 2, &d) || !take_char(&s, 'T', 't') ||
        !take_digits(&s, 2, &h) || !take_char(&s, ':', ':') || !take_digits(&s, 2, &mi) ||
        !take_char(&s, ':', ':') || !take_digits(&s, 2, &sec))
        goto syntax;
    if (*s == '.') {
        int scale = 100000, n = 0;
        for (s++; *s >= '0' && *s <= '9'; s++, n++) {
            frac += (*s - '0') * scale;
            scale /= 10;
        }
        if (n == 0) goto syntax;
    }
    if (take_char(&s, 'Z', 'z')) {
        sign = 0;
    } else if (*s == '+' || *s == '-') {
        sign = *s++ == '+' ? 1 : -1;
        if (!take_digits(&s, 2, &oh) || !take_char(&s, ':', ':') || !take_digits(&s, 2, &om))
            goto syntax;
    } else {
        goto syntax;
    }
    if (*s != '\0') goto syntax;

    if (mo < 1 || mo > 12) reason = "month out of range";
    else if (d < 1 || d > days_in_month(y, mo)) reason = "day out of range for the month";
    else if (h > 23) reason = "hour out of range";
    else if (mi > 59) reason = "minute out of range";
    else if (sec > 59) reason = "second out of range (leap seconds are not supported)";
    else if (oh > 23 || om > 59) reason = "offset out of range";
    if (reason != NULL) goto bad;

    us = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) -
          (int64_t)sign * (oh * 3600 + om * 60)) *
             US_PER_S +
         frac;
    if (us < 0) {
        reason = "before 1970-01-01T00:00:00Z";
        goto bad;
    }
    if (us > TIME_MAX_US) {
        reason = "after 9999-12-31T23:59:59Z";
        goto bad;
    }
    *us_out = us;
    return 0;
syntax:
    reason = "expected YYYY-MM-DDTHH:MM:SS[.fraction] and Z or an offset +HH:MM / -HH:MM";
bad:
    if (why != NULL) *why = reason;
    return CBM_EINVAL;
}

void bp_format_time(int64_t us, char buf[32])
{
    int64_t secs = us / US_PER_S, days = secs / 86400, y;
    int64_t rem = secs % 86400, frac = us % US_PER_S;
    int m, d, n;

    if (us < 0) {
        snprintf(buf, 32, "invalid");
        return;
    }
    civil_from_days(days, &y, &m, &d);
    n = snprintf(buf, 32, "%04" PRId64 "-%02d-%02dT%02d:%02d:%02d", y, m, d, (int)(rem / 3600),
                 (int)(rem / 60 % 60), (int)(rem % 60));
    if (frac > 0 && n > 0 && n < 24) {
        char f[8];
        int len = 6;
        snprintf(f, sizeof(f), "%06" PRId64, frac);
        while (len > 0 && f[len - 1] == '0') len--;
        n += snprintf(buf + n, (size_t)(32 - n), ".%.*s", len, f);
    }
    if (n > 0 && n < 31) snprintf(buf + n, (size_t)(32 - n), "Z");
}

