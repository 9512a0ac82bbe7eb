/* auth_http.c - auth type `http` (deepstream's HttpAuthentication): every
 * login is POSTed to options.endpointUrl as {"connectionData": {remoteAddress,
 * headers, referer}, "authData": <the client's authData>} (Content-Type and
 * Accept application/json), with the authData fields named in
 * options.promoteToHeader also sent as headers. Then, as deepstream:
 *  - a status in permittedStatusCodes logs the user in: a JSON object answer
 *    gives id (eddy also takes username when there is no id; neither: "OPEN"),
 *    clientData and serverData (isValid: false in it refuses); a text answer
 *    (or a JSON string) is the user id;
 *  - a status in retryStatusCodes, or a request that failed (refused,
 *    timed out after requestTimeout ms), is tried again after retryInterval
 *    ms, at most retryAttempts more times; then the login is refused with
 *    {"error":"AUTH_RETRY_ATTEMPTS_EXCEEDED"};
 *  - any other status refuses the login, with the answer as data (a JSON
 *    object as it is, text as {"error": text});
 *  - without reportInvalidParameters a refusal passes the login on instead.
 *
 * One thread runs every request through libcurl's multi interface (no thread
 * per login; connections are kept alive and reused); the service loop never
 * waits for a webhook. Bounded: at most maxConcurrentRequests in flight, at
 * most maxQueuedRequests logins held (waiting, in flight or waiting to retry;
 * one more is refused at once with "webhook queue full"), answers of at most
 * maxResponseSize bytes (a larger one fails the login without a retry). */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "internal.h"
#include "log.h"
#include "mem.h"

typedef struct http_auth http_auth;

typedef struct http_req {
    http_auth *h;
    auth_login *l;
    char *body;
    struct curl_slist *headers;
    CURL *easy;
    int retries;      /* made so far */
    int64_t retry_at; /* monotonic ms, while waiting to retry */
    char *resp;
    size_t resp_len;
    bool too_big, json;
    char errbuf[CURL_ERROR_SIZE];
    struct http_req *next;     /* in a queue */
    struct http_req *next_out; /* in flight */
} http_req;

struct http_auth {
    const auth_strategy_config *c;
    bool report;
    CURLM *multi;
    pthread_t thread;
    bool running;
    pthread_mutex_t lock;
    http_req *incoming, *incoming_tail; /* from start(), under lock */
    size_t held;                        /* requests this strategy holds, under lock */
    bool stop;                          /* under lock */
    /* the thread's own */
    http_req *waiting, *waiting_tail; /* for a free slot */
    http_req *retrying;               /* for their retry time */
    http_req *inflight;               /* added to the multi handle */
    int active;
    atomic_ullong requests, failures, retries, queue_full, too_large;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void init_curl(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void req_reset(http_req *r)
{
    if (r->easy != NULL)
        curl_easy_cleanup(r->easy);
    r->easy = NULL;
    xfree(r->resp);
    r->resp = NULL;
    r->resp_len = 0;
    r->too_big = r->json = false;
    r->errbuf[0] = '\0';
}

static void req_free(http_req *r)
{
    req_reset(r);
    curl_slist_free_all(r->headers);
    xfree(r->body);
    xfree(r);
}

/* The request is over: the login goes on with out. */
static void finish(http_auth *h, http_req *r, auth_outcome *out)
{
    auth_login *l = r->l;
    req_free(r);
    pthread_mutex_lock(&h->lock);
    h->held--;
    pthread_mutex_unlock(&h->lock);
    auth_step_done(l, out);
}

static void drop_list(http_auth *h, http_req *r)
{
    while (r != NULL) {
        http_req *next = r->next;
        auth_login_drop(r->l);
        req_free(r);
        r = next;
    }
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    http_req *r = arg;
    size_t len = size * n;
    size_t max = (size_t)r->h->c->max_response;
    if (r->resp_len + len > max) {
        r->too_big = true;
        return 0; /* libcurl fails the transfer (CURLE_WRITE_ERROR) */
    }
    r->resp = xrealloc(r->resp, r->resp_len + len + 1);
    memcpy(r->resp + r->resp_len, data, len);
    r->resp_len += len;
    r->resp[r->resp_len] = '\0';
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    http_req *r = arg;
    size_t len = size * n;
    if (len > 13 && strncasecmp(data, "content-type:", 13) == 0) {
        char v[128];
        size_t vl = len - 13 < sizeof(v) - 1 ? len - 13 : sizeof(v) - 1;
        memcpy(v, data + 13, vl);
        v[vl] = '\0';
        r->json = strcasestr(v, "json") != NULL; /* application/json, application/...+json */
    }
    return len;
}

static void begin(http_auth *h, http_req *r)
{
    const auth_strategy_config *c = h->c;
    req_reset(r);
    r->easy = curl_easy_init();
    if (r->easy == NULL) {
        auth_outcome out = {0};
        auth_refuse(&out, h->report, "AUTH_RETRY_ATTEMPTS_EXCEEDED", "libcurl: no easy handle");
        finish(h, r, &out);
        return;
    }
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, c->endpoint_url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->request_timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->request_timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 2L); /* deepstream's follow_max */
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "eddy/" EDDY_VERSION);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        auth_outcome out = {0};
        auth_refuse(&out, h->report, "AUTH_RETRY_ATTEMPTS_EXCEEDED", "libcurl: cannot add a request");
        finish(h, r, &out);
        return;
    }
    h->active++;
    r->next_out = h->inflight;
    h->inflight = r;
    atomic_fetch_add(&h->requests, 1);
}

static bool has_code(const config_codes *codes, long status)
{
    for (int i = 0; i < codes->count; i++)
        if (codes->v[i] == status)
            return true;
    return false;
}

/* Failed, or answered with a retry status: again later, or give up. */
static void retry(http_auth *h, http_req *r, const char *why)
{
    if (r->retries < h->c->retry_attempts) {
        r->retries++;
        atomic_fetch_add(&h->retries, 1);
        req_reset(r);
        r->retry_at = mono_ms() + h->c->retry_interval_ms;
        r->next = h->retrying;
        h->retrying = r;
        return;
    }
    log_warn("auth-http-failed", "session=%llu url=%s attempts=%d last=\"%s\"", (unsigned long long)r->l->session_id,
             h->c->endpoint_url, r->retries + 1, why);
    auth_outcome out = {0};
    auth_refuse(&out, h->report, "AUTH_RETRY_ATTEMPTS_EXCEEDED", "webhook failed");
    finish(h, r, &out);
}

/* deepstream's answer handling for a status that is not retried. */
static void answered(http_auth *h, http_req *r, long status)
{
    auth_outcome out = {0};
    json_t *body = r->json && r->resp_len > 0 ? json_loadb(r->resp, r->resp_len, JSON_DECODE_ANY, NULL) : NULL;
    const char *text = body != NULL ? json_string_value(body) : r->resp_len > 0 ? r->resp : NULL;
    if (!has_code(&h->c->permitted, status)) {
        auth_refuse(&out, h->report, NULL, "webhook refused");
        if (out.verdict == AUTH_REJECT) {
            if (json_is_object(body) && json_object_size(body) > 0)
                out.client_data = auth_json_text(body);
            else if (text != NULL && text[0] != '\0') {
                json_t *t = json_stringn(text, strlen(text));
                json_t *e = t ? json_pack("{s:o}", "error", t) : NULL;
                out.client_data = auth_json_text(e);
                json_decref(e);
            }
        }
    } else if (json_is_object(body)) {
        json_t *valid = json_object_get(body, "isValid");
        json_t *id = json_object_get(body, "id");
        if (id == NULL || json_is_null(id) || json_is_false(id) || (json_is_string(id) && json_string_length(id) == 0))
            id = json_object_get(body, "username"); /* eddy's: deepstream 7 reads only id */
        char idbuf[32];
        const char *uid = json_string_value(id);
        if (uid == NULL && json_is_integer(id)) {
            snprintf(idbuf, sizeof(idbuf), "%lld", (long long)json_integer_value(id));
            uid = idbuf;
        }
        out.verdict = json_is_false(valid) ? AUTH_REJECT : AUTH_ACCEPT;
        out.reason = "webhook";
        out.user_id = xstrdup(uid != NULL && uid[0] != '\0' ? uid : "OPEN");
        out.client_data = auth_json_text(json_object_get(body, "clientData"));
        out.server_data = auth_json_text(json_object_get(body, "serverData"));
        const char *token = json_string_value(json_object_get(body, "token")); /* the HTTP API's authPath answers it */
        if (token != NULL && token[0] != '\0' && strlen(token) <= 8192)
            out.token = xstrdup(token);
    } else {
        out.verdict = AUTH_ACCEPT;
        out.reason = "webhook";
        out.user_id = xstrdup(text != NULL && text[0] != '\0' ? text : "OPEN");
    }
    json_decref(body);
    finish(h, r, &out);
}

static void done(http_auth *h, http_req *r, CURLcode rc)
{
    h->active--;
    for (http_req **pp = &h->inflight; *pp != NULL; pp = &(*pp)->next_out)
        if (*pp == r) {
            *pp = r->next_out;
            break;
        }
    if (rc != CURLE_OK) {
        if (r->too_big) {
            atomic_fetch_add(&h->too_large, 1);
            log_warn("auth-http-too-large", "session=%llu url=%s max=%lld", (unsigned long long)r->l->session_id,
                     h->c->endpoint_url, (long long)h->c->max_response);
            auth_outcome out = {0};
            auth_refuse(&out, h->report, "webhook answer too large", "webhook answer too large");
            finish(h, r, &out);
            return;
        }
        atomic_fetch_add(&h->failures, 1);
        char why[CURL_ERROR_SIZE + 64];
        snprintf(why, sizeof(why), "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
        log_warn("auth-http-error", "session=%llu url=%s attempt=%d error=\"%s\"", (unsigned long long)r->l->session_id,
                 h->c->endpoint_url, r->retries + 1, why);
        retry(h, r, why);
        return;
    }
    long status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 500)
        log_warn("auth-http-server-error", "session=%llu url=%s status=%ld", (unsigned long long)r->l->session_id,
                 h->c->endpoint_url, status);
    if (has_code(&h->c->retry_codes, status)) {
        char why[64];
        snprintf(why, sizeof(why), "status %ld", status);
        retry(h, r, why);
        return;
    }
    answered(h, r, status);
}

static void *http_main(void *arg)
{
    http_auth *h = arg;
    for (;;) {
        pthread_mutex_lock(&h->lock);
        bool stop = h->stop;
        http_req *in = h->incoming;
        h->incoming = h->incoming_tail = NULL;
        pthread_mutex_unlock(&h->lock);
        if (in != NULL) {
            if (h->waiting_tail)
                h->waiting_tail->next = in;
            else
                h->waiting = in;
            while (in->next)
                in = in->next;
            h->waiting_tail = in;
        }
        if (stop)
            break;
        /* retries that are due go first */
        int64_t now = mono_ms(), next_retry = -1;
        for (http_req **pp = &h->retrying; *pp != NULL;) {
            http_req *r = *pp;
            if (r->retry_at <= now) {
                *pp = r->next;
                r->next = h->waiting;
                h->waiting = r;
                if (h->waiting_tail == NULL)
                    h->waiting_tail = r;
            } else {
                if (next_retry < 0 || r->retry_at < next_retry)
                    next_retry = r->retry_at;
                pp = &r->next;
            }
        }
        while (h->waiting != NULL && h->active < h->c->max_concurrent) {
            http_req *r = h->waiting;
            h->waiting = r->next;
            if (h->waiting == NULL)
                h->waiting_tail = NULL;
            r->next = NULL;
            begin(h, r);
        }
        int running;
        curl_multi_perform(h->multi, &running);
        CURLMsg *m;
        int left;
        bool finished = false;
        while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            http_req *r = NULL;
            CURL *e = m->easy_handle;
            CURLcode rc = m->data.result;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r);
            curl_multi_remove_handle(h->multi, e);
            r->next = NULL;
            done(h, r, rc);
            finished = true;
        }
        long timeout = 1000, ct = -1;
        if (finished || (h->waiting != NULL && h->active < h->c->max_concurrent))
            timeout = 0;
        if (next_retry >= 0 && next_retry - now < timeout)
            timeout = next_retry - now > 0 ? (long)(next_retry - now) : 0;
        if (curl_multi_timeout(h->multi, &ct) == CURLM_OK && ct >= 0 && ct < timeout)
            timeout = ct;
        if (timeout > 0)
            curl_multi_poll(h->multi, NULL, 0, (int)timeout, NULL);
    }
    return NULL;
}

static void http_destroy(void *self)
{
    http_auth *h = self;
    if (h == NULL)
        return;
    if (h->running) {
        pthread_mutex_lock(&h->lock);
        h->stop = true;
        pthread_mutex_unlock(&h->lock);
        curl_multi_wakeup(h->multi);
        pthread_join(h->thread, NULL);
    }
    /* what is still in flight, waiting or retrying: dropped */
    while (h->inflight != NULL) {
        http_req *r = h->inflight;
        h->inflight = r->next_out;
        curl_multi_remove_handle(h->multi, r->easy);
        r->next = NULL;
        drop_list(h, r);
    }
    drop_list(h, h->waiting);
    drop_list(h, h->retrying);
    drop_list(h, h->incoming);
    if (h->multi != NULL)
        curl_multi_cleanup(h->multi);
    pthread_mutex_destroy(&h->lock);
    xfree(h);
}

static void *http_create(const eddy_config *cfg, int index, char *err, size_t err_len)
{
    const auth_strategy_config *c = &cfg->auth[index];
    char name[300];
    config_auth_option_name(cfg, index, "endpointUrl", name, sizeof(name));
    if (strncmp(c->endpoint_url, "http://", 7) != 0 && strncmp(c->endpoint_url, "https://", 8) != 0) {
        snprintf(err, err_len, "%s: want an http:// or https:// URL (got '%s')", name, c->endpoint_url);
        return NULL;
    }
    pthread_once(&curl_once, init_curl);
    if (curl_init_rc != CURLE_OK) {
        snprintf(err, err_len, "%s: libcurl would not start: %s", name, curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    http_auth *h = xcalloc(1, sizeof(*h));
    h->c = c;
    h->report = config_auth_report_invalid(cfg, index);
    pthread_mutex_init(&h->lock, NULL);
    h->multi = curl_multi_init();
    if (h->multi == NULL) {
        snprintf(err, err_len, "%s: libcurl: no multi handle", name);
        goto fail;
    }
    curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)c->max_concurrent);
    if (pthread_create(&h->thread, NULL, http_main, h) != 0) {
        snprintf(err, err_len, "%s: cannot start the webhook thread", name);
        goto fail;
    }
    h->running = true;
    return h;
fail:
    http_destroy(h);
    return NULL;
}

/* promoteToHeader: the named authData fields that are truthy scalars, as headers. */
static struct curl_slist *headers_for(const http_auth *h, const auth_login *l)
{
    struct curl_slist *list = curl_slist_append(NULL, "Content-Type: application/json; charset=utf-8");
    list = curl_slist_append(list, "Accept: application/json");
    list = curl_slist_append(list, "Expect:"); /* no 100-continue round trip */
    for (int i = 0; i < h->c->promote.count; i++) {
        const char *name = h->c->promote.v[i];
        json_t *v = json_object_get(l->data, name);
        char value[2048];
        if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < sizeof(value))
            snprintf(value, sizeof(value), "%s", json_string_value(v));
        else if (json_is_integer(v) && json_integer_value(v) != 0)
            snprintf(value, sizeof(value), "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v) && json_real_value(v) != 0)
            snprintf(value, sizeof(value), "%.17g", json_real_value(v));
        else if (json_is_true(v))
            snprintf(value, sizeof(value), "true");
        else
            continue;
        bool clean = true;
        for (const char *p = value; *p; p++)
            clean &= (unsigned char)*p >= 0x20 && *p != 0x7f;
        if (!clean)
            continue; /* a header cannot carry it (and must not be split by it) */
        char line[2200];
        snprintf(line, sizeof(line), "%s: %s", name, value);
        list = curl_slist_append(list, line);
    }
    return list;
}

static void http_start(void *self, auth_login *l)
{
    http_auth *h = self;
    pthread_mutex_lock(&h->lock);
    bool full = h->stop || h->held >= (size_t)h->c->max_queued;
    if (!full)
        h->held++;
    pthread_mutex_unlock(&h->lock);
    if (full) {
        unsigned long long n = atomic_fetch_add(&h->queue_full, 1);
        if (n % 1000 == 0)
            log_warn("auth-http-queue-full", "session=%llu max=%lld refused_total=%llu",
                     (unsigned long long)l->session_id, (long long)h->c->max_queued, n + 1);
        auth_outcome out = {0};
        auth_refuse(&out, h->report, "webhook queue full", "webhook queue full");
        auth_step_done(l, &out);
        return;
    }
    http_req *r = xcalloc(1, sizeof(*r));
    r->h = h;
    r->l = l;
    size_t len = strlen(l->conn_data) + strlen(l->data_text) + 40;
    r->body = xmalloc(len);
    snprintf(r->body, len, "{\"connectionData\":%s,\"authData\":%s}", l->conn_data, l->data_text);
    r->headers = headers_for(h, l);
    pthread_mutex_lock(&h->lock);
    if (h->incoming_tail)
        h->incoming_tail->next = r;
    else
        h->incoming = r;
    h->incoming_tail = r;
    pthread_mutex_unlock(&h->lock);
    curl_multi_wakeup(h->multi);
}

/* eddy_auth_http_<name>_total: requests sent (retries included), logins
 * failed by the webhook's transport (no answer, a timeout, an answer too
 * large), retries, logins refused at once with the queue full, answers too large. */
static const char *const webhook_counter_names[] = {"requests", "failures", "retries", "queue_full", "too_large", NULL};

static void webhook_counters(void *self, uint64_t *v)
{
    http_auth *h = self;
    v[0] = atomic_load(&h->requests);
    v[1] = atomic_load(&h->failures);
    v[2] = atomic_load(&h->retries);
    v[3] = atomic_load(&h->queue_full);
    v[4] = atomic_load(&h->too_large);
}

const auth_strategy_ops auth_http_ops = {
    .type = "http",
    .run = AUTH_RUN_ASYNC,
    .wants_connection_data = true,
    .create = http_create,
    .destroy = http_destroy,
    .start = http_start,
    .counter_names = webhook_counter_names,
    .counters = webhook_counters,
};
