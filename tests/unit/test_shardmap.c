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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stable_hash),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_even_map),
        cmocka_unit_test(test_spread),
    };
    return cmocka_run_group_tests_name("shardmap", tests, NULL, NULL);
}
