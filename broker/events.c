/* events.c - the broker's event subscriptions: which local sessions subscribe
 * to which names, the interest messages to the owning node (only on the first
 * local subscriber and after the last one leaves), emits forwarded to the
 * owner, and the fan-out of deliveries: one encoded frame per delivery, one
 * reference per local subscriber, never back to the emitting session.
 *
 * A subscription is acknowledged only once the owner has registered the
 * broker's interest, so an ack means events emitted afterwards will arrive. */
#include <string.h>

#include "broker.h"
#include "log.h"
#include "mem.h"

typedef struct topic {
    uint32_t count, cap;
    session **subs;
    int link;             /* owner link the interest went to */
    uint64_t interest_seq; /* batch carrying the interest */
} topic;

struct event_subs {
    broker *b;
    dict *topics; /* name -> topic */
    uint64_t delivered, dropped_submits;
};

event_subs *event_subs_new(broker *b)
{
    event_subs *e = xcalloc(1, sizeof(*e));
    e->b = b;
    e->topics = dict_new();
    return e;
}

static int free_topic(const void *k, size_t l, void *v, void *arg)
{
    topic *t = v;
    xfree(t->subs);
    xfree(t);
    return 0;
}

void event_subs_free(event_subs *e)
{
    if (e == NULL)
        return;
    dict_foreach(e->topics, free_topic, NULL);
    dict_free(e->topics);
    xfree(e);
}

static void event_reply(session *s, int action, const char *name, const char *corr,
                        int orig_action, bool is_ack)
{
    EventMessage m = EVENT_MESSAGE__INIT;
    m.has_action = 1;
    m.action = action;
    m.name = (char *)name;
    m.correlationid = (char *)corr;
    if (is_ack) {
        m.has_isack = 1;
        m.isack = 1;
    }
    if (orig_action >= 0) {
        m.has_originalaction = 1;
        m.originalaction = orig_action;
    }
    session_send_msg(s, TOPIC__TOPIC_EVENT, &m.base);
}

void ack_done(broker *b, pending_ack *pa)
{
    if (--pa->waits > 0)
        return;
    session *s = broker_session(b, pa->session_id);
    if (s != NULL)
        send_ack(s, pa->topic, pa->action, pa->correlation_id);
    xfree(pa->correlation_id);
    xfree(pa);
}

static bool valid_name(const char *name)
{
    size_t len = strlen(name);
    return len > 0 && len <= OP_NAME_MAX;
}

/* Sends an interest change for name; returns the link or -1 when refused. */
static int send_interest(broker *b, uint32_t kind, const char *name, uint64_t *seq)
{
    op o = {.kind = kind, .name = {name, (uint32_t)strlen(name)}};
    return links_submit(b, &o, seq);
}

static void subscribe_one(session *s, event_subs *e, const char *name, pending_ack *pa)
{
    size_t len = strlen(name);
    if (dict_get(s->events, name, len) != NULL) {
        event_reply(s, EVENT__ACTION__EVENT_MULTIPLE_SUBSCRIPTIONS, name, NULL,
                    EVENT__ACTION__EVENT_SUBSCRIBE, false);
        return;
    }
    topic *t = dict_get(e->topics, name, len);
    if (t == NULL) {
        uint64_t seq;
        int li = send_interest(e->b, OP_EVENT_INTEREST, name, &seq);
        if (li < 0) {
            event_reply(s, EVENT__ACTION__EVENT_MESSAGE_DENIED, name, pa->correlation_id,
                        EVENT__ACTION__EVENT_SUBSCRIBE, false);
            return;
        }
        t = xcalloc(1, sizeof(*t));
        t->link = li;
        t->interest_seq = seq;
        dict_put(e->topics, name, len, t);
    }
    if (t->count == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 4;
        t->subs = xrealloc(t->subs, t->cap * sizeof(*t->subs));
    }
    t->subs[t->count++] = s;
    dict_put(s->events, name, len, t);
    if (!links_answered(e->b, t->link, t->interest_seq)) {
        pa->waits++;
        links_wait(e->b, t->link, t->interest_seq, pa);
    }
}

/* Removes s from name's subscribers; tells the owner when none are left. */
static void unsubscribe_one(event_subs *e, session *s, const char *name, size_t len)
{
    topic *t = dict_del(s->events, name, len);
    if (t == NULL)
        return;
    for (uint32_t i = 0; i < t->count; i++)
        if (t->subs[i] == s) {
            t->subs[i] = t->subs[--t->count];
            break;
        }
    if (t->count > 0)
        return;
    op o = {.kind = OP_EVENT_UNINTEREST, .name = {name, (uint32_t)len}};
    uint64_t seq;
    links_submit(e->b, &o, &seq);
    dict_del(e->topics, name, len);
    xfree(t->subs);
    xfree(t);
}

static void handle_subscribe(session *s, const EventMessage *m)
{
    event_subs *e = broker_events(s->b);
    pending_ack *pa = xcalloc(1, sizeof(*pa));
    pa->session_id = s->id;
    pa->topic = TOPIC__TOPIC_EVENT;
    pa->action = EVENT__ACTION__EVENT_SUBSCRIBE;
    pa->correlation_id = m->correlationid ? xstrdup(m->correlationid) : NULL;
    pa->waits = 1; /* held until the loop below is done */
    for (size_t i = 0; i < m->n_names; i++) {
        if (!valid_name(m->names[i])) {
            event_reply(s, EVENT__ACTION__EVENT_INVALID_MESSAGE_DATA, m->names[i], m->correlationid,
                        EVENT__ACTION__EVENT_SUBSCRIBE, false);
            continue;
        }
        subscribe_one(s, e, m->names[i], pa);
    }
    if (m->n_names == 0 && m->name != NULL && valid_name(m->name))
        subscribe_one(s, e, m->name, pa);
    ack_done(s->b, pa);
}

static void handle_unsubscribe(session *s, const EventMessage *m)
{
    event_subs *e = broker_events(s->b);
    for (size_t i = 0; i < m->n_names; i++)
        unsubscribe_one(e, s, m->names[i], strlen(m->names[i]));
    if (m->n_names == 0 && m->name != NULL) {
        size_t len = strlen(m->name);
        if (dict_get(s->events, m->name, len) == NULL)
            event_reply(s, EVENT__ACTION__EVENT_NOT_SUBSCRIBED, m->name, NULL,
                        EVENT__ACTION__EVENT_UNSUBSCRIBE, false);
        else
            unsubscribe_one(e, s, m->name, len);
    }
    event_reply(s, EVENT__ACTION__EVENT_UNSUBSCRIBE, NULL, m->correlationid, -1, true);
}

static void handle_emit(session *s, const EventMessage *m)
{
    if (m->name == NULL || !valid_name(m->name)) {
        event_reply(s, EVENT__ACTION__EVENT_INVALID_MESSAGE_DATA, m->name, NULL,
                    EVENT__ACTION__EVENT_EMIT, false);
        return;
    }
    op o = {.kind = OP_EVENT_EMIT, .name = {m->name, (uint32_t)strlen(m->name)},
            .session = s->id, .has_data = m->data != NULL};
    if (m->data != NULL)
        o.data = (strview){m->data, (uint32_t)strlen(m->data)};
    uint64_t seq;
    if (links_submit(s->b, &o, &seq) < 0) {
        broker_events(s->b)->dropped_submits++;
        event_reply(s, EVENT__ACTION__EVENT_MESSAGE_DENIED, m->name, NULL, EVENT__ACTION__EVENT_EMIT,
                    false);
    }
}

void events_handle(session *s, const ProtobufCMessage *base)
{
    const EventMessage *m = (const EventMessage *)base;
    int action = m->has_action ? m->action : 0;
    switch (action) {
    case EVENT__ACTION__EVENT_SUBSCRIBE: handle_subscribe(s, m); break;
    case EVENT__ACTION__EVENT_UNSUBSCRIBE: handle_unsubscribe(s, m); break;
    case EVENT__ACTION__EVENT_EMIT: handle_emit(s, m); break;
    default:
        if (listen_handle(s, TOPIC__TOPIC_EVENT, action, m->name, m->subscription))
            break;
        reply_unknown_action(s, TOPIC__TOPIC_EVENT, action);
    }
}

void events_session_closed(session *s)
{
    size_t n;
    char **names = dict_keys(s->events, &n);
    for (size_t i = 0; i < n; i++)
        unsubscribe_one(broker_events(s->b), s, names[i], strlen(names[i]));
    dict_keys_free(names, n);
}

struct resync_ctx {
    broker *b;
    int li;
};

static int resync_topic(const void *key, size_t len, void *v, void *arg)
{
    struct resync_ctx *c = arg;
    topic *t = v;
    if (t->link != c->li)
        return 0;
    op o = {.kind = OP_EVENT_INTEREST, .name = {key, (uint32_t)len}};
    uint64_t seq;
    links_submit(c->b, &o, &seq);
    return 0;
}

void events_resync(broker *b, int li)
{
    struct resync_ctx c = {b, li};
    dict_foreach(broker_events(b)->topics, resync_topic, &c);
}

void events_deliver(broker *b, const op *o)
{
    event_subs *e = broker_events(b);
    topic *t = dict_get(e->topics, o->name.ptr, o->name.len);
    if (t == NULL || t->count == 0)
        return; /* the last subscriber left while the delivery was in flight */
    /* The protobuf strings must be NUL-terminated: copy name and data once. */
    char *name = xstrndup(o->name.ptr, o->name.len);
    char *data = o->has_data ? xstrndup(o->data.ptr, o->data.len) : NULL;
    EventMessage m = EVENT_MESSAGE__INIT;
    m.has_action = 1;
    m.action = EVENT__ACTION__EVENT_EMIT;
    m.name = name;
    m.data = data;
    frame *f = frame_encode(TOPIC__TOPIC_EVENT, &m.base);
    bool own = o->broker == broker_id(b);
    for (uint32_t i = 0; i < t->count; i++) {
        session *s = t->subs[i];
        if (own && s->id == o->session)
            continue; /* never echo to the emitter */
        session_send(s, f);
        e->delivered++;
    }
    frame_unref(f);
    xfree(name);
    xfree(data);
}
