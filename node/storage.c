/* storage.c - RocksDB wrapper for records (see storage.h for the key layout). */
#include "storage.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <rocksdb/c.h>

#include "log.h"
#include "mem.h"

#define VALUE_FORMAT 1
#define KEY_PREFIX "r:"
#define FORMAT_KEY "m:format"
#define DROP_BATCH 1024 /* deletes per committed batch in storage_drop */

struct storage_view {
    struct storage_view *next;
    const rocksdb_snapshot_t *snap;
    rocksdb_readoptions_t *ropts;
};

struct storage {
    char *dir;
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_readoptions_t *ropts;
    rocksdb_writeoptions_t *wsync, *wnosync;
    storage_view *views; /* open views: released at close at the latest */
};

struct storage_batch {
    rocksdb_writebatch_t *wb;
    char *key;
    size_t key_cap;
    char *val;
    size_t val_cap;
};

/* Copies a RocksDB error into err and frees it (pitfall 9: reset to NULL). */
static int take_error(char **rerr, const char *what, char *err, size_t err_len)
{
    snprintf(err, err_len, "%s: %s", what, *rerr);
    rocksdb_free(*rerr);
    *rerr = NULL;
    return -1;
}

storage *storage_open(const char *dir, char *err, size_t err_len)
{
    storage *s = xcalloc(1, sizeof(*s));
    s->dir = xstrdup(dir);
    char *rerr = NULL;
    s->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(s->opts, 1);
    rocksdb_options_increase_parallelism(s->opts, 2);
    rocksdb_options_set_keep_log_file_num(s->opts, 3);
    s->db = rocksdb_open(s->opts, dir, &rerr);
    if (s->db == NULL) {
        take_error(&rerr, "rocksdb open", err, err_len);
        storage_close(s);
        return NULL;
    }
    s->ropts = rocksdb_readoptions_create();
    s->wsync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wsync, 1);
    s->wnosync = rocksdb_writeoptions_create();
    size_t len;
    char *fmt = rocksdb_get(s->db, s->ropts, FORMAT_KEY, strlen(FORMAT_KEY), &len, &rerr);
    if (rerr != NULL) {
        take_error(&rerr, "rocksdb read format", err, err_len);
        storage_close(s);
        return NULL;
    }
    if (fmt == NULL) {
        rocksdb_put(s->db, s->wsync, FORMAT_KEY, strlen(FORMAT_KEY), "1", 1, &rerr);
        if (rerr != NULL) {
            take_error(&rerr, "rocksdb write format", err, err_len);
            storage_close(s);
            return NULL;
        }
    } else {
        bool ok = len == 1 && fmt[0] == '1';
        rocksdb_free(fmt);
        if (!ok) {
            snprintf(err, err_len, "%s holds data of an unknown format", dir);
            storage_close(s);
            return NULL;
        }
    }
    return s;
}

void storage_close(storage *s)
{
    if (s == NULL)
        return;
    while (s->views != NULL)
        storage_view_close(s, s->views);
    if (s->db != NULL)
        rocksdb_close(s->db);
    if (s->ropts != NULL)
        rocksdb_readoptions_destroy(s->ropts);
    if (s->wsync != NULL)
        rocksdb_writeoptions_destroy(s->wsync);
    if (s->wnosync != NULL)
        rocksdb_writeoptions_destroy(s->wnosync);
    rocksdb_options_destroy(s->opts);
    xfree(s->dir);
    xfree(s);
}

static char *make_key(char **buf, size_t *cap, const char *name, size_t name_len, size_t *key_len)
{
    *key_len = 2 + name_len;
    if (*cap < *key_len) {
        *cap = *key_len * 2;
        *buf = xrealloc(*buf, *cap);
    }
    memcpy(*buf, KEY_PREFIX, 2);
    memcpy(*buf + 2, name, name_len);
    return *buf;
}

int storage_get(storage *s, const char *name, size_t name_len, int64_t *version, char **data,
                size_t *data_len)
{
    char stack[256], *key = stack;
    size_t key_len = 2 + name_len;
    if (key_len > sizeof(stack))
        key = xmalloc(key_len);
    memcpy(key, KEY_PREFIX, 2);
    memcpy(key + 2, name, name_len);
    char *rerr = NULL;
    size_t len;
    char *val = rocksdb_get(s->db, s->ropts, key, key_len, &len, &rerr);
    if (key != stack)
        xfree(key);
    if (rerr != NULL) {
        log_error("storage-read-failed", "error=%s", rerr);
        rocksdb_free(rerr);
        return -1;
    }
    if (val == NULL)
        return 0;
    if (len < 9 || (uint8_t)val[0] != VALUE_FORMAT) {
        log_error("storage-corrupt-value", "name=%.*s bytes=%zu", (int)name_len, name, len);
        rocksdb_free(val);
        return -1;
    }
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | (uint8_t)val[1 + i];
    *version = (int64_t)v;
    *data_len = len - 9;
    *data = xstrndup(val + 9, len - 9);
    rocksdb_free(val);
    return 1;
}

storage_batch *storage_batch_new(void)
{
    storage_batch *b = xcalloc(1, sizeof(*b));
    b->wb = rocksdb_writebatch_create();
    return b;
}

void storage_batch_free(storage_batch *b)
{
    if (b == NULL)
        return;
    rocksdb_writebatch_destroy(b->wb);
    xfree(b->key);
    xfree(b->val);
    xfree(b);
}

void storage_batch_put(storage_batch *b, const char *name, size_t name_len, int64_t version,
                       const char *data, size_t data_len)
{
    size_t key_len;
    make_key(&b->key, &b->key_cap, name, name_len, &key_len);
    size_t val_len = 9 + data_len;
    if (b->val_cap < val_len) {
        b->val_cap = val_len * 2;
        b->val = xrealloc(b->val, b->val_cap);
    }
    b->val[0] = VALUE_FORMAT;
    for (int i = 0; i < 8; i++)
        b->val[1 + i] = (char)((uint64_t)version >> (56 - 8 * i));
    memcpy(b->val + 9, data, data_len);
    rocksdb_writebatch_put(b->wb, b->key, key_len, b->val, val_len);
}

void storage_batch_delete(storage_batch *b, const char *name, size_t name_len)
{
    size_t key_len;
    make_key(&b->key, &b->key_cap, name, name_len, &key_len);
    rocksdb_writebatch_delete(b->wb, b->key, key_len);
}

size_t storage_batch_count(const storage_batch *b)
{
    return (size_t)rocksdb_writebatch_count(b->wb);
}

int storage_batch_commit(storage *s, storage_batch *b, bool sync, char *err, size_t err_len)
{
    char *rerr = NULL;
    rocksdb_write(s->db, sync ? s->wsync : s->wnosync, b->wb, &rerr);
    rocksdb_writebatch_clear(b->wb);
    if (rerr != NULL)
        return take_error(&rerr, "rocksdb write", err, err_len);
    return 0;
}

static uint64_t property(storage *s, const char *name)
{
    uint64_t v = 0;
    return rocksdb_property_int(s->db, name, &v) == 0 ? v : 0;
}

/* The bytes of the *.log files in the data folder: RocksDB 7.8 has no
 * property for the write-ahead log's size. */
static uint64_t wal_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    uint64_t total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        struct stat st;
        if (n > 4 && strcmp(e->d_name + n - 4, ".log") == 0 && fstatat(dirfd(d), e->d_name, &st, 0) == 0)
            total += (uint64_t)st.st_size;
    }
    closedir(d);
    return total;
}

void storage_sizes_read(storage *s, storage_sizes *out)
{
    out->sst_bytes = property(s, "rocksdb.live-sst-files-size");
    out->live_data_bytes = property(s, "rocksdb.estimate-live-data-size");
    out->memtable_bytes = property(s, "rocksdb.cur-size-all-mem-tables");
    out->keys = property(s, "rocksdb.estimate-num-keys");
    out->wal_bytes = wal_bytes(s->dir);
}

/* ---------------- scans ---------------- */

storage_view *storage_view_open(storage *s)
{
    storage_view *v = xcalloc(1, sizeof(*v));
    v->snap = rocksdb_create_snapshot(s->db);
    v->ropts = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(v->ropts, v->snap);
    rocksdb_readoptions_set_fill_cache(v->ropts, 0); /* a scan must not push the hot records out */
    v->next = s->views;
    s->views = v;
    return v;
}

void storage_view_close(storage *s, storage_view *v)
{
    if (v == NULL)
        return;
    for (storage_view **at = &s->views; *at != NULL; at = &(*at)->next)
        if (*at == v) {
            *at = v->next;
            break;
        }
    rocksdb_readoptions_destroy(v->ropts);
    rocksdb_release_snapshot(s->db, v->snap);
    xfree(v);
}

/* Positions it at the first record after `after` (or the first record). */
static void seek_after(rocksdb_iterator_t *it, const char *after, size_t after_len)
{
    char stack[256], *key = stack;
    size_t key_len = 2 + after_len;
    if (key_len > sizeof(stack))
        key = xmalloc(key_len);
    memcpy(key, KEY_PREFIX, 2);
    if (after_len > 0)
        memcpy(key + 2, after, after_len);
    rocksdb_iter_seek(it, key, key_len);
    if (after_len > 0 && rocksdb_iter_valid(it)) {
        size_t len;
        const char *k = rocksdb_iter_key(it, &len);
        if (len == key_len && memcmp(k, key, len) == 0)
            rocksdb_iter_next(it);
    }
    if (key != stack)
        xfree(key);
}

/* The record the iterator is at, or false past the records ("r:" keys). */
static bool at_record(rocksdb_iterator_t *it, const char **name, size_t *name_len)
{
    if (!rocksdb_iter_valid(it))
        return false;
    size_t len;
    const char *k = rocksdb_iter_key(it, &len);
    if (len < 2 || memcmp(k, KEY_PREFIX, 2) != 0)
        return false;
    *name = k + 2;
    *name_len = len - 2;
    return true;
}

static int iter_failed(rocksdb_iterator_t *it, const char *what)
{
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    if (rerr == NULL)
        return 0;
    log_error("storage-scan-failed", "at=%s error=%s", what, rerr);
    rocksdb_free(rerr);
    return -1;
}

int storage_scan(storage *s, storage_view *v, const char *after, size_t after_len, size_t max_keys,
                 storage_visit_fn *visit, void *ctx, char **last, size_t *last_len)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, v != NULL ? v->ropts : s->ropts);
    seek_after(it, after, after_len);
    const char *name;
    size_t name_len, seen = 0;
    int rc = 1;
    while (at_record(it, &name, &name_len)) {
        size_t len;
        const char *val = rocksdb_iter_value(it, &len);
        int stop = 0;
        if (len < 9 || (uint8_t)val[0] != VALUE_FORMAT)
            log_error("storage-corrupt-value", "name=%.*s bytes=%zu (skipped by a scan)", (int)name_len, name, len);
        else {
            uint64_t ver = 0;
            for (int i = 0; i < 8; i++)
                ver = (ver << 8) | (uint8_t)val[1 + i];
            stop = visit(ctx, name, name_len, (int64_t)ver, val + 9, len - 9);
        }
        if (stop || ++seen >= max_keys) {
            *last = xmalloc(name_len + 1);
            memcpy(*last, name, name_len);
            (*last)[name_len] = '\0';
            *last_len = name_len;
            rocksdb_iter_next(it);
            rc = at_record(it, &name, &name_len) ? 0 : 1; /* nothing after it: the end */
            if (rc == 1) {
                xfree(*last);
                *last = NULL;
                *last_len = 0;
            }
            break;
        }
        rocksdb_iter_next(it);
    }
    if (iter_failed(it, "scan") != 0) {
        if (rc == 0) {
            xfree(*last);
            *last = NULL;
        }
        rc = -1;
    }
    rocksdb_iter_destroy(it);
    return rc;
}

int storage_drop(storage *s, bool (*drop)(void *ctx, const char *name, size_t len), void *ctx, bool sync,
                 size_t *dropped, char *err, size_t err_len)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ropts); /* its own implicit snapshot */
    storage_batch *b = storage_batch_new();
    seek_after(it, NULL, 0);
    const char *name;
    size_t name_len;
    int rc = 0;
    *dropped = 0;
    while (rc == 0 && at_record(it, &name, &name_len)) {
        if (drop(ctx, name, name_len)) {
            storage_batch_delete(b, name, name_len);
            ++*dropped;
        }
        if (storage_batch_count(b) >= DROP_BATCH)
            rc = storage_batch_commit(s, b, sync, err, err_len);
        rocksdb_iter_next(it);
    }
    if (rc == 0 && iter_failed(it, "drop") != 0) {
        snprintf(err, err_len, "rocksdb iterator failed (logged)");
        rc = -1;
    }
    if (rc == 0 && storage_batch_count(b) > 0)
        rc = storage_batch_commit(s, b, sync, err, err_len);
    storage_batch_free(b);
    rocksdb_iter_destroy(it);
    return rc;
}
