/* pgembed.c - see pgembed.h. */
#include "pgembed.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <pwd.h>

#include "cbm_internal.h"

extern char **environ;

struct pgembed {
    char dir[PATH_MAX];
    char data[PATH_MAX + 16];
    char bin[PATH_MAX];
    int owned;            /* we started it, so we stop it */
    int as_postgres;      /* running as root: run server tools as postgres */
};

static int find_bindir(char *out, size_t size)
{
    const char *env = getenv("CEREBELUM_PGBIN");
    glob_t g;
    int found = 0;

    if (env != NULL && *env != '\0') {
        snprintf(out, size, "%s", env);
        return 0;
    }
    if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) == 0 && g.gl_pathc > 0) {
        /* glob sorts; take the highest version (lexical is fine for 1x). */
        snprintf(out, size, "%s", g.gl_pathv[g.gl_pathc - 1]);
        *strrchr(out, '/') = '\0';
        found = 1;
    }
    globfree(&g);
    return found ? 0 : -1;
}

/* Run argv (with runuser -u postgres when as_postgres); return exit status. */
static int run(pgembed_t *pg, const char *const *argv, const char *log_path)
{
    const char *full[24];
    size_t n = 0;
    pid_t pid;
    int status = 0;
    posix_spawn_file_actions_t fa;

    if (pg->as_postgres) {
        full[n++] = "runuser";
        full[n++] = "-u";
        full[n++] = "postgres";
        full[n++] = "--";
    }
    for (size_t i = 0; argv[i] != NULL && n < 23; i++) full[n++] = argv[i];
    full[n] = NULL;
    posix_spawn_file_actions_init(&fa);
    if (log_path != NULL) {
        posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
    }
    if (posix_spawnp(&pid, full[0], &fa, NULL, (char *const *)full, environ) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return -1;
    }
    posix_spawn_file_actions_destroy(&fa);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int give_to_postgres(const char *path)
{
    struct passwd *pw = getpwnam("postgres");
    if (pw == NULL) return -1;
    return chown(path, pw->pw_uid, pw->pw_gid);
}

int pgembed_start(const char *state_dir, pgembed_t **out, char **url_out, cbm_error_t *err)
{
    pgembed_t *pg = calloc(1, sizeof(*pg));
    char version_file[PATH_MAX + 32], tool[PATH_MAX + 16], log_path[PATH_MAX + 32];
    char initdb_log[PATH_MAX + 32];
    char opts[PATH_MAX + 128];
    struct stat st;
    int rc;

    if (pg == NULL) return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    if (mkdir(state_dir, 0700) != 0 && errno != EEXIST) {
        rc = cbm_error_set(err, CBM_EIO, "cannot create state directory %s: %s", state_dir,
                           strerror(errno));
        goto fail;
    }
    if (realpath(state_dir, pg->dir) == NULL) {
        rc = cbm_error_set(err, CBM_EIO, "state directory %s: %s", state_dir, strerror(errno));
        goto fail;
    }
    if (strlen(pg->dir) > 90) {
        /* The socket path (dir/.s.PGSQL.5432) must fit in sun_path (108). */
        rc = cbm_error_set(err, CBM_EINVAL, "state directory path too long for a socket: %s",
                           pg->dir);
        goto fail;
    }
    if (find_bindir(pg->bin, sizeof(pg->bin)) != 0) {
        rc = cbm_error_set(err, CBM_EUNAVAIL,
                           "no PostgreSQL server found (apt-get install postgresql, or set "
                           "CEREBELUM_DATABASE_URL)");
        goto fail;
    }
    pg->as_postgres = geteuid() == 0;
    if (pg->as_postgres) {
        /* initdb and postgres refuse to run as root. */
        chmod(pg->dir, 0700);
        give_to_postgres(pg->dir);
    }
    snprintf(pg->data, sizeof(pg->data), "%s/pgdata", pg->dir);
    snprintf(version_file, sizeof(version_file), "%s/PG_VERSION", pg->data);
    snprintf(log_path, sizeof(log_path), "%s/postgres.log", pg->dir);
    snprintf(initdb_log, sizeof(initdb_log), "%s/initdb.log", pg->dir);

    if (stat(version_file, &st) != 0) {
        const char *argv[] = {tool, "-D", pg->data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                              "--no-locale", NULL};
        snprintf(tool, sizeof(tool), "%s/initdb", pg->bin);
        cbm_log_info("initialising a private PostgreSQL in %s", pg->data);
        if (run(pg, argv, initdb_log) != 0) {
            rc = cbm_error_set(err, CBM_EUNAVAIL, "initdb failed; see %s", initdb_log);
            goto fail;
        }
    }
    snprintf(tool, sizeof(tool), "%s/pg_ctl", pg->bin);
    {
        const char *argv[] = {tool, "-D", pg->data, "status", NULL};
        if (run(pg, argv, "/dev/null") == 0) {
            cbm_log_info("reusing the PostgreSQL already running in %s", pg->data);
            pg->owned = 0;
            goto done;
        }
    }
    snprintf(opts, sizeof(opts), "-k %s -c listen_addresses= -p 5432", pg->dir);
    {
        const char *argv[] = {tool, "-D", pg->data, "-l", log_path, "-w", "-t", "60", "-o", opts,
                              "start", NULL};
        if (run(pg, argv, "/dev/null") != 0) {
            rc = cbm_error_set(err, CBM_EUNAVAIL, "PostgreSQL did not start; see %s", log_path);
            goto fail;
        }
    }
    pg->owned = 1;
done:
    if (asprintf(url_out, "host=%s port=5432 user=postgres dbname=postgres", pg->dir) < 0) {
        pgembed_stop(pg);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    *out = pg;
    return 0;
fail:
    free(pg);
    return rc;
}

void pgembed_stop(pgembed_t *pg)
{
    char tool[PATH_MAX + 16];
    if (pg == NULL) return;
    if (pg->owned) {
        const char *argv[] = {tool, "-D", pg->data, "-m", "fast", "-w", "stop", NULL};
        snprintf(tool, sizeof(tool), "%s/pg_ctl", pg->bin);
        if (run(pg, argv, "/dev/null") != 0) cbm_log_warn("pg_ctl stop failed for %s", pg->data);
    }
    free(pg);
}
