/* test_peers.c - a node's peer table against a flood (issue 13): a real node
 * (node_start, tcp on a free port, RocksDB in a scratch folder) is sent HELLOs
 * from thousands of different origin ids over nng REQ, as anyone who reaches
 * its request port can. It takes cluster.maxPeers of them, refuses the rest
 * with UNKNOWN_PEER (logged peer-refused, at most once a second, with the
 * count), keeps serving the peers it has (answers and deliveries), and its
 * memory stays flat; silent peers expire all together, not 64 per 500 ms. */
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
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "clustermap.h"
#include "config.h"
#include "mem.h"
#include "node.h"
#include "ops.h"
#include "util.h"

static char dir[64];
static char logpath[64];
static int saved_stderr = -1;

/* The node's log goes to a file the tests read. */
static int setup(void **state)
{
    strcpy(dir, "/tmp/eddy-test-peers-XXXXXX");
    strcpy(logpath, "/tmp/eddy-test-peers-log-XXXXXX");
    int fd = mkstemp(logpath);
    if (mkdtemp(dir) == NULL || fd < 0)
        return -1;
    fflush(stderr);
    saved_stderr = dup(2);
    dup2(fd, 2);
    close(fd);
    return 0;
}

/* Puts stderr back, passing on what was not the node's log (cmocka's failure reports). */
static int teardown(void **state)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    FILE *f = fopen(logpath, "r");
    char line[4096];
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (!(line[0] == '2' && line[4] == '-' && line[10] == 'T')) /* not "2026-11-30T..." */
            fputs(line, stderr);
    if (f != NULL)
        fclose(f);
    unlink(logpath);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

/* How many lines of the log so far hold event (from offset *from on; *from moves to the end). */
static int log_count(const char *event, long *from)
{
    FILE *f = fopen(logpath, "r");
    assert_non_null(f);
    fseek(f, *from, SEEK_SET);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, event) != NULL;
    *from = ftell(f);
    fclose(f);
    return n;
}

typedef struct running {
    eddy_config cfg;
    node *n;
    nng_socket req, dlv; /* requests; pulls on the delivery address */
    uint64_t dlv_peer;   /* whose deliveries dlv pulls */
} running;

static void start(running *r, int max_peers, const char *sub_peer)
{
    char err[256];
    config_defaults(&r->cfg);
    char data[96];
    snprintf(data, sizeof(data), "%s/data-%d", dir, max_peers);
    char num[32];
    snprintf(num, sizeof(num), "%d", max_peers);
    assert_int_equal(config_set_flag(&r->cfg, "--data", data, err, sizeof(err)), 0);
    assert_int_equal(config_set_flag(&r->cfg, "--max-peers", num, err, sizeof(err)), 0);
    assert_int_equal(config_set_flag(&r->cfg, "--broker-timeout", "2000", err, sizeof(err)), 0);
    shardmap map;
    shardmap_init_even(&map, 1, 1);
    r->n = node_start(&r->cfg, "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", &map, 0);
    assert_non_null(r->n);
    assert_int_equal(nng_req0_open(&r->req), 0);
    nng_socket_set_ms(r->req, NNG_OPT_RECVTIMEO, 5000);
    assert_int_equal(nng_dial(r->req, node_request_url(r->n), NULL, 0), 0);
    assert_int_equal(nng_req0_open(&r->dlv), 0);
    r->dlv_peer = strtoull(sub_peer, NULL, 0);
    nng_socket_set_ms(r->dlv, NNG_OPT_RECVTIMEO, 5000);
    assert_int_equal(nng_dial(r->dlv, node_delivery_url(r->n), NULL, 0), 0);
}

static void stop(running *r)
{
    nng_close(r->req); /* nothing in flight */
    nng_close(r->dlv);
    node_stop(r->n);
    config_free(&r->cfg);
}

/* Sends one operation of kind from origin; returns the reply's first
 * operation's kind, and its error in *error. */
static uint32_t send_op(running *r, uint64_t origin, uint32_t kind, uint32_t *error)
{
    static uint64_t seq;
    op_batch b;
    op_batch_init(&b);
    op o = {.kind = kind, .epoch = 1};
    op_batch_add(&b, &o);
    uint8_t hdr[OP_BATCH_HEADER_MAX];
    size_t h = op_batch_header(hdr, origin, ++seq, b.count);
    nng_msg *m;
    assert_int_equal(nng_msg_alloc(&m, h + b.buf.size), 0);
    memcpy(nng_msg_body(m), hdr, h);
    memcpy((uint8_t *)nng_msg_body(m) + h, b.buf.data, b.buf.size);
    op_batch_destroy(&b);
    assert_int_equal(nng_sendmsg(r->req, m, 0), 0);
    nng_msg *reply;
    assert_int_equal(nng_recvmsg(r->req, &reply, 0), 0);
    mp_reader rd;
    uint64_t from, rseq;
    uint32_t count;
    assert_int_equal(op_batch_open(&rd, nng_msg_body(reply), nng_msg_len(reply), &from, &rseq, &count), 0);
    uint32_t got = 0;
    *error = 0;
    op a;
    if (count > 0 && op_decode(&rd, &a) == 0) {
        got = a.kind;
        *error = a.error;
    }
    nng_msg_free(reply);
    return got;
}

static bool hello(running *r, uint64_t origin)
{
    uint32_t error;
    uint32_t kind = send_op(r, origin, OP_HELLO, &error);
    if (kind == OP_ERROR)
        assert_int_equal(error, OP_ERR_UNKNOWN_PEER);
    else
        assert_int_equal(kind, OP_HELLO);
    return kind == OP_HELLO;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kb;
}

/* A HELLO delivered back to peer 1 answers its pull: its deliveries flow.
 * An answer of 8 bytes (the node held nothing for it) or none (it did not
 * know the peer yet) is followed by another HELLO and pull. */
static void delivered_hello(running *r)
{
    for (int tries = 0; tries < 50; tries++) {
        assert_true(hello(r, 1));
        nng_msg *p, *d;
        assert_int_equal(nng_msg_alloc(&p, 8), 0);
        put_be64(nng_msg_body(p), r->dlv_peer);
        assert_int_equal(nng_sendmsg(r->dlv, p, 0), 0);
        if (nng_recvmsg(r->dlv, &d, 0) == 0) {
            bool got = nng_msg_len(d) > 8;
            nng_msg_free(d);
            if (got)
                return;
        }
    }
    fail_msg("no delivery reached peer 1");
}

/* One pull for peer on s: returns the answer's length (0: the node does not
 * know the peer; 8: nothing for it; more: a delivery batch, whose operation
 * count and number go to *count and *seq). */
static size_t pull_once(nng_socket s, uint64_t peer, uint32_t *count, uint64_t *seq)
{
    nng_msg *p, *d;
    assert_int_equal(nng_msg_alloc(&p, 8), 0);
    put_be64(nng_msg_body(p), peer);
    assert_int_equal(nng_sendmsg(s, p, 0), 0);
    assert_int_equal(nng_recvmsg(s, &d, 0), 0);
    size_t len = nng_msg_len(d);
    if (len > 8) {
        mp_reader rd;
        uint64_t origin;
        assert_int_equal(get_be64(nng_msg_body(d)), peer);
        assert_int_equal(op_batch_open(&rd, (uint8_t *)nng_msg_body(d) + 8, len - 8, &origin, seq, count), 0);
    }
    nng_msg_free(d);
    return len;
}

/* Deliveries answer pulls: an unknown peer gets an empty answer; what is
 * gathered while a peer has no pull out waits and comes as one batch,
 * numbered by its operations; a delivery crosses only its own peer's
 * connection (another peer's pull is answered empty when idle). */
static void test_pulls(void **state)
{
    (void)state;
    running r;
    start(&r, 16, "1");
    nng_socket other;
    assert_int_equal(nng_req0_open(&other), 0);
    nng_socket_set_ms(other, NNG_OPT_RECVTIMEO, 5000);
    assert_int_equal(nng_dial(other, node_delivery_url(r.n), NULL, 0), 0);
    uint32_t count = 0;
    uint64_t seq = 0;
    assert_int_equal(pull_once(other, 77, &count, &seq), 0); /* unknown */

    for (int i = 0; i < 3; i++) /* three HELLOs, no pull out: held */
        assert_true(hello(&r, 1));
    assert_true(pull_once(r.dlv, 1, &count, &seq) > 8);
    assert_int_equal(count, 3);
    assert_int_equal(seq, 3);

    assert_true(hello(&r, 2)); /* its HELLO back is peer 2's alone */
    int64_t t0 = now_ms();
    assert_int_equal(pull_once(r.dlv, 1, &count, &seq), 8);
    int64_t idle = now_ms() - t0;
    assert_true(idle >= 400 && idle < 3000);
    assert_true(pull_once(other, 2, &count, &seq) > 8);
    assert_int_equal(count, 1);
    assert_int_equal(seq, 1);

    nng_close(other);
    stop(&r);
}

#define MAX_PEERS 16
#define FLOOD 20000

static void test_flood_is_refused(void **state)
{
    (void)state;
    running r;
    start(&r, MAX_PEERS, "1");
    long at = 0;
    /* the peers the node has (1 is "the broker") */
    for (uint64_t id = 1; id <= MAX_PEERS; id++)
        assert_true(hello(&r, id));
    delivered_hello(&r);
    long before = rss_kb();
    size_t used = mem_used();
    int refused = 0;
    int64_t kept_alive = now_ms();
    for (uint64_t id = 1000; id < 1000 + FLOOD; id++) {
        refused += !hello(&r, id);
        if (now_ms() - kept_alive >= 500) { /* the peers it has stay (brokerTimeout 2 s) */
            uint32_t error;
            for (uint64_t p = 1; p <= MAX_PEERS; p++)
                assert_int_equal(send_op(&r, p, OP_HEARTBEAT, &error), OP_HEARTBEAT);
            kept_alive = now_ms();
        }
    }
    long after = rss_kb();
    long grown = (long)(mem_used() - used);
    fprintf(stdout, "# %d HELLOs with new ids: %d refused, rss %ld -> %ld kB, eddy allocations %+ld bytes\n",
            FLOOD, refused, before, after, grown);
    assert_int_equal(refused, FLOOD);
    assert_true(grown < 64 * 1024); /* before the bound: about 3 MB of peer entries alone */
#if !defined(__SANITIZE_ADDRESS__) /* (ASan keeps freed memory in quarantine: RSS tells nothing there) */
    assert_true(after - before < 40 * 1024); /* before the bound: about 90 MB for these */
#endif
    /* the refusals are logged with their count, at most once a second */
    int lines = log_count("peer-refused", &at);
    assert_true(lines >= 1 && lines <= 30);
    /* the peers it has are still served: answers, deliveries, a HELLO again */
    uint32_t error;
    assert_int_equal(send_op(&r, 1, OP_HEARTBEAT, &error), OP_HEARTBEAT);
    assert_int_equal(send_op(&r, MAX_PEERS, OP_HEARTBEAT, &error), OP_HEARTBEAT);
    delivered_hello(&r);
    /* a map query from anyone is still answered (it does not make a peer) */
    assert_int_equal(send_op(&r, 99999, OP_MAP_QUERY, &error), OP_MAP);
    /* and so are the node's counters (eddy ctl status): the table, its bound, the refusals */
    char *stats = clustermap_node_stats(node_request_url(r.n), NULL, 5000);
    assert_non_null(stats);
    char want[128];
    snprintf(want, sizeof(want), "{\"peers\":%d,\"maxPeers\":%d,\"peersRefused\":%d,", MAX_PEERS, MAX_PEERS, FLOOD);
    assert_true(strncmp(stats, want, strlen(want)) == 0);
    xfree(stats);
    /* an operation from an unknown peer other than HELLO: UNKNOWN_PEER, as before */
    assert_int_equal(send_op(&r, 99999, OP_HEARTBEAT, &error), OP_ERROR);
    assert_int_equal(error, OP_ERR_UNKNOWN_PEER);
    stop(&r);
}

/* Silent peers expire all together once the broker timeout has passed, and
 * new ones take their places. */
static void test_expiry_in_proportion(void **state)
{
    (void)state;
    enum { N = 600 };
    running r;
    start(&r, N, "1");
    long at = 0;
    log_count("peer-expired", &at); /* skip the log so far */
    for (uint64_t id = 5000; id < 5000 + N; id++)
        assert_true(hello(&r, id));
    assert_false(hello(&r, 4999));
    /* brokerTimeout is 2000 ms; sweeps run every 500 ms: all are gone by 3.5 s */
    int64_t until = now_ms() + 3500;
    while (now_ms() < until) {
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
    int expired = log_count("peer-expired", &at);
    fprintf(stdout, "# %d silent peers: %d expired 3.5 s after they joined\n", N, expired);
    assert_int_equal(expired, N); /* before: 64 per 500 ms sweep, at most 256 by then */
    for (uint64_t id = 7000; id < 7000 + N; id++)
        assert_true(hello(&r, id));
    stop(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pulls),
        cmocka_unit_test(test_flood_is_refused),
        cmocka_unit_test(test_expiry_in_proportion),
    };
    return cmocka_run_group_tests_name("peers", tests, setup, teardown);
}
