/* ops.h - the internal operation codec: what brokers, nodes and backends say to
 * each other over nng, as msgpack (schema: proto/operations.md).
 *
 * An operation is a msgpack map with small integer keys, holding only the fields
 * that are set. Operations travel in batches: all operations bound for one peer
 * in one loop turn are one nng message, [format, origin, seq, [op, ...]].
 * Decoding is zero-copy: string fields of a decoded op point into the message,
 * which must outlive the op. Nothing here knows about nng or websockets. */
#ifndef EDDY_OPS_H
#define EDDY_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "mpack.h"
#include "strview.h"

#define OPS_FORMAT 2 /* 2: each operation framed as a bin (one bad operation fails alone) */
#define OP_NAME_MAX 4096u    /* bytes in a name; longer names are refused at the edge */
#define OP_BATCH_HEADER_MAX 25u

enum op_kind {
    OP_HELLO = 1,            /* peer -> node: I am peer <origin>, a <action> (enum link_role); node answers and
                              * publishes HELLO back */
    OP_HEARTBEAT = 2,        /* broker -> node: still alive (sent when idle) */
    OP_EVENT_INTEREST = 3,   /* broker -> owner: first local subscriber of <name> */
    OP_EVENT_UNINTEREST = 4, /* broker -> owner: last local subscriber of <name> left */
    OP_EVENT_EMIT = 5,       /* broker -> owner: emit <name> [data] from <session> */
    OP_EVENT_DELIVERY = 6,   /* owner -> interested brokers: deliver <name> [data], skip <session> */
    OP_ERROR = 7,            /* node -> broker: the operation <corr> failed with <error> */
    OP_RECORD_SUBSCRIBE = 8, /* broker -> owner: <session> subscribes <name>; action = mode */
    OP_RECORD_UNINTEREST = 9, /* broker -> owner: last local subscriber of <name> left */
    OP_RECORD_READ = 10,     /* peer -> owner: READ (snapshot) or HEAD of <name>, no subscription */
    OP_RECORD_WRITE = 11,    /* peer -> owner: action UPDATE/PATCH/ERASE/CREATEANDUPDATE/CREATEANDPATCH */
    OP_RECORD_DELETE = 12,   /* peer -> owner: delete <name> */
    OP_RECORD_NOTIFY = 13,   /* peer -> owner: reload <name> from storage and resend it */
    OP_RECORD_STATE = 14,    /* owner -> requester: <name> is at <version> [data], for <session>/<corr> */
    OP_RECORD_UPDATE = 15,   /* owner -> interested: <name> changed (action UPDATE or PATCH) */
    OP_RECORD_RESULT = 16,   /* owner -> requester: outcome of a write/delete/notify (action) */
    OP_RECORD_DELETED = 17,  /* owner -> interested: <name> was deleted */
    OP_RPC_PROVIDE = 18,     /* broker -> owner: <session> provides RPC <name> */
    OP_RPC_UNPROVIDE = 19,   /* broker -> owner: <session> stops providing <name> (also on disconnect) */
    OP_RPC_REQUEST = 20,     /* broker -> owner: <session> calls <name>; ref = its correlation id */
    OP_RPC_ANSWER = 21,      /* broker -> owner: provider <session> answers call ref (action) */
    OP_RPC_MESSAGE = 22,     /* owner -> broker: an RPC message (action) for <session> */
    OP_PRESENCE_JOIN = 23,   /* broker -> owner(user): first local login of user <name> */
    OP_PRESENCE_LEAVE = 24,  /* broker -> owner(user): last local connection of <name> closed */
    OP_PRESENCE_INTEREST = 25,   /* broker -> owner(user) <name>, or every node with OP_FLAG_ALL */
    OP_PRESENCE_UNINTEREST = 26, /* the reverse */
    OP_PRESENCE_QUERY = 27,  /* broker -> owner(user) <name>, or every node with OP_FLAG_ALL */
    OP_PRESENCE_STATE = 28,  /* node -> broker: answer to a query (<session>, <corr>) */
    OP_PRESENCE_EVENT = 29,  /* node -> interested brokers: <name> joined or left (action) */
    OP_LISTEN = 30,          /* broker -> every node: <session> listens to pattern <name>; orig = topic */
    OP_UNLISTEN = 31,        /* broker -> every node: the reverse (also on disconnect) */
    OP_LISTEN_ANSWER = 32,   /* broker -> owner(ref): LISTEN_ACCEPT/REJECT (action) of pattern <name> for ref */
    OP_LISTEN_MESSAGE = 33,  /* node -> broker: FOUND/REMOVED/RESPONSE_TIMEOUT (action) for <session> */
    OP_RECORD_PROVIDER = 34, /* node -> interested: record <name> has (OP_FLAG_PROVIDER) or lost a provider */
    OP_MAP_QUERY = 35,       /* anyone -> any node: the cluster map, no HELLO needed */
    OP_MAP = 36,             /* node -> asker (in the reply), and node -> every peer (a delivery, when its
                              * map changes: cluster.raft): <epoch>, <corr> = the map's version, <data> = the
                              * map as JSON (common/clustermap.h) */
    OP_BYE = 37,             /* peer -> node: a clean shutdown; forget everything of mine now */
    OP_NODE_STATS = 38,      /* anyone -> any node, no HELLO needed; answered in kind, <data> = its counters (JSON) */
    OP_RELOAD = 39,          /* anyone -> node, no HELLO needed: read the permission rules again; the node delivers it
                              * to every peer (brokers reload theirs) and answers RELOAD, <data> {"reloaded":bool} */
    OP_VALIDATE_REGISTER = 40,   /* backend -> every node: validate the writes to records matching pattern <name> */
    OP_VALIDATE_UNREGISTER = 41, /* backend -> every node: the reverse (also on BYE and when it is dropped) */
    OP_VALIDATE_REQUEST = 42,    /* owner -> validator: validation <corr> of a write to <name>, <data> = the request
                                  * (JSON: proto/operations.md) */
    OP_VALIDATE_ANSWER = 43,     /* validator -> owner(name): validation <corr> answered <action> (enum
                                  * validate_verdict); <data> the replacement document or the reason */
    OP_CHANGESET = 44,        /* peer -> owner: apply the member operations in <data> (op_members) all or none;
                               * <name> = the first member's (the shard of every member) */
    OP_CHANGESET_RESULT = 45, /* owner -> requester: <data> = the outcome as JSON; OP_FLAG_ERROR: nothing applied */
    OP_STREAM_SUBSCRIBE = 46, /* peer -> owner: deliver <name> from <offset> of history <history> (0: the current
                               * one), then live; answered in the delivery stream with STREAM_STATE and the events */
    OP_STREAM_STATE = 47,     /* owner -> peer (delivery): <name>'s history <history>, replay from <offset> to
                               * <version>, OP_FLAG_MORE: more held after it; <corr> echoed */
    OP_REPL_BATCH = 48,       /* primary node -> replica node: replication batch <corr> (its sequence number) of
                               * primary <orig> - 1 (node index), <data> = the records (common/replbatch.h);
                               * OP_FLAG_REPL_START: the stream (re)starts here. Answered in the reply by
                               * REPL_ACK, or REPL_RESYNC, or ERROR (WRONG_EPOCH/WRONG_SHARD: fenced) */
    OP_REPL_ACK = 49,         /* replica -> primary (reply, and delivery): every batch up to <corr> is durable here;
                               * primary -> replica: a question, answered in kind in the reply */
    OP_REPL_RESYNC = 50,      /* replica -> primary (reply): out of sequence, send again from <corr> (0: from
                               * the last acknowledged, marked OP_FLAG_REPL_START); with OP_FLAG_REPL_SNAPSHOT: this
                               * node holds no (complete) state of the stream: send a snapshot (<corr>: the refused
                               * batch's or chunk's number, <orig>: its kind) */
    /* 51-55: left free for other branches' kinds */
    OP_REPL_SNAPSHOT = 56,     /* primary -> replica: snapshot chunk <corr> (numbered 1, 2, ... on the link, never
                                * reused) of primary <orig> - 1, <data> = common/replbatch.h format 2 (the
                                * snapshot's id, the batch it resumes after, the shard set on its first chunk, the
                                * records). Answered like REPL_BATCH (REPL_SNAPSHOT_ACK, REPL_RESYNC, ERROR) */
    OP_REPL_SNAPSHOT_ACK = 57, /* replica -> primary (reply, and delivery): every chunk up to <corr> is durable here */
    OP_CLUSTER_STATUS = 60,   /* anyone -> any node, no HELLO needed; answered in kind, <data> = the metadata
                               * group's map as this node sees it (JSON; eddy ctl cluster status) */
    OP_META_HEARTBEAT = 61,   /* node -> the node it believes leads the metadata group (cluster.raft): I am member
                               * <orig>, alive; <corr> = my clock (ms) when I queued this, echoed in the grant;
                               * <version> = my applied map version. Only a node may send it */
    OP_META_GRANT = 62,       /* leader -> node (reply): <action> 1 = a lease granted (valid nodeTimeout/2 from the
                               * heartbeat's <corr> on the node's clock, usable once the node's map reaches
                               * <version>), 0 = refused (not the leader, or its leadership not confirmed lately);
                               * <corr> echoed; <orig> = the leader's member id as the answering node knows it (0:
                               * none) */
    OP_CLUSTER_PROMOTE = 64,  /* anyone -> any node, no HELLO needed; answered in kind: <data> = JSON, the
                               * request {"to", "shards" | "from"} and the answer (proto/operations.md) */
    OP_META_PROPOSE = 65,     /* node -> the node it believes leads the metadata group (cluster.raft): propose
                               * the command in <data> (common/metacmd.h; only SYNC_REPLICA, whose primary must be
                               * the sender, member <orig>). Answered in kind: <action> 1 = queued for Raft, 0 =
                               * not (not the leader, queue full, or refused) */
    OP_KIND_MAX
};

enum op_error {
    OP_ERR_NONE = 0,
    OP_ERR_MALFORMED = 1,    /* undecodable operation or batch */
    OP_ERR_UNKNOWN_KIND = 2, /* a kind this node does not serve */
    OP_ERR_WRONG_SHARD = 3,  /* shard/epoch does not match this node's map: <epoch> is current */
    OP_ERR_BAD_FIELD = 4,    /* a required field is missing or out of bounds */
    OP_ERR_UNKNOWN_PEER = 5, /* the node does not know the sender (dropped it, or restarted) */
    OP_ERR_WRONG_EPOCH = 6,  /* HELLO with another shard map epoch: the node refuses to serve it */
    OP_ERR_FORBIDDEN = 7,    /* the sender's role may not do this (a HELLO as a role its certificate is not) */
};

typedef struct op {
    uint32_t kind;
    uint32_t shard;
    uint32_t error;
    bool has_data;
    uint64_t epoch;
    uint64_t corr;
    uint64_t broker;
    uint64_t session;
    strview name;
    strview data; /* opaque JSON text, valid only when has_data */
    int64_t version;  /* record version; valid only when has_version */
    bool has_version;
    uint32_t action;  /* a deepstream action number (record mode, write kind, result) */
    uint32_t flags;   /* OP_FLAG_* */
    strview path;     /* record path; empty = none */
    strview ref;      /* the client's correlation id, echoed verbatim */
    uint32_t orig;    /* RESULT/STATE: the client action this answers */
    strview user;     /* RPC: requestorName; OP_FLAG_CHECK: the requester's user id */
    strview meta;     /* RPC: requestorData (JSON text); OP_FLAG_CHECK: the requester's serverData */
    strview refs;     /* OP_FLAG_CHECK: records the rule reads, read by the broker (JSON object name -> data|null) */
    /* event streams (node/history.c): an event's offset in its name's history, and the history's epoch
     * (random; a new one when the history was lost). 0: none */
    uint64_t offset;
    uint64_t history;
} op;

#define OP_FLAG_WRITE_ACK 1u /* the writer asked for an acknowledgement */
#define OP_FLAG_ERROR 2u     /* a RESULT that is an error */
#define OP_FLAG_ALL 4u       /* presence: about every user (sent to every node) */
#define OP_FLAG_ONLINE 8u    /* presence state: the user is online */
#define OP_FLAG_PROVIDER 16u /* record state: a listener provides the record */
/* Permissions the owner applies (the rule reads the record): user and meta
 * carry the requester's user id and serverData for the rule. */
#define OP_FLAG_CHECK 32u
#define OP_FLAG_AUTHENTICATED 64u /* with OP_FLAG_CHECK: user.isAuthenticated */
#define OP_FLAG_NO_CREATE 128u    /* SUBSCRIBECREATEANDREAD: creating is denied; a missing record is refused */
/* A RESULT refusing a write that the writer applied locally already: it
 * carries the record's version and data, with which the broker corrects the
 * writer's copy; meta carries the refusal's reason (a validator's). */
#define OP_FLAG_CORRECT 256u
/* HELLO: the peer never pulls deliveries (the metadata group's links): the
 * node gathers none for it. */
#define OP_FLAG_NO_DELIVERIES 512u

/* A validator's answer (OP_VALIDATE_ANSWER action). */
enum validate_verdict {
    VALIDATE_ACCEPT = 1,  /* apply the write as proposed */
    VALIDATE_REJECT = 2,  /* refuse it; data: the reason (text) */
    VALIDATE_REPLACE = 3, /* apply data (a JSON object or array) instead of the proposed document */
};

/* event streams (high bits: kept apart from other topics' flags) */
#define OP_FLAG_MORE (1u << 20)       /* STREAM_STATE: the history holds more after this replay: ask again */
#define OP_FLAG_NO_HISTORY (1u << 21) /* STREAM_STATE: <name> matches no events.history pattern */
/* replication (node/replicate.c, node/replica.c) */
#define OP_FLAG_REPL_START (1u << 22) /* REPL_BATCH: a replication stream (re)starts at this batch */
#define OP_FLAG_REPL_SNAPSHOT (1u << 26) /* REPL_RESYNC: only a snapshot can bring this replica up to date */

/* A batch under construction (its operations, each framed). Owns its buffer. */
typedef struct op_batch {
    msgpack_sbuffer buf;
    uint32_t count;
} op_batch;

void op_batch_init(op_batch *b);
void op_batch_reset(op_batch *b);
void op_batch_destroy(op_batch *b);
/* Encodes o (borrowed) at the end of the batch. */
void op_batch_add(op_batch *b, const op *o);
/* Appends an operation already encoded by op_encode (bytes borrowed, framed here). */
void op_batch_add_encoded(op_batch *b, const void *bytes, size_t len);
/* Encodes one operation into buf (appends; unframed: for op_batch_add_encoded). */
void op_encode(msgpack_sbuffer *buf, const op *o);
/* Writes the batch header [format, origin, seq, array(count)] into out and
 * returns its length (at most OP_BATCH_HEADER_MAX). The ops follow it. */
size_t op_batch_header(uint8_t out[OP_BATCH_HEADER_MAX], uint64_t origin, uint64_t seq,
                       uint32_t count);

/* Opens a received batch: checks the header and leaves r at the first op.
 * Returns 0, or -1 when malformed. */
int op_batch_open(mp_reader *r, const void *data, size_t len, uint64_t *origin, uint64_t *seq,
                  uint32_t *count);
/* Calls fn(arg, o) for each operation of the batch in data (header first; o
 * points into data), until fn returns non-zero. Returns 0, or -1 when the
 * header or an operation is malformed (the readable operations were passed). */
int op_batch_each(const void *data, size_t len, int (*fn)(void *arg, const op *o), void *arg);
/* Decodes the next operation; unknown keys are skipped. Returns 0;
 * OP_DECODE_SKIPPED when this operation is malformed (wrong types, a field over
 * its limit, kind 0: out holds what could be read, r is at the next one); or
 * -1 when the batch itself is broken (truncated: nothing after can be found). */
#define OP_DECODE_SKIPPED (-2)
int op_decode(mp_reader *r, op *out);
/* True when every field of o is within its limit (op_decode would take it):
 * kind set, name, path, ref and user at most OP_NAME_MAX bytes. */
bool op_fits(const op *o);

const char *op_kind_name(uint32_t kind);

/* A changeset's member operations travel in its `data` as a msgpack array of
 * framed operations (the op list of a batch: array32, each a bin32 frame).
 * op_members_encode appends n members (borrowed) to buf. op_members_open
 * checks the array header and leaves r at the first member (*count: how many;
 * decode each with op_decode). Returns 0, or -1 when it is not such an array. */
void op_members_encode(msgpack_sbuffer *buf, const op *members, uint32_t n);
int op_members_open(mp_reader *r, strview data, uint32_t *count);

#endif
