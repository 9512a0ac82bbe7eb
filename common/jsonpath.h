/* jsonpath.h - record data handling: the server's one JSON dialect (a
 * validating scanner for the hot path: no tree, and no allocation but for a
 * long number near the double limit), and
 * deepstream's path semantics for PATCH and ERASE, applied by splicing text.
 *
 * The dialect is what JavaScript's JSON.stringify can produce: RFC 8259 text
 * in UTF-8, with any \uXXXX escape (\u0000 and lone surrogates included) and
 * numbers of any length (2**64 is 18446744073709552000), as long as their value
 * is a finite double (1e400 would read as Infinity: refused). Nesting is at most
 * JSON_MAX_DEPTH. json_check, the path engine and jspan_parse (jsonspan.h,
 * the index input is read through) share one scanner, so a record
 * json_check accepted can always be patched, and a patch keeps every byte of
 * the document it does not replace (number text, escapes, spacing).
 *
 * Paths (identical to deepstream's json-path): split on '.', parts trimmed,
 * empty parts skipped; "name[3]" adds a numeric index. Setting a path creates
 * missing intermediate objects, or arrays (filled with null up to the index)
 * when the next token is an index. Deleting removes an object key, or leaves
 * null in an array slot. Of duplicate keys the last counts (as in JSON.parse);
 * deleting removes them all. Deliberate differences, all answered with an
 * error and no change: non-numeric, negative or huge (> JSONPATH_MAX_INDEX)
 * indexes, the keys __proto__/constructor/prototype (deepstream 10 refuses them
 * too), a key applied to an array (JavaScript would set an invisible property),
 * a path that is not UTF-8, and a result nested deeper than JSON_MAX_DEPTH. */
#ifndef EDDY_JSONPATH_H
#define EDDY_JSONPATH_H

#include <stddef.h>

#define JSONPATH_MAX_INDEX 100000
#define JSON_MAX_DEPTH 128

enum json_kind { JSON_KIND_INVALID = 0, JSON_KIND_OBJECT, JSON_KIND_ARRAY, JSON_KIND_SCALAR };

/* Validates that text[0..len) is exactly one JSON value of the dialect above
 * (whitespace around it allowed) and returns its kind, or JSON_KIND_INVALID. */
enum json_kind json_check(const char *text, size_t len);

/* Writes s (len bytes) as a JSON string, quoted and escaped as
 * JSON.stringify does, through put(ctx, bytes, n). */
void json_write_string(const char *s, size_t len, void (*put)(void *ctx, const char *bytes, size_t n), void *ctx);

/* jsonpath_apply_max's results. */
#define JSONPATH_INVALID (-1)   /* bad path, value or document: nothing changes */
#define JSONPATH_TOO_LARGE (-2) /* the result would exceed max_len */

/* Applies value (JSON text; NULL deletes) at path in doc. The result's size is
 * computed before anything is built, so a patch costs O(doc_len + value_len +
 * max_len) at most. On success returns 0 and a new NUL-terminated document of at most
 * max_len bytes in *out (xmalloc'd, owned by the caller). On failure returns
 * JSONPATH_INVALID or JSONPATH_TOO_LARGE, leaves *out NULL and puts a static
 * reason in *why. */
int jsonpath_apply_max(const char *doc, size_t doc_len, const char *path, const char *value,
                       size_t value_len, size_t max_len, char **out, size_t *out_len,
                       const char **why);

/* jsonpath_apply_max without a size limit: only for documents and patches
 * whose size a server already bounded (a client's copy of a record). */
int jsonpath_apply(const char *doc, size_t doc_len, const char *path, const char *value,
                   size_t value_len, char **out, size_t *out_len, const char **why);

#endif
