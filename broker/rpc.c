/* rpc.c - the RPC topic on the broker: provider registrations (remembered per
 * session so a disconnect unprovides them and a node that comes back hears
 * them again), calls and answers forwarded to the node that owns the RPC
 * name, and the node's messages delivered to sessions. The broker keeps no
 * call state: balancing, rerouting and timeouts are the owning node's
 * (node/rpc.c). */
#include <string.h>

#include "internal.h"
#include "mem.h"
#include "subs.h"

#define RACT(x) RPC__ACTION__RPC_##x

typedef struct rpc {
    const edge *e;
    subs *provided; /* RPC name -> sessions providing it */
} rpc;

static void rpc_error(session *s, int action, const char *name, const char *cid, int orig, bool error)
{
    reply_send(s, TOPIC__TOPIC_RPC,
               &(client_reply){.action = action, .name = name, .correlation_id = cid, .orig = orig, .is_error = error});
}

static bool valid_name(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    return len > 0 && len <= OP_NAME_MAX;
}

static void *rpc_create(const edge *e)
{
    rpc *r = xcalloc(1, sizeof(*r));
    r->e = e;
    r->provided = subs_new(0, (subs_hooks){0}, NULL);
    return r;
}

static void rpc_destroy(void *self)
{
    rpc *r = self;
    subs_free(r->provided);
    xfree(r);
}

/* Returns false when the name was denied (its MESSAGE_DENIED is sent). */
static bool provide_one(rpc *r, session *s, const char *name, ack *k, const char *cid)
{
    if (subs_holds(r->provided, sv_of(name), s, 0)) {
        rpc_error(s, RACT(MULTIPLE_PROVIDERS), name, NULL, RACT(PROVIDE), false);
        return true;
    }
    enum permit_answer a = permit_check(r->e->permit, s, PERM_RPC, PERM_PROVIDE, name, NULL);
    if (a != PERMIT_ALLOW) {
        rpc_error(s, permit_refusal(TOPIC__TOPIC_RPC, a), name, cid, RACT(PROVIDE), true);
        return false;
    }
    if (!limits_subscribe(r->e->limits, s, TOPIC__TOPIC_RPC, subs_held(r->provided, s))) {
        rpc_error(s, RACT(MESSAGE_DENIED), name, cid, RACT(PROVIDE), true);
        return false;
    }
    op o = {.kind = OP_RPC_PROVIDE, .name = sv_of(name), .session = s->id};
    uint64_t seq;
    int li = links_submit(r->e->links, &o, &seq);
    if (li < 0) {
        rpc_error(s, RACT(MESSAGE_DENIED), name, cid, RACT(PROVIDE), true);
        return true;
    }
    subs_add(r->provided, sv_of(name), s, 0);
    ack_wait(r->e->acks, k, li, seq); /* acknowledged once the owner has registered it */
    return true;
}

static void unprovide_one(rpc *r, session *s, strview name)
{
    if (!subs_remove(r->provided, name, s, 0, false))
        return;
    links_submit(r->e->links, &(op){.kind = OP_RPC_UNPROVIDE, .name = name, .session = s->id}, NULL);
}

static void handle_provide(rpc *r, session *s, const RpcMessage *m)
{
    ack *k = ack_new(r->e->acks, s, TOPIC__TOPIC_RPC, RACT(PROVIDE), m->correlationid);
    size_t denied = 0, asked = m->n_names;
    for (size_t i = 0; i < m->n_names; i++) {
        if (valid_name(m->names[i]))
            denied += !provide_one(r, s, m->names[i], k, m->correlationid);
        else
            rpc_error(s, RACT(INVALID_MESSAGE_DATA), m->names[i], m->correlationid, RACT(PROVIDE), true);
    }
    if (m->n_names == 0 && valid_name(m->name)) {
        asked = 1;
        denied += !provide_one(r, s, m->name, k, m->correlationid);
    }
    if (asked > 0 && denied == asked) /* as deepstream: every name denied, no acknowledgement */
        ack_discard(r->e->acks, k);
    else
        ack_release(r->e->acks, k);
}

static void handle_unprovide(rpc *r, session *s, const RpcMessage *m)
{
    for (size_t i = 0; i < m->n_names; i++)
        unprovide_one(r, s, sv_of(m->names[i]));
    if (m->n_names == 0 && m->name != NULL) {
        if (!subs_holds(r->provided, sv_of(m->name), s, 0))
            rpc_error(s, RACT(NOT_PROVIDED), m->name, NULL, RACT(UNPROVIDE), false);
        else
            unprovide_one(r, s, sv_of(m->name));
    }
    reply_send(s, TOPIC__TOPIC_RPC,
               &(client_reply){.action = RACT(UNPROVIDE), .correlation_id = m->correlationid, .is_ack = true});
}

static void forward(rpc *r, session *s, const RpcMessage *m, uint32_t kind)
{
    if (!valid_name(m->name) || m->correlationid == NULL || m->correlationid[0] == '\0' ||
        strlen(m->correlationid) > OP_NAME_MAX) {
        rpc_error(s, RACT(INVALID_MESSAGE_DATA), m->name, m->correlationid, m->action, true);
        return;
    }
    enum permit_answer a = kind == OP_RPC_REQUEST ? permit_check(r->e->permit, s, PERM_RPC, PERM_REQUEST, m->name, m->data)
                                                  : PERMIT_ALLOW;
    if (a != PERMIT_ALLOW) {
        rpc_error(s, permit_refusal(TOPIC__TOPIC_RPC, a), m->name, m->correlationid, m->action, true);
        return;
    }
    const eddy_config *cfg = r->e->cfg;
    op o = {.kind = kind, .name = sv_of(m->name), .session = s->id, .ref = sv_of(m->correlationid),
            .action = (uint32_t)m->action, .has_data = m->data != NULL, .data = sv_of(m->data)};
    if (kind == OP_RPC_REQUEST && cfg->rpc_requestor_name)
        o.user = sv_of(s->user);
    if (kind == OP_RPC_REQUEST && cfg->rpc_requestor_data)
        o.meta = sv_of(s->server_data);
    if (links_submit(r->e->links, &o, NULL) < 0)
        rpc_error(s, kind == OP_RPC_REQUEST ? RACT(NO_RPC_PROVIDER) : RACT(MESSAGE_DENIED), m->name,
                  m->correlationid, m->action, kind != OP_RPC_REQUEST);
}

static void rpc_handle(void *self, session *s, const ProtobufCMessage *base, int action)
{
    rpc *r = self;
    const RpcMessage *m = (const RpcMessage *)base;
    switch (action) {
    case RACT(PROVIDE): handle_provide(r, s, m); break;
    case RACT(UNPROVIDE): handle_unprovide(r, s, m); break;
    case RACT(REQUEST): forward(r, s, m, OP_RPC_REQUEST); break;
    case RACT(ACCEPT):
    case RACT(RESPONSE):
    case RACT(REJECT):
    case RACT(REQUEST_ERROR): forward(r, s, m, OP_RPC_ANSWER); break;
    default:
        reply_unknown_action(s, TOPIC__TOPIC_RPC, action);
    }
}

/* An RPC_REQUEST its node will not answer: the caller gets NO_RPC_PROVIDER,
 * as when refused at once. */
static int rpc_fail(void *self, const op *o)
{
    rpc *r = self;
    session *s = o->kind == OP_RPC_REQUEST ? sessions_get(r->e->sessions, o->session) : NULL;
    if (s == NULL)
        return 0;
    char *name = xstrndup(o->name.ptr, o->name.len);
    char *cid = xstrndup(o->ref.ptr, o->ref.len);
    rpc_error(s, RACT(NO_RPC_PROVIDER), name, cid, RACT(REQUEST), false);
    xfree(name);
    xfree(cid);
    return 1;
}

static void rpc_session_closed(void *self, session *s)
{
    rpc *r = self;
    uint32_t n;
    strview *names = subs_held_names(r->provided, s, &n);
    for (uint32_t i = 0; i < n; i++)
        unprovide_one(r, s, names[i]); /* the owner moves this provider's unaccepted calls */
    subs_names_free(names, n);
}

static void rpc_resync(void *self, int li)
{
    rpc *r = self;
    links_resend(r->e->links, li, r->provided, &(op){.kind = OP_RPC_PROVIDE}, LINKS_PER_HOLDER);
}

static void rpc_deliver(void *self, const op *o)
{
    rpc *r = self;
    session *s = sessions_get(r->e->sessions, o->session);
    if (s == NULL)
        return; /* caller or provider left; the node has moved on */
    char *name = xstrndup(o->name.ptr, o->name.len);
    char *cid = xstrndup(o->ref.ptr, o->ref.len);
    char *data = o->has_data ? xstrndup(o->data.ptr, o->data.len) : NULL;
    char *user = o->user.len ? xstrndup(o->user.ptr, o->user.len) : NULL;
    char *meta = o->meta.len ? xstrndup(o->meta.ptr, o->meta.len) : NULL;
    reply_send(s, TOPIC__TOPIC_RPC,
               &(client_reply){.action = (int)o->action, .name = name, .correlation_id = cid, .data = data,
                        .requestor_name = user, .requestor_data = meta, .is_error = (o->flags & OP_FLAG_ERROR) != 0,
                        .orig = (int)o->orig});
    xfree(name);
    xfree(cid);
    xfree(data);
    xfree(user);
    xfree(meta);
}

const topic_module rpc_module = {
    .name = "rpc",
    .topic = TOPIC__TOPIC_RPC,
    .message = &rpc_message__descriptor,
    .deliveries = (const uint32_t[]){OP_RPC_MESSAGE, 0},
    .requests = (const uint32_t[]){OP_RPC_REQUEST, 0},
    .create = rpc_create,
    .destroy = rpc_destroy,
    .handle = rpc_handle,
    .deliver = rpc_deliver,
    .fail = rpc_fail,
    .session_closed = rpc_session_closed,
    .resync = rpc_resync,
};
