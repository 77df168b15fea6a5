/*
 * console_files.c - console_find() over the generated table (see
 * console_files.h). The table is sorted by path by the generator; a
 * bisection keeps the lookup independent of how many files there are,
 * though there are only a handful.
 */
#include "console_files.h"

#include <string.h>

const console_file_t *console_find(const char *path)
{
    size_t lo = 0, hi = console_files_count;

    if (path == NULL) return NULL;
    if (strcmp(path, "/") == 0 || strcmp(path, "/console") == 0 || strcmp(path, "/console/") == 0)
        path = "/console/index.html";
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(path, console_files[mid].path);
        if (c == 0) return &console_files[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}
