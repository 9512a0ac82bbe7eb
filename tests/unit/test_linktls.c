/* test_linktls.c - TLS on the nng links (common/linktls.c), with certificates
 * made at test time by deploy/tls/eddy-certs.sh (the openssl command line):
 * start-up checks of the files (unreadable, mismatched, expired, another CA,
 * no role, the wrong role); a REQ/REP round trip over tls+tcp:// where the
 * listener learns the peer's role from its pipe; and refusals before anything
 * is read: a peer of another CA, a plain tcp:// peer, a SUB without a
 * certificate on a PUB, a client whose server is not a node. Each refusal is
 * logged by the side that refused (link-tls-refused / link-tls-failed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>

#include "linktls.h"
#include "util.h"

static char dir[64];
static char logpath[64];
static int saved_stderr = -1;

static void sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

/* Certificates for everything below; the log goes to a file the tests read. */
static int setup(void **state)
{
    strcpy(dir, "/tmp/eddy-test-linktls-XXXXXX");
    strcpy(logpath, "/tmp/eddy-test-linktls-log-XXXXXX");
    int fd = mkstemp(logpath);
    if (mkdtemp(dir) == NULL || fd < 0)
        return -1;
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "set -e; c=deploy/tls/eddy-certs.sh; d=%s; bash $c $d dev 1 1 >/dev/null; "
             "bash $c --ca-name rogue $d ca; bash $c --ca-name rogue $d backend mallory; "
             "bash $c --days -1 $d node expired; "
             /* a certificate of the right CA without any eddy role */
             "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $d/norole.key "
             "-out $d/norole.csr -subj /O=eddy/OU=ops/CN=norole 2>/dev/null; "
             "openssl x509 -req -in $d/norole.csr -CA $d/ca.crt -CAkey $d/ca.key -set_serial 7 -days 30 "
             "-out $d/norole.crt 2>/dev/null; "
             /* a backend's certificate fit for a server: only its role says it is no node */
             "printf 'extendedKeyUsage=serverAuth,clientAuth\\n' >$d/ext; "
             "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $d/backsrv.key "
             "-out $d/backsrv.csr -subj /O=eddy/OU=eddy-backend/CN=backsrv 2>/dev/null; "
             "openssl x509 -req -in $d/backsrv.csr -CA $d/ca.crt -CAkey $d/ca.key -set_serial 8 -days 30 "
             "-extfile $d/ext -out $d/backsrv.crt 2>/dev/null",
             dir);
    if (system(cmd) != 0)
        return -1;
    fflush(stderr);
    saved_stderr = dup(2);
    dup2(fd, 2);
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    FILE *f = fopen(logpath, "r");
    char line[4096];
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (!(line[0] == '2' && line[4] == '-' && line[10] == 'T'))
            fputs(line, stderr);
    if (f != NULL)
        fclose(f);
    if (getenv("KEEP_LOG") == NULL)
        unlink(logpath);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

/* True when the log holds a line with both a and b. */
static bool logged(const char *a, const char *b)
{
    FILE *f = fopen(logpath, "r");
    char line[4096];
    bool found = false;
    while (!found && f != NULL && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL);
    if (f != NULL)
        fclose(f);
    return found;
}

/* Waits up to 3 s for such a line. */
static bool eventually_logged(const char *a, const char *b)
{
    for (int i = 0; i < 150; i++) {
        if (logged(a, b))
            return true;
        usleep(20 * 1000);
    }
    return false;
}

static linktls *creds(const char *name, const char *key, const char *ca, int want, char *err, size_t len)
{
    char c[128], k[128], a[128];
    snprintf(c, sizeof(c), "%s/%s.crt", dir, name);
    snprintf(k, sizeof(k), "%s/%s.key", dir, key != NULL ? key : name);
    snprintf(a, sizeof(a), "%s/%s.crt", dir, ca != NULL ? ca : "ca");
    err[0] = '\0';
    return linktls_open(c, k, a, want, err, len);
}

static void test_files_checked_at_start(void **state)
{
    char err[512];
    linktls *t = creds("node1", NULL, NULL, LINK_ROLE_NODE, err, sizeof(err));
    assert_non_null(t);
    assert_int_equal(linktls_role(t), LINK_ROLE_NODE);
    assert_string_equal(linktls_name(t), "node1");
    linktls_close(t);
    assert_null(linktls_open("/nonexistent/x.crt", "/nonexistent/x.key", "/nonexistent/ca.crt", 0, err, sizeof(err)));
    assert_non_null(strstr(err, "certificate /nonexistent/x.crt: cannot read it: No such file"));
    assert_null(creds("node1", "broker1", NULL, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "broker1.key does not match certificate"));
    assert_null(creds("expired", NULL, NULL, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "certificate has expired"));
    assert_null(creds("mallory", NULL, NULL, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "is not accepted by CA"));
    assert_null(creds("norole", NULL, NULL, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "carries no eddy role"));
    assert_null(creds("backend", NULL, NULL, LINK_ROLE_BROKER, err, sizeof(err)));
    assert_non_null(strstr(err, "is a backend's (OU=eddy-backend); this process is a broker and needs OU=eddy-broker"));
    assert_null(creds("node1", "ca", NULL, 0, err, sizeof(err))); /* a key that is not the certificate's */
    assert_non_null(strstr(err, "does not match"));
    char notpem[128];
    snprintf(notpem, sizeof(notpem), "%s/notpem", dir);
    sh("echo hello > %s", notpem);
    assert_null(linktls_open(notpem, notpem, notpem, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "no PEM certificate"));
}

static void test_addresses(void **state)
{
    assert_true(linktls_url_is_tls("tls+tcp://10.0.0.1:6021"));
    assert_false(linktls_url_is_tls("tcp://10.0.0.1:6021"));
    assert_true(linktls_url_local("tcp://127.0.0.1:6021"));
    assert_true(linktls_url_local("tls+tcp://localhost:6021"));
    assert_true(linktls_url_local("tcp://[::1]:6021"));
    assert_true(linktls_url_local("ipc:///tmp/x"));
    assert_false(linktls_url_local("tcp://0.0.0.0:6021"));
    assert_false(linktls_url_local("tcp://*:6021"));
    assert_false(linktls_url_local("tcp://node1:6021"));
    assert_false(linktls_url_local("tcp://:6021"));
    char err[256];
    assert_int_equal(linktls_check_url(NULL, "tcp://1.2.3.4:1", err, sizeof(err)), 0);
    assert_int_equal(linktls_check_url(NULL, "tls+tcp://1.2.3.4:1", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no certificate is set"));
    linktls *t = creds("broker1", NULL, NULL, 0, err, sizeof(err));
    assert_int_equal(linktls_check_url(t, "tcp://1.2.3.4:1", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "every link must be tls+tcp://"));
    assert_int_equal(linktls_check_url(t, "tls+tcp://1.2.3.4:1", err, sizeof(err)), 0);
    nng_socket s;
    assert_int_equal(nng_req0_open(&s), 0);
    assert_int_equal(linktls_dial(t, s, "tcp://127.0.0.1:1", NULL), NNG_EINVAL);
    nng_close(s);
    linktls_close(t);
}

typedef struct server {
    linktls *creds;
    nng_socket rep;
    char url[128];
} server;

static void serve(server *s, const char *name)
{
    char err[512];
    s->creds = creds(name, NULL, NULL, 0, err, sizeof(err));
    assert_non_null(s->creds);
    assert_int_equal(nng_rep0_open(&s->rep), 0);
    nng_socket_set_ms(s->rep, NNG_OPT_RECVTIMEO, 3000);
    nng_listener l;
    assert_int_equal(linktls_listen(s->creds, s->rep, "tls+tcp://127.0.0.1:0", &l), 0);
    nng_bound_url(l, "tls+tcp://127.0.0.1:0", s->url, sizeof(s->url));
    assert_non_null(strstr(s->url, "tls+tcp://127.0.0.1:"));
    assert_null(strstr(s->url, ":0"));
}

static void unserve(server *s)
{
    nng_close(s->rep);
    linktls_close(s->creds);
}

/* Sends "hi" on req and waits up to ms for an answer: true when one came. */
static bool ask(nng_socket req, int ms)
{
    nng_socket_set_ms(req, NNG_OPT_RECVTIMEO, ms);
    nng_socket_set_ms(req, NNG_OPT_SENDTIMEO, ms);
    nng_msg *m;
    nng_msg_alloc(&m, 0);
    nng_msg_append(m, "hi", 2);
    if (nng_sendmsg(req, m, 0) != 0) {
        nng_msg_free(m);
        return false;
    }
    if (nng_recvmsg(req, &m, 0) != 0)
        return false;
    nng_msg_free(m);
    return true;
}

/* The server's side of ask: answers one request, giving its pipe's role and CN. */
static int answer(server *s, char *cn, size_t len)
{
    nng_msg *m;
    if (nng_recvmsg(s->rep, &m, 0) != 0)
        return -2;
    int role = linktls_pipe_role(nng_msg_get_pipe(m), cn, len);
    assert_int_equal(nng_sendmsg(s->rep, m, 0), 0);
    return role;
}

static void *answer_thread(void *arg)
{
    server *s = arg;
    char cn[64];
    static int role;
    role = answer(s, cn, sizeof(cn));
    return &role;
}

#include <pthread.h>

static void test_round_trip_and_roles(void **state)
{
    server s;
    serve(&s, "node1");
    char err[512];
    const char *names[] = {"broker1", "backend", "node1"};
    const int roles[] = {LINK_ROLE_BROKER, LINK_ROLE_BACKEND, LINK_ROLE_NODE};
    for (int i = 0; i < 3; i++) {
        linktls *c = creds(names[i], NULL, NULL, 0, err, sizeof(err));
        assert_non_null(c);
        nng_socket req;
        assert_int_equal(nng_req0_open(&req), 0);
        assert_int_equal(linktls_dial(c, req, s.url, NULL), 0);
        pthread_t th;
        pthread_create(&th, NULL, answer_thread, &s);
        assert_true(ask(req, 3000));
        void *ret;
        pthread_join(th, &ret);
        assert_int_equal(*(int *)ret, roles[i]);
        nng_close(req);
        linktls_close(c);
    }
    /* and a payload larger than a TLS record, both ways */
    linktls *c = creds("broker1", NULL, NULL, 0, err, sizeof(err));
    nng_socket req;
    nng_req0_open(&req);
    nng_socket_set_ms(req, NNG_OPT_RECVTIMEO, 3000);
    linktls_dial(c, req, s.url, NULL);
    size_t big = 1u << 20;
    nng_msg *m;
    nng_msg_alloc(&m, big);
    for (size_t i = 0; i < big; i++)
        ((uint8_t *)nng_msg_body(m))[i] = (uint8_t)(i * 7);
    assert_int_equal(nng_sendmsg(req, m, 0), 0);
    assert_int_equal(nng_recvmsg(s.rep, &m, 0), 0);
    assert_int_equal(nng_msg_len(m), big);
    bool same = true;
    for (size_t i = 0; i < big; i++)
        same &= ((uint8_t *)nng_msg_body(m))[i] == (uint8_t)(i * 7);
    assert_true(same);
    assert_int_equal(nng_sendmsg(s.rep, m, 0), 0);
    assert_int_equal(nng_recvmsg(req, &m, 0), 0);
    assert_int_equal(nng_msg_len(m), big);
    nng_msg_free(m);
    nng_close(req);
    linktls_close(c);
    unserve(&s);
}

/* A plain REQ socket with nng's TLS options set by hand (an attacker needs no linktls). */
static nng_socket raw_dial(const char *url, const char *cert, const char *key, const char *ca)
{
    nng_socket req;
    assert_int_equal(nng_req0_open(&req), 0);
    nng_dialer d;
    assert_int_equal(nng_dialer_create(&d, req, url), 0);
    /* one attempt: the refused dialer must not be in a new handshake when the
     * test closes it (nng 1.5.2 leaks a TLS connection closed in the middle of
     * its handshake, with its dialer) */
    nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, 60000);
    nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, 60000);
    if (cert != NULL) {
        nng_tls_config *cfg;
        char c[128], k[128], a[128];
        snprintf(c, sizeof(c), "%s/%s.crt", dir, cert);
        snprintf(k, sizeof(k), "%s/%s.key", dir, key);
        snprintf(a, sizeof(a), "%s/%s.crt", dir, ca);
        FILE *f = fopen(c, "r");
        char cp[4096] = {0}, kp[4096] = {0};
        fread(cp, 1, sizeof(cp) - 1, f);
        fclose(f);
        f = fopen(k, "r");
        fread(kp, 1, sizeof(kp) - 1, f);
        fclose(f);
        assert_int_equal(nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT), 0);
        assert_int_equal(nng_tls_config_ca_file(cfg, a), 0);
        assert_int_equal(nng_tls_config_own_cert(cfg, cp, kp, NULL), 0);
        assert_int_equal(nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg), 0);
        nng_tls_config_free(cfg);
    }
    assert_int_equal(nng_dialer_start(d, NNG_FLAG_NONBLOCK), 0);
    return req;
}

static void test_refused_before_anything_is_read(void **state)
{
    server s;
    serve(&s, "node1");
    nng_socket_set_ms(s.rep, NNG_OPT_RECVTIMEO, 1000);
    /* a certificate of another CA: the node refuses it (the client trusts the node) */
    nng_socket req = raw_dial(s.url, "mallory", "mallory", "ca");
    nng_socket_set_ms(req, NNG_OPT_SENDTIMEO, 1000);
    nng_msg *m;
    nng_msg_alloc(&m, 0);
    nng_msg_append(m, "write", 5);
    if (nng_sendmsg(req, m, 0) != 0)
        nng_msg_free(m);
    assert_int_equal(nng_recvmsg(s.rep, &m, 0), NNG_ETIMEDOUT); /* nothing reached the node */
    assert_true(eventually_logged("link-tls-refused", "unable to get local issuer certificate"));
    nng_close(req);

    /* a certificate of the right CA without a role */
    req = raw_dial(s.url, "norole", "norole", "ca");
    nng_socket_set_ms(req, NNG_OPT_SENDTIMEO, 1000);
    nng_msg_alloc(&m, 0);
    if (nng_sendmsg(req, m, 0) != 0)
        nng_msg_free(m);
    assert_int_equal(nng_recvmsg(s.rep, &m, 0), NNG_ETIMEDOUT);
    nng_close(req);

    /* no TLS at all: the tcp:// address of the same port */
    char plain[128];
    snprintf(plain, sizeof(plain), "tcp://%s", s.url + strlen("tls+tcp://"));
    req = raw_dial(plain, NULL, NULL, NULL);
    nng_socket_set_ms(req, NNG_OPT_SENDTIMEO, 1000);
    nng_msg_alloc(&m, 0);
    if (nng_sendmsg(req, m, 0) != 0)
        nng_msg_free(m);
    assert_int_equal(nng_recvmsg(s.rep, &m, 0), NNG_ETIMEDOUT);
    nng_close(req);
    unserve(&s);
    /* (one line per 5 s: the first refusal's; the others are counted in its successor) */

    /* a server that is not a node: a backend's certificate behind the listener */
    serve(&s, "backsrv");
    char err[512];
    linktls *c = creds("backend", NULL, NULL, 0, err, sizeof(err));
    req = (nng_socket)NNG_SOCKET_INITIALIZER;
    assert_int_equal(nng_req0_open(&req), 0);
    assert_int_equal(linktls_dial(c, req, s.url, NULL), 0);
    nng_socket_set_ms(s.rep, NNG_OPT_RECVTIMEO, 1000);
    assert_false(ask(req, 1000));
    assert_true(eventually_logged("link-tls-failed", "the server's certificate is a backend's, not a node's"));
    nng_close(req);
    linktls_close(c);
    unserve(&s);
}

static void test_sub_without_certificate_reads_nothing(void **state)
{
    char err[512];
    linktls *n = creds("node1", NULL, NULL, 0, err, sizeof(err)), *b = creds("broker1", NULL, NULL, 0, err, sizeof(err));
    nng_socket pub, good, bad;
    assert_int_equal(nng_pub0_open(&pub), 0);
    nng_listener l;
    char url[128];
    assert_int_equal(linktls_listen(n, pub, "tls+tcp://127.0.0.1:0", &l), 0);
    nng_bound_url(l, "tls+tcp://127.0.0.1:0", url, sizeof(url));
    assert_int_equal(nng_sub0_open(&good), 0);
    assert_int_equal(nng_sub0_open(&bad), 0);
    nng_socket_set(good, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    nng_socket_set(bad, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    nng_socket_set_ms(good, NNG_OPT_RECVTIMEO, 50);
    nng_socket_set_ms(bad, NNG_OPT_RECVTIMEO, 50);
    assert_int_equal(linktls_dial(b, good, url, NULL), 0);
    /* TLS that trusts the node, but shows no certificate of its own */
    nng_dialer d;
    nng_tls_config *cfg;
    char ca[128];
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    assert_int_equal(nng_dialer_create(&d, bad, url), 0);
    assert_int_equal(nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT), 0);
    assert_int_equal(nng_tls_config_ca_file(cfg, ca), 0);
    assert_int_equal(nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg), 0);
    nng_tls_config_free(cfg);
    assert_int_equal(nng_dialer_start(d, NNG_FLAG_NONBLOCK), 0);
    int good_got = 0, bad_got = 0;
    for (int i = 0; i < 40; i++) { /* 2 s of publishing */
        nng_msg *m;
        nng_msg_alloc(&m, 0);
        nng_msg_append(m, "record update", 13);
        if (nng_sendmsg(pub, m, 0) != 0)
            nng_msg_free(m);
        if (nng_recvmsg(good, &m, 0) == 0) {
            good_got++;
            nng_msg_free(m);
        }
        if (nng_recvmsg(bad, &m, 0) == 0) {
            bad_got++;
            nng_msg_free(m);
        }
    }
    assert_true(good_got > 10);
    assert_int_equal(bad_got, 0);
    nng_close(good);
    nng_close(bad);
    nng_close(pub);
    linktls_close(n);
    linktls_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files_checked_at_start),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_round_trip_and_roles),
        cmocka_unit_test(test_refused_before_anything_is_read),
        cmocka_unit_test(test_sub_without_certificate_reads_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
