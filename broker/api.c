/* api.c - deepstream's HTTP API: a POST to postPath ({token | authData,
 * body: [operation, ...]}) or to authPath (authData; answers a token).
 *
 * A request runs as a session without a websocket (session_open_sink): it
 * logs in through the auth list as a websocket client would (or with a token
 * of token.c), and each operation goes through the topic table as the client
 * message deepstream's JIF stands for (jif.c), so permissions, the gate for
 * rules that read records, acknowledged writes and RPC routing are the
 * websocket's own. What the session is sent becomes the operation's result.
 *
 * Operations run one after the other: the next starts once the previous one
 * is answered (an emit once it passed its permissions), so a read after a
 * write in one request sees it. The request answers when the last operation
 * has, or at requestTimeout with what is still unanswered failed. Bounded:
 * body size (http.c), operations per request, requests in flight per broker,
 * bytes of results per request (the operations left then do not run).
 *
 * A body is read once, by the JSON dialect's scanner, into a span index
 * (common/jsonspan.h) the api keeps from one request to the next: the
 * checks, the operations (jif.c) and a changeset's items (common/changeset.c)
 * read their fields from it; nothing is built per value.
 *
 * Everything here runs on the service thread; nothing waits. Not for HTTP
 * itself (http.c) nor the operations' format (jif.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "broker.h"
#include "changeset.h"
#include "internal.h"
#include "jsonspan.h"
#include "log.h"
#include "mem.h"
#include "util.h"

#define MAX_RESULT_BYTES (64u << 20) /* results of one request; the operations after are not run */
/* A body is read once into a span index (common/jsonspan.h), reused from one
 * request to the next: no allocation per value, no tree. */
#define BODY_MAX_DEPTH 2048       /* nesting, as deep as jansson read bodies before */
#define BODY_INDEX_DEPTH 4        /* request, body, operation, field, a field's elements */
#define BODY_MAX_TOKENS (1u << 20) /* values of one body with a token: 20 MiB of index at most */
#define BODY_KEEP_TOKENS (1u << 14) /* an index grown past this is freed after its request */

struct api {
    const eddy_config *cfg;
    sessions *set;
    topics *topics;
    auth *auth;
    const edge *edge;
    token_key *key;
    jspan body;                /* the index of the body being read (parse_body) */
    struct lws_context *ctx;
    api_request *ready;        /* requests whose operation was answered: go on at the next turn */
    bool ready_scheduled;
    lws_sorted_usec_list_t ready_timer;
    uint32_t in_flight;
    api_request *all;          /* every request being answered */
    /* counters */
    uint64_t outcomes[3];      /* SUCCESS, PARTIAL_SUCCESS, FAILURE */
    uint64_t refused_busy, refused_auth, bad_requests, timeouts, tokens_minted, tokens_refused;
    uint64_t ops_ok[JIF_CHANGESET + 1], ops_failed[JIF_CHANGESET + 1];
};

struct api_request {
    session s;               /* the request's session (s.sink_ctx is the request) */
    api *a;
    http_conn *conn;         /* NULL once answered or gone */
    bool auth_only;          /* authPath: the answer is a token */
    bool logged_in;
    char *client_data;       /* authPath: the login's clientData (JSON text) */
    char *token;             /* authPath: a webhook's token */
    jif_op *ops;
    char **results;
    uint32_t n_ops, next, current;
    size_t result_bytes;
    bool waiting;            /* ops[current] waits for its answer */
    bool running;            /* run() is on the stack */
    bool queued;             /* on the ready list */
    api_request *next_ready;
    api_request *all_prev, *all_next; /* every request of the api */
    lws_sorted_usec_list_t deadline;
};

static const char *const kind_names[JIF_CHANGESET + 1] = {"emit", "rpc", "read", "head", "write", "delete",
                                                            "notify", "presence", "changeset"};

/* ---------------- the end of a request ---------------- */

static void unqueue(api_request *r)
{
    if (!r->queued)
        return;
    for (api_request **pp = &r->a->ready; *pp != NULL; pp = &(*pp)->next_ready)
        if (*pp == r) {
            *pp = r->next_ready;
            break;
        }
    r->queued = false;
}

/* Frees r and its session (its topics let go of it first). */
static void request_free(api_request *r)
{
    api *a = r->a;
    lws_sul_cancel(&r->deadline);
    unqueue(r);
    if (r->all_prev != NULL)
        r->all_prev->all_next = r->all_next;
    else
        a->all = r->all_next;
    if (r->all_next != NULL)
        r->all_next->all_prev = r->all_prev;
    topics_session_closed(a->topics, &r->s);
    session_closed(&r->s);
    for (uint32_t i = 0; i < r->n_ops; i++) {
        jif_op_clear(&r->ops[i]);
        if (r->results[i] != JIF_SUCCESS) /* the static one is shared */
            xfree(r->results[i]);
    }
    xfree(r->ops);
    xfree(r->results);
    xfree(r->client_data);
    xfree(r->token);
    a->in_flight--;
    xfree(r);
}

/* Answers the client with text (status 4xx/5xx) and ends r. */
static void fail_request(api_request *r, int status, const char *text, const char *retry_after)
{
    http_answer_text(r->conn, status, text, retry_after);
    r->conn = NULL;
    request_free(r);
}

/* Every operation has its result: {"result": ..., "body": [...]}. */
static void respond(api_request *r)
{
    api *a = r->a;
    const char *outcome = jif_outcome(r->results, r->n_ops);
    a->outcomes[outcome[0] == 'S' ? 0 : outcome[0] == 'P' ? 1 : 2]++;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    fprintf(f, "{\"result\":\"%s\",\"body\":[", outcome);
    for (uint32_t i = 0; i < r->n_ops; i++) {
        fputs(i ? "," : "", f);
        fputs(r->results[i], f);
    }
    fputs("]}\r\n\r\n", f); /* as deepstream ends its answers */
    fclose(f);
    http_answer(r->conn, 200, "application/json; charset=utf-8", text, len, NULL);
    free(text); /* open_memstream's buffer comes from malloc */
    r->conn = NULL;
    request_free(r);
}

/* ---------------- running the operations ---------------- */

/* A changeset's result in the JIF answer (xmalloc'd), from its outcome
 * (node/changeset.c's JSON): {"success":true,"results":[...]}, or
 * {"success":false,"error":reason,"errorTopic":"record","errorEvent":error,
 * "failed":i,"results":[...]}. */
static char *changeset_result(const char *outcome)
{
    json_t *in = json_loads(outcome, 0, NULL);
    bool ok = json_is_true(json_object_get(in, "ok"));
    json_t *results = json_object_get(in, "results");
    json_t *out = json_pack("{s:b}", "success", ok);
    if (!ok) {
        const char *reason = json_string_value(json_object_get(in, "reason"));
        const char *error = json_string_value(json_object_get(in, "error"));
        json_object_set_new(out, "error", json_string(reason ? reason : "the changeset was refused"));
        json_object_set_new(out, "errorTopic", json_string("record"));
        json_object_set_new(out, "errorEvent", json_string(error ? error : "UNKNOWN"));
        json_t *failed = json_object_get(in, "failed");
        if (json_is_integer(failed))
            json_object_set(out, "failed", failed);
    }
    json_object_set(out, "results", json_is_array(results) ? results : json_array());
    char *text = json_dumps(out, JSON_COMPACT);
    char *copy = xstrdup(text ? text : "{\"success\":false}");
    free(text); /* jansson's */
    json_decref(out);
    json_decref(in);
    return copy;
}

static void finish_op(api_request *r, char *result)
{
    uint32_t i = r->current;
    r->results[i] = result;
    r->result_bytes += strlen(result);
    r->waiting = false;
    bool ok = result == JIF_SUCCESS || strncmp(result, JIF_SUCCESS, strlen(JIF_SUCCESS) - 1) == 0;
    (ok ? r->a->ops_ok : r->a->ops_failed)[r->ops[i].kind]++;
}

static void run(api_request *r);

static void ready_due(lws_sorted_usec_list_t *sul)
{
    api *a = lws_container_of(sul, api, ready_timer);
    a->ready_scheduled = false;
    api_request *list = a->ready;
    a->ready = NULL;
    while (list != NULL) {
        api_request *r = list;
        list = r->next_ready;
        r->queued = false;
        run(r);
    }
}

/* r goes on at the start of the next loop turn (not inside the module that answered it). */
static void go_on_later(api_request *r)
{
    api *a = r->a;
    if (r->queued || r->running)
        return;
    r->queued = true;
    r->next_ready = a->ready;
    a->ready = r;
    if (!a->ready_scheduled && a->ctx != NULL) {
        a->ready_scheduled = true;
        lws_sul_schedule(a->ctx, 0, &a->ready_timer, ready_due, 0);
    }
}

/* Starts operations until one waits for its answer; answers the client once all have theirs. */
static void run(api_request *r)
{
    if (r->running || !r->logged_in)
        return;
    r->running = true;
    while (!r->waiting && r->next < r->n_ops) {
        uint32_t i = r->current = r->next++;
        if (r->result_bytes > MAX_RESULT_BYTES) {
            r->waiting = true;
            finish_op(r, xstrdup("{\"success\":false,\"errorTopic\":\"connection\",\"errorEvent\":\"RESULT_TOO_LARGE\","
                                 "\"error\":\"Not run: the results before it exceed 64 MiB.\"}"));
            continue;
        }
        jif_op *o = &r->ops[i];
        r->waiting = true;
        if (o->kind == JIF_CHANGESET) { /* eddy's: one operation for the node, no client message */
            char *refusal;
            if (changesets_submit(r->a->edge, &r->s, o->items, o->n_items, &refusal) != 0) {
                finish_op(r, changeset_result(refusal));
                xfree(refusal);
            }
            continue;
        }
        topics_handle(r->a->topics, &r->s, o->topic, o->msg, o->msg_len);
        /* an emit is done once it passed its permissions, unless it waits on records they read */
        if (r->waiting && o->kind == JIF_EMIT && !gate_busy(&r->s))
            finish_op(r, (char *)JIF_SUCCESS);
    }
    r->running = false;
    if (!r->waiting && r->next == r->n_ops)
        respond(r);
}

/* ---------------- the session's hooks ---------------- */

static void sink_changeset(session *s, const char *outcome)
{
    api_request *r = s->sink_ctx;
    if (!r->waiting || r->ops[r->current].kind != JIF_CHANGESET)
        return;
    finish_op(r, changeset_result(outcome));
    go_on_later(r);
}

static void sink_frame(session *s, frame *f)
{
    api_request *r = s->sink_ctx;
    if (!r->waiting || !r->logged_in)
        return;
    Message *m = frame_unpack(frame_payload(f), f->len);
    if (m == NULL)
        return;
    char *result;
    if (m->has_topic && m->has_message &&
        jif_answer(&r->ops[r->current], m->topic, m->message.data, m->message.len, &result)) {
        finish_op(r, result);
        go_on_later(r);
    }
    message__free_unpacked(m, NULL);
}

static void sink_resumed(session *s)
{
    api_request *r = s->sink_ctx;
    if (r->waiting && r->ops[r->current].kind == JIF_EMIT && !gate_busy(s)) {
        finish_op(r, (char *)JIF_SUCCESS);
        go_on_later(r);
    }
}

/* authPath's answer: {"token": ..., "clientData": ...}. */
static void answer_token(api_request *r)
{
    api *a = r->a;
    char *token = r->token;
    if (token == NULL) {
        token = token_mint(a->key, r->s.user, r->s.server_data, r->client_data, wall_ms() + a->cfg->http_token_ttl_ms);
        a->tokens_minted++;
    } else
        r->token = NULL;
    json_t *body = json_pack("{s:s}", "token", token ? token : "");
    json_t *cd = r->client_data ? json_loads(r->client_data, JSON_DECODE_ANY, NULL) : NULL;
    if (cd != NULL)
        json_object_set_new(body, "clientData", cd);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    xfree(token);
    size_t len = text ? strlen(text) : 0;
    http_answer(r->conn, 200, "application/json; charset=utf-8", text ? text : "", len, NULL);
    free(text);
    r->conn = NULL;
    request_free(r);
}

static void sink_checked(session *s, const auth_outcome *o)
{
    api_request *r = s->sink_ctx;
    api *a = r->a;
    if (o->verdict != AUTH_ACCEPT) {
        if (o->reason == AUTH_REASON_BUSY) {
            a->refused_busy++;
            fail_request(r, 503, "Server busy: too many logins being checked, try again.", "1");
            return;
        }
        a->refused_auth++;
        log_info("http-login-failed", "reason=\"%s\"", o->reason ? o->reason : "refused");
        fail_request(r, 401, r->auth_only ? "Invalid authentication data." : "Unsuccessful authentication attempt.",
                     NULL);
        return;
    }
    session_login(s, o->user_id, o->server_data);
    r->logged_in = true;
    if (r->auth_only) {
        r->client_data = o->client_data ? xstrdup(o->client_data) : NULL;
        r->token = o->token ? xstrdup(o->token) : NULL;
        answer_token(r); /* frees r: nothing may touch it after */
        return;
    }
    go_on_later(r);
}

static const session_sink api_sink = {.frame = sink_frame, .checked = sink_checked, .resumed = sink_resumed,
                                     .changeset = sink_changeset};

/* ---------------- a new request ---------------- */

static void request_expired(lws_sorted_usec_list_t *sul)
{
    api_request *r = lws_container_of(sul, api_request, deadline);
    api *a = r->a;
    a->timeouts++;
    if (!r->logged_in) {
        log_warn("http-request-timeout", "phase=login timeout_ms=%lld", (long long)a->cfg->http_request_timeout_ms);
        fail_request(r, 401, "Unsuccessful authentication attempt: the login was not checked in time.", NULL);
        return;
    }
    uint32_t unanswered = 0;
    for (uint32_t i = 0; i < r->n_ops; i++)
        if (r->results[i] == NULL) {
            r->results[i] = xstrdup(JIF_TIMEOUT);
            a->ops_failed[r->ops[i].kind]++;
            unanswered++;
        }
    log_warn("http-request-timeout", "operations=%u unanswered=%u timeout_ms=%lld", r->n_ops, unanswered,
             (long long)a->cfg->http_request_timeout_ms);
    respond(r);
    lws_cancel_service(a->ctx); /* a timer does not wake the loop by itself */
}

/* The parts of a POST to postPath deepstream checks before its operations;
 * on failure the 400's text is in why. */
static bool check_request(const eddy_config *cfg, const jspan *doc, char *why, size_t len)
{
    bool object = jspan_at(doc, 0)->type == JSPAN_OBJECT;
    uint32_t body = object ? jspan_get(doc, 0, "body") : JSPAN_NONE;
    if (body == JSPAN_NONE || jspan_at(doc, body)->type != JSPAN_ARRAY || jspan_at(doc, body)->count == 0) {
        snprintf(why, len, "Invalid message: the \"body\" parameter must %s",
                 body != JSPAN_NONE ? "be a non-empty array of Objects." : "exist.");
        return false;
    }
    uint32_t n = jspan_at(doc, body)->count;
    if (n > (uint64_t)cfg->http_max_operations) {
        snprintf(why, len, "Invalid message: the \"body\" parameter holds %u operations; at most %lld are allowed "
                 "(http.maxOperations).", n, (long long)cfg->http_max_operations);
        return false;
    }
    uint32_t auth_data = jspan_get(doc, 0, "authData"), token = jspan_get(doc, 0, "token");
    if (auth_data != JSPAN_NONE) {
        if (!cfg->http_allow_auth_data) {
            snprintf(why, len, "Authentication using authData is disabled. Try using a token instead.");
            return false;
        }
        if (jspan_at(doc, auth_data)->type != JSPAN_OBJECT) {
            snprintf(why, len, "Invalid message: the \"authData\" parameter must be an object");
            return false;
        }
    } else if (token != JSPAN_NONE && (jspan_at(doc, token)->type != JSPAN_STRING || jspan_at(doc, token)->len == 2)) {
        snprintf(why, len, "Invalid message: the \"token\" parameter must be a non-empty string");
        return false;
    }
    return true;
}

/* A body read and checked: its operations, and who sends them. */
typedef struct parsed {
    jif_op *ops;
    uint32_t n;
    char *token;     /* an eddy token (token.c), or NULL */
    char *login;     /* else the auth list's authData as JSON text */
} parsed;

static void parsed_clear(parsed *p)
{
    for (uint32_t i = 0; i < p->n; i++)
        jif_op_clear(&p->ops[i]);
    xfree(p->ops);
    xfree(p->token);
    xfree(p->login);
    memset(p, 0, sizeof(*p));
}

/* {"topic":"record","action":"changeset",...}: eddy's extension of JIF. */
static bool is_changeset(const jspan *doc, uint32_t item)
{
    uint32_t topic = jspan_get(doc, item, "topic"), action = jspan_get(doc, item, "action");
    return topic != JSPAN_NONE && action != JSPAN_NONE && jspan_eq(doc, topic, "record", 6) &&
           jspan_eq(doc, action, "changeset", 9);
}

/* A changeset operation: {"topic":"record","action":"changeset","operations":[...]}
 * (common/changeset.h's form, at most record.maxChangesetOperations), token
 * item of doc; its operations are read from their text by cs_parse. */
static int parse_changeset(const eddy_config *cfg, const jspan *doc, uint32_t item, uint32_t index, jif_op *jo,
                           char *err, size_t len)
{
    uint32_t k = jspan_first(doc, item);
    for (uint32_t i = 0; i < jspan_at(doc, item)->count; i++, k = jspan_next_key(doc, k)) {
        if (!jspan_eq(doc, k, "topic", 5) && !jspan_eq(doc, k, "action", 6) && !jspan_eq(doc, k, "operations", 10)) {
            char key[72];
            jspan_string(doc, k, key, sizeof(key));
            snprintf(err, len, "unknown property '%.64s' for action 'changeset'", key);
            return -1;
        }
    }
    uint32_t ops = jspan_get(doc, item, "operations");
    if (ops == JSPAN_NONE) {
        snprintf(err, len, "property 'operations' is required for action 'changeset'");
        return -1;
    }
    char why[512];
    const jspan_tok *t = jspan_at(doc, ops);
    if (cs_parse(doc->text + t->start, t->len, (size_t)cfg->max_changeset_ops, OP_NAME_MAX, &jo->items, &jo->n_items,
                 why, sizeof(why)) != 0) {
        snprintf(err, len, "%s", why);
        return -1;
    }
    jo->kind = JIF_CHANGESET;
    jo->index = index;
    jo->topic = TOPIC__TOPIC_RECORD;
    return 0;
}

/* Who sends the operations of a checked body: p->token (an eddy token), or
 * p->login, the auth list's JSON text (authData, deepstream's {token}, or {}). */
static void sender(const jspan *doc, bool auth_only, parsed *p)
{
    uint32_t auth_data = auth_only ? 0 : jspan_get(doc, 0, "authData");
    uint32_t token = auth_only ? JSPAN_NONE : jspan_get(doc, 0, "token");
    if (auth_data != JSPAN_NONE) {
        p->login = jspan_text(doc, auth_data);
        return;
    }
    if (token == JSPAN_NONE || jspan_at(doc, token)->type != JSPAN_STRING) {
        p->login = xstrdup("{}");
        return;
    }
    /* a string decodes to at most its text's length, less the quotes */
    size_t cap = jspan_at(doc, token)->len - 1;
    char *text = xmalloc(cap);
    size_t n = jspan_string(doc, token, text, cap);
    if (memchr(text, '\0', n) == NULL && token_is_ours(text)) {
        p->token = text;
        return;
    }
    json_t *t = json_pack("{s:s%}", "token", text, n); /* deepstream's way: {token} to the auth list */
    char *dumped = t != NULL ? json_dumps(t, JSON_COMPACT) : NULL;
    p->login = xstrdup(dumped != NULL ? dumped : "{}");
    free(dumped); /* jansson's */
    json_decref(t);
    xfree(text);
}

/* Reads the body through a's span index (nothing of it outlives this call).
 * Returns 0, or -1 with the 400's text in why. */
static int parse_body(api *a, bool auth_only, const char *body, size_t len, parsed *p, char *why, size_t why_len)
{
    memset(p, 0, sizeof(*p));
    jspan *doc = &a->body;
    if (len == 0) { /* no body at all reads as {} (as deepstream's body parser has it) */
        body = "{}";
        len = 2;
    }
    int rc = -1;
    if (jspan_parse(doc, body, len, BODY_MAX_DEPTH, BODY_INDEX_DEPTH) != JSPAN_OK) {
        char reason[160];
        jspan_describe(doc, reason, sizeof(reason));
        snprintf(why, why_len, "Failed to parse body of request: %s", reason);
    } else if (auth_only && jspan_at(doc, 0)->type != JSPAN_OBJECT)
        snprintf(why, why_len, "Invalid message: the authentication data must be an object");
    else if (!auth_only && !check_request(a->cfg, doc, why, why_len))
        ;
    else {
        uint32_t items = auth_only ? JSPAN_NONE : jspan_get(doc, 0, "body");
        p->n = items != JSPAN_NONE ? jspan_at(doc, items)->count : 0;
        p->ops = xcalloc(p->n ? p->n : 1, sizeof(*p->ops));
        rc = 0;
        uint32_t item = items != JSPAN_NONE ? jspan_first(doc, items) : JSPAN_NONE;
        for (uint32_t i = 0; i < p->n && rc == 0; i++, item = jspan_next_element(doc, item)) {
            char reason[640];
            bool cs = is_changeset(doc, item); /* eddy's extension */
            if ((cs ? parse_changeset(a->cfg, doc, item, i, &p->ops[i], reason, sizeof(reason))
                    : jif_parse(doc, item, i, &p->ops[i], reason, sizeof(reason))) != 0) {
                snprintf(why, why_len, "Failed to parse JIF object at index %u. Reason: %s", i, reason);
                rc = -1;
            }
        }
        if (rc == 0)
            sender(doc, auth_only, p);
    }
    if (doc->cap > BODY_KEEP_TOKENS)
        jspan_free(doc);
    if (rc != 0)
        parsed_clear(p);
    return rc;
}

api_request *api_post(api *a, http_conn *c, struct lws *wsi, bool auth_only, const char *body, size_t len)
{
    const eddy_config *cfg = a->cfg;
    char why[1024];
    parsed p;
    if (parse_body(a, auth_only, body, len, &p, why, sizeof(why)) != 0) {
        a->bad_requests++;
        http_answer_text(c, 400, why, NULL);
        return NULL;
    }
    if (a->in_flight >= (uint32_t)cfg->http_max_in_flight) {
        parsed_clear(&p);
        if (a->refused_busy++ % 1000 == 0)
            log_warn("http-busy", "in_flight=%u refused_total=%llu", a->in_flight,
                     (unsigned long long)a->refused_busy);
        http_answer_text(c, 503, "Server busy: too many HTTP requests in flight (http.maxRequestsInFlight), try again.",
                         "1");
        return NULL;
    }
    api_request *r = xcalloc(1, sizeof(*r));
    r->a = a;
    r->conn = c;
    r->auth_only = auth_only;
    r->ops = p.ops;
    r->n_ops = p.n;
    r->results = xcalloc(p.n ? p.n : 1, sizeof(char *));
    p.ops = NULL;
    p.n = 0;
    a->in_flight++;
    r->all_next = a->all;
    if (a->all != NULL)
        a->all->all_prev = r;
    a->all = r;
    session_open_sink(a->set, &r->s, &api_sink, r);
    lws_sul_schedule(a->ctx, 0, &r->deadline, request_expired, (lws_usec_t)cfg->http_request_timeout_ms * 1000);
    uint64_t id = r->s.id;
    if (p.token != NULL) { /* an eddy token: no auth list */
        char *user, *server_data;
        int rc = token_verify(a->key, p.token, wall_ms(), &user, &server_data);
        parsed_clear(&p);
        if (rc != TOKEN_OK) {
            a->tokens_refused++;
            fail_request(r, 401, rc == TOKEN_EXPIRED ? "Unsuccessful authentication attempt: the token has expired."
                                                     : "Unsuccessful authentication attempt.", NULL);
            return NULL;
        }
        session_login(&r->s, user, server_data);
        r->logged_in = true;
        xfree(user);
        xfree(server_data);
        run(r); /* may answer and free r */
        return sessions_get(a->set, id) != NULL ? r : NULL;
    }
    if (auth_wants_connection_data(a->auth))
        r->s.conn_data = loop_handshake_data(wsi);
    auth_request(a->auth, &r->s, p.login); /* may answer at once (auth none), and free r */
    parsed_clear(&p);
    return sessions_get(a->set, id) != NULL ? r : NULL;
}

void api_gone(api_request *r)
{
    r->conn = NULL;
    request_free(r);
}

/* ---------------- lifecycle ---------------- */

api *api_new(const eddy_config *cfg, sessions *set, topics *t, auth *au, const edge *e)
{
    api *a = xcalloc(1, sizeof(*a));
    a->edge = e;
    a->cfg = cfg;
    a->set = set;
    a->topics = t;
    a->auth = au;
    a->key = token_key_new(cfg->http_token_secret);
    jspan_init(&a->body, BODY_MAX_TOKENS);
    return a;
}

void api_free(api *a)
{
    if (a == NULL)
        return;
    token_key_free(a->key);
    jspan_free(&a->body);
    xfree(a);
}

void api_start(api *a, struct lws_context *ctx)
{
    a->ctx = ctx;
    if (a->cfg->http_enabled)
        log_info("http-api", "post=%s auth=%s tokens=%s max_operations=%lld max_in_flight=%lld",
                 a->cfg->http_post_path, a->cfg->http_enable_auth_endpoint ? a->cfg->http_auth_path : "off",
                 a->cfg->http_token_secret[0] ? "shared-secret" : "this-process-only",
                 (long long)a->cfg->http_max_operations, (long long)a->cfg->http_max_in_flight);
}

void api_stop(api *a)
{
    for (api_request *r = a->all; r != NULL; r = r->all_next) /* their connections close after the timer lists go */
        lws_sul_cancel(&r->deadline);
    lws_sul_cancel(&a->ready_timer);
    a->ready_scheduled = false;
    a->ctx = NULL;
}

void api_metrics(const api *a, FILE *f)
{
    static const char *const outcome[3] = {"SUCCESS", "PARTIAL_SUCCESS", "FAILURE"};
    fprintf(f, "# TYPE eddy_http_api_requests_total counter\n");
    for (int i = 0; i < 3; i++)
        fprintf(f, "eddy_http_api_requests_total{result=\"%s\"} %llu\n", outcome[i], (unsigned long long)a->outcomes[i]);
    fprintf(f, "eddy_http_api_requests_total{result=\"bad_request\"} %llu\n", (unsigned long long)a->bad_requests);
    fprintf(f, "eddy_http_api_requests_total{result=\"unauthenticated\"} %llu\n", (unsigned long long)a->refused_auth);
    fprintf(f, "eddy_http_api_requests_total{result=\"busy\"} %llu\n", (unsigned long long)a->refused_busy);
    fprintf(f, "# TYPE eddy_http_api_operations_total counter\n");
    for (int k = 0; k <= JIF_CHANGESET; k++) {
        fprintf(f, "eddy_http_api_operations_total{operation=\"%s\",success=\"true\"} %llu\n", kind_names[k],
                (unsigned long long)a->ops_ok[k]);
        fprintf(f, "eddy_http_api_operations_total{operation=\"%s\",success=\"false\"} %llu\n", kind_names[k],
                (unsigned long long)a->ops_failed[k]);
    }
    fprintf(f, "# TYPE eddy_http_api_timeouts_total counter\neddy_http_api_timeouts_total %llu\n",
            (unsigned long long)a->timeouts);
    fprintf(f, "# TYPE eddy_http_api_in_flight gauge\neddy_http_api_in_flight %u\n", a->in_flight);
    fprintf(f, "# TYPE eddy_http_api_tokens_total counter\n");
    fprintf(f, "eddy_http_api_tokens_total{event=\"minted\"} %llu\n", (unsigned long long)a->tokens_minted);
    fprintf(f, "eddy_http_api_tokens_total{event=\"refused\"} %llu\n", (unsigned long long)a->tokens_refused);
}
