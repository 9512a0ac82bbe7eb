/* test_jsonpath.c - deepstream path semantics (expected results produced by the
 * official client's json-path.setValue), malformed paths, and the validating
 * JSON scanner. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jsonpath.h"
#include "mem.h"

typedef struct pcase {
    const char *doc, *path, *value, *want;
} pcase;

/* value NULL = erase */
static const pcase cases[] = {
    {"{}", "a", "1", "{\"a\":1}"},
    {"{}", "a.b.c", "\"x\"", "{\"a\":{\"b\":{\"c\":\"x\"}}}"},
    {"{}", "tags[1]", "\"b\"", "{\"tags\":[null,\"b\"]}"},
    {"{\"a\":1}", "a", NULL, "{}"},
    {"{\"a\":{\"b\":1,\"c\":2}}", "a.b", NULL, "{\"a\":{\"c\":2}}"},
    {"{\"a\":[1,2,3]}", "a[1]", NULL, "{\"a\":[1,null,3]}"},
    {"{\"a\":[1,2,3]}", "a[5]", "9", "{\"a\":[1,2,3,null,null,9]}"},
    {"{\"a\":\"str\"}", "a.b", "true", "{\"a\":{\"b\":true}}"},
    {"{\"a\":null}", "a[2].x", "null", "{\"a\":[null,null,{\"x\":null}]}"},
    {"{}", " a . b ", "2", "{\"a\":{\"b\":2}}"},
    {"{}", "a..b", "3", "{\"a\":{\"b\":3}}"},
    {"{\"x\":1}", "x[0]", "\"y\"", "{\"x\":[\"y\"]}"},
    {"{}", "a[0][1]", "7", "{\"a\":[[null,7]]}"},
    {"{\"a\":{\"0\":1}}", "a[0]", "2", "{\"a\":{\"0\":2}}"},
    {"{\"a\":[{\"b\":1}]}", "a[0].b", "{\"c\":[1,{\"d\":null}]}",
     "{\"a\":[{\"b\":{\"c\":[1,{\"d\":null}]}}]}"},
    {"{\"a\":1}", "b", NULL, "{\"a\":1}"},
    {"{\"a\":[1]}", "a[3]", NULL, "{\"a\":[1]}"},
    {"{\"name\":\"x\",\"age\":1}", "address.city", "\"Berlin\"",
     "{\"name\":\"x\",\"age\":1,\"address\":{\"city\":\"Berlin\"}}"},
    {"{\"s\":\"\\u00e9\\n\"}", "t", "\"\xc3\xa9\"", "{\"s\":\"\xc3\xa9\\n\",\"t\":\"\xc3\xa9\"}"},
};

static void test_paths(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const pcase *c = &cases[i];
        char *out = NULL;
        size_t len;
        const char *why = NULL;
        int rc = jsonpath_apply(c->doc, strlen(c->doc), c->path, c->value,
                                c->value ? strlen(c->value) : 0, &out, &len, &why);
        if (rc != 0)
            fail_msg("case %zu (%s): failed: %s", i, c->path, why);
        if (strcmp(out, c->want) != 0)
            fail_msg("case %zu (%s): got %s want %s", i, c->path, out, c->want);
        assert_int_equal(len, strlen(c->want));
        xfree(out);
    }
}

static void expect_fail(const char *doc, const char *path, const char *value, const char *reason)
{
    char *out = NULL;
    size_t len;
    const char *why = NULL;
    int rc = jsonpath_apply(doc, strlen(doc), path, value, value ? strlen(value) : 0, &out, &len, &why);
    if (rc == 0)
        fail_msg("path '%s' on %s succeeded: %s", path, doc, out);
    assert_null(out);
    if (strstr(why, reason) == NULL)
        fail_msg("path '%s': reason '%s' lacks '%s'", path, why, reason);
}

static void test_bad_paths(void **state)
{
    (void)state;
    expect_fail("{}", "", "1", "empty path");
    expect_fail("{}", " . . ", "1", "empty path");
    expect_fail("{}", "a[x]", "1", "index");
    expect_fail("{}", "a[-1]", "1", "index");
    expect_fail("{}", "a[1x]", "1", "index");
    expect_fail("{}", "a[100001]", "1", "too large");
    expect_fail("{}", "a[99999999999999999999999]", "1", "too large");
    expect_fail("{}", "__proto__.x", "1", "forbidden");
    expect_fail("{}", "a.constructor", "1", "forbidden");
    expect_fail("[1,2]", "[0]", "5", "key on an array");
    expect_fail("{\"a\":[1]}", "a.b", "1", "key on an array");
    expect_fail("{}", "a", "{bad", "not valid JSON");
    expect_fail("{}", "a", "", "not valid JSON");
    expect_fail("\"str\"", "a", "1", "not a JSON object");
    expect_fail("{bad", "a", "1", "not a JSON object");
    char deep[700];
    size_t n = 0;
    for (int i = 0; i < 300; i++) {
        deep[n++] = 'a';
        deep[n++] = '.';
    }
    deep[n++] = 'a';
    deep[n] = '\0';
    expect_fail("{}", deep, "1", "too many parts");
}

static void test_json_check(void **state)
{
    (void)state;
    struct { const char *text; enum json_kind kind; } ok[] = {
        {"{}", JSON_KIND_OBJECT}, {" [ ] ", JSON_KIND_ARRAY}, {"0", JSON_KIND_SCALAR},
        {"-0.5e+10", JSON_KIND_SCALAR}, {"\"a\\u00e9\\\"\"", JSON_KIND_SCALAR},
        {"null", JSON_KIND_SCALAR}, {"true", JSON_KIND_SCALAR},
        {"{\"a\":[1,{\"b\":null}],\"c\":\"\xe2\x82\xac\"}", JSON_KIND_OBJECT},
        {"[1,2,3]", JSON_KIND_ARRAY},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (json_check(ok[i].text, strlen(ok[i].text)) != ok[i].kind)
            fail_msg("json_check(%s) wrong", ok[i].text);
    const char *bad[] = {"", " ", "{", "}", "{bad", "[1,]", "{\"a\"}", "{\"a\":}", "01", "1.",
                         "-", ".5", "1e", "tru", "nul", "\"unterminated", "\"ctl\x01\"",
                         "\"\\x\"", "\"\\u12g4\"", "[1] [2]", "{'a':1}", "\"\xc3\"",
                         "\"\xed\xa0\x80\"", "\"\xc0\x80\"", "NaN", "[1,2", "{\"a\":1,}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (json_check(bad[i], strlen(bad[i])) != JSON_KIND_INVALID)
            fail_msg("json_check accepted %s", bad[i]);
    /* embedded NUL after a valid value */
    assert_int_equal(json_check("{}\0x", 4), JSON_KIND_INVALID);
    /* nesting limit */
    char deep[300];
    memset(deep, '[', 150);
    memset(deep + 150, ']', 150);
    assert_int_equal(json_check(deep, 300), JSON_KIND_INVALID);
    assert_int_equal(json_check(deep + 30, 240), JSON_KIND_ARRAY); /* 120 deep is fine */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_bad_paths),
        cmocka_unit_test(test_json_check),
    };
    return cmocka_run_group_tests_name("jsonpath", tests, NULL, NULL);
}
