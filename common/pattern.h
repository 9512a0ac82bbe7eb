/* pattern.h - listen patterns: the JavaScript regular expressions clients pass
 * to listen(), compiled with PCRE2 in its JavaScript-compatibility mode
 * (PCRE2_ALT_BSUX, PCRE2_MATCH_UNSET_BACKREF, PCRE2_ALLOW_EMPTY_CLASS, UTF) and
 * matched unanchored, as RegExp.test does. Known differences: PCRE2 accepts
 * some syntax JavaScript rejects (possessive quantifiers, atomic groups, \A
 * and \z); lookbehind and named groups behave alike. A pattern over
 * PATTERN_MAX bytes is refused.
 *
 * Patterns come from clients, so a match is bounded: JIT-compiled when PCRE2
 * can (the interpreter otherwise), with a match limit of PATTERN_MATCH_LIMIT
 * (about 0.05 ms with JIT, 0.3 ms without, for the worst backtracking; honest
 * patterns need no more than about the name's length), a backtracking depth
 * and heap limit, and a JIT stack of at most PATTERN_JIT_STACK bytes. A match
 * that reaches a limit counts as no match; the first time a pattern does, it
 * is logged (listen-pattern-limit). Not for the listening logic: node/listen.c. */
#ifndef EDDY_PATTERN_H
#define EDDY_PATTERN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PATTERN_MAX 1024
/* Backtracking steps one match may take (pcre2_set_match_limit). Names are at
 * most 4096 bytes; a linear scan of one costs about 4100. */
#define PATTERN_MATCH_LIMIT 20000
/* Nested backtracking points (interpreter only; pcre2_set_depth_limit): one
 * group repeated once per byte of a 4096-byte name still fits. */
#define PATTERN_DEPTH_LIMIT 10000
#define PATTERN_HEAP_LIMIT_KB 8192
/* The JIT stack each thread that matches grows up to (the same repetition). */
#define PATTERN_JIT_STACK (256 * 1024)

typedef struct pattern pattern;

/* Compiles text (len bytes) for matching (JIT when available); NULL when it
 * is not a valid pattern. Owned by the caller. */
pattern *pattern_compile(const char *text, size_t len);
/* True when text (len bytes) compiles: the check of a pattern that is not
 * matched here (no JIT, nothing kept). */
bool pattern_valid(const char *text, size_t len);
void pattern_free(pattern *p); /* NULL is fine */
/* True when p matches name. A match that reaches a limit is false (and the
 * pattern's first such match is logged). Any thread, one match per pattern
 * at a time (the pattern keeps its match data). */
bool pattern_match(pattern *p, const char *name, size_t len);
/* How many matches of p reached a limit so far. */
uint64_t pattern_limit_hits(const pattern *p);
/* True when p runs JIT-compiled. */
bool pattern_jit(const pattern *p);

#endif
