/* jif.c - deepstream's JSON Interchange Format, the operations of its HTTP
 * API: one operation ({topic, action, ...}) checked against deepstream's
 * schema and turned into the client message a websocket client would send
 * (packed, for topics_handle), and the client messages a session is sent
 * turned back into the operation's result ({success, data, version, users,
 * error, errorTopic, errorEvent, ...}), worded as deepstream words them.
 *
 * An operation is read from the request's span index (common/jsonspan.h):
 * the fields it needs are found and checked there, names decoded, and its
 * data passed on as the client's JSON text without the whitespace between
 * tokens (no parse and dump: numbers and escapes kept as written, the last of
 * duplicate keys left for the reader to take, as JSON.parse does). A result
 * is JSON text: record data and RPC payloads are copied into it as the node
 * or provider wrote them (no reparse, numbers kept as written).
 * Not for the request around the operations (api.c) nor HTTP (http.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "changeset.h"
#include "internal.h"
#include "jsonpath.h"
#include "jsonspan.h"
#include "mem.h"

const char JIF_SUCCESS[] = "{\"success\":true}";
/* deepstream answers a denied emit apart from every other denial (its HTTP
 * endpoint checks the emit itself): a string errorEvent and errorAction */
const char JIF_EMIT_DENIED[] = "{\"success\":false,\"error\":\"Message denied. Action 'emit' is not permitted.\","
                               "\"errorEvent\":\"MESSAGE_DENIED\",\"errorAction\":\"emit\",\"errorTopic\":\"event\"}";
const char JIF_TIMEOUT[] = "{\"success\":false,\"error\":\"Request exceeded timeout before a response was received.\","
                           "\"errorTopic\":\"connection\",\"errorEvent\":\"HTTP_REQUEST_TIMEOUT\"}";

/* ---------------- parsing an operation ---------------- */

enum field_type { F_NAME, F_ANY, F_DOC, F_PATH, F_VERSION, F_NAMES, F_STRINGS };

typedef struct field {
    const char *key;
    enum field_type type;
    bool required;
} field;

#define FIELDS 4

/* One row per topic and action deepstream's schema knows. */
typedef struct shape {
    const char *topic, *action;
    enum jif_kind kind;
    field fields[FIELDS];
} shape;

static const shape shapes[] = {
    {"event", "emit", JIF_EMIT, {{"eventName", F_NAME, true}, {"data", F_ANY, false}}},
    {"rpc", "make", JIF_RPC, {{"rpcName", F_NAME, true}, {"data", F_ANY, false}}},
    {"record", "read", JIF_READ, {{"recordName", F_NAME, true}}},
    {"record", "head", JIF_HEAD, {{"recordName", F_NAME, true}}},
    {"record", "delete", JIF_DELETE, {{"recordName", F_NAME, true}}},
    {"record", "write", JIF_WRITE,
     {{"recordName", F_NAME, true}, {"data", F_DOC, true}, {"path", F_PATH, false}, {"version", F_VERSION, false}}},
    {"record", "notify", JIF_NOTIFY, {{"recordNames", F_NAMES, true}}},
    {"list", "read", JIF_READ, {{"listName", F_NAME, true}}},
    {"list", "delete", JIF_DELETE, {{"listName", F_NAME, true}}},
    {"list", "write", JIF_WRITE, {{"listName", F_NAME, true}, {"data", F_STRINGS, true}, {"version", F_VERSION, false}}},
    {"presence", "query", JIF_PRESENCE, {{"names", F_NAMES, false}}},
};
#define SHAPES (sizeof(shapes) / sizeof(shapes[0]))

/* The actions of topic, for a message ("read, head, delete, write or notify"). */
static void actions_of(const char *topic, char *buf, size_t len)
{
    buf[0] = '\0';
    for (size_t i = 0; i < SHAPES; i++)
        if (strcmp(shapes[i].topic, topic) == 0)
            snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", buf[0] ? ", " : "", shapes[i].action);
}

static int why(char *buf, size_t len, const char *fmt, const char *a, const char *b)
{
    snprintf(buf, len, fmt, a, b);
    return -1;
}

/* Whether decoded text s (n bytes, NUL bytes possible) is word. */
static bool is_word(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && memcmp(s, word, n) == 0;
}

/* An operation read from the request: the tokens of its fields (JSPAN_NONE:
 * absent) and the strings decoded from them. */
typedef struct op_fields {
    uint32_t v[FIELDS];
    char name[OP_NAME_MAX + 1]; /* fields[0] of a F_NAME: the name */
    char path[OP_NAME_MAX + 1]; /* F_PATH, when given */
    int64_t version;            /* F_VERSION, or 0 */
} op_fields;

/* Checks token v of doc as field f, decoding what build() needs into *o. */
static int check_field(const jspan *doc, const field *f, uint32_t v, op_fields *o, char *err, size_t err_len)
{
    const jspan_tok *t = jspan_at(doc, v);
    switch (f->type) {
    case F_NAME: {
        if (t->type != JSPAN_STRING)
            return why(err, err_len, "property '.%s' should be string%s", f->key, "");
        size_t n = jspan_string(doc, v, o->name, sizeof(o->name));
        if (n == 0)
            return why(err, err_len, "property '.%s' should NOT be shorter than 1 characters%s", f->key, "");
        if (n > OP_NAME_MAX || memchr(o->name, '\0', n))
            return why(err, err_len, "property '.%s' is longer than 4096 bytes or holds a NUL%s", f->key, "");
        return 0;
    }
    case F_PATH: {
        if (t->type != JSPAN_STRING)
            return why(err, err_len, "property '.%s' should be string%s", f->key, "");
        size_t n = jspan_string(doc, v, o->path, sizeof(o->path));
        if (n > OP_NAME_MAX)
            return why(err, err_len, "property '.%s' is longer than 4096 bytes%s", f->key, "");
        if (memchr(o->path, '\0', n))
            return why(err, err_len, "property '.%s' holds a NUL%s", f->key, "");
        return 0;
    }
    case F_VERSION:
        if (!jspan_int(doc, v, &o->version)) {
            if (t->type == JSPAN_NUMBER && memchr(doc->text + t->start, '.', t->len) == NULL &&
                memchr(doc->text + t->start, 'e', t->len) == NULL && memchr(doc->text + t->start, 'E', t->len) == NULL)
                return why(err, err_len, "property '.%s' should be >= -1 and fit 32 bits%s", f->key, "");
            return why(err, err_len, "property '.%s' should be integer%s", f->key, "");
        }
        if (o->version < -1 || o->version > INT32_MAX)
            return why(err, err_len, "property '.%s' should be >= -1 and fit 32 bits%s", f->key, "");
        return 0;
    case F_NAMES:
    case F_STRINGS: {
        if (t->type != JSPAN_ARRAY)
            return why(err, err_len, "property '.%s' should be array%s", f->key, "");
        uint32_t e = jspan_first(doc, v);
        for (uint32_t i = 0; i < t->count; i++, e = jspan_next_element(doc, e)) {
            if (jspan_at(doc, e)->type != JSPAN_STRING) {
                char idx[32];
                snprintf(idx, sizeof(idx), "%u", i);
                return why(err, err_len, "property '.%s[%s]' should be string", f->key, idx);
            }
            if (f->type != F_NAMES)
                continue;
            char one[OP_NAME_MAX + 1];
            size_t n = jspan_string(doc, e, one, sizeof(one));
            if (n == 0 || n > OP_NAME_MAX)
                return why(err, err_len, "property '.%s' holds an empty name or one longer than 4096 bytes%s",
                           f->key, "");
            if (memchr(one, '\0', n))
                return why(err, err_len, "property '.%s' holds a name with a NUL%s", f->key, "");
        }
        return 0;
    }
    case F_DOC: /* whole writes: an object or array; by path: anything (checked by the caller) */
    case F_ANY:
        return 0;
    }
    return 0;
}

/* The decimal text of n into buf (at least 11 bytes). */
static char *decimal(uint32_t n, char *buf)
{
    char tmp[11];
    int i = 0;
    do
        tmp[i++] = (char)('0' + n % 10);
    while ((n /= 10) > 0);
    for (int j = 0; j < i; j++)
        buf[j] = tmp[i - 1 - j];
    buf[i] = '\0';
    return buf;
}

/* The names of array token v (checked strings): a new array of *n pointers
 * into *text, both xmalloc'd and the caller's. */
static char **names_of(const jspan *doc, uint32_t v, size_t *n, char **text)
{
    const jspan_tok *t = jspan_at(doc, v);
    *n = t->count;
    char **names = xcalloc(*n ? *n : 1, sizeof(char *));
    /* each name decodes to at most its token's length - 2, plus a NUL: the array's text holds them all */
    char *p = *text = xmalloc((size_t)t->len + 1);
    uint32_t e = jspan_first(doc, v);
    for (size_t i = 0; i < *n; i++, e = jspan_next_element(doc, e)) {
        names[i] = p;
        p += jspan_string(doc, e, p, jspan_at(doc, e)->len - 1) + 1;
    }
    return names;
}

static void pack(jif_op *jo, int topic, const ProtobufCMessage *m)
{
    jo->topic = topic;
    jo->msg_len = protobuf_c_message_get_packed_size(m);
    jo->msg = xmalloc(jo->msg_len ? jo->msg_len : 1);
    protobuf_c_message_pack(m, jo->msg);
}

/* The row of shape sh's field named key, or -1. */
static int field_row(const shape *sh, const char *key)
{
    for (int i = 0; i < FIELDS && sh->fields[i].key != NULL; i++)
        if (strcmp(sh->fields[i].key, key) == 0)
            return i;
    return -1;
}

/* Builds the client message of a checked operation. */
static void build(const shape *sh, const jspan *doc, const op_fields *o, uint32_t index, jif_op *jo)
{
    char cid[16], small[512];
    decimal(index, cid);
    int data_row = field_row(sh, "data");
    uint32_t data = data_row >= 0 ? o->v[data_row] : JSPAN_NONE;
    char *data_text = NULL; /* the data as the client wrote it, compact */
    if (data != JSPAN_NONE) {
        data_text = jspan_at(doc, data)->len < sizeof(small) ? small : xmalloc((size_t)jspan_at(doc, data)->len + 1);
        jspan_compact(doc, data, data_text);
    }
    char *name = sh->fields[0].type == F_NAME ? (char *)o->name : NULL;
    jo->kind = sh->kind;
    jo->index = index;
    char **list = NULL, *list_text = NULL;
    switch (sh->kind) {
    case JIF_EMIT: {
        EventMessage m = EVENT_MESSAGE__INIT;
        m.has_action = 1;
        m.action = EVENT__ACTION__EVENT_EMIT;
        m.name = name;
        m.data = data_text;
        pack(jo, TOPIC__TOPIC_EVENT, &m.base);
        break;
    }
    case JIF_RPC: {
        RpcMessage m = RPC_MESSAGE__INIT;
        m.has_action = 1;
        m.action = RPC__ACTION__RPC_REQUEST;
        m.name = name;
        m.correlationid = cid;
        m.data = data_text;
        pack(jo, TOPIC__TOPIC_RPC, &m.base);
        break;
    }
    case JIF_PRESENCE: {
        PresenceMessage m = PRESENCE_MESSAGE__INIT;
        m.has_action = 1;
        m.correlationid = cid;
        if (o->v[0] != JSPAN_NONE) {
            m.action = PRESENCE__ACTION__PRESENCE_QUERY;
            list = names_of(doc, o->v[0], &m.n_names, &list_text);
            m.names = list;
        } else
            m.action = PRESENCE__ACTION__PRESENCE_QUERY_ALL;
        pack(jo, TOPIC__TOPIC_PRESENCE, &m.base);
        break;
    }
    default: { /* the record topic (lists are records) */
        RecordMessage m = RECORD_MESSAGE__INIT;
        m.has_action = 1;
        m.name = name;
        if (sh->kind == JIF_READ)
            m.action = RECORD__ACTION__RECORD_READ;
        else if (sh->kind == JIF_HEAD)
            m.action = RECORD__ACTION__RECORD_HEAD;
        else if (sh->kind == JIF_DELETE)
            m.action = RECORD__ACTION__RECORD_DELETE;
        else if (sh->kind == JIF_NOTIFY) {
            m.action = RECORD__ACTION__RECORD_NOTIFY;
            m.name = NULL;
            list = names_of(doc, o->v[0], &m.n_names, &list_text);
            m.names = list;
            m.correlationid = cid;
        } else { /* write: by path when a path is given (deepstream: a non-empty one) */
            int path_row = field_row(sh, "path");
            bool by_path = path_row >= 0 && o->v[path_row] != JSPAN_NONE && o->path[0] != '\0';
            m.action = by_path ? RECORD__ACTION__RECORD_CREATEANDPATCH : RECORD__ACTION__RECORD_CREATEANDUPDATE;
            m.path = by_path ? (char *)o->path : NULL;
            m.has_version = 1;
            m.version = o->version != 0 ? (int32_t)o->version : -1; /* as deepstream: none (or 0) writes the next version */
            m.has_iswriteack = 1;
            m.iswriteack = 1;
            m.correlationid = cid;
            m.data = data_text;
        }
        pack(jo, TOPIC__TOPIC_RECORD, &m.base);
    }
    }
    xfree(list);
    xfree(list_text);
    if (data_text != small)
        xfree(data_text);
}

int jif_parse(const jspan *doc, uint32_t item, uint32_t index, jif_op *jo, char *err, size_t err_len)
{
    memset(jo, 0, sizeof(*jo));
    if (jspan_at(doc, item)->type != JSPAN_OBJECT)
        return why(err, err_len, "property '%s' should be object%s", "", "");
    uint32_t topic = JSPAN_NONE, action = JSPAN_NONE, n_members = jspan_at(doc, item)->count;
    uint32_t k = jspan_first(doc, item);
    for (uint32_t i = 0; i < n_members; i++, k = jspan_next_key(doc, k)) /* the last of a name counts */
        if (jspan_eq(doc, k, "topic", 5))
            topic = k + 1;
        else if (jspan_eq(doc, k, "action", 6))
            action = k + 1;
    if (topic == JSPAN_NONE)
        return why(err, err_len, "property 'topic' is required%s%s", "", "");
    if (jspan_at(doc, topic)->type != JSPAN_STRING)
        return why(err, err_len, "property '.topic' should be string%s%s", "", "");
    char t[72], a[72];
    size_t t_len = jspan_string(doc, topic, t, sizeof(t));
    bool topic_known = false;
    for (size_t i = 0; i < SHAPES && !topic_known; i++)
        topic_known = is_word(t, t_len, shapes[i].topic);
    if (!topic_known)
        return why(err, err_len, "unknown topic '%.64s' (event, rpc, record, list or presence)%s", t, "");
    if (action == JSPAN_NONE)
        return why(err, err_len, "property 'action' is required for topic '%s'%s", t, "");
    bool a_string = jspan_at(doc, action)->type == JSPAN_STRING;
    size_t a_len = a_string ? jspan_string(doc, action, a, sizeof(a)) : 0;
    const shape *sh = NULL;
    for (size_t i = 0; a_string && i < SHAPES; i++)
        if (strcmp(shapes[i].topic, t) == 0 && is_word(a, a_len, shapes[i].action))
            sh = &shapes[i];
    if (sh == NULL) {
        char msg[384], list[128];
        actions_of(t, list, sizeof(list));
        snprintf(msg, sizeof(msg), "unknown action '%.64s' for topic '%s' (%s)", a_string ? a : "(not a string)", t, list);
        return why(err, err_len, "%s%s", msg, "");
    }
    /* one pass over the members: each to its field (the last of a name), the first unknown one kept */
    op_fields o;
    uint32_t unknown = JSPAN_NONE;
    for (int f = 0; f < FIELDS; f++)
        o.v[f] = JSPAN_NONE;
    o.version = 0;
    o.path[0] = '\0';
    k = jspan_first(doc, item);
    for (uint32_t i = 0; i < n_members; i++, k = jspan_next_key(doc, k)) {
        int f = 0;
        while (f < FIELDS && sh->fields[f].key != NULL &&
               !jspan_eq(doc, k, sh->fields[f].key, strlen(sh->fields[f].key)))
            f++;
        if (f < FIELDS && sh->fields[f].key != NULL)
            o.v[f] = k + 1;
        else if (unknown == JSPAN_NONE && !jspan_eq(doc, k, "topic", 5) && !jspan_eq(doc, k, "action", 6))
            unknown = k;
    }
    for (int f = 0; f < FIELDS && sh->fields[f].key != NULL; f++) {
        if (o.v[f] == JSPAN_NONE) {
            if (sh->fields[f].required)
                return why(err, err_len, "property '%s' is required for topic '%s'", sh->fields[f].key, t);
            continue;
        }
        if (check_field(doc, &sh->fields[f], o.v[f], &o, err, err_len) != 0)
            return -1;
    }
    if (unknown != JSPAN_NONE) {
        char key[72];
        jspan_string(doc, unknown, key, sizeof(key));
        return why(err, err_len, "property '%.64s' is not allowed for topic '%s'", key, t);
    }
    if (sh->kind == JIF_WRITE) { /* a whole document is an object or an array */
        int data_row = field_row(sh, "data"), path_row = field_row(sh, "path");
        uint8_t type = jspan_at(doc, o.v[data_row])->type;
        bool by_path = path_row >= 0 && o.v[path_row] != JSPAN_NONE && o.path[0] != '\0';
        if (!by_path && type != JSPAN_OBJECT && type != JSPAN_ARRAY)
            return why(err, err_len, "property '.data' should be object,array%s%s", "", "");
    }
    build(sh, doc, &o, index, jo);
    return 0;
}

void jif_op_clear(jif_op *jo)
{
    if (jo == NULL)
        return;
    xfree(jo->msg);
    jo->msg = NULL;
    jo->msg_len = 0;
    cs_items_free(jo->items, jo->n_items);
    jo->items = NULL;
    jo->n_items = 0;
}

/* ---------------- results ---------------- */

/* What a result needs of any topic's client message. */
typedef struct view {
    int topic, action, orig;
    bool is_error, is_ack;
    const char *name, *data;
    char **names;
    size_t n_names;
    bool has_version;
    int32_t version;
    const char *cid; /* correlationId, or NULL */
} view;

static ProtobufCMessage *unpack_view(int topic, const uint8_t *inner, size_t len, view *v)
{
    memset(v, 0, sizeof(*v));
    v->topic = topic;
    switch (topic) {
    case TOPIC__TOPIC_RECORD: {
        RecordMessage *m = record_message__unpack(NULL, len, inner);
        if (m == NULL)
            return NULL;
        *v = (view){topic, m->action, m->originalaction, m->iserror, m->isack, m->name, m->data, m->names,
                    m->n_names, m->has_version, m->version, m->correlationid};
        return &m->base;
    }
    case TOPIC__TOPIC_RPC: {
        RpcMessage *m = rpc_message__unpack(NULL, len, inner);
        if (m == NULL)
            return NULL;
        *v = (view){topic, m->action, m->originalaction, m->iserror, m->isack, m->name, m->data, m->names,
                    m->n_names, false, 0, m->correlationid};
        return &m->base;
    }
    case TOPIC__TOPIC_EVENT: {
        EventMessage *m = event_message__unpack(NULL, len, inner);
        if (m == NULL)
            return NULL;
        *v = (view){topic, m->action, m->originalaction, m->iserror, m->isack, m->name, m->data, m->names,
                    m->n_names, false, 0, m->correlationid};
        return &m->base;
    }
    case TOPIC__TOPIC_PRESENCE: {
        PresenceMessage *m = presence_message__unpack(NULL, len, inner);
        if (m == NULL)
            return NULL;
        *v = (view){topic, m->action, m->originalaction, m->iserror, m->isack, m->name, m->data, m->names,
                    m->n_names, false, 0, m->correlationid};
        return &m->base;
    }
    case TOPIC__TOPIC_PARSER: {
        ParserMessage *m = parser_message__unpack(NULL, len, inner);
        if (m == NULL)
            return NULL;
        *v = (view){.topic = topic, .action = m->action, .orig = m->originalaction, .is_error = true};
        return &m->base;
    }
    default:
        return NULL;
    }
}

static const struct {
    int topic;
    const char *key; /* deepstream's errorTopic */
    const ProtobufCEnumDescriptor *actions;
    int denied;
} topic_names[] = {
    {TOPIC__TOPIC_RECORD, "record", &record__action__descriptor, RECORD__ACTION__RECORD_MESSAGE_DENIED},
    {TOPIC__TOPIC_RPC, "rpc", &rpc__action__descriptor, RPC__ACTION__RPC_MESSAGE_DENIED},
    {TOPIC__TOPIC_EVENT, "event", &event__action__descriptor, EVENT__ACTION__EVENT_MESSAGE_DENIED},
    {TOPIC__TOPIC_PRESENCE, "presence", &presence__action__descriptor, PRESENCE__ACTION__PRESENCE_MESSAGE_DENIED},
    {TOPIC__TOPIC_PARSER, "parser", &parser__action__descriptor, -1},
};

static int topic_row(int topic)
{
    for (int i = 0; i < (int)(sizeof(topic_names) / sizeof(topic_names[0])); i++)
        if (topic_names[i].topic == topic)
            return i;
    return -1;
}

/* deepstream's name of action on topic ("READ", "MESSAGE_DENIED"): the
 * protocol's enum name without its topic prefix. */
static const char *action_name(int row, int action)
{
    const ProtobufCEnumValue *e = row >= 0 ? protobuf_c_enum_descriptor_get_value(topic_names[row].actions, action) : NULL;
    if (e == NULL)
        return "UNKNOWN";
    const char *us = strchr(e->name, '_');
    return us != NULL ? us + 1 : e->name;
}

/* Writes s as a JSON string. */
static void put_string(FILE *f, const char *s)
{
    json_t *j = s != NULL ? json_string(s) : NULL;
    if (j == NULL) /* NULL, or not UTF-8 */
        fputs("\"\"", f);
    else
        json_dumpf(j, f, JSON_ENCODE_ANY);
    json_decref(j);
}

/* Writes text (JSON as a node or provider wrote it) as a value: as it is
 * when it is JSON, else as a string. */
static void put_raw(FILE *f, const char *text)
{
    if (text == NULL)
        fputs("null", f);
    else if (json_check(text, strlen(text)) != JSON_KIND_INVALID)
        fputs(text, f);
    else
        put_string(f, text);
}

static char *error_result(const view *v)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    int row = topic_row(v->topic);
    fprintf(f, "{\"success\":false,\"errorTopic\":\"%s\",\"errorEvent\":%d,\"error\":",
            row >= 0 ? topic_names[row].key : "unknown", v->action);
    char msg[OP_NAME_MAX + 256];
    const char *name = v->name != NULL ? v->name : "";
    bool current = false;
    if (row >= 0 && v->action == topic_names[row].denied) {
        snprintf(msg, sizeof(msg), "Message denied. Action \"%s\" is not permitted.", action_name(row, v->orig));
        put_string(f, msg);
        fprintf(f, ",\"action\":%d", v->orig);
        if (v->topic == TOPIC__TOPIC_RECORD && v->data != NULL && v->data[0] != '\0') { /* eddy: a validator's */
            fputs(",\"reason\":", f);
            put_string(f, v->data);
        }
    } else if (v->topic == TOPIC__TOPIC_RECORD && (v->action == RECORD__ACTION__RECORD_VERSION_EXISTS ||
                                                   v->action == RECORD__ACTION__RECORD_INVALID_VERSION)) {
        snprintf(msg, sizeof(msg), "Record update failed. Version %d %s for record \"%s\".", (int)v->version,
                 v->action == RECORD__ACTION__RECORD_VERSION_EXISTS ? "exists" : "is not valid", name);
        put_string(f, msg);
        current = true;
    } else if (v->topic == TOPIC__TOPIC_RECORD && v->action == RECORD__ACTION__RECORD_RECORD_NOT_FOUND) {
        snprintf(msg, sizeof(msg), "Record read failed. Record \"%s\" could not be found.", name);
        put_string(f, msg);
    } else if (v->topic == TOPIC__TOPIC_RPC && v->action == RPC__ACTION__RPC_NO_RPC_PROVIDER) {
        snprintf(msg, sizeof(msg), "No provider was available to handle the RPC \"%s\".", name);
        put_string(f, msg);
    } else if (v->topic == TOPIC__TOPIC_RPC && v->action == RPC__ACTION__RPC_RESPONSE_TIMEOUT) {
        put_string(f, "The RPC response timeout was exceeded by the provider.");
    } else {
        snprintf(msg, sizeof(msg), "An error occurred: %s.", action_name(row, v->action));
        put_string(f, msg);
        fputs(",\"errorParams\":", f);
        put_string(f, name);
    }
    if (current) {
        fprintf(f, ",\"currentVersion\":%d,\"currentData\":", (int)v->version);
        put_raw(f, v->data);
    }
    fputc('}', f);
    fclose(f);
    return out;
}

/* {"success":true, ...} with a version and data or users (NULL: left out). */
static char *success_result(const view *v, bool version, const char *data_key, bool names)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    fputs("{\"success\":true", f);
    if (version && v->has_version)
        fprintf(f, ",\"version\":%d", (int)v->version);
    if (data_key != NULL) {
        fprintf(f, ",\"%s\":", data_key);
        if (names) {
            fputc('[', f);
            for (size_t i = 0; i < v->n_names; i++) {
                if (i)
                    fputc(',', f);
                put_string(f, v->names[i]);
            }
            fputc(']', f);
        } else
            put_raw(f, v->data);
    }
    fputc('}', f);
    fclose(f);
    return out;
}

/* open_memstream's buffers come from malloc: the caller frees with xfree. */
static char *owned(char *text)
{
    char *out = xstrdup(text);
    free(text);
    return out;
}

int jif_answer(const jif_op *jo, int topic, const uint8_t *inner, size_t len, char **result)
{
    if (jo->kind == JIF_CHANGESET) /* answered by its CHANGESET_RESULT (api.c), never by a client message */
        return 0;
    view v;
    ProtobufCMessage *m = unpack_view(topic, inner, len, &v);
    if (m == NULL)
        return 0;
    char cid[16];
    decimal(jo->index, cid);
    if (v.cid != NULL && v.cid[0] != '\0' && strcmp(v.cid, cid) != 0) { /* about another operation */
        protobuf_c_message_free_unpacked(m, NULL);
        return 0;
    }
    char *text = NULL;
    if (v.is_error || v.action >= 100 || topic == TOPIC__TOPIC_PARSER) {
        int row = topic_row(topic);
        bool denied = row >= 0 && (v.action == topic_names[row].denied ||
                                   (topic == TOPIC__TOPIC_EVENT && v.action == EVENT__ACTION__EVENT_MESSAGE_PERMISSION_ERROR));
        if (jo->kind == JIF_EMIT && denied) {
            protobuf_c_message_free_unpacked(m, NULL);
            *result = xstrdup(JIF_EMIT_DENIED);
            return 1;
        }
        text = error_result(&v);
    } else
        switch (jo->kind) {
        case JIF_RPC:
            if (topic == TOPIC__TOPIC_RPC && v.action == RPC__ACTION__RPC_RESPONSE)
                text = success_result(&v, false, "data", false);
            else if (topic == TOPIC__TOPIC_RPC && v.action == RPC__ACTION__RPC_REQUEST_ERROR) {
                FILE *f = open_memstream(&text, &(size_t){0});
                fputs("{\"success\":false,\"errorTopic\":\"rpc\",\"error\":", f);
                put_raw(f, v.data);
                fputc('}', f);
                fclose(f);
            }
            break; /* ACCEPT, the request's ack: the answer is still to come */
        case JIF_READ:
            if (v.action == RECORD__ACTION__RECORD_READ_RESPONSE)
                text = success_result(&v, true, "data", false);
            break;
        case JIF_HEAD:
            if (v.action == RECORD__ACTION__RECORD_HEAD_RESPONSE)
                text = success_result(&v, true, NULL, false);
            break;
        case JIF_WRITE: /* eddy also says which version was written */
            if (v.action == RECORD__ACTION__RECORD_WRITE_ACKNOWLEDGEMENT)
                text = success_result(&v, true, NULL, false);
            break;
        case JIF_DELETE:
            if (v.action == RECORD__ACTION__RECORD_DELETE_SUCCESS || v.action == RECORD__ACTION__RECORD_DELETE)
                text = success_result(&v, false, NULL, false);
            break;
        case JIF_NOTIFY:
            if (v.action == RECORD__ACTION__RECORD_NOTIFY && v.is_ack)
                text = success_result(&v, false, NULL, false);
            break;
        case JIF_PRESENCE:
            if (v.action == PRESENCE__ACTION__PRESENCE_QUERY_ALL_RESPONSE)
                text = success_result(&v, false, "users", true);
            else if (v.action == PRESENCE__ACTION__PRESENCE_QUERY_RESPONSE)
                text = success_result(&v, false, "users", false);
            break;
        case JIF_EMIT:
        case JIF_CHANGESET: /* (answered by its CHANGESET_RESULT, never by a client message) */
            break;
        }
    protobuf_c_message_free_unpacked(m, NULL);
    if (text == NULL)
        return 0;
    *result = owned(text);
    return 1;
}

const char *jif_outcome(char *const *results, size_t n)
{
    size_t ok = 0;
    for (size_t i = 0; i < n; i++)
        ok += results[i] != NULL && strncmp(results[i], JIF_SUCCESS, strlen(JIF_SUCCESS) - 1) == 0;
    return ok == n ? "SUCCESS" : ok == 0 ? "FAILURE" : "PARTIAL_SUCCESS";
}
