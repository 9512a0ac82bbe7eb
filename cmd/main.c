/* main.c - the `eddy` command: parses the role and the configuration, then runs
 * a node, a broker, or both in one process (standalone: the broker applies its
 * operations on the node by direct calls, with the same operations, replies
 * and deliveries as over sockets; backends reach the node over tcp). Also `eddy hash PASSWORD` for the users file. Exit codes: 0 clean
 * stop, 1 runtime failure, 2 bad configuration or usage. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "broker.h"
#include "clustermap.h"
#include "config.h"
#include "crash.h"
#include "ctl.h"
#include "linktls.h"
#include "log.h"
#include "mem.h"
#include "node.h"
#include "permissions.h"
#include "shardmap.h"

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t reload_requested; /* SIGHUP: the permission rules again */

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        reload_requested = 1;
    else
        stop_requested = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "eddy %s - a clustered realtime server for deepstream clients\n\n"
            "usage:\n"
            "  eddy standalone [options]   broker and node in one process (default)\n"
            "  eddy broker [options]       websocket edge; needs --node REQ,DELIV\n"
            "  eddy node [options]         shard owner; listens on --request and --delivery\n"
            "  eddy hash [--config FILE] [--auth-argon2-ops-limit N] [--auth-argon2-mem-limit KIB] PASSWORD\n"
            "                              print an Argon2id hash for the users file\n"
            "  eddy ctl COMMAND ...        the cluster from a shell (eddy ctl --help)\n"
            "  eddy --version | --help\n\n"
            "options (YAML keys in brackets; EDDY_<KEY> environment variables also work):\n"
            "  --config FILE                  YAML configuration file\n",
            EDDY_VERSION);
    if (out == stdout)
        config_print_flags();
}

/* eddy hash [--config FILE] [--auth-argon2-ops-limit N] [--auth-argon2-mem-limit KIB] PASSWORD:
 * an Argon2id hash at the cost of the first file strategy of the configuration
 * (its argon2OpsLimit and argon2MemLimit; defaults 2 and 65536 KiB). */
static int cmd_hash(int argc, char **argv)
{
    if (argc < 3 || argc % 2 == 0) {
        fprintf(stderr, "usage: eddy hash [--config FILE] [--auth-argon2-ops-limit N] [--auth-argon2-mem-limit KIB] "
                        "PASSWORD\n");
        return 2;
    }
    eddy_config cfg;
    char err[512];
    int rc = 0;
    config_defaults(&cfg);
    for (int i = 2; i + 1 < argc && rc == 0; i += 2) {
        if (strcmp(argv[i], "--config") == 0)
            rc = config_load_file(&cfg, argv[i + 1], err, sizeof(err));
        else if ((rc = config_set_flag(&cfg, argv[i], argv[i + 1], err, sizeof(err))) == -2)
            snprintf(err, sizeof(err), "unknown option %s", argv[i]);
    }
    if (rc != 0) {
        fprintf(stderr, "eddy: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    const auth_strategy_config *a = &cfg.auth[0];
    for (int i = 0; i < cfg.auth_count; i++)
        if (cfg.auth[i].type == AUTH_FILE) {
            a = &cfg.auth[i];
            break;
        }
    char out[256];
    rc = auth_hash_password(argv[argc - 1], a->argon2_ops, a->argon2_mem_kib, out, sizeof(out));
    config_free(&cfg);
    if (rc != 0) {
        fprintf(stderr, "eddy: hashing failed (out of memory?)\n");
        return 1;
    }
    printf("%s\n", out);
    return 0;
}

/* Loads defaults < --config file < environment < flags. Returns 0 or 2. */
static int load_config(eddy_config *cfg, const char *role, int argc, char **argv, int first)
{
    char err[512];
    config_defaults(cfg);
    for (int i = first; i < argc; i++)
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "eddy: config error: --config needs a FILE\n");
                return 2;
            }
            if (config_load_file(cfg, argv[i + 1], err, sizeof(err)) != 0)
                goto bad;
        }
    if (config_load_env(cfg, err, sizeof(err)) != 0)
        goto bad;
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            i++;
            continue;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "eddy: %s: missing value (see eddy --help)\n", argv[i]);
            return 2;
        }
        int rc = config_set_flag(cfg, argv[i], argv[i + 1], err, sizeof(err));
        if (rc == -2) {
            fprintf(stderr, "eddy: unknown option %s (see eddy --help)\n", argv[i]);
            return 2;
        }
        if (rc != 0)
            goto bad;
        i++;
    }
    if (config_validate(cfg, role, err, sizeof(err)) != 0)
        goto bad;
    if (cfg->permission_type == PERMISSION_CONFIG) { /* a rule that does not compile stops start-up */
        permissions *rules = permissions_load(cfg->permissions_file, (int)cfg->max_rule_iterations, err, sizeof(err));
        if (rules == NULL)
            goto bad;
        permissions_free(rules);
    }
    log_threshold = (enum log_level)cfg->log_level;
    return 0;
bad:
    fprintf(stderr, "eddy: %s\n", err);
    return 2;
}

/* Finds this node's index in the cluster list; a lone node owns every shard.
 * (The map itself was checked by config_validate.) */
static int node_map(const eddy_config *cfg, shardmap *map, unsigned *self)
{
    char err[256];
    if (clustermap_shards(&cfg->cluster, map, err, sizeof(err)) != 0) {
        fprintf(stderr, "eddy: config error: cluster.nodes: %s\n", err);
        return -1;
    }
    if (cfg->cluster.count == 0) {
        *self = 0;
        return 0;
    }
    for (int i = 0; i < cfg->cluster.count; i++)
        if (strcmp(cfg->cluster.nodes[i].id, cfg->node_id) == 0) {
            *self = (unsigned)i;
            return 0;
        }
    fprintf(stderr, "eddy: config error: node.id (--node-id): '%s' is not in cluster.nodes\n",
            cfg->node_id);
    return -1;
}

/* cluster.tls: the credentials load and are this role's (a node's for a node
 * and standalone's backend listener, a broker's for a broker), and every
 * nng address suits them: tls+tcp:// with them, tcp:// (or ipc://) without.
 * Returns 0 with *out the credentials (NULL: none), or 2 (printed). */
static int check_links(const eddy_config *cfg, const char *role, linktls **out)
{
    char err[600];
    *out = NULL;
    linktls *t = linktls_open(cfg->cluster_tls_cert, cfg->cluster_tls_key, cfg->cluster_tls_ca,
                              strcmp(role, "broker") == 0 ? LINK_ROLE_BROKER : LINK_ROLE_NODE, err, sizeof(err));
    if (t == NULL && err[0] != '\0') {
        fprintf(stderr, "eddy: config error: cluster.tls: %s\n", err);
        return 2;
    }
    const char *keys[4 + 2 * CLUSTER_MAX_NODES], *urls[4 + 2 * CLUSTER_MAX_NODES];
    int n = 0;
    if (strcmp(role, "broker") != 0) {
        keys[n] = "node.request (--request)", urls[n++] = cfg->node_request;
        keys[n] = "node.delivery (--delivery)", urls[n++] = cfg->node_delivery;
    }
    if (strcmp(role, "standalone") != 0) { /* standalone's broker calls its node in-process */
        keys[n] = "cluster.seed (--seed)", urls[n++] = cfg->seed;
        for (int i = 0; i < cfg->cluster.count; i++) {
            keys[n] = "cluster.nodes", urls[n++] = cfg->cluster.nodes[i].request;
            keys[n] = "cluster.nodes", urls[n++] = cfg->cluster.nodes[i].delivery;
        }
    }
    for (int i = 0; i < n; i++)
        if (urls[i][0] != '\0' && strcmp(urls[i], "none") != 0 && linktls_check_url(t, urls[i], err, sizeof(err)) != 0) {
            fprintf(stderr, "eddy: config error: %s: %s\n", keys[i], err);
            linktls_close(t);
            return 2;
        }
    *out = t;
    return 0;
}

/* cluster.seed: learns cluster.nodes and cluster.epoch from one node. */
static int learn_cluster(eddy_config *cfg, const linktls *tls)
{
    char *json = clustermap_fetch(cfg->seed, tls, &stop_requested, 0);
    if (json == NULL)
        return stop_requested ? 0 : 1;
    char err[256];
    shardmap map;
    int rc = clustermap_parse(&cfg->cluster, json, strlen(json), err, sizeof(err));
    if (rc == 0)
        rc = clustermap_shards(&cfg->cluster, &map, err, sizeof(err));
    xfree(json);
    if (rc != 0) {
        log_error("seed-map-refused", "seed=%s error=%s", cfg->seed, err);
        return 2;
    }
    log_info("cluster-map-learned", "seed=%s epoch=%lld nodes=%d", cfg->seed, (long long)cfg->cluster.epoch,
             cfg->cluster.count);
    return 0;
}

/* The broker's view of an in-process node (standalone). */
static void local_attach(void *n, uint64_t peer_id, void (*wake)(void *ctx), void *ctx)
{
    node_attach_local(n, peer_id, wake, ctx);
}
static nng_msg *local_request(void *n, const void *body, size_t len)
{
    return node_local_request(n, body, len);
}
static nng_msg *local_take(void *n, uint64_t *published)
{
    return node_local_take(n, published);
}

static void local_detach(void *n)
{
    node_detach_local(n);
}

static void local_metrics(void *n, FILE *f)
{
    node_metrics(n, f);
}

/* Standalone: the broker's reload (SIGHUP) reloads its node too. */
static void reload_node(void *n)
{
    node_reload(n);
}

static int run_broker(eddy_config *cfg, const linktls *tls, node *local)
{
    if (cfg->cluster.count == 0 && cfg->seed[0] != '\0') {
        int rc = learn_cluster(cfg, tls);
        if (rc != 0 || stop_requested)
            return rc;
    }
    bool config_error = false;
    local_node ln = {.node = local, .attach = local_attach, .request = local_request, .take = local_take,
                     .detach = local_detach, .metrics = local_metrics};
    broker *b = broker_create(cfg, local != NULL ? &ln : NULL, &config_error);
    if (b == NULL)
        return config_error ? 2 : 1;
    broker_watch_reload(b, &reload_requested, local != NULL ? reload_node : NULL, local);
    int rc = broker_run(b, &stop_requested) == 0 ? 0 : 1;
    broker_destroy(b);
    return rc;
}

/* True when nothing listens on 127.0.0.1:port (a bind succeeds). */
static bool port_free(long port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* Standalone's endpoint for backends: node.request/node.delivery when given,
 * else <scheme>://127.0.0.1:<port+1> and <port+2> (tcp, or tls+tcp with
 * cluster.tls), or free ports when those are taken (logged) or the websocket
 * port is itself picked at random (0). */
static void standalone_backend_urls(const eddy_config *cfg, const char *scheme, char *req, char *del, size_t len)
{
    long p = (long)cfg->port;
    bool derived = p > 0 && p + 2 <= 65535 && port_free(p + 1) && port_free(p + 2);
    if (p > 0 && !derived && cfg->node_request[0] == '\0')
        log_warn("backend-ports-taken", "ports %ld and %ld are not free: backends get free ports "
                 "(see backends-listening)", p + 1, p + 2);
    snprintf(req, len, "%s://127.0.0.1:%ld", scheme, derived ? p + 1 : 0);
    snprintf(del, len, "%s://127.0.0.1:%ld", scheme, derived ? p + 2 : 0);
    if (cfg->node_request[0] != '\0')
        snprintf(req, len, "%s", cfg->node_request);
    if (cfg->node_delivery[0] != '\0')
        snprintf(del, len, "%s", cfg->node_delivery);
}

static int run_role(const char *role, eddy_config *cfg, const linktls *tls)
{
    int rc = 0;
    if (strcmp(role, "broker") == 0)
        return run_broker(cfg, tls, NULL);

    shardmap map;
    unsigned self;
    if (node_map(cfg, &map, &self) != 0)
        return 2;
    bool standalone = strcmp(role, "standalone") == 0;
    const char *scheme = tls != NULL ? "tls+tcp" : "tcp";
    char tcp_req[300], tcp_del[300];
    snprintf(tcp_req, sizeof(tcp_req), "%s://127.0.0.1:6021", scheme);
    snprintf(tcp_del, sizeof(tcp_del), "%s://127.0.0.1:6022", scheme);
    const char *req = cfg->node_request[0] ? cfg->node_request : tcp_req;
    const char *del = cfg->node_delivery[0] ? cfg->node_delivery : tcp_del;
    if (standalone) {
        /* The node's sockets are for backends only: its broker calls it directly. */
        standalone_backend_urls(cfg, scheme, tcp_req, tcp_del, sizeof(tcp_req));
        bool none = strcmp(cfg->node_request, "none") == 0;
        req = none ? NULL : tcp_req;
        del = none ? NULL : tcp_del;
    }
    node *n = node_start(cfg, req, del, &map, self);
    if (n == NULL)
        return 1;
    /* eddy node's own HTTP listener; standalone's node is in its broker's /metrics */
    const char *metrics = cfg->node_metrics[0] != '\0' ? cfg->node_metrics : "127.0.0.1:6023";
    if (standalone && cfg->node_metrics[0] != '\0' && strcmp(cfg->node_metrics, "none") != 0)
        log_warn("node-metrics-ignored", "node.metrics=%s (standalone serves its node's metrics on the websocket "
                 "port's /metrics)", cfg->node_metrics);
    else if (!standalone && strcmp(metrics, "none") != 0 && node_serve_metrics(n, metrics) != 0) {
        node_stop(n);
        return 1;
    }
    if (standalone && req != NULL)
        log_info("backends-listening", "request=%s delivery=%s (eddy ctl --cluster %s)", node_request_url(n),
                 node_delivery_url(n), node_request_url(n));
    if (standalone) {
        /* The broker reaches the in-process node by direct calls (no socket, no
         * thread in between); it speaks the same operations as to a remote one.
         * Its one node entry names it for logs and metrics. */
        char err[256];
        clustermap_clear(&cfg->cluster);
        clustermap_add(&cfg->cluster, cfg->node_id, "in-process", "in-process", NULL, err, sizeof(err));
        rc = run_broker(cfg, tls, n);
    } else {
        while (!stop_requested) {
            usleep(100 * 1000);
            if (reload_requested) {
                reload_requested = 0;
                node_reload(n);
            }
        }
    }
    node_stop(n);
    return rc;
}

int main(int argc, char **argv)
{
    /* OpenSSL frees its global state in an atexit handler unless told not to.
     * nng finishes closing a TLS connection (SSL_free) on its own reaper
     * thread after nng_close has returned, which can be while exit() runs that
     * handler: a crash after a clean stop. The state stays until the process
     * ends (reachable, not a leak). First, before anything initializes it. */
    OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
    crash_report_install();
    if (argc >= 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)) {
        printf("eddy %s\n", EDDY_VERSION);
        return 0;
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "help") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "hash") == 0)
        return cmd_hash(argc, argv);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 2 && strcmp(argv[1], "ctl") == 0)
        return cmd_ctl(argc, argv, &stop_requested);
    sigaction(SIGHUP, &sa, NULL); /* servers: reload the permission rules */
    const char *role = "standalone";
    int first = 1;
    if (argc >= 2 && argv[1][0] != '-') {
        role = argv[1];
        first = 2;
        if (strcmp(role, "standalone") != 0 && strcmp(role, "broker") != 0 &&
            strcmp(role, "node") != 0) {
            fprintf(stderr, "eddy: unknown command '%s' (see eddy --help)\n", role);
            return 2;
        }
    }
    eddy_config cfg;
    int rc = load_config(&cfg, role, argc, argv, first);
    if (rc != 0) {
        config_free(&cfg);
        return rc;
    }
    linktls *tls;
    if ((rc = check_links(&cfg, role, &tls)) != 0) {
        config_free(&cfg);
        return rc;
    }
    log_info("starting", "role=%s version=%s", role, EDDY_VERSION);
    if (cfg.ignored != NULL)
        log_info("config-ignored", "keys=%s (deepstream settings eddy has no use for; README: "
                 "Using your deepstream config.yml)", cfg.ignored);
    if (tls != NULL)
        log_info("links-tls", "certificate_cn=%s role=%s (every nng link is tls+tcp:// with certificates of "
                 "cluster.tls.ca)", linktls_name(tls), link_role_name(linktls_role(tls)));
    rc = run_role(role, &cfg, tls);
    linktls_close(tls);
    log_info("stopped", "role=%s exit=%d", role, rc);
    config_free(&cfg);
    return rc;
}
