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
/* A control loop turn takes at most a HELLO's timeout and a short wait; a gap
 * far longer means this process was stopped (SIGSTOP, a VM pause) or starved.
 * The dialers had no time to work in it, so their clocks start again: a redial
 * then would close a dialer in the middle of the connection it is making:
 * nng 1.5.2 then leaked the dialer and its half-made TLS connection (seen
 * under ASan after a node was resumed from a 5 s pause). */
#define CONTROL_GAP_MS (HELLO_TIMEOUT_MS + 1000)
/* A pull is answered within the node's PULL_IDLE_MS (500) when the node has
 * nothing for us; one unanswered this long went to a node that went away. */
#define PULL_TIMEOUT_MS 2000
#define UNKNOWN_BACKOFF_MS 50 /* the node does not know us (yet): the request side says HELLO */

struct nodelink {
    nodelink_config c;
    nng_socket req, dlv; /* requests; pulls for our deliveries (REQ to the node's delivery address) */
    bool has_req, has_dlv; /* opened (no delivery socket with no_deliveries) */
    nng_ctx data_ctx, ctl_ctx; /* batches; the control thread's HELLOs (both may be out at once) */
    bool has_data_ctx, has_ctl_ctx;
    nng_dialer req_dialer, dlv_dialer; /* replaced by the control thread only (redial) */
    nng_aio *send_aio; /* the batch out: its send (request_sent), then */
    nng_aio *aio;      /* its reply (request_done); both cancelled when the node goes down */
    nng_aio *ctl_aio;  /* the control thread's HELLO, waited for */
    nng_aio *pull_send_aio;  /* the pull chain: its send (pull_sent), */
    nng_aio *pull_aio;       /* the answer (pull_done), */
    nng_aio *pull_sleep_aio; /* its pauses (pull_woke). Never an aio used for I/O: in nng 1.5.2
                                an aio that once slept reports its later timeouts as success
                                (a_expire_ok stays set), an answer without a message */
    pthread_t ctl_thread;
    bool ctl_started;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* the control thread's, and nodelink_close's wait for the pull chain */
    /* guarded by lock */
    op_batch filling;     /* what goes in the next batch */
    uint64_t next_seq;    /* the number the filling batch will carry */
    op_batch sending;     /* the batch out, or refused and kept for a retry (owned by the
                             request chain while busy) */
    uint64_t sending_seq;
    bool busy;            /* sending is out on aio */
    bool retry;           /* sending was refused (the node did not know us): it goes again first */
    int64_t last_send_ms; /* for the heartbeat */
    bool pulling;         /* the pull chain runs (it ends once the link stops) */
    /* the pull chain's own (one callback at a time) */
    nng_msg *offered; /* a delivery the owner has not taken yet, offered again after a pause */
    atomic_bool stop;
    atomic_bool delivering;
    atomic_int pipes;     /* connected REQ pipes: 0 while the node is down */
    atomic_int dlv_pipes; /* connected delivery pipes */
    uint64_t redials;     /* dialers replaced (control thread) */
    atomic_bool been_up;  /* a HELLO delivery has arrived before */
    atomic_ullong refused;
    bool forbidden; /* the node refused our HELLO for our role (logged once; control thread) */
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

/* Moves batch's contents into a new heap batch (returned, owned by the
 * caller) and leaves batch empty. Lets a failed batch leave the lock before
 * it is handed to the owner (post_failed). */
static op_batch *take_batch(op_batch *batch)
{
    op_batch *taken = xmalloc(sizeof(*taken));
    *taken = *batch;
    op_batch_init(batch);
    return taken;
}

/* Hands a failed batch (taken, numbered seq) to the owner: the node will not
 * answer it. Never with the lock held: the owner's handler may take a lock
 * of its own under which it submits (libeddy's). */
static void post_failed(nodelink *l, uint64_t seq, op_batch *taken)
{
    if (taken != NULL)
        emit(l, NODELINK_FAILED, seq, taken);
}

/* A batch as one nng message: the header, then its operations. Returns NULL (logged) without memory. */
static nng_msg *batch_message(nodelink *l, uint64_t seq, const op_batch *b)
{
    uint8_t hdr[OP_BATCH_HEADER_MAX];
    size_t h = op_batch_header(hdr, l->c.peer_id, seq, b->count);
    nng_msg *msg;
    int rv = nng_msg_alloc(&msg, h + b->buf.size);
    if (rv != 0) {
        log_error("node-request-failed", "node=%s seq=%llu ops=%u error=%s", l->c.id, (unsigned long long)seq,
                  b->count, nng_strerror(rv));
        return NULL;
    }
    memcpy(nng_msg_body(msg), hdr, h);
    if (b->buf.size > 0)
        memcpy((uint8_t *)nng_msg_body(msg) + h, b->buf.data, b->buf.size);
    return msg;
}

/* Sends a HELLO and waits for the reply (the control thread, on its own
 * context). Returns the reply (owned by the caller) or NULL. A HELLO is cheap
 * to repeat: a short wait, so a stuck one cannot hold the link. */
static nng_msg *hello_roundtrip(nodelink *l, const op_batch *hello)
{
    nng_msg *msg = batch_message(l, 0, hello);
    if (msg == NULL)
        return NULL;
    nng_aio_set_timeout(l->ctl_aio, HELLO_TIMEOUT_MS);
    nng_aio_set_msg(l->ctl_aio, msg);
    nng_ctx_send(l->ctl_ctx, l->ctl_aio);
    nng_aio_wait(l->ctl_aio);
    if (nng_aio_result(l->ctl_aio) != 0) {
        nng_msg_free(nng_aio_get_msg(l->ctl_aio)); /* not sent: still ours */
        return NULL;
    }
    nng_ctx_recv(l->ctl_ctx, l->ctl_aio);
    nng_aio_wait(l->ctl_aio);
    return nng_aio_result(l->ctl_aio) == 0 ? nng_aio_get_msg(l->ctl_aio) : NULL;
}

/* True when an operation batch holds an operation of this kind (and, for an
 * ERROR, this code): the body of a reply, or of a delivery after its peer id. */
static bool batch_has(const void *body, size_t len, uint32_t kind, uint32_t error)
{
    mp_reader r;
    uint64_t origin, seq;
    uint32_t count;
    if (op_batch_open(&r, body, len, &origin, &seq, &count) != 0)
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

static bool reply_has(nng_msg *reply, uint32_t kind, uint32_t error)
{
    return reply != NULL && batch_has(nng_msg_body(reply), nng_msg_len(reply), kind, error);
}

static int reply_timeout(const nodelink *l)
{
    return l->c.reply_timeout_ms > 0 ? l->c.reply_timeout_ms : REPLY_TIMEOUT_MS;
}

/* Starts the next batch when none is out and the node delivers to us: the
 * refused one again, else everything submitted since the last (lock held).
 * The first operation after a quiet spell goes at once, on the caller's
 * thread; what comes while a batch is out travels together in the next. */
static void kick_locked(nodelink *l)
{
    if (l->busy || !atomic_load(&l->delivering) || (!l->retry && l->filling.count == 0))
        return;
    if (!l->retry) {
        op_batch tmp = l->sending;
        l->sending = l->filling;
        l->filling = tmp;
        op_batch_reset(&l->filling);
        l->sending_seq = l->next_seq++;
    }
    nng_msg *msg = batch_message(l, l->sending_seq, &l->sending);
    if (msg == NULL) { /* no memory: the control thread tries again within 50 ms */
        l->retry = true;
        return;
    }
    l->retry = false;
    l->busy = true;
    l->last_send_ms = now_ms();
    nng_aio_set_timeout(l->send_aio, reply_timeout(l));
    nng_aio_set_msg(l->send_aio, msg);
    nng_ctx_send(l->data_ctx, l->send_aio);
    if (atomic_load(&l->pipes) == 0) /* dropped just now: pipe_event's cancel came before */
        nng_aio_cancel(l->send_aio);
}

/* The request chain's callback (nng's thread): the batch went out, then its
 * reply came (or neither did). The reply or the failure goes to the owner
 * before the next batch starts, so the owner hears of batches in order. */
static void request_finish(nodelink *l, int rv, nng_msg *reply);

static void request_sent(void *arg)
{
    nodelink *l = arg;
    int rv = nng_aio_result(l->send_aio);
    if (rv != 0) {
        nng_msg_free(nng_aio_get_msg(l->send_aio)); /* not sent: still ours */
        request_finish(l, rv, NULL);
        return;
    }
    nng_aio_set_timeout(l->aio, reply_timeout(l));
    nng_ctx_recv(l->data_ctx, l->aio);
    /* pipe_event cancels a wait it sees; this catches a drop just before it began */
    if (atomic_load(&l->pipes) == 0)
        nng_aio_cancel(l->aio);
}

static void request_done(void *arg)
{
    nodelink *l = arg;
    int rv = nng_aio_result(l->aio);
    request_finish(l, rv, rv == 0 ? nng_aio_get_msg(l->aio) : NULL);
}

static void request_finish(nodelink *l, int rv, nng_msg *reply)
{
    uint64_t seq = l->sending_seq; /* ours while busy */
    if (reply_has(reply, OP_ERROR, OP_ERR_UNKNOWN_PEER)) { /* the node applied nothing of it */
        log_warn("node-lost-our-state", "node=%s (it restarted or dropped us): "
                 "saying HELLO again, then registering everything again", l->c.id);
        nng_msg_free(reply);
        atomic_store(&l->delivering, false); /* the next HELLO delivery triggers the resync */
        pthread_mutex_lock(&l->lock);
        l->retry = true;
        l->busy = false;
        pthread_cond_signal(&l->wake);
        pthread_mutex_unlock(&l->lock);
        return;
    }
    if (reply == NULL) { /* timed out, or the node went down: unknown which ops applied */
        log_error("node-request-failed", "node=%s seq=%llu ops=%u error=%s", l->c.id, (unsigned long long)seq,
                  l->sending.count, nng_strerror(rv));
        post_failed(l, seq, take_batch(&l->sending));
    } else {
        emit(l, NODELINK_REPLY, seq, reply);
        op_batch_reset(&l->sending);
    }
    pthread_mutex_lock(&l->lock);
    l->busy = false;
    kick_locked(l);
    if (atomic_load(&l->stop)) /* the control thread waits for the last batch to end */
        pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->lock);
}

/* Replaces the dialer of one socket (control thread only): closes it, with
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
    pthread_mutex_lock(&l->lock);
    kick_locked(l); /* the refused batch first, then what waited */
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->lock);
}

/* Waits on the control thread's condition for up to ms (lock held). */
static void wait_locked(nodelink *l, int ms)
{
    struct timespec ts;
    timespec_after(&ts, CLOCK_REALTIME, ms);
    pthread_cond_timedwait(&l->wake, &l->lock, &ts);
}

/* The node went down after having been up: what waits for it is answered
 * with errors now rather than sent whenever it comes back (work queued
 * before a new link's first connection waits for it). */
static void fail_waiting(nodelink *l)
{
    op_batch *refused = NULL, *queued = NULL;
    uint64_t refused_seq = 0, queued_seq = 0;
    pthread_mutex_lock(&l->lock);
    if (l->retry && !l->busy) {
        refused_seq = l->sending_seq;
        refused = take_batch(&l->sending);
        l->retry = false;
    }
    if (l->filling.count > 0) {
        queued_seq = l->next_seq++;
        queued = take_batch(&l->filling);
    }
    pthread_mutex_unlock(&l->lock);
    post_failed(l, refused_seq, refused);
    post_failed(l, queued_seq, queued);
}

/* The control loop (see nodelink.h for the protocol): HELLOs until the node
 * delivers to us, redials, heartbeats when idle; batches go on the request
 * chain. It ends once the link stops and what it holds has gone (or cannot). */
static void *control_thread(void *arg)
{
    nodelink *l = arg;
    op_batch hello;
    op_batch_init(&hello);
    /* the digest lets the node refuse a map that differs under the same epoch */
    op h = {.kind = OP_HELLO, .epoch = l->c.epoch, .corr = l->c.map_digest, .action = (uint32_t)l->c.role,
            .flags = l->c.no_deliveries ? OP_FLAG_NO_DELIVERIES : 0};
    op_batch_add(&hello, &h);
    int64_t last_hello = 0;
    int64_t answered_since = 0; /* HELLOs answered, none delivered, since then (0: not so) */
    int64_t down_since = 0, redial_after = REQUEST_REDIAL_MS; /* no REQ connection since then */
    int64_t last_turn = now_ms();
    for (;;) {
        int64_t turn = now_ms();
        if (turn - last_turn > CONTROL_GAP_MS) { /* we were not running: the dialers were not either */
            if (down_since != 0)
                down_since = turn;
            if (answered_since != 0)
                answered_since = turn;
        }
        last_turn = turn;
        bool delivering = atomic_load(&l->delivering), stop = atomic_load(&l->stop);
        pthread_mutex_lock(&l->lock);
        /* flushed, or the node is unreachable: nothing more can go (and nothing is out) */
        if (stop && !l->busy && (!delivering || (l->filling.count == 0 && !l->retry))) {
            pthread_mutex_unlock(&l->lock);
            break;
        }
        if (delivering || l->busy) {
            answered_since = 0;
            down_since = 0;
            if (delivering && !stop && !l->busy && !l->retry && l->filling.count == 0 &&
                now_ms() - l->last_send_ms >= HEARTBEAT_MS) {
                op hb = {.kind = OP_HEARTBEAT};
                op_batch_add(&l->filling, &hb);
            }
            kick_locked(l);
            wait_locked(l, l->busy ? 20 : 50);
            pthread_mutex_unlock(&l->lock);
            continue;
        }
        pthread_mutex_unlock(&l->lock);
        int64_t now = now_ms();
        if (atomic_load(&l->pipes) > 0) {
            down_since = 0;
            redial_after = REQUEST_REDIAL_MS;
        } else if (down_since == 0) {
            down_since = now;
        } else if (now - down_since >= redial_after && !stop) {
            redial(l, false, "no connection to the node's request address", now - down_since);
            down_since = now;
            redial_after = redial_after * 2 < REQUEST_REDIAL_MAX_MS ? redial_after * 2 : REQUEST_REDIAL_MAX_MS;
        }
        if (l->has_dlv && answered_since != 0 && now - answered_since >= DELIVERY_STALL_MS && !stop) {
            redial(l, true, "the node answers our HELLOs but none reaches us on its delivery address",
                   now - answered_since);
            answered_since = now;
        }
        if (atomic_load(&l->pipes) == 0 && atomic_load(&l->been_up))
            fail_waiting(l);
        if (now - last_hello < HELLO_RETRY_MS) {
            usleep(20 * 1000);
            continue;
        }
        last_hello = now;
        nng_msg *reply = hello_roundtrip(l, &hello);
        bool forbidden = reply_has(reply, OP_ERROR, OP_ERR_FORBIDDEN);
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
    }
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
    const uint8_t *p = body;
    /* what waited for our pull may come before the HELLO */
    return len > 8 && get_be64(p) == peer_id && batch_has(p + 8, len - 8, OP_HELLO, 0);
}

/* ---------------- the pull chain ----------------
 * One pull out at a time; each answer carries all the node gathered for us
 * since the last (see node/peers.c). Runs on nng's threads: pull_next sends,
 * pull_done takes the answer to the owner and pulls again. */

/* The chain ends (the link stops): nodelink_close waits for this. */
static void pull_end(nodelink *l)
{
    pthread_mutex_lock(&l->lock);
    l->pulling = false;
    pthread_cond_broadcast(&l->wake);
    pthread_mutex_unlock(&l->lock);
}

/* Pulls again ms from now (pull_woke). */
static void pull_pause(nodelink *l, int ms)
{
    nng_sleep_aio(ms, l->pull_sleep_aio);
}

/* Asks the node for our deliveries (or ends the chain when the link stops). */
static void pull_next(nodelink *l)
{
    if (atomic_load(&l->stop)) {
        pull_end(l);
        return;
    }
    nng_msg *msg;
    if (nng_msg_alloc(&msg, 8) != 0) {
        pull_pause(l, 20);
        return;
    }
    put_be64(nng_msg_body(msg), l->c.peer_id);
    nng_aio_set_timeout(l->pull_send_aio, PULL_TIMEOUT_MS);
    nng_aio_set_msg(l->pull_send_aio, msg);
    nng_send_aio(l->dlv, l->pull_send_aio);
}

/* Hands a delivery to the owner, then pulls again. While the owner is
 * behind it is offered again a millisecond later and no pull goes out
 * meanwhile, so the node holds what comes for us (up to its bound, then it
 * drops, which the delivery numbers reveal). */
static void pull_offer(nodelink *l, nng_msg *msg)
{
    if (l->c.handler(l->c.ctx, NODELINK_DELIVERY, l->c.index, 0, msg) == 0) {
        pull_next(l);
    } else if (atomic_load(&l->stop)) {
        nng_msg_free(msg);
        pull_end(l);
    } else {
        l->offered = msg;
        pull_pause(l, 1);
    }
}

/* A pull failed (rv): pull again, at once or after a pause, or end at close. */
static void pull_failed(nodelink *l, int rv)
{
    if (rv == NNG_ECLOSED) {
        pull_end(l);
    } else if (rv == NNG_ETIMEDOUT) {
        pull_next(l);
    } else {
        if (rv != NNG_ECANCELED)
            log_warn("delivery-pull-failed", "node=%s error=%s", l->c.id, nng_strerror(rv));
        pull_pause(l, 20); /* the connection is down: its dialer brings it back */
    }
}

/* The pull went out: wait for its answer. */
static void pull_sent(void *arg)
{
    nodelink *l = arg;
    int rv = nng_aio_result(l->pull_send_aio);
    if (rv != 0) {
        nng_msg_free(nng_aio_get_msg(l->pull_send_aio)); /* not sent: still ours */
        pull_failed(l, rv);
        return;
    }
    nng_aio_set_timeout(l->pull_aio, PULL_TIMEOUT_MS);
    nng_recv_aio(l->dlv, l->pull_aio);
    /* dlv_pipe_event cancels a wait it sees; this catches a drop just before it began */
    if (atomic_load(&l->dlv_pipes) == 0)
        nng_aio_cancel(l->pull_aio);
}

/* A pause ended (or was cancelled): offer the delivery the owner did not take, or pull. */
static void pull_woke(void *arg)
{
    nodelink *l = arg;
    nng_msg *msg = l->offered;
    l->offered = NULL;
    if (msg != NULL)
        pull_offer(l, msg);
    else
        pull_next(l);
}

/* The node answered our pull (or did not in time). */
static void pull_done(void *arg)
{
    nodelink *l = arg;
    int rv = nng_aio_result(l->pull_aio);
    if (rv != 0) {
        pull_failed(l, rv);
        return;
    }
    nng_msg *msg = nng_aio_get_msg(l->pull_aio);
    nng_aio_set_msg(l->pull_aio, NULL); /* ours now */
    size_t len = nng_msg_len(msg);
    if (len <= 8) { /* 8: nothing for us yet, pull again; 0: the node does not know us */
        nng_msg_free(msg);
        if (len == 0)
            pull_pause(l, UNKNOWN_BACKOFF_MS);
        else
            pull_next(l);
        return;
    }
    if (!atomic_load(&l->delivering) && nodelink_is_hello(nng_msg_body(msg), len, l->c.peer_id))
        now_delivering(l);
    pull_offer(l, msg);
}

/* nng calls this on its own thread when a delivery connection comes or goes. */
static void dlv_pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    (void)p;
    nodelink *l = arg;
    if (ev == NNG_PIPE_EV_ADD_POST)
        atomic_fetch_add(&l->dlv_pipes, 1);
    else if (atomic_fetch_sub(&l->dlv_pipes, 1) == 1) {
        /* the pull out on it will not be answered: pull again (or stop) */
        nng_aio_cancel(l->pull_send_aio);
        nng_aio_cancel(l->pull_aio);
    }
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
                nng_aio_cancel(l->send_aio); /* a batch out to the node will not be answered */
                nng_aio_cancel(l->aio);
                log_error("node-down", "node=%s (operations for its shards are refused until it is back)",
                          l->c.id);
                emit(l, NODELINK_DOWN, 0, NULL);
            }
        }
    }
}

/* The options both REQ sockets share: a bound on what a reply may hold, no
 * silent resend (a lost request fails or times out instead), the pipe
 * callback, and quick reconnects. */
static void set_req_options(nodelink *l, nng_socket s, nng_pipe_cb cb)
{
    nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, NODELINK_QUEUE_MAX * 4);
    nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, 3600 * 1000);
    nng_pipe_notify(s, NNG_PIPE_EV_ADD_POST, cb, l);
    nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, cb, l);
    nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 100);
    nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, 1000);
}

static int open_sockets(nodelink *l)
{
    int rv;
    const char *step = "aio_alloc";
    if ((rv = nng_aio_alloc(&l->send_aio, request_sent, l)) != 0 || (rv = nng_aio_alloc(&l->aio, request_done, l)) != 0 ||
        (rv = nng_aio_alloc(&l->ctl_aio, NULL, NULL)) != 0)
        goto fail;
    step = "req0_open";
    if ((rv = nng_req0_open(&l->req)) != 0)
        goto fail;
    l->has_req = true;
    set_req_options(l, l->req, pipe_event); /* before the contexts: they take the resend time */
    step = "ctx_open";
    if ((rv = nng_ctx_open(&l->data_ctx, l->req)) != 0)
        goto fail;
    l->has_data_ctx = true;
    if ((rv = nng_ctx_open(&l->ctl_ctx, l->req)) != 0)
        goto fail;
    l->has_ctl_ctx = true;
    if (!l->c.no_deliveries) {
        step = "aio_alloc";
        if ((rv = nng_aio_alloc(&l->pull_send_aio, pull_sent, l)) != 0 ||
            (rv = nng_aio_alloc(&l->pull_aio, pull_done, l)) != 0 ||
            (rv = nng_aio_alloc(&l->pull_sleep_aio, pull_woke, l)) != 0)
            goto fail;
        step = "req0_open";
        if ((rv = nng_req0_open(&l->dlv)) != 0)
            goto fail;
        l->has_dlv = true;
        /* an answer holds what the node gathered for us: at most its bound for a peer's held batch */
        set_req_options(l, l->dlv, dlv_pipe_event);
        /* Non-blocking dials: they retry in the background until the node is up. */
        step = l->c.delivery_url;
        if ((rv = linktls_dial(l->c.tls, l->dlv, l->c.delivery_url, &l->dlv_dialer)) != 0)
            goto fail;
    }
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
    op_batch_init(&l->sending);
    if (open_sockets(l) != 0)
        goto fail;
    if (pthread_create(&l->ctl_thread, NULL, control_thread, l) != 0)
        goto fail;
    l->ctl_started = true;
    if (l->has_dlv) {
        l->pulling = true;
        pull_next(l);
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
    kick_locked(l);
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
    if (!atomic_load(&l->delivering) && l->ctl_aio != NULL)
        nng_aio_cancel(l->ctl_aio); /* a HELLO out to a node that does not take us: stop waiting */
    if (l->pull_aio != NULL && atomic_load(&l->dlv_pipes) == 0) {
        /* a pull waiting for a connection; one out is answered within 500 ms */
        nng_aio_cancel(l->pull_send_aio);
        nng_aio_cancel(l->pull_aio);
    }
    pthread_mutex_lock(&l->lock);
    pthread_cond_broadcast(&l->wake);
    pthread_mutex_unlock(&l->lock);
}

void nodelink_close(nodelink *l)
{
    if (l == NULL)
        return;
    nodelink_stop(l);
    if (l->ctl_started)
        pthread_join(l->ctl_thread, NULL); /* flushes what is queued first; no batch is out after */
    pthread_mutex_lock(&l->lock);
    while (l->pulling) /* a pull out is answered within 500 ms, or times out */
        pthread_cond_wait(&l->wake, &l->lock);
    pthread_mutex_unlock(&l->lock);
    /* Quiesced: no batch, HELLO or pull out (nng 1.5.2 can hang closing a REQ
     * context with a request in flight), so stopping the aios waits for nothing. */
    nng_aio **aios[] = {&l->send_aio, &l->aio, &l->ctl_aio, &l->pull_send_aio, &l->pull_aio, &l->pull_sleep_aio};
    for (size_t i = 0; i < sizeof(aios) / sizeof(aios[0]); i++)
        if (*aios[i] != NULL)
            nng_aio_stop(*aios[i]);
    if (l->has_data_ctx)
        nng_ctx_close(l->data_ctx);
    if (l->has_ctl_ctx)
        nng_ctx_close(l->ctl_ctx);
    if (l->has_dlv)
        nng_close_bounded(l->dlv, "link-dlv", 2000);
    if (l->has_req)
        nng_close_bounded(l->req, "link-req", 2000);
    for (size_t i = 0; i < sizeof(aios) / sizeof(aios[0]); i++)
        if (*aios[i] != NULL)
            nng_aio_free(*aios[i]);
    op_batch_destroy(&l->filling);
    op_batch_destroy(&l->sending);
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
