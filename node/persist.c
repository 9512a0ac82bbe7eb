/* persist.c - the storage thread (see persist.h). A failed RocksDB write stops
 * the node (fail-stop): the writes in that batch were never acknowledged, and a
 * store that cannot write must not keep accepting writes it cannot keep.
 * The thread also times every group commit and reads the store's sizes once a
 * second, for /metrics (persist_metrics, any thread). */
#include "persist.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "prom.h"
#include "queue.h"
#include "shardmap.h"
#include "storage.h"
#include "util.h"

#define SIZES_EVERY_MS 1000 /* how often the storage thread reads the store's sizes */

/* A write job of persist_write_many: its records follow the job, each a
 * group_entry then its name and data (bytes), until `count`. */
#define PERSIST_GROUP 3
/* Snapshot catch-up jobs (persist_view_open, _view_close, _scan, _drop_shards). */
#define JOB_VIEW_OPEN 10
#define JOB_VIEW_CLOSE 11
#define JOB_SCAN 12
#define JOB_DROP 13
#define SCAN_MAX_KEYS 4096 /* names one scan job looks at: the storage thread stays responsive */
#define SHARD_SET_BYTES (SHARD_COUNT / 8)
typedef struct group_entry {
    int64_t version;
    bool del;
    size_t name_len, data_len;
} group_entry;

typedef struct job {
    int kind; /* PERSIST_LOADED (a load), PERSIST_COMMITTED (a write) or PERSIST_GROUP (writes, one batch) */
    size_t count; /* PERSIST_GROUP: records in bytes */
    void *cookie;
    int64_t version;
    uint64_t ticket;
    bool del;
    size_t name_len, data_len;
    char *data; /* points into bytes, after the name */
    struct storage_view *view; /* JOB_VIEW_CLOSE, JOB_SCAN */
    size_t max_records, max_bytes; /* JOB_SCAN */
    char bytes[];
} job;

struct persist {
    storage *st;
    enum sync_mode mode;
    queue *jobs;
    queue *done;
    int efd;
    pthread_t thread;
    atomic_bool stop;
    atomic_uint_fast64_t commits, batches;
    /* for /metrics: written by the storage thread alone */
    prom_histogram commit_time; /* one group commit: the RocksDB write, and its fsync */
    prom_counter sst_bytes, live_data_bytes, memtable_bytes, wal_bytes, keys;
    int64_t sizes_read_ms;
    _Atomic(void (*)(void *)) notify; /* persist_set_notify; NULL: the eventfd */
    void *notify_ctx;
};

/* Queues a completion and signals its consumer, once per burst: a consumer
 * takes every completion queued when it looks. */
static void post(persist *p, persist_done *d)
{
    size_t before;
    while (queue_push_counted(p->done, d, 1000, &before) != 0)
        log_warn("persist-completions-full", "waiting for the executor");
    if (before > 0)
        return;
    void (*notify)(void *) = atomic_load(&p->notify);
    if (notify != NULL) {
        notify(p->notify_ctx);
        return;
    }
    uint64_t one = 1;
    ssize_t w = write(p->efd, &one, sizeof(one));
    (void)w;
}

void persist_set_notify(persist *p, void (*notify)(void *ctx), void *ctx)
{
    p->notify_ctx = ctx;
    atomic_store(&p->notify, notify);
}

static void commit(persist *p, storage_batch *b, uint64_t ticket)
{
    if (storage_batch_count(b) == 0)
        return;
    char err[256];
    size_t n = storage_batch_count(b);
    uint64_t started = prom_now_ns();
    if (storage_batch_commit(p->st, b, p->mode != SYNC_NEVER, err, sizeof(err)) != 0) {
        log_error("storage-write-failed", "error=%s writes=%zu (stopping: unacknowledged writes are lost, acknowledged ones are safe)", err, n);
        _exit(1);
    }
    prom_observe(&p->commit_time, prom_now_ns() - started);
    atomic_fetch_add(&p->commits, n);
    atomic_fetch_add(&p->batches, 1);
    persist_done *d = xcalloc(1, sizeof(*d));
    d->kind = PERSIST_COMMITTED;
    d->ticket = ticket;
    post(p, d);
}

static void post_committed(persist *p, uint64_t ticket)
{
    persist_done *d = xcalloc(1, sizeof(*d));
    d->kind = PERSIST_COMMITTED;
    d->ticket = ticket;
    post(p, d);
}

static bool in_set(const uint8_t *shards, const char *name, size_t len)
{
    uint32_t s = shard_of(name, len);
    return (shards[s / 8] >> (s % 8)) & 1;
}

static bool drop_wanted(void *ctx, const char *name, size_t len)
{
    return in_set(ctx, name, len);
}

/* What a scan job gathers: the wanted records packed as persist_scanned. */
typedef struct scan_out {
    const uint8_t *shards;
    size_t max_records, max_bytes;
    char *buf;
    size_t len, cap;
    uint32_t count;
} scan_out;

static int scan_visit(void *ctx, const char *name, size_t name_len, int64_t version, const char *data,
                      size_t data_len)
{
    scan_out *o = ctx;
    if (!in_set(o->shards, name, name_len))
        return 0;
    persist_scanned h = {.version = version, .name_len = (uint32_t)name_len, .data_len = (uint32_t)data_len};
    size_t need = o->len + sizeof(h) + name_len + data_len;
    if (need > o->cap) {
        o->cap = need > o->cap * 2 ? need : o->cap * 2;
        o->buf = xrealloc(o->buf, o->cap);
    }
    memcpy(o->buf + o->len, &h, sizeof(h));
    memcpy(o->buf + o->len + sizeof(h), name, name_len);
    if (data_len > 0)
        memcpy(o->buf + o->len + sizeof(h) + name_len, data, data_len);
    o->len = need;
    o->count++;
    return o->count >= o->max_records || o->len >= o->max_bytes;
}

static void run_scan(persist *p, job *j)
{
    scan_out o = {.shards = (const uint8_t *)j->data, .max_records = j->max_records, .max_bytes = j->max_bytes};
    persist_done *d = xcalloc(1, sizeof(*d));
    d->kind = PERSIST_SCANNED;
    d->cookie = j->cookie;
    int rc = storage_scan(p->st, j->view, j->bytes, j->name_len, SCAN_MAX_KEYS, scan_visit, &o, &d->cursor,
                          &d->cursor_len);
    if (rc < 0) { /* fail-stop, as a failed write: a snapshot must not silently miss records */
        log_error("storage-scan-failed", "stopping (a replica cannot be given a complete snapshot)");
        _exit(1);
    }
    d->end = rc == 1;
    d->data = o.buf;
    d->data_len = o.len;
    d->count = o.count;
    post(p, d);
}

static void run_drop(persist *p, job *j, storage_batch *b, uint64_t *ticket)
{
    commit(p, b, *ticket); /* what was queued before it goes first */
    char err[256];
    size_t dropped = 0;
    uint64_t started = prom_now_ns();
    if (storage_drop(p->st, drop_wanted, j->data, p->mode != SYNC_NEVER, &dropped, err, sizeof(err)) != 0) {
        log_error("storage-write-failed", "error=%s (dropping replicated shards; stopping)", err);
        _exit(1);
    }
    log_info("storage-shards-dropped", "records=%zu ms=%llu", dropped,
             (unsigned long long)((prom_now_ns() - started) / 1000000));
    atomic_fetch_add(&p->commits, dropped);
    *ticket = j->ticket;
    post_committed(p, j->ticket);
}

static void run_job(persist *p, job *j, storage_batch *b, uint64_t *ticket)
{
    if (j->kind == JOB_VIEW_OPEN) {
        commit(p, b, *ticket); /* the view holds every write queued before it */
        persist_done *d = xcalloc(1, sizeof(*d));
        d->kind = PERSIST_VIEW;
        d->cookie = j->cookie;
        d->view = storage_view_open(p->st);
        post(p, d);
    } else if (j->kind == JOB_VIEW_CLOSE)
        storage_view_close(p->st, j->view);
    else if (j->kind == JOB_SCAN)
        run_scan(p, j);
    else if (j->kind == JOB_DROP)
        run_drop(p, j, b, ticket);
    else if (j->kind == PERSIST_LOADED) {
        persist_done *d = xcalloc(1, sizeof(*d));
        d->kind = PERSIST_LOADED;
        d->cookie = j->cookie;
        d->found = storage_get(p->st, j->bytes, j->name_len, &d->version, &d->data, &d->data_len);
        post(p, d);
    } else if (j->kind == PERSIST_GROUP) {
        const char *at = j->bytes;
        for (size_t i = 0; i < j->count; i++) {
            group_entry e;
            memcpy(&e, at, sizeof(e));
            at += sizeof(e);
            if (e.del)
                storage_batch_delete(b, at, e.name_len);
            else
                storage_batch_put(b, at, e.name_len, e.version, at + e.name_len, e.data_len);
            at += e.name_len + e.data_len;
        }
        *ticket = j->ticket;
        if (p->mode == SYNC_ALWAYS)
            commit(p, b, *ticket);
    } else {
        if (j->del)
            storage_batch_delete(b, j->bytes, j->name_len);
        else
            storage_batch_put(b, j->bytes, j->name_len, j->version, j->data, j->data_len);
        *ticket = j->ticket;
        if (p->mode == SYNC_ALWAYS)
            commit(p, b, *ticket);
    }
    xfree(j);
}

/* Reads the store's sizes when they are SIZES_EVERY_MS old. */
static void read_sizes(persist *p)
{
    int64_t now = now_ms();
    if (now - p->sizes_read_ms < SIZES_EVERY_MS)
        return;
    p->sizes_read_ms = now;
    storage_sizes z;
    storage_sizes_read(p->st, &z);
    prom_set(&p->sst_bytes, z.sst_bytes);
    prom_set(&p->live_data_bytes, z.live_data_bytes);
    prom_set(&p->memtable_bytes, z.memtable_bytes);
    prom_set(&p->wal_bytes, z.wal_bytes);
    prom_set(&p->keys, z.keys);
}

static void *thread_main(void *arg)
{
    persist *p = arg;
    storage_batch *b = storage_batch_new();
    for (;;) {
        read_sizes(p);
        job *j = queue_pop(p->jobs, 100);
        if (j == NULL) {
            if (atomic_load(&p->stop))
                break;
            continue;
        }
        uint64_t ticket = 0;
        run_job(p, j, b, &ticket);
        /* Group commit: take everything that queued up meanwhile. */
        while ((j = queue_pop(p->jobs, 0)) != NULL)
            run_job(p, j, b, &ticket);
        commit(p, b, ticket);
    }
    storage_batch_free(b);
    return NULL;
}

persist *persist_start(const char *dir, enum sync_mode mode, size_t queue_len, char *err,
                       size_t err_len)
{
    storage *st = storage_open(dir, err, err_len);
    if (st == NULL)
        return NULL;
    persist *p = xcalloc(1, sizeof(*p));
    p->st = st;
    p->mode = mode;
    p->jobs = queue_new(queue_len);
    p->done = queue_new(queue_len * 2);
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->efd < 0 || pthread_create(&p->thread, NULL, thread_main, p) != 0) {
        snprintf(err, err_len, "cannot start the storage thread");
        if (p->efd >= 0)
            close(p->efd);
        queue_free(p->jobs, NULL);
        queue_free(p->done, NULL);
        storage_close(st);
        xfree(p);
        return NULL;
    }
    return p;
}

static void free_job(void *j)
{
    xfree(j);
}

void persist_done_free(persist_done *d)
{
    if (d == NULL)
        return;
    xfree(d->data);
    xfree(d->cursor);
    xfree(d);
}

static void free_done(void *d)
{
    persist_done_free(d);
}

void persist_stop(persist *p)
{
    if (p == NULL)
        return;
    atomic_store(&p->stop, true);
    pthread_join(p->thread, NULL); /* drains the job queue first */
    queue_free(p->jobs, free_job);
    queue_free(p->done, free_done);
    close(p->efd);
    storage_close(p->st);
    xfree(p);
}

int persist_fd(const persist *p)
{
    return p->efd;
}

static job *new_job(int kind, const char *name, size_t len, const char *data, size_t data_len)
{
    job *j = xmalloc(sizeof(*j) + len + data_len + 1);
    memset(j, 0, sizeof(*j));
    j->kind = kind;
    j->name_len = len;
    if (len > 0)
        memcpy(j->bytes, name, len);
    j->data = j->bytes + len;
    j->data_len = data_len;
    if (data_len > 0)
        memcpy(j->data, data, data_len);
    j->data[data_len] = '\0';
    return j;
}

int persist_load(persist *p, const char *name, size_t len, void *cookie)
{
    job *j = new_job(PERSIST_LOADED, name, len, NULL, 0);
    j->cookie = cookie;
    if (queue_push(p->jobs, j, 0) != 0) {
        xfree(j);
        return -1;
    }
    return 0;
}

int persist_write(persist *p, const char *name, size_t len, int64_t version, const char *data,
                  size_t data_len, uint64_t ticket)
{
    job *j = new_job(PERSIST_COMMITTED, name, len, data, data ? data_len : 0);
    j->version = version;
    j->ticket = ticket;
    j->del = data == NULL;
    if (queue_push(p->jobs, j, 0) != 0) {
        xfree(j);
        return -1;
    }
    return 0;
}

int persist_write_many(persist *p, const persist_item *items, size_t n, uint64_t ticket)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += sizeof(group_entry) + items[i].len + (items[i].data ? items[i].data_len : 0);
    job *j = xmalloc(sizeof(*j) + bytes);
    memset(j, 0, sizeof(*j));
    j->kind = PERSIST_GROUP;
    j->count = n;
    j->ticket = ticket;
    char *at = j->bytes;
    for (size_t i = 0; i < n; i++) {
        group_entry e = {.version = items[i].version, .del = items[i].data == NULL, .name_len = items[i].len,
                         .data_len = items[i].data ? items[i].data_len : 0};
        memcpy(at, &e, sizeof(e));
        at += sizeof(e);
        memcpy(at, items[i].name, e.name_len);
        at += e.name_len;
        if (e.data_len > 0)
            memcpy(at, items[i].data, e.data_len);
        at += e.data_len;
    }
    if (queue_push(p->jobs, j, 0) != 0) {
        xfree(j);
        return -1;
    }
    return 0;
}

static int push(persist *p, job *j)
{
    if (queue_push(p->jobs, j, 0) != 0) {
        xfree(j);
        return -1;
    }
    return 0;
}

int persist_view_open(persist *p, void *cookie)
{
    job *j = new_job(JOB_VIEW_OPEN, NULL, 0, NULL, 0);
    j->cookie = cookie;
    return push(p, j);
}

int persist_view_close(persist *p, struct storage_view *v)
{
    job *j = new_job(JOB_VIEW_CLOSE, NULL, 0, NULL, 0);
    j->view = v;
    return push(p, j);
}

int persist_scan(persist *p, struct storage_view *v, const uint8_t *shards, const char *after, size_t after_len,
                 size_t max_records, size_t max_bytes, void *cookie)
{
    job *j = new_job(JOB_SCAN, after, after_len, (const char *)shards, SHARD_SET_BYTES);
    j->view = v;
    j->cookie = cookie;
    j->max_records = max_records > 0 ? max_records : 1;
    j->max_bytes = max_bytes;
    return push(p, j);
}

int persist_drop_shards(persist *p, const uint8_t *shards, uint64_t ticket)
{
    job *j = new_job(JOB_DROP, NULL, 0, (const char *)shards, SHARD_SET_BYTES);
    j->ticket = ticket;
    return push(p, j);
}

persist_done *persist_poll(persist *p)
{
    persist_done *d = queue_pop(p->done, 0);
    if (d == NULL && atomic_load(&p->notify) == NULL) {
        uint64_t v;
        ssize_t r = read(p->efd, &v, sizeof(v)); /* reset; a racing post re-arms it */
        (void)r;
        d = queue_pop(p->done, 0);
    }
    return d;
}

void persist_wait(persist *p, int timeout_ms)
{
    struct pollfd pfd = {.fd = p->efd, .events = POLLIN};
    poll(&pfd, 1, timeout_ms);
}

uint64_t persist_commits(const persist *p)
{
    return atomic_load(&p->commits);
}

static void gauge(FILE *f, const char *name, const char *help, const prom_counter *v)
{
    prom_family(f, name, "gauge", help);
    fprintf(f, "%s %llu\n", name, (unsigned long long)prom_get(v));
}

void persist_metrics(persist *p, FILE *f)
{
    prom_write_histogram(f, "eddy_node_persist_seconds",
                         "one group commit of record writes to RocksDB: the write, and its fsync (storage.sync)",
                         &p->commit_time);
    prom_family(f, "eddy_node_persisted_writes_total", "counter", "record writes and deletes committed to RocksDB");
    fprintf(f, "eddy_node_persisted_writes_total %llu\n", (unsigned long long)atomic_load(&p->commits));
    prom_family(f, "eddy_node_persist_queue", "gauge", "record loads and writes waiting for the storage thread");
    fprintf(f, "eddy_node_persist_queue %zu\n", queue_len(p->jobs));
    gauge(f, "eddy_node_storage_sst_bytes", "RocksDB table files in use (rocksdb.live-sst-files-size)",
          &p->sst_bytes);
    gauge(f, "eddy_node_storage_live_data_bytes",
          "RocksDB's estimate of the live data in its table files (rocksdb.estimate-live-data-size)",
          &p->live_data_bytes);
    gauge(f, "eddy_node_storage_memtable_bytes",
          "written, not yet flushed to a table file (rocksdb.cur-size-all-mem-tables)", &p->memtable_bytes);
    gauge(f, "eddy_node_storage_wal_bytes", "the write-ahead log files", &p->wal_bytes);
    gauge(f, "eddy_node_storage_keys", "RocksDB's estimate of the keys it holds (rocksdb.estimate-num-keys)",
          &p->keys);
}
