/* replicate.c - the primary side of replication: every record write this
 * node commits for a shard it owns goes to the shard's replicas, and what the
 * write causes (the writer's acknowledgement, the updates to subscribers, any
 * later answer about records) leaves records.c's outbox only once every
 * in-sync replica has it durable.
 *
 * Design (issue 18, items 2-4; REPLICATION-STATUS.md):
 *   - Who: with cluster.raft, once routing follows the metadata group's
 *     committed map (replicate_follow), each shard's copies and in-sync bits
 *     come from it (copies[0] the primary, then the replicas); before that,
 *     and without cluster.raft, from the static assignment (replicas_of,
 *     common/shardmap.h, all in sync). One link per replica node this node
 *     replicates to, opened when a map first makes it one: a nodelink
 *     (common/nodelink.h) to that node's request and delivery addresses, as
 *     a peer of role node (HELLO with the configuration's epoch and digest;
 *     over TLS this node's certificate, OU=eddy-node). Links follow map
 *     changes (plan_links): a replica that gains shards of this node (a
 *     promotion, a failover, a planned move) gets a snapshot of its new set
 *     (its copy of them dropped first: FAILOVER rule 6); one that only lost
 *     some keeps its stream, their items taken out of the backlog (the
 *     replica would refuse them); one left with none goes idle.
 *   - In sync (FAILOVER rule 5): with the committed map, writes wait for a
 *     replica while the map has it in the in-sync set of one of this node's
 *     shards (it may be promoted), or while it is in sync here (caught up:
 *     it may be added any moment). A replica that stops acknowledging for
 *     cluster.replicaTimeout is proposed out (SYNC_REPLICA through
 *     meta_sync_replica, to the leader) and waited for until the committed
 *     map shows it out; a caught-up one is proposed in. Items carry their
 *     shard's epoch in that map.
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
 *     under-replicated): with the static assignment writes no longer wait for
 *     it; with the committed map, once the map shows it out (above).
 *     Batches stay in the link's backlog until acknowledged, and are sent
 *     again (the first one marked START) after a failed request, a link that
 *     came back, or the replica's REPL_RESYNC. The link is in sync again once
 *     everything is acknowledged, or the oldest unacknowledged batch is
 *     younger than half the timeout after acknowledgements resumed.
 *   - Snapshot catch-up: a replica that holds no state of this stream (a
 *     new link: the first thing it gets; a replica that restarted, lost its
 *     data folder or dropped us: it answers REPL_RESYNC with
 *     OP_FLAG_REPL_SNAPSHOT), or one the incremental stream cannot bring up
 *     to date (beyond the backlog bound, or asking for batches the backlog no
 *     longer holds, or given new shards by the map), gets the records of
 *     every shard of ours it holds a copy of (the link's shard set). The
 *     link is out of sync until it is done; writes made meanwhile that the
 *     snapshot brings (snap_floor) wait for it while the map has it in sync. Steps, all on the executor, the
 *     reading on the storage thread (persist.h):
 *       1. the batch being filled is closed; S = the last batch made. A
 *          storage job opens a consistent view after committing every write
 *          queued before it: the view holds exactly the writes of batches up
 *          to S (the writes are shipped and queued for storage in one order).
 *          The backlog (batches <= S) is dropped; batches made from now on
 *          (S+1, ...) are kept and held back.
 *       2. scan jobs read the view from a cursor (the last name read), at
 *          most SNAP_CHUNK_RECORDS records or SNAP_CHUNK_BYTES each; each
 *          result becomes an OP_REPL_SNAPSHOT chunk (replbatch.h format 2),
 *          numbered on the link (numbers never reused, so a late answer about
 *          an older snapshot is recognised). The first carries the shard set
 *          (the replica drops its copy of those shards first), the last says
 *          so. At most SNAP_WINDOW chunks are kept unacknowledged (bounded
 *          memory; sent again from the first unacknowledged after a failure).
 *       3. after the last chunk, batches S+1, ... go as usual; once the last
 *          chunk is acknowledged (replica-snapshot-done) the replica's stream
 *          stands at S, and the link is in sync again once the batches made
 *          until then are acknowledged too (the rule below).
 *     A backlog that overflows during a snapshot, or a replica that refuses a
 *     chunk (it restarted meanwhile), starts it over.
 *   - Bounds: a link's backlog holds at most REPL_BACKLOG_BYTES (the
 *     environment variable EDDY_REPLICA_BACKLOG, bytes, for tests); beyond
 *     that the replica can no longer catch up incrementally: it is out of
 *     sync, the backlog is dropped and nothing is shipped to it until a
 *     snapshot starts (replica-needs-snapshot). A batch being filled is
 *     closed at REPL_BATCH_BYTES; at most REPL_PUMP_BYTES (batches and
 *     chunks) are submitted per link per turn (the nodelink refuses beyond
 *     NODELINK_QUEUE_MAX: what it refused stays and goes on a later turn).
 *
 * Threads: everything here runs on the executor under the node's lock,
 * except the nodelink handler (the links' callbacks), which only stores what
 * it learnt in atomics and wakes the executor through an eventfd. */
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"
#include "linktls.h"
#include "log.h"
#include "mem.h"
#include "metamap.h"
#include "nodelink.h"
#include "replbatch.h"
#include "util.h"

#define REPL_BACKLOG_BYTES (64u << 20)
#define REPL_BATCH_BYTES (1u << 20)
#define REPL_PUMP_BYTES (4u << 20)
#define REPL_QUERY_MS 50
#define SNAP_CHUNK_RECORDS 256
#define SNAP_CHUNK_BYTES (1u << 20)
#define SNAP_WINDOW 4 /* chunks made and not acknowledged, per link */

/* Where a link's snapshot stands. */
enum snap_phase {
    SNAP_NONE = 0,  /* none needed: the incremental stream */
    SNAP_WANTED,    /* needed: nothing is shipped until it starts (the replica must be reachable) */
    SNAP_OPENING,   /* the view is being opened (a storage job) */
    SNAP_RUNNING,   /* chunks being read and sent; the batches after it wait for the last */
};

/* A snapshot chunk made and not acknowledged yet. Owned by its link. */
typedef struct chunk {
    struct chunk *next;
    uint64_t no;
    int64_t made_ms;
    uint32_t records;
    size_t len;
    char bytes[];
} chunk;

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
    int64_t last_query_ms;
    uint8_t shards[REPLCHUNK_SHARD_SET]; /* the shards of ours it holds a copy of */
    uint64_t set_digest; /* of (shard, epoch) over shards: a change means the replica needs a snapshot */
    bool active;         /* shards is not empty: batches are made and shipped */
    bool map_in_sync;    /* it is in the map's in-sync set of a shard of ours (raft: writes wait for it) */
    bool map_all_in_sync; /* ... of every shard of ours it holds */
    int64_t out_ms;      /* when it went out of sync here */
    bool out_timeout;    /* ... for want of acknowledgements (cluster.replicaTimeout) */
    int64_t sync_asked_ms; /* when SYNC_REPLICA was last proposed for it */
    uint64_t snap_floor; /* the first write a snapshot under way (or wanted) must bring it; 0: none */
    /* snapshot catch-up (executor) */
    int snap_phase;           /* enum snap_phase */
    struct storage_view *view; /* SNAP_RUNNING: the consistent view read */
    struct storage_view *view_to_close; /* a release the storage queue refused: again next turn */
    bool job_out, job_stale;  /* a storage job of ours is queued; its result is of an abandoned snapshot */
    bool scan_end;            /* the last chunk is made */
    char *cursor;             /* the last name read (xmalloc'd), NULL: from the first */
    size_t cursor_len;
    uint64_t snap_next;       /* the next chunk's number (never reused on this link) */
    uint64_t snap_first;      /* the current (or last) snapshot's first chunk: its id */
    uint64_t snap_last;       /* its last chunk (0: not made yet) */
    uint64_t snap_sent, snap_acked; /* the last chunk submitted, and acknowledged durable */
    uint64_t snap_resume;     /* S: the last batch it covers */
    uint64_t catchup_to;      /* in sync again only once acked reaches it (the tail after a snapshot) */
    chunk *chunks, *chunks_tail; /* made, not acknowledged, in order */
    unsigned chunk_count;
    uint64_t snap_records, snap_bytes;
    int64_t snap_started_ms;
    const char *snap_why;
    /* from the link's callbacks */
    _Atomic uint64_t acked_in;  /* the highest acknowledgement received */
    _Atomic uint64_t resync_in; /* 0: none; else the batch asked for + 1 */
    atomic_bool failed_in;      /* a request failed: what it carried may not have arrived */
    _Atomic uint64_t refused_in; /* fencing refusals received */
    _Atomic uint64_t snap_acked_in;  /* the highest chunk acknowledged */
    _Atomic uint64_t want_batch_in;  /* the highest batch refused for want of a snapshot */
    _Atomic uint64_t want_chunk_in;  /* the highest chunk refused for want of a (new) snapshot */
    _Atomic int64_t heard_ms;        /* when the replica last answered (a reply or a delivery; heartbeats too) */
    /* for /metrics (any thread) */
    prom_counter batches, bytes, records, out_of_sync_events, lag_batches, lag_ms, in_sync_gauge, refused;
    prom_counter snapshots, snap_records_sent, snap_bytes_sent;
} repl_link;

struct replicate {
    const eddy_config *cfg;
    const shardmap *map;  /* the static map (node.c's): who holds what while mm is NULL */
    const metamap *mm;    /* the committed metadata map (meta.c's, borrowed) once routing follows it; NULL: static */
    struct meta_node *meta; /* node.c's: proposes in-sync changes (SYNC_REPLICA) */
    unsigned self;
    unsigned copies;
    persist *p;
    const struct linktls *tls; /* node.c's */
    size_t backlog_max; /* REPL_BACKLOG_BYTES, or EDDY_REPLICA_BACKLOG */
    uint64_t peer_id;
    int efd;
    repl_link *by_node[CLUSTER_MAX_NODES]; /* NULL: never a replica of a shard of ours */
    repl_link links[CLUSTER_MAX_NODES];
    unsigned count;
    bool open_failed;     /* a link could not be opened (replicate_new fails) */
    uint64_t planned_epoch[SHARD_COUNT]; /* each shard's epoch as of the last plan_links */
    prom_counter under_replicated; /* our shards with a replica out of sync */
};

/* ---------------- the links' callbacks ---------------- */

static void wake(replicate *rp)
{
    uint64_t one = 1;
    ssize_t w = write(rp->efd, &one, sizeof(one));
    (void)w;
}

/* *at = max(*at, v) */
static void take_max(_Atomic uint64_t *at, uint64_t v)
{
    uint64_t cur = atomic_load(at);
    while (v > cur && !atomic_compare_exchange_weak(at, &cur, v))
        ;
}

static int on_op(void *arg, const op *o)
{
    repl_link *l = arg;
    if (o->kind == OP_REPL_ACK)
        take_max(&l->acked_in, o->corr);
    else if (o->kind == OP_REPL_SNAPSHOT_ACK)
        take_max(&l->snap_acked_in, o->corr);
    else if (o->kind == OP_REPL_RESYNC && (o->flags & OP_FLAG_REPL_SNAPSHOT))
        take_max(o->orig == OP_REPL_SNAPSHOT ? &l->want_chunk_in : &l->want_batch_in, o->corr);
    else if (o->kind == OP_REPL_RESYNC)
        atomic_store(&l->resync_in, o->corr + 1);
    else if (o->kind == OP_ERROR &&
             (o->orig == OP_REPL_BATCH || o->orig == OP_REPL_ACK || o->orig == OP_REPL_SNAPSHOT)) {
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
    if (event == NODELINK_REPLY || event == NODELINK_DELIVERY)
        atomic_store(&l->heard_ms, now_ms());
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

/* The copies of shard (out[0] the primary, then its replicas; node
 * indexes), and which are in sync (bit i: out[i]): the committed map's once
 * routing follows it, else the static assignment (all in sync). Returns how
 * many. */
static unsigned copies_of(const replicate *rp, uint32_t shard, uint16_t out[SHARDMAP_MAX_COPIES], unsigned *insync)
{
    if (rp->mm == NULL) {
        *insync = ~0u;
        return replicas_of(rp->map, shard, rp->copies, out);
    }
    const meta_shard *sh = &rp->mm->shards[shard];
    unsigned n = 0;
    *insync = 0;
    for (unsigned i = 0; i < sh->ncopies && n < SHARDMAP_MAX_COPIES; i++) {
        if (sh->copies[i] == 0 || sh->copies[i] > CLUSTER_MAX_NODES) {
            if (i == 0)
                return 0; /* a primary outside the configured nodes: nobody here ships it */
            continue;
        }
        if (sh->insync & (1u << i))
            *insync |= 1u << n;
        out[n++] = (uint16_t)(sh->copies[i] - 1);
    }
    return n;
}

/* The epoch the items of shard carry: the shard's in the committed map, else the static map's. */
static uint64_t shard_epoch(const replicate *rp, uint32_t shard)
{
    return rp->mm != NULL ? rp->mm->shards[shard].epoch : rp->map->epoch;
}

/* Whether writes wait for l. With the committed map (cluster.raft): while
 * the map has it in the in-sync set of a shard of ours (FAILOVER rule 5: it
 * may be promoted), whatever its state here: it leaves that set only through
 * the metadata group (SYNC_REPLICA, FAIL_NODE); and while it is in sync here
 * (caught up: it may be added to the set any moment). With the static
 * assignment: while it is in sync here (cluster.replicaTimeout). */
static bool waited(const repl_link *l)
{
    if (!l->active)
        return false;
    return l->rp->mm != NULL ? l->map_in_sync || l->in_sync : l->in_sync;
}

static void lower_floor(repl_link *l, uint64_t ticket)
{
    if (l->snap_floor == 0 || ticket < l->snap_floor)
        l->snap_floor = ticket;
}

static void count_under_replicated(replicate *rp)
{
    uint64_t n = 0;
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        uint16_t copies[SHARDMAP_MAX_COPIES];
        unsigned insync, c = copies_of(rp, s, copies, &insync);
        if (c == 0 || copies[0] != rp->self)
            continue;
        for (unsigned i = 1; i < c; i++)
            if (rp->by_node[copies[i]] == NULL || !rp->by_node[copies[i]]->in_sync || !(insync & (1u << i))) {
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
        l->out_ms = now_ms();
        l->out_timeout = false;
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

/* ---------------- snapshots ---------------- */

static void free_chunks(repl_link *l, uint64_t upto)
{
    while (l->chunks != NULL && l->chunks->no <= upto) {
        chunk *c = l->chunks;
        l->chunks = c->next;
        l->chunk_count--;
        xfree(c);
    }
    if (l->chunks == NULL)
        l->chunks_tail = NULL;
}

static void close_view(repl_link *l)
{
    if (l->view == NULL)
        return;
    if (persist_view_close(l->rp->p, l->view) != 0)
        l->view_to_close = l->view; /* again next turn (storage_close releases it at the latest) */
    l->view = NULL;
}

/* Abandons the snapshot under way (if any): what it made, its view, its cursor. */
static void snap_abort(repl_link *l)
{
    if (l->snap_phase == SNAP_OPENING || l->snap_phase == SNAP_RUNNING) {
        free_chunks(l, UINT64_MAX);
        close_view(l);
        xfree(l->cursor);
        l->cursor = NULL;
        l->cursor_len = 0;
        l->job_stale = l->job_out; /* its result, when it comes, is dropped */
    }
    l->snap_phase = SNAP_NONE;
}

/* The replica needs a snapshot: nothing incremental is kept for it until one starts. */
static void want_snapshot(repl_link *l, const char *why)
{
    if (l->snap_phase == SNAP_WANTED)
        return;
    bool running = l->snap_phase != SNAP_NONE;
    snap_abort(l);
    l->snap_phase = SNAP_WANTED;
    l->snap_why = why;
    log_warn("replica-needs-snapshot", "replica=%s why=\"%s\" acked=%llu last=%llu backlog_bytes=%zu%s", l->id, why,
             (unsigned long long)l->acked, (unsigned long long)(l->next_seq - 1), l->backlog_bytes,
             running ? " (the snapshot under way starts over)" : "");
    if (l->head != NULL) /* what it lacks from here on comes with the snapshot */
        lower_floor(l, l->head->min_ticket);
    if (replbatch_count(&l->fill) > 0)
        lower_floor(l, l->fill_min);
    drop_backlog(l);
    replbatch_begin(&l->fill);
    set_in_sync(l, false, why);
}

/* Closes the batch being filled: it joins the backlog with the next number. */
static void close_fill(repl_link *l)
{
    if (replbatch_count(&l->fill) == 0)
        return;
    if (l->snap_phase == SNAP_WANTED) { /* the snapshot will hold it */
        lower_floor(l, l->fill_min);
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
    if (l->backlog_bytes > l->rp->backlog_max)
        want_snapshot(l, l->snap_phase == SNAP_NONE ? "backlog full" : "backlog full during the snapshot");
}

/* Step 1: opens the view, once the replica answers (a snapshot toward a
 * replica that does not, a paused one, would only start over and over). */
static void snap_begin(repl_link *l, int64_t now)
{
    if (l->job_out || l->view_to_close != NULL || !nodelink_delivering(l->link) ||
        now - atomic_load(&l->heard_ms) > l->rp->cfg->replica_timeout_ms / 2)
        return;
    close_fill(l); /* dropped: the view holds it */
    if (persist_view_open(l->rp->p, l) != 0)
        return; /* the storage queue is full: a later turn */
    l->job_out = true;
    l->job_stale = false;
    l->snap_phase = SNAP_OPENING;
    l->snap_resume = l->next_seq - 1;
    l->acked = l->sent = l->snap_resume; /* the batches it covers are done with */
    l->restart = false;
    l->snap_first = l->snap_next;
    l->snap_sent = l->snap_acked = l->snap_first - 1;
    l->snap_last = 0;
    l->scan_end = false;
    l->snap_records = l->snap_bytes = 0;
    l->snap_started_ms = now;
    prom_add(&l->snapshots, 1);
    log_info("replica-snapshot-started", "replica=%s why=\"%s\" snapshot=%llu resume=%llu", l->id, l->snap_why,
             (unsigned long long)l->snap_first, (unsigned long long)l->snap_resume);
}

/* Step 2: one chunk of the records a scan read (d->data, persist_scanned). */
static void make_chunk(repl_link *l, const persist_done *d)
{
    replicate *rp = l->rp;
    uint64_t no = l->snap_next++;
    replchunk_head h = {.flags = (uint8_t)((no == l->snap_first ? REPLCHUNK_FIRST : 0) |
                                           (d->end ? REPLCHUNK_LAST : 0)),
                        .snapshot = l->snap_first, .resume = l->snap_resume, .shards = l->shards};
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    replchunk_begin(&b, &h);
    const char *at = d->data, *end = d->data + d->data_len;
    for (uint32_t i = 0; i < d->count && at + sizeof(persist_scanned) <= end; i++) {
        persist_scanned r;
        memcpy(&r, at, sizeof(r));
        at += sizeof(r);
        strview name = {at, r.name_len}, data = {at + r.name_len, r.data_len};
        at += r.name_len + r.data_len;
        if (r.version < 0 || r.name_len == 0 || r.name_len > OP_NAME_MAX) {
            log_error("replica-snapshot-skipped", "replica=%s name=%.*s version=%lld (not a record the replica "
                      "could take)", l->id, (int)(r.name_len < 200 ? r.name_len : 200), name.ptr,
                      (long long)r.version);
            continue;
        }
        uint32_t shard = shard_of(name.ptr, name.len);
        repl_item it = {.shard = shard, .epoch = shard_epoch(rp, shard), .version = r.version, .name = name,
                        .data = data};
        replchunk_add(&b, &it);
    }
    chunk *c = xmalloc(sizeof(*c) + b.size);
    *c = (chunk){.no = no, .made_ms = now_ms(), .records = replchunk_count(&b), .len = b.size};
    memcpy(c->bytes, b.data, b.size);
    msgpack_sbuffer_destroy(&b);
    if (l->chunks_tail != NULL)
        l->chunks_tail->next = c;
    else
        l->chunks = c;
    l->chunks_tail = c;
    l->chunk_count++;
    l->snap_records += c->records;
    l->snap_bytes += c->len;
    if (d->end) {
        l->scan_end = true;
        l->snap_last = no;
    }
}

void replicate_on_persist(replicate *rp, persist_done *d)
{
    repl_link *l = d->cookie;
    l->job_out = false;
    if (l->job_stale || (d->kind == PERSIST_VIEW ? l->snap_phase != SNAP_OPENING : l->snap_phase != SNAP_RUNNING)) {
        l->job_stale = false;
        if (d->kind == PERSIST_VIEW && persist_view_close(rp->p, d->view) != 0 && l->view_to_close == NULL)
            l->view_to_close = d->view;
        return;
    }
    if (d->kind == PERSIST_VIEW) {
        l->view = d->view;
        l->snap_phase = SNAP_RUNNING;
        return;
    }
    if (d->count > 0 || d->end || l->snap_next == l->snap_first)
        make_chunk(l, d);
    xfree(l->cursor);
    l->cursor = d->cursor; /* taken */
    l->cursor_len = d->cursor_len;
    d->cursor = NULL;
}

/* The last chunk is acknowledged: the replica's stream stands at S. */
static void snap_done(repl_link *l, int64_t now)
{
    l->snap_phase = SNAP_NONE;
    l->snap_floor = 0; /* everything up to S is there: the backlog (S+1, ...) says the rest */
    close_view(l);
    xfree(l->cursor);
    l->cursor = NULL;
    l->catchup_to = l->next_seq - 1; /* and the batches made meanwhile */
    log_info("replica-snapshot-done", "replica=%s snapshot=%llu records=%llu bytes=%llu chunks=%llu ms=%lld "
             "resume=%llu tail=%llu", l->id, (unsigned long long)l->snap_first,
             (unsigned long long)l->snap_records, (unsigned long long)l->snap_bytes,
             (unsigned long long)(l->snap_last - l->snap_first + 1), (long long)(now - l->snap_started_ms),
             (unsigned long long)l->snap_resume, (unsigned long long)(l->catchup_to - l->snap_resume));
}

/* Step 2, each turn: the next scan, while the window has room. */
static void snap_read(repl_link *l)
{
    if (l->snap_phase != SNAP_RUNNING || l->job_out || l->scan_end || l->chunk_count >= SNAP_WINDOW)
        return;
    if (persist_scan(l->rp->p, l->view, l->shards, l->cursor, l->cursor_len, SNAP_CHUNK_RECORDS,
                     SNAP_CHUNK_BYTES, l) == 0)
        l->job_out = true;
}

/* ---------------- the incremental stream ---------------- */

void replicate_record(replicate *rp, strview name, int64_t version, strview data, bool exists, uint64_t ticket)
{
    uint32_t shard = shard_of(name.ptr, name.len);
    uint16_t copies[SHARDMAP_MAX_COPIES];
    unsigned insync, n = copies_of(rp, shard, copies, &insync);
    if (n == 0 || copies[0] != rp->self)
        return; /* not this node's to ship (a write of a shard it just lost: never acknowledged, records.c) */
    repl_item it = {.shard = shard, .epoch = shard_epoch(rp, shard), .version = exists ? version : -1,
                    .deleted = !exists, .name = name, .data = exists ? data : (strview){NULL, 0}};
    for (unsigned i = 1; i < n; i++) {
        repl_link *l = rp->by_node[copies[i]];
        if (l == NULL || !l->active)
            continue;
        if (l->snap_phase == SNAP_WANTED) { /* the snapshot will hold it */
            lower_floor(l, ticket);
            continue;
        }
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
        if (!waited(l))
            continue;
        uint64_t w = l->head != NULL ? l->head->min_ticket - 1
                     : replbatch_count(&l->fill) > 0 ? l->fill_min - 1 : UINT64_MAX;
        if (l->snap_floor != 0 && l->snap_floor - 1 < w)
            w = l->snap_floor - 1;
        if (w < upto)
            upto = w;
    }
    return upto;
}

/* Everything after what the replica has goes again (from: the batch it
 * asked for; 0: after the last acknowledgement), the first marked START; so
 * do the chunks after the last one acknowledged. A replica skips what it has
 * (replica.c), so sending too much costs only bytes. */
static void rewind_link(repl_link *l, uint64_t from, const char *why)
{
    uint64_t to = from > l->acked + 1 ? from - 1 : l->acked;
    l->snap_sent = l->snap_acked;
    l->restart = true;
    if (to >= l->sent)
        return; /* nothing sent beyond it: it goes anyway */
    log_debug("replication-rewind", "replica=%s why=%s from=%llu sent=%llu", l->id, why,
              (unsigned long long)(to + 1), (unsigned long long)l->sent);
    l->sent = to;
}

/* With the committed map: brings the map's in-sync set to what this link
 * shows (FAILOVER rule 5), through the metadata group. A replica caught up
 * here is proposed in; one out of sync for want of acknowledgements (or for
 * cluster.replicaTimeout for another reason: a snapshot) is proposed out, and
 * writes wait for it until the committed map shows it out (waited). Asked
 * again every SYNC_RETRY_MS until the map shows it. */
#define SYNC_RETRY_MS 250
static void follow_in_sync(replicate *rp, repl_link *l, int64_t now)
{
    if (rp->mm == NULL || rp->meta == NULL || now - l->sync_asked_ms < SYNC_RETRY_MS)
        return;
    bool in;
    if (l->in_sync && !l->map_all_in_sync)
        in = true;
    else if (!l->in_sync && l->map_in_sync &&
             (l->out_timeout || now - l->out_ms >= rp->cfg->replica_timeout_ms))
        in = false;
    else
        return;
    l->sync_asked_ms = now;
    (void)meta_sync_replica(rp->meta, l->node, in);
}

/* The replica's requests for a snapshot, unless they are about batches the
 * current (or last) snapshot covers, or chunks of an older one. */
static void take_snapshot_requests(repl_link *l)
{
    uint64_t batch = atomic_exchange(&l->want_batch_in, 0), chunk_no = atomic_exchange(&l->want_chunk_in, 0);
    if ((batch != 0 && batch > l->snap_resume) || (chunk_no != 0 && chunk_no >= l->snap_first))
        want_snapshot(l, "the replica holds no state of this stream");
}

void replicate_absorb(replicate *rp, int64_t now)
{
    uint64_t v;
    ssize_t r = read(rp->efd, &v, sizeof(v)); /* reset first: news after this wakes the executor again */
    (void)r;
    for (unsigned i = 0; i < rp->count; i++) {
        repl_link *l = &rp->links[i];
        if (l->view_to_close != NULL && persist_view_close(rp->p, l->view_to_close) == 0)
            l->view_to_close = NULL;
        if (!l->active) { /* no shard of ours on it (any more): what it says is of no use */
            atomic_store(&l->resync_in, 0);
            atomic_store(&l->failed_in, false);
            atomic_store(&l->want_batch_in, 0);
            atomic_store(&l->want_chunk_in, 0);
            continue;
        }
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
        uint64_t snap_acked = atomic_load(&l->snap_acked_in);
        if (l->snap_phase == SNAP_RUNNING && snap_acked > l->snap_acked && snap_acked >= l->snap_first) {
            l->snap_acked = snap_acked;
            if (l->snap_sent < snap_acked)
                l->snap_sent = snap_acked;
            free_chunks(l, snap_acked);
            if (l->snap_last != 0 && snap_acked >= l->snap_last)
                snap_done(l, now);
        }
        take_snapshot_requests(l);
        uint64_t resync = atomic_exchange(&l->resync_in, 0);
        if (resync > 1 && l->snap_phase == SNAP_NONE && resync - 1 <= l->acked)
            want_snapshot(l, "asked for batches the backlog no longer holds");
        else if (resync != 0)
            rewind_link(l, resync - 1, "resync");
        if (atomic_exchange(&l->failed_in, false))
            rewind_link(l, 0, "failed");
        prom_set(&l->refused, atomic_load(&l->refused_in));
        prom_set(&l->lag_batches, l->next_seq - 1 - l->acked);
        prom_set(&l->lag_ms, l->head != NULL ? (uint64_t)(now - l->head->made_ms) : 0);
        if (l->in_sync && l->head != NULL && now - l->head->made_ms > rp->cfg->replica_timeout_ms) {
            set_in_sync(l, false, "no acknowledgement within cluster.replicaTimeout");
            l->out_timeout = true;
        }
        else if (!l->in_sync && l->snap_phase == SNAP_NONE && l->acked >= l->catchup_to &&
                 nodelink_delivering(l->link) &&
                 (l->head == NULL ||
                  (l->acked > l->acked_at_out && now - l->head->made_ms < rp->cfg->replica_timeout_ms / 2)))
            set_in_sync(l, true, "caught up");
        follow_in_sync(rp, l, now);
    }
}

/* Submits what the link may send now within *budget bytes: the chunks not
 * sent, then (after the last chunk, or with no snapshot) the batches. */
static void pump(replicate *rp, repl_link *l, size_t *budget)
{
    for (chunk *c = l->chunks; c != NULL && *budget > 0; c = c->next) {
        if (c->no <= l->snap_sent)
            continue;
        op o = {.kind = OP_REPL_SNAPSHOT, .corr = c->no, .orig = rp->self + 1, .epoch = rp->map->epoch,
                .has_data = true, .data = {c->bytes, (uint32_t)c->len}};
        if (nodelink_submit(l->link, &o) == 0)
            return;
        l->snap_sent = c->no;
        *budget = c->len >= *budget ? 0 : *budget - c->len;
        prom_add(&l->snap_records_sent, c->records);
        prom_add(&l->snap_bytes_sent, c->len);
    }
    if (l->snap_phase == SNAP_OPENING || (l->snap_phase == SNAP_RUNNING &&
                                          (l->snap_last == 0 || l->snap_sent < l->snap_last)))
        return; /* the batches after the snapshot wait for its last chunk */
    for (shipped *b = l->head; b != NULL && *budget > 0; b = b->next) {
        if (b->seq <= l->sent)
            continue;
        op o = {.kind = OP_REPL_BATCH, .corr = b->seq, .orig = rp->self + 1, .epoch = rp->map->epoch,
                .flags = l->restart ? OP_FLAG_REPL_START : 0, .has_data = true,
                .data = {b->bytes, (uint32_t)b->len}};
        if (nodelink_submit(l->link, &o) == 0)
            break; /* its queue is full, or the replica is down: a later turn */
        l->sent = b->seq;
        l->restart = false;
        *budget = b->len >= *budget ? 0 : *budget - b->len;
        prom_add(&l->batches, 1);
        prom_add(&l->bytes, b->len);
        prom_add(&l->records, b->records);
    }
}

void replicate_ship(replicate *rp, int64_t now)
{
    for (unsigned i = 0; i < rp->count; i++) {
        repl_link *l = &rp->links[i];
        if (!l->active)
            continue;
        close_fill(l);
        if (l->snap_phase == SNAP_WANTED)
            snap_begin(l, now);
        snap_read(l);
        if (!nodelink_delivering(l->link))
            continue;
        size_t budget = REPL_PUMP_BYTES;
        pump(rp, l, &budget);
        /* waiting on an acknowledgement a lost delivery may have carried: ask */
        bool waiting = (l->head != NULL && l->head->seq <= l->sent && now - l->head->made_ms >= REPL_QUERY_MS) ||
                       (l->chunks != NULL && l->chunks->no <= l->snap_sent && now - l->chunks->made_ms >= REPL_QUERY_MS);
        if (waiting && now - l->last_query_ms >= REPL_QUERY_MS) {
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

/* The backlog bound: REPL_BACKLOG_BYTES, or EDDY_REPLICA_BACKLOG (bytes, 64 KiB to 1 GiB; for tests). */
static size_t backlog_bound(void)
{
    const char *v = getenv("EDDY_REPLICA_BACKLOG");
    if (v == NULL || *v == '\0')
        return REPL_BACKLOG_BYTES;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end != '\0' || n < (64u << 10) || n > (1ull << 30)) {
        log_error("replication-backlog-ignored", "EDDY_REPLICA_BACKLOG=%s (bytes, 65536 to 1073741824; using %u)",
                  v, REPL_BACKLOG_BYTES);
        return REPL_BACKLOG_BYTES;
    }
    log_warn("replication-backlog", "bytes=%llu (EDDY_REPLICA_BACKLOG: a bound for tests)", n);
    return (size_t)n;
}

/* Opens the link to replica node `at` (a new stream: its state is unknown
 * until a snapshot brings it up to date). Returns it, or NULL (logged). */
static repl_link *open_link(replicate *rp, unsigned at)
{
    if (rp->count >= CLUSTER_MAX_NODES)
        return NULL;
    const eddy_config *cfg = rp->cfg;
    const cluster_node *cn = &cfg->cluster.nodes[at];
    repl_link *l = &rp->links[rp->count];
    *l = (repl_link){.rp = rp, .node = at, .id = cn->id, .next_seq = 1, .restart = true, .in_sync = false,
                     .snap_next = 1};
    msgpack_sbuffer_init(&l->fill);
    replbatch_begin(&l->fill);
    nodelink_config c = {.index = (int)rp->count, .id = cn->id, .request_url = cn->request,
                         .delivery_url = cn->delivery, .peer_id = rp->peer_id, .epoch = rp->map->epoch,
                         .map_digest = shardmap_digest(rp->map), .reply_timeout_ms = (int)cfg->replica_timeout_ms,
                         .tls = rp->tls, .role = LINK_ROLE_NODE, .handler = on_link, .ctx = rp};
    l->link = nodelink_open(&c);
    if (l->link == NULL) {
        log_error("replication-link-failed", "replica=%s request=%s", cn->id, cn->request);
        msgpack_sbuffer_destroy(&l->fill);
        rp->open_failed = true;
        return NULL;
    }
    rp->by_node[at] = l;
    rp->count++;
    log_info("replication-link", "replica=%s request=%s copies=%u replica_timeout_ms=%lld", cn->id, cn->request,
             rp->copies, (long long)cfg->replica_timeout_ms);
    return l;
}

/* Keeps only the items of l's shards in its backlog (it lost shards: the
 * replica would refuse a batch carrying one of them forever). The writes
 * dropped are never acknowledged (records.c releases nothing of a shard
 * this node no longer serves). */
static void filter_backlog(repl_link *l)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    l->backlog_bytes = 0;
    for (shipped **pp = &l->head; *pp != NULL;) {
        shipped *old = *pp;
        replbatch_reader rd;
        uint32_t count;
        repl_item it;
        replbatch_begin(&b);
        if (replbatch_open(&rd, old->bytes, old->len, &count) == 0)
            while (replbatch_next(&rd, &it) == 1)
                if (replchunk_has(l->shards, it.shard))
                    replbatch_add(&b, &it);
        shipped *nb = xmalloc(sizeof(*nb) + b.size);
        *nb = *old;
        nb->records = replbatch_count(&b);
        nb->len = b.size;
        memcpy(nb->bytes, b.data, b.size);
        if (l->tail == old)
            l->tail = nb;
        *pp = nb;
        xfree(old);
        l->backlog_bytes += nb->len;
        pp = &nb->next;
    }
    msgpack_sbuffer_destroy(&b);
    l->sent = l->acked; /* what went out unfiltered goes again, filtered */
    l->restart = true;
}

/* Works out, from the map in use (copies_of), which node holds a copy of
 * which shard of ours; opens a link to a new replica node and brings each
 * link's shard set up to date: a link that gained a shard (or whose shards'
 * epochs moved) needs a snapshot of its new set (FAILOVER rule 6: the
 * replica drops its copy of them first); one that only lost shards keeps its
 * stream with those shards' items taken out; one left with none goes idle
 * (nothing shipped, writes never wait for it). */
static void plan_links(replicate *rp)
{
    uint8_t(*sets)[REPLCHUNK_SHARD_SET] = xcalloc(CLUSTER_MAX_NODES, REPLCHUNK_SHARD_SET);
    uint64_t digest[CLUSTER_MAX_NODES];
    bool insync_any[CLUSTER_MAX_NODES], insync_all[CLUSTER_MAX_NODES];
    for (unsigned i = 0; i < CLUSTER_MAX_NODES; i++) {
        digest[i] = 1469598103934665603ull;
        insync_any[i] = false;
        insync_all[i] = true;
    }
    unsigned nodes = (unsigned)rp->cfg->cluster.count;
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        uint16_t copies[SHARDMAP_MAX_COPIES];
        unsigned insync, n = copies_of(rp, s, copies, &insync);
        if (n == 0 || copies[0] != rp->self)
            continue;
        uint64_t e = shard_epoch(rp, s);
        for (unsigned i = 1; i < n; i++) {
            unsigned at = copies[i];
            if (at == rp->self || at >= nodes || at >= CLUSTER_MAX_NODES)
                continue;
            sets[at][s / 8] |= (uint8_t)(1u << (s % 8));
            digest[at] = (digest[at] ^ ((uint64_t)s << 40 ^ e)) * 1099511628211ull;
            insync_any[at] |= (insync & (1u << i)) != 0;
            insync_all[at] &= (insync & (1u << i)) != 0;
        }
    }
    for (unsigned at = 0; at < nodes && at < CLUSTER_MAX_NODES; at++) {
        bool any = false;
        for (unsigned k = 0; k < REPLCHUNK_SHARD_SET && !any; k++)
            any = sets[at][k] != 0;
        repl_link *l = rp->by_node[at];
        if (l == NULL && any)
            l = open_link(rp, at);
        if (l == NULL)
            continue;
        l->map_in_sync = insync_any[at];
        l->map_all_in_sync = insync_all[at];
        if (l->active == any && (!any || l->set_digest == digest[at]))
            continue;
        bool gained = false;
        for (uint32_t s = 0; s < SHARD_COUNT && !gained; s++)
            gained = replchunk_has(sets[at], s) && !replchunk_has(l->shards, s);
        bool was_active = l->active, first = !was_active && l->next_seq == 1 && l->snap_first == 0;
        memcpy(l->shards, sets[at], REPLCHUNK_SHARD_SET);
        l->set_digest = digest[at];
        l->active = any;
        if (!any) { /* idle: nothing of ours on it */
            snap_abort(l);
            drop_backlog(l);
            replbatch_begin(&l->fill);
            l->snap_floor = 0;
            set_in_sync(l, false, "it holds no shard of this node any more");
            l->sent = l->acked = l->next_seq - 1;
            l->restart = true;
            log_info("replication-idle", "replica=%s (the shard map leaves it no shard of this node)", l->id);
            continue;
        }
        if (first) {
            l->snap_phase = SNAP_WANTED;
            l->snap_why = "a new stream";
            continue;
        }
        if (!was_active || gained) {
            want_snapshot(l, "the shard map gave it shards of this node");
            continue;
        }
        bool moved = false; /* a kept shard at another epoch: the backlog's items carry the old one */
        for (uint32_t s = 0; s < SHARD_COUNT && !moved; s++)
            moved = replchunk_has(l->shards, s) && rp->planned_epoch[s] != shard_epoch(rp, s);
        if (moved) {
            want_snapshot(l, "the shard map moved the epoch of a shard it holds");
            continue;
        }
        filter_backlog(l); /* lost shards only */
        log_info("replication-shards-lost", "replica=%s (the shard map moved shards of this node away: their "
                 "writes leave its stream)", l->id);
    }
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        rp->planned_epoch[s] = shard_epoch(rp, s);
    xfree(sets);
    count_under_replicated(rp);
}

void replicate_follow(replicate *rp, const metamap *committed, struct meta_node *meta)
{
    if (rp == NULL)
        return;
    rp->mm = committed;
    rp->meta = meta;
    plan_links(rp);
}

replicate *replicate_new(const eddy_config *cfg, const shardmap *map, unsigned self, const struct linktls *tls,
                         persist *p)
{
    if (config_replicas(cfg) <= 1 || map->node_count < 2 || cfg->cluster.count < 2)
        return NULL;
    replicate *rp = xcalloc(1, sizeof(*rp));
    rp->cfg = cfg;
    rp->map = map;
    rp->self = self;
    rp->copies = (unsigned)config_replicas(cfg);
    rp->p = p;
    rp->tls = tls;
    rp->backlog_max = backlog_bound();
    rp->peer_id = random_id();
    rp->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    plan_links(rp); /* the static assignment until routing follows the metadata group's map */
    if (rp->open_failed) {
        replicate_free(rp);
        return NULL;
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
        free_chunks(l, UINT64_MAX);
        xfree(l->cursor);
        /* views not released here are released when the store closes */
        if (l->view != NULL)
            (void)persist_view_close(rp->p, l->view);
        if (l->view_to_close != NULL)
            (void)persist_view_close(rp->p, l->view_to_close);
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
        {"eddy_node_replication_snapshots_total", "counter", "snapshots started for a replica (it held no state of "
         "this node's stream, or fell beyond the backlog)", offsetof(repl_link, snapshots)},
        {"eddy_node_replication_snapshot_records_total", "counter", "snapshot records submitted to a replica (sent "
         "again after a failure counts again)", offsetof(repl_link, snap_records_sent)},
        {"eddy_node_replication_snapshot_bytes_total", "counter", "bytes of the snapshot chunks submitted to a replica",
         offsetof(repl_link, snap_bytes_sent)},
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
