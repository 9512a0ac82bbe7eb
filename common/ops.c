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
    KEY_VERSION = 9,
    KEY_ACTION = 10,
    KEY_FLAGS = 11,
    KEY_PATH = 12,
    KEY_REF = 13,
    KEY_ORIG = 14,
    KEY_USER = 15,
    KEY_META = 16,
    KEY_REFS = 17,
    /* event streams: numbered after their op kinds, apart from other topics' keys */
    KEY_OFFSET = 46,
    KEY_HISTORY = 47,
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
               (o->broker != 0) + (o->session != 0) + o->has_data + (o->error != 0) +
               o->has_version + (o->action != 0) + (o->flags != 0) + (o->path.len > 0) +
               (o->ref.len > 0) + (o->orig != 0) + (o->user.len > 0) + (o->meta.len > 0) +
               (o->refs.len > 0) + (o->offset != 0) + (o->history != 0);
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
    if (o->has_version) {
        msgpack_pack_uint8(&pk, KEY_VERSION);
        msgpack_pack_int64(&pk, o->version);
    }
    if (o->action != 0) {
        msgpack_pack_uint8(&pk, KEY_ACTION);
        msgpack_pack_uint32(&pk, o->action);
    }
    if (o->flags != 0) {
        msgpack_pack_uint8(&pk, KEY_FLAGS);
        msgpack_pack_uint32(&pk, o->flags);
    }
    if (o->path.len > 0) {
        msgpack_pack_uint8(&pk, KEY_PATH);
        msgpack_pack_str_with_body(&pk, o->path.ptr, o->path.len);
    }
    if (o->ref.len > 0) {
        msgpack_pack_uint8(&pk, KEY_REF);
        msgpack_pack_str_with_body(&pk, o->ref.ptr, o->ref.len);
    }
    if (o->orig != 0) {
        msgpack_pack_uint8(&pk, KEY_ORIG);
        msgpack_pack_uint32(&pk, o->orig);
    }
    if (o->user.len > 0) {
        msgpack_pack_uint8(&pk, KEY_USER);
        msgpack_pack_str_with_body(&pk, o->user.ptr, o->user.len);
    }
    if (o->meta.len > 0) {
        msgpack_pack_uint8(&pk, KEY_META);
        msgpack_pack_str_with_body(&pk, o->meta.ptr, o->meta.len);
    }
    if (o->refs.len > 0) {
        msgpack_pack_uint8(&pk, KEY_REFS);
        msgpack_pack_str_with_body(&pk, o->refs.ptr, o->refs.len);
    }
    if (o->offset != 0) {
        msgpack_pack_uint8(&pk, KEY_OFFSET);
        msgpack_pack_uint64(&pk, o->offset);
    }
    if (o->history != 0) {
        msgpack_pack_uint8(&pk, KEY_HISTORY);
        msgpack_pack_uint64(&pk, o->history);
    }
}

/* Each operation of a batch travels as a msgpack bin32 holding its map, so a
 * reader can step over one it cannot decode and go on with the next. */
#define FRAME_HEADER 5

static void put_frame_len(char *p, size_t len)
{
    p[0] = (char)0xc6;
    for (int i = 0; i < 4; i++)
        p[1 + i] = (char)(uint8_t)(len >> (24 - 8 * i));
}

void op_batch_add(op_batch *b, const op *o)
{
    static const char placeholder[FRAME_HEADER] = {0};
    size_t at = b->buf.size;
    msgpack_sbuffer_write(&b->buf, placeholder, FRAME_HEADER);
    op_encode(&b->buf, o); /* in place: no copy of the operation */
    put_frame_len(b->buf.data + at, b->buf.size - at - FRAME_HEADER);
    b->count++;
}

void op_batch_add_encoded(op_batch *b, const void *bytes, size_t len)
{
    char hdr[FRAME_HEADER];
    put_frame_len(hdr, len);
    msgpack_sbuffer_write(&b->buf, hdr, FRAME_HEADER);
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

/* Decodes one operation's map from r (the whole of it, or fails). */
static int decode_map(mp_reader *r, op *out)
{
    uint32_t n;
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
        case KEY_VERSION:
            rc = mp_read_int(r, &out->version);
            out->has_version = true;
            break;
        case KEY_ACTION: rc = read_u32(r, &out->action); break;
        case KEY_FLAGS: rc = read_u32(r, &out->flags); break;
        case KEY_PATH: rc = read_view(r, &out->path); break;
        case KEY_REF: rc = read_view(r, &out->ref); break;
        case KEY_ORIG: rc = read_u32(r, &out->orig); break;
        case KEY_USER: rc = read_view(r, &out->user); break;
        case KEY_META: rc = read_view(r, &out->meta); break;
        case KEY_REFS: rc = read_view(r, &out->refs); break;
        case KEY_OFFSET: rc = mp_read_uint(r, &out->offset); break;
        case KEY_HISTORY: rc = mp_read_uint(r, &out->history); break;
        default: rc = mp_skip(r); break; /* newer peers may add fields */
        }
        if (rc != 0)
            return -1;
    }
    return mp_remaining(r) == 0 ? 0 : -1; /* nothing may trail the map in its frame */
}

bool op_fits(const op *o)
{
    return o->kind != 0 && o->name.len <= OP_NAME_MAX && o->path.len <= OP_NAME_MAX &&
           o->ref.len <= OP_NAME_MAX && o->user.len <= OP_NAME_MAX;
}

int op_decode(mp_reader *r, op *out)
{
    memset(out, 0, sizeof(*out));
    const char *frame;
    uint32_t len;
    if (mp_read_bytes(r, &frame, &len) != 0)
        return -1; /* the batch itself is broken: what follows cannot be found */
    mp_reader sub;
    mp_reader_init(&sub, frame, len);
    if (decode_map(&sub, out) != 0 || !op_fits(out))
        return OP_DECODE_SKIPPED; /* this one only: r is at the next operation */
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
        [OP_RECORD_SUBSCRIBE] = "RECORD_SUBSCRIBE",
        [OP_RECORD_UNINTEREST] = "RECORD_UNINTEREST",
        [OP_RECORD_READ] = "RECORD_READ",
        [OP_RECORD_WRITE] = "RECORD_WRITE",
        [OP_RECORD_DELETE] = "RECORD_DELETE",
        [OP_RECORD_NOTIFY] = "RECORD_NOTIFY",
        [OP_RECORD_STATE] = "RECORD_STATE",
        [OP_RECORD_UPDATE] = "RECORD_UPDATE",
        [OP_RECORD_RESULT] = "RECORD_RESULT",
        [OP_RECORD_DELETED] = "RECORD_DELETED",
        [OP_RPC_PROVIDE] = "RPC_PROVIDE",
        [OP_RPC_UNPROVIDE] = "RPC_UNPROVIDE",
        [OP_RPC_REQUEST] = "RPC_REQUEST",
        [OP_RPC_ANSWER] = "RPC_ANSWER",
        [OP_RPC_MESSAGE] = "RPC_MESSAGE",
        [OP_PRESENCE_JOIN] = "PRESENCE_JOIN",
        [OP_PRESENCE_LEAVE] = "PRESENCE_LEAVE",
        [OP_PRESENCE_INTEREST] = "PRESENCE_INTEREST",
        [OP_PRESENCE_UNINTEREST] = "PRESENCE_UNINTEREST",
        [OP_PRESENCE_QUERY] = "PRESENCE_QUERY",
        [OP_PRESENCE_STATE] = "PRESENCE_STATE",
        [OP_PRESENCE_EVENT] = "PRESENCE_EVENT",
        [OP_LISTEN] = "LISTEN",
        [OP_UNLISTEN] = "UNLISTEN",
        [OP_LISTEN_ANSWER] = "LISTEN_ANSWER",
        [OP_LISTEN_MESSAGE] = "LISTEN_MESSAGE",
        [OP_RECORD_PROVIDER] = "RECORD_PROVIDER",
        [OP_MAP_QUERY] = "MAP_QUERY",
        [OP_MAP] = "MAP",
        [OP_BYE] = "BYE",
        [OP_NODE_STATS] = "NODE_STATS",
        [OP_RELOAD] = "RELOAD",
        [OP_VALIDATE_REGISTER] = "VALIDATE_REGISTER",
        [OP_VALIDATE_UNREGISTER] = "VALIDATE_UNREGISTER",
        [OP_VALIDATE_REQUEST] = "VALIDATE_REQUEST",
        [OP_VALIDATE_ANSWER] = "VALIDATE_ANSWER",
        [OP_CHANGESET] = "CHANGESET",
        [OP_CHANGESET_RESULT] = "CHANGESET_RESULT",
        [OP_STREAM_SUBSCRIBE] = "STREAM_SUBSCRIBE",
        [OP_STREAM_STATE] = "STREAM_STATE",
        [OP_REPL_BATCH] = "REPL_BATCH",
        [OP_REPL_ACK] = "REPL_ACK",
        [OP_REPL_RESYNC] = "REPL_RESYNC",
        [OP_CLUSTER_STATUS] = "CLUSTER_STATUS",
        [OP_META_HEARTBEAT] = "META_HEARTBEAT",
        [OP_META_GRANT] = "META_GRANT",
        [OP_REPL_SNAPSHOT] = "REPL_SNAPSHOT",
        [OP_REPL_SNAPSHOT_ACK] = "REPL_SNAPSHOT_ACK",
        [OP_CLUSTER_PROMOTE] = "CLUSTER_PROMOTE",
        [OP_META_PROPOSE] = "META_PROPOSE",
    };
    return kind < OP_KIND_MAX && names[kind] != NULL ? names[kind] : "UNKNOWN";
}

int op_batch_each(const void *data, size_t len, int (*fn)(void *arg, const op *o), void *arg)
{
    mp_reader r;
    uint64_t origin, seq;
    uint32_t count;
    if (op_batch_open(&r, data, len, &origin, &seq, &count) != 0)
        return -1;
    int rc = 0;
    for (uint32_t i = 0; i < count; i++) {
        op o;
        int d = op_decode(&r, &o);
        if (d == -1)
            return -1;
        if (d != 0) {
            rc = -1; /* skipped; the others still count */
            continue;
        }
        if (fn(arg, &o) != 0)
            break;
    }
    return rc;
}

void op_members_encode(msgpack_sbuffer *buf, const op *members, uint32_t n)
{
    uint8_t hdr[5] = {0xdd, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n}; /* array32 */
    msgpack_sbuffer_write(buf, (const char *)hdr, sizeof(hdr));
    op_batch b = {.buf = *buf};
    for (uint32_t i = 0; i < n; i++)
        op_batch_add(&b, &members[i]);
    *buf = b.buf;
}

int op_members_open(mp_reader *r, strview data, uint32_t *count)
{
    mp_reader_init(r, data.ptr, data.len);
    return mp_read_array(r, count);
}
