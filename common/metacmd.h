/* metacmd.h - the commands of the metadata group, and their wire form.
 *
 * A command is one msgpack array, small and bounded (at most METACMD_MAX
 * bytes): [META_FORMAT, kind, expect_version, fields...], where
 * expect_version is the map version the proposer computed the command
 * against (0: any), and the fields by kind are:
 *   ADD_NODE     id, name, request, delivery, raft   (strings)
 *   REMOVE_NODE  id
 *   SPREAD       copies, epoch[, primaries]
 *   SET_SHARD    shard, epoch, [copy ids], [in-sync ids]
 *   PROMOTE      shard, epoch (the shard's current one), new primary id
 *   SET_INSYNC   shard, epoch (the shard's current one), [in-sync ids]
 *   NODE_DOWN    id
 *   NODE_UP      id
 *   FAIL_NODE    id   (the leader's failure detector: node/meta.c)
 *   SYNC_REPLICA primary id, replica id, in (0 or 1): the in-sync bit of the
 *                replica's copy in every shard whose primary is `primary`
 *                (a primary's replication, node/replicate.c: FAILOVER rule 5;
 *                proposed with expect_version, so it applies only to the map
 *                the primary decided on)
 *   ADD_REPLICA  id, copies: the member becomes an out-of-sync replica (last
 *                in the copy list) of every assigned shard with fewer than
 *                `copies` copies that it holds none of (the leader's
 *                re-replication after a rejoin, node/meta.c; the primaries
 *                catch it up by snapshot and propose it in with SYNC_REPLICA)
 *   ADD_COPY     shard, epoch (the shard's current one), id: the member (up,
 *                not a copy yet) becomes an out-of-sync replica of that shard,
 *                last in its copy list (node/promote.c's rebalance: a shard's
 *                home member back in its copies)
 *   DROP_COPY    shard, epoch (the shard's current one), id: the replica (not
 *                the primary) leaves the shard's copies (rebalance: a copy
 *                the static layout does not have, once it has all its own in sync)
 * SPREAD's primaries, when present, are the shards' primaries in shard order
 * as runs: a flat array [count, id, count, id, ...], each count >= 1, the
 * counts adding up to SHARD_COUNT (without them: an even spread, see
 * metamap_spread). metacmd_decode checks the shape, every length and range (ids 1..65535,
 * shard < SHARD_COUNT, lists at most META_MAX_COPIES, strings within their
 * bound and without NUL bytes); what depends on the map (does the member
 * exist, is the epoch right) is metamap_apply's to check. Written by the
 * proposer (node/metaraft.c's callers), read on every member at apply. */
#ifndef EDDY_METACMD_H
#define EDDY_METACMD_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metamap.h"

/* Bytes of an encoded command. ADD_NODE with 3 full addresses is about 850;
 * a SPREAD listing its primaries is 5 + 6 bytes per run, at most about 24.6
 * KiB (every shard a run of its own), a few hundred bytes for ranges. */
#define METACMD_MAX 32768

enum meta_kind {
    META_ADD_NODE = 1,
    META_REMOVE_NODE,
    META_SPREAD,
    META_SET_SHARD,
    META_PROMOTE,
    META_SET_INSYNC,
    META_NODE_DOWN,
    META_NODE_UP,
    META_FAIL_NODE, /* down, out of every copy list; its primaries promoted (metamap.h) */
    META_SYNC_REPLICA, /* a replica in (or out of) the in-sync set of every shard of a primary */
    META_ADD_REPLICA,  /* a member as an out-of-sync replica of every under-replicated shard */
    META_ADD_COPY,     /* a member as an out-of-sync replica of one shard (rebalance) */
    META_DROP_COPY,    /* a replica out of one shard's copies (rebalance) */
    META_KIND_MAX = META_DROP_COPY,
};

/* A command. After metacmd_decode its strings point into the encoded bytes
 * (not NUL-terminated) and live as long as those bytes; to encode one, point
 * them at the caller's strings. */
typedef struct meta_cmd {
    int kind;
    uint64_t expect_version; /* 0: any version */
    uint16_t node;           /* ADD/REMOVE/DOWN/UP/FAIL: the member; PROMOTE: the new primary;
                                SYNC_REPLICA: the primary */
    uint16_t replica;        /* SYNC_REPLICA: the replica */
    bool in;                 /* SYNC_REPLICA: into the in-sync set (else out of it) */
    const char *name, *request, *delivery, *raft; /* ADD_NODE */
    uint32_t name_len, request_len, delivery_len, raft_len;
    uint32_t shard;          /* SET_SHARD, PROMOTE, SET_INSYNC, ADD_COPY, DROP_COPY */
    uint64_t epoch;          /* SPREAD: every shard's; SET_SHARD: the new one; PROMOTE and
                                SET_INSYNC: the shard's current one (fencing) */
    uint8_t ncopies;         /* SPREAD: copies per shard; SET_SHARD: ids in copies[]; ADD_REPLICA: the
                                copies a shard should have */
    uint16_t copies[META_MAX_COPIES]; /* SET_SHARD: primary first, then the replicas */
    uint8_t ninsync;
    uint16_t insync[META_MAX_COPIES]; /* SET_SHARD, SET_INSYNC: the in-sync members */
    /* SPREAD's primaries (NULL and 0 runs: the even spread). To encode: point
     * primaries at SHARD_COUNT member ids (the caller's). After decode:
     * primaries is NULL and runs points at the checked msgpack runs inside the
     * encoded bytes (nruns of them). metacmd_primaries reads either form. */
    const uint16_t *primaries;
    const uint8_t *runs;
    uint32_t runs_len, nruns;
} meta_cmd;

/* Appends cmd's wire form to out (owned by the caller). Returns 0, or -1 when
 * cmd breaks a bound metacmd_decode checks (nothing appended then). */
int metacmd_encode(const meta_cmd *cmd, msgpack_sbuffer *out);
/* Reads one command from data (all len bytes, nothing after it). Returns 0
 * with *cmd filled, or -1 (malformed, out of range, too long). */
int metacmd_decode(meta_cmd *cmd, const void *data, size_t len);
/* A SPREAD's primaries, one member id per shard, into out (SHARD_COUNT
 * entries, the caller's). Returns false when the command lists none (an even
 * spread; out untouched). */
bool metacmd_primaries(const meta_cmd *cmd, uint16_t *out);

#endif
