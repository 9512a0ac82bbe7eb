/* peers.c - the brokers and backends a node serves: the peer table (a peer
 * joins with HELLO, is forgotten on BYE, when silent for longer than
 * cluster.brokerTimeout, or when it cannot be kept; it holds at most
 * cluster.maxPeers: a new peer beyond them is refused, counted and logged,
 * peer-refused, at most once a second), and its deliveries: what
 * the operations of one request cause for a peer is gathered, then published
 * as one numbered batch per peer, on the PUB socket or, for the in-process
 * broker (standalone), into a bounded outbox it takes them from.
 *
 * The batch number counts operations: it is the number of operations
 * published to the peer so far, this batch included, so a gap tells the peer
 * how many were lost. Not for what a peer subscribes to: the owner modules
 * keep that. */
#include <pthread.h>
#include <string.h>

#include "dict.h"
#include "internal.h"
#include "log.h"
#include "mem.h"
#include "queue.h"
#include "util.h"

#define LOCAL_OUTBOX_LEN 8192 /* delivery batches the local peer has not taken yet */

struct peers {
    const eddy_config *cfg;
    node_stats *stats;
    unsigned self;
    dict *by_id;  /* id (8 bytes) -> peer */
    peer *dirty;  /* peers with gathered deliveries */
    bool has_pub;
    nng_socket pub;
    void (*tap)(void *ctx, nng_msg *msg); /* without pub: where remote peers' batches go */
    void *tap_ctx;
    msgpack_sbuffer scratch; /* peer_deliver_op's encoding */
    /* the in-process peer (standalone); local_id 0 = none */
    uint64_t local_id;
    queue *outbox;             /* its delivery batches, in order (nng_msg) */
    pthread_mutex_t wake_lock; /* guards wake against peers_detach_local */
    void (*wake)(void *ctx);   /* told when the outbox gets what it did not ask for; NULL once detached */
    void *wake_ctx;
    bool local_busy;           /* the local peer is in a request: it takes its deliveries itself */
    uint64_t outbox_dropped;
    uint64_t refused;        /* HELLOs refused: the table was full */
    uint64_t refused_logged; /* refused at the last peer-refused line */
    int64_t refused_log_ms;
    /* test.faultDropBroadcasts: every Nth delivery batch made only of broadcasts
     * is numbered but not sent, as nng pub/sub does when a queue is full */
    unsigned fault_every, fault_count;
};

peers *peers_new(const eddy_config *cfg, unsigned self, node_stats *stats)
{
    peers *ps = xcalloc(1, sizeof(*ps));
    ps->cfg = cfg;
    ps->stats = stats;
    ps->self = self;
    ps->by_id = dict_new();
    ps->outbox = queue_new(LOCAL_OUTBOX_LEN);
    msgpack_sbuffer_init(&ps->scratch);
    pthread_mutex_init(&ps->wake_lock, NULL);
    ps->fault_every = (unsigned)cfg->fault_drop_broadcasts;
    if (ps->fault_every > 0)
        log_warn("fault-injection", "test.faultDropBroadcasts=%u: every %uth broadcast-only delivery "
                 "batch is dropped (tests only)", ps->fault_every, ps->fault_every);
    return ps;
}

static void peer_free(void *v)
{
    peer *p = v;
    op_batch_destroy(&p->out);
    xfree(p);
}

static void free_msg(void *msg)
{
    nng_msg_free(msg);
}

void peers_free(peers *ps)
{
    if (ps == NULL)
        return;
    dict_free_with(ps->by_id, peer_free);
    queue_free(ps->outbox, free_msg);
    msgpack_sbuffer_destroy(&ps->scratch);
    pthread_mutex_destroy(&ps->wake_lock);
    xfree(ps);
}

void peers_set_socket(peers *ps, nng_socket pub)
{
    ps->pub = pub;
    ps->has_pub = true;
}

void peers_set_tap(peers *ps, void (*tap)(void *ctx, nng_msg *msg), void *ctx)
{
    ps->tap = tap;
    ps->tap_ctx = ctx;
}

peer *peers_find(const peers *ps, uint64_t id)
{
    return dict_get(ps->by_id, &id, sizeof(id));
}

size_t peers_count(const peers *ps)
{
    return dict_size(ps->by_id);
}

uint64_t peers_refused(const peers *ps)
{
    return ps->refused;
}

bool peers_admit(peers *ps, uint64_t id)
{
    if (id == ps->local_id || peers_count(ps) < (size_t)ps->cfg->max_peers || peers_find(ps, id) != NULL)
        return true;
    ps->refused++;
    int64_t now = now_ms();
    if (ps->refused_logged == 0 || now - ps->refused_log_ms >= 1000) {
        log_warn("peer-refused", "peer=%016llx peers=%zu max=%lld refused=%llu refused_total=%llu (the peer "
                 "table is full, cluster.maxPeers: new peers are refused until silent ones expire)",
                 (unsigned long long)id, peers_count(ps), (long long)ps->cfg->max_peers,
                 (unsigned long long)(ps->refused - ps->refused_logged), (unsigned long long)ps->refused);
        ps->refused_logged = ps->refused;
        ps->refused_log_ms = now;
    }
    return false;
}

peer *peers_join(peers *ps, uint64_t id)
{
    peer *p = peers_find(ps, id);
    if (p != NULL)
        return p;
    p = xcalloc(1, sizeof(*p));
    p->id = id;
    op_batch_init(&p->out);
    dict_put(ps->by_id, &id, sizeof(id), p);
    log_info("peer-joined", "peer=%016llx", (unsigned long long)id);
    return p;
}

void peers_forget(peers *ps, peer *p)
{
    if (p->dirty) /* what it was sent in this request goes nowhere */
        for (peer **pp = &ps->dirty; *pp != NULL; pp = &(*pp)->next_dirty)
            if (*pp == p) {
                *pp = p->next_dirty;
                break;
            }
    dict_del(ps->by_id, &p->id, sizeof(p->id));
    peer_free(p);
}

struct expiry {
    const peers *ps;
    int64_t now;
    peer **out;
    size_t n, max;
};

static int find_expired(const void *k, size_t l, void *v, void *arg)
{
    struct expiry *x = arg;
    peer *p = v;
    if (p->id != x->ps->local_id && x->now - p->last_seen_ms > x->ps->cfg->broker_timeout_ms)
        x->out[x->n++] = p;
    return x->n == x->max;
}

size_t peers_expired(peers *ps, peer **out, size_t max)
{
    struct expiry x = {ps, now_ms(), out, 0, max};
    dict_foreach(ps->by_id, find_expired, &x);
    return x.n;
}

void peer_deliver(peers *ps, peer *p, const void *bytes, size_t len)
{
    op_batch_add_encoded(&p->out, bytes, len);
    if (!p->dirty) {
        p->dirty = true;
        p->next_dirty = ps->dirty;
        ps->dirty = p;
    }
}

void peer_deliver_op(peers *ps, peer *p, const op *o)
{
    ps->scratch.size = 0;
    op_encode(&ps->scratch, o);
    peer_deliver(ps, p, ps->scratch.data, ps->scratch.size);
}

typedef struct deliver_all_arg {
    peers *ps;
    const op *o;
} deliver_all_arg;

static int deliver_one(const void *k, size_t l, void *v, void *arg)
{
    (void)k;
    (void)l;
    deliver_all_arg *a = arg;
    peer_deliver_op(a->ps, v, a->o);
    return 0;
}

void peers_deliver_all(peers *ps, const op *o)
{
    deliver_all_arg a = {ps, o};
    dict_foreach(ps->by_id, deliver_one, &a);
}

void peers_wake_local(peers *ps)
{
    pthread_mutex_lock(&ps->wake_lock);
    if (ps->wake != NULL)
        ps->wake(ps->wake_ctx);
    pthread_mutex_unlock(&ps->wake_lock);
}

/* True when the fault injector drops this batch (only batches made of event and
 * record broadcasts: a lost answer would hang its requester, which is not what
 * the recovery under test is about). */
static bool fault_drops(peers *ps, const op_batch *b)
{
    if (ps->fault_every == 0)
        return false;
    mp_reader r;
    mp_reader_init(&r, b->buf.data, b->buf.size);
    for (uint32_t i = 0; i < b->count; i++) {
        op o;
        if (op_decode(&r, &o) != 0 || (o.kind != OP_EVENT_DELIVERY && o.kind != OP_RECORD_UPDATE))
            return false;
    }
    return ++ps->fault_count % ps->fault_every == 0;
}

/* Hands msg (owned) to the local peer's outbox. A full outbox drops it, as a
 * full SUB queue would: the numbering shows the gap to the broker, which
 * recovers. False when it was dropped. */
static bool to_outbox(peers *ps, nng_msg *msg)
{
    bool was_empty = queue_len(ps->outbox) == 0;
    if (queue_push(ps->outbox, msg, 0) != 0) {
        nng_msg_free(msg);
        if (ps->outbox_dropped++ % 1000 == 0)
            log_warn("local-outbox-full", "dropped_total=%llu (the broker is behind)",
                     (unsigned long long)ps->outbox_dropped);
        return false;
    }
    if (was_empty && !ps->local_busy)
        peers_wake_local(ps);
    return true;
}

void peers_publish(peers *ps)
{
    for (peer *p = ps->dirty; p != NULL; p = p->next_dirty) {
        uint8_t hdr[8 + OP_BATCH_HEADER_MAX];
        put_be64(hdr, p->id);
        p->delivery_seq += p->out.count;
        size_t h = 8 + op_batch_header(hdr + 8, ps->self, p->delivery_seq, p->out.count);
        bool local = p->id == ps->local_id;
        nng_msg *msg;
        int dropped = -1; /* enum node_drop when the batch is not published */
        if (fault_drops(ps, &p->out)) {
            dropped = DROP_FAULT;
            log_warn("fault-dropped-delivery", "peer=%016llx seq=%llu ops=%u", (unsigned long long)p->id,
                     (unsigned long long)p->delivery_seq, p->out.count);
            if (local && !ps->local_busy)
                peers_wake_local(ps); /* as a full outbox's drop: the broker looks, and sees the gap */
        } else if (nng_msg_alloc(&msg, h + p->out.buf.size) == 0) {
            memcpy(nng_msg_body(msg), hdr, h);
            if (p->out.buf.size > 0)
                memcpy((uint8_t *)nng_msg_body(msg) + h, p->out.buf.data, p->out.buf.size);
            if (local) {
                if (!to_outbox(ps, msg))
                    dropped = DROP_OUTBOX_FULL;
            } else if (ps->has_pub) {
                if (nng_sendmsg(ps->pub, msg, 0) != 0) {
                    nng_msg_free(msg);
                    dropped = DROP_SEND_FAILED;
                }
            } else if (ps->tap != NULL)
                ps->tap(ps->tap_ctx, msg);
            else
                nng_msg_free(msg);
        } else
            dropped = DROP_SEND_FAILED;
        if (dropped >= 0)
            prom_add(&ps->stats->dropped[dropped], 1);
        else {
            prom_add(&ps->stats->delivered_ops, p->out.count);
            prom_add(&ps->stats->delivered_batches, 1);
        }
        op_batch_reset(&p->out);
        p->dirty = false;
    }
    ps->dirty = NULL;
}

void peers_attach_local(peers *ps, uint64_t id, void (*wake)(void *ctx), void *ctx)
{
    ps->local_id = id;
    pthread_mutex_lock(&ps->wake_lock);
    ps->wake = wake;
    ps->wake_ctx = ctx;
    pthread_mutex_unlock(&ps->wake_lock);
}

void peers_detach_local(peers *ps)
{
    pthread_mutex_lock(&ps->wake_lock); /* waits out a wake in progress */
    ps->wake = NULL;
    pthread_mutex_unlock(&ps->wake_lock);
}

void peers_local_busy(peers *ps, bool busy)
{
    ps->local_busy = busy;
}

nng_msg *peers_take_local(peers *ps)
{
    return queue_pop(ps->outbox, 0);
}

uint64_t peers_local_published(const peers *ps)
{
    const peer *p = peers_find(ps, ps->local_id);
    return p != NULL ? p->delivery_seq : 0;
}
