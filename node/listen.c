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
 *
 * Patterns come from clients, and matching is the work they can make
 * expensive: each match is bounded (pattern.c), and the matching itself has a
 * budget of MATCH_BUDGET_NS per executor turn. Within it, a search (a name
 * against every listener) and a reconcile (a new listener against every
 * subscribed name) run at once, as deepstream does; beyond it, they wait in
 * two queues (searches, reconciles) worked off, in turn, by the next turns,
 * from where they stopped (listeners in arrival order, names from a copy).
 * While anything waits, new work queues behind it. A name being matched is
 * neither searching nor provided; a listener arriving meanwhile is reached by
 * the matching, which goes on to the end of the listeners.
 * Not here: the subscriptions themselves (events.c and records.c, which report
 * first and last subscribers and let this module read their tables), pattern
 * syntax and limits (pattern.c). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "deepstream.pb-c.h"
#include "dict.h"
#include "internal.h"
#include "log.h"
#include "mem.h"
#include "pattern.h"
#include "util.h"
#include "vec.h"

/* Offers per turn of a rematch pass: bounds the executor's work per turn. */
#define REMATCH_SLICE 256

/* Rematch is off at an interval of a second or less, as in deepstream. */
#define REMATCH_MIN_MS 1000

/* Pattern matching per executor turn (and the batches applied since the last
 * one): about 2 ms, so that hostile patterns (each match up to about 0.05 ms)
 * or very many listeners and names cannot hold the node for longer. */
#define MATCH_BUDGET_NS 2000000

/* At most one listen-matching-behind line per this many ms. */
#define BEHIND_LOG_MS 10000

typedef struct listener {
    char *text;
    uint32_t len;
    pattern *re;
    peer *p;
    uint64_t session;
    uint64_t seq;     /* arrival order */
    uint64_t group;   /* arrival order of the pattern's first listener still here */
    bool reconciling; /* its reconcile waits in the queue */
} listener;

typedef struct candidate {
    peer *p;
    uint64_t session;
    char *text;
    uint64_t seq, group; /* the listener's, for deepstream's order */
} candidate;

struct space;

/* A name with an active provider, a search in progress, or its listeners
 * being matched for a search. */
typedef struct provided {
    bool active;
    candidate provider;
    VEC(candidate) cands;
    uint32_t at;
    bool searching;
    int64_t deadline;
    bool matching;   /* cands are being gathered: listeners after `cursor` still to match */
    uint64_t cursor; /* the last listener (seq) matched for this name's search */
    /* while matching waits in the queue: */
    struct space *sp;
    char *name;
    uint32_t name_len;
    struct provided *next_match, *prev_match;
} provided;

/* A subscribed name whose last search ended without a provider. */
typedef struct unmatched {
    int64_t since;
} unmatched;

/* Names copied out of a dict or table before it is changed. */
typedef VEC(strview) name_list;

typedef struct space {
    int topic; /* TOPIC__TOPIC_EVENT or TOPIC__TOPIC_RECORD */
    VEC(listener) ls; /* in arrival order */
    uint64_t seq, groups;
    dict *names;     /* name -> provided */
    dict *unmatched; /* name -> unmatched (only while rematch is on) */
    struct listen_table *t;
    /* the topic's subscriptions (listen_follow) */
    const subs *subscribed;
    void (*provider_changed)(void *ctx, strview name, bool has);
    void *ctx;
} space;

/* A name a rematch pass has still to search. */
typedef struct due {
    strview name;
    space *sp;
} due;

/* A new listener to offer the names subscribed without a provider. */
typedef struct reconcile {
    space *sp;
    uint64_t seq;    /* the listener */
    bool walked;     /* the subscribed names were walked once: the rest are copied */
    name_list rest;  /* names still to match */
    uint32_t next;   /* in rest */
} reconcile;

typedef struct listen_table {
    node_env *env;
    const eddy_config *cfg;
    space sp[2];
    int64_t next_deadline;
    int64_t next_rematch; /* INT64_MAX: rematch off */
    VEC(due) due;         /* the current rematch pass, worked off REMATCH_SLICE a turn */
    uint32_t done;
    /* matching: this turn's budget, and the work waiting for the next turns */
    int64_t spent_ns;
    provided *match_head, *match_tail; /* searches, oldest first */
    VEC(reconcile) jobs;               /* reconciles, oldest at jobs_head */
    uint32_t jobs_head;
    int64_t behind_logged_ms;
} listen_table;

static space *space_of(listen_table *t, int topic)
{
    return topic == TOPIC__TOPIC_RECORD ? &t->sp[1] : &t->sp[0];
}

static bool rematch_on(const eddy_config *cfg)
{
    return cfg->listen_rematch_interval_ms > REMATCH_MIN_MS;
}

static void names_add(name_list *l, const void *name, size_t len)
{
    vec_push(l, ((strview){xstrndup(name, len), (uint32_t)len}));
}

static void names_free(name_list *l)
{
    for (uint32_t i = 0; i < l->n; i++)
        xfree((char *)l->v[i].ptr);
    vec_free(l);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool budget_left(const listen_table *t)
{
    return t->spent_ns < MATCH_BUDGET_NS;
}

/* Matches l against name, its time counted against the turn's budget; false
 * (and nothing done) when the budget is spent. */
static bool match(listen_table *t, listener *l, strview name, bool *hit)
{
    if (!budget_left(t))
        return false;
    int64_t start = now_ns();
    *hit = pattern_match(l->re, name.ptr, name.len);
    t->spent_ns += now_ns() - start;
    return true;
}

static bool work_waits(const listen_table *t)
{
    return t->match_head != NULL || t->jobs_head < t->jobs.n;
}

/* The index of the first listener that arrived after seq (listeners are kept
 * in arrival order). */
static uint32_t first_after(const space *sp, uint64_t seq)
{
    uint32_t lo = 0, hi = sp->ls.n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (sp->ls.v[mid].seq <= seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static listener *listener_by_seq(space *sp, uint64_t seq)
{
    uint32_t i = first_after(sp, seq - 1);
    return i < sp->ls.n && sp->ls.v[i].seq == seq ? &sp->ls.v[i] : NULL;
}

static candidate candidate_of(const listener *l)
{
    return (candidate){l->p, l->session, xstrdup(l->text), l->seq, l->group};
}

static void *listen_create(node_env *env)
{
    if (sodium_init() < 0) /* randombytes_uniform's generator */
        abort();
    listen_table *t = xcalloc(1, sizeof(*t));
    t->env = env;
    t->cfg = env->cfg;
    t->sp[0].topic = TOPIC__TOPIC_EVENT;
    t->sp[1].topic = TOPIC__TOPIC_RECORD;
    for (int i = 0; i < 2; i++) {
        t->sp[i].t = t;
        t->sp[i].names = dict_new();
        t->sp[i].unmatched = dict_new();
    }
    t->next_deadline = INT64_MAX;
    t->next_rematch = rematch_on(t->cfg) ? now_ms() + t->cfg->listen_rematch_interval_ms : INT64_MAX;
    if (t->cfg->listen_rematch_interval_ms > 0 && !rematch_on(t->cfg))
        log_warn("listen-rematch-off", "rematch_interval_ms=%lld (rematching needs more than %d)",
                 (long long)t->cfg->listen_rematch_interval_ms, REMATCH_MIN_MS);
    env->listen = t;
    return t;
}

static void interest(listen_table *t, space *sp, strview name, bool added);

/* The subscription table's hooks (ctx: the space). */
static void first_peer(void *ctx, strview name, void *data)
{
    space *sp = ctx;
    interest(sp->t, sp, name, true);
}

static void last_peer(void *ctx, strview name, void *data)
{
    space *sp = ctx;
    interest(sp->t, sp, name, false);
}

subs *listen_follow(listen_table *t, int topic, void (*provider_changed)(void *ctx, strview name, bool has),
                    void *ctx)
{
    space *sp = space_of(t, topic);
    subs *subscribed = subs_new(0, (subs_hooks){first_peer, last_peer}, sp);
    sp->subscribed = subscribed;
    sp->provider_changed = provider_changed;
    sp->ctx = ctx;
    return subscribed;
}

static void free_cands(provided *pv)
{
    for (uint32_t i = 0; i < pv->cands.n; i++)
        xfree(pv->cands.v[i].text);
    vec_free(&pv->cands);
    pv->at = 0;
    pv->searching = false;
}

static void free_provided(void *v)
{
    provided *pv = v;
    free_cands(pv);
    xfree(pv->provider.text);
    xfree(pv->name);
    xfree(pv);
}

static void free_reconcile(reconcile *j)
{
    names_free(&j->rest);
}

static void listen_destroy(void *self)
{
    listen_table *t = self;
    for (int i = 0; i < 2; i++) {
        for (uint32_t j = 0; j < t->sp[i].ls.n; j++) {
            xfree(t->sp[i].ls.v[j].text);
            pattern_free(t->sp[i].ls.v[j].re);
        }
        vec_free(&t->sp[i].ls);
        dict_free_with(t->sp[i].names, free_provided); /* the waiting searches too */
        dict_free_with(t->sp[i].unmatched, xfree);
    }
    for (uint32_t i = t->done; i < t->due.n; i++)
        xfree((char *)t->due.v[i].name.ptr);
    vec_free(&t->due);
    for (uint32_t i = t->jobs_head; i < t->jobs.n; i++)
        free_reconcile(&t->jobs.v[i]);
    vec_free(&t->jobs);
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

static void tell(listen_table *t, space *sp, const candidate *c, int which, strview name)
{
    op m = {.kind = OP_LISTEN_MESSAGE, .session = c->session, .action = found_action(sp->topic, which),
            .orig = (uint32_t)sp->topic, .name = sv_of(c->text), .ref = name};
    peer_deliver_op(t->env->peers, c->p, &m);
}

static bool same_listener(const listener *l, const candidate *c)
{
    return l->p == c->p && l->session == c->session && strcmp(l->text, c->text) == 0;
}

static bool listener_exists(space *sp, const candidate *c)
{
    for (uint32_t i = 0; i < sp->ls.n; i++)
        if (same_listener(&sp->ls.v[i], c))
            return true;
    return false;
}

static void provider_changed(space *sp, strview name, bool has)
{
    if (sp->provider_changed != NULL)
        sp->provider_changed(sp->ctx, name, has);
}

/* The name's search ended without a provider: a rematch may try it again. */
static void mark_unmatched(listen_table *t, space *sp, strview name)
{
    if (!rematch_on(t->cfg))
        return;
    unmatched *u = dict_get(sp->unmatched, name.ptr, name.len);
    if (u == NULL) {
        u = xcalloc(1, sizeof(*u));
        dict_put(sp->unmatched, name.ptr, name.len, u);
    }
    u->since = now_ms();
}

static void forget_unmatched(space *sp, strview name)
{
    xfree(dict_del(sp->unmatched, name.ptr, name.len));
}

/* Offers name to the current candidate still listening, or ends the search. */
static void ask(listen_table *t, space *sp, strview name, provided *pv)
{
    while (pv->at < pv->cands.n && !listener_exists(sp, &pv->cands.v[pv->at]))
        pv->at++;
    if (pv->at >= pv->cands.n) {
        /* nobody (else) wants it: a new listener or a rematch reopens the search */
        free_cands(pv);
        mark_unmatched(t, sp, name);
        return;
    }
    pv->searching = true;
    pv->deadline = now_ms() + t->cfg->listen_response_timeout_ms;
    if (pv->deadline < t->next_deadline)
        t->next_deadline = pv->deadline;
    tell(t, sp, &pv->cands.v[pv->at], 0, name);
}

/* Drops name's entry when it neither has a provider nor a search under way. */
static void settle(space *sp, strview name, provided *pv)
{
    if (!pv->active && !pv->searching && !pv->matching) {
        dict_del(sp->names, name.ptr, name.len);
        free_provided(pv);
    }
}

static int by_pattern_then_arrival(const void *a, const void *b)
{
    const candidate *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Puts pv->cands in the order they are to be asked: shuffled, or deepstream's
 * (patterns in the order they got their first listener, each pattern's
 * listeners in arrival order). */
static void order_candidates(listen_table *t, provided *pv)
{
    candidate *c = pv->cands.v;
    if (t->cfg->listen_shuffle_providers) {
        for (uint32_t i = pv->cands.n; i > 1; i--) { /* Fisher-Yates, unbiased draws (libsodium) */
            uint32_t j = randombytes_uniform(i);
            candidate tmp = c[i - 1];
            c[i - 1] = c[j];
            c[j] = tmp;
        }
    } else if (pv->cands.n > 1)
        qsort(c, pv->cands.n, sizeof(*c), by_pattern_then_arrival);
}

/* Matches name against the listeners after pv->cursor, gathering those that
 * match in pv->cands; true when every listener is done, false when the
 * turn's budget ran out first. */
static bool match_listeners(listen_table *t, space *sp, strview name, provided *pv)
{
    for (uint32_t i = first_after(sp, pv->cursor); i < sp->ls.n; i++) {
        listener *l = &sp->ls.v[i];
        bool hit;
        if (!match(t, l, name, &hit))
            return false;
        pv->cursor = l->seq;
        if (hit)
            vec_push(&pv->cands, candidate_of(l));
    }
    return true;
}

/* The matching for name's search is done: the search begins (pv may be gone
 * when this returns). */
static void begin_search(listen_table *t, space *sp, strview name, provided *pv)
{
    pv->matching = false;
    order_candidates(t, pv);
    if (pv->cands.n > 0)
        ask(t, sp, name, pv);
    settle(sp, name, pv);
}

static void queue_search(listen_table *t, space *sp, strview name, provided *pv)
{
    pv->sp = sp;
    pv->name = xstrndup(name.ptr, name.len);
    pv->name_len = name.len;
    pv->next_match = NULL;
    pv->prev_match = t->match_tail;
    if (t->match_tail != NULL)
        t->match_tail->next_match = pv;
    else
        t->match_head = pv;
    t->match_tail = pv;
}

/* Takes pv out of the search queue; its name copy is returned (owned by the caller). */
static char *unqueue_search(listen_table *t, provided *pv)
{
    if (pv->prev_match != NULL)
        pv->prev_match->next_match = pv->next_match;
    else
        t->match_head = pv->next_match;
    if (pv->next_match != NULL)
        pv->next_match->prev_match = pv->prev_match;
    else
        t->match_tail = pv->prev_match;
    pv->next_match = pv->prev_match = NULL;
    char *name = pv->name;
    pv->name = NULL;
    return name;
}

/* A new search round among every listener of name (none when it has a provider
 * or a search is under way). The matching runs now, or waits in the queue
 * when other matching waits or the budget runs out. */
static void start_search(listen_table *t, space *sp, strview name)
{
    provided *pv = dict_get(sp->names, name.ptr, name.len);
    if (pv != NULL && (pv->active || pv->searching || pv->matching))
        return;
    forget_unmatched(sp, name); /* a name no listener matches waits for one: on_listen */
    if (pv == NULL) {
        pv = xcalloc(1, sizeof(*pv));
        dict_put(sp->names, name.ptr, name.len, pv);
    }
    free_cands(pv);
    pv->matching = true;
    pv->cursor = 0;
    if (!work_waits(t) && match_listeners(t, sp, name, pv))
        begin_search(t, sp, name, pv);
    else
        queue_search(t, sp, name, pv);
}

/* A listener that arrived during pv's search is asked after the others (as in
 * deepstream, whatever the order setting). */
static void join_search(provided *pv, const listener *l)
{
    for (uint32_t i = pv->at; i < pv->cands.n; i++)
        if (same_listener(l, &pv->cands.v[i]))
            return; /* left and came back while still queued */
    vec_push(&pv->cands, candidate_of(l));
}

/* A name got its first subscriber on this node (added) or lost its last. */
static void interest(listen_table *t, space *sp, strview name, bool added)
{
    if (added) {
        if (sp->ls.n > 0)
            start_search(t, sp, name);
        return;
    }
    forget_unmatched(sp, name);
    provided *pv = dict_del(sp->names, name.ptr, name.len);
    if (pv == NULL)
        return;
    if (pv->matching && pv->name != NULL)
        xfree(unqueue_search(t, pv));
    if (pv->active)
        tell(t, sp, &pv->provider, 1, name); /* the last subscriber left */
    free_provided(pv);
}

void listen_clear(listen_table *t, int topic, subs *subscribed, strview name)
{
    if (subs_data(subscribed, name) == NULL)
        return;
    subs_clear(subscribed, name); /* quietly, then as if the last peer left */
    interest(t, space_of(t, topic), name, false);
}

bool listen_has_provider(listen_table *t, int topic, strview name)
{
    provided *pv = dict_get(space_of(t, topic)->names, name.ptr, name.len);
    return pv != NULL && pv->active;
}

/* The new listener l found name subscribed: offered it, unless a search
 * already has it or another provider is active. */
static void reconcile_name(listen_table *t, space *sp, uint64_t seq, strview name)
{
    provided *pv = dict_get(sp->names, name.ptr, name.len);
    if (pv != NULL && pv->matching)
        return; /* the matching reaches l: it goes on to the last listener */
    if (pv != NULL && pv->searching) {
        listener *l = listener_by_seq(sp, seq);
        if (l != NULL && pv->cursor < seq) /* not matched by this search yet */
            join_search(pv, l);
        return;
    }
    start_search(t, sp, name);
}

struct walk {
    listen_table *t;
    listener *l;
    name_list hits, rest;
};

static int walk_name(void *arg, strview name, subs_holder *h, uint32_t n, void *data)
{
    struct walk *w = arg;
    bool hit;
    if (w->rest.n > 0 || !match(w->t, w->l, name, &hit))
        names_add(&w->rest, name.ptr, name.len); /* out of budget: for the next turns */
    else if (hit)
        names_add(&w->hits, name.ptr, name.len);
    return 0;
}

/* Works on the reconcile j as long as the budget lasts; true when it is done. */
static bool reconcile_step(listen_table *t, reconcile *j)
{
    space *sp = j->sp;
    listener *l = listener_by_seq(sp, j->seq);
    if (l == NULL)
        return true; /* it left */
    name_list hits = {0};
    if (!j->walked) {
        struct walk w = {.t = t, .l = l};
        if (sp->subscribed != NULL)
            subs_foreach(sp->subscribed, walk_name, &w);
        j->walked = true;
        j->rest = w.rest;
        hits = w.hits;
    } else
        for (; j->next < j->rest.n; j->next++) {
            strview name = j->rest.v[j->next];
            bool hit;
            if (subs_data(sp->subscribed, name) == NULL)
                continue; /* no subscriber any more */
            if (!match(t, l, name, &hit))
                break;
            if (hit)
                names_add(&hits, name.ptr, name.len);
        }
    for (uint32_t i = 0; i < hits.n; i++)
        reconcile_name(t, sp, j->seq, hits.v[i]);
    names_free(&hits);
    return j->next >= j->rest.n;
}

static void on_listen(listen_table *t, space *sp, peer *p, const op *o)
{
    uint64_t group = 0;
    for (uint32_t i = 0; i < sp->ls.n; i++) {
        listener *l = &sp->ls.v[i];
        if (l->len != o->name.len || memcmp(l->text, o->name.ptr, o->name.len) != 0)
            continue;
        if (l->p == p && l->session == o->session)
            return; /* already listening */
        group = l->group;
    }
    pattern *re = pattern_compile(o->name.ptr, o->name.len);
    if (re == NULL)
        return; /* brokers validate patterns before sending them */
    vec_push(&sp->ls, ((listener){xstrndup(o->name.ptr, o->name.len), o->name.len, re, p, o->session, ++sp->seq,
                                  group ? group : ++sp->groups, false}));
    /* reconcile: names subscribed here without a provider are offered again;
     * a search under way gets the new listener at its end */
    if (sp->subscribed == NULL || subs_count(sp->subscribed) == 0)
        return;
    reconcile j = {.sp = sp, .seq = sp->seq};
    if (!work_waits(t) && reconcile_step(t, &j)) {
        free_reconcile(&j);
        return;
    }
    listener_by_seq(sp, j.seq)->reconciling = true;
    vec_push(&t->jobs, j);
}

/* Drops the queued reconciles of listeners of sp that are gone. */
static void drop_reconciles(listen_table *t, space *sp)
{
    uint32_t kept = t->jobs_head;
    for (uint32_t i = t->jobs_head; i < t->jobs.n; i++) {
        reconcile *j = &t->jobs.v[i];
        if (j->sp == sp && listener_by_seq(sp, j->seq) == NULL)
            free_reconcile(j);
        else
            t->jobs.v[kept++] = *j;
    }
    t->jobs.n = kept;
}

/* Works off waiting matching, searches and reconciles in turn, while the
 * budget lasts. */
static void run_waiting(listen_table *t)
{
    bool moved = true;
    while (moved && work_waits(t) && budget_left(t)) {
        moved = false;
        provided *pv = t->match_head;
        if (pv != NULL && match_listeners(t, pv->sp, (strview){pv->name, pv->name_len}, pv)) {
            space *sp = pv->sp;
            uint32_t len = pv->name_len;
            char *name = unqueue_search(t, pv);
            begin_search(t, sp, (strview){name, len}, pv);
            xfree(name);
            moved = true;
        }
        if (t->jobs_head < t->jobs.n && budget_left(t)) {
            reconcile *j = &t->jobs.v[t->jobs_head];
            if (reconcile_step(t, j)) { /* (reconcile_step queues searches, never reconciles) */
                listener *l = listener_by_seq(j->sp, j->seq);
                if (l != NULL)
                    l->reconciling = false;
                free_reconcile(j);
                t->jobs_head++;
                moved = true;
            }
        }
    }
    if (t->jobs_head == t->jobs.n) {
        t->jobs.n = t->jobs_head = 0;
    } else if (t->jobs_head >= 64 && t->jobs_head * 2 >= t->jobs.n) {
        memmove(t->jobs.v, t->jobs.v + t->jobs_head, (t->jobs.n - t->jobs_head) * sizeof(*t->jobs.v));
        t->jobs.n -= t->jobs_head;
        t->jobs_head = 0;
    }
    int64_t now = now_ms();
    if (work_waits(t) && now - t->behind_logged_ms >= BEHIND_LOG_MS) {
        uint32_t searches = 0;
        for (provided *q = t->match_head; q != NULL; q = q->next_match)
            searches++;
        log_warn("listen-matching-behind", "searches=%u reconciles=%u (pattern matching is over its %d ms "
                 "per turn: the rest waits for the next turns)", searches, t->jobs.n - t->jobs_head,
                 MATCH_BUDGET_NS / 1000000);
        t->behind_logged_ms = now;
    }
}

struct lost_ctx {
    peer *p;
    uint64_t session; /* 0: every session of p */
    const char *text; /* NULL: every pattern */
    name_list names;
};

static bool lost_match(const struct lost_ctx *x, peer *p, uint64_t session, const char *text)
{
    return p == x->p && (x->session == 0 || session == x->session) && (x->text == NULL || strcmp(text, x->text) == 0);
}

static int collect_lost(const void *k, size_t l, void *v, void *arg)
{
    struct lost_ctx *x = arg;
    provided *pv = v;
    const candidate *asked = pv->searching && pv->at < pv->cands.n ? &pv->cands.v[pv->at] : NULL;
    if ((pv->active && lost_match(x, pv->provider.p, pv->provider.session, pv->provider.text)) ||
        (asked != NULL && lost_match(x, asked->p, asked->session, asked->text)))
        names_add(&x->names, k, l);
    return 0;
}

/* Removes matching listeners; names they provided (or were being asked about)
 * look for another provider. Returns how many listeners went. */
static size_t remove_listeners(listen_table *t, space *sp, struct lost_ctx *x)
{
    uint32_t kept = 0, n = sp->ls.n;
    bool reconciling = false;
    for (uint32_t i = 0; i < n; i++) { /* keeps the arrival order */
        listener *l = &sp->ls.v[i];
        if (lost_match(x, l->p, l->session, l->text)) {
            reconciling |= l->reconciling;
            xfree(l->text);
            pattern_free(l->re);
        } else
            sp->ls.v[kept++] = *l;
    }
    sp->ls.n = kept;
    if (kept == n)
        return 0; /* none went: none provided a name or was being asked */
    if (reconciling)
        drop_reconciles(t, sp);
    dict_foreach(sp->names, collect_lost, x);
    for (uint32_t i = 0; i < x->names.n; i++) {
        strview name = x->names.v[i];
        provided *pv = dict_get(sp->names, name.ptr, name.len);
        if (pv->active) {
            dict_del(sp->names, name.ptr, name.len);
            free_provided(pv);
            provider_changed(sp, name, false);
            start_search(t, sp, name);
        } else {
            pv->at++;
            ask(t, sp, name, pv);
            settle(sp, name, pv);
        }
    }
    names_free(&x->names);
    return n - kept;
}

static void on_answer(listen_table *t, space *sp, peer *p, const op *o)
{
    strview name = o->ref;
    provided *pv = dict_get(sp->names, name.ptr, name.len);
    if (pv == NULL || !pv->searching || pv->at >= pv->cands.n)
        return;
    candidate *c = &pv->cands.v[pv->at];
    if (c->p != p || c->session != o->session || !sv_eq(sv_of(c->text), o->name))
        return; /* not the listener we asked (late, or never asked) */
    bool accept = o->action == EVENT__ACTION__EVENT_LISTEN_ACCEPT || o->action == RECORD__ACTION__RECORD_LISTEN_ACCEPT;
    if (accept) {
        pv->active = true;
        pv->provider = (candidate){c->p, c->session, xstrdup(c->text), c->seq, c->group};
        free_cands(pv);
        provider_changed(sp, name, true);
        return;
    }
    pv->at++;
    ask(t, sp, name, pv);
    settle(sp, name, pv);
}

static void listen_apply(void *self, node_req *req, const op *o)
{
    listen_table *t = self;
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
    run_waiting(t);
}

struct timeout_ctx {
    int64_t now, next;
    name_list names;
};

static int collect_timeouts(const void *k, size_t l, void *v, void *arg)
{
    struct timeout_ctx *x = arg;
    provided *pv = v;
    if (pv->searching && deadline_passed(pv->deadline, x->now, &x->next))
        names_add(&x->names, k, l);
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
        for (uint32_t i = 0; i < x.names.n; i++) {
            strview name = x.names.v[i];
            provided *pv = dict_get(sp->names, name.ptr, name.len);
            tell(t, sp, &pv->cands.v[pv->at], 2, name);
            pv->at++;
            ask(t, sp, name, pv);
            settle(sp, name, pv);
        }
        names_free(&x.names);
    }
}

struct due_ctx {
    listen_table *t;
    space *sp;
    int64_t before; /* unmatched since this time or earlier: cooled down */
};

static int collect_due(const void *k, size_t l, void *v, void *arg)
{
    struct due_ctx *c = arg;
    if (((unmatched *)v)->since <= c->before)
        vec_push(&c->t->due, ((due){{xstrndup(k, l), (uint32_t)l}, c->sp}));
    return 0;
}

/* Every listen.rematchInterval, lists the unmatched names that have cooled
 * down; each turn searches the next REMATCH_SLICE of them again. */
static void rematch(listen_table *t, int64_t now)
{
    int64_t cooldown = t->cfg->listen_match_cooldown_ms;
    if (t->due.n == 0) {
        t->next_rematch = now + t->cfg->listen_rematch_interval_ms;
        struct due_ctx c = {.t = t, .before = now - cooldown};
        for (int s = 0; s < 2; s++) {
            c.sp = &t->sp[s];
            dict_foreach(c.sp->unmatched, collect_due, &c);
        }
        t->done = 0;
    }
    uint32_t end = t->done + REMATCH_SLICE < t->due.n ? t->done + REMATCH_SLICE : t->due.n;
    for (; t->done < end; t->done++) {
        due *d = &t->due.v[t->done];
        unmatched *u = dict_get(d->sp->unmatched, d->name.ptr, d->name.len);
        /* still unmatched, and not since a search that ended after the list was made */
        if (u != NULL && u->since <= now - cooldown)
            start_search(t, d->sp, d->name);
        xfree((char *)d->name.ptr);
    }
    if (t->done == t->due.n) {
        vec_free(&t->due);
        t->done = 0;
    }
}

static void listen_timers(void *self, int64_t now)
{
    listen_table *t = self;
    t->spent_ns = 0; /* a new turn: a new budget */
    if (now >= t->next_deadline)
        expire_offers(t, now);
    run_waiting(t); /* before the rematch adds to it */
    if (t->due.n > 0 || now >= t->next_rematch)
        rematch(t, now);
}

static size_t listen_drop_peer(void *self, peer *p)
{
    listen_table *t = self;
    size_t n = 0;
    for (int s = 0; s < 2; s++) {
        struct lost_ctx x = {.p = p};
        n += remove_listeners(t, &t->sp[s], &x);
    }
    return n;
}

const owner_module listen_owner = {
    .name = "listen",
    /* every node keeps every pattern; an answer goes to the subscription's owner */
    .kinds = (const owner_kind[]){{OP_LISTEN, ROUTE_EVERY_NODE}, {OP_UNLISTEN, ROUTE_EVERY_NODE},
                                  {OP_LISTEN_ANSWER, ROUTE_REF}, {0, 0}},
    .create = listen_create,
    .destroy = listen_destroy,
    .apply = listen_apply,
    .held = "listen_patterns",
    .drop_peer = listen_drop_peer,
    .timers = listen_timers,
};
