/* auth_file.c - auth type `file` (deepstream's FileBasedAuthentication): a
 * YAML map of users, each with a password hash and optional clientData
 * (returned to the client by login()) and serverData (kept for permissions).
 *
 * Two hash formats, told apart per user, so a users file moves from
 * deepstream unchanged and nobody's password is reset:
 *  - eddy's: Argon2id strings ($argon2id$v=19$m=...,t=...,p=...$salt$hash,
 *    libsodium), made by `eddy hash`; their cost is in the string;
 *  - deepstream's: with options.hash set (a digest such as md5 or sha256),
 *    base64(PBKDF2-HMAC-digest(password, salt, iterations, keyLength))
 *    followed by the salt, which is itself the base64 text of 16 random bytes
 *    and is used as text (deepstream's createHash and `deepstream hash`).
 * Plain-text passwords (deepstream with hash: false) are refused at start.
 *
 * As deepstream: missing username or password is refused with
 * {"error":"missing authentication parameter: username or/and password"} (or
 * passed on, without reportInvalidParameters); an unknown user is passed on
 * to the next strategy; a wrong password is refused (or passed on). An
 * unknown user still costs one Argon2id check at the configured cost, so
 * timing does not tell which users exist. Checks run on the auth pool. */
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "broker.h"
#include "dict.h"
#include "internal.h"
#include "log.h"
#include "mem.h"
#include "yamljson.h"

#define MAX_PASSWORD 1024

typedef struct user {
    bool pbkdf2;       /* deepstream's format, else Argon2id */
    char *hash;        /* the stored string */
    char *client_data; /* JSON text, NULL when absent */
    char *server_data; /* JSON text, NULL when absent */
} user;

typedef struct file_auth {
    dict *users; /* username -> user; read-only once loaded, so workers share it */
    const EVP_MD *md;
    int iterations, key_length;
    size_t b64_len; /* deepstream: 4 * ceil(keyLength / 3) characters of hash before the salt */
    bool report;
    char dummy[crypto_pwhash_STRBYTES];
} file_auth;

int auth_hash_password(const char *password, int64_t ops, int64_t mem_kib, char *out, size_t out_len)
{
    if (sodium_init() < 0 || out_len < crypto_pwhash_STRBYTES)
        return -1;
    return crypto_pwhash_str_alg(out, password, strlen(password), (unsigned long long)ops,
                                 (size_t)mem_kib * 1024, crypto_pwhash_ALG_ARGON2ID13);
}

static void free_user(void *v)
{
    user *u = v;
    xfree(u->hash);
    xfree(u->client_data);
    xfree(u->server_data);
    xfree(u);
}

static void file_destroy(void *self)
{
    file_auth *f = self;
    if (f == NULL)
        return;
    dict_free_with(f->users, free_user);
    xfree(f);
}

/* True when s is deepstream's format for f: b64_len characters of base64
 * decoding to keyLength bytes, then a salt. */
static bool deepstream_hash(const file_auth *f, const char *s)
{
    size_t n = strlen(s);
    if (f->md == NULL || n <= f->b64_len)
        return false;
    uint8_t key[1024];
    size_t key_len;
    return sodium_base642bin(key, sizeof(key), s, f->b64_len, NULL, &key_len, NULL,
                             sodium_base64_VARIANT_ORIGINAL) == 0 && key_len == (size_t)f->key_length;
}

static int load_users(file_auth *f, const eddy_config *cfg, int index, const char *path, char *err, size_t err_len)
{
    char name[300], why[512];
    config_auth_option_name(cfg, index, "users", name, sizeof(name));
    json_t *root = yaml_load_file(path, why, sizeof(why));
    if (root == NULL) {
        snprintf(err, err_len, "%s: %s", name, why);
        return -1;
    }
    int rc = 0;
    if (!json_is_object(root) || json_object_size(root) == 0) {
        snprintf(err, err_len, "%s: %s: expected a mapping of users", name, path);
        rc = -1;
    }
    const char *username;
    json_t *entry;
    if (rc == 0)
        json_object_foreach(root, username, entry) {
            const char *hash = json_string_value(json_object_get(entry, "password"));
            bool argon2 = hash != NULL && strncmp(hash, "$argon2id$", 10) == 0;
            bool pbkdf2 = hash != NULL && !argon2 && deepstream_hash(f, hash);
            if (!argon2 && !pbkdf2) {
                snprintf(err, err_len,
                         "%s: user '%s': password must be an Argon2id hash from `eddy hash PASSWORD`%s", name,
                         username, f->md != NULL ? ", or a deepstream hash of the configured hash, keyLength"
                                                : " (deepstream hashes need the strategy's hash option; plain-text "
                                                  "passwords are refused)");
                rc = -1;
                break;
            }
            user *u = xcalloc(1, sizeof(*u));
            u->pbkdf2 = pbkdf2;
            u->hash = xstrdup(hash);
            u->client_data = auth_json_text(json_object_get(entry, "clientData"));
            u->server_data = auth_json_text(json_object_get(entry, "serverData"));
            dict_put(f->users, username, strlen(username), u);
        }
    json_decref(root);
    if (rc == 0)
        log_info("auth-users-loaded", "file=%s users=%zu", path, dict_size(f->users));
    return rc;
}

static void *file_create(const eddy_config *cfg, int index, char *err, size_t err_len)
{
    const auth_strategy_config *c = &cfg->auth[index];
    if (sodium_init() < 0) {
        snprintf(err, err_len, "libsodium would not start");
        return NULL;
    }
    file_auth *f = xcalloc(1, sizeof(*f));
    f->users = dict_new();
    f->report = config_auth_report_invalid(cfg, index);
    f->iterations = (int)c->iterations;
    f->key_length = (int)c->key_length;
    f->b64_len = 4 * (((size_t)c->key_length + 2) / 3);
    if (c->hash[0] != '\0' && (f->md = EVP_get_digestbyname(c->hash)) == NULL) {
        char name[300];
        config_auth_option_name(cfg, index, "hash", name, sizeof(name));
        snprintf(err, err_len, "%s: unknown digest '%s' (md5, sha1, sha256, sha512, ...)", name, c->hash);
        goto fail;
    }
    if (load_users(f, cfg, index, c->users_file, err, err_len) != 0)
        goto fail;
    if (auth_hash_password("not a password", c->argon2_ops, c->argon2_mem_kib, f->dummy, sizeof(f->dummy)) != 0) {
        snprintf(err, err_len, "Argon2id: out of memory for argon2MemLimit %lld KiB", (long long)c->argon2_mem_kib);
        goto fail;
    }
    return f;
fail:
    file_destroy(f);
    return NULL;
}

/* deepstream's check: base64(PBKDF2(password, salt text)) against the stored prefix. */
static bool pbkdf2_ok(const file_auth *f, const char *stored, const char *password)
{
    const char *salt = stored + f->b64_len;
    uint8_t key[1024];
    char b64[1400];
    if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), (const unsigned char *)salt, (int)strlen(salt),
                          f->iterations, f->md, f->key_length, key) != 1)
        return false;
    sodium_bin2base64(b64, sizeof(b64), key, (size_t)f->key_length, sodium_base64_VARIANT_ORIGINAL);
    bool ok = strlen(b64) == f->b64_len && sodium_memcmp(b64, stored, f->b64_len) == 0;
    sodium_memzero(key, sizeof(key));
    sodium_memzero(b64, sizeof(b64));
    return ok;
}

static void file_check(void *self, const auth_login *l, auth_outcome *out)
{
    const file_auth *f = self;
    const char *username = json_string_value(json_object_get(l->data, "username"));
    const char *password = json_string_value(json_object_get(l->data, "password"));
    if (username == NULL || password == NULL) {
        auth_refuse(out, f->report, "missing authentication parameter: username or/and password",
                    "missing username or password");
        return;
    }
    if (strlen(password) > MAX_PASSWORD) {
        auth_refuse(out, f->report, NULL, "password too long");
        return;
    }
    const user *u = dict_get(f->users, username, strlen(username));
    if (u == NULL) {
        /* the same cost as a known user's check; then the next strategy is asked (deepstream) */
        if (crypto_pwhash_str_verify(f->dummy, password, strlen(password)) == 0)
            out->reason = "unknown user"; /* (the dummy's password is not guessable; either way) */
        out->verdict = AUTH_PASS;
        out->reason = "unknown user";
        return;
    }
    bool ok = u->pbkdf2 ? pbkdf2_ok(f, u->hash, password)
                        : crypto_pwhash_str_verify(u->hash, password, strlen(password)) == 0;
    if (!ok) {
        auth_refuse(out, f->report, NULL, "wrong password");
        return;
    }
    out->verdict = AUTH_ACCEPT;
    out->user_id = xstrdup(username);
    out->client_data = u->client_data ? xstrdup(u->client_data) : NULL;
    out->server_data = u->server_data ? xstrdup(u->server_data) : NULL;
    out->cache_until = INT64_MAX;
}

/* username and password, length-prefixed (either may hold any byte but NUL). */
static size_t file_credential(void *self, const auth_login *l, uint8_t *buf, size_t cap)
{
    const char *username = json_string_value(json_object_get(l->data, "username"));
    const char *password = json_string_value(json_object_get(l->data, "password"));
    if (username == NULL || password == NULL)
        return 0;
    size_t un = strlen(username), pn = strlen(password);
    if (un > MAX_PASSWORD || pn > MAX_PASSWORD || 4 + un + pn > cap)
        return 0;
    buf[0] = (uint8_t)(un >> 24), buf[1] = (uint8_t)(un >> 16), buf[2] = (uint8_t)(un >> 8), buf[3] = (uint8_t)un;
    memcpy(buf + 4, username, un);
    memcpy(buf + 4 + un, password, pn);
    return 4 + un + pn;
}

const auth_strategy_ops auth_file_ops = {
    .type = "file",
    .run = AUTH_RUN_POOL,
    .create = file_create,
    .destroy = file_destroy,
    .check = file_check,
    .credential = file_credential,
};
