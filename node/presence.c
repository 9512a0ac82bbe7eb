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
#include "internal.h"
#include "mem.h"

#define PACT(x) PRESENCE__ACTION__PRESENCE_##x

typedef struct presence {
    node_env *env;
    subs *online;   /* user -> peers with a login of the user */
    subs *watchers; /* user -> peers subscribed to the user */
    subs *everyone; /* "" -> peers subscribed to everyone */
} presence;

static const strview all_key = {"", 0};

/* Tells every watcher of user (and every everyone-watcher) once. */
static void announce(presence *t, strview user, uint32_t action)
{
    op ev = {.kind = OP_PRESENCE_EVENT, .name = user, .action = action};
    uint32_t n;
    subs_holder *all = subs_holders(t->everyone, all_key, &n);
    for (uint32_t i = 0; i < n; i++)
        peer_deliver_op(t->env->peers, all[i].ptr, &ev);
    subs_holder *w = subs_holders(t->watchers, user, &n);
    for (uint32_t i = 0; i < n; i++) /* one event per peer: it fans out to both kinds of subscriber */
        if (!subs_holds(t->everyone, all_key, w[i].ptr, 0))
            peer_deliver_op(t->env->peers, w[i].ptr, &ev);
}

static void came_online(void *ctx, strview user, void *data)
{
    announce(ctx, user, PACT(PRESENCE_JOIN));
}

static void went_offline(void *ctx, strview user, void *data)
{
    announce(ctx, user, PACT(PRESENCE_LEAVE)); /* also when the user's broker is gone */
}

static void *presence_create(node_env *env)
{
    presence *t = xcalloc(1, sizeof(*t));
    t->env = env;
    t->online = subs_new(0, (subs_hooks){came_online, went_offline}, t);
    t->watchers = subs_new(0, (subs_hooks){0}, NULL);
    t->everyone = subs_new(0, (subs_hooks){0}, NULL);
    return t;
}

static void presence_destroy(void *self)
{
    presence *t = self;
    subs_free(t->online);
    subs_free(t->watchers);
    subs_free(t->everyone);
    xfree(t);
}

static int add_user(void *arg, strview user, subs_holder *h, uint32_t n, void *data)
{
    json_array_append_new(arg, json_stringn(user.ptr, user.len));
    return 0;
}

/* Answers a query: a JSON array of the users this node knows to be online, or one user's state. */
static void query(presence *t, peer *p, const op *o)
{
    op st = {.kind = OP_PRESENCE_STATE, .session = o->session, .corr = o->corr};
    char *text = NULL;
    if (o->flags & OP_FLAG_ALL) {
        json_t *users = json_array();
        subs_foreach(t->online, add_user, users);
        text = json_dumps(users, JSON_COMPACT);
        json_decref(users);
        st.flags = OP_FLAG_ALL;
        st.has_data = true;
        st.data = sv_of(text);
    } else {
        st.name = o->name;
        st.flags = subs_data(t->online, o->name) != NULL ? OP_FLAG_ONLINE : 0;
    }
    peer_deliver_op(t->env->peers, p, &st);
    free(text); /* jansson allocates with malloc */
}

static void presence_apply(void *self, node_req *req, const op *o)
{
    presence *t = self;
    peer *p = req->from;
    subs *watched = (o->flags & OP_FLAG_ALL) ? t->everyone : t->watchers;
    strview who = (o->flags & OP_FLAG_ALL) ? all_key : o->name;
    switch (o->kind) {
    case OP_PRESENCE_JOIN: subs_add(t->online, o->name, p, 0); break;
    case OP_PRESENCE_LEAVE: subs_remove(t->online, o->name, p, 0, false); break;
    case OP_PRESENCE_INTEREST: subs_add(watched, who, p, 0); break;
    case OP_PRESENCE_UNINTEREST: subs_remove(watched, who, p, 0, false); break;
    case OP_PRESENCE_QUERY: query(t, p, o); break;
    }
}

static size_t presence_drop_peer(void *self, peer *p)
{
    presence *t = self;
    subs_remove_holder(t->everyone, p);
    subs_remove_holder(t->watchers, p);
    return subs_remove_holder(t->online, p); /* the users only p had go offline: LEAVE */
}

const owner_module presence_owner = {
    .name = "presence",
    .kinds = (const owner_kind[]){{OP_PRESENCE_JOIN, ROUTE_NAME_UNLESS_ALL}, {OP_PRESENCE_LEAVE, ROUTE_NAME_UNLESS_ALL},
                                  {OP_PRESENCE_INTEREST, ROUTE_NAME_UNLESS_ALL},
                                  {OP_PRESENCE_UNINTEREST, ROUTE_NAME_UNLESS_ALL},
                                  {OP_PRESENCE_QUERY, ROUTE_NAME_UNLESS_ALL}, {0, 0}},
    .create = presence_create,
    .destroy = presence_destroy,
    .apply = presence_apply,
    .held = "online_users",
    .drop_peer = presence_drop_peer,
};
