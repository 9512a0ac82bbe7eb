/* dict.c - chained hash map with byte keys (see dict.h). The bucket array is
 * allocated at the first insert and starts small: a server keeps several
 * dicts per connection, most of them empty or nearly so. */
#include "dict.h"

#include <string.h>

#include "mem.h"

struct entry {
    struct entry *next;
    uint64_t hash;
    void *value;
    size_t len;
    unsigned char key[]; /* key bytes, owned by the entry */
};

struct dict {
    struct entry **buckets;
    size_t mask;
    size_t count;
};

uint64_t hash_bytes(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 14695981039346656037ULL; /* FNV-1a 64 offset basis */
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

dict *dict_new(void)
{
    dict *d = xmalloc(sizeof(*d));
    d->mask = 3;
    d->count = 0;
    d->buckets = NULL; /* until the first dict_put */
    return d;
}

void dict_free(dict *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; d->buckets != NULL && i <= d->mask; i++) {
        struct entry *e = d->buckets[i];
        while (e != NULL) {
            struct entry *next = e->next;
            xfree(e);
            e = next;
        }
    }
    xfree(d->buckets);
    xfree(d);
}

void dict_free_with(dict *d, void (*free_value)(void *value))
{
    for (size_t i = 0; d != NULL && d->buckets != NULL && i <= d->mask; i++)
        for (struct entry *e = d->buckets[i]; e != NULL; e = e->next)
            free_value(e->value);
    dict_free(d);
}

size_t dict_size(const dict *d)
{
    return d->count;
}

static struct entry **find(const dict *d, const void *key, size_t len, uint64_t h)
{
    struct entry **pp = &d->buckets[h & d->mask];
    while (*pp != NULL) {
        struct entry *e = *pp;
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
            return pp;
        pp = &e->next;
    }
    return pp;
}

static void grow(dict *d)
{
    size_t new_mask = d->mask * 2 + 1;
    struct entry **nb = xcalloc(new_mask + 1, sizeof(*nb));
    for (size_t i = 0; i <= d->mask; i++) {
        struct entry *e = d->buckets[i];
        while (e != NULL) {
            struct entry *next = e->next;
            e->next = nb[e->hash & new_mask];
            nb[e->hash & new_mask] = e;
            e = next;
        }
    }
    xfree(d->buckets);
    d->buckets = nb;
    d->mask = new_mask;
}

void *dict_get(const dict *d, const void *key, size_t len)
{
    if (d->count == 0)
        return NULL;
    struct entry *e = *find(d, key, len, hash_bytes(key, len));
    return e != NULL ? e->value : NULL;
}

void *dict_put(dict *d, const void *key, size_t len, void *value)
{
    uint64_t h = hash_bytes(key, len);
    if (d->buckets == NULL)
        d->buckets = xcalloc(d->mask + 1, sizeof(*d->buckets));
    struct entry **pp = find(d, key, len, h);
    if (*pp != NULL) {
        void *old = (*pp)->value;
        (*pp)->value = value;
        return old;
    }
    struct entry *e = xmalloc(sizeof(*e) + len);
    e->next = NULL;
    e->hash = h;
    e->value = value;
    e->len = len;
    memcpy(e->key, key, len);
    *pp = e;
    if (++d->count > d->mask + 1)
        grow(d);
    return NULL;
}

void *dict_del(dict *d, const void *key, size_t len)
{
    if (d->count == 0)
        return NULL;
    struct entry **pp = find(d, key, len, hash_bytes(key, len));
    struct entry *e = *pp;
    if (e == NULL)
        return NULL;
    void *value = e->value;
    *pp = e->next;
    xfree(e);
    d->count--;
    return value;
}

void dict_foreach(const dict *d, int (*fn)(const void *key, size_t len, void *value, void *arg),
                  void *arg)
{
    for (size_t i = 0; d->buckets != NULL && i <= d->mask; i++)
        for (struct entry *e = d->buckets[i]; e != NULL; e = e->next)
            if (fn(e->key, e->len, e->value, arg) != 0)
                return;
}

struct keys_ctx {
    char **keys;
    size_t n;
};

static int copy_key(const void *key, size_t len, void *value, void *arg)
{
    struct keys_ctx *c = arg;
    c->keys[c->n++] = xstrndup(key, len);
    return 0;
}

char **dict_keys(const dict *d, size_t *n)
{
    struct keys_ctx c = {xmalloc((d->count ? d->count : 1) * sizeof(char *)), 0};
    dict_foreach(d, copy_key, &c);
    *n = c.n;
    return c.keys;
}

void dict_keys_free(char **keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        xfree(keys[i]);
    xfree(keys);
}
