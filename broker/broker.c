/* broker.c - the broker's lifecycle: creates the parts of internal.h and
 * wires them together (the loop's, links', acks' and auth's hooks point
 * here), keeps the inbound queue that the links' callbacks post to, waits for
 * the nodes, runs the loop, and stops. Not for anything a session or a topic
 * does, nor the loop's mechanics (loop.c). */
#include "broker.h"
#include "internal.h"

#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "prom.h"
#include "queue.h"
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
    edge edge;          /* what the topic modules are given */
    loop *loop;
    sessions *sessions;
    acks *acks;
    link_set *links;
    topics *topics;
    auth *auth;
    queue *inbound;
    uint64_t inbound_dropped;
    permit *permit;
    limits *limits; /* what one connection may do */
    admit *admit;   /* which connections are let in */
    api *api;       /* deepstream's HTTP API */
    http_front *http;
    local_node local; /* standalone: the in-process node (node NULL: none) */
    volatile sig_atomic_t *reload; /* broker_watch_reload; NULL: none */
    struct lws_context *lws;       /* while the loop runs */
    void (*reload_also)(void *ctx);
    void *reload_ctx;
};

/* Wakes the service loop; safe from any thread (not from a signal handler:
 * handlers only set the stop flag, which the loop checks every 200 ms). */
static void wake(void *ctx)
{
    loop_wake(((broker *)ctx)->loop);
}

/* Hands an item to the service thread (the links' callbacks); -1 when full. */
static int post(void *ctx, int kind, int li, uint64_t seq, void *item)
{
    broker *b = ctx;
    inbound *in = xmalloc(sizeof(*in));
    *in = (inbound){kind, li, seq, item};
    size_t before;
    if (queue_push_counted(b->inbound, in, 100, &before) != 0) {
        xfree(in);
        if (b->inbound_dropped++ % 1000 == 0)
            log_warn("inbound-queue-full", "dropped_total=%llu", (unsigned long long)b->inbound_dropped);
        return -1;
    }
    if (before == 0) /* otherwise the loop is already draining, or woken and about to */
        wake(b);
    return 0;
}

/* The links' and acks' view of the topic table. */
static void reload_permissions(broker *b);

static void deliver(void *ctx, const op *o)
{
    if (o->kind == OP_RELOAD) { /* eddy ctl reload, through a node */
        reload_permissions(ctx);
        return;
    }
    topics_deliver(((broker *)ctx)->topics, o);
}

static int fail(void *ctx, const op *o)
{
    return topics_fail(((broker *)ctx)->topics, o);
}

static void resync(void *ctx, int li)
{
    topics_resync(((broker *)ctx)->topics, li);
}

static void recover(void *ctx, int li)
{
    topics_recover(((broker *)ctx)->topics, li);
}

/* gate.c: the records s's waiting message reads are read. */
static void resume_session(void *ctx, session *s)
{
    topics_resume(((broker *)ctx)->topics, s);
    if (s->sink != NULL && s->sink->resumed != NULL)
        s->sink->resumed(s);
}

static void login(void *ctx, session *s)
{
    broker *b = ctx;
    admit_logged_in(b->admit, s);
    topics_login(b->topics, s);
}

/* /metrics: the process, then every part of the broker, then (standalone)
 * the node's families, all eddy_node_*. */
static void write_metrics(void *ctx, FILE *f)
{
    broker *b = ctx;
    prom_write_process(f, b->local.node != NULL ? "standalone" : "broker");
    fprintf(f, "# HELP eddy_sessions websocket connections and HTTP API requests being served\n"
            "# TYPE eddy_sessions gauge\neddy_sessions %zu\n", sessions_count(b->sessions));
    traffic_metrics(sessions_traffic(b->sessions), f);
    fprintf(f, "# TYPE eddy_inbound_dropped_total counter\neddy_inbound_dropped_total %llu\n",
            (unsigned long long)b->inbound_dropped);
    auth_metrics(b->auth, f);
    http_metrics(b->http, f);
    api_metrics(b->api, f);
    topics_metrics(b->topics, f);
    links_metrics(b->links, f);
    permit_metrics(b->permit, f);
    limits_metrics(b->limits, f);
    admit_metrics(b->admit, f);
    if (b->local.node != NULL && b->local.metrics != NULL)
        b->local.metrics(b->local.node, f);
}

static void drain_inbound(broker *b)
{
    inbound *in;
    while ((in = queue_pop(b->inbound, 0)) != NULL) {
        links_handle_inbound(b->links, in->kind, in->link, in->seq, in->item);
        xfree(in);
    }
    links_poll_local(b->links);
    auth_drain(b->auth);
}

/* ---- the loop's hooks ---- */

static void started(void *ctx, struct lws_context *lws)
{
    broker *b = ctx;
    sessions_start(b->sessions, lws);
    links_start(b->links, lws);
    admit_start(b->admit);
    api_start(b->api, lws);
    b->lws = lws;
}

static void stopping(void *ctx)
{
    broker *b = ctx;
    sessions_stop(b->sessions);
    links_stop(b->links);
    api_stop(b->api);
    b->lws = NULL;
}

static void stopped(void *ctx)
{
    log_info("broker-stopping", "sessions=%zu", sessions_count(((broker *)ctx)->sessions));
}

static int admit_socket(void *ctx, int fd)
{
    return admit_peer(((broker *)ctx)->admit, fd) ? 0 : -1;
}

static void opened(void *ctx, session *s, struct lws *wsi)
{
    broker *b = ctx;
    session_open(b->sessions, s, wsi);
    if (auth_wants_connection_data(b->auth))
        s->conn_data = loop_handshake_data(wsi);
    log_debug("session-open", "session=%llu", (unsigned long long)s->id);
    admit_opened(b->admit, s);
}

static int received(void *ctx, session *s, const void *in, size_t len)
{
    broker *b = ctx;
    if (s->closing)
        return 0;
    const uint8_t *msg;
    size_t msg_len;
    int rc = session_receive(s, in, len, &msg, &msg_len);
    if (rc > 0 && limits_message(b->limits, s, msg, msg_len))
        dispatch_frame(b->topics, b->auth, s, msg, msg_len);
    return rc < 0 ? -1 : 0;
}

static void closed(void *ctx, session *s)
{
    broker *b = ctx;
    log_debug("session-closed", "session=%llu", (unsigned long long)s->id);
    topics_session_closed(b->topics, s);
    admit_closed(b->admit, s);
    session_closed(s);
}

static int http(void *ctx, struct lws *wsi, int reason, void *in, size_t len)
{
    return http_event(((broker *)ctx)->http, wsi, reason, in, len);
}

void broker_watch_reload(broker *b, volatile sig_atomic_t *flag, void (*also)(void *ctx), void *ctx)
{
    b->reload = flag;
    b->reload_also = also;
    b->reload_ctx = ctx;
}

static void reload_permissions(broker *b)
{
    char err[512];
    if (b->cfg->permission_type != PERMISSION_CONFIG)
        return;
    if (permit_reload(b->permit, err, sizeof(err)) == 0)
        log_info("permissions-reloaded", "file=%s", b->cfg->permissions_file);
    else
        log_error("permissions-reload-failed", "%s (the rules in force stay)", err);
}

/* Every 200 ms: a reload asked for by SIGHUP. */
static void tick(void *ctx)
{
    broker *b = ctx;
    if (b->reload == NULL || !*b->reload)
        return;
    *b->reload = 0;
    reload_permissions(b);
    tls_reload(b->cfg, b->lws);
    links_reload_tls(b->links);
    if (b->reload_also != NULL)
        b->reload_also(b->reload_ctx);
}

static void woken(void *ctx)
{
    broker *b = ctx;
    if (b->inbound != NULL)
        drain_inbound(b);
}

broker *broker_create(const eddy_config *cfg, const local_node *local, bool *config_error)
{
    broker *b = xcalloc(1, sizeof(*b));
    b->cfg = cfg;
    if (local != NULL)
        b->local = *local;
    loop_hooks serving = {.started = started, .stopping = stopping, .stopped = stopped, .admit = admit_socket,
                          .opened = opened, .received = received, .closed = closed, .http = http, .woken = woken,
                          .tick = tick, .ctx = b};
    char why[600];
    if (tls_check(cfg, why, sizeof(why)) != 0) {
        fprintf(stderr, "eddy: %s\n", why);
        *config_error = true;
        xfree(b);
        return NULL;
    }
    b->loop = loop_new(cfg, &serving);
    b->inbound = queue_new(INBOUND_QUEUE_LEN);
    b->sessions = sessions_new(cfg);
    b->limits = limits_new(cfg);
    b->admit = admit_new(cfg);
    b->acks = acks_new(b->sessions, fail, b);
    auth_hooks ah = {.wake = wake, .login = login, .ctx = b};
    b->auth = auth_create(cfg, b->sessions, &ah, config_error);
    if (b->auth == NULL)
        goto fail;
    char err[512];
    if ((b->permit = permit_new(cfg, err, sizeof(err))) == NULL) {
        log_error("config-error", "%s", err);
        *config_error = true;
        goto fail;
    }
    uint64_t id = random_id();
    link_hooks hooks = {.post = post, .wake = wake, .deliver = deliver, .fail = fail, .resync = resync,
                        .recover = recover, .ctx = b};
    b->edge = (edge){.cfg = cfg, .broker_id = id, .sessions = b->sessions, .acks = b->acks, .permit = b->permit,
                     .limits = b->limits};
    b->edge.resume = resume_session;
    b->edge.resume_ctx = b;
    b->topics = topics_create(&b->edge); /* before the links: a local node answers their HELLO at once */
    b->links = links_create(cfg, id, local, b->acks, &hooks);
    if (b->links == NULL)
        goto fail;
    b->edge.links = b->links;
    b->api = api_new(cfg, b->sessions, b->topics, b->auth, &b->edge);
    b->http = http_front_new(cfg, b->api, write_metrics, b);
    return b;
fail:
    broker_destroy(b);
    return NULL;
}

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
    log_info("nodes-linked", "nodes=%d broker=%016llx", b->cfg->cluster.count,
             (unsigned long long)b->edge.broker_id);
    return loop_run(b->loop, stop);
}

static void free_inbound(void *p)
{
    inbound *in = p;
    if (in->kind == INBOUND_FAILED) {
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
    loop_close(b->loop);     /* closes every session: their topics let go */
    links_destroy(b->links); /* flushes the uninterest messages those closes queued; ends the links */
    auth_destroy(b->auth);   /* joins its threads: nothing wakes the loop after this */
    loop_free(b->loop);
    queue_free(b->inbound, free_inbound);
    http_front_free(b->http);
    api_free(b->api);
    topics_destroy(b->topics);
    acks_free(b->acks);
    sessions_free(b->sessions);
    permit_free(b->permit);
    limits_free(b->limits);
    admit_free(b->admit);
    xfree(b);
}
