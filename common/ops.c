/* ops.c - encode and decode internal operations (see ops.h, proto/operations.md). */
#include "ops.h"

#include <string.h>

enum op_key {
    KEY_KIND = 0,
    KEY_NAME = 1,
    KEY_SHARD = 2,
    KEY_EPOCH = 3,
    KEY_CORR = 4,
    KEY_BROKER = 5,
    KEY_SESSION = 6,
    KEY_DATA = 7,
    KEY_ERROR = 8,
};

void op_batch_init(op_batch *b)
{
    msgpack_sbuffer_init(&b->buf);
    b->count = 0;
}

void op_batch_reset(op_batch *b)
{
    b->buf.size = 0;
    b->count = 0;
}

void op_batch_destroy(op_batch *b)
{
    msgpack_sbuffer_destroy(&b->buf);
    b->count = 0;
}

void op_encode(msgpack_sbuffer *buf, const op *o)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    size_t n = 1 + (o->name.len > 0) + (o->shard != 0) + (o->epoch != 0) + (o->corr != 0) +
               (o->broker != 0) + (o->session != 0) + o->has_data + (o->error != 0);
    msgpack_pack_map(&pk, n);
    msgpack_pack_uint8(&pk, KEY_KIND);
    msgpack_pack_uint32(&pk, o->kind);
    if (o->name.len > 0) {
        msgpack_pack_uint8(&pk, KEY_NAME);
        msgpack_pack_str_with_body(&pk, o->name.ptr, o->name.len);
    }
    if (o->shard != 0) {
        msgpack_pack_uint8(&pk, KEY_SHARD);
        msgpack_pack_uint32(&pk, o->shard);
    }
    if (o->epoch != 0) {
        msgpack_pack_uint8(&pk, KEY_EPOCH);
        msgpack_pack_uint64(&pk, o->epoch);
    }
    if (o->corr != 0) {
        msgpack_pack_uint8(&pk, KEY_CORR);
        msgpack_pack_uint64(&pk, o->corr);
    }
    if (o->broker != 0) {
        msgpack_pack_uint8(&pk, KEY_BROKER);
        msgpack_pack_uint64(&pk, o->broker);
    }
    if (o->session != 0) {
        msgpack_pack_uint8(&pk, KEY_SESSION);
        msgpack_pack_uint64(&pk, o->session);
    }
    if (o->has_data) {
        msgpack_pack_uint8(&pk, KEY_DATA);
        msgpack_pack_str_with_body(&pk, o->data.ptr, o->data.len);
    }
    if (o->error != 0) {
        msgpack_pack_uint8(&pk, KEY_ERROR);
        msgpack_pack_uint32(&pk, o->error);
    }
}

void op_batch_add(op_batch *b, const op *o)
{
    op_encode(&b->buf, o);
    b->count++;
}

void op_batch_add_encoded(op_batch *b, const void *bytes, size_t len)
{
    msgpack_sbuffer_write(&b->buf, bytes, len);
    b->count++;
}

static size_t put_u64(uint8_t *p, uint64_t v)
{
    p[0] = 0xcf;
    for (int i = 0; i < 8; i++)
        p[1 + i] = (uint8_t)(v >> (56 - 8 * i));
    return 9;
}

size_t op_batch_header(uint8_t out[OP_BATCH_HEADER_MAX], uint64_t origin, uint64_t seq,
                       uint32_t count)
{
    size_t n = 0;
    out[n++] = 0x94; /* fixarray of 4 */
    out[n++] = OPS_FORMAT;
    n += put_u64(out + n, origin);
    n += put_u64(out + n, seq);
    out[n++] = 0xdd; /* array32 */
    for (int i = 0; i < 4; i++)
        out[n++] = (uint8_t)(count >> (24 - 8 * i));
    return n;
}

int op_batch_open(mp_reader *r, const void *data, size_t len, uint64_t *origin, uint64_t *seq,
                  uint32_t *count)
{
    uint32_t n;
    uint64_t format;
    mp_reader_init(r, data, len);
    if (mp_read_array(r, &n) != 0 || n != 4)
        return -1;
    if (mp_read_uint(r, &format) != 0 || format != OPS_FORMAT)
        return -1;
    if (mp_read_uint(r, origin) != 0 || mp_read_uint(r, seq) != 0)
        return -1;
    return mp_read_array(r, count);
}

static int read_u32(mp_reader *r, uint32_t *out)
{
    uint64_t v;
    if (mp_read_uint(r, &v) != 0 || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int read_view(mp_reader *r, strview *out)
{
    return mp_read_bytes(r, &out->ptr, &out->len);
}

int op_decode(mp_reader *r, op *out)
{
    uint32_t n;
    memset(out, 0, sizeof(*out));
    if (mp_read_map(r, &n) != 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t key;
        int rc;
        if (mp_read_uint(r, &key) != 0)
            return -1;
        switch (key) {
        case KEY_KIND: rc = read_u32(r, &out->kind); break;
        case KEY_NAME: rc = read_view(r, &out->name); break;
        case KEY_SHARD: rc = read_u32(r, &out->shard); break;
        case KEY_EPOCH: rc = mp_read_uint(r, &out->epoch); break;
        case KEY_CORR: rc = mp_read_uint(r, &out->corr); break;
        case KEY_BROKER: rc = mp_read_uint(r, &out->broker); break;
        case KEY_SESSION: rc = mp_read_uint(r, &out->session); break;
        case KEY_DATA:
            rc = read_view(r, &out->data);
            out->has_data = true;
            break;
        case KEY_ERROR: rc = read_u32(r, &out->error); break;
        default: rc = mp_skip(r); break; /* newer peers may add fields */
        }
        if (rc != 0)
            return -1;
    }
    if (out->kind == 0 || out->name.len > OP_NAME_MAX)
        return -1;
    return 0;
}

const char *op_kind_name(uint32_t kind)
{
    static const char *const names[OP_KIND_MAX] = {
        [OP_HELLO] = "HELLO",
        [OP_HEARTBEAT] = "HEARTBEAT",
        [OP_EVENT_INTEREST] = "EVENT_INTEREST",
        [OP_EVENT_UNINTEREST] = "EVENT_UNINTEREST",
        [OP_EVENT_EMIT] = "EVENT_EMIT",
        [OP_EVENT_DELIVERY] = "EVENT_DELIVERY",
        [OP_ERROR] = "ERROR",
    };
    return kind < OP_KIND_MAX && names[kind] != NULL ? names[kind] : "UNKNOWN";
}
