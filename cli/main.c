/*
 * main.c - the `cerebelum` program: parse the command line and run one
 * command (docs/cli.md).
 *
 * Options may come before or after the command words (`cerebelum --json
 * show ID` and `cerebelum show ID --json` are the same). Every option is
 * parsed in one pass with getopt_long; each command then lists the options
 * it accepts, so `cerebelum list --reason x` is a usage error rather than a
 * silently ignored flag.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#ifndef CBM_VERSION
#define CBM_VERSION "unknown"
#endif

enum opt {
    O_SERVER = 1000, O_TOKEN, O_TLS_CA, O_TLS, O_TLS_SERVER_NAME, O_TIMEOUT, O_JSON,
    O_TLS_CLIENT_CERT, O_TLS_CLIENT_KEY,
    O_INPUT, O_ID, O_STATUS, O_BLUEPRINT, O_LIMIT, O_AFTER,
    O_RESPONSE, O_WHO, O_REASON, O_PAYLOAD,
    O_LISTEN, O_DATABASE_URL, O_STATE_DIR, O_TLS_CERT, O_TLS_KEY, O_TLS_CLIENT_CA, O_MAX_MSG,
    O_DEMO, O_BP_VERSION, O_FROM_FILE, O_NATS, O_DATA, O_MSG_ID, O_HEADER, O_COUNT, O_HTTP,
    O_LOG_FORMAT, O_HELP = 'h', O_VERSION = 'V',
};

static const struct option long_opts[] = {
    {"server", required_argument, NULL, O_SERVER},
    {"token", required_argument, NULL, O_TOKEN},
    {"tls-ca", required_argument, NULL, O_TLS_CA},
    {"tls", no_argument, NULL, O_TLS},
    {"tls-server-name", required_argument, NULL, O_TLS_SERVER_NAME},
    {"tls-client-cert", required_argument, NULL, O_TLS_CLIENT_CERT},
    {"tls-client-key", required_argument, NULL, O_TLS_CLIENT_KEY},
    {"timeout-ms", required_argument, NULL, O_TIMEOUT},
    {"json", no_argument, NULL, O_JSON},
    {"input", required_argument, NULL, O_INPUT},
    {"from-file", required_argument, NULL, O_FROM_FILE},
    {"id", required_argument, NULL, O_ID},
    {"status", required_argument, NULL, O_STATUS},
    {"blueprint", required_argument, NULL, O_BLUEPRINT},
    {"limit", required_argument, NULL, O_LIMIT},
    {"after", required_argument, NULL, O_AFTER},
    {"response", required_argument, NULL, O_RESPONSE},
    {"who", required_argument, NULL, O_WHO},
    {"reason", required_argument, NULL, O_REASON},
    {"payload", required_argument, NULL, O_PAYLOAD},
    {"listen", required_argument, NULL, O_LISTEN},
    {"database-url", required_argument, NULL, O_DATABASE_URL},
    {"state-dir", required_argument, NULL, O_STATE_DIR},
    {"tls-cert", required_argument, NULL, O_TLS_CERT},
    {"tls-key", required_argument, NULL, O_TLS_KEY},
    {"tls-client-ca", required_argument, NULL, O_TLS_CLIENT_CA},
    {"max-message-bytes", required_argument, NULL, O_MAX_MSG},
    {"demo-handlers", no_argument, NULL, O_DEMO},
    {"nats", required_argument, NULL, O_NATS},
    {"data", required_argument, NULL, O_DATA},
    {"msg-id", required_argument, NULL, O_MSG_ID},
    {"header", required_argument, NULL, O_HEADER},
    {"count", required_argument, NULL, O_COUNT},
    {"http", required_argument, NULL, O_HTTP},
    {"log-format", required_argument, NULL, O_LOG_FORMAT},
    {"help", no_argument, NULL, O_HELP},
    {"version", no_argument, NULL, O_VERSION},
    {NULL, 0, NULL, 0},
};

#define CLIENT_OPTS                                                            \
    {O_SERVER, O_TOKEN, O_TLS_CA, O_TLS, O_TLS_SERVER_NAME, O_TLS_CLIENT_CERT,             \
     O_TLS_CLIENT_KEY, O_TIMEOUT, O_JSON}
#define MAX_CMD_OPTS 16

typedef struct command {
    const char *words; /* "start", "blueprint register" */
    int nargs;         /* positional arguments after the words */
    int (*run)(const cli_opts_t *o);
    const char *usage; /* after "cerebelum " */
    const char *help;
    int extra[MAX_CMD_OPTS]; /* options beyond the client ones; 0-terminated */
    int client;        /* takes the client options */
} command_t;

static const command_t commands[] = {
    {"serve", 0, cli_serve,
     "serve [--listen ADDR] [--database-url URL | --state-dir DIR] [--token T]\n"
     "          [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]] [--max-message-bytes N]\n"
     "          [--nats URL] [--http ADDR] [--log-format human|json]",
     "run the engine and its gRPC server (with --nats the stored triggers, with --http the JSON API and /metrics) until SIGTERM or SIGINT",
     {O_LISTEN, O_DATABASE_URL, O_STATE_DIR, O_TLS_CERT, O_TLS_KEY, O_TLS_CLIENT_CA, O_TOKEN,
      O_MAX_MSG, O_DEMO, O_NATS, O_HTTP, O_LOG_FORMAT},
     0},
    {"blueprint register", 1, cli_cmd_register, "blueprint register FILE",
     "validate and store the blueprint in FILE; prints its version", {0}, 1},
    /* With --from-file it takes no BLUEPRINT (main() below). */
    {"start", 1, cli_cmd_start,
     "start BLUEPRINT [--input JSON] [--id KEY] [--version V]\n"
     "       cerebelum start --from-file FILE     (JSON lines; - = stdin)",
     "start an execution of BLUEPRINT, or one per line of FILE; prints ids",
     {O_INPUT, O_ID, O_BP_VERSION, O_FROM_FILE}, 1},
    {"list", 0, cli_cmd_list, "list [--status S] [--blueprint B] [--limit N] [--after ID]",
     "list executions, newest first; page with --after <last id>",
     {O_STATUS, O_BLUEPRINT, O_LIMIT, O_AFTER}, 1},
    {"show", 1, cli_cmd_show, "show ID", "an execution: status, current steps, result", {0}, 1},
    {"history", 1, cli_cmd_history, "history ID", "an execution's events as a timeline",
     {0}, 1},
    {"approve", 2, cli_cmd_approve, "approve ID STEP [--response JSON] [--who NAME]",
     "approve the approval STEP waits for; --response becomes its result",
     {O_RESPONSE, O_WHO}, 1},
    {"reject", 2, cli_cmd_reject, "reject ID STEP --reason TEXT [--who NAME]",
     "reject it: the step fails with kind approval_rejected", {O_REASON, O_WHO}, 1},
    {"signal", 2, cli_cmd_signal, "signal ID NAME [--payload JSON]",
     "deliver signal NAME to an execution", {O_PAYLOAD}, 1},
    {"cancel", 1, cli_cmd_cancel, "cancel ID [--reason TEXT]", "cancel an execution",
     {O_REASON}, 1},
    {"workers", 0, cli_cmd_workers, "workers",
     "the remote workers registered with the server: queues, tasks, liveness", {0}, 1},
    {"health", 0, cli_cmd_health, "health",
     "the server's health: its store, each NATS trigger, the outbox; exit 1 when one is not ok",
     {0}, 1},
    {"council put", 1, cli_cmd_council_put, "council put FILE|-",
     "validate and store the council in FILE (- = stdin); prints its version", {0}, 1},
    {"council list", 0, cli_cmd_council_list, "council list",
     "the councils: name, role, agents, latest version", {0}, 1},
    {"council show", 1, cli_cmd_council_show, "council show NAME [--version V]",
     "a council's canonical JSON: the latest version, or version V", {O_BP_VERSION}, 1},
    {"deliberation show", 1, cli_cmd_deliberation_show, "deliberation show ID",
     "the LLM calls of an execution's deliberations: phase, agent, tokens, outcome", {0}, 1},
    {"council rm", 1, cli_cmd_council_rm, "council rm NAME",
     "delete a council (its versions stay readable by version)", {0}, 1},
    {"trigger put", 1, cli_cmd_trigger_put, "trigger put FILE|- [--database-url URL]",
     "validate and store the NATS trigger in FILE (- = stdin); prints its version",
     {O_DATABASE_URL, O_JSON}, 0},
    {"trigger list", 0, cli_cmd_trigger_list, "trigger list [--database-url URL]",
     "the stored NATS triggers: name, stream, consumer, subject, blueprint",
     {O_DATABASE_URL, O_JSON}, 0},
    {"trigger rm", 1, cli_cmd_trigger_rm, "trigger rm NAME [--database-url URL]",
     "delete a NATS trigger (its durable consumer stays on the server)", {O_DATABASE_URL}, 0},
    {"trigger failures", 0, cli_cmd_trigger_failures,
     "trigger failures [--limit N] [--database-url URL]",
     "messages the triggers refused as bad data (and terminated), newest first",
     {O_DATABASE_URL, O_JSON, O_LIMIT}, 0},
    {"engines", 0, cli_cmd_engines, "engines [--database-url URL]",
     "the engines on the database, each with the shards it holds", {O_DATABASE_URL, O_JSON}, 0},
    {"bus", 0, cli_cmd_bus, "bus [--nats URL] [--database-url URL]",
     "each trigger: last fetch, counters, its consumer on NATS; exit 1 if one is stale or failing",
     {O_DATABASE_URL, O_JSON, O_NATS}, 0},
    {"publish", 1, cli_cmd_publish,
     "publish SUBJECT [--data JSON] [--msg-id ID] [--header K=V]... [--count N] [--nats URL]",
     "publish a message to JetStream (N of them: {n} in data and id is 0..N-1); print stream and seq",
     {O_NATS, O_DATA, O_MSG_ID, O_HEADER, O_COUNT}, 0},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const int client_opts[] = CLIENT_OPTS;

static void usage(FILE *f)
{
    fprintf(f, "Usage: cerebelum COMMAND [ARGS] [OPTIONS]\n\nCommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-20s %s\n", commands[i].words, commands[i].help);
    fprintf(f,
            "\nClient options (every command but serve):\n"
            "  --server ADDR        host:port or unix:/path ($CEREBELUM_SERVER, default 127.0.0.1:7233)\n"
            "  --token TOKEN        bearer token ($CEREBELUM_TOKEN)\n"
            "  --tls-ca FILE        trust this CA (PEM) and use TLS ($CEREBELUM_TLS_CA)\n"
            "  --tls                use TLS with the system's roots\n"
            "  --tls-server-name N  expect this name in the server's certificate\n"
            "  --tls-client-cert F  present this certificate (PEM) to a server that asks\n"
            "                       for one (mTLS; $CEREBELUM_TLS_CLIENT_CERT)\n"
            "  --tls-client-key F   its private key (PEM; $CEREBELUM_TLS_CLIENT_KEY)\n"
            "  --timeout-ms N       deadline of each call (default 10000)\n"
            "  --json               machine-readable output\n"
            "\nExit status: 0 ok, 1 the server refused (not found, invalid, wrong state,\n"
            "unauthenticated), 2 usage error, 3 server unreachable or unavailable.\n"
            "Run 'cerebelum COMMAND --help' for a command's options. See docs/cli.md.\n");
}

static void command_usage(FILE *f, const command_t *c)
{
    fprintf(f, "Usage: cerebelum %s\n  %s\n", c->usage, c->help);
    if (c->client)
        fprintf(f, "Client options: --server ADDR --token TOKEN --tls-ca FILE --tls "
                   "--tls-server-name NAME --tls-client-cert FILE --tls-client-key FILE "
                   "--timeout-ms N --json\n");
}

static const char *opt_name(int id)
{
    if (id == O_BP_VERSION) return "version";
    for (const struct option *o = long_opts; o->name != NULL; o++)
        if (o->val == id) return o->name;
    return "?";
}

static int takes(const command_t *c, int id)
{
    for (int i = 0; i < MAX_CMD_OPTS && c->extra[i] != 0; i++)
        if (c->extra[i] == id) return 1;
    if (c->client)
        for (size_t i = 0; i < sizeof(client_opts) / sizeof(client_opts[0]); i++)
            if (client_opts[i] == id) return 1;
    return 0;
}

/* A positive integer option; -1 when it is not one. */
static long long parse_count(const char *opt, const char *v, long long max)
{
    char *end;
    long long n;
    errno = 0;
    n = strtoll(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n <= 0 || n > max) {
        cli_errorf("--%s wants a whole number from 1 to %lld, not '%s'", opt, max, v);
        return -1;
    }
    return n;
}

static int usage_error(void)
{
    fprintf(stderr, "Try 'cerebelum --help'.\n");
    return CLI_USAGE;
}

int main(int argc, char **argv)
{
    cli_opts_t o = {0};
    char **pos = calloc((size_t)argc + 1, sizeof(*pos));
    int npos = 0, seen[64] = {0}, nseen = 0, help = 0, nargs, ch, rc;
    const command_t *cmd = NULL, *group = NULL;
    size_t words = 0;
    long long n;

    if (pos == NULL) {
        cli_errorf("out of memory");
        return CLI_USAGE;
    }
    opterr = 0;
    /* "-" first: non-options come back as option 1, in order, wherever they are. */
    while ((ch = getopt_long(argc, argv, "-hV", long_opts, NULL)) != -1) {
        if (ch != 1 && ch != '?' && ch != ':' && nseen < 64) seen[nseen++] = ch;
        switch (ch) {
        case 1: pos[npos++] = optarg; break;
        case O_SERVER: o.server = optarg; break;
        case O_TOKEN: o.token = optarg; break;
        case O_TLS_CA: o.tls_ca = optarg; break;
        case O_TLS: o.tls = true; break;
        case O_TLS_SERVER_NAME: o.tls_server_name = optarg; break;
        case O_TLS_CLIENT_CERT: o.tls_client_cert = optarg; break;
        case O_TLS_CLIENT_KEY: o.tls_client_key = optarg; break;
        case O_TIMEOUT:
            if ((n = parse_count("timeout-ms", optarg, INT_MAX)) < 0) goto bad;
            o.timeout_ms = (int)n;
            break;
        case O_JSON: o.json = true; break;
        case O_INPUT: o.input = optarg; break;
        case O_FROM_FILE: o.from_file = optarg; break;
        case O_ID: o.idem_key = optarg; break;
        case O_STATUS: o.status = optarg; break;
        case O_BLUEPRINT: o.blueprint = optarg; break;
        case O_LIMIT:
            if ((n = parse_count("limit", optarg, 1000)) < 0) goto bad;
            o.limit = (size_t)n;
            break;
        case O_AFTER: o.after = optarg; break;
        case O_RESPONSE: o.response = optarg; break;
        case O_WHO: o.who = optarg; break;
        case O_REASON: o.reason = optarg; break;
        case O_PAYLOAD: o.payload = optarg; break;
        case O_LISTEN: o.listen = optarg; break;
        case O_DATABASE_URL: o.database_url = optarg; break;
        case O_STATE_DIR: o.state_dir = optarg; break;
        case O_TLS_CERT: o.tls_cert = optarg; break;
        case O_TLS_KEY: o.tls_key = optarg; break;
        case O_TLS_CLIENT_CA: o.tls_client_ca = optarg; break;
        case O_MAX_MSG:
            if ((n = parse_count("max-message-bytes", optarg, INT_MAX)) < 0) goto bad;
            o.max_message_bytes = (size_t)n;
            break;
        case O_DEMO: o.demo_handlers = true; break;
        case O_NATS: o.nats_url = optarg; break;
        case O_HTTP: o.http_listen = optarg; break;
        case O_LOG_FORMAT: o.log_format = optarg; break;
        case O_COUNT:
            if ((n = parse_count("count", optarg, 1000000)) < 0) goto bad;
            o.count = (int)n;
            break;
        case O_DATA: o.data = optarg; break;
        case O_MSG_ID: o.msg_id = optarg; break;
        case O_HEADER:
            if (o.nheaders == CLI_MAX_HEADERS || strchr(optarg, '=') == NULL) {
                cli_errorf("--header K=V (at most %d)", CLI_MAX_HEADERS);
                goto bad;
            }
            o.headers[o.nheaders++] = optarg;
            break;
        case O_HELP: help = 1; break;
        case O_VERSION:
            /* After `start` (or `council`), --version names a blueprint's
             * (a council's) version and takes the next word as its value;
             * anywhere else it asks for the program's version. */
            if (npos > 0 && (strcmp(pos[0], "start") == 0 || strcmp(pos[0], "council") == 0)) {
                if (optind >= argc || argv[optind][0] == '-') {
                    cli_errorf("option '--version' needs a value");
                    goto bad;
                }
                o.bp_version = argv[optind++];
                if (nseen > 0 && seen[nseen - 1] == O_VERSION) seen[nseen - 1] = O_BP_VERSION;
                break;
            }
            printf("cerebelum %s\n", CBM_VERSION);
            free(pos);
            return CLI_OK;
        default:
            if (optopt != 0 && optopt < 1000) cli_errorf("unknown option '-%c'", optopt);
            else if (optopt >= 1000) cli_errorf("option '--%s' needs a value", opt_name(optopt));
            else cli_errorf("unknown option '%s'", argv[optind - 1]);
            goto bad;
        }
    }

    if (npos == 0 || strcmp(pos[0], "help") == 0) {
        if (npos == 0 && !help) {
            cli_errorf("no command given");
            usage(stderr);
            free(pos);
            return CLI_USAGE;
        }
        usage(stdout);
        free(pos);
        return CLI_OK;
    }
    for (size_t i = 0; i < NCOMMANDS && cmd == NULL; i++) {
        const char *w = commands[i].words, *sp = strchr(w, ' ');
        if (sp == NULL && strcmp(pos[0], w) == 0) {
            cmd = &commands[i];
            words = 1;
        } else if (sp != NULL && strncmp(pos[0], w, (size_t)(sp - w)) == 0 &&
                   pos[0][sp - w] == '\0') {
            if (group == NULL) group = &commands[i];
            if (npos >= 2 && strcmp(pos[1], sp + 1) == 0) {
                cmd = &commands[i];
                words = 2;
            }
        }
    }
    if (cmd == NULL && group != NULL) {
        /* A group's word without one of its subcommands: the group's usage
         * for --help, else a usage error listing the subcommands. */
        char subs[128] = "";
        size_t len = strcspn(group->words, " ");
        for (const command_t *c = group; c < commands + NCOMMANDS; c++) {
            if (strncmp(c->words, group->words, len + 1) != 0) continue;
            if (help) command_usage(stdout, c);
            else
                snprintf(subs + strlen(subs), sizeof(subs) - strlen(subs), "%s%s",
                         subs[0] != '\0' ? ", " : "", c->words + len + 1);
        }
        if (help) {
            free(pos);
            return CLI_OK;
        }
        cli_errorf("'%s' wants a subcommand: %s", pos[0], subs);
        goto bad;
    }
    if (cmd == NULL) {
        cli_errorf("unknown command '%s'", pos[0]);
        goto bad;
    }
    if (help) {
        command_usage(stdout, cmd);
        free(pos);
        return CLI_OK;
    }
    for (int i = 0; i < nseen; i++) {
        if (seen[i] != O_HELP && !takes(cmd, seen[i])) {
            cli_errorf("option --%s does not apply to '%s'", opt_name(seen[i]), cmd->words);
            goto bad;
        }
    }
    nargs = cmd->run == cli_cmd_start && o.from_file != NULL ? 0 : cmd->nargs;
    if (npos - (int)words != nargs) {
        cli_errorf("'%s' takes %d argument%s, got %d: usage: cerebelum %s", cmd->words,
                   nargs, nargs == 1 ? "" : "s", npos - (int)words, cmd->usage);
        goto bad;
    }
    o.args = pos + words;
    o.nargs = nargs;
    rc = cmd->run(&o);
    free(pos);
    return rc;
bad:
    free(pos);
    return usage_error();
}
