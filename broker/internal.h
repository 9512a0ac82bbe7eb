/* internal.h - what the files of broker/ share. Modules are layered, and each
 * calls only those listed below it:
 *
 *   broker.c     the lifecycle and the inbound queue; wires the others
 *                together (the hooks below point into it)
 *   loop.c       the lws context and its loop (libuv, else poll)
 *   tls.c        the websocket port's certificate: checked at start, reloaded
 *   http.c       plain HTTP: health checks, /metrics, CORS, and the HTTP API's
 *                requests handed to api.c
 *   api.c        deepstream's HTTP API: a request runs as a session without a
 *                websocket; jif.c its operations' format, token.c its tokens
 *   dispatch.c   one client frame: handshake, ping, auth, then the topic table
 *   auth.c       logins: the auth list run in order, the checking pool, the
 *                cache (auth_cache.c); a strategy per module (auth_none.c,
 *                auth_file.c, auth_http.c, auth_jwt.c)
 *   permit.c     permissions: the check of one client operation at the door
 *   gate.c       messages whose rules read other records wait for those reads
 *   topics.c     the topic table: every topic module's row, and the fan-outs
 *                that walk it (client messages, deliveries, fails, resyncs)
 *   events.c records.c rpc.c presence.c   one topic module each
 *   listen.c     listening, for the events and records modules
 *   links.c      the links to nodes (local_link.c: the in-process node)
 *   acks.c       what clients wait for: acknowledgements and owed answers
 *   reply.c      one builder for every topic's message to a client
 *   admit.c      which connections are let in: per address, and a bound on
 *                those not logged in (the oldest makes way)
 *   limits.c     what one connection may do: its message rate, its
 *                subscriptions per topic
 *   session.c    one websocket client, and the set of them
 *   traffic.c    client messages counted by topic and action, for /metrics
 *   frames.c     refcounted encoded frames
 *
 * Everything here runs on the service thread unless a prototype says otherwise. */
#ifndef EDDY_BROKER_INTERNAL_H
#define EDDY_BROKER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <libwebsockets.h>

#include "bucket.h"
#include "local_node.h"
#include "config.h"
#include "deepstream.pb-c.h"
#include "frames.h"
#include "ops.h"
#include "shardmap.h"

/* ---------------- traffic.c ---------------- */

/* Client messages received and sent over websockets, by topic and action:
 * counted on the hot path with an array index and nothing else (no
 * allocation, no string); the names come from the protobuf enums only when
 * /metrics is written. Topics 0-11 have a slot each, TOPIC_ERROR (100) one,
 * any other value the last; actions 0-63 and 100-163 (deepstream's error
 * actions) have a slot each, any other the last. */
#define TRAFFIC_TOPICS 14
#define TRAFFIC_ACTIONS 129
typedef struct traffic {
    uint64_t received[TRAFFIC_TOPICS][TRAFFIC_ACTIONS];
    uint64_t sent[TRAFFIC_TOPICS][TRAFFIC_ACTIONS];
} traffic;

static inline uint8_t traffic_topic(int topic)
{
    return topic >= 0 && topic < 12 ? (uint8_t)topic : topic == 100 ? 12 : 13;
}

static inline uint8_t traffic_action(int action)
{
    return action >= 0 && action < 64 ? (uint8_t)action
           : action >= 100 && action < 164 ? (uint8_t)(action - 36)
                                           : TRAFFIC_ACTIONS - 1;
}

/* The action of a packed inner message (every topic's message has it as
 * field 1, which protobuf writes first): 0 when it is absent, -1 when it
 * cannot be read. Looks at no more than its first 6 bytes. */
static inline int traffic_peek_action(const uint8_t *inner, size_t len)
{
    if (len == 0 || inner[0] != 0x08) /* field 1, varint */
        return 0;
    uint32_t v = 0;
    for (size_t i = 1; i < len && i < 6; i++) {
        v |= (uint32_t)(inner[i] & 0x7f) << (7 * (i - 1));
        if ((inner[i] & 0x80) == 0)
            return v <= INT32_MAX ? (int)v : -1;
    }
    return -1;
}

/* Writes the eddy_client_messages_{received,sent}_total families (only the
 * slots that counted something) to f. */
void traffic_metrics(const traffic *t, FILE *f);

/* ---------------- session.c ---------------- */

typedef struct sessions sessions;

enum session_state { SESSION_AWAITING_CHALLENGE = 0, SESSION_AWAITING_AUTH, SESSION_OPEN };

/* One websocket client. The memory is lws's per-connection user data. */
typedef struct gate_state gate_state;
typedef struct session_sink session_sink;

typedef struct session {
    uint64_t id;
    sessions *set;
    struct lws *wsi;       /* NULL once closed */
    enum session_state state;
    bool closing;          /* close once the out queue is flushed */
    int close_code;        /* the close frame's status then (0: none; session_close_with; < 0 once sent) */
    bool auth_pending;     /* a login is being checked (auth.c) */
    int auth_attempts;
    char *conn_data;       /* until login: deepstream's connectionData (JSON text) when a strategy uses it */
    char *user;            /* user id after login */
    char *server_data;     /* JSON text of the user's serverData (file auth), or NULL */
    int64_t last_rx_ms;
    /* inbound reassembly, bounded by maxMessageSize */
    uint8_t *rx;
    size_t rx_len, rx_cap;
    /* outbound ring of frame references, bounded by maxOutboundBytes */
    frame **out;
    size_t out_head, out_len, out_cap, out_bytes;
    lws_sorted_usec_list_t auth_timer;
    gate_state *gate;      /* gate.c: messages waiting on records their rules read; NULL: none */
    int32_t message_action; /* the action of the client message being handled (a rule's `action`) */
    bool flush_due;        /* on the set's flush list (frames queued this loop turn) */
    struct session *next_flush;
    /* limits.c: the message rate, and refusals counted in windows of 10 s */
    bucket rx_rate;
    int64_t refused_since;
    uint32_t refused;
    int64_t ping_credit_ms;   /* when a PING last passed with the bucket empty */
    uint32_t subs_in_flight;  /* record subscribes sent, not yet answered (records.c) */
    bool converging;          /* records.c: has had a record copy to correct (converge.c says which) */
    /* admit.c: the list of connections not logged in (oldest first), the peer's address */
    struct session *pre_prev, *pre_next;
    bool pre_listed;
    uint8_t peer[16], peer_len;
    const char *close_reason; /* static text for close_code */
    /* not a websocket: an HTTP API request (api.c) whose operations run as a session's */
    const session_sink *sink;
    void *sink_ctx;
} session;

/* Where a session without a websocket (sink non-NULL) hears what a websocket
 * client would: every message meant for it, its login's answer, and that
 * its messages waiting on records (gate.c) went on. */
struct auth_outcome;
struct session_sink {
    void (*frame)(session *s, frame *f); /* f is borrowed */
    void (*checked)(session *s, const struct auth_outcome *o); /* auth_request's answer */
    void (*resumed)(session *s);
    /* a changeset of s (changesets_submit) has its outcome: JSON text as
     * node/changeset.c words it (borrowed) */
    void (*changeset)(session *s, const char *outcome);
};

/* The open sessions of a broker, by id, and the end-of-turn flush. cfg is
 * borrowed. Owned by the caller. */
sessions *sessions_new(const eddy_config *cfg);
void sessions_free(sessions *set); /* NULL is fine */
/* The loop runs on ctx: end-of-turn flushes can be scheduled from now on, and
 * the heartbeat sweep runs (a connection silent for twice heartbeatInterval
 * is closed: clients PING every interval). */
void sessions_start(sessions *set, struct lws_context *ctx);
/* The loop is stopping: cancels the timers (before the context goes). */
void sessions_stop(sessions *set);
size_t sessions_count(const sessions *set);
/* The client message counters of every websocket session of the set. */
traffic *sessions_traffic(sessions *set);
/* The open session with this id, or NULL. */
session *sessions_get(const sessions *set, uint64_t id);
/* End of a loop turn: writes what each session queued during it straight to
 * its socket (one send per session per turn), or asks for writable when the
 * socket is full. */
void sessions_flush(sessions *set);

/* A connection was established: s (lws's memory) becomes a session of set. */
void session_open(sessions *set, session *s, struct lws *wsi);
/* s (the caller's memory) becomes a session of set without a websocket:
 * what it is sent goes to sink (ctx in s->sink_ctx). No timers run for it. */
void session_open_sink(sessions *set, session *s, const session_sink *sink, void *ctx);
/* The connection closed: forgets s and frees what it holds (its topics have
 * already let go of it). */
void session_closed(session *s);
/* Credentials arrived (waiting true): the unauthenticated timer stops while
 * they are checked; they were refused (false): it runs again in full. */
void session_auth_wait(session *s, bool waiting);
/* Logs s in as user (copied); server_data (JSON text, copied) may be NULL. */
void session_login(session *s, const char *user, const char *server_data);
/* Queues f (a new reference is taken) for s; a session over its outbound bound
 * is disconnected as a slow consumer. */
void session_send(session *s, frame *f);
/* Encodes and queues one message for s. */
void session_send_msg(session *s, int topic, const ProtobufCMessage *inner);
/* Marks s to close after its queued frames are written. */
void session_close_after_flush(session *s);
/* The same, the close frame saying code (an LWS_CLOSE_STATUS_*) and reason
 * (static text). */
void session_close_with(session *s, int code, const char *reason);
/* Closes s now (from outside its callback); reason is logged. */
void session_kill(session *s, const char *reason);
/* session_kill without the line: for closes a caller logs itself, rate-limited. */
void session_abort(session *s);
/* The socket is writable; returns -1 when the connection must close. */
int session_writeable(session *s);
/* Feeds one received websocket fragment. Returns 1 when a whole message is
 * ready (*msg, *len; valid until the next call), 0 when more is to come, -1
 * when the connection must close. */
int session_receive(session *s, const void *in, size_t len, const uint8_t **msg, size_t *msg_len);

/* ---------------- reply.c ---------------- */

/* Any topic's message to a client. Unset fields (NULL, 0, false) are left out;
 * a field the topic's message does not have is ignored. */
typedef struct reply {
    int action;
    const char *name, *data, *correlation_id, *subscription, *path;
    const char *requestor_name, *requestor_data;
    char **names;
    size_t n_names;
    int orig;       /* originalAction; 0: none */
    int orig_topic; /* originalTOPIC; 0: none */
    bool is_ack, is_error, is_write_ack;
    bool has_version;
    int32_t version;
} client_reply;

/* The encoded frame of r on topic (owned by the caller). */
frame *reply_frame(int topic, const client_reply *r);
/* Encodes r and queues it for s. */
void reply_send(session *s, int topic, const client_reply *r);
/* The PARSER topic's answer (action) about a message of topic with action
 * orig (0: none). */
void reply_parser_error(session *s, int action, int topic, int orig);
/* PARSER UNKNOWN_ACTION for an action a topic does not have (logged at debug). */
void reply_unknown_action(session *s, int topic, int action);
/* Answers a message of topic (inner: its packed inner message) that was not
 * processed with the topic's MESSAGE_DENIED, isError, its correlationId and
 * isWriteAck, and its action as originalAction: one per name of a bulk
 * message, else one with its name. Nothing for topics without MESSAGE_DENIED
 * (CONNECTION, AUTH, PARSER) or an undecodable message. Returns how many. */
size_t reply_denied(session *s, int topic, const uint8_t *inner, size_t len);

/* ---------------- acks.c ---------------- */

/* What clients wait for from nodes, per link. An acknowledgement (ack) is sent
 * to its session once every operation batch it waits on has been answered by
 * its node. An owed answer is a record request whose answer comes later as a
 * delivery (RECORD_STATE, a write's RECORD_RESULT); when the node goes down,
 * every requester still owed is answered with an error at once. */
typedef struct acks acks;
typedef struct ack ack;

/* fail(ctx, o) answers the requester of an owed request o with an error and
 * returns 1 when there was one to answer. set is borrowed. */
acks *acks_new(sessions *set, int (*fail)(void *ctx, const op *o), void *ctx);
void acks_free(acks *a); /* NULL is fine; pending acks are dropped */
/* A new acknowledgement of action on topic for s, held by the caller until
 * ack_release. correlation_id is copied (may be NULL). */
ack *ack_new(acks *a, session *s, int topic, int action, const char *correlation_id);
/* k also waits for batch seq of link li (nothing when already answered). */
void ack_wait(acks *a, ack *k, int li, uint64_t seq);
/* Drops the caller's hold: k is sent once nothing else holds it. */
void ack_release(acks *a, ack *k);
/* Drops the caller's hold of a k that waits on nothing, which is never sent
 * (a bulk message whose every name was denied gets no acknowledgement). */
void ack_discard(acks *a, ack *k);
/* Link li's node answered batch seq (and every one before it). */
void acks_batch_answered(acks *a, int li, uint64_t seq);
/* o was queued for link li: remembers it when its requester waits for an answer. */
void acks_owe(acks *a, int li, const op *o);
/* A delivery from link li: settles the request it answers, if any. */
void acks_settle(acks *a, int li, const op *answer);
/* Link li's node refused request o (its echo in a WRONG_SHARD error): forgets
 * one owed answer of it. Returns true when one was owed (its requester waits
 * still: the caller answers it), false when none was (answered already). */
bool acks_unowe(acks *a, int li, const op *o);
/* Link li's node went down: every owed requester is failed. Returns how many
 * were answered. */
uint64_t acks_fail_link(acks *a, int li);
/* Link li's node lost the shards set in moved (a bit per shard, shardmap_moved):
 * the requesters owed for names of those shards are failed. Returns how many
 * were answered. */
uint64_t acks_fail_shards(acks *a, int li, const uint8_t *moved);
/* True when o is a request whose answer is owed (acks_owe remembers it): a
 * batch carrying it that fails leaves it to acks_fail_link. */
bool acks_tracks(const op *o);

/* ---------------- links.c, local_link.c ---------------- */

typedef struct link_set link_set;

/* What the links' callbacks hand the service thread (through link_hooks.post). */
enum inbound_kind {
    INBOUND_REPLY = 1,
    INBOUND_DELIVERY = 2,
    INBOUND_RESYNC = 4,
    INBOUND_FAILED = 5,   /* an op_batch the node will not answer */
    INBOUND_NODE_DOWN = 6 /* the last connection to a node dropped */
};

/* Where the links send what they learn (the broker wires them to the topic
 * table and its loop). ctx is passed to every hook. */
typedef struct link_hooks {
    /* any thread: queue item for the service thread; -1 when full (item stays the caller's) */
    int (*post)(void *ctx, int kind, int li, uint64_t seq, void *item);
    void (*wake)(void *ctx); /* any thread: the in-process node has deliveries */
    void (*deliver)(void *ctx, const op *o);
    int (*fail)(void *ctx, const op *o); /* a request its node will not answer */
    void (*resync)(void *ctx, int li);   /* register everything for node li again */
    void (*recover)(void *ctx, int li);  /* deliveries from li were lost */
    void *ctx;
} link_hooks;

/* Dials every node of cfg and starts the links, or, with `local`,
 * attaches to the in-process node. cfg, local, a and hooks are borrowed.
 * Returns NULL (logged) on failure. */
link_set *links_create(const eddy_config *cfg, uint64_t broker_id, const local_node *local, acks *a,
                       const link_hooks *hooks);
/* The loop runs on ctx (local batches are flushed by its timers) / is stopping. */
void links_start(link_set *ls, struct lws_context *ctx);
void links_stop(link_set *ls);
/* Flushes what is queued, stops the threads, closes the sockets; NULL is fine. */
void links_destroy(link_set *ls);
/* SIGHUP: the cluster.tls files again for the links' next connections (logs either way). */
void links_reload_tls(link_set *ls);
/* Service thread: what a link posted (a reply, msg NULL when the
 * request failed, or a delivery, ...). Takes ownership of msg. */
void links_handle_inbound(link_set *ls, int kind, int li, uint64_t seq, void *msg);
/* Takes what the in-process node has delivered (no-op without one). */
void links_poll_local(link_set *ls);
/* Queues o for the node that owns o->name (shard and epoch are filled in).
 * Returns the link index and, in *seq (unless NULL), the batch number o travels
 * in; -1 when the link's queue is over its bound (o is dropped and counted). */
int links_submit(link_set *ls, op *o, uint64_t *seq);
/* The same, routed by `route` instead of o->name (listen answers go to the
 * owner of the subscription). */
int links_submit_by(link_set *ls, op *o, strview route, uint64_t *seq);
/* Queues o for node li (operations meant for every node). */
int links_submit_to(link_set *ls, int li, op *o, uint64_t *seq);
int links_count(const link_set *ls);
/* The link index of the node owning name. */
int links_owner(const link_set *ls, strview name);
/* Sends node li again what table holds (a node came back, or lost deliveries):
 * for every name with holders that li owns, an operation like tmpl about it;
 * with LINKS_PER_HOLDER one per holder (a session: tmpl's session is its id);
 * with LINKS_EVERY_NODE for every name, li owning it or not (listen patterns). */
enum { LINKS_PER_HOLDER = 1, LINKS_EVERY_NODE = 2 };
struct subs;
void links_resend(link_set *ls, int li, const struct subs *table, const op *tmpl, int flags);
bool links_refused(const link_set *ls); /* a node refused this broker's shard map */
/* True while hooks.resync runs for a map move (only the moved shards' names
 * are resent; what every node holds, such as presence "everyone", is not). */
bool links_moving(const link_set *ls);
bool links_ready(const link_set *ls);   /* every node delivers to this broker */
/* Writes the links' counters (Prometheus text format) to f. */
void links_metrics(const link_set *ls, FILE *f);

/* The in-process node's link: operations gather in a batch applied by one
 * direct call at the start of the next loop turn. */
typedef struct local_link local_link;
/* Attaches to ln (borrowed) as peer broker_id and gathers hello first.
 * flush(flush_ctx) is called when the gathered batch is due; the node calls
 * wake(wake_ctx), from its threads, when it has deliveries we did not cause.
 * Owned by the caller. */
local_link *local_link_open(const local_node *ln, uint64_t broker_id, const op *hello,
                            void (*flush)(void *ctx), void *flush_ctx, void (*wake)(void *ctx), void *wake_ctx);
/* Gathers o; returns the number of the batch it travels in. */
uint64_t local_link_submit(local_link *l, const op *o);
/* Applies the gathered batch as *seq; returns the node's reply (owned by the
 * caller; NULL when out of memory). *seq is 0 when nothing was gathered. */
nng_msg *local_link_apply(local_link *l, uint64_t *seq);
/* The oldest delivery (owned by the caller) or NULL; then *published is how
 * many operations the node has numbered for us. */
nng_msg *local_link_take(local_link *l, uint64_t *published);
void local_link_start(local_link *l, struct lws_context *ctx);
void local_link_stop(local_link *l); /* cancels the flush timer */
/* Applies what is gathered (answers dropped), detaches, frees. NULL is fine. */
void local_link_close(local_link *l);

/* ---------------- the topic table: topics.c ---------------- */

/* What every topic module is given (borrowed; outlives the modules). */
typedef struct permit permit;
typedef struct limits limits;

typedef struct edge {
    const eddy_config *cfg;
    uint64_t broker_id;
    sessions *sessions;
    link_set *links;
    acks *acks;
    permit *permit;
    void (*resume)(void *ctx, session *s); /* gate.c: s's waiting messages may go on (topics_resume) */
    void *resume_ctx;
    limits *limits;
} edge;

/* One topic: a row of the table, a module of its own. Hooks get the state
 * `create` returned. Deliveries of the kinds listed reach `deliver`; requests
 * of the kinds in `requests` that a node will not answer reach `fail`. */
typedef struct topic_module {
    const char *name;
    int topic;                                 /* TOPIC__TOPIC_* */
    const ProtobufCMessageDescriptor *message; /* the topic's client message */
    const uint32_t *deliveries;                /* op kinds, 0-terminated */
    const uint32_t *requests;                  /* op kinds, 0-terminated */
    void *(*create)(const edge *e);
    void (*destroy)(void *self);
    void (*handle)(void *self, session *s, const ProtobufCMessage *m, int action); /* action 0: none */
    void (*deliver)(void *self, const op *o);
    int (*fail)(void *self, const op *o);     /* 1: a requester was answered */
    void (*login)(void *self, session *s);    /* may be NULL */
    void (*session_closed)(void *self, session *s);
    void (*resync)(void *self, int li);       /* re-register what node li holds for us */
    void (*recover)(void *self, int li);      /* may be NULL: deliveries from li were lost */
    void (*metrics)(void *self, FILE *f);     /* may be NULL */
} topic_module;

extern const topic_module events_module, records_module, rpc_module, presence_module, changesets_module;

/* ---------------- changesets.c ---------------- */

struct cs_item;
/* Sends the changeset items (n, borrowed; common/changeset.h) of s, a sink
 * session (the HTTP API), to the node owning its records, once it passed the
 * checks done here: one shard, each record once, every operation's
 * permissions (a rule that reads the record goes with it to the node). Its
 * outcome comes to s->sink->changeset. Returns 0 when sent, else -1 with
 * *refusal the outcome (JSON text, xmalloc'd, the caller's). */
int changesets_submit(const edge *e, session *s, const struct cs_item *items, size_t n, char **refusal);

typedef struct topics topics;
topics *topics_create(const edge *e);
void topics_destroy(topics *t); /* NULL is fine */
/* Decodes and handles one client message of topic for the logged-in s;
 * false when no module has that topic. */
bool topics_handle(topics *t, session *s, int topic, const uint8_t *inner, size_t len);
void topics_deliver(topics *t, const op *o);
int topics_fail(topics *t, const op *o);
void topics_login(topics *t, session *s);
void topics_session_closed(topics *t, session *s);
/* s's messages that waited on records for their rules go on (gate.c). */
void topics_resume(topics *t, session *s);
void topics_resync(topics *t, int li);
void topics_recover(topics *t, int li);
void topics_metrics(topics *t, FILE *f);

/* ---------------- listen.c ---------------- */

/* Listening on one topic (events or records): patterns are checked here and
 * sent to every node, remembered per session for unlisten on close and for
 * resyncs; accept/reject go to the subscription's owner. */
typedef struct listen_set listen_set;
listen_set *listen_set_new(const edge *e, int topic);
void listen_set_free(listen_set *l); /* NULL is fine */
/* Handles LISTEN/UNLISTEN/LISTEN_ACCEPT/LISTEN_REJECT; false for other actions. */
bool listen_handle(listen_set *l, session *s, int action, const char *pattern, const char *subscription);
void listen_session_closed(listen_set *l, session *s);
void listen_resync(listen_set *l, int li);
/* An OP_LISTEN_MESSAGE; ignored unless it is about this set's topic. */
void listen_deliver(listen_set *l, const op *o);

/* ---------------- converge.c ---------------- */

/* Which sessions' record copies records.c must bring back to the server's
 * after writes that did not apply (their client raised its version anyway).
 * Names are copied; sessions are ids. Bounded per session (CONVERGE_NAMES,
 * overflow policy in converge.c). */
#define CONVERGE_NAMES 16
typedef struct converge converge;
converge *converge_new(void);
void converge_free(converge *c); /* NULL is fine */
/* session's write to name was refused or lost while node li (its owner) was
 * down: converge_take hands it over once li is back. */
void converge_lost(converge *c, uint64_t sid, strview name, int li);
/* session's write to name was refused for another reason (its copy may be
 * ahead again), or one applied (what was refused before it is answered): the
 * next INVALID_VERSION correction goes out. */
void converge_rearm(converge *c, uint64_t sid, strview name);
/* session's write to name applied: its copy is the record's, nothing about
 * the name is pending or corrected any more (a read out is held back). */
void converge_applied(converge *c, uint64_t sid, strview name);
/* A correction read of name (owned by li) went out for session; each is ended
 * by converge_read_done, answered or failed. */
void converge_reading(converge *c, uint64_t sid, strview name, int li);
/* session wrote name (sent, held or refused): a read out is older than that. */
void converge_wrote(converge *c, uint64_t sid, strview name);
/* A correction read of name for session came back (or failed): whether its
 * state may be pushed, false when the session wrote the name meanwhile. */
bool converge_read_done(converge *c, uint64_t sid, strview name);
/* Whether a correction of session's copy of name (owned by li) goes out now:
 * false when one went out since its last refused write (recorded as sent). */
bool converge_correct(converge *c, uint64_t sid, strview name, int li);
/* What is due when node li is back: a session and a name (owned by the array),
 * or name NULL: every record the session holds from li. */
typedef struct converge_due {
    uint64_t session;
    char *name;
} converge_due;
/* Takes (clears) what is due for li; *n entries, free with converge_due_free. */
converge_due *converge_take(converge *c, int li, size_t *n);
void converge_due_free(converge_due *due, size_t n);
void converge_forget(converge *c, uint64_t sid); /* the session closed */
size_t converge_sessions(const converge *c);         /* sessions with something to converge */
uint64_t converge_overflows(const converge *c);      /* times a session went over CONVERGE_NAMES */
uint64_t converge_held(const converge *c);           /* correction reads held back (converge_read_done) */

/* ---------------- loop.c ---------------- */

/* The broker's event loop (lws on libuv, else poll). Its hooks say what
 * happens on a connection; ctx is passed to every hook. */
typedef struct loop loop;
typedef struct loop_hooks {
    void (*started)(void *ctx, struct lws_context *lws); /* timers may be scheduled on lws from now */
    void (*stopping)(void *ctx);   /* before the context goes: cancel every timer on it */
    void (*stopped)(void *ctx);    /* the loop has stopped serving (a log line) */
    /* a websocket handshake on socket fd, before it is answered: -1 refuses
     * it (closed at once). May be NULL. */
    int (*admit)(void *ctx, int fd);
    void (*opened)(void *ctx, session *s, struct lws *wsi);
    int (*received)(void *ctx, session *s, const void *in, size_t len); /* -1: close */
    void (*closed)(void *ctx, session *s);
    /* plain HTTP: lws's HTTP callbacks (reason: LWS_CALLBACK_HTTP, ...) */
    int (*http)(void *ctx, struct lws *wsi, int reason, void *in, size_t len);
    void (*woken)(void *ctx);      /* loop_wake was called (or the loop starts) */
    void (*tick)(void *ctx);       /* every 200 ms while serving (may be NULL) */
    void *ctx;
} loop_hooks;

/* cfg and hooks are borrowed (hooks copied). Owned by the caller. */
loop *loop_new(const eddy_config *cfg, const loop_hooks *hooks);
/* Listens on cfg's host and port and serves until *stop becomes non-zero.
 * Returns 0, or -1 (logged) when it could not start. */
int loop_run(loop *l, volatile sig_atomic_t *stop);
/* Any thread (not a signal handler): the loop calls hooks.woken soon. */
void loop_wake(loop *l);
/* Closes every connection (closed hooks run) and frees the context; from
 * then on loop_wake does nothing (other threads may still call it). NULL is fine. */
void loop_close(loop *l);
/* loop_close, then frees l: once no other thread can call loop_wake. NULL is fine. */
void loop_free(loop *l);

/* ---------------- limits.c, admit.c ---------------- */

/* What one connection may do (cfg's limits.*), and the counters of what was
 * refused. cfg is borrowed. Owned by the caller. */
limits *limits_new(const eddy_config *cfg);
void limits_free(limits *l); /* NULL is fine */
/* One whole message from s (s->last_rx_ms is the time it arrived): true when
 * it is to be processed. Otherwise s is over limits.messageRate: the message
 * has been answered (its topic's MESSAGE_DENIED, or AUTH_UNSUCCESSFUL for a
 * login) and counted, and s closed when it keeps at it (limits.maxRefusedMessages).
 * A CONNECTION message (a PING) still passes once a second. */
bool limits_message(limits *l, session *s, const uint8_t *msg, size_t len);
/* s holds `held` names of topic: true when it may take a new one; otherwise
 * it is counted and logged, and the caller answers MESSAGE_DENIED for the
 * name and changes nothing (limits.maxSubscriptionsPerConnection). */
bool limits_subscribe(limits *l, const session *s, int topic, size_t held);
/* Writes the counters (Prometheus text format) to f. */
void limits_metrics(const limits *l, FILE *f);

/* Which connections are let in: at most limits.maxConnectionsPerIp per peer
 * address, and at most limits.maxUnauthenticatedConnections not logged in (at
 * most half the open-file limit). cfg is borrowed. Owned by the caller. */
typedef struct admit admit;
admit *admit_new(const eddy_config *cfg);
void admit_free(admit *a); /* NULL is fine */
/* The loop runs: reads the open-file limit (raised by then) and logs the limits. */
void admit_start(admit *a);
/* A websocket handshake on socket fd: false when its address holds its share
 * already (counted and logged; the loop closes it). Plain HTTP (/metrics,
 * /health-check) is never refused. */
bool admit_peer(admit *a, int fd);
/* s was established: counted under its address and among those not logged
 * in; beyond the bound, the one that has waited longest without a login being
 * checked is closed to make room (s itself when every other one is being checked). */
void admit_opened(admit *a, session *s);
/* s logged in / closed (before session_closed). */
void admit_logged_in(admit *a, session *s);
void admit_closed(admit *a, session *s);
void admit_metrics(const admit *a, FILE *f);

/* ---------------- permit.c ---------------- */

#include "permissions.h"

#define AUTH_OPEN_USER "open" /* auth none's user without a username: user.isAuthenticated false */

enum permit_answer {
    PERMIT_ALLOW,  /* go on */
    PERMIT_DENY,    /* answer MESSAGE_DENIED; nothing changes */
    PERMIT_ERROR,   /* the rule failed: answer MESSAGE_PERMISSION_ERROR; nothing changes */
    PERMIT_AT_NODE  /* a record rule that reads the record (or another one): the owning node decides */
};

/* The permissions of cfg (borrowed): none, or permission.options.permissions
 * compiled. Returns NULL with one line in err when the file does not compile.
 * Owned by the caller (permit_free). */
permit *permit_new(const eddy_config *cfg, char *err, size_t err_len);
void permit_free(permit *p); /* NULL is fine */
/* Compiles the file again and swaps it in; on failure (-1, err) the old rules stay. */
int permit_reload(permit *p, char *err, size_t err_len);
/* False with permission.type none (nothing is checked). */
bool permit_active(const permit *p);
/* The user s is logged in as, for a check (pointers into s). */
void permit_user(const session *s, perm_user *u);
/* Checks one operation of s on name (data: the message's JSON text, may be NULL). */
enum permit_answer permit_check(permit *p, const session *s, enum perm_section section, enum perm_action action,
                                const char *name, const char *data);
void permit_metrics(const permit *p, FILE *f);
/* The action that answers a refusal (PERMIT_DENY or PERMIT_ERROR) on topic:
 * MESSAGE_DENIED or MESSAGE_PERMISSION_ERROR. */
int permit_refusal(int topic, enum permit_answer a);
/* Marks o for the owner's check (PERMIT_AT_NODE): OP_FLAG_CHECK, s's user in
 * o->user and o->meta, the records read for it in o->refs (pointers into s,
 * valid while the message is handled). */
void permit_to_owner(session *s, op *o);

/* The rules in force (NULL with permission.type none). */
const permissions *permit_rules(const permit *p);

/* ---------------- gate.c ---------------- */

/* The corr of the record reads gate.c makes for rules (their answers go back to it). */
#define GATE_CORR (UINT64_MAX - 1)

/* True while s has messages waiting (a new one must wait behind them). */
bool gate_busy(const session *s);
/* Queues a message of s behind those waiting (bytes copied). */
void gate_queue(session *s, int topic, const uint8_t *bytes, size_t len);
/* Before msg (topic's message, bytes as received) reaches its module: reads
 * the records its rules read that are not read yet. True when it may go on
 * now; false when it waits (bytes copied) until they are read. */
bool gate_admit(const edge *e, session *s, int topic, const ProtobufCMessage *msg, int action, const uint8_t *bytes,
                size_t len);
/* The records read for the message being handled (NULL: none); *failed when
 * a read failed (its rules that read records fail). */
const perm_records *gate_read(const session *s, bool *failed);
/* Those records as a JSON object for the owning node (valid until gate_done), or NULL. */
const char *gate_refs(session *s);
/* The message has been handled: what was read for it is forgotten. */
void gate_done(session *s);
/* A read for s's waiting message came back (json NULL: no such record; ok
 * false: it failed). True when it was the last: resume s (edge.resume). */
bool gate_fetched(session *s, strview name, const char *json, size_t json_len, bool ok);
/* The message at the head of s's queue, once nothing is being read (bytes
 * owned by the caller, xfree); false when none may go on. */
bool gate_next(session *s, int *topic, uint8_t **bytes, size_t *len);
void gate_session_closed(session *s); /* frees what s holds here */

/* ---------------- jif.c ---------------- */

/* What an HTTP API operation is, by the answer it waits for. */
enum jif_kind { JIF_EMIT, JIF_RPC, JIF_READ, JIF_HEAD, JIF_WRITE, JIF_DELETE, JIF_NOTIFY, JIF_PRESENCE, JIF_CHANGESET };

/* One operation of deepstream's JSON Interchange Format, parsed: the client
 * message a websocket client would send for it. */
typedef struct jif_op {
    enum jif_kind kind;
    uint32_t index;   /* its place in the request: its correlationId */
    int topic;        /* TOPIC__TOPIC_* */
    uint8_t *msg;     /* the packed inner message (owned; jif_op_clear) */
    size_t msg_len;
    struct cs_item *items; /* JIF_CHANGESET (eddy's): its operations (owned; jif_op_clear), no msg */
    size_t n_items;
} jif_op;

struct jspan;
/* Checks token item of doc (operation number index of a request; doc indexes
 * at least two levels below item: its members and their arrays' elements)
 * against deepstream's schema and builds its message (jo's, jif_op_clear;
 * nothing of doc is kept). Returns 0, or -1 with the reason in err
 * ("property 'eventName' is required for topic 'event'"). */
int jif_parse(const struct jspan *doc, uint32_t item, uint32_t index, jif_op *jo, char *err, size_t err_len);
void jif_op_clear(jif_op *jo); /* NULL is fine */
/* A client message (topic, packed inner) sent to the session running op:
 * 1 when it answers op, with *result its result as JSON text (xmalloc'd);
 * 0 when op still waits (an RPC's ACCEPT, an ack) or it is not about op. */
int jif_answer(const jif_op *jo, int topic, const uint8_t *inner, size_t len, char **result);
/* SUCCESS, FAILURE or PARTIAL_SUCCESS for n results (NULL ones failed). */
const char *jif_outcome(char *const *results, size_t n);
extern const char JIF_SUCCESS[], JIF_EMIT_DENIED[], JIF_TIMEOUT[];

/* ---------------- dispatch.c, auth.c, http.c ---------------- */

typedef struct auth auth;
/* What auth tells the broker. ctx is passed to both. */
typedef struct auth_hooks {
    void (*wake)(void *ctx);              /* any thread: checks finished; call auth_drain */
    void (*login)(void *ctx, session *s); /* a session logged in (the topics hear of it) */
    void *ctx;
} auth_hooks;
/* Makes every strategy of cfg's auth list (cfg and set borrowed, hooks
 * copied). NULL (logged) on failure; *config_error when the configuration is
 * at fault (a users file, a key file, an unknown digest). */
auth *auth_create(const eddy_config *cfg, sessions *set, const auth_hooks *hooks, bool *config_error);
/* Stops the checking threads; logins still being checked are dropped. NULL is fine. */
void auth_destroy(auth *a);
/* Handles AUTH REQUEST data (may be NULL) for s. */
void auth_request(auth *a, session *s, const char *data);
/* Answers the logins whose checks finished on other threads. */
void auth_drain(auth *a);
/* True when a strategy sends deepstream's connectionData (an http webhook):
 * then sessions keep their handshake in conn_data until login. */
bool auth_wants_connection_data(const auth *a);
/* Writes auth's counters (Prometheus text format) to f. */
void auth_metrics(auth *a, FILE *f);

/* ---- the strategies (one module each) and what they share with auth.c ---- */

/* A strategy's answer to a login: not its user (the next strategy is asked;
 * when none is left the login fails), yes, or no. */
enum auth_verdict { AUTH_PASS = 0, AUTH_ACCEPT = 1, AUTH_REJECT = 2 };

/* Strings are xmalloc'd and owned by the outcome (auth_outcome_clear). */
typedef struct auth_outcome {
    enum auth_verdict verdict;
    char *user_id;       /* ACCEPT */
    char *client_data;   /* JSON text or NULL: AUTH_SUCCESSFUL's / AUTH_UNSUCCESSFUL's data */
    char *server_data;   /* ACCEPT: JSON text or NULL */
    char *token;         /* ACCEPT, a webhook's: the token the HTTP API's authPath answers, or NULL */
    const char *reason;  /* static: why, for the log line (AUTH_REASON_BUSY: refused unchecked) */
    int64_t cache_until; /* ACCEPT: wall-clock ms up to which the cache may answer it again (0: never) */
} auth_outcome;

extern const char AUTH_REASON_BUSY[]; /* too many logins being checked: not the client's fault */

/* One login being checked: handed from thread to thread, one at a time.
 * Strategies read the public part; auth.c owns it. */
struct json_t;
typedef struct auth_login {
    uint64_t session_id;
    struct json_t *data;  /* authData: a JSON object */
    char *data_text;      /* authData as the client sent it */
    char *conn_data;      /* connectionData JSON text ("{}" when not kept) */
    /* auth.c's */
    struct auth *owner;
    int next;             /* the strategy asked now */
    auth_outcome out;
    struct auth_login *next_done;
} auth_login;

/* A row of the strategy table. */
enum auth_run {
    AUTH_RUN_INLINE, /* check on the service thread: costs nothing */
    AUTH_RUN_POOL,   /* check on a worker of the pool: CPU-bound (a hash, a signature) */
    AUTH_RUN_ASYNC   /* start, and answer later from the strategy's own thread (I/O) */
};
typedef struct auth_strategy_ops {
    const char *type;
    enum auth_run run;
    bool wants_connection_data;
    /* Strategy `index` of cfg's list (cfg borrowed: outlives it); NULL with
     * a message in err when its configuration is unusable. */
    void *(*create)(const eddy_config *cfg, int index, char *err, size_t err_len);
    void (*destroy)(void *self); /* NULL is fine; an ASYNC one drops its logins with auth_login_drop */
    /* INLINE, POOL: answers l in *out (zeroed). Any worker at once: thread-safe. */
    void (*check)(void *self, const auth_login *l, auth_outcome *out);
    /* ASYNC (any thread): takes l; answers it once, later, with auth_step_done. */
    void (*start)(void *self, auth_login *l);
    /* May be NULL: the credential a cached answer is keyed by, written to buf
     * (at most cap bytes); returns its length, 0 when l has none. */
    size_t (*credential)(void *self, const auth_login *l, uint8_t *buf, size_t cap);
    /* May be NULL: the strategy's counters for /metrics, named by counter_names
     * (NULL-ended, at most 16; auth.c writes each as the counter family
     * eddy_auth_<type>_<name>_total, one sample per strategy of the type,
     * labelled strategy="<its index in the auth list>"). Fills values in that
     * order. Any thread. */
    const char *const *counter_names;
    void (*counters)(void *self, uint64_t *values);
} auth_strategy_ops;

extern const auth_strategy_ops auth_none_ops, auth_file_ops, auth_http_ops, auth_jwt_ops;

/* An ASYNC strategy answers l with out (any thread; out's strings are taken). */
void auth_step_done(auth_login *l, auth_outcome *out);
/* An ASYNC strategy that stops drops a login it never answered. */
void auth_login_drop(auth_login *l);
/* Frees out's strings and zeroes it. NULL is fine. */
void auth_outcome_clear(auth_outcome *out);
/* A refused login: with report, AUTH_REJECT with {"error": error} as data
 * (none when error is NULL); else AUTH_PASS (the next strategy is asked). */
void auth_refuse(auth_outcome *out, bool report, const char *error, const char *reason);
/* JSON text of v (xmalloc'd), or NULL for NULL. */
char *auth_json_text(const struct json_t *v);

/* auth_cache.c: answers of recent successful logins, keyed by a MAC (keyed
 * BLAKE2b under a secret drawn at start) of the strategy and the credential:
 * no password or token is kept, and a leaked users file still costs the full
 * hash per guess. Bounded (the oldest goes first) and expiring. Thread-safe. */
typedef struct auth_cache auth_cache;
auth_cache *auth_cache_new(int64_t ttl_ms, size_t max_entries); /* NULL when ttl_ms is 0 */
void auth_cache_free(auth_cache *c); /* NULL is fine */
/* On a hit fills *out (copies) and returns true. */
bool auth_cache_get(auth_cache *c, int strategy, const uint8_t *cred, size_t len, auth_outcome *out);
/* Remembers o (an ACCEPT, copied) until min(now + ttl, o->cache_until). */
void auth_cache_put(auth_cache *c, int strategy, const uint8_t *cred, size_t len, const auth_outcome *o);
void auth_cache_metrics(auth_cache *c, FILE *f);

/* One complete client frame from s. */
void dispatch_frame(topics *t, auth *a, session *s, const uint8_t *data, size_t len);

/* ---------------- http.c ---------------- */

/* Plain HTTP on the websocket port: health checks, /metrics, deepstream's
 * HTTP API (handed to api.c), CORS. cfg and a are borrowed; metrics writes
 * /metrics's body. Owned by the caller. */
typedef struct http_front http_front;
typedef struct http_conn http_conn; /* one request waiting for its answer */
typedef struct api api;
typedef struct api_request api_request;
http_front *http_front_new(const eddy_config *cfg, api *a, void (*metrics)(void *ctx, FILE *f), void *ctx);
void http_front_free(http_front *h); /* NULL is fine */
/* lws's HTTP callbacks (HTTP, HTTP_BODY, HTTP_BODY_COMPLETION,
 * HTTP_WRITEABLE, CLOSED_HTTP) for wsi. Returns the callback's result. */
int http_event(http_front *h, struct lws *wsi, int reason, void *in, size_t len);
/* Answers c's request (body copied; retry_after: a Retry-After header or
 * NULL); written when the socket is writable. NULL c is fine. */
void http_answer(http_conn *c, int status, const char *type, const char *body, size_t len, const char *retry_after);
/* The same with deepstream's plain-text error body. */
void http_answer_text(http_conn *c, int status, const char *text, const char *retry_after);
void http_metrics(const http_front *h, FILE *f);

/* ---------------- tls.c ---------------- */

/* True when the websocket port serves TLS (tls.cert given). */
bool tls_enabled(const eddy_config *cfg);
/* Checks tls.cert, tls.key and tls.ca with OpenSSL (readable, PEM, the key
 * matches, not expired, the CA loads). 0, or -1 with one line in err. */
int tls_check(const eddy_config *cfg, char *err, size_t len);
/* SIGHUP: the files again, checked; new connections get them (logged). 0,
 * or -1 (logged) with the certificate in use kept. */
int tls_reload(const eddy_config *cfg, struct lws_context *ctx);

/* ---------------- api.c, token.c ---------------- */

/* deepstream's HTTP API. cfg, set, t, au, e are borrowed. Owned by the caller. */
api *api_new(const eddy_config *cfg, sessions *set, topics *t, auth *au, const edge *e);
void api_free(api *a); /* NULL is fine; after every request has ended (loop_close) */
void api_start(api *a, struct lws_context *ctx);
void api_stop(api *a);
/* A POST to postPath (auth_only false) or authPath, its body read whole
 * (borrowed). Answers c through http_answer, now or later. Returns the
 * request while its answer is still to come (c tells api_gone when the
 * client leaves first), else NULL. */
api_request *api_post(api *a, http_conn *c, struct lws *wsi, bool auth_only, const char *body, size_t len);
/* r's client is gone: r ends (what it already sent stays sent). */
void api_gone(api_request *r);
void api_metrics(const api *a, FILE *f);

/* The tokens authPath hands out (token.c): HMAC-signed, not stored. */
typedef struct token_key token_key;
enum { TOKEN_OK = 0, TOKEN_INVALID = -1, TOKEN_EXPIRED = -2 };
/* The key of secret (a random one when secret is empty). Owned by the caller. */
token_key *token_key_new(const char *secret);
void token_key_free(token_key *k); /* NULL is fine */
/* True when token has the form token.c makes (then only token_verify decides). */
bool token_is_ours(const char *token);
/* A token for user (server_data, client_data: JSON text or NULL) valid until
 * expires_ms (Unix ms). xmalloc'd; NULL when out of memory. */
char *token_mint(const token_key *k, const char *user, const char *server_data, const char *client_data,
                 int64_t expires_ms);
/* TOKEN_OK with *user and *server_data (xmalloc'd; server_data may be
 * NULL), TOKEN_EXPIRED or TOKEN_INVALID. */
int token_verify(const token_key *k, const char *token, int64_t now_wall_ms, char **user, char **server_data);

/* deepstream's connectionData of a new websocket connection: {remoteAddress
 * (X-Forwarded-For, else the peer), headers (those lws parses), referer}, as
 * JSON text (xmalloc'd). */
char *loop_handshake_data(struct lws *wsi);

#endif
