/* test_replication.c - replication (issue 18, item 2): the batch codec
 * (common/replbatch.c: round trip, every truncation and every bad length
 * refused) and the replica's side (node/replica.c), driven as a primary
 * drives it but without a socket: a real node (index 1 of a two-node map,
 * cluster.replicas 2, RocksDB in a scratch folder) gets REPL_BATCH operations
 * through node_local_request from a peer that said HELLO as a node. Covered:
 * a stream starts only at a START batch, batches in sequence are written and
 * acknowledged once durable (in the reply and the delivery stream),
 * duplicates are skipped, a gap asks for a resync, a lower epoch (batch or
 * item) and a shard the sender is not primary of are refused (fencing), a
 * broker may not send them, malformed data is refused whole; the records
 * are in the node's RocksDB (deleted ones gone) and the node still refuses
 * to serve them (it is not their owner).
 * Snapshot catch-up: the chunk codec (round trip, truncations, bad headers
 * refused); a stream the replica does not know asks for a snapshot; the
 * replica applying snapshots drops its copy of the shards first (records
 * absent from the snapshot are gone, its own records stay), skips batches the
 * snapshot covers, asks for a new snapshot on a gap, refuses a shard set or
 * chunk it may not take, and ends equal to the snapshot plus the batches
 * after it.
 * Per-shard fencing by the committed map (cluster.raft; the node follows a
 * metamap given with node_follow_metamap): a replica takes a shard's items
 * only from that shard's primary in the map, at the shard's epoch there, and
 * only for shards it holds a copy of; after a promotion the old primary's
 * items are refused, after the shard's epoch went up those of the old epoch. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "linktls.h"
#include "log.h"
#include "mem.h"
#include "metacmd.h"
#include "metamap.h"
#include "node.h"
#include "ops.h"
#include "replbatch.h"
#include "shardmap.h"
#include "storage.h"
#include "util.h"

static strview sv(const char *s)
{
    return (strview){s, (uint32_t)strlen(s)};
}

/* ---------------- the codec ---------------- */

static void test_codec_round_trip(void **state)
{
    (void)state;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    replbatch_begin(&b);
    repl_item a = {.shard = 7, .epoch = 3, .version = 12, .name = sv("rec/a"), .data = sv("{\"x\":1}")};
    repl_item d = {.shard = 4095, .epoch = 3, .version = -1, .deleted = true, .name = sv("rec/b")};
    replbatch_add(&b, &a);
    replbatch_add(&b, &d);
    assert_int_equal(replbatch_count(&b), 2);
    replbatch_reader r;
    uint32_t count;
    assert_int_equal(replbatch_open(&r, b.data, b.size, &count), 0);
    assert_int_equal(count, 2);
    repl_item it;
    assert_int_equal(replbatch_next(&r, &it), 1);
    assert_int_equal(it.shard, 7);
    assert_int_equal(it.epoch, 3);
    assert_int_equal(it.version, 12);
    assert_false(it.deleted);
    assert_memory_equal(it.name.ptr, "rec/a", 5);
    assert_int_equal(it.data.len, 7);
    assert_int_equal(replbatch_next(&r, &it), 1);
    assert_true(it.deleted);
    assert_int_equal(it.version, -1);
    assert_int_equal(it.data.len, 0);
    assert_int_equal(replbatch_next(&r, &it), 0);
    /* every truncation is refused, and so are trailing bytes */
    for (size_t len = 0; len < b.size; len++)
        assert_int_equal(replbatch_open(&r, b.data, len, &count), -1);
    char *longer = xmalloc(b.size + 1);
    memcpy(longer, b.data, b.size);
    longer[b.size] = 0;
    assert_int_equal(replbatch_open(&r, longer, b.size + 1, &count), -1);
    xfree(longer);
    /* an empty batch is fine */
    replbatch_begin(&b);
    assert_int_equal(replbatch_open(&r, b.data, b.size, &count), 0);
    assert_int_equal(count, 0);
    msgpack_sbuffer_destroy(&b);
}

/* Bytes of a batch with one item whose fields are set raw. */
static size_t raw_item(uint8_t *out, uint32_t count, uint8_t flags, int64_t version, uint32_t name_len,
                       uint32_t data_len, size_t body)
{
    size_t at = 0;
    out[at++] = REPLBATCH_FORMAT;
    for (int i = 3; i >= 0; i--)
        out[at++] = (uint8_t)(count >> (8 * i));
    memset(out + at, 0, 12); /* shard, epoch */
    at += 12;
    for (int i = 7; i >= 0; i--)
        out[at++] = (uint8_t)((uint64_t)version >> (8 * i));
    out[at++] = flags;
    for (int i = 3; i >= 0; i--)
        out[at++] = (uint8_t)(name_len >> (8 * i));
    for (int i = 3; i >= 0; i--)
        out[at++] = (uint8_t)(data_len >> (8 * i));
    memset(out + at, 'n', body);
    return at + body;
}

static void test_codec_bounds(void **state)
{
    (void)state;
    uint8_t buf[8192];
    replbatch_reader r;
    uint32_t count;
    size_t len = raw_item(buf, 1, 0, 1, 1, 1, 2);
    assert_int_equal(replbatch_open(&r, buf, len, &count), 0); /* the well-formed one */
    len = raw_item(buf, 1, 0, 1, 0, 1, 1);
    assert_int_equal(replbatch_open(&r, buf, len, &count), -1); /* empty name */
    len = raw_item(buf, 1, 0, 1, OP_NAME_MAX + 1, 0, OP_NAME_MAX + 1);
    assert_int_equal(replbatch_open(&r, buf, len, &count), -1); /* name over OP_NAME_MAX */
    len = raw_item(buf, 1, 0, 1, 1, 0xffffffffu, 2);
    assert_int_equal(replbatch_open(&r, buf, len, &count), -1); /* data beyond the end */
    len = raw_item(buf, 1, 0, 1, 0xffffffffu, 0, 2);
    assert_int_equal(replbatch_open(&r, buf, len, &count), -1); /* name beyond the end */
    len = raw_item(buf, 1000000, 0, 1, 1, 1, 2);
    assert_int_equal(replbatch_open(&r, buf, len, &count), -1); /* more items than bytes */
    len = raw_item(buf, 1, 1, -1, 1, 1, 2);
    assert_int_equal(replbatch_open(&r, buf, len, &count), -1); /* deleted with data */
    len = raw_item(buf, 1, 1, 5, 1, 0, 1);
    assert_int_equal(replbatch_open(&r, buf, len, &count), -1); /* deleted with a version */
    len = raw_item(buf, 1, 0, -1, 1, 1, 2);
    assert_int_equal(replbatch_open(&r, buf, len, &count), -1); /* a record with no version */
    len = raw_item(buf, 1, 2, 1, 1, 1, 2);
    assert_int_equal(replbatch_open(&r, buf, len, &count), -1); /* unknown flags */
    buf[0] = 2;
    assert_int_equal(replbatch_open(&r, buf, len, &count), -1); /* another format */
    assert_int_equal(replbatch_open(&r, NULL, 0, &count), -1);
}

static void test_chunk_codec(void **state)
{
    (void)state;
    uint8_t set[REPLCHUNK_SHARD_SET] = {0};
    set[0] = 0x81;
    set[REPLCHUNK_SHARD_SET - 1] = 0x80;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    replchunk_head h = {.flags = REPLCHUNK_FIRST, .snapshot = 9, .resume = 77, .shards = set};
    replchunk_begin(&b, &h);
    repl_item a = {.shard = 7, .epoch = 3, .version = 12, .name = sv("rec/a"), .data = sv("{\"x\":1}")};
    repl_item c = {.shard = 4095, .epoch = 3, .version = 0, .name = sv("rec/c"), .data = sv("{}")};
    replchunk_add(&b, &a);
    replchunk_add(&b, &c);
    assert_int_equal(replchunk_count(&b), 2);
    replbatch_reader r;
    replchunk_head got;
    uint32_t count;
    assert_int_equal(replchunk_open(&r, b.data, b.size, &got, &count), 0);
    assert_int_equal(count, 2);
    assert_int_equal(got.flags, REPLCHUNK_FIRST);
    assert_int_equal(got.snapshot, 9);
    assert_int_equal(got.resume, 77);
    assert_non_null(got.shards);
    assert_true(replchunk_has(got.shards, 0) && replchunk_has(got.shards, 7) && replchunk_has(got.shards, 4095));
    assert_false(replchunk_has(got.shards, 1) || replchunk_has(got.shards, 4094) || replchunk_has(got.shards, 4096));
    repl_item it;
    assert_int_equal(replbatch_next(&r, &it), 1);
    assert_int_equal(it.version, 12);
    assert_memory_equal(it.name.ptr, "rec/a", 5);
    assert_int_equal(replbatch_next(&r, &it), 1);
    assert_int_equal(it.shard, 4095);
    assert_int_equal(replbatch_next(&r, &it), 0);
    for (size_t len = 0; len < b.size; len++) /* every truncation is refused */
        assert_int_equal(replchunk_open(&r, b.data, len, &got, &count), -1);
    char *longer = xmalloc(b.size + 1);
    memcpy(longer, b.data, b.size);
    longer[b.size] = 0;
    assert_int_equal(replchunk_open(&r, longer, b.size + 1, &got, &count), -1); /* trailing bytes */
    longer[1] = 4; /* an unknown flag */
    assert_int_equal(replchunk_open(&r, longer, b.size, &got, &count), -1);
    longer[1] = REPLCHUNK_LAST; /* not first: the shard set's bytes are then items that do not parse */
    assert_int_equal(replchunk_open(&r, longer, b.size, &got, &count), -1);
    longer[1] = REPLCHUNK_FIRST;
    longer[0] = REPLBATCH_FORMAT; /* a batch is not a chunk */
    assert_int_equal(replchunk_open(&r, longer, b.size, &got, &count), -1);
    xfree(longer);
    /* a last chunk without a set and no items; a deleted item is refused */
    h = (replchunk_head){.flags = REPLCHUNK_LAST, .snapshot = 9, .resume = 77};
    replchunk_begin(&b, &h);
    assert_int_equal(b.size, REPLCHUNK_HEADER);
    assert_int_equal(replchunk_open(&r, b.data, b.size, &got, &count), 0);
    assert_int_equal(count, 0);
    assert_null(got.shards);
    assert_int_equal(got.flags, REPLCHUNK_LAST);
    repl_item d = {.shard = 1, .epoch = 3, .version = -1, .deleted = true, .name = sv("rec/d")};
    replchunk_add(&b, &d);
    assert_int_equal(replchunk_open(&r, b.data, b.size, &got, &count), -1);
    /* a count beyond the bytes */
    replchunk_begin(&b, &h);
    ((uint8_t *)b.data)[REPLCHUNK_HEADER - 1] = 0xff;
    assert_int_equal(replchunk_open(&r, b.data, b.size, &got, &count), -1);
    assert_int_equal(replchunk_open(&r, NULL, 0, &got, &count), -1);
    msgpack_sbuffer_destroy(&b);
}

/* replicas_of: the primary first, then the next nodes; every node holds as many copies */
static void test_replicas_of(void **state)
{
    (void)state;
    shardmap m;
    assert_int_equal(shardmap_init_even(&m, 3, 1), 0);
    unsigned held[3] = {0};
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        uint16_t c[SHARDMAP_MAX_COPIES];
        assert_int_equal(replicas_of(&m, s, 2, c), 2);
        assert_int_equal(c[0], shardmap_owner(&m, s));
        assert_int_equal(c[1], (c[0] + 1) % 3);
        held[c[1]]++;
    }
    for (int i = 0; i < 3; i++) /* evenly: a third of the shards each, give or take one */
        assert_true(held[i] >= SHARD_COUNT / 3 - 1 && held[i] <= SHARD_COUNT / 3 + 1);
    uint16_t c[SHARDMAP_MAX_COPIES];
    assert_int_equal(replicas_of(&m, 0, 5, c), 3); /* capped at the nodes */
    assert_int_equal(replicas_of(&m, 0, 1, c), 1);
}

/* ---------------- the replica ---------------- */

enum { PRIMARY = 0xAA, BROKER = 0xBB };

static eddy_config cfg;
static shardmap map;
static node *nd;
static char dir[64];
static uint64_t seqs[256];

static pthread_mutex_t tap_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t acks_delivered; /* the highest REPL_ACK delivered to PRIMARY */
static uint64_t snap_acks_delivered; /* the highest REPL_SNAPSHOT_ACK delivered to PRIMARY */
static op first_reply; /* the first operation of the last reply (its strings are not kept) */

static int see_ack(void *arg, const op *o)
{
    (void)arg;
    if (o->kind == OP_REPL_ACK && o->corr > acks_delivered)
        acks_delivered = o->corr;
    if (o->kind == OP_REPL_SNAPSHOT_ACK && o->corr > snap_acks_delivered)
        snap_acks_delivered = o->corr;
    return 0;
}

static void on_delivery(void *ctx, nng_msg *msg)
{
    (void)ctx;
    const uint8_t *body = nng_msg_body(msg);
    pthread_mutex_lock(&tap_lock);
    if (nng_msg_len(msg) > 8 && get_be64(body) == PRIMARY)
        op_batch_each(body + 8, nng_msg_len(msg) - 8, see_ack, NULL);
    pthread_mutex_unlock(&tap_lock);
    nng_msg_free(msg);
}

static int setup(void **state)
{
    (void)state;
    log_threshold = LOG_NONE;
    strcpy(dir, "/tmp/eddy-test-repl-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    config_defaults(&cfg);
    xfree(cfg.data_dir);
    cfg.data_dir = xstrdup(dir);
    cfg.replicas = 2;
    assert_int_equal(shardmap_init_even(&map, 2, 5), 0);
    memset(seqs, 0, sizeof(seqs));
    acks_delivered = snap_acks_delivered = 0;
    nd = node_start(&cfg, NULL, NULL, &map, 1); /* node index 1: the replica of node 0's shards */
    assert_non_null(nd);
    node_tap_deliveries(nd, on_delivery, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    node_stop(nd);
    nd = NULL;
    config_free(&cfg);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

typedef struct reply {
    nng_msg *msg;
    op v[16];
    uint32_t n;
} reply;

static int keep_reply(void *arg, const op *o)
{
    reply *r = arg;
    assert_true(r->n < 16);
    r->v[r->n++] = *o;
    return 0;
}

/* Sends o alone from peer; returns the reply's first operation's kind, and
 * its corr or error in *value. */
static uint32_t send1(uint64_t from, op o, uint64_t *value)
{
    op_batch b;
    op_batch_init(&b);
    op_batch_add(&b, &o);
    uint8_t hdr[OP_BATCH_HEADER_MAX];
    size_t h = op_batch_header(hdr, from, ++seqs[from & 0xff], b.count);
    uint8_t *body = xmalloc(h + b.buf.size);
    memcpy(body, hdr, h);
    memcpy(body + h, b.buf.data, b.buf.size);
    reply r = {0};
    r.msg = node_local_request(nd, body, h + b.buf.size);
    xfree(body);
    op_batch_destroy(&b);
    assert_non_null(r.msg);
    assert_int_equal(op_batch_each(nng_msg_body(r.msg), nng_msg_len(r.msg), keep_reply, &r), 0);
    uint32_t kind = r.n > 0 ? r.v[0].kind : 0;
    first_reply = r.n > 0 ? r.v[0] : (op){0};
    if (value != NULL)
        *value = r.n == 0 ? 0 : kind == OP_ERROR ? r.v[0].error : r.v[0].corr;
    nng_msg_free(r.msg);
    return kind;
}

/* A name whose shard node `owner` is primary of. */
static void name_on(unsigned owner, const char *prefix, char *out, size_t len)
{
    for (int i = 0;; i++) {
        snprintf(out, len, "%s%d", prefix, i);
        if (shardmap_owner(&map, shard_of(out, strlen(out))) == owner)
            return;
    }
}

/* A REPL_BATCH from node 0 (epoch: the batch's), its items the records
 * name -> data (NULL: deleted) at version, with item_epoch. */
static uint32_t send_batch(uint64_t seq, bool start, uint64_t epoch, uint64_t item_epoch, const char *name,
                           int64_t version, const char *data, uint64_t *value)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    replbatch_begin(&b);
    if (name != NULL) {
        repl_item it = {.shard = shard_of(name, strlen(name)), .epoch = item_epoch, .version = data ? version : -1,
                        .deleted = data == NULL, .name = sv(name), .data = data ? sv(data) : (strview){0}};
        replbatch_add(&b, &it);
    }
    op o = {.kind = OP_REPL_BATCH, .corr = seq, .orig = 1, .epoch = epoch, .flags = start ? OP_FLAG_REPL_START : 0,
            .has_data = true, .data = {b.data, (uint32_t)b.size}};
    uint32_t kind = send1(PRIMARY, o, value);
    msgpack_sbuffer_destroy(&b);
    return kind;
}

static uint64_t delivered_of(const uint64_t *v)
{
    pthread_mutex_lock(&tap_lock);
    uint64_t x = *v;
    pthread_mutex_unlock(&tap_lock);
    return x;
}

static uint64_t delivered(void)
{
    return delivered_of(&acks_delivered);
}

/* Waits (5 s at most) for the delivered acknowledgement to reach seq. */
static void wait_acked(uint64_t seq)
{
    for (int i = 0; i < 500 && delivered() < seq; i++)
        usleep(10000);
    assert_true(delivered() >= seq);
}

/* The same for snapshot chunks. */
static void wait_chunk_acked(uint64_t no)
{
    for (int i = 0; i < 500 && delivered_of(&snap_acks_delivered) < no; i++)
        usleep(10000);
    assert_true(delivered_of(&snap_acks_delivered) >= no);
}

/* The shards node 0 is primary of (node 1, this node, holds their copies). */
static void primary_set(uint8_t set[REPLCHUNK_SHARD_SET])
{
    memset(set, 0, REPLCHUNK_SHARD_SET);
    for (uint32_t sh = 0; sh < SHARD_COUNT; sh++)
        if (shardmap_owner(&map, sh) == 0)
            set[sh / 8] |= (uint8_t)(1u << (sh % 8));
}

/* A REPL_SNAPSHOT chunk `no` of snapshot `snapshot` from node 0 (epoch 5),
 * flags REPLCHUNK_*, its records names[i] -> datas[i] at versions[i]; set:
 * the shard set of a first chunk (NULL: node 0's). */
static uint32_t send_chunk(uint64_t no, uint64_t snapshot, uint64_t resume, uint8_t flags, const char **names,
                           const int64_t *versions, const char **datas, int n, const uint8_t *set, uint64_t *value)
{
    uint8_t mine[REPLCHUNK_SHARD_SET];
    primary_set(mine);
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    replchunk_head h = {.flags = flags, .snapshot = snapshot, .resume = resume, .shards = set ? set : mine};
    replchunk_begin(&b, &h);
    for (int i = 0; i < n; i++) {
        repl_item it = {.shard = shard_of(names[i], strlen(names[i])), .epoch = 5, .version = versions[i],
                        .name = sv(names[i]), .data = sv(datas[i])};
        replchunk_add(&b, &it);
    }
    op o = {.kind = OP_REPL_SNAPSHOT, .corr = no, .orig = 1, .epoch = 5, .has_data = true,
            .data = {b.data, (uint32_t)b.size}};
    uint32_t kind = send1(PRIMARY, o, value);
    msgpack_sbuffer_destroy(&b);
    return kind;
}

static void test_replica_stream(void **state)
{
    (void)state;
    uint64_t v;
    op hello = {.kind = OP_HELLO, .epoch = map.epoch, .action = LINK_ROLE_NODE};
    assert_int_equal(send1(PRIMARY, hello, &v), OP_HELLO);
    char a[32], b[32], mine[32];
    name_on(0, "rep/a", a, sizeof(a));
    name_on(0, "rep/b", b, sizeof(b));
    name_on(1, "rep/m", mine, sizeof(mine));
    /* a new stream starts only with a snapshot: a batch, START or not, asks for one */
    assert_int_equal(send_batch(1, false, 5, 5, a, 1, "{\"v\":1}", &v), OP_REPL_RESYNC);
    assert_int_equal(v, 1);
    assert_true(first_reply.flags & OP_FLAG_REPL_SNAPSHOT);
    assert_int_equal(first_reply.orig, OP_REPL_BATCH);
    assert_int_equal(send_batch(1, true, 5, 5, a, 1, "{\"v\":1}", &v), OP_REPL_RESYNC);
    assert_true(first_reply.flags & OP_FLAG_REPL_SNAPSHOT);
    /* an empty snapshot (nothing written before batch 1) starts it */
    assert_int_equal(send_chunk(1, 1, 0, REPLCHUNK_FIRST | REPLCHUNK_LAST, NULL, NULL, NULL, 0, NULL, &v),
                     OP_REPL_SNAPSHOT_ACK);
    wait_chunk_acked(1);
    assert_int_equal(send_batch(1, true, 5, 5, a, 1, "{\"v\":1}", &v), OP_REPL_ACK);
    wait_acked(1);
    assert_int_equal(send_batch(2, false, 5, 5, b, 4, "{\"b\":4}", &v), OP_REPL_ACK);
    assert_int_equal(send_batch(3, false, 5, 5, a, 2, "{\"v\":2}", &v), OP_REPL_ACK);
    wait_acked(3);
    /* a duplicate is skipped and acknowledged with what is durable */
    assert_int_equal(send_batch(2, false, 5, 5, b, 99, "{\"b\":99}", &v), OP_REPL_ACK);
    assert_int_equal(v, 3);
    /* a gap asks for the next one */
    assert_int_equal(send_batch(5, false, 5, 5, a, 9, "{\"v\":9}", &v), OP_REPL_RESYNC);
    assert_int_equal(v, 4);
    /* a START that skips past what was applied is a gap too */
    assert_int_equal(send_batch(6, true, 5, 5, a, 9, "{\"v\":9}", &v), OP_REPL_RESYNC);
    assert_int_equal(v, 4);
    /* fencing: a lower epoch (of the batch, or of an item), and a shard the sender is not primary of */
    assert_int_equal(send_batch(4, false, 4, 4, a, 9, "{\"v\":9}", &v), OP_ERROR);
    assert_int_equal(v, OP_ERR_WRONG_EPOCH);
    assert_int_equal(send_batch(4, false, 5, 4, a, 9, "{\"v\":9}", &v), OP_ERROR);
    assert_int_equal(v, OP_ERR_WRONG_EPOCH);
    assert_int_equal(send_batch(4, false, 5, 5, mine, 1, "{}", &v), OP_ERROR);
    assert_int_equal(v, OP_ERR_WRONG_SHARD);
    /* malformed data: refused whole */
    op bad = {.kind = OP_REPL_BATCH, .corr = 4, .orig = 1, .epoch = 5, .has_data = true, .data = sv("garbage")};
    assert_int_equal(send1(PRIMARY, bad, &v), OP_ERROR);
    assert_int_equal(v, OP_ERR_MALFORMED);
    /* nothing of those applied: 4 is still the next; it deletes b */
    assert_int_equal(send_batch(4, false, 5, 5, b, 0, NULL, &v), OP_REPL_ACK);
    wait_acked(4);
    /* the primary's question is answered in kind */
    op ask = {.kind = OP_REPL_ACK, .orig = 1, .epoch = 5};
    assert_int_equal(send1(PRIMARY, ask, &v), OP_REPL_ACK);
    assert_int_equal(v, 4);
    /* a broker may not replicate */
    op bhello = {.kind = OP_HELLO, .epoch = map.epoch, .action = LINK_ROLE_BROKER};
    assert_int_equal(send1(BROKER, bhello, &v), OP_HELLO);
    op from_broker = {.kind = OP_REPL_BATCH, .corr = 1, .orig = 1, .epoch = 5, .flags = OP_FLAG_REPL_START,
                      .has_data = true, .data = sv("x")};
    assert_int_equal(send1(BROKER, from_broker, &v), OP_ERROR);
    assert_int_equal(v, OP_ERR_FORBIDDEN);
    /* the replica does not serve what it holds a copy of: the owner check stays */
    op read = {.kind = OP_RECORD_READ, .name = sv(a), .session = 1, .corr = 9, .epoch = 5,
               .shard = shard_of(a, strlen(a)), .action = 1};
    assert_int_equal(send1(BROKER, read, &v), OP_ERROR);
    assert_int_equal(v, OP_ERR_WRONG_SHARD);

    /* what was acknowledged is in the store */
    node_stop(nd);
    nd = NULL;
    char err[256];
    storage *st = storage_open(dir, err, sizeof(err));
    assert_non_null(st);
    int64_t version;
    char *data;
    size_t len;
    assert_int_equal(storage_get(st, a, strlen(a), &version, &data, &len), 1);
    assert_int_equal(version, 2);
    assert_string_equal(data, "{\"v\":2}");
    xfree(data);
    assert_int_equal(storage_get(st, b, strlen(b), &version, &data, &len), 0);
    storage_close(st);
    nd = node_start(&cfg, NULL, NULL, &map, 1); /* for teardown */
    assert_non_null(nd);
}

/* Writes name -> data at version straight into the store of the stopped node. */
static void seed(storage *st, const char *name, int64_t version, const char *data)
{
    storage_batch *b = storage_batch_new();
    storage_batch_put(b, name, strlen(name), version, data, strlen(data));
    char err[256];
    assert_int_equal(storage_batch_commit(st, b, true, err, sizeof(err)), 0);
    storage_batch_free(b);
}

/* 1 with *version and the data equal to want (NULL: absent) */
static void expect(storage *st, const char *name, int64_t want_version, const char *want)
{
    int64_t version;
    char *data;
    size_t len;
    int found = storage_get(st, name, strlen(name), &version, &data, &len);
    if (want == NULL) {
        assert_int_equal(found, 0);
        return;
    }
    assert_int_equal(found, 1);
    assert_int_equal(version, want_version);
    assert_string_equal(data, want);
    xfree(data);
}

static void test_replica_snapshot(void **state)
{
    (void)state;
    char a[32], b[32], c[32], d[32], e[32], f[32], stale[32], own[32];
    name_on(0, "snap/a", a, sizeof(a));
    name_on(0, "snap/b", b, sizeof(b));
    name_on(0, "snap/c", c, sizeof(c));
    name_on(0, "snap/d", d, sizeof(d));
    name_on(0, "snap/e", e, sizeof(e));
    name_on(0, "snap/f", f, sizeof(f));
    name_on(0, "snap/stale", stale, sizeof(stale));
    name_on(1, "snap/own", own, sizeof(own));
    /* what the node held before: a record of node 0's shards the primary no longer has, and one of its own */
    node_stop(nd);
    char err[256];
    storage *st = storage_open(dir, err, sizeof(err));
    assert_non_null(st);
    seed(st, stale, 3, "{\"old\":true}");
    seed(st, own, 1, "{\"own\":1}");
    storage_close(st);
    nd = node_start(&cfg, NULL, NULL, &map, 1);
    assert_non_null(nd);
    node_tap_deliveries(nd, on_delivery, NULL);
    uint64_t v;
    op hello = {.kind = OP_HELLO, .epoch = map.epoch, .action = LINK_ROLE_NODE};
    assert_int_equal(send1(PRIMARY, hello, &v), OP_HELLO);

    /* a chunk that does not begin a snapshot, on a stream it does not know: asks for one */
    const char *n1[] = {a};
    const int64_t v1[] = {1};
    const char *d1[] = {"{\"a\":1}"};
    assert_int_equal(send_chunk(2, 1, 0, 0, n1, v1, d1, 1, NULL, &v), OP_REPL_RESYNC);
    assert_true(first_reply.flags & OP_FLAG_REPL_SNAPSHOT);
    assert_int_equal(first_reply.orig, OP_REPL_SNAPSHOT);
    assert_int_equal(v, 2);
    /* refused whole: garbage, a number that is not the snapshot's, a set with a shard of node 1's own */
    op bad = {.kind = OP_REPL_SNAPSHOT, .corr = 1, .orig = 1, .epoch = 5, .has_data = true, .data = sv("garbage")};
    assert_int_equal(send1(PRIMARY, bad, &v), OP_ERROR);
    assert_int_equal(v, OP_ERR_MALFORMED);
    assert_int_equal(send_chunk(2, 1, 0, REPLCHUNK_FIRST, n1, v1, d1, 1, NULL, &v), OP_ERROR);
    assert_int_equal(v, OP_ERR_MALFORMED);
    uint8_t wrong[REPLCHUNK_SHARD_SET];
    primary_set(wrong);
    uint32_t theirs = shard_of(own, strlen(own));
    wrong[theirs / 8] |= (uint8_t)(1u << (theirs % 8));
    assert_int_equal(send_chunk(1, 1, 0, REPLCHUNK_FIRST, n1, v1, d1, 1, wrong, &v), OP_ERROR);
    assert_int_equal(v, OP_ERR_WRONG_SHARD);
    const char *nown[] = {own};
    assert_int_equal(send_chunk(1, 1, 0, REPLCHUNK_FIRST, nown, v1, d1, 1, NULL, &v), OP_ERROR);
    assert_int_equal(v, OP_ERR_WRONG_SHARD);

    /* snapshot 1 (chunks 1-2, resuming after batch 0): a, b, c; then batch 1: d */
    const char *n2[] = {a, b};
    const int64_t v2[] = {1, 1};
    const char *d2[] = {"{\"a\":1}", "{\"b\":1}"};
    assert_int_equal(send_chunk(1, 1, 0, REPLCHUNK_FIRST, n2, v2, d2, 2, NULL, &v), OP_REPL_SNAPSHOT_ACK);
    assert_int_equal(send_chunk(1, 1, 0, REPLCHUNK_FIRST, n2, v2, d2, 2, NULL, &v), OP_REPL_SNAPSHOT_ACK); /* again */
    assert_int_equal(send_batch(1, false, 5, 5, d, 1, "{\"d\":1}", &v), OP_REPL_RESYNC); /* before its last chunk */
    assert_true(first_reply.flags & OP_FLAG_REPL_SNAPSHOT);
    const char *n3[] = {c};
    const char *d3[] = {"{\"c\":1}"};
    assert_int_equal(send_chunk(2, 1, 0, REPLCHUNK_LAST, n3, v1, d3, 1, NULL, &v), OP_REPL_SNAPSHOT_ACK);
    wait_chunk_acked(2);
    assert_int_equal(send_batch(1, false, 5, 5, d, 1, "{\"d\":1}", &v), OP_REPL_ACK);
    wait_acked(1);

    /* snapshot 2 (chunks 3-4, resuming after batch 1): a at 5, e; batch 1 again is covered, batch 2 waits */
    const char *n4[] = {a};
    const int64_t v4[] = {5};
    const char *d4[] = {"{\"a\":5}"};
    assert_int_equal(send_chunk(3, 3, 1, REPLCHUNK_FIRST, n4, v4, d4, 1, NULL, &v), OP_REPL_SNAPSHOT_ACK);
    assert_int_equal(send_batch(1, false, 5, 5, d, 1, "{\"d\":1}", &v), OP_REPL_ACK); /* covered */
    assert_int_equal(send_batch(2, false, 5, 5, f, 1, "{\"f\":1}", &v), OP_REPL_RESYNC);
    assert_true(first_reply.flags & OP_FLAG_REPL_SNAPSHOT);
    assert_int_equal(send_chunk(5, 3, 1, 0, n4, v4, d4, 1, NULL, &v), OP_REPL_RESYNC); /* a gap */
    assert_true(first_reply.flags & OP_FLAG_REPL_SNAPSHOT);
    assert_int_equal(send_chunk(2, 1, 0, REPLCHUNK_LAST, n3, v1, d3, 1, NULL, &v), OP_REPL_SNAPSHOT_ACK); /* older */
    const char *n5[] = {e};
    const int64_t v5[] = {2};
    const char *d5[] = {"{\"e\":2}"};
    assert_int_equal(send_chunk(4, 3, 1, REPLCHUNK_LAST, n5, v5, d5, 1, NULL, &v), OP_REPL_SNAPSHOT_ACK);
    wait_chunk_acked(4);
    assert_int_equal(send_batch(2, false, 5, 5, f, 1, "{\"f\":1}", &v), OP_REPL_ACK);
    wait_acked(2);
    /* the question is answered in kind (and with the chunks durable) */
    op ask = {.kind = OP_REPL_ACK, .orig = 1, .epoch = 5};
    assert_int_equal(send1(PRIMARY, ask, &v), OP_REPL_ACK);
    assert_int_equal(v, 2);

    /* the store equals snapshot 2 plus batch 2; its own record stays */
    node_stop(nd);
    nd = NULL;
    st = storage_open(dir, err, sizeof(err));
    assert_non_null(st);
    expect(st, a, 5, "{\"a\":5}");
    expect(st, e, 2, "{\"e\":2}");
    expect(st, f, 1, "{\"f\":1}");
    expect(st, b, 0, NULL);
    expect(st, c, 0, NULL);
    expect(st, d, 0, NULL);
    expect(st, stale, 0, NULL);
    expect(st, own, 1, "{\"own\":1}");
    storage_close(st);
    nd = node_start(&cfg, NULL, NULL, &map, 1); /* for teardown */
    assert_non_null(nd);
}

/* ---------------- fencing by the committed map ---------------- */

static void apply_ok(metamap *mm, meta_cmd c)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(metacmd_encode(&c, &sb), 0);
    assert_int_equal(metamap_apply_bytes(mm, sb.data, sb.size), META_OK);
    msgpack_sbuffer_destroy(&sb);
}

static void add_member(metamap *mm, uint16_t id, const char *name)
{
    char req[32], del[32], raft[32];
    snprintf(req, sizeof(req), "tcp://127.0.0.1:%u", 100u * id + 1);
    snprintf(del, sizeof(del), "tcp://127.0.0.1:%u", 100u * id + 2);
    snprintf(raft, sizeof(raft), "127.0.0.1:%u", 100u * id + 3);
    apply_ok(mm, (meta_cmd){.kind = META_ADD_NODE, .node = id, .name = name, .name_len = (uint32_t)strlen(name),
                            .request = req, .request_len = (uint32_t)strlen(req), .delivery = del,
                            .delivery_len = (uint32_t)strlen(del), .raft = raft, .raft_len = (uint32_t)strlen(raft)});
}

static void test_replica_fencing_by_map(void **state)
{
    (void)state;
    uint64_t v;
    op hello = {.kind = OP_HELLO, .epoch = map.epoch, .action = LINK_ROLE_NODE};
    assert_int_equal(send1(PRIMARY, hello, &v), OP_HELLO);
    char kept[32], moved[32], dropped[32], raised[32];
    name_on(0, "fence/k", kept, sizeof(kept));
    name_on(0, "fence/m", moved, sizeof(moved));
    name_on(0, "fence/d", dropped, sizeof(dropped));
    name_on(0, "fence/r", raised, sizeof(raised));
    uint32_t sk = shard_of(kept, strlen(kept)), sm = shard_of(moved, strlen(moved)),
             sd = shard_of(dropped, strlen(dropped)), sr = shard_of(raised, strlen(raised));
    assert_true(sk != sm && sk != sd && sk != sr && sm != sd && sm != sr && sd != sr);
    /* the static layout at epoch 5 (node 0 = member 1 primary, this node = member 2 its replica) */
    metamap *mm = xmalloc(sizeof(*mm));
    metamap_init(mm);
    add_member(mm, 1, "node1");
    add_member(mm, 2, "node2");
    apply_ok(mm, (meta_cmd){.kind = META_SPREAD, .ncopies = 2, .epoch = 5});
    for (uint32_t sh = 0; sh < SHARD_COUNT; sh++)
        assert_int_equal(mm->shards[sh].copies[0], shardmap_owner(&map, sh) + 1);
    /* moved: this node is its primary now (epoch 6); dropped: no copy here;
     * raised: back on member 1 at epoch 7 (promoted away and back) */
    apply_ok(mm, (meta_cmd){.kind = META_PROMOTE, .shard = sm, .epoch = 5, .node = 2});
    apply_ok(mm, (meta_cmd){.kind = META_DROP_COPY, .shard = sd, .epoch = 5, .node = 2});
    apply_ok(mm, (meta_cmd){.kind = META_PROMOTE, .shard = sr, .epoch = 5, .node = 2});
    apply_ok(mm, (meta_cmd){.kind = META_SET_INSYNC, .shard = sr, .epoch = 6, .insync = {2, 1}, .ninsync = 2});
    apply_ok(mm, (meta_cmd){.kind = META_PROMOTE, .shard = sr, .epoch = 6, .node = 1});
    assert_true(mm->shards[sr].epoch == 7 && mm->shards[sr].copies[0] == 1 && mm->shards[sr].copies[1] == 2);
    node_follow_metamap(nd, mm);
    /* the stream starts (an empty snapshot of the shards member 1 is primary of, with a copy here) */
    uint8_t set[REPLCHUNK_SHARD_SET] = {0};
    for (uint32_t sh = 0; sh < SHARD_COUNT; sh++)
        if (mm->shards[sh].ncopies == 2 && mm->shards[sh].copies[0] == 1)
            set[sh / 8] |= (uint8_t)(1u << (sh % 8));
    assert_int_equal(send_chunk(1, 1, 0, REPLCHUNK_FIRST | REPLCHUNK_LAST, NULL, NULL, NULL, 0, set, &v),
                     OP_REPL_SNAPSHOT_ACK);
    wait_chunk_acked(1);
    assert_int_equal(send_batch(1, true, 5, 5, kept, 1, "{\"k\":1}", &v), OP_REPL_ACK);
    wait_acked(1);
    /* a shard this node is primary of now: the old primary's items are refused, at any epoch */
    assert_int_equal(send_batch(2, false, 5, 5, moved, 1, "{}", &v), OP_ERROR);
    assert_int_equal(v, OP_ERR_WRONG_EPOCH); /* its epoch 5 is below the shard's 6 */
    assert_int_equal(send_batch(2, false, 5, 6, moved, 1, "{}", &v), OP_ERROR);
    assert_int_equal(v, OP_ERR_WRONG_SHARD); /* at the right epoch, still not its primary */
    /* a shard this node holds no copy of */
    assert_int_equal(send_batch(2, false, 5, 5, dropped, 1, "{}", &v), OP_ERROR);
    assert_int_equal(v, OP_ERR_WRONG_SHARD);
    /* a shard whose epoch went up: the old epoch's items are a stale primary's; the new one's are taken */
    assert_int_equal(send_batch(2, false, 5, 5, raised, 1, "{}", &v), OP_ERROR);
    assert_int_equal(v, OP_ERR_WRONG_EPOCH);
    assert_int_equal(send_batch(2, false, 5, 8, raised, 1, "{}", &v), OP_ERROR);
    assert_int_equal(v, OP_ERR_WRONG_EPOCH); /* above the map this node has: it is behind */
    assert_int_equal(send_batch(2, false, 5, 7, raised, 3, "{\"r\":3}", &v), OP_REPL_ACK);
    wait_acked(2);
    /* the static map alone would have taken every one of them: the committed map decides */
    node_stop(nd);
    nd = NULL;
    char err[256];
    storage *st = storage_open(dir, err, sizeof(err));
    assert_non_null(st);
    expect(st, kept, 1, "{\"k\":1}");
    expect(st, raised, 3, "{\"r\":3}");
    expect(st, moved, 0, NULL);
    expect(st, dropped, 0, NULL);
    storage_close(st);
    nd = node_start(&cfg, NULL, NULL, &map, 1); /* for teardown */
    assert_non_null(nd);
    xfree(mm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_codec_bounds),
        cmocka_unit_test(test_chunk_codec),
        cmocka_unit_test(test_replicas_of),
        cmocka_unit_test_setup_teardown(test_replica_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replica_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replica_fencing_by_map, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
