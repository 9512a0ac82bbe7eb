/* events.c - the node's event registry: which peers (brokers, backends) have
 * subscribers for which event names, and the fan-out of an emit to exactly those
 * peers. The delivery is encoded once and the same bytes are appended to each
 * interested peer's batch. Listening arrives in a later change. */
#include <string.h>

#include "deepstream.pb-c.h"
#include "mem.h"
#include "node.h"

/* The peers interested in one name: a small unordered array. */
typedef struct interest {
    uint32_t count, cap;
    peer **peers;
} interest;

struct event_table {
    node *n;
    dict *names; /* name -> interest */
    msgpack_sbuffer scratch;
};

event_table *events_new(node *n)
{
    event_table *t = xcalloc(1, sizeof(*t));
    t->n = n;
    t->names = dict_new();
    msgpack_sbuffer_init(&t->scratch);
    return t;
}

static int free_interest(const void *k, size_t l, void *v, void *arg)
{
    interest *in = v;
    xfree(in->peers);
    xfree(in);
    return 0;
}

void events_free(event_table *t)
{
    if (t == NULL)
        return;
    dict_foreach(t->names, free_interest, NULL);
    dict_free(t->names);
    msgpack_sbuffer_destroy(&t->scratch);
    xfree(t);
}

struct each_ctx {
    void (*fn)(void *arg, const char *name, size_t len);
    void *arg;
};

static int each_name(const void *k, size_t l, void *v, void *arg)
{
    struct each_ctx *c = arg;
    c->fn(c->arg, k, l);
    return 0;
}

void events_foreach_name(event_table *t, void (*fn)(void *arg, const char *name, size_t len), void *arg)
{
    struct each_ctx c = {fn, arg};
    dict_foreach(t->names, each_name, &c);
}

size_t events_name_count(const event_table *t)
{
    return dict_size(t->names);
}

void events_interest(event_table *t, peer *p, strview name)
{
    if (dict_get(p->event_names, name.ptr, name.len) != NULL)
        return; /* duplicate (a retried request): already registered */
    interest *in = dict_get(t->names, name.ptr, name.len);
    bool first = in == NULL;
    if (first) {
        in = xcalloc(1, sizeof(*in));
        dict_put(t->names, name.ptr, name.len, in);
    }
    if (in->count == in->cap) {
        in->cap = in->cap ? in->cap * 2 : 2;
        in->peers = xrealloc(in->peers, in->cap * sizeof(*in->peers));
    }
    in->peers[in->count++] = p;
    dict_put(p->event_names, name.ptr, name.len, (void *)1);
    if (first)
        listen_interest(node_listen(t->n), TOPIC__TOPIC_EVENT, name.ptr, name.len, true);
}

/* Removes p from the interest set of name (does not touch p->event_names). */
static void remove_peer(event_table *t, peer *p, const void *name, size_t len)
{
    interest *in = dict_get(t->names, name, len);
    if (in == NULL)
        return;
    for (uint32_t i = 0; i < in->count; i++)
        if (in->peers[i] == p) {
            in->peers[i] = in->peers[--in->count];
            break;
        }
    if (in->count == 0) {
        dict_del(t->names, name, len);
        xfree(in->peers);
        xfree(in);
        listen_interest(node_listen(t->n), TOPIC__TOPIC_EVENT, name, len, false);
    }
}

void events_uninterest(event_table *t, peer *p, strview name)
{
    if (dict_del(p->event_names, name.ptr, name.len) == NULL)
        return;
    remove_peer(t, p, name.ptr, name.len);
}

void events_emit(event_table *t, node_req *req, const op *o)
{
    interest *in = dict_get(t->names, o->name.ptr, o->name.len);
    if (in == NULL)
        return;
    op d = {.kind = OP_EVENT_DELIVERY, .name = o->name, .session = o->session,
            .broker = req->from->id, .has_data = o->has_data, .data = o->data};
    t->scratch.size = 0;
    op_encode(&t->scratch, &d);
    for (uint32_t i = 0; i < in->count; i++)
        node_deliver_encoded(req->n, in->peers[i], t->scratch.data, t->scratch.size);
}

struct drop_ctx {
    event_table *t;
    peer *p;
};

static int drop_one(const void *key, size_t len, void *v, void *arg)
{
    struct drop_ctx *c = arg;
    remove_peer(c->t, c->p, key, len);
    return 0;
}

size_t events_drop_peer(event_table *t, peer *p)
{
    size_t n = dict_size(p->event_names);
    struct drop_ctx c = {t, p};
    dict_foreach(p->event_names, drop_one, &c);
    dict_free(p->event_names);
    p->event_names = dict_new();
    return n;
}
