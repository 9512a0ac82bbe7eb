/* history.c - the events a node keeps for resumable streams (events.history):
 * a ring per name matching a rule, holding that name's last `size` events,
 * each for the rule's `ttl`, numbered by offsets 1, 2, 3, ... under an epoch
 * that is new whenever a ring is made (a node restart, or a name that lost its
 * ring), so a reader can always tell "the same history" from "a new one".
 *
 * Bounds and overflow policy. Each ring: `size` events (the oldest goes when a
 * new one comes) and `ttl` (history_expire, each executor turn, drops what is
 * older from the front of each rule's list). All rings together:
 * events.historyMaxBytes (events, their data, ring headers and slots counted).
 * Beyond it, first empty rings are freed, oldest emptied first (their names
 * lose their numbering: a reader resuming there hears that the history was
 * lost), then the node's oldest events go, whatever their name. An event
 * larger than the whole bound is numbered and delivered live but not kept.
 *
 * Cost. A name is matched against the rules once: rings are found by name,
 * and names that match no rule are remembered (HISTORY_MISS_CACHE of them;
 * the cache is emptied when full). With no rule configured, events.c holds no
 * history and an emit does no work here at all. Not for delivery or the wire:
 * events.c replays and delivers. Memory only: nothing survives a restart. */
#include <string.h>
#include <sys/queue.h>

#include "dict.h"
#include "internal.h"
#include "log.h"
#include "mem.h"
#include "pattern.h"
#include "util.h"

#define HISTORY_MISS_CACHE 65536 /* names known to match no rule, before the cache is emptied */
#define RING_MIN_SLOTS 8
#define FULL_LOG_MS 10000 /* at most one history-full line per this many ms */

typedef struct rule {
    pattern *re;
    uint64_t size;
    int64_t ttl_ms;
    history_event *oldest, *newest; /* its events, all rings together, in append order */
} rule;

struct history_ring {
    char *name;
    uint32_t name_len;
    rule *rule;
    uint64_t epoch;
    uint64_t first, next;  /* offsets held: first .. next-1 */
    history_event **slots; /* circular: slots[head] holds offset first */
    uint64_t cap, head, count;
    TAILQ_ENTRY(history_ring) idle_order; /* h->idle: the empty rings, oldest emptied first */
    bool idle;
};

struct history {
    rule rules[HISTORY_MAX_RULES];
    int nrules;
    dict *rings;  /* name -> history_ring */
    dict *misses; /* name -> (void *)1: matches no rule */
    uint64_t epoch_base, epochs;
    uint64_t seq;
    size_t bytes, max_bytes, nrings, nevents;
    TAILQ_HEAD(, history_ring) idle; /* empty rings, the oldest emptied first */
    log_every full_log;
};

static size_t ring_bytes(const history_ring *r)
{
    return sizeof(*r) + r->name_len + 1 + r->cap * sizeof(*r->slots);
}

static size_t event_bytes(const history_event *ev)
{
    return sizeof(*ev) + ev->len;
}

history *history_new(const eddy_config *cfg, uint64_t epoch_base)
{
    if (cfg->history_count == 0)
        return NULL;
    history *h = xcalloc(1, sizeof(*h));
    TAILQ_INIT(&h->idle);
    for (int i = 0; i < cfg->history_count; i++) {
        const history_rule_config *c = &cfg->history[i];
        rule *ru = &h->rules[h->nrules];
        ru->re = pattern_compile(c->pattern, strlen(c->pattern));
        if (ru->re == NULL) { /* config.c checked it: cannot happen */
            log_error("history-pattern-refused", "pattern=%s", c->pattern);
            continue;
        }
        ru->size = (uint64_t)c->size;
        ru->ttl_ms = c->ttl_ms;
        h->nrules++;
    }
    h->rings = dict_new();
    h->misses = dict_new();
    h->epoch_base = epoch_base;
    h->max_bytes = (size_t)cfg->history_max_bytes;
    return h;
}

static int free_ring_cb(const void *key, size_t len, void *value, void *arg)
{
    history_ring *r = value;
    for (uint64_t i = 0; i < r->count; i++)
        xfree(r->slots[(r->head + i) % r->cap]);
    xfree(r->slots);
    xfree(r->name);
    xfree(r);
    return 0;
}

void history_free(history *h)
{
    if (h == NULL)
        return;
    dict_foreach(h->rings, free_ring_cb, NULL);
    dict_free(h->rings);
    dict_free(h->misses);
    for (int i = 0; i < h->nrules; i++)
        pattern_free(h->rules[i].re);
    xfree(h);
}

/* ---- the list of empty rings ---- */

static void idle_push(history *h, history_ring *r)
{
    r->idle = true;
    TAILQ_INSERT_TAIL(&h->idle, r, idle_order);
}

static void idle_unlink(history *h, history_ring *r)
{
    if (!r->idle)
        return;
    TAILQ_REMOVE(&h->idle, r, idle_order);
    r->idle = false;
}

/* Frees an empty ring: its name loses its numbering. */
static void ring_free(history *h, history_ring *r)
{
    idle_unlink(h, r);
    dict_del(h->rings, r->name, r->name_len);
    h->bytes -= ring_bytes(r);
    h->nrings--;
    xfree(r->slots);
    xfree(r->name);
    xfree(r);
}

/* Drops r's oldest event; an emptied ring joins the idle list. */
static void ring_pop(history *h, history_ring *r)
{
    history_event *ev = r->slots[r->head];
    rule *ru = r->rule;
    if (ev->older != NULL)
        ev->older->newer = ev->newer;
    else
        ru->oldest = ev->newer;
    if (ev->newer != NULL)
        ev->newer->older = ev->older;
    else
        ru->newest = ev->older;
    r->head = (r->head + 1) % r->cap;
    r->count--;
    r->first++;
    h->bytes -= event_bytes(ev);
    h->nevents--;
    xfree(ev);
    if (r->count == 0)
        idle_push(h, r);
}

/* Doubles r's slots (up to its rule's size), keeping the order. */
static void ring_grow(history *h, history_ring *r)
{
    uint64_t cap = r->cap == 0 ? RING_MIN_SLOTS : r->cap * 2;
    if (cap > r->rule->size)
        cap = r->rule->size;
    history_event **slots = xmalloc(cap * sizeof(*slots));
    for (uint64_t i = 0; i < r->count; i++)
        slots[i] = r->slots[(r->head + i) % r->cap];
    h->bytes -= ring_bytes(r);
    xfree(r->slots);
    r->slots = slots;
    r->cap = cap;
    r->head = 0;
    h->bytes += ring_bytes(r);
}

/* Brings the total under events.historyMaxBytes: empty rings first, then the oldest events. */
static void evict(history *h)
{
    uint64_t dropped = 0;
    while (h->bytes > h->max_bytes) {
        if (!TAILQ_EMPTY(&h->idle)) {
            ring_free(h, TAILQ_FIRST(&h->idle));
            continue;
        }
        rule *oldest = NULL;
        for (int i = 0; i < h->nrules; i++)
            if (h->rules[i].oldest != NULL && (oldest == NULL || h->rules[i].oldest->seq < oldest->oldest->seq))
                oldest = &h->rules[i];
        if (oldest == NULL)
            break; /* nothing left to drop (the rings' headers alone: cannot be over) */
        ring_pop(h, oldest->oldest->ring); /* a rule's oldest event is its ring's oldest */
        dropped++;
    }
    uint64_t held;
    if (dropped > 0 && log_every_due(&h->full_log, now_ms(), FULL_LOG_MS, &held))
        log_warn("history-full", "bytes=%zu max=%zu events=%zu rings=%zu dropped=%llu (events.historyMaxBytes: the "
                 "oldest events went before their size or ttl)", h->bytes, h->max_bytes, h->nevents, h->nrings,
                 (unsigned long long)(dropped + held));
}

history_ring *history_find(history *h, strview name, bool create, bool *kept)
{
    history_ring *r = dict_get(h->rings, name.ptr, name.len);
    if (r != NULL || dict_get(h->misses, name.ptr, name.len) != NULL) {
        if (kept != NULL)
            *kept = r != NULL;
        return r;
    }
    rule *ru = NULL;
    for (int i = 0; i < h->nrules && ru == NULL; i++)
        if (pattern_match(h->rules[i].re, name.ptr, name.len))
            ru = &h->rules[i];
    if (kept != NULL)
        *kept = ru != NULL;
    if (ru == NULL) {
        if (dict_size(h->misses) >= HISTORY_MISS_CACHE) { /* bounded: start again */
            dict_free(h->misses);
            h->misses = dict_new();
        }
        dict_put(h->misses, name.ptr, name.len, (void *)1);
        return NULL;
    }
    if (!create)
        return NULL;
    r = xcalloc(1, sizeof(*r));
    r->name = xstrndup(name.ptr, name.len);
    r->name_len = name.len;
    r->rule = ru;
    if (++h->epochs + h->epoch_base == 0)
        h->epochs++; /* 0 means "no history" */
    r->epoch = h->epoch_base + h->epochs;
    r->first = r->next = 1;
    dict_put(h->rings, name.ptr, name.len, r);
    h->bytes += ring_bytes(r);
    h->nrings++;
    idle_push(h, r); /* empty until its first event */
    return r;
}

uint64_t history_append(history *h, history_ring *r, uint64_t broker, uint64_t session, const op *o, int64_t now,
                        uint64_t *epoch)
{
    if (r->count == r->rule->size)
        ring_pop(h, r);
    if (r->count == r->cap)
        ring_grow(h, r);
    uint32_t len = o->has_data ? o->data.len : 0;
    history_event *ev = xmalloc(sizeof(*ev) + len);
    *ev = (history_event){.ring = r, .seq = ++h->seq, .at_ms = now, .broker = broker, .session = session,
                          .len = len, .has_data = o->has_data};
    if (len > 0)
        memcpy(ev->data, o->data.ptr, len);
    rule *ru = r->rule;
    ev->older = ru->newest;
    if (ru->newest != NULL)
        ru->newest->newer = ev;
    else
        ru->oldest = ev;
    ru->newest = ev;
    r->slots[(r->head + r->count) % r->cap] = ev;
    r->count++;
    idle_unlink(h, r);
    h->bytes += event_bytes(ev);
    h->nevents++;
    uint64_t offset = r->next++;
    *epoch = r->epoch;
    evict(h); /* may free r */
    return offset;
}

history_span history_span_of(history *h, history_ring *r, int64_t now)
{
    if (r == NULL)
        return (history_span){0, 1, 1};
    history_expire(h, now); /* (empties rings, never frees them) */
    return (history_span){r->epoch, r->first, r->next};
}

const history_event *history_at(const history_ring *r, uint64_t offset)
{
    if (offset < r->first || offset >= r->next)
        return NULL;
    return r->slots[(r->head + (offset - r->first)) % r->cap];
}

void history_expire(history *h, int64_t now)
{
    for (int i = 0; i < h->nrules; i++) {
        rule *ru = &h->rules[i];
        if (ru->ttl_ms <= 0)
            continue;
        while (ru->oldest != NULL && now - ru->oldest->at_ms >= ru->ttl_ms)
            ring_pop(h, ru->oldest->ring);
    }
}

void history_usage(const history *h, size_t *bytes, size_t *rings, size_t *events)
{
    *bytes = h->bytes;
    *rings = h->nrings;
    *events = h->nevents;
}
