/* ctl.c - `eddy ctl`: the cluster from a shell, through the backend library
 * (client/eddy.h) exactly as any backend would use it.
 *
 * Exit codes (for scripts): 0 ok, 1 unavailable / timeout / other failure,
 * 2 usage, 3 record not found, 4 version conflict, 5 RPC: no provider or the
 * provider's error, 6 a validator refused the write. Results go to stdout, diagnostics to stderr. */
#include "ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "changeset.h"
#include "clustermap.h"
#include "eddy.h"
#include "jsonpath.h"
#include "linktls.h"
#include "log.h"
#include "mem.h"
#include "util.h"

#define DEFAULT_CLUSTER "tcp://127.0.0.1:6021"
#define DEFAULT_TLS_CLUSTER "tls+tcp://127.0.0.1:6021"
#define COMMAND_OUTPUT_MAX (16u << 20)

static volatile sig_atomic_t *stopping;

static void ctl_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy ctl [--cluster ADDR] [--timeout MS] [--cluster-tls-cert FILE --cluster-tls-key FILE\n"
            "                [--cluster-tls-ca FILE]] COMMAND ...\n\n"
            "  emit NAME [JSON]                 publish an event\n"
            "  subscribe NAME                   print events as JSON lines until interrupted\n"
            "  subscribe NAME --from N [--history H]\n"
            "                                   the same, resumable (events.history): events held from offset N\n"
            "                                   (0: all held; 'now': none) of history H, then live; lines carry\n"
            "                                   \"history\" and \"offset\", and a \"gap\" line for events never delivered\n"
            "  get NAME [--with-version]        print the record's document\n"
            "  watch NAME                       print {\"version\",\"data\"} lines on every change\n"
            "  set NAME [PATH] JSON [--expect N]  write (a path); print the new version\n"
            "  delete NAME                      delete a record\n"
            "  txn                              apply the changeset on stdin all or none; print each result\n"
            "                                   (JSON: [{\"op\":\"set\",\"name\":\"{t}/a\",\"data\":{..},\"version\":N},\n"
            "                                   {\"op\":\"erase\",\"name\",\"path\"}, {\"op\":\"delete\",\"name\"}, ...])\n"
            "  call NAME [JSON]                 make an RPC; print its result\n"
            "  provide NAME -- COMMAND [ARG..]  answer each call with COMMAND's output (request on stdin)\n"
            "  validate PATTERN -- COMMAND [ARG..]\n"
            "                                   validate each write to records matching PATTERN with COMMAND:\n"
            "                                   the request on stdin (one JSON line); it prints accept,\n"
            "                                   reject [REASON], or {\"verdict\":...} (README: Validating writes)\n"
            "  status                           the cluster map and each node's health\n"
            "  cluster status [--json]          the metadata group's shard map as the node at --cluster sees it:\n"
            "                                   members, the Raft leader, the map version, each node's primaries\n"
            "                                   and replicas by shard epoch, members down, unavailable shards, the\n"
            "                                   node's lease (and, asking the leader, every member's)\n"
            "                                   (cluster.raft off: the static map)\n"
            "  cluster promote SHARDS --to NODE  (or --from NODE --to NODE)\n"
            "                                   planned move: NODE (an in-sync replica) becomes the primary of\n"
            "                                   SHARDS (\"0-99,200\") or of every shard --from's node is primary of\n"
            "                                   (cluster.raft; proposed by the Raft leader, each shard's epoch + 1);\n"
            "                                   waits until the map shows it (--timeout, default 5000 ms, each\n"
            "                                   question; 60 s in all)\n"
            "  cluster rebalance                every shard served away from its home node (the static map's\n"
            "                                   primary) goes home where home is an up in-sync replica, as after a\n"
            "                                   failed node rejoined (cluster.raft; also by itself after\n"
            "                                   cluster.rebalanceDelay); waits until the map shows it\n"
            "  reload                           every node and broker reads its permission rules again\n\n"
            "  --cluster ADDR  any node's request address (default " DEFAULT_CLUSTER ";\n"
            "                  a standalone server prints its address in backends-listening)\n"
            "  --timeout MS    per call (default 5000)\n"
            "  --cluster-tls-cert FILE, --cluster-tls-key FILE, --cluster-tls-ca FILE\n"
            "                  a cluster on tls+tcp:// addresses: a backend certificate (OU=eddy-backend),\n"
            "                  its key and the cluster's CA (or EDDY_CLUSTER_TLS_CERT, _KEY, _CA; then the\n"
            "                  default address is tls+tcp://127.0.0.1:6021)\n\n"
            "exit codes: 0 ok, 1 failure (unavailable, timeout), 2 usage, 3 not found,\n"
            "            4 version conflict, 5 RPC without provider or answered with an error,\n"
            "            6 refused: by a validator, or a changeset (an operation refused, or records\n"
            "              of different shards)\n");
}

/* The TLS credentials eddy ctl was given (options, else the environment), as
 * libeddy reads them; NULL when none (or they do not load: eddy_connect said why). */
static linktls *ctl_tls(const eddy_options *o)
{
    char err[512];
    const char *cert = o->tls_cert ? o->tls_cert : getenv("EDDY_CLUSTER_TLS_CERT");
    const char *key = o->tls_key ? o->tls_key : getenv("EDDY_CLUSTER_TLS_KEY");
    const char *ca = o->tls_ca ? o->tls_ca : getenv("EDDY_CLUSTER_TLS_CA");
    return linktls_open(cert, key, ca, LINK_ROLE_BACKEND, err, sizeof(err));
}

/* eddy ctl reload: each node reads its permission rules again and has every
 * broker it serves do so (RELOAD). Prints a line per node; exit 1 when one
 * did not answer or its file failed to compile (its log says why). */
static int reload_all(eddy *e, const eddy_options *opts)
{
    linktls *tls = ctl_tls(opts);
    char *status;
    if (eddy_cluster_status(e, &status) != EDDY_OK)
        return 1;
    json_t *root = json_loads(status, 0, NULL);
    eddy_free(status);
    int rc = 0;
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(root, "nodes"), i, n) {
        const char *id = json_string_value(json_object_get(n, "id"));
        const char *url = json_string_value(json_object_get(n, "request"));
        char *answer = url != NULL ? clustermap_node_reload(url, tls, 5000) : NULL;
        bool ok = answer != NULL && strstr(answer, "\"reloaded\":true") != NULL;
        printf("%s %s: %s\n", id ? id : "?", url ? url : "?",
               answer == NULL ? "no answer" : ok ? "reloaded" : "failed (its log says why; the rules in force stay)");
        rc |= !ok;
        xfree(answer);
    }
    json_decref(root);
    linktls_close(tls);
    return rc;
}

/* "EPOCH: N shards" for each epoch of member's copies, into out. */
static void format_epochs(json_t *epochs, char *out, size_t len)
{
    size_t used = 0;
    const char *key;
    json_t *v;
    out[0] = '\0';
    json_object_foreach(epochs, key, v) {
        int w = snprintf(out + used, len - used, "%sepoch %s: %lld shards", used ? ", " : "", key,
                         (long long)json_integer_value(v));
        if (w < 0 || (size_t)w >= len - used)
            break;
        used += (size_t)w;
    }
}

/* eddy ctl cluster status [--json]: one CLUSTER_STATUS question to the node
 * at url (no HELLO, no backend connection: any node answers, even while the
 * others are down). Exit 0 when it answered, 1 when not. */
static int cluster_status(const char *url, const eddy_options *opts, int argc, char **argv)
{
    bool as_json = argc == 3 && strcmp(argv[2], "--json") == 0;
    if (argc < 2 || strcmp(argv[1], "status") != 0 || (argc == 3 && !as_json) || argc > 3) {
        fprintf(stderr, "usage: eddy ctl [--cluster ADDR] cluster status [--json]\n");
        return 2;
    }
    linktls *tls = ctl_tls(opts);
    char *answer = clustermap_node_cluster_status(url, tls, opts->timeout_ms);
    linktls_close(tls);
    if (answer == NULL) {
        fprintf(stderr, "eddy ctl: cluster status: no answer from %s within %d ms\n", url, opts->timeout_ms);
        return 1;
    }
    json_t *root = json_loads(answer, 0, NULL);
    if (as_json || root == NULL) {
        printf("%s\n", answer);
        xfree(answer);
        json_decref(root);
        return root == NULL ? 1 : 0;
    }
    xfree(answer);
    bool raft = json_is_true(json_object_get(root, "raft"));
    const char *self = json_string_value(json_object_get(root, "selfName"));
    if (raft) {
        const char *leader = json_string_value(json_object_get(root, "leaderName"));
        printf("metadata group: on (cluster.raft); asked %s\n", self ? self : "?");
        if (leader != NULL)
            printf("leader: %s (id %lld), term %lld%s\n", leader,
                   (long long)json_integer_value(json_object_get(root, "leader")),
                   (long long)json_integer_value(json_object_get(root, "term")),
                   json_is_true(json_object_get(root, "isLeader")) ? " (the node asked)" : "");
        else
            printf("leader: none known, term %lld (no majority reachable from %s: the group decides nothing, no "
                   "failover happens)\n", (long long)json_integer_value(json_object_get(root, "term")),
                   self ? self : "?");
        printf("map version: %lld\n", (long long)json_integer_value(json_object_get(root, "version")));
        json_t *lease = json_object_get(root, "lease");
        if (json_is_true(json_object_get(lease, "valid")))
            printf("lease of %s: valid for %lld ms more (node timeout %lld ms)\n", self ? self : "?",
                   (long long)json_integer_value(json_object_get(lease, "remainingMs")),
                   (long long)json_integer_value(json_object_get(root, "nodeTimeoutMs")));
        else
            printf("lease of %s: none (it serves none of its shards until the leader grants one)\n",
                   self ? self : "?");
    } else
        printf("metadata group: off (cluster.raft false); asked %s; the static map, epoch %lld\n", self ? self : "?",
               (long long)json_integer_value(json_object_get(root, "staticEpoch")));
    printf("shards: %lld of 4096 assigned, %lld-%lld copies each (cluster.replicas %lld); as the static map: %s\n",
           (long long)json_integer_value(json_object_get(root, "assignedShards")),
           (long long)json_integer_value(json_object_get(root, "copiesMin")),
           (long long)json_integer_value(json_object_get(root, "copiesMax")),
           (long long)json_integer_value(json_object_get(root, "replicasConfigured")),
           json_is_true(json_object_get(root, "sameAsStatic")) ? "yes" : "no");
    long long down = json_integer_value(json_object_get(root, "membersDown"));
    long long unavailable = json_integer_value(json_object_get(root, "unavailableShards"));
    if (down > 0)
        printf("members down: %lld\n", down);
    if (unavailable > 0)
        printf("UNAVAILABLE shards: %lld (%s): every copy that could serve them is down; each node answers them "
               "with an error until one is assigned again\n", unavailable,
               json_string_value(json_object_get(root, "unavailable")));
    printf("members:\n");
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(root, "members"), i, m) {
        char epochs[512];
        format_epochs(json_object_get(m, "epochs"), epochs, sizeof(epochs));
        printf("  %lld %-10s %-4s primary of %lld, replica of %lld shards (%s)\n      request %s delivery %s raft %s\n",
               (long long)json_integer_value(json_object_get(m, "id")),
               json_string_value(json_object_get(m, "name")), json_is_true(json_object_get(m, "down")) ? "down" : "up",
               (long long)json_integer_value(json_object_get(m, "primaries")),
               (long long)json_integer_value(json_object_get(m, "replicas")), epochs[0] ? epochs : "none",
               json_string_value(json_object_get(m, "request")), json_string_value(json_object_get(m, "delivery")),
               json_string_value(json_object_get(m, "raft")));
        json_t *heard = json_object_get(m, "heardMsAgo");
        if (json_is_integer(heard)) /* the asked node leads: its view of each member's lease */
            printf("      heard %lld ms ago by the leader; lease %s\n", (long long)json_integer_value(heard),
                   json_is_true(json_object_get(m, "leaseGranted")) ? "granted" : "not granted");
    }
    json_decref(root);
    return 0;
}

/* How many of the shards in want (owner 0) node `to` is not the primary of
 * in the map the node at url answers (-1: no map); *version: that map's. */
static int promote_left(const char *url, const linktls *tls, int timeout_ms, const shardmap *want, const char *to,
                        uint64_t *version)
{
    char *json = clustermap_node_map(url, tls, timeout_ms);
    clustermap cm = {0};
    shardmap *map = xmalloc(sizeof(*map));
    char err[256];
    int left = -1;
    if (json != NULL && clustermap_parse(&cm, json, strlen(json), err, sizeof(err)) == 0 &&
        clustermap_shards(&cm, map, err, sizeof(err)) == 0) {
        int ti = -1;
        for (int i = 0; i < cm.count; i++)
            if (strcmp(cm.nodes[i].id, to) == 0)
                ti = i;
        left = 0;
        for (uint32_t sh = 0; sh < SHARD_COUNT; sh++)
            left += want->owner[sh] == 0 && map->owner[sh] != (unsigned)ti;
        *version = map->version;
    }
    clustermap_clear(&cm);
    xfree(map);
    xfree(json);
    return left;
}

/* Sends a planned move (text: the request's JSON) to the node at url, then to
 * the leader it names if it is not the leader. Returns the answer (caller
 * json_decref) or NULL (printed); *asked: the node that answered (url, or
 * *leader_url, which the caller frees). */
static json_t *ask_leader(const char *url, linktls *tls, const char *text, int timeout_ms, const char *what,
                          const char **asked, char **leader_url)
{
    json_t *ans = NULL;
    *asked = url;
    for (int hop = 0; hop < 2; hop++) {
        char *answer = clustermap_node_promote(*asked, tls, text, timeout_ms);
        json_decref(ans);
        ans = answer != NULL ? json_loads(answer, 0, NULL) : NULL;
        xfree(answer);
        if (ans == NULL) {
            fprintf(stderr, "eddy ctl: cluster %s: no answer from %s within %d ms\n", what, *asked, timeout_ms);
            return NULL;
        }
        const char *lr = json_string_value(json_object_get(ans, "leaderRequest"));
        if (lr == NULL || hop == 1)
            break;
        xfree(*leader_url);
        *leader_url = xstrdup(lr); /* not the leader: ask the one it names */
        *asked = *leader_url;
    }
    const char *error = json_string_value(json_object_get(ans, "error"));
    if (error != NULL) {
        fprintf(stderr, "eddy ctl: cluster %s: %s: %s\n", what, *asked, error);
        json_decref(ans);
        return NULL;
    }
    return ans;
}

/* eddy ctl cluster promote SHARDS --to NODE | --from NODE --to NODE: asks
 * the node at url (then the leader it names) to propose the move, then waits
 * until the map shows every shard asked for on NODE. Prints the time it took. */
static int cluster_promote(const char *url, const eddy_options *opts, int argc, char **argv)
{
    const char *from = NULL, *to = NULL, *shards = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
            to = argv[++i];
        else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
            from = argv[++i];
        else if (argv[i][0] != '-' && shards == NULL)
            shards = argv[i];
        else
            to = NULL, i = argc; /* usage */
    }
    if (to == NULL || (from == NULL) == (shards == NULL)) {
        fprintf(stderr, "usage: eddy ctl [--cluster ADDR] cluster promote SHARDS --to NODE\n"
                        "       eddy ctl [--cluster ADDR] cluster promote --from NODE --to NODE\n");
        return 2;
    }
    linktls *tls = ctl_tls(opts);
    int rc = 1;
    char *leader_url = NULL;
    shardmap *want = xmalloc(sizeof(*want));
    shardmap_init_empty(want, 1, 0);
    char err[256];
    json_t *req = from != NULL ? json_pack("{s:s, s:s}", "from", from, "to", to)
                               : json_pack("{s:s, s:s}", "shards", shards, "to", to);
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    json_t *ans = NULL;
    if (shards != NULL && shardmap_assign(want, 0, shards, err, sizeof(err)) != 0) {
        fprintf(stderr, "eddy ctl: cluster promote: %s\n", err);
        rc = 2;
        goto out;
    }
    if (from != NULL) { /* the shards from is primary of now (the node decides the same on its map) */
        char *json = clustermap_node_map(url, tls, opts->timeout_ms);
        clustermap cm = {0};
        shardmap *map = xmalloc(sizeof(*map));
        int fi = -1;
        if (json != NULL && clustermap_parse(&cm, json, strlen(json), err, sizeof(err)) == 0 &&
            clustermap_shards(&cm, map, err, sizeof(err)) == 0)
            for (int i = 0; i < cm.count; i++)
                if (strcmp(cm.nodes[i].id, from) == 0)
                    fi = i;
        for (uint32_t sh = 0; fi >= 0 && sh < SHARD_COUNT; sh++)
            if (map->owner[sh] == (unsigned)fi)
                want->owner[sh] = 0;
        clustermap_clear(&cm);
        xfree(map);
        xfree(json);
        if (fi < 0) {
            fprintf(stderr, "eddy ctl: cluster promote: no map from %s naming node %s\n", url, from);
            goto out;
        }
    }
    int64_t started = now_ms();
    const char *asked;
    if ((ans = ask_leader(url, tls, text, opts->timeout_ms, "promote", &asked, &leader_url)) == NULL)
        goto out;
    printf("proposing %lld shard moves to %s (asked %lld; already there %lld; %s not an in-sync replica of %lld)\n",
           (long long)json_integer_value(json_object_get(ans, "proposing")), to,
           (long long)json_integer_value(json_object_get(ans, "asked")),
           (long long)json_integer_value(json_object_get(ans, "already")), to,
           (long long)json_integer_value(json_object_get(ans, "notInSync")));
    int left = -1;
    uint64_t version = 0;
    while (now_ms() - started < 60000 && (stopping == NULL || !*stopping)) {
        left = promote_left(asked, tls, opts->timeout_ms, want, to, &version);
        if (left == (int)json_integer_value(json_object_get(ans, "notInSync")))
            break;
        usleep(20 * 1000);
    }
    int64_t took = now_ms() - started;
    if (left != (int)json_integer_value(json_object_get(ans, "notInSync"))) {
        fprintf(stderr, "eddy ctl: cluster promote: %d shards not on %s after %lld ms\n", left, to, (long long)took);
        goto out;
    }
    printf("done: %s is the primary of the shards asked for (map version %llu, %lld ms)\n", to,
           (unsigned long long)version, (long long)took);
    rc = left == 0 ? 0 : 1;
out:
    json_decref(ans);
    free(text); /* jansson's malloc */
    xfree(leader_url);
    xfree(want);
    linktls_close(tls);
    return rc;
}

/* Shards the node at url counts away from their home (-1: no answer); *version: its map's. */
static int away_from_home(const char *url, const linktls *tls, int timeout_ms, uint64_t *version)
{
    char *answer = clustermap_node_cluster_status(url, tls, timeout_ms);
    json_t *root = answer != NULL ? json_loads(answer, 0, NULL) : NULL;
    xfree(answer);
    json_t *away = json_object_get(root, "awayFromHome");
    int n = json_is_integer(away) ? (int)json_integer_value(away) : -1;
    *version = (uint64_t)json_integer_value(json_object_get(root, "version"));
    json_decref(root);
    return n;
}

/* eddy ctl cluster rebalance: asks the leader to move every shard home (its
 * static map's primary) whose home is an in-sync replica, then waits until
 * the map shows them there. Prints what moved and what could not. */
static int cluster_rebalance(const char *url, const eddy_options *opts, int argc, char **argv)
{
    (void)argv;
    if (argc != 2) {
        fprintf(stderr, "usage: eddy ctl [--cluster ADDR] cluster rebalance\n");
        return 2;
    }
    linktls *tls = ctl_tls(opts);
    char *leader_url = NULL;
    const char *asked;
    int rc = 1;
    int64_t started = now_ms();
    json_t *ans = ask_leader(url, tls, "{\"rebalance\":true}", opts->timeout_ms, "rebalance", &asked, &leader_url);
    if (ans != NULL) {
        int stuck = (int)json_integer_value(json_object_get(ans, "notInSync"));
        printf("proposing %lld shard moves home, %lld copies added, %lld dropped (away from home: %lld; home not an "
               "up in-sync replica yet: %d; the leader goes on until every shard is home)\n",
               (long long)json_integer_value(json_object_get(ans, "promotes")),
               (long long)json_integer_value(json_object_get(ans, "adds")),
               (long long)json_integer_value(json_object_get(ans, "drops")),
               (long long)json_integer_value(json_object_get(ans, "awayFromHome")), stuck);
        int away = -1;
        uint64_t version = 0;
        while (now_ms() - started < 60000 && (stopping == NULL || !*stopping)) {
            away = away_from_home(asked, tls, opts->timeout_ms, &version);
            if (away >= 0 && away <= stuck)
                break;
            usleep(20 * 1000);
        }
        int64_t took = now_ms() - started;
        if (away >= 0 && away <= stuck) {
            printf("done: %d shards away from home (map version %llu, %lld ms)\n", away, (unsigned long long)version,
                   (long long)took);
            rc = 0;
        } else
            fprintf(stderr, "eddy ctl: cluster rebalance: %d shards still away from home after %lld ms\n", away,
                    (long long)took);
    }
    json_decref(ans);
    xfree(leader_url);
    linktls_close(tls);
    return rc;
}

static int exit_code(eddy_status st)
{
    switch (st) {
    case EDDY_OK: return 0;
    case EDDY_ERR_INVALID:
    case EDDY_ERR_NO_HISTORY:
    case EDDY_ERR_CREDENTIALS: return 2;
    case EDDY_ERR_NOT_FOUND: return 3;
    case EDDY_ERR_VERSION: return 4;
    case EDDY_ERR_NO_PROVIDER:
    case EDDY_ERR_RPC: return 5;
    case EDDY_ERR_REJECTED: return 6;
    default: return 1;
    }
}

static int fail(const char *what, const char *name, eddy_status st)
{
    fprintf(stderr, "eddy ctl: %s %s: %s\n", what, name ? name : "", eddy_strerror(st));
    return exit_code(st);
}

/* text as a JSON string (xmalloc'd). */
static char *json_quote(const char *text)
{
    json_t *s = json_string(text);
    char *dumped = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    json_decref(s);
    char *out = xstrdup(dumped ? dumped : "\"\""); /* not UTF-8: an empty string */
    free(dumped); /* jansson's malloc */
    return out;
}

static void json_print_string(FILE *f, const char *text)
{
    char *q = json_quote(text);
    fputs(q, f);
    xfree(q);
}

static bool is_json(const char *text)
{
    return json_check(text, strlen(text)) != JSON_KIND_INVALID;
}

/* Waits for SIGINT/SIGTERM. */
static void wait_for_stop(void)
{
    while (!*stopping)
        usleep(50 * 1000);
}

/* ---- subscribe / watch ---- */

static void print_event(void *arg, const char *name, const char *json)
{
    (void)arg;
    printf("{\"name\":");
    json_print_string(stdout, name);
    printf(",\"data\":%s}\n", json ? json : "null");
    fflush(stdout);
}

/* ---- subscribe --from: an event stream ---- */

static void print_stream_event(void *arg, const char *name, uint64_t history, uint64_t offset, const char *json)
{
    (void)arg;
    printf("{\"name\":");
    json_print_string(stdout, name);
    /* the history as a string: a 64-bit number is beyond a JSON reader's exact integers */
    printf(",\"history\":\"%llu\",\"offset\":%llu,\"data\":%s}\n", (unsigned long long)history,
           (unsigned long long)offset, json ? json : "null");
    fflush(stdout);
}

static void print_stream_gap(void *arg, const char *name, uint64_t history, uint64_t from, uint64_t to, bool reset)
{
    (void)arg;
    printf("{\"name\":");
    json_print_string(stdout, name);
    printf(",\"gap\":{\"history\":\"%llu\",\"from\":%llu,\"to\":%llu,\"reset\":%s}}\n",
           (unsigned long long)history, (unsigned long long)from, (unsigned long long)to, reset ? "true" : "false");
    fflush(stdout);
}

/* A decimal uint64 (or "now" when allow_now: EDDY_OFFSET_NOW) into *out; false when not one. */
static bool parse_u64(const char *text, bool allow_now, uint64_t *out)
{
    if (allow_now && strcmp(text, "now") == 0) {
        *out = EDDY_OFFSET_NOW;
        return true;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (text[0] == '\0' || text[0] == '-' || *end != '\0' || errno != 0)
        return false;
    *out = v;
    return true;
}

/* subscribe NAME --from N [--history H] (argv[0] is "subscribe"). */
static int subscribe_from(eddy *e, int argc, char **argv)
{
    uint64_t offset = 0, history = 0;
    bool from_given = false;
    for (int i = 2; i < argc; i += 2) {
        bool ok = i + 1 < argc;
        if (ok && strcmp(argv[i], "--from") == 0)
            ok = from_given = parse_u64(argv[i + 1], true, &offset);
        else if (ok && strcmp(argv[i], "--history") == 0)
            ok = parse_u64(argv[i + 1], false, &history);
        else
            ok = false;
        if (!ok) {
            fprintf(stderr, "eddy ctl: subscribe NAME --from N|now [--history H] (decimal numbers)\n");
            return 2;
        }
    }
    if (!from_given) {
        fprintf(stderr, "eddy ctl: subscribe NAME --from N|now [--history H]: --from is required with --history\n");
        return 2;
    }
    eddy_status st = eddy_subscribe_from(e, argv[1], history, offset, print_stream_event, print_stream_gap, NULL);
    if (st != EDDY_OK)
        return fail("subscribe", argv[1], st);
    wait_for_stop();
    return 0;
}

static void print_record(void *arg, const char *name, int64_t version, const char *json)
{
    (void)arg;
    printf("{\"name\":");
    json_print_string(stdout, name);
    printf(",\"version\":%lld,\"data\":%s}\n", (long long)version, json ? json : "null");
    fflush(stdout);
}

/* ---- provide: one child process per call ---- */

typedef struct provide_ctx {
    char **argv;
} provide_ctx;

/* Runs argv with input on stdin; returns its exit status (-1: not run) and its
 * stdout in *out (xmalloc'd, at most COMMAND_OUTPUT_MAX bytes). */
static int run_command(char **argv, const char *input, char **out)
{
    int in[2], outp[2];
    *out = NULL;
    if (pipe(in) != 0)
        return -1;
    if (pipe(outp) != 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(outp[1], 1);
        close(in[0]);
        close(in[1]);
        close(outp[0]);
        close(outp[1]);
        execvp(argv[0], argv);
        fprintf(stderr, "eddy ctl: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(in[0]);
    close(outp[1]);
    size_t len = strlen(input), off = 0;
    while (off < len) {
        ssize_t n = write(in[1], input + off, len - off);
        if (n <= 0)
            break; /* the command does not read its input: fine */
        off += (size_t)n;
    }
    close(in[1]);
    size_t cap = 4096, used = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (used + 1 == cap) {
            if (cap >= COMMAND_OUTPUT_MAX)
                break;
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        ssize_t n = read(outp[0], buf + used, cap - used - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        used += (size_t)n;
    }
    close(outp[0]);
    buf[used] = '\0';
    while (used > 0 && (buf[used - 1] == '\n' || buf[used - 1] == '\r'))
        buf[--used] = '\0';
    *out = buf;
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void serve_call(void *arg, eddy_rpc *call, const char *name, const char *json, const char *user)
{
    provide_ctx *c = arg;
    char *output;
    int rc = run_command(c->argv, json ? json : "null", &output);
    if (rc == 0 && output[0] != '\0' && is_json(output))
        eddy_rpc_respond(call, output);
    else if (rc == 0) {
        /* not JSON: answered as a JSON string */
        char *quoted = json_quote(output);
        eddy_rpc_respond(call, quoted);
        xfree(quoted);
    } else {
        char msg[128];
        snprintf(msg, sizeof(msg), "%s exited with %d", c->argv[0], rc);
        eddy_rpc_error(call, output != NULL && output[0] ? output : msg);
    }
    xfree(output);
}

/* ---- validate: one child process per write ---- */

/* Answers v from a validator command's exit status and output: exit 0 with
 * `accept`, `reject [REASON]`, or a JSON object {"verdict": "accept" |
 * "reject" | "replace", "reason": TEXT, "data": DOCUMENT}; anything else (a
 * failed command, other output) rejects, saying why. */
static void answer_from_output(eddy_validation *v, const char *cmd, int rc, const char *output)
{
    char why[256];
    if (rc != 0) {
        snprintf(why, sizeof(why), "the validator command %s %s %d", cmd, rc < 0 ? "could not run:" : "exited with",
                 rc);
        eddy_validation_reject(v, why);
        return;
    }
    if (strcmp(output, "accept") == 0) {
        eddy_validation_accept(v);
        return;
    }
    if (strncmp(output, "reject", 6) == 0 && (output[6] == '\0' || output[6] == ' ' || output[6] == ':')) {
        const char *reason = output + 6;
        while (*reason == ' ' || *reason == ':')
            reason++;
        eddy_validation_reject(v, reason[0] ? reason : NULL);
        return;
    }
    json_t *root = json_loads(output, JSON_DECODE_ANY, NULL);
    const char *verdict = json_string_value(json_object_get(root, "verdict"));
    if (verdict != NULL && strcmp(verdict, "accept") == 0) {
        eddy_validation_accept(v);
    } else if (verdict != NULL && strcmp(verdict, "reject") == 0) {
        eddy_validation_reject(v, json_string_value(json_object_get(root, "reason")));
    } else if (verdict != NULL && strcmp(verdict, "replace") == 0 && json_is_object(json_object_get(root, "data"))) {
        char *doc = json_dumps(json_object_get(root, "data"), JSON_COMPACT);
        eddy_validation_replace(v, doc);
        free(doc); /* jansson's malloc */
    } else if (verdict != NULL && strcmp(verdict, "replace") == 0 && json_is_array(json_object_get(root, "data"))) {
        char *doc = json_dumps(json_object_get(root, "data"), JSON_COMPACT);
        eddy_validation_replace(v, doc);
        free(doc);
    } else {
        snprintf(why, sizeof(why), "the validator command %s answered neither accept, reject nor a verdict", cmd);
        eddy_validation_reject(v, why);
    }
    json_decref(root);
}

static void serve_validation(void *arg, eddy_validation *v, const char *name, const char *request)
{
    provide_ctx *c = arg;
    (void)name;
    size_t len = strlen(request);
    char *line = xmalloc(len + 2); /* one JSON line */
    memcpy(line, request, len);
    line[len] = '\n';
    line[len + 1] = '\0';
    char *output;
    int rc = run_command(c->argv, line, &output);
    answer_from_output(v, c->argv[0], rc, output ? output : "");
    xfree(output);
    xfree(line);
}

/* ---- commands ---- */

/* Prints a changeset's outcome as JSON: {"ok", ["failed", "error", "reason",] "results": [...]}. */
static void print_outcome(const eddy_changeset_outcome *out)
{
    json_t *body = json_pack("{s:b}", "ok", out->ok);
    if (!out->ok) {
        if (out->failed >= 0)
            json_object_set_new(body, "failed", json_integer(out->failed));
        json_object_set_new(body, "error", json_string(out->error ? out->error : "UNKNOWN"));
        json_object_set_new(body, "reason", json_string(out->reason ? out->reason : ""));
    }
    json_t *results = json_array();
    for (size_t i = 0; i < out->count; i++) {
        const eddy_changeset_result *r = &out->results[i];
        json_t *one = json_pack("{s:b}", "ok", r->ok);
        if (r->ok || (r->error && strcmp(r->error, "VERSION_EXISTS") == 0) ||
            (r->error && strcmp(r->error, "INVALID_VERSION") == 0))
            json_object_set_new(one, "version", json_integer(r->version));
        if (!r->ok) {
            json_object_set_new(one, "error", json_string(r->error ? r->error : "UNKNOWN"));
            json_object_set_new(one, "reason", json_string(r->reason ? r->reason : ""));
        }
        json_array_append_new(results, one);
    }
    json_object_set_new(body, "results", results);
    char *text = json_dumps(body, JSON_COMPACT);
    printf("%s\n", text);
    free(text);
    json_decref(body);
}

/* eddy ctl txn: the changeset on stdin (changeset.h's JSON form), applied all
 * or none. Exit 0 applied, 4 a version conflict, 6 refused, 2 bad input (or
 * records of different shards: nothing sent), 1 unavailable/timeout. */
static int txn(eddy *e)
{
    /* stdin, bounded: a changeset larger than COMMAND_OUTPUT_MAX is refused */
    size_t cap = 65536, len = 0;
    char *text = xmalloc(cap);
    size_t got;
    while ((got = fread(text + len, 1, cap - len, stdin)) > 0) {
        len += got;
        if (len == cap && cap < COMMAND_OUTPUT_MAX + 1) {
            cap = cap * 2 > COMMAND_OUTPUT_MAX + 1 ? COMMAND_OUTPUT_MAX + 1 : cap * 2;
            text = xrealloc(text, cap);
        } else if (len == cap)
            break;
    }
    if (len > COMMAND_OUTPUT_MAX) {
        xfree(text);
        fprintf(stderr, "eddy ctl: txn: stdin holds more than %u bytes\n", COMMAND_OUTPUT_MAX);
        return 2;
    }
    cs_item *items;
    size_t n;
    char why[640];
    int rc = cs_parse(text, len, EDDY_CHANGESET_MAX, EDDY_NAME_MAX, &items, &n, why, sizeof(why));
    xfree(text);
    if (rc != 0) {
        fprintf(stderr, "eddy ctl: txn: %s\n", why);
        return 2;
    }
    eddy_changeset *cs = eddy_changeset_new();
    for (size_t i = 0; i < n; i++) {
        const cs_item *it = &items[i];
        eddy_status st = it->op == CS_SET     ? eddy_changeset_set(cs, it->name, it->path, it->data, it->version)
                         : it->op == CS_ERASE ? eddy_changeset_erase(cs, it->name, it->path, it->version)
                                              : eddy_changeset_delete(cs, it->name, it->version);
        if (st != EDDY_OK) {
            fprintf(stderr, "eddy ctl: txn: operation %zu: %s\n", i, eddy_strerror(st));
            cs_items_free(items, n);
            eddy_changeset_free(cs);
            return 2;
        }
    }
    cs_items_free(items, n);
    const eddy_changeset_outcome *out;
    eddy_status st = eddy_changeset_commit(e, cs, &out);
    print_outcome(out);
    if (st != EDDY_OK)
        fprintf(stderr, "eddy ctl: txn: %s%s%s\n", eddy_strerror(st), out->reason ? ": " : "",
                out->reason ? out->reason : "");
    eddy_changeset_free(cs);
    switch (st) {
    case EDDY_OK: return 0;
    case EDDY_ERR_VERSION: return 4;
    case EDDY_ERR_REFUSED:
    case EDDY_ERR_CROSS_SHARD: return 6;
    case EDDY_ERR_INVALID: return 2;
    default: return 1;
    }
}

static int run(eddy *e, const eddy_options *opts, int argc, char **argv)
{
    const char *cmd = argv[0];
    eddy_status st;
    if (strcmp(cmd, "emit") == 0 && (argc == 2 || argc == 3)) {
        if ((st = eddy_emit(e, argv[1], argc == 3 ? argv[2] : NULL)) != EDDY_OK)
            return fail("emit", argv[1], st);
        return 0;
    }
    if (strcmp(cmd, "subscribe") == 0 && argc >= 4)
        return subscribe_from(e, argc, argv);
    if (strcmp(cmd, "subscribe") == 0 && argc == 2) {
        if ((st = eddy_subscribe(e, argv[1], print_event, NULL)) != EDDY_OK)
            return fail("subscribe", argv[1], st);
        wait_for_stop();
        return 0;
    }
    if (strcmp(cmd, "watch") == 0 && argc == 2) {
        if ((st = eddy_record_subscribe(e, argv[1], print_record, NULL)) != EDDY_OK)
            return fail("watch", argv[1], st);
        wait_for_stop();
        return 0;
    }
    if (strcmp(cmd, "get") == 0 && (argc == 2 || (argc == 3 && strcmp(argv[2], "--with-version") == 0))) {
        char *json;
        int64_t version;
        if ((st = eddy_get(e, argv[1], &json, &version)) != EDDY_OK)
            return fail("get", argv[1], st);
        if (argc == 3)
            printf("{\"version\":%lld,\"data\":%s}\n", (long long)version, json);
        else
            printf("%s\n", json);
        eddy_free(json);
        return 0;
    }
    if (strcmp(cmd, "set") == 0 && argc >= 3) {
        int64_t version = EDDY_VERSION_ANY;
        if (argc >= 5 && strcmp(argv[argc - 2], "--expect") == 0) {
            char *end;
            long long cur = strtoll(argv[argc - 1], &end, 10);
            if (*end != '\0' || cur < 0) {
                fprintf(stderr, "eddy ctl: --expect wants a version number\n");
                return 2;
            }
            version = cur + 1; /* the version this write creates */
            argc -= 2;
        }
        if (argc != 3 && argc != 4) {
            ctl_usage(stderr);
            return 2;
        }
        const char *path = argc == 4 ? argv[2] : NULL, *json = argv[argc - 1];
        if (!is_json(json)) {
            fprintf(stderr, "eddy ctl: set %s: the value is not JSON (quote strings: '\"text\"')\n", argv[1]);
            return 2;
        }
        int64_t written;
        char *reason = NULL;
        if ((st = eddy_write(e, argv[1], path, json, version, &written, &reason)) != EDDY_OK) {
            if (st == EDDY_ERR_VERSION)
                fprintf(stderr, "eddy ctl: set %s: version conflict (the record is at version %lld)\n",
                        argv[1], (long long)written);
            else if (st == EDDY_ERR_REJECTED)
                fprintf(stderr, "eddy ctl: set %s: refused by a validator: %s\n", argv[1], reason ? reason : "");
            else
                fail("set", argv[1], st);
            eddy_free(reason);
            return exit_code(st);
        }
        printf("%lld\n", (long long)written);
        return 0;
    }
    if (strcmp(cmd, "delete") == 0 && argc == 2) {
        if ((st = eddy_delete(e, argv[1])) != EDDY_OK)
            return fail("delete", argv[1], st);
        return 0;
    }
    if (strcmp(cmd, "txn") == 0 && argc == 1)
        return txn(e);
    if (strcmp(cmd, "call") == 0 && (argc == 2 || argc == 3)) {
        char *result = NULL;
        st = eddy_call(e, argv[1], argc == 3 ? argv[2] : NULL, &result);
        if (st == EDDY_ERR_RPC)
            fprintf(stderr, "eddy ctl: call %s: the provider answered an error: %s\n", argv[1],
                    result ? result : "null");
        else if (st != EDDY_OK)
            fail("call", argv[1], st);
        else
            printf("%s\n", result ? result : "null");
        eddy_free(result);
        return exit_code(st);
    }
    if (strcmp(cmd, "provide") == 0 && argc >= 4 && strcmp(argv[2], "--") == 0) {
        provide_ctx c = {.argv = argv + 3};
        if ((st = eddy_provide(e, argv[1], serve_call, &c)) != EDDY_OK)
            return fail("provide", argv[1], st);
        fprintf(stderr, "eddy ctl: providing %s (interrupt to stop)\n", argv[1]);
        wait_for_stop();
        return 0;
    }
    if (strcmp(cmd, "validate") == 0 && argc >= 4 && strcmp(argv[2], "--") == 0) {
        provide_ctx c = {.argv = argv + 3};
        /* unavailable: a node's link was down or full; the registration is kept
         * and sent when that link resyncs, so a validator goes on */
        if ((st = eddy_validate(e, argv[1], serve_validation, &c)) != EDDY_OK && st != EDDY_ERR_UNAVAILABLE)
            return fail("validate", argv[1], st);
        if (st == EDDY_ERR_UNAVAILABLE)
            fprintf(stderr, "eddy ctl: validate %s: a node is unavailable; registered with it when it is back\n",
                    argv[1]);
        fprintf(stderr, "eddy ctl: validating %s (interrupt to stop)\n", argv[1]);
        wait_for_stop();
        return 0;
    }
    if (strcmp(cmd, "status") == 0 && argc == 1) {
        char *json;
        if ((st = eddy_cluster_status(e, &json)) != EDDY_OK)
            return fail("status", NULL, st);
        printf("%s\n", json);
        int rc = strstr(json, "\"delivering\":false") == NULL ? 0 : 1;
        eddy_free(json);
        return rc;
    }
    if (strcmp(cmd, "reload") == 0 && argc == 1)
        return reload_all(e, opts);
    ctl_usage(stderr);
    return 2;
}

int cmd_ctl(int argc, char **argv, volatile sig_atomic_t *stop)
{
    stopping = stop;
    const char *cluster = NULL;
    eddy_options opts = {.timeout_ms = 5000};
    int i = 2; /* argv[0] eddy, argv[1] ctl */
    for (; i < argc && argv[i][0] == '-'; i += 2) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            ctl_usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            ctl_usage(stderr);
            return 2;
        }
        if (strcmp(argv[i], "--cluster") == 0)
            cluster = argv[i + 1];
        else if (strcmp(argv[i], "--cluster-tls-cert") == 0)
            opts.tls_cert = argv[i + 1];
        else if (strcmp(argv[i], "--cluster-tls-key") == 0)
            opts.tls_key = argv[i + 1];
        else if (strcmp(argv[i], "--cluster-tls-ca") == 0)
            opts.tls_ca = argv[i + 1];
        else if (strcmp(argv[i], "--timeout") == 0) {
            char *end;
            long ms = strtol(argv[i + 1], &end, 10);
            if (*end != '\0' || ms < 1 || ms > 3600000) {
                fprintf(stderr, "eddy ctl: --timeout wants milliseconds (1..3600000)\n");
                return 2;
            }
            opts.timeout_ms = (int)ms;
        } else {
            fprintf(stderr, "eddy ctl: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (i >= argc) {
        ctl_usage(stderr);
        return 2;
    }
    if (getenv("EDDY_LOG_LEVEL") == NULL)
        log_threshold = LOG_WARN; /* the library's link chatter is not a shell user's business */
    if (cluster == NULL)
        cluster = opts.tls_cert != NULL || getenv("EDDY_CLUSTER_TLS_CERT") != NULL ? DEFAULT_TLS_CLUSTER
                                                                                 : DEFAULT_CLUSTER;
    if (strcmp(argv[i], "cluster") == 0 && argc - i >= 2 && strcmp(argv[i + 1], "promote") == 0)
        return cluster_promote(cluster, &opts, argc - i, argv + i);
    if (strcmp(argv[i], "cluster") == 0 && argc - i >= 2 && strcmp(argv[i + 1], "rebalance") == 0)
        return cluster_rebalance(cluster, &opts, argc - i, argv + i);
    if (strcmp(argv[i], "cluster") == 0) /* asks the one node, without a backend connection */
        return cluster_status(cluster, &opts, argc - i, argv + i);
    eddy *e;
    eddy_status st = eddy_connect(cluster, &opts, &e);
    if (st != EDDY_OK) {
        fprintf(stderr, "eddy ctl: cannot reach the cluster at %s: %s\n", cluster, eddy_strerror(st));
        return exit_code(st) == 2 ? 2 : 1;
    }
    int rc = run(e, &opts, argc - i, argv + i);
    eddy_close(e);
    return rc;
}
