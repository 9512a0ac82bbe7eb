/* bench_rules.c - what one permission check costs (common/permissions.c,
 * rules.c): permissions_check in a loop for a few rules, from a constant
 * `true` to rules that parse data and oldData or read a record, with the
 * pattern search of a small and of a 60-pattern section. A benchmark, not a
 * test: it prints ns per check and checks only that every verdict is the
 * expected one.
 *
 * usage: bench_rules [checks per case] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "permissions.h"

static const char *base =
    "presence: {'*': {allow: true}}\n"
    "event: {'*': {publish: true, subscribe: true}}\n"
    "rpc: {'*': {request: true, provide: true}}\n"
    "record:\n"
    "  '*': {read: true, write: false, create: true}\n"
    "  'user-profile/$userId': {write: 'user.id === $userId'}\n"
    "  'counter/$name': {write: 'data.count > oldData.count'}\n"
    "  'admin/*': {write: \"user.data.role === 'admin'\"}\n"
    "  'purchase/$id': {create: \"_('item/' + $id).stock > 0\"}\n"
    "  'chat/$room/$msg': {write: \"$room.startsWith('public-') && data.text.length < 500 && "
    "data.text.toLowerCase().indexOf('spam') === -1\"}\n";

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int failures;

static void run(const char *label, const permissions *p, const perm_request *req, const perm_records *recs,
                enum perm_verdict expect, long n)
{
    char need[128], why[256];
    for (long i = 0; i < n / 10; i++) /* warm up */
        permissions_check(p, req, recs, need, sizeof(need), why, sizeof(why));
    long wrong = 0;
    double t0 = now_ns();
    for (long i = 0; i < n; i++)
        wrong += permissions_check(p, req, recs, need, sizeof(need), why, sizeof(why)) != expect;
    double ns = (now_ns() - t0) / (double)n;
    printf("%-58s %8.1f ns/check%s\n", label, ns, wrong ? "  WRONG VERDICT" : "");
    failures += wrong != 0;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 2000000;
    char err[512];
    permissions *p = permissions_parse(base, strlen(base), "bench", 3, err, sizeof(err));
    if (p == NULL) {
        fprintf(stderr, "bench_rules: %s\n", err);
        return 1;
    }
    /* the same with 60 more patterns in the record section, none matching */
    size_t cap = strlen(base) + 60 * 80;
    char *big = malloc(cap);
    size_t len = (size_t)snprintf(big, cap, "%s", base);
    for (int i = 0; i < 60; i++)
        len += (size_t)snprintf(big + len, cap - len, "  'app%02d/$a/items/*': {read: 'user.id === $a', write: true}\n", i);
    permissions *many = permissions_parse(big, len, "bench-big", 3, err, sizeof(err));
    if (many == NULL) {
        fprintf(stderr, "bench_rules: %s\n", err);
        return 1;
    }
    perm_user alice = {.id = "alice", .id_len = 5, .authenticated = true, .data = "{\"role\":\"admin\"}",
                       .data_len = 16};
    perm_request req = {.section = PERM_RECORD, .user = &alice, .now_ms = 1700000000000};
#define NAME(s) (req.name = (s), req.name_len = strlen(s))

    printf("# %ld checks per case\n", n);
    req.action = PERM_READ;
    NAME("doc/1");
    run("true (read on \"*\")", p, &req, NULL, PERM_VERDICT_ALLOW, n);
    run("true, 66-pattern section", many, &req, NULL, PERM_VERDICT_ALLOW, n);
    req.action = PERM_WRITE;
    NAME("user-profile/alice");
    run("user.id === $userId", p, &req, NULL, PERM_VERDICT_ALLOW, n);
    run("user.id === $userId, 66-pattern section", many, &req, NULL, PERM_VERDICT_ALLOW, n);
    NAME("user-profile/bob");
    run("user.id === $userId (denied, why written)", p, &req, NULL, PERM_VERDICT_DENY, n);
    NAME("counter/c");
    req.data = "{\"count\":3,\"by\":\"alice\"}";
    req.data_len = strlen(req.data);
    req.old_data = "{\"count\":2,\"by\":\"bob\"}";
    req.old_data_len = strlen(req.old_data);
    run("data.count > oldData.count (two small JSON parses)", p, &req, NULL, PERM_VERDICT_ALLOW, n / 4);
    NAME("admin/x");
    run("user.data.role === 'admin' (serverData parsed)", p, &req, NULL, PERM_VERDICT_ALLOW, n / 4);
    NAME("chat/public-1/m1");
    req.data = "{\"text\":\"Hello there, this is a message of moderate length.\"}";
    req.data_len = strlen(req.data);
    run("$room.startsWith && data.text.toLowerCase().indexOf", p, &req, NULL, PERM_VERDICT_ALLOW, n / 4);
    req.action = PERM_CREATE;
    req.data = req.old_data = NULL;
    NAME("purchase/42");
    perm_records *recs = perm_records_new();
    perm_records_put(recs, "item/42", 7, "{\"stock\":5}", 11);
    run("_('item/' + $id).stock > 0 (record at hand)", p, &req, recs, PERM_VERDICT_ALLOW, n / 4);
    perm_records_free(recs);
    permissions_free(p);
    permissions_free(many);
    free(big);
    return failures ? 1 : 0;
}
