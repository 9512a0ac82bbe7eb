/* rules_eval.c - the rule language's back half: the interpreter that walks a
 * compiled rule's tree (rules_tree.h) for one check, with JavaScript's
 * semantics for the values a rule meets, and deepstream's rule application
 * around it: runs repeated while the rule asks for records it has not read
 * yet, at most maxRuleIterations runs.
 *
 * Values are small structs on the C stack; JSON (data, oldData, user.data,
 * records) is parsed with jansson on first read and kept for the
 * evaluation; strings the rule builds go to a scratch arena whose first
 * block is on the stack, so a rule that reads no JSON and builds no string
 * allocates nothing. The recursion is bounded by the tree's depth
 * (RULES_MAX_DEPTH, checked at compile) and by RULES_MAX_JSON_DEPTH where a
 * value is walked (joining nested arrays).
 *
 * How deepstream's runs are replayed (rule-application.ts): a run calls the
 * rule with every record loaded so far; `_(name)` of a record not loaded
 * starts its load and answers undefined; a rule that reads `oldData` loads
 * the record itself during the first run. When loads started, the run's
 * result (or exception) is dropped and the rule runs again once they are
 * done; the run after maxRuleIterations fails. Here the records come from
 * the caller (rule_input.record): a record the caller lacks makes
 * RULE_NEED_RECORD, and each call replays the runs from the first, so the
 * verdict does not depend on the order the caller fetched in. Not for
 * parsing (rules.c) or for choosing the rule (permissions.c). */
#include "rules.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>

#include "jsval.h"
#include "mem.h"
#include "pattern.h"
#include "rules_tree.h"

/* ---- regular expressions ---- */

static pthread_once_t rx_once = PTHREAD_ONCE_INIT;
static pcre2_compile_context *rx_compile_ctx; /* read-only once made */
static pcre2_match_context *rx_match_ctx;

static void rx_contexts(void)
{
    rx_compile_ctx = pcre2_compile_context_create(NULL);
    rx_match_ctx = pcre2_match_context_create(NULL);
    if (rx_compile_ctx == NULL || rx_match_ctx == NULL)
        abort(); /* out of memory: as xmalloc */
    /* JavaScript's . and $ stop at \n and \r (not at U+2028/9 here) */
    pcre2_set_newline(rx_compile_ctx, PCRE2_NEWLINE_ANYCRLF);
    pcre2_set_match_limit(rx_match_ctx, PATTERN_MATCH_LIMIT);
    pcre2_set_depth_limit(rx_match_ctx, PATTERN_DEPTH_LIMIT);
    pcre2_set_heap_limit(rx_match_ctx, PATTERN_HEAP_LIMIT_KB);
}

rules_rx *rules_rx_compile(const char *src, size_t len, const char *flags, size_t flags_len, bool jit, char *err,
                           size_t err_len, size_t *off)
{
    *off = 0;
    uint32_t opts = PCRE2_UTF | PCRE2_ALT_BSUX | PCRE2_MATCH_UNSET_BACKREF | PCRE2_ALLOW_EMPTY_CLASS |
                    PCRE2_DOLLAR_ENDONLY;
    rules_rx tmp = {0};
    for (size_t i = 0; i < flags_len; i++) {
        char f = flags[i];
        if (strchr("dgimsuy", f) == NULL || f == '\0' || memchr(flags, f, i) != NULL) {
            snprintf(err, err_len, "invalid flags '%.*s'", (int)(flags_len < 16 ? flags_len : 16), flags);
            return NULL;
        }
        if (f == 'i')
            opts |= PCRE2_CASELESS;
        else if (f == 'm')
            opts |= PCRE2_MULTILINE;
        else if (f == 's')
            opts |= PCRE2_DOTALL;
        else if (f == 'g')
            tmp.global = true;
        else if (f == 'y')
            tmp.sticky = true;
    }
    if (len > PATTERN_MAX) {
        snprintf(err, err_len, "longer than %d bytes", PATTERN_MAX);
        return NULL;
    }
    pthread_once(&rx_once, rx_contexts);
    int code;
    PCRE2_SIZE eoff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(len ? src : ""), len, opts, &code, &eoff, rx_compile_ctx);
    if (re == NULL) {
        PCRE2_UCHAR msg[120];
        if (pcre2_get_error_message(code, msg, sizeof(msg)) < 0)
            strcpy((char *)msg, "invalid");
        snprintf(err, err_len, "%s", (const char *)msg);
        *off = eoff;
        return NULL;
    }
    rules_rx *rx = xmalloc(sizeof(*rx));
    *rx = tmp;
    rx->code = re;
    rx->jit = jit && pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    rx->src = src;
    rx->src_len = len;
    size_t n = 0;
    for (size_t i = 0; i < flags_len && n < sizeof(rx->flags) - 1; i++)
        rx->flags[n++] = flags[i];
    rx->flags[n] = '\0';
    return rx;
}

void rules_rx_free(rules_rx *rx)
{
    if (rx == NULL)
        return;
    pcre2_code_free(rx->code);
    xfree(rx);
}

/* ---- values ---- */

enum vtype { V_UNDEF, V_NULL, V_BOOL, V_NUM, V_STR, V_OBJ, V_JARR, V_ARR, V_USER, V_REGEX };

typedef struct value value;
typedef struct varr {
    size_t n;
    value *items;
} varr;

struct value {
    uint8_t t;
    union {
        bool b;
        double n;
        struct {
            const char *p;
            size_t len;
        } s;
        json_t *j;            /* V_OBJ, V_JARR */
        varr *a;              /* V_ARR */
        const rules_rx *rx;   /* V_REGEX */
    } u;
};

#define UNDEF ((value){.t = V_UNDEF})

static value vstr(const char *p, size_t len)
{
    value v = {.t = V_STR};
    v.u.s.p = p;
    v.u.s.len = len;
    return v;
}

static value vnum(double n)
{
    value v = {.t = V_NUM};
    v.u.n = n;
    return v;
}

static value vbool(bool b)
{
    value v = {.t = V_BOOL};
    v.u.b = b;
    return v;
}

static bool is_object(const value *v)
{
    return v->t >= V_OBJ;
}

static bool nullish(const value *v)
{
    return v->t == V_UNDEF || v->t == V_NULL;
}

static bool truthy(const value *v)
{
    switch (v->t) {
    case V_UNDEF:
    case V_NULL: return false;
    case V_BOOL: return v->u.b;
    case V_NUM: return !(v->u.n == 0 || isnan(v->u.n));
    case V_STR: return v->u.s.len > 0;
    default: return true;
    }
}

static const char *type_of(const value *v)
{
    switch (v->t) {
    case V_UNDEF: return "undefined";
    case V_BOOL: return "boolean";
    case V_NUM: return "number";
    case V_STR: return "string";
    default: return "object";
    }
}

static value from_json(json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return (value){.t = V_OBJ, .u.j = j};
    case JSON_ARRAY: return (value){.t = V_JARR, .u.j = j};
    case JSON_STRING: return vstr(json_string_value(j), json_string_length(j));
    case JSON_INTEGER:
    case JSON_REAL: return vnum(json_number_value(j));
    case JSON_TRUE: return vbool(true);
    case JSON_FALSE: return vbool(false);
    default: return (value){.t = V_NULL};
    }
}

/* ---- one evaluation ---- */

/* A lazily parsed JSON input. */
typedef struct doc {
    json_t *j;
    bool parsed;
} doc;

/* A record name a run asked for, and (once loaded) its JSON. */
typedef struct xrec {
    const char *name;
    size_t len;
    const char *json; /* NULL: no such record */
    size_t json_len;
    doc d;
} xrec;

typedef struct chunk {
    struct chunk *next;
    char data[];
} chunk;

enum status { ST_OK, ST_ERR, ST_FATAL, ST_SHORT };

typedef struct ctx {
    const rule *r;
    const rule_input *in;
    doc data, old, udata;
    bool own_loading; /* the first run of a rule that reads oldData: the record is still loading */
    xrec *known;      /* loaded by earlier runs */
    size_t nknown, known_cap;
    xrec *pending; /* asked for by this run */
    size_t npending, pending_cap;
    /* scratch */
    char *cur;
    size_t left;
    size_t total;
    chunk *chunks;
    /* the first error of this run */
    bool err_set;
    char err[256];
    _Alignas(16) char first[1536]; /* the scratch's first block */
} ctx;

static int fail(ctx *c, const node *n, int st, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail(ctx *c, const node *n, int st, const char *fmt, ...)
{
    if (!c->err_set) {
        c->err_set = true;
        int k = snprintf(c->err, sizeof(c->err), "column %zu: ",
                         n != NULL ? rules_column(c->r->text, c->r->text_len, n->pos) : (size_t)0);
        va_list ap;
        va_start(ap, fmt);
        if (k > 0 && (size_t)k < sizeof(c->err))
            vsnprintf(c->err + k, sizeof(c->err) - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return st;
}

static void *scratch(ctx *c, const node *n, size_t size)
{
    size = (size + 7) & ~(size_t)7;
    if (size > c->left) {
        if (c->total + size > RULES_MAX_SCRATCH) {
            fail(c, n, ST_ERR, "RangeError: the rule built more than %u bytes", RULES_MAX_SCRATCH);
            return NULL;
        }
        size_t block = size > 16384 ? size : 16384;
        chunk *ch = xmalloc(sizeof(chunk) + block);
        ch->next = c->chunks;
        c->chunks = ch;
        c->cur = ch->data;
        c->left = block;
    }
    void *p = c->cur;
    c->cur += size;
    c->left -= size;
    c->total += size;
    return p;
}

static int parse_doc(ctx *c, const node *n, doc *d, const char *text, size_t len, const char *what, value *out)
{
    if (!d->parsed) {
        json_error_t e;
        d->j = json_loadb(text, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &e);
        d->parsed = true;
    }
    if (d->j == NULL)
        return fail(c, n, ST_FATAL, "%s is not valid JSON", what);
    *out = from_json(d->j);
    return ST_OK;
}

/* ---- conversions ---- */

static int to_string(ctx *c, const node *n, const value *v, value *out, int depth);

static int num_string(ctx *c, const node *n, double d, value *out)
{
    char buf[JS_NUMBER_BUF];
    size_t len = js_number_format(d, buf);
    char *p = scratch(c, n, len);
    if (p == NULL)
        return ST_ERR;
    memcpy(p, buf, len);
    *out = vstr(p, len);
    return ST_OK;
}

static size_t arr_len(const value *v)
{
    return v->t == V_ARR ? v->u.a->n : json_array_size(v->u.j);
}

static value arr_get(const value *v, size_t i)
{
    return v->t == V_ARR ? v->u.a->items[i] : from_json(json_array_get(v->u.j, i));
}

/* Array.prototype.join(","): what String() and == make of an array. */
static int join(ctx *c, const node *n, const value *v, value *out, int depth)
{
    if (depth > RULES_MAX_JSON_DEPTH)
        return fail(c, n, ST_ERR, "RangeError: arrays nested deeper than %d levels", RULES_MAX_JSON_DEPTH);
    size_t count = arr_len(v);
    if (count == 0) {
        *out = vstr("", 0);
        return ST_OK;
    }
    if (count == 1) {
        value e = arr_get(v, 0);
        if (nullish(&e)) {
            *out = vstr("", 0);
            return ST_OK;
        }
        return to_string(c, n, &e, out, depth + 1);
    }
    /* element strings first, then one copy */
    value *parts = scratch(c, n, count * sizeof(value));
    if (parts == NULL)
        return ST_ERR;
    size_t total = count - 1;
    for (size_t i = 0; i < count; i++) {
        value e = arr_get(v, i);
        if (nullish(&e))
            parts[i] = vstr("", 0);
        else {
            int st = to_string(c, n, &e, &parts[i], depth + 1);
            if (st != ST_OK)
                return st;
        }
        total += parts[i].u.s.len;
        if (total > RULES_MAX_STRING)
            return fail(c, n, ST_ERR, "RangeError: string longer than %d bytes", RULES_MAX_STRING);
    }
    char *p = scratch(c, n, total);
    if (p == NULL)
        return ST_ERR;
    size_t k = 0;
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            p[k++] = ',';
        memcpy(p + k, parts[i].u.s.p, parts[i].u.s.len);
        k += parts[i].u.s.len;
    }
    *out = vstr(p, total);
    return ST_OK;
}

static int to_string(ctx *c, const node *n, const value *v, value *out, int depth)
{
    switch (v->t) {
    case V_UNDEF: *out = vstr("undefined", 9); return ST_OK;
    case V_NULL: *out = vstr("null", 4); return ST_OK;
    case V_BOOL: *out = v->u.b ? vstr("true", 4) : vstr("false", 5); return ST_OK;
    case V_NUM: return num_string(c, n, v->u.n, out);
    case V_STR: *out = *v; return ST_OK;
    case V_OBJ:
    case V_USER: *out = vstr("[object Object]", 15); return ST_OK;
    case V_JARR:
    case V_ARR: return join(c, n, v, out, depth);
    case V_REGEX: {
        const rules_rx *rx = v->u.rx;
        size_t fl = strlen(rx->flags), len = rx->src_len + 2 + fl;
        char *p = scratch(c, n, len);
        if (p == NULL)
            return ST_ERR;
        p[0] = '/';
        memcpy(p + 1, rx->src, rx->src_len);
        p[1 + rx->src_len] = '/';
        memcpy(p + 2 + rx->src_len, rx->flags, fl);
        *out = vstr(p, len);
        return ST_OK;
    }
    }
    return ST_OK;
}

/* ToPrimitive: objects become their string (no valueOf in JSON). */
static int to_primitive(ctx *c, const node *n, const value *v, value *out)
{
    if (!is_object(v)) {
        *out = *v;
        return ST_OK;
    }
    return to_string(c, n, v, out, 0);
}

static int to_number(ctx *c, const node *n, const value *v, double *out)
{
    switch (v->t) {
    case V_UNDEF: *out = NAN; return ST_OK;
    case V_NULL: *out = 0; return ST_OK;
    case V_BOOL: *out = v->u.b; return ST_OK;
    case V_NUM: *out = v->u.n; return ST_OK;
    case V_STR: *out = js_string_to_number(v->u.s.p, v->u.s.len); return ST_OK;
    default: {
        value p;
        int st = to_primitive(c, n, v, &p);
        if (st != ST_OK)
            return st;
        return to_number(c, n, &p, out);
    }
    }
}

/* ToIntegerOrInfinity, clamped to [0, max]. */
static size_t clamp_index(double d, size_t max)
{
    if (isnan(d) || d <= 0)
        return 0;
    if (d >= (double)max)
        return max;
    return (size_t)d;
}

/* ---- comparisons ---- */

static bool strict_equal(const value *a, const value *b)
{
    if (a->t != b->t)
        return false;
    switch (a->t) {
    case V_UNDEF:
    case V_NULL:
    case V_USER: return true;
    case V_BOOL: return a->u.b == b->u.b;
    case V_NUM: return a->u.n == b->u.n;
    case V_STR: return a->u.s.len == b->u.s.len && memcmp(a->u.s.p, b->u.s.p, a->u.s.len) == 0;
    case V_OBJ:
    case V_JARR: return a->u.j == b->u.j;
    case V_ARR: return a->u.a == b->u.a;
    case V_REGEX: return a->u.rx == b->u.rx;
    }
    return false;
}

/* IsLooselyEqual (==). */
static int loose_equal(ctx *c, const node *n, const value *a, const value *b, bool *out, int depth)
{
    if (a->t == b->t || (is_object(a) && is_object(b))) {
        *out = strict_equal(a, b);
        return ST_OK;
    }
    if (nullish(a) || nullish(b)) {
        *out = nullish(a) && nullish(b);
        return ST_OK;
    }
    if (depth > 4) { /* cannot happen: each step below leaves fewer kinds */
        *out = false;
        return ST_OK;
    }
    value x = *a, y = *b;
    int st;
    if (x.t == V_BOOL)
        x = vnum(x.u.b);
    else if (y.t == V_BOOL)
        y = vnum(y.u.b);
    else if (is_object(&x)) {
        if ((st = to_primitive(c, n, a, &x)) != ST_OK)
            return st;
    } else if (is_object(&y)) {
        if ((st = to_primitive(c, n, b, &y)) != ST_OK)
            return st;
    } else if (x.t == V_NUM && y.t == V_STR)
        y = vnum(js_string_to_number(y.u.s.p, y.u.s.len));
    else if (x.t == V_STR && y.t == V_NUM)
        x = vnum(js_string_to_number(x.u.s.p, x.u.s.len));
    return loose_equal(c, n, &x, &y, out, depth + 1);
}

/* a < b (a <= b with or_equal), JavaScript's IsLessThan; an undefined
 * answer (NaN) is false either way. */
static int less_than(ctx *c, const node *n, const value *a, const value *b, bool or_equal, bool *out)
{
    value x, y;
    int st;
    if ((st = to_primitive(c, n, a, &x)) != ST_OK || (st = to_primitive(c, n, b, &y)) != ST_OK)
        return st;
    if (x.t == V_STR && y.t == V_STR) {
        int cmp = js_string_compare(x.u.s.p, x.u.s.len, y.u.s.p, y.u.s.len);
        *out = or_equal ? cmp <= 0 : cmp < 0;
        return ST_OK;
    }
    double dx, dy;
    if ((st = to_number(c, n, &x, &dx)) != ST_OK || (st = to_number(c, n, &y, &dy)) != ST_OK)
        return st;
    *out = or_equal ? dx <= dy : dx < dy; /* false with NaN either way */
    return ST_OK;
}

/* ---- property access ---- */

/* A canonical array index ("0", "17"; not "01", "1.0", "-1"): its value in *idx. */
static bool array_index(const char *s, size_t len, size_t *idx)
{
    if (len == 0 || len > 10 || (len > 1 && s[0] == '0'))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v >= 4294967295u)
        return false;
    *idx = (size_t)v;
    return true;
}

/* The UTF-16 code unit at index i of a string, as a one-unit string (a lone
 * surrogate as its 3-byte WTF-8 form). */
static int char_at(ctx *c, const node *n, const value *s, size_t i, value *out)
{
    const char *p = s->u.s.p;
    size_t len = s->u.s.len, b = js_utf16_to_byte(p, len, i);
    if (b >= len) {
        *out = UNDEF;
        return ST_OK;
    }
    size_t sz;
    uint32_t cp = js_utf8_decode(p + b, len - b, &sz);
    if (cp < 0x10000) {
        *out = vstr(p + b, sz);
        return ST_OK;
    }
    bool low = js_byte_to_utf16(p, len, b) != i; /* i is the pair's second unit */
    uint32_t unit = low ? 0xdc00 + ((cp - 0x10000) & 0x3ff) : 0xd800 + ((cp - 0x10000) >> 10);
    char *o = scratch(c, n, 3);
    if (o == NULL)
        return ST_ERR;
    *out = vstr(o, js_utf8_encode(unit, o));
    return ST_OK;
}

static int doc_value(ctx *c, const node *n, int which, value *out);

static int get_prop(ctx *c, const node *n, const value *obj, const char *key, size_t klen, value *out)
{
    size_t idx;
    switch (obj->t) {
    case V_UNDEF:
    case V_NULL:
        return fail(c, n, ST_ERR, "TypeError: Cannot read properties of %s (reading '%.*s')",
                    obj->t == V_NULL ? "null" : "undefined", (int)(klen < 64 ? klen : 64), key);
    case V_OBJ: {
        json_t *j = json_object_getn(obj->u.j, key, klen);
        *out = j != NULL ? from_json(j) : UNDEF;
        return ST_OK;
    }
    case V_JARR:
    case V_ARR:
        if (klen == 6 && memcmp(key, "length", 6) == 0)
            *out = vnum((double)arr_len(obj));
        else if (array_index(key, klen, &idx) && idx < arr_len(obj))
            *out = arr_get(obj, idx);
        else
            *out = UNDEF;
        return ST_OK;
    case V_STR:
        if (klen == 6 && memcmp(key, "length", 6) == 0)
            *out = vnum((double)js_utf16_length(obj->u.s.p, obj->u.s.len));
        else if (array_index(key, klen, &idx))
            return char_at(c, n, obj, idx, out);
        else
            *out = UNDEF;
        return ST_OK;
    case V_USER:
        if (klen == 2 && memcmp(key, "id", 2) == 0)
            *out = c->in->user_id != NULL ? vstr(c->in->user_id, c->in->user_id_len) : (value){.t = V_NULL};
        else if (klen == 15 && memcmp(key, "isAuthenticated", 15) == 0)
            *out = vbool(c->in->authenticated);
        else if (klen == 4 && memcmp(key, "data", 4) == 0)
            return doc_value(c, n, N_USER_DATA, out);
        else
            *out = UNDEF;
        return ST_OK;
    default: /* numbers, booleans, regular expressions: no own properties a rule can read */
        *out = UNDEF;
        return ST_OK;
    }
}

static int get_prop_value(ctx *c, const node *n, const value *obj, const value *key, value *out)
{
    if (key->t == V_NUM && (obj->t == V_JARR || obj->t == V_ARR || obj->t == V_STR)) {
        double d = key->u.n;
        if (d >= 0 && d < 4294967295.0 && d == floor(d)) { /* arr[3] without making "3" */
            size_t i = (size_t)d;
            if (obj->t == V_STR)
                return char_at(c, n, obj, i, out);
            *out = i < arr_len(obj) ? arr_get(obj, i) : UNDEF;
            return ST_OK;
        }
    }
    value k;
    int st = to_string(c, n, key, &k, 0);
    if (st != ST_OK)
        return st;
    return get_prop(c, n, obj, k.u.s.p, k.u.s.len, out);
}

/* ---- the inputs ---- */

static int doc_value(ctx *c, const node *n, int which, value *out)
{
    const rule_input *in = c->in;
    switch (which) {
    case N_DATA:
        if (in->data == NULL) {
            *out = UNDEF;
            return ST_OK;
        }
        return parse_doc(c, n, &c->data, in->data, in->data_len, "error when converting message data: data",
                         out);
    case N_OLD_DATA:
        if (c->own_loading) {
            *out = UNDEF;
            return ST_OK;
        }
        if (in->old_data == NULL) {
            *out = (value){.t = V_NULL};
            return ST_OK;
        }
        return parse_doc(c, n, &c->old, in->old_data, in->old_data_len, "oldData", out);
    default: /* N_USER_DATA */
        if (in->user_data == NULL) {
            *out = (value){.t = V_NULL};
            return ST_OK;
        }
        return parse_doc(c, n, &c->udata, in->user_data, in->user_data_len, "user.data", out);
    }
}

static xrec *find(xrec *list, size_t count, const char *name, size_t len)
{
    for (size_t i = 0; i < count; i++)
        if (list[i].len == len && memcmp(list[i].name, name, len) == 0)
            return &list[i];
    return NULL;
}

static void push(xrec **list, size_t *count, size_t *cap, xrec rec)
{
    if (*count == *cap)
        *list = xrealloc(*list, (*cap = *cap ? *cap * 2 : 4) * sizeof(**list));
    (*list)[(*count)++] = rec;
}

/* _(name): deepstream's crossReference. */
static int cross_reference(ctx *c, const node *n, const value *arg, value *out)
{
    *out = UNDEF;
    if (arg->t == V_UNDEF)
        return ST_OK;
    if (arg->t != V_STR)
        return fail(c, n, ST_FATAL, "crossreference got unsupported type %s", type_of(arg));
    const char *name = arg->u.s.p;
    size_t len = arg->u.s.len;
    if (len >= 9 && memmem(name, len, "undefined", 9) != NULL) /* deepstream reads nothing then */
        return ST_OK;
    const rule_input *in = c->in;
    if ((c->r->reads & RULE_READS_OLD_DATA) && len == in->name_len && memcmp(name, in->name, len) == 0) {
        /* the record itself, loaded for oldData */
        if (c->own_loading)
            return ST_OK;
        return doc_value(c, n, N_OLD_DATA, out);
    }
    xrec *k = find(c->known, c->nknown, name, len);
    if (k != NULL) {
        if (k->json == NULL) {
            *out = (value){.t = V_NULL};
            return ST_OK;
        }
        return parse_doc(c, n, &k->d, k->json, k->json_len, "a cross-referenced record", out);
    }
    if (find(c->pending, c->npending, name, len) == NULL)
        push(&c->pending, &c->npending, &c->pending_cap, (xrec){.name = name, .len = len});
    return ST_OK;
}

/* ---- methods ---- */

static int arg_value(const value *args, size_t nargs, size_t i, value *out)
{
    *out = i < nargs ? args[i] : UNDEF;
    return ST_OK;
}

static int string_arg(ctx *c, const node *n, const value *args, size_t nargs, size_t i, value *out)
{
    value v;
    arg_value(args, nargs, i, &v);
    return to_string(c, n, &v, out, 0);
}

static int position_arg(ctx *c, const node *n, const value *args, size_t nargs, size_t i, size_t dflt, size_t max,
                        size_t *out)
{
    if (i >= nargs || args[i].t == V_UNDEF) {
        *out = dflt;
        return ST_OK;
    }
    double d;
    int st = to_number(c, n, &args[i], &d);
    if (st == ST_OK)
        *out = clamp_index(trunc(d), max);
    return st;
}

static int regex_match(ctx *c, const node *n, const value *subject, const rules_rx *rx, value *out)
{
    pcre2_code *code = rx->code;
    uint32_t groups = 0;
    pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &groups);
    pcre2_match_data *md = pcre2_match_data_create(groups + 1, NULL);
    if (md == NULL)
        abort();
    const char *s = subject->u.s.p;
    size_t len = subject->u.s.len, start = 0, found = 0;
    int st = ST_OK;
    value *items = NULL;
    uint32_t anchored = rx->sticky ? PCRE2_ANCHORED : 0;
    for (;;) {
        int rc = pcre2_match(code, (PCRE2_SPTR)(len ? s : ""), len, start, anchored, md, rx_match_ctx);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[120];
            if (pcre2_get_error_message(rc, msg, sizeof(msg)) < 0)
                strcpy((char *)msg, "error");
            st = fail(c, n, ST_ERR, "RangeError: regular expression: %s", (const char *)msg);
            goto done;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (!rx->global) {
            varr *a = scratch(c, n, sizeof(varr));
            value *v = a ? scratch(c, n, (groups + 1) * sizeof(value)) : NULL;
            if (v == NULL) {
                st = ST_ERR;
                goto done;
            }
            for (uint32_t g = 0; g <= groups; g++)
                v[g] = (int)g < rc && ov[2 * g] != PCRE2_UNSET ? vstr(s + ov[2 * g], ov[2 * g + 1] - ov[2 * g]) : UNDEF;
            a->n = groups + 1;
            a->items = v;
            *out = (value){.t = V_ARR, .u.a = a};
            goto done;
        }
        if (found == RULES_MAX_MATCHES) {
            st = fail(c, n, ST_ERR, "RangeError: more than %d matches", RULES_MAX_MATCHES);
            goto done;
        }
        if (found % 64 == 0) { /* grow by copying: the scratch does not free */
            value *bigger = scratch(c, n, (found + 64) * sizeof(value));
            if (bigger == NULL) {
                st = ST_ERR;
                goto done;
            }
            if (found > 0)
                memcpy(bigger, items, found * sizeof(value));
            items = bigger;
        }
        items[found++] = vstr(s + ov[0], ov[1] - ov[0]);
        start = ov[1];
        if (ov[1] == ov[0]) { /* an empty match: step over one character */
            if (start >= len)
                break;
            size_t sz;
            js_utf8_decode(s + start, len - start, &sz);
            start += sz;
        }
        if (start > len)
            break;
    }
    if (found == 0)
        *out = (value){.t = V_NULL};
    else {
        varr *a = scratch(c, n, sizeof(varr));
        if (a == NULL) {
            st = ST_ERR;
            goto done;
        }
        a->n = found;
        a->items = items;
        *out = (value){.t = V_ARR, .u.a = a};
    }
done:
    pcre2_match_data_free(md);
    return st;
}

static int method_match(ctx *c, const node *n, const value *recv, const value *args, size_t nargs, value *out)
{
    if (n->u.rx != NULL) /* match('literal'), compiled with the rule */
        return regex_match(c, n, recv, n->u.rx, out);
    value a;
    arg_value(args, nargs, 0, &a);
    if (a.t == V_REGEX)
        return regex_match(c, n, recv, a.u.rx, out);
    value src = vstr("", 0);
    int st;
    if (a.t != V_UNDEF && (st = to_string(c, n, &a, &src, 0)) != ST_OK)
        return st;
    char why[160];
    size_t off;
    rules_rx *rx = rules_rx_compile(src.u.s.p, src.u.s.len, "", 0, false, why, sizeof(why), &off);
    if (rx == NULL)
        return fail(c, n, ST_ERR, "SyntaxError: Invalid regular expression: %s", why);
    st = regex_match(c, n, recv, rx, out);
    rules_rx_free(rx);
    return st;
}

static int method_case(ctx *c, const node *n, const value *recv, bool upper, value *out)
{
    size_t len = js_case_map(recv->u.s.p, recv->u.s.len, upper, NULL, 0);
    if (len > RULES_MAX_STRING)
        return fail(c, n, ST_ERR, "RangeError: string longer than %d bytes", RULES_MAX_STRING);
    char *p = scratch(c, n, len);
    if (p == NULL)
        return ST_ERR;
    js_case_map(recv->u.s.p, recv->u.s.len, upper, p, len);
    *out = vstr(p, len);
    return ST_OK;
}

static int string_method(ctx *c, const node *n, const value *recv, const value *args, size_t nargs, value *out)
{
    const char *s = recv->u.s.p;
    size_t len = recv->u.s.len;
    int m = n->method, st;
    if ((m == M_STARTS_WITH || m == M_ENDS_WITH || m == M_INCLUDES) && nargs > 0 && args[0].t == V_REGEX)
        return fail(c, n, ST_ERR, "TypeError: First argument to String.prototype.%s must not be a regular "
                    "expression", rules_method_names[m]);
    value search;
    size_t units, pos, b;
    switch (m) {
    case M_STARTS_WITH:
    case M_INCLUDES:
    case M_INDEX_OF:
        if ((st = string_arg(c, n, args, nargs, 0, &search)) != ST_OK)
            return st;
        units = js_utf16_length(s, len);
        if ((st = position_arg(c, n, args, nargs, 1, 0, units, &pos)) != ST_OK)
            return st;
        b = js_utf16_to_byte(s, len, pos);
        if (m == M_STARTS_WITH) {
            *out = vbool(len - b >= search.u.s.len && memcmp(s + b, search.u.s.p, search.u.s.len) == 0);
            return ST_OK;
        }
        {
            const char *hit = search.u.s.len == 0 ? s + b : memmem(s + b, len - b, search.u.s.p, search.u.s.len);
            if (m == M_INCLUDES)
                *out = vbool(hit != NULL);
            else
                *out = vnum(hit == NULL ? -1 : (double)js_byte_to_utf16(s, len, (size_t)(hit - s)));
        }
        return ST_OK;
    case M_ENDS_WITH:
        if ((st = string_arg(c, n, args, nargs, 0, &search)) != ST_OK)
            return st;
        units = js_utf16_length(s, len);
        if ((st = position_arg(c, n, args, nargs, 1, units, units, &pos)) != ST_OK)
            return st;
        b = js_utf16_to_byte(s, len, pos);
        *out = vbool(b >= search.u.s.len && memcmp(s + b - search.u.s.len, search.u.s.p, search.u.s.len) == 0);
        return ST_OK;
    case M_MATCH:
        return method_match(c, n, recv, args, nargs, out);
    case M_TO_UPPER:
    case M_TO_LOWER:
        return method_case(c, n, recv, m == M_TO_UPPER, out);
    default: { /* M_TRIM */
        size_t from = 0, to = len;
        js_trim(s, &from, &to);
        *out = vstr(s + from, to - from);
        return ST_OK;
    }
    }
}

static int array_method(ctx *c, const node *n, const value *recv, const value *args, size_t nargs, value *out)
{
    value x;
    arg_value(args, nargs, 0, &x);
    size_t count = arr_len(recv), from = 0;
    if (nargs > 1 && args[1].t != V_UNDEF) {
        double d;
        int st = to_number(c, n, &args[1], &d);
        if (st != ST_OK)
            return st;
        d = isnan(d) ? 0 : trunc(d);
        if (d < 0)
            d += (double)count;
        from = clamp_index(d, count);
    }
    bool nan = x.t == V_NUM && isnan(x.u.n);
    for (size_t i = from; i < count; i++) {
        value e = arr_get(recv, i);
        if (strict_equal(&e, &x) || (n->method == M_INCLUDES && nan && e.t == V_NUM && isnan(e.u.n))) {
            *out = n->method == M_INCLUDES ? vbool(true) : vnum((double)i);
            return ST_OK;
        }
    }
    *out = n->method == M_INCLUDES ? vbool(false) : vnum(-1);
    return ST_OK;
}

/* ---- the walk ---- */

static int ev(ctx *c, const node *n, value *out);

static int ev_raw(ctx *c, const node *n, value *out);

/* The object of a member, index or call: an optional chain's short cut
 * passes through to the end of the chain, unless the object was
 * parenthesized (which ends a chain). */
static int ev_object(ctx *c, const node *n, value *out)
{
    return n->paren ? ev(c, n, out) : ev_raw(c, n, out);
}

static int ev_call(ctx *c, const node *n, value *out)
{
    value recv;
    int st = ev_object(c, n->a, &recv);
    if (st != ST_OK)
        return st;
    if (n->optional && nullish(&recv))
        return ST_SHORT;
    const char *mname = rules_method_names[n->method];
    if (nullish(&recv))
        return fail(c, n, ST_ERR, "TypeError: Cannot read properties of %s (reading '%s')",
                    recv.t == V_NULL ? "null" : "undefined", mname);
    value small[4];
    value *args = n->n <= 4 ? small : scratch(c, n, n->n * sizeof(value));
    if (args == NULL)
        return ST_ERR;
    for (uint32_t i = 0; i < n->n; i++)
        if ((st = ev(c, n->list[i], &args[i])) != ST_OK)
            return st;
    if (recv.t == V_STR)
        return string_method(c, n, &recv, args, n->n, out);
    if ((recv.t == V_JARR || recv.t == V_ARR) && (n->method == M_INCLUDES || n->method == M_INDEX_OF))
        return array_method(c, n, &recv, args, n->n, out);
    const char *what = recv.t == V_JARR || recv.t == V_ARR ? "an array" : recv.t == V_NUM ? "a number"
                       : recv.t == V_BOOL ? "a boolean" : recv.t == V_REGEX ? "a regular expression" : "an object";
    return fail(c, n, ST_ERR, "TypeError: %s is not a function (called on %s)", mname, what);
}

/* a <kind> b for the binary operators that evaluate both sides; n (for the
 * column) is a node standing where the operator is written. */
static int apply_binary(ctx *c, const node *n, int kind, const value *pa_in, const value *pb_in, value *out)
{
    value a = *pa_in, b = *pb_in;
    int st;
    bool r;
    double x, y;
    switch (kind) {
    case N_SEQ: *out = vbool(strict_equal(&a, &b)); return ST_OK;
    case N_SNE: *out = vbool(!strict_equal(&a, &b)); return ST_OK;
    case N_EQ:
    case N_NE:
        if ((st = loose_equal(c, n, &a, &b, &r, 0)) != ST_OK)
            return st;
        *out = vbool(kind == N_EQ ? r : !r);
        return ST_OK;
    case N_LT: st = less_than(c, n, &a, &b, false, &r); break;
    case N_GT: st = less_than(c, n, &b, &a, false, &r); break;
    case N_LE: st = less_than(c, n, &a, &b, true, &r); break;
    case N_GE: st = less_than(c, n, &b, &a, true, &r); break;
    case N_ADD: {
        value pa, pb;
        if ((st = to_primitive(c, n, &a, &pa)) != ST_OK || (st = to_primitive(c, n, &b, &pb)) != ST_OK)
            return st;
        if (pa.t == V_STR || pb.t == V_STR) {
            value sa, sb;
            if ((st = to_string(c, n, &pa, &sa, 0)) != ST_OK || (st = to_string(c, n, &pb, &sb, 0)) != ST_OK)
                return st;
            size_t len = sa.u.s.len + sb.u.s.len;
            if (len > RULES_MAX_STRING)
                return fail(c, n, ST_ERR, "RangeError: string longer than %d bytes", RULES_MAX_STRING);
            char *p = scratch(c, n, len);
            if (p == NULL)
                return ST_ERR;
            if (sa.u.s.len)
                memcpy(p, sa.u.s.p, sa.u.s.len);
            if (sb.u.s.len)
                memcpy(p + sa.u.s.len, sb.u.s.p, sb.u.s.len);
            *out = vstr(p, len);
            return ST_OK;
        }
        if ((st = to_number(c, n, &pa, &x)) != ST_OK || (st = to_number(c, n, &pb, &y)) != ST_OK)
            return st;
        *out = vnum(x + y);
        return ST_OK;
    }
    default: /* - * / % */
        if ((st = to_number(c, n, &a, &x)) != ST_OK || (st = to_number(c, n, &b, &y)) != ST_OK)
            return st;
        *out = vnum(kind == N_SUB ? x - y : kind == N_MUL ? x * y : kind == N_DIV ? x / y : fmod(x, y));
        return ST_OK;
    }
    if (st == ST_OK)
        *out = vbool(r);
    return st;
}

/* x0 op1 x1 op2 x2 ...: folded from the left; && || ?? stop early. */
static int ev_chain(ctx *c, const node *n, value *out)
{
    value acc, b;
    int st = ev(c, n->list[0], &acc);
    for (uint32_t i = 1; i < n->n && st == ST_OK; i++) {
        const chain_op *op = &n->u.ops[i - 1];
        if (op->kind == N_AND || op->kind == N_OR || op->kind == N_NULLISH) {
            if (op->kind == N_AND ? !truthy(&acc) : op->kind == N_OR ? truthy(&acc) : !nullish(&acc))
                break;
            st = ev(c, n->list[i], &acc);
            continue;
        }
        if ((st = ev(c, n->list[i], &b)) != ST_OK)
            break;
        node at = {.pos = op->pos}; /* the operator's column, for a failure */
        st = apply_binary(c, &at, op->kind, &acc, &b, &acc);
    }
    if (st == ST_OK)
        *out = acc;
    return st;
}

static int ev_raw(ctx *c, const node *n, value *out)
{
    value a, b;
    int st;
    const rule_input *in = c->in;
    switch (n->kind) {
    case N_NUM: *out = vnum(n->u.num); return ST_OK;
    case N_STR: *out = vstr(n->u.str, n->n); return ST_OK;
    case N_BOOL: *out = vbool(n->u.b); return ST_OK;
    case N_NULL: *out = (value){.t = V_NULL}; return ST_OK;
    case N_UNDEF: *out = UNDEF; return ST_OK;
    case N_REGEX: *out = (value){.t = V_REGEX, .u.rx = n->u.rx}; return ST_OK;
    case N_ARRAY: {
        varr *arr = scratch(c, n, sizeof(varr));
        value *items = arr != NULL && n->n > 0 ? scratch(c, n, n->n * sizeof(value)) : NULL;
        if (arr == NULL || (n->n > 0 && items == NULL))
            return ST_ERR;
        for (uint32_t i = 0; i < n->n; i++)
            if ((st = ev(c, n->list[i], &items[i])) != ST_OK)
                return st;
        arr->n = n->n;
        arr->items = items;
        *out = (value){.t = V_ARR, .u.a = arr};
        return ST_OK;
    }
    case N_USER: *out = (value){.t = V_USER}; return ST_OK;
    case N_USER_ID:
        *out = in->user_id != NULL ? vstr(in->user_id, in->user_id_len) : (value){.t = V_NULL};
        return ST_OK;
    case N_USER_AUTH: *out = vbool(in->authenticated); return ST_OK;
    case N_USER_DATA:
    case N_DATA:
    case N_OLD_DATA: return doc_value(c, n, n->kind, out);
    case N_NOW: *out = vnum((double)in->now_ms); return ST_OK;
    case N_NAME: *out = vstr(in->name != NULL ? in->name : "", in->name != NULL ? in->name_len : 0); return ST_OK;
    case N_ACTION: *out = in->action > 0 ? vnum((double)in->action) : (value){.t = V_NULL}; return ST_OK;
    case N_VAR:
        *out = n->n < in->nvars && in->vars[n->n].p != NULL ? vstr(in->vars[n->n].p, in->vars[n->n].len) : UNDEF;
        return ST_OK;
    case N_MEMBER:
        if ((st = ev_object(c, n->a, &a)) != ST_OK)
            return st;
        if (n->optional && nullish(&a))
            return ST_SHORT;
        return get_prop(c, n, &a, n->u.str, n->n, out);
    case N_INDEX:
        if ((st = ev_object(c, n->a, &a)) != ST_OK)
            return st;
        if (n->optional && nullish(&a))
            return ST_SHORT;
        if ((st = ev(c, n->b, &b)) != ST_OK)
            return st;
        return get_prop_value(c, n, &a, &b, out);
    case N_CALL: return ev_call(c, n, out);
    case N_XREF:
        for (uint32_t i = 0; i < n->n; i++) /* every argument runs (an extra one may cross-reference too) */
            if ((st = ev(c, n->list[i], i == 0 ? &a : &b)) != ST_OK)
                return st;
        if (n->n == 0)
            a = UNDEF;
        return cross_reference(c, n, &a, out);
    case N_NOT:
        if ((st = ev(c, n->a, &a)) != ST_OK)
            return st;
        *out = vbool(!truthy(&a));
        return ST_OK;
    case N_NEG:
    case N_POS: {
        double d;
        if ((st = ev(c, n->a, &a)) != ST_OK || (st = to_number(c, n, &a, &d)) != ST_OK)
            return st;
        *out = vnum(n->kind == N_NEG ? -d : d);
        return ST_OK;
    }
    case N_TYPEOF: {
        if ((st = ev(c, n->a, &a)) != ST_OK)
            return st;
        const char *t = type_of(&a);
        *out = vstr(t, strlen(t));
        return ST_OK;
    }
    case N_AND:
    case N_OR:
    case N_NULLISH:
        if ((st = ev(c, n->a, &a)) != ST_OK)
            return st;
        if (n->kind == N_AND ? !truthy(&a) : n->kind == N_OR ? truthy(&a) : !nullish(&a)) {
            *out = a;
            return ST_OK;
        }
        return ev(c, n->b, out);
    case N_COND:
        if ((st = ev(c, n->a, &a)) != ST_OK)
            return st;
        return ev(c, truthy(&a) ? n->b : n->c, out);
    case N_CHAIN:
        return ev_chain(c, n, out);
    default: /* a lone binary operator (not made by the parser, which chains them) */
        if ((st = ev(c, n->a, &a)) != ST_OK || (st = ev(c, n->b, &b)) != ST_OK)
            return st;
        return apply_binary(c, n, n->kind, &a, &b, out);
    }
}

/* An expression's value; an optional chain that short-cut ends here, as undefined. */
static int ev(ctx *c, const node *n, value *out)
{
    int st = ev_raw(c, n, out);
    if (st == ST_SHORT) {
        *out = UNDEF;
        return ST_OK;
    }
    return st;
}

/* ---- deepstream's runs ---- */

static void copy_out(char *dst, size_t dst_len, const char *src, size_t len)
{
    if (dst == NULL || dst_len == 0)
        return;
    size_t n = len < dst_len - 1 ? len : dst_len - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void show_value(ctx *c, const value *v, char *show, size_t show_len)
{
    if (show == NULL || show_len == 0)
        return;
    value s;
    bool saved = c->err_set;
    if (to_string(c, NULL, v, &s, 0) != ST_OK)
        s = vstr("?", 1);
    c->err_set = saved;
    snprintf(show, show_len, "%s:%.*s", type_of(v), (int)(s.u.s.len < 4000 ? s.u.s.len : 4000), s.u.s.p);
}

static void ctx_free(ctx *c)
{
    json_decref(c->data.j);
    json_decref(c->old.j);
    json_decref(c->udata.j);
    for (size_t i = 0; i < c->nknown; i++)
        json_decref(c->known[i].d.j);
    xfree(c->known);
    xfree(c->pending);
    while (c->chunks != NULL) {
        chunk *next = c->chunks->next;
        xfree(c->chunks);
        c->chunks = next;
    }
}

enum rule_outcome rule_eval_show(const rule *r, const rule_input *in, char *need, size_t need_len, char *why,
                                 size_t why_len, char *show, size_t show_len)
{
    if (r->constant >= 0) {
        if (show != NULL && show_len > 0)
            snprintf(show, show_len, "boolean:%s", r->constant ? "true" : "false");
        return r->constant ? RULE_TRUE : RULE_FALSE;
    }
    ctx c;
    memset(&c, 0, offsetof(ctx, err));
    c.err[0] = '\0';
    c.r = r;
    c.in = in;
    c.cur = c.first;
    c.left = sizeof(c.first);
    int max = in->max_iterations < 1 ? 1 : in->max_iterations;
    int run = 1;
    enum rule_outcome outcome;
    bool reads_old = r->reads & RULE_READS_OLD_DATA;
    c.own_loading = reads_old;
    if (reads_old && !(r->reads & RULE_READS_RECORDS)) {
        /* the first run can ask for nothing but the record itself: its result is known to be dropped */
        run = 2;
        c.own_loading = false;
        if (max < 2) {
            snprintf(c.err, sizeof(c.err), "Exceeded max iteration count");
            outcome = RULE_ERROR;
            goto out;
        }
    }
    for (;;) {
        c.npending = 0;
        c.err_set = false;
        value v;
        int st = ev(&c, r->root, &v);
        if (st == ST_SHORT) { /* the whole rule is an optional chain that short-cut */
            v = UNDEF;
            st = ST_OK;
        }
        if (st == ST_FATAL) {
            outcome = RULE_ERROR;
            break;
        }
        if (c.npending > 0 || c.own_loading) { /* loads started: this run's result is dropped */
            if (run >= max) {
                snprintf(c.err, sizeof(c.err), "Exceeded max iteration count");
                outcome = RULE_ERROR;
                break;
            }
            size_t i;
            for (i = 0; i < c.npending; i++) {
                xrec *p = &c.pending[i];
                if (in->record == NULL || in->record(in->record_ctx, p->name, p->len, &p->json, &p->json_len) != 1)
                    break;
                push(&c.known, &c.nknown, &c.known_cap, *p);
            }
            if (i < c.npending) {
                const xrec *p = &c.pending[i];
                if (need != NULL && need_len > 0 && (p->len >= need_len || memchr(p->name, '\0', p->len) != NULL)) {
                    /* a name the caller could not fetch by what need holds */
                    snprintf(c.err, sizeof(c.err), "cannot fetch a record whose name %s",
                             p->len >= need_len ? "is longer than the caller's buffer" : "holds a NUL byte");
                    outcome = RULE_ERROR;
                    break;
                }
                copy_out(need, need_len, p->name, p->len);
                outcome = RULE_NEED_RECORD;
                break;
            }
            c.own_loading = false;
            run++;
            continue;
        }
        if (st == ST_ERR) {
            outcome = RULE_ERROR;
            break;
        }
        outcome = truthy(&v) ? RULE_TRUE : RULE_FALSE;
        show_value(&c, &v, show, show_len);
        break;
    }
out:
    if (outcome == RULE_ERROR && why != NULL && why_len > 0)
        snprintf(why, why_len, "%s", c.err);
    ctx_free(&c);
    return outcome;
}

enum rule_outcome rule_eval(const rule *r, const rule_input *in, char *need, size_t need_len, char *why,
                            size_t why_len)
{
    return rule_eval_show(r, in, need, need_len, why, why_len, NULL, 0);
}
