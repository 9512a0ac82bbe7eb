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

/* What the store takes: RocksDB's estimates (0 where it has none). */
typedef struct storage_sizes {
    uint64_t sst_bytes;       /* rocksdb.live-sst-files-size: the table files in use */
    uint64_t live_data_bytes; /* rocksdb.estimate-live-data-size: the data those hold, less what compaction drops */
    uint64_t memtable_bytes;  /* rocksdb.cur-size-all-mem-tables: written, not flushed to a table file yet */
    uint64_t wal_bytes;       /* the write-ahead log files (*.log) in the data folder */
    uint64_t keys;            /* rocksdb.estimate-num-keys (records, and the format key) */
} storage_sizes;
void storage_sizes_read(storage *s, storage_sizes *out);

#endif
