/* metaplan.c - the bootstrap plan of the metadata group (see metaplan.h). */
#include "metaplan.h"

#include <stdio.h>
#include <string.h>

#include "mem.h"
#include "metacmd.h"

void metaplan_free(metaplan *p)
{
    if (p == NULL)
        return;
    for (unsigned i = 0; i < p->count; i++)
        msgpack_sbuffer_destroy(&p->cmds[i]);
    p->count = 0;
}

static const char *or_empty(const char *s)
{
    return s != NULL ? s : "";
}

/* Appends c (expect_version set by the caller) to the plan. */
static int add(metaplan *p, const meta_cmd *c, char *err, size_t err_len)
{
    msgpack_sbuffer_init(&p->cmds[p->count]);
    if (metacmd_encode(c, &p->cmds[p->count]) != 0) {
        msgpack_sbuffer_destroy(&p->cmds[p->count]);
        snprintf(err, err_len, "a command out of bounds (a name or an address too long?)");
        return -1;
    }
    p->count++;
    return 0;
}

int metaplan_bootstrap(const metamap *m, const metaplan_node *nodes, unsigned n, const shardmap *map,
                       unsigned copies, metaplan *out, char *err, size_t err_len)
{
    out->count = 0;
    if (n == 0 || n > META_MAX_MEMBERS || map->node_count != n || copies == 0 || copies > META_MAX_COPIES ||
        copies > n) {
        snprintf(err, err_len, "%u nodes (1-%d, as many as the shard map's %u) and %u copies (1-%d, at most the "
                 "nodes) cannot be bootstrapped", n, META_MAX_MEMBERS, map->node_count, copies, META_MAX_COPIES);
        return -1;
    }
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        if (m->shards[s].ncopies > 0 || m->shards[s].epoch > 0)
            return 0; /* assigned (or unavailable since): bootstrapped already */
    for (unsigned i = 0; i < m->nmembers; i++) {
        const meta_member *a = &m->members[i];
        if (a->id > n) {
            snprintf(err, err_len, "the map has member %u (%s), which is not in cluster.nodes (%u nodes)", a->id,
                     a->name, n);
            return -1;
        }
        const metaplan_node *c = &nodes[a->id - 1];
        if (strcmp(a->name, or_empty(c->name)) != 0 || strcmp(a->request, or_empty(c->request)) != 0 ||
            strcmp(a->delivery, or_empty(c->delivery)) != 0 || strcmp(a->raft, or_empty(c->raft)) != 0) {
            snprintf(err, err_len, "the map's member %u is %s (request %s, raft %s) but cluster.nodes[%u] is %s "
                     "(request %s, raft %s): the group was bootstrapped with another cluster.nodes",
                     a->id, a->name, a->request, a->raft, a->id - 1, or_empty(c->name), or_empty(c->request),
                     or_empty(c->raft));
            return -1;
        }
    }
    uint64_t version = m->version;
    for (unsigned i = 0; i < n; i++) {
        if (metamap_member(m, (uint16_t)(i + 1)) != NULL)
            continue;
        const metaplan_node *c = &nodes[i];
        meta_cmd a = {.kind = META_ADD_NODE, .expect_version = version++, .node = (uint16_t)(i + 1),
                      .name = or_empty(c->name), .request = or_empty(c->request),
                      .delivery = or_empty(c->delivery), .raft = or_empty(c->raft)};
        a.name_len = (uint32_t)strlen(a.name);
        a.request_len = (uint32_t)strlen(a.request);
        a.delivery_len = (uint32_t)strlen(a.delivery);
        a.raft_len = (uint32_t)strlen(a.raft);
        if (add(out, &a, err, err_len) != 0)
            goto fail;
    }
    uint16_t *primaries = xmalloc(SHARD_COUNT * sizeof(*primaries));
    for (uint32_t s = 0; s < SHARD_COUNT; s++)
        primaries[s] = (uint16_t)(shardmap_owner(map, s) + 1);
    meta_cmd sp = {.kind = META_SPREAD, .expect_version = version, .ncopies = (uint8_t)copies,
                   .epoch = map->epoch, .primaries = primaries};
    int rc = add(out, &sp, err, err_len);
    xfree(primaries);
    if (rc != 0)
        goto fail;
    return 0;
fail:
    metaplan_free(out);
    return -1;
}
