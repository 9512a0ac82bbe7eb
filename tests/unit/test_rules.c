/* test_rules.c - the rule language (common/rules.c, rules_eval.c, jsval.c):
 * every operator, helper and variable with JavaScript's results (checked
 * against node for the corner cases), deepstream's cross-reference runs
 * (NEED_RECORD, then the verdict; nesting cut at maxRuleIterations;
 * oldData's load costing the first run), compile errors with their exact
 * message and column, and the bounds (deep nesting, big rules, big strings,
 * catastrophic regular expressions, deep JSON) refused or cut without a
 * crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "jsval.h"
#include "mem.h"
#include "rules.h"

/* ---- a default input and a record store ---- */

static const char *const scope_vars[] = {"$userId", "$x"};
static const rule_scope full_scope = {.vars = scope_vars, .nvars = 2, .data = true, .old_data = true,
                                      .section = "record", .action = "write"};

#define MAX_RECS 16
typedef struct store {
    const char *name[MAX_RECS];
    const char *json[MAX_RECS]; /* NULL: no such record */
    int n;
    int lookups;
} store;

static int store_get(void *ctx, const char *name, size_t len, const char **json, size_t *json_len)
{
    store *s = ctx;
    s->lookups++;
    for (int i = 0; i < s->n; i++)
        if (strlen(s->name[i]) == len && memcmp(s->name[i], name, len) == 0) {
            *json = s->json[i];
            *json_len = s->json[i] != NULL ? strlen(s->json[i]) : 0;
            return 1;
        }
    return 0;
}

static void store_put(store *s, const char *name, const char *json)
{
    s->name[s->n] = name;
    s->json[s->n++] = json;
}

static const rule_str default_vars[] = {{"alice", 5}, {NULL, 0}};

static const char *default_data = "{\"count\":5,\"s\":\"h\\u00e9llo\",\"arr\":[1,\"a\",null,[2,3]],\"obj\":{},"
                                  "\"n\":null,\"t\":true,\"num\":\"42\",\"pattern\":\"l+\",\"nested\":{\"a\":{\"b\":7}}}";

static rule_input default_input(store *s)
{
    rule_input in = {
        .name = "user/alice", .name_len = 10, .vars = default_vars, .nvars = 2,
        .user_id = "alice", .user_id_len = 5, .authenticated = true,
        .user_data = "{\"role\":\"admin\",\"tags\":[\"a\",\"b\"]}",
        .data = default_data, .old_data = "{\"count\":4,\"owner\":\"alice\"}",
        .now_ms = 1700000000000, .action = 18, .max_iterations = 3,
        .record = store_get, .record_ctx = s,
    };
    in.user_data_len = strlen(in.user_data);
    in.data_len = strlen(in.data);
    in.old_data_len = strlen(in.old_data);
    return in;
}

/* Compiles and runs text: "type:String(value)", "ERROR:why", "NEED:name" or "COMPILE:column:why". */
static char out[8192];

static const char *run_in(const char *text, const rule_scope *scope, const rule_input *in)
{
    char err[256], need[256], why[256];
    size_t col;
    rule *r = rule_compile(text, strlen(text), scope, err, sizeof(err), &col);
    if (r == NULL) {
        snprintf(out, sizeof(out), "COMPILE:%zu:%s", col, err);
        return out;
    }
    char show[4096];
    enum rule_outcome o = rule_eval_show(r, in, need, sizeof(need), why, sizeof(why), show, sizeof(show));
    if (o == RULE_NEED_RECORD)
        snprintf(out, sizeof(out), "NEED:%s", need);
    else if (o == RULE_ERROR)
        snprintf(out, sizeof(out), "ERROR:%s", why);
    else {
        snprintf(out, sizeof(out), "%s", show);
        /* the outcome is the value's truthiness */
        bool truthy = !(strcmp(show, "undefined:undefined") == 0 || strcmp(show, "object:null") == 0 ||
                        strcmp(show, "boolean:false") == 0 || strcmp(show, "number:0") == 0 ||
                        strcmp(show, "number:NaN") == 0 || strcmp(show, "string:") == 0);
        if ((o == RULE_TRUE) != truthy)
            fail_msg("'%s' gave %s with outcome %d", text, show, (int)o);
    }
    rule_free(r);
    return out;
}

static const char *run(const char *text)
{
    store s = {0};
    rule_input in = default_input(&s);
    return run_in(text, &full_scope, &in);
}

typedef struct pair {
    const char *rule;
    const char *expect;
} pair;

static void check_pairs(const pair *pairs, size_t n)
{
    int failures = 0;
    for (size_t i = 0; i < n; i++) {
        const char *got = run(pairs[i].rule);
        if (strcmp(got, pairs[i].expect) != 0) {
            print_error("  %s\n    expected %s\n    got      %s\n", pairs[i].rule, pairs[i].expect, got);
            failures++;
        }
    }
    if (failures)
        fail_msg("%d of %zu rules gave another result", failures, n);
}
#define CHECK(pairs) check_pairs(pairs, sizeof(pairs) / sizeof(pairs[0]))

/* ---- values and operators ---- */

static void test_literals_and_numbers(void **state)
{
    (void)state;
    static const pair p[] = {
        {"1", "number:1"}, {"1.5", "number:1.5"}, {".5", "number:0.5"}, {"5.", "number:5"},
        {"1e3", "number:1000"}, {"1E-3", "number:0.001"}, {"0x1F", "number:31"}, {"0o17", "number:15"},
        {"0b101", "number:5"}, {"017", "number:15"}, {"019", "number:19"}, {"0", "number:0"},
        {"-0", "number:0"}, {"1e21", "number:1e+21"}, {"1e20", "number:100000000000000000000"},
        {"123e20", "number:1.23e+22"}, {"0.000001", "number:0.000001"}, {"1e-7", "number:1e-7"},
        {"-1e-7", "number:-1e-7"}, {"2e-7", "number:2e-7"}, {"0.1 + 0.2", "number:0.30000000000000004"},
        {"1/3", "number:0.3333333333333333"}, {"2**0", "COMPILE:2:the ** operator is not supported"},
        {"123456789012345680000", "number:123456789012345680000"},
        {"9007199254740993", "number:9007199254740992"}, {"1.7976931348623157e308", "number:1.7976931348623157e+308"},
        {"5e-324", "number:5e-324"}, {"NaN", "number:NaN"}, {"Infinity", "number:Infinity"},
        {"-Infinity", "number:-Infinity"}, {"'a'", "string:a"}, {"\"b\"", "string:b"}, {"''", "string:"},
        {"'it\\'s'", "string:it's"}, {"\"\\\"\"", "string:\""}, {"'\\n'.length", "number:1"},
        {"'\\x41\\u0042\\u{43}'", "string:ABC"}, {"'\\101'", "string:A"}, {"'\\q'", "string:q"},
        {"'a\\\nb'", "string:ab"}, {"'\\uD83D\\uDE00' === '\xf0\x9f\x98\x80'", "boolean:true"},
        {"true", "boolean:true"}, {"false", "boolean:false"}, {"null", "object:null"},
        {"undefined", "undefined:undefined"}, {"[]", "object:"}, {"[1, 'a', [2, 3]]", "object:1,a,2,3"},
        {"[1, 2, ]", "object:1,2"}, {"/a+b/gi", "object:/a+b/gi"},
        {"1 /* comment */ + // to the end\n 2", "number:3"},
        {"1\xc2\xa0+\xe2\x80\xa8" "2\xe3\x80\x80", "number:3"}, /* U+00A0, U+2028, U+3000 are white space */
        {"$userId\xc2\xa0=== 'alice'", "boolean:true"},
    };
    CHECK(p);
}

static void test_arithmetic(void **state)
{
    (void)state;
    static const pair p[] = {
        {"1 + 2 * 3", "number:7"}, {"(1 + 2) * 3", "number:9"}, {"7 - 2 - 1", "number:4"},
        {"12 / 4 / 3", "number:1"}, {"7 % 3", "number:1"}, {"-7 % 2", "number:-1"}, {"7.5 % 2", "number:1.5"},
        {"5 % 0", "number:NaN"}, {"1 / 0", "number:Infinity"}, {"-1 / 0", "number:-Infinity"},
        {"0 / 0", "number:NaN"}, {"'a' + 1", "string:a1"}, {"1 + 'a'", "string:1a"}, {"1 + 2 + 'a'", "string:3a"},
        {"'a' + 1 + 2", "string:a12"}, {"'3' - 1", "number:2"}, {"'3' * '4'", "number:12"},
        {"'a' * 1", "number:NaN"}, {"1 + null", "number:1"}, {"1 + undefined", "number:NaN"},
        {"'1' + null", "string:1null"}, {"'x' + undefined", "string:xundefined"}, {"true + 1", "number:2"},
        {"true + true", "number:2"}, {"[] + []", "string:"}, {"[1,2] + [3]", "string:1,23"},
        {"[] + data.obj", "string:[object Object]"}, {"1 + [2]", "string:12"}, {"100 + ''", "string:100"},
        {"1e21 + ''", "string:1e+21"}, {"0.1 * 3", "number:0.30000000000000004"}, {"-'3'", "number:-3"},
        {"+''", "number:0"}, {"+' 12 '", "number:12"}, {"+'0x10'", "number:16"}, {"+'-0x10'", "number:NaN"},
        {"+'1e3'", "number:1000"}, {"+'12px'", "number:NaN"}, {"+'Infinity'", "number:Infinity"},
        {"+'-Infinity'", "number:-Infinity"}, {"+'inf'", "number:NaN"}, {"+'.5'", "number:0.5"},
        {"+'5.'", "number:5"}, {"+'.'", "number:NaN"}, {"+[]", "number:0"}, {"+[5]", "number:5"},
        {"+[1,2]", "number:NaN"}, {"+true", "number:1"}, {"+null", "number:0"}, {"+undefined", "number:NaN"},
        {"-null", "number:0"}, {"- -1", "number:1"}, {"-(-1)", "number:1"}, {"+'\\u00a0 7 \\u2028'", "number:7"},
        {"data.count * 2", "number:10"}, {"data.num - 2", "number:40"}, {"data.num + 2", "string:422"},
        {"'\\u00e9' + '\\u00e9'", "string:\xc3\xa9\xc3\xa9"},
    };
    CHECK(p);
}

static void test_comparisons(void **state)
{
    (void)state;
    static const pair p[] = {
        {"1 === 1", "boolean:true"}, {"1 === '1'", "boolean:false"}, {"1 == '1'", "boolean:true"},
        {"1 !== '1'", "boolean:true"}, {"1 != '1'", "boolean:false"}, {"null == undefined", "boolean:true"},
        {"null === undefined", "boolean:false"}, {"null == 0", "boolean:false"}, {"undefined == 0", "boolean:false"},
        {"null == false", "boolean:false"}, {"'' == 0", "boolean:true"}, {"'' == false", "boolean:true"},
        {"'0' == false", "boolean:true"}, {"'1' == true", "boolean:true"}, {"'2' == true", "boolean:false"},
        {"[] == 0", "boolean:true"}, {"[0] == false", "boolean:true"}, {"[1] == 1", "boolean:true"},
        {"[1,2] == '1,2'", "boolean:true"}, {"[] == ''", "boolean:true"}, {"[] == []", "boolean:false"},
        {"data.arr == data.arr", "boolean:true"}, {"data.arr === data.arr", "boolean:true"},
        {"data.obj == '[object Object]'", "boolean:true"}, {"data.obj === data.obj", "boolean:true"},
        {"data === oldData", "boolean:false"}, {"NaN == NaN", "boolean:false"}, {"NaN != NaN", "boolean:true"},
        {"NaN === NaN", "boolean:false"}, {"0 === -0", "boolean:true"}, {"'a' == 'a'", "boolean:true"},
        {"'10' < '9'", "boolean:true"}, {"10 < '9'", "boolean:false"}, {"'10' < 9", "boolean:false"},
        {"'abc' < 'abd'", "boolean:true"}, {"'ab' < 'abc'", "boolean:true"}, {"'b' > 'a'", "boolean:true"},
        {"'B' < 'a'", "boolean:true"}, {"'\\uffff' < '\\u{10000}'", "boolean:false"},
        {"'\\ue000' > '\\u{1F600}'", "boolean:true"}, {"null < 1", "boolean:true"}, {"null >= 0", "boolean:true"},
        {"null <= 0", "boolean:true"}, {"null > 0", "boolean:false"}, {"undefined < 1", "boolean:false"},
        {"undefined >= 0", "boolean:false"}, {"NaN <= NaN", "boolean:false"}, {"1 <= 1", "boolean:true"},
        {"2 >= 3", "boolean:false"}, {"'a' < 1", "boolean:false"}, {"'a' >= 1", "boolean:false"},
        {"[2] > 1", "boolean:true"}, {"true > false", "boolean:true"}, {"1/0 > 1e308", "boolean:true"},
        {"data.count > oldData.count", "boolean:true"}, {"data.count >= '5'", "boolean:true"},
        {"data.t == 1", "boolean:true"}, {"data.n == undefined", "boolean:true"}, {"data.n === null", "boolean:true"},
        {"/a/ == '/a/'", "boolean:true"}, {"/a/ === /a/", "boolean:false"},
    };
    CHECK(p);
}

static void test_truthiness_and_logic(void **state)
{
    (void)state;
    static const pair p[] = {
        {"!0", "boolean:true"}, {"!-0", "boolean:true"}, {"!NaN", "boolean:true"}, {"!''", "boolean:true"},
        {"!null", "boolean:true"}, {"!undefined", "boolean:true"}, {"!!'0'", "boolean:true"},
        {"!!' '", "boolean:true"}, {"!![]", "boolean:true"}, {"!!data.obj", "boolean:true"}, {"!!/x/", "boolean:true"},
        {"!!-1", "boolean:true"}, {"!!user", "boolean:true"}, {"'' || 'b'", "string:b"}, {"'a' || 'b'", "string:a"},
        {"'a' && 0", "number:0"}, {"0 && x.y", "COMPILE:6:unknown identifier x"}, {"0 && data.x.y", "number:0"},
        {"1 || data.x.y", "number:1"}, {"null ?? 1", "number:1"}, {"undefined ?? 'x'", "string:x"},
        {"0 ?? 1", "number:0"}, {"'' ?? 1", "string:"}, {"(null || 0) ?? 2", "number:0"},
        {"null ?? (0 || 3)", "number:3"}, {"true ? 1 : 2", "number:1"}, {"0 ? 1 : 2", "number:2"},
        {"1 ? 2 ? 3 : 4 : 5", "number:3"}, {"0 ? 1 : 0 ? 2 : 3", "number:3"}, {"1 ? data.x.y : 2", "ERROR:column 11: TypeError: Cannot read properties of undefined (reading 'y')"},
        {"1 && 2 || 3", "number:2"}, {"0 && 2 || 3", "number:3"}, {"1 || 2 && 0", "number:1"},
        {"!1 == 0", "boolean:true"}, {"typeof 1 + 1", "string:number1"},
    };
    CHECK(p);
}

static void test_typeof(void **state)
{
    (void)state;
    static const pair p[] = {
        {"typeof 1", "string:number"}, {"typeof 'a'", "string:string"}, {"typeof true", "string:boolean"},
        {"typeof null", "string:object"}, {"typeof undefined", "string:undefined"}, {"typeof []", "string:object"},
        {"typeof data", "string:object"}, {"typeof data.arr", "string:object"}, {"typeof /a/", "string:object"},
        {"typeof user", "string:object"}, {"typeof now", "string:number"}, {"typeof name", "string:string"},
        {"typeof $x", "string:undefined"}, {"typeof $userId", "string:string"}, {"typeof data.missing", "string:undefined"},
        {"typeof typeof 1", "string:string"}, {"typeof data.count === 'number'", "boolean:true"},
    };
    CHECK(p);
}

/* ---- what a rule reads ---- */

static void test_variables(void **state)
{
    (void)state;
    static const pair p[] = {
        {"user.id", "string:alice"}, {"user.id === $userId", "boolean:true"}, {"user.isAuthenticated", "boolean:true"},
        {"user.data.role", "string:admin"}, {"user.data.tags[1]", "string:b"}, {"user['id']", "string:alice"},
        {"user['data'].role", "string:admin"}, {"user.foo", "undefined:undefined"}, {"user?.id", "string:alice"},
        {"(user).id", "string:alice"}, {"user + ''", "string:[object Object]"}, {"data.count", "number:5"},
        {"data.s", "string:h\xc3\xa9llo"}, {"data.nested.a.b", "number:7"}, {"data['nested']['a'].b", "number:7"},
        {"data.n", "object:null"}, {"data.missing", "undefined:undefined"}, {"oldData.count", "number:4"},
        {"oldData.owner === user.id", "boolean:true"}, {"now", "number:1700000000000"},
        {"now > 1600000000000", "boolean:true"}, {"name", "string:user/alice"}, {"name === 'user/' + $userId", "boolean:true"},
        {"$userId", "string:alice"}, {"$x", "undefined:undefined"}, {"$x === undefined", "boolean:true"},
        {"$userId.toUpperCase()", "string:ALICE"}, {"action", "number:18"}, {"action === 18", "boolean:true"},
        {"action !== 5 && user.isAuthenticated", "boolean:true"},
    };
    CHECK(p);
    /* unset inputs: no data (event without payload), no record, no serverData, not logged in */
    store s = {0};
    rule_input in = default_input(&s);
    in.data = NULL;
    in.old_data = NULL;
    in.user_data = NULL;
    in.user_id = NULL;
    in.authenticated = false;
    in.nvars = 0;
    assert_string_equal(run_in("data", &full_scope, &in), "undefined:undefined");
    assert_string_equal(run_in("oldData", &full_scope, &in), "object:null");
    assert_string_equal(run_in("user.data", &full_scope, &in), "object:null");
    assert_string_equal(run_in("user.id", &full_scope, &in), "object:null");
    assert_string_equal(run_in("user.isAuthenticated", &full_scope, &in), "boolean:false");
    assert_string_equal(run_in("$userId", &full_scope, &in), "undefined:undefined");
    assert_string_equal(run_in("data.price < 10", &full_scope, &in),
                        "ERROR:column 5: TypeError: Cannot read properties of undefined (reading 'price')");
    assert_string_equal(run_in("oldData.xyz === 'hello'", &full_scope, &in),
                        "ERROR:column 8: TypeError: Cannot read properties of null (reading 'xyz')");
    assert_string_equal(run_in("user.data.role === 'x'", &full_scope, &in),
                        "ERROR:column 10: TypeError: Cannot read properties of null (reading 'role')");
    /* JSON that does not parse: the rule fails, as deepstream's "error when converting message data" */
    in = default_input(&s);
    in.data = "{\"a\":";
    in.data_len = 5;
    assert_string_equal(run_in("data.a === 1", &full_scope, &in),
                        "ERROR:column 1: error when converting message data: data is not valid JSON");
    assert_string_equal(run_in("true || data.a", &full_scope, &in), "boolean:true"); /* not read: not parsed */
    in = default_input(&s);
    in.user_data = "nope";
    in.user_data_len = 4;
    assert_string_equal(run_in("user.data", &full_scope, &in), "ERROR:column 1: user.data is not valid JSON");
    /* scalar JSON documents */
    in = default_input(&s);
    in.data = "15";
    in.data_len = 2;
    assert_string_equal(run_in("data > 10", &full_scope, &in), "boolean:true");
    in.data = "\"x\\u0000y\"";
    in.data_len = strlen(in.data);
    assert_string_equal(run_in("data.length", &full_scope, &in), "number:3");
}

static void test_member_and_index(void **state)
{
    (void)state;
    static const pair p[] = {
        {"data.arr.length", "number:4"}, {"data.arr[0]", "number:1"}, {"data.arr[1]", "string:a"},
        {"data.arr[2]", "object:null"}, {"data.arr[3][1]", "number:3"}, {"data.arr[4]", "undefined:undefined"},
        {"data.arr[-1]", "undefined:undefined"}, {"data.arr[1.5]", "undefined:undefined"},
        {"data.arr['1']", "string:a"}, {"data.arr['01']", "undefined:undefined"}, {"data.arr[0.5 + 0.5]", "string:a"},
        {"data.arr.foo", "undefined:undefined"}, {"'abc'.length", "number:3"}, {"'h\\u00e9llo'.length", "number:5"},
        {"'\\u{1F600}'.length", "number:2"}, {"'abc'[1]", "string:b"}, {"'abc'['2']", "string:c"},
        {"'abc'[5]", "undefined:undefined"}, {"'abc'[-1]", "undefined:undefined"}, {"'a\\u00e9c'[1]", "string:\xc3\xa9"},
        {"'\\u{1F600}'[0] === '\\uD83D'", "boolean:true"}, {"'\\u{1F600}'[1] === '\\uDE00'", "boolean:true"},
        {"'x\\u{1F600}y'[3]", "string:y"}, {"'abc'.foo", "undefined:undefined"}, {"(5).x", "undefined:undefined"},
        {"true.x", "undefined:undefined"}, {"data.obj.length", "undefined:undefined"},
        {"data['obj']", "object:[object Object]"}, {"data[null]", "undefined:undefined"},
        {"data.x.y", "ERROR:column 7: TypeError: Cannot read properties of undefined (reading 'y')"},
        {"data.n.y", "ERROR:column 7: TypeError: Cannot read properties of null (reading 'y')"},
        {"data.n[0]", "ERROR:column 7: TypeError: Cannot read properties of null (reading '0')"},
        {"[1,2,3][1]", "number:2"}, {"[1,2,3].length", "number:3"}, {"[][0]", "undefined:undefined"},
        /* optional chaining */
        {"data.x?.y", "undefined:undefined"}, {"data.x?.y.z", "undefined:undefined"},
        {"data.x?.[0].z", "undefined:undefined"}, {"data.x?.trim().length", "undefined:undefined"},
        {"(data.x?.y).z", "ERROR:column 12: TypeError: Cannot read properties of undefined (reading 'z')"},
        {"data.nested?.a.b", "number:7"}, {"data.s?.length", "number:5"}, {"data.n?.x ?? 'd'", "string:d"},
        {"data.x?.y === undefined", "boolean:true"},
    };
    CHECK(p);
}

static void test_string_methods(void **state)
{
    (void)state;
    static const pair p[] = {
        {"'abc'.startsWith('ab')", "boolean:true"}, {"'abc'.startsWith('b')", "boolean:false"},
        {"'abc'.startsWith('b', 1)", "boolean:true"}, {"'abc'.startsWith('')", "boolean:true"},
        {"'abc'.startsWith('abcd')", "boolean:false"}, {"'abc'.startsWith('a', 9)", "boolean:false"},
        {"'abc'.endsWith('bc')", "boolean:true"}, {"'abc'.endsWith('b', 2)", "boolean:true"},
        {"'abc'.endsWith('c', 10)", "boolean:true"}, {"'abc'.endsWith('a', -1)", "boolean:false"},
        {"'abc'.includes('b')", "boolean:true"}, {"'abc'.includes('a', 1)", "boolean:false"},
        {"'abc'.includes('')", "boolean:true"}, {"'undefined'.includes()", "boolean:true"},
        {"'abc'.indexOf('c')", "number:2"}, {"'abc'.indexOf('x')", "number:-1"}, {"'aaa'.indexOf('a', 1)", "number:1"},
        {"'abc'.indexOf('')", "number:0"}, {"'abc'.indexOf('', 10)", "number:3"}, {"'abc'.indexOf()", "number:-1"},
        {"'\\u{1F600}a'.indexOf('a')", "number:2"}, {"'\\u00e9a'.indexOf('a')", "number:1"},
        {"'a\\u{1F600}b'.startsWith('b', 3)", "boolean:true"}, {"'12'.indexOf(2)", "number:1"},
        {"'a1'.includes(1)", "boolean:true"}, {"'abc'.toUpperCase()", "string:ABC"},
        {"'ABC'.toLowerCase()", "string:abc"}, {"'stra\\u00dfe'.toUpperCase()", "string:STRASSE"},
        {"'\\u00c9COLE'.toLowerCase()", "string:\xc3\xa9" "cole"}, {"'\\u0130'.toLowerCase().length", "number:2"},
        {"'\\u03b1\\u03b2'.toUpperCase() === '\\u0391\\u0392'", "boolean:true"},
        {"'\\u0436'.toUpperCase() === '\\u0416'", "boolean:true"}, {"'\\u{1F600}'.toUpperCase().length", "number:2"},
        {"'  x  '.trim()", "string:x"}, {"' \\t\\n\\u00a0x\\u2028\\ufeff '.trim()", "string:x"},
        {"'\\u3000'.trim()", "string:"}, {"'x'.trim().length", "number:1"}, {"$userId.startsWith('al')", "boolean:true"},
        {"name.startsWith('user/')", "boolean:true"}, {"data.s.toUpperCase()", "string:H\xc3\x89LLO"},
        {"'abc'.includes(/b/)",
         "ERROR:column 7: TypeError: First argument to String.prototype.includes must not be a regular expression"},
        {"'abc'.startsWith(/b/)",
         "ERROR:column 7: TypeError: First argument to String.prototype.startsWith must not be a regular expression"},
        {"(5).trim()", "ERROR:column 5: TypeError: trim is not a function (called on a number)"},
        {"data.obj.includes('a')", "ERROR:column 10: TypeError: includes is not a function (called on an object)"},
        {"data.arr.toUpperCase()", "ERROR:column 10: TypeError: toUpperCase is not a function (called on an array)"},
        {"data.x.trim()", "ERROR:column 8: TypeError: Cannot read properties of undefined (reading 'trim')"},
        {"data.n.startsWith('a')",
         "ERROR:column 8: TypeError: Cannot read properties of null (reading 'startsWith')"},
        /* arrays */
        {"[1,2,3].indexOf(2)", "number:1"}, {"[1,2,3].indexOf('2')", "number:-1"}, {"[1,2,3].indexOf(3, -1)", "number:2"},
        {"[1,2,3].indexOf(1, 1)", "number:-1"}, {"[1,2,3].includes(1, 1)", "boolean:false"},
        {"[1,2,3].includes(3, -1)", "boolean:true"}, {"[NaN].includes(NaN)", "boolean:true"},
        {"[NaN].indexOf(NaN)", "number:-1"}, {"[null].includes(undefined)", "boolean:false"},
        {"[[]].includes([])", "boolean:false"}, {"user.data.tags.includes('b')", "boolean:true"},
        {"user.data.tags.indexOf('a') > -1", "boolean:true"}, {"data.arr.includes(null)", "boolean:true"},
        {"data.arr.indexOf('a')", "number:1"}, {"[data.s].includes(data.s)", "boolean:true"},
    };
    CHECK(p);
}

static void test_match(void **state)
{
    (void)state;
    static const pair p[] = {
        {"'2024-01-05'.match(/(\\d+)-(\\d+)/)[2]", "string:01"}, {"'abc'.match(/b(c)/)", "object:bc,c"},
        {"'abc'.match(/b(c)/).length", "number:2"}, {"'abc'.match(/x/)", "object:null"},
        {"'abc'.match(/x/) === null", "boolean:true"}, {"!!'abc'.match(/^a/)", "boolean:true"},
        {"'a1b2'.match(/\\d/g)", "object:1,2"}, {"'a1b2'.match(/\\d/g).length", "number:2"},
        {"'aaa'.match(/a*?/g).length", "number:4"}, {"'abc'.match(/(x)?b/)[1]", "undefined:undefined"},
        {"'ABC'.match(/b/i)[0]", "string:B"}, {"'a\\nb'.match(/^b/m)[0]", "string:b"},
        {"'a\\nb'.match(/a.b/s)[0].length", "number:3"}, {"'a\\nb'.match(/a.b/)", "object:null"},
        {"'a\\rb'.match(/a.b/)", "object:null"}, {"'ab\\n'.match(/b$/)", "object:null"},
        {"'ab'.match(/b/y)", "object:null"}, {"'ab'.match(/a/y)[0]", "string:a"}, {"'abc'.match('b.')[0]", "string:bc"},
        {"'a.c'.match('.')[0]", "string:a"}, {"data.s.match(data.pattern)[0]", "string:ll"},
        {"'x'.match()[0]", "string:"}, {"'\\u00e9t\\u00e9'.match(/./g).length", "number:3"},
        {"'caf\\u00e9'.match(/\\u00e9$/) !== null", "boolean:true"}, {"'aB'.match(/[a-z]+/gi)[0]", "string:aB"},
        {"'x'.match(/(?<n>x)/)[1]", "string:x"}, {"'ab'.match(/[^]/g).length", "number:2"},
        {"'a'.match(/[]/)", "object:null"}, {"'12'.match(12)[0]", "string:12"},
        {"'a'.match(data.x)[0]", "string:"},
        {"'a'.match(data.s + '(')", "ERROR:column 5: SyntaxError: Invalid regular expression: missing closing parenthesis"},
        {"(1).match(/1/)", "ERROR:column 5: TypeError: match is not a function (called on a number)"},
    };
    CHECK(p);
}

/* ---- reads ---- */

static unsigned reads_of(const char *text)
{
    char err[256];
    size_t col;
    rule *r = rule_compile(text, strlen(text), &full_scope, err, sizeof(err), &col);
    if (r == NULL)
        fail_msg("'%s': %s", text, err);
    unsigned reads = rule_reads(r);
    rule_free(r);
    return reads;
}

static void test_reads(void **state)
{
    (void)state;
    assert_int_equal(reads_of("user.id === $userId"), 0);
    assert_int_equal(reads_of("user.isAuthenticated && now > 0 && name != ''"), 0);
    assert_int_equal(reads_of("data.count > oldData.count"), RULE_READS_DATA | RULE_READS_OLD_DATA);
    assert_int_equal(reads_of("user.data.role === 'admin'"), RULE_READS_USER_DATA);
    assert_int_equal(reads_of("user['data']"), RULE_READS_USER_DATA);
    assert_int_equal(reads_of("typeof user"), RULE_READS_USER_DATA); /* user whole: may be read */
    assert_int_equal(reads_of("_('a').x"), RULE_READS_RECORDS);
    assert_int_equal(reads_of("'data oldData _() user.data'"), 0); /* inside a string: nothing */
    assert_int_equal(reads_of("user.data.data.oldData"), RULE_READS_USER_DATA);
    rule *t = rule_constant(true), *f = rule_constant(false);
    bool v;
    assert_true(rule_is_constant(t, &v) && v);
    assert_true(rule_is_constant(f, &v) && !v);
    assert_string_equal(rule_text(t), "true");
    assert_int_equal(rule_reads(t), 0);
    store s = {0};
    rule_input in = default_input(&s);
    assert_int_equal(rule_eval(t, &in, NULL, 0, NULL, 0), RULE_TRUE);
    assert_int_equal(rule_eval(f, &in, NULL, 0, NULL, 0), RULE_FALSE);
    rule_free(t);
    rule_free(f);
    char err[64];
    rule *r = rule_compile("true", 4, NULL, err, sizeof(err), NULL);
    assert_false(rule_is_constant(r, NULL)); /* "true" as a string is an expression */
    assert_string_equal(rule_text(r), "true");
    rule_free(r);
}

/* ---- cross-references ---- */

static const char *xref(const char *text, store *s, int max_iterations)
{
    rule_input in = default_input(s);
    in.max_iterations = max_iterations;
    return run_in(text, &full_scope, &in);
}

static void test_cross_reference_flow(void **state)
{
    (void)state;
    store s = {0};
    const char *text = "_('item/' + $userId).isInStock === true";
    assert_string_equal(xref(text, &s, 3), "NEED:item/alice");
    store_put(&s, "item/alice", "{\"isInStock\":true}");
    assert_string_equal(xref(text, &s, 3), "boolean:true");
    s.json[0] = "{\"isInStock\":false}";
    assert_string_equal(xref(text, &s, 3), "boolean:false");
    /* no callback at all: every record must be fetched */
    rule_input in = default_input(&s);
    in.record = NULL;
    assert_string_equal(run_in(text, &full_scope, &in), "NEED:item/alice");

    /* a record that does not exist reads as null (deepstream's recordRequest gives null) */
    memset(&s, 0, sizeof(s));
    assert_string_equal(xref("_('nope') !== null && _('nope').isInStock === true", &s, 3), "NEED:nope");
    store_put(&s, "nope", NULL);
    assert_string_equal(xref("_('nope') !== null && _('nope').isInStock === true", &s, 3), "boolean:false");
    assert_string_equal(xref("_('nope').isInStock",&s, 3),
                        "ERROR:column 10: TypeError: Cannot read properties of null (reading 'isInStock')");

    /* nested: two fetches, in the order deepstream loads them */
    memset(&s, 0, sizeof(s));
    const char *nested = "_( 'thing/' + _( 'thing/x' ).ref ).is === 'it'";
    assert_string_equal(xref(nested, &s, 3), "NEED:thing/x");
    store_put(&s, "thing/x", "{\"ref\":\"y\"}");
    assert_string_equal(xref(nested, &s, 3), "NEED:thing/y");
    store_put(&s, "thing/y", "{\"is\":\"it\"}");
    assert_string_equal(xref(nested, &s, 3), "boolean:true");
    /* an undefined field in the middle: the rule fails (TypeError on undefined) */
    assert_string_equal(xref("_( 'thing/' + _( 'thing/x' ).doesNotExist ).is === 'it'", &s, 3),
                        "ERROR:column 44: TypeError: Cannot read properties of undefined (reading 'is')");
    /* the same record twice, and a record naming itself */
    memset(&s, 0, sizeof(s));
    store_put(&s, "user", "{\"ref\":\"user\",\"firstname\":\"Egon\",\"lastname\":\"H\"}");
    assert_string_equal(xref("_('user').firstname === 'Egon' && _('user').lastname === 'H'", &s, 3), "boolean:true");
    assert_string_equal(xref("_(_('user').ref).firstname === 'Egon'", &s, 3), "boolean:true");
    assert_true(xref("_('user') === _('user')", &s, 3)[8] == 't'); /* one object per record and check */
    /* arguments that are not strings */
    s.json[0] = "{\"ref\":{\"bla\":\"blub\"}}";
    assert_string_equal(xref("_(_('user').ref).firstname === 'Egon'", &s, 3),
                        "ERROR:column 1: crossreference got unsupported type object");
    assert_string_equal(xref("_(5)", &s, 3), "ERROR:column 1: crossreference got unsupported type number");
    assert_string_equal(xref("_(null)", &s, 3), "ERROR:column 1: crossreference got unsupported type object");
    assert_string_equal(xref("_(true) || true", &s, 3), "ERROR:column 1: crossreference got unsupported type boolean");
    /* undefined, or a name with "undefined" in it: nothing is read, the value is undefined */
    assert_string_equal(xref("_() === undefined", &s, 3), "boolean:true");
    assert_string_equal(xref("_(data.x) === undefined", &s, 3), "boolean:true");
    assert_string_equal(xref("_('a/' + data.x)", &s, 3), "undefined:undefined");
    /* from the name and from data */
    memset(&s, 0, sizeof(s));
    assert_string_equal(xref("_(name).firstname === 'Joe'", &s, 3), "NEED:user/alice");
    store_put(&s, "user/alice", "{\"firstname\":\"Joe\"}");
    assert_string_equal(xref("_(name).firstname === 'Joe'", &s, 3), "boolean:true");
    /* a stored record that is not JSON fails the rule */
    store_put(&s, "bad", "{");
    assert_string_equal(xref("_('bad')", &s, 3), "ERROR:column 1: a cross-referenced record is not valid JSON");
}

static void test_cross_reference_iterations(void **state)
{
    (void)state;
    /* deepstream's "prevents nesting beyond limit": with 3 runs, the third
     * run's request ends the rule (deepstream loads it, then stops; this
     * stops without asking) */
    store s = {0};
    const char *deep = "_(_(_(_(_('a')+'b')+'c')+'d')+'e')";
    assert_string_equal(xref(deep, &s, 3), "NEED:a");
    store_put(&s, "a", "\"a\"");
    assert_string_equal(xref(deep, &s, 3), "NEED:ab");
    store_put(&s, "ab", "\"b\"");
    assert_string_equal(xref(deep, &s, 3), "ERROR:Exceeded max iteration count");
    assert_string_equal(xref(deep, &s, 10), "NEED:bc");
    assert_string_equal(xref("_('a') === 'a'", &s, 1), "ERROR:Exceeded max iteration count");
    assert_string_equal(xref("_('a') === 'a'", &s, 2), "boolean:true");
    assert_string_equal(xref("_('a') === 'a'", &s, 0), "ERROR:Exceeded max iteration count"); /* < 1: 1 */

    /* deepstream's "mixes old data and cross references": oldData's load costs the first run */
    memset(&s, 0, sizeof(s));
    const char *mixed = "oldData.owner === 'alice' && _('userB').firstname === 'Mike'";
    assert_string_equal(xref(mixed, &s, 3), "NEED:userB");
    store_put(&s, "userB", "{\"firstname\":\"Mike\"}");
    assert_string_equal(xref(mixed, &s, 3), "boolean:true");
    assert_string_equal(xref(mixed, &s, 2), "ERROR:Exceeded max iteration count");
    /* oldData alone: two runs */
    assert_string_equal(xref("data.count > oldData.count", &s, 2), "boolean:true");
    assert_string_equal(xref("data.count > oldData.count", &s, 1), "ERROR:Exceeded max iteration count");
    /* the record itself through _(): the same value as oldData once it is loaded */
    assert_string_equal(xref("_(name) === oldData", &s, 3), "boolean:true");

    /* several records asked for in one run: one per call, the verdict whatever the order */
    memset(&s, 0, sizeof(s));
    const char *both = "_('p') == _('q')";
    assert_string_equal(xref(both, &s, 2), "NEED:p");
    store_put(&s, "q", "1");
    assert_string_equal(xref(both, &s, 2), "NEED:p");
    store_put(&s, "p", "\"1\"");
    assert_string_equal(xref(both, &s, 2), "boolean:true");
    int lookups = s.lookups;
    assert_string_equal(xref(both, &s, 2), "boolean:true");
    assert_int_equal(s.lookups - lookups, 2); /* each record looked up once per check */
    /* a failure while records are loading is not the verdict: the next run's is */
    memset(&s, 0, sizeof(s));
    store_put(&s, "r", "{\"v\":2}");
    assert_string_equal(xref("_('r').v === 2", &s, 2), "boolean:true");
    /* a fatal error ends the rule even while records load */
    assert_string_equal(xref("_('zz') || _(1)", &s, 3), "ERROR:column 12: crossreference got unsupported type number");
}

/* ---- compile errors ---- */

typedef struct bad {
    const char *rule;
    size_t column;
    const char *message;
} bad;

static void test_compile_errors(void **state)
{
    (void)state;
    static const bad cases[] = {
        {"", 0, "rule can't be empty"},
        {"user.id user.id", 9, "unexpected identifier user"},
        {"user.id = 'x'", 9, "assignments are not allowed"},
        {"user.id += 'x'", 9, "assignments are not allowed"},
        {"user.id == 'a'; true", 15, "semicolons are not allowed"},
        {"new Date()", 1, "rule can't contain the new keyword"},
        {"16-new Number(3)", 4, "rule can't contain the new keyword"},
        {"user.id === 'a' && new X", 20, "rule can't contain the new keyword"},
        {"(function (foo) { return foo + 1; })(20)", 2, "rule can't contain user functions"},
        {"(foo => foo + 1)(20)", 6, "rule can't contain user functions"},
        {"alert('bobo')", 1, "function alert is not supported"},
        {"alert  ('whoops')", 1, "function alert is not supported"},
        {"process.exit()", 9, "function exit is not supported"},
        {"data.lastname.toUpperCase() && data.lastname.substr(0,3)", 46, "function substr is not supported"},
        {"data['trim']()", 13, "only the string methods and _() can be called"},
        {"data.x._('a')", 8, "function _ is not supported"},
        {"user.id === $other", 13, "$other is not a variable of the pattern"},
        {"user.id.toUpperCase(", 21, "unexpected end of rule"},
        {"(1", 3, "unexpected end of rule"},
        {"1)", 2, "unexpected token ')'"},
        {"1 2", 3, "unexpected number"},
        {"'abc", 1, "unterminated string"},
        {"'ab\nc'", 1, "unterminated string"},
        {"'\\x4'", 2, "invalid hexadecimal escape sequence"},
        {"'\\u{110000}'", 2, "invalid Unicode escape sequence"},
        {"/abc", 1, "unterminated regular expression"},
        {"'a'.match(/(/)", 11, "invalid regular expression: missing closing parenthesis"},
        {"'a'.match('(')", 11, "invalid regular expression: missing closing parenthesis"},
        {"'a'.match(/a/z)", 11, "invalid regular expression: invalid flags 'z'"},
        {"'a'.match(/a/gg)", 11, "invalid regular expression: invalid flags 'gg'"},
        {"a.b.c", 1, "unknown identifier a"},
        {"Math.max(1, 2)", 6, "function max is not supported"},
        {"Math.PI", 1, "unknown identifier Math"},
        {"this.x", 1, "this is not allowed in a rule"},
        {"void 0", 1, "void is not allowed in a rule"},
        {"delete data.x", 1, "delete is not allowed in a rule"},
        {"1 | 2", 3, "bitwise operators are not supported"},
        {"~1", 1, "bitwise operators are not supported"},
        {"1 << 2", 3, "bitwise operators are not supported"},
        {"user.id, true", 8, "the comma operator is not supported"},
        {"'a' in data", 5, "the in operator is not supported"},
        {"data instanceof Object", 6, "the instanceof operator is not supported"},
        {"{a: 1}", 1, "blocks and object literals are not supported"},
        {"now++", 4, "increment and decrement are not allowed"},
        {"2 ** 3", 3, "the ** operator is not supported"},
        {"`a`", 1, "template literals are not supported"},
        {"[...data.arr]", 2, "spread syntax is not supported"},
        {"_", 1, "_ must be called: _('record name')"},
        {"_.x", 1, "_ must be called: _('record name')"},
        {"[1,,2]", 4, "holes in array literals are not supported"},
        {"null ?? 1 || 2", 11, "?? cannot be mixed with || or && without parentheses"},
        {"1 || 2 ?? 3", 8, "?? cannot be mixed with || or && without parentheses"},
        {"1 && 2 ?? 3", 8, "?? cannot be mixed with || or && without parentheses"},
        {"user.id #", 9, "unexpected character '#'"},
        {"user.id @", 9, "unexpected character '@'"},
        {"user.\xc3\xaf" "d", 6, "unexpected character (byte 0xc3)"},
        {"1a", 2, "identifier directly after a number"},
        {"0x", 1, "invalid number"},
        {"1e+", 1, "invalid number"},
        {"'\xc3\xa9' + ;", 7, "semicolons are not allowed"},
        {"data.x?.()", 9, "optional calls ?.() are not supported"},
        {"user.\\u0069d", 6, "unexpected character '\\'"},
        {"1 /* x", 3, "unterminated comment"},
        {"a\\u0062", 2, "identifiers must be ASCII letters, digits, _ and $"},
        {"data.x ? 1", 11, "unexpected end of rule"},
        {"user.", 6, "unexpected end of rule"},
        {"user.1", 5, "unexpected number"},
        {"return true", 1, "return is not allowed in a rule"},
        {"if (x) y", 1, "function if is not supported"},
        {"if x", 1, "if is not allowed in a rule"},
        {"let x", 1, "let is not allowed in a rule"},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[256];
        size_t col = 99;
        rule *r = rule_compile(cases[i].rule, strlen(cases[i].rule), &full_scope, err, sizeof(err), &col);
        if (r != NULL) {
            print_error("  %s: compiled\n", cases[i].rule);
            rule_free(r);
            failures++;
        } else if (col != cases[i].column || strcmp(err, cases[i].message) != 0) {
            print_error("  %s\n    expected column %zu: %s\n    got      column %zu: %s\n", cases[i].rule,
                        cases[i].column, cases[i].message, col, err);
            failures++;
        }
    }
    if (failures)
        fail_msg("%d compile errors differ", failures);
}

/* data and oldData where the action has none (deepstream's rules-map) */
static void test_scope_errors(void **state)
{
    (void)state;
    char err[256];
    size_t col;
    rule_scope create = {.section = "record", .action = "create"};
    assert_null(rule_compile("data.x === 1", 12, &create, err, sizeof(err), &col));
    assert_string_equal(err, "rule create for record does not support data");
    assert_int_equal(col, 1);
    rule_scope publish = {.data = true, .section = "event", .action = "publish"};
    const char *r1 = "data.price === 500 && oldData.price < 500";
    assert_null(rule_compile(r1, strlen(r1), &publish, err, sizeof(err), &col));
    assert_string_equal(err, "rule publish for event does not support oldData");
    assert_int_equal(col, 23);
    /* a member named data is not `data` (deepstream's "user.data for read" case) */
    rule_scope read = {.old_data = true, .section = "record", .action = "read"};
    rule *r = rule_compile("user.id !== user.data.someUser", 30, &read, err, sizeof(err), &col);
    assert_non_null(r);
    rule_free(r);
    r = rule_compile("oldData.data.data", 17, &read, err, sizeof(err), &col);
    assert_non_null(r);
    rule_free(r);
    /* the last of two equal variable names wins (deepstream's function parameters) */
    const char *const twice[] = {"$a", "$a"};
    rule_scope sc = {.vars = twice, .nvars = 2};
    r = rule_compile("$a", 2, &sc, err, sizeof(err), &col);
    assert_non_null(r);
    rule_str vals[] = {{"first", 5}, {"second", 6}};
    rule_input in = {.vars = vals, .nvars = 2, .max_iterations = 3};
    char show[64];
    assert_int_equal(rule_eval_show(r, &in, NULL, 0, NULL, 0, show, sizeof(show)), RULE_TRUE);
    assert_string_equal(show, "string:second");
    rule_free(r);
}

/* ---- bounds ---- */

static char *repeat(const char *a, int n, const char *mid, const char *b, int m)
{
    size_t la = strlen(a), lm = strlen(mid), lb = strlen(b);
    char *s = xmalloc(la * (size_t)n + lm + lb * (size_t)m + 1), *p = s;
    for (int i = 0; i < n; i++, p += la)
        memcpy(p, a, la);
    memcpy(p, mid, lm);
    p += lm;
    for (int i = 0; i < m; i++, p += lb)
        memcpy(p, b, lb);
    *p = '\0';
    return s;
}

static const char *compile_error(const char *text, size_t *col)
{
    static char err[256];
    rule *r = rule_compile(text, strlen(text), &full_scope, err, sizeof(err), col);
    if (r != NULL) {
        rule_free(r);
        return "compiled";
    }
    return err;
}

static void test_nesting_bounds(void **state)
{
    (void)state;
    size_t col;
    char *s = repeat("(", 200, "1", ")", 200);
    assert_string_equal(compile_error(s, &col), "expression nested deeper than 96 levels");
    xfree(s);
    s = repeat("!", 5000, "1", "", 0);
    assert_string_equal(compile_error(s, &col), "expression nested deeper than 96 levels");
    xfree(s);
    s = repeat("-", 5000, "1", "", 0); /* lexed as -- : refused before nesting */
    assert_string_equal(compile_error(s, &col), "increment and decrement are not allowed");
    xfree(s);
    s = repeat("- ", 5000, "1", "", 0);
    assert_string_equal(compile_error(s, &col), "expression nested deeper than 96 levels");
    xfree(s);
    /* a run of one level's operators is one node: a long allow-list is not deep */
    s = repeat("1+", 3000, "1", "", 0);
    assert_string_equal(run(s), "number:3001");
    xfree(s);
    s = repeat("user.id === 'x' || ", 800, "user.id === 'alice'", "", 0);
    assert_string_equal(run(s), "boolean:true");
    xfree(s);
    s = repeat("(1+", 200, "1", ")", 200); /* but nesting is */
    assert_string_equal(compile_error(s, &col), "expression nested deeper than 96 levels");
    xfree(s);
    s = repeat("[", 200, "", "]", 200);
    assert_string_equal(compile_error(s, &col), "expression nested deeper than 96 levels");
    xfree(s);
    s = repeat("1?", 200, "1", ":1", 200);
    assert_string_equal(compile_error(s, &col), "expression nested deeper than 96 levels");
    xfree(s);
    s = repeat("_(", 200, "'a'", ")", 200);
    assert_string_equal(compile_error(s, &col), "expression nested deeper than 96 levels");
    xfree(s);
    s = repeat("", 0, "data", ".a", 200);
    assert_string_equal(compile_error(s, &col), "expression nested deeper than 96 levels");
    xfree(s);
    /* as deep as allowed: compiles and runs */
    s = repeat("(", 40, "1", ")", 40);
    assert_string_equal(compile_error(s, &col), "compiled");
    xfree(s);
    s = repeat("1+", 90, "1", "", 0);
    assert_string_equal(run(s), "number:91");
    xfree(s);
    /* size */
    s = repeat("1", RULES_MAX_TEXT + 1, "", "", 0);
    assert_string_equal(compile_error(s, &col), "rule longer than 16384 bytes");
    xfree(s);
    s = repeat("[", 1, "", "1,", 5000);
    s[strlen(s) - 1] = ']';
    assert_string_equal(compile_error(s, &col), "rule too large (more than 4096 expression nodes)");
    xfree(s);
    assert_string_equal(compile_error("1\0002", &col), "compiled"); /* strlen stops at the NUL */
    char err[64];
    assert_null(rule_compile("1\0002", 3, &full_scope, err, sizeof(err), &col));
    assert_string_equal(err, "rule contains a NUL byte");
    assert_int_equal(col, 2);
}

static double now_ms_f(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void test_runtime_bounds(void **state)
{
    (void)state;
    store s = {0};
    rule_input in = default_input(&s);
    /* a 40 KB string: concatenating it with itself goes past RULES_MAX_STRING */
    size_t big = 40000;
    char *doc = xmalloc(big + 64);
    int n = sprintf(doc, "{\"s\":\"");
    memset(doc + n, 'x', big);
    strcpy(doc + n + big, "\",\"a\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!\"}");
    in.data = doc;
    in.data_len = strlen(doc);
    assert_string_equal(run_in("data.s.length", &full_scope, &in), "number:40000");
    assert_string_equal(run_in("(data.s + data.s).length", &full_scope, &in),
                        "ERROR:column 9: RangeError: string longer than 65536 bytes");
    assert_string_equal(run_in("data.s.toUpperCase().length", &full_scope, &in), "number:40000");
    assert_string_equal(run_in("(data.s + 'y').toUpperCase().endsWith('XY')", &full_scope, &in), "boolean:true");
    assert_string_equal(run_in("[data.s, data.s].length", &full_scope, &in), "number:2");
    assert_string_equal(run_in("[data.s, data.s] + ''", &full_scope, &in),
                        "ERROR:column 18: RangeError: string longer than 65536 bytes");
    /* the scratch in all: 30 upper-cased copies of 40 KB */
    char *many = repeat("data.s.toUpperCase() + '' && ", 30, "true", "", 0);
    assert_non_null(strstr(run_in(many, &full_scope, &in), "RangeError: the rule built more than 1048576 bytes"));
    xfree(many);
    /* catastrophic backtracking: cut by the match limit, quickly */
    double t0 = now_ms_f();
    assert_string_equal(run_in("data.a.match(/^(a+)+$/)", &full_scope, &in),
                        "ERROR:column 8: RangeError: regular expression: match limit exceeded");
    assert_string_equal(run_in("data.a.match('^(a|aa)+$')", &full_scope, &in),
                        "ERROR:column 8: RangeError: regular expression: match limit exceeded");
    assert_true(now_ms_f() - t0 < 2000);
    /* more matches than allowed */
    assert_string_equal(run_in("data.s.match(/x/g)", &full_scope, &in),
                        "ERROR:column 8: RangeError: more than 1024 matches");
    xfree(doc);
    /* deep JSON: member access is fine, joining it is cut */
    char *deep = repeat("[", 200, "1", "]", 200);
    in.data = deep;
    in.data_len = strlen(deep);
    assert_string_equal(run_in("data.length", &full_scope, &in), "number:1");
    assert_string_equal(run_in("data + ''", &full_scope, &in),
                        "ERROR:column 6: RangeError: arrays nested deeper than 64 levels");
    assert_string_equal(run_in("data == 1", &full_scope, &in),
                        "ERROR:column 6: RangeError: arrays nested deeper than 64 levels");
    xfree(deep);
    /* a long literal regex is refused at compile, a long one made at run time fails the rule */
    char *longre = repeat("'a'.match(/", 1, "", "a", 1100);
    longre = xrealloc(longre, strlen(longre) + 3);
    strcat(longre, "/)");
    size_t col;
    assert_string_equal(compile_error(longre, &col), "invalid regular expression: longer than 1024 bytes");
    xfree(longre);
    in = default_input(&s);
    char *ld = repeat("{\"p\":\"", 1, "", "a", 2000);
    ld = xrealloc(ld, strlen(ld) + 3);
    strcat(ld, "\"}");
    in.data = ld;
    in.data_len = strlen(ld);
    assert_string_equal(run_in("'a'.match(data.p)", &full_scope, &in),
                        "ERROR:column 5: SyntaxError: Invalid regular expression: longer than 1024 bytes");
    xfree(ld);
}

/* ---- jsval directly ---- */

static void test_jsval(void **state)
{
    (void)state;
    char buf[JS_NUMBER_BUF];
    static const struct {
        double d;
        const char *s;
    } nums[] = {
        {0, "0"}, {-0.0, "0"}, {1, "1"}, {-1, "-1"}, {0.1, "0.1"}, {1e21, "1e+21"}, {1e-7, "1e-7"},
        {123.456, "123.456"}, {1.5e-10, "1.5e-10"}, {-1.7976931348623157e308, "-1.7976931348623157e+308"},
        {4.9406564584124654e-324, "5e-324"}, {1152921504606846976.0, "1152921504606847000"},
        {0.000001234, "0.000001234"}, {1e100, "1e+100"},
    };
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        js_number_format(nums[i].d, buf);
        assert_string_equal(buf, nums[i].s);
    }
    assert_true(js_string_to_number("  0b11 ", 7) == 3);
    assert_true(js_string_to_number("-", 1) != js_string_to_number("-", 1)); /* NaN */
    assert_true(js_string_to_number("1e", 2) != js_string_to_number("1e", 2));
    assert_true(js_string_to_number("-.5e1", 5) == -5);
    assert_int_equal(js_utf16_length("a\xf0\x9f\x98\x80", 5), 3);
    assert_int_equal(js_utf16_to_byte("a\xf0\x9f\x98\x80" "b", 6, 2), 1); /* inside the pair: its start */
    assert_int_equal(js_utf16_to_byte("a\xf0\x9f\x98\x80" "b", 6, 3), 5);
    assert_true(js_string_compare("a", 1, "b", 1) < 0);
    assert_true(js_string_compare("\xef\xbf\xbf", 3, "\xf0\x9f\x98\x80", 4) > 0); /* U+FFFF > a surrogate */
    assert_true(js_string_compare("ab", 2, "a", 1) > 0);
    assert_true(js_string_compare("\xff", 1, "\xfe", 1) > 0); /* bytes that are not UTF-8 */
    size_t b = 0, e = 3;
    js_trim("\xff  ", &b, &e);
    assert_int_equal(b, 0);
    assert_int_equal(e, 1);
    char up[16];
    assert_int_equal(js_case_map("a\xff", 2, true, up, sizeof(up)), 2); /* a stray byte stays */
    assert_memory_equal(up, "A\xff", 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literals_and_numbers),
        cmocka_unit_test(test_arithmetic),
        cmocka_unit_test(test_comparisons),
        cmocka_unit_test(test_truthiness_and_logic),
        cmocka_unit_test(test_typeof),
        cmocka_unit_test(test_variables),
        cmocka_unit_test(test_member_and_index),
        cmocka_unit_test(test_string_methods),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_reads),
        cmocka_unit_test(test_cross_reference_flow),
        cmocka_unit_test(test_cross_reference_iterations),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_scope_errors),
        cmocka_unit_test(test_nesting_bounds),
        cmocka_unit_test(test_runtime_bounds),
        cmocka_unit_test(test_jsval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
