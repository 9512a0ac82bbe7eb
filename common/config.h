/* config.h - eddy's configuration: one typed table (name, type, bounds, default,
 * field, doc line) serving the YAML file, command-line flags and EDDY_*
 * environment variables alike. Precedence: defaults < file < environment < flags.
 * A bad value is one clear line naming the key; the caller exits with code 2. */
#ifndef EDDY_CONFIG_H
#define EDDY_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "clustermap.h"

enum auth_type { AUTH_NONE = 0, AUTH_FILE = 1 };
enum permission_type { PERMISSION_NONE = 0, PERMISSION_CONFIG = 1 };

typedef struct eddy_config {
    /* websocket edge (broker, standalone) */
    char *host;
    int64_t port;
    char *url_path;
    int64_t max_message_size;
    int64_t heartbeat_interval_ms;
    int64_t max_outbound_bytes;
    int64_t auth_type;
    char *users_file;
    int64_t max_auth_attempts;
    int64_t unauthenticated_timeout_ms;
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
    char *node_id;
    char *node_request;
    char *node_delivery;
    int64_t broker_timeout_ms;
    int64_t request_timeout_ms; /* cluster.requestTimeout */
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
    /* cluster */
    clustermap cluster; /* cluster.nodes and cluster.epoch */
    char *seed; /* a node's request address to fetch the cluster map from ("" = none) */
    int64_t max_peers; /* brokers and backends a node serves at once (cluster.maxPeers) */
    /* process */
    int64_t log_level;
    int64_t fault_drop_broadcasts; /* tests only (test.faultDropBroadcasts) */
} eddy_config;

/* Fills cfg with the defaults. */
void config_defaults(eddy_config *cfg);
/* Applies a YAML file. Returns 0, or -1 with a message in err. */
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
/* Prints the flag reference (for --help). */
void config_print_flags(void);
/* Frees the strings cfg owns. */
void config_free(eddy_config *cfg);

#endif
