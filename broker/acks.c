/* acks.c - what clients wait for from nodes, per link (see internal.h).
 *
 * Acknowledgements: a subscribe, provide or presence subscription is
 * acknowledged only once the owning node has applied the batch that carried
 * it, so an ack means what follows will be seen. An ack can wait on batches of
 * several links (a bulk subscribe, presence "everyone"); it goes out when the
 * last of them is answered, and never when its session has gone.
 *
 * Owed answers: a record subscribe or read waits for the node's RECORD_STATE
 * and a write with an acknowledgement for its RECORD_RESULT; the node sends
 * those only once the write before them is durable, so they can be owed well
 * after the node replied to the batch that carried the request. When the node
 * goes down, every requester still owed is answered with an error at once (the
 * official client has no timeout for write acknowledgements: it would wait
 * forever). An owed entry is keyed by (answer class, session, name,
 * correlation id) and counts identical requests in flight. */
#include <string.h>

#include "dict.h"
#include "internal.h"
#include "mem.h"
#include "util.h"
#include "vec.h"

struct ack {
    uint64_t session_id;
    int holds;
    int topic, action;
    char *correlation_id;
};

typedef struct waiter {
    uint64_t seq;
    ack *k;
} waiter;

enum { CLASS_STATE = 'S', CLASS_WRITE_ACK = 'W' };

typedef struct owed {
    uint32_t count;
    uint32_t kind;   /* OP_RECORD_SUBSCRIBE, OP_RECORD_READ or OP_RECORD_WRITE */
    uint32_t action; /* the client's action */
    uint64_t corr;   /* bulk id (SUBSCRIBEANDHEAD) */
} owed;

typedef struct link_acks {
    uint64_t answered_seq;   /* the newest batch the node answered */
    VEC(waiter) waiting;     /* in batch order, from `head` on */
    uint32_t head;
    dict *owed;              /* key -> owed */
} link_acks;

struct acks {
    sessions *set;
    int (*fail)(void *ctx, const op *o);
    void *ctx;
    link_acks links[CLUSTER_MAX_NODES];
};

acks *acks_new(sessions *set, int (*fail)(void *ctx, const op *o), void *ctx)
{
    acks *a = xcalloc(1, sizeof(*a));
    a->set = set;
    a->fail = fail;
    a->ctx = ctx;
    for (int i = 0; i < CLUSTER_MAX_NODES; i++)
        a->links[i].owed = dict_new();
    return a;
}

static void ack_free(ack *k)
{
    xfree(k->correlation_id);
    xfree(k);
}

void acks_free(acks *a)
{
    if (a == NULL)
        return;
    for (int i = 0; i < CLUSTER_MAX_NODES; i++) {
        link_acks *la = &a->links[i];
        for (uint32_t w = la->head; w < la->waiting.n; w++)
            if (--la->waiting.v[w].k->holds == 0)
                ack_free(la->waiting.v[w].k);
        vec_free(&la->waiting);
        dict_free_with(la->owed, xfree);
    }
    xfree(a);
}

ack *ack_new(acks *a, session *s, int topic, int action, const char *correlation_id)
{
    ack *k = xcalloc(1, sizeof(*k));
    k->session_id = s->id;
    k->holds = 1;
    k->topic = topic;
    k->action = action;
    k->correlation_id = correlation_id ? xstrdup(correlation_id) : NULL;
    return k;
}

void ack_wait(acks *a, ack *k, int li, uint64_t seq)
{
    link_acks *la = &a->links[li];
    if (la->answered_seq >= seq)
        return;
    k->holds++;
    vec_push(&la->waiting, ((waiter){seq, k}));
}

void ack_discard(acks *a, ack *k)
{
    (void)a;
    if (--k->holds > 0) /* it waits on batches already: it goes out when they are answered */
        return;
    ack_free(k);
}

void ack_release(acks *a, ack *k)
{
    if (--k->holds > 0)
        return;
    session *s = sessions_get(a->set, k->session_id);
    if (s != NULL)
        reply_send(s, k->topic,
                   &(client_reply){.action = k->action, .correlation_id = k->correlation_id, .is_ack = true});
    ack_free(k);
}

void acks_batch_answered(acks *a, int li, uint64_t seq)
{
    link_acks *la = &a->links[li];
    if (seq > la->answered_seq)
        la->answered_seq = seq;
    while (la->head < la->waiting.n && la->waiting.v[la->head].seq <= la->answered_seq)
        ack_release(a, la->waiting.v[la->head++].k);
    if (la->head == la->waiting.n) { /* drained: start the array over */
        la->head = la->waiting.n = 0;
    } else if (la->head > 64 && la->head > la->waiting.n / 2) { /* never drained: compact */
        memmove(la->waiting.v, la->waiting.v + la->head, (la->waiting.n - la->head) * sizeof(waiter));
        la->waiting.n -= la->head;
        la->head = 0;
    }
}

/* Builds the key into buf (at least OWED_KEY_MAX bytes); returns its length. */
#define OWED_KEY_MAX (1 + 8 + 4 + 2 * (OP_NAME_MAX + 1))
static size_t make_key(uint8_t *buf, int cls, uint64_t session_id, strview name, strview ref)
{
    size_t n = 0;
    buf[n++] = (uint8_t)cls;
    put_be64(buf + n, session_id);
    n += 8;
    for (int i = 0; i < 4; i++)
        buf[n++] = (uint8_t)(name.len >> (24 - 8 * i));
    if (name.len > 0)
        memcpy(buf + n, name.ptr, name.len);
    n += name.len;
    if (ref.len > 0)
        memcpy(buf + n, ref.ptr, ref.len);
    return n + ref.len;
}

/* The answer class a request or an answer belongs to, or 0 when none is tracked. */
static int class_of(const op *o)
{
    if (o->session == 0 || o->name.len > OP_NAME_MAX || o->ref.len > OP_NAME_MAX)
        return 0; /* session 0: a resync or recovery, nobody waits */
    switch (o->kind) {
    case OP_RECORD_SUBSCRIBE:
    case OP_RECORD_READ:
    case OP_RECORD_STATE:
        return CLASS_STATE;
    case OP_RECORD_WRITE:
    case OP_RECORD_RESULT:
        return (o->flags & OP_FLAG_WRITE_ACK) ? CLASS_WRITE_ACK : 0;
    default:
        return 0;
    }
}

static size_t key_of(uint8_t *key, int cls, const op *o)
{
    return make_key(key, cls, o->session, o->name, cls == CLASS_WRITE_ACK ? o->ref : (strview){"", 0});
}

bool acks_tracks(const op *o)
{
    return o->kind != OP_RECORD_STATE && o->kind != OP_RECORD_RESULT && class_of(o) != 0;
}

void acks_owe(acks *a, int li, const op *o)
{
    if (!acks_tracks(o))
        return;
    int cls = class_of(o);
    dict *d = a->links[li].owed;
    uint8_t key[OWED_KEY_MAX];
    size_t len = key_of(key, cls, o);
    owed *w = dict_get(d, key, len);
    if (w == NULL) {
        w = xcalloc(1, sizeof(*w));
        dict_put(d, key, len, w);
    }
    w->count++;
    w->kind = o->kind;
    w->action = o->action;
    w->corr = o->corr;
}

/* Forgets one owed answer of class cls keyed by o in d; true when there was one. */
static bool drop_one(dict *d, int cls, const op *o)
{
    uint8_t key[OWED_KEY_MAX];
    size_t len = key_of(key, cls, o);
    owed *w = dict_get(d, key, len);
    if (w == NULL)
        return false;
    if (--w->count == 0)
        xfree(dict_del(d, key, len));
    return true;
}

void acks_settle(acks *a, int li, const op *answer)
{
    dict *d = a->links[li].owed;
    int cls = dict_size(d) > 0 && (answer->kind == OP_RECORD_STATE || answer->kind == OP_RECORD_RESULT)
                  ? class_of(answer) : 0;
    if (cls == 0)
        return;
    (void)drop_one(d, cls, answer);
}

bool acks_unowe(acks *a, int li, const op *o)
{
    return acks_tracks(o) && drop_one(a->links[li].owed, class_of(o), o);
}

struct fail_ctx {
    acks *a;
    uint64_t answered;
};

static int fail_one(const void *key, size_t len, void *v, void *arg)
{
    struct fail_ctx *c = arg;
    const uint8_t *k = key;
    owed *w = v;
    uint32_t name_len = (uint32_t)k[9] << 24 | (uint32_t)k[10] << 16 | (uint32_t)k[11] << 8 | k[12];
    op o = {.kind = w->kind, .session = get_be64(k + 1), .action = w->action, .corr = w->corr,
            .name = {(const char *)k + 13, name_len},
            .ref = {(const char *)k + 13 + name_len, (uint32_t)(len - 13 - name_len)},
            .flags = k[0] == CLASS_WRITE_ACK ? OP_FLAG_WRITE_ACK : 0};
    for (uint32_t i = 0; i < w->count; i++)
        c->answered += (uint64_t)c->a->fail(c->a->ctx, &o);
    xfree(w);
    return 0;
}

uint64_t acks_fail_link(acks *a, int li)
{
    link_acks *la = &a->links[li];
    dict *d = la->owed;
    la->owed = dict_new(); /* failing may owe again (a recovery read): into the new table */
    struct fail_ctx c = {a, 0};
    dict_foreach(d, fail_one, &c); /* fail_one frees the values */
    dict_free(d);
    return c.answered;
}

struct shard_fail_ctx {
    struct fail_ctx fail;
    const uint8_t *moved;
    dict *keep;
};

/* Fails an owed entry of a moved shard; keeps the others. */
static int fail_moved(const void *key, size_t len, void *v, void *arg)
{
    struct shard_fail_ctx *c = arg;
    const uint8_t *k = key;
    uint32_t name_len = (uint32_t)k[9] << 24 | (uint32_t)k[10] << 16 | (uint32_t)k[11] << 8 | k[12];
    if (shardmap_bit(c->moved, shard_of((const char *)k + 13, name_len)))
        return fail_one(key, len, v, &c->fail);
    dict_put(c->keep, key, len, v);
    return 0;
}

uint64_t acks_fail_shards(acks *a, int li, const uint8_t *moved)
{
    link_acks *la = &a->links[li];
    dict *d = la->owed;
    la->owed = dict_new(); /* failing may owe again: into the new table, with the entries kept */
    struct shard_fail_ctx c = {{a, 0}, moved, la->owed};
    dict_foreach(d, fail_moved, &c);
    dict_free(d);
    return c.fail.answered;
}
