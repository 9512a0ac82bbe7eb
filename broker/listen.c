/* listen.c - the broker's side of listening, for one topic (events or
 * records; each of those modules owns a set): patterns are checked here
 * (INVALID_LISTEN_REGEX; a new one beyond listen.maxPatternsPerConnection of
 * the session's gets MESSAGE_DENIED, deepstream's answer to a LISTEN it
 * refuses) and sent to every node, remembered per session so a disconnect
 * unlistens them and a node that comes back hears them again; accept/reject
 * answers go to the node owning the subscription; the nodes'
 * FOUND/REMOVED/RESPONSE_TIMEOUT messages reach the listening session.
 * (Record subscribers hear SUBSCRIPTION_HAS_PROVIDER from records.c.) Not
 * here: matching patterns (the nodes do, node/listen.c). */
#include <string.h>

#include "internal.h"
#include "log.h"
#include "mem.h"
#include "pattern.h"
#include "subs.h"

struct listen_set {
    const edge *e;
    int topic;
    int listen, unlisten, accept, reject, invalid, denied; /* the topic's action numbers */
    subs *patterns; /* pattern -> listening sessions */
    uint64_t over_cap; /* LISTENs refused for listen.maxPatternsPerConnection */
};

listen_set *listen_set_new(const edge *e, int topic)
{
    listen_set *l = xcalloc(1, sizeof(*l));
    l->e = e;
    l->topic = topic;
    bool rec = topic == TOPIC__TOPIC_RECORD;
    l->listen = rec ? RECORD__ACTION__RECORD_LISTEN : EVENT__ACTION__EVENT_LISTEN;
    l->unlisten = rec ? RECORD__ACTION__RECORD_UNLISTEN : EVENT__ACTION__EVENT_UNLISTEN;
    l->accept = rec ? RECORD__ACTION__RECORD_LISTEN_ACCEPT : EVENT__ACTION__EVENT_LISTEN_ACCEPT;
    l->reject = rec ? RECORD__ACTION__RECORD_LISTEN_REJECT : EVENT__ACTION__EVENT_LISTEN_REJECT;
    l->invalid = rec ? RECORD__ACTION__RECORD_INVALID_LISTEN_REGEX : EVENT__ACTION__EVENT_INVALID_LISTEN_REGEX;
    l->denied = rec ? RECORD__ACTION__RECORD_MESSAGE_DENIED : EVENT__ACTION__EVENT_MESSAGE_DENIED;
    l->patterns = subs_new(0, (subs_hooks){0}, NULL);
    return l;
}

void listen_set_free(listen_set *l)
{
    if (l == NULL)
        return;
    subs_free(l->patterns);
    xfree(l);
}

static void to_every_node(listen_set *l, uint32_t kind, uint64_t session_id, strview pat)
{
    for (int li = 0; li < links_count(l->e->links); li++) {
        links_submit_to(l->e->links, li,
                        &(op){.kind = kind, .session = session_id, .orig = (uint32_t)l->topic, .name = pat}, NULL);
    }
}

static void on_listen(listen_set *l, session *s, const char *pat)
{
    if (pat == NULL || !pattern_valid(pat, strlen(pat))) {
        log_info("listen-invalid-pat", "session=%llu pat=%s", (unsigned long long)s->id, pat ? pat : "");
        reply_send(s, l->topic, &(client_reply){.action = l->invalid, .name = pat, .is_error = true});
        return;
    }
    enum perm_section section = l->topic == TOPIC__TOPIC_RECORD ? PERM_RECORD : PERM_EVENT;
    enum permit_answer a = permit_check(l->e->permit, s, section, PERM_LISTEN, pat, NULL);
    if (a != PERMIT_ALLOW) { /* (a record rule reading the record has none here: denied) */
        reply_send(s, l->topic, &(client_reply){.action = permit_refusal(l->topic, a == PERMIT_ERROR ? a : PERMIT_DENY),
                                                .name = pat, .orig = l->listen, .is_error = true});
        return;
    }
    if (!subs_holds(l->patterns, sv_of(pat), s, 0) &&
        subs_held(l->patterns, s) >= (size_t)l->e->cfg->listen_max_patterns) {
        if (l->over_cap++ % 1000 == 0) /* the first, then every 1000th */
            log_warn("listen-too-many-patterns", "session=%llu topic=%d max=%lld refused_total=%llu "
                     "(answered MESSAGE_DENIED: listen.maxPatternsPerConnection)", (unsigned long long)s->id,
                     l->topic, (long long)l->e->cfg->listen_max_patterns, (unsigned long long)l->over_cap);
        reply_send(s, l->topic, &(client_reply){.action = l->denied, .name = pat, .orig = l->listen,
                                                .is_error = true});
        return;
    }
    if (subs_add(l->patterns, sv_of(pat), s, 0))
        to_every_node(l, OP_LISTEN, s->id, sv_of(pat));
    reply_send(s, l->topic, &(client_reply){.action = l->listen, .name = pat, .is_ack = true});
}

static void on_unlisten(listen_set *l, session *s, const char *pat)
{
    if (pat != NULL && subs_remove(l->patterns, sv_of(pat), s, 0, false))
        to_every_node(l, OP_UNLISTEN, s->id, sv_of(pat));
    reply_send(s, l->topic, &(client_reply){.action = l->unlisten, .name = pat, .is_ack = true});
}

static void on_answer(listen_set *l, session *s, int action, const char *pat, const char *sub)
{
    if (pat == NULL || sub == NULL || strlen(sub) == 0 || strlen(sub) > OP_NAME_MAX ||
        strlen(pat) > PATTERN_MAX)
        return;
    op o = {.kind = OP_LISTEN_ANSWER, .session = s->id, .orig = (uint32_t)l->topic,
            .action = (uint32_t)action, .name = sv_of(pat), .ref = sv_of(sub)};
    links_submit_by(l->e->links, &o, o.ref, NULL); /* its owner runs the search */
}

bool listen_handle(listen_set *l, session *s, int action, const char *pat, const char *subscription)
{
    if (action == l->listen)
        on_listen(l, s, pat);
    else if (action == l->unlisten)
        on_unlisten(l, s, pat);
    else if (action == l->accept || action == l->reject)
        on_answer(l, s, action, pat, subscription);
    else
        return false;
    return true;
}

void listen_session_closed(listen_set *l, session *s)
{
    uint32_t n;
    strview *pats = subs_held_names(l->patterns, s, &n);
    subs_remove_holder(l->patterns, s);
    for (uint32_t i = 0; i < n; i++)
        to_every_node(l, OP_UNLISTEN, s->id, pats[i]);
    subs_names_free(pats, n);
}

void listen_resync(listen_set *l, int li)
{
    links_resend(l->e->links, li, l->patterns, &(op){.kind = OP_LISTEN, .orig = (uint32_t)l->topic},
                 LINKS_PER_HOLDER | LINKS_EVERY_NODE);
}

void listen_deliver(listen_set *l, const op *o)
{
    session *s = o->orig == (uint32_t)l->topic ? sessions_get(l->e->sessions, o->session) : NULL;
    if (s == NULL)
        return;
    char *pat = xstrndup(o->name.ptr, o->name.len);
    char *sub = xstrndup(o->ref.ptr, o->ref.len);
    reply_send(s, l->topic, &(client_reply){.action = (int)o->action, .name = pat, .subscription = sub});
    xfree(pat);
    xfree(sub);
}
