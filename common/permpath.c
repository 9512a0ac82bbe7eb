/* permpath.c - permission name patterns (see permpath.h): the pattern as a
 * list of tokens (text, `.`, `*`, `$variable`) for the backtracking matcher,
 * or the regex deepstream would build, compiled with PCRE2, when the
 * pattern holds other regex syntax. Not for rules: rules.c. */
#include "permpath.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcre2.h>

#include "jsval.h"
#include "mem.h"
#include "pattern.h"

enum tok_kind { T_TEXT, T_DOT, T_STAR, T_VAR };

typedef struct ptok {
    enum tok_kind kind;
    size_t off, len; /* T_TEXT: bytes of text; T_VAR: off is the variable's index */
} ptok;

struct permpath {
    char *text;
    size_t text_len;
    size_t units;
    ptok *toks;
    size_t ntoks;
    char **vars;
    size_t nvars;
    pcre2_code *re; /* the regex form, when tokens cannot say it */
};

static bool var_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pcre2_compile_context *cctx;
static pcre2_match_context *mctx;

static void contexts(void)
{
    cctx = pcre2_compile_context_create(NULL);
    mctx = pcre2_match_context_create(NULL);
    if (cctx == NULL || mctx == NULL)
        abort();
    pcre2_set_newline(cctx, PCRE2_NEWLINE_ANYCRLF);
    pcre2_set_match_limit(mctx, PATTERN_MATCH_LIMIT);
    pcre2_set_depth_limit(mctx, PATTERN_DEPTH_LIMIT);
    pcre2_set_heap_limit(mctx, PATTERN_HEAP_LIMIT_KB);
}

/* deepstream's regex for the pattern: ^ + (* as .*, $name as ([^/]+)) + $. */
static bool compile_regex(permpath *p, char *err, size_t err_len)
{
    size_t cap = p->text_len * 8 + 3, n = 0;
    char *src = xmalloc(cap);
    src[n++] = '^';
    for (size_t i = 0; i < p->text_len;) {
        char c = p->text[i];
        if (c == '*') {
            memcpy(src + n, ".*", 2);
            n += 2;
            i++;
        } else if (c == '$' && i + 1 < p->text_len && var_char(p->text[i + 1])) {
            i++;
            while (i < p->text_len && var_char(p->text[i]))
                i++;
            memcpy(src + n, "([^/]+)", 7);
            n += 7;
        } else
            src[n++] = p->text[i++];
    }
    src[n++] = '$';
    pthread_once(&once, contexts);
    int code;
    PCRE2_SIZE off;
    p->re = pcre2_compile((PCRE2_SPTR)src, n,
                          PCRE2_UTF | PCRE2_ALT_BSUX | PCRE2_MATCH_UNSET_BACKREF | PCRE2_ALLOW_EMPTY_CLASS |
                              PCRE2_DOLLAR_ENDONLY,
                          &code, &off, cctx);
    xfree(src);
    if (p->re == NULL) {
        PCRE2_UCHAR msg[120];
        if (pcre2_get_error_message(code, msg, sizeof(msg)) < 0)
            strcpy((char *)msg, "invalid");
        snprintf(err, err_len, "not a valid regular expression: %s", (const char *)msg);
        return false;
    }
    pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE);
    return true;
}

permpath *permpath_compile(const char *path, size_t len, char *err, size_t err_len)
{
    if (len == 0) {
        snprintf(err, err_len, "path can't be empty");
        return NULL;
    }
    if (path[0] == '/') {
        snprintf(err, err_len, "path can't start with /");
        return NULL;
    }
    if (len > PERMPATH_MAX) {
        snprintf(err, err_len, "path longer than %d bytes", PERMPATH_MAX);
        return NULL;
    }
    if (memchr(path, '\0', len) != NULL) {
        snprintf(err, err_len, "path contains a NUL byte");
        return NULL;
    }
    for (size_t i = 0; i + 1 < len; i++)
        if (path[i] == '$' && !var_char(path[i + 1])) {
            size_t sz;
            js_utf8_decode(path + i + 1, len - i - 1, &sz);
            snprintf(err, err_len, "invalid variable name $%.*s", (int)sz, path + i + 1);
            return NULL;
        }
    permpath *p = xcalloc(1, sizeof(*p));
    p->text = xstrndup(path, len);
    p->text_len = len;
    p->units = js_utf16_length(path, len);
    p->toks = xmalloc((len + 1) * sizeof(ptok));
    p->vars = xmalloc((len + 1) * sizeof(char *));
    bool regex = false;
    for (size_t i = 0; i < len;) {
        char c = path[i];
        if (c == '*' || c == '.') {
            p->toks[p->ntoks++] = (ptok){.kind = c == '*' ? T_STAR : T_DOT};
            i++;
        } else if (c == '$' && i + 1 < len) {
            size_t b = ++i;
            while (i < len && var_char(path[i]))
                i++;
            if (p->nvars == RULES_MAX_VARS) {
                snprintf(err, err_len, "more than %d variables", RULES_MAX_VARS);
                permpath_free(p);
                return NULL;
            }
            p->toks[p->ntoks++] = (ptok){.kind = T_VAR, .off = p->nvars};
            p->vars[p->nvars++] = xstrndup(path + b - 1, i - b + 1);
        } else if (c == '$') { /* a last '$': the end anchor, which ^...$ has anyway */
            i++;
        } else {
            if (strchr("\\^|?+()[]{}", c) != NULL)
                regex = true;
            if (p->ntoks > 0 && p->toks[p->ntoks - 1].kind == T_TEXT && p->toks[p->ntoks - 1].off +
                p->toks[p->ntoks - 1].len == i)
                p->toks[p->ntoks - 1].len++;
            else
                p->toks[p->ntoks++] = (ptok){.kind = T_TEXT, .off = i, .len = 1};
            i++;
        }
    }
    if (regex && !compile_regex(p, err, err_len)) {
        permpath_free(p);
        return NULL;
    }
    return p;
}

void permpath_free(permpath *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->nvars; i++)
        xfree(p->vars[i]);
    xfree(p->vars);
    xfree(p->toks);
    pcre2_code_free(p->re);
    xfree(p->text);
    xfree(p);
}

const char *const *permpath_vars(const permpath *p)
{
    return (const char *const *)p->vars;
}

size_t permpath_nvars(const permpath *p)
{
    return p->nvars;
}

const char *permpath_text(const permpath *p)
{
    return p->text;
}

size_t permpath_length(const permpath *p)
{
    return p->units;
}

int permpath_first_byte(const permpath *p)
{
    if (p->re != NULL || p->ntoks == 0 || p->toks[0].kind != T_TEXT)
        return -1;
    return (unsigned char)p->text[p->toks[0].off];
}

/* JavaScript's line terminators, which `.` does not match: \n \r U+2028 U+2029. */
static size_t line_break(const char *s, size_t len, size_t i)
{
    unsigned char c = (unsigned char)s[i];
    if (c == '\n' || c == '\r')
        return 1;
    if (c == 0xe2 && len - i >= 3 && (unsigned char)s[i + 1] == 0x80 &&
        ((unsigned char)s[i + 2] == 0xa8 || (unsigned char)s[i + 2] == 0xa9))
        return 3;
    return 0;
}

static size_t char_len(const char *s, size_t len, size_t i)
{
    if ((unsigned char)s[i] < 0x80)
        return 1;
    size_t sz;
    js_utf8_decode(s + i, len - i, &sz);
    return sz;
}

/* The start of the character before byte k (not before lo). */
static size_t prev_char(const char *s, size_t lo, size_t k)
{
    size_t j = k - 1;
    while (j > lo && ((unsigned char)s[j] & 0xc0) == 0x80 && k - j < 4)
        j--;
    size_t sz;
    js_utf8_decode(s + j, k - j, &sz);
    return j + sz == k ? j : k - 1; /* a stray continuation byte is a character of its own */
}

typedef struct mstate {
    const permpath *p;
    const char *s;
    size_t len;
    rule_str *vars;
    size_t steps;
} mstate;

/* Tokens from ti on against the name from pos; greedy, backtracking as the
 * regex does. 1 match, 0 none, -1 out of steps. Recursion: one level per
 * `*` or `$variable` token. */
static int match_from(mstate *m, size_t ti, size_t pos)
{
    const permpath *p = m->p;
    const char *s = m->s;
    size_t len = m->len;
    for (;;) {
        if (++m->steps > PERMPATH_MATCH_STEPS)
            return -1;
        if (ti == p->ntoks)
            return pos == len;
        const ptok *t = &p->toks[ti];
        if (t->kind == T_TEXT) {
            if (len - pos < t->len || memcmp(s + pos, p->text + t->off, t->len) != 0)
                return 0;
            pos += t->len;
            ti++;
            continue;
        }
        if (t->kind == T_DOT) {
            if (pos >= len || line_break(s, len, pos))
                return 0;
            pos += char_len(s, len, pos);
            ti++;
            continue;
        }
        /* `*` (no line break) or a variable (no '/', at least one character): longest first */
        size_t end = pos;
        if (t->kind == T_STAR) {
            while (end < len && !line_break(s, len, end))
                end += char_len(s, len, end);
        } else {
            const char *slash = memchr(s + pos, '/', len - pos);
            end = slash != NULL ? (size_t)(slash - s) : len;
        }
        size_t min = pos;
        if (t->kind == T_VAR) {
            if (end == pos)
                return 0;
            min = pos + char_len(s, len, pos);
        }
        if (ti + 1 == p->ntoks && end != len) /* the last token must reach the end */
            return 0;
        for (size_t k = end;;) {
            if (t->kind == T_VAR)
                m->vars[t->off] = (rule_str){s + pos, k - pos};
            int r = match_from(m, ti + 1, k);
            if (r != 0)
                return r;
            if (k <= min)
                return 0;
            k = prev_char(s, min, k);
            if (++m->steps > PERMPATH_MATCH_STEPS)
                return -1;
        }
    }
}

static int match_regex(const permpath *p, const char *name, size_t len, rule_str *vars)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(p->re, NULL);
    if (md == NULL)
        abort();
    int rc = pcre2_match(p->re, (PCRE2_SPTR)(len ? name : ""), len, 0, 0, md, mctx);
    int out;
    if (rc >= 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        uint32_t pairs = pcre2_get_ovector_count(md);
        for (size_t i = 0; i < p->nvars; i++) { /* deepstream: the variables take the groups in order */
            size_t g = i + 1;
            vars[i] = g < pairs && (int)g < rc && ov[2 * g] != PCRE2_UNSET
                          ? (rule_str){name + ov[2 * g], ov[2 * g + 1] - ov[2 * g]} : (rule_str){NULL, 0};
        }
        out = 1;
    } else if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT ||
               rc == PCRE2_ERROR_JIT_STACKLIMIT)
        out = -1;
    else
        out = 0; /* no match, or a name that is not UTF-8 */
    pcre2_match_data_free(md);
    return out;
}

int permpath_match(const permpath *p, const char *name, size_t len, rule_str *vars)
{
    if (p->re != NULL)
        return match_regex(p, name, len, vars);
    mstate m = {.p = p, .s = name != NULL ? name : "", .len = len, .vars = vars};
    return match_from(&m, 0, 0);
}
