/*
 * test_console_files.c - the embedded web console (server/console_files.h):
 * every file of server/console/ is in the table with its type, "/" and
 * "/console/" are the page, and nothing that is not a file's exact name
 * (traversal, doubled slashes, encodings, other prefixes) finds anything.
 * The bytes are compared with the files on disk (CONSOLE_DIR, the source
 * folder), so a generator that mangles a byte fails here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/console_files.h"

static const char *dir;

static void same_as_disk(const char *name, const char *type)
{
    char path[4096], url[256];
    const console_file_t *f;
    FILE *fp;
    long n;
    unsigned char *buf;

    snprintf(url, sizeof(url), "/console/%s", name);
    f = console_find(url);
    assert_non_null(f);
    assert_string_equal(f->path, url);
    assert_string_equal(f->content_type, type);
    assert_int_equal(strlen(f->etag), 18);
    assert_int_equal(f->etag[0], '"');
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    n = ftell(fp);
    rewind(fp);
    assert_int_equal((size_t)n, f->size);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    assert_memory_equal(buf, f->data, (size_t)n);
    free(buf);
}

static void files_are_embedded(void **st)
{
    (void)st;
    same_as_disk("index.html", "text/html; charset=utf-8");
    same_as_disk("app.js", "text/javascript; charset=utf-8");
    same_as_disk("style.css", "text/css; charset=utf-8");
    assert_int_equal(console_files_count, 3);
    for (size_t i = 1; i < console_files_count; i++)
        assert_true(strcmp(console_files[i - 1].path, console_files[i].path) < 0);
}

static void the_page_is_the_root(void **st)
{
    const console_file_t *index = console_find("/console/index.html");
    (void)st;
    assert_non_null(index);
    assert_ptr_equal(console_find("/"), index);
    assert_ptr_equal(console_find("/console"), index);
    assert_ptr_equal(console_find("/console/"), index);
    /* The page loads its script and style from here, not from elsewhere. */
    assert_non_null(memmem(index->data, index->size, "src=\"/console/app.js\"", 21));
    assert_non_null(memmem(index->data, index->size, "href=\"/console/style.css\"", 25));
    assert_null(memmem(index->data, index->size, "http://", 7));
    assert_null(memmem(index->data, index->size, "https://", 8));
}

static void nothing_else_is_found(void **st)
{
    static const char *const no[] = {
        "", "//", "/index.html", "/app.js", "/console//app.js", "/console/../console/app.js",
        "/console/./app.js", "/console/app.js/", "/console/APP.JS", "/console/app%2ejs",
        "/console/app.j", "/console/app.jsx", "/console/nope", "/api/v1/console/app.js",
        "console/app.js", "/consoleapp.js",
    };
    (void)st;
    assert_null(console_find(NULL));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        if (console_find(no[i]) != NULL) fail_msg("console_find(\"%s\") found a file", no[i]);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(files_are_embedded),
        cmocka_unit_test(the_page_is_the_root),
        cmocka_unit_test(nothing_else_is_found),
    };
    if (argc < 2) {
        fprintf(stderr, "usage: %s CONSOLE_DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
