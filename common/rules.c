/* rules.c - the rule language's front half: a lexer and a recursive-descent
 * parser that turn a rule's text into the expression tree of rules_tree.h,
 * once, when permissions load. Everything deepstream's rule-parser refuses
 * (new, user functions, unsupported calls, data/oldData for actions without
 * them) and everything that is not an expression of the supported subset is
 * refused here with a message and its column; the interpreter never sees
 * it. Bounded: the text, the node count and the tree depth (which bounds
 * the parser's and the interpreter's recursion). Not for evaluation:
 * rules_eval.c. */
#include "rules.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsval.h"
#include "mem.h"
#include "rules_tree.h"

const char *const rules_method_names[M_COUNT] = {
    [M_STARTS_WITH] = "startsWith", [M_ENDS_WITH] = "endsWith", [M_INCLUDES] = "includes",
    [M_INDEX_OF] = "indexOf", [M_MATCH] = "match", [M_TO_UPPER] = "toUpperCase",
    [M_TO_LOWER] = "toLowerCase", [M_TRIM] = "trim",
};

/* Tokens. */
enum tok { TK_EOF, TK_NUM, TK_STR, TK_REGEX, TK_IDENT, TK_OP };
enum op {
    OP_DOT, OP_OPTDOT, OP_LBRACK, OP_RBRACK, OP_LPAREN, OP_RPAREN, OP_COMMA, OP_QUESTION, OP_COLON,
    OP_NOT, OP_PLUS, OP_MINUS, OP_STAR, OP_SLASH, OP_PERCENT, OP_LT, OP_LE, OP_GT, OP_GE,
    OP_EQ, OP_NE, OP_SEQ, OP_SNE, OP_AND, OP_OR, OP_NULLISH
};

typedef struct parser {
    rule *r;
    const rule_scope *scope;
    const char *s; /* r->text */
    size_t len;
    size_t pos; /* where the lexer reads next */
    /* the current token */
    enum tok tok;
    enum op op;
    size_t start, end;   /* its bytes */
    double num;          /* TK_NUM */
    const char *str;     /* TK_STR: decoded (in r->strs); TK_IDENT: in the text; TK_REGEX: the source */
    size_t str_len;
    const char *flags;   /* TK_REGEX */
    size_t flags_len;
    bool prev_operand;   /* the previous token ends an operand: '/' divides */
    /* pools */
    size_t nodes_used, nodes_cap;
    size_t lists_used, lists_cap;
    size_t strs_used, strs_cap;
    size_t ops_used, ops_cap;
    int nesting; /* expression levels open: parentheses, brackets, calls, unary operators, ?: */
    /* the first error */
    bool failed;
    char *err;
    size_t err_len;
    size_t err_pos;
} parser;

static const char *const reserved[] = {
    "break", "case", "catch", "const", "continue", "debugger", "default", "delete", "do", "else", "enum",
    "export", "extends", "finally", "for", "if", "import", "in", "instanceof", "let", "return", "static",
    "super", "switch", "this", "throw", "try", "var", "void", "while", "with", "yield", "await", "eval",
    "arguments", NULL,
};

static void fail_at(parser *p, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail_at(parser *p, size_t pos, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = true;
    p->err_pos = pos;
    if (p->err_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err, p->err_len, fmt, ap);
        va_end(ap);
    }
}

size_t rules_column(const char *text, size_t len, size_t pos)
{
    size_t col = 1;
    for (size_t i = 0; i < pos && i < len;) {
        size_t sz;
        js_utf8_decode(text + i, len - i, &sz);
        i += sz;
        col++;
    }
    return col;
}

static bool ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$';
}

static bool ident_part(char c)
{
    return ident_start(c) || (c >= '0' && c <= '9');
}

/* True when byte i of s starts a character that may not follow an
 * identifier or a number directly: an identifier part, a backslash, or a
 * non-ASCII character other than JavaScript white space. */
static bool glued(const char *s, size_t len, size_t i)
{
    if (i >= len)
        return false;
    unsigned char c = (unsigned char)s[i];
    if (c < 0x80)
        return ident_part((char)c) || c == '\\';
    size_t sz;
    return !js_is_space(js_utf8_decode(s + i, len - i, &sz));
}

static bool word_is(const char *w, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(w, lit, len) == 0;
}

/* Skips white space and comments; false (and the error) on an unterminated comment. */
static bool skip_space(parser *p)
{
    const char *s = p->s;
    while (p->pos < p->len) {
        char c = s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
            p->pos++;
            continue;
        }
        if (c == '/' && p->pos + 1 < p->len && s[p->pos + 1] == '/') {
            while (p->pos < p->len && s[p->pos] != '\n' && s[p->pos] != '\r')
                p->pos++;
            continue;
        }
        if (c == '/' && p->pos + 1 < p->len && s[p->pos + 1] == '*') {
            const char *end = memmem(s + p->pos + 2, p->len - p->pos - 2, "*/", 2);
            if (end == NULL) {
                fail_at(p, p->pos, "unterminated comment");
                return false;
            }
            p->pos = (size_t)(end - s) + 2;
            continue;
        }
        if ((unsigned char)c >= 0x80) {
            size_t sz;
            uint32_t cp = js_utf8_decode(s + p->pos, p->len - p->pos, &sz);
            if (js_is_space(cp)) {
                p->pos += sz;
                continue;
            }
        }
        break;
    }
    return true;
}

static char *strs_alloc(parser *p, size_t n)
{
    if (p->strs_used + n > p->strs_cap) { /* cannot happen: decoded text never outgrows the text */
        fail_at(p, p->start, "rule too large");
        return NULL;
    }
    char *out = p->r->strs + p->strs_used;
    p->strs_used += n;
    return out;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* n hex digits at s[*i]; -1 when they are not. */
static long hex_digits(const char *s, size_t len, size_t *i, int n)
{
    long v = 0;
    for (int k = 0; k < n; k++) {
        if (*i >= len || hexval(s[*i]) < 0)
            return -1;
        v = v * 16 + hexval(s[(*i)++]);
    }
    return v;
}

/* A string literal from p->pos (at the quote), decoded into the pool. */
static void lex_string(parser *p)
{
    const char *s = p->s;
    char quote = s[p->pos++];
    /* the decoded text is never longer than the literal */
    size_t start = p->pos;
    size_t cap = 0;
    while (start + cap < p->len && s[start + cap] != quote)
        cap += s[start + cap] == '\\' && start + cap + 1 < p->len ? 2 : 1;
    char *out = strs_alloc(p, cap + 1);
    if (out == NULL)
        return;
    size_t n = 0;
    uint32_t pending_high = 0; /* a \uD800-\uDBFF waiting for its low half */
    for (;;) {
        if (p->pos >= p->len) {
            fail_at(p, p->start, "unterminated string");
            return;
        }
        char c = s[p->pos];
        if (c == quote) {
            p->pos++;
            break;
        }
        if (c == '\n' || c == '\r') {
            fail_at(p, p->start, "unterminated string");
            return;
        }
        if (c != '\\') {
            out[n++] = c;
            p->pos++;
            pending_high = 0;
            continue;
        }
        size_t esc = p->pos++;
        if (p->pos >= p->len) {
            fail_at(p, p->start, "unterminated string");
            return;
        }
        c = s[p->pos++];
        uint32_t cp;
        switch (c) {
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'v': cp = '\v'; break;
        case '\r':
            if (p->pos < p->len && s[p->pos] == '\n')
                p->pos++;
            /* fall through */
        case '\n':
            continue; /* a line continuation */
        case 'x': {
            long v = hex_digits(s, p->len, &p->pos, 2);
            if (v < 0) {
                fail_at(p, esc, "invalid hexadecimal escape sequence");
                return;
            }
            cp = (uint32_t)v;
            break;
        }
        case 'u': {
            long v;
            if (p->pos < p->len && s[p->pos] == '{') {
                p->pos++;
                v = 0;
                size_t digits = 0;
                while (p->pos < p->len && hexval(s[p->pos]) >= 0 && v <= 0x10ffff) {
                    v = v * 16 + hexval(s[p->pos++]);
                    digits++;
                }
                if (digits == 0 || v > 0x10ffff || p->pos >= p->len || s[p->pos] != '}') {
                    fail_at(p, esc, "invalid Unicode escape sequence");
                    return;
                }
                p->pos++;
            } else if ((v = hex_digits(s, p->len, &p->pos, 4)) < 0) {
                fail_at(p, esc, "invalid Unicode escape sequence");
                return;
            }
            cp = (uint32_t)v;
            break;
        }
        default:
            if (c >= '0' && c <= '7') { /* \0 and the legacy octal escapes of sloppy mode */
                cp = (uint32_t)(c - '0');
                int max = c <= '3' ? 2 : 1;
                for (int k = 0; k < max && p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '7'; k++)
                    cp = cp * 8 + (uint32_t)(s[p->pos++] - '0');
            } else if ((unsigned char)c >= 0x80) { /* an escaped non-ASCII character: itself */
                size_t sz;
                cp = js_utf8_decode(s + p->pos - 1, p->len - p->pos + 1, &sz);
                p->pos += sz - 1;
                if (sz == 1) {
                    out[n++] = c;
                    pending_high = 0;
                    continue;
                }
            } else
                cp = (unsigned char)c;
        }
        if (cp >= 0xdc00 && cp <= 0xdfff && pending_high != 0) { /* \uD83D\uDE00: one character */
            n -= 3;
            cp = 0x10000 + ((pending_high - 0xd800) << 10) + (cp - 0xdc00);
            pending_high = 0;
        } else
            pending_high = cp >= 0xd800 && cp <= 0xdbff ? cp : 0;
        n += js_utf8_encode(cp, out + n);
    }
    out[n] = '\0';
    p->tok = TK_STR;
    p->str = out;
    p->str_len = n;
}

static void lex_number(parser *p)
{
    const char *s = p->s;
    size_t b = p->pos, i = b;
    double v = 0;
    if (s[i] == '0' && i + 1 < p->len && strchr("xXoObB", s[i + 1]) != NULL && s[i + 1] != '\0') {
        char x = s[i + 1];
        int radix = x == 'x' || x == 'X' ? 16 : x == 'o' || x == 'O' ? 8 : 2;
        i += 2;
        size_t digits = 0;
        while (i < p->len && hexval(s[i]) >= 0 && hexval(s[i]) < radix) {
            v = v * radix + hexval(s[i++]);
            digits++;
        }
        if (digits == 0) {
            fail_at(p, b, "invalid number");
            return;
        }
    } else {
        bool legacy_octal = s[i] == '0' && i + 1 < p->len && s[i + 1] >= '0' && s[i + 1] <= '9';
        if (legacy_octal) { /* sloppy mode: 017 is 15, 019 is 19 */
            size_t j = i + 1;
            while (j < p->len && s[j] >= '0' && s[j] <= '7')
                j++;
            if (j >= p->len || !(s[j] >= '8' && s[j] <= '9')) {
                for (size_t k = i + 1; k < j; k++)
                    v = v * 8 + (s[k] - '0');
                i = j;
                goto done;
            }
        }
        while (i < p->len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i < p->len && s[i] == '.') {
            i++;
            while (i < p->len && s[i] >= '0' && s[i] <= '9')
                i++;
        }
        if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
            size_t j = i + 1;
            if (j < p->len && (s[j] == '+' || s[j] == '-'))
                j++;
            size_t d = j;
            while (j < p->len && s[j] >= '0' && s[j] <= '9')
                j++;
            if (j == d) {
                fail_at(p, b, "invalid number");
                return;
            }
            i = j;
        }
        char small[64];
        size_t n = i - b;
        char *copy = n < sizeof(small) ? small : xmalloc(n + 1);
        memcpy(copy, s + b, n);
        copy[n] = '\0';
        v = strtod(copy, NULL);
        if (copy != small)
            xfree(copy);
    }
done:
    if (glued(s, p->len, i)) {
        fail_at(p, i, "identifier directly after a number");
        return;
    }
    p->pos = i;
    p->tok = TK_NUM;
    p->num = v;
}

static void lex_regex(parser *p)
{
    const char *s = p->s;
    size_t i = p->pos + 1;
    bool in_class = false;
    for (;; i++) {
        if (i >= p->len || s[i] == '\n' || s[i] == '\r') {
            fail_at(p, p->pos, "unterminated regular expression");
            return;
        }
        char c = s[i];
        if (c == '\\') {
            if (i + 1 >= p->len || s[i + 1] == '\n' || s[i + 1] == '\r') {
                fail_at(p, p->pos, "unterminated regular expression");
                return;
            }
            i++;
        } else if (c == '[')
            in_class = true;
        else if (c == ']')
            in_class = false;
        else if (c == '/' && !in_class)
            break;
    }
    p->str = s + p->pos + 1;
    p->str_len = i - p->pos - 1;
    i++;
    p->flags = s + i;
    while (i < p->len && ident_part(s[i]))
        i++;
    p->flags_len = (size_t)(s + i - p->flags);
    p->pos = i;
    p->tok = TK_REGEX;
}

struct punct {
    const char *text;
    int op;           /* enum op, or -1: refused with why */
    const char *why;
};

/* Longest first. */
static const struct punct puncts[] = {
    {">>>=", -1, "assignments are not allowed"}, {"===", OP_SEQ, NULL}, {"!==", OP_SNE, NULL},
    {"**=", -1, "assignments are not allowed"}, {"<<=", -1, "assignments are not allowed"},
    {">>=", -1, "assignments are not allowed"}, {"&&=", -1, "assignments are not allowed"},
    {"||=", -1, "assignments are not allowed"}, {"\?\?=", -1, "assignments are not allowed"},
    {">>>", -1, "bitwise operators are not supported"}, {"...", -1, "spread syntax is not supported"},
    {"=>", -1, "rule can't contain user functions"}, {"==", OP_EQ, NULL}, {"!=", OP_NE, NULL},
    {"<=", OP_LE, NULL}, {">=", OP_GE, NULL}, {"&&", OP_AND, NULL}, {"||", OP_OR, NULL},
    {"??", OP_NULLISH, NULL}, {"**", -1, "the ** operator is not supported"},
    {"++", -1, "increment and decrement are not allowed"}, {"--", -1, "increment and decrement are not allowed"},
    {"+=", -1, "assignments are not allowed"}, {"-=", -1, "assignments are not allowed"},
    {"*=", -1, "assignments are not allowed"}, {"/=", -1, "assignments are not allowed"},
    {"%=", -1, "assignments are not allowed"}, {"&=", -1, "assignments are not allowed"},
    {"|=", -1, "assignments are not allowed"}, {"^=", -1, "assignments are not allowed"},
    {"<<", -1, "bitwise operators are not supported"}, {">>", -1, "bitwise operators are not supported"},
    {".", OP_DOT, NULL}, {"[", OP_LBRACK, NULL}, {"]", OP_RBRACK, NULL}, {"(", OP_LPAREN, NULL},
    {")", OP_RPAREN, NULL}, {",", OP_COMMA, NULL}, {"?", OP_QUESTION, NULL}, {":", OP_COLON, NULL},
    {"!", OP_NOT, NULL}, {"+", OP_PLUS, NULL}, {"-", OP_MINUS, NULL}, {"*", OP_STAR, NULL},
    {"/", OP_SLASH, NULL}, {"%", OP_PERCENT, NULL}, {"<", OP_LT, NULL}, {">", OP_GT, NULL},
    {"=", -1, "assignments are not allowed"}, {";", -1, "semicolons are not allowed"},
    {"{", -1, "blocks and object literals are not supported"},
    {"}", -1, "blocks and object literals are not supported"},
    {"&", -1, "bitwise operators are not supported"}, {"|", -1, "bitwise operators are not supported"},
    {"^", -1, "bitwise operators are not supported"}, {"~", -1, "bitwise operators are not supported"},
    {"`", -1, "template literals are not supported"},
};

static void next(parser *p)
{
    if (p->failed) {
        p->tok = TK_EOF;
        return;
    }
    if (!skip_space(p)) {
        p->tok = TK_EOF;
        return;
    }
    p->start = p->pos;
    const char *s = p->s;
    if (p->pos >= p->len) {
        p->tok = TK_EOF;
        p->end = p->pos;
        return;
    }
    char c = s[p->pos];
    bool operand = true; /* what this token leaves for a following '/' */
    if (c == '"' || c == '\'')
        lex_string(p);
    else if ((c >= '0' && c <= '9') || (c == '.' && p->pos + 1 < p->len && s[p->pos + 1] >= '0' && s[p->pos + 1] <= '9'))
        lex_number(p);
    else if (ident_start(c)) {
        size_t b = p->pos;
        while (p->pos < p->len && ident_part(s[p->pos]))
            p->pos++;
        if (glued(s, p->len, p->pos)) {
            fail_at(p, p->pos, "identifiers must be ASCII letters, digits, _ and $");
            p->tok = TK_EOF;
            return;
        }
        p->tok = TK_IDENT;
        p->str = s + b;
        p->str_len = p->pos - b;
        /* after typeof (and the refused operator keywords) a '/' starts a regex */
        operand = !(word_is(p->str, p->str_len, "typeof") || word_is(p->str, p->str_len, "in") ||
                    word_is(p->str, p->str_len, "instanceof") || word_is(p->str, p->str_len, "void"));
    } else if (c == '/' && !p->prev_operand)
        lex_regex(p);
    else if (c == '?' && p->pos + 1 < p->len && s[p->pos + 1] == '.' &&
             !(p->pos + 2 < p->len && s[p->pos + 2] >= '0' && s[p->pos + 2] <= '9')) {
        p->pos += 2; /* ?. but not ?.5 (a conditional and a number) */
        p->tok = TK_OP;
        p->op = OP_OPTDOT;
        operand = false;
    } else {
        const struct punct *hit = NULL;
        for (size_t i = 0; i < sizeof(puncts) / sizeof(puncts[0]); i++) {
            size_t n = strlen(puncts[i].text);
            if (p->len - p->pos >= n && memcmp(s + p->pos, puncts[i].text, n) == 0) {
                hit = &puncts[i];
                break;
            }
        }
        if (hit == NULL) {
            if (c == '\\')
                fail_at(p, p->pos, "unexpected character '\\'");
            else if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
                fail_at(p, p->pos, "unexpected character (byte 0x%02x)", (unsigned char)c);
            else
                fail_at(p, p->pos, "unexpected character '%c'", c);
            p->tok = TK_EOF;
            return;
        }
        if (hit->op < 0) {
            fail_at(p, p->pos, "%s", hit->why);
            p->tok = TK_EOF;
            return;
        }
        p->pos += strlen(hit->text);
        p->tok = TK_OP;
        p->op = (enum op)hit->op;
        operand = p->op == OP_RPAREN || p->op == OP_RBRACK;
    }
    if (p->failed)
        p->tok = TK_EOF;
    p->end = p->pos;
    p->prev_operand = operand;
}

static bool is_op(const parser *p, enum op op)
{
    return p->tok == TK_OP && p->op == op;
}

/* The next character after white space and comments is c (a peek that lexes nothing). */
static bool next_char_is(parser *p, char c)
{
    size_t save = p->pos;
    bool failed = p->failed;
    bool ok = skip_space(p) && p->pos < p->len && p->s[p->pos] == c;
    p->pos = save;
    p->failed = failed;
    return ok;
}

static void unexpected(parser *p)
{
    if (p->failed)
        return;
    switch (p->tok) {
    case TK_EOF: fail_at(p, p->start, "unexpected end of rule"); return;
    case TK_NUM: fail_at(p, p->start, "unexpected number"); return;
    case TK_STR: fail_at(p, p->start, "unexpected string"); return;
    case TK_REGEX: fail_at(p, p->start, "unexpected regular expression"); return;
    case TK_IDENT:
        if (word_is(p->str, p->str_len, "in") || word_is(p->str, p->str_len, "instanceof"))
            fail_at(p, p->start, "the %.*s operator is not supported", (int)p->str_len, p->str);
        else
            fail_at(p, p->start, "unexpected identifier %.*s", (int)p->str_len, p->str);
        return;
    case TK_OP:
        if (p->op == OP_COMMA)
            fail_at(p, p->start, "the comma operator is not supported");
        else
            fail_at(p, p->start, "unexpected token '%.*s'", (int)(p->end - p->start), p->s + p->start);
        return;
    }
}

static bool expect(parser *p, enum op op)
{
    if (!is_op(p, op)) {
        unexpected(p);
        return false;
    }
    next(p);
    return true;
}

static node *mk(parser *p, enum node_kind kind, size_t pos, node *a, node *b, node *c)
{
    if (p->failed)
        return NULL;
    if (p->nodes_used >= p->nodes_cap) {
        fail_at(p, pos, "rule too large (more than %d expression nodes)", RULES_MAX_NODES);
        return NULL;
    }
    node *n = &p->r->nodes[p->nodes_used++];
    memset(n, 0, sizeof(*n));
    n->kind = (uint8_t)kind;
    n->pos = (uint32_t)pos;
    n->a = a;
    n->b = b;
    n->c = c;
    unsigned d = 0;
    if (a != NULL && a->depth > d)
        d = a->depth;
    if (b != NULL && b->depth > d)
        d = b->depth;
    if (c != NULL && c->depth > d)
        d = c->depth;
    n->depth = (uint16_t)(d + 1);
    if (n->depth > RULES_MAX_DEPTH) {
        fail_at(p, pos, "expression nested deeper than %d levels", RULES_MAX_DEPTH);
        return NULL;
    }
    return n;
}

/* Moves a list under construction (items, n) into the rule's pool. */
static bool set_list(parser *p, node *n, node **items, size_t count)
{
    if (n == NULL)
        return false;
    if (p->lists_used + count > p->lists_cap) {
        fail_at(p, n->pos, "rule too large (more than %d expression nodes)", RULES_MAX_NODES);
        return false;
    }
    n->list = p->r->lists + p->lists_used;
    memcpy(n->list, items, count * sizeof(*items));
    p->lists_used += count;
    n->n = (uint32_t)count;
    unsigned d = n->depth - 1u;
    for (size_t i = 0; i < count; i++)
        if (items[i]->depth > d)
            d = items[i]->depth;
    n->depth = (uint16_t)(d + 1);
    if (n->depth > RULES_MAX_DEPTH) {
        fail_at(p, n->pos, "expression nested deeper than %d levels", RULES_MAX_DEPTH);
        return false;
    }
    return true;
}

static bool enter(parser *p)
{
    if (++p->nesting > RULES_MAX_DEPTH) {
        fail_at(p, p->start, "expression nested deeper than %d levels", RULES_MAX_DEPTH);
        return false;
    }
    return true;
}

static node *parse_cond(parser *p);

/* Comma-separated expressions up to close (already past the opening token). */
static bool parse_list(parser *p, node *owner, enum op close, bool holes_refused)
{
    /* items go on a temporary array: at most one per remaining byte of text */
    size_t cap = 8, count = 0;
    node **items = xmalloc(cap * sizeof(*items));
    bool ok = false;
    while (!is_op(p, close)) {
        if (holes_refused && is_op(p, OP_COMMA)) {
            fail_at(p, p->start, "holes in array literals are not supported");
            goto done;
        }
        node *e = parse_cond(p);
        if (e == NULL)
            goto done;
        if (count == cap)
            items = xrealloc(items, (cap *= 2) * sizeof(*items));
        items[count++] = e;
        if (is_op(p, OP_COMMA))
            next(p);
        else if (!is_op(p, close)) {
            unexpected(p);
            goto done;
        }
    }
    next(p);
    ok = set_list(p, owner, items, count);
done:
    xfree(items);
    return ok && !p->failed;
}

static bool reserved_word(const char *w, size_t len)
{
    for (size_t i = 0; reserved[i] != NULL; i++)
        if (word_is(w, len, reserved[i]))
            return true;
    return false;
}

/* Refuses the keywords deepstream refuses and the ones that cannot start an
 * expression here; true when the word was refused. */
static bool refuse_keyword(parser *p, const char *w, size_t len, size_t pos)
{
    if (word_is(w, len, "new"))
        fail_at(p, pos, "rule can't contain the new keyword");
    else if (word_is(w, len, "function") || word_is(w, len, "class") || word_is(w, len, "async"))
        fail_at(p, pos, "rule can't contain user functions");
    else if (reserved_word(w, len))
        fail_at(p, pos, "%.*s is not allowed in a rule", (int)len, w);
    else
        return false;
    return true;
}

static int method_of(const char *w, size_t len);

/* What deepstream's rule-parser refuses before it compiles a rule, in the
 * order it checks: the new keyword, user functions, then any call of a
 * function that is not _ or a supported string method (wherever it is,
 * `process.exit()` included). true when the word was refused. */
static bool refuse_early(parser *p, const char *w, size_t len, size_t pos)
{
    if (word_is(w, len, "new") || word_is(w, len, "function") || word_is(w, len, "class"))
        return refuse_keyword(p, w, len, pos);
    if (next_char_is(p, '(') && !word_is(w, len, "_") && method_of(w, len) < 0) {
        fail_at(p, pos, "function %.*s is not supported", (int)len, w);
        return true;
    }
    return false;
}

static node *parse_identifier(parser *p)
{
    const char *w = p->str;
    size_t len = p->str_len, pos = p->start;
    const rule_scope *sc = p->scope;
    if (refuse_keyword(p, w, len, pos))
        return NULL;
    bool call = next_char_is(p, '(');
    if (word_is(w, len, "_")) {
        next(p);
        if (!is_op(p, OP_LPAREN)) {
            fail_at(p, pos, "_ must be called: _('record name')");
            return NULL;
        }
        if (!enter(p))
            return NULL;
        next(p);
        node *n = mk(p, N_XREF, pos, NULL, NULL, NULL);
        bool ok = n != NULL && parse_list(p, n, OP_RPAREN, false);
        p->nesting--;
        if (!ok)
            return NULL;
        p->r->reads |= RULE_READS_RECORDS;
        return n;
    }
    if (call) {
        fail_at(p, pos, "function %.*s is not supported", (int)len, w);
        return NULL;
    }
    node *n = NULL;
    if (word_is(w, len, "true") || word_is(w, len, "false")) {
        if ((n = mk(p, N_BOOL, pos, NULL, NULL, NULL)) != NULL)
            n->u.b = w[0] == 't';
    } else if (word_is(w, len, "null"))
        n = mk(p, N_NULL, pos, NULL, NULL, NULL);
    else if (word_is(w, len, "undefined"))
        n = mk(p, N_UNDEF, pos, NULL, NULL, NULL);
    else if (word_is(w, len, "NaN") || word_is(w, len, "Infinity")) {
        if ((n = mk(p, N_NUM, pos, NULL, NULL, NULL)) != NULL)
            n->u.num = w[0] == 'N' ? NAN : INFINITY;
    } else if (word_is(w, len, "user"))
        n = mk(p, N_USER, pos, NULL, NULL, NULL);
    else if (word_is(w, len, "now"))
        n = mk(p, N_NOW, pos, NULL, NULL, NULL);
    else if (word_is(w, len, "name"))
        n = mk(p, N_NAME, pos, NULL, NULL, NULL);
    else if (word_is(w, len, "data") || word_is(w, len, "oldData")) {
        bool old = w[0] == 'o';
        if (sc != NULL && !(old ? sc->old_data : sc->data)) {
            fail_at(p, pos, "rule %s for %s does not support %s", sc->action ? sc->action : "?",
                    sc->section ? sc->section : "?", old ? "oldData" : "data");
            return NULL;
        }
        n = mk(p, old ? N_OLD_DATA : N_DATA, pos, NULL, NULL, NULL);
        p->r->reads |= old ? RULE_READS_OLD_DATA : RULE_READS_DATA;
    } else if (w[0] == '$') {
        size_t found = SIZE_MAX;
        for (size_t i = 0; sc != NULL && i < sc->nvars; i++)
            if (word_is(w, len, sc->vars[i]))
                found = i; /* the last of equal names: as deepstream's function parameters */
        if (found == SIZE_MAX) {
            fail_at(p, pos, "%.*s is not a variable of the pattern", (int)len, w);
            return NULL;
        }
        if ((n = mk(p, N_VAR, pos, NULL, NULL, NULL)) != NULL)
            n->n = (uint32_t)found;
    } else if (word_is(w, len, "action"))
        n = mk(p, N_ACTION, pos, NULL, NULL, NULL);
    else if (word_is(w, len, "typeof"))
        fail_at(p, pos, "unexpected typeof"); /* cannot happen: parse_unary takes it */
    else
        fail_at(p, pos, "unknown identifier %.*s", (int)len, w);
    next(p);
    return n;
}

static bool add_rx(parser *p, rules_rx *rx)
{
    rule *r = p->r;
    if (r->nrx == r->rx_cap)
        r->rxs = xrealloc(r->rxs, (r->rx_cap = r->rx_cap ? r->rx_cap * 2 : 4) * sizeof(*r->rxs));
    r->rxs[r->nrx++] = rx;
    return true;
}

static node *parse_primary(parser *p)
{
    node *n = NULL;
    size_t pos = p->start;
    switch (p->tok) {
    case TK_NUM:
        if ((n = mk(p, N_NUM, pos, NULL, NULL, NULL)) != NULL)
            n->u.num = p->num;
        next(p);
        return n;
    case TK_STR:
        if ((n = mk(p, N_STR, pos, NULL, NULL, NULL)) != NULL) {
            n->u.str = p->str;
            n->n = (uint32_t)p->str_len;
        }
        next(p);
        return n;
    case TK_REGEX: {
        char why[160];
        size_t off = 0;
        rules_rx *rx = rules_rx_compile(p->str, p->str_len, p->flags, p->flags_len, true, why, sizeof(why), &off);
        if (rx == NULL) {
            fail_at(p, pos, "invalid regular expression: %s", why);
            return NULL;
        }
        add_rx(p, rx);
        if ((n = mk(p, N_REGEX, pos, NULL, NULL, NULL)) != NULL)
            n->u.rx = rx;
        next(p);
        return n;
    }
    case TK_IDENT:
        return parse_identifier(p);
    case TK_OP:
        if (p->op == OP_LPAREN) {
            if (!enter(p))
                return NULL;
            next(p);
            n = parse_cond(p);
            p->nesting--;
            if (n == NULL || !expect(p, OP_RPAREN))
                return NULL;
            n->paren = 1;
            return n;
        }
        if (p->op == OP_LBRACK) {
            if (!enter(p))
                return NULL;
            next(p);
            n = mk(p, N_ARRAY, pos, NULL, NULL, NULL);
            bool ok = n != NULL && parse_list(p, n, OP_RBRACK, true);
            p->nesting--;
            return ok ? n : NULL;
        }
        unexpected(p);
        return NULL;
    case TK_EOF:
        unexpected(p);
        return NULL;
    }
    return NULL;
}

static int method_of(const char *w, size_t len)
{
    for (int m = 0; m < M_COUNT; m++)
        if (word_is(w, len, rules_method_names[m]))
            return m;
    return -1;
}

/* `e.name` or `e.name(args)` (the current token is the name); opt: after ?. */
static node *parse_member(parser *p, node *e, size_t dot, bool opt)
{
    const char *w = p->str;
    size_t len = p->str_len, wpos = p->start;
    next(p);
    if (is_op(p, OP_LPAREN)) {
        int m = method_of(w, len);
        if (m < 0) {
            fail_at(p, wpos, "function %.*s is not supported", (int)len, w);
            return NULL;
        }
        if (!enter(p))
            return NULL;
        next(p);
        node *call = mk(p, N_CALL, wpos, e, NULL, NULL);
        bool ok = call != NULL && parse_list(p, call, OP_RPAREN, false);
        p->nesting--;
        if (!ok)
            return NULL;
        call->method = (uint8_t)m;
        call->optional = opt;
        if (m == M_MATCH && call->n > 0 && call->list[0]->kind == N_STR) {
            /* match('text'): compiled now, as new RegExp('text') would be */
            char why[160];
            size_t off;
            node *arg = call->list[0];
            rules_rx *rx = rules_rx_compile(arg->u.str, arg->n, "", 0, true, why, sizeof(why), &off);
            if (rx == NULL) {
                fail_at(p, arg->pos, "invalid regular expression: %s", why);
                return NULL;
            }
            add_rx(p, rx);
            call->u.rx = rx;
        }
        return call;
    }
    if (e->kind == N_USER && !opt) { /* user.id, user.isAuthenticated, user.data: the node itself becomes it */
        enum node_kind k = word_is(w, len, "id") ? N_USER_ID
                           : word_is(w, len, "isAuthenticated") ? N_USER_AUTH
                           : word_is(w, len, "data") ? N_USER_DATA : N_USER;
        if (k != N_USER) {
            e->kind = (uint8_t)k;
            if (k == N_USER_DATA)
                p->r->reads |= RULE_READS_USER_DATA;
            return e;
        }
    }
    node *m = mk(p, N_MEMBER, dot, e, NULL, NULL);
    if (m != NULL) {
        m->u.str = w;
        m->n = (uint32_t)len;
        m->optional = opt;
    }
    return m;
}

/* `e[index]` (the current token is '['). */
static node *parse_index(parser *p, node *e, size_t pos, bool opt)
{
    if (!enter(p))
        return NULL;
    next(p);
    node *idx = parse_cond(p);
    p->nesting--;
    if (idx == NULL || !expect(p, OP_RBRACK))
        return NULL;
    node *n = mk(p, N_INDEX, pos, e, idx, NULL);
    if (n != NULL)
        n->optional = opt;
    return n;
}

static node *parse_postfix(parser *p)
{
    node *e = parse_primary(p);
    while (e != NULL && !p->failed) {
        size_t pos = p->start;
        if (is_op(p, OP_OPTDOT)) {
            next(p);
            if (is_op(p, OP_LPAREN)) {
                fail_at(p, p->start, "optional calls ?.() are not supported");
                return NULL;
            }
            if (is_op(p, OP_LBRACK))
                e = parse_index(p, e, pos, true);
            else if (p->tok == TK_IDENT)
                e = parse_member(p, e, pos, true);
            else {
                unexpected(p);
                return NULL;
            }
        } else if (is_op(p, OP_DOT)) {
            next(p);
            if (p->tok != TK_IDENT) {
                unexpected(p);
                return NULL;
            }
            e = parse_member(p, e, pos, false);
        } else if (is_op(p, OP_LBRACK))
            e = parse_index(p, e, pos, false);
        else if (is_op(p, OP_LPAREN)) {
            fail_at(p, p->start, "only the string methods and _() can be called");
            return NULL;
        } else
            break;
    }
    return p->failed ? NULL : e;
}

static node *parse_unary(parser *p)
{
    size_t pos = p->start;
    node *n;
    bool unary = is_op(p, OP_NOT) || is_op(p, OP_MINUS) || is_op(p, OP_PLUS) ||
                 (p->tok == TK_IDENT && word_is(p->str, p->str_len, "typeof"));
    if (!unary)
        return parse_postfix(p);
    if (!enter(p))
        return NULL;
    if (p->tok == TK_OP) {
        enum op op = p->op;
        next(p);
        node *a = parse_unary(p);
        if (a == NULL)
            n = NULL;
        else if (op == OP_MINUS && a->kind == N_NUM && !a->paren) { /* -5: a literal */
            a->u.num = -a->u.num;
            a->pos = (uint32_t)pos;
            n = a;
        } else
            n = mk(p, op == OP_NOT ? N_NOT : op == OP_MINUS ? N_NEG : N_POS, pos, a, NULL, NULL);
    } else { /* typeof */
        next(p);
        node *a = parse_unary(p);
        n = a == NULL ? NULL : mk(p, N_TYPEOF, pos, a, NULL, NULL);
    }
    p->nesting--;
    return n;
}

/* The levels of left-associative binary operators, loosest first. */
static const struct level {
    int count;
    enum op ops[4];
    enum node_kind kinds[4];
} levels[] = {
    {1, {OP_AND}, {N_AND}},
    {4, {OP_EQ, OP_NE, OP_SEQ, OP_SNE}, {N_EQ, N_NE, N_SEQ, N_SNE}},
    {4, {OP_LT, OP_LE, OP_GT, OP_GE}, {N_LT, N_LE, N_GT, N_GE}},
    {2, {OP_PLUS, OP_MINUS}, {N_ADD, N_SUB}},
    {3, {OP_STAR, OP_SLASH, OP_PERCENT}, {N_MUL, N_DIV, N_MOD}},
};
#define LEVELS ((int)(sizeof(levels) / sizeof(levels[0])))

/* A run of operators of one level, built into one N_CHAIN (a left fold); a
 * single operand stays itself. */
typedef struct chain {
    node **items;
    chain_op *ops;
    size_t n, cap;
} chain;

static void chain_add(chain *ch, node *item, enum node_kind kind, size_t pos)
{
    if (ch->n == ch->cap) {
        ch->cap = ch->cap ? ch->cap * 2 : 8;
        ch->items = xrealloc(ch->items, ch->cap * sizeof(*ch->items));
        ch->ops = xrealloc(ch->ops, ch->cap * sizeof(*ch->ops));
    }
    if (ch->n > 0)
        ch->ops[ch->n - 1] = (chain_op){.pos = (uint32_t)pos, .kind = (uint8_t)kind};
    ch->items[ch->n++] = item;
}

static node *chain_end(parser *p, chain *ch)
{
    node *out = NULL;
    if (!p->failed && ch->n == 1)
        out = ch->items[0];
    else if (!p->failed && ch->n > 1) {
        if (p->ops_used + ch->n - 1 > p->ops_cap)
            fail_at(p, ch->ops[0].pos, "rule too large (more than %d expression nodes)", RULES_MAX_NODES);
        else if ((out = mk(p, N_CHAIN, ch->ops[0].pos, NULL, NULL, NULL)) != NULL) {
            out->u.ops = p->r->ops + p->ops_used;
            memcpy(out->u.ops, ch->ops, (ch->n - 1) * sizeof(chain_op));
            p->ops_used += ch->n - 1;
            if (!set_list(p, out, ch->items, ch->n))
                out = NULL;
        }
    }
    xfree(ch->items);
    xfree(ch->ops);
    return p->failed ? NULL : out;
}

static node *parse_binary_level(parser *p, int level)
{
    if (level == LEVELS)
        return parse_unary(p);
    chain ch = {0};
    node *left = parse_binary_level(p, level + 1);
    if (left != NULL)
        chain_add(&ch, left, N_AND, 0);
    while (left != NULL && p->tok == TK_OP) {
        const struct level *l = &levels[level];
        int i = 0;
        while (i < l->count && l->ops[i] != p->op)
            i++;
        if (i == l->count)
            break;
        size_t pos = p->start;
        next(p);
        node *right = parse_binary_level(p, level + 1);
        if (right == NULL)
            break;
        chain_add(&ch, right, l->kinds[i], pos);
    }
    return chain_end(p, &ch);
}

static bool unparenthesized_and(const node *n)
{
    return n->kind == N_CHAIN && !n->paren && n->u.ops[0].kind == N_AND;
}

/* || and ??, which JavaScript does not let mix (nor ?? with an unparenthesized &&). */
static node *parse_or(parser *p)
{
    chain ch = {0};
    node *left = parse_binary_level(p, 0);
    if (left != NULL)
        chain_add(&ch, left, N_OR, 0);
    int seen = -1; /* the first of OP_OR, OP_NULLISH */
    while (left != NULL && (is_op(p, OP_OR) || is_op(p, OP_NULLISH))) {
        enum op op = p->op;
        size_t pos = p->start;
        if ((seen >= 0 && (enum op)seen != op) || (op == OP_NULLISH && unparenthesized_and(ch.items[ch.n - 1]))) {
            fail_at(p, pos, "?? cannot be mixed with || or && without parentheses");
            break;
        }
        seen = (int)op;
        next(p);
        node *right = parse_binary_level(p, 0);
        if (right == NULL)
            break;
        if (op == OP_NULLISH && unparenthesized_and(right)) {
            fail_at(p, pos, "?? cannot be mixed with || or && without parentheses");
            break;
        }
        chain_add(&ch, right, op == OP_OR ? N_OR : N_NULLISH, pos);
    }
    return chain_end(p, &ch);
}

static node *parse_cond(parser *p)
{
    node *n = parse_or(p);
    if (n != NULL && is_op(p, OP_QUESTION)) {
        size_t pos = p->start;
        if (!enter(p))
            return NULL;
        next(p);
        node *then = parse_cond(p);
        node *els = then != NULL && expect(p, OP_COLON) ? parse_cond(p) : NULL;
        n = els == NULL ? NULL : mk(p, N_COND, pos, n, then, els);
        p->nesting--;
    }
    return p->failed ? NULL : n;
}

static rule *rule_new(const char *text, size_t len)
{
    rule *r = xcalloc(1, sizeof(*r));
    r->text = xstrndup(text, len);
    r->text_len = len;
    r->constant = -1;
    return r;
}

void rule_free(rule *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nrx; i++)
        rules_rx_free(r->rxs[i]);
    xfree(r->rxs);
    xfree(r->nodes);
    xfree(r->lists);
    xfree(r->strs);
    xfree(r->ops);
    xfree(r->text);
    xfree(r);
}

rule *rule_constant(bool value)
{
    rule *r = rule_new(value ? "true" : "false", value ? 4 : 5);
    r->constant = value;
    r->nodes = xcalloc(1, sizeof(node));
    r->root = r->nodes;
    r->root->kind = N_BOOL;
    r->root->u.b = value;
    r->root->depth = 1;
    return r;
}

rule *rule_compile(const char *text, size_t len, const rule_scope *scope, char *err, size_t err_len,
                   size_t *column)
{
    if (err_len > 0)
        err[0] = '\0';
    if (column != NULL)
        *column = 0;
    if (len == 0) {
        snprintf(err, err_len, "rule can't be empty");
        return NULL;
    }
    if (len > RULES_MAX_TEXT) {
        snprintf(err, err_len, "rule longer than %d bytes", RULES_MAX_TEXT);
        return NULL;
    }
    if (memchr(text, '\0', len) != NULL) {
        snprintf(err, err_len, "rule contains a NUL byte");
        if (column != NULL)
            *column = rules_column(text, len, (size_t)((const char *)memchr(text, '\0', len) - text));
        return NULL;
    }
    if (scope != NULL && scope->nvars > RULES_MAX_VARS) {
        snprintf(err, err_len, "more than %d variables", RULES_MAX_VARS);
        return NULL;
    }
    rule *r = rule_new(text, len);
    /* every node and list entry takes at least one byte of text; decoded strings never outgrow it */
    size_t cap = len + 2 < RULES_MAX_NODES ? len + 2 : RULES_MAX_NODES;
    r->nodes = xmalloc(cap * sizeof(node));
    r->lists = xmalloc(cap * sizeof(node *));
    r->strs = xmalloc(len + 2);
    r->ops = xmalloc(cap * sizeof(chain_op));
    r->nvars = scope != NULL ? scope->nvars : 0;
    parser p = {.r = r, .scope = scope, .s = r->text, .len = len, .nodes_cap = cap, .lists_cap = cap,
                .strs_cap = len + 2, .ops_cap = cap, .err = err, .err_len = err_len};
    /* a first pass of the lexer alone: what deepstream refuses before
     * anything else (new, user functions) and every lexical error come
     * first, whatever the grammar would say earlier in the text */
    for (next(&p); p.tok != TK_EOF; next(&p))
        if (p.tok == TK_IDENT && refuse_early(&p, p.str, p.str_len, p.start))
            break;
    if (!p.failed) {
        p.pos = 0;
        p.strs_used = 0;
        p.prev_operand = false;
        next(&p);
    }
    node *root = p.failed ? NULL : parse_cond(&p);
    if (root != NULL && p.tok != TK_EOF)
        unexpected(&p);
    if (p.failed || root == NULL) {
        if (!p.failed) /* cannot happen: every NULL comes with its reason */
            fail_at(&p, p.start, "invalid rule");
        if (column != NULL)
            *column = rules_column(r->text, len, p.err_pos);
        rule_free(r);
        return NULL;
    }
    r->root = root;
    for (size_t i = 0; i < p.nodes_used; i++) /* a `user` read whole may reach user.data */
        if (r->nodes[i].kind == N_USER)
            r->reads |= RULE_READS_USER_DATA;
    return r;
}

unsigned rule_reads(const rule *r)
{
    return r->reads;
}

bool rule_is_constant(const rule *r, bool *value)
{
    if (r->constant < 0)
        return false;
    if (value != NULL)
        *value = r->constant == 1;
    return true;
}

const char *rule_text(const rule *r)
{
    return r->text;
}
