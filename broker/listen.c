/* listen.c - the broker's side of listening for events and records: patterns
 * are checked here (INVALID_LISTEN_REGEX) and sent to every node, remembered
 * per session so a disconnect unlistens them; accept/reject answers go to the
 * node owning the subscription; the nodes' FOUND/REMOVED/RESPONSE_TIMEOUT
 * messages reach the listening session, and record subscribers hear
 * SUBSCRIPTION_HAS_PROVIDER / _HAS_NO_PROVIDER. */
#include <string.h>

#include "broker.h"
#include "log.h"
#include "mem.h"
#include "pattern.h"

static int action_of(int topic, int event_action, int record_action)
{
    return topic == TOPIC__TOPIC_RECORD ? record_action : event_action;
}

/* Sends {action, name, subscription, isAck/isError} on the topic. */
static void listen_reply(session *s, int topic, int action, const char *name, const char *sub,
                         bool ack, bool error)
{
    if (topic == TOPIC__TOPIC_RECORD) {
        RecordMessage m = RECORD_MESSAGE__INIT;
        m.has_action = 1;
        m.action = action;
        m.name = (char *)name;
        m.subscription = (char *)sub;
        m.has_isack = ack;
        m.isack = ack;
        m.has_iserror = error;
        m.iserror = error;
        session_send_msg(s, topic, &m.base);
    } else {
        EventMessage m = EVENT_MESSAGE__INIT;
        m.has_action = 1;
        m.action = action;
        m.name = (char *)name;
        m.subscription = (char *)sub;
        m.has_isack = ack;
        m.isack = ack;
        m.has_iserror = error;
        m.iserror = error;
        session_send_msg(s, topic, &m.base);
    }
}

/* The key of a listen in session->listens: topic byte + pat. */
static size_t listen_key(char *buf, size_t cap, int topic, const char *pat)
{
    size_t len = strlen(pat);
    if (len + 1 > cap)
        return 0;
    buf[0] = (char)topic;
    memcpy(buf + 1, pat, len);
    return len + 1;
}

static void to_every_node(broker *b, uint32_t kind, int topic, uint64_t session_id, const char *pat)
{
    for (int li = 0; li < links_count(b); li++) {
        op o = {.kind = kind, .session = session_id, .orig = (uint32_t)topic,
                .name = {pat, (uint32_t)strlen(pat)}};
        uint64_t seq;
        links_submit_to(b, li, &o, &seq);
    }
}

static void on_listen(session *s, int topic, const char *pat)
{
    int invalid = action_of(topic, EVENT__ACTION__EVENT_INVALID_LISTEN_REGEX,
                            RECORD__ACTION__RECORD_INVALID_LISTEN_REGEX);
    int listen = action_of(topic, EVENT__ACTION__EVENT_LISTEN, RECORD__ACTION__RECORD_LISTEN);
    pattern *re = pat ? pattern_compile(pat, strlen(pat)) : NULL;
    if (re == NULL) {
        log_info("listen-invalid-pat", "session=%llu pat=%s", (unsigned long long)s->id,
                 pat ? pat : "");
        listen_reply(s, topic, invalid, pat, NULL, false, true);
        return;
    }
    pattern_free(re);
    char key[PATTERN_MAX + 2];
    size_t klen = listen_key(key, sizeof(key), topic, pat);
    if (dict_get(s->listens, key, klen) == NULL) {
        dict_put(s->listens, key, klen, (void *)1);
        to_every_node(s->b, OP_LISTEN, topic, s->id, pat);
    }
    listen_reply(s, topic, listen, pat, NULL, true, false);
}

static void on_unlisten(session *s, int topic, const char *pat)
{
    int unlisten = action_of(topic, EVENT__ACTION__EVENT_UNLISTEN, RECORD__ACTION__RECORD_UNLISTEN);
    char key[PATTERN_MAX + 2];
    size_t klen = pat ? listen_key(key, sizeof(key), topic, pat) : 0;
    if (klen > 0 && dict_del(s->listens, key, klen) != NULL)
        to_every_node(s->b, OP_UNLISTEN, topic, s->id, pat);
    listen_reply(s, topic, unlisten, pat, NULL, true, false);
}

static void on_answer(session *s, int topic, int action, const char *pat, const char *sub)
{
    if (pat == NULL || sub == NULL || strlen(sub) == 0 || strlen(sub) > OP_NAME_MAX ||
        strlen(pat) > PATTERN_MAX)
        return;
    op o = {.kind = OP_LISTEN_ANSWER, .session = s->id, .orig = (uint32_t)topic,
            .action = (uint32_t)action, .name = {pat, (uint32_t)strlen(pat)},
            .ref = {sub, (uint32_t)strlen(sub)}};
    /* routed by the subscription: its owner runs the search */
    uint64_t seq;
    links_submit_name(s->b, &o, o.ref, &seq);
}

bool listen_handle(session *s, int topic, int action, const char *name, const char *sub)
{
    if (action == action_of(topic, EVENT__ACTION__EVENT_LISTEN, RECORD__ACTION__RECORD_LISTEN))
        on_listen(s, topic, name);
    else if (action == action_of(topic, EVENT__ACTION__EVENT_UNLISTEN, RECORD__ACTION__RECORD_UNLISTEN))
        on_unlisten(s, topic, name);
    else if (action == action_of(topic, EVENT__ACTION__EVENT_LISTEN_ACCEPT, RECORD__ACTION__RECORD_LISTEN_ACCEPT) ||
             action == action_of(topic, EVENT__ACTION__EVENT_LISTEN_REJECT, RECORD__ACTION__RECORD_LISTEN_REJECT))
        on_answer(s, topic, action, name, sub);
    else
        return false;
    return true;
}

void listen_session_closed(session *s)
{
    size_t n;
    char **keys = dict_keys(s->listens, &n);
    for (size_t i = 0; i < n; i++)
        to_every_node(s->b, OP_UNLISTEN, (unsigned char)keys[i][0], s->id, keys[i] + 1);
    dict_keys_free(keys, n);
}

static int resync_listen(const void *key, size_t len, void *v, void *arg)
{
    session *s = ((void **)arg)[0];
    int li = *(int *)((void **)arg)[1];
    const char *k = key;
    op o = {.kind = OP_LISTEN, .session = s->id, .orig = (unsigned char)k[0],
            .name = {k + 1, (uint32_t)len - 1}};
    uint64_t seq;
    links_submit_to(s->b, li, &o, &seq);
    return 0;
}

static void resync_session(session *s, void *arg)
{
    void *ctx[2] = {s, arg};
    dict_foreach(s->listens, resync_listen, ctx);
}

void listen_resync(broker *b, int li)
{
    broker_foreach_session(b, resync_session, &li);
}

void listen_deliver(broker *b, const op *o)
{
    session *s = broker_session(b, o->session);
    if (s == NULL)
        return;
    char *pat = xstrndup(o->name.ptr, o->name.len);
    char *sub = xstrndup(o->ref.ptr, o->ref.len);
    listen_reply(s, (int)o->orig, (int)o->action, pat, sub, false, false);
    xfree(pat);
    xfree(sub);
}
