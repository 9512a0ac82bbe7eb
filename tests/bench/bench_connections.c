/* bench_connections.c - eddy-bench's `connections` scenario: what holding
 * many clients costs the server. Opens N connections in waves (at most WAVE
 * connecting or logging in at once, so the server's accept queue is not
 * overrun), logs each in and subscribes it to one event name bench/conn/<i % K>,
 * waiting for every SUBSCRIBE ack (protocol §6, §7). With --pid it reads the
 * server's VmRSS before the first connection and after the last ack: KiB per
 * connection, and the CPU seconds the server spent on them. Then it holds the
 * connections for D seconds, emits one event to each of the K names from an
 * extra connection, and checks that every subscribed connection got its event
 * exactly once (missing = lost).
 *
 * Loopback offers one ephemeral port range per (source address, destination)
 * pair; --source-ips M binds connection i to 127.0.0.(1 + i % M) through the
 * iface member of lws_client_connect_info. The open files soft limit is raised
 * to the hard limit first.
 *
 * Not for the connection handling (bench.c). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench.h"
#include "mem.h"

#define WAVE 500         /* connections connecting or logging in at once */
#define FD_MARGIN 64     /* descriptors besides the connections: lws, stdio, /proc reads */
#define MEMBER_QUEUE 8   /* frames a member queues: CHALLENGE, AUTH, SUBSCRIBE, PING */
#define MAX_SOURCE_IPS 254

enum { MEMBER, EMITTER };

static struct {
    int count, names, source_ips;
    double hold;
} opt = {1000, 100, 1, 2};

static struct {
    bench *b;
    conn **members;
    int opened, subscribed;
    uint8_t *got; /* per member: its events received */
    bool *acked;  /* per member: its SUBSCRIBE acked */
    int64_t last_ack_ns;
    int emitted; /* events sent by the emitter */
    uint64_t delivered;
    hist lat;
    char iface[MAX_SOURCE_IPS][24];
} N;

static void event_name(char *out, size_t len, int k)
{
    snprintf(out, len, "bench/conn/%d", k);
}

static void logged_in(conn *c)
{
    if (c->role != MEMBER)
        return;
    char name[32], *names[] = {name};
    event_name(name, sizeof(name), c->index % opt.names);
    EventMessage m = EVENT_MESSAGE__INIT;
    m.has_action = 1;
    m.action = EVENT__ACTION__EVENT_SUBSCRIBE;
    m.names = names;
    m.n_names = 1;
    m.correlationid = "0";
    conn_send(c, TOPIC__TOPIC_EVENT, &m.base);
}

static void on_event(conn *c, const EventMessage *m)
{
    if (c->role != MEMBER) {
        N.b->bad++; /* the emitter subscribes to nothing */
        return;
    }
    if (m->action == EVENT__ACTION__EVENT_SUBSCRIBE && m->isack) {
        if (!N.acked[c->index]) {
            N.acked[c->index] = true;
            N.subscribed++;
            N.last_ack_ns = now_ns();
        }
        return;
    }
    char want[32];
    const char *ns;
    event_name(want, sizeof(want), c->index % opt.names);
    if (m->action != EVENT__ACTION__EVENT_EMIT || m->name == NULL || strcmp(m->name, want) != 0 || m->data == NULL ||
        (ns = strstr(m->data, "\"ns\":")) == NULL) {
        N.b->bad++;
        return;
    }
    if (N.got[c->index]++ > 0)
        N.b->bad++; /* twice */
    N.delivered++;
    hist_add_ns(&N.lat, now_ns() - strtoll(ns + 5, NULL, 10));
}

static void on_message(conn *c, const ProtobufCMessage *m)
{
    on_event(c, (const EventMessage *)m);
}

/* The waves: open more while fewer than WAVE are on their way. */
static void on_tick(bench *b)
{
    while (N.opened < opt.count && N.opened - N.subscribed - b->failed < WAVE) {
        int i = N.opened++;
        N.members[i] = bench_connect(b, MEMBER, i, MEMBER_QUEUE, opt.source_ips > 1 ? N.iface[i % opt.source_ips] : NULL);
    }
}

/* The emitter: one event per write, stamped as it goes out, not as it queues. */
static bool on_writable(conn *c)
{
    if (c->role != EMITTER || N.emitted >= opt.names || c->out_len > 0)
        return c->role == EMITTER && N.emitted < opt.names;
    char name[32], data[64];
    int k = N.emitted++;
    event_name(name, sizeof(name), k);
    snprintf(data, sizeof(data), "{\"k\":%d,\"ns\":%" PRId64 "}", k, now_ns());
    bench_emit(c, name, data);
    return N.emitted < opt.names;
}

static const bench_hooks hooks = {logged_in, TOPIC__TOPIC_EVENT, &event_message__descriptor, on_message, on_writable,
                                   on_tick};

static bool all_subscribed(bench *b)
{
    return N.opened == opt.count && N.subscribed + b->failed >= opt.count;
}

static bool all_delivered(bench *b)
{
    (void)b;
    return N.delivered >= (uint64_t)N.subscribed;
}

/* Raises the open files soft limit to the hard one; refuses a count it cannot hold. */
static int check_limits(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        perror("eddy-bench: getrlimit");
        return -1;
    }
    if (rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            perror("eddy-bench: setrlimit");
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    fprintf(stderr, "eddy-bench: open files limit %llu (hard %llu)\n", (unsigned long long)rl.rlim_cur,
            (unsigned long long)rl.rlim_max);
    if ((unsigned long long)opt.count + FD_MARGIN > (unsigned long long)rl.rlim_cur) {
        fprintf(stderr,
                "eddy-bench: --count %d needs %d open files (with %d to spare) but the limit is %llu: lower --count "
                "or raise the hard limit (ulimit -Hn as root, /etc/security/limits.conf, systemd LimitNOFILE)\n",
                opt.count, opt.count + FD_MARGIN, FD_MARGIN, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    int lo, hi;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL && fscanf(f, "%d %d", &lo, &hi) == 2 && hi >= lo) {
        int per_ip = (opt.count + opt.source_ips - 1) / opt.source_ips;
        if (per_ip > hi - lo + 1) {
            fprintf(stderr,
                    "eddy-bench: %d connections from one source address need more than the %d ephemeral ports "
                    "(%d-%d): use --source-ips %d or more\n",
                    per_ip, hi - lo + 1, lo, hi, (opt.count + hi - lo) / (hi - lo + 1));
            fclose(f);
            return -1;
        }
    }
    if (f != NULL)
        fclose(f);
    return 0;
}

static int run(bench *b)
{
    if (check_limits() != 0)
        return BENCH_SETUP_FAILED;
    N.b = b;
    for (int i = 0; i < opt.source_ips; i++)
        snprintf(N.iface[i], sizeof(N.iface[i]), "127.0.0.%d", 1 + i);
    long rss0 = b->pid ? server_rss_kib(b) : -1;
    double cpu0 = b->pid ? server_cpu_seconds(b) : -1;
    if (bench_start(b, &hooks) != 0)
        return BENCH_SETUP_FAILED;
    hist_init(&N.lat);
    N.members = xcalloc((size_t)opt.count, sizeof(conn *));
    N.got = xcalloc((size_t)opt.count, 1);
    N.acked = xcalloc((size_t)opt.count, sizeof(bool));
    int64_t t0 = now_ns();
    N.last_ack_ns = t0;
    /* the tick opens them; allow 20 s per wave at worst */
    bench_service(b, t0 + 20000000000LL * (1 + opt.count / WAVE), all_subscribed);
    double establish_s = (double)(N.last_ack_ns - t0) / 1e9;
    long rss1 = b->pid ? server_rss_kib(b) : -1;
    double cpu1 = b->pid ? server_cpu_seconds(b) : -1;
    int established = N.subscribed, failed_opening = b->failed;
    fprintf(stderr, "eddy-bench: %d of %d connections subscribed in %.2f s; holding %.1f s\n", established, opt.count,
            establish_s, opt.hold);
    bench_service(b, now_ns() + (int64_t)(opt.hold * 1e9), NULL);
    /* one event to each name, from a connection of its own */
    conn *emitter = bench_connect(b, EMITTER, 0, MEMBER_QUEUE, NULL);
    bench_service(b, now_ns() + 10000000000LL, bench_all_settled);
    int expected = 0;
    for (int i = 0; i < opt.count; i++)
        expected += N.acked[i] && N.members[i]->state == CONN_READY;
    if (emitter->state == CONN_READY) {
        lws_callback_on_writable(emitter->wsi); /* on_writable emits, one event per write */
        bench_drain(b, &N.delivered, 2000000000LL, 10000000000LL, all_delivered);
    } else {
        fprintf(stderr, "eddy-bench: the emitting connection did not log in\n");
    }
    uint64_t lost = 0;
    for (int i = 0; i < opt.count; i++)
        lost += N.acked[i] && N.got[i] == 0;
    b->bad += (uint64_t)b->failed;
    double kib_per_conn = rss0 >= 0 && rss1 >= 0 && established > 0 ? (double)(rss1 - rss0) / established : -1;
    double cpu_s = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;
    double per_s = establish_s > 0 ? established / establish_s : 0;
    printf("%-10s connections: %d of %d established and subscribed (%d names) in %.2f s = %.0f/s", b->label,
           established, opt.count, opt.names, establish_s, per_s);
    if (b->pid)
        printf("; server RSS %ld -> %ld KiB = %.1f KiB per connection, %.2f CPU s", rss0, rss1, kib_per_conn, cpu_s);
    printf("; after %.1f s, %d events: %" PRIu64 " of %d delivered, latency p50 %.2f ms p99 %.2f ms p99.9 %.2f ms; "
           "lost %" PRIu64 ", bad %" PRIu64 " (failed connections %d, %d while opening)\n",
           opt.hold, opt.names, N.delivered, expected, hist_ms(&N.lat, 0.5), hist_ms(&N.lat, 0.99),
           hist_ms(&N.lat, 0.999), lost, b->bad, b->failed, failed_opening);
    if (b->json_path != NULL) {
        json_line j;
        json_begin(&j, b->label, "connections");
        json_int(&j, "count", opt.count);
        json_int(&j, "names", opt.names);
        json_int(&j, "source_ips", opt.source_ips);
        json_num(&j, "hold_s", opt.hold, 1);
        json_int(&j, "established", established);
        json_int(&j, "failed", b->failed);
        json_num(&j, "establish_s", establish_s, 3);
        json_num(&j, "connections_per_s", per_s, 0);
        json_num(&j, "kib_per_conn", kib_per_conn, 2);
        json_num(&j, "server_cpu_s", cpu_s, 3);
        json_int(&j, "rss_before_kib", rss0);
        json_int(&j, "rss_kib", rss1);
        json_int(&j, "delivered", (long long)N.delivered);
        json_num(&j, "p50_ms", hist_ms(&N.lat, 0.5), 3);
        json_num(&j, "p99_ms", hist_ms(&N.lat, 0.99), 3);
        json_num(&j, "p999_ms", hist_ms(&N.lat, 0.999), 3);
        json_int(&j, "lost", (long long)lost);
        json_int(&j, "bad", (long long)b->bad);
        json_append(&j, b->json_path);
    }
    int rc = lost == 0 && b->bad == 0 && established == opt.count ? BENCH_OK : BENCH_FAILED;
    bench_destroy(b);
    xfree(N.members);
    xfree(N.got);
    xfree(N.acked);
    hist_free(&N.lat);
    return rc;
}

static const bench_opt opts[] = {
    {"--count", OPT_INT, &opt.count, 1, 10000000, "connections to open, log in and subscribe"},
    {"--names", OPT_INT, &opt.names, 1, 1000000, "event names bench/conn/<i % K>"},
    {"--hold", OPT_DOUBLE, &opt.hold, 0, 86400, "seconds to hold them before the events"},
    {"--source-ips", OPT_INT, &opt.source_ips, 1, MAX_SOURCE_IPS, "bind connection i to 127.0.0.(1 + i % M)"},
};

const bench_scenario bench_connections = {"connections", "N connections logged in and subscribed: cost, then delivery",
                                          opts, sizeof(opts) / sizeof(opts[0]), run};
