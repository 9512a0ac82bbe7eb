/* replbatch.c - the replication batch and snapshot chunk codec (see replbatch.h). */
#include "replbatch.h"

#include <string.h>

#include "ops.h"

static void put_be(msgpack_sbuffer *b, uint64_t v, int bytes)
{
    uint8_t out[8];
    for (int i = 0; i < bytes; i++)
        out[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    msgpack_sbuffer_write(b, (const char *)out, (size_t)bytes);
}

static uint64_t get_be(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = (v << 8) | p[i];
    return v;
}

void replbatch_begin(msgpack_sbuffer *b)
{
    b->size = 0;
    uint8_t f = REPLBATCH_FORMAT;
    msgpack_sbuffer_write(b, (const char *)&f, 1);
    put_be(b, 0, 4);
}

uint32_t replbatch_count(const msgpack_sbuffer *b)
{
    return b->size >= REPLBATCH_HEADER ? (uint32_t)get_be((const uint8_t *)b->data + 1, 4) : 0;
}

/* Appends it to b, whose u32 count is at count_at. */
static void add_item(msgpack_sbuffer *b, size_t count_at, const repl_item *it)
{
    uint8_t *hdr = (uint8_t *)b->data + count_at;
    uint32_t count = (uint32_t)get_be(hdr, 4) + 1;
    for (int i = 0; i < 4; i++)
        hdr[i] = (uint8_t)(count >> (8 * (3 - i)));
    put_be(b, it->shard, 4);
    put_be(b, it->epoch, 8);
    put_be(b, (uint64_t)it->version, 8);
    uint8_t flags = it->deleted ? 1 : 0;
    msgpack_sbuffer_write(b, (const char *)&flags, 1);
    size_t data_len = it->deleted ? 0 : it->data.len;
    put_be(b, it->name.len, 4);
    put_be(b, data_len, 4);
    msgpack_sbuffer_write(b, it->name.ptr, it->name.len);
    if (data_len > 0)
        msgpack_sbuffer_write(b, it->data.ptr, data_len);
}

void replbatch_add(msgpack_sbuffer *b, const repl_item *it)
{
    add_item(b, 1, it);
}

/* Reads one item at r->at (bounded by r->end); -1 when malformed. */
static int read_item(replbatch_reader *r, repl_item *it)
{
    size_t left = (size_t)(r->end - r->at);
    if (left < REPLBATCH_ITEM_MIN)
        return -1;
    const uint8_t *p = r->at;
    it->shard = (uint32_t)get_be(p, 4);
    it->epoch = get_be(p + 4, 8);
    it->version = (int64_t)get_be(p + 12, 8);
    uint8_t flags = p[20];
    uint64_t name_len = get_be(p + 21, 4), data_len = get_be(p + 25, 4);
    left -= REPLBATCH_ITEM_MIN;
    if (flags > 1 || name_len == 0 || name_len > OP_NAME_MAX || name_len > left || data_len > left - name_len)
        return -1;
    it->deleted = flags == 1;
    if (it->deleted ? data_len != 0 || it->version != -1 : it->version < 0)
        return -1;
    it->name = (strview){(const char *)p + REPLBATCH_ITEM_MIN, (uint32_t)name_len};
    it->data = (strview){(const char *)p + REPLBATCH_ITEM_MIN + name_len, (uint32_t)data_len};
    r->at = p + REPLBATCH_ITEM_MIN + name_len + data_len;
    return 0;
}

int replbatch_open(replbatch_reader *r, const void *data, size_t len, uint32_t *count)
{
    const uint8_t *p = data;
    if (data == NULL || len < REPLBATCH_HEADER || p[0] != REPLBATCH_FORMAT)
        return -1;
    uint32_t n = (uint32_t)get_be(p + 1, 4);
    if ((uint64_t)n * (REPLBATCH_ITEM_MIN + 1) > len - REPLBATCH_HEADER)
        return -1;
    replbatch_reader check = {.at = p + REPLBATCH_HEADER, .end = p + len, .left = n};
    repl_item it;
    for (uint32_t i = 0; i < n; i++)
        if (read_item(&check, &it) != 0)
            return -1;
    if (check.at != check.end) /* trailing bytes: not a batch this codec wrote */
        return -1;
    *r = (replbatch_reader){.at = p + REPLBATCH_HEADER, .end = p + len, .left = n};
    *count = n;
    return 0;
}

int replbatch_next(replbatch_reader *r, repl_item *it)
{
    if (r->left == 0)
        return 0;
    if (read_item(r, it) != 0) /* cannot happen after replbatch_open */
        return 0;
    r->left--;
    return 1;
}

/* ---------------- snapshot chunks ---------------- */

/* Where a chunk's count is: after the header, and the shard set of a first chunk. */
static size_t chunk_count_at(uint8_t flags)
{
    return REPLCHUNK_HEADER - 4 + ((flags & REPLCHUNK_FIRST) ? REPLCHUNK_SHARD_SET : 0);
}

void replchunk_begin(msgpack_sbuffer *b, const replchunk_head *h)
{
    b->size = 0;
    uint8_t head[2] = {REPLCHUNK_FORMAT, h->flags};
    msgpack_sbuffer_write(b, (const char *)head, 2);
    put_be(b, h->snapshot, 8);
    put_be(b, h->resume, 8);
    if (h->flags & REPLCHUNK_FIRST)
        msgpack_sbuffer_write(b, (const char *)h->shards, REPLCHUNK_SHARD_SET);
    put_be(b, 0, 4);
}

uint32_t replchunk_count(const msgpack_sbuffer *b)
{
    if (b->size < REPLCHUNK_HEADER)
        return 0;
    size_t at = chunk_count_at((uint8_t)b->data[1]);
    return b->size >= at + 4 ? (uint32_t)get_be((const uint8_t *)b->data + at, 4) : 0;
}

void replchunk_add(msgpack_sbuffer *b, const repl_item *it)
{
    add_item(b, chunk_count_at((uint8_t)b->data[1]), it);
}

bool replchunk_has(const uint8_t *shards, uint32_t s)
{
    return s < SHARD_COUNT && ((shards[s / 8] >> (s % 8)) & 1);
}

int replchunk_open(replbatch_reader *r, const void *data, size_t len, replchunk_head *h, uint32_t *count)
{
    const uint8_t *p = data;
    if (data == NULL || len < REPLCHUNK_HEADER || p[0] != REPLCHUNK_FORMAT ||
        (p[1] & ~(REPLCHUNK_FIRST | REPLCHUNK_LAST)) != 0)
        return -1;
    size_t at = chunk_count_at(p[1]);
    if (len < at + 4)
        return -1;
    uint32_t n = (uint32_t)get_be(p + at, 4);
    size_t left = len - at - 4;
    if ((uint64_t)n * (REPLBATCH_ITEM_MIN + 1) > left)
        return -1;
    replbatch_reader check = {.at = p + at + 4, .end = p + len, .left = n};
    repl_item it;
    for (uint32_t i = 0; i < n; i++)
        if (read_item(&check, &it) != 0 || it.deleted)
            return -1;
    if (check.at != check.end)
        return -1;
    *h = (replchunk_head){.flags = p[1], .snapshot = get_be(p + 2, 8), .resume = get_be(p + 10, 8),
                          .shards = (p[1] & REPLCHUNK_FIRST) ? p + 18 : NULL};
    *r = (replbatch_reader){.at = p + at + 4, .end = p + len, .left = n};
    *count = n;
    return 0;
}
