/* jsonspan.c - reading the span index of jsonspan.h: finding a member,
 * decoding a string, a number's integer, a value's compact text. The index
 * itself is built by jspan_parse in jsonpath.c, whose scanner validated every
 * byte, so the readers here never meet malformed text. Not a parser. */
#include "jsonspan.h"

#include <stdio.h>
#include <string.h>

#include "mem.h"

void jspan_init(jspan *j, uint32_t max_tokens)
{
    memset(j, 0, sizeof(*j));
    j->max_tokens = max_tokens;
}

void jspan_free(jspan *j)
{
    if (j == NULL)
        return;
    xfree(j->tok);
    j->tok = NULL;
    j->n = j->cap = 0;
}

void jspan_describe(const jspan *j, char *buf, size_t len)
{
    unsigned char c = j->text != NULL && j->status == JSPAN_SYNTAX ? (unsigned char)j->text[j->err_pos] : 0;
    switch (j->status) {
    case JSPAN_OK:
        snprintf(buf, len, "no error");
        break;
    case JSPAN_END:
        snprintf(buf, len, "Unexpected end of JSON input");
        break;
    case JSPAN_SYNTAX:
        if (c > 0x20 && c < 0x7f)
            snprintf(buf, len, "Unexpected token %c in JSON at position %zu", c, j->err_pos);
        else
            snprintf(buf, len, "Unexpected byte 0x%02x in JSON at position %zu", c, j->err_pos);
        break;
    case JSPAN_TOO_DEEP:
        snprintf(buf, len, "JSON nested too deep at position %zu", j->err_pos);
        break;
    case JSPAN_TOO_MANY:
        snprintf(buf, len, "JSON holds more than %u values", j->max_tokens);
        break;
    case JSPAN_TOO_LONG:
        snprintf(buf, len, "JSON text of 4 GiB or more");
        break;
    }
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static uint32_t hex4(const char *p)
{
    return (uint32_t)(hexval(p[0]) << 12 | hexval(p[1]) << 8 | hexval(p[2]) << 4 | hexval(p[3]));
}

/* Appends cp as UTF-8 at out; returns the bytes written (1 to 4). */
static size_t utf8_put(uint32_t cp, unsigned char *out)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xc0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xe0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

size_t jspan_string(const jspan *j, uint32_t t, char *buf, size_t cap)
{
    const jspan_tok *k = &j->tok[t];
    const char *p = j->text + k->start + 1, *end = j->text + k->start + k->len - 1; /* inside the quotes */
    size_t n = 0;
    if (!(k->flags & JSPAN_ESCAPED)) {
        n = (size_t)(end - p);
        size_t copy = n < cap ? n : cap - 1;
        memcpy(buf, p, copy);
        buf[copy] = '\0';
        return n;
    }
    while (p < end) {
        unsigned char one[4];
        size_t m = 1;
        if (*p != '\\') {
            const char *q = p;
            while (q < end && *q != '\\')
                q++;
            size_t run = (size_t)(q - p);
            if (n < cap - 1)
                memcpy(buf + n, p, run < cap - 1 - n ? run : cap - 1 - n);
            n += run;
            p = q;
            continue;
        }
        char e = p[1];
        p += 2;
        switch (e) {
        case 'b': one[0] = '\b'; break;
        case 'f': one[0] = '\f'; break;
        case 'n': one[0] = '\n'; break;
        case 'r': one[0] = '\r'; break;
        case 't': one[0] = '\t'; break;
        case 'u': {
            uint32_t u = hex4(p);
            p += 4;
            if (u >= 0xd800 && u <= 0xdbff && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                uint32_t lo = hex4(p + 2);
                if (lo >= 0xdc00 && lo <= 0xdfff) {
                    u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                    p += 6;
                }
            }
            if (u >= 0xd800 && u <= 0xdfff)
                u = 0xfffd; /* a lone surrogate: what JavaScript's UTF-8 encoders write for it */
            m = utf8_put(u, one);
            break;
        }
        default: one[0] = (unsigned char)e; break; /* " \ / */
        }
        for (size_t i = 0; i < m; i++, n++)
            if (n < cap - 1)
                buf[n] = (char)one[i];
    }
    buf[n < cap - 1 ? n : cap - 1] = '\0';
    return n;
}

bool jspan_eq(const jspan *j, uint32_t t, const char *s, size_t n)
{
    const jspan_tok *k = &j->tok[t];
    if (k->type != JSPAN_STRING)
        return false;
    if (!(k->flags & JSPAN_ESCAPED))
        return k->len - 2 == n && memcmp(j->text + k->start + 1, s, n) == 0;
    char small[256];
    char *buf = n + 2 <= sizeof(small) ? small : xmalloc(n + 2);
    bool eq = jspan_string(j, t, buf, n + 2) == n && memcmp(buf, s, n) == 0;
    if (buf != small)
        xfree(buf);
    return eq;
}

uint32_t jspan_get(const jspan *j, uint32_t obj, const char *key)
{
    if (j->tok[obj].type != JSPAN_OBJECT)
        return JSPAN_NONE;
    size_t n = strlen(key);
    uint32_t found = JSPAN_NONE, k = jspan_first(j, obj);
    for (uint32_t i = 0; i < j->tok[obj].count; i++, k = jspan_next_key(j, k))
        if (jspan_eq(j, k, key, n))
            found = k + 1;
    return found;
}

size_t jspan_compact(const jspan *j, uint32_t t, char *out)
{
    const jspan_tok *k = &j->tok[t];
    const char *p = j->text + k->start, *end = p + k->len;
    if (k->type != JSPAN_OBJECT && k->type != JSPAN_ARRAY) {
        memcpy(out, p, k->len);
        out[k->len] = '\0';
        return k->len;
    }
    size_t n = 0;
    while (p < end) {
        char c = *p++;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            continue;
        out[n++] = c;
        if (c != '"')
            continue;
        /* a string: to its closing quote, as it is */
        const char *q = p;
        while (*q != '"')
            q += *q == '\\' ? 2 : 1;
        q++;
        memcpy(out + n, p, (size_t)(q - p));
        n += (size_t)(q - p);
        p = q;
    }
    out[n] = '\0';
    return n;
}

char *jspan_text(const jspan *j, uint32_t t)
{
    char *out = xmalloc((size_t)j->tok[t].len + 1);
    jspan_compact(j, t, out);
    return out;
}

bool jspan_int(const jspan *j, uint32_t t, int64_t *v)
{
    const jspan_tok *k = &j->tok[t];
    if (k->type != JSPAN_NUMBER)
        return false;
    const char *p = j->text + k->start, *end = p + k->len;
    bool neg = *p == '-';
    p += neg;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, u = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return false; /* a fraction or an exponent */
        unsigned d = (unsigned)(*p - '0');
        if (u > (limit - d) / 10)
            return false;
        u = u * 10 + d;
    }
    *v = neg ? (int64_t)(0 - u) : (int64_t)u;
    return true;
}
