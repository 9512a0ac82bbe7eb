/* permpath.h - deepstream's permission name patterns: the keys under each
 * section of permissions.yml ("*", "user-profile/$userId", "chat-*"),
 * checked and matched as deepstream's path-parser does. deepstream turns a
 * pattern into the JavaScript regular expression ^...$ with `*` as `.*` and
 * each `$name` ([a-zA-Z0-9]+) as `([^/]+)`, every other character left as
 * it is (so `.` matches any character but a line break, and `+`, `?`, `(`,
 * `[`, `{`, `|`, `^`, `\` keep their regex meaning).
 *
 * A pattern made only of text, `.`, `*` and `$variables` (all real ones) is
 * matched by a small backtracking matcher with the regex's greedy choices
 * (so the variables capture what the regex would), without allocating; any
 * other pattern goes through PCRE2 with the same match limits as listen
 * patterns (pattern.h). A match that takes more than PERMPATH_MATCH_STEPS
 * steps (or reaches a PCRE2 limit) is reported as such: the caller denies.
 * Characters are Unicode code points here, UTF-16 code units in
 * JavaScript: `.` differs for a character outside the Basic Multilingual
 * Plane. Compiled patterns are immutable; any thread may match. Not for
 * which pattern applies: permissions.c. */
#ifndef EDDY_PERMPATH_H
#define EDDY_PERMPATH_H

#include <stdbool.h>
#include <stddef.h>

#include "rules.h"

#define PERMPATH_MAX 1024            /* bytes of one pattern */
#define PERMPATH_MATCH_STEPS 100000  /* backtracking steps of one match */

typedef struct permpath permpath;

/* Checks path (len bytes) as deepstream's path-parser validate does (not
 * empty, no leading '/', no '$' followed by anything but a letter or digit)
 * and compiles it. Returns it (owned by the caller: permpath_free) or NULL
 * with the reason in err. More than RULES_MAX_VARS variables is refused. */
permpath *permpath_compile(const char *path, size_t len, char *err, size_t err_len);
void permpath_free(permpath *p); /* NULL is fine */

/* The pattern's variables, "$userId", in order (owned by p), and how many. */
const char *const *permpath_vars(const permpath *p);
size_t permpath_nvars(const permpath *p);
/* The pattern as written (owned by p; NUL-terminated) and its length in
 * UTF-16 code units: deepstream's specificity (the longer pattern wins). */
const char *permpath_text(const permpath *p);
size_t permpath_length(const permpath *p);

/* The byte every matching name starts with, or -1 when there is none (the
 * pattern starts with `*`, `.`, a variable or regex syntax): a filter a
 * caller can apply before permpath_match. */
int permpath_first_byte(const permpath *p);

/* Matches name (len bytes) whole. On a match the variables' values go to
 * vars (permpath_nvars entries, slices of name; p NULL where a variable
 * took no part). Returns 1 on a match, 0 when none, -1 when the match was
 * cut at its limit. */
int permpath_match(const permpath *p, const char *name, size_t len, rule_str *vars);

#endif
