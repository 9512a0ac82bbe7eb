/* links.c - the broker's nng links to nodes.
 *
 * Per node: a REQ socket driven by a request thread that sends one batch at a
 * time (every operation queued for that node since the last send travels in one
 * nng message), and a SUB socket driven by a delivery thread that receives the
 * batches the node publishes for this broker (topic prefix = broker id). Both
 * threads hand what they receive to the service thread (broker_post); only the
 * service thread interprets it. Batches are numbered: a reply releases the
 * acknowledgements waiting on its batch, and a jump in the delivery numbers is
 * logged and counted (nng pub/sub drops silently when a queue is full).
 * When idle the request thread sends a HEARTBEAT every 250 ms, so the node can
 * tell a quiet broker from a dead one well inside cluster.brokerTimeout. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>

#include "broker.h"
#include "log.h"
#include "mem.h"
#include "util.h"

#define HEARTBEAT_MS 250 /* a node drops a peer silent for cluster.brokerTimeout (>= 2000 ms) */
#define HELLO_RETRY_MS 200
#define REPLY_TIMEOUT_MS 10000
#define LINK_BATCH_MAX (8u << 20) /* bytes queued for one node before submits are refused */

typedef struct waiter {
    uint64_t seq;
    pending_ack *pa;
    struct waiter *next;
} waiter;

typedef struct node_link {
    link_set *ls;
    int index;
    const config_node *node;
    nng_socket req, sub;
    nng_aio *aio; /* the request thread's send/receive; cancelled when the node goes down */
    pthread_t req_thread, sub_thread;
    bool threads_started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    op_batch filling; /* guarded by lock */
    uint64_t next_seq; /* the number the filling batch will carry; guarded by lock */
    atomic_bool delivering;
    atomic_int pipes; /* connected REQ pipes: 0 while the node is down */
    atomic_bool been_up; /* a HELLO delivery has arrived before (delivery thread) */
    bool epoch_refused; /* the node runs another shard map epoch (service thread) */
    bool ever_delivered; /* the link has been up once (service thread) */
    /* service thread only */
    awaiting *owed; /* record requests the node still has to answer */
    uint64_t answered_seq;
    uint64_t last_delivery_seq; /* operations received from the node so far (its numbering) */
    uint64_t gaps, lost_ops;    /* delivery gaps seen and the operations they lost (metrics) */
    uint64_t late_batches;      /* batches that came after their loss was declared: dropped */
    uint64_t mark, mark_last;   /* the node's count at the previous heartbeat, ours then */
    bool mark_set;
    waiter *wait_head, *wait_tail;
    uint64_t refused;
} node_link;

struct link_set {
    broker *b;
    const eddy_config *cfg;
    uint64_t broker_id;
    shardmap map;
    atomic_bool stop;
    int count;
    node_link links[CONFIG_MAX_NODES];
};

/* Sends one batch and waits for the reply. Returns the reply (owned by the
 * caller) or NULL when the request failed (logged): no answer within
 * REPLY_TIMEOUT_MS, or at once when the connection to the node drops while the
 * request is out (pipe_event cancels the wait; nng's REQ would wait for the
 * node to come back and resend). */
static nng_msg *roundtrip(node_link *l, uint64_t seq, const op_batch *b)
{
    uint8_t hdr[OP_BATCH_HEADER_MAX];
    size_t h = op_batch_header(hdr, l->ls->broker_id, seq, b->count);
    nng_msg *msg, *reply = NULL;
    int rv = nng_msg_alloc(&msg, h + b->buf.size);
    if (rv == 0) {
        memcpy(nng_msg_body(msg), hdr, h);
        if (b->buf.size > 0)
            memcpy((uint8_t *)nng_msg_body(msg) + h, b->buf.data, b->buf.size);
        nng_aio_set_msg(l->aio, msg);
        nng_send_aio(l->req, l->aio);
        nng_aio_wait(l->aio);
        if ((rv = nng_aio_result(l->aio)) != 0)
            nng_msg_free(nng_aio_get_msg(l->aio)); /* not sent: still ours */
    }
    if (rv == 0) {
        nng_recv_aio(l->req, l->aio);
        /* pipe_event cancels a wait it sees; this catches a drop just before it began */
        if (seq != 0 && atomic_load(&l->pipes) == 0)
            nng_aio_cancel(l->aio);
        nng_aio_wait(l->aio);
        if ((rv = nng_aio_result(l->aio)) == 0)
            reply = nng_aio_get_msg(l->aio);
    }
    if (rv != 0) {
        if (seq != 0 || rv != NNG_ECANCELED) /* HELLOs to a down node fail quietly */
            log_error("node-request-failed", "node=%s seq=%llu ops=%u error=%s", l->node->id,
                      (unsigned long long)seq, b->count, nng_strerror(rv));
        return NULL;
    }
    return reply;
}

/* Hands batch (its contents are moved out; numbered seq) to the service thread,
 * which answers every requester in it with an error: the node went down before
 * answering. */
static void post_failed(node_link *l, uint64_t seq, op_batch *batch)
{
    op_batch *failed = xmalloc(sizeof(*failed));
    *failed = *batch;
    op_batch_init(batch);
    if (broker_post(l->ls->b, INBOUND_FAILED, l->index, seq, failed) != 0) {
        log_error("failed-batch-lost", "node=%s seq=%llu ops=%u (inbound queue full)", l->node->id,
                  (unsigned long long)seq, failed->count);
        op_batch_destroy(failed);
        xfree(failed);
    }
}

/* True when the node answered UNKNOWN_PEER: it applied nothing of the batch. */
static bool refused_as_unknown(nng_msg *reply)
{
    mp_reader r;
    uint64_t origin, seq;
    uint32_t count;
    if (reply == NULL ||
        op_batch_open(&r, nng_msg_body(reply), nng_msg_len(reply), &origin, &seq, &count) != 0)
        return false;
    for (uint32_t i = 0; i < count; i++) {
        op o;
        if (op_decode(&r, &o) != 0)
            return false;
        if (o.kind == OP_ERROR && o.error == OP_ERR_UNKNOWN_PEER)
            return true;
    }
    return false;
}

/* The link's request loop. Until the node has published to this broker (a
 * HELLO came back on the SUB socket) it sends only HELLO batches, numbered 0:
 * nothing whose answer travels by pub/sub goes out before the delivery pipe is
 * up, also after a node restart. A batch the node refuses as coming from an
 * unknown peer (it restarted, or dropped this broker) was not applied: the link
 * goes back to HELLO, the service thread re-registers this broker's state, and
 * the same batch is sent again once the node delivers. */
static void *request_thread(void *arg)
{
    node_link *l = arg;
    link_set *ls = l->ls;
    op_batch sending, hello;
    op_batch_init(&sending);
    op_batch_init(&hello);
    /* the digest lets the node refuse a map that differs under the same epoch */
    op h = {.kind = OP_HELLO, .epoch = ls->map.epoch, .corr = shardmap_digest(&ls->map)};
    op_batch_add(&hello, &h);
    int64_t last_send = 0, last_hello = 0;
    bool retry = false; /* `sending` was refused and goes again */
    uint64_t seq = 0;
    for (;;) {
        if (atomic_load(&ls->stop) && (!retry || !atomic_load(&l->delivering))) {
            pthread_mutex_lock(&l->lock);
            bool empty = l->filling.count == 0;
            pthread_mutex_unlock(&l->lock);
            if (empty || !atomic_load(&l->delivering))
                break; /* flushed, or the node is unreachable: nothing more can go */
        }
        if (!atomic_load(&l->delivering)) {
            if (atomic_load(&l->pipes) == 0) {
                /* the node is down: what waits for it is answered with errors now
                 * rather than sent whenever it comes back */
                if (retry) {
                    post_failed(l, seq, &sending);
                    retry = false;
                }
                pthread_mutex_lock(&l->lock);
                if (l->filling.count > 0)
                    post_failed(l, l->next_seq++, &l->filling);
                pthread_mutex_unlock(&l->lock);
            }
            int64_t now = now_ms();
            if (now - last_hello < HELLO_RETRY_MS) {
                usleep(20 * 1000);
                continue;
            }
            last_hello = now;
            nng_msg *reply = roundtrip(l, 0, &hello);
            if (reply != NULL && broker_post(ls->b, INBOUND_REPLY, l->index, 0, reply) != 0)
                nng_msg_free(reply);
            continue;
        }
        if (!retry) {
            pthread_mutex_lock(&l->lock);
            for (;;) {
                if (l->filling.count > 0 || atomic_load(&ls->stop) || !atomic_load(&l->delivering))
                    break;
                if (now_ms() - last_send >= HEARTBEAT_MS)
                    break;
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 50 * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&l->wake, &l->lock, &ts);
            }
            if (!atomic_load(&l->delivering) || (atomic_load(&ls->stop) && l->filling.count == 0)) {
                pthread_mutex_unlock(&l->lock);
                continue;
            }
            if (l->filling.count == 0) {
                op hb = {.kind = OP_HEARTBEAT};
                op_batch_add(&l->filling, &hb);
            }
            op_batch tmp = sending;
            sending = l->filling;
            l->filling = tmp;
            op_batch_reset(&l->filling);
            seq = l->next_seq++;
            pthread_mutex_unlock(&l->lock);
        }
        last_send = now_ms();
        nng_msg *reply = roundtrip(l, seq, &sending);
        if (refused_as_unknown(reply)) {
            log_warn("node-lost-our-state", "node=%s (it restarted or dropped this broker): "
                     "saying HELLO again, then registering everything again", l->node->id);
            nng_msg_free(reply);
            atomic_store(&l->delivering, false); /* the next HELLO delivery triggers the resync */
            retry = true;
            continue;
        }
        retry = false;
        if (reply == NULL) { /* timed out, or the node went down: unknown which ops applied */
            post_failed(l, seq, &sending);
            continue;
        }
        if (broker_post(ls->b, INBOUND_REPLY, l->index, seq, reply) != 0)
            nng_msg_free(reply);
        op_batch_reset(&sending);
    }
    op_batch_destroy(&sending);
    op_batch_destroy(&hello);
    return NULL;
}

/* True when a delivery batch begins with the node's HELLO. */
static bool starts_with_hello(nng_msg *msg, uint64_t broker_id)
{
    mp_reader r;
    uint64_t origin, seq;
    uint32_t count;
    op o;
    size_t len = nng_msg_len(msg);
    const uint8_t *body = nng_msg_body(msg);
    return len > 8 && get_be64(body) == broker_id &&
           op_batch_open(&r, body + 8, len - 8, &origin, &seq, &count) == 0 && count > 0 &&
           op_decode(&r, &o) == 0 && o.kind == OP_HELLO;
}

static void *delivery_thread(void *arg)
{
    node_link *l = arg;
    link_set *ls = l->ls;
    while (!atomic_load(&ls->stop)) {
        nng_msg *msg;
        int rv = nng_recvmsg(l->sub, &msg, 0);
        if (rv == NNG_ETIMEDOUT)
            continue;
        if (rv != 0) {
            if (rv == NNG_ECLOSED)
                break;
            log_warn("delivery-recv-failed", "node=%s error=%s", l->node->id, nng_strerror(rv));
            continue;
        }
        if (!atomic_load(&l->delivering) && starts_with_hello(msg, ls->broker_id)) {
            atomic_store(&l->delivering, true);
            /* back after a node restart, a disconnect or a refusal: register everything again */
            if (atomic_exchange(&l->been_up, true) &&
                broker_post(ls->b, INBOUND_RESYNC, l->index, 0, NULL) != 0)
                log_error("resync-lost", "node=%s (inbound queue full)", l->node->id);
        }
        /* Blocks while the service thread is behind: the SUB queue then fills and
         * nng drops, which the sequence numbers reveal. */
        while (broker_post(ls->b, INBOUND_DELIVERY, l->index, 0, msg) != 0) {
            if (atomic_load(&ls->stop)) {
                nng_msg_free(msg);
                break;
            }
        }
    }
    return NULL;
}

/* nng calls this on its own thread when a connection to the node comes or goes. */
static void pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    node_link *l = arg;
    if (ev == NNG_PIPE_EV_ADD_POST) {
        if (atomic_fetch_add(&l->pipes, 1) == 0)
            log_info("node-up", "node=%s", l->node->id);
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        if (atomic_fetch_sub(&l->pipes, 1) == 1) {
            atomic_store(&l->delivering, false); /* HELLO again before anything else */
            if (!atomic_load(&l->ls->stop)) /* (at shutdown the aio may be gone) */
                nng_aio_cancel(l->aio); /* a request out to the node will not be answered */
            if (!atomic_load(&l->ls->stop)) { /* not our own shutdown */
                log_error("node-down", "node=%s (operations for its shards are refused until it is back)",
                          l->node->id);
                if (broker_post(l->ls->b, INBOUND_NODE_DOWN, l->index, 0, NULL) != 0)
                    log_error("node-down-lost", "node=%s (inbound queue full)", l->node->id);
            }
        }
    }
}

static int open_link(link_set *ls, node_link *l)
{
    int rv;
    const char *step = "aio_alloc";
    if ((rv = nng_aio_alloc(&l->aio, NULL, NULL)) != 0)
        goto fail;
    nng_aio_set_timeout(l->aio, REPLY_TIMEOUT_MS);
    step = "req0_open";
    if ((rv = nng_req0_open(&l->req)) != 0)
        goto fail;
    step = "sub0_open";
    if ((rv = nng_sub0_open(&l->sub)) != 0)
        goto fail;
    uint8_t topic[8];
    put_be64(topic, ls->broker_id);
    nng_socket_set(l->sub, NNG_OPT_SUB_SUBSCRIBE, topic, sizeof(topic));
    nng_socket_set_int(l->sub, NNG_OPT_RECVBUF, 8192);
    nng_socket_set_ms(l->sub, NNG_OPT_RECVTIMEO, 100);
    nng_socket_set_size(l->sub, NNG_OPT_RECVMAXSZ, LINK_BATCH_MAX * 4);
    nng_socket_set_size(l->req, NNG_OPT_RECVMAXSZ, LINK_BATCH_MAX * 4);
    nng_socket_set_ms(l->req, NNG_OPT_REQ_RESENDTIME, 3600 * 1000); /* no silent duplicates */
    nng_socket_set_ms(l->req, NNG_OPT_RECVTIMEO, REPLY_TIMEOUT_MS);
    nng_socket_set_ms(l->req, NNG_OPT_SENDTIMEO, REPLY_TIMEOUT_MS);
    nng_pipe_notify(l->req, NNG_PIPE_EV_ADD_POST, pipe_event, l);
    nng_pipe_notify(l->req, NNG_PIPE_EV_REM_POST, pipe_event, l);
    nng_socket_set_ms(l->req, NNG_OPT_RECONNMINT, 100);
    nng_socket_set_ms(l->req, NNG_OPT_RECONNMAXT, 1000);
    nng_socket_set_ms(l->sub, NNG_OPT_RECONNMINT, 100);
    nng_socket_set_ms(l->sub, NNG_OPT_RECONNMAXT, 1000);
    /* Non-blocking dials: they retry in the background until the node is up. */
    step = l->node->delivery;
    if ((rv = nng_dial(l->sub, l->node->delivery, NULL, NNG_FLAG_NONBLOCK)) != 0)
        goto fail;
    step = l->node->request;
    if ((rv = nng_dial(l->req, l->node->request, NULL, NNG_FLAG_NONBLOCK)) != 0)
        goto fail;
    return 0;
fail:
    log_error("node-dial-failed", "node=%s at=%s error=%s", l->node->id, step, nng_strerror(rv));
    return -1;
}

link_set *links_create(broker *b, const eddy_config *cfg, uint64_t broker_id)
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
    for (int i = 0; i < cfg->node_count; i++) {
        node_link *l = &ls->links[i];
        l->ls = ls;
        l->index = i;
        l->node = &cfg->nodes[i];
        l->next_seq = 1;
        pthread_mutex_init(&l->lock, NULL);
        pthread_cond_init(&l->wake, NULL);
        op_batch_init(&l->filling);
        l->owed = awaiting_new();
        ls->count++;
        if (open_link(ls, l) != 0)
            goto fail;
        if (pthread_create(&l->req_thread, NULL, request_thread, l) != 0)
            goto fail;
        if (pthread_create(&l->sub_thread, NULL, delivery_thread, l) != 0) {
            atomic_store(&ls->stop, true);
            pthread_join(l->req_thread, NULL);
            goto fail;
        }
        l->threads_started = true;
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
        {"eddy_delivery_late_batches_total", "counter", "batches dropped as older than a recovered gap"},
        {"eddy_node_refused_operations_total", "counter", "operations refused: node queue full"},
    };
    for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", m[k].name, m[k].help, m[k].name, m[k].type);
        for (int i = 0; i < ls->count; i++) {
            node_link *l = &ls->links[i];
            uint64_t v = k == 0   ? (uint64_t)(atomic_load(&l->pipes) > 0)
                         : k == 1 ? l->gaps
                         : k == 2 ? l->lost_ops
                         : k == 3 ? l->late_batches
                                  : l->refused;
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
        if (!atomic_load(&ls->links[i].delivering))
            return false;
    for (int i = 0; i < ls->count; i++)
        ls->links[i].ever_delivered = true;
    return true;
}

void links_destroy(link_set *ls)
{
    if (ls == NULL)
        return;
    atomic_store(&ls->stop, true);
    for (int i = 0; i < ls->count; i++) {
        node_link *l = &ls->links[i];
        pthread_mutex_lock(&l->lock);
        pthread_cond_signal(&l->wake);
        pthread_mutex_unlock(&l->lock);
        if (l->threads_started) {
            pthread_join(l->req_thread, NULL); /* flushes what is queued first */
            pthread_join(l->sub_thread, NULL);
        }
    }
    /* Quiesced: no request in flight, no receive pending. Subscribers first. */
    for (int i = 0; i < ls->count; i++) {
        node_link *l = &ls->links[i];
        nng_close_bounded(l->sub, "broker-sub", 2000);
        nng_close_bounded(l->req, "broker-req", 2000);
        if (l->aio != NULL)
            nng_aio_free(l->aio);
        awaiting_free(l->owed);
        op_batch_destroy(&l->filling);
        pthread_mutex_destroy(&l->lock);
        pthread_cond_destroy(&l->wake);
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
    if (atomic_load(&l->pipes) == 0 && l->ever_delivered)
        return -1; /* the node is down: refuse at once rather than queue into the void */
    pthread_mutex_lock(&l->lock);
    if (l->filling.buf.size + o->name.len + (o->has_data ? o->data.len : 0) > LINK_BATCH_MAX) {
        pthread_mutex_unlock(&l->lock);
        if (l->refused++ % 1000 == 0)
            log_warn("node-queue-full", "node=%s refused=%llu", l->node->id,
                     (unsigned long long)l->refused);
        return -1;
    }
    op_batch_add(&l->filling, o);
    awaiting_add(l->owed, o);
    *seq = l->next_seq;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->lock);
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
 * count them, and bring the records this broker's clients watch up to date. */
static void delivery_lost(broker *b, node_link *l, uint64_t lost, const char *where)
{
    l->gaps++;
    l->lost_ops += lost;
    log_error("delivery-gap", "node=%s at=%s lost_ops=%llu lost_ops_total=%llu gaps_total=%llu "
              "(re-reading its records)", l->node->id, where, (unsigned long long)lost,
              (unsigned long long)l->lost_ops, (unsigned long long)l->gaps);
    records_recover(b, l->index);
}

/* A heartbeat answer carries how many operations the node has published to
 * us. If the one before it promised more than we have, and nothing arrived in
 * the heartbeat period since, the tail of the stream was lost: no later batch
 * would ever reveal that gap. */
static void check_tail(broker *b, node_link *l, uint64_t published)
{
    if (l->mark_set && l->mark > l->last_delivery_seq && l->last_delivery_seq == l->mark_last) {
        uint64_t lost = l->mark - l->last_delivery_seq;
        l->last_delivery_seq = l->mark;
        delivery_lost(b, l, lost, "tail");
    }
    l->mark = published;
    l->mark_last = l->last_delivery_seq;
    l->mark_set = true;
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
                } else if (o.kind == OP_ERROR && o.error == OP_ERR_UNKNOWN_PEER) {
                    log_warn("node-lost-our-state", "node=%s (it restarted or dropped this broker): "
                             "registering everything again", l->node->id);
                    broker_resync(b, l->index);
                }
                else if (o.kind == OP_HEARTBEAT && o.has_version && o.version >= 0)
                    check_tail(b, l, (uint64_t)o.version);
                else if (o.kind == OP_ERROR)
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
    if (seq == count) { /* the first batch of the node's stream to us */
        if (l->last_delivery_seq > 0)
            log_warn("node-stream-restarted", "node=%s after=%llu (the node restarted)", l->node->id,
                     (unsigned long long)l->last_delivery_seq);
        l->mark_set = false;
    } else if (seq - count < l->last_delivery_seq) {
        /* older than a loss already declared and recovered: applying it now would
         * take subscribers back in time */
        l->late_batches++;
        log_warn("delivery-late", "node=%s seq=%llu ops=%u received=%llu (dropped)", l->node->id,
                 (unsigned long long)seq, count, (unsigned long long)l->last_delivery_seq);
        nng_msg_free(msg);
        return;
    } else if (l->last_delivery_seq > 0 && seq - count > l->last_delivery_seq)
        delivery_lost(b, l, seq - count - l->last_delivery_seq, "gap");
    l->last_delivery_seq = seq;
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
        l->mark_set = false;
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
