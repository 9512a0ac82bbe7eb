/* metamap.h - the replicated shard map: the state machine of the metadata
 * group (issue 18, FAILOVER.md rules 1, 2 and 5).
 *
 * The state is the membership (node id, name, request/delivery/raft
 * addresses, up or down) and, for each of SHARD_COUNT shards, its epoch
 * (monotonic), its copies (copies[0] the primary, then the replicas in order)
 * and its in-sync set (a bit per copy), plus a map version raised by every
 * command that changes something. Commands (common/metacmd.h) are applied in
 * log order by every member of the Raft group (node/metafsm.c); a command that
 * would break an invariant is refused and changes nothing, the same way on
 * every node, so all copies of the map stay byte-identical. The invariants:
 *   - a shard's epoch never goes down, and every change of its primary
 *     raises it (so does SET_SHARD; FAIL_NODE removing a failed replica
 *     leaves the primary and its epoch as they are);
 *   - a primary is always in its shard's in-sync set;
 *   - a promotion picks a replica from the in-sync set, never a down node;
 *   - a shard's copies are distinct members, at most META_MAX_COPIES;
 *   - a member holding a copy of a shard cannot be removed;
 *   - a command stamped with an expected map version applies only on it.
 *
 * A shard is unassigned (epoch 0, no copies) until SPREAD or SET_SHARD, and
 * unavailable (epoch > 0, no copies: metamap_unavailable) once FAIL_NODE took
 * its last promotable copy: every node answers it with an error at once, and
 * eddy ctl cluster status lists it, until SET_SHARD assigns it again at a
 * higher epoch. FAIL_NODE is what the leader's failure detector proposes
 * (node/meta.c): the member is marked down, leaves every copy list and
 * in-sync set, and each shard it was primary of is taken over by its first
 * in-sync replica that is up, at epoch + 1 (or becomes unavailable). A member
 * heard again is marked up by NODE_UP and holds no copies until it is
 * replicated to again (later work).
 *
 * The snapshot is the whole state in canonical msgpack (metamap_encode): the
 * same state always gives the same bytes. metamap_decode validates everything
 * (lengths, ids, invariants) before it fills the caller's map.
 *
 * Pure data: no Raft, no threads, no I/O. Routing uses it through
 * common/maproute.h (node.c builds the routing shardmap from the committed
 * map; brokers and backends learn it as JSON, clustermap.h); failover is the
 * next step of issue 18. */
#ifndef EDDY_METAMAP_H
#define EDDY_METAMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "shardmap.h"

#define META_MAX_MEMBERS 64      /* nodes in the map */
#define META_MAX_COPIES 5        /* copies of a shard: a primary and up to 4 replicas */
#define META_MAX_NODE_ID 65535u  /* node ids are 1..this (0 means none) */
#define META_MAX_NAME 64         /* bytes of a node's name */
#define META_MAX_ADDR 256        /* bytes of an address */
#define META_SNAPSHOT_MAX (1u << 20) /* an encoded map is at most this long (about 130 KiB in practice) */
#define META_FORMAT 1            /* the first element of every encoded map and command */

/* What applying a command answered. 0 is applied; the rest are refusals,
 * which change nothing (not even the version). */
typedef enum meta_status {
    META_OK = 0,
    META_EMALFORMED, /* the bytes are not a command of this format */
    META_ESTALE,     /* the command expected another map version */
    META_EEXISTS,    /* a member with this id, name or address exists */
    META_ENOTFOUND,  /* no such member */
    META_EFULL,      /* META_MAX_MEMBERS members already */
    META_EINUSE,     /* the member still holds shard copies */
    META_EEPOCH,     /* the epoch does not move forward, or not from the one stated */
    META_ENOTINSYNC, /* the new primary is not in the shard's in-sync set */
    META_EDOWN,      /* the node is marked down */
    META_EASSIGNED,  /* the shards are assigned already (spread is for a new map) */
    META_EINVALID,   /* anything else the invariants refuse (bad copies, counts, a primary left out) */
} meta_status;

/* A short text for a status ("refused: epoch does not move forward"). */
const char *meta_strerror(int status);

typedef struct meta_member {
    uint16_t id;                     /* 1..META_MAX_NODE_ID; the Raft server id too */
    bool down;                       /* marked down by the leader (NODE_DOWN) */
    char name[META_MAX_NAME + 1];    /* "node1" */
    char request[META_MAX_ADDR + 1]; /* nng address of its operations */
    char delivery[META_MAX_ADDR + 1];/* nng address of its deliveries */
    char raft[META_MAX_ADDR + 1];    /* HOST:PORT of its Raft transport */
} meta_member;

typedef struct meta_shard {
    uint64_t epoch;                   /* 0: never assigned */
    uint8_t ncopies;                  /* 0: unassigned */
    uint8_t insync;                   /* bit i: copies[i] is in sync; bit 0 always set when assigned */
    uint16_t copies[META_MAX_COPIES]; /* member ids; copies[0] is the primary */
} meta_shard;

/* The whole state. Plain data (about 80 KiB + members): copy with memcpy or
 * assignment; a zeroed map is the empty one (metamap_init). */
typedef struct metamap {
    uint64_t version;                  /* raised by every applied command */
    unsigned nmembers;
    meta_member members[META_MAX_MEMBERS]; /* sorted by id */
    meta_shard shards[SHARD_COUNT];
} metamap;

/* An empty map (no members, every shard unassigned, version 0). */
void metamap_init(metamap *m);

/* The member with id, or NULL. The pointer lives until the next change of m. */
const meta_member *metamap_member(const metamap *m, uint16_t id);

struct meta_cmd;
/* Applies cmd (common/metacmd.h) to m: META_OK (m changed, version + 1) or a
 * refusal (m untouched). Deterministic: the same map and command give the
 * same result everywhere. */
meta_status metamap_apply(metamap *m, const struct meta_cmd *cmd);
/* Decodes an encoded command (metacmd_decode) and applies it; malformed bytes
 * are META_EMALFORMED. */
meta_status metamap_apply_bytes(metamap *m, const void *data, size_t len);

/* The initial assignment: every shard gets `copies` copies on distinct
 * members of ids (n of them, in id order): its primary is primaries[shard]
 * (SHARD_COUNT member ids; NULL: contiguous even ranges in ids' order, as
 * shardmap_init_even), its replicas the next members of ids after the
 * primary, wrapping (as replicas_of: the bootstrapped map routes exactly as
 * the static one). Fills shards (SHARD_COUNT entries) with epoch, every copy
 * in sync. Returns 0, or -1 when copies is 0, above META_MAX_COPIES or above
 * n, or a primary is not in ids. */
int metamap_spread(const uint16_t *ids, unsigned n, unsigned copies, uint64_t epoch, const uint16_t *primaries,
                   meta_shard *shards);

/* Checks every invariant of a whole map (restore uses it). Returns 0 or -1. */
int metamap_check(const metamap *m);

/* Appends the map as canonical msgpack to out (owned by the caller); it is
 * at most META_SNAPSHOT_MAX bytes. */
void metamap_encode(const metamap *m, msgpack_sbuffer *out);
/* Decodes a map from data; fills *m only when every length, id and invariant
 * checks out (m untouched otherwise). Returns 0, or -1. */
int metamap_decode(metamap *m, const void *data, size_t len);

/* True when the shard lost every copy it could be served from (FAIL_NODE
 * found no in-sync replica that is up): epoch > 0 and no copies. */
bool metamap_unavailable(const meta_shard *sh);
/* How many shards of m are unavailable. */
unsigned metamap_unavailable_count(const metamap *m);

/* The shards whose primary is member id (counts, for tests and status). */
/* The position of member id among sh's copies (0: the primary), or -1. */
int metamap_position(const meta_shard *sh, uint16_t id);
unsigned metamap_primaries_of(const metamap *m, uint16_t id);
/* The shards holding a copy on member id. */
unsigned metamap_copies_of(const metamap *m, uint16_t id);

#endif
