/* yamljson.h - read a YAML file (libyaml) into a jansson value, so that the
 * configuration and the users file are both walked as plain JSON trees.
 * Plain scalars become integers, reals, booleans or null where they look like
 * one; quoted scalars stay strings. Files are operator input (config, users), not
 * network input; nesting is still capped at 64 levels. */
#ifndef EDDY_YAMLJSON_H
#define EDDY_YAMLJSON_H

#include <jansson.h>

/* Returns a new reference owned by the caller, or NULL with a one-line reason in
 * err (err_len bytes). An empty file yields an empty object. */
json_t *yaml_load_file(const char *path, char *err, size_t err_len);

#endif
