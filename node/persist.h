/* persist.h - the node's storage thread: every RocksDB call runs here, never on
 * the executor. The executor hands it loads and writes through one bounded job
 * queue; the thread group-commits the writes that arrive together (one
 * WriteBatch, one fsync in sync mode "batch") and hands results back through a
 * completion queue, signalled on an eventfd the executor polls.
 *
 * Invariant the executor keeps: a record is never loaded while writes to it are
 * still queued (records with uncommitted writes are pinned in the cache), so
 * loads and writes may be served in any order relative to each other. */
#ifndef EDDY_PERSIST_H
#define EDDY_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum sync_mode { SYNC_ALWAYS = 0, SYNC_BATCH = 1, SYNC_NEVER = 2 };

typedef struct persist persist;

enum persist_done_kind {
    PERSIST_LOADED = 1,
    PERSIST_COMMITTED = 2,
    PERSIST_VIEW = 5,    /* persist_view_open's: view */
    PERSIST_SCANNED = 6, /* persist_scan's: records in data, count, end, cursor */
};

struct storage_view;

/* One record of a scan's result: `count` of them packed in data, each this
 * header (memcpy it out: no alignment) then its name then its data. */
typedef struct persist_scanned {
    int64_t version;
    uint32_t name_len, data_len;
} persist_scanned;

/* A completion, owned by the executor once polled (persist_done_free). */
typedef struct persist_done {
    int kind;
    void *cookie;    /* LOADED: what persist_load was given */
    int found;       /* LOADED: 1 found, 0 missing, -1 storage error */
    int64_t version; /* LOADED */
    char *data;      /* LOADED: xmalloc'd, NUL-terminated */
    size_t data_len;
    uint64_t ticket; /* COMMITTED: every write up to this ticket is durable */
    struct storage_view *view; /* VIEW: the view opened (the caller closes it: persist_view_close) */
    uint32_t count;  /* SCANNED: records packed in data (data_len bytes; NULL when none) */
    bool end;        /* SCANNED: no record after these */
    char *cursor;    /* SCANNED, not end: the last name scanned (xmalloc'd), the next scan's `after` */
    size_t cursor_len;
} persist_done;

/* Opens the store in dir and starts the thread. NULL with a reason in err. */
persist *persist_start(const char *dir, enum sync_mode mode, size_t queue_len, char *err,
                       size_t err_len);
/* Finishes every queued job, stops the thread, closes the store. NULL is fine. */
void persist_stop(persist *p);
/* The eventfd that becomes readable when completions are waiting. */
int persist_fd(const persist *p);
/* From now on completions are signalled by calling notify(ctx) on the storage
 * thread (once per burst: when the completion queue was empty) instead of
 * through the eventfd. */
void persist_set_notify(persist *p, void (*notify)(void *ctx), void *ctx);
/* Queues a load of name (copied); returns -1 when the queue is full. */
int persist_load(persist *p, const char *name, size_t len, void *cookie);
/* Queues a write (data NULL deletes); all copied. Returns -1 when the queue is full. */
int persist_write(persist *p, const char *name, size_t len, int64_t version, const char *data,
                  size_t data_len, uint64_t ticket);
/* One record of an atomic group write: data NULL deletes it. */
typedef struct persist_item {
    const char *name;
    size_t len;
    int64_t version;
    const char *data;
    size_t data_len;
} persist_item;
/* Queues the writes of n records (all copied) as one job: the storage thread
 * puts them in one RocksDB WriteBatch, so a crash keeps all or none; one
 * ticket covers them. Returns -1 when the queue is full. */
int persist_write_many(persist *p, const persist_item *items, size_t n, uint64_t ticket);
/* Snapshot catch-up (replication). Each returns -1 when the queue is full
 * (nothing queued: try again later).
 * Queues the opening of a consistent view: the writes queued before it are
 * committed first, so the view holds exactly them. Completion: PERSIST_VIEW
 * with cookie and the view. */
int persist_view_open(persist *p, void *cookie);
/* Queues the release of v (no completion). */
int persist_view_close(persist *p, struct storage_view *v);
/* Queues a scan of v after the name after/after_len (copied; 0: from the
 * first) for the records whose shard is in the set shards (SHARD_COUNT bits,
 * copied): at most max_records records and about max_bytes (one record more
 * may pass it), and a bounded number of names looked at. Completion:
 * PERSIST_SCANNED with cookie. */
int persist_scan(persist *p, struct storage_view *v, const uint8_t *shards, const char *after, size_t after_len,
                 size_t max_records, size_t max_bytes, void *cookie);
/* Queues the deletion of every record whose shard is in the set shards
 * (copied), after the writes queued before it and before those queued after;
 * completion: PERSIST_COMMITTED with ticket. */
int persist_drop_shards(persist *p, const uint8_t *shards, uint64_t ticket);
/* Returns the next completion or NULL (non-blocking; clears the eventfd when empty). */
persist_done *persist_poll(persist *p);
void persist_done_free(persist_done *d);
/* Waits up to timeout_ms for a completion to be signalled. */
void persist_wait(persist *p, int timeout_ms);
/* Writes committed so far, and batches (for the metrics line). */
uint64_t persist_commits(const persist *p);
/* Writes the storage thread's /metrics families (eddy_node_persist_*,
 * eddy_node_storage_*; Prometheus text) to f. Any thread. */
void persist_metrics(persist *p, FILE *f);

#endif
