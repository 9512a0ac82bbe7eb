/* presence.c - the presence topic on the broker: which local users are
 * logged in (the owning node hears only the first login and the last logout
 * of a user on this broker), which sessions watch whom, queries fanned out to
 * the owning nodes and merged, and the node's JOIN/LEAVE announcements
 * delivered once per watching session, never to the user's own sessions. */
#include <string.h>

#include <jansson.h>

#include "dict.h"
#include "internal.h"
#include "mem.h"
#include "subs.h"

#define PACT(x) PRESENCE__ACTION__PRESENCE_##x
#define EVERYONE "%_EVERYONE_%"

/* A query spanning several nodes or names, answered once all are back. */
typedef struct query {
    uint64_t session_id;
    bool all;
    char *correlation_id;
    uint32_t remaining;
    json_t *result; /* all: array of users; names: object user -> bool */
} query;

typedef struct presence {
    const edge *e;
    subs *logins;   /* user -> its logged-in local sessions */
    subs *watchers; /* user -> sessions watching the user */
    subs *everyone; /* "" -> sessions watching everyone */
    dict *queries;  /* id -> query */
    uint64_t next_query;
} presence;

static void presence_error(session *s, int action, const char *name, const char *cid, int orig, bool error)
{
    reply_send(s, TOPIC__TOPIC_PRESENCE,
               &(client_reply){.action = action, .name = name, .correlation_id = cid, .orig = orig, .is_error = error});
}

static void ack_now(session *s, int action, const char *cid)
{
    reply_send(s, TOPIC__TOPIC_PRESENCE, &(client_reply){.action = action, .correlation_id = cid, .is_ack = true});
}

/* Sends a presence operation about user to its owner, or (user NULL) to every
 * node with OP_FLAG_ALL; the ack (if any) waits for every node involved. */
static void tell_nodes(presence *p, uint32_t kind, strview user, uint64_t session_id, uint64_t corr, ack *k)
{
    op o = {.kind = kind, .session = session_id, .corr = corr, .name = user};
    uint64_t seq;
    if (user.ptr == NULL) {
        o.flags = OP_FLAG_ALL;
        for (int li = 0; li < links_count(p->e->links); li++) {
            op each = o;
            if (links_submit_to(p->e->links, li, &each, &seq) >= 0 && k != NULL)
                ack_wait(p->e->acks, k, li, seq);
        }
        return;
    }
    int li = links_submit(p->e->links, &o, &seq);
    if (li >= 0 && k != NULL)
        ack_wait(p->e->acks, k, li, seq);
}

static const strview nobody = {NULL, 0};

/* subs hooks: a user's first local login / last logout; the last watcher of a
 * user or of everyone left. */
static void first_login(void *ctx, strview user, void *data)
{
    tell_nodes(ctx, OP_PRESENCE_JOIN, user, 0, 0, NULL);
}

static void last_logout(void *ctx, strview user, void *data)
{
    tell_nodes(ctx, OP_PRESENCE_LEAVE, user, 0, 0, NULL);
}

static void last_watcher(void *ctx, strview user, void *data)
{
    tell_nodes(ctx, OP_PRESENCE_UNINTEREST, user, 0, 0, NULL);
}

static void last_everyone_watcher(void *ctx, strview key, void *data)
{
    tell_nodes(ctx, OP_PRESENCE_UNINTEREST, nobody, 0, 0, NULL);
}

static void *presence_create(const edge *e)
{
    presence *p = xcalloc(1, sizeof(*p));
    p->e = e;
    p->logins = subs_new(0, (subs_hooks){first_login, last_logout}, p);
    p->watchers = subs_new(0, (subs_hooks){.last = last_watcher}, p);
    p->everyone = subs_new(0, (subs_hooks){.last = last_everyone_watcher}, p);
    p->queries = dict_new();
    return p;
}

static void free_query(void *v)
{
    query *q = v;
    json_decref(q->result);
    xfree(q->correlation_id);
    xfree(q);
}

static void presence_destroy(void *self)
{
    presence *p = self;
    subs_free(p->logins);
    subs_free(p->watchers);
    subs_free(p->everyone);
    dict_free_with(p->queries, free_query);
    xfree(p);
}

static void presence_login(void *self, session *s)
{
    presence *p = self;
    subs_add(p->logins, sv_of(s->user), s, 0);
}

static void presence_session_closed(void *self, session *s)
{
    presence *p = self;
    subs_remove_holder(p->everyone, s);
    subs_remove_holder(p->watchers, s);
    subs_remove_holder(p->logins, s);
}

static const strview all_key = {"", 0};

/* presence `allow` for user (NULL: everyone, deepstream's name-less check);
 * a denial is answered (MESSAGE_DENIED) and false returned. */
static bool allowed(presence *p, session *s, const char *user, const char *cid, int orig)
{
    enum permit_answer a = permit_check(p->e->permit, s, PERM_PRESENCE, PERM_ALLOW, user, NULL);
    if (a == PERMIT_ALLOW)
        return true;
    presence_error(s, permit_refusal(TOPIC__TOPIC_PRESENCE, a), user, cid, orig, true);
    return false;
}

static void subscribe_all(presence *p, session *s)
{
    if (!allowed(p, s, NULL, NULL, PACT(SUBSCRIBE_ALL)))
        return;
    if (subs_holds(p->everyone, all_key, s, 0)) {
        presence_error(s, PACT(MULTIPLE_SUBSCRIPTIONS), EVERYONE, NULL, PACT(SUBSCRIBE_ALL), false);
        ack_now(s, PACT(SUBSCRIBE_ALL), NULL);
        return;
    }
    ack *k = ack_new(p->e->acks, s, TOPIC__TOPIC_PRESENCE, PACT(SUBSCRIBE_ALL), NULL);
    if (subs_count(p->everyone) == 0)
        tell_nodes(p, OP_PRESENCE_INTEREST, nobody, 0, 0, k);
    subs_add(p->everyone, all_key, s, 0);
    ack_release(p->e->acks, k);
}

static void subscribe(presence *p, session *s, const PresenceMessage *m)
{
    ack *k = ack_new(p->e->acks, s, TOPIC__TOPIC_PRESENCE, PACT(SUBSCRIBE), m->correlationid);
    size_t denied = 0;
    for (size_t i = 0; i < m->n_names; i++) {
        strview user = sv_of(m->names[i]);
        if (user.len == 0 || user.len > OP_NAME_MAX) {
            presence_error(s, PACT(INVALID_PRESENCE_USERS), m->names[i], m->correlationid, PACT(SUBSCRIBE), true);
            continue;
        }
        if (!allowed(p, s, m->names[i], m->correlationid, PACT(SUBSCRIBE))) {
            denied++;
            continue;
        }
        if (subs_holds(p->watchers, user, s, 0)) {
            presence_error(s, PACT(MULTIPLE_SUBSCRIPTIONS), m->names[i], NULL, PACT(SUBSCRIBE), false);
            continue;
        }
        if (!limits_subscribe(p->e->limits, s, TOPIC__TOPIC_PRESENCE, subs_held(p->watchers, s))) {
            presence_error(s, PACT(MESSAGE_DENIED), m->names[i], m->correlationid, PACT(SUBSCRIBE), true);
            denied++;
            continue;
        }
        if (subs_data(p->watchers, user) == NULL)
            tell_nodes(p, OP_PRESENCE_INTEREST, user, 0, 0, k);
        subs_add(p->watchers, user, s, 0);
    }
    if (m->n_names > 0 && denied == m->n_names) /* as deepstream: every name denied, no acknowledgement */
        ack_discard(p->e->acks, k);
    else
        ack_release(p->e->acks, k);
}

static void on_state(presence *p, const op *o);

static void query_start(presence *p, session *s, const PresenceMessage *m, bool all)
{
    if (all && !allowed(p, s, NULL, NULL, PACT(QUERY_ALL)))
        return;
    size_t denied = 0;
    for (size_t i = 0; !all && i < m->n_names; i++)
        if (sv_of(m->names[i]).len > 0 && sv_of(m->names[i]).len <= OP_NAME_MAX &&
            permit_check(p->e->permit, s, PERM_PRESENCE, PERM_ALLOW, m->names[i], NULL) != PERMIT_ALLOW)
            denied++;
    if (denied > 0 && denied == m->n_names) { /* as deepstream: no answer beyond the denials */
        for (size_t i = 0; i < m->n_names; i++)
            presence_error(s, PACT(MESSAGE_DENIED), m->names[i], m->correlationid, PACT(QUERY), true);
        return;
    }
    uint64_t id = ++p->next_query;
    query *q = xcalloc(1, sizeof(*q));
    q->session_id = s->id;
    q->all = all;
    q->correlation_id = m->correlationid ? xstrdup(m->correlationid) : NULL;
    q->result = all ? json_array() : json_object();
    dict_put(p->queries, &id, sizeof(id), q);
    if (all) {
        q->remaining = (uint32_t)links_count(p->e->links);
        tell_nodes(p, OP_PRESENCE_QUERY, nobody, s->id, id, NULL);
        return;
    }
    q->remaining = 1; /* held until every name is sent */
    for (size_t i = 0; i < m->n_names; i++) {
        strview user = sv_of(m->names[i]);
        if (user.len == 0 || user.len > OP_NAME_MAX)
            continue;
        if (denied > 0 && !allowed(p, s, m->names[i], m->correlationid, PACT(QUERY)))
            continue;
        json_object_set_new(q->result, m->names[i], json_false());
        q->remaining++;
        tell_nodes(p, OP_PRESENCE_QUERY, user, s->id, id, NULL);
    }
    op done = {.kind = OP_PRESENCE_STATE, .session = s->id, .corr = id};
    on_state(p, &done); /* releases the hold */
}

static void query_finish(presence *p, query *q)
{
    session *s = sessions_get(p->e->sessions, q->session_id);
    if (s == NULL)
        return;
    if (!q->all) {
        char *text = json_dumps(q->result, JSON_COMPACT);
        reply_send(s, TOPIC__TOPIC_PRESENCE,
                   &(client_reply){.action = PACT(QUERY_RESPONSE), .correlation_id = q->correlation_id, .data = text});
        free(text); /* jansson allocates with malloc */
        return;
    }
    size_t n = json_array_size(q->result), kept = 0;
    char **names = xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        const char *u = json_string_value(json_array_get(q->result, i));
        if (u != NULL && strcmp(u, s->user ? s->user : "") != 0) /* not the requester */
            names[kept++] = (char *)u;
    }
    reply_send(s, TOPIC__TOPIC_PRESENCE,
               &(client_reply){.action = PACT(QUERY_ALL_RESPONSE), .names = names, .n_names = kept});
    xfree(names);
}

static void presence_handle(void *self, session *s, const ProtobufCMessage *base, int action)
{
    presence *p = self;
    const PresenceMessage *m = (const PresenceMessage *)base;
    switch (action) {
    case PACT(SUBSCRIBE_ALL): subscribe_all(p, s); break;
    case PACT(UNSUBSCRIBE_ALL):
        subs_remove(p->everyone, all_key, s, 0, false);
        ack_now(s, PACT(UNSUBSCRIBE_ALL), NULL);
        break;
    case PACT(SUBSCRIBE): subscribe(p, s, m); break;
    case PACT(UNSUBSCRIBE):
        for (size_t i = 0; i < m->n_names; i++)
            subs_remove(p->watchers, sv_of(m->names[i]), s, 0, false);
        ack_now(s, PACT(UNSUBSCRIBE), m->correlationid);
        break;
    case PACT(QUERY_ALL): query_start(p, s, m, true); break;
    case PACT(QUERY): query_start(p, s, m, false); break;
    default:
        reply_unknown_action(s, TOPIC__TOPIC_PRESENCE, action);
    }
}

static void on_state(presence *p, const op *o)
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

/* Sends f to every holder that is not one of user's own sessions. */
static void send_except_user(subs_holder *h, uint32_t n, frame *f, const char *user)
{
    for (uint32_t i = 0; i < n; i++) {
        session *s = h[i].ptr;
        if (s->user == NULL || strcmp(s->user, user) != 0)
            session_send(s, f);
    }
}

/* A user joined or left: JOIN_ALL/LEAVE_ALL to everyone-watchers, JOIN/LEAVE to
 * the user's watchers; never to the user's own sessions. Each frame encoded once. */
static void on_event(presence *p, const op *o)
{
    char *user = xstrndup(o->name.ptr, o->name.len);
    bool join = o->action == PACT(PRESENCE_JOIN);
    int to_all = join ? PACT(PRESENCE_JOIN_ALL) : PACT(PRESENCE_LEAVE_ALL);
    int to_one = join ? PACT(PRESENCE_JOIN) : PACT(PRESENCE_LEAVE);
    frame *all = reply_frame(TOPIC__TOPIC_PRESENCE, &(client_reply){.action = to_all, .name = user});
    frame *one = reply_frame(TOPIC__TOPIC_PRESENCE, &(client_reply){.action = to_one, .name = user});
    uint32_t n;
    subs_holder *h = subs_holders(p->everyone, all_key, &n);
    send_except_user(h, n, all, user);
    h = subs_holders(p->watchers, o->name, &n);
    send_except_user(h, n, one, user);
    frame_unref(all);
    frame_unref(one);
    xfree(user);
}

static void presence_deliver(void *self, const op *o)
{
    if (o->kind == OP_PRESENCE_STATE)
        on_state(self, o);
    else
        on_event(self, o);
}

/* A query a node will not answer completes without that node's part. */
static int presence_fail(void *self, const op *o)
{
    op none = {.kind = OP_PRESENCE_STATE, .session = o->session, .corr = o->corr,
               .flags = o->flags & OP_FLAG_ALL, .name = o->name};
    on_state(self, &none);
    return 1;
}

static void presence_resync(void *self, int li)
{
    presence *p = self;
    links_resend(p->e->links, li, p->logins, &(op){.kind = OP_PRESENCE_JOIN}, 0);
    links_resend(p->e->links, li, p->watchers, &(op){.kind = OP_PRESENCE_INTEREST}, 0);
    if (subs_count(p->everyone) > 0 && !links_moving(p->e->links)) /* every node holds it: a move changes nothing */
        links_submit_to(p->e->links, li, &(op){.kind = OP_PRESENCE_INTEREST, .flags = OP_FLAG_ALL}, NULL);
}

const topic_module presence_module = {
    .name = "presence",
    .topic = TOPIC__TOPIC_PRESENCE,
    .message = &presence_message__descriptor,
    .deliveries = (const uint32_t[]){OP_PRESENCE_STATE, OP_PRESENCE_EVENT, 0},
    .requests = (const uint32_t[]){OP_PRESENCE_QUERY, 0},
    .create = presence_create,
    .destroy = presence_destroy,
    .handle = presence_handle,
    .deliver = presence_deliver,
    .fail = presence_fail,
    .login = presence_login,
    .session_closed = presence_session_closed,
    .resync = presence_resync,
};
