/* eddy.h - the eddy backend library: a C service joins an eddy cluster
 * directly over nng (no websocket) and does what a websocket client does:
 * events, records, RPC (calling and providing) and listening.
 *
 * Give eddy_connect any node's request address; the library asks that node
 * for the cluster map, connects to every node, sends each operation to the
 * node owning its name, reconnects by itself, re-registers its subscriptions,
 * providers and listeners after a node restart, and follows a new map when the
 * cluster is restarted with another epoch.
 *
 * Threads. Every function may be called from any thread, also from inside a
 * callback. Callbacks run on the client's one callback thread, one at a time,
 * in the order the cluster delivered them; a callback that blocks delays the
 * ones after it (up to EDDY_CALLBACK_QUEUE of them wait; beyond that the
 * oldest event deliveries are dropped and counted, see eddy_stats).
 *
 * Memory. Strings passed in are borrowed for the duration of the call (copied
 * when kept). Strings passed to callbacks are valid until the callback
 * returns. Strings returned through out-parameters are the caller's, freed
 * with eddy_free. JSON text is exactly what the cluster stores and relays.
 *
 * Errors. Functions return an eddy_status; eddy_strerror names it. Blocking
 * calls wait at most the client's timeout (eddy_options.timeout_ms). */
#ifndef EDDY_H
#define EDDY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(EDDY_LIBRARY)
#define EDDY_API __attribute__((visibility("default")))
#else
#define EDDY_API
#endif

#define EDDY_NAME_MAX 4096        /* longest event, record, RPC name or pattern */
#define EDDY_VERSION_ANY (-1)     /* eddy_set: write as the next version, whatever it is */
#define EDDY_CALLBACK_QUEUE 65536 /* callbacks that may wait for the callback thread */
#define EDDY_REASON_MAX 1024      /* bytes of a validator's reason; longer ones are cut */

typedef enum eddy_status {
    EDDY_OK = 0,
    EDDY_ERR_INVALID,     /* a bad argument: NULL, an empty or too long name, JSON that is not JSON */
    EDDY_ERR_TIMEOUT,     /* no answer within the timeout (the operation may still happen) */
    EDDY_ERR_UNAVAILABLE, /* the node owning the name is down, or its queue is full */
    EDDY_ERR_CLOSED,      /* the client is closing */
    EDDY_ERR_NOT_FOUND,   /* the record does not exist */
    EDDY_ERR_VERSION,     /* the record is at another version than the one the write expected */
    EDDY_ERR_REFUSED,     /* the node refused the write: bad path, not an object, too large */
    EDDY_ERR_NO_PROVIDER, /* no provider took the RPC (none, all rejected, or accept timeout) */
    EDDY_ERR_RPC,         /* the provider answered with an error (its message is the result) */
    EDDY_ERR_MAP,         /* the cluster map could not be learned or is inconsistent */
    EDDY_ERR_EXISTS,      /* already subscribed, providing or listening under this name */
    EDDY_ERR_NOT_REGISTERED, /* not subscribed, providing or listening under this name */
    EDDY_ERR_CREDENTIALS, /* the TLS certificate, key or CA could not be used (the log line says why) */
    EDDY_ERR_REJECTED,    /* a validator refused the write (eddy_write tells its reason) */
    EDDY_ERR_CROSS_SHARD, /* a changeset's records are in different shards (give them one {tag}) */
    EDDY_ERR_NO_HISTORY,  /* eddy_subscribe_from: the name matches no events.history pattern */
} eddy_status;

/* A static English description of s; never NULL. */
EDDY_API const char *eddy_strerror(eddy_status s);

typedef struct eddy eddy;

typedef struct eddy_options {
    int timeout_ms;         /* blocking calls and connecting; 0 = 5000 */
    const char *user;       /* requestor name the RPC providers see (rpc.provideRequestorName) */
    /* A cluster whose addresses are tls+tcp:// (README: Security) takes only
     * peers with a certificate of its CA: PEM files of this backend's
     * certificate (its subject's OU must be eddy-backend), its unencrypted key,
     * and the cluster's CA. Each NULL one is read from the environment
     * (EDDY_CLUSTER_TLS_CERT, EDDY_CLUSTER_TLS_KEY, EDDY_CLUSTER_TLS_CA); none
     * at all: plain tcp:// only. */
    const char *tls_cert;
    const char *tls_key;
    const char *tls_ca;
} eddy_options;

/* Connects to the cluster that node_url (a node's request address, like
 * "tcp://127.0.0.1:6021", or "tls+tcp://..." with TLS credentials) belongs
 * to, and waits until every node can be reached or the timeout passes. On
 * success *out is the caller's; free it with eddy_close. opts may be NULL.
 * EDDY_ERR_CREDENTIALS: the TLS files do not read or do not fit together;
 * EDDY_ERR_TIMEOUT also when a node refused our certificate (logged). */
EDDY_API eddy_status eddy_connect(const char *node_url, const eddy_options *opts, eddy **out);
/* Withdraws every provider and listener (so calls fail over at once), waits
 * for what was queued to be sent (bounded by the timeout), stops the threads
 * and frees e. No callback runs after it returns. Must not be called from a
 * callback. NULL is fine. */
EDDY_API void eddy_close(eddy *e);
/* Frees a string the library returned. NULL is fine. */
EDDY_API void eddy_free(void *p);

/* The cluster as this client sees it, as JSON text (the caller's; eddy_free):
 * {"epoch":N,"nodes":[{"id","request","delivery","shards","connected":bool,
 *  "delivering":bool,"refused":bool,"stats":{"peers","maxPeers","peersRefused",
 *  "malformedBatches"} or null when the node did not answer within 1 s}],
 *  "lostDeliveries":N,"droppedCallbacks":N}. Blocks up to 1 s per node. */
EDDY_API eddy_status eddy_cluster_status(eddy *e, char **json);

/* ---- events ---- */

/* Publishes json (any JSON value, or NULL for an event without data) to the
 * subscribers of name. Returns once queued for the owning node. */
EDDY_API eddy_status eddy_emit(eddy *e, const char *name, const char *json);
/* Called on the callback thread for every event on a subscribed name that
 * another client emitted; json is NULL for an event without data. */
typedef void eddy_event_fn(void *arg, const char *name, const char *json);
/* Subscribes to name; returns once the owning node has registered the
 * interest (events emitted after that reach fn). */
EDDY_API eddy_status eddy_subscribe(eddy *e, const char *name, eddy_event_fn *fn, void *arg);
EDDY_API eddy_status eddy_unsubscribe(eddy *e, const char *name); /* also ends an eddy_subscribe_from */

/* ---- event streams: resumable subscriptions (events.history) ----
 *
 * The node owning a name that matches an events.history pattern keeps its
 * last events in a ring, numbered by offsets 1, 2, 3, ... within a history,
 * named by a random 64-bit epoch. The ring lives in the node's memory: a node
 * restart (or a name whose ring was dropped) starts a new history.
 *
 * eddy_subscribe_from delivers the events held from an offset, then every new
 * one, in order, each exactly once. The library remembers the last offset it
 * delivered and, after a reconnect, a lost delivery or a node restart, asks
 * for what follows: nothing is delivered twice, and nothing is skipped
 * without gap_fn saying so. An event this client emitted itself takes its
 * offset but is not delivered to it (as with eddy_subscribe). */

#define EDDY_OFFSET_OLDEST 0          /* eddy_subscribe_from: everything the node holds */
#define EDDY_OFFSET_NOW UINT64_MAX    /* only what is emitted from now on (resumed like any other) */

/* Called on the callback thread for each event of the stream, in offset
 * order; json is NULL for an event without data. (history, offset) is the
 * event's position: store it to resume from offset + 1 after a restart of
 * this program. */
typedef void eddy_stream_fn(void *arg, const char *name, uint64_t history, uint64_t offset, const char *json);
/* Called on the callback thread when events will never be delivered:
 * - reset false: the events from..to (inclusive) of history were dropped by
 *   the node (its ring's size, ttl or memory bound) before they could be
 *   delivered; delivery goes on at to + 1.
 * - reset true: the history this stream followed is gone (the node restarted,
 *   or dropped the name's ring): the events after from - 1 of the old history
 *   that were not delivered are lost, how many is unknown (to is 0). Delivery
 *   goes on with the new history (its epoch: history; 0 while it has no event
 *   yet), from its offset 1, or with a gap call for what it no longer holds. */
typedef void eddy_gap_fn(void *arg, const char *name, uint64_t history, uint64_t from, uint64_t to, bool reset);
/* Subscribes to name from offset (EDDY_OFFSET_OLDEST, EDDY_OFFSET_NOW, or an
 * offset N: events before N are not delivered, and those from N the node no
 * longer holds are reported to gap_fn) of history (0: whichever the node
 * holds; else the epoch the offset belongs to, as the callbacks gave it: when
 * the node holds another history, gap_fn hears a reset and delivery starts at
 * the new history's beginning). Returns once the owning node has registered
 * the subscription; EDDY_ERR_NO_HISTORY when the name matches no pattern of
 * events.history. eddy_unsubscribe ends it. fn and gap_fn are required. */
EDDY_API eddy_status eddy_subscribe_from(eddy *e, const char *name, uint64_t history, uint64_t offset,
                                         eddy_stream_fn *fn, eddy_gap_fn *gap_fn, void *arg);

/* ---- records ---- */

/* Reads record name: *json (the caller's; eddy_free) and *version. A record
 * that does not exist is EDDY_ERR_NOT_FOUND. version may be NULL. */
EDDY_API eddy_status eddy_get(eddy *e, const char *name, char **json, int64_t *version);
/* Writes record name and waits until the write is durable. path NULL: json
 * (an object or array) replaces the document; else json (any JSON value, or
 * NULL to erase the path) is set at path ("a.b[2].c"). version: the version
 * this write creates (the current one + 1), or EDDY_VERSION_ANY. Creates the
 * record when missing. On EDDY_OK *new_version (may be NULL) is the version
 * written; on EDDY_ERR_VERSION it is the record's current version. */
EDDY_API eddy_status eddy_set(eddy *e, const char *name, const char *path, const char *json, int64_t version,
                     int64_t *new_version);
/* eddy_set that also tells why a write was refused: on EDDY_ERR_REJECTED
 * (a validator's verdict) *reason is its reason (the caller's; eddy_free);
 * otherwise NULL. reason may be NULL. */
EDDY_API eddy_status eddy_write(eddy *e, const char *name, const char *path, const char *json, int64_t version,
                                int64_t *new_version, char **reason);
/* Deletes record name (subscribers are told); succeeds also when missing. */
EDDY_API eddy_status eddy_delete(eddy *e, const char *name);
/* Called on the callback thread with the record's whole document after every
 * change (json NULL and version -1: deleted, or it does not exist). The first
 * call, right after subscribing, carries the current state. Record
 * subscriptions resync by version by themselves: after a lost delivery, a
 * reconnect or a node restart the library reads the record again and calls
 * fn when its version moved, so a record callback always ends at the latest
 * document (intermediate versions may be skipped; none is seen twice). */
typedef void eddy_record_fn(void *arg, const char *name, int64_t version, const char *json);
EDDY_API eddy_status eddy_record_subscribe(eddy *e, const char *name, eddy_record_fn *fn, void *arg);
EDDY_API eddy_status eddy_record_unsubscribe(eddy *e, const char *name);

/* ---- changesets: several record writes applied all or none ----
 *
 * A changeset is a list of writes and deletes of records of one shard (their
 * names share a {tag}: "{cart-7}/items", "{cart-7}/total"). The node owning
 * them checks every operation (expected version, document, permissions) and
 * applies all of them in one storage batch, or none; subscribers get the
 * changes together. A record may appear once per changeset.
 *
 *   eddy_changeset *cs = eddy_changeset_new();
 *   eddy_changeset_set(cs, "{cart-7}/items", NULL, "[\"apple\"]", EDDY_VERSION_ANY);
 *   eddy_changeset_set(cs, "{cart-7}/total", "sum", "3", 4);   // must write version 4
 *   const eddy_changeset_outcome *out;
 *   if (eddy_changeset_commit(e, cs, &out) != EDDY_OK)
 *       printf("operation %ld: %s\n", out->failed, out->reason);
 *   eddy_changeset_free(cs);
 */
#define EDDY_CHANGESET_MAX 10000 /* operations one changeset may hold here (nodes: record.maxChangesetOperations) */

typedef struct eddy_changeset eddy_changeset;

/* A new empty changeset, the caller's (eddy_changeset_free). Not thread-safe:
 * one thread at a time builds and commits it. */
EDDY_API eddy_changeset *eddy_changeset_new(void);
/* Frees cs and its outcome. NULL is fine. */
EDDY_API void eddy_changeset_free(eddy_changeset *cs);
/* Adds a write of record name, as eddy_set: path NULL: json (an object or
 * array) replaces the document; else json (any JSON value) is set at path.
 * version: the version this write creates (the current one + 1), or
 * EDDY_VERSION_ANY. Creates the record when missing. Strings are copied.
 * EDDY_ERR_INVALID (cs unchanged): a bad name, path or JSON, or a full changeset. */
EDDY_API eddy_status eddy_changeset_set(eddy_changeset *cs, const char *name, const char *path, const char *json,
                                        int64_t version);
/* Adds the erasure of path in record name (version as eddy_changeset_set). */
EDDY_API eddy_status eddy_changeset_erase(eddy_changeset *cs, const char *name, const char *path, int64_t version);
/* Adds the deletion of record name. version: the version the record must be
 * at, or EDDY_VERSION_ANY (a missing record is then no error). */
EDDY_API eddy_status eddy_changeset_delete(eddy_changeset *cs, const char *name, int64_t version);
/* Operations added so far. */
EDDY_API size_t eddy_changeset_count(const eddy_changeset *cs);

/* What became of one operation. */
typedef struct eddy_changeset_result {
    bool ok;             /* it was applied (true only when the whole changeset was) */
    int64_t version;     /* ok: the version written (-1: deleted); a version conflict: the record's current one */
    const char *error;   /* NULL when ok; else deepstream's name of the refusal ("VERSION_EXISTS",
                          * "MESSAGE_DENIED", "RECORD_UPDATE_ERROR", ...), or "ABORTED": this one
                          * was fine, another failed */
    const char *reason;  /* NULL when ok; else why, in words */
} eddy_changeset_result;

/* What became of a committed changeset. Owned by the changeset: valid until it
 * is committed again, changed or freed. */
typedef struct eddy_changeset_outcome {
    bool ok;                               /* every operation was applied */
    long failed;                           /* the operation that failed the changeset, -1: none (applied, or
                                            * the changeset itself was refused: then results is empty) */
    const char *error;                     /* NULL when ok; else the failing operation's error, or
                                            * "CROSS_SHARD", "INVALID_MESSAGE_DATA" for the whole */
    const char *reason;                    /* NULL when ok; else why, in words: "CROSSSHARD: \"a\" is in shard 3,
                                            * \"b\" is in shard 7" */
    size_t count;                          /* results: one per operation, or 0 when refused whole */
    const eddy_changeset_result *results;
} eddy_changeset_outcome;

/* Sends cs to the node owning its records and waits until its writes are
 * durable, or it is refused. Returns EDDY_OK when every operation was applied;
 * else nothing was: EDDY_ERR_VERSION (an operation's version conflict),
 * EDDY_ERR_REFUSED (a refused operation, or a changeset the node refused
 * whole), EDDY_ERR_CROSS_SHARD (records of different shards: refused here,
 * nothing sent), EDDY_ERR_INVALID (empty), or a transport error (timeout,
 * unavailable: the changeset may still be applied). *out (may be NULL) tells
 * which operation failed and why; it is set for every status but
 * EDDY_ERR_INVALID with a NULL e or cs. */
EDDY_API eddy_status eddy_changeset_commit(eddy *e, eddy_changeset *cs, const eddy_changeset_outcome **out);

/* ---- RPC ---- */

/* Calls RPC name with json (or NULL) and waits for the answer: EDDY_OK with
 * *result (the caller's JSON text, NULL when the provider sent none), or
 * EDDY_ERR_RPC with *result = the provider's error as JSON text, or another
 * error (no provider, timeout). result may be NULL. */
EDDY_API eddy_status eddy_call(eddy *e, const char *name, const char *json, char **result);

/* One call being served; answer it exactly once, from any thread. */
typedef struct eddy_rpc eddy_rpc;
/* Called on the callback thread for each call to a provided name; json is the
 * request (NULL when none), user the caller's name when the cluster passes it
 * on (else NULL). Keep call and answer it later, or answer it at once. */
typedef void eddy_provide_fn(void *arg, eddy_rpc *call, const char *name, const char *json,
                             const char *user);
/* Provides RPC name; returns once the owning node balances calls to it. */
EDDY_API eddy_status eddy_provide(eddy *e, const char *name, eddy_provide_fn *fn, void *arg);
EDDY_API eddy_status eddy_unprovide(eddy *e, const char *name);
/* Answers call with json (or NULL) and frees it. */
EDDY_API eddy_status eddy_rpc_respond(eddy_rpc *call, const char *json);
/* Answers call with an error (a message the caller sees) and frees it. */
EDDY_API eddy_status eddy_rpc_error(eddy_rpc *call, const char *message);
/* Hands call to another provider (or NO_RPC_PROVIDER) and frees it. */
EDDY_API eddy_status eddy_rpc_reject(eddy_rpc *call);

/* ---- listening ---- */

typedef enum eddy_topic { EDDY_EVENTS = 1, EDDY_RECORDS = 2 } eddy_topic;
/* Called on the callback thread when name, matching pattern, gets its first
 * subscriber (found true: return true to provide it, false to let another
 * listener) or loses its last (found false: the return value is ignored). */
typedef bool eddy_listen_fn(void *arg, const char *pattern, const char *name, bool found);
/* Listens to pattern (a regular expression, as deepstream's) on topic. */
EDDY_API eddy_status eddy_listen(eddy *e, eddy_topic topic, const char *pattern, eddy_listen_fn *fn, void *arg);
EDDY_API eddy_status eddy_unlisten(eddy *e, eddy_topic topic, const char *pattern);

/* ---- validating writes (README: Validating writes) ---- */

/* One write waiting for this validator's verdict: answer it exactly once,
 * from any thread, with eddy_validation_accept, _reject or _replace (which
 * free it). The record is held meanwhile (its later writes wait), so answer
 * promptly: validation.timeout after the request the node asks another
 * validator, or refuses the write. */
typedef struct eddy_validation eddy_validation;
/* Called on the callback thread for each write to a record whose name
 * matches a pattern this client validates. request is the request as JSON
 * text: {"name", "action": "update"|"patch"|"erase"|"delete", "version" (the
 * current one, -1: none), "next" (the version the write makes), "current"
 * (document or null), "proposed" (the document as the write leaves it, null
 * for a delete), "patch": {"path", "value"} or null, "writer": "client" or
 * "backend", "user" (the writer's user id, or null), "serverData" (or null)}. */
typedef void eddy_validate_fn(void *arg, eddy_validation *v, const char *name, const char *request);
/* Validates the writes to records whose name matches pattern (a regular
 * expression, as listen's) from now on; returns once every node has it.
 * EDDY_ERR_UNAVAILABLE: a node's link was down (or its queue full); the
 * registration is kept and that node gets it when its link comes back. */
EDDY_API eddy_status eddy_validate(eddy *e, const char *pattern, eddy_validate_fn *fn, void *arg);
/* Stops validating pattern; validations it had pending go to other validators. */
EDDY_API eddy_status eddy_unvalidate(eddy *e, const char *pattern);
/* The write is applied as proposed. */
EDDY_API eddy_status eddy_validation_accept(eddy_validation *v);
/* The write is refused with reason (text the writer may see; NULL: "rejected";
 * cut to EDDY_REASON_MAX bytes); nothing changes. */
EDDY_API eddy_status eddy_validation_reject(eddy_validation *v, const char *reason);
/* json (an object or array) is written instead of the proposed document (the
 * writer's copy is corrected); anything else rejects the write. */
EDDY_API eddy_status eddy_validation_replace(eddy_validation *v, const char *json);

#ifdef __cplusplus
}
#endif

#endif
