/* broker.c - the broker's libwebsockets context and service loop: the websocket
 * endpoint (urlPath), GET /health-check and GET /metrics on one port, the inbound queue that
 * link and auth threads post to, the heartbeat sweep, start-up and shutdown. */
#include "broker.h"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "util.h"

#define INBOUND_QUEUE_LEN 8192

typedef struct inbound {
    int kind;
    int link;
    uint64_t seq;
    void *item;
} inbound;

struct broker {
    const eddy_config *cfg;
    uint64_t id;
    struct lws_context *ctx;
    link_set *links;
    event_subs *events;
    record_subs *records;
    presence_subs *presence;
    auth *auth;
    queue *inbound;
    dict *sessions; /* id -> session */
    lws_sorted_usec_list_t sweep_timer;
    lws_sorted_usec_list_t tick_timer;
    volatile sig_atomic_t *stop;
    pthread_mutex_t ctx_lock; /* guards ctx_live against other threads' wake-ups */
    bool ctx_live;
    uint64_t inbound_dropped;
    uint8_t *send_buf; /* broker_send_buffer */
    size_t send_cap;
};

const eddy_config *broker_config(broker *b) { return b->cfg; }
uint64_t broker_id(broker *b) { return b->id; }
event_subs *broker_events(broker *b) { return b->events; }
record_subs *broker_records(broker *b) { return b->records; }
presence_subs *broker_presence(broker *b) { return b->presence; }
link_set *broker_links(broker *b) { return b->links; }
auth *broker_auth(broker *b) { return b->auth; }
struct lws_context *broker_lws(broker *b) { return b->ctx; }

uint8_t *broker_send_buffer(broker *b, size_t len)
{
    if (len > b->send_cap) {
        xfree(b->send_buf);
        b->send_buf = xmalloc(len);
        b->send_cap = len;
    }
    return b->send_buf;
}

session *broker_session(broker *b, uint64_t id)
{
    return dict_get(b->sessions, &id, sizeof(id));
}

void broker_wake(broker *b)
{
    pthread_mutex_lock(&b->ctx_lock);
    if (b->ctx_live)
        lws_cancel_service(b->ctx);
    pthread_mutex_unlock(&b->ctx_lock);
}

bool broker_serving(broker *b)
{
    return b->ctx_live; /* written only by the service thread, which is the caller */
}

int broker_post(broker *b, int kind, int li, uint64_t seq, void *item)
{
    inbound *in = xmalloc(sizeof(*in));
    in->kind = kind;
    in->link = li;
    in->seq = seq;
    in->item = item;
    size_t before;
    if (queue_push_counted(b->inbound, in, 100, &before) != 0) {
        xfree(in);
        if (b->inbound_dropped++ % 1000 == 0)
            log_warn("inbound-queue-full", "dropped_total=%llu", (unsigned long long)b->inbound_dropped);
        return -1;
    }
    if (before == 0) /* otherwise the loop is already draining, or woken and about to */
        broker_wake(b);
    return 0;
}

struct each_session {
    void (*fn)(session *s, void *arg);
    void *arg;
};

static int each_session(const void *k, size_t l, void *v, void *arg)
{
    struct each_session *c = arg;
    c->fn(v, c->arg);
    return 0;
}

void broker_foreach_session(broker *b, void (*fn)(session *s, void *arg), void *arg)
{
    struct each_session c = {fn, arg};
    dict_foreach(b->sessions, each_session, &c);
}

void broker_resync(broker *b, int li)
{
    events_resync(b, li);
    records_resync(b, li);
    rpc_resync(b, li);
    listen_resync(b, li);
    presence_resync(b, li);
}

static void drain_inbound(broker *b)
{
    inbound *in;
    while ((in = queue_pop(b->inbound, 0)) != NULL) {
        if (in->kind == INBOUND_AUTH)
            auth_complete(b->auth, in->item);
        else
            links_handle_inbound(b, in->kind, in->link, in->seq, in->item);
        xfree(in);
    }
    links_poll_local(b);
}

struct sweep_ctx {
    int64_t now, limit;
    session *stale[256];
    int n;
};

static int find_stale(const void *k, size_t l, void *v, void *arg)
{
    struct sweep_ctx *c = arg;
    session *s = v;
    if (!s->closing && c->now - s->last_rx_ms > c->limit)
        c->stale[c->n++] = s;
    return c->n == 256;
}

/* Closes connections silent for twice the heartbeat interval (clients PING
 * every interval, so a live client is never silent that long). */
static void sweep_heartbeats(lws_sorted_usec_list_t *sul)
{
    broker *b = lws_container_of(sul, broker, sweep_timer);
    struct sweep_ctx c = {.now = now_ms(), .limit = 2 * b->cfg->heartbeat_interval_ms};
    dict_foreach(b->sessions, find_stale, &c);
    for (int i = 0; i < c.n; i++)
        session_kill(c.stale[i], "heartbeat-timeout");
    lws_sul_schedule(b->ctx, 0, &b->sweep_timer, sweep_heartbeats,
                     (lws_usec_t)b->cfg->heartbeat_interval_ms * 1000 / 2);
    if (c.n > 0)
        lws_cancel_service(b->ctx);
}

/* Lets the loop notice a stop request within 200 ms: lws_service returns after
 * every timer callback. Signal handlers only set the flag. */
static void tick(lws_sorted_usec_list_t *sul)
{
    broker *b = lws_container_of(sul, broker, tick_timer);
    if (!*b->stop)
        lws_sul_schedule(b->ctx, 0, &b->tick_timer, tick, 200 * 1000);
}

static bool path_matches(struct lws *wsi, const char *want)
{
    char uri[512];
    int n = lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);
    if (n <= 0)
        return false;
    char *q = strchr(uri, '?');
    if (q != NULL)
        *q = '\0';
    return strcmp(uri, want) == 0;
}

/* GET /metrics: Prometheus text format. */
static int serve_metrics(broker *b, struct lws *wsi)
{
    char *text = NULL;
    size_t text_len = 0;
    FILE *f = open_memstream(&text, &text_len);
    if (f == NULL)
        return -1;
    fprintf(f, "# TYPE eddy_sessions gauge\neddy_sessions %zu\n", dict_size(b->sessions));
    fprintf(f, "# TYPE eddy_inbound_dropped_total counter\neddy_inbound_dropped_total %llu\n",
            (unsigned long long)b->inbound_dropped);
    fprintf(f, "# TYPE eddy_records_recovered_total counter\neddy_records_recovered_total %llu\n",
            (unsigned long long)records_recovered(b));
    links_metrics(b->links, f);
    fclose(f);
    /* headers and body in one buffer with the LWS_PRE headroom lws_write wants */
    size_t cap = LWS_PRE + 512 + text_len;
    uint8_t *buf = xmalloc(cap), *start = buf + LWS_PRE, *p = start, *end = buf + cap;
    int rv = -1;
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "text/plain; version=0.0.4", text_len, &p, end) == 0 &&
        lws_finalize_http_header(wsi, &p, end) == 0) {
        memcpy(p, text, text_len);
        p += text_len;
        if (lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_FINAL) >= 0)
            rv = lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    xfree(buf);
    free(text); /* open_memstream's buffer comes from malloc */
    return rv;
}

static int serve_http(broker *b, struct lws *wsi, const char *uri)
{
    if (strcmp(uri, "/metrics") == 0)
        return serve_metrics(b, wsi);
    if (strcmp(uri, "/health-check") == 0) {
        if (lws_return_http_status(wsi, HTTP_STATUS_OK, "OK"))
            return -1;
    } else if (lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL))
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    broker *b = lws_context_user(ctx);
    session *s = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return serve_http(b, wsi, (const char *)in);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        if (!path_matches(wsi, b->cfg->url_path)) {
            log_debug("upgrade-refused", "reason=path");
            return 1;
        }
        return 0;
    case LWS_CALLBACK_ESTABLISHED:
        session_open(b, s, wsi);
        dict_put(b->sessions, &s->id, sizeof(s->id), s);
        log_debug("session-open", "session=%llu", (unsigned long long)s->id);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (s == NULL || s->b == NULL)
            return -1;
        if (s->closing)
            return 0;
        return session_receive(s, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (s == NULL || s->b == NULL)
            return -1;
        return session_writeable(s);
    case LWS_CALLBACK_CLOSED:
        if (s == NULL || s->b == NULL)
            return 0; /* refused before it was established */
        log_debug("session-closed", "session=%llu", (unsigned long long)s->id);
        dict_del(b->sessions, &s->id, sizeof(s->id));
        session_closed(s);
        s->wsi = NULL;
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (b != NULL && b->inbound != NULL)
            drain_inbound(b);
        return 0;
    default:
        return 0;
    }
}

static void lws_log_bridge(int level, const char *line)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == ' '))
        n--;
    if (level & LLL_ERR)
        log_error("lws", "%.*s", (int)n, line);
    else
        log_warn("lws", "%.*s", (int)n, line);
}

broker *broker_create(const eddy_config *cfg, const local_node *local, bool *config_error)
{
    broker *b = xcalloc(1, sizeof(*b));
    b->cfg = cfg;
    b->id = random_id();
    b->sessions = dict_new();
    pthread_mutex_init(&b->ctx_lock, NULL);
    b->inbound = queue_new(INBOUND_QUEUE_LEN);
    b->events = event_subs_new(b);
    b->records = record_subs_new(b);
    b->presence = presence_subs_new(b);
    b->auth = auth_create(cfg, b, config_error);
    if (b->auth == NULL)
        goto fail;
    b->links = links_create(b, cfg, b->id, local);
    if (b->links == NULL)
        goto fail;
    return b;
fail:
    broker_destroy(b);
    return NULL;
}

/* Raises the open-file limit to its hard maximum: every connection is a file
 * descriptor, and lws sizes its connection table from this limit. Logs what
 * the broker can hold. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = was;
    }
    log_info("fd-limit", "open_files=%llu (about that many connections; raise the hard limit, "
             "e.g. LimitNOFILE= in systemd, for more)", (unsigned long long)rl.rlim_cur);
}

static const struct lws_protocols protocols[] = {
    /* First: the default protocol, also given plain HTTP requests. lws keeps a
     * receive buffer of this size per connection for life: small, so an idle
     * connection costs little (3 KiB in all, against 6 with 64 KiB); a larger
     * message arrives in pieces that session_receive reassembles. */
    {"deepstream", callback, sizeof(session), 1024, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int broker_run(broker *b, volatile sig_atomic_t *stop)
{
    int64_t waited_since = now_ms(), last_log = now_ms();
    while (!links_ready(b->links)) {
        if (*stop)
            return 0;
        if (now_ms() - last_log >= 2000) {
            last_log = now_ms();
            log_warn("waiting-for-nodes", "waited_ms=%lld", (long long)(now_ms() - waited_since));
        }
        if (links_refused(b->links))
            return -1;
        /* No session yet: replies to HELLOs (an epoch refusal among them) and stray deliveries. */
        drain_inbound(b);
        usleep(20 * 1000);
    }
    log_info("nodes-linked", "nodes=%d broker=%016llx", b->cfg->node_count, (unsigned long long)b->id);

    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_bridge);
    raise_fd_limit();
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = (int)b->cfg->port;
    info.iface = b->cfg->host;
    info.protocols = protocols;
    info.user = b;
    info.gid = -1;
    info.uid = -1;
    info.pt_serv_buf_size = 32768;
    info.options = LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE;
    if (strchr(b->cfg->host, ':') == NULL)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    b->ctx = lws_create_context(&info);
    if (b->ctx == NULL) {
        log_error("listen-failed", "host=%s port=%lld", b->cfg->host, (long long)b->cfg->port);
        return -1;
    }
    pthread_mutex_lock(&b->ctx_lock);
    b->ctx_live = true;
    pthread_mutex_unlock(&b->ctx_lock);
    b->stop = stop;
    lws_sul_schedule(b->ctx, 0, &b->tick_timer, tick, 200 * 1000);
    struct lws_vhost *vh = lws_get_vhost_by_name(b->ctx, "default");
    int port = vh ? lws_get_vhost_listen_port(vh) : (int)b->cfg->port;
    log_info("broker-listening", "port=%d host=%s path=%s auth=%s", port, b->cfg->host,
             b->cfg->url_path, b->cfg->auth_type == AUTH_FILE ? "file" : "none");
    lws_sul_schedule(b->ctx, 0, &b->sweep_timer, sweep_heartbeats,
                     (lws_usec_t)b->cfg->heartbeat_interval_ms * 1000 / 2);
    drain_inbound(b);
    while (!*stop)
        if (lws_service(b->ctx, 0) < 0)
            break;
    log_info("broker-stopping", "sessions=%zu", dict_size(b->sessions));
    return 0;
}

static void free_inbound(void *p)
{
    inbound *in = p;
    if (in->kind == INBOUND_AUTH)
        auth_result_free(in->item);
    else if (in->kind == INBOUND_FAILED) {
        op_batch_destroy(in->item);
        xfree(in->item);
    } else if (in->item != NULL)
        nng_msg_free(in->item);
    xfree(in);
}

void broker_destroy(broker *b)
{
    if (b == NULL)
        return;
    if (b->ctx != NULL) {
        pthread_mutex_lock(&b->ctx_lock);
        b->ctx_live = false; /* link threads stop waking a context going away */
        pthread_mutex_unlock(&b->ctx_lock);
        lws_sul_cancel(&b->sweep_timer);
        lws_sul_cancel(&b->tick_timer);
        lws_context_destroy(b->ctx); /* closes every session (CLOSED callbacks run) */
        b->ctx = NULL;
    }
    links_destroy(b->links); /* flushes the uninterest messages those closes queued */
    auth_destroy(b->auth);
    queue_free(b->inbound, free_inbound);
    event_subs_free(b->events);
    record_subs_free(b->records);
    presence_subs_free(b->presence);
    dict_free(b->sessions);
    pthread_mutex_destroy(&b->ctx_lock);
    xfree(b->send_buf);
    xfree(b);
}
