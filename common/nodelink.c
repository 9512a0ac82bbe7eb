/* nodelink.c - one peer's connection to one node (see nodelink.h). */
#include "nodelink.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "linktls.h"
#include "log.h"
#include "mem.h"
#include "util.h"

#define HEARTBEAT_MS 250 /* a node drops a peer silent for cluster.brokerTimeout (>= 2000 ms) */
#define HELLO_RETRY_MS 200
#define REPLY_TIMEOUT_MS 10000
#define HELLO_TIMEOUT_MS 1000
/* A dialer is replaced when it has not brought its connection back in this
 * long (see redial). The delivery side is judged from the request side: HELLOs
 * answered for DELIVERY_STALL_MS with none of them published to us. */
#define DELIVERY_STALL_MS 2000
#define REQUEST_REDIAL_MS 3000
#define REQUEST_REDIAL_MAX_MS 60000
/* A pull is answered within the node's PULL_IDLE_MS (500) when the node has
 * nothing for us; one unanswered this long went to a node that went away. */
#define PULL_TIMEOUT_MS 2000
#define UNKNOWN_BACKOFF_MS 50 /* the node does not know us (yet): the request side says HELLO */

struct nodelink {
    nodelink_config c;
    nng_socket req, dlv; /* requests; pulls for our deliveries (REQ to the node's delivery address) */
    bool has_req, has_dlv; /* opened (no delivery socket with no_deliveries) */
    nng_dialer req_dialer, dlv_dialer; /* replaced by the request thread only (redial) */
    nng_aio *aio; /* the request thread's send/receive; cancelled when the node goes down */
    nng_aio *pull_aio; /* the delivery thread's pull; cancelled when its connection drops */
    pthread_t req_thread, dlv_thread;
    bool req_started, dlv_started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    op_batch filling;  /* guarded by lock */
    uint64_t next_seq; /* the number the filling batch will carry; guarded by lock */
    atomic_bool stop;
    atomic_bool delivering;
    atomic_int pipes;     /* connected REQ pipes: 0 while the node is down */
    atomic_int dlv_pipes; /* connected delivery pipes */
    uint64_t redials;     /* dialers replaced (request thread) */
    atomic_bool been_up;  /* a HELLO delivery has arrived before */
    atomic_ullong refused;
    bool forbidden; /* the node refused our HELLO for our role (logged once; request thread) */
};

static void emit(nodelink *l, int event, uint64_t seq, void *item)
{
    if (l->c.handler(l->c.ctx, event, l->c.index, seq, item) == 0)
        return;
    if (event == NODELINK_REPLY || event == NODELINK_DELIVERY) {
        nng_msg_free(item);
    } else if (event == NODELINK_FAILED) {
        log_error("failed-batch-lost", "node=%s seq=%llu ops=%u (the owner could not take it)",
                  l->c.id, (unsigned long long)seq, ((op_batch *)item)->count);
        op_batch_destroy(item);
        xfree(item);
    } else
        log_error("link-event-lost", "node=%s event=%d (the owner could not take it)", l->c.id, event);
}

/* Sends one batch and waits for the reply. Returns the reply (owned by the
 * caller) or NULL when the request failed (logged): no answer within
 * REPLY_TIMEOUT_MS, or at once when the connection to the node drops while the
 * request is out (pipe_event cancels the wait; nng's REQ would wait for the
 * node to come back and resend). */
static nng_msg *roundtrip(nodelink *l, uint64_t seq, const op_batch *b)
{
    uint8_t hdr[OP_BATCH_HEADER_MAX];
    size_t h = op_batch_header(hdr, l->c.peer_id, seq, b->count);
    nng_msg *msg, *reply = NULL;
    int rv = nng_msg_alloc(&msg, h + b->buf.size);
    if (rv == 0) {
        memcpy(nng_msg_body(msg), hdr, h);
        if (b->buf.size > 0)
            memcpy((uint8_t *)nng_msg_body(msg) + h, b->buf.data, b->buf.size);
        /* a HELLO is cheap to repeat: a short wait, so a stuck one cannot hold the link */
        nng_aio_set_timeout(l->aio, seq == 0 ? HELLO_TIMEOUT_MS
                                    : l->c.reply_timeout_ms > 0 ? l->c.reply_timeout_ms : REPLY_TIMEOUT_MS);
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
        if (seq != 0) /* HELLOs to a down node fail quietly: node-down and the redial lines say it */
            log_error("node-request-failed", "node=%s seq=%llu ops=%u error=%s", l->c.id,
                      (unsigned long long)seq, b->count, nng_strerror(rv));
        return NULL;
    }
    return reply;
}

/* Hands batch (its contents are moved out; numbered seq) to the owner: the
 * node will not answer it. */
static void post_failed(nodelink *l, uint64_t seq, op_batch *batch)
{
    op_batch *failed = xmalloc(sizeof(*failed));
    *failed = *batch;
    op_batch_init(batch);
    emit(l, NODELINK_FAILED, seq, failed);
}

/* True when the reply holds an operation of this kind (and, for an ERROR, this code). */
static bool reply_has(nng_msg *reply, uint32_t kind, uint32_t error)
{
    mp_reader r;
    uint64_t origin, seq;
    uint32_t count;
    if (reply == NULL ||
        op_batch_open(&r, nng_msg_body(reply), nng_msg_len(reply), &origin, &seq, &count) != 0)
        return false;
    for (uint32_t i = 0; i < count; i++) {
        op o;
        int rc = op_decode(&r, &o);
        if (rc == -1)
            return false;
        if (rc == 0 && o.kind == kind && (kind != OP_ERROR || o.error == error))
            return true;
    }
    return false;
}

/* Waits (lock held) until there is something to send, a heartbeat is due, or
 * the link stops or stops delivering. */
static void wait_for_work(nodelink *l, int64_t last_send)
{
    while (l->filling.count == 0 && !atomic_load(&l->stop) && atomic_load(&l->delivering) &&
           now_ms() - last_send < HEARTBEAT_MS) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&l->wake, &l->lock, &ts);
    }
}

/* Replaces the dialer of one socket (request thread only): closes it, with
 * any connection or handshake it holds, and dials again at once.
 *
 * nng 1.5.2 gives up on a dialer for good when one connection attempt ends
 * with NNG_ECLOSED or NNG_ECANCELED (core/dialer.c, dialer_connect_cb), which
 * a connection reset under a TLS or SP handshake can produce (EPIPE is
 * NNG_ECLOSED): the link would never come back although the node is up.
 * Nothing says a dialer died, so a link that stays down is re-dialed. */
static void redial(nodelink *l, bool delivery, const char *why, int64_t waited_ms)
{
    nng_dialer *d = delivery ? &l->dlv_dialer : &l->req_dialer;
    const char *url = delivery ? l->c.delivery_url : l->c.request_url;
    l->redials++;
    log_warn(delivery ? "node-delivery-redial" : "node-request-redial",
             "node=%s url=%s waited_ms=%lld connected=%d redials=%llu why=\"%s\"", l->c.id, url,
             (long long)waited_ms, atomic_load(delivery ? &l->dlv_pipes : &l->pipes),
             (unsigned long long)l->redials, why);
    nng_dialer_close(*d);
    int rv = linktls_dial(l->c.tls, delivery ? l->dlv : l->req, url, d);
    if (rv != 0)
        log_error("node-dial-failed", "node=%s at=%s error=%s", l->c.id, url, nng_strerror(rv));
}

/* The node delivers to us (its HELLO came back): from now on anything may go. */
static void now_delivering(nodelink *l)
{
    atomic_store(&l->delivering, true);
    /* back after a node restart, a disconnect or a refusal: register everything again */
    if (atomic_exchange(&l->been_up, true))
        emit(l, NODELINK_RESYNC, 0, NULL);
}

/* The request loop (see nodelink.h for the protocol). */
static void *request_thread(void *arg)
{
    nodelink *l = arg;
    op_batch sending, hello;
    op_batch_init(&sending);
    op_batch_init(&hello);
    /* the digest lets the node refuse a map that differs under the same epoch */
    op h = {.kind = OP_HELLO, .epoch = l->c.epoch, .corr = l->c.map_digest, .action = (uint32_t)l->c.role,
            .flags = l->c.no_deliveries ? OP_FLAG_NO_DELIVERIES : 0};
    op_batch_add(&hello, &h);
    int64_t last_send = 0, last_hello = 0;
    int64_t answered_since = 0; /* HELLOs answered, none delivered, since then (0: not so) */
    int64_t down_since = 0, redial_after = REQUEST_REDIAL_MS; /* no REQ connection since then */
    bool retry = false; /* `sending` was refused and goes again */
    uint64_t seq = 0;
    for (;;) {
        if (atomic_load(&l->stop) && (!retry || !atomic_load(&l->delivering))) {
            pthread_mutex_lock(&l->lock);
            bool empty = l->filling.count == 0;
            pthread_mutex_unlock(&l->lock);
            if (empty || !atomic_load(&l->delivering))
                break; /* flushed, or the node is unreachable: nothing more can go */
        }
        if (!atomic_load(&l->delivering)) {
            int64_t now = now_ms();
            if (atomic_load(&l->pipes) > 0) {
                down_since = 0;
                redial_after = REQUEST_REDIAL_MS;
            } else if (down_since == 0) {
                down_since = now;
            } else if (now - down_since >= redial_after && !atomic_load(&l->stop)) {
                redial(l, false, "no connection to the node's request address", now - down_since);
                down_since = now;
                redial_after = redial_after * 2 < REQUEST_REDIAL_MAX_MS ? redial_after * 2 : REQUEST_REDIAL_MAX_MS;
            }
            if (l->has_dlv && answered_since != 0 && now - answered_since >= DELIVERY_STALL_MS &&
                !atomic_load(&l->stop)) {
                redial(l, true, "the node answers our HELLOs but none reaches us on its delivery address",
                       now - answered_since);
                answered_since = now;
            }
            if (atomic_load(&l->pipes) == 0 && atomic_load(&l->been_up)) {
                /* the node went down: what waits for it is answered with errors
                 * now rather than sent whenever it comes back (work queued
                 * before a new link's first connection waits for it) */
                if (retry) {
                    post_failed(l, seq, &sending);
                    retry = false;
                }
                pthread_mutex_lock(&l->lock);
                if (l->filling.count > 0)
                    post_failed(l, l->next_seq++, &l->filling);
                pthread_mutex_unlock(&l->lock);
            }
            if (now - last_hello < HELLO_RETRY_MS) {
                usleep(20 * 1000);
                continue;
            }
            last_hello = now;
            nng_msg *reply = roundtrip(l, 0, &hello);
            bool forbidden = reply != NULL && reply_has(reply, OP_ERROR, OP_ERR_FORBIDDEN);
            if (forbidden && !l->forbidden)
                log_error("node-refused-us", "node=%s as=%s (the node does not take our certificate's role: "
                          "see its peer-forbidden line)", l->c.id, link_role_name(l->c.role));
            l->forbidden = forbidden;
            if (!reply_has(reply, OP_HELLO, 0)) /* not welcomed: nothing is published to us */
                answered_since = 0;
            else if (l->c.no_deliveries)
                now_delivering(l); /* no delivery HELLO to wait for: the welcome is the word */
            else if (answered_since == 0)
                answered_since = now;
            if (reply != NULL)
                emit(l, NODELINK_REPLY, 0, reply);
            continue;
        }
        answered_since = 0;
        down_since = 0;
        if (!retry) {
            pthread_mutex_lock(&l->lock);
            wait_for_work(l, last_send);
            if (!atomic_load(&l->delivering) || (atomic_load(&l->stop) && l->filling.count == 0)) {
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
        if (reply_has(reply, OP_ERROR, OP_ERR_UNKNOWN_PEER)) { /* the node applied nothing of it */
            log_warn("node-lost-our-state", "node=%s (it restarted or dropped us): "
                     "saying HELLO again, then registering everything again", l->c.id);
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
        emit(l, NODELINK_REPLY, seq, reply);
        op_batch_reset(&sending);
    }
    op_batch_destroy(&sending);
    op_batch_destroy(&hello);
    return NULL;
}

bool batch_starts_with_hello(const mp_reader *r, uint32_t count)
{
    mp_reader copy = *r;
    op o;
    return count > 0 && op_decode(&copy, &o) == 0 && o.kind == OP_HELLO;
}

bool nodelink_is_hello(const void *body, size_t len, uint64_t peer_id)
{
    mp_reader r;
    uint64_t origin, seq;
    uint32_t count;
    op o;
    const uint8_t *p = body;
    if (len <= 8 || get_be64(p) != peer_id || op_batch_open(&r, p + 8, len - 8, &origin, &seq, &count) != 0)
        return false;
    for (uint32_t i = 0; i < count; i++) { /* what waited for our pull may come before it */
        int rc = op_decode(&r, &o);
        if (rc == -1)
            return false;
        if (rc == 0 && o.kind == OP_HELLO)
            return true;
    }
    return false;
}

/* One pull: asks the node for our deliveries and waits for its answer.
 * Returns it (owned by the caller), or NULL with *rv set. */
static nng_msg *pull(nodelink *l, int *rv)
{
    uint8_t id[8];
    put_be64(id, l->c.peer_id);
    nng_msg *msg;
    if ((*rv = nng_msg_alloc(&msg, sizeof(id))) != 0)
        return NULL;
    memcpy(nng_msg_body(msg), id, sizeof(id));
    nng_aio_set_timeout(l->pull_aio, PULL_TIMEOUT_MS);
    nng_aio_set_msg(l->pull_aio, msg);
    nng_send_aio(l->dlv, l->pull_aio);
    nng_aio_wait(l->pull_aio);
    if ((*rv = nng_aio_result(l->pull_aio)) != 0) {
        nng_msg_free(nng_aio_get_msg(l->pull_aio)); /* not sent: still ours */
        return NULL;
    }
    nng_recv_aio(l->dlv, l->pull_aio);
    /* dlv_pipe_event cancels a wait it sees; this catches a drop just before it began */
    if (atomic_load(&l->dlv_pipes) == 0)
        nng_aio_cancel(l->pull_aio);
    nng_aio_wait(l->pull_aio);
    if ((*rv = nng_aio_result(l->pull_aio)) != 0)
        return NULL;
    return nng_aio_get_msg(l->pull_aio);
}

/* The delivery loop: one pull out at a time; each answer carries all the
 * node gathered for us since the last (see node/peers.c). */
static void *delivery_thread(void *arg)
{
    nodelink *l = arg;
    while (!atomic_load(&l->stop)) {
        int rv;
        nng_msg *msg = pull(l, &rv);
        if (msg == NULL) {
            if (rv == NNG_ECLOSED)
                break;
            if (rv != NNG_ETIMEDOUT && rv != NNG_ECANCELED)
                log_warn("delivery-pull-failed", "node=%s error=%s", l->c.id, nng_strerror(rv));
            if (rv != NNG_ETIMEDOUT)
                usleep(20 * 1000); /* the connection is down: its dialer brings it back */
            continue;
        }
        size_t len = nng_msg_len(msg);
        if (len <= 8) { /* 8: nothing for us yet, pull again; 0: the node does not know us */
            nng_msg_free(msg);
            if (len == 0)
                usleep(UNKNOWN_BACKOFF_MS * 1000);
            continue;
        }
        if (!atomic_load(&l->delivering) &&
            nodelink_is_hello(nng_msg_body(msg), nng_msg_len(msg), l->c.peer_id))
            now_delivering(l);
        /* Blocks while the owner is behind: no pull goes out meanwhile, so
         * the node holds what comes for us (up to its bound, then it drops,
         * which the delivery numbers reveal). */
        while (l->c.handler(l->c.ctx, NODELINK_DELIVERY, l->c.index, 0, msg) != 0) {
            if (atomic_load(&l->stop)) {
                nng_msg_free(msg);
                break;
            }
            usleep(1000);
        }
    }
    return NULL;
}

/* nng calls this on its own thread when a delivery connection comes or goes. */
static void dlv_pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    (void)p;
    nodelink *l = arg;
    if (ev == NNG_PIPE_EV_ADD_POST)
        atomic_fetch_add(&l->dlv_pipes, 1);
    else if (atomic_fetch_sub(&l->dlv_pipes, 1) == 1)
        nng_aio_cancel(l->pull_aio); /* the pull out on it will not be answered: pull again (or stop) */
}

static void pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    nodelink *l = arg;
    if (ev == NNG_PIPE_EV_ADD_POST) {
        if (atomic_fetch_add(&l->pipes, 1) == 0)
            log_info("node-up", "node=%s", l->c.id);
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        if (atomic_fetch_sub(&l->pipes, 1) == 1) {
            atomic_store(&l->delivering, false); /* HELLO again before anything else */
            if (!atomic_load(&l->stop)) { /* not our own shutdown */
                nng_aio_cancel(l->aio); /* a request out to the node will not be answered */
                log_error("node-down", "node=%s (operations for its shards are refused until it is back)",
                          l->c.id);
                emit(l, NODELINK_DOWN, 0, NULL);
            }
        }
    }
}

static int open_sockets(nodelink *l)
{
    int rv;
    const char *step = "aio_alloc";
    if ((rv = nng_aio_alloc(&l->aio, NULL, NULL)) != 0)
        goto fail;
    step = "req0_open";
    if ((rv = nng_req0_open(&l->req)) != 0)
        goto fail;
    l->has_req = true;
    if (l->c.no_deliveries)
        goto request;
    step = "aio_alloc";
    if ((rv = nng_aio_alloc(&l->pull_aio, NULL, NULL)) != 0)
        goto fail;
    step = "req0_open";
    if ((rv = nng_req0_open(&l->dlv)) != 0)
        goto fail;
    l->has_dlv = true;
    /* an answer holds what the node gathered for us: at most its bound for a peer's held batch */
    nng_socket_set_size(l->dlv, NNG_OPT_RECVMAXSZ, NODELINK_QUEUE_MAX * 4);
    nng_socket_set_ms(l->dlv, NNG_OPT_REQ_RESENDTIME, 3600 * 1000); /* a lost pull times out instead */
    nng_pipe_notify(l->dlv, NNG_PIPE_EV_ADD_POST, dlv_pipe_event, l);
    nng_pipe_notify(l->dlv, NNG_PIPE_EV_REM_POST, dlv_pipe_event, l);
    nng_socket_set_ms(l->dlv, NNG_OPT_RECONNMINT, 100);
    nng_socket_set_ms(l->dlv, NNG_OPT_RECONNMAXT, 1000);
    /* Non-blocking dials: they retry in the background until the node is up. */
    step = l->c.delivery_url;
    if ((rv = linktls_dial(l->c.tls, l->dlv, l->c.delivery_url, &l->dlv_dialer)) != 0)
        goto fail;
request:
    nng_socket_set_size(l->req, NNG_OPT_RECVMAXSZ, NODELINK_QUEUE_MAX * 4);
    nng_socket_set_ms(l->req, NNG_OPT_REQ_RESENDTIME, 3600 * 1000); /* no silent duplicates */
    nng_pipe_notify(l->req, NNG_PIPE_EV_ADD_POST, pipe_event, l);
    nng_pipe_notify(l->req, NNG_PIPE_EV_REM_POST, pipe_event, l);
    nng_socket_set_ms(l->req, NNG_OPT_RECONNMINT, 100);
    nng_socket_set_ms(l->req, NNG_OPT_RECONNMAXT, 1000);
    step = l->c.request_url;
    if ((rv = linktls_dial(l->c.tls, l->req, l->c.request_url, &l->req_dialer)) != 0)
        goto fail;
    return 0;
fail:
    log_error("node-dial-failed", "node=%s at=%s error=%s", l->c.id, step, nng_strerror(rv));
    return -1;
}

nodelink *nodelink_open(const nodelink_config *c)
{
    nodelink *l = xcalloc(1, sizeof(*l));
    l->c = *c;
    l->next_seq = 1;
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->wake, NULL);
    op_batch_init(&l->filling);
    if (open_sockets(l) != 0)
        goto fail;
    if (pthread_create(&l->req_thread, NULL, request_thread, l) != 0)
        goto fail;
    l->req_started = true;
    if (l->has_dlv) {
        if (pthread_create(&l->dlv_thread, NULL, delivery_thread, l) != 0)
            goto fail;
        l->dlv_started = true;
    }
    return l;
fail:
    nodelink_close(l);
    return NULL;
}

uint64_t nodelink_submit(nodelink *l, const op *o)
{
    if (atomic_load(&l->pipes) == 0 && atomic_load(&l->been_up))
        return 0; /* the node is down: refuse at once rather than queue into the void */
    pthread_mutex_lock(&l->lock);
    if (l->filling.buf.size + o->name.len + (o->has_data ? o->data.len : 0) > NODELINK_QUEUE_MAX) {
        pthread_mutex_unlock(&l->lock);
        unsigned long long n = atomic_fetch_add(&l->refused, 1) + 1;
        if (n % 1000 == 1)
            log_warn("node-queue-full", "node=%s refused=%llu", l->c.id, n);
        return 0;
    }
    op_batch_add(&l->filling, o);
    uint64_t seq = l->next_seq;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->lock);
    return seq;
}

bool nodelink_delivering(const nodelink *l)
{
    return atomic_load(&l->delivering);
}

bool nodelink_connected(const nodelink *l)
{
    return atomic_load(&l->pipes) > 0;
}

uint64_t nodelink_refused(const nodelink *l)
{
    return atomic_load(&l->refused);
}

void nodelink_stop(nodelink *l)
{
    atomic_store(&l->stop, true);
    if (!atomic_load(&l->delivering))
        nng_aio_cancel(l->aio); /* a HELLO out to a node that does not take us: stop waiting */
    if (l->pull_aio != NULL && atomic_load(&l->dlv_pipes) == 0)
        nng_aio_cancel(l->pull_aio); /* a pull waiting for a connection; one out is answered within 500 ms */
    pthread_mutex_lock(&l->lock);
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->lock);
}

void nodelink_close(nodelink *l)
{
    if (l == NULL)
        return;
    nodelink_stop(l);
    if (l->req_started)
        pthread_join(l->req_thread, NULL); /* flushes what is queued first */
    if (l->dlv_started)
        pthread_join(l->dlv_thread, NULL);
    /* Quiesced: no request in flight, no pull out. */
    if (l->has_dlv)
        nng_close_bounded(l->dlv, "link-dlv", 2000);
    if (l->has_req)
        nng_close_bounded(l->req, "link-req", 2000);
    if (l->aio != NULL)
        nng_aio_free(l->aio);
    if (l->pull_aio != NULL)
        nng_aio_free(l->pull_aio);
    op_batch_destroy(&l->filling);
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->wake);
    xfree(l);
}

/* ---------------- delivery numbering ---------------- */

int stream_accept(delivery_stream *s, uint64_t seq, uint32_t count, bool hello, uint64_t *lost)
{
    *lost = 0;
    if (seq < count) /* malformed numbering: never applied */
        return STREAM_BAD;
    uint64_t before = seq - count; /* what the node had published before this batch */
    int verdict = STREAM_IN_ORDER;
    if (hello && before < s->received) {
        /* the node's numbering went back: it restarted. Its first HELLOs may
         * have been published before our subscription was up (they are
         * repeated until one arrives), so this need not be batch 1. */
        verdict = s->received > 0 ? STREAM_RESTARTED : STREAM_IN_ORDER;
        s->mark_set = false;
    } else if (before < s->received) {
        /* it was counted lost (a tail declared while the stream was only
         * backed up): apply it after all (the re-reads that loss triggered
         * are answered after it, the stream being in order) and uncount it */
        s->late++;
        s->lost -= count < s->lost ? count : s->lost;
        return STREAM_LATE;
    } else if (s->received > 0 && before > s->received) {
        *lost = before - s->received;
        s->gaps++;
        s->lost += *lost;
        verdict = STREAM_GAP;
    }
    s->received = seq;
    return verdict;
}

uint64_t stream_heartbeat(delivery_stream *s, uint64_t published)
{
    uint64_t lost = 0;
    if (s->mark_set && s->mark > s->received && s->received == s->mark_last) {
        lost = s->mark - s->received;
        s->received = s->mark;
        s->gaps++;
        s->lost += lost;
    }
    s->mark = published;
    s->mark_last = s->received;
    s->mark_set = true;
    return lost;
}

uint64_t stream_settle(delivery_stream *s, uint64_t published)
{
    if (published <= s->received)
        return 0;
    uint64_t lost = published - s->received;
    s->received = published;
    s->gaps++;
    s->lost += lost;
    return lost;
}

void stream_forget_mark(delivery_stream *s)
{
    s->mark_set = false;
}
