/* dispatch.c - decodes one client frame and routes it by connection state:
 * the CHALLENGE/ACCEPT handshake and PING/PONG (CONNECTION), AUTH until the
 * login succeeds, then the topic table. Undecodable input gets the protocol's
 * PARSER answer and one log line; the connection carries on. Every frame
 * that decodes is counted by topic and action (traffic.c). */
#include <string.h>

#include "internal.h"
#include "log.h"

static void reply_connection(session *s, int action)
{
    reply_send(s, TOPIC__TOPIC_CONNECTION, &(client_reply){.action = action});
}

static void reply_auth(session *s, int action)
{
    reply_send(s, TOPIC__TOPIC_AUTH, &(client_reply){.action = action});
}

/* Reads the varint length prefix; returns the payload offset or -1. */
static int delimited(const uint8_t *data, size_t len, size_t *payload_len)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len && i < 5; i++) {
        v |= (uint64_t)(data[i] & 0x7f) << (7 * i);
        if ((data[i] & 0x80) == 0) {
            if (v != len - i - 1)
                return -1; /* exactly one message per frame */
            *payload_len = (size_t)v;
            return (int)(i + 1);
        }
    }
    return -1;
}

static void parse_error(session *s, const char *what, size_t len)
{
    log_warn("bad-frame", "session=%llu problem=%s bytes=%zu", (unsigned long long)s->id, what, len);
    reply_parser_error(s, PARSER__ACTION__PARSER_MESSAGE_PARSE_ERROR, 0, 0);
}

static void handle_connection(session *s, const ProtobufCBinaryData *inner)
{
    ConnectionMessage *m = connection_message__unpack(NULL, inner->len, inner->data);
    if (m == NULL) {
        parse_error(s, "connection-message", inner->len);
        return;
    }
    int action = m->has_action ? m->action : 0;
    if (action == CONNECTION__ACTION__CONNECTION_PING)
        reply_connection(s, CONNECTION__ACTION__CONNECTION_PONG);
    else if (action == CONNECTION__ACTION__CONNECTION_CHALLENGE && s->state == SESSION_AWAITING_CHALLENGE) {
        s->state = SESSION_AWAITING_AUTH;
        reply_connection(s, CONNECTION__ACTION__CONNECTION_ACCEPT);
    } else if (action == CONNECTION__ACTION__CONNECTION_PONG)
        ; /* harmless */
    else if (s->state == SESSION_OPEN)
        reply_parser_error(s, PARSER__ACTION__PARSER_UNKNOWN_ACTION, TOPIC__TOPIC_CONNECTION, action);
    else
        reply_connection(s, CONNECTION__ACTION__CONNECTION_INVALID_MESSAGE);
    connection_message__free_unpacked(m, NULL);
}

static void handle_auth(auth *a, session *s, const ProtobufCBinaryData *inner)
{
    AuthMessage *m = auth_message__unpack(NULL, inner->len, inner->data);
    if (m == NULL) {
        parse_error(s, "auth-message", inner->len);
        return;
    }
    if (m->has_action && m->action == AUTH__ACTION__AUTH_REQUEST)
        auth_request(a, s, m->data);
    else
        reply_auth(s, AUTH__ACTION__AUTH_INVALID_MESSAGE);
    auth_message__free_unpacked(m, NULL);
}

void dispatch_frame(topics *t, auth *a, session *s, const uint8_t *data, size_t len)
{
    size_t payload_len;
    int off = delimited(data, len, &payload_len);
    Message *msg = off < 0 ? NULL : message__unpack(NULL, payload_len, data + off);
    if (msg == NULL) {
        parse_error(s, "envelope", len);
        return;
    }
    int topic = msg->has_topic ? msg->topic : 0;
    ProtobufCBinaryData empty = {0, NULL};
    const ProtobufCBinaryData *inner = msg->has_message ? &msg->message : &empty;
    traffic *counts = sessions_traffic(s->set);
    counts->received[traffic_topic(topic)][traffic_action(traffic_peek_action(inner->data, inner->len))]++;

    if (topic == TOPIC__TOPIC_CONNECTION)
        handle_connection(s, inner);
    else if (s->state == SESSION_AWAITING_CHALLENGE)
        reply_connection(s, CONNECTION__ACTION__CONNECTION_INVALID_MESSAGE);
    else if (s->state == SESSION_AWAITING_AUTH) {
        if (topic == TOPIC__TOPIC_AUTH)
            handle_auth(a, s, inner);
        else
            reply_auth(s, AUTH__ACTION__AUTH_INVALID_MESSAGE); /* e.g. a LISTEN sent before login */
    } else if (!topics_handle(t, s, topic, inner->data, inner->len)) {
        /* AUTH after login, and topics no client uses (MONITORING, CLUSTER, ...) */
        log_debug("unknown-topic", "session=%llu topic=%d", (unsigned long long)s->id, topic);
        reply_parser_error(s, PARSER__ACTION__PARSER_UNKNOWN_TOPIC, topic, 0);
    }
    message__free_unpacked(msg, NULL);
}
