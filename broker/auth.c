/* auth.c - logins: the auth list (deepstream's `auth: [{type, options}]`) run
 * in order as deepstream's CombineAuthentication does: each strategy in turn
 * either takes the login (logs it in, or refuses it) or passes it on; the
 * first that takes it decides, and a login every strategy passed fails.
 * A strategy is a row of the table below and a module of its own
 * (auth_none.c, auth_file.c, auth_http.c, auth_jwt.c).
 *
 * Where checks run: `none` on the service thread; password hashes and token
 * signatures on a pool of worker threads sized to the cores; webhooks on the
 * http strategy's own thread. Answers come back to the service thread
 * through the done list and a wake-up (auth_drain); the websocket loop never
 * waits for a check. A successful file or jwt login is remembered in the
 * cache (auth_cache.c) for auth.cacheTtl, so a reconnect storm costs a MAC
 * per login. At most auth.maxPendingLogins logins are checked at once; one
 * more is refused at once ("server busy"). Failed attempts are counted per
 * connection; after auth.maxAuthAttempts the client gets
 * TOO_MANY_AUTH_ATTEMPTS and is closed.
 *
 * Not for what a strategy checks, nor for the session's timers (session.c). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "internal.h"
#include "log.h"
#include "mem.h"
#include "queue.h"

#define MAX_USERNAME 1024  /* the internal operations' bound on user ids */
#define MAX_CREDENTIAL 16384
#define MAX_WORKERS 256

/* The strategy table: auth.type -> its module. */
static const auth_strategy_ops *const strategy_table[] = {
    [AUTH_NONE] = &auth_none_ops,
    [AUTH_FILE] = &auth_file_ops,
    [AUTH_HTTP] = &auth_http_ops,
    [AUTH_JWT] = &auth_jwt_ops,
};

typedef struct strategy {
    const auth_strategy_ops *ops;
    void *self;
} strategy;

struct auth {
    const eddy_config *cfg;
    sessions *set;
    auth_hooks hooks;
    strategy strategies[AUTH_MAX_STRATEGIES];
    int count;
    bool wants_conn;
    auth_cache *cache;
    /* the pool */
    queue *jobs; /* capacity auth.maxPendingLogins: a push never waits */
    pthread_t workers[MAX_WORKERS];
    int nworkers;
    atomic_bool stopping;
    atomic_long pending; /* logins being checked */
    /* answers for the service thread */
    pthread_mutex_t done_lock;
    auth_login *done_head, *done_tail;
    /* counters */
    atomic_ullong accepted, refused, busy, cache_hits;
};

enum where { ON_SERVICE, ON_WORKER, ON_OTHER };

const char AUTH_REASON_BUSY[] = "server busy";

static void advance(auth *a, auth_login *l, enum where where);

void auth_outcome_clear(auth_outcome *out)
{
    if (out == NULL)
        return;
    xfree(out->user_id);
    xfree(out->client_data);
    xfree(out->server_data);
    xfree(out->token);
    memset(out, 0, sizeof(*out));
}

char *auth_json_text(const json_t *v)
{
    if (v == NULL)
        return NULL;
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    char *out = s ? xstrdup(s) : NULL;
    free(s);
    return out;
}

void auth_refuse(auth_outcome *out, bool report, const char *error, const char *reason)
{
    auth_outcome_clear(out);
    out->reason = reason;
    if (!report) {
        out->verdict = AUTH_PASS;
        return;
    }
    out->verdict = AUTH_REJECT;
    if (error != NULL) {
        json_t *j = json_pack("{s:s}", "error", error);
        out->client_data = auth_json_text(j);
        json_decref(j);
    }
}

static void login_free(auth_login *l)
{
    json_decref(l->data);
    if (l->data_text != NULL)
        sodium_memzero(l->data_text, strlen(l->data_text)); /* it holds a password or a token */
    xfree(l->data_text);
    xfree(l->conn_data);
    auth_outcome_clear(&l->out);
    atomic_fetch_sub(&l->owner->pending, 1);
    xfree(l);
}

void auth_login_drop(auth_login *l)
{
    login_free(l);
}

/* ---- the pool ---- */

static void *worker_main(void *arg)
{
    auth *a = arg;
    for (;;) {
        auth_login *l = queue_pop(a->jobs, 1000);
        if (l == NULL)
            continue;
        if (l->session_id == 0) { /* the stop marker */
            xfree(l);
            break;
        }
        advance(a, l, ON_WORKER);
    }
    return NULL;
}

static void free_job(void *p)
{
    auth_login *l = p;
    if (l->session_id == 0)
        xfree(l);
    else
        login_free(l);
}

/* ---- running the list ---- */

/* l is answered: now on the service thread, else through the done list. */
static void finish(auth *a, auth_login *l, enum where where);

static void advance(auth *a, auth_login *l, enum where where)
{
    while (l->next < a->count) {
        strategy *st = &a->strategies[l->next];
        uint8_t cred[MAX_CREDENTIAL + 64];
        size_t clen = 0;
        if (a->cache != NULL && st->ops->credential != NULL &&
            (clen = st->ops->credential(st->self, l, cred, sizeof(cred))) > 0 &&
            auth_cache_get(a->cache, l->next, cred, clen, &l->out)) {
            atomic_fetch_add(&a->cache_hits, 1);
            sodium_memzero(cred, clen);
            finish(a, l, where);
            return;
        }
        if (st->ops->run == AUTH_RUN_ASYNC) {
            st->ops->start(st->self, l);
            return;
        }
        if (st->ops->run == AUTH_RUN_POOL && where != ON_WORKER) {
            if (atomic_load(&a->stopping) || queue_push(a->jobs, l, 0) != 0)
                login_free(l); /* stopping (the queue holds every pending login otherwise) */
            return;
        }
        st->ops->check(st->self, l, &l->out);
        if (l->out.verdict == AUTH_PASS) {
            auth_outcome_clear(&l->out);
            l->next++;
            continue;
        }
        if (l->out.verdict == AUTH_ACCEPT && clen > 0)
            auth_cache_put(a->cache, l->next, cred, clen, &l->out);
        sodium_memzero(cred, clen);
        finish(a, l, where);
        return;
    }
    /* every strategy passed: deepstream's callback(false) */
    auth_outcome_clear(&l->out);
    l->out.verdict = AUTH_REJECT;
    l->out.reason = a->count > 1 ? "no strategy accepted the login" : "unknown user";
    finish(a, l, where);
}

void auth_step_done(auth_login *l, auth_outcome *out)
{
    auth *a = l->owner;
    auth_outcome_clear(&l->out);
    l->out = *out;
    memset(out, 0, sizeof(*out));
    if (l->out.verdict == AUTH_PASS) {
        auth_outcome_clear(&l->out);
        l->next++;
        advance(a, l, ON_OTHER);
    } else
        finish(a, l, ON_OTHER);
}

static void complete(auth *a, auth_login *l);

static void finish(auth *a, auth_login *l, enum where where)
{
    if (where == ON_SERVICE) {
        complete(a, l);
        return;
    }
    l->next_done = NULL;
    pthread_mutex_lock(&a->done_lock);
    bool was_empty = a->done_head == NULL;
    if (was_empty)
        a->done_head = l;
    else
        a->done_tail->next_done = l;
    a->done_tail = l;
    pthread_mutex_unlock(&a->done_lock);
    if (was_empty) /* otherwise the service thread is already woken and drains this one too */
        a->hooks.wake(a->hooks.ctx);
}

void auth_drain(auth *a)
{
    pthread_mutex_lock(&a->done_lock);
    auth_login *l = a->done_head;
    a->done_head = a->done_tail = NULL;
    pthread_mutex_unlock(&a->done_lock);
    while (l != NULL) {
        auth_login *next = l->next_done;
        complete(a, l);
        l = next;
    }
}

/* ---- answering the client ---- */

static void send_auth(session *s, int action, const char *data)
{
    reply_send(s, TOPIC__TOPIC_AUTH, &(client_reply){.action = action, .data = data});
}

static void login_ok(auth *a, session *s, const char *user_id, const char *client_data, const char *server_data)
{
    atomic_fetch_add(&a->accepted, 1);
    session_login(s, user_id, server_data);
    send_auth(s, AUTH__ACTION__AUTH_AUTH_SUCCESSFUL, client_data);
    a->hooks.login(a->hooks.ctx, s);
    log_info("login", "session=%llu user=%s", (unsigned long long)s->id, user_id);
}

static void login_failed(auth *a, session *s, const char *data, const char *user, const char *reason)
{
    atomic_fetch_add(&a->refused, 1);
    if (s->sink != NULL) {
        s->sink->checked(s, &(auth_outcome){.verdict = AUTH_REJECT, .client_data = (char *)data, .reason = reason});
        return;
    }
    s->auth_attempts++;
    send_auth(s, AUTH__ACTION__AUTH_AUTH_UNSUCCESSFUL, data);
    log_info("login-failed", "session=%llu user=%s attempt=%d reason=\"%s\"", (unsigned long long)s->id,
             user ? user : "-", s->auth_attempts, reason ? reason : "refused");
    if (s->auth_attempts >= a->cfg->max_auth_attempts) {
        send_auth(s, AUTH__ACTION__AUTH_TOO_MANY_AUTH_ATTEMPTS, NULL);
        session_close_after_flush(s);
    } else
        session_auth_wait(s, false);
}

static void complete(auth *a, auth_login *l)
{
    session *s = sessions_get(a->set, l->session_id);
    if (s != NULL && !s->closing) {
        s->auth_pending = false;
        auth_outcome *o = &l->out;
        const char *user = json_string_value(json_object_get(l->data, "username"));
        if (o->verdict == AUTH_ACCEPT && (o->user_id == NULL || strlen(o->user_id) > MAX_USERNAME)) {
            auth_outcome_clear(o);
            auth_refuse(o, true, "user id longer than 1024 bytes", "user id too long");
        }
        if (s->sink != NULL) { /* an HTTP request: it answers its client itself */
            atomic_fetch_add(o->verdict == AUTH_ACCEPT ? &a->accepted : &a->refused, 1);
            s->sink->checked(s, o);
        } else if (o->verdict == AUTH_ACCEPT)
            login_ok(a, s, o->user_id, o->client_data ? o->client_data : "null", o->server_data);
        else
            login_failed(a, s, o->client_data, user, o->reason);
    }
    login_free(l);
}

void auth_request(auth *a, session *s, const char *data)
{
    if (s->auth_pending || s->closing) {
        send_auth(s, AUTH__ACTION__AUTH_INVALID_MESSAGE, NULL);
        return;
    }
    json_error_t jerr;
    json_t *params = data != NULL ? json_loads(data, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!json_is_object(params)) {
        log_warn("auth-invalid-data", "session=%llu (not a JSON object; closing)", (unsigned long long)s->id);
        send_auth(s, AUTH__ACTION__AUTH_INVALID_MESSAGE_DATA, NULL);
        session_close_after_flush(s);
        json_decref(params);
        return;
    }
    const char *username = json_string_value(json_object_get(params, "username"));
    if (username != NULL && strlen(username) > MAX_USERNAME) {
        login_failed(a, s, "{\"error\":\"username longer than 1024 bytes\"}", NULL, "username too long");
        json_decref(params);
        return;
    }
    if (atomic_load(&a->pending) >= a->cfg->auth_max_pending) {
        unsigned long long n = atomic_fetch_add(&a->busy, 1);
        if (n % 1000 == 0)
            log_warn("auth-busy", "session=%llu pending=%lld refused_total=%llu", (unsigned long long)s->id,
                     (long long)a->cfg->auth_max_pending, n + 1);
        /* not the client's fault: not counted as an attempt */
        if (s->sink != NULL) {
            json_decref(params);
            s->sink->checked(s, &(auth_outcome){.verdict = AUTH_REJECT, .reason = AUTH_REASON_BUSY});
            return;
        }
        send_auth(s, AUTH__ACTION__AUTH_AUTH_UNSUCCESSFUL,
                  "{\"error\":\"server busy: too many logins being checked, try again\"}");
        json_decref(params);
        return;
    }
    auth_login *l = xcalloc(1, sizeof(*l));
    l->owner = a;
    l->session_id = s->id;
    l->data = params;
    l->data_text = xstrdup(data);
    l->conn_data = xstrdup(s->conn_data ? s->conn_data : "{}");
    atomic_fetch_add(&a->pending, 1);
    s->auth_pending = true;
    session_auth_wait(s, true);
    advance(a, l, ON_SERVICE);
}

bool auth_wants_connection_data(const auth *a)
{
    return a->wants_conn;
}

#define STRATEGY_COUNTERS_MAX 16 /* counters one strategy type may have */

/* The strategies' counters: each family once, with a sample per strategy of
 * its type (a list may hold two webhooks). */
static void strategy_metrics(auth *a, FILE *f)
{
    for (int i = 0; i < a->count; i++) {
        const auth_strategy_ops *ops = a->strategies[i].ops;
        bool first = true;
        for (int j = 0; j < i; j++)
            first &= a->strategies[j].ops != ops;
        if (ops->counters == NULL || !first)
            continue; /* written with the first strategy of its type */
        uint64_t values[AUTH_MAX_STRATEGIES][STRATEGY_COUNTERS_MAX];
        size_t names = 0;
        while (ops->counter_names[names] != NULL && names < STRATEGY_COUNTERS_MAX)
            names++;
        for (int j = i; j < a->count; j++)
            if (a->strategies[j].ops == ops)
                ops->counters(a->strategies[j].self, values[j]);
        for (size_t k = 0; k < names; k++) {
            fprintf(f, "# TYPE eddy_auth_%s_%s_total counter\n", ops->type, ops->counter_names[k]);
            for (int j = i; j < a->count; j++)
                if (a->strategies[j].ops == ops)
                    fprintf(f, "eddy_auth_%s_%s_total{strategy=\"%d\"} %llu\n", ops->type, ops->counter_names[k], j,
                            (unsigned long long)values[j][k]);
        }
    }
}

void auth_metrics(auth *a, FILE *f)
{
    fprintf(f, "# TYPE eddy_auth_logins_total counter\n");
    fprintf(f, "eddy_auth_logins_total{result=\"accepted\"} %llu\n", (unsigned long long)atomic_load(&a->accepted));
    fprintf(f, "eddy_auth_logins_total{result=\"refused\"} %llu\n", (unsigned long long)atomic_load(&a->refused));
    fprintf(f, "# TYPE eddy_auth_busy_total counter\neddy_auth_busy_total %llu\n",
            (unsigned long long)atomic_load(&a->busy));
    fprintf(f, "# TYPE eddy_auth_pending gauge\neddy_auth_pending %ld\n", (long)atomic_load(&a->pending));
    fprintf(f, "# TYPE eddy_auth_cache_hits_total counter\neddy_auth_cache_hits_total %llu\n",
            (unsigned long long)atomic_load(&a->cache_hits));
    auth_cache_metrics(a->cache, f);
    strategy_metrics(a, f);
}

/* ---- lifecycle ---- */

auth *auth_create(const eddy_config *cfg, sessions *set, const auth_hooks *hooks, bool *config_error)
{
    auth *a = xcalloc(1, sizeof(*a));
    a->cfg = cfg;
    a->set = set;
    a->hooks = *hooks;
    pthread_mutex_init(&a->done_lock, NULL);
    bool pool = false;
    for (int i = 0; i < cfg->auth_count; i++) {
        const auth_strategy_ops *ops = strategy_table[cfg->auth[i].type];
        char err[512] = "";
        void *self = ops->create(cfg, i, err, sizeof(err));
        if (self == NULL) {
            fprintf(stderr, "eddy: config error: %s\n", err);
            *config_error = true;
            goto fail;
        }
        a->strategies[i] = (strategy){ops, self};
        a->count = i + 1;
        pool |= ops->run == AUTH_RUN_POOL;
        a->wants_conn |= ops->wants_connection_data;
    }
    a->cache = auth_cache_new(cfg->auth_cache_ttl_ms, (size_t)cfg->auth_cache_size);
    a->jobs = queue_new((size_t)cfg->auth_max_pending + MAX_WORKERS);
    if (pool) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        int n = cfg->auth_workers > 0 ? (int)cfg->auth_workers : cores > 0 ? (int)cores : 1;
        if (n > MAX_WORKERS)
            n = MAX_WORKERS;
        for (int i = 0; i < n; i++) {
            if (pthread_create(&a->workers[i], NULL, worker_main, a) != 0) {
                log_error("auth-worker-failed", "started=%d wanted=%d", i, n);
                goto fail;
            }
            a->nworkers = i + 1;
        }
    }
    char list[256] = "";
    for (int i = 0; i < a->count; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? "," : "", a->strategies[i].ops->type);
    log_info("auth-ready", "strategies=%s workers=%d cache_ttl_ms=%lld", list, a->nworkers,
             (long long)cfg->auth_cache_ttl_ms);
    return a;
fail:
    auth_destroy(a);
    return NULL;
}

void auth_destroy(auth *a)
{
    if (a == NULL)
        return;
    atomic_store(&a->stopping, true);
    /* the workers first (they may start webhooks), then the strategies (the
     * webhook thread may queue work for the workers: dropped while stopping) */
    for (int i = 0; i < a->nworkers; i++) {
        auth_login *stop = xcalloc(1, sizeof(*stop)); /* session_id 0 */
        stop->owner = a;
        while (queue_push(a->jobs, stop, 1000) != 0)
            ;
    }
    for (int i = 0; i < a->nworkers; i++)
        pthread_join(a->workers[i], NULL);
    for (int i = 0; i < a->count; i++)
        if (a->strategies[i].ops->destroy != NULL)
            a->strategies[i].ops->destroy(a->strategies[i].self);
    queue_free(a->jobs, free_job);
    auth_login *l = a->done_head;
    while (l != NULL) {
        auth_login *next = l->next_done;
        login_free(l);
        l = next;
    }
    auth_cache_free(a->cache);
    pthread_mutex_destroy(&a->done_lock);
    xfree(a);
}
