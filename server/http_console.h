/*
 * http_console.h - the HTTP server's hook for the web console's static
 * files (console_files.h, docs/console.md). Private to server/; built only
 * with libmicrohttpd, like http.c.
 *
 * http.c's dispatch calls http_console() for a path that is not /api/...,
 * /metrics, /healthz or /readyz before it answers 404. The files need no
 * token: they hold no data, only the page, which asks for the token when
 * the API answers 401.
 */
#ifndef CBM_SERVER_HTTP_CONSOLE_H
#define CBM_SERVER_HTTP_CONSOLE_H

#include <microhttpd.h>
#include <stdbool.h>

/* On a libmicrohttpd connection thread. When @p url (without the query) is
 * a console file and @p method is GET or HEAD, queue its response (200, or
 * 304 when If-None-Match holds its ETag) into *ret and return true;
 * otherwise return false and queue nothing. */
bool http_console(struct MHD_Connection *c, const char *url, const char *method,
                  enum MHD_Result *ret);

#endif
