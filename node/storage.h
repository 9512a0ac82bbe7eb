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

/* ---- scans (replication's snapshot catch-up: node/replicate.c, node/replica.c) ---- */

/* A consistent read view: the store as committed when it was opened (a
 * RocksDB snapshot). Owned by the store: storage_view_close releases it, and
 * storage_close releases any still open. */
typedef struct storage_view storage_view;
storage_view *storage_view_open(storage *s);
void storage_view_close(storage *s, storage_view *v); /* NULL is fine */

/* Called for each record a scan reaches (its name and data point into the
 * store's iterator: copy what you keep). Returns 0 to go on, 1 to stop after it. */
typedef int storage_visit_fn(void *ctx, const char *name, size_t name_len, int64_t version, const char *data,
                             size_t data_len);
/* Visits the records of view v (NULL: the live store) in key order, starting
 * after the record named after/after_len (after_len 0: from the first), and
 * stops after max_keys records or when visit says so. Returns 1 when it went
 * past the last record, 0 when it stopped with more to come (*last, a new
 * xmalloc'd copy owned by the caller, *last_len: the last name visited, the
 * next scan's `after`), -1 on a read error (logged). A value of an unknown
 * format is logged and skipped. */
int storage_scan(storage *s, storage_view *v, const char *after, size_t after_len, size_t max_keys,
                 storage_visit_fn *visit, void *ctx, char **last, size_t *last_len);
/* Deletes every record whose name drop(ctx, name, len) accepts, in batches
 * of a bounded size (each committed, fsync'd when sync). *dropped: how many.
 * Returns 0, or -1 with a reason in err. */
int storage_drop(storage *s, bool (*drop)(void *ctx, const char *name, size_t len), void *ctx, bool sync,
                 size_t *dropped, char *err, size_t err_len);

#endif
