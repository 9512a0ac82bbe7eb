/* metaplan.h - what the leader of the metadata group proposes so that the
 * committed map (common/metamap.h) describes the configured cluster. Today
 * that is the bootstrap: one ADD_NODE per configured node the map lacks, then
 * one SPREAD whose assignment is exactly the static one the nodes and brokers
 * route by (clustermap_shards's primaries, replicas_of's replicas, the map's
 * epoch), so switching routing to the Raft map changes nothing at start.
 *
 * Pure: no Raft, no threads, no I/O. It is not a membership-change planner
 * (nodes joining or leaving a bootstrapped map), nor failover: those come
 * with later steps of issue 18.
 *
 * Member ids: the node at index i of cluster.nodes is member i + 1 (and Raft
 * server i + 1). Commands are chained by expect_version (the first on the
 * map's version, each next one on the version the previous one makes), so a
 * plan proposed twice (two leaders, a retry) applies at most once: every
 * command of the stale copy is refused (ESTALE, or EEXISTS/EASSIGNED; the
 * first ADD_NODE on an empty map expects version 0, which means any, and a
 * second copy of it is refused as EEXISTS). */
#ifndef EDDY_METAPLAN_H
#define EDDY_METAPLAN_H

#include <msgpack.h>
#include <stddef.h>

#include "metamap.h"
#include "shardmap.h"

/* A configured node, as the map's member id (index + 1) will describe it.
 * Strings borrowed. */
typedef struct metaplan_node {
    const char *name, *request, *delivery, *raft;
} metaplan_node;

#define METAPLAN_MAX (META_MAX_MEMBERS + 1)

/* The commands to propose, in order, encoded (metacmd_encode). Owned by the
 * plan: metaplan_free. */
typedef struct metaplan {
    unsigned count;
    msgpack_sbuffer cmds[METAPLAN_MAX];
} metaplan;

/* Fills out with what the leader proposes to bootstrap m into the cluster of
 * nodes (n, in cluster.nodes order) assigned as map (n nodes; its epoch
 * becomes every shard's) with `copies` copies of each shard. out->count is 0
 * when there is nothing to do (every shard assigned already). Returns 0, or
 * -1 with the reason in err (out empty) when m cannot be brought there by a
 * bootstrap: a member differs from the configured node of its id, is not
 * configured, or copies/n are out of bounds. out is always initialised. */
int metaplan_bootstrap(const metamap *m, const metaplan_node *nodes, unsigned n, const shardmap *map,
                       unsigned copies, metaplan *out, char *err, size_t err_len);
/* Frees the plan's commands (count 0 afterwards). NULL is fine. */
void metaplan_free(metaplan *p);

#endif
