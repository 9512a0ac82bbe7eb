/* fuzz_ops.c - libFuzzer target for the internal operation codec
 * (common/ops.c over common/mpack.c): what a node decodes from brokers and
 * backends, and a broker from nodes. Not for what the operations mean.
 *
 * The input is read twice: as a batch (op_batch_open, then op_decode for each
 * operation it announces, as node.c and links.c read them: an operation that
 * is refused alone is stepped over, a broken frame ends the walk) and as
 * framed operations back to back. Every operation that decodes must survive a
 * round trip: framed by op_batch_add, op_decode gives the same fields,
 * consumes the frame exactly, and encodes to the same bytes again. A batch
 * rebuilt from what decoded (op_batch_header + the encodings) must decode to
 * as many operations through op_batch_each, which must also agree with the
 * manual walk about which operations decode and whether all of them did. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_ops: %s\n", what);
    abort();
}

static void same_view(strview a, strview b, const char *field)
{
    if (!sv_eq(a, b)) {
        fprintf(stderr, "fuzz_ops: field %s differs after the round trip (%u vs %u bytes)\n", field, a.len, b.len);
        abort();
    }
}

#define SAME(field)                                                                        \
    do {                                                                                   \
        if (a->field != b->field) {                                                        \
            fprintf(stderr, "fuzz_ops: field " #field " differs after the round trip\n"); \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

static void same_op(const op *a, const op *b)
{
    SAME(kind);
    SAME(shard);
    SAME(error);
    SAME(has_data);
    SAME(epoch);
    SAME(corr);
    SAME(broker);
    SAME(session);
    SAME(has_version);
    if (a->has_version)
        SAME(version);
    SAME(action);
    SAME(flags);
    SAME(orig);
    same_view(a->name, b->name, "name");
    if (a->has_data)
        same_view(a->data, b->data, "data");
    same_view(a->path, b->path, "path");
    same_view(a->ref, b->ref, "ref");
    same_view(a->user, b->user, "user");
    same_view(a->meta, b->meta, "meta");
    same_view(a->refs, b->refs, "refs");
}

/* Round trip of one decoded operation; appends its encoding to batch. */
static void round_trip(const op *o, op_batch *batch)
{
    op_batch framed;
    op_batch_init(&framed);
    op_batch_add(&framed, o);
    mp_reader r;
    op again;
    mp_reader_init(&r, framed.buf.data, framed.buf.size);
    if (op_decode(&r, &again) != 0)
        fail("an operation that decoded does not decode once re-encoded");
    if (mp_remaining(&r) != 0)
        fail("re-decoding left bytes of the encoding unread");
    same_op(o, &again);
    msgpack_sbuffer first, second;
    msgpack_sbuffer_init(&first);
    msgpack_sbuffer_init(&second);
    op_encode(&first, o);
    op_encode(&second, &again);
    if (second.size != first.size || memcmp(first.data, second.data, first.size) != 0)
        fail("encoding the re-decoded operation gives other bytes");
    op_batch_add_encoded(batch, first.data, first.size);
    msgpack_sbuffer_destroy(&first);
    msgpack_sbuffer_destroy(&second);
    op_batch_destroy(&framed);
}

static int count_op(void *arg, const op *o)
{
    ++*(uint32_t *)arg;
    return 0;
}

static void as_batch(const uint8_t *data, size_t size)
{
    mp_reader r;
    uint64_t origin, seq;
    uint32_t count;
    uint32_t each = 0;
    int each_rc = op_batch_each(data, size, count_op, &each);
    if (op_batch_open(&r, data, size, &origin, &seq, &count) != 0) {
        if (each_rc == 0)
            fail("op_batch_each accepted a header op_batch_open refuses");
        return;
    }
    op_batch batch;
    op_batch_init(&batch);
    int rc = 0;
    for (uint32_t i = 0; i < count; i++) {
        op o;
        int d = op_decode(&r, &o);
        if (d == -1) { /* a broken frame: nothing after it can be found */
            rc = -1;
            break;
        }
        if (d != 0) { /* refused alone: the walk goes on at the next frame */
            if (d != OP_DECODE_SKIPPED)
                fail("op_decode returned neither 0, OP_DECODE_SKIPPED nor -1");
            rc = -1;
            continue;
        }
        round_trip(&o, &batch);
    }
    if (rc != each_rc || each != batch.count)
        fail("op_batch_each and the operation-by-operation walk disagree");
    /* the operations that decoded, as one batch again */
    uint8_t hdr[OP_BATCH_HEADER_MAX];
    size_t h = op_batch_header(hdr, origin, seq, batch.count);
    size_t len = h + batch.buf.size;
    uint8_t *whole = malloc(len ? len : 1);
    memcpy(whole, hdr, h);
    if (batch.buf.size > 0)
        memcpy(whole + h, batch.buf.data, batch.buf.size);
    uint64_t origin2, seq2;
    uint32_t count2, seen = 0;
    if (op_batch_open(&r, whole, len, &origin2, &seq2, &count2) != 0 || origin2 != origin || seq2 != seq ||
        count2 != batch.count)
        fail("a rebuilt batch header does not read back");
    if (op_batch_each(whole, len, count_op, &seen) != 0 || seen != batch.count)
        fail("a rebuilt batch does not decode whole");
    free(whole);
    op_batch_destroy(&batch);
}

static void as_operations(const uint8_t *data, size_t size)
{
    mp_reader r;
    mp_reader_init(&r, data, size);
    op_batch batch;
    op_batch_init(&batch);
    op o;
    int d;
    while (mp_remaining(&r) > 0 && (d = op_decode(&r, &o)) != -1)
        if (d == 0)
            round_trip(&o, &batch);
    op_batch_destroy(&batch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    as_batch(data, size);
    as_operations(data, size);
    return 0;
}
