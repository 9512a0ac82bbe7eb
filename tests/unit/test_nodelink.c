/* test_nodelink.c - the delivery numbering check (delivery_stream): in-order
 * batches, gaps with their exact loss, a lost tail revealed only by heartbeat
 * answers, late batches after a declared loss, and a node restart. And a link
 * whose connection attempt hangs (a real node behind a proxy that holds the
 * first connection silent) replaces its dialer instead of waiting on it:
 * nng 1.5.2 also gives up on a dialer for good after some failed attempts,
 * which nothing reports, so a link that stays down must be re-dialed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "linktls.h"
#include "mem.h"
#include "node.h"
#include "nodelink.h"
#include "shardmap.h"
#include "util.h"

static void test_in_order_and_gap(void **state)
{
    (void)state;
    delivery_stream s = {0};
    uint64_t lost;
    assert_int_equal(stream_accept(&s, 1, 1, true, &lost), STREAM_IN_ORDER); /* the HELLO */
    assert_int_equal(stream_accept(&s, 4, 3, false, &lost), STREAM_IN_ORDER);
    assert_int_equal(stream_accept(&s, 6, 2, false, &lost), STREAM_IN_ORDER);
    /* ops 7..11 never arrived: a batch of 2 ending at 13 reveals 5 lost */
    assert_int_equal(stream_accept(&s, 13, 2, false, &lost), STREAM_GAP);
    assert_int_equal(lost, 5);
    assert_int_equal(s.gaps, 1);
    assert_int_equal(s.lost, 5);
    assert_int_equal(s.received, 13);
    assert_int_equal(stream_accept(&s, 14, 1, false, &lost), STREAM_IN_ORDER);
    /* a batch counted lost that arrives after all is applied and uncounted */
    assert_int_equal(stream_accept(&s, 12, 2, false, &lost), STREAM_LATE);
    assert_int_equal(s.late, 1);
    assert_int_equal(s.lost, 3);
    assert_int_equal(s.received, 14);
    /* malformed numbering (seq below count) is never applied */
    assert_int_equal(stream_accept(&s, 2, 3, false, &lost), STREAM_BAD);
}

static void test_tail_loss(void **state)
{
    (void)state;
    delivery_stream s = {0};
    uint64_t lost;
    assert_int_equal(stream_accept(&s, 5, 5, false, &lost), STREAM_IN_ORDER);
    assert_int_equal(stream_heartbeat(&s, 5), 0); /* all there */
    /* the node published 3 more (ops 6..8) that never came */
    assert_int_equal(stream_heartbeat(&s, 8), 0); /* may still be in flight */
    assert_int_equal(stream_heartbeat(&s, 8), 3); /* a period later, nothing moved: lost */
    assert_int_equal(s.received, 8);
    assert_int_equal(s.gaps, 1);
    assert_int_equal(stream_heartbeat(&s, 8), 0);
    /* in flight at one heartbeat, arrived before the next: no loss */
    assert_int_equal(stream_heartbeat(&s, 10), 0);
    assert_int_equal(stream_accept(&s, 10, 2, false, &lost), STREAM_IN_ORDER);
    assert_int_equal(stream_heartbeat(&s, 10), 0);
    /* progress while still behind a mark: not declared (the stream is draining) */
    assert_int_equal(stream_heartbeat(&s, 20), 0);
    assert_int_equal(stream_accept(&s, 12, 2, false, &lost), STREAM_IN_ORDER);
    assert_int_equal(stream_heartbeat(&s, 20), 0);
    assert_int_equal(s.gaps, 1);
    /* a mark forgotten (the node went down) declares nothing */
    stream_forget_mark(&s);
    assert_int_equal(stream_heartbeat(&s, 30), 0);
}

static void test_settle(void **state)
{
    (void)state;
    delivery_stream s = {0};
    uint64_t lost;
    assert_int_equal(stream_settle(&s, 0), 0); /* nothing published yet */
    assert_int_equal(stream_accept(&s, 4, 4, false, &lost), STREAM_IN_ORDER);
    assert_int_equal(stream_settle(&s, 4), 0); /* all received */
    assert_int_equal(stream_settle(&s, 7), 3); /* nothing in flight: the tail was dropped */
    assert_int_equal(s.received, 7);
    assert_int_equal(s.lost, 3);
    assert_int_equal(s.gaps, 1);
    assert_int_equal(stream_settle(&s, 7), 0); /* counted once */
    assert_int_equal(stream_accept(&s, 9, 2, false, &lost), STREAM_IN_ORDER);
    assert_int_equal(s.gaps, 1);
}

static void test_restart(void **state)
{
    (void)state;
    delivery_stream s = {0};
    uint64_t lost;
    assert_int_equal(stream_accept(&s, 100, 4, false, &lost), STREAM_IN_ORDER);
    assert_int_equal(stream_heartbeat(&s, 100), 0);
    /* the node restarted: its numbering starts over with the HELLO */
    assert_int_equal(stream_accept(&s, 1, 1, true, &lost), STREAM_RESTARTED);
    assert_int_equal(s.received, 1);
    assert_false(s.mark_set);
    assert_int_equal(stream_accept(&s, 3, 2, false, &lost), STREAM_IN_ORDER);
    assert_int_equal(s.gaps, 0);
    /* restarted again, and its first HELLOs were published before our
     * subscription was up: the first one we see is number 5, still a restart */
    assert_int_equal(stream_accept(&s, 9, 1, false, &lost), STREAM_GAP);
    assert_int_equal(stream_accept(&s, 5, 1, true, &lost), STREAM_RESTARTED);
    assert_int_equal(stream_accept(&s, 6, 1, false, &lost), STREAM_IN_ORDER);
    /* a HELLO after a reconnect, the node still running: numbers go on, a
     * jump is a gap as for any batch */
    assert_int_equal(stream_accept(&s, 9, 1, true, &lost), STREAM_GAP);
    assert_int_equal(lost, 2);
}

/* ---------------- a link whose connection attempt hangs ---------------- */

/* A TCP proxy on a free port to the node's port: its first connection is
 * accepted and held without a byte either way (a handshake that never
 * completes); the ones after are relayed. One thread, poll(2). */
#define RELAYS 8
typedef struct proxy {
    int listen_fd, port, target_port, held_fd, accepted;
    int fds[RELAYS][2]; /* client, node */
    atomic_bool stop;
    pthread_t thread;
} proxy;

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void *proxy_run(void *arg)
{
    proxy *p = arg;
    while (!atomic_load(&p->stop)) {
        struct pollfd pf[1 + 2 * RELAYS];
        int n = 0;
        pf[n++] = (struct pollfd){.fd = p->listen_fd, .events = POLLIN};
        for (int i = 0; i < RELAYS; i++)
            for (int k = 0; k < 2; k++)
                pf[n++] = (struct pollfd){.fd = p->fds[i][k], .events = POLLIN}; /* -1 is ignored */
        if (poll(pf, (nfds_t)n, 50) <= 0)
            continue;
        if (pf[0].revents & POLLIN) {
            int c = accept(p->listen_fd, NULL, NULL);
            if (c >= 0 && p->accepted++ == 0) {
                p->held_fd = c;
            } else if (c >= 0) {
                int i = 0;
                while (i < RELAYS && p->fds[i][0] >= 0)
                    i++;
                int t = i < RELAYS ? tcp_connect(p->target_port) : -1;
                if (t < 0) {
                    close(c);
                } else {
                    p->fds[i][0] = c;
                    p->fds[i][1] = t;
                }
            }
        }
        for (int i = 0; i < RELAYS; i++)
            for (int k = 0; k < 2; k++) {
                if (!(pf[1 + 2 * i + k].revents & (POLLIN | POLLHUP | POLLERR)) || p->fds[i][k] < 0)
                    continue;
                char buf[16384];
                ssize_t got = read(p->fds[i][k], buf, sizeof(buf));
                if (got <= 0 || write(p->fds[i][!k], buf, (size_t)got) != got) {
                    close(p->fds[i][0]);
                    close(p->fds[i][1]);
                    p->fds[i][0] = p->fds[i][1] = -1;
                }
            }
    }
    return NULL;
}

static void proxy_start(proxy *p, const char *target_url)
{
    memset(p, 0, sizeof(*p));
    memset(p->fds, -1, sizeof(p->fds));
    p->held_fd = -1;
    const char *colon = strrchr(target_url, ':');
    assert_non_null(colon);
    p->target_port = atoi(colon + 1);
    p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t len = sizeof(a);
    assert_int_equal(bind(p->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(p->listen_fd, 16), 0);
    assert_int_equal(getsockname(p->listen_fd, (struct sockaddr *)&a, &len), 0);
    p->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&p->thread, NULL, proxy_run, p), 0);
}

static void proxy_stop(proxy *p)
{
    atomic_store(&p->stop, true);
    pthread_join(p->thread, NULL);
    close(p->listen_fd);
    if (p->held_fd >= 0)
        close(p->held_fd);
    for (int i = 0; i < RELAYS; i++)
        for (int k = 0; k < 2; k++)
            if (p->fds[i][k] >= 0)
                close(p->fds[i][k]);
}

/* The link's owner: takes everything (frees it) and counts deliveries. */
static atomic_int deliveries;
static int take_all(void *ctx, int event, int index, uint64_t seq, void *item)
{
    (void)ctx;
    (void)index;
    (void)seq;
    if (event == NODELINK_DELIVERY)
        atomic_fetch_add(&deliveries, 1);
    if (event == NODELINK_REPLY || event == NODELINK_DELIVERY) {
        nng_msg_free(item);
    } else if (event == NODELINK_FAILED) {
        op_batch_destroy(item);
        xfree(item);
    }
    return 0;
}

/* Starts a real node; the link dials its request address and its delivery
 * address, one of them (held_delivery) through a proxy that holds the first
 * connection. Returns ms until the link delivered (-1: not within wait_ms). */
static int64_t link_through_held_proxy(bool held_delivery, int wait_ms)
{
    char dir[] = "/tmp/eddy-test-nodelink-XXXXXX", err[256];
    assert_non_null(mkdtemp(dir));
    eddy_config cfg;
    config_defaults(&cfg);
    assert_int_equal(config_set_flag(&cfg, "--data", dir, err, sizeof(err)), 0);
    shardmap map;
    shardmap_init_even(&map, 1, 1);
    node *n = node_start(&cfg, "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", &map, 0);
    assert_non_null(n);
    proxy p;
    proxy_start(&p, held_delivery ? node_delivery_url(n) : node_request_url(n));
    char via[64];
    snprintf(via, sizeof(via), "tcp://127.0.0.1:%d", p.port);
    nodelink_config c = {
        .id = "node1",
        .request_url = held_delivery ? node_request_url(n) : via,
        .delivery_url = held_delivery ? via : node_delivery_url(n),
        .peer_id = 0x5eed0000 + (uint64_t)held_delivery,
        .epoch = map.epoch,
        .role = LINK_ROLE_BROKER,
        .handler = take_all,
    };
    atomic_store(&deliveries, 0);
    int64_t t0 = now_ms(), took = -1;
    nodelink *l = nodelink_open(&c);
    assert_non_null(l);
    while (took < 0 && now_ms() - t0 < wait_ms) {
        if (nodelink_delivering(l) && atomic_load(&deliveries) > 0)
            took = now_ms() - t0;
        usleep(20 * 1000);
    }
    assert_true(p.accepted >= 2); /* the held connection, then the one that works */
    nodelink_close(l);
    proxy_stop(&p);
    node_stop(n);
    config_free(&cfg);
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    return took;
}

/* nng's own give-up on a hung handshake is 10 s (its negotiation timeout). */
static void test_hung_delivery_dial_is_replaced(void **state)
{
    (void)state;
    int64_t took = link_through_held_proxy(true, 8000);
    fprintf(stderr, "# delivering after %lld ms (the first delivery connection held)\n", (long long)took);
    assert_true(took > 0 && took < 6000);
}

static void test_hung_request_dial_is_replaced(void **state)
{
    (void)state;
    int64_t took = link_through_held_proxy(false, 9000);
    fprintf(stderr, "# delivering after %lld ms (the first request connection held)\n", (long long)took);
    assert_true(took > 0 && took < 8000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order_and_gap),
        cmocka_unit_test(test_tail_loss),
        cmocka_unit_test(test_settle),
        cmocka_unit_test(test_restart),
        cmocka_unit_test(test_hung_delivery_dial_is_replaced),
        cmocka_unit_test(test_hung_request_dial_is_replaced),
    };
    return cmocka_run_group_tests_name("nodelink", tests, NULL, NULL);
}
