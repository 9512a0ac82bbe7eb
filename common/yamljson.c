/* yamljson.c - YAML document -> jansson tree (see yamljson.h). libyaml loads
 * an alias as a second reference to its anchor's node; the walk below is
 * what copies it, so that is where an alias's size is counted and bounded.
 * Not for what the tree means: config.c, broker/auth.c. */
#include "yamljson.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "mem.h"

/* One walk of a document. */
typedef struct walk {
    yaml_document_t *doc;
    bool *seen;          /* per node (index - 1): walked once already */
    size_t in_alias;     /* > 0 while copying a node a second time */
    size_t alias_values; /* values copied that way so far */
    size_t alias_bytes;  /* and the bytes of their scalars */
    char *err;
    size_t err_len;
} walk;

static json_t *scalar_to_json(const yaml_node_t *node)
{
    const char *s = (const char *)node->data.scalar.value;
    size_t len = node->data.scalar.length;
    if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return json_stringn(s, len);
    if (len == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0)
        return json_null();
    if (strcmp(s, "true") == 0)
        return json_true();
    if (strcmp(s, "false") == 0)
        return json_false();
    char *end;
    errno = 0;
    long long i = strtoll(s, &end, 10);
    if (*end == '\0' && errno == 0)
        return json_integer(i);
    double d = strtod(s, &end);
    if (*end == '\0' && errno == 0)
        return json_real(d);
    return json_stringn(s, len);
}

static json_t *node_to_json(walk *w, yaml_node_t *node, int depth);

/* Copies node; a node walked before is an alias (or a cycle) being expanded. */
static json_t *value_of(walk *w, yaml_node_t *node, int depth)
{
    if (node == NULL) {
        snprintf(w->err, w->err_len, "unsupported YAML node");
        return NULL;
    }
    if (depth > YAML_MAX_DEPTH) {
        snprintf(w->err, w->err_len, "line %zu: nesting deeper than %d levels", node->start_mark.line + 1,
                 YAML_MAX_DEPTH);
        return NULL;
    }
    size_t i = (size_t)(node - w->doc->nodes.start);
    bool again = w->seen[i];
    w->seen[i] = true;
    w->in_alias += again;
    if (w->in_alias > 0) {
        w->alias_values++;
        if (node->type == YAML_SCALAR_NODE)
            w->alias_bytes += node->data.scalar.length;
    }
    json_t *v = NULL;
    if (w->alias_values > YAML_MAX_ALIAS_VALUES || w->alias_bytes > YAML_MAX_ALIAS_BYTES)
        snprintf(w->err, w->err_len, "aliases expand to more than %d values or %d bytes in all, the last "
                 "of the anchor at line %zu (refused: an alias bomb?)", YAML_MAX_ALIAS_VALUES,
                 YAML_MAX_ALIAS_BYTES, node->start_mark.line + 1);
    else
        v = node_to_json(w, node, depth);
    w->in_alias -= again;
    return v;
}

static json_t *node_to_json(walk *w, yaml_node_t *node, int depth)
{
    yaml_document_t *doc = w->doc;
    switch (node->type) {
    case YAML_SCALAR_NODE:
        return scalar_to_json(node);
    case YAML_SEQUENCE_NODE: {
        json_t *arr = json_array();
        for (yaml_node_item_t *it = node->data.sequence.items.start;
             it < node->data.sequence.items.top; it++) {
            json_t *v = value_of(w, yaml_document_get_node(doc, *it), depth + 1);
            if (v == NULL) {
                json_decref(arr);
                return NULL;
            }
            json_array_append_new(arr, v);
        }
        return arr;
    }
    case YAML_MAPPING_NODE: {
        json_t *obj = json_object();
        for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(doc, p->key);
            if (k == NULL || k->type != YAML_SCALAR_NODE) {
                snprintf(w->err, w->err_len, "line %zu: mapping keys must be plain strings",
                         k ? k->start_mark.line + 1 : 0);
                json_decref(obj);
                return NULL;
            }
            json_t *v = value_of(w, yaml_document_get_node(doc, p->value), depth + 1);
            if (v == NULL) {
                json_decref(obj);
                return NULL;
            }
            json_object_setn_new(obj, (const char *)k->data.scalar.value, k->data.scalar.length, v);
        }
        return obj;
    }
    default:
        snprintf(w->err, w->err_len, "unsupported YAML node");
        return NULL;
    }
}

/* Loads the parser's one document; source names it in err. */
static json_t *load(yaml_parser_t *parser, const char *source, char *err, size_t err_len)
{
    yaml_document_t doc;
    json_t *out = NULL;
    if (!yaml_parser_load(parser, &doc)) {
        snprintf(err, err_len, "%s: line %zu: %s", source, parser->problem_mark.line + 1,
                 parser->problem ? parser->problem : "invalid YAML");
        return NULL;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL)
        out = json_object();
    else {
        char why[256];
        walk w = {.doc = &doc, .seen = xcalloc((size_t)(doc.nodes.top - doc.nodes.start), sizeof(bool)),
                  .err = why, .err_len = sizeof(why)};
        if ((out = value_of(&w, root, 0)) == NULL)
            snprintf(err, err_len, "%s: %s", source, why);
        xfree(w.seen);
    }
    yaml_document_delete(&doc);
    return out;
}

json_t *yaml_load_file(const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_len, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    json_t *out = load(&parser, path, err, err_len);
    yaml_parser_delete(&parser);
    fclose(f);
    return out;
}

json_t *yaml_load_text(const char *text, size_t len, const char *source, char *err, size_t err_len)
{
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)(len ? text : ""), len);
    json_t *out = load(&parser, source, err, err_len);
    yaml_parser_delete(&parser);
    return out;
}
