/* storage.h - the node's RocksDB store of records. Synchronous calls, made
 * only from the node's storage thread (node/persist.c), never from the
 * executor or a network thread.
 *
 * Key layout (one RocksDB default column family):
 *   "r:" + record name  ->  value format 1: [0x01][version: int64 big-endian][JSON data]
 *   "m:format"          ->  "1" (refuses to open a data folder of another format)
 * A deleted record has no key (a later create starts again at version 0). */
#ifndef EDDY_STORAGE_H
#define EDDY_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct storage storage;
typedef struct storage_batch storage_batch;

/* Opens (creating when missing) the store in dir. Returns NULL with a reason in err. */
storage *storage_open(const char *dir, char *err, size_t err_len);
void storage_close(storage *s); /* NULL is fine */
/* Reads a record: 1 found (*data is a new xmalloc'd buffer owned by the caller,
 * NUL-terminated, *data_len bytes), 0 missing, -1 error (logged) or corrupt value. */
int storage_get(storage *s, const char *name, size_t name_len, int64_t *version, char **data,
                size_t *data_len);

storage_batch *storage_batch_new(void);
void storage_batch_free(storage_batch *b); /* NULL is fine */
void storage_batch_put(storage_batch *b, const char *name, size_t name_len, int64_t version,
                       const char *data, size_t data_len);
void storage_batch_delete(storage_batch *b, const char *name, size_t name_len);
size_t storage_batch_count(const storage_batch *b);
/* Writes the batch atomically into the WAL (fsync'd when sync). Clears the batch.
 * Returns 0, or -1 with a reason in err. */
int storage_batch_commit(storage *s, storage_batch *b, bool sync, char *err, size_t err_len);

#endif
