/* events.c - the events topic on the owning node: which peers (brokers,
 * backends) have subscribers for which event names, and the fan-out of an emit
 * to exactly those peers. The delivery is encoded once and the same bytes are
 * appended to each interested peer's batch. Listening is told when a name gets
 * its first interested peer and loses its last.
 *
 * Names matching events.history are also kept (history.c): their deliveries
 * carry the event's offset and the history's epoch, and a STREAM_SUBSCRIBE
 * registers interest and replays what is held from an offset, in the same
 * delivery stream and under the same lock, so live deliveries follow the
 * replay with neither a hole nor a repeat at the seam. A replay is bounded
 * (REPLAY_MAX_EVENTS, REPLAY_BATCH_BYTES); the peer asks for the rest
 * (OP_FLAG_MORE), one replay at a time. */
#include <string.h>

#include "deepstream.pb-c.h"
#include "internal.h"
#include "mem.h"
#include "util.h"

/* One replay: at most this many events, and it adds to the peer's delivery
 * batch only while that is under REPLAY_BATCH_BYTES (one event at least). */
#define REPLAY_MAX_EVENTS 1024
#define REPLAY_BATCH_BYTES (1u << 20)
#define REPLAY_EVENT_OVERHEAD 64 /* an event's encoding beyond its name and data, about */

typedef struct events {
    node_env *env;
    subs *interest;   /* name -> interested peers */
    history *history; /* NULL: no events.history, and no work for it */
    msgpack_sbuffer scratch;
} events;

static void *events_create(node_env *env)
{
    events *t = xcalloc(1, sizeof(*t));
    t->env = env;
    t->interest = listen_follow(env->listen, TOPIC__TOPIC_EVENT, NULL, NULL);
    t->history = history_new(env->cfg, random_id());
    msgpack_sbuffer_init(&t->scratch);
    return t;
}

static void events_destroy(void *self)
{
    events *t = self;
    subs_free(t->interest);
    history_free(t->history);
    msgpack_sbuffer_destroy(&t->scratch);
    xfree(t);
}

/* Delivers an emit to every interested peer, encoded once (kept first when its name has a history). */
static void emit(events *t, node_req *req, const op *o)
{
    op d = {.kind = OP_EVENT_DELIVERY, .name = o->name, .session = o->session, .broker = req->from->id,
            .has_data = o->has_data, .data = o->data};
    if (t->history != NULL) {
        history_ring *r = history_find(t->history, o->name, true, NULL);
        if (r != NULL)
            d.offset = history_append(t->history, r, d.broker, d.session, o, now_ms(), &d.history);
    }
    uint32_t n;
    subs_holder *h = subs_holders(t->interest, o->name, &n);
    if (n == 0)
        return;
    t->scratch.size = 0;
    op_encode(&t->scratch, &d);
    for (uint32_t i = 0; i < n; i++)
        peer_deliver(t->env->peers, h[i].ptr, t->scratch.data, t->scratch.size);
}

/* The first offset a STREAM_SUBSCRIBE replays from: o's offset in the
 * history held (s), or all of it when o names another history (or offset 0,
 * or one it no longer holds: the peer sees the gap in the state), or none
 * (from now on) for an offset beyond it. */
static uint64_t replay_start(const op *o, history_span s)
{
    if (o->history != 0 && o->history != s.epoch)
        return s.first;
    if (o->offset < s.first)
        return s.first;
    return o->offset > s.next ? s.next : o->offset;
}

/* STREAM_SUBSCRIBE: interest in o's name, then into the peer's deliveries a
 * STREAM_STATE and the events held from the offset asked (bounded: the state
 * says MORE when the peer must ask for the rest). A name without history is
 * answered with NO_HISTORY and registers nothing. */
static void stream_subscribe(events *t, node_req *req, const op *o)
{
    peer *p = req->from;
    bool kept = false;
    history_ring *r = t->history != NULL ? history_find(t->history, o->name, false, &kept) : NULL;
    op state = {.kind = OP_STREAM_STATE, .name = o->name, .corr = o->corr, .session = o->session};
    if (!kept) {
        state.flags = OP_FLAG_NO_HISTORY;
        peer_deliver_op(t->env->peers, p, &state);
        return;
    }
    subs_add(t->interest, o->name, p, 0); /* a retry (a fetch of more): no change */
    history_span s = history_span_of(t->history, r, now_ms());
    uint64_t start = replay_start(o, s), end = start;
    size_t room = p->out.buf.size < REPLAY_BATCH_BYTES ? REPLAY_BATCH_BYTES - p->out.buf.size : 0;
    while (end < s.next && end - start < REPLAY_MAX_EVENTS) {
        size_t cost = history_at(r, end)->len + o->name.len + REPLAY_EVENT_OVERHEAD;
        if (cost > room && end > start)
            break;
        room = cost > room ? 0 : room - cost;
        end++;
    }
    state.history = s.epoch;
    state.offset = start;
    state.has_version = true;
    state.version = (int64_t)(end - 1); /* the last offset replayed (start - 1: none) */
    if (end < s.next)
        state.flags = OP_FLAG_MORE;
    peer_deliver_op(t->env->peers, p, &state);
    for (uint64_t off = start; off < end; off++) {
        const history_event *ev = history_at(r, off);
        op d = {.kind = OP_EVENT_DELIVERY, .name = o->name, .session = ev->session, .broker = ev->broker,
                .has_data = ev->has_data, .data = {ev->data, ev->len}, .offset = off, .history = s.epoch};
        peer_deliver_op(t->env->peers, p, &d);
    }
}

static void events_apply(void *self, node_req *req, const op *o)
{
    events *t = self;
    switch (o->kind) {
    case OP_EVENT_INTEREST: subs_add(t->interest, o->name, req->from, 0); break; /* a retry: no change */
    case OP_EVENT_UNINTEREST: subs_remove(t->interest, o->name, req->from, 0, false); break;
    case OP_EVENT_EMIT: emit(t, req, o); break;
    case OP_STREAM_SUBSCRIBE: stream_subscribe(t, req, o); break;
    }
}

static void events_timers(void *self, int64_t now)
{
    events *t = self;
    if (t->history != NULL)
        history_expire(t->history, now);
}

static size_t events_drop_peer(void *self, peer *p)
{
    events *t = self;
    return subs_remove_holder(t->interest, p);
}

const owner_module events_owner = {
    .name = "events",
    .kinds = (const owner_kind[]){{OP_EVENT_INTEREST, ROUTE_NAME}, {OP_EVENT_UNINTEREST, ROUTE_NAME},
                                  {OP_EVENT_EMIT, ROUTE_NAME}, {OP_STREAM_SUBSCRIBE, ROUTE_NAME}, {0, 0}},
    .create = events_create,
    .destroy = events_destroy,
    .apply = events_apply,
    .held = "event_names",
    .drop_peer = events_drop_peer,
    .timers = events_timers,
};
