/* node.c - the node's sockets, its executor thread and the owner table.
 *
 * The executor receives one batch at a time on the REP socket, applies every
 * operation in order, publishes the deliveries gathered for each peer as one
 * batch per peer (peers.c), then replies. An operation about peers themselves
 * (HELLO, BYE, HEARTBEAT, MAP_QUERY, NODE_STATS, CLUSTER_STATUS, CLUSTER_PROMOTE) is answered here; any other
 * goes to the owner module whose row lists its kind, once the row's route says the shard
 * is this node's (else the requester gets WRONG_SHARD).
 *
 * Two maps: `map`, the static one of the configuration (HELLO is checked
 * against its epoch and digest, replication follows it), and `route`, the one
 * operations are served by: the static one, or with cluster.raft the one made
 * from the metadata group's committed map (common/maproute.h) once it is
 * bootstrapped. An operation is served when this node is its shard's primary
 * in `route` and it carries that shard's epoch. When `route` changes (a new
 * committed version, seen at the executor's turn), MAP_QUERY's answer is
 * rebuilt and published to every peer as an OP_MAP delivery. Peers that stop
 * sending (no batch, no heartbeat) for cluster.brokerTimeout are dropped with
 * all their state in every module: an eighth of the table (at least
 * EXPIRE_MIN) per turn, every 500 ms, or on the next turn while more may be
 * waiting. A HELLO from a new peer when the table holds cluster.maxPeers is
 * refused with UNKNOWN_PEER (the peer keeps saying HELLO, as after a node
 * restart, and gets in once silent peers have expired).
 *
 * Who may send what is checked here, in one place: a HELLO must say the role
 * the certificate of its connection proves (over TLS, common/linktls.h), a
 * peer's batches must come on the connection its HELLO came on, and each
 * operation against its sender's role (`forbidden`); a refusal is FORBIDDEN
 * (or UNKNOWN_PEER: say HELLO again), counted and logged (peer-forbidden).
 *
 * In standalone the broker in the same process applies its batches through
 * local.c, under the same lock. What the node does is counted for /metrics
 * (stats.c: counters other threads read without the lock, the gauges
 * published once per turn); node_serve_metrics opens eddy node's own HTTP
 * listener for them (httpd.c). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "clustermap.h"
#include "internal.h"
#include "linktls.h"
#include "log.h"
#include "maproute.h"
#include "mem.h"
#include "util.h"

/* Created last to first: replica needs records, changesets needs records, events and records need
 * listen, records finds env->validators. validators after records: told of a
 * departed peer after them (records has let go of its writes before a
 * validation ends for want of a validator). */
static const owner_module *const table[] = {&replica_owner, &changesets_owner, &events_owner,   &records_owner,
                                            &validators_owner, &rpc_owner,     &presence_owner, &listen_owner};
#define ROWS ((int)(sizeof(table) / sizeof(table[0])))
#define EXPIRE_MIN 64 /* peers a sweep may drop, at least (else an eighth of the table) */
#define BUSY_TURN_MS 1 /* a turn whose timers ran this long is followed by the next at once */

typedef struct route {
    int8_t row;     /* -1: no module applies this kind */
    uint8_t how;    /* enum owner_route */
} route;

struct node {
    const eddy_config *cfg;
    shardmap map;   /* the static map (configuration): HELLO, replication */
    shardmap route; /* what operations are served by: map, or the metadata group's (cluster.raft) */
    struct metamap *given; /* node_follow_metamap's copy (tests), or NULL */
    uint64_t map_digest;
    char *map_json; /* MAP_QUERY's answer: route as JSON (rebuilt when route changes) */
    log_every wrong_shard_log;
    unsigned self;
    bool sockets;   /* false: no request and delivery sockets (an in-process broker only) */
    nng_socket rep, dlv; /* requests; the delivery address (raw REP: peers' pulls) */
    char request_url[256], delivery_url[256];
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock; /* everything below: the executor and local.c */
    atomic_bool stop;
    node_env env;
    void *state[ROWS];
    route routes[OP_KIND_MAX];
    op_batch reply; /* the reply being built (one batch at a time, under the lock) */
    int64_t last_sweep_ms;
    bool sweep_again; /* the last sweep stopped at its bound */
    bool busy;        /* the last turn's timers worked for BUSY_TURN_MS or more */
    node_stats stats; /* for /metrics (stats.c): read by other threads without the lock */
    httpd *http;      /* node.metrics's listener, or NULL */
    linktls *tls;     /* cluster.tls: the listeners' credentials, or NULL (plain tcp) */
    log_every forbidden_log;
    log_every unsent_log; /* replies a connection did not take (send_reply) */
    meta_node *meta;  /* the metadata group (cluster.raft; else the static map for CLUSTER_STATUS) */
    promote *promote; /* planned moves of primaries (eddy ctl cluster promote) */
};

void node_lock(node *n)
{
    pthread_mutex_lock(&n->lock);
}

void node_unlock(node *n)
{
    pthread_mutex_unlock(&n->lock);
}

peers *node_peers(node *n)
{
    return n->env.peers;
}

persist *node_persist(node *n)
{
    return n->env.persist;
}

/* True when this node is the primary of `name`'s shard in the routing map
 * and o carries that shard's epoch; if not, the requester gets an OP_ERROR
 * (WRONG_SHARD, with the node's epoch of that shard). */
static bool owns(node *n, node_req *req, const op *o, strview name)
{
    uint32_t shard = shard_of(name.ptr, name.len);
    uint64_t epoch = shardmap_shard_epoch(&n->route, shard);
    if (o->epoch == epoch && o->shard == shard && shardmap_owner(&n->route, shard) == n->self &&
        meta_may_serve(n->meta, shard))
        return true;
    op e = {.kind = OP_ERROR, .error = OP_ERR_WRONG_SHARD, .corr = o->corr, .name = name, .epoch = epoch,
            .shard = shard};
    if (name.ptr == o->name.ptr) { /* the request echoed (orig: its kind), so its requester is answered at once */
        e.orig = o->kind;
        e.session = o->session;
        e.action = o->action;
        e.flags = o->flags;
        e.ref = o->ref;
    }
    op_batch_add(req->reply, &e);
    uint64_t held;
    if (log_every_due(&n->wrong_shard_log, now_ms(), 1000, &held))
        log_warn("wrong-shard", "peer=%016llx shard=%u epoch=%llu node_epoch=%llu owner=%u map_version=%llu "
                 "also=%llu", (unsigned long long)req->from->id, shard, (unsigned long long)o->epoch,
                 (unsigned long long)epoch, shardmap_owner(&n->route, shard) + 1,
                 (unsigned long long)n->route.version, (unsigned long long)held);
    return false;
}

static bool routed_here(node *n, node_req *req, const op *o, uint8_t how)
{
    switch (how) {
    case ROUTE_EVERY_NODE: return true;
    case ROUTE_REF: return owns(n, req, o, o->ref);
    case ROUTE_NAME_UNLESS_ALL: return (o->flags & OP_FLAG_ALL) || owns(n, req, o, o->name);
    default: return owns(n, req, o, o->name);
    }
}

static void answer_map(node *n, op_batch *reply)
{
    op m = {.kind = OP_MAP, .epoch = n->map.epoch, .corr = n->route.version, .has_data = true,
            .data = {n->map_json, (uint32_t)strlen(n->map_json)}};
    op_batch_add(reply, &m);
}

/* Serves by route from now on (lock held): MAP_QUERY answers it and every
 * peer is sent it (OP_MAP). Logged with how many shards moved. */
static void set_route(node *n, const shardmap *fresh)
{
    uint8_t moved[SHARD_COUNT / 8];
    unsigned count = shardmap_moved(&n->route, fresh, moved), mine = 0;
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        mine += fresh->owner[s] == n->self;
    uint64_t from = n->route.version;
    n->route = *fresh;
    records_shards_moved(n->env.records, moved); /* its cached copies of them are not the ones to serve */
    xfree(n->map_json);
    n->map_json = clustermap_json(&n->cfg->cluster, &n->route, n->map_digest, n->cfg->node_id, n->request_url,
                                  n->delivery_url);
    log_info("route-map", "version=%llu from_version=%llu moved_shards=%u primary_of=%u",
             (unsigned long long)n->route.version, (unsigned long long)from, count, mine);
    op m = {.kind = OP_MAP, .epoch = n->map.epoch, .corr = n->route.version, .has_data = true,
            .data = {n->map_json, (uint32_t)strlen(n->map_json)}};
    peers_deliver_all(n->env.peers, &m);
}

void node_set_route(node *n, const shardmap *map)
{
    node_lock(n);
    set_route(n, map);
    peers_publish(n->env.peers);
    node_unlock(n);
}

/* Executor, each turn: with cluster.raft, a newer committed map (bootstrapped:
 * every shard assigned) becomes the routing map. */
static void route_follow(node *n)
{
    const metamap *committed = meta_committed(n->meta);
    if (committed == NULL || committed->version == n->route.version)
        return;
    shardmap *fresh = xmalloc(sizeof(*fresh));
    if (maproute_build(committed, &n->map, fresh) == 0) { /* else the bootstrap is under way: the static map meanwhile */
        n->env.mmap = committed;
        set_route(n, fresh);
        replicate_follow(n->env.replicate, committed, n->meta); /* who ships what to whom follows it too */
    }
    xfree(fresh);
}

void node_follow_metamap(node *n, const metamap *m)
{
    metamap *copy = xmalloc(sizeof(*copy));
    *copy = *m;
    shardmap *fresh = xmalloc(sizeof(*fresh));
    node_lock(n);
    if (maproute_build(copy, &n->map, fresh) == 0) {
        n->env.mmap = copy;
        set_route(n, fresh);
        replicate_follow(n->env.replicate, copy, n->meta);
        peers_publish(n->env.peers);
        xfree(n->given);
        n->given = copy;
    } else
        xfree(copy);
    node_unlock(n);
    xfree(fresh);
}

/* NODE_STATS: the counters an operator watches (eddy ctl status). */
static void answer_stats(node *n, op_batch *reply)
{
    char json[256];
    int len = snprintf(json, sizeof(json), "{\"peers\":%zu,\"maxPeers\":%lld,\"peersRefused\":%llu,"
                       "\"malformedBatches\":%llu}", peers_count(n->env.peers), (long long)n->cfg->max_peers,
                       (unsigned long long)peers_refused(n->env.peers),
                       (unsigned long long)prom_get(&n->stats.malformed));
    op m = {.kind = OP_NODE_STATS, .has_data = true, .data = {json, (uint32_t)len}};
    op_batch_add(reply, &m);
}

/* CLUSTER_PROMOTE (eddy ctl cluster promote): a planned move, or where the leader is. */
static void answer_promote(node *n, const op *o, op_batch *reply)
{
    promote_request(n->promote, n->meta, n->cfg, o, reply);
}

/* CLUSTER_STATUS (eddy ctl cluster status): the metadata group's map as this node sees it. */
static void answer_cluster_status(node *n, op_batch *reply)
{
    char *json = meta_status_json(n->meta);
    op m = {.kind = OP_CLUSTER_STATUS, .has_data = true, .data = {json, (uint32_t)strlen(json)}};
    op_batch_add(reply, &m);
    xfree(json);
}

static bool reload_rules(node *n, bool locked);

/* RELOAD (eddy ctl reload): this node's rules, then every broker's it serves
 * (they get RELOAD as a delivery). Answered with {"reloaded":bool}. */
static void reload_everywhere(node *n, op_batch *reply)
{
    bool ok = reload_rules(n, true);
    const char *text = ok ? "{\"reloaded\":true}" : "{\"reloaded\":false}";
    op back = {.kind = OP_RELOAD, .has_data = true, .data = {text, (uint32_t)strlen(text)}};
    op_batch_add(reply, &back);
    op all = {.kind = OP_RELOAD};
    peers_deliver_all(n->env.peers, &all);
}

/* HELLO: a peer (re)introduces itself; refused when it runs another shard map. */
static void hello(node *n, node_req *req, const op *o)
{
    if (o->epoch != n->map.epoch || (o->corr != 0 && o->corr != n->map_digest)) {
        log_error("epoch-mismatch", "peer=%016llx peer_epoch=%llu node_epoch=%llu same_assignment=%s "
                  "(refusing it: every process of a cluster must run the same shard map)",
                  (unsigned long long)req->from->id, (unsigned long long)o->epoch,
                  (unsigned long long)n->map.epoch, o->corr == 0 || o->corr == n->map_digest ? "yes" : "no");
        op e = {.kind = OP_ERROR, .error = OP_ERR_WRONG_EPOCH, .epoch = n->map.epoch};
        op_batch_add(req->reply, &e);
        return;
    }
    /* Delivered back so the peer knows its delivery pipe is up (unless it
     * takes no deliveries: then nothing is ever gathered for it). */
    op back = {.kind = OP_HELLO, .epoch = n->map.epoch};
    req->from->no_deliveries = (o->flags & OP_FLAG_NO_DELIVERIES) != 0;
    peer_deliver_op(n->env.peers, req->from, &back);
    op_batch_add(req->reply, &back);
}

/* Refuses a HELLO (or an operation) its sender's role may not send: FORBIDDEN
 * in the reply, counted, and one line per second at most. */
static void forbid(node *n, op_batch *reply, uint64_t origin, const op *o, int role, int proven, const char *cn,
                   const char *why)
{
    op e = {.kind = OP_ERROR, .error = OP_ERR_FORBIDDEN, .corr = o->corr, .session = o->session, .orig = o->kind};
    op_batch_add(reply, &e);
    prom_add(&n->stats.forbidden, 1);
    uint64_t held;
    if (log_every_due(&n->forbidden_log, now_ms(), 1000, &held))
        log_warn("peer-forbidden", "peer=%016llx kind=%s as=%s certificate=%s cn=%s why=\"%s\" also=%llu",
                 (unsigned long long)origin, op_kind_name(o->kind), link_role_name(role),
                 proven > LINK_ROLE_NONE ? link_role_name(proven) : proven == 0 ? "none" : "gone",
                 cn[0] ? cn : "-", why, (unsigned long long)held);
}

/* What a role may not send (a bit per enum link_role); anything else every
 * role may. A HELLO is checked against the sender's certificate before
 * (hello_role); requests answered without a HELLO (MAP_QUERY, NODE_STATS,
 * RELOAD) are open to any peer the listener let in. */
#define ROLE_BIT(r) (1u << (r))
static const uint8_t forbidden[OP_KIND_MAX] = {
    /* a user's login and logout are the broker's that holds the connection to say */
    [OP_PRESENCE_JOIN] = ROLE_BIT(LINK_ROLE_BACKEND),
    [OP_PRESENCE_LEAVE] = ROLE_BIT(LINK_ROLE_BACKEND),
    /* validating writes is a backend's service */
    [OP_VALIDATE_REGISTER] = ROLE_BIT(LINK_ROLE_BROKER) | ROLE_BIT(LINK_ROLE_NODE),
    [OP_VALIDATE_ANSWER] = ROLE_BIT(LINK_ROLE_BROKER) | ROLE_BIT(LINK_ROLE_NODE),
    /* replication is between nodes */
    [OP_REPL_BATCH] = ROLE_BIT(LINK_ROLE_BROKER) | ROLE_BIT(LINK_ROLE_BACKEND),
    [OP_REPL_ACK] = ROLE_BIT(LINK_ROLE_BROKER) | ROLE_BIT(LINK_ROLE_BACKEND),
    [OP_META_HEARTBEAT] = ROLE_BIT(LINK_ROLE_BROKER) | ROLE_BIT(LINK_ROLE_BACKEND), /* nodes' leases */
    [OP_META_PROPOSE] = ROLE_BIT(LINK_ROLE_BROKER) | ROLE_BIT(LINK_ROLE_BACKEND), /* primaries' in-sync sets */
    [OP_REPL_SNAPSHOT] = ROLE_BIT(LINK_ROLE_BROKER) | ROLE_BIT(LINK_ROLE_BACKEND),
};

static void apply(node *n, node_req *req, const op *o)
{
    prom_add(&n->stats.ops[o->kind < OP_KIND_MAX ? o->kind : 0], 1);
    if (o->kind < OP_KIND_MAX && (forbidden[o->kind] & ROLE_BIT(req->from->role))) {
        forbid(n, req->reply, req->from->id, o, req->from->role, req->from->role, "", "not for this role");
        return;
    }
    switch (o->kind) {
    case OP_HELLO:
        hello(n, req, o);
        return;
    case OP_MAP_QUERY: /* from a peer too, though it has no need to be one */
        answer_map(n, req->reply);
        return;
    case OP_NODE_STATS:
        answer_stats(n, req->reply);
        return;
    case OP_CLUSTER_STATUS:
        answer_cluster_status(n, req->reply);
        return;
    case OP_META_HEARTBEAT:
        meta_heartbeat(n->meta, req, o);
        return;
    case OP_META_PROPOSE:
        meta_propose_request(n->meta, req, o);
        return;
    case OP_CLUSTER_PROMOTE:
        answer_promote(n, o, req->reply);
        return;
    case OP_RELOAD:
        reload_everywhere(n, req->reply);
        return;
    case OP_BYE:
        req->from->leaving = true; /* dropped after this batch (handle_batch) */
        return;
    case OP_HEARTBEAT: {
        /* answered with how many operations were published to the peer so far:
         * a peer that has received fewer, and receives nothing more, lost the tail */
        op hb = {.kind = OP_HEARTBEAT, .has_version = true, .version = (int64_t)req->from->delivery_seq};
        op_batch_add(req->reply, &hb);
        return;
    }
    }
    route r = o->kind < OP_KIND_MAX ? n->routes[o->kind] : (route){-1, 0};
    if (r.row < 0) {
        op e = {.kind = OP_ERROR, .error = OP_ERR_UNKNOWN_KIND, .corr = o->corr};
        op_batch_add(req->reply, &e);
        log_warn("unknown-operation", "peer=%016llx kind=%u", (unsigned long long)req->from->id, o->kind);
        return;
    }
    if (routed_here(n, req, o, r.how))
        table[r.row]->apply(n->state[r.row], req, o);
}

/* Forgets p and everything it registered (its providers' calls move on). */
static void drop_peer(node *n, peer *p, const char *event, int64_t silent_ms)
{
    char held[256];
    size_t used = 0;
    for (int m = 0; m < ROWS; m++) {
        size_t count = table[m]->drop_peer(n->state[m], p);
        int w = snprintf(held + used, sizeof(held) - used, " %s_dropped=%zu", table[m]->held, count);
        if (w > 0 && (size_t)w < sizeof(held) - used)
            used += (size_t)w;
    }
    held[used] = '\0';
    if (silent_ms >= 0)
        log_warn(event, "peer=%016llx silent_ms=%lld%s", (unsigned long long)p->id, (long long)silent_ms, held);
    else
        log_info(event, "peer=%016llx%s", (unsigned long long)p->id, held);
    peers_forget(n->env.peers, p);
}

/* A HELLO on `pipe` from origin (p: the peer of that id, if known): the role
 * it says HELLO as (its action; 0, from older peers: a broker) must be the one
 * its certificate proves over TLS, and a known peer's id is not taken over by
 * a peer of another role. Returns the role, or -1 (answered) when refused. */
static int hello_role(node *n, uint64_t origin, const peer *p, const op *o, uint32_t pipe)
{
    int role = o->action != 0 ? (int)o->action : LINK_ROLE_BROKER;
    char cn[64] = "";
    int proven = pipe != 0 ? linktls_pipe_role((nng_pipe){.id = pipe}, cn, sizeof(cn)) : LINK_ROLE_NONE;
    const char *why = NULL;
    if (role <= LINK_ROLE_NONE || role >= LINK_ROLE_MAX)
        why = "no such role";
    else if (proven < 0)
        why = "its connection is gone, or unverified";
    else if (proven == LINK_ROLE_NONE && n->tls != NULL && pipe != 0)
        why = "no certificate on a TLS node";
    else if (proven != LINK_ROLE_NONE && proven != role)
        why = "its certificate is another role's";
    else if (p != NULL && p->role != role)
        why = "its peer id is held by a peer of another role";
    if (why == NULL)
        return role;
    forbid(n, &n->reply, origin, o, role, proven, cn, why);
    return -1;
}

/* How many operations of the batch that came on `pipe` to apply: none when
 * the sender must say HELLO first (a peer this node dropped, or never saw: it
 * restarted; or one whose batches come on another connection than its HELLO
 * did) or only asks for the map (it does not become a peer). A HELLO sets
 * *role to the role the peer joins as (else -1). */
static uint32_t admitted(node *n, const mp_reader *r, uint64_t origin, uint64_t seq, uint32_t count, uint32_t pipe,
                         int *role)
{
    *role = -1;
    if (count == 0)
        return 0;
    peer *p = peers_find(n->env.peers, origin);
    mp_reader first = *r;
    op o0;
    uint32_t kind = op_decode(&first, &o0) == 0 ? o0.kind : 0;
    if (p != NULL && p->pipe == pipe && kind != OP_HELLO)
        return count;
    if (kind == OP_MAP_QUERY || kind == OP_NODE_STATS || kind == OP_RELOAD || kind == OP_CLUSTER_STATUS ||
        kind == OP_CLUSTER_PROMOTE)
        prom_add(&n->stats.ops[kind], 1); /* answered without a peer (apply() counts the others) */
    if (kind == OP_CLUSTER_PROMOTE) {
        answer_promote(n, &o0, &n->reply);
        return 0;
    }
    if (kind == OP_MAP_QUERY) {
        answer_map(n, &n->reply);
        return 0;
    }
    if (kind == OP_NODE_STATS) {
        answer_stats(n, &n->reply);
        return 0;
    }
    if (kind == OP_RELOAD) {
        reload_everywhere(n, &n->reply);
        return 0;
    }
    if (kind == OP_CLUSTER_STATUS) {
        answer_cluster_status(n, &n->reply);
        return 0;
    }
    if (kind == 0) { /* not even its first operation decodes: no peer for that */
        prom_add(&n->stats.malformed, 1);
        log_warn("malformed-operation", "peer=%016llx index=0 (unknown peer)", (unsigned long long)origin);
        op e = {.kind = OP_ERROR, .error = OP_ERR_MALFORMED};
        op_batch_add(&n->reply, &e);
        return 0;
    }
    if (kind == OP_HELLO) {
        if ((*role = hello_role(n, origin, p, &o0, pipe)) < 0)
            return 0;
        if (p == NULL && !peers_admit(n->env.peers, origin)) {
            /* the table is full (logged): the peer says HELLO again later */
            *role = -1;
            op e = {.kind = OP_ERROR, .error = OP_ERR_UNKNOWN_PEER};
            op_batch_add(&n->reply, &e);
            return 0;
        }
        return count;
    }
    /* the peer says HELLO (on this connection), re-registers, and sends this again */
    log_warn("peer-unknown", "peer=%016llx seq=%llu%s (refused until it says HELLO again)", (unsigned long long)origin,
             (unsigned long long)seq, p != NULL ? " connection=another" : "");
    op e = {.kind = OP_ERROR, .error = OP_ERR_UNKNOWN_PEER};
    op_batch_add(&n->reply, &e);
    return 0;
}

nng_msg *node_apply_batch(node *n, const void *body, size_t len, uint32_t pipe)
{
    mp_reader r;
    uint64_t origin, seq;
    uint32_t count;
    uint64_t started = prom_now_ns();
    op_batch_reset(&n->reply);
    if (op_batch_open(&r, body, len, &origin, &seq, &count) != 0 || origin == 0) {
        prom_add(&n->stats.malformed, 1);
        log_warn("malformed-batch", "bytes=%zu total=%llu", len, (unsigned long long)prom_get(&n->stats.malformed));
        op e = {.kind = OP_ERROR, .error = OP_ERR_MALFORMED};
        op_batch_add(&n->reply, &e);
        origin = seq = 0;
    } else {
        int role;
        count = admitted(n, &r, origin, seq, count, pipe, &role);
        node_req req = {.from = count > 0 ? peers_join(n->env.peers, origin) : NULL, .reply = &n->reply};
        if (req.from != NULL) {
            req.from->last_seen_ms = now_ms();
            if (role >= 0) { /* its HELLO: this connection speaks for it from now on */
                req.from->pipe = pipe;
                req.from->role = (uint8_t)role;
            }
        }
        for (uint32_t i = 0; i < count; i++) {
            op o;
            int rc = op_decode(&r, &o);
            if (rc != 0) {
                prom_add(&n->stats.malformed, 1);
                log_warn("malformed-operation", "peer=%016llx index=%u kind=%u (%s)", (unsigned long long)origin, i,
                         o.kind, rc == OP_DECODE_SKIPPED ? "refused alone" : "the rest of the batch is lost");
                /* what could be read of it names its requester */
                op e = {.kind = OP_ERROR, .error = OP_ERR_MALFORMED, .corr = o.corr, .session = o.session,
                        .orig = o.kind};
                op_batch_add(&n->reply, &e);
                if (rc == OP_DECODE_SKIPPED)
                    continue;
                break; /* a broken frame: the rest of the batch cannot be located */
            }
            apply(n, &req, &o);
        }
        peers_publish(n->env.peers);
        if (req.from != NULL && req.from->leaving)
            drop_peer(n, req.from, "peer-left", -1); /* after its last deliveries went out */
    }
    uint8_t hdr[OP_BATCH_HEADER_MAX];
    size_t h = op_batch_header(hdr, n->self + 1, seq, n->reply.count);
    nng_msg *out = NULL;
    if (nng_msg_alloc(&out, h + n->reply.buf.size) == 0) {
        memcpy(nng_msg_body(out), hdr, h);
        if (n->reply.buf.size > 0) /* an empty sbuffer has no data pointer */
            memcpy((uint8_t *)nng_msg_body(out) + h, n->reply.buf.data, n->reply.buf.size);
    }
    uint64_t done = prom_now_ns();
    prom_observe(&n->stats.apply, done - started);
    prom_set(&n->stats.alive_ms, done / 1000000); /* now_ms's clock */
    return out;
}

void node_settle(node *n, bool publish)
{
    persist_done *d;
    while ((d = persist_poll(n->env.persist)) != NULL) {
        records_on_persist(n->env.records, d);
        persist_done_free(d);
    }
    replica_settle(n->env.replica);
    if (n->env.replicate != NULL) {
        replicate_absorb(n->env.replicate, now_ms());
        records_flush(n->env.records); /* what the replicas' acknowledgements release */
    }
    if (publish)
        peers_publish(n->env.peers);
}

/* Drops peers that have been silent longer than the broker timeout: at most
 * an eighth of the table (EXPIRE_MIN at least) per sweep, so that a turn
 * stays short and a full table still drains within a few turns. */
static void sweep_peers(node *n)
{
    size_t max = peers_count(n->env.peers) / 8;
    if (max < EXPIRE_MIN)
        max = EXPIRE_MIN;
    peer **expired = xmalloc(max * sizeof(*expired));
    size_t count = peers_expired(n->env.peers, expired, max);
    int64_t now = now_ms();
    for (size_t i = 0; i < count; i++)
        drop_peer(n, expired[i], "peer-expired", now - expired[i]->last_seen_ms);
    xfree(expired);
    n->sweep_again = count == max; /* more may wait: the next turn looks again */
}

/* What /metrics reads of the state the lock guards, once per turn. */
static void publish_gauges(node *n, int64_t now)
{
    size_t count, bytes;
    records_held(n->env.records, &count, &bytes);
    prom_set(&n->stats.records, count);
    prom_set(&n->stats.record_bytes, bytes);
    prom_set(&n->stats.peers, peers_count(n->env.peers));
    prom_set(&n->stats.peers_refused, peers_refused(n->env.peers));
    prom_set(&n->stats.alive_ms, (uint64_t)now);
}

/* One executor turn's own work: the modules' timers, what they cause, and
 * every 500 ms (or at once after a sweep that stopped at its bound) the
 * expiry of silent peers. A module's timers may stop at a budget of their
 * own with work left (listen.c's pattern matching): a turn whose timers ran
 * for BUSY_TURN_MS or more marks the node busy, and the executor then comes
 * back after a millisecond instead of at its 100 ms poll. */
static void turn(node *n)
{
    int64_t now = now_ms();
    for (int m = 0; m < ROWS; m++)
        if (table[m]->timers != NULL)
            table[m]->timers(n->state[m], now);
    n->busy = now_ms() - now >= BUSY_TURN_MS;
    if (n->env.replicate != NULL)
        replicate_ship(n->env.replicate, now);
    peers_expire_pulls(n->env.peers, now);
    meta_turn(n->meta, now);
    route_follow(n);
    records_flush(n->env.records); /* what waited for a lease (or for a shard to move away) */
    if (promote_turn(n->promote, n->meta, now))
        n->busy = true; /* more to propose once the queue drains: come back soon */
    peers_publish(n->env.peers);
    if (n->sweep_again || now - n->last_sweep_ms >= 500) {
        n->last_sweep_ms = now;
        sweep_peers(n);
    }
    publish_gauges(n, now);
}

/* Sends the reply to a request that came on `from` (takes out). The REP
 * socket writes one reply per connection at a time, and the executor waits
 * while that connection's previous reply is still being written: a peer that
 * sends requests and reads none of the answers would hold every other peer's
 * requests for good. So the wait is bounded (NNG_OPT_SENDTIMEO, REPLY_SEND_MS)
 * and such a connection is closed: its peer dials again and says HELLO (a
 * peer's link has one batch out at a time, so its connection is never busy
 * when the answer comes). */
static void send_reply(node *n, nng_pipe from, nng_msg *out)
{
    size_t len = nng_msg_len(out);
    int rv = nng_sendmsg(n->rep, out, 0);
    if (rv == 0) {
        prom_add(&n->stats.link_msgs[LINK_REPLY_OUT], 1);
        prom_add(&n->stats.link_bytes[LINK_REPLY_OUT], len);
        return;
    }
    nng_msg_free(out);
    if (rv != NNG_ETIMEDOUT)
        return; /* closing */
    prom_add(&n->stats.replies_unsent, 1);
    uint64_t held;
    if (log_every_due(&n->unsent_log, now_ms(), 1000, &held))
        log_warn("peer-not-reading", "pipe=%u reply_bytes=%zu waited_ms=%d held=%llu (its connection took no "
                 "reply in time: closed, so other peers' requests do not wait for it)",
                 from.id, len, REPLY_SEND_MS, (unsigned long long)held);
    nng_pipe_close(from);
}

static void *executor(void *arg)
{
    node *n = arg;
    int rfd = -1, dfd = -1;
    if (n->sockets) {
        nng_socket_get_int(n->rep, NNG_OPT_RECVFD, &rfd);
        nng_socket_get_int(n->dlv, NNG_OPT_RECVFD, &dfd);
    }
    struct pollfd fds[4] = {{.fd = persist_fd(n->env.persist), .events = POLLIN}, {.fd = rfd, .events = POLLIN},
                            {.fd = n->env.replicate != NULL ? replicate_fd(n->env.replicate) : -1, .events = POLLIN},
                            {.fd = dfd, .events = POLLIN}};
    bool more_pulls = false;
    while (!atomic_load(&n->stop)) {
        /* busy: another turn soon, the lock released meanwhile (standalone's broker takes it) */
        poll(fds, n->sockets ? 4 : 1, n->busy || n->sweep_again || more_pulls ? 1 : 100);
        node_lock(n);
        node_settle(n, false);
        more_pulls = peers_take_pulls(n->env.peers); /* before the requests: what they cause can go at once */
        nng_msg *msg;
        int rv = NNG_EAGAIN;
        while (n->sockets && (rv = nng_recvmsg(n->rep, &msg, NNG_FLAG_NONBLOCK)) == 0) {
            prom_add(&n->stats.link_msgs[LINK_REQUEST_IN], 1);
            prom_add(&n->stats.link_bytes[LINK_REQUEST_IN], nng_msg_len(msg));
            nng_pipe from = nng_msg_get_pipe(msg);
            nng_msg *out = node_apply_batch(n, nng_msg_body(msg), nng_msg_len(msg), from.id);
            nng_msg_free(msg);
            if (out != NULL)
                send_reply(n, from, out);
            node_settle(n, false);
        }
        if (rv != NNG_EAGAIN && rv != NNG_ETIMEDOUT && rv != NNG_ECLOSED)
            log_warn("node-recv-failed", "error=%s", nng_strerror(rv));
        turn(n);
        node_unlock(n);
        if (rv == NNG_ECLOSED)
            break;
    }
    return NULL;
}

/* Listens on the request/delivery pair; writes the bound addresses. */
static int open_sockets(node *n, const char *request_url, const char *delivery_url)
{
    int rv;
    const char *step = "rep0_open";
    nng_listener lr, ld;
    if ((rv = nng_rep0_open(&n->rep)) != 0)
        goto fail;
    step = "rep0_open_raw";
    if ((rv = nng_rep0_open_raw(&n->dlv)) != 0) {
        nng_close(n->rep); /* nothing in flight yet: cannot hang */
        goto fail;
    }
    n->sockets = true;
    nng_socket_set_ms(n->rep, NNG_OPT_RECVTIMEO, 100);
    nng_socket_set_ms(n->rep, NNG_OPT_SENDTIMEO, REPLY_SEND_MS); /* see send_reply */
    /* A batch holds many operations, each at most one client frame. */
    nng_socket_set_size(n->rep, NNG_OPT_RECVMAXSZ, (size_t)n->cfg->max_message_size * 2 + (8u << 20));
    /* a pull is a peer id; the answers wait here (one per peer at most) */
    nng_socket_set_size(n->dlv, NNG_OPT_RECVMAXSZ, 64);
    nng_socket_set_int(n->dlv, NNG_OPT_SENDBUF, 8192);
    nng_socket_set_int(n->dlv, NNG_OPT_RECVBUF, 8192);
    step = request_url;
    if ((rv = linktls_listen(n->tls, n->rep, request_url, &lr)) != 0)
        goto fail;
    step = delivery_url;
    if ((rv = linktls_listen(n->tls, n->dlv, delivery_url, &ld)) != 0)
        goto fail;
    nng_bound_url(lr, request_url, n->request_url, sizeof(n->request_url));
    nng_bound_url(ld, delivery_url, n->delivery_url, sizeof(n->delivery_url));
    peers_set_socket(n->env.peers, n->dlv);
    if (n->tls == NULL && (!linktls_url_local(request_url) || !linktls_url_local(delivery_url)))
        log_warn("links-unauthenticated", "request=%s delivery=%s (listening beyond this machine without TLS: "
                 "anyone who reaches these ports can write any record and read every delivery; set cluster.tls.* "
                 "and tls+tcp:// addresses, README: Security)", request_url, delivery_url);
    return 0;
fail:
    log_error("node-listen-failed", "at=%s error=%s", step, nng_strerror(rv));
    return -1;
}

/* Frees what node_start made (the executor is not running). */
static void free_node(node *n)
{
    meta_stop(n->meta);
    promote_free(n->promote);
    replicate_free(n->env.replicate);
    for (int m = 0; m < ROWS; m++)
        if (n->state[m] != NULL)
            table[m]->destroy(n->state[m]);
    persist_stop(n->env.persist);
    peers_free(n->env.peers);
    linktls_close(n->tls);
    permissions_free(n->env.rules);
    op_batch_destroy(&n->reply);
    pthread_mutex_destroy(&n->lock);
    xfree(n->map_json);
    xfree(n);
}

/* Compiles the rules again and swaps them in (lock held when locked). */
static bool reload_rules(node *n, bool locked)
{
    if (n->cfg->permission_type != PERMISSION_CONFIG)
        return true;
    char err[512];
    permissions *fresh = permissions_load(n->cfg->permissions_file, (int)n->cfg->max_rule_iterations, err, sizeof(err));
    if (fresh == NULL) {
        log_error("permissions-reload-failed", "%s (the rules in force stay)", err);
        return false;
    }
    if (!locked)
        node_lock(n);
    permissions *old = n->env.rules;
    n->env.rules = fresh;
    if (!locked)
        node_unlock(n);
    permissions_free(old);
    log_info("permissions-reloaded", "file=%s (node)", n->cfg->permissions_file);
    return true;
}

void node_reload(node *n)
{
    (void)reload_rules(n, false);
    char err[600];
    if (linktls_reload(n->tls, err, sizeof(err)) != 0)
        log_error("link-certificates-reload-failed", "%s (the certificates in use stay)", err);
}

node *node_start(const eddy_config *cfg, const char *request_url, const char *delivery_url, const shardmap *map,
                 unsigned self_index)
{
    node *n = xcalloc(1, sizeof(*n));
    n->cfg = cfg;
    n->map = *map;
    n->route = *map;
    n->map_digest = shardmap_digest(map);
    n->promote = promote_new(&n->map, cfg);
    n->self = self_index;
    n->last_sweep_ms = now_ms();
    pthread_mutex_init(&n->lock, NULL);
    op_batch_init(&n->reply);
    n->env = (node_env){.cfg = cfg, .peers = peers_new(cfg, self_index, &n->stats), .stats = &n->stats,
                        .map = &n->map, .route = &n->route, .self = self_index};
    prom_set(&n->stats.alive_ms, (uint64_t)now_ms());
    if (mkdir(cfg->data_dir, 0750) != 0 && errno != EEXIST) {
        log_error("data-folder-failed", "path=%s error=%s", cfg->data_dir, strerror(errno));
        goto fail;
    }
    char err[512];
    if (cfg->permission_type == PERMISSION_CONFIG &&
        (n->env.rules = permissions_load(cfg->permissions_file, (int)cfg->max_rule_iterations, err, sizeof(err))) ==
            NULL) {
        log_error("config-error", "%s", err);
        goto fail;
    }
    n->env.persist = persist_start(cfg->data_dir, (enum sync_mode)cfg->sync_mode, 65536, err, sizeof(err));
    if (n->env.persist == NULL) {
        log_error("storage-open-failed", "path=%s error=%s", cfg->data_dir, err);
        goto fail;
    }
    for (int k = 0; k < OP_KIND_MAX; k++)
        n->routes[k].row = -1;
    for (int m = ROWS - 1; m >= 0; m--) { /* last first: see node_env */
        n->state[m] = table[m]->create(&n->env);
        for (const owner_kind *k = table[m]->kinds; k->kind != 0; k++)
            n->routes[k->kind] = (route){(int8_t)m, (uint8_t)k->route};
    }
    if (request_url != NULL) {
        n->tls = linktls_open(cfg->cluster_tls_cert, cfg->cluster_tls_key, cfg->cluster_tls_ca, LINK_ROLE_NODE, err,
                              sizeof(err));
        if (n->tls == NULL && err[0] != '\0') {
            log_error("link-credentials-refused", "%s", err);
            goto fail;
        }
        if (open_sockets(n, request_url, delivery_url) != 0)
            goto fail;
        /* cluster.replicas > 1: links to the replicas of this node's shards (replicate.c) */
        n->env.replicate = replicate_new(cfg, &n->map, self_index, n->tls, n->env.persist);
    }
    n->map_json = clustermap_json(&cfg->cluster, map, n->map_digest, cfg->node_id, n->request_url, n->delivery_url);
    /* cluster.raft: the metadata group's server (its own thread), before the executor that reads it */
    if ((n->meta = meta_start(cfg, &n->map, self_index, n->request_url, n->delivery_url, n->tls, err, sizeof(err))) ==
        NULL) {
        log_error("meta-start-failed", "%s", err);
        goto fail;
    }
    n->env.meta = n->meta;
    if (pthread_create(&n->thread, NULL, executor, n) != 0)
        goto fail;
    n->thread_started = true;
    if (n->sockets)
        log_info("node-listening", "request=%s delivery=%s id=%s epoch=%llu (eddy ctl --cluster %s)",
                 n->request_url, n->delivery_url, cfg->node_id, (unsigned long long)map->epoch, n->request_url);
    else
        log_info("node-started", "id=%s epoch=%llu (no sockets: only the in-process broker reaches it)",
                 cfg->node_id, (unsigned long long)map->epoch);
    return n;
fail:
    if (n->sockets) {
        nng_close(n->rep); /* nothing in flight yet: cannot hang */
        nng_close(n->dlv);
    }
    free_node(n);
    return NULL;
}

void node_metrics(node *n, FILE *f)
{
    stats_write(&n->stats, n->cfg, f);
    persist_metrics(n->env.persist, f);
    replicate_metrics(n->env.replicate, f);
    meta_metrics(n->meta, f);
}

static void http_metrics(void *ctx, FILE *f)
{
    prom_write_process(f, "node");
    node_metrics(ctx, f);
}

/* The executor came round within cluster.requestTimeout: brokers give up on
 * a node that answers nothing for that long. */
static bool http_healthy(void *ctx)
{
    node *n = ctx;
    return now_ms() - (int64_t)prom_get(&n->stats.alive_ms) < n->cfg->request_timeout_ms;
}

int node_serve_metrics(node *n, const char *addr)
{
    n->http = httpd_start(addr, http_metrics, http_healthy, n);
    if (n->http == NULL)
        return -1;
    log_info("node-metrics-listening", "url=%s (GET /metrics, GET /health-check)", httpd_url(n->http));
    return 0;
}

const char *node_metrics_url(const node *n)
{
    return n->http != NULL ? httpd_url(n->http) : "";
}

const char *node_request_url(const node *n)
{
    return n->request_url;
}

const char *node_delivery_url(const node *n)
{
    return n->delivery_url;
}

void node_stop(node *n)
{
    if (n == NULL)
        return;
    httpd_stop(n->http); /* its handlers read what is freed below */
    atomic_store(&n->stop, true);
    pthread_join(n->thread, NULL); /* the executor wakes within its 100 ms poll */
    replicate_free(n->env.replicate); /* the executor has stopped: nobody reads it */
    n->env.replicate = NULL;
    meta_stop(n->meta); /* Raft closes, its thread ends: the other servers elect without it */
    n->meta = NULL;
    n->env.meta = NULL;
    n->env.mmap = NULL;
    xfree(n->given);
    persist_stop(n->env.persist);  /* every queued write reaches the store */
    n->env.persist = NULL;
    if (n->sockets) {
        peers_unset_socket(n->env.peers); /* its pipe callback goes before the peer table does */
        nng_close_bounded(n->rep, "node-rep", 2000);
        nng_close_bounded(n->dlv, "node-dlv", 2000);
    }
    log_info("node-stopped", "id=%s", n->cfg->node_id);
    free_node(n);
}
