/* presence.c - who is online, counted cluster-wide. Each user's state lives at
 * the node owning the user name's shard: the set of peers (brokers) on which
 * the user has at least one logged-in connection. A user is online while that
 * set is not empty; the node announces the transitions (JOIN when the first
 * peer appears, LEAVE when the last goes, also when a broker is lost) to peers
 * that subscribed to that user or to everyone. Subscriptions to everyone and
 * QUERY_ALL reach every node; each answers for the users it owns. */
#include <string.h>

#include <jansson.h>

#include "deepstream.pb-c.h"
#include "mem.h"
#include "node.h"

#define PACT(x) PRESENCE__ACTION__PRESENCE_##x

typedef struct peer_set {
    peer **v;
    uint32_t n, cap;
} peer_set;

struct presence_table {
    node *n;
    dict *online;   /* user -> peer_set (peers with a login of the user) */
    dict *watchers; /* user -> peer_set (peers subscribed to the user) */
    peer_set all;   /* peers subscribed to everyone */
};

static bool set_add(peer_set *s, peer *p)
{
    for (uint32_t i = 0; i < s->n; i++)
        if (s->v[i] == p)
            return false;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4;
        s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = p;
    return true;
}

static bool set_del(peer_set *s, peer *p)
{
    for (uint32_t i = 0; i < s->n; i++)
        if (s->v[i] == p) {
            s->v[i] = s->v[--s->n];
            return true;
        }
    return false;
}

presence_table *presence_new(node *n)
{
    presence_table *t = xcalloc(1, sizeof(*t));
    t->n = n;
    t->online = dict_new();
    t->watchers = dict_new();
    return t;
}

static int free_set(const void *k, size_t l, void *v, void *arg)
{
    peer_set *s = v;
    xfree(s->v);
    xfree(s);
    return 0;
}

void presence_free(presence_table *t)
{
    if (t == NULL)
        return;
    dict_foreach(t->online, free_set, NULL);
    dict_free(t->online);
    dict_foreach(t->watchers, free_set, NULL);
    dict_free(t->watchers);
    xfree(t->all.v);
    xfree(t);
}

static peer_set *set_get(dict *d, const void *name, size_t len, bool create)
{
    peer_set *s = dict_get(d, name, len);
    if (s == NULL && create) {
        s = xcalloc(1, sizeof(*s));
        dict_put(d, name, len, s);
    }
    return s;
}

static void set_drop_if_empty(dict *d, const void *name, size_t len, peer_set *s)
{
    if (s != NULL && s->n == 0) {
        dict_del(d, name, len);
        xfree(s->v);
        xfree(s);
    }
}

/* Tells every watcher of user (and every all-watcher) once. */
static void announce(presence_table *t, const char *user, size_t len, uint32_t action)
{
    op ev = {.kind = OP_PRESENCE_EVENT, .name = {user, (uint32_t)len}, .action = action};
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    op_encode(&buf, &ev);
    peer_set *w = dict_get(t->watchers, user, len);
    for (uint32_t i = 0; i < t->all.n; i++)
        node_deliver_encoded(t->n, t->all.v[i], buf.data, buf.size);
    for (uint32_t i = 0; w && i < w->n; i++) {
        bool also_all = false;
        for (uint32_t j = 0; j < t->all.n && !also_all; j++)
            also_all = t->all.v[j] == w->v[i];
        if (!also_all) /* one event per peer: it fans out to both kinds of subscriber */
            node_deliver_encoded(t->n, w->v[i], buf.data, buf.size);
    }
    msgpack_sbuffer_destroy(&buf);
}

static void query_all(presence_table *t, peer *p, const op *o);

void presence_apply(presence_table *t, node_req *req, const op *o)
{
    peer *p = req->from;
    const char *name = o->name.ptr;
    size_t len = o->name.len;
    bool all = (o->flags & OP_FLAG_ALL) != 0;
    switch (o->kind) {
    case OP_PRESENCE_JOIN: {
        peer_set *s = set_get(t->online, name, len, true);
        if (set_add(s, p) && s->n == 1)
            announce(t, name, len, PACT(PRESENCE_JOIN));
        break;
    }
    case OP_PRESENCE_LEAVE: {
        peer_set *s = set_get(t->online, name, len, false);
        if (s != NULL && set_del(s, p) && s->n == 0) {
            set_drop_if_empty(t->online, name, len, s);
            announce(t, name, len, PACT(PRESENCE_LEAVE));
        }
        break;
    }
    case OP_PRESENCE_INTEREST:
        if (all)
            set_add(&t->all, p);
        else
            set_add(set_get(t->watchers, name, len, true), p);
        break;
    case OP_PRESENCE_UNINTEREST:
        if (all)
            set_del(&t->all, p);
        else {
            peer_set *s = set_get(t->watchers, name, len, false);
            if (s != NULL) {
                set_del(s, p);
                set_drop_if_empty(t->watchers, name, len, s);
            }
        }
        break;
    case OP_PRESENCE_QUERY:
        if (all)
            query_all(t, p, o);
        else {
            op st = {.kind = OP_PRESENCE_STATE, .name = o->name, .session = o->session,
                     .corr = o->corr,
                     .flags = dict_get(t->online, name, len) != NULL ? OP_FLAG_ONLINE : 0};
            msgpack_sbuffer buf;
            msgpack_sbuffer_init(&buf);
            op_encode(&buf, &st);
            node_deliver_encoded(t->n, p, buf.data, buf.size);
            msgpack_sbuffer_destroy(&buf);
        }
        break;
    }
}

static int add_user(const void *k, size_t l, void *v, void *arg)
{
    json_array_append_new(arg, json_stringn(k, l));
    return 0;
}

/* Answers with a JSON array of the users this node knows to be online. */
static void query_all(presence_table *t, peer *p, const op *o)
{
    json_t *users = json_array();
    dict_foreach(t->online, add_user, users);
    char *text = json_dumps(users, JSON_COMPACT);
    json_decref(users);
    op st = {.kind = OP_PRESENCE_STATE, .session = o->session, .corr = o->corr, .flags = OP_FLAG_ALL,
             .has_data = true, .data = {text, (uint32_t)strlen(text)}};
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    op_encode(&buf, &st);
    node_deliver_encoded(t->n, p, buf.data, buf.size);
    msgpack_sbuffer_destroy(&buf);
    free(text);
}

struct drop_ctx {
    presence_table *t;
    peer *p;
    char **gone;
    size_t n, cap;
};

static int drop_online(const void *k, size_t l, void *v, void *arg)
{
    struct drop_ctx *c = arg;
    peer_set *s = v;
    if (set_del(s, c->p) && s->n == 0) {
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 16;
            c->gone = xrealloc(c->gone, c->cap * sizeof(char *));
        }
        c->gone[c->n++] = xstrndup(k, l);
    }
    return 0;
}

static int drop_watcher(const void *k, size_t l, void *v, void *arg)
{
    set_del(v, arg);
    return 0;
}

void presence_drop_peer(presence_table *t, peer *p)
{
    set_del(&t->all, p);
    dict_foreach(t->watchers, drop_watcher, p);
    struct drop_ctx c = {.t = t, .p = p};
    dict_foreach(t->online, drop_online, &c);
    for (size_t i = 0; i < c.n; i++) {
        size_t len = strlen(c.gone[i]);
        set_drop_if_empty(t->online, c.gone[i], len, dict_get(t->online, c.gone[i], len));
        announce(t, c.gone[i], len, PACT(PRESENCE_LEAVE)); /* the user's broker is gone */
        xfree(c.gone[i]);
    }
    xfree(c.gone);
}
