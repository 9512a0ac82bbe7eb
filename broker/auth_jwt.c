/* auth_jwt.c - auth type `jwt` (eddy's; deepstream has none built in): the
 * login's authData.token is a JSON Web Token, verified with libjwt against
 * one configured algorithm and key: HS256/384/512 with options.secret, or
 * RS256/384/512 and ES256/384/512 with the PEM public key in
 * options.publicKey. A token signed with any other algorithm is refused,
 * whatever its header says (so an HS256 token "signed" with the public key
 * is refused, and so is alg none).
 *
 * Claims checked: exp and nbf when present (options.clockTolerance seconds
 * of leeway, as jsonwebtoken's clockTolerance), iss when options.issuer is
 * set, aud when options.audience is set (equal, or a member of an aud
 * array). Mapped: options.userIdClaim (default sub; a string or an integer)
 * is the user id, options.clientDataClaim (default clientData) is sent to the
 * client, options.serverDataClaim (default serverData) kept for permissions.
 *
 * No token: refused with {"error":"missing authentication parameter: token"},
 * or passed on without reportInvalidParameters; a bad token: refused with
 * {"error": why} (or passed on). A good one is cached (auth.cacheTtl, never
 * past its exp). Checks run on the auth pool (a signature costs tens of
 * microseconds). */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <jwt.h>

#include "internal.h"
#include "mem.h"

#define MAX_TOKEN 16384
#define MAX_KEY_FILE 65536

typedef struct jwt_auth {
    jwt_alg_t alg;
    unsigned char *key; /* the secret, or the PEM text */
    size_t key_len;
    const auth_strategy_config *c; /* the claim names, issuer, audience */
    bool report;
} jwt_auth;

static void jwt_destroy(void *self)
{
    jwt_auth *j = self;
    if (j == NULL)
        return;
    if (j->key != NULL)
        OPENSSL_cleanse(j->key, j->key_len);
    xfree(j->key);
    xfree(j);
}

static bool is_hmac(jwt_alg_t a)
{
    return a == JWT_ALG_HS256 || a == JWT_ALG_HS384 || a == JWT_ALG_HS512;
}

static bool is_ec(jwt_alg_t a)
{
    return a == JWT_ALG_ES256 || a == JWT_ALG_ES384 || a == JWT_ALG_ES512;
}

/* Reads the PEM public key and checks it is one of alg's kind. */
static int read_key(jwt_auth *j, const char *path, const char *name, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_len, "%s: cannot read %s: %m", name, path);
        return -1;
    }
    j->key = xmalloc(MAX_KEY_FILE + 1);
    j->key_len = fread(j->key, 1, MAX_KEY_FILE + 1, f);
    fclose(f);
    if (j->key_len == 0 || j->key_len > MAX_KEY_FILE) {
        snprintf(err, err_len, "%s: %s: empty, or larger than 64 KiB", name, path);
        return -1;
    }
    j->key[j->key_len] = '\0';
    BIO *bio = BIO_new_mem_buf(j->key, (int)j->key_len);
    EVP_PKEY *pk = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    int id = pk ? EVP_PKEY_get_base_id(pk) : 0;
    EVP_PKEY_free(pk);
    BIO_free(bio);
    if (id == 0) {
        snprintf(err, err_len, "%s: %s: not a PEM public key (-----BEGIN PUBLIC KEY-----)", name, path);
        return -1;
    }
    if ((id == EVP_PKEY_EC) != is_ec(j->alg) || (id != EVP_PKEY_EC && id != EVP_PKEY_RSA)) {
        snprintf(err, err_len, "%s: %s: a %s key does not verify %s", name, path,
                 id == EVP_PKEY_EC ? "EC" : id == EVP_PKEY_RSA ? "RSA" : "non-RSA, non-EC", jwt_alg_str(j->alg));
        return -1;
    }
    return 0;
}

static void *jwt_create(const eddy_config *cfg, int index, char *err, size_t err_len)
{
    const auth_strategy_config *c = &cfg->auth[index];
    jwt_auth *j = xcalloc(1, sizeof(*j));
    j->c = c;
    j->report = config_auth_report_invalid(cfg, index);
    bool secret = c->secret[0] != '\0';
    char name[300];
    config_auth_option_name(cfg, index, "algorithm", name, sizeof(name));
    j->alg = c->algorithm[0] == '\0' ? (secret ? JWT_ALG_HS256 : JWT_ALG_RS256) : jwt_str_alg(c->algorithm);
    if (j->alg == JWT_ALG_INVAL || j->alg == JWT_ALG_NONE) {
        snprintf(err, err_len, "%s: unknown algorithm '%s' (HS256, HS384, HS512, RS256, RS384, RS512, ES256, "
                 "ES384, ES512)", name, c->algorithm);
        goto fail;
    }
    if (is_hmac(j->alg) != secret) {
        snprintf(err, err_len, "%s: %s needs %s", name, jwt_alg_str(j->alg),
                 secret ? "a publicKey, not a secret" : "a secret, not a publicKey");
        goto fail;
    }
    if (secret) {
        j->key_len = strlen(c->secret);
        j->key = (unsigned char *)xstrdup(c->secret);
    } else {
        config_auth_option_name(cfg, index, "publicKey", name, sizeof(name));
        if (read_key(j, c->public_key_file, name, err, err_len) != 0)
            goto fail;
    }
    return j;
fail:
    jwt_destroy(j);
    return NULL;
}

static bool aud_ok(const json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    size_t i;
    json_t *v;
    json_array_foreach(aud, i, v)
        if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
            return true;
    return false;
}

/* Checks the claims of a verified token and fills out. */
static void use_claims(const jwt_auth *j, json_t *claims, auth_outcome *out)
{
    const auth_strategy_config *c = j->c;
    double now = (double)time(NULL), tol = (double)c->clock_tolerance_s;
    json_t *exp = json_object_get(claims, "exp"), *nbf = json_object_get(claims, "nbf");
    if ((exp != NULL && !json_is_number(exp)) || (nbf != NULL && !json_is_number(nbf))) {
        auth_refuse(out, j->report, "invalid token", "exp or nbf not a number");
        return;
    }
    if (exp != NULL && now >= json_number_value(exp) + tol) {
        auth_refuse(out, j->report, "token expired", "token expired");
        return;
    }
    if (nbf != NULL && json_number_value(nbf) > now + tol) {
        auth_refuse(out, j->report, "token not yet valid", "token not yet valid (nbf)");
        return;
    }
    if (c->issuer[0] != '\0') {
        const char *iss = json_string_value(json_object_get(claims, "iss"));
        if (iss == NULL || strcmp(iss, c->issuer) != 0) {
            auth_refuse(out, j->report, "token issuer mismatch", "token issuer mismatch");
            return;
        }
    }
    if (c->audience[0] != '\0' && !aud_ok(json_object_get(claims, "aud"), c->audience)) {
        auth_refuse(out, j->report, "token audience mismatch", "token audience mismatch");
        return;
    }
    json_t *uid = json_object_get(claims, c->user_id_claim);
    char idbuf[32];
    const char *id = json_string_value(uid);
    if (id == NULL && json_is_integer(uid)) {
        snprintf(idbuf, sizeof(idbuf), "%lld", (long long)json_integer_value(uid));
        id = idbuf;
    }
    if (id == NULL || id[0] == '\0') {
        char why[200];
        snprintf(why, sizeof(why), "token has no %.100s claim", c->user_id_claim);
        auth_refuse(out, j->report, why, "token without a user id");
        return;
    }
    out->verdict = AUTH_ACCEPT;
    out->user_id = xstrdup(id);
    if (c->client_data_claim[0] != '\0')
        out->client_data = auth_json_text(json_object_get(claims, c->client_data_claim));
    if (c->server_data_claim[0] != '\0')
        out->server_data = auth_json_text(json_object_get(claims, c->server_data_claim));
    double until = exp != NULL ? (json_number_value(exp) + tol) * 1000.0 : 0;
    out->cache_until = exp != NULL ? (until < 9e15 ? (int64_t)until : INT64_MAX) : INT64_MAX;
}

static void jwt_check(void *self, const auth_login *l, auth_outcome *out)
{
    const jwt_auth *j = self;
    const char *token = json_string_value(json_object_get(l->data, "token"));
    if (token == NULL) {
        auth_refuse(out, j->report, "missing authentication parameter: token", "no token");
        return;
    }
    if (strlen(token) > MAX_TOKEN) {
        auth_refuse(out, j->report, "invalid token", "token too long");
        return;
    }
    jwt_t *t = NULL;
    if (jwt_decode(&t, token, j->key, (int)j->key_len) != 0 || t == NULL) {
        auth_refuse(out, j->report, "invalid token", "bad signature or malformed token");
        jwt_free(t);
        return;
    }
    if (jwt_get_alg(t) != j->alg) {
        auth_refuse(out, j->report, "invalid token", "token signed with another algorithm");
        jwt_free(t);
        return;
    }
    char *text = jwt_get_grants_json(t, NULL);
    json_t *claims = text ? json_loads(text, 0, NULL) : NULL;
    free(text); /* libjwt's, from malloc */
    jwt_free(t);
    if (!json_is_object(claims))
        auth_refuse(out, j->report, "invalid token", "claims not a JSON object");
    else
        use_claims(j, claims, out);
    json_decref(claims);
}

static size_t jwt_credential(void *self, const auth_login *l, uint8_t *buf, size_t cap)
{
    const char *token = json_string_value(json_object_get(l->data, "token"));
    size_t n = token ? strlen(token) : 0;
    if (n == 0 || n > MAX_TOKEN || n > cap)
        return 0;
    memcpy(buf, token, n);
    return n;
}

const auth_strategy_ops auth_jwt_ops = {
    .type = "jwt",
    .run = AUTH_RUN_POOL,
    .create = jwt_create,
    .destroy = jwt_destroy,
    .check = jwt_check,
    .credential = jwt_credential,
};
