/* tls.c - the websocket port's certificate (tls.cert, tls.key, tls.ca):
 * its files checked with OpenSSL before the listener uses them (readable,
 * PEM, the key matches the certificate, not expired, the CA file loads), so
 * a mistake is one clear line at start-up rather than a failed handshake per
 * client; and read again on SIGHUP (lws_tls_cert_updated: new connections
 * get the new certificate, open ones keep theirs). Not the TLS itself: lws
 * and OpenSSL run it (loop.c gives lws the files). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "internal.h"
#include "log.h"
#include "mem.h"

#define MAX_PEM (1u << 20) /* bytes of a certificate chain or key file */

/* OpenSSL's last error as text (and the queue emptied). */
static const char *ssl_error(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        snprintf(buf, len, "not a PEM file of the right kind");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

static int fail(char *err, size_t len, const char *key, const char *flag, const char *path, const char *why)
{
    snprintf(err, len, "config error: %s (%s): %s%s%s", key, flag, path ? path : "", path ? ": " : "", why);
    return -1;
}

/* Readable by this process? (a missing file says so, not "PEM lib") */
static int readable(const char *path, const char *key, const char *flag, char *err, size_t len)
{
    if (access(path, R_OK) == 0)
        return 0;
    return fail(err, len, key, flag, path, strerror(errno));
}

bool tls_enabled(const eddy_config *cfg)
{
    return cfg->tls_cert[0] != '\0';
}

int tls_check(const eddy_config *cfg, char *err, size_t len)
{
    if (cfg->tls_cert[0] == '\0' && cfg->tls_key[0] == '\0') {
        if (cfg->tls_ca[0] != '\0')
            return fail(err, len, "tls.ca", "--tls-ca", NULL, "client certificates need tls.cert and tls.key");
        return 0;
    }
    if (cfg->tls_cert[0] == '\0')
        return fail(err, len, "tls.cert", "--tls-cert", NULL, "tls.key is given: give the certificate too");
    if (cfg->tls_key[0] == '\0')
        return fail(err, len, "tls.key", "--tls-key", NULL, "tls.cert is given: give its private key too");
    if (readable(cfg->tls_cert, "tls.cert", "--tls-cert", err, len) != 0 ||
        readable(cfg->tls_key, "tls.key", "--tls-key", err, len) != 0 ||
        (cfg->tls_ca[0] != '\0' && readable(cfg->tls_ca, "tls.ca", "--tls-ca", err, len) != 0))
        return -1;
    char why[256];
    int rc = -1;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return fail(err, len, "tls.cert", "--tls-cert", NULL, ssl_error(why, sizeof(why)));
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1)
        fail(err, len, "tls.cert", "--tls-cert", cfg->tls_cert, ssl_error(why, sizeof(why)));
    else if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1)
        fail(err, len, "tls.key", "--tls-key", cfg->tls_key,
             ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH
                 ? (ERR_clear_error(), "does not match the certificate of tls.cert")
                 : ssl_error(why, sizeof(why)));
    else if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        fail(err, len, "tls.key", "--tls-key", cfg->tls_key, "does not match the certificate of tls.cert");
    } else if (X509_cmp_current_time(X509_get0_notAfter(SSL_CTX_get0_certificate(ctx))) < 0)
        fail(err, len, "tls.cert", "--tls-cert", cfg->tls_cert, "the certificate has expired");
    else if (cfg->tls_ca[0] != '\0' && SSL_CTX_load_verify_locations(ctx, cfg->tls_ca, NULL) != 1)
        fail(err, len, "tls.ca", "--tls-ca", cfg->tls_ca, ssl_error(why, sizeof(why)));
    else
        rc = 0;
    SSL_CTX_free(ctx);
    return rc;
}

/* The whole file (xmalloc'd, *n bytes), or NULL. */
static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = xmalloc(MAX_PEM + 1);
    *n = fread(buf, 1, MAX_PEM + 1, f);
    bool ok = !ferror(f) && *n <= MAX_PEM;
    fclose(f);
    if (!ok) {
        xfree(buf);
        return NULL;
    }
    buf[*n] = '\0';
    return buf;
}

int tls_reload(const eddy_config *cfg, struct lws_context *ctx)
{
    if (!tls_enabled(cfg) || ctx == NULL)
        return 0;
    char err[512];
    if (tls_check(cfg, err, sizeof(err)) != 0) {
        log_error("tls-reload-failed", "%s (the certificate in use stays)", err + strlen("config error: "));
        return -1;
    }
    size_t cert_len = 0, key_len = 0;
    char *cert = slurp(cfg->tls_cert, &cert_len), *key = slurp(cfg->tls_key, &key_len);
    int rc = cert != NULL && key != NULL
                 ? lws_tls_cert_updated(ctx, cfg->tls_cert, cfg->tls_key, cert, cert_len, key, key_len)
                 : -1;
    if (key != NULL)
        OPENSSL_cleanse(key, key_len);
    xfree(cert);
    xfree(key);
    if (rc != 0) {
        log_error("tls-reload-failed", "cert=%s key=%s (lws refused them; the certificate in use stays)",
                  cfg->tls_cert, cfg->tls_key);
        return -1;
    }
    log_info("tls-reloaded", "cert=%s (new connections get it; open ones keep theirs)", cfg->tls_cert);
    return 0;
}
