/* fuzz_config.c - libFuzzer target for the configuration file loader: the
 * YAML reader (common/yamljson.c, also the users file's) and the typed config
 * table applied to what it reads (config_load_file, config_validate), with
 * the cluster map a configuration describes (common/clustermap.c). Not for
 * flags or the environment (one-line values, same setter).
 *
 * The input is written to a temporary file and loaded as a config file. When
 * it loads and validates, the cluster map it describes must survive the trip
 * a node's MAP_QUERY answer makes: clustermap_json, then clustermap_parse,
 * gives the same nodes and, through clustermap_shards, the same owner for
 * every shard; the JSON is of the server's dialect (json_check). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "clustermap.h"
#include "config.h"
#include "jsonpath.h"
#include "log.h"
#include "mem.h"
#include "yamljson.h"

static char path[256];
static int fd = -1;

static void cleanup(void)
{
    if (fd >= 0)
        unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_threshold = LOG_NONE;
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof(path), "%s/eddy-fuzz-config-XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp");
    fd = mkstemp(path);
    if (fd < 0) {
        perror("fuzz_config: mkstemp");
        exit(1);
    }
    atexit(cleanup);
    return 0;
}

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_config: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

static void check_map_round_trip(const eddy_config *cfg)
{
    shardmap map, map2;
    char err[256];
    if (clustermap_shards(&cfg->cluster, &map, err, sizeof(err)) != 0)
        fail("config_validate accepted a cluster clustermap_shards refuses", err);
    char *json = clustermap_json(&cfg->cluster, &map, shardmap_digest(&map), cfg->node_id, "tcp://127.0.0.1:1", "tcp://127.0.0.1:2");
    if (json == NULL)
        fail("clustermap_json gave nothing", NULL);
    if (json_check(json, strlen(json)) != JSON_KIND_OBJECT)
        fail("clustermap_json wrote something json_check refuses", json);
    clustermap back = {0};
    if (clustermap_parse(&back, json, strlen(json), err, sizeof(err)) != 0)
        fail("clustermap_parse refuses what clustermap_json wrote", err);
    int want = cfg->cluster.count == 0 ? 1 : cfg->cluster.count;
    if (back.count != want || back.epoch != cfg->cluster.epoch)
        fail("the cluster map lost nodes or its epoch on the way", json);
    for (int i = 0; i < cfg->cluster.count; i++) {
        const cluster_node *a = &cfg->cluster.nodes[i], *b = &back.nodes[i];
        if (strcmp(a->id, b->id) != 0 || strcmp(a->request, b->request) != 0 ||
            strcmp(a->delivery, b->delivery) != 0)
            fail("a node changed on the way", json);
    }
    if (clustermap_shards(&back, &map2, err, sizeof(err)) != 0)
        fail("the parsed map's shards are refused", err);
    if (map2.node_count != map.node_count || memcmp(map2.owner, map.owner, sizeof(map.owner)) != 0)
        fail("a shard changed owner on the way", json);
    clustermap_clear(&back);
    xfree(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        fail("cannot write the temporary file", path);
    char err[512] = "";
    json_t *tree = yaml_load_file(path, err, sizeof(err));
    if (tree == NULL && err[0] == '\0')
        fail("yaml_load_file failed without a reason", NULL);
    json_decref(tree);

    eddy_config cfg;
    config_defaults(&cfg);
    err[0] = '\0';
    if (config_load_file(&cfg, path, err, sizeof(err)) != 0) {
        if (err[0] == '\0')
            fail("config_load_file failed without a reason", NULL);
    } else {
        static const char *const roles[] = {"standalone", "broker", "node"};
        bool valid = false;
        for (int i = 0; i < 3; i++) {
            err[0] = '\0';
            if (config_validate(&cfg, roles[i], err, sizeof(err)) == 0)
                valid = true;
            else if (err[0] == '\0')
                fail("config_validate failed without a reason", roles[i]);
        }
        if (valid)
            check_map_round_trip(&cfg);
    }
    config_free(&cfg);
    return 0;
}
