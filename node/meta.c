/* meta.c - the metadata group on this node (cluster.raft; FAILOVER.md rule 1).
 *
 * With cluster.raft the node runs one server of the Raft group of
 * cluster.nodes (node/metaraft.c, its own thread and libuv loop; log and
 * snapshots in DATA/raft; the node at index i is member and Raft server
 * i + 1). A pristine folder is bootstrapped with that voter list on every
 * node; a restart reuses its log and snapshots. When this node leads (and its
 * term's barrier is applied, so its map is current) and the committed map is
 * not assigned yet, it proposes the bootstrap plan (common/metaplan.h): the
 * members, then the static assignment the nodes route by today.
 *
 * Threads: Raft's thread hands every committed map to on_change, which
 * copies it (about 80 KiB, only when the map changes: a few times in a
 * cluster's life) into `incoming` under meta's own lock; the executor takes
 * the newest one at its next turn (meta_turn, node lock held) into `map`,
 * which it alone reads, so operations never copy it. Proposals go through
 * metaraft's bounded queue; their results come back on Raft's thread and are
 * only counted (atomics).
 *
 * Failure detection and leases (FAILOVER.md rules 1, 4 and 9; T =
 * cluster.nodeTimeout, L = T/2 the lease, C = T/4, H = T/8):
 *   - Every node sends OP_META_HEARTBEAT every H (at once when the leader
 *     changes, and every HEARTBEAT_RETRY_MS while it holds no lease) to the
 *     node its Raft server believes leads, over a nodelink to that node's
 *     request address (one link per other member, opened at start; role node,
 *     the static map's epoch and digest as every HELLO). The heartbeat carries
 *     s = the sender's monotonic clock when it was queued (before it is sent).
 *   - The leader (its executor, node lock held) records when it heard each
 *     member, and answers OP_META_GRANT: granted only while it leads, its term's
 *     barrier is applied (metaraft_leader_ready: every earlier term's entry is
 *     in its map) and a barrier it proposed at most C ago has committed
 *     (metaraft_confirmed); never to a member whose FAIL_NODE it has in flight.
 *     The grant echoes s and carries V = the leader's committed map version.
 *   - The node holds the lease until s + L on its own clock, and uses it only
 *     once its applied map version is >= V. meta_may_serve (node.c's owns())
 *     serves a shard only with a usable lease and while this node is the
 *     shard's primary in its applied map. The leader grants itself the same
 *     way each turn (s = now).
 *   - The leader declares member X down when it has not heard X for T, and
 *     never earlier than T after it became leader (ready): it proposes ONE
 *     FAIL_NODE(X) at a time, stamped with its map version (a second copy, by
 *     another leader, is refused as stale). A member shown down that is heard
 *     again (after the leader saw it down) gets NODE_UP; it holds no copies.
 *
 * Why the old primary's lease has expired before any promotion of its shards
 * can commit (clock rates are assumed to agree within much less than C/T;
 * SIGSTOP does not stop CLOCK_MONOTONIC):
 *   1. A grant for a heartbeat sent at s is made at time g >= s, and only if
 *      a barrier proposed at b >= g - C committed. That commit means no other
 *      leader was elected before b (metaraft.h). So for any later leader
 *      elected at E: s <= g <= b + C < E + C.
 *   2. The node's lease ends at s + L. A FAIL_NODE(X) is proposed by some
 *      leader at time D, and commits after D.
 *      - Grants by that same leader in its current term: it heard X last at
 *        h >= s of every heartbeat it granted, and D >= h + T; so the lease
 *        ended at s + L <= h + L < D (margin T - L = T/2).
 *      - Grants by earlier leaders (or by itself in an earlier term): its
 *        term began at E > b, and D >= E + T (it waits T after becoming
 *        leader); so s + L < E + C + L < D (margin T - C - L = T/4).
 *      - A grant racing the decision: heartbeats and the detector both run on
 *        the leader's executor; once FAIL_NODE(X) is in flight X gets no grant
 *        until it ends, and after it commits a grant carries V >= its version,
 *        a map in which X is primary of nothing.
 *   3. A paused (SIGSTOPped) primary: its clock went on, so on resuming its
 *      lease has expired; a grant it gets then carries V >= the FAIL_NODE's
 *      version, which it must apply before the lease is usable, and in that
 *      map it is primary of nothing. A leader that is paused stops
 *      confirming; after resuming, its last confirmed barrier is older than C
 *      and it grants nothing until a new barrier commits, which it cannot if
 *      another leader was elected (1).
 *   4. Not covered here: a primary paused between meta_may_serve and acting
 *      on the operation (the write's acknowledgement). The replication path
 *      closes that (a promoted replica refuses the old epoch's batches, and
 *      the writer's ack waits for the in-sync replicas): REPLICATION-STATUS.md.
 *
 * Without cluster.raft nothing of this runs: `map` is the static map (the
 * configuration's, version 0) so eddy ctl cluster status shows the same
 * picture either way, no link is opened, no heartbeat sent, meta_may_serve
 * always says yes. node.c routes by the committed map (meta_committed);
 * promote.c proposes planned moves (meta_leading, meta_propose).
 *
 * Replication's in-sync sets (FAILOVER rule 5): a primary proposes its
 * replicas in or out (SYNC_REPLICA, meta_sync_replica: directly as leader,
 * else OP_META_PROPOSE over the heartbeat link, meta_propose_request on the
 * leader). The leader re-replicates (rereplicate): a shard below
 * cluster.replicas copies gets an up member as an out-of-sync replica
 * (ADD_REPLICA), which its primary catches up and proposes in. Not here:
 * membership changes, rebalancing primaries (later steps of issue 18). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include <nng/nng.h>
#include <time.h>

#include "clustermap.h"
#include "internal.h"
#include "linktls.h"
#include "log.h"
#include "mem.h"
#include "metacmd.h"
#include "metaplan.h"
#include "metaraft.h"
#include "nodelink.h"
#include "util.h"

#define PLAN_RETRY_MS 500     /* a leader looks at the plan again this often while it is not done */
#define MAP_LOG_MS 1000       /* at most one meta-map line a second (the last version always logged) */
#define PLAN_ERROR_LOG_MS 10000
#define HEARTBEAT_RETRY_MS 100 /* heartbeats this often while no lease is held (and at most H apart) */
#define CONFIRM_MIN_MS 25      /* confirming barriers at most this often */
#define GRANT_CLOCK_SLACK_MS 60000 /* a grant echoing a time older than this (or in the future) is ignored */

enum proposal_result { PROPOSAL_APPLIED, PROPOSAL_REFUSED, PROPOSAL_FAILED, PROPOSAL_DROPPED, PROPOSAL_RESULTS };
static const char *const result_names[PROPOSAL_RESULTS] = {
    [PROPOSAL_APPLIED] = "applied",  /* committed and applied */
    [PROPOSAL_REFUSED] = "refused",  /* committed, refused by the map (stale, exists: another leader's did it) */
    [PROPOSAL_FAILED] = "failed",    /* not committed: leadership lost, shutdown */
    [PROPOSAL_DROPPED] = "dropped",  /* never queued: metaraft's queue full, or stopping */
};

struct meta_node {
    const eddy_config *cfg;
    const shardmap *static_map; /* node.c's */
    unsigned self;              /* this node's index in cluster.nodes */
    metaraft *mr;               /* NULL: cluster.raft off */
    unsigned nnodes;
    metaplan_node nodes[CLUSTER_MAX_NODES];
    char raft[CLUSTER_MAX_NODES][64];

    pthread_mutex_t lock; /* guards the three below (Raft's thread writes them) */
    metamap *incoming;    /* the newest committed map */
    bool changed;         /* incoming is newer than map */

    /* the executor's (node lock) */
    metamap *map;         /* the committed map as of the last turn (raft off: the static one) */
    uint64_t leader_id;   /* 0: none known */
    bool leader;
    uint64_t logged_version;
    int64_t last_map_log, last_plan, last_plan_error, last_rereplicate;

    /* failure detection (cluster.raft): the executor's */
    int64_t timeout, lease_ms, confirm_within, heartbeat_every; /* T, L = T/2, C = T/4, H = T/8 */
    nodelink *links[CLUSTER_MAX_NODES]; /* to each other member (NULL: self) */
    uint64_t peer_id;                   /* ours on those links */
    uint64_t hb_leader;                 /* the member the last heartbeat went to */
    int64_t hb_last;                    /* when it was queued */
    int64_t leader_since;               /* when this node became a ready leader (0: not leading) */
    int64_t heard[CLUSTER_MAX_NODES];   /* leader: when member i + 1 was last heard (0: not this term) */
    int64_t granted[CLUSTER_MAX_NODES]; /* leader: when it was last granted a lease */
    int64_t down_seen[CLUSTER_MAX_NODES]; /* when this node's map first showed member i + 1 down (0: up) */
    bool lease_usable;                  /* as of the last turn (for the lost/regained lines) */
    int64_t lapsed_at;                  /* a usable lease ran out then, and was renewed before a turn saw it */

    /* the lease: written by the links' callbacks (grants) and the executor */
    pthread_mutex_t lease_lock;
    int64_t held_until;        /* usable until then (a grant whose version the map has reached) */
    uint64_t held_version;
    int64_t pending_until;     /* the newest grant, until the map reaches its version */
    uint64_t pending_version;
    int64_t last_grant;        /* when the last grant arrived (status) */

    /* any thread */
    atomic_uint inflight; /* proposals queued and not ended */
    atomic_uint failing;  /* the member whose FAIL_NODE is in flight (0: none) */
    prom_counter is_leader, version;
    prom_counter proposals[PROPOSAL_RESULTS];
    prom_counter failovers, lease_valid, members_down, heartbeats, grants_refused, heartbeats_dropped;
};

/* A proposal of the detector's, ended on Raft's thread (freed there). */
typedef struct detector_proposal {
    meta_node *m;
    int kind;    /* META_FAIL_NODE or META_NODE_UP */
    uint16_t id;
} detector_proposal;

/* Raft's thread: a committed map (and the leadership) changed. */
static void on_change(void *arg, const metamap *map, bool leader)
{
    meta_node *m = arg;
    pthread_mutex_lock(&m->lock);
    *m->incoming = *map; /* rare: a command applied, a restore, a change of leader */
    m->changed = true;
    pthread_mutex_unlock(&m->lock);
    prom_set(&m->version, map->version);
    (void)leader;
}

/* Raft's thread: a proposal ended. */
static void proposal_done(void *arg, int err, int status)
{
    meta_node *m = arg;
    int r = err != 0 ? PROPOSAL_FAILED : status == META_OK ? PROPOSAL_APPLIED : PROPOSAL_REFUSED;
    prom_add(&m->proposals[r], 1);
    if (r != PROPOSAL_APPLIED)
        log_info("meta-proposal", "result=%s why=\"%s\"", result_names[r],
                 err != 0 ? "not committed (leadership lost, or stopping)" : meta_strerror(status));
    atomic_fetch_sub(&m->inflight, 1);
}

/* Raft's thread: a FAIL_NODE or NODE_UP of the detector ended. */
static void detector_done(void *arg, int err, int status)
{
    detector_proposal *d = arg;
    meta_node *m = d->m;
    if (d->kind == META_FAIL_NODE) {
        if (err == 0 && status == META_OK)
            prom_add(&m->failovers, 1);
        atomic_store(&m->failing, 0); /* after the apply: grants now carry its version */
    }
    proposal_done(m, err, status);
    xfree(d);
}

/* The static map as a metamap (version 0): what the nodes route by today. */
static void static_metamap(meta_node *m)
{
    metamap_init(m->map);
    uint16_t ids[CLUSTER_MAX_NODES];
    for (unsigned i = 0; i < m->nnodes; i++) {
        meta_member *a = &m->map->members[i];
        a->id = (uint16_t)(i + 1);
        ids[i] = a->id;
        snprintf(a->name, sizeof(a->name), "%s", m->nodes[i].name);
        snprintf(a->request, sizeof(a->request), "%s", m->nodes[i].request);
        snprintf(a->delivery, sizeof(a->delivery), "%s", m->nodes[i].delivery);
        snprintf(a->raft, sizeof(a->raft), "%s", m->nodes[i].raft);
    }
    m->map->nmembers = m->nnodes;
    uint16_t *primaries = xmalloc(SHARD_COUNT * sizeof(*primaries));
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        primaries[s] = (uint16_t)(shardmap_owner(m->static_map, s) + 1);
    unsigned copies = (unsigned)config_replicas(m->cfg);
    if (copies > m->nnodes)
        copies = m->nnodes;
    if (copies > META_MAX_COPIES)
        copies = META_MAX_COPIES;
    (void)metamap_spread(ids, m->nnodes, copies, m->static_map->epoch, primaries, m->map->shards);
    xfree(primaries);
}

/* A link's callback: a grant answered (or refused) our heartbeat. */
static int on_grant_op(void *arg, const op *o)
{
    meta_node *m = arg;
    if (o->kind != OP_META_GRANT)
        return 0;
    if (o->action != 1) {
        prom_add(&m->grants_refused, 1);
        return 0;
    }
    int64_t now = now_ms(), sent = (int64_t)o->corr;
    if (!o->has_version || o->version < 0 || sent > now || sent < now - GRANT_CLOCK_SLACK_MS)
        return 0; /* not an echo of one of ours */
    pthread_mutex_lock(&m->lease_lock);
    if (sent + m->lease_ms > m->pending_until) { /* the newest grant (replies may cross) */
        m->pending_until = sent + m->lease_ms;
        m->pending_version = (uint64_t)o->version;
    }
    m->last_grant = now;
    pthread_mutex_unlock(&m->lease_lock);
    return 0;
}

/* The links' callbacks: replies carry the grants; the rest is not ours to act
 * on. The links take no deliveries (no_deliveries: no pull, and the other
 * nodes gather nothing for us); RESYNC and DOWN carry nothing to free. */
static int on_link(void *ctx, int event, int index, uint64_t seq, void *item)
{
    (void)index;
    (void)seq;
    if (event == NODELINK_REPLY) {
        nng_msg *msg = item;
        op_batch_each(nng_msg_body(msg), nng_msg_len(msg), on_grant_op, ctx);
    } else if (event == NODELINK_RESYNC || event == NODELINK_DOWN)
        return 0;
    return -1; /* the link frees the item (a reply, a failed batch) */
}

/* Opens a link to every other member (cluster.raft). Returns 0 or -1 (logged). */
static int open_links(meta_node *m, const struct linktls *tls)
{
    const clustermap *cm = &m->cfg->cluster;
    m->peer_id = random_id();
    for (int i = 0; i < cm->count; i++) {
        if ((unsigned)i == m->self)
            continue;
        const cluster_node *cn = &cm->nodes[i];
        nodelink_config c = {.index = i, .id = cn->id, .request_url = cn->request, .delivery_url = cn->delivery,
                             .peer_id = m->peer_id, .epoch = m->static_map->epoch,
                             .map_digest = shardmap_digest(m->static_map), .reply_timeout_ms = (int)m->timeout,
                             .tls = tls, .role = LINK_ROLE_NODE, .no_deliveries = true, .handler = on_link,
                             .ctx = m};
        if ((m->links[i] = nodelink_open(&c)) == NULL) {
            log_error("meta-link-failed", "node=%s request=%s", cn->id, cn->request);
            return -1;
        }
    }
    return 0;
}

meta_node *meta_start(const eddy_config *cfg, const shardmap *static_map, unsigned self, const char *self_request,
                      const char *self_delivery, const struct linktls *tls, char *err, size_t err_len)
{
    meta_node *m = xcalloc(1, sizeof(*m));
    m->cfg = cfg;
    m->static_map = static_map;
    m->self = self;
    m->timeout = cfg->node_timeout_ms > 0 ? cfg->node_timeout_ms : 2000;
    m->lease_ms = m->timeout / 2;
    m->confirm_within = m->timeout / 4;
    m->heartbeat_every = m->timeout / 8;
    pthread_mutex_init(&m->lock, NULL);
    pthread_mutex_init(&m->lease_lock, NULL);
    m->map = xmalloc(sizeof(*m->map));
    m->incoming = xmalloc(sizeof(*m->incoming));
    metamap_init(m->incoming);
    const clustermap *cm = &cfg->cluster;
    if (cm->count == 0) { /* a lone node: itself */
        m->nnodes = 1;
        m->nodes[0] = (metaplan_node){.name = cfg->node_id, .request = self_request, .delivery = self_delivery,
                                      .raft = ""};
    }
    for (int i = 0; i < cm->count; i++) {
        char why[512];
        m->nodes[i] = (metaplan_node){.name = cm->nodes[i].id, .request = cm->nodes[i].request,
                                      .delivery = cm->nodes[i].delivery, .raft = m->raft[i]};
        if (clustermap_raft(cm, i, m->raft[i], sizeof(m->raft[i]), why, sizeof(why)) != 0) {
            m->raft[i][0] = '\0'; /* raft off: none (the status shows none) */
            if (config_raft(cfg)) {
                snprintf(err, err_len, "cluster.nodes: %s", why);
                goto fail;
            }
        }
        m->nnodes++;
    }
    static_metamap(m);
    if (!config_raft(cfg))
        return m;

    metaraft_voter voters[METARAFT_MAX_VOTERS];
    if (m->nnodes > METARAFT_MAX_VOTERS) {
        snprintf(err, err_len, "cluster.raft: at most %d voters (cluster.nodes has %u)", METARAFT_MAX_VOTERS,
                 m->nnodes);
        goto fail;
    }
    for (unsigned i = 0; i < m->nnodes; i++)
        voters[i] = (metaraft_voter){.id = i + 1, .address = m->raft[i]};
    if (cfg->raft_bind != NULL && cfg->raft_bind[0] != '\0' && !clustermap_ipv4_port(cfg->raft_bind)) {
        snprintf(err, err_len, "cluster.raftBind '%s' is not IPv4:PORT (libraft 0.15 takes no host names)",
                 cfg->raft_bind);
        goto fail;
    }
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/raft", cfg->data_dir);
    unsigned confirm = (unsigned)(m->timeout / 16);
    metaraft_config rc = {.id = self + 1, .address = m->raft[self], .bind = cfg->raft_bind, .dir = dir, .voters = voters,
                          .nvoters = m->nnodes, .election_timeout_ms = 1000, .heartbeat_ms = 100,
                          .confirm_ms = confirm < CONFIRM_MIN_MS ? CONFIRM_MIN_MS : confirm,
                          .on_change = on_change, .arg = m};
    metamap_init(m->map); /* nothing committed seen yet */
    if ((m->mr = metaraft_start(&rc, err, err_len)) == NULL)
        goto fail;
    if (open_links(m, tls) != 0) {
        snprintf(err, err_len, "cluster.raft: cannot open the heartbeat links to the other nodes");
        goto fail;
    }
    const char *listen_on = cfg->raft_bind != NULL && cfg->raft_bind[0] ? cfg->raft_bind : m->raft[self];
    if (strncmp(listen_on, "127.", 4) != 0)
        log_warn("raft-transport-plain", "listen=%s (libraft's transport has neither TLS nor authentication: whoever "
                 "reaches this port can speak Raft to this node; keep it on a private network and admit only the "
                 "other nodes' raft addresses, README: Security)", listen_on);
    log_info("meta-failure-detection", "node_timeout_ms=%lld lease_ms=%lld heartbeat_ms=%lld (a node unheard by "
             "the leader this long is failed over; a node serves its primaries only under a lease)",
             (long long)m->timeout, (long long)m->lease_ms, (long long)m->heartbeat_every);
    return m;
fail:
    meta_stop(m);
    return NULL;
}

void meta_stop(meta_node *m)
{
    if (m == NULL)
        return;
    for (unsigned i = 0; i < CLUSTER_MAX_NODES; i++) /* quiesce every link first, then close (nng pitfall 1) */
        if (m->links[i] != NULL)
            nodelink_stop(m->links[i]);
    for (unsigned i = 0; i < CLUSTER_MAX_NODES; i++)
        nodelink_close(m->links[i]);
    metaraft_stop(m->mr); /* joins Raft's thread: no callback runs after this */
    pthread_mutex_destroy(&m->lease_lock);
    pthread_mutex_destroy(&m->lock);
    xfree(m->incoming);
    xfree(m->map);
    xfree(m);
}

/* The leader's part: proposes what the plan says, once nothing is in flight. */
static void drive_plan(meta_node *m, int64_t now)
{
    if (atomic_load(&m->inflight) != 0 || now - m->last_plan < PLAN_RETRY_MS || !metaraft_leader_ready(m->mr))
        return;
    m->last_plan = now;
    metaplan plan;
    char why[600];
    if (metaplan_bootstrap(m->map, m->nodes, m->nnodes, m->static_map, (unsigned)config_replicas(m->cfg), &plan, why,
                           sizeof(why)) != 0) {
        if (m->last_plan_error == 0 || now - m->last_plan_error >= PLAN_ERROR_LOG_MS) {
            m->last_plan_error = now;
            log_error("meta-bootstrap-refused", "version=%llu %s (nothing proposed)",
                      (unsigned long long)m->map->version, why);
        }
        return;
    }
    if (plan.count > 0)
        log_info("meta-bootstrap", "version=%llu commands=%u (members the map lacks, then the static assignment: "
                 "epoch %llu, %lld copies)", (unsigned long long)m->map->version, plan.count,
                 (unsigned long long)m->static_map->epoch, (long long)config_replicas(m->cfg));
    for (unsigned i = 0; i < plan.count; i++) {
        atomic_fetch_add(&m->inflight, 1);
        if (metaraft_propose(m->mr, plan.cmds[i].data, plan.cmds[i].size, proposal_done, m) != 0) {
            atomic_fetch_sub(&m->inflight, 1);
            prom_add(&m->proposals[PROPOSAL_DROPPED], 1);
            log_warn("meta-proposal", "result=dropped why=\"the proposal queue is full, or stopping\"");
        }
    }
    metaplan_free(&plan);
}

/* ---- the lease (executor) ---- */

/* Whether the lease is usable now: the newest grant moves in once this
 * node's map has reached its version. *until: the usable lease's end. */
static bool lease_check(meta_node *m, int64_t now, int64_t *until)
{
    pthread_mutex_lock(&m->lease_lock);
    if (m->pending_until > m->held_until && m->pending_version <= m->map->version) {
        if (m->held_until != 0 && m->held_until <= now && m->lapsed_at == 0)
            m->lapsed_at = m->held_until; /* it ran out before this grant: watch_lease says so */
        m->held_until = m->pending_until;
        m->held_version = m->pending_version;
    }
    int64_t u = m->held_until;
    pthread_mutex_unlock(&m->lease_lock);
    if (until != NULL)
        *until = u;
    return now < u;
}

bool meta_may_serve(meta_node *m, uint32_t shard)
{
    if (m == NULL || m->mr == NULL)
        return true; /* cluster.raft off: the static map alone decides */
    if (shard >= SHARD_COUNT)
        return false;
    const meta_shard *sh = &m->map->shards[shard];
    if (sh->ncopies == 0 || sh->copies[0] != m->self + 1)
        return false; /* not its primary in the applied map (or the shard is unavailable) */
    return lease_check(m, now_ms(), NULL);
}

/* "2026-01-31T12:00:00.123Z" of a wall-clock time in ms (as log lines start). */
static void iso_time(int64_t ms, char *out, size_t len)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100,
             tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100, tm.tm_sec % 100, (int)(ms % 1000));
}

/* The lost/regained lines and the gauge, once per turn. A lease that ran out
 * while the process was stopped is logged when it runs again, with the time
 * it expired (expired_at, the wall clock; the line's own time is later). */
static void watch_lease(meta_node *m, int64_t now)
{
    int64_t until;
    bool usable = lease_check(m, now, &until);
    prom_set(&m->lease_valid, usable);
    if (m->lapsed_at != 0 && m->lease_usable) { /* ran out unseen (the process was stopped): lost, then back */
        char at[64];
        iso_time(wall_ms() - (now - m->lapsed_at), at, sizeof(at));
        log_warn("meta-lease-lost", "expired_at=%s expired_ms_ago=%lld leader=%llu map_version=%llu (it ran out "
                 "while this node did not run; renewed since)", at, (long long)(now - m->lapsed_at),
                 (unsigned long long)m->leader_id, (unsigned long long)m->map->version);
        m->lease_usable = false;
    }
    m->lapsed_at = 0;
    if (usable == m->lease_usable)
        return;
    m->lease_usable = usable;
    if (usable) {
        log_info("meta-lease-regained", "valid_ms=%lld map_version=%llu (this node serves the shards it is primary "
                 "of again)", (long long)(until - now), (unsigned long long)m->map->version);
        return;
    }
    char at[64];
    iso_time(wall_ms() - (now - until), at, sizeof(at));
    log_warn("meta-lease-lost", "expired_at=%s expired_ms_ago=%lld leader=%llu map_version=%llu (no grant from the "
             "metadata group's leader renewed it: this node serves none of its shards until one does)", at,
             (long long)(now - until), (unsigned long long)m->leader_id, (unsigned long long)m->map->version);
}

/* ---- heartbeats (executor) ---- */

/* The leader may grant leases now: it leads, its term's barrier is applied,
 * and a barrier it proposed at most C ago committed (top comment, point 1). */
static bool may_grant(meta_node *m, int64_t now)
{
    return m->leader_since != 0 && metaraft_leader_ready(m->mr) &&
           now - metaraft_confirmed(m->mr) <= m->confirm_within;
}

/* To the believed leader, every H (every HEARTBEAT_RETRY_MS while no lease
 * is usable), at once when the leader changed. */
static void send_heartbeat(meta_node *m, int64_t now)
{
    uint64_t l = m->leader_id;
    if (l == 0 || l > m->nnodes || l == m->self + 1 || m->links[l - 1] == NULL)
        return;
    int64_t every = m->lease_usable || m->heartbeat_every < HEARTBEAT_RETRY_MS ? m->heartbeat_every
                                                                              : HEARTBEAT_RETRY_MS;
    if (l == m->hb_leader && now - m->hb_last < every)
        return;
    m->hb_leader = l;
    m->hb_last = now;
    /* corr: the time it is queued, before it is sent (the lease counts from here) */
    op hb = {.kind = OP_META_HEARTBEAT, .orig = m->self + 1, .corr = (uint64_t)now, .has_version = true,
             .version = (int64_t)m->map->version};
    /* Bounded: the link refuses beyond NODELINK_QUEUE_MAX, and a leader that
     * does not answer fails the batch after T, so at most T/H wait. */
    if (nodelink_submit(m->links[l - 1], &hb) == 0)
        prom_add(&m->heartbeats_dropped, 1);
    else
        prom_add(&m->heartbeats, 1);
}

void meta_heartbeat(meta_node *m, node_req *req, const op *o)
{
    if (m == NULL || m->mr == NULL) {
        op e = {.kind = OP_ERROR, .error = OP_ERR_UNKNOWN_KIND, .corr = o->corr, .orig = o->kind};
        op_batch_add(req->reply, &e);
        return;
    }
    if (o->orig == 0 || o->orig > m->nnodes || o->orig == m->self + 1) {
        op e = {.kind = OP_ERROR, .error = OP_ERR_BAD_FIELD, .corr = o->corr, .orig = o->kind};
        op_batch_add(req->reply, &e);
        return;
    }
    int64_t now = now_ms();
    unsigned i = o->orig - 1;
    bool leading = m->leader_since != 0 && metaraft_is_leader(m->mr, NULL);
    if (leading)
        m->heard[i] = now;
    /* never to a member whose FAIL_NODE is in flight (top comment, point 2) */
    bool grant = leading && may_grant(m, now) && atomic_load(&m->failing) != o->orig;
    if (grant)
        m->granted[i] = now;
    op g = {.kind = OP_META_GRANT, .action = grant ? 1 : 0, .corr = o->corr, .has_version = true,
            .version = (int64_t)metaraft_version(m->mr), .orig = (uint32_t)m->leader_id};
    op_batch_add(req->reply, &g);
}

void meta_propose_request(meta_node *m, node_req *req, const op *o)
{
    meta_cmd c;
    bool ok = m != NULL && m->mr != NULL && o->has_data && m->leader_since != 0 &&
              metacmd_decode(&c, o->data.ptr, o->data.len) == 0 && c.kind == META_SYNC_REPLICA &&
              o->orig != 0 && o->orig == c.node && o->orig <= m->nnodes;
    if (ok)
        ok = meta_propose(m, o->data.ptr, o->data.len) == 0;
    op a = {.kind = OP_META_PROPOSE, .corr = o->corr, .action = ok ? 1 : 0};
    op_batch_add(req->reply, &a);
}

int meta_sync_replica(meta_node *m, unsigned replica, bool in)
{
    if (m == NULL || m->mr == NULL || replica >= m->nnodes || replica == m->self)
        return -1;
    meta_cmd c = {.kind = META_SYNC_REPLICA, .expect_version = m->map->version, .node = (uint16_t)(m->self + 1),
                  .replica = (uint16_t)(replica + 1), .in = in};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int rc = -1;
    if (metacmd_encode(&c, &sb) != 0)
        goto done;
    log_info("meta-sync-replica", "replica=%s in=%s version=%llu leader=%llu", m->nodes[replica].name,
             in ? "yes" : "no", (unsigned long long)m->map->version, (unsigned long long)m->leader_id);
    if (m->leader && metaraft_leader_ready(m->mr)) {
        rc = meta_propose(m, sb.data, sb.size);
        goto done;
    }
    uint64_t l = m->leader_id;
    if (l == 0 || l > m->nnodes || l == m->self + 1 || m->links[l - 1] == NULL)
        goto done;
    op p = {.kind = OP_META_PROPOSE, .orig = m->self + 1, .has_data = true, .data = {sb.data, (uint32_t)sb.size}};
    rc = nodelink_submit(m->links[l - 1], &p) != 0 ? 0 : -1;
done:
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* ---- the leader's failure detector (executor) ---- */

static void propose_detector(meta_node *m, int kind, uint16_t id)
{
    meta_cmd c = {.kind = kind, .node = id, .expect_version = m->map->version};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (metacmd_encode(&c, &sb) != 0) { /* cannot happen: id checked by the caller */
        msgpack_sbuffer_destroy(&sb);
        return;
    }
    detector_proposal *d = xcalloc(1, sizeof(*d));
    *d = (detector_proposal){.m = m, .kind = kind, .id = id};
    if (kind == META_FAIL_NODE)
        atomic_store(&m->failing, id);
    atomic_fetch_add(&m->inflight, 1);
    if (metaraft_propose(m->mr, sb.data, sb.size, detector_done, d) != 0) {
        atomic_fetch_sub(&m->inflight, 1);
        if (kind == META_FAIL_NODE)
            atomic_store(&m->failing, 0);
        prom_add(&m->proposals[PROPOSAL_DROPPED], 1);
        log_warn("meta-proposal", "result=dropped why=\"the proposal queue is full, or stopping\"");
        xfree(d);
    }
    msgpack_sbuffer_destroy(&sb);
}

/* One decision at a time, on a map that is current (this turn's map is the
 * committed one), never before T after this node became leader. */
static void detect(meta_node *m, int64_t now)
{
    if (m->leader_since == 0 || now - m->leader_since < m->timeout || atomic_load(&m->inflight) != 0 ||
        m->map->version == 0 || metaraft_version(m->mr) != m->map->version)
        return;
    for (unsigned i = 0; i < m->nnodes; i++) {
        uint16_t id = (uint16_t)(i + 1);
        const meta_member *a = metamap_member(m->map, id);
        if (i == m->self || a == NULL)
            continue;
        int64_t last = m->heard[i] > m->leader_since ? m->heard[i] : m->leader_since;
        if (now - last >= m->timeout) {
            if (a->down && metamap_copies_of(m->map, id) == 0)
                continue; /* down and holding nothing: nothing to decide */
            log_warn("meta-node-down", "member=%u name=%s unheard_ms=%lld primaries=%u copies=%u version=%llu "
                     "(not heard for cluster.nodeTimeout %lld ms: proposing FAIL_NODE)", id, a->name,
                     (long long)(now - last), metamap_primaries_of(m->map, id), metamap_copies_of(m->map, id),
                     (unsigned long long)m->map->version, (long long)m->timeout);
            propose_detector(m, META_FAIL_NODE, id);
            return;
        }
        if (a->down && m->heard[i] > m->down_seen[i] && m->heard[i] >= m->leader_since) {
            log_info("meta-node-heard", "member=%u name=%s version=%llu (down in the map, heard again: proposing "
                     "NODE_UP; it holds no copies until it is replicated to again)", id, a->name,
                     (unsigned long long)m->map->version);
            propose_detector(m, META_NODE_UP, id);
            return;
        }
    }
}

/* The leader's re-replication (issue 18, item 6; cluster.rereplicate): a shard left with fewer
 * than cluster.replicas copies (its replica failed over, a rejoined node
 * holds none) gets an up member that holds none of it as an out-of-sync
 * replica: ADD_REPLICA, one member per command, for every such shard at once.
 * Its primary snapshots it up to date (node/replicate.c: a link that gained
 * shards) and proposes it in (SYNC_REPLICA) once caught up. One command at a
 * time, at most every PLAN_RETRY_MS. */
static void rereplicate(meta_node *m, int64_t now)
{
    if (atomic_load(&m->inflight) != 0 || now - m->last_rereplicate < PLAN_RETRY_MS ||
        !metaraft_leader_ready(m->mr))
        return;
    m->last_rereplicate = now;
    unsigned up = 0;
    for (unsigned i = 0; i < m->map->nmembers; i++)
        up += !m->map->members[i].down;
    unsigned target = (unsigned)config_replicas(m->cfg);
    if (target > up)
        target = up;
    if (target > META_MAX_COPIES)
        target = META_MAX_COPIES;
    if (target < 2)
        return;
    for (unsigned i = 0; i < m->map->nmembers; i++) {
        const meta_member *a = &m->map->members[i];
        if (a->down)
            continue;
        unsigned needs = 0;
        for (uint32_t s = 0; s < SHARD_COUNT; s++) {
            const meta_shard *sh = &m->map->shards[s];
            if (sh->ncopies == 0 || sh->ncopies >= target)
                continue;
            bool holds = false;
            for (unsigned j = 0; j < sh->ncopies; j++)
                holds |= sh->copies[j] == a->id;
            needs += !holds;
        }
        if (needs == 0)
            continue;
        meta_cmd c = {.kind = META_ADD_REPLICA, .node = a->id, .ncopies = (uint8_t)target,
                      .expect_version = m->map->version};
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        if (metacmd_encode(&c, &sb) == 0) {
            log_info("meta-rereplicate", "member=%u name=%s shard_count=%u copies=%u version=%llu (an out-of-sync "
                     "replica of the shards below cluster.replicas copies; their primaries catch it up)", a->id,
                     a->name, needs, target, (unsigned long long)m->map->version);
            if (meta_propose(m, sb.data, sb.size) != 0)
                log_warn("meta-proposal", "result=dropped why=\"the proposal queue is full, or stopping\"");
        }
        msgpack_sbuffer_destroy(&sb);
        return; /* one at a time: the next once this one is applied */
    }
}

/* ---- the committed map (executor) ---- */

/* Logs what a new map changed for members: failed over (meta-failover: where
 * their primaries went), up again; keeps down_seen and the gauge. */
static void adopt(meta_node *m, const metamap *next, int64_t now)
{
    const metamap *old = m->map;
    unsigned down = 0;
    for (unsigned i = 0; i < next->nmembers; i++) {
        const meta_member *a = &next->members[i];
        down += a->down;
        unsigned at = (unsigned)a->id - 1;
        if (at < CLUSTER_MAX_NODES)
            m->down_seen[at] = !a->down ? 0 : m->down_seen[at] != 0 ? m->down_seen[at] : now;
        const meta_member *was = metamap_member(old, a->id);
        if (was == NULL)
            continue;
        if (was->down && !a->down)
            log_info("meta-node-up", "member=%u name=%s version=%llu", a->id, a->name,
                     (unsigned long long)next->version);
        unsigned had = metamap_copies_of(old, a->id);
        if (!a->down || had == 0 || metamap_copies_of(next, a->id) != 0)
            continue;
        /* failed over by this map: where did its primaries go */
        unsigned to[CLUSTER_MAX_NODES + 1] = {0}, moved = 0, lost = 0;
        for (uint32_t s = 0; s < SHARD_COUNT; s++) {
            const meta_shard *o = &old->shards[s], *n = &next->shards[s];
            if (o->ncopies == 0 || o->copies[0] != a->id)
                continue;
            if (n->ncopies == 0)
                lost++;
            else if (n->copies[0] <= CLUSTER_MAX_NODES) {
                to[n->copies[0]]++;
                moved++;
            }
        }
        char where[512] = "";
        size_t used = 0;
        for (unsigned id = 1; id <= CLUSTER_MAX_NODES && used < sizeof(where); id++) {
            const meta_member *t = to[id] ? metamap_member(next, (uint16_t)id) : NULL;
            if (t == NULL)
                continue;
            int w = snprintf(where + used, sizeof(where) - used, "%s%s:%u", used ? "," : "", t->name, to[id]);
            if (w < 0)
                break;
            used += (size_t)w;
        }
        log_warn("meta-failover", "member=%u name=%s shard_count=%u to=%s unavailable=%u replica_copies_dropped=%u "
                 "version=%llu", a->id, a->name, moved, used ? where : "none", lost, had - moved - lost,
                 (unsigned long long)next->version);
    }
    prom_set(&m->members_down, down);
    *m->map = *next;
}

void meta_turn(meta_node *m, int64_t now)
{
    if (m == NULL || m->mr == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    if (m->changed) {
        adopt(m, m->incoming, now);
        m->changed = false;
    }
    pthread_mutex_unlock(&m->lock);
    m->leader = metaraft_is_leader(m->mr, &m->leader_id);
    prom_set(&m->is_leader, m->leader);
    if (m->map->version != m->logged_version && now - m->last_map_log >= MAP_LOG_MS) {
        m->logged_version = m->map->version;
        m->last_map_log = now;
        unsigned assigned = 0;
        for (uint32_t s = 0; s < SHARD_COUNT; s++)
            assigned += m->map->shards[s].ncopies > 0;
        log_info("meta-map", "version=%llu members=%u assigned_shards=%u leader=%llu",
                 (unsigned long long)m->map->version, m->map->nmembers, assigned, (unsigned long long)m->leader_id);
    }
    bool ready = m->leader && metaraft_leader_ready(m->mr);
    if (ready && m->leader_since == 0) {
        m->leader_since = now; /* heard[] counts from here: nobody is failed before T from now */
        memset(m->heard, 0, sizeof(m->heard));
        memset(m->granted, 0, sizeof(m->granted));
        log_info("meta-detector", "term=%llu node_timeout_ms=%lld (this node leads: members unheard from now on "
                 "for node_timeout_ms are failed over)", (unsigned long long)metaraft_term(m->mr),
                 (long long)m->timeout);
    } else if (!m->leader)
        m->leader_since = 0;
    if (m->leader_since != 0) { /* the leader's own heartbeat and lease (s = now) */
        m->heard[m->self] = now;
        if (may_grant(m, now)) {
            m->granted[m->self] = now;
            pthread_mutex_lock(&m->lease_lock);
            if (now + m->lease_ms > m->pending_until) {
                m->pending_until = now + m->lease_ms;
                m->pending_version = metaraft_version(m->mr);
            }
            m->last_grant = now;
            pthread_mutex_unlock(&m->lease_lock);
        }
    } else
        send_heartbeat(m, now);
    watch_lease(m, now);
    if (m->leader) {
        drive_plan(m, now);
        detect(m, now);
        if (m->leader_since != 0 && m->cfg->rereplicate)
            rereplicate(m, now);
    }
}

/* Whether every shard of map is assigned as the static map (and replicas_of) say. */
static bool same_as_static(const meta_node *m)
{
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        uint16_t want[SHARDMAP_MAX_COPIES];
        unsigned k = replicas_of(m->static_map, s, (unsigned)config_replicas(m->cfg), want);
        const meta_shard *sh = &m->map->shards[s];
        if (sh->ncopies != k)
            return false;
        for (unsigned j = 0; j < k; j++)
            if (sh->copies[j] != want[j] + 1)
                return false;
    }
    return true;
}

/* {"EPOCH": copies, ...} of the shards member id holds a copy of. */
static json_t *epochs_of(const metamap *map, uint16_t id)
{
    json_t *o = json_object();
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        const meta_shard *sh = &map->shards[s];
        for (unsigned j = 0; j < sh->ncopies; j++)
            if (sh->copies[j] == id) {
                char key[24];
                snprintf(key, sizeof(key), "%llu", (unsigned long long)sh->epoch);
                json_t *v = json_object_get(o, key);
                json_object_set_new(o, key, json_integer(v ? json_integer_value(v) + 1 : 1));
            }
    }
    return o;
}

/* "7,100-200" of the unavailable shards (at most about len bytes, "..." after). */
static void unavailable_ranges(const metamap *map, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        if (!metamap_unavailable(&map->shards[s]))
            continue;
        uint32_t e = s;
        while (e + 1 < SHARD_COUNT && metamap_unavailable(&map->shards[e + 1]))
            e++;
        int w = e == s ? snprintf(out + used, len - used, "%s%u", used ? "," : "", s)
                       : snprintf(out + used, len - used, "%s%u-%u", used ? "," : "", s, e);
        if (w < 0 || (size_t)w >= len - used) {
            snprintf(out + (used < len - 4 ? used : len - 4), 4, "...");
            return;
        }
        used += (size_t)w;
        s = e;
    }
}

char *meta_status_json(meta_node *m)
{
    const metamap *map = m->map;
    int64_t now = now_ms();
    json_t *members = json_array();
    for (unsigned i = 0; i < map->nmembers; i++) {
        const meta_member *a = &map->members[i];
        unsigned prim = metamap_primaries_of(map, a->id);
        json_t *one = json_pack("{s:i, s:s, s:s, s:s, s:s, s:b, s:i, s:i, s:o}", "id", a->id, "name", a->name,
                                "request", a->request, "delivery", a->delivery, "raft", a->raft, "down", a->down,
                                "primaries", (int)prim, "replicas", (int)(metamap_copies_of(map, a->id) - prim),
                                "epochs", epochs_of(map, a->id));
        /* the leader's view of each member's lease: when it last heard it and granted it one */
        unsigned at = (unsigned)a->id - 1;
        bool seen = m->leader_since != 0 && at < CLUSTER_MAX_NODES && m->heard[at] != 0;
        bool granted = seen && m->granted[at] != 0;
        json_object_set_new(one, "heardMsAgo", seen ? json_integer(now - m->heard[at]) : json_null());
        json_object_set_new(one, "leaseGranted", m->leader_since == 0 ? json_null()
                                                 : json_boolean(granted && now - m->granted[at] < m->lease_ms));
        json_array_append_new(members, one);
    }
    unsigned assigned = 0, copies_min = META_MAX_COPIES, copies_max = 0;
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        unsigned c = map->shards[s].ncopies;
        assigned += c > 0;
        copies_min = c < copies_min ? c : copies_min;
        copies_max = c > copies_max ? c : copies_max;
    }
    const char *leader_name = NULL;
    const meta_member *l = m->leader_id ? metamap_member(map, (uint16_t)m->leader_id) : NULL;
    if (l != NULL)
        leader_name = l->name;
    json_t *root = json_pack("{s:b, s:i, s:s, s:I, s:I, s:i, s:i, s:i, s:i, s:b, s:I, s:o}", "raft",
                             m->mr != NULL, "self", (int)m->self + 1, "selfName", m->nodes[m->self].name,
                             "version", (json_int_t)map->version, "term",
                             (json_int_t)(m->mr ? metaraft_term(m->mr) : 0), "replicasConfigured",
                             (int)config_replicas(m->cfg), "assignedShards", (int)assigned, "copiesMin", (int)copies_min,
                             "copiesMax", (int)copies_max, "sameAsStatic", same_as_static(m), "staticEpoch",
                             (json_int_t)m->static_map->epoch, "members", members);
    unsigned down = 0;
    for (unsigned i = 0; i < map->nmembers; i++)
        down += map->members[i].down;
    char ranges[256];
    unavailable_ranges(map, ranges, sizeof(ranges));
    json_object_set_new(root, "membersDown", json_integer(down));
    unsigned insync_min = META_MAX_COPIES, under = 0; /* in-sync copies, over the assigned shards */
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        const meta_shard *sh = &map->shards[s];
        if (sh->ncopies == 0)
            continue;
        unsigned k = (unsigned)__builtin_popcount(sh->insync);
        insync_min = k < insync_min ? k : insync_min;
        under += k < (unsigned)config_replicas(m->cfg);
    }
    unsigned away = 0; /* served, by another primary than home (the static map's owner): rebalance's work */
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        away += map->shards[s].ncopies > 0 && map->shards[s].copies[0] != shardmap_owner(m->static_map, s) + 1;
    json_object_set_new(root, "awayFromHome", json_integer(away));
    json_object_set_new(root, "insyncMin", json_integer(assigned ? insync_min : 0));
    json_object_set_new(root, "underReplicatedShards", json_integer(under));
    json_object_set_new(root, "unavailableShards", json_integer(metamap_unavailable_count(map)));
    json_object_set_new(root, "unavailable", json_string(ranges));
    if (m->mr != NULL) {
        json_object_set_new(root, "leader", m->leader_id ? json_integer((json_int_t)m->leader_id) : json_null());
        json_object_set_new(root, "leaderName", leader_name ? json_string(leader_name) : json_null());
        json_object_set_new(root, "isLeader", json_boolean(m->leader));
        /* this node's lease (decision 7): usable, for how long, from which map version on */
        int64_t until;
        bool usable = lease_check(m, now, &until);
        pthread_mutex_lock(&m->lease_lock);
        int64_t last_grant = m->last_grant;
        uint64_t held = m->held_version, pending = m->pending_version;
        bool waiting = m->pending_until > m->held_until;
        pthread_mutex_unlock(&m->lease_lock);
        json_object_set_new(root, "nodeTimeoutMs", json_integer(m->timeout));
        json_object_set_new(root, "lease", json_pack("{s:b, s:I, s:I, s:o, s:o}", "valid", usable, "remainingMs",
                                                     (json_int_t)(usable ? until - now : 0), "version",
                                                     (json_int_t)held, "waitingForVersion",
                                                     waiting ? json_integer((json_int_t)pending) : json_null(),
                                                     "lastGrantMsAgo",
                                                     last_grant ? json_integer(now - last_grant) : json_null()));
    }
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    char *out = xstrdup(text ? text : "{}");
    free(text); /* jansson's malloc */
    return out;
}

void meta_metrics(meta_node *m, FILE *f)
{
    if (m == NULL || m->mr == NULL)
        return;
    prom_family(f, "eddy_node_meta_leader", "gauge", "1 while this node leads the metadata group (cluster.raft)");
    fprintf(f, "eddy_node_meta_leader %llu\n", (unsigned long long)prom_get(&m->is_leader));
    prom_family(f, "eddy_node_meta_map_version", "gauge", "version of the last shard map committed here");
    fprintf(f, "eddy_node_meta_map_version %llu\n", (unsigned long long)prom_get(&m->version));
    prom_family(f, "eddy_node_meta_proposals_total", "counter",
                "commands this node proposed to the metadata group, by result: applied, refused by the map "
                "(another leader's did it), failed (not committed), dropped (queue full)");
    for (int r = 0; r < PROPOSAL_RESULTS; r++)
        fprintf(f, "eddy_node_meta_proposals_total{result=\"%s\"} %llu\n", result_names[r],
                (unsigned long long)prom_get(&m->proposals[r]));
    prom_family(f, "eddy_node_meta_failovers_total", "counter",
                "members this node, as the metadata group's leader, failed over (FAIL_NODE committed)");
    fprintf(f, "eddy_node_meta_failovers_total %llu\n", (unsigned long long)prom_get(&m->failovers));
    prom_family(f, "eddy_node_meta_lease_valid", "gauge",
                "1 while this node holds a usable lease from the leader (it serves the shards it is primary of)");
    fprintf(f, "eddy_node_meta_lease_valid %llu\n", (unsigned long long)prom_get(&m->lease_valid));
    prom_family(f, "eddy_node_meta_members_down", "gauge", "members marked down in the committed map");
    fprintf(f, "eddy_node_meta_members_down %llu\n", (unsigned long long)prom_get(&m->members_down));
    prom_family(f, "eddy_node_meta_heartbeats_total", "counter",
                "heartbeats this node sent to the leader it believes in, by result: sent, dropped (link down or "
                "full)");
    fprintf(f, "eddy_node_meta_heartbeats_total{result=\"sent\"} %llu\n",
            (unsigned long long)prom_get(&m->heartbeats));
    fprintf(f, "eddy_node_meta_heartbeats_total{result=\"dropped\"} %llu\n",
            (unsigned long long)prom_get(&m->heartbeats_dropped));
    prom_family(f, "eddy_node_meta_grants_refused_total", "counter",
                "heartbeats answered without a lease (the node asked is not a confirmed leader)");
    fprintf(f, "eddy_node_meta_grants_refused_total %llu\n", (unsigned long long)prom_get(&m->grants_refused));
}

/* ---- for routing (node.c) and planned moves (promote.c) ---- */

const metamap *meta_committed(const meta_node *m)
{
    return m != NULL && m->mr != NULL ? m->map : NULL;
}

bool meta_leading(const meta_node *m, uint64_t *leader_id)
{
    *leader_id = m != NULL ? m->leader_id : 0;
    return m != NULL && m->mr != NULL && m->leader && metaraft_leader_ready(m->mr);
}

unsigned meta_inflight(meta_node *m)
{
    return m != NULL ? atomic_load(&m->inflight) : 0;
}

int meta_propose(meta_node *m, const void *cmd, size_t len)
{
    if (m == NULL || m->mr == NULL)
        return -1;
    atomic_fetch_add(&m->inflight, 1);
    if (metaraft_propose(m->mr, cmd, len, proposal_done, m) != 0) {
        atomic_fetch_sub(&m->inflight, 1);
        prom_add(&m->proposals[PROPOSAL_DROPPED], 1);
        return -1;
    }
    return 0;
}
