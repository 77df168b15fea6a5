/*
 * http_console.c - serves the embedded console files (http_console.h).
 *
 * The bytes are static (console_files.c), so the response points at them
 * (MHD_RESPMEM_PERSISTENT) and copies nothing. Every file carries a strong
 * ETag and "Cache-Control: no-cache": a browser revalidates each time and
 * gets a 304 while the build is the same, so an upgraded server never
 * serves a stale app.js beside a new index.html. The Content-Security-Policy
 * allows only this origin's scripts, styles and connections: the page loads
 * nothing from elsewhere and runs no inline script, so an injected payload
 * (step results are user data) cannot execute.
 */
#include "http_console.h"

#include <string.h>

#include "console_files.h"

#define CSP "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " \
            "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

bool http_console(struct MHD_Connection *c, const char *url, const char *method,
                  enum MHD_Result *ret)
{
    const console_file_t *f;
    const char *inm;
    struct MHD_Response *r;
    unsigned status = MHD_HTTP_OK;

    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) return false;
    if ((f = console_find(url)) == NULL) return false;
    inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (inm != NULL && strstr(inm, f->etag) != NULL) {
        status = MHD_HTTP_NOT_MODIFIED;
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    } else {
        r = MHD_create_response_from_buffer(f->size, (void *)f->data, MHD_RESPMEM_PERSISTENT);
    }
    if (r == NULL) {
        *ret = MHD_NO;
        return true;
    }
    if (status == MHD_HTTP_OK) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, f->content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, f->etag);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "Content-Security-Policy", CSP);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    *ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return true;
}
