/* changeset.c - the JSON form of a changeset (see changeset.h). */
#include "changeset.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "shardmap.h"

void cs_items_free(cs_item *items, size_t n)
{
    if (items == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        xfree(items[i].name);
        xfree(items[i].path);
        xfree(items[i].data);
    }
    xfree(items);
}

/* The JSON text of v (xmalloc'd). */
static char *dump(const json_t *v)
{
    size_t n = json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    char *text = xmalloc(n + 1);
    n = json_dumpb(v, text, n, JSON_COMPACT | JSON_ENCODE_ANY);
    text[n] = '\0';
    return text;
}

/* A string field of o (NULL when absent); -1 with why when it is not a non-empty string of at most max bytes. */
static int string_field(const json_t *o, const char *key, size_t max, size_t i, const char **out, char *why,
                        size_t why_len)
{
    const json_t *v = json_object_get(o, key);
    *out = NULL;
    if (v == NULL)
        return 0;
    size_t len = json_string_length(v);
    if (!json_is_string(v) || len == 0 || len > max || memchr(json_string_value(v), '\0', len) != NULL) {
        snprintf(why, why_len, "operation %zu: \"%s\" must be a non-empty string of at most %zu bytes", i, key, max);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* Checks one operation; fills it (owning nothing yet) or says why not. */
static int parse_one(const json_t *o, size_t i, size_t name_max, cs_item *it, const char **name, const char **path,
                     const json_t **data, char *why, size_t why_len)
{
    if (!json_is_object(o)) {
        snprintf(why, why_len, "operation %zu is not an object", i);
        return -1;
    }
    const char *op = json_string_value(json_object_get(o, "op"));
    if (op == NULL || (strcmp(op, "set") != 0 && strcmp(op, "erase") != 0 && strcmp(op, "delete") != 0)) {
        snprintf(why, why_len, "operation %zu: \"op\" must be \"set\", \"erase\" or \"delete\"", i);
        return -1;
    }
    it->op = op[0] == 's' ? CS_SET : op[0] == 'e' ? CS_ERASE : CS_DELETE;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)o, key, v) {
        bool known = strcmp(key, "op") == 0 || strcmp(key, "name") == 0 || strcmp(key, "version") == 0 ||
                     (it->op != CS_DELETE && strcmp(key, "path") == 0) || (it->op == CS_SET && strcmp(key, "data") == 0);
        if (!known) {
            snprintf(why, why_len, "operation %zu: unknown property \"%.64s\" for \"%s\"", i, key, op);
            return -1;
        }
    }
    if (string_field(o, "name", name_max, i, name, why, why_len) != 0 ||
        string_field(o, "path", name_max, i, path, why, why_len) != 0)
        return -1;
    if (*name == NULL) {
        snprintf(why, why_len, "operation %zu: \"name\" is required", i);
        return -1;
    }
    if (it->op == CS_ERASE && *path == NULL) {
        snprintf(why, why_len, "operation %zu: erase needs a \"path\"", i);
        return -1;
    }
    *data = json_object_get(o, "data");
    if (it->op == CS_SET && *data == NULL) {
        snprintf(why, why_len, "operation %zu: set needs \"data\"", i);
        return -1;
    }
    if (it->op == CS_SET && *path == NULL && !json_is_object(*data) && !json_is_array(*data)) {
        snprintf(why, why_len, "operation %zu: a set without \"path\" needs an object or array as \"data\"", i);
        return -1;
    }
    const json_t *ver = json_object_get(o, "version");
    it->version = -1;
    if (ver != NULL && !json_is_null(ver)) {
        if (!json_is_integer(ver) || json_integer_value(ver) < -1) {
            snprintf(why, why_len, "operation %zu: \"version\" must be an integer, -1 or more", i);
            return -1;
        }
        it->version = (int64_t)json_integer_value(ver);
    }
    return 0;
}

int cs_parse(const json_t *ops, size_t max, size_t name_max, cs_item **items, size_t *n, char *why, size_t why_len)
{
    *items = NULL;
    *n = 0;
    if (!json_is_array(ops) || json_array_size(ops) == 0) {
        snprintf(why, why_len, "a changeset is a non-empty array of operations");
        return -1;
    }
    size_t count = json_array_size(ops);
    if (count > max) {
        snprintf(why, why_len, "a changeset holds at most %zu operations, not %zu", max, count);
        return -1;
    }
    /* everything is checked before anything is copied */
    for (size_t i = 0; i < count; i++) {
        cs_item it;
        const char *name, *path;
        const json_t *data;
        if (parse_one(json_array_get(ops, i), i, name_max, &it, &name, &path, &data, why, why_len) != 0)
            return -1;
    }
    cs_item *out = xcalloc(count, sizeof(*out));
    for (size_t i = 0; i < count; i++) {
        const char *name, *path;
        const json_t *data;
        parse_one(json_array_get(ops, i), i, name_max, &out[i], &name, &path, &data, why, why_len);
        out[i].name = xstrdup(name);
        out[i].path = path ? xstrdup(path) : NULL;
        out[i].data = out[i].op == CS_SET ? dump(data) : NULL;
    }
    *items = out;
    *n = count;
    return 0;
}

long cs_check_shard(const cs_item *items, size_t n, char *why, size_t why_len)
{
    if (n == 0)
        return -1;
    uint32_t first = shard_of(items[0].name, strlen(items[0].name));
    for (size_t i = 1; i < n; i++) {
        uint32_t s = shard_of(items[i].name, strlen(items[i].name));
        if (s != first) {
            snprintf(why, why_len, "CROSSSHARD: \"%.200s\" is in shard %u, \"%.200s\" is in shard %u", items[0].name,
                     first, items[i].name, s);
            return (long)i;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(items[j].name, items[i].name) == 0) {
                snprintf(why, why_len, "record \"%.200s\" appears twice (one operation per record)", items[i].name);
                return (long)i;
            }
    }
    return -1;
}
