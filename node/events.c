/* events.c - the events topic on the owning node: which peers (brokers,
 * backends) have subscribers for which event names, and the fan-out of an emit
 * to exactly those peers. The delivery is encoded once and the same bytes are
 * appended to each interested peer's batch. Listening is told when a name gets
 * its first interested peer and loses its last. */
#include <string.h>

#include "deepstream.pb-c.h"
#include "internal.h"
#include "mem.h"

typedef struct events {
    node_env *env;
    subs *interest; /* name -> interested peers */
    msgpack_sbuffer scratch;
} events;

static void *events_create(node_env *env)
{
    events *t = xcalloc(1, sizeof(*t));
    t->env = env;
    t->interest = listen_follow(env->listen, TOPIC__TOPIC_EVENT, NULL, NULL);
    msgpack_sbuffer_init(&t->scratch);
    return t;
}

static void events_destroy(void *self)
{
    events *t = self;
    subs_free(t->interest);
    msgpack_sbuffer_destroy(&t->scratch);
    xfree(t);
}

/* Delivers an emit to every interested peer, encoded once. */
static void emit(events *t, node_req *req, const op *o)
{
    uint32_t n;
    subs_holder *h = subs_holders(t->interest, o->name, &n);
    if (n == 0)
        return;
    op d = {.kind = OP_EVENT_DELIVERY, .name = o->name, .session = o->session, .broker = req->from->id,
            .has_data = o->has_data, .data = o->data};
    t->scratch.size = 0;
    op_encode(&t->scratch, &d);
    for (uint32_t i = 0; i < n; i++)
        peer_deliver(t->env->peers, h[i].ptr, t->scratch.data, t->scratch.size);
}

static void events_apply(void *self, node_req *req, const op *o)
{
    events *t = self;
    switch (o->kind) {
    case OP_EVENT_INTEREST: subs_add(t->interest, o->name, req->from, 0); break; /* a retry: no change */
    case OP_EVENT_UNINTEREST: subs_remove(t->interest, o->name, req->from, 0, false); break;
    case OP_EVENT_EMIT: emit(t, req, o); break;
    }
}

static size_t events_drop_peer(void *self, peer *p)
{
    events *t = self;
    return subs_remove_holder(t->interest, p);
}

const owner_module events_owner = {
    .name = "events",
    .kinds = (const owner_kind[]){{OP_EVENT_INTEREST, ROUTE_NAME}, {OP_EVENT_UNINTEREST, ROUTE_NAME},
                                  {OP_EVENT_EMIT, ROUTE_NAME}, {0, 0}},
    .create = events_create,
    .destroy = events_destroy,
    .apply = events_apply,
    .held = "event_names",
    .drop_peer = events_drop_peer,
};
