/* nodelink.h - one peer's connection to one node: the transport half that
 * brokers and the backend library share.
 *
 * Batches travel on a REQ socket, one out at a time, driven by nng's
 * asynchronous I/O rather than a thread of the link's: a submit finding no
 * batch out sends at once from the submitting thread, and a reply's callback
 * (on nng's thread) hands the reply to the owner and sends everything
 * submitted meanwhile as the next batch, so batches grow with the load and a
 * quiet link adds no wait. Deliveries come on a second REQ socket, on the
 * node's delivery address, where a chain of callbacks keeps one pull out: the
 * node answers it with every delivery it gathered for this peer since the last
 * answer (node/peers.c), so a batch crosses only the connection of the peer it
 * is for, and a pull unanswered for 2 s is sent again.
 *
 * A control thread does what is not traffic: until the node has delivered its
 * HELLO to this peer, no batch goes, and it says HELLO (numbered 0, on a
 * context of its own) every 200 ms, at start and again after any disconnect,
 * so no answer can be delivered into a delivery pipe that is not up. A batch
 * the node refuses as coming from an unknown peer (it restarted, or dropped us)
 * was not applied: the link says HELLO again, the owner re-registers its state
 * (RESYNC), and the same batch goes again, first. When idle the link sends a
 * HEARTBEAT every 250 ms. A HELLO the node refuses for our role (FORBIDDEN: our
 * certificate is another role's) is logged once. A dialer that has not brought
 * its connection back is replaced (nng 1.5.2 gives up on some failed attempts
 * without a word): the delivery one when the node has answered our HELLOs for
 * 2 s and none came back on it, the REQ's after 3 s without a connection, then
 * at doubling intervals up to a minute.
 *
 * A link made with no_deliveries opens no delivery socket and runs no pull
 * chain: the node's answer to our HELLO says it takes us.
 *
 * What the link learns goes to the owner's handler, called on nng's threads
 * (replies, deliveries, the pipe callback) or the control thread, never with
 * the link's lock held; the handler must not wait for the network (it holds
 * one of nng's few task threads) and hands work to a thread of its own.
 *
 * delivery_stream: the numbering check of a delivery stream (see
 * proto/operations.md), kept by whoever reads the deliveries. */
#ifndef EDDY_NODELINK_H
#define EDDY_NODELINK_H

#include <stdbool.h>
#include <stdint.h>

#include "ops.h"

#define NODELINK_QUEUE_MAX (8u << 20) /* bytes queued for one node before submits are refused */

enum nodelink_event {
    NODELINK_REPLY = 1,    /* item: nng_msg *, the reply to batch seq (0: a HELLO's) */
    NODELINK_DELIVERY = 2, /* item: nng_msg *, a delivery batch, 8-byte peer id first */
    NODELINK_RESYNC = 3,   /* item NULL: the node delivers again after a restart, a
                              disconnect or a refusal: register everything again */
    NODELINK_FAILED = 4,   /* item: op_batch *, batch seq the node will not answer */
    NODELINK_DOWN = 5,     /* item NULL: the last connection to the node dropped */
};

/* Takes ownership of item and returns 0, or returns -1 and leaves it to the
 * link: which frees it (nng_msg_free, or op_batch_destroy + free), except a
 * NODELINK_DELIVERY, which it offers again a millisecond later (backpressure:
 * nothing more is read from the node until the owner takes it). */
typedef int nodelink_handler(void *ctx, int event, int index, uint64_t seq, void *item);

typedef struct nodelink_config {
    int index;               /* passed back to the handler */
    const char *id;          /* the node's id, for log lines */
    const char *request_url; /* REQ dials this */
    const char *delivery_url;/* the delivery socket dials this (pulls) */
    uint64_t peer_id;        /* our random id: batch origin and delivery topic */
    uint64_t epoch;          /* sent in HELLO */
    uint64_t map_digest;     /* sent in HELLO (shardmap_digest) */
    int reply_timeout_ms;    /* a batch unanswered this long fails (NODELINK_FAILED); 0: 10000 */
    const struct linktls *tls; /* credentials for tls+tcp:// nodes (borrowed, outlives the link), or NULL */
    int role;                /* what we say HELLO as (enum link_role): broker or backend */
    bool no_deliveries;      /* a peer that needs none (the metadata group's links): no delivery
                                socket and thread; the link is up once the node answers a HELLO
                                with its own */
    nodelink_handler *handler;
    void *ctx;
} nodelink_config;

typedef struct nodelink nodelink;

/* Dials the node (in the background: the node may come later) and starts the
 * control thread and the pull chain. The strings in c are borrowed and must outlive the link. Returns
 * NULL (logged) on failure. */
nodelink *nodelink_open(const nodelink_config *c);
/* Queues o (borrowed; encoded at once), and sends it at once when no batch
 * is out. Returns the number of the batch it travels in (>= 1), or 0 when
 * refused: the node is down (after having been up) or more than
 * NODELINK_QUEUE_MAX bytes wait. Any thread. */
uint64_t nodelink_submit(nodelink *l, const op *o);
/* True while the node delivers to us (its HELLO came back). */
bool nodelink_delivering(const nodelink *l);
/* True while a connection to the node is up. */
bool nodelink_connected(const nodelink *l);
/* Operations refused because the queue was full (a metric). */
uint64_t nodelink_refused(const nodelink *l);
/* Asks the link to finish: what is queued is still sent if the node
 * delivers. Returns at once; nodelink_close waits. */
void nodelink_stop(nodelink *l);
/* Stops (if not yet), waits for the control thread and the pull chain to end
 * (what is queued is flushed first; a pull out is answered within 500 ms),
 * closes the sockets, frees l. No handler call after it. NULL is fine. */
void nodelink_close(nodelink *l);

/* True when a delivery batch (8-byte peer id first) is for peer_id and holds a
 * HELLO: the node says it takes us (what waited for our pull may come first). */
bool nodelink_is_hello(const void *body, size_t len, uint64_t peer_id);

typedef struct delivery_stream {
    uint64_t received;        /* operations received so far (the node's numbering) */
    uint64_t mark, mark_last; /* the node's count at the last heartbeat answer, ours then */
    bool mark_set;
    uint64_t gaps, lost, late; /* metrics: gaps seen, operations lost, batches that came late */
} delivery_stream;

enum stream_verdict {
    STREAM_IN_ORDER = 0,  /* apply the batch */
    STREAM_RESTARTED = 1, /* a HELLO with a smaller number: the node restarted; apply */
    STREAM_GAP = 2,       /* operations were lost before this batch (*lost): recover, then apply */
    STREAM_LATE = 3,      /* arrived after being counted lost: apply it (the loss count is corrected) */
    STREAM_BAD = 4,       /* impossible numbering: drop it */
};
/* Checks a delivery batch's header (seq = the node's running op count, count =
 * ops in the batch; hello: its first operation is the node's HELLO, which
 * starts a stream after a node restart) and advances the stream. */
int stream_accept(delivery_stream *s, uint64_t seq, uint32_t count, bool hello, uint64_t *lost);
/* True when the batch r is positioned at (just opened) begins with a HELLO; r is not moved. */
bool batch_starts_with_hello(const mp_reader *r, uint32_t count);
/* A heartbeat answer says the node has published `published` operations to us.
 * If the previous one promised more than we have and nothing arrived since,
 * the tail of the stream was lost: returns how many operations (0 = none). */
uint64_t stream_heartbeat(delivery_stream *s, uint64_t published);
/* The same when nothing can be in flight (an in-process node's empty outbox):
 * whatever was published and not received is lost; returns how many. */
uint64_t stream_settle(delivery_stream *s, uint64_t published);
/* The node went down: forget the heartbeat mark. */
void stream_forget_mark(delivery_stream *s);

#endif
