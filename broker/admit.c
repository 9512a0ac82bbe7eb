/* admit.c - which connections the broker lets in, so that no client can take
 * every file descriptor and lock honest ones out:
 *
 * - per peer address (limits.maxConnectionsPerIp): the address is the
 *   socket's peer, checked at the websocket handshake (refused before it is
 *   answered; plain HTTP such as /metrics never is) and counted from then
 *   until the close. Behind a load balancer every client has the balancer's
 *   address: there the limit belongs to the balancer, and 0 (the default)
 *   turns it off;
 * - connections not logged in yet (limits.maxUnauthenticatedConnections, at
 *   most half the open-file limit): they wait in a list, oldest first, from
 *   the handshake to their login. When a new one would pass the bound the
 *   oldest is closed to make room, passing over those whose login is being
 *   checked: an idle flood only ever holds the bound, and an honest client,
 *   which logs in within milliseconds of connecting, is not the oldest. (To
 *   refuse the newcomer instead would lock every honest client out for as
 *   long as the flood's connections may wait, auth.unauthenticatedClientTimeout.)
 *
 * Refusals and closes are counted for /metrics and logged, a line a second
 * at most; the connections established and closed are counted too. Not for
 * what a connection may do once in (limits.c). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "dict.h"
#include "internal.h"
#include "log.h"
#include "mem.h"
#include "util.h"

#define EVICT_SCAN 64 /* connections looked at for one to close, beyond those whose login is being checked */
#define LOG_PERIOD_MS 1000 /* one line a second at most per kind */

struct admit {
    const eddy_config *cfg;
    size_t max_pre;    /* the bound in force on connections not logged in; 0: none */
    dict *per_ip;      /* address bytes -> its connections (a count stored as the pointer) */
    session *pre_head, *pre_tail; /* not logged in, oldest first */
    size_t pre_count;
    uint64_t ip_refused, pre_evicted, pre_refused;
    uint64_t opened, closed; /* websocket connections established, and closed since */
    log_every ip_log, pre_log;
};

admit *admit_new(const eddy_config *cfg)
{
    admit *a = xcalloc(1, sizeof(*a));
    a->cfg = cfg;
    a->per_ip = dict_new();
    a->max_pre = (size_t)cfg->max_unauthenticated;
    return a;
}

void admit_free(admit *a)
{
    if (a == NULL)
        return;
    dict_free(a->per_ip);
    xfree(a);
}

void admit_start(admit *a)
{
    const eddy_config *cfg = a->cfg;
    struct rlimit rl;
    const char *capped = "";
    a->max_pre = (size_t)cfg->max_unauthenticated;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && a->max_pre > rl.rlim_cur / 2) {
        a->max_pre = rl.rlim_cur / 2 > 0 ? (size_t)(rl.rlim_cur / 2) : 1;
        capped = " (half the open-file limit)";
    }
    log_info("limits", "message_rate=%lld message_burst=%lld max_refused_messages=%lld max_connections_per_ip=%lld "
             "max_unauthenticated=%zu%s max_subscriptions=%lld (0: unlimited)", (long long)cfg->message_rate,
             (long long)cfg->message_burst, (long long)cfg->max_refused, (long long)cfg->max_per_ip, a->max_pre,
             capped, (long long)cfg->max_subscriptions);
}

/* The peer address of socket fd as key bytes (4 for IPv4, IPv4-mapped IPv6
 * included; 16 for IPv6); false when it has none. */
static bool peer_key(int fd, uint8_t key[16], uint8_t *len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return false;
    if (ss.ss_family == AF_INET) {
        memcpy(key, &((const struct sockaddr_in *)&ss)->sin_addr, 4);
        *len = 4;
        return true;
    }
    if (ss.ss_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
        bool mapped = IN6_IS_ADDR_V4MAPPED(in6);
        memcpy(key, in6->s6_addr + (mapped ? 12 : 0), mapped ? 4 : 16);
        *len = mapped ? 4 : 16;
        return true;
    }
    return false;
}

static const char *key_text(const uint8_t *key, uint8_t len, char *buf, size_t n)
{
    if (inet_ntop(len == 4 ? AF_INET : AF_INET6, key, buf, (socklen_t)n) == NULL)
        snprintf(buf, n, "?");
    return buf;
}

static size_t ip_count(const admit *a, const uint8_t *key, uint8_t len)
{
    return (size_t)(uintptr_t)dict_get(a->per_ip, key, len);
}

static void refuse_ip(admit *a, const uint8_t *key, uint8_t len, size_t held)
{
    a->ip_refused++;
    uint64_t skipped;
    char ip[INET6_ADDRSTRLEN];
    if (log_every_due(&a->ip_log, now_ms(), LOG_PERIOD_MS, &skipped))
        log_warn("connection-refused", "reason=per-ip ip=%s connections=%zu max=%lld refused_total=%llu "
                 "(limits.maxConnectionsPerIp)", key_text(key, len, ip, sizeof(ip)), held,
                 (long long)a->cfg->max_per_ip, (unsigned long long)a->ip_refused);
}

bool admit_peer(admit *a, int fd)
{
    uint8_t key[16], len;
    if (a->cfg->max_per_ip == 0 || !peer_key(fd, key, &len))
        return true;
    size_t held = ip_count(a, key, len);
    if (held < (size_t)a->cfg->max_per_ip)
        return true;
    refuse_ip(a, key, len, held);
    return false;
}

/* ---- the list of connections not logged in, oldest first ---- */

static void pre_push(admit *a, session *s)
{
    s->pre_prev = a->pre_tail;
    s->pre_next = NULL;
    if (a->pre_tail != NULL)
        a->pre_tail->pre_next = s;
    else
        a->pre_head = s;
    a->pre_tail = s;
    s->pre_listed = true;
    a->pre_count++;
}

static void pre_remove(admit *a, session *s)
{
    if (!s->pre_listed)
        return;
    if (s->pre_prev != NULL)
        s->pre_prev->pre_next = s->pre_next;
    else
        a->pre_head = s->pre_next;
    if (s->pre_next != NULL)
        s->pre_next->pre_prev = s->pre_prev;
    else
        a->pre_tail = s->pre_prev;
    s->pre_prev = s->pre_next = NULL;
    s->pre_listed = false;
    a->pre_count--;
}

/* newcomer s made the list one too long: closes the oldest connection that
 * is not having its login checked, or s when there is none. At most
 * auth.maxPendingLogins logins are checked at once, so the walk passes over
 * at most that many (and those closing, which it drops from the list). */
static void make_room(admit *a, session *s)
{
    session *v = a->pre_head;
    session *victim = NULL;
    int64_t scan = a->cfg->auth_max_pending + EVICT_SCAN;
    for (int64_t scanned = 0; v != NULL && scanned < scan && a->pre_count > a->max_pre; scanned++) {
        session *next = v->pre_next;
        if (v->closing) /* on its way out already: it no longer counts */
            pre_remove(a, v);
        else if (v != s && !v->auth_pending) {
            victim = v;
            break;
        }
        v = next;
    }
    if (a->pre_count <= a->max_pre)
        return;
    if (victim != NULL)
        a->pre_evicted++;
    else {
        victim = s;
        a->pre_refused++;
    }
    pre_remove(a, victim);
    session_abort(victim);
    uint64_t skipped;
    if (log_every_due(&a->pre_log, now_ms(), LOG_PERIOD_MS, &skipped))
        log_warn("unauthenticated-full", "closed=%s session=%llu unauthenticated=%zu max=%zu evicted_total=%llu "
                 "refused_total=%llu (limits.maxUnauthenticatedConnections: the oldest not logged in makes way)",
                 victim == s ? "newest" : "oldest", (unsigned long long)victim->id, a->pre_count, a->max_pre,
                 (unsigned long long)a->pre_evicted, (unsigned long long)a->pre_refused);
}

void admit_opened(admit *a, session *s)
{
    a->opened++;
    if (a->cfg->max_per_ip > 0 && peer_key(lws_get_socket_fd(s->wsi), s->peer, &s->peer_len)) {
        size_t held = ip_count(a, s->peer, s->peer_len);
        if (held >= (size_t)a->cfg->max_per_ip) { /* (admit_peer let it in: another one got there first) */
            refuse_ip(a, s->peer, s->peer_len, held);
            s->peer_len = 0; /* not counted */
            session_abort(s);
            return;
        }
        dict_put(a->per_ip, s->peer, s->peer_len, (void *)(uintptr_t)(held + 1));
    }
    pre_push(a, s);
    if (a->max_pre > 0 && a->pre_count > a->max_pre)
        make_room(a, s);
}

void admit_logged_in(admit *a, session *s)
{
    pre_remove(a, s);
}

void admit_closed(admit *a, session *s)
{
    a->closed++;
    pre_remove(a, s);
    if (s->peer_len == 0)
        return;
    size_t held = ip_count(a, s->peer, s->peer_len);
    if (held > 1)
        dict_put(a->per_ip, s->peer, s->peer_len, (void *)(uintptr_t)(held - 1));
    else
        dict_del(a->per_ip, s->peer, s->peer_len);
    s->peer_len = 0;
}

void admit_metrics(const admit *a, FILE *f)
{
    fprintf(f, "# HELP eddy_connections websocket connections open\n# TYPE eddy_connections gauge\n"
            "eddy_connections %llu\n", (unsigned long long)(a->opened - a->closed));
    fprintf(f, "# HELP eddy_connections_opened_total websocket connections established (handshake answered)\n"
            "# TYPE eddy_connections_opened_total counter\neddy_connections_opened_total %llu\n",
            (unsigned long long)a->opened);
    fprintf(f, "# HELP eddy_connections_closed_total websocket connections closed, for any reason\n"
            "# TYPE eddy_connections_closed_total counter\neddy_connections_closed_total %llu\n",
            (unsigned long long)a->closed);
    fprintf(f, "# TYPE eddy_unauthenticated_connections gauge\neddy_unauthenticated_connections %zu\n",
            a->pre_count);
    fprintf(f, "# TYPE eddy_unauthenticated_evicted_total counter\neddy_unauthenticated_evicted_total %llu\n",
            (unsigned long long)a->pre_evicted);
    fprintf(f, "# TYPE eddy_connections_refused_total counter\n"
            "eddy_connections_refused_total{reason=\"per_ip\"} %llu\n"
            "eddy_connections_refused_total{reason=\"unauthenticated\"} %llu\n",
            (unsigned long long)a->ip_refused, (unsigned long long)a->pre_refused);
}
