/* error.c - cbm_strerror() and the internal helper that fills cbm_error_t. */
#include "cbm_internal.h"

#include <stdarg.h>
#include <stdio.h>

const char *cbm_strerror(int code)
{
    switch (code) {
#define XX(name, val, msg) case CBM_##name: return msg;
        CBM_ERRNO_MAP(XX)
#undef XX
    case 0: return "success";
    default: return "unknown error";
    }
}

const char *cbm_err_name(int code)
{
    switch (code) {
#define XX(name, val, msg) case CBM_##name: return "CBM_" #name;
        CBM_ERRNO_MAP(XX)
#undef XX
    case 0: return "CBM_OK";
    default: return "CBM_EUNKNOWN";
    }
}

int cbm_error_set(cbm_error_t *err, int code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        /* A message may quote what it refuses, or be cut mid-character:
         * it is shown to clients and may be recorded in a history. */
        cbm_text_fix_inplace(err->message);
    }
    return code;
}

void cbm_error_clear(cbm_error_t *err)
{
    if (err != NULL) {
        err->code = 0;
        err->message[0] = '\0';
    }
}
