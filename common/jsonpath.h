/* jsonpath.h - record data handling: a validating JSON scanner for the hot
 * path (no allocation, no tree), and deepstream's path semantics for PATCH and
 * ERASE, applied on a parsed tree only when a path is given.
 *
 * Paths (identical to deepstream's json-path): split on '.', parts trimmed,
 * empty parts skipped; "name[3]" adds a numeric index. Setting a path creates
 * missing intermediate objects, or arrays (filled with null up to the index)
 * when the next token is an index. Deleting removes an object key, or leaves
 * null in an array slot. Deliberate differences, all answered with an error and
 * no change: non-numeric, negative or huge (> JSONPATH_MAX_INDEX) indexes, the
 * keys __proto__/constructor/prototype (deepstream 10 refuses them too), and a
 * key applied to an array (JavaScript would set an invisible property). */
#ifndef EDDY_JSONPATH_H
#define EDDY_JSONPATH_H

#include <stddef.h>

#define JSONPATH_MAX_INDEX 100000
#define JSON_MAX_DEPTH 128

enum json_kind { JSON_KIND_INVALID = 0, JSON_KIND_OBJECT, JSON_KIND_ARRAY, JSON_KIND_SCALAR };

/* Validates that text[0..len) is exactly one JSON value (RFC 8259, nesting at
 * most JSON_MAX_DEPTH) and returns its kind, or JSON_KIND_INVALID. */
enum json_kind json_check(const char *text, size_t len);

/* Applies value (JSON text; NULL deletes) at path in doc. On success returns 0
 * and a new NUL-terminated document in *out (xmalloc'd, owned by the caller).
 * On failure returns -1 and a static reason in *why. */
int jsonpath_apply(const char *doc, size_t doc_len, const char *path, const char *value,
                   size_t value_len, char **out, size_t *out_len, const char **why);

#endif
