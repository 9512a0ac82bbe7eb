/* frames.c - refcounted outbound frames and the deepstream frame encoder.
 * A frame is varint(length) || Message{topic, message}, the protobuf
 * length-delimited form the client's decodeDelimited expects, with LWS_PRE bytes
 * of headroom so lws_write can put the websocket header in front without a copy. */
#include <string.h>

#include "internal.h"
#include "mem.h"

frame *frame_new(size_t len)
{
    frame *f = xmalloc(sizeof(*f) + LWS_PRE + len);
    f->refs = 1;
    f->len = (uint32_t)len;
    f->topic_ix = TRAFFIC_TOPICS - 1;
    f->action_ix = TRAFFIC_ACTIONS - 1;
    return f;
}

void frame_unref(frame *f)
{
    if (f != NULL && --f->refs == 0)
        xfree(f);
}

static size_t varint_size(size_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static size_t put_varint(uint8_t *p, size_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

frame *frame_encode(int topic, const ProtobufCMessage *inner)
{
    size_t inner_len = protobuf_c_message_get_packed_size(inner);
    /* Message{topic=2 (varint), message=3 (bytes)} written by hand: it saves
     * packing the inner message twice. */
    size_t body = 1 + varint_size((size_t)topic) + 1 + varint_size(inner_len) + inner_len;
    frame *f = frame_new(varint_size(body) + body);
    uint8_t *p = frame_payload(f);
    p += put_varint(p, body);
    *p++ = (2 << 3) | 0; /* field 2, varint */
    p += put_varint(p, (size_t)topic);
    *p++ = (3 << 3) | 2; /* field 3, length-delimited */
    p += put_varint(p, inner_len);
    protobuf_c_message_pack(inner, p);
    f->topic_ix = traffic_topic(topic);
    f->action_ix = traffic_action(traffic_peek_action(p, inner_len));
    return f;
}

Message *frame_unpack(const uint8_t *data, size_t len)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len && i < 5; i++) {
        v |= (uint64_t)(data[i] & 0x7f) << (7 * i);
        if ((data[i] & 0x80) == 0)
            return v == len - i - 1 ? message__unpack(NULL, (size_t)v, data + i + 1) : NULL;
    }
    return NULL;
}
