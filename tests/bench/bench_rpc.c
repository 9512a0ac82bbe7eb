/* bench_rpc.c - eddy-bench's `rpc` scenario: P provider connections PROVIDE
 * bench/rpc/echo and wait for the ack; C caller connections then keep N
 * requests in flight each (N = 1: one after the other), every one with its
 * own correlation id. A provider answers each REQUEST as the real client does
 * (protocol §9): ACCEPT, then RESPONSE with the request's data. Callers time
 * each round trip and check that the response echoes their request.
 *
 * Reports calls/s, latency p50/p99/p99.9, errors (REQUEST_ERROR,
 * NO_RPC_PROVIDER, ACCEPT_TIMEOUT, RESPONSE_TIMEOUT, MESSAGE_DENIED...; they
 * count as bad), lost (requests still unanswered after a drain of up to 5 s)
 * and, given --pid, the server's CPU seconds per million calls and RSS.
 *
 * Not for the connection handling (bench.c). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "mem.h"

#define RPC_NAME "bench/rpc/echo"
#define RING 4096 /* per caller: requests by seq % RING (a straggler holding a slot pauses the caller) */

enum { CALLER, PROVIDER };

static struct {
    int callers, providers, inflight, payload;
} opt = {2, 2, 1, 64};

typedef struct pending {
    uint64_t seq;
    int64_t sent_ns;
    bool open;
} pending;

typedef struct rpc_conn {
    pending *ring; /* caller */
    uint64_t next_seq;
    int inflight;
    bool provided; /* provider: PROVIDE acked */
} rpc_conn;

static struct {
    bench *b;
    int pid; /* ours, in the correlation ids: unique across runs against one server */
    int provided;
    uint64_t sent, calls, errors, answers;
    int64_t last_answer_ns;
    hist lat;
} P;

static void make_calls(conn *c)
{
    rpc_conn *rc = c->data;
    while (P.b->running && rc->inflight < opt.inflight && !rc->ring[rc->next_seq % RING].open) {
        uint64_t seq = rc->next_seq++;
        char cid[64], data[4200];
        snprintf(cid, sizeof(cid), "%d-%d-%" PRIu64, P.pid, c->index, seq);
        int n = snprintf(data, sizeof(data), "{\"c\":%d,\"s\":%" PRIu64 ",\"x\":\"", c->index, seq);
        for (int i = n; i < opt.payload - 2 && n < (int)sizeof(data) - 3; i++)
            data[n++] = 'x';
        snprintf(data + n, sizeof(data) - (size_t)n, "\"}");
        RpcMessage m = RPC_MESSAGE__INIT;
        m.has_action = 1;
        m.action = RPC__ACTION__RPC_REQUEST;
        m.name = RPC_NAME;
        m.correlationid = cid;
        m.data = data;
        pending *p = &rc->ring[seq % RING];
        p->seq = seq;
        p->open = true;
        p->sent_ns = now_ns();
        rc->inflight++;
        P.sent++;
        conn_send(c, TOPIC__TOPIC_RPC, &m.base);
    }
}

/* A caller's request ended: with a RESPONSE (ok) or an error message. */
static void answered(conn *c, const RpcMessage *m, bool ok)
{
    rpc_conn *rc = c->data;
    int pid, who, n = 0;
    uint64_t seq;
    if (m->correlationid == NULL ||
        sscanf(m->correlationid, "%d-%d-%" SCNu64 "%n", &pid, &who, &seq, &n) != 3 || m->correlationid[n] != '\0' ||
        pid != P.pid || who != c->index || !rc->ring[seq % RING].open || rc->ring[seq % RING].seq != seq) {
        P.b->bad++; /* an answer to nothing we have open */
        return;
    }
    pending *p = &rc->ring[seq % RING];
    p->open = false;
    rc->inflight--;
    P.answers++;
    P.last_answer_ns = now_ns();
    if (!ok) {
        P.errors++;
        P.b->bad++;
    } else {
        char want[48];
        snprintf(want, sizeof(want), "\"s\":%" PRIu64 ",", seq);
        if (m->data == NULL || strstr(m->data, want) == NULL)
            P.b->bad++; /* not our data echoed */
        else
            P.calls++;
        hist_add_ns(&P.lat, P.last_answer_ns - p->sent_ns);
    }
    make_calls(c);
}

static void reply(conn *c, const RpcMessage *req, int action, const char *data)
{
    RpcMessage m = RPC_MESSAGE__INIT;
    m.has_action = 1;
    m.action = action;
    m.name = req->name;
    m.correlationid = req->correlationid;
    m.data = (char *)data;
    conn_send(c, TOPIC__TOPIC_RPC, &m.base);
}

static void on_rpc(conn *c, const RpcMessage *m)
{
    rpc_conn *rc = c->data;
    if (c->role == PROVIDER) {
        if (m->action == RPC__ACTION__RPC_PROVIDE && m->isack) {
            if (!rc->provided) {
                rc->provided = true;
                P.provided++;
            }
        } else if (m->action == RPC__ACTION__RPC_REQUEST && m->name != NULL && strcmp(m->name, RPC_NAME) == 0) {
            reply(c, m, RPC__ACTION__RPC_ACCEPT, NULL); /* what the client's response.send() does */
            reply(c, m, RPC__ACTION__RPC_RESPONSE, m->data);
        } else {
            P.b->bad++;
            if (P.b->bad <= 10)
                fprintf(stderr, "eddy-bench: rpc: provider %d got RPC action %d (original action %d)\n", c->index,
                        m->action, m->originalaction);
        }
        return;
    }
    switch (m->action) {
    case RPC__ACTION__RPC_ACCEPT:
        return; /* forwarded from the provider: nothing to do */
    case RPC__ACTION__RPC_RESPONSE:
        answered(c, m, true);
        return;
    case RPC__ACTION__RPC_REQUEST_ERROR:
    case RPC__ACTION__RPC_NO_RPC_PROVIDER:
    case RPC__ACTION__RPC_ACCEPT_TIMEOUT:
    case RPC__ACTION__RPC_RESPONSE_TIMEOUT:
    case RPC__ACTION__RPC_MESSAGE_DENIED:
    case RPC__ACTION__RPC_MESSAGE_PERMISSION_ERROR:
    case RPC__ACTION__RPC_INVALID_MESSAGE_DATA:
        if (P.errors < 10)
            fprintf(stderr, "eddy-bench: rpc: caller %d got RPC action %d for %s\n", c->index, m->action,
                    m->correlationid ? m->correlationid : "-");
        answered(c, m, false);
        return;
    default:
        P.b->bad++;
        return;
    }
}

static void on_message(conn *c, const ProtobufCMessage *m)
{
    on_rpc(c, (const RpcMessage *)m);
}

static void logged_in(conn *c)
{
    if (c->role != PROVIDER)
        return;
    char *names[] = {RPC_NAME};
    RpcMessage m = RPC_MESSAGE__INIT;
    m.has_action = 1;
    m.action = RPC__ACTION__RPC_PROVIDE;
    m.names = names;
    m.n_names = 1;
    m.correlationid = "0";
    conn_send(c, TOPIC__TOPIC_RPC, &m.base);
}

static const bench_hooks hooks = {logged_in, TOPIC__TOPIC_RPC, &rpc_message__descriptor, on_message, NULL, NULL};

static bool all_provided(bench *b)
{
    return bench_all_settled(b) && (b->failed > 0 || P.provided == opt.providers);
}

static bool none_open(bench *b)
{
    (void)b;
    return P.answers == P.sent;
}

static int run(bench *b)
{
    P.b = b;
    P.pid = (int)getpid();
    if (bench_start(b, &hooks) != 0)
        return BENCH_SETUP_FAILED;
    hist_init(&P.lat);
    int total = opt.callers + opt.providers;
    rpc_conn *rcs = xcalloc((size_t)total, sizeof(rpc_conn));
    conn **callers = xcalloc((size_t)opt.callers, sizeof(conn *));
    for (int i = 0; i < total; i++) {
        bool provider = i < opt.providers;
        if (!provider)
            rcs[i].ring = xcalloc(RING, sizeof(pending));
        conn *c = bench_connect(b, provider ? PROVIDER : CALLER, provider ? i : i - opt.providers, OUT_QUEUE, NULL);
        c->data = &rcs[i];
        if (!provider)
            callers[i - opt.providers] = c;
    }
    int rc = BENCH_SETUP_FAILED;
    bench_service(b, now_ns() + 20000000000LL, all_provided);
    if (b->failed > 0 || b->ready < total || P.provided < opt.providers) {
        fprintf(stderr, "eddy-bench: %d of %d connections logged in, %d of %d providers acknowledged\n", b->ready,
                total, P.provided, opt.providers);
        goto out;
    }
    double cpu0 = b->pid ? server_cpu_seconds(b) : -1;
    b->start_ns = P.last_answer_ns = now_ns();
    b->running = true;
    for (int i = 0; i < opt.callers; i++)
        make_calls(callers[i]);
    bench_service(b, b->start_ns + (int64_t)(b->seconds * 1e9), NULL);
    b->running = false;
    /* drain: until every request is answered (at most 5 s) */
    bench_drain(b, &P.answers, 5000000000LL, 5000000000LL, none_open);
    double cpu1 = b->pid ? server_cpu_seconds(b) : -1;
    long rss = b->pid ? server_rss_kib(b) : -1;
    uint64_t lost = P.sent - P.answers;
    double elapsed = (double)(P.last_answer_ns - b->start_ns) / 1e9;
    double rate = elapsed > 0 ? (double)P.calls / elapsed : 0;
    double cpu_per_m = cpu0 >= 0 && P.calls > 0 ? (cpu1 - cpu0) / ((double)P.calls / 1e6) : -1;
    printf("%-10s rpc: %d callers x %d in flight, %d providers: %" PRIu64 " calls in %.2f s = %.0f calls/s; "
           "latency p50 %.2f ms p99 %.2f ms p99.9 %.2f ms; errors %" PRIu64 ", lost %" PRIu64 ", bad %" PRIu64,
           b->label, opt.callers, opt.inflight, opt.providers, P.calls, elapsed, rate, hist_ms(&P.lat, 0.5),
           hist_ms(&P.lat, 0.99), hist_ms(&P.lat, 0.999), P.errors, lost, b->bad);
    if (cpu_per_m >= 0)
        printf("; server %.2f CPU s per million calls, RSS %ld KiB", cpu_per_m, rss);
    printf("\n");
    if (b->json_path != NULL) {
        json_line j;
        json_begin(&j, b->label, "rpc");
        json_int(&j, "callers", opt.callers);
        json_int(&j, "providers", opt.providers);
        json_int(&j, "inflight", opt.inflight);
        json_int(&j, "payload", opt.payload);
        json_int(&j, "calls", (long long)P.calls);
        json_num(&j, "seconds", elapsed, 3);
        json_num(&j, "calls_per_s", rate, 0);
        json_num(&j, "p50_ms", hist_ms(&P.lat, 0.5), 3);
        json_num(&j, "p99_ms", hist_ms(&P.lat, 0.99), 3);
        json_num(&j, "p999_ms", hist_ms(&P.lat, 0.999), 3);
        json_int(&j, "errors", (long long)P.errors);
        json_int(&j, "lost", (long long)lost);
        json_int(&j, "bad", (long long)b->bad);
        json_num(&j, "cpu_s_per_million", cpu_per_m, 3);
        json_int(&j, "rss_kib", rss);
        json_append(&j, b->json_path);
    }
    rc = lost == 0 && b->bad == 0 ? BENCH_OK : BENCH_FAILED;
out:
    bench_destroy(b);
    for (int i = 0; i < total; i++)
        xfree(rcs[i].ring);
    xfree(rcs);
    xfree(callers);
    hist_free(&P.lat);
    return rc;
}

static const bench_opt opts[] = {
    {"--callers", OPT_INT, &opt.callers, 1, 10000, "caller connections"},
    {"--providers", OPT_INT, &opt.providers, 1, 10000, "provider connections of " RPC_NAME},
    {"--inflight", OPT_INT, &opt.inflight, 1, RING / 4, "requests each caller keeps in flight (1: sequential)"},
    {"--payload", OPT_INT, &opt.payload, 32, 4000, "bytes of request data (echoed back)"},
};

const bench_scenario bench_rpc = {"rpc", "callers make RPCs to echo providers, N in flight each", opts,
                                  sizeof(opts) / sizeof(opts[0]), run};
