/* http.c - plain HTTP on the websocket port, as deepstream's HTTP service
 * serves it: GET healthCheckPath (200 while the broker serves), GET /metrics
 * (Prometheus text, written by the broker), deepstream's HTTP API (POST
 * postPath and authPath, handed to api.c with the body read whole; GET
 * getPath answered as deepstream does), CORS (allowAllOrigins, or origins and
 * hostUrl, and OPTIONS preflights), and the errors deepstream answers before
 * a request reaches its handler (405, 415, 404, a body over maxMessageSize),
 * in its words. Every answer is written from the connection's writable
 * callback or at once; none waits on anything.
 *
 * Also what a websocket's upgrade request said, as deepstream hands it to
 * auth webhooks (connectionData). Not the API's operations (api.c, jif.c). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "internal.h"
#include "log.h"
#include "mem.h"

#define DISCARD_MAX (64u << 20) /* bytes of an oversized body read and dropped before the connection is closed */
#define METHODS "GET, POST, OPTIONS"
#define ALLOWED_HEADERS "X-Requested-With, X-HTTP-Method-Override, Content-Type, Accept"

/* The endpoints counted in metrics. */
enum endpoint { EP_POST, EP_AUTH, EP_GET, EP_HEALTH, EP_METRICS, EP_OPTIONS, EP_OTHER, EP_COUNT };
static const char *const endpoint_names[EP_COUNT] = {"post", "auth", "get", "health", "metrics", "options", "other"};
static const int counted_status[] = {200, 204, 400, 401, 403, 404, 405, 411, 415, 500, 503};
#define STATUSES (sizeof(counted_status) / sizeof(counted_status[0]))

struct http_front {
    const eddy_config *cfg;
    api *api;
    void (*metrics)(void *ctx, FILE *f);
    void *metrics_ctx;
    uint64_t answered[EP_COUNT][STATUSES + 1]; /* the last column: any other status */
    uint64_t bodies_too_large;
};

/* One request on a connection: from its headers until its answer is written.
 * Kept in lws's opaque user data of the connection. */
struct http_conn {
    http_front *h;
    struct lws *wsi;
    enum endpoint ep;
    char allow_origin[512]; /* the Access-Control-Allow-Origin answered ("*", an origin, or "") */
    bool json;              /* Content-Type: application/json */
    uint8_t *body;
    size_t len, cap;
    uint64_t received;
    bool too_large;
    char refused[512];      /* CORS refused it: the 403's text, answered once the body is read */
    api_request *req;       /* the API request answering it (api.c) */
    /* the answer, once known */
    bool ready;
    int status;
    const char *type;
    char *answer;
    size_t answer_len;
    const char *retry_after;
};

http_front *http_front_new(const eddy_config *cfg, api *a, void (*metrics)(void *ctx, FILE *f), void *ctx)
{
    http_front *h = xcalloc(1, sizeof(*h));
    h->cfg = cfg;
    h->api = a;
    h->metrics = metrics;
    h->metrics_ctx = ctx;
    return h;
}

void http_front_free(http_front *h)
{
    xfree(h);
}

static void count(http_front *h, enum endpoint ep, int status)
{
    size_t i = 0;
    while (i < STATUSES && counted_status[i] != status)
        i++;
    h->answered[ep][i]++;
}

/* Copies header token t (or custom header `name:`) into buf; "" when absent or too long. */
static const char *header(struct lws *wsi, enum lws_token_indexes t, const char *custom, char *buf, size_t len)
{
    buf[0] = '\0';
    int n = custom ? lws_hdr_custom_length(wsi, custom, (int)strlen(custom)) : lws_hdr_total_length(wsi, t);
    if (n <= 0 || n >= (int)len)
        return buf;
    if ((custom ? lws_hdr_custom_copy(wsi, buf, (int)len, custom, (int)strlen(custom)) : lws_hdr_copy(wsi, buf, (int)len, t)) < 0)
        buf[0] = '\0';
    return buf;
}

/* Writes a whole answer (headers and body) now. Returns lws's callback result. */
static int write_now(http_front *h, struct lws *wsi, enum endpoint ep, int status, const char *type,
                     const char *body, size_t len, const char *allow_origin, const char *retry_after, bool preflight)
{
    count(h, ep, status);
    size_t cap = LWS_PRE + 2048 + len;
    uint8_t *buf = xmalloc(cap), *start = buf + LWS_PRE, *p = start, *end = buf + cap;
    int rv = -1;
    bool credentials = allow_origin[0] != '\0' && strcmp(allow_origin, "*") != 0;
    if (lws_add_http_common_headers(wsi, (unsigned)status, type, len, &p, end) != 0)
        goto done;
    if (allow_origin[0] != '\0' &&
        lws_add_http_header_by_name(wsi, (const uint8_t *)"access-control-allow-origin:", (const uint8_t *)allow_origin,
                                    (int)strlen(allow_origin), &p, end) != 0)
        goto done;
    if (credentials &&
        (lws_add_http_header_by_name(wsi, (const uint8_t *)"access-control-allow-credentials:", (const uint8_t *)"true",
                                     4, &p, end) != 0 ||
         lws_add_http_header_by_name(wsi, (const uint8_t *)"vary:", (const uint8_t *)"Origin", 6, &p, end) != 0))
        goto done;
    if (preflight &&
        (lws_add_http_header_by_name(wsi, (const uint8_t *)"access-control-allow-methods:", (const uint8_t *)METHODS,
                                     (int)strlen(METHODS), &p, end) != 0 ||
         lws_add_http_header_by_name(wsi, (const uint8_t *)"access-control-allow-headers:",
                                     (const uint8_t *)ALLOWED_HEADERS, (int)strlen(ALLOWED_HEADERS), &p, end) != 0))
        goto done;
    if (retry_after != NULL &&
        lws_add_http_header_by_name(wsi, (const uint8_t *)"retry-after:", (const uint8_t *)retry_after,
                                    (int)strlen(retry_after), &p, end) != 0)
        goto done;
    if (lws_finalize_http_header(wsi, &p, end) != 0)
        goto done;
    memcpy(p, body, len);
    p += len;
    if (lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_FINAL) >= 0)
        rv = lws_http_transaction_completed(wsi) ? -1 : 0;
done:
    xfree(buf);
    return rv;
}

/* deepstream's error answer: text, then a blank line. */
static int text_now(http_front *h, struct lws *wsi, enum endpoint ep, int status, const char *text, const char *origin)
{
    char body[1024];
    int n = snprintf(body, sizeof(body), "%s\r\n\r\n", text);
    return write_now(h, wsi, ep, status, "text/plain; charset=utf-8", body, (size_t)n, origin, NULL, false);
}

void http_answer(http_conn *c, int status, const char *type, const char *body, size_t len, const char *retry_after)
{
    if (c == NULL || c->ready)
        return;
    c->req = NULL; /* answered: the request is done with c */
    c->ready = true;
    c->status = status;
    c->type = type;
    c->answer = xmalloc(len + 1);
    memcpy(c->answer, body, len);
    c->answer_len = len;
    c->retry_after = retry_after;
    lws_callback_on_writable(c->wsi);
}

void http_answer_text(http_conn *c, int status, const char *text, const char *retry_after)
{
    char body[4096];
    int n = snprintf(body, sizeof(body), "%s\r\n\r\n", text);
    if (n >= (int)sizeof(body))
        n = (int)sizeof(body) - 1;
    http_answer(c, status, "text/plain; charset=utf-8", body, (size_t)n, retry_after);
}

static void conn_free(http_conn *c)
{
    if (c == NULL)
        return;
    if (c->req != NULL)
        api_gone(c->req); /* the client left before its answer */
    xfree(c->body);
    xfree(c->answer);
    xfree(c);
}

/* CORS (deepstream's verifyOrigin): the Access-Control-Allow-Origin for
 * this request into origin and true, or false with the refusal's text (a
 * 403) in why. */
static bool check_origin(const eddy_config *cfg, struct lws *wsi, char *origin, size_t len, char *why, size_t why_len)
{
    if (cfg->http_allow_all_origins) {
        snprintf(origin, len, "*");
        return true;
    }
    char host[512];
    if (cfg->http_host_url[0] != '\0' && strcmp(header(wsi, WSI_TOKEN_HOST, NULL, host, sizeof(host)),
                                                  cfg->http_host_url) != 0) {
        origin[0] = '\0';
        snprintf(why, why_len, "Forbidden Host.");
        return false;
    }
    header(wsi, WSI_TOKEN_ORIGIN, NULL, origin, len);
    if (origin[0] == '\0')
        header(wsi, WSI_TOKEN_HTTP_REFERER, NULL, origin, len);
    for (int i = 0; i < cfg->http_origins.count; i++)
        if (strcmp(origin, cfg->http_origins.v[i]) == 0)
            return true;
    if (origin[0] == '\0')
        snprintf(why, why_len, "CORS is configured for this. All requests must set a valid \"Origin\" header.");
    else
        snprintf(why, why_len, "Origin \"%.400s\" is forbidden.", origin);
    origin[0] = '\0';
    return false;
}

/* deepstream's prefix routing: the longest registered path the URL starts with. */
static bool starts(const char *uri, const char *path)
{
    return strncmp(uri, path, strlen(path)) == 0;
}

static enum endpoint post_route(const eddy_config *cfg, const char *uri)
{
    bool post = starts(uri, cfg->http_post_path);
    bool to_auth = cfg->http_enable_auth_endpoint && starts(uri, cfg->http_auth_path);
    if (post && to_auth)
        return strlen(cfg->http_auth_path) > strlen(cfg->http_post_path) ? EP_AUTH : EP_POST;
    return to_auth ? EP_AUTH : post ? EP_POST : EP_OTHER;
}

/* OPTIONS: deepstream's preflight checks. */
static int preflight(http_front *h, struct lws *wsi, const char *origin)
{
    char method[64], headers[1024];
    header(wsi, 0, "access-control-request-method:", method, sizeof(method));
    header(wsi, WSI_TOKEN_HTTP_AC_REQUEST_HEADERS, NULL, headers, sizeof(headers)); /* a token of its own in lws */
    char why[1200];
    if (method[0] == '\0')
        return text_now(h, wsi, EP_OPTIONS, 400, "Missing header \"Access-Control-Request-Method\".", origin);
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0 && strcmp(method, "OPTIONS") != 0) {
        snprintf(why, sizeof(why), "Method %s is forbidden. Supported methods: " METHODS, method);
        return text_now(h, wsi, EP_OPTIONS, 403, why, origin);
    }
    if (headers[0] == '\0')
        return text_now(h, wsi, EP_OPTIONS, 400, "Missing header \"Access-Control-Request-Headers\".", origin);
    for (char *save = NULL, *t = strtok_r(headers, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*t))
            t++;
        size_t n = strlen(t);
        while (n > 0 && isspace((unsigned char)t[n - 1]))
            t[--n] = '\0';
        static const char *const allowed[] = {"x-requested-with", "x-http-method-override", "content-type", "accept"};
        bool ok = false;
        for (size_t i = 0; i < 4; i++)
            ok |= strcasecmp(t, allowed[i]) == 0;
        if (!ok) {
            snprintf(why, sizeof(why), "Header %.512s is forbidden. Supported headers: " ALLOWED_HEADERS, t);
            return text_now(h, wsi, EP_OPTIONS, 403, why, origin);
        }
    }
    return write_now(h, wsi, EP_OPTIONS, 204, "text/plain; charset=utf-8", "", 0, origin, NULL, true);
}

static int serve_metrics(http_front *h, struct lws *wsi, const char *origin)
{
    char *text = NULL;
    size_t text_len = 0;
    FILE *f = open_memstream(&text, &text_len);
    if (f == NULL)
        return -1;
    h->metrics(h->metrics_ctx, f);
    fclose(f);
    int rv = write_now(h, wsi, EP_METRICS, 200, "text/plain; version=0.0.4", text, text_len, origin, NULL, false);
    free(text); /* open_memstream's buffer comes from malloc */
    return rv;
}

static void on_body_done(http_front *h, http_conn *c);

/* The request's headers are in: answers it, or (a POST) waits for its body. */
static int on_request(http_front *h, struct lws *wsi, const char *uri)
{
    const eddy_config *cfg = h->cfg;
    char *muri;
    int mlen;
    int method = lws_http_get_uri_and_method(wsi, &muri, &mlen);
    char origin[512];
    /* health checks and metrics are for operators' tools, not browsers: no Origin needed */
    if (method == LWSHUMETH_GET && strcmp(uri, "/metrics") == 0)
        return serve_metrics(h, wsi, cfg->http_allow_all_origins ? "*" : "");
    if (method == LWSHUMETH_GET && strcmp(uri, cfg->http_health_check_path) == 0) {
        const char ok[] = "OK";
        return write_now(h, wsi, EP_HEALTH, 200, "text/plain; charset=utf-8", ok, 2,
                         cfg->http_allow_all_origins ? "*" : "", NULL, false);
    }
    char why[512];
    const char *refused = check_origin(cfg, wsi, origin, sizeof(origin), why, sizeof(why)) ? NULL : why;
    bool serving_api = cfg->http_enabled;
    if (method == LWSHUMETH_POST) {
        http_conn *c = xcalloc(1, sizeof(*c));
        c->h = h;
        c->wsi = wsi;
        c->ep = serving_api ? post_route(cfg, uri) : EP_OTHER;
        snprintf(c->allow_origin, sizeof(c->allow_origin), "%s", origin);
        char type[256];
        header(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, NULL, type, sizeof(type));
        char *semi = strchr(type, ';');
        if (semi != NULL)
            *semi = '\0';
        for (size_t n = strlen(type); n > 0 && isspace((unsigned char)type[n - 1]);)
            type[--n] = '\0';
        c->json = strcasecmp(type, "application/json") == 0;
        if (refused != NULL) /* answered once the body is in (read and dropped) */
            snprintf(c->refused, sizeof(c->refused), "%s", refused);
        lws_set_opaque_user_data(wsi, c);
        char length[32], encoding[64];
        if (header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, NULL, length, sizeof(length))[0] != '\0') {
            c->too_large = atoll(length) > cfg->http_max_message_size;
            return 0; /* lws reads the body: on_body, then on_body_done */
        }
        if (header(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING, NULL, encoding, sizeof(encoding))[0] != '\0') {
            /* lws reads request bodies by their length only: refuse, and close (the body is unread) */
            lws_set_opaque_user_data(wsi, NULL);
            conn_free(c);
            text_now(h, wsi, EP_OTHER, 411, "Length Required: send the body with a Content-Length header.", origin);
            return -1;
        }
        on_body_done(h, c); /* no body */
        return 0;
    }
    if (refused != NULL)
        return text_now(h, wsi, EP_OTHER, 403, refused, origin);
    if (method == LWSHUMETH_OPTIONS)
        return preflight(h, wsi, origin);
    if (method == LWSHUMETH_GET) {
        if (serving_api && starts(uri, cfg->http_get_path))
            return text_now(h, wsi, EP_GET, 400,
                            "Reading records via HTTP GET is not yet implemented, please use a post request instead.",
                            origin);
        return text_now(h, wsi, EP_OTHER, 404, "Endpoint not found.", origin);
    }
    return text_now(h, wsi, EP_OTHER, 405, "Unsupported method. Supported methods: " METHODS, origin);
}

static int on_body(http_front *h, http_conn *c, const void *in, size_t len)
{
    if (len == 0) /* (lws calls with nothing for a Content-Length: 0) */
        return 0;
    c->received += len;
    if (c->ready || c->too_large || c->len + len > (size_t)h->cfg->http_max_message_size) {
        c->too_large = !c->ready;
        /* read and dropped, so the client, still sending, reads the answer */
        return c->received > (uint64_t)h->cfg->http_max_message_size + DISCARD_MAX ? -1 : 0;
    }
    if (c->len + len > c->cap) { /* bounded by maxMessageSize above */
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->len + len)
            cap *= 2;
        c->body = xrealloc(c->body, cap);
        c->cap = cap;
    }
    memcpy(c->body + c->len, in, len);
    c->len += len;
    return 0;
}

static void on_body_done(http_front *h, http_conn *c)
{
    if (c->ready)
        return;
    if (c->refused[0] != '\0') {
        http_answer_text(c, 403, c->refused, NULL);
        return;
    }
    if (c->too_large) {
        h->bodies_too_large++;
        log_info("http-body-too-large", "bytes=%llu max=%lld", (unsigned long long)c->received,
                 (long long)h->cfg->http_max_message_size);
        http_answer_text(c, 400, "Failed to parse body of request: request entity too large", NULL);
        return;
    }
    if (c->ep == EP_OTHER) {
        http_answer_text(c, 404, "Endpoint not found.", NULL);
        return;
    }
    if (!c->json) {
        http_answer_text(c, 415, "Invalid \"Content-Type\" header. Supported media types: \"application/json\"", NULL);
        return;
    }
    c->req = api_post(h->api, c, c->wsi, c->ep == EP_AUTH, (const char *)c->body, c->len);
    xfree(c->body); /* the request keeps what it needs */
    c->body = NULL;
    c->len = c->cap = 0;
}

static int on_writeable(http_front *h, http_conn *c)
{
    if (!c->ready)
        return 0;
    lws_set_opaque_user_data(c->wsi, NULL);
    int rv = write_now(h, c->wsi, c->ep, c->status, c->type, c->answer, c->answer_len, c->allow_origin,
                       c->retry_after, false);
    conn_free(c);
    return rv;
}

int http_event(http_front *h, struct lws *wsi, int reason, void *in, size_t len)
{
    http_conn *c = lws_get_opaque_user_data(wsi);
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        if (c != NULL) { /* a new request while one is unanswered: not from a well-behaved client */
            lws_set_opaque_user_data(wsi, NULL);
            conn_free(c);
            return -1;
        }
        return on_request(h, wsi, (const char *)in);
    case LWS_CALLBACK_HTTP_BODY:
        return c != NULL ? on_body(h, c, in, len) : -1;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (c != NULL)
            on_body_done(h, c);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return c != NULL ? on_writeable(h, c) : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
        if (c != NULL) {
            lws_set_opaque_user_data(wsi, NULL);
            conn_free(c);
        }
        return 0;
    default:
        return 0;
    }
}

void http_metrics(const http_front *h, FILE *f)
{
    fprintf(f, "# TYPE eddy_http_requests_total counter\n");
    for (int ep = 0; ep < EP_COUNT; ep++)
        for (size_t i = 0; i <= STATUSES; i++)
            if (h->answered[ep][i] > 0) {
                char status[16];
                if (i < STATUSES)
                    snprintf(status, sizeof(status), "%d", counted_status[i]);
                else
                    snprintf(status, sizeof(status), "other");
                fprintf(f, "eddy_http_requests_total{endpoint=\"%s\",status=\"%s\"} %llu\n", endpoint_names[ep],
                        status, (unsigned long long)h->answered[ep][i]);
            }
    fprintf(f, "# TYPE eddy_http_bodies_too_large_total counter\neddy_http_bodies_too_large_total %llu\n",
            (unsigned long long)h->bodies_too_large);
}

/* The request headers lws parses that a webhook may want, by their names. */
static const struct {
    const char *name;
    enum lws_token_indexes token;
} handshake_headers[] = {
    {"host", WSI_TOKEN_HOST},
    {"origin", WSI_TOKEN_ORIGIN},
    {"user-agent", WSI_TOKEN_HTTP_USER_AGENT},
    {"referer", WSI_TOKEN_HTTP_REFERER},
    {"cookie", WSI_TOKEN_HTTP_COOKIE},
    {"authorization", WSI_TOKEN_HTTP_AUTHORIZATION},
    {"x-forwarded-for", WSI_TOKEN_X_FORWARDED_FOR},
    {"accept-language", WSI_TOKEN_HTTP_ACCEPT_LANGUAGE},
    {"accept-encoding", WSI_TOKEN_HTTP_ACCEPT_ENCODING},
    {"cache-control", WSI_TOKEN_HTTP_CACHE_CONTROL},
    {"pragma", WSI_TOKEN_HTTP_PRAGMA},
    {"connection", WSI_TOKEN_CONNECTION},
    {"upgrade", WSI_TOKEN_UPGRADE},
    {"sec-websocket-version", WSI_TOKEN_VERSION},
    {"sec-websocket-extensions", WSI_TOKEN_EXTENSIONS},
    {"sec-websocket-protocol", WSI_TOKEN_PROTOCOL},
};

char *loop_handshake_data(struct lws *wsi)
{
    json_t *headers = json_object();
    char value[4096];
    for (size_t i = 0; i < sizeof(handshake_headers) / sizeof(handshake_headers[0]); i++) {
        int n = lws_hdr_total_length(wsi, handshake_headers[i].token);
        if (n <= 0 || n >= (int)sizeof(value) || lws_hdr_copy(wsi, value, sizeof(value), handshake_headers[i].token) < 0)
            continue;
        json_object_set_new(headers, handshake_headers[i].name, json_stringn(value, strlen(value)));
    }
    char peer[128] = "";
    const char *forwarded = json_string_value(json_object_get(headers, "x-forwarded-for"));
    if (forwarded == NULL)
        lws_get_peer_simple(wsi, peer, sizeof(peer));
    json_t *data = json_object();
    json_object_set_new(data, "remoteAddress", json_string(forwarded ? forwarded : peer));
    json_t *referer = json_object_get(headers, "referer");
    json_object_set_new(data, "headers", headers);
    if (referer != NULL)
        json_object_set(data, "referer", referer);
    char *text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(data);
    char *out = xstrdup(text ? text : "{}");
    free(text);
    return out;
}
