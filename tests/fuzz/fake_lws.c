/* fake_lws.c - see fake_lws.h. Every frame the broker writes is checked here:
 * the websocket framing session.c adds, the varint length, the envelope and
 * the topic's message must all decode (the deepstream client would otherwise
 * drop the connection). A frame that does not is a finding: abort(). */
#include "fake_lws.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deepstream.pb-c.h"

#define MAX_TIMERS 4096

static char context_memory;
static lws_sorted_usec_list_t *timers[MAX_TIMERS];
static int n_timers;
unsigned long fake_frames_written;
unsigned long long fake_bytes_written;

static void finding(const char *what, const uint8_t *p, size_t len)
{
    fprintf(stderr, "fake_lws: %s (%zu bytes):", what, len);
    for (size_t i = 0; i < len && i < 64; i++)
        fprintf(stderr, " %02x", p[i]);
    fprintf(stderr, "\n");
    abort();
}

struct lws_context *fake_context(void)
{
    return (struct lws_context *)&context_memory;
}

static int timer_index(const lws_sorted_usec_list_t *sul)
{
    for (int i = 0; i < n_timers; i++)
        if (timers[i] == sul)
            return i;
    return -1;
}

static void timer_remove(int i)
{
    timers[i] = timers[--n_timers];
}

void lws_sul_schedule(struct lws_context *ctx, int tsi, lws_sorted_usec_list_t *sul, sul_cb_t cb, lws_usec_t us)
{
    int i = timer_index(sul);
    if (us == LWS_SET_TIMER_USEC_CANCEL) {
        if (i >= 0)
            timer_remove(i);
        return;
    }
    if (ctx != fake_context()) {
        fprintf(stderr, "fake_lws: lws_sul_schedule on context %p, not the fake one\n", (void *)ctx);
        abort();
    }
    if (i < 0) {
        if (n_timers == MAX_TIMERS) {
            fprintf(stderr, "fake_lws: more than %d timers scheduled\n", MAX_TIMERS);
            abort();
        }
        i = n_timers++;
        timers[i] = sul;
    }
    sul->cb = cb;
    sul->us = us; /* the delay (the fake has no clock) */
}

void lws_sul_cancel(lws_sorted_usec_list_t *sul)
{
    int i = timer_index(sul);
    if (i >= 0)
        timer_remove(i);
}

bool fake_timers_due(void)
{
    for (int i = 0; i < n_timers; i++)
        if (timers[i]->us == 0)
            return true;
    return false;
}

int fake_fire_timers(bool all)
{
    int fired = 0;
    if (all) { /* each timer scheduled now fires once, even those that reschedule themselves */
        lws_sorted_usec_list_t *snap[MAX_TIMERS];
        int n = n_timers;
        memcpy(snap, timers, sizeof(snap[0]) * (size_t)n);
        for (int k = 0; k < n; k++) {
            int i = timer_index(snap[k]);
            if (i < 0) /* cancelled by an earlier one */
                continue;
            timer_remove(i);
            snap[k]->cb(snap[k]);
            fired++;
        }
    }
    for (;;) {
        int i = 0;
        while (i < n_timers && timers[i]->us != 0)
            i++;
        if (i == n_timers)
            return fired;
        lws_sorted_usec_list_t *sul = timers[i];
        timer_remove(i);
        sul->cb(sul);
        fired++;
    }
}

void lws_cancel_service(struct lws_context *ctx)
{
}

struct lws_context *lws_get_context(const struct lws *wsi)
{
    return fake_context();
}

int lws_callback_on_writable(struct lws *wsi)
{
    ((fake_wsi *)wsi)->writable = true;
    return 1;
}

void lws_set_timeout(struct lws *wsi, enum pending_timeout reason, int secs)
{
    /* a kill, or a user timeout (session.c's wait after a close frame): carried out at once */
    if (secs == LWS_TO_KILL_ASYNC || secs == LWS_TO_KILL_SYNC || (reason == PENDING_TIMEOUT_USER_OK && secs > 0))
        ((fake_wsi *)wsi)->kill = true;
}


void lws_close_reason(struct lws *wsi, enum lws_close_status status, unsigned char *buf, size_t len)
{
    ((fake_wsi *)wsi)->close_status = (int)status;
}

int lws_partial_buffered(struct lws *wsi)
{
    return 0; /* the fake socket takes everything */
}

int lws_is_first_fragment(struct lws *wsi)
{
    return ((fake_wsi *)wsi)->first;
}

int lws_is_final_fragment(struct lws *wsi)
{
    return ((fake_wsi *)wsi)->final;
}

int lws_frame_is_binary(struct lws *wsi)
{
    return ((fake_wsi *)wsi)->binary;
}

size_t lws_remaining_packet_payload(struct lws *wsi)
{
    return 0;
}

/* One deepstream frame as the broker sends it: varint(length) || Message. */
static void check_frame(const uint8_t *p, size_t len)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < len && i < 10; i++) {
        v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if ((p[i] & 0x80) == 0)
            break;
    }
    if (i >= len || v != len - i - 1)
        finding("server frame: varint length does not match the frame", p, len);
    Message *m = message__unpack(NULL, (size_t)v, p + i + 1);
    if (m == NULL)
        finding("server frame: envelope does not decode", p, len);
    if (!m->has_topic)
        finding("server frame: no topic", p, len);
    const ProtobufCMessageDescriptor *d = NULL;
    switch (m->topic) {
    case TOPIC__TOPIC_PARSER: d = &parser_message__descriptor; break;
    case TOPIC__TOPIC_CONNECTION: d = &connection_message__descriptor; break;
    case TOPIC__TOPIC_AUTH: d = &auth_message__descriptor; break;
    case TOPIC__TOPIC_EVENT: d = &event_message__descriptor; break;
    case TOPIC__TOPIC_RECORD: d = &record_message__descriptor; break;
    case TOPIC__TOPIC_RPC: d = &rpc_message__descriptor; break;
    case TOPIC__TOPIC_PRESENCE: d = &presence_message__descriptor; break;
    default: finding("server frame: a topic the client does not know", p, len);
    }
    ProtobufCMessage *inner = protobuf_c_message_unpack(d, NULL, m->has_message ? m->message.len : 0,
                                                        m->has_message ? m->message.data : (const uint8_t *)"");
    if (inner == NULL)
        finding("server frame: the topic's message does not decode", p, len);
    protobuf_c_message_free_unpacked(inner, NULL);
    message__free_unpacked(m, NULL);
    fake_frames_written++;
}

int lws_write(struct lws *wsi, unsigned char *buf, size_t len, enum lws_write_protocol wp)
{
    fake_bytes_written += len;
    if (wp == LWS_WRITE_BINARY) {
        check_frame(buf, len);
        return (int)len;
    }
    if (wp != LWS_WRITE_RAW)
        finding("lws_write with an unexpected protocol", buf, len);
    /* session.c's close frame: 0x88, the length, a status and a short reason */
    if (len >= 1 && buf[0] == 0x88) {
        if (len < 4 || len > 127 || buf[1] != len - 2)
            finding("raw write: a close frame that is not a status and a reason of at most 123 bytes", buf, len);
        ((fake_wsi *)wsi)->close_status = buf[2] << 8 | buf[3];
        return (int)len;
    }
    /* gathered websocket frames (session.c's ws_header): 0x82, then the length */
    size_t off = 0;
    while (off < len) {
        if (len - off < 2 || buf[off] != 0x82)
            finding("raw write: not a final binary websocket frame", buf + off, len - off);
        size_t n = buf[off + 1], h = 2;
        if (n == 126) {
            if (len - off < 4)
                finding("raw write: truncated 16-bit length", buf + off, len - off);
            n = (size_t)buf[off + 2] << 8 | buf[off + 3];
            h = 4;
        } else if (n == 127) {
            if (len - off < 10)
                finding("raw write: truncated 64-bit length", buf + off, len - off);
            n = 0;
            for (int k = 0; k < 8; k++)
                n = n << 8 | buf[off + 2 + k];
            h = 10;
        }
        if (n > len - off - h)
            finding("raw write: websocket frame longer than the write", buf + off, len - off);
        check_frame(buf + off + h, n);
        off += h + n;
    }
    return (int)len;
}
