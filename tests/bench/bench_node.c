/* bench_node.c - node-side record apply + persist, without websockets: starts a
 * node in-process (the real node_start, RocksDB in a scratch folder) and drives
 * it over nng inproc the way a broker does: batches of RECORD_WRITE operations
 * on the REQ socket, write acknowledgements back on the SUB socket once durable.
 * Reports writes/s and the ack latency distribution (send of the batch to
 * receipt of the ack). A benchmark, not a test: it prints figures and checks
 * only that every write was acknowledged.
 *
 * At most `window` writes are in flight (sent, not yet acknowledged), so the
 * latency is that of a loaded node, not of an unbounded queue.
 *
 * usage: bench_node [writes] [batch] [records] [sync: always|batch|never] [window] */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "config.h"
#include "log.h"
#include "node.h"
#include "ops.h"
#include "util.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The delivery side: one pull out at a time on the node's delivery address;
 * each answer holds the acknowledgements gathered since the last. */
typedef struct collector {
    nng_socket dlv;
    uint64_t me;
    long writes;
    const double *sent_at;
    double *lat;
    atomic_long acked;
} collector;

static void *collect(void *arg)
{
    collector *c = arg;
    while (atomic_load(&c->acked) < c->writes) {
        nng_msg *p, *d;
        nng_msg_alloc(&p, 8);
        put_be64(nng_msg_body(p), c->me);
        if (nng_sendmsg(c->dlv, p, 0) != 0 || nng_recvmsg(c->dlv, &d, 0) != 0)
            continue;
        mp_reader r;
        uint64_t origin, dseq;
        uint32_t count;
        double t = now_us();
        size_t len = nng_msg_len(d);
        if (len <= 8) { /* nothing yet (8), or not known yet (0: our HELLO is on its way) */
            nng_msg_free(d);
            if (len == 0)
                usleep(1000);
            continue;
        }
        if (op_batch_open(&r, (uint8_t *)nng_msg_body(d) + 8, nng_msg_len(d) - 8, &origin, &dseq, &count) == 0)
            for (uint32_t i = 0; i < count; i++) {
                op o;
                int rc = op_decode(&r, &o);
                if (rc == -1)
                    break;
                if (rc == 0 && o.kind == OP_RECORD_RESULT && o.action == 14 /* WRITE_ACKNOWLEDGEMENT */) {
                    long id = strtol(o.ref.ptr, NULL, 10);
                    long n = atomic_load(&c->acked);
                    c->lat[n] = t - c->sent_at[id];
                    atomic_store(&c->acked, n + 1);
                } else if (o.kind == OP_RECORD_RESULT)
                    fprintf(stderr, "unexpected result action %u\n", o.action);
            }
        nng_msg_free(d);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    long writes = argc > 1 ? atol(argv[1]) : 200000;
    int batch = argc > 2 ? atoi(argv[2]) : 100;
    int records = argc > 3 ? atoi(argv[3]) : 1000;
    const char *sync = argc > 4 ? argv[4] : "batch";
    long window = argc > 5 ? atol(argv[5]) : 1000;
    log_threshold = LOG_WARN;

    char dir[] = "/tmp/eddy-bench-XXXXXX";
    if (mkdtemp(dir) == NULL)
        return 1;
    eddy_config cfg;
    char err[256];
    config_defaults(&cfg);
    config_set_flag(&cfg, "--data", dir, err, sizeof(err));
    if (config_set_flag(&cfg, "--sync", sync, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    shardmap map;
    shardmap_init_even(&map, 1, 1);
    node *n = node_start(&cfg, "inproc://bench-req", "inproc://bench-del", &map, 0);
    if (n == NULL)
        return 1;

    uint64_t me = 42;
    nng_socket req;
    nng_req0_open(&req);
    nng_dial(req, "inproc://bench-req", NULL, 0);

    char **names = calloc((size_t)records, sizeof(char *));
    int64_t *version = calloc((size_t)records, sizeof(int64_t));
    for (int i = 0; i < records; i++) {
        names[i] = malloc(32);
        snprintf(names[i], 32, "bench/%d", i);
    }
    double *sent_at = calloc((size_t)writes, sizeof(double));
    double *lat = calloc((size_t)writes, sizeof(double));
    collector c = {.me = me, .writes = writes, .sent_at = sent_at, .lat = lat};
    nng_req0_open(&c.dlv);
    nng_dial(c.dlv, "inproc://bench-del", NULL, 0);
    pthread_t collector_thread;
    pthread_create(&collector_thread, NULL, collect, &c);
    char ref[32], data[96];
    op_batch b;
    op_batch_init(&b);
    long sent = 0, acked = 0;
    uint64_t seq = 0;
    double start = now_us();
    while ((acked = atomic_load(&c.acked)) < writes) {
        if (sent >= writes || sent - acked >= window) {
            usleep(50); /* the collector catches up */
            continue;
        }
        op_batch_reset(&b);
        if (seq == 0) {
            op hello = {.kind = OP_HELLO, .epoch = 1};
            op_batch_add(&b, &hello);
        }
        double t = now_us();
        for (int i = 0; i < batch && sent < writes; i++, sent++) {
            int r = (int)(sent % records);
            int rl = snprintf(ref, sizeof(ref), "%ld", sent);
            int dl = snprintf(data, sizeof(data), "{\"n\":%ld,\"payload\":\"0123456789abcdef\"}", sent);
            op o = {.kind = OP_RECORD_WRITE, .name = {names[r], (uint32_t)strlen(names[r])},
                    .shard = shard_of(names[r], strlen(names[r])), .epoch = 1,
                    .session = 1, .action = 16 /* CREATEANDUPDATE */, .has_version = true,
                    .version = -1, .has_data = true, .data = {data, (uint32_t)dl},
                    .flags = OP_FLAG_WRITE_ACK, .ref = {ref, (uint32_t)rl}};
            op_batch_add(&b, &o);
            sent_at[sent] = t;
            version[r]++;
        }
        uint8_t hdr[OP_BATCH_HEADER_MAX];
        size_t h = op_batch_header(hdr, me, ++seq, b.count);
        nng_msg *m;
        nng_msg_alloc(&m, h + b.buf.size);
        memcpy(nng_msg_body(m), hdr, h);
        memcpy((uint8_t *)nng_msg_body(m) + h, b.buf.data, b.buf.size);
        nng_sendmsg(req, m, 0);
        nng_msg *reply;
        nng_recvmsg(req, &reply, 0);
        nng_msg_free(reply);
    }
    pthread_join(collector_thread, NULL);
    double secs = (now_us() - start) / 1e6;
    qsort(lat, (size_t)acked, sizeof(double), cmp_double);
    printf("node apply+persist: %ld writes in %.2f s = %.0f writes/s (batch %d, %d records, "
           "%ld in flight, sync %s)\n", writes, secs, writes / secs, batch, records, window, sync);
    printf("ack latency: p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms\n",
           lat[acked / 2] / 1000, lat[(long)(acked * 0.99)] / 1000, lat[(long)(acked * 0.999)] / 1000,
           lat[acked - 1] / 1000);
    nng_close(req);
    nng_close(c.dlv);
    node_stop(n);
    config_free(&cfg);
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
