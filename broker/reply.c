/* reply.c - one builder for every topic's message to a client. The topics'
 * messages share their field names (action, name, correlationId, isAck, ...)
 * but not their numbers or their struct layouts, so each field is found once
 * in the topic's protobuf-c descriptor and set through it: the callers say
 * what a message holds, never how a topic lays it out. Not for the few
 * messages with a shape of their own (a record's versions map). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"

enum field {
    F_ACTION, F_NAME, F_DATA, F_CID, F_SUBSCRIPTION, F_PATH, F_REQUESTOR_NAME, F_REQUESTOR_DATA,
    F_NAMES, F_ORIG, F_ORIG_TOPIC, F_IS_ACK, F_IS_ERROR, F_IS_WRITE_ACK, F_VERSION, F_COUNT
};

static const char *const field_names[F_COUNT] = {
    [F_ACTION] = "action", [F_NAME] = "name", [F_DATA] = "data", [F_CID] = "correlationId",
    [F_SUBSCRIPTION] = "subscription", [F_PATH] = "path", [F_REQUESTOR_NAME] = "requestorName",
    [F_REQUESTOR_DATA] = "requestorData", [F_NAMES] = "names", [F_ORIG] = "originalAction",
    [F_ORIG_TOPIC] = "originalTOPIC", [F_IS_ACK] = "isAck", [F_IS_ERROR] = "isError",
    [F_IS_WRITE_ACK] = "isWriteAck", [F_VERSION] = "version",
};

/* The largest inner message struct (checked at init). */
#define MESSAGE_MAX 512

typedef struct layout {
    const ProtobufCMessageDescriptor *d;
    const ProtobufCFieldDescriptor *f[F_COUNT]; /* NULL: the topic has no such field */
} layout;

static layout layouts[TOPIC__TOPIC_PRESENCE + 1];
static pthread_once_t layouts_once = PTHREAD_ONCE_INIT;

static void init_layouts(void)
{
    static const struct {
        int topic;
        const ProtobufCMessageDescriptor *d;
    } rows[] = {
        {TOPIC__TOPIC_PARSER, &parser_message__descriptor},
        {TOPIC__TOPIC_CONNECTION, &connection_message__descriptor},
        {TOPIC__TOPIC_AUTH, &auth_message__descriptor},
        {TOPIC__TOPIC_EVENT, &event_message__descriptor},
        {TOPIC__TOPIC_RECORD, &record_message__descriptor},
        {TOPIC__TOPIC_RPC, &rpc_message__descriptor},
        {TOPIC__TOPIC_PRESENCE, &presence_message__descriptor},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        layout *l = &layouts[rows[i].topic];
        l->d = rows[i].d;
        if (l->d->sizeof_message > MESSAGE_MAX)
            abort(); /* a message grew past the builder's buffer: a programming error */
        for (int f = 0; f < F_COUNT; f++)
            l->f[f] = protobuf_c_message_descriptor_get_field_by_name(l->d, field_names[f]);
    }
}

static void *at(void *msg, unsigned offset)
{
    return (char *)msg + offset;
}

static void set_int(void *msg, const ProtobufCFieldDescriptor *f, int32_t v)
{
    if (f == NULL)
        return;
    *(int32_t *)at(msg, f->offset) = v;
    if (f->quantifier_offset != 0)
        *(protobuf_c_boolean *)at(msg, f->quantifier_offset) = 1;
}

static void set_bool(void *msg, const ProtobufCFieldDescriptor *f, bool v)
{
    if (f == NULL || !v)
        return;
    *(protobuf_c_boolean *)at(msg, f->offset) = 1;
    if (f->quantifier_offset != 0)
        *(protobuf_c_boolean *)at(msg, f->quantifier_offset) = 1;
}

static void set_string(void *msg, const ProtobufCFieldDescriptor *f, const char *v)
{
    if (f != NULL && v != NULL)
        *(const char **)at(msg, f->offset) = v;
}

frame *reply_frame(int topic, const client_reply *r)
{
    pthread_once(&layouts_once, init_layouts);
    const layout *l = topic > 0 && topic <= TOPIC__TOPIC_PRESENCE ? &layouts[topic] : NULL;
    if (l == NULL || l->d == NULL)
        abort(); /* no such topic: a programming error */
    _Alignas(16) uint8_t msg[MESSAGE_MAX];
    l->d->message_init((ProtobufCMessage *)msg);
    set_int(msg, l->f[F_ACTION], r->action);
    set_string(msg, l->f[F_NAME], r->name);
    set_string(msg, l->f[F_DATA], r->data);
    set_string(msg, l->f[F_CID], r->correlation_id);
    set_string(msg, l->f[F_SUBSCRIPTION], r->subscription);
    set_string(msg, l->f[F_PATH], r->path);
    set_string(msg, l->f[F_REQUESTOR_NAME], r->requestor_name);
    set_string(msg, l->f[F_REQUESTOR_DATA], r->requestor_data);
    if (r->orig != 0)
        set_int(msg, l->f[F_ORIG], r->orig);
    if (r->orig_topic != 0)
        set_int(msg, l->f[F_ORIG_TOPIC], r->orig_topic);
    set_bool(msg, l->f[F_IS_ACK], r->is_ack);
    set_bool(msg, l->f[F_IS_ERROR], r->is_error);
    set_bool(msg, l->f[F_IS_WRITE_ACK], r->is_write_ack);
    if (r->has_version)
        set_int(msg, l->f[F_VERSION], r->version);
    const ProtobufCFieldDescriptor *names = l->f[F_NAMES];
    if (names != NULL && r->n_names > 0) {
        *(size_t *)at(msg, names->quantifier_offset) = r->n_names;
        *(char ***)at(msg, names->offset) = r->names;
    }
    return frame_encode(topic, (const ProtobufCMessage *)msg);
}

void reply_send(session *s, int topic, const client_reply *r)
{
    frame *f = reply_frame(topic, r);
    session_send(s, f);
    frame_unref(f);
}

void reply_parser_error(session *s, int action, int topic, int orig)
{
    reply_send(s, TOPIC__TOPIC_PARSER, &(client_reply){.action = action, .orig_topic = topic, .orig = orig});
}

void reply_unknown_action(session *s, int topic, int action)
{
    log_debug("unknown-action", "session=%llu topic=%d action=%d", (unsigned long long)s->id, topic, action);
    reply_parser_error(s, PARSER__ACTION__PARSER_UNKNOWN_ACTION, topic, action);
}

/* ---------------- denials of messages not processed ---------------- */

/* Each topic's MESSAGE_DENIED (0: the topic has none). */
static int denied_action(int topic)
{
    switch (topic) {
    case TOPIC__TOPIC_EVENT: return EVENT__ACTION__EVENT_MESSAGE_DENIED;
    case TOPIC__TOPIC_RECORD: return RECORD__ACTION__RECORD_MESSAGE_DENIED;
    case TOPIC__TOPIC_RPC: return RPC__ACTION__RPC_MESSAGE_DENIED;
    case TOPIC__TOPIC_PRESENCE: return PRESENCE__ACTION__PRESENCE_MESSAGE_DENIED;
    default: return 0;
    }
}

static int32_t get_int(const void *msg, const ProtobufCFieldDescriptor *f)
{
    if (f == NULL || (f->quantifier_offset != 0 && !*(const protobuf_c_boolean *)at((void *)msg, f->quantifier_offset)))
        return 0;
    return *(const int32_t *)at((void *)msg, f->offset);
}

static bool get_bool(const void *msg, const ProtobufCFieldDescriptor *f)
{
    if (f == NULL || (f->quantifier_offset != 0 && !*(const protobuf_c_boolean *)at((void *)msg, f->quantifier_offset)))
        return false;
    return *(const protobuf_c_boolean *)at((void *)msg, f->offset) != 0;
}

static const char *get_string(const void *msg, const ProtobufCFieldDescriptor *f)
{
    return f != NULL ? *(const char *const *)at((void *)msg, f->offset) : NULL;
}

size_t reply_denied(session *s, int topic, const uint8_t *inner, size_t len)
{
    int denied = denied_action(topic);
    if (denied == 0)
        return 0;
    pthread_once(&layouts_once, init_layouts);
    const layout *l = &layouts[topic];
    ProtobufCMessage *m = protobuf_c_message_unpack(l->d, NULL, len, inner);
    if (m == NULL)
        return 0;
    client_reply r = {.action = denied, .orig = get_int(m, l->f[F_ACTION]), .is_error = true,
                      .correlation_id = get_string(m, l->f[F_CID]),
                      .is_write_ack = get_bool(m, l->f[F_IS_WRITE_ACK])};
    size_t n = 0;
    const ProtobufCFieldDescriptor *names = l->f[F_NAMES];
    if (names != NULL)
        n = *(const size_t *)at(m, names->quantifier_offset);
    for (size_t i = 0; i < n; i++) {
        r.name = (*(char ***)at(m, names->offset))[i];
        reply_send(s, topic, &r);
    }
    if (n == 0) { /* one name, or none (a presence SUBSCRIBE_ALL, QUERY_ALL) */
        r.name = get_string(m, l->f[F_NAME]);
        reply_send(s, topic, &r);
        n = 1;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return n;
}
