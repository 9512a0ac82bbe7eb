/* listen.c - listening (active providers) for events and records, per node.
 *
 * Every node knows every listen pattern (brokers send LISTEN to all nodes), in
 * the order the LISTENs arrived; each node looks after the names it owns. When
 * a name gets its first subscriber here, the node offers it to the matching
 * listeners one at a time (SUBSCRIPTION_FOR_PATTERN_FOUND): in random order
 * (listen.shuffleProviders, the default), else in deepstream's fixed order (by
 * pattern, in the order each pattern got its first listener, then by arrival).
 * It waits listen.responseTimeout for each: LISTEN_ACCEPT makes that listener
 * the name's one active provider, a reject or a timeout (LISTEN_RESPONSE_TIMEOUT
 * to the listener) asks the next; a listener arriving during the search joins
 * its end. When the last subscriber leaves, the active provider gets
 * ..._REMOVED. When the active provider unlistens or goes away, the search
 * starts again among the others (record subscribers hear
 * SUBSCRIPTION_HAS_NO_PROVIDER, then HAS_PROVIDER when a new one accepts). A new
 * listener is offered the names that have none. A name whose listeners all
 * declined is kept as unmatched: every listen.rematchInterval, those unmatched
 * for at least listen.matchCooldown are searched again, among all their
 * listeners, a bounded slice of names per executor turn.
 * Not here: the subscriptions themselves (events.c, records.c), pattern syntax
 * (pattern.c). */
#include <string.h>

#include "deepstream.pb-c.h"
#include "log.h"
#include "mem.h"
#include "node.h"
#include "pattern.h"
#include "util.h"

/* Offers per turn of a rematch pass: bounds the executor's work per turn. */
#define REMATCH_SLICE 256

/* Rematch is off at an interval of a second or less, as in deepstream. */
#define REMATCH_MIN_MS 1000

typedef struct listener {
    char *text;
    uint32_t len;
    pattern *re;
    peer *p;
    uint64_t session;
    uint64_t seq;   /* arrival order */
    uint64_t group; /* arrival order of the pattern's first listener still here */
} listener;

typedef struct candidate {
    peer *p;
    uint64_t session;
    char *text;
} candidate;

/* A name with an active provider or a search in progress. */
typedef struct provided {
    bool active;
    candidate provider;
    candidate *cands;
    uint32_t ncand, at;
    bool searching;
    int64_t deadline;
} provided;

/* A subscribed name whose last search ended without a provider. */
typedef struct unmatched {
    int64_t since;
} unmatched;

typedef struct space {
    int topic;    /* TOPIC__TOPIC_EVENT or TOPIC__TOPIC_RECORD */
    listener *ls; /* in arrival order */
    uint32_t n, cap;
    uint64_t seq, groups;
    dict *names;     /* name -> provided */
    dict *unmatched; /* name -> unmatched (only while rematch is on) */
} space;

/* A name a rematch pass has still to search. */
typedef struct due {
    char *name;
    size_t len;
    space *sp;
} due;

struct listen_table {
    node *n;
    const eddy_config *cfg;
    space sp[2];
    int64_t next_deadline;
    int64_t next_rematch; /* INT64_MAX: rematch off */
    due *due;             /* the current rematch pass, worked off REMATCH_SLICE a turn */
    size_t ndue, done;
    uint64_t rng[4];      /* xoshiro256** state, seeded from getrandom */
};

static space *space_of(listen_table *t, int topic)
{
    return topic == TOPIC__TOPIC_RECORD ? &t->sp[1] : &t->sp[0];
}

static bool rematch_on(const eddy_config *cfg)
{
    return cfg->listen_rematch_interval_ms > REMATCH_MIN_MS;
}

listen_table *listen_new(node *n, const eddy_config *cfg)
{
    listen_table *t = xcalloc(1, sizeof(*t));
    t->n = n;
    t->cfg = cfg;
    t->sp[0].topic = TOPIC__TOPIC_EVENT;
    t->sp[1].topic = TOPIC__TOPIC_RECORD;
    for (int i = 0; i < 2; i++) {
        t->sp[i].names = dict_new();
        t->sp[i].unmatched = dict_new();
    }
    t->next_deadline = INT64_MAX;
    t->next_rematch = rematch_on(cfg) ? now_ms() + cfg->listen_rematch_interval_ms : INT64_MAX;
    if (cfg->listen_rematch_interval_ms > 0 && !rematch_on(cfg))
        log_warn("listen-rematch-off", "rematch_interval_ms=%lld (rematching needs more than %d)",
                 (long long)cfg->listen_rematch_interval_ms, REMATCH_MIN_MS);
    for (int i = 0; i < 4; i++)
        t->rng[i] = random_id(); /* non-zero, so never the all-zero state */
    return t;
}

/* ---- randomness for listen.shuffleProviders: xoshiro256** ---- */

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(listen_table *t)
{
    uint64_t *s = t->rng;
    uint64_t r = rotl(s[1] * 5, 7) * 9, x = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= x;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in [0, bound), bound > 0: draws past the last whole multiple of
 * bound are redrawn, so no value is favoured. */
static uint32_t rng_below(listen_table *t, uint32_t bound)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound, r;
    do
        r = rng_next(t);
    while (r >= limit);
    return (uint32_t)(r % bound);
}

static void free_cands(provided *pv)
{
    for (uint32_t i = 0; i < pv->ncand; i++)
        xfree(pv->cands[i].text);
    xfree(pv->cands);
    pv->cands = NULL;
    pv->ncand = pv->at = 0;
    pv->searching = false;
}

static void free_provided(provided *pv)
{
    free_cands(pv);
    xfree(pv->provider.text);
    xfree(pv);
}

static int free_provided_cb(const void *k, size_t l, void *v, void *arg)
{
    free_provided(v);
    return 0;
}

static int free_unmatched_cb(const void *k, size_t l, void *v, void *arg)
{
    xfree(v);
    return 0;
}

void listen_free(listen_table *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < 2; i++) {
        for (uint32_t j = 0; j < t->sp[i].n; j++) {
            xfree(t->sp[i].ls[j].text);
            pattern_free(t->sp[i].ls[j].re);
        }
        xfree(t->sp[i].ls);
        dict_foreach(t->sp[i].names, free_provided_cb, NULL);
        dict_free(t->sp[i].names);
        dict_foreach(t->sp[i].unmatched, free_unmatched_cb, NULL);
        dict_free(t->sp[i].unmatched);
    }
    for (size_t i = t->done; i < t->ndue; i++)
        xfree(t->due[i].name);
    xfree(t->due);
    xfree(t);
}

static uint32_t found_action(int topic, int which)
{
    /* which: 0 FOUND, 1 REMOVED, 2 RESPONSE_TIMEOUT */
    if (topic == TOPIC__TOPIC_RECORD)
        return which == 0 ? RECORD__ACTION__RECORD_SUBSCRIPTION_FOR_PATTERN_FOUND
             : which == 1 ? RECORD__ACTION__RECORD_SUBSCRIPTION_FOR_PATTERN_REMOVED
                          : RECORD__ACTION__RECORD_LISTEN_RESPONSE_TIMEOUT;
    return which == 0 ? EVENT__ACTION__EVENT_SUBSCRIPTION_FOR_PATTERN_FOUND
         : which == 1 ? EVENT__ACTION__EVENT_SUBSCRIPTION_FOR_PATTERN_REMOVED
                      : EVENT__ACTION__EVENT_LISTEN_RESPONSE_TIMEOUT;
}

static void tell(listen_table *t, space *sp, const candidate *c, int which, const char *name, size_t len)
{
    op m = {.kind = OP_LISTEN_MESSAGE, .session = c->session, .action = found_action(sp->topic, which),
            .orig = (uint32_t)sp->topic, .name = {c->text, (uint32_t)strlen(c->text)},
            .ref = {name, (uint32_t)len}};
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    op_encode(&buf, &m);
    node_deliver_encoded(t->n, c->p, buf.data, buf.size);
    msgpack_sbuffer_destroy(&buf);
}

static bool listener_exists(space *sp, const candidate *c)
{
    for (uint32_t i = 0; i < sp->n; i++)
        if (sp->ls[i].p == c->p && sp->ls[i].session == c->session && strcmp(sp->ls[i].text, c->text) == 0)
            return true;
    return false;
}

static void provider_changed(listen_table *t, space *sp, const char *name, size_t len, bool has)
{
    if (sp->topic == TOPIC__TOPIC_RECORD)
        records_provider_changed(node_records(t->n), name, len, has);
}

/* The name's search ended without a provider: a rematch may try it again. */
static void mark_unmatched(listen_table *t, space *sp, const char *name, size_t len)
{
    if (!rematch_on(t->cfg))
        return;
    unmatched *u = dict_get(sp->unmatched, name, len);
    if (u == NULL) {
        u = xcalloc(1, sizeof(*u));
        dict_put(sp->unmatched, name, len, u);
    }
    u->since = now_ms();
}

static void forget_unmatched(space *sp, const char *name, size_t len)
{
    xfree(dict_del(sp->unmatched, name, len));
}

/* Offers name to the current candidate still listening, or ends the search. */
static void ask(listen_table *t, space *sp, const char *name, size_t len, provided *pv)
{
    while (pv->at < pv->ncand && !listener_exists(sp, &pv->cands[pv->at]))
        pv->at++;
    if (pv->at >= pv->ncand) {
        /* nobody (else) wants it: a new listener or a rematch reopens the search */
        free_cands(pv);
        mark_unmatched(t, sp, name, len);
        return;
    }
    pv->searching = true;
    pv->deadline = now_ms() + t->cfg->listen_response_timeout_ms;
    if (pv->deadline < t->next_deadline)
        t->next_deadline = pv->deadline;
    tell(t, sp, &pv->cands[pv->at], 0, name, len);
}

static int by_pattern_then_arrival(const void *a, const void *b)
{
    const listener *x = *(listener *const *)a, *y = *(listener *const *)b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The listeners matching name, in the order they are to be asked (shuffled,
 * or deepstream's: patterns in the order they got their first listener, each
 * pattern's listeners in arrival order). Returns NULL when none match. */
static candidate *candidates_for(listen_table *t, space *sp, const char *name, size_t len, uint32_t *n)
{
    *n = 0;
    if (sp->n == 0)
        return NULL;
    listener **m = xcalloc(sp->n, sizeof(*m));
    uint32_t k = 0;
    for (uint32_t i = 0; i < sp->n; i++)
        if (pattern_match(sp->ls[i].re, name, len))
            m[k++] = &sp->ls[i];
    if (t->cfg->listen_shuffle_providers) {
        for (uint32_t i = k; i > 1; i--) { /* Fisher-Yates */
            uint32_t j = rng_below(t, i);
            listener *tmp = m[i - 1];
            m[i - 1] = m[j];
            m[j] = tmp;
        }
    } else
        qsort(m, k, sizeof(*m), by_pattern_then_arrival);
    candidate *c = k ? xcalloc(k, sizeof(*c)) : NULL;
    for (uint32_t i = 0; i < k; i++)
        c[i] = (candidate){m[i]->p, m[i]->session, xstrdup(m[i]->text)};
    xfree(m);
    *n = k;
    return c;
}

/* A new search round among every listener of name (none when it has a provider
 * or a search is under way). */
static void start_search(listen_table *t, space *sp, const char *name, size_t len)
{
    provided *pv = dict_get(sp->names, name, len);
    if (pv != NULL && (pv->active || pv->searching))
        return;
    forget_unmatched(sp, name, len); /* a name no listener matches waits for one: on_listen */
    uint32_t n;
    candidate *cands = candidates_for(t, sp, name, len, &n);
    if (n == 0)
        return;
    if (pv == NULL) {
        pv = xcalloc(1, sizeof(*pv));
        dict_put(sp->names, name, len, pv);
    }
    free_cands(pv);
    pv->cands = cands;
    pv->ncand = n;
    pv->at = 0;
    ask(t, sp, name, len, pv);
    if (!pv->active && !pv->searching) {
        dict_del(sp->names, name, len);
        free_provided(pv);
    }
}

/* A listener that arrived during pv's search is asked after the others (as in
 * deepstream, whatever the order setting). */
static void join_search(provided *pv, const listener *l)
{
    for (uint32_t i = pv->at; i < pv->ncand; i++)
        if (pv->cands[i].p == l->p && pv->cands[i].session == l->session && strcmp(pv->cands[i].text, l->text) == 0)
            return; /* left and came back while still queued */
    pv->cands = xrealloc(pv->cands, (pv->ncand + 1) * sizeof(*pv->cands));
    pv->cands[pv->ncand++] = (candidate){l->p, l->session, xstrdup(l->text)};
}

void listen_interest(listen_table *t, int topic, const char *name, size_t len, bool added)
{
    space *sp = space_of(t, topic);
    if (added) {
        if (sp->n > 0)
            start_search(t, sp, name, len);
        return;
    }
    forget_unmatched(sp, name, len);
    provided *pv = dict_del(sp->names, name, len);
    if (pv == NULL)
        return;
    if (pv->active)
        tell(t, sp, &pv->provider, 1, name, len); /* the last subscriber left */
    free_provided(pv);
}

bool listen_has_provider(listen_table *t, int topic, const char *name, size_t len)
{
    provided *pv = dict_get(space_of(t, topic)->names, name, len);
    return pv != NULL && pv->active;
}

struct reconcile_ctx {
    listen_table *t;
    space *sp;
    listener *l;
    char **names;
    size_t n, cap;
};

static void reconcile_name(void *arg, const char *name, size_t len)
{
    struct reconcile_ctx *c = arg;
    if (!pattern_match(c->l->re, name, len))
        return;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->names = xrealloc(c->names, c->cap * sizeof(char *));
    }
    c->names[c->n++] = xstrndup(name, len);
}

static void on_listen(listen_table *t, space *sp, peer *p, const op *o)
{
    uint64_t group = 0;
    for (uint32_t i = 0; i < sp->n; i++) {
        if (sp->ls[i].len != o->name.len || memcmp(sp->ls[i].text, o->name.ptr, o->name.len) != 0)
            continue;
        if (sp->ls[i].p == p && sp->ls[i].session == o->session)
            return; /* already listening */
        group = sp->ls[i].group;
    }
    pattern *re = pattern_compile(o->name.ptr, o->name.len);
    if (re == NULL)
        return; /* brokers validate patterns before sending them */
    if (sp->n == sp->cap) {
        sp->cap = sp->cap ? sp->cap * 2 : 4;
        sp->ls = xrealloc(sp->ls, sp->cap * sizeof(*sp->ls));
    }
    listener *l = &sp->ls[sp->n++];
    *l = (listener){xstrndup(o->name.ptr, o->name.len), o->name.len, re, p, o->session, ++sp->seq,
                    group ? group : ++sp->groups};
    /* reconcile: names subscribed here without a provider are offered again;
     * a search under way gets the new listener at its end */
    struct reconcile_ctx c = {.t = t, .sp = sp, .l = l};
    if (sp->topic == TOPIC__TOPIC_RECORD)
        records_foreach_subscribed(node_records(t->n), reconcile_name, &c);
    else
        events_foreach_name(node_events(t->n), reconcile_name, &c);
    for (size_t i = 0; i < c.n; i++) {
        size_t len = strlen(c.names[i]);
        provided *pv = dict_get(sp->names, c.names[i], len);
        if (pv != NULL && pv->searching)
            join_search(pv, l);
        else
            start_search(t, sp, c.names[i], len);
        xfree(c.names[i]);
    }
    xfree(c.names);
}

struct lost_ctx {
    peer *p;
    uint64_t session; /* 0: every session of p */
    const char *text; /* NULL: every pattern */
    char **names;
    size_t n, cap;
};

static bool lost_match(const struct lost_ctx *x, const candidate *c)
{
    return c->p == x->p && (x->session == 0 || c->session == x->session) &&
           (x->text == NULL || strcmp(c->text, x->text) == 0);
}

static int collect_lost(const void *k, size_t l, void *v, void *arg)
{
    struct lost_ctx *x = arg;
    provided *pv = v;
    bool hit = (pv->active && lost_match(x, &pv->provider)) ||
               (pv->searching && pv->at < pv->ncand && lost_match(x, &pv->cands[pv->at]));
    if (hit) {
        if (x->n == x->cap) {
            x->cap = x->cap ? x->cap * 2 : 16;
            x->names = xrealloc(x->names, x->cap * sizeof(char *));
        }
        x->names[x->n++] = xstrndup(k, l);
    }
    return 0;
}

/* Removes matching listeners; names they provided (or were being asked about)
 * look for another provider. */
static void remove_listeners(listen_table *t, space *sp, struct lost_ctx *x)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < sp->n; i++) { /* keeps the arrival order */
        candidate c = {sp->ls[i].p, sp->ls[i].session, sp->ls[i].text};
        if (lost_match(x, &c)) {
            xfree(sp->ls[i].text);
            pattern_free(sp->ls[i].re);
        } else
            sp->ls[kept++] = sp->ls[i];
    }
    sp->n = kept;
    dict_foreach(sp->names, collect_lost, x);
    for (size_t i = 0; i < x->n; i++) {
        const char *name = x->names[i];
        size_t len = strlen(name);
        provided *pv = dict_get(sp->names, name, len);
        if (pv->active) {
            pv->active = false;
            xfree(pv->provider.text);
            pv->provider.text = NULL;
            provider_changed(t, sp, name, len, false);
            dict_del(sp->names, name, len);
            free_provided(pv);
            start_search(t, sp, name, len);
        } else {
            pv->at++;
            ask(t, sp, name, len, pv);
            if (!pv->searching) {
                dict_del(sp->names, name, len);
                free_provided(pv);
            }
        }
        xfree(x->names[i]);
    }
    xfree(x->names);
}

static void on_answer(listen_table *t, space *sp, peer *p, const op *o)
{
    const char *name = o->ref.ptr;
    size_t len = o->ref.len;
    provided *pv = dict_get(sp->names, name, len);
    if (pv == NULL || !pv->searching || pv->at >= pv->ncand)
        return;
    candidate *c = &pv->cands[pv->at];
    if (c->p != p || c->session != o->session || strlen(c->text) != o->name.len ||
        memcmp(c->text, o->name.ptr, o->name.len) != 0)
        return; /* not the listener we asked (late, or never asked) */
    bool accept = o->action == EVENT__ACTION__EVENT_LISTEN_ACCEPT ||
                  o->action == RECORD__ACTION__RECORD_LISTEN_ACCEPT;
    if (accept) {
        pv->active = true;
        pv->provider = (candidate){c->p, c->session, xstrdup(c->text)};
        free_cands(pv);
        provider_changed(t, sp, name, len, true);
        return;
    }
    pv->at++;
    ask(t, sp, name, len, pv);
    if (!pv->searching && !pv->active) {
        dict_del(sp->names, name, len);
        free_provided(pv);
    }
}

void listen_apply(listen_table *t, node_req *req, const op *o)
{
    space *sp = space_of(t, (int)o->orig);
    switch (o->kind) {
    case OP_LISTEN: on_listen(t, sp, req->from, o); break;
    case OP_UNLISTEN: {
        char *text = xstrndup(o->name.ptr, o->name.len);
        struct lost_ctx x = {.p = req->from, .session = o->session, .text = text};
        remove_listeners(t, sp, &x);
        xfree(text);
        break;
    }
    case OP_LISTEN_ANSWER: on_answer(t, sp, req->from, o); break;
    }
}

struct timeout_ctx {
    int64_t now, next;
    char **names;
    size_t n, cap;
};

static int collect_timeouts(const void *k, size_t l, void *v, void *arg)
{
    struct timeout_ctx *x = arg;
    provided *pv = v;
    if (!pv->searching)
        return 0;
    if (pv->deadline > x->now) {
        if (pv->deadline < x->next)
            x->next = pv->deadline;
        return 0;
    }
    if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 16;
        x->names = xrealloc(x->names, x->cap * sizeof(char *));
    }
    x->names[x->n++] = xstrndup(k, l);
    return 0;
}

/* Asks the next listener wherever the one asked did not answer in time. */
static void expire_offers(listen_table *t, int64_t now)
{
    t->next_deadline = INT64_MAX;
    for (int s = 0; s < 2; s++) {
        space *sp = &t->sp[s];
        struct timeout_ctx x = {.now = now, .next = INT64_MAX};
        dict_foreach(sp->names, collect_timeouts, &x);
        if (x.next < t->next_deadline)
            t->next_deadline = x.next;
        for (size_t i = 0; i < x.n; i++) {
            size_t len = strlen(x.names[i]);
            provided *pv = dict_get(sp->names, x.names[i], len);
            tell(t, sp, &pv->cands[pv->at], 2, x.names[i], len);
            pv->at++;
            ask(t, sp, x.names[i], len, pv);
            if (!pv->searching && !pv->active) {
                dict_del(sp->names, x.names[i], len);
                free_provided(pv);
            }
            xfree(x.names[i]);
        }
        xfree(x.names);
    }
}

struct due_ctx {
    listen_table *t;
    space *sp;
    int64_t before; /* unmatched since this time or earlier: cooled down */
    size_t cap;
};

static int collect_due(const void *k, size_t l, void *v, void *arg)
{
    struct due_ctx *c = arg;
    listen_table *t = c->t;
    if (((unmatched *)v)->since > c->before)
        return 0;
    if (t->ndue == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        t->due = xrealloc(t->due, c->cap * sizeof(*t->due));
    }
    t->due[t->ndue++] = (due){xstrndup(k, l), l, c->sp};
    return 0;
}

/* Every listen.rematchInterval, lists the unmatched names that have cooled
 * down; each turn searches the next REMATCH_SLICE of them again. */
static void rematch(listen_table *t, int64_t now)
{
    int64_t cooldown = t->cfg->listen_match_cooldown_ms;
    if (t->ndue == 0) {
        t->next_rematch = now + t->cfg->listen_rematch_interval_ms;
        struct due_ctx c = {.t = t, .before = now - cooldown};
        for (int s = 0; s < 2; s++) {
            c.sp = &t->sp[s];
            dict_foreach(c.sp->unmatched, collect_due, &c);
        }
        t->done = 0;
    }
    size_t end = t->done + REMATCH_SLICE < t->ndue ? t->done + REMATCH_SLICE : t->ndue;
    for (; t->done < end; t->done++) {
        due *d = &t->due[t->done];
        unmatched *u = dict_get(d->sp->unmatched, d->name, d->len);
        /* still unmatched, and not since a search that ended after the list was made */
        if (u != NULL && u->since <= now - cooldown)
            start_search(t, d->sp, d->name, d->len);
        xfree(d->name);
    }
    if (t->done == t->ndue) {
        xfree(t->due);
        t->due = NULL;
        t->ndue = t->done = 0;
    }
}

void listen_timers(listen_table *t)
{
    int64_t now = now_ms();
    if (now >= t->next_deadline)
        expire_offers(t, now);
    if (t->ndue > 0 || now >= t->next_rematch)
        rematch(t, now);
}

void listen_drop_peer(listen_table *t, peer *p)
{
    for (int s = 0; s < 2; s++) {
        struct lost_ctx x = {.p = p};
        remove_listeners(t, &t->sp[s], &x);
    }
}
