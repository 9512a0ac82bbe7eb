/* auth_cache.c - recent successful logins, so the same credentials log in
 * again without a password hash or a signature check (a reconnect storm
 * after a broker restart or a network blip costs a MAC per login).
 *
 * An entry is keyed by BLAKE2b keyed with a 32-byte secret drawn from the OS
 * at start (libsodium's crypto_generichash), over the strategy's place in the
 * list and the credential (username and password, or a token): neither is
 * kept, the key means nothing outside this process, and whoever holds a
 * leaked users file still pays the full hash for every guess. It holds what
 * the login answered (user id, clientData, serverData).
 *
 * Bounded: at most auth.cacheSize entries; a new one evicts the oldest
 * (counted). Entries expire after auth.cacheTtl, or earlier when the
 * strategy says so (a token's exp). One mutex: a lookup is a hash and a copy.
 * Only successes are cached, so a refused password is checked in full every
 * time. Not for deciding what is cacheable: strategies say (credential). */
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "dict.h"
#include "internal.h"
#include "mem.h"
#include "util.h"

typedef struct entry {
    uint8_t tag[32];
    int64_t expires_ms; /* wall clock */
    char *user_id, *client_data, *server_data;
    struct entry *older, *newer; /* insertion order */
} entry;

struct auth_cache {
    pthread_mutex_t lock;
    uint8_t secret[crypto_generichash_KEYBYTES];
    int64_t ttl_ms;
    size_t max;
    dict *by_tag;
    entry *oldest, *newest;
    uint64_t evicted, expired;
};

auth_cache *auth_cache_new(int64_t ttl_ms, size_t max_entries)
{
    if (ttl_ms <= 0 || max_entries == 0 || sodium_init() < 0)
        return NULL;
    auth_cache *c = xcalloc(1, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    randombytes_buf(c->secret, sizeof(c->secret));
    c->ttl_ms = ttl_ms;
    c->max = max_entries;
    c->by_tag = dict_new();
    return c;
}

static void entry_free(entry *e)
{
    xfree(e->user_id);
    xfree(e->client_data);
    xfree(e->server_data);
    xfree(e);
}

/* Unlinks and frees e (the lock is held). */
static void drop(auth_cache *c, entry *e)
{
    dict_del(c->by_tag, e->tag, sizeof(e->tag));
    if (e->older)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    entry_free(e);
}

void auth_cache_free(auth_cache *c)
{
    if (c == NULL)
        return;
    while (c->oldest != NULL)
        drop(c, c->oldest);
    dict_free(c->by_tag);
    sodium_memzero(c->secret, sizeof(c->secret));
    pthread_mutex_destroy(&c->lock);
    xfree(c);
}

static void mac(const auth_cache *c, int strategy, const uint8_t *cred, size_t len, uint8_t tag[32])
{
    crypto_generichash_state st;
    uint8_t which = (uint8_t)strategy;
    crypto_generichash_init(&st, c->secret, sizeof(c->secret), 32);
    crypto_generichash_update(&st, &which, 1);
    crypto_generichash_update(&st, cred, len);
    crypto_generichash_final(&st, tag, 32);
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? xstrdup(s) : NULL;
}

bool auth_cache_get(auth_cache *c, int strategy, const uint8_t *cred, size_t len, auth_outcome *out)
{
    if (c == NULL)
        return false;
    uint8_t tag[32];
    mac(c, strategy, cred, len, tag);
    bool hit = false;
    pthread_mutex_lock(&c->lock);
    entry *e = dict_get(c->by_tag, tag, sizeof(tag));
    if (e != NULL && e->expires_ms <= wall_ms()) {
        c->expired++;
        drop(c, e);
        e = NULL;
    }
    if (e != NULL) {
        auth_outcome_clear(out);
        out->verdict = AUTH_ACCEPT;
        out->user_id = xstrdup(e->user_id);
        out->client_data = dup_or_null(e->client_data);
        out->server_data = dup_or_null(e->server_data);
        out->reason = "cached";
        hit = true;
    }
    pthread_mutex_unlock(&c->lock);
    sodium_memzero(tag, sizeof(tag));
    return hit;
}

void auth_cache_put(auth_cache *c, int strategy, const uint8_t *cred, size_t len, const auth_outcome *o)
{
    if (c == NULL || o->verdict != AUTH_ACCEPT || o->user_id == NULL)
        return;
    int64_t now = wall_ms();
    int64_t until = now + c->ttl_ms;
    if (o->cache_until < until)
        until = o->cache_until;
    if (until <= now)
        return;
    entry *e = xcalloc(1, sizeof(*e));
    mac(c, strategy, cred, len, e->tag);
    e->expires_ms = until;
    e->user_id = xstrdup(o->user_id);
    e->client_data = dup_or_null(o->client_data);
    e->server_data = dup_or_null(o->server_data);
    pthread_mutex_lock(&c->lock);
    entry *old = dict_get(c->by_tag, e->tag, sizeof(e->tag));
    if (old != NULL)
        drop(c, old);
    while (c->oldest != NULL && (c->oldest->expires_ms <= now || dict_size(c->by_tag) >= c->max)) {
        if (c->oldest->expires_ms <= now)
            c->expired++;
        else
            c->evicted++;
        drop(c, c->oldest);
    }
    dict_put(c->by_tag, e->tag, sizeof(e->tag), e);
    e->older = c->newest;
    if (c->newest)
        c->newest->newer = e;
    else
        c->oldest = e;
    c->newest = e;
    pthread_mutex_unlock(&c->lock);
}

void auth_cache_metrics(auth_cache *c, FILE *f)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    size_t n = dict_size(c->by_tag);
    uint64_t evicted = c->evicted, expired = c->expired;
    pthread_mutex_unlock(&c->lock);
    fprintf(f, "# TYPE eddy_auth_cache_entries gauge\neddy_auth_cache_entries %zu\n", n);
    fprintf(f, "# TYPE eddy_auth_cache_evicted_total counter\neddy_auth_cache_evicted_total %llu\n",
            (unsigned long long)evicted);
    fprintf(f, "# TYPE eddy_auth_cache_expired_total counter\neddy_auth_cache_expired_total %llu\n",
            (unsigned long long)expired);
}
