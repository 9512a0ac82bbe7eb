/* mpack.h - a bounds-checked msgpack reader over a byte buffer, zero-copy.
 *
 * msgpack-c's unpacker trusts declared sizes (a 5-byte map32 header made it
 * reserve gigabytes, DEPENDENCIES.md pitfall 10) and copies into a zone. Input
 * from the network is read with this cursor instead: every declared length or
 * count is checked against the bytes that remain before anything is used, and
 * strings are returned as views into the caller's buffer. Writing uses
 * msgpack-c's packer (ops.c). */
#ifndef EDDY_MPACK_H
#define EDDY_MPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mp_reader {
    const uint8_t *p;
    const uint8_t *end;
} mp_reader;

static inline void mp_reader_init(mp_reader *r, const void *data, size_t len)
{
    r->p = data;
    r->end = r->p + len;
}
static inline size_t mp_remaining(const mp_reader *r)
{
    return (size_t)(r->end - r->p);
}

/* Each returns 0 on success and -1 on a type mismatch or truncated input; on
 * failure the cursor position is unspecified and the reader must be abandoned. */
int mp_read_array(mp_reader *r, uint32_t *count);
int mp_read_map(mp_reader *r, uint32_t *count);
int mp_read_uint(mp_reader *r, uint64_t *out);
int mp_read_int(mp_reader *r, int64_t *out);
int mp_read_bool(mp_reader *r, bool *out);
/* Accepts str and bin; *ptr points into the reader's buffer (not NUL-terminated). */
int mp_read_bytes(mp_reader *r, const char **ptr, uint32_t *len);
bool mp_peek_nil(const mp_reader *r);
/* Skips one value of any type, nesting at most 32 deep. */
int mp_skip(mp_reader *r);

#endif
