/* test_metamap.c - the metadata group's state machine (common/metamap.c,
 * common/metacmd.c): every command applied through its wire form, every
 * invariant violation refused with the map left byte-identical, snapshot and
 * restore round trips, corrupt and truncated snapshots and commands refused,
 * FAIL_NODE (promotion only of in-sync replicas that are up, unavailable
 * shards, idempotence by expect_version, round trip of a failed-over map),
 * the same log giving the same bytes on two instances, and the spread's
 * balance for 3, 4 and 5 nodes with 1 to 3 copies (its agreement with the
 * static map's replicas_of is test_metaplan.c's). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mem.h"
#include "metacmd.h"
#include "metamap.h"

/* ---- helpers ---- */

static metamap *new_map(void)
{
    metamap *m = xmalloc(sizeof(*m));
    metamap_init(m);
    return m;
}

/* The map's snapshot bytes (owned by the caller, msgpack_sbuffer_destroy). */
static msgpack_sbuffer snap(const metamap *m)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    metamap_encode(m, &sb);
    return sb;
}

static bool same_bytes(const metamap *a, const metamap *b)
{
    msgpack_sbuffer x = snap(a), y = snap(b);
    bool eq = x.size == y.size && memcmp(x.data, y.data, x.size) == 0;
    msgpack_sbuffer_destroy(&x);
    msgpack_sbuffer_destroy(&y);
    return eq;
}

/* Encodes c and applies the bytes: the path every node takes. */
static int run(metamap *m, const meta_cmd *c)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(metacmd_encode(c, &sb), 0);
    assert_true(sb.size <= METACMD_MAX);
    int st = metamap_apply_bytes(m, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return st;
}

/* Runs c and asserts it was refused with want, and that nothing changed. */
static void refused(metamap *m, const meta_cmd *c, int want)
{
    metamap *before = xmalloc(sizeof(*before));
    *before = *m;
    assert_int_equal(run(m, c), want);
    assert_true(same_bytes(before, m));
    assert_true(m->version == before->version);
    xfree(before);
}

static meta_cmd add_cmd(uint16_t id, const char *name, const char *raft)
{
    static char req[64], del[64];
    snprintf(req, sizeof(req), "tcp://127.0.0.1:%u", 6000 + id * 10 + 1);
    snprintf(del, sizeof(del), "tcp://127.0.0.1:%u", 6000 + id * 10 + 2);
    return (meta_cmd){.kind = META_ADD_NODE, .node = id, .name = name, .name_len = (uint32_t)strlen(name),
                      .request = req, .request_len = (uint32_t)strlen(req), .delivery = del,
                      .delivery_len = (uint32_t)strlen(del), .raft = raft, .raft_len = (uint32_t)strlen(raft)};
}

static void add(metamap *m, uint16_t id)
{
    char name[16], raft[32];
    snprintf(name, sizeof(name), "node%u", id);
    snprintf(raft, sizeof(raft), "127.0.0.1:%u", 7000 + id);
    meta_cmd c = add_cmd(id, name, raft);
    assert_int_equal(run(m, &c), META_OK);
}

static meta_cmd spread_cmd(unsigned copies, uint64_t epoch)
{
    return (meta_cmd){.kind = META_SPREAD, .ncopies = (uint8_t)copies, .epoch = epoch};
}

static meta_cmd promote_cmd(uint32_t shard, uint64_t epoch, uint16_t to)
{
    return (meta_cmd){.kind = META_PROMOTE, .shard = shard, .epoch = epoch, .node = to};
}

static meta_cmd insync_cmd(uint32_t shard, uint64_t epoch, const uint16_t *ids, unsigned n)
{
    meta_cmd c = {.kind = META_SET_INSYNC, .shard = shard, .epoch = epoch, .ninsync = (uint8_t)n};
    memcpy(c.insync, ids, n * sizeof(ids[0]));
    return c;
}

static meta_cmd set_cmd(uint32_t shard, uint64_t epoch, const uint16_t *copies, unsigned nc, const uint16_t *insync,
                        unsigned ni)
{
    meta_cmd c = {.kind = META_SET_SHARD, .shard = shard, .epoch = epoch, .ncopies = (uint8_t)nc,
                  .ninsync = (uint8_t)ni};
    memcpy(c.copies, copies, nc * sizeof(copies[0]));
    memcpy(c.insync, insync, ni * sizeof(insync[0]));
    return c;
}

static meta_cmd node_cmd(int kind, uint16_t id)
{
    return (meta_cmd){.kind = kind, .node = id};
}

/* A map with members 1..n spread with copies at epoch 1. */
static metamap *cluster(unsigned n, unsigned copies)
{
    metamap *m = new_map();
    for (unsigned i = 1; i <= n; i++)
        add(m, (uint16_t)i);
    meta_cmd c = spread_cmd(copies, 1);
    assert_int_equal(run(m, &c), META_OK);
    return m;
}

static bool in_sync(const meta_shard *sh, uint16_t id)
{
    for (unsigned i = 0; i < sh->ncopies; i++)
        if (sh->copies[i] == id)
            return (sh->insync >> i) & 1u;
    return false;
}

/* ---- membership ---- */

static void test_add_remove_node(void **state)
{
    (void)state;
    metamap *m = new_map();
    add(m, 3);
    add(m, 1);
    add(m, 2);
    assert_int_equal(m->nmembers, 3);
    assert_true(m->version == 3);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(m->members[i].id, i + 1); /* sorted by id */
    const meta_member *n2 = metamap_member(m, 2);
    assert_non_null(n2);
    assert_string_equal(n2->name, "node2");
    assert_string_equal(n2->raft, "127.0.0.1:7002");
    assert_string_equal(n2->request, "tcp://127.0.0.1:6021");
    assert_false(n2->down);

    meta_cmd c = add_cmd(2, "other", "127.0.0.1:9999");
    refused(m, &c, META_EEXISTS); /* same id */
    c = add_cmd(9, "node1", "127.0.0.1:9999");
    refused(m, &c, META_EEXISTS); /* same name */
    c = add_cmd(9, "node9", "127.0.0.1:7001");
    refused(m, &c, META_EEXISTS); /* same raft address */

    c = node_cmd(META_REMOVE_NODE, 2);
    assert_int_equal(run(m, &c), META_OK);
    assert_null(metamap_member(m, 2));
    assert_int_equal(m->nmembers, 2);
    refused(m, &c, META_ENOTFOUND);

    /* a member holding copies cannot leave */
    metamap *full = cluster(3, 2);
    c = node_cmd(META_REMOVE_NODE, 1);
    refused(full, &c, META_EINUSE);

    /* at most META_MAX_MEMBERS */
    metamap *big = new_map();
    for (unsigned i = 1; i <= META_MAX_MEMBERS; i++)
        add(big, (uint16_t)i);
    c = add_cmd(META_MAX_MEMBERS + 1, "one-more", "127.0.0.1:1");
    refused(big, &c, META_EFULL);
    xfree(big);
    xfree(full);
    xfree(m);
}

static void test_node_down_up(void **state)
{
    (void)state;
    metamap *m = cluster(3, 2);
    meta_cmd c = node_cmd(META_NODE_DOWN, 2);
    uint64_t v = m->version;
    assert_int_equal(run(m, &c), META_OK);
    assert_true(metamap_member(m, 2)->down);
    assert_true(m->version == v + 1);
    refused(m, &c, META_EINVALID); /* already down: nothing to change */
    c = node_cmd(META_NODE_UP, 2);
    assert_int_equal(run(m, &c), META_OK);
    assert_false(metamap_member(m, 2)->down);
    refused(m, &c, META_EINVALID);
    c = node_cmd(META_NODE_DOWN, 7);
    refused(m, &c, META_ENOTFOUND);
    xfree(m);
}

/* ---- shards ---- */

static void test_spread_command(void **state)
{
    (void)state;
    metamap *m = new_map();
    for (uint16_t i = 1; i <= 4; i++)
        add(m, i);
    meta_cmd c = spread_cmd(5, 3);
    refused(m, &c, META_EINVALID); /* more copies than members */
    c = spread_cmd(2, 0);
    refused(m, &c, META_EEPOCH); /* an epoch starts at 1 */
    c = node_cmd(META_NODE_DOWN, 4);
    assert_int_equal(run(m, &c), META_OK);
    c = spread_cmd(2, 7); /* the configured epoch becomes every shard's */
    assert_int_equal(run(m, &c), META_OK);
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        const meta_shard *sh = &m->shards[s];
        assert_true(sh->epoch == 7);
        assert_int_equal(sh->ncopies, 2);
        assert_int_equal(sh->insync, 3);
        assert_int_not_equal(sh->copies[0], sh->copies[1]);
    }
    assert_int_equal(metamap_copies_of(m, 4), 0); /* down members get nothing */
    refused(m, &c, META_EASSIGNED);                /* spread is for a new map only */
    xfree(m);
}

static void test_set_shard(void **state)
{
    (void)state;
    metamap *m = cluster(4, 2);
    uint16_t copies[] = {3, 1, 4}, insync[] = {3, 4};
    meta_cmd c = set_cmd(10, 1, copies, 3, insync, 2);
    refused(m, &c, META_EEPOCH); /* the epoch must go up */
    c = set_cmd(10, 0, copies, 3, insync, 2);
    refused(m, &c, META_EEPOCH);
    c = set_cmd(10, 2, copies, 3, insync, 2);
    assert_int_equal(run(m, &c), META_OK);
    const meta_shard *sh = &m->shards[10];
    assert_true(sh->epoch == 2);
    assert_int_equal(sh->ncopies, 3);
    assert_int_equal(sh->copies[0], 3);
    assert_int_equal(sh->copies[1], 1);
    assert_int_equal(sh->copies[2], 4);
    assert_int_equal(sh->insync, 0x5); /* positions 0 and 2 */

    uint16_t unknown[] = {3, 9}, dup[] = {3, 3}, primary_out[] = {1}, stranger[] = {3, 2};
    c = set_cmd(10, 3, unknown, 2, insync, 1);
    refused(m, &c, META_ENOTFOUND);
    c = set_cmd(10, 3, dup, 2, insync, 1);
    refused(m, &c, META_EINVALID);
    c = set_cmd(10, 3, copies, 3, primary_out, 1);
    refused(m, &c, META_EINVALID); /* the primary is always in sync */
    c = set_cmd(10, 3, copies, 3, stranger, 2);
    refused(m, &c, META_EINVALID); /* in sync but not a copy */
    c = set_cmd(10, 3, copies, 3, insync, 0);
    refused(m, &c, META_EINVALID); /* empty in-sync set */
    meta_cmd down = node_cmd(META_NODE_DOWN, 3);
    assert_int_equal(run(m, &down), META_OK);
    c = set_cmd(10, 3, copies, 3, insync, 2);
    refused(m, &c, META_EDOWN); /* no primary on a down node */
    xfree(m);
}

static void test_promote(void **state)
{
    (void)state;
    metamap *m = cluster(3, 3);
    uint32_t s = 100;
    meta_shard before = m->shards[s];
    uint16_t old = before.copies[0], r1 = before.copies[1], r2 = before.copies[2];

    meta_cmd c = promote_cmd(s, 1, r2);
    assert_int_equal(run(m, &c), META_OK);
    const meta_shard *sh = &m->shards[s];
    assert_true(sh->epoch == 2); /* epoch + 1 */
    assert_int_equal(sh->copies[0], r2);
    assert_int_equal(sh->copies[1], old);
    assert_int_equal(sh->copies[2], r1);
    assert_true(in_sync(sh, r2));
    assert_true(in_sync(sh, r1));  /* other in-sync replicas stay in sync */
    assert_false(in_sync(sh, old)); /* the old primary must catch up first */

    /* fencing: a promotion decided on the old epoch is refused */
    c = promote_cmd(s, 1, r1);
    refused(m, &c, META_EEPOCH);
    /* only from the in-sync set */
    c = promote_cmd(s, 2, old);
    refused(m, &c, META_ENOTINSYNC);
    /* already the primary */
    c = promote_cmd(s, 2, r2);
    refused(m, &c, META_EINVALID);
    /* not a copy of the shard at all */
    metamap *four = cluster(4, 2);
    uint16_t outsider = 0;
    for (uint16_t id = 1; id <= 4 && !outsider; id++)
        if (id != four->shards[s].copies[0] && id != four->shards[s].copies[1])
            outsider = id;
    c = promote_cmd(s, 1, outsider);
    refused(four, &c, META_ENOTINSYNC);
    c = promote_cmd(s, 1, 42);
    refused(four, &c, META_ENOTFOUND);
    /* never onto a down node */
    meta_cmd down = node_cmd(META_NODE_DOWN, r1);
    assert_int_equal(run(m, &down), META_OK);
    c = promote_cmd(s, 2, r1);
    refused(m, &c, META_EDOWN);
    /* an unassigned shard has nothing to promote */
    metamap *empty = new_map();
    add(empty, 1);
    add(empty, 2);
    c = promote_cmd(0, 0, 2);
    refused(empty, &c, META_EINVALID);
    xfree(empty);
    xfree(four);
    xfree(m);
}

static void test_set_insync(void **state)
{
    (void)state;
    metamap *m = cluster(3, 3);
    uint32_t s = 2000;
    const meta_shard *sh = &m->shards[s];
    uint16_t p = sh->copies[0], r1 = sh->copies[1], r2 = sh->copies[2];
    uint16_t shrink[] = {p, r2};
    meta_cmd c = insync_cmd(s, 1, shrink, 2);
    assert_int_equal(run(m, &c), META_OK);
    assert_false(in_sync(sh, r1));
    assert_true(in_sync(sh, r2));
    assert_true(sh->epoch == 1); /* the in-sync set does not change the epoch */
    refused(m, &c, META_EINVALID); /* no change */
    /* promotion only from the (new) in-sync set */
    c = promote_cmd(s, 1, r1);
    refused(m, &c, META_ENOTINSYNC);

    uint16_t expand[] = {p, r1, r2}, no_primary[] = {r1, r2}, twice[] = {p, p};
    c = insync_cmd(s, 1, expand, 3);
    assert_int_equal(run(m, &c), META_OK);
    assert_int_equal(sh->insync, 0x7);
    c = insync_cmd(s, 1, no_primary, 2);
    refused(m, &c, META_EINVALID);
    c = insync_cmd(s, 1, twice, 2);
    refused(m, &c, META_EINVALID);
    c = insync_cmd(s, 5, shrink, 2);
    refused(m, &c, META_EEPOCH);
    metamap *four = cluster(4, 2);
    uint16_t with_outsider[4];
    unsigned n = 0;
    with_outsider[n++] = four->shards[s].copies[0];
    for (uint16_t id = 1; id <= 4; id++)
        if (id != four->shards[s].copies[0] && id != four->shards[s].copies[1]) {
            with_outsider[n++] = id;
            break;
        }
    c = insync_cmd(s, 1, with_outsider, n);
    refused(four, &c, META_EINVALID); /* not a copy */
    xfree(four);
    xfree(m);
}

/* SYNC_REPLICA: a primary's replica in or out of the in-sync set of every
 * shard it leads (and only those), round trip of the wire form, refusals. */
static void test_sync_replica(void **state)
{
    (void)state;
    metamap *m = cluster(3, 2); /* node1's shards have node2 as replica, node2's node3, node3's node1 */
    unsigned led = metamap_primaries_of(m, 1);
    assert_true(led > 0);
    meta_cmd c = {.kind = META_SYNC_REPLICA, .node = 1, .replica = 2, .in = false};
    assert_int_equal(run(m, &c), META_OK);
    unsigned out = 0, other = 0;
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        const meta_shard *sh = &m->shards[s];
        if (sh->copies[0] == 1)
            out += !in_sync(sh, 2);
        else
            other += sh->ncopies == 2 && in_sync(sh, sh->copies[1]);
    }
    assert_int_equal(out, led);                      /* every shard node1 leads */
    assert_int_equal(other, SHARD_COUNT - led);      /* nobody else's */
    refused(m, &c, META_EINVALID);                   /* no change */
    /* out of sync: never promoted (PROMOTE and FAIL_NODE pick from the set) */
    uint32_t s1 = 0;
    while (m->shards[s1].copies[0] != 1)
        s1++;
    meta_cmd p = promote_cmd(s1, m->shards[s1].epoch, 2);
    refused(m, &p, META_ENOTINSYNC);
    /* back in */
    c.in = true;
    assert_int_equal(run(m, &c), META_OK);
    assert_true(in_sync(&m->shards[s1], 2));
    /* a down replica does not come in; unknown members are refused */
    c.in = false;
    assert_int_equal(run(m, &c), META_OK);
    meta_cmd down = node_cmd(META_NODE_DOWN, 2);
    assert_int_equal(run(m, &down), META_OK);
    c.in = true;
    refused(m, &c, META_EDOWN);
    c.replica = 9;
    refused(m, &c, META_ENOTFOUND);
    /* decided on another map version: refused (the primary asks again on its new map) */
    meta_cmd stale = {.kind = META_SYNC_REPLICA, .node = 3, .replica = 1, .in = false,
                      .expect_version = m->version - 1};
    refused(m, &stale, META_ESTALE);
    /* wire form: bounds */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    meta_cmd self = {.kind = META_SYNC_REPLICA, .node = 3, .replica = 3};
    assert_int_equal(metacmd_encode(&self, &sb), -1);
    meta_cmd ok = {.kind = META_SYNC_REPLICA, .node = 3, .replica = 1, .in = true, .expect_version = 7};
    assert_int_equal(metacmd_encode(&ok, &sb), 0);
    meta_cmd back;
    assert_int_equal(metacmd_decode(&back, sb.data, sb.size), 0);
    assert_int_equal(back.node, 3);
    assert_int_equal(back.replica, 1);
    assert_true(back.in);
    assert_true(back.expect_version == 7);
    for (size_t cut = 0; cut < sb.size; cut++)
        assert_int_equal(metacmd_decode(&back, sb.data, cut), -1);
    ((uint8_t *)sb.data)[sb.size - 1] = 2; /* in: 0 or 1 only */
    assert_int_equal(metacmd_decode(&back, sb.data, sb.size), -1);
    msgpack_sbuffer_destroy(&sb);
    xfree(m);
}

/* ADD_REPLICA: the member joins, out of sync and last, every shard below the
 * copies asked for that it holds none of; epochs stay; a down member or no
 * shard in need is refused. */
static void test_add_replica(void **state)
{
    (void)state;
    metamap *m = cluster(3, 2);
    meta_cmd none = {.kind = META_ADD_REPLICA, .node = 2, .ncopies = 2};
    refused(m, &none, META_EINVALID); /* every shard has 2 copies */
    meta_cmd fail = node_cmd(META_FAIL_NODE, 3);
    assert_int_equal(run(m, &fail), META_OK); /* node3's copies gone: shards at 1 copy */
    unsigned one = 0;
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        one += m->shards[s].ncopies == 1;
    assert_true(one > 0);
    meta_cmd up = node_cmd(META_NODE_UP, 3);
    assert_int_equal(run(m, &up), META_OK);
    metamap *before = xmalloc(sizeof(*before));
    *before = *m;
    meta_cmd add = {.kind = META_ADD_REPLICA, .node = 3, .ncopies = 2};
    assert_int_equal(run(m, &add), META_OK);
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        const meta_shard *sh = &m->shards[s], *was = &before->shards[s];
        assert_true(sh->epoch == was->epoch);
        assert_int_equal(sh->copies[0], was->copies[0]);
        if (was->ncopies == 1) {
            assert_int_equal(sh->ncopies, 2);
            assert_int_equal(sh->copies[1], 3);
            assert_false(in_sync(sh, 3)); /* out of sync until its primary says otherwise */
        } else
            assert_int_equal(sh->ncopies, was->ncopies);
    }
    assert_int_equal(metamap_check(m), 0);
    refused(m, &add, META_EINVALID); /* nothing left to add */
    /* a down member is never added; an unknown one is refused */
    assert_int_equal(run(m, &fail), META_OK);
    refused(m, &add, META_EDOWN);
    add.node = 9;
    refused(m, &add, META_ENOTFOUND);
    /* wire form */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    meta_cmd bad = {.kind = META_ADD_REPLICA, .node = 1, .ncopies = 1};
    assert_int_equal(metacmd_encode(&bad, &sb), -1);
    meta_cmd ok = {.kind = META_ADD_REPLICA, .node = 1, .ncopies = 3};
    assert_int_equal(metacmd_encode(&ok, &sb), 0);
    meta_cmd back;
    assert_int_equal(metacmd_decode(&back, sb.data, sb.size), 0);
    assert_int_equal(back.node, 1);
    assert_int_equal(back.ncopies, 3);
    for (size_t cut = 0; cut < sb.size; cut++)
        assert_int_equal(metacmd_decode(&back, sb.data, cut), -1);
    msgpack_sbuffer_destroy(&sb);
    xfree(before);
    xfree(m);
}

/* ADD_COPY / DROP_COPY (rebalance): one shard gains an out-of-sync replica,
 * last, or loses a replica, the copies after it moving up with their in-sync
 * bits; both are decided on the shard's epoch (fenced), the epoch stays, and
 * the primary is never dropped; the wire form is bounded like PROMOTE's. */
static void test_add_drop_copy(void **state)
{
    (void)state;
    metamap *m = cluster(4, 2);
    const uint32_t s = 0; /* copies 1, 2 (both in sync) at epoch 1 */
    assert_int_equal(m->shards[s].copies[0], 1);
    assert_int_equal(m->shards[s].copies[1], 2);
    meta_cmd add = {.kind = META_ADD_COPY, .shard = s, .epoch = 1, .node = 3};
    assert_int_equal(run(m, &add), META_OK);
    const meta_shard *sh = &m->shards[s];
    assert_int_equal(sh->ncopies, 3);
    assert_int_equal(sh->copies[2], 3);
    assert_true(sh->epoch == 1);
    assert_true(in_sync(sh, 1) && in_sync(sh, 2) && !in_sync(sh, 3));
    assert_int_equal(m->shards[s + 1].ncopies, 2); /* one shard only */
    refused(m, &add, META_EINVALID);               /* a copy already */
    meta_cmd stale = {.kind = META_ADD_COPY, .shard = s, .epoch = 0, .node = 4};
    refused(m, &stale, META_EEPOCH);
    meta_cmd unknown = {.kind = META_ADD_COPY, .shard = s, .epoch = 1, .node = 9};
    refused(m, &unknown, META_ENOTFOUND);
    meta_cmd down = node_cmd(META_NODE_DOWN, 4);
    assert_int_equal(run(m, &down), META_OK);
    meta_cmd add4 = {.kind = META_ADD_COPY, .shard = s, .epoch = 1, .node = 4};
    refused(m, &add4, META_EDOWN);
    /* 3 in sync now: dropping 2 keeps 3's bit, in 2's place */
    uint16_t all[] = {1, 2, 3};
    meta_cmd sync = insync_cmd(s, 1, all, 3);
    assert_int_equal(run(m, &sync), META_OK);
    meta_cmd drop = {.kind = META_DROP_COPY, .shard = s, .epoch = 1, .node = 2};
    assert_int_equal(run(m, &drop), META_OK);
    assert_int_equal(sh->ncopies, 2);
    assert_int_equal(sh->copies[0], 1);
    assert_int_equal(sh->copies[1], 3);
    assert_int_equal(sh->copies[2], 0);
    assert_true(in_sync(sh, 1) && in_sync(sh, 3));
    assert_int_equal(sh->insync, 3);
    assert_true(sh->epoch == 1);
    refused(m, &drop, META_EINVALID); /* not a copy any more */
    meta_cmd primary = {.kind = META_DROP_COPY, .shard = s, .epoch = 1, .node = 1};
    refused(m, &primary, META_EINVALID);
    meta_cmd old = {.kind = META_DROP_COPY, .shard = s, .epoch = 2, .node = 3};
    refused(m, &old, META_EEPOCH);
    /* an out-of-sync copy in the middle: the in-sync one after it keeps its bit */
    meta_cmd up = node_cmd(META_NODE_UP, 4);
    assert_int_equal(run(m, &up), META_OK);
    assert_int_equal(run(m, &add4), META_OK); /* 1, 3, 4(out) */
    uint16_t three[] = {1, 3, 4};
    sync = insync_cmd(s, 1, three, 3);
    assert_int_equal(run(m, &sync), META_OK);
    uint16_t two[] = {1, 4};
    sync = insync_cmd(s, 1, two, 2); /* 1, 3(out), 4 */
    assert_int_equal(run(m, &sync), META_OK);
    meta_cmd drop3 = {.kind = META_DROP_COPY, .shard = s, .epoch = 1, .node = 3};
    assert_int_equal(run(m, &drop3), META_OK);
    assert_int_equal(sh->ncopies, 2);
    assert_int_equal(sh->copies[1], 4);
    assert_true(in_sync(sh, 4));
    assert_int_equal(metamap_check(m), 0);
    /* wire form */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    meta_cmd bad = {.kind = META_DROP_COPY, .shard = SHARD_COUNT, .epoch = 1, .node = 2};
    assert_int_equal(metacmd_encode(&bad, &sb), -1);
    bad = (meta_cmd){.kind = META_ADD_COPY, .shard = 1, .epoch = 1, .node = 0};
    assert_int_equal(metacmd_encode(&bad, &sb), -1);
    meta_cmd ok = {.kind = META_ADD_COPY, .shard = 4095, .epoch = 77, .node = 2};
    assert_int_equal(metacmd_encode(&ok, &sb), 0);
    meta_cmd back;
    assert_int_equal(metacmd_decode(&back, sb.data, sb.size), 0);
    assert_int_equal(back.kind, META_ADD_COPY);
    assert_int_equal(back.shard, 4095);
    assert_true(back.epoch == 77);
    assert_int_equal(back.node, 2);
    for (size_t cut = 0; cut < sb.size; cut++)
        assert_int_equal(metacmd_decode(&back, sb.data, cut), -1);
    msgpack_sbuffer_destroy(&sb);
    xfree(m);
}

static void test_expect_version(void **state)
{
    (void)state;
    metamap *m = cluster(3, 2);
    uint64_t v = m->version;
    meta_cmd c = promote_cmd(5, 1, m->shards[5].copies[1]);
    c.expect_version = v - 1;
    refused(m, &c, META_ESTALE);
    c.expect_version = v;
    assert_int_equal(run(m, &c), META_OK);
    assert_true(m->version == v + 1);
    xfree(m);
}


/* ---- FAIL_NODE (the leader's failure detector) ---- */

/* every shard's epoch in m is at least its epoch in before */
static void epochs_not_lower(const metamap *before, const metamap *m)
{
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        assert_true(m->shards[s].epoch >= before->shards[s].epoch);
}

static void test_fail_node(void **state)
{
    (void)state;
    metamap *m = cluster(3, 2);
    metamap *before = xmalloc(sizeof(*before));
    *before = *m;
    meta_cmd c = node_cmd(META_FAIL_NODE, 2);
    assert_int_equal(run(m, &c), META_OK);
    assert_true(m->version == before->version + 1); /* one command, one version */
    assert_true(metamap_member(m, 2)->down);
    assert_int_equal(metamap_copies_of(m, 2), 0); /* out of every copy list */
    unsigned promoted = 0, shrunk = 0;
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        const meta_shard *b = &before->shards[s], *sh = &m->shards[s];
        if (b->copies[0] == 2) { /* its primaries: the in-sync replica, epoch + 1 */
            assert_true(sh->epoch == b->epoch + 1);
            assert_int_equal(sh->copies[0], b->copies[1]);
            assert_int_equal(sh->ncopies, 1);
            assert_int_equal(sh->insync, 1);
            promoted++;
        } else if (b->copies[1] == 2) { /* a replica: gone, the primary and its epoch stay */
            assert_true(sh->epoch == b->epoch);
            assert_int_equal(sh->copies[0], b->copies[0]);
            assert_int_equal(sh->ncopies, 1);
            assert_int_equal(sh->insync, 1);
            shrunk++;
        } else
            assert_memory_equal(sh, b, sizeof(*sh)); /* untouched */
    }
    assert_int_equal(promoted, metamap_primaries_of(before, 2));
    assert_int_equal(promoted + shrunk, metamap_copies_of(before, 2));
    assert_true(promoted > 0 && shrunk > 0);
    epochs_not_lower(before, m);
    assert_int_equal(metamap_check(m), 0);
    assert_int_equal(metamap_unavailable_count(m), 0);
    /* again: down and holding nothing, nothing to change */
    refused(m, &c, META_EINVALID);
    c = node_cmd(META_FAIL_NODE, 9);
    refused(m, &c, META_ENOTFOUND);
    /* heard again: up, holding nothing until it is replicated to again */
    c = node_cmd(META_NODE_UP, 2);
    assert_int_equal(run(m, &c), META_OK);
    assert_false(metamap_member(m, 2)->down);
    assert_int_equal(metamap_copies_of(m, 2), 0);
    /* failed again while up (and holding nothing): marked down, nothing else moves */
    *before = *m;
    c = node_cmd(META_FAIL_NODE, 2);
    assert_int_equal(run(m, &c), META_OK);
    assert_true(metamap_member(m, 2)->down);
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        assert_memory_equal(&m->shards[s], &before->shards[s], sizeof(meta_shard));
    xfree(before);
    xfree(m);
}

/* Promotion picks the first replica that is in sync and up; never one out of
 * sync, never a down one; the others keep their order and in-sync bits. */
static void test_fail_node_promotes_in_sync_up(void **state)
{
    (void)state;
    metamap *m = cluster(5, 4);
    uint32_t s = 10, t = 11; /* both node1's */
    const meta_shard *sh = &m->shards[s];
    uint16_t p = sh->copies[0], r1 = sh->copies[1], r2 = sh->copies[2], r3 = sh->copies[3];
    /* shard s: r1 out of sync */
    uint16_t keep[] = {p, r2, r3};
    meta_cmd c = insync_cmd(s, 1, keep, 3);
    assert_int_equal(run(m, &c), META_OK);
    /* shard t has the same primary: make its first replica down (NODE_DOWN keeps its copies) */
    assert_int_equal(m->shards[t].copies[0], p);
    uint16_t t1 = m->shards[t].copies[1], t2 = m->shards[t].copies[2];
    c = node_cmd(META_NODE_DOWN, t1);
    assert_int_equal(run(m, &c), META_OK);
    metamap *before = xmalloc(sizeof(*before));
    *before = *m;
    c = node_cmd(META_FAIL_NODE, p);
    assert_int_equal(run(m, &c), META_OK);
    /* s: r2 (the first in sync) takes over, r1 stays a copy out of sync, r3 in sync */
    assert_true(sh->epoch == 2);
    assert_int_equal(sh->ncopies, 3);
    assert_int_equal(sh->copies[0], r2);
    assert_int_equal(sh->copies[1], r1);
    assert_int_equal(sh->copies[2], r3);
    assert_true(in_sync(sh, r2));
    assert_false(in_sync(sh, r1));
    assert_true(in_sync(sh, r3));
    /* t: its down replica t1 is skipped (it keeps its place and bit: NODE_DOWN's doing), t2 takes over */
    const meta_shard *th = &m->shards[t];
    assert_true(th->epoch == 2);
    assert_int_equal(th->copies[0], t2);
    assert_int_not_equal(th->copies[0], t1);
    assert_int_equal(metamap_copies_of(m, p), 0);
    epochs_not_lower(before, m);
    assert_int_equal(metamap_check(m), 0);
    xfree(before);
    xfree(m);
}

/* No promotable copy left: the shard is unavailable (epoch + 1, no copies),
 * which metamap_check accepts, SPREAD does not overwrite, and the bootstrap
 * plan leaves alone; SET_SHARD assigns it again at a higher epoch. */
static void test_fail_node_unavailable(void **state)
{
    (void)state;
    metamap *m = cluster(3, 2);
    uint32_t s = 7;
    uint16_t p = m->shards[s].copies[0], r = m->shards[s].copies[1];
    uint16_t only[] = {p};
    meta_cmd c = insync_cmd(s, 1, only, 1); /* its replica fell out of sync */
    assert_int_equal(run(m, &c), META_OK);
    c = node_cmd(META_FAIL_NODE, p);
    assert_int_equal(run(m, &c), META_OK);
    const meta_shard *sh = &m->shards[s];
    assert_true(metamap_unavailable(sh));
    assert_true(sh->epoch == 2);
    assert_int_equal(sh->ncopies, 0);
    assert_int_equal(sh->insync, 0);
    assert_int_equal(metamap_unavailable_count(m), 1);
    assert_int_equal(metamap_check(m), 0);
    /* the other shards p was primary of went to their (in-sync) replicas */
    for (uint32_t t = 0; t < SHARD_COUNT; t++)
        if (t != s)
            assert_false(metamap_unavailable(&m->shards[t]));
    /* one copy only (replicas 1): every shard of the failed node is unavailable */
    metamap *one = cluster(3, 1);
    unsigned had = metamap_primaries_of(one, 3);
    c = node_cmd(META_FAIL_NODE, 3);
    assert_int_equal(run(one, &c), META_OK);
    assert_int_equal(metamap_unavailable_count(one), had);
    assert_int_equal(metamap_check(one), 0);
    /* every shard unavailable: still "assigned" for SPREAD */
    c = node_cmd(META_FAIL_NODE, 1);
    assert_int_equal(run(one, &c), META_OK);
    c = node_cmd(META_FAIL_NODE, 2);
    assert_int_equal(run(one, &c), META_OK);
    assert_int_equal(metamap_unavailable_count(one), SHARD_COUNT);
    c = node_cmd(META_NODE_UP, 2);
    assert_int_equal(run(one, &c), META_OK);
    c = spread_cmd(1, 5);
    refused(one, &c, META_EASSIGNED);
    /* SET_SHARD gives it a primary again, only above its epoch */
    uint16_t back[] = {r};
    c = set_cmd(s, 2, back, 1, back, 1);
    refused(m, &c, META_EEPOCH);
    c = set_cmd(s, 3, back, 1, back, 1);
    assert_int_equal(run(m, &c), META_OK);
    assert_false(metamap_unavailable(sh));
    xfree(one);
    xfree(m);
}

/* Two leaders' copies of one decision (a new leader retrying what the old
 * one proposed): the first applies, the second is refused as stale. */
static void test_fail_node_expect_version(void **state)
{
    (void)state;
    metamap *m = cluster(3, 2);
    meta_cmd c = node_cmd(META_FAIL_NODE, 3);
    c.expect_version = m->version;
    assert_int_equal(run(m, &c), META_OK);
    metamap *once = xmalloc(sizeof(*once));
    *once = *m;
    refused(m, &c, META_ESTALE);
    assert_true(same_bytes(once, m));
    /* another member failed next, chained on the new version */
    meta_cmd d = node_cmd(META_FAIL_NODE, 1);
    d.expect_version = m->version - 1;
    refused(m, &d, META_ESTALE);
    d.expect_version = m->version;
    assert_int_equal(run(m, &d), META_OK);
    /* with 2 copies and 2 of 3 failed: node2 serves every shard that had a
     * copy on it, the rest are unavailable */
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        assert_true(metamap_unavailable(&m->shards[s]) || m->shards[s].copies[0] == 2);
    assert_int_equal(metamap_unavailable_count(m) + metamap_primaries_of(m, 2), SHARD_COUNT);
    assert_true(metamap_unavailable_count(m) > 0);
    xfree(once);
    xfree(m);
}

static void test_fail_node_snapshot_round_trip(void **state)
{
    (void)state;
    metamap *m = cluster(4, 2);
    uint16_t only[] = {m->shards[0].copies[0]};
    meta_cmd c = insync_cmd(0, 1, only, 1);
    assert_int_equal(run(m, &c), META_OK);
    c = node_cmd(META_FAIL_NODE, only[0]); /* shard 0 unavailable, the rest promoted */
    assert_int_equal(run(m, &c), META_OK);
    c = node_cmd(META_FAIL_NODE, 3);
    assert_int_equal(run(m, &c), META_OK);
    assert_true(metamap_unavailable_count(m) > 0);
    msgpack_sbuffer a = snap(m);
    metamap *r = new_map();
    assert_int_equal(metamap_decode(r, a.data, a.size), 0);
    assert_true(same_bytes(m, r));
    assert_true(metamap_member(r, only[0])->down && metamap_member(r, 3)->down);
    assert_int_equal(metamap_unavailable_count(r), metamap_unavailable_count(m));
    assert_true(metamap_unavailable(&r->shards[0]) && r->shards[0].epoch == 2);
    /* the restored map goes on like the original */
    c = node_cmd(META_NODE_UP, 3);
    c.expect_version = m->version;
    assert_int_equal(run(m, &c), META_OK);
    assert_int_equal(run(r, &c), META_OK);
    assert_true(same_bytes(m, r));
    msgpack_sbuffer_destroy(&a);
    xfree(r);
    xfree(m);
}

/* ---- malformed commands ---- */

static void test_malformed_commands(void **state)
{
    (void)state;
    metamap *m = cluster(3, 2);
    meta_cmd c = add_cmd(9, "node9", "127.0.0.1:7009");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(metacmd_encode(&c, &sb), 0);
    metamap *before = xmalloc(sizeof(*before));
    *before = *m;
    for (size_t len = 0; len < sb.size; len++) { /* every truncation */
        assert_int_equal(metamap_apply_bytes(m, sb.data, len), META_EMALFORMED);
        assert_true(same_bytes(before, m));
    }
    /* a byte after the command */
    char *longer = xmalloc(sb.size + 1);
    memcpy(longer, sb.data, sb.size);
    longer[sb.size] = 0;
    assert_int_equal(metamap_apply_bytes(m, longer, sb.size + 1), META_EMALFORMED);
    /* another format version */
    longer[1] = 2;
    assert_int_equal(metamap_apply_bytes(m, longer, sb.size), META_EMALFORMED);
    xfree(longer);
    msgpack_sbuffer_destroy(&sb);

    /* hand-made: wrong arity, unknown kind, id 0, shard out of range, a list too long, a NUL in a name */
    static const uint8_t bad[][16] = {
        {0x93, 0x01, 0x02, 0x00},                         /* REMOVE_NODE without its id */
        {0x94, 0x01, 0x63, 0x00, 0x01},                   /* kind 99 */
        {0x94, 0x01, 0x00, 0x00, 0x01},                   /* kind 0 */
        {0x94, 0x01, 0x02, 0x00, 0x00},                   /* node id 0 */
        {0x94, 0x01, 0x02, 0x00, 0xce, 0x00, 0x01, 0x00, 0x00}, /* node id 65536 */
        {0x96, 0x01, 0x05, 0x00, 0xcd, 0x10, 0x00, 0x01, 0x02}, /* PROMOTE shard 4096 */
        {0x96, 0x01, 0x06, 0x00, 0x01, 0x01, 0x96, 1, 2, 3, 4, 5, 6}, /* SET_INSYNC of 6 ids */
        {0x95, 0x01, 0x03, 0x00, 0x06, 0x01},             /* SPREAD of 6 copies */
        {0x95, 0x01, 0x03, 0x00, 0x00, 0x01},             /* SPREAD of 0 copies */
        {0x94, 0x01, 0x02, 0x00, 0xa1, 'x'},              /* id as a string */
        {0xdd, 0xff, 0xff, 0xff, 0xff},                   /* array32 of 4 G */
        {0x94, 0x01, 0x09, 0x00, 0x00},                   /* FAIL_NODE of id 0 */
        {0x95, 0x01, 0x09, 0x00, 0x01, 0x02},             /* FAIL_NODE with a field too many */
        {0x94, 0x01, 0x0a, 0x00, 0x01},                   /* kind 10: none yet */
    };
    static const size_t bad_len[] = {4, 5, 5, 5, 9, 9, 13, 6, 6, 6, 5, 5, 6, 5};
    for (size_t i = 0; i < sizeof(bad_len) / sizeof(bad_len[0]); i++) {
        assert_int_equal(metamap_apply_bytes(m, bad[i], bad_len[i]), META_EMALFORMED);
        assert_true(same_bytes(before, m));
    }
    const uint8_t nul_name[] = {0x98, 0x01, 0x01, 0x00, 0x09, 0xa2, 'a', 0, 0xa0, 0xa0, 0xa1, 'x'};
    assert_int_equal(metamap_apply_bytes(m, nul_name, sizeof(nul_name)), META_EMALFORMED);
    char longname[META_MAX_NAME + 2];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    c = add_cmd(9, longname, "127.0.0.1:7009");
    msgpack_sbuffer_init(&sb);
    assert_int_equal(metacmd_encode(&c, &sb), -1); /* the encoder refuses it too */
    assert_int_equal(sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
    /* random bytes never crash and never change the map */
    srand(18);
    uint8_t junk[64];
    for (int i = 0; i < 20000; i++) {
        size_t len = (size_t)(rand() % (int)sizeof(junk)) + 1;
        for (size_t k = 0; k < len; k++)
            junk[k] = (uint8_t)rand();
        if (i % 3 == 0)
            junk[0] = (uint8_t)(0x90 | (rand() % 9)); /* mostly arrays, to get past the first byte */
        if (i % 3 == 0 && len > 1)
            junk[1] = 1;
        int st = metamap_apply_bytes(m, junk, len);
        if (st == META_OK) { /* a valid command by chance: fine, start again from here */
            *before = *m;
            continue;
        }
        assert_true(same_bytes(before, m));
    }
    assert_int_equal(metamap_apply_bytes(m, NULL, 0), META_EMALFORMED);
    xfree(before);
    xfree(m);
}

/* ---- snapshot and restore ---- */

static void test_snapshot_round_trip(void **state)
{
    (void)state;
    metamap *m = cluster(5, 3);
    meta_cmd c = node_cmd(META_NODE_DOWN, 4);
    assert_int_equal(run(m, &c), META_OK);
    c = promote_cmd(7, 1, m->shards[7].copies[2]);
    assert_int_equal(run(m, &c), META_OK);
    msgpack_sbuffer a = snap(m);
    assert_true(a.size <= META_SNAPSHOT_MAX);
    metamap *r = new_map();
    assert_int_equal(metamap_decode(r, a.data, a.size), 0);
    assert_true(same_bytes(m, r));
    assert_true(r->version == m->version);
    assert_int_equal(r->nmembers, 5);
    assert_true(metamap_member(r, 4)->down);
    assert_true(r->shards[7].epoch == 2);
    assert_int_equal(r->shards[7].copies[0], m->shards[7].copies[0]);
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        assert_memory_equal(&r->shards[s], &m->shards[s], sizeof(meta_shard));
    /* the restored map goes on applying like the original */
    c = promote_cmd(8, 1, m->shards[8].copies[1]);
    assert_int_equal(run(m, &c), META_OK);
    assert_int_equal(run(r, &c), META_OK);
    assert_true(same_bytes(m, r));
    /* an empty map round-trips too */
    metamap *e = new_map(), *e2 = new_map();
    msgpack_sbuffer eb = snap(e);
    assert_int_equal(metamap_decode(e2, eb.data, eb.size), 0);
    assert_true(same_bytes(e, e2));
    msgpack_sbuffer_destroy(&eb);
    msgpack_sbuffer_destroy(&a);
    xfree(e);
    xfree(e2);
    xfree(r);
    xfree(m);
}

/* decode(encode(bad)) must refuse, and leave the target as it was */
static void refuse_restore(const metamap *bad, metamap *target)
{
    msgpack_sbuffer b = snap(bad);
    metamap *before = xmalloc(sizeof(*before));
    *before = *target;
    assert_int_equal(metamap_decode(target, b.data, b.size), -1);
    assert_true(same_bytes(before, target));
    msgpack_sbuffer_destroy(&b);
    xfree(before);
}

static void test_restore_refuses_corrupt(void **state)
{
    (void)state;
    metamap *m = cluster(3, 2);
    metamap *target = cluster(4, 1);
    msgpack_sbuffer good = snap(m);
    metamap *before = xmalloc(sizeof(*before));
    *before = *target;
    /* every truncation of the header and members, then a sample of the shards */
    for (size_t len = 0; len < good.size; len += len < 600 ? 1 : 97) {
        assert_int_equal(metamap_decode(target, good.data, len), -1);
        assert_true(same_bytes(before, target));
    }
    assert_int_equal(metamap_decode(target, good.data, good.size - 1), -1);
    /* a byte too many */
    char *longer = xmalloc(good.size + 1);
    memcpy(longer, good.data, good.size);
    longer[good.size] = 0;
    assert_int_equal(metamap_decode(target, longer, good.size + 1), -1);
    /* random bit flips: refused or a valid map, never a crash */
    srand(42);
    for (int i = 0; i < 300; i++) {
        memcpy(longer, good.data, good.size);
        size_t at = (size_t)rand() % good.size;
        longer[at] = (char)(longer[at] ^ (1 << (rand() % 8)));
        metamap *t = new_map();
        if (metamap_decode(t, longer, good.size) == 0)
            assert_int_equal(metamap_check(t), 0);
        xfree(t);
    }
    xfree(longer);
    assert_true(same_bytes(before, target));

    /* invariants broken inside well-formed msgpack */
    metamap *bad = xmalloc(sizeof(*bad));
    *bad = *m;
    bad->shards[3].copies[1] = 9; /* not a member */
    refuse_restore(bad, target);
    *bad = *m;
    bad->shards[3].copies[1] = bad->shards[3].copies[0]; /* a copy twice */
    refuse_restore(bad, target);
    *bad = *m;
    bad->shards[3].insync = 0x2; /* the primary out of sync */
    refuse_restore(bad, target);
    *bad = *m;
    bad->shards[3].insync = 0x7; /* a bit beyond the copies */
    refuse_restore(bad, target);
    *bad = *m;
    bad->shards[3].epoch = 0; /* assigned at epoch 0 */
    refuse_restore(bad, target);
    *bad = *m;
    bad->members[0].id = 2; /* ids not strictly sorted (and twice) */
    refuse_restore(bad, target);
    *bad = *m;
    strcpy(bad->members[1].name, bad->members[0].name); /* a name twice */
    refuse_restore(bad, target);
    *bad = *m;
    bad->members[2].name[0] = '\0'; /* no name */
    refuse_restore(bad, target);
    *bad = *m;
    bad->shards[9].ncopies = 0; /* unassigned but with an in-sync set */
    refuse_restore(bad, target);
    /* another format */
    msgpack_sbuffer b = snap(m);
    ((char *)b.data)[1] = 2;
    assert_int_equal(metamap_decode(target, b.data, b.size), -1);
    msgpack_sbuffer_destroy(&b);
    /* longer than META_SNAPSHOT_MAX is refused before it is read */
    assert_int_equal(metamap_decode(target, good.data, META_SNAPSHOT_MAX + 1), -1);
    assert_true(same_bytes(before, target));
    msgpack_sbuffer_destroy(&good);
    xfree(bad);
    xfree(before);
    xfree(target);
    xfree(m);
}

/* ---- determinism ---- */

static void test_same_log_same_bytes(void **state)
{
    (void)state;
    /* one log with refusals in it, encoded once, applied on two instances */
    msgpack_sbuffer log[64];
    size_t n = 0;
    meta_cmd cmds[64];
    size_t nc = 0;
    for (uint16_t i = 1; i <= 5; i++) {
        static char names[6][16], rafts[6][32];
        snprintf(names[i], sizeof(names[i]), "n%u", i);
        snprintf(rafts[i], sizeof(rafts[i]), "10.0.0.%u:7000", i);
        cmds[nc++] = add_cmd(i, names[i], rafts[i]);
    }
    cmds[nc++] = add_cmd(3, "dup", "x"); /* refused */
    cmds[nc++] = spread_cmd(3, 4);
    cmds[nc++] = spread_cmd(3, 5); /* refused */
    cmds[nc++] = node_cmd(META_NODE_DOWN, 2);
    for (uint32_t s = 0; s < 40; s++)
        cmds[nc++] = promote_cmd(s * 97, 4, (uint16_t)(1 + s % 5)); /* some refused */
    cmds[nc++] = node_cmd(META_NODE_UP, 2);
    for (size_t i = 0; i < nc; i++) {
        msgpack_sbuffer_init(&log[n]);
        assert_int_equal(metacmd_encode(&cmds[i], &log[n]), 0);
        n++;
    }
    metamap *a = new_map(), *b = new_map();
    unsigned ok = 0, no = 0;
    for (size_t i = 0; i < n; i++) {
        int sa = metamap_apply_bytes(a, log[i].data, log[i].size);
        int sb = metamap_apply_bytes(b, log[i].data, log[i].size);
        assert_int_equal(sa, sb);
        sa == META_OK ? ok++ : no++;
    }
    assert_true(ok > 10 && no > 3);
    assert_true(same_bytes(a, b));
    assert_true(a->version == ok);
    /* a third restored from a's snapshot halfway would agree as well */
    msgpack_sbuffer sa = snap(a);
    metamap *c = new_map();
    assert_int_equal(metamap_decode(c, sa.data, sa.size), 0);
    assert_true(same_bytes(a, c));
    msgpack_sbuffer_destroy(&sa);
    for (size_t i = 0; i < n; i++)
        msgpack_sbuffer_destroy(&log[i]);
    xfree(a);
    xfree(b);
    xfree(c);
}

/* ---- the spread ---- */

static void check_spread(unsigned n, unsigned copies)
{
    uint16_t ids[8];
    for (unsigned i = 0; i < n; i++)
        ids[i] = (uint16_t)(10 + 3 * i); /* ids need not be contiguous */
    meta_shard *sh = xmalloc(SHARD_COUNT * sizeof(*sh));
    assert_int_equal(metamap_spread(ids, n, copies, 1, NULL, sh), 0);
    unsigned prim[8] = {0}, all[8] = {0}, pos[META_MAX_COPIES][8];
    memset(pos, 0, sizeof(pos));
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        assert_int_equal(sh[s].ncopies, copies);
        assert_int_equal(sh[s].insync, (1u << copies) - 1);
        unsigned idx[META_MAX_COPIES];
        for (unsigned j = 0; j < copies; j++) {
            idx[j] = n;
            for (unsigned i = 0; i < n; i++)
                if (ids[i] == sh[s].copies[j])
                    idx[j] = i;
            assert_true(idx[j] < n);
            for (unsigned k = 0; k < j; k++)
                assert_int_not_equal(idx[k], idx[j]); /* distinct copies */
            all[idx[j]]++;
            pos[j][idx[j]]++;
        }
        prim[idx[0]]++;
    }
    unsigned pmin = SHARD_COUNT, pmax = 0, amin = SHARD_COUNT, amax = 0;
    for (unsigned i = 0; i < n; i++) {
        pmin = prim[i] < pmin ? prim[i] : pmin;
        pmax = prim[i] > pmax ? prim[i] : pmax;
        amin = all[i] < amin ? all[i] : amin;
        amax = all[i] > amax ? all[i] : amax;
    }
    assert_true(pmax - pmin <= 1); /* primaries: within one */
    assert_true(amax - amin <= copies); /* copies: within one per position */
    for (unsigned j = 1; j < copies; j++) {
        unsigned lo = SHARD_COUNT, hi = 0;
        for (unsigned i = 0; i < n; i++) {
            lo = pos[j][i] < lo ? pos[j][i] : lo;
            hi = pos[j][i] > hi ? pos[j][i] : hi;
        }
        assert_true(hi - lo <= 1);
    }
    /* replicas are the members after the primary, in id order (replicas_of's rule) */
    for (uint32_t s2 = 0; s2 < SHARD_COUNT; s2++) {
        unsigned p = 0;
        while (ids[p] != sh[s2].copies[0])
            p++;
        for (unsigned j = 1; j < copies; j++)
            assert_int_equal(sh[s2].copies[j], ids[(p + j) % n]);
    }
    xfree(sh);
}

static void test_spread_balance(void **state)
{
    (void)state;
    for (unsigned n = 3; n <= 5; n++)
        for (unsigned copies = 1; copies <= 3; copies++)
            check_spread(n, copies);
    check_spread(1, 1);
    check_spread(2, 2);
    uint16_t ids[] = {1, 2};
    meta_shard *sh = xmalloc(SHARD_COUNT * sizeof(*sh));
    assert_int_equal(metamap_spread(ids, 2, 3, 1, NULL, sh), -1);
    assert_int_equal(metamap_spread(ids, 2, 0, 1, NULL, sh), -1);
    assert_int_equal(metamap_spread(ids, 0, 1, 1, NULL, sh), -1);
    uint16_t *prim = xmalloc(SHARD_COUNT * sizeof(*prim));
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        prim[s] = s < 100 ? 2 : 1;
    assert_int_equal(metamap_spread(ids, 2, 2, 1, prim, sh), 0);
    assert_int_equal(sh[0].copies[0], 2);
    assert_int_equal(sh[0].copies[1], 1);
    assert_int_equal(sh[100].copies[0], 1);
    prim[5] = 3; /* not a member */
    assert_int_equal(metamap_spread(ids, 2, 2, 1, prim, sh), -1);
    xfree(prim);
    xfree(sh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_remove_node),
        cmocka_unit_test(test_node_down_up),
        cmocka_unit_test(test_spread_command),
        cmocka_unit_test(test_set_shard),
        cmocka_unit_test(test_promote),
        cmocka_unit_test(test_set_insync),
        cmocka_unit_test(test_sync_replica),
        cmocka_unit_test(test_add_replica),
        cmocka_unit_test(test_expect_version),
        cmocka_unit_test(test_fail_node),
        cmocka_unit_test(test_fail_node_promotes_in_sync_up),
        cmocka_unit_test(test_fail_node_unavailable),
        cmocka_unit_test(test_fail_node_expect_version),
        cmocka_unit_test(test_fail_node_snapshot_round_trip),
        cmocka_unit_test(test_add_drop_copy),
        cmocka_unit_test(test_malformed_commands),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_restore_refuses_corrupt),
        cmocka_unit_test(test_same_log_same_bytes),
        cmocka_unit_test(test_spread_balance),
    };
    return cmocka_run_group_tests_name("metamap", tests, NULL, NULL);
}
