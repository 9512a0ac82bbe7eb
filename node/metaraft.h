/* metaraft.h - the metadata group: the shard map (common/metamap.h) replicated
 * by Raft among the nodes (libraft 0.15, canonical raft, on libuv).
 *
 * Two parts:
 *   - meta_fsm (node/metafsm.c): the map as libraft's struct raft_fsm (apply,
 *     snapshot, restore). Used by metaraft below and directly by tests with
 *     libraft's raft_fixture.
 *   - metaraft (node/metaraft.c): one Raft server running on its own thread
 *     and libuv loop (raft_uv + raft_uv_tcp, log and snapshots under a data
 *     folder), bootstrapped from a voter list, taking proposals from any
 *     thread through a bounded queue and telling the rest of the node about
 *     leadership and the committed map.
 *
 * eddy node starts it with cluster.raft (node/meta.c: the voters are
 * cluster.nodes, the leader bootstraps the map from the configuration with
 * common/metaplan.h, eddy ctl cluster status shows it).
 *
 * Routing follows the committed map (node.c, common/maproute.h; eddy ctl
 * cluster promote proposes planned moves, node/promote.c). What it does not do
 * yet: no leader proposes failovers on its own, and membership changes of the Raft
 * group itself (raft_add/raft_assign) are not wired. That is the next step of
 * issue 18. */
#ifndef EDDY_METARAFT_H
#define EDDY_METARAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metamap.h"

struct raft_fsm;

/* The FSM's state. map is owned by the meta_fsm (meta_fsm_init allocates it,
 * meta_fsm_close frees it) and changed only by Raft's thread. */
typedef struct meta_fsm {
    metamap *map;
    int last_status;   /* meta_status of the last apply: the result raft hands the proposer */
    uint64_t applied;  /* commands applied */
    uint64_t refused;  /* commands refused (malformed or against an invariant) */
    /* Called after every applied command and every restore, on Raft's thread
     * (map borrowed for the call). May be NULL. */
    void (*on_change)(void *arg, const metamap *map);
    void *arg;
} meta_fsm;

/* Fills fsm (version 1 of libraft's interface) to run state; state's map is
 * allocated empty. */
void meta_fsm_init(struct raft_fsm *fsm, meta_fsm *state);
/* Frees state's map (NULL is fine). */
void meta_fsm_close(meta_fsm *state);
/* The log entry of an encoded command: out->base (raft_malloc'd, handed to
 * raft_apply) holds it padded with zero bytes to a multiple of 8, as libraft
 * 0.15's disk log needs. Returns 0 or RAFT_NOMEM. */
struct raft_buffer;
int meta_fsm_entry(const void *cmd, size_t len, struct raft_buffer *out);
/* The result pointer raft hands an apply callback, as a meta_status. */
int meta_fsm_result(const void *result);

/* ---- the Raft server ---- */

#define METARAFT_MAX_VOTERS 9
#define METARAFT_QUEUE 64 /* proposals waiting for Raft's thread; one more is refused (metaraft_propose -1) */

typedef struct metaraft metaraft;

typedef struct metaraft_voter {
    uint64_t id;         /* Raft server id, > 0 (the node's member id in the map) */
    const char *address; /* "IPv4:PORT" of its Raft transport */
} metaraft_voter;

/* A proposal's end, on Raft's thread: err is 0 when the command was committed
 * and applied, then status is its meta_status (META_OK or a refusal); else a
 * RAFT_* code (RAFT_NOTLEADER, RAFT_LEADERSHIPLOST, RAFT_SHUTDOWN, ...) and the
 * command may or may not have been committed (a new leader may still commit
 * it: commands carry expect_version for that). */
typedef void (*metaraft_done_cb)(void *arg, int err, int status);

typedef struct metaraft_config {
    uint64_t id;          /* this server's id, one of voters */
    const char *address;  /* this server's "IPv4:PORT" (listened on, and what the others dial) */
    const char *bind;     /* "IPv4:PORT" to listen on instead when address is not local (NULL, "": address) */
    const char *dir;      /* data folder of the log and snapshots (created when missing) */
    const metaraft_voter *voters; /* the group to bootstrap a pristine data folder with */
    unsigned nvoters;
    unsigned election_timeout_ms; /* 0: 1000 */
    unsigned heartbeat_ms;        /* 0: 100 */
    unsigned snapshot_threshold;  /* entries between snapshots; 0: 1024 */
    unsigned confirm_ms;          /* while leading, a barrier this often (metaraft_confirmed); 0: none */
    /* Called on Raft's thread when the committed map or leadership changes
     * (map borrowed for the call). May be NULL. */
    void (*on_change)(void *arg, const metamap *map, bool leader);
    void *arg;
} metaraft_config;

/* Starts the server on its own thread. Returns it (owned by the caller,
 * metaraft_stop), or NULL with the reason in err. */
metaraft *metaraft_start(const metaraft_config *cfg, char *err, size_t err_len);
/* Stops the server: queued proposals end with RAFT_SHUTDOWN, Raft closes, the
 * thread ends; frees mr. NULL is fine. Not from a callback of mr. */
void metaraft_stop(metaraft *mr);
/* Queues an encoded command (copied; at most METACMD_MAX bytes) for Raft's
 * thread to propose; done (may be NULL) is called once, on Raft's thread,
 * unless this returns -1 (queue full, too long, or stopping: nothing queued). */
int metaraft_propose(metaraft *mr, const void *cmd, size_t len, metaraft_done_cb done, void *arg);
/* Whether this server is the leader, and the leader's id (0: none known). */
bool metaraft_is_leader(metaraft *mr, uint64_t *leader_id);
/* Copies the last committed map into out (any thread). */
void metaraft_map(metaraft *mr, metamap *out);
/* The version of the last committed map (any thread). */
uint64_t metaraft_version(metaraft *mr);
/* This server is the leader and the barrier it committed on taking office
 * has been applied: its committed map holds every entry of earlier terms, so
 * commands computed on it are not stale (any thread). */
bool metaraft_leader_ready(metaraft *mr);
/* The Raft term when the leadership was last published (any thread). */
uint64_t metaraft_term(metaraft *mr);
/* now_ms() when the newest barrier this server proposed as leader (and that
 * committed) was proposed, 0: none. Such a commit proves no other leader was
 * elected before that time: a majority appended the entry in this server's
 * term after it was proposed, and a server that voted in a later term would
 * have refused it. Any thread. */
int64_t metaraft_confirmed(metaraft *mr);
/* Proposals refused because the queue was full. */
uint64_t metaraft_dropped(metaraft *mr);

#endif
