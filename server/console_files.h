/*
 * console_files.h - the web console's static files (server/console/,
 * docs/console.md), embedded into the library at build time by
 * server/embed_console.py, so `cerebelum serve --http` needs no files on
 * disk and no Node build step.
 *
 * Private to server/. Pure data and one lookup: no allocation, no I/O, any
 * thread. The HTTP server (http.c) asks console_find() for every GET that
 * is not an API, metrics or health path and serves what it finds;
 * http_console.c does that for it.
 */
#ifndef CBM_SERVER_CONSOLE_FILES_H
#define CBM_SERVER_CONSOLE_FILES_H

#include <stddef.h>

/* One embedded file. Everything is static storage; nothing to free. */
typedef struct console_file {
    const char *path;          /* "/console/app.js" */
    const char *content_type;  /* "text/javascript; charset=utf-8" */
    const char *etag;          /* "\"<16 hex digits of SHA-256>\"", quotes included */
    size_t size;
    const unsigned char *data; /* size bytes, not NUL-terminated */
} console_file_t;

/* Generated (console_files.c), sorted by path. */
extern const console_file_t console_files[];
extern const size_t console_files_count;

/* The file for a URL path (without its query), or NULL. "/", "/console"
 * and "/console/" are the page (index.html); "/console/<name>" is that
 * file. Anything else, "..", "//" and encoded forms included, is NULL:
 * the names are compared whole, never resolved. */
const console_file_t *console_find(const char *path);

#endif
