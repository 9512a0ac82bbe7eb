/* converge.c - which of a session's record copies must be brought back to the
 * server's (see internal.h, "converge"). The official client raises its own
 * version on every write before the owner answers; a write that never applies
 * leaves the copy ahead of the record for good, every later write refused as
 * INVALID_VERSION. records.c corrects such a copy by pushing the record as it
 * is (an UPDATE at the current version: the client merges, remote wins); this
 * table says when:
 *
 * - a write refused or lost because its node was down (the broker refused it,
 *   or the node went away with it unanswered) leaves the name pending: once
 *   the node is back, converge_take hands it over to be read and pushed, so
 *   the client converges without writing first;
 * - an INVALID_VERSION refusal comes with the record's state from the node: it
 *   is pushed unless a correction went out since the session's last other
 *   refusal of a write to the name (converge_correct). The writes refused
 *   after one correction were sent before the client had it (a burst); pushing
 *   again could take back a write the client made since, from the corrected
 *   version, that the owner accepts (its own update never reaches it).
 *
 * - a write of the session's that applies (converge_applied) settles the name:
 *   its copy is the record's then, nothing pending or corrected is left;
 * - a correction read (converge_reading .. converge_read_done) brings back the
 *   record as it was when the owner read it. When the session wrote the name
 *   meanwhile (converge_wrote), that state is older than what the client holds
 *   and would roll its copy back (its next write then reuses a version): it is
 *   held back (converge_read_done says so; counted). A copy still ahead after
 *   that is corrected by the INVALID_VERSION its next write gets.
 *
 * Bounds: CONVERGE_NAMES names per session. A name that is neither pending,
 * corrected nor being read is not kept. Beyond the bound the least recently
 * used name that is not pending and has no read out goes (its next refusal is corrected again); when every name is
 * pending, the session is marked overflowed for the name's node instead, and
 * every record it holds from that node is pushed when the node is back. Only
 * sessions with a name or an overflow are kept; a session's table goes when it
 * closes. Nothing here is touched by a write that is not refused. */
#include <string.h>

#include "dict.h"
#include "internal.h"
#include "mem.h"
#include "vec.h"

typedef struct conv_name {
    char *name;
    uint32_t len;
    int li;         /* the node link owning it */
    bool pending;   /* refused or lost while its node was down: pushed when it is back */
    bool corrected; /* a correction went out since the session's last refused write to it */
    bool wrote;     /* the session wrote it while a correction read was out */
    uint16_t reads; /* correction reads out (read_to_correct), answered or failed one by one */
    uint64_t used;  /* recency (the clock), for eviction */
} conv_name;

typedef struct conv_session {
    uint64_t id;
    uint32_t n;
    conv_name names[CONVERGE_NAMES];
    uint64_t overflow; /* bit li: a pending name of node li found no room: push all it holds from li */
} conv_session;

struct converge {
    dict *sessions; /* session id -> conv_session */
    uint64_t clock;
    uint64_t overflows; /* times a session overflowed (a counter) */
    uint64_t held;      /* correction reads held back: the session wrote meanwhile (a counter) */
};

converge *converge_new(void)
{
    converge *c = xcalloc(1, sizeof(*c));
    c->sessions = dict_new();
    return c;
}

static void free_session(void *v)
{
    conv_session *cs = v;
    for (uint32_t i = 0; i < cs->n; i++)
        xfree(cs->names[i].name);
    xfree(cs);
}

void converge_free(converge *c)
{
    if (c == NULL)
        return;
    dict_free_with(c->sessions, free_session);
    xfree(c);
}

static conv_session *session_of(converge *c, uint64_t id, bool create)
{
    conv_session *cs = dict_size(c->sessions) > 0 ? dict_get(c->sessions, &id, sizeof(id)) : NULL;
    if (cs == NULL && create) {
        cs = xcalloc(1, sizeof(*cs));
        cs->id = id;
        dict_put(c->sessions, &id, sizeof(id), cs);
    }
    return cs;
}

static conv_name *find(conv_session *cs, strview name)
{
    for (uint32_t i = 0; cs != NULL && i < cs->n; i++)
        if (cs->names[i].len == name.len && memcmp(cs->names[i].name, name.ptr, name.len) == 0)
            return &cs->names[i];
    return NULL;
}

/* Removes cs->names[i] (the last takes its place). */
static void remove_at(conv_session *cs, uint32_t i)
{
    xfree(cs->names[i].name);
    cs->names[i] = cs->names[--cs->n];
}

/* Forgets cs when it holds nothing any more. */
static void drop_if_empty(converge *c, conv_session *cs)
{
    if (cs->n == 0 && cs->overflow == 0)
        free_session(dict_del(c->sessions, &cs->id, sizeof(cs->id)));
}

/* Whether e still says something: pending, corrected or being read. */
static bool holds(const conv_name *e)
{
    return e->pending || e->corrected || e->reads > 0;
}

/* Removes e from cs, and cs from c, once they say nothing any more. */
static void settle(converge *c, conv_session *cs, conv_name *e)
{
    if (holds(e))
        return;
    remove_at(cs, (uint32_t)(e - cs->names));
    drop_if_empty(c, cs);
}

/* A new entry for name in cs, making room by evicting the least recently used
 * name that is not pending and has no read out; NULL when there is none. */
static conv_name *add(converge *c, conv_session *cs, strview name, int li)
{
    if (cs->n == CONVERGE_NAMES) {
        int victim = -1;
        for (uint32_t i = 0; i < cs->n; i++)
            if (!cs->names[i].pending && cs->names[i].reads == 0 && (victim < 0 || cs->names[i].used < cs->names[victim].used))
                victim = (int)i;
        if (victim < 0)
            return NULL;
        remove_at(cs, (uint32_t)victim);
    }
    conv_name *e = &cs->names[cs->n++];
    *e = (conv_name){.name = xstrndup(name.ptr, name.len), .len = (uint32_t)name.len, .li = li,
                     .used = ++c->clock};
    return e;
}

void converge_lost(converge *c, uint64_t sid, strview name, int li)
{
    if (li < 0 || li >= 64)
        return;
    conv_session *cs = session_of(c, sid, true);
    conv_name *e = find(cs, name);
    if (e == NULL && (e = add(c, cs, name, li)) == NULL) {
        if (!(cs->overflow & (1ull << li)))
            c->overflows++;
        cs->overflow |= 1ull << li;
        return;
    }
    e->li = li;
    e->pending = true;
    e->corrected = false;
    e->used = ++c->clock;
}

void converge_rearm(converge *c, uint64_t sid, strview name)
{
    conv_session *cs = session_of(c, sid, false);
    conv_name *e = find(cs, name);
    if (e == NULL)
        return;
    e->corrected = false;
    settle(c, cs, e);
}

void converge_applied(converge *c, uint64_t sid, strview name)
{
    conv_session *cs = session_of(c, sid, false);
    conv_name *e = find(cs, name);
    if (e == NULL)
        return;
    e->pending = false;
    e->corrected = false;
    if (e->reads > 0)
        e->wrote = true; /* what a read out brings back is older than this write */
    settle(c, cs, e);
}

void converge_reading(converge *c, uint64_t sid, strview name, int li)
{
    conv_session *cs = session_of(c, sid, true);
    conv_name *e = find(cs, name);
    if (e == NULL && (e = add(c, cs, name, li)) == NULL) {
        drop_if_empty(c, cs); /* no room: its state is pushed as it comes (the rare race stays) */
        return;
    }
    if (e->reads == 0)
        e->wrote = false;
    if (e->reads < UINT16_MAX)
        e->reads++;
    e->used = ++c->clock;
}

void converge_wrote(converge *c, uint64_t sid, strview name)
{
    conv_name *e = find(session_of(c, sid, false), name);
    if (e != NULL && e->reads > 0)
        e->wrote = true;
}

bool converge_read_done(converge *c, uint64_t sid, strview name)
{
    conv_session *cs = session_of(c, sid, false);
    conv_name *e = find(cs, name);
    if (e == NULL || e->reads == 0)
        return true;
    bool push = !e->wrote;
    if (--e->reads == 0)
        e->wrote = false;
    if (!push)
        c->held++;
    settle(c, cs, e);
    return push;
}

bool converge_correct(converge *c, uint64_t sid, strview name, int li)
{
    conv_session *cs = session_of(c, sid, true);
    conv_name *e = find(cs, name);
    if (e != NULL && e->corrected) {
        e->used = ++c->clock;
        return false;
    }
    if (e == NULL && (e = add(c, cs, name, li)) == NULL)
        return true; /* no room to remember it: corrected again next time (harmless but for a race) */
    e->corrected = true;
    e->used = ++c->clock;
    return true;
}

struct take_ctx {
    converge *c;
    int li;
    VEC(converge_due) due;
    VEC(conv_session *) emptied;
};

static int take_session(const void *key, size_t len, void *value, void *arg)
{
    struct take_ctx *t = arg;
    conv_session *cs = value;
    uint64_t bit = 1ull << t->li;
    if (cs->overflow & bit) {
        vec_push(&t->due, ((converge_due){cs->id, NULL}));
        cs->overflow &= ~bit;
    }
    for (uint32_t i = 0; i < cs->n;) {
        conv_name *e = &cs->names[i];
        if (e->li != t->li) {
            i++;
            continue;
        }
        if (e->pending) /* the name goes to the caller (a copy when e stays) */
            vec_push(&t->due, ((converge_due){cs->id, e->reads > 0 ? xstrndup(e->name, e->len) : e->name}));
        if (e->reads > 0) { /* kept for the read out; nothing else */
            e->pending = false;
            e->corrected = false;
            i++;
            continue;
        }
        if (!e->pending)
            xfree(e->name);
        /* what was corrected before the node came back is no proof now (it may have lost writes) */
        cs->names[i] = cs->names[--cs->n];
    }
    if (cs->n == 0 && cs->overflow == 0)
        vec_push(&t->emptied, cs);
    return 0;
}

converge_due *converge_take(converge *c, int li, size_t *n)
{
    *n = 0;
    if (li < 0 || li >= 64 || dict_size(c->sessions) == 0)
        return NULL;
    struct take_ctx t = {.c = c, .li = li};
    dict_foreach(c->sessions, take_session, &t);
    for (size_t i = 0; i < t.emptied.n; i++)
        drop_if_empty(c, t.emptied.v[i]);
    vec_free(&t.emptied);
    *n = t.due.n;
    return t.due.v;
}

void converge_due_free(converge_due *due, size_t n)
{
    for (size_t i = 0; i < n; i++)
        xfree(due[i].name);
    xfree(due);
}

void converge_forget(converge *c, uint64_t sid)
{
    conv_session *cs = session_of(c, sid, false);
    if (cs != NULL)
        free_session(dict_del(c->sessions, &sid, sizeof(sid)));
}

size_t converge_sessions(const converge *c)
{
    return dict_size(c->sessions);
}

uint64_t converge_overflows(const converge *c)
{
    return c->overflows;
}

uint64_t converge_held(const converge *c)
{
    return c->held;
}
