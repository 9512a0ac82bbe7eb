/* changeset.c - the JSON form of a changeset (see changeset.h), read through
 * the span index of jsonspan.h: names decoded, data kept as the client's text. */
#include "changeset.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonpath.h"
#include "jsonspan.h"
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

/* A string field of operation o (JSPAN_NONE when absent), decoded into a
 * new string in *out (NULL when absent); -1 with why when it is not a
 * non-empty string of at most max bytes without a NUL (buf: max + 2 bytes). */
static int string_field(const jspan *doc, uint32_t o, const char *key, size_t max, size_t i, char *buf, char **out,
                        char *why, size_t why_len)
{
    uint32_t v = jspan_get(doc, o, key);
    *out = NULL;
    if (v == JSPAN_NONE)
        return 0;
    size_t len = jspan_at(doc, v)->type == JSPAN_STRING ? jspan_string(doc, v, buf, max + 2) : 0;
    if (len == 0 || len > max || memchr(buf, '\0', len) != NULL) {
        snprintf(why, why_len, "operation %zu: \"%s\" must be a non-empty string of at most %zu bytes", i, key, max);
        return -1;
    }
    *out = xstrndup(buf, len);
    return 0;
}

/* Reads operation o (number i) into *it, which owns what it gets (also on failure). */
static int parse_one(const jspan *doc, uint32_t o, size_t i, size_t name_max, char *buf, cs_item *it, char *why,
                     size_t why_len)
{
    if (jspan_at(doc, o)->type != JSPAN_OBJECT) {
        snprintf(why, why_len, "operation %zu is not an object", i);
        return -1;
    }
    uint32_t op = jspan_get(doc, o, "op");
    const char *name = op == JSPAN_NONE                 ? NULL
                       : jspan_eq(doc, op, "set", 3)    ? "set"
                       : jspan_eq(doc, op, "erase", 5)  ? "erase"
                       : jspan_eq(doc, op, "delete", 6) ? "delete"
                                                        : NULL;
    if (name == NULL) {
        snprintf(why, why_len, "operation %zu: \"op\" must be \"set\", \"erase\" or \"delete\"", i);
        return -1;
    }
    it->op = name[0] == 's' ? CS_SET : name[0] == 'e' ? CS_ERASE : CS_DELETE;
    uint32_t k = jspan_first(doc, o);
    for (uint32_t m = 0; m < jspan_at(doc, o)->count; m++, k = jspan_next_key(doc, k)) {
        bool known = jspan_eq(doc, k, "op", 2) || jspan_eq(doc, k, "name", 4) || jspan_eq(doc, k, "version", 7) ||
                     (it->op != CS_DELETE && jspan_eq(doc, k, "path", 4)) || (it->op == CS_SET && jspan_eq(doc, k, "data", 4));
        if (!known) {
            char key[72];
            jspan_string(doc, k, key, sizeof(key));
            snprintf(why, why_len, "operation %zu: unknown property \"%.64s\" for \"%s\"", i, key, name);
            return -1;
        }
    }
    if (string_field(doc, o, "name", name_max, i, buf, &it->name, why, why_len) != 0 ||
        string_field(doc, o, "path", name_max, i, buf, &it->path, why, why_len) != 0)
        return -1;
    if (it->name == NULL) {
        snprintf(why, why_len, "operation %zu: \"name\" is required", i);
        return -1;
    }
    if (it->op == CS_ERASE && it->path == NULL) {
        snprintf(why, why_len, "operation %zu: erase needs a \"path\"", i);
        return -1;
    }
    uint32_t data = jspan_get(doc, o, "data");
    if (it->op == CS_SET && data == JSPAN_NONE) {
        snprintf(why, why_len, "operation %zu: set needs \"data\"", i);
        return -1;
    }
    if (it->op == CS_SET && it->path == NULL && jspan_at(doc, data)->type != JSPAN_OBJECT &&
        jspan_at(doc, data)->type != JSPAN_ARRAY) {
        snprintf(why, why_len, "operation %zu: a set without \"path\" needs an object or array as \"data\"", i);
        return -1;
    }
    uint32_t ver = jspan_get(doc, o, "version");
    it->version = -1;
    if (ver != JSPAN_NONE && jspan_at(doc, ver)->type != JSPAN_NULL) {
        int64_t v;
        if (!jspan_int(doc, ver, &v) || v < -1) {
            snprintf(why, why_len, "operation %zu: \"version\" must be an integer, -1 or more", i);
            return -1;
        }
        it->version = v;
    }
    it->data = it->op == CS_SET ? jspan_text(doc, data) : NULL;
    return 0;
}

int cs_parse(const char *text, size_t len, size_t max, size_t name_max, cs_item **items, size_t *n, char *why,
             size_t why_len)
{
    *items = NULL;
    *n = 0;
    jspan doc;
    /* three levels: the array, its operations, their members; a token takes a byte of text at least */
    jspan_init(&doc, len < UINT32_MAX - 1 ? (uint32_t)len + 1 : UINT32_MAX - 1);
    cs_item *out = NULL;
    size_t count = 0;
    char *buf = NULL;
    if (jspan_parse(&doc, text, len, JSON_MAX_DEPTH, 2) != JSPAN_OK) {
        char reason[128];
        jspan_describe(&doc, reason, sizeof(reason));
        snprintf(why, why_len, "a changeset is not JSON: %s", reason);
        goto fail;
    }
    if (jspan_at(&doc, 0)->type != JSPAN_ARRAY || jspan_at(&doc, 0)->count == 0) {
        snprintf(why, why_len, "a changeset is a non-empty array of operations");
        goto fail;
    }
    count = jspan_at(&doc, 0)->count;
    if (count > max) {
        snprintf(why, why_len, "a changeset holds at most %zu operations, not %zu", max, count);
        goto fail;
    }
    out = xcalloc(count, sizeof(*out));
    buf = xmalloc(name_max + 2);
    uint32_t e = jspan_first(&doc, 0);
    for (size_t i = 0; i < count; i++, e = jspan_next_element(&doc, e))
        if (parse_one(&doc, e, i, name_max, buf, &out[i], why, why_len) != 0)
            goto fail;
    xfree(buf);
    jspan_free(&doc);
    *items = out;
    *n = count;
    return 0;
fail:
    xfree(buf);
    cs_items_free(out, count);
    jspan_free(&doc);
    return -1;
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
