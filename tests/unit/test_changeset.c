/* test_changeset.c - a changeset's JSON form (common/changeset.c: every bound
 * and mistake refused with its reason before anything is kept, the shard and
 * duplicate check) and its member operations on the wire (op_members in
 * common/ops.c: round trip; truncated or lying input refused). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "changeset.h"
#include "ops.h"
#include "shardmap.h"

/* Parses text; returns cs_parse's result, the items and their count, the reason in why. */
static int parse(const char *text, size_t max, cs_item **items, size_t *n, char *why)
{
    return cs_parse(text, strlen(text), max, 64, items, n, why, 512);
}

static void test_parse_valid(void **state)
{
    (void)state;
    cs_item *it;
    size_t n;
    char why[512];
    assert_int_equal(parse("[{\"op\":\"set\",\"name\":\"{c}/a\",\"data\":{\"n\":1.5},\"version\":3},"
                           "{\"op\":\"set\",\"name\":\"{c}/b\",\"path\":\"x.y[2]\",\"data\":\"s\"},"
                           "{\"op\":\"erase\",\"name\":\"{c}/c\",\"path\":\"old\",\"version\":-1},"
                           "{\"op\":\"delete\",\"name\":\"{c}/d\",\"version\":null}]",
                           10, &it, &n, why), 0);
    assert_int_equal(n, 4);
    assert_int_equal(it[0].op, CS_SET);
    assert_string_equal(it[0].name, "{c}/a");
    assert_null(it[0].path);
    assert_string_equal(it[0].data, "{\"n\":1.5}");
    assert_int_equal(it[0].version, 3);
    assert_string_equal(it[1].path, "x.y[2]");
    assert_string_equal(it[1].data, "\"s\"");
    assert_int_equal(it[1].version, -1);
    assert_int_equal(it[2].op, CS_ERASE);
    assert_null(it[2].data);
    assert_int_equal(it[3].op, CS_DELETE);
    assert_int_equal(it[3].version, -1);
    assert_int_equal(cs_check_shard(it, n, why, sizeof(why)), -1);
    cs_items_free(it, n);
    cs_items_free(NULL, 0);
}

static void test_parse_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *text, *why;
    } cases[] = {
        {"{}", "a changeset is a non-empty array of operations"},
        {"[{\"op\":", "a changeset is not JSON: Unexpected end of JSON input"},
        {"[]", "a changeset is a non-empty array of operations"},
        {"[1]", "operation 0 is not an object"},
        {"[{\"op\":\"put\",\"name\":\"a\"}]", "operation 0: \"op\" must be \"set\", \"erase\" or \"delete\""},
        {"[{\"op\":\"set\",\"data\":{}}]", "operation 0: \"name\" is required"},
        {"[{\"op\":\"set\",\"name\":\"\",\"data\":{}}]",
         "operation 0: \"name\" must be a non-empty string of at most 64 bytes"},
        {"[{\"op\":\"set\",\"name\":7,\"data\":{}}]",
         "operation 0: \"name\" must be a non-empty string of at most 64 bytes"},
        {"[{\"op\":\"set\",\"name\":\"0123456789012345678901234567890123456789012345678901234567890123456789\","
         "\"data\":{}}]",
         "operation 0: \"name\" must be a non-empty string of at most 64 bytes"},
        {"[{\"op\":\"set\",\"name\":\"a\\u0000b\",\"data\":{}}]",
         "operation 0: \"name\" must be a non-empty string of at most 64 bytes"},
        {"[{\"op\":\"set\",\"name\":\"a\"}]", "operation 0: set needs \"data\""},
        {"[{\"op\":\"set\",\"name\":\"a\",\"data\":3}]",
         "operation 0: a set without \"path\" needs an object or array as \"data\""},
        {"[{\"op\":\"erase\",\"name\":\"a\"}]", "operation 0: erase needs a \"path\""},
        {"[{\"op\":\"delete\",\"name\":\"a\",\"path\":\"x\"}]", "operation 0: unknown property \"path\" for \"delete\""},
        {"[{\"op\":\"erase\",\"name\":\"a\",\"path\":\"x\",\"data\":1}]",
         "operation 0: unknown property \"data\" for \"erase\""},
        {"[{\"op\":\"set\",\"name\":\"a\",\"data\":{},\"version\":-2}]",
         "operation 0: \"version\" must be an integer, -1 or more"},
        {"[{\"op\":\"set\",\"name\":\"a\",\"data\":{},\"version\":\"1\"}]",
         "operation 0: \"version\" must be an integer, -1 or more"},
        {"[{\"op\":\"delete\",\"name\":\"a\"},{\"op\":\"delete\",\"name\":\"b\"},{\"op\":\"delete\",\"name\":\"c\"}]",
         "a changeset holds at most 2 operations, not 3"},
        {"[{\"op\":\"delete\",\"name\":\"a\"},{\"op\":\"set\",\"name\":\"b\",\"data\":[],\"path\":\"\"}]",
         "operation 1: \"path\" must be a non-empty string of at most 64 bytes"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cs_item *it = (cs_item *)1;
        size_t n = 99;
        char why[512] = "";
        assert_int_equal(parse(cases[i].text, 2, &it, &n, why), -1);
        assert_string_equal(why, cases[i].why);
        assert_null(it);
        assert_int_equal(n, 0);
    }
}

static void test_shard_check(void **state)
{
    (void)state;
    cs_item *it;
    size_t n;
    char why[512];
    assert_int_equal(parse("[{\"op\":\"delete\",\"name\":\"{t}/a\"},{\"op\":\"delete\",\"name\":\"{t}/b\"},"
                           "{\"op\":\"delete\",\"name\":\"{u}/c\"}]", 10, &it, &n, why), 0);
    assert_int_equal(cs_check_shard(it, n, why, sizeof(why)), 2);
    char want[512];
    snprintf(want, sizeof(want), "CROSSSHARD: \"{t}/a\" is in shard %u, \"{u}/c\" is in shard %u",
             shard_of("t", 1), shard_of("u", 1));
    assert_string_equal(why, want);
    cs_items_free(it, n);
    assert_int_equal(parse("[{\"op\":\"delete\",\"name\":\"{t}/a\"},{\"op\":\"delete\",\"name\":\"{t}/a\"}]", 10, &it, &n,
                           why), 0);
    assert_int_equal(cs_check_shard(it, n, why, sizeof(why)), 1);
    assert_string_equal(why, "record \"{t}/a\" appears twice (one operation per record)");
    cs_items_free(it, n);
}

static void test_members_round_trip(void **state)
{
    (void)state;
    op in[3] = {
        {.kind = OP_RECORD_WRITE, .name = {"{c}/a", 5}, .action = 7, .has_version = true, .version = 4,
         .has_data = true, .data = {"{\"n\":1}", 7}},
        {.kind = OP_RECORD_WRITE, .name = {"{c}/b", 5}, .path = {"x.y", 3}, .has_version = true, .version = -1},
        {.kind = OP_RECORD_DELETE, .name = {"{c}/c", 5}, .flags = OP_FLAG_CHECK, .user = {"alice", 5}},
    };
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    op_members_encode(&buf, in, 3);
    mp_reader r;
    uint32_t count;
    assert_int_equal(op_members_open(&r, (strview){buf.data, (uint32_t)buf.size}, &count), 0);
    assert_int_equal(count, 3);
    for (uint32_t i = 0; i < count; i++) {
        op o;
        assert_int_equal(op_decode(&r, &o), 0);
        assert_int_equal(o.kind, in[i].kind);
        assert_int_equal(o.name.len, in[i].name.len);
        assert_memory_equal(o.name.ptr, in[i].name.ptr, o.name.len);
        assert_int_equal(o.version, in[i].version);
        assert_int_equal(o.has_data, in[i].has_data);
        assert_int_equal(o.path.len, in[i].path.len);
        assert_int_equal(o.flags, in[i].flags);
    }
    assert_int_equal(mp_remaining(&r), 0);
    /* cut anywhere: the count promises more than there is, and decoding fails without reading past the end */
    for (size_t cut = 0; cut < buf.size; cut++) {
        char *copy = malloc(cut ? cut : 1);
        memcpy(copy, buf.data, cut);
        if (op_members_open(&r, (strview){copy, (uint32_t)cut}, &count) == 0) {
            int bad = 0;
            for (uint32_t i = 0; i < count; i++) {
                op o;
                if (op_decode(&r, &o) != 0) {
                    bad = 1;
                    break;
                }
            }
            assert_int_equal(bad, 1);
        }
        free(copy);
    }
    /* not an array at all */
    assert_int_equal(op_members_open(&r, (strview){"\xa3" "abc", 4}, &count), -1);
    msgpack_sbuffer_destroy(&buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_refusals),
        cmocka_unit_test(test_shard_check),
        cmocka_unit_test(test_members_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
