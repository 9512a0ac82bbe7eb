/* node.h - the node role: owns shards of the name space and serves the
 * operations brokers send for names in them.
 *
 * A node listens on two nng sockets: REP for operation batches from brokers
 * (and, later, backends) and PUB for deliveries, each delivery batch prefixed
 * with the destination broker's id so a broker's SUB receives only its own.
 * All state is touched by one executor thread (the request loop), so shard work
 * is serialized without locks. Nothing here knows about websockets. */
#ifndef EDDY_NODE_H
#define EDDY_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include <nng/nng.h>

#include "config.h"
#include "dict.h"
#include "ops.h"
#include "persist.h"
#include "shardmap.h"

typedef struct node node;

/* Starts a node listening on request_url and delivery_url (and, when
 * backend_request is not NULL, also on backend_request and backend_delivery:
 * standalone's tcp endpoint beside its inproc one), owning the shards `map`
 * assigns to self_index. cfg is borrowed and must outlive the node. Returns
 * NULL (logged) when a socket cannot be opened or bound. */
node *node_start(const eddy_config *cfg, const char *request_url, const char *delivery_url,
                 const char *backend_request, const char *backend_delivery, const shardmap *map,
                 unsigned self_index);
/* The addresses the node is really bound to (tcp port 0 resolved). */
const char *node_request_url(const node *n);
const char *node_delivery_url(const node *n);
/* Stops the executor, then closes the sockets (bounded). Frees n; NULL is fine. */
void node_stop(node *n);

/* ---- standalone: the broker in the same process (the local peer) ---- */

/* Makes peer_id the local peer: its deliveries wait in a bounded outbox (an
 * overflow is dropped and shows as a numbering gap, as over a socket) instead
 * of being published; it is never expired for silence; wake(ctx) is called,
 * from the node's thread, when the outbox gets deliveries the peer did not
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

/* ---- internal: shared by the files of node/ ---- */

/* What the node knows of one broker (or backend) that talks to it. */
typedef struct peer {
    uint64_t id;
    int64_t last_seen_ms;
    uint64_t delivery_seq; /* numbers every delivery batch sent to this peer */
    op_batch out;          /* deliveries gathered during the current request */
    bool dirty;            /* out holds something to publish */
    struct peer *next_dirty;
    dict *event_names;     /* names this peer has event interest in (values unused) */
    bool leaving;          /* said BYE: dropped once its batch is done */
} peer;

/* Per-request context handed to the operation handlers. */
typedef struct node_req {
    node *n;
    peer *from;
    op_batch *reply; /* operations answered to the requester */
} node_req;

/* Queues an encoded delivery for p (published when the request is done). */
void node_deliver_encoded(node *n, peer *p, const void *bytes, size_t len);
/* Checks that this node owns o's shard under the current epoch; if not, appends
 * an OP_ERROR (WRONG_SHARD, with the node's epoch) to the reply and returns false. */
bool node_owns(node_req *req, const op *o);
/* The same for another name of o (listen answers are routed by the subscription). */
bool node_owns_name(node_req *req, const op *o, strview name);

/* node/events.c: event interest and emit fan-out. */
typedef struct event_table event_table;
event_table *events_new(node *n);
void events_free(event_table *t);
void events_interest(event_table *t, peer *p, strview name);
void events_uninterest(event_table *t, peer *p, strview name);
/* Delivers o (an EVENT_EMIT) to every interested peer. */
void events_emit(event_table *t, node_req *req, const op *o);
/* Drops every interest p holds (p is going away). Returns how many. */
size_t events_drop_peer(event_table *t, peer *p);
size_t events_name_count(const event_table *t);
/* Calls fn for every name with interest. */
void events_foreach_name(event_table *t, void (*fn)(void *arg, const char *name, size_t len), void *arg);

/* node/records.c: the record engine (one writer per record, durable answers). */
typedef struct record_table record_table;
record_table *records_new(node *n, persist *p, size_t cache_bytes, size_t max_record_size);
void records_free(record_table *t);
/* Applies any OP_RECORD_* operation from req->from. */
void records_apply(record_table *t, node_req *req, const op *o);
/* Takes a storage completion (d stays the caller's). */
void records_on_persist(record_table *t, persist_done *d);
/* Blocks until one storage completion is handled (storage queue full). */
void records_on_persist_wait(record_table *t);
/* Evicts cold records while the cache is over its bound. */
void records_sweep(record_table *t);
/* Forgets p's interest and queued work (p is going away). */
void records_drop_peer(record_table *t, peer *p);
size_t records_cached(const record_table *t);
/* Calls fn for every record with subscribers. */
void records_foreach_subscribed(record_table *t, void (*fn)(void *arg, const char *name, size_t len),
                                void *arg);
/* Tells the record's subscribers it has (or lost) an active provider. */
void records_provider_changed(record_table *t, const char *name, size_t len, bool has);

/* node/rpc.c: RPC providers and calls for the names this node owns. */
typedef struct rpc_table rpc_table;
rpc_table *rpc_new(node *n, const eddy_config *cfg);
void rpc_free(rpc_table *t);
/* Applies OP_RPC_PROVIDE/UNPROVIDE/REQUEST/ANSWER from req->from. */
void rpc_apply(rpc_table *t, node_req *req, const op *o);
/* Ends calls whose accept or response timeout has passed. */
void rpc_timers(rpc_table *t);
/* Removes p's providers (moving their calls) and forgets p as a caller. */
void rpc_drop_peer(rpc_table *t, peer *p);
size_t rpc_calls(const rpc_table *t);

/* node/listen.c: listening (active providers) for events and records. */
typedef struct listen_table listen_table;
listen_table *listen_new(node *n, const eddy_config *cfg);
void listen_free(listen_table *t);
/* Applies OP_LISTEN/UNLISTEN/LISTEN_ANSWER; o->orig is the topic. */
void listen_apply(listen_table *t, node_req *req, const op *o);
/* A name of topic got its first subscriber on this node (added) or lost its last. */
void listen_interest(listen_table *t, int topic, const char *name, size_t len, bool added);
bool listen_has_provider(listen_table *t, int topic, const char *name, size_t len);
/* Asks the next listener where one did not answer in time. */
void listen_timers(listen_table *t);
void listen_drop_peer(listen_table *t, peer *p);

/* accessors for the tables above */
listen_table *node_listen(node *n);
record_table *node_records(node *n);
event_table *node_events(node *n);

/* node/presence.c: online users counted cluster-wide, per owning node. */
typedef struct presence_table presence_table;
presence_table *presence_new(node *n);
void presence_free(presence_table *t);
void presence_apply(presence_table *t, node_req *req, const op *o);
/* p is gone: its users may go offline (LEAVE is announced), its subscriptions end. */
void presence_drop_peer(presence_table *t, peer *p);

#endif
