/* test_shardmap.c - name hashing is stable (golden values: a change would move
 * every stored name to another shard), {tag} names colocate, and the even map
 * covers every shard with every node. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dict.h"
#include "shardmap.h"

static uint32_t shard(const char *s)
{
    return shard_of(s, strlen(s));
}

static void test_stable_hash(void **state)
{
    (void)state;
    /* FNV-1a 64 reference values */
    assert_true(hash_bytes("", 0) == 0xcbf29ce484222325ULL);
    assert_true(hash_bytes("a", 1) == 0xaf63dc4c8601ec8cULL);
    assert_true(hash_bytes("foobar", 6) == 0x85944171f73967e8ULL);
    assert_int_equal(shard("a"), 0xaf63dc4c8601ec8cULL & (SHARD_COUNT - 1));
    assert_int_equal(shard("foobar"), 0x85944171f73967e8ULL & (SHARD_COUNT - 1));
}

static void test_tags(void **state)
{
    (void)state;
    assert_int_equal(shard("{game-7}/board"), shard("{game-7}/players"));
    assert_int_equal(shard("{game-7}/board"), shard("game-7"));
    assert_int_equal(shard("x{game-7}y"), shard("game-7"));
    /* only the first {...} counts */
    assert_int_equal(shard("{a}{b}"), shard("a"));
    /* an empty or unclosed tag hashes the whole name */
    assert_int_equal(shard("{}abc"), (uint32_t)(hash_bytes("{}abc", 5) & (SHARD_COUNT - 1)));
    assert_int_equal(shard("{abc"), (uint32_t)(hash_bytes("{abc", 4) & (SHARD_COUNT - 1)));
    /* different tags usually land apart */
    assert_int_not_equal(shard("{game-7}/board"), shard("{game-8}/board"));
}

static void test_even_map(void **state)
{
    (void)state;
    shardmap m;
    assert_int_equal(shardmap_init_even(&m, 0, 1), -1);
    assert_int_equal(shardmap_init_even(&m, SHARDMAP_MAX_NODES + 1, 1), -1);
    for (unsigned nodes = 1; nodes <= 7; nodes++) {
        assert_int_equal(shardmap_init_even(&m, nodes, 3), 0);
        assert_int_equal(m.epoch, 3);
        unsigned counts[8] = {0};
        for (uint32_t s = 0; s < SHARD_COUNT; s++) {
            assert_true(shardmap_owner(&m, s) < nodes);
            counts[shardmap_owner(&m, s)]++;
        }
        for (unsigned n = 0; n < nodes; n++) {
            assert_true(counts[n] >= SHARD_COUNT / nodes);
            assert_true(counts[n] <= SHARD_COUNT / nodes + 1);
        }
    }
    /* one node owns everything */
    shardmap_init_even(&m, 1, 1);
    assert_int_equal(shardmap_owner(&m, shard("anything")), 0);
}

static void test_spread(void **state)
{
    (void)state;
    /* 40960 names over 4096 shards: no shard wildly overloaded */
    static unsigned counts[SHARD_COUNT];
    char name[32];
    for (int i = 0; i < 40960; i++) {
        int n = snprintf(name, sizeof(name), "record/%d", i);
        counts[shard_of(name, (size_t)n)]++;
    }
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        assert_true(counts[s] < 40);
}

static void test_explicit_map(void **state)
{
    (void)state;
    shardmap m;
    char err[200], out[256];
    shardmap_init_empty(&m, 2, 3);
    assert_int_equal(shardmap_first_unowned(&m), 0);
    assert_int_equal(shardmap_assign(&m, 0, "0-99, 4000-4095", err, sizeof(err)), 0);
    assert_int_equal(shardmap_first_unowned(&m), 100);
    assert_int_equal(shardmap_assign(&m, 1, "100-3998,3999", err, sizeof(err)), 0);
    assert_int_equal(shardmap_first_unowned(&m), -1);
    assert_int_equal(shardmap_owner(&m, 99), 0);
    assert_int_equal(shardmap_owner(&m, 100), 1);
    assert_int_equal(shardmap_owner(&m, 4000), 0);
    shardmap_format(&m, 0, out, sizeof(out));
    assert_string_equal(out, "0-99,4000-4095");
    shardmap_format(&m, 1, out, sizeof(out));
    assert_string_equal(out, "100-3999");
    /* overlaps and bad syntax are refused with the shard named */
    assert_int_equal(shardmap_assign(&m, 1, "50", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "shard 50 is assigned twice"));
    assert_int_equal(shardmap_assign(&m, 1, "7-3", err, sizeof(err)), -1);
    assert_int_equal(shardmap_assign(&m, 1, "1-", err, sizeof(err)), -1);
    assert_int_equal(shardmap_assign(&m, 1, "4096", err, sizeof(err)), -1);
    assert_int_equal(shardmap_assign(&m, 1, "-1", err, sizeof(err)), -1);
    assert_int_equal(shardmap_assign(&m, 1, "1;2", err, sizeof(err)), -1);
    /* a formatted map assigns back to the same map; the digest tells maps apart */
    shardmap back;
    shardmap_init_empty(&back, 2, 3);
    shardmap_format(&m, 0, out, sizeof(out));
    assert_int_equal(shardmap_assign(&back, 0, out, err, sizeof(err)), 0);
    shardmap_format(&m, 1, out, sizeof(out));
    assert_int_equal(shardmap_assign(&back, 1, out, err, sizeof(err)), 0);
    assert_true(shardmap_digest(&back) == shardmap_digest(&m));
    shardmap even;
    shardmap_init_even(&even, 2, 3);
    assert_true(shardmap_digest(&even) != shardmap_digest(&m));
    /* a tiny buffer truncates with "..." and never overflows */
    char tiny[8];
    shardmap_format(&m, 0, tiny, sizeof(tiny));
    assert_true(strlen(tiny) < sizeof(tiny));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stable_hash),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_even_map),
        cmocka_unit_test(test_spread),
        cmocka_unit_test(test_explicit_map),
    };
    return cmocka_run_group_tests_name("shardmap", tests, NULL, NULL);
}
