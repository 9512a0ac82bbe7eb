/* fuzz_jif.c - libFuzzer target for the HTTP API's decoders: a request body
 * as a client sends it (JSON with deepstream's JIF operations, broker/jif.c)
 * and what comes back to the request's session (any client message, as
 * jif_answer reads it), plus the tokens of broker/token.c. The HTTP and
 * session plumbing around them runs against a real server in
 * tests/e2e/http-api.test.mjs.
 *
 * Input: a JSON text, read into a span index (common/jsonspan.h) as api.c
 * reads a request. Each element of its "body" (or the text itself) is
 * parsed as an operation; an accepted one must have packed a message that
 * its topic's decoder reads back. Then the input's bytes are offered as the
 * inner message of every topic to an operation of every kind: a result, if
 * any, must be a JSON object whose success field is a boolean. Then the
 * input, as text, is verified as a token: never accepted without the key. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "internal.h"
#include "jsonspan.h"
#include "mem.h"

static token_key *key;

static void check_result(const char *text)
{
    /* integers of any length: data is passed on as the node or provider wrote it */
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
    if (!json_is_object(v) || !json_is_boolean(json_object_get(v, "success")))
        abort();
    json_decref(v);
}

static void one_operation(const jspan *doc, uint32_t item, uint32_t index)
{
    jif_op jo;
    char err[512];
    if (jif_parse(doc, item, index, &jo, err, sizeof(err)) != 0) {
        if (err[0] == '\0' || strlen(err) >= sizeof(err))
            abort(); /* every refusal says why */
        return;
    }
    if (jo.msg == NULL)
        abort();
    const ProtobufCMessageDescriptor *d = jo.topic == TOPIC__TOPIC_EVENT    ? &event_message__descriptor
                                          : jo.topic == TOPIC__TOPIC_RPC    ? &rpc_message__descriptor
                                          : jo.topic == TOPIC__TOPIC_RECORD ? &record_message__descriptor
                                                                            : &presence_message__descriptor;
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, jo.msg_len, jo.msg);
    if (m == NULL)
        abort(); /* jif packed what the topic's module could not read */
    protobuf_c_message_free_unpacked(m, NULL);
    jif_op_clear(&jo);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (key == NULL) {
        if (sodium_init() < 0)
            abort();
        key = token_key_new("fuzzing key that is long enough, really");
    }
    static jspan doc;
    if (doc.max_tokens == 0)
        jspan_init(&doc, 1u << 16);
    if (jspan_parse(&doc, (const char *)data, size, 2048, 4) == JSPAN_OK) {
        uint32_t body = jspan_get(&doc, 0, "body");
        if (body != JSPAN_NONE && jspan_at(&doc, body)->type == JSPAN_ARRAY) {
            uint32_t e = jspan_first(&doc, body);
            for (uint32_t i = 0; i < jspan_at(&doc, body)->count && i < 64; i++, e = jspan_next_element(&doc, e))
                one_operation(&doc, e, i);
        } else
            one_operation(&doc, 0, 0);
    }

    static const int topics[] = {TOPIC__TOPIC_RECORD, TOPIC__TOPIC_RPC, TOPIC__TOPIC_EVENT, TOPIC__TOPIC_PRESENCE,
                                 TOPIC__TOPIC_PARSER};
    for (size_t t = 0; t < sizeof(topics) / sizeof(topics[0]); t++)
        for (int k = JIF_EMIT; k <= JIF_PRESENCE; k++) {
            jif_op jo = {.kind = (enum jif_kind)k, .index = (uint32_t)(size % 3)};
            char *result = NULL;
            if (jif_answer(&jo, topics[t], data, size, &result) == 1) {
                check_result(result);
                xfree(result);
            }
        }

    char *text = xstrndup((const char *)data, size);
    char *user = NULL, *sd = NULL;
    if (token_verify(key, text, 0, &user, &sd) == TOKEN_OK)
        abort(); /* a token nobody minted */
    xfree(user);
    xfree(sd);
    xfree(text);
    return 0;
}
