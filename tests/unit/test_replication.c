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
 * to serve them (it is not their owner). */
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

static int see_ack(void *arg, const op *o)
{
    (void)arg;
    if (o->kind == OP_REPL_ACK && o->corr > acks_delivered)
        acks_delivered = o->corr;
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
    acks_delivered = 0;
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

static uint64_t delivered(void)
{
    pthread_mutex_lock(&tap_lock);
    uint64_t v = acks_delivered;
    pthread_mutex_unlock(&tap_lock);
    return v;
}

/* Waits (5 s at most) for the delivered acknowledgement to reach seq. */
static void wait_acked(uint64_t seq)
{
    for (int i = 0; i < 500 && delivered() < seq; i++)
        usleep(10000);
    assert_true(delivered() >= seq);
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
    /* a new stream starts only at a START batch: asked for one (resync from 0) */
    assert_int_equal(send_batch(1, false, 5, 5, a, 1, "{\"v\":1}", &v), OP_REPL_RESYNC);
    assert_int_equal(v, 0);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_codec_bounds),
        cmocka_unit_test(test_replicas_of),
        cmocka_unit_test_setup_teardown(test_replica_stream, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
