/* shardmap.c - name hashing and the shard -> node map (see shardmap.h). */
#include "shardmap.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dict.h"

uint32_t shard_of(const char *name, size_t len)
{
    const char *open = len > 0 ? memchr(name, '{', len) : NULL; /* no name: NULL, 0 */
    if (open != NULL) {
        size_t rest = len - (size_t)(open - name) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close != NULL && close > open + 1) {
            name = open + 1;
            len = (size_t)(close - open - 1);
        }
    }
    return (uint32_t)(hash_bytes(name, len) & (SHARD_COUNT - 1));
}

int shardmap_init_even(shardmap *map, unsigned node_count, uint64_t epoch)
{
    if (node_count == 0 || node_count > SHARDMAP_MAX_NODES)
        return -1;
    map->epoch = epoch;
    map->version = 0;
    map->node_count = node_count;
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        map->owner[s] = (uint16_t)((uint64_t)s * node_count / SHARD_COUNT);
        map->shard_epoch[s] = epoch;
    }
    return 0;
}

void shardmap_init_empty(shardmap *map, unsigned node_count, uint64_t epoch)
{
    map->epoch = epoch;
    map->version = 0;
    map->node_count = node_count;
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        map->owner[s] = SHARDMAP_UNOWNED;
        map->shard_epoch[s] = epoch;
    }
}

/* Reads a shard number at *p; returns it, or -1 (no digits, or too large). */
static long read_shard(const char **p)
{
    if (!isdigit((unsigned char)**p))
        return -1;
    char *end;
    long v = strtol(*p, &end, 10);
    *p = end;
    return v >= 0 && v < (long)SHARD_COUNT ? v : -1;
}

int shardmap_assign(shardmap *map, unsigned node, const char *spec, char *err, size_t err_len)
{
    const char *p = spec;
    bool any = false;
    for (;;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        const char *at = p;
        long lo = read_shard(&p), hi = lo;
        if (lo >= 0 && *p == '-') {
            p++;
            hi = read_shard(&p);
        }
        if (lo < 0 || hi < lo || (*p != '\0' && *p != ',' && *p != ' ')) {
            snprintf(err, err_len, "bad shard range at '%.20s' (expected FIRST-LAST or N, 0..%u)", at,
                     SHARD_COUNT - 1);
            return -1;
        }
        for (long s = lo; s <= hi; s++) {
            if (map->owner[s] != SHARDMAP_UNOWNED) {
                snprintf(err, err_len, "shard %ld is assigned twice (nodes %u and %u)", s,
                         map->owner[s] + 1, node + 1);
                return -1;
            }
            map->owner[s] = (uint16_t)node;
        }
        any = true;
    }
    if (!any) {
        snprintf(err, err_len, "empty shard list");
        return -1;
    }
    return 0;
}

int shardmap_first_unowned(const shardmap *map)
{
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        if (map->owner[s] == SHARDMAP_UNOWNED)
            return (int)s;
    return -1;
}

struct owned_by {
    const shardmap *map;
    unsigned node;
};

static bool owned_by(uint32_t shard, void *arg)
{
    const struct owned_by *o = arg;
    return o->map->owner[shard] == o->node;
}

size_t shardmap_format(const shardmap *map, unsigned node, char *out, size_t out_len)
{
    return shardmap_format_if(owned_by, &(struct owned_by){map, node}, out, out_len);
}

size_t shardmap_format_if(bool (*in)(uint32_t shard, void *arg), void *arg, char *out, size_t out_len)
{
    size_t n = 0;
    if (out_len == 0)
        return 0;
    out[0] = '\0';
    for (uint32_t s = 0; s < SHARD_COUNT;) {
        if (!in(s, arg)) {
            s++;
            continue;
        }
        uint32_t e = s;
        while (e + 1 < SHARD_COUNT && in(e + 1, arg))
            e++;
        char part[32];
        int len = e == s ? snprintf(part, sizeof(part), "%s%u", n ? "," : "", s)
                         : snprintf(part, sizeof(part), "%s%u-%u", n ? "," : "", s, e);
        if (n + (size_t)len + 4 >= out_len) {
            snprintf(out + n, out_len - n, "...");
            return strlen(out);
        }
        memcpy(out + n, part, (size_t)len + 1);
        n += (size_t)len;
        s = e + 1;
    }
    return n;
}

unsigned shardmap_moved(const shardmap *from, const shardmap *to, uint8_t moved[SHARD_COUNT / 8])
{
    unsigned n = 0;
    memset(moved, 0, SHARD_COUNT / 8);
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        if (from->owner[s] != to->owner[s]) {
            moved[s / 8] |= (uint8_t)(1u << (s % 8));
            n++;
        }
    return n;
}

uint64_t shardmap_digest(const shardmap *map)
{
    uint8_t bytes[SHARD_COUNT * 2 + 4];
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        bytes[2 * s] = (uint8_t)(map->owner[s] >> 8);
        bytes[2 * s + 1] = (uint8_t)map->owner[s];
    }
    for (int i = 0; i < 4; i++)
        bytes[SHARD_COUNT * 2 + i] = (uint8_t)(map->node_count >> (24 - 8 * i));
    uint64_t h = hash_bytes(bytes, sizeof(bytes));
    return h ? h : 1;
}

unsigned replicas_of(const shardmap *map, uint32_t shard, unsigned copies, uint16_t out[SHARDMAP_MAX_COPIES])
{
    unsigned primary = shardmap_owner(map, shard);
    unsigned n = copies;
    if (n > map->node_count)
        n = map->node_count;
    if (n > SHARDMAP_MAX_COPIES)
        n = SHARDMAP_MAX_COPIES;
    if (n == 0 || primary >= map->node_count) {
        out[0] = (uint16_t)primary;
        return 1;
    }
    for (unsigned i = 0; i < n; i++)
        out[i] = (uint16_t)((primary + i) % map->node_count);
    return n;
}
