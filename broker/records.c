/* records.c - the broker's side of records: translates the client's record
 * messages into operations for the owning node, keeps which local sessions
 * subscribe to which records, and turns the node's answers back into the
 * messages the client expects (READ_RESPONSE, HEAD_RESPONSE_BULK, write
 * acknowledgements, conflicts, DELETED, ...).
 *
 * The broker holds no record data. A session joins a record's local subscriber
 * list only when the node's state for it arrives, so everything it receives
 * after that is newer than what it read. The broker tells the node it lost
 * interest only when no subscriber and no subscribe in flight remain. */
#include <string.h>

#include "broker.h"
#include "log.h"
#include "mem.h"

#define ACT(x) RECORD__ACTION__RECORD_##x

typedef struct rtopic {
    uint32_t count, cap;
    session **subs;
    uint32_t pending; /* subscribes sent whose state has not come back */
    int64_t version;  /* newest version forwarded to the subscribers; -1 none */
} rtopic;

/* The corr of the reads that recover records after a delivery gap. */
#define RECOVERY_CORR UINT64_MAX

/* A request spanning several names, answered once all are back
 * (SUBSCRIBEANDHEAD's HEAD_RESPONSE_BULK, NOTIFY's ack). */
typedef struct bulk {
    uint64_t session_id;
    int action;
    char *correlation_id;
    uint32_t remaining, count;
    char **names;
    int64_t *versions;
} bulk;

struct record_subs {
    broker *b;
    dict *topics; /* name -> rtopic */
    dict *bulks;  /* id -> bulk */
    uint64_t next_bulk;
    uint64_t recovered; /* records whose subscribers were brought up to date after a gap */
};

record_subs *record_subs_new(broker *b)
{
    record_subs *r = xcalloc(1, sizeof(*r));
    r->b = b;
    r->topics = dict_new();
    r->bulks = dict_new();
    return r;
}

static void free_bulk(bulk *k)
{
    for (uint32_t i = 0; i < k->count; i++)
        xfree(k->names[i]);
    xfree(k->names);
    xfree(k->versions);
    xfree(k->correlation_id);
    xfree(k);
}

static int free_topic_cb(const void *key, size_t len, void *v, void *arg)
{
    rtopic *t = v;
    xfree(t->subs);
    xfree(t);
    return 0;
}

static int free_bulk_cb(const void *key, size_t len, void *v, void *arg)
{
    free_bulk(v);
    return 0;
}

void record_subs_free(record_subs *r)
{
    if (r == NULL)
        return;
    dict_foreach(r->topics, free_topic_cb, NULL);
    dict_free(r->topics);
    dict_foreach(r->bulks, free_bulk_cb, NULL);
    dict_free(r->bulks);
    xfree(r);
}

/* ---------------- messages to the client ---------------- */

static void send_record(session *s, RecordMessage *m)
{
    session_send_msg(s, TOPIC__TOPIC_RECORD, &m->base);
}

static void reply_error(session *s, int action, const char *name, const char *cid, int orig,
                        bool write_ack)
{
    RecordMessage m = RECORD_MESSAGE__INIT;
    m.has_action = 1;
    m.action = action;
    m.name = (char *)name;
    m.correlationid = (char *)cid;
    m.has_iserror = 1;
    m.iserror = 1;
    m.has_originalaction = 1;
    m.originalaction = orig;
    if (write_ack) {
        m.has_iswriteack = 1;
        m.iswriteack = 1;
    }
    send_record(s, &m);
}

static void reply_ack(session *s, int action, const char *cid, char **names, size_t n_names)
{
    RecordMessage m = RECORD_MESSAGE__INIT;
    m.has_action = 1;
    m.action = action;
    m.correlationid = (char *)cid;
    m.has_isack = 1;
    m.isack = 1;
    m.names = names;
    m.n_names = n_names;
    send_record(s, &m);
}

/* ---------------- local subscriptions ---------------- */

static rtopic *topic_get(record_subs *r, const char *name, size_t len, bool create)
{
    rtopic *t = dict_get(r->topics, name, len);
    if (t == NULL && create) {
        t = xcalloc(1, sizeof(*t));
        t->version = -1;
        dict_put(r->topics, name, len, t);
    }
    return t;
}

static void topic_add(rtopic *t, session *s, const char *name, size_t len)
{
    if (dict_get(s->records, name, len) != NULL)
        return;
    if (t->count == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 4;
        t->subs = xrealloc(t->subs, t->cap * sizeof(*t->subs));
    }
    t->subs[t->count++] = s;
    dict_put(s->records, name, len, t);
}

/* Drops the topic when nobody uses it; tells the node when asked to. */
static void topic_release(record_subs *r, rtopic *t, const char *name, size_t len, bool tell_node)
{
    if (t->count > 0 || t->pending > 0)
        return;
    if (tell_node) {
        op o = {.kind = OP_RECORD_UNINTEREST, .name = {name, (uint32_t)len}};
        uint64_t seq;
        links_submit(r->b, &o, &seq);
    }
    dict_del(r->topics, name, len);
    xfree(t->subs);
    xfree(t);
}

static void topic_remove(record_subs *r, session *s, const char *name, size_t len, bool tell_node)
{
    rtopic *t = dict_del(s->records, name, len);
    if (t == NULL)
        return;
    for (uint32_t i = 0; i < t->count; i++)
        if (t->subs[i] == s) {
            t->subs[i] = t->subs[--t->count];
            break;
        }
    topic_release(r, t, name, len, tell_node);
}

/* Ends every local subscription to name (the record was deleted). */
static void topic_clear(record_subs *r, const char *name, size_t len)
{
    rtopic *t = topic_get(r, name, len, false);
    if (t == NULL)
        return;
    for (uint32_t i = 0; i < t->count; i++)
        dict_del(t->subs[i]->records, name, len);
    t->count = 0;
    t->version = -1;
    topic_release(r, t, name, len, false);
}

/* ---------------- client requests ---------------- */

static bool valid_name(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    return len > 0 && len <= OP_NAME_MAX;
}

static bulk *bulk_new(record_subs *r, session *s, int action, const char *cid, size_t n,
                      uint64_t *id)
{
    bulk *k = xcalloc(1, sizeof(*k));
    k->session_id = s->id;
    k->action = action;
    k->correlation_id = cid ? xstrdup(cid) : NULL;
    k->names = xcalloc(n ? n : 1, sizeof(char *));
    k->versions = xcalloc(n ? n : 1, sizeof(int64_t));
    *id = ++r->next_bulk;
    dict_put(r->bulks, id, sizeof(*id), k);
    return k;
}

static void handle_subscribe(session *s, const RecordMessage *m)
{
    record_subs *r = broker_records(s->b);
    int mode = m->action;
    char *single[1] = {m->name};
    char **names = m->n_names ? m->names : single;
    size_t n = m->n_names ? m->n_names : (m->name ? 1 : 0);
    uint64_t bulk_id = 0;
    bulk *k = NULL;
    if (mode == ACT(SUBSCRIBEANDHEAD))
        k = bulk_new(r, s, mode, m->correlationid, n, &bulk_id);
    else
        reply_ack(s, mode, m->correlationid, m->names, m->n_names); /* as deepstream: echo the names */
    for (size_t i = 0; i < n; i++) {
        if (!valid_name(names[i])) {
            reply_error(s, ACT(INVALID_MESSAGE_DATA), names[i], m->correlationid, mode, false);
            continue;
        }
        size_t len = strlen(names[i]);
        rtopic *t = topic_get(r, names[i], len, true);
        op o = {.kind = OP_RECORD_SUBSCRIBE, .name = {names[i], (uint32_t)len},
                .session = s->id, .corr = bulk_id, .action = (uint32_t)mode};
        uint64_t seq;
        if (links_submit(s->b, &o, &seq) < 0) {
            reply_error(s, ACT(MESSAGE_DENIED), names[i], m->correlationid, mode, false);
            topic_release(r, t, names[i], len, false);
            continue;
        }
        t->pending++;
        if (k != NULL)
            k->remaining++;
    }
    if (k != NULL && k->remaining == 0) { /* nothing valid: answer the ack alone */
        reply_ack(s, mode, k->correlation_id, NULL, 0);
        dict_del(r->bulks, &bulk_id, sizeof(bulk_id));
        free_bulk(k);
    }
}

static void handle_unsubscribe(session *s, const RecordMessage *m)
{
    record_subs *r = broker_records(s->b);
    for (size_t i = 0; i < m->n_names; i++)
        topic_remove(r, s, m->names[i], strlen(m->names[i]), true);
    if (m->n_names == 0 && m->name != NULL)
        topic_remove(r, s, m->name, strlen(m->name), true);
    reply_ack(s, ACT(UNSUBSCRIBE), m->correlationid, NULL, 0);
}

/* Sends one operation about m->name for s; answers MESSAGE_DENIED when refused. */
static void submit(session *s, const RecordMessage *m, op *o)
{
    if (!valid_name(m->name)) {
        reply_error(s, ACT(INVALID_MESSAGE_DATA), m->name, m->correlationid, m->action,
                    m->has_iswriteack && m->iswriteack);
        return;
    }
    o->name = (strview){m->name, (uint32_t)strlen(m->name)};
    o->session = s->id;
    uint64_t seq;
    if (links_submit(s->b, o, &seq) < 0)
        reply_error(s, ACT(MESSAGE_DENIED), m->name, m->correlationid, m->action,
                    m->has_iswriteack && m->iswriteack);
}

static void handle_write(session *s, const RecordMessage *m)
{
    const eddy_config *cfg = broker_config(s->b);
    bool ack = m->has_iswriteack && m->iswriteack;
    if (m->data != NULL && strlen(m->data) > (size_t)cfg->record_max_size) {
        reply_error(s, ACT(RECORD_UPDATE_ERROR), m->name, m->correlationid, m->action, ack);
        return;
    }
    op o = {.kind = OP_RECORD_WRITE, .action = (uint32_t)m->action,
            .has_version = m->has_version, .version = m->version,
            .has_data = m->data != NULL, .flags = ack ? OP_FLAG_WRITE_ACK : 0};
    if (m->data != NULL)
        o.data = (strview){m->data, (uint32_t)strlen(m->data)};
    if (m->path != NULL)
        o.path = (strview){m->path, (uint32_t)strlen(m->path)};
    if (o.path.len > OP_NAME_MAX) {
        reply_error(s, ACT(INVALID_MESSAGE_DATA), m->name, m->correlationid, m->action, ack);
        return;
    }
    if (ack && m->correlationid != NULL)
        o.ref = (strview){m->correlationid, (uint32_t)strlen(m->correlationid)};
    submit(s, m, &o);
}

static void handle_notify(session *s, const RecordMessage *m)
{
    record_subs *r = broker_records(s->b);
    uint64_t id;
    bulk *k = bulk_new(r, s, ACT(NOTIFY), m->correlationid, m->n_names, &id);
    for (size_t i = 0; i < m->n_names; i++) {
        k->names[k->count++] = xstrdup(m->names[i]);
        if (!valid_name(m->names[i]))
            continue;
        op o = {.kind = OP_RECORD_NOTIFY, .name = {m->names[i], (uint32_t)strlen(m->names[i])},
                .session = s->id, .corr = id};
        uint64_t seq;
        if (links_submit(s->b, &o, &seq) >= 0)
            k->remaining++;
    }
    if (k->remaining == 0) {
        reply_ack(s, ACT(NOTIFY), k->correlation_id, k->names, k->count);
        dict_del(r->bulks, &id, sizeof(id));
        free_bulk(k);
    }
}

void records_handle(session *s, const ProtobufCMessage *base)
{
    const RecordMessage *m = (const RecordMessage *)base;
    int action = m->has_action ? m->action : 0;
    switch (action) {
    case ACT(SUBSCRIBECREATEANDREAD):
    case ACT(SUBSCRIBEANDREAD):
    case ACT(SUBSCRIBEANDHEAD):
        handle_subscribe(s, m);
        break;
    case ACT(UNSUBSCRIBE):
        handle_unsubscribe(s, m);
        break;
    case ACT(READ):
    case ACT(HEAD): {
        op o = {.kind = OP_RECORD_READ, .action = (uint32_t)action};
        submit(s, m, &o);
        break;
    }
    case ACT(UPDATE):
    case ACT(PATCH):
    case ACT(ERASE):
    case ACT(CREATEANDUPDATE):
    case ACT(CREATEANDPATCH):
        handle_write(s, m);
        break;
    case ACT(DELETE): {
        op o = {.kind = OP_RECORD_DELETE};
        submit(s, m, &o);
        break;
    }
    case ACT(NOTIFY):
        handle_notify(s, m);
        break;
    default:
        if (listen_handle(s, TOPIC__TOPIC_RECORD, action, m->name, m->subscription))
            break;
        reply_unknown_action(s, TOPIC__TOPIC_RECORD, action);
    }
}

void records_session_closed(session *s)
{
    size_t n;
    char **names = dict_keys(s->records, &n);
    for (size_t i = 0; i < n; i++)
        topic_remove(broker_records(s->b), s, names[i], strlen(names[i]), true);
    dict_keys_free(names, n);
}

/* ---------------- answers and deliveries from nodes ---------------- */

static void finish_head_bulk(broker *b, bulk *k)
{
    session *s = broker_session(b, k->session_id);
    if (s == NULL)
        return;
    RecordMessage m = RECORD_MESSAGE__INIT;
    m.has_action = 1;
    m.action = ACT(HEAD_RESPONSE_BULK);
    RecordMessage__VersionsEntry *entries = xcalloc(k->count ? k->count : 1, sizeof(*entries));
    RecordMessage__VersionsEntry **ptrs = xcalloc(k->count ? k->count : 1, sizeof(*ptrs));
    size_t n = 0;
    for (uint32_t i = 0; i < k->count; i++)
        if (k->versions[i] >= 0) {
            record_message__versions_entry__init(&entries[n]);
            entries[n].key = k->names[i];
            entries[n].has_value = 1;
            entries[n].value = (int32_t)k->versions[i];
            ptrs[n] = &entries[n];
            n++;
        }
    if (n > 0) {
        m.versions = ptrs;
        m.n_versions = n;
        send_record(s, &m);
    }
    reply_ack(s, ACT(SUBSCRIBEANDHEAD), k->correlation_id, NULL, 0);
    for (uint32_t i = 0; i < k->count; i++)
        if (k->versions[i] < 0) {
            RecordMessage h = RECORD_MESSAGE__INIT;
            h.has_action = 1;
            h.action = ACT(HEAD_RESPONSE);
            h.name = k->names[i];
            h.has_version = 1;
            h.version = -1;
            send_record(s, &h);
        }
    xfree(entries);
    xfree(ptrs);
}

/* One more answer for bulk id; completes it when it was the last. */
static void bulk_step(broker *b, uint64_t id, const char *name, int64_t version)
{
    record_subs *r = broker_records(b);
    bulk *k = dict_get(r->bulks, &id, sizeof(id));
    if (k == NULL)
        return;
    if (k->action == ACT(SUBSCRIBEANDHEAD)) {
        k->names[k->count] = xstrdup(name);
        k->versions[k->count] = version;
        k->count++;
    }
    if (--k->remaining > 0)
        return;
    dict_del(r->bulks, &id, sizeof(id));
    if (k->action == ACT(SUBSCRIBEANDHEAD))
        finish_head_bulk(b, k);
    else {
        session *s = broker_session(b, k->session_id);
        if (s != NULL)
            reply_ack(s, ACT(NOTIFY), k->correlation_id, k->names, k->count);
    }
    free_bulk(k);
}

static void on_broadcast(broker *b, const op *o, const char *name, const char *data);

/* The state a recovery read brought back: subscribers that missed versions in a
 * lost delivery get the whole record at its current version (the client takes a
 * version jump from the server as the truth), or its deletion. */
static void on_recovered(broker *b, const op *o, const char *name, const char *data)
{
    record_subs *r = broker_records(b);
    rtopic *t = topic_get(r, name, o->name.len, false);
    if (t == NULL || t->count == 0 || o->version == t->version)
        return;
    if (o->version < 0) {
        op gone = {.kind = OP_RECORD_DELETED, .name = o->name};
        log_warn("record-recovered", "name=%s deleted (the deletion was lost in a delivery gap)", name);
        on_broadcast(b, &gone, name, NULL);
    } else if (o->version > t->version) {
        op up = {.kind = OP_RECORD_UPDATE, .name = o->name, .action = ACT(UPDATE),
                 .has_version = true, .version = o->version, .has_data = true, .data = o->data};
        log_warn("record-recovered", "name=%s from_version=%lld to_version=%lld subscribers=%u", name,
                 (long long)t->version, (long long)o->version, t->count);
        on_broadcast(b, &up, name, data);
    } else
        return;
    r->recovered++;
}

static void on_state(broker *b, const op *o, const char *name, const char *data)
{
    record_subs *r = broker_records(b);
    if (o->session == 0 && o->corr == RECOVERY_CORR) {
        on_recovered(b, o, name, data);
        return;
    }
    session *s = broker_session(b, o->session);
    int orig = (int)o->orig;
    bool subscribe = orig == ACT(SUBSCRIBECREATEANDREAD) || orig == ACT(SUBSCRIBEANDREAD) ||
                     orig == ACT(SUBSCRIBEANDHEAD);
    if (subscribe) {
        rtopic *t = topic_get(r, name, o->name.len, true);
        if (t->pending > 0)
            t->pending--;
        if (o->version > t->version)
            t->version = o->version;
        if (s != NULL && !s->closing)
            topic_add(t, s, name, o->name.len);
        else
            topic_release(r, t, name, o->name.len, true);
    }
    if (orig == ACT(SUBSCRIBEANDHEAD)) {
        bulk_step(b, o->corr, name, o->version);
        return;
    }
    if (s == NULL)
        return;
    RecordMessage m = RECORD_MESSAGE__INIT;
    m.has_action = 1;
    m.name = (char *)name;
    if (orig == ACT(HEAD)) {
        m.action = ACT(HEAD_RESPONSE);
        m.has_version = 1;
        m.version = (int32_t)o->version;
    } else if (orig == ACT(READ) && o->version < 0) {
        reply_error(s, ACT(RECORD_NOT_FOUND), name, NULL, ACT(READ), false);
        return;
    } else {
        m.action = ACT(READ_RESPONSE);
        m.has_version = 1;
        m.version = (int32_t)o->version;
        m.data = (char *)(data ? data : "{}");
    }
    send_record(s, &m);
    if (subscribe && (o->flags & OP_FLAG_PROVIDER)) {
        RecordMessage hp = RECORD_MESSAGE__INIT;
        hp.has_action = 1;
        hp.action = ACT(SUBSCRIPTION_HAS_PROVIDER);
        hp.name = (char *)name;
        send_record(s, &hp);
    }
}

static void on_result(broker *b, const op *o, const char *name, const char *data)
{
    if (o->action == ACT(NOTIFY)) {
        bulk_step(b, o->corr, name, 0);
        return;
    }
    session *s = broker_session(b, o->session);
    if (o->action == ACT(DELETE_SUCCESS) && s != NULL)
        topic_remove(broker_records(b), s, name, o->name.len, false);
    if (s == NULL)
        return;
    char *cid = o->ref.len ? xstrndup(o->ref.ptr, o->ref.len) : NULL;
    RecordMessage m = RECORD_MESSAGE__INIT;
    m.has_action = 1;
    m.action = (int)o->action;
    m.name = (char *)name;
    m.correlationid = cid;
    if (o->flags & OP_FLAG_WRITE_ACK) {
        m.has_iswriteack = 1;
        m.iswriteack = 1;
    }
    if (o->flags & OP_FLAG_ERROR) {
        m.has_iserror = 1;
        m.iserror = 1;
    }
    if (o->orig != 0 && o->action != ACT(WRITE_ACKNOWLEDGEMENT) && o->action != ACT(DELETE_SUCCESS)) {
        m.has_originalaction = 1;
        m.originalaction = (int)o->orig;
    }
    if (o->has_version && o->action != ACT(WRITE_ACKNOWLEDGEMENT)) { /* deepstream's ack has none */
        m.has_version = 1;
        m.version = (int32_t)o->version;
    }
    m.data = (char *)data;
    send_record(s, &m);
    xfree(cid);
}

/* Fans one update or deletion out to the local subscribers, encoded once. */
static void on_broadcast(broker *b, const op *o, const char *name, const char *data)
{
    record_subs *r = broker_records(b);
    rtopic *t = topic_get(r, name, o->name.len, false);
    if (t == NULL)
        return;
    char *path = o->path.len ? xstrndup(o->path.ptr, o->path.len) : NULL;
    RecordMessage m = RECORD_MESSAGE__INIT;
    m.has_action = 1;
    m.name = (char *)name;
    if (o->kind == OP_RECORD_DELETED)
        m.action = ACT(DELETED);
    else if (o->kind == OP_RECORD_PROVIDER)
        m.action = (o->flags & OP_FLAG_PROVIDER) ? ACT(SUBSCRIPTION_HAS_PROVIDER)
                                                 : ACT(SUBSCRIPTION_HAS_NO_PROVIDER);
    else {
        m.action = (int)o->action;
        m.has_version = 1;
        m.version = (int32_t)o->version;
        m.path = path;
        m.data = (char *)data;
        if (o->version > t->version)
            t->version = o->version;
    }
    frame *f = frame_encode(TOPIC__TOPIC_RECORD, &m.base);
    bool own = o->broker == broker_id(b) && o->kind != OP_RECORD_PROVIDER;
    for (uint32_t i = 0; i < t->count; i++) {
        session *s = t->subs[i];
        if (own && s->id == o->session)
            continue; /* the writer already has it */
        session_send(s, f);
    }
    frame_unref(f);
    xfree(path);
    if (o->kind == OP_RECORD_DELETED)
        topic_clear(r, name, o->name.len);
}

/* Sends one operation (kind, action, corr from `tmpl`) for every record with
 * local subscribers owned by node li: re-registration and recovery alike. */
struct topic_walk {
    broker *b;
    int li;
    op tmpl;
};

static int submit_for_topic(const void *key, size_t len, void *v, void *arg)
{
    struct topic_walk *w = arg;
    rtopic *t = v;
    if (t->count == 0 || links_owner(w->b, key, len) != w->li)
        return 0;
    op o = w->tmpl;
    o.name = (strview){key, (uint32_t)len};
    uint64_t seq;
    links_submit(w->b, &o, &seq);
    return 0;
}

void records_resync(broker *b, int li)
{
    /* session 0: interest only, the node answers nothing */
    struct topic_walk w = {b, li, {.kind = OP_RECORD_SUBSCRIBE, .action = ACT(SUBSCRIBEANDHEAD)}};
    dict_foreach(broker_records(b)->topics, submit_for_topic, &w);
}

int records_fail(broker *b, const op *o)
{
    record_subs *r = broker_records(b);
    char *name = xstrndup(o->name.ptr, o->name.len);
    int orig = (int)o->action;
    int answered = 0;
    if (o->kind == OP_RECORD_NOTIFY) {
        bulk_step(b, o->corr, name, 0);
        answered = 1;
    } else if (o->kind == OP_RECORD_SUBSCRIBE && o->session != 0) {
        rtopic *t = topic_get(r, name, o->name.len, false);
        if (t != NULL && t->pending > 0)
            t->pending--;
        if (orig == ACT(SUBSCRIBEANDHEAD))
            bulk_step(b, o->corr, name, -1);
        session *s = broker_session(b, o->session);
        if (s != NULL) {
            reply_error(s, ACT(MESSAGE_DENIED), name, NULL, orig, false);
            answered = 1;
        }
        if (t != NULL)
            topic_release(r, t, name, o->name.len, false);
    } else if (o->kind == OP_RECORD_READ || o->kind == OP_RECORD_WRITE || o->kind == OP_RECORD_DELETE) {
        session *s = o->corr == RECOVERY_CORR ? NULL : broker_session(b, o->session);
        if (s != NULL) {
            char *cid = o->ref.len ? xstrndup(o->ref.ptr, o->ref.len) : NULL;
            reply_error(s, ACT(MESSAGE_DENIED), name, cid,
                        o->kind == OP_RECORD_DELETE ? ACT(DELETE) : orig,
                        (o->flags & OP_FLAG_WRITE_ACK) != 0);
            xfree(cid);
            answered = 1;
        }
    }
    xfree(name);
    return answered;
}

void records_recover(broker *b, int li)
{
    struct topic_walk w = {b, li, {.kind = OP_RECORD_READ, .action = ACT(READ), .corr = RECOVERY_CORR}};
    dict_foreach(broker_records(b)->topics, submit_for_topic, &w);
}

uint64_t records_recovered(broker *b)
{
    return broker_records(b)->recovered;
}

void records_deliver(broker *b, const op *o)
{
    /* protobuf-c wants NUL-terminated strings: one copy each, per delivery */
    char *name = xstrndup(o->name.ptr, o->name.len);
    char *data = o->has_data ? xstrndup(o->data.ptr, o->data.len) : NULL;
    switch (o->kind) {
    case OP_RECORD_STATE: on_state(b, o, name, data); break;
    case OP_RECORD_RESULT: on_result(b, o, name, data); break;
    case OP_RECORD_UPDATE:
    case OP_RECORD_DELETED:
    case OP_RECORD_PROVIDER: on_broadcast(b, o, name, data); break;
    }
    xfree(name);
    xfree(data);
}
