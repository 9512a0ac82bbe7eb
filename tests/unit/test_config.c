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
    assert_int_equal(c.auth_type, AUTH_NONE);
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
    assert_int_equal(c.auth_type, AUTH_FILE);
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
    assert_int_equal(c.auth_type, AUTH_FILE);
    assert_string_equal(c.users_file, "users.yml");
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults), cmocka_unit_test(test_flags),
        cmocka_unit_test(test_yaml),     cmocka_unit_test(test_yaml_errors),
        cmocka_unit_test(test_env),      cmocka_unit_test(test_shard_map),
        cmocka_unit_test(test_listen_options), cmocka_unit_test(test_hostile_bounds),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
