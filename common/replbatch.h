/* replbatch.h - the records one replication batch carries from a shard's
 * primary to a replica: node/replicate.c writes them, node/replica.c reads
 * them. The bytes travel as the data of one OP_REPL_BATCH (common/ops.h),
 * whose corr is the batch's sequence number on its (primary, replica) link.
 *
 * Format 1, every integer big-endian:
 *
 *   u8 format = 1 | u32 count | count x item
 *   item: u32 shard | u64 epoch | i64 version | u8 flags (1: deleted)
 *         | u32 name_len | u32 data_len | name | data
 *
 * An item is the whole state of one record after a write (not a change): a
 * replica that applies a suffix of a stream in order ends where the primary
 * is. The reader checks the whole batch before the first item is used: every
 * length against what remains, names 1..OP_NAME_MAX bytes, a deleted record
 * without data, count against what the remaining bytes can hold.
 *
 * Snapshot chunks (format 2) carry the records of a set of shards read from a
 * consistent view of the primary's store, in bounded pieces, as the data of
 * OP_REPL_SNAPSHOT operations (corr = the chunk's number on the link):
 *
 *   u8 format = 2 | u8 flags (1: first, 2: last) | u64 snapshot | u64 resume
 *   | first only: SHARD_COUNT / 8 bytes, the shard set (bit s % 8 of byte
 *     s / 8: shard s) | u32 count | count x item (as above)
 *
 * snapshot: the number of its first chunk (its id); resume: the last batch of
 * the incremental stream the snapshot covers (the stream goes on at resume +
 * 1 once the last chunk is applied). Items are records (never deleted ones).
 * replchunk_open checks the whole chunk as replbatch_open does. */
#ifndef EDDY_REPLBATCH_H
#define EDDY_REPLBATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "shardmap.h"
#include "strview.h"

#define REPLBATCH_FORMAT 1
#define REPLBATCH_HEADER 5u
#define REPLBATCH_ITEM_MIN 29u /* an item's fixed part (its name is at least one byte more) */

typedef struct repl_item {
    uint32_t shard;
    uint64_t epoch;   /* the shard's epoch at the primary (fencing) */
    int64_t version;  /* the record's version after the write (-1 with deleted) */
    bool deleted;
    strview name;
    strview data;     /* the JSON document (empty when deleted) */
} repl_item;

/* Starts a batch in b (cleared first; b owned by the caller). */
void replbatch_begin(msgpack_sbuffer *b);
/* Appends it (borrowed, copied into b). */
void replbatch_add(msgpack_sbuffer *b, const repl_item *it);
/* The items in the batch b holds. */
uint32_t replbatch_count(const msgpack_sbuffer *b);

typedef struct replbatch_reader {
    const uint8_t *at, *end;
    uint32_t left;
} replbatch_reader;

/* Checks the whole batch in data (borrowed: it must outlive r and the items)
 * and positions r at its first item. Returns 0 (*count: its items), or -1
 * when anything in it is malformed (nothing of it may be applied). */
int replbatch_open(replbatch_reader *r, const void *data, size_t len, uint32_t *count);
/* The next item (its strings point into the batch): 1, or 0 at the end. */
int replbatch_next(replbatch_reader *r, repl_item *it);

#define REPLCHUNK_FORMAT 2
#define REPLCHUNK_FIRST 1u
#define REPLCHUNK_LAST 2u
#define REPLCHUNK_SHARD_SET (SHARD_COUNT / 8)
#define REPLCHUNK_HEADER 22u /* without the shard set */

typedef struct replchunk_head {
    uint8_t flags;         /* REPLCHUNK_FIRST, REPLCHUNK_LAST */
    uint64_t snapshot;     /* its first chunk's number */
    uint64_t resume;       /* the last batch it covers */
    const uint8_t *shards; /* FIRST: REPLCHUNK_SHARD_SET bytes (borrowed; in a read chunk: into its bytes); else NULL */
} replchunk_head;

/* Starts a chunk in b (cleared first; b owned by the caller); h borrowed,
 * its shard set copied when FIRST. */
void replchunk_begin(msgpack_sbuffer *b, const replchunk_head *h);
/* Appends it (borrowed, copied into b): a record, not deleted. */
void replchunk_add(msgpack_sbuffer *b, const repl_item *it);
/* The items in the chunk b holds. */
uint32_t replchunk_count(const msgpack_sbuffer *b);
/* True when shard s is in the set (REPLCHUNK_SHARD_SET bytes). */
bool replchunk_has(const uint8_t *shards, uint32_t s);
/* Checks the whole chunk in data (borrowed: it must outlive r, *h and the
 * items) and positions r at its first item. Returns 0 (*h: its header,
 * *count: its items), or -1 when anything in it is malformed (an unknown
 * flag, a deleted item, any length; nothing of it may be applied). */
int replchunk_open(replbatch_reader *r, const void *data, size_t len, replchunk_head *h, uint32_t *count);

#endif
