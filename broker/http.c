/* http.c - the plain HTTP requests served on the websocket port: GET
 * /health-check (200 OK while the broker serves) and GET /metrics (Prometheus
 * text format, written by the caller's metrics function). Anything else is
 * 404. Also what a websocket's upgrade request said, as deepstream hands it
 * to auth webhooks (connectionData). Not the deepstream HTTP API. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "internal.h"
#include "mem.h"

static int serve_metrics(struct lws *wsi, void (*metrics)(void *ctx, FILE *f), void *ctx)
{
    char *text = NULL;
    size_t text_len = 0;
    FILE *f = open_memstream(&text, &text_len);
    if (f == NULL)
        return -1;
    metrics(ctx, f);
    fclose(f);
    /* headers and body in one buffer with the LWS_PRE headroom lws_write wants */
    size_t cap = LWS_PRE + 512 + text_len;
    uint8_t *buf = xmalloc(cap), *start = buf + LWS_PRE, *p = start, *end = buf + cap;
    int rv = -1;
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "text/plain; version=0.0.4", text_len, &p, end) == 0 &&
        lws_finalize_http_header(wsi, &p, end) == 0) {
        memcpy(p, text, text_len);
        p += text_len;
        if (lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_FINAL) >= 0)
            rv = lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    xfree(buf);
    free(text); /* open_memstream's buffer comes from malloc */
    return rv;
}

int http_serve(struct lws *wsi, const char *uri, void (*metrics)(void *ctx, FILE *f), void *ctx)
{
    if (strcmp(uri, "/metrics") == 0)
        return serve_metrics(wsi, metrics, ctx);
    if (strcmp(uri, "/health-check") == 0) {
        if (lws_return_http_status(wsi, HTTP_STATUS_OK, "OK"))
            return -1;
    } else if (lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL))
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
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
    char *text = json_dumps(data, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(data);
    char *out = xstrdup(text ? text : "{}");
    free(text);
    return out;
}
