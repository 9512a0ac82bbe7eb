/* awaiting.c - the requests a node still owes an answer, per link.
 *
 * A record subscribe or read waits for the node's RECORD_STATE and a write with
 * an acknowledgement for its RECORD_RESULT; the node sends those only once the
 * write before them is durable, so they can be owed well after the node replied
 * to the batch that carried the request. When the node goes down, every
 * requester still waiting is answered with an error at once (the official
 * client has no timeout for write acknowledgements: it would wait forever).
 *
 * An entry is keyed by (answer class, session, name, correlation id) and counts
 * identical requests in flight. Service thread only. */
#include <string.h>

#include "broker.h"
#include "mem.h"
#include "util.h"

enum { CLASS_STATE = 'S', CLASS_WRITE_ACK = 'W' };

typedef struct owed {
    uint32_t count;
    uint32_t kind;   /* OP_RECORD_SUBSCRIBE, OP_RECORD_READ or OP_RECORD_WRITE */
    uint32_t action; /* the client's action */
    uint64_t corr;   /* bulk id (SUBSCRIBEANDHEAD) */
} owed;

struct awaiting {
    dict *owed; /* key -> owed */
};

awaiting *awaiting_new(void)
{
    awaiting *a = xcalloc(1, sizeof(*a));
    a->owed = dict_new();
    return a;
}

static int free_owed(const void *k, size_t l, void *v, void *arg)
{
    xfree(v);
    return 0;
}

void awaiting_free(awaiting *a)
{
    if (a == NULL)
        return;
    dict_foreach(a->owed, free_owed, NULL);
    dict_free(a->owed);
    xfree(a);
}

/* Builds the key into buf (at least AWAIT_KEY_MAX bytes); returns its length. */
#define AWAIT_KEY_MAX (1 + 8 + 4 + 2 * (OP_NAME_MAX + 1))
static size_t make_key(uint8_t *buf, int cls, uint64_t session_id, strview name, strview ref)
{
    size_t n = 0;
    buf[n++] = (uint8_t)cls;
    put_be64(buf + n, session_id);
    n += 8;
    for (int i = 0; i < 4; i++)
        buf[n++] = (uint8_t)(name.len >> (24 - 8 * i));
    memcpy(buf + n, name.ptr, name.len);
    n += name.len;
    memcpy(buf + n, ref.ptr, ref.len);
    return n + ref.len;
}

/* The answer class o waits for, or 0 when the broker does not track it. */
static int class_of_request(const op *o)
{
    if (o->session == 0 || o->name.len > OP_NAME_MAX || o->ref.len > OP_NAME_MAX)
        return 0; /* session 0: a resync or recovery, nobody waits */
    if (o->kind == OP_RECORD_SUBSCRIBE || o->kind == OP_RECORD_READ)
        return CLASS_STATE;
    if (o->kind == OP_RECORD_WRITE && (o->flags & OP_FLAG_WRITE_ACK))
        return CLASS_WRITE_ACK;
    return 0;
}

void awaiting_add(awaiting *a, const op *o)
{
    int cls = class_of_request(o);
    if (cls == 0)
        return;
    uint8_t key[AWAIT_KEY_MAX];
    strview ref = cls == CLASS_WRITE_ACK ? o->ref : (strview){"", 0};
    size_t len = make_key(key, cls, o->session, o->name, ref);
    owed *w = dict_get(a->owed, key, len);
    if (w == NULL) {
        w = xcalloc(1, sizeof(*w));
        dict_put(a->owed, key, len, w);
    }
    w->count++;
    w->kind = o->kind;
    w->action = o->action;
    w->corr = o->corr;
}

void awaiting_answered(awaiting *a, const op *answer)
{
    int cls = answer->kind == OP_RECORD_STATE ? CLASS_STATE
              : answer->kind == OP_RECORD_RESULT && (answer->flags & OP_FLAG_WRITE_ACK) ? CLASS_WRITE_ACK
                                                                                        : 0;
    if (cls == 0 || answer->session == 0 || answer->name.len > OP_NAME_MAX ||
        answer->ref.len > OP_NAME_MAX || dict_size(a->owed) == 0)
        return;
    uint8_t key[AWAIT_KEY_MAX];
    strview ref = cls == CLASS_WRITE_ACK ? answer->ref : (strview){"", 0};
    size_t len = make_key(key, cls, answer->session, answer->name, ref);
    owed *w = dict_get(a->owed, key, len);
    if (w != NULL && --w->count == 0)
        xfree(dict_del(a->owed, key, len));
}

size_t awaiting_count(const awaiting *a)
{
    return dict_size(a->owed);
}

struct fail_ctx {
    broker *b;
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
        c->answered += (uint64_t)records_fail(c->b, &o);
    xfree(w);
    return 0;
}

uint64_t awaiting_fail_all(broker *b, awaiting *a)
{
    struct fail_ctx c = {b, 0};
    dict_foreach(a->owed, fail_one, &c); /* fail_one frees values; the dict is renewed below */
    dict_free(a->owed);
    a->owed = dict_new();
    return c.answered;
}
