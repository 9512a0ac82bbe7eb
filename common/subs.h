/* subs.h - the subscription table: which holders hold each name, and which
 * names each holder holds, with a hook when a name gets its first holder and
 * when it loses its last.
 *
 * One shape for every "name -> set of subscribers" table of eddy: a broker's
 * sessions subscribed to events, records or users, a node's peers with
 * interest in a name, the providers of an RPC. A holder is a pointer (a
 * session, a peer) and a tag (the session id when one peer holds a name for
 * several of its sessions; 0 otherwise). Every name keeps data_size bytes of
 * the owner's data (zeroed when the name first appears) for as long as it has
 * holders or pins; a pin keeps a name alive without a holder (a subscribe in
 * flight). Lookups by name and by holder are hash lookups; removing one
 * holder of a name scans that name's holders.
 *
 * Hooks must not change the table that calls them. Not thread-safe: a table
 * belongs to one thread (a broker loop, a node executor). */
#ifndef EDDY_SUBS_H
#define EDDY_SUBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strview.h"

typedef struct subs subs;

typedef struct subs_holder {
    void *ptr;
    uint64_t tag;
    uint64_t count; /* the owner's counter for this holder (RPC: calls in flight); starts at 0 */
} subs_holder;

typedef struct subs_hooks {
    /* name appeared (first holder or pin); data is zeroed. May be NULL. */
    void (*first)(void *ctx, strview name, void *data);
    /* name lost its last holder and pin; data is freed when this returns. May be NULL. */
    void (*last)(void *ctx, strview name, void *data);
} subs_hooks;

/* A new empty table; ctx is passed to the hooks (borrowed). Owned by the caller. */
subs *subs_new(size_t data_size, subs_hooks hooks, void *ctx);
/* Frees the table without calling hooks. NULL is fine. */
void subs_free(subs *t);
/* How many names have holders or pins. */
size_t subs_count(const subs *t);

/* Adds holder (ptr, tag) to name; false when it holds it already. */
bool subs_add(subs *t, strview name, void *ptr, uint64_t tag);
/* Removes holder (ptr, tag) from name; false when it did not hold it. With
 * quiet the last-holder hook is not called. */
bool subs_remove(subs *t, strview name, const void *ptr, uint64_t tag, bool quiet);
/* Removes ptr (every tag) from every name it holds, calling the hooks; returns
 * how many names it held. */
size_t subs_remove_holder(subs *t, const void *ptr);
/* Every holder of name leaves, quietly (pins stay). */
void subs_clear(subs *t, strview name);
/* True when (ptr, tag) holds name. */
bool subs_holds(const subs *t, strview name, const void *ptr, uint64_t tag);
/* How many names ptr holds. */
size_t subs_held(const subs *t, const void *ptr);

/* The holders of name and their number in *n (NULL and 0 when none); valid
 * until the table changes. The counters may be changed in place. */
subs_holder *subs_holders(const subs *t, strview name, uint32_t *n);
/* Holder (ptr, tag) of name, or NULL when it does not hold it; valid until
 * the table changes (its counter may be changed in place). Scans name's holders. */
subs_holder *subs_find(const subs *t, strview name, const void *ptr, uint64_t tag);
/* The owner's data of name, or NULL when name has no holder or pin. */
void *subs_data(const subs *t, strview name);
/* Keeps name alive without a holder (creating it: the first hook runs);
 * returns its data. Pins count: each needs one subs_unpin. */
void *subs_pin(subs *t, strview name);
/* Drops one pin; the name goes (last hook unless quiet) when nothing holds it. */
void subs_unpin(subs *t, strview name, bool quiet);

/* Calls fn for every name; fn must not change the table and stops the walk by
 * returning non-zero. */
void subs_foreach(const subs *t,
                  int (*fn)(void *arg, strview name, subs_holder *holders, uint32_t n, void *data),
                  void *arg);
/* Copies of the names ptr holds (an array of n views, each NUL-terminated
 * too), for callers that change the table while they walk; free with
 * subs_names_free. */
strview *subs_held_names(const subs *t, const void *ptr, uint32_t *n);
void subs_names_free(strview *names, uint32_t n);
/* Calls fn for every name ptr holds (same rules). */
void subs_foreach_held(const subs *t, const void *ptr, int (*fn)(void *arg, strview name), void *arg);

#endif
