/* replica.c - the replica side of replication: the records of shards this
 * node holds a copy of (it is not their primary), written as the primary
 * sends them, and acknowledged once durable.
 *
 * Design (issue 18, item 2; REPLICATION-STATUS.md). A primary (replicate.c)
 * dials this node as a peer of role node (a nodelink: HELLO, and over TLS the
 * node certificate) and sends OP_REPL_BATCH operations, one per executor turn
 * of its own, numbered 1, 2, ... on its stream (one stream per primary
 * process: its peer id). Each batch is checked whole before anything of it is
 * written:
 *   - fencing, per shard (FAILOVER rule 3): the batch's epoch must be the
 *     configuration's; every item's must be its shard's epoch in the map this
 *     node applies (the metadata group's committed map once routing follows
 *     it, env->mmap; else the static map's epoch): a lower one is a stale
 *     primary (refused, ERROR WRONG_EPOCH: a resumed old primary gets no write
 *     acknowledged through a promoted replica), a higher one means this node
 *     has not applied the map yet (refused too: the primary sends again). The
 *     sender must be the primary of every item's shard in that map and this
 *     node one of its replicas (else ERROR WRONG_SHARD);
 *   - order: batch `applied + 1` is written; one at or below `applied` was
 *     written before (a primary sending again after a lost answer): skipped
 *     and acknowledged; one beyond is a gap: REPL_RESYNC asks for `applied +
 *     1`. A START batch (the primary sends again from its last acknowledged
 *     batch + 1) is taken when it does not skip past applied + 1. Replaying
 *     from the last acknowledged batch never takes a record below what was
 *     acknowledged: items are whole record states, and the replay holds only
 *     states newer than those.
 *   - snapshots: a stream this node does not know (a new primary process,
 *     this node restarted or lost its data folder, or dropped the primary as
 *     a peer) starts only with a snapshot: any batch on it is answered
 *     REPL_RESYNC with OP_FLAG_REPL_SNAPSHOT. A snapshot comes as
 *     OP_REPL_SNAPSHOT chunks numbered on the link (replbatch.h format 2).
 *     Its first chunk names the shard set: every shard in it must be one the
 *     sender is primary of and this node a replica of (else WRONG_SHARD);
 *     this node then drops its copy of those shards (a storage job, before
 *     anything after it: FAILOVER rule 6, records the primary no longer has
 *     go too) and sets the stream at the batch the snapshot resumes after
 *     (batches up to it are skipped as seen). Chunks in order are written
 *     as batches are (every item of the set, fenced the same way); one seen
 *     before is acknowledged again; a gap, or a chunk of a snapshot this node
 *     is not applying, asks for a new snapshot. After the last chunk the
 *     stream takes batches again. OP_REPL_SNAPSHOT_ACK (reply, and delivery
 *     once durable) acknowledges chunks cumulatively; once the last is
 *     durable the stream's acknowledged batch is the resume point.
 * The items go to storage as one job (one RocksDB WriteBatch, the node's
 * storage.sync: records_store_replicated), under the records' next ticket.
 * Once that ticket is committed the stream's acknowledged sequence advances
 * and an OP_REPL_ACK goes to the primary in its delivery stream; every reply
 * to a batch (and to a REPL_ACK question) also carries the acknowledged
 * sequence, so a delivery lost (dropped for a peer that stopped pulling) costs nothing but a question.
 *
 * The acknowledgement waits only for the local commit, never for this node's
 * own replicas (records' outbox would): a node that is both primary and
 * replica never makes another primary wait for its replicas.
 *
 * Bounds: at most REPLICA_STREAMS streams (one per primary process: a new one
 * beyond them takes the place of the least recently used, which then asks
 * for a START); per stream at most PENDING_MAX batches written and not yet
 * durable are tracked: beyond, the newest entry is replaced (its ticket is
 * later, so acknowledging it covers the one it replaced). */
#include <string.h>

#include "internal.h"
#include "linktls.h"
#include "log.h"
#include "mem.h"
#include "metamap.h"
#include "replbatch.h"
#include "util.h"

#define REPLICA_STREAMS 64
#define PENDING_MAX 64

/* What becomes durable with ticket: batch seq and chunk `chunk` (0: no news of either). */
typedef struct pending {
    uint64_t seq, chunk, ticket;
    bool last; /* the snapshot's last chunk */
} pending;

typedef struct stream {
    uint64_t peer_id; /* 0: free */
    peer *from;
    bool started;     /* batches are taken: a snapshot's last chunk was applied */
    uint64_t applied; /* the last batch written (not necessarily durable), or the snapshot's resume point */
    uint64_t acked;   /* the last batch durable here, and acknowledged */
    uint64_t snap;    /* the snapshot being applied (or the last one): its first chunk's number; 0: none */
    uint64_t snap_chunk, snap_acked; /* its last chunk applied, and durable here */
    uint64_t snap_records, snap_bytes;
    int64_t snap_started_ms;
    uint8_t shards[REPLCHUNK_SHARD_SET]; /* its shard set */
    pending ring[PENDING_MAX];
    unsigned head, count;
    int64_t used_ms;
} stream;

typedef struct replica_table {
    node_env *env;
    stream streams[REPLICA_STREAMS];
    msgpack_sbuffer scratch;
    log_every refused_log, snapshot_log;
} replica_table;

static void *replica_create(node_env *env)
{
    replica_table *rt = xcalloc(1, sizeof(*rt));
    rt->env = env;
    msgpack_sbuffer_init(&rt->scratch);
    env->replica = rt;
    return rt;
}

static void replica_destroy(void *self)
{
    replica_table *rt = self;
    msgpack_sbuffer_destroy(&rt->scratch);
    xfree(rt);
}

/* The stream of p; created (or taking the least recently used slot's place)
 * when new. */
static stream *stream_of(replica_table *rt, peer *p)
{
    stream *free_slot = NULL, *oldest = NULL;
    for (int i = 0; i < REPLICA_STREAMS; i++) {
        stream *s = &rt->streams[i];
        if (s->peer_id == p->id)
            return s;
        if (s->peer_id == 0 && free_slot == NULL)
            free_slot = s;
        if (oldest == NULL || s->used_ms < oldest->used_ms)
            oldest = s;
    }
    stream *s = free_slot != NULL ? free_slot : oldest;
    if (s->peer_id != 0)
        log_warn("replica-stream-replaced", "peer=%016llx by=%016llx (more than %d primaries)",
                 (unsigned long long)s->peer_id, (unsigned long long)p->id, REPLICA_STREAMS);
    memset(s, 0, sizeof(*s));
    s->peer_id = p->id;
    s->from = p;
    return s;
}

static void answer(op_batch *reply, uint32_t kind, uint64_t corr, uint64_t epoch)
{
    op a = {.kind = kind, .corr = corr, .epoch = epoch};
    op_batch_add(reply, &a);
}

static void refuse(replica_table *rt, node_req *req, const op *o, uint32_t error, const char *why)
{
    op e = {.kind = OP_ERROR, .error = error, .corr = o->corr, .orig = o->kind, .epoch = rt->env->map->epoch};
    op_batch_add(req->reply, &e);
    prom_add(&rt->env->stats->repl_fenced, 1);
    uint64_t held;
    if (log_every_due(&rt->refused_log, now_ms(), 1000, &held))
        log_error("replication-refused", "peer=%016llx seq=%llu epoch=%llu node_epoch=%llu primary=%u why=\"%s\" "
                  "also=%llu", (unsigned long long)req->from->id, (unsigned long long)o->corr,
                  (unsigned long long)o->epoch, (unsigned long long)rt->env->map->epoch, o->orig, why,
                  (unsigned long long)held);
}

/* True when this node holds a copy of shard, whose primary is node
 * `primary`: in the committed map once routing follows it (env->mmap), else
 * in the static assignment. */
static bool held_from(replica_table *rt, uint32_t shard, unsigned primary)
{
    if (shard >= SHARD_COUNT)
        return false;
    const metamap *mm = rt->env->mmap;
    if (mm != NULL) {
        const meta_shard *sh = &mm->shards[shard];
        bool mine = false;
        for (unsigned i = 1; i < sh->ncopies; i++)
            mine |= sh->copies[i] == rt->env->self + 1;
        return sh->ncopies > 0 && sh->copies[0] == primary + 1 && mine;
    }
    uint16_t copies[SHARDMAP_MAX_COPIES];
    unsigned n = replicas_of(rt->env->map, shard, (unsigned)config_replicas(rt->env->cfg), copies);
    bool mine = false;
    for (unsigned i = 1; i < n; i++)
        mine |= copies[i] == rt->env->self;
    return copies[0] == primary && mine;
}

/* The epoch an item of shard must carry: the shard's in the committed map, else the static map's. */
static uint64_t item_epoch(replica_table *rt, uint32_t shard)
{
    const metamap *mm = rt->env->mmap;
    return mm != NULL && shard < SHARD_COUNT ? mm->shards[shard].epoch : rt->env->map->epoch;
}

/* True when every item of the batch (or chunk: set, its shard set) may be
 * written here (fencing, per shard: FAILOVER rule 3). An item of a lower
 * epoch than the shard's is a stale primary's; of a higher one, this node
 * has not applied the map yet: both refused (WRONG_EPOCH), the primary sends
 * again. */
static bool items_allowed(replica_table *rt, node_req *req, const op *o, replbatch_reader rd, const uint8_t *set)
{
    unsigned primary = o->orig - 1;
    repl_item it;
    while (replbatch_next(&rd, &it) == 1) {
        uint64_t want = item_epoch(rt, it.shard);
        if (it.epoch != want) {
            refuse(rt, req, o, OP_ERR_WRONG_EPOCH, it.epoch < want ? "an item of a lower epoch than its shard's "
                   "(a stale primary)" : "an item of a higher epoch than its shard's (this node is behind the map)");
            return false;
        }
        if (!held_from(rt, it.shard, primary) || shard_of(it.name.ptr, it.name.len) != it.shard ||
            (set != NULL && !replchunk_has(set, it.shard))) {
            refuse(rt, req, o, OP_ERR_WRONG_SHARD, set != NULL ? "a record outside the snapshot's shard set" :
                   "a shard the sender is not primary of, or not replicated here");
            return false;
        }
    }
    return true;
}

static void track(stream *s, uint64_t seq, uint64_t chunk, uint64_t ticket, bool last)
{
    if (s->count == PENDING_MAX) { /* merge into the newest: its later ticket covers both */
        pending *p = &s->ring[(s->head + s->count - 1) % PENDING_MAX];
        *p = (pending){seq > p->seq ? seq : p->seq, chunk > p->chunk ? chunk : p->chunk, ticket, last || p->last};
        return;
    }
    s->ring[(s->head + s->count) % PENDING_MAX] = (pending){seq, chunk, ticket, last};
    s->count++;
}

/* The items of rd (count of them) go to storage as one job; returns its ticket (0: none). */
static uint64_t store(replica_table *rt, replbatch_reader rd, uint32_t count)
{
    if (count == 0)
        return 0; /* nothing to write: durable as soon as what came before is */
    persist_item *items = xcalloc(count, sizeof(*items));
    repl_item it;
    for (uint32_t i = 0; replbatch_next(&rd, &it) == 1; i++)
        items[i] = (persist_item){.name = it.name.ptr, .len = it.name.len, .version = it.version,
                                  .data = it.deleted ? NULL : it.data.ptr, .data_len = it.data.len};
    uint64_t ticket = records_store_replicated(rt->env->records, items, count);
    xfree(items);
    return ticket;
}

static void malformed(replica_table *rt, node_req *req, const op *o, const char *why)
{
    op e = {.kind = OP_ERROR, .error = OP_ERR_MALFORMED, .corr = o->corr, .orig = o->kind};
    op_batch_add(req->reply, &e);
    prom_add(&rt->env->stats->malformed, 1);
    log_warn("replication-malformed", "peer=%016llx kind=%s number=%llu bytes=%u why=\"%s\" (refused whole)",
             (unsigned long long)req->from->id, op_kind_name(o->kind), (unsigned long long)o->corr, o->data.len,
             why);
}

/* This node cannot take o (a batch or chunk) without a (new) snapshot: says so. */
static void ask_snapshot(replica_table *rt, node_req *req, const op *o, const char *why)
{
    prom_add(&rt->env->stats->repl_resyncs, 1);
    uint64_t held;
    if (log_every_due(&rt->snapshot_log, now_ms(), 1000, &held))
        log_warn("replication-resync", "peer=%016llx kind=%s number=%llu why=\"%s\" (asking for a snapshot) "
                 "also=%llu", (unsigned long long)req->from->id, op_kind_name(o->kind), (unsigned long long)o->corr,
                 why, (unsigned long long)held);
    op a = {.kind = OP_REPL_RESYNC, .corr = o->corr, .orig = o->kind, .flags = OP_FLAG_REPL_SNAPSHOT,
            .epoch = rt->env->map->epoch};
    op_batch_add(req->reply, &a);
}

/* The stream of the sender of o, once its epoch and origin are this map's (else refused: NULL). */
static stream *sender_stream(replica_table *rt, node_req *req, const op *o)
{
    const shardmap *map = rt->env->map;
    if (o->epoch != map->epoch || o->orig == 0 || o->orig > map->node_count) {
        refuse(rt, req, o, OP_ERR_WRONG_EPOCH, o->epoch < map->epoch ? "a lower epoch" : "another epoch or primary");
        return NULL;
    }
    stream *s = stream_of(rt, req->from);
    s->from = req->from;
    s->used_ms = now_ms();
    return s;
}

static void apply_batch(replica_table *rt, node_req *req, const op *o)
{
    const shardmap *map = rt->env->map;
    replbatch_reader rd;
    uint32_t count;
    if (!o->has_data || replbatch_open(&rd, o->data.ptr, o->data.len, &count) != 0) {
        malformed(rt, req, o, "not a replication batch");
        return;
    }
    stream *s = sender_stream(rt, req, o);
    if (s == NULL)
        return;
    bool start = (o->flags & OP_FLAG_REPL_START) != 0;
    if ((s->started || s->snap != 0) && o->corr <= s->applied) { /* seen before, or covered by the snapshot */
        prom_add(&rt->env->stats->repl_duplicates, 1);
        answer(req->reply, OP_REPL_ACK, s->acked, map->epoch);
        return;
    }
    if (!s->started) {
        ask_snapshot(rt, req, o, s->snap != 0 ? "a batch beyond the snapshot being applied" :
                                                "no state of this stream");
        return;
    }
    if (o->corr != s->applied + 1 && !(start && o->corr <= s->applied + 1)) {
        prom_add(&rt->env->stats->repl_resyncs, 1);
        log_warn("replication-resync", "peer=%016llx seq=%llu applied=%llu (asking for %llu)",
                 (unsigned long long)req->from->id, (unsigned long long)o->corr, (unsigned long long)s->applied,
                 (unsigned long long)(s->applied + 1));
        answer(req->reply, OP_REPL_RESYNC, s->applied + 1, map->epoch);
        return;
    }
    if (!items_allowed(rt, req, o, rd, NULL))
        return;
    uint64_t ticket = store(rt, rd, count);
    prom_add(&rt->env->stats->repl_applied_records, count);
    track(s, o->corr, 0, ticket, false);
    s->applied = o->corr;
    prom_add(&rt->env->stats->repl_applied_batches, 1);
    answer(req->reply, OP_REPL_ACK, s->acked, map->epoch);
}

/* True when every shard of the set is one the sender is primary of and this node a replica of. */
static bool set_allowed(replica_table *rt, const uint8_t *set, unsigned primary, unsigned *shards)
{
    *shards = 0;
    for (uint32_t sh = 0; sh < SHARD_COUNT; sh++)
        if (replchunk_has(set, sh)) {
            if (!held_from(rt, sh, primary))
                return false;
            ++*shards;
        }
    return true;
}

static void apply_chunk(replica_table *rt, node_req *req, const op *o)
{
    const shardmap *map = rt->env->map;
    replbatch_reader rd;
    replchunk_head h;
    uint32_t count;
    if (!o->has_data || replchunk_open(&rd, o->data.ptr, o->data.len, &h, &count) != 0) {
        malformed(rt, req, o, "not a snapshot chunk");
        return;
    }
    bool first = (h.flags & REPLCHUNK_FIRST) != 0, last = (h.flags & REPLCHUNK_LAST) != 0;
    if (o->corr == 0 || (first ? h.snapshot != o->corr : h.snapshot >= o->corr)) {
        malformed(rt, req, o, "the chunk's number does not match its snapshot's");
        return;
    }
    stream *s = sender_stream(rt, req, o);
    if (s == NULL)
        return;
    if (h.snapshot < s->snap || (h.snapshot == s->snap && o->corr <= s->snap_chunk)) { /* seen before */
        prom_add(&rt->env->stats->repl_duplicates, 1);
        answer(req->reply, OP_REPL_SNAPSHOT_ACK, s->snap_acked, map->epoch);
        return;
    }
    if (!first && (h.snapshot != s->snap || s->started || o->corr != s->snap_chunk + 1)) {
        ask_snapshot(rt, req, o, h.snapshot != s->snap || s->started ? "a chunk of a snapshot not being applied"
                                                                     : "a gap in the snapshot's chunks");
        return;
    }
    unsigned shards = 0;
    if (first && !set_allowed(rt, h.shards, o->orig - 1, &shards)) {
        refuse(rt, req, o, OP_ERR_WRONG_SHARD, "a snapshot of a shard the sender is not primary of, or not "
               "replicated here");
        return;
    }
    if (!items_allowed(rt, req, o, rd, first ? h.shards : s->shards))
        return;
    if (first) { /* a new snapshot: this node's copy of the shards goes first */
        log_info("replica-snapshot-applying", "peer=%016llx primary=%u snapshot=%llu resume=%llu shards=%u%s",
                 (unsigned long long)req->from->id, o->orig - 1, (unsigned long long)h.snapshot,
                 (unsigned long long)h.resume, shards, s->snap != 0 ? " (a new one: the last starts over)" : "");
        memcpy(s->shards, h.shards, REPLCHUNK_SHARD_SET);
        s->snap = h.snapshot;
        s->snap_chunk = s->snap_acked = o->corr - 1;
        s->snap_records = s->snap_bytes = 0;
        s->snap_started_ms = now_ms();
        s->started = false;
        s->applied = h.resume;
        s->count = 0; /* what was pending is of data being dropped */
        prom_add(&rt->env->stats->repl_snapshots, 1);
        track(s, 0, 0, records_drop_replicated(rt->env->records, h.shards), false);
    }
    uint64_t ticket = store(rt, rd, count);
    s->snap_chunk = o->corr;
    s->snap_records += count;
    s->snap_bytes += o->data.len;
    prom_add(&rt->env->stats->repl_snapshot_records, count);
    prom_add(&rt->env->stats->repl_snapshot_bytes, o->data.len);
    if (last) { /* batches after the resume point are taken from now on */
        s->started = true;
        s->applied = h.resume;
    }
    track(s, last ? h.resume : 0, o->corr, ticket, last);
    answer(req->reply, OP_REPL_SNAPSHOT_ACK, s->snap_acked, map->epoch);
}

static void replica_apply(void *self, node_req *req, const op *o)
{
    replica_table *rt = self;
    if (req->from->role != LINK_ROLE_NODE) { /* node.c's table refuses it first; kept as a second lock */
        refuse(rt, req, o, OP_ERR_FORBIDDEN, "not a node");
        return;
    }
    if (o->kind == OP_REPL_BATCH) {
        apply_batch(rt, req, o);
        return;
    }
    if (o->kind == OP_REPL_SNAPSHOT) {
        apply_chunk(rt, req, o);
        return;
    }
    /* OP_REPL_ACK: the primary asks what is durable */
    stream *s = stream_of(rt, req->from);
    answer(req->reply, OP_REPL_ACK, s->acked, rt->env->map->epoch);
    if (s->snap != 0)
        answer(req->reply, OP_REPL_SNAPSHOT_ACK, s->snap_acked, rt->env->map->epoch);
}

void replica_settle(replica_table *rt)
{
    uint64_t committed = records_committed(rt->env->records);
    uint64_t epoch = rt->env->map->epoch;
    for (int i = 0; i < REPLICA_STREAMS; i++) {
        stream *s = &rt->streams[i];
        uint64_t acked = s->acked, snap_acked = s->snap_acked;
        bool last = false;
        while (s->count > 0 && s->ring[s->head].ticket <= committed) {
            const pending *p = &s->ring[s->head];
            acked = p->seq > acked ? p->seq : acked;
            snap_acked = p->chunk > snap_acked ? p->chunk : snap_acked;
            last |= p->last;
            s->head = (s->head + 1) % PENDING_MAX;
            s->count--;
        }
        if (snap_acked != s->snap_acked) {
            s->snap_acked = snap_acked;
            op a = {.kind = OP_REPL_SNAPSHOT_ACK, .corr = snap_acked, .epoch = epoch};
            peer_deliver_op(rt->env->peers, s->from, &a);
        }
        if (last)
            log_info("replica-snapshot-applied", "peer=%016llx snapshot=%llu records=%llu bytes=%llu chunks=%llu "
                     "ms=%lld resume=%llu", (unsigned long long)s->peer_id, (unsigned long long)s->snap,
                     (unsigned long long)s->snap_records, (unsigned long long)s->snap_bytes,
                     (unsigned long long)(s->snap_chunk - s->snap + 1), (long long)(now_ms() - s->snap_started_ms),
                     (unsigned long long)s->applied);
        if (acked == s->acked)
            continue;
        s->acked = acked;
        op a = {.kind = OP_REPL_ACK, .corr = acked, .epoch = epoch};
        peer_deliver_op(rt->env->peers, s->from, &a);
    }
}

static size_t replica_drop_peer(void *self, peer *p)
{
    replica_table *rt = self;
    for (int i = 0; i < REPLICA_STREAMS; i++)
        if (rt->streams[i].peer_id == p->id) {
            memset(&rt->streams[i], 0, sizeof(rt->streams[i]));
            return 1;
        }
    return 0;
}

const owner_module replica_owner = {
    .name = "replica",
    .kinds = (const owner_kind[]){{OP_REPL_BATCH, ROUTE_EVERY_NODE},
                                  {OP_REPL_ACK, ROUTE_EVERY_NODE},
                                  {OP_REPL_SNAPSHOT, ROUTE_EVERY_NODE},
                                  {0, 0}},
    .create = replica_create,
    .destroy = replica_destroy,
    .apply = replica_apply,
    .held = "replication_streams",
    .drop_peer = replica_drop_peer,
};
