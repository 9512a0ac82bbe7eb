/* listen.c - listening (active providers) for events and records, per node.
 *
 * Every node knows every listen pattern (brokers send LISTEN to all nodes);
 * each node looks after the names it owns. When a name gets its first
 * subscriber here, the node offers it to the matching listeners one at a time
 * (SUBSCRIPTION_FOR_PATTERN_FOUND) and waits listen.responseTimeout for each:
 * LISTEN_ACCEPT makes that listener the name's one active provider, a reject or
 * a timeout (LISTEN_RESPONSE_TIMEOUT to the listener) asks the next. When the
 * last subscriber leaves, the active provider gets ..._REMOVED. When the active
 * provider unlistens or goes away, the search starts again among the others
 * (record subscribers hear SUBSCRIPTION_HAS_NO_PROVIDER, then HAS_PROVIDER when
 * a new one accepts). A new listener is offered the names that have none. */
#include <string.h>

#include "deepstream.pb-c.h"
#include "log.h"
#include "mem.h"
#include "node.h"
#include "pattern.h"
#include "util.h"

typedef struct listener {
    char *text;
    uint32_t len;
    pattern *re;
    peer *p;
    uint64_t session;
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

typedef struct space {
    int topic; /* TOPIC__TOPIC_EVENT or TOPIC__TOPIC_RECORD */
    listener *ls;
    uint32_t n, cap;
    dict *names; /* name -> provided */
    uint32_t rotate;
} space;

struct listen_table {
    node *n;
    const eddy_config *cfg;
    space sp[2];
    int64_t next_deadline;
};

static space *space_of(listen_table *t, int topic)
{
    return topic == TOPIC__TOPIC_RECORD ? &t->sp[1] : &t->sp[0];
}

listen_table *listen_new(node *n, const eddy_config *cfg)
{
    listen_table *t = xcalloc(1, sizeof(*t));
    t->n = n;
    t->cfg = cfg;
    t->sp[0].topic = TOPIC__TOPIC_EVENT;
    t->sp[1].topic = TOPIC__TOPIC_RECORD;
    t->sp[0].names = dict_new();
    t->sp[1].names = dict_new();
    t->next_deadline = INT64_MAX;
    return t;
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
    }
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

/* Offers name to the current candidate still listening, or ends the search. */
static void ask(listen_table *t, space *sp, const char *name, size_t len, provided *pv)
{
    while (pv->at < pv->ncand && !listener_exists(sp, &pv->cands[pv->at]))
        pv->at++;
    if (pv->at >= pv->ncand) {
        free_cands(pv); /* nobody (else) wants it; a new listener reopens the search */
        return;
    }
    pv->searching = true;
    pv->deadline = now_ms() + t->cfg->listen_response_timeout_ms;
    if (pv->deadline < t->next_deadline)
        t->next_deadline = pv->deadline;
    tell(t, sp, &pv->cands[pv->at], 0, name, len);
}

static void start_search(listen_table *t, space *sp, const char *name, size_t len)
{
    provided *pv = dict_get(sp->names, name, len);
    if (pv != NULL && (pv->active || pv->searching))
        return;
    uint32_t start = sp->n ? sp->rotate++ % sp->n : 0;
    candidate *cands = NULL;
    uint32_t n = 0;
    for (uint32_t k = 0; k < sp->n; k++) {
        listener *l = &sp->ls[(start + k) % sp->n];
        if (!pattern_match(l->re, name, len))
            continue;
        cands = xrealloc(cands, (n + 1) * sizeof(*cands));
        cands[n++] = (candidate){l->p, l->session, xstrdup(l->text)};
    }
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

void listen_interest(listen_table *t, int topic, const char *name, size_t len, bool added)
{
    space *sp = space_of(t, topic);
    if (added) {
        if (sp->n > 0)
            start_search(t, sp, name, len);
        return;
    }
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
    for (uint32_t i = 0; i < sp->n; i++)
        if (sp->ls[i].p == p && sp->ls[i].session == o->session && sp->ls[i].len == o->name.len &&
            memcmp(sp->ls[i].text, o->name.ptr, o->name.len) == 0)
            return; /* already listening */
    pattern *re = pattern_compile(o->name.ptr, o->name.len);
    if (re == NULL)
        return; /* brokers validate patterns before sending them */
    if (sp->n == sp->cap) {
        sp->cap = sp->cap ? sp->cap * 2 : 4;
        sp->ls = xrealloc(sp->ls, sp->cap * sizeof(*sp->ls));
    }
    listener *l = &sp->ls[sp->n++];
    *l = (listener){xstrndup(o->name.ptr, o->name.len), o->name.len, re, p, o->session};
    /* reconcile: names subscribed here without a provider are offered again */
    struct reconcile_ctx c = {.t = t, .sp = sp, .l = l};
    if (sp->topic == TOPIC__TOPIC_RECORD)
        records_foreach_subscribed(node_records(t->n), reconcile_name, &c);
    else
        events_foreach_name(node_events(t->n), reconcile_name, &c);
    for (size_t i = 0; i < c.n; i++) {
        start_search(t, sp, c.names[i], strlen(c.names[i]));
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
    for (uint32_t i = 0; i < sp->n;) {
        candidate c = {sp->ls[i].p, sp->ls[i].session, sp->ls[i].text};
        if (lost_match(x, &c)) {
            xfree(sp->ls[i].text);
            pattern_free(sp->ls[i].re);
            sp->ls[i] = sp->ls[--sp->n];
        } else
            i++;
    }
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

void listen_timers(listen_table *t)
{
    int64_t now = now_ms();
    if (now < t->next_deadline)
        return;
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

void listen_drop_peer(listen_table *t, peer *p)
{
    for (int s = 0; s < 2; s++) {
        struct lost_ctx x = {.p = p};
        remove_listeners(t, &t->sp[s], &x);
    }
}
