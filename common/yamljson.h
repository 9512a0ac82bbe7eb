/* yamljson.h - read a YAML file (libyaml) into a jansson value, so that every
 * YAML file the server reads (the configuration, the users file, ...) is
 * walked as a plain JSON tree. Plain scalars become integers, reals, booleans
 * or null where they look like one; quoted scalars stay strings. Files are
 * operator input, not network input, yet bounded all the same: nesting is
 * capped at YAML_MAX_DEPTH levels, and aliases may copy at most
 * YAML_MAX_ALIAS_VALUES values and YAML_MAX_ALIAS_BYTES bytes of scalars in all
 * (each alias copies its anchor's whole tree: nested aliases grow
 * exponentially, and a "billion laughs" file of 342 bytes took 68 s and 24 GB
 * before this bound). */
#ifndef EDDY_YAMLJSON_H
#define EDDY_YAMLJSON_H

#include <jansson.h>

#define YAML_MAX_DEPTH 64
#define YAML_MAX_ALIAS_VALUES 10000
#define YAML_MAX_ALIAS_BYTES (1 << 20)

/* Returns a new reference owned by the caller, or NULL with a one-line reason
 * naming the file in err (err_len bytes). An empty file yields an empty object. */
json_t *yaml_load_file(const char *path, char *err, size_t err_len);
/* The same from YAML text (len bytes, borrowed for the call); source names
 * it in err. Returns a new reference owned by the caller, or NULL. */
json_t *yaml_load_text(const char *text, size_t len, const char *source, char *err, size_t err_len);

#endif
