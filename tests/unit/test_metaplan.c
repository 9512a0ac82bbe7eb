/* test_metaplan.c - the metadata group's bootstrap (common/metaplan.c): the
 * map it makes assigns every shard exactly as the static configuration the
 * nodes route by (clustermap_shards's primaries, explicit ranges included,
 * and replicas_of's replicas, the configured epoch), for 1 to 6 nodes and 1
 * to 5 copies; the plan is empty once assigned; a partial map gets only the
 * missing members; a plan applied twice (two leaders) changes nothing the
 * second time; a map from another cluster.nodes is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "clustermap.h"
#include "mem.h"
#include "metacmd.h"
#include "metamap.h"
#include "metaplan.h"
#include "shardmap.h"

typedef struct cluster {
    clustermap cm;
    shardmap map;
    metaplan_node nodes[CLUSTER_MAX_NODES];
    char raft[CLUSTER_MAX_NODES][32];
} cluster;

/* n nodes, spread evenly or (ranges) by explicit uneven ranges, at epoch. */
static cluster *make_cluster(unsigned n, bool ranges, int64_t epoch)
{
    cluster *c = xcalloc(1, sizeof(*c));
    c->cm.epoch = epoch;
    char err[256];
    for (unsigned i = 0; i < n; i++) {
        char req[64], del[64], shards[64];
        snprintf(req, sizeof(req), "tcp://127.0.0.1:%u", 7000 + 10 * i);
        snprintf(del, sizeof(del), "tcp://127.0.0.1:%u", 7001 + 10 * i);
        /* uneven ranges in reverse order: node i holds [start(n-1-i), start(n-i)) with start(k) = k*k*4096/(n*n) */
        unsigned k = n - 1 - i, lo = k * k * SHARD_COUNT / (n * n), hi = (k + 1) * (k + 1) * SHARD_COUNT / (n * n);
        snprintf(shards, sizeof(shards), "%u-%u", lo, hi - 1);
        assert_int_equal(clustermap_add(&c->cm, NULL, req, del, ranges ? shards : NULL, err, sizeof(err)), 0);
        snprintf(c->raft[i], sizeof(c->raft[i]), "127.0.0.1:%u", 7003 + 10 * i);
    }
    assert_int_equal(clustermap_shards(&c->cm, &c->map, err, sizeof(err)), 0);
    for (unsigned i = 0; i < n; i++)
        c->nodes[i] = (metaplan_node){.name = c->cm.nodes[i].id, .request = c->cm.nodes[i].request,
                                      .delivery = c->cm.nodes[i].delivery, .raft = c->raft[i]};
    return c;
}

static void free_cluster(cluster *c)
{
    clustermap_clear(&c->cm);
    xfree(c);
}

/* Applies every command of p to m; returns how many were applied. */
static unsigned apply_plan(metamap *m, const metaplan *p)
{
    unsigned ok = 0;
    for (unsigned i = 0; i < p->count; i++)
        ok += metamap_apply_bytes(m, p->cmds[i].data, p->cmds[i].size) == META_OK;
    return ok;
}

/* The map m equals the static configuration: members 1..n, each shard's
 * copies = replicas_of(map) + 1, the configured epoch, all in sync. */
static void assert_same_as_static(const metamap *m, const cluster *c, unsigned n, unsigned copies)
{
    assert_int_equal(m->nmembers, n);
    for (unsigned i = 0; i < n; i++) {
        const meta_member *a = metamap_member(m, (uint16_t)(i + 1));
        assert_non_null(a);
        assert_string_equal(a->name, c->cm.nodes[i].id);
        assert_string_equal(a->request, c->cm.nodes[i].request);
        assert_string_equal(a->raft, c->raft[i]);
    }
    for (uint32_t s = 0; s < SHARD_COUNT; s++) {
        uint16_t want[SHARDMAP_MAX_COPIES];
        unsigned k = replicas_of(&c->map, s, copies, want);
        const meta_shard *sh = &m->shards[s];
        assert_int_equal(sh->ncopies, k);
        assert_int_equal(sh->epoch, (uint64_t)c->cm.epoch);
        assert_int_equal(sh->insync, (1u << k) - 1);
        assert_int_equal(sh->copies[0], shardmap_owner(&c->map, s) + 1);
        for (unsigned j = 0; j < k; j++)
            assert_int_equal(sh->copies[j], want[j] + 1);
    }
}

static void test_agrees_with_static_map(void **state)
{
    (void)state;
    metamap *m = xmalloc(sizeof(*m));
    for (int ranges = 0; ranges <= 1; ranges++)
        for (unsigned n = 1; n <= 6; n++)
            for (unsigned copies = 1; copies <= n && copies <= META_MAX_COPIES; copies++) {
                cluster *c = make_cluster(n, ranges, 3);
                metamap_init(m);
                metaplan p;
                char err[512];
                assert_int_equal(metaplan_bootstrap(m, c->nodes, n, &c->map, copies, &p, err, sizeof(err)), 0);
                assert_int_equal(p.count, n + 1); /* n ADD_NODE, one SPREAD */
                for (unsigned i = 0; i < p.count; i++)
                    assert_true(p.cmds[i].size <= METACMD_MAX);
                assert_int_equal(apply_plan(m, &p), n + 1);
                assert_int_equal(m->version, n + 1);
                assert_int_equal(metamap_check(m), 0);
                assert_same_as_static(m, c, n, copies);
                metaplan_free(&p);
                /* bootstrapped: nothing more to do */
                assert_int_equal(metaplan_bootstrap(m, c->nodes, n, &c->map, copies, &p, err, sizeof(err)), 0);
                assert_int_equal(p.count, 0);
                free_cluster(c);
            }
    xfree(m);
}

/* Every shard a run of its own (the largest SPREAD): still within METACMD_MAX. */
static void test_largest_spread(void **state)
{
    (void)state;
    cluster *c = make_cluster(2, false, 1);
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        c->map.owner[s] = (uint16_t)(s % 2);
    metamap *m = xmalloc(sizeof(*m));
    metamap_init(m);
    metaplan p;
    char err[256];
    assert_int_equal(metaplan_bootstrap(m, c->nodes, 2, &c->map, 2, &p, err, sizeof(err)), 0);
    assert_true(p.cmds[p.count - 1].size <= METACMD_MAX);
    assert_int_equal(apply_plan(m, &p), 3);
    assert_same_as_static(m, c, 2, 2);
    metaplan_free(&p);
    xfree(m);
    free_cluster(c);
}

static void test_partial_and_twice(void **state)
{
    (void)state;
    cluster *c = make_cluster(3, false, 1);
    metamap *m = xmalloc(sizeof(*m)), *other = xmalloc(sizeof(*other));
    metamap_init(m);
    metaplan p, q;
    char err[256];
    assert_int_equal(metaplan_bootstrap(m, c->nodes, 3, &c->map, 2, &p, err, sizeof(err)), 0);
    /* a leader got the first ADD_NODE committed, then lost leadership */
    assert_int_equal(metamap_apply_bytes(m, p.cmds[0].data, p.cmds[0].size), META_OK);
    *other = *m;
    /* the next leader plans from there: the two missing members and the spread */
    assert_int_equal(metaplan_bootstrap(m, c->nodes, 3, &c->map, 2, &q, err, sizeof(err)), 0);
    assert_int_equal(q.count, 3);
    assert_int_equal(apply_plan(m, &q), 3);
    assert_same_as_static(m, c, 3, 2);
    uint64_t version = m->version;
    /* the old leader's tail (and its whole plan again) arrives late: all refused */
    assert_int_equal(apply_plan(m, &p), 0);
    assert_int_equal(apply_plan(m, &q), 0);
    assert_int_equal(m->version, version);
    /* two leaders planning from the same partial map: the second copy is refused */
    assert_int_equal(apply_plan(other, &q), 3);
    assert_int_equal(apply_plan(other, &q), 0);
    assert_same_as_static(other, c, 3, 2);
    metaplan_free(&p);
    metaplan_free(&q);
    xfree(m);
    xfree(other);
    free_cluster(c);
}

static void test_refuses_another_cluster(void **state)
{
    (void)state;
    cluster *c = make_cluster(3, false, 1), *d = make_cluster(4, false, 1);
    metamap *m = xmalloc(sizeof(*m));
    metamap_init(m);
    metaplan p;
    char err[512];
    /* a member added with another address */
    meta_cmd a = {.kind = META_ADD_NODE, .node = 2, .name = "node2", .name_len = 5, .request = "tcp://x:1",
                  .request_len = 9, .delivery = "tcp://x:2", .delivery_len = 9};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(metacmd_encode(&a, &sb), 0);
    assert_int_equal(metamap_apply_bytes(m, sb.data, sb.size), META_OK);
    msgpack_sbuffer_destroy(&sb);
    assert_int_equal(metaplan_bootstrap(m, c->nodes, 3, &c->map, 2, &p, err, sizeof(err)), -1);
    assert_int_equal(p.count, 0);
    assert_non_null(strstr(err, "another cluster.nodes"));
    /* a map of 4 members against a configuration of 3 */
    metamap_init(m);
    assert_int_equal(metaplan_bootstrap(m, d->nodes, 4, &d->map, 1, &p, err, sizeof(err)), 0);
    metamap_apply_bytes(m, p.cmds[0].data, p.cmds[0].size);
    metamap_apply_bytes(m, p.cmds[1].data, p.cmds[1].size);
    metamap_apply_bytes(m, p.cmds[2].data, p.cmds[2].size);
    metamap_apply_bytes(m, p.cmds[3].data, p.cmds[3].size);
    metaplan_free(&p);
    assert_int_equal(metaplan_bootstrap(m, c->nodes, 3, &c->map, 1, &p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not in cluster.nodes"));
    /* SPREAD runs that do not cover every shard once, a run of 0, an id 0: malformed */
    static const uint8_t bad[][16] = {
        {0x96, 0x01, 0x03, 0x00, 0x01, 0x01, 0x92, 0x01, 0x01},
        {0x96, 0x01, 0x03, 0x00, 0x01, 0x01, 0x94, 0xcd, 0x10, 0x00, 0x01, 0x00, 0x01},
        {0x96, 0x01, 0x03, 0x00, 0x01, 0x01, 0x92, 0xcd, 0x10, 0x00, 0x00},
        {0x96, 0x01, 0x03, 0x00, 0x01, 0x01, 0x93, 0xcd, 0x10, 0x00, 0x01},
    };
    static const size_t bad_len[] = {9, 13, 11, 11};
    metamap_init(m);
    for (size_t i = 0; i < sizeof(bad_len) / sizeof(bad_len[0]); i++)
        assert_int_equal(metamap_apply_bytes(m, bad[i], bad_len[i]), META_EMALFORMED);
    static const uint8_t good[] = {0x96, 0x01, 0x03, 0x00, 0x01, 0x01, 0x92, 0xcd, 0x10, 0x00, 0x01};
    assert_int_equal(metamap_apply_bytes(m, good, sizeof(good)), META_EINVALID); /* well formed: no members */
    /* bounds */
    metamap_init(m);
    assert_int_equal(metaplan_bootstrap(m, c->nodes, 3, &c->map, 4, &p, err, sizeof(err)), -1);
    assert_int_equal(metaplan_bootstrap(m, c->nodes, 3, &c->map, 0, &p, err, sizeof(err)), -1);
    assert_int_equal(metaplan_bootstrap(m, c->nodes, 2, &c->map, 1, &p, err, sizeof(err)), -1);
    xfree(m);
    free_cluster(c);
    free_cluster(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agrees_with_static_map),
        cmocka_unit_test(test_largest_spread),
        cmocka_unit_test(test_partial_and_twice),
        cmocka_unit_test(test_refuses_another_cluster),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
