/* metafsm.c - the shard map (common/metamap.h) as libraft's state machine
 * (struct raft_fsm, version 1): apply decodes and applies one command,
 * snapshot encodes the whole map, restore decodes and validates one before it
 * replaces the map. A refused command is not an error for Raft: apply answers
 * 0 (an error would stop the log from being applied) and hands the refusal to
 * the proposer as its result, the same on every node. See metaraft.h. */
#include "metaraft.h"

#include <msgpack.h>
#include <raft.h>
#include <string.h>

#include "mem.h"
#include "mpack.h"

/* libraft 0.15 writes log entries whose length is not a multiple of 8 so
 * that the closed segment does not load again ("entries count in preamble is
 * too high", canonical/raft#304, reproduced here by test_metaraft's restart).
 * Every entry is therefore the command followed by 0-7 zero bytes, and apply
 * takes the command back as the one msgpack value at the front. */
#define ENTRY_ALIGN 8

int meta_fsm_entry(const void *cmd, size_t len, struct raft_buffer *out)
{
    size_t padded = (len + ENTRY_ALIGN - 1) / ENTRY_ALIGN * ENTRY_ALIGN;
    out->base = raft_malloc(padded);
    if (out->base == NULL)
        return RAFT_NOMEM;
    memcpy(out->base, cmd, len);
    memset((char *)out->base + len, 0, padded - len);
    out->len = padded;
    return 0;
}

/* The command's length inside an entry, or 0 when the entry is not one
 * msgpack value followed by less than ENTRY_ALIGN zero bytes. */
static size_t entry_command_len(const struct raft_buffer *buf)
{
    mp_reader r;
    mp_reader_init(&r, buf->base, buf->len);
    if (buf->len == 0 || mp_skip(&r) != 0 || mp_remaining(&r) >= ENTRY_ALIGN)
        return 0;
    for (const uint8_t *p = r.p; p < r.end; p++)
        if (*p != 0)
            return 0;
    return buf->len - mp_remaining(&r);
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    meta_fsm *st = fsm->data;
    size_t len = entry_command_len(buf);
    st->last_status = len ? (int)metamap_apply_bytes(st->map, buf->base, len) : META_EMALFORMED;
    if (st->last_status == META_OK) {
        st->applied++;
        if (st->on_change)
            st->on_change(st->arg, st->map);
    } else
        st->refused++;
    *result = &st->last_status;
    return 0;
}

/* Ownership (libraft 0.15, fsm version 1): bufs and each base are raft_malloc'd
 * here and freed by raft once the snapshot is stored. */
static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    meta_fsm *st = fsm->data;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    metamap_encode(st->map, &sb);
    struct raft_buffer *b = raft_malloc(sizeof(*b));
    void *base = b != NULL ? raft_malloc(sb.size) : NULL;
    if (base == NULL) {
        raft_free(b);
        msgpack_sbuffer_destroy(&sb);
        return RAFT_NOMEM;
    }
    memcpy(base, sb.data, sb.size);
    b->base = base;
    b->len = sb.size;
    msgpack_sbuffer_destroy(&sb);
    *bufs = b;
    *n_bufs = 1;
    return 0;
}

/* On success the buffer is ours (raft_free); on failure raft keeps it. */
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    meta_fsm *st = fsm->data;
    if (metamap_decode(st->map, buf->base, buf->len) != 0)
        return RAFT_MALFORMED;
    raft_free(buf->base);
    if (st->on_change)
        st->on_change(st->arg, st->map);
    return 0;
}

void meta_fsm_init(struct raft_fsm *fsm, meta_fsm *state)
{
    memset(fsm, 0, sizeof(*fsm));
    state->map = xmalloc(sizeof(*state->map));
    metamap_init(state->map);
    state->last_status = 0;
    state->applied = state->refused = 0;
    state->on_change = NULL; /* the caller sets on_change and arg after this */
    state->arg = NULL;
    fsm->version = 1;
    fsm->data = state;
    fsm->apply = fsm_apply;
    fsm->snapshot = fsm_snapshot;
    fsm->restore = fsm_restore;
}

void meta_fsm_close(meta_fsm *state)
{
    if (state == NULL)
        return;
    xfree(state->map);
    state->map = NULL;
}

int meta_fsm_result(const void *result)
{
    return result != NULL ? *(const int *)result : META_EMALFORMED;
}
