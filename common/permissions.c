/* permissions.c - deepstream's Valve permissions (see permissions.h): a
 * permissions.yml read through yamljson, validated as deepstream's
 * config-validator does and compiled once (patterns: permpath.c, rules:
 * rules.c); a check picks the rule deepstream would pick and evaluates it
 * (rules_eval.c).
 *
 * What deepstream does, and this does (src/services/permission/valve/):
 * every section (record, event, rpc, presence) must be present, not empty,
 * and hold the root pattern "*"; a section, or an action in a section, it
 * does not know fails the load (config-validator.ts, config-schema.ts). For
 * a check, the candidates are the section's patterns that define the
 * action; of those that match the name, the longest pattern (as written,
 * in UTF-16 code units) wins, and of equally long ones the last in the
 * file's key order (config-permission.ts getCompiledRulesForName: `>=`);
 * no candidate matching is a denial. Key order is JavaScript's: keys that
 * are array indices ("0", "42") first, ascending, then the others as
 * written. Which actions carry `data` and `oldData` is rules-map.ts's
 * table, below. Not for what an operation means (broker/, node/). */
#include "permissions.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mem.h"
#include "permpath.h"
#include "rules.h"
#include "yamljson.h"

/* ---- the schema: deepstream's config-schema.ts and rules-map.ts RULE_TYPES ---- */

typedef struct action_def {
    const char *name;
    enum perm_action action;
    bool data;     /* the rule may read `data` */
    bool old_data; /* the rule may read `oldData` */
} action_def;

typedef struct section_def {
    const char *name;
    const action_def *actions;
    size_t nactions;
} section_def;

static const action_def record_actions[] = {
    {"write", PERM_WRITE, true, true},     {"read", PERM_READ, false, true},
    {"create", PERM_CREATE, false, false}, {"delete", PERM_DELETE, false, true},
    {"listen", PERM_LISTEN, false, false}, {"notify", PERM_NOTIFY, false, false},
};
static const action_def event_actions[] = {
    {"publish", PERM_PUBLISH, true, false},
    {"subscribe", PERM_SUBSCRIBE, true, false},
    {"listen", PERM_LISTEN, false, false},
};
static const action_def rpc_actions[] = {
    {"provide", PERM_PROVIDE, false, false},
    {"request", PERM_REQUEST, true, false},
};
static const action_def presence_actions[] = {
    {"allow", PERM_ALLOW, false, false},
};

#define DEFS(a) a, sizeof(a) / sizeof(a[0])
/* In deepstream's schema order, which is the order the validator reports in. */
static const section_def sections[PERM_SECTIONS] = {
    [PERM_RECORD] = {"record", DEFS(record_actions)},
    [PERM_EVENT] = {"event", DEFS(event_actions)},
    [PERM_RPC] = {"rpc", DEFS(rpc_actions)},
    [PERM_PRESENCE] = {"presence", DEFS(presence_actions)},
};

static const action_def *action_of(enum perm_section s, enum perm_action a)
{
    if ((unsigned)s >= PERM_SECTIONS)
        return NULL;
    for (size_t i = 0; i < sections[s].nactions; i++)
        if (sections[s].actions[i].action == a)
            return &sections[s].actions[i];
    return NULL;
}

/* ---- the compiled set ---- */

typedef struct entry {
    permpath *path;
    rule *rules[PERM_ACTIONS]; /* NULL: the pattern does not define the action */
    size_t order;              /* in the section's key order */
} entry;

/* A pattern that defines an action, with the byte a matching name must
 * start with (-1: any), so most patterns are passed over without a call. */
typedef struct cand {
    const entry *e;
    int first;
} cand;

struct permissions {
    entry *entries[PERM_SECTIONS];
    size_t nentries[PERM_SECTIONS];
    /* per section and action: the patterns that define it, most specific first */
    cand *cands[PERM_SECTIONS][PERM_ACTIONS];
    size_t ncands[PERM_SECTIONS][PERM_ACTIONS];
    int max_iterations;
    unsigned reads; /* PERM_NEEDS_* of every rule together */
};

void permissions_free(permissions *p)
{
    if (p == NULL)
        return;
    for (int s = 0; s < PERM_SECTIONS; s++) {
        for (size_t i = 0; i < p->nentries[s]; i++) {
            permpath_free(p->entries[s][i].path);
            for (int a = 0; a < PERM_ACTIONS; a++)
                rule_free(p->entries[s][i].rules[a]);
        }
        xfree(p->entries[s]);
        for (int a = 0; a < PERM_ACTIONS; a++)
            xfree(p->cands[s][a]);
    }
    xfree(p);
}

/* ---- errors: one line, naming what applies ---- */

/* text made printable on one line (quotes and control bytes escaped), cut */
static void shown(char *out, size_t out_len, const char *text, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 8 < out_len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (i == 100) {
            n += (size_t)snprintf(out + n, out_len - n, "...");
            break;
        }
        if (c < 0x20 || c == 0x7f)
            n += (size_t)snprintf(out + n, out_len - n, "\\x%02x", c);
        else if (c == '"' || c == '\\')
            n += (size_t)snprintf(out + n, out_len - n, "\\%c", c);
        else
            out[n++] = (char)c;
    }
    out[n] = '\0';
}

typedef struct where {
    char *err;
    size_t err_len;
    const char *source;
    const char *section;   /* NULL: not about a section */
    const char *pattern;   /* NULL: not about a pattern */
    size_t pattern_len;
    const char *action;    /* NULL: not about an action */
} where;

static void report(const where *w, size_t column, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void report(const where *w, size_t column, const char *fmt, ...)
{
    if (w->err == NULL || w->err_len == 0)
        return;
    char reason[512], pat[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    size_t n = (size_t)snprintf(w->err, w->err_len, "%s:", w->source);
    const char *sep = " ";
#define PUT(...)                                                                         \
    do {                                                                                 \
        if (n < w->err_len)                                                              \
            n += (size_t)snprintf(w->err + n, w->err_len - n, __VA_ARGS__);             \
    } while (0)
    if (w->section != NULL) {
        PUT("%ssection %s", sep, w->section);
        sep = ", ";
    }
    if (w->pattern != NULL) {
        shown(pat, sizeof(pat), w->pattern, w->pattern_len);
        PUT("%spattern \"%s\"", sep, pat);
        sep = ", ";
    }
    if (w->action != NULL) {
        PUT("%saction %s", sep, w->action);
        sep = ", ";
    }
    if (column > 0) {
        PUT("%scolumn %zu", sep, column);
        sep = ", ";
    }
    PUT("%s%s", sep[0] == ',' ? ": " : " ", reason);
#undef PUT
}

/* ---- loading ---- */

/* A canonical array index ("0", "42"; not "042" nor above 2^32 - 2): JavaScript lists those keys first. */
static bool index_key(const char *k, size_t len, unsigned long long *value)
{
    if (len == 0 || len > 10 || (len > 1 && k[0] == '0'))
        return false;
    unsigned long long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (k[i] < '0' || k[i] > '9')
            return false;
        v = v * 10 + (unsigned long long)(k[i] - '0');
    }
    *value = v;
    return v < 4294967295ull;
}

typedef struct key {
    const char *k;
    size_t len;
    json_t *v;
    bool index;
    unsigned long long num;
    size_t pos;
} key;

static int key_order(const void *a, const void *b)
{
    const key *x = a, *y = b;
    if (x->index != y->index)
        return x->index ? -1 : 1;
    if (x->index && x->num != y->num)
        return x->num < y->num ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* obj's keys in JavaScript's for-in order; owned by the caller (xfree). */
static key *keys_of(json_t *obj, size_t *count)
{
    size_t n = json_object_size(obj), i = 0;
    key *keys = xmalloc((n ? n : 1) * sizeof(key));
    const char *k;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach(obj, k, klen, v)
    {
        keys[i] = (key){.k = k, .len = klen, .v = v, .pos = i};
        keys[i].index = index_key(k, klen, &keys[i].num);
        i++;
    }
    qsort(keys, n, sizeof(key), key_order);
    *count = n;
    return keys;
}

static int specificity(const void *a, const void *b)
{
    const entry *x = ((const cand *)a)->e, *y = ((const cand *)b)->e;
    size_t lx = permpath_length(x->path), ly = permpath_length(y->path);
    if (lx != ly)
        return lx > ly ? -1 : 1;
    return x->order > y->order ? -1 : x->order < y->order; /* the later of equals wins */
}

/* Compiles one pattern's rules into e. */
static bool compile_entry(permissions *p, enum perm_section s, entry *e, json_t *rules, where *w)
{
    const section_def *sd = &sections[s];
    if (!json_is_object(rules)) {
        report(w, 0, "must map actions to rules");
        return false;
    }
    size_t n;
    key *keys = keys_of(rules, &n);
    bool ok = false;
    for (size_t i = 0; i < n; i++) {
        const action_def *ad = NULL;
        for (size_t j = 0; j < sd->nactions; j++)
            if (strlen(sd->actions[j].name) == keys[i].len && memcmp(sd->actions[j].name, keys[i].k, keys[i].len) == 0)
                ad = &sd->actions[j];
        if (ad == NULL) {
            char shown_key[256];
            shown(shown_key, sizeof(shown_key), keys[i].k, keys[i].len);
            report(w, 0, "unknown rule type %s in section %s", shown_key, sd->name);
            goto done;
        }
        w->action = ad->name;
        json_t *v = keys[i].v;
        rule *r = NULL;
        if (json_is_boolean(v))
            r = rule_constant(json_is_true(v));
        else if (json_is_string(v)) {
            rule_scope scope = {.vars = permpath_vars(e->path), .nvars = permpath_nvars(e->path),
                                .data = ad->data, .old_data = ad->old_data, .section = sd->name, .action = ad->name};
            char why[256];
            size_t column = 0;
            r = rule_compile(json_string_value(v), json_string_length(v), &scope, why, sizeof(why), &column);
            if (r == NULL) {
                report(w, column, "%s", why);
                goto done;
            }
        } else {
            report(w, 0, "rule must be a boolean or a string");
            goto done;
        }
        rule_free(e->rules[ad->action]); /* cannot happen: keys are unique */
        e->rules[ad->action] = r;
        w->action = NULL;
    }
    ok = true;
done:
    xfree(keys);
    (void)p;
    return ok;
}

static permissions *build(json_t *root, const char *source, int max_rule_iterations, char *err, size_t err_len)
{
    where w = {.err = err, .err_len = err_len, .source = source};
    if (max_rule_iterations < 1) {
        report(&w, 0, "maxRuleIterations must be at least 1");
        return NULL;
    }
    if (!json_is_object(root)) {
        report(&w, 0, "the permissions must be a mapping of sections (record, event, rpc, presence)");
        return NULL;
    }
    /* config-validator's steps, in its order */
    for (int s = 0; s < PERM_SECTIONS; s++) {
        json_t *v = json_object_get(root, sections[s].name);
        if (v == NULL) {
            report(&w, 0, "missing configuration section \"%s\"", sections[s].name);
            return NULL;
        }
        if (!json_is_object(v)) {
            w.section = sections[s].name;
            report(&w, 0, "must be a mapping of patterns to actions");
            return NULL;
        }
    }
    const char *k;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach(root, k, klen, v)
    {
        bool known = false;
        for (int s = 0; s < PERM_SECTIONS; s++)
            known |= strlen(sections[s].name) == klen && memcmp(sections[s].name, k, klen) == 0;
        if (!known) {
            char name[256];
            shown(name, sizeof(name), k, klen);
            report(&w, 0, "unexpected configuration section \"%s\"", name);
            return NULL;
        }
    }
    permissions *p = xcalloc(1, sizeof(*p));
    p->max_iterations = max_rule_iterations;
    key *keys[PERM_SECTIONS] = {0};
    size_t nkeys[PERM_SECTIONS] = {0};
    bool ok = false;
    for (int s = 0; s < PERM_SECTIONS; s++) {
        w.section = sections[s].name;
        json_t *sec = json_object_get(root, sections[s].name);
        keys[s] = keys_of(sec, &nkeys[s]);
        if (nkeys[s] == 0) {
            w.section = NULL;
            report(&w, 0, "empty section \"%s\"", sections[s].name);
            goto done;
        }
        p->entries[s] = xcalloc(nkeys[s], sizeof(entry));
        for (size_t i = 0; i < nkeys[s]; i++) {
            char why[256];
            entry *e = &p->entries[s][i];
            e->order = i;
            e->path = permpath_compile(keys[s][i].k, keys[s][i].len, why, sizeof(why));
            if (e->path == NULL) {
                w.pattern = keys[s][i].k;
                w.pattern_len = keys[s][i].len;
                report(&w, 0, "%s", why);
                goto done;
            }
            p->nentries[s]++;
        }
    }
    w.pattern = NULL;
    for (int s = 0; s < PERM_SECTIONS; s++)
        if (json_object_get(json_object_get(root, sections[s].name), "*") == NULL) {
            w.section = NULL;
            report(&w, 0, "missing root entry \"*\" for section %s", sections[s].name);
            goto done;
        }
    for (int s = 0; s < PERM_SECTIONS; s++) {
        w.section = sections[s].name;
        for (size_t i = 0; i < nkeys[s]; i++) {
            w.pattern = keys[s][i].k;
            w.pattern_len = keys[s][i].len;
            if (!compile_entry(p, (enum perm_section)s, &p->entries[s][i], keys[s][i].v, &w))
                goto done;
        }
        w.pattern = NULL;
        for (int a = 0; a < PERM_ACTIONS; a++) {
            size_t n = 0;
            for (size_t i = 0; i < p->nentries[s]; i++)
                n += p->entries[s][i].rules[a] != NULL;
            if (n == 0)
                continue;
            p->cands[s][a] = xmalloc(n * sizeof(cand));
            for (size_t i = 0; i < p->nentries[s]; i++)
                if (p->entries[s][i].rules[a] != NULL)
                    p->cands[s][a][p->ncands[s][a]++] =
                        (cand){.e = &p->entries[s][i], .first = permpath_first_byte(p->entries[s][i].path)};
            qsort(p->cands[s][a], n, sizeof(cand), specificity);
            for (size_t i = 0; i < n; i++)
                p->reads |= rule_reads(p->cands[s][a][i].e->rules[a]);
        }
    }
    ok = true;
done:
    for (int s = 0; s < PERM_SECTIONS; s++)
        xfree(keys[s]);
    if (!ok) {
        permissions_free(p);
        return NULL;
    }
    return p;
}

permissions *permissions_load(const char *path, int max_rule_iterations, char *err, size_t err_len)
{
    json_t *root = yaml_load_file(path, err, err_len);
    if (root == NULL)
        return NULL;
    permissions *p = build(root, path, max_rule_iterations, err, err_len);
    json_decref(root);
    return p;
}

permissions *permissions_parse(const char *yaml, size_t len, const char *source, int max_rule_iterations,
                               char *err, size_t err_len)
{
    if (source == NULL)
        source = "permissions";
    json_t *root = yaml_load_text(yaml, len, source, err, err_len);
    if (root == NULL)
        return NULL;
    permissions *p = build(root, source, max_rule_iterations, err, err_len);
    json_decref(root);
    return p;
}

/* ---- checks ---- */

/* The applicable pattern for (s, a, name): 1 (in *out, its variables in
 * vars), 0 none, -1 a match reached its limit (in *out). */
static int find_rule(const permissions *p, enum perm_section s, enum perm_action a, const char *name, size_t len,
                     rule_str *vars, const entry **out)
{
    if (action_of(s, a) == NULL)
        return 0;
    int first = len > 0 ? (unsigned char)name[0] : -2;
    for (size_t i = 0; i < p->ncands[s][a]; i++) {
        const cand *c = &p->cands[s][a][i];
        if (c->first >= 0 && c->first != first)
            continue;
        const entry *e = c->e;
        int m = permpath_match(e->path, name, len, vars);
        if (m != 0) {
            *out = e;
            return m;
        }
    }
    return 0;
}

unsigned permissions_needs(const permissions *p, enum perm_section section, enum perm_action action,
                           const char *name, size_t name_len)
{
    rule_str vars[RULES_MAX_VARS];
    const entry *e = NULL;
    if (find_rule(p, section, action, name, name_len, vars, &e) != 1)
        return 0;
    return rule_reads(e->rules[action]); /* RULE_READS_* are PERM_NEEDS_* */
}

/* deepstream's action numbers (RECORD_ACTION) for the checks it derives */
enum { DS_READ = 3, DS_DELETE = 9, DS_CREATE = 15, DS_CREATEANDUPDATE = 16, DS_CREATEANDPATCH = 17, DS_UPDATE = 18,
       DS_PATCH = 19, DS_SUBSCRIBEANDREAD = 22, DS_SUBSCRIBECREATEANDREAD = 23 };

int perm_wire_action(enum perm_section section, enum perm_action action, int message_action)
{
    if (section != PERM_RECORD)
        return message_action;
    switch (action) {
    case PERM_CREATE: return DS_CREATE; /* record-handler's permissionAction(CREATE) */
    case PERM_READ: /* readAndSubscribe checks READ */
        return message_action == DS_SUBSCRIBEANDREAD || message_action == DS_SUBSCRIBECREATEANDREAD ? DS_READ
                                                                                                   : message_action;
    case PERM_WRITE: /* createAndUpdate checks the write as an UPDATE or PATCH */
        return message_action == DS_CREATEANDUPDATE ? DS_UPDATE
               : message_action == DS_CREATEANDPATCH ? DS_PATCH
                                                     : message_action;
    case PERM_DELETE: return message_action > 0 ? message_action : DS_DELETE;
    default: return message_action;
    }
}

unsigned permissions_reads(const permissions *p)
{
    return p->reads;
}

typedef struct perm_record {
    char *name;
    size_t name_len;
    char *json; /* NULL: no such record */
    size_t json_len;
} perm_record;

struct perm_records {
    perm_record *v;
    size_t n, cap;
};

perm_records *perm_records_new(void)
{
    return xcalloc(1, sizeof(perm_records));
}

void perm_records_put(perm_records *r, const char *name, size_t name_len, const char *json, size_t json_len)
{
    perm_record *rec = NULL;
    for (size_t i = 0; i < r->n && rec == NULL; i++)
        if (r->v[i].name_len == name_len && memcmp(r->v[i].name, name, name_len) == 0)
            rec = &r->v[i];
    if (rec == NULL) {
        if (r->n == r->cap)
            r->v = xrealloc(r->v, (r->cap = r->cap ? r->cap * 2 : 4) * sizeof(*r->v));
        rec = &r->v[r->n++];
        rec->name = xstrndup(name, name_len);
        rec->name_len = name_len;
    } else
        xfree(rec->json);
    rec->json = json != NULL ? xstrndup(json, json_len) : NULL;
    rec->json_len = json != NULL ? json_len : 0;
}

void perm_records_free(perm_records *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++) {
        xfree(r->v[i].name);
        xfree(r->v[i].json);
    }
    xfree(r->v);
    xfree(r);
}

const char *perm_records_get(const perm_records *r, const char *name, size_t name_len, size_t *json_len, bool *known)
{
    *known = false;
    *json_len = 0;
    for (size_t i = 0; r != NULL && i < r->n; i++)
        if (r->v[i].name_len == name_len && memcmp(r->v[i].name, name, name_len) == 0) {
            *known = true;
            *json_len = r->v[i].json_len;
            return r->v[i].json;
        }
    return NULL;
}

char *perm_records_json(const perm_records *r)
{
    json_t *obj = json_object();
    for (size_t i = 0; r != NULL && i < r->n; i++) {
        json_t *v = r->v[i].json != NULL ? json_loadb(r->v[i].json, r->v[i].json_len, JSON_DECODE_ANY, NULL) : json_null();
        char *name = xstrndup(r->v[i].name, r->v[i].name_len);
        json_object_set_new(obj, name, v != NULL ? v : json_null());
        xfree(name);
    }
    char *text = json_dumps(obj, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(obj);
    char *out = xstrdup(text != NULL ? text : "{}");
    free(text); /* jansson's malloc */
    return out;
}

perm_records *perm_records_from_json(const char *json, size_t len)
{
    json_t *obj = json_loadb(json, len, 0, NULL);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return NULL;
    }
    perm_records *r = perm_records_new();
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        if (json_is_null(v)) {
            perm_records_put(r, k, strlen(k), NULL, 0);
            continue;
        }
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        perm_records_put(r, k, strlen(k), text, text != NULL ? strlen(text) : 0);
        free(text);
    }
    json_decref(obj);
    return r;
}

static int record_lookup(void *ctx, const char *name, size_t len, const char **json, size_t *json_len)
{
    const perm_records *r = ctx;
    for (size_t i = 0; r != NULL && i < r->n; i++)
        if (r->v[i].name_len == len && memcmp(r->v[i].name, name, len) == 0) {
            *json = r->v[i].json;
            *json_len = r->v[i].json_len;
            return 1;
        }
    return 0;
}

static void say(char *why, size_t why_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t why_len, const char *fmt, ...)
{
    if (why == NULL || why_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

enum perm_verdict permissions_check(const permissions *p, const perm_request *req, const perm_records *records,
                                    char *need, size_t need_len, char *why, size_t why_len)
{
    const action_def *ad = action_of(req->section, req->action);
    if (ad == NULL) {
        say(why, why_len, "action %d does not belong to section %d", (int)req->action, (int)req->section);
        return PERM_VERDICT_DENY;
    }
    const char *sname = sections[req->section].name;
    rule_str vars[RULES_MAX_VARS];
    const entry *e = NULL;
    int m = find_rule(p, req->section, req->action, req->name, req->name_len, vars, &e);
    if (m != 1) {
        if (why != NULL && why_len > 0) {
            char name[512];
            shown(name, sizeof(name), req->name, req->name_len);
            if (m == 0)
                say(why, why_len, "%s %s \"%s\": no pattern with a %s rule matches", sname, ad->name, name,
                    ad->name);
            else
                say(why, why_len, "%s %s \"%s\": matching pattern \"%s\" took more than %d steps", sname,
                    ad->name, name, permpath_text(e->path), PERMPATH_MATCH_STEPS);
        }
        return m == 0 ? PERM_VERDICT_DENY : PERM_VERDICT_ERROR;
    }
    const rule *r = e->rules[req->action];
    bool constant;
    if (rule_is_constant(r, &constant)) { /* the common `read: true` costs nothing more */
        if (!constant)
            say(why, why_len, "%s \"%s\" %s: false", sname, permpath_text(e->path), ad->name);
        return constant ? PERM_VERDICT_ALLOW : PERM_VERDICT_DENY;
    }
    const perm_user *u = req->user;
    rule_input in = {
        .name = req->name, .name_len = req->name_len,
        .vars = vars, .nvars = permpath_nvars(e->path),
        .user_id = u != NULL ? u->id : NULL, .user_id_len = u != NULL ? u->id_len : 0,
        .authenticated = u != NULL && u->authenticated,
        .user_data = u != NULL ? u->data : NULL, .user_data_len = u != NULL ? u->data_len : 0,
        .data = req->data, .data_len = req->data_len,
        .old_data = req->old_data, .old_data_len = req->old_data_len,
        .now_ms = req->now_ms,
        .action = perm_wire_action(req->section, req->action, req->message_action),
        .record = record_lookup, .record_ctx = (void *)records,
        .max_iterations = p->max_iterations,
    };
    char reason[256];
    switch (rule_eval(r, &in, need, need_len, reason, sizeof(reason))) {
    case RULE_TRUE: return PERM_VERDICT_ALLOW;
    case RULE_NEED_RECORD: return PERM_VERDICT_NEED_RECORD;
    case RULE_FALSE:
        say(why, why_len, "%s \"%s\" %s: false: %.200s", sname, permpath_text(e->path), ad->name, rule_text(r));
        return PERM_VERDICT_DENY;
    default:
        say(why, why_len, "%s \"%s\" %s: %s", sname, permpath_text(e->path), ad->name, reason);
        return PERM_VERDICT_ERROR;
    }
}
