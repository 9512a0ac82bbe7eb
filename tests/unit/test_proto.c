/* test_proto.c - the client protocol codec: frames the broker encodes decode
 * back to the same fields (including version 0 on the wire and data left out),
 * and the bytes captured from the real client and server decode as expected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

static size_t hex_decode(const char *hex, uint8_t *out)
{
    size_t n = 0;
    for (; hex[0] && hex[1]; hex += 2) {
        unsigned v;
        sscanf(hex, "%2x", &v);
        out[n++] = (uint8_t)v;
    }
    return n;
}

/* Splits a delimited frame: returns the envelope (caller frees). */
static Message *open_frame(const uint8_t *p, size_t len)
{
    size_t body = 0, shift = 0, i = 0;
    while (p[i] & 0x80) {
        body |= (size_t)(p[i] & 0x7f) << shift;
        shift += 7;
        i++;
    }
    body |= (size_t)p[i] << shift;
    i++;
    assert_int_equal(body, len - i);
    return message__unpack(NULL, body, p + i);
}

static void test_captured_client_frames(void **state)
{
    (void)state;
    uint8_t buf[256];
    /* client CHALLENGE (capture 01) */
    size_t n = hex_decode("3710021a3308052a1677733a2f2f3132372e302e302e313a32363033312f413204302e31"
                          "613a05372e302e35420a6a617661736372697074", buf);
    Message *m = open_frame(buf, n);
    assert_non_null(m);
    assert_int_equal(m->topic, TOPIC__TOPIC_CONNECTION);
    ConnectionMessage *c = connection_message__unpack(NULL, m->message.len, m->message.data);
    assert_non_null(c);
    assert_int_equal(c->action, CONNECTION__ACTION__CONNECTION_CHALLENGE);
    assert_string_equal(c->url, "ws://127.0.0.1:26031/A");
    assert_string_equal(c->protocolversion, "0.1a");
    assert_string_equal(c->sdkversion, "7.0.5");
    assert_string_equal(c->sdktype, "javascript");
    connection_message__free_unpacked(c, NULL);
    message__free_unpacked(m, NULL);
    /* client AUTH REQUEST */
    n = hex_decode("1c10031a18080212147b22757365726e616d65223a22616c696365227d", buf);
    m = open_frame(buf, n);
    AuthMessage *a = auth_message__unpack(NULL, m->message.len, m->message.data);
    assert_int_equal(a->action, AUTH__ACTION__AUTH_REQUEST);
    assert_string_equal(a->data, "{\"username\":\"alice\"}");
    auth_message__free_unpacked(a, NULL);
    message__free_unpacked(m, NULL);
}

static void test_server_frames_match_capture(void **state)
{
    (void)state;
    /* server ACCEPT, AUTH OK and PONG must be byte-identical to deepstream's */
    struct { int topic; int action; const char *hex; } want[] = {
        {TOPIC__TOPIC_CONNECTION, CONNECTION__ACTION__CONNECTION_ACCEPT, "0610021a020804"},
        {TOPIC__TOPIC_AUTH, AUTH__ACTION__AUTH_AUTH_SUCCESSFUL, "0610031a020803"},
        {TOPIC__TOPIC_CONNECTION, CONNECTION__ACTION__CONNECTION_PONG, "0610021a020803"},
    };
    for (size_t i = 0; i < 3; i++) {
        ConnectionMessage cm = CONNECTION_MESSAGE__INIT;
        cm.has_action = 1;
        cm.action = want[i].action;
        frame *f = frame_encode(want[i].topic, &cm.base);
        uint8_t exp[16];
        size_t n = hex_decode(want[i].hex, exp);
        assert_int_equal(f->len, n);
        assert_memory_equal(frame_payload(f), exp, n);
        frame_unref(f);
    }
}

static void test_event_round_trip(void **state)
{
    (void)state;
    EventMessage e = EVENT_MESSAGE__INIT;
    e.has_action = 1;
    e.action = EVENT__ACTION__EVENT_EMIT;
    e.name = "chat/1";
    e.data = "{\"text\":\"hi\"}";
    frame *f = frame_encode(TOPIC__TOPIC_EVENT, &e.base);
    Message *m = open_frame(frame_payload(f), f->len);
    assert_int_equal(m->topic, TOPIC__TOPIC_EVENT);
    EventMessage *d = event_message__unpack(NULL, m->message.len, m->message.data);
    assert_string_equal(d->name, "chat/1");
    assert_string_equal(d->data, "{\"text\":\"hi\"}");
    assert_false(d->has_isack);
    assert_int_equal(d->n_names, 0);
    event_message__free_unpacked(d, NULL);
    message__free_unpacked(m, NULL);
    frame_unref(f);
    /* no data: the field is absent, never "" (the client would JSON.parse it) */
    e.data = NULL;
    f = frame_encode(TOPIC__TOPIC_EVENT, &e.base);
    m = open_frame(frame_payload(f), f->len);
    d = event_message__unpack(NULL, m->message.len, m->message.data);
    assert_null(d->data);
    event_message__free_unpacked(d, NULL);
    message__free_unpacked(m, NULL);
    frame_unref(f);
}

static void test_version_zero_on_wire(void **state)
{
    (void)state;
    RecordMessage r = RECORD_MESSAGE__INIT;
    r.has_action = 1;
    r.action = RECORD__ACTION__RECORD_READ_RESPONSE;
    r.name = "rec/1";
    r.data = "{}";
    r.has_version = 1;
    r.version = 0;
    uint8_t buf[64];
    size_t n = record_message__pack(&r, buf);
    /* field 13 varint = tag 0x68, value 0 */
    int found = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (buf[i] == 0x68 && buf[i + 1] == 0x00)
            found = 1;
    assert_true(found);
    RecordMessage *d = record_message__unpack(NULL, n, buf);
    assert_true(d->has_version);
    assert_int_equal(d->version, 0);
    record_message__free_unpacked(d, NULL);
    /* -1 is the ten-byte varint */
    r.version = -1;
    n = record_message__pack(&r, buf);
    d = record_message__unpack(NULL, n, buf);
    assert_int_equal(d->version, -1);
    record_message__free_unpacked(d, NULL);
}

/* Asserts that reply_frame's frame is byte for byte the hand-built message's. */
static void assert_same_frame(int topic, const client_reply *r, const ProtobufCMessage *want)
{
    frame *a = reply_frame(topic, r), *b = frame_encode(topic, want);
    assert_int_equal(a->len, b->len);
    assert_memory_equal(frame_payload(a), frame_payload(b), a->len);
    frame_unref(a);
    frame_unref(b);
}

/* The one builder of client messages sets each topic's fields by name: the
 * same bytes as a message built by hand, for every topic and field kind
 * (ints with presence, bools, strings, repeated strings, a negative version). */
static void test_reply_builder(void **state)
{
    (void)state;
    EventMessage e = EVENT_MESSAGE__INIT;
    e.has_action = e.has_originalaction = e.has_iserror = 1;
    e.action = EVENT__ACTION__EVENT_MESSAGE_DENIED;
    e.originalaction = EVENT__ACTION__EVENT_SUBSCRIBE;
    e.iserror = 1;
    e.name = "n";
    e.correlationid = "7";
    assert_same_frame(TOPIC__TOPIC_EVENT,
                      &(client_reply){.action = EVENT__ACTION__EVENT_MESSAGE_DENIED, .name = "n", .correlation_id = "7",
                                      .orig = EVENT__ACTION__EVENT_SUBSCRIBE, .is_error = true},
                      &e.base);
    char *names[] = {"a", "b"};
    RecordMessage r = RECORD_MESSAGE__INIT;
    r.has_action = r.has_version = r.has_isack = r.has_iswriteack = 1;
    r.action = RECORD__ACTION__RECORD_HEAD_RESPONSE;
    r.version = -1;
    r.isack = r.iswriteack = 1;
    r.names = names;
    r.n_names = 2;
    r.path = "a.b";
    r.subscription = "s";
    assert_same_frame(TOPIC__TOPIC_RECORD,
                      &(client_reply){.action = RECORD__ACTION__RECORD_HEAD_RESPONSE, .has_version = true, .version = -1,
                                      .is_ack = true, .is_write_ack = true, .names = names, .n_names = 2, .path = "a.b",
                                      .subscription = "s"},
                      &r.base);
    RpcMessage c = RPC_MESSAGE__INIT;
    c.has_action = 1;
    c.action = RPC__ACTION__RPC_REQUEST;
    c.requestorname = "u";
    c.requestordata = "{}";
    c.data = "1";
    assert_same_frame(TOPIC__TOPIC_RPC,
                      &(client_reply){.action = RPC__ACTION__RPC_REQUEST, .requestor_name = "u", .requestor_data = "{}",
                                      .data = "1", .path = "ignored: RPC has no path"},
                      &c.base);
    ParserMessage pm = PARSER_MESSAGE__INIT;
    pm.has_action = pm.has_originaltopic = pm.has_originalaction = 1;
    pm.action = PARSER__ACTION__PARSER_UNKNOWN_ACTION;
    pm.originaltopic = TOPIC__TOPIC_PRESENCE;
    pm.originalaction = 55;
    assert_same_frame(TOPIC__TOPIC_PARSER,
                      &(client_reply){.action = PARSER__ACTION__PARSER_UNKNOWN_ACTION,
                                      .orig_topic = TOPIC__TOPIC_PRESENCE, .orig = 55},
                      &pm.base);
    PresenceMessage pr = PRESENCE_MESSAGE__INIT;
    pr.has_action = 1;
    pr.action = PRESENCE__ACTION__PRESENCE_QUERY_ALL_RESPONSE;
    assert_same_frame(TOPIC__TOPIC_PRESENCE,
                      &(client_reply){.action = PRESENCE__ACTION__PRESENCE_QUERY_ALL_RESPONSE, .n_names = 0},
                      &pr.base);
}

static void test_garbage_rejected(void **state)
{
    (void)state;
    srand(7);
    for (int i = 0; i < 20000; i++) {
        uint8_t buf[48];
        size_t n = (size_t)(rand() % (int)sizeof(buf));
        for (size_t j = 0; j < n; j++)
            buf[j] = (uint8_t)rand();
        Message *m = message__unpack(NULL, n, buf);
        if (m != NULL) {
            EventMessage *e = event_message__unpack(NULL, m->message.len, m->message.data);
            if (e != NULL)
                event_message__free_unpacked(e, NULL);
            message__free_unpacked(m, NULL);
        }
    }
    /* a truncated CHALLENGE does not decode */
    uint8_t buf[64];
    size_t n = hex_decode("3310021a3308052a1677733a2f2f3132372e302e302e31", buf);
    assert_null(message__unpack(NULL, n - 1, buf + 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_captured_client_frames),
        cmocka_unit_test(test_server_frames_match_capture),
        cmocka_unit_test(test_event_round_trip),
        cmocka_unit_test(test_version_zero_on_wire),
        cmocka_unit_test(test_reply_builder),
        cmocka_unit_test(test_garbage_rejected),
    };
    return cmocka_run_group_tests_name("proto", tests, NULL, NULL);
}
