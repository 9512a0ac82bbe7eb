/* jsval.c - JavaScript value semantics on UTF-8 text (see jsval.h). Number
 * formatting follows ECMAScript's Number::toString (shortest digits that
 * read back to the same double, found with printf's %e); string to number
 * validates the StringNumericLiteral grammar before strtod, which would
 * also take "inf", "nan" and hexadecimal fractions. Not for rule values
 * (rules_eval.c) or JSON text. */
#include "jsval.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include "mem.h"

static size_t put_str(char *buf, const char *s)
{
    size_t n = strlen(s);
    memcpy(buf, s, n + 1);
    return n;
}

size_t js_number_format(double d, char buf[JS_NUMBER_BUF])
{
    if (isnan(d))
        return put_str(buf, "NaN");
    if (d == 0)
        return put_str(buf, "0"); /* -0 too */
    char *p = buf;
    if (d < 0) {
        *p++ = '-';
        d = -d;
    }
    if (isinf(d))
        return (size_t)(p - buf) + put_str(p, "Infinity");
    if (d < 9007199254740992.0 && d == floor(d)) /* exact integers: their own digits */
        return (size_t)(p - buf) + (size_t)snprintf(p, JS_NUMBER_BUF - 1, "%.0f", d);
    /* the fewest significant digits that read back as d */
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    char digits[20];
    int k = 0;
    const char *t = tmp;
    for (; *t != 'e'; t++)
        if (*t >= '0' && *t <= '9' && k < 19)
            digits[k++] = *t;
    int e = atoi(t + 1);
    while (k > 1 && digits[k - 1] == '0')
        k--;
    int n = e + 1; /* d = 0.digits * 10^n */
    char *o = p;
    if (k <= n && n <= 21) {
        memcpy(o, digits, (size_t)k);
        o += k;
        for (int i = 0; i < n - k; i++)
            *o++ = '0';
    } else if (0 < n && n <= 21) {
        memcpy(o, digits, (size_t)n);
        o += n;
        *o++ = '.';
        memcpy(o, digits + n, (size_t)(k - n));
        o += k - n;
    } else if (-6 < n && n <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -n; i++)
            *o++ = '0';
        memcpy(o, digits, (size_t)k);
        o += k;
    } else {
        *o++ = digits[0];
        if (k > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, (size_t)(k - 1));
            o += k - 1;
        }
        o += sprintf(o, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
    }
    *o = '\0';
    return (size_t)(o - buf);
}

uint32_t js_utf8_decode(const char *s, size_t len, size_t *size)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char c = u[0];
    *size = 1;
    if (c < 0x80)
        return c;
    int n;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 1;
        cp = c & 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 2;
        cp = c & 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 3;
        cp = c & 0x07;
        min = 0x10000;
    } else
        return c;
    if ((size_t)n >= len)
        return c;
    for (int i = 1; i <= n; i++) {
        if ((u[i] & 0xc0) != 0x80)
            return c;
        cp = cp << 6 | (u[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff)
        return c;
    *size = (size_t)n + 1;
    return cp;
}

size_t js_utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

size_t js_utf16_length(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) { /* ASCII runs are the common case */
            i++;
            n++;
            continue;
        }
        size_t sz;
        uint32_t cp = js_utf8_decode(s + i, len - i, &sz);
        i += sz;
        n += cp >= 0x10000 ? 2 : 1;
    }
    return n;
}

size_t js_utf16_to_byte(const char *s, size_t len, size_t idx)
{
    size_t n = 0, i = 0;
    while (i < len && n < idx) {
        size_t sz;
        uint32_t cp = js_utf8_decode(s + i, len - i, &sz);
        size_t units = cp >= 0x10000 ? 2 : 1;
        if (n + units > idx)
            break; /* idx is the second half of a pair */
        n += units;
        i += sz;
    }
    return i;
}

size_t js_byte_to_utf16(const char *s, size_t len, size_t off)
{
    return js_utf16_length(s, off < len ? off : len);
}

/* The first UTF-16 code unit of cp: the order JavaScript compares in. */
static uint32_t first_unit(uint32_t cp)
{
    return cp >= 0x10000 ? 0xd800 + ((cp - 0x10000) >> 10) : cp;
}

int js_string_compare(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen, i = 0;
    while (i < n && a[i] == b[i])
        i++;
    if (i == n)
        return alen < blen ? -1 : alen > blen;
    /* back to the start of the character that differs (same bytes before it) */
    while (i > 0 && ((unsigned char)a[i] & 0xc0) == 0x80)
        i--;
    size_t sa, sb;
    uint32_t ca = js_utf8_decode(a + i, alen - i, &sa), cb = js_utf8_decode(b + i, blen - i, &sb);
    uint32_t ua = first_unit(ca), ub = first_unit(cb);
    if (ua != ub)
        return ua < ub ? -1 : 1;
    return ca < cb ? -1 : ca > cb;
}

bool js_is_space(uint32_t cp)
{
    switch (cp) {
    case 0x09: case 0x0a: case 0x0b: case 0x0c: case 0x0d: case 0x20: case 0xa0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202f: case 0x205f: case 0x3000: case 0xfeff:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200a;
    }
}

void js_trim(const char *s, size_t *start, size_t *end)
{
    size_t b = *start, e = *end;
    while (b < e) {
        size_t sz;
        if (!js_is_space(js_utf8_decode(s + b, e - b, &sz)))
            break;
        b += sz;
    }
    while (e > b) {
        size_t c = e - 1; /* the last character's first byte */
        while (c > b && ((unsigned char)s[c] & 0xc0) == 0x80 && e - c < 4)
            c--;
        size_t sz;
        uint32_t cp = js_utf8_decode(s + c, e - c, &sz);
        if (c + sz != e) /* not one character: a stray continuation byte */
            break;
        if (!js_is_space(cp))
            break;
        e = c;
    }
    *start = b;
    *end = e;
}

/* StrDecimalLiteral without its sign: digits [. digits] [e[+-]digits] or
 * . digits [e...]; returns the bytes it spans, 0 when it is not one. */
static size_t decimal_span(const char *s, size_t len)
{
    size_t i = 0, int_digits = 0, frac_digits = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++, int_digits++;
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++, frac_digits++;
    }
    if (int_digits + frac_digits == 0)
        return 0;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1, exp_digits = 0;
        if (j < len && (s[j] == '+' || s[j] == '-'))
            j++;
        while (j < len && s[j] >= '0' && s[j] <= '9')
            j++, exp_digits++;
        if (exp_digits == 0)
            return 0;
        i = j;
    }
    return i;
}

static double radix_value(const char *s, size_t len, int radix)
{
    if (len == 0)
        return NAN;
    double v = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'z' ? c - 'a' + 10 : c >= 'A' && c <= 'Z' ? c - 'A' + 10 : 99;
        if (d >= radix)
            return NAN;
        v = v * radix + d;
    }
    return v;
}

double js_string_to_number(const char *s, size_t len)
{
    size_t b = 0, e = len;
    js_trim(s, &b, &e);
    s += b;
    len = e - b;
    if (len == 0)
        return 0;
    if (len > 2 && s[0] == '0') {
        char x = s[1];
        if (x == 'x' || x == 'X')
            return radix_value(s + 2, len - 2, 16);
        if (x == 'o' || x == 'O')
            return radix_value(s + 2, len - 2, 8);
        if (x == 'b' || x == 'B')
            return radix_value(s + 2, len - 2, 2);
    }
    size_t i = 0;
    bool neg = false;
    if (s[0] == '+' || s[0] == '-') {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == len) /* a sign alone */
        return NAN;
    if (len - i == 8 && memcmp(s + i, "Infinity", 8) == 0)
        return neg ? -INFINITY : INFINITY;
    if (decimal_span(s + i, len - i) != len - i)
        return NAN;
    char small[128];
    char *copy = len < sizeof(small) ? small : xmalloc(len + 1);
    memcpy(copy, s, len);
    copy[len] = '\0';
    double v = strtod(copy, NULL);
    if (copy != small)
        xfree(copy);
    return v;
}

static pthread_once_t locale_once = PTHREAD_ONCE_INIT;
static locale_t utf8_locale; /* (locale_t)0 when the system has none */

static void open_locale(void)
{
    utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

/* One character's mapping into out (at least 8 bytes); returns its length. */
static size_t map_char(uint32_t cp, bool upper, char *out)
{
    if (cp < 0x80) {
        char c = (char)cp;
        if (upper && c >= 'a' && c <= 'z')
            c = (char)(c - 32);
        else if (!upper && c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        out[0] = c;
        return 1;
    }
    if (upper && cp == 0xdf) { /* sharp s */
        out[0] = out[1] = 'S';
        return 2;
    }
    if (!upper && cp == 0x130) { /* capital I with dot above */
        out[0] = 'i';
        return 1 + js_utf8_encode(0x307, out + 1);
    }
    uint32_t m = cp;
    if (utf8_locale != (locale_t)0 && (cp < 0xd800 || cp > 0xdfff))
        m = (uint32_t)(upper ? towupper_l((wint_t)cp, utf8_locale) : towlower_l((wint_t)cp, utf8_locale));
    if (m == 0 || m > 0x10ffff)
        m = cp;
    return js_utf8_encode(m, out);
}

size_t js_case_map(const char *s, size_t len, bool upper, char *out, size_t out_cap)
{
    pthread_once(&locale_once, open_locale);
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t sz;
        char buf[8];
        size_t m;
        uint32_t cp = js_utf8_decode(s + i, len - i, &sz);
        if (sz == 1 && cp >= 0x80) { /* a byte that is not UTF-8: kept */
            buf[0] = s[i];
            m = 1;
        } else
            m = map_char(cp, upper, buf);
        if (n + m <= out_cap)
            memcpy(out + n, buf, m);
        n += m;
        i += sz;
    }
    return n;
}
