/* linktls.c - TLS on the nng links (see linktls.h): a process's credentials,
 * checked at start; an nng TLS engine on OpenSSL that enforces the roles during
 * the handshake and says why it refused; and the role a pipe's certificate
 * proves. Not for deciding what a role may do (node.c). */
#include "linktls.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/supplemental/tls/engine.h>
#include <nng/supplemental/tls/tls.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/opensslv.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "mem.h"
#include "util.h"

#define PEM_MAX_BYTES (1u << 20) /* a certificate, key or CA file larger than this is refused */
#define EXPIRY_WARN_DAYS 30
#define REFUSAL_LOG_MS 5000 /* at most one line per side and reason this often (with the count held) */
#define CN_MAX 64

static const char *const role_names[LINK_ROLE_MAX] = {"none", "node", "broker", "backend"};

const char *link_role_name(int role)
{
    return role >= 0 && role < LINK_ROLE_MAX ? role_names[role] : "none";
}

/* The role cert's subject names with OU=eddy-<role>: LINK_ROLE_NONE when none,
 * -1 when it names two different ones. */
static int cert_role(X509 *cert)
{
    X509_NAME *name = X509_get_subject_name(cert);
    int role = LINK_ROLE_NONE;
    for (int i = -1; (i = X509_NAME_get_index_by_NID(name, NID_organizationalUnitName, i)) >= 0;) {
        const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
        const unsigned char *d = ASN1_STRING_get0_data(s);
        size_t len = (size_t)ASN1_STRING_length(s);
        for (int r = LINK_ROLE_NODE; r < LINK_ROLE_MAX; r++)
            if (len == 5 + strlen(role_names[r]) && memcmp(d, "eddy-", 5) == 0 &&
                memcmp(d + 5, role_names[r], len - 5) == 0) {
                if (role != LINK_ROLE_NONE && role != r)
                    return -1;
                role = r;
            }
    }
    return role;
}

/* cert's subject CN, printable characters only, into out ("" when none). */
static void cert_cn(X509 *cert, char *out, size_t len)
{
    out[0] = '\0';
    if (cert == NULL || X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, out, (int)len) < 0)
        out[0] = '\0';
    for (char *p = out; *p; p++)
        if (*p <= ' ' || *p > '~' || *p == '"')
            *p = '?';
}

/* ---------------- refusals in the log ---------------- */

/* One limiter per side and reason: a peer that keeps failing the same way
 * writes a line every REFUSAL_LOG_MS, and another reason still shows at once. */
#define REASON_SLOTS 8
typedef struct reason_slot {
    bool server;
    char reason[96];
    log_every every;
} reason_slot;

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_ullong refused; /* handshakes a listener refused */
static reason_slot slots[REASON_SLOTS];
static unsigned next_slot;

/* True when a line about reason is due (held: how many went unlogged since the last). */
static bool failure_due(bool server, const char *reason, uint64_t *held)
{
    pthread_mutex_lock(&log_lock);
    reason_slot *s = NULL;
    for (int i = 0; i < REASON_SLOTS && s == NULL; i++)
        if (slots[i].server == server && strncmp(slots[i].reason, reason, sizeof(slots[i].reason) - 1) == 0 &&
            slots[i].reason[0] != '\0')
            s = &slots[i];
    if (s == NULL) { /* a new reason takes the oldest slot */
        s = &slots[next_slot++ % REASON_SLOTS];
        *s = (reason_slot){.server = server};
        snprintf(s->reason, sizeof(s->reason), "%s", reason);
    }
    bool due = log_every_due(&s->every, now_ms(), REFUSAL_LOG_MS, held);
    pthread_mutex_unlock(&log_lock);
    return due;
}

/* A TLS link failed: the listener refused a peer, or a dialer could not get
 * through (its certificate was refused, or the server is not a node). */
static void log_failure(bool server, const char *reason, const char *cn, const char *hint)
{
    uint64_t held = 0;
    if (server)
        atomic_fetch_add(&refused, 1);
    if (!failure_due(server, reason, &held))
        return;
    if (server)
        log_warn("link-tls-refused", "reason=\"%s\" peer_cn=%s%s also=%llu (a peer of a tls+tcp:// listener was "
                 "refused before anything it sent was read)", reason, cn[0] ? cn : "-", hint,
                 (unsigned long long)held);
    else
        log_error("link-tls-failed", "reason=\"%s\" server_cn=%s%s also=%llu", reason, cn[0] ? cn : "-", hint,
                  (unsigned long long)held);
}

/* ---------------- the engine: configurations ---------------- */

struct nng_tls_engine_config {
    SSL_CTX *ctx;
    nng_tls_mode mode;
    nng_tls_auth_mode auth;
    char server[256]; /* the name a client checks the server's certificate for ("": none) */
};

/* A configuration's SSL_CTX is replaced by linktls_reload while connections are
 * made from it on nng's threads: both take this lock (once per connection). */
static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
/* The engine configuration config_init made last on this thread: make_config
 * learns which one belongs to the nng configuration it just allocated. */
static _Thread_local nng_tls_engine_config *made_last;

/* OpenSSL asks for a key's passphrase: the one given, or none (never the terminal). */
static int pass_cb(char *buf, int size, int rwflag, void *u)
{
    (void)rwflag;
    const char *pass = u;
    if (pass == NULL || size <= 0)
        return 0;
    size_t len = strlen(pass);
    if (len > (size_t)size)
        len = (size_t)size;
    memcpy(buf, pass, len);
    return (int)len;
}

static int verify_cb(int ok, X509_STORE_CTX *x);

static int config_auth(nng_tls_engine_config *cfg, nng_tls_auth_mode mode)
{
    cfg->auth = mode;
    int v = mode == NNG_TLS_AUTH_MODE_NONE ? SSL_VERIFY_NONE
            : SSL_VERIFY_PEER | (mode == NNG_TLS_AUTH_MODE_REQUIRED ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
    SSL_CTX_set_verify(cfg->ctx, v, verify_cb);
    return 0;
}

static int config_init(nng_tls_engine_config *cfg, nng_tls_mode mode)
{
    made_last = cfg;
    cfg->mode = mode;
    cfg->ctx = SSL_CTX_new(mode == NNG_TLS_MODE_SERVER ? TLS_server_method() : TLS_client_method());
    if (cfg->ctx == NULL)
        return NNG_ENOMEM;
    SSL_CTX_set_min_proto_version(cfg->ctx, TLS1_2_VERSION);
    /* nng retries a send with what is left, maybe from another address */
    SSL_CTX_set_mode(cfg->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* links live long: no resumption to keep state for */
    SSL_CTX_set_session_cache_mode(cfg->ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(cfg->ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_num_tickets(cfg->ctx, 0);
    /* nng's defaults: a server asks nothing of clients, a client checks the server */
    return config_auth(cfg, mode == NNG_TLS_MODE_SERVER ? NNG_TLS_AUTH_MODE_NONE : NNG_TLS_AUTH_MODE_REQUIRED);
}

static void config_fini(nng_tls_engine_config *cfg)
{
    SSL_CTX_free(cfg->ctx);
    cfg->ctx = NULL;
}

static int config_server(nng_tls_engine_config *cfg, const char *name)
{
    if (strlen(name) >= sizeof(cfg->server))
        return NNG_EINVAL;
    snprintf(cfg->server, sizeof(cfg->server), "%s", name);
    return 0;
}

/* Adds the certificates (and CRLs) of PEM text to store; returns how many certificates. */
static int store_add_pem(X509_STORE *store, const char *pem, bool crls)
{
    int certs = 0, lists = 0;
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x;
    while (b != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        X509_STORE_add_cert(store, x); /* takes its own reference */
        X509_free(x);
        certs++;
    }
    BIO_free(b);
    if (crls && (b = BIO_new_mem_buf(pem, -1)) != NULL) {
        X509_CRL *c;
        while ((c = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL) {
            X509_STORE_add_crl(store, c);
            X509_CRL_free(c);
            lists++;
        }
        BIO_free(b);
        if (lists > 0) /* revoked certificates are refused */
            X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    }
    ERR_clear_error(); /* the end of the text reads as an error */
    return certs;
}

static int config_ca_chain(nng_tls_engine_config *cfg, const char *certs, const char *crl)
{
    X509_STORE *store = SSL_CTX_get_cert_store(cfg->ctx);
    if (store_add_pem(store, certs, false) == 0)
        return NNG_EINVAL;
    if (crl != NULL && crl[0] != '\0')
        store_add_pem(store, crl, true);
    return 0;
}

static int config_own_cert(nng_tls_engine_config *cfg, const char *cert, const char *key, const char *pass)
{
    int rv = NNG_EINVAL;
    BIO *cb = BIO_new_mem_buf(cert, -1), *kb = BIO_new_mem_buf(key, -1);
    X509 *x = cb != NULL ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
    EVP_PKEY *k = kb != NULL ? PEM_read_bio_PrivateKey(kb, NULL, pass_cb, (void *)pass) : NULL;
    if (x == NULL || k == NULL || SSL_CTX_use_certificate(cfg->ctx, x) != 1)
        goto out;
    X509 *chain;
    SSL_CTX_clear_chain_certs(cfg->ctx);
    while ((chain = PEM_read_bio_X509(cb, NULL, NULL, NULL)) != NULL)
        SSL_CTX_add0_chain_cert(cfg->ctx, chain); /* the context owns it */
    if (SSL_CTX_use_PrivateKey(cfg->ctx, k) == 1 && SSL_CTX_check_private_key(cfg->ctx) == 1)
        rv = 0;
out:
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(k);
    BIO_free(cb);
    BIO_free(kb);
    return rv;
}

static int openssl_version(nng_tls_version v)
{
    switch (v) {
    case NNG_TLS_1_0: return TLS1_VERSION;
    case NNG_TLS_1_1: return TLS1_1_VERSION;
    case NNG_TLS_1_2: return TLS1_2_VERSION;
    default: return TLS1_3_VERSION;
    }
}

static int config_version(nng_tls_engine_config *cfg, nng_tls_version min, nng_tls_version max)
{
    if (min > max)
        return NNG_ENOTSUP;
    /* never below TLS 1.2, whatever is asked */
    int lo = openssl_version(min) < TLS1_2_VERSION ? TLS1_2_VERSION : openssl_version(min);
    SSL_CTX_set_min_proto_version(cfg->ctx, lo);
    SSL_CTX_set_max_proto_version(cfg->ctx, openssl_version(max) < lo ? lo : openssl_version(max));
    return 0;
}

/* ---------------- the engine: connections ---------------- */

struct nng_tls_engine_conn {
    void *tls; /* nng's end, for nng_tls_engine_send/recv */
    SSL *ssl;
    nng_tls_engine_config *cfg;
    int role;          /* the peer certificate's, once verified */
    char cn[CN_MAX];   /* the peer certificate's CN */
    char why[160];     /* verify_cb's reason for a refusal ("": OpenSSL's) */
    bool done;         /* the handshake is over */
    int failed;        /* the nng error of a fatal failure (0: none): no other call */
};

static BIO_METHOD *bio_method; /* the transport under OpenSSL: nng's buffers */


static int bio_write(BIO *b, const char *data, size_t len, size_t *written)
{
    nng_tls_engine_conn *c = BIO_get_data(b);
    size_t n = len;
    BIO_clear_retry_flags(b);
    int rv = nng_tls_engine_send(c->tls, (const uint8_t *)data, &n);
    if (rv == 0) {
        *written = n;
        return 1;
    }
    if (rv == NNG_EAGAIN)
        BIO_set_retry_write(b);
    return 0;
}

static int bio_read(BIO *b, char *data, size_t len, size_t *readbytes)
{
    nng_tls_engine_conn *c = BIO_get_data(b);
    size_t n = len;
    BIO_clear_retry_flags(b);
    int rv = nng_tls_engine_recv(c->tls, (uint8_t *)data, &n);
    if (rv == 0) {
        *readbytes = n;
        return 1;
    }
    if (rv == NNG_EAGAIN)
        BIO_set_retry_read(b);
    return 0;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* nng sends what it is given at once */
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* Checks each certificate of the peer's chain (OpenSSL's verdict in ok), and
 * the leaf's role: a server takes any role, a client takes only a node. */
static int verify_cb(int ok, X509_STORE_CTX *x)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    nng_tls_engine_conn *c = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
    if (c == NULL)
        return ok;
    X509 *cert = X509_STORE_CTX_get_current_cert(x);
    bool required = c->cfg->auth == NNG_TLS_AUTH_MODE_REQUIRED;
    if (!ok) {
        int e = X509_STORE_CTX_get_error(x);
        char cn[CN_MAX];
        cert_cn(cert, cn, sizeof(cn));
        if (X509_STORE_CTX_get_error_depth(x) == 0)
            memcpy(c->cn, cn, sizeof(c->cn));
        snprintf(c->why, sizeof(c->why), "%s (certificate CN=%s at depth %d)", X509_verify_cert_error_string(e),
                 cn[0] ? cn : "-", X509_STORE_CTX_get_error_depth(x));
        return required ? 0 : 1;
    }
    if (X509_STORE_CTX_get_error_depth(x) != 0)
        return 1;
    cert_cn(cert, c->cn, sizeof(c->cn));
    int role = cert_role(cert);
    const char *refusal = NULL;
    if (role < 0)
        refusal = "the certificate names more than one eddy role (OU)";
    else if (role == LINK_ROLE_NONE)
        refusal = "the certificate carries no eddy role (OU=eddy-node, eddy-broker or eddy-backend)";
    else if (c->cfg->mode == NNG_TLS_MODE_CLIENT && role != LINK_ROLE_NODE)
        refusal = role == LINK_ROLE_BROKER ? "the server's certificate is a broker's, not a node's"
                                           : "the server's certificate is a backend's, not a node's";
    if (refusal != NULL && required) {
        snprintf(c->why, sizeof(c->why), "%s", refusal);
        X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    c->role = role > 0 ? role : LINK_ROLE_NONE;
    return 1;
}

static int conn_init(nng_tls_engine_conn *c, void *tls, nng_tls_engine_config *cfg)
{
    c->tls = tls;
    c->cfg = cfg;
    pthread_mutex_lock(&ctx_lock);
    c->ssl = SSL_new(cfg->ctx); /* holds its own reference to the context */
    pthread_mutex_unlock(&ctx_lock);
    if (c->ssl == NULL)
        return NNG_ENOMEM;
    BIO *b = BIO_new(bio_method);
    if (b == NULL)
        return NNG_ENOMEM; /* conn_fini frees c->ssl */
    BIO_set_data(b, c);
    SSL_set_bio(c->ssl, b, b);
    SSL_set_app_data(c->ssl, c);
    if (cfg->mode == NNG_TLS_MODE_SERVER) {
        SSL_set_accept_state(c->ssl);
    } else {
        SSL_set_connect_state(c->ssl);
        if (cfg->server[0] != '\0') {
            SSL_set_tlsext_host_name(c->ssl, cfg->server);
            SSL_set1_host(c->ssl, cfg->server);
        }
    }
    return 0;
}

static void conn_fini(nng_tls_engine_conn *c)
{
    SSL_free(c->ssl); /* and its BIO */
    c->ssl = NULL;
}

/* No close_notify: nng closes the TCP connection right after this call, so
 * it would rarely leave; and this runs on whichever thread closes the socket
 * (util.c's short-lived closing thread among them), where any OpenSSL call
 * would leave per-thread error state behind at process exit. */
static void conn_close(nng_tls_engine_conn *c)
{
    (void)c;
}

/* What a failed handshake, read or write tells the peer's operator. */
static const char *hint_for(bool server, unsigned long e)
{
    int reason = ERR_GET_REASON(e);
    if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_UNKNOWN_PROTOCOL || reason == SSL_R_HTTP_REQUEST ||
        reason == SSL_R_PACKET_LENGTH_TOO_LONG)
        return server ? " hint=\"the peer does not speak TLS: a tcp:// address?\""
                      : " hint=\"the server does not speak TLS: a tcp:// listener?\"";
    if (reason >= SSL_AD_REASON_OFFSET) /* an alert the other side sent */
        return server ? " hint=\"the peer refused this node's certificate: see its log\""
                      : " hint=\"the node refused this process's certificate: see the node's log\"";
    return "";
}

/* Maps SSL's result rv to nng's; a fatal one is logged.
 *
 * Never NNG_ECLOSED for what a peer did: nng 1.5.2's listener takes an accept
 * that failed with NNG_ECLOSED for its own closing and never accepts again
 * (core/listener.c), so one peer that hung up after its handshake would shut
 * the node's port for good. A peer's close is NNG_ECONNRESET, a refusal
 * NNG_EPEERAUTH, a broken handshake NNG_ECONNABORTED: nng accepts again at
 * once for all three (any other error makes it pause 100 ms, which a stream
 * of junk handshakes would turn into a closed door). */
static int ssl_result(nng_tls_engine_conn *c, int rv, bool handshake)
{
    int e = SSL_get_error(c->ssl, rv);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return NNG_EAGAIN;
    c->failed = NNG_ECONNRESET;
    if (e == SSL_ERROR_ZERO_RETURN)
        return c->failed; /* a clean close_notify */
    bool server = c->cfg->mode == NNG_TLS_MODE_SERVER;
    unsigned long err = ERR_peek_last_error();
    if (e == SSL_ERROR_SYSCALL && err == 0) {
        /* the connection ended under us: quiet after the handshake, and on a
         * listener (a port probe); a dialer whose server hung up mid-handshake says so */
        if (handshake && !server)
            log_failure(false, "the server closed the connection during the TLS handshake", c->cn,
                        " hint=\"a tcp:// listener, or it refused this process's certificate: see its log\"");
        ERR_clear_error();
        return c->failed;
    }
    const char *reason = c->why[0] ? c->why : err != 0 && ERR_reason_error_string(err) != NULL
                                                  ? ERR_reason_error_string(err) : "TLS error";
    log_failure(server, reason, c->cn, hint_for(server, err));
    ERR_clear_error();
    if (handshake)
        c->failed = c->why[0] || ERR_GET_REASON(err) == SSL_R_CERTIFICATE_VERIFY_FAILED ? NNG_EPEERAUTH
                                                                                       : NNG_ECONNABORTED;
    return c->failed;
}

static int conn_handshake(nng_tls_engine_conn *c)
{
    if (c->failed) /* nng may call again while it tears the connection down */
        return c->failed;
    if (c->done)
        return 0;
    ERR_clear_error();
    int rv = SSL_do_handshake(c->ssl);
    if (rv == 1) {
        c->done = true;
        return 0;
    }
    return ssl_result(c, rv, true);
}

static int conn_recv(nng_tls_engine_conn *c, uint8_t *buf, size_t *len)
{
    if (c->failed)
        return c->failed;
    size_t n = 0;
    ERR_clear_error();
    int rv = SSL_read_ex(c->ssl, buf, *len, &n);
    if (rv == 1) {
        *len = n;
        return 0;
    }
    return ssl_result(c, rv, false);
}

static int conn_send(nng_tls_engine_conn *c, const uint8_t *buf, size_t *len)
{
    if (c->failed)
        return c->failed;
    size_t n = 0;
    ERR_clear_error();
    int rv = SSL_write_ex(c->ssl, buf, *len, &n);
    if (rv == 1) {
        *len = n;
        return 0;
    }
    return ssl_result(c, rv, false);
}

/* linktls_pipe_role's answer: nng asks a pipe's connection whether it is
 * verified on the asking thread, under the connection's lock, and this is all
 * it lets an engine say. The connection leaves who it is here for the caller. */
static _Thread_local struct {
    bool set;
    int role;
    char cn[CN_MAX];
} last_peer;

static bool conn_verified(nng_tls_engine_conn *c)
{
    bool ok = c->done && c->role > LINK_ROLE_NONE && SSL_get_verify_result(c->ssl) == X509_V_OK &&
              SSL_get0_peer_certificate(c->ssl) != NULL;
    last_peer.set = true;
    last_peer.role = ok ? c->role : -1;
    memcpy(last_peer.cn, c->cn, sizeof(last_peer.cn));
    return ok;
}

static nng_tls_engine_config_ops config_ops = {
    .size = sizeof(nng_tls_engine_config),
    .init = config_init,
    .fini = config_fini,
    .server = config_server,
    .auth = config_auth,
    .ca_chain = config_ca_chain,
    .own_cert = config_own_cert,
    .version = config_version,
};

static nng_tls_engine_conn_ops conn_ops = {
    .size = sizeof(nng_tls_engine_conn),
    .init = conn_init,
    .fini = conn_fini,
    .close = conn_close,
    .handshake = conn_handshake,
    .recv = conn_recv,
    .send = conn_send,
    .verified = conn_verified,
};

static nng_tls_engine engine = {
    .version = NNG_TLS_ENGINE_VERSION,
    .config_ops = &config_ops,
    .conn_ops = &conn_ops,
    .name = "openssl",
    .description = OPENSSL_VERSION_TEXT " (eddy's engine for nng)",
    .fips_mode = false,
};

static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static int engine_rv = NNG_ENOTSUP;

static void engine_setup(void)
{
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "eddy-nng");
    if (bio_method == NULL)
        return;
    BIO_meth_set_write_ex(bio_method, bio_write);
    BIO_meth_set_read_ex(bio_method, bio_read);
    BIO_meth_set_ctrl(bio_method, bio_ctrl);
    BIO_meth_set_create(bio_method, bio_create);
    /* nng sets up its built-in engine when it initializes (on first use),
     * replacing whatever was registered before: initialize it first */
    nng_tls_config *first;
    if (nng_tls_config_alloc(&first, NNG_TLS_MODE_CLIENT) == 0)
        nng_tls_config_free(first);
    engine_rv = nng_tls_engine_register(&engine);
}

/* ---------------- credentials ---------------- */

struct linktls {
    nng_tls_config *dial, *listen;
    nng_tls_engine_config *dial_engine, *listen_engine; /* theirs, whose SSL_CTX a reload replaces */
    char *cert, *key, *ca;                              /* the files, read again by linktls_reload */
    int role;
    char cn[CN_MAX]; /* the first certificate's (a reload keeps the role, and may change the CN) */
};

/* The whole file at path (xmalloc'd, NUL-terminated), or NULL with the reason in err. */
static char *read_pem(const char *path, const char *what, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_len, "%s %s: cannot read it: %s", what, path, strerror(errno));
        return NULL;
    }
    char *buf = xmalloc(PEM_MAX_BYTES + 1);
    size_t n = fread(buf, 1, PEM_MAX_BYTES + 1, f);
    bool failed = ferror(f);
    fclose(f);
    if (failed || n > PEM_MAX_BYTES) {
        snprintf(err, err_len, "%s %s: %s", what, path, failed ? "read error" : "larger than 1 MiB");
        xfree(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* Checks the files against each other (see linktls_open); fills t's role and cn. */
static int check_files(linktls *t, const char *cert, const char *key, const char *ca, const char *cert_pem,
                       const char *key_pem, const char *ca_pem, int want, char *err, size_t err_len)
{
    int rc = -1;
    BIO *cb = BIO_new_mem_buf(cert_pem, -1), *kb = BIO_new_mem_buf(key_pem, -1);
    X509 *leaf = PEM_read_bio_X509(cb, NULL, NULL, NULL);
    STACK_OF(X509) *chain = sk_X509_new_null();
    EVP_PKEY *pk = PEM_read_bio_PrivateKey(kb, NULL, pass_cb, NULL);
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *vc = X509_STORE_CTX_new();
    X509 *x;
    if (leaf == NULL) {
        snprintf(err, err_len, "certificate %s: no PEM certificate in it", cert);
        goto out;
    }
    while ((x = PEM_read_bio_X509(cb, NULL, NULL, NULL)) != NULL)
        sk_X509_push(chain, x);
    if (pk == NULL) {
        snprintf(err, err_len, "key %s: no PEM private key in it (or it is encrypted)", key);
        goto out;
    }
    if (X509_check_private_key(leaf, pk) != 1) {
        snprintf(err, err_len, "key %s does not match certificate %s", key, cert);
        goto out;
    }
    if (store_add_pem(store, ca_pem, true) == 0) {
        snprintf(err, err_len, "CA %s: no PEM certificate in it", ca);
        goto out;
    }
    X509_STORE_CTX_init(vc, store, leaf, chain);
    if (X509_verify_cert(vc) != 1) {
        snprintf(err, err_len, "certificate %s is not accepted by CA %s: %s", cert, ca,
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(vc)));
        goto out;
    }
    t->role = cert_role(leaf);
    cert_cn(leaf, t->cn, sizeof(t->cn));
    if (t->role < 0) {
        snprintf(err, err_len, "certificate %s names more than one eddy role (OU=eddy-...)", cert);
        goto out;
    }
    if (t->role == LINK_ROLE_NONE) {
        snprintf(err, err_len, "certificate %s carries no eddy role: its subject needs OU=eddy-node, "
                 "OU=eddy-broker or OU=eddy-backend", cert);
        goto out;
    }
    if (want != LINK_ROLE_NONE && t->role != want) {
        snprintf(err, err_len, "certificate %s is a %s's (OU=eddy-%s); this process is a %s and needs OU=eddy-%s",
                 cert, role_names[t->role], role_names[t->role], role_names[want], role_names[want]);
        goto out;
    }
    int days = 0, secs = 0;
    if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(leaf)) == 1 && days < EXPIRY_WARN_DAYS)
        log_warn("link-certificate-expiring", "file=%s days_left=%d (replace it before then: README, Security)",
                 cert, days);
    rc = 0;
out:
    ERR_clear_error();
    X509_STORE_CTX_free(vc);
    X509_STORE_free(store);
    EVP_PKEY_free(pk);
    sk_X509_pop_free(chain, X509_free);
    X509_free(leaf);
    BIO_free(cb);
    BIO_free(kb);
    return rc;
}

/* An nng TLS configuration of our engine for mode with these credentials;
 * *engine_cfg gets its engine configuration. */
static nng_tls_config *make_config(nng_tls_mode mode, const char *cert_pem, const char *key_pem, const char *ca_pem,
                                   nng_tls_engine_config **engine_cfg)
{
    nng_tls_config *c;
    made_last = NULL;
    if (nng_tls_config_alloc(&c, mode) != 0)
        return NULL;
    *engine_cfg = made_last; /* (nng calls config_init on this thread, before it returns) */
    if (*engine_cfg == NULL) { /* not our engine's: nothing a reload could reach */
        nng_tls_config_free(c);
        return NULL;
    }
    bool crl = strstr(ca_pem, "-----BEGIN X509 CRL-----") != NULL;
    if (nng_tls_config_ca_chain(c, ca_pem, crl ? ca_pem : NULL) != 0 ||
        nng_tls_config_own_cert(c, cert_pem, key_pem, NULL) != 0 ||
        nng_tls_config_auth_mode(c, NNG_TLS_AUTH_MODE_REQUIRED) != 0) {
        nng_tls_config_free(c);
        return NULL;
    }
    return c;
}

linktls *linktls_open(const char *cert, const char *key, const char *ca, int want, char *err, size_t err_len)
{
    err[0] = '\0';
    bool given[3] = {cert != NULL && cert[0], key != NULL && key[0], ca != NULL && ca[0]};
    if (!given[0] && !given[1] && !given[2])
        return NULL; /* no TLS */
    if (!given[0] || !given[1] || !given[2]) {
        snprintf(err, err_len, "cluster.tls.cert, key and ca go together (missing:%s%s%s)", given[0] ? "" : " cert",
                 given[1] ? "" : " key", given[2] ? "" : " ca");
        return NULL;
    }
    linktls *t = xcalloc(1, sizeof(*t));
    char *cert_pem = NULL, *key_pem = NULL, *ca_pem = NULL;
    if ((cert_pem = read_pem(cert, "certificate", err, err_len)) == NULL ||
        (key_pem = read_pem(key, "key", err, err_len)) == NULL || (ca_pem = read_pem(ca, "CA", err, err_len)) == NULL ||
        check_files(t, cert, key, ca, cert_pem, key_pem, ca_pem, want, err, err_len) != 0)
        goto fail;
    pthread_once(&engine_once, engine_setup);
    if (engine_rv != 0) {
        snprintf(err, err_len, "nng's TLS engine interface refused eddy's: %s", nng_strerror(engine_rv));
        goto fail;
    }
    if ((t->dial = make_config(NNG_TLS_MODE_CLIENT, cert_pem, key_pem, ca_pem, &t->dial_engine)) == NULL ||
        (t->listen = make_config(NNG_TLS_MODE_SERVER, cert_pem, key_pem, ca_pem, &t->listen_engine)) == NULL) {
        snprintf(err, err_len, "certificate %s, key %s, CA %s: nng's TLS configuration refused them", cert, key, ca);
        goto fail;
    }
    t->cert = xstrdup(cert);
    t->key = xstrdup(key);
    t->ca = xstrdup(ca);
    xfree(cert_pem);
    xfree(key_pem);
    xfree(ca_pem);
    return t;
fail:
    xfree(cert_pem);
    xfree(key_pem);
    xfree(ca_pem);
    linktls_close(t);
    return NULL;
}

void linktls_close(linktls *t)
{
    if (t == NULL)
        return;
    if (t->dial != NULL)
        nng_tls_config_free(t->dial);
    if (t->listen != NULL)
        nng_tls_config_free(t->listen);
    xfree(t->cert);
    xfree(t->key);
    xfree(t->ca);
    xfree(t);
}

/* Gives live the context of fresh (which takes live's old one away to free it). */
static void swap_context(nng_tls_engine_config *live, nng_tls_engine_config *fresh)
{
    pthread_mutex_lock(&ctx_lock);
    SSL_CTX *old = live->ctx;
    live->ctx = fresh->ctx;
    fresh->ctx = old;
    pthread_mutex_unlock(&ctx_lock);
}

int linktls_reload(linktls *t, char *err, size_t err_len)
{
    err[0] = '\0';
    if (t == NULL)
        return 0;
    linktls probe = {0};
    nng_tls_config *dial = NULL, *listen = NULL;
    nng_tls_engine_config *dial_engine = NULL, *listen_engine = NULL;
    char *cert_pem = NULL, *key_pem = NULL, *ca_pem = NULL;
    int rc = -1;
    if ((cert_pem = read_pem(t->cert, "certificate", err, err_len)) == NULL ||
        (key_pem = read_pem(t->key, "key", err, err_len)) == NULL ||
        (ca_pem = read_pem(t->ca, "CA", err, err_len)) == NULL ||
        check_files(&probe, t->cert, t->key, t->ca, cert_pem, key_pem, ca_pem, t->role, err, err_len) != 0)
        goto out;
    if ((dial = make_config(NNG_TLS_MODE_CLIENT, cert_pem, key_pem, ca_pem, &dial_engine)) == NULL ||
        (listen = make_config(NNG_TLS_MODE_SERVER, cert_pem, key_pem, ca_pem, &listen_engine)) == NULL) {
        snprintf(err, err_len, "certificate %s, key %s, CA %s: nng's TLS configuration refused them", t->cert, t->key,
                 t->ca);
        goto out;
    }
    swap_context(t->dial_engine, dial_engine);
    swap_context(t->listen_engine, listen_engine);
    log_info("link-certificates-reloaded", "certificate=%s certificate_cn=%s role=%s ca=%s (new links use them; "
             "links up keep their sessions)", t->cert, probe.cn, role_names[t->role], t->ca);
    rc = 0;
out:
    if (dial != NULL)
        nng_tls_config_free(dial); /* with the context the live one had (connections keep references) */
    if (listen != NULL)
        nng_tls_config_free(listen);
    xfree(cert_pem);
    xfree(key_pem);
    xfree(ca_pem);
    return rc;
}

int linktls_role(const linktls *t)
{
    return t != NULL ? t->role : LINK_ROLE_NONE;
}

const char *linktls_name(const linktls *t)
{
    return t != NULL ? t->cn : "";
}

/* ---------------- addresses, endpoints, pipes ---------------- */

bool linktls_url_is_tls(const char *url)
{
    return strncmp(url, "tls+tcp://", 10) == 0 || strncmp(url, "tls+tcp4://", 11) == 0 ||
           strncmp(url, "tls+tcp6://", 11) == 0;
}

bool linktls_url_local(const char *url)
{
    if (strncmp(url, "ipc://", 6) == 0 || strncmp(url, "inproc://", 9) == 0)
        return true;
    const char *host = strstr(url, "://");
    if (host == NULL)
        return false;
    host += 3;
    const char *end = strrchr(host, ':');
    size_t len = end != NULL ? (size_t)(end - host) : strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
    }
    return (len == 9 && strncmp(host, "localhost", 9) == 0) || (len == 3 && strncmp(host, "::1", 3) == 0) ||
           (len > 4 && strncmp(host, "127.", 4) == 0);
}

int linktls_check_url(const linktls *t, const char *url, char *err, size_t err_len)
{
    bool tls = linktls_url_is_tls(url);
    if (tls && t == NULL) {
        snprintf(err, err_len, "%s is a tls+tcp:// address but no certificate is set (cluster.tls.cert, key, ca)",
                 url);
        return -1;
    }
    if (!tls && t != NULL) {
        snprintf(err, err_len, "%s: with cluster.tls set every link must be tls+tcp://", url);
        return -1;
    }
    return 0;
}

int linktls_dial(const linktls *t, nng_socket s, const char *url, nng_dialer *out)
{
    char why[512];
    if (linktls_check_url(t, url, why, sizeof(why)) != 0) {
        log_error("link-address-refused", "%s", why);
        return NNG_EINVAL;
    }
    nng_dialer d;
    int rv = nng_dialer_create(&d, s, url);
    if (rv != 0)
        return rv;
    if (t != NULL)
        rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, t->dial);
    if (rv == 0)
        rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK);
    if (rv != 0)
        nng_dialer_close(d);
    else if (out != NULL)
        *out = d;
    return rv;
}

int linktls_listen(const linktls *t, nng_socket s, const char *url, nng_listener *l)
{
    char why[512];
    if (linktls_check_url(t, url, why, sizeof(why)) != 0) {
        log_error("link-address-refused", "%s", why);
        return NNG_EINVAL;
    }
    int rv = nng_listener_create(l, s, url);
    if (rv != 0)
        return rv;
    if (t != NULL)
        rv = nng_listener_set_ptr(*l, NNG_OPT_TLS_CONFIG, t->listen);
    if (rv == 0)
        rv = nng_listener_start(*l, 0);
    if (rv != 0)
        nng_listener_close(*l);
    return rv;
}

uint64_t linktls_refused(void)
{
    return atomic_load(&refused);
}

int linktls_pipe_role(nng_pipe p, char *cn, size_t cn_len)
{
    if (cn != NULL && cn_len > 0)
        cn[0] = '\0';
    bool verified = false;
    last_peer.set = false;
    int rv = nng_pipe_get_bool(p, NNG_OPT_TLS_VERIFIED, &verified);
    if (rv == NNG_ENOTSUP)
        return LINK_ROLE_NONE; /* no TLS on this pipe */
    if (rv != 0 || !last_peer.set || !verified)
        return -1; /* gone, or not ours to vouch for */
    if (cn != NULL && cn_len > 0)
        snprintf(cn, cn_len, "%s", last_peer.cn);
    return last_peer.role;
}
