/* clustermap.h - the cluster map as JSON, the form a node answers MAP_QUERY
 * with and brokers and backends learn the cluster from:
 *
 *   {"epoch": 1, "shardCount": 4096,
 *    "nodes": [{"id": "node1", "request": "tcp://...", "delivery": "tcp://...",
 *               "shards": "0-1364"}, ...]}
 *
 * and the client side: fetching it from one node and filling a configuration. */
#ifndef EDDY_CLUSTERMAP_H
#define EDDY_CLUSTERMAP_H

#include <stdbool.h>
#include <signal.h>
#include <stdint.h>

#include "config.h"
#include "shardmap.h"

/* The map of cfg's cluster as JSON text (owned by the caller, xfree). A lone
 * node (no cluster.nodes) describes itself with self_request/self_delivery. */
char *clustermap_json(const eddy_config *cfg, const shardmap *map, const char *self_id,
                      const char *self_request, const char *self_delivery);
/* Replaces cfg's node list and epoch with the map in json. Returns 0, or -1
 * with a message in err (not JSON, missing fields, more than CONFIG_MAX_NODES). */
int clustermap_apply(eddy_config *cfg, const char *json, size_t len, char *err, size_t err_len);
/* Asks the node at request_url for the map (MAP_QUERY), retrying (one
 * `waiting-for-seed` line, then quiet) until it answers, *stop is set (stop
 * may be NULL) or the deadline (now_ms clock; 0 = none) passes. Returns the
 * JSON text (owned by the caller, xfree) or NULL. */
char *clustermap_fetch(const char *request_url, volatile sig_atomic_t *stop, int64_t deadline);

#endif
