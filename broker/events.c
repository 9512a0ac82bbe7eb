/* events.c - the events topic on the broker: which local sessions subscribe
 * to which names, the interest messages to the owning node (only on the first
 * local subscriber and after the last one leaves), emits forwarded to the
 * owner, and the fan-out of deliveries: one encoded frame per delivery, one
 * reference per local subscriber, never back to the emitting session.
 * Listening on events is listen.c's, reached through this module.
 *
 * A subscription is acknowledged only once the owner has registered the
 * broker's interest, so an ack means events emitted afterwards will arrive. */
#include <string.h>

#include "internal.h"
#include "mem.h"
#include "subs.h"
#include "vec.h"

#define EACT(x) EVENT__ACTION__EVENT_##x

/* Where a name's interest went (the data of each name in `subs`). */
typedef struct interest {
    int link;
    uint64_t seq; /* the batch carrying it */
} interest;

typedef struct events {
    const edge *e;
    subs *subs; /* name -> subscribed sessions */
    listen_set *listen;
} events;

static void event_error(session *s, int action, const char *name, const char *cid, int orig)
{
    bool refusal = action == EACT(MESSAGE_DENIED) || action == EACT(MESSAGE_PERMISSION_ERROR);
    reply_send(s, TOPIC__TOPIC_EVENT, &(client_reply){.action = action, .name = name, .correlation_id = cid,
                                                      .orig = orig, .is_error = refusal});
}

static bool valid_name(const char *name)
{
    size_t len = name != NULL ? strlen(name) : 0;
    return len > 0 && len <= OP_NAME_MAX;
}

/* The last local subscriber left: the owner stops sending. */
static void lost_interest(void *ctx, strview name, void *data)
{
    events *ev = ctx;
    links_submit(ev->e->links, &(op){.kind = OP_EVENT_UNINTEREST, .name = name}, NULL);
}

static void *events_create(const edge *e)
{
    events *ev = xcalloc(1, sizeof(*ev));
    ev->e = e;
    ev->subs = subs_new(sizeof(interest), (subs_hooks){.last = lost_interest}, ev);
    ev->listen = listen_set_new(e, TOPIC__TOPIC_EVENT);
    return ev;
}

static void events_destroy(void *self)
{
    events *ev = self;
    subs_free(ev->subs);
    listen_set_free(ev->listen);
    xfree(ev);
}

/* Returns false when the name was denied (its MESSAGE_DENIED is sent). */
static bool subscribe_one(events *ev, session *s, const char *name, ack *k, const char *cid)
{
    enum permit_answer a = permit_check(ev->e->permit, s, PERM_EVENT, PERM_SUBSCRIBE, name, NULL);
    if (a != PERMIT_ALLOW) {
        event_error(s, permit_refusal(TOPIC__TOPIC_EVENT, a), name, cid, EACT(SUBSCRIBE));
        return false;
    }
    strview n = sv_of(name);
    if (subs_holds(ev->subs, n, s, 0)) {
        event_error(s, EACT(MULTIPLE_SUBSCRIPTIONS), name, NULL, EACT(SUBSCRIBE));
        return true;
    }
    if (!limits_subscribe(ev->e->limits, s, TOPIC__TOPIC_EVENT, subs_held(ev->subs, s))) {
        event_error(s, EACT(MESSAGE_DENIED), name, cid, EACT(SUBSCRIBE));
        return false;
    }
    interest *in = subs_data(ev->subs, n);
    if (in == NULL) { /* the first local subscriber: tell the owner */
        op o = {.kind = OP_EVENT_INTEREST, .name = n};
        uint64_t seq;
        int li = links_submit(ev->e->links, &o, &seq);
        if (li < 0) {
            event_error(s, EACT(MESSAGE_DENIED), name, cid, EACT(SUBSCRIBE));
            return true;
        }
        subs_add(ev->subs, n, s, 0);
        in = subs_data(ev->subs, n);
        *in = (interest){li, seq};
    } else
        subs_add(ev->subs, n, s, 0);
    ack_wait(ev->e->acks, k, in->link, in->seq);
    return true;
}

/* As deepstream: a name permissions deny gets MESSAGE_DENIED and is left out;
 * when every name was denied there is no acknowledgement. */
static void handle_subscribe(events *ev, session *s, const EventMessage *m)
{
    ack *k = ack_new(ev->e->acks, s, TOPIC__TOPIC_EVENT, EACT(SUBSCRIBE), m->correlationid);
    size_t denied = 0, asked = m->n_names;
    for (size_t i = 0; i < m->n_names; i++) {
        if (valid_name(m->names[i]))
            denied += !subscribe_one(ev, s, m->names[i], k, m->correlationid);
        else
            event_error(s, EACT(INVALID_MESSAGE_DATA), m->names[i], m->correlationid, EACT(SUBSCRIBE));
    }
    if (m->n_names == 0 && valid_name(m->name)) {
        asked = 1;
        denied += !subscribe_one(ev, s, m->name, k, m->correlationid);
    }
    if (asked > 0 && denied == asked)
        ack_discard(ev->e->acks, k);
    else
        ack_release(ev->e->acks, k);
}

static void handle_unsubscribe(events *ev, session *s, const EventMessage *m)
{
    for (size_t i = 0; i < m->n_names; i++)
        subs_remove(ev->subs, sv_of(m->names[i]), s, 0, false);
    if (m->n_names == 0 && m->name != NULL && !subs_remove(ev->subs, sv_of(m->name), s, 0, false))
        event_error(s, EACT(NOT_SUBSCRIBED), m->name, NULL, EACT(UNSUBSCRIBE));
    reply_send(s, TOPIC__TOPIC_EVENT,
               &(client_reply){.action = EACT(UNSUBSCRIBE), .correlation_id = m->correlationid, .is_ack = true});
}

static void handle_emit(events *ev, session *s, const EventMessage *m)
{
    if (!valid_name(m->name)) {
        event_error(s, EACT(INVALID_MESSAGE_DATA), m->name, NULL, EACT(EMIT));
        return;
    }
    enum permit_answer a = permit_check(ev->e->permit, s, PERM_EVENT, PERM_PUBLISH, m->name, m->data);
    if (a != PERMIT_ALLOW) {
        event_error(s, permit_refusal(TOPIC__TOPIC_EVENT, a), m->name, NULL, EACT(EMIT));
        return;
    }
    op o = {.kind = OP_EVENT_EMIT, .name = sv_of(m->name), .session = s->id, .has_data = m->data != NULL,
            .data = sv_of(m->data)};
    if (links_submit(ev->e->links, &o, NULL) < 0)
        event_error(s, EACT(MESSAGE_DENIED), m->name, NULL, EACT(EMIT));
}

static void events_handle(void *self, session *s, const ProtobufCMessage *base, int action)
{
    events *ev = self;
    const EventMessage *m = (const EventMessage *)base;
    switch (action) {
    case EACT(SUBSCRIBE): handle_subscribe(ev, s, m); break;
    case EACT(UNSUBSCRIBE): handle_unsubscribe(ev, s, m); break;
    case EACT(EMIT): handle_emit(ev, s, m); break;
    default:
        if (!listen_handle(ev->listen, s, action, m->name, m->subscription))
            reply_unknown_action(s, TOPIC__TOPIC_EVENT, action);
    }
}

static void events_session_closed(void *self, session *s)
{
    events *ev = self;
    subs_remove_holder(ev->subs, s);
    listen_session_closed(ev->listen, s);
}

static void events_resync(void *self, int li)
{
    events *ev = self;
    links_resend(ev->e->links, li, ev->subs, &(op){.kind = OP_EVENT_INTEREST}, 0);
    listen_resync(ev->listen, li);
}

static void events_deliver(void *self, const op *o)
{
    events *ev = self;
    if (o->kind == OP_LISTEN_MESSAGE) {
        listen_deliver(ev->listen, o);
        return;
    }
    uint32_t n;
    subs_holder *h = subs_holders(ev->subs, o->name, &n);
    if (n == 0)
        return; /* the last subscriber left while the delivery was in flight */
    /* The protobuf strings must be NUL-terminated: copy name and data once. */
    char *name = xstrndup(o->name.ptr, o->name.len);
    char *data = o->has_data ? xstrndup(o->data.ptr, o->data.len) : NULL;
    frame *f = reply_frame(TOPIC__TOPIC_EVENT, &(client_reply){.action = EACT(EMIT), .name = name, .data = data});
    bool own = o->broker == ev->e->broker_id;
    for (uint32_t i = 0; i < n; i++) {
        session *s = h[i].ptr;
        if (!own || s->id != o->session) /* never echo to the emitter */
            session_send(s, f);
    }
    frame_unref(f);
    xfree(name);
    xfree(data);
}

static int events_fail(void *self, const op *o)
{
    return 0; /* interest and emits answer nobody */
}

const topic_module events_module = {
    .name = "events",
    .topic = TOPIC__TOPIC_EVENT,
    .message = &event_message__descriptor,
    .deliveries = (const uint32_t[]){OP_EVENT_DELIVERY, OP_LISTEN_MESSAGE, 0},
    .requests = (const uint32_t[]){0},
    .create = events_create,
    .destroy = events_destroy,
    .handle = events_handle,
    .deliver = events_deliver,
    .fail = events_fail,
    .session_closed = events_session_closed,
    .resync = events_resync,
};
