/* links.c - the broker's links to nodes: one common/nodelink.c connection per
 * node (batching, HELLO gating, heartbeats, failure detection) whose events the
 * link threads hand to the service thread (broker_post); here, on the service
 * thread, they are interpreted: replies release the acknowledgements waiting on
 * their batch, deliveries are checked for gaps (lost operations are counted and
 * the records this broker watches re-read) and fanned out to the modules, and
 * requests a node will not answer (it went down) are answered with errors.
 *
 * In standalone the one node is in the same process: its link is "local".
 * Operations gather in a batch that is applied by a direct call at the start
 * of the next service-loop round (a zero-delay timer), so everything read from
 * clients in one round travels together, and the deliveries are taken from the
 * node's outbox on this thread. The replies and deliveries are the same bytes
 * a remote node sends and go through the same handlers. */
#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "log.h"
#include "mem.h"
#include "nodelink.h"
#include "util.h"

#define LOCAL_BATCH_MAX 4096 /* operations gathered before a local batch is applied at once */

typedef struct waiter {
    uint64_t seq;
    pending_ack *pa;
    struct waiter *next;
} waiter;

typedef struct node_link {
    link_set *ls;
    int index;
    const config_node *node;
    nodelink *link;     /* NULL for the local node */
    /* the local node (service thread only) */
    bool local;
    op_batch filling;     /* operations for the next local batch */
    uint64_t next_seq;    /* the number that batch will carry */
    bool flush_due;       /* flush_timer is scheduled */
    bool flushing;        /* inside local_flush: no nested flush */
    msgpack_sbuffer wire; /* the batch as sent: header, then the operations */
    lws_sorted_usec_list_t flush_timer;
    /* service thread only */
    bool epoch_refused; /* the node runs another shard map (epoch or assignment) */
    awaiting *owed;     /* record requests the node still has to answer */
    uint64_t answered_seq;
    delivery_stream stream;
    waiter *wait_head, *wait_tail;
} node_link;

struct link_set {
    broker *b;
    const eddy_config *cfg;
    uint64_t broker_id;
    shardmap map;
    const local_node *local; /* the in-process node; NULL when there is none */
    int count;
    node_link links[CONFIG_MAX_NODES];
};

/* The link threads' handler: everything goes to the service thread. */
static int link_event(void *ctx, int event, int index, uint64_t seq, void *item)
{
    static const int kind[] = {
        [NODELINK_REPLY] = INBOUND_REPLY,   [NODELINK_DELIVERY] = INBOUND_DELIVERY,
        [NODELINK_RESYNC] = INBOUND_RESYNC, [NODELINK_FAILED] = INBOUND_FAILED,
        [NODELINK_DOWN] = INBOUND_NODE_DOWN,
    };
    return broker_post(ctx, kind[event], index, seq, item);
}

static void handle_reply(broker *b, node_link *l, uint64_t seq, nng_msg *msg);
static void handle_delivery(broker *b, node_link *l, nng_msg *msg);
static void delivery_lost(broker *b, node_link *l, uint64_t lost, const char *where);

/* The local node's deliveries, oldest first. With nothing in flight, what the
 * node numbered and we did not receive was dropped (its outbox was full). */
static void local_take(node_link *l)
{
    const local_node *ln = l->ls->local;
    nng_msg *msg;
    uint64_t published;
    while ((msg = ln->take(ln->node, &published)) != NULL)
        handle_delivery(l->ls->b, l, msg);
    uint64_t lost = stream_settle(&l->stream, published);
    if (lost > 0)
        delivery_lost(l->ls->b, l, lost, "tail");
}

/* Applies the gathered batch (not empty) on the local node as batch *seq;
 * returns the node's reply (owned by the caller; NULL when it had none). */
static nng_msg *local_apply(node_link *l, uint64_t *seq)
{
    uint8_t hdr[OP_BATCH_HEADER_MAX];
    *seq = l->next_seq++;
    size_t h = op_batch_header(hdr, l->ls->broker_id, *seq, l->filling.count);
    l->wire.size = 0;
    msgpack_sbuffer_write(&l->wire, (const char *)hdr, h);
    if (l->filling.buf.size > 0)
        msgpack_sbuffer_write(&l->wire, l->filling.buf.data, l->filling.buf.size);
    op_batch_reset(&l->filling);
    const local_node *ln = l->ls->local;
    return ln->request(ln->node, l->wire.data, l->wire.size);
}

/* Applies the gathered batch, then handles its deliveries and its reply, in
 * the order a remote node's would arrive. */
static void local_flush(node_link *l)
{
    if (l->filling.count == 0 || l->flushing)
        return;
    l->flushing = true;
    uint64_t seq;
    nng_msg *reply = local_apply(l, &seq);
    local_take(l);
    handle_reply(l->ls->b, l, seq, reply);
    l->flushing = false;
}

static void local_flush_due(lws_sorted_usec_list_t *sul)
{
    node_link *l = lws_container_of(sul, node_link, flush_timer);
    l->flush_due = false;
    local_flush(l);
}

/* Queues o for the local node; returns the batch number it travels in. */
static uint64_t local_submit(node_link *l, const op *o)
{
    if (l->filling.count >= LOCAL_BATCH_MAX)
        local_flush(l);
    op_batch_add(&l->filling, o);
    broker *b = l->ls->b;
    if (!l->flush_due && broker_serving(b)) {
        l->flush_due = true;
        lws_sul_schedule(broker_lws(b), 0, &l->flush_timer, local_flush_due, 0);
    }
    return l->next_seq;
}

static void local_wake(void *ctx)
{
    broker_wake(ctx);
}

void links_stop_timers(link_set *ls)
{
    for (int i = 0; ls != NULL && i < ls->count; i++)
        if (ls->links[i].flush_due) { /* what it would flush goes in links_destroy */
            lws_sul_cancel(&ls->links[i].flush_timer);
            ls->links[i].flush_due = false;
        }
}

void links_poll_local(broker *b)
{
    link_set *ls = broker_links(b);
    if (ls != NULL && ls->local != NULL)
        local_take(&ls->links[0]);
}

/* Says HELLO to the in-process node: the node knows this broker from then on. */
static void local_open(link_set *ls, node_link *l)
{
    l->local = true;
    l->next_seq = 1;
    op_batch_init(&l->filling);
    msgpack_sbuffer_init(&l->wire);
    ls->local->attach(ls->local->node, ls->broker_id, local_wake, ls->b);
    op hello = {.kind = OP_HELLO, .epoch = ls->map.epoch, .corr = shardmap_digest(&ls->map)};
    op_batch_add(&l->filling, &hello);
    local_flush(l);
}

link_set *links_create(broker *b, const eddy_config *cfg, uint64_t broker_id, const local_node *local)
{
    link_set *ls = xcalloc(1, sizeof(*ls));
    ls->b = b;
    ls->cfg = cfg;
    ls->broker_id = broker_id;
    char err[256];
    if (config_shardmap(cfg, &ls->map, err, sizeof(err)) != 0) {
        log_error("bad-shard-map", "%s", err);
        xfree(ls);
        return NULL;
    }
    if (local != NULL && cfg->node_count != 1) {
        log_error("bad-local-node", "nodes=%d (an in-process node must be the only one)", cfg->node_count);
        xfree(ls);
        return NULL;
    }
    ls->local = local;
    for (int i = 0; i < cfg->node_count; i++) {
        node_link *l = &ls->links[i];
        l->ls = ls;
        l->index = i;
        l->node = &cfg->nodes[i];
        l->owed = awaiting_new();
        ls->count++;
        if (local != NULL) {
            local_open(ls, l);
            continue;
        }
        nodelink_config c = {.index = i, .id = l->node->id, .request_url = l->node->request,
                             .delivery_url = l->node->delivery, .peer_id = broker_id,
                             .epoch = ls->map.epoch, .map_digest = shardmap_digest(&ls->map),
                             .handler = link_event, .ctx = b};
        if ((l->link = nodelink_open(&c)) == NULL)
            goto fail;
    }
    return ls;
fail:
    links_destroy(ls);
    return NULL;
}

void links_metrics(link_set *ls, FILE *f)
{
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"eddy_node_up", "gauge", "1 while the broker has a connection to the node"},
        {"eddy_delivery_gaps_total", "counter", "gaps seen in the node's delivery stream"},
        {"eddy_delivery_lost_operations_total", "counter", "operations lost in those gaps"},
        {"eddy_delivery_late_batches_total", "counter", "batches counted lost that arrived after all"},
        {"eddy_node_refused_operations_total", "counter", "operations refused: node queue full"},
    };
    for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", m[k].name, m[k].help, m[k].name, m[k].type);
        for (int i = 0; i < ls->count; i++) {
            node_link *l = &ls->links[i];
            uint64_t v = k == 0   ? (uint64_t)(l->local || nodelink_connected(l->link))
                         : k == 1 ? l->stream.gaps
                         : k == 2 ? l->stream.lost
                         : k == 3 ? l->stream.late
                         : l->local ? 0
                                    : nodelink_refused(l->link);
            fprintf(f, "%s{node=\"%s\"} %llu\n", m[k].name, l->node->id, (unsigned long long)v);
        }
    }
}

bool links_refused(link_set *ls)
{
    for (int i = 0; i < ls->count; i++)
        if (ls->links[i].epoch_refused)
            return true;
    return false;
}

bool links_ready(link_set *ls)
{
    for (int i = 0; i < ls->count; i++)
        if (!ls->links[i].local && !nodelink_delivering(ls->links[i].link))
            return false;
    return true;
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
    for (int i = 0; i < ls->count; i++) {
        node_link *l = &ls->links[i];
        if (l->local) { /* the uninterests the closes queued reach the node; what it answers is dropped */
            const local_node *ln = ls->local;
            uint64_t seq;
            nng_msg *reply = l->filling.count > 0 ? local_apply(l, &seq) : NULL;
            if (reply != NULL)
                nng_msg_free(reply);
            nng_msg *msg;
            uint64_t published;
            while ((msg = ln->take(ln->node, &published)) != NULL)
                nng_msg_free(msg);
            ln->detach(ln->node); /* the broker is about to be freed: no more wake-ups */
            op_batch_destroy(&l->filling);
            msgpack_sbuffer_destroy(&l->wire);
        }
        nodelink_close(l->link);
        awaiting_free(l->owed);
        while (l->wait_head != NULL) {
            waiter *w = l->wait_head;
            l->wait_head = w->next;
            if (--w->pa->waits == 0) {
                xfree(w->pa->correlation_id);
                xfree(w->pa);
            }
            xfree(w);
        }
    }
    xfree(ls);
}

int links_submit_to(broker *b, int li, op *o, uint64_t *seq)
{
    link_set *ls = broker_links(b);
    node_link *l = &ls->links[li];
    o->epoch = ls->map.epoch;
    o->broker = 0; /* the batch header carries the origin */
    if (l->local)
        *seq = local_submit(l, o);
    else if ((*seq = nodelink_submit(l->link, o)) == 0)
        return -1; /* the node is down, or its queue is full */
    awaiting_add(l->owed, o);
    return li;
}

int links_submit(broker *b, op *o, uint64_t *seq)
{
    link_set *ls = broker_links(b);
    o->shard = shard_of(o->name.ptr, o->name.len);
    return links_submit_to(b, (int)shardmap_owner(&ls->map, o->shard), o, seq);
}

int links_submit_name(broker *b, op *o, strview name, uint64_t *seq)
{
    link_set *ls = broker_links(b);
    o->shard = shard_of(name.ptr, name.len);
    return links_submit_to(b, (int)shardmap_owner(&ls->map, o->shard), o, seq);
}

int links_owner(broker *b, const char *name, size_t len)
{
    link_set *ls = broker_links(b);
    return (int)shardmap_owner(&ls->map, shard_of(name, len));
}

int links_count(broker *b)
{
    return broker_links(b)->count;
}

bool links_answered(broker *b, int li, uint64_t seq)
{
    return broker_links(b)->links[li].answered_seq >= seq;
}

void links_wait(broker *b, int li, uint64_t seq, pending_ack *pa)
{
    node_link *l = &broker_links(b)->links[li];
    waiter *w = xmalloc(sizeof(*w));
    w->seq = seq;
    w->pa = pa;
    w->next = NULL;
    if (l->wait_tail != NULL)
        l->wait_tail->next = w;
    else
        l->wait_head = w;
    l->wait_tail = w;
}

/* Operations from the node were lost (nng pub/sub drops when a queue is full):
 * bring the records this broker's clients watch up to date. */
static void delivery_lost(broker *b, node_link *l, uint64_t lost, const char *where)
{
    log_error("delivery-gap", "node=%s at=%s lost_ops=%llu lost_ops_total=%llu gaps_total=%llu "
              "(re-reading its records)", l->node->id, where, (unsigned long long)lost,
              (unsigned long long)l->stream.lost, (unsigned long long)l->stream.gaps);
    records_recover(b, l->index);
}

static void handle_reply(broker *b, node_link *l, uint64_t seq, nng_msg *msg)
{
    if (msg != NULL) {
        mp_reader r;
        uint64_t origin, rseq;
        uint32_t count;
        if (op_batch_open(&r, nng_msg_body(msg), nng_msg_len(msg), &origin, &rseq, &count) != 0)
            log_warn("malformed-reply", "node=%s bytes=%zu", l->node->id, nng_msg_len(msg));
        else
            for (uint32_t i = 0; i < count; i++) {
                op o;
                if (op_decode(&r, &o) != 0) {
                    log_warn("malformed-reply", "node=%s index=%u", l->node->id, i);
                    break;
                }
                if (o.kind == OP_ERROR && o.error == OP_ERR_WRONG_EPOCH) {
                    if (!l->epoch_refused)
                        log_error("epoch-mismatch", "node=%s node_epoch=%llu our_epoch=%llu (not serving: "
                                  "every process of a cluster must run the same shard map)",
                                  l->node->id, (unsigned long long)o.epoch,
                                  (unsigned long long)l->ls->map.epoch);
                    l->epoch_refused = true;
                } else if (o.kind == OP_HEARTBEAT && o.has_version && o.version >= 0) {
                    uint64_t lost = stream_heartbeat(&l->stream, (uint64_t)o.version);
                    if (lost > 0)
                        delivery_lost(b, l, lost, "tail");
                } else if (o.kind == OP_ERROR)
                    log_warn("node-error", "node=%s error=%u name=%.*s epoch=%llu", l->node->id,
                             o.error, (int)o.name.len, o.name.ptr, (unsigned long long)o.epoch);
            }
        nng_msg_free(msg);
    }
    if (seq > l->answered_seq)
        l->answered_seq = seq;
    while (l->wait_head != NULL && l->wait_head->seq <= l->answered_seq) {
        waiter *w = l->wait_head;
        l->wait_head = w->next;
        if (l->wait_head == NULL)
            l->wait_tail = NULL;
        ack_done(b, w->pa);
        xfree(w);
    }
}

static void handle_delivery(broker *b, node_link *l, nng_msg *msg)
{
    size_t len = nng_msg_len(msg);
    const uint8_t *body = nng_msg_body(msg);
    mp_reader r;
    uint64_t origin, seq;
    uint32_t count;
    if (len < 8 || get_be64(body) != l->ls->broker_id ||
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
        records_recover(b, l->index);
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
        delivery_lost(b, l, lost, "gap");
        break;
    }
    for (uint32_t i = 0; i < count; i++) {
        op o;
        if (op_decode(&r, &o) != 0) {
            log_warn("malformed-delivery", "node=%s index=%u", l->node->id, i);
            break;
        }
        if (o.kind == OP_RECORD_STATE || o.kind == OP_RECORD_RESULT)
            awaiting_answered(l->owed, &o);
        if (o.kind == OP_EVENT_DELIVERY)
            events_deliver(b, &o);
        else if (o.kind >= OP_RECORD_STATE && o.kind <= OP_RECORD_DELETED)
            records_deliver(b, &o);
        else if (o.kind == OP_RPC_MESSAGE)
            rpc_deliver(b, &o);
        else if (o.kind == OP_PRESENCE_STATE || o.kind == OP_PRESENCE_EVENT)
            presence_deliver(b, &o);
        else if (o.kind == OP_LISTEN_MESSAGE)
            listen_deliver(b, &o);
        else if (o.kind == OP_RECORD_PROVIDER)
            records_deliver(b, &o);
    }
    nng_msg_free(msg);
}

/* Answers every requester in a batch the node will not answer with an error. */
static void fail_batch(broker *b, node_link *l, uint64_t seq, op_batch *batch)
{
    mp_reader r;
    mp_reader_init(&r, batch->buf.data, batch->buf.size);
    uint32_t answered = 0;
    for (uint32_t i = 0; i < batch->count; i++) {
        op o;
        if (op_decode(&r, &o) != 0)
            break;
        if (o.kind == OP_RECORD_NOTIFY)
            answered += records_fail(b, &o); /* other record requests: awaiting.c */
        else if (o.kind == OP_RPC_REQUEST)
            answered += rpc_fail(b, &o);
        else if (o.kind == OP_PRESENCE_QUERY) {
            /* the query completes without this node's part */
            op none = {.kind = OP_PRESENCE_STATE, .session = o.session, .corr = o.corr,
                       .flags = o.flags & OP_FLAG_ALL, .name = o.name};
            presence_deliver(b, &none);
            answered++;
        }
    }
    log_warn("node-batch-failed", "node=%s seq=%llu ops=%u requesters_answered=%u (with errors; "
             "some operations may have been applied)", l->node->id, (unsigned long long)seq,
             batch->count, answered);
    op_batch_destroy(batch);
    xfree(batch);
    handle_reply(b, l, seq, NULL);
}

void links_handle_inbound(broker *b, int kind, int li, uint64_t seq, void *msg)
{
    node_link *l = &broker_links(b)->links[li];
    if (kind == INBOUND_FAILED)
        fail_batch(b, l, seq, msg);
    else if (kind == INBOUND_NODE_DOWN) {
        uint64_t n = awaiting_fail_all(b, l->owed);
        stream_forget_mark(&l->stream);
        if (n > 0)
            log_warn("node-down-answered", "node=%s requesters=%llu (answered MESSAGE_DENIED: the node "
                     "went down before answering; their writes may or may not have been applied)",
                     l->node->id, (unsigned long long)n);
    }
    else if (kind == INBOUND_RESYNC)
        broker_resync(b, li); /* queued behind the refused batch, sent once the node delivers */
    else if (kind == INBOUND_REPLY)
        handle_reply(b, l, seq, msg);
    else
        handle_delivery(b, l, msg);
}
