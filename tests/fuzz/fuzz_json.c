/* fuzz_json.c - libFuzzer target for the server's JSON dialect
 * (common/jsonpath.c): json_check, the span index the HTTP API reads
 * requests through (jspan_parse and common/jsonspan.c's readers), and the
 * path engine that patches record documents (jsonpath_apply,
 * jsonpath_apply_max), each compared with jansson as the reference. Not for
 * how records use them (fuzz_frame covers that).
 *
 * The dialect (jsonpath.h) is RFC 8259 in UTF-8, any \uXXXX escape allowed,
 * numbers whose value is a finite double, nesting at most JSON_MAX_DEPTH.
 * jansson, loading with JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL (integers of
 * any length, overflow to infinity refused), reads the same language except
 * for \u0000 and lone surrogates, which it refuses; the harness rewrites those
 * escapes to \u0041 (same length, same validity otherwise) before asking it,
 * and measures the nesting itself (and refuses a raw NUL byte, where jansson
 * stops reading). Any other disagreement is a finding.
 *
 * Input: one byte of mode, then the text.
 *   mode & 3 == 0: the rest is one text, checked as above, and read into a
 *     span index (mode >> 2: the index depth) that must accept exactly what
 *     json_check accepts and agree with jansson's tree: types, member and
 *     element counts (every member of duplicate keys, the last one's value
 *     for a name), decoded strings, number values (and integers), compact
 *     copies that read back equal.
 *   otherwise: doc '\0' path '\0' value (no second '\0', or mode & 4: erase).
 *     Every successful patch is a document json_check accepts, of the same
 *     kind, no longer than jsonpath_apply_max's limit (mode & 8: a limit from
 *     the input); a patch of a valid document with a valid value never fails
 *     for "not valid JSON"; and, unless an escape had to be rewritten, the
 *     result equals (json_equal) what a jansson tree gives with the same
 *     documented path semantics (reference model below), errors included. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "jsonpath.h"
#include "jsonspan.h"
#include "mem.h"

#define LOAD_FLAGS (JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL)

static void show(const char *label, const char *p, size_t len)
{
    fprintf(stderr, "  %s (%zu bytes): ", label, len);
    for (size_t i = 0; i < len && i < 400; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f)
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "%s\n", len > 400 ? "..." : "");
}

static long hex4(const char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

/* A copy of text with every \u0000 and lone-surrogate escape inside a string
 * rewritten to \u0041; *changed tells whether there was one. */
static char *for_jansson(const char *text, size_t len, bool *changed)
{
    char *t = malloc(len + 1);
    memcpy(t, text, len);
    t[len] = '\0';
    *changed = false;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        if (!in_string) {
            in_string = t[i] == '"';
            continue;
        }
        if (t[i] == '"') {
            in_string = false;
            continue;
        }
        if (t[i] != '\\' || i + 1 >= len)
            continue;
        if (t[i + 1] != 'u' || i + 6 > len) {
            i++; /* a two-character escape */
            continue;
        }
        long u = hex4(t + i + 2);
        if (u < 0) {
            i++;
            continue;
        }
        bool pair = u >= 0xd800 && u <= 0xdbff && i + 12 <= len && t[i + 6] == '\\' && t[i + 7] == 'u' &&
                    hex4(t + i + 8) >= 0xdc00 && hex4(t + i + 8) <= 0xdfff;
        if (pair) {
            i += 11;
            continue;
        }
        if (u == 0 || (u >= 0xd800 && u <= 0xdfff)) {
            memcpy(t + i + 2, "0041", 4);
            *changed = true;
        }
        i += 5;
    }
    return t;
}

/* The deepest nesting level of a value inside v (v itself at level). */
static int depth(json_t *v, int level)
{
    int d = level;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            int e = depth(x, level + 1);
            d = e > d ? e : d;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            int e = depth(x, level + 1);
            d = e > d ? e : d;
        }
    }
    return d;
}

/* jansson's reading of text as the dialect (NULL when it refuses it), and
 * json_check's verdict, which must agree. *rewritten: escapes were rewritten. */
static json_t *agree(const char *what, const char *text, size_t len, bool *rewritten)
{
    enum json_kind k = json_check(text, len);
    bool changed;
    char *t = for_jansson(text, len, &changed);
    json_error_t err;
    json_t *j = json_loadb(t, len, LOAD_FLAGS, &err);
    free(t);
    if (rewritten != NULL)
        *rewritten = changed;
    int d = j != NULL ? depth(j, 0) : 0;
    /* jansson stops reading at a raw NUL byte ("55\0" loads as 55): never JSON */
    bool nul = memchr(text, '\0', len) != NULL;
    bool want = j != NULL && d <= JSON_MAX_DEPTH && !nul;
    if (want != (k != JSON_KIND_INVALID)) {
        fprintf(stderr, "fuzz_json: json_check and jansson disagree on %s: json_check %s, jansson %s (%s)\n", what,
                k == JSON_KIND_INVALID ? "refuses it" : "accepts it", j == NULL ? "refuses it" : "accepts it",
                j == NULL ? err.text : d > JSON_MAX_DEPTH ? "but it nests too deep" : nul ? "but it holds a NUL byte" : "");
        show("text", text, len);
        abort();
    }
    if (j != NULL && !want) {
        json_decref(j);
        return NULL;
    }
    if (j != NULL) {
        enum json_kind jk = json_is_object(j) ? JSON_KIND_OBJECT : json_is_array(j) ? JSON_KIND_ARRAY : JSON_KIND_SCALAR;
        if (jk != k) {
            fprintf(stderr, "fuzz_json: json_check says kind %d, jansson %d\n", k, jk);
            show("text", text, len);
            abort();
        }
    }
    return j;
}

/* ---------------- the reference path engine, on jansson trees ---------------- */

typedef struct ref_token {
    bool is_index;
    size_t index;
    char key[4100];
} ref_token;

#define REF_MAX_TOKENS 256

static bool utf8_ok(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        int n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            n = 2, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            n = 3, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 4, cp = c & 0x07;
        else
            return false;
        if (len - i < (size_t)n)
            return false;
        for (int k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += (size_t)n;
    }
    return true;
}

static bool space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* jsonpath.h's path syntax; -1 for a path it refuses, -2 for one the model
 * cannot hold (a key over 4 KiB). */
static int ref_tokenize(const char *path, ref_token *out)
{
    int n = 0;
    const char *p = path;
    for (;;) {
        const char *dot = strchr(p, '.');
        const char *a = p, *b = dot ? dot : p + strlen(p);
        while (a < b && space(*a))
            a++;
        while (b > a && space(b[-1]))
            b--;
        if (a < b) {
            const char *q = a;
            while (q < b && *q != '[' && *q != ']')
                q++;
            if (n == REF_MAX_TOKENS)
                return -1;
            if ((size_t)(q - a) >= sizeof(out[n].key))
                return -2; /* longer than the model holds: not compared */
            out[n].is_index = false;
            memcpy(out[n].key, a, (size_t)(q - a));
            out[n].key[q - a] = '\0';
            if (!strcmp(out[n].key, "__proto__") || !strcmp(out[n].key, "constructor") ||
                !strcmp(out[n].key, "prototype") || !utf8_ok((const unsigned char *)a, (size_t)(q - a)))
                return -1;
            n++;
            while (q < b) {
                const char *r = ++q;
                while (r < b && *r != '[' && *r != ']')
                    r++;
                if (r > q) {
                    size_t v = 0;
                    for (const char *d = q; d < r; d++) {
                        if (*d < '0' || *d > '9')
                            return -1;
                        v = v * 10 + (size_t)(*d - '0');
                        if (v > JSONPATH_MAX_INDEX)
                            return -1;
                    }
                    if (n == REF_MAX_TOKENS)
                        return -1;
                    out[n].is_index = true;
                    out[n].index = v;
                    snprintf(out[n].key, sizeof(out[n].key), "%zu", v);
                    n++;
                }
                q = r;
            }
        }
        if (!dot)
            break;
        p = dot + 1;
    }
    return n > 0 ? n : -1;
}

/* Containers for tokens from..n-1 around v (NULL: around nothing, erasing). */
static json_t *ref_child(const ref_token *t, int from, int n, json_t *v)
{
    if (from == n)
        return v != NULL ? json_incref(v) : json_null();
    json_t *inner = NULL;
    for (int j = n - 1; j >= from; j--) {
        json_t *c = t[j].is_index ? json_array() : json_object();
        if (t[j].is_index)
            for (size_t i = 0; i < t[j].index; i++)
                json_array_append_new(c, json_null());
        json_t *x = j == n - 1 ? (v != NULL ? json_incref(v) : NULL) : inner;
        if (x != NULL) {
            if (t[j].is_index)
                json_array_append_new(c, x);
            else
                json_object_set_new(c, t[j].key, x);
        }
        inner = c;
    }
    return inner;
}

/* Puts x (stolen) at t in container c. */
static void ref_store(json_t *c, const ref_token *t, json_t *x)
{
    if (json_is_object(c)) {
        json_object_set_new(c, t->key, x);
        return;
    }
    if (t->index < json_array_size(c)) {
        json_array_set_new(c, t->index, x);
        return;
    }
    while (json_array_size(c) < t->index)
        json_array_append_new(c, json_null());
    json_array_append_new(c, x);
}

/* Applies v (NULL: erase) at the path to root in place; 0, or -1 when the
 * documented semantics refuse it. */
static int ref_apply(json_t *root, const ref_token *t, int n, json_t *v)
{
    json_t *c = root;
    for (int i = 0; i < n; i++) {
        bool last = i == n - 1;
        if (json_is_array(c) && !t[i].is_index)
            return -1; /* a key on an array */
        json_t *found = json_is_object(c) ? json_object_get(c, t[i].key) : json_array_get(c, t[i].index);
        if (!last && (json_is_object(found) || json_is_array(found))) {
            c = found;
            continue;
        }
        if (last && v == NULL) {
            if (found == NULL)
                return 0;
            if (json_is_array(c))
                json_array_set_new(c, t[i].index, json_null());
            else
                json_object_del(c, t[i].key);
            return 0;
        }
        ref_store(c, &t[i], ref_child(t, i + 1, n, v));
        return 0;
    }
    return 0;
}

static bool has_nul_key(json_t *v)
{
    const char *k;
    json_t *x;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach(v, k, x) if (has_nul_key(x)) return true;
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x) if (has_nul_key(x)) return true;
    }
    return false;
}

static void path_mode(const char *doc, size_t doc_len, const char *path, const char *val, size_t val_len,
                      size_t limit, bool limited)
{
    bool doc_rw = false, val_rw = false;
    json_t *jdoc = agree("the document", doc, doc_len, &doc_rw);
    json_t *jval = val != NULL ? agree("the value", val, val_len, &val_rw) : NULL;
    char *out = NULL;
    size_t out_len = 0;
    const char *why = NULL;
    int rc = jsonpath_apply(doc, doc_len, path, val, val_len, &out, &out_len, &why);
    enum json_kind doc_kind = json_check(doc, doc_len);
    if (rc == 0) {
        if (out == NULL || strlen(out) != out_len) {
            fprintf(stderr, "fuzz_json: a patch result is not a NUL-terminated text of its length\n");
            abort();
        }
        enum json_kind k = json_check(out, out_len);
        if (k != doc_kind) {
            fprintf(stderr, "fuzz_json: a patch gave a document json_check %s (kind %d, was %d)\n",
                    k == JSON_KIND_INVALID ? "refuses" : "calls another kind", k, doc_kind);
            show("doc", doc, doc_len);
            show("path", path, strlen(path));
            if (val != NULL)
                show("value", val, val_len);
            show("result", out, out_len);
            abort();
        }
        json_decref(agree("a patch result", out, out_len, NULL));
    } else if ((doc_kind == JSON_KIND_OBJECT || doc_kind == JSON_KIND_ARRAY) &&
               (val == NULL || json_check(val, val_len) != JSON_KIND_INVALID) &&
               (strcmp(why, "record data is not a JSON object or array") == 0 ||
                strcmp(why, "value is not valid JSON") == 0)) {
        fprintf(stderr, "fuzz_json: the path engine refuses what json_check accepts: %s\n", why);
        show("doc", doc, doc_len);
        show("path", path, strlen(path));
        if (val != NULL)
            show("value", val, val_len);
        abort();
    }
#ifdef JSONPATH_TOO_LARGE /* jsonpath_apply_max is there */
    /* the limit: refused as too large exactly when the result is longer */
    if (limited && rc == 0) {
        char *lim_out = NULL;
        size_t lim_len;
        const char *lim_why;
        int lrc = jsonpath_apply_max(doc, doc_len, path, val, val_len, limit, &lim_out, &lim_len, &lim_why);
        if ((out_len <= limit) != (lrc == 0) || (lrc != 0 && lrc != JSONPATH_TOO_LARGE) ||
            (lrc == 0 && (lim_len != out_len || memcmp(lim_out, out, out_len) != 0))) {
            fprintf(stderr, "fuzz_json: jsonpath_apply_max with a limit of %zu gives %d for a result of %zu bytes\n",
                    limit, lrc, out_len);
            abort();
        }
        if (lrc != 0 && lim_out != NULL) {
            fprintf(stderr, "fuzz_json: a refused patch left *out set\n");
            abort();
        }
        xfree(lim_out);
    }
#else
    (void)limit;
    (void)limited;
#endif
    /* the reference: same documented semantics on a jansson tree */
    static ref_token toks[REF_MAX_TOKENS];
    int n = ref_tokenize(path, toks);
    bool comparable = n != -2 && jdoc != NULL && (json_is_object(jdoc) || json_is_array(jdoc)) && !doc_rw &&
                      (val == NULL || (jval != NULL && !val_rw)) && !has_nul_key(jdoc);
    if (comparable) {
        int want = n < 0 ? -1 : ref_apply(jdoc, toks, n, jval);
        if (want == 0 && depth(jdoc, 0) > JSON_MAX_DEPTH)
            want = -1; /* documented: a result nested deeper than JSON_MAX_DEPTH is refused */
        json_t *got = NULL;
        if (rc == 0) {
            bool rw;
            char *t = for_jansson(out, out_len, &rw);
            json_error_t err;
            got = json_loadb(t, out_len, LOAD_FLAGS, &err);
            free(t);
        }
        if ((want == 0) != (rc == 0) || (rc == 0 && !json_equal(got, jdoc))) {
            fprintf(stderr, "fuzz_json: the path engine and the reference disagree: engine %s, reference %s "
                    "(%d path tokens, the reference's result nests %d deep)\n",
                    rc == 0 ? "applies it" : why, want == 0 ? "applies it" : "refuses it", n, depth(jdoc, 0));
            show("doc", doc, doc_len);
            show("path", path, strlen(path));
            if (val != NULL)
                show("value", val, val_len);
            if (rc == 0)
                show("engine's result", out, out_len);
            if (want == 0) {
                char *r = json_dumps(jdoc, JSON_COMPACT | JSON_ENCODE_ANY);
                show("reference's result", r, strlen(r));
                free(r);
            }
            abort();
        }
        json_decref(got);
    }
    xfree(out);
    json_decref(jdoc);
    json_decref(jval);
}

/* ---------------- the span index against jansson ---------------- */

static void span_fail(const char *what, const char *text, size_t len)
{
    fprintf(stderr, "fuzz_json: the span index %s\n", what);
    show("text", text, len);
    abort();
}

/* jansson's reading of span token t's compact text (NULL if it refuses it). */
static json_t *compact_tree(const jspan *doc, uint32_t t)
{
    char *c = jspan_text(doc, t);
    size_t n = strlen(c);
    if (n > jspan_at(doc, t)->len || json_check(c, n) == JSON_KIND_INVALID)
        span_fail("made a compact copy json_check refuses", c, n);
    bool rw;
    char *r = for_jansson(c, n, &rw);
    json_t *v = json_loadb(r, n, LOAD_FLAGS, NULL);
    free(r);
    xfree(c);
    return v;
}

/* Token t (depth deep) against jansson's v; strings and keys only when no
 * escape was rewritten for jansson. */
static void span_agrees(const jspan *doc, uint32_t t, json_t *v, int depth, int index_depth, bool rewritten,
                        const char *text, size_t len)
{
    const jspan_tok *k = jspan_at(doc, t);
    int want = json_is_object(v) ? JSPAN_OBJECT : json_is_array(v) ? JSPAN_ARRAY : json_is_string(v) ? JSPAN_STRING
             : json_is_number(v) ? JSPAN_NUMBER : json_is_true(v) ? JSPAN_TRUE : json_is_false(v) ? JSPAN_FALSE : JSPAN_NULL;
    if (k->type != want)
        span_fail("gives a value another type than jansson", text, len);
    if (k->start + k->len > len || k->next <= t || k->next > doc->n)
        span_fail("has a token outside the text or the index", text, len);
    bool container = k->type == JSPAN_OBJECT || k->type == JSPAN_ARRAY;
    if (container && ((depth >= index_depth) != ((k->flags & JSPAN_OPAQUE) != 0)))
        span_fail("indexes the members of a container at the wrong depth", text, len);
    if (container && (k->flags & JSPAN_OPAQUE)) {
        json_t *c = compact_tree(doc, t);
        if (k->next != t + 1 || k->count != 0 || !json_equal(c, v))
            span_fail("keeps an opaque value that is not the value", text, len);
        json_decref(c);
        return;
    }
    switch (k->type) {
    case JSPAN_NUMBER: {
        char buf[512];
        if (k->len >= sizeof(buf))
            break;
        memcpy(buf, text + k->start, k->len);
        buf[k->len] = '\0';
        if (strtod(buf, NULL) != json_real_value(v))
            span_fail("reads a number jansson reads otherwise", text, len);
        int64_t i;
        bool plain = strpbrk(buf, ".eE") == NULL;
        if (jspan_int(doc, t, &i) ? !plain || (double)i != json_real_value(v)
                                  : plain && fabs(json_real_value(v)) < 9.2e18)
            span_fail("reads an integer wrongly", text, len);
        break;
    }
    case JSPAN_STRING: {
        if (rewritten)
            break;
        size_t n = json_string_length(v);
        char *buf = xmalloc(n + 2);
        if (jspan_string(doc, t, buf, n + 2) != n || memcmp(buf, json_string_value(v), n) != 0 ||
            !jspan_eq(doc, t, json_string_value(v), n))
            span_fail("decodes a string otherwise than jansson", text, len);
        xfree(buf);
        break;
    }
    case JSPAN_ARRAY: {
        if (k->count != json_array_size(v))
            span_fail("counts an array's elements wrongly", text, len);
        uint32_t e = jspan_first(doc, t);
        for (size_t i = 0; i < k->count; i++, e = jspan_next_element(doc, e))
            span_agrees(doc, e, json_array_get(v, i), depth + 1, index_depth, rewritten, text, len);
        if (k->count > 0 && e != k->next)
            span_fail("links an array's elements wrongly", text, len);
        break;
    }
    case JSPAN_OBJECT: {
        if (k->count < json_object_size(v))
            span_fail("counts fewer members than jansson has names", text, len);
        uint32_t m = jspan_first(doc, t);
        for (uint32_t i = 0; i < k->count; i++, m = jspan_next_key(doc, m))
            if (jspan_at(doc, m)->type != JSPAN_STRING)
                span_fail("has a key that is not a string", text, len);
        if (k->count > 0 && m != k->next)
            span_fail("links an object's members wrongly", text, len);
        if (rewritten)
            break;
        const char *key;
        json_t *x;
        json_object_foreach(v, key, x) {
            uint32_t last = JSPAN_NONE;
            m = jspan_first(doc, t);
            for (uint32_t i = 0; i < k->count; i++, m = jspan_next_key(doc, m))
                if (jspan_eq(doc, m, key, strlen(key)))
                    last = m + 1;
            if (last == JSPAN_NONE || (strlen(key) < 64 && jspan_get(doc, t, key) != last))
                span_fail("misses a member jansson has", text, len);
            span_agrees(doc, last, x, depth + 1, index_depth, rewritten, text, len);
        }
        break;
    }
    default:
        break;
    }
}

static void span_mode(const char *text, size_t len, int index_depth)
{
    static jspan doc;
    if (doc.max_tokens == 0)
        jspan_init(&doc, 1u << 20);
    enum jspan_status st = jspan_parse(&doc, text, len, JSON_MAX_DEPTH, index_depth);
    bool accepted = json_check(text, len) != JSON_KIND_INVALID;
    if ((st == JSPAN_OK) != accepted)
        span_fail(accepted ? "refuses what json_check accepts" : "accepts what json_check refuses", text, len);
    if (st != JSPAN_OK) {
        char why[160];
        jspan_describe(&doc, why, sizeof(why));
        if (doc.n != 0 || doc.err_pos > len || (st == JSPAN_END) != (doc.err_pos == len) || why[0] == '\0' ||
            (st != JSPAN_SYNTAX && st != JSPAN_END && st != JSPAN_TOO_DEEP))
            span_fail("fails without a consistent reason", text, len);
        return;
    }
    if (jspan_at(&doc, 0)->next != doc.n)
        span_fail("has tokens past its root", text, len);
    bool rewritten;
    char *t = for_jansson(text, len, &rewritten);
    json_t *j = json_loadb(t, len, LOAD_FLAGS, NULL);
    free(t);
    if (j == NULL) /* agree() already compared the verdicts (a raw NUL byte, nesting) */
        return;
    span_agrees(&doc, 0, j, 0, index_depth, rewritten, text, len);
    json_t *c = compact_tree(&doc, 0);
    if (!json_equal(c, j))
        span_fail("makes a compact copy that reads back otherwise", text, len);
    json_decref(c);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if ((mode & 3) == 0) {
        json_decref(agree("a text", text, len, NULL));
        span_mode(text, len, mode >> 2);
        return 0;
    }
    /* doc \0 path \0 value */
    const char *z1 = memchr(text, '\0', len);
    if (z1 == NULL)
        return 0;
    size_t doc_len = (size_t)(z1 - text);
    const char *path = z1 + 1;
    size_t rest = len - doc_len - 1;
    const char *z2 = memchr(path, '\0', rest);
    char *path_copy;
    const char *val = NULL;
    size_t val_len = 0;
    if (z2 == NULL) {
        path_copy = strndup(path, rest);
    } else {
        path_copy = strndup(path, (size_t)(z2 - path));
        val = z2 + 1;
        val_len = rest - (size_t)(z2 - path) - 1;
    }
    if (mode & 4)
        val = NULL;
    /* a limit from the first two bytes of the document */
    size_t limit = doc_len >= 2 ? ((size_t)(uint8_t)text[0] << 8 | (uint8_t)text[1]) : 0;
    path_mode(text, doc_len, path_copy, val, val_len, limit, (mode & 8) != 0);
    free(path_copy);
    return 0;
}
