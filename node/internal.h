/* internal.h - what the files of node/ share. Modules are layered, and each
 * calls only those listed below it:
 *
 *   local.c      the in-process broker's entry points (node.h)
 *   node.c       sockets, the executor, batches; the owner table: each
 *                operation goes to the module whose row lists its kind, after
 *                the row's shard check
 *   changeset.c  atomic changesets: reads and checks them, answers them;
 *                records.c applies them
 *   events.c records.c validate.c rpc.c presence.c   one owner module each
 *   history.c    the events kept for resumable streams (events.c's)
 *   listen.c     listening, for the events and records modules
 *   guard.c      permissions the owner applies (rules that read the record)
 *   peers.c      the brokers and backends a node serves, and their deliveries
 *   storage.c persist.c   RocksDB and the storage thread
 *   stats.c      what the node counts for /metrics; httpd.c serves it
 *   meta.c       the metadata group on this node (cluster.raft): metaraft.c,
 *                metafsm.c
 *
 * All of it runs under the node's lock (node.c) unless a prototype says otherwise. */
#ifndef EDDY_NODE_INTERNAL_H
#define EDDY_NODE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <nng/nng.h>

#include "config.h"
#include "node.h"
#include "ops.h"
#include "permissions.h"
#include "persist.h"
#include "prom.h"
#include "shardmap.h"
#include "subs.h"

/* ---------------- stats.c ---------------- */

/* Why a delivery batch was not published. */
enum node_drop { DROP_OUTBOX_FULL, DROP_SEND_FAILED, DROP_FAULT, DROP_PEER_BEHIND, DROP_KINDS };

/* What becomes of validations (validate.c), counted for /metrics. */
enum validate_count {
    VALIDATE_COUNT_ASKED,              /* requests delivered to a validator (a moved one again) */
    VALIDATE_COUNT_ACCEPTED,
    VALIDATE_COUNT_REJECTED,
    VALIDATE_COUNT_REPLACED,
    VALIDATE_COUNT_MOVED,              /* to another validator: the first timed out or went away */
    VALIDATE_COUNT_TIMED_OUT,          /* no validator answered: refused */
    VALIDATE_COUNT_ACCEPTED_BY_POLICY, /* no validator answered: accepted (validation.acceptOnTimeout) */
    VALIDATE_COUNT_FULL,               /* refused at once: validation.maxPending in flight */
    VALIDATE_COUNT_STRAY,              /* answers ignored: late, unknown, or not from the validator asked */
    VALIDATE_COUNT_NONE_CONNECTED,     /* refused at once: validation.required, and no validator connected */
    VALIDATE_COUNT_KINDS
};

/* The messages on a node's cluster links, by what they are (stats.c names
 * them). */
enum link_traffic {
    LINK_REQUEST_IN,   /* request batches received (from brokers, backends, other nodes) */
    LINK_REPLY_OUT,    /* their replies */
    LINK_PULL_IN,      /* pulls received on the delivery address */
    LINK_DELIVERY_OUT, /* their answers: delivery batches, or empty */
    LINK_TRAFFIC_KINDS
};

/* What the node counts for /metrics. Written under the node's lock (the
 * executor, or standalone's broker thread inside node_local_request), read
 * by any thread without it: every field is a prom_counter (one writer at a
 * time). The gauges are published by the executor once per turn. */
typedef struct node_stats {
    prom_counter ops[OP_KIND_MAX];        /* operations applied, by kind (0: unknown kinds) */
    prom_histogram apply;                 /* one request batch applied, reply included */
    prom_counter malformed;               /* batches and operations rejected as malformed */
    prom_counter peers, peers_refused;    /* gauge; HELLOs refused (the table was full) */
    prom_counter records, record_bytes;   /* gauges: records held in memory, their bytes */
    prom_counter delivered_ops, delivered_batches; /* deliveries published (to brokers and backends) */
    prom_counter dropped[DROP_KINDS];     /* delivery batches not published, by reason */
    prom_counter denied, rule_errors;     /* record rules applied here (guard.c) that refused */
    prom_counter forbidden;               /* HELLOs and operations refused for the sender's role */
    prom_counter validations[VALIDATE_COUNT_KINDS]; /* validate.c: by enum validate_count */
    prom_counter alive_ms;                /* when a batch or an executor turn last ended (now_ms) */
    /* replica.c: batches from primaries */
    prom_counter repl_applied_batches, repl_applied_records; /* written here (durable once acknowledged) */
    prom_counter repl_duplicates;  /* batches seen before (a primary sending again): skipped, acknowledged */
    prom_counter repl_resyncs;     /* batches out of sequence: the primary was asked to send again */
    prom_counter outbox_dropped;   /* answers and updates about shards this node lost before they could leave */
    prom_counter repl_fenced;      /* batches refused: a lower epoch, or a shard the sender is not primary of */
    prom_counter repl_snapshots;   /* snapshots from primaries begun here (their shards dropped first) */
    prom_counter repl_snapshot_records, repl_snapshot_bytes; /* records (and their bytes) written from snapshot chunks */
    /* the backplane as this node's sockets carry it (enum link_traffic): every
     * message it takes and writes on its request and delivery addresses */
    prom_counter link_msgs[LINK_TRAFFIC_KINDS], link_bytes[LINK_TRAFFIC_KINDS];
    prom_counter replies_unsent; /* replies that could not leave in REPLY_SEND_MS: their connections closed */
} node_stats;

/* The longest a reply waits for its connection (node.c send_reply): then the
 * connection is closed (replies_unsent). */
#define REPLY_SEND_MS 200

/* Writes st's families (all eddy_node_*) to f. Any thread. */
void stats_write(const node_stats *st, const eddy_config *cfg, FILE *f);

/* ---------------- httpd.c ---------------- */

/* An HTTP listener on addr ("host:port" or "http://host:port"; port 0 picks
 * a free one) answering GET /metrics with what metrics(ctx, f) writes and GET
 * /health-check with 200 while healthy(ctx), else 503. Both are called on
 * nng's threads, several at once. NULL (logged) when it cannot listen.
 * Owned by the caller (httpd_stop). */
typedef struct httpd httpd;
httpd *httpd_start(const char *addr, void (*metrics)(void *ctx, FILE *f), bool (*healthy)(void *ctx), void *ctx);
/* The address it is bound to ("http://127.0.0.1:6023"). */
const char *httpd_url(const httpd *h);
/* Stops listening; no callback runs once it returns. Frees h; NULL is fine. */
void httpd_stop(httpd *h);

/* ---------------- peers.c ---------------- */

/* What the node knows of one broker (or backend) that talks to it. */
typedef struct peer {
    uint64_t id;
    int64_t last_seen_ms;
    uint64_t delivery_seq; /* numbers every delivery batch sent to this peer */
    op_batch out;          /* deliveries gathered and not yet sent */
    bool dirty;            /* in the dirty list: out is published at the end of the request */
    bool held;             /* out waits for the peer's next pull (not in the dirty list) */
    bool no_deliveries;    /* its HELLO said it never pulls: nothing is gathered for it */
    struct peer *next_dirty;
    nng_msg *pull;         /* its parked pull (its header routes the answer back), or NULL */
    int64_t pull_ms;       /* when it was parked */
    int64_t pulled_ms;     /* when its last pull came (when it joined, before one has) */
    struct peer *pull_prev, *pull_next; /* the parked pulls, oldest first */
    bool leaving;          /* said BYE: dropped once its batch is done */
    uint32_t pipe;         /* the nng pipe its HELLO came on (0: in-process): its batches must too */
    uint8_t role;          /* what it said HELLO as (enum link_role; its certificate's, over TLS) */
} peer;

typedef struct peers peers;

/* The peer table of the node numbered self (cfg and stats borrowed: what it
 * publishes and drops is counted there). Owned by the caller. */
peers *peers_new(const eddy_config *cfg, unsigned self, node_stats *stats);
void peers_free(peers *ps); /* frees every peer and what the outbox holds; NULL is fine */
/* Remote peers' deliveries answer their pulls on dlv (raw REP) from now on. */
void peers_set_socket(peers *ps, nng_socket dlv);
/* Before dlv closes (the executor stopped): nothing more is sent on it. */
void peers_unset_socket(peers *ps);
/* Reads the pulls waiting on the delivery socket (at most a bounded number:
 * true when more may wait), parks each with its peer and answers those whose
 * peer has deliveries waiting (or is unknown: empty). */
bool peers_take_pulls(peers *ps);
/* Answers pulls parked for PULL_IDLE_MS with nothing (the peer pulls again). */
void peers_expire_pulls(peers *ps, int64_t now);
/* Without a socket, remote peers' delivery batches go to tap (node_tap_deliveries). */
void peers_set_tap(peers *ps, void (*tap)(void *ctx, nng_msg *msg), void *ctx);
peer *peers_find(const peers *ps, uint64_t id);
size_t peers_count(const peers *ps);
uint64_t peers_refused(const peers *ps); /* HELLOs peers_admit refused since start */
/* True when id may join: it is known, the local peer, or the table is under
 * cluster.maxPeers; otherwise counts the refusal and logs it (peer-refused,
 * at most once a second, with the total). */
bool peers_admit(peers *ps, uint64_t id);
/* The peer with this id, created (and logged) when new (peers_admit first). */
peer *peers_join(peers *ps, uint64_t id);
/* Forgets p and frees it (its modules have let go of it). */
void peers_forget(peers *ps, peer *p);
/* Up to max peers silent for longer than cluster.brokerTimeout (never the local one). */
size_t peers_expired(peers *ps, peer **out, size_t max);
/* Queues an encoded delivery for p (published when the request is done). */
void peer_deliver(peers *ps, peer *p, const void *bytes, size_t len);
/* Encodes o once and queues it for p. */
void peer_deliver_op(peers *ps, peer *p, const op *o);
/* Queues o for every peer. */
void peers_deliver_all(peers *ps, const op *o);
/* Publishes every peer's gathered deliveries as one batch each. */
void peers_publish(peers *ps);
/* The local peer (standalone's broker): deliveries go to a bounded outbox. */
void peers_attach_local(peers *ps, uint64_t id, void (*wake)(void *ctx), void *ctx);
void peers_detach_local(peers *ps); /* no wake after this returns; any thread */
void peers_wake_local(peers *ps);   /* any thread; a no-op when detached */
/* While busy the local peer is inside a request and takes its outbox itself: no wake. */
void peers_local_busy(peers *ps, bool busy);
/* The oldest batch of the outbox (owned by the caller), or NULL. */
nng_msg *peers_take_local(peers *ps);
/* Operations numbered for the local peer so far. */
uint64_t peers_local_published(const peers *ps);

/* ---------------- the owner table: node.c ---------------- */

/* One request batch being applied: who sent it, and the reply. */
typedef struct node_req {
    peer *from;
    op_batch *reply; /* operations answered to the requester */
} node_req;

struct listen_table;
struct record_table;
typedef struct validators validators;
typedef struct replicate replicate;
struct replica_table;

/* What the owner modules are given when they are created. A module may fill
 * in its own field for the ones created after it: rows are created from the
 * last to the first (listen.c, last, is there for events.c and records.c). */
typedef struct node_env {
    const eddy_config *cfg;
    peers *peers;
    persist *persist;
    struct listen_table *listen;  /* set by listen.c: events and records report to it */
    struct record_table *records; /* set by records.c: node.c hands it storage completions */
    validators *validators;       /* set by validate.c: records.c has writes validated */
    permissions *rules;           /* NULL: permission.type none (node.c's; node_reload swaps it) */
    node_stats *stats;            /* node.c's: what modules count for /metrics */
    const shardmap *map;          /* node.c's: the static shard map of the configuration */
    const shardmap *route;        /* node.c's: the map operations are served by (owner and epoch per shard) */
    const struct metamap *mmap;   /* the metadata group's committed map once routing follows it (meta.c's,
                                     borrowed; its contents change at the executor's turn); NULL: static.
                                     Who replicates which shard to whom (replicate.c, replica.c) */
    struct meta_node *meta;       /* node.c's (meta_may_serve: records.c releases acknowledgements under it) */
    unsigned self;                /* this node's index in map */
    replicate *replicate;         /* node.c's: the primary side of replication; NULL with cluster.replicas 1 */
    struct replica_table *replica; /* set by replica.c: node.c hands it storage completions */
} node_env;

/* How node.c checks that an operation is this node's to apply. */
enum owner_route {
    ROUTE_NAME = 0,      /* the owner of o->name */
    ROUTE_REF,           /* the owner of o->ref (a listen answer: the subscription's owner) */
    ROUTE_EVERY_NODE,    /* every node (listen patterns) */
    ROUTE_NAME_UNLESS_ALL, /* the owner of o->name, or every node with OP_FLAG_ALL (presence) */
};

typedef struct owner_kind {
    uint32_t kind;
    uint32_t route; /* enum owner_route */
} owner_kind;

/* One topic on the owning node: a row of the table, a module of its own. */
typedef struct owner_module {
    const char *name;
    const owner_kind *kinds; /* the operations it applies; kind 0 ends the list */
    void *(*create)(node_env *env);
    void (*destroy)(void *self);
    void (*apply)(void *self, node_req *req, const op *o);
    const char *held;                         /* what drop_peer counts, for the log ("event_names") */
    size_t (*drop_peer)(void *self, peer *p); /* p is going away: forget all it holds; returns how many */
    void (*timers)(void *self, int64_t now);  /* every executor turn; may be NULL */
} owner_module;

extern const owner_module listen_owner, events_owner, records_owner, validators_owner, rpc_owner, presence_owner,
    changesets_owner, replica_owner;

/* node.c, for local.c: the node's lock, and the steps the executor takes. */
void node_lock(node *n);
void node_unlock(node *n);
/* Applies one request batch that came on nng pipe `pipe` (0: from the
 * in-process broker; lock held); returns the reply (owned by the caller). */
nng_msg *node_apply_batch(node *n, const void *body, size_t len, uint32_t pipe);
/* Hands waiting storage completions to the records (lock held); with publish,
 * what they release goes out now, else with the next batch's deliveries. */
void node_settle(node *n, bool publish);
peers *node_peers(node *n);
persist *node_persist(node *n);

/* ---------------- replicate.c: the primary side of replication ---------------- */

struct linktls;
/* The replication links of the node numbered self to the nodes that hold
 * copies of its shards (replicas_of, cluster.replicas), dialled with tls
 * (borrowed; NULL: plain tcp); snapshots are read through p (borrowed, it
 * outlives the result). NULL when there are none (cluster.replicas 1, or a
 * lone node). Owned by the caller (replicate_free, before persist_stop). */
replicate *replicate_new(const eddy_config *cfg, const shardmap *map, unsigned self, const struct linktls *tls,
                         persist *p);
/* Closes the links (the executor has stopped). NULL is fine. */
void replicate_free(replicate *rp);
/* Readable when a link has news (an acknowledgement, a refusal): the executor polls it. */
int replicate_fd(const replicate *rp);
/* A write of name (deleted: no data, version -1) committed locally under
 * ticket: it goes to every replica of its shard with the executor turn's
 * batch. name and data borrowed (copied). */
void replicate_record(replicate *rp, strview name, int64_t version, strview data, bool exists, uint64_t ticket);
/* Every write up to this ticket is durable on every in-sync replica (UINT64_MAX: none waits). */
uint64_t replicate_durable(const replicate *rp);
struct metamap;
/* Executor: routing now follows committed (the metadata group's map,
 * borrowed until the next call; NULL: the static assignment): the links
 * follow its copies and in-sync sets (a replica that gained shards of this
 * node gets a snapshot of them, one that lost some keeps its stream without
 * them), items carry its shard epochs, and in-sync changes go through meta
 * (borrowed; meta_sync_replica). NULL rp: nothing. */
void replicate_follow(replicate *rp, const struct metamap *committed, struct meta_node *meta);
/* Takes what the links learnt (acknowledgements, resyncs, failures) and
 * decides each replica's state (out of sync after cluster.replicaTimeout,
 * in sync again once caught up). Executor, lock held. */
void replicate_absorb(replicate *rp, int64_t now);
/* A storage completion of a snapshot (PERSIST_VIEW, PERSIST_SCANNED; d stays
 * the caller's, what it takes of it, d->data and d->cursor, is set NULL). */
void replicate_on_persist(replicate *rp, persist_done *d);
/* Ships this turn's batch to each replica, and what a replica must get again. */
void replicate_ship(replicate *rp, int64_t now);
/* The eddy_node_replication_* families. Any thread. */
void replicate_metrics(replicate *rp, FILE *f);

/* ---------------- meta.c: the metadata group (cluster.raft) ---------------- */

typedef struct meta_node meta_node;
/* The metadata group's side on the node numbered self of cfg's cluster
 * (static_map borrowed: node.c's; self_request/self_delivery borrowed, for a
 * lone node's entry): with cluster.raft it starts the Raft server (its own
 * thread; DATA/raft), else it only holds the static map for
 * meta_status_json. With cluster.raft it also opens a link to every other
 * node (tls borrowed, may be NULL: plain tcp) for heartbeats to the leader.
 * Returns it (owned by the caller, meta_stop), or NULL with the reason in err
 * when Raft cannot start. */
struct linktls;
meta_node *meta_start(const eddy_config *cfg, const shardmap *static_map, unsigned self, const char *self_request,
                      const char *self_delivery, const struct linktls *tls, char *err, size_t err_len);
/* Stops the Raft server (joins its thread) and frees m. NULL is fine. Not from the executor's turn. */
void meta_stop(meta_node *m);
/* Executor, lock held: takes the newest committed map, logs changes
 * (meta-map, meta-failover), sends the heartbeat to the leader, watches the
 * lease, and as leader proposes the bootstrap while the map needs it and
 * FAIL_NODE/NODE_UP for members unheard for cluster.nodeTimeout / heard again. */
void meta_turn(meta_node *m, int64_t now);
/* OP_META_HEARTBEAT (o borrowed): as leader, notes the member heard and
 * answers OP_META_GRANT into req's reply. Executor, lock held. */
void meta_heartbeat(meta_node *m, node_req *req, const op *o);
/* OP_META_PROPOSE (executor, lock held): as leader, queues a primary's
 * SYNC_REPLICA for Raft (the command's primary must be the sender); answered
 * in kind (action 1 queued, 0 not). */
void meta_propose_request(meta_node *m, node_req *req, const op *o);
/* Executor: asks the metadata group to take replica node `replica` (index in
 * cluster.nodes) into (in) or out of the in-sync set of every shard this node
 * is primary of (SYNC_REPLICA, stamped with this node's applied map version:
 * it applies only to the map it was decided on). Proposed directly as leader,
 * else sent to the leader over the heartbeat link. Returns 0 when sent or
 * queued, -1 (no leader known, queue full, cluster.raft off). The caller
 * watches the committed map and asks again. */
int meta_sync_replica(meta_node *m, unsigned replica, bool in);
/* Whether this node may serve an operation of shard: cluster.raft off,
 * always; else only while it is the shard's primary in its applied map and
 * holds a usable lease (meta.c's top comment). Executor, lock held. */
bool meta_may_serve(meta_node *m, uint32_t shard);
/* OP_CLUSTER_STATUS's answer: the map as this node sees it, with the lease
 * and the leader's view of the members, as JSON (owned by the caller, xfree;
 * proto/operations.md). Executor, lock held. */
char *meta_status_json(meta_node *m);
/* The eddy_node_meta_* families (cluster.raft only). Any thread. */
void meta_metrics(meta_node *m, FILE *f);
struct metamap;
/* Executor: the committed map as of the last meta_turn (borrowed, changes at
 * the next turn), or NULL with cluster.raft off. */
const struct metamap *meta_committed(const meta_node *m);
/* Executor: true while this node leads the group with its term's barrier
 * applied (its map is current); *leader_id: the leader known (0: none). */
bool meta_leading(const meta_node *m, uint64_t *leader_id);
/* Proposals queued and not ended (any thread). */
unsigned meta_inflight(meta_node *m);
/* Queues an encoded command (common/metacmd.h; copied) for Raft, counted
 * with the node's proposals. Returns 0, or -1 (raft off, queue full: counted
 * dropped, or stopping). */
int meta_propose(meta_node *m, const void *cmd, size_t len);

/* ---------------- promote.c: planned moves of primaries (eddy ctl cluster promote / rebalance) ---------------- */

typedef struct promote promote;
/* home: the static map, each shard's home layout; cfg: cluster.replicas,
 * rebalanceDelay and rereplicate (both borrowed, outlive p). */
promote *promote_new(const shardmap *home, const eddy_config *cfg);
void promote_free(promote *p); /* NULL is fine */
/* OP_CLUSTER_PROMOTE (request: JSON {"shards": "RANGES" | "from": NODE, "to": NODE}, or {"rebalance": true}):
 * as the leader, queues a PROMOTE command per shard (proposed by
 * promote_turn); else says where the leader is. Adds the answer
 * (OP_CLUSTER_PROMOTE, JSON, proto/operations.md) to reply. Executor, lock held. */
void promote_request(promote *p, meta_node *m, const eddy_config *cfg, const op *o, op_batch *reply);
/* Executor: proposes what waits, at most what metaraft's queue takes, and as
 * the leader plans a rebalance's next wave (or its start, when
 * cluster.rebalanceDelay says so) and a rejoined node's copies; returns
 * true while some wait (the executor comes back soon). */
bool promote_turn(promote *p, meta_node *m, int64_t now);

/* ---------------- replica.c (beyond its row) ---------------- */

/* Acknowledges to each primary the batches now durable here (after storage completions). */
void replica_settle(struct replica_table *rt);

/* ---------------- guard.c ---------------- */

/* Checks o (a record operation marked OP_FLAG_CHECK; otherwise allowed) for
 * action with the record's JSON before (old; ptr NULL: it does not exist) and
 * after (data; ptr NULL: none). read(ctx, name, &len, &held) gives a record
 * this node holds for a cross-reference (NULL with held: it does not exist).
 * Returns 0 when allowed, else the action that answers the refusal
 * (MESSAGE_DENIED or MESSAGE_PERMISSION_ERROR). */
uint32_t guard_check(const node_env *env, const op *o, enum perm_action action, strview data, strview old,
                     const char *(*read)(void *ctx, strview name, size_t *len, bool *held), void *ctx);

/* ---------------- validate.c (beyond its row) ---------------- */

/* What a validation came to. */
typedef struct validation_outcome {
    enum validate_verdict verdict; /* ACCEPT, REJECT or REPLACE */
    strview data;                  /* REPLACE: the document (unchecked); REJECT: the reason (text) */
    bool unvalidated;              /* ACCEPT by policy: no validator answered (validation.acceptOnTimeout) */
} validation_outcome;
/* Called exactly once per validators_start, with its cookie; outcome's data
 * lives until it returns. */
typedef void validators_done_fn(void *ctx, void *cookie, const validation_outcome *outcome);
void validators_set_done(validators *v, validators_done_fn *done, void *ctx);

enum validate_route {
    VALIDATE_SKIP,           /* no validator and no rule for the name: apply the write */
    VALIDATE_ASK,            /* a validator matches: validators_start */
    VALIDATE_REFUSE,         /* validation.required and no validator connected: refuse (fail closed) */
    VALIDATE_SKIP_BY_POLICY, /* required, none connected, but validation.acceptOnTimeout: apply, unvalidated */
};
/* What a write to name needs. v may be NULL (VALIDATE_SKIP). */
enum validate_route validators_route(validators *v, strview name);
/* Hands a write to name over to a validator: request is its JSON text
 * (copied), cookie comes back with the outcome (the done callback, maybe
 * before this returns when no validator can be asked). Returns 0, or -1 when
 * validation.maxPending validations are in flight (nothing started). */
int validators_start(validators *v, strview name, const char *request, size_t request_len, void *cookie);
/* Validations in flight. */
size_t validators_pending(const validators *v);

/* ---------------- records.c (beyond its row) ---------------- */

/* Takes a storage completion (d stays the caller's). */
void records_on_persist(struct record_table *t, persist_done *d);
/* replica.c: writes a replicated batch (records of shards this node holds a
 * copy of, never in the cache: the owner check keeps them from brokers) as
 * one storage job under the next ticket, and returns the ticket (durable once
 * records_committed reaches it). items borrowed (copied by persist). */
uint64_t records_store_replicated(struct record_table *t, const persist_item *items, size_t n);
/* replica.c: deletes every record of the shards in the set shards
 * (SHARD_COUNT bits, copied) after the writes issued before, before those
 * issued after (a snapshot's truncation); returns its ticket. */
uint64_t records_drop_replicated(struct record_table *t, const uint8_t *shards);
/* node.c, when the routing map changes: forgets every cached record of the
 * shards in moved (SHARD_COUNT bits, borrowed) that nothing is in flight on
 * (a shard gained is read from the store, which replication kept current; a
 * shard lost is not served from here). NULL t: nothing. */
void records_shards_moved(struct record_table *t, const uint8_t *moved);
/* The highest ticket the local store has committed. */
uint64_t records_committed(const struct record_table *t);
/* Releases what waits in the outbox and is durable now (replicas acknowledged). */
void records_flush(struct record_table *t);
/* The records held in memory, and their bytes. */
void records_held(const struct record_table *t, size_t *count, size_t *bytes);

/* ---------------- changesets: changeset.c reads them, records.c applies them ---------------- */

/* Why a member of a changeset that failed was not applied, beyond the
 * deepstream record actions (VERSION_EXISTS, MESSAGE_DENIED, ...). */
#define CS_ABORTED 0xffffffffu /* it could have been applied: another member failed */

/* One operation of a changeset (a RECORD_WRITE or RECORD_DELETE). */
typedef struct cs_member {
    op o;             /* its strings point into the changeset's bytes */
    struct record *r; /* records.c: the record, once reached and held (NULL: not held) */
    struct changeset *cs;
    uint32_t status;  /* 0: applied (or would be); else the deepstream action refusing it, or CS_ABORTED */
    const char *why;  /* a refusal's reason (static text) */
    int64_t version;  /* the version it wrote; on a version conflict the record's current one */
    char *reason;     /* a validator's reason for refusing it (owned; why points to it then) */
} cs_member;

/* A changeset on its way through records.c: owned by changeset.c (which
 * made it from an OP_CHANGESET and frees it in done). */
typedef struct changeset {
    peer *from;       /* NULL once the requester went away: nobody to answer */
    op head;          /* the OP_CHANGESET (corr, session, ref; strings in bytes) */
    uint32_t n;       /* members */
    cs_member *m;
    uint32_t waiting; /* records.c: markers not reached yet (plus one while they are placed) */
    uint32_t validating; /* records.c: members out for validation (plus one while they are sent) */
    void *plans;         /* records.c: each member's planned write, while validations are out */
    /* records.c calls it once every member has its status (applied or
     * not), its records still held: changeset.c answers the requester
     * (records_changeset_answer) and frees cs. records.c releases the records
     * after it. */
    void (*done)(struct record_table *t, struct changeset *cs);
    void *done_ctx;
    struct changeset *prev, *next; /* changeset.c: those in flight */
    char *bytes;
} changeset;

/* Places a marker on every member's record (loading those not in memory), in
 * one go, so every changeset reaches its records in the same order as
 * everything else that arrived; once all are reached (each then held), plans
 * every member on the records as they stand, then commits all of them (one
 * storage batch, one ticket: their updates leave together once it is durable)
 * or none, calls cs->done, then releases the records. cs->done may run before
 * this returns. */
void records_changeset_run(struct record_table *t, changeset *cs);
/* Sends o to `to` in record order (once every write before it is durable). */
void records_changeset_answer(struct record_table *t, peer *to, const op *o);
/* ---------------- history.c ---------------- */

/* The events kept on names matching events.history, a ring per name with its
 * offsets (1, 2, ...) and its epoch, bounded by each rule's size and ttl and
 * by events.historyMaxBytes for all together. Memory only. */
typedef struct history history;
typedef struct history_ring history_ring;

/* One kept event (read-only outside history.c; valid until the next append or expiry). */
typedef struct history_event {
    struct history_event *older, *newer; /* the rule's list, in append order */
    history_ring *ring;
    uint64_t seq;   /* node-wide append order */
    int64_t at_ms;  /* when it was kept (now_ms) */
    uint64_t broker, session; /* who emitted it */
    uint32_t len;
    bool has_data;
    char data[];
} history_event;

/* What a ring holds: offsets first .. next-1 (none when first == next). */
typedef struct history_span {
    uint64_t epoch; /* 0: no ring (nothing kept yet, or the ring was dropped) */
    uint64_t first, next;
} history_span;

/* The rings of cfg's events.history; NULL when it has no entries (then no
 * emit does any work here). epoch_base: random, where this process's epochs
 * start. Owned by the caller (history_free). */
history *history_new(const eddy_config *cfg, uint64_t epoch_base);
void history_free(history *h); /* NULL is fine */
/* The ring of name, created when create and the name matches a rule; NULL
 * when it has none. *kept (may be NULL) says whether name matches a rule. A
 * name's match is looked up once: a cache of names that match none (cleared
 * when it holds HISTORY_MISS_CACHE of them) answers later emits. */
history_ring *history_find(history *h, strview name, bool create, bool *kept);
/* Keeps o's data as r's next event (from broker/session at now); returns its
 * offset and sets *epoch. r may be freed by the bound on bytes: do not use it after. */
uint64_t history_append(history *h, history_ring *r, uint64_t broker, uint64_t session, const op *o, int64_t now,
                        uint64_t *epoch);
/* What r holds now (r NULL: an empty span, epoch 0, first = next = 1). Drops what expired first. */
history_span history_span_of(history *h, history_ring *r, int64_t now);
/* The event at offset, or NULL when r does not hold it. */
const history_event *history_at(const history_ring *r, uint64_t offset);
/* Drops the events whose ttl passed (every executor turn: a look at each rule's oldest). */
void history_expire(history *h, int64_t now);
/* Bytes held (events, rings), rings and events, for tests and logs. */
void history_usage(const history *h, size_t *bytes, size_t *rings, size_t *events);

/* ---------------- listen.c (beyond its row) ---------------- */

/* A new subscription table (name -> interested peers; owned by the caller)
 * for topic, which listening follows: a name's first peer starts the search
 * for a provider, its last peer ends it. provider_changed(ctx, name, has) is
 * called when a name gets or loses its active provider (may be NULL). */
subs *listen_follow(struct listen_table *t, int topic, void (*provider_changed)(void *ctx, strview name, bool has),
                    void *ctx);
/* Every subscription to name ends at once (a deleted record): as its last peer leaving. */
void listen_clear(struct listen_table *t, int topic, subs *subscribed, strview name);
bool listen_has_provider(struct listen_table *t, int topic, strview name);

#endif
