/* shardmap.h - which node owns a name.
 *
 * A fixed number of virtual shards (SHARD_COUNT, a power of two). A name maps to
 * a shard by a stable hash (FNV-1a 64) of the whole name, or of the part inside
 * the first "{...}" when that part is non-empty, so "{game-7}/board" and
 * "{game-7}/players" share a shard (Redis Cluster hash tags). The map assigns
 * every shard to a node index and carries an epoch (the configuration's,
 * cluster.epoch, which HELLO checks), a per-shard epoch and the version of the
 * metadata map it was made from (0: the static map, every shard at the map's
 * epoch). A request stamped with another shard epoch is refused by the node,
 * never served wrongly. Nothing here knows about transports: node addresses
 * live in the cluster configuration. */
#ifndef EDDY_SHARDMAP_H
#define EDDY_SHARDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHARD_COUNT 4096u
#define SHARDMAP_MAX_NODES 256u

typedef struct shardmap {
    uint64_t epoch;               /* the configuration's (cluster.epoch): HELLO carries it */
    uint64_t version;             /* the metadata map's version this was made from; 0: static */
    unsigned node_count;
    uint16_t owner[SHARD_COUNT];  /* shard -> node index (SHARDMAP_UNOWNED: no primary) */
    uint64_t shard_epoch[SHARD_COUNT]; /* shard -> its epoch; operations on it carry this */
} shardmap;

/* The shard of a name (hash tag aware). */
uint32_t shard_of(const char *name, size_t len);
/* Fills map with shards spread evenly over node_count nodes (contiguous ranges),
 * version 0, every shard's epoch the map's; returns -1 when node_count is 0 or
 * above SHARDMAP_MAX_NODES. */
int shardmap_init_even(shardmap *map, unsigned node_count, uint64_t epoch);
/* Assigns the shards listed in spec ("0-1023,2048-3071": ranges or single
 * shards, separated by commas or spaces) to node. Returns 0, or -1 with a
 * message in err (bad syntax, a shard out of range, a shard already owned:
 * owners must be SHARDMAP_UNOWNED before, see shardmap_init_empty). */
int shardmap_assign(shardmap *map, unsigned node, const char *spec, char *err, size_t err_len);
/* Starts an explicit map: every shard unowned, version 0, every shard's epoch
 * the map's. */
#define SHARDMAP_UNOWNED 0xffffu
void shardmap_init_empty(shardmap *map, unsigned node_count, uint64_t epoch);
/* Returns the first unowned shard, or -1 when every shard has an owner. */
int shardmap_first_unowned(const shardmap *map);
/* Writes node's shards as ranges ("0-1364,4000") into out; returns the length
 * (truncated output ends with "..."; 64 KiB always suffices). */
size_t shardmap_format(const shardmap *map, unsigned node, char *out, size_t out_len);
/* A stable 64-bit digest of the assignment (not the epoch), never 0: two
 * processes with the same epoch but different maps see different digests. */
uint64_t shardmap_digest(const shardmap *map);
/* The nodes holding a copy of shard when each shard has `copies` of them
 * (cluster.replicas): out[0] is its primary (the owner), out[1..] its
 * replicas, the nodes after the primary in index order (wrapping), so that
 * with the even map every node replicates the same number of shards. Returns
 * how many were written: copies, capped at node_count and at
 * SHARDMAP_MAX_COPIES. The static assignment of replication; a replicated
 * shard map (issue 18, Raft) replaces this one function. */
#define SHARDMAP_MAX_COPIES 8u
unsigned replicas_of(const shardmap *map, uint32_t shard, unsigned copies, uint16_t out[SHARDMAP_MAX_COPIES]);
/* The node index that owns shard (SHARDMAP_UNOWNED: none, the shard is
 * unavailable: callers check it against their node count). */
static inline unsigned shardmap_owner(const shardmap *map, uint32_t shard)
{
    return map->owner[shard & (SHARD_COUNT - 1)];
}
/* The epoch operations on shard carry (the map's epoch in a static map). */
static inline uint64_t shardmap_shard_epoch(const shardmap *map, uint32_t shard)
{
    return map->shard_epoch[shard & (SHARD_COUNT - 1)];
}
/* The shards whose owner differs between from and to (same node_count) as
 * bits in moved (SHARD_COUNT / 8 bytes, the caller's; bit s % 8 of byte s / 8).
 * Returns how many. */
unsigned shardmap_moved(const shardmap *from, const shardmap *to, uint8_t moved[SHARD_COUNT / 8]);
static inline bool shardmap_bit(const uint8_t *bits, uint32_t shard)
{
    return (bits[(shard & (SHARD_COUNT - 1)) / 8] >> (shard % 8)) & 1u;
}
/* Writes the shards s for which in(s, arg) holds as ranges, the form
 * shardmap_format writes (same truncation). Returns the length. */
size_t shardmap_format_if(bool (*in)(uint32_t shard, void *arg), void *arg, char *out, size_t out_len);

#endif
