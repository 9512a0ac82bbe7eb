/* changeset.h - the JSON form of a changeset, as `eddy ctl txn` reads it on
 * stdin and the HTTP API reads it in a "changeset" operation:
 *
 *   [{"op":"set","name":"{cart}/a","data":{"n":1},"version":3},
 *    {"op":"set","name":"{cart}/b","path":"total","data":12},
 *    {"op":"erase","name":"{cart}/b","path":"old"},
 *    {"op":"delete","name":"{cart}/c","version":5}]
 *
 * "version" (optional, -1 or absent: any): for set and erase the version the
 * write creates (the current one + 1), for delete the version the record must
 * be at. set without "path" replaces the document (an object or array).
 * Parsing checks every bound before anything is kept; nothing here sends,
 * applies or knows about nodes (client/changeset.c, node/changeset.c). */
#ifndef EDDY_CHANGESET_H
#define EDDY_CHANGESET_H

#include <stddef.h>
#include <stdint.h>

enum cs_op { CS_SET = 1, CS_ERASE, CS_DELETE };

/* One operation of the JSON form. */
typedef struct cs_item {
    enum cs_op op;
    char *name;      /* owned */
    char *path;      /* owned; NULL: none (a set of the whole document) */
    char *data;      /* owned JSON text of "data" (set), else NULL */
    int64_t version; /* -1: any */
} cs_item;

/* Reads text[0..len) (a JSON array of 1 to max operations, each name and
 * path at most name_max bytes; a length the caller bounded) into *items (n of
 * them, the caller's: cs_items_free). "data" is kept as the client's JSON
 * text without whitespace between tokens. Returns 0, or -1 with the reason
 * in why (naming the operation's index); nothing is allocated then. */
int cs_parse(const char *text, size_t len, size_t max, size_t name_max, cs_item **items, size_t *n, char *why,
             size_t why_len);
void cs_items_free(cs_item *items, size_t n); /* NULL is fine */
/* -1 when every item's name is in the first one's shard (and no record comes
 * twice); else the index of the first item that is not, with the reason in
 * why ("CROSSSHARD: \"a\" is in shard 3, \"b\" is in shard 7"). */
long cs_check_shard(const cs_item *items, size_t n, char *why, size_t why_len);

#endif
