/* dispatch.c - decodes one client frame and routes it by connection state and
 * topic: the CHALLENGE/ACCEPT handshake, PING/PONG, AUTH, then the topic
 * handlers. Undecodable input gets the protocol's PARSER answer and one log
 * line; the connection carries on. */
#include <string.h>

#include "broker.h"
#include "log.h"

void reply_parser_error(session *s, int action, int topic, int orig_action)
{
    ParserMessage m = PARSER_MESSAGE__INIT;
    m.has_action = 1;
    m.action = action;
    if (topic >= 0) {
        m.has_originaltopic = 1;
        m.originaltopic = topic;
    }
    if (orig_action >= 0) {
        m.has_originalaction = 1;
        m.originalaction = orig_action;
    }
    session_send_msg(s, TOPIC__TOPIC_PARSER, &m.base);
}

void reply_unknown_action(session *s, int topic, int action)
{
    log_debug("unknown-action", "session=%llu topic=%d action=%d", (unsigned long long)s->id, topic,
              action);
    reply_parser_error(s, PARSER__ACTION__PARSER_UNKNOWN_ACTION, topic, action);
}

void send_ack(session *s, int topic, int action, const char *correlation_id)
{
    switch (topic) {
    case TOPIC__TOPIC_EVENT: {
        EventMessage m = EVENT_MESSAGE__INIT;
        m.has_action = m.has_isack = 1;
        m.action = action;
        m.isack = 1;
        m.correlationid = (char *)correlation_id;
        session_send_msg(s, topic, &m.base);
        break;
    }
    case TOPIC__TOPIC_RPC: {
        RpcMessage m = RPC_MESSAGE__INIT;
        m.has_action = m.has_isack = 1;
        m.action = action;
        m.isack = 1;
        m.correlationid = (char *)correlation_id;
        session_send_msg(s, topic, &m.base);
        break;
    }
    case TOPIC__TOPIC_PRESENCE: {
        PresenceMessage m = PRESENCE_MESSAGE__INIT;
        m.has_action = m.has_isack = 1;
        m.action = action;
        m.isack = 1;
        m.correlationid = (char *)correlation_id;
        session_send_msg(s, topic, &m.base);
        break;
    }
    }
}

static void reply_connection(session *s, int action)
{
    ConnectionMessage m = CONNECTION_MESSAGE__INIT;
    m.has_action = 1;
    m.action = action;
    session_send_msg(s, TOPIC__TOPIC_CONNECTION, &m.base);
}

static void reply_auth(session *s, int action)
{
    AuthMessage m = AUTH_MESSAGE__INIT;
    m.has_action = 1;
    m.action = action;
    session_send_msg(s, TOPIC__TOPIC_AUTH, &m.base);
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
    log_warn("bad-frame", "session=%llu problem=%s bytes=%zu", (unsigned long long)s->id, what,
             len);
    reply_parser_error(s, PARSER__ACTION__PARSER_MESSAGE_PARSE_ERROR, -1, -1);
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
    else if (action == CONNECTION__ACTION__CONNECTION_CHALLENGE &&
             s->state == SESSION_AWAITING_CHALLENGE) {
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

static void handle_auth(session *s, const ProtobufCBinaryData *inner)
{
    AuthMessage *m = auth_message__unpack(NULL, inner->len, inner->data);
    if (m == NULL) {
        parse_error(s, "auth-message", inner->len);
        return;
    }
    if (m->has_action && m->action == AUTH__ACTION__AUTH_REQUEST)
        auth_request(broker_auth(s->b), s, m->data);
    else
        reply_auth(s, AUTH__ACTION__AUTH_INVALID_MESSAGE);
    auth_message__free_unpacked(m, NULL);
}





/* The topics a logged-in session may use, each with its message type. */
static const struct topic_route {
    int topic;
    const ProtobufCMessageDescriptor *type;
    void (*handle)(session *s, const ProtobufCMessage *m);
} routes[] = {
    {TOPIC__TOPIC_EVENT, &event_message__descriptor, events_handle},
    {TOPIC__TOPIC_RECORD, &record_message__descriptor, records_handle},
    {TOPIC__TOPIC_RPC, &rpc_message__descriptor, rpc_handle},
    {TOPIC__TOPIC_PRESENCE, &presence_message__descriptor, presence_handle},
};

/* Decodes the inner message of a routed topic and hands it to its module. */
static bool route_topic(session *s, int topic, const ProtobufCBinaryData *inner)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (routes[i].topic != topic)
            continue;
        ProtobufCMessage *m = protobuf_c_message_unpack(routes[i].type, NULL, inner->len, inner->data);
        if (m == NULL) {
            parse_error(s, routes[i].type->short_name, inner->len);
            return true;
        }
        routes[i].handle(s, m);
        protobuf_c_message_free_unpacked(m, NULL);
        return true;
    }
    return false;
}

void dispatch_frame(session *s, const uint8_t *data, size_t len)
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

    if (topic == TOPIC__TOPIC_CONNECTION)
        handle_connection(s, inner);
    else if (s->state == SESSION_AWAITING_CHALLENGE)
        reply_connection(s, CONNECTION__ACTION__CONNECTION_INVALID_MESSAGE);
    else if (s->state == SESSION_AWAITING_AUTH) {
        if (topic == TOPIC__TOPIC_AUTH)
            handle_auth(s, inner);
        else
            reply_auth(s, AUTH__ACTION__AUTH_INVALID_MESSAGE); /* e.g. a LISTEN sent before login */
    } else if (!route_topic(s, topic, inner)) {
        /* AUTH after login, and topics no client uses (MONITORING, CLUSTER, ...) */
        log_debug("unknown-topic", "session=%llu topic=%d", (unsigned long long)s->id, topic);
        reply_parser_error(s, PARSER__ACTION__PARSER_UNKNOWN_TOPIC, topic, -1);
    }
    message__free_unpacked(msg, NULL);
}
