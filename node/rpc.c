/* rpc.c - the RPC topic on the owning node: which sessions (on which peers)
 * provide each RPC, and every call in flight.
 *
 * A call gets a node-unique id, which is the correlation id its provider sees;
 * the provider's answers come back with it and are mapped to the caller's own
 * correlation id. The node picks a provider not yet tried for the call (round
 * robin, or least in flight), runs both timeouts (the client has none), moves a
 * call on REJECT or when its provider goes away before accepting, and ends an
 * accepted call with an error when its provider goes away. Late or duplicate
 * answers change nothing; the provider is told INVALID_RPC_CORRELATION_ID or
 * MULTIPLE_ACCEPT as deepstream does. */
#include <stdio.h>
#include <string.h>

#include "deepstream.pb-c.h"
#include "dict.h"
#include "internal.h"
#include "log.h"
#include "mem.h"
#include "util.h"
#include "vec.h"

#define RACT(x) RPC__ACTION__RPC_##x

/* A provider is a holder of its RPC name in `providers`: (peer, session), its
 * count the calls it has in flight. Each name keeps a round-robin position. */
typedef struct rotation {
    uint32_t next;
} rotation;

typedef struct attempt {
    uint64_t peer_id, session;
} attempt;

typedef struct call {
    char id[40];
    char *name;
    uint32_t name_len;
    peer *caller;
    uint64_t caller_session;
    char *cid;     /* the caller's correlation id */
    char *data;    /* request payload, NULL when none */
    char *user, *meta;
    VEC(attempt) tried;
    peer *cur;     /* current provider, NULL between attempts */
    uint64_t cur_session;
    bool accepted;
    int64_t deadline_ms;
} call;

typedef VEC(call *) call_vec;

typedef struct rpc_table {
    node_env *env;
    subs *providers; /* RPC name -> providing (peer, session) */
    dict *calls;     /* call id -> call */
    uint64_t next_call;
    uint64_t node_tag;
    int64_t next_deadline;
} rpc_table;

static void *rpc_create(node_env *env)
{
    rpc_table *t = xcalloc(1, sizeof(*t));
    t->env = env;
    t->providers = subs_new(sizeof(rotation), (subs_hooks){0}, NULL);
    t->calls = dict_new();
    t->node_tag = random_id() & 0xffffff;
    t->next_deadline = INT64_MAX;
    return t;
}

static void free_call(void *v)
{
    call *c = v;
    xfree(c->name);
    xfree(c->cid);
    xfree(c->data);
    xfree(c->user);
    xfree(c->meta);
    vec_free(&c->tried);
    xfree(c);
}

static void rpc_destroy(void *self)
{
    rpc_table *t = self;
    dict_free_with(t->calls, free_call);
    subs_free(t->providers);
    xfree(t);
}

static strview name_of(const call *c)
{
    return (strview){c->name, c->name_len};
}

/* Sends an RPC message to a session on peer p. */
static void send_msg(rpc_table *t, peer *p, uint64_t session, uint32_t action, strview name, const char *cid,
                     const char *data, bool error, uint32_t orig, const char *user, const char *meta)
{
    op m = {.kind = OP_RPC_MESSAGE, .session = session, .action = action, .name = name, .ref = sv_of(cid),
            .has_data = data != NULL, .data = sv_of(data), .flags = error ? OP_FLAG_ERROR : 0, .orig = orig,
            .user = sv_of(user), .meta = sv_of(meta)};
    peer_deliver_op(t->env->peers, p, &m);
}

static void to_caller(rpc_table *t, call *c, uint32_t action, const char *data)
{
    if (c->caller == NULL)
        return; /* the caller's broker went away */
    send_msg(t, c->caller, c->caller_session, action, name_of(c), c->cid, data, false, 0, NULL, NULL);
}

/* The current provider of c, if it still provides. */
static subs_holder *current_provider(rpc_table *t, const call *c)
{
    uint32_t n;
    subs_holder *h = subs_holders(t->providers, name_of(c), &n);
    for (uint32_t i = 0; c->cur != NULL && i < n; i++)
        if (h[i].ptr == c->cur && h[i].tag == c->cur_session)
            return &h[i];
    return NULL;
}

/* c no longer occupies its provider (answered, rejected, lost). */
static void release_provider(rpc_table *t, call *c)
{
    subs_holder *pv = current_provider(t, c);
    if (pv != NULL && pv->count > 0)
        pv->count--;
    c->cur = NULL;
}

static bool tried(const call *c, const subs_holder *pv)
{
    for (uint32_t i = 0; i < c->tried.n; i++)
        if (c->tried.v[i].peer_id == ((peer *)pv->ptr)->id && c->tried.v[i].session == pv->tag)
            return true;
    return false;
}

static void end_call(rpc_table *t, call *c)
{
    release_provider(t, c);
    dict_del(t->calls, c->id, strlen(c->id));
    free_call(c);
}

static void set_deadline(rpc_table *t, call *c, int64_t ms)
{
    c->deadline_ms = now_ms() + ms;
    if (c->deadline_ms < t->next_deadline)
        t->next_deadline = c->deadline_ms;
}

/* Sends c to a provider it has not tried; ends it with NO_RPC_PROVIDER when none is left. */
static void route(rpc_table *t, call *c)
{
    uint32_t n;
    subs_holder *h = subs_holders(t->providers, name_of(c), &n);
    subs_holder *pick = NULL;
    if (n > 0) {
        rotation *rot = subs_data(t->providers, name_of(c));
        uint32_t start = rot->next++ % n;
        for (uint32_t k = 0; k < n; k++) {
            subs_holder *pv = &h[(start + k) % n];
            if (tried(c, pv))
                continue;
            if (t->env->cfg->rpc_balance == 0) {
                pick = pv;
                break;
            }
            if (pick == NULL || pv->count < pick->count)
                pick = pv;
        }
    }
    if (pick == NULL) {
        c->cur = NULL;
        to_caller(t, c, RACT(NO_RPC_PROVIDER), NULL);
        end_call(t, c);
        return;
    }
    peer *p = pick->ptr;
    vec_push(&c->tried, ((attempt){p->id, pick->tag}));
    c->cur = p;
    c->cur_session = pick->tag;
    c->accepted = false;
    pick->count++;
    set_deadline(t, c, t->env->cfg->rpc_ack_timeout_ms);
    send_msg(t, p, pick->tag, RACT(REQUEST), name_of(c), c->id, c->data, false, 0, c->user, c->meta);
}

/* The current provider of c is gone (unprovide, disconnect, broker loss). */
static void provider_lost(rpc_table *t, call *c)
{
    release_provider(t, c);
    if (c->accepted) {
        to_caller(t, c, RACT(REQUEST_ERROR), "\"RPC_PROVIDER_GONE\"");
        end_call(t, c);
    } else
        route(t, c);
}

/* The calls whose provider is p (a session of it, or any when session is 0),
 * for name (or any when name.ptr is NULL). */
struct lost_ctx {
    peer *p;
    uint64_t session;
    strview name;
    call_vec hit;
};

static int collect_lost(const void *k, size_t l, void *v, void *arg)
{
    struct lost_ctx *x = arg;
    call *c = v;
    if (c->cur == x->p && (x->session == 0 || c->cur_session == x->session) &&
        (x->name.ptr == NULL || sv_eq(name_of(c), x->name)))
        vec_push(&x->hit, c);
    return 0;
}

/* The providers are removed already: their calls move on (or end). */
static void move_calls(rpc_table *t, struct lost_ctx *x)
{
    dict_foreach(t->calls, collect_lost, x);
    for (uint32_t i = 0; i < x->hit.n; i++)
        provider_lost(t, x->hit.v[i]);
    vec_free(&x->hit);
}

static void unprovide(rpc_table *t, peer *p, const op *o)
{
    if (!subs_remove(t->providers, o->name, p, o->session, false))
        return;
    struct lost_ctx x = {.p = p, .session = o->session, .name = o->name};
    move_calls(t, &x);
}

static char *dup_view(strview v)
{
    return v.len ? xstrndup(v.ptr, v.len) : NULL;
}

static void request(rpc_table *t, peer *p, const op *o)
{
    call *c = xcalloc(1, sizeof(*c));
    snprintf(c->id, sizeof(c->id), "eddy-%06llx-%llu", (unsigned long long)t->node_tag,
             (unsigned long long)++t->next_call);
    c->name = xstrndup(o->name.ptr, o->name.len);
    c->name_len = o->name.len;
    c->caller = p;
    c->caller_session = o->session;
    c->cid = o->ref.len ? xstrndup(o->ref.ptr, o->ref.len) : xstrdup("");
    c->data = o->has_data ? xstrndup(o->data.ptr, o->data.len) : NULL;
    c->user = dup_view(o->user);
    c->meta = dup_view(o->meta);
    dict_put(t->calls, c->id, strlen(c->id), c);
    route(t, c);
}

static void answer(rpc_table *t, peer *p, const op *o)
{
    call *c = o->ref.len ? dict_get(t->calls, o->ref.ptr, o->ref.len) : NULL;
    if (c == NULL || c->cur != p || c->cur_session != o->session) {
        /* late, duplicate or foreign: the call is not this provider's (any more) */
        if (o->action != RACT(REJECT)) {
            char *ref = dup_view(o->ref);
            send_msg(t, p, o->session, RACT(INVALID_RPC_CORRELATION_ID), o->name, ref, NULL, true, o->action, NULL,
                     NULL);
            xfree(ref);
        }
        return;
    }
    char *data = o->has_data ? xstrndup(o->data.ptr, o->data.len) : NULL;
    switch (o->action) {
    case RACT(ACCEPT):
        if (c->accepted) {
            send_msg(t, p, o->session, RACT(MULTIPLE_ACCEPT), name_of(c), c->id, NULL, true, RACT(ACCEPT), NULL,
                     NULL);
            break;
        }
        c->accepted = true;
        set_deadline(t, c, t->env->cfg->rpc_response_timeout_ms);
        to_caller(t, c, RACT(ACCEPT), NULL);
        break;
    case RACT(RESPONSE):
    case RACT(REQUEST_ERROR):
        to_caller(t, c, o->action, data);
        end_call(t, c);
        break;
    case RACT(REJECT):
        release_provider(t, c);
        route(t, c);
        break;
    default:
        log_warn("rpc-unknown-answer", "action=%u", o->action);
    }
    xfree(data);
}

static void rpc_apply(void *self, node_req *req, const op *o)
{
    rpc_table *t = self;
    switch (o->kind) {
    case OP_RPC_PROVIDE: subs_add(t->providers, o->name, req->from, o->session); break; /* a repeat: no change */
    case OP_RPC_UNPROVIDE: unprovide(t, req->from, o); break;
    case OP_RPC_REQUEST: request(t, req->from, o); break;
    case OP_RPC_ANSWER: answer(t, req->from, o); break;
    }
}

struct expire_ctx {
    int64_t now, next;
    call_vec hit;
};

static int collect_expired(const void *k, size_t l, void *v, void *arg)
{
    struct expire_ctx *x = arg;
    call *c = v;
    if (deadline_passed(c->deadline_ms, x->now, &x->next))
        vec_push(&x->hit, c);
    return 0;
}

/* Ends calls whose accept or response timeout has passed. */
static void rpc_timers(void *self, int64_t now)
{
    rpc_table *t = self;
    if (now < t->next_deadline)
        return;
    struct expire_ctx x = {.now = now, .next = INT64_MAX};
    dict_foreach(t->calls, collect_expired, &x);
    t->next_deadline = x.next;
    for (uint32_t i = 0; i < x.hit.n; i++) {
        call *c = x.hit.v[i];
        to_caller(t, c, c->accepted ? RACT(RESPONSE_TIMEOUT) : RACT(ACCEPT_TIMEOUT), NULL);
        log_info("rpc-timeout", "name=%s kind=%s", c->name, c->accepted ? "response" : "accept");
        end_call(t, c);
    }
    vec_free(&x.hit);
}

static int forget_caller(const void *k, size_t l, void *v, void *arg)
{
    call *c = v;
    if (c->caller == arg)
        c->caller = NULL;
    return 0;
}

/* Removes p's providers (moving their calls) and forgets p as a caller. */
static size_t rpc_drop_peer(void *self, peer *p)
{
    rpc_table *t = self;
    dict_foreach(t->calls, forget_caller, p);
    size_t names = subs_remove_holder(t->providers, p);
    struct lost_ctx x = {.p = p};
    move_calls(t, &x);
    return names;
}

const owner_module rpc_owner = {
    .name = "rpc",
    .kinds = (const owner_kind[]){{OP_RPC_PROVIDE, ROUTE_NAME}, {OP_RPC_UNPROVIDE, ROUTE_NAME},
                                  {OP_RPC_REQUEST, ROUTE_NAME}, {OP_RPC_ANSWER, ROUTE_NAME}, {0, 0}},
    .create = rpc_create,
    .destroy = rpc_destroy,
    .apply = rpc_apply,
    .held = "rpc_names",
    .drop_peer = rpc_drop_peer,
    .timers = rpc_timers,
};
