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
 *   - fencing: the batch's epoch and every item's must be this node's map
 *     epoch (a lower one is a stale primary: refused, ERROR WRONG_EPOCH; a
 *     higher one means this node's map is stale: refused too), the sender
 *     must be the primary of every item's shard and this node one of its
 *     replicas (else ERROR WRONG_SHARD);
 *   - order: batch `applied + 1` is written; one at or below `applied` was
 *     written before (a primary sending again after a lost answer): skipped
 *     and acknowledged; one beyond is a gap: REPL_RESYNC asks for `applied +
 *     1`. A stream this node does not know yet (a new primary process, or this
 *     node restarted) starts only at a batch marked OP_FLAG_REPL_START, which
 *     the primary sends from its last acknowledged batch + 1 (REPL_RESYNC 0
 *     asks for that). A START batch on a known stream is taken when it does
 *     not skip past applied + 1. Replaying from the last acknowledged batch
 *     never takes a record below what was acknowledged: items are whole
 *     record states, and the replay holds only states newer than those.
 * The items go to storage as one job (one RocksDB WriteBatch, the node's
 * storage.sync: records_store_replicated), under the records' next ticket.
 * Once that ticket is committed the stream's acknowledged sequence advances
 * and an OP_REPL_ACK goes to the primary in its delivery stream; every reply
 * to a batch (and to a REPL_ACK question) also carries the acknowledged
 * sequence, so a delivery lost on pub/sub costs nothing but a question.
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
#include "replbatch.h"
#include "util.h"

#define REPLICA_STREAMS 64
#define PENDING_MAX 64

typedef struct pending {
    uint64_t seq, ticket;
} pending;

typedef struct stream {
    uint64_t peer_id; /* 0: free */
    peer *from;
    bool started;     /* a START batch (or a batch in sequence after one) was taken */
    uint64_t applied; /* the last batch written (not necessarily durable) */
    uint64_t acked;   /* the last batch durable here, and acknowledged */
    pending ring[PENDING_MAX];
    unsigned head, count;
    int64_t used_ms;
} stream;

typedef struct replica_table {
    node_env *env;
    stream streams[REPLICA_STREAMS];
    msgpack_sbuffer scratch;
    log_every refused_log;
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

/* True when every item of the batch may be written here (fencing). */
static bool items_allowed(replica_table *rt, node_req *req, const op *o, replbatch_reader rd)
{
    const shardmap *map = rt->env->map;
    unsigned primary = o->orig - 1;
    repl_item it;
    while (replbatch_next(&rd, &it) == 1) {
        if (it.epoch != map->epoch) {
            refuse(rt, req, o, OP_ERR_WRONG_EPOCH, it.epoch < map->epoch ? "an item of a lower epoch" :
                                                                           "an item of a higher epoch");
            return false;
        }
        uint16_t copies[SHARDMAP_MAX_COPIES];
        unsigned n = replicas_of(map, it.shard, (unsigned)rt->env->cfg->replicas, copies);
        bool mine = false;
        for (unsigned i = 1; i < n; i++)
            mine |= copies[i] == rt->env->self;
        if (it.shard >= SHARD_COUNT || copies[0] != primary || !mine ||
            shard_of(it.name.ptr, it.name.len) != it.shard) {
            refuse(rt, req, o, OP_ERR_WRONG_SHARD, "a shard the sender is not primary of, or not replicated here");
            return false;
        }
    }
    return true;
}

static void track(stream *s, uint64_t seq, uint64_t ticket)
{
    if (s->count == PENDING_MAX) { /* replace the newest: its later ticket covers it */
        s->ring[(s->head + s->count - 1) % PENDING_MAX] = (pending){seq, ticket};
        return;
    }
    s->ring[(s->head + s->count) % PENDING_MAX] = (pending){seq, ticket};
    s->count++;
}

static void apply_batch(replica_table *rt, node_req *req, const op *o)
{
    const shardmap *map = rt->env->map;
    if (o->epoch != map->epoch || o->orig == 0 || o->orig > map->node_count) {
        refuse(rt, req, o, OP_ERR_WRONG_EPOCH, o->epoch < map->epoch ? "a lower epoch" : "another epoch or primary");
        return;
    }
    replbatch_reader rd;
    uint32_t count;
    if (!o->has_data || replbatch_open(&rd, o->data.ptr, o->data.len, &count) != 0) {
        op e = {.kind = OP_ERROR, .error = OP_ERR_MALFORMED, .corr = o->corr, .orig = o->kind};
        op_batch_add(req->reply, &e);
        prom_add(&rt->env->stats->malformed, 1);
        log_warn("replication-malformed", "peer=%016llx seq=%llu bytes=%u", (unsigned long long)req->from->id,
                 (unsigned long long)o->corr, o->data.len);
        return;
    }
    stream *s = stream_of(rt, req->from);
    s->from = req->from;
    s->used_ms = now_ms();
    bool start = (o->flags & OP_FLAG_REPL_START) != 0;
    if (s->started && o->corr <= s->applied) { /* seen before */
        prom_add(&rt->env->stats->repl_duplicates, 1);
        answer(req->reply, OP_REPL_ACK, s->acked, map->epoch);
        return;
    }
    if (!(s->started && o->corr == s->applied + 1) && !(start && (!s->started || o->corr <= s->applied + 1))) {
        prom_add(&rt->env->stats->repl_resyncs, 1);
        log_warn("replication-resync", "peer=%016llx seq=%llu applied=%llu started=%d (asking for %llu)",
                 (unsigned long long)req->from->id, (unsigned long long)o->corr, (unsigned long long)s->applied,
                 s->started, (unsigned long long)(s->started ? s->applied + 1 : 0));
        answer(req->reply, OP_REPL_RESYNC, s->started ? s->applied + 1 : 0, map->epoch);
        return;
    }
    if (!items_allowed(rt, req, o, rd))
        return;
    if (!s->started) {
        log_info("replica-stream-started", "peer=%016llx primary=%u seq=%llu", (unsigned long long)req->from->id,
                 o->orig - 1, (unsigned long long)o->corr);
        s->acked = o->corr - 1; /* what the primary says it had acknowledged */
    }
    s->started = true;
    if (count > 0) {
        persist_item *items = xcalloc(count, sizeof(*items));
        repl_item it;
        for (uint32_t i = 0; replbatch_next(&rd, &it) == 1; i++)
            items[i] = (persist_item){.name = it.name.ptr, .len = it.name.len, .version = it.version,
                                      .data = it.deleted ? NULL : it.data.ptr, .data_len = it.data.len};
        uint64_t ticket = records_store_replicated(rt->env->records, items, count);
        xfree(items);
        track(s, o->corr, ticket);
        prom_add(&rt->env->stats->repl_applied_records, count);
    } else
        track(s, o->corr, 0); /* nothing to write: durable as soon as what came before is */
    s->applied = o->corr;
    prom_add(&rt->env->stats->repl_applied_batches, 1);
    answer(req->reply, OP_REPL_ACK, s->acked, map->epoch);
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
    /* OP_REPL_ACK: the primary asks what is durable */
    stream *s = stream_of(rt, req->from);
    answer(req->reply, OP_REPL_ACK, s->acked, rt->env->map->epoch);
}

void replica_settle(replica_table *rt)
{
    uint64_t committed = records_committed(rt->env->records);
    for (int i = 0; i < REPLICA_STREAMS; i++) {
        stream *s = &rt->streams[i];
        uint64_t acked = s->acked;
        while (s->count > 0 && s->ring[s->head].ticket <= committed) {
            acked = s->ring[s->head].seq;
            s->head = (s->head + 1) % PENDING_MAX;
            s->count--;
        }
        if (acked == s->acked)
            continue;
        s->acked = acked;
        op a = {.kind = OP_REPL_ACK, .corr = acked, .epoch = rt->env->map->epoch};
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
    .kinds = (const owner_kind[]){{OP_REPL_BATCH, ROUTE_EVERY_NODE}, {OP_REPL_ACK, ROUTE_EVERY_NODE}, {0, 0}},
    .create = replica_create,
    .destroy = replica_destroy,
    .apply = replica_apply,
    .held = "replication_streams",
    .drop_peer = replica_drop_peer,
};
