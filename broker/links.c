/* links.c - the broker's links to nodes: one common/nodelink.c connection per
 * node (batching, HELLO gating, heartbeats, failure detection) whose events the
 * links' callbacks post to the service thread; here, on the service thread, they
 * are interpreted: replies release the acknowledgements waiting on their batch,
 * deliveries are checked for gaps (lost operations are counted and recovered)
 * and handed to the topics, and requests a node will not answer (it went down)
 * go back to the topics that sent them to be answered with errors. Where all
 * of that goes is the broker's link_hooks: this file knows no topic.
 *
 * The routing map: the configuration's, until a node sends a newer one (an
 * OP_MAP delivery when its metadata group commits a change, cluster.raft, or
 * the answer to the MAP_QUERY asked after a WRONG_SHARD naming a higher
 * shard epoch than ours). A map is adopted when its version is higher than
 * ours and it describes the configured nodes at the configured epoch;
 * operations carry their shard's epoch from it. On adoption the requests owed
 * by a node that lost shards, for names of those shards, are answered as when
 * a node goes (errors; records.c's converge brings copies back), and every
 * node that gained shards is sent again what the topics hold for names of
 * those shards (hooks.resync with links_resend filtered to the moved shards:
 * registrations are idempotent at the node), and the records subscribed in
 * them are read again from it (hooks.recover, filtered the same way), so a
 * subscriber that missed an update of the old primary's gets the current
 * state (FAILOVER rule 8; record-recovered). HELLO keeps the configuration's
 * epoch and the static assignment's digest, so no link is refused after a
 * move.
 *
 * In standalone the one node is in the same process (local_link.c); its
 * replies and deliveries are the same bytes and take the same path here. */
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "linktls.h"
#include "log.h"
#include "mem.h"
#include "nodelink.h"
#include "subs.h"
#include "util.h"

typedef struct node_link {
    link_set *ls;
    int index;
    const cluster_node *node;
    nodelink *link;       /* NULL for the local node */
    bool epoch_refused;   /* the node runs another shard map (epoch or assignment) */
    delivery_stream stream;
    /* Shards the node refused (WRONG_SHARD) with an epoch below ours: it has
     * not applied the map we route by yet. What we registered there for them
     * is sent again once it announces (OP_MAP) a version >= behind_version. */
    uint8_t *behind;      /* SHARD_COUNT / 8 bytes, or NULL */
    uint64_t behind_version;
    /* Shards the node refused at our epoch although our map makes it their
     * primary: it does not serve them now (cluster.raft: no lease yet after a
     * start, or the lease lapsed while the metadata group has no leader). They
     * are in `behind` too, and are registered again at the first heartbeat
     * answer after retry_ms (0: no retry due), until the node takes them or a
     * map moves them. */
    int64_t retry_ms;
    uint64_t not_serving; /* refusals counted (eddy_node_not_serving_refusals_total) */
    log_every not_serving_log;
} node_link;

#define NOT_SERVING_RETRY_MS 250 /* registrations refused by a node not serving sent again this often */

#define MAP_ASK_MS 200 /* at most one MAP_QUERY this often (WRONG_SHARD redirects come in bursts) */

struct link_set {
    const eddy_config *cfg;
    uint64_t broker_id;
    shardmap map;          /* the routing map (version 0: the configuration's) */
    uint64_t hello_digest; /* the static assignment's digest: what HELLO carries */
    const uint8_t *moving; /* during an adoption's resyncs: the moved shards (links_resend sends only those) */
    int64_t map_asked_ms;  /* when a MAP_QUERY was last sent */
    uint64_t maps_adopted, maps_refused;
    acks *acks;
    link_hooks hooks;
    local_link *local;  /* standalone: links[0] is the in-process node */
    linktls *tls;       /* cluster.tls: the broker's credentials on tls+tcp:// links, or NULL */
    bool flushing;      /* inside local_flush: no nested flush */
    int count;
    node_link links[CLUSTER_MAX_NODES];
};

/* The links' handler (nng's threads): everything goes to the service thread. */
static int link_event(void *ctx, int event, int index, uint64_t seq, void *item)
{
    static const int kind[] = {
        [NODELINK_REPLY] = INBOUND_REPLY,   [NODELINK_DELIVERY] = INBOUND_DELIVERY,
        [NODELINK_RESYNC] = INBOUND_RESYNC, [NODELINK_FAILED] = INBOUND_FAILED,
        [NODELINK_DOWN] = INBOUND_NODE_DOWN,
    };
    link_set *ls = ctx;
    return ls->hooks.post(ls->hooks.ctx, kind[event], index, seq, item);
}

/* Operations from the node were lost (it drops what it holds for a peer that
 * stops pulling, a full local outbox too): the topics bring their subscribers up to date. */
static void delivery_lost(node_link *l, uint64_t lost, const char *where)
{
    log_error("delivery-gap", "node=%s at=%s lost_ops=%llu lost_ops_total=%llu gaps_total=%llu "
              "(re-reading its records)", l->node->id, where, (unsigned long long)lost,
              (unsigned long long)l->stream.lost, (unsigned long long)l->stream.gaps);
    l->ls->hooks.recover(l->ls->hooks.ctx, l->index);
}

/* Adopts the map a node sent (json, its version) when it is newer than ours
 * and describes the configured cluster: see the top of this file. */
static void adopt_map(node_link *from, uint64_t version, strview json)
{
    link_set *ls = from->ls;
    if (version <= ls->map.version)
        return;
    clustermap fresh = {0};
    shardmap *map = xmalloc(sizeof(*map));
    char err[256] = "";
    bool ok = clustermap_parse(&fresh, json.ptr, json.len, err, sizeof(err)) == 0 &&
              clustermap_shards(&fresh, map, err, sizeof(err)) == 0;
    if (ok && (fresh.count != ls->count || (uint64_t)fresh.epoch != ls->map.epoch || map->version != version)) {
        snprintf(err, sizeof(err), "nodes=%d epoch=%lld version=%llu (ours: nodes=%d epoch=%llu, announced "
                 "version=%llu)", fresh.count, (long long)fresh.epoch, (unsigned long long)map->version, ls->count,
                 (unsigned long long)ls->map.epoch, (unsigned long long)version);
        ok = false;
    }
    for (int i = 0; ok && i < ls->count; i++)
        if (strcmp(fresh.nodes[i].id, ls->links[i].node->id) != 0) {
            snprintf(err, sizeof(err), "node %d is '%s', ours '%s'", i + 1, fresh.nodes[i].id,
                     ls->links[i].node->id);
            ok = false;
        }
    clustermap_clear(&fresh);
    if (!ok) {
        ls->maps_refused++;
        log_warn("cluster-map-refused", "from=%s version=%llu why=\"%s\" (routing by version %llu still)",
                 from->node->id, (unsigned long long)version, err, (unsigned long long)ls->map.version);
        xfree(map);
        return;
    }
    uint8_t moved[SHARD_COUNT / 8];
    unsigned count = shardmap_moved(&ls->map, map, moved);
    bool lost[CLUSTER_MAX_NODES] = {false}, gained[CLUSTER_MAX_NODES] = {false};
    for (uint32_t s = 0; count > 0 && s < SHARD_COUNT; s++)
        if (shardmap_bit(moved, s)) {
            if (ls->map.owner[s] < ls->count)
                lost[ls->map.owner[s]] = true;
            if (map->owner[s] < ls->count)
                gained[map->owner[s]] = true;
        }
    uint64_t old_version = ls->map.version;
    ls->map = *map; /* from here on operations go where the new map says */
    xfree(map);
    ls->maps_adopted++;
    log_info("cluster-map-adopted", "version=%llu from_version=%llu moved_shards=%u from=%s",
             (unsigned long long)version, (unsigned long long)old_version, count, from->node->id);
    uint64_t failed = 0;
    for (int i = 0; i < ls->count; i++)
        if (lost[i])
            failed += acks_fail_shards(ls->acks, i, moved);
    if (failed > 0)
        log_warn("moved-shard-requests-answered", "requesters=%llu (owed by nodes that lost their shards: "
                 "answered MESSAGE_DENIED; their writes may or may not have been applied)",
                 (unsigned long long)failed);
    ls->moving = moved;
    for (int i = 0; i < ls->count; i++)
        if (gained[i]) {
            ls->hooks.resync(ls->hooks.ctx, i);
            /* FAILOVER rule 8: an update the old primary published just
             * before it lost the shard may never have reached us; the new
             * primary's current state goes to subscribers that are behind */
            ls->hooks.recover(ls->hooks.ctx, i);
        }
    ls->moving = NULL;
}

/* Node l refused shard with an epoch below ours (it is behind our map):
 * its requesters owed for that shard are answered with errors now, and what
 * we registered there is sent again once it catches up (caught_up). */
static void node_behind(node_link *l, uint32_t shard)
{
    link_set *ls = l->ls;
    shard &= SHARD_COUNT - 1;
    if (l->behind == NULL)
        l->behind = xcalloc(1, SHARD_COUNT / 8);
    bool first = !shardmap_bit(l->behind, shard);
    l->behind[shard / 8] |= (uint8_t)(1u << (shard % 8));
    l->behind_version = ls->map.version;
    uint8_t one[SHARD_COUNT / 8] = {0};
    one[shard / 8] = (uint8_t)(1u << (shard % 8));
    uint64_t failed = acks_fail_shards(ls->acks, l->index, one);
    if (first || failed > 0)
        log_info("node-map-behind", "node=%s shard=%u our_version=%llu requesters_answered=%llu (registrations "
                 "sent again once it has our map)", l->node->id, shard, (unsigned long long)ls->map.version,
                 (unsigned long long)failed);
}

/* What we registered at node l for its `behind` shards is sent again, and
 * their subscribed records read again: an update the node applied before it
 * took our registration reached nobody here (FAILOVER rule 8's recovery). */
static void register_behind(node_link *l)
{
    link_set *ls = l->ls;
    uint8_t *shards = l->behind;
    l->behind = NULL;
    l->retry_ms = 0;
    ls->moving = shards;
    ls->hooks.resync(ls->hooks.ctx, l->index);
    ls->hooks.recover(ls->hooks.ctx, l->index);
    ls->moving = NULL;
    xfree(shards);
}

/* Node l announced map version `version`: when it has caught up with the map
 * it refused shards under, they are registered there again. */
static void caught_up(node_link *l, uint64_t version)
{
    if (l->behind == NULL || version < l->behind_version)
        return;
    register_behind(l);
}

/* Node l refused shard at our epoch while our map makes it the primary: it
 * does not serve the shard now (no lease). Its requesters were answered one by
 * one (refused_request); what we registered there for the shard is sent again
 * NOT_SERVING_RETRY_MS from now, and again after that while it refuses. */
static void node_not_serving(node_link *l, uint32_t shard)
{
    shard &= SHARD_COUNT - 1;
    if (l->behind == NULL) {
        l->behind = xcalloc(1, SHARD_COUNT / 8);
        l->behind_version = l->ls->map.version;
    }
    l->behind[shard / 8] |= (uint8_t)(1u << (shard % 8));
    int64_t now = now_ms();
    if (l->retry_ms == 0)
        l->retry_ms = now + NOT_SERVING_RETRY_MS;
    l->not_serving++;
    uint64_t held;
    if (log_every_due(&l->not_serving_log, now, 1000, &held))
        log_warn("node-not-serving", "node=%s shard=%u epoch=%llu also=%llu (its primary by our map, without a "
                 "lease: requests answered with errors, registrations sent again every %d ms)", l->node->id, shard,
                 (unsigned long long)shardmap_shard_epoch(&l->ls->map, shard), (unsigned long long)held,
                 NOT_SERVING_RETRY_MS);
}

/* A request node l refused (WRONG_SHARD, the request echoed in the error:
 * orig = its kind): its requester is answered with an error now, as if the
 * node had gone down, rather than left waiting for an answer that will not
 * come. An owed answer is answered only while still owed (once). */
static void refused_request(node_link *l, const op *e)
{
    link_set *ls = l->ls;
    op req = {.kind = e->orig, .session = e->session, .action = e->action, .flags = e->flags, .ref = e->ref,
              .corr = e->corr, .name = e->name, .shard = e->shard, .epoch = e->epoch};
    if (acks_tracks(&req) && !acks_unowe(ls->acks, l->index, &req))
        return;
    (void)ls->hooks.fail(ls->hooks.ctx, &req);
}

/* Asks node l for its map (at most every MAP_ASK_MS): the answer comes as an OP_MAP in its reply. */
static void ask_map(node_link *l)
{
    int64_t now = now_ms();
    if (now - l->ls->map_asked_ms < MAP_ASK_MS)
        return;
    l->ls->map_asked_ms = now;
    op q = {.kind = OP_MAP_QUERY};
    (void)links_submit_to(l->ls, l->index, &q, NULL);
}

/* One operation of a node's reply (op_batch_each). */
static int on_answer(void *arg, const op *o)
{
    node_link *l = arg;
    if (o->kind == OP_ERROR && o->error == OP_ERR_WRONG_SHARD && o->orig != 0)
        refused_request(l, o);
    if (o->kind == OP_MAP && o->has_data) {
        adopt_map(l, o->corr, o->data);
        caught_up(l, o->corr);
    } else if (o->kind == OP_ERROR && o->error == OP_ERR_WRONG_SHARD &&
               o->epoch == shardmap_shard_epoch(&l->ls->map, o->shard) &&
               shardmap_owner(&l->ls->map, o->shard & (SHARD_COUNT - 1)) == (unsigned)l->index) {
        node_not_serving(l, o->shard);
    } else if (o->kind == OP_ERROR && o->error == OP_ERR_WRONG_SHARD &&
               o->epoch > shardmap_shard_epoch(&l->ls->map, o->shard)) {
        ask_map(l); /* the node knows a newer map of that shard */
    } else if (o->kind == OP_ERROR && o->error == OP_ERR_WRONG_SHARD &&
               o->epoch < shardmap_shard_epoch(&l->ls->map, o->shard)) {
        node_behind(l, o->shard);
    } else if (o->kind == OP_ERROR && o->error == OP_ERR_WRONG_EPOCH) {
        if (!l->epoch_refused)
            log_error("epoch-mismatch", "node=%s node_epoch=%llu our_epoch=%llu (not serving: every process "
                      "of a cluster must run the same shard map)", l->node->id, (unsigned long long)o->epoch,
                      (unsigned long long)l->ls->map.epoch);
        l->epoch_refused = true;
    } else if (o->kind == OP_HEARTBEAT && o->has_version && o->version >= 0) {
        uint64_t lost = stream_heartbeat(&l->stream, (uint64_t)o->version);
        if (lost > 0)
            delivery_lost(l, lost, "tail");
        if (l->behind != NULL && l->retry_ms != 0 && now_ms() >= l->retry_ms)
            register_behind(l); /* the shards it did not serve: does it now? */
    } else if (o->kind == OP_ERROR)
        log_warn("node-error", "node=%s error=%u name=%.*s epoch=%llu", l->node->id, o->error, (int)o->name.len,
                 o->name.ptr, (unsigned long long)o->epoch);
    return 0;
}

static void handle_reply(node_link *l, uint64_t seq, nng_msg *msg)
{
    if (msg != NULL) {
        if (op_batch_each(nng_msg_body(msg), nng_msg_len(msg), on_answer, l) != 0)
            log_warn("malformed-reply", "node=%s bytes=%zu", l->node->id, nng_msg_len(msg));
        nng_msg_free(msg);
    }
    acks_batch_answered(l->ls->acks, l->index, seq);
}

static void handle_delivery(node_link *l, nng_msg *msg)
{
    link_set *ls = l->ls;
    size_t len = nng_msg_len(msg);
    const uint8_t *body = nng_msg_body(msg);
    mp_reader r;
    uint64_t origin, seq;
    uint32_t count;
    if (len < 8 || get_be64(body) != ls->broker_id ||
        op_batch_open(&r, body + 8, len - 8, &origin, &seq, &count) != 0) {
        log_warn("malformed-delivery", "node=%s bytes=%zu", l->node->id, len);
        nng_msg_free(msg);
        return;
    }
    uint64_t lost;
    switch (stream_accept(&l->stream, seq, count, batch_starts_with_hello(&r, count), &lost)) {
    case STREAM_RESTARTED:
        /* updates it published just before dying may never have reached us */
        log_warn("node-stream-restarted", "node=%s (the node restarted: re-reading its records)", l->node->id);
        ls->hooks.recover(ls->hooks.ctx, l->index);
        break;
    case STREAM_LATE:
        log_warn("delivery-late", "node=%s seq=%llu ops=%u received=%llu (counted lost, arrived after all: "
                 "applied)", l->node->id, (unsigned long long)seq, count,
                 (unsigned long long)l->stream.received);
        break;
    case STREAM_BAD:
        log_warn("malformed-delivery", "node=%s seq=%llu ops=%u (dropped)", l->node->id,
                 (unsigned long long)seq, count);
        nng_msg_free(msg);
        return;
    case STREAM_GAP:
        delivery_lost(l, lost, "gap");
        break;
    }
    for (uint32_t i = 0; i < count; i++) {
        op o;
        int rc = op_decode(&r, &o);
        if (rc != 0) {
            log_warn("malformed-delivery", "node=%s index=%u", l->node->id, i);
            if (rc == OP_DECODE_SKIPPED)
                continue;
            break;
        }
        acks_settle(ls->acks, l->index, &o);
        if (o.kind == OP_MAP && o.has_data) { /* the node's metadata group committed a change */
            adopt_map(l, o.corr, o.data);
            caught_up(l, o.corr);
        } else
            ls->hooks.deliver(ls->hooks.ctx, &o);
    }
    nng_msg_free(msg);
}

/* Answers every requester in a batch the node will not answer with an error. */
static void fail_batch(node_link *l, uint64_t seq, op_batch *batch)
{
    link_set *ls = l->ls;
    mp_reader r;
    mp_reader_init(&r, batch->buf.data, batch->buf.size);
    uint32_t answered = 0;
    for (uint32_t i = 0; i < batch->count; i++) {
        op o;
        int rc = op_decode(&r, &o);
        if (rc == -1)
            break;
        if (rc == 0 && !acks_tracks(&o)) /* owed answers fail when the node is down (acks_fail_link) */
            answered += (uint32_t)ls->hooks.fail(ls->hooks.ctx, &o);
    }
    log_warn("node-batch-failed", "node=%s seq=%llu ops=%u requesters_answered=%u (with errors; "
             "some operations may have been applied)", l->node->id, (unsigned long long)seq,
             batch->count, answered);
    op_batch_destroy(batch);
    xfree(batch);
    handle_reply(l, seq, NULL);
}

void links_handle_inbound(link_set *ls, int kind, int li, uint64_t seq, void *msg)
{
    node_link *l = &ls->links[li];
    switch (kind) {
    case INBOUND_FAILED: {
        fail_batch(l, seq, msg);
        /* A node that leaves a batch unanswered (it is gone, or stopped, or
         * stuck) is treated as gone: what it owes is answered with errors now
         * rather than whenever (if ever) it resumes. */
        uint64_t n = acks_fail_link(ls->acks, li);
        if (n > 0)
            log_warn("node-unanswering-answered", "node=%s requesters=%llu (answered MESSAGE_DENIED: the node did "
                     "not answer within cluster.requestTimeout; their writes may or may not be applied)",
                     l->node->id, (unsigned long long)n);
        break;
    }
    case INBOUND_NODE_DOWN: {
        uint64_t n = acks_fail_link(ls->acks, li);
        stream_forget_mark(&l->stream);
        if (n > 0)
            log_warn("node-down-answered", "node=%s requesters=%llu (answered MESSAGE_DENIED: the node "
                     "went down before answering; their writes may or may not have been applied)",
                     l->node->id, (unsigned long long)n);
        break;
    }
    case INBOUND_RESYNC: /* queued behind the refused batch, sent once the node delivers */
        ls->hooks.resync(ls->hooks.ctx, li);
        break;
    case INBOUND_REPLY:
        handle_reply(l, seq, msg);
        break;
    default:
        handle_delivery(l, msg);
    }
}

/* The local node's deliveries, oldest first. With nothing in flight, what the
 * node numbered and we did not receive was dropped (its outbox was full). */
static void take_local(link_set *ls)
{
    node_link *l = &ls->links[0];
    nng_msg *msg;
    uint64_t published;
    while ((msg = local_link_take(ls->local, &published)) != NULL)
        handle_delivery(l, msg);
    uint64_t lost = stream_settle(&l->stream, published);
    if (lost > 0)
        delivery_lost(l, lost, "tail");
}

/* Applies the gathered local batch, then handles its deliveries and its
 * reply, in the order a remote node's would arrive. */
static void local_flush(void *ctx)
{
    link_set *ls = ctx;
    if (ls->flushing)
        return;
    ls->flushing = true;
    uint64_t seq;
    nng_msg *reply = local_link_apply(ls->local, &seq);
    if (seq != 0) {
        take_local(ls);
        handle_reply(&ls->links[0], seq, reply);
    }
    ls->flushing = false;
}

void links_poll_local(link_set *ls)
{
    if (ls != NULL && ls->local != NULL)
        take_local(ls);
}

link_set *links_create(const eddy_config *cfg, uint64_t broker_id, const local_node *local, acks *a,
                       const link_hooks *hooks)
{
    link_set *ls = xcalloc(1, sizeof(*ls));
    ls->cfg = cfg;
    ls->broker_id = broker_id;
    ls->acks = a;
    ls->hooks = *hooks;
    const clustermap *m = &cfg->cluster;
    char err[512];
    if (clustermap_shards(m, &ls->map, err, sizeof(err)) != 0) {
        log_error("bad-shard-map", "%s", err);
        goto fail;
    }
    ls->hello_digest = clustermap_hello_digest(m, &ls->map); /* a map learnt from a seed may have moved */
    if (local != NULL && m->count != 1) {
        log_error("bad-local-node", "nodes=%d (an in-process node must be the only one)", m->count);
        goto fail;
    }
    if (local == NULL) {
        ls->tls = linktls_open(cfg->cluster_tls_cert, cfg->cluster_tls_key, cfg->cluster_tls_ca, LINK_ROLE_BROKER,
                               err, sizeof(err));
        if (ls->tls == NULL && err[0] != '\0') {
            log_error("link-credentials-refused", "%s", err);
            goto fail;
        }
        for (int i = 0; ls->tls == NULL && i < m->count; i++)
            if (!linktls_url_local(m->nodes[i].request) || !linktls_url_local(m->nodes[i].delivery)) {
                log_warn("links-unauthenticated", "node=%s request=%s (links to nodes beyond this machine without "
                         "TLS: what this broker sends and receives can be read and forged on the way; set "
                         "cluster.tls.* and tls+tcp:// addresses, README: Security)", m->nodes[i].id,
                         m->nodes[i].request);
                break;
            }
    }
    for (int i = 0; i < m->count; i++) {
        node_link *l = &ls->links[i];
        l->ls = ls;
        l->index = i;
        l->node = &m->nodes[i];
        ls->count++;
        if (local != NULL) {
            /* HELLO at once: the node knows this broker from then on */
            op hello = {.kind = OP_HELLO, .epoch = ls->map.epoch, .corr = ls->hello_digest,
                        .action = LINK_ROLE_BROKER};
            ls->local = local_link_open(local, broker_id, &hello, local_flush, ls, hooks->wake, hooks->ctx);
            local_flush(ls);
            continue;
        }
        nodelink_config c = {.index = i, .id = l->node->id, .request_url = l->node->request,
                             .delivery_url = l->node->delivery, .peer_id = broker_id,
                             .epoch = ls->map.epoch, .map_digest = ls->hello_digest,
                             .reply_timeout_ms = (int)cfg->request_timeout_ms, .tls = ls->tls,
                             .role = LINK_ROLE_BROKER, .handler = link_event, .ctx = ls};
        if ((l->link = nodelink_open(&c)) == NULL)
            goto fail;
    }
    return ls;
fail:
    links_destroy(ls);
    return NULL;
}

void links_start(link_set *ls, struct lws_context *ctx)
{
    if (ls->local != NULL)
        local_link_start(ls->local, ctx);
}

void links_stop(link_set *ls)
{
    if (ls != NULL && ls->local != NULL)
        local_link_stop(ls->local);
}

void links_metrics(const link_set *ls, FILE *f)
{
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"eddy_node_up", "gauge", "1 while the broker has a connection to the node"},
        {"eddy_delivery_gaps_total", "counter", "gaps seen in the node's delivery stream"},
        {"eddy_delivery_lost_operations_total", "counter", "operations lost in those gaps"},
        {"eddy_delivery_late_batches_total", "counter", "batches counted lost that arrived after all"},
        {"eddy_node_refused_operations_total", "counter", "operations refused: node queue full"},
        {"eddy_node_not_serving_refusals_total", "counter",
         "operations the node refused as the shard's primary without a lease (cluster.raft): answered with errors"},
    };
    for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", m[k].name, m[k].help, m[k].name, m[k].type);
        for (int i = 0; i < ls->count; i++) {
            const node_link *l = &ls->links[i];
            bool local = l->link == NULL;
            uint64_t v = k == 0   ? (uint64_t)(local || nodelink_connected(l->link))
                         : k == 1 ? l->stream.gaps
                         : k == 2 ? l->stream.lost
                         : k == 3 ? l->stream.late
                         : k == 5 ? l->not_serving
                         : local  ? 0
                                  : nodelink_refused(l->link);
            fprintf(f, "%s{node=\"%s\"} %llu\n", m[k].name, l->node->id, (unsigned long long)v);
        }
    }
    fprintf(f, "# HELP eddy_broker_map_version version of the shard map this broker routes by (0: the "
            "configuration's; cluster.raft maps from the nodes)\n# TYPE eddy_broker_map_version gauge\n"
            "eddy_broker_map_version %llu\n", (unsigned long long)ls->map.version);
    fprintf(f, "# HELP eddy_broker_maps_total shard maps sent by nodes, by result: adopted, refused (another "
            "cluster's)\n# TYPE eddy_broker_maps_total counter\neddy_broker_maps_total{result=\"adopted\"} %llu\n"
            "eddy_broker_maps_total{result=\"refused\"} %llu\n", (unsigned long long)ls->maps_adopted,
            (unsigned long long)ls->maps_refused);
}

bool links_refused(const link_set *ls)
{
    for (int i = 0; i < ls->count; i++)
        if (ls->links[i].epoch_refused)
            return true;
    return false;
}

bool links_ready(const link_set *ls)
{
    for (int i = 0; i < ls->count; i++)
        if (ls->links[i].link != NULL && !nodelink_delivering(ls->links[i].link))
            return false;
    return true;
}

void links_reload_tls(link_set *ls)
{
    char err[600];
    if (linktls_reload(ls->tls, err, sizeof(err)) != 0)
        log_error("link-certificates-reload-failed", "%s (the certificates in use stay)", err);
}

void links_destroy(link_set *ls)
{
    if (ls == NULL)
        return;
    for (int i = 0; i < ls->count; i++)
        if (ls->links[i].link != NULL) {
            /* a clean stop: the node forgets this broker now, not after cluster.brokerTimeout */
            op bye = {.kind = OP_BYE, .epoch = ls->map.epoch};
            if (nodelink_delivering(ls->links[i].link))
                nodelink_submit(ls->links[i].link, &bye);
            nodelink_stop(ls->links[i].link); /* all at once: each flushes what it holds */
        }
    local_link_close(ls->local);
    for (int i = 0; i < ls->count; i++) {
        nodelink_close(ls->links[i].link);
        xfree(ls->links[i].behind);
    }
    linktls_close(ls->tls); /* the links borrowed it */
    xfree(ls);
}

int links_submit_to(link_set *ls, int li, op *o, uint64_t *seq)
{
    uint64_t unused;
    if (seq == NULL)
        seq = &unused;
    if (!op_fits(o)) { /* the modules check their fields first; this is the last guard */
        log_warn("operation-refused", "kind=%s session=%llu name_bytes=%u ref_bytes=%u path_bytes=%u "
                 "user_bytes=%u (over the operation limits: never sent)", op_kind_name(o->kind),
                 (unsigned long long)o->session, o->name.len, o->ref.len, o->path.len, o->user.len);
        return -1;
    }
    if (li < 0 || li >= ls->count) { /* a shard without a primary (all its copies lost) */
        log_warn("shard-unavailable", "kind=%s shard=%u map_version=%llu (no node is its primary: answered as "
                 "refused)", op_kind_name(o->kind), o->shard, (unsigned long long)ls->map.version);
        return -1;
    }
    node_link *l = &ls->links[li];
    o->epoch = shardmap_shard_epoch(&ls->map, o->shard); /* the node checks it (fencing) */
    o->broker = 0; /* the batch header carries the origin */
    if (l->link == NULL)
        *seq = local_link_submit(ls->local, o);
    else if ((*seq = nodelink_submit(l->link, o)) == 0)
        return -1; /* the node is down, or its queue is full */
    acks_owe(ls->acks, li, o);
    return li;
}

int links_submit_by(link_set *ls, op *o, strview route, uint64_t *seq)
{
    o->shard = shard_of(route.ptr, route.len);
    return links_submit_to(ls, (int)shardmap_owner(&ls->map, o->shard), o, seq);
}

int links_submit(link_set *ls, op *o, uint64_t *seq)
{
    return links_submit_by(ls, o, o->name, seq);
}

struct resend {
    link_set *ls;
    int li, flags;
    const op *tmpl;
};

static int resend_name(void *arg, strview name, subs_holder *h, uint32_t n, void *data)
{
    struct resend *r = arg;
    if (n == 0 || (!(r->flags & LINKS_EVERY_NODE) && links_owner(r->ls, name) != r->li))
        return 0;
    op o = *r->tmpl;
    o.name = name;
    o.shard = shard_of(name.ptr, name.len);
    if (r->ls->moving != NULL && !shardmap_bit(r->ls->moving, o.shard))
        return 0; /* a map move: only the names of the moved shards */
    for (uint32_t i = 0; i < ((r->flags & LINKS_PER_HOLDER) ? n : 1); i++) {
        if (r->flags & LINKS_PER_HOLDER)
            o.session = ((session *)h[i].ptr)->id;
        links_submit_to(r->ls, r->li, &o, NULL);
    }
    return 0;
}

void links_resend(link_set *ls, int li, const subs *table, const op *tmpl, int flags)
{
    if (ls->moving != NULL && (flags & LINKS_EVERY_NODE))
        return; /* held by every node whatever its shards: nothing moved */
    struct resend r = {ls, li, flags, tmpl};
    subs_foreach(table, resend_name, &r);
}

int links_owner(const link_set *ls, strview name)
{
    return (int)shardmap_owner(&ls->map, shard_of(name.ptr, name.len));
}

int links_count(const link_set *ls)
{
    return ls->count;
}

bool links_moving(const link_set *ls)
{
    return ls->moving != NULL;
}
