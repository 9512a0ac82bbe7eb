/* jif.c - deepstream's JSON Interchange Format, the operations of its HTTP
 * API: one operation ({topic, action, ...}) checked against deepstream's
 * schema and turned into the client message a websocket client would send
 * (packed, for topics_handle), and the client messages a session is sent
 * turned back into the operation's result ({success, data, version, users,
 * error, errorTopic, errorEvent, ...}), worded as deepstream words them.
 *
 * A result is JSON text: record data and RPC payloads are copied into it as
 * the node or provider wrote them (no reparse, numbers kept as written).
 * Not for the request around the operations (api.c) nor HTTP (http.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "changeset.h"
#include "internal.h"
#include "jsonpath.h"
#include "jsval.h"
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

/* One row per topic and action deepstream's schema knows. */
typedef struct shape {
    const char *topic, *action;
    enum jif_kind kind;
    field fields[4];
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

/* Checks value v of f (path: whether the write is by path). */
static int check_field(const field *f, json_t *v, const char *topic, char *err, size_t err_len)
{
    switch (f->type) {
    case F_NAME:
        if (!json_is_string(v))
            return why(err, err_len, "property '.%s' should be string%s", f->key, "");
        if (json_string_length(v) == 0)
            return why(err, err_len, "property '.%s' should NOT be shorter than 1 characters%s", f->key, "");
        if (json_string_length(v) > OP_NAME_MAX || memchr(json_string_value(v), '\0', json_string_length(v)))
            return why(err, err_len, "property '.%s' is longer than 4096 bytes or holds a NUL%s", f->key, "");
        return 0;
    case F_PATH:
        if (!json_is_string(v))
            return why(err, err_len, "property '.%s' should be string%s", f->key, "");
        if (json_string_length(v) > OP_NAME_MAX)
            return why(err, err_len, "property '.%s' is longer than 4096 bytes%s", f->key, "");
        return 0;
    case F_VERSION:
        if (!json_is_integer(v))
            return why(err, err_len, "property '.%s' should be integer%s", f->key, "");
        if (json_integer_value(v) < -1 || json_integer_value(v) > INT32_MAX)
            return why(err, err_len, "property '.%s' should be >= -1 and fit 32 bits%s", f->key, "");
        return 0;
    case F_NAMES:
    case F_STRINGS: {
        if (!json_is_array(v))
            return why(err, err_len, "property '.%s' should be array%s", f->key, "");
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) {
            if (!json_is_string(item)) {
                char idx[32];
                snprintf(idx, sizeof(idx), "%zu", i);
                return why(err, err_len, "property '.%s[%s]' should be string", f->key, idx);
            }
            if (f->type == F_NAMES && (json_string_length(item) == 0 || json_string_length(item) > OP_NAME_MAX))
                return why(err, err_len, "property '.%s' holds an empty name or one longer than 4096 bytes%s",
                           f->key, "");
        }
        return 0;
    }
    case F_DOC: /* whole writes: an object or array; by path: anything (checked by the caller) */
    case F_ANY:
        (void)topic;
        return 0;
    }
    return 0;
}

/* A growing text buffer that starts on the caller's stack. */
typedef struct textbuf {
    char *p;
    size_t len, cap;
    bool heap;
} textbuf;

static void put(textbuf *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap * 2;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *p = xmalloc(cap);
        memcpy(p, t->p, t->len);
        if (t->heap)
            xfree(t->p);
        t->p = p;
        t->cap = cap;
        t->heap = true;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void put_escaped(textbuf *t, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    put(t, "\"", 1);
    size_t run = 0; /* bytes copied as they are, in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(t, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', (char)c, 0};
        size_t len = 2;
        switch (c) {
        case '"': case '\\': break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            len = 6;
        }
        put(t, esc, len);
    }
    put(t, s + run, n - run);
    put(t, "\"", 1);
}

/* Writes v as compact JSON as JSON.stringify would (numbers: integers as
 * they are, reals as the shortest text that reads back the same). jansson's
 * own dump sets up a table per call to find cycles a parsed body cannot
 * have; this is the hot path of every operation's data. */
static void write_json(textbuf *t, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        put(t, "{", 1);
        const char *key;
        json_t *item;
        bool first = true;
        json_object_foreach((json_t *)v, key, item) {
            if (!first)
                put(t, ",", 1);
            first = false;
            put_escaped(t, key, strlen(key));
            put(t, ":", 1);
            write_json(t, item);
        }
        put(t, "}", 1);
        break;
    }
    case JSON_ARRAY:
        put(t, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                put(t, ",", 1);
            write_json(t, json_array_get(v, i));
        }
        put(t, "]", 1);
        break;
    case JSON_STRING:
        put_escaped(t, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER: {
        char buf[24];
        json_int_t n = json_integer_value(v);
        unsigned long long u = n < 0 ? 0ULL - (unsigned long long)n : (unsigned long long)n;
        int i = (int)sizeof(buf);
        do
            buf[--i] = (char)('0' + u % 10);
        while ((u /= 10) > 0);
        if (n < 0)
            buf[--i] = '-';
        put(t, buf + i, sizeof(buf) - (size_t)i);
        break;
    }
    case JSON_REAL: {
        char buf[JS_NUMBER_BUF];
        put(t, buf, js_number_format(json_real_value(v), buf));
        break;
    }
    case JSON_TRUE: put(t, "true", 4); break;
    case JSON_FALSE: put(t, "false", 5); break;
    default: put(t, "null", 4); break;
    }
}

/* JSON text of v (NULL for NULL) in t, which starts on buf (cap bytes);
 * text_free releases what it grew into. */
static const char *text_of(const json_t *v, textbuf *t, char *buf, size_t cap)
{
    *t = (textbuf){buf, 0, cap, false};
    buf[0] = '\0';
    if (v == NULL)
        return NULL;
    write_json(t, v);
    return t->p;
}

static void text_free(textbuf *t)
{
    if (t->heap)
        xfree(t->p);
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

/* The names of array v (pointers into v; the array is xmalloc'd). */
static char **names_of(const json_t *v, size_t *n)
{
    *n = json_array_size(v);
    char **names = xcalloc(*n ? *n : 1, sizeof(char *));
    for (size_t i = 0; i < *n; i++)
        names[i] = (char *)json_string_value(json_array_get(v, i));
    return names;
}

static void pack(jif_op *jo, int topic, const ProtobufCMessage *m)
{
    jo->topic = topic;
    jo->msg_len = protobuf_c_message_get_packed_size(m);
    jo->msg = xmalloc(jo->msg_len ? jo->msg_len : 1);
    protobuf_c_message_pack(m, jo->msg);
}

/* Builds the client message of a checked operation. */
static void build(const shape *sh, json_t *item, uint32_t index, jif_op *jo)
{
    char cid[16], small[512];
    textbuf data_buf;
    decimal(index, cid);
    json_t *name = json_object_get(item, sh->fields[0].key);
    char *data_text = (char *)text_of(json_object_get(item, "data"), &data_buf, small, sizeof(small));
    jo->kind = sh->kind;
    jo->index = index;
    switch (sh->kind) {
    case JIF_EMIT: {
        EventMessage m = EVENT_MESSAGE__INIT;
        m.has_action = 1;
        m.action = EVENT__ACTION__EVENT_EMIT;
        m.name = (char *)json_string_value(name);
        m.data = data_text;
        pack(jo, TOPIC__TOPIC_EVENT, &m.base);
        break;
    }
    case JIF_RPC: {
        RpcMessage m = RPC_MESSAGE__INIT;
        m.has_action = 1;
        m.action = RPC__ACTION__RPC_REQUEST;
        m.name = (char *)json_string_value(name);
        m.correlationid = cid;
        m.data = data_text;
        pack(jo, TOPIC__TOPIC_RPC, &m.base);
        break;
    }
    case JIF_PRESENCE: {
        PresenceMessage m = PRESENCE_MESSAGE__INIT;
        m.has_action = 1;
        m.correlationid = cid;
        json_t *names = json_object_get(item, "names");
        char **list = NULL;
        if (names != NULL) {
            m.action = PRESENCE__ACTION__PRESENCE_QUERY;
            list = names_of(names, &m.n_names);
            m.names = list;
        } else
            m.action = PRESENCE__ACTION__PRESENCE_QUERY_ALL;
        pack(jo, TOPIC__TOPIC_PRESENCE, &m.base);
        xfree(list);
        break;
    }
    default: { /* the record topic (lists are records) */
        RecordMessage m = RECORD_MESSAGE__INIT;
        m.has_action = 1;
        char **list = NULL;
        m.name = (char *)json_string_value(name);
        if (sh->kind == JIF_READ)
            m.action = RECORD__ACTION__RECORD_READ;
        else if (sh->kind == JIF_HEAD)
            m.action = RECORD__ACTION__RECORD_HEAD;
        else if (sh->kind == JIF_DELETE)
            m.action = RECORD__ACTION__RECORD_DELETE;
        else if (sh->kind == JIF_NOTIFY) {
            m.action = RECORD__ACTION__RECORD_NOTIFY;
            m.name = NULL;
            list = names_of(name, &m.n_names);
            m.names = list;
            m.correlationid = cid;
        } else { /* write: by path when a path is given (deepstream: a non-empty one) */
            const char *path = json_string_value(json_object_get(item, "path"));
            bool by_path = path != NULL && path[0] != '\0';
            json_int_t version = json_integer_value(json_object_get(item, "version"));
            m.action = by_path ? RECORD__ACTION__RECORD_CREATEANDPATCH : RECORD__ACTION__RECORD_CREATEANDUPDATE;
            m.path = by_path ? (char *)path : NULL;
            m.has_version = 1;
            m.version = version != 0 ? (int32_t)version : -1; /* as deepstream: none (or 0) writes the next version */
            m.has_iswriteack = 1;
            m.iswriteack = 1;
            m.correlationid = cid;
            m.data = data_text;
        }
        pack(jo, TOPIC__TOPIC_RECORD, &m.base);
        xfree(list);
    }
    }
    text_free(&data_buf);
}

int jif_parse(json_t *item, uint32_t index, jif_op *jo, char *err, size_t err_len)
{
    memset(jo, 0, sizeof(*jo));
    if (!json_is_object(item))
        return why(err, err_len, "property '%s' should be object%s", "", "");
    json_t *topic = json_object_get(item, "topic"), *action = json_object_get(item, "action");
    if (topic == NULL)
        return why(err, err_len, "property 'topic' is required%s%s", "", "");
    if (!json_is_string(topic))
        return why(err, err_len, "property '.topic' should be string%s%s", "", "");
    const char *t = json_string_value(topic);
    bool topic_known = false;
    for (size_t i = 0; i < SHAPES && !topic_known; i++)
        topic_known = strcmp(shapes[i].topic, t) == 0;
    if (!topic_known)
        return why(err, err_len, "unknown topic '%.64s' (event, rpc, record, list or presence)%s", t, "");
    if (action == NULL)
        return why(err, err_len, "property 'action' is required for topic '%s'%s", t, "");
    const char *a = json_string_value(action);
    const shape *sh = NULL;
    for (size_t i = 0; a != NULL && i < SHAPES; i++)
        if (strcmp(shapes[i].topic, t) == 0 && strcmp(shapes[i].action, a) == 0)
            sh = &shapes[i];
    if (sh == NULL) {
        char msg[256], list[128];
        actions_of(t, list, sizeof(list));
        snprintf(msg, sizeof(msg), "unknown action '%.64s' for topic '%s' (%s)", a ? a : "(not a string)", t, list);
        return why(err, err_len, "%s%s", msg, "");
    }
    for (const field *f = sh->fields; f < sh->fields + 4 && f->key != NULL; f++) {
        json_t *v = json_object_get(item, f->key);
        if (v == NULL) {
            if (f->required)
                return why(err, err_len, "property '%s' is required for topic '%s'", f->key, t);
            continue;
        }
        if (check_field(f, v, t, err, err_len) != 0)
            return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(item, key, v) {
        bool known = strcmp(key, "topic") == 0 || strcmp(key, "action") == 0;
        for (const field *f = sh->fields; !known && f < sh->fields + 4 && f->key != NULL; f++)
            known = strcmp(f->key, key) == 0;
        if (!known)
            return why(err, err_len, "property '%.64s' is not allowed for topic '%s'", key, t);
    }
    if (sh->kind == JIF_WRITE) { /* a whole document is an object or an array */
        const char *path = json_string_value(json_object_get(item, "path"));
        json_t *data = json_object_get(item, "data");
        if ((path == NULL || path[0] == '\0') && !json_is_object(data) && !json_is_array(data))
            return why(err, err_len, "property '.data' should be object,array%s%s", "", "");
    }
    build(sh, item, index, jo);
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
