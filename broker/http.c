/* http.c - the plain HTTP requests served on the websocket port: GET
 * /health-check (200 OK while the broker serves) and GET /metrics (Prometheus
 * text format, written by the caller's metrics function). Anything else is
 * 404. Not the deepstream HTTP API. */
#include <stdlib.h>
#include <string.h>

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
