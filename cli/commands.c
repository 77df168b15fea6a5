/*
 * commands.c - the client commands of `cerebelum`, each one call (or a few)
 * on the public client (cerebelum/client.h).
 *
 * Output contract (docs/cli.md): results on stdout, every message on stderr
 * prefixed "cerebelum: ", and the exit code says which kind of failure it
 * was: 1 the server answered no, 2 the command line is wrong, 3 the server
 * could not be reached or is unavailable. JSON given on the command line is
 * checked here, before anything is sent, so a typo is a usage error.
 */
#include <cJSON.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "cli.h"


/* One line, whatever the message holds (a server's error may span lines),
 * and not a whole input echoed back: at most ERROR_MAX bytes of it. */
#define ERROR_MAX 400

void cli_errorf(const char *fmt, ...)
{
    va_list ap;
    char *msg = NULL;
    size_t len;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0) {
        fputs("cerebelum: error (out of memory)\n", stderr);
        return;
    }
    len = strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r')) msg[--len] = '\0';
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    if (cbm_log_is_json()) /* serve --log-format json: every line is JSON */
        cbm_log_write(CBM_LOG_ERROR, "cli", NULL, NULL, msg);
    else if (len > ERROR_MAX)
        fprintf(stderr, "cerebelum: %.*s... (%zu bytes in all)\n", ERROR_MAX, msg, len);
    else
        fprintf(stderr, "cerebelum: %s\n", msg);
    free(msg);
}

char *cli_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;

    if (f == NULL) return NULL;
    for (;;) {
        size_t got;
        if (cap - len < 4096) {
            char *grown = realloc(buf, cap ? cap * 2 : 8192);
            if (grown == NULL) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = grown;
            cap = cap ? cap * 2 : 8192;
        }
        got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        int e = errno;
        free(buf);
        fclose(f);
        errno = e ? e : EIO;
        return NULL;
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

static const char *env_or(const char *flag, const char *env, const char *dflt)
{
    const char *v;
    if (flag != NULL) return flag;
    v = getenv(env);
    return v != NULL && v[0] != '\0' ? v : dflt;
}

/* Make the client from --server/--token/--tls-ca (or their environment
 * variables). Returns an exit code. */
int cli_conn_open(const cli_opts_t *o, cli_conn_t *c)
{
    cbm_client_opts_t co = {0};
    const char *ca_path = env_or(o->tls_ca, "CEREBELUM_TLS_CA", NULL);
    const char *cert_path = env_or(o->tls_client_cert, "CEREBELUM_TLS_CLIENT_CERT", NULL);
    const char *key_path = env_or(o->tls_client_key, "CEREBELUM_TLS_CLIENT_KEY", NULL);
    char *ca = NULL, *cert = NULL, *key = NULL;
    cbm_error_t err = {0};
    int rc;

    c->target = env_or(o->server, "CEREBELUM_SERVER", "127.0.0.1:7233");
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : CBM_CLIENT_DEFAULT_TIMEOUT_MS;
    if (ca_path != NULL && (ca = cli_read_file(ca_path)) == NULL) {
        cli_errorf("cannot read --tls-ca %s: %s", ca_path, strerror(errno));
        return CLI_USAGE;
    }
    if ((cert_path == NULL) != (key_path == NULL)) {
        free(ca);
        cli_errorf("--tls-client-cert and --tls-client-key go together");
        return CLI_USAGE;
    }
    if (cert_path != NULL && ((cert = cli_read_file(cert_path)) == NULL ||
                              (key = cli_read_file(key_path)) == NULL)) {
        cli_errorf("cannot read %s: %s", cert == NULL ? cert_path : key_path, strerror(errno));
        free(ca);
        free(cert);
        return CLI_USAGE;
    }
    co.token = env_or(o->token, "CEREBELUM_TOKEN", NULL);
    co.tls_root_pem = ca;
    co.tls_cert_pem = cert;
    co.tls_key_pem = key;
    co.tls = o->tls;
    co.tls_server_name = o->tls_server_name;
    co.timeout_ms = c->timeout_ms;
    rc = cbm_client_connect(&c->client, c->target, &co, &err);
    free(ca);
    free(cert);
    if (key != NULL) { /* a private key: not left in freed memory */
        OPENSSL_cleanse(key, strlen(key));
        free(key);
    }
    if (rc != 0) {
        cli_errorf("cannot use server address '%s': %s", c->target, err.message);
        return rc == CBM_EINVAL ? CLI_USAGE : CLI_UNREACHABLE;
    }
    return CLI_OK;
}

void cli_conn_close(cli_conn_t *c)
{
    cbm_client_destroy(c->client);
}

/* Say what went wrong with a call, and the exit code for it. */
int cli_report(const cli_conn_t *c, int rc, const cbm_error_t *err)
{
    const char *msg = err->message[0] != '\0' ? err->message : cbm_strerror(rc);
    switch (rc) {
    case CBM_EUNAVAIL:
        /* The gRPC library's words for "no connection" (and, within them,
         * for "nothing listens there"). */
        if (strncmp(msg, "failed to connect", 17) == 0)
            cli_errorf("cannot reach server %s%s: %s", c->target,
                       strstr(msg, "Connection refused") != NULL ||
                               strstr(msg, "No such file or directory") != NULL
                           ? " (is it running?)"
                           : "",
                       msg);
        else
            cli_errorf("server %s unavailable: %s", c->target, msg);
        return CLI_UNREACHABLE;
    case CBM_ETIMEDOUT:
        cli_errorf("no answer from server %s within %d ms", c->target, c->timeout_ms);
        return CLI_UNREACHABLE;
    default:
        cli_errorf("%s", msg);
        return CLI_REFUSED;
    }
}

/* A JSON argument must parse (and be an object where the server wants one). */
static int check_json(const char *opt, const char *text, int want_object)
{
    cJSON *v;
    int ok;
    if (text == NULL) return 0;
    v = cJSON_Parse(text);
    ok = v != NULL && (!want_object || cJSON_IsObject(v));
    cJSON_Delete(v);
    if (ok) return 0;
    if (v == NULL) cli_errorf("%s is not valid JSON: %.60s%s", opt, text, strlen(text) > 60 ? "..." : "");
    else cli_errorf("%s must be a JSON object, not %.60s%s", opt, text, strlen(text) > 60 ? "..." : "");
    return -1;
}

/* A document the server validates and stores under a content version
 * (blueprint register, council put): both calls have this shape. */
typedef int (*put_fn)(cbm_client_t *c, const char *json, char version_out[65], bool *created,
                      cbm_error_t *err);

/* Send the document in path ("-": stdin) with put, and say what happened:
 * "<done> NAME version V", "<again> NAME version V" when it was stored
 * already, or {"name", "version", "created"} with --json. */
static int put_document(const cli_opts_t *o, put_fn put, const char *done, const char *again)
{
    const char *path = o->args[0], *shown = strcmp(path, "-") == 0 ? "stdin" : path;
    char *json = cli_read_file(strcmp(path, "-") == 0 ? "/dev/stdin" : path), version[65];
    cbm_error_t err = {0};
    bool created = false;
    cJSON *doc, *name;
    cli_conn_t c;
    int rc;

    if (json == NULL) {
        cli_errorf("cannot read %s: %s", shown, strerror(errno));
        return CLI_USAGE;
    }
    if ((rc = cli_conn_open(o, &c)) != CLI_OK) {
        free(json);
        return rc;
    }
    rc = put(c.client, json, version, &created, &err);
    if (rc == CBM_EINVAL) {
        /* The server's word on the file's content: say which file. */
        cli_errorf("%s: %s", shown, err.message);
        rc = CLI_REFUSED;
    } else if (rc != 0) {
        rc = cli_report(&c, rc, &err);
    } else {
        /* The server validated it, so it parses and has a name. */
        doc = cJSON_Parse(json);
        name = cJSON_GetObjectItemCaseSensitive(doc, "name");
        if (o->json) {
            cJSON *out = cJSON_CreateObject();
            char *s;
            cJSON_AddStringToObject(out, "name", cJSON_IsString(name) ? name->valuestring : "");
            cJSON_AddStringToObject(out, "version", version);
            cJSON_AddBoolToObject(out, "created", created);
            s = cJSON_Print(out);
            printf("%s\n", s != NULL ? s : "null");
            free(s);
            cJSON_Delete(out);
        } else {
            printf("%s %s version %s\n", created ? done : again,
                   cJSON_IsString(name) ? name->valuestring : "?", version);
        }
        cJSON_Delete(doc);
        rc = CLI_OK;
    }
    cli_conn_close(&c);
    free(json);
    return rc;
}

int cli_cmd_register(const cli_opts_t *o)
{
    return put_document(o, cbm_client_put_blueprint, "registered", "already registered");
}

static int start_from_file(const cli_opts_t *o); /* below */

int cli_cmd_start(const cli_opts_t *o)
{
    cbm_start_opts_t so = {0};
    cbm_error_t err = {0};
    char id[37], version[65];
    bool created = false;
    cli_conn_t c;
    int rc;

    if (o->from_file != NULL) return start_from_file(o);
    if (check_json("--input", o->input, 1) != 0) return CLI_USAGE;
    if (o->idem_key != NULL && o->idem_key[0] == '\0') {
        cli_errorf("--id must not be empty");
        return CLI_USAGE;
    }
    if (o->bp_version != NULL && o->bp_version[0] == '\0') {
        cli_errorf("--version must not be empty");
        return CLI_USAGE;
    }
    if ((rc = cli_conn_open(o, &c)) != CLI_OK) return rc;
    so.idempotency_key = o->idem_key;
    so.version = o->bp_version;
    rc = cbm_client_start_opts(c.client, o->args[0], o->input, &so, id, &created, version, &err);
    if (rc != 0) {
        rc = cli_report(&c, rc, &err);
    } else {
        if (o->json) {
            printf("{\n  \"execution_id\": \"%s\",\n  \"created\": %s,\n  \"version\": \"%s\"\n}\n",
                   id, created ? "true" : "false", version);
        } else {
            printf("%s\n", id);
            /* stdout stays the id alone (id=$(cerebelum start ...)); with a
             * key, whether it was started now or before goes to stderr. */
            if (o->idem_key != NULL && created)
                cli_errorf("created execution %s (key '%s')", id, o->idem_key);
            else if (o->idem_key != NULL)
                cli_errorf("existing execution %s (key '%s'): not started again", id,
                           o->idem_key);
        }
        rc = CLI_OK;
    }
    cli_conn_close(&c);
    return rc;
}

/* ---- start --from-file: JSON lines, sent in batches (StartExecutions) ------ */

/* gRPC status names of the items' errors, by number (docs/protocol.md). */
static const char *const grpc_names[] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
};

static const char *grpc_name(int status)
{
    return status >= 0 && (size_t)status < sizeof(grpc_names) / sizeof(grpc_names[0])
               ? grpc_names[status]
               : "UNKNOWN";
}

typedef struct batch_line {
    size_t line;   /* 1-based line number in the file */
    cJSON *doc;    /* the parsed object; the item's strings point into it */
    char *inputs;  /* "inputs" as text, or NULL */
} batch_line_t;

/* One line of the file into *bl and *it; a usage error (message printed)
 * when it is not an object with a string "blueprint" and only the known
 * fields of the right types. */
static int parse_line(const char *path, size_t lineno, const char *text, batch_line_t *bl,
                      cbm_client_start_item_t *it)
{
    const cJSON *f;

    bl->line = lineno;
    if ((bl->doc = cJSON_Parse(text)) == NULL || !cJSON_IsObject(bl->doc)) {
        cli_errorf("%s:%zu: %s: %.60s%s", path, lineno,
                   bl->doc == NULL ? "not valid JSON" : "not a JSON object", text,
                   strlen(text) > 60 ? "..." : "");
        return -1;
    }
    cJSON_ArrayForEach(f, bl->doc) {
        const char *k = f->string;
        if (strcmp(k, "blueprint") == 0 || strcmp(k, "idempotency_key") == 0 ||
            strcmp(k, "version") == 0) {
            if (!cJSON_IsString(f) || f->valuestring[0] == '\0') {
                cli_errorf("%s:%zu: \"%s\" must be a non-empty string", path, lineno, k);
                return -1;
            }
            if (k[0] == 'b') it->blueprint = f->valuestring;
            else if (k[0] == 'i') it->idempotency_key = f->valuestring;
            else it->version = f->valuestring;
        } else if (strcmp(k, "inputs") == 0) {
            if (!cJSON_IsObject(f)) {
                cli_errorf("%s:%zu: \"inputs\" must be a JSON object", path, lineno);
                return -1;
            }
            if ((bl->inputs = cJSON_PrintUnformatted(f)) == NULL) {
                cli_errorf("out of memory");
                return -1;
            }
            it->inputs_json = bl->inputs;
        } else {
            cli_errorf("%s:%zu: unknown field \"%.60s\" (blueprint, inputs, idempotency_key, "
                       "version)", path, lineno, k);
            return -1;
        }
    }
    if (it->blueprint == NULL) {
        cli_errorf("%s:%zu: \"blueprint\" is required", path, lineno);
        return -1;
    }
    return 0;
}

/* The whole file, parsed before anything is sent: a typo on line 900 is a
 * usage error, not 899 starts and a failure. */
static int read_lines(const char *path, batch_line_t **lines, cbm_client_start_item_t **items,
                      size_t *n)
{
    char *text = cli_read_file(strcmp(path, "-") == 0 ? "/dev/stdin" : path), *p, *nl;
    size_t cap = 0, lineno = 0;
    int rc = CLI_OK;

    *lines = NULL;
    *items = NULL;
    *n = 0;
    if (text == NULL) {
        cli_errorf("cannot read %s: %s", path, strerror(errno));
        return CLI_USAGE;
    }
    for (p = text; p != NULL && rc == CLI_OK; p = nl != NULL ? nl + 1 : NULL) {
        const char *q;
        if ((nl = strchr(p, '\n')) != NULL) *nl = '\0';
        lineno++;
        for (q = p; *q == ' ' || *q == '\t' || *q == '\r'; q++) {}
        if (*q == '\0') continue; /* blank lines are allowed */
        if (*n == cap) {
            size_t c2 = cap ? cap * 2 : 64;
            batch_line_t *l2 = realloc(*lines, c2 * sizeof(**lines));
            cbm_client_start_item_t *i2 = l2 != NULL ? realloc(*items, c2 * sizeof(**items)) : NULL;
            if (l2 != NULL) *lines = l2;
            if (i2 == NULL) {
                cli_errorf("out of memory");
                rc = CLI_USAGE;
                break;
            }
            *items = i2;
            cap = c2;
        }
        memset(&(*lines)[*n], 0, sizeof(**lines));
        memset(&(*items)[*n], 0, sizeof(**items));
        if (parse_line(path, lineno, p, &(*lines)[*n], &(*items)[*n]) != 0) rc = CLI_USAGE;
        (*n)++; /* counted even when bad, so that it is freed */
    }
    free(text);
    if (rc == CLI_OK && *n == 0) {
        cli_errorf("%s holds no items", path);
        rc = CLI_USAGE;
    }
    return rc;
}

static void free_lines(batch_line_t *lines, cbm_client_start_item_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cJSON_Delete(lines[i].doc);
        cJSON_free(lines[i].inputs);
    }
    free(lines);
    free(items);
}

/* One result line: text "ID created|existing" or "- LINE STATUS: message";
 * --json an object per line. */
static void print_result(const cli_opts_t *o, const batch_line_t *bl,
                         const cbm_client_start_result_t *r)
{
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        char *t;
        cJSON_AddNumberToObject(j, "line", (double)bl->line);
        if (r->code == 0) {
            cJSON_AddStringToObject(j, "execution_id", r->id);
            cJSON_AddBoolToObject(j, "created", r->created);
            cJSON_AddStringToObject(j, "version", r->version);
        } else {
            cJSON *e = cJSON_AddObjectToObject(j, "error");
            cJSON_AddStringToObject(e, "status", grpc_name(r->status));
            cJSON_AddStringToObject(e, "message", r->message);
        }
        if ((t = cJSON_PrintUnformatted(j)) != NULL) printf("%s\n", t);
        else printf("{\"line\": %zu, \"error\": {\"status\": \"INTERNAL\", \"message\": "
                    "\"out of memory\"}}\n", bl->line);
        cJSON_free(t);
        cJSON_Delete(j);
    } else if (r->code == 0) {
        printf("%s %s\n", r->id, r->created ? "created" : "existing");
    } else {
        char msg[sizeof(r->message)];
        snprintf(msg, sizeof(msg), "%s", r->message);
        for (char *p = msg; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
        printf("- line %zu %s: %s\n", bl->line, grpc_name(r->status), msg);
    }
}

static int start_from_file(const cli_opts_t *o)
{
    batch_line_t *lines = NULL;
    cbm_client_start_item_t *items = NULL;
    cbm_client_start_result_t *res = NULL;
    size_t n = 0, failed = 0;
    cbm_error_t err = {0};
    cli_conn_t c;
    int rc;

    if (o->input != NULL || o->idem_key != NULL || o->bp_version != NULL || o->nargs > 0) {
        cli_errorf("--from-file takes no BLUEPRINT, --input, --id or --version: each line "
                   "says its own");
        return CLI_USAGE;
    }
    if ((rc = read_lines(o->from_file, &lines, &items, &n)) != CLI_OK) goto out;
    if ((res = calloc(n < CBM_CLIENT_MAX_START_BATCH ? n : CBM_CLIENT_MAX_START_BATCH,
                      sizeof(*res))) == NULL) {
        cli_errorf("out of memory");
        rc = CLI_USAGE;
        goto out;
    }
    if ((rc = cli_conn_open(o, &c)) != CLI_OK) goto out;
    for (size_t at = 0; at < n && rc == CLI_OK; at += CBM_CLIENT_MAX_START_BATCH) {
        size_t m = n - at < CBM_CLIENT_MAX_START_BATCH ? n - at : CBM_CLIENT_MAX_START_BATCH;
        int crc = cbm_client_start_many(c.client, items + at, m, res, &err);
        if (crc != 0) {
            /* The batches before were answered (and printed); this one's
             * items may or may not have started: keys make a rerun safe. */
            rc = cli_report(&c, crc, &err);
            if (at > 0) cli_errorf("items from line %zu on were not confirmed", lines[at].line);
            break;
        }
        for (size_t i = 0; i < m; i++) {
            print_result(o, &lines[at + i], &res[i]);
            if (res[i].code != 0) failed++;
        }
        fflush(stdout);
    }
    cli_conn_close(&c);
    if (rc == CLI_OK && failed > 0) {
        cli_errorf("%zu of %zu items failed", failed, n);
        rc = CLI_REFUSED;
    }
out:
    free(res);
    free_lines(lines, items, n);
    return rc;
}

static const char *const statuses[] = {"running",         "sleeping",  "awaiting_approval",
                                       "awaiting_signal", "awaiting_child", "completed",
                                       "failed",          "cancelled"};

int cli_cmd_list(const cli_opts_t *o)
{
    cbm_list_opts_t lo = {0};
    cbm_execution_info_t *xs = NULL;
    cbm_error_t err = {0};
    size_t n = 0;
    cli_conn_t c;
    int rc;

    if (o->status != NULL) {
        size_t i;
        for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
            if (strcmp(o->status, statuses[i]) == 0) break;
        if (i == sizeof(statuses) / sizeof(statuses[0])) {
            cli_errorf("unknown --status '%s' (one of running, sleeping, awaiting_approval, "
                       "awaiting_signal, awaiting_child, completed, failed, cancelled)", o->status);
            return CLI_USAGE;
        }
    }
    if ((rc = cli_conn_open(o, &c)) != CLI_OK) return rc;
    lo.status = o->status;
    lo.blueprint = o->blueprint;
    lo.after = o->after;
    lo.limit = o->limit;
    rc = cbm_client_list(c.client, &lo, &xs, &n, &err);
    if (rc != 0) {
        rc = cli_report(&c, rc, &err);
    } else {
        if (o->json) fmt_list_json(stdout, xs, n);
        else fmt_list_text(stdout, xs, n);
        cbm_execution_infos_free(xs, n);
        rc = CLI_OK;
    }
    cli_conn_close(&c);
    return rc;
}

int cli_cmd_show(const cli_opts_t *o)
{
    cbm_execution_info_t *x = NULL;
    cbm_error_t err = {0};
    char *state = NULL;
    cli_conn_t c;
    int rc;

    if ((rc = cli_conn_open(o, &c)) != CLI_OK) return rc;
    rc = cbm_client_get(c.client, o->args[0], &x, &state, &err);
    if (rc != 0) {
        rc = cli_report(&c, rc, &err);
    } else {
        if (o->json) fmt_execution_json(stdout, x, state);
        else fmt_execution_text(stdout, x, state);
        cbm_execution_info_free(x);
        free(state);
        rc = CLI_OK;
    }
    cli_conn_close(&c);
    return rc;
}

int cli_cmd_history(const cli_opts_t *o)
{
    cbm_event_t *evs = NULL;
    cbm_error_t err = {0};
    size_t n = 0;
    cli_conn_t c;
    int rc;

    if ((rc = cli_conn_open(o, &c)) != CLI_OK) return rc;
    rc = cbm_client_history(c.client, o->args[0], 1, &evs, &n, &err);
    if (rc != 0) {
        rc = cli_report(&c, rc, &err);
    } else {
        if (o->json) fmt_history_json(stdout, evs, n);
        else fmt_history_text(stdout, evs, n);
        cbm_events_free(evs, n);
        rc = CLI_OK;
    }
    cli_conn_close(&c);
    return rc;
}

/* After a decision: one line for people, or a small object for programs. */
static void decided(const cli_opts_t *o, const char *what, const char *id, const char *key,
                    const char *value)
{
    if (o->json) {
        cJSON *out = cJSON_CreateObject();
        char *s;
        cJSON_AddStringToObject(out, "execution_id", id);
        if (key != NULL) cJSON_AddStringToObject(out, key, value);
        cJSON_AddStringToObject(out, "done", what);
        s = cJSON_Print(out);
        printf("%s\n", s != NULL ? s : "null");
        free(s);
        cJSON_Delete(out);
    } else if (key != NULL) {
        printf("%s %s %s %s %s\n", what, key, value, strcmp(what, "sent") == 0 ? "to" : "of", id);
    } else {
        printf("%s %s\n", what, id);
    }
}

int cli_cmd_approve(const cli_opts_t *o)
{
    cbm_error_t err = {0};
    cli_conn_t c;
    int rc;

    if (check_json("--response", o->response, 0) != 0) return CLI_USAGE;
    if ((rc = cli_conn_open(o, &c)) != CLI_OK) return rc;
    rc = cbm_client_approve(c.client, o->args[0], o->args[1], o->response, o->who, &err);
    if (rc != 0) rc = cli_report(&c, rc, &err);
    else decided(o, "approved", o->args[0], "step", o->args[1]);
    cli_conn_close(&c);
    return rc;
}

int cli_cmd_reject(const cli_opts_t *o)
{
    cbm_error_t err = {0};
    cli_conn_t c;
    int rc;

    if (o->reason == NULL) {
        cli_errorf("reject needs --reason TEXT (it becomes the step's error message)");
        return CLI_USAGE;
    }
    if ((rc = cli_conn_open(o, &c)) != CLI_OK) return rc;
    rc = cbm_client_reject(c.client, o->args[0], o->args[1], o->reason, o->who, &err);
    if (rc != 0) rc = cli_report(&c, rc, &err);
    else decided(o, "rejected", o->args[0], "step", o->args[1]);
    cli_conn_close(&c);
    return rc;
}

int cli_cmd_signal(const cli_opts_t *o)
{
    cbm_error_t err = {0};
    cli_conn_t c;
    int rc;

    if (check_json("--payload", o->payload, 0) != 0) return CLI_USAGE;
    if ((rc = cli_conn_open(o, &c)) != CLI_OK) return rc;
    rc = cbm_client_signal(c.client, o->args[0], o->args[1], o->payload, &err);
    if (rc != 0) rc = cli_report(&c, rc, &err);
    else decided(o, "sent", o->args[0], "signal", o->args[1]);
    cli_conn_close(&c);
    return rc;
}

int cli_cmd_cancel(const cli_opts_t *o)
{
    cbm_error_t err = {0};
    cli_conn_t c;
    int rc;

    if ((rc = cli_conn_open(o, &c)) != CLI_OK) return rc;
    rc = cbm_client_cancel(c.client, o->args[0], o->reason, &err);
    if (rc != 0) rc = cli_report(&c, rc, &err);
    else decided(o, "cancelled", o->args[0], NULL, NULL);
    cli_conn_close(&c);
    return rc;
}

int cli_cmd_workers(const cli_opts_t *o)
{
    cbm_worker_info_t *ws = NULL;
    cbm_error_t err = {0};
    size_t n = 0;
    cli_conn_t c;
    int rc;

    if ((rc = cli_conn_open(o, &c)) != CLI_OK) return rc;
    rc = cbm_client_workers(c.client, NULL, &ws, &n, &err);
    if (rc != 0) {
        rc = cli_report(&c, rc, &err);
    } else {
        if (o->json) fmt_workers_json(stdout, ws, n);
        else fmt_workers_text(stdout, ws, n);
        cbm_worker_infos_free(ws, n);
        rc = CLI_OK;
    }
    cli_conn_close(&c);
    return rc;
}

/* The server's health (GetHealth): a line per check, OK or NOT OK with
 * why; exit 1 (CLI_REFUSED) when one is not ok, so a probe can use it. */
int cli_cmd_health(const cli_opts_t *o)
{
    cbm_health_t *h = NULL;
    cbm_error_t err = {0};
    cli_conn_t c;
    int rc;

    if ((rc = cli_conn_open(o, &c)) != CLI_OK) return rc;
    if ((rc = cbm_client_health(c.client, 0, &h, &err)) != 0) {
        rc = cli_report(&c, rc, &err);
        cli_conn_close(&c);
        return rc;
    }
    if (o->json) {
        cJSON *doc = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(doc, "checks");
        char *text;
        cJSON_AddBoolToObject(doc, "ok", h->ok);
        for (size_t i = 0; arr != NULL && i < h->n; i++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddItemToArray(arr, x);
            cJSON_AddStringToObject(x, "name", h->checks[i].name);
            cJSON_AddBoolToObject(x, "ok", h->checks[i].ok);
            cJSON_AddStringToObject(x, "detail", h->checks[i].detail);
        }
        if ((text = cJSON_Print(doc)) != NULL) printf("%s\n", text);
        free(text);
        cJSON_Delete(doc);
    } else {
        for (size_t i = 0; i < h->n; i++)
            printf("%-6s %-28s %s\n", h->checks[i].ok ? "OK" : "NOT OK", h->checks[i].name,
                   h->checks[i].detail);
    }
    rc = h->ok ? CLI_OK : CLI_REFUSED;
    cbm_health_free(h);
    cli_conn_close(&c);
    return rc;
}

/* ---- councils ---------------------------------------------------------------- */

int cli_cmd_council_put(const cli_opts_t *o)
{
    return put_document(o, cbm_client_council_put, "stored council", "already stored council");
}

int cli_cmd_council_list(const cli_opts_t *o)
{
    cbm_council_info_t *cs = NULL;
    cbm_error_t err = {0};
    size_t n = 0;
    cli_conn_t c;
    int rc;

    if ((rc = cli_conn_open(o, &c)) != CLI_OK) return rc;
    rc = cbm_client_council_list(c.client, &cs, &n, &err);
    if (rc != 0) {
        rc = cli_report(&c, rc, &err);
    } else {
        if (o->json) fmt_councils_json(stdout, cs, n);
        else fmt_councils_text(stdout, cs, n);
        cbm_council_infos_free(cs, n);
        rc = CLI_OK;
    }
    cli_conn_close(&c);
    return rc;
}

int cli_cmd_council_show(const cli_opts_t *o)
{
    cbm_error_t err = {0};
    char *json = NULL, version[65];
    cli_conn_t c;
    int rc;

    if ((rc = cli_conn_open(o, &c)) != CLI_OK) return rc;
    rc = cbm_client_council_get(c.client, o->args[0], o->bp_version, &json, version, &err);
    if (rc != 0) {
        rc = cli_report(&c, rc, &err);
    } else {
        if (o->json) fmt_council_json(stdout, o->args[0], version, json);
        else fmt_council_text(stdout, json);
        free(json);
        rc = CLI_OK;
    }
    cli_conn_close(&c);
    return rc;
}

int cli_cmd_council_rm(const cli_opts_t *o)
{
    cbm_error_t err = {0};
    cli_conn_t c;
    int rc;

    if ((rc = cli_conn_open(o, &c)) != CLI_OK) return rc;
    rc = cbm_client_council_delete(c.client, o->args[0], &err);
    if (rc != 0) {
        rc = cli_report(&c, rc, &err);
    } else if (o->json) {
        cJSON *out = cJSON_CreateObject();
        char *s;
        cJSON_AddStringToObject(out, "name", o->args[0]);
        cJSON_AddBoolToObject(out, "deleted", true);
        s = cJSON_Print(out);
        printf("%s\n", s != NULL ? s : "null");
        free(s);
        cJSON_Delete(out);
    } else {
        printf("deleted council %s\n", o->args[0]);
    }
    cli_conn_close(&c);
    return rc;
}
