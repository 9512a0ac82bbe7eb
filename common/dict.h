/* dict.h - a hash map from byte-string keys to pointers (chained, power-of-two
 * buckets, grows at load 1). The dict owns a copy of each key; it never owns
 * the values: callers free values themselves (dict_foreach or before removal).
 * Not thread-safe: each dict belongs to one thread (a broker loop, a node executor). */
#ifndef EDDY_DICT_H
#define EDDY_DICT_H

#include <stddef.h>
#include <stdint.h>

typedef struct dict dict;

dict *dict_new(void);
/* Frees the dict and its key copies; values are left alone. NULL is fine. */
void dict_free(dict *d);
/* The same, first passing every value to free_value (which owns it then). */
void dict_free_with(dict *d, void (*free_value)(void *value));
size_t dict_size(const dict *d);
/* Returns the value stored under key, or NULL. */
void *dict_get(const dict *d, const void *key, size_t len);
/* Stores value under key (copied), replacing and returning any previous value. */
void *dict_put(dict *d, const void *key, size_t len, void *value);
/* Removes key; returns its value (now owned by the caller) or NULL. */
void *dict_del(dict *d, const void *key, size_t len);
/* Calls fn for every entry; fn must not modify the dict. Stops early when fn
 * returns non-zero. The key pointer is valid only during the call. */
void dict_foreach(const dict *d, int (*fn)(const void *key, size_t len, void *value, void *arg),
                  void *arg);

/* Copies every key (NUL-terminated) into a new array, for callers that change
 * the dict while walking it. *n receives the count. Free with dict_keys_free. */
char **dict_keys(const dict *d, size_t *n);
void dict_keys_free(char **keys, size_t n);

/* The stable 64-bit FNV-1a hash, also the basis of the shard map. */
uint64_t hash_bytes(const void *data, size_t len);

#endif
