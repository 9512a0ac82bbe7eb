/* changeset.c - the backend library's changesets (eddy.h): operations
 * gathered on the caller's side, checked to share one shard before anything is
 * sent, sent as one OP_CHANGESET to the node owning them, and the node's
 * CHANGESET_RESULT (JSON, node/changeset.c) read back into an outcome the
 * changeset owns. Not for applying them (the node does). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "deepstream.pb-c.h"
#include "internal.h"
#include "jsonpath.h"
#include "mem.h"

#define RACT(x) RECORD__ACTION__RECORD_##x

typedef struct member {
    uint32_t kind, action;
    int64_t version;
    char *name, *path, *data; /* owned; path and data may be NULL */
} member;

struct eddy_changeset {
    member *m;
    size_t n, cap;
    /* the last commit's outcome (owned strings) */
    eddy_changeset_outcome out;
    eddy_changeset_result *results;
    char *error, *reason;
    char **texts; /* every string the results point to */
    size_t ntexts;
};

static void clear_outcome(eddy_changeset *cs)
{
    for (size_t i = 0; i < cs->ntexts; i++)
        xfree(cs->texts[i]);
    xfree(cs->texts);
    xfree(cs->results);
    xfree(cs->error);
    xfree(cs->reason);
    cs->texts = NULL;
    cs->ntexts = 0;
    cs->results = NULL;
    cs->error = cs->reason = NULL;
    memset(&cs->out, 0, sizeof(cs->out));
    cs->out.failed = -1;
}

eddy_changeset *eddy_changeset_new(void)
{
    eddy_changeset *cs = xcalloc(1, sizeof(*cs));
    cs->out.failed = -1;
    return cs;
}

void eddy_changeset_free(eddy_changeset *cs)
{
    if (cs == NULL)
        return;
    for (size_t i = 0; i < cs->n; i++) {
        xfree(cs->m[i].name);
        xfree(cs->m[i].path);
        xfree(cs->m[i].data);
    }
    xfree(cs->m);
    clear_outcome(cs);
    xfree(cs);
}

size_t eddy_changeset_count(const eddy_changeset *cs)
{
    return cs != NULL ? cs->n : 0;
}

static bool name_ok(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    return len > 0 && len <= EDDY_NAME_MAX;
}

static bool path_ok(const char *path)
{
    return path != NULL && path[0] != '\0' && strlen(path) <= EDDY_NAME_MAX;
}

static eddy_status add(eddy_changeset *cs, uint32_t kind, uint32_t action, const char *name, const char *path,
                       const char *json, int64_t version)
{
    if (cs->n >= EDDY_CHANGESET_MAX)
        return EDDY_ERR_INVALID;
    if (cs->n == cs->cap) {
        cs->cap = cs->cap ? cs->cap * 2 : 8;
        cs->m = xrealloc(cs->m, cs->cap * sizeof(*cs->m));
    }
    cs->m[cs->n++] = (member){.kind = kind, .action = action, .version = version, .name = xstrdup(name),
                              .path = path ? xstrdup(path) : NULL, .data = json ? xstrdup(json) : NULL};
    return EDDY_OK;
}

eddy_status eddy_changeset_set(eddy_changeset *cs, const char *name, const char *path, const char *json,
                               int64_t version)
{
    if (cs == NULL || !name_ok(name) || version < -1 || json == NULL)
        return EDDY_ERR_INVALID;
    enum json_kind k = json_check(json, strlen(json));
    if (k == JSON_KIND_INVALID || (path == NULL && k != JSON_KIND_OBJECT && k != JSON_KIND_ARRAY) ||
        (path != NULL && !path_ok(path)))
        return EDDY_ERR_INVALID;
    return add(cs, OP_RECORD_WRITE, path == NULL ? RACT(CREATEANDUPDATE) : RACT(CREATEANDPATCH), name, path, json,
               version);
}

eddy_status eddy_changeset_erase(eddy_changeset *cs, const char *name, const char *path, int64_t version)
{
    if (cs == NULL || !name_ok(name) || version < -1 || !path_ok(path))
        return EDDY_ERR_INVALID;
    return add(cs, OP_RECORD_WRITE, RACT(ERASE), name, path, NULL, version);
}

eddy_status eddy_changeset_delete(eddy_changeset *cs, const char *name, int64_t version)
{
    if (cs == NULL || !name_ok(name) || version < -1)
        return EDDY_ERR_INVALID;
    return add(cs, OP_RECORD_DELETE, 0, name, NULL, NULL, version);
}

/* A copy of s kept with the outcome (NULL stays NULL). */
static const char *keep(eddy_changeset *cs, const char *s)
{
    if (s == NULL)
        return NULL;
    cs->texts = xrealloc(cs->texts, (cs->ntexts + 1) * sizeof(char *));
    return cs->texts[cs->ntexts++] = xstrdup(s);
}

/* The outcome refused whole, before or at the node. */
static void refused_whole(eddy_changeset *cs, long failed, const char *error, const char *reason)
{
    cs->error = xstrdup(error);
    cs->reason = xstrdup(reason);
    cs->out.ok = false;
    cs->out.failed = failed;
    cs->out.error = cs->error;
    cs->out.reason = cs->reason;
}

/* Reads the node's answer (JSON, node/changeset.c) into cs->out. Returns the status it means. */
static eddy_status read_answer(eddy_changeset *cs, const char *text)
{
    json_t *root = text ? json_loads(text, 0, NULL) : NULL;
    json_t *results = json_object_get(root, "results");
    if (!json_is_object(root) || !json_is_array(results)) {
        json_decref(root);
        refused_whole(cs, -1, "INVALID_MESSAGE_DATA", "the node's answer is unreadable");
        return EDDY_ERR_REFUSED;
    }
    bool ok = json_is_true(json_object_get(root, "ok"));
    json_t *failed = json_object_get(root, "failed");
    cs->out.ok = ok;
    cs->out.failed = json_is_integer(failed) ? (long)json_integer_value(failed) : -1;
    if (!ok) {
        const char *error = json_string_value(json_object_get(root, "error"));
        const char *reason = json_string_value(json_object_get(root, "reason"));
        cs->error = xstrdup(error != NULL ? error : "UNKNOWN");
        cs->reason = xstrdup(reason != NULL ? reason : "refused");
        cs->out.error = cs->error;
        cs->out.reason = cs->reason;
    }
    size_t n = json_array_size(results);
    cs->results = xcalloc(n ? n : 1, sizeof(*cs->results));
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_array_get(results, i);
        json_t *v = json_object_get(r, "version");
        cs->results[i] = (eddy_changeset_result){
            .ok = json_is_true(json_object_get(r, "ok")),
            .version = json_is_integer(v) ? (int64_t)json_integer_value(v) : -1,
            .error = keep(cs, json_string_value(json_object_get(r, "error"))),
            .reason = keep(cs, json_string_value(json_object_get(r, "reason")))};
    }
    cs->out.count = n;
    cs->out.results = cs->results;
    eddy_status st = ok ? EDDY_OK : EDDY_ERR_REFUSED;
    if (!ok && cs->error != NULL &&
        (strcmp(cs->error, "VERSION_EXISTS") == 0 || strcmp(cs->error, "INVALID_VERSION") == 0))
        st = EDDY_ERR_VERSION;
    json_decref(root);
    return st;
}

/* -1 when every name is in the first one's shard, else the first that is not. */
static long other_shard(const eddy_changeset *cs, uint32_t *shard0, uint32_t *shard)
{
    *shard0 = shard_of(cs->m[0].name, strlen(cs->m[0].name));
    for (size_t i = 1; i < cs->n; i++)
        if ((*shard = shard_of(cs->m[i].name, strlen(cs->m[i].name))) != *shard0)
            return (long)i;
    return -1;
}

eddy_status eddy_changeset_commit(eddy *e, eddy_changeset *cs, const eddy_changeset_outcome **out)
{
    if (cs == NULL || e == NULL)
        return EDDY_ERR_INVALID;
    clear_outcome(cs);
    if (out != NULL)
        *out = &cs->out;
    if (cs->n == 0) {
        refused_whole(cs, -1, "INVALID_MESSAGE_DATA", "the changeset is empty");
        return EDDY_ERR_INVALID;
    }
    uint32_t shard0, shard;
    long other = other_shard(cs, &shard0, &shard);
    if (other >= 0) {
        char reason[600];
        snprintf(reason, sizeof(reason), "CROSSSHARD: \"%.200s\" is in shard %u, \"%.200s\" is in shard %u",
                 cs->m[0].name, shard0, cs->m[other].name, shard);
        refused_whole(cs, other, "CROSS_SHARD", reason);
        return EDDY_ERR_CROSS_SHARD;
    }
    op *members = xcalloc(cs->n, sizeof(*members));
    for (size_t i = 0; i < cs->n; i++) {
        const member *m = &cs->m[i];
        members[i] = (op){.kind = m->kind, .action = m->action, .name = {m->name, (uint32_t)strlen(m->name)},
                          .has_version = true, .version = m->version,
                          .path = {m->path, m->path ? (uint32_t)strlen(m->path) : 0},
                          .has_data = m->data != NULL, .data = {m->data, m->data ? (uint32_t)strlen(m->data) : 0}};
    }
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    op_members_encode(&buf, members, (uint32_t)cs->n);
    xfree(members);
    op o = {.kind = OP_CHANGESET, .name = {cs->m[0].name, (uint32_t)strlen(cs->m[0].name)}, .has_data = true,
            .data = {buf.data, (uint32_t)buf.size}, .shard = shard0};
    pthread_mutex_lock(&e->lock);
    int li = (int)shardmap_owner(&e->map, shard0);
    pending *p = client_pending_new(e, li);
    o.corr = p->corr;
    uint64_t seq;
    eddy_status st;
    if (client_submit_to(e, li, &o, &seq) < 0) {
        dict_del(e->pending, &p->corr, sizeof(p->corr));
        st = EDDY_ERR_UNAVAILABLE;
    } else
        st = client_pending_wait(e, p, client_deadline(e));
    pthread_mutex_unlock(&e->lock);
    msgpack_sbuffer_destroy(&buf);
    if (st == EDDY_OK || st == EDDY_ERR_REFUSED)
        st = read_answer(cs, p->data);
    else
        refused_whole(cs, -1, st == EDDY_ERR_TIMEOUT ? "TIMEOUT" : "UNAVAILABLE", eddy_strerror(st));
    client_pending_free(p);
    return st;
}
