/* promote.c - planned moves of primaries and replicas: eddy ctl cluster
 * promote and eddy ctl cluster rebalance.
 *
 * promote: an operator moves the primary of some shards (a range, or every
 * shard a node is primary of) to one of their in-sync replicas.
 *
 * rebalance: every shard goes back to its home layout, the static map's
 * (its home primary and replicas, where the cluster started), one step per
 * shard at a time, each a command of its own decided on the shard's epoch:
 *   1. ADD_COPY   a member of the layout that is up and holds no copy (a
 *                 node that rejoined after a failover) becomes an out-of-sync
 *                 replica; its primary catches it up (snapshot) and proposes
 *                 it in sync (node/replicate.c);
 *   2. PROMOTE    home, once it is an up in-sync replica, becomes primary
 *                 (the old primary stays a copy, out of sync until caught up);
 *   3. DROP_COPY  once home is primary and every copy of the layout is in
 *                 sync, a copy outside the layout (a re-replication's, made
 *                 while a node was down) goes.
 * A rebalance starts on eddy ctl cluster rebalance, or by itself once some
 * step has been possible for cluster.rebalanceDelay on end (0: only when
 * asked); it then goes on, a wave of steps per check, until every shard whose
 * layout members are up is home in its layout (or REBALANCE_ACTIVE_MS
 * passed). With cluster.rereplicate, step 1 runs at every check regardless:
 * a rejoined node holds copies of its layout again as soon as it is back
 * (without it, once the delay has passed).
 *
 * The node asked proposes, when it leads the metadata group, the commands
 * (common/metacmd.h; metamap_apply checks in-sync sets and epochs, and a
 * PROMOTE raises the epoch), fed to metaraft's bounded queue a turn at a time
 * (at most METARAFT_QUEUE in flight: many shards are many commands, queued
 * here, one plan at a time). A node that does not lead answers where the
 * leader is; eddy ctl asks it. The routing change itself reaches everyone as
 * a new committed map (node.c: route_follow).
 *
 * Not here: failover (the leader's failure detection, meta.c). */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "internal.h"
#include "log.h"
#include "mem.h"
#include "metacmd.h"
#include "metaraft.h"
#include "util.h"

#define REBALANCE_CHECK_MS 1000     /* how often the leader looks for rebalancing to do */
#define REBALANCE_WAVE_MS 200       /* ... and while a rebalance is under way */
#define REBALANCE_ACTIVE_MS 600000  /* a rebalance gives up after this long */

struct promote {
    const shardmap *home;       /* the static map: each shard's home layout (borrowed, outlives p) */
    const eddy_config *cfg;     /* cluster.replicas, rebalanceDelay, rereplicate (borrowed) */
    int64_t movable_since;      /* since when some rebalance step could be taken, unbroken (0: none can) */
    int64_t last_check;
    int64_t active_until;       /* a rebalance under way until then (0: none) */
    const char *what;           /* "promote" or "rebalance", for the log */
    uint32_t count, next;       /* steps [next..count) wait to be proposed */
    uint32_t shards[SHARD_COUNT];
    uint16_t to[SHARD_COUNT];   /* the member each step adds, promotes or drops */
    uint8_t kind[SHARD_COUNT];  /* META_ADD_COPY, META_PROMOTE or META_DROP_COPY */
    uint32_t dropped;           /* proposals the queue refused (the operator runs the command again) */
};

promote *promote_new(const shardmap *home, const eddy_config *cfg)
{
    promote *p = xcalloc(1, sizeof(promote));
    p->home = home;
    p->cfg = cfg;
    return p;
}

void promote_free(promote *p)
{
    xfree(p);
}

static void answer(op_batch *reply, json_t *root)
{
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    op a = {.kind = OP_CLUSTER_PROMOTE, .has_data = true, .data = {text ? text : "{}", text ? (uint32_t)strlen(text) : 2}};
    op_batch_add(reply, &a);
    free(text); /* jansson's malloc */
}

static void refuse(op_batch *reply, const char *why)
{
    log_warn("promote-refused", "why=\"%s\"", why);
    answer(reply, json_pack("{s:s}", "error", why));
}

/* The member named name, or NULL. */
static const meta_member *member_named(const metamap *map, const char *name)
{
    for (unsigned i = 0; name != NULL && i < map->nmembers; i++)
        if (strcmp(map->members[i].name, name) == 0)
            return &map->members[i];
    return NULL;
}

/* Whether id is an in-sync replica (not the primary) of sh. */
static bool insync_replica(const meta_shard *sh, uint16_t id)
{
    int at = metamap_position(sh, id);
    return at > 0 && ((sh->insync >> at) & 1u);
}

/* What one rebalance pass found (rebalance_pass). */
typedef struct pass {
    unsigned adds, promotes, drops; /* steps planned (or that could be) */
    unsigned away;                  /* shards whose primary is not home */
    unsigned stuck;                 /* ... of which home is not an up in-sync replica yet */
    unsigned extra;                 /* shards holding a copy outside their layout */
    unsigned pending;               /* shards a rebalance can still bring home (their layout's members up) */
} pass;

static bool up(const metamap *map, uint16_t id)
{
    const meta_member *a = metamap_member(map, id);
    return a != NULL && !a->down;
}

/* Shard s's next step toward its home layout (see the top of this file):
 * its kind (0: none) and *member. adding: step 1 may be taken; moving: steps
 * 2 and 3 too. Counts what it saw into ps. */
static int shard_step(const promote *p, const metamap *map, uint32_t s, bool adding, bool moving, uint16_t *member,
                      pass *ps)
{
    const meta_shard *sh = &map->shards[s];
    if (sh->ncopies == 0)
        return 0; /* unavailable: nothing to build on */
    uint16_t layout[SHARDMAP_MAX_COPIES];
    unsigned n = replicas_of(p->home, s, (unsigned)config_replicas(p->cfg), layout);
    for (unsigned i = 0; i < n; i++)
        layout[i]++; /* node index -> member id */
    uint16_t home = layout[0];
    bool away = sh->copies[0] != home, all_insync = true, extra = false, layout_up = true;
    for (unsigned i = 0; i < n; i++)
        layout_up &= up(map, layout[i]);
    bool home_ready = insync_replica(sh, home) && up(map, home); /* PROMOTE may take it */
    if (away) {
        ps->away++;
        ps->stuck += !home_ready;
    }
    for (unsigned i = 0; i < n; i++) {
        int at = metamap_position(sh, layout[i]);
        if (at < 0 && up(map, layout[i]) && sh->ncopies < META_MAX_COPIES) {
            if (adding) {
                *member = layout[i];
                return META_ADD_COPY;
            }
        }
        all_insync &= at >= 0 && ((sh->insync >> at) & 1u);
    }
    uint16_t outsider = 0;
    for (unsigned i = 1; i < sh->ncopies && outsider == 0; i++) {
        bool in_layout = false;
        for (unsigned j = 0; j < n; j++)
            in_layout |= sh->copies[i] == layout[j];
        if (!in_layout)
            outsider = sh->copies[i];
    }
    extra = outsider != 0;
    ps->extra += extra;
    ps->pending += (away && up(map, home)) || (extra && layout_up);
    if (!moving)
        return 0;
    if (away && home_ready) {
        *member = home;
        return META_PROMOTE;
    }
    if (!away && extra && all_insync) {
        *member = outsider;
        return META_DROP_COPY;
    }
    return 0;
}

/* Looks at every shard; with plan, queues each one's next step. */
static pass rebalance_pass(promote *p, const metamap *map, bool adding, bool moving, bool plan)
{
    pass ps = {0};
    if (plan)
        p->count = p->next = 0;
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        uint16_t member = 0;
        int kind = shard_step(p, map, s, adding, moving, &member, &ps);
        if (kind == 0)
            continue;
        ps.adds += kind == META_ADD_COPY;
        ps.promotes += kind == META_PROMOTE;
        ps.drops += kind == META_DROP_COPY;
        if (plan) {
            p->shards[p->count] = s;
            p->to[p->count] = member;
            p->kind[p->count++] = (uint8_t)kind;
        }
    }
    if (plan) {
        p->what = moving ? "rebalance" : "placement";
        p->dropped = 0;
    }
    return ps;
}

static void log_pass(const pass *ps, const metamap *map, const char *why)
{
    log_info("rebalance-planned", "adds=%u promotes=%u drops=%u away_from_home=%u home_not_in_sync=%u "
             "outside_layout=%u version=%llu why=\"%s\"", ps->adds, ps->promotes, ps->drops, ps->away, ps->stuck,
             ps->extra, (unsigned long long)map->version, why);
}

void promote_request(promote *p, meta_node *m, const eddy_config *cfg, const op *o, op_batch *reply)
{
    (void)cfg;
    const metamap *map = meta_committed(m);
    if (map == NULL) {
        refuse(reply, "cluster.raft is off: primaries follow the static map");
        return;
    }
    uint64_t leader_id;
    if (!meta_leading(m, &leader_id)) {
        const meta_member *l = leader_id ? metamap_member(map, (uint16_t)leader_id) : NULL;
        answer(reply, l != NULL ? json_pack("{s:s, s:s, s:s}", "error", "not the leader", "leader", l->name,
                                            "leaderRequest", l->request)
                                : json_pack("{s:s}", "error", "no leader known (no majority?): try again"));
        return;
    }
    if (p->next < p->count) {
        refuse(reply, "a planned move is under way: try again once it is done");
        return;
    }
    json_error_t jerr;
    json_t *req = o->has_data ? json_loadb(o->data.ptr, o->data.len, 0, &jerr) : NULL;
    if (json_is_true(json_object_get(req, "rebalance"))) {
        json_decref(req);
        int64_t now = now_ms();
        pass ps = rebalance_pass(p, map, true, true, true);
        p->active_until = now + REBALANCE_ACTIVE_MS;
        p->movable_since = 0;
        p->last_check = now;
        log_pass(&ps, map, "asked (eddy ctl cluster rebalance)");
        answer(reply, json_pack("{s:b, s:i, s:i, s:i, s:i, s:i, s:i, s:I}", "rebalance", 1, "awayFromHome",
                                (int)ps.away, "proposing", (int)p->count, "promotes", (int)ps.promotes, "adds",
                                (int)ps.adds, "drops", (int)ps.drops, "notInSync", (int)ps.stuck, "version",
                                (json_int_t)map->version));
        return;
    }
    const char *to_name = json_string_value(json_object_get(req, "to"));
    const char *from_name = json_string_value(json_object_get(req, "from"));
    const char *ranges = json_string_value(json_object_get(req, "shards"));
    const meta_member *to = member_named(map, to_name);
    const meta_member *from = member_named(map, from_name);
    if (to == NULL || (from_name != NULL && from == NULL) || (from == NULL) == (ranges == NULL)) {
        json_decref(req);
        refuse(reply, "expected {\"to\": NODE, and \"shards\": RANGES or \"from\": NODE} naming members, "
                      "or {\"rebalance\": true}");
        return;
    }
    shardmap *want = xmalloc(sizeof(*want)); /* the shards asked for: owner 0 */
    shardmap_init_empty(want, 1, 0);
    char why[200];
    if (ranges != NULL && shardmap_assign(want, 0, ranges, why, sizeof(why)) != 0) {
        xfree(want);
        json_decref(req);
        refuse(reply, why);
        return;
    }
    unsigned asked = 0, already = 0, not_insync = 0;
    p->count = p->next = 0;
    p->what = "promote";
    p->active_until = 0; /* an operator's move is not undone by a rebalance under way */
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        const meta_shard *sh = &map->shards[s];
        bool wanted = from != NULL ? sh->ncopies > 0 && sh->copies[0] == from->id : want->owner[s] == 0;
        if (!wanted)
            continue;
        asked++;
        if (sh->ncopies > 0 && sh->copies[0] == to->id)
            already++;
        else if (!insync_replica(sh, to->id))
            not_insync++;
        else {
            p->shards[p->count] = s;
            p->kind[p->count] = META_PROMOTE;
            p->to[p->count++] = to->id;
        }
    }
    xfree(want);
    json_decref(req);
    p->dropped = 0;
    log_info("promote-planned", "to=%s shards=%u asked=%u already=%u not_in_sync=%u version=%llu", to->name,
             p->count, asked, already, not_insync, (unsigned long long)map->version);
    answer(reply, json_pack("{s:s, s:i, s:i, s:i, s:i, s:I}", "to", to->name, "asked", (int)asked, "proposing",
                            (int)p->count, "already", (int)already, "notInSync", (int)not_insync, "version",
                            (json_int_t)map->version));
}

/* The leader's own planning, every REBALANCE_CHECK_MS (REBALANCE_WAVE_MS
 * while a rebalance is under way), with nothing queued: see the top of this
 * file. */
static void plan_by_itself(promote *p, const metamap *map, int64_t now)
{
    bool active = p->active_until > now;
    if (now - p->last_check < (active ? REBALANCE_WAVE_MS : REBALANCE_CHECK_MS))
        return;
    p->last_check = now;
    bool adding = p->cfg->rereplicate != 0;
    if (active) {
        pass ps = rebalance_pass(p, map, true, true, true);
        if (p->count > 0)
            log_pass(&ps, map, "rebalance under way");
        else if (ps.pending == 0) {
            p->active_until = 0;
            log_info("rebalance-done", "version=%llu away_from_home=%u (every shard whose layout is up is home, "
                     "in its layout)", (unsigned long long)map->version, ps.away);
        }
        return;
    }
    /* what a rebalance would do now; with cluster.rereplicate the copies go back at once */
    pass ps = rebalance_pass(p, map, true, true, false);
    if (adding && ps.adds > 0) { /* a rejoined node holds its layout's copies again */
        ps = rebalance_pass(p, map, true, false, true);
        log_pass(&ps, map, "cluster.rereplicate: copies of the home layout back");
        return;
    }
    if (ps.adds + ps.promotes + ps.drops == 0 || p->cfg->rebalance_delay_ms <= 0) {
        p->movable_since = 0;
    } else if (p->movable_since == 0) {
        p->movable_since = now;
    } else if (now - p->movable_since >= p->cfg->rebalance_delay_ms) {
        p->active_until = now + REBALANCE_ACTIVE_MS;
        p->movable_since = 0;
        ps = rebalance_pass(p, map, true, true, true);
        log_pass(&ps, map, "cluster.rebalanceDelay");
    }
}

bool promote_turn(promote *p, meta_node *m, int64_t now)
{
    if (p == NULL)
        return false;
    const metamap *map = meta_committed(m);
    uint64_t leader_id;
    bool leading = map != NULL && meta_leading(m, &leader_id);
    if (p->next >= p->count) {
        if (leading)
            plan_by_itself(p, map, now);
        else
            p->movable_since = p->active_until = 0;
        if (p->next >= p->count)
            return false;
    }
    if (!leading) {
        log_warn("promote-abandoned", "what=%s left=%u (this node no longer leads: run the command again)", p->what,
                 p->count - p->next);
        p->next = p->count;
        return false;
    }
    while (p->next < p->count && meta_inflight(m) < METARAFT_QUEUE) {
        uint32_t s = p->shards[p->next];
        meta_cmd c = {.kind = p->kind[p->next], .shard = s, .epoch = map->shards[s].epoch, .node = p->to[p->next]};
        msgpack_sbuffer buf;
        msgpack_sbuffer_init(&buf);
        int rc = metacmd_encode(&c, &buf) == 0 ? meta_propose(m, buf.data, buf.size) : -1;
        msgpack_sbuffer_destroy(&buf);
        if (rc != 0) { /* the queue is full after all: the next turn */
            p->dropped++;
            break;
        }
        p->next++;
    }
    if (p->next >= p->count)
        log_info("promote-proposed", "what=%s shards=%u queue_refusals=%u", p->what, p->count, p->dropped);
    return p->next < p->count;
}
