/* records.c - the node's record engine: the one writer of every record in the
 * shards this node owns.
 *
 * Each record is applied by the executor thread alone, so versions are strictly
 * sequential. A record not in memory is loaded by the storage thread first; the
 * operations that arrive meanwhile wait on the record, in order. So do those
 * that arrive while the record is held (record_hold: something in flight must
 * finish first, such as a write out for validation), and a marker
 * (record_mark) waits in the same queue until everything before it is done:
 * whoever set it then holds the record, at its place in the order. A write checks
 * the version (current+1, or -1 for "next"), computes the new document (whole,
 * or a path patch on a parsed tree), takes the next commit ticket and goes to
 * the storage thread. Everything the write causes (the update to interested
 * peers, the writer's acknowledgement) waits in the outbox until its ticket is
 * durable, and so does every later answer about records, so nobody ever sees
 * state that a crash could take back. With cluster.raft an item about a
 * record also leaves only while this node may serve its shard (meta_may_serve:
 * its primary in the applied map, under a lease): it waits while the lease is
 * out, and is dropped once the shard moved (the writer's broker answers it).
 * A shard gained or lost drops the cached records of it (records_shards_moved).
 * Record data stays opaque text except for validation and path patches.
 *
 * The cache holds every record with interest or uncommitted writes, and others
 * up to storage.cacheSize bytes (least recently used leave first). */
#include <string.h>
#include <sys/queue.h>

#include "deepstream.pb-c.h"
#include "dict.h"
#include "internal.h"
#include "jsonpath.h"
#include "linktls.h"
#include "log.h"
#include "mem.h"

#define ACT(x) RECORD__ACTION__RECORD_##x

/* Appends item to the singly linked list (head, tail) through its next field. */
#define LIST_APPEND(head, tail, item)                                                              \
    do {                                                                                           \
        (item)->next = NULL;                                                                       \
        if ((tail) != NULL)                                                                        \
            (tail)->next = (item);                                                                 \
        else                                                                                       \
            (head) = (item);                                                                       \
        (tail) = (item);                                                                           \
    } while (0)

struct record;

/* What waits on a record: an operation, or a marker (reached != NULL). */
typedef struct pending_op {
    struct pending_op *next;
    peer *from;
    void (*reached)(struct record_table *t, struct record *r, void *ctx, bool load_failed); /* a marker */
    void *ctx;
    op o;
    char bytes[]; /* the op's strings */
} pending_op;

typedef struct record {
    char *name;
    uint32_t name_len;
    bool loading;
    uint32_t holds; /* record_hold minus record_release: while any, what arrives waits */
    bool unreadable; /* its load failed: what waits is refused, then it is forgotten (never written blind) */
    int64_t version; /* -1: does not exist */
    char *data;      /* NULL when it does not exist */
    size_t data_len;
    pending_op *wait_head, *wait_tail;
    uint64_t last_ticket;
    TAILQ_ENTRY(record) by_use; /* t->by_use */
    bool in_lru;                /* linked in t->by_use */
} record;

/* A write checked against its record: the version and document it would
 * leave, or why it cannot be applied. plan_write fills it without answering
 * anyone; refuse_write answers a refusal, commit_write applies a plan. */
typedef struct write_plan {
    uint32_t error;  /* 0: it can be applied; else the deepstream action that refuses it */
    const char *why; /* for the log (a refusal) */
    int64_t next;    /* the version it writes */
    int64_t base;    /* the current version (0 for a missing record) */
    char *data;      /* the document it leaves (owned by the plan until committed or discarded) */
    size_t len;
    bool whole;      /* replaces the document, else a path patch */
    bool erase;      /* a patch that erases the path */
} write_plan;

/* A write out for validation: its record is held until the outcome. */
typedef struct validation {
    LIST_ENTRY(validation) out; /* t->validations */
    record *r;
    peer *from;    /* NULL once the writer went away */
    bool is_delete;
    write_plan w;  /* a write's plan (the proposed document); a member's stays in its changeset's plans */
    struct cs_member *member; /* a changeset's member (NULL: a write alone) */
    op o;          /* the write, its strings in bytes */
    char bytes[];
} validation;

#define NO_SHARD UINT32_MAX

typedef struct outbox_item {
    struct outbox_item *next;
    uint64_t ticket;
    uint32_t shard; /* the record's shard (NO_SHARD: not about one record) */
    peer *to;
    size_t len;
    char bytes[];
} outbox_item;

typedef struct record_table {
    node_env *env;
    persist *p;
    dict *records;
    subs *interest; /* name -> peers with subscribers (a record with interest stays cached) */
    size_t bytes, max_bytes, max_size;
    TAILQ_HEAD(record_use, record) by_use; /* most recently used first */
    uint64_t issued, committed; /* tickets */
    outbox_item *out_head, *out_tail;
    msgpack_sbuffer scratch;
    msgpack_sbuffer request; /* a validation request being written */
    LIST_HEAD(, validation) validations; /* writes out for validation (their records held) */
    int64_t last_evict_ms;
} record_table;

static void provider_changed(void *ctx, strview name, bool has);
static void validated(void *ctx, void *cookie, const validation_outcome *outcome);
static bool record_busy(const record *r);
static void forget(struct record_table *t, record *r);
static void record_hold(record *r);
static void record_release(record_table *t, record *r);
static void record_mark(record_table *t, record *r,
                        void (*reached)(record_table *t, record *r, void *ctx, bool load_failed), void *ctx);

static void *records_create(node_env *env)
{
    record_table *t = xcalloc(1, sizeof(*t));
    TAILQ_INIT(&t->by_use);
    LIST_INIT(&t->validations);
    t->env = env;
    t->p = env->persist;
    t->records = dict_new();
    t->interest = listen_follow(env->listen, TOPIC__TOPIC_RECORD, provider_changed, t);
    t->max_bytes = (size_t)env->cfg->cache_bytes;
    t->max_size = (size_t)env->cfg->record_max_size;
    msgpack_sbuffer_init(&t->scratch);
    msgpack_sbuffer_init(&t->request);
    if (env->validators != NULL)
        validators_set_done(env->validators, validated, t);
    env->records = t;
    return t;
}

static size_t record_bytes(const record *r)
{
    return sizeof(*r) + r->name_len + r->data_len;
}

static void free_record(void *v)
{
    record *r = v;
    pending_op *w = r->wait_head;
    while (w != NULL) {
        pending_op *next = w->next;
        xfree(w);
        w = next;
    }
    xfree(r->data);
    xfree(r->name);
    xfree(r);
}

static void free_validation(struct validation *v);
static void free_changeset_plans(struct validation *v);
static void member_validated(struct record_table *t, struct cs_member *m, const validation_outcome *out);

static void records_destroy(void *self)
{
    record_table *t = self;
    dict_free_with(t->records, free_record);
    subs_free(t->interest);
    while (t->out_head != NULL) {
        outbox_item *next = t->out_head->next;
        xfree(t->out_head);
        t->out_head = next;
    }
    struct validation *v;
    while ((v = LIST_FIRST(&t->validations)) != NULL) { /* (the node stops with validations out) */
        LIST_REMOVE(v, out);
        free_changeset_plans(v);
        free_validation(v);
    }
    msgpack_sbuffer_destroy(&t->scratch);
    msgpack_sbuffer_destroy(&t->request);
    xfree(t);
}

/* ---------------- cache bookkeeping ---------------- */

static void lru_unlink(record_table *t, record *r)
{
    if (r->in_lru)
        TAILQ_REMOVE(&t->by_use, r, by_use);
    r->in_lru = false;
}

static void lru_touch(record_table *t, record *r)
{
    if (TAILQ_FIRST(&t->by_use) == r)
        return;
    lru_unlink(t, r);
    TAILQ_INSERT_HEAD(&t->by_use, r, by_use);
    r->in_lru = true;
}

static void set_data(record_table *t, record *r, int64_t version, char *data, size_t len)
{
    t->bytes -= record_bytes(r);
    xfree(r->data);
    r->version = version;
    r->data = data;
    r->data_len = data ? len : 0;
    t->bytes += record_bytes(r);
}

static strview name_of(const record *r)
{
    return (strview){r->name, r->name_len};
}

static bool evictable(const record_table *t, const record *r)
{
    return !r->loading && r->holds == 0 && r->wait_head == NULL && r->last_ticket <= t->committed &&
           subs_data(t->interest, name_of(r)) == NULL;
}

static void evict(record_table *t)
{
    record *r = TAILQ_LAST(&t->by_use, record_use);
    size_t evicted = 0;
    while (t->bytes > t->max_bytes && r != NULL) {
        record *prev = TAILQ_PREV(r, record_use, by_use);
        if (evictable(t, r)) {
            lru_unlink(t, r);
            dict_del(t->records, r->name, r->name_len);
            t->bytes -= record_bytes(r);
            free_record(r);
            evicted++;
        }
        r = prev;
    }
    if (evicted > 0)
        log_debug("records-evicted", "evicted=%zu cached=%zu bytes=%zu max_bytes=%zu", evicted,
                  dict_size(t->records), t->bytes, t->max_bytes);
}

/* ---------------- output, in ticket order ---------------- */

/* Every write up to this ticket is durable here and, with cluster.replicas
 * above 1, on every in-sync replica (replicate.c): what it caused may leave. */
static uint64_t durable(const record_table *t)
{
    uint64_t replicated = t->env->replicate != NULL ? replicate_durable(t->env->replicate) : UINT64_MAX;
    return replicated < t->committed ? replicated : t->committed;
}

/* What may happen to an answer or update about shard now (FAILOVER rules 4
 * and 5): it goes while this node may serve the shard (meta_may_serve: its
 * primary in the applied map, under a lease), checked when it leaves, not
 * only when the operation arrived; it waits while the node is still the
 * shard's primary without a usable lease; it is dropped once the shard is
 * another node's (its writer's broker answers it with an error when it
 * adopts the map that moved the shard: never acknowledged from here). */
enum release { RELEASE_SEND, RELEASE_WAIT, RELEASE_DROP };
static enum release may_release(const record_table *t, uint32_t shard)
{
    if (shard == NO_SHARD || meta_may_serve(t->env->meta, shard))
        return RELEASE_SEND;
    return shardmap_owner(t->env->route, shard) == t->env->self ? RELEASE_WAIT : RELEASE_DROP;
}

static void flush_outbox(record_table *t)
{
    uint64_t upto = durable(t);
    while (t->out_head != NULL && t->out_head->ticket <= upto) {
        outbox_item *it = t->out_head;
        enum release how = may_release(t, it->shard);
        if (how == RELEASE_WAIT)
            break; /* the lease comes back (or the shard moves): a later flush */
        t->out_head = it->next;
        if (t->out_head == NULL)
            t->out_tail = NULL;
        if (how == RELEASE_SEND)
            peer_deliver(t->env->peers, it->to, it->bytes, it->len);
        else
            prom_add(&t->env->stats->outbox_dropped, 1);
        xfree(it);
    }
}

/* Sends an encoded op about shard to a peer once every write issued so far is durable. */
static void send_encoded(record_table *t, peer *to, uint32_t shard, const void *bytes, size_t len)
{
    if (t->out_head == NULL && t->issued <= durable(t)) {
        enum release how = may_release(t, shard);
        if (how == RELEASE_SEND) {
            peer_deliver(t->env->peers, to, bytes, len);
            return;
        }
        if (how == RELEASE_DROP) {
            prom_add(&t->env->stats->outbox_dropped, 1);
            return;
        }
    }
    outbox_item *it = xmalloc(sizeof(*it) + len);
    it->ticket = t->issued;
    it->shard = shard;
    it->to = to;
    it->len = len;
    memcpy(it->bytes, bytes, len);
    LIST_APPEND(t->out_head, t->out_tail, it);
}

static void send_op(record_table *t, peer *to, const op *o)
{
    t->scratch.size = 0;
    op_encode(&t->scratch, o);
    send_encoded(t, to, o->name.len > 0 ? shard_of(o->name.ptr, o->name.len) : NO_SHARD, t->scratch.data,
                 t->scratch.size);
}

/* Sends o to every peer with interest in r (encoded once). */
static void broadcast(record_table *t, record *r, const op *o)
{
    uint32_t n;
    subs_holder *h = subs_holders(t->interest, name_of(r), &n);
    if (n == 0)
        return;
    t->scratch.size = 0;
    op_encode(&t->scratch, o);
    uint32_t shard = shard_of(r->name, r->name_len);
    for (uint32_t i = 0; i < n; i++)
        send_encoded(t, h[i].ptr, shard, t->scratch.data, t->scratch.size);
}

static strview view(const char *s, size_t len)
{
    return (strview){s, (uint32_t)len};
}

/* A RESULT for the requester of o. */
static void result(record_table *t, peer *to, const op *o, uint32_t action, bool error,
                   const record *r, bool with_data)
{
    op res = {.kind = OP_RECORD_RESULT, .name = o->name, .session = o->session, .ref = o->ref,
              .corr = o->corr, .action = action, .orig = o->action,
              .flags = (o->flags & OP_FLAG_WRITE_ACK) | (error ? OP_FLAG_ERROR : 0)};
    if (o->kind == OP_RECORD_DELETE)
        res.orig = ACT(DELETE);
    if (r != NULL) {
        res.has_version = true;
        res.version = r->version;
        if (with_data && r->data != NULL) {
            res.has_data = true;
            res.data = view(r->data, r->data_len);
        }
    }
    send_op(t, to, &res);
}

/* ---------------- interest ---------------- */

/* Every subscription to r ends (the record was deleted). */
static void clear_peers(record_table *t, record *r)
{
    listen_clear(t->env->listen, TOPIC__TOPIC_RECORD, t->interest, name_of(r));
}

/* ---------------- persistence ---------------- */

static void records_on_persist_wait(record_table *t);

static void persist_current(record_table *t, record *r)
{
    r->last_ticket = ++t->issued;
    if (t->env->replicate != NULL)
        replicate_record(t->env->replicate, name_of(r), r->data != NULL ? r->version : -1,
                         (strview){r->data, (uint32_t)r->data_len}, r->data != NULL, r->last_ticket);
    if (persist_write(t->p, r->name, r->name_len, r->version, r->data, r->data_len,
                      r->last_ticket) != 0) {
        /* The job queue is bounded; waiting here is the overflow policy for
         * durable writes (the executor stalls instead of losing one). */
        log_warn("storage-queue-full", "name=%.*s (executor waits)", (int)r->name_len, r->name);
        while (persist_write(t->p, r->name, r->name_len, r->version, r->data, r->data_len,
                             r->last_ticket) != 0)
            records_on_persist_wait(t);
    }
}

/* ---------------- operations on a loaded record ---------------- */

/* guard_check's reader: a record this node holds in memory. */
static const char *held_record(void *ctx, strview name, size_t *len, bool *held)
{
    record_table *t = ctx;
    record *x = dict_get(t->records, name.ptr, name.len);
    *held = x != NULL && !x->loading;
    *len = *held && x->data != NULL ? x->data_len : 0;
    return *held ? x->data : NULL;
}

static strview data_of(const record *r)
{
    return r->version >= 0 && r->data != NULL ? view(r->data, r->data_len) : (strview){NULL, 0};
}

/* The permission of action for o on r (data: the record after a write);
 * 0 when allowed, else the refusal's action. */
static uint32_t guard(record_table *t, const record *r, const op *o, enum perm_action action, strview data)
{
    return guard_check(t->env, o, action, data, data_of(r), held_record, t);
}

/* A read or subscribe the rules refuse: its requester gets the refusal as a state. */
static void refuse_state(record_table *t, peer *from, const op *o, uint32_t refusal)
{
    op st = {.kind = OP_RECORD_STATE, .name = o->name, .session = o->session, .corr = o->corr, .orig = o->action,
             .ref = o->ref, .action = refusal, .flags = OP_FLAG_ERROR};
    send_op(t, from, &st);
}

static void do_subscribe(record_table *t, peer *from, record *r, const op *o)
{
    uint32_t refusal = 0;
    if (o->session != 0 && r->version < 0 && o->action == ACT(SUBSCRIBECREATEANDREAD) &&
        (o->flags & OP_FLAG_NO_CREATE))
        refusal = ACT(MESSAGE_DENIED); /* the broker's `create` rule said no */
    else if (o->session != 0)
        refusal = guard(t, r, o, PERM_READ, (strview){NULL, 0});
    if (refusal != 0) {
        refuse_state(t, from, o, refusal);
        return;
    }
    subs_add(t->interest, name_of(r), from, 0);
    if (o->session == 0)
        return; /* a broker registering its interest again (it resyncs): nothing to answer */
    bool head = o->action == ACT(SUBSCRIBEANDHEAD);
    if (r->version < 0 && o->action == ACT(SUBSCRIBECREATEANDREAD)) {
        set_data(t, r, 0, xstrndup("{}", 2), 2);
        persist_current(t, r);
    }
    op st = {.kind = OP_RECORD_STATE, .name = o->name, .session = o->session, .corr = o->corr,
             .orig = o->action, .has_version = true, .version = r->version};
    if (listen_has_provider(t->env->listen, TOPIC__TOPIC_RECORD, name_of(r)))
        st.flags |= OP_FLAG_PROVIDER;
    if (!head) {
        st.has_data = true;
        st.data = r->data ? view(r->data, r->data_len) : view("{}", 2);
    }
    send_op(t, from, &st);
}

static void do_read(record_table *t, peer *from, record *r, const op *o)
{
    uint32_t refusal = guard(t, r, o, PERM_READ, (strview){NULL, 0});
    if (refusal != 0) {
        refuse_state(t, from, o, refusal);
        return;
    }
    op st = {.kind = OP_RECORD_STATE, .name = o->name, .session = o->session, .corr = o->corr,
             .orig = o->action, .has_version = true, .version = r->version};
    if (o->action == ACT(READ) && r->data != NULL) {
        st.has_data = true;
        st.data = view(r->data, r->data_len);
    }
    send_op(t, from, &st);
}

static void write_error(record_table *t, peer *from, const op *o, uint32_t action, const char *why)
{
    log_info("record-write-refused", "name=%.*s reason=%s", (int)o->name.len, o->name.ptr, why);
    op res = {.kind = OP_RECORD_RESULT, .name = o->name, .session = o->session, .ref = o->ref,
              .corr = o->corr, .action = action, .orig = o->action,
              .flags = (o->flags & OP_FLAG_WRITE_ACK) | OP_FLAG_ERROR};
    send_op(t, from, &res);
}

/* Frees what an uncommitted plan holds. */
static void discard_plan(write_plan *w)
{
    xfree(w->data);
    w->data = NULL;
}

/* Checks o against r as it stands (version, document kind and size, path,
 * permissions) and computes the document it leaves. Returns true when it can
 * be applied; else w->error says why (w holds no memory then). */
static bool plan_write(record_table *t, const record *r, const op *o, write_plan *w)
{
    uint32_t a = o->action;
    bool creates = a == ACT(CREATEANDUPDATE) || a == ACT(CREATEANDPATCH);
    *w = (write_plan){.whole = (a == ACT(UPDATE) || a == ACT(CREATEANDUPDATE)) && o->path.len == 0};
    w->erase = a == ACT(ERASE) || (!w->whole && !o->has_data);
#define REFUSE(action, reason)                                                                         do {                                                                                                   w->error = (action);                                                                               w->why = (reason);                                                                                 return false;                                                                                  } while (0)
    if (!o->has_version)
        REFUSE(ACT(INVALID_MESSAGE_DATA), "no version");
    if (!w->whole && o->path.len == 0)
        REFUSE(ACT(INVALID_MESSAGE_DATA), "patch without a path");
    /* Version: -1 always means current+1 (creating the record when missing). */
    int64_t cur = r->version;
    if (cur < 0 && !creates && o->version != -1)
        REFUSE(ACT(RECORD_UPDATE_ERROR), "record does not exist");
    w->base = cur < 0 ? 0 : cur;
    w->next = w->base + 1;
    if (o->version != -1 && o->version != w->next)
        REFUSE(o->version > w->next ? ACT(INVALID_VERSION) : ACT(VERSION_EXISTS), "version conflict");
    const char *doc = r->data ? r->data : "{}";
    size_t doc_len = r->data ? r->data_len : 2;
    if (w->whole) {
        enum json_kind k = o->has_data ? json_check(o->data.ptr, o->data.len) : JSON_KIND_INVALID;
        if (k != JSON_KIND_OBJECT && k != JSON_KIND_ARRAY)
            REFUSE(ACT(INVALID_MESSAGE_DATA), "record data must be a JSON object or array");
        w->len = o->data.len;
        w->data = xstrndup(o->data.ptr, w->len);
    } else {
        if (memchr(o->path.ptr, '\0', o->path.len) != NULL) /* would cut the path short */
            REFUSE(ACT(INVALID_MESSAGE_DATA), "path contains NUL");
        char path[OP_NAME_MAX + 1];
        memcpy(path, o->path.ptr, o->path.len);
        path[o->path.len] = '\0';
        /* The patch checks the value and refuses a result over record.maxSize
         * before building it: its cost is bounded by the limit, not the path. */
        const char *why;
        int rc = jsonpath_apply_max(doc, doc_len, path, w->erase ? NULL : o->data.ptr, w->erase ? 0 : o->data.len,
                                    t->max_size, &w->data, &w->len, &why);
        if (rc != 0) {
            w->data = NULL;
            REFUSE(rc == JSONPATH_TOO_LARGE ? ACT(RECORD_UPDATE_ERROR) : ACT(INVALID_MESSAGE_DATA), why);
        }
    }
    if (w->len > t->max_size) {
        discard_plan(w);
        REFUSE(ACT(RECORD_UPDATE_ERROR), "record.maxSize exceeded");
    }
    /* as deepstream: a create-and-write needs `create` too, an ERASE `delete`;
     * `data` is the record as this write leaves it */
    uint32_t refusal = creates ? guard(t, r, o, PERM_CREATE, (strview){NULL, 0}) : 0;
    if (refusal == 0)
        refusal = guard(t, r, o, a == ACT(ERASE) ? PERM_DELETE : PERM_WRITE, view(w->data, w->len));
    if (refusal != 0) {
        discard_plan(w);
        REFUSE(refusal, "permission");
    }
#undef REFUSE
    return true;
}

/* A client session's write to r was ahead of it (INVALID_VERSION): the
 * client raised its own version for writes that never applied, and stays
 * ahead until told. After the refusal, its broker gets the record as it is
 * (a RESULT with OP_FLAG_CORRECT alone, no error, no ack), with which it
 * corrects the writer's copy (broker/records.c). Not for a backend's write
 * (session 0: it reads the version in its own answer), nor a missing record. */
static void correct_ahead(record_table *t, peer *from, const record *r, const op *o)
{
    if (o->session == 0 || r->version < 0 || r->data == NULL)
        return;
    op fix = {.kind = OP_RECORD_RESULT, .name = o->name, .session = o->session, .action = ACT(UPDATE),
              .orig = o->action, .flags = OP_FLAG_CORRECT, .has_version = true, .version = r->version,
              .has_data = true, .data = view(r->data, r->data_len)};
    send_op(t, from, &fix);
}

/* Answers the writer of o that w (refused) was not applied, as deepstream does:
 * a version conflict carries the record's version (and data; INVALID_VERSION
 * the writer's own data, as deepstream's, then the correction). */
static void refuse_write(record_table *t, peer *from, const record *r, const op *o, const write_plan *w)
{
    if (w->error == ACT(INVALID_VERSION)) {
        op res = {.kind = OP_RECORD_RESULT, .name = o->name, .session = o->session, .ref = o->ref, .corr = o->corr,
                  .action = ACT(INVALID_VERSION), .orig = o->action,
                  .flags = (o->flags & OP_FLAG_WRITE_ACK) | OP_FLAG_ERROR, .has_version = true, .version = w->base,
                  .has_data = o->has_data, .data = o->data};
        send_op(t, from, &res);
        correct_ahead(t, from, r, o);
    } else if (w->error == ACT(VERSION_EXISTS)) {
        result(t, from, o, ACT(VERSION_EXISTS), true, r, true);
    } else {
        write_error(t, from, o, w->error, w->why);
    }
}

/* Tells every peer interested in r that the write o (planned as w, committed:
 * r holds its document) changed it; writer_id and session name the writer,
 * whom its broker skips (session 0: nobody is skipped). */
static void announce_write(record_table *t, uint64_t writer_id, uint64_t session, record *r, const op *o,
                           const write_plan *w)
{
    /* Everyone else hears the change as deepstream words it: an ERASE travels
     * as a PATCH without data. */
    op up = {.kind = OP_RECORD_UPDATE, .name = o->name, .broker = writer_id, .session = session,
             .has_version = true, .version = w->next, .action = w->whole ? ACT(UPDATE) : ACT(PATCH)};
    if (w->whole) {
        up.has_data = true;
        up.data = view(r->data, r->data_len);
    } else {
        up.path = o->path;
        if (!w->erase) {
            up.has_data = true;
            up.data = o->data;
        }
    }
    broadcast(t, r, &up);
}

/* Applies a plan made for o on r: the new version in memory and to storage,
 * the update to every interested peer, the writer's acknowledgement. The
 * document moves from w to r. from may be NULL (the writer went away while
 * its write was validated): nobody is acknowledged. With to_writer the update
 * reaches the writer's session too (a validator replaced its document: its
 * copy must be corrected). */
static void commit_write_as(record_table *t, peer *from, record *r, const op *o, write_plan *w, bool to_writer)
{
    set_data(t, r, w->next, w->data, w->len);
    w->data = NULL;
    persist_current(t, r);
    announce_write(t, from != NULL ? from->id : 0, to_writer ? 0 : o->session, r, o, w);
    if (from != NULL && (o->flags & OP_FLAG_WRITE_ACK)) /* with the version written (backends use it) */
        result(t, from, o, ACT(WRITE_ACKNOWLEDGEMENT), false, r, false);
}

static void commit_write(record_table *t, peer *from, record *r, const op *o, write_plan *w)
{
    commit_write_as(t, from, r, o, w, false);
}

static void validate_write(record_table *t, peer *from, record *r, const op *o, write_plan *w);
static void refuse_unvalidated(record_table *t, peer *from, const record *r, const op *o, const char *why);

/* Whether o (planned as w, NULL for a delete) goes on now: true to apply it;
 * false when it went for validation or was refused (answered, w discarded). */
static bool validation_allows(record_table *t, peer *from, record *r, const op *o, write_plan *w)
{
    switch (validators_route(t->env->validators, o->name)) {
    case VALIDATE_ASK: validate_write(t, from, r, o, w); return false;
    case VALIDATE_REFUSE:
        if (w != NULL)
            discard_plan(w);
        refuse_unvalidated(t, from, r, o, "no validator connected (validation.required)");
        return false;
    default: return true;
    }
}

static void do_write(record_table *t, peer *from, record *r, const op *o)
{
    write_plan w;
    if (!plan_write(t, r, o, &w)) {
        refuse_write(t, from, r, o, &w);
        return;
    }
    if (validation_allows(t, from, r, o, &w))
        commit_write(t, from, r, o, &w);
}

/* Deletes r (checked already); from may be NULL (nobody answered). */
static void commit_delete(record_table *t, peer *from, record *r, const op *o)
{
    if (r->version >= 0) {
        set_data(t, r, -1, NULL, 0);
        persist_current(t, r);
        op del = {.kind = OP_RECORD_DELETED, .name = o->name, .broker = from != NULL ? from->id : 0,
                  .session = o->session};
        broadcast(t, r, &del);
        clear_peers(t, r); /* every subscription ends with the record */
    }
    if (from != NULL)
        result(t, from, o, ACT(DELETE_SUCCESS), false, NULL, false);
}

static void do_delete(record_table *t, peer *from, record *r, const op *o)
{
    uint32_t refusal = guard(t, r, o, PERM_DELETE, (strview){NULL, 0});
    if (refusal != 0) {
        write_error(t, from, o, refusal, "permission");
        return;
    }
    if (r->version < 0 || validation_allows(t, from, r, o, NULL)) /* (nothing to delete: nothing to validate) */
        commit_delete(t, from, r, o);
}

static void do_notify(record_table *t, peer *from, record *r, const op *o)
{
    if (r->version >= 0) {
        op up = {.kind = OP_RECORD_UPDATE, .name = o->name, .has_version = true,
                 .version = r->version, .action = ACT(UPDATE), .has_data = true,
                 .data = view(r->data, r->data_len)};
        broadcast(t, r, &up);
    } else {
        op del = {.kind = OP_RECORD_DELETED, .name = o->name};
        broadcast(t, r, &del);
        clear_peers(t, r);
    }
    result(t, from, o, ACT(NOTIFY), false, NULL, false);
}

static void apply_ready(record_table *t, peer *from, record *r, const op *o)
{
    lru_touch(t, r);
    switch (o->kind) {
    case OP_RECORD_SUBSCRIBE: do_subscribe(t, from, r, o); break;
    case OP_RECORD_UNINTEREST: subs_remove(t->interest, name_of(r), from, 0, false); break;
    case OP_RECORD_READ: do_read(t, from, r, o); break;
    case OP_RECORD_WRITE: do_write(t, from, r, o); break;
    case OP_RECORD_DELETE: do_delete(t, from, r, o); break;
    case OP_RECORD_NOTIFY: do_notify(t, from, r, o); break;
    }
}

/* ---------------- loading ---------------- */

/* The bytes of o's strings (what copy_op copies). */
static size_t op_strings(const op *o)
{
    return o->name.len + o->data.len + o->path.len + o->ref.len + o->user.len + o->meta.len + o->refs.len;
}

/* *dst = *src with its strings copied to bytes (op_strings(src) of them). */
static void copy_op(op *dst, const op *src, char *bytes)
{
    *dst = *src;
    char *p = bytes;
#define COPY(f)                                                                                    \
    do {                                                                                           \
        if (src->f.len > 0)                                                                        \
            memcpy(p, src->f.ptr, src->f.len);                                                     \
        dst->f.ptr = p;                                                                            \
        p += src->f.len;                                                                           \
    } while (0)
    COPY(name);
    COPY(data);
    COPY(path);
    COPY(ref);
    COPY(user);
    COPY(meta);
    COPY(refs);
#undef COPY
}

static void wait_on(record *r, peer *from, const op *o)
{
    pending_op *w = xmalloc(sizeof(*w) + op_strings(o));
    w->from = from;
    w->reached = NULL;
    w->ctx = NULL;
    copy_op(&w->o, o, w->bytes);
    LIST_APPEND(r->wait_head, r->wait_tail, w);
}

/* ---------------- validation by backends (validate.c) ---------------- */

static void free_validation(validation *v)
{
    discard_plan(&v->w);
    xfree(v);
}

static void put_request(void *ctx, const char *bytes, size_t n)
{
    msgpack_sbuffer_write(ctx, bytes, n);
}

#define PUT(text) msgpack_sbuffer_write(b, text, sizeof(text) - 1)

/* A JSON value: text as it is when it is one (kind > 0), else null. */
static void put_json(msgpack_sbuffer *b, const char *text, size_t len)
{
    if (text != NULL && len > 0 && json_check(text, len) != JSON_KIND_INVALID)
        msgpack_sbuffer_write(b, text, len);
    else
        PUT("null");
}

/* The request a validator gets (proto/operations.md, README: Validating
 * writes), written to t->request. */
static void write_request(record_table *t, const peer *from, const record *r, const op *o, const write_plan *w,
                          bool is_delete)
{
    msgpack_sbuffer *b = &t->request;
    b->size = 0;
    char num[64];
    PUT("{\"name\":");
    json_write_string(o->name.ptr, o->name.len, put_request, b);
    const char *action = is_delete ? "delete" : w->whole ? "update" : w->erase ? "erase" : "patch";
    msgpack_sbuffer_write(b, num, (size_t)snprintf(num, sizeof(num), ",\"action\":\"%s\",\"version\":%lld", action,
                                                   (long long)r->version));
    if (!is_delete)
        msgpack_sbuffer_write(b, num, (size_t)snprintf(num, sizeof(num), ",\"next\":%lld", (long long)w->next));
    PUT(",\"current\":");
    put_json(b, r->data, r->version >= 0 ? r->data_len : 0);
    PUT(",\"proposed\":");
    put_json(b, is_delete ? NULL : w->data, is_delete ? 0 : w->len);
    PUT(",\"patch\":");
    if (is_delete || w->whole) {
        PUT("null");
    } else {
        PUT("{\"path\":");
        json_write_string(o->path.ptr, o->path.len, put_request, b);
        PUT(",\"value\":");
        put_json(b, w->erase ? NULL : o->data.ptr, w->erase ? 0 : o->data.len);
        PUT("}");
    }
    bool backend = from != NULL && from->role == LINK_ROLE_BACKEND;
    PUT(",\"writer\":");
    if (backend)
        PUT("\"backend\"");
    else
        PUT("\"client\"");
    PUT(",\"user\":");
    if (!backend && o->user.len > 0)
        json_write_string(o->user.ptr, o->user.len, put_request, b);
    else
        PUT("null");
    PUT(",\"serverData\":");
    put_json(b, backend ? NULL : o->meta.ptr, backend ? 0 : o->meta.len);
    PUT("}");
}

#undef PUT

/* Refuses o for a validation: the writer gets MESSAGE_DENIED with the reason,
 * and the record as it is, to correct its own copy (the broker does). */
static void refuse_validated(record_table *t, peer *from, const record *r, const op *o, strview reason)
{
    if (from == NULL)
        return;
    log_info("record-write-refused", "name=%.*s reason=\"validation: %.*s\"", (int)o->name.len, o->name.ptr,
             (int)(reason.len > 200 ? 200 : reason.len), reason.ptr);
    op res = {.kind = OP_RECORD_RESULT, .name = o->name, .session = o->session, .ref = o->ref, .corr = o->corr,
              .action = ACT(MESSAGE_DENIED), .orig = o->kind == OP_RECORD_DELETE ? ACT(DELETE) : o->action,
              .flags = (o->flags & OP_FLAG_WRITE_ACK) | OP_FLAG_ERROR | OP_FLAG_CORRECT, .has_version = true,
              .version = r->version, .meta = reason};
    if (r->version >= 0 && r->data != NULL) {
        res.has_data = true;
        res.data = view(r->data, r->data_len);
    }
    send_op(t, from, &res);
}

static void refuse_unvalidated(record_table *t, peer *from, const record *r, const op *o, const char *why)
{
    refuse_validated(t, from, r, o, sv_of(why));
}

/* Sends o (planned as *w; w NULL for a delete) for validation: r is held
 * until the outcome (validated). w's document moves to the validation. */
static void validate_write(record_table *t, peer *from, record *r, const op *o, write_plan *w)
{
    validation *v = xcalloc(1, sizeof(*v) + op_strings(o));
    v->r = r;
    v->from = from;
    v->is_delete = w == NULL;
    if (w != NULL) {
        v->w = *w;
        w->data = NULL;
    }
    copy_op(&v->o, o, v->bytes);
    write_request(t, from, r, &v->o, &v->w, v->is_delete);
    LIST_INSERT_HEAD(&t->validations, v, out);
    record_hold(r);
    /* (validated may run before this returns: v is not touched after) */
    if (validators_start(t->env->validators, o->name, t->request.data, t->request.size, v) != 0) {
        validation_outcome full = {.verdict = VALIDATE_REJECT, .data = sv_of("too many validations in flight "
                                                                              "(validation.maxPending)")};
        validated(t, v, &full);
    }
}

/* How a validator's outcome changes a write planned as w: NULL when it goes
 * on (w replaced by the validator's document on REPLACE), else the refusal's
 * reason (pointing into out, or static). */
static strview verdict_on(record_table *t, const validation_outcome *out, bool is_delete, write_plan *w)
{
    if (out->verdict == VALIDATE_REJECT)
        return out->data.len > 0 ? out->data : sv_of("rejected by the validator");
    if (out->verdict != VALIDATE_REPLACE)
        return (strview){NULL, 0};
    enum json_kind k = json_check(out->data.ptr, out->data.len);
    if (is_delete)
        return sv_of("a validator cannot replace a delete");
    if (k != JSON_KIND_OBJECT && k != JSON_KIND_ARRAY)
        return sv_of("the validator's replacement is not a JSON object or array");
    if (out->data.len > t->max_size)
        return sv_of("the validator's replacement exceeds record.maxSize");
    discard_plan(w);
    w->data = xstrndup(out->data.ptr, out->data.len);
    w->len = out->data.len;
    w->whole = true;
    w->erase = false;
    return (strview){NULL, 0};
}

/* validate.c's outcome for v: the write applied (as proposed or replaced) or
 * refused, then r's next operations. */
static void validated(void *ctx, void *cookie, const validation_outcome *out)
{
    record_table *t = ctx;
    validation *v = cookie;
    record *r = v->r;
    LIST_REMOVE(v, out);
    if (v->member != NULL) {
        member_validated(t, v->member, out);
        free_validation(v);
        return;
    }
    const op *o = &v->o;
    strview refusal = verdict_on(t, out, v->is_delete, &v->w);
    bool to_writer = refusal.ptr == NULL && out->verdict == VALIDATE_REPLACE;
    if (refusal.ptr != NULL)
        refuse_validated(t, v->from, r, o, refusal);
    else if (v->is_delete)
        commit_delete(t, v->from, r, o);
    else
        commit_write_as(t, v->from, r, o, &v->w, to_writer);
    free_validation(v);
    record_release(t, r);
}

/* The record entry of name: in memory, or being loaded (NULL: the storage
 * queue is full). */
static record *record_entry(record_table *t, strview name)
{
    record *r = dict_get(t->records, name.ptr, name.len);
    if (r != NULL && r->unreadable && !record_busy(r) && r->wait_head == NULL) {
        forget(t, r); /* a load that failed earlier: read it again */
        r = NULL;
    }
    if (r != NULL)
        return r;
    r = xcalloc(1, sizeof(*r));
    r->name = xstrndup(name.ptr, name.len);
    r->name_len = name.len;
    r->loading = true;
    r->version = -1;
    if (persist_load(t->p, r->name, r->name_len, r) != 0) {
        log_warn("storage-queue-full", "name=%.*s (load refused)", (int)name.len, name.ptr);
        free_record(r);
        return NULL;
    }
    dict_put(t->records, r->name, r->name_len, r);
    t->bytes += record_bytes(r);
    lru_touch(t, r);
    return r;
}

static void records_apply(void *self, node_req *req, const op *o)
{
    record_table *t = self;
    if (o->name.len == 0) {
        op e = {.kind = OP_ERROR, .error = OP_ERR_BAD_FIELD, .corr = o->corr};
        op_batch_add(req->reply, &e);
        return;
    }
    if (o->kind == OP_RECORD_UNINTEREST && dict_get(t->records, o->name.ptr, o->name.len) == NULL)
        return; /* nothing to forget */
    record *r = record_entry(t, o->name);
    if (r == NULL) {
        write_error(t, req->from, o, ACT(RECORD_LOAD_ERROR), "storage queue full");
        return;
    }
    if (record_busy(r))
        wait_on(r, req->from, o);
    else
        apply_ready(t, req->from, r, o);
}

/* Applies what waits on r, in order, until r is busy again (an operation or a
 * marker took a hold) or nothing waits. load_failed: r could not be read, and
 * everything waiting is answered so. */
static void drain(record_table *t, record *r, bool load_failed)
{
    load_failed = load_failed || r->unreadable;
    while (r->wait_head != NULL && !record_busy(r)) {
        pending_op *w = r->wait_head;
        r->wait_head = w->next;
        if (r->wait_head == NULL)
            r->wait_tail = NULL;
        if (w->reached != NULL)
            w->reached(t, r, w->ctx, load_failed);
        else if (load_failed)
            write_error(t, w->from, &w->o, ACT(RECORD_LOAD_ERROR), "storage read failed");
        else
            apply_ready(t, w->from, r, &w->o);
        xfree(w);
    }
}

static void loaded(record_table *t, persist_done *d)
{
    record *r = d->cookie;
    r->loading = false;
    if (d->found == 1) {
        set_data(t, r, d->version, d->data, d->data_len);
        d->data = NULL;
    }
    r->unreadable = d->found < 0;
    drain(t, r, false);
    if (r->unreadable && evictable(t, r))
        forget(t, r);
}

/* Removes r from the cache and frees it. */
static void forget(record_table *t, record *r)
{
    lru_unlink(t, r);
    dict_del(t->records, r->name, r->name_len);
    t->bytes -= record_bytes(r);
    free_record(r);
}

/* ---------------- holds and markers ---------------- */

static bool record_busy(const record *r)
{
    return r->loading || r->holds > 0;
}

/* Something in flight must finish before r's next operation: what arrives
 * meanwhile waits, in order. */
static void record_hold(record *r)
{
    r->holds++;
}

/* Ends one hold; when none is left, what waited is applied (until r is held again). */
static void record_release(record_table *t, record *r)
{
    if (r->holds > 0 && --r->holds == 0) {
        drain(t, r, false);
        if (r->unreadable && evictable(t, r))
            forget(t, r);
    }
}

/* Calls reached(t, r, ctx, load_failed) once everything that arrived at r
 * before it is done: at once when r is loaded, not held and nothing waits;
 * else from the queue (load_failed: r could not be read). reached typically
 * takes a hold, so what arrives after the marker waits for its owner. */
static void record_mark(record_table *t, record *r,
                        void (*reached)(record_table *t, record *r, void *ctx, bool load_failed), void *ctx)
{
    if (!record_busy(r) && r->wait_head == NULL) {
        reached(t, r, ctx, false);
        return;
    }
    pending_op *w = xcalloc(1, sizeof(*w));
    w->reached = reached;
    w->ctx = ctx;
    LIST_APPEND(r->wait_head, r->wait_tail, w);
}

void records_on_persist(record_table *t, persist_done *d)
{
    if (d->kind == PERSIST_VIEW || d->kind == PERSIST_SCANNED) { /* a snapshot for a replica */
        if (t->env->replicate != NULL)
            replicate_on_persist(t->env->replicate, d);
        return;
    }
    if (d->kind == PERSIST_LOADED)
        loaded(t, d);
    else if (d->ticket > t->committed)
        t->committed = d->ticket;
    flush_outbox(t);
}

/* Waits for one completion (used only when the storage queue is full). */
static void records_on_persist_wait(record_table *t)
{
    persist_done *d;
    while ((d = persist_poll(t->p)) == NULL)
        persist_wait(t->p, 10);
    records_on_persist(t, d);
    persist_done_free(d);
}

uint64_t records_store_replicated(record_table *t, const persist_item *items, size_t n)
{
    uint64_t ticket = ++t->issued;
    if (persist_write_many(t->p, items, n, ticket) != 0) {
        /* as persist_current: the executor waits rather than lose a durable write */
        log_warn("storage-queue-full", "replicated=%zu records (executor waits)", n);
        while (persist_write_many(t->p, items, n, ticket) != 0)
            records_on_persist_wait(t);
    }
    return ticket;
}

uint64_t records_drop_replicated(record_table *t, const uint8_t *shards)
{
    uint64_t ticket = ++t->issued;
    if (persist_drop_shards(t->p, shards, ticket) != 0) {
        log_warn("storage-queue-full", "dropping replicated shards (executor waits)");
        while (persist_drop_shards(t->p, shards, ticket) != 0)
            records_on_persist_wait(t);
    }
    return ticket;
}

uint64_t records_committed(const record_table *t)
{
    return t->committed;
}

void records_flush(record_table *t)
{
    flush_outbox(t);
}

struct moved_ctx {
    const uint8_t *moved;
    record **out;
    size_t n, cap;
};

static int collect_moved(const void *k, size_t l, void *v, void *arg)
{
    (void)k;
    (void)l;
    struct moved_ctx *c = arg;
    record *r = v;
    if (!shardmap_bit(c->moved, shard_of(r->name, r->name_len)))
        return 0;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->out = xrealloc(c->out, c->cap * sizeof(*c->out));
    }
    c->out[c->n++] = r;
    return 0;
}

void records_shards_moved(record_table *t, const uint8_t *moved)
{
    if (t == NULL)
        return;
    struct moved_ctx c = {.moved = moved};
    dict_foreach(t->records, collect_moved, &c);
    size_t dropped = 0, busy = 0;
    for (size_t i = 0; i < c.n; i++) {
        record *r = c.out[i];
        if (!r->loading && r->holds == 0 && r->wait_head == NULL && r->last_ticket <= t->committed) {
            forget(t, r); /* its interest stays (subs), its data is read again when next asked */
            dropped++;
        } else
            busy++;
    }
    xfree(c.out);
    if (c.n > 0)
        log_info("records-shards-moved", "cached_dropped=%zu busy_kept=%zu (records of shards whose primary "
                 "changed: the store's copy is read again)", dropped, busy);
}

void records_held(const struct record_table *t, size_t *count, size_t *bytes)
{
    *count = dict_size(t->records);
    *bytes = t->bytes;
}

/* Evicts cold records while the cache is over its bound (at most every
 * 500 ms: a walk can pass many records that must stay). */
static void records_timers(void *self, int64_t now)
{
    record_table *t = self;
    if (t->bytes <= t->max_bytes || now - t->last_evict_ms < 500)
        return;
    t->last_evict_ms = now;
    evict(t);
}

/* listen.c: the record's subscribers hear it has (or lost) an active provider. */
static void provider_changed(void *ctx, strview name, bool has)
{
    record_table *t = ctx;
    record *r = dict_get(t->records, name.ptr, name.len);
    if (r == NULL)
        return;
    op o = {.kind = OP_RECORD_PROVIDER, .name = name, .flags = has ? OP_FLAG_PROVIDER : 0};
    broadcast(t, r, &o);
}

/* Drops the operations p left waiting on r while it loads. */
static int drop_waiting(const void *k, size_t l, void *v, void *p)
{
    record *r = v;
    for (pending_op **pp = &r->wait_head; *pp != NULL;) {
        if ((*pp)->reached == NULL && (*pp)->from == p) { /* (a marker's owner forgets p itself) */
            pending_op *w = *pp;
            *pp = w->next;
            xfree(w);
        } else
            pp = &(*pp)->next;
    }
    r->wait_tail = NULL;
    for (pending_op *w = r->wait_head; w != NULL; w = w->next)
        r->wait_tail = w;
    return 0;
}

/* Forgets p's interest and queued work (p is going away). */
static size_t records_drop_peer(void *self, peer *p)
{
    record_table *t = self;
    size_t names = subs_remove_holder(t->interest, p);
    dict_foreach(t->records, drop_waiting, p);
    validation *v;
    LIST_FOREACH (v, &t->validations, out)
        if (v->from == p)
            v->from = NULL; /* its write is still applied or refused: nobody is answered */
    outbox_item **pp = &t->out_head;
    t->out_tail = NULL;
    while (*pp != NULL) {
        if ((*pp)->to == p) {
            outbox_item *it = *pp;
            *pp = it->next;
            xfree(it);
        } else {
            t->out_tail = *pp;
            pp = &(*pp)->next;
        }
    }
    return names;
}

/* ---------------- changesets (changeset.c reads and answers them) ----------------
 * A changeset marks every record it touches at once, on the executor, so it
 * takes its place in each record's queue as a single operation would and two
 * changesets reach shared records in the same order (no deadlock). Each marker
 * reached holds its record; once all are, every member is planned on the
 * records as they stand, then all are committed in one storage job (one
 * ticket: their updates leave the outbox together, in one delivery batch per
 * peer, once the batch is durable) or none is. */

/* Plans member m on its record (held, loaded): its status, and for a write
 * the document it leaves (kept in *w until committed or discarded). */
static void cs_plan(record_table *t, cs_member *m, write_plan *w)
{
    record *r = m->r;
    *w = (write_plan){0};
    if (m->o.kind == OP_RECORD_DELETE) {
        /* version: the one the record must be at (-1 or none: any) */
        if (m->o.has_version && m->o.version != -1 && m->o.version != r->version) {
            m->status = ACT(VERSION_EXISTS);
            m->why = "version conflict";
            m->version = r->version;
            return;
        }
        uint32_t refusal = guard(t, r, &m->o, PERM_DELETE, (strview){NULL, 0});
        if (refusal != 0) {
            m->status = refusal;
            m->why = "permission";
        }
        m->version = -1;
        return;
    }
    if (!plan_write(t, r, &m->o, w)) {
        m->status = w->error;
        m->why = w->why;
        m->version = r->version;
        return;
    }
    m->version = w->next;
}

/* Applies every planned member (plans[i] for member i): memory, one storage
 * job for all, then the updates and deletions to interested peers. */
static void cs_commit(record_table *t, changeset *cs, write_plan *plans)
{
    persist_item *items = xcalloc(cs->n, sizeof(*items));
    bool *existed = xcalloc(cs->n, sizeof(*existed));
    uint64_t ticket = ++t->issued;
    for (uint32_t i = 0; i < cs->n; i++) {
        cs_member *m = &cs->m[i];
        record *r = m->r;
        existed[i] = r->version >= 0;
        if (m->o.kind == OP_RECORD_DELETE)
            set_data(t, r, -1, NULL, 0);
        else {
            set_data(t, r, plans[i].next, plans[i].data, plans[i].len);
            plans[i].data = NULL;
        }
        r->last_ticket = ticket;
        items[i] = (persist_item){.name = r->name, .len = r->name_len, .version = r->version, .data = r->data,
                                  .data_len = r->data_len};
        if (t->env->replicate != NULL)
            replicate_record(t->env->replicate, name_of(r), r->data != NULL ? r->version : -1,
                             (strview){r->data, (uint32_t)r->data_len}, r->data != NULL, ticket);
    }
    if (persist_write_many(t->p, items, cs->n, ticket) != 0) {
        /* as persist_current: the executor waits rather than lose a durable write */
        log_warn("storage-queue-full", "changeset=%u records (executor waits)", cs->n);
        while (persist_write_many(t->p, items, cs->n, ticket) != 0)
            records_on_persist_wait(t);
    }
    xfree(items);
    uint64_t writer = cs->from != NULL ? cs->from->id : 0;
    for (uint32_t i = 0; i < cs->n; i++) {
        cs_member *m = &cs->m[i];
        if (m->o.kind == OP_RECORD_DELETE && existed[i]) {
            op del = {.kind = OP_RECORD_DELETED, .name = m->o.name, .broker = writer, .session = m->o.session};
            broadcast(t, m->r, &del);
            clear_peers(t, m->r); /* as a delete alone: every subscription ends with the record */
        } else if (m->o.kind != OP_RECORD_DELETE)
            announce_write(t, writer, m->o.session, m->r, &m->o, &plans[i]);
    }
    xfree(existed);
}

/* Every member has its status: commit all or none, answer (cs->done), release. */
static void cs_finish(record_table *t, changeset *cs, write_plan *plans)
{
    bool ok = true;
    for (uint32_t i = 0; i < cs->n; i++)
        ok = ok && cs->m[i].status == 0;
    if (ok)
        cs_commit(t, cs, plans);
    else
        for (uint32_t i = 0; i < cs->n; i++) {
            discard_plan(&plans[i]);
            if (cs->m[i].status == 0)
                cs->m[i].status = CS_ABORTED;
        }
    record **held = xcalloc(cs->n, sizeof(*held));
    uint32_t nheld = 0;
    for (uint32_t i = 0; i < cs->n; i++)
        if (cs->m[i].r != NULL)
            held[nheld++] = cs->m[i].r;
    cs->done(t, cs); /* answers and frees cs */
    for (uint32_t i = 0; i < nheld; i++)
        record_release(t, held[i]); /* what waited on them goes on */
    xfree(held);
}

/* The members' planned writes (cs->plans) are done with: freed. */
static void free_plans(changeset *cs)
{
    write_plan *plans = cs->plans;
    if (plans == NULL)
        return;
    for (uint32_t i = 0; i < cs->n; i++)
        discard_plan(&plans[i]);
    xfree(plans);
    cs->plans = NULL;
}

/* Sends member i (planned as plans[i]) to a validator; its answer comes to
 * member_validated. */
static void validate_member(record_table *t, changeset *cs, uint32_t i)
{
    cs_member *m = &cs->m[i];
    write_plan *plans = cs->plans;
    validation *v = xcalloc(1, sizeof(*v));
    v->r = m->r;
    v->from = cs->from;
    v->is_delete = m->o.kind == OP_RECORD_DELETE;
    v->member = m;
    write_request(t, cs->from, m->r, &m->o, &plans[i], v->is_delete);
    LIST_INSERT_HEAD(&t->validations, v, out);
    cs->validating++;
    if (validators_start(t->env->validators, m->o.name, t->request.data, t->request.size, v) != 0) {
        validation_outcome full = {.verdict = VALIDATE_REJECT,
                                   .data = sv_of("too many validations in flight (validation.maxPending)")};
        validated(t, v, &full);
    }
}

/* A member's validation is over: refused (the changeset fails whole),
 * accepted, or its document replaced; once every member's is, the changeset
 * ends. */
static void member_validated(record_table *t, cs_member *m, const validation_outcome *out)
{
    changeset *cs = m->cs;
    write_plan *plans = cs->plans;
    uint32_t i = (uint32_t)(m - cs->m);
    strview refusal = verdict_on(t, out, m->o.kind == OP_RECORD_DELETE, &plans[i]);
    if (refusal.ptr != NULL) {
        m->status = ACT(MESSAGE_DENIED);
        xfree(m->reason);
        m->reason = xstrndup(refusal.ptr, refusal.len);
        m->why = m->reason;
    }
    if (--cs->validating == 0) {
        cs->plans = NULL;
        cs_finish(t, cs, plans);
        xfree(plans);
    }
}

/* At shutdown with v out: the plans of its changeset (if any) go too. */
static void free_changeset_plans(validation *v)
{
    if (v->member != NULL)
        free_plans(v->member->cs);
}

/* Every marker is reached: plan each member on its record as it stands; when
 * all can be applied, the writes a validator must see go out first (the
 * records stay held until every answer is in). */
static void cs_reached_all(record_table *t, changeset *cs)
{
    write_plan *plans = xcalloc(cs->n, sizeof(*plans));
    bool ok = true;
    for (uint32_t i = 0; i < cs->n; i++) {
        if (cs->m[i].r != NULL && cs->m[i].status == 0) {
            lru_touch(t, cs->m[i].r);
            cs_plan(t, &cs->m[i], &plans[i]);
        }
        ok = ok && cs->m[i].status == 0;
    }
    if (ok && t->env->validators != NULL) {
        cs->plans = plans;
        cs->validating = 1; /* while they are sent: no answer may end it before */
        for (uint32_t i = 0; i < cs->n; i++) {
            enum validate_route route = validators_route(t->env->validators, cs->m[i].o.name);
            if (route == VALIDATE_ASK) {
                validate_member(t, cs, i);
            } else if (route == VALIDATE_REFUSE) {
                cs->m[i].status = ACT(MESSAGE_DENIED);
                cs->m[i].why = "no validator connected (validation.required)";
            }
        }
        if (--cs->validating > 0)
            return; /* member_validated ends it */
        cs->plans = NULL;
    }
    cs_finish(t, cs, plans);
    xfree(plans);
}

/* A member's marker is reached: hold its record (unless it could not be read). */
static void cs_reached(record_table *t, record *r, void *ctx, bool load_failed)
{
    cs_member *m = ctx;
    changeset *cs = m->cs;
    if (load_failed) {
        m->status = ACT(RECORD_LOAD_ERROR);
        m->why = "storage read failed";
    } else {
        record_hold(r);
        m->r = r;
    }
    if (--cs->waiting == 0)
        cs_reached_all(t, cs);
}

void records_changeset_run(record_table *t, changeset *cs)
{
    cs->waiting = cs->n + 1; /* + 1 while the markers are placed: none may finish it before */
    for (uint32_t i = 0; i < cs->n; i++) {
        cs_member *m = &cs->m[i];
        m->cs = cs;
        record *r = record_entry(t, m->o.name);
        if (r == NULL) {
            m->status = ACT(RECORD_LOAD_ERROR);
            m->why = "storage queue full";
            cs->waiting--;
            continue;
        }
        record_mark(t, r, cs_reached, m);
    }
    if (--cs->waiting == 0)
        cs_reached_all(t, cs);
}

void records_changeset_answer(record_table *t, peer *to, const op *o)
{
    send_op(t, to, o);
}

const owner_module records_owner = {
    .name = "records",
    .kinds = (const owner_kind[]){{OP_RECORD_SUBSCRIBE, ROUTE_NAME}, {OP_RECORD_UNINTEREST, ROUTE_NAME},
                                  {OP_RECORD_READ, ROUTE_NAME}, {OP_RECORD_WRITE, ROUTE_NAME},
                                  {OP_RECORD_DELETE, ROUTE_NAME}, {OP_RECORD_NOTIFY, ROUTE_NAME}, {0, 0}},
    .create = records_create,
    .destroy = records_destroy,
    .apply = records_apply,
    .held = "record_names",
    .drop_peer = records_drop_peer,
    .timers = records_timers,
};
