/* test_jsonpath.c - deepstream path semantics (expected results produced by the
 * official client's json-path.setValue), malformed paths, the validating JSON
 * scanner, one dialect for both (what JSON.stringify writes is accepted and
 * kept byte for byte, the rest refused by both), and patches whose cost the
 * record size limit bounds. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

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
    /* the document's text is kept as it was: escapes, number text, spacing */
    {"{\"s\":\"\\u00e9\\n\"}", "t", "\"\xc3\xa9\"", "{\"s\":\"\\u00e9\\n\",\"t\":\"\xc3\xa9\"}"},
    {"{\"id\":18446744073709552000}", "name", "\"x\"", "{\"id\":18446744073709552000,\"name\":\"x\"}"},
    {"{\"a\":0.1,\"b\":1.0,\"c\":1E5,\"d\":-0}", "e", "1e+21", "{\"a\":0.1,\"b\":1.0,\"c\":1E5,\"d\":-0,\"e\":1e+21}"},
    {"{\"s\":\"\\u0000\",\"l\":\"\\ud800\"}", "l", "\"\\udfff\"", "{\"s\":\"\\u0000\",\"l\":\"\\udfff\"}"},
    {"{ \"a\" : [ 1 , 2 ] }", "a[3]", " 9 ", "{ \"a\" : [ 1 , 2 ,null,9] }"},
    {"{ \"a\" : { } }", "a.b", "[ 1, 2 ]", "{ \"a\" : { \"b\":[ 1, 2 ]} }"},
    /* keys match by their decoded text; new keys are escaped as JSON.stringify does */
    {"{\"caf\\u00e9\":1}", "caf\xc3\xa9", "2", "{\"caf\\u00e9\":2}"},
    {"{\"\\ud83d\\ude00\":1,\"\\/\":2}", "\xf0\x9f\x98\x80", "3", "{\"\\ud83d\\ude00\":3,\"\\/\":2}"},
    {"{\"\\/\":2}", "/", NULL, "{}"},
    {"{\"\\ud800\":1,\"\\ud83d\\ude00\":2}", "\xf0\x9f\x98\x80", NULL, "{\"\\ud800\":1}"},
    {"{}", "q\"\\x\ty", "1", "{\"q\\\"\\\\x\\ty\":1}"},
    {"{}", "c\x01", "1", "{\"c\\u0001\":1}"},
    /* duplicate keys: the last counts (JSON.parse), erasing removes all */
    {"{\"a\":{\"x\":1},\"b\":2,\"a\":{\"y\":1}}", "a.z", "3", "{\"a\":{\"x\":1},\"b\":2,\"a\":{\"y\":1,\"z\":3}}"},
    {"{\"a\":1,\"b\":2,\"a\":3}", "a", NULL, "{\"b\":2}"},
    /* erasing through missing parts creates them, as deepstream does */
    {"{}", "a.b", NULL, "{\"a\":{}}"},
    {"{}", "a[2]", NULL, "{\"a\":[null,null]}"},
    {"{\"a\":[[1],{\"b\":1}]}", "a[0]", NULL, "{\"a\":[null,{\"b\":1}]}"},
    {"{}", "a[0]", "1", "{\"a\":[1]}"},
    {"{\"a\":[]}", "a[2]", "1", "{\"a\":[null,null,1]}"},
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
        if (json_check(out, len) != JSON_KIND_OBJECT)
            fail_msg("case %zu: json_check refuses the result %s", i, out);
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
    expect_fail("{}", "caf\xe9", "1", "UTF-8");               /* Latin-1, not UTF-8 */
    expect_fail("{}", "a.\xed\xa0\x80", "1", "UTF-8");       /* an encoded surrogate */
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

/* A path of parts keys (a.a.a...) or a value nested brackets deep. */
static char *repeat(const char *first, const char *each, const char *last, int times)
{
    size_t n = strlen(first) + strlen(each) * (size_t)times + strlen(last) + 1;
    char *s = xmalloc(n);
    strcpy(s, first);
    for (int i = 0; i < times; i++)
        strcat(s, each);
    strcat(s, last);
    return s;
}

/* Whatever the engine builds, json_check accepts: no record can get deeper
 * than the scanner reads. */
static void test_depth(void **state)
{
    (void)state;
    char *out = NULL;
    size_t len;
    const char *why = NULL;
    char *path = repeat("a", ".a", "", 127); /* 128 parts: the value sits at level 128 */
    assert_int_equal(jsonpath_apply("{}", 2, path, "1", 1, &out, &len, &why), 0);
    assert_int_equal(json_check(out, len), JSON_KIND_OBJECT);
    xfree(out);
    xfree(path);
    path = repeat("a", ".a", "", 128);
    expect_fail("{}", path, "1", "nest too deep");
    xfree(path);
    path = repeat("a", "[0]", "", 128);
    expect_fail("{}", path, "1", "nest too deep");
    xfree(path);
    /* erasing creates the missing containers: the last one empty, or holding nulls */
    struct { const char *each; int times; bool ok; } erases[] = {
        {".a", 128, true}, {".a", 129, false}, {"[1]", 127, true}, {"[1]", 128, false}, {"[0]", 128, true},
    };
    for (size_t i = 0; i < sizeof(erases) / sizeof(erases[0]); i++) {
        path = repeat("a", erases[i].each, "", erases[i].times);
        int rc = jsonpath_apply("{}", 2, path, NULL, 0, &out, &len, &why);
        if (erases[i].ok) {
            if (rc != 0)
                fail_msg("erasing a%s x %d: %s", erases[i].each, erases[i].times, why);
            assert_int_equal(json_check(out, len), JSON_KIND_OBJECT);
            xfree(out);
        } else
            expect_fail("{}", path, NULL, "nest too deep");
        xfree(path);
    }
    char *open = repeat("", "[", "", 128), *close = repeat("", "]", "", 128);
    char *val = repeat(open, "", close, 0); /* 128 brackets: levels 0..127 */
    assert_int_equal(json_check(val, strlen(val)), JSON_KIND_ARRAY);
    assert_int_equal(jsonpath_apply("{}", 2, "a", val, strlen(val), &out, &len, &why), 0);
    assert_int_equal(json_check(out, len), JSON_KIND_OBJECT);
    xfree(out);
    expect_fail("{}", "a.b", val, "nest too deep");
    expect_fail("{\"a\":{}}", "a.b", val, "nest too deep");
    xfree(val);
    xfree(open);
    xfree(close);
}

/* One dialect: what JSON.stringify writes (node 18), and what JSON.parse reads
 * as the same finite value, is accepted by json_check and by the path engine
 * (as a value, and inside a document that is patched elsewhere) and kept byte
 * for byte; everything else is refused by both. */
static void test_one_dialect(void **state)
{
    (void)state;
    char big[400];
    memset(big, '9', 308);
    big[308] = '\0'; /* 9.99e307: fine */
    const char *accepted[] = {
        "18446744073709552000",            /* JSON.stringify(2**64) */
        "-18446744073709552000", "1e+21", "1.7976931348623157e+308", "-1.7976931348623157e+308",
        "5e-324", "0", "0.1", "1e-7", "123456789012345678901234567890123456789",
        "1.7976931348623158e308",          /* rounds to Number.MAX_VALUE */
        "1e-400", "-0", "1E5", "0.0e999999999999999999999", big,
        "\"\\u0000\"", "\"\\ud800\"", "\"\\udfff\"", "\"a\\udc00b\\ud800\"", "\"\\ud83d\\ude00\"",
        "\"\xf0\x9f\x98\x80\"", "{\"\\ud800\":[1e-7,\"\\u0000\"]}", "[18446744073709552000]",
    };
    char huge[400];
    memset(huge, '0', 310);
    huge[0] = '1';
    huge[310] = '\0'; /* 1e309 written out */
    const char *refused[] = {
        "1e400", "-1e400", "1.8e308", "1.7976931348623159e308", "1e309", "0.1e310", "-1e99999999999999999999999",
        huge, "NaN", "Infinity", "-Infinity", "undefined", "\"\xed\xa0\x80\"", "\"\\u12\"", "\"\xff\"",
        "[1e400]", "{\"a\":1e400}", "{\"\\ud800\":1e999}",
    };
    char doc[1024], want[1024];
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
        const char *x = accepted[i];
        char *out = NULL;
        size_t len;
        const char *why = "";
        if (json_check(x, strlen(x)) == JSON_KIND_INVALID)
            fail_msg("json_check refuses %s", x);
        if (jsonpath_apply("{}", 2, "v", x, strlen(x), &out, &len, &why) != 0)
            fail_msg("setting %s: %s", x, why);
        snprintf(want, sizeof(want), "{\"v\":%s}", x);
        assert_string_equal(out, want);
        xfree(out);
        /* a record holding it can still be patched, and keeps its text */
        snprintf(doc, sizeof(doc), "{\"v\":%s}", x);
        if (jsonpath_apply(doc, strlen(doc), "w", "1", 1, &out, &len, &why) != 0)
            fail_msg("patching a record holding %s: %s", x, why);
        snprintf(want, sizeof(want), "{\"v\":%s,\"w\":1}", x);
        assert_string_equal(out, want);
        xfree(out);
    }
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        const char *x = refused[i];
        if (json_check(x, strlen(x)) != JSON_KIND_INVALID)
            fail_msg("json_check accepts %s", x);
        expect_fail("{}", "v", x, "not valid JSON");
        snprintf(doc, sizeof(doc), "{\"v\":%s}", x);
        if (json_check(doc, strlen(doc)) != JSON_KIND_INVALID)
            fail_msg("json_check accepts %s", doc);
        expect_fail(doc, "w", "1", "not a JSON object");
    }
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long peak_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

#define MIB ((size_t)1 << 20)

/* A path's cost is bounded by the size limit: the 2 KB path of issue 13
 * ('a' + '[100000]' x 255, 127 MB of nulls) is refused before anything is
 * built, without time or memory to speak of. */
static void test_size_limit(void **state)
{
    (void)state;
    char *out = NULL;
    size_t len;
    const char *why = NULL;
    char *bomb = repeat("a", "[100000]", "", 255);
    long peak = peak_kib();
    double t0 = seconds();
    int rc = jsonpath_apply_max("{}", 2, bomb, "1", 1, MIB, &out, &len, &why);
    double took = seconds() - t0;
    assert_int_equal(rc, JSONPATH_TOO_LARGE);
    assert_null(out);
    assert_non_null(strstr(why, "maxSize"));
    if (took > 0.05)
        fail_msg("refusing the path bomb took %.3f s", took);
    if (peak_kib() - peak > 4096)
        fail_msg("refusing the path bomb grew the peak RSS by %ld KiB", peak_kib() - peak);
    xfree(bomb);
    /* three levels (1.5 MB) are too large as well; two (1 MB) fit */
    assert_int_equal(jsonpath_apply_max("{}", 2, "a[100000][100000][100000]", "1", 1, MIB, &out, &len, &why),
                     JSONPATH_TOO_LARGE);
    assert_int_equal(jsonpath_apply_max("{}", 2, "a[100000][100000]", "1", 1, MIB, &out, &len, &why), 0);
    assert_true(len <= MIB);
    assert_int_equal(json_check(out, len), JSON_KIND_OBJECT);
    assert_int_equal(len, 2 + 4 + 2 * (1 + 100000 * 5 + 1) + 1); /* {"a":[null,..,[null,..,1]]} */
    /* the limit is inclusive, for growth of existing arrays and new keys alike */
    size_t exact = len;
    xfree(out);
    assert_int_equal(jsonpath_apply_max("{}", 2, "a[100000][100000]", "1", 1, exact, &out, &len, &why), 0);
    xfree(out);
    assert_int_equal(jsonpath_apply_max("{}", 2, "a[100000][100000]", "1", 1, exact - 1, &out, &len, &why),
                     JSONPATH_TOO_LARGE);
    const char *grown = "{\"a\":[1,null,null,2]}", *added = "{\"a\":1,\"bb\":22}";
    assert_int_equal(jsonpath_apply_max("{\"a\":[1]}", 9, "a[3]", "2", 1, strlen(grown), &out, &len, &why), 0);
    assert_string_equal(out, grown);
    xfree(out);
    assert_int_equal(jsonpath_apply_max("{\"a\":[1]}", 9, "a[3]", "2", 1, strlen(grown) - 1, &out, &len, &why),
                     JSONPATH_TOO_LARGE);
    assert_int_equal(jsonpath_apply_max("{\"a\":1}", 7, "bb", "22", 2, strlen(added), &out, &len, &why), 0);
    assert_string_equal(out, added);
    xfree(out);
    assert_int_equal(jsonpath_apply_max("{\"a\":1}", 7, "bb", "22", 2, strlen(added) - 1, &out, &len, &why),
                     JSONPATH_TOO_LARGE);
    /* shrinking is always fine, even when the record is over the limit already */
    assert_int_equal(jsonpath_apply_max("{\"a\":1,\"b\":2}", 13, "a", NULL, 0, 8, &out, &len, &why), 0);
    assert_string_equal(out, "{\"b\":2}");
    xfree(out);
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

static void append(void *ctx, const char *bytes, size_t n)
{
    strncat(ctx, bytes, n);
}

/* json_write_string: JSON.stringify's escapes, control bytes as \u00XX,
 * UTF-8 as it is; the result is JSON json_check takes. */
static void test_write_string(void **state)
{
    (void)state;
    struct {
        const char *in;
        size_t len;
        const char *out;
    } quoted[] = {
        {"plain", 5, "\"plain\""},
        {"", 0, "\"\""},
        {"a\"b\\c", 5, "\"a\\\"b\\\\c\""},
        {"\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\""},
        {"\x01x\x1f", 3, "\"\\u0001x\\u001f\""},
        {"nul\0in", 6, "\"nul\\u0000in\""},
        {"caf\xc3\xa9", 5, "\"caf\xc3\xa9\""},
    };
    for (size_t i = 0; i < sizeof(quoted) / sizeof(quoted[0]); i++) {
        char out[64] = "";
        json_write_string(quoted[i].in, quoted[i].len, append, out);
        assert_string_equal(out, quoted[i].out);
        assert_int_equal(json_check(out, strlen(out)), JSON_KIND_SCALAR);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_bad_paths),
        cmocka_unit_test(test_json_check),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_one_dialect),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_write_string),
    };
    return cmocka_run_group_tests_name("jsonpath", tests, NULL, NULL);
}
