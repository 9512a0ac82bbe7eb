/* jsonspan.h - a JSON text read once into a flat index of spans, for input
 * read field by field (the HTTP API's request bodies, changesets): one pass
 * of the dialect's own scanner (jsonpath.c, the one json_check uses, so the
 * language accepted is the same: what JSON.stringify writes, numbers of any
 * length kept as text) records each value as a token: its type and where its
 * text starts and ends. Nothing is allocated per value and nothing is decoded
 * until asked: a string when its bytes are needed, a number when its integer
 * is, and a value passed on as JSON (an event's data) is copied as the
 * client's text with the whitespace between tokens left out.
 *
 * Bounded: values nest at most max_depth; only values at most index_depth
 * deep get a token (a deeper one is validated, and is text inside its
 * parent's span); the token array grows by doubling up to max_tokens, and
 * past it the parse fails with JSPAN_TOO_MANY. Not a tree, not a writer, and
 * not for record documents (jsonpath.h patches those by splicing text). */
#ifndef EDDY_JSONSPAN_H
#define EDDY_JSONSPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum jspan_type { JSPAN_OBJECT = 1, JSPAN_ARRAY, JSPAN_STRING, JSPAN_NUMBER, JSPAN_TRUE, JSPAN_FALSE, JSPAN_NULL };

#define JSPAN_ESCAPED 1u /* a string holding a backslash escape */
#define JSPAN_OPAQUE 2u  /* a container deeper than index_depth: its members have no tokens */

/* One value. An object's members follow it as key (a string token) then
 * value; an array's elements follow it; next skips the value and all of it. */
typedef struct jspan_tok {
    uint32_t start, len; /* the value's text (a string's quotes included) */
    uint32_t next;       /* the index of the token after this value's own */
    uint32_t count;      /* object: members, array: elements (0 when opaque) */
    uint8_t type;        /* enum jspan_type */
    uint8_t flags;       /* JSPAN_ESCAPED, JSPAN_OPAQUE */
} jspan_tok;

enum jspan_status {
    JSPAN_OK = 0,
    JSPAN_SYNTAX,    /* not JSON of the dialect: at err_pos */
    JSPAN_END,       /* the text ends inside a value */
    JSPAN_TOO_DEEP,  /* nested deeper than max_depth: at err_pos */
    JSPAN_TOO_MANY,  /* more than max_tokens tokens */
    JSPAN_TOO_LONG,  /* a text of 4 GiB or more */
};

#define JSPAN_NONE UINT32_MAX /* no such token */

/* An index: the tokens of the last text parsed (token 0 is its root). The
 * text is borrowed: it must outlive every read of the index. */
typedef struct jspan {
    const char *text; /* borrowed */
    jspan_tok *tok;   /* owned (xmalloc'd): reused from one parse to the next */
    uint32_t n, cap, max_tokens;
    enum jspan_status status;
    size_t err_pos;   /* JSPAN_SYNTAX, JSPAN_TOO_DEEP: the byte where reading stopped */
} jspan;

/* An empty index that will hold at most max_tokens tokens. */
void jspan_init(jspan *j, uint32_t max_tokens);
/* Releases the tokens (j stays usable, empty); NULL is fine. */
void jspan_free(jspan *j);

/* Reads text[0..len) (one value, whitespace around it allowed) into j,
 * replacing what it held; text is borrowed. Values nest at most max_depth
 * (the root is at depth 0); those at most index_depth deep get tokens.
 * Returns JSPAN_OK, or the failure (also in j->status; j then holds no
 * tokens). Defined in jsonpath.c, next to the scanner it runs. */
enum jspan_status jspan_parse(jspan *j, const char *text, size_t len, int max_depth, int index_depth);

/* Writes why the last parse failed, as JSON.parse words it ("Unexpected end
 * of JSON input", "Unexpected token o in JSON at position 1"), into buf. */
void jspan_describe(const jspan *j, char *buf, size_t len);

/* Reading the index: t is a valid token index. */
static inline const jspan_tok *jspan_at(const jspan *j, uint32_t t)
{
    return &j->tok[t];
}
/* The first member's key of object t / first element of array t (JSPAN_NONE when empty or opaque). */
static inline uint32_t jspan_first(const jspan *j, uint32_t t)
{
    return j->tok[t].count > 0 ? t + 1 : JSPAN_NONE;
}
/* The element after element e of an array. */
static inline uint32_t jspan_next_element(const jspan *j, uint32_t e)
{
    return j->tok[e].next;
}
/* The key after key k of an object (its value is k + 1). */
static inline uint32_t jspan_next_key(const jspan *j, uint32_t k)
{
    return j->tok[k + 1].next;
}

/* The value of object obj's member named key (the last one when the name
 * comes more than once, as JSON.parse has it), or JSPAN_NONE. */
uint32_t jspan_get(const jspan *j, uint32_t obj, const char *key);
/* Whether string token t decodes to s[0..n). */
bool jspan_eq(const jspan *j, uint32_t t, const char *s, size_t n);
/* Decodes string token t into buf (cap > 0 bytes: at most cap - 1 of them,
 * NUL-terminated) and returns the decoded length, which may be more than
 * what fit. \u0000 decodes to a NUL byte, a lone surrogate to U+FFFD. */
size_t jspan_string(const jspan *j, uint32_t t, char *buf, size_t cap);
/* The compact JSON text of value t (no whitespace between tokens, every
 * other byte as sent) into out, which holds at least len + 1 bytes of t;
 * NUL-terminated; returns its length. */
size_t jspan_compact(const jspan *j, uint32_t t, char *out);
/* jspan_compact into a new buffer (xmalloc'd, the caller's). */
char *jspan_text(const jspan *j, uint32_t t);
/* Whether t is a number written as an integer (no fraction, no exponent)
 * between INT64_MIN and INT64_MAX; its value in *v. */
bool jspan_int(const jspan *j, uint32_t t, int64_t *v);

#endif
