/* pattern.h - listen patterns: the JavaScript regular expressions clients pass
 * to listen(), compiled with PCRE2 in its JavaScript-compatibility mode
 * (PCRE2_ALT_BSUX, PCRE2_MATCH_UNSET_BACKREF, PCRE2_ALLOW_EMPTY_CLASS, UTF) and
 * matched unanchored, as RegExp.test does. Known differences: PCRE2 accepts
 * some syntax JavaScript rejects (possessive quantifiers, atomic groups, \A
 * and \z); lookbehind and named groups behave alike. A pattern over 1024 bytes
 * is refused. */
#ifndef EDDY_PATTERN_H
#define EDDY_PATTERN_H

#include <stdbool.h>
#include <stddef.h>

#define PATTERN_MAX 1024

typedef struct pattern pattern;

/* Compiles text (len bytes); NULL when it is not a valid pattern. Owned by the caller. */
pattern *pattern_compile(const char *text, size_t len);
void pattern_free(pattern *p); /* NULL is fine */
bool pattern_match(const pattern *p, const char *name, size_t len);

#endif
