/* loop.c - the broker's event loop: the libwebsockets context with its one
 * listener (the websocket endpoint at urlPath and plain HTTP on the same
 * port), its timers, the wake-up other threads use, and a stop that cannot
 * hang. What happens on a connection is the broker's (loop_hooks): this file
 * knows no session's contents and no topic.
 *
 * The loop is libuv's (epoll: a wake-up costs the same with 10 or 10,000 idle
 * connections) through lws's libuv plugin, or lws's own poll() loop when that
 * plugin cannot be loaded. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "internal.h"
#include "log.h"
#include "mem.h"

struct loop {
    const eddy_config *cfg;
    loop_hooks hooks;
    struct lws_context *ctx;
    lws_sorted_usec_list_t tick_timer;
    volatile sig_atomic_t *stop;
    pthread_mutex_t ctx_lock; /* guards ctx_live against other threads' wake-ups */
    bool ctx_live;
    bool uv; /* ctx runs on libuv's loop: lws_service returns only once it has stopped */
    struct sigaction saved_signals[2]; /* the process's SIGINT, SIGTERM handlers (see take_back_signals) */
};

loop *loop_new(const eddy_config *cfg, const loop_hooks *hooks)
{
    loop *l = xcalloc(1, sizeof(*l));
    l->cfg = cfg;
    l->hooks = *hooks;
    pthread_mutex_init(&l->ctx_lock, NULL);
    return l;
}

void loop_wake(loop *l)
{
    pthread_mutex_lock(&l->ctx_lock);
    if (l->ctx_live)
        lws_cancel_service(l->ctx);
    pthread_mutex_unlock(&l->ctx_lock);
}

/* Before the lws context goes: other threads stop waking it and every timer
 * in its lists is cancelled (a timer left there would outlive the lists). */
static void quiesce(loop *l)
{
    pthread_mutex_lock(&l->ctx_lock);
    l->ctx_live = false;
    pthread_mutex_unlock(&l->ctx_lock);
    lws_sul_cancel(&l->tick_timer);
    l->hooks.stopping(l->hooks.ctx);
}

/* libuv: lws_service runs the loop until the loop stops, and nothing outside
 * the plugin can stop it (lws_uv_getloop lives in the plugin, which exports
 * nothing else). So the loop starts the context's destruction from inside,
 * lws's way with an internal loop: lws_context_destroy here (deferred by lws
 * to the next wake-up, as this runs inside a timer) closes every connection,
 * CLOSED callbacks included; once the last libuv handle has closed lws stops
 * the loop, lws_service returns, and the second lws_context_destroy, in
 * loop_free outside the loop, frees the context. */
static void stop_uv_loop(loop *l)
{
    l->hooks.stopped(l->hooks.ctx);
    quiesce(l);
    lws_context_destroy(l->ctx);
}

/* Lets the loop notice a stop request within 200 ms, and runs the tick hook
 * (a reload request is noticed there). Signal handlers only set
 * the flag. poll(): lws_service returns after every timer callback and
 * loop_run sees the flag; libuv: this callback stops the loop. */
static void tick(lws_sorted_usec_list_t *sul)
{
    loop *l = lws_container_of(sul, loop, tick_timer);
    if (!*l->stop && l->hooks.tick != NULL)
        l->hooks.tick(l->hooks.ctx);
    if (!*l->stop)
        lws_sul_schedule(l->ctx, 0, &l->tick_timer, tick, 200 * 1000);
    else if (l->uv)
        stop_uv_loop(l);
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
    loop *l = lws_context_user(lws_get_context(wsi));
    const loop_hooks *h = &l->hooks;
    session *s = user;
    bool established = s != NULL && s->set != NULL;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    case LWS_CALLBACK_HTTP_WRITEABLE:
    case LWS_CALLBACK_CLOSED_HTTP:
        return h->http(h->ctx, wsi, (int)reason, in, len);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        if (!path_matches(wsi, l->cfg->url_path)) {
            log_debug("upgrade-refused", "reason=path");
            return 1;
        }
        return h->admit != NULL && h->admit(h->ctx, lws_get_socket_fd(wsi)) != 0;
    case LWS_CALLBACK_ESTABLISHED:
        h->opened(h->ctx, s, wsi);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return established ? h->received(h->ctx, s, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return established ? session_writeable(s) : -1;
    case LWS_CALLBACK_CLOSED:
        if (established) /* else refused before it was established */
            h->closed(h->ctx, s);
        return 0;
    case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION:
        /* lws leaves the verdict to us: OpenSSL's (len: preverify_ok), a certificate tls.ca signed */
        if (len == 0)
            log_info("tls-client-refused", "reason=\"certificate not signed by tls.ca, or expired\"");
        return len ? 0 : 1;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        h->woken(h->ctx);
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols protocols[] = {
    /* First: the default protocol, also given plain HTTP requests. lws keeps a
     * receive buffer of this size per connection for life: small, so an idle
     * connection costs little (3 KiB in all, against 6 with 64 KiB); a larger
     * message arrives in pieces that session_receive reassembles. */
    {"deepstream", callback, sizeof(session), 1024, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

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

/* lws's libuv plugin takes SIGINT and SIGTERM for its loop (libuv's signal
 * watchers), and stopping those watchers resets both to the default action.
 * The broker keeps the process's own handlers (they set the stop flag, which
 * tick() acts on, as with poll()): saved before the context is created, put
 * back right after, and again once the loop has stopped. */
static const int loop_signals[2] = {SIGINT, SIGTERM};

static void save_signals(loop *l)
{
    for (int i = 0; i < 2; i++)
        sigaction(loop_signals[i], NULL, &l->saved_signals[i]);
}

static void take_back_signals(loop *l)
{
    for (int i = 0; i < 2; i++)
        sigaction(loop_signals[i], &l->saved_signals[i], NULL);
}

/* A signal that reached libuv's watcher between its installation and
 * take_back_signals: lws calls this from the loop, by which time the process's
 * handler is back, so raising the signal again hands it to that handler. */
static void uv_signal(void *handle, int signum)
{
    raise(signum);
}

/* Creates l->ctx from info (no vhost yet) on libuv's loop, or on lws's poll()
 * loop when the libuv plugin (Debian: libwebsockets-evlib-uv) or libuv itself
 * cannot be loaded. Returns 0, or -1 (logged).
 *
 * Not libev (lws's libev plugin): it services lws timers from an idle watcher,
 * which libev runs only on a turn without I/O, so under steady input a 0 us
 * timer (links' batch flush) waited until the input stopped, and a reading
 * client was dropped as a slow consumer (e2e "slow consumers" under ASan). */
static int create_context(loop *l, struct lws_context_creation_info *info)
{
    uint64_t base = info->options;
    /* without UV_NO_SIGSEGV_SIGFPE_SPIN libuv would also take SIGSEGV, SIGFPE and SIGHUP */
    info->options = base | LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN;
    info->signal_cb = uv_signal;
    save_signals(l);
    l->ctx = lws_create_context(info);
    take_back_signals(l);
    info->signal_cb = NULL;
    info->options = base;
    if (l->ctx != NULL) {
        l->uv = true;
        return 0;
    }
    log_warn("event-loop-fallback", "loop=poll (the libuv plugin did not load: install "
             "libwebsockets-evlib-uv; with poll every connection costs on every wake-up)");
    l->ctx = lws_create_context(info);
    if (l->ctx == NULL) {
        log_error("lws-init-failed", "host=%s port=%lld", l->cfg->host, (long long)l->cfg->port);
        return -1;
    }
    return 0;
}

int loop_run(loop *l, volatile sig_atomic_t *stop)
{
    const eddy_config *cfg = l->cfg;
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_bridge);
    raise_fd_limit();
    l->stop = stop;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = (int)cfg->port;
    info.iface = cfg->host;
    info.protocols = protocols;
    info.user = l;
    info.gid = -1;
    info.uid = -1;
    info.pt_serv_buf_size = 32768;
    info.pcontext = &l->ctx; /* lws sets l->ctx to NULL once it has freed the context */
    info.options = LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    if (strchr(cfg->host, ':') == NULL)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    if (tls_enabled(cfg)) { /* wss:// and https:// (tls.c checked the files) */
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cfg->tls_cert;
        info.ssl_private_key_filepath = cfg->tls_key;
        info.alpn = "http/1.1"; /* not h2: http.c answers in HTTP/1.1's way (and no client speaks websockets over h2) */
        if (cfg->tls_ca[0] != '\0') {
            info.ssl_ca_filepath = cfg->tls_ca;
            info.options |= LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT;
        }
    }
    if (create_context(l, &info) != 0)
        return -1;
    /* the listener apart from the context: a port in use is not a missing event library */
    struct lws_vhost *vh = lws_create_vhost(l->ctx, &info);
    if (vh == NULL) {
        log_error("listen-failed", "host=%s port=%lld", cfg->host, (long long)cfg->port);
        return -1; /* loop_free frees the context */
    }
    pthread_mutex_lock(&l->ctx_lock);
    l->ctx_live = true;
    pthread_mutex_unlock(&l->ctx_lock);
    l->hooks.started(l->hooks.ctx, l->ctx);
    lws_sul_schedule(l->ctx, 0, &l->tick_timer, tick, 200 * 1000);
    char auth_list[64] = "";
    for (int i = 0; i < cfg->auth_count; i++)
        snprintf(auth_list + strlen(auth_list), sizeof(auth_list) - strlen(auth_list), "%s%s", i ? "," : "",
                 config_auth_type_name(cfg->auth[i].type));
    log_info("broker-listening", "port=%d host=%s path=%s auth=%s loop=%s tls=%s", lws_get_vhost_listen_port(vh),
             cfg->host, cfg->url_path, auth_list, l->uv ? "libuv" : "poll",
             !tls_enabled(cfg) ? "off" : cfg->tls_ca[0] ? "on,client-certificates" : "on");
    l->hooks.woken(l->hooks.ctx); /* what arrived before the loop ran */
    if (l->uv) {
        lws_service(l->ctx, 0); /* until stop_uv_loop has closed everything */
        take_back_signals(l);
        if (!*stop)
            log_warn("event-loop-ended", "loop=libuv reason=unexpected");
    } else {
        while (!*stop)
            if (lws_service(l->ctx, 0) < 0)
                break;
        l->hooks.stopped(l->hooks.ctx);
    }
    return 0;
}

void loop_close(loop *l)
{
    if (l != NULL && l->ctx != NULL) {
        quiesce(l);
        /* closes every session (CLOSED callbacks run) and frees the context; with
         * libuv, when stop_uv_loop has not run (the loop never ran), the first
         * call runs the loop until the closes complete and only the second frees */
        lws_context_destroy(l->ctx);
        if (l->ctx != NULL && l->uv)
            lws_context_destroy(l->ctx);
        l->ctx = NULL;
        if (l->uv)
            take_back_signals(l);
    }
}

void loop_free(loop *l)
{
    if (l == NULL)
        return;
    loop_close(l);
    pthread_mutex_destroy(&l->ctx_lock);
    xfree(l);
}
