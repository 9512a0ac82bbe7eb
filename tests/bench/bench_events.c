/* bench_events.c - eddy-bench's `events` scenario: S subscriber connections
 * subscribe to T topics; P publisher connections emit to the topics round
 * robin, at a total rate R per second (open loop) or as fast as the server
 * delivers (R = 0: a closed loop that keeps at most WINDOW deliveries
 * outstanding, so a run measures the sustained rate rather than how fast
 * queues fill). Every payload carries its publisher, a per (publisher, topic)
 * sequence number and a send timestamp (CLOCK_MONOTONIC, one machine), so each
 * subscriber measures latency and counts lost and reordered events exactly.
 *
 * Reports delivered events/s, latency p50/p99/p99.9, lost and reordered
 * counts (both must be zero), and, given --pid, the server's CPU seconds per
 * million deliveries and resident memory.
 *
 * Not for the connection handling (bench.c). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "mem.h"

#define MAX_PUBLISHERS 256
#define MAX_TOPICS 64

enum { PUBLISHER, SUBSCRIBER };

static struct {
    int publishers, subscribers, topics, payload, rate;
} opt = {2, 4, 8, 64, 0};

typedef struct ev_conn {
    uint64_t *next_seq;       /* subscriber: expected next seq per (publisher, topic) */
    uint64_t seq[MAX_TOPICS]; /* publisher: next seq per topic */
    int next_topic;
} ev_conn;

static struct {
    bench *b;
    conn *pubs[MAX_PUBLISHERS];
    bool stalled; /* max rate: the publishers wait for deliveries to catch up */
    uint64_t emitted;
    uint64_t sent_per[MAX_PUBLISHERS][MAX_TOPICS];
    uint64_t delivered, reordered;
    hist lat;
} E;

static void topic_name(char *out, size_t len, int t)
{
    snprintf(out, len, "bench/ev/%d", t);
}

static void emit_one(conn *c)
{
    ev_conn *ec = c->data;
    int t = ec->next_topic++ % opt.topics;
    char name[64], data[4096];
    topic_name(name, sizeof(name), t);
    uint64_t seq = ec->seq[t]++;
    int n = snprintf(data, sizeof(data), "{\"p\":%d,\"t\":%d,\"s\":%" PRIu64 ",\"ns\":%" PRId64 ",\"x\":\"", c->index,
                     t, seq, now_ns());
    int pad = opt.payload - n - 2;
    for (int i = 0; i < pad && n < (int)sizeof(data) - 3; i++)
        data[n++] = 'x';
    data[n++] = '"';
    data[n++] = '}';
    data[n] = '\0';
    bench_emit(c, name, data);
    E.sent_per[c->index][t]++;
    E.emitted++;
}

/* Max rate: true while fewer than WINDOW deliveries are outstanding. */
static bool in_window(void)
{
    return E.emitted * (uint64_t)opt.subscribers < E.delivered + WINDOW;
}

static void logged_in(conn *c)
{
    if (c->role != SUBSCRIBER)
        return;
    /* subscribe to every topic, in one bulk message */
    char **names = xcalloc((size_t)opt.topics, sizeof(char *));
    for (int t = 0; t < opt.topics; t++) {
        names[t] = xmalloc(32);
        topic_name(names[t], 32, t);
    }
    EventMessage e = EVENT_MESSAGE__INIT;
    e.has_action = 1;
    e.action = EVENT__ACTION__EVENT_SUBSCRIBE;
    e.names = names;
    e.n_names = (size_t)opt.topics;
    e.correlationid = "1";
    conn_send(c, TOPIC__TOPIC_EVENT, &e.base);
    for (int t = 0; t < opt.topics; t++)
        xfree(names[t]);
    xfree(names);
}

static void on_emit(conn *c, const EventMessage *m)
{
    ev_conn *ec = c->data;
    int p, t;
    uint64_t s;
    int64_t ns;
    if (c->role != SUBSCRIBER || m->data == NULL ||
        sscanf(m->data, "{\"p\":%d,\"t\":%d,\"s\":%" SCNu64 ",\"ns\":%" SCNd64, &p, &t, &s, &ns) != 4 || p < 0 ||
        p >= opt.publishers || t < 0 || t >= opt.topics) {
        E.b->bad++;
        return;
    }
    uint64_t *next = &ec->next_seq[p * MAX_TOPICS + t];
    if (s < *next)
        E.reordered++; /* (a gap is counted at the end: expected against received) */
    else
        *next = s + 1;
    E.delivered++;
    if (E.stalled && E.b->running && in_window()) { /* a closed loop: room for more */
        E.stalled = false;
        for (int i = 0; i < opt.publishers; i++)
            if (E.pubs[i]->wsi != NULL)
                lws_callback_on_writable(E.pubs[i]->wsi);
    }
    hist_add_ns(&E.lat, now_ns() - ns);
}

static void on_message(conn *c, const ProtobufCMessage *msg)
{
    const EventMessage *m = (const EventMessage *)msg;
    if (m->has_action && m->action == EVENT__ACTION__EVENT_EMIT)
        on_emit(c, m);
}

/* The closed loop: a publisher emits whenever its socket is free and the window has room. */
static bool on_writable(conn *c)
{
    if (c->role != PUBLISHER || !E.b->running || opt.rate != 0)
        return false;
    if (c->out_len == 0 && in_window())
        emit_one(c); /* as fast as the server delivers */
    if (!in_window()) {
        E.stalled = true; /* on_emit asks for writable again */
        return false;
    }
    return true;
}

/* The open loop: the publishers emit what is due by now. */
static void on_tick(bench *b)
{
    bench_send_due(b, opt.rate, &E.emitted, E.pubs, opt.publishers, emit_one);
}

static const bench_hooks hooks = {logged_in, TOPIC__TOPIC_EVENT, &event_message__descriptor, on_message, on_writable,
                                   on_tick};

static int run(bench *b)
{
    if (opt.payload < 48 || opt.payload > 4000) {
        fprintf(stderr, "eddy-bench: events wants --payload 48..4000\n");
        return BENCH_USAGE;
    }
    E.b = b;
    if (bench_start(b, &hooks) != 0)
        return BENCH_SETUP_FAILED;
    hist_init(&E.lat);
    int total = opt.publishers + opt.subscribers;
    ev_conn *ecs = xcalloc((size_t)total, sizeof(ev_conn));
    for (int i = 0; i < total; i++) {
        bool pub = i < opt.publishers;
        if (!pub)
            ecs[i].next_seq = xcalloc((size_t)opt.publishers * MAX_TOPICS, sizeof(uint64_t));
        conn *c = bench_connect(b, pub ? PUBLISHER : SUBSCRIBER, pub ? i : i - opt.publishers, OUT_QUEUE, NULL);
        c->data = &ecs[i];
        if (pub)
            E.pubs[i] = c;
    }
    int rc = BENCH_SETUP_FAILED;
    bench_service(b, now_ns() + 20000000000LL, bench_all_settled);
    if (b->failed > 0 || b->ready < total) {
        fprintf(stderr, "eddy-bench: %d of %d connections logged in\n", b->ready, total);
        goto out;
    }
    bench_service(b, now_ns() + 500000000LL, NULL); /* subscriptions reach the server */
    double cpu0 = b->pid ? server_cpu_seconds(b) : -1;
    b->start_ns = now_ns();
    b->running = true;
    for (int i = 0; i < opt.publishers; i++)
        lws_callback_on_writable(E.pubs[i]->wsi);
    bench_service(b, b->start_ns + (int64_t)(b->seconds * 1e9), NULL);
    b->running = false;
    /* drain: until nothing has arrived for half a second (at most 10 s) */
    int64_t end_ns = bench_drain(b, &E.delivered, 500000000LL, 10000000000LL, NULL);
    double cpu1 = b->pid ? server_cpu_seconds(b) : -1;
    long rss = b->pid ? server_rss_kib(b) : -1;
    double elapsed = (double)(end_ns - b->start_ns) / 1e9;
    /* exact loss: what each subscriber should have had, against what it got */
    uint64_t expected = 0;
    for (int p = 0; p < opt.publishers; p++)
        for (int t = 0; t < opt.topics; t++)
            expected += E.sent_per[p][t];
    expected *= (uint64_t)opt.subscribers;
    uint64_t lost = expected > E.delivered ? expected - E.delivered : 0;
    double rate = (double)E.delivered / elapsed;
    double cpu_per_m = cpu0 >= 0 && E.delivered > 0 ? (cpu1 - cpu0) / ((double)E.delivered / 1e6) : -1;
    printf("%-10s events: %" PRIu64 " emitted, %" PRIu64 " delivered in %.2f s = %.0f deliveries/s; "
           "latency p50 %.2f ms p99 %.2f ms p99.9 %.2f ms; lost %" PRIu64 ", reordered %" PRIu64 ", bad %" PRIu64,
           b->label, E.emitted, E.delivered, elapsed, rate, hist_ms(&E.lat, 0.5), hist_ms(&E.lat, 0.99),
           hist_ms(&E.lat, 0.999), lost, E.reordered, b->bad);
    if (cpu_per_m >= 0)
        printf("; server %.2f CPU s per million deliveries, RSS %ld KiB", cpu_per_m, rss);
    printf("\n");
    if (b->json_path != NULL) {
        json_line j;
        json_begin(&j, b->label, "events");
        json_int(&j, "publishers", opt.publishers);
        json_int(&j, "subscribers", opt.subscribers);
        json_int(&j, "topics", opt.topics);
        json_int(&j, "payload", opt.payload);
        json_int(&j, "rate", opt.rate);
        json_int(&j, "emitted", (long long)E.emitted);
        json_int(&j, "delivered", (long long)E.delivered);
        json_num(&j, "seconds", elapsed, 3);
        json_num(&j, "deliveries_per_s", rate, 0);
        json_num(&j, "p50_ms", hist_ms(&E.lat, 0.5), 3);
        json_num(&j, "p99_ms", hist_ms(&E.lat, 0.99), 3);
        json_num(&j, "p999_ms", hist_ms(&E.lat, 0.999), 3);
        json_int(&j, "lost", (long long)lost);
        json_int(&j, "reordered", (long long)E.reordered);
        json_int(&j, "bad", (long long)b->bad);
        json_num(&j, "cpu_s_per_million", cpu_per_m, 3);
        json_int(&j, "rss_kib", rss);
        json_append(&j, b->json_path);
    }
    rc = lost == 0 && E.reordered == 0 && b->bad == 0 ? BENCH_OK : BENCH_FAILED;
out:
    bench_destroy(b);
    for (int i = 0; i < total; i++)
        xfree(ecs[i].next_seq);
    xfree(ecs);
    hist_free(&E.lat);
    return rc;
}

static const bench_opt opts[] = {
    {"--publishers", OPT_INT, &opt.publishers, 1, MAX_PUBLISHERS, "publisher connections"},
    {"--subscribers", OPT_INT, &opt.subscribers, 0, 100000, "subscriber connections, each on every topic"},
    {"--topics", OPT_INT, &opt.topics, 1, MAX_TOPICS, "event names bench/ev/<t>"},
    {"--payload", OPT_INT, &opt.payload, 48, 4000, "bytes of event data"},
    {"--rate", OPT_INT, &opt.rate, 0, 100000000, "emits per second in all, 0: as fast as delivered (closed loop)"},
};

const bench_scenario bench_events = {"events", "publishers emit to topics round robin; subscribers time and count",
                                     opts, sizeof(opts) / sizeof(opts[0]), run};
