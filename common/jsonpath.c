/* jsonpath.c - JSON validation and deepstream path patches (see jsonpath.h). */
#include "jsonpath.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mem.h"

/* ---------------- validating scanner ---------------- */

typedef struct scan {
    const char *p, *end;
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

static bool hex4(scan *s)
{
    if (s->end - s->p < 4)
        return false;
    for (int i = 0; i < 4; i++)
        if (!isxdigit((unsigned char)s->p[i]))
            return false;
    s->p += 4;
    return true;
}

/* UTF-8 sequence starting at s->p (first byte >= 0x80). */
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
            s->p++;
            if (s->p >= s->end)
                return false;
            char e = *s->p++;
            if (e == 'u') {
                if (!hex4(s))
                    return false;
            } else if (!strchr("\"\\/bfnrt", e) || e == '\0')
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

static bool number(scan *s)
{
    if (*s->p == '-')
        s->p++;
    if (s->p >= s->end)
        return false;
    if (*s->p == '0')
        s->p++;
    else if (!digits(s))
        return false;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!digits(s))
            return false;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (!digits(s))
            return false;
    }
    return true;
}

static bool value(scan *s, int depth)
{
    skip_ws(s);
    if (s->p >= s->end || depth > JSON_MAX_DEPTH)
        return false;
    char c = *s->p;
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        s->p++;
        skip_ws(s);
        if (s->p < s->end && *s->p == close) {
            s->p++;
            return true;
        }
        for (;;) {
            if (c == '{') {
                skip_ws(s);
                if (s->p >= s->end || *s->p != '"' || !string(s))
                    return false;
                skip_ws(s);
                if (s->p >= s->end || *s->p++ != ':')
                    return false;
            }
            if (!value(s, depth + 1))
                return false;
            skip_ws(s);
            if (s->p >= s->end)
                return false;
            if (*s->p == ',') {
                s->p++;
                continue;
            }
            if (*s->p == close) {
                s->p++;
                return true;
            }
            return false;
        }
    }
    if (c == '"')
        return string(s);
    if (c == '-' || isdigit((unsigned char)c))
        return number(s);
    return lit(s, "true") || lit(s, "false") || lit(s, "null");
}

enum json_kind json_check(const char *text, size_t len)
{
    scan s = {text, text + len};
    skip_ws(&s);
    if (s.p >= s.end)
        return JSON_KIND_INVALID;
    char first = *s.p;
    if (!value(&s, 0))
        return JSON_KIND_INVALID;
    skip_ws(&s);
    if (s.p != s.end)
        return JSON_KIND_INVALID;
    return first == '{' ? JSON_KIND_OBJECT : first == '[' ? JSON_KIND_ARRAY : JSON_KIND_SCALAR;
}

/* ---------------- paths ---------------- */

typedef struct token {
    bool is_index;
    size_t index;
    char *key; /* xmalloc'd when !is_index */
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
            out[n].key = xstrndup(a, (size_t)(q - a));
            if (forbidden_key(out[n].key)) {
                n++;
                *why = "forbidden key in path";
                goto fail;
            }
            n++;
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
                    out[n].is_index = true;
                    out[n].index = v;
                    out[n].key = NULL;
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

static const char *index_key(size_t index, char buf[24])
{
    snprintf(buf, 24, "%zu", index);
    return buf;
}

/* The child of node at tok, or NULL. */
static json_t *child(json_t *node, const token *tok)
{
    char buf[24];
    if (json_is_object(node))
        return json_object_get(node, tok->is_index ? index_key(tok->index, buf) : tok->key);
    if (json_is_array(node) && tok->is_index)
        return json_array_get(node, tok->index);
    return NULL;
}

/* Stores v (reference stolen) at tok in node. Returns 0 or -1. */
static int store(json_t *node, const token *tok, json_t *v)
{
    char buf[24];
    if (json_is_object(node))
        return json_object_set_new(node, tok->is_index ? index_key(tok->index, buf) : tok->key, v);
    if (json_is_array(node) && tok->is_index) {
        while (json_array_size(node) < tok->index)
            json_array_append_new(node, json_null());
        if (json_array_size(node) == tok->index)
            return json_array_append_new(node, v);
        return json_array_set_new(node, tok->index, v);
    }
    json_decref(v);
    return -1;
}

static int erase(json_t *node, const token *tok)
{
    char buf[24];
    if (json_is_object(node)) {
        json_object_del(node, tok->is_index ? index_key(tok->index, buf) : tok->key);
        return 0;
    }
    if (json_is_array(node) && tok->is_index) {
        if (tok->index < json_array_size(node))
            json_array_set_new(node, tok->index, json_null());
        return 0;
    }
    return -1;
}

static json_t *new_container(const token *next)
{
    if (!next->is_index)
        return json_object();
    json_t *a = json_array();
    for (size_t i = 0; i < next->index; i++)
        json_array_append_new(a, json_null());
    return a;
}

int jsonpath_apply(const char *doc, size_t doc_len, const char *path, const char *val,
                   size_t val_len, char **out, size_t *out_len, const char **why)
{
    token toks[MAX_TOKENS];
    int n = tokenize(path, toks, why);
    if (n < 0)
        return -1;
    int rc = -1;
    json_error_t jerr;
    json_t *root = json_loadb(doc, doc_len, JSON_DECODE_ANY, &jerr);
    json_t *v = NULL;
    if (root == NULL || !(json_is_object(root) || json_is_array(root))) {
        *why = "record data is not a JSON object or array";
        goto done;
    }
    if (val != NULL) {
        v = json_loadb(val, val_len, JSON_DECODE_ANY, &jerr);
        if (v == NULL) {
            *why = "value is not valid JSON";
            goto done;
        }
    }
    json_t *node = root;
    for (int i = 0; i < n - 1; i++) {
        json_t *c = child(node, &toks[i]);
        if (!json_is_object(c) && !json_is_array(c)) {
            c = new_container(&toks[i + 1]);
            if (store(node, &toks[i], json_incref(c)) != 0) {
                json_decref(c);
                *why = "path uses a key on an array";
                goto done;
            }
            json_decref(c); /* node holds it now */
        }
        node = c;
    }
    if (v != NULL) {
        if (store(node, &toks[n - 1], v) != 0) {
            v = NULL;
            *why = "path uses a key on an array";
            goto done;
        }
        v = NULL;
    } else if (erase(node, &toks[n - 1]) != 0) {
        *why = "path uses a key on an array";
        goto done;
    }
    char *text = json_dumps(root, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL) {
        *why = "cannot encode the result";
        goto done;
    }
    *out_len = strlen(text);
    *out = xstrndup(text, *out_len);
    free(text);
    rc = 0;
done:
    json_decref(root);
    json_decref(v);
    free_tokens(toks, n);
    return rc;
}
