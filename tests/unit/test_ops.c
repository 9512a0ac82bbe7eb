/* test_ops.c - the internal operation codec and the bounded msgpack reader:
 * round trips, batch framing, and malformed input (truncation at every byte,
 * lying length headers, wrong types, random bytes) rejected without crashing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ops.h"

static void encode_batch(msgpack_sbuffer *out, const op *ops, int n, uint64_t origin, uint64_t seq)
{
    op_batch b;
    op_batch_init(&b);
    for (int i = 0; i < n; i++)
        op_batch_add(&b, &ops[i]);
    uint8_t hdr[OP_BATCH_HEADER_MAX];
    size_t h = op_batch_header(hdr, origin, seq, b.count);
    msgpack_sbuffer_init(out);
    msgpack_sbuffer_write(out, (const char *)hdr, h);
    msgpack_sbuffer_write(out, b.buf.data, b.buf.size);
    op_batch_destroy(&b);
}

static void test_round_trip(void **state)
{
    (void)state;
    op in[3] = {
        {.kind = OP_EVENT_EMIT, .name = {"chat/1", 6}, .shard = 4095, .epoch = 7,
         .session = UINT64_MAX, .has_data = true, .data = {"{\"a\":1}", 7}},
        {.kind = OP_RECORD_WRITE, .name = {"x", 1}, .corr = 42, .has_version = true,
         .version = -1, .action = 19, .flags = OP_FLAG_WRITE_ACK, .path = {"a.b[2]", 6},
         .ref = {"12", 2}, .orig = 18},
        {.kind = OP_EVENT_DELIVERY, .name = {"e", 1}, .has_data = true, .data = {"", 0},
         .broker = 0x1122334455667788ULL, .error = 3},
    };
    msgpack_sbuffer buf;
    encode_batch(&buf, in, 3, 99, 12345);
    mp_reader r;
    uint64_t origin, seq;
    uint32_t count;
    assert_int_equal(op_batch_open(&r, buf.data, buf.size, &origin, &seq, &count), 0);
    assert_int_equal(origin, 99);
    assert_int_equal(seq, 12345);
    assert_int_equal(count, 3);
    for (int i = 0; i < 3; i++) {
        op o;
        assert_int_equal(op_decode(&r, &o), 0);
        assert_int_equal(o.kind, in[i].kind);
        assert_int_equal(o.shard, in[i].shard);
        assert_int_equal(o.epoch, in[i].epoch);
        assert_int_equal(o.corr, in[i].corr);
        assert_int_equal(o.broker, in[i].broker);
        assert_int_equal(o.session, in[i].session);
        assert_int_equal(o.error, in[i].error);
        assert_int_equal(o.name.len, in[i].name.len);
        assert_memory_equal(o.name.ptr, in[i].name.ptr, o.name.len);
        assert_int_equal(o.has_version, in[i].has_version);
        assert_true(o.version == in[i].version);
        assert_int_equal(o.action, in[i].action);
        assert_int_equal(o.flags, in[i].flags);
        assert_int_equal(o.orig, in[i].orig);
        assert_int_equal(o.path.len, in[i].path.len);
        assert_memory_equal(o.path.ptr, in[i].path.ptr, o.path.len);
        assert_int_equal(o.ref.len, in[i].ref.len);
        assert_memory_equal(o.ref.ptr, in[i].ref.ptr, o.ref.len);
        assert_int_equal(o.has_data, in[i].has_data);
        if (o.has_data) {
            assert_int_equal(o.data.len, in[i].data.len);
            assert_memory_equal(o.data.ptr, in[i].data.ptr, o.data.len);
        }
    }
    assert_int_equal(mp_remaining(&r), 0);
    msgpack_sbuffer_destroy(&buf);
}

/* Every strict prefix of a valid batch must be rejected somewhere, never read past the end. */
static int count_kinds(void *arg, const op *o)
{
    uint32_t *seen = arg;
    seen[0]++;
    seen[1] += o->kind;
    return seen[0] == seen[2]; /* stop after seen[2] operations (0: never) */
}

/* op_batch_each passes every operation in order, stops when asked, and says
 * when the batch is malformed (after passing what came before). */
static void test_batch_each(void **state)
{
    (void)state;
    op in[3] = {{.kind = OP_EVENT_EMIT, .name = {"a", 1}}, {.kind = OP_HEARTBEAT}, {.kind = OP_BYE}};
    msgpack_sbuffer buf;
    encode_batch(&buf, in, 3, 9, 1);
    uint32_t seen[3] = {0, 0, 0};
    assert_int_equal(op_batch_each(buf.data, buf.size, count_kinds, seen), 0);
    assert_int_equal(seen[0], 3);
    assert_int_equal(seen[1], OP_EVENT_EMIT + OP_HEARTBEAT + OP_BYE);
    uint32_t first[3] = {0, 0, 1};
    assert_int_equal(op_batch_each(buf.data, buf.size, count_kinds, first), 0);
    assert_int_equal(first[0], 1);
    uint32_t cut[3] = {0, 0, 0};
    assert_int_equal(op_batch_each(buf.data, buf.size - 1, count_kinds, cut), -1); /* the last one is cut */
    assert_int_equal(cut[0], 2);
    assert_int_equal(op_batch_each(buf.data, 2, count_kinds, cut), -1); /* no header */
    msgpack_sbuffer_destroy(&buf);
}

static void test_truncation(void **state)
{
    (void)state;
    op in[2] = {
        {.kind = OP_EVENT_EMIT, .name = {"chat/1", 6}, .has_data = true, .data = {"[1,2,3]", 7}},
        {.kind = OP_EVENT_UNINTEREST, .name = {"chat/2", 6}, .epoch = 1},
    };
    msgpack_sbuffer buf;
    encode_batch(&buf, in, 2, 1, 1);
    for (size_t cut = 0; cut < buf.size; cut++) {
        uint8_t *copy = malloc(cut + 1); /* exact-size heap copy: ASan sees any overread */
        memcpy(copy, buf.data, cut);
        mp_reader r;
        uint64_t origin, seq;
        uint32_t count;
        int ok = op_batch_open(&r, copy, cut, &origin, &seq, &count) == 0;
        for (uint32_t i = 0; ok && i < count; i++) {
            op o;
            ok = op_decode(&r, &o) == 0;
        }
        assert_false(ok);
        free(copy);
    }
    msgpack_sbuffer_destroy(&buf);
}

static void test_lying_headers(void **state)
{
    (void)state;
    mp_reader r;
    uint32_t n;
    /* map32 claiming 4 billion pairs in 5 bytes (the msgpack-c 8 GB reservation) */
    const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    mp_reader_init(&r, map32, sizeof(map32));
    assert_int_equal(mp_read_map(&r, &n), -1);
    const uint8_t arr32[] = {0xdd, 0x00, 0x00, 0x00, 0x03, 0x01, 0x02};
    mp_reader_init(&r, arr32, sizeof(arr32));
    assert_int_equal(mp_read_array(&r, &n), -1);
    /* str32 longer than the buffer */
    const uint8_t str32[] = {0xdb, 0x00, 0x01, 0x00, 0x00, 'a'};
    const char *p;
    mp_reader_init(&r, str32, sizeof(str32));
    assert_int_equal(mp_read_bytes(&r, &p, &n), -1);
    /* deep nesting is refused by skip */
    uint8_t deep[100];
    memset(deep, 0x91, sizeof(deep)); /* fixarray(1) inside fixarray(1) ... */
    deep[99] = 0x01;
    mp_reader_init(&r, deep, sizeof(deep));
    assert_int_equal(mp_skip(&r), -1);
}

/* An empty buffer and a packer writing into it. */
static void start_packing(msgpack_sbuffer *buf, msgpack_packer *pk)
{
    msgpack_sbuffer_init(buf);
    msgpack_packer_init(pk, buf, msgpack_sbuffer_write);
}

/* Decodes the raw operation map in buf as the one operation of a frame. */
static int decode_raw(const msgpack_sbuffer *buf, op *o)
{
    op_batch b;
    op_batch_init(&b);
    op_batch_add_encoded(&b, buf->data, buf->size);
    mp_reader r;
    mp_reader_init(&r, b.buf.data, b.buf.size);
    int rc = op_decode(&r, o);
    if (rc != -1)
        assert_int_equal(mp_remaining(&r), 0); /* the reader is past the frame either way */
    op_batch_destroy(&b);
    return rc;
}

static void test_wrong_types_and_limits(void **state)
{
    (void)state;
    msgpack_sbuffer buf;
    msgpack_packer pk;
    start_packing(&buf, &pk);
    /* kind as a string */
    msgpack_pack_map(&pk, 1);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_str_with_body(&pk, "x", 1);
    op o;
    assert_int_equal(decode_raw(&buf, &o), OP_DECODE_SKIPPED);
    /* no kind at all */
    buf.size = 0;
    msgpack_pack_map(&pk, 0);
    assert_int_equal(decode_raw(&buf, &o), OP_DECODE_SKIPPED);
    /* a name over OP_NAME_MAX */
    buf.size = 0;
    char *big = calloc(1, OP_NAME_MAX + 1);
    memset(big, 'n', OP_NAME_MAX + 1);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_uint8(&pk, OP_EVENT_EMIT);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_str_with_body(&pk, big, OP_NAME_MAX + 1);
    assert_int_equal(decode_raw(&buf, &o), OP_DECODE_SKIPPED);
    free(big);
    /* unknown keys of any type are skipped */
    buf.size = 0;
    msgpack_pack_map(&pk, 3);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_uint8(&pk, OP_HEARTBEAT);
    msgpack_pack_uint8(&pk, 77);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_double(&pk, 1.5);
    msgpack_pack_nil(&pk);
    msgpack_pack_uint8(&pk, 78);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_true(&pk);
    msgpack_pack_int64(&pk, -5);
    assert_int_equal(decode_raw(&buf, &o), 0);
    assert_int_equal(o.kind, OP_HEARTBEAT);
    /* a batch of an unknown format version */
    uint8_t hdr[OP_BATCH_HEADER_MAX];
    size_t h = op_batch_header(hdr, 1, 1, 0);
    hdr[1] = 9;
    uint64_t origin, seq;
    uint32_t count;
    mp_reader r;
    assert_int_equal(op_batch_open(&r, hdr, h, &origin, &seq, &count), -1);
    msgpack_sbuffer_destroy(&buf);
}

/* One operation over its limits between two good ones: the reader skips
 * exactly it (the reproducer: a 4097-byte correlation id next to
 * other clients' operations in one batch). */
static void test_bad_operation_fails_alone(void **state)
{
    (void)state;
    char *big = calloc(1, OP_NAME_MAX + 1);
    memset(big, 'c', OP_NAME_MAX + 1);
    op in[3] = {
        {.kind = OP_EVENT_INTEREST, .name = {"a", 1}},
        {.kind = OP_RECORD_WRITE, .name = {"r", 1}, .session = 7, .ref = {big, OP_NAME_MAX + 1}},
        {.kind = OP_EVENT_EMIT, .name = {"b", 1}},
    };
    assert_false(op_fits(&in[1]));
    msgpack_sbuffer buf;
    encode_batch(&buf, in, 3, 1, 1);
    mp_reader r;
    uint64_t origin, seq;
    uint32_t count;
    assert_int_equal(op_batch_open(&r, buf.data, buf.size, &origin, &seq, &count), 0);
    op o;
    assert_int_equal(op_decode(&r, &o), 0);
    assert_int_equal(o.kind, OP_EVENT_INTEREST);
    assert_int_equal(op_decode(&r, &o), OP_DECODE_SKIPPED);
    assert_int_equal(o.kind, OP_RECORD_WRITE); /* what could be read, for the error answer */
    assert_int_equal(o.session, 7);
    assert_int_equal(op_decode(&r, &o), 0);
    assert_int_equal(o.kind, OP_EVENT_EMIT);
    assert_int_equal(mp_remaining(&r), 0);
    msgpack_sbuffer_destroy(&buf);
    free(big);
}

static void test_ints(void **state)
{
    (void)state;
    msgpack_sbuffer buf;
    msgpack_packer pk;
    start_packing(&buf, &pk);
    const int64_t vals[] = {0, 1, -1, -32, -33, 127, 128, -128, -129, 65535, -32769, INT32_MIN,
                            INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
        msgpack_pack_int64(&pk, vals[i]);
    mp_reader r;
    mp_reader_init(&r, buf.data, buf.size);
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        int64_t v;
        assert_int_equal(mp_read_int(&r, &v), 0);
        assert_true(v == vals[i]);
    }
    msgpack_sbuffer_destroy(&buf);
}

/* Random bytes: never a crash, an overread (under ASan) or a hang. */
static void test_random_bytes(void **state)
{
    (void)state;
    srand(12345);
    int decoded = 0;
    op valid[3] = {{.kind = OP_EVENT_EMIT, .name = {"chat/1", 6}, .has_data = true, .data = {"[1]", 3}},
                   {.kind = OP_RECORD_WRITE, .name = {"r", 1}, .corr = 5, .ref = {"12", 2}, .session = 9},
                   {.kind = OP_HEARTBEAT, .has_version = true, .version = 3}};
    msgpack_sbuffer good;
    encode_batch(&good, valid, 3, 1, 1);
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = iter % 3 == 2 ? good.size : (size_t)(rand() % 64);
        uint8_t *data = malloc(len + 1);
        for (size_t i = 0; i < len; i++)
            data[i] = (uint8_t)rand();
        if (len > 0 && iter % 3 == 0)
            data[0] = 0x94; /* look like a batch */
        if (iter % 3 == 2) { /* a valid batch with a few bytes changed */
            memcpy(data, good.data, len);
            for (int k = rand() % 3; k >= 0; k--)
                data[rand() % len] = (uint8_t)rand();
        }
        mp_reader r;
        uint64_t origin, seq;
        uint32_t count;
        if (op_batch_open(&r, data, len, &origin, &seq, &count) == 0)
            for (uint32_t i = 0; i < count; i++) {
                op o;
                size_t before = mp_remaining(&r);
                int rc = op_decode(&r, &o);
                if (rc == -1)
                    break;
                /* a decoded or skipped operation consumed its frame, inside the buffer */
                assert_true(mp_remaining(&r) < before);
                if (rc == 0) { /* and what decodes re-encodes to the same operation */
                    op_batch again;
                    op_batch_init(&again);
                    op_batch_add(&again, &o);
                    mp_reader r2;
                    mp_reader_init(&r2, again.buf.data, again.buf.size);
                    op o2;
                    assert_int_equal(op_decode(&r2, &o2), 0);
                    assert_int_equal(o2.kind, o.kind);
                    assert_int_equal(o2.name.len, o.name.len);
                    assert_true(o2.corr == o.corr && o2.session == o.session);
                    op_batch_destroy(&again);
                    decoded++;
                }
            }
        mp_reader_init(&r, data, len);
        while (mp_remaining(&r) > 0 && mp_skip(&r) == 0)
            ;
        free(data);
    }
    msgpack_sbuffer_destroy(&good);
    assert_true(decoded > 1000); /* the changed valid batches mostly still decode, op by op */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_batch_each),   cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_lying_headers), cmocka_unit_test(test_wrong_types_and_limits),
        cmocka_unit_test(test_ints),         cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_bad_operation_fails_alone),
    };
    return cmocka_run_group_tests_name("ops", tests, NULL, NULL);
}
