/* metacmd.c - encoding and bounds-checked decoding of the metadata group's
 * commands (see metacmd.h). Validation of what the map decides is not here:
 * metamap_apply does it. */
#include "metacmd.h"

#include <string.h>

#include "mpack.h"

/* The array length of each kind's wire form (format, kind, expect + fields). */
static const uint32_t arity[META_KIND_MAX + 1] = {
    [META_ADD_NODE] = 8,   [META_REMOVE_NODE] = 4, [META_SPREAD] = 5, [META_SET_SHARD] = 7,
    [META_PROMOTE] = 6,    [META_SET_INSYNC] = 6,  [META_NODE_DOWN] = 4, [META_NODE_UP] = 4,
    [META_FAIL_NODE] = 4,  [META_SYNC_REPLICA] = 6, [META_ADD_REPLICA] = 5, [META_ADD_COPY] = 6,
    [META_DROP_COPY] = 6,
};

static bool str_ok(const char *s, uint32_t len, uint32_t max)
{
    return len <= max && (len == 0 || (s != NULL && memchr(s, '\0', len) == NULL));
}

static bool ids_ok(const uint16_t *ids, unsigned n)
{
    if (n > META_MAX_COPIES)
        return false;
    for (unsigned i = 0; i < n; i++)
        if (ids[i] == 0)
            return false;
    return true;
}

/* primaries (SHARD_COUNT ids, none 0) as runs [count, id, ...]. */
static void pack_runs(msgpack_packer *pk, const uint16_t *primaries)
{
    uint32_t nruns = 0;
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        nruns += s == 0 || primaries[s] != primaries[s - 1];
    msgpack_pack_array(pk, 2 * nruns);
    for (uint32_t s = 0; s < SHARD_COUNT;) {
        uint32_t e = s + 1;
        while (e < SHARD_COUNT && primaries[e] == primaries[s])
            e++;
        msgpack_pack_uint32(pk, e - s);
        msgpack_pack_uint16(pk, primaries[s]);
        s = e;
    }
}

static void pack_ids(msgpack_packer *pk, const uint16_t *ids, unsigned n)
{
    msgpack_pack_array(pk, n);
    for (unsigned i = 0; i < n; i++)
        msgpack_pack_uint16(pk, ids[i]);
}

int metacmd_encode(const meta_cmd *c, msgpack_sbuffer *out)
{
    if (c->kind < 1 || c->kind > META_KIND_MAX)
        return -1;
    switch (c->kind) {
    case META_ADD_NODE:
        if (c->node == 0 || c->name_len == 0 || !str_ok(c->name, c->name_len, META_MAX_NAME) ||
            !str_ok(c->request, c->request_len, META_MAX_ADDR) ||
            !str_ok(c->delivery, c->delivery_len, META_MAX_ADDR) || !str_ok(c->raft, c->raft_len, META_MAX_ADDR))
            return -1;
        break;
    case META_REMOVE_NODE:
    case META_NODE_DOWN:
    case META_NODE_UP:
    case META_FAIL_NODE:
    case META_PROMOTE:
    case META_ADD_COPY:
    case META_DROP_COPY:
        if (c->node == 0)
            return -1;
        break;
    case META_SPREAD:
        if (c->ncopies == 0 || c->ncopies > META_MAX_COPIES)
            return -1;
        for (uint32_t s = 0; c->primaries != NULL && s < SHARD_COUNT; s++)
            if (c->primaries[s] == 0)
                return -1;
        break;
    case META_SET_SHARD:
        if (c->ncopies == 0 || !ids_ok(c->copies, c->ncopies))
            return -1;
        break;
    case META_SYNC_REPLICA:
        if (c->node == 0 || c->replica == 0 || c->replica == c->node)
            return -1;
        break;
    case META_ADD_REPLICA:
        if (c->node == 0 || c->ncopies < 2 || c->ncopies > META_MAX_COPIES)
            return -1;
        break;
    default:
        break;
    }
    if ((c->kind == META_SET_SHARD || c->kind == META_SET_INSYNC) && !ids_ok(c->insync, c->ninsync))
        return -1;
    if ((c->kind == META_SET_SHARD || c->kind == META_PROMOTE || c->kind == META_SET_INSYNC ||
         c->kind == META_ADD_COPY || c->kind == META_DROP_COPY) &&
        c->shard >= SHARD_COUNT)
        return -1;

    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    /* a SPREAD with its primaries has one field more */
    msgpack_pack_array(&pk, arity[c->kind] + (c->kind == META_SPREAD && c->primaries != NULL));
    msgpack_pack_uint8(&pk, META_FORMAT);
    msgpack_pack_uint8(&pk, (uint8_t)c->kind);
    msgpack_pack_uint64(&pk, c->expect_version);
    switch (c->kind) {
    case META_ADD_NODE:
        msgpack_pack_uint16(&pk, c->node);
        msgpack_pack_str_with_body(&pk, c->name, c->name_len);
        msgpack_pack_str_with_body(&pk, c->request, c->request_len);
        msgpack_pack_str_with_body(&pk, c->delivery, c->delivery_len);
        msgpack_pack_str_with_body(&pk, c->raft, c->raft_len);
        break;
    case META_REMOVE_NODE:
    case META_NODE_DOWN:
    case META_NODE_UP:
    case META_FAIL_NODE:
        msgpack_pack_uint16(&pk, c->node);
        break;
    case META_SPREAD:
        msgpack_pack_uint8(&pk, c->ncopies);
        msgpack_pack_uint64(&pk, c->epoch);
        if (c->primaries != NULL)
            pack_runs(&pk, c->primaries);
        break;
    case META_SET_SHARD:
        msgpack_pack_uint32(&pk, c->shard);
        msgpack_pack_uint64(&pk, c->epoch);
        pack_ids(&pk, c->copies, c->ncopies);
        pack_ids(&pk, c->insync, c->ninsync);
        break;
    case META_PROMOTE:
    case META_ADD_COPY:
    case META_DROP_COPY:
        msgpack_pack_uint32(&pk, c->shard);
        msgpack_pack_uint64(&pk, c->epoch);
        msgpack_pack_uint16(&pk, c->node);
        break;
    case META_SET_INSYNC:
        msgpack_pack_uint32(&pk, c->shard);
        msgpack_pack_uint64(&pk, c->epoch);
        pack_ids(&pk, c->insync, c->ninsync);
        break;
    case META_SYNC_REPLICA:
        msgpack_pack_uint16(&pk, c->node);
        msgpack_pack_uint16(&pk, c->replica);
        msgpack_pack_uint8(&pk, c->in ? 1 : 0);
        break;
    case META_ADD_REPLICA:
        msgpack_pack_uint16(&pk, c->node);
        msgpack_pack_uint8(&pk, c->ncopies);
        break;
    }
    return 0;
}

static int read_id(mp_reader *r, uint16_t *id)
{
    uint64_t v;
    if (mp_read_uint(r, &v) != 0 || v == 0 || v > META_MAX_NODE_ID)
        return -1;
    *id = (uint16_t)v;
    return 0;
}

static int read_shard(mp_reader *r, uint32_t *shard)
{
    uint64_t v;
    if (mp_read_uint(r, &v) != 0 || v >= SHARD_COUNT)
        return -1;
    *shard = (uint32_t)v;
    return 0;
}

static int read_str(mp_reader *r, const char **s, uint32_t *len, uint32_t max)
{
    if (mp_read_bytes(r, s, len) != 0 || !str_ok(*s, *len, max))
        return -1;
    return 0;
}

static int read_ids(mp_reader *r, uint16_t *ids, uint8_t *n)
{
    uint32_t count;
    if (mp_read_array(r, &count) != 0 || count > META_MAX_COPIES)
        return -1;
    for (uint32_t i = 0; i < count; i++)
        if (read_id(r, &ids[i]) != 0)
            return -1;
    *n = (uint8_t)count;
    return 0;
}

/* SPREAD's runs: an even-length array of [count >= 1, id] pairs whose counts
 * add up to SHARD_COUNT exactly. Points c->runs at them. */
static int read_runs(mp_reader *r, meta_cmd *c)
{
    uint32_t n;
    if (mp_read_array(r, &n) != 0 || n == 0 || n % 2 != 0 || n > 2 * SHARD_COUNT)
        return -1;
    const uint8_t *start = r->p;
    uint64_t total = 0, count;
    uint16_t id;
    for (uint32_t i = 0; i < n / 2; i++) {
        if (mp_read_uint(r, &count) != 0 || count == 0 || count > SHARD_COUNT || read_id(r, &id) != 0)
            return -1;
        total += count;
    }
    if (total != SHARD_COUNT)
        return -1;
    c->runs = start;
    c->runs_len = (uint32_t)(r->p - start);
    c->nruns = n / 2;
    return 0;
}

bool metacmd_primaries(const meta_cmd *c, uint16_t *out)
{
    if (c->primaries != NULL) {
        memcpy(out, c->primaries, SHARD_COUNT * sizeof(*out));
        return true;
    }
    if (c->runs == NULL || c->nruns == 0)
        return false;
    mp_reader r;
    mp_reader_init(&r, c->runs, c->runs_len);
    uint32_t s = 0;
    for (uint32_t i = 0; i < c->nruns; i++) { /* checked by read_runs: cannot fail */
        uint64_t count = 0;
        uint16_t id = 0;
        (void)mp_read_uint(&r, &count);
        (void)read_id(&r, &id);
        for (uint64_t k = 0; k < count && s < SHARD_COUNT; k++)
            out[s++] = id;
    }
    return true;
}

int metacmd_decode(meta_cmd *cmd, const void *data, size_t len)
{
    if (len == 0 || len > METACMD_MAX)
        return -1;
    meta_cmd c;
    memset(&c, 0, sizeof(c));
    mp_reader r;
    mp_reader_init(&r, data, len);
    uint32_t n;
    uint64_t format, kind, v;
    if (mp_read_array(&r, &n) != 0 || mp_read_uint(&r, &format) != 0 || format != META_FORMAT ||
        mp_read_uint(&r, &kind) != 0 || kind < 1 || kind > META_KIND_MAX ||
        (n != arity[kind] && !(kind == META_SPREAD && n == arity[kind] + 1)) ||
        mp_read_uint(&r, &c.expect_version) != 0)
        return -1;
    c.kind = (int)kind;
    switch (c.kind) {
    case META_ADD_NODE:
        if (read_id(&r, &c.node) != 0 || read_str(&r, &c.name, &c.name_len, META_MAX_NAME) != 0 ||
            c.name_len == 0 || read_str(&r, &c.request, &c.request_len, META_MAX_ADDR) != 0 ||
            read_str(&r, &c.delivery, &c.delivery_len, META_MAX_ADDR) != 0 ||
            read_str(&r, &c.raft, &c.raft_len, META_MAX_ADDR) != 0)
            return -1;
        break;
    case META_REMOVE_NODE:
    case META_NODE_DOWN:
    case META_NODE_UP:
    case META_FAIL_NODE:
        if (read_id(&r, &c.node) != 0)
            return -1;
        break;
    case META_SPREAD:
        if (mp_read_uint(&r, &v) != 0 || v == 0 || v > META_MAX_COPIES || mp_read_uint(&r, &c.epoch) != 0)
            return -1;
        c.ncopies = (uint8_t)v;
        if (n == arity[META_SPREAD] + 1 && read_runs(&r, &c) != 0)
            return -1;
        break;
    case META_SET_SHARD:
        if (read_shard(&r, &c.shard) != 0 || mp_read_uint(&r, &c.epoch) != 0 ||
            read_ids(&r, c.copies, &c.ncopies) != 0 || c.ncopies == 0 || read_ids(&r, c.insync, &c.ninsync) != 0)
            return -1;
        break;
    case META_PROMOTE:
    case META_ADD_COPY:
    case META_DROP_COPY:
        if (read_shard(&r, &c.shard) != 0 || mp_read_uint(&r, &c.epoch) != 0 || read_id(&r, &c.node) != 0)
            return -1;
        break;
    case META_SET_INSYNC:
        if (read_shard(&r, &c.shard) != 0 || mp_read_uint(&r, &c.epoch) != 0 ||
            read_ids(&r, c.insync, &c.ninsync) != 0)
            return -1;
        break;
    case META_SYNC_REPLICA:
        if (read_id(&r, &c.node) != 0 || read_id(&r, &c.replica) != 0 || c.replica == c.node ||
            mp_read_uint(&r, &v) != 0 || v > 1)
            return -1;
        c.in = v == 1;
        break;
    case META_ADD_REPLICA:
        if (read_id(&r, &c.node) != 0 || mp_read_uint(&r, &v) != 0 || v < 2 || v > META_MAX_COPIES)
            return -1;
        c.ncopies = (uint8_t)v;
        break;
    default:
        return -1;
    }
    if (mp_remaining(&r) != 0)
        return -1;
    *cmd = c;
    return 0;
}
