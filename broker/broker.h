/* broker.h - the broker (edge) role: terminates deepstream websocket clients
 * with libwebsockets, keeps sessions and local subscriber tables, translates
 * client messages into operations for the node that owns each name, and fans
 * deliveries from nodes out to local subscribers. Holds no records.
 *
 * Threads: one libwebsockets service thread owns every session, topic and
 * frame. Per node, a request thread (REQ: one batch in flight) and a delivery
 * thread (SUB) hand results to the service thread through one bounded inbound
 * queue and lws_cancel_service(). File auth runs Argon2id on a worker thread. */
#ifndef EDDY_BROKER_H
#define EDDY_BROKER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <libwebsockets.h>

#include <nng/nng.h>

#include "config.h"
#include "deepstream.pb-c.h"
#include "dict.h"
#include "ops.h"
#include "queue.h"
#include "shardmap.h"

typedef struct broker broker;

/* A node in the same process (standalone), reached by direct calls on the
 * service thread instead of sockets: see node_attach_local and friends in
 * node/node.h, which these wrap (the broker does not include node.h). */
typedef struct local_node {
    void *node;
    void (*attach)(void *node, uint64_t peer_id, void (*wake)(void *ctx), void *ctx);
    nng_msg *(*request)(void *node, const void *body, size_t len); /* reply owned by the caller */
    nng_msg *(*take)(void *node, uint64_t *published);            /* owned by the caller; NULL: none */
    void (*detach)(void *node); /* no wake-up reaches the broker after this returns */
} local_node;

/* Creates a broker for cfg (borrowed; must outlive it) connecting to every node
 * in cfg->nodes; with `local` (borrowed; NULL for none), cfg names one node and
 * it is that in-process node. Returns NULL (logged) on failure; *config_error
 * is set when the failure is the configuration's (exit code 2) rather than the
 * system's. */
broker *broker_create(const eddy_config *cfg, const local_node *local, bool *config_error);
/* Waits until every node link delivers, starts listening, and serves until
 * *stop becomes non-zero. Returns 0, or -1 when it could not start. */
int broker_run(broker *b, volatile sig_atomic_t *stop);
/* Wakes the service loop; safe from any thread (not from a signal handler:
 * handlers only set the stop flag, which the loop checks every 200 ms). */
void broker_wake(broker *b);
/* True while the service loop runs and has not begun to stop (its timers can be
 * scheduled and will fire). Service thread only. */
bool broker_serving(broker *b);
/* Closes every connection, quiesces the links, frees b. NULL is fine. */
void broker_destroy(broker *b);

/* ---------------- internal: shared by the files of broker/ ---------------- */

/* An immutable, refcounted encoded client frame with LWS_PRE bytes of headroom.
 * Encoded once, shared by every session it is queued to (service thread only). */
typedef struct frame {
    uint32_t refs;
    uint32_t len;
    uint8_t bytes[]; /* LWS_PRE headroom, then len bytes of payload */
} frame;

frame *frame_new(size_t len);         /* refs = 1, owned by the caller */
void frame_unref(frame *f);           /* NULL is fine */
static inline uint8_t *frame_payload(frame *f) { return f->bytes + LWS_PRE; }
/* Encodes one deepstream message (topic + inner message) as a delimited frame. */
frame *frame_encode(int topic, const ProtobufCMessage *inner);

enum session_state { SESSION_AWAITING_CHALLENGE = 0, SESSION_AWAITING_AUTH, SESSION_OPEN };

typedef struct session {
    uint64_t id;
    broker *b;
    struct lws *wsi;
    enum session_state state;
    bool closing;          /* close once the out queue is flushed */
    bool auth_pending;     /* an auth check is on the worker */
    int auth_attempts;
    char *user;            /* user id after login */
    int64_t last_rx_ms;
    /* inbound reassembly, bounded by maxMessageSize */
    uint8_t *rx;
    size_t rx_len, rx_cap;
    /* outbound ring of frame references, bounded by maxOutboundBytes */
    frame **out;
    size_t out_head, out_len, out_cap, out_bytes;
    lws_sorted_usec_list_t auth_timer;
    dict *events; /* event names this session subscribes to */
    dict *records; /* record names this session subscribes to */
    dict *rpcs;    /* RPC names this session provides */
    dict *presence; /* users this session watches */
    bool presence_all; /* watches everyone */
    dict *listens;  /* topic byte + pattern this session listens to */
    char *server_data; /* JSON text of the user's serverData (file auth), or NULL */
    bool flush_due;             /* on the broker's flush list (frames queued this loop turn) */
    struct session *next_flush;
} session;

/* session.c */
void session_open(broker *b, session *s, struct lws *wsi);
void session_closed(session *s);
/* Queues f (a new reference is taken) for s; a session over its outbound bound
 * is disconnected as a slow consumer. */
void session_send(session *s, frame *f);
/* Encodes and queues one message for s. */
void session_send_msg(session *s, int topic, const ProtobufCMessage *inner);
/* Marks s to close after its queued frames are written. */
void session_close_after_flush(session *s);
/* Closes s now (from outside its callback); reason is logged. */
void session_kill(session *s, const char *reason);
int session_writeable(session *s);
/* End of a loop turn: writes what each session queued during it straight to
 * its socket (no wait for a writable callback: one send per session per turn),
 * or asks for writable when the socket is full. */
void session_flush_all(broker *b);
/* Feeds one received websocket fragment; returns -1 when the connection must close. */
int session_receive(session *s, const void *in, size_t len);
session *broker_session(broker *b, uint64_t id);

/* dispatch.c: one complete client frame. */
void dispatch_frame(session *s, const uint8_t *data, size_t len);
void reply_parser_error(session *s, int action, int topic, int orig_action);
/* PARSER UNKNOWN_ACTION for an action a topic does not have (logged at debug). */
void reply_unknown_action(session *s, int topic, int action);
/* Sends {topic, action, correlationId, isAck} to s. */
void send_ack(session *s, int topic, int action, const char *correlation_id);

/* auth.c */
typedef struct auth auth;
auth *auth_create(const eddy_config *cfg, broker *b, bool *config_error);
void auth_destroy(auth *a);
/* Handles AUTH REQUEST data (may be NULL) for s. */
void auth_request(auth *a, session *s, const char *data);
/* Completes a check that ran on the worker (service thread). */
struct auth_result;
void auth_complete(auth *a, struct auth_result *r);
/* Hashes password with Argon2id (the parameters `eddy hash` and the users file
 * use) into out (at least 128 bytes). Returns 0, or -1 when out of memory. */
int auth_hash_password(const char *password, char *out, size_t out_len);
/* Frees a result that will never be completed (shutdown). */
void auth_result_free(struct auth_result *r);

/* events.c */
typedef struct event_subs event_subs;
event_subs *event_subs_new(broker *b);
void event_subs_free(event_subs *e);
/* Handles one decoded EventMessage (base points to it). */
void events_handle(session *s, const ProtobufCMessage *base);
void events_session_closed(session *s);
void events_deliver(broker *b, const op *o);

/* listen.c */
/* Handles LISTEN/UNLISTEN/LISTEN_ACCEPT/LISTEN_REJECT of topic (EVENT or RECORD);
 * returns false for any other action. */
bool listen_handle(session *s, int topic, int action, const char *name, const char *subscription);
void listen_session_closed(session *s);
void listen_deliver(broker *b, const op *o);

/* presence.c */
typedef struct presence_subs presence_subs;
presence_subs *presence_subs_new(broker *b);
void presence_subs_free(presence_subs *p);
/* Handles one decoded PresenceMessage (base points to it). */
void presence_handle(session *s, const ProtobufCMessage *base);
/* s logged in (after AUTH_SUCCESSFUL) / an open session closed. */
void presence_login(session *s);
void presence_session_closed(session *s);
void presence_deliver(broker *b, const op *o);
presence_subs *broker_presence(broker *b);

/* rpc.c */
/* Handles one decoded RpcMessage (base points to it). */
void rpc_handle(session *s, const ProtobufCMessage *base);
void rpc_session_closed(session *s);
void rpc_deliver(broker *b, const op *o);
/* An RPC_REQUEST its node will not answer: the caller gets NO_RPC_PROVIDER.
 * Returns 1 when the caller was answered. */
int rpc_fail(broker *b, const op *o);

/* records.c */
typedef struct record_subs record_subs;
record_subs *record_subs_new(broker *b);
void record_subs_free(record_subs *r);
/* Handles one decoded RecordMessage (base points to it). */
void records_handle(session *s, const ProtobufCMessage *base);
void records_session_closed(session *s);
/* A record answer or delivery from a node (OP_RECORD_STATE/RESULT/UPDATE/DELETED). */
void records_deliver(broker *b, const op *o);

/* awaiting.c: the record requests a node still owes an answer (one per link). */
typedef struct awaiting awaiting;
awaiting *awaiting_new(void);
void awaiting_free(awaiting *a); /* NULL is fine */
/* o was queued for the node: remembers it when its requester waits for an answer. */
void awaiting_add(awaiting *a, const op *o);
/* A delivery from the node: settles the request it answers, if any. */
void awaiting_answered(awaiting *a, const op *answer);
size_t awaiting_count(const awaiting *a);
/* The node went down: answers every waiting requester with an error (records_fail)
 * and forgets them. Returns how many were answered. */
uint64_t awaiting_fail_all(broker *b, awaiting *a);

/* links.c: the nng connections to nodes, one link per node of cfg->nodes. */
typedef struct link_set link_set;
typedef struct pending_ack pending_ack;
/* Dials every node and starts the link threads, or, with `local`, attaches to
 * the in-process node. Returns NULL (logged) on failure. */
link_set *links_create(broker *b, const eddy_config *cfg, uint64_t broker_id, const local_node *local);
/* Cancels the links' loop timers; before the lws context goes (its timer lists go with it). */
void links_stop_timers(link_set *ls);
/* Service thread: takes what the in-process node has delivered (no-op without one). */
void links_poll_local(broker *b);
/* Writes the links' counters (Prometheus text format) to f. */
void links_metrics(link_set *ls, FILE *f);
/* True when a node refused this broker's shard map epoch. */
bool links_refused(link_set *ls);
/* True once every node has delivered to this broker (its SUB pipe is up). */
bool links_ready(link_set *ls);
/* Flushes what is queued, stops the threads, closes the sockets; NULL is fine. */
void links_destroy(link_set *ls);
/* Service thread: a reply (msg NULL when the request failed) or a delivery.
 * Takes ownership of msg. */
void links_handle_inbound(broker *b, int kind, int li, uint64_t seq, void *msg);
/* Queues o for the node that owns o->name (shard and epoch are filled in).
 * Returns the link index and, in *seq, the batch number o travels in; -1 when
 * the link's queue is over its bound (o is dropped and counted). */
int links_submit(broker *b, op *o, uint64_t *seq);
/* Queues o for node li (operations meant for every node: presence "everyone"). */
int links_submit_to(broker *b, int li, op *o, uint64_t *seq);
int links_count(broker *b);
/* Queues o for the owner of `name` (not o->name): listen answers go to the
 * owner of the subscription. */
int links_submit_name(broker *b, op *o, strview name, uint64_t *seq);
/* Calls ack_done(pa) once the node has answered batch seq on link li. */
void links_wait(broker *b, int li, uint64_t seq, pending_ack *pa);
/* True when batch seq on link li has been answered. */
bool links_answered(broker *b, int li, uint64_t seq);
/* A pending acknowledgement: sent to the session once every batch it waits on
 * has been answered by its node. */
struct pending_ack {
    uint64_t session_id;
    int waits;
    int topic;
    int action;
    char *correlation_id;
};
void ack_done(broker *b, pending_ack *pa);

/* Re-registers everything this broker holds for names owned by node li (the
 * node restarted or dropped this broker): interests, providers, listeners,
 * logins. Each module does its part. */
void broker_resync(broker *b, int li);
void events_resync(broker *b, int li);
void records_resync(broker *b, int li);
/* o (a record operation) will not be answered: its node went down. Answers
 * the requester with an error; returns 1 when there was one to answer. */
int records_fail(broker *b, const op *o);
/* Deliveries from node li were lost: re-reads every record with local
 * subscribers owned by li and brings the subscribers up to date. */
void records_recover(broker *b, int li);
/* How many records were brought up to date that way (a metric). */
uint64_t records_recovered(broker *b);
void rpc_resync(broker *b, int li);
void listen_resync(broker *b, int li);
void presence_resync(broker *b, int li);
/* The link index of the node owning name. */
int links_owner(broker *b, const char *name, size_t len);
/* Calls fn for every open session. */
void broker_foreach_session(broker *b, void (*fn)(session *s, void *arg), void *arg);

/* broker.c accessors for the modules above */
const eddy_config *broker_config(broker *b);
uint64_t broker_id(broker *b);
event_subs *broker_events(broker *b);
record_subs *broker_records(broker *b);
link_set *broker_links(broker *b);
auth *broker_auth(broker *b);
struct lws_context *broker_lws(broker *b);
/* A scratch buffer of at least len bytes for gathering outbound frames, owned
 * by the broker and reused by the next call (service thread only). */
uint8_t *broker_send_buffer(broker *b, size_t len);
/* Puts s on the list session_flush_all writes at the end of this loop turn. */
void broker_flush_later(broker *b, session *s);
/* Takes s off that list (it is closing). */
void broker_flush_forget(broker *b, session *s);
/* The next session on that list, taken off it; NULL when empty. */
session *broker_flush_take(broker *b);
/* Hands an item to the service thread (auth results); returns -1 when full. */
enum inbound_kind {
    INBOUND_REPLY = 1,
    INBOUND_DELIVERY = 2,
    INBOUND_AUTH = 3,
    INBOUND_RESYNC = 4,
    INBOUND_FAILED = 5,   /* an op_batch the node will not answer */
    INBOUND_NODE_DOWN = 6 /* the last connection to a node dropped */
};
int broker_post(broker *b, int kind, int link, uint64_t seq, void *item);

#endif
