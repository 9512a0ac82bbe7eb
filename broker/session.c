/* session.c - one websocket client: lifecycle, inbound reassembly, the bounded
 * outbound queue and the unauthenticated-client timer. Everything here runs on
 * the service thread. A session is never freed inside its own callback chain:
 * closing marks it and lets lws call back with CLOSED at a safe point. */
#include <string.h>

#include "broker.h"
#include "log.h"
#include "mem.h"
#include "util.h"

static void auth_timer_fired(lws_sorted_usec_list_t *sul)
{
    session *s = lws_container_of(sul, session, auth_timer);
    if (s->state == SESSION_OPEN || s->closing)
        return;
    log_info("auth-timeout", "session=%llu", (unsigned long long)s->id);
    ConnectionMessage m = CONNECTION_MESSAGE__INIT;
    m.has_action = 1;
    m.action = CONNECTION__ACTION__CONNECTION_AUTHENTICATION_TIMEOUT;
    session_send_msg(s, TOPIC__TOPIC_CONNECTION, &m.base);
    session_close_after_flush(s);
    lws_cancel_service(broker_lws(s->b)); /* a timer does not wake the loop by itself */
}

void session_open(broker *b, session *s, struct lws *wsi)
{
    memset(s, 0, sizeof(*s));
    s->b = b;
    s->wsi = wsi;
    s->id = random_id();
    s->last_rx_ms = now_ms();
    s->events = dict_new();
    s->records = dict_new();
    s->rpcs = dict_new();
    s->presence = dict_new();
    s->listens = dict_new();
    lws_sul_schedule(broker_lws(b), 0, &s->auth_timer, auth_timer_fired,
                     (lws_usec_t)broker_config(b)->unauthenticated_timeout_ms * 1000);
}

void session_closed(session *s)
{
    lws_sul_cancel(&s->auth_timer);
    broker_flush_forget(s->b, s);
    events_session_closed(s);
    records_session_closed(s);
    rpc_session_closed(s);
    presence_session_closed(s);
    listen_session_closed(s);
    dict_free(s->listens);
    s->listens = NULL;
    dict_free(s->events);
    dict_free(s->presence);
    s->presence = NULL;
    dict_free(s->records);
    dict_free(s->rpcs);
    s->rpcs = NULL;
    s->events = NULL;
    s->records = NULL;
    while (s->out_len > 0) {
        frame_unref(s->out[s->out_head]);
        s->out_head = (s->out_head + 1) % s->out_cap;
        s->out_len--;
    }
    xfree(s->out);
    xfree(s->rx);
    xfree(s->user);
    xfree(s->server_data);
    s->server_data = NULL;
    s->out = NULL;
    s->rx = NULL;
    s->user = NULL;
}

void session_send(session *s, frame *f)
{
    if (s->wsi == NULL || s->closing)
        return;
    const eddy_config *cfg = broker_config(s->b);
    if (s->out_bytes + f->len > (size_t)cfg->max_outbound_bytes) {
        session_kill(s, "slow-consumer");
        return;
    }
    if (s->out_len == s->out_cap) {
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
        broker_flush_later(s->b, s);
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

void session_kill(session *s, const char *reason)
{
    if (s->wsi == NULL)
        return;
    log_warn("session-closed", "session=%llu reason=%s queued_bytes=%zu",
             (unsigned long long)s->id, reason, s->out_bytes);
    s->closing = true;
    s->out_bytes = 0;
    while (s->out_len > 0) { /* nothing more will be written */
        frame_unref(s->out[s->out_head]);
        s->out_head = (s->out_head + 1) % s->out_cap;
        s->out_len--;
    }
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

#define COALESCE_BYTES 65536 /* websocket frames gathered into one send */
#define SENDS_PER_CALLBACK 4  /* so one busy session cannot starve the others */

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

/* Pops the next queued frame (the caller owns the reference). */
static frame *pop_frame(session *s)
{
    frame *f = s->out[s->out_head];
    s->out_head = (s->out_head + 1) % s->out_cap;
    s->out_len--;
    s->out_bytes -= f->len;
    return f;
}

/* Writes queued frames while the socket takes them. Frames are framed here
 * and gathered, so a burst for one client costs one send rather than one per
 * message (the client still sees one deepstream message per websocket frame);
 * lws keeps whatever the kernel does not take (lws_partial_buffered) and
 * writes it first when the socket is writable again. A frame too large to gather goes alone through lws.
 * Returns -1 when the connection failed. */
static int write_queued(session *s)
{
    uint8_t *buf = broker_send_buffer(s->b, LWS_PRE + COALESCE_BYTES) + LWS_PRE;
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

int session_writeable(session *s)
{
    if (s->out_len == 0)
        return s->closing ? -1 : 0;
    if (write_queued(s) != 0)
        return -1;
    if (s->out_len > 0 || s->closing)
        lws_callback_on_writable(s->wsi);
    return 0;
}

void session_flush_all(broker *b)
{
    session *s;
    while ((s = broker_flush_take(b)) != NULL) {
        if (s->wsi == NULL || s->out_len == 0)
            continue;
        /* a failed write closes the connection from its writable callback */
        if (s->closing || write_queued(s) != 0 || s->out_len > 0)
            lws_callback_on_writable(s->wsi);
    }
}

int session_receive(session *s, const void *in, size_t len)
{
    struct lws *wsi = s->wsi;
    const eddy_config *cfg = broker_config(s->b);
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
    if (s->rx_len + len > (size_t)cfg->max_message_size) {
        log_warn("frame-too-large", "session=%llu bytes_over=%zu max=%lld",
                 (unsigned long long)s->id, s->rx_len + len, (long long)cfg->max_message_size);
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)"message too large", 17);
        return -1;
    }
    bool final = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
    if (final && s->rx_len == 0) { /* the common case: whole message in one piece, no copy */
        dispatch_frame(s, in, len);
        return 0;
    }
    if (s->rx_len + len > s->rx_cap) {
        size_t cap = s->rx_cap ? s->rx_cap : 1024;
        while (cap < s->rx_len + len)
            cap *= 2;
        s->rx = xrealloc(s->rx, cap);
        s->rx_cap = cap;
    }
    memcpy(s->rx + s->rx_len, in, len);
    s->rx_len += len;
    if (final) {
        dispatch_frame(s, s->rx, s->rx_len);
        s->rx_len = 0;
    }
    return 0;
}
