/* session.c - one websocket client: lifecycle, inbound reassembly, the bounded
 * outbound queue and the unauthenticated-client timer; and the set of open
 * sessions: lookup by id, the heartbeat sweep and the end-of-turn flush that
 * writes what each session was given during a loop turn in one send.
 *
 * A session is never freed inside its own callback chain: closing marks it
 * and lets lws call back with CLOSED at a safe point. Not for what a session
 * subscribes to: the topic modules keep that. */
#include <string.h>

#include "dict.h"
#include "internal.h"
#include "log.h"
#include "mem.h"
#include "util.h"

#define COALESCE_BYTES 65536 /* websocket frames gathered into one send */
#define SENDS_PER_CALLBACK 4  /* so one busy session cannot starve the others */
#define SWEEP_MAX 256         /* sessions closed per heartbeat sweep */

struct sessions {
    const eddy_config *cfg;
    dict *by_id;                /* id -> session */
    struct lws_context *ctx;    /* while the loop runs */
    session *flush_head;        /* sessions with frames queued this loop turn */
    bool flush_scheduled;
    lws_sorted_usec_list_t flush_timer;
    lws_sorted_usec_list_t sweep_timer;
    uint8_t *send_buf;          /* gathering buffer for write_queued */
    traffic traffic;            /* client messages by topic and action */
};

sessions *sessions_new(const eddy_config *cfg)
{
    sessions *set = xcalloc(1, sizeof(*set));
    set->cfg = cfg;
    set->by_id = dict_new();
    set->send_buf = xmalloc(LWS_PRE + COALESCE_BYTES);
    return set;
}

void sessions_free(sessions *set)
{
    if (set == NULL)
        return;
    dict_free(set->by_id);
    xfree(set->send_buf);
    xfree(set);
}

static void flush_due(lws_sorted_usec_list_t *sul)
{
    sessions *set = lws_container_of(sul, sessions, flush_timer);
    set->flush_scheduled = false;
    sessions_flush(set);
}

static void sweep(lws_sorted_usec_list_t *sul);

static void schedule_sweep(sessions *set)
{
    lws_sul_schedule(set->ctx, 0, &set->sweep_timer, sweep, (lws_usec_t)set->cfg->heartbeat_interval_ms * 1000 / 2);
}

void sessions_start(sessions *set, struct lws_context *ctx)
{
    set->ctx = ctx;
    schedule_sweep(set);
}

void sessions_stop(sessions *set)
{
    lws_sul_cancel(&set->flush_timer);
    lws_sul_cancel(&set->sweep_timer);
    set->flush_scheduled = false;
    set->ctx = NULL;
}

size_t sessions_count(const sessions *set)
{
    return dict_size(set->by_id);
}

traffic *sessions_traffic(sessions *set)
{
    return &set->traffic;
}

session *sessions_get(const sessions *set, uint64_t id)
{
    return dict_get(set->by_id, &id, sizeof(id));
}

/* Puts s on the list sessions_flush writes at the end of this loop turn. */
static void flush_later(session *s)
{
    sessions *set = s->set;
    if (s->flush_due)
        return;
    s->flush_due = true;
    s->next_flush = set->flush_head;
    set->flush_head = s;
    if (!set->flush_scheduled && set->ctx != NULL) { /* a zero-delay timer: the start of the next turn */
        set->flush_scheduled = true;
        lws_sul_schedule(set->ctx, 0, &set->flush_timer, flush_due, 0);
    }
}

static void flush_forget(session *s)
{
    if (!s->flush_due)
        return;
    for (session **pp = &s->set->flush_head; *pp != NULL; pp = &(*pp)->next_flush)
        if (*pp == s) {
            *pp = s->next_flush;
            break;
        }
    s->flush_due = false;
}

struct sweep_ctx {
    int64_t now, limit;
    session *stale[SWEEP_MAX];
    int n;
};

static int find_stale(const void *k, size_t l, void *v, void *arg)
{
    struct sweep_ctx *c = arg;
    session *s = v;
    if (!s->closing && c->now - s->last_rx_ms > c->limit)
        c->stale[c->n++] = s;
    return c->n == SWEEP_MAX;
}

/* Closes connections silent for twice the heartbeat interval (clients PING
 * every interval, so a live client is never silent that long). */
static void sweep(lws_sorted_usec_list_t *sul)
{
    sessions *set = lws_container_of(sul, sessions, sweep_timer);
    struct sweep_ctx c = {.now = now_ms(), .limit = 2 * set->cfg->heartbeat_interval_ms};
    dict_foreach(set->by_id, find_stale, &c);
    for (int i = 0; i < c.n; i++)
        session_kill(c.stale[i], "heartbeat-timeout");
    schedule_sweep(set);
    if (c.n > 0)
        lws_cancel_service(set->ctx); /* a timer does not wake the loop by itself */
}

static void auth_timer_fired(lws_sorted_usec_list_t *sul)
{
    session *s = lws_container_of(sul, session, auth_timer);
    if (s->state == SESSION_OPEN || s->closing || s->auth_pending)
        return;
    log_info("auth-timeout", "session=%llu", (unsigned long long)s->id);
    ConnectionMessage m = CONNECTION_MESSAGE__INIT;
    m.has_action = 1;
    m.action = CONNECTION__ACTION__CONNECTION_AUTHENTICATION_TIMEOUT;
    session_send_msg(s, TOPIC__TOPIC_CONNECTION, &m.base);
    session_close_after_flush(s);
    lws_cancel_service(lws_get_context(s->wsi)); /* a timer does not wake the loop by itself */
}

static void schedule_auth_timer(session *s)
{
    lws_sul_schedule(lws_get_context(s->wsi), 0, &s->auth_timer, auth_timer_fired,
                     (lws_usec_t)s->set->cfg->unauthenticated_timeout_ms * 1000);
}

void session_open(sessions *set, session *s, struct lws *wsi)
{
    memset(s, 0, sizeof(*s));
    s->set = set;
    s->wsi = wsi;
    s->id = random_id();
    s->last_rx_ms = now_ms();
    dict_put(set->by_id, &s->id, sizeof(s->id), s);
    schedule_auth_timer(s);
}

void session_open_sink(sessions *set, session *s, const session_sink *sink, void *ctx)
{
    memset(s, 0, sizeof(*s));
    s->set = set;
    s->id = random_id();
    s->last_rx_ms = now_ms();
    s->state = SESSION_AWAITING_AUTH;
    s->sink = sink;
    s->sink_ctx = ctx;
    dict_put(set->by_id, &s->id, sizeof(s->id), s);
}

/* auth.unauthenticatedClientTimeout bounds how long a client takes to send
 * credentials, not how long checking them takes (a login storm queues checks
 * behind each other): the timer stops while they are checked, and a client
 * whose credentials were refused gets the full time again to send others. */
void session_auth_wait(session *s, bool waiting)
{
    if (s->wsi == NULL || s->state == SESSION_OPEN)
        return;
    if (waiting)
        lws_sul_cancel(&s->auth_timer);
    else if (!s->closing)
        schedule_auth_timer(s);
}

/* Drops every queued frame. */
static void drop_queued(session *s)
{
    while (s->out_len > 0) {
        frame_unref(s->out[s->out_head]);
        s->out_head = (s->out_head + 1) % s->out_cap;
        s->out_len--;
    }
    s->out_bytes = 0;
}

void session_closed(session *s)
{
    lws_sul_cancel(&s->auth_timer);
    flush_forget(s);
    dict_del(s->set->by_id, &s->id, sizeof(s->id));
    drop_queued(s);
    xfree(s->out);
    xfree(s->rx);
    xfree(s->user);
    xfree(s->server_data);
    xfree(s->conn_data);
    s->out = NULL;
    s->rx = NULL;
    s->user = NULL;
    s->server_data = NULL;
    s->conn_data = NULL;
    s->wsi = NULL;
}

void session_login(session *s, const char *user, const char *server_data)
{
    s->state = SESSION_OPEN;
    xfree(s->user);
    s->user = xstrdup(user);
    xfree(s->server_data);
    s->server_data = server_data ? xstrdup(server_data) : NULL;
    xfree(s->conn_data); /* only logins use it */
    s->conn_data = NULL;
    lws_sul_cancel(&s->auth_timer);
}

void session_send(session *s, frame *f)
{
    if (s->sink != NULL) {
        if (!s->closing)
            s->sink->frame(s, f);
        return;
    }
    if (s->wsi == NULL || s->closing)
        return;
    if (s->out_bytes + f->len > (size_t)s->set->cfg->max_outbound_bytes) {
        session_kill(s, "slow-consumer");
        return;
    }
    if (s->out_len == s->out_cap) { /* the ring doubles, bounded by maxOutboundBytes above */
        size_t cap = s->out_cap ? s->out_cap * 2 : 8;
        frame **ring = xmalloc(cap * sizeof(*ring));
        for (size_t i = 0; i < s->out_len; i++)
            ring[i] = s->out[(s->out_head + i) % s->out_cap];
        xfree(s->out);
        s->out = ring;
        s->out_head = 0;
        s->out_cap = cap;
    }
    f->refs++;
    s->out[(s->out_head + s->out_len) % s->out_cap] = f;
    s->out_len++;
    s->out_bytes += f->len;
    /* written at the end of this loop turn, with whatever else it gets meanwhile */
    if (s->out_len == 1)
        flush_later(s);
}

void session_send_msg(session *s, int topic, const ProtobufCMessage *inner)
{
    frame *f = frame_encode(topic, inner);
    session_send(s, f);
    frame_unref(f);
}

void session_close_after_flush(session *s)
{
    if (s->wsi == NULL)
        return;
    s->closing = true;
    lws_callback_on_writable(s->wsi);
}

void session_close_with(session *s, int code, const char *reason)
{
    if (s->wsi == NULL)
        return;
    s->close_code = code;
    s->close_reason = reason;
    session_close_after_flush(s);
}

void session_kill(session *s, const char *reason)
{
    if (s->wsi == NULL)
        return;
    log_warn("session-closed", "session=%llu reason=%s queued_bytes=%zu",
             (unsigned long long)s->id, reason, s->out_bytes);
    session_abort(s);
}

void session_abort(session *s)
{
    if (s->wsi == NULL)
        return;
    s->closing = true;
    drop_queued(s); /* nothing more will be written */
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* Appends the header of an unmasked, final, binary websocket frame of len
 * bytes (RFC 6455 5.2) at p; returns its size (2, 4 or 10). */
static size_t ws_header(uint8_t *p, size_t len)
{
    p[0] = 0x82;
    if (len < 126) {
        p[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        p[1] = 126;
        p[2] = (uint8_t)(len >> 8);
        p[3] = (uint8_t)len;
        return 4;
    }
    p[1] = 127;
    for (int i = 0; i < 8; i++)
        p[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

/* Pops the next queued frame (the caller owns the reference), counted as sent. */
static frame *pop_frame(session *s)
{
    frame *f = s->out[s->out_head];
    s->set->traffic.sent[f->topic_ix][f->action_ix]++;
    s->out_head = (s->out_head + 1) % s->out_cap;
    s->out_len--;
    s->out_bytes -= f->len;
    return f;
}

/* Writes queued frames while the socket takes them. Frames are framed here
 * and gathered, so a burst for one client costs one send rather than one per
 * message (the client still sees one deepstream message per websocket frame);
 * lws keeps whatever the kernel does not take (lws_partial_buffered) and
 * writes it first when the socket is writable again. A frame too large to
 * gather goes alone through lws. Returns -1 when the connection failed. */
static int write_queued(session *s)
{
    uint8_t *buf = s->set->send_buf + LWS_PRE;
    for (int sends = 0; sends < SENDS_PER_CALLBACK && s->out_len > 0; sends++) {
        if (lws_partial_buffered(s->wsi))
            break; /* lws holds what the kernel did not take: wait for writable */
        size_t used = 0;
        while (s->out_len > 0 && used + 10 + s->out[s->out_head]->len <= COALESCE_BYTES) {
            frame *f = pop_frame(s);
            used += ws_header(buf + used, f->len);
            memcpy(buf + used, frame_payload(f), f->len);
            used += f->len;
            frame_unref(f);
        }
        int n;
        if (used > 0) {
            n = lws_write(s->wsi, buf, used, LWS_WRITE_RAW);
        } else { /* the next frame alone exceeds the gathering buffer */
            frame *f = pop_frame(s);
            n = lws_write(s->wsi, frame_payload(f), f->len, LWS_WRITE_BINARY);
            frame_unref(f);
        }
        if (n < 0)
            return -1;
    }
    return 0;
}

/* The end of a session closed with a status (session_close_with), once its
 * queue is written: a close frame, and the connection stays until the client
 * answers with its own (lws then closes it) or for CLOSE_LINGER_S, its input
 * read and ignored meanwhile. Closing at once instead (returning -1: lws
 * sends its close frame and shuts the socket) resets a client that is still
 * sending, and its system drops what it has not read yet: the frames just
 * written, the close frame. close_code < 0: the frame is written. */
#define CLOSE_LINGER_S 2
static int close_frame(session *s)
{
    if (s->close_code < 0)
        return 0;
    uint8_t *buf = s->set->send_buf + LWS_PRE;
    size_t n = strlen(s->close_reason) < 123 ? strlen(s->close_reason) : 123;
    buf[0] = 0x88; /* final, close (RFC 6455 5.5.1), unmasked */
    buf[1] = (uint8_t)(2 + n);
    buf[2] = (uint8_t)(s->close_code >> 8);
    buf[3] = (uint8_t)s->close_code;
    memcpy(buf + 4, s->close_reason, n);
    s->close_code = -1;
    if (lws_write(s->wsi, buf, 4 + n, LWS_WRITE_RAW) < 0)
        return -1;
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_LINGER_S);
    return 0;
}

int session_writeable(session *s)
{
    if (s->out_len == 0) {
        if (s->closing && s->close_code != 0)
            return close_frame(s);
        return s->closing ? -1 : 0;
    }
    if (write_queued(s) != 0)
        return -1;
    if (s->out_len > 0 || s->closing)
        lws_callback_on_writable(s->wsi);
    return 0;
}

void sessions_flush(sessions *set)
{
    session *s;
    while ((s = set->flush_head) != NULL) {
        set->flush_head = s->next_flush;
        s->flush_due = false;
        if (s->wsi == NULL || s->out_len == 0)
            continue;
        /* a failed write closes the connection from its writable callback */
        if (s->closing || write_queued(s) != 0 || s->out_len > 0)
            lws_callback_on_writable(s->wsi);
    }
}

int session_receive(session *s, const void *in, size_t len, const uint8_t **msg, size_t *msg_len)
{
    struct lws *wsi = s->wsi;
    s->last_rx_ms = now_ms();
    if (lws_is_first_fragment(wsi)) {
        s->rx_len = 0;
        if (!lws_frame_is_binary(wsi)) {
            log_warn("text-frame", "session=%llu (binary protocol only; closing)",
                     (unsigned long long)s->id);
            lws_close_reason(wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE, (unsigned char *)"binary frames only", 18);
            return -1;
        }
    }
    size_t max = (size_t)s->set->cfg->max_message_size;
    if (s->rx_len + len > max) {
        log_warn("frame-too-large", "session=%llu bytes_over=%zu max=%zu", (unsigned long long)s->id,
                 s->rx_len + len, max);
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)"message too large", 17);
        return -1;
    }
    bool final = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
    if (final && s->rx_len == 0) { /* the common case: whole message in one piece, no copy */
        *msg = in;
        *msg_len = len;
        return 1;
    }
    if (s->rx_len + len > s->rx_cap) { /* bounded by maxMessageSize above */
        size_t cap = s->rx_cap ? s->rx_cap : 1024;
        while (cap < s->rx_len + len)
            cap *= 2;
        s->rx = xrealloc(s->rx, cap);
        s->rx_cap = cap;
    }
    memcpy(s->rx + s->rx_len, in, len);
    s->rx_len += len;
    if (!final)
        return 0;
    *msg = s->rx;
    *msg_len = s->rx_len;
    s->rx_len = 0; /* the next fragment starts over; rx stays valid until then */
    return 1;
}
