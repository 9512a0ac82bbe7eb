/* peers.c - the brokers and backends a node serves: the peer table (a peer
 * joins with HELLO, is forgotten on BYE, when silent for longer than
 * cluster.brokerTimeout, or when it cannot be kept; it holds at most
 * cluster.maxPeers: a new peer beyond them is refused, counted and logged,
 * peer-refused, at most once a second), and its deliveries: what
 * the operations of one request cause for a peer is gathered, then published
 * as one numbered batch per peer: as the answer to that peer's pull or, for
 * the in-process broker (standalone), into a bounded outbox it takes them from.
 *
 * Pulls (the delivery address, a raw REP socket): each remote peer keeps one
 * request out to it (its 8-byte id), parked here until there is something for
 * that peer; the answer carries everything gathered since the last one, so
 * batches grow under load and each batch crosses only the connection of the
 * peer it is for. Answers: 8-byte id + batch (deliveries); the 8-byte id alone
 * (nothing for PULL_IDLE_MS: pull again); empty (no such peer: say HELLO).
 * While no pull is parked a peer's deliveries wait in its batch, at most
 * PEER_HELD_MAX bytes, and only while the peer pulled in the last
 * PEER_HELD_STALE_MS (a live peer always has a pull out or on its way):
 * beyond, the batch is numbered and dropped (the peer sees the gap and
 * recovers, as it does for any loss).
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
#define PULL_IDLE_MS 500        /* a parked pull with nothing to carry is answered empty after this */
#define PEER_HELD_MAX (16u << 20) /* bytes of deliveries waiting for a peer's pull */
#define PEER_HELD_STALE_MS 5000   /* a peer that has not pulled for this long gets nothing held */
#define PULLS_PER_TAKE 256      /* pulls read per peers_take_pulls: the executor's turn stays short */

struct peers {
    const eddy_config *cfg;
    node_stats *stats;
    unsigned self;
    dict *by_id;  /* id (8 bytes) -> peer */
    peer *dirty;  /* peers with gathered deliveries */
    bool has_dlv;
    nng_socket dlv;        /* the delivery address: raw REP, the peers' pulls */
    peer *pulls, *pulls_tail; /* peers with a parked pull, oldest first */
    uint64_t behind_drops;    /* batches dropped for peers that did not pull (peer-behind) */
    int64_t behind_log_ms;    /* the last peer-behind line */
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
     * is numbered but not sent, as a node does for a peer that stops pulling */
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
    if (p->pull != NULL)
        nng_msg_free(p->pull);
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

void peers_set_socket(peers *ps, nng_socket dlv)
{
    ps->dlv = dlv;
    ps->has_dlv = true;
}

void peers_unset_socket(peers *ps)
{
    ps->has_dlv = false;
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
    p->pulled_ms = now_ms(); /* its first pull is on its way (it pulls from the start) */
    op_batch_init(&p->out);
    dict_put(ps->by_id, &id, sizeof(id), p);
    log_info("peer-joined", "peer=%016llx", (unsigned long long)id);
    return p;
}

static void answer(peers *ps, nng_msg *msg, uint32_t ops);

/* Takes p's parked pull out of the list; returns it (owned by the caller). */
static nng_msg *unpark(peers *ps, peer *p)
{
    nng_msg *m = p->pull;
    *(p->pull_prev != NULL ? &p->pull_prev->pull_next : &ps->pulls) = p->pull_next;
    *(p->pull_next != NULL ? &p->pull_next->pull_prev : &ps->pulls_tail) = p->pull_prev;
    p->pull = NULL;
    p->pull_prev = p->pull_next = NULL;
    return m;
}

void peers_forget(peers *ps, peer *p)
{
    if (p->pull != NULL) { /* answered empty: we do not know it any more */
        nng_msg *msg = unpark(ps, p);
        if (ps->has_dlv)
            answer(ps, msg, 0);
        else
            nng_msg_free(msg);
    }
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

static void drop_held(peers *ps, peer *p);

/* What is held for p's next pull is past the bounds (at the top of this file). */
static bool held_too_long(const peer *p)
{
    return p->out.buf.size > PEER_HELD_MAX || now_ms() - p->pulled_ms > PEER_HELD_STALE_MS;
}

void peer_deliver(peers *ps, peer *p, const void *bytes, size_t len)
{
    if (p->no_deliveries)
        return;
    op_batch_add_encoded(&p->out, bytes, len);
    if (p->held) { /* waits for the peer's next pull */
        if (held_too_long(p))
            drop_held(ps, p);
    } else if (!p->dirty) {
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
 * peer that stops pulling would: the numbering shows the gap to the broker, which
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

/* Numbers p's gathered batch and makes it into a message: 8-byte peer id,
 * batch header, operations; with route (a parked pull, borrowed) its header
 * goes first, the way back to the puller. NULL when the fault injector drops
 * it or there is no memory: counted, and the peer sees the gap. The batch is
 * emptied either way; the caller counts it published (published) once it is. */
static nng_msg *take_batch(peers *ps, peer *p, const nng_msg *route)
{
    uint8_t hdr[8 + OP_BATCH_HEADER_MAX];
    put_be64(hdr, p->id);
    p->delivery_seq += p->out.count;
    size_t h = 8 + op_batch_header(hdr + 8, ps->self, p->delivery_seq, p->out.count);
    int dropped = -1; /* enum node_drop when the batch is not published */
    nng_msg *msg = NULL;
    if (fault_drops(ps, &p->out)) {
        dropped = DROP_FAULT;
        log_warn("fault-dropped-delivery", "peer=%016llx seq=%llu ops=%u", (unsigned long long)p->id,
                 (unsigned long long)p->delivery_seq, p->out.count);
    } else if (nng_msg_alloc(&msg, h + p->out.buf.size) != 0 ||
               (route != NULL &&
                nng_msg_header_append(msg, nng_msg_header((nng_msg *)route), nng_msg_header_len(route)) != 0)) {
        dropped = DROP_SEND_FAILED;
        if (msg != NULL)
            nng_msg_free(msg);
        msg = NULL;
    } else {
        memcpy(nng_msg_body(msg), hdr, h);
        if (p->out.buf.size > 0) /* an empty sbuffer has no data pointer */
            memcpy((uint8_t *)nng_msg_body(msg) + h, p->out.buf.data, p->out.buf.size);
    }
    if (dropped >= 0)
        prom_add(&ps->stats->dropped[dropped], 1);
    op_batch_reset(&p->out);
    return msg;
}

static void published(peers *ps, uint32_t ops)
{
    prom_add(&ps->stats->delivered_ops, ops);
    prom_add(&ps->stats->delivered_batches, 1);
}

/* Sends msg (owned) on the delivery socket: the answer to a pull. One that
 * cannot go is freed (counted as a dropped batch when it held ops: the peer
 * sees the gap). */
static void answer(peers *ps, nng_msg *msg, uint32_t ops)
{
    size_t len = nng_msg_len(msg);
    if (nng_sendmsg(ps->dlv, msg, NNG_FLAG_NONBLOCK) != 0) {
        nng_msg_free(msg);
        if (ops > 0)
            prom_add(&ps->stats->dropped[DROP_SEND_FAILED], 1);
        return;
    }
    prom_add(&ps->stats->link_msgs[LINK_DELIVERY_OUT], 1);
    prom_add(&ps->stats->link_bytes[LINK_DELIVERY_OUT], len);
    if (ops > 0)
        published(ps, ops);
}

/* Puts p's pull (msg, owned: its header is the way back) in the list. */
static void park(peers *ps, peer *p, nng_msg *msg)
{
    p->pull = msg;
    p->pull_ms = now_ms();
    p->pull_prev = ps->pulls_tail;
    p->pull_next = NULL;
    *(ps->pulls_tail != NULL ? &ps->pulls_tail->pull_next : &ps->pulls) = p;
    ps->pulls_tail = p;
}

/* Sends p's gathered batch as the answer to its parked pull. A batch that
 * was dropped leaves the pull parked for what comes next. */
static void send_to_pull(peers *ps, peer *p)
{
    uint32_t ops = p->out.count;
    nng_msg *msg = take_batch(ps, p, p->pull);
    if (msg != NULL) {
        nng_msg_free(unpark(ps, p));
        answer(ps, msg, ops);
    }
}

/* The batch held for p's pull is past its bounds (held_too_long): numbered and dropped. */
static void drop_held(peers *ps, peer *p)
{
    int64_t now = now_ms();
    ps->behind_drops++;
    if (now - ps->behind_log_ms >= 1000) { /* a stale peer drops at every request: one line a second */
        log_warn("peer-behind", "peer=%016llx ops=%u bytes=%zu last_pull_ms_ago=%lld dropped_total=%llu (no pull "
                 "for them: dropped, the peer sees the gap and recovers)", (unsigned long long)p->id, p->out.count,
                 p->out.buf.size, (long long)(now - p->pulled_ms), (unsigned long long)ps->behind_drops);
        ps->behind_log_ms = now;
    }
    p->delivery_seq += p->out.count;
    op_batch_reset(&p->out);
    prom_add(&ps->stats->dropped[DROP_PEER_BEHIND], 1);
    p->held = false;
}

void peers_publish(peers *ps)
{
    for (peer *p = ps->dirty; p != NULL; p = p->next_dirty) {
        p->dirty = false;
        if (p->out.count == 0)
            continue;
        uint32_t ops = p->out.count;
        if (p->id == ps->local_id) {
            nng_msg *msg = take_batch(ps, p, NULL);
            if (msg == NULL) {
                if (!ps->local_busy)
                    peers_wake_local(ps); /* as a full outbox's drop: the broker looks, and sees the gap */
            } else if (to_outbox(ps, msg))
                published(ps, ops);
            else
                prom_add(&ps->stats->dropped[DROP_OUTBOX_FULL], 1);
        } else if (!ps->has_dlv) {
            nng_msg *msg = take_batch(ps, p, NULL);
            if (msg != NULL) {
                published(ps, ops);
                if (ps->tap != NULL)
                    ps->tap(ps->tap_ctx, msg);
                else
                    nng_msg_free(msg);
            }
        } else if (p->pull != NULL) {
            send_to_pull(ps, p);
        } else { /* until the peer's next pull */
            p->held = true;
            if (held_too_long(p))
                drop_held(ps, p);
        }
    }
    ps->dirty = NULL;
}

/* A pull from the peer with this id (msg owned): parked, or answered at once
 * with what waits for the peer, or empty when the peer is unknown. */
static void take_pull(peers *ps, nng_msg *msg)
{
    if (nng_msg_len(msg) != 8) { /* not one of ours: no answer (the REQ side times out) */
        prom_add(&ps->stats->malformed, 1);
        nng_msg_free(msg);
        return;
    }
    uint64_t id = get_be64(nng_msg_body(msg));
    peer *p = peers_find(ps, id);
    if (p == NULL || id == ps->local_id) {
        nng_msg_clear(msg);
        answer(ps, msg, 0);
        return;
    }
    if (p->pull != NULL) /* an older one its requester gave up on (timed out): its answer would be lost */
        nng_msg_free(unpark(ps, p));
    nng_msg_clear(msg);
    park(ps, p, msg);
    p->pulled_ms = p->pull_ms;
    if (p->held) {
        p->held = false;
        send_to_pull(ps, p);
    }
}

bool peers_take_pulls(peers *ps)
{
    if (!ps->has_dlv)
        return false;
    nng_msg *msg;
    int n = 0;
    while (n < PULLS_PER_TAKE && nng_recvmsg(ps->dlv, &msg, NNG_FLAG_NONBLOCK) == 0) {
        prom_add(&ps->stats->link_msgs[LINK_PULL_IN], 1);
        prom_add(&ps->stats->link_bytes[LINK_PULL_IN], nng_msg_len(msg));
        take_pull(ps, msg);
        n++;
    }
    return n == PULLS_PER_TAKE;
}

void peers_expire_pulls(peers *ps, int64_t now)
{
    while (ps->pulls != NULL && now - ps->pulls->pull_ms >= PULL_IDLE_MS) {
        peer *p = ps->pulls;
        nng_msg *msg = unpark(ps, p);
        uint8_t id[8];
        put_be64(id, p->id);
        if (nng_msg_append(msg, id, sizeof(id)) != 0)
            nng_msg_free(msg);
        else
            answer(ps, msg, 0);
    }
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
