/* rpc.c - the broker's side of RPC: provider registrations (remembered per
 * session so a disconnect unprovides them), calls and answers forwarded to the
 * node that owns the RPC name, and the node's messages delivered to sessions.
 * The broker keeps no call state: balancing, rerouting and timeouts are the
 * owning node's (node/rpc.c). */
#include <string.h>

#include "broker.h"
#include "log.h"
#include "mem.h"

#define RACT(x) RPC__ACTION__RPC_##x

static void rpc_reply(session *s, int action, const char *name, const char *cid, int orig,
                      bool error)
{
    RpcMessage m = RPC_MESSAGE__INIT;
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
    session_send_msg(s, TOPIC__TOPIC_RPC, &m.base);
}

static bool valid_name(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    return len > 0 && len <= OP_NAME_MAX;
}

static void provide_one(session *s, const char *name, pending_ack *pa)
{
    size_t len = strlen(name);
    if (dict_get(s->rpcs, name, len) != NULL) {
        rpc_reply(s, RACT(MULTIPLE_PROVIDERS), name, NULL, RACT(PROVIDE), false);
        return;
    }
    op o = {.kind = OP_RPC_PROVIDE, .name = {name, (uint32_t)len}, .session = s->id};
    uint64_t seq;
    int li = links_submit(s->b, &o, &seq);
    if (li < 0) {
        rpc_reply(s, RACT(MESSAGE_DENIED), name, pa->correlation_id, RACT(PROVIDE), true);
        return;
    }
    dict_put(s->rpcs, name, len, (void *)1);
    pa->waits++;
    links_wait(s->b, li, seq, pa); /* acknowledged once the owner has registered it */
}

static void unprovide_one(session *s, const char *name)
{
    size_t len = strlen(name);
    if (dict_del(s->rpcs, name, len) == NULL)
        return;
    op o = {.kind = OP_RPC_UNPROVIDE, .name = {name, (uint32_t)len}, .session = s->id};
    uint64_t seq;
    links_submit(s->b, &o, &seq);
}

static void handle_provide(session *s, const RpcMessage *m)
{
    pending_ack *pa = xcalloc(1, sizeof(*pa));
    pa->session_id = s->id;
    pa->topic = TOPIC__TOPIC_RPC;
    pa->action = RACT(PROVIDE);
    pa->correlation_id = m->correlationid ? xstrdup(m->correlationid) : NULL;
    pa->waits = 1;
    for (size_t i = 0; i < m->n_names; i++) {
        if (valid_name(m->names[i]))
            provide_one(s, m->names[i], pa);
        else
            rpc_reply(s, RACT(INVALID_MESSAGE_DATA), m->names[i], m->correlationid, RACT(PROVIDE), true);
    }
    if (m->n_names == 0 && valid_name(m->name))
        provide_one(s, m->name, pa);
    ack_done(s->b, pa);
}

static void handle_unprovide(session *s, const RpcMessage *m)
{
    for (size_t i = 0; i < m->n_names; i++)
        unprovide_one(s, m->names[i]);
    if (m->n_names == 0 && m->name != NULL) {
        if (dict_get(s->rpcs, m->name, strlen(m->name)) == NULL)
            rpc_reply(s, RACT(NOT_PROVIDED), m->name, NULL, RACT(UNPROVIDE), false);
        else
            unprovide_one(s, m->name);
    }
    send_ack(s, TOPIC__TOPIC_RPC, RACT(UNPROVIDE), m->correlationid);
}

static void forward(session *s, const RpcMessage *m, uint32_t kind)
{
    if (!valid_name(m->name) || m->correlationid == NULL || strlen(m->correlationid) > OP_NAME_MAX) {
        rpc_reply(s, RACT(INVALID_MESSAGE_DATA), m->name, m->correlationid, m->action, true);
        return;
    }
    const eddy_config *cfg = broker_config(s->b);
    op o = {.kind = kind, .name = {m->name, (uint32_t)strlen(m->name)}, .session = s->id,
            .ref = {m->correlationid, (uint32_t)strlen(m->correlationid)},
            .action = (uint32_t)m->action, .has_data = m->data != NULL};
    if (m->data != NULL)
        o.data = (strview){m->data, (uint32_t)strlen(m->data)};
    if (kind == OP_RPC_REQUEST && cfg->rpc_requestor_name && s->user != NULL)
        o.user = (strview){s->user, (uint32_t)strlen(s->user)};
    if (kind == OP_RPC_REQUEST && cfg->rpc_requestor_data && s->server_data != NULL)
        o.meta = (strview){s->server_data, (uint32_t)strlen(s->server_data)};
    uint64_t seq;
    if (links_submit(s->b, &o, &seq) < 0)
        rpc_reply(s, kind == OP_RPC_REQUEST ? RACT(NO_RPC_PROVIDER) : RACT(MESSAGE_DENIED), m->name,
                  m->correlationid, m->action, kind != OP_RPC_REQUEST);
}

int rpc_fail(broker *b, const op *o)
{
    session *s = broker_session(b, o->session);
    if (s == NULL)
        return 0;
    char *name = xstrndup(o->name.ptr, o->name.len);
    char *cid = xstrndup(o->ref.ptr, o->ref.len);
    rpc_reply(s, RACT(NO_RPC_PROVIDER), name, cid, RACT(REQUEST), false); /* as when refused at once */
    xfree(name);
    xfree(cid);
    return 1;
}

void rpc_handle(session *s, const ProtobufCMessage *base)
{
    const RpcMessage *m = (const RpcMessage *)base;
    int action = m->has_action ? m->action : 0;
    switch (action) {
    case RACT(PROVIDE): handle_provide(s, m); break;
    case RACT(UNPROVIDE): handle_unprovide(s, m); break;
    case RACT(REQUEST): forward(s, m, OP_RPC_REQUEST); break;
    case RACT(ACCEPT):
    case RACT(RESPONSE):
    case RACT(REJECT):
    case RACT(REQUEST_ERROR): forward(s, m, OP_RPC_ANSWER); break;
    default:
        reply_unknown_action(s, TOPIC__TOPIC_RPC, action);
    }
}

void rpc_session_closed(session *s)
{
    size_t n;
    char **names = dict_keys(s->rpcs, &n);
    for (size_t i = 0; i < n; i++)
        unprovide_one(s, names[i]); /* the owner moves this provider's unaccepted calls */
    dict_keys_free(names, n);
}

static int resync_name(const void *key, size_t len, void *v, void *arg)
{
    session *s = ((void **)arg)[0];
    int li = *(int *)((void **)arg)[1];
    if (links_owner(s->b, key, len) != li)
        return 0;
    op o = {.kind = OP_RPC_PROVIDE, .name = {key, (uint32_t)len}, .session = s->id};
    uint64_t seq;
    links_submit(s->b, &o, &seq);
    return 0;
}

static void resync_session(session *s, void *arg)
{
    void *ctx[2] = {s, arg};
    dict_foreach(s->rpcs, resync_name, ctx);
}

void rpc_resync(broker *b, int li)
{
    broker_foreach_session(b, resync_session, &li);
}

void rpc_deliver(broker *b, const op *o)
{
    session *s = broker_session(b, o->session);
    if (s == NULL)
        return; /* caller or provider left; the node has moved on */
    char *name = xstrndup(o->name.ptr, o->name.len);
    char *cid = xstrndup(o->ref.ptr, o->ref.len);
    char *data = o->has_data ? xstrndup(o->data.ptr, o->data.len) : NULL;
    char *user = o->user.len ? xstrndup(o->user.ptr, o->user.len) : NULL;
    char *meta = o->meta.len ? xstrndup(o->meta.ptr, o->meta.len) : NULL;
    RpcMessage m = RPC_MESSAGE__INIT;
    m.has_action = 1;
    m.action = (int)o->action;
    m.name = name;
    m.correlationid = cid;
    m.data = data;
    m.requestorname = user;
    m.requestordata = meta;
    if (o->flags & OP_FLAG_ERROR) {
        m.has_iserror = 1;
        m.iserror = 1;
    }
    if (o->orig != 0) {
        m.has_originalaction = 1;
        m.originalaction = (int)o->orig;
    }
    session_send_msg(s, TOPIC__TOPIC_RPC, &m.base);
    xfree(name);
    xfree(cid);
    xfree(data);
    xfree(user);
    xfree(meta);
}
