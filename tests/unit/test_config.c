/* test_config.c - the configuration table: defaults, flags, YAML files and
 * environment variables, and that every bad value is refused with a message
 * naming the key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static char err[512];

static const char *write_yaml(const char *text)
{
    static char path[64];
    strcpy(path, "/tmp/eddy-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

/* A configuration with every default. */
static eddy_config defaults(void)
{
    eddy_config c;
    config_defaults(&c);
    return c;
}

static void test_defaults(void **state)
{
    (void)state;
    eddy_config c = defaults();
    assert_int_equal(c.port, 6020);
    assert_string_equal(c.url_path, "/deepstream");
    assert_string_equal(c.data_dir, "./data");
    assert_int_equal(c.max_message_size, 1048576);
    assert_int_equal(c.auth_count, 1);
    assert_int_equal(c.auth[0].type, AUTH_NONE);
    assert_int_equal(c.max_auth_attempts, 3);
    assert_int_equal(c.heartbeat_interval_ms, 30000);
    assert_int_equal(c.cluster.count, 0);
    assert_int_equal(config_validate(&c, "standalone", err, sizeof(err)), 0);
    config_free(&c);
}

static void test_flags(void **state)
{
    (void)state;
    eddy_config c = defaults();
    assert_int_equal(config_set_flag(&c, "--port", "0", err, sizeof(err)), 0);
    assert_int_equal(c.port, 0);
    assert_int_equal(config_set_flag(&c, "--port", "70000", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "port"));
    assert_non_null(strstr(err, "70000"));
    assert_int_equal(config_set_flag(&c, "--port", "12ab", err, sizeof(err)), -1);
    assert_int_equal(config_set_flag(&c, "--port", "", err, sizeof(err)), -1);
    assert_int_equal(config_set_flag(&c, "--log-level", "loud", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "logLevel"));
    assert_int_equal(config_set_flag(&c, "--auth", "file", err, sizeof(err)), 0);
    assert_int_equal(c.auth[0].type, AUTH_FILE);
    assert_int_equal(config_set_flag(&c, "--no-such-flag", "1", err, sizeof(err)), -2);
    assert_int_equal(config_set_flag(&c, "--host", "", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "host"));
    /* auth file without users is refused at validation, naming the key */
    assert_int_equal(config_validate(&c, "standalone", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "auth.users"));
    assert_int_equal(config_set_flag(&c, "--users", "/tmp/users.yml", err, sizeof(err)), 0);
    assert_int_equal(config_validate(&c, "standalone", err, sizeof(err)), 0);
    /* a broker needs a node */
    assert_int_equal(config_validate(&c, "broker", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cluster.nodes"));
    assert_int_equal(config_set_flag(&c, "--node", "tcp://a:1", err, sizeof(err)), -1);
    assert_int_equal(config_set_flag(&c, "--node", "tcp://a:1,tcp://a:2", err, sizeof(err)), 0);
    assert_int_equal(c.cluster.count, 1);
    assert_string_equal(c.cluster.nodes[0].request, "tcp://a:1");
    assert_string_equal(c.cluster.nodes[0].delivery, "tcp://a:2");
    assert_int_equal(config_validate(&c, "broker", err, sizeof(err)), 0);
    assert_int_equal(config_set_flag(&c, "--path", "deepstream", err, sizeof(err)), 0);
    assert_int_equal(config_validate(&c, "broker", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "urlPath"));
    config_free(&c);
}

static void test_yaml(void **state)
{
    (void)state;
    eddy_config c = defaults();
    const char *p = write_yaml("port: 7000\n"
                               "urlPath: /ds\n"
                               "logLevel: warn\n"
                               "auth:\n  type: file\n  users: users.yml\n  maxAuthAttempts: 5\n"
                               "cluster:\n  epoch: 4\n  nodes:\n"
                               "    - {id: a, request: 'tcp://h:1', delivery: 'tcp://h:2'}\n"
                               "    - {id: b, request: 'tcp://h:3', delivery: 'tcp://h:4'}\n");
    assert_int_equal(config_load_file(&c, p, err, sizeof(err)), 0);
    unlink(p);
    assert_int_equal(c.port, 7000);
    assert_string_equal(c.url_path, "/ds");
    assert_int_equal(c.log_level, 2);
    assert_int_equal(c.auth[0].type, AUTH_FILE);
    assert_string_equal(c.auth[0].users_file, "users.yml");
    assert_int_equal(c.max_auth_attempts, 5);
    assert_int_equal(c.cluster.epoch, 4);
    assert_int_equal(c.cluster.count, 2);
    assert_string_equal(c.cluster.nodes[1].id, "b");
    assert_string_equal(c.cluster.nodes[1].delivery, "tcp://h:4");
    config_free(&c);
}

static void expect_yaml_error(const char *text, const char *key)
{
    eddy_config c = defaults();
    const char *p = write_yaml(text);
    assert_int_equal(config_load_file(&c, p, err, sizeof(err)), -1);
    unlink(p);
    if (strstr(err, key) == NULL)
        fail_msg("error '%s' does not name '%s'", err, key);
    config_free(&c);
}

static void test_yaml_errors(void **state)
{
    (void)state;
    expect_yaml_error("prot: 6020\n", "prot");
    expect_yaml_error("auth:\n  tipe: none\n", "auth.tipe");
    expect_yaml_error("port: [1, 2]\n", "port");
    expect_yaml_error("port: 99999\n", "port");
    expect_yaml_error("auth:\n  type: ldap\n", "auth.type");
    expect_yaml_error("cluster:\n  nodes: 3\n", "cluster.nodes");
    expect_yaml_error("cluster:\n  nodes:\n    - {id: a}\n", "cluster.nodes");
    expect_yaml_error("port: 1\n  bad indent: [\n", "--config");
    expect_yaml_error("- just\n- a list\n", "--config");
    eddy_config c = defaults();
    assert_int_equal(config_load_file(&c, "/nonexistent/eddy.yml", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/eddy.yml"));
    config_free(&c);
}

/* Explicit shard maps: every node lists its shards, every shard once. */
static void expect_map(const char *yaml, const char *error_part)
{
    eddy_config c = defaults();
    const char *p = write_yaml(yaml);
    int rc = config_load_file(&c, p, err, sizeof(err));
    unlink(p);
    assert_int_equal(rc, 0);
    rc = config_validate(&c, "broker", err, sizeof(err));
    if (error_part == NULL) {
        if (rc != 0)
            fail_msg("unexpected error: %s", err);
    } else {
        assert_int_equal(rc, -1);
        if (strstr(err, error_part) == NULL || strstr(err, "cluster.nodes") == NULL)
            fail_msg("error '%s' does not say '%s' and name cluster.nodes", err, error_part);
    }
    config_free(&c);
}

#define TWO_NODES(a, b)                                                                  \
    "cluster:\n  nodes:\n"                                                               \
    "    - {id: n1, request: 'tcp://h:1', delivery: 'tcp://h:2'" a "}\n"                 \
    "    - {id: n2, request: 'tcp://h:3', delivery: 'tcp://h:4'" b "}\n"

static void test_shard_map(void **state)
{
    (void)state;
    expect_map(TWO_NODES("", ""), NULL); /* spread evenly */
    expect_map(TWO_NODES(", shards: '0-99,4000-4095'", ", shards: '100-3999'"), NULL);
    expect_map(TWO_NODES(", shards: '0-2047'", ""), "lists no shards");
    expect_map(TWO_NODES(", shards: '0-2048'", ", shards: '2048-4095'"), "shard 2048 is assigned twice");
    expect_map(TWO_NODES(", shards: '0-2046'", ", shards: '2048-4095'"), "shard 2047 has no node");
    expect_map(TWO_NODES(", shards: '0-4096'", ", shards: '1'"), "bad shard range");
    expect_map(TWO_NODES(", shards: 'x'", ", shards: '1'"), "bad shard range");
    expect_map(TWO_NODES(", shards: ''", ", shards: '0-4095'"), "lists no shards");

    /* the flag form: REQUEST,DELIVERY,RANGES... */
    eddy_config c = defaults();
    assert_int_equal(config_set_flag(&c, "--node", "tcp://h:1,tcp://h:2,0-9,20-4095", err, sizeof(err)), 0);
    assert_int_equal(config_set_flag(&c, "--node", "tcp://h:3,tcp://h:4,10-19", err, sizeof(err)), 0);
    assert_string_equal(c.cluster.nodes[0].delivery, "tcp://h:2");
    assert_string_equal(c.cluster.nodes[0].shards, "0-9,20-4095");
    assert_int_equal(config_validate(&c, "broker", err, sizeof(err)), 0);
    config_free(&c);

    /* a broker needs nodes or a seed */
    config_defaults(&c);
    assert_int_equal(config_validate(&c, "broker", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cluster.seed"));
    assert_int_equal(config_set_flag(&c, "--seed", "tcp://h:1", err, sizeof(err)), 0);
    assert_int_equal(config_validate(&c, "broker", err, sizeof(err)), 0);
    config_free(&c);
}

/* cluster.raft: on eddy node only, each node's raft address given (IPv4:PORT)
 * or derived (the request's IPv4 host, port + 3), distinct, at most 9 voters
 * and 5 copies; the error names the node and the fix. */
static int raft_yaml(const char *nodes, const char *role, const char *extra)
{
    char text[1024];
    snprintf(text, sizeof(text), "cluster:\n  raft: true\n%s  nodes:\n%s", extra, nodes);
    eddy_config c = defaults();
    const char *p = write_yaml(text);
    int rc = config_load_file(&c, p, err, sizeof(err));
    unlink(p);
    if (rc == 0)
        rc = config_validate(&c, role, err, sizeof(err));
    if (rc == 0) {
        char addr[64];
        assert_int_equal(clustermap_raft(&c.cluster, 0, addr, sizeof(addr), err, sizeof(err)), 0);
        snprintf(err, sizeof(err), "%s", addr); /* the first node's, for the caller */
    }
    config_free(&c);
    return rc;
}

/* cluster.replicas 0 (the default) is 2 with 2+ nodes, else 1; a value set
 * is kept. cluster.raft auto (the default) is on with 3+ nodes. */
static void test_replicas_default(void **state)
{
    (void)state;
    const char *one = "cluster:\n  nodes:\n"
                      "    - {id: a, request: 'tcp://10.0.0.1:6021', delivery: 'tcp://10.0.0.1:6022'}\n";
    const char *two = "cluster:\n  nodes:\n"
                      "    - {id: a, request: 'tcp://10.0.0.1:6021', delivery: 'tcp://10.0.0.1:6022'}\n"
                      "    - {id: b, request: 'tcp://10.0.0.2:6021', delivery: 'tcp://10.0.0.2:6022'}\n";
    const char *three = "cluster:\n  nodes:\n"
                        "    - {id: a, request: 'tcp://10.0.0.1:6021', delivery: 'tcp://10.0.0.1:6022'}\n"
                        "    - {id: b, request: 'tcp://10.0.0.2:6021', delivery: 'tcp://10.0.0.2:6022'}\n"
                        "    - {id: c, request: 'tcp://10.0.0.3:6021', delivery: 'tcp://10.0.0.3:6022'}\n";
    struct { const char *yaml; const char *raft, *replicas; int want; bool raft_on; } cases[] = {
        {one, NULL, NULL, 1, false},     {two, NULL, NULL, 2, false},      {three, NULL, NULL, 2, true},
        {two, "false", NULL, 2, false},  {two, "true", NULL, 2, true},     {one, "true", NULL, 1, true},
        {two, "true", "1", 1, true},     {two, "false", "2", 2, false},    {three, "false", NULL, 2, false},
        {three, "auto", "3", 3, true},   {three, NULL, "1", 1, true},      {one, "auto", NULL, 1, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        eddy_config c = defaults();
        assert_int_equal(c.replicas, 0);
        assert_int_equal(c.raft, CONFIG_RAFT_AUTO);
        const char *p = write_yaml(cases[i].yaml);
        assert_int_equal(config_load_file(&c, p, err, sizeof(err)), 0);
        unlink(p);
        if (cases[i].raft != NULL)
            assert_int_equal(config_set_flag(&c, "--raft", cases[i].raft, err, sizeof(err)), 0);
        if (cases[i].replicas != NULL)
            assert_int_equal(config_set_flag(&c, "--replicas", cases[i].replicas, err, sizeof(err)), 0);
        assert_int_equal(config_replicas(&c), cases[i].want);
        assert_int_equal(config_raft(&c), cases[i].raft_on);
        assert_int_equal(config_validate(&c, "node", err, sizeof(err)), 0);
        config_free(&c);
    }
    /* auto with 3 nodes named by host: the nodes cannot derive raft addresses; the error says both ways out */
    const char *named = "cluster:\n  nodes:\n"
                        "    - {id: a, request: 'tcp://node-a:6021', delivery: 'tcp://node-a:6022'}\n"
                        "    - {id: b, request: 'tcp://node-b:6021', delivery: 'tcp://node-b:6022'}\n"
                        "    - {id: c, request: 'tcp://node-c:6021', delivery: 'tcp://node-c:6022'}\n";
    eddy_config c = defaults();
    const char *p = write_yaml(named);
    assert_int_equal(config_load_file(&c, p, err, sizeof(err)), 0);
    unlink(p);
    assert_int_equal(config_validate(&c, "node", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cluster.raft is auto"));
    assert_non_null(strstr(err, "cluster.raft: false"));
    assert_int_equal(config_validate(&c, "broker", err, sizeof(err)), 0); /* brokers ignore it */
    assert_int_equal(config_set_flag(&c, "--raft", "false", err, sizeof(err)), 0);
    assert_int_equal(config_validate(&c, "node", err, sizeof(err)), 0);
    config_free(&c);
}

static void test_raft(void **state)
{
    (void)state;
    eddy_config c = defaults();
    assert_int_equal(c.raft, CONFIG_RAFT_AUTO);
    assert_int_equal(config_set_flag(&c, "--raft", "true", err, sizeof(err)), 0);
    assert_int_equal(c.raft, 1);
    config_free(&c);
    const char *derived = "    - {id: a, request: 'tcp://10.0.0.1:6021', delivery: 'tcp://10.0.0.1:6022'}\n"
                          "    - {id: b, request: 'tcp://10.0.0.2:6021', delivery: 'tcp://10.0.0.2:6022'}\n";
    assert_int_equal(raft_yaml(derived, "node", ""), 0);
    assert_string_equal(err, "10.0.0.1:6024");
    assert_int_equal(raft_yaml(derived, "broker", ""), 0); /* brokers ignore it */
    assert_int_equal(raft_yaml(derived, "standalone", ""), -1);
    assert_non_null(strstr(err, "cluster.raft"));
    assert_int_equal(raft_yaml(derived, "node", "  replicas: 6\n"), -1);
    assert_int_equal(raft_yaml("    - {id: a, request: 'tcp://h:1', delivery: 'tcp://h:2', raft: '127.0.0.1:7000'}\n",
                               "node", ""), 0);
    assert_string_equal(err, "127.0.0.1:7000");
    /* a host name: no derivation, and the error says what to add */
    assert_int_equal(raft_yaml("    - {id: a, request: 'tcp://node-a:6021', delivery: 'tcp://node-a:6022'}\n", "node",
                               ""), -1);
    assert_non_null(strstr(err, "node 'a'"));
    assert_non_null(strstr(err, "add raft:"));
    assert_int_equal(raft_yaml("    - {id: a, request: 'tcp://h:1', delivery: 'tcp://h:2', raft: 'host:7000'}\n", "node",
                               ""), -1);
    assert_non_null(strstr(err, "IPv4:PORT"));
    assert_int_equal(raft_yaml("    - {id: a, request: 'tcp://h:1', delivery: 'tcp://h:2', raft: '127.0.0.1:70000'}\n",
                               "node", ""), -1);
    assert_int_equal(raft_yaml("    - {id: a, request: 'tcp://h:1', delivery: 'tcp://h:2', raft: 7}\n", "node", ""), -1);
    assert_int_equal(raft_yaml("    - {id: a, request: 'tcp://10.0.0.1:6021', delivery: 'tcp://h:2'}\n"
                               "    - {id: b, request: 'tcp://h:3', delivery: 'tcp://h:4', raft: '10.0.0.1:6024'}\n",
                               "node", ""), -1);
    assert_non_null(strstr(err, "same raft address"));
    assert_int_equal(raft_yaml("    - {id: a, request: 'tcp://10.0.0.1:65534', delivery: 'tcp://h:2'}\n", "node", ""),
                     -1);
}

static void test_env(void **state)
{
    (void)state;
    eddy_config c = defaults();
    setenv("EDDY_PORT", "6100", 1);
    setenv("EDDY_AUTH_MAX_AUTH_ATTEMPTS", "7", 1);
    assert_int_equal(config_load_env(&c, err, sizeof(err)), 0);
    assert_int_equal(c.port, 6100);
    assert_int_equal(c.max_auth_attempts, 7);
    setenv("EDDY_MAX_MESSAGE_SIZE", "1", 1);
    assert_int_equal(config_load_env(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "maxMessageSize"));
    unsetenv("EDDY_PORT");
    unsetenv("EDDY_AUTH_MAX_AUTH_ATTEMPTS");
    unsetenv("EDDY_MAX_MESSAGE_SIZE");
    config_free(&c);
}

/* The listen options: deepstream's defaults (listen.shuffleProviders true,
 * rematchInterval 30000, matchCooldown 10000), bounds, and all three loaders. */
/* flag=value is taken and sets *field to want. */
static void flag_ok(eddy_config *c, const char *flag, const char *value, const int64_t *field, int64_t want)
{
    assert_int_equal(config_set_flag(c, flag, value, err, sizeof(err)), 0);
    assert_int_equal(*field, want);
}

/* flag=value is refused with an error naming key. */
static void flag_refused(eddy_config *c, const char *flag, const char *value, const char *key)
{
    assert_int_equal(config_set_flag(c, flag, value, err, sizeof(err)), -1);
    if (strstr(err, key) == NULL)
        fail_msg("error '%s' does not name '%s'", err, key);
}

static void test_listen_options(void **state)
{
    (void)state;
    eddy_config c = defaults();
    assert_int_equal(c.listen_response_timeout_ms, 500);
    assert_int_equal(c.listen_shuffle_providers, 1);
    assert_int_equal(c.listen_rematch_interval_ms, 30000);
    assert_int_equal(c.listen_match_cooldown_ms, 10000);

    flag_ok(&c, "--listen-shuffle-providers", "false", &c.listen_shuffle_providers, 0);
    flag_ok(&c, "--listen-shuffle-providers", "true", &c.listen_shuffle_providers, 1);
    flag_refused(&c, "--listen-shuffle-providers", "yes", "listen.shuffleProviders");
    flag_ok(&c, "--listen-rematch-interval", "0", &c.listen_rematch_interval_ms, 0);
    flag_ok(&c, "--listen-rematch-interval", "86400000", &c.listen_rematch_interval_ms, 86400000);
    flag_refused(&c, "--listen-rematch-interval", "86400001", "listen.rematchInterval");
    flag_refused(&c, "--listen-rematch-interval", "-1", "listen.rematchInterval");
    assert_int_equal(c.listen_rematch_interval_ms, 86400000); /* a refused value changes nothing */
    flag_ok(&c, "--listen-match-cooldown", "0", &c.listen_match_cooldown_ms, 0);
    flag_refused(&c, "--listen-match-cooldown", "-5", "listen.matchCooldown");
    flag_refused(&c, "--listen-match-cooldown", "86400001", "listen.matchCooldown");
    flag_refused(&c, "--listen-match-cooldown", "1s", "listen.matchCooldown");
    config_free(&c);

    /* YAML: a real boolean or its string, integers */
    config_defaults(&c);
    const char *p = write_yaml("listen:\n  shuffleProviders: false\n  rematchInterval: 60000\n"
                               "  matchCooldown: 2500\n  responseTimeout: 300\n");
    assert_int_equal(config_load_file(&c, p, err, sizeof(err)), 0);
    unlink(p);
    assert_int_equal(c.listen_shuffle_providers, 0);
    assert_int_equal(c.listen_rematch_interval_ms, 60000);
    assert_int_equal(c.listen_match_cooldown_ms, 2500);
    assert_int_equal(c.listen_response_timeout_ms, 300);
    config_free(&c);
    expect_yaml_error("listen:\n  shuffleProviders: 1\n", "listen.shuffleProviders");
    expect_yaml_error("listen:\n  rematchInterval: soon\n", "listen.rematchInterval");
    expect_yaml_error("listen:\n  matchCooldown: -1\n", "listen.matchCooldown");
    expect_yaml_error("listen:\n  shuffle: true\n", "listen.shuffle");

    /* environment */
    config_defaults(&c);
    setenv("EDDY_LISTEN_SHUFFLE_PROVIDERS", "false", 1);
    setenv("EDDY_LISTEN_REMATCH_INTERVAL", "5000", 1);
    setenv("EDDY_LISTEN_MATCH_COOLDOWN", "100", 1);
    assert_int_equal(config_load_env(&c, err, sizeof(err)), 0);
    assert_int_equal(c.listen_shuffle_providers, 0);
    assert_int_equal(c.listen_rematch_interval_ms, 5000);
    assert_int_equal(c.listen_match_cooldown_ms, 100);
    unsetenv("EDDY_LISTEN_SHUFFLE_PROVIDERS");
    unsetenv("EDDY_LISTEN_REMATCH_INTERVAL");
    unsetenv("EDDY_LISTEN_MATCH_COOLDOWN");
    config_free(&c);
}

/* The limits for untrusted clients (issue 14): limits.*, their flags, YAML
 * keys and environment variables, 0 for "off" where it means that. */
static void test_client_limits(void **state)
{
    (void)state;
    eddy_config c = defaults();
    assert_int_equal(c.message_rate, 10000);
    assert_int_equal(c.message_burst, 20000);
    assert_int_equal(c.max_refused, 1000);
    assert_int_equal(c.max_per_ip, 0);
    assert_int_equal(c.max_unauthenticated, 10000);
    assert_int_equal(c.max_subscriptions, 10000);
    assert_int_equal(c.unauthenticated_timeout_ms, 180000); /* deepstream's, kept */

    flag_ok(&c, "--message-rate", "0", &c.message_rate, 0);
    flag_ok(&c, "--message-rate", "10000000", &c.message_rate, 10000000);
    flag_refused(&c, "--message-rate", "10000001", "limits.messageRate");
    flag_refused(&c, "--message-rate", "-1", "limits.messageRate");
    flag_ok(&c, "--message-burst", "1", &c.message_burst, 1);
    flag_refused(&c, "--message-burst", "0", "limits.messageBurst");
    flag_ok(&c, "--max-refused-messages", "0", &c.max_refused, 0);
    flag_ok(&c, "--max-connections-per-ip", "5", &c.max_per_ip, 5);
    flag_refused(&c, "--max-connections-per-ip", "five", "limits.maxConnectionsPerIp");
    flag_ok(&c, "--max-unauthenticated", "0", &c.max_unauthenticated, 0);
    flag_ok(&c, "--max-subscriptions", "100000000", &c.max_subscriptions, 100000000);
    flag_refused(&c, "--max-subscriptions", "100000001", "limits.maxSubscriptionsPerConnection");
    config_free(&c);

    config_defaults(&c);
    const char *p = write_yaml("limits:\n  messageRate: 50\n  messageBurst: 60\n  maxRefusedMessages: 7\n"
                               "  maxConnectionsPerIp: 100\n  maxUnauthenticatedConnections: 200\n"
                               "  maxSubscriptionsPerConnection: 300\n");
    assert_int_equal(config_load_file(&c, p, err, sizeof(err)), 0);
    unlink(p);
    assert_int_equal(c.message_rate, 50);
    assert_int_equal(c.message_burst, 60);
    assert_int_equal(c.max_refused, 7);
    assert_int_equal(c.max_per_ip, 100);
    assert_int_equal(c.max_unauthenticated, 200);
    assert_int_equal(c.max_subscriptions, 300);
    config_free(&c);
    expect_yaml_error("limits:\n  messageRate: fast\n", "limits.messageRate");
    expect_yaml_error("limits:\n  maxConnectionsPerIP: 3\n", "limits.maxConnectionsPerIP");

    config_defaults(&c);
    setenv("EDDY_LIMITS_MESSAGE_RATE", "123", 1);
    setenv("EDDY_LIMITS_MAX_UNAUTHENTICATED_CONNECTIONS", "45", 1);
    assert_int_equal(config_load_env(&c, err, sizeof(err)), 0);
    assert_int_equal(c.message_rate, 123);
    assert_int_equal(c.max_unauthenticated, 45);
    unsetenv("EDDY_LIMITS_MESSAGE_RATE");
    unsetenv("EDDY_LIMITS_MAX_UNAUTHENTICATED_CONNECTIONS");
    config_free(&c);
}

/* The bounds of issue 13: listen.maxPatternsPerConnection, cluster.maxPeers. */
static void test_hostile_bounds(void **state)
{
    (void)state;
    eddy_config c = defaults();
    assert_int_equal(c.listen_max_patterns, 100);
    assert_int_equal(c.max_peers, 1024);
    assert_int_equal(config_set_flag(&c, "--listen-max-patterns", "3", err, sizeof(err)), 0);
    assert_int_equal(c.listen_max_patterns, 3);
    assert_int_equal(config_set_flag(&c, "--max-peers", "16", err, sizeof(err)), 0);
    assert_int_equal(c.max_peers, 16);
    flag_refused(&c, "--listen-max-patterns", "0", "listen.maxPatternsPerConnection");
    flag_refused(&c, "--listen-max-patterns", "1000001", "listen.maxPatternsPerConnection");
    flag_refused(&c, "--max-peers", "0", "cluster.maxPeers");
    flag_refused(&c, "--max-peers", "many", "cluster.maxPeers");
    config_free(&c);

    config_defaults(&c);
    const char *p = write_yaml("listen:\n  maxPatternsPerConnection: 7\ncluster:\n  maxPeers: 64\n");
    assert_int_equal(config_load_file(&c, p, err, sizeof(err)), 0);
    unlink(p);
    assert_int_equal(c.listen_max_patterns, 7);
    assert_int_equal(c.max_peers, 64);
    config_free(&c);
    expect_yaml_error("cluster:\n  maxPeers: -1\n", "cluster.maxPeers");

    config_defaults(&c);
    setenv("EDDY_LISTEN_MAX_PATTERNS_PER_CONNECTION", "9", 1);
    setenv("EDDY_CLUSTER_MAX_PEERS", "32", 1);
    assert_int_equal(config_load_env(&c, err, sizeof(err)), 0);
    assert_int_equal(c.listen_max_patterns, 9);
    assert_int_equal(c.max_peers, 32);
    unsetenv("EDDY_LISTEN_MAX_PATTERNS_PER_CONNECTION");
    unsetenv("EDDY_CLUSTER_MAX_PEERS");
    config_free(&c);

    /* a YAML alias bomb as --config is refused, naming the file (test_yaml has the loader's side) */
    config_defaults(&c);
    p = write_yaml("a: &a [x, x, x, x, x, x, x, x, x]\n"
                   "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                   "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                   "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                   "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                   "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n");
    assert_int_equal(config_load_file(&c, p, err, sizeof(err)), -1);
    if (strstr(err, p) == NULL || strstr(err, "alias") == NULL)
        fail_msg("error '%s' does not name the file and the aliases", err);
    unlink(p);
    config_free(&c);
}


/* ---- the auth list (deepstream's form), fileLoad(), and the auth options ---- */

/* A folder with a config file of text; the config is loaded into *c. */
static char tmpdir_path[64];
static int load_in_dir(eddy_config *c, const char *name, const char *text)
{
    strcpy(tmpdir_path, "/tmp/eddy-test-conf-XXXXXX");
    assert_non_null(mkdtemp(tmpdir_path));
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir_path, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    config_defaults(c);
    int rc = config_load_file(c, path, err, sizeof(err));
    unlink(path);
    rmdir(tmpdir_path);
    return rc;
}

static void expect_path(const char *got, const char *dir, const char *rest)
{
    char want[512];
    snprintf(want, sizeof(want), "%s/%s", dir, rest);
    assert_string_equal(got, want);
}

static void test_auth_list(void **state)
{
    (void)state;
    eddy_config c;
    /* deepstream's own blocks, copied unchanged (conf/config.yml's comments' values) */
    int rc = load_in_dir(&c, "config.yml",
        "auth:\n"
        "  - type: http\n"
        "    options:\n"
        "      endpointUrl: https://someurl.com/validateLogin\n"
        "      permittedStatusCodes: [ 200 ]\n"
        "      requestTimeout: 2000\n"
        "      promoteToHeader:\n"
        "        - token\n"
        "      retryStatusCodes: [ 404, 504 ]\n"
        "      retryAttempts: 3\n"
        "      retryInterval: 5000\n"
        "  - type: file\n"
        "    options:\n"
        "      users: fileLoad(users.yml)\n"
        "      hash: 'md5'\n"
        "      iterations: 100\n"
        "      keyLength: 32\n"
        "      reportInvalidParameters: true\n"
        "  - type: jwt\n"
        "    options: {secret: s3cret, audience: eddy, issuer: me, userIdClaim: uid, clockTolerance: 5}\n"
        "  - type: none\n"
        "auth.maxAuthAttempts: 5\n"
        "permission:\n  type: config\n  options:\n    permissions: fileLoad(permissions.yml)\n");
    if (rc != 0)
        fail_msg("%s", err);
    assert_int_equal(c.auth_count, 4);
    assert_true(c.auth_listed);
    assert_int_equal(c.max_auth_attempts, 5);
    const auth_strategy_config *h = &c.auth[0], *f = &c.auth[1], *j = &c.auth[2];
    assert_int_equal(h->type, AUTH_HTTP);
    assert_string_equal(h->endpoint_url, "https://someurl.com/validateLogin");
    assert_int_equal(h->permitted.count, 1);
    assert_int_equal(h->permitted.v[0], 200);
    assert_int_equal(h->retry_codes.count, 2);
    assert_int_equal(h->retry_codes.v[1], 504);
    assert_int_equal(h->request_timeout_ms, 2000);
    assert_int_equal(h->retry_attempts, 3);
    assert_int_equal(h->retry_interval_ms, 5000);
    assert_int_equal(h->promote.count, 1);
    assert_string_equal(h->promote.v[0], "token");
    assert_int_equal(f->type, AUTH_FILE);
    expect_path(f->users_file, tmpdir_path, "users.yml"); /* relative to the config file */
    expect_path(c.permissions_file, tmpdir_path, "permissions.yml");
    assert_string_equal(f->hash, "md5");
    assert_int_equal(f->iterations, 100);
    assert_int_equal(f->key_length, 32);
    assert_int_equal(j->type, AUTH_JWT);
    assert_string_equal(j->secret, "s3cret");
    assert_string_equal(j->audience, "eddy");
    assert_string_equal(j->user_id_claim, "uid");
    assert_string_equal(j->client_data_claim, "clientData"); /* a default */
    assert_int_equal(j->clock_tolerance_s, 5);
    assert_int_equal(c.auth[3].type, AUTH_NONE);
    /* reportInvalidParameters: false in a list unless given (deepstream) */
    assert_false(config_auth_report_invalid(&c, 0));
    assert_true(config_auth_report_invalid(&c, 1));
    assert_int_equal(config_validate(&c, "standalone", err, sizeof(err)), 0);
    /* a flag makes the list one strategy again */
    assert_int_equal(config_set_flag(&c, "--auth", "none", err, sizeof(err)), 0);
    assert_int_equal(c.auth_count, 1);
    assert_int_equal(c.auth[0].type, AUTH_NONE);
    assert_int_equal(config_validate(&c, "standalone", err, sizeof(err)), 0);
    config_free(&c);

    /* one strategy: reportInvalidParameters defaults to true; file(), absolute paths */
    rc = load_in_dir(&c, "c.yml", "auth:\n  - type: file\n    options:\n      users: file(./u.yml)\n"
                                  "permission:\n  options:\n    permissions: fileLoad(/etc/p.yml)\n");
    assert_int_equal(rc, 0);
    expect_path(c.auth[0].users_file, tmpdir_path, "./u.yml");
    assert_string_equal(c.permissions_file, "/etc/p.yml");
    assert_true(config_auth_report_invalid(&c, 0));
    config_free(&c);

    /* deepstream's hash: false; the flat form with options (deepstream 3/4) */
    rc = load_in_dir(&c, "c.yml", "auth:\n  type: file\n  options:\n    users: fileLoad(u.yml)\n    hash: false\n");
    if (rc != 0)
        fail_msg("%s", err);
    assert_false(c.auth_listed);
    assert_string_equal(c.auth[0].hash, "");
    expect_path(c.auth[0].users_file, tmpdir_path, "u.yml");
    config_free(&c);

    /* a plain relative path stays as given (relative to the working folder) */
    rc = load_in_dir(&c, "c.yml", "auth:\n  type: file\n  users: users.yml\n");
    assert_int_equal(rc, 0);
    assert_string_equal(c.auth[0].users_file, "users.yml");
    config_free(&c);
}

/* Every key eddy does not take is refused with its full name. */
static void expect_auth_error(const char *yaml, const char *part)
{
    eddy_config c;
    int rc = load_in_dir(&c, "c.yml", yaml);
    if (rc == 0)
        rc = config_validate(&c, "standalone", err, sizeof(err));
    if (rc == 0)
        fail_msg("accepted: %s", yaml);
    if (strstr(err, part) == NULL)
        fail_msg("error '%s' does not say '%s'", err, part);
    config_free(&c);
}

static void test_auth_refusals(void **state)
{
    (void)state;
    expect_auth_error("auth:\n  - type: none\n  - type: file\n    options:\n      users: u.yml\n"
                      "      reportInvalidParamters: true\n", "auth[1].options.reportInvalidParamters: unknown key");
    expect_auth_error("auth:\n  - type: none\n    name: my-plugin\n", "auth[0].name: unknown key");
    expect_auth_error("auth:\n  - type: none\n    path: ./plugin\n", "auth[0].path: unknown key");
    expect_auth_error("auth:\n  - type: ldap\n", "auth[0].type");
    expect_auth_error("auth:\n  - options: {}\n", "auth[0].type: missing");
    expect_auth_error("auth:\n  - none\n", "auth[0]");
    expect_auth_error("auth: []\n", "auth");
    expect_auth_error("auth:\n  - type: file\n    options:\n      users: u.yml\n      endpointUrl: http://x/\n",
                      "auth[0].options.endpointUrl: not an option of auth type file");
    expect_auth_error("auth:\n  - type: none\n  - type: file\n", "auth[1].options.users: required");
    expect_auth_error("auth:\n  - type: http\n", "auth[0].options.endpointUrl: required");
    expect_auth_error("auth:\n  - type: jwt\n", "auth[0].options.secret");
    expect_auth_error("auth:\n  - type: jwt\n    options: {secret: a, publicKey: k.pem}\n", "one of them");
    expect_auth_error("auth:\n  - type: http\n    options:\n      endpointUrl: http://x/\n      "
                      "permittedStatusCodes: [200, 999]\n", "auth[0].options.permittedStatusCodes");
    expect_auth_error("auth:\n  - type: http\n    options:\n      endpointUrl: http://x/\n      "
                      "promoteToHeader: ['a b']\n", "auth[0].options.promoteToHeader");
    expect_auth_error("auth:\n  - type: file\n    options:\n      users: {alice: {password: x}}\n",
                      "auth[0].options.users");
    expect_auth_error("auth:\n  type: file\n  options:\n    users: u.yml\n    tipe: x\n", "auth.options.tipe: unknown key");
    expect_auth_error("auth:\n  type: none\n  options:\n    users: u.yml\n",
                      "auth.options.users: not an option of auth type none");
    expect_auth_error("auth:\n  type: http\n", "auth.options.endpointUrl (--auth-endpoint-url): required");
    expect_auth_error("port: fileLoad(port.txt)\n", "port");
    expect_auth_error("auth:\n  - type: none\nauth.type: file\n", "auth.type");
}

static void test_auth_flags(void **state)
{
    (void)state;
    eddy_config c = defaults();
    assert_int_equal(config_set_flag(&c, "--auth-endpoint-url", "http://127.0.0.1:1/auth", err, sizeof(err)), 0);
    assert_int_equal(config_set_flag(&c, "--auth", "http", err, sizeof(err)), 0); /* keeps what http takes */
    assert_string_equal(c.auth[0].endpoint_url, "http://127.0.0.1:1/auth");
    assert_int_equal(config_set_flag(&c, "--auth-permitted-status-codes", "200,204", err, sizeof(err)), 0);
    assert_int_equal(c.auth[0].permitted.count, 2);
    assert_int_equal(c.auth[0].permitted.v[1], 204);
    flag_refused(&c, "--auth-retry-status-codes", "600", "auth.options.retryStatusCodes");
    flag_refused(&c, "--auth-retry-status-codes", "500,,", "auth.options.retryStatusCodes");
    flag_refused(&c, "--auth-promote-to-header", "token,bad name", "auth.options.promoteToHeader");
    flag_refused(&c, "--auth-request-timeout", "0", "auth.options.requestTimeout");
    flag_refused(&c, "--auth-cache-ttl", "-1", "auth.cacheTtl");
    assert_int_equal(config_set_flag(&c, "--auth-promote-to-header", "token,x-api-key", err, sizeof(err)), 0);
    assert_int_equal(c.auth[0].promote.count, 2);
    assert_int_equal(config_validate(&c, "standalone", err, sizeof(err)), 0);
    /* an option of another type is refused at validation, naming the flag */
    assert_int_equal(config_set_flag(&c, "--auth-secret", "s", err, sizeof(err)), 0);
    assert_int_equal(config_validate(&c, "standalone", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "auth.options.secret (--auth-secret): not an option of auth type http"));
    /* switching type drops what the new one does not take */
    assert_int_equal(config_set_flag(&c, "--auth", "jwt", err, sizeof(err)), 0);
    assert_string_equal(c.auth[0].secret, "s");
    assert_string_equal(c.auth[0].endpoint_url, "");
    assert_int_equal(config_validate(&c, "standalone", err, sizeof(err)), 0);
    /* a node needs no auth */
    assert_int_equal(config_set_flag(&c, "--auth", "file", err, sizeof(err)), 0);
    assert_int_equal(config_validate(&c, "node", err, sizeof(err)), 0);
    /* fileLoad() from a flag: relative to the working folder */
    assert_int_equal(config_set_flag(&c, "--users", "fileLoad(conf/users.yml)", err, sizeof(err)), 0);
    assert_string_equal(c.auth[0].users_file, "conf/users.yml");
    config_free(&c);

    /* the environment */
    config_defaults(&c);
    setenv("EDDY_AUTH_TYPE", "http", 1);
    setenv("EDDY_AUTH_OPTIONS_ENDPOINT_URL", "http://h/a", 1);
    setenv("EDDY_AUTH_CACHE_TTL", "0", 1);
    assert_int_equal(config_load_env(&c, err, sizeof(err)), 0);
    assert_int_equal(c.auth[0].type, AUTH_HTTP);
    assert_string_equal(c.auth[0].endpoint_url, "http://h/a");
    assert_int_equal(c.auth_cache_ttl_ms, 0);
    unsetenv("EDDY_AUTH_TYPE");
    unsetenv("EDDY_AUTH_OPTIONS_ENDPOINT_URL");
    unsetenv("EDDY_AUTH_CACHE_TTL");
    config_free(&c);
}


/* ---- deepstream 7's config.yml: mapped, ignored and refused keys ---- */

/* deepstream 7.0.2's shipped conf/config.yml, its keys and values (comments left out). */
static const char ds_shipped[] =
    "serverName: UUID\n"
    "showLogo: true\n"
    "dependencyInitializationTimeout: 5000\n"
    "exitOnFatalError: false\n"
    "logLevel: INFO\n"
    "enabledFeatures:\n  record: true\n  event: true\n  rpc: true\n  presence: true\n"
    "telemetry:\n  type: deepstreamIO\n  options:\n    enabled: false\n    debug: false\n"
    "rpc:\n  ackTimeout: 1000\n  responseTimeout: 10000\n  provideRequestorName: false\n"
    "  provideRequestorData: false\n"
    "record:\n  cacheRetrievalTimeout: 30000\n  storageRetrievalTimeout: 30000\n"
    "listen:\n  shuffleProviders: true\n  responseTimeout: 500\n  rematchInterval: 60000\n"
    "  matchCooldown: 10000\n"
    "httpServer:\n  type: default\n  options:\n    healthCheckPath: /health-check\n"
    "    allowAllOrigins: true\n    maxMessageSize: 1048576\n    origins:\n      - 'https://example.com'\n"
    "connectionEndpoints:\n"
    "  - type: ws-binary\n    options:\n      urlPath: /deepstream\n      heartbeatInterval: 30000\n"
    "      outgoingBufferTimeout: 0\n      maxBufferByteSize: 100000\n      logInvalidAuthData: false\n"
    "      unauthenticatedClientTimeout: 180000\n      maxAuthAttempts: 3\n      maxMessageSize: 1048576\n"
    "  - type: http\n    options:\n      allowAuthData: true\n      postPath: /api\n      getPath: /api\n"
    "      logInvalidAuthData: false\n      requestTimeout: 20000\n"
    "logger:\n  type: default\n  options:\n    colors: true\n"
    "auth:\n  - type: none\n"
    "permission:\n  type: config\n  options:\n    permissions: fileLoad(permissions.yml)\n"
    "    maxRuleIterations: 3\n    cacheEvacuationInterval: 60000\n"
    "monitoring:\n  type: none\n";

static void test_deepstream_shipped(void **state)
{
    (void)state;
    eddy_config c;
    if (load_in_dir(&c, "config.yml", ds_shipped) != 0)
        fail_msg("%s", err);
    assert_int_equal(config_validate(&c, "standalone", err, sizeof(err)), 0);
    assert_int_equal(c.log_level, 1); /* INFO */
    assert_string_equal(c.url_path, "/deepstream");
    assert_int_equal(c.heartbeat_interval_ms, 30000);
    assert_int_equal(c.max_message_size, 1048576);
    assert_int_equal(c.unauthenticated_timeout_ms, 180000);
    assert_int_equal(c.max_auth_attempts, 3);
    assert_int_equal(c.http_enabled, 1);
    assert_string_equal(c.http_post_path, "/api");
    assert_string_equal(c.http_get_path, "/api");
    assert_int_equal(c.http_allow_auth_data, 1);
    assert_int_equal(c.http_request_timeout_ms, 20000);
    assert_string_equal(c.http_health_check_path, "/health-check");
    assert_int_equal(c.http_allow_all_origins, 1);
    assert_int_equal(c.http_origins.count, 1);
    assert_string_equal(c.http_origins.v[0], "https://example.com");
    assert_int_equal(c.listen_rematch_interval_ms, 60000);
    assert_int_equal(c.permission_type, PERMISSION_CONFIG);
    expect_path(c.permissions_file, tmpdir_path, "permissions.yml");
    assert_non_null(c.ignored);
    assert_string_equal(c.ignored, "serverName,showLogo,dependencyInitializationTimeout,exitOnFatalError,telemetry,"
                                   "record.cacheRetrievalTimeout,record.storageRetrievalTimeout,"
                                   "connectionEndpoints[0].options.outgoingBufferTimeout,"
                                   "connectionEndpoints[0].options.maxBufferByteSize,"
                                   "connectionEndpoints[0].options.logInvalidAuthData,logger,monitoring");
    config_free(&c);
    assert_null(c.ignored);
}

static void test_deepstream_endpoints(void **state)
{
    (void)state;
    eddy_config c;
    int rc = load_in_dir(&c, "c.yml",
        "connectionEndpoints:\n"
        "  - type: http\n    options:\n      postPath: /p\n      getPath: /g\n      authPath: /a\n"
        "      enableAuthEndpoint: false\n      allowAuthData: false\n      logInvalidAuthData: true\n"
        "      requestTimeout: 3000\n      maxOperations: 5\n      maxRequestsInFlight: 6\n"
        "      tokenSecret: 0123456789abcdef0123456789abcdef\n      tokenTtl: 60000\n"
        "  - type: ws-binary\n    options:\n      urlPath: /ds\n      heartbeatInterval: 5000\n"
        "      maxMessageSize: 2048\n      unauthenticatedClientTimeout: 1000\n      maxAuthAttempts: 7\n"
        "      headers: [user-agent]\n");
    if (rc != 0)
        fail_msg("%s", err);
    assert_string_equal(c.url_path, "/ds");
    assert_int_equal(c.heartbeat_interval_ms, 5000);
    assert_int_equal(c.max_message_size, 2048);
    assert_int_equal(c.unauthenticated_timeout_ms, 1000);
    assert_int_equal(c.max_auth_attempts, 7);
    assert_int_equal(c.http_enabled, 1);
    assert_string_equal(c.http_post_path, "/p");
    assert_string_equal(c.http_get_path, "/g");
    assert_string_equal(c.http_auth_path, "/a");
    assert_int_equal(c.http_enable_auth_endpoint, 0);
    assert_int_equal(c.http_allow_auth_data, 0);
    assert_int_equal(c.http_log_invalid_auth_data, 1);
    assert_int_equal(c.http_request_timeout_ms, 3000);
    assert_int_equal(c.http_max_operations, 5);
    assert_int_equal(c.http_max_in_flight, 6);
    assert_string_equal(c.http_token_secret, "0123456789abcdef0123456789abcdef");
    assert_int_equal(c.http_token_ttl_ms, 60000);
    assert_string_equal(c.ignored, "connectionEndpoints[1].options.headers");
    assert_int_equal(config_validate(&c, "standalone", err, sizeof(err)), 0);
    config_free(&c);

    /* no http entry: the HTTP API is off; deepstream's "no timeout" (false) is a day */
    rc = load_in_dir(&c, "c.yml", "connectionEndpoints:\n  - type: ws-binary\n    options:\n"
                                  "      unauthenticatedClientTimeout: false\n");
    if (rc != 0)
        fail_msg("%s", err);
    assert_int_equal(c.http_enabled, 0);
    assert_int_equal(c.unauthenticated_timeout_ms, 86400000);
    assert_null(c.ignored);
    config_free(&c);
    rc = load_in_dir(&c, "c.yml", "connectionEndpoints:\n  - {type: ws-binary, options: null}\n  - type: http\n");
    if (rc != 0)
        fail_msg("%s", err);
    assert_int_equal(c.http_enabled, 1);
    config_free(&c);
    /* without connectionEndpoints, the HTTP API keeps its default (on); a flag beats the file */
    rc = load_in_dir(&c, "c.yml", "connectionEndpoints:\n  - type: ws-binary\n");
    assert_int_equal(rc, 0);
    flag_ok(&c, "--http", "true", &c.http_enabled, 1);
    config_free(&c);
    assert_int_equal(load_in_dir(&c, "c.yml", "port: 7000\n"), 0);
    assert_int_equal(c.http_enabled, 1);
    config_free(&c);
}

static void test_deepstream_http_server(void **state)
{
    (void)state;
    eddy_config c;
    int rc = load_in_dir(&c, "c.yml",
        "httpServer:\n  type: uws\n  options:\n    host: 127.0.0.2\n    port: 7021\n"
        "    healthCheckPath: /alive\n    allowAllOrigins: false\n"
        "    origins: ['https://a.example', 'https://b.example']\n    maxMessageSize: 4096\n"
        "    hostUrl: api.example:7021\n    headers: [user-agent]\n    ssl: null\n");
    if (rc != 0)
        fail_msg("%s", err);
    assert_string_equal(c.host, "127.0.0.2");
    assert_int_equal(c.port, 7021);
    assert_string_equal(c.http_health_check_path, "/alive");
    assert_int_equal(c.http_allow_all_origins, 0);
    assert_int_equal(c.http_origins.count, 2);
    assert_string_equal(c.http_origins.v[1], "https://b.example");
    assert_int_equal(c.http_max_message_size, 4096);
    assert_int_equal(c.max_message_size, 1048576); /* the websocket's bound is another key */
    assert_string_equal(c.http_host_url, "api.example:7021");
    assert_string_equal(c.ignored, "httpServer.options.headers");
    assert_int_equal(config_validate(&c, "standalone", err, sizeof(err)), 0);
    config_free(&c);
    /* deepstream's ssl block: its files, relative to the config file */
    rc = load_in_dir(&c, "c.yml", "httpServer:\n  options:\n    ssl:\n      key: fileLoad(ssl/key.pem)\n"
                     "      cert: fileLoad(ssl/cert.pem)\n      ca: fileLoad(ssl/ca.pem)\n");
    if (rc != 0)
        fail_msg("%s", err);
    expect_path(c.tls_key, tmpdir_path, "ssl/key.pem");
    expect_path(c.tls_cert, tmpdir_path, "ssl/cert.pem");
    expect_path(c.tls_ca, tmpdir_path, "ssl/ca.pem");
    config_free(&c);
    /* a bad value is named as written */
    expect_yaml_error("httpServer:\n  options:\n    port: 99999\n", "config error: httpServer.options.port: must be");
    expect_yaml_error("connectionEndpoints:\n  - type: ws-binary\n    options:\n      heartbeatInterval: soon\n",
                      "config error: connectionEndpoints[0].options.heartbeatInterval: must be an integer");
}

/* The whole message of a refused file. */
static void expect_refused(const char *yaml, const char *message)
{
    eddy_config c;
    if (load_in_dir(&c, "c.yml", yaml) == 0)
        fail_msg("accepted: %s", yaml);
    if (strcmp(err, message) != 0)
        fail_msg("error '%s' is not '%s'", err, message);
    config_free(&c);
}

static void test_deepstream_refusals(void **state)
{
    (void)state;
    expect_refused("connectionEndpoints:\n  - type: ws-binary\n  - type: http\n  - type: mqtt\n"
                   "    options: {port: 1883}\n",
                   "config error: connectionEndpoints[2].type: mqtt is not served by eddy (ws-binary and http are)");
    expect_refused("connectionEndpoints:\n  - type: ws-text\n",
                   "config error: connectionEndpoints[0].type: ws-text is not served by eddy (ws-binary and http are)");
    expect_refused("connectionEndpoints:\n  - type: ws-binary\n  - type: ws-json\n",
                   "config error: connectionEndpoints[1].type: ws-json is not served by eddy (ws-binary and http are)");
    expect_refused("connectionEndpoints:\n  - type: ws-websocket\n", "config error: connectionEndpoints[0].type: "
                   "unknown type 'ws-websocket' (eddy serves ws-binary and http)");
    expect_refused("connectionEndpoints:\n  - options: {}\n",
                   "config error: connectionEndpoints[0].type: missing (ws-binary or http)");
    expect_refused("connectionEndpoints:\n  - type: ws-binary\n  - null\n", "config error: connectionEndpoints[1]: "
                   "null: leave the entry out to turn that endpoint off (deepstream 7 fails on a null entry too)");
    expect_yaml_error("connectionEndpoints:\n  websocket: {type: ws-binary}\n  http: null\n",
                      "connectionEndpoints: want a list of {type, options}");
    expect_yaml_error("connectionEndpoints: []\n", "connectionEndpoints: no endpoints");
    expect_refused("connectionEndpoints:\n  - type: http\n",
                   "config error: connectionEndpoints: no ws-binary entry: eddy always serves its websocket "
                   "(at urlPath); add - type: ws-binary");
    expect_refused("connectionEndpoints:\n  - type: ws-binary\n  - type: ws-binary\n",
                   "config error: connectionEndpoints[1].type: a second ws-binary entry (eddy serves one)");
    expect_refused("connectionEndpoints:\n  - type: ws-binary\n    options:\n      urlpath: /x\n",
                   "config error: connectionEndpoints[0].options.urlpath: unknown key");
    expect_refused("connectionEndpoints:\n  - type: http\n    options:\n      allowAllOrigins: true\n",
                   "config error: connectionEndpoints[0].options.allowAllOrigins: unknown key");
    expect_refused("connectionEndpoints:\n  - type: ws-binary\n    name: my-endpoint\n",
                   "config error: connectionEndpoints[0].name: a deepstream plugin: eddy runs none");
    expect_refused("httpServer:\n  options:\n    ssl:\n      key: k.pem\n      passphrase: secret\n",
                   "config error: httpServer.options.ssl.passphrase: give eddy an unencrypted key file (readable "
                   "by eddy only)");
    expect_refused("httpServer:\n  type: express\n", "config error: httpServer.type: express is not accepted: "
                   "default or uws, which eddy serves the same way");
    expect_refused("httpServer:\n  name: my-server\n", "config error: httpServer.name: a deepstream plugin: eddy runs none");
    expect_refused("enabledFeatures:\n  record: true\n  rpc: false\n",
                   "config error: enabledFeatures.rpc: false is not accepted: eddy always serves RPCs (remove "
                   "the line; deny operations in permissions if clients must not use them)");
    expect_yaml_error("enabledFeatures:\n  presence: false\n", "enabledFeatures.presence: false is not accepted");
    expect_yaml_error("enabledFeatures:\n  record: false\n", "enabledFeatures.record: false is not accepted");
    expect_yaml_error("enabledFeatures:\n  event: no\n", "enabledFeatures.event");
    expect_yaml_error("enabledFeatures:\n  monitoring: true\n", "enabledFeatures.monitoring: true is not accepted");
    expect_yaml_error("enabledFeatures:\n  chat: true\n", "enabledFeatures.chat: unknown key");
    expect_refused("storage:\n  name: mongodb\n  options:\n    db: default\n",
                   "config error: storage.name: a deepstream storage plugin: eddy keeps records itself, in RocksDB "
                   "under data");
    expect_yaml_error("storage:\n  type: mongodb\n", "storage.type: mongodb is not accepted");
    expect_refused("plugins:\n  heap-snapshot:\n    name: heap-snapshot\n",
                   "config error: plugins: a deepstream plugin: eddy runs none");
    /* keys deepstream 7 refuses too stay unknown */
    expect_yaml_error("clusterMessaging:\n  type: default\n", "clusterMessaging.type: unknown key");
    expect_yaml_error("record:\n  cacheRetrieval: 5\n", "record.cacheRetrieval: unknown key");
    expect_yaml_error("logLevel: LOUD\n", "logLevel");
    expect_yaml_error("logLevel: 7\n", "logLevel");
}

static void test_deepstream_ignored(void **state)
{
    (void)state;
    eddy_config c;
    /* everything deepstream 7 has that eddy does without; enabledFeatures as eddy serves them, and
     * httpServer.type, are honoured rather than ignored (not listed) */
    int rc = load_in_dir(&c, "c.yml",
        "libDir: null\nserverName: a\nshowLogo: false\ndependencyInitializationTimeout: 2000\n"
        "exitOnFatalError: true\n"
        "enabledFeatures: {record: true, event: true, rpc: true, presence: true, monitoring: false}\n"
        "telemetry: {type: deepstreamIO, options: {enabled: true}}\n"
        "logger: {name: pino, options: {logLevel: DEBUG}}\n"
        "monitoring: {type: http, options: {url: /monitoring}}\n"
        "subscriptions: {type: default, options: {subscriptionsSanityTimer: 10000}}\n"
        "locks: {type: default, options: {holdTimeout: 1000}}\n"
        "clusterNode: {type: default}\nclusterRegistry: {type: default}\nclusterStates: {type: default}\n"
        "cache: {name: redis, options: {host: localhost}}\n"
        "storage: {type: default, options: {}, sync: always, cacheSize: 1000}\n"
        "record:\n  cacheRetrievalTimeout: 1000\n  storageRetrievalTimeout: 2000\n"
        "  storageExclusionPrefixes: [no-storage/]\n  storageHotPathPrefixes: null\n  maxSize: 4096\n"
        "plugins: {}\n"
        "httpServer: {type: default, options: {ssl: null}}\n");
    if (rc != 0)
        fail_msg("%s", err);
    assert_string_equal(c.ignored, "libDir,serverName,showLogo,dependencyInitializationTimeout,exitOnFatalError,"
                                   "telemetry,logger,monitoring,subscriptions,locks,clusterNode,clusterRegistry,"
                                   "clusterStates,cache,storage.options,record.cacheRetrievalTimeout,"
                                   "record.storageRetrievalTimeout,record.storageExclusionPrefixes,"
                                   "record.storageHotPathPrefixes");
    assert_int_equal(c.sync_mode, 0); /* eddy's own storage keys still apply */
    assert_int_equal(c.cache_bytes, 1000);
    assert_int_equal(c.record_max_size, 4096);
    assert_int_equal(c.log_level, 1); /* logger.options.logLevel is the logger's, ignored with it */
    /* the same file twice: each name once */
    char path[300];
    snprintf(path, sizeof(path), "%s/again.yml", tmpdir_path);
    assert_int_equal(mkdir(tmpdir_path, 0700), 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("serverName: b\nlogger: {type: default}\n", f);
    fclose(f);
    assert_int_equal(config_load_file(&c, path, err, sizeof(err)), 0);
    unlink(path);
    rmdir(tmpdir_path);
    assert_non_null(strstr(c.ignored, "record.storageHotPathPrefixes"));
    assert_int_equal((int)(strstr(c.ignored, "serverName") - c.ignored), 7);
    assert_null(strstr(strstr(c.ignored, "serverName") + 1, "serverName"));
    assert_null(strstr(strstr(c.ignored, ",logger") + 1, ",logger"));
    config_free(&c);

    /* deepstream's keys are YAML-only: no flag, no variable */
    config_defaults(&c);
    setenv("EDDY_SERVER_NAME", "x", 1);
    setenv("EDDY_CONNECTION_ENDPOINTS", "x", 1);
    assert_int_equal(config_load_env(&c, err, sizeof(err)), 0);
    assert_null(c.ignored);
    unsetenv("EDDY_SERVER_NAME");
    unsetenv("EDDY_CONNECTION_ENDPOINTS");
    config_free(&c);
}

/* deepstream's logLevel: DEBUG, INFO, WARN, ERROR, OFF (any case), or its numbers. */
static void test_log_level(void **state)
{
    (void)state;
    static const struct {
        const char *yaml;
        int64_t want;
    } cases[] = {{"DEBUG", 0}, {"INFO", 1}, {"WARN", 2}, {"ERROR", 3}, {"OFF", 4}, {"off", 4}, {"Warn", 2},
                 {"0", 0}, {"1", 1}, {"3", 3}, {"100", 4}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        eddy_config c;
        char text[64];
        snprintf(text, sizeof(text), "logLevel: %s\n", cases[i].yaml);
        if (load_in_dir(&c, "c.yml", text) != 0)
            fail_msg("%s: %s", cases[i].yaml, err);
        if (c.log_level != cases[i].want)
            fail_msg("logLevel %s: %lld, want %lld", cases[i].yaml, (long long)c.log_level, (long long)cases[i].want);
        config_free(&c);
    }
    expect_yaml_error("logLevel: 4\n", "logLevel");
    expect_yaml_error("logLevel: '100'\n", "logLevel"); /* a number, not its text */
    eddy_config c = defaults();
    flag_ok(&c, "--log-level", "ERROR", &c.log_level, 3);
    flag_ok(&c, "--log-level", "off", &c.log_level, 4);
    setenv("EDDY_LOG_LEVEL", "Debug", 1);
    assert_int_equal(config_load_env(&c, err, sizeof(err)), 0);
    assert_int_equal(c.log_level, 0);
    unsetenv("EDDY_LOG_LEVEL");
    config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults), cmocka_unit_test(test_flags),
        cmocka_unit_test(test_yaml),     cmocka_unit_test(test_yaml_errors),
        cmocka_unit_test(test_env),      cmocka_unit_test(test_shard_map),
        cmocka_unit_test(test_listen_options), cmocka_unit_test(test_hostile_bounds),
        cmocka_unit_test(test_auth_list), cmocka_unit_test(test_auth_refusals),
        cmocka_unit_test(test_auth_flags), cmocka_unit_test(test_client_limits),
        cmocka_unit_test(test_deepstream_shipped), cmocka_unit_test(test_deepstream_endpoints),
        cmocka_unit_test(test_deepstream_http_server), cmocka_unit_test(test_deepstream_refusals),
        cmocka_unit_test(test_deepstream_ignored), cmocka_unit_test(test_log_level),
        cmocka_unit_test(test_raft), cmocka_unit_test(test_replicas_default),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
