/* maproute.h - the routing shard map made from the metadata group's map.
 *
 * A node with cluster.raft routes by its committed metamap (common/metamap.h):
 * each shard's owner is its primary (copies[0], member id = 1 + the node's
 * index in cluster.nodes) and operations on it must carry its epoch. This
 * turns a metamap into the shardmap the rest of eddy routes with (the owner
 * per shard, the shard epochs, the map version); the map's own epoch stays
 * the configuration's (HELLO carries it, never the changing map).
 *
 * Pure data, no Raft, no I/O. Not for libeddy (which learns maps as JSON). */
#ifndef EDDY_MAPROUTE_H
#define EDDY_MAPROUTE_H

#include "metamap.h"
#include "shardmap.h"

/* Fills out from m: node_count and epoch from static_map (the
 * configuration's), version and shard epochs from m, owner = primary's index
 * (SHARDMAP_UNOWNED for a shard without a primary, or whose primary is not a
 * configured node). Returns 0, or -1 (out untouched) while m is not routable
 * yet: some shard was never assigned (epoch 0: the bootstrap is under way). */
int maproute_build(const metamap *m, const shardmap *static_map, shardmap *out);

#endif
