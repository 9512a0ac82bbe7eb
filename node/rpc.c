/* rpc.c - the node's RPC registry for the names it owns: which sessions (on
 * which peers) provide each RPC, and every call in flight.
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
#include "log.h"
#include "mem.h"
#include "node.h"
#include "util.h"

#define RACT(x) RPC__ACTION__RPC_##x

typedef struct provider {
    peer *p;
    uint64_t session;
    uint32_t inflight;
} provider;

typedef struct rpc_name {
    provider *provs;
    uint32_t count, cap;
    uint32_t next; /* round-robin position */
} rpc_name;

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
    attempt *tried;
    uint32_t ntried, tried_cap;
    peer *cur;     /* current provider, NULL between attempts */
    uint64_t cur_session;
    bool accepted;
    int64_t deadline_ms;
} call;

struct rpc_table {
    node *n;
    const eddy_config *cfg;
    dict *names; /* name -> rpc_name */
    dict *calls; /* call id -> call */
    uint64_t next_call;
    uint64_t node_tag;
    int64_t next_deadline;
};

rpc_table *rpc_new(node *n, const eddy_config *cfg)
{
    rpc_table *t = xcalloc(1, sizeof(*t));
    t->n = n;
    t->cfg = cfg;
    t->names = dict_new();
    t->calls = dict_new();
    t->node_tag = random_id() & 0xffffff;
    t->next_deadline = INT64_MAX;
    return t;
}

static void free_call(call *c)
{
    xfree(c->name);
    xfree(c->cid);
    xfree(c->data);
    xfree(c->user);
    xfree(c->meta);
    xfree(c->tried);
    xfree(c);
}

static int free_call_cb(const void *k, size_t l, void *v, void *arg)
{
    free_call(v);
    return 0;
}

static int free_name_cb(const void *k, size_t l, void *v, void *arg)
{
    rpc_name *rn = v;
    xfree(rn->provs);
    xfree(rn);
    return 0;
}

void rpc_free(rpc_table *t)
{
    if (t == NULL)
        return;
    dict_foreach(t->calls, free_call_cb, NULL);
    dict_free(t->calls);
    dict_foreach(t->names, free_name_cb, NULL);
    dict_free(t->names);
    xfree(t);
}

size_t rpc_calls(const rpc_table *t)
{
    return dict_size(t->calls);
}

static strview sv(const char *s)
{
    return (strview){s, s ? (uint32_t)strlen(s) : 0};
}

/* Sends an RPC message to a session on peer p. */
static void send_msg(rpc_table *t, peer *p, uint64_t session, uint32_t action, const char *name,
                     size_t name_len, const char *cid, const char *data, bool error, uint32_t orig,
                     const char *user, const char *meta)
{
    op m = {.kind = OP_RPC_MESSAGE, .session = session, .action = action,
            .name = {name, (uint32_t)name_len}, .ref = sv(cid), .has_data = data != NULL,
            .data = sv(data), .flags = error ? OP_FLAG_ERROR : 0, .orig = orig, .user = sv(user),
            .meta = sv(meta)};
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    op_encode(&buf, &m);
    node_deliver_encoded(t->n, p, buf.data, buf.size);
    msgpack_sbuffer_destroy(&buf);
}

static void to_caller(rpc_table *t, call *c, uint32_t action, const char *data)
{
    if (c->caller == NULL)
        return; /* the caller's broker went away */
    send_msg(t, c->caller, c->caller_session, action, c->name, c->name_len, c->cid, data, false, 0,
             NULL, NULL);
}

static provider *find_provider(rpc_name *rn, peer *p, uint64_t session)
{
    for (uint32_t i = 0; rn && i < rn->count; i++)
        if (rn->provs[i].p == p && rn->provs[i].session == session)
            return &rn->provs[i];
    return NULL;
}

static bool tried(const call *c, const provider *pv)
{
    for (uint32_t i = 0; i < c->ntried; i++)
        if (c->tried[i].peer_id == pv->p->id && c->tried[i].session == pv->session)
            return true;
    return false;
}

static void end_call(rpc_table *t, call *c)
{
    rpc_name *rn = dict_get(t->names, c->name, c->name_len);
    provider *pv = c->cur ? find_provider(rn, c->cur, c->cur_session) : NULL;
    if (pv != NULL && pv->inflight > 0)
        pv->inflight--;
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
    rpc_name *rn = dict_get(t->names, c->name, c->name_len);
    provider *pick = NULL;
    if (rn != NULL && rn->count > 0) {
        uint32_t start = rn->next++ % rn->count;
        for (uint32_t k = 0; k < rn->count; k++) {
            provider *pv = &rn->provs[(start + k) % rn->count];
            if (tried(c, pv))
                continue;
            if (t->cfg->rpc_balance == 0) {
                pick = pv;
                break;
            }
            if (pick == NULL || pv->inflight < pick->inflight)
                pick = pv;
        }
    }
    if (pick == NULL) {
        c->cur = NULL;
        to_caller(t, c, RACT(NO_RPC_PROVIDER), NULL);
        end_call(t, c);
        return;
    }
    if (c->ntried == c->tried_cap) {
        c->tried_cap = c->tried_cap ? c->tried_cap * 2 : 4;
        c->tried = xrealloc(c->tried, c->tried_cap * sizeof(*c->tried));
    }
    c->tried[c->ntried++] = (attempt){pick->p->id, pick->session};
    c->cur = pick->p;
    c->cur_session = pick->session;
    c->accepted = false;
    pick->inflight++;
    set_deadline(t, c, t->cfg->rpc_ack_timeout_ms);
    send_msg(t, pick->p, pick->session, RACT(REQUEST), c->name, c->name_len, c->id, c->data, false,
             0, c->user, c->meta);
}

/* The current provider of c is gone (unprovide, disconnect, broker loss). */
static void provider_lost(rpc_table *t, call *c)
{
    rpc_name *rn = dict_get(t->names, c->name, c->name_len);
    provider *pv = find_provider(rn, c->cur, c->cur_session);
    if (pv != NULL && pv->inflight > 0)
        pv->inflight--;
    c->cur = NULL;
    if (c->accepted) {
        to_caller(t, c, RACT(REQUEST_ERROR), "\"RPC_PROVIDER_GONE\"");
        end_call(t, c);
    } else
        route(t, c);
}

static void provide(rpc_table *t, peer *p, const op *o)
{
    rpc_name *rn = dict_get(t->names, o->name.ptr, o->name.len);
    if (rn == NULL) {
        rn = xcalloc(1, sizeof(*rn));
        dict_put(t->names, o->name.ptr, o->name.len, rn);
    }
    if (find_provider(rn, p, o->session) != NULL)
        return;
    if (rn->count == rn->cap) {
        rn->cap = rn->cap ? rn->cap * 2 : 4;
        rn->provs = xrealloc(rn->provs, rn->cap * sizeof(*rn->provs));
    }
    rn->provs[rn->count++] = (provider){p, o->session, 0};
}

struct lost_ctx {
    peer *p;
    uint64_t session; /* 0 = every session of p */
    const char *name;
    uint32_t name_len; /* 0 = every name */
    call **hit;
    size_t n, cap;
};

static int collect_lost(const void *k, size_t l, void *v, void *arg)
{
    struct lost_ctx *x = arg;
    call *c = v;
    bool match = c->cur == x->p && (x->session == 0 || c->cur_session == x->session) &&
                 (x->name_len == 0 || (c->name_len == x->name_len && memcmp(c->name, x->name, x->name_len) == 0));
    if (!match)
        return 0;
    if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 16;
        x->hit = xrealloc(x->hit, x->cap * sizeof(*x->hit));
    }
    x->hit[x->n++] = c;
    return 0;
}

/* Removes matching providers of name (or of every name) and moves their calls. */
static void remove_providers(rpc_table *t, struct lost_ctx *x)
{
    dict_foreach(t->calls, collect_lost, x);
    for (size_t i = 0; i < x->n; i++)
        provider_lost(t, x->hit[i]);
    xfree(x->hit);
    x->hit = NULL;
    x->n = x->cap = 0;
}

static void drop_from_name(rpc_name *rn, peer *p, uint64_t session)
{
    for (uint32_t i = 0; i < rn->count;) {
        if (rn->provs[i].p == p && (session == 0 || rn->provs[i].session == session))
            rn->provs[i] = rn->provs[--rn->count];
        else
            i++;
    }
}

static void unprovide(rpc_table *t, peer *p, const op *o)
{
    rpc_name *rn = dict_get(t->names, o->name.ptr, o->name.len);
    if (rn == NULL)
        return;
    /* move the calls first, while the provider still counts as tried */
    struct lost_ctx x = {.p = p, .session = o->session, .name = o->name.ptr, .name_len = o->name.len};
    drop_from_name(rn, p, o->session);
    remove_providers(t, &x);
    if (rn->count == 0) {
        dict_del(t->names, o->name.ptr, o->name.len);
        xfree(rn->provs);
        xfree(rn);
    }
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
    char *ref = dup_view(o->ref);
    if (c == NULL || c->cur != p || c->cur_session != o->session) {
        /* late, duplicate or foreign: the call is not this provider's (any more) */
        if (o->action != RACT(REJECT))
            send_msg(t, p, o->session, RACT(INVALID_RPC_CORRELATION_ID), o->name.ptr, o->name.len,
                     ref, NULL, true, o->action, NULL, NULL);
        xfree(ref);
        return;
    }
    xfree(ref);
    char *data = o->has_data ? xstrndup(o->data.ptr, o->data.len) : NULL;
    switch (o->action) {
    case RACT(ACCEPT):
        if (c->accepted) {
            send_msg(t, p, o->session, RACT(MULTIPLE_ACCEPT), c->name, c->name_len, c->id, NULL,
                     true, RACT(ACCEPT), NULL, NULL);
            break;
        }
        c->accepted = true;
        set_deadline(t, c, t->cfg->rpc_response_timeout_ms);
        to_caller(t, c, RACT(ACCEPT), NULL);
        break;
    case RACT(RESPONSE):
    case RACT(REQUEST_ERROR):
        to_caller(t, c, o->action, data);
        end_call(t, c);
        break;
    case RACT(REJECT): {
        rpc_name *rn = dict_get(t->names, c->name, c->name_len);
        provider *pv = find_provider(rn, c->cur, c->cur_session);
        if (pv != NULL && pv->inflight > 0)
            pv->inflight--;
        c->cur = NULL;
        route(t, c);
        break;
    }
    default:
        log_warn("rpc-unknown-answer", "action=%u", o->action);
    }
    xfree(data);
}

void rpc_apply(rpc_table *t, node_req *req, const op *o)
{
    switch (o->kind) {
    case OP_RPC_PROVIDE: provide(t, req->from, o); break;
    case OP_RPC_UNPROVIDE: unprovide(t, req->from, o); break;
    case OP_RPC_REQUEST: request(t, req->from, o); break;
    case OP_RPC_ANSWER: answer(t, req->from, o); break;
    }
}

struct expire_ctx {
    int64_t now, next;
    call **hit;
    size_t n, cap;
};

static int collect_expired(const void *k, size_t l, void *v, void *arg)
{
    struct expire_ctx *x = arg;
    call *c = v;
    if (c->deadline_ms > x->now) {
        if (c->deadline_ms < x->next)
            x->next = c->deadline_ms;
        return 0;
    }
    if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 16;
        x->hit = xrealloc(x->hit, x->cap * sizeof(*x->hit));
    }
    x->hit[x->n++] = c;
    return 0;
}

void rpc_timers(rpc_table *t)
{
    int64_t now = now_ms();
    if (now < t->next_deadline)
        return;
    struct expire_ctx x = {.now = now, .next = INT64_MAX};
    dict_foreach(t->calls, collect_expired, &x);
    t->next_deadline = x.next;
    for (size_t i = 0; i < x.n; i++) {
        call *c = x.hit[i];
        to_caller(t, c, c->accepted ? RACT(RESPONSE_TIMEOUT) : RACT(ACCEPT_TIMEOUT), NULL);
        log_info("rpc-timeout", "name=%s kind=%s", c->name, c->accepted ? "response" : "accept");
        end_call(t, c);
    }
    xfree(x.hit);
}

static int forget_caller(const void *k, size_t l, void *v, void *arg)
{
    call *c = v;
    if (c->caller == arg)
        c->caller = NULL;
    return 0;
}

void rpc_drop_peer(rpc_table *t, peer *p)
{
    dict_foreach(t->calls, forget_caller, p);
    size_t n;
    char **names = dict_keys(t->names, &n);
    for (size_t i = 0; i < n; i++) {
        op o = {.kind = OP_RPC_UNPROVIDE, .name = sv(names[i])};
        unprovide(t, p, &o); /* session 0: every session of p */
    }
    dict_keys_free(names, n);
}
