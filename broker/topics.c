/* topics.c - the topic table: one row per topic module (events, records, RPC,
 * presence), and the walks that reach them: a client message goes to the
 * module of its topic, decoded with the topic's message type; a delivery from
 * a node to the modules that take its kind; a request a node will not answer
 * back to the module that sends that kind; logins, closed sessions, resyncs
 * and recoveries to every module. Adding a topic is a row here and a module;
 * a check every client operation must pass belongs in topics_handle. */
#include <string.h>

#include "internal.h"
#include "log.h"
#include "mem.h"

static const topic_module *const table[] = {&events_module, &records_module, &rpc_module, &presence_module,
                                            &changesets_module};
#define MODULES ((int)(sizeof(table) / sizeof(table[0])))
#define TAKERS 2 /* modules that may take one delivery kind (listen messages: events and records) */

struct topics {
    const edge *e;
    void *state[MODULES];
    const ProtobufCFieldDescriptor *action[MODULES]; /* each message's "action" field */
    int8_t takers[OP_KIND_MAX][TAKERS]; /* delivery kind -> module indexes, -1 = none */
    int8_t sender[OP_KIND_MAX];         /* request kind -> module index, -1 = none */
};

topics *topics_create(const edge *e)
{
    topics *t = xcalloc(1, sizeof(*t));
    t->e = e;
    memset(t->takers, -1, sizeof(t->takers));
    memset(t->sender, -1, sizeof(t->sender));
    for (int m = 0; m < MODULES; m++) {
        t->state[m] = table[m]->create(e);
        t->action[m] = protobuf_c_message_descriptor_get_field_by_name(table[m]->message, "action");
        for (const uint32_t *k = table[m]->deliveries; *k != 0; k++)
            for (int i = 0; i < TAKERS; i++)
                if (t->takers[*k][i] < 0) {
                    t->takers[*k][i] = (int8_t)m;
                    break;
                }
        for (const uint32_t *k = table[m]->requests; *k != 0; k++)
            t->sender[*k] = (int8_t)m;
    }
    return t;
}

void topics_destroy(topics *t)
{
    if (t == NULL)
        return;
    for (int m = 0; m < MODULES; m++)
        table[m]->destroy(t->state[m]);
    xfree(t);
}

static int module_of(int topic)
{
    for (int m = 0; m < MODULES; m++)
        if (table[m]->topic == topic)
            return m;
    return -1;
}

/* Decodes a message for module m and hands it over once the records its
 * permission rules read are read (gate.c; else it waits there). */
static void handle_now(topics *t, session *s, int m, const uint8_t *inner, size_t len)
{
    ProtobufCMessage *msg = protobuf_c_message_unpack(table[m]->message, NULL, len, inner);
    if (msg == NULL) {
        log_warn("bad-frame", "session=%llu problem=%s bytes=%zu", (unsigned long long)s->id,
                 table[m]->message->short_name, len);
        reply_parser_error(s, PARSER__ACTION__PARSER_MESSAGE_PARSE_ERROR, 0, 0);
        return;
    }
    const ProtobufCFieldDescriptor *f = t->action[m]; /* an optional int32 in every topic */
    bool has = f != NULL && *(const protobuf_c_boolean *)((const char *)msg + f->quantifier_offset);
    int action = has ? *(const int32_t *)((const char *)msg + f->offset) : 0;
    s->message_action = action;
    if (gate_admit(t->e, s, table[m]->topic, msg, action, inner, len)) {
        table[m]->handle(t->state[m], s, msg, action);
        gate_done(s);
    }
    protobuf_c_message_free_unpacked(msg, NULL);
}

bool topics_handle(topics *t, session *s, int topic, const uint8_t *inner, size_t len)
{
    int m = module_of(topic);
    if (m < 0)
        return false;
    if (gate_busy(s)) /* in order: behind the messages waiting on records */
        gate_queue(s, topic, inner, len);
    else
        handle_now(t, s, m, inner, len);
    return true;
}

void topics_resume(topics *t, session *s)
{
    int topic;
    uint8_t *bytes;
    size_t len;
    while (!s->closing && gate_next(s, &topic, &bytes, &len)) {
        handle_now(t, s, module_of(topic), bytes, len);
        xfree(bytes);
    }
}

void topics_deliver(topics *t, const op *o)
{
    if (o->kind >= OP_KIND_MAX)
        return;
    for (int i = 0; i < TAKERS && t->takers[o->kind][i] >= 0; i++) {
        int m = t->takers[o->kind][i];
        table[m]->deliver(t->state[m], o);
    }
}

int topics_fail(topics *t, const op *o)
{
    int m = o->kind < OP_KIND_MAX ? t->sender[o->kind] : -1;
    return m >= 0 ? table[m]->fail(t->state[m], o) : 0;
}

void topics_login(topics *t, session *s)
{
    for (int m = 0; m < MODULES; m++)
        if (table[m]->login != NULL)
            table[m]->login(t->state[m], s);
}

void topics_session_closed(topics *t, session *s)
{
    for (int m = 0; m < MODULES; m++)
        table[m]->session_closed(t->state[m], s);
    gate_session_closed(s);
}

void topics_resync(topics *t, int li)
{
    for (int m = 0; m < MODULES; m++)
        table[m]->resync(t->state[m], li);
}

void topics_recover(topics *t, int li)
{
    for (int m = 0; m < MODULES; m++)
        if (table[m]->recover != NULL)
            table[m]->recover(t->state[m], li);
}

void topics_metrics(topics *t, FILE *f)
{
    for (int m = 0; m < MODULES; m++)
        if (table[m]->metrics != NULL)
            table[m]->metrics(t->state[m], f);
}
