/* node.h - the node role, as the `eddy` command starts it: owns shards of the
 * name space and serves the operations brokers and backends send for names
 * in them. The files of node/ share internal.h; this header is all the rest of
 * eddy sees.
 *
 * A node listens on two nng sockets: REP for operation batches and, on its
 * delivery address, a raw REP that answers each peer's pull with the delivery
 * batch gathered for it (prefixed with the peer's id), so a batch crosses only
 * the connection of the peer it is for. All state is touched under one lock, by
 * the executor thread or (standalone) by the in-process broker's thread, so
 * shard work is serialized without further locks. Nothing here knows about
 * websockets. */
#ifndef EDDY_NODE_H
#define EDDY_NODE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <nng/nng.h>

#include "config.h"
#include "shardmap.h"

typedef struct node node;

/* Starts a node owning the shards `map` assigns to self_index, listening for
 * peers on request_url (REP) and delivery_url (raw REP: their pulls); both NULL: no sockets at
 * all (standalone whose broker is in-process and takes no backends). cfg is
 * borrowed and must outlive the node. Returns NULL (logged) when storage or a
 * socket cannot be opened, or the permissions file does not compile. */
node *node_start(const eddy_config *cfg, const char *request_url, const char *delivery_url, const shardmap *map,
                 unsigned self_index);
/* The addresses the node is really bound to (tcp port 0 resolved); "" without sockets. */
const char *node_request_url(const node *n);
const char *node_delivery_url(const node *n);
/* Serves by map (copied) from now on: operations are applied when this
 * node is their shard's primary in it and they carry that shard's epoch;
 * MAP_QUERY answers it and every peer is sent it (OP_MAP delivery). The
 * executor calls it when the metadata group commits a change (cluster.raft);
 * tests call it directly. Takes the node lock. */
void node_set_route(node *n, const shardmap *map);
/* Tests, without cluster.raft: follows m (copied) as the executor follows the
 * metadata group's committed map (routing, replication's fencing and
 * shipping). Ignored when m is not bootstrapped. Takes the node lock. */
struct metamap;
void node_follow_metamap(node *n, const struct metamap *m);
/* Stops the executor, then closes the sockets (bounded). Frees n; NULL is fine. */
void node_stop(node *n);
/* SIGHUP: compiles the permission rules again and swaps them in between two
 * batches, and reads the cluster.tls files again for the links accepted from
 * now on; a file that fails leaves what is in force (logged). Any thread. */
void node_reload(node *n);
/* Writes the node's /metrics families (all eddy_node_*, Prometheus text) to
 * f: standalone appends them to its broker's. Any thread, without the lock. */
void node_metrics(node *n, FILE *f);
/* Serves GET /metrics (the process's lines, then node_metrics) and GET
 * /health-check (200 while the executor comes round, 503 when it has not
 * within cluster.requestTimeout) on addr (node.metrics: "host:port", port 0
 * picks a free one; logged as node-metrics-listening) until node_stop.
 * Returns 0, or -1 (logged) when it cannot listen. */
int node_serve_metrics(node *n, const char *addr);
/* The address that listener is bound to ("http://127.0.0.1:6023"), "" without one. */
const char *node_metrics_url(const node *n);

/* ---- standalone: the broker in the same process (the local peer), local.c ---- */

/* Makes peer_id the local peer: its deliveries wait in a bounded outbox (an
 * overflow is dropped and shows as a numbering gap, as over a socket) instead
 * of being published; it is never expired for silence; wake(ctx) is called,
 * from the node's threads, when the outbox gets deliveries the peer did not
 * cause itself (storage completions, backends' operations, timers). */
void node_attach_local(node *n, uint64_t peer_id, void (*wake)(void *ctx), void *ctx);
/* The local peer is going away: wake is never called again once this returns
 * (its deliveries are kept, bounded, until node_stop). */
void node_detach_local(node *n);
/* Applies one request batch (as a peer sends it: batch header, then the
 * operations) on the calling thread, under the node's lock. Returns the reply
 * (owned by the caller; NULL when out of memory). Its deliveries are in the
 * outbox when it returns. */
nng_msg *node_local_request(node *n, const void *body, size_t len);
/* The oldest delivery batch in the outbox (owned by the caller), or NULL when
 * it is empty; then *published is how many operations were numbered for the
 * local peer so far: any it has not received were dropped. */
nng_msg *node_local_take(node *n, uint64_t *published);

/* ---- an embedding that plays every peer itself (the engine tests) ---- */

/* On a node started without sockets, the deliveries for peers other than the
 * local one are handed to tap(ctx, msg) (msg owned by tap: the 8-byte
 * big-endian peer id, then the delivery batch) instead of being dropped. It is
 * called under the node's lock, by whichever thread applies the request, a
 * storage completion or a timer; set it before the first request. */
void node_tap_deliveries(node *n, void (*tap)(void *ctx, nng_msg *msg), void *ctx);

#endif
