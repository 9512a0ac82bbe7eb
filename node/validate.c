/* validate.c - validators on the owning node: the backends that registered to
 * validate the writes to records matching a pattern, and every validation in
 * flight (Jetstream's "validate changesets with downstream services").
 *
 * records.c asks validators_route whether a write needs a validation, then
 * hands it over with validators_start: the node picks a validator for the
 * record's name (round robin over the registrations whose pattern matches,
 * never one already tried for this validation), delivers it the request and
 * waits validation.timeout for the answer. A validator that does not answer
 * in time, or goes away, has the validation moved to the next one; when none
 * is left the policy decides (validation.onTimeout accept, or a
 * validation.acceptOnTimeout pattern: accepted unvalidated; else refused,
 * fail closed). Exactly one outcome
 * reaches records.c per validation, through the done callback. Answers are
 * taken only from the validator asked; late, duplicate or foreign answers
 * change nothing.
 *
 * Bounds: validation.maxPending validations in flight per node (beyond it a
 * write is refused at once), VALIDATE_MAX_TRIES validators tried per
 * validation, VALIDATE_MAX_PER_PEER registrations per peer,
 * VALIDATE_MAX_CANDIDATES validators a write chooses among.
 *
 * With no registration and no validation.required pattern a write costs one
 * test of two counters. */
#include <stdio.h>
#include <string.h>
#include <sys/queue.h>

#include "dict.h"
#include "internal.h"
#include "log.h"
#include "mem.h"
#include "pattern.h"
#include "util.h"

#define VALIDATE_MAX_TRIES 8
#define VALIDATE_MAX_PER_PEER 256
#define VALIDATE_MAX_CANDIDATES 64 /* validators one write chooses among (the first found, newest first) */

typedef struct registration {
    struct registration *next;
    peer *p;
    char *text; /* the pattern as registered */
    uint32_t text_len;
    pattern *re;
} registration;

typedef struct pending {
    TAILQ_ENTRY(pending) by_deadline; /* every deadline is now + timeout: appending keeps the order */
    uint64_t id;
    char *name;
    uint32_t name_len;
    char *request; /* the request's JSON text */
    size_t request_len;
    void *cookie;  /* records.c's */
    peer *asked;   /* the validator it waits for */
    peer *tried[VALIDATE_MAX_TRIES];
    uint32_t tries;
    int64_t deadline_ms;
} pending;

typedef struct config_patterns {
    pattern **re;
    uint32_t count;
} config_patterns;

struct validators {
    node_env *env;
    registration *regs;
    uint32_t reg_count;
    config_patterns required, accept_on_timeout;
    dict *by_id; /* id (8 bytes) -> pending */
    TAILQ_HEAD(, pending) waiting; /* by deadline, oldest first */
    uint64_t next_id;
    uint32_t rotation; /* round robin over the matching registrations */
    validators_done_fn *done;
    void *done_ctx;
    prom_counter *counts; /* stats: indexed by enum validate_count */
};

/* ---------------- configuration ---------------- */

static int compile_all(const config_names *names, config_patterns *out, const char *key)
{
    out->re = names->count > 0 ? xcalloc(names->count, sizeof(pattern *)) : NULL;
    for (int i = 0; i < names->count; i++) {
        out->re[i] = pattern_compile(names->v[i], strlen(names->v[i]));
        if (out->re[i] == NULL) {
            log_error("config-error", "%s: '%s' is not a valid pattern", key, names->v[i]);
            return -1;
        }
        out->count++;
    }
    return 0;
}

static void free_all(config_patterns *c)
{
    for (uint32_t i = 0; i < c->count; i++)
        pattern_free(c->re[i]);
    xfree(c->re);
    *c = (config_patterns){0};
}

static bool any_match(const config_patterns *c, strview name)
{
    for (uint32_t i = 0; i < c->count; i++)
        if (pattern_match(c->re[i], name.ptr, name.len))
            return true;
    return false;
}

/* ---------------- the module ---------------- */

static void *validators_create(node_env *env)
{
    validators *v = xcalloc(1, sizeof(*v));
    TAILQ_INIT(&v->waiting);
    v->env = env;
    v->by_id = dict_new();
    v->counts = env->stats->validations;
    if (compile_all(&env->cfg->validation_required, &v->required, "validation.required") != 0 ||
        compile_all(&env->cfg->validation_accept_on_timeout, &v->accept_on_timeout, "validation.acceptOnTimeout") !=
            0)
        log_error("validation-patterns-ignored", "(the patterns that compiled are in force)");
    env->validators = v;
    return v;
}

static void free_pending(pending *p)
{
    xfree(p->name);
    xfree(p->request);
    xfree(p);
}

static void validators_destroy(void *self)
{
    validators *v = self;
    while (v->regs != NULL) {
        registration *r = v->regs;
        v->regs = r->next;
        pattern_free(r->re);
        xfree(r->text);
        xfree(r);
    }
    pending *p;
    while ((p = TAILQ_FIRST(&v->waiting)) != NULL) {
        TAILQ_REMOVE(&v->waiting, p, by_deadline);
        free_pending(p);
    }
    dict_free(v->by_id);
    free_all(&v->required);
    free_all(&v->accept_on_timeout);
    xfree(v);
}

void validators_set_done(validators *v, validators_done_fn *done, void *ctx)
{
    v->done = done;
    v->done_ctx = ctx;
}

/* The policy for a write no validator answers: validation.onTimeout accept,
 * or a validation.acceptOnTimeout pattern. */
static bool accepts_unanswered(const validators *v, strview name)
{
    return v->env->cfg->validation_on_timeout == 1 || any_match(&v->accept_on_timeout, name);
}

static bool has_match(validators *v, strview name)
{
    for (registration *r = v->regs; r != NULL; r = r->next)
        if (pattern_match(r->re, name.ptr, name.len))
            return true;
    return false;
}

enum validate_route validators_route(validators *v, strview name)
{
    if (v == NULL || (v->reg_count == 0 && v->required.count == 0))
        return VALIDATE_SKIP;
    if (v->reg_count > 0 && has_match(v, name))
        return VALIDATE_ASK;
    if (v->required.count > 0 && any_match(&v->required, name)) {
        bool accept = accepts_unanswered(v, name);
        prom_add(&v->counts[accept ? VALIDATE_COUNT_ACCEPTED_BY_POLICY : VALIDATE_COUNT_NONE_CONNECTED], 1);
        return accept ? VALIDATE_SKIP_BY_POLICY : VALIDATE_REFUSE;
    }
    return VALIDATE_SKIP;
}

/* ---------------- a validation's life ---------------- */

static void unlink_pending(validators *v, pending *p)
{
    TAILQ_REMOVE(&v->waiting, p, by_deadline);
}

static void append_pending(validators *v, pending *p)
{
    TAILQ_INSERT_TAIL(&v->waiting, p, by_deadline);
}

static bool tried(const pending *p, const peer *who)
{
    for (uint32_t i = 0; i < p->tries; i++)
        if (p->tried[i] == who)
            return true;
    return false;
}

/* The next validator for p: round robin over the matching registrations of
 * peers not tried yet; NULL when none is left (or the tries are used up). */
static registration *pick(validators *v, pending *p)
{
    if (p->tries >= VALIDATE_MAX_TRIES)
        return NULL;
    strview name = {p->name, p->name_len};
    registration *cand[VALIDATE_MAX_CANDIDATES];
    uint32_t n = 0;
    for (registration *r = v->regs; r != NULL && n < VALIDATE_MAX_CANDIDATES; r = r->next)
        if (!tried(p, r->p) && pattern_match(r->re, name.ptr, name.len)) {
            bool dup = false; /* one peer with two matching patterns counts once */
            for (uint32_t i = 0; i < n && !dup; i++)
                dup = cand[i]->p == r->p;
            if (!dup)
                cand[n++] = r;
        }
    if (n == 0)
        return NULL;
    return cand[v->rotation++ % n];
}

/* Delivers p to the validator of registration r (picked already) and starts
 * its clock; the request names the pattern that matched (ref), so the
 * validator knows which of its handlers to call. */
static void ask(validators *v, pending *p, const registration *r)
{
    p->asked = r->p;
    p->tried[p->tries++] = r->p;
    p->deadline_ms = now_ms() + v->env->cfg->validation_timeout_ms;
    append_pending(v, p);
    op req = {.kind = OP_VALIDATE_REQUEST, .corr = p->id, .name = {p->name, p->name_len}, .has_data = true,
              .data = {p->request, (uint32_t)p->request_len}, .ref = {r->text, r->text_len}};
    peer_deliver_op(v->env->peers, r->p, &req);
    prom_add(&v->counts[VALIDATE_COUNT_ASKED], 1);
}

/* Ends p with outcome (p is unlinked already) and frees it. */
static void finish(validators *v, pending *p, const validation_outcome *outcome)
{
    dict_del(v->by_id, &p->id, sizeof(p->id));
    void *cookie = p->cookie;
    free_pending(p);
    v->done(v->done_ctx, cookie, outcome);
}

/* No validator left for p: the policy's outcome. */
static void give_up(validators *v, pending *p, const char *why)
{
    strview name = {p->name, p->name_len};
    bool accept = accepts_unanswered(v, name);
    log_warn("validation-unanswered", "name=%.*s tried=%u (%s: %s)", (int)p->name_len, p->name, p->tries, why,
             accept ? "accepted unvalidated (validation.onTimeout / acceptOnTimeout)" : "refused");
    prom_add(&v->counts[accept ? VALIDATE_COUNT_ACCEPTED_BY_POLICY : VALIDATE_COUNT_TIMED_OUT], 1);
    validation_outcome out = {.verdict = accept ? VALIDATE_ACCEPT : VALIDATE_REJECT, .unvalidated = accept};
    if (!accept)
        out.data = sv_of("no validator answered in time");
    finish(v, p, &out);
}

/* p's validator did not answer or went away: the next one, or the policy. */
static void move_on(validators *v, pending *p, const char *why)
{
    registration *next = pick(v, p);
    if (next != NULL) {
        prom_add(&v->counts[VALIDATE_COUNT_MOVED], 1);
        ask(v, p, next);
    } else {
        give_up(v, p, why);
    }
}

int validators_start(validators *v, strview name, const char *request, size_t request_len, void *cookie)
{
    if (!TAILQ_EMPTY(&v->waiting) && dict_size(v->by_id) >= (size_t)v->env->cfg->validation_max_pending) {
        prom_add(&v->counts[VALIDATE_COUNT_FULL], 1);
        return -1;
    }
    pending *p = xcalloc(1, sizeof(*p));
    p->id = ++v->next_id;
    p->name = xstrndup(name.ptr, name.len);
    p->name_len = name.len;
    p->request = xmalloc(request_len);
    memcpy(p->request, request, request_len);
    p->request_len = request_len;
    p->cookie = cookie;
    dict_put(v->by_id, &p->id, sizeof(p->id), p);
    registration *who = pick(v, p);
    if (who == NULL) /* (validators_route found one; it cannot be gone in between, but be safe) */
        give_up(v, p, "no validator connected");
    else
        ask(v, p, who);
    return 0;
}

/* A validator's answer: applied when it is the awaited one's. */
static void answer(validators *v, node_req *req, const op *o)
{
    pending *p = dict_get(v->by_id, &o->corr, sizeof(o->corr));
    if (p == NULL || p->asked != req->from || o->name.len != p->name_len ||
        memcmp(o->name.ptr, p->name, p->name_len) != 0) {
        prom_add(&v->counts[VALIDATE_COUNT_STRAY], 1);
        log_debug("validation-answer-ignored", "corr=%llu peer=%016llx (late, unknown or not the validator asked)",
                  (unsigned long long)o->corr, (unsigned long long)req->from->id);
        return;
    }
    validation_outcome out = {.verdict = (enum validate_verdict)o->action, .data = o->has_data ? o->data : (strview){0}};
    if (out.verdict != VALIDATE_ACCEPT && out.verdict != VALIDATE_REJECT && out.verdict != VALIDATE_REPLACE) {
        out.verdict = VALIDATE_REJECT; /* a validator that says something else refuses */
        out.data = sv_of("the validator's answer was not accept, reject or replace");
    }
    prom_add(&v->counts[out.verdict == VALIDATE_ACCEPT   ? VALIDATE_COUNT_ACCEPTED
                        : out.verdict == VALIDATE_REJECT ? VALIDATE_COUNT_REJECTED
                                                         : VALIDATE_COUNT_REPLACED],
             1);
    unlink_pending(v, p);
    finish(v, p, &out);
}

static void add_registration(validators *v, node_req *req, const op *o)
{
    uint32_t mine = 0;
    for (registration *r = v->regs; r != NULL; r = r->next)
        if (r->p == req->from) {
            if (r->text_len == o->name.len && memcmp(r->text, o->name.ptr, o->name.len) == 0)
                return; /* again (a resync): nothing changes */
            mine++;
        }
    pattern *re = mine < VALIDATE_MAX_PER_PEER ? pattern_compile(o->name.ptr, o->name.len) : NULL;
    if (re == NULL) {
        op e = {.kind = OP_ERROR, .error = OP_ERR_BAD_FIELD, .corr = o->corr, .name = o->name};
        op_batch_add(req->reply, &e);
        log_info("validator-refused", "peer=%016llx pattern=%.*s (%s)", (unsigned long long)req->from->id,
                 (int)o->name.len, o->name.ptr,
                 mine < VALIDATE_MAX_PER_PEER ? "not a valid pattern" : "too many patterns for one peer");
        return;
    }
    registration *r = xcalloc(1, sizeof(*r));
    r->p = req->from;
    r->text = xstrndup(o->name.ptr, o->name.len);
    r->text_len = o->name.len;
    r->re = re;
    r->next = v->regs;
    v->regs = r;
    v->reg_count++;
    log_info("validator-registered", "peer=%016llx pattern=%.*s", (unsigned long long)req->from->id,
             (int)o->name.len, o->name.ptr);
}

/* Removes p's registrations (all of them with pattern NULL); returns how many. */
static size_t remove_registrations(validators *v, const peer *p, const strview *text)
{
    size_t n = 0;
    for (registration **rp = &v->regs; *rp != NULL;) {
        registration *r = *rp;
        if (r->p == p && (text == NULL || (r->text_len == text->len && memcmp(r->text, text->ptr, text->len) == 0))) {
            *rp = r->next;
            pattern_free(r->re);
            xfree(r->text);
            xfree(r);
            v->reg_count--;
            n++;
        } else {
            rp = &r->next;
        }
    }
    return n;
}

/* Validations waiting for p move on (p stopped validating or went away). */
static void move_from(validators *v, const peer *p, const char *why)
{
    TAILQ_HEAD(, pending) moving = TAILQ_HEAD_INITIALIZER(moving);
    for (pending *x = TAILQ_FIRST(&v->waiting), *next; x != NULL; x = next) {
        next = TAILQ_NEXT(x, by_deadline);
        if (x->asked == p) {
            unlink_pending(v, x);
            TAILQ_INSERT_TAIL(&moving, x, by_deadline);
        }
    }
    pending *x;
    while ((x = TAILQ_FIRST(&moving)) != NULL) {
        TAILQ_REMOVE(&moving, x, by_deadline);
        move_on(v, x, why);
    }
}

static void validators_apply(void *self, node_req *req, const op *o)
{
    validators *v = self;
    switch (o->kind) {
    case OP_VALIDATE_REGISTER: add_registration(v, req, o); break;
    case OP_VALIDATE_UNREGISTER:
        if (remove_registrations(v, req->from, &o->name) > 0)
            move_from(v, req->from, "its validator stopped validating");
        break;
    case OP_VALIDATE_ANSWER: answer(v, req, o); break;
    }
}

static size_t validators_drop_peer(void *self, peer *p)
{
    validators *v = self;
    size_t n = remove_registrations(v, p, NULL);
    move_from(v, p, "its validator went away");
    return n;
}

/* Validations past their deadline move on (the oldest are first). */
static void validators_timers(void *self, int64_t now)
{
    validators *v = self;
    pending *p;
    while ((p = TAILQ_FIRST(&v->waiting)) != NULL && p->deadline_ms <= now) {
        unlink_pending(v, p);
        log_info("validation-timeout", "name=%.*s validator=%016llx (asking the next)", (int)p->name_len, p->name,
                 (unsigned long long)p->asked->id);
        move_on(v, p, "validation.timeout passed");
    }
}

size_t validators_pending(const validators *v)
{
    return v != NULL ? dict_size(v->by_id) : 0;
}

const owner_module validators_owner = {
    .name = "validators",
    .kinds = (const owner_kind[]){{OP_VALIDATE_REGISTER, ROUTE_EVERY_NODE}, {OP_VALIDATE_UNREGISTER, ROUTE_EVERY_NODE},
                                  {OP_VALIDATE_ANSWER, ROUTE_NAME}, {0, 0}},
    .create = validators_create,
    .destroy = validators_destroy,
    .apply = validators_apply,
    .held = "validator_patterns",
    .drop_peer = validators_drop_peer,
    .timers = validators_timers,
};
