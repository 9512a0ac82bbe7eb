/* presence.c - the broker's side of presence: which local users are logged in
 * (the owning node hears only the first login and the last logout of a user on
 * this broker), which sessions watch whom, queries fanned out to the owning
 * nodes and merged, and the node's JOIN/LEAVE announcements delivered once per
 * watching session, never to the user's own sessions. */
#include <string.h>

#include <jansson.h>

#include "broker.h"
#include "log.h"
#include "mem.h"

#define PACT(x) PRESENCE__ACTION__PRESENCE_##x
#define EVERYONE "%_EVERYONE_%"

typedef struct watchers {
    session **v;
    uint32_t n, cap;
} watchers;

/* A query spanning several nodes or names, answered once all are back. */
typedef struct query {
    uint64_t session_id;
    bool all;
    char *correlation_id;
    uint32_t remaining;
    json_t *result; /* all: array of users; names: object user -> bool */
} query;

struct presence_subs {
    broker *b;
    dict *logins;      /* user -> count of logged-in local sessions (as a pointer-sized int) */
    dict *by_user;     /* user -> watchers */
    watchers everyone; /* sessions watching everyone */
    dict *queries;     /* id -> query */
    uint64_t next_query;
};

presence_subs *presence_subs_new(broker *b)
{
    presence_subs *p = xcalloc(1, sizeof(*p));
    p->b = b;
    p->logins = dict_new();
    p->by_user = dict_new();
    p->queries = dict_new();
    return p;
}

static int free_watchers(const void *k, size_t l, void *v, void *arg)
{
    watchers *w = v;
    xfree(w->v);
    xfree(w);
    return 0;
}

static void free_query(query *q)
{
    json_decref(q->result);
    xfree(q->correlation_id);
    xfree(q);
}

static int free_query_cb(const void *k, size_t l, void *v, void *arg)
{
    free_query(v);
    return 0;
}

void presence_subs_free(presence_subs *p)
{
    if (p == NULL)
        return;
    dict_free(p->logins);
    dict_foreach(p->by_user, free_watchers, NULL);
    dict_free(p->by_user);
    dict_foreach(p->queries, free_query_cb, NULL);
    dict_free(p->queries);
    xfree(p->everyone.v);
    xfree(p);
}

static void w_add(watchers *w, session *s)
{
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 4;
        w->v = xrealloc(w->v, w->cap * sizeof(*w->v));
    }
    w->v[w->n++] = s;
}

static void w_del(watchers *w, session *s)
{
    for (uint32_t i = 0; i < w->n; i++)
        if (w->v[i] == s) {
            w->v[i] = w->v[--w->n];
            return;
        }
}

static void presence_reply(session *s, int action, const char *name, const char *cid, int orig,
                           bool error)
{
    PresenceMessage m = PRESENCE_MESSAGE__INIT;
    m.has_action = 1;
    m.action = action;
    m.name = (char *)name;
    m.correlationid = (char *)cid;
    if (orig >= 0) {
        m.has_originalaction = 1;
        m.originalaction = orig;
    }
    if (error) {
        m.has_iserror = 1;
        m.iserror = 1;
    }
    session_send_msg(s, TOPIC__TOPIC_PRESENCE, &m.base);
}

/* Sends a presence operation about user to its owner, or with ALL to every node;
 * the pending ack (if any) waits for every node involved. */
static void tell_nodes(broker *b, uint32_t kind, const char *user, uint64_t session_id, uint64_t corr,
                       pending_ack *pa)
{
    op o = {.kind = kind, .session = session_id, .corr = corr};
    uint64_t seq;
    if (user == NULL) {
        o.flags = OP_FLAG_ALL;
        for (int li = 0; li < links_count(b); li++) {
            op each = o;
            if (links_submit_to(b, li, &each, &seq) >= 0 && pa != NULL) {
                pa->waits++;
                links_wait(b, li, seq, pa);
            }
        }
        return;
    }
    o.name = (strview){user, (uint32_t)strlen(user)};
    int li = links_submit(b, &o, &seq);
    if (li >= 0 && pa != NULL) {
        pa->waits++;
        links_wait(b, li, seq, pa);
    }
}

void presence_login(session *s)
{
    presence_subs *p = broker_presence(s->b);
    size_t len = strlen(s->user);
    uintptr_t n = (uintptr_t)dict_get(p->logins, s->user, len);
    dict_put(p->logins, s->user, len, (void *)(n + 1));
    if (n == 0)
        tell_nodes(s->b, OP_PRESENCE_JOIN, s->user, 0, 0, NULL);
}

static void unwatch(presence_subs *p, session *s, const char *user, size_t len)
{
    if (dict_del(s->presence, user, len) == NULL)
        return;
    watchers *w = dict_get(p->by_user, user, len);
    if (w == NULL)
        return;
    w_del(w, s);
    if (w->n == 0) {
        dict_del(p->by_user, user, len);
        xfree(w->v);
        xfree(w);
        char *name = xstrndup(user, len);
        tell_nodes(p->b, OP_PRESENCE_UNINTEREST, name, 0, 0, NULL);
        xfree(name);
    }
}

static void unwatch_everyone(presence_subs *p, session *s)
{
    if (!s->presence_all)
        return;
    s->presence_all = false;
    w_del(&p->everyone, s);
    if (p->everyone.n == 0)
        tell_nodes(p->b, OP_PRESENCE_UNINTEREST, NULL, 0, 0, NULL);
}

void presence_session_closed(session *s)
{
    presence_subs *p = broker_presence(s->b);
    unwatch_everyone(p, s);
    size_t n;
    char **names = dict_keys(s->presence, &n);
    for (size_t i = 0; i < n; i++)
        unwatch(p, s, names[i], strlen(names[i]));
    dict_keys_free(names, n);
    if (s->state != SESSION_OPEN || s->user == NULL)
        return;
    size_t len = strlen(s->user);
    uintptr_t count = (uintptr_t)dict_get(p->logins, s->user, len);
    if (count <= 1) {
        dict_del(p->logins, s->user, len);
        tell_nodes(s->b, OP_PRESENCE_LEAVE, s->user, 0, 0, NULL);
    } else
        dict_put(p->logins, s->user, len, (void *)(count - 1));
}

static pending_ack *new_ack(session *s, int action, const char *cid)
{
    pending_ack *pa = xcalloc(1, sizeof(*pa));
    pa->session_id = s->id;
    pa->topic = TOPIC__TOPIC_PRESENCE;
    pa->action = action;
    pa->correlation_id = cid ? xstrdup(cid) : NULL;
    pa->waits = 1;
    return pa;
}

static void subscribe_all(presence_subs *p, session *s)
{
    if (s->presence_all) {
        presence_reply(s, PACT(MULTIPLE_SUBSCRIPTIONS), EVERYONE, NULL, PACT(SUBSCRIBE_ALL), false);
        send_ack(s, TOPIC__TOPIC_PRESENCE, PACT(SUBSCRIBE_ALL), NULL);
        return;
    }
    pending_ack *pa = new_ack(s, PACT(SUBSCRIBE_ALL), NULL);
    s->presence_all = true;
    w_add(&p->everyone, s);
    if (p->everyone.n == 1)
        tell_nodes(p->b, OP_PRESENCE_INTEREST, NULL, 0, 0, pa);
    ack_done(p->b, pa);
}

static void subscribe(presence_subs *p, session *s, const PresenceMessage *m)
{
    pending_ack *pa = new_ack(s, PACT(SUBSCRIBE), m->correlationid);
    for (size_t i = 0; i < m->n_names; i++) {
        const char *user = m->names[i];
        size_t len = strlen(user);
        if (len == 0 || len > OP_NAME_MAX) {
            presence_reply(s, PACT(INVALID_PRESENCE_USERS), user, m->correlationid, PACT(SUBSCRIBE), true);
            continue;
        }
        if (dict_get(s->presence, user, len) != NULL) {
            presence_reply(s, PACT(MULTIPLE_SUBSCRIPTIONS), user, NULL, PACT(SUBSCRIBE), false);
            continue;
        }
        watchers *w = dict_get(p->by_user, user, len);
        if (w == NULL) {
            w = xcalloc(1, sizeof(*w));
            dict_put(p->by_user, user, len, w);
            tell_nodes(p->b, OP_PRESENCE_INTEREST, user, 0, 0, pa);
        }
        w_add(w, s);
        dict_put(s->presence, user, len, (void *)1);
    }
    ack_done(p->b, pa);
}

static void query_start(presence_subs *p, session *s, const PresenceMessage *m, bool all)
{
    uint64_t id = ++p->next_query;
    query *q = xcalloc(1, sizeof(*q));
    q->session_id = s->id;
    q->all = all;
    q->correlation_id = m->correlationid ? xstrdup(m->correlationid) : NULL;
    q->result = all ? json_array() : json_object();
    dict_put(p->queries, &id, sizeof(id), q);
    if (all) {
        q->remaining = (uint32_t)links_count(p->b);
        tell_nodes(p->b, OP_PRESENCE_QUERY, NULL, s->id, id, NULL);
        return;
    }
    q->remaining = 1; /* held until every name is sent */
    for (size_t i = 0; i < m->n_names; i++) {
        size_t len = strlen(m->names[i]);
        if (len == 0 || len > OP_NAME_MAX)
            continue;
        json_object_set_new(q->result, m->names[i], json_false());
        q->remaining++;
        tell_nodes(p->b, OP_PRESENCE_QUERY, m->names[i], s->id, id, NULL);
    }
    op done = {.kind = OP_PRESENCE_STATE, .session = s->id, .corr = id};
    presence_deliver(p->b, &done); /* releases the hold */
}

static void query_finish(presence_subs *p, query *q)
{
    session *s = broker_session(p->b, q->session_id);
    if (s == NULL)
        return;
    PresenceMessage m = PRESENCE_MESSAGE__INIT;
    m.has_action = 1;
    char *text = NULL;
    char **names = NULL;
    if (q->all) {
        m.action = PACT(QUERY_ALL_RESPONSE);
        size_t n = json_array_size(q->result);
        names = xcalloc(n ? n : 1, sizeof(char *));
        for (size_t i = 0; i < n; i++) {
            const char *u = json_string_value(json_array_get(q->result, i));
            if (u != NULL && strcmp(u, s->user ? s->user : "") != 0) /* not the requester */
                names[m.n_names++] = (char *)u;
        }
        m.names = names;
    } else {
        m.action = PACT(QUERY_RESPONSE);
        m.correlationid = q->correlation_id;
        text = json_dumps(q->result, JSON_COMPACT);
        m.data = text;
    }
    session_send_msg(s, TOPIC__TOPIC_PRESENCE, &m.base);
    xfree(names);
    free(text);
}

void presence_handle(session *s, const ProtobufCMessage *base)
{
    const PresenceMessage *m = (const PresenceMessage *)base;
    presence_subs *p = broker_presence(s->b);
    int action = m->has_action ? m->action : 0;
    switch (action) {
    case PACT(SUBSCRIBE_ALL): subscribe_all(p, s); break;
    case PACT(UNSUBSCRIBE_ALL):
        unwatch_everyone(p, s);
        send_ack(s, TOPIC__TOPIC_PRESENCE, PACT(UNSUBSCRIBE_ALL), NULL);
        break;
    case PACT(SUBSCRIBE): subscribe(p, s, m); break;
    case PACT(UNSUBSCRIBE):
        for (size_t i = 0; i < m->n_names; i++)
            unwatch(p, s, m->names[i], strlen(m->names[i]));
        send_ack(s, TOPIC__TOPIC_PRESENCE, PACT(UNSUBSCRIBE), m->correlationid);
        break;
    case PACT(QUERY_ALL): query_start(p, s, m, true); break;
    case PACT(QUERY): query_start(p, s, m, false); break;
    default:
        reply_unknown_action(s, TOPIC__TOPIC_PRESENCE, action);
    }
}

static void on_state(presence_subs *p, const op *o)
{
    query *q = dict_get(p->queries, &o->corr, sizeof(o->corr));
    if (q == NULL)
        return;
    if (o->flags & OP_FLAG_ALL) {
        json_t *users = o->has_data ? json_loadb(o->data.ptr, o->data.len, 0, NULL) : NULL;
        size_t i;
        json_t *u;
        json_array_foreach(users, i, u) json_array_append(q->result, u);
        json_decref(users);
    } else if (o->name.len > 0) {
        char *user = xstrndup(o->name.ptr, o->name.len);
        json_object_set_new(q->result, user, json_boolean(o->flags & OP_FLAG_ONLINE));
        xfree(user);
    }
    if (--q->remaining > 0)
        return;
    dict_del(p->queries, &o->corr, sizeof(o->corr));
    query_finish(p, q);
    free_query(q);
}

/* A user joined or left: JOIN_ALL/LEAVE_ALL to everyone-watchers, JOIN/LEAVE to
 * the user's watchers; never to the user's own sessions. Each frame encoded once. */
static void on_event(presence_subs *p, const op *o)
{
    char *user = xstrndup(o->name.ptr, o->name.len);
    bool join = o->action == PACT(PRESENCE_JOIN);
    PresenceMessage m = PRESENCE_MESSAGE__INIT;
    m.has_action = 1;
    m.name = user;
    m.action = join ? PACT(PRESENCE_JOIN_ALL) : PACT(PRESENCE_LEAVE_ALL);
    frame *all = frame_encode(TOPIC__TOPIC_PRESENCE, &m.base);
    m.action = join ? PACT(PRESENCE_JOIN) : PACT(PRESENCE_LEAVE);
    frame *one = frame_encode(TOPIC__TOPIC_PRESENCE, &m.base);
    for (uint32_t i = 0; i < p->everyone.n; i++) {
        session *s = p->everyone.v[i];
        if (s->user == NULL || strcmp(s->user, user) != 0)
            session_send(s, all);
    }
    watchers *w = dict_get(p->by_user, o->name.ptr, o->name.len);
    for (uint32_t i = 0; w && i < w->n; i++) {
        session *s = w->v[i];
        if (s->user == NULL || strcmp(s->user, user) != 0)
            session_send(s, one);
    }
    frame_unref(all);
    frame_unref(one);
    xfree(user);
}

struct resync_ctx {
    broker *b;
    int li;
    uint32_t kind;
};

static int resync_user(const void *key, size_t len, void *v, void *arg)
{
    struct resync_ctx *c = arg;
    if (links_owner(c->b, key, len) != c->li)
        return 0;
    op o = {.kind = c->kind, .name = {key, (uint32_t)len}};
    uint64_t seq;
    links_submit(c->b, &o, &seq);
    return 0;
}

void presence_resync(broker *b, int li)
{
    presence_subs *p = broker_presence(b);
    struct resync_ctx c = {b, li, OP_PRESENCE_JOIN};
    dict_foreach(p->logins, resync_user, &c);
    c.kind = OP_PRESENCE_INTEREST;
    dict_foreach(p->by_user, resync_user, &c);
    if (p->everyone.n > 0) {
        op o = {.kind = OP_PRESENCE_INTEREST, .flags = OP_FLAG_ALL};
        uint64_t seq;
        links_submit_to(b, li, &o, &seq);
    }
}

void presence_deliver(broker *b, const op *o)
{
    presence_subs *p = broker_presence(b);
    if (o->kind == OP_PRESENCE_STATE)
        on_state(p, o);
    else if (o->kind == OP_PRESENCE_EVENT)
        on_event(p, o);
}
