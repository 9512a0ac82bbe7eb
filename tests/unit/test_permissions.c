/* test_permissions.c - permissions.yml as deepstream reads it
 * (common/permissions.c, permpath.c): deepstream's own default file and a
 * realistic application's; the pattern deepstream picks (the longest that
 * matches and defines the action, the last of equals in JavaScript's key
 * order); what a missing action, pattern or section does; variables,
 * data/oldData, cross-references through perm_records; every validation
 * error as its one line (file, section, pattern, action, column, reason);
 * bounded pattern matching; many threads checking one set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mem.h"
#include "permissions.h"
#include "permpath.h"

/* deepstream's conf/permissions.yml, as it ships */
static const char deepstream_default[] =
    "presence:\n"
    "  \"*\":\n"
    "    allow: true\n"
    "record:\n"
    "  \"*\":\n"
    "    create: true\n"
    "    write: true\n"
    "    read: true\n"
    "    delete: true\n"
    "    listen: true\n"
    "    notify: true\n"
    "event:\n"
    "  \"*\":\n"
    "    publish: true\n"
    "    subscribe: true\n"
    "    listen: true\n"
    "rpc:\n"
    "  \"*\":\n"
    "    provide: true\n"
    "    request: true\n";

/* an application's file */
static const char app[] =
    "# who may do what\n"
    "presence:\n"
    "  \"*\":\n"
    "    allow: \"user.isAuthenticated\"\n"
    "record:\n"
    "  \"*\":\n"
    "    create: true\n"
    "    write: true\n"
    "    read: true\n"
    "    delete: false\n"
    "    listen: true\n"
    "  user-profile/$userId:\n"
    "    write: \"user.id === $userId\"\n"
    "    delete: \"user.id === $userId\"\n"
    "  user-profile/$userId/private:\n"
    "    read: \"user.id === $userId\"\n"
    "  public/*:\n"
    "    write: \"user.data.role === 'admin'\"\n"
    "  counter/$name:\n"
    "    write: \"data.count > oldData.count\"\n"
    "  purchase/$itemId:\n"
    "    create: \"_('item/' + $itemId).stock > 0\"\n"
    "  chat/$room/message/$id:\n"
    "    create: >-\n"
    "      _('room/' + $room).members.includes(user.id)\n"
    "      && $id.length < 40\n"
    "  only-increment:\n"
    "    write: \"!oldData.value || data.value > oldData.value\"\n"
    "event:\n"
    "  \"*\":\n"
    "    publish: true\n"
    "    subscribe: true\n"
    "  news/$topic:\n"
    "    publish: \"$topic === 'tea-cup-pigs'\"\n"
    "  place/$city:\n"
    "    publish: \"$city.toLowerCase() === data.address.city.toLowerCase()\"\n"
    "  admin/*:\n"
    "    subscribe: \"user.data.role === 'admin'\"\n"
    "rpc:\n"
    "  \"*\":\n"
    "    provide: \"user.data.role === 'backend'\"\n"
    "    request: true\n"
    "  trade/book:\n"
    "    request: \"user.data.role === 'fx-trader' && data.assetClass === 'fx'\"\n";

static permissions *parse_ok(const char *yaml)
{
    char err[512];
    permissions *p = permissions_parse(yaml, strlen(yaml), "perms.yml", 3, err, sizeof(err));
    if (p == NULL)
        fail_msg("does not load: %s", err);
    return p;
}

static const char *load_error(const char *yaml)
{
    static char err[512];
    err[0] = '\0';
    permissions *p = permissions_parse(yaml, strlen(yaml), "perms.yml", 3, err, sizeof(err));
    if (p != NULL) {
        permissions_free(p);
        return "loaded";
    }
    if (strchr(err, '\n') != NULL)
        fail_msg("error of more than one line: %s", err);
    return err;
}

static const perm_user alice = {.id = "alice", .id_len = 5, .authenticated = true,
                                 .data = "{\"role\":\"admin\"}", .data_len = 16};
static const perm_user bob = {.id = "bob", .id_len = 3, .authenticated = true,
                               .data = "{\"role\":\"fx-trader\"}", .data_len = 20};
static const perm_user anon = {.id = "open", .id_len = 4, .authenticated = false};

static char why[512], need[256];

static enum perm_verdict check_full(const permissions *p, enum perm_section s, enum perm_action a, const char *name,
                                    const perm_user *u, const char *data, const char *old, const perm_records *recs)
{
    perm_request req = {.section = s, .action = a, .name = name, .name_len = strlen(name), .user = u,
                        .data = data, .data_len = data ? strlen(data) : 0,
                        .old_data = old, .old_data_len = old ? strlen(old) : 0, .now_ms = 1700000000000};
    why[0] = need[0] = '\0';
    return permissions_check(p, &req, recs, need, sizeof(need), why, sizeof(why));
}

static enum perm_verdict check(const permissions *p, enum perm_section s, enum perm_action a, const char *name,
                               const perm_user *u)
{
    return check_full(p, s, a, name, u, NULL, NULL, NULL);
}

#define ALLOW PERM_VERDICT_ALLOW
#define DENY PERM_VERDICT_DENY
#define ERROR PERM_VERDICT_ERROR
#define NEED PERM_VERDICT_NEED_RECORD

static const struct {
    enum perm_section s;
    enum perm_action a;
} pairs[] = {
    {PERM_RECORD, PERM_CREATE}, {PERM_RECORD, PERM_WRITE}, {PERM_RECORD, PERM_READ}, {PERM_RECORD, PERM_DELETE},
    {PERM_RECORD, PERM_LISTEN}, {PERM_RECORD, PERM_NOTIFY}, {PERM_EVENT, PERM_PUBLISH},
    {PERM_EVENT, PERM_SUBSCRIBE}, {PERM_EVENT, PERM_LISTEN}, {PERM_RPC, PERM_PROVIDE}, {PERM_RPC, PERM_REQUEST},
    {PERM_PRESENCE, PERM_ALLOW},
};

static void test_deepstream_default(void **state)
{
    (void)state;
    permissions *p = parse_ok(deepstream_default);
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        assert_int_equal(check(p, pairs[i].s, pairs[i].a, "any/name", &anon), ALLOW);
        assert_int_equal(check(p, pairs[i].s, pairs[i].a, "", NULL), ALLOW);
        assert_int_equal(permissions_needs(p, pairs[i].s, pairs[i].a, "x", 1), 0);
    }
    /* an action of another section is no check at all */
    assert_int_equal(check(p, PERM_PRESENCE, PERM_WRITE, "x", &anon), DENY);
    assert_string_equal(why, "action 1 does not belong to section 3");
    assert_int_equal(check(p, PERM_RPC, PERM_LISTEN, "x", &anon), DENY);
    permissions_free(p);
    permissions_free(NULL);
}

static void test_app_file(void **state)
{
    (void)state;
    permissions *p = parse_ok(app);
    /* "*" for what no pattern says */
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "anything", &bob), ALLOW);
    assert_int_equal(check(p, PERM_RECORD, PERM_DELETE, "anything", &bob), DENY);
    assert_string_equal(why, "record \"*\" delete: false");
    /* the profile: its owner writes, others do not; read falls to "*" (the pattern has none) */
    assert_int_equal(check(p, PERM_RECORD, PERM_WRITE, "user-profile/alice", &alice), ALLOW);
    assert_int_equal(check(p, PERM_RECORD, PERM_WRITE, "user-profile/alice", &bob), DENY);
    assert_string_equal(why, "record \"user-profile/$userId\" write: false: user.id === $userId");
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "user-profile/alice", &bob), ALLOW);
    /* the more specific private pattern */
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "user-profile/alice/private", &alice), ALLOW);
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "user-profile/alice/private", &bob), DENY);
    /* a variable is one segment: user-profile/a/b is not user-profile/$userId */
    assert_int_equal(check(p, PERM_RECORD, PERM_WRITE, "user-profile/a/b", &bob), ALLOW);
    /* user.data */
    assert_int_equal(check(p, PERM_RECORD, PERM_WRITE, "public/notice", &alice), ALLOW);
    assert_int_equal(check(p, PERM_RECORD, PERM_WRITE, "public/notice", &bob), DENY);
    assert_int_equal(check(p, PERM_RECORD, PERM_WRITE, "public/notice", &anon), ERROR);
    assert_string_equal(why, "record \"public/*\" write: column 10: TypeError: Cannot read properties of null "
                             "(reading 'role')");
    /* data and oldData */
    assert_int_equal(check_full(p, PERM_RECORD, PERM_WRITE, "counter/c", &bob, "{\"count\":3}", "{\"count\":2}", NULL),
                     ALLOW);
    assert_int_equal(check_full(p, PERM_RECORD, PERM_WRITE, "counter/c", &bob, "{\"count\":2}", "{\"count\":2}", NULL),
                     DENY);
    assert_int_equal(check_full(p, PERM_RECORD, PERM_WRITE, "only-increment", &bob, "{\"value\":1}", NULL, NULL),
                     ERROR); /* a new record's oldData is null: null.value throws, as in deepstream */
    assert_int_equal(check_full(p, PERM_RECORD, PERM_WRITE, "only-increment", &bob, "{\"value\":1}", "{}", NULL),
                     ALLOW);
    /* events: variables and data */
    assert_int_equal(check(p, PERM_EVENT, PERM_PUBLISH, "news/tea-cup-pigs", &bob), ALLOW);
    assert_int_equal(check(p, PERM_EVENT, PERM_PUBLISH, "news/other", &bob), DENY);
    assert_int_equal(check_full(p, PERM_EVENT, PERM_PUBLISH, "place/Berlin", &bob,
                                "{\"address\":{\"city\":\"BERLIN\"}}", NULL, NULL), ALLOW);
    assert_int_equal(check_full(p, PERM_EVENT, PERM_PUBLISH, "place/Berlin", &bob, NULL, NULL, NULL), ERROR);
    assert_int_equal(check(p, PERM_EVENT, PERM_SUBSCRIBE, "admin/log", &alice), ALLOW);
    assert_int_equal(check(p, PERM_EVENT, PERM_SUBSCRIBE, "admin/log", &bob), DENY);
    /* no pattern defines event listen: denied */
    assert_int_equal(check(p, PERM_EVENT, PERM_LISTEN, "news/x", &alice), DENY);
    assert_string_equal(why, "event listen \"news/x\": no pattern with a listen rule matches");
    assert_int_equal(check(p, PERM_RECORD, PERM_NOTIFY, "x", &alice), DENY);
    /* rpc */
    assert_int_equal(check_full(p, PERM_RPC, PERM_REQUEST, "trade/book", &bob, "{\"assetClass\":\"fx\"}", NULL, NULL),
                     ALLOW);
    assert_int_equal(check_full(p, PERM_RPC, PERM_REQUEST, "trade/book", &bob, "{\"assetClass\":\"eq\"}", NULL, NULL),
                     DENY);
    assert_int_equal(check_full(p, PERM_RPC, PERM_REQUEST, "trade/book", &alice, "{\"assetClass\":\"fx\"}", NULL,
                                NULL), DENY);
    assert_int_equal(check(p, PERM_RPC, PERM_PROVIDE, "trade/book", &alice), DENY);
    /* presence */
    assert_int_equal(check(p, PERM_PRESENCE, PERM_ALLOW, "alice", &alice), ALLOW);
    assert_int_equal(check(p, PERM_PRESENCE, PERM_ALLOW, "alice", &anon), DENY);
    /* what each applicable rule reads */
    assert_int_equal(permissions_needs(p, PERM_RECORD, PERM_WRITE, "user-profile/a", 14), 0);
    assert_int_equal(permissions_needs(p, PERM_RECORD, PERM_WRITE, "counter/c", 9),
                     PERM_NEEDS_DATA | PERM_NEEDS_OLD_DATA);
    assert_int_equal(permissions_needs(p, PERM_RECORD, PERM_WRITE, "public/x", 8), PERM_NEEDS_USER_DATA);
    assert_int_equal(permissions_needs(p, PERM_RECORD, PERM_CREATE, "purchase/1", 10), PERM_NEEDS_RECORDS);
    assert_int_equal(permissions_needs(p, PERM_RPC, PERM_REQUEST, "trade/book", 10),
                     PERM_NEEDS_DATA | PERM_NEEDS_USER_DATA);
    assert_int_equal(permissions_needs(p, PERM_EVENT, PERM_LISTEN, "x", 1), 0); /* no rule */
    assert_int_equal(permissions_needs(p, PERM_RECORD, PERM_READ, "x", 1), 0);
    permissions_free(p);
}

static void test_cross_references(void **state)
{
    (void)state;
    permissions *p = parse_ok(app);
    perm_records *recs = perm_records_new();
    assert_int_equal(check_full(p, PERM_RECORD, PERM_CREATE, "purchase/42", &bob, NULL, NULL, NULL), NEED);
    assert_string_equal(need, "item/42");
    assert_int_equal(check_full(p, PERM_RECORD, PERM_CREATE, "purchase/42", &bob, NULL, NULL, recs), NEED);
    perm_records_put(recs, "item/42", 7, "{\"stock\":0}", 11);
    assert_int_equal(check_full(p, PERM_RECORD, PERM_CREATE, "purchase/42", &bob, NULL, NULL, recs), DENY);
    perm_records_put(recs, "item/42", 7, "{\"stock\":3}", 11); /* replaced */
    assert_int_equal(check_full(p, PERM_RECORD, PERM_CREATE, "purchase/42", &bob, NULL, NULL, recs), ALLOW);
    /* a record that does not exist: null */
    assert_int_equal(check_full(p, PERM_RECORD, PERM_CREATE, "purchase/7", &bob, NULL, NULL, recs), NEED);
    perm_records_put(recs, "item/7", 6, NULL, 0);
    assert_int_equal(check_full(p, PERM_RECORD, PERM_CREATE, "purchase/7", &bob, NULL, NULL, recs), ERROR);
    assert_string_equal(why, "record \"purchase/$itemId\" create: column 21: TypeError: Cannot read properties of "
                             "null (reading 'stock')");
    /* a multi-line rule (YAML folded) with two variables */
    assert_int_equal(check_full(p, PERM_RECORD, PERM_CREATE, "chat/r1/message/m1", &bob, NULL, NULL, recs), NEED);
    assert_string_equal(need, "room/r1");
    perm_records_put(recs, "room/r1", 7, "{\"members\":[\"alice\",\"bob\"]}", 27);
    assert_int_equal(check_full(p, PERM_RECORD, PERM_CREATE, "chat/r1/message/m1", &bob, NULL, NULL, recs), ALLOW);
    assert_int_equal(check_full(p, PERM_RECORD, PERM_CREATE, "chat/r1/message/m1", &anon, NULL, NULL, recs), DENY);
    perm_records_free(recs);
    perm_records_free(NULL);
    /* the iteration bound: max_rule_iterations runs */
    const char *chain = "presence: {'*': {allow: true}}\n"
                        "event: {'*': {publish: true}}\n"
                        "rpc: {'*': {request: true}}\n"
                        "record: {'*': {read: \"_(_(_('a')))\"}}\n";
    char err[256];
    permissions *p1 = permissions_parse(chain, strlen(chain), "chain.yml", 2, err, sizeof(err));
    assert_non_null(p1);
    recs = perm_records_new();
    assert_int_equal(check_full(p1, PERM_RECORD, PERM_READ, "x", &bob, NULL, NULL, recs), NEED);
    assert_string_equal(need, "a");
    perm_records_put(recs, "a", 1, "\"b\"", 3);
    assert_int_equal(check_full(p1, PERM_RECORD, PERM_READ, "x", &bob, NULL, NULL, recs), ERROR);
    assert_string_equal(why, "record \"*\" read: Exceeded max iteration count");
    permissions *p3 = permissions_parse(chain, strlen(chain), "chain.yml", 3, err, sizeof(err));
    assert_int_equal(check_full(p3, PERM_RECORD, PERM_READ, "x", &bob, NULL, NULL, recs), NEED);
    assert_string_equal(need, "b");
    perm_records_put(recs, "b", 1, "\"c\"", 3);
    assert_int_equal(check_full(p3, PERM_RECORD, PERM_READ, "x", &bob, NULL, NULL, recs), ERROR);
    permissions *p4 = permissions_parse(chain, strlen(chain), "chain.yml", 4, err, sizeof(err));
    perm_records_put(recs, "c", 1, "{}", 2);
    assert_int_equal(check_full(p4, PERM_RECORD, PERM_READ, "x", &bob, NULL, NULL, recs), ALLOW);
    perm_records_free(recs);
    permissions_free(p1);
    permissions_free(p3);
    permissions_free(p4);
    permissions_free(p);
}

static const char *with_record(const char *patterns)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf),
             "presence: {'*': {allow: true}}\nevent: {'*': {publish: true}}\nrpc: {'*': {request: true}}\n"
             "record:\n%s", patterns);
    return buf;
}

static void test_specificity(void **state)
{
    (void)state;
    /* the longest matching pattern wins, whatever the file order */
    permissions *p = parse_ok(with_record("  'a/*': {read: false}\n  '*': {read: true}\n  'a/b/*': {read: true}\n"));
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "a/x", &bob), DENY);
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "a/b/x", &bob), ALLOW);
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "b", &bob), ALLOW);
    permissions_free(p);
    /* of equally long ones, the later in the file */
    p = parse_ok(with_record("  '*': {read: true}\n  'a/*': {read: false}\n  '*/b': {read: true}\n"));
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "a/b", &bob), ALLOW);
    permissions_free(p);
    p = parse_ok(with_record("  '*': {read: true}\n  '*/b': {read: true}\n  'a/*': {read: false}\n"));
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "a/b", &bob), DENY);
    permissions_free(p);
    /* length is the pattern as written ($userId counts 7 characters), not what it matches:
     * u/$userId (9) beats u/alice* (8) */
    p = parse_ok(with_record("  '*': {read: true}\n  'u/$userId': {read: false}\n  'u/alice*': {read: true}\n"));
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "u/alice", &bob), DENY);
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "u/alice/x", &bob), ALLOW);
    permissions_free(p);
    /* JavaScript's key order: index-like keys first, so "1*" comes after "12" */
    p = parse_ok(with_record("  '*': {read: true}\n  '1*': {read: true}\n  '12': {read: false}\n"));
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "12", &bob), ALLOW);
    permissions_free(p);
    p = parse_ok(with_record("  '*': {read: true}\n  '1*': {read: false}\n  'x2': {read: true}\n"));
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "12", &bob), DENY);
    permissions_free(p);
    /* a pattern without the action is skipped for it, not a denial */
    p = parse_ok(with_record("  '*': {read: true, write: false}\n  'doc/*': {write: true}\n"));
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "doc/1", &bob), ALLOW);
    assert_int_equal(check(p, PERM_RECORD, PERM_WRITE, "doc/1", &bob), ALLOW);
    assert_int_equal(check(p, PERM_RECORD, PERM_WRITE, "other", &bob), DENY);
    assert_int_equal(check(p, PERM_RECORD, PERM_CREATE, "doc/1", &bob), DENY); /* nobody defines create */
    permissions_free(p);
}

static void test_pattern_semantics(void **state)
{
    (void)state;
    /* as deepstream's regex: '.' is any character, '*' stops at line breaks, regex syntax stays regex */
    permissions *p = parse_ok(with_record("  '*': {read: false}\n  'com.example/*': {read: true}\n"
                                          "  'v+/$x': {read: \"$x === '1'\"}\n"
                                          "  'item/(a|b)/$id': {read: \"$id === 'a' || $id === 'b'\"}\n"
                                          "  'end$': {read: true}\n"));
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "com.example/x", &bob), ALLOW);
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "comXexample/x", &bob), ALLOW);
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "com.example/a\nb", &bob), DENY);
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "vvv/1", &bob), ALLOW);
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "vvv/2", &bob), DENY);
    /* deepstream gives the variables the regex's groups in order: $id is the (a|b) group */
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "item/a/zzz", &bob), ALLOW);
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "item/c/zzz", &bob), DENY);
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "end", &bob), ALLOW);
    permissions_free(p);

    /* permpath directly: greedy captures, as the regex makes them */
    char err[128];
    permpath *pp = permpath_compile("$a*$b", 5, err, sizeof(err));
    assert_non_null(pp);
    rule_str v[2];
    assert_int_equal(permpath_match(pp, "xyz", 3, v), 1);
    assert_int_equal(v[0].len, 2); /* ([^/]+).*([^/]+): "xy", "", "z" */
    assert_int_equal(v[1].len, 1);
    assert_int_equal(permpath_match(pp, "x", 1, v), 0);
    assert_int_equal(permpath_match(pp, "a/b/c", 5, v), 1);
    assert_memory_equal(v[0].p, "a", 1);
    assert_memory_equal(v[1].p, "c", 1);
    assert_int_equal(permpath_nvars(pp), 2);
    assert_string_equal(permpath_vars(pp)[1], "$b");
    assert_int_equal(permpath_length(pp), 5);
    permpath_free(pp);
    pp = permpath_compile("u/$id", 5, err, sizeof(err));
    assert_int_equal(permpath_match(pp, "u/\xc3\xa9t\xc3\xa9", 7, v), 1); /* characters, not bytes */
    assert_int_equal(v[0].len, 5);
    assert_int_equal(permpath_match(pp, "u/a\nb", 5, v), 1); /* [^/] takes line breaks */
    assert_int_equal(permpath_match(pp, "u/", 2, v), 0);
    permpath_free(pp);
    pp = permpath_compile("a.b", 3, err, sizeof(err));
    assert_int_equal(permpath_match(pp, "a\xc3\xa9" "b", 4, NULL), 1);
    assert_int_equal(permpath_match(pp, "a\xe2\x80\xa8" "b", 5, NULL), 0); /* U+2028 */
    permpath_free(pp);
    pp = permpath_compile("\xc3\xa9/\xf0\x9f\x98\x80", 7, err, sizeof(err));
    assert_int_equal(permpath_length(pp), 4); /* UTF-16 code units, as JavaScript's length */
    assert_string_equal(permpath_text(pp), "\xc3\xa9/\xf0\x9f\x98\x80");
    permpath_free(pp);
    assert_null(permpath_compile("", 0, err, sizeof(err)));
    assert_string_equal(err, "path can't be empty");
}

static void test_pattern_bounds(void **state)
{
    (void)state;
    /* a pattern that backtracks badly on a long name: cut, the check fails, quickly */
    permissions *p = parse_ok(with_record("  '*': {read: true}\n  '*a*a*a*a*a*a*a*b': {read: true}\n"));
    char *name = xmalloc(4097);
    memset(name, 'a', 4096);
    name[4096] = '\0';
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, name, &bob), ERROR);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_non_null(strstr(why, "took more than 100000 steps"));
    assert_true((t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6 < 500);
    assert_int_equal(permissions_needs(p, PERM_RECORD, PERM_READ, name, 4096), 0);
    /* an honest pattern on the same name is fine */
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "aab", &bob), ALLOW);
    permissions_free(p);
    /* through PCRE2 too */
    p = parse_ok(with_record("  '*': {read: true}\n  '(a|aa)+': {read: false}\n"));
    name[40] = '!';
    name[41] = '\0';
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, name, &bob), ERROR);
    assert_non_null(strstr(why, "matching pattern \"(a|aa)+\""));
    assert_int_equal(check(p, PERM_RECORD, PERM_READ, "aaa", &bob), DENY);
    permissions_free(p);
    xfree(name);
}

typedef struct bad {
    const char *yaml;
    const char *error;
} bad;

static void test_validation_errors(void **state)
{
    (void)state;
    static const char base[] = "presence: {'*': {allow: true}}\nevent: {'*': {publish: true}}\n"
                               "rpc: {'*': {request: true}}\n";
    char yaml[2048];
    static const bad cases[] = {
        {"record: {'*': {read: true}}\nbogus: {}\n", "perms.yml: unexpected configuration section \"bogus\""},
        {"record: {'*': {read: true}, 'a$$x': {read: true}}\n",
         "perms.yml: section record, pattern \"a$$x\": invalid variable name $$"},
        {"record: {'*': {read: true}, '/a': {read: true}}\n",
         "perms.yml: section record, pattern \"/a\": path can't start with /"},
        {"record: {'*': {read: true}, 'a(': {read: true}}\n",
         "perms.yml: section record, pattern \"a(\": not a valid regular expression: missing closing parenthesis"},
        {"record: {'x': {read: true}}\n", "perms.yml: missing root entry \"*\" for section record"},
        {"record: {}\n", "perms.yml: empty section \"record\""},
        {"record: []\n", "perms.yml: section record: must be a mapping of patterns to actions"},
        {"record: {'*': {read: true, publish: true}}\n",
         "perms.yml: section record, pattern \"*\": unknown rule type publish in section record"},
        {"record: {'*': true}\n", "perms.yml: section record, pattern \"*\": must map actions to rules"},
        {"record: {'*': {read: 1}}\n", "perms.yml: section record, pattern \"*\", action read: rule must be a "
                                        "boolean or a string"},
        {"record: {'*': {read: }}\n", "perms.yml: section record, pattern \"*\", action read: rule must be a "
                                       "boolean or a string"},
        {"record: {'*': {read: ''}}\n", "perms.yml: section record, pattern \"*\", action read: rule can't be "
                                         "empty"},
        {"record: {'*': {write: 'process.exit()'}}\n",
         "perms.yml: section record, pattern \"*\", action write, column 9: function exit is not supported"},
        {"record: {'*': {read: true}, 'user/$id': {read: 'user.id === $userId'}}\n",
         "perms.yml: section record, pattern \"user/$id\", action read, column 13: $userId is not a variable of "
         "the pattern"},
        {"record: {'*': {read: 'data.firstname === \"Yasser\"'}}\n",
         "perms.yml: section record, pattern \"*\", action read, column 1: rule read for record does not support "
         "data"},
        {"record: {'*': {create: 'oldData.x'}}\n",
         "perms.yml: section record, pattern \"*\", action create, column 1: rule create for record does not "
         "support oldData"},
        {"record: {'*': {notify: 'user.id === \"a\" && data'}}\n",
         "perms.yml: section record, pattern \"*\", action notify, column 20: rule notify for record does not "
         "support data"},
        {"record: {'*': {read: 'a b'}}\n", "perms.yml: section record, pattern \"*\", action read, column 1: "
                                            "unknown identifier a"},
        {"record: {'*': {read: 'new Date()'}}\n", "perms.yml: section record, pattern \"*\", action read, column 1: "
                                                   "rule can't contain the new keyword"},
        {"record: {'*': {read: true}, \"a\\nb\": {read: true, x: 1}}\n",
         "perms.yml: section record, pattern \"a\\x0ab\": unknown rule type x in section record"},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(yaml, sizeof(yaml), "%s%s", base, cases[i].yaml);
        const char *got = load_error(yaml);
        if (strcmp(got, cases[i].error) != 0) {
            print_error("  %s\n    expected %s\n    got      %s\n", cases[i].yaml, cases[i].error, got);
            failures++;
        }
    }
    if (failures)
        fail_msg("%d validation errors differ", failures);
    /* events and rpc: data and oldData as rules-map.ts says */
    assert_string_equal(load_error("presence: {'*': {allow: true}}\nrecord: {'*': {read: true}}\n"
                                   "rpc: {'*': {provide: 'user.id === $userId && data.price === 500'}}\n"
                                   "event: {'*': {publish: true}}\n"),
                        "perms.yml: section rpc, pattern \"*\", action provide, column 13: $userId is not a variable "
                        "of the pattern");
    assert_string_equal(load_error("presence: {'*': {allow: true}}\nrecord: {'*': {read: true}}\n"
                                   "rpc: {'*': {provide: 'data.price === 500'}}\nevent: {'*': {publish: true}}\n"),
                        "perms.yml: section rpc, pattern \"*\", action provide, column 1: rule provide for rpc does "
                        "not support data");
    assert_string_equal(load_error("presence: {'*': {allow: true}}\nrecord: {'*': {read: true}}\n"
                                   "rpc: {'*': {request: true}}\nevent: {'*': {publish: 'oldData.price < 500'}}\n"),
                        "perms.yml: section event, pattern \"*\", action publish, column 1: rule publish for event "
                        "does not support oldData");
    assert_string_equal(load_error("presence: {'*': {allow: 'data'}}\nrecord: {'*': {read: true}}\n"
                                   "rpc: {'*': {request: true}}\nevent: {'*': {publish: true}}\n"),
                        "perms.yml: section presence, pattern \"*\", action allow, column 1: rule allow for presence "
                        "does not support data");
    /* what every action may read loads */
    assert_string_equal(load_error("presence: {'*': {allow: \"_('x') && user.data\"}}\n"
                                   "record: {'*': {read: 'oldData', write: 'data && oldData', delete: 'oldData',"
                                   " create: \"_(name)\", listen: 'name', notify: 'now'}}\n"
                                   "rpc: {'*': {request: 'data', provide: 'user.id'}}\n"
                                   "event: {'*': {publish: 'data', subscribe: 'data', listen: 'true'}}\n"),
                        "loaded");
    /* whole-file errors */
    assert_string_equal(load_error("record: {'*': {read: true}}\nevent: {'*': {publish: true}}\nrpc: {'*': {request: true}}\n"),
                        "perms.yml: missing configuration section \"presence\"");
    assert_string_equal(load_error(""), "perms.yml: missing configuration section \"record\"");
    assert_string_equal(load_error("- a\n- b\n"), "perms.yml: the permissions must be a mapping of sections (record, "
                                                  "event, rpc, presence)");
    assert_string_equal(load_error("record: {'*': {read: true}\n"),
                        "perms.yml: line 2: did not find expected ',' or '}'");
    char err[256];
    assert_null(permissions_parse(deepstream_default, strlen(deepstream_default), "perms.yml", 0, err, sizeof(err)));
    assert_string_equal(err, "perms.yml: maxRuleIterations must be at least 1");
}

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/eddy-test-permissions-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, app, strlen(app)), (ssize_t)strlen(app));
    close(fd);
    char err[512];
    permissions *p = permissions_load(path, 3, err, sizeof(err));
    assert_non_null(p);
    assert_int_equal(check(p, PERM_RECORD, PERM_WRITE, "user-profile/bob", &bob), ALLOW);
    permissions_free(p);
    /* a rule error names the file */
    FILE *f = fopen(path, "w");
    fputs(deepstream_default, f);
    fputs("  \"x/$id\":\n    request: \"$id.substr(1)\"\n", f);
    fclose(f);
    assert_null(permissions_load(path, 3, err, sizeof(err)));
    char expect[512];
    snprintf(expect, sizeof(expect), "%s: section rpc, pattern \"x/$id\", action request, column 5: function substr is "
             "not supported", path);
    assert_string_equal(err, expect);
    unlink(path);
    assert_null(permissions_load(path, 3, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot open"));
}

/* Many threads check one set at once: same answers, nothing shared written. */
typedef struct worker {
    const permissions *p;
    int wrong;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    char my_why[256], my_need[64];
    for (int i = 0; i < 20000; i++) {
        const perm_user *u = i % 2 ? &alice : &bob;
        perm_request req = {.section = PERM_RECORD, .action = PERM_WRITE, .name = "user-profile/alice",
                            .name_len = 18, .user = u};
        enum perm_verdict v = permissions_check(w->p, &req, NULL, my_need, sizeof(my_need), my_why, sizeof(my_why));
        w->wrong += v != (u == &alice ? ALLOW : DENY);
        req.name = "counter/x";
        req.name_len = 9;
        req.data = "{\"count\":2}";
        req.data_len = 11;
        req.old_data = "{\"count\":1}";
        req.old_data_len = 11;
        w->wrong += permissions_check(w->p, &req, NULL, my_need, sizeof(my_need), my_why, sizeof(my_why)) != ALLOW;
        req.section = PERM_EVENT;
        req.action = PERM_PUBLISH;
        req.name = "place/Rome";
        req.name_len = 10;
        req.data = "{\"address\":{\"city\":\"rome\"}}";
        req.data_len = strlen(req.data);
        w->wrong += permissions_check(w->p, &req, NULL, my_need, sizeof(my_need), my_why, sizeof(my_why)) != ALLOW;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    permissions *p = parse_ok(app);
    pthread_t t[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){.p = p};
        pthread_create(&t[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].wrong, 0);
    }
    permissions_free(p);
}

/* deepstream's `action` for the checks it derives from a message */
static void test_wire_action(void **state)
{
    (void)state;
    assert_int_equal(perm_wire_action(PERM_EVENT, PERM_PUBLISH, 2), 2);
    assert_int_equal(perm_wire_action(PERM_RECORD, PERM_CREATE, 16), 15);     /* CREATEANDUPDATE: CREATE */
    assert_int_equal(perm_wire_action(PERM_RECORD, PERM_WRITE, 16), 18);      /* ... then UPDATE */
    assert_int_equal(perm_wire_action(PERM_RECORD, PERM_WRITE, 17), 19);      /* CREATEANDPATCH: PATCH */
    assert_int_equal(perm_wire_action(PERM_RECORD, PERM_READ, 23), 3);        /* SUBSCRIBECREATEANDREAD: READ */
    assert_int_equal(perm_wire_action(PERM_RECORD, PERM_READ, 21), 21);       /* SUBSCRIBEANDHEAD as sent */
    assert_int_equal(perm_wire_action(PERM_RECORD, PERM_READ, 5), 5);         /* HEAD */
    assert_int_equal(perm_wire_action(PERM_RECORD, PERM_DELETE, 0), 9);       /* a delete operation: DELETE */
    /* a rule on `action`: read allowed, but not by HEAD */
    static const char yml[] = "presence:\n  \"*\":\n    allow: true\nrecord:\n  \"*\":\n    read: \"action !== 5\"\n"
                              "event:\n  \"*\":\n    publish: true\nrpc:\n  \"*\":\n    request: true\n";
    char err[256];
    permissions *p = permissions_parse(yml, strlen(yml), "t.yml", 3, err, sizeof(err));
    assert_non_null(p);
    perm_user u = {.id = "a", .id_len = 1, .authenticated = true};
    perm_request req = {.section = PERM_RECORD, .action = PERM_READ, .name = "r", .name_len = 1, .user = &u,
                        .message_action = 3};
    char wanted[64];
    assert_int_equal(permissions_check(p, &req, NULL, wanted, sizeof(wanted), NULL, 0), PERM_VERDICT_ALLOW);
    req.message_action = 5;
    assert_int_equal(permissions_check(p, &req, NULL, wanted, sizeof(wanted), NULL, 0), PERM_VERDICT_DENY);
    permissions_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_action),
        cmocka_unit_test(test_deepstream_default),
        cmocka_unit_test(test_app_file),
        cmocka_unit_test(test_cross_references),
        cmocka_unit_test(test_specificity),
        cmocka_unit_test(test_pattern_semantics),
        cmocka_unit_test(test_pattern_bounds),
        cmocka_unit_test(test_validation_errors),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
