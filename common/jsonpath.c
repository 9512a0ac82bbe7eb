/* jsonpath.c - the server's one JSON dialect: a validating scanner, the
 * span index it builds on request (jspan_parse; read with jsonspan.c), and
 * deepstream's path patches applied by splicing the document's text (see
 * jsonpath.h). Not a JSON library: nothing here builds a tree or re-encodes a
 * value, so every byte a client sent (number text, escapes, spacing) stays as
 * it was, and what a patch costs is known before anything is allocated. */
#include "jsonpath.h"
#include "jsonspan.h"

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

/* ---------------- validating scanner ---------------- */

typedef struct scan {
    const char *p, *end;
    int max_depth; /* the deepest nesting level value() reached */
    int limit;     /* the deepest nesting level allowed */
    bool escaped;  /* the last string() held a backslash escape */
    jspan *ix;     /* jspan_parse: where tokens go (NULL: only validate) */
    int ix_depth;  /* values at most this deep get tokens */
    enum jspan_status fail; /* why value() failed, when not a syntax error */
} scan;

static void skip_ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static bool lit(scan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return false;
    s->p += n;
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Four hex digits at p (at least 4 bytes readable): their value, or -1. */
static long hex4_at(const char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

/* UTF-8 sequence starting at s->p (first byte >= 0x80): well-formed, shortest
 * form, no encoded surrogates. */
static bool utf8(scan *s)
{
    const unsigned char *p = (const unsigned char *)s->p;
    size_t left = (size_t)(s->end - s->p);
    int n;
    uint32_t cp;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
        cp = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        cp = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        cp = p[0] & 0x07;
    } else
        return false;
    if (left < (size_t)n)
        return false;
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return false;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return false;
    s->p += n;
    return true;
}

/* A string; any \uXXXX escape is fine, \u0000 and lone surrogates included
 * (JSON.stringify writes them so), raw bytes must be UTF-8. */
static bool string(scan *s)
{
    s->p++; /* opening quote */
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            s->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            s->escaped = true;
            s->p++;
            if (s->p >= s->end)
                return false;
            char e = *s->p++;
            if (e == 'u') {
                if (s->end - s->p < 4 || hex4_at(s->p) < 0)
                    return false;
                s->p += 4;
            } else if (e == '\0' || !strchr("\"\\/bfnrt", e))
                return false;
        } else if (c >= 0x80) {
            if (!utf8(s))
                return false;
        } else
            s->p++;
    }
    return false;
}

static bool digits(scan *s)
{
    const char *start = s->p;
    while (s->p < s->end && isdigit((unsigned char)*s->p))
        s->p++;
    return s->p > start;
}

/* Whether the number text[0..len) (valid grammar, magnitude near 1e308) is
 * below the double overflow threshold. */
static bool fits_double(const char *text, size_t len)
{
    char small[64];
    char *buf = len < sizeof(small) ? small : xmalloc(len + 1);
    memcpy(buf, text, len);
    buf[len] = '\0';
    bool ok = isfinite(strtod(buf, NULL));
    if (buf != small)
        xfree(buf);
    return ok;
}

/* A number (RFC 8259 grammar) whose value is a finite double: JSON.parse turns
 * anything larger into Infinity, which JSON.stringify writes as null. Any
 * number of digits is fine (2**64 is written 18446744073709552000), and so is
 * underflow (1e-400 reads as 0 everywhere). The text itself is never changed. */
static bool number(scan *s)
{
    const char *start = s->p;
    if (*s->p == '-')
        s->p++;
    if (s->p >= s->end)
        return false;
    const char *int_start = s->p;
    if (*s->p == '0')
        s->p++;
    else if (!digits(s))
        return false;
    bool zero = *int_start == '0';
    /* decimal exponent of the first significant digit, before the e part */
    long long mag = zero ? 0 : (long long)(s->p - int_start) - 1;
    if (s->p < s->end && *s->p == '.') {
        const char *frac = ++s->p;
        if (!digits(s))
            return false;
        if (zero) {
            const char *q = frac;
            while (q < s->p && *q == '0')
                q++;
            if (q < s->p) {
                zero = false;
                mag = -(long long)(q - frac) - 1;
            }
        }
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        bool neg = false;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            neg = *s->p++ == '-';
        const char *e = s->p;
        if (!digits(s))
            return false;
        long long ev = 0;
        for (; e < s->p; e++)
            if (ev < 1000000000) /* saturates: far beyond any double either way */
                ev = ev * 10 + (*e - '0');
        mag += neg ? -ev : ev;
    }
    if (zero || mag < 308)
        return true;
    if (mag > 308)
        return false;
    return fits_double(start, (size_t)(s->p - start));
}

/* jspan_parse: a new token for the value (or key) starting at s->p, or
 * JSPAN_NONE with s->fail set when the index is full. */
static uint32_t record(scan *s, uint8_t type)
{
    jspan *j = s->ix;
    if (j->n == j->cap) {
        if (j->cap >= j->max_tokens) {
            s->fail = JSPAN_TOO_MANY;
            return JSPAN_NONE;
        }
        uint64_t cap = j->cap < 32 ? 64 : (uint64_t)j->cap * 2;
        if (cap > j->max_tokens)
            cap = j->max_tokens;
        j->tok = xrealloc(j->tok, (size_t)cap * sizeof(*j->tok));
        j->cap = (uint32_t)cap;
    }
    uint32_t t = j->n++;
    j->tok[t] = (jspan_tok){.start = (uint32_t)(s->p - j->text), .type = type};
    return t;
}

static uint8_t type_of(char c)
{
    switch (c) {
    case '{': return JSPAN_OBJECT;
    case '[': return JSPAN_ARRAY;
    case '"': return JSPAN_STRING;
    case 't': return JSPAN_TRUE;
    case 'f': return JSPAN_FALSE;
    case 'n': return JSPAN_NULL;
    default: return JSPAN_NUMBER;
    }
}

/* One value at nesting level depth; with s->ix, its token (and its members',
 * down to s->ix_depth) recorded. */
static bool value(scan *s, int depth)
{
    skip_ws(s);
    if (s->p >= s->end)
        return false;
    if (depth > s->limit) {
        s->fail = JSPAN_TOO_DEEP;
        return false;
    }
    if (depth > s->max_depth)
        s->max_depth = depth;
    char c = *s->p;
    uint32_t me = JSPAN_NONE;
    if (s->ix != NULL && depth <= s->ix_depth && (me = record(s, type_of(c))) == JSPAN_NONE)
        return false;
    bool ok;
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        bool members = me != JSPAN_NONE && depth < s->ix_depth; /* they get tokens */
        if (me != JSPAN_NONE && !members)
            s->ix->tok[me].flags = JSPAN_OPAQUE;
        s->p++;
        skip_ws(s);
        if (s->p < s->end && *s->p == close) {
            s->p++;
            ok = true;
            goto done;
        }
        for (;;) {
            if (c == '{') {
                skip_ws(s);
                if (s->p >= s->end || *s->p != '"')
                    return false;
                uint32_t key = members ? record(s, JSPAN_STRING) : JSPAN_NONE;
                if (members && key == JSPAN_NONE)
                    return false;
                s->escaped = false;
                if (!string(s))
                    return false;
                if (key != JSPAN_NONE) {
                    jspan_tok *k = &s->ix->tok[key];
                    k->len = (uint32_t)(s->p - s->ix->text) - k->start;
                    k->next = key + 1;
                    k->flags = s->escaped ? JSPAN_ESCAPED : 0;
                }
                skip_ws(s);
                if (s->p >= s->end || *s->p != ':')
                    return false;
                s->p++;
            }
            if (!value(s, depth + 1))
                return false;
            if (members)
                s->ix->tok[me].count++;
            skip_ws(s);
            if (s->p >= s->end)
                return false;
            if (*s->p == ',') {
                s->p++;
                continue;
            }
            if (*s->p == close) {
                s->p++;
                ok = true;
                goto done;
            }
            return false;
        }
    }
    s->escaped = false;
    if (c == '"')
        ok = string(s);
    else if (c == '-' || isdigit((unsigned char)c))
        ok = number(s);
    else
        ok = lit(s, "true") || lit(s, "false") || lit(s, "null");
done:
    if (ok && me != JSPAN_NONE) {
        jspan_tok *t = &s->ix->tok[me];
        t->len = (uint32_t)(s->p - s->ix->text) - t->start;
        t->next = s->ix->n;
        if (s->escaped && c == '"')
            t->flags = JSPAN_ESCAPED;
    }
    return ok;
}

/* Validates text[0..len) as one value; on success *start and *stop frame it
 * without the surrounding whitespace and *depth is its deepest nesting. */
static enum json_kind check(const char *text, size_t len, const char **start, const char **stop, int *depth)
{
    scan s = {.p = text, .end = text + len, .limit = JSON_MAX_DEPTH};
    skip_ws(&s);
    if (s.p >= s.end)
        return JSON_KIND_INVALID;
    const char *first = s.p;
    if (!value(&s, 0))
        return JSON_KIND_INVALID;
    const char *last = s.p;
    skip_ws(&s);
    if (s.p != s.end)
        return JSON_KIND_INVALID;
    *start = first;
    *stop = last;
    *depth = s.max_depth;
    return *first == '{' ? JSON_KIND_OBJECT : *first == '[' ? JSON_KIND_ARRAY : JSON_KIND_SCALAR;
}

enum json_kind json_check(const char *text, size_t len)
{
    const char *a, *b;
    int depth;
    return check(text, len, &a, &b, &depth);
}

enum jspan_status jspan_parse(jspan *j, const char *text, size_t len, int max_depth, int index_depth)
{
    j->text = text;
    j->n = 0;
    j->err_pos = 0;
    if (len >= UINT32_MAX)
        return j->status = JSPAN_TOO_LONG;
    scan s = {.p = text, .end = text + len, .limit = max_depth, .ix = j, .ix_depth = index_depth};
    bool ok = value(&s, 0);
    if (ok) {
        skip_ws(&s);
        ok = s.p == s.end;
    }
    if (ok)
        return j->status = JSPAN_OK;
    j->n = 0;
    j->err_pos = (size_t)(s.p - text);
    j->status = s.fail != JSPAN_OK ? s.fail : s.p >= s.end ? JSPAN_END : JSPAN_SYNTAX;
    return j->status;
}

/* ---------------- paths ---------------- */

typedef struct token {
    bool is_index;
    size_t index;
    char *key; /* xmalloc'd: the key, or the index in decimal (how an object names it) */
    size_t key_len;
} token;

#define MAX_TOKENS 256

static void free_tokens(token *t, int n)
{
    for (int i = 0; i < n; i++)
        xfree(t[i].key);
}

static bool forbidden_key(const char *k)
{
    return strcmp(k, "__proto__") == 0 || strcmp(k, "constructor") == 0 ||
           strcmp(k, "prototype") == 0;
}

static bool valid_utf8(const char *p, size_t len)
{
    scan s = {.p = p, .end = p + len, .limit = JSON_MAX_DEPTH};
    while (s.p < s.end)
        if ((unsigned char)*s.p < 0x80)
            s.p++;
        else if (!utf8(&s))
            return false;
    return true;
}

/* Splits path into tokens; returns the count or -1 (with *why). */
static int tokenize(const char *path, token *out, const char **why)
{
    int n = 0;
    const char *p = path;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t plen = dot ? (size_t)(dot - p) : strlen(p);
        /* trim */
        const char *a = p, *b = p + plen;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        if (a < b) {
            /* the key is everything up to the first bracket */
            const char *q = a;
            while (q < b && *q != '[' && *q != ']')
                q++;
            if (n >= MAX_TOKENS)
                goto too_many;
            out[n].is_index = false;
            out[n].key_len = (size_t)(q - a);
            out[n].key = xstrndup(a, out[n].key_len);
            n++;
            if (forbidden_key(out[n - 1].key)) {
                *why = "forbidden key in path";
                goto fail;
            }
            if (!valid_utf8(a, (size_t)(q - a))) {
                *why = "path is not valid UTF-8";
                goto fail;
            }
            /* then the bracketed indexes: pieces between [ and ] */
            while (q < b) {
                q++; /* past a bracket */
                const char *r = q;
                while (r < b && *r != '[' && *r != ']')
                    r++;
                if (r > q) {
                    size_t v = 0;
                    for (const char *d = q; d < r; d++) {
                        if (!isdigit((unsigned char)*d)) {
                            *why = "array index is not a non-negative integer";
                            goto fail;
                        }
                        v = v * 10 + (size_t)(*d - '0');
                        if (v > JSONPATH_MAX_INDEX) {
                            *why = "array index too large";
                            goto fail;
                        }
                    }
                    if (n >= MAX_TOKENS)
                        goto too_many;
                    char buf[24];
                    out[n].is_index = true;
                    out[n].index = v;
                    out[n].key_len = (size_t)snprintf(buf, sizeof(buf), "%zu", v);
                    out[n].key = xstrndup(buf, out[n].key_len);
                    n++;
                }
                q = r;
            }
        }
        if (!dot)
            break;
        p = dot + 1;
    }
    if (n == 0) {
        *why = "empty path";
        return -1;
    }
    return n;
too_many:
    *why = "path has too many parts";
fail:
    free_tokens(out, n);
    return -1;
}

/* Whether the JSON string at p (its opening quote; valid) decodes to key. A
 * surrogate pair decodes to its UTF-8 form; a lone surrogate or \u0000 never
 * equals a key (keys are UTF-8 without NUL). */
static bool key_equals(const char *p, const token *tok)
{
    const unsigned char *k = (const unsigned char *)tok->key, *kend = k + tok->key_len;
    p++;
    for (;;) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return k == kend;
        if (k == kend)
            return false;
        if (c != '\\') {
            if (c != *k)
                return false;
            p++;
            k++;
            continue;
        }
        char e = p[1];
        p += 2;
        unsigned char one;
        switch (e) {
        case 'b': one = '\b'; break;
        case 'f': one = '\f'; break;
        case 'n': one = '\n'; break;
        case 'r': one = '\r'; break;
        case 't': one = '\t'; break;
        case 'u': one = 0; break;
        default: one = (unsigned char)e; break; /* " \ / */
        }
        if (e != 'u') {
            if (one != *k)
                return false;
            k++;
            continue;
        }
        long u = hex4_at(p);
        p += 4;
        if (u == 0 || (u >= 0xdc00 && u <= 0xdfff))
            return false;
        if (u >= 0xd800 && u <= 0xdbff) {
            long lo = p[0] == '\\' && p[1] == 'u' ? hex4_at(p + 2) : -1;
            if (lo < 0xdc00 || lo > 0xdfff)
                return false;
            p += 6;
            u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
        }
        unsigned char b[4];
        size_t n;
        if (u < 0x80) {
            b[0] = (unsigned char)u;
            n = 1;
        } else if (u < 0x800) {
            b[0] = (unsigned char)(0xc0 | u >> 6);
            b[1] = (unsigned char)(0x80 | (u & 0x3f));
            n = 2;
        } else if (u < 0x10000) {
            b[0] = (unsigned char)(0xe0 | u >> 12);
            b[1] = (unsigned char)(0x80 | ((u >> 6) & 0x3f));
            b[2] = (unsigned char)(0x80 | (u & 0x3f));
            n = 3;
        } else {
            b[0] = (unsigned char)(0xf0 | u >> 18);
            b[1] = (unsigned char)(0x80 | ((u >> 12) & 0x3f));
            b[2] = (unsigned char)(0x80 | ((u >> 6) & 0x3f));
            b[3] = (unsigned char)(0x80 | (u & 0x3f));
            n = 4;
        }
        if ((size_t)(kend - k) < n || memcmp(k, b, n) != 0)
            return false;
        k += n;
    }
}

/* Walks the members of a validated object or array (it->s.p just past the
 * opening bracket). */
typedef struct iter {
    scan s;
    char close;
    int level;   /* of the container */
    size_t count; /* members seen so far */
} iter;

typedef struct member {
    const char *key;        /* opening quote of the key; NULL in an array */
    const char *val, *stop; /* the value, without whitespace */
} member;

static void iter_start(iter *it, const char *open, const char *end, int level)
{
    it->s = (scan){.p = open + 1, .end = end, .limit = JSON_MAX_DEPTH};
    it->close = *open == '{' ? '}' : ']';
    it->level = level;
    it->count = 0;
}

/* 1 with *m filled, 0 at the end (it->s.p on the closing bracket). */
static int iter_next(iter *it, member *m)
{
    scan *s = &it->s;
    skip_ws(s);
    if (*s->p == ',') {
        s->p++;
        skip_ws(s);
    }
    if (*s->p == it->close)
        return 0;
    m->key = NULL;
    if (it->close == '}') {
        m->key = s->p;
        string(s);
        skip_ws(s);
        s->p++; /* ':' */
        skip_ws(s);
    }
    m->val = s->p;
    value(s, it->level + 1);
    m->stop = s->p;
    it->count++;
    return 1;
}

/* Output of a patch: counts bytes when buf is NULL, writes them otherwise, so
 * the size of a result is known (and refused) before it is allocated. */
typedef struct sink {
    char *buf;
    size_t len;
} sink;

static void put(sink *o, const char *p, size_t n)
{
    if (o->buf != NULL)
        memcpy(o->buf + o->len, p, n);
    o->len += n;
}

static void putc_(sink *o, char c)
{
    put(o, &c, 1);
}

/* n nulls separated by commas, with a comma first when comma. */
static void put_nulls(sink *o, size_t n, bool comma)
{
    if (n == 0)
        return;
    if (o->buf == NULL) {
        o->len += 5 * n - (comma ? 0 : 1);
        return;
    }
    for (size_t i = 0; i < n; i++)
        put(o, comma || i > 0 ? ",null" : "null", comma || i > 0 ? 5 : 4);
}

void json_write_string(const char *s, size_t len, void (*out)(void *ctx, const char *bytes, size_t n), void *ctx)
{
    out(ctx, "\"", 1);
    size_t run = 0; /* bytes copied as they are, written in one go */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\b' ? "\\b" : c == '\f' ? "\\f"
                        : c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
        if (esc == NULL && c >= 0x20) {
            run++;
            continue;
        }
        if (run > 0)
            out(ctx, s + i - run, run);
        run = 0;
        if (esc != NULL) {
            out(ctx, esc, 2);
        } else {
            char u[8];
            snprintf(u, sizeof(u), "\\u%04x", c);
            out(ctx, u, 6);
        }
    }
    if (run > 0)
        out(ctx, s + len - run, run);
    out(ctx, "\"", 1);
}

static void put_sink(void *ctx, const char *bytes, size_t n)
{
    put(ctx, bytes, n);
}

/* A key as a JSON string, escaped as JSON.stringify does. */
static void put_key(sink *o, const token *tok)
{
    json_write_string(tok->key, tok->key_len, put_sink, o);
}

/* Where and how a patch changes the document. */
typedef struct plan {
    enum { P_NONE, P_REPLACE, P_APPEND, P_REMOVE } kind;
    const char *a, *b; /* the span of the document replaced */
    const token *tok;  /* APPEND: the member's key or index; REMOVE: the key */
    size_t count;      /* APPEND: members the container has */
    int level;         /* REMOVE: of the object */
    int from;          /* REPLACE, APPEND: the new child holds tokens from.. */
    int deepest;       /* REPLACE, APPEND: the nesting level the new child reaches */
} plan;

typedef struct patch {
    const token *toks;
    int n;
    const char *val, *val_stop; /* NULL: erase */
} patch;

/* The new child: containers for tokens from..n-1 around the value (or, when
 * erasing, around nothing), or the value itself (null when erasing). */
static void put_child(sink *o, const patch *pt, int from)
{
    if (from == pt->n) {
        if (pt->val != NULL)
            put(o, pt->val, (size_t)(pt->val_stop - pt->val));
        else
            put(o, "null", 4);
        return;
    }
    for (int j = from; j < pt->n; j++) {
        const token *t = &pt->toks[j];
        bool last = j == pt->n - 1;
        if (t->is_index) {
            putc_(o, '[');
            put_nulls(o, t->index, false);
            if (!last || pt->val != NULL) {
                if (t->index > 0)
                    putc_(o, ',');
            }
        } else {
            putc_(o, '{');
            if (!last || pt->val != NULL) {
                put_key(o, t);
                putc_(o, ':');
            }
        }
    }
    if (pt->val != NULL)
        put(o, pt->val, (size_t)(pt->val_stop - pt->val));
    for (int j = pt->n - 1; j >= from; j--)
        putc_(o, pt->toks[j].is_index ? ']' : '}');
}

static void emit(sink *o, const char *doc, const char *doc_end, const patch *pt, const plan *pl)
{
    if (pl->kind == P_NONE) {
        put(o, doc, (size_t)(doc_end - doc));
        return;
    }
    put(o, doc, (size_t)(pl->a - doc));
    switch (pl->kind) {
    case P_REPLACE:
        put_child(o, pt, pl->from);
        break;
    case P_APPEND:
        if (*pl->a == '}') {
            if (pl->count > 0)
                putc_(o, ',');
            put_key(o, pl->tok);
            putc_(o, ':');
        } else {
            put_nulls(o, pl->tok->index - pl->count, pl->count > 0);
            if (pl->count > 0 || pl->tok->index > 0)
                putc_(o, ',');
        }
        put_child(o, pt, pl->from);
        break;
    case P_REMOVE: {
        iter it;
        member m;
        bool first = true;
        iter_start(&it, pl->a, doc_end, pl->level);
        putc_(o, '{');
        while (iter_next(&it, &m) == 1) {
            if (key_equals(m.key, pl->tok))
                continue;
            if (!first)
                putc_(o, ',');
            first = false;
            put(o, m.key, (size_t)(m.stop - m.key));
        }
        putc_(o, '}');
        break;
    }
    case P_NONE:
        break;
    }
    put(o, pl->b, (size_t)(doc_end - pl->b));
}

/* Walks the path through the document to the point where it changes. */
static int locate(const char *root, const char *doc_end, const patch *pt, int value_depth, plan *pl,
                  const char **why)
{
    const char *c = root; /* the current container's opening bracket */
    int level = 0;
    for (int i = 0; i < pt->n; i++) {
        const token *tok = &pt->toks[i];
        bool last = i == pt->n - 1;
        if (*c == '[' && !tok->is_index) {
            *why = "path uses a key on an array";
            return JSONPATH_INVALID;
        }
        iter it;
        member m, found = {0};
        iter_start(&it, c, doc_end, level);
        if (*c == '{') {
            while (iter_next(&it, &m) == 1) /* the last of duplicate keys wins, as in JSON.parse */
                if (key_equals(m.key, tok))
                    found = m;
        } else {
            while (it.count <= tok->index && iter_next(&it, &m) == 1)
                if (it.count == tok->index + 1)
                    found = m;
        }
        if (!last && found.val != NULL && (*found.val == '{' || *found.val == '[')) {
            c = found.val;
            level++;
            continue;
        }
        /* the change happens here */
        if (last && pt->val == NULL) {
            if (found.val == NULL)
                pl->kind = P_NONE;
            else if (*c == '[') /* the slot stays, as null */
                *pl = (plan){.kind = P_REPLACE, .a = found.val, .b = found.stop, .from = pt->n};
            else /* the search went through the whole object: it.s.p is on its '}' */
                *pl = (plan){.kind = P_REMOVE, .a = c, .b = it.s.p + 1, .tok = tok, .level = level};
            return 0;
        }
        if (found.val != NULL)
            *pl = (plan){.kind = P_REPLACE, .a = found.val, .b = found.stop, .from = i + 1};
        else
            *pl = (plan){.kind = P_APPEND, .a = it.s.p, .b = it.s.p, .tok = tok, .count = it.count,
                         .from = i + 1};
        /* The new child sits at level+1; the containers for the tokens left
         * nest one level each, with the value (or, erasing, the last one's
         * nulls) one deeper. */
        const token *end = &pt->toks[pt->n - 1];
        int chain = pt->n - (i + 1);
        if (pt->val != NULL)
            pl->deepest = level + 1 + chain + value_depth;
        else
            pl->deepest = level + chain + (end->is_index && end->index > 0 ? 1 : 0);
        return 0;
    }
    return 0; /* not reached: the last token always decides */
}

int jsonpath_apply_max(const char *doc, size_t doc_len, const char *path, const char *val,
                       size_t val_len, size_t max_len, char **out, size_t *out_len, const char **why)
{
    token toks[MAX_TOKENS];
    *out = NULL;
    int n = tokenize(path, toks, why);
    if (n < 0)
        return JSONPATH_INVALID;
    int rc = JSONPATH_INVALID;
    patch pt = {.toks = toks, .n = n};
    const char *root, *root_stop;
    int depth, value_depth = 0;
    enum json_kind k = check(doc, doc_len, &root, &root_stop, &depth);
    if (k != JSON_KIND_OBJECT && k != JSON_KIND_ARRAY) {
        *why = "record data is not a JSON object or array";
        goto done;
    }
    if (val != NULL && check(val, val_len, &pt.val, &pt.val_stop, &value_depth) == JSON_KIND_INVALID) {
        *why = "value is not valid JSON";
        goto done;
    }
    plan pl = {0};
    rc = locate(root, doc + doc_len, &pt, value_depth, &pl, why);
    if (rc != 0)
        goto done;
    sink count = {NULL, 0};
    emit(&count, doc, doc + doc_len, &pt, &pl);
    if (count.len > max_len) {
        *why = "record.maxSize exceeded";
        rc = JSONPATH_TOO_LARGE;
        goto done;
    }
    if (pl.deepest > JSON_MAX_DEPTH) {
        *why = "the result would nest too deep";
        rc = JSONPATH_INVALID;
        goto done;
    }
    sink o = {xmalloc(count.len + 1), 0};
    emit(&o, doc, doc + doc_len, &pt, &pl);
    o.buf[o.len] = '\0';
    *out = o.buf;
    *out_len = o.len;
done:
    free_tokens(toks, n);
    return rc;
}

int jsonpath_apply(const char *doc, size_t doc_len, const char *path, const char *val,
                   size_t val_len, char **out, size_t *out_len, const char **why)
{
    return jsonpath_apply_max(doc, doc_len, path, val, val_len, SIZE_MAX, out, out_len, why);
}
