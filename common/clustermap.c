/* clustermap.c - the cluster map (see clustermap.h): its nodes, the shard map
 * they make, and its JSON form, built by nodes and fetched by brokers and
 * backends. */
#include "clustermap.h"

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
        m->nodes[i] = (cluster_node){0};
    }
    m->count = 0;
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
        if (!json_is_object(item) || req == NULL || del == NULL) {
            snprintf(err, err_len, "every node needs string request and delivery");
            return -1;
        }
        if (sh != NULL && !json_is_string(sh)) {
            snprintf(err, err_len, "shards must be a string of ranges like \"0-1023,2048-3071\"");
            return -1;
        }
        if (clustermap_add(m, json_string_value(json_object_get(item, "id")), req, del, json_string_value(sh), err,
                           err_len) != 0)
            return -1;
    }
    return 0;
}

int clustermap_shards(const clustermap *m, shardmap *map, char *err, size_t err_len)
{
    uint64_t epoch = (uint64_t)m->epoch;
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

char *clustermap_json(const clustermap *m, const shardmap *map, const char *self_id, const char *self_request,
                      const char *self_delivery)
{
    json_t *nodes = json_array();
    char ranges[16384];
    if (m->count == 0) {
        shardmap_format(map, 0, ranges, sizeof(ranges));
        json_array_append_new(nodes, json_pack("{s:s, s:s, s:s, s:s}", "id", self_id, "request", self_request,
                                               "delivery", self_delivery, "shards", ranges));
    }
    for (int i = 0; i < m->count; i++) {
        shardmap_format(map, (unsigned)i, ranges, sizeof(ranges));
        json_array_append_new(nodes, json_pack("{s:s, s:s, s:s, s:s}", "id", m->nodes[i].id, "request",
                                               m->nodes[i].request, "delivery", m->nodes[i].delivery, "shards",
                                               ranges));
    }
    return dump(json_pack("{s:I, s:i, s:o}", "epoch", (json_int_t)map->epoch, "shardCount", (int)SHARD_COUNT,
                          "nodes", nodes));
}

int clustermap_parse(clustermap *m, const char *json, size_t len, char *err, size_t err_len)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    json_t *nodes = json_object_get(root, "nodes");
    json_t *epoch = json_object_get(root, "epoch");
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
    clustermap_clear(m);
    if (clustermap_add_json(m, nodes, err, err_len) != 0) {
        clustermap_clear(m);
        goto out;
    }
    m->epoch = json_integer_value(epoch);
    rc = 0;
out:
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
static char *ask(nng_socket sock, uint32_t question, uint32_t answer)
{
    op_batch b;
    op_batch_init(&b);
    op q = {.kind = question};
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
    if ((rv = linktls_dial(tls, sock, request_url)) != 0) {
        log_error("seed-failed", "seed=%s error=%s", request_url, nng_strerror(rv));
        nng_close(sock); /* nothing in flight */
        return NULL;
    }
    char *json = NULL;
    bool said = false;
    while (json == NULL && (stop == NULL || !*stop) && (deadline == 0 || now_ms() < deadline)) {
        json = ask(sock, OP_MAP_QUERY, OP_MAP);
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

/* One question a node answers without a HELLO, on a socket of its own. */
static char *ask_once(const char *request_url, const linktls *tls, uint32_t question, int timeout_ms,
                      const char *what)
{
    nng_socket sock;
    if (nng_req0_open(&sock) != 0)
        return NULL;
    nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, timeout_ms);
    nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, timeout_ms);
    nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, MAP_MAX_BYTES);
    char *json = NULL;
    if (linktls_dial(tls, sock, request_url) == 0)
        json = ask(sock, question, question);
    nng_close_bounded(sock, what, 2000);
    return json;
}

char *clustermap_node_stats(const char *request_url, const linktls *tls, int timeout_ms)
{
    return ask_once(request_url, tls, OP_NODE_STATS, timeout_ms, "node-stats");
}

char *clustermap_node_reload(const char *request_url, const linktls *tls, int timeout_ms)
{
    return ask_once(request_url, tls, OP_RELOAD, timeout_ms, "node-reload");
}
