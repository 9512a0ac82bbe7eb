/* changeset.c - atomic changesets on the owning node: the OP_CHANGESET row of
 * the owner table. Reads a changeset's member operations (RECORD_WRITE and
 * RECORD_DELETE, from its data: op_members), checks them before anything is
 * touched (at most record.maxChangesetOperations, known kinds and write
 * actions, every name in the changeset's shard, each record once), hands them
 * to records.c, which applies all or none, and answers CHANGESET_RESULT with
 * one result per member as JSON:
 *
 *   {"ok":true,"results":[{"ok":true,"version":4},{"ok":true,"version":-1}]}
 *   {"ok":false,"failed":1,"error":"VERSION_EXISTS","reason":"version conflict",
 *    "results":[{"ok":false,"error":"ABORTED","reason":"operation 1 failed"},
 *               {"ok":false,"error":"VERSION_EXISTS","reason":"version conflict","version":7}]}
 *
 * A changeset refused whole before it ran has "results":[] (and "failed" when
 * one member is the reason). The changesets in flight are kept here, so one
 * whose requester went away finishes its work and answers nobody.
 * Not for applying them (records.c) nor for their JSON form (common/changeset.c). */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "deepstream.pb-c.h"
#include "dict.h"
#include "internal.h"
#include "log.h"
#include "mem.h"
#include "shardmap.h"

#define ACT(x) RECORD__ACTION__RECORD_##x

typedef struct cs_table {
    node_env *env;
    changeset *head; /* in flight */
} cs_table;

static void *changesets_create(node_env *env)
{
    cs_table *c = xcalloc(1, sizeof(*c));
    c->env = env; /* env->records is set: records.c's row was created before this one */
    return c;
}

static void changeset_free(changeset *cs)
{
    if (cs == NULL)
        return;
    for (uint32_t i = 0; i < cs->n && cs->m != NULL; i++)
        xfree(cs->m[i].reason);
    xfree(cs->m);
    xfree(cs->bytes);
    xfree(cs);
}

static void changesets_destroy(void *self)
{
    cs_table *c = self;
    while (c->head != NULL) { /* (none: the executor finishes each before it stops) */
        changeset *next = c->head->next;
        changeset_free(c->head);
        c->head = next;
    }
    xfree(c);
}

/* deepstream's name of a record action ("VERSION_EXISTS"), or "ABORTED". */
static const char *status_name(uint32_t status)
{
    if (status == CS_ABORTED)
        return "ABORTED";
    const ProtobufCEnumValue *e = protobuf_c_enum_descriptor_get_value(&record__action__descriptor, (int)status);
    if (e == NULL)
        return "UNKNOWN";
    const char *us = strchr(e->name, '_');
    return us != NULL ? us + 1 : e->name;
}

/* Sends a CHANGESET_RESULT for head (an OP_CHANGESET) to `to` with body (a
 * JSON object; the reference is taken). */
static void answer(cs_table *c, peer *to, const op *head, json_t *body, bool ok)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    op res = {.kind = OP_CHANGESET_RESULT, .name = head->name, .session = head->session, .corr = head->corr,
              .ref = head->ref, .flags = ok ? 0 : OP_FLAG_ERROR, .has_data = true,
              .data = {text, (uint32_t)strlen(text)}};
    records_changeset_answer(c->env->records, to, &res);
    free(text); /* jansson's */
}

/* Refuses the changeset o whole, before anything ran: why (copied), and the
 * member at fault (-1: none). */
static void refuse(cs_table *c, peer *to, const op *o, long failed, const char *why)
{
    log_info("changeset-refused", "name=%.*s reason=\"%s\"", (int)o->name.len, o->name.ptr, why);
    json_t *body = json_pack("{s:b,s:s,s:s,s:[]}", "ok", 0, "error", "INVALID_MESSAGE_DATA", "reason", why,
                             "results");
    if (failed >= 0)
        json_object_set_new(body, "failed", json_integer(failed));
    answer(c, to, o, body, false);
}

/* records.c is done with cs: its outcome to the requester, if still there. */
static void finished(struct record_table *t, changeset *cs)
{
    cs_table *c = cs->done_ctx;
    long failed = -1;
    json_t *results = json_array();
    for (uint32_t i = 0; i < cs->n; i++) {
        const cs_member *m = &cs->m[i];
        json_t *one;
        if (m->status == 0)
            one = json_pack("{s:b,s:I}", "ok", 1, "version", (json_int_t)m->version);
        else {
            one = json_pack("{s:b,s:s}", "ok", 0, "error", status_name(m->status));
            if (m->status != CS_ABORTED) {
                json_object_set_new(one, "reason", json_string(m->why ? m->why : "refused"));
                if (m->status == ACT(VERSION_EXISTS) || m->status == ACT(INVALID_VERSION))
                    json_object_set_new(one, "version", json_integer(m->version));
                if (failed < 0)
                    failed = (long)i;
            }
        }
        json_array_append_new(results, one);
    }
    bool ok = failed < 0;
    json_t *body = json_pack("{s:b,s:o}", "ok", ok, "results", results);
    if (!ok) {
        const cs_member *m = &cs->m[failed];
        char reason[256];
        snprintf(reason, sizeof(reason), "operation %ld failed", failed);
        for (uint32_t i = 0; i < cs->n; i++)
            if (cs->m[i].status == CS_ABORTED)
                json_object_set_new(json_array_get(results, i), "reason", json_string(reason));
        json_object_set_new(body, "failed", json_integer(failed));
        json_object_set_new(body, "error", json_string(status_name(m->status)));
        json_object_set_new(body, "reason", json_string(m->why ? m->why : "refused"));
        log_info("changeset-failed", "name=%.*s operations=%u failed=%ld error=%s reason=\"%s\"",
                 (int)cs->head.name.len, cs->head.name.ptr, cs->n, failed, status_name(m->status),
                 m->why ? m->why : "refused");
    }
    if (cs->from != NULL)
        answer(c, cs->from, &cs->head, body, ok);
    else
        json_decref(body); /* the requester went away */
    if (cs->prev != NULL)
        cs->prev->next = cs->next;
    else
        c->head = cs->next;
    if (cs->next != NULL)
        cs->next->prev = cs->prev;
    changeset_free(cs);
}

static bool valid_write_action(uint32_t a)
{
    return a == ACT(UPDATE) || a == ACT(PATCH) || a == ACT(ERASE) || a == ACT(CREATEANDUPDATE) ||
           a == ACT(CREATEANDPATCH);
}

/* Reads o's members into a new changeset (owned by the caller), or NULL with
 * why (and *failed: the member at fault, or -1). */
static changeset *read_changeset(cs_table *c, const op *o, char *why, size_t why_len, long *failed)
{
    *failed = -1;
    mp_reader r;
    uint32_t count;
    if (!o->has_data || op_members_open(&r, o->data, &count) != 0) {
        snprintf(why, why_len, "the operations are unreadable");
        return NULL;
    }
    if (count == 0 || count > (uint64_t)c->env->cfg->max_changeset_ops) {
        snprintf(why, why_len, "a changeset holds 1 to %lld operations (record.maxChangesetOperations), not %u",
                 (long long)c->env->cfg->max_changeset_ops, count);
        return NULL;
    }
    changeset *cs = xcalloc(1, sizeof(*cs));
    /* one copy of the member bytes and of the head's strings: the members' views point into it */
    size_t len = o->data.len + o->name.len + o->ref.len;
    cs->bytes = xmalloc(len ? len : 1);
    if (o->data.len > 0) /* (an empty view's pointer may be NULL) */
        memcpy(cs->bytes, o->data.ptr, o->data.len);
    if (o->name.len > 0)
        memcpy(cs->bytes + o->data.len, o->name.ptr, o->name.len);
    if (o->ref.len > 0)
        memcpy(cs->bytes + o->data.len + o->name.len, o->ref.ptr, o->ref.len);
    cs->head = *o;
    cs->head.has_data = false;
    cs->head.data = (strview){NULL, 0};
    cs->head.name = (strview){cs->bytes + o->data.len, o->name.len};
    cs->head.ref = (strview){cs->bytes + o->data.len + o->name.len, o->ref.len};
    cs->m = xcalloc(count, sizeof(*cs->m));
    cs->n = count;
    dict *seen = dict_new();
    op_members_open(&r, (strview){cs->bytes, o->data.len}, &count);
    for (uint32_t i = 0; i < count; i++) {
        op *m = &cs->m[i].o;
        int rc = op_decode(&r, m);
        *failed = i;
        if (rc == -1) {
            snprintf(why, why_len, "operation %u is unreadable", i);
            goto fail;
        }
        if (rc != 0 || (m->kind != OP_RECORD_WRITE && m->kind != OP_RECORD_DELETE) ||
            (m->kind == OP_RECORD_WRITE && !valid_write_action(m->action)) || m->name.len == 0) {
            snprintf(why, why_len, "operation %u is not a record write or delete", i);
            goto fail;
        }
        uint32_t shard = shard_of(m->name.ptr, m->name.len);
        if (shard != o->shard) {
            snprintf(why, why_len, "CROSSSHARD: \"%.*s\" is in shard %u, \"%.*s\" is in shard %u",
                     (int)(o->name.len < 200 ? o->name.len : 200), o->name.ptr, o->shard,
                     (int)(m->name.len < 200 ? m->name.len : 200), m->name.ptr, shard);
            goto fail;
        }
        if (dict_get(seen, m->name.ptr, m->name.len) != NULL) {
            snprintf(why, why_len, "record \"%.*s\" appears twice (one operation per record)",
                     (int)(m->name.len < 200 ? m->name.len : 200), m->name.ptr);
            goto fail;
        }
        dict_put(seen, m->name.ptr, m->name.len, cs);
        /* the whole changeset is one requester's: its session, skipped by its broker's deliveries */
        m->session = o->session;
        m->corr = 0;
        m->flags &= ~OP_FLAG_WRITE_ACK;
    }
    dict_free(seen);
    *failed = -1;
    return cs;
fail:
    dict_free(seen);
    changeset_free(cs);
    return NULL;
}

static void changesets_apply(void *self, node_req *req, const op *o)
{
    cs_table *c = self;
    char why[640];
    long failed;
    changeset *cs = read_changeset(c, o, why, sizeof(why), &failed);
    if (cs == NULL) {
        refuse(c, req->from, o, failed, why);
        return;
    }
    cs->from = req->from;
    cs->done = finished;
    cs->done_ctx = c;
    cs->next = c->head;
    if (c->head != NULL)
        c->head->prev = cs;
    c->head = cs;
    records_changeset_run(c->env->records, cs); /* may finish (and free cs) at once */
}

/* p is going away: its changesets finish their work and answer nobody. */
static size_t changesets_drop_peer(void *self, peer *p)
{
    cs_table *c = self;
    size_t n = 0;
    for (changeset *cs = c->head; cs != NULL; cs = cs->next)
        if (cs->from == p) {
            cs->from = NULL;
            n++;
        }
    return n;
}

const owner_module changesets_owner = {
    .name = "changesets",
    .kinds = (const owner_kind[]){{OP_CHANGESET, ROUTE_NAME}, {0, 0}},
    .create = changesets_create,
    .destroy = changesets_destroy,
    .apply = changesets_apply,
    .held = "changesets",
    .drop_peer = changesets_drop_peer,
};
