/* client.c - the backend library's core: connecting (the map from any node,
 * one common/nodelink.c link per node), the link handler that settles pending
 * calls and queues callbacks, the callback thread, status and closing. The
 * features (events, records, RPC, listening) are in api.c. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <nng/nng.h>

#include "clustermap.h"
#include "internal.h"
#include "linktls.h"
#include "log.h"
#include "mem.h"
#include "util.h"

#define DEFAULT_TIMEOUT_MS 5000
#define STATS_TIMEOUT_MS 1000 /* eddy_cluster_status: per node, for its counters */

const char *eddy_strerror(eddy_status s)
{
    switch (s) {
    case EDDY_OK: return "ok";
    case EDDY_ERR_INVALID: return "invalid argument";
    case EDDY_ERR_TIMEOUT: return "timed out";
    case EDDY_ERR_UNAVAILABLE: return "the node owning the name is unavailable";
    case EDDY_ERR_CLOSED: return "the client is closing";
    case EDDY_ERR_NOT_FOUND: return "record not found";
    case EDDY_ERR_VERSION: return "version conflict";
    case EDDY_ERR_REFUSED: return "write refused by the node";
    case EDDY_ERR_NO_PROVIDER: return "no RPC provider took the call";
    case EDDY_ERR_RPC: return "the RPC provider answered with an error";
    case EDDY_ERR_MAP: return "the cluster map could not be learned";
    case EDDY_ERR_EXISTS: return "already registered under this name";
    case EDDY_ERR_NOT_REGISTERED: return "not registered under this name";
    case EDDY_ERR_CREDENTIALS: return "the TLS certificate, key or CA could not be used";
    case EDDY_ERR_REJECTED: return "a validator refused the write";
    case EDDY_ERR_CROSS_SHARD: return "the changeset's records are in different shards";
    case EDDY_ERR_NO_HISTORY: return "the name keeps no event history (events.history)";
    }
    return "unknown status";
}

void eddy_free(void *p)
{
    xfree(p);
}

char *client_strndup(strview v)
{
    return xstrndup(v.ptr ? v.ptr : "", v.len);
}

uint64_t client_call_corr(strview ref)
{
    char text[32];
    if (ref.len == 0 || ref.len >= sizeof(text))
        return 0;
    memcpy(text, ref.ptr, ref.len);
    text[ref.len] = '\0';
    return strtoull(text, NULL, 10);
}

int64_t client_deadline(const eddy *e)
{
    return now_ms() + e->timeout_ms;
}

/* ---------------- pending calls ---------------- */

pending *client_pending_new(eddy *e, int li)
{
    pending *p = xcalloc(1, sizeof(*p));
    p->corr = ++e->next_corr;
    p->link = li;
    dict_put(e->pending, &p->corr, sizeof(p->corr), p);
    return p;
}

static void timed_wait(eddy *e, int64_t deadline)
{
    int64_t left = deadline - now_ms();
    if (left > 100)
        left = 100; /* wake up now and then to see closing */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)left * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&e->changed, &e->lock, &ts);
}

eddy_status client_pending_wait(eddy *e, pending *p, int64_t deadline)
{
    while (!p->done && now_ms() < deadline && !atomic_load(&e->closing))
        timed_wait(e, deadline);
    dict_del(e->pending, &p->corr, sizeof(p->corr));
    if (p->done)
        return p->status;
    return atomic_load(&e->closing) ? EDDY_ERR_CLOSED : EDDY_ERR_TIMEOUT;
}

void client_pending_free(void *v)
{
    pending *p = v;
    if (p == NULL)
        return;
    xfree(p->data);
    xfree(p);
}

void client_settle(eddy *e, uint64_t corr, eddy_status status, int64_t version, char *data)
{
    pending *p = dict_get(e->pending, &corr, sizeof(corr));
    if (p == NULL || p->done) {
        xfree(data); /* nobody waits (any more) */
        return;
    }
    p->done = true;
    p->status = status;
    p->version = version;
    p->data = data;
    pthread_cond_broadcast(&e->changed);
}

struct fail_ctx {
    eddy *e;
    int li;
};

static int fail_link_pending(const void *k, size_t l, void *v, void *arg)
{
    struct fail_ctx *c = arg;
    pending *p = v;
    if (p->link == c->li && !p->done) {
        p->done = true;
        p->status = EDDY_ERR_UNAVAILABLE;
    }
    return 0;
}

eddy_status client_wait_batch(eddy *e, int li, uint64_t seq, int64_t deadline)
{
    unsigned gen = e->gen;
    while (gen == e->gen && e->links[li].answered_seq < seq && now_ms() < deadline &&
           !atomic_load(&e->closing))
        timed_wait(e, deadline);
    if (gen != e->gen)
        return EDDY_ERR_UNAVAILABLE; /* the links were replaced (a new map) meanwhile */
    if (e->links[li].answered_seq >= seq)
        return EDDY_OK;
    return atomic_load(&e->closing) ? EDDY_ERR_CLOSED : EDDY_ERR_TIMEOUT;
}

/* ---------------- routing ---------------- */

int client_submit_to(eddy *e, int li, op *o, uint64_t *seq)
{
    pthread_rwlock_rdlock(&e->links_lock);
    o->epoch = shardmap_shard_epoch(&e->map, o->shard); /* the node checks it (fencing) */
    o->session = CLIENT_SESSION;
    *seq = li < e->nlinks ? nodelink_submit(e->links[li].link, o) : 0;
    pthread_rwlock_unlock(&e->links_lock);
    return *seq == 0 ? -1 : li;
}

int client_submit(eddy *e, op *o, strview route, uint64_t *seq)
{
    o->shard = shard_of(route.ptr, route.len);
    pthread_rwlock_rdlock(&e->links_lock);
    int li = (int)shardmap_owner(&e->map, o->shard);
    pthread_rwlock_unlock(&e->links_lock); /* (a map change between the two fails the submit at worst) */
    return client_submit_to(e, li, o, seq);
}

/* ---------------- the link handler (nng's threads, the links' control threads) ---------------- */

struct reply_ctx {
    eddy *e;
    int li;
};

#define CLIENT_NOT_SERVING_RETRY_MS 250 /* registrations refused by a primary without a lease: again this often */

/* One operation of a node's reply (op_batch_each). */
static int on_answer(void *arg, const op *o)
{
    eddy *e = ((struct reply_ctx *)arg)->e;
    int li = ((struct reply_ctx *)arg)->li;
    client_link *cl = &e->links[li];
    if (o->kind == OP_ERROR && o->error == OP_ERR_WRONG_EPOCH) {
        if (!cl->refused)
            log_warn("epoch-mismatch", "node=%s node_epoch=%llu our_epoch=%llu (the cluster "
                     "runs another map: learning it)", e->cluster.nodes[li].id,
                     (unsigned long long)o->epoch, (unsigned long long)e->map.epoch);
        cl->refused = true;
        atomic_store(&e->map_stale, true);
    } else if (o->kind == OP_ERROR && o->error == OP_ERR_WRONG_SHARD) {
        /* a redirect: the node's map is newer; this call fails, the next
         * ones go where the new map says */
        log_warn("wrong-shard", "node=%s name=%.*s node_epoch=%llu", e->cluster.nodes[li].id,
                 (int)o->name.len, o->name.ptr, (unsigned long long)o->epoch);
        client_settle(e, o->corr, EDDY_ERR_UNAVAILABLE, -1, NULL);
        atomic_store(&e->map_stale, true);
        uint32_t shard = o->shard & (SHARD_COUNT - 1);
        if (o->epoch == shardmap_shard_epoch(&e->map, shard) && shardmap_owner(&e->map, shard) == (unsigned)li &&
            cl->retry_ms == 0) /* the primary by our map, not serving yet: what it refused is registered again */
            cl->retry_ms = now_ms() + CLIENT_NOT_SERVING_RETRY_MS;
    } else if (o->kind == OP_HEARTBEAT && o->has_version && o->version >= 0) {
        uint64_t lost = stream_heartbeat(&cl->stream, (uint64_t)o->version);
        if (lost > 0) {
            log_error("delivery-gap", "node=%s at=tail lost_ops=%" PRIu64, e->cluster.nodes[li].id, lost);
            client_resync(e, li); /* re-reads the records it watches there */
        } else if (cl->retry_ms != 0 && now_ms() >= cl->retry_ms) {
            cl->retry_ms = 0;
            client_resync(e, li); /* refused again while it still does not serve: due again */
        }
    }
    return 0;
}

static void on_reply(eddy *e, int li, uint64_t seq, nng_msg *msg)
{
    client_link *cl = &e->links[li];
    struct reply_ctx c = {e, li};
    (void)op_batch_each(nng_msg_body(msg), nng_msg_len(msg), on_answer, &c);
    if (seq > cl->answered_seq)
        cl->answered_seq = seq;
    pthread_cond_broadcast(&e->changed);
}

/* A node's map changed (cluster.raft): a newer version is fetched and
 * adopted by the callback thread (follow_map). Link thread. */
static void map_pushed(eddy *e, const op *o)
{
    pthread_rwlock_rdlock(&e->links_lock);
    bool newer = o->corr > e->map.version;
    pthread_rwlock_unlock(&e->links_lock);
    if (newer)
        atomic_store(&e->map_stale, true); /* fetched within a second */
}

static void on_delivery(eddy *e, int li, nng_msg *msg)
{
    client_link *cl = &e->links[li];
    size_t len = nng_msg_len(msg);
    const uint8_t *body = nng_msg_body(msg);
    mp_reader r;
    uint64_t origin, seq, lost;
    uint32_t count;
    if (len < 8 || get_be64(body) != e->peer_id ||
        op_batch_open(&r, body + 8, len - 8, &origin, &seq, &count) != 0)
        return;
    int verdict = stream_accept(&cl->stream, seq, count, batch_starts_with_hello(&r, count), &lost);
    if (verdict == STREAM_BAD)
        return;
    if (verdict == STREAM_GAP) {
        log_error("delivery-gap", "node=%s at=gap lost_ops=%" PRIu64, e->cluster.nodes[li].id, lost);
        client_resync(e, li);
    }
    for (uint32_t i = 0; i < count; i++) {
        op o;
        int rc = op_decode(&r, &o);
        if (rc == -1)
            break;
        if (rc == 0 && o.kind == OP_MAP)
            map_pushed(e, &o);
        else if (rc == 0)
            client_on_delivery(e, li, &o);
    }
}

/* A batch the node will not answer: its blocking calls fail at once. */
static void on_failed(eddy *e, int li, uint64_t seq, op_batch *batch)
{
    mp_reader r;
    mp_reader_init(&r, batch->buf.data, batch->buf.size);
    for (uint32_t i = 0; i < batch->count; i++) {
        op o;
        int rc = op_decode(&r, &o);
        if (rc == -1)
            break;
        if (rc != 0)
            continue;
        /* an RPC's corr travels as its correlation id text */
        uint64_t corr = o.kind == OP_RPC_REQUEST ? client_call_corr(o.ref) : o.corr;
        client_settle(e, corr, EDDY_ERR_UNAVAILABLE, -1, NULL);
    }
    op_batch_destroy(batch);
    xfree(batch);
    if (seq > e->links[li].answered_seq)
        e->links[li].answered_seq = seq;
    pthread_cond_broadcast(&e->changed);
}

static int link_event(void *ctx, int event, int index, uint64_t seq, void *item)
{
    link_ctx *lc = ctx;
    eddy *e = lc->e;
    int li = lc->li;
    pthread_mutex_lock(&e->lock);
    if (lc->gen != e->gen) { /* a link of a replaced map, closing: nothing it says matters */
        pthread_mutex_unlock(&e->lock);
        if (event == NODELINK_REPLY || event == NODELINK_DELIVERY)
            nng_msg_free(item);
        else if (event == NODELINK_FAILED) {
            op_batch_destroy(item);
            xfree(item);
        }
        return 0;
    }
    switch (event) {
    case NODELINK_REPLY:
        on_reply(e, li, seq, item);
        nng_msg_free(item);
        break;
    case NODELINK_DELIVERY:
        on_delivery(e, li, item);
        nng_msg_free(item);
        break;
    case NODELINK_RESYNC:
        log_warn("node-back", "node=%s (registering again)", e->cluster.nodes[li].id);
        client_resync(e, li);
        break;
    case NODELINK_FAILED:
        on_failed(e, li, seq, item);
        break;
    case NODELINK_DOWN: {
        struct fail_ctx c = {e, li};
        dict_foreach(e->pending, fail_link_pending, &c);
        stream_forget_mark(&e->links[li].stream);
        pthread_cond_broadcast(&e->changed);
        break;
    }
    }
    pthread_mutex_unlock(&e->lock);
    return 0;
}

/* ---------------- the callback thread ---------------- */

bool client_queue_callback(eddy *e, callback *cb)
{
    /* events are dropped (and counted) when the application falls far behind;
     * everything else waits for room: it carries state or a call to answer
     * (a stream event that still finds none is asked for again: api.c) */
    if (queue_push(e->callbacks, cb, cb->kind == CB_EVENT ? 0 : 1000) == 0)
        return true;
    unsigned long long n = atomic_fetch_add(&e->dropped_callbacks, 1) + 1;
    if (n % 1000 == 1)
        log_warn("callback-queue-full", "dropped=%llu kind=%d (the callbacks are too slow)", n, cb->kind);
    client_callback_free(cb);
    return false;
}

static void follow_map(eddy *e);

static void *callback_thread(void *arg)
{
    eddy *e = arg;
    for (;;) {
        callback *cb = queue_pop(e->callbacks, 100);
        if (cb != NULL) {
            client_run_callback(e, cb);
            continue;
        }
        if (atomic_load(&e->closing))
            break;
        if (atomic_load(&e->map_stale) && now_ms() - e->last_map_try >= 1000) {
            e->last_map_try = now_ms();
            follow_map(e);
        }
    }
    return NULL;
}

/* Opens one link per node of e->cluster, for generation e->gen (during
 * connect, or with e->lock and links_lock held). Returns 0, or -1 (logged). */
static int open_links(eddy *e)
{
    for (int i = 0; i < e->cluster.count; i++) {
        const cluster_node *n = &e->cluster.nodes[i];
        client_link *cl = &e->links[i];
        memset(cl, 0, sizeof(*cl));
        cl->ctx = xcalloc(1, sizeof(*cl->ctx));
        *cl->ctx = (link_ctx){e, i, e->gen};
        nodelink_config c = {.index = i, .id = n->id, .request_url = n->request,
                             .delivery_url = n->delivery, .peer_id = e->peer_id, .epoch = e->map.epoch,
                             .map_digest = clustermap_hello_digest(&e->cluster, &e->map), .tls = e->tls,
                             .role = LINK_ROLE_BACKEND,
                             .handler = link_event, .ctx = cl->ctx};
        if ((cl->link = nodelink_open(&c)) == NULL) {
            xfree(cl->ctx);
            cl->ctx = NULL;
            return -1;
        }
        e->nlinks++;
    }
    return 0;
}

static void close_links(client_link *links, int n)
{
    for (int i = 0; i < n; i++)
        if (links[i].link != NULL) {
            /* the node forgets us now rather than after cluster.brokerTimeout */
            op bye = {.kind = OP_BYE, .session = CLIENT_SESSION};
            if (nodelink_delivering(links[i].link))
                nodelink_submit(links[i].link, &bye);
            nodelink_stop(links[i].link);
        }
    for (int i = 0; i < n; i++) {
        nodelink_close(links[i].link); /* no handler call after this */
        xfree(links[i].ctx);
    }
}

static int settle_unavailable(const void *k, size_t l, void *v, void *arg)
{
    pending *p = v;
    if (!p->done) {
        p->done = true;
        p->status = EDDY_ERR_UNAVAILABLE;
    }
    return 0;
}

/* Whether a and b list the same nodes at the same addresses. */
static bool same_nodes(const clustermap *a, const clustermap *b)
{
    if (a->count != b->count)
        return false;
    for (int i = 0; i < a->count; i++)
        if (strcmp(a->nodes[i].id, b->nodes[i].id) != 0 || strcmp(a->nodes[i].request, b->nodes[i].request) != 0 ||
            strcmp(a->nodes[i].delivery, b->nodes[i].delivery) != 0)
            return false;
    return true;
}

/* A newer map of the same cluster (the metadata group moved primaries,
 * cluster.raft): routed by from now on, over the same links (HELLO carries
 * the configuration's epoch and digest: nothing to reconnect); each node that
 * gained shards is sent again what we registered for its names (idempotent at
 * the node). Takes fresh's strings (callback thread). */
static void adopt_in_place(eddy *e, clustermap *fresh, const shardmap *map)
{
    uint8_t moved[SHARD_COUNT / 8];
    pthread_mutex_lock(&e->lock);
    pthread_rwlock_wrlock(&e->links_lock);
    unsigned count = shardmap_moved(&e->map, map, moved);
    uint64_t from = e->map.version;
    bool gained[CLUSTER_MAX_NODES] = {false};
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        if (shardmap_bit(moved, s) && map->owner[s] < CLUSTER_MAX_NODES)
            gained[map->owner[s]] = true;
    fresh->hello_digest = clustermap_hello_digest(&e->cluster, &e->map); /* HELLO stays what it was */
    clustermap old_cluster = e->cluster;
    e->cluster = *fresh;
    *fresh = (clustermap){0};
    e->map = *map;
    pthread_rwlock_unlock(&e->links_lock);
    log_info("cluster-map-adopted", "version=%llu from_version=%llu moved_shards=%u (same links)",
             (unsigned long long)map->version, (unsigned long long)from, count);
    for (int i = 0; i < e->nlinks; i++)
        if (gained[i])
            client_resync(e, i);
    pthread_cond_broadcast(&e->changed);
    pthread_mutex_unlock(&e->lock);
    clustermap_clear(&old_cluster);
}

/* A node refused our map (the cluster restarted with another epoch) or
 * redirected a request: ask the nodes we know (then the address we were given)
 * for the map, and if it changed, replace every link, fail what waited on the
 * old ones and register everything again (callback thread). */
static void follow_map(eddy *e)
{
    atomic_store(&e->map_stale, false); /* a refusal under the new map sets it again */
    char *urls[CLUSTER_MAX_NODES + 1];
    int n = 0;
    pthread_mutex_lock(&e->lock);
    for (int i = 0; i < e->cluster.count; i++)
        urls[n++] = xstrdup(e->cluster.nodes[i].request);
    urls[n++] = xstrdup(e->seed);
    pthread_mutex_unlock(&e->lock);
    char *json = NULL;
    for (int i = 0; i < n; i++) {
        if (json == NULL && !atomic_load(&e->closing))
            json = clustermap_fetch(urls[i], e->tls, NULL, now_ms() + 1000);
        xfree(urls[i]);
    }
    clustermap fresh = {0};
    shardmap map;
    char err[256];
    if (json == NULL || clustermap_parse(&fresh, json, strlen(json), err, sizeof(err)) != 0 ||
        clustermap_shards(&fresh, &map, err, sizeof(err)) != 0) {
        if (json != NULL)
            log_error("bad-cluster-map", "error=%s", err);
        xfree(json);
        clustermap_clear(&fresh);
        atomic_store(&e->map_stale, true); /* try again in a second */
        return;
    }
    xfree(json);
    if (map.epoch == e->map.epoch && map.version < e->map.version) {
        clustermap_clear(&fresh); /* a node behind the others: the map we have is newer */
        return;
    }
    if (map.epoch == e->map.epoch && map.version == e->map.version &&
        shardmap_digest(&map) == shardmap_digest(&e->map)) {
        clustermap_clear(&fresh); /* the same map: the refusal was about something else */
        return;
    }
    if (map.epoch == e->map.epoch && map.version > e->map.version && same_nodes(&e->cluster, &fresh)) {
        adopt_in_place(e, &fresh, &map);
        return;
    }
    log_warn("cluster-map-changed", "epoch=%llu->%llu nodes=%d->%d (reconnecting to every node)",
             (unsigned long long)e->map.epoch, (unsigned long long)map.epoch, e->cluster.count,
             fresh.count);
    client_link old[CLUSTER_MAX_NODES];
    pthread_mutex_lock(&e->lock);
    pthread_rwlock_wrlock(&e->links_lock);
    int nold = e->nlinks;
    memcpy(old, e->links, sizeof(old));
    clustermap old_cluster = e->cluster;
    e->cluster = fresh;
    e->map = map;
    e->gen++;
    e->nlinks = 0;
    if (open_links(e) != 0)
        atomic_store(&e->map_stale, true);
    pthread_rwlock_unlock(&e->links_lock);
    dict_foreach(e->pending, settle_unavailable, NULL);
    for (int i = 0; i < e->nlinks; i++)
        client_resync(e, i);
    pthread_cond_broadcast(&e->changed);
    pthread_mutex_unlock(&e->lock);
    close_links(old, nold); /* their handlers see an old generation and drop everything */
    clustermap_clear(&old_cluster);
}

/* ---------------- connecting and closing ---------------- */

static void free_client(eddy *e);

/* An option as given, else the environment variable's value (NULL: neither). */
static const char *option_or_env(const char *given, const char *var)
{
    return given != NULL ? given : getenv(var);
}

eddy_status eddy_connect(const char *node_url, const eddy_options *opts, eddy **out)
{
    if (node_url == NULL || out == NULL)
        return EDDY_ERR_INVALID;
    *out = NULL;
    const char *level = getenv("EDDY_LOG_LEVEL"); /* debug|info|warn|error for the library's lines */
    if (level != NULL && log_level_parse(level) >= 0)
        log_threshold = (enum log_level)log_level_parse(level);
    eddy *e = xcalloc(1, sizeof(*e));
    e->timeout_ms = opts != NULL && opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    e->user = opts != NULL && opts->user != NULL ? xstrdup(opts->user) : NULL;
    e->peer_id = random_id();
    e->seed = xstrdup(node_url);
    pthread_rwlock_init(&e->links_lock, NULL);
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->changed, NULL);
    e->pending = dict_new();
    e->events = dict_new();
    e->records = dict_new();
    e->provides = dict_new();
    e->listens = dict_new();
    e->validates = dict_new();
    e->callbacks = queue_new(EDDY_CALLBACK_QUEUE);
    char err[512];
    eddy_status st = EDDY_ERR_CREDENTIALS;
    e->tls = linktls_open(option_or_env(opts ? opts->tls_cert : NULL, "EDDY_CLUSTER_TLS_CERT"),
                          option_or_env(opts ? opts->tls_key : NULL, "EDDY_CLUSTER_TLS_KEY"),
                          option_or_env(opts ? opts->tls_ca : NULL, "EDDY_CLUSTER_TLS_CA"), LINK_ROLE_BACKEND, err,
                          sizeof(err));
    if (e->tls == NULL && err[0] != '\0') {
        log_error("link-credentials-refused", "%s", err);
        goto fail;
    }
    if (linktls_check_url(e->tls, node_url, err, sizeof(err)) != 0) {
        log_error("link-address-refused", "%s", err);
        st = EDDY_ERR_INVALID;
        goto fail;
    }
    st = EDDY_ERR_MAP;
    int64_t deadline = client_deadline(e);
    char *json = clustermap_fetch(node_url, e->tls, NULL, deadline);
    if (json == NULL) {
        log_warn("connect-failed", "node=%s (no map within %d ms)", node_url, e->timeout_ms);
        st = EDDY_ERR_TIMEOUT;
        goto fail;
    }
    int rc = clustermap_parse(&e->cluster, json, strlen(json), err, sizeof(err));
    xfree(json);
    if (rc != 0 || clustermap_shards(&e->cluster, &e->map, err, sizeof(err)) != 0) {
        log_error("bad-cluster-map", "node=%s error=%s", node_url, err);
        goto fail;
    }
    if (pthread_create(&e->cb_thread, NULL, callback_thread, e) != 0)
        goto fail;
    e->cb_started = true;
    if (open_links(e) != 0)
        goto fail;
    /* every node reachable, or the timeout */
    for (;;) {
        bool all = true, refused = false;
        pthread_mutex_lock(&e->lock);
        for (int i = 0; i < e->nlinks; i++) {
            all = all && nodelink_delivering(e->links[i].link);
            refused = refused || e->links[i].refused;
        }
        pthread_mutex_unlock(&e->lock);
        if (refused)
            goto fail; /* EDDY_ERR_MAP */
        if (all)
            break;
        if (now_ms() >= deadline) {
            st = EDDY_ERR_UNAVAILABLE;
            goto fail;
        }
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    *out = e;
    return EDDY_OK;
fail:
    free_client(e);
    return st;
}

static void free_client(eddy *e)
{
    atomic_store(&e->closing, true);
    if (e->cb_started)
        pthread_join(e->cb_thread, NULL); /* (it may be replacing the links: let it finish) */
    close_links(e->links, e->nlinks);
    queue_free(e->callbacks, client_callback_free);
    dict_free_with(e->pending, client_pending_free);
    dict *regs[] = {e->events, e->records, e->provides, e->listens, e->validates};
    for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
        dict_free_with(regs[i], client_registration_free);
    clustermap_clear(&e->cluster);
    linktls_close(e->tls); /* after the links: they borrow it */
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->changed);
    pthread_rwlock_destroy(&e->links_lock);
    xfree(e->seed);
    xfree(e->user);
    xfree(e);
}

void eddy_close(eddy *e)
{
    if (e == NULL)
        return;
    /* providers and listeners go first, so their calls and names move on at once */
    uint64_t seq[CLUSTER_MAX_NODES] = {0};
    pthread_mutex_lock(&e->lock);
    client_withdraw_all(e, seq);
    int64_t deadline = client_deadline(e);
    for (int i = 0; i < e->nlinks; i++)
        if (seq[i] > 0 && nodelink_delivering(e->links[i].link))
            client_wait_batch(e, i, seq[i], deadline);
    pthread_mutex_unlock(&e->lock);
    free_client(e);
}

eddy_status eddy_cluster_status(eddy *e, char **out)
{
    if (e == NULL || out == NULL)
        return EDDY_ERR_INVALID;
    json_t *nodes = json_array();
    uint64_t lost = 0;
    char *urls[CLUSTER_MAX_NODES];
    int count = 0;
    pthread_mutex_lock(&e->lock);
    for (int i = 0; i < e->nlinks; i++) {
        const cluster_node *n = &e->cluster.nodes[i];
        json_array_append_new(nodes, json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:b}", "id", n->id, "request",
                                               n->request, "delivery", n->delivery, "shards",
                                               n->shards ? n->shards : "", "connected",
                                               nodelink_connected(e->links[i].link), "delivering",
                                               nodelink_delivering(e->links[i].link), "refused",
                                               e->links[i].refused));
        urls[count++] = xstrdup(n->request);
        lost += e->links[i].stream.lost;
    }
    pthread_mutex_unlock(&e->lock);
    /* each node's own counters, asked outside the lock (null: it did not answer) */
    for (int i = 0; i < count; i++) {
        char *stats = clustermap_node_stats(urls[i], e->tls, STATS_TIMEOUT_MS);
        json_t *parsed = stats ? json_loads(stats, 0, NULL) : NULL;
        json_object_set_new(json_array_get(nodes, (size_t)i), "stats", parsed ? parsed : json_null());
        xfree(stats);
        xfree(urls[i]);
    }
    json_t *root = json_pack("{s:I, s:o, s:I, s:I}", "epoch", (json_int_t)e->map.epoch, "nodes", nodes,
                             "lostDeliveries", (json_int_t)lost, "droppedCallbacks",
                             (json_int_t)atomic_load(&e->dropped_callbacks));
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    *out = xstrdup(text ? text : "{}");
    free(text); /* jansson's malloc */
    return EDDY_OK;
}
