/* mpack.c - bounds-checked msgpack reader (see mpack.h). */
#include "mpack.h"

#include <string.h>

static int take(mp_reader *r, size_t n, const uint8_t **out)
{
    if (mp_remaining(r) < n)
        return -1;
    *out = r->p;
    r->p += n;
    return 0;
}

static uint64_t be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Reads a big-endian length of n bytes. */
static int read_len(mp_reader *r, size_t n, uint32_t *out)
{
    const uint8_t *p;
    if (take(r, n, &p) != 0)
        return -1;
    *out = (uint32_t)be(p, n);
    return 0;
}

/* Container counts: each element needs at least one byte, so a count larger
 * than what remains is a lie and is rejected before anyone allocates for it. */
static int read_container(mp_reader *r, uint8_t fix_base, uint8_t fix_mask, uint8_t c16,
                          uint8_t c32, uint32_t per_elem, uint32_t *count)
{
    const uint8_t *p;
    if (take(r, 1, &p) != 0)
        return -1;
    uint8_t b = p[0];
    if ((b & ~fix_mask) == fix_base)
        *count = b & fix_mask;
    else if (b == c16) {
        if (read_len(r, 2, count) != 0)
            return -1;
    } else if (b == c32) {
        if (read_len(r, 4, count) != 0)
            return -1;
    } else
        return -1;
    if ((uint64_t)*count * per_elem > mp_remaining(r))
        return -1;
    return 0;
}

int mp_read_array(mp_reader *r, uint32_t *count)
{
    return read_container(r, 0x90, 0x0f, 0xdc, 0xdd, 1, count);
}

int mp_read_map(mp_reader *r, uint32_t *count)
{
    return read_container(r, 0x80, 0x0f, 0xde, 0xdf, 2, count);
}

int mp_read_uint(mp_reader *r, uint64_t *out)
{
    const uint8_t *p;
    if (take(r, 1, &p) != 0)
        return -1;
    uint8_t b = p[0];
    if (b <= 0x7f) {
        *out = b;
        return 0;
    }
    size_t n;
    switch (b) {
    case 0xcc: n = 1; break;
    case 0xcd: n = 2; break;
    case 0xce: n = 4; break;
    case 0xcf: n = 8; break;
    default: return -1;
    }
    if (take(r, n, &p) != 0)
        return -1;
    *out = be(p, n);
    return 0;
}

int mp_read_int(mp_reader *r, int64_t *out)
{
    if (mp_remaining(r) < 1)
        return -1;
    uint8_t b = r->p[0];
    if (b >= 0xe0) {
        r->p++;
        *out = (int8_t)b;
        return 0;
    }
    size_t n;
    switch (b) {
    case 0xd0: n = 1; break;
    case 0xd1: n = 2; break;
    case 0xd2: n = 4; break;
    case 0xd3: n = 8; break;
    default: {
        uint64_t u;
        if (mp_read_uint(r, &u) != 0 || u > INT64_MAX)
            return -1;
        *out = (int64_t)u;
        return 0;
    }
    }
    const uint8_t *p;
    r->p++;
    if (take(r, n, &p) != 0)
        return -1;
    uint64_t u = be(p, n);
    if (n < 8 && (u >> (n * 8 - 1)))
        u |= ~0ULL << (n * 8); /* sign-extend */
    memcpy(out, &u, sizeof(u));
    return 0;
}

int mp_read_bool(mp_reader *r, bool *out)
{
    const uint8_t *p;
    if (take(r, 1, &p) != 0 || (p[0] != 0xc2 && p[0] != 0xc3))
        return -1;
    *out = p[0] == 0xc3;
    return 0;
}

int mp_read_bytes(mp_reader *r, const char **ptr, uint32_t *len)
{
    const uint8_t *p;
    if (take(r, 1, &p) != 0)
        return -1;
    uint8_t b = p[0];
    if ((b & 0xe0) == 0xa0)
        *len = b & 0x1f;
    else if (b == 0xd9 || b == 0xc4) {
        if (read_len(r, 1, len) != 0)
            return -1;
    } else if (b == 0xda || b == 0xc5) {
        if (read_len(r, 2, len) != 0)
            return -1;
    } else if (b == 0xdb || b == 0xc6) {
        if (read_len(r, 4, len) != 0)
            return -1;
    } else
        return -1;
    if (take(r, *len, &p) != 0)
        return -1;
    *ptr = (const char *)p;
    return 0;
}

bool mp_peek_nil(const mp_reader *r)
{
    return mp_remaining(r) > 0 && r->p[0] == 0xc0;
}

static int skip_depth(mp_reader *r, int depth)
{
    if (depth > 32 || mp_remaining(r) < 1)
        return -1;
    uint8_t b = r->p[0];
    const uint8_t *p;
    uint32_t n;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        r->p++;
        return 0;
    }
    if ((b & 0xf0) == 0x90 || b == 0xdc || b == 0xdd) {
        if (mp_read_array(r, &n) != 0)
            return -1;
        for (uint32_t i = 0; i < n; i++)
            if (skip_depth(r, depth + 1) != 0)
                return -1;
        return 0;
    }
    if ((b & 0xf0) == 0x80 || b == 0xde || b == 0xdf) {
        if (mp_read_map(r, &n) != 0)
            return -1;
        for (uint32_t i = 0; i < 2 * n; i++)
            if (skip_depth(r, depth + 1) != 0)
                return -1;
        return 0;
    }
    if ((b & 0xe0) == 0xa0 || (b >= 0xc4 && b <= 0xc6) || (b >= 0xd9 && b <= 0xdb)) {
        const char *s;
        return mp_read_bytes(r, &s, &n);
    }
    size_t fixed;
    switch (b) {
    case 0xcc: case 0xd0: fixed = 1; break;
    case 0xcd: case 0xd1: fixed = 2; break;
    case 0xca: case 0xce: case 0xd2: fixed = 4; break;
    case 0xcb: case 0xcf: case 0xd3: fixed = 8; break;
    case 0xd4: fixed = 2; break;
    case 0xd5: fixed = 3; break;
    case 0xd6: fixed = 5; break;
    case 0xd7: fixed = 9; break;
    case 0xd8: fixed = 17; break;
    case 0xc7: case 0xc8: case 0xc9: {
        size_t lenbytes = b == 0xc7 ? 1 : b == 0xc8 ? 2 : 4;
        r->p++;
        if (read_len(r, lenbytes, &n) != 0)
            return -1;
        return take(r, (size_t)n + 1, &p);
    }
    default: return -1; /* 0xc1 is never used */
    }
    r->p++;
    return take(r, fixed, &p);
}

int mp_skip(mp_reader *r)
{
    return skip_depth(r, 0);
}
