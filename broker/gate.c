/* gate.c - cross-references at the broker. A client message whose permission
 * rules read other records (`_('name')`) waits here, and every later message
 * of its session behind it, while the broker reads those records from their
 * owning nodes (RECORD_READ with GATE_CORR); then it goes on to its module,
 * whose checks (permit.c) find the records read for it. A record rule that
 * reads the record itself (`data`, `oldData`) is evaluated here on the record
 * as read, only to learn which others it reads; they travel with the
 * operation (refs) to the owning node, which decides.
 *
 * A read that fails (the owner is down, or does not answer within
 * cluster.requestTimeout) fails the message's rules that read records
 * (MESSAGE_PERMISSION_ERROR): fail closed. A session holds at most
 * GATE_MAX_PARKED messages (GATE_MAX_BYTES) waiting; one more closes it. */
#include <string.h>

#include "internal.h"
#include "jsonpath.h"
#include "log.h"
#include "mem.h"
#include "util.h"

#define GATE_MAX_PARKED 256
#define GATE_MAX_BYTES (4u << 20)

typedef struct parked {
    struct parked *next;
    int topic;
    size_t len;
    uint8_t bytes[];
} parked;

struct gate_state {
    perm_records *read; /* for the message at the head (NULL: none yet) */
    char **asked;       /* names read now */
    size_t n_asked;
    uint32_t outstanding;
    bool failed;        /* a read failed: the rules that read records fail */
    char *refs;         /* `read` as JSON, for the owner (permit_to_owner) */
    parked *head, *tail;
    size_t count, bytes;
};

static gate_state *state_of(session *s)
{
    if (s->gate == NULL)
        s->gate = xcalloc(1, sizeof(gate_state));
    return s->gate;
}

static void forget_reads(gate_state *g)
{
    perm_records_free(g->read);
    g->read = NULL;
    for (size_t i = 0; i < g->n_asked; i++)
        xfree(g->asked[i]);
    xfree(g->asked);
    g->asked = NULL;
    g->n_asked = 0;
    g->failed = false;
    xfree(g->refs);
    g->refs = NULL;
}

bool gate_busy(const session *s)
{
    return s->gate != NULL && s->gate->head != NULL;
}

/* Copies a message into s's queue (front: the one being handled). False when
 * the queue is full (the session is closed). */
static bool park(session *s, int topic, const uint8_t *bytes, size_t len, bool front)
{
    gate_state *g = state_of(s);
    if (g->count >= GATE_MAX_PARKED || g->bytes + len > GATE_MAX_BYTES) {
        log_warn("permission-backlog-full", "session=%llu waiting=%zu bytes=%zu (closed: messages waiting on "
                 "cross-referenced records are bounded)", (unsigned long long)s->id, g->count, g->bytes);
        session_kill(s, "permission-backlog-full");
        return false;
    }
    parked *p = xmalloc(sizeof(*p) + len);
    p->next = NULL;
    p->topic = topic;
    p->len = len;
    if (len > 0)
        memcpy(p->bytes, bytes, len);
    if (front) {
        p->next = g->head;
        g->head = p;
        if (g->tail == NULL)
            g->tail = p;
    } else {
        if (g->tail != NULL)
            g->tail->next = p;
        else
            g->head = p;
        g->tail = p;
    }
    g->count++;
    g->bytes += len;
    return true;
}

void gate_queue(session *s, int topic, const uint8_t *bytes, size_t len)
{
    (void)park(s, topic, bytes, len, false);
}

/* Asks name's owner for it, once per message. */
static void fetch(const edge *e, session *s, const char *name, size_t len)
{
    gate_state *g = state_of(s);
    for (size_t i = 0; i < g->n_asked; i++)
        if (strlen(g->asked[i]) == len && memcmp(g->asked[i], name, len) == 0)
            return;
    g->asked = xrealloc(g->asked, (g->n_asked + 1) * sizeof(char *));
    g->asked[g->n_asked++] = xstrndup(name, len);
    op o = {.kind = OP_RECORD_READ, .action = RECORD__ACTION__RECORD_READ, .name = {name, (uint32_t)len},
            .session = s->id, .corr = GATE_CORR};
    if (links_submit(e->links, &o, NULL) < 0) {
        g->failed = true; /* its owner is down: the rules fail */
        return;
    }
    g->outstanding++;
}

/* The record's JSON as read for this message: *known false when not read yet. */
static const char *read_json(const gate_state *g, const char *name, size_t *len, bool *known)
{
    return perm_records_get(g != NULL ? g->read : NULL, name, strlen(name), len, known);
}

/* The record a write leaves (for a rule's `data`), from the record as read. */
static char *written(const RecordMessage *m, const char *old, size_t old_len, size_t *len)
{
    int a = m->action;
    bool whole = (a == RECORD__ACTION__RECORD_UPDATE || a == RECORD__ACTION__RECORD_CREATEANDUPDATE) &&
                 (m->path == NULL || m->path[0] == '\0');
    if (whole) {
        *len = m->data ? strlen(m->data) : 0;
        return m->data ? xstrndup(m->data, *len) : NULL;
    }
    if (m->path == NULL)
        return NULL;
    bool erase = a == RECORD__ACTION__RECORD_ERASE || m->data == NULL;
    char *out = NULL;
    const char *why;
    if (jsonpath_apply_max(old ? old : "{}", old ? old_len : 2, m->path, erase ? NULL : m->data,
                           erase ? 0 : strlen(m->data), (size_t)-1 >> 1, &out, len, &why) != 0)
        return NULL;
    return out;
}

/* One check of the message: reads what its rule reads that is not read yet. */
static void look(const edge *e, session *s, enum perm_section section, enum perm_action action, const char *name,
                 const char *data, const RecordMessage *rm)
{
    const permissions *rules = permit_rules(e->permit);
    const char *n = name != NULL ? name : "";
    size_t nlen = strlen(n);
    unsigned needs = permissions_needs(rules, section, action, n, nlen);
    if (!(needs & PERM_NEEDS_RECORDS))
        return;
    gate_state *g = s->gate;
    perm_request req = {.section = section, .action = action, .name = n, .name_len = nlen, .now_ms = wall_ms(),
                        .message_action = s->message_action};
    perm_user u;
    permit_user(s, &u);
    req.user = &u;
    char *after = NULL;
    if (data != NULL) {
        req.data = data;
        req.data_len = strlen(data);
    }
    if (section == PERM_RECORD && (needs & (PERM_NEEDS_DATA | PERM_NEEDS_OLD_DATA))) {
        bool known = false;
        size_t old_len = 0;
        const char *old = read_json(g, n, &old_len, &known);
        if (!known) { /* the record itself first */
            fetch(e, s, n, nlen);
            return;
        }
        req.old_data = old;
        req.old_data_len = old_len;
        req.data = NULL;
        req.data_len = 0;
        size_t after_len = 0;
        if (rm != NULL && action == PERM_WRITE && (after = written(rm, old, old_len, &after_len)) != NULL) {
            req.data = after;
            req.data_len = after_len;
        }
    }
    char need[OP_NAME_MAX + 1];
    if (permissions_check(rules, &req, g != NULL ? g->read : NULL, need, sizeof(need), NULL, 0) ==
        PERM_VERDICT_NEED_RECORD)
        fetch(e, s, need, strlen(need));
    xfree(after);
}

#define RA(x) RECORD__ACTION__RECORD_##x
#define EA(x) EVENT__ACTION__EVENT_##x
#define PA(x) PRESENCE__ACTION__PRESENCE_##x

/* Every check the modules will make for m (as deepstream's RULES_MAP has them). */
static void look_all(const edge *e, session *s, int topic, const ProtobufCMessage *msg, int action)
{
    if (topic == TOPIC__TOPIC_EVENT) {
        const EventMessage *m = (const EventMessage *)msg;
        if (action == EA(SUBSCRIBE)) {
            for (size_t i = 0; i < m->n_names; i++)
                look(e, s, PERM_EVENT, PERM_SUBSCRIBE, m->names[i], NULL, NULL);
            if (m->n_names == 0)
                look(e, s, PERM_EVENT, PERM_SUBSCRIBE, m->name, NULL, NULL);
        } else if (action == EA(EMIT))
            look(e, s, PERM_EVENT, PERM_PUBLISH, m->name, m->data, NULL);
        else if (action == EA(LISTEN))
            look(e, s, PERM_EVENT, PERM_LISTEN, m->name, NULL, NULL);
    } else if (topic == TOPIC__TOPIC_RPC) {
        const RpcMessage *m = (const RpcMessage *)msg;
        if (action == RPC__ACTION__RPC_PROVIDE) {
            for (size_t i = 0; i < m->n_names; i++)
                look(e, s, PERM_RPC, PERM_PROVIDE, m->names[i], NULL, NULL);
            if (m->n_names == 0)
                look(e, s, PERM_RPC, PERM_PROVIDE, m->name, NULL, NULL);
        } else if (action == RPC__ACTION__RPC_REQUEST)
            look(e, s, PERM_RPC, PERM_REQUEST, m->name, m->data, NULL);
    } else if (topic == TOPIC__TOPIC_PRESENCE) {
        const PresenceMessage *m = (const PresenceMessage *)msg;
        if (action == PA(SUBSCRIBE_ALL) || action == PA(QUERY_ALL))
            look(e, s, PERM_PRESENCE, PERM_ALLOW, NULL, NULL, NULL);
        else if (action == PA(SUBSCRIBE) || action == PA(QUERY))
            for (size_t i = 0; i < m->n_names; i++)
                look(e, s, PERM_PRESENCE, PERM_ALLOW, m->names[i], NULL, NULL);
    } else if (topic == TOPIC__TOPIC_RECORD) {
        const RecordMessage *m = (const RecordMessage *)msg;
        char *single[1] = {m->name};
        char **names = m->n_names ? m->names : single;
        size_t n = m->n_names ? m->n_names : (m->name ? 1 : 0);
        switch (action) {
        case RA(SUBSCRIBECREATEANDREAD):
        case RA(SUBSCRIBEANDREAD):
        case RA(SUBSCRIBEANDHEAD):
            for (size_t i = 0; i < n; i++) {
                look(e, s, PERM_RECORD, PERM_READ, names[i], NULL, NULL);
                if (action == RA(SUBSCRIBECREATEANDREAD))
                    look(e, s, PERM_RECORD, PERM_CREATE, names[i], NULL, NULL);
            }
            break;
        case RA(READ):
        case RA(HEAD): look(e, s, PERM_RECORD, PERM_READ, m->name, NULL, NULL); break;
        case RA(CREATEANDUPDATE):
        case RA(CREATEANDPATCH):
            look(e, s, PERM_RECORD, PERM_CREATE, m->name, NULL, NULL);
            look(e, s, PERM_RECORD, PERM_WRITE, m->name, m->data, m);
            break;
        case RA(UPDATE):
        case RA(PATCH): look(e, s, PERM_RECORD, PERM_WRITE, m->name, m->data, m); break;
        case RA(ERASE):
        case RA(DELETE): look(e, s, PERM_RECORD, PERM_DELETE, m->name, NULL, NULL); break;
        case RA(NOTIFY):
            for (size_t i = 0; i < m->n_names; i++)
                look(e, s, PERM_RECORD, PERM_NOTIFY, m->names[i], NULL, NULL);
            break;
        case RA(LISTEN): look(e, s, PERM_RECORD, PERM_LISTEN, m->name, NULL, NULL); break;
        default: break;
        }
    }
}

bool gate_admit(const edge *e, session *s, int topic, const ProtobufCMessage *msg, int action, const uint8_t *bytes,
                size_t len)
{
    if (!permit_active(e->permit) || !(permissions_reads(permit_rules(e->permit)) & PERM_NEEDS_RECORDS))
        return true;
    if (s->gate != NULL && s->gate->failed)
        return true; /* its rules that read records fail (permit_check) */
    look_all(e, s, topic, msg, action);
    if (s->gate == NULL || s->gate->outstanding == 0)
        return true;
    (void)park(s, topic, bytes, len, true);
    return false;
}

const perm_records *gate_read(const session *s, bool *failed)
{
    *failed = s->gate != NULL && s->gate->failed;
    return s->gate != NULL ? s->gate->read : NULL;
}

const char *gate_refs(session *s)
{
    gate_state *g = s->gate;
    if (g == NULL || g->read == NULL)
        return NULL;
    if (g->refs == NULL)
        g->refs = perm_records_json(g->read);
    return g->refs;
}

void gate_done(session *s)
{
    if (s->gate != NULL && s->gate->outstanding == 0)
        forget_reads(s->gate);
}

bool gate_fetched(session *s, strview name, const char *json, size_t json_len, bool ok)
{
    gate_state *g = s->gate;
    if (g == NULL || g->outstanding == 0)
        return false; /* a read for a message already gone (or a stray answer) */
    if (!ok)
        g->failed = true;
    else {
        if (g->read == NULL)
            g->read = perm_records_new();
        perm_records_put(g->read, name.ptr, name.len, json, json_len);
    }
    return --g->outstanding == 0;
}

bool gate_next(session *s, int *topic, uint8_t **bytes, size_t *len)
{
    gate_state *g = s->gate;
    if (g == NULL || g->head == NULL || g->outstanding > 0)
        return false;
    parked *p = g->head;
    g->head = p->next;
    if (g->head == NULL)
        g->tail = NULL;
    g->count--;
    g->bytes -= p->len;
    *topic = p->topic;
    *len = p->len;
    *bytes = xmalloc(p->len ? p->len : 1);
    memcpy(*bytes, p->bytes, p->len);
    xfree(p);
    return true;
}

void gate_session_closed(session *s)
{
    gate_state *g = s->gate;
    if (g == NULL)
        return;
    forget_reads(g);
    while (g->head != NULL) {
        parked *p = g->head;
        g->head = p->next;
        xfree(p);
    }
    xfree(g);
    s->gate = NULL;
}
