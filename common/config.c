/* config.c - the configuration table and its three loaders (see config.h).
 * Every key is declared once in `table` below; the YAML walker, the flag parser,
 * the environment reader and --help all read the same rows. deepstream 7's
 * config.yml keys are rows too, at the end: each maps onto an eddy key, is
 * ignored, or is refused. Not for what the values mean at run time. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "metamap.h"
#include "pattern.h"
#include "shardmap.h"
#include "yamljson.h"

/* T_PATH: a file path; in a YAML file fileLoad(P) and file(P) are P resolved
 * against the file's folder. T_CODES: status codes (YAML list, or "200,201").
 * T_NAMES: names (YAML list, or "a,b"). T_HISTORY: events.history (a YAML list
 * of {pattern, size, ttl}, or one entry "SIZE,TTL,PATTERN" per flag or variable,
 * added to the list). T_AUTHLIST: the auth list.
 * The rest are deepstream's config.yml keys, read from a YAML file only:
 * T_ENDPOINTS: the connectionEndpoints list. T_ALIAS: sets the eddy key named
 * in `def`. T_IGNORED: accepted without effect (its whole value), its name
 * added to cfg->ignored (main's config-ignored line). T_FIXED: what eddy always does; the value must be one
 * of `choices`, else refused with `doc` as the reason. T_REFUSED: refused with
 * `doc` as the reason, unless null or empty. */
enum cfg_type { T_INT, T_STR, T_ENUM, T_NODES, T_PATH, T_CODES, T_NAMES, T_HISTORY, T_AUTHLIST,
                T_ENDPOINTS, T_ALIAS, T_IGNORED, T_FIXED, T_REFUSED };

/* cfg_entry.types: 0 for a key of eddy_config; else a strategy option (its
 * field is in auth_strategy_config), one bit per auth type that takes it. */
#define TY(t) (1u << (t))
#define TY_ALL (TY(AUTH_NONE) | TY(AUTH_FILE) | TY(AUTH_HTTP) | TY(AUTH_JWT))
#define O_FALSE_EMPTY 1u /* T_STR: YAML false means "" (deepstream's hash: false) */
#define O_ANY_NAME 2u    /* T_NAMES: any text without a comma (origins), not only header names */
#define O_NOCASE 4u      /* T_ENUM: any letter case (deepstream's logLevel: INFO) */
#define O_FALSE_MAX 8u   /* T_INT: YAML false or null means max (deepstream's "no timeout") */

typedef struct cfg_entry {
    const char *key;  /* dotted YAML key */
    const char *flag; /* command-line flag (NULL: none) */
    enum cfg_type type;
    int64_t min, max; /* T_INT and T_CODES bounds; T_STR/T_PATH: min 1 = must not be empty */
    const char *def;
    size_t offset;
    const char *const *choices; /* T_ENUM: index = stored value */
    const char *doc;
    unsigned types; /* 0: eddy_config; else auth_strategy_config, for these types */
    unsigned opts;  /* O_* */
} cfg_entry;

static const char *const auth_choices[] = {"none", "file", "http", "jwt", NULL};
static const char *const permission_choices[] = {"none", "config", NULL};
static const char *const sync_choices[] = {"always", "batch", "never", NULL};
static const char *const balance_choices[] = {"roundrobin", "leastinflight", NULL};
static const char *const on_timeout_choices[] = {"reject", "accept", NULL}; /* validation.onTimeout */
static const char *const bool_choices[] = {"false", "true", NULL};
/* a boolean whose default depends on other settings: 2 = auto (config_raft) */
static const char *const auto_bool_choices[] = {"false", "true", "auto", NULL};
static const char *const level_choices[] = {"debug", "info", "warn", "error", "off", NULL}; /* enum log_level */
_Static_assert(LOG_DEBUG == 0 && LOG_ERROR == 3 && LOG_NONE == 4, "logLevel's index is its enum log_level");
static const char *const server_choices[] = {"default", "uws", NULL};
static const char *const default_choice[] = {"default", NULL};
static const char *const true_choice[] = {"true", NULL};
static const char *const false_choice[] = {"false", NULL};

#define F(field) offsetof(eddy_config, field)
#define A(field) offsetof(auth_strategy_config, field)
/* rows of eddy_config's keys leave out the trailing types and opts (0) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const cfg_entry table[] = {
    {"host", "--host", T_STR, 1, 0, "0.0.0.0", F(host), NULL,
     "address the websocket listener binds to"},
    {"port", "--port", T_INT, 0, 65535, "6020", F(port), NULL,
     "websocket port (0 picks a free one; the log line broker-listening tells which)"},
    {"urlPath", "--path", T_STR, 1, 0, "/deepstream", F(url_path), NULL,
     "websocket URL path (deepstream's urlPath); GET /health-check is served beside it"},
    {"maxMessageSize", "--max-message-size", T_INT, 64, 64 << 20, "1048576",
     F(max_message_size), NULL, "largest client frame in bytes; a larger one closes the connection"},
    {"heartbeatInterval", "--heartbeat-interval", T_INT, 100, 3600000, "30000",
     F(heartbeat_interval_ms), NULL,
     "ms; a connection silent for twice this long is closed (clients PING every interval)"},
    {"maxOutboundBytes", "--max-outbound-bytes", T_INT, 65536, 1 << 30, "16777216",
     F(max_outbound_bytes), NULL,
     "bytes queued to one slow client before it is disconnected as a slow consumer"},
    {"auth", NULL, T_AUTHLIST, 0, 0, NULL, 0, NULL,
     "deepstream's list of strategies tried in order: [{type: none|file|http|jwt, options: {...}}]"},
    {"auth.type", "--auth", T_ENUM, 0, 0, "none", A(type), auth_choices,
     "none: every login succeeds; file: a users file; http: a webhook; jwt: a signed token "
     "(a flag or variable makes the list this one strategy)", TY_ALL},
    {"auth.users", "--users", T_PATH, 0, 0, "", A(users_file), NULL,
     "users YAML file for auth.type file (auth.options.users)", TY(AUTH_FILE)},
    {"auth.options.users", NULL, T_PATH, 0, 0, "", A(users_file), NULL,
     "users YAML file: fileLoad(users.yml) is relative to the config file", TY(AUTH_FILE)},
    {"auth.options.hash", "--auth-hash", T_STR, 0, 0, "", A(hash), NULL,
     "PBKDF2 digest of deepstream hashes in the users file (md5, sha256, ...); false or empty: "
     "Argon2id hashes only", TY(AUTH_FILE), O_FALSE_EMPTY},
    {"auth.options.iterations", "--auth-iterations", T_INT, 1, 10000000, "100", A(iterations), NULL,
     "PBKDF2 iterations of deepstream hashes", TY(AUTH_FILE)},
    {"auth.options.keyLength", "--auth-key-length", T_INT, 1, 1024, "32", A(key_length), NULL,
     "PBKDF2 key length in bytes of deepstream hashes", TY(AUTH_FILE)},
    {"auth.options.argon2OpsLimit", "--auth-argon2-ops-limit", T_INT, 1, 100, "2", A(argon2_ops), NULL,
     "Argon2id passes of the hashes eddy hash makes (and of the check an unknown user costs)", TY(AUTH_FILE)},
    {"auth.options.argon2MemLimit", "--auth-argon2-mem-limit", T_INT, 8, 4194304, "65536", A(argon2_mem_kib),
     NULL, "Argon2id memory in KiB of the hashes eddy hash makes", TY(AUTH_FILE)},
    {"auth.options.reportInvalidParameters", "--auth-report-invalid-parameters", T_ENUM, 0, 0, "true",
     A(report_invalid), bool_choices,
     "a refused login is answered (true) or left to the next strategy (false); default true for a list "
     "of one, false for a longer one", TY(AUTH_FILE) | TY(AUTH_HTTP) | TY(AUTH_JWT)},
    {"auth.options.endpointUrl", "--auth-endpoint-url", T_STR, 0, 0, "", A(endpoint_url), NULL,
     "http: the webhook every login is POSTed to", TY(AUTH_HTTP)},
    {"auth.options.permittedStatusCodes", "--auth-permitted-status-codes", T_CODES, 100, 599, "200",
     A(permitted), NULL, "http: statuses that log the user in", TY(AUTH_HTTP)},
    {"auth.options.requestTimeout", "--auth-request-timeout", T_INT, 1, 600000, "2000",
     A(request_timeout_ms), NULL, "http: ms one request may take", TY(AUTH_HTTP)},
    {"auth.options.retryStatusCodes", "--auth-retry-status-codes", T_CODES, 100, 599, "",
     A(retry_codes), NULL, "http: statuses that are retried (failed requests are too)", TY(AUTH_HTTP)},
    {"auth.options.retryAttempts", "--auth-retry-attempts", T_INT, 0, 100, "0", A(retry_attempts), NULL,
     "http: retries after the first request", TY(AUTH_HTTP)},
    {"auth.options.retryInterval", "--auth-retry-interval", T_INT, 0, 600000, "1000",
     A(retry_interval_ms), NULL, "http: ms between retries", TY(AUTH_HTTP)},
    {"auth.options.promoteToHeader", "--auth-promote-to-header", T_NAMES, 0, 0, "", A(promote), NULL,
     "http: authData fields also sent as request headers", TY(AUTH_HTTP)},
    {"auth.options.maxConcurrentRequests", "--auth-max-concurrent-requests", T_INT, 1, 10000, "64",
     A(max_concurrent), NULL, "http: requests in flight at once (eddy)", TY(AUTH_HTTP)},
    {"auth.options.maxQueuedRequests", "--auth-max-queued-requests", T_INT, 1, 1000000, "1024",
     A(max_queued), NULL,
     "http: logins waiting for or in a request (eddy); beyond, a login is refused at once", TY(AUTH_HTTP)},
    {"auth.options.maxResponseSize", "--auth-max-response-size", T_INT, 256, 16 << 20, "65536",
     A(max_response), NULL, "http: largest webhook answer in bytes (eddy); a larger one fails the login",
     TY(AUTH_HTTP)},
    {"auth.options.secret", "--auth-secret", T_STR, 0, 0, "", A(secret), NULL,
     "jwt: the HMAC secret (HS256, HS384, HS512)", TY(AUTH_JWT)},
    {"auth.options.publicKey", "--auth-public-key", T_PATH, 0, 0, "", A(public_key_file), NULL,
     "jwt: PEM public key file (RS256/384/512, ES256/384/512)", TY(AUTH_JWT)},
    {"auth.options.algorithm", "--auth-algorithm", T_STR, 0, 0, "", A(algorithm), NULL,
     "jwt: the one algorithm tokens must use; default HS256 with a secret, RS256 with a public key",
     TY(AUTH_JWT)},
    {"auth.options.issuer", "--auth-issuer", T_STR, 0, 0, "", A(issuer), NULL,
     "jwt: required iss claim (empty: not checked)", TY(AUTH_JWT)},
    {"auth.options.audience", "--auth-audience", T_STR, 0, 0, "", A(audience), NULL,
     "jwt: required aud claim, or member of it (empty: not checked)", TY(AUTH_JWT)},
    {"auth.options.userIdClaim", "--auth-user-id-claim", T_STR, 1, 0, "sub", A(user_id_claim), NULL,
     "jwt: the claim holding the user id", TY(AUTH_JWT)},
    {"auth.options.clientDataClaim", "--auth-client-data-claim", T_STR, 0, 0, "clientData",
     A(client_data_claim), NULL, "jwt: the claim sent to the client as login data (empty: none)", TY(AUTH_JWT)},
    {"auth.options.serverDataClaim", "--auth-server-data-claim", T_STR, 0, 0, "serverData",
     A(server_data_claim), NULL, "jwt: the claim kept as the user's serverData (empty: none)", TY(AUTH_JWT)},
    {"auth.options.clockTolerance", "--auth-clock-tolerance", T_INT, 0, 86400, "0", A(clock_tolerance_s), NULL,
     "jwt: seconds of leeway on exp and nbf", TY(AUTH_JWT)},
    {"auth.maxAuthAttempts", "--max-auth-attempts", T_INT, 1, 1000, "3", F(max_auth_attempts),
     NULL, "failed logins before TOO_MANY_AUTH_ATTEMPTS and a close"},
    {"auth.unauthenticatedClientTimeout", "--unauthenticated-timeout", T_INT, 100, 86400000,
     "180000", F(unauthenticated_timeout_ms), NULL,
     "ms a connection may stay without sending credentials (time spent checking them does not count; "
     "YAML false or null, deepstream's \"no timeout\": a day)", 0, O_FALSE_MAX},
    {"auth.cacheTtl", "--auth-cache-ttl", T_INT, 0, 86400000, "60000", F(auth_cache_ttl_ms), NULL,
     "ms a successful file or jwt login is remembered, so the same credentials log in again without "
     "the check (0: no cache)"},
    {"auth.cacheSize", "--auth-cache-size", T_INT, 1, 10000000, "10000", F(auth_cache_size), NULL,
     "logins the cache holds; the oldest goes first"},
    {"auth.workers", "--auth-workers", T_INT, 0, 256, "0", F(auth_workers), NULL,
     "threads checking passwords and tokens (0: one per core)"},
    {"auth.maxPendingLogins", "--auth-max-pending", T_INT, 1, 1000000, "4096", F(auth_max_pending), NULL,
     "logins being checked at once; beyond, a login is refused at once (AUTH_UNSUCCESSFUL, server busy)"},
    {"permission.type", "--permission", T_ENUM, 0, 0, "none", F(permission_type), permission_choices,
     "none: every operation is allowed; config: deepstream's Valve rules from permission.options.permissions"},
    {"permission.options.permissions", "--permissions", T_PATH, 0, 0, "", F(permissions_file), NULL,
     "permissions YAML file (deepstream's permissions.yml format) for permission.type config; "
     "fileLoad(permissions.yml) is relative to the config file"},
    {"permission.options.maxRuleIterations", "--max-rule-iterations", T_INT, 1, 100, "3",
     F(max_rule_iterations), NULL,
     "records one rule check may read through cross-references (_('name')); one more denies"},
    {"permission.options.cacheEvacuationInterval", "--permission-cache-evacuation-interval", T_INT, 0,
     86400000, "60000", F(permission_cache_evacuation_ms), NULL,
     "ms (deepstream's rule cache; accepted for its config files: eddy compiles rules once at load)"},
    {"data", "--data", T_STR, 1, 0, "./data", F(data_dir), NULL, "node data folder (RocksDB)"},
    {"storage.sync", "--sync", T_ENUM, 0, 0, "batch", F(sync_mode), sync_choices,
     "always: fsync every write; batch: one fsync per group of writes; never: WAL without fsync"},
    {"storage.cacheSize", "--cache-size", T_INT, 0, INT64_MAX, "268435456", F(cache_bytes), NULL,
     "bytes of records kept in memory beyond those with subscribers"},
    {"record.maxSize", "--record-max-size", T_INT, 2, 64 << 20, "1048576", F(record_max_size),
     NULL, "largest record document in bytes; a write making it larger is refused"},
    {"record.maxChangesetOperations", "--max-changeset-operations", T_INT, 1, 10000, "100",
     F(max_changeset_ops), NULL, "operations one changeset may hold; more is refused whole"},
    {"node.id", "--node-id", T_STR, 1, 0, "node1", F(node_id), NULL,
     "this node's id (must appear in cluster.nodes when that list is given)"},
    {"node.request", "--request", T_STR, 0, 0, "", F(node_request), NULL,
     "nng address the node receives operations on from brokers and backends; default "
     "tcp://127.0.0.1:6021 (eddy node), tcp://127.0.0.1:<port+1> (standalone: for backends; "
     "\"none\" turns that off)"},
    {"node.delivery", "--delivery", T_STR, 0, 0, "", F(node_delivery), NULL,
     "nng address the node publishes deliveries on; default tcp://127.0.0.1:6022 (eddy node), "
     "tcp://127.0.0.1:<port+2> (standalone)"},
    {"node.metrics", "--metrics", T_STR, 0, 0, "", F(node_metrics), NULL,
     "host:port of eddy node's HTTP listener for GET /metrics and GET /health-check; default "
     "127.0.0.1:6023 (port 0 picks a free one, the log line node-metrics-listening tells which; \"none\" turns it "
     "off); standalone opens none: its node's metrics are in the websocket port's /metrics"},
    /* validation of writes by backends (node/validate.c; README: Validating writes) */
    {"validation.timeout", "--validation-timeout", T_INT, 10, 600000, "5000", F(validation_timeout_ms), NULL,
     "ms a validator has to answer; then the write goes to the next validator for its name, and when none is "
     "left it is refused (or accepted unvalidated, validation.acceptOnTimeout)"},
    {"validation.onTimeout", "--validation-on-timeout", T_ENUM, 0, 0, "reject", F(validation_on_timeout),
     on_timeout_choices,
     "what becomes of a write no validator answered in time (or none is connected for, validation.required): "
     "reject (fail closed) or accept (applied unvalidated); validation.acceptOnTimeout accepts some names only"},
    {"validation.required", "--validation-required", T_NAMES, 0, 0, "", F(validation_required), NULL,
     "patterns (regular expressions, no commas) of record names whose writes must be validated: with no "
     "validator connected for the name they are refused (fail closed). Names no validator and no pattern here "
     "match are written unvalidated", 0, O_ANY_NAME},
    {"validation.acceptOnTimeout", "--validation-accept-on-timeout", T_NAMES, 0, 0, "",
     F(validation_accept_on_timeout), NULL,
     "patterns of record names whose writes are accepted unvalidated when no validator answers in time (or none "
     "is connected); every other validated name is refused then", 0, O_ANY_NAME},
    {"validation.maxPending", "--validation-max-pending", T_INT, 1, 10000000, "10000", F(validation_max_pending),
     NULL, "validations in flight per node; a write beyond them is refused at once"},
    {"rpc.ackTimeout", "--rpc-ack-timeout", T_INT, 1, 3600000, "1000", F(rpc_ack_timeout_ms), NULL,
     "ms a provider has to accept a call before the caller gets ACCEPT_TIMEOUT"},
    {"rpc.responseTimeout", "--rpc-response-timeout", T_INT, 1, 86400000, "10000",
     F(rpc_response_timeout_ms), NULL,
     "ms a provider has to answer an accepted call before the caller gets RESPONSE_TIMEOUT"},
    {"rpc.balance", "--rpc-balance", T_ENUM, 0, 0, "roundrobin", F(rpc_balance), balance_choices,
     "how a call picks among providers: roundrobin or leastinflight"},
    {"rpc.provideRequestorName", "--rpc-requestor-name", T_ENUM, 0, 0, "false",
     F(rpc_requestor_name), bool_choices, "give providers the caller's user id (requestorName)"},
    {"rpc.provideRequestorData", "--rpc-requestor-data", T_ENUM, 0, 0, "false",
     F(rpc_requestor_data), bool_choices, "give providers the caller's serverData (requestorData)"},
    {"events.history", "--events-history", T_HISTORY, 0, 0, NULL, 0, NULL,
     "events kept by their owning node for backends to resume from (eddy_subscribe_from): YAML list of "
     "{pattern, size, ttl}: names matching pattern (a regular expression; the first entry matching wins) "
     "keep their last size events (1-10000000), each for ttl ms (0: no ttl); flag SIZE,TTL,PATTERN "
     "(repeatable). Kept in memory only: a node restart loses them (README: Event streams)"},
    {"events.historyMaxBytes", "--events-history-max-bytes", T_INT, 1 << 20, 1LL << 40, "67108864",
     F(history_max_bytes), NULL,
     "bytes all of a node's event histories may hold together; beyond it names without events lose their "
     "numbering first, then the oldest events of any name go"},
    {"listen.responseTimeout", "--listen-response-timeout", T_INT, 1, 3600000, "500",
     F(listen_response_timeout_ms), NULL,
     "ms a listener has to accept or reject a subscription before the next one is asked"},
    {"listen.shuffleProviders", "--listen-shuffle-providers", T_ENUM, 0, 0, "true",
     F(listen_shuffle_providers), bool_choices,
     "offer a name to its matching listeners in random order (true) or in the order they "
     "registered, grouped by pattern as deepstream does (false)"},
    {"listen.rematchInterval", "--listen-rematch-interval", T_INT, 0, 86400000, "30000",
     F(listen_rematch_interval_ms), NULL,
     "ms between rematches: subscribed names whose listeners all declined are offered to them "
     "again; 1000 or less turns rematching off (as in deepstream)"},
    {"listen.matchCooldown", "--listen-match-cooldown", T_INT, 0, 86400000, "10000",
     F(listen_match_cooldown_ms), NULL,
     "ms after a name's listeners all declined before a rematch may offer it again"},
    {"listen.maxPatternsPerConnection", "--listen-max-patterns", T_INT, 1, 1000000, "100",
     F(listen_max_patterns), NULL,
     "listen patterns one connection may hold, for events and for records each; a LISTEN beyond "
     "them is answered MESSAGE_DENIED"},
    {"limits.messageRate", "--message-rate", T_INT, 0, 10000000, "10000", F(message_rate), NULL,
     "messages a second one connection may send (a token bucket; PING always passes); a message over "
     "it is not processed and gets its topic's MESSAGE_DENIED (0: unlimited)"},
    {"limits.messageBurst", "--message-burst", T_INT, 1, 10000000, "20000", F(message_burst), NULL,
     "messages one connection may send at once above limits.messageRate (the bucket's size)"},
    {"limits.maxRefusedMessages", "--max-refused-messages", T_INT, 0, 10000000, "1000", F(max_refused), NULL,
     "messages refused for limits.messageRate within 10 s after which the connection is closed "
     "(close code 1008; 0: never closed for it)"},
    {"limits.maxConnectionsPerIp", "--max-connections-per-ip", T_INT, 0, 10000000, "0", F(max_per_ip), NULL,
     "websocket connections one IP address (the socket's peer) may hold; one more is refused at the handshake "
     "(0: unlimited; behind a load balancer every client has its address)"},
    {"limits.maxUnauthenticatedConnections", "--max-unauthenticated", T_INT, 0, 10000000, "10000",
     F(max_unauthenticated), NULL,
     "connections not logged in at once (at most half the open-file limit); a new one beyond closes "
     "the one that has waited longest without a login being checked (0: unlimited)"},
    {"limits.maxSubscriptionsPerConnection", "--max-subscriptions", T_INT, 0, 100000000, "10000",
     F(max_subscriptions), NULL,
     "names one connection may hold per topic (records, events, presence users, RPC provides); a "
     "subscribe beyond gets MESSAGE_DENIED for that name (0: unlimited)"},
    {"http.enabled", "--http", T_ENUM, 0, 0, "true", F(http_enabled), bool_choices,
     "serve deepstream's HTTP API (POST postPath, authPath) on the websocket port; a config file whose "
     "connectionEndpoints has no `- type: http` entry turns it off"},
    {"http.postPath", "--http-post-path", T_STR, 1, 0, "/api", F(http_post_path), NULL,
     "URL path of POST requests ({token|authData, body: [operation, ...]})"},
    {"http.getPath", "--http-get-path", T_STR, 1, 0, "/api", F(http_get_path), NULL,
     "URL path of GET requests (answered 400 as deepstream does: reads are POSTed)"},
    {"http.authPath", "--http-auth-path", T_STR, 1, 0, "/api/auth", F(http_auth_path), NULL,
     "URL path that logs in with authData and answers a token for later requests"},
    {"http.enableAuthEndpoint", "--http-enable-auth-endpoint", T_ENUM, 0, 0, "true",
     F(http_enable_auth_endpoint), bool_choices, "serve authPath"},
    {"http.allowAuthData", "--http-allow-auth-data", T_ENUM, 0, 0, "true", F(http_allow_auth_data),
     bool_choices, "requests may carry authData (else only a token, or none with auth type none)"},
    {"http.logInvalidAuthData", "--http-log-invalid-auth-data", T_ENUM, 0, 0, "false",
     F(http_log_invalid_auth_data), bool_choices, "log the authData of refused HTTP logins (it may hold passwords)"},
    {"http.requestTimeout", "--http-request-timeout", T_INT, 1, 3600000, "20000", F(http_request_timeout_ms),
     NULL, "ms a request waits for its answers; operations still unanswered then fail (errorEvent "
     "HTTP_REQUEST_TIMEOUT)"},
    {"http.allowAllOrigins", "--http-allow-all-origins", T_ENUM, 0, 0, "true", F(http_allow_all_origins),
     bool_choices, "CORS: any origin (Access-Control-Allow-Origin: *); false: only http.origins"},
    {"http.origins", "--http-origins", T_NAMES, 0, 0, "", F(http_origins), NULL,
     "CORS: the origins allowed when allowAllOrigins is false (e.g. https://example.com)", 0, O_ANY_NAME},
    {"http.maxMessageSize", "--http-max-message-size", T_INT, 64, 64 << 20, "1048576", F(http_max_message_size),
     NULL, "largest request body in bytes; a larger one is answered 400 unread"},
    {"http.healthCheckPath", "--health-check-path", T_STR, 1, 0, "/health-check", F(http_health_check_path), NULL,
     "URL path answered 200 while the broker serves (GET)"},
    {"http.hostUrl", "--http-host-url", T_STR, 0, 0, "", F(http_host_url), NULL,
     "with allowAllOrigins false: the Host header every request must carry (empty: any)"},
    {"http.maxOperations", "--http-max-operations", T_INT, 1, 1000000, "1000", F(http_max_operations), NULL,
     "operations one request may hold; more is answered 400 (eddy)"},
    {"http.maxRequestsInFlight", "--http-max-in-flight", T_INT, 1, 10000000, "1024", F(http_max_in_flight), NULL,
     "requests one broker answers at once; one more is answered 503 with Retry-After (eddy)"},
    {"http.tokenSecret", "--http-token-secret", T_STR, 0, 0, "", F(http_token_secret), NULL,
     "key of the tokens authPath hands out (at least 32 characters; the same on every broker of a "
     "cluster); empty: a random key per process, so a token works on that broker until it restarts"},
    {"http.tokenTtl", "--http-token-ttl", T_INT, 1000, 31536000000LL, "3600000", F(http_token_ttl_ms), NULL,
     "ms a token from authPath stays valid"},
    {"tls.cert", "--tls-cert", T_PATH, 0, 0, "", F(tls_cert), NULL,
     "PEM certificate (chain) of the websocket port: wss:// and https:// (with tls.key); empty: plain ws://. "
     "Read again on SIGHUP"},
    {"tls.key", "--tls-key", T_PATH, 0, 0, "", F(tls_key), NULL, "PEM private key of tls.cert"},
    {"tls.ca", "--tls-ca", T_PATH, 0, 0, "", F(tls_ca), NULL,
     "PEM CA certificates: every client must present a certificate one of them signed (empty: none asked for)"},
    {"cluster.nodes", "--node", T_NODES, 0, 0, NULL, 0, NULL,
     "the cluster's nodes: YAML list of {id, request, delivery[, shards][, raft]}; flag "
     "REQUEST,DELIVERY[,SHARDS] (repeatable). shards: ranges like \"0-1023,2048-3071\" of 0-4095; "
     "all nodes or none list them (none: spread evenly in list order). raft: IPv4:PORT of the node's "
     "metadata group transport (cluster.raft); the node at position i is member and Raft server i+1"},
    {"cluster.seed", "--seed", T_STR, 0, 0, "", F(seed), NULL,
     "broker: a node's request address to fetch cluster.nodes and cluster.epoch from at start-up, "
     "instead of listing them"},
    {"cluster.epoch", "--epoch", T_INT, 1, INT64_MAX, "1", F(cluster.epoch), NULL,
     "shard map epoch; every process of a cluster must run the same one"},
    {"cluster.requestTimeout", "--request-timeout", T_INT, 500, 600000, "10000", F(request_timeout_ms), NULL,
     "ms a broker waits for a node to answer a batch; then its requesters get MESSAGE_DENIED and whatever "
     "the node still owes is answered with errors (a stopped node is treated as a dead one)"},
    {"cluster.brokerTimeout", "--broker-timeout", T_INT, 2000, 600000, "10000",
     F(broker_timeout_ms), NULL,
     "ms without a heartbeat (brokers send one every 250 ms) after which a node drops a broker's state"},
    {"cluster.maxPeers", "--max-peers", T_INT, 1, 1000000, "1024", F(max_peers), NULL,
     "brokers and backends one node serves at once; a HELLO from a new one beyond them is refused "
     "(log line peer-refused) until silent ones expire"},
    {"cluster.replicas", "--replicas", T_INT, 0, 8, "0", F(replicas), NULL,
     "copies of each shard: its primary (the owner) and replicas-1 replicas on the next nodes of the map; a "
     "write is acknowledged once every in-sync replica has it durable. 1: no replication. 0 (the default): 2 "
     "when cluster.nodes lists at least 2 nodes, else 1. At most the number of nodes"},
    {"cluster.replicaTimeout", "--replica-timeout", T_INT, 100, 600000, "2000", F(replica_timeout_ms), NULL,
     "ms a primary waits for a replica's acknowledgement before it stops waiting (the replica is out of sync, "
     "logged replica-out-of-sync, and catches up before it is in sync again)"},
    {"cluster.nodeTimeout", "--node-timeout", T_INT, 500, 60000, "2000", F(node_timeout_ms), NULL,
     "cluster.raft: ms a node may go unheard by the metadata group's leader before it is declared down and its "
     "shards fail over to in-sync replicas (log lines meta-node-down, meta-failover). Each node renews a lease "
     "every nodeTimeout/8 and serves its primaries only while the lease (nodeTimeout/2) holds"},
    {"cluster.rereplicate", "--rereplicate", T_ENUM, 0, 0, "false", F(rereplicate), bool_choices,
     "cluster.raft: the metadata group's leader gives every shard left below cluster.replicas copies an up "
     "member as a new replica (caught up by snapshot, in sync once it has everything; log meta-rereplicate). "
     "Off by default while it is new"},
    {"cluster.rebalanceDelay", "--rebalance-delay", T_INT, 0, 86400000, "60000", F(rebalance_delay_ms), NULL,
     "cluster.raft: ms a shard may stay out of its home layout (its primary and replicas in the static map, "
     "where the cluster started) while a step home is possible (a layout member up without a copy, home an up "
     "in-sync replica, an extra copy once the layout is in sync), before the metadata group's leader rebalances "
     "(log rebalance-planned; eddy ctl cluster rebalance does it at once). A node that rejoined after a failover "
     "gets its copies and shards back this way. This also undoes a move made with eddy ctl cluster promote. 0: "
     "only when asked"},
    {"cluster.raftBind", "--raft-bind", T_STR, 0, 0, "", F(raft_bind), NULL,
     "cluster.raft: IPv4:PORT this node's Raft transport listens on when its raft address (which the other "
     "nodes dial) is not one of its own, e.g. 0.0.0.0:6024 behind a Kubernetes Service of a fixed ClusterIP. "
     "Empty: its raft address"},
    {"cluster.raft", "--raft", T_ENUM, 0, 0, "auto", F(raft), auto_bool_choices,
     "eddy node: run the metadata group, a Raft group of the nodes of cluster.nodes (at most 9) that decides "
     "the shard map: failure detection, failover to in-sync replicas, re-replication and rebalancing (log and "
     "snapshots in DATA/raft). Each node listens on its raft address (the raft field of its cluster.nodes "
     "entry, IPv4:PORT, else its request address's IPv4 host and port + 3). auto (the default): on when "
     "cluster.nodes lists at least 3 nodes (a majority survives the loss of one), off for 1 or 2; false: the "
     "static map alone decides and a node that is down takes its shards with it. Brokers ignore it"},
    /* cluster links: TLS (common/linktls.h; README: Security) */
    {"cluster.tls.cert", "--cluster-tls-cert", T_PATH, 0, 0, "", F(cluster_tls_cert), NULL,
     "PEM certificate this process shows on the cluster's links (nng tls+tcp:// addresses); its subject's "
     "OU names its role: eddy-node, eddy-broker or eddy-backend (deploy/tls/eddy-certs.sh makes them). The "
     "three files are read again on SIGHUP, for the links made from then on"},
    {"cluster.tls.key", "--cluster-tls-key", T_PATH, 0, 0, "", F(cluster_tls_key), NULL,
     "PEM private key of cluster.tls.cert (unencrypted)"},
    {"cluster.tls.ca", "--cluster-tls-ca", T_PATH, 0, 0, "", F(cluster_tls_ca), NULL,
     "PEM CA certificate(s) every certificate of the cluster chains to (and CRLs, if any: checked); with "
     "these three set every node address must be tls+tcp:// and peers without such a certificate are refused"},
    {"logLevel", "--log-level", T_ENUM, 0, 0, "info", F(log_level), level_choices,
     "debug, info, warn, error or off (no log lines); any case (deepstream's INFO), and in YAML "
     "deepstream's numbers 0-3 and 100 (off)", 0, O_NOCASE},
    {"test.faultDropBroadcasts", "--test-fault-drop-broadcasts", T_INT, 0, 1000000, "0",
     F(fault_drop_broadcasts), NULL,
     "tests only: a node numbers but does not send every Nth delivery batch made only of "
     "broadcasts, as a node drops what it holds for a peer that stops pulling (0: off)"},

    /* deepstream 7's config.yml (README: "Using your deepstream config.yml"); YAML only */
#define DS_MAP(key, target) {key, NULL, T_ALIAS, 0, 0, target, 0, NULL, "deepstream's name of " target}
#define DS_IGNORE(key, why) {key, NULL, T_IGNORED, 0, 0, NULL, 0, NULL, why}
#define DS_FIXED(key, choices, why) {key, NULL, T_FIXED, 0, 0, NULL, 0, choices, why}
#define DS_REFUSE(key, why) {key, NULL, T_REFUSED, 0, 0, NULL, 0, NULL, why}
#define WS "connectionEndpoints.ws-binary.options."
#define HTTP "connectionEndpoints.http.options."
#define NO_PLUGIN "a deepstream plugin: eddy runs none"
    {"connectionEndpoints", NULL, T_ENDPOINTS, 0, 0, NULL, 0, NULL,
     "deepstream's endpoints: a list of {type: ws-binary|http, options}; no http entry turns http.enabled off"},
    DS_MAP(WS "urlPath", "urlPath"),
    DS_MAP(WS "heartbeatInterval", "heartbeatInterval"),
    DS_MAP(WS "maxMessageSize", "maxMessageSize"),
    DS_MAP(WS "unauthenticatedClientTimeout", "auth.unauthenticatedClientTimeout"),
    DS_MAP(WS "maxAuthAttempts", "auth.maxAuthAttempts"),
    DS_IGNORE(WS "logInvalidAuthData", "eddy never logs a websocket login's authData"),
    DS_IGNORE(WS "outgoingBufferTimeout", "eddy writes what a loop turn produced together"),
    DS_IGNORE(WS "maxBufferByteSize", "eddy bounds a client's queue with maxOutboundBytes"),
    DS_IGNORE(WS "headers", "handshake headers are not passed to auth"),
    DS_IGNORE(WS "host", "deepstream 7 reads it from httpServer"),
    DS_IGNORE(WS "port", "deepstream 7 reads it from httpServer"),
    DS_IGNORE(WS "healthCheckPath", "deepstream 7 reads it from httpServer"),
    DS_MAP(HTTP "postPath", "http.postPath"),
    DS_MAP(HTTP "getPath", "http.getPath"),
    DS_MAP(HTTP "authPath", "http.authPath"),
    DS_MAP(HTTP "enableAuthEndpoint", "http.enableAuthEndpoint"),
    DS_MAP(HTTP "allowAuthData", "http.allowAuthData"),
    DS_MAP(HTTP "logInvalidAuthData", "http.logInvalidAuthData"),
    DS_MAP(HTTP "requestTimeout", "http.requestTimeout"),
    DS_MAP(HTTP "maxOperations", "http.maxOperations"),
    DS_MAP(HTTP "maxRequestsInFlight", "http.maxRequestsInFlight"),
    DS_MAP(HTTP "tokenSecret", "http.tokenSecret"),
    DS_MAP(HTTP "tokenTtl", "http.tokenTtl"),
    DS_IGNORE(HTTP "host", "deepstream 7 reads it from httpServer"),
    DS_IGNORE(HTTP "port", "deepstream 7 reads it from httpServer"),
    DS_IGNORE(HTTP "healthCheckPath", "deepstream 7 reads it from httpServer"),
    DS_IGNORE(HTTP "maxMessageSize", "deepstream 7 reads it from httpServer"),
    DS_FIXED("httpServer.type", server_choices, "default or uws, which eddy serves the same way"),
    DS_REFUSE("httpServer.name", NO_PLUGIN),
    DS_REFUSE("httpServer.path", NO_PLUGIN),
    DS_MAP("httpServer.options.host", "host"),
    DS_MAP("httpServer.options.port", "port"),
    DS_MAP("httpServer.options.healthCheckPath", "http.healthCheckPath"),
    DS_MAP("httpServer.options.allowAllOrigins", "http.allowAllOrigins"),
    DS_MAP("httpServer.options.origins", "http.origins"),
    DS_MAP("httpServer.options.maxMessageSize", "http.maxMessageSize"),
    DS_MAP("httpServer.options.hostUrl", "http.hostUrl"),
    DS_IGNORE("httpServer.options.headers", "handshake headers are not passed to auth"),
    DS_MAP("httpServer.options.ssl.key", "tls.key"),
    DS_MAP("httpServer.options.ssl.cert", "tls.cert"),
    DS_MAP("httpServer.options.ssl.ca", "tls.ca"),
    DS_REFUSE("httpServer.options.ssl.dhParams", "eddy uses OpenSSL's own key exchange parameters"),
    DS_REFUSE("httpServer.options.ssl.passphrase", "give eddy an unencrypted key file (readable by eddy only)"),
    DS_IGNORE("serverName", "eddy names a process by node.id"),
    DS_IGNORE("showLogo", "eddy prints no logo"),
    DS_IGNORE("dependencyInitializationTimeout", "eddy loads no plugins"),
    DS_IGNORE("exitOnFatalError", "eddy exits on a fatal error (code 1)"),
    DS_IGNORE("libDir", "eddy loads no plugins"),
    DS_FIXED("enabledFeatures.record", true_choice, "eddy always serves records (remove the line; deny "
             "operations in permissions if clients must not use them)"),
    DS_FIXED("enabledFeatures.event", true_choice, "eddy always serves events (remove the line; deny "
             "operations in permissions if clients must not use them)"),
    DS_FIXED("enabledFeatures.rpc", true_choice, "eddy always serves RPCs (remove the line; deny "
             "operations in permissions if clients must not use them)"),
    DS_FIXED("enabledFeatures.presence", true_choice, "eddy always serves presence (remove the line; deny "
             "operations in permissions if clients must not use them)"),
    DS_FIXED("enabledFeatures.monitoring", false_choice, "eddy has no monitoring topic (its metrics are at "
             "GET /metrics)"),
    DS_IGNORE("telemetry", "eddy sends no telemetry"),
    DS_IGNORE("logger", "eddy logs lines to stderr at logLevel"),
    DS_IGNORE("monitoring", "eddy's metrics are at GET /metrics"),
    DS_IGNORE("subscriptions", "eddy's subscription registry has no options"),
    DS_IGNORE("locks", "eddy has no distributed locks: one node owns each record"),
    DS_IGNORE("clusterNode", "eddy's cluster is cluster.*"),
    DS_IGNORE("clusterRegistry", "eddy's cluster is cluster.*"),
    DS_IGNORE("clusterStates", "eddy's cluster is cluster.*"),
    DS_IGNORE("cache", "a node keeps records in memory itself (storage.cacheSize)"),
    DS_FIXED("storage.type", default_choice, "eddy keeps records itself, in RocksDB under data"),
    DS_IGNORE("storage.options", "eddy keeps records itself, in RocksDB under data"),
    DS_REFUSE("storage.name", "a deepstream storage plugin: eddy keeps records itself, in RocksDB under data"),
    DS_REFUSE("storage.path", "a deepstream storage plugin: eddy keeps records itself, in RocksDB under data"),
    DS_IGNORE("record.cacheRetrievalTimeout", "a node reads records from memory or RocksDB"),
    DS_IGNORE("record.storageRetrievalTimeout", "a node reads records from memory or RocksDB"),
    DS_IGNORE("record.storageExclusionPrefixes", "eddy stores every record"),
    DS_IGNORE("record.storageHotPathPrefixes", "every write goes the same way"),
    DS_REFUSE("plugins", NO_PLUGIN),
#undef DS_MAP
#undef DS_IGNORE
#undef DS_FIXED
#undef DS_REFUSE
#undef WS
#undef HTTP
#undef NO_PLUGIN
};
#pragma GCC diagnostic pop
#define TABLE_LEN (sizeof(table) / sizeof(table[0]))


/* Where a value comes from and how to name it in a message. */
typedef struct setting {
    eddy_config *cfg;
    int strategy;         /* the auth strategy a strategy option sets */
    const char *name;     /* the key as written (auth[1].options.hash); NULL: the row's key and flag */
    const char *base_dir; /* a YAML file's folder: fileLoad() resolves against it; NULL: as given */
    bool from_file;
    char *err;
    size_t err_len;
} setting;

static int fail(const setting *st, const cfg_entry *e, const char *fmt, const char *value)
{
    char why[256];
    snprintf(why, sizeof(why), fmt, value);
    if (st->name != NULL)
        snprintf(st->err, st->err_len, "config error: %s: %s", st->name, why);
    else if (e->flag != NULL)
        snprintf(st->err, st->err_len, "config error: %s (%s): %s", e->key, e->flag, why);
    else
        snprintf(st->err, st->err_len, "config error: %s: %s", e->key, why);
    return -1;
}

static void *field_of(eddy_config *cfg, const cfg_entry *e, int strategy)
{
    return e->types == 0 ? (char *)cfg + e->offset : (char *)&cfg->auth[strategy] + e->offset;
}

/* The bit of a strategy option row in auth_strategy_config.given. */
static uint64_t given_bit(const cfg_entry *e)
{
    unsigned n = 0;
    for (const cfg_entry *r = table; r < e; r++)
        n += r->types != 0;
    return (uint64_t)1 << n;
}

static int add_node(eddy_config *cfg, const char *id, const char *request, const char *delivery,
                    const char *shards, const setting *st, const cfg_entry *e)
{
    char why[256];
    if (clustermap_add(&cfg->cluster, id, request, delivery, shards, why, sizeof(why)) != 0)
        return fail(st, e, "%s", why);
    return 0;
}

/* Appends one events.history entry, checked. */
static int add_history(const setting *st, const cfg_entry *e, const char *re, long long size, long long ttl)
{
    eddy_config *cfg = st->cfg;
    if (cfg->history_count == HISTORY_MAX_RULES)
        return fail(st, e, "at most %s entries", "16");
    if (re[0] == '\0' || strlen(re) > PATTERN_MAX || !pattern_valid(re, strlen(re)))
        return fail(st, e, "pattern '%s' is not a valid regular expression (at most 1024 bytes)", re);
    if (size < 1 || size > 10000000)
        return fail(st, e, "size must be from 1 to 10000000 (pattern '%s')", re);
    if (ttl < 0 || ttl > 31536000000LL)
        return fail(st, e, "ttl must be from 0 (none) to 31536000000 ms (pattern '%s')", re);
    history_rule_config *h = &cfg->history[cfg->history_count++];
    h->pattern = xstrdup(re);
    h->size = size;
    h->ttl_ms = ttl;
    return 0;
}

static void free_history(eddy_config *cfg)
{
    for (int i = 0; i < cfg->history_count; i++)
        xfree(cfg->history[i].pattern);
    memset(cfg->history, 0, sizeof(cfg->history));
    cfg->history_count = 0;
}

/* events.history in a YAML file: [{pattern, size, ttl}, ...]; replaces the list. */
static int apply_history_list(const setting *st, const cfg_entry *e, json_t *list)
{
    if (!json_is_array(list))
        return fail(st, e, "%s", "want a list of {pattern, size, ttl}");
    free_history(st->cfg);
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
        char name[128];
        snprintf(name, sizeof(name), "events.history[%zu]", i);
        setting at = *st;
        at.name = name;
        if (!json_is_object(item))
            return fail(&at, e, "%s", "want a mapping: {pattern, size, ttl}");
        const char *k;
        json_t *v;
        json_object_foreach(item, k, v) {
            if (strcmp(k, "pattern") != 0 && strcmp(k, "size") != 0 && strcmp(k, "ttl") != 0) {
                snprintf(name, sizeof(name), "events.history[%zu].%.32s", i, k);
                return fail(&at, e, "%s", "unknown key (pattern, size, ttl)");
            }
        }
        json_t *re = json_object_get(item, "pattern"), *size = json_object_get(item, "size"),
               *ttl = json_object_get(item, "ttl");
        if (!json_is_string(re))
            return fail(&at, e, "%s", "pattern: missing, or not a string");
        if (!json_is_integer(size))
            return fail(&at, e, "%s", "size: missing, or not an integer");
        if (ttl != NULL && !json_is_integer(ttl))
            return fail(&at, e, "%s", "ttl: not an integer (ms; 0 or absent: none)");
        if (add_history(&at, e, json_string_value(re), (long long)json_integer_value(size),
                        ttl ? (long long)json_integer_value(ttl) : 0) != 0)
            return -1;
    }
    return 0;
}

/* "fileLoad(P)" or "file(P)": P (borrowed from value, length in *len); else NULL. */
static const char *file_syntax(const char *value, size_t *len)
{
    size_t n = strlen(value);
    for (const char *fn = "fileLoad("; fn != NULL; fn = fn[4] == 'L' ? "file(" : NULL) {
        size_t fl = strlen(fn);
        if (n > fl && strncmp(value, fn, fl) == 0 && value[n - 1] == ')') {
            *len = n - fl - 1;
            return value + fl;
        }
    }
    return NULL;
}

static bool header_name_ok(const char *s)
{
    if (s[0] == '\0')
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && strchr("!#$%&'*+-.^_`|~", *s) == NULL)
            return false;
    return true;
}

static void free_names(config_names *n)
{
    for (int i = 0; i < n->count; i++)
        xfree(n->v[i]);
    n->count = 0;
}

/* Sets one entry from its text form (flags, environment, defaults, YAML scalars). */
static int set_text(const setting *st, const cfg_entry *e, const char *value)
{
    void *field = field_of(st->cfg, e, st->strategy);
    size_t plen;
    const char *inner = file_syntax(value, &plen);
    if (inner != NULL && e->type != T_PATH)
        return fail(st, e, "fileLoad() and file() are for file paths; this value is not one (got '%s')", value);
    switch (e->type) {
    case T_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (value[0] == '\0' || *end != '\0' || errno != 0 || v < e->min || v > e->max) {
            char want[128];
            snprintf(want, sizeof(want), "must be an integer from %lld to %lld (got '%%s')",
                     (long long)e->min, (long long)e->max);
            return fail(st, e, want, value);
        }
        *(int64_t *)field = v;
        return 0;
    }
    case T_PATH:
        if (inner != NULL) {
            char *p = xstrndup(inner, plen);
            char *full = NULL;
            if (p[0] != '/' && st->base_dir != NULL) {
                full = xmalloc(strlen(st->base_dir) + plen + 2);
                sprintf(full, "%s/%s", st->base_dir, p);
            }
            char **s = field;
            xfree(*s);
            *s = full != NULL ? full : xstrdup(p);
            xfree(p);
            if (e->min > 0 && (*s)[0] == '\0')
                return fail(st, e, "must not be empty%s", "");
            return 0;
        }
        /* a plain path is taken as given */
        __attribute__((fallthrough));
    case T_STR: {
        if (e->min > 0 && value[0] == '\0')
            return fail(st, e, "must not be empty%s", "");
        char **s = field;
        xfree(*s);
        *s = xstrdup(value);
        return 0;
    }
    case T_ENUM:
        for (int i = 0; e->choices[i] != NULL; i++)
            if ((e->opts & O_NOCASE) ? strcasecmp(value, e->choices[i]) == 0 : strcmp(value, e->choices[i]) == 0) {
                *(int64_t *)field = i;
                return 0;
            }
        return fail(st, e, "unknown value '%s'", value);
    case T_CODES: {
        config_codes c = {0};
        for (const char *p = value; *p != '\0';) {
            char *end;
            errno = 0;
            long long v = strtoll(p, &end, 10);
            if (end == p || errno != 0 || v < e->min || v > e->max || (*end != ',' && *end != '\0'))
                return fail(st, e, "must be HTTP status codes from 100 to 599, comma-separated (got '%s')", value);
            if (c.count == AUTH_MAX_CODES)
                return fail(st, e, "at most 16 codes (got '%s')", value);
            c.v[c.count++] = v;
            p = *end == ',' ? end + 1 : end;
        }
        *(config_codes *)field = c;
        return 0;
    }
    case T_NAMES: {
        config_names n = {0};
        int rc = 0;
        for (const char *p = value; *p != '\0' && rc == 0;) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            char *name = xstrndup(p, len);
            if ((e->opts & O_ANY_NAME) ? name[0] == '\0' : !header_name_ok(name))
                rc = fail(st, e, (e->opts & O_ANY_NAME) ? "empty name in '%s'" : "'%s' is not a valid HTTP header name",
                          (e->opts & O_ANY_NAME) ? value : name);
            else if (n.count == AUTH_MAX_NAMES)
                rc = fail(st, e, "at most 16 names (got '%s')", value);
            if (rc == 0)
                n.v[n.count++] = name;
            else
                xfree(name);
            p = comma ? comma + 1 : p + len;
        }
        if (rc != 0) {
            free_names(&n);
            return -1;
        }
        free_names(field);
        *(config_names *)field = n;
        return 0;
    }
    case T_NODES: {
        /* REQUEST,DELIVERY[,SHARDS...] */
        const char *comma = strchr(value, ',');
        if (comma == NULL)
            return fail(st, e, "expected REQUEST,DELIVERY[,SHARD-RANGES] (got '%s')", value);
        const char *comma2 = strchr(comma + 1, ',');
        char *req = xstrndup(value, (size_t)(comma - value));
        char *del = comma2 ? xstrndup(comma + 1, (size_t)(comma2 - comma - 1)) : xstrdup(comma + 1);
        int rc = add_node(st->cfg, NULL, req, del, comma2 ? comma2 + 1 : NULL, st, e);
        xfree(req);
        xfree(del);
        return rc;
    }
    case T_HISTORY: {
        /* SIZE,TTL,PATTERN: the pattern last (it may hold commas) */
        char *end, *end2;
        errno = 0;
        long long size = strtoll(value, &end, 10);
        if (end == value || *end != ',' || errno != 0)
            return fail(st, e, "expected SIZE,TTL,PATTERN (got '%s')", value);
        long long ttl = strtoll(end + 1, &end2, 10);
        if (end2 == end + 1 || *end2 != ',' || errno != 0)
            return fail(st, e, "expected SIZE,TTL,PATTERN (got '%s')", value);
        return add_history(st, e, end2 + 1, size, ttl);
    }
    case T_AUTHLIST:
        return fail(st, e, "a YAML list of strategies ({type, options}) (got '%s')", value);
    case T_ENDPOINTS:
    case T_ALIAS:
    case T_IGNORED:
    case T_FIXED:
    case T_REFUSED:
        return fail(st, e, "a deepstream key: give it in the YAML file (got '%s')", value);
    }
    return -1;
}

static const cfg_entry *find_key(const char *key)
{
    for (size_t i = 0; i < TABLE_LEN; i++)
        if (strcmp(table[i].key, key) == 0)
            return &table[i];
    return NULL;
}

static void free_strategy(auth_strategy_config *a)
{
    for (size_t i = 0; i < TABLE_LEN; i++) {
        const cfg_entry *e = &table[i];
        if (e->types == 0)
            continue;
        void *field = (char *)a + e->offset;
        if (e->type == T_STR || e->type == T_PATH) {
            xfree(*(char **)field);
            *(char **)field = NULL;
        } else if (e->type == T_NAMES)
            free_names(field);
    }
    memset(a, 0, sizeof(*a));
}

/* Strategy i gets every option's default. */
static void reset_strategy(eddy_config *cfg, int i)
{
    char err[256];
    setting st = {.cfg = cfg, .strategy = i, .err = err, .err_len = sizeof(err)};
    free_strategy(&cfg->auth[i]);
    for (size_t r = 0; r < TABLE_LEN; r++)
        if (table[r].types != 0 && table[r].def != NULL && set_text(&st, &table[r], table[r].def) != 0)
            abort(); /* a bad default is a programming error */
}

/* Sets the auth list to its first strategy alone. */
static void truncate_auth(eddy_config *cfg)
{
    for (int i = 1; i < cfg->auth_count; i++)
        free_strategy(&cfg->auth[i]);
    cfg->auth_count = 1;
    cfg->auth_listed = false;
}

/* A key's value from a flag or the environment, or a YAML scalar. */
static int set_value(const setting *st, const cfg_entry *e, const char *value)
{
    if (e->types == 0)
        return set_text(st, e, value);
    auth_strategy_config *a = &st->cfg->auth[st->strategy];
    if (!st->from_file && e->offset == A(type)) {
        /* --auth / EDDY_AUTH_TYPE: the list becomes this one strategy; what
         * the first strategy was given for another type is dropped */
        int64_t old = a->type;
        if (set_text(st, e, value) != 0)
            return -1;
        int64_t type = a->type;
        truncate_auth(st->cfg);
        if (type != old) {
            auth_strategy_config keep = *a;
            memset(a, 0, sizeof(*a));
            reset_strategy(st->cfg, 0);
            for (size_t r = 0; r < TABLE_LEN; r++) {
                const cfg_entry *o = &table[r];
                if (o->types == 0 || !(keep.given & given_bit(o)) || !(o->types & TY(type)) || o->offset == A(type))
                    continue;
                /* move the option's value over */
                size_t size = o->type == T_CODES ? sizeof(config_codes) : o->type == T_NAMES ? sizeof(config_names)
                              : (o->type == T_STR || o->type == T_PATH) ? sizeof(char *) : sizeof(int64_t);
                void *to = (char *)a + o->offset, *from = (char *)&keep + o->offset;
                if (o->type == T_STR || o->type == T_PATH)
                    xfree(*(char **)to);
                else if (o->type == T_NAMES)
                    free_names(to);
                memcpy(to, from, size);
                memset(from, 0, size);
                a->given |= given_bit(o);
            }
            free_strategy(&keep);
            a->type = type;
        }
        a->given |= given_bit(e);
        return 0;
    }
    if (set_text(st, e, value) != 0)
        return -1;
    a->given |= given_bit(e);
    return 0;
}

void config_defaults(eddy_config *cfg)
{
    char err[256];
    memset(cfg, 0, sizeof(*cfg));
    setting st = {.cfg = cfg, .err = err, .err_len = sizeof(err)};
    for (size_t i = 0; i < TABLE_LEN; i++) {
        if (table[i].types == 0 && table[i].type < T_ENDPOINTS && table[i].def != NULL &&
            set_text(&st, &table[i], table[i].def) != 0)
            abort(); /* a bad default is a programming error */
        if (table[i].type == T_ALIAS && find_key(table[i].def) == NULL)
            abort(); /* so is an alias of no key */
    }
    cfg->auth_count = 1;
    reset_strategy(cfg, 0);
}

static int apply_nodes(const setting *st, const cfg_entry *e, json_t *v)
{
    char why[256];
    if (clustermap_add_json(&st->cfg->cluster, v, why, sizeof(why)) != 0)
        return fail(st, e, "%s", why);
    return 0;
}

/* A YAML list for T_CODES / T_NAMES: joined into the flag form. */
static int apply_list(const setting *st, const cfg_entry *e, json_t *v)
{
    char text[1024] = "";
    size_t used = 0, i;
    json_t *item;
    json_array_foreach(v, i, item) {
        char one[256];
        if (e->type == T_CODES && json_is_integer(item))
            snprintf(one, sizeof(one), "%lld", (long long)json_integer_value(item));
        else if (e->type == T_NAMES && json_is_string(item) && strchr(json_string_value(item), ',') == NULL &&
                 strlen(json_string_value(item)) < sizeof(one))
            snprintf(one, sizeof(one), "%s", json_string_value(item));
        else
            return fail(st, e, "%s", e->type == T_CODES ? "want a list of HTTP status codes" : "want a list of names");
        if (used + strlen(one) + 2 > sizeof(text))
            return fail(st, e, "%s", "too long a list");
        used += (size_t)snprintf(text + used, sizeof(text) - used, "%s%s", i ? "," : "", one);
    }
    return set_value(st, e, text);
}

/* One YAML value for row e. */
static int apply_value(const setting *st, const cfg_entry *e, json_t *v)
{
    if (e->type == T_NODES)
        return apply_nodes(st, e, v);
    if ((e->type == T_CODES || e->type == T_NAMES) && json_is_array(v))
        return apply_list(st, e, v);
    char text[64];
    const char *s;
    if (json_is_string(v))
        s = json_string_value(v);
    else if (json_is_boolean(v) && (e->choices == bool_choices || e->choices == auto_bool_choices))
        s = json_is_true(v) ? "true" : "false";
    else if (json_is_false(v) && (e->opts & O_FALSE_EMPTY))
        s = "";
    else if ((json_is_false(v) || json_is_null(v)) && (e->opts & O_FALSE_MAX)) {
        snprintf(text, sizeof(text), "%lld", (long long)e->max);
        s = text;
    } else if (json_is_integer(v) && e->choices == level_choices) {
        /* deepstream's LOG_LEVEL numbers: DEBUG 0 .. ERROR 3, OFF 100 */
        json_int_t n = json_integer_value(v);
        s = n >= LOG_DEBUG && n <= LOG_ERROR ? level_choices[n] : n == 100 ? "off" : "?";
        if (s[0] == '?')
            return fail(st, e, "%s", "want debug, info, warn, error or off (deepstream's 0-3 or 100)");
    }
    else if (json_is_integer(v) && (e->type == T_INT || e->type == T_CODES)) {
        snprintf(text, sizeof(text), "%lld", (long long)json_integer_value(v));
        s = text;
    } else if (e->type == T_PATH && json_is_object(v))
        return fail(st, e, "%s", "eddy reads this from a file: give its path, or fileLoad(FILE)");
    else
        return fail(st, e, "wrong type%s", e->type == T_INT ? " (want an integer)"
                                           : e->type == T_CODES ? " (want a list of status codes)"
                                           : e->type == T_NAMES ? " (want a list of names)"
                                                                : " (want a string)");
    return set_value(st, e, s);
}

/* deepstream's auth list: [{type, options: {...}}, ...], tried in order. */
static int apply_auth_list(setting *st, const cfg_entry *e, json_t *list)
{
    eddy_config *cfg = st->cfg;
    size_t n = json_array_size(list);
    if (n == 0 || n > AUTH_MAX_STRATEGIES)
        return fail(st, e, "want a list of 1 to 8 strategies ({type, options}), got %s",
                    n == 0 ? "none" : "more");
    truncate_auth(cfg);
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(list, i);
        char name[256];
        snprintf(name, sizeof(name), "auth[%zu]", i);
        if (!json_is_object(item))
            return fail(&(setting){.name = name, .err = st->err, .err_len = st->err_len}, e, "%s",
                        "want a mapping: {type, options}");
        reset_strategy(cfg, (int)i);
        cfg->auth_count = (int)i + 1;
        setting one = *st;
        one.strategy = (int)i;
        one.name = name;
        json_t *type = json_object_get(item, "type");
        snprintf(name, sizeof(name), "auth[%zu].type", i);
        if (type == NULL)
            return fail(&one, e, "%s", "missing (none, file, http or jwt)");
        if (apply_value(&one, find_key("auth.type"), type) != 0)
            return -1;
        const char *k;
        json_t *v;
        json_object_foreach(item, k, v) {
            if (strcmp(k, "type") == 0)
                continue;
            if (strcmp(k, "options") != 0 || !(json_is_object(v) || json_is_null(v))) {
                snprintf(name, sizeof(name), "auth[%zu].%s", i, k);
                return fail(&one, e, "%s", strcmp(k, "options") == 0 ? "want a mapping" : "unknown key");
            }
            const char *ok;
            json_t *ov;
            json_object_foreach(v, ok, ov) {
                char key[256];
                snprintf(key, sizeof(key), "auth.options.%s", ok);
                snprintf(name, sizeof(name), "auth[%zu].options.%s", i, ok);
                const cfg_entry *o = find_key(key);
                if (o == NULL || o->types == 0)
                    return fail(&one, e, "%s", "unknown key");
                if (apply_value(&one, o, ov) != 0)
                    return -1;
            }
        }
    }
    cfg->auth_listed = true;
    return 0;
}

/* ---- deepstream's config.yml keys ---- */

/* Adds name to cfg->ignored (once). */
static void note_ignored(eddy_config *cfg, const char *name)
{
    size_t have = cfg->ignored != NULL ? strlen(cfg->ignored) : 0, n = strlen(name);
    for (const char *p = cfg->ignored; p != NULL && (p = strstr(p, name)) != NULL; p += n)
        if ((p == cfg->ignored || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return;
    cfg->ignored = xrealloc(cfg->ignored, have + n + 2);
    snprintf(cfg->ignored + have, n + 2, "%s%s", have ? "," : "", name);
}

/* A scalar as text ("true", "12", "uws"); NULL for anything else. */
static const char *scalar_text(json_t *v, char *buf, size_t len)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_boolean(v))
        return json_is_true(v) ? "true" : "false";
    if (json_is_integer(v)) {
        snprintf(buf, len, "%lld", (long long)json_integer_value(v));
        return buf;
    }
    return NULL;
}

/* A deepstream row's value v, written as name in the file (connectionEndpoints[0].options.urlPath). */
static int apply_deepstream(const setting *st, const cfg_entry *e, const char *name, json_t *v)
{
    setting one = *st;
    one.name = name;
    one.strategy = 0;
    char buf[32];
    const char *text;
    switch (e->type) {
    case T_ALIAS:
        return apply_value(&one, find_key(e->def), v);
    case T_IGNORED:
        note_ignored(st->cfg, name);
        return 0;
    case T_FIXED:
        text = scalar_text(v, buf, sizeof(buf));
        for (int i = 0; text != NULL && e->choices[i] != NULL; i++)
            if (strcmp(text, e->choices[i]) == 0)
                return 0;
        snprintf(st->err, st->err_len, "config error: %s: %s is not accepted: %s", name,
                 text != NULL ? text : "this value", e->doc);
        return -1;
    case T_REFUSED:
        if (json_is_null(v) || (json_is_object(v) && json_object_size(v) == 0) ||
            (json_is_array(v) && json_array_size(v) == 0))
            return 0;
        snprintf(st->err, st->err_len, "config error: %s: %s", name, e->doc);
        return -1;
    default:
        return fail(&one, e, "%s", "not a deepstream key");
    }
}

/* deepstream 7's connectionEndpoints: [{type, options}, ...]. eddy serves one
 * ws-binary endpoint (its websocket, always on) and one http endpoint (the
 * HTTP API, on when listed); the other types are refused, not ignored, since
 * their clients would find nothing there. deepstream 7 also fails on a null
 * entry, and reads nothing from the older map form (`http: null`): it serves
 * its five defaults then, so both are refused with the reason. */
static int apply_endpoints(setting *st, const cfg_entry *e, json_t *list)
{
    if (!json_is_array(list))
        return fail(st, e, "%s", "want a list of {type, options} (deepstream 7's form; to turn an endpoint off, "
                                 "leave its entry out: deepstream 7 ignores the older map form with `http: null`)");
    if (json_array_size(list) == 0)
        return fail(st, e, "%s", "no endpoints (eddy serves - type: ws-binary and - type: http)");
    bool seen_ws = false, seen_http = false;
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
        char name[256];
        snprintf(name, sizeof(name), "connectionEndpoints[%zu]", i);
        setting at = *st;
        at.name = name;
        if (json_is_null(item))
            return fail(&at, e, "%s", "null: leave the entry out to turn that endpoint off (deepstream 7 fails "
                                      "on a null entry too)");
        if (!json_is_object(item))
            return fail(&at, e, "%s", "want a mapping: {type, options}");
        json_t *type = json_object_get(item, "type");
        snprintf(name, sizeof(name), "connectionEndpoints[%zu].type", i);
        if (type == NULL)
            return fail(&at, e, "%s", "missing (ws-binary or http)");
        if (!json_is_string(type))
            return fail(&at, e, "%s", "want a string (ws-binary or http)");
        const char *t = json_string_value(type);
        bool ws = strcmp(t, "ws-binary") == 0, http = strcmp(t, "http") == 0;
        if (strcmp(t, "ws-text") == 0 || strcmp(t, "ws-json") == 0 || strcmp(t, "mqtt") == 0)
            return fail(&at, e, "%s is not served by eddy (ws-binary and http are)", t);
        if (!ws && !http)
            return fail(&at, e, "unknown type '%s' (eddy serves ws-binary and http)", t);
        if ((ws && seen_ws) || (http && seen_http))
            return fail(&at, e, "a second %s entry (eddy serves one)", t);
        seen_ws |= ws;
        seen_http |= http;
        const char *k;
        json_t *v;
        json_object_foreach(item, k, v) {
            snprintf(name, sizeof(name), "connectionEndpoints[%zu].%s", i, k);
            if (strcmp(k, "type") == 0)
                continue;
            if (strcmp(k, "name") == 0 || strcmp(k, "path") == 0)
                return fail(&at, e, "%s", "a deepstream plugin: eddy runs none");
            if (strcmp(k, "options") != 0)
                return fail(&at, e, "%s", "unknown key");
            if (json_is_null(v))
                continue;
            if (!json_is_object(v))
                return fail(&at, e, "%s", "want a mapping");
            const char *ok;
            json_t *ov;
            json_object_foreach(v, ok, ov) {
                char key[256];
                snprintf(key, sizeof(key), "connectionEndpoints.%s.options.%s", t, ok);
                snprintf(name, sizeof(name), "connectionEndpoints[%zu].options.%s", i, ok);
                const cfg_entry *o = find_key(key);
                if (o == NULL)
                    return fail(&at, e, "%s", "unknown key");
                if (apply_deepstream(st, o, name, ov) != 0)
                    return -1;
            }
        }
    }
    if (!seen_ws)
        return fail(st, e, "%s", "no ws-binary entry: eddy always serves its websocket (at urlPath); "
                                 "add - type: ws-binary");
    return set_text(st, find_key("http.enabled"), seen_http ? "true" : "false");
}

static int apply_json(setting *st, json_t *obj, const char *prefix)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        char key[256];
        snprintf(key, sizeof(key), "%s%s%s", prefix, prefix[0] ? "." : "", k);
        const cfg_entry *e = find_key(key);
        if (e != NULL && e->type == T_ENDPOINTS) {
            if (apply_endpoints(st, e, v) != 0)
                return -1;
            continue;
        }
        if (e != NULL && e->type > T_ENDPOINTS) {
            if (apply_deepstream(st, e, key, v) != 0)
                return -1;
            continue;
        }
        if ((e == NULL || e->type == T_AUTHLIST) && json_is_object(v)) {
            if (apply_json(st, v, key) != 0)
                return -1;
            continue;
        }
        if (e == NULL && json_is_null(v) && strcmp(key, "httpServer.options.ssl") == 0)
            continue; /* deepstream's way of saying "no TLS" */
        if (e == NULL) {
            snprintf(st->err, st->err_len, "config error: %s: unknown key", key);
            return -1;
        }
        if (e->type == T_HISTORY) {
            if (apply_history_list(st, e, v) != 0)
                return -1;
            continue;
        }
        if (e->type == T_AUTHLIST && json_is_array(v)) {
            if (apply_auth_list(st, e, v) != 0)
                return -1;
            continue;
        }
        if (e->types != 0 && st->cfg->auth_listed) {
            snprintf(st->err, st->err_len, "config error: %s: auth is a list here: give the option in the "
                     "list's entry (auth[N].options)", key);
            return -1;
        }
        st->strategy = 0;
        if (apply_value(st, e, v) != 0)
            return -1;
    }
    return 0;
}

int config_load_file(eddy_config *cfg, const char *path, char *err, size_t err_len)
{
    char why[512];
    json_t *root = yaml_load_file(path, why, sizeof(why));
    if (root == NULL) {
        snprintf(err, err_len, "config error: --config: %s", why);
        return -1;
    }
    /* the folder fileLoad() paths are relative to, made absolute */
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) : 0;
    if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else if (path[0] == '/')
        snprintf(dir, sizeof(dir), "%.*s", (int)dlen, path);
    else {
        char cwd[2048];
        if (getcwd(cwd, sizeof(cwd)) == NULL)
            snprintf(cwd, sizeof(cwd), ".");
        snprintf(dir, sizeof(dir), "%s%s%.*s", cwd, dlen ? "/" : "", (int)dlen, path);
    }
    setting st = {.cfg = cfg, .base_dir = dir, .from_file = true, .err = err, .err_len = err_len};
    int rc;
    if (!json_is_object(root)) {
        snprintf(err, err_len, "config error: --config: %s: the top level must be a mapping", path);
        rc = -1;
    } else
        rc = apply_json(&st, root, "");
    json_decref(root);
    return rc;
}

int config_load_env(eddy_config *cfg, char *err, size_t err_len)
{
    setting st = {.cfg = cfg, .err = err, .err_len = err_len};
    for (size_t i = 0; i < TABLE_LEN; i++) {
        if (table[i].type >= T_AUTHLIST) /* lists and deepstream's keys: YAML only */
            continue;
        char name[128] = "EDDY_";
        size_t n = 5;
        for (const char *p = table[i].key; *p && n < sizeof(name) - 1; p++) {
            if (*p == '.')
                name[n++] = '_';
            else {
                if (isupper((unsigned char)*p) && n > 5 && name[n - 1] != '_')
                    name[n++] = '_';
                name[n++] = (char)toupper((unsigned char)*p);
            }
        }
        name[n] = '\0';
        const char *v = getenv(name);
        if (v != NULL && set_value(&st, &table[i], v) != 0)
            return -1;
    }
    return 0;
}

int config_set_flag(eddy_config *cfg, const char *flag, const char *value, char *err,
                    size_t err_len)
{
    setting st = {.cfg = cfg, .err = err, .err_len = err_len};
    for (size_t i = 0; i < TABLE_LEN; i++)
        if (table[i].flag != NULL && strcmp(table[i].flag, flag) == 0)
            return set_value(&st, &table[i], value);
    return -2;
}

const char *config_auth_type_name(int64_t type)
{
    return type >= 0 && type < (int64_t)(sizeof(auth_choices) / sizeof(auth_choices[0])) - 1
               ? auth_choices[type] : "?";
}

bool config_auth_report_invalid(const eddy_config *cfg, int i)
{
    const auth_strategy_config *a = &cfg->auth[i];
    if (a->given & given_bit(find_key("auth.options.reportInvalidParameters")))
        return a->report_invalid != 0;
    return cfg->auth_count == 1;
}

/* The name of strategy i's option row e in a message. */
static void option_name(const eddy_config *cfg, int i, const cfg_entry *e, char *buf, size_t len)
{
    const char *opt = strncmp(e->key, "auth.options.", 13) == 0 ? e->key + 13
                      : strcmp(e->key, "auth.users") == 0 ? "users" : NULL;
    if (cfg->auth_listed)
    {
        if (opt != NULL)
            snprintf(buf, len, "auth[%d].options.%s", i, opt);
        else
            snprintf(buf, len, "auth[%d].type", i);
    }
    else if (e->flag != NULL)
        snprintf(buf, len, "%s (%s)", e->key, e->flag);
    else
        snprintf(buf, len, "%s", e->key);
}

void config_auth_option_name(const eddy_config *cfg, int i, const char *option, char *buf, size_t len)
{
    char key[128];
    snprintf(key, sizeof(key), "auth.options.%s", option);
    const cfg_entry *e = find_key(!cfg->auth_listed && strcmp(option, "users") == 0 ? "auth.users" : key);
    if (e == NULL)
    {
        if (cfg->auth_listed)
            snprintf(buf, len, "auth[%d].options.%s", i, option);
        else
            snprintf(buf, len, "auth.options.%s", option);
    }
    else
        option_name(cfg, i, e, buf, len);
}

static int validate_auth(const eddy_config *cfg, char *err, size_t err_len)
{
    for (int i = 0; i < cfg->auth_count; i++) {
        const auth_strategy_config *a = &cfg->auth[i];
        const char *type = config_auth_type_name(a->type);
        char name[300];
        for (size_t r = 0; r < TABLE_LEN; r++) {
            const cfg_entry *e = &table[r];
            if (e->types != 0 && (a->given & given_bit(e)) && !(e->types & TY(a->type))) {
                option_name(cfg, i, e, name, sizeof(name));
                snprintf(err, err_len, "config error: %s: not an option of auth type %s", name, type);
                return -1;
            }
        }
        const char *missing = NULL, *why = NULL;
        if (a->type == AUTH_FILE && a->users_file[0] == '\0')
            missing = cfg->auth_listed ? "auth.options.users" : "auth.users", why = "file";
        else if (a->type == AUTH_HTTP && a->endpoint_url[0] == '\0')
            missing = "auth.options.endpointUrl", why = "http";
        else if (a->type == AUTH_JWT && (a->secret[0] == '\0') == (a->public_key_file[0] == '\0')) {
            option_name(cfg, i, find_key("auth.options.secret"), name, sizeof(name));
            snprintf(err, err_len, "config error: %s: auth type jwt needs a secret or a publicKey (one of them)", name);
            return -1;
        }
        if (missing != NULL) {
            option_name(cfg, i, find_key(missing), name, sizeof(name));
            snprintf(err, err_len, "config error: %s: required when auth.type is %s", name, why);
            return -1;
        }
        if (a->type == AUTH_HTTP && cfg->auth[i].permitted.count == 0) {
            option_name(cfg, i, find_key("auth.options.permittedStatusCodes"), name, sizeof(name));
            snprintf(err, err_len, "config error: %s: needs at least one status code", name);
            return -1;
        }
    }
    return 0;
}

static int validate_http(const eddy_config *cfg, char *err, size_t err_len)
{
    const struct {
        const char *key, *value;
    } paths[] = {{"http.postPath", cfg->http_post_path}, {"http.getPath", cfg->http_get_path},
                 {"http.authPath", cfg->http_auth_path}, {"http.healthCheckPath", cfg->http_health_check_path}};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        if (paths[i].value[0] != '/') {
            snprintf(err, err_len, "config error: %s: must start with '/' (got '%s')", paths[i].key, paths[i].value);
            return -1;
        }
    if (cfg->http_enabled && !cfg->http_allow_all_origins && cfg->http_origins.count == 0) {
        snprintf(err, err_len, "config error: http.origins: allowAllOrigins is false but no origins are given");
        return -1;
    }
    if (cfg->http_token_secret[0] != '\0' && strlen(cfg->http_token_secret) < 32) {
        snprintf(err, err_len, "config error: http.tokenSecret (--http-token-secret): at least 32 characters "
                 "(got %zu)", strlen(cfg->http_token_secret));
        return -1;
    }
    return 0;
}

/* cluster.raft on a node: the group's voters are cluster.nodes, each with a
 * raft address of its own. */
static int validate_raft(const eddy_config *cfg, const char *role, char *err, size_t err_len)
{
    const clustermap *m = &cfg->cluster;
    if (strcmp(role, "node") != 0 || m->count == 0) {
        snprintf(err, err_len, "config error: cluster.raft (--raft): the metadata group runs on eddy node with "
                 "cluster.nodes listing the nodes (got %s with %d nodes)", role, m->count);
        return -1;
    }
    if (m->count > 9) { /* METARAFT_MAX_VOTERS: every node votes */
        snprintf(err, err_len, "config error: cluster.raft (--raft): at most 9 nodes vote in the metadata group "
                 "(cluster.nodes has %d)", m->count);
        return -1;
    }
    if (config_replicas(cfg) > META_MAX_COPIES) {
        snprintf(err, err_len, "config error: cluster.replicas (--replicas): at most %d copies with cluster.raft",
                 META_MAX_COPIES);
        return -1;
    }
    char addrs[9][64], why[512];
    for (int i = 0; i < m->count; i++) {
        if (clustermap_raft(m, i, addrs[i], sizeof(addrs[i]), why, sizeof(why)) != 0) {
            if (cfg->raft == CONFIG_RAFT_AUTO)
                snprintf(err, err_len, "config error: cluster.nodes: %s (cluster.raft is auto, on with %d nodes: give "
                         "each node a raft address, or set cluster.raft: false for a static map without failover)",
                         why, m->count);
            else
                snprintf(err, err_len, "config error: cluster.nodes: %s", why);
            return -1;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(addrs[i], addrs[j]) == 0) {
                snprintf(err, err_len, "config error: cluster.nodes: nodes '%s' and '%s' have the same raft address "
                         "%s", m->nodes[j].id, m->nodes[i].id, addrs[i]);
                return -1;
            }
    }
    return 0;
}

int config_replicas(const eddy_config *cfg)
{
    if (cfg->replicas > 0)
        return (int)cfg->replicas;
    return cfg->cluster.count >= 2 ? 2 : 1;
}

bool config_raft(const eddy_config *cfg)
{
    if (cfg->raft == CONFIG_RAFT_AUTO)
        return cfg->cluster.count >= 3;
    return cfg->raft != 0;
}

int config_validate(const eddy_config *cfg, const char *role, char *err, size_t err_len)
{
    bool edge = strcmp(role, "node") != 0;
    if (edge && validate_auth(cfg, err, err_len) != 0)
        return -1;
    if (cfg->permission_type == PERMISSION_CONFIG && cfg->permissions_file[0] == '\0') {
        snprintf(err, err_len, "config error: permission.options.permissions (--permissions): required when "
                 "permission.type is config");
        return -1;
    }
    if (edge && cfg->url_path[0] != '/') {
        snprintf(err, err_len, "config error: urlPath (--path): must start with '/' (got '%s')",
                 cfg->url_path);
        return -1;
    }
    if (edge && validate_http(cfg, err, err_len) != 0)
        return -1;
    if (strcmp(role, "broker") == 0 && cfg->cluster.count == 0 && cfg->seed[0] == '\0') {
        snprintf(err, err_len,
                 "config error: cluster.nodes (--node): a broker needs the nodes, or cluster.seed (--seed)");
        return -1;
    }
    const clustermap *m = &cfg->cluster;
    for (int i = 0; i < m->count; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(m->nodes[i].id, m->nodes[j].id) == 0) {
                snprintf(err, err_len, "config error: cluster.nodes: duplicate node id '%s'", m->nodes[i].id);
                return -1;
            }
    shardmap map;
    char why[256];
    if (clustermap_shards(m, &map, why, sizeof(why)) != 0) {
        snprintf(err, err_len, "config error: cluster.nodes: %s", why);
        return -1;
    }
    if (config_replicas(cfg) > 1 && config_replicas(cfg) > (m->count > 0 ? m->count : 1)) {
        snprintf(err, err_len, "config error: cluster.replicas (--replicas): %d copies of each shard need as "
                 "many nodes (cluster.nodes has %d)", config_replicas(cfg), m->count);
        return -1;
    }
    if (cfg->raft == 1 && strcmp(role, "broker") != 0 && validate_raft(cfg, role, err, err_len) != 0)
        return -1;
    if (cfg->raft == CONFIG_RAFT_AUTO && strcmp(role, "node") == 0 && config_raft(cfg) &&
        validate_raft(cfg, role, err, err_len) != 0)
        return -1;
    return 0;
}

void config_print_flags(void)
{
    for (size_t i = 0; i < TABLE_LEN; i++) {
        const cfg_entry *e = &table[i];
        if (e->flag == NULL)
            continue;
        char left[64];
        snprintf(left, sizeof(left), "%s %s", e->flag,
                 e->type == T_INT ? "N" : e->type == T_NODES ? "REQ,DELIV" : e->type == T_PATH ? "FILE"
                 : e->type == T_HISTORY ? "SIZE,TTL,PATTERN"
                 : e->type == T_CODES ? "CODE,..." : e->type == T_NAMES ? "NAME,..." : "VALUE");
        printf("  %-30s %s [%s%s%s]\n", left, e->doc, e->key, e->def && e->def[0] ? ", default " : "",
               e->def ? e->def : "");
    }
}

void config_free(eddy_config *cfg)
{
    for (size_t i = 0; i < TABLE_LEN; i++)
        if (table[i].types == 0 && (table[i].type == T_STR || table[i].type == T_PATH)) {
            char **s = (char **)((char *)cfg + table[i].offset);
            xfree(*s);
            *s = NULL;
        } else if (table[i].types == 0 && table[i].type == T_NAMES)
            free_names((config_names *)((char *)cfg + table[i].offset));
    for (int i = 0; i < AUTH_MAX_STRATEGIES; i++)
        free_strategy(&cfg->auth[i]);
    cfg->auth_count = 0;
    clustermap_clear(&cfg->cluster);
    free_history(cfg);
    xfree(cfg->ignored);
    cfg->ignored = NULL;
}
