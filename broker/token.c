/* token.c - the bearer tokens the HTTP API's authPath hands out when the
 * strategy that logged the user in gave none (a webhook may give its own):
 * "eddy1." base64url(payload) "." base64url(HMAC-SHA-256 of what precedes),
 * the payload {"u": user id, "e": expiry (Unix ms), "s": serverData,
 * "c": clientData}. Nothing is stored: any broker holding the same key
 * (http.tokenSecret) accepts a token until it expires; without a secret each
 * broker draws a random key at start. Changing the secret revokes every
 * token. Not for tokens of other issuers (JWT: auth_jwt.c). */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "internal.h"
#include "mem.h"

#define PREFIX "eddy1."
#define MAX_TOKEN 16384

struct token_key {
    uint8_t key[crypto_auth_hmacsha256_KEYBYTES];
};

token_key *token_key_new(const char *secret)
{
    token_key *k = xcalloc(1, sizeof(*k));
    if (secret != NULL && secret[0] != '\0') /* any length of secret makes a key of the right size */
        crypto_generichash(k->key, sizeof(k->key), (const uint8_t *)secret, strlen(secret), NULL, 0);
    else
        randombytes_buf(k->key, sizeof(k->key));
    return k;
}

void token_key_free(token_key *k)
{
    if (k == NULL)
        return;
    sodium_memzero(k->key, sizeof(k->key));
    xfree(k);
}

bool token_is_ours(const char *token)
{
    return strncmp(token, PREFIX, strlen(PREFIX)) == 0;
}

static char *b64(const uint8_t *bin, size_t len)
{
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = xmalloc(cap);
    sodium_bin2base64(out, cap, bin, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return out;
}

/* JSON text to a value (NULL text: null). */
static json_t *value_of(const char *text)
{
    json_t *v = text != NULL ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    return v != NULL ? v : json_null();
}

char *token_mint(const token_key *k, const char *user, const char *server_data, const char *client_data,
                 int64_t expires_ms)
{
    json_t *p = json_pack("{s:s, s:I, s:o, s:o}", "u", user, "e", (json_int_t)expires_ms, "s", value_of(server_data),
                          "c", value_of(client_data));
    char *payload = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    if (payload == NULL)
        return NULL;
    char *body = b64((const uint8_t *)payload, strlen(payload));
    free(payload);
    size_t signed_len = strlen(PREFIX) + strlen(body);
    char *text = xmalloc(signed_len + 1);
    sprintf(text, PREFIX "%s", body);
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256(mac, (const uint8_t *)text, signed_len, k->key);
    char *sig = b64(mac, sizeof(mac));
    char *token = xmalloc(signed_len + 1 + strlen(sig) + 1);
    sprintf(token, "%s.%s", text, sig);
    xfree(text);
    xfree(body);
    xfree(sig);
    return token;
}

int token_verify(const token_key *k, const char *token, int64_t now_wall_ms, char **user, char **server_data)
{
    *user = *server_data = NULL;
    size_t len = strlen(token);
    if (!token_is_ours(token) || len > MAX_TOKEN)
        return TOKEN_INVALID;
    const char *dot = strrchr(token, '.');
    if (dot == NULL || dot < token + strlen(PREFIX))
        return TOKEN_INVALID;
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    size_t mac_len = 0;
    if (sodium_base642bin(mac, sizeof(mac), dot + 1, strlen(dot + 1), NULL, &mac_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        mac_len != sizeof(mac) ||
        crypto_auth_hmacsha256_verify(mac, (const uint8_t *)token, (size_t)(dot - token), k->key) != 0)
        return TOKEN_INVALID;
    const char *body = token + strlen(PREFIX);
    size_t body_len = (size_t)(dot - body);
    uint8_t *payload = xmalloc(body_len + 1);
    size_t payload_len = 0;
    int rc = TOKEN_INVALID;
    if (sodium_base642bin(payload, body_len + 1, body, body_len, NULL, &payload_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0) {
        json_t *p = json_loadb((const char *)payload, payload_len, 0, NULL);
        const char *u = json_string_value(json_object_get(p, "u"));
        json_t *e = json_object_get(p, "e"), *s = json_object_get(p, "s");
        if (u != NULL && json_is_integer(e)) {
            if (json_integer_value(e) <= now_wall_ms)
                rc = TOKEN_EXPIRED;
            else {
                *user = xstrdup(u);
                if (s != NULL && !json_is_null(s)) {
                    char *t = json_dumps(s, JSON_COMPACT | JSON_ENCODE_ANY);
                    *server_data = t ? xstrdup(t) : NULL;
                    free(t);
                }
                rc = TOKEN_OK;
            }
        }
        json_decref(p);
    }
    xfree(payload);
    return rc;
}
