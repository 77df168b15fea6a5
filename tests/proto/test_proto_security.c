/*
 * test_proto_security.c - bearer tokens and TLS.
 *
 * The certificates are made at run time by the openssl CLI in a private temp
 * dir, in the group setup: that runs before any gRPC call, because a process
 * must not fork after grpc_init (c-stack.md §3, pitfall 6). Without the
 * openssl program the TLS tests are skipped, never passed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static char tmpdir[] = "/tmp/cbm-proto-tls-XXXXXX";
static int have_certs;

/* PEM texts, loaded once. */
static char *self_pem, *self_key;     /* self-signed, CN/SAN localhost + 127.0.0.1 */
static char *other_pem;               /* another self-signed; trusting it is wrong */
static char *ca_pem;                  /* a CA that signed srv and cli */
static char *srv_pem, *srv_key;
static char *cli_pem, *cli_key;

#define EC "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

static const char *script =
    "set -e\n"
    "openssl req -x509 " EC " -keyout self.key -out self.pem -days 2 -subj /CN=localhost"
    " -addext subjectAltName=DNS:localhost,IP:127.0.0.1\n"
    "openssl req -x509 " EC " -keyout other.key -out other.pem -days 2 -subj /CN=localhost"
    " -addext subjectAltName=DNS:localhost,IP:127.0.0.1\n"
    "openssl req -x509 " EC " -keyout ca.key -out ca.pem -days 2 -subj '/CN=cerebelum test CA'\n"
    "openssl req " EC " -keyout srv.key -out srv.csr -subj /CN=localhost\n"
    "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > srv.ext\n"
    "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem"
    " -days 2 -extfile srv.ext\n"
    "openssl req " EC " -keyout cli.key -out cli.csr -subj /CN=worker-1\n"
    "printf 'extendedKeyUsage=clientAuth\\n' > cli.ext\n"
    "openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cli.pem"
    " -days 2 -extfile cli.ext\n";

static char *load(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    char *s = fx_read_file(path);
    if (s == NULL)
        fprintf(stderr, "cannot read %s\n", path);
    return s;
}

static int make_certs(void **state)
{
    char cmd[8192];
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    if (system("command -v openssl >/dev/null 2>&1") != 0) {
        fprintf(stderr, "openssl not found: TLS tests will be skipped\n");
        return 0;
    }
    snprintf(cmd, sizeof(cmd), "cd '%s' && sh -c \"$CBM_SCRIPT\" >gen.log 2>&1", tmpdir);
    setenv("CBM_SCRIPT", script, 1);
    if (system(cmd) != 0) {
        snprintf(cmd, sizeof(cmd), "cat '%s/gen.log' >&2", tmpdir);
        if (system(cmd) != 0) {} /* best effort */
        return -1;
    }
    self_pem = load("self.pem");
    self_key = load("self.key");
    other_pem = load("other.pem");
    ca_pem = load("ca.pem");
    srv_pem = load("srv.pem");
    srv_key = load("srv.key");
    cli_pem = load("cli.pem");
    cli_key = load("cli.key");
    have_certs = self_pem && self_key && other_pem && ca_pem && srv_pem && srv_key &&
                 cli_pem && cli_key;
    return have_certs ? 0 : -1;
}

static int remove_certs(void **state)
{
    char cmd[600];
    free(self_pem); free(self_key); free(other_pem); free(ca_pem);
    free(srv_pem); free(srv_key); free(cli_pem); free(cli_key);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* One ListWorkers call; returns its rc and fills st. */
static int list_workers(rpc_client_t *cl, rpc_status_t *st)
{
    Cerebelum__V1__ListWorkersRequest r = CEREBELUM__V1__LIST_WORKERS_REQUEST__INIT;
    Cerebelum__V1__ListWorkersResponse *rep = NULL;
    r.queue = "q";
    int rc = rpc_client_call(cl, RPC_LIST_WORKERS, &r.base, (ProtobufCMessage **)&rep, 5000, st);
    if (rc == 0) {
        assert_non_null(rep);
        assert_string_equal(rep->workers[0]->queues[0], "q");
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    } else {
        assert_null(rep);
    }
    return rc;
}

static void expect(rpc_client_t *cl, grpc_status_code want, const char *what)
{
    rpc_status_t st;
    int rc = list_workers(cl, &st);
    fprintf(stderr, "%-34s -> %s \"%s\"\n", what, rpc_status_name(st.code), st.message);
    assert_string_equal(rpc_status_name(st.code), rpc_status_name(want));
    assert_int_equal(rc, rpc_status_to_cbm(want));
}

static rpc_client_t *tls_client(fx_t *fx, const char *root, const char *cert, const char *key,
                                const char *token, const char *name)
{
    rpc_client_options_t o = {0};
    rpc_client_t *c = NULL;
    cbm_error_t err = {0};
    o.target = fx->target;
    o.tls_root_pem = root;
    o.tls_cert_pem = cert;
    o.tls_key_pem = key;
    o.token = token;
    o.tls_server_name = name;
    int rc = rpc_client_create(&o, &c, &err);
    if (rc != 0)
        fprintf(stderr, "rpc_client_create: %s\n", err.message);
    assert_int_equal(rc, 0);
    return c;
}

static void test_token(void **state)
{
    fx_t fx;
    fx_init(&fx, "127.0.0.1:0");
    fx.opts.token = "s3cret";
    assert_int_equal(fx_start(&fx), 0);
    rpc_client_t *none = fx_client(&fx, NULL);
    rpc_client_t *wrong = fx_client(&fx, "s3creT");
    rpc_client_t *prefix = fx_client(&fx, "s3cre");
    rpc_client_t *longer = fx_client(&fx, "s3cret2");
    rpc_client_t *right = fx_client(&fx, "s3cret");
    expect(none, GRPC_STATUS_UNAUTHENTICATED, "no token");
    expect(wrong, GRPC_STATUS_UNAUTHENTICATED, "wrong token");
    expect(prefix, GRPC_STATUS_UNAUTHENTICATED, "a prefix of the token");
    expect(longer, GRPC_STATUS_UNAUTHENTICATED, "the token plus a character");
    assert_int_equal(atomic_load(&fx.handled), 0);
    expect(right, GRPC_STATUS_OK, "right token");
    assert_int_equal(atomic_load(&fx.handled), 1);

    /* Unknown paths are UNIMPLEMENTED whatever the token. */
    rpc_status_t st;
    void *rep = NULL;
    size_t n;
    int rc = rpc_client_call_raw(none, "/x.Y/Z", "", 0, &rep, &n, 5000, &st);
    assert_int_equal(rc, rpc_status_to_cbm(GRPC_STATUS_UNIMPLEMENTED));
    assert_string_equal(rpc_status_name(st.code), "UNIMPLEMENTED");

    rpc_client_destroy(none);
    rpc_client_destroy(wrong);
    rpc_client_destroy(prefix);
    rpc_client_destroy(longer);
    rpc_client_destroy(right);
    fx_stop(&fx);
}

static void test_tls_self_signed(void **state)
{
    if (!have_certs)
        skip();
    fx_t fx;
    fx_init(&fx, "127.0.0.1:0");
    fx.opts.tls_cert_pem = self_pem;
    fx.opts.tls_key_pem = self_key;
    assert_int_equal(fx_start(&fx), 0);

    rpc_client_t *ok_ip = tls_client(&fx, self_pem, NULL, NULL, NULL, NULL);
    rpc_client_t *ok_name = tls_client(&fx, self_pem, NULL, NULL, NULL, "localhost");
    rpc_client_t *bad_name = tls_client(&fx, self_pem, NULL, NULL, NULL, "example.com");
    rpc_client_t *untrusted = tls_client(&fx, other_pem, NULL, NULL, NULL, NULL);
    rpc_client_t *plain = fx_client(&fx, NULL);
    expect(ok_ip, GRPC_STATUS_OK, "TLS, trusted, by IP SAN");
    expect(ok_name, GRPC_STATUS_OK, "TLS, trusted, name localhost");
    expect(bad_name, GRPC_STATUS_UNAVAILABLE, "TLS, name mismatch");
    expect(untrusted, GRPC_STATUS_UNAVAILABLE, "TLS, certificate not trusted");
    expect(plain, GRPC_STATUS_UNAVAILABLE, "plaintext client to a TLS port");
    assert_int_equal(atomic_load(&fx.handled), 2);
    rpc_client_destroy(ok_ip);
    rpc_client_destroy(ok_name);
    rpc_client_destroy(bad_name);
    rpc_client_destroy(untrusted);
    rpc_client_destroy(plain);
    fx_stop(&fx);
}

static void test_tls_client_to_plaintext_server(void **state)
{
    if (!have_certs)
        skip();
    fx_t fx;
    fx_init(&fx, "127.0.0.1:0");
    assert_int_equal(fx_start(&fx), 0);
    rpc_client_t *cl = tls_client(&fx, self_pem, NULL, NULL, NULL, NULL);
    expect(cl, GRPC_STATUS_UNAVAILABLE, "TLS client to a plaintext port");
    rpc_client_destroy(cl);
    fx_stop(&fx);
}

static void test_mtls(void **state)
{
    if (!have_certs)
        skip();
    fx_t fx;
    fx_init(&fx, "127.0.0.1:0");
    fx.opts.tls_cert_pem = srv_pem;
    fx.opts.tls_key_pem = srv_key;
    fx.opts.tls_client_ca_pem = ca_pem;
    assert_int_equal(fx_start(&fx), 0);
    rpc_client_t *with_cert = tls_client(&fx, ca_pem, cli_pem, cli_key, NULL, NULL);
    rpc_client_t *no_cert = tls_client(&fx, ca_pem, NULL, NULL, NULL, NULL);
    rpc_client_t *foreign = tls_client(&fx, ca_pem, self_pem, self_key, NULL, NULL);
    expect(with_cert, GRPC_STATUS_OK, "mTLS, client certificate from CA");
    expect(no_cert, GRPC_STATUS_UNAVAILABLE, "mTLS, no client certificate");
    expect(foreign, GRPC_STATUS_UNAVAILABLE, "mTLS, certificate from another CA");
    assert_int_equal(atomic_load(&fx.handled), 1);
    rpc_client_destroy(with_cert);
    rpc_client_destroy(no_cert);
    rpc_client_destroy(foreign);
    fx_stop(&fx);
}

static void test_tls_and_token(void **state)
{
    if (!have_certs)
        skip();
    fx_t fx;
    fx_init(&fx, "127.0.0.1:0");
    fx.opts.tls_cert_pem = self_pem;
    fx.opts.tls_key_pem = self_key;
    fx.opts.token = "tok";
    assert_int_equal(fx_start(&fx), 0);
    rpc_client_t *good = tls_client(&fx, self_pem, NULL, NULL, "tok", NULL);
    rpc_client_t *bad = tls_client(&fx, self_pem, NULL, NULL, "nope", NULL);
    expect(good, GRPC_STATUS_OK, "TLS + right token");
    expect(bad, GRPC_STATUS_UNAUTHENTICATED, "TLS + wrong token");
    rpc_client_destroy(good);
    rpc_client_destroy(bad);
    fx_stop(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_tls_self_signed),
        cmocka_unit_test(test_tls_client_to_plaintext_server),
        cmocka_unit_test(test_mtls),
        cmocka_unit_test(test_tls_and_token),
    };
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
