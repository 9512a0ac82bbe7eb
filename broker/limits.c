/* limits.c - what one connection may do, whichever topic it speaks: how many
 * messages a second (limits.messageRate: a token bucket of limits.messageBurst
 * per session, checked before a message is decoded), what a message over it
 * gets (not processed: its topic's MESSAGE_DENIED, so the client's promise
 * rejects instead of hanging), when a connection that keeps at it is closed
 * (limits.maxRefusedMessages refused within 10 s), and how many names it may
 * hold per topic (limits.maxSubscriptionsPerConnection: each topic module asks
 * here before it adds one). Every refusal is counted for /metrics and logged,
 * a line a second at most. Not for who may connect (admit.c).
 *
 * PING is never starved: a CONNECTION message over the rate still passes once
 * a second, so a client pushing its rate is not also timed out by its own
 * heartbeat; a flood of PINGs is refused like anything else. */
#include <string.h>

#include "internal.h"
#include "log.h"
#include "mem.h"

#define REFUSED_WINDOW_MS 10000 /* limits.maxRefusedMessages counts refusals within this */
#define PING_CREDIT_MS 1000     /* a CONNECTION message passes this often over the rate */
#define LOG_PERIOD_MS 1000      /* one line a second at most per kind */
#define TOPICS (TOPIC__TOPIC_PRESENCE + 1)

struct limits {
    const eddy_config *cfg;
    uint64_t refused; /* messages over a connection's rate */
    uint64_t closed;  /* connections closed for going on */
    uint64_t subs_denied[TOPICS];
    log_every refused_log, closed_log, subs_log;
};

static const char *const topic_names[TOPICS] = {
    [TOPIC__TOPIC_EVENT] = "event", [TOPIC__TOPIC_RECORD] = "record", [TOPIC__TOPIC_RPC] = "rpc",
    [TOPIC__TOPIC_PRESENCE] = "presence",
};

limits *limits_new(const eddy_config *cfg)
{
    limits *l = xcalloc(1, sizeof(*l));
    l->cfg = cfg;
    return l;
}

void limits_free(limits *l)
{
    xfree(l);
}

#define LOGIN_REFUSED "{\"error\":\"too many messages: over the server's limits.messageRate, try again\"}"

/* Answers a message of s that found the bucket empty, counts it, and closes s
 * once it has been refused limits.maxRefusedMessages times in a window.
 * Returns true for the CONNECTION message that passes on credit. */
static bool over_rate(limits *l, session *s, const uint8_t *msg, size_t len)
{
    const eddy_config *cfg = l->cfg;
    int64_t now = s->last_rx_ms;
    Message *m = frame_unpack(msg, len);
    int topic = m != NULL && m->has_topic ? m->topic : 0;
    if (topic == TOPIC__TOPIC_CONNECTION && now - s->ping_credit_ms >= PING_CREDIT_MS) {
        s->ping_credit_ms = now;
        message__free_unpacked(m, NULL);
        return true;
    }
    if (m != NULL && m->has_message && s->state == SESSION_OPEN)
        reply_denied(s, topic, m->message.data, m->message.len);
    else if (topic == TOPIC__TOPIC_AUTH && s->state == SESSION_AWAITING_AUTH) /* login() rejects; not an attempt */
        reply_send(s, TOPIC__TOPIC_AUTH, &(client_reply){.action = AUTH__ACTION__AUTH_AUTH_UNSUCCESSFUL,
                                                         .data = LOGIN_REFUSED});
    if (m != NULL)
        message__free_unpacked(m, NULL);

    l->refused++;
    if (now - s->refused_since >= REFUSED_WINDOW_MS) {
        s->refused_since = now;
        s->refused = 0;
    }
    s->refused++;
    uint64_t held;
    if (log_every_due(&l->refused_log, now, LOG_PERIOD_MS, &held))
        log_warn("message-rate-refused", "session=%llu topic=%d refused_in_window=%u rate=%lld burst=%lld "
                 "refused_total=%llu (answered MESSAGE_DENIED, not processed: limits.messageRate)",
                 (unsigned long long)s->id, topic, s->refused, (long long)cfg->message_rate,
                 (long long)cfg->message_burst, (unsigned long long)l->refused);
    if (cfg->max_refused > 0 && s->refused >= (uint64_t)cfg->max_refused) {
        l->closed++;
        if (log_every_due(&l->closed_log, now, LOG_PERIOD_MS, &held))
            log_warn("message-rate-closed", "session=%llu refused=%u within_ms=%d closed_total=%llu "
                     "(limits.maxRefusedMessages)", (unsigned long long)s->id, s->refused, REFUSED_WINDOW_MS,
                     (unsigned long long)l->closed);
        /* the denials go first; what it sends meanwhile is dropped */
        session_close_with(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too many messages");
    }
    return false;
}

bool limits_message(limits *l, session *s, const uint8_t *msg, size_t len)
{
    const eddy_config *cfg = l->cfg;
    if (cfg->message_rate == 0 || bucket_take(&s->rx_rate, s->last_rx_ms, cfg->message_rate, cfg->message_burst))
        return true;
    return over_rate(l, s, msg, len);
}

bool limits_subscribe(limits *l, const session *s, int topic, size_t held)
{
    int64_t max = l->cfg->max_subscriptions;
    if (max == 0 || held < (size_t)max)
        return true;
    uint64_t denied = 0;
    if (topic > 0 && topic < TOPICS)
        denied = ++l->subs_denied[topic];
    uint64_t skipped;
    if (log_every_due(&l->subs_log, s->last_rx_ms, LOG_PERIOD_MS, &skipped))
        log_warn("subscription-limit", "session=%llu topic=%s held=%zu max=%lld denied_total=%llu "
                 "(answered MESSAGE_DENIED: limits.maxSubscriptionsPerConnection)", (unsigned long long)s->id,
                 topic > 0 && topic < TOPICS && topic_names[topic] ? topic_names[topic] : "?", held,
                 (long long)max, (unsigned long long)denied);
    return false;
}

void limits_metrics(const limits *l, FILE *f)
{
    fprintf(f, "# TYPE eddy_messages_refused_total counter\neddy_messages_refused_total %llu\n",
            (unsigned long long)l->refused);
    fprintf(f, "# TYPE eddy_message_rate_closed_total counter\neddy_message_rate_closed_total %llu\n",
            (unsigned long long)l->closed);
    fprintf(f, "# TYPE eddy_subscriptions_denied_total counter\n");
    for (int t = 0; t < TOPICS; t++)
        if (topic_names[t] != NULL)
            fprintf(f, "eddy_subscriptions_denied_total{topic=\"%s\"} %llu\n", topic_names[t],
                    (unsigned long long)l->subs_denied[t]);
}
