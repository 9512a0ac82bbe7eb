/* changesets.c - eddy's atomic changesets on the broker, for the HTTP API's
 * "changeset" operation: the operations (common/changeset.h) are checked here
 * (one shard, each record once, the permissions of every operation as a
 * websocket client's write would be checked: a rule that reads the record
 * travels with it to the node), sent as one OP_CHANGESET to the node owning
 * the shard, and its CHANGESET_RESULT handed to the session that sent it
 * (session_sink.changeset). A row of the topic table without a client topic:
 * it takes the CHANGESET_RESULT deliveries, and answers the changesets a lost
 * node will not. Rules that read other records are not fetched for a
 * changeset (gate.c is for client messages): the node evaluates them with the
 * records it holds. Not for applying changesets (node/changeset.c). */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "changeset.h"
#include "internal.h"
#include "log.h"
#include "mem.h"

#define ACT(x) RECORD__ACTION__RECORD_##x

typedef struct changesets {
    const edge *e;
} changesets;

/* An outcome refused before the node: {"ok":false,["failed",]"error","reason","results":[]} (xmalloc'd). */
static char *refused(long failed, const char *error, const char *reason)
{
    json_t *body = json_pack("{s:b,s:s,s:s,s:[]}", "ok", 0, "error", error, "reason", reason, "results");
    if (failed >= 0)
        json_object_set_new(body, "failed", json_integer(failed));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char *out = xstrdup(text);
    free(text); /* jansson's */
    return out;
}

/* The permissions of item i for s: 0 when the broker lets it go (o marked
 * for the owner's check when a rule reads the record), else the refusal. */
static enum permit_answer check(const edge *e, session *s, const cs_item *it, op *o)
{
    enum perm_action actions[2] = {PERM_WRITE, PERM_CREATE}; /* a set creates a missing record: both */
    int count = 2;
    if (it->op == CS_ERASE) {
        actions[0] = PERM_DELETE; /* as deepstream: an ERASE needs `delete` */
        count = 1;
    } else if (it->op == CS_DELETE) {
        actions[0] = PERM_DELETE;
        count = 1;
    }
    for (int k = 0; k < count; k++) {
        enum permit_answer a = permit_check(e->permit, s, PERM_RECORD, actions[k], it->name, it->data);
        if (a == PERMIT_DENY || a == PERMIT_ERROR)
            return a;
        if (a == PERMIT_AT_NODE)
            permit_to_owner(s, o);
    }
    return PERMIT_ALLOW;
}

int changesets_submit(const edge *e, session *s, const cs_item *items, size_t n, char **refusal)
{
    char why[640];
    long at = cs_check_shard(items, n, why, sizeof(why));
    if (at >= 0) {
        *refusal = refused(at, strncmp(why, "CROSSSHARD", 10) == 0 ? "CROSS_SHARD" : "INVALID_MESSAGE_DATA", why);
        return -1;
    }
    op *members = xcalloc(n, sizeof(*members));
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const cs_item *it = &items[i];
        op *o = &members[i];
        *o = (op){.kind = it->op == CS_DELETE ? OP_RECORD_DELETE : OP_RECORD_WRITE, .name = sv_of(it->name),
                  .has_version = true, .version = it->version, .path = sv_of(it->path),
                  .has_data = it->data != NULL, .data = sv_of(it->data),
                  .action = it->op == CS_SET ? (it->path ? ACT(CREATEANDPATCH) : ACT(CREATEANDUPDATE))
                            : it->op == CS_ERASE ? ACT(ERASE) : 0};
        if (it->data != NULL && strlen(it->data) > (size_t)e->cfg->record_max_size) {
            snprintf(why, sizeof(why), "operation %zu: its data exceeds record.maxSize", i);
            *refusal = refused((long)i, "RECORD_UPDATE_ERROR", why);
            rc = -1;
            break;
        }
        enum permit_answer a = check(e, s, it, o);
        if (a != PERMIT_ALLOW) {
            snprintf(why, sizeof(why), "operation %zu: %s", i,
                     a == PERMIT_DENY ? "the permissions deny it" : "its permission rule failed");
            *refusal = refused((long)i, a == PERMIT_DENY ? "MESSAGE_DENIED" : "MESSAGE_PERMISSION_ERROR", why);
            rc = -1;
        }
    }
    if (rc == 0) {
        msgpack_sbuffer buf;
        msgpack_sbuffer_init(&buf);
        op_members_encode(&buf, members, (uint32_t)n);
        op o = {.kind = OP_CHANGESET, .name = sv_of(items[0].name), .session = s->id, .has_data = true,
                .data = {buf.data, (uint32_t)buf.size}};
        if (links_submit(e->links, &o, NULL) < 0) {
            *refusal = refused(-1, "MESSAGE_DENIED", "the node owning the records is unavailable");
            rc = -1;
        }
        msgpack_sbuffer_destroy(&buf);
    }
    xfree(members);
    return rc;
}

static void *changesets_create(const edge *e)
{
    changesets *c = xcalloc(1, sizeof(*c));
    c->e = e;
    return c;
}

static void changesets_destroy(void *self)
{
    xfree(self);
}

/* Hands outcome to the session that sent the changeset, if it is still there. */
static int hand_over(changesets *c, uint64_t session_id, const char *outcome)
{
    session *s = sessions_get(c->e->sessions, session_id);
    if (s == NULL || s->sink == NULL || s->sink->changeset == NULL)
        return 0;
    s->sink->changeset(s, outcome);
    return 1;
}

static void changesets_deliver(void *self, const op *o)
{
    char *text = o->has_data ? xstrndup(o->data.ptr, o->data.len) : xstrdup("{}");
    hand_over(self, o->session, text);
    xfree(text);
}

/* The node went down before it answered: nothing is known of the changeset's fate. */
static int changesets_fail(void *self, const op *o)
{
    char *text = refused(-1, "MESSAGE_DENIED", "the node owning the records went away before it answered "
                                               "(the changeset may have been applied)");
    int answered = hand_over(self, o->session, text);
    xfree(text);
    return answered;
}

static void changesets_handle(void *self, session *s, const ProtobufCMessage *m, int action)
{
    (void)self, (void)s, (void)m, (void)action; /* no client topic reaches this row */
}

static void changesets_session_closed(void *self, session *s)
{
    (void)self, (void)s; /* an answer for a session gone finds no session */
}

static void changesets_resync(void *self, int li)
{
    (void)self, (void)li; /* nothing registered at the nodes */
}

const topic_module changesets_module = {
    .name = "changesets",
    .topic = -1, /* eddy's: no client message */
    .message = &record_message__descriptor,
    .deliveries = (const uint32_t[]){OP_CHANGESET_RESULT, 0},
    .requests = (const uint32_t[]){OP_CHANGESET, 0},
    .create = changesets_create,
    .destroy = changesets_destroy,
    .handle = changesets_handle,
    .deliver = changesets_deliver,
    .fail = changesets_fail,
    .session_closed = changesets_session_closed,
    .resync = changesets_resync,
};
