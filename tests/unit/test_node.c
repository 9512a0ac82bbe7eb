/* test_node.c - the node engine, driven as its peers drive it but without a
 * socket: each test starts a real node (RocksDB in a scratch folder, its
 * executor and storage threads), plays several brokers and backends by
 * sending request batches through node_local_request, and reads what the node
 * publishes to each of them through the delivery tap. Covered: record
 * versions, answers in the order they were produced, path patches, delete and
 * re-create, a restart keeping what was acknowledged; RPC balancing, reroute
 * on reject, both timeouts, provider loss, late answers; listen offers,
 * accept, reject, timeout and removal; presence counted across peers; peers
 * dropped on BYE and for silence; malformed operations next to good ones. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "config.h"
#include "deepstream.pb-c.h"
#include "log.h"
#include "mem.h"
#include "node.h"
#include "ops.h"
#include "shardmap.h"
#include "util.h"

#define RACT(x) RECORD__ACTION__RECORD_##x
#define PACT(x) RPC__ACTION__RPC_##x
#define PRES(x) PRESENCE__ACTION__PRESENCE_##x
#define WAIT_MS 5000 /* how long a test waits for a delivery it expects */

/* Peers the tests play: three brokers and a watcher. */
enum { A = 0xA1, B = 0xB2, C = 0xC3, W = 0xD4 };

/* ---------------- the delivery tap: what the node published, per peer ---------------- */

typedef struct seen {
    uint64_t peer;
    op o; /* points into msg */
    bool taken;
} seen;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t grew;
    seen *v;
    size_t n, cap;
    nng_msg **msgs;
    size_t nmsgs, msgs_cap;
} tap = {.lock = PTHREAD_MUTEX_INITIALIZER, .grew = PTHREAD_COND_INITIALIZER};

struct each_ctx {
    uint64_t peer;
};

static int keep_op(void *arg, const op *o)
{
    struct each_ctx *x = arg;
    if (tap.n == tap.cap) {
        tap.cap = tap.cap ? tap.cap * 2 : 256;
        tap.v = xrealloc(tap.v, tap.cap * sizeof(*tap.v));
    }
    tap.v[tap.n++] = (seen){.peer = x->peer, .o = *o};
    return 0;
}

/* The node's tap: keeps msg (owned) and the operations in it. */
static void on_delivery(void *ctx, nng_msg *msg)
{
    (void)ctx;
    const uint8_t *body = nng_msg_body(msg);
    size_t len = nng_msg_len(msg);
    assert_true(len >= 8);
    struct each_ctx x = {get_be64(body)};
    pthread_mutex_lock(&tap.lock);
    assert_int_equal(op_batch_each(body + 8, len - 8, keep_op, &x), 0);
    if (tap.nmsgs == tap.msgs_cap) {
        tap.msgs_cap = tap.msgs_cap ? tap.msgs_cap * 2 : 64;
        tap.msgs = xrealloc(tap.msgs, tap.msgs_cap * sizeof(*tap.msgs));
    }
    tap.msgs[tap.nmsgs++] = msg;
    pthread_cond_broadcast(&tap.grew);
    pthread_mutex_unlock(&tap.lock);
}

static void tap_clear(void)
{
    pthread_mutex_lock(&tap.lock);
    for (size_t i = 0; i < tap.nmsgs; i++)
        nng_msg_free(tap.msgs[i]);
    xfree(tap.msgs);
    xfree(tap.v);
    tap.msgs = NULL;
    tap.v = NULL;
    tap.n = tap.cap = tap.nmsgs = tap.msgs_cap = 0;
    pthread_mutex_unlock(&tap.lock);
}

/* The first delivery to peer (or to or_peer) of this kind not taken yet,
 * waiting up to ms for it; taken, and *who (may be NULL) is whom it went to.
 * NULL when none came. The caller holds tap.lock. */
static const op *take_locked2(uint64_t peer, uint64_t or_peer, uint32_t kind, int ms, uint64_t *who)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    for (;;) {
        for (size_t i = 0; i < tap.n; i++)
            if (!tap.v[i].taken && (tap.v[i].peer == peer || tap.v[i].peer == or_peer) && tap.v[i].o.kind == kind) {
                tap.v[i].taken = true;
                if (who != NULL)
                    *who = tap.v[i].peer;
                return &tap.v[i].o;
            }
        if (pthread_cond_timedwait(&tap.grew, &tap.lock, &until) != 0)
            return NULL;
    }
}

static const op *take_locked(uint64_t peer, uint32_t kind, int ms)
{
    return take_locked2(peer, peer, kind, ms, NULL);
}

/* The next delivery of this kind to peer (a copy: the strings stay valid
 * until tap_clear). Fails the test when none comes within WAIT_MS. */
static op next_to(uint64_t peer, uint32_t kind)
{
    pthread_mutex_lock(&tap.lock);
    const op *o = take_locked(peer, kind, WAIT_MS);
    op copy = o != NULL ? *o : (op){0};
    pthread_mutex_unlock(&tap.lock);
    if (o == NULL)
        fail_msg("no %s delivered to peer %llx within %d ms", op_kind_name(kind), (unsigned long long)peer, WAIT_MS);
    return copy;
}

/* Asserts that nothing of this kind reaches peer within ms. */
static void nothing_to(uint64_t peer, uint32_t kind, int ms)
{
    pthread_mutex_lock(&tap.lock);
    const op *o = take_locked(peer, kind, ms);
    uint32_t action = o != NULL ? o->action : 0;
    pthread_mutex_unlock(&tap.lock);
    if (o != NULL)
        fail_msg("unexpected %s (action %u) delivered to peer %llx", op_kind_name(kind), action,
                 (unsigned long long)peer);
}

static bool sv_is(strview v, const char *s)
{
    return v.len == strlen(s) && memcmp(v.ptr, s, v.len) == 0;
}

#define assert_sv(v, s)                                                                                 \
    do {                                                                                                \
        strview v_ = (v);                                                                               \
        if (!sv_is(v_, s))                                                                              \
            fail_msg("got \"%.*s\", expected \"%s\"", (int)v_.len, v_.ptr ? v_.ptr : "", (s));          \
    } while (0)

/* ---------------- the node, and its peers' requests ---------------- */

static eddy_config cfg;
static shardmap map;
static node *nd;
static char dir[64];
static uint64_t seqs[256];

/* Starts a node on the scratch folder with the test's timeouts (cfg may be
 * changed before). */
static void start(void)
{
    map.epoch = 0;
    assert_int_equal(shardmap_init_even(&map, 1, 7), 0);
    nd = node_start(&cfg, NULL, NULL, &map, 0);
    assert_non_null(nd);
    node_tap_deliveries(nd, on_delivery, NULL);
}

static void stop(void)
{
    node_stop(nd);
    nd = NULL;
}

static int setup(void **state)
{
    (void)state;
    log_threshold = LOG_ERROR;
    strcpy(dir, "/tmp/eddy-test-node-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    config_defaults(&cfg);
    xfree(cfg.data_dir);
    cfg.data_dir = xstrdup(dir);
    cfg.rpc_ack_timeout_ms = 300;
    cfg.rpc_response_timeout_ms = 400;
    cfg.listen_response_timeout_ms = 300;
    cfg.listen_shuffle_providers = 0; /* deepstream's order: the tests know who is asked first */
    memset(seqs, 0, sizeof(seqs));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    stop();
    tap_clear();
    config_free(&cfg);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

/* A reply's operations (they point into msg). */
typedef struct reply {
    nng_msg *msg;
    op v[64];
    uint32_t n;
} reply;

static int keep_reply(void *arg, const op *o)
{
    reply *r = arg;
    assert_true(r->n < 64);
    r->v[r->n++] = *o;
    return 0;
}

/* Routes o to this node's map (epoch and shard of its name, or of ref for a listen answer). */
static op routed(op o)
{
    o.epoch = map.epoch;
    strview by = o.kind == OP_LISTEN_ANSWER ? o.ref : o.name;
    o.shard = shard_of(by.ptr, by.len);
    return o;
}

/* Sends one batch from peer holding the encoded operations of b; returns the reply. */
static reply *send_batch(uint64_t from, op_batch *b)
{
    uint8_t hdr[OP_BATCH_HEADER_MAX];
    size_t h = op_batch_header(hdr, from, ++seqs[from & 0xff], b->count);
    size_t len = h + b->buf.size;
    uint8_t *body = xmalloc(len);
    memcpy(body, hdr, h);
    if (b->buf.size > 0)
        memcpy(body + h, b->buf.data, b->buf.size);
    reply *r = xcalloc(1, sizeof(*r));
    r->msg = node_local_request(nd, body, len);
    xfree(body);
    assert_non_null(r->msg);
    assert_int_equal(op_batch_each(nng_msg_body(r->msg), nng_msg_len(r->msg), keep_reply, r), 0);
    return r;
}

static void reply_free(reply *r)
{
    nng_msg_free(r->msg);
    xfree(r);
}

/* Sends the n operations (routed) from peer in one batch; frees the reply
 * after checking it holds no ERROR. */
static void send_ops(uint64_t from, const op *ops, int n)
{
    op_batch b;
    op_batch_init(&b);
    for (int i = 0; i < n; i++) {
        op o = routed(ops[i]);
        op_batch_add(&b, &o);
    }
    reply *r = send_batch(from, &b);
    op_batch_destroy(&b);
    for (uint32_t i = 0; i < r->n; i++)
        if (r->v[i].kind == OP_ERROR)
            fail_msg("peer %llx: operation answered with ERROR %u", (unsigned long long)from, r->v[i].error);
    reply_free(r);
}

static void send1(uint64_t from, op o)
{
    send_ops(from, &o, 1);
}

static void hello(uint64_t peer)
{
    send1(peer, (op){.kind = OP_HELLO});
    assert_int_equal(next_to(peer, OP_HELLO).kind, OP_HELLO);
}

static strview sv(const char *s)
{
    return (strview){s, (uint32_t)strlen(s)};
}

static op write_op(const char *name, uint32_t action, int64_t version, const char *path, const char *data,
                   const char *ref)
{
    return (op){.kind = OP_RECORD_WRITE, .name = sv(name), .session = 1, .action = action, .has_version = true,
                .version = version, .path = path ? sv(path) : (strview){0}, .has_data = data != NULL,
                .data = data ? sv(data) : (strview){0}, .ref = ref ? sv(ref) : (strview){0},
                .flags = ref ? OP_FLAG_WRITE_ACK : 0};
}

static op read_op(const char *name, uint64_t corr)
{
    return (op){.kind = OP_RECORD_READ, .name = sv(name), .session = 1, .corr = corr, .action = RACT(READ)};
}

static op subscribe_op(const char *name, uint64_t session)
{
    return (op){.kind = OP_RECORD_SUBSCRIBE, .name = sv(name), .session = session,
                .action = RACT(SUBSCRIBECREATEANDREAD)};
}

/* The record as a READ from peer sees it. */
static op read_back(uint64_t peer, const char *name)
{
    send1(peer, read_op(name, 77));
    op st = next_to(peer, OP_RECORD_STATE);
    assert_int_equal(st.corr, 77);
    return st;
}

/* ---------------- records ---------------- */

static void test_record_versions(void **state)
{
    (void)state;
    start();
    hello(A);
    hello(B);
    send1(B, subscribe_op("rec/v", 9));
    op st = next_to(B, OP_RECORD_STATE);
    assert_int_equal(st.session, 9);
    assert_int_equal(st.version, 0);
    assert_sv(st.data, "{}");

    send1(A, write_op("rec/v", RACT(UPDATE), 1, NULL, "{\"a\":1}", "w1"));
    op ack = next_to(A, OP_RECORD_RESULT);
    assert_int_equal(ack.action, RACT(WRITE_ACKNOWLEDGEMENT));
    assert_sv(ack.ref, "w1");
    assert_int_equal(ack.version, 1);
    op up = next_to(B, OP_RECORD_UPDATE);
    assert_int_equal(up.version, 1);
    assert_int_equal(up.broker, A); /* the writer's broker skips its own session */
    assert_sv(up.data, "{\"a\":1}");

    /* the same version again: VERSION_EXISTS with the current state */
    send1(A, write_op("rec/v", RACT(UPDATE), 1, NULL, "{\"a\":2}", "w2"));
    op dup = next_to(A, OP_RECORD_RESULT);
    assert_int_equal(dup.action, RACT(VERSION_EXISTS));
    assert_true(dup.flags & OP_FLAG_ERROR);
    assert_int_equal(dup.version, 1);
    assert_sv(dup.data, "{\"a\":1}");
    /* a version from the future: INVALID_VERSION, nothing written */
    send1(A, write_op("rec/v", RACT(UPDATE), 5, NULL, "{\"a\":3}", "w3"));
    op fut = next_to(A, OP_RECORD_RESULT);
    assert_int_equal(fut.action, RACT(INVALID_VERSION));
    assert_int_equal(fut.version, 1);
    /* then the record as it is, with which the broker corrects the writer's copy */
    op fix = next_to(A, OP_RECORD_RESULT);
    assert_true(fix.flags & OP_FLAG_CORRECT);
    assert_false(fix.flags & OP_FLAG_ERROR);
    assert_int_equal(fix.version, 1);
    assert_sv(fix.data, "{\"a\":1}");
    /* -1: the next version, whatever it is */
    send1(A, write_op("rec/v", RACT(UPDATE), -1, NULL, "{\"a\":4}", "w4"));
    op next = next_to(A, OP_RECORD_RESULT);
    assert_int_equal(next.action, RACT(WRITE_ACKNOWLEDGEMENT));
    assert_int_equal(next.version, 2);
    op up2 = next_to(B, OP_RECORD_UPDATE);
    assert_int_equal(up2.version, 2);
    assert_sv(up2.data, "{\"a\":4}");
    nothing_to(B, OP_RECORD_UPDATE, 50); /* the refused writes were never announced */
    /* writing a record that does not exist with a version: refused */
    send1(A, write_op("rec/none", RACT(UPDATE), 3, NULL, "{}", "w5"));
    assert_int_equal(next_to(A, OP_RECORD_RESULT).action, RACT(RECORD_UPDATE_ERROR));
    /* a whole-record value must be an object or array */
    send1(A, write_op("rec/v", RACT(UPDATE), 3, NULL, "7", "w6"));
    assert_int_equal(next_to(A, OP_RECORD_RESULT).action, RACT(INVALID_MESSAGE_DATA));
    assert_int_equal(read_back(A, "rec/v").version, 2);
}

/* Answers about one record leave in the order their operations came, each
 * after the writes before it are durable: a read after a write sees it. */
static void test_answers_in_order(void **state)
{
    (void)state;
    start();
    hello(A);
    enum { N = 40 };
    op ops[2 * N];
    char data[N][32], ref[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(data[i], sizeof(data[i]), "{\"i\":%d}", i + 1);
        snprintf(ref[i], sizeof(ref[i]), "w%d", i + 1);
        ops[2 * i] = write_op("rec/o", RACT(CREATEANDUPDATE), i + 1, NULL, data[i], ref[i]);
        ops[2 * i + 1] = read_op("rec/o", (uint64_t)i + 1);
    }
    send_ops(A, ops, 2 * N);
    /* every answer to A, in the order delivered */
    for (int i = 0; i < N; i++) {
        pthread_mutex_lock(&tap.lock);
        const op *a = NULL, *r = NULL;
        size_t ia = 0, ir = 0;
        for (size_t k = 0; k < tap.n && (a == NULL || r == NULL); k++) {
            if (tap.v[k].peer != A || tap.v[k].taken)
                continue;
            if (a == NULL && tap.v[k].o.kind == OP_RECORD_RESULT) {
                a = &tap.v[k].o;
                ia = k;
            } else if (r == NULL && tap.v[k].o.kind == OP_RECORD_STATE) {
                r = &tap.v[k].o;
                ir = k;
            }
        }
        pthread_mutex_unlock(&tap.lock);
        if (a == NULL || r == NULL) { /* not there yet: wait for the next */
            op wa = next_to(A, OP_RECORD_RESULT);
            op wr = next_to(A, OP_RECORD_STATE);
            assert_sv(wa.ref, ref[i]);
            assert_int_equal(wr.corr, i + 1);
            assert_int_equal(wr.version, i + 1);
            continue;
        }
        assert_true(ia < ir); /* the write's acknowledgement, then the read */
        op wa = next_to(A, OP_RECORD_RESULT), wr = next_to(A, OP_RECORD_STATE);
        assert_int_equal(wa.action, RACT(WRITE_ACKNOWLEDGEMENT));
        assert_sv(wa.ref, ref[i]);
        assert_int_equal(wa.version, i + 1);
        assert_int_equal(wr.corr, i + 1);
        assert_int_equal(wr.version, i + 1);
        assert_sv(wr.data, data[i]);
    }
}

static void test_path_patches(void **state)
{
    (void)state;
    start();
    hello(A);
    hello(B);
    send1(B, subscribe_op("rec/p", 3));
    assert_int_equal(next_to(B, OP_RECORD_STATE).version, 0);
    send1(A, write_op("rec/p", RACT(PATCH), 1, "a.b[2]", "1", "p1"));
    assert_int_equal(next_to(A, OP_RECORD_RESULT).action, RACT(WRITE_ACKNOWLEDGEMENT));
    op up = next_to(B, OP_RECORD_UPDATE);
    assert_int_equal(up.action, RACT(PATCH)); /* a patch travels as one */
    assert_sv(up.path, "a.b[2]");
    assert_sv(up.data, "1");
    assert_sv(read_back(A, "rec/p").data, "{\"a\":{\"b\":[null,null,1]}}");
    send1(A, write_op("rec/p", RACT(PATCH), 2, "a.c", "\"x\"", "p2"));
    assert_int_equal(next_to(A, OP_RECORD_RESULT).action, RACT(WRITE_ACKNOWLEDGEMENT));
    send1(A, write_op("rec/p", RACT(ERASE), 3, "a.b", NULL, "p3"));
    assert_int_equal(next_to(A, OP_RECORD_RESULT).action, RACT(WRITE_ACKNOWLEDGEMENT));
    op st = read_back(A, "rec/p");
    assert_int_equal(st.version, 3);
    assert_sv(st.data, "{\"a\":{\"c\":\"x\"}}");
    /* refused: a patch without a path, a value that is not JSON */
    send1(A, write_op("rec/p", RACT(PATCH), 4, NULL, "1", "p4"));
    assert_int_equal(next_to(A, OP_RECORD_RESULT).action, RACT(INVALID_MESSAGE_DATA));
    send1(A, write_op("rec/p", RACT(PATCH), 4, "a.d", "{nope", "p5"));
    assert_int_equal(next_to(A, OP_RECORD_RESULT).action, RACT(INVALID_MESSAGE_DATA));
    /* a patch that would grow the record past record.maxSize */
    send1(A, write_op("rec/p", RACT(PATCH), 4, "big[100000][100000][100000]", "1", "p7"));
    assert_int_equal(next_to(A, OP_RECORD_RESULT).action, RACT(RECORD_UPDATE_ERROR));
    assert_int_equal(read_back(A, "rec/p").version, 3);
}

static void test_delete_recreate_restart(void **state)
{
    (void)state;
    start();
    hello(A);
    hello(B);
    send1(B, subscribe_op("rec/d", 4));
    next_to(B, OP_RECORD_STATE);
    send1(A, write_op("rec/d", RACT(UPDATE), 1, NULL, "{\"v\":1}", "d1"));
    next_to(A, OP_RECORD_RESULT);
    next_to(B, OP_RECORD_UPDATE);
    send1(A, (op){.kind = OP_RECORD_DELETE, .name = sv("rec/d"), .session = 1, .corr = 5});
    op res = next_to(A, OP_RECORD_RESULT);
    assert_int_equal(res.action, RACT(DELETE_SUCCESS));
    assert_int_equal(res.corr, 5);
    assert_int_equal(next_to(B, OP_RECORD_DELETED).kind, OP_RECORD_DELETED);
    op gone = read_back(A, "rec/d");
    assert_int_equal(gone.version, -1);
    assert_false(gone.has_data);
    /* re-created from version 0; B's subscription ended with the record */
    send1(A, write_op("rec/d", RACT(CREATEANDUPDATE), 1, NULL, "{\"v\":2}", "d2"));
    op ack = next_to(A, OP_RECORD_RESULT);
    assert_int_equal(ack.action, RACT(WRITE_ACKNOWLEDGEMENT));
    assert_int_equal(ack.version, 1);
    nothing_to(B, OP_RECORD_UPDATE, 100);
    send1(A, write_op("rec/keep", RACT(CREATEANDUPDATE), -1, NULL, "[1,2,3]", "d3"));
    next_to(A, OP_RECORD_RESULT);
    send1(A, (op){.kind = OP_RECORD_DELETE, .name = sv("rec/gone"), .session = 1, .corr = 6});
    next_to(A, OP_RECORD_RESULT);

    /* what was acknowledged survives a restart */
    stop();
    tap_clear();
    start();
    memset(seqs, 0, sizeof(seqs));
    hello(A);
    op d = read_back(A, "rec/d");
    assert_int_equal(d.version, 1);
    assert_sv(d.data, "{\"v\":2}");
    op k = read_back(A, "rec/keep");
    assert_int_equal(k.version, 1);
    assert_sv(k.data, "[1,2,3]");
    assert_int_equal(read_back(A, "rec/gone").version, -1);
}

/* ---------------- RPC ---------------- */

static op provide(uint64_t session)
{
    return (op){.kind = OP_RPC_PROVIDE, .name = sv("add"), .session = session};
}

static op call_op(const char *cid)
{
    return (op){.kind = OP_RPC_REQUEST, .name = sv("add"), .session = 1, .ref = sv(cid), .has_data = true,
                .data = sv("[1,2]")};
}

/* A provider's answer to the request it was sent (req). */
static op answer_op(const op *req, uint32_t action, const char *data)
{
    return (op){.kind = OP_RPC_ANSWER, .name = sv("add"), .session = req->session, .ref = req->ref,
                .action = action, .has_data = data != NULL, .data = data ? sv(data) : (strview){0}};
}

/* The next RPC message to peer, which must have this action. */
static op rpc_to(uint64_t peer, uint32_t action)
{
    op m = next_to(peer, OP_RPC_MESSAGE);
    if (m.action != action)
        fail_msg("RPC message %u to peer %llx, expected %u", m.action, (unsigned long long)peer, action);
    return m;
}

/* The next request sent to B or C; *who is which. */
static op request_to_b_or_c(uint64_t *who)
{
    pthread_mutex_lock(&tap.lock);
    const op *m = take_locked2(B, C, OP_RPC_MESSAGE, WAIT_MS, who);
    op copy = m != NULL ? *m : (op){0};
    pthread_mutex_unlock(&tap.lock);
    if (m == NULL)
        fail_msg("no RPC request reached a provider");
    assert_int_equal(copy.action, PACT(REQUEST));
    assert_int_equal(copy.session, *who == B ? 21 : 31);
    return copy;
}

static void two_providers(void)
{
    start();
    hello(A);
    hello(B);
    hello(C);
    send1(B, provide(21));
    send1(C, provide(31));
}

static void test_rpc_balance_and_reroute(void **state)
{
    (void)state;
    two_providers();
    /* round robin: four calls, two to each provider, each answered */
    int to_b = 0, to_c = 0;
    for (int i = 0; i < 4; i++) {
        char cid[16];
        snprintf(cid, sizeof(cid), "c%d", i);
        send1(A, call_op(cid));
        uint64_t who;
        op req = request_to_b_or_c(&who);
        assert_sv(req.data, "[1,2]");
        if (who == B)
            to_b++;
        else
            to_c++;
        send1(who, answer_op(&req, PACT(RESPONSE), "3"));
        op res = rpc_to(A, PACT(RESPONSE));
        assert_sv(res.ref, cid); /* the caller's own correlation id */
        assert_sv(res.data, "3");
    }
    assert_int_equal(to_b, 2);
    assert_int_equal(to_c, 2);
    /* the answer again: the call is over, the provider is told so */
    send1(A, call_op("again"));
    uint64_t who;
    op req = request_to_b_or_c(&who);
    send1(who, answer_op(&req, PACT(RESPONSE), "3"));
    rpc_to(A, PACT(RESPONSE));
    send1(who, answer_op(&req, PACT(RESPONSE), "4"));
    op late = rpc_to(who, PACT(INVALID_RPC_CORRELATION_ID));
    assert_true(late.flags & OP_FLAG_ERROR);
    nothing_to(A, OP_RPC_MESSAGE, 50);

    /* a reject moves the call to the provider not tried yet; both rejecting: no provider */
    send1(A, call_op("r1"));
    uint64_t first;
    op r1 = request_to_b_or_c(&first);
    send1(first, answer_op(&r1, PACT(REJECT), NULL));
    uint64_t second;
    op r2 = request_to_b_or_c(&second);
    assert_true(second != first);
    assert_true(r2.ref.len == r1.ref.len && memcmp(r2.ref.ptr, r1.ref.ptr, r1.ref.len) == 0); /* the same call */
    send1(second, answer_op(&r2, PACT(REJECT), NULL));
    op none = rpc_to(A, PACT(NO_RPC_PROVIDER));
    assert_sv(none.ref, "r1");
}

static void test_rpc_timeouts(void **state)
{
    (void)state;
    two_providers();
    /* nobody accepts: ACCEPT_TIMEOUT after rpc.ackTimeout (the call is not moved on) */
    int64_t t0 = now_ms();
    send1(A, call_op("t1"));
    uint64_t who;
    op req = request_to_b_or_c(&who);
    op to = rpc_to(A, PACT(ACCEPT_TIMEOUT));
    assert_sv(to.ref, "t1");
    assert_true(now_ms() - t0 >= cfg.rpc_ack_timeout_ms);
    /* accepted but never answered: RESPONSE_TIMEOUT after rpc.responseTimeout */
    send1(A, call_op("t2"));
    req = request_to_b_or_c(&who);
    t0 = now_ms();
    send1(who, answer_op(&req, PACT(ACCEPT), NULL));
    rpc_to(A, PACT(ACCEPT));
    send1(who, answer_op(&req, PACT(ACCEPT), NULL)); /* twice: MULTIPLE_ACCEPT to the provider */
    rpc_to(who, PACT(MULTIPLE_ACCEPT));
    op rt = rpc_to(A, PACT(RESPONSE_TIMEOUT));
    assert_sv(rt.ref, "t2");
    assert_true(now_ms() - t0 >= cfg.rpc_response_timeout_ms);
    /* an answer after the timeout changes nothing for the caller */
    send1(who, answer_op(&req, PACT(RESPONSE), "1"));
    rpc_to(who, PACT(INVALID_RPC_CORRELATION_ID));
    nothing_to(A, OP_RPC_MESSAGE, 50);
}

static void test_rpc_provider_loss(void **state)
{
    (void)state;
    two_providers();
    /* a provider leaving before it accepted: the call moves to the other */
    send1(A, call_op("l1"));
    uint64_t who;
    op req = request_to_b_or_c(&who);
    uint64_t other = who == B ? C : B;
    send1(who, (op){.kind = OP_RPC_UNPROVIDE, .name = sv("add"), .session = req.session});
    op moved = rpc_to(other, PACT(REQUEST));
    /* the other accepts, then its broker goes away: the caller gets an error at once */
    send1(other, answer_op(&moved, PACT(ACCEPT), NULL));
    rpc_to(A, PACT(ACCEPT));
    send1(other, (op){.kind = OP_BYE});
    op gone = rpc_to(A, PACT(REQUEST_ERROR));
    assert_sv(gone.ref, "l1");
    assert_sv(gone.data, "\"RPC_PROVIDER_GONE\"");
    /* no provider is left */
    send1(A, call_op("l2"));
    assert_sv(rpc_to(A, PACT(NO_RPC_PROVIDER)).ref, "l2");
    /* a caller going away: its provider's answer goes nowhere and breaks nothing */
    send1(who, provide(who == B ? 21 : 31));
    send1(A, call_op("l3"));
    req = rpc_to(who, PACT(REQUEST));
    send1(A, (op){.kind = OP_BYE});
    send1(who, answer_op(&req, PACT(RESPONSE), "9"));
    nothing_to(A, OP_RPC_MESSAGE, 50);
}

/* ---------------- listening ---------------- */

static op listen_op(const char *pattern, uint64_t session, int topic)
{
    return (op){.kind = OP_LISTEN, .name = sv(pattern), .session = session, .orig = (uint32_t)topic};
}

static op listen_answer(const op *offer, bool accept)
{
    uint32_t action = offer->orig == TOPIC__TOPIC_RECORD
                          ? (accept ? RACT(LISTEN_ACCEPT) : RACT(LISTEN_REJECT))
                          : (accept ? EVENT__ACTION__EVENT_LISTEN_ACCEPT : EVENT__ACTION__EVENT_LISTEN_REJECT);
    return (op){.kind = OP_LISTEN_ANSWER, .name = offer->name, .ref = offer->ref, .session = offer->session,
                .orig = offer->orig, .action = action};
}

static op listen_msg_to(uint64_t peer, uint32_t action)
{
    op m = next_to(peer, OP_LISTEN_MESSAGE);
    if (m.action != action)
        fail_msg("listen message %u to peer %llx, expected %u", m.action, (unsigned long long)peer, action);
    return m;
}

static void test_listen_records(void **state)
{
    (void)state;
    start();
    hello(A);
    hello(B);
    hello(C);
    send1(B, listen_op("^rec/l/.*", 5, TOPIC__TOPIC_RECORD));
    send1(C, listen_op("^rec/l/.*", 6, TOPIC__TOPIC_RECORD));
    /* A's subscriber: B is asked first (registration order), rejects; C accepts */
    send1(A, subscribe_op("rec/l/1", 2));
    op st = next_to(A, OP_RECORD_STATE);
    assert_false(st.flags & OP_FLAG_PROVIDER);
    op offer = listen_msg_to(B, RACT(SUBSCRIPTION_FOR_PATTERN_FOUND));
    assert_sv(offer.ref, "rec/l/1");
    assert_sv(offer.name, "^rec/l/.*");
    assert_int_equal(offer.session, 5);
    nothing_to(C, OP_LISTEN_MESSAGE, 30); /* one at a time */
    send1(B, listen_answer(&offer, false));
    op offer_c = listen_msg_to(C, RACT(SUBSCRIPTION_FOR_PATTERN_FOUND));
    send1(C, listen_answer(&offer_c, true));
    op has = next_to(A, OP_RECORD_PROVIDER);
    assert_true(has.flags & OP_FLAG_PROVIDER);
    assert_sv(has.name, "rec/l/1");
    /* a later subscriber's state says the record has a provider */
    send1(A, read_op("rec/l/1", 1));
    next_to(A, OP_RECORD_STATE);
    send1(B, subscribe_op("rec/l/1", 3));
    assert_true(next_to(B, OP_RECORD_STATE).flags & OP_FLAG_PROVIDER);
    /* the last subscribers leave: the provider is told the name is removed */
    send1(A, (op){.kind = OP_RECORD_UNINTEREST, .name = sv("rec/l/1")});
    nothing_to(C, OP_LISTEN_MESSAGE, 30);
    send1(B, (op){.kind = OP_RECORD_UNINTEREST, .name = sv("rec/l/1")});
    op removed = listen_msg_to(C, RACT(SUBSCRIPTION_FOR_PATTERN_REMOVED));
    assert_sv(removed.ref, "rec/l/1");
    assert_int_equal(removed.session, 6);
}

static void test_listen_timeout_and_loss(void **state)
{
    (void)state;
    start();
    hello(A);
    hello(B);
    hello(C);
    send1(B, listen_op("^ev/.*", 5, TOPIC__TOPIC_EVENT));
    send1(C, listen_op("^ev/x$", 6, TOPIC__TOPIC_EVENT));
    send1(A, (op){.kind = OP_EVENT_INTEREST, .name = sv("ev/x")});
    /* B does not answer: after listen.responseTimeout it is told so, and C is asked */
    int64_t t0 = now_ms();
    op offer = listen_msg_to(B, EVENT__ACTION__EVENT_SUBSCRIPTION_FOR_PATTERN_FOUND);
    assert_sv(offer.ref, "ev/x");
    op late = listen_msg_to(B, EVENT__ACTION__EVENT_LISTEN_RESPONSE_TIMEOUT);
    assert_sv(late.ref, "ev/x");
    assert_true(now_ms() - t0 >= cfg.listen_response_timeout_ms);
    op offer_c = listen_msg_to(C, EVENT__ACTION__EVENT_SUBSCRIPTION_FOR_PATTERN_FOUND);
    send1(B, listen_answer(&offer, true)); /* too late: ignored */
    send1(C, listen_answer(&offer_c, true));
    /* the active provider's broker goes away: the search starts again (B) */
    send1(C, (op){.kind = OP_BYE});
    op again = listen_msg_to(B, EVENT__ACTION__EVENT_SUBSCRIPTION_FOR_PATTERN_FOUND);
    assert_sv(again.ref, "ev/x");
    send1(B, listen_answer(&again, true));
    /* the subscriber's broker goes: B hears the name was removed */
    send1(A, (op){.kind = OP_BYE});
    assert_sv(listen_msg_to(B, EVENT__ACTION__EVENT_SUBSCRIPTION_FOR_PATTERN_REMOVED).ref, "ev/x");
    /* a pattern that does not compile is refused without harm */
    send1(B, listen_op("([", 7, TOPIC__TOPIC_EVENT));
    hello(A);
    send1(A, (op){.kind = OP_EVENT_INTEREST, .name = sv("ev/y")});
    assert_sv(listen_msg_to(B, EVENT__ACTION__EVENT_SUBSCRIPTION_FOR_PATTERN_FOUND).ref, "ev/y");
}

/* ---------------- presence ---------------- */

static op presence_op(uint32_t kind, const char *user)
{
    return (op){.kind = kind, .name = user ? sv(user) : (strview){0}, .flags = user ? 0 : OP_FLAG_ALL};
}

static void test_presence_across_peers(void **state)
{
    (void)state;
    start();
    hello(A);
    hello(B);
    hello(W);
    send1(W, presence_op(OP_PRESENCE_INTEREST, "alice"));
    send1(A, presence_op(OP_PRESENCE_JOIN, "alice"));
    op join = next_to(W, OP_PRESENCE_EVENT);
    assert_int_equal(join.action, PRES(PRESENCE_JOIN));
    assert_sv(join.name, "alice");
    send1(B, presence_op(OP_PRESENCE_JOIN, "alice")); /* online on two brokers: no second JOIN */
    send1(A, presence_op(OP_PRESENCE_LEAVE, "alice")); /* still on B: no LEAVE */
    nothing_to(W, OP_PRESENCE_EVENT, 50);
    send1(W, (op){.kind = OP_PRESENCE_QUERY, .name = sv("alice"), .session = 8, .corr = 12});
    op q = next_to(W, OP_PRESENCE_STATE);
    assert_int_equal(q.corr, 12);
    assert_true(q.flags & OP_FLAG_ONLINE);
    send1(B, presence_op(OP_PRESENCE_LEAVE, "alice"));
    assert_int_equal(next_to(W, OP_PRESENCE_EVENT).action, PRES(PRESENCE_LEAVE));
    send1(W, (op){.kind = OP_PRESENCE_QUERY, .name = sv("alice"), .session = 8, .corr = 13});
    assert_false(next_to(W, OP_PRESENCE_STATE).flags & OP_FLAG_ONLINE);

    /* everyone: one event per peer for a user it also watches by name */
    send1(W, presence_op(OP_PRESENCE_INTEREST, NULL));
    send1(A, presence_op(OP_PRESENCE_JOIN, "bob"));
    send1(A, presence_op(OP_PRESENCE_JOIN, "alice"));
    assert_sv(next_to(W, OP_PRESENCE_EVENT).name, "bob");
    assert_sv(next_to(W, OP_PRESENCE_EVENT).name, "alice");
    nothing_to(W, OP_PRESENCE_EVENT, 50);
    send1(W, (op){.kind = OP_PRESENCE_QUERY, .flags = OP_FLAG_ALL, .session = 8, .corr = 14});
    op all = next_to(W, OP_PRESENCE_STATE);
    assert_true(all.flags & OP_FLAG_ALL);
    assert_true(sv_is(all.data, "[\"bob\",\"alice\"]") || sv_is(all.data, "[\"alice\",\"bob\"]"));
    /* A's broker goes away: both of its users leave */
    send1(A, (op){.kind = OP_BYE});
    op l1 = next_to(W, OP_PRESENCE_EVENT), l2 = next_to(W, OP_PRESENCE_EVENT);
    assert_int_equal(l1.action, PRES(PRESENCE_LEAVE));
    assert_int_equal(l2.action, PRES(PRESENCE_LEAVE));
    assert_true(sv_is(l1.name, "bob") != sv_is(l2.name, "bob"));
    send1(W, (op){.kind = OP_PRESENCE_QUERY, .flags = OP_FLAG_ALL, .session = 8, .corr = 15});
    assert_sv(next_to(W, OP_PRESENCE_STATE).data, "[]");
}

/* ---------------- peers ---------------- */

/* A peer that falls silent for cluster.brokerTimeout is dropped with all it held. */
static void test_silent_peer_dropped(void **state)
{
    (void)state;
    cfg.broker_timeout_ms = 600;
    start();
    hello(A);
    hello(B);
    hello(W);
    send1(B, provide(21));
    send1(W, presence_op(OP_PRESENCE_INTEREST, "carol"));
    send1(B, presence_op(OP_PRESENCE_JOIN, "carol"));
    next_to(W, OP_PRESENCE_EVENT); /* JOIN */
    /* A and W keep talking, B does not */
    int64_t t0 = now_ms();
    bool left = false;
    while (!left && now_ms() - t0 < WAIT_MS) {
        send1(A, (op){.kind = OP_HEARTBEAT});
        send1(W, (op){.kind = OP_HEARTBEAT});
        pthread_mutex_lock(&tap.lock);
        const op *ev = take_locked(W, OP_PRESENCE_EVENT, 100);
        left = ev != NULL && ev->action == PRES(PRESENCE_LEAVE);
        pthread_mutex_unlock(&tap.lock);
    }
    assert_true(left);
    assert_true(now_ms() - t0 >= cfg.broker_timeout_ms);
    send1(A, call_op("s1"));
    assert_int_equal(rpc_to(A, PACT(NO_RPC_PROVIDER)).kind, OP_RPC_MESSAGE);
    /* B speaking again without HELLO is refused whole: it must re-register */
    op_batch b;
    op_batch_init(&b);
    op pv = routed(provide(21));
    op_batch_add(&b, &pv);
    reply *r = send_batch(B, &b);
    op_batch_destroy(&b);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->v[0].kind, OP_ERROR);
    assert_int_equal(r->v[0].error, OP_ERR_UNKNOWN_PEER);
    reply_free(r);
    send1(A, call_op("s2"));
    rpc_to(A, PACT(NO_RPC_PROVIDER)); /* the refused PROVIDE was not applied */
}

/* ---------------- bad operations ---------------- */

/* Malformed, over-limit, misrouted and unknown operations are each answered
 * with an ERROR naming them; the good operations around them are applied. */
static void test_bad_operations_fail_alone(void **state)
{
    (void)state;
    start();
    hello(A);
    hello(B);
    send1(B, (op){.kind = OP_EVENT_INTEREST, .name = sv("ev/ok")});
    char *huge = xmalloc(OP_NAME_MAX + 2);
    memset(huge, 'r', OP_NAME_MAX + 1);
    huge[OP_NAME_MAX + 1] = '\0';
    op good1 = routed((op){.kind = OP_EVENT_EMIT, .name = sv("ev/ok"), .session = 1, .has_data = true,
                           .data = sv("1")});
    op too_long = routed(write_op("x", RACT(UPDATE), -1, NULL, "{}", "big"));
    too_long.ref = sv(huge); /* a correlationId over the limit */
    too_long.corr = 41;
    too_long.session = 42;
    op misrouted = routed(write_op("rec/m", RACT(UPDATE), -1, NULL, "{}", "m"));
    misrouted.shard = (misrouted.shard + 1) % 4096;
    misrouted.corr = 43;
    op unknown = routed((op){.kind = OP_RECORD_STATE, .name = sv("rec/s"), .corr = 44});
    op good2 = routed(write_op("rec/ok", RACT(CREATEANDUPDATE), -1, NULL, "{\"ok\":true}", "ok"));
    op_batch b;
    op_batch_init(&b);
    op_batch_add(&b, &good1);
    op_batch_add(&b, &too_long);
    op_batch_add_encoded(&b, "\xc1", 1);              /* a byte msgpack never uses */
    op_batch_add_encoded(&b, "\x81\x00\xa3" "abc", 6); /* kind is a string */
    op_batch_add(&b, &misrouted);
    op_batch_add(&b, &unknown);
    op_batch_add(&b, &good2);
    reply *r = send_batch(A, &b);
    op_batch_destroy(&b);
    xfree(huge);
    uint32_t malformed = 0, wrong_shard = 0, unknown_kind = 0;
    for (uint32_t i = 0; i < r->n; i++) {
        assert_int_equal(r->v[i].kind, OP_ERROR);
        switch (r->v[i].error) {
        case OP_ERR_MALFORMED:
            if (malformed++ == 0) { /* the over-long one names its requester */
                assert_int_equal(r->v[i].corr, 41);
                assert_int_equal(r->v[i].session, 42);
                assert_int_equal(r->v[i].orig, OP_RECORD_WRITE);
            }
            break;
        case OP_ERR_WRONG_SHARD:
            wrong_shard++;
            assert_int_equal(r->v[i].corr, 43);
            break;
        case OP_ERR_UNKNOWN_KIND:
            unknown_kind++;
            assert_int_equal(r->v[i].corr, 44);
            break;
        default:
            fail_msg("unexpected error %u", r->v[i].error);
        }
    }
    reply_free(r);
    assert_int_equal(malformed, 3);
    assert_int_equal(wrong_shard, 1);
    assert_int_equal(unknown_kind, 1);
    /* the good ones were applied: the event reached B, the write was acknowledged */
    op ev = next_to(B, OP_EVENT_DELIVERY);
    assert_sv(ev.name, "ev/ok");
    assert_sv(ev.data, "1");
    op ack = next_to(A, OP_RECORD_RESULT);
    assert_sv(ack.ref, "ok");
    assert_int_equal(ack.action, RACT(WRITE_ACKNOWLEDGEMENT));
    assert_int_equal(read_back(A, "rec/m").version, -1);

    /* a batch that is not one: one ERROR, nothing applied, and the node goes on */
    const char junk[] = "\x94\x02\xcc";
    nng_msg *bad = node_local_request(nd, junk, sizeof(junk) - 1);
    reply rr = {.msg = bad};
    assert_int_equal(op_batch_each(nng_msg_body(bad), nng_msg_len(bad), keep_reply, &rr), 0);
    assert_int_equal(rr.n, 1);
    assert_int_equal(rr.v[0].error, OP_ERR_MALFORMED);
    nng_msg_free(bad);
    assert_int_equal(read_back(A, "rec/ok").version, 1);
}

/* The routing map changes (as when the metadata group moves primaries):
 * the node sends it to its peers, answers MAP_QUERY with it, serves a shard
 * only with that shard's new epoch (the old one is refused WRONG_SHARD naming
 * the new epoch and the shard), refuses a shard it no longer leads, and still
 * accepts HELLO with the configuration's epoch and static digest. */
static void test_route_by_shard_epoch(void **state)
{
    (void)state;
    start();
    hello(A);
    uint32_t kept = shard_of("rec/kept", 8), moved = shard_of("rec/moved", 9);
    assert_int_not_equal(kept, moved);
    send1(A, write_op("rec/kept", RACT(CREATEANDUPDATE), -1, NULL, "{\"v\":1}", "k1"));
    assert_int_equal(next_to(A, OP_RECORD_RESULT).action, RACT(WRITE_ACKNOWLEDGEMENT));

    shardmap *route = xmalloc(sizeof(*route));
    *route = map;
    route->node_count = 2;
    route->version = 5;
    route->shard_epoch[kept] = 8;         /* promoted back here: a new epoch */
    route->owner[moved] = 1;              /* another node leads it now */
    route->shard_epoch[moved] = 8;
    node_set_route(nd, route);
    op pushed = next_to(A, OP_MAP);
    assert_int_equal(pushed.corr, 5);
    assert_non_null(memmem(pushed.data.ptr, pushed.data.len, "\"version\":5", 11));
    assert_non_null(memmem(pushed.data.ptr, pushed.data.len, "\"shardEpochs\":[[8,", 18));

    /* the old epoch: refused, naming the shard's epoch now */
    op_batch b;
    op_batch_init(&b);
    op stale = routed(write_op("rec/kept", RACT(UPDATE), -1, NULL, "{\"v\":2}", "k2"));
    stale.corr = 51;
    op_batch_add(&b, &stale);
    op gone = routed(write_op("rec/moved", RACT(UPDATE), -1, NULL, "{}", "m1"));
    gone.epoch = 8; /* the right epoch, but this node is no longer its primary */
    gone.corr = 52;
    op_batch_add(&b, &gone);
    op q = {.kind = OP_MAP_QUERY};
    op_batch_add(&b, &q);
    reply *r = send_batch(A, &b);
    op_batch_destroy(&b);
    assert_int_equal(r->n, 3);
    assert_int_equal(r->v[0].kind, OP_ERROR);
    assert_int_equal(r->v[0].error, OP_ERR_WRONG_SHARD);
    assert_int_equal(r->v[0].corr, 51);
    assert_int_equal(r->v[0].epoch, 8);
    assert_int_equal(r->v[0].shard, kept);
    assert_int_equal(r->v[1].error, OP_ERR_WRONG_SHARD);
    assert_int_equal(r->v[1].corr, 52);
    assert_int_equal(r->v[1].shard, moved);
    assert_int_equal(r->v[2].kind, OP_MAP);
    assert_int_equal(r->v[2].corr, 5);
    reply_free(r);

    /* the new epoch: served */
    op_batch_init(&b);
    op fresh = routed(write_op("rec/kept", RACT(UPDATE), -1, NULL, "{\"v\":3}", "k3"));
    fresh.epoch = 8;
    op_batch_add(&b, &fresh);
    r = send_batch(A, &b);
    op_batch_destroy(&b);
    assert_int_equal(r->n, 0);
    reply_free(r);
    op ack = next_to(A, OP_RECORD_RESULT);
    assert_sv(ack.ref, "k3");
    assert_int_equal(ack.action, RACT(WRITE_ACKNOWLEDGEMENT));

    /* HELLO still checks the configuration's epoch and static assignment */
    op_batch_init(&b);
    op h = {.kind = OP_HELLO, .epoch = 7, .corr = shardmap_digest(&map)};
    op_batch_add(&b, &h);
    r = send_batch(B, &b);
    op_batch_destroy(&b);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->v[0].kind, OP_HELLO);
    reply_free(r);
    xfree(route);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_record_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answers_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_patches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_recreate_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc_balance_and_reroute, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc_provider_loss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_timeout_and_loss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_presence_across_peers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_peer_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_operations_fail_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_by_shard_epoch, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
