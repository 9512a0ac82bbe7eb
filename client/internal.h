/* internal.h - what the files of client/ share: the client state, the pending
 * call table, the callback queue and the routing to nodes.
 *
 * The backend is one peer of every node, with one session (CLIENT_SESSION)
 * that subscribes, provides, listens and calls. One mutex (e->lock) guards
 * every table; the link threads (common/nodelink.c) take it to settle pending
 * calls and to queue callbacks, which the callback thread runs without it. */
#ifndef EDDY_CLIENT_INTERNAL_H
#define EDDY_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "clustermap.h"
#include "dict.h"
#include "eddy.h"
#include "nodelink.h"
#include "ops.h"
#include "queue.h"
#include "shardmap.h"

#define CLIENT_SESSION 1
#define CORR_REFRESH (1ull << 63) /* corr bit: a record re-read nobody waits for */
#define CORR_STREAM (1ull << 62)  /* corr bit: a stream's ask for more (api.c), nobody waits for */

typedef struct client_link {
    struct link_ctx *ctx; /* what the link's handler is called with */
    nodelink *link;
    delivery_stream stream;
    uint64_t answered_seq; /* the newest batch the node replied to */
    bool refused;          /* the node runs another map */
    /* The node refused a shard at our epoch although our map makes it the
     * primary (cluster.raft: no lease yet after its start): everything
     * registered there is sent again at the first heartbeat answer from this
     * time on (0: nothing due), until it takes it. */
    int64_t retry_ms;
} client_link;

/* A blocking call waiting for its answer (e->pending, keyed by corr). */
typedef struct pending {
    uint64_t corr;
    int link;
    bool done;
    eddy_status status;
    int64_t version;
    char *data; /* answer payload (owned), NULL when none */
} pending;

/* Registrations, re-sent after a node restart (e->events, records, provides, listens). */
typedef struct registration {
    void *fn;
    void *arg;
    /* records: the document as last delivered */
    int64_t version;
    char *doc;
    bool refreshing;
    /* event streams (eddy_subscribe_from; api.c) */
    bool stream;
    bool positioned;     /* next is where delivery goes on (else: where the node's first state says) */
    bool more;           /* the node holds more after replay_end: ask once next passes it */
    bool fetching;       /* a STREAM_SUBSCRIBE is on its way: no second one */
    void *gap_fn;
    uint64_t history;    /* the history followed (0: not known yet) */
    uint64_t next;       /* the next offset to deliver; before positioned, the offset asked */
    uint64_t replay_end; /* the last offset of the replay under way */
    uint64_t ask;        /* corr of the latest ask (0: the subscribe's own): older answers are stale */
    int64_t asked_ms;    /* when (now_ms): an ask unanswered for twice the timeout counts as lost */
} registration;

enum callback_kind { CB_EVENT = 1, CB_RECORD, CB_PROVIDE, CB_LISTEN, CB_VALIDATE, CB_STREAM, CB_GAP };

/* One callback for the callback thread (owned by the queue until run). */
typedef struct callback {
    int kind;
    void *fn, *arg;
    char *name, *data, *extra; /* extra: RPC user, or listen pattern */
    int64_t version;
    bool found;
    int topic;
    eddy_rpc *call;
    eddy_validation *validation;
    uint64_t history, offset, gap_to; /* CB_STREAM, CB_GAP (offset: the gap's from) */
    bool reset;                        /* CB_GAP */
} callback;

/* A write to validate: answered once (eddy_validation_accept, ...), which frees it. */
struct eddy_validation {
    eddy *e;
    uint64_t corr; /* the node's validation id */
    char *name;    /* the record's */
};

struct eddy_rpc {
    eddy *e;
    char *name;
    char *id; /* the node's call id */
};

/* The handler's context: which link of which generation of links. */
typedef struct link_ctx {
    eddy *e;
    int li;
    unsigned gen;
} link_ctx;

struct eddy {
    int timeout_ms;
    char *user;
    char *seed;          /* the address eddy_connect was given */
    uint64_t peer_id;
    struct linktls *tls; /* credentials for a tls+tcp:// cluster, or NULL */
    /* Lock order: e->lock, then links_lock. The map and the links change
     * together (a new epoch: client_follow_map), under both locks for writing;
     * client_submit_to reads them under links_lock alone. */
    pthread_rwlock_t links_lock;
    unsigned gen;        /* bumped whenever the links are replaced */
    clustermap cluster;  /* the node list and epoch from the map */
    shardmap map;
    int nlinks;
    client_link links[CLUSTER_MAX_NODES];
    atomic_bool map_stale; /* a node refused our map or redirected: learn it again */
    int64_t last_map_try;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* broadcast when a call settles or a batch is answered */
    dict *pending;          /* corr -> pending */
    dict *events, *records, *provides, *listens; /* name (listens: topic byte + pattern) -> registration */
    dict *validates;                             /* pattern -> registration (eddy_validate) */
    uint64_t next_corr;
    queue *callbacks;
    pthread_t cb_thread;
    bool cb_started;
    atomic_bool closing;
    atomic_ullong dropped_callbacks;
};

/* client.c */
/* Queues o for the node owning `route` (o->shard/epoch filled in). Returns the
 * link index and the batch number in *seq, or -1 (node down, queue full). */
int client_submit(eddy *e, op *o, strview route, uint64_t *seq);
/* Queues o for link li. */
int client_submit_to(eddy *e, int li, op *o, uint64_t *seq);
/* Waits (e->lock held) until link li has answered batch seq, or the deadline
 * (now_ms clock) passes. Returns EDDY_OK, TIMEOUT or CLOSED. */
eddy_status client_wait_batch(eddy *e, int li, uint64_t seq, int64_t deadline);
/* Registers a pending call (e->lock held) and returns it. */
pending *client_pending_new(eddy *e, int li);
/* Waits (e->lock held) for p, removes it from the table and returns its status;
 * the caller frees p (client_pending_free) after taking its data. */
eddy_status client_pending_wait(eddy *e, pending *p, int64_t deadline);
void client_pending_free(void *p); /* a pending; NULL is fine */
/* Settles the pending call corr (e->lock held); takes data (may be NULL). */
void client_settle(eddy *e, uint64_t corr, eddy_status status, int64_t version, char *data);
/* Queues a callback (e->lock held or not); drops event callbacks beyond the
 * bound, others after waiting 1 s for room. False (cb freed) when dropped. */
bool client_queue_callback(eddy *e, callback *cb);
int64_t client_deadline(const eddy *e);
char *client_strndup(strview v);
/* The corr of one of our RPC calls, from its correlation id text (0: not ours). */
uint64_t client_call_corr(strview ref);

/* api.c: the answers and deliveries meant for the features (e->lock held). */
void client_on_delivery(eddy *e, int li, const op *o);
/* Re-registers everything owned by link li (a node came back). */
void client_resync(eddy *e, int li);
/* eddy_close: unprovides and unlistens everything (e->lock held); seq[li]
 * receives the batch each link's last withdrawal travels in (0: none). */
void client_withdraw_all(eddy *e, uint64_t *seq);
/* Runs one callback on the callback thread (no lock held) and frees it. */
void client_run_callback(eddy *e, callback *cb);
void client_callback_free(void *cb);     /* a callback; NULL is fine */
void client_registration_free(void *r); /* a registration; NULL is fine */

#endif
