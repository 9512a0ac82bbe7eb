/* node.c - the node's sockets, its executor thread and the operation dispatch.
 *
 * The executor receives one batch at a time on the REP socket, applies every
 * operation in order, publishes the deliveries gathered for each peer as one
 * batch per peer, then replies. Peers that stop sending (no batch, no heartbeat)
 * for cluster.brokerTimeout are dropped with all their interest.
 *
 * In standalone the broker in the same process is the local peer: it applies
 * its batches by calling node_local_request on its own thread, and its
 * deliveries wait in an outbox it takes them from, so its operations cross no
 * thread and no socket. The node's lock serializes that thread and the
 * executor. */
#include "node.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>

#include "clustermap.h"
#include "log.h"
#include "mem.h"
#include "queue.h"
#include "util.h"

#define LOCAL_OUTBOX_LEN 8192 /* delivery batches the local peer has not taken yet */

struct node {
    const eddy_config *cfg;
    shardmap map;
    uint64_t map_digest;
    char *map_json; /* MAP_QUERY's answer, built at start */
    unsigned self;
    nng_socket rep, pub;
    char request_url[256], delivery_url[256];
    char backend_request_url[256], backend_delivery_url[256]; /* "" when not listening */
    pthread_t thread;
    pthread_mutex_t lock; /* everything below: the executor and node_local_request */
    atomic_bool stop;
    /* the in-process peer (standalone); local_id 0 = none */
    uint64_t local_id;
    queue *outbox;             /* its delivery batches, in order (nng_msg) */
    pthread_mutex_t wake_lock; /* guards wake against node_detach_local */
    void (*wake)(void *ctx);   /* told when the outbox gets what it did not ask for; NULL once detached */
    void *wake_ctx;
    bool in_local_request;     /* the local peer is here: it takes its deliveries itself */
    uint64_t outbox_dropped;
    op_batch local_reply;      /* node_local_request's reply scratch */
    dict *peers; /* id (8 bytes) -> peer */
    peer *dirty;
    event_table *events;
    persist *persist;
    record_table *records;
    rpc_table *rpc;
    presence_table *presence;
    listen_table *listen;
    int64_t last_sweep_ms;
    uint64_t malformed; /* batches rejected as malformed */
    /* Fault injection for the gap-recovery tests (EDDY_FAULT_DROP_BROADCASTS=N):
     * every Nth delivery batch made only of broadcasts is numbered but not sent,
     * as nng pub/sub does when a subscriber's queue is full. 0 = off. */
    unsigned fault_drop_every;
    unsigned fault_count;
};

static peer *peer_get(node *n, uint64_t id)
{
    peer *p = dict_get(n->peers, &id, sizeof(id));
    if (p != NULL)
        return p;
    p = xcalloc(1, sizeof(*p));
    p->id = id;
    op_batch_init(&p->out);
    p->event_names = dict_new();
    dict_put(n->peers, &id, sizeof(id), p);
    log_info("peer-joined", "peer=%016llx", (unsigned long long)id);
    return p;
}

static void peer_free(peer *p)
{
    op_batch_destroy(&p->out);
    dict_free(p->event_names);
    xfree(p);
}

void node_deliver_encoded(node *n, peer *p, const void *bytes, size_t len)
{
    op_batch_add_encoded(&p->out, bytes, len);
    if (!p->dirty) {
        p->dirty = true;
        p->next_dirty = n->dirty;
        n->dirty = p;
    }
}

listen_table *node_listen(node *n) { return n->listen; }
record_table *node_records(node *n) { return n->records; }
event_table *node_events(node *n) { return n->events; }

bool node_owns(node_req *req, const op *o)
{
    return node_owns_name(req, o, o->name);
}

bool node_owns_name(node_req *req, const op *o, strview name)
{
    node *n = req->n;
    uint32_t shard = shard_of(name.ptr, name.len);
    if (o->epoch == n->map.epoch && o->shard == shard && shardmap_owner(&n->map, shard) == n->self)
        return true;
    op e = {.kind = OP_ERROR, .error = OP_ERR_WRONG_SHARD, .corr = o->corr, .name = name,
            .epoch = n->map.epoch, .shard = shard};
    op_batch_add(req->reply, &e);
    log_warn("wrong-shard", "peer=%016llx shard=%u epoch=%llu node_epoch=%llu",
             (unsigned long long)req->from->id, shard, (unsigned long long)o->epoch,
             (unsigned long long)n->map.epoch);
    return false;
}

/* True when the fault injector drops this batch (only batches made of event and
 * record broadcasts: a lost answer would hang its requester, which is not what
 * the recovery under test is about). */
static bool fault_drops(node *n, const op_batch *b)
{
    if (n->fault_drop_every == 0)
        return false;
    mp_reader r;
    mp_reader_init(&r, b->buf.data, b->buf.size);
    for (uint32_t i = 0; i < b->count; i++) {
        op o;
        if (op_decode(&r, &o) != 0 || (o.kind != OP_EVENT_DELIVERY && o.kind != OP_RECORD_UPDATE))
            return false;
    }
    return ++n->fault_count % n->fault_drop_every == 0;
}

/* Tells the local peer to look (any thread; a no-op once it has detached). */
static void local_wake(node *n)
{
    pthread_mutex_lock(&n->wake_lock);
    if (n->wake != NULL)
        n->wake(n->wake_ctx);
    pthread_mutex_unlock(&n->wake_lock);
}

static void persist_notify(void *n)
{
    local_wake(n);
}

/* Hands msg (owned) to the local peer's outbox. A full outbox drops it, as a
 * full SUB queue would: the numbering shows the gap to the broker, which
 * recovers. */
static void to_outbox(node *n, nng_msg *msg)
{
    bool was_empty = queue_len(n->outbox) == 0;
    if (queue_push(n->outbox, msg, 0) != 0) {
        nng_msg_free(msg);
        if (n->outbox_dropped++ % 1000 == 0)
            log_warn("local-outbox-full", "dropped_total=%llu (the broker is behind)",
                     (unsigned long long)n->outbox_dropped);
        return;
    }
    if (was_empty && !n->in_local_request)
        local_wake(n);
}

/* Publishes every dirty peer's deliveries as one message each. The batch number
 * counts operations: it is the number of operations published to the peer so
 * far, this batch included, so a gap tells how many were lost. */
static void publish_dirty(node *n)
{
    for (peer *p = n->dirty; p != NULL; p = p->next_dirty) {
        uint8_t hdr[8 + OP_BATCH_HEADER_MAX];
        put_be64(hdr, p->id);
        p->delivery_seq += p->out.count;
        size_t h = 8 + op_batch_header(hdr + 8, n->self, p->delivery_seq, p->out.count);
        nng_msg *msg;
        if (fault_drops(n, &p->out)) {
            log_warn("fault-dropped-delivery", "peer=%016llx seq=%llu ops=%u",
                     (unsigned long long)p->id, (unsigned long long)p->delivery_seq, p->out.count);
            if (p->id == n->local_id && !n->in_local_request)
                local_wake(n); /* as a full outbox's drop: the broker looks, and sees the gap */
        }
        else if (nng_msg_alloc(&msg, h + p->out.buf.size) == 0) {
            memcpy(nng_msg_body(msg), hdr, h);
            if (p->out.buf.size > 0)
                memcpy((uint8_t *)nng_msg_body(msg) + h, p->out.buf.data, p->out.buf.size);
            if (p->id == n->local_id)
                to_outbox(n, msg);
            else if (nng_sendmsg(n->pub, msg, 0) != 0)
                nng_msg_free(msg);
        }
        op_batch_reset(&p->out);
        p->dirty = false;
    }
    n->dirty = NULL;
}

static void answer_map(node *n, op_batch *reply)
{
    op m = {.kind = OP_MAP, .epoch = n->map.epoch, .has_data = true,
            .data = {n->map_json, (uint32_t)strlen(n->map_json)}};
    op_batch_add(reply, &m);
}

static void apply(node_req *req, const op *o)
{
    node *n = req->n;
    switch (o->kind) {
    case OP_MAP_QUERY:
        answer_map(n, req->reply);
        break;
    case OP_HELLO: {
        if (o->epoch != n->map.epoch || (o->corr != 0 && o->corr != n->map_digest)) {
            log_error("epoch-mismatch", "peer=%016llx peer_epoch=%llu node_epoch=%llu same_assignment=%s "
                      "(refusing it: every process of a cluster must run the same shard map)",
                      (unsigned long long)req->from->id, (unsigned long long)o->epoch,
                      (unsigned long long)n->map.epoch,
                      o->corr == 0 || o->corr == n->map_digest ? "yes" : "no");
            op e = {.kind = OP_ERROR, .error = OP_ERR_WRONG_EPOCH, .epoch = n->map.epoch};
            op_batch_add(req->reply, &e);
            break;
        }
        /* Published back so the broker knows its delivery pipe is up. */
        op hello = {.kind = OP_HELLO, .epoch = n->map.epoch};
        msgpack_sbuffer tmp;
        msgpack_sbuffer_init(&tmp);
        op_encode(&tmp, &hello);
        node_deliver_encoded(n, req->from, tmp.data, tmp.size);
        msgpack_sbuffer_destroy(&tmp);
        op_batch_add(req->reply, &hello);
        break;
    }
    case OP_BYE:
        req->from->leaving = true; /* dropped after this batch (handle_batch) */
        break;
    case OP_HEARTBEAT: {
        /* answered with how many operations were published to the peer so far:
         * a peer that has received fewer, and receives nothing more, lost the tail */
        op hb = {.kind = OP_HEARTBEAT, .has_version = true, .version = (int64_t)req->from->delivery_seq};
        op_batch_add(req->reply, &hb);
        break;
    }
    case OP_EVENT_INTEREST:
        if (node_owns(req, o))
            events_interest(n->events, req->from, o->name);
        break;
    case OP_EVENT_UNINTEREST:
        if (node_owns(req, o))
            events_uninterest(n->events, req->from, o->name);
        break;
    case OP_EVENT_EMIT:
        if (node_owns(req, o))
            events_emit(n->events, req, o);
        break;
    case OP_RECORD_SUBSCRIBE:
    case OP_RECORD_UNINTEREST:
    case OP_RECORD_READ:
    case OP_RECORD_WRITE:
    case OP_RECORD_DELETE:
    case OP_RECORD_NOTIFY:
        if (node_owns(req, o))
            records_apply(n->records, req, o);
        break;
    case OP_RPC_PROVIDE:
    case OP_RPC_UNPROVIDE:
    case OP_RPC_REQUEST:
    case OP_RPC_ANSWER:
        if (node_owns(req, o))
            rpc_apply(n->rpc, req, o);
        break;
    case OP_LISTEN:
    case OP_UNLISTEN:
        listen_apply(n->listen, req, o); /* every node keeps every pattern */
        break;
    case OP_LISTEN_ANSWER:
        if (node_owns_name(req, o, o->ref))
            listen_apply(n->listen, req, o);
        break;
    case OP_PRESENCE_JOIN:
    case OP_PRESENCE_LEAVE:
    case OP_PRESENCE_INTEREST:
    case OP_PRESENCE_UNINTEREST:
    case OP_PRESENCE_QUERY:
        /* "everyone" operations go to every node; the rest to the user's owner */
        if ((o->flags & OP_FLAG_ALL) || node_owns(req, o))
            presence_apply(n->presence, req, o);
        break;
    default: {
        op e = {.kind = OP_ERROR, .error = OP_ERR_UNKNOWN_KIND, .corr = o->corr};
        op_batch_add(req->reply, &e);
        log_warn("unknown-operation", "peer=%016llx kind=%u", (unsigned long long)req->from->id,
                 o->kind);
    }
    }
}

/* Forgets p and everything it registered (its providers' calls move on). */
static void drop_peer(node *n, peer *p, const char *event, int64_t silent_ms)
{
    size_t names = events_drop_peer(n->events, p);
    records_drop_peer(n->records, p);
    rpc_drop_peer(n->rpc, p);
    presence_drop_peer(n->presence, p);
    listen_drop_peer(n->listen, p);
    if (silent_ms >= 0)
        log_warn(event, "peer=%016llx silent_ms=%lld event_names_dropped=%zu", (unsigned long long)p->id,
                 (long long)silent_ms, names);
    else
        log_info(event, "peer=%016llx event_names_dropped=%zu", (unsigned long long)p->id, names);
    dict_del(n->peers, &p->id, sizeof(p->id));
    peer_free(p);
}

/* Handles one request batch (lock held); returns the reply message (owned by
 * the caller). */
static nng_msg *handle_batch(node *n, const void *body, size_t len, op_batch *reply)
{
    mp_reader r;
    uint64_t origin, seq;
    uint32_t count;
    op_batch_reset(reply);
    if (op_batch_open(&r, body, len, &origin, &seq, &count) != 0 || origin == 0) {
        n->malformed++;
        log_warn("malformed-batch", "bytes=%zu total=%llu", len, (unsigned long long)n->malformed);
        op e = {.kind = OP_ERROR, .error = OP_ERR_MALFORMED};
        op_batch_add(reply, &e);
        origin = seq = 0;
    } else {
        bool known = dict_get(n->peers, &origin, sizeof(origin)) != NULL;
        mp_reader first = r;
        op o0;
        uint32_t first_kind = !known && count > 0 && op_decode(&first, &o0) == 0 ? o0.kind : 0;
        if (first_kind == OP_MAP_QUERY) {
            answer_map(n, reply); /* a stateless question: the asker does not become a peer */
            count = 0;
        } else if (first_kind != 0 && first_kind != OP_HELLO) {
            /* A peer this node dropped (silent too long) or has never seen (the node
             * restarted): apply nothing; the peer says HELLO, re-registers, resends. */
            log_warn("peer-unknown", "peer=%016llx seq=%llu (refused until it says HELLO again)",
                     (unsigned long long)origin, (unsigned long long)seq);
            op e = {.kind = OP_ERROR, .error = OP_ERR_UNKNOWN_PEER};
            op_batch_add(reply, &e);
            count = 0;
        }
        node_req req = {.n = n, .from = count > 0 ? peer_get(n, origin) : NULL, .reply = reply};
        if (req.from != NULL)
            req.from->last_seen_ms = now_ms();
        for (uint32_t i = 0; i < count; i++) {
            op o;
            if (op_decode(&r, &o) != 0) {
                n->malformed++;
                log_warn("malformed-operation", "peer=%016llx index=%u", (unsigned long long)origin,
                         i);
                op e = {.kind = OP_ERROR, .error = OP_ERR_MALFORMED};
                op_batch_add(reply, &e);
                break; /* the rest of the batch cannot be located reliably */
            }
            apply(&req, &o);
        }
        publish_dirty(n);
        if (req.from != NULL && req.from->leaving)
            drop_peer(n, req.from, "peer-left", -1); /* after its last deliveries went out */
    }
    uint8_t hdr[OP_BATCH_HEADER_MAX];
    size_t h = op_batch_header(hdr, n->self + 1, seq, reply->count);
    nng_msg *out;
    if (nng_msg_alloc(&out, h + reply->buf.size) != 0)
        return NULL;
    memcpy(nng_msg_body(out), hdr, h);
    if (reply->buf.size > 0) /* an empty sbuffer has no data pointer */
        memcpy((uint8_t *)nng_msg_body(out) + h, reply->buf.data, reply->buf.size);
    return out;
}

struct sweep_ctx {
    node *n;
    int64_t now;
    peer *expired[64];
    int count;
};

static int find_expired(const void *k, size_t l, void *v, void *arg)
{
    struct sweep_ctx *c = arg;
    peer *p = v;
    if (p->id != c->n->local_id && c->now - p->last_seen_ms > c->n->cfg->broker_timeout_ms)
        c->expired[c->count++] = p;
    return c->count == 64;
}

/* Drops peers that have been silent longer than the broker timeout. */
static void sweep_peers(node *n)
{
    struct sweep_ctx c = {.n = n, .now = now_ms()};
    dict_foreach(n->peers, find_expired, &c);
    for (int i = 0; i < c.count; i++)
        drop_peer(n, c.expired[i], "peer-expired", c.now - c.expired[i]->last_seen_ms);
}

/* Hands every waiting storage completion to the record engine. */
static void drain_persist(node *n)
{
    persist_done *d;
    while ((d = persist_poll(n->persist)) != NULL) {
        records_on_persist(n->records, d);
        persist_done_free(d);
    }
}

static void *executor(void *arg)
{
    node *n = arg;
    op_batch reply;
    op_batch_init(&reply);
    int rfd = -1;
    nng_socket_get_int(n->rep, NNG_OPT_RECVFD, &rfd);
    struct pollfd fds[2] = {{.fd = rfd, .events = POLLIN}, {.fd = persist_fd(n->persist), .events = POLLIN}};
    while (!atomic_load(&n->stop)) {
        poll(fds, 2, 100);
        pthread_mutex_lock(&n->lock);
        drain_persist(n);
        nng_msg *msg;
        int rv;
        while ((rv = nng_recvmsg(n->rep, &msg, NNG_FLAG_NONBLOCK)) == 0) {
            nng_msg *out = handle_batch(n, nng_msg_body(msg), nng_msg_len(msg), &reply);
            nng_msg_free(msg);
            if (out != NULL && nng_sendmsg(n->rep, out, 0) != 0)
                nng_msg_free(out);
            drain_persist(n);
        }
        if (rv != NNG_EAGAIN && rv != NNG_ETIMEDOUT && rv != NNG_ECLOSED)
            log_warn("node-recv-failed", "error=%s", nng_strerror(rv));
        rpc_timers(n->rpc);
        listen_timers(n->listen);
        publish_dirty(n);
        if (now_ms() - n->last_sweep_ms >= 500) {
            n->last_sweep_ms = now_ms();
            sweep_peers(n);
            records_sweep(n->records);
        }
        pthread_mutex_unlock(&n->lock);
        if (rv == NNG_ECLOSED)
            break;
    }
    op_batch_destroy(&reply);
    return NULL;
}

void node_attach_local(node *n, uint64_t peer_id, void (*wake)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&n->lock);
    n->local_id = peer_id;
    pthread_mutex_lock(&n->wake_lock);
    n->wake = wake;
    n->wake_ctx = ctx;
    pthread_mutex_unlock(&n->wake_lock);
    /* storage completions go straight to the local peer's thread, which
     * applies them in node_local_take (one thread hop less per write) */
    persist_set_notify(n->persist, persist_notify, n);
    pthread_mutex_unlock(&n->lock);
}

void node_detach_local(node *n)
{
    pthread_mutex_lock(&n->wake_lock); /* waits out a wake in progress */
    n->wake = NULL;
    pthread_mutex_unlock(&n->wake_lock);
}

nng_msg *node_local_request(node *n, const void *body, size_t len)
{
    pthread_mutex_lock(&n->lock);
    n->in_local_request = true;
    drain_persist(n); /* completions waiting for the executor go out with this batch's deliveries */
    nng_msg *out = handle_batch(n, body, len, &n->local_reply);
    n->in_local_request = false;
    pthread_mutex_unlock(&n->lock);
    return out;
}

nng_msg *node_local_take(node *n, uint64_t *published)
{
    pthread_mutex_lock(&n->lock); /* the outbox and the count move together */
    nng_msg *msg = queue_pop(n->outbox, 0);
    if (msg == NULL) { /* what storage completions release (writes become visible once durable) */
        n->in_local_request = true;
        drain_persist(n);
        publish_dirty(n);
        n->in_local_request = false;
        msg = queue_pop(n->outbox, 0);
    }
    if (msg == NULL) {
        peer *p = dict_get(n->peers, &n->local_id, sizeof(n->local_id));
        *published = p != NULL ? p->delivery_seq : 0;
    }
    pthread_mutex_unlock(&n->lock);
    return msg;
}

/* Listens on one request/delivery pair; writes the bound addresses. */
static int listen_pair(node *n, const char *request_url, const char *delivery_url, char *req_out,
                       char *del_out, size_t out_len)
{
    nng_listener lr, ld;
    int rv;
    const char *step = request_url;
    if ((rv = nng_listen(n->rep, request_url, &lr, 0)) != 0)
        goto fail;
    step = delivery_url;
    if ((rv = nng_listen(n->pub, delivery_url, &ld, 0)) != 0)
        goto fail;
    nng_bound_url(lr, request_url, req_out, out_len);
    nng_bound_url(ld, delivery_url, del_out, out_len);
    return 0;
fail:
    log_error("node-listen-failed", "at=%s error=%s", step, nng_strerror(rv));
    return -1;
}

static int open_sockets(node *n, const char *request_url, const char *delivery_url,
                        const char *backend_request, const char *backend_delivery)
{
    int rv;
    const char *step = "rep0_open";
    if ((rv = nng_rep0_open(&n->rep)) != 0)
        goto fail;
    step = "pub0_open";
    if ((rv = nng_pub0_open(&n->pub)) != 0)
        goto fail;
    nng_socket_set_ms(n->rep, NNG_OPT_RECVTIMEO, 100);
    /* A batch holds many operations, each at most one client frame. */
    nng_socket_set_size(n->rep, NNG_OPT_RECVMAXSZ, (size_t)n->cfg->max_message_size * 2 + (8u << 20));
    nng_socket_set_int(n->pub, NNG_OPT_SENDBUF, 8192);
    if (listen_pair(n, request_url, delivery_url, n->request_url, n->delivery_url, sizeof(n->request_url)) != 0)
        return -1;
    if (backend_request != NULL &&
        listen_pair(n, backend_request, backend_delivery, n->backend_request_url, n->backend_delivery_url,
                    sizeof(n->backend_request_url)) != 0)
        return -1;
    return 0;
fail:
    log_error("node-listen-failed", "at=%s error=%s", step, nng_strerror(rv));
    return -1;
}

static void free_msg(void *msg)
{
    nng_msg_free(msg);
}

node *node_start(const eddy_config *cfg, const char *request_url, const char *delivery_url,
                 const char *backend_request, const char *backend_delivery, const shardmap *map,
                 unsigned self_index)
{
    node *n = xcalloc(1, sizeof(*n));
    n->cfg = cfg;
    n->map = *map;
    n->map_digest = shardmap_digest(map);
    n->self = self_index;
    n->peers = dict_new();
    n->events = events_new(n);
    n->last_sweep_ms = now_ms();
    pthread_mutex_init(&n->lock, NULL);
    pthread_mutex_init(&n->wake_lock, NULL);
    n->outbox = queue_new(LOCAL_OUTBOX_LEN);
    op_batch_init(&n->local_reply);
    const char *fault = getenv("EDDY_FAULT_DROP_BROADCASTS");
    if (fault != NULL && atoi(fault) > 0) {
        n->fault_drop_every = (unsigned)atoi(fault);
        log_warn("fault-injection", "EDDY_FAULT_DROP_BROADCASTS=%u: every %uth broadcast-only delivery "
                 "batch is dropped (tests only)", n->fault_drop_every, n->fault_drop_every);
    }
    if (mkdir(cfg->data_dir, 0750) != 0 && errno != EEXIST) {
        log_error("data-folder-failed", "path=%s error=%s", cfg->data_dir, strerror(errno));
        goto fail;
    }
    char err[512];
    n->persist = persist_start(cfg->data_dir, (enum sync_mode)cfg->sync_mode, 65536, err, sizeof(err));
    if (n->persist == NULL) {
        log_error("storage-open-failed", "path=%s error=%s", cfg->data_dir, err);
        goto fail;
    }
    n->records = records_new(n, n->persist, (size_t)cfg->cache_bytes, (size_t)cfg->record_max_size);
    n->rpc = rpc_new(n, cfg);
    n->presence = presence_new(n);
    n->listen = listen_new(n, cfg);
    if (open_sockets(n, request_url, delivery_url, backend_request, backend_delivery) != 0)
        goto fail;
    /* the map names the addresses others can reach: the backend pair when there is one */
    bool backend = n->backend_request_url[0] != '\0';
    n->map_json = clustermap_json(cfg, map, cfg->node_id, backend ? n->backend_request_url : n->request_url,
                                  backend ? n->backend_delivery_url : n->delivery_url);
    if (pthread_create(&n->thread, NULL, executor, n) != 0)
        goto fail;
    log_info("node-listening", "request=%s delivery=%s id=%s epoch=%llu", n->request_url,
             n->delivery_url, cfg->node_id, (unsigned long long)map->epoch);
    if (backend)
        log_info("backends-listening", "request=%s delivery=%s (eddy ctl --cluster %s)",
                 n->backend_request_url, n->backend_delivery_url, n->backend_request_url);
    return n;
fail:
    nng_close(n->rep); /* nothing in flight yet: cannot hang */
    nng_close(n->pub);
    records_free(n->records);
    rpc_free(n->rpc);
    presence_free(n->presence);
    listen_free(n->listen);
    persist_stop(n->persist);
    events_free(n->events);
    dict_free(n->peers);
    queue_free(n->outbox, free_msg);
    op_batch_destroy(&n->local_reply);
    pthread_mutex_destroy(&n->lock);
    pthread_mutex_destroy(&n->wake_lock);
    xfree(n->map_json);
    xfree(n);
    return NULL;
}

const char *node_request_url(const node *n)
{
    return n->request_url;
}

const char *node_delivery_url(const node *n)
{
    return n->delivery_url;
}

static int free_peer_cb(const void *k, size_t l, void *v, void *arg)
{
    peer_free(v);
    return 0;
}

void node_stop(node *n)
{
    if (n == NULL)
        return;
    atomic_store(&n->stop, true);
    pthread_join(n->thread, NULL); /* the executor wakes within its 100 ms receive timeout */
    persist_stop(n->persist); /* every queued write reaches the store */
    nng_close_bounded(n->rep, "node-rep", 2000);
    nng_close_bounded(n->pub, "node-pub", 2000);
    records_free(n->records);
    rpc_free(n->rpc);
    presence_free(n->presence);
    listen_free(n->listen);
    dict_foreach(n->peers, free_peer_cb, NULL);
    dict_free(n->peers);
    events_free(n->events);
    queue_free(n->outbox, free_msg);
    op_batch_destroy(&n->local_reply);
    pthread_mutex_destroy(&n->lock);
    pthread_mutex_destroy(&n->wake_lock);
    log_info("node-stopped", "id=%s", n->cfg->node_id);
    xfree(n->map_json);
    xfree(n);
}
