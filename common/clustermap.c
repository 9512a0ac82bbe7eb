/* clustermap.c - the cluster map (see clustermap.h): its nodes, the shard map
 * they make, and its JSON form, built by nodes and fetched by brokers and
 * backends. */
#include "clustermap.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "linktls.h"
#include "log.h"
#include "mem.h"
#include "ops.h"
#include "util.h"

#define FETCH_TIMEOUT_MS 2000
#define MAP_MAX_BYTES (1u << 20)

static char *dump(json_t *root)
{
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    char *out = xstrdup(text ? text : "{}");
    free(text); /* jansson allocates with malloc */
    return out;
}

void clustermap_clear(clustermap *m)
{
    for (int i = 0; i < m->count; i++) {
        xfree(m->nodes[i].id);
        xfree(m->nodes[i].request);
        xfree(m->nodes[i].delivery);
        xfree(m->nodes[i].shards);
        xfree(m->nodes[i].raft);
        m->nodes[i] = (cluster_node){0};
    }
    m->count = 0;
    m->version = 0;
    m->hello_digest = 0;
    xfree(m->shard_epochs);
    m->shard_epochs = NULL;
}

int clustermap_add(clustermap *m, const char *id, const char *request, const char *delivery, const char *shards,
                   char *err, size_t err_len)
{
    if (m->count >= CLUSTER_MAX_NODES) {
        snprintf(err, err_len, "more than %d nodes", CLUSTER_MAX_NODES);
        return -1;
    }
    if (request == NULL || delivery == NULL || request[0] == '\0' || delivery[0] == '\0') {
        snprintf(err, err_len, "%s: each node needs a request and a delivery address", id ? id : "node");
        return -1;
    }
    char idbuf[32];
    if (id == NULL) {
        snprintf(idbuf, sizeof(idbuf), "node%d", m->count + 1);
        id = idbuf;
    }
    cluster_node *n = &m->nodes[m->count++];
    n->id = xstrdup(id);
    n->request = xstrdup(request);
    n->delivery = xstrdup(delivery);
    n->shards = shards != NULL && shards[0] != '\0' ? xstrdup(shards) : NULL;
    return 0;
}

int clustermap_add_json(clustermap *m, json_t *nodes, char *err, size_t err_len)
{
    if (!json_is_array(nodes)) {
        snprintf(err, err_len, "must be a list of {id, request, delivery}");
        return -1;
    }
    size_t i;
    json_t *item;
    json_array_foreach(nodes, i, item) {
        const char *req = json_string_value(json_object_get(item, "request"));
        const char *del = json_string_value(json_object_get(item, "delivery"));
        json_t *sh = json_object_get(item, "shards");
        json_t *raft = json_object_get(item, "raft");
        if (!json_is_object(item) || req == NULL || del == NULL) {
            snprintf(err, err_len, "every node needs string request and delivery");
            return -1;
        }
        if (sh != NULL && !json_is_string(sh)) {
            snprintf(err, err_len, "shards must be a string of ranges like \"0-1023,2048-3071\"");
            return -1;
        }
        if (raft != NULL && (!json_is_string(raft) || json_string_length(raft) == 0)) {
            snprintf(err, err_len, "raft must be a string \"IPv4:PORT\" (the node's Raft transport)");
            return -1;
        }
        if (clustermap_add(m, json_string_value(json_object_get(item, "id")), req, del, json_string_value(sh), err,
                           err_len) != 0)
            return -1;
        if (raft != NULL)
            m->nodes[m->count - 1].raft = xstrdup(json_string_value(raft));
    }
    return 0;
}

bool clustermap_ipv4_port(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= INET_ADDRSTRLEN)
        return false;
    char host[INET_ADDRSTRLEN];
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    struct in_addr a;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    return inet_pton(AF_INET, host, &a) == 1 && colon[1] != '\0' && *end == '\0' && port > 0 && port <= 65535;
}

int clustermap_raft(const clustermap *m, int i, char *out, size_t out_len, char *err, size_t err_len)
{
    const cluster_node *n = &m->nodes[i];
    if (n->raft != NULL) {
        if (!clustermap_ipv4_port(n->raft) || strlen(n->raft) >= out_len) {
            snprintf(err, err_len, "node '%s': raft '%s' is not IPv4:PORT (libraft 0.15 takes no host names)",
                     n->id, n->raft);
            return -1;
        }
        snprintf(out, out_len, "%s", n->raft);
        return 0;
    }
    /* scheme://HOST:PORT -> HOST:PORT+RAFT_PORT_OFFSET */
    const char *host = strstr(n->request, "://");
    host = host != NULL ? host + 3 : n->request;
    const char *colon = strrchr(host, ':');
    char *end = NULL;
    long port = colon != NULL ? strtol(colon + 1, &end, 10) : 0;
    int len = colon != NULL && end != NULL && *end == '\0' && port > 0 && port + RAFT_PORT_OFFSET <= 65535
                  ? snprintf(out, out_len, "%.*s:%ld", (int)(colon - host), host, port + RAFT_PORT_OFFSET)
                  : -1;
    if (len < 0 || (size_t)len >= out_len || !clustermap_ipv4_port(out)) {
        snprintf(err, err_len, "node '%s': no raft address, and none can be derived from request %s (its IPv4 "
                 "host, its port + %d): add raft: \"IPv4:PORT\" to this node in cluster.nodes", n->id, n->request,
                 RAFT_PORT_OFFSET);
        return -1;
    }
    return 0;
}

/* A map made from the metadata group: explicit; a node may own nothing and a
 * shard may have no owner (unavailable). */
static int versioned_shards(const clustermap *m, shardmap *map, char *err, size_t err_len)
{
    shardmap_init_empty(map, (unsigned)(m->count > 0 ? m->count : 1), (uint64_t)m->epoch);
    map->version = m->version;
    for (int i = 0; i < m->count; i++) {
        char why[200];
        if (m->nodes[i].shards != NULL &&
            shardmap_assign(map, (unsigned)i, m->nodes[i].shards, why, sizeof(why)) != 0) {
            snprintf(err, err_len, "node '%s' shards: %s", m->nodes[i].id, why);
            return -1;
        }
    }
    if (m->shard_epochs != NULL)
        memcpy(map->shard_epoch, m->shard_epochs, sizeof(map->shard_epoch));
    return 0;
}

int clustermap_shards(const clustermap *m, shardmap *map, char *err, size_t err_len)
{
    uint64_t epoch = (uint64_t)m->epoch;
    if (m->version > 0)
        return versioned_shards(m, map, err, err_len);
    if (m->count == 0)
        return shardmap_init_even(map, 1, epoch);
    int explicit = 0;
    for (int i = 0; i < m->count; i++)
        explicit += m->nodes[i].shards != NULL;
    if (explicit == 0)
        return shardmap_init_even(map, (unsigned)m->count, epoch);
    shardmap_init_empty(map, (unsigned)m->count, epoch);
    for (int i = 0; i < m->count; i++) {
        char why[200];
        if (m->nodes[i].shards == NULL) {
            snprintf(err, err_len, "node '%s' lists no shards (when one node lists its shards, every node must)",
                     m->nodes[i].id);
            return -1;
        }
        if (shardmap_assign(map, (unsigned)i, m->nodes[i].shards, why, sizeof(why)) != 0) {
            snprintf(err, err_len, "node '%s' shards: %s", m->nodes[i].id, why);
            return -1;
        }
    }
    int missing = shardmap_first_unowned(map);
    if (missing >= 0) {
        snprintf(err, err_len, "shard %d has no node (the shards 0-%u must each be listed once)", missing,
                 SHARD_COUNT - 1);
        return -1;
    }
    return 0;
}

uint64_t clustermap_hello_digest(const clustermap *m, const shardmap *map)
{
    return m->hello_digest != 0 ? m->hello_digest : shardmap_digest(map);
}

#define RANGES_MAX 65536 /* shardmap_format's bound: every shard a range of its own fits */

struct epoch_is {
    const shardmap *map;
    uint64_t epoch;
};

static bool has_epoch(uint32_t shard, void *arg)
{
    const struct epoch_is *e = arg;
    return e->map->shard_epoch[shard] == e->epoch;
}

/* [[epoch, "ranges"], ...] of the shards whose epoch is not the map's, by
 * ascending epoch; NULL when there are none. */
static json_t *shard_epochs_json(const shardmap *map, char *ranges)
{
    json_t *pairs = NULL;
    uint64_t last = 0;
    for (;;) { /* the next epoch above `last` other than the map's (at most SHARD_COUNT rounds) */
        uint64_t next = UINT64_MAX;
        bool found = false;
        for (uint32_t s = 0; s < SHARD_COUNT; s++) {
            uint64_t e = map->shard_epoch[s];
            if (e != map->epoch && e > last && e <= next) {
                next = e;
                found = true;
            }
        }
        if (!found)
            return pairs;
        shardmap_format_if(has_epoch, &(struct epoch_is){map, next}, ranges, RANGES_MAX);
        if (pairs == NULL)
            pairs = json_array();
        json_array_append_new(pairs, json_pack("[I, s]", (json_int_t)next, ranges));
        last = next;
        if (next == UINT64_MAX)
            return pairs;
    }
}

char *clustermap_json(const clustermap *m, const shardmap *map, uint64_t hello_digest, const char *self_id,
                      const char *self_request, const char *self_delivery)
{
    json_t *nodes = json_array();
    char *ranges = xmalloc(RANGES_MAX);
    if (m->count == 0) {
        shardmap_format(map, 0, ranges, RANGES_MAX);
        json_array_append_new(nodes, json_pack("{s:s, s:s, s:s, s:s}", "id", self_id, "request", self_request,
                                               "delivery", self_delivery, "shards", ranges));
    }
    for (int i = 0; i < m->count; i++) {
        shardmap_format(map, (unsigned)i, ranges, RANGES_MAX);
        json_array_append_new(nodes, json_pack("{s:s, s:s, s:s, s:s}", "id", m->nodes[i].id, "request",
                                               m->nodes[i].request, "delivery", m->nodes[i].delivery, "shards",
                                               ranges));
    }
    json_t *root = json_pack("{s:I, s:i, s:o}", "epoch", (json_int_t)map->epoch, "shardCount", (int)SHARD_COUNT,
                             "nodes", nodes);
    if (map->version > 0) { /* made from the metadata group (the static text has none of these) */
        char digest[17];
        snprintf(digest, sizeof(digest), "%016llx", (unsigned long long)hello_digest);
        json_object_set_new(root, "version", json_integer((json_int_t)map->version));
        json_object_set_new(root, "helloDigest", json_string(digest));
        json_t *pairs = shard_epochs_json(map, ranges);
        if (pairs != NULL)
            json_object_set_new(root, "shardEpochs", pairs);
    }
    xfree(ranges);
    return dump(root);
}

/* Reads "shardEpochs" into epochs (SHARD_COUNT, preset to the map's epoch):
 * at most SHARD_COUNT pairs of [epoch >= 1, "ranges"], no shard twice.
 * Returns 0, or -1 with the reason in err. */
static int parse_shard_epochs(json_t *pairs, uint64_t *epochs, char *err, size_t err_len)
{
    if (!json_is_array(pairs) || json_array_size(pairs) > SHARD_COUNT) {
        snprintf(err, err_len, "shardEpochs must be a list of at most %u [epoch, \"ranges\"] pairs", SHARD_COUNT);
        return -1;
    }
    shardmap *seen = xmalloc(sizeof(*seen)); /* which shards were given an epoch already */
    shardmap_init_empty(seen, 1, 0);
    int rc = -1;
    size_t i;
    json_t *pair;
    json_array_foreach(pairs, i, pair) {
        json_t *e = json_array_get(pair, 0);
        const char *ranges = json_string_value(json_array_get(pair, 1));
        char why[200];
        if (!json_is_array(pair) || json_array_size(pair) != 2 || !json_is_integer(e) || json_integer_value(e) < 1 ||
            ranges == NULL) {
            snprintf(err, err_len, "shardEpochs[%zu] is not [epoch >= 1, \"ranges\"]", i);
            goto out;
        }
        if (shardmap_assign(seen, 0, ranges, why, sizeof(why)) != 0) {
            snprintf(err, err_len, "shardEpochs[%zu]: %s", i, why);
            goto out;
        }
        for (uint32_t s = 0; s < SHARD_COUNT; s++)
            if (seen->owner[s] == 0 && seen->shard_epoch[s] == 0) {
                epochs[s] = (uint64_t)json_integer_value(e);
                seen->shard_epoch[s] = 1; /* done: the next pair leaves it */
            }
    }
    rc = 0;
out:
    xfree(seen);
    return rc;
}

int clustermap_parse(clustermap *m, const char *json, size_t len, char *err, size_t err_len)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    json_t *nodes = json_object_get(root, "nodes");
    json_t *epoch = json_object_get(root, "epoch");
    json_t *version = json_object_get(root, "version");
    json_t *digest = json_object_get(root, "helloDigest");
    json_t *pairs = json_object_get(root, "shardEpochs");
    clustermap fresh = {0};
    int rc = -1;
    if (!json_is_array(nodes) || !json_is_integer(epoch) || json_integer_value(epoch) < 1) {
        snprintf(err, err_len, "the cluster map is not {epoch, nodes: [...]}");
        goto out;
    }
    if (json_array_size(nodes) == 0 || json_array_size(nodes) > CLUSTER_MAX_NODES) {
        snprintf(err, err_len, "the cluster map has %zu nodes (1..%d allowed)", json_array_size(nodes),
                 CLUSTER_MAX_NODES);
        goto out;
    }
    if (version != NULL && (!json_is_integer(version) || json_integer_value(version) < 0)) {
        snprintf(err, err_len, "the cluster map's version is not an integer >= 0");
        goto out;
    }
    fresh.epoch = json_integer_value(epoch);
    fresh.version = version != NULL ? (uint64_t)json_integer_value(version) : 0;
    if (digest != NULL) {
        const char *hex = json_string_value(digest);
        char *end = NULL;
        unsigned long long d = hex != NULL && hex[0] != '\0' && strlen(hex) <= 16 ? strtoull(hex, &end, 16) : 0;
        if (d == 0 || *end != '\0') {
            snprintf(err, err_len, "the cluster map's helloDigest is not 1-16 hex digits (not 0)");
            goto out;
        }
        fresh.hello_digest = d;
    }
    if (pairs != NULL) {
        fresh.shard_epochs = xmalloc(SHARD_COUNT * sizeof(*fresh.shard_epochs));
        for (uint32_t s = 0; s < SHARD_COUNT; s++)
            fresh.shard_epochs[s] = (uint64_t)fresh.epoch;
        if (parse_shard_epochs(pairs, fresh.shard_epochs, err, err_len) != 0)
            goto out;
    }
    if (clustermap_add_json(&fresh, nodes, err, err_len) != 0)
        goto out;
    clustermap_clear(m);
    *m = fresh;
    fresh = (clustermap){0};
    rc = 0;
out:
    clustermap_clear(&fresh);
    json_decref(root);
    return rc;
}

/* What ask() wants from a reply: the data of the first operation of a kind. */
typedef struct answer_want {
    uint32_t kind;
    char *data; /* owned */
} answer_want;

/* op_batch_each: keeps the first wanted answer's data in arg (an answer_want). */
static int take_answer(void *arg, const op *o)
{
    answer_want *w = arg;
    if (o->kind != w->kind || !o->has_data)
        return 0;
    w->data = xstrndup(o->data.ptr, o->data.len);
    return 1;
}

/* One round trip on sock of a question a node answers without a HELLO
 * (MAP_QUERY, NODE_STATS). Returns the answer's data (owned) or NULL. */
static char *ask(nng_socket sock, uint32_t question, uint32_t answer, const char *data)
{
    op_batch b;
    op_batch_init(&b);
    op q = {.kind = question, .has_data = data != NULL, .data = {data, data ? (uint32_t)strlen(data) : 0}};
    op_batch_add(&b, &q);
    uint8_t hdr[OP_BATCH_HEADER_MAX];
    size_t h = op_batch_header(hdr, random_id(), 0, b.count);
    nng_msg *msg, *reply = NULL;
    if (nng_msg_alloc(&msg, h + b.buf.size) == 0) {
        memcpy(nng_msg_body(msg), hdr, h);
        memcpy((uint8_t *)nng_msg_body(msg) + h, b.buf.data, b.buf.size);
        if (nng_sendmsg(sock, msg, 0) != 0)
            nng_msg_free(msg);
        else
            (void)nng_recvmsg(sock, &reply, 0);
    }
    op_batch_destroy(&b);
    if (reply == NULL)
        return NULL;
    answer_want want = {.kind = answer};
    (void)op_batch_each(nng_msg_body(reply), nng_msg_len(reply), take_answer, &want);
    nng_msg_free(reply);
    return want.data;
}

char *clustermap_fetch(const char *request_url, const linktls *tls, volatile sig_atomic_t *stop, int64_t deadline)
{
    nng_socket sock;
    int rv = nng_req0_open(&sock);
    if (rv != 0) {
        log_error("seed-failed", "at=req0_open error=%s", nng_strerror(rv));
        return NULL;
    }
    int wait_ms = FETCH_TIMEOUT_MS;
    if (deadline > 0 && deadline - now_ms() < wait_ms)
        wait_ms = deadline - now_ms() > 50 ? (int)(deadline - now_ms()) : 50;
    nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, wait_ms);
    nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, wait_ms);
    nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, MAP_MAX_BYTES);
    nng_socket_set_ms(sock, NNG_OPT_RECONNMINT, 100);
    nng_socket_set_ms(sock, NNG_OPT_RECONNMAXT, 1000);
    if ((rv = linktls_dial(tls, sock, request_url, NULL)) != 0) {
        log_error("seed-failed", "seed=%s error=%s", request_url, nng_strerror(rv));
        nng_close(sock); /* nothing in flight */
        return NULL;
    }
    char *json = NULL;
    bool said = false;
    while (json == NULL && (stop == NULL || !*stop) && (deadline == 0 || now_ms() < deadline)) {
        json = ask(sock, OP_MAP_QUERY, OP_MAP, NULL);
        if (json == NULL && (deadline == 0 || now_ms() + 200 < deadline)) {
            if (!said)
                log_warn("waiting-for-seed", "seed=%s (asking again)", request_url);
            said = true;
            usleep(200 * 1000);
        }
    }
    nng_close_bounded(sock, "seed", 2000);
    return json;
}

/* One question a node answers without a HELLO (with an operation of kind
 * answer), on a socket of its own. */
static char *ask_once(const char *request_url, const linktls *tls, uint32_t question, uint32_t answer,
                      int timeout_ms, const char *what, const char *data)
{
    nng_socket sock;
    if (nng_req0_open(&sock) != 0)
        return NULL;
    nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, timeout_ms);
    nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, timeout_ms);
    nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, MAP_MAX_BYTES);
    char *json = NULL;
    if (linktls_dial(tls, sock, request_url, NULL) == 0)
        json = ask(sock, question, answer, data);
    nng_close_bounded(sock, what, 2000);
    return json;
}

char *clustermap_node_stats(const char *request_url, const linktls *tls, int timeout_ms)
{
    return ask_once(request_url, tls, OP_NODE_STATS, OP_NODE_STATS, timeout_ms, "node-stats", NULL);
}

char *clustermap_node_cluster_status(const char *request_url, const linktls *tls, int timeout_ms)
{
    return ask_once(request_url, tls, OP_CLUSTER_STATUS, OP_CLUSTER_STATUS, timeout_ms, "cluster-status", NULL);
}

char *clustermap_node_reload(const char *request_url, const linktls *tls, int timeout_ms)
{
    return ask_once(request_url, tls, OP_RELOAD, OP_RELOAD, timeout_ms, "node-reload", NULL);
}

char *clustermap_node_promote(const char *request_url, const linktls *tls, const char *request, int timeout_ms)
{
    return ask_once(request_url, tls, OP_CLUSTER_PROMOTE, OP_CLUSTER_PROMOTE, timeout_ms, "cluster-promote", request);
}

char *clustermap_node_map(const char *request_url, const linktls *tls, int timeout_ms)
{
    return ask_once(request_url, tls, OP_MAP_QUERY, OP_MAP, timeout_ms, "map-query", NULL);
}
