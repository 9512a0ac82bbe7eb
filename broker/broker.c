/* broker.c - the broker's lifecycle and its libwebsockets loop: creates the
 * parts of internal.h and wires them together (the links', acks' and auth's
 * hooks point here), runs the lws context with the websocket endpoint
 * (urlPath) and the HTTP endpoints on one port, the inbound queue that link
 * and auth threads post to, the heartbeat sweep, start-up and shutdown.
 *
 * The loop is libuv's (epoll: a wake-up costs the same with 10 or 10,000 idle
 * connections) through lws's libuv plugin, or lws's own poll() loop when that
 * plugin cannot be loaded. Not for anything a session or a topic does. */
#include "broker.h"
#include "internal.h"

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
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
    sessions *sessions;
    acks *acks;
    link_set *links;
    topics *topics;
    auth *auth;
    queue *inbound;
    uint64_t inbound_dropped;
    struct lws_context *ctx;
    lws_sorted_usec_list_t sweep_timer;
    lws_sorted_usec_list_t tick_timer;
    volatile sig_atomic_t *stop;
    pthread_mutex_t ctx_lock; /* guards ctx_live against other threads' wake-ups */
    bool ctx_live;
    bool uv; /* ctx runs on libuv's loop: lws_service returns only once it has stopped */
    struct sigaction saved_signals[2]; /* the process's SIGINT, SIGTERM handlers (see take_back_signals) */
};

/* Wakes the service loop; safe from any thread (not from a signal handler:
 * handlers only set the stop flag, which the loop checks every 200 ms). */
static void wake(void *ctx)
{
    broker *b = ctx;
    pthread_mutex_lock(&b->ctx_lock);
    if (b->ctx_live)
        lws_cancel_service(b->ctx);
    pthread_mutex_unlock(&b->ctx_lock);
}

/* Hands an item to the service thread (link and auth threads); -1 when full. */
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
static void deliver(void *ctx, const op *o)
{
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

static void login(void *ctx, session *s)
{
    topics_login(((broker *)ctx)->topics, s);
}

static void write_metrics(void *ctx, FILE *f)
{
    broker *b = ctx;
    fprintf(f, "# TYPE eddy_sessions gauge\neddy_sessions %zu\n", sessions_count(b->sessions));
    fprintf(f, "# TYPE eddy_inbound_dropped_total counter\neddy_inbound_dropped_total %llu\n",
            (unsigned long long)b->inbound_dropped);
    topics_metrics(b->topics, f);
    links_metrics(b->links, f);
}

static void drain_inbound(broker *b)
{
    inbound *in;
    while ((in = queue_pop(b->inbound, 0)) != NULL) {
        if (in->kind == INBOUND_AUTH)
            auth_complete(b->auth, in->item);
        else
            links_handle_inbound(b->links, in->kind, in->link, in->seq, in->item);
        xfree(in);
    }
    links_poll_local(b->links);
}

/* Closes connections silent for twice the heartbeat interval (clients PING
 * every interval, so a live client is never silent that long). */
static void sweep_heartbeats(lws_sorted_usec_list_t *sul)
{
    broker *b = lws_container_of(sul, broker, sweep_timer);
    int closed = sessions_sweep(b->sessions, 2 * b->cfg->heartbeat_interval_ms);
    lws_sul_schedule(b->ctx, 0, &b->sweep_timer, sweep_heartbeats,
                     (lws_usec_t)b->cfg->heartbeat_interval_ms * 1000 / 2);
    if (closed > 0)
        lws_cancel_service(b->ctx);
}

/* Before the lws context goes: other threads stop waking it and every timer
 * in its lists is cancelled (a timer left there would outlive the lists). */
static void quiesce_loop(broker *b)
{
    pthread_mutex_lock(&b->ctx_lock);
    b->ctx_live = false;
    pthread_mutex_unlock(&b->ctx_lock);
    lws_sul_cancel(&b->sweep_timer);
    lws_sul_cancel(&b->tick_timer);
    sessions_stop(b->sessions);
    links_stop(b->links);
}

static void log_stopping(broker *b)
{
    log_info("broker-stopping", "sessions=%zu", sessions_count(b->sessions));
}

/* libuv: lws_service runs the loop until the loop stops, and nothing outside
 * the plugin can stop it (lws_uv_getloop lives in the plugin, which exports
 * nothing else). So the broker starts the context's destruction from inside
 * the loop, lws's way with an internal loop: lws_context_destroy here (deferred
 * by lws to the next wake-up, as this runs inside a timer) closes every
 * connection, CLOSED callbacks included; once the last libuv handle has closed
 * lws stops the loop, lws_service returns, and the second lws_context_destroy,
 * in broker_destroy outside the loop, frees the context. */
static void stop_uv_loop(broker *b)
{
    log_stopping(b);
    quiesce_loop(b);
    lws_context_destroy(b->ctx);
}

/* Lets the loop notice a stop request within 200 ms. Signal handlers only set
 * the flag. poll(): lws_service returns after every timer callback and
 * broker_run sees the flag; libuv: this callback stops the loop. */
static void tick(lws_sorted_usec_list_t *sul)
{
    broker *b = lws_container_of(sul, broker, tick_timer);
    if (!*b->stop)
        lws_sul_schedule(b->ctx, 0, &b->tick_timer, tick, 200 * 1000);
    else if (b->uv)
        stop_uv_loop(b);
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

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    broker *b = lws_context_user(ctx);
    session *s = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return http_serve(wsi, (const char *)in, write_metrics, b);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        if (!path_matches(wsi, b->cfg->url_path)) {
            log_debug("upgrade-refused", "reason=path");
            return 1;
        }
        return 0;
    case LWS_CALLBACK_ESTABLISHED:
        session_open(b->sessions, s, wsi);
        log_debug("session-open", "session=%llu", (unsigned long long)s->id);
        return 0;
    case LWS_CALLBACK_RECEIVE: {
        if (s == NULL || s->set == NULL)
            return -1;
        if (s->closing)
            return 0;
        const uint8_t *msg;
        size_t msg_len;
        int rc = session_receive(s, in, len, &msg, &msg_len);
        if (rc > 0)
            dispatch_frame(b->topics, b->auth, s, msg, msg_len);
        return rc < 0 ? -1 : 0;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (s == NULL || s->set == NULL)
            return -1;
        return session_writeable(s);
    case LWS_CALLBACK_CLOSED:
        if (s == NULL || s->set == NULL)
            return 0; /* refused before it was established */
        log_debug("session-closed", "session=%llu", (unsigned long long)s->id);
        topics_session_closed(b->topics, s);
        session_closed(s);
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
    pthread_mutex_init(&b->ctx_lock, NULL);
    b->inbound = queue_new(INBOUND_QUEUE_LEN);
    b->sessions = sessions_new(cfg);
    b->acks = acks_new(b->sessions, fail, b);
    b->auth = auth_create(cfg, b->sessions, post, login, b, config_error);
    if (b->auth == NULL)
        goto fail;
    uint64_t id = random_id();
    link_hooks hooks = {.post = post, .wake = wake, .deliver = deliver, .fail = fail, .resync = resync,
                        .recover = recover, .ctx = b};
    b->edge = (edge){.cfg = cfg, .broker_id = id, .sessions = b->sessions, .acks = b->acks};
    b->topics = topics_create(&b->edge); /* before the links: a local node answers their HELLO at once */
    b->links = links_create(cfg, id, local, b->acks, &hooks);
    if (b->links == NULL)
        goto fail;
    b->edge.links = b->links;
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

/* lws's libuv plugin takes SIGINT and SIGTERM for its loop (libuv's signal
 * watchers), and stopping those watchers resets both to the default action.
 * The broker keeps the process's own handlers (they set the stop flag, which
 * tick() acts on, as with poll()): saved before the context is created, put
 * back right after, and again once the loop has stopped. */
static const int loop_signals[2] = {SIGINT, SIGTERM};

static void save_signals(broker *b)
{
    for (int i = 0; i < 2; i++)
        sigaction(loop_signals[i], NULL, &b->saved_signals[i]);
}

static void take_back_signals(broker *b)
{
    for (int i = 0; i < 2; i++)
        sigaction(loop_signals[i], &b->saved_signals[i], NULL);
}

/* A signal that reached libuv's watcher between its installation and
 * take_back_signals: lws calls this from the loop, by which time the process's
 * handler is back, so raising the signal again hands it to that handler. */
static void uv_signal(void *handle, int signum)
{
    raise(signum);
}

/* Creates b->ctx from info (no vhost yet) on libuv's loop, or on lws's poll()
 * loop when the libuv plugin (Debian: libwebsockets-evlib-uv) or libuv itself
 * cannot be loaded. Returns 0, or -1 (logged).
 *
 * Not libev (lws's libev plugin): it services lws timers from an idle watcher,
 * which libev runs only on a turn without I/O, so under steady input a 0 us
 * timer (links' batch flush) waited until the input stopped, and a reading
 * client was dropped as a slow consumer (e2e "slow consumers" under ASan). */
static int create_context(broker *b, struct lws_context_creation_info *info)
{
    uint64_t base = info->options;
    /* without UV_NO_SIGSEGV_SIGFPE_SPIN libuv would also take SIGSEGV, SIGFPE and SIGHUP */
    info->options = base | LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN;
    info->signal_cb = uv_signal;
    save_signals(b);
    b->ctx = lws_create_context(info);
    take_back_signals(b);
    info->signal_cb = NULL;
    info->options = base;
    if (b->ctx != NULL) {
        b->uv = true;
        return 0;
    }
    log_warn("event-loop-fallback", "loop=poll (the libuv plugin did not load: install "
             "libwebsockets-evlib-uv; with poll every connection costs on every wake-up)");
    b->ctx = lws_create_context(info);
    if (b->ctx == NULL) {
        log_error("lws-init-failed", "host=%s port=%lld", b->cfg->host, (long long)b->cfg->port);
        return -1;
    }
    return 0;
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
    log_info("nodes-linked", "nodes=%d broker=%016llx", b->cfg->node_count,
             (unsigned long long)b->edge.broker_id);

    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_bridge);
    raise_fd_limit();
    b->stop = stop;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = (int)b->cfg->port;
    info.iface = b->cfg->host;
    info.protocols = protocols;
    info.user = b;
    info.gid = -1;
    info.uid = -1;
    info.pt_serv_buf_size = 32768;
    info.pcontext = &b->ctx; /* lws sets b->ctx to NULL once it has freed the context */
    info.options = LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE |
                   LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    if (strchr(b->cfg->host, ':') == NULL)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    if (create_context(b, &info) != 0)
        return -1;
    /* the listener apart from the context: a port in use is not a missing event library */
    struct lws_vhost *vh = lws_create_vhost(b->ctx, &info);
    if (vh == NULL) {
        log_error("listen-failed", "host=%s port=%lld", b->cfg->host, (long long)b->cfg->port);
        return -1; /* broker_destroy frees the context */
    }
    pthread_mutex_lock(&b->ctx_lock);
    b->ctx_live = true;
    pthread_mutex_unlock(&b->ctx_lock);
    sessions_start(b->sessions, b->ctx);
    links_start(b->links, b->ctx);
    lws_sul_schedule(b->ctx, 0, &b->tick_timer, tick, 200 * 1000);
    log_info("broker-listening", "port=%d host=%s path=%s auth=%s loop=%s", lws_get_vhost_listen_port(vh),
             b->cfg->host, b->cfg->url_path, b->cfg->auth_type == AUTH_FILE ? "file" : "none",
             b->uv ? "libuv" : "poll");
    lws_sul_schedule(b->ctx, 0, &b->sweep_timer, sweep_heartbeats,
                     (lws_usec_t)b->cfg->heartbeat_interval_ms * 1000 / 2);
    drain_inbound(b);
    if (b->uv) {
        lws_service(b->ctx, 0); /* until stop_uv_loop has closed everything */
        take_back_signals(b);
        if (!*stop)
            log_warn("event-loop-ended", "loop=libuv reason=unexpected");
    } else {
        while (!*stop)
            if (lws_service(b->ctx, 0) < 0)
                break;
        log_stopping(b);
    }
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
        quiesce_loop(b);
        /* closes every session (CLOSED callbacks run) and frees the context; with
         * libuv, when stop_uv_loop has not run (the loop never ran), the first
         * call runs the loop until the closes complete and only the second frees */
        lws_context_destroy(b->ctx);
        if (b->ctx != NULL && b->uv)
            lws_context_destroy(b->ctx);
        b->ctx = NULL;
        if (b->uv)
            take_back_signals(b);
    }
    links_destroy(b->links); /* flushes the uninterest messages those closes queued */
    auth_destroy(b->auth);
    queue_free(b->inbound, free_inbound);
    topics_destroy(b->topics);
    acks_free(b->acks);
    sessions_free(b->sessions);
    pthread_mutex_destroy(&b->ctx_lock);
    xfree(b);
}
