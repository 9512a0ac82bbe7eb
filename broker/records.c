/* records.c - the records topic on the broker: translates the client's record
 * messages into operations for the owning node, keeps which local sessions
 * subscribe to which records, and turns the node's answers back into the
 * messages the client expects (READ_RESPONSE, HEAD_RESPONSE_BULK, write
 * acknowledgements, conflicts, DELETED, ...). Listening on records is
 * listen.c's, reached through this module.
 *
 * The broker holds no record data. A session joins a record's local subscriber
 * list only when the node's state for it arrives, so everything it receives
 * after that is newer than what it read; until then its subscribe pins the
 * name. The broker tells the node it lost interest only when no subscriber and
 * no subscribe in flight remain.
 *
 * A client's copy of a record can run ahead of the record: the official
 * client raises its version on every write before the owner answers, so a
 * write that never applies (refused while the node was down, lost with it, or
 * refused for its version) leaves every later write of it refused as
 * INVALID_VERSION. Such a copy is corrected by pushing the record as it is (an
 * UPDATE at its current version, which the client merges: remote wins by
 * default): after an INVALID_VERSION (the owner sends the state with the
 * refusal), and, for writes refused or lost while their node was down, as soon
 * as the node is back (read for that session alone). converge.c says which
 * sessions and names, with its bounds.
 *
 * A record re-read after a delivery gap (on_recovered) is sent on to its
 * subscribers, but never to one whose copy is at its version or newer: each
 * holder's counter is the version of that session's copy as this broker last
 * saw it (its writes, the updates and states sent to it: copy_at). A writer
 * may have written past the state read while the answer was on its way; sent
 * that state, the official client would merge down to it and its next write
 * would be refused as VERSION_EXISTS (a setWithAck never settles). */
#include <string.h>

#include "dict.h"
#include "internal.h"
#include "log.h"
#include "mem.h"
#include "subs.h"

#define ACT(x) RECORD__ACTION__RECORD_##x

/* The corr of the reads that recover records after a delivery gap. */
#define RECOVERY_CORR UINT64_MAX
/* The corr of a read whose state corrects one session's copy (converge). */
#define CORRECT_CORR (UINT64_MAX - 2)

/* What the broker keeps of a record with local subscribers (data in `subs`). */
typedef struct rtopic {
    int64_t version; /* newest version forwarded to the subscribers; -1 none */
} rtopic;

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

typedef struct records {
    const edge *e;
    subs *subs;   /* name -> subscribed sessions; a subscribe in flight pins */
    dict *bulks;  /* id -> bulk */
    uint64_t next_bulk;
    uint64_t recovered; /* records whose subscribers were brought up to date after a gap */
    uint64_t corrected; /* client copies corrected after writes that did not apply */
    converge *conv;     /* which sessions' copies to correct (converge.c) */
    listen_set *listen;
} records;

static void new_topic(void *ctx, strview name, void *data)
{
    ((rtopic *)data)->version = -1;
}

/* Nothing holds the record here any more: the owner stops sending. */
static void lost_interest(void *ctx, strview name, void *data)
{
    records *r = ctx;
    links_submit(r->e->links, &(op){.kind = OP_RECORD_UNINTEREST, .name = name}, NULL);
}

static void *records_create(const edge *e)
{
    records *r = xcalloc(1, sizeof(*r));
    r->e = e;
    r->subs = subs_new(sizeof(rtopic), (subs_hooks){new_topic, lost_interest}, r);
    r->bulks = dict_new();
    r->listen = listen_set_new(e, TOPIC__TOPIC_RECORD);
    r->conv = converge_new();
    return r;
}

static void free_bulk(void *v)
{
    bulk *k = v;
    for (uint32_t i = 0; i < k->count; i++)
        xfree(k->names[i]);
    xfree(k->names);
    xfree(k->versions);
    xfree(k->correlation_id);
    xfree(k);
}

static void records_destroy(void *self)
{
    records *r = self;
    subs_free(r->subs);
    dict_free_with(r->bulks, free_bulk);
    listen_set_free(r->listen);
    converge_free(r->conv);
    xfree(r);
}

/* ---------------- messages to the client ---------------- */

static void reply_error(session *s, int action, const char *name, const char *cid, int orig, bool write_ack)
{
    reply_send(s, TOPIC__TOPIC_RECORD,
               &(client_reply){.action = action, .name = name, .correlation_id = cid, .is_error = true, .orig = orig,
                        .is_write_ack = write_ack});
}

static void reply_ack(session *s, int action, const char *cid, char **names, size_t n_names)
{
    reply_send(s, TOPIC__TOPIC_RECORD,
               &(client_reply){.action = action, .correlation_id = cid, .is_ack = true, .names = names,
                               .n_names = n_names});
}

/* ---------------- client requests ---------------- */

static bool valid_name(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    return len > 0 && len <= OP_NAME_MAX;
}

static bulk *bulk_new(records *r, session *s, int action, const char *cid, size_t n, uint64_t *id)
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

/* The permissions of one subscribe for name: false when the broker denies it
 * (MESSAGE_DENIED sent); otherwise o carries what the owner checks. */
static bool subscribe_permitted(records *r, session *s, int mode, const char *name, const char *cid, op *o)
{
    permit *p = r->e->permit;
    if (!permit_active(p))
        return true;
    enum permit_answer read = permit_check(p, s, PERM_RECORD, PERM_READ, name, NULL);
    if (read == PERMIT_DENY || read == PERMIT_ERROR) {
        reply_error(s, permit_refusal(TOPIC__TOPIC_RECORD, read), name, cid, mode, false);
        return false;
    }
    if (read == PERMIT_AT_NODE)
        permit_to_owner(s, o);
    /* creating a missing record needs `create` too (the owner knows whether it is missing) */
    if (mode == ACT(SUBSCRIBECREATEANDREAD) && permit_check(p, s, PERM_RECORD, PERM_CREATE, name, NULL) != PERMIT_ALLOW)
        o->flags |= OP_FLAG_NO_CREATE;
    if (o->flags != 0) /* the owner may refuse: its answer names the correlation id */
        o->ref = sv_of(cid);
    return true;
}

static void handle_subscribe(records *r, session *s, const RecordMessage *m)
{
    int mode = m->action;
    char *single[1] = {m->name};
    char **names = m->n_names ? m->names : single;
    size_t n = m->n_names ? m->n_names : (m->name ? 1 : 0);
    uint64_t bulk_id = 0;
    bulk *k = NULL;
    size_t denied = 0;
    if (mode == ACT(SUBSCRIBEANDHEAD))
        k = bulk_new(r, s, mode, m->correlationid, n, &bulk_id);
    else
        reply_ack(s, mode, m->correlationid, m->names, m->n_names); /* as deepstream: echo the names */
    for (size_t i = 0; i < n; i++) {
        if (!valid_name(names[i])) {
            reply_error(s, ACT(INVALID_MESSAGE_DATA), names[i], m->correlationid, mode, false);
            continue;
        }
        strview name = sv_of(names[i]);
        op o = {.kind = OP_RECORD_SUBSCRIBE, .name = name, .session = s->id, .corr = bulk_id,
                .action = (uint32_t)mode};
        if (!subscribe_permitted(r, s, mode, names[i], m->correlationid, &o)) {
            denied++;
            continue;
        }
        if (!subs_holds(r->subs, name, s, 0) && /* limits.maxSubscriptionsPerConnection: held and asked for */
            !limits_subscribe(r->e->limits, s, TOPIC__TOPIC_RECORD, subs_held(r->subs, s) + s->subs_in_flight)) {
            reply_error(s, ACT(MESSAGE_DENIED), names[i], m->correlationid, mode, false);
            denied++;
            continue;
        }
        subs_pin(r->subs, name); /* until the state comes back */
        if (links_submit(r->e->links, &o, NULL) < 0) {
            reply_error(s, ACT(MESSAGE_DENIED), names[i], m->correlationid, mode, false);
            subs_unpin(r->subs, name, true); /* the node never heard of it */
            continue;
        }
        s->subs_in_flight++;
        if (k != NULL)
            k->remaining++;
    }
    if (k != NULL && k->remaining == 0) { /* nothing valid: answer the ack alone */
        if (denied < n) /* as deepstream: every name denied, no answer */
            reply_ack(s, mode, k->correlation_id, NULL, 0);
        dict_del(r->bulks, &bulk_id, sizeof(bulk_id));
        free_bulk(k);
    }
}

static void handle_unsubscribe(records *r, session *s, const RecordMessage *m)
{
    for (size_t i = 0; i < m->n_names; i++)
        subs_remove(r->subs, sv_of(m->names[i]), s, 0, false);
    if (m->n_names == 0 && m->name != NULL)
        subs_remove(r->subs, sv_of(m->name), s, 0, false);
    reply_ack(s, ACT(UNSUBSCRIBE), m->correlationid, NULL, 0);
}

/* The permission for action on m->name: false when the broker denies it
 * (MESSAGE_DENIED sent); otherwise o carries what the owner checks. */
static bool permitted(records *r, session *s, const RecordMessage *m, enum perm_action action, op *o)
{
    enum permit_answer a = permit_check(r->e->permit, s, PERM_RECORD, action, m->name, m->data);
    if (a == PERMIT_DENY || a == PERMIT_ERROR) {
        reply_error(s, permit_refusal(TOPIC__TOPIC_RECORD, a), m->name, m->correlationid, m->action,
                    m->has_iswriteack && m->iswriteack);
        return false;
    }
    if (a == PERMIT_AT_NODE)
        permit_to_owner(s, o);
    return true;
}

/* What submit did: sent, refused here (answered), or not sent because its
 * node's link refused it (down, or its queue full: answered MESSAGE_DENIED). */
enum submitted { SUBMIT_SENT = 0, SUBMIT_REFUSED, SUBMIT_UNSENT };

/* Sends one operation about m->name for s after its permission (action);
 * answers the refusal otherwise. */
static enum submitted submit(records *r, session *s, const RecordMessage *m, enum perm_action action, op *o)
{
    bool write_ack = m->has_iswriteack && m->iswriteack;
    if (!valid_name(m->name)) {
        reply_error(s, ACT(INVALID_MESSAGE_DATA), m->name, m->correlationid, m->action, write_ack);
        return SUBMIT_REFUSED;
    }
    if (!permitted(r, s, m, action, o))
        return SUBMIT_REFUSED;
    o->name = sv_of(m->name);
    o->session = s->id;
    if (links_submit(r->e->links, o, NULL) < 0) {
        reply_error(s, ACT(MESSAGE_DENIED), m->name, m->correlationid, m->action, write_ack);
        return SUBMIT_UNSENT;
    }
    return SUBMIT_SENT;
}

/* Whether s, a websocket client (an HTTP request keeps no copy), holds name:
 * only then has it a copy to correct. */
static bool has_copy(records *r, const session *s, strview name)
{
    return s != NULL && s->sink == NULL && !s->closing && name.len > 0 && subs_holds(r->subs, name, s, 0);
}

/* s's copy of name is at version now (it wrote it, or was sent it): its
 * holder's counter, which on_recovered reads. Nothing when s holds no copy. */
static void copy_at(records *r, const session *s, strview name, int64_t version)
{
    subs_holder *h = version > 0 && s->sink == NULL ? subs_find(r->subs, name, s, 0) : NULL;
    if (h != NULL)
        h->count = (uint64_t)version;
}

/* s's write to name did not apply; its client raised its version anyway.
 * lost: its node was down (refused by the link, or gone with it): the copy is
 * corrected when the node is back. Otherwise the next INVALID_VERSION
 * correction goes out (converge_rearm). */
static void write_refused(records *r, session *s, strview name, bool lost)
{
    if (!has_copy(r, s, name))
        return;
    if (lost) {
        converge_lost(r->conv, s->id, name, links_owner(r->e->links, name));
        s->converging = true;
    } else
        converge_rearm(r->conv, s->id, name);
}

/* Who writes: the owner hands it to a validator (user id and serverData),
 * when a validator validates the record (the broker cannot know which do). A
 * user id longer than a name travels as none. */
static void writer_identity(const session *s, op *o)
{
    if (s->user != NULL && strlen(s->user) <= OP_NAME_MAX)
        o->user = sv_of(s->user);
    if (s->server_data != NULL)
        o->meta = sv_of(s->server_data);
}

static void handle_write(records *r, session *s, const RecordMessage *m)
{
    bool write_ack = m->has_iswriteack && m->iswriteack;
    if (s->converging) /* a correction read out for the name is older now */
        converge_wrote(r->conv, s->id, sv_of(m->name));
    if (m->has_version) /* the client's copy is at the version it writes, applied or not */
        copy_at(r, s, sv_of(m->name), m->version);
    if (m->data != NULL && strlen(m->data) > (size_t)r->e->cfg->record_max_size) {
        reply_error(s, ACT(RECORD_UPDATE_ERROR), m->name, m->correlationid, m->action, write_ack);
        write_refused(r, s, sv_of(m->name), false);
        return;
    }
    op o = {.kind = OP_RECORD_WRITE, .action = (uint32_t)m->action, .has_version = m->has_version,
            .version = m->version, .has_data = m->data != NULL, .data = sv_of(m->data),
            .path = sv_of(m->path), .flags = write_ack ? OP_FLAG_WRITE_ACK : 0};
    if (o.path.len > OP_NAME_MAX || (write_ack && sv_of(m->correlationid).len > OP_NAME_MAX)) {
        reply_error(s, ACT(INVALID_MESSAGE_DATA), m->name, m->correlationid, m->action, write_ack);
        write_refused(r, s, sv_of(m->name), false);
        return;
    }
    if (write_ack)
        o.ref = sv_of(m->correlationid);
    writer_identity(s, &o);
    /* as deepstream: CREATEANDUPDATE/CREATEANDPATCH need `create` and `write`, an ERASE `delete` */
    bool creates = m->action == ACT(CREATEANDUPDATE) || m->action == ACT(CREATEANDPATCH);
    if (creates && valid_name(m->name) && !permitted(r, s, m, PERM_CREATE, &o)) {
        write_refused(r, s, sv_of(m->name), false);
        return;
    }
    enum submitted sent = submit(r, s, m, m->action == ACT(ERASE) ? PERM_DELETE : PERM_WRITE, &o);
    if (sent != SUBMIT_SENT) /* (nothing on the way of a write that goes out) */
        write_refused(r, s, sv_of(m->name), sent == SUBMIT_UNSENT);
}

static void handle_notify(records *r, session *s, const RecordMessage *m)
{
    uint64_t id;
    bulk *k = bulk_new(r, s, ACT(NOTIFY), m->correlationid, m->n_names, &id);
    size_t denied = 0;
    for (size_t i = 0; i < m->n_names; i++) {
        enum permit_answer a = valid_name(m->names[i])
                                   ? permit_check(r->e->permit, s, PERM_RECORD, PERM_NOTIFY, m->names[i], NULL)
                                   : PERMIT_ALLOW;
        if (a != PERMIT_ALLOW) { /* (notify reads no record: AT_NODE only for a cross-reference, denied) */
            reply_error(s, permit_refusal(TOPIC__TOPIC_RECORD, a == PERMIT_ERROR ? a : PERMIT_DENY), m->names[i],
                        m->correlationid, ACT(NOTIFY), false);
            denied++;
            continue;
        }
        k->names[k->count++] = xstrdup(m->names[i]);
        if (!valid_name(m->names[i]))
            continue;
        op o = {.kind = OP_RECORD_NOTIFY, .name = sv_of(m->names[i]), .session = s->id, .corr = id};
        if (links_submit(r->e->links, &o, NULL) >= 0)
            k->remaining++;
    }
    if (k->remaining == 0) {
        if (denied == 0 || denied < m->n_names) /* as deepstream: every name denied, no ack */
            reply_ack(s, ACT(NOTIFY), k->correlation_id, k->names, k->count);
        dict_del(r->bulks, &id, sizeof(id));
        free_bulk(k);
    }
}

static void records_handle(void *self, session *s, const ProtobufCMessage *base, int action)
{
    records *r = self;
    const RecordMessage *m = (const RecordMessage *)base;
    switch (action) {
    case ACT(SUBSCRIBECREATEANDREAD):
    case ACT(SUBSCRIBEANDREAD):
    case ACT(SUBSCRIBEANDHEAD):
        handle_subscribe(r, s, m);
        break;
    case ACT(UNSUBSCRIBE):
        handle_unsubscribe(r, s, m);
        break;
    case ACT(READ):
    case ACT(HEAD): {
        op o = {.kind = OP_RECORD_READ, .action = (uint32_t)action};
        submit(r, s, m, PERM_READ, &o);
        break;
    }
    case ACT(UPDATE):
    case ACT(PATCH):
    case ACT(ERASE):
    case ACT(CREATEANDUPDATE):
    case ACT(CREATEANDPATCH):
        handle_write(r, s, m);
        break;
    case ACT(DELETE): {
        op o = {.kind = OP_RECORD_DELETE};
        writer_identity(s, &o);
        submit(r, s, m, PERM_DELETE, &o);
        break;
    }
    case ACT(NOTIFY):
        handle_notify(r, s, m);
        break;
    default:
        if (!listen_handle(r->listen, s, action, m->name, m->subscription))
            reply_unknown_action(s, TOPIC__TOPIC_RECORD, action);
    }
}

static void records_session_closed(void *self, session *s)
{
    records *r = self;
    subs_remove_holder(r->subs, s);
    listen_session_closed(r->listen, s);
    converge_forget(r->conv, s->id);
}

/* ---------------- answers and deliveries from nodes ---------------- */

static void finish_head_bulk(records *r, bulk *k)
{
    session *s = sessions_get(r->e->sessions, k->session_id);
    if (s == NULL)
        return;
    RecordMessage m = RECORD_MESSAGE__INIT; /* the versions map: a shape of its own */
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
        session_send_msg(s, TOPIC__TOPIC_RECORD, &m.base);
    }
    reply_ack(s, ACT(SUBSCRIBEANDHEAD), k->correlation_id, NULL, 0);
    for (uint32_t i = 0; i < k->count; i++)
        if (k->versions[i] < 0)
            reply_send(s, TOPIC__TOPIC_RECORD, &(client_reply){.action = ACT(HEAD_RESPONSE), .name = k->names[i],
                                                        .has_version = true, .version = -1});
    xfree(entries);
    xfree(ptrs);
}

/* One more answer for bulk id (name NULL: denied, left out); completes it
 * when it was the last. */
static void bulk_step(records *r, uint64_t id, const char *name, int64_t version)
{
    bulk *k = dict_get(r->bulks, &id, sizeof(id));
    if (k == NULL)
        return;
    if (k->action == ACT(SUBSCRIBEANDHEAD) && name != NULL) {
        k->names[k->count] = xstrdup(name);
        k->versions[k->count] = version;
        k->count++;
    }
    if (--k->remaining > 0)
        return;
    dict_del(r->bulks, &id, sizeof(id));
    if (k->action == ACT(SUBSCRIBEANDHEAD))
        finish_head_bulk(r, k);
    else {
        session *s = sessions_get(r->e->sessions, k->session_id);
        if (s != NULL)
            reply_ack(s, ACT(NOTIFY), k->correlation_id, k->names, k->count);
    }
    free_bulk(k);
}

static uint32_t fan_out(records *r, const op *o, const char *name, const char *data, bool recovered);

/* The state a recovery read brought back: subscribers that missed versions in a
 * lost delivery get the whole record at its current version (the client takes a
 * version jump from the server as the truth), or its deletion; not those whose
 * copy is at that version or newer (fan_out). */
static void on_recovered(records *r, const op *o, const char *name, const char *data)
{
    uint32_t subscribers;
    subs_holders(r->subs, o->name, &subscribers);
    rtopic *t = subs_data(r->subs, o->name);
    if (subscribers == 0 || o->version == t->version)
        return;
    if (o->version < 0) {
        op gone = {.kind = OP_RECORD_DELETED, .name = o->name};
        log_warn("record-recovered", "name=%s deleted (the deletion was lost in a delivery gap)", name);
        fan_out(r, &gone, name, NULL, true);
    } else if (o->version > t->version) {
        op up = {.kind = OP_RECORD_UPDATE, .name = o->name, .action = ACT(UPDATE),
                 .has_version = true, .version = o->version, .has_data = true, .data = o->data};
        int64_t from = t->version;
        uint32_t sent = fan_out(r, &up, name, data, true);
        log_warn("record-recovered", "name=%s from_version=%lld to_version=%lld subscribers=%u up_to_date=%u", name,
                 (long long)from, (long long)o->version, subscribers, subscribers - sent);
    } else
        return;
    r->recovered++;
}

static bool is_subscribe(int action)
{
    return action == ACT(SUBSCRIBECREATEANDREAD) || action == ACT(SUBSCRIBEANDREAD) ||
           action == ACT(SUBSCRIBEANDHEAD);
}

static void push_state(records *r, session *s, const char *name, int64_t version, const char *data);

/* The state a correction read (CORRECT_CORR, push_due) brought back for one
 * session: pushed unless the session wrote the name since the read went out
 * (the state is older than its copy: held back) or the copy was corrected
 * meanwhile (converge_correct). */
static void on_correct_read(records *r, const op *o, const char *name, const char *data)
{
    session *s = sessions_get(r->e->sessions, o->session);
    if (!converge_read_done(r->conv, o->session, o->name)) {
        log_info("records-correction-held", "session=%llu name=%s version=%lld (written since the read)",
                 (unsigned long long)o->session, name, (long long)o->version);
        return;
    }
    if ((o->flags & OP_FLAG_ERROR) || o->version < 0 || data == NULL || !has_copy(r, s, o->name))
        return; /* (a deleted record: its deletion reached the subscribers) */
    if (converge_correct(r->conv, s->id, o->name, links_owner(r->e->links, o->name)))
        push_state(r, s, name, o->version, data);
}

static void on_state(records *r, const op *o, const char *name, const char *data)
{
    if (o->session == 0 && o->corr == RECOVERY_CORR) {
        on_recovered(r, o, name, data);
        return;
    }
    if (o->corr == CORRECT_CORR) {
        on_correct_read(r, o, name, data);
        return;
    }
    if (o->corr == GATE_CORR) { /* a record a permission rule reads (gate.c) */
        session *g = sessions_get(r->e->sessions, o->session);
        bool exists = o->version >= 0 && data != NULL;
        if (g != NULL && gate_fetched(g, o->name, exists ? data : NULL, exists ? strlen(data) : 0,
                                      !(o->flags & OP_FLAG_ERROR)))
            r->e->resume(r->e->resume_ctx, g);
        return;
    }
    session *s = sessions_get(r->e->sessions, o->session);
    int orig = (int)o->orig;
    bool subscribe = is_subscribe(orig);
    if (subscribe && s != NULL && s->subs_in_flight > 0)
        s->subs_in_flight--;
    if (o->flags & OP_FLAG_ERROR) { /* the owner refused it (permissions): no subscription */
        if (subscribe)
            subs_unpin(r->subs, o->name, false);
        if (s != NULL) {
            char *cid = o->ref.len ? xstrndup(o->ref.ptr, o->ref.len) : NULL;
            reply_error(s, (int)o->action, name, cid, orig, false);
            xfree(cid);
        }
        if (orig == ACT(SUBSCRIBEANDHEAD))
            bulk_step(r, o->corr, NULL, -1);
        return;
    }
    if (subscribe) {
        rtopic *t = subs_data(r->subs, o->name);
        if (t == NULL) /* not pinned (a duplicate answer): as if it were */
            t = subs_pin(r->subs, o->name);
        if (o->version > t->version)
            t->version = o->version;
        if (s != NULL && !s->closing)
            subs_add(r->subs, o->name, s, 0);
        subs_unpin(r->subs, o->name, false); /* nobody left (the session went): tell the node */
    }
    if (orig == ACT(SUBSCRIBEANDHEAD)) {
        bulk_step(r, o->corr, name, o->version);
        return;
    }
    if (s == NULL)
        return;
    if (orig == ACT(READ) && o->version < 0) {
        reply_error(s, ACT(RECORD_NOT_FOUND), name, NULL, ACT(READ), false);
        return;
    }
    if (orig == ACT(HEAD))
        reply_send(s, TOPIC__TOPIC_RECORD,
                   &(client_reply){.action = ACT(HEAD_RESPONSE), .name = name, .has_version = true,
                            .version = (int32_t)o->version});
    else
        reply_send(s, TOPIC__TOPIC_RECORD,
                   &(client_reply){.action = ACT(READ_RESPONSE), .name = name, .has_version = true,
                            .version = (int32_t)o->version, .data = data ? data : "{}"});
    if (subscribe && (o->flags & OP_FLAG_PROVIDER))
        reply_send(s, TOPIC__TOPIC_RECORD, &(client_reply){.action = ACT(SUBSCRIPTION_HAS_PROVIDER), .name = name});
}

/* Sends s the record as it is: an update at its current version, which the
 * client takes as a conflict unless it is the version after its own, and
 * merges (remote wins by default), so its copy is the server's again; or,
 * version < 0 (data NULL), its deletion. */
static void push_state(records *r, session *s, const char *name, int64_t version, const char *data)
{
    copy_at(r, s, sv_of(name), version);
    if (version < 0 || data == NULL)
        reply_send(s, TOPIC__TOPIC_RECORD, &(client_reply){.action = ACT(DELETED), .name = name});
    else
        reply_send(s, TOPIC__TOPIC_RECORD,
                   &(client_reply){.action = ACT(UPDATE), .name = name, .has_version = true,
                                   .version = (int32_t)version, .data = data});
    r->corrected++;
}

/* A refused write (OP_FLAG_CORRECT): the writer hears the refusal as
 * deepstream words a denial (MESSAGE_DENIED: setWithAck rejects, a plain set
 * is the record's error event; an HTTP request gets the reason too, as the
 * error's data, which jif.c answers as "reason"), then,
 * when it has the record, the record as it is (push_state). Its writes
 * refused as INVALID_VERSION after this were sent before it: not corrected
 * again (converge_correct). */
static void correct_writer(records *r, session *s, const op *o, const char *name, const char *cid, const char *data)
{
    char *reason = o->meta.len ? xstrndup(o->meta.ptr, o->meta.len) : NULL;
    reply_send(s, TOPIC__TOPIC_RECORD,
               &(client_reply){.action = (int)o->action, .name = name, .correlation_id = (char *)cid,
                               .is_write_ack = (o->flags & OP_FLAG_WRITE_ACK) != 0, .is_error = true,
                               .orig = (int)o->orig, .data = s->sink != NULL ? reason : NULL});
    xfree(reason);
    if (!has_copy(r, s, o->name))
        return;
    converge_rearm(r->conv, s->id, o->name); /* this one goes out whatever went before */
    s->converging = true;
    converge_correct(r->conv, s->id, o->name, links_owner(r->e->links, o->name));
    push_state(r, s, name, o->version, data);
}

/* The record's state after an INVALID_VERSION refusal of s's write (a RESULT
 * with OP_FLAG_CORRECT alone, node/records.c correct_ahead): s's copy is ahead
 * of the record; pushed unless a correction went out since s's last other
 * refused write to it (then this write was sent before the client had it). */
static void correct_ahead(records *r, session *s, const op *o, const char *name, const char *data)
{
    if (o->version < 0 || data == NULL || !has_copy(r, s, o->name))
        return;
    s->converging = true;
    if (converge_correct(r->conv, s->id, o->name, links_owner(r->e->links, o->name)))
        push_state(r, s, name, o->version, data);
}

static bool is_write(uint32_t action)
{
    return action == ACT(UPDATE) || action == ACT(PATCH) || action == ACT(ERASE) || action == ACT(CREATEANDUPDATE) ||
           action == ACT(CREATEANDPATCH);
}

static void on_result(records *r, const op *o, const char *name, const char *data)
{
    if (o->action == ACT(NOTIFY)) {
        bulk_step(r, o->corr, name, 0);
        return;
    }
    session *s = sessions_get(r->e->sessions, o->session);
    if (s == NULL)
        return;
    if (o->action == ACT(DELETE_SUCCESS))
        subs_remove(r->subs, o->name, s, 0, true);
    if ((o->flags & (OP_FLAG_CORRECT | OP_FLAG_ERROR)) == OP_FLAG_CORRECT) { /* a correction alone */
        correct_ahead(r, s, o, name, data);
        return;
    }
    char *cid = o->ref.len ? xstrndup(o->ref.ptr, o->ref.len) : NULL;
    bool acknowledged = o->action == ACT(WRITE_ACKNOWLEDGEMENT);
    if (o->flags & OP_FLAG_CORRECT) { /* a validator refused a write the writer applied locally */
        correct_writer(r, s, o, name, cid, data);
        xfree(cid);
        return;
    }
    if ((o->flags & OP_FLAG_ERROR) && is_write(o->orig) && o->action != ACT(INVALID_VERSION) &&
        o->action != ACT(VERSION_EXISTS)) /* (VERSION_EXISTS: the client merges the state it carries) */
        write_refused(r, s, o->name, false);
    if (o->action == ACT(VERSION_EXISTS) && o->has_version) /* the client merges to the state it carries */
        copy_at(r, s, o->name, o->version);
    reply_send(s, TOPIC__TOPIC_RECORD,
               &(client_reply){.action = (int)o->action, .name = name, .correlation_id = cid,
                        .is_write_ack = (o->flags & OP_FLAG_WRITE_ACK) != 0,
                        .is_error = (o->flags & OP_FLAG_ERROR) != 0,
                        .orig = acknowledged || o->action == ACT(DELETE_SUCCESS) ? 0 : (int)o->orig,
                        /* deepstream's ack has none; the HTTP API tells the version written */
                        .has_version = o->has_version && (!acknowledged || s->sink != NULL),
                        .version = (int32_t)o->version, .data = data});
    xfree(cid);
}

/* Fans one update or deletion out to the local subscribers, encoded once;
 * returns to how many it went. Each holder's counter follows its copy's
 * version (copy_at). A recovered update (a re-read's state) skips the holders
 * whose copy is at its version or newer. */
static uint32_t fan_out(records *r, const op *o, const char *name, const char *data, bool recovered)
{
    uint32_t n, sent = 0;
    subs_holder *h = subs_holders(r->subs, o->name, &n);
    rtopic *t = subs_data(r->subs, o->name);
    if (t == NULL)
        return 0;
    client_reply m = {.name = name};
    char *path = NULL;
    if (o->kind == OP_RECORD_DELETED)
        m.action = ACT(DELETED);
    else if (o->kind == OP_RECORD_PROVIDER)
        m.action = (o->flags & OP_FLAG_PROVIDER) ? ACT(SUBSCRIPTION_HAS_PROVIDER) : ACT(SUBSCRIPTION_HAS_NO_PROVIDER);
    else {
        path = o->path.len ? xstrndup(o->path.ptr, o->path.len) : NULL;
        m.action = (int)o->action;
        m.has_version = true;
        m.version = (int32_t)o->version;
        m.path = path;
        m.data = data;
        if (o->version > t->version)
            t->version = o->version;
    }
    frame *f = reply_frame(TOPIC__TOPIC_RECORD, &m);
    bool own = o->broker == r->e->broker_id && o->kind != OP_RECORD_PROVIDER;
    bool versioned = m.has_version && o->version > 0;
    for (uint32_t i = 0; i < n; i++) {
        session *s = h[i].ptr;
        if (recovered && versioned && h[i].count >= (uint64_t)o->version)
            continue; /* its copy is as new (it wrote past the state read) */
        if (!own || s->id != o->session) { /* the writer already has it */
            session_send(s, f);
            if (versioned)
                h[i].count = (uint64_t)o->version;
            sent++;
        } else if (s->converging) /* its write applied: its copy is the record's */
            converge_applied(r->conv, s->id, o->name);
    }
    frame_unref(f);
    xfree(path);
    if (o->kind == OP_RECORD_DELETED) { /* every local subscription ends with the record */
        subs_clear(r->subs, o->name);
        if ((t = subs_data(r->subs, o->name)) != NULL) /* a subscribe in flight keeps it */
            t->version = -1;
    }
    return sent;
}

static void on_broadcast(records *r, const op *o, const char *name, const char *data)
{
    fan_out(r, o, name, data, false);
}

/* Reads name for s alone (CORRECT_CORR): its state corrects s's copy
 * (on_correct_read). Pending again when its node cannot take it. */
static void read_to_correct(records *r, session *s, strview name)
{
    if (!has_copy(r, s, name))
        return;
    op o = {.kind = OP_RECORD_READ, .action = ACT(READ), .name = name, .session = s->id, .corr = CORRECT_CORR};
    int li = links_owner(r->e->links, name);
    if (links_submit(r->e->links, &o, NULL) < 0)
        converge_lost(r->conv, s->id, name, li);
    else
        converge_reading(r->conv, s->id, name, li);
}

struct held_on {
    records *r;
    session *s;
    int li;
};

static int read_held(void *arg, strview name)
{
    struct held_on *h = arg;
    if (links_owner(h->r->e->links, name) == h->li)
        read_to_correct(h->r, h->s, name);
    return 0;
}

/* Node li is back: every session with a write refused or lost while it was
 * down gets those records read for it, to correct its copy; a session that
 * overflowed, every record it holds from li. */
static void push_due(records *r, int li)
{
    size_t n;
    converge_due *due = converge_take(r->conv, li, &n);
    for (size_t i = 0; i < n; i++) {
        session *s = sessions_get(r->e->sessions, due[i].session);
        if (s == NULL)
            continue;
        if (due[i].name != NULL)
            read_to_correct(r, s, sv_of(due[i].name));
        else
            subs_foreach_held(r->subs, s, read_held, &(struct held_on){r, s, li});
    }
    if (n > 0)
        log_info("records-converge", "node_link=%d reads=%zu (copies of writers refused while it was down)", li, n);
    converge_due_free(due, n);
}

static void records_resync(void *self, int li)
{
    records *r = self;
    /* session 0: interest only, the node answers nothing */
    links_resend(r->e->links, li, r->subs, &(op){.kind = OP_RECORD_SUBSCRIBE, .action = ACT(SUBSCRIBEANDHEAD)},
                 0);
    listen_resync(r->listen, li);
    push_due(r, li);
}

static void records_recover(void *self, int li)
{
    records *r = self;
    links_resend(r->e->links, li, r->subs,
                 &(op){.kind = OP_RECORD_READ, .action = ACT(READ), .corr = RECOVERY_CORR}, 0);
    push_due(r, li);
}

/* o (a record request) will not be answered: its node went down. Answers the
 * requester with an error; returns 1 when there was one to answer. */
static int records_fail(void *self, const op *o)
{
    records *r = self;
    char *name = xstrndup(o->name.ptr, o->name.len);
    int orig = (int)o->action;
    int answered = 0;
    if (o->kind == OP_RECORD_READ && o->corr == GATE_CORR) { /* its rules fail (fail closed) */
        session *g = sessions_get(r->e->sessions, o->session);
        if (g != NULL && gate_fetched(g, o->name, NULL, 0, false))
            r->e->resume(r->e->resume_ctx, g);
        xfree(name);
        return g != NULL;
    }
    if (o->kind == OP_RECORD_WRITE || (o->kind == OP_RECORD_READ && o->corr == CORRECT_CORR)) {
        /* its writer's copy may be ahead now: corrected when the node is back */
        session *w = sessions_get(r->e->sessions, o->session);
        if (o->kind == OP_RECORD_READ && o->session != 0)
            converge_read_done(r->conv, o->session, o->name);
        if (w != NULL && o->session != 0)
            write_refused(r, w, o->name, true);
        if (o->kind == OP_RECORD_READ) { /* a correction's read: nobody waits for it */
            xfree(name);
            return 0;
        }
    }
    if (o->kind == OP_RECORD_NOTIFY) {
        bulk_step(r, o->corr, name, 0);
        answered = 1;
    } else if (o->kind == OP_RECORD_SUBSCRIBE && o->session != 0) {
        if (orig == ACT(SUBSCRIBEANDHEAD))
            bulk_step(r, o->corr, name, -1);
        session *s = sessions_get(r->e->sessions, o->session);
        if (s != NULL) {
            reply_error(s, ACT(MESSAGE_DENIED), name, NULL, orig, false);
            answered = 1;
            if (s->subs_in_flight > 0)
                s->subs_in_flight--;
        }
        subs_unpin(r->subs, o->name, true);
    } else if (o->kind == OP_RECORD_READ || (o->kind == OP_RECORD_WRITE && (o->flags & OP_FLAG_WRITE_ACK))) {
        /* (a write without an acknowledgement, like a delete, waits for no answer) */
        session *s = o->corr == RECOVERY_CORR ? NULL : sessions_get(r->e->sessions, o->session);
        if (s != NULL) {
            char *cid = o->ref.len ? xstrndup(o->ref.ptr, o->ref.len) : NULL;
            reply_error(s, ACT(MESSAGE_DENIED), name, cid, orig, (o->flags & OP_FLAG_WRITE_ACK) != 0);
            xfree(cid);
            answered = 1;
        }
    }
    xfree(name);
    return answered;
}

static void records_metrics(void *self, FILE *f)
{
    records *r = self;
    fprintf(f, "# TYPE eddy_records_recovered_total counter\neddy_records_recovered_total %llu\n",
            (unsigned long long)r->recovered);
    fprintf(f, "# TYPE eddy_records_corrected_total counter\neddy_records_corrected_total %llu\n",
            (unsigned long long)r->corrected);
    fprintf(f, "# TYPE eddy_records_converging_sessions gauge\neddy_records_converging_sessions %zu\n",
            converge_sessions(r->conv));
    fprintf(f, "# TYPE eddy_records_converge_overflows_total counter\neddy_records_converge_overflows_total %llu\n",
            (unsigned long long)converge_overflows(r->conv));
    fprintf(f, "# TYPE eddy_records_corrections_held_total counter\neddy_records_corrections_held_total %llu\n",
            (unsigned long long)converge_held(r->conv));
}

static void records_deliver(void *self, const op *o)
{
    records *r = self;
    if (o->kind == OP_LISTEN_MESSAGE) {
        listen_deliver(r->listen, o);
        return;
    }
    /* protobuf-c wants NUL-terminated strings: one copy each, per delivery */
    char *name = xstrndup(o->name.ptr, o->name.len);
    char *data = o->has_data ? xstrndup(o->data.ptr, o->data.len) : NULL;
    switch (o->kind) {
    case OP_RECORD_STATE: on_state(r, o, name, data); break;
    case OP_RECORD_RESULT: on_result(r, o, name, data); break;
    default: on_broadcast(r, o, name, data); break; /* UPDATE, DELETED, PROVIDER */
    }
    xfree(name);
    xfree(data);
}

const topic_module records_module = {
    .name = "records",
    .topic = TOPIC__TOPIC_RECORD,
    .message = &record_message__descriptor,
    .deliveries = (const uint32_t[]){OP_RECORD_STATE, OP_RECORD_RESULT, OP_RECORD_UPDATE, OP_RECORD_DELETED,
                                     OP_RECORD_PROVIDER, OP_LISTEN_MESSAGE, 0},
    .requests = (const uint32_t[]){OP_RECORD_SUBSCRIBE, OP_RECORD_READ, OP_RECORD_WRITE, OP_RECORD_NOTIFY, 0},
    .create = records_create,
    .destroy = records_destroy,
    .handle = records_handle,
    .deliver = records_deliver,
    .fail = records_fail,
    .session_closed = records_session_closed,
    .resync = records_resync,
    .recover = records_recover,
    .metrics = records_metrics,
};
