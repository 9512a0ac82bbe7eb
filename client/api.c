/* api.c - the backend library's features: events, records, RPC and listening,
 * as operations for the owning node (client_submit) and as the handling of
 * what nodes answer and deliver (client_on_delivery, on one of nng's threads with
 * e->lock held). Record subscriptions keep the document as last delivered and
 * apply patches to it (common/jsonpath.c), so callbacks always see the whole
 * document; a version jump re-reads it. Event streams (eddy_subscribe_from)
 * deliver by offset: only the next one is delivered, a repeat is dropped, and
 * anything else is asked for again from the last delivered offset + 1. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "deepstream.pb-c.h"
#include "internal.h"
#include "jsonpath.h"
#include "log.h"
#include "mem.h"
#include "util.h"

#define RACT(x) RECORD__ACTION__RECORD_##x
#define PACT(x) RPC__ACTION__RPC_##x

static strview sv(const char *s)
{
    return (strview){s, s ? (uint32_t)strlen(s) : 0};
}

static bool valid_name(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    return len > 0 && len <= EDDY_NAME_MAX;
}

static bool valid_json(const char *json)
{
    return json == NULL || json_check(json, strlen(json)) != JSON_KIND_INVALID;
}

void client_registration_free(void *v)
{
    registration *r = v;
    if (r == NULL)
        return;
    xfree(r->doc);
    xfree(r);
}

void client_callback_free(void *v)
{
    callback *cb = v;
    if (cb == NULL)
        return;
    if (cb->call != NULL) {
        xfree(cb->call->name);
        xfree(cb->call->id);
        xfree(cb->call);
    }
    if (cb->validation != NULL) { /* never run (the client closed): the node moves it on */
        xfree(cb->validation->name);
        xfree(cb->validation);
    }
    xfree(cb->name);
    xfree(cb->data);
    xfree(cb->extra);
    xfree(cb);
}

static registration *registration_new(void *fn, void *arg)
{
    registration *r = xcalloc(1, sizeof(*r));
    r->fn = fn;
    r->arg = arg;
    r->version = -1;
    return r;
}

/* A callback of kind for registration r about name, with data (both copied;
 * data may be absent). Owned by the caller until queued. */
static callback *callback_new(int kind, const registration *r, strview name, const char *data, size_t data_len)
{
    callback *cb = xcalloc(1, sizeof(*cb));
    cb->kind = kind;
    cb->fn = r->fn;
    cb->arg = r->arg;
    cb->name = client_strndup(name);
    cb->data = data != NULL ? xstrndup(data, data_len) : NULL;
    return cb;
}

/* Submits o routed by route and waits (e->lock held) until its batch is answered. */
static eddy_status submit_and_wait(eddy *e, op *o, strview route)
{
    uint64_t seq;
    int li = client_submit(e, o, route, &seq);
    if (li < 0)
        return EDDY_ERR_UNAVAILABLE;
    return client_wait_batch(e, li, seq, client_deadline(e));
}

/* Submits o for the pending call it carries and waits for the answer. */
static eddy_status call_and_wait(eddy *e, op *o, strview route, pending **out)
{
    o->shard = shard_of(route.ptr, route.len);
    int li = (int)shardmap_owner(&e->map, o->shard);
    pending *p = client_pending_new(e, li);
    char ref[24];
    if (o->kind == OP_RPC_REQUEST) { /* an RPC's corr travels as its correlation id */
        snprintf(ref, sizeof(ref), "%" PRIu64, p->corr);
        o->ref = sv(ref);
    }
    o->corr = p->corr;
    uint64_t seq;
    eddy_status st;
    if (client_submit_to(e, li, o, &seq) < 0) {
        dict_del(e->pending, &p->corr, sizeof(p->corr));
        st = EDDY_ERR_UNAVAILABLE;
    } else
        st = client_pending_wait(e, p, client_deadline(e));
    *out = p;
    return st;
}

/* Registers fn under name in table and tells the owning node (kind: EVENT_INTEREST
 * or RPC_PROVIDE); waits for the node. */
static eddy_status register_name(eddy *e, dict *table, const char *name, void *fn, void *arg, uint32_t kind)
{
    if (e == NULL || !valid_name(name) || fn == NULL)
        return EDDY_ERR_INVALID;
    pthread_mutex_lock(&e->lock);
    eddy_status st = EDDY_ERR_EXISTS;
    if (dict_get(table, name, strlen(name)) == NULL) {
        dict_put(table, name, strlen(name), registration_new(fn, arg));
        op o = {.kind = kind, .name = sv(name)};
        if ((st = submit_and_wait(e, &o, o.name)) == EDDY_ERR_UNAVAILABLE)
            client_registration_free(dict_del(table, name, strlen(name)));
    }
    pthread_mutex_unlock(&e->lock);
    return st;
}

/* The reverse (kind: EVENT_UNINTEREST, RPC_UNPROVIDE or RECORD_UNINTEREST). */
static eddy_status unregister_name(eddy *e, dict *table, const char *name, uint32_t kind)
{
    if (e == NULL || !valid_name(name))
        return EDDY_ERR_INVALID;
    pthread_mutex_lock(&e->lock);
    registration *r = dict_del(table, name, strlen(name));
    eddy_status st = EDDY_ERR_NOT_REGISTERED;
    if (r != NULL) {
        client_registration_free(r);
        op o = {.kind = kind, .name = sv(name)};
        st = submit_and_wait(e, &o, o.name);
    }
    pthread_mutex_unlock(&e->lock);
    return st;
}

/* ---------------- events ---------------- */

eddy_status eddy_emit(eddy *e, const char *name, const char *json)
{
    if (e == NULL || !valid_name(name) || !valid_json(json))
        return EDDY_ERR_INVALID;
    op o = {.kind = OP_EVENT_EMIT, .name = sv(name), .has_data = json != NULL, .data = sv(json)};
    uint64_t seq;
    return client_submit(e, &o, o.name, &seq) < 0 ? EDDY_ERR_UNAVAILABLE : EDDY_OK;
}

eddy_status eddy_subscribe(eddy *e, const char *name, eddy_event_fn *fn, void *arg)
{
    return register_name(e, e ? e->events : NULL, name, (void *)fn, arg, OP_EVENT_INTEREST);
}

eddy_status eddy_unsubscribe(eddy *e, const char *name)
{
    return unregister_name(e, e ? e->events : NULL, name, OP_EVENT_UNINTEREST);
}

/* ---------------- event streams ---------------- */

/* Asks the owning node for r's stream from r->next (e->lock held); one ask
 * at a time (unless force: a resync, what was on its way may be lost). The
 * node answers with a STREAM_STATE echoing the ask's corr; only the latest
 * ask's answer counts. */
static void stream_ask(eddy *e, strview name, registration *r, bool force)
{
    if (r->fetching && !force && now_ms() - r->asked_ms < 2 * (int64_t)e->timeout_ms)
        return;
    uint64_t corr = CORR_STREAM | (++e->next_corr & (CORR_STREAM - 1));
    op o = {.kind = OP_STREAM_SUBSCRIBE, .name = name, .offset = r->next, .history = r->history, .corr = corr};
    uint64_t seq;
    if (client_submit(e, &o, name, &seq) >= 0) {
        r->fetching = true; /* (refused: the node is down; the resync after it asks again) */
        r->ask = corr;
        r->asked_ms = now_ms();
    }
}

static void queue_gap(eddy *e, registration *r, strview name, uint64_t from, uint64_t to, bool reset)
{
    callback *cb = callback_new(CB_GAP, r, name, NULL, 0);
    cb->fn = r->gap_fn;
    cb->history = r->history;
    cb->offset = from;
    cb->gap_to = to;
    cb->reset = reset;
    client_queue_callback(e, cb);
}

eddy_status eddy_subscribe_from(eddy *e, const char *name, uint64_t history, uint64_t offset, eddy_stream_fn *fn,
                                eddy_gap_fn *gap_fn, void *arg)
{
    if (e == NULL || !valid_name(name) || fn == NULL || gap_fn == NULL)
        return EDDY_ERR_INVALID;
    pthread_mutex_lock(&e->lock);
    eddy_status st = EDDY_ERR_EXISTS;
    if (dict_get(e->events, name, strlen(name)) == NULL) {
        registration *r = registration_new((void *)fn, arg);
        r->stream = true;
        r->gap_fn = (void *)gap_fn;
        r->history = history;
        r->next = offset;
        r->positioned = offset != EDDY_OFFSET_OLDEST && offset != EDDY_OFFSET_NOW;
        r->fetching = true;
        r->asked_ms = now_ms();
        dict_put(e->events, name, strlen(name), r);
        op o = {.kind = OP_STREAM_SUBSCRIBE, .name = sv(name), .offset = offset, .history = history};
        pending *p;
        st = call_and_wait(e, &o, o.name, &p); /* settled by the STREAM_STATE */
        client_pending_free(p);
        if (st == EDDY_ERR_UNAVAILABLE || st == EDDY_ERR_NO_HISTORY)
            client_registration_free(dict_del(e->events, name, strlen(name)));
    }
    pthread_mutex_unlock(&e->lock);
    return st;
}

/* STREAM_STATE: where the node's replay starts (o->offset) and ends
 * (o->version), in which history. A history other than the one followed is a
 * reset; a start past the next offset wanted is a gap. */
static void on_stream_state(eddy *e, const op *o)
{
    registration *r = dict_get(e->events, o->name.ptr, o->name.len);
    bool latest = r != NULL && (r->ask == 0 || o->corr == r->ask); /* else an older ask's: stale */
    if (latest && r->stream && !(o->flags & OP_FLAG_NO_HISTORY)) {
        r->fetching = false;
        if (r->history != 0 && o->history != r->history) { /* the history followed is gone */
            uint64_t lost_from = r->positioned && r->next > 0 ? r->next : 1;
            r->history = o->history;
            queue_gap(e, r, o->name, lost_from, 0, true);
            r->next = 1;
            r->positioned = true;
        } else if (r->history == 0)
            r->history = o->history;
        if (!r->positioned || o->history == 0) { /* the node's start (no history yet: its offset 1) */
            r->next = o->offset;
            r->positioned = true;
        } else if (o->offset > r->next) { /* the ring no longer holds next .. offset - 1 */
            queue_gap(e, r, o->name, r->next, o->offset - 1, false);
            r->next = o->offset;
        }
        r->replay_end = o->has_version && o->version > 0 ? (uint64_t)o->version : 0;
        r->more = (o->flags & OP_FLAG_MORE) != 0;
        if (r->more && r->next > r->replay_end)
            stream_ask(e, o->name, r, false);
    }
    client_settle(e, o->corr, (o->flags & OP_FLAG_NO_HISTORY) ? EDDY_ERR_NO_HISTORY : EDDY_OK, 0, NULL);
}

/* An event of a stream: delivered when it is the next offset, dropped as a
 * repeat when older; anything else (a newer offset, another history) means
 * something was missed, and the stream is asked for from the next offset. */
static void on_stream_event(eddy *e, registration *r, const op *o)
{
    if (!r->positioned || o->offset == 0)
        return; /* before the first state, or not kept: the replay brings it */
    if (r->history == 0 && o->history != 0)
        r->history = o->history; /* the first event of a history begun after our state */
    if (o->history != r->history || o->offset > r->next) {
        stream_ask(e, o->name, r, false);
        return;
    }
    if (o->offset < r->next)
        return; /* delivered already */
    if (o->broker != e->peer_id) { /* our own emit takes its offset, undelivered */
        callback *cb = callback_new(CB_STREAM, r, o->name, o->has_data ? o->data.ptr : NULL, o->data.len);
        cb->history = o->history;
        cb->offset = o->offset;
        if (!client_queue_callback(e, cb)) {
            stream_ask(e, o->name, r, false); /* the callbacks are far behind: asked for again */
            return;
        }
    }
    r->next++;
    if (r->more && r->next > r->replay_end)
        stream_ask(e, o->name, r, false);
}

/* ---------------- records ---------------- */

eddy_status eddy_get(eddy *e, const char *name, char **json, int64_t *version)
{
    if (e == NULL || !valid_name(name) || json == NULL)
        return EDDY_ERR_INVALID;
    *json = NULL;
    op o = {.kind = OP_RECORD_READ, .name = sv(name), .action = RACT(READ)};
    pending *p;
    pthread_mutex_lock(&e->lock);
    eddy_status st = call_and_wait(e, &o, o.name, &p);
    pthread_mutex_unlock(&e->lock);
    if (st == EDDY_OK && p->version < 0)
        st = EDDY_ERR_NOT_FOUND;
    if (st == EDDY_OK) {
        *json = p->data;
        p->data = NULL;
        if (version != NULL)
            *version = p->version;
    }
    client_pending_free(p);
    return st;
}

eddy_status eddy_set(eddy *e, const char *name, const char *path, const char *json, int64_t version,
                     int64_t *new_version)
{
    return eddy_write(e, name, path, json, version, new_version, NULL);
}

eddy_status eddy_write(eddy *e, const char *name, const char *path, const char *json, int64_t version,
                       int64_t *new_version, char **reason)
{
    if (reason != NULL)
        *reason = NULL;
    if (e == NULL || !valid_name(name) || version < -1 || !valid_json(json))
        return EDDY_ERR_INVALID;
    if (path == NULL) {
        enum json_kind k = json ? json_check(json, strlen(json)) : JSON_KIND_INVALID;
        if (k != JSON_KIND_OBJECT && k != JSON_KIND_ARRAY)
            return EDDY_ERR_INVALID; /* a whole document is an object or an array */
    } else if (path[0] == '\0' || strlen(path) > EDDY_NAME_MAX)
        return EDDY_ERR_INVALID;
    op o = {.kind = OP_RECORD_WRITE, .name = sv(name), .has_version = true, .version = version,
            .flags = OP_FLAG_WRITE_ACK, .ref = sv("w"), .has_data = json != NULL, .data = sv(json),
            .path = sv(path),
            .action = path == NULL ? RACT(CREATEANDUPDATE) : json == NULL ? RACT(ERASE) : RACT(CREATEANDPATCH)};
    pending *p;
    pthread_mutex_lock(&e->lock);
    eddy_status st = call_and_wait(e, &o, o.name, &p);
    pthread_mutex_unlock(&e->lock);
    if (new_version != NULL && (st == EDDY_OK || st == EDDY_ERR_VERSION || st == EDDY_ERR_REJECTED))
        *new_version = p->version;
    if (reason != NULL && st == EDDY_ERR_REJECTED) {
        *reason = p->data;
        p->data = NULL;
    }
    client_pending_free(p);
    return st;
}

eddy_status eddy_delete(eddy *e, const char *name)
{
    if (e == NULL || !valid_name(name))
        return EDDY_ERR_INVALID;
    op o = {.kind = OP_RECORD_DELETE, .name = sv(name)};
    pending *p;
    pthread_mutex_lock(&e->lock);
    eddy_status st = call_and_wait(e, &o, o.name, &p);
    pthread_mutex_unlock(&e->lock);
    client_pending_free(p);
    return st;
}

eddy_status eddy_record_subscribe(eddy *e, const char *name, eddy_record_fn *fn, void *arg)
{
    if (e == NULL || !valid_name(name) || fn == NULL)
        return EDDY_ERR_INVALID;
    pthread_mutex_lock(&e->lock);
    eddy_status st = EDDY_ERR_EXISTS;
    if (dict_get(e->records, name, strlen(name)) == NULL) {
        dict_put(e->records, name, strlen(name), registration_new((void *)fn, arg));
        op o = {.kind = OP_RECORD_SUBSCRIBE, .name = sv(name), .action = RACT(SUBSCRIBEANDREAD)};
        pending *p;
        st = call_and_wait(e, &o, o.name, &p); /* the state answer queues the first callback */
        client_pending_free(p);
        if (st == EDDY_ERR_UNAVAILABLE)
            client_registration_free(dict_del(e->records, name, strlen(name)));
    }
    pthread_mutex_unlock(&e->lock);
    return st;
}

eddy_status eddy_record_unsubscribe(eddy *e, const char *name)
{
    return unregister_name(e, e ? e->records : NULL, name, OP_RECORD_UNINTEREST);
}

/* Queues the subscriber's callback with the document as it now is. */
static void record_changed(eddy *e, const char *name, registration *r)
{
    callback *cb = callback_new(CB_RECORD, r, sv(name), r->doc, r->doc ? strlen(r->doc) : 0);
    cb->version = r->version;
    client_queue_callback(e, cb);
}

/* Re-reads a subscribed record (its deliveries have a gap). */
static void refresh_record(eddy *e, const char *name, size_t len, registration *r)
{
    if (r->refreshing)
        return;
    op o = {.kind = OP_RECORD_READ, .name = {name, (uint32_t)len}, .action = RACT(READ),
            .corr = CORR_REFRESH};
    uint64_t seq;
    if (client_submit(e, &o, o.name, &seq) >= 0)
        r->refreshing = true;
}

static void on_state(eddy *e, const op *o)
{
    bool refresh = (o->corr & CORR_REFRESH) != 0;
    bool initial = o->orig == RACT(SUBSCRIBEANDREAD) && !refresh; /* eddy_record_subscribe's */
    if (refresh || initial) {
        registration *r = dict_get(e->records, o->name.ptr, o->name.len);
        if (r != NULL) {
            r->refreshing = false;
            if (initial || r->version != o->version) {
                r->version = o->version;
                xfree(r->doc);
                r->doc = o->version >= 0 && o->has_data ? client_strndup(o->data) : NULL;
                char *name = client_strndup(o->name);
                record_changed(e, name, r);
                xfree(name);
            }
        }
        if (refresh)
            return;
    }
    client_settle(e, o->corr, EDDY_OK, o->version, o->has_data ? client_strndup(o->data) : NULL);
}

static void on_update(eddy *e, const op *o)
{
    registration *r = dict_get(e->records, o->name.ptr, o->name.len);
    if (r == NULL)
        return;
    char *name = client_strndup(o->name);
    if (o->kind == OP_RECORD_DELETED) {
        r->version = -1;
        xfree(r->doc);
        r->doc = NULL;
        record_changed(e, name, r);
    } else if (r->refreshing || o->version != r->version + 1) {
        refresh_record(e, o->name.ptr, o->name.len, r); /* missed a version: read it whole */
    } else if (o->action == RACT(UPDATE)) {
        xfree(r->doc);
        r->doc = client_strndup(o->data);
        r->version = o->version;
        record_changed(e, name, r);
    } else { /* PATCH, or an ERASE (a patch without data) */
        char *path = client_strndup(o->path), *doc = NULL;
        size_t doc_len;
        const char *why;
        const char *cur = r->doc ? r->doc : "{}";
        if (jsonpath_apply(cur, strlen(cur), path, o->has_data ? o->data.ptr : NULL,
                           o->has_data ? o->data.len : 0, &doc, &doc_len, &why) == 0) {
            xfree(r->doc);
            r->doc = doc;
            r->version = o->version;
            record_changed(e, name, r);
        } else
            refresh_record(e, o->name.ptr, o->name.len, r);
        xfree(path);
    }
    xfree(name);
}

static void on_result(eddy *e, const op *o)
{
    eddy_status st = EDDY_OK;
    char *reason = NULL;
    if (o->action == RACT(VERSION_EXISTS) || o->action == RACT(INVALID_VERSION))
        st = EDDY_ERR_VERSION;
    else if (o->flags & OP_FLAG_CORRECT) { /* a validator's refusal, with its reason */
        st = EDDY_ERR_REJECTED;
        reason = client_strndup(o->meta);
    } else if (o->flags & OP_FLAG_ERROR)
        st = EDDY_ERR_REFUSED;
    client_settle(e, o->corr, st, o->has_version ? o->version : -1, reason);
}

/* ---------------- RPC ---------------- */

eddy_status eddy_call(eddy *e, const char *name, const char *json, char **result)
{
    if (result != NULL)
        *result = NULL;
    if (e == NULL || !valid_name(name) || !valid_json(json))
        return EDDY_ERR_INVALID;
    op o = {.kind = OP_RPC_REQUEST, .name = sv(name), .has_data = json != NULL, .data = sv(json),
            .user = sv(e->user)};
    pending *p;
    pthread_mutex_lock(&e->lock);
    eddy_status st = call_and_wait(e, &o, o.name, &p);
    pthread_mutex_unlock(&e->lock);
    if ((st == EDDY_OK || st == EDDY_ERR_RPC) && result != NULL) {
        *result = p->data;
        p->data = NULL;
    }
    client_pending_free(p);
    return st;
}

eddy_status eddy_provide(eddy *e, const char *name, eddy_provide_fn *fn, void *arg)
{
    return register_name(e, e ? e->provides : NULL, name, (void *)fn, arg, OP_RPC_PROVIDE);
}

eddy_status eddy_unprovide(eddy *e, const char *name)
{
    return unregister_name(e, e ? e->provides : NULL, name, OP_RPC_UNPROVIDE);
}

/* Sends the provider's answer for call and frees it. */
static eddy_status answer_call(eddy_rpc *call, uint32_t action, const char *json)
{
    if (call == NULL)
        return EDDY_ERR_INVALID;
    eddy_status st = EDDY_OK;
    if (!valid_json(json))
        st = EDDY_ERR_INVALID;
    else {
        op o = {.kind = OP_RPC_ANSWER, .name = sv(call->name), .ref = sv(call->id), .action = action,
                .has_data = json != NULL, .data = sv(json)};
        uint64_t seq;
        if (client_submit(call->e, &o, o.name, &seq) < 0)
            st = EDDY_ERR_UNAVAILABLE; /* the node is down: the call ends there anyway */
    }
    xfree(call->name);
    xfree(call->id);
    xfree(call);
    return st;
}

eddy_status eddy_rpc_respond(eddy_rpc *call, const char *json)
{
    return answer_call(call, PACT(RESPONSE), json);
}

eddy_status eddy_rpc_error(eddy_rpc *call, const char *message)
{
    json_t *s = json_string(message ? message : "error");
    char *text = json_dumps(s, JSON_ENCODE_ANY);
    json_decref(s);
    eddy_status st = answer_call(call, PACT(REQUEST_ERROR), text);
    free(text); /* jansson's malloc */
    return st;
}

eddy_status eddy_rpc_reject(eddy_rpc *call)
{
    return answer_call(call, PACT(REJECT), NULL);
}

static void on_rpc(eddy *e, const op *o)
{
    if (o->action == PACT(REQUEST)) { /* a call for one of our providers */
        registration *r = dict_get(e->provides, o->name.ptr, o->name.len);
        op ans = {.kind = OP_RPC_ANSWER, .name = o->name, .ref = o->ref,
                  .action = r != NULL ? PACT(ACCEPT) : PACT(REJECT)};
        uint64_t seq;
        client_submit(e, &ans, ans.name, &seq); /* accepted at once, as the JS client does */
        if (r == NULL)
            return;
        callback *cb = callback_new(CB_PROVIDE, r, o->name, o->has_data ? o->data.ptr : NULL, o->data.len);
        cb->extra = o->user.len ? client_strndup(o->user) : NULL;
        cb->call = xcalloc(1, sizeof(*cb->call));
        cb->call->e = e;
        cb->call->name = client_strndup(o->name);
        cb->call->id = client_strndup(o->ref);
        client_queue_callback(e, cb);
        return;
    }
    if (o->ref.len == 0 || o->ref.len >= 32)
        return;
    uint64_t corr = client_call_corr(o->ref);
    switch (o->action) {
    case PACT(ACCEPT): break;
    case PACT(RESPONSE): client_settle(e, corr, EDDY_OK, 0, o->has_data ? client_strndup(o->data) : NULL); break;
    case PACT(REQUEST_ERROR): client_settle(e, corr, EDDY_ERR_RPC, 0, o->has_data ? client_strndup(o->data) : NULL); break;
    case PACT(RESPONSE_TIMEOUT): client_settle(e, corr, EDDY_ERR_TIMEOUT, 0, NULL); break;
    case PACT(NO_RPC_PROVIDER):
    case PACT(ACCEPT_TIMEOUT): client_settle(e, corr, EDDY_ERR_NO_PROVIDER, 0, NULL); break;
    default:
        log_warn("rpc-message", "action=%u name=%.*s ref=%.*s (about one of our answers)", o->action,
                 (int)o->name.len, o->name.ptr, (int)o->ref.len, o->ref.ptr);
    }
}

/* ---------------- listening ---------------- */

static size_t listen_key(char *key, eddy_topic topic, const char *pattern)
{
    key[0] = (char)topic;
    size_t len = strlen(pattern);
    memcpy(key + 1, pattern, len);
    return len + 1;
}

static uint32_t wire_topic(eddy_topic topic)
{
    return topic == EDDY_EVENTS ? TOPIC__TOPIC_EVENT : TOPIC__TOPIC_RECORD;
}

/* Sends kind (LISTEN, UNLISTEN with orig the wire topic; VALIDATE_REGISTER,
 * VALIDATE_UNREGISTER) of pattern to every node and waits for each. */
static eddy_status tell_all_nodes(eddy *e, uint32_t kind, uint32_t orig, const char *pattern)
{
    uint64_t seq[CLUSTER_MAX_NODES] = {0};
    eddy_status st = EDDY_OK;
    for (int i = 0; i < e->nlinks; i++) {
        op o = {.kind = kind, .name = sv(pattern), .orig = orig};
        if (client_submit_to(e, i, &o, &seq[i]) < 0) {
            st = EDDY_ERR_UNAVAILABLE; /* it learns the pattern when it is back (resync) */
            log_warn("registration-deferred", "node=%s kind=%s pattern=%s (its link is down or full: sent when "
                     "the link resyncs)", e->cluster.nodes[i].id, op_kind_name(kind), pattern);
        }
    }
    int64_t deadline = client_deadline(e);
    for (int i = 0; i < e->nlinks; i++)
        if (seq[i] > 0 && client_wait_batch(e, i, seq[i], deadline) != EDDY_OK && st == EDDY_OK)
            st = EDDY_ERR_TIMEOUT;
    return st;
}

eddy_status eddy_listen(eddy *e, eddy_topic topic, const char *pattern, eddy_listen_fn *fn, void *arg)
{
    if (e == NULL || !valid_name(pattern) || fn == NULL || (topic != EDDY_EVENTS && topic != EDDY_RECORDS))
        return EDDY_ERR_INVALID;
    char key[EDDY_NAME_MAX + 1];
    size_t klen = listen_key(key, topic, pattern);
    pthread_mutex_lock(&e->lock);
    eddy_status st = EDDY_ERR_EXISTS;
    if (dict_get(e->listens, key, klen) == NULL) {
        dict_put(e->listens, key, klen, registration_new((void *)fn, arg));
        st = tell_all_nodes(e, OP_LISTEN, wire_topic(topic), pattern);
    }
    pthread_mutex_unlock(&e->lock);
    return st;
}

eddy_status eddy_unlisten(eddy *e, eddy_topic topic, const char *pattern)
{
    if (e == NULL || !valid_name(pattern) || (topic != EDDY_EVENTS && topic != EDDY_RECORDS))
        return EDDY_ERR_INVALID;
    char key[EDDY_NAME_MAX + 1];
    size_t klen = listen_key(key, topic, pattern);
    pthread_mutex_lock(&e->lock);
    registration *r = dict_del(e->listens, key, klen);
    eddy_status st = EDDY_ERR_NOT_REGISTERED;
    if (r != NULL) {
        client_registration_free(r);
        st = tell_all_nodes(e, OP_UNLISTEN, wire_topic(topic), pattern);
    }
    pthread_mutex_unlock(&e->lock);
    return st;
}

static void on_listen(eddy *e, const op *o)
{
    eddy_topic topic = o->orig == TOPIC__TOPIC_EVENT ? EDDY_EVENTS : EDDY_RECORDS;
    bool found = o->action == EVENT__ACTION__EVENT_SUBSCRIPTION_FOR_PATTERN_FOUND ||
                 o->action == RACT(SUBSCRIPTION_FOR_PATTERN_FOUND);
    bool removed = o->action == EVENT__ACTION__EVENT_SUBSCRIPTION_FOR_PATTERN_REMOVED ||
                   o->action == RACT(SUBSCRIPTION_FOR_PATTERN_REMOVED);
    if (!found && !removed)
        return; /* LISTEN_RESPONSE_TIMEOUT: we answered too late; the node asked another */
    char key[EDDY_NAME_MAX + 2];
    if (o->name.len > EDDY_NAME_MAX)
        return;
    key[0] = (char)topic;
    memcpy(key + 1, o->name.ptr, o->name.len);
    registration *r = dict_get(e->listens, key, o->name.len + 1);
    if (r == NULL)
        return;
    callback *cb = callback_new(CB_LISTEN, r, o->ref, NULL, 0); /* name: the subscription */
    cb->extra = client_strndup(o->name);                          /* the pattern */
    cb->found = found;
    cb->topic = topic;
    client_queue_callback(e, cb);
}

/* ---------------- validating writes ---------------- */

eddy_status eddy_validate(eddy *e, const char *pattern, eddy_validate_fn *fn, void *arg)
{
    if (e == NULL || !valid_name(pattern) || fn == NULL)
        return EDDY_ERR_INVALID;
    pthread_mutex_lock(&e->lock);
    eddy_status st = EDDY_ERR_EXISTS;
    if (dict_get(e->validates, pattern, strlen(pattern)) == NULL) {
        dict_put(e->validates, pattern, strlen(pattern), registration_new((void *)fn, arg));
        st = tell_all_nodes(e, OP_VALIDATE_REGISTER, 0, pattern);
    }
    pthread_mutex_unlock(&e->lock);
    return st;
}

eddy_status eddy_unvalidate(eddy *e, const char *pattern)
{
    if (e == NULL || !valid_name(pattern))
        return EDDY_ERR_INVALID;
    pthread_mutex_lock(&e->lock);
    registration *r = dict_del(e->validates, pattern, strlen(pattern));
    eddy_status st = EDDY_ERR_NOT_REGISTERED;
    if (r != NULL) {
        client_registration_free(r);
        st = tell_all_nodes(e, OP_VALIDATE_UNREGISTER, 0, pattern);
    }
    pthread_mutex_unlock(&e->lock);
    return st;
}

/* Sends the verdict on v (to the record's owner, which asked) and frees v. */
static eddy_status answer_validation(eddy_validation *v, enum validate_verdict verdict, const char *data)
{
    if (v == NULL)
        return EDDY_ERR_INVALID;
    op o = {.kind = OP_VALIDATE_ANSWER, .name = sv(v->name), .corr = v->corr, .action = verdict,
            .has_data = data != NULL, .data = sv(data)};
    uint64_t seq;
    eddy_status st = client_submit(v->e, &o, o.name, &seq) < 0 ? EDDY_ERR_UNAVAILABLE : EDDY_OK;
    xfree(v->name);
    xfree(v);
    return st; /* (unavailable: the node is down, and the write with it) */
}

eddy_status eddy_validation_accept(eddy_validation *v)
{
    return answer_validation(v, VALIDATE_ACCEPT, NULL);
}

eddy_status eddy_validation_reject(eddy_validation *v, const char *reason)
{
    if (reason != NULL && strlen(reason) > EDDY_REASON_MAX) { /* cut at a character boundary */
        char cut[EDDY_REASON_MAX + 1];
        size_t n = EDDY_REASON_MAX;
        while (n > 0 && ((unsigned char)reason[n] & 0xC0) == 0x80)
            n--;
        memcpy(cut, reason, n);
        cut[n] = '\0';
        return answer_validation(v, VALIDATE_REJECT, cut);
    }
    return answer_validation(v, VALIDATE_REJECT, reason != NULL && reason[0] != '\0' ? reason : "rejected");
}

eddy_status eddy_validation_replace(eddy_validation *v, const char *json)
{
    enum json_kind k = json != NULL ? json_check(json, strlen(json)) : JSON_KIND_INVALID;
    if (v != NULL && k != JSON_KIND_OBJECT && k != JSON_KIND_ARRAY)
        return answer_validation(v, VALIDATE_REJECT, "the validator's replacement was not a JSON object or array");
    return answer_validation(v, VALIDATE_REPLACE, json);
}

static void on_validate(eddy *e, const op *o)
{
    registration *r = o->ref.len > 0 && o->ref.len <= EDDY_NAME_MAX ? dict_get(e->validates, o->ref.ptr, o->ref.len)
                                                                    : NULL;
    eddy_validation *v = xcalloc(1, sizeof(*v));
    v->e = e;
    v->corr = o->corr;
    v->name = client_strndup(o->name);
    if (r == NULL) { /* no longer ours (eddy_unvalidate crossed it): the node asks another */
        answer_validation(v, VALIDATE_REJECT, "this backend no longer validates these records");
        return;
    }
    callback *cb = callback_new(CB_VALIDATE, r, o->name, o->has_data ? o->data.ptr : NULL, o->data.len);
    cb->validation = v;
    client_queue_callback(e, cb);
}

/* ---------------- the link side ---------------- */

void client_on_delivery(eddy *e, int li, const op *o)
{
    switch (o->kind) {
    case OP_EVENT_DELIVERY: {
        if (o->broker == e->peer_id)
            return; /* our own emit: an emitter does not hear itself */
        registration *r = dict_get(e->events, o->name.ptr, o->name.len);
        if (r != NULL && r->stream)
            on_stream_event(e, r, o);
        else if (r != NULL)
            client_queue_callback(e, callback_new(CB_EVENT, r, o->name, o->has_data ? o->data.ptr : NULL, o->data.len));
        break;
    }
    case OP_STREAM_STATE: on_stream_state(e, o); break;
    case OP_RECORD_STATE: on_state(e, o); break;
    case OP_RECORD_UPDATE:
    case OP_RECORD_DELETED: on_update(e, o); break;
    case OP_RECORD_RESULT: on_result(e, o); break;
    case OP_CHANGESET_RESULT: /* changeset.c reads the outcome */
        client_settle(e, o->corr, (o->flags & OP_FLAG_ERROR) ? EDDY_ERR_REFUSED : EDDY_OK, 0,
                      o->has_data ? client_strndup(o->data) : NULL);
        break;
    case OP_RPC_MESSAGE: on_rpc(e, o); break;
    case OP_LISTEN_MESSAGE: on_listen(e, o); break;
    case OP_VALIDATE_REQUEST: on_validate(e, o); break;
    default: break; /* RECORD_PROVIDER, presence: not for backends */
    }
}

struct resync_ctx {
    eddy *e;
    int li;
    uint32_t kind;
    uint64_t *seq;
};

static int resync_one(const void *key, size_t len, void *v, void *arg)
{
    struct resync_ctx *c = arg;
    strview name = {key, (uint32_t)len};
    if (c->kind == OP_LISTEN || c->kind == OP_UNLISTEN || c->kind == OP_VALIDATE_REGISTER ||
        c->kind == OP_VALIDATE_UNREGISTER) {
        bool listen = c->kind == OP_LISTEN || c->kind == OP_UNLISTEN; /* (key: topic byte + pattern) */
        op o = {.kind = c->kind, .name = listen ? (strview){(const char *)key + 1, (uint32_t)len - 1} : name,
                .orig = listen ? wire_topic((eddy_topic)((const char *)key)[0]) : 0};
        uint64_t seq;
        for (int i = 0; i < c->e->nlinks; i++)
            if ((c->li < 0 || i == c->li) && client_submit_to(c->e, i, &o, &seq) >= 0 && c->seq != NULL)
                c->seq[i] = seq;
        return 0;
    }
    if ((int)shardmap_owner(&c->e->map, shard_of(key, len)) != c->li && c->li >= 0)
        return 0;
    if (c->kind == OP_EVENT_INTEREST && ((registration *)v)->stream) {
        stream_ask(c->e, name, v, true); /* resumes from the next offset */
        return 0;
    }
    op o = {.kind = c->kind, .name = name};
    if (c->kind == OP_RECORD_SUBSCRIBE) {
        o.action = RACT(SUBSCRIBEANDREAD);
        o.corr = CORR_REFRESH; /* the state brings the document up to date */
        ((registration *)v)->refreshing = true;
    }
    uint64_t seq;
    int li = client_submit(c->e, &o, name, &seq);
    if (li >= 0 && c->seq != NULL)
        c->seq[li] = seq;
    return 0;
}

void client_resync(eddy *e, int li)
{
    struct resync_ctx c = {e, li, OP_EVENT_INTEREST, NULL};
    dict_foreach(e->events, resync_one, &c);
    c.kind = OP_RECORD_SUBSCRIBE;
    dict_foreach(e->records, resync_one, &c);
    c.kind = OP_RPC_PROVIDE;
    dict_foreach(e->provides, resync_one, &c);
    c.kind = OP_LISTEN;
    dict_foreach(e->listens, resync_one, &c);
    c.kind = OP_VALIDATE_REGISTER;
    dict_foreach(e->validates, resync_one, &c);
}

void client_withdraw_all(eddy *e, uint64_t *seq)
{
    struct resync_ctx c = {e, -1, OP_RPC_UNPROVIDE, seq};
    dict_foreach(e->provides, resync_one, &c);
    c.kind = OP_UNLISTEN;
    dict_foreach(e->listens, resync_one, &c);
    c.kind = OP_VALIDATE_UNREGISTER;
    dict_foreach(e->validates, resync_one, &c);
}

/* ---------------- the callback thread ---------------- */

void client_run_callback(eddy *e, callback *cb)
{
    switch (cb->kind) {
    case CB_EVENT:
        ((eddy_event_fn *)cb->fn)(cb->arg, cb->name, cb->data);
        break;
    case CB_RECORD:
        ((eddy_record_fn *)cb->fn)(cb->arg, cb->name, cb->version, cb->data);
        break;
    case CB_STREAM:
        ((eddy_stream_fn *)cb->fn)(cb->arg, cb->name, cb->history, cb->offset, cb->data);
        break;
    case CB_GAP:
        ((eddy_gap_fn *)cb->fn)(cb->arg, cb->name, cb->history, cb->offset, cb->gap_to, cb->reset);
        break;
    case CB_PROVIDE: {
        eddy_rpc *call = cb->call;
        cb->call = NULL; /* the application's now */
        ((eddy_provide_fn *)cb->fn)(cb->arg, call, cb->name, cb->data, cb->extra);
        break;
    }
    case CB_LISTEN: {
        bool accept = ((eddy_listen_fn *)cb->fn)(cb->arg, cb->extra, cb->name, cb->found);
        if (cb->found) {
            bool ev = cb->topic == EDDY_EVENTS;
            op o = {.kind = OP_LISTEN_ANSWER, .orig = wire_topic((eddy_topic)cb->topic), .name = sv(cb->extra),
                    .ref = sv(cb->name),
                    .action = accept ? (ev ? EVENT__ACTION__EVENT_LISTEN_ACCEPT : RACT(LISTEN_ACCEPT))
                                     : (ev ? EVENT__ACTION__EVENT_LISTEN_REJECT : RACT(LISTEN_REJECT))};
            uint64_t seq;
            client_submit(e, &o, o.ref, &seq); /* routed by the subscription's owner */
        }
        break;
    }
    case CB_VALIDATE: {
        eddy_validation *v = cb->validation;
        cb->validation = NULL; /* the application's now */
        ((eddy_validate_fn *)cb->fn)(cb->arg, v, cb->name, cb->data);
        break;
    }
    }
    client_callback_free(cb);
}
