/* metacmd.h - the commands of the metadata group, and their wire form.
 *
 * A command is one msgpack array, small and bounded (at most METACMD_MAX
 * bytes): [META_FORMAT, kind, expect_version, fields...], where
 * expect_version is the map version the proposer computed the command
 * against (0: any), and the fields by kind are:
 *   ADD_NODE     id, name, request, delivery, raft   (strings)
 *   REMOVE_NODE  id
 *   SPREAD       copies, epoch
 *   SET_SHARD    shard, epoch, [copy ids], [in-sync ids]
 *   PROMOTE      shard, epoch (the shard's current one), new primary id
 *   SET_INSYNC   shard, epoch (the shard's current one), [in-sync ids]
 *   NODE_DOWN    id
 *   NODE_UP      id
 * metacmd_decode checks the shape, every length and range (ids 1..65535,
 * shard < SHARD_COUNT, lists at most META_MAX_COPIES, strings within their
 * bound and without NUL bytes); what depends on the map (does the member
 * exist, is the epoch right) is metamap_apply's to check. Written by the
 * proposer (node/metaraft.c's callers), read on every member at apply. */
#ifndef EDDY_METACMD_H
#define EDDY_METACMD_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "metamap.h"

#define METACMD_MAX 2048 /* bytes of an encoded command (ADD_NODE with 3 full addresses is about 850) */

enum meta_kind {
    META_ADD_NODE = 1,
    META_REMOVE_NODE,
    META_SPREAD,
    META_SET_SHARD,
    META_PROMOTE,
    META_SET_INSYNC,
    META_NODE_DOWN,
    META_NODE_UP,
    META_KIND_MAX = META_NODE_UP,
};

/* A command. After metacmd_decode its strings point into the encoded bytes
 * (not NUL-terminated) and live as long as those bytes; to encode one, point
 * them at the caller's strings. */
typedef struct meta_cmd {
    int kind;
    uint64_t expect_version; /* 0: any version */
    uint16_t node;           /* ADD/REMOVE/DOWN/UP: the member; PROMOTE: the new primary */
    const char *name, *request, *delivery, *raft; /* ADD_NODE */
    uint32_t name_len, request_len, delivery_len, raft_len;
    uint32_t shard;          /* SET_SHARD, PROMOTE, SET_INSYNC */
    uint64_t epoch;          /* SPREAD: every shard's; SET_SHARD: the new one; PROMOTE and
                                SET_INSYNC: the shard's current one (fencing) */
    uint8_t ncopies;         /* SPREAD: copies per shard; SET_SHARD: ids in copies[] */
    uint16_t copies[META_MAX_COPIES]; /* SET_SHARD: primary first, then the replicas */
    uint8_t ninsync;
    uint16_t insync[META_MAX_COPIES]; /* SET_SHARD, SET_INSYNC: the in-sync members */
} meta_cmd;

/* Appends cmd's wire form to out (owned by the caller). Returns 0, or -1 when
 * cmd breaks a bound metacmd_decode checks (nothing appended then). */
int metacmd_encode(const meta_cmd *cmd, msgpack_sbuffer *out);
/* Reads one command from data (all len bytes, nothing after it). Returns 0
 * with *cmd filled, or -1 (malformed, out of range, too long). */
int metacmd_decode(meta_cmd *cmd, const void *data, size_t len);

#endif
