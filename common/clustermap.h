/* clustermap.h - the cluster map: the nodes of a cluster (id, the addresses
 * peers reach them at, the shards each owns) and its epoch. The configuration
 * holds one (cluster.nodes, cluster.epoch), and so does every backend (learnt
 * from a node); on the wire it is JSON, the form a node answers MAP_QUERY with:
 *
 *   {"epoch": 1, "shardCount": 4096,
 *    "nodes": [{"id": "node1", "request": "tcp://...", "delivery": "tcp://...",
 *               "shards": "0-1364"}, ...]}
 *
 * With the metadata group (cluster.raft) the map changes at run time: a map
 * made from its committed state adds "version" (the metadata map's version),
 * "helloDigest" (16 hex digits: the digest of the static assignment, which
 * HELLO keeps carrying so that no peer is refused after a failover) and
 * "shardEpochs" ([[epoch, "ranges"], ...]: the shards whose epoch differs
 * from "epoch"), and each node's "shards" are its current primaries (a shard
 * no node lists has no primary: it is unavailable). Without those keys (the
 * static map, version 0) the text is what it always was.
 *
 * Not the configuration: libeddy uses this without the config table or YAML. */
#ifndef EDDY_CLUSTERMAP_H
#define EDDY_CLUSTERMAP_H

#include <stdbool.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "shardmap.h"

#define CLUSTER_MAX_NODES 64

typedef struct cluster_node {
    char *id;
    char *request;  /* nng address peers send operations to */
    char *delivery; /* nng address the node publishes deliveries on */
    char *shards;   /* explicit shard ranges ("0-1023,2048-3071"), or NULL: spread evenly */
    char *raft;     /* "IPv4:PORT" of its metadata group's Raft transport, or NULL: derived (clustermap_raft) */
} cluster_node;

/* A zeroed clustermap is empty. It owns its strings and shard_epochs
 * (clustermap_clear). */
typedef struct clustermap {
    int64_t epoch;
    int count;
    cluster_node nodes[CLUSTER_MAX_NODES];
    uint64_t version;      /* the metadata map's version (JSON "version"); 0: static */
    uint64_t hello_digest; /* JSON "helloDigest": what HELLO carries; 0: the map's own digest */
    uint64_t *shard_epochs;/* SHARD_COUNT epochs (JSON "shardEpochs"), or NULL: every shard at epoch */
} clustermap;

/* Frees the nodes' strings and the shard epochs; the map has no nodes and
 * version 0 (its epoch stays). */
void clustermap_clear(clustermap *m);
/* Appends a node (strings copied; id NULL: "node<N>"; shards may be NULL).
 * Returns 0, or -1 with the reason in err. */
int clustermap_add(clustermap *m, const char *id, const char *request, const char *delivery, const char *shards,
                   char *err, size_t err_len);
/* Appends the nodes of a JSON array of {id, request, delivery[, shards][, raft]}
 * (a jansson json_t). Returns 0, or -1 with the reason in err. */
struct json_t;
int clustermap_add_json(clustermap *m, struct json_t *nodes, char *err, size_t err_len);
/* Builds the shard map m describes: explicit when the nodes list their shards
 * (all of them must, covering every shard once), else spread evenly; no nodes
 * (a lone node) owns everything. A map with a version (made from the
 * metadata group) is explicit, a node listing no shards owns none, and a
 * shard nobody lists is unowned (SHARDMAP_UNOWNED); its shard epochs and
 * version are m's. Returns 0, or -1 with the reason in err. */
int clustermap_shards(const clustermap *m, shardmap *map, char *err, size_t err_len);
/* The digest a peer's HELLO carries for the map m describes (map: built by
 * clustermap_shards): m's helloDigest when it has one, else map's own. */
uint64_t clustermap_hello_digest(const clustermap *m, const shardmap *map);

/* The Raft transport address of node i (cluster.raft): its `raft` field, else
 * the host of its request address with the request port + RAFT_PORT_OFFSET
 * (tcp://10.0.0.5:6021 -> 10.0.0.5:6024). libraft 0.15 needs an IPv4
 * address: a host name is refused, as is a port beyond 65535. Writes it into
 * out. Returns 0, or -1 with the reason (naming the node) in err. */
#define RAFT_PORT_OFFSET 3
int clustermap_raft(const clustermap *m, int i, char *out, size_t out_len, char *err, size_t err_len);
/* True when addr is "IPv4:PORT": a dotted-quad host and a port 1..65535 (what libraft 0.15 takes). */
bool clustermap_ipv4_port(const char *addr);

/* The map as JSON text (owned by the caller, xfree), with map's assignment.
 * A lone node (no nodes) describes itself with self_id/request/delivery.
 * When map has a version, the text carries it, hello_digest and the shard
 * epochs that differ from the map's (see the top of this file). */
char *clustermap_json(const clustermap *m, const shardmap *map, uint64_t hello_digest, const char *self_id,
                      const char *self_request, const char *self_delivery);
/* Replaces m's nodes, epoch, version, hello digest and shard epochs with the
 * map in json (at most len bytes; every count and range checked before
 * anything is kept). Returns 0, or -1 with a message in err (not JSON,
 * missing fields, more than CLUSTER_MAX_NODES nodes or SHARD_COUNT shard
 * epochs, a bad range or epoch, a shard given two epochs); m is untouched then. */
int clustermap_parse(clustermap *m, const char *json, size_t len, char *err, size_t err_len);
/* The questions below go over TLS with tls's credentials (borrowed; NULL
 * for none) when request_url is tls+tcp:// (common/linktls.h). */
struct linktls;
/* Asks the node at request_url for the map (MAP_QUERY), retrying (one
 * `waiting-for-seed` line, then quiet) until it answers, *stop is set (stop
 * may be NULL) or the deadline (now_ms clock; 0 = none) passes. Returns the
 * JSON text (owned by the caller, xfree) or NULL. */
char *clustermap_fetch(const char *request_url, const struct linktls *tls, volatile sig_atomic_t *stop,
                       int64_t deadline);
/* One NODE_STATS round trip to the node at request_url (its counters as a JSON
 * object, proto/operations.md), waiting at most timeout_ms. Returns the JSON
 * (owned by the caller, xfree) or NULL when the node did not answer. */
char *clustermap_node_stats(const char *request_url, const struct linktls *tls, int timeout_ms);
/* One CLUSTER_STATUS round trip: the metadata group's map as the node at
 * request_url sees it (JSON, proto/operations.md; owned by the caller, xfree)
 * or NULL when it did not answer. */
char *clustermap_node_cluster_status(const char *request_url, const struct linktls *tls, int timeout_ms);
/* One RELOAD round trip: the node at request_url reads its permission rules
 * again and has every broker it serves do the same. Returns its answer
 * ({"reloaded":bool}, owned by the caller, xfree) or NULL (no answer). */
char *clustermap_node_reload(const char *request_url, const struct linktls *tls, int timeout_ms);
/* One CLUSTER_PROMOTE round trip (eddy ctl cluster promote): request is the
 * JSON asked (proto/operations.md). Returns the node's JSON answer (owned by
 * the caller, xfree) or NULL (no answer). */
char *clustermap_node_promote(const char *request_url, const struct linktls *tls, const char *request,
                              int timeout_ms);
/* One MAP_QUERY round trip, no retries: the node's map JSON (owned by the
 * caller, xfree) or NULL. */
char *clustermap_node_map(const char *request_url, const struct linktls *tls, int timeout_ms);

#endif
