/* clustermap.h - the cluster map: the nodes of a cluster (id, the addresses
 * peers reach them at, the shards each owns) and its epoch. The configuration
 * holds one (cluster.nodes, cluster.epoch), and so does every backend (learnt
 * from a node); on the wire it is JSON, the form a node answers MAP_QUERY with:
 *
 *   {"epoch": 1, "shardCount": 4096,
 *    "nodes": [{"id": "node1", "request": "tcp://...", "delivery": "tcp://...",
 *               "shards": "0-1364"}, ...]}
 *
 * Not the configuration: libeddy uses this without the config table or YAML. */
#ifndef EDDY_CLUSTERMAP_H
#define EDDY_CLUSTERMAP_H

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
} cluster_node;

/* A zeroed clustermap is empty. It owns its strings (clustermap_clear). */
typedef struct clustermap {
    int64_t epoch;
    int count;
    cluster_node nodes[CLUSTER_MAX_NODES];
} clustermap;

/* Frees the nodes' strings; the map has no nodes (its epoch stays). */
void clustermap_clear(clustermap *m);
/* Appends a node (strings copied; id NULL: "node<N>"; shards may be NULL).
 * Returns 0, or -1 with the reason in err. */
int clustermap_add(clustermap *m, const char *id, const char *request, const char *delivery, const char *shards,
                   char *err, size_t err_len);
/* Appends the nodes of a JSON array of {id, request, delivery[, shards]}
 * (a jansson json_t). Returns 0, or -1 with the reason in err. */
struct json_t;
int clustermap_add_json(clustermap *m, struct json_t *nodes, char *err, size_t err_len);
/* Builds the shard map m describes: explicit when the nodes list their shards
 * (all of them must, covering every shard once), else spread evenly; no nodes
 * (a lone node) owns everything. Returns 0, or -1 with the reason in err. */
int clustermap_shards(const clustermap *m, shardmap *map, char *err, size_t err_len);

/* The map as JSON text (owned by the caller, xfree), with map's assignment.
 * A lone node (no nodes) describes itself with self_id/request/delivery. */
char *clustermap_json(const clustermap *m, const shardmap *map, const char *self_id, const char *self_request,
                      const char *self_delivery);
/* Replaces m's nodes and epoch with the map in json. Returns 0, or -1 with a
 * message in err (not JSON, missing fields, more than CLUSTER_MAX_NODES). */
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
/* One RELOAD round trip: the node at request_url reads its permission rules
 * again and has every broker it serves do the same. Returns its answer
 * ({"reloaded":bool}, owned by the caller, xfree) or NULL (no answer). */
char *clustermap_node_reload(const char *request_url, const struct linktls *tls, int timeout_ms);

#endif
