/*
 * http_none.c - the HTTP side (http.h) in a build without libmicrohttpd
 * (meson option `http`, Debian libmicrohttpd-dev): nothing listens, and
 * asking for it says why.
 */
#include "http.h"

#include "cbm_internal.h"

bool http_available(void)
{
    return false;
}

int http_start(const http_opts_t *o, http_srv_t **out, cbm_error_t *err)
{
    (void)o;
    *out = NULL;
    return cbm_error_set(err, CBM_EINVAL,
                         "this cerebelum was built without HTTP (libmicrohttpd-dev)");
}

const char *http_address(const http_srv_t *h)
{
    (void)h;
    return NULL;
}

void http_stop(http_srv_t *h)
{
    (void)h;
}
