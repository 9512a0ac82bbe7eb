/* fuzz_rules.c - libFuzzer target for the permission rule language and the
 * permissions file (common/rules.c, rules_eval.c, jsval.c, permpath.c,
 * permissions.c): compile and evaluate any rule over any data, load any
 * permissions YAML and check any name against it, match any pattern
 * against any name. Not for how brokers and nodes use the verdicts.
 *
 * Input: one byte of mode, then parts separated by '\0'.
 *   mode & 3 == 0: rule \0 data \0 oldData \0 name. The rule is compiled
 *     (data and oldData allowed unless mode & 4, max_rule_iterations
 *     1 + (mode >> 3 & 3)) and, when it compiles, evaluated until it stops
 *     asking for records: every record it asks for is given (data's text,
 *     no such record, or text that is not JSON, chosen by the name), and
 *     must be one it had not asked for; evaluating again gives the same
 *     outcome and value. A compile error has a message and a column within
 *     the rule.
 *   mode & 3 == 1: yaml \0 name \0 data. permissions_parse; an error is one
 *     line; a set that loads is checked for every section and action with
 *     the name, data and oldData, fetching records as above.
 *   mode & 3 == 2 or 3: pattern \0 name. permpath_compile and match; a
 *     pattern of text, '.', '*' and variables must agree with PCRE2 running
 *     the regex deepstream builds (match or not, and every variable's value)
 *     on a name that is valid UTF-8 without U+2028/U+2029. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcre2.h>

#include "jsval.h"
#include "log.h"
#include "mem.h"
#include "permissions.h"
#include "permpath.h"
#include "rules.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_threshold = LOG_NONE;
    return 0;
}

static void fail_n(const char *what, const char *detail, size_t len)
{
    fprintf(stderr, "fuzz_rules: %s: %.*s\n", what, (int)(len < 400 ? len : 400), detail);
    abort();
}

static void fail(const char *what, const char *detail)
{
    fail_n(what, detail, strlen(detail));
}

typedef struct part {
    const char *p;
    size_t len;
} part;

/* Splits data at '\0' into at most n parts (missing ones are empty). */
static void split(const uint8_t *data, size_t size, part *parts, int n)
{
    const char *s = (const char *)data, *end = s + size;
    for (int i = 0; i < n; i++) {
        const char *z = i < n - 1 ? memchr(s, '\0', (size_t)(end - s)) : NULL;
        parts[i].p = s;
        parts[i].len = (size_t)((z ? z : end) - s);
        s = z ? z + 1 : end;
    }
}

/* ---- records a rule asks for ---- */

/* A rule asks for at most one record per _() it evaluates per run: no more
 * than its nodes times its runs. */
#define MAX_RECORDS (RULES_MAX_NODES * 4 + 1)

typedef struct store {
    char **name;
    size_t *len;
    const char **json;
    size_t *json_len;
    int n, cap;
    part data;
} store;

static int store_get(void *ctx, const char *name, size_t len, const char **json, size_t *json_len)
{
    store *s = ctx;
    for (int i = 0; i < s->n; i++)
        if (s->len[i] == len && memcmp(s->name[i], name, len) == 0) {
            *json = s->json[i];
            *json_len = s->json_len[i];
            return 1;
        }
    return 0;
}

/* Gives a record asked for: its content chosen by the name. */
static void store_add(store *s, const char *name)
{
    if (s->n == MAX_RECORDS)
        fail("records", "more asked for than a rule can");
    size_t len = strlen(name);
    for (int i = 0; i < s->n; i++)
        if (s->len[i] == len && memcmp(s->name[i], name, len) == 0)
            fail("a record asked for again", name);
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->name = xrealloc(s->name, (size_t)s->cap * sizeof(*s->name));
        s->len = xrealloc(s->len, (size_t)s->cap * sizeof(*s->len));
        s->json = xrealloc(s->json, (size_t)s->cap * sizeof(*s->json));
        s->json_len = xrealloc(s->json_len, (size_t)s->cap * sizeof(*s->json_len));
    }
    unsigned h = 0;
    for (size_t i = 0; i < len; i++)
        h = h * 31 + (unsigned char)name[i];
    s->name[s->n] = xstrdup(name);
    s->len[s->n] = len;
    switch (h % 4) {
    case 0: s->json[s->n] = NULL; s->json_len[s->n] = 0; break;
    case 1: s->json[s->n] = "{\"a\":{\"b\":[1,\"x\"]},\"ref\":\"r\",\"n\":3}"; s->json_len[s->n] = 35; break;
    case 2: s->json[s->n] = "{"; s->json_len[s->n] = 1; break;
    default: s->json[s->n] = s->data.p; s->json_len[s->n] = s->data.len; break;
    }
    s->n++;
}

static void store_free(store *s)
{
    for (int i = 0; i < s->n; i++)
        xfree(s->name[i]);
    xfree(s->name);
    xfree(s->len);
    xfree(s->json);
    xfree(s->json_len);
}

/* ---- mode 0: one rule ---- */

static void run_rule(const part *pt, uint8_t mode)
{
    static const char *const vars[] = {"$a", "$b"};
    rule_scope scope = {.vars = vars, .nvars = 2, .data = !(mode & 4), .old_data = !(mode & 4),
                        .section = "record", .action = "write"};
    char err[256];
    size_t col = 0;
    rule *r = rule_compile(pt[0].p, pt[0].len, &scope, err, sizeof(err), &col);
    if (r == NULL) {
        if (err[0] == '\0')
            fail("compile error without a message", "");
        if (col > pt[0].len + 1)
            fail("compile error past the rule's end", err);
        return;
    }
    store s = {.data = pt[1]};
    /* the name's first two '/'-separated segments are $a and $b */
    rule_str v[2] = {{NULL, 0}, {NULL, 0}};
    const char *slash = memchr(pt[3].p, '/', pt[3].len);
    v[0] = (rule_str){pt[3].p, slash ? (size_t)(slash - pt[3].p) : pt[3].len};
    if (slash)
        v[1] = (rule_str){slash + 1, pt[3].len - (size_t)(slash + 1 - pt[3].p)};
    rule_input in = {
        .name = pt[3].p, .name_len = pt[3].len, .vars = v, .nvars = 2,
        .user_id = "u", .user_id_len = 1, .authenticated = mode & 32,
        .user_data = "{\"role\":\"admin\",\"tags\":[\"a\"]}", .user_data_len = 30,
        .data = pt[1].len ? pt[1].p : NULL, .data_len = pt[1].len,
        .old_data = pt[2].len ? pt[2].p : NULL, .old_data_len = pt[2].len,
        .now_ms = 1700000000000, .record = store_get, .record_ctx = &s,
        .max_iterations = 1 + (mode >> 3 & 3),
    };
    char need[4200], why[512], show[512], show2[512];
    enum rule_outcome o;
    for (;;) {
        need[0] = '\0';
        o = rule_eval_show(r, &in, need, sizeof(need), why, sizeof(why), show, sizeof(show));
        if (o != RULE_NEED_RECORD)
            break;
        store_add(&s, need);
    }
    if ((int)o < 0 || o > RULE_ERROR)
        fail("outcome", "out of range");
    enum rule_outcome o2 = rule_eval_show(r, &in, need, sizeof(need), why, sizeof(why), show2, sizeof(show2));
    if (o2 != o || ((o == RULE_TRUE || o == RULE_FALSE) && strcmp(show, show2) != 0))
        fail("a second evaluation differs", show);
    store_free(&s);
    rule_free(r);
}

/* ---- mode 1: a permissions file ---- */

static const struct {
    enum perm_section s;
    enum perm_action a;
} pairs[] = {
    {PERM_RECORD, PERM_CREATE}, {PERM_RECORD, PERM_WRITE}, {PERM_RECORD, PERM_READ}, {PERM_RECORD, PERM_DELETE},
    {PERM_RECORD, PERM_LISTEN}, {PERM_RECORD, PERM_NOTIFY}, {PERM_EVENT, PERM_PUBLISH},
    {PERM_EVENT, PERM_SUBSCRIBE}, {PERM_EVENT, PERM_LISTEN}, {PERM_RPC, PERM_PROVIDE}, {PERM_RPC, PERM_REQUEST},
    {PERM_PRESENCE, PERM_ALLOW},
};

static void run_permissions(const part *pt, uint8_t mode)
{
    char err[1024];
    permissions *p = permissions_parse(pt[0].p, pt[0].len, "fuzz.yml", 1 + (mode >> 2 & 3), err, sizeof(err));
    if (p == NULL) {
        if (err[0] == '\0' || strchr(err, '\n') != NULL)
            fail("load error not one line", err);
        return;
    }
    perm_user u = {.id = "u", .id_len = 1, .authenticated = true, .data = "{\"role\":\"admin\"}", .data_len = 16};
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        perm_request req = {.section = pairs[i].s, .action = pairs[i].a, .name = pt[1].p, .name_len = pt[1].len,
                            .user = &u, .data = pt[2].len ? pt[2].p : NULL, .data_len = pt[2].len,
                            .old_data = pt[2].len ? pt[2].p : NULL, .old_data_len = pt[2].len,
                            .now_ms = 1700000000000};
        (void)permissions_needs(p, pairs[i].s, pairs[i].a, pt[1].p, pt[1].len);
        perm_records *recs = perm_records_new();
        char need[4200], why[512];
        enum perm_verdict v;
        for (int round = 0;; round++) {
            v = permissions_check(p, &req, recs, need, sizeof(need), why, sizeof(why));
            if (v != PERM_VERDICT_NEED_RECORD)
                break;
            if (round == MAX_RECORDS)
                fail("permissions_check", "asks for records without end");
            perm_records_put(recs, need, strlen(need), round % 2 ? "{\"a\":1}" : NULL, 7);
        }
        if ((int)v < 0 || v > PERM_VERDICT_ERROR)
            fail("verdict", "out of range");
        perm_records_free(recs);
    }
    permissions_free(p);
}

/* ---- mode 2: a pattern against PCRE2 ---- */

/* Valid UTF-8 (no overlong forms, surrogates or values past U+10FFFF), and
 * without U+2028/U+2029, which JavaScript's `.` refuses and PCRE2's does not. */
static bool plain_utf8(const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t sz;
        uint32_t cp = js_utf8_decode(s + i, len - i, &sz);
        if ((sz == 1 && cp >= 0x80) || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0x2028 || cp == 0x2029)
            return false;
        i += sz;
    }
    return true;
}

static void run_pattern(const part *pt)
{
    char err[256];
    permpath *pp = permpath_compile(pt[0].p, pt[0].len, err, sizeof(err));
    if (pp == NULL)
        return;
    rule_str vars[RULES_MAX_VARS];
    int m = permpath_match(pp, pt[1].p, pt[1].len, vars);
    size_t nvars = permpath_nvars(pp);
    if (m == 1)
        for (size_t i = 0; i < nvars; i++)
            if (vars[i].p != NULL && (vars[i].p < pt[1].p || vars[i].p + vars[i].len > pt[1].p + pt[1].len))
                fail_n("a variable outside the name", pt[0].p, pt[0].len);
    bool plain = true; /* no regex syntax beyond what the tokens say */
    for (size_t i = 0; i < pt[0].len; i++)
        if (strchr("\\^|?+()[]{}", pt[0].p[i]) != NULL)
            plain = false;
    if (m < 0 || !plain || !plain_utf8(pt[0].p, pt[0].len) || !plain_utf8(pt[1].p, pt[1].len)) {
        permpath_free(pp);
        return;
    }
    /* the reference: deepstream's regex, run by PCRE2 */
    char *src = xmalloc(pt[0].len * 8 + 3);
    size_t n = 0;
    src[n++] = '^';
    for (size_t i = 0; i < pt[0].len;) {
        char c = pt[0].p[i];
        if (c == '*') {
            memcpy(src + n, ".*", 2), n += 2, i++;
        } else if (c == '$' && i + 1 < pt[0].len) {
            i++;
            while (i < pt[0].len && strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
                                           pt[0].p[i]) != NULL && pt[0].p[i] != '\0')
                i++;
            memcpy(src + n, "([^/]+)", 7), n += 7;
        } else
            src[n++] = pt[0].p[i++];
    }
    src[n++] = '$';
    int code;
    PCRE2_SIZE off;
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    pcre2_set_newline(cc, PCRE2_NEWLINE_ANYCRLF);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)src, n, PCRE2_UTF | PCRE2_DOLLAR_ENDONLY, &code, &off, cc);
    pcre2_compile_context_free(cc);
    xfree(src);
    if (re == NULL)
        fail_n("the reference regex does not compile", pt[0].p, pt[0].len);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    pcre2_set_match_limit(mc, 1000000);
    int rc = pcre2_match(re, (PCRE2_SPTR)(pt[1].len ? pt[1].p : ""), pt[1].len, 0, 0, md, mc);
    if (rc >= 0 || rc == PCRE2_ERROR_NOMATCH) {
        if ((rc >= 0) != (m == 1))
            fail_n("permpath and the regex disagree on a match", pt[0].p, pt[0].len);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        for (size_t i = 0; rc >= 0 && i < nvars; i++) {
            size_t g = i + 1;
            if (ov[2 * g] == PCRE2_UNSET || vars[i].p == NULL || (size_t)(vars[i].p - pt[1].p) != ov[2 * g] ||
                vars[i].len != ov[2 * g + 1] - ov[2 * g])
                fail_n("permpath and the regex capture differently", pt[0].p, pt[0].len);
        }
    }
    pcre2_match_context_free(mc);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    permpath_free(pp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    uint8_t mode = data[0];
    part pt[4];
    split(data + 1, size - 1, pt, (mode & 3) == 0 ? 4 : (mode & 3) == 1 ? 3 : 2);
    if ((mode & 3) == 0)
        run_rule(pt, mode);
    else if ((mode & 3) == 1)
        run_permissions(pt, mode);
    else
        run_pattern(pt);
    return 0;
}
