/* replicate.c - the primary side of replication: every record write this
 * node commits for a shard it owns goes to the shard's replicas, and what the
 * write causes (the writer's acknowledgement, the updates to subscribers, any
 * later answer about records) leaves records.c's outbox only once every
 * in-sync replica has it durable.
 *
 * Design (issue 18, item 2, with the static assignment; REPLICATION-STATUS.md):
 *   - Who: replicas_of(shard) (common/shardmap.h) names each shard's replicas
 *     from the static map and cluster.replicas. One link per replica node
 *     this node replicates to: a nodelink (common/nodelink.h) to that node's
 *     request and delivery addresses, as a peer of role node (HELLO with the
 *     map epoch and digest; over TLS this node's certificate, OU=eddy-node).
 *   - What: per link, the writes of one executor turn travel as one batch (an
 *     OP_REPL_BATCH: corr = its sequence number 1, 2, ... on this stream, orig
 *     = this node's index + 1, epoch = the map epoch; data = the records as
 *     whole states, common/replbatch.h, each with its shard and epoch). The
 *     nodelink puts every batch submitted while a request is out into the
 *     next nng message, so a busy stream sends few, large messages.
 *   - When a write is durable: each batch keeps the range of commit tickets
 *     it carries. A link's watermark is the ticket before the oldest batch
 *     not yet acknowledged (or before the batch being filled); the node's is
 *     the lowest over the in-sync links (replicate_durable), and records.c
 *     releases a ticket once both its local commit and this watermark cover
 *     it. The replica acknowledges cumulatively (OP_REPL_ACK: everything up to
 *     seq is durable), in its delivery stream when its commit is done and in
 *     every reply; a primary waiting more than REPL_QUERY_MS asks (REPL_ACK).
 *     Shipping happens at the end of the turn that made the write, before the
 *     local commit completes: one extra round trip, overlapping the fsync.
 *   - A replica that does not acknowledge: after cluster.replicaTimeout the
 *     oldest unacknowledged batch makes the link out of sync (logged
 *     replica-out-of-sync, counted, the primary's shards it holds are counted
 *     under-replicated): writes no longer wait for it. (In the final design
 *     the Raft shard map takes it out of the in-sync set first: issue 18.)
 *     Batches stay in the link's backlog until acknowledged, and are sent
 *     again (the first one marked START) after a failed request, a link that
 *     came back, or the replica's REPL_RESYNC. The link is in sync again once
 *     everything is acknowledged, or the oldest unacknowledged batch is
 *     younger than half the timeout after acknowledgements resumed.
 *   - Bounds: a link's backlog holds at most REPL_BACKLOG_BYTES; beyond that
 *     the replica can no longer catch up incrementally: it is out of sync,
 *     the backlog is dropped and nothing more is shipped to it until a
 *     snapshot of the shard's records is streamed (not built yet: logged
 *     replica-needs-snapshot; REPLICATION-STATUS.md). A batch being filled is
 *     closed at REPL_BATCH_BYTES; at most REPL_PUMP_BYTES are submitted per
 *     link per turn (the nodelink refuses beyond NODELINK_QUEUE_MAX: what it
 *     refused stays in the backlog and goes on a later turn).
 *
 * Threads: everything here runs on the executor under the node's lock,
 * except the nodelink handler (the links' threads), which only stores what
 * it learnt in atomics and wakes the executor through an eventfd. */
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"
#include "linktls.h"
#include "log.h"
#include "mem.h"
#include "nodelink.h"
#include "replbatch.h"
#include "util.h"

#define REPL_BACKLOG_BYTES (64u << 20)
#define REPL_BATCH_BYTES (1u << 20)
#define REPL_PUMP_BYTES (4u << 20)
#define REPL_QUERY_MS 50

/* A batch made and not acknowledged yet. Owned by its link's backlog. */
typedef struct shipped {
    struct shipped *next;
    uint64_t seq, min_ticket, max_ticket;
    int64_t made_ms;
    uint32_t records;
    size_t len;
    char bytes[];
} shipped;

typedef struct repl_link {
    replicate *rp;
    unsigned node;  /* the replica's index in the map */
    const char *id; /* its id (cfg's) */
    nodelink *link;
    /* the batch being filled this turn */
    msgpack_sbuffer fill;
    uint64_t fill_min, fill_max;
    int64_t fill_ms;
    /* the backlog: every batch not acknowledged, in sequence order */
    shipped *head, *tail;
    size_t backlog_bytes;
    uint64_t next_seq; /* the next batch's number */
    uint64_t sent;     /* the last batch submitted on this stream */
    bool restart;      /* the next batch submitted carries OP_FLAG_REPL_START */
    uint64_t acked;    /* the last batch the replica has durable */
    uint64_t acked_at_out; /* acked when it went out of sync */
    bool in_sync;
    bool needs_snapshot;
    int64_t last_query_ms;
    /* from the link's threads */
    _Atomic uint64_t acked_in;  /* the highest acknowledgement received */
    _Atomic uint64_t resync_in; /* 0: none; else the batch asked for + 1 */
    atomic_bool failed_in;      /* a request failed: what it carried may not have arrived */
    _Atomic uint64_t refused_in; /* fencing refusals received */
    /* for /metrics (any thread) */
    prom_counter batches, bytes, records, out_of_sync_events, lag_batches, lag_ms, in_sync_gauge, refused;
} repl_link;

struct replicate {
    const eddy_config *cfg;
    const shardmap *map;
    unsigned self;
    unsigned copies;
    uint64_t peer_id;
    int efd;
    repl_link *by_node[SHARDMAP_MAX_NODES]; /* NULL: not a replica of any shard of ours */
    repl_link links[SHARDMAP_MAX_COPIES];
    unsigned count;
    prom_counter under_replicated; /* our shards with a replica out of sync */
};

/* ---------------- the links' threads ---------------- */

static void wake(replicate *rp)
{
    uint64_t one = 1;
    ssize_t w = write(rp->efd, &one, sizeof(one));
    (void)w;
}

static void take_ack(repl_link *l, uint64_t seq)
{
    uint64_t cur = atomic_load(&l->acked_in);
    while (seq > cur && !atomic_compare_exchange_weak(&l->acked_in, &cur, seq))
        ;
}

static int on_op(void *arg, const op *o)
{
    repl_link *l = arg;
    if (o->kind == OP_REPL_ACK)
        take_ack(l, o->corr);
    else if (o->kind == OP_REPL_RESYNC)
        atomic_store(&l->resync_in, o->corr + 1);
    else if (o->kind == OP_ERROR && (o->orig == OP_REPL_BATCH || o->orig == OP_REPL_ACK)) {
        atomic_fetch_add(&l->refused_in, 1);
        atomic_store(&l->failed_in, true);
    }
    return 0;
}

static int on_link(void *ctx, int event, int index, uint64_t seq, void *item)
{
    replicate *rp = ctx;
    repl_link *l = &rp->links[index];
    (void)seq;
    switch (event) {
    case NODELINK_REPLY: {
        nng_msg *m = item;
        op_batch_each(nng_msg_body(m), nng_msg_len(m), on_op, l);
        nng_msg_free(m);
        break;
    }
    case NODELINK_DELIVERY: {
        nng_msg *m = item;
        if (nng_msg_len(m) > 8)
            op_batch_each((const uint8_t *)nng_msg_body(m) + 8, nng_msg_len(m) - 8, on_op, l);
        nng_msg_free(m);
        break;
    }
    case NODELINK_RESYNC: /* the replica lost our stream (it restarted, or dropped us) */
        atomic_store(&l->resync_in, 1);
        break;
    case NODELINK_FAILED: {
        op_batch *b = item;
        op_batch_destroy(b);
        xfree(b);
        atomic_store(&l->failed_in, true);
        break;
    }
    default: /* NODELINK_DOWN: its batches come back as FAILED */
        break;
    }
    wake(rp);
    return 0;
}

/* ---------------- the executor ---------------- */

static void count_under_replicated(replicate *rp)
{
    uint64_t n = 0;
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        uint16_t copies[SHARDMAP_MAX_COPIES];
        unsigned c = replicas_of(rp->map, s, rp->copies, copies);
        if (copies[0] != rp->self)
            continue;
        for (unsigned i = 1; i < c; i++)
            if (rp->by_node[copies[i]] != NULL && !rp->by_node[copies[i]]->in_sync) {
                n++;
                break;
            }
    }
    prom_set(&rp->under_replicated, n);
}

static void set_in_sync(repl_link *l, bool in_sync, const char *why)
{
    if (l->in_sync == in_sync)
        return;
    l->in_sync = in_sync;
    prom_set(&l->in_sync_gauge, in_sync);
    count_under_replicated(l->rp);
    int64_t lag = l->head != NULL ? now_ms() - l->head->made_ms : 0;
    if (!in_sync) {
        prom_add(&l->out_of_sync_events, 1);
        l->acked_at_out = l->acked;
        log_error("replica-out-of-sync", "replica=%s why=\"%s\" acked=%llu last=%llu lag_ms=%lld "
                  "under_replicated_shards=%llu (writes no longer wait for it; it catches up before it is in "
                  "sync again)", l->id, why, (unsigned long long)l->acked, (unsigned long long)(l->next_seq - 1),
                  (long long)lag, (unsigned long long)prom_get(&l->rp->under_replicated));
    } else
        log_info("replica-in-sync", "replica=%s acked=%llu last=%llu lag_ms=%lld", l->id,
                 (unsigned long long)l->acked, (unsigned long long)(l->next_seq - 1), (long long)lag);
}

static void drop_backlog(repl_link *l)
{
    while (l->head != NULL) {
        shipped *b = l->head;
        l->head = b->next;
        xfree(b);
    }
    l->tail = NULL;
    l->backlog_bytes = 0;
}

/* Closes the batch being filled: it joins the backlog with the next number. */
static void close_fill(repl_link *l)
{
    if (replbatch_count(&l->fill) == 0)
        return;
    if (l->needs_snapshot) { /* nothing incremental helps it any more */
        replbatch_begin(&l->fill);
        return;
    }
    shipped *b = xmalloc(sizeof(*b) + l->fill.size);
    *b = (shipped){.seq = l->next_seq++, .min_ticket = l->fill_min, .max_ticket = l->fill_max,
                   .made_ms = l->fill_ms, .records = replbatch_count(&l->fill), .len = l->fill.size};
    memcpy(b->bytes, l->fill.data, l->fill.size);
    if (l->tail != NULL)
        l->tail->next = b;
    else
        l->head = b;
    l->tail = b;
    l->backlog_bytes += b->len;
    replbatch_begin(&l->fill);
    if (l->backlog_bytes > REPL_BACKLOG_BYTES) {
        set_in_sync(l, false, "backlog full");
        l->needs_snapshot = true;
        log_error("replica-needs-snapshot", "replica=%s acked=%llu last=%llu backlog_bytes=%zu (beyond the "
                  "backlog: it can only catch up from a snapshot of the shards' records, which this build does not "
                  "stream yet; it stays out of sync)", l->id, (unsigned long long)l->acked,
                  (unsigned long long)(l->next_seq - 1), l->backlog_bytes);
        drop_backlog(l);
    }
}

void replicate_record(replicate *rp, strview name, int64_t version, strview data, bool exists, uint64_t ticket)
{
    uint32_t shard = shard_of(name.ptr, name.len);
    uint16_t copies[SHARDMAP_MAX_COPIES];
    unsigned n = replicas_of(rp->map, shard, rp->copies, copies);
    repl_item it = {.shard = shard, .epoch = rp->map->epoch, .version = exists ? version : -1, .deleted = !exists,
                    .name = name, .data = exists ? data : (strview){NULL, 0}};
    for (unsigned i = 1; i < n; i++) {
        repl_link *l = rp->by_node[copies[i]];
        if (l == NULL || copies[0] != rp->self)
            continue;
        if (replbatch_count(&l->fill) == 0) {
            l->fill_min = ticket;
            l->fill_ms = now_ms();
        }
        replbatch_add(&l->fill, &it);
        l->fill_max = ticket;
        if (l->fill.size >= REPL_BATCH_BYTES)
            close_fill(l);
    }
}

uint64_t replicate_durable(const replicate *rp)
{
    uint64_t upto = UINT64_MAX;
    for (unsigned i = 0; i < rp->count; i++) {
        const repl_link *l = &rp->links[i];
        if (!l->in_sync)
            continue;
        uint64_t w = l->head != NULL ? l->head->min_ticket - 1
                     : replbatch_count(&l->fill) > 0 ? l->fill_min - 1 : UINT64_MAX;
        if (w < upto)
            upto = w;
    }
    return upto;
}

/* Everything after what the replica has goes again (from: the batch it
 * asked for; 0: after the last acknowledgement), the first marked START. A
 * replica skips what it has (replica.c), so sending too much costs only bytes. */
static void rewind_link(repl_link *l, uint64_t from, const char *why)
{
    uint64_t to = from > l->acked + 1 ? from - 1 : l->acked;
    l->restart = true;
    if (to >= l->sent)
        return; /* nothing sent beyond it: it goes anyway */
    log_debug("replication-rewind", "replica=%s why=%s from=%llu sent=%llu", l->id, why,
              (unsigned long long)(to + 1), (unsigned long long)l->sent);
    l->sent = to;
}

void replicate_absorb(replicate *rp, int64_t now)
{
    uint64_t v;
    ssize_t r = read(rp->efd, &v, sizeof(v)); /* reset first: news after this wakes the executor again */
    (void)r;
    for (unsigned i = 0; i < rp->count; i++) {
        repl_link *l = &rp->links[i];
        uint64_t acked = atomic_load(&l->acked_in);
        if (acked > l->acked) {
            l->acked = acked;
            while (l->head != NULL && l->head->seq <= acked) {
                shipped *b = l->head;
                l->head = b->next;
                if (l->head == NULL)
                    l->tail = NULL;
                l->backlog_bytes -= b->len;
                xfree(b);
            }
            if (l->sent < acked)
                l->sent = acked;
        }
        uint64_t resync = atomic_exchange(&l->resync_in, 0);
        if (resync != 0)
            rewind_link(l, resync - 1, "resync");
        if (atomic_exchange(&l->failed_in, false))
            rewind_link(l, 0, "failed");
        prom_set(&l->refused, atomic_load(&l->refused_in));
        prom_set(&l->lag_batches, l->next_seq - 1 - l->acked);
        prom_set(&l->lag_ms, l->head != NULL ? (uint64_t)(now - l->head->made_ms) : 0);
        if (l->in_sync && l->head != NULL && now - l->head->made_ms > rp->cfg->replica_timeout_ms)
            set_in_sync(l, false, "no acknowledgement within cluster.replicaTimeout");
        else if (!l->in_sync && !l->needs_snapshot && nodelink_delivering(l->link) &&
                 (l->head == NULL ||
                  (l->acked > l->acked_at_out && now - l->head->made_ms < rp->cfg->replica_timeout_ms / 2)))
            set_in_sync(l, true, "caught up");
    }
}

void replicate_ship(replicate *rp, int64_t now)
{
    for (unsigned i = 0; i < rp->count; i++) {
        repl_link *l = &rp->links[i];
        close_fill(l);
        if (l->head == NULL || !nodelink_delivering(l->link))
            continue;
        size_t budget = REPL_PUMP_BYTES;
        for (shipped *b = l->head; b != NULL && budget > 0; b = b->next) {
            if (b->seq <= l->sent)
                continue;
            op o = {.kind = OP_REPL_BATCH, .corr = b->seq, .orig = rp->self + 1, .epoch = rp->map->epoch,
                    .flags = l->restart ? OP_FLAG_REPL_START : 0, .has_data = true,
                    .data = {b->bytes, (uint32_t)b->len}};
            if (nodelink_submit(l->link, &o) == 0)
                break; /* its queue is full, or the replica is down: a later turn */
            l->sent = b->seq;
            l->restart = false;
            budget = b->len >= budget ? 0 : budget - b->len;
            prom_add(&l->batches, 1);
            prom_add(&l->bytes, b->len);
            prom_add(&l->records, b->records);
        }
        /* waiting on an acknowledgement a lost delivery may have carried: ask */
        if (l->head != NULL && l->head->seq <= l->sent && now - l->head->made_ms >= REPL_QUERY_MS &&
            now - l->last_query_ms >= REPL_QUERY_MS) {
            l->last_query_ms = now;
            op q = {.kind = OP_REPL_ACK, .orig = rp->self + 1, .epoch = rp->map->epoch};
            (void)nodelink_submit(l->link, &q);
        }
    }
}

int replicate_fd(const replicate *rp)
{
    return rp->efd;
}

replicate *replicate_new(const eddy_config *cfg, const shardmap *map, unsigned self, const struct linktls *tls)
{
    if (cfg->replicas <= 1 || map->node_count < 2 || cfg->cluster.count < 2)
        return NULL;
    replicate *rp = xcalloc(1, sizeof(*rp));
    rp->cfg = cfg;
    rp->map = map;
    rp->self = self;
    rp->copies = (unsigned)cfg->replicas;
    rp->peer_id = random_id();
    rp->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    /* the nodes holding a copy of a shard this node is primary of */
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        uint16_t copies[SHARDMAP_MAX_COPIES];
        unsigned n = replicas_of(map, s, rp->copies, copies);
        if (copies[0] != self)
            continue;
        for (unsigned i = 1; i < n && rp->count < SHARDMAP_MAX_COPIES; i++) {
            unsigned at = copies[i];
            if (rp->by_node[at] != NULL || at == self || at >= (unsigned)cfg->cluster.count)
                continue;
            repl_link *l = &rp->links[rp->count];
            *l = (repl_link){.rp = rp, .node = at, .id = cfg->cluster.nodes[at].id, .next_seq = 1,
                             .restart = true, .in_sync = true};
            msgpack_sbuffer_init(&l->fill);
            replbatch_begin(&l->fill);
            prom_set(&l->in_sync_gauge, 1);
            rp->by_node[at] = l;
            rp->count++;
        }
    }
    for (unsigned i = 0; i < rp->count; i++) {
        repl_link *l = &rp->links[i];
        const cluster_node *cn = &cfg->cluster.nodes[l->node];
        nodelink_config c = {.index = (int)i, .id = cn->id, .request_url = cn->request, .delivery_url = cn->delivery,
                             .peer_id = rp->peer_id, .epoch = map->epoch, .map_digest = shardmap_digest(map),
                             .reply_timeout_ms = (int)cfg->replica_timeout_ms, .tls = tls, .role = LINK_ROLE_NODE,
                             .handler = on_link, .ctx = rp};
        l->link = nodelink_open(&c);
        if (l->link == NULL) {
            log_error("replication-link-failed", "replica=%s request=%s", cn->id, cn->request);
            replicate_free(rp);
            return NULL;
        }
        log_info("replication-link", "replica=%s request=%s copies=%u replica_timeout_ms=%lld", cn->id, cn->request,
                 rp->copies, (long long)cfg->replica_timeout_ms);
    }
    return rp;
}

void replicate_free(replicate *rp)
{
    if (rp == NULL)
        return;
    for (unsigned i = 0; i < rp->count; i++) /* quiesce every link first, then close */
        if (rp->links[i].link != NULL)
            nodelink_stop(rp->links[i].link);
    for (unsigned i = 0; i < rp->count; i++) {
        repl_link *l = &rp->links[i];
        nodelink_close(l->link);
        drop_backlog(l);
        msgpack_sbuffer_destroy(&l->fill);
    }
    if (rp->efd >= 0)
        close(rp->efd);
    xfree(rp);
}

void replicate_metrics(replicate *rp, FILE *f)
{
    if (rp == NULL)
        return;
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } fams[] = {
        {"eddy_node_replication_batches_total", "counter", "replication batches submitted to a replica (again after a "
         "failure counts again)", offsetof(repl_link, batches)},
        {"eddy_node_replication_bytes_total", "counter", "bytes of replication batches submitted to a replica",
         offsetof(repl_link, bytes)},
        {"eddy_node_replication_records_total", "counter", "record writes submitted to a replica",
         offsetof(repl_link, records)},
        {"eddy_node_replication_lag_batches", "gauge", "batches made for a replica and not yet acknowledged durable",
         offsetof(repl_link, lag_batches)},
        {"eddy_node_replication_lag_ms", "gauge", "age of the oldest batch a replica has not acknowledged (ms)",
         offsetof(repl_link, lag_ms)},
        {"eddy_node_replication_in_sync", "gauge", "1 while writes wait for this replica, 0 while it is out of sync",
         offsetof(repl_link, in_sync_gauge)},
        {"eddy_node_replication_out_of_sync_total", "counter", "times a replica went out of sync (replica-out-of-sync)",
         offsetof(repl_link, out_of_sync_events)},
        {"eddy_node_replication_refused_total", "counter", "batches a replica refused (fencing: epoch or shard)",
         offsetof(repl_link, refused)},
    };
    for (size_t k = 0; k < sizeof(fams) / sizeof(fams[0]); k++) {
        prom_family(f, fams[k].name, fams[k].type, fams[k].help);
        for (unsigned i = 0; i < rp->count; i++) {
            const prom_counter *c = (const prom_counter *)((const char *)&rp->links[i] + fams[k].off);
            fprintf(f, "%s{replica=\"%s\"} %llu\n", fams[k].name, rp->links[i].id, (unsigned long long)prom_get(c));
        }
    }
    prom_family(f, "eddy_node_replication_under_replicated_shards", "gauge",
                "shards this node is primary of with a replica out of sync");
    fprintf(f, "eddy_node_replication_under_replicated_shards %llu\n",
            (unsigned long long)prom_get(&rp->under_replicated));
}
