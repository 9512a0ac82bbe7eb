/* bench.c - the shared machinery of eddy-bench (see bench.h): libwebsockets
 * client connections with bounded frame queues, the deepstream login
 * (CHALLENGE, ACCEPT, AUTH REQUEST "{}", AUTH_SUCCESSFUL), a client-style
 * heartbeat, the service loop with its millisecond tick, histograms, /proc
 * readings and JSON result lines.
 *
 * Not for what a scenario sends or measures: logged-in connections hand
 * their messages to the scenario's hooks. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "mem.h"

#define PING_EVERY_NS 20000000000LL /* a client's PING, well inside a server's 2 x 30 s silence limit */
#define RX_MAX (16u << 20)
#define REPORT_CLOSES 10 /* closes and connect failures printed one by one, then only counted */

volatile sig_atomic_t bench_interrupted;

int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

uint64_t bench_due(const bench *b, int rate)
{
    return (uint64_t)((double)(now_ns() - b->start_ns) / 1e9 * rate);
}

void bench_send_due(bench *b, int rate, const uint64_t *sent, conn **conns, int n, void (*send)(conn *c))
{
    if (!b->running || rate <= 0)
        return;
    uint64_t due = bench_due(b, rate);
    int guard = 0;
    while (*sent < due && guard++ < 100000)
        for (int i = 0; i < n && *sent < due; i++)
            if (conns[i]->state == CONN_READY)
                send(conns[i]);
}

void bench_emit(conn *c, char *name, char *data)
{
    EventMessage m = EVENT_MESSAGE__INIT;
    m.has_action = 1;
    m.action = EVENT__ACTION__EVENT_EMIT;
    m.name = name;
    m.data = data;
    conn_send(c, TOPIC__TOPIC_EVENT, &m.base);
}

static bench *the_bench; /* for the tick, whose callback only gets the sul */

/* ---------------- frames ---------------- */

static void queue_frame(conn *c, frame *f)
{
    if (c->out_len == c->out_cap || c->wsi == NULL) { /* the server is not reading: count, never block */
        frame_unref(f);
        c->b->bad++;
        return;
    }
    c->out[(c->out_head + c->out_len++) % c->out_cap] = f;
    lws_callback_on_writable(c->wsi);
}

void conn_send(conn *c, int topic, const ProtobufCMessage *m)
{
    queue_frame(c, frame_encode(topic, m));
}

static void conn_failed(conn *c, const char *why)
{
    bench *b = c->b;
    if (c->state == CONN_FAILED)
        return;
    if (c->state == CONN_READY)
        b->ready--;
    c->state = CONN_FAILED;
    if (++b->failed <= REPORT_CLOSES)
        fprintf(stderr, "eddy-bench: connection %d/%d: %s\n", c->role, c->index, why);
    else if (b->failed == REPORT_CLOSES + 1)
        fprintf(stderr, "eddy-bench: (more connection failures, only counted)\n");
}

/* ---------------- receiving: the login, then the scenario ---------------- */

/* A message on the scenario's topic: decoded here, handed to its hook. */
static void on_scenario_message(conn *c, const ProtobufCBinaryData *inner)
{
    const bench_hooks *h = c->b->hooks;
    ProtobufCMessage *m = protobuf_c_message_unpack(h->descriptor, NULL, inner->len, inner->data);
    if (m == NULL) {
        c->b->bad++;
        return;
    }
    h->message(c, m);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void on_connection(conn *c, const ProtobufCBinaryData *inner)
{
    ConnectionMessage *m = connection_message__unpack(NULL, inner->len, inner->data);
    if (m == NULL) {
        c->b->bad++;
        return;
    }
    if (m->action == CONNECTION__ACTION__CONNECTION_ACCEPT && c->state == CONN_CHALLENGED) {
        AuthMessage a = AUTH_MESSAGE__INIT;
        a.has_action = 1;
        a.action = AUTH__ACTION__AUTH_REQUEST;
        char login[300] = "{}";
        if (c->b->user != NULL)
            snprintf(login, sizeof(login), "{\"username\":\"%s\"}", c->b->user);
        a.data = login;
        conn_send(c, TOPIC__TOPIC_AUTH, &a.base);
        c->state = CONN_AUTHENTICATING;
    } else if (m->action == CONNECTION__ACTION__CONNECTION_REJECT) {
        conn_failed(c, "challenge rejected");
    }
    connection_message__free_unpacked(m, NULL);
}

static void on_auth(conn *c, const ProtobufCBinaryData *inner)
{
    AuthMessage *m = auth_message__unpack(NULL, inner->len, inner->data);
    if (m == NULL) {
        c->b->bad++;
        return;
    }
    if (m->action == AUTH__ACTION__AUTH_AUTH_SUCCESSFUL && c->state == CONN_AUTHENTICATING) {
        c->state = CONN_READY;
        c->b->ready++;
        if (c->b->hooks->logged_in != NULL)
            c->b->hooks->logged_in(c);
    } else if (m->action == AUTH__ACTION__AUTH_AUTH_UNSUCCESSFUL ||
               m->action == AUTH__ACTION__AUTH_TOO_MANY_AUTH_ATTEMPTS) {
        conn_failed(c, "login refused");
    }
    auth_message__free_unpacked(m, NULL);
}

static void on_frame(conn *c, const uint8_t *data, size_t len)
{
    /* varint length prefix, then Message{topic, message} (protocol §3) */
    size_t off = 0, body = 0;
    for (int shift = 0; off < len && shift < 35; shift += 7) {
        uint8_t byte = data[off++];
        body |= (size_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80))
            break;
    }
    if (body > len - off) {
        c->b->bad++;
        return;
    }
    Message *msg = message__unpack(NULL, body, data + off);
    if (msg == NULL) {
        c->b->bad++;
        return;
    }
    if (msg->has_topic && msg->has_message) {
        if (msg->topic == TOPIC__TOPIC_CONNECTION)
            on_connection(c, &msg->message);
        else if (msg->topic == TOPIC__TOPIC_AUTH)
            on_auth(c, &msg->message);
        else if (c->state == CONN_READY && msg->topic == c->b->hooks->topic)
            on_scenario_message(c, &msg->message);
    }
    message__free_unpacked(msg, NULL);
}

/* ---------------- lws ---------------- */

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    conn *c = lws_get_opaque_user_data(wsi);
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED: {
        c->state = CONN_CHALLENGED;
        ConnectionMessage m = CONNECTION_MESSAGE__INIT;
        m.has_action = 1;
        m.action = CONNECTION__ACTION__CONNECTION_CHALLENGE;
        m.url = "ws://bench/deepstream";
        m.protocolversion = "0.1a";
        conn_send(c, TOPIC__TOPIC_CONNECTION, &m.base);
        break;
    }
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (c->rx_len + len > RX_MAX)
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
        bool more = c->b->hooks->writable != NULL && c->state == CONN_READY && c->b->hooks->writable(c);
        if (c->out_len == 0)
            break;
        frame *f = c->out[c->out_head];
        c->out_head = (c->out_head + 1) % c->out_cap;
        c->out_len--;
        int n = lws_write(wsi, frame_payload(f), f->len, LWS_WRITE_BINARY);
        frame_unref(f);
        if (n < 0)
            return -1;
        if (c->out_len > 0 || more)
            lws_callback_on_writable(wsi);
        break;
    }
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        char why[300];
        snprintf(why, sizeof(why), "failed: %s", in ? (char *)in : "?");
        if (c != NULL) {
            c->wsi = NULL;
            conn_failed(c, why);
        }
        break;
    }
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c != NULL) {
            c->wsi = NULL;
            if (!c->b->done)
                conn_failed(c, "closed by the server");
        }
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

conn *bench_connect(bench *b, int role, int index, unsigned out_cap, const char *iface)
{
    conn *c = xcalloc(1, sizeof(*c));
    c->b = b;
    c->role = role;
    c->index = index;
    c->out_cap = out_cap;
    c->out = xcalloc(out_cap, sizeof(frame *));
    if (b->nconns == b->conns_cap) {
        b->conns_cap = b->conns_cap ? b->conns_cap * 2 : 64;
        b->conns = xrealloc(b->conns, (size_t)b->conns_cap * sizeof(conn *));
    }
    b->conns[b->nconns++] = c;
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof(ci));
    ci.context = b->ctx;
    int srv = (b->nconns - 1) % b->nservers;
    ci.address = b->host[srv];
    ci.port = b->port[srv];
    ci.path = b->path[srv];
    ci.host = b->host[srv];
    ci.origin = b->host[srv];
    ci.protocol = NULL;
    ci.iface = iface; /* lws binds the socket to this interface name or address before connect() */
    if (b->tls[srv]) /* what TLS costs is measured, not who the server is */
        ci.ssl_connection = LCCSCF_USE_SSL | LCCSCF_ALLOW_SELFSIGNED | LCCSCF_ALLOW_INSECURE |
                            LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
    ci.opaque_user_data = c;
    ci.pwsi = &c->wsi;
    if (lws_client_connect_via_info(&ci) == NULL) {
        c->wsi = NULL;
        conn_failed(c, "could not start connecting");
    }
    return c;
}

/* The millisecond tick: the scenario's pacing, and a client's heartbeat. */
static void on_tick(lws_sorted_usec_list_t *sul)
{
    bench *b = the_bench;
    (void)sul;
    if (b->hooks->tick != NULL)
        b->hooks->tick(b);
    int64_t now = now_ns();
    if (now - b->last_ping_ns > PING_EVERY_NS) {
        b->last_ping_ns = now;
        ConnectionMessage m = CONNECTION_MESSAGE__INIT;
        m.has_action = 1;
        m.action = CONNECTION__ACTION__CONNECTION_PING;
        frame *f = frame_encode(TOPIC__TOPIC_CONNECTION, &m.base);
        for (int i = 0; i < b->nconns; i++)
            if (b->conns[i]->state == CONN_READY) {
                f->refs++; /* one encoding, a reference per queue */
                queue_frame(b->conns[i], f);
            }
        frame_unref(f);
    }
    lws_sul_schedule(b->ctx, 0, &b->tick, on_tick, 1000);
}

int bench_start(bench *b, const bench_hooks *hooks)
{
    b->hooks = hooks;
    /* LWS_DEBUG=1: lws internals */
    lws_set_log_level(getenv("LWS_DEBUG") ? LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_INFO : LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    for (int i = 0; i < b->nservers; i++)
        if (b->tls[i])
            info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    b->ctx = lws_create_context(&info);
    if (b->ctx == NULL) {
        fprintf(stderr, "eddy-bench: could not create the libwebsockets context\n");
        return -1;
    }
    the_bench = b;
    b->last_ping_ns = now_ns();
    lws_sul_schedule(b->ctx, 0, &b->tick, on_tick, 1000);
    return 0;
}

void bench_destroy(bench *b)
{
    if (b == NULL)
        return;
    b->done = true;
    if (b->ctx != NULL) {
        lws_sul_cancel(&b->tick);
        lws_context_destroy(b->ctx); /* closes every connection (CLIENT_CLOSED, ignored now) */
        b->ctx = NULL;
    }
    for (int i = 0; i < b->nconns; i++) {
        conn *c = b->conns[i];
        for (unsigned k = 0; k < c->out_len; k++)
            frame_unref(c->out[(c->out_head + k) % c->out_cap]);
        xfree(c->out);
        xfree(c->rx);
        xfree(c);
    }
    xfree(b->conns);
    b->conns = NULL;
    b->nconns = 0;
}

void bench_service(bench *b, int64_t deadline_ns, bool (*done)(bench *))
{
    while (!bench_interrupted && now_ns() < deadline_ns && (done == NULL || !done(b)))
        lws_service(b->ctx, 0);
}

bool bench_all_settled(bench *b)
{
    return b->ready + b->failed >= b->nconns;
}

int64_t bench_drain(bench *b, const uint64_t *watched, int64_t quiet_ns, int64_t max_ns, bool (*settled)(bench *))
{
    uint64_t last = *watched;
    int64_t quiet_since = now_ns(), end = quiet_since + max_ns;
    while (!bench_interrupted && now_ns() < end && now_ns() - quiet_since < quiet_ns &&
           (settled == NULL || !settled(b))) {
        lws_service(b->ctx, 0);
        if (*watched != last) {
            last = *watched;
            quiet_since = now_ns();
        }
    }
    return quiet_since;
}

/* ---------------- measuring ---------------- */

void hist_init(hist *h)
{
    h->us = xcalloc(HIST_US, sizeof(uint32_t));
    h->ms = xcalloc(HIST_MS, sizeof(uint32_t));
    h->over = h->count = 0;
}

void hist_free(hist *h)
{
    if (h == NULL)
        return;
    xfree(h->us);
    xfree(h->ms);
    h->us = h->ms = NULL;
}

void hist_add_ns(hist *h, int64_t ns)
{
    int64_t us = ns / 1000, ms = (us - HIST_US) / 1000;
    if (us < 0)
        h->over++; /* a clock going backwards: cannot happen with CLOCK_MONOTONIC on one machine */
    else if (us < HIST_US)
        h->us[us]++;
    else if (ms < HIST_MS)
        h->ms[ms]++;
    else
        h->over++;
    h->count++;
}

double hist_ms(const hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t want = (uint64_t)((double)h->count * q), seen = 0;
    for (int i = 0; i < HIST_US; i++) {
        seen += h->us[i];
        if (seen > want)
            return (double)i / 1000.0;
    }
    for (int i = 0; i < HIST_MS; i++) {
        seen += h->ms[i];
        if (seen > want)
            return HIST_US / 1000.0 + i;
    }
    return HIST_US / 1000.0 + HIST_MS;
}

double proc_cpu_seconds(pid_t pid)
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

double server_cpu_seconds(const bench *b)
{
    double sum = 0;
    for (int i = 0; i < b->npids; i++) {
        double s = proc_cpu_seconds(b->pids[i]);
        if (s < 0)
            return -1;
        sum += s;
    }
    return sum;
}

long server_rss_kib(const bench *b)
{
    long sum = 0;
    for (int i = 0; i < b->npids; i++) {
        long k = proc_rss_kib(b->pids[i]);
        if (k < 0)
            return -1;
        sum += k;
    }
    return sum;
}

long proc_rss_kib(pid_t pid)
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

/* ---------------- results ---------------- */

static void json_put(json_line *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void json_put(json_line *j, const char *fmt, ...)
{
    if (j->len >= sizeof(j->buf))
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(j->buf + j->len, sizeof(j->buf) - j->len, fmt, ap);
    va_end(ap);
    j->len = n < 0 ? sizeof(j->buf) : j->len + (size_t)n;
}

void json_begin(json_line *j, const char *label, const char *scenario)
{
    j->len = 0;
    json_put(j, "{\"label\":\"");
    for (const char *p = label; *p; p++) { /* labels are plain names; keep the line valid JSON anyway */
        if (*p == '"' || *p == '\\')
            json_put(j, "\\%c", *p);
        else
            json_put(j, "%c", (unsigned char)*p < 0x20 ? '?' : *p);
    }
    json_put(j, "\",\"scenario\":\"%s\"", scenario);
}

void json_int(json_line *j, const char *key, long long v)
{
    json_put(j, ",\"%s\":%lld", key, v);
}

void json_num(json_line *j, const char *key, double v, int decimals)
{
    json_put(j, ",\"%s\":%.*f", key, decimals, v);
}

int json_append(json_line *j, const char *path)
{
    json_put(j, "}\n");
    if (j->len >= sizeof(j->buf)) {
        fprintf(stderr, "eddy-bench: result line too long for %s\n", path);
        return -1;
    }
    FILE *f = fopen(path, "a");
    if (f == NULL) {
        fprintf(stderr, "eddy-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    fputs(j->buf, f);
    return fclose(f) == 0 ? 0 : -1;
}
