/* test_jsonspan.c - the span index of common/jsonspan.h: every JSON type as
 * a token with its text, members and elements in order, escapes decoded in
 * keys and strings (pairs, lone surrogates, \u0000), the last of duplicate
 * keys, numbers kept as text and read as integers only when they are ones,
 * compact copies, and every bound: nesting, index depth, token count,
 * truncated and malformed input with JSON.parse's words. The scanner's
 * language itself is json_check's (test_jsonpath.c, fuzz_json). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "jsonspan.h"
#include "mem.h"

static jspan doc;

static enum jspan_status parse(const char *text, int max_depth, int index_depth)
{
    return jspan_parse(&doc, text, strlen(text), max_depth, index_depth);
}

/* The compact text of token t (a static buffer). */
static const char *text_of(uint32_t t)
{
    static char buf[512];
    assert_true(jspan_at(&doc, t)->len < sizeof(buf));
    jspan_compact(&doc, t, buf);
    return buf;
}

static const char *describe(void)
{
    static char buf[128];
    jspan_describe(&doc, buf, sizeof(buf));
    return buf;
}

static void test_every_type(void **state)
{
    (void)state;
    const char *text = " {\"o\":{\"k\":1},\"a\":[1,\"s\"],\"s\":\"x\",\"n\":-1.5e3,\"t\":true,\"f\":false,\"z\":null} ";
    assert_int_equal(parse(text, 16, 16), JSPAN_OK);
    assert_int_equal(jspan_at(&doc, 0)->type, JSPAN_OBJECT);
    assert_int_equal(jspan_at(&doc, 0)->count, 7);
    assert_int_equal(jspan_at(&doc, 0)->start, 1); /* without the whitespace around it */
    assert_int_equal(jspan_at(&doc, 0)->next, doc.n);
    static const struct {
        const char *key;
        uint8_t type;
        const char *text;
    } want[] = {{"o", JSPAN_OBJECT, "{\"k\":1}"}, {"a", JSPAN_ARRAY, "[1,\"s\"]"}, {"s", JSPAN_STRING, "\"x\""},
                {"n", JSPAN_NUMBER, "-1.5e3"},    {"t", JSPAN_TRUE, "true"},      {"f", JSPAN_FALSE, "false"},
                {"z", JSPAN_NULL, "null"}};
    uint32_t k = jspan_first(&doc, 0);
    for (size_t i = 0; i < 7; i++, k = jspan_next_key(&doc, k)) {
        assert_true(jspan_eq(&doc, k, want[i].key, 1));
        assert_int_equal(jspan_at(&doc, k + 1)->type, want[i].type);
        assert_string_equal(text_of(k + 1), want[i].text);
        assert_int_equal(jspan_get(&doc, 0, want[i].key), k + 1);
    }
    assert_int_equal(k, doc.n); /* past the last member */
    uint32_t a = jspan_get(&doc, 0, "a");
    assert_int_equal(jspan_at(&doc, a)->count, 2);
    uint32_t e = jspan_first(&doc, a);
    assert_int_equal(jspan_at(&doc, e)->type, JSPAN_NUMBER);
    e = jspan_next_element(&doc, e);
    assert_int_equal(jspan_at(&doc, e)->type, JSPAN_STRING);
    assert_int_equal(jspan_get(&doc, 0, "missing"), JSPAN_NONE);
    assert_int_equal(jspan_get(&doc, a, "a"), JSPAN_NONE); /* not an object */
    /* scalars and empty containers at the root */
    assert_int_equal(parse("\"only\"", 4, 4), JSPAN_OK);
    assert_int_equal(jspan_at(&doc, 0)->type, JSPAN_STRING);
    assert_int_equal(parse("[]", 4, 4), JSPAN_OK);
    assert_int_equal(jspan_first(&doc, 0), JSPAN_NONE);
    assert_int_equal(parse("{ }", 4, 4), JSPAN_OK);
    assert_int_equal(jspan_at(&doc, 0)->count, 0);
}

static void test_escapes(void **state)
{
    (void)state;
    /* a key with escapes matches its decoded name; names decode fully */
    assert_int_equal(parse("{\"\\u0074op\\u0069c\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\",\"k\\u00e9y\":\"\\ud83d\\ude00\"}", 4, 4),
                     JSPAN_OK);
    uint32_t v = jspan_get(&doc, 0, "topic");
    assert_int_not_equal(v, JSPAN_NONE);
    assert_true(jspan_at(&doc, v)->flags & JSPAN_ESCAPED);
    char buf[64];
    assert_int_equal(jspan_string(&doc, v, buf, sizeof(buf)), 12);
    assert_string_equal(buf, "a\"b\\c/d\b\f\n\r\t");
    assert_true(jspan_eq(&doc, v, "a\"b\\c/d\b\f\n\r\t", 12));
    assert_false(jspan_eq(&doc, v, "a\"b\\c/d\b\f\n\r", 11));
    v = jspan_get(&doc, 0, "k\xc3\xa9y");
    assert_int_not_equal(v, JSPAN_NONE);
    assert_int_equal(jspan_string(&doc, v, buf, sizeof(buf)), 4);
    assert_string_equal(buf, "\xf0\x9f\x98\x80"); /* the pair as one character */
    /* \u0000 is a NUL byte; a lone surrogate is U+FFFD */
    assert_int_equal(parse("[\"a\\u0000b\",\"\\ud800x\",\"\\udc00\"]", 4, 4), JSPAN_OK);
    uint32_t e = jspan_first(&doc, 0);
    assert_int_equal(jspan_string(&doc, e, buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "a\0b", 4);
    assert_true(jspan_eq(&doc, e, "a\0b", 3));
    e = jspan_next_element(&doc, e);
    assert_int_equal(jspan_string(&doc, e, buf, sizeof(buf)), 4);
    assert_string_equal(buf, "\xef\xbf\xbdx");
    e = jspan_next_element(&doc, e);
    assert_int_equal(jspan_string(&doc, e, buf, sizeof(buf)), 3);
    assert_string_equal(buf, "\xef\xbf\xbd");
    /* a string longer than the buffer: what fits, and the whole length */
    assert_int_equal(parse("\"abc\\u00e9def\"", 4, 4), JSPAN_OK);
    assert_int_equal(jspan_string(&doc, 0, buf, 4), 8);
    assert_string_equal(buf, "abc");
    assert_int_equal(jspan_string(&doc, 0, buf, 1), 8);
    assert_string_equal(buf, "");
    assert_int_equal(parse("\"plain text\"", 4, 4), JSPAN_OK);
    assert_false(jspan_at(&doc, 0)->flags & JSPAN_ESCAPED);
    assert_int_equal(jspan_string(&doc, 0, buf, 6), 10);
    assert_string_equal(buf, "plain");
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    /* JSON.parse: the last one counts */
    assert_int_equal(parse("{\"a\":1,\"b\":2,\"a\":3,\"\\u0061\":4}", 4, 4), JSPAN_OK);
    assert_int_equal(jspan_at(&doc, 0)->count, 4); /* every member has its token */
    assert_string_equal(text_of(jspan_get(&doc, 0, "a")), "4");
    assert_string_equal(text_of(jspan_get(&doc, 0, "b")), "2");
}

static void test_numbers(void **state)
{
    (void)state;
    assert_int_equal(parse("[18446744073709551616,9223372036854775807,-9223372036854775808,9223372036854775808,"
                           "-0,1.0,1e2,0.10,-12]", 4, 4), JSPAN_OK);
    static const char *const texts[] = {"18446744073709551616", "9223372036854775807", "-9223372036854775808",
                                        "9223372036854775808", "-0", "1.0", "1e2", "0.10", "-12"};
    static const bool is_int[] = {false, true, true, false, true, false, false, false, true};
    static const int64_t values[] = {0, INT64_MAX, INT64_MIN, 0, 0, 0, 0, 0, -12};
    uint32_t e = jspan_first(&doc, 0);
    for (size_t i = 0; i < 9; i++, e = jspan_next_element(&doc, e)) {
        assert_string_equal(text_of(e), texts[i]); /* the text as sent */
        int64_t v = 99;
        assert_int_equal(jspan_int(&doc, e, &v), is_int[i]);
        if (is_int[i])
            assert_true(v == values[i]);
    }
    assert_int_equal(parse("\"1\"", 4, 4), JSPAN_OK);
    int64_t v;
    assert_false(jspan_int(&doc, 0, &v));
    /* the dialect's bound: a finite double */
    assert_int_equal(parse("[1e400]", 4, 4), JSPAN_SYNTAX);
}

static void test_compact(void **state)
{
    (void)state;
    assert_int_equal(parse("{ \"a\" : [ 1 , { \"b c\" : \" x \\\" y \" } ] ,\n\t\"d\":\r null }", 4, 1), JSPAN_OK);
    assert_string_equal(text_of(0), "{\"a\":[1,{\"b c\":\" x \\\" y \"}],\"d\":null}");
    char *t = jspan_text(&doc, jspan_get(&doc, 0, "a"));
    assert_string_equal(t, "[1,{\"b c\":\" x \\\" y \"}]");
    xfree(t);
}

static void test_depth(void **state)
{
    (void)state;
    /* index_depth: deeper values are text in their parent's span */
    assert_int_equal(parse("{\"a\":{\"b\":{\"c\":1}},\"d\":[[2]]}", 8, 1), JSPAN_OK);
    assert_int_equal(doc.n, 5); /* the root, two keys, two opaque values */
    uint32_t a = jspan_get(&doc, 0, "a"), d = jspan_get(&doc, 0, "d");
    assert_true(jspan_at(&doc, a)->flags & JSPAN_OPAQUE);
    assert_int_equal(jspan_first(&doc, a), JSPAN_NONE);
    assert_string_equal(text_of(a), "{\"b\":{\"c\":1}}");
    assert_string_equal(text_of(d), "[[2]]");
    assert_int_equal(jspan_at(&doc, a)->next, d - 1);
    assert_int_equal(parse("[1]", 8, 0), JSPAN_OK);
    assert_int_equal(doc.n, 1);
    /* max_depth: the root is level 0 */
    assert_int_equal(parse("[[[1]]]", 3, 8), JSPAN_OK);
    assert_int_equal(parse("[[[1]]]", 2, 8), JSPAN_TOO_DEEP);
    assert_int_equal(doc.n, 0);
    assert_string_equal(describe(), "JSON nested too deep at position 3");
    assert_int_equal(parse("[[[]]]", 2, 8), JSPAN_OK);
}

static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        enum jspan_status status;
        const char *why;
    } cases[] = {
        {"", JSPAN_END, "Unexpected end of JSON input"},
        {"   ", JSPAN_END, "Unexpected end of JSON input"},
        {"{\"body\":[1,", JSPAN_END, "Unexpected end of JSON input"},
        {"{\"body\":\"abc", JSPAN_END, "Unexpected end of JSON input"},
        {"{\"a\":1", JSPAN_END, "Unexpected end of JSON input"},
        {"not json", JSPAN_SYNTAX, "Unexpected token n in JSON at position 0"},
        {"{\"a\":1}x", JSPAN_SYNTAX, "Unexpected token x in JSON at position 7"},
        {"{\"a\" 1}", JSPAN_SYNTAX, "Unexpected token 1 in JSON at position 5"},
        {"{a:1}", JSPAN_SYNTAX, "Unexpected token a in JSON at position 1"},
        {"[1,]", JSPAN_SYNTAX, "Unexpected token ] in JSON at position 3"},
        {"[01]", JSPAN_SYNTAX, "Unexpected token 1 in JSON at position 2"},
        {"[\"a\tb\"]", JSPAN_SYNTAX, "Unexpected byte 0x09 in JSON at position 3"},
        {"[\"\xff\"]", JSPAN_SYNTAX, "Unexpected byte 0xff in JSON at position 2"},
        {"[NaN]", JSPAN_SYNTAX, "Unexpected token N in JSON at position 1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(parse(cases[i].text, 8, 8), cases[i].status);
        assert_int_equal(doc.status, cases[i].status);
        assert_int_equal(doc.n, 0);
        assert_string_equal(describe(), cases[i].why);
    }
}

static void test_token_bound(void **state)
{
    (void)state;
    jspan small;
    jspan_init(&small, 4);
    assert_int_equal(jspan_parse(&small, "[1,2,3]", 7, 8, 8), JSPAN_OK);
    assert_int_equal(small.n, 4);
    assert_int_equal(jspan_parse(&small, "[1,2,3,4]", 9, 8, 8), JSPAN_TOO_MANY);
    assert_int_equal(small.n, 0);
    char why[64];
    jspan_describe(&small, why, sizeof(why));
    assert_string_equal(why, "JSON holds more than 4 values");
    assert_true(small.cap <= 4);
    /* the same text fits when the deeper values have no tokens */
    assert_int_equal(jspan_parse(&small, "[[1,2,3,4]]", 11, 8, 1), JSPAN_OK);
    /* an index is reused: a second parse replaces the first */
    assert_int_equal(jspan_parse(&small, "{\"k\":true}", 10, 8, 8), JSPAN_OK);
    assert_int_equal(small.n, 3);
    jspan_free(&small);
    jspan_free(&small);
    jspan_free(NULL);
    /* growth past the first allocation */
    jspan big;
    jspan_init(&big, 1u << 20);
    char text[4096];
    size_t n = 0;
    text[n++] = '[';
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "%s1", i ? "," : "");
    text[n++] = ']';
    assert_int_equal(jspan_parse(&big, text, n, 8, 8), JSPAN_OK);
    assert_int_equal(jspan_at(&big, 0)->count, 1000);
    assert_int_equal(big.n, 1001);
    jspan_free(&big);
}

static int setup(void **state)
{
    (void)state;
    jspan_init(&doc, 4096);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    jspan_free(&doc);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type),     cmocka_unit_test(test_escapes),  cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_numbers),        cmocka_unit_test(test_compact),  cmocka_unit_test(test_depth),
        cmocka_unit_test(test_refusals),       cmocka_unit_test(test_token_bound),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
