/* test_maproute.c - the routing map made from the metadata group's map and
 * its JSON form: a static map's JSON is byte for byte what it always was; a
 * versioned map (moved primaries, shard epochs, an unavailable shard, a node
 * without primaries) survives clustermap_json -> clustermap_parse ->
 * clustermap_shards whole, HELLO's digest included; malformed maps are
 * refused and leave the caller's map untouched; maproute_build follows
 * PROMOTE (owner and epoch) and refuses a map not bootstrapped yet. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "clustermap.h"
#include "maproute.h"
#include "mem.h"
#include "metacmd.h"
#include "metamap.h"

static void three_nodes(clustermap *cm)
{
    char err[128];
    *cm = (clustermap){.epoch = 3};
    assert_int_equal(clustermap_add(cm, "node1", "tcp://h:1", "tcp://h:2", NULL, err, sizeof(err)), 0);
    assert_int_equal(clustermap_add(cm, "node2", "tcp://h:3", "tcp://h:4", NULL, err, sizeof(err)), 0);
    assert_int_equal(clustermap_add(cm, "node3", "tcp://h:5", "tcp://h:6", NULL, err, sizeof(err)), 0);
}

static void test_static_json_unchanged(void **state)
{
    (void)state;
    clustermap cm;
    three_nodes(&cm);
    shardmap *map = xmalloc(sizeof(*map));
    char err[128];
    assert_int_equal(clustermap_shards(&cm, map, err, sizeof(err)), 0);
    assert_int_equal(map->version, 0);
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        assert_int_equal(shardmap_shard_epoch(map, s), 3);
    char *json = clustermap_json(&cm, map, shardmap_digest(map), "x", "y", "z");
    assert_string_equal(json, "{\"epoch\":3,\"shardCount\":4096,\"nodes\":["
                              "{\"id\":\"node1\",\"request\":\"tcp://h:1\",\"delivery\":\"tcp://h:2\",\"shards\":\"0-1365\"},"
                              "{\"id\":\"node2\",\"request\":\"tcp://h:3\",\"delivery\":\"tcp://h:4\",\"shards\":\"1366-2730\"},"
                              "{\"id\":\"node3\",\"request\":\"tcp://h:5\",\"delivery\":\"tcp://h:6\",\"shards\":\"2731-4095\"}]}");
    /* parsed back: explicit ranges, the same assignment and digest */
    clustermap back = {0};
    shardmap *again = xmalloc(sizeof(*again));
    assert_int_equal(clustermap_parse(&back, json, strlen(json), err, sizeof(err)), 0);
    assert_int_equal(clustermap_shards(&back, again, err, sizeof(err)), 0);
    assert_true(shardmap_digest(again) == shardmap_digest(map));
    assert_true(clustermap_hello_digest(&back, again) == shardmap_digest(map));
    assert_int_equal(again->version, 0);
    xfree(json);
    xfree(again);
    xfree(map);
    clustermap_clear(&back);
    clustermap_clear(&cm);
}

static void test_versioned_round_trip(void **state)
{
    (void)state;
    clustermap cm;
    three_nodes(&cm);
    shardmap *map = xmalloc(sizeof(*map)), *back_map = xmalloc(sizeof(*back_map));
    char err[128];
    assert_int_equal(clustermap_shards(&cm, map, err, sizeof(err)), 0);
    uint64_t hello = shardmap_digest(map);
    map->version = 1369;
    for (uint32_t s = 1366; s <= 2730; s++) { /* node2's primaries moved to node3 */
        map->owner[s] = 2;
        map->shard_epoch[s] = 4;
    }
    map->shard_epoch[7] = 9;
    map->owner[4095] = SHARDMAP_UNOWNED; /* every copy lost */
    map->shard_epoch[4095] = 5;
    char *json = clustermap_json(&cm, map, hello, "x", "y", "z");
    assert_non_null(strstr(json, "\"shards\":\"\"")); /* node2 leads nothing */
    assert_non_null(strstr(json, "\"version\":1369"));
    assert_non_null(strstr(json, "\"shardEpochs\":[[4,\"1366-2730\"],[5,\"4095\"],[9,\"7\"]]"));
    clustermap back = {0};
    assert_int_equal(clustermap_parse(&back, json, strlen(json), err, sizeof(err)), 0);
    assert_int_equal(clustermap_shards(&back, back_map, err, sizeof(err)), 0);
    assert_int_equal(back_map->version, 1369);
    assert_int_equal(back_map->epoch, 3);
    assert_memory_equal(back_map->owner, map->owner, sizeof(map->owner));
    assert_memory_equal(back_map->shard_epoch, map->shard_epoch, sizeof(map->shard_epoch));
    assert_true(clustermap_hello_digest(&back, back_map) == hello);
    uint8_t moved[SHARD_COUNT / 8];
    shardmap *before = xmalloc(sizeof(*before));
    assert_int_equal(clustermap_shards(&cm, before, err, sizeof(err)), 0);
    assert_int_equal(shardmap_moved(before, back_map, moved), 1365 + 1);
    assert_true(shardmap_bit(moved, 1366) && shardmap_bit(moved, 4095) && !shardmap_bit(moved, 7));
    xfree(before);
    xfree(json);
    xfree(map);
    xfree(back_map);
    clustermap_clear(&back);
    clustermap_clear(&cm);
}

static void test_malformed_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"epoch\":1,\"nodes\":[{\"request\":\"a\",\"delivery\":\"b\"}],\"version\":-1}",
        "{\"epoch\":1,\"nodes\":[{\"request\":\"a\",\"delivery\":\"b\"}],\"version\":\"2\"}",
        "{\"epoch\":1,\"nodes\":[{\"request\":\"a\",\"delivery\":\"b\"}],\"version\":2,\"helloDigest\":\"xyz\"}",
        "{\"epoch\":1,\"nodes\":[{\"request\":\"a\",\"delivery\":\"b\"}],\"version\":2,\"helloDigest\":\"0\"}",
        "{\"epoch\":1,\"nodes\":[{\"request\":\"a\",\"delivery\":\"b\"}],\"version\":2,"
        "\"helloDigest\":\"12345678901234567\"}",
        "{\"epoch\":1,\"nodes\":[{\"request\":\"a\",\"delivery\":\"b\"}],\"version\":2,\"shardEpochs\":{}}",
        "{\"epoch\":1,\"nodes\":[{\"request\":\"a\",\"delivery\":\"b\"}],\"version\":2,\"shardEpochs\":[[0,\"1\"]]}",
        "{\"epoch\":1,\"nodes\":[{\"request\":\"a\",\"delivery\":\"b\"}],\"version\":2,\"shardEpochs\":[[2,\"5-2\"]]}",
        "{\"epoch\":1,\"nodes\":[{\"request\":\"a\",\"delivery\":\"b\"}],\"version\":2,\"shardEpochs\":[[2,\"4096\"]]}",
        "{\"epoch\":1,\"nodes\":[{\"request\":\"a\",\"delivery\":\"b\"}],\"version\":2,"
        "\"shardEpochs\":[[2,\"1-3\"],[3,\"3\"]]}", /* a shard given two epochs */
        "{\"epoch\":1,\"nodes\":[{\"request\":\"a\",\"delivery\":\"b\"}],\"version\":2,\"shardEpochs\":[[2]]}",
        "{\"epoch\":1,\"nodes\":[{\"request\":\"a\",\"delivery\":\"b\"}],\"version\":2,\"shardEpochs\":[[2,\"1\",3]]}",
    };
    char err[256];
    clustermap keep;
    three_nodes(&keep);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (clustermap_parse(&keep, bad[i], strlen(bad[i]), err, sizeof(err)) == 0)
            fail_msg("accepted: %s", bad[i]);
        assert_true(err[0] != '\0');
        assert_int_equal(keep.count, 3); /* untouched */
        assert_int_equal(keep.epoch, 3);
    }
    /* more pairs than shards */
    size_t cap = 128 + 4100 * 9;
    char *many = xmalloc(cap);
    size_t n = (size_t)snprintf(many, cap, "{\"epoch\":1,\"nodes\":[{\"request\":\"a\",\"delivery\":\"b\"}],"
                                           "\"version\":2,\"shardEpochs\":[");
    for (int i = 0; i <= (int)SHARD_COUNT; i++)
        n += (size_t)snprintf(many + n, cap - n, "%s[2,\"1\"]", i ? "," : "");
    n += (size_t)snprintf(many + n, cap - n, "]}");
    assert_int_equal(clustermap_parse(&keep, many, n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "at most"));
    xfree(many);
    clustermap_clear(&keep);
}

static void test_maproute_follows_promote(void **state)
{
    (void)state;
    metamap *m = xcalloc(1, sizeof(*m));
    metamap_init(m);
    shardmap *stat = xmalloc(sizeof(*stat)), *route = xmalloc(sizeof(*route));
    assert_int_equal(shardmap_init_even(stat, 3, 3), 0);
    assert_int_equal(maproute_build(m, stat, route), -1); /* nothing assigned yet */
    uint16_t ids[3] = {1, 2, 3};
    m->nmembers = 3;
    for (unsigned i = 0; i < 3; i++) {
        m->members[i].id = ids[i];
        snprintf(m->members[i].name, sizeof(m->members[i].name), "node%u", i + 1);
    }
    assert_int_equal(metamap_spread(ids, 3, 2, 3, NULL, m->shards), 0);
    m->version = 4;
    assert_int_equal(maproute_build(m, stat, route), 0);
    assert_memory_equal(route->owner, stat->owner, sizeof(stat->owner)); /* the bootstrap routes as the static map */
    assert_int_equal(route->version, 4);
    uint32_t s = 2000; /* node2's; node3 is its replica */
    assert_int_equal(route->owner[s], 1);
    meta_cmd c = {.kind = META_PROMOTE, .shard = s, .epoch = 3, .node = 3};
    assert_int_equal(metamap_apply(m, &c), META_OK);
    assert_int_equal(maproute_build(m, stat, route), 0);
    assert_int_equal(route->owner[s], 2);
    assert_int_equal(shardmap_shard_epoch(route, s), 4);
    assert_int_equal(shardmap_shard_epoch(route, s + 1), 3);
    assert_int_equal(route->epoch, 3); /* the configuration's */
    assert_int_equal(route->version, 5);
    m->shards[s].ncopies = 0; /* no primary: unavailable */
    assert_int_equal(maproute_build(m, stat, route), 0);
    assert_int_equal(route->owner[s], SHARDMAP_UNOWNED);
    xfree(stat);
    xfree(route);
    xfree(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_static_json_unchanged),
        cmocka_unit_test(test_versioned_round_trip),
        cmocka_unit_test(test_malformed_refused),
        cmocka_unit_test(test_maproute_follows_promote),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
