/* shardmap.c - name hashing and the shard -> node map (see shardmap.h). */
#include "shardmap.h"

#include <string.h>

#include "dict.h"

uint32_t shard_of(const char *name, size_t len)
{
    const char *open = memchr(name, '{', len);
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
    map->node_count = node_count;
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        map->owner[s] = (uint16_t)((uint64_t)s * node_count / SHARD_COUNT);
    return 0;
}
