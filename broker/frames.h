/* frames.h - the encoded client frame of broker/frames.c: immutable,
 * refcounted, with LWS_PRE bytes of headroom so lws can put the websocket
 * header in front without a copy. Apart from internal.h because eddy-bench,
 * the load generator, encodes its requests with it too. */
#ifndef EDDY_BROKER_FRAMES_H
#define EDDY_BROKER_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "deepstream.pb-c.h"

/* An immutable, refcounted encoded client frame with LWS_PRE bytes of headroom.
 * Encoded once, shared by every session it is queued to. */
typedef struct frame {
    uint32_t refs;
    uint32_t len;
    uint8_t topic_ix, action_ix; /* its topic and action as traffic.c's slots (the sent counters) */
    uint8_t bytes[]; /* LWS_PRE headroom, then len bytes of payload */
} frame;

frame *frame_new(size_t len);         /* refs = 1, owned by the caller; counted as topic and action "other" */
void frame_unref(frame *f);           /* NULL is fine */
static inline uint8_t *frame_payload(frame *f) { return f->bytes + LWS_PRE; }
/* Encodes one deepstream message (topic + inner message) as a delimited frame
 * (owned by the caller). */
frame *frame_encode(int topic, const ProtobufCMessage *inner);
/* Decodes one client frame (varint length, then exactly one Message); NULL
 * when it is not one. Owned by the caller (message__free_unpacked). */
Message *frame_unpack(const uint8_t *data, size_t len);

#endif
