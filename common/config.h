/* config.h - eddy's configuration: one typed table (name, type, bounds, default,
 * field, doc line) serving the YAML file, command-line flags and EDDY_*
 * environment variables alike. Precedence: defaults < file < environment < flags.
 * A bad value is one clear line naming the key; the caller exits with code 2. */
#ifndef EDDY_CONFIG_H
#define EDDY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clustermap.h"

enum auth_type { AUTH_NONE = 0, AUTH_FILE = 1, AUTH_HTTP = 2, AUTH_JWT = 3 };
enum permission_type { PERMISSION_NONE = 0, PERMISSION_CONFIG = 1 };

#define AUTH_MAX_STRATEGIES 8
#define AUTH_MAX_CODES 16   /* status codes in one list option */
#define AUTH_MAX_NAMES 16   /* names in one list option (promoteToHeader) */

#define HISTORY_MAX_RULES 16 /* entries of events.history */

/* One entry of events.history: events on names matching pattern are kept by
 * their owning node, the last `size` of each name, each for ttl_ms (0: no ttl). */
typedef struct history_rule_config {
    char *pattern; /* owned; a listen-style regular expression (common/pattern.h) */
    int64_t size;
    int64_t ttl_ms;
} history_rule_config;

typedef struct config_codes {
    int count;
    int64_t v[AUTH_MAX_CODES];
} config_codes;

typedef struct config_names {
    int count;
    char *v[AUTH_MAX_NAMES]; /* owned */
} config_names;

/* One entry of the auth list (deepstream's `auth: [{type, options}]`), tried
 * in order. Every option field exists for every type; config_validate refuses
 * an option given for a type that does not take it. */
typedef struct auth_strategy_config {
    int64_t type;           /* enum auth_type */
    uint64_t given;         /* bit i: the i-th strategy option row was set */
    int64_t report_invalid; /* reportInvalidParameters as given (see config_auth_report_invalid) */
    /* file */
    char *users_file;       /* users: a path (fileLoad(...) resolved) */
    char *hash;             /* PBKDF2 digest of deepstream hashes ("" = none) */
    int64_t iterations, key_length;
    int64_t argon2_ops, argon2_mem_kib; /* cost of the hashes eddy makes (eddy hash, unknown users) */
    /* http */
    char *endpoint_url;
    config_codes permitted, retry_codes;
    int64_t request_timeout_ms, retry_attempts, retry_interval_ms;
    config_names promote;
    int64_t max_concurrent, max_queued, max_response;
    /* jwt */
    char *secret;
    char *public_key_file;
    char *algorithm;        /* "" = HS256 with a secret, RS256 with a public key */
    char *issuer, *audience;
    char *user_id_claim, *client_data_claim, *server_data_claim;
    int64_t clock_tolerance_s;
} auth_strategy_config;

typedef struct eddy_config {
    /* websocket edge (broker, standalone) */
    char *host;
    int64_t port;
    char *url_path;
    int64_t max_message_size;
    int64_t heartbeat_interval_ms;
    int64_t max_outbound_bytes;
    auth_strategy_config auth[AUTH_MAX_STRATEGIES]; /* the auth list, tried in order */
    int auth_count;                                  /* at least 1 */
    bool auth_listed;                                /* the YAML gave deepstream's list form */
    int64_t max_auth_attempts;
    int64_t unauthenticated_timeout_ms;
    int64_t auth_cache_ttl_ms;    /* auth.cacheTtl; 0 = no cache */
    int64_t auth_cache_size;      /* auth.cacheSize: answers kept */
    int64_t auth_workers;         /* auth.workers; 0 = one per core */
    int64_t auth_max_pending;     /* auth.maxPendingLogins */
    /* permissions (broker, node, standalone) */
    int64_t permission_type; /* enum permission_type */
    char *permissions_file;  /* permission.options.permissions */
    int64_t max_rule_iterations;
    int64_t permission_cache_evacuation_ms;
    /* node */
    char *data_dir;
    int64_t sync_mode;     /* enum sync_mode (node/persist.h) */
    int64_t cache_bytes;
    int64_t record_max_size;
    int64_t max_changeset_ops; /* record.maxChangesetOperations */
    char *node_id;
    char *node_request;
    char *node_delivery;
    char *node_metrics; /* node.metrics: eddy node's HTTP listener ("" default, "none" off) */
    int64_t broker_timeout_ms;
    int64_t request_timeout_ms; /* cluster.requestTimeout */
    /* validation */
    int64_t validation_timeout_ms;
    int64_t validation_on_timeout; /* 0 reject, 1 accept */
    config_names validation_required;          /* patterns */
    config_names validation_accept_on_timeout; /* patterns */
    int64_t validation_max_pending;
    /* rpc */
    int64_t rpc_ack_timeout_ms;
    int64_t rpc_response_timeout_ms;
    int64_t rpc_balance; /* 0 round robin, 1 least in flight */
    int64_t rpc_requestor_name;
    int64_t rpc_requestor_data;
    int64_t listen_response_timeout_ms;
    int64_t listen_shuffle_providers;   /* 0 registration order, 1 random */
    int64_t listen_rematch_interval_ms; /* 1000 or less: no rematch */
    int64_t listen_match_cooldown_ms;
    int64_t listen_max_patterns; /* per connection and topic (listen.maxPatternsPerConnection) */
    /* event streams (node/history.c) */
    history_rule_config history[HISTORY_MAX_RULES]; /* events.history, first match wins */
    int history_count;
    int64_t history_max_bytes; /* events.historyMaxBytes: all the node's rings together */
    /* limits for untrusted clients (broker, standalone); 0 turns each off */
    int64_t message_rate;        /* limits.messageRate: messages a second per connection */
    int64_t message_burst;       /* limits.messageBurst: messages one connection may send at once */
    int64_t max_refused;         /* limits.maxRefusedMessages: refused within 10 s before a close */
    int64_t max_per_ip;          /* limits.maxConnectionsPerIp */
    int64_t max_unauthenticated; /* limits.maxUnauthenticatedConnections: not logged in, at once */
    int64_t max_subscriptions;   /* limits.maxSubscriptionsPerConnection: per topic */
    /* the HTTP API on the websocket port (deepstream's connectionEndpoints `- type: http`
     * and httpServer options; broker, standalone) */
    int64_t http_enabled;               /* bool: POST/GET postPath, getPath and authPath are served */
    char *http_post_path, *http_get_path, *http_auth_path;
    int64_t http_enable_auth_endpoint;  /* bool */
    int64_t http_allow_auth_data;       /* bool: requests may log in with authData */
    int64_t http_log_invalid_auth_data; /* bool */
    int64_t http_request_timeout_ms;
    int64_t http_allow_all_origins;     /* bool: CORS for any origin; else only http_origins */
    config_names http_origins;
    int64_t http_max_message_size;      /* bytes of one request body */
    char *http_health_check_path;
    char *http_host_url;                /* "" or the Host header every request must carry (CORS) */
    int64_t http_max_operations;        /* operations in one request */
    int64_t http_max_in_flight;         /* requests being answered at once per broker */
    char *http_token_secret;            /* "" = a random key per process */
    int64_t http_token_ttl_ms;
    /* TLS on the websocket port (broker, standalone): wss:// and https:// */
    char *tls_cert, *tls_key; /* PEM files; "" = plain */
    char *tls_ca;             /* "" = no client certificates asked for */
    /* cluster */
    clustermap cluster; /* cluster.nodes and cluster.epoch */
    char *seed; /* a node's request address to fetch the cluster map from ("" = none) */
    int64_t max_peers; /* brokers and backends a node serves at once (cluster.maxPeers) */
    int64_t replicas;           /* cluster.replicas: copies of each shard (1: the primary alone; 0: config_replicas decides) */
    int64_t replica_timeout_ms; /* cluster.replicaTimeout: a replica silent this long stops holding writes back */
    int64_t node_timeout_ms;    /* cluster.nodeTimeout: a node unheard this long by the Raft leader is failed over */
    int64_t raft;               /* cluster.raft: 0, 1 or CONFIG_RAFT_AUTO; read it with config_raft() */
    char *raft_bind;            /* cluster.raftBind: the Raft transport listens here ("": its raft address) */
    int64_t rebalance_delay_ms; /* cluster.rebalanceDelay: a shard away from home this long goes home (0: never by itself) */
    int64_t rereplicate;        /* cluster.rereplicate: the leader re-replicates under-replicated shards */
    /* cluster links: TLS (common/linktls.h); all three or none */
    char *cluster_tls_cert; /* cluster.tls.cert: this process's certificate, its OU names its role */
    char *cluster_tls_key;  /* cluster.tls.key */
    char *cluster_tls_ca;   /* cluster.tls.ca: the CA every link's certificates chain to */
    /* process */
    int64_t log_level;
    int64_t fault_drop_broadcasts; /* tests only (test.faultDropBroadcasts) */
    /* deepstream config.yml keys the file gave that eddy accepts without effect,
     * comma-separated (serverName,logger,...); NULL: none. Owned. */
    char *ignored;
} eddy_config;

/* Fills cfg with the defaults. */
void config_defaults(eddy_config *cfg);
/* Applies a YAML file. Values written fileLoad(PATH) or file(PATH) (deepstream's
 * syntax) of file-path keys are PATH resolved against the file's folder.
 * deepstream 7's own keys are read too: connectionEndpoints and httpServer map
 * onto eddy's keys, the ones eddy has no use for are added to cfg->ignored,
 * and the ones it cannot honour (ws-text, mqtt, ssl, plugins, a feature
 * turned off) are refused. Returns 0, or -1 with a message in err. */
int config_load_file(eddy_config *cfg, const char *path, char *err, size_t err_len);
/* Applies EDDY_* environment variables (EDDY_PORT, EDDY_AUTH_TYPE, ...). */
int config_load_env(eddy_config *cfg, char *err, size_t err_len);
/* Applies one command-line flag ("--port") with its value. Returns 0, -1 with a
 * message in err, or -2 when the flag is not a configuration flag. */
int config_set_flag(eddy_config *cfg, const char *flag, const char *value, char *err,
                    size_t err_len);
/* Checks cross-field rules (auth file needs users, ...) for a role
 * ("standalone", "broker", "node"). Returns 0 or -1 with a message in err. */
int config_validate(const eddy_config *cfg, const char *role, char *err, size_t err_len);
/* cluster.replicas as it applies: the value set, or for 0 (the default) 2
 * when cluster.nodes lists at least 2 nodes, else 1. */
int config_replicas(const eddy_config *cfg);
/* cluster.raft's "auto" (the default) */
#define CONFIG_RAFT_AUTO 2
/* Whether a node runs the metadata group: cluster.raft as set, or for auto
 * when cluster.nodes lists at least 3 nodes (a Raft majority survives the
 * loss of one of them; with 2 nodes it would not, and the survivor's lease
 * would stop its writes). */
bool config_raft(const eddy_config *cfg);
/* Prints the flag reference (for --help). */
void config_print_flags(void);
/* Whether strategy i answers a login it refuses (reportInvalidParameters) or
 * passes it to the next strategy: as given, else true for a list of one and
 * false for a longer one (deepstream's rule). */
bool config_auth_report_invalid(const eddy_config *cfg, int i);
/* How messages name option (e.g. "users") of strategy i: "auth[1].options.users"
 * in the list form, "auth.users (--users)" in the flat one. */
void config_auth_option_name(const eddy_config *cfg, int i, const char *option, char *buf, size_t len);
/* The name of an auth type ("none", "file", "http", "jwt"). */
const char *config_auth_type_name(int64_t type);
/* Frees the strings cfg owns. */
void config_free(eddy_config *cfg);

#endif
