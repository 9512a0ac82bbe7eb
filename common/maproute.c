/* maproute.c - the routing shard map made from a metamap (see maproute.h). */
#include "maproute.h"

int maproute_build(const metamap *m, const shardmap *static_map, shardmap *out)
{
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        if (m->shards[s].epoch == 0)
            return -1;
    out->epoch = static_map->epoch;
    out->version = m->version;
    out->node_count = static_map->node_count;
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        const meta_shard *sh = &m->shards[s];
        unsigned primary = sh->ncopies > 0 ? (unsigned)sh->copies[0] - 1 : SHARDMAP_UNOWNED;
        out->owner[s] = (uint16_t)(primary < static_map->node_count ? primary : SHARDMAP_UNOWNED);
        out->shard_epoch[s] = sh->epoch;
    }
    return 0;
}
