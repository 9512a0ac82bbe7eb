/* config.c - the configuration table and its three loaders (see config.h).
 * Every key is declared once in `table` below; the YAML walker, the flag parser,
 * the environment reader and --help all read the same rows. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "shardmap.h"
#include "yamljson.h"

enum cfg_type { T_INT, T_STR, T_ENUM, T_NODES };

typedef struct cfg_entry {
    const char *key;  /* dotted YAML key */
    const char *flag; /* command-line flag */
    enum cfg_type type;
    int64_t min, max; /* T_INT bounds; T_STR: min 1 = must not be empty */
    const char *def;
    size_t offset;
    const char *const *choices; /* T_ENUM: index = stored value */
    const char *doc;
} cfg_entry;

static const char *const auth_choices[] = {"none", "file", NULL};
static const char *const permission_choices[] = {"none", "config", NULL};
static const char *const sync_choices[] = {"always", "batch", "never", NULL};
static const char *const balance_choices[] = {"roundrobin", "leastinflight", NULL};
static const char *const bool_choices[] = {"false", "true", NULL};
static const char *const level_choices[] = {"debug", "info", "warn", "error", NULL};

#define F(field) offsetof(eddy_config, field)
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
    {"auth.type", "--auth", T_ENUM, 0, 0, "none", F(auth_type), auth_choices,
     "none: every login succeeds; file: users and Argon2id hashes from auth.users"},
    {"auth.users", "--users", T_STR, 0, 0, "", F(users_file), NULL,
     "users YAML file for auth.type file (see README)"},
    {"auth.maxAuthAttempts", "--max-auth-attempts", T_INT, 1, 1000, "3", F(max_auth_attempts),
     NULL, "failed logins before TOO_MANY_AUTH_ATTEMPTS and a close"},
    {"auth.unauthenticatedClientTimeout", "--unauthenticated-timeout", T_INT, 100, 86400000,
     "180000", F(unauthenticated_timeout_ms), NULL,
     "ms a connection may stay without a successful login"},
    {"permission.type", "--permission", T_ENUM, 0, 0, "none", F(permission_type), permission_choices,
     "none: every operation is allowed; config: deepstream's Valve rules from permission.options.permissions"},
    {"permission.options.permissions", "--permissions", T_STR, 0, 0, "", F(permissions_file), NULL,
     "permissions YAML file (deepstream's permissions.yml format) for permission.type config"},
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
    {"node.id", "--node-id", T_STR, 1, 0, "node1", F(node_id), NULL,
     "this node's id (must appear in cluster.nodes when that list is given)"},
    {"node.request", "--request", T_STR, 0, 0, "", F(node_request), NULL,
     "nng address the node receives operations on from brokers and backends; default "
     "tcp://127.0.0.1:6021 (eddy node), tcp://127.0.0.1:<port+1> (standalone: for backends; "
     "\"none\" turns that off)"},
    {"node.delivery", "--delivery", T_STR, 0, 0, "", F(node_delivery), NULL,
     "nng address the node publishes deliveries on; default tcp://127.0.0.1:6022 (eddy node), "
     "tcp://127.0.0.1:<port+2> (standalone)"},
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
    {"cluster.nodes", "--node", T_NODES, 0, 0, NULL, 0, NULL,
     "the cluster's nodes: YAML list of {id, request, delivery[, shards]}; flag "
     "REQUEST,DELIVERY[,SHARDS] (repeatable). shards: ranges like \"0-1023,2048-3071\" of 0-4095; "
     "all nodes or none list them (none: spread evenly in list order)"},
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
    {"logLevel", "--log-level", T_ENUM, 0, 0, "info", F(log_level), level_choices,
     "debug, info, warn or error"},
    {"test.faultDropBroadcasts", "--test-fault-drop-broadcasts", T_INT, 0, 1000000, "0",
     F(fault_drop_broadcasts), NULL,
     "tests only: a node numbers but does not send every Nth delivery batch made only of "
     "broadcasts, as nng pub/sub drops when a queue is full (0: off)"},
};
#define TABLE_LEN (sizeof(table) / sizeof(table[0]))

static int fail(char *err, size_t err_len, const cfg_entry *e, const char *fmt, const char *value)
{
    char why[256];
    snprintf(why, sizeof(why), fmt, value);
    snprintf(err, err_len, "config error: %s (%s): %s", e->key, e->flag, why);
    return -1;
}

static int add_node(eddy_config *cfg, const char *id, const char *request, const char *delivery,
                    const char *shards, const cfg_entry *e, char *err, size_t err_len)
{
    char why[256];
    if (clustermap_add(&cfg->cluster, id, request, delivery, shards, why, sizeof(why)) != 0)
        return fail(err, err_len, e, "%s", why);
    return 0;
}

/* Sets one entry from its text form (flags, environment, defaults, YAML scalars). */
static int set_text(eddy_config *cfg, const cfg_entry *e, const char *value, char *err,
                    size_t err_len)
{
    void *field = (char *)cfg + e->offset;
    switch (e->type) {
    case T_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (value[0] == '\0' || *end != '\0' || errno != 0 || v < e->min || v > e->max) {
            char want[128];
            snprintf(want, sizeof(want), "must be an integer from %lld to %lld (got '%%s')",
                     (long long)e->min, (long long)e->max);
            return fail(err, err_len, e, want, value);
        }
        *(int64_t *)field = v;
        return 0;
    }
    case T_STR: {
        if (e->min > 0 && value[0] == '\0')
            return fail(err, err_len, e, "must not be empty%s", "");
        char **s = field;
        xfree(*s);
        *s = xstrdup(value);
        return 0;
    }
    case T_ENUM:
        for (int i = 0; e->choices[i] != NULL; i++)
            if (strcmp(value, e->choices[i]) == 0) {
                *(int64_t *)field = i;
                return 0;
            }
        return fail(err, err_len, e, "unknown value '%s'", value);
    case T_NODES: {
        /* REQUEST,DELIVERY[,SHARDS...] */
        const char *comma = strchr(value, ',');
        if (comma == NULL)
            return fail(err, err_len, e, "expected REQUEST,DELIVERY[,SHARD-RANGES] (got '%s')", value);
        const char *comma2 = strchr(comma + 1, ',');
        char *req = xstrndup(value, (size_t)(comma - value));
        char *del = comma2 ? xstrndup(comma + 1, (size_t)(comma2 - comma - 1)) : xstrdup(comma + 1);
        int rc = add_node(cfg, NULL, req, del, comma2 ? comma2 + 1 : NULL, e, err, err_len);
        xfree(req);
        xfree(del);
        return rc;
    }
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

void config_defaults(eddy_config *cfg)
{
    char err[256];
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < TABLE_LEN; i++)
        if (table[i].def != NULL && set_text(cfg, &table[i], table[i].def, err, sizeof(err)) != 0)
            abort(); /* a bad default is a programming error */
}

static int apply_nodes(eddy_config *cfg, const cfg_entry *e, json_t *v, char *err, size_t err_len)
{
    char why[256];
    if (clustermap_add_json(&cfg->cluster, v, why, sizeof(why)) != 0)
        return fail(err, err_len, e, "%s", why);
    return 0;
}

static int apply_json(eddy_config *cfg, json_t *obj, const char *prefix, char *err, size_t err_len)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        char key[256];
        snprintf(key, sizeof(key), "%s%s%s", prefix, prefix[0] ? "." : "", k);
        const cfg_entry *e = find_key(key);
        if (e == NULL && json_is_object(v)) {
            if (apply_json(cfg, v, key, err, err_len) != 0)
                return -1;
            continue;
        }
        if (e == NULL) {
            snprintf(err, err_len, "config error: %s: unknown key", key);
            return -1;
        }
        if (e->type == T_NODES) {
            if (apply_nodes(cfg, e, v, err, err_len) != 0)
                return -1;
            continue;
        }
        char text[64];
        const char *s;
        if (json_is_string(v))
            s = json_string_value(v);
        else if (json_is_boolean(v) && e->choices == bool_choices)
            s = json_is_true(v) ? "true" : "false";
        else if (json_is_integer(v) && e->type == T_INT) {
            snprintf(text, sizeof(text), "%lld", (long long)json_integer_value(v));
            s = text;
        } else
            return fail(err, err_len, e, "wrong type%s", e->type == T_INT ? " (want an integer)"
                                                                       : " (want a string)");
        if (set_text(cfg, e, s, err, err_len) != 0)
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
    int rc;
    if (!json_is_object(root)) {
        snprintf(err, err_len, "config error: --config: %s: the top level must be a mapping", path);
        rc = -1;
    } else
        rc = apply_json(cfg, root, "", err, err_len);
    json_decref(root);
    return rc;
}

int config_load_env(eddy_config *cfg, char *err, size_t err_len)
{
    for (size_t i = 0; i < TABLE_LEN; i++) {
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
        if (v != NULL && set_text(cfg, &table[i], v, err, err_len) != 0)
            return -1;
    }
    return 0;
}

int config_set_flag(eddy_config *cfg, const char *flag, const char *value, char *err,
                    size_t err_len)
{
    for (size_t i = 0; i < TABLE_LEN; i++)
        if (strcmp(table[i].flag, flag) == 0)
            return set_text(cfg, &table[i], value, err, err_len);
    return -2;
}

int config_validate(const eddy_config *cfg, const char *role, char *err, size_t err_len)
{
    bool edge = strcmp(role, "node") != 0;
    if (edge && cfg->auth_type == AUTH_FILE && cfg->users_file[0] == '\0') {
        snprintf(err, err_len, "config error: auth.users (--users): required when auth.type is file");
        return -1;
    }
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
    return 0;
}

void config_print_flags(void)
{
    for (size_t i = 0; i < TABLE_LEN; i++) {
        const cfg_entry *e = &table[i];
        char left[64];
        snprintf(left, sizeof(left), "%s %s", e->flag,
                 e->type == T_INT ? "N" : e->type == T_NODES ? "REQ,DELIV" : "VALUE");
        printf("  %-30s %s [%s%s%s]\n", left, e->doc, e->key, e->def ? ", default " : "",
               e->def ? e->def : "");
    }
}

void config_free(eddy_config *cfg)
{
    for (size_t i = 0; i < TABLE_LEN; i++)
        if (table[i].type == T_STR) {
            char **s = (char **)((char *)cfg + table[i].offset);
            xfree(*s);
            *s = NULL;
        }
    clustermap_clear(&cfg->cluster);
}
