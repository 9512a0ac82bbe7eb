/* test_jif.c - the HTTP API's pieces that need no server: deepstream's JSON
 * Interchange Format (broker/jif.c: each operation checked against the
 * schema with deepstream's words, the client message it becomes, the client
 * messages turned back into results, correlation by the operation's index)
 * and the tokens authPath hands out (broker/token.c: a round trip, expiry,
 * a changed byte, another key). The API against a real server, with fetch
 * and websocket clients: tests/e2e/http-api.test.mjs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "internal.h"
#include "jsonspan.h"
#include "mem.h"

/* Parses one operation (JSON text); returns 0/-1 like jif_parse. */
static int parse(const char *text, uint32_t index, jif_op *jo, char *err, size_t len)
{
    jspan doc;
    jspan_init(&doc, 1024);
    assert_int_equal(jspan_parse(&doc, text, strlen(text), 64, 2), JSPAN_OK);
    int rc = jif_parse(&doc, 0, index, jo, err, len);
    jspan_free(&doc);
    return rc;
}

static void expect_refused(const char *text, const char *reason)
{
    jif_op jo;
    char err[512];
    assert_int_equal(parse(text, 0, &jo, err, sizeof(err)), -1);
    assert_string_equal(err, reason);
}

static void test_schema_errors(void **state)
{
    (void)state;
    expect_refused("5", "property '' should be object");
    expect_refused("{\"action\":\"emit\"}", "property 'topic' is required");
    expect_refused("{\"topic\":\"event\",\"action\":\"emit\"}", "property 'eventName' is required for topic 'event'");
    expect_refused("{\"topic\":\"event\",\"action\":\"emit\",\"eventName\":\"\"}",
                   "property '.eventName' should NOT be shorter than 1 characters");
    expect_refused("{\"topic\":\"event\",\"action\":\"emit\",\"eventName\":\"x\",\"extra\":1}",
                   "property 'extra' is not allowed for topic 'event'");
    expect_refused("{\"topic\":\"record\",\"action\":\"write\",\"recordName\":\"r\",\"data\":5}",
                   "property '.data' should be object,array");
    expect_refused("{\"topic\":\"record\",\"action\":\"write\",\"recordName\":\"r\",\"data\":{},\"version\":-2}",
                   "property '.version' should be >= -1 and fit 32 bits");
    expect_refused("{\"topic\":\"record\",\"action\":\"fly\",\"recordName\":\"r\"}",
                   "unknown action 'fly' for topic 'record' (read, head, delete, write, notify)");
    expect_refused("{\"topic\":\"mqtt\",\"action\":\"emit\"}", "unknown topic 'mqtt' (event, rpc, record, list or presence)");
    expect_refused("{\"topic\":\"list\",\"action\":\"write\",\"listName\":\"l\",\"data\":[1]}",
                   "property '.data[0]' should be string");
    expect_refused("{\"topic\":\"presence\",\"action\":\"query\",\"names\":\"bob\"}", "property '.names' should be array");
}

static void test_write_becomes_create_and_patch(void **state)
{
    (void)state;
    jif_op jo;
    char err[256];
    assert_int_equal(parse("{\"topic\":\"record\",\"action\":\"write\",\"recordName\":\"r/1\",\"path\":\"a.b\","
                           "\"data\":[1,{\"x\":null}],\"version\":4}", 7, &jo, err, sizeof(err)), 0);
    assert_int_equal(jo.kind, JIF_WRITE);
    assert_int_equal(jo.topic, TOPIC__TOPIC_RECORD);
    RecordMessage *m = record_message__unpack(NULL, jo.msg_len, jo.msg);
    assert_non_null(m);
    assert_int_equal(m->action, RECORD__ACTION__RECORD_CREATEANDPATCH);
    assert_string_equal(m->name, "r/1");
    assert_string_equal(m->path, "a.b");
    assert_string_equal(m->data, "[1,{\"x\":null}]");
    assert_int_equal(m->version, 4);
    assert_true(m->iswriteack);
    assert_string_equal(m->correlationid, "7");
    record_message__free_unpacked(m, NULL);
    jif_op_clear(&jo);
    /* whole, without a version (or 0): the next one, -1 as deepstream sends it */
    assert_int_equal(parse("{\"topic\":\"list\",\"action\":\"write\",\"listName\":\"l\",\"data\":[\"a\"],\"version\":0}",
                           0, &jo, err, sizeof(err)), 0);
    m = record_message__unpack(NULL, jo.msg_len, jo.msg);
    assert_int_equal(m->action, RECORD__ACTION__RECORD_CREATEANDUPDATE);
    assert_null(m->path);
    assert_int_equal(m->version, -1);
    record_message__free_unpacked(m, NULL);
    jif_op_clear(&jo);
}

static void test_presence_and_rpc_messages(void **state)
{
    (void)state;
    jif_op jo;
    char err[256];
    assert_int_equal(parse("{\"topic\":\"presence\",\"action\":\"query\",\"names\":[\"a\",\"b\"]}", 2, &jo, err, sizeof(err)), 0);
    PresenceMessage *p = presence_message__unpack(NULL, jo.msg_len, jo.msg);
    assert_int_equal(p->action, PRESENCE__ACTION__PRESENCE_QUERY);
    assert_int_equal(p->n_names, 2);
    presence_message__free_unpacked(p, NULL);
    jif_op_clear(&jo);
    assert_int_equal(parse("{\"topic\":\"rpc\",\"action\":\"make\",\"rpcName\":\"add\",\"data\":{\"a\":1.5}}", 3, &jo, err,
                           sizeof(err)), 0);
    RpcMessage *r = rpc_message__unpack(NULL, jo.msg_len, jo.msg);
    assert_int_equal(r->action, RPC__ACTION__RPC_REQUEST);
    assert_string_equal(r->data, "{\"a\":1.5}");
    assert_string_equal(r->correlationid, "3");
    rpc_message__free_unpacked(r, NULL);
    jif_op_clear(&jo);
    /* data goes on as the client wrote it (escapes, number text), without the whitespace between tokens */
    assert_int_equal(parse("{\"topic\":\"event\",\"action\":\"emit\",\"eventName\":\"e\",\"data\": {\"s\" : \"a \\\"b\\\\\\n\\u0001\u00e9\\/\",\n"
                           "\"n\":-12,\"r\":0.10,\"e\":1e21,\"big\":18446744073709551616,\"l\":[ true, false,null,[ ],{ }]}}", 0, &jo, err,
                           sizeof(err)), 0);
    EventMessage *e = event_message__unpack(NULL, jo.msg_len, jo.msg);
    assert_string_equal(e->data, "{\"s\":\"a \\\"b\\\\\\n\\u0001\u00e9\\/\",\"n\":-12,\"r\":0.10,\"e\":1e21,"
                                 "\"big\":18446744073709551616,\"l\":[true,false,null,[],{}]}");
    event_message__free_unpacked(e, NULL);
    jif_op_clear(&jo);
}

/* The result of a record message m for an operation of kind at index. */
static char *answer_record(enum jif_kind kind, uint32_t index, RecordMessage *m)
{
    jif_op jo = {.kind = kind, .index = index};
    size_t len = record_message__get_packed_size(m);
    uint8_t *buf = xmalloc(len + 1);
    record_message__pack(m, buf);
    char *result = NULL;
    int rc = jif_answer(&jo, TOPIC__TOPIC_RECORD, buf, len, &result);
    xfree(buf);
    return rc == 1 ? result : NULL;
}

static void test_results(void **state)
{
    (void)state;
    RecordMessage m = RECORD_MESSAGE__INIT;
    m.has_action = 1;
    m.action = RECORD__ACTION__RECORD_READ_RESPONSE;
    m.name = "r";
    m.has_version = 1;
    m.version = 3;
    m.data = "{\"big\":123456789012345678901234567890}"; /* kept as written, not reparsed */
    char *r = answer_record(JIF_READ, 0, &m);
    assert_string_equal(r, "{\"success\":true,\"version\":3,\"data\":{\"big\":123456789012345678901234567890}}");
    xfree(r);
    /* a conflict: the current version and data */
    m.action = RECORD__ACTION__RECORD_VERSION_EXISTS;
    m.has_iserror = 1;
    m.iserror = 1;
    m.correlationid = "4";
    m.data = "{\"a\":1}";
    assert_null(answer_record(JIF_WRITE, 5, &m)); /* another operation's */
    r = answer_record(JIF_WRITE, 4, &m);
    assert_string_equal(r, "{\"success\":false,\"errorTopic\":\"record\",\"errorEvent\":102,\"error\":\"Record update failed. "
                           "Version 3 exists for record \\\"r\\\".\",\"currentVersion\":3,\"currentData\":{\"a\":1}}");
    xfree(r);
    /* a denial names the action denied */
    RecordMessage d = RECORD_MESSAGE__INIT;
    d.has_action = d.has_originalaction = d.has_iserror = 1;
    d.action = RECORD__ACTION__RECORD_MESSAGE_DENIED;
    d.originalaction = RECORD__ACTION__RECORD_CREATEANDUPDATE;
    d.iserror = 1;
    d.name = "secret";
    r = answer_record(JIF_WRITE, 0, &d);
    assert_string_equal(r, "{\"success\":false,\"errorTopic\":\"record\",\"errorEvent\":115,\"error\":\"Message denied. Action "
                           "\\\"CREATEANDUPDATE\\\" is not permitted.\",\"action\":16}");
    xfree(r);
    /* what an operation does not wait for is not its answer */
    RecordMessage u = RECORD_MESSAGE__INIT;
    u.has_action = 1;
    u.action = RECORD__ACTION__RECORD_UPDATE;
    assert_null(answer_record(JIF_READ, 0, &u));
    char *results[3] = {(char *)JIF_SUCCESS, (char *)"{\"success\":true,\"version\":1}", (char *)JIF_TIMEOUT};
    assert_string_equal(jif_outcome(results, 2), "SUCCESS");
    assert_string_equal(jif_outcome(results, 3), "PARTIAL_SUCCESS");
    assert_string_equal(jif_outcome(results + 2, 1), "FAILURE");
}

static void test_tokens(void **state)
{
    (void)state;
    token_key *k = token_key_new("a secret of thirty-two characters or more");
    token_key *same = token_key_new("a secret of thirty-two characters or more");
    token_key *other = token_key_new("");
    char *t = token_mint(k, "ann", "{\"role\":\"vip\"}", "{\"hi\":1}", 2000);
    assert_non_null(t);
    assert_true(token_is_ours(t));
    char *user, *sd;
    assert_int_equal(token_verify(same, t, 1999, &user, &sd), TOKEN_OK); /* another broker with the secret */
    assert_string_equal(user, "ann");
    assert_string_equal(sd, "{\"role\":\"vip\"}");
    xfree(user);
    xfree(sd);
    assert_int_equal(token_verify(k, t, 2000, &user, &sd), TOKEN_EXPIRED);
    assert_null(user);
    assert_int_equal(token_verify(other, t, 0, &user, &sd), TOKEN_INVALID);
    for (size_t i = strlen("eddy1."); i < strlen(t); i++) { /* any byte changed */
        char saved = t[i];
        t[i] = saved == 'A' ? 'B' : 'A';
        assert_int_not_equal(token_verify(k, t, 0, &user, &sd), TOKEN_OK);
        t[i] = saved;
    }
    assert_int_equal(token_verify(k, "eddy1.", 0, &user, &sd), TOKEN_INVALID);
    assert_int_equal(token_verify(k, "eddy1..", 0, &user, &sd), TOKEN_INVALID);
    assert_false(token_is_ours("eyJhbGciOi.jwt.token"));
    xfree(t);
    token_key_free(k);
    token_key_free(same);
    token_key_free(other);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_errors),
        cmocka_unit_test(test_write_becomes_create_and_patch),
        cmocka_unit_test(test_presence_and_rpc_messages),
        cmocka_unit_test(test_results),
        cmocka_unit_test(test_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
