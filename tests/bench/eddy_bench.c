/* eddy_bench.c - a native load generator speaking the deepstream protocol over
 * libwebsockets client connections (many per thread), so that the server, not
 * the load generator, is what a run measures. Works against eddy and against
 * deepstream alike.
 *
 * Scenario `events`: S subscriber connections subscribe to T topics; P
 * publisher connections emit to the topics round robin, at a total rate R per
 * second (open loop) or as fast as the server delivers (R = 0: a closed loop
 * that keeps at most WINDOW deliveries outstanding, so a run measures the
 * sustained rate rather than how fast queues fill). Every payload
 * carries its publisher, a per (publisher, topic) sequence number and a send
 * timestamp (CLOCK_MONOTONIC, one machine), so each subscriber measures latency
 * and counts lost and reordered events exactly.
 *
 * Reports delivered events/s, latency p50/p99/p99.9, lost and reordered
 * counts (both must be zero), and, given --pid, the server's CPU seconds per
 * million deliveries and resident memory. --json FILE appends one JSON line.
 *
 * usage: eddy-bench events --url ws://127.0.0.1:6020/deepstream [--publishers 2]
 *        [--subscribers 4] [--topics 8] [--payload 64] [--rate 0] [--seconds 5]
 *        [--pid PID] [--label NAME] [--json FILE] */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "broker.h"
#include "deepstream.pb-c.h"
#include "mem.h"

#define MAX_PUBLISHERS 256
#define MAX_TOPICS 64
#define HIST_US 200000 /* latency histogram: 1 us buckets up to 200 ms, then one overflow bucket */
#define OUT_QUEUE 4096  /* frames queued per connection */
#define WINDOW 8192     /* max rate: deliveries emitted but not yet received */

typedef struct conn conn;

typedef struct bench {
    struct lws_context *ctx;
    char host[256], path[256];
    int port;
    const char *label;
    int publishers, subscribers, topics, payload, rate;
    double seconds;
    pid_t pid;
    conn **conns;
    int nconns, ready, failed;
    bool running, done;
    bool stalled; /* max rate: the publishers wait for deliveries to catch up */
    int64_t start_ns, end_ns, last_tick_ns;
    uint64_t emitted;   /* all publishers */
    uint64_t sent_per[MAX_PUBLISHERS][MAX_TOPICS];
    uint64_t delivered, reordered, bad;
    uint32_t *hist;
    uint64_t over;
    lws_sorted_usec_list_t tick; /* every millisecond: bounds lws_service's wait, paces the rate */
} bench;

struct conn {
    bench *b;
    struct lws *wsi;
    int index;
    bool publisher;
    int state; /* 0 connecting, 1 challenged, 2 authenticating, 3 ready */
    frame *out[OUT_QUEUE];
    unsigned out_head, out_len;
    uint8_t *rx;
    size_t rx_len, rx_cap;
    uint64_t *next_seq; /* subscriber: expected next seq per (publisher, topic) */
    uint64_t seq[MAX_TOPICS]; /* publisher: next seq per topic */
    int next_topic;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* ---------------- frames ---------------- */

static void queue_frame(conn *c, frame *f)
{
    if (c->out_len == OUT_QUEUE) { /* the server is not reading: count, never block */
        frame_unref(f);
        c->b->bad++;
        return;
    }
    c->out[(c->out_head + c->out_len++) % OUT_QUEUE] = f;
    lws_callback_on_writable(c->wsi);
}

static void send_msg(conn *c, int topic, const ProtobufCMessage *m)
{
    queue_frame(c, frame_encode(topic, m));
}

static void topic_name(char *out, size_t len, int t)
{
    snprintf(out, len, "bench/ev/%d", t);
}

static void emit_one(conn *c)
{
    bench *b = c->b;
    int t = c->next_topic++ % b->topics;
    char name[64], data[4096];
    topic_name(name, sizeof(name), t);
    uint64_t seq = c->seq[t]++;
    int n = snprintf(data, sizeof(data), "{\"p\":%d,\"t\":%d,\"s\":%" PRIu64 ",\"ns\":%" PRId64 ",\"x\":\"", c->index,
                     t, seq, now_ns());
    int pad = b->payload - n - 2;
    for (int i = 0; i < pad && n < (int)sizeof(data) - 3; i++)
        data[n++] = 'x';
    data[n++] = '"';
    data[n++] = '}';
    data[n] = '\0';
    EventMessage m = EVENT_MESSAGE__INIT;
    m.has_action = 1;
    m.action = EVENT__ACTION__EVENT_EMIT;
    m.name = name;
    m.data = data;
    send_msg(c, TOPIC__TOPIC_EVENT, &m.base);
    b->sent_per[c->index][t]++;
    b->emitted++;
}

/* Max rate: true while fewer than WINDOW deliveries are outstanding. */
static bool in_window(const bench *b)
{
    return b->emitted * (uint64_t)b->subscribers < b->delivered + WINDOW;
}

/* ---------------- receiving ---------------- */

static void on_event(conn *c, const EventMessage *m)
{
    bench *b = c->b;
    if (!m->has_action || m->action != EVENT__ACTION__EVENT_EMIT || m->data == NULL)
        return;
    int p, t;
    uint64_t s;
    int64_t ns;
    if (sscanf(m->data, "{\"p\":%d,\"t\":%d,\"s\":%" SCNu64 ",\"ns\":%" SCNd64, &p, &t, &s, &ns) != 4 || p < 0 ||
        p >= b->publishers || t < 0 || t >= b->topics) {
        b->bad++;
        return;
    }
    uint64_t *next = &c->next_seq[p * MAX_TOPICS + t];
    if (s < *next)
        b->reordered++; /* (a gap is counted at the end: expected against received) */
    else
        *next = s + 1;
    b->delivered++;
    if (b->stalled && b->running && in_window(b)) { /* a closed loop: room for more */
        b->stalled = false;
        for (int i = 0; i < b->publishers; i++)
            if (b->conns[i]->wsi != NULL)
                lws_callback_on_writable(b->conns[i]->wsi);
    }
    int64_t us = (now_ns() - ns) / 1000;
    if (us >= 0 && us < HIST_US)
        b->hist[us]++;
    else
        b->over++;
}

static void on_frame(conn *c, const uint8_t *data, size_t len)
{
    /* varint length prefix, then Message{topic, message} */
    size_t off = 0, body = 0;
    for (int shift = 0; off < len && shift < 35; shift += 7) {
        uint8_t byte = data[off++];
        body |= (size_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80))
            break;
    }
    if (body > len - off)
        return;
    Message *msg = message__unpack(NULL, body, data + off);
    if (msg == NULL)
        return;
    if (msg->has_topic && msg->has_message) {
        if (msg->topic == TOPIC__TOPIC_CONNECTION) {
            ConnectionMessage *m = connection_message__unpack(NULL, msg->message.len, msg->message.data);
            if (m != NULL && m->action == CONNECTION__ACTION__CONNECTION_ACCEPT && c->state == 1) {
                AuthMessage a = AUTH_MESSAGE__INIT;
                a.has_action = 1;
                a.action = AUTH__ACTION__AUTH_REQUEST;
                a.data = "{}";
                send_msg(c, TOPIC__TOPIC_AUTH, &a.base);
                c->state = 2;
            }
            connection_message__free_unpacked(m, NULL);
        } else if (msg->topic == TOPIC__TOPIC_AUTH) {
            AuthMessage *m = auth_message__unpack(NULL, msg->message.len, msg->message.data);
            if (m != NULL && m->action == AUTH__ACTION__AUTH_AUTH_SUCCESSFUL && c->state == 2) {
                c->state = 3;
                c->b->ready++;
                if (!c->publisher) { /* subscribe to every topic, in one bulk message */
                    char **names = xcalloc((size_t)c->b->topics, sizeof(char *));
                    for (int t = 0; t < c->b->topics; t++) {
                        names[t] = xmalloc(32);
                        topic_name(names[t], 32, t);
                    }
                    EventMessage e = EVENT_MESSAGE__INIT;
                    e.has_action = 1;
                    e.action = EVENT__ACTION__EVENT_SUBSCRIBE;
                    e.names = names;
                    e.n_names = (size_t)c->b->topics;
                    e.correlationid = "1";
                    send_msg(c, TOPIC__TOPIC_EVENT, &e.base);
                    for (int t = 0; t < c->b->topics; t++)
                        xfree(names[t]);
                    xfree(names);
                }
            }
            auth_message__free_unpacked(m, NULL);
        } else if (msg->topic == TOPIC__TOPIC_EVENT) {
            EventMessage *m = event_message__unpack(NULL, msg->message.len, msg->message.data);
            if (m != NULL)
                on_event(c, m);
            event_message__free_unpacked(m, NULL);
        }
    }
    message__free_unpacked(msg, NULL);
}

/* ---------------- lws ---------------- */

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    conn *c = lws_get_opaque_user_data(wsi);
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED: {
        c->state = 1;
        ConnectionMessage m = CONNECTION_MESSAGE__INIT;
        m.has_action = 1;
        m.action = CONNECTION__ACTION__CONNECTION_CHALLENGE;
        m.url = "ws://bench/deepstream";
        m.protocolversion = "0.1a";
        send_msg(c, TOPIC__TOPIC_CONNECTION, &m.base);
        break;
    }
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (c->rx_len + len > (16u << 20))
            return -1;
        if (c->rx_len + len > c->rx_cap) {
            c->rx_cap = (c->rx_len + len) * 2;
            c->rx = xrealloc(c->rx, c->rx_cap);
        }
        memcpy(c->rx + c->rx_len, in, len);
        c->rx_len += len;
        if (lws_is_final_fragment(wsi)) {
            on_frame(c, c->rx, c->rx_len);
            c->rx_len = 0;
        }
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        bench *b = c->b;
        bool more = c->publisher && b->running && b->rate == 0 && c->state == 3;
        if (more && c->out_len == 0 && in_window(b))
            emit_one(c); /* as fast as the server delivers */
        if (c->out_len == 0)
            break;
        frame *f = c->out[c->out_head];
        c->out_head = (c->out_head + 1) % OUT_QUEUE;
        c->out_len--;
        int n = lws_write(wsi, frame_payload(f), f->len, LWS_WRITE_BINARY);
        frame_unref(f);
        if (n < 0)
            return -1;
        if (more && !in_window(b))
            b->stalled = true; /* on_event asks for writable again */
        if (c->out_len > 0 || (more && !b->stalled))
            lws_callback_on_writable(wsi);
        break;
    }
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        fprintf(stderr, "eddy-bench: connection %d failed: %s\n", c->index, in ? (char *)in : "?");
        c->b->failed++;
        c->wsi = NULL;
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (!c->b->done) {
            fprintf(stderr, "eddy-bench: connection %d closed by the server\n", c->index);
            c->b->failed++;
        }
        c->wsi = NULL;
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    {"eddy-bench", callback, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static conn *open_conn(bench *b, int index, bool publisher)
{
    conn *c = xcalloc(1, sizeof(*c));
    c->b = b;
    c->index = index;
    c->publisher = publisher;
    if (!publisher)
        c->next_seq = xcalloc((size_t)b->publishers * MAX_TOPICS, sizeof(uint64_t));
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof(ci));
    ci.context = b->ctx;
    ci.address = b->host;
    ci.port = b->port;
    ci.path = b->path;
    ci.host = b->host;
    ci.origin = b->host;
    ci.protocol = NULL;
    ci.opaque_user_data = c;
    ci.pwsi = &c->wsi;
    lws_client_connect_via_info(&ci);
    return c;
}

/* ---------------- measuring ---------------- */

static double cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command may hold spaces */
    unsigned long utime, stime;
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static double percentile(const bench *b, double q)
{
    uint64_t total = b->over, seen = 0;
    for (int i = 0; i < HIST_US; i++)
        total += b->hist[i];
    uint64_t want = (uint64_t)((double)total * q);
    for (int i = 0; i < HIST_US; i++) {
        seen += b->hist[i];
        if (seen > want)
            return (double)i / 1000.0;
    }
    return HIST_US / 1000.0;
}

static bench *the_bench;

/* The millisecond tick: open-loop publishers emit what is due by now. */
static void on_tick(lws_sorted_usec_list_t *sul)
{
    bench *b = the_bench;
    if (b->running && b->rate > 0) {
        uint64_t due = (uint64_t)((double)(now_ns() - b->start_ns) / 1e9 * b->rate);
        int guard = 0;
        while (b->emitted < due && guard++ < 100000)
            for (int i = 0; i < b->publishers && b->emitted < due; i++)
                if (b->conns[i]->state == 3)
                    emit_one(b->conns[i]);
    }
    lws_sul_schedule(b->ctx, 0, &b->tick, on_tick, 1000);
}

static void service_until(bench *b, int64_t deadline_ns, bool (*done)(bench *))
{
    while (!interrupted && now_ns() < deadline_ns && (done == NULL || !done(b)))
        lws_service(b->ctx, 0);
}

static bool all_ready(bench *b)
{
    return b->ready + b->failed >= b->nconns;
}

int main(int argc, char **argv)
{
    bench *b = xcalloc(1, sizeof(*b));
    const char *url = "ws://127.0.0.1:6020/deepstream", *json_path = NULL;
    b->publishers = 2;
    b->subscribers = 4;
    b->topics = 8;
    b->payload = 64;
    b->seconds = 5;
    b->label = "server";
    if (argc < 2 || strcmp(argv[1], "events") != 0) {
        fprintf(stderr, "usage: eddy-bench events --url URL [--publishers P] [--subscribers S] [--topics T]\n"
                        "       [--payload BYTES] [--rate PER_SECOND|0] [--seconds D] [--pid PID] [--label NAME]\n"
                        "       [--json FILE]\n");
        return 2;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--url") == 0) url = v;
        else if (strcmp(k, "--publishers") == 0) b->publishers = atoi(v);
        else if (strcmp(k, "--subscribers") == 0) b->subscribers = atoi(v);
        else if (strcmp(k, "--topics") == 0) b->topics = atoi(v);
        else if (strcmp(k, "--payload") == 0) b->payload = atoi(v);
        else if (strcmp(k, "--rate") == 0) b->rate = atoi(v);
        else if (strcmp(k, "--seconds") == 0) b->seconds = atof(v);
        else if (strcmp(k, "--pid") == 0) b->pid = (pid_t)atoi(v);
        else if (strcmp(k, "--label") == 0) b->label = v;
        else if (strcmp(k, "--json") == 0) json_path = v;
        else {
            fprintf(stderr, "eddy-bench: unknown option %s\n", k);
            return 2;
        }
    }
    if (b->publishers < 1 || b->publishers > MAX_PUBLISHERS || b->subscribers < 0 || b->topics < 1 ||
        b->topics > MAX_TOPICS || b->payload < 48 || b->payload > 4000) {
        fprintf(stderr, "eddy-bench: publishers 1..%d, topics 1..%d, payload 48..4000\n", MAX_PUBLISHERS, MAX_TOPICS);
        return 2;
    }
    if (sscanf(url, "ws://%255[^:/]:%d%255s", b->host, &b->port, b->path) != 3) {
        fprintf(stderr, "eddy-bench: --url wants ws://HOST:PORT/PATH\n");
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    lws_set_log_level(getenv("LWS_DEBUG") ? LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_INFO : LLL_ERR, NULL); /* LWS_DEBUG=1: lws internals */
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    b->ctx = lws_create_context(&info);
    if (b->ctx == NULL)
        return 1;
    b->hist = xcalloc(HIST_US, sizeof(uint32_t));
    the_bench = b;
    lws_sul_schedule(b->ctx, 0, &b->tick, on_tick, 1000);
    b->nconns = b->publishers + b->subscribers;
    b->conns = xcalloc((size_t)b->nconns, sizeof(conn *));
    for (int i = 0; i < b->nconns; i++)
        b->conns[i] = open_conn(b, i < b->publishers ? i : i - b->publishers, i < b->publishers);
    service_until(b, now_ns() + 20000000000LL, all_ready);
    if (b->failed > 0 || b->ready < b->nconns) {
        fprintf(stderr, "eddy-bench: %d of %d connections logged in\n", b->ready, b->nconns);
        return 1;
    }
    service_until(b, now_ns() + 500000000LL, NULL); /* subscriptions reach the server */
    double cpu0 = b->pid ? cpu_seconds(b->pid) : -1;
    b->start_ns = now_ns();
    b->running = true;
    for (int i = 0; i < b->publishers; i++)
        lws_callback_on_writable(b->conns[i]->wsi);
    service_until(b, b->start_ns + (int64_t)(b->seconds * 1e9), NULL);
    b->running = false;
    /* drain: until nothing has arrived for half a second (at most 10 s) */
    uint64_t last = b->delivered;
    int64_t quiet_since = now_ns(), drain_end = now_ns() + 10000000000LL;
    while (!interrupted && now_ns() < drain_end && now_ns() - quiet_since < 500000000LL) {
        lws_service(b->ctx, 0);
        if (b->delivered != last) {
            last = b->delivered;
            quiet_since = now_ns();
        }
    }
    b->end_ns = quiet_since;
    double cpu1 = b->pid ? cpu_seconds(b->pid) : -1;
    long rss = b->pid ? rss_kib(b->pid) : -1;
    double elapsed = (double)(b->end_ns - b->start_ns) / 1e9;
    /* exact loss: what each subscriber should have had, against what it got */
    uint64_t expected = 0;
    for (int p = 0; p < b->publishers; p++)
        for (int t = 0; t < b->topics; t++)
            expected += b->sent_per[p][t];
    expected *= (uint64_t)b->subscribers;
    uint64_t lost = expected > b->delivered ? expected - b->delivered : 0;
    double rate = (double)b->delivered / elapsed;
    double cpu_per_m = cpu0 >= 0 && b->delivered > 0 ? (cpu1 - cpu0) / ((double)b->delivered / 1e6) : -1;
    printf("%-10s events: %" PRIu64 " emitted, %" PRIu64 " delivered in %.2f s = %.0f deliveries/s; "
           "latency p50 %.2f ms p99 %.2f ms p99.9 %.2f ms; lost %" PRIu64 ", reordered %" PRIu64 "",
           b->label, b->emitted, b->delivered, elapsed, rate, percentile(b, 0.5), percentile(b, 0.99),
           percentile(b, 0.999), lost, b->reordered);
    if (cpu_per_m >= 0)
        printf("; server %.2f CPU s per million deliveries, RSS %ld KiB", cpu_per_m, rss);
    printf("\n");
    if (json_path != NULL) {
        FILE *f = fopen(json_path, "a");
        if (f != NULL) {
            fprintf(f,
                    "{\"label\":\"%s\",\"scenario\":\"events\",\"publishers\":%d,\"subscribers\":%d,\"topics\":%d,"
                    "\"payload\":%d,\"rate\":%d,\"emitted\":%" PRIu64 ",\"delivered\":%" PRIu64
                    ",\"seconds\":%.3f,\"deliveries_per_s\":%.0f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,"
                    "\"lost\":%" PRIu64 ",\"reordered\":%" PRIu64 ",\"cpu_s_per_million\":%.3f,\"rss_kib\":%ld}\n",
                    b->label, b->publishers, b->subscribers, b->topics, b->payload, b->rate, b->emitted,
                    b->delivered, elapsed, rate, percentile(b, 0.5), percentile(b, 0.99), percentile(b, 0.999),
                    lost, b->reordered, cpu_per_m, rss);
            fclose(f);
        }
    }
    b->done = true;
    lws_sul_cancel(&b->tick);
    lws_context_destroy(b->ctx);
    return lost == 0 && b->reordered == 0 && b->bad == 0 ? 0 : 3;
}
