/* httpd.c - the node's own HTTP listener (node.metrics): GET /metrics and
 * GET /health-check, on nng's HTTP server (nng/supplemental/http), whose
 * threads run the handlers: the node's executor never sees a request, and
 * what a handler reads must be safe from any thread (stats.c's counters).
 * Any other path is answered 404, any other method 405, by nng. Not the
 * broker's HTTP (broker/http.c, on the websocket port). */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "internal.h"
#include "log.h"
#include "mem.h"

struct httpd {
    nng_http_server *server;
    nng_url *url;
    char bound[300];
    void (*metrics)(void *ctx, FILE *f);
    bool (*healthy)(void *ctx);
    void *ctx;
    /* handlers in progress; once stopping, none starts (httpd_stop waits for them) */
    pthread_mutex_t lock;
    pthread_cond_t idle;
    int active;
    bool stopping;
};

static void answer(nng_aio *aio, uint16_t status, const char *type, const char *body, size_t len)
{
    nng_http_res *res = NULL;
    int rv = nng_http_res_alloc(&res);
    if (rv == 0 && (rv = nng_http_res_set_status(res, status)) == 0 &&
        (rv = nng_http_res_set_header(res, "Content-Type", type)) == 0 &&
        (rv = nng_http_res_copy_data(res, body, len)) == 0) {
        nng_aio_set_output(aio, 0, res);
        nng_aio_finish(aio, 0);
        return;
    }
    if (res != NULL)
        nng_http_res_free(res);
    nng_aio_finish(aio, rv);
}

/* The handler's httpd, counted as active; NULL once stopping (answered 503). */
static httpd *enter(nng_aio *aio)
{
    httpd *h = nng_http_handler_get_data(nng_aio_get_input(aio, 1));
    pthread_mutex_lock(&h->lock);
    bool stopping = h->stopping;
    if (!stopping)
        h->active++;
    pthread_mutex_unlock(&h->lock);
    if (!stopping)
        return h;
    answer(aio, 503, "text/plain; charset=utf-8", "stopping", 8);
    return NULL;
}

static void leave(httpd *h)
{
    pthread_mutex_lock(&h->lock);
    if (--h->active == 0)
        pthread_cond_broadcast(&h->idle);
    pthread_mutex_unlock(&h->lock);
}

static void serve_metrics(nng_aio *aio)
{
    httpd *h = enter(aio);
    if (h == NULL)
        return;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        nng_aio_finish(aio, NNG_ENOMEM);
    else {
        h->metrics(h->ctx, f);
        fclose(f);
        answer(aio, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
        free(text); /* open_memstream's buffer comes from malloc */
    }
    leave(h);
}

static void serve_health(nng_aio *aio)
{
    httpd *h = enter(aio);
    if (h == NULL)
        return;
    if (h->healthy(h->ctx))
        answer(aio, 200, "text/plain; charset=utf-8", "OK", 2);
    else
        answer(aio, 503, "text/plain; charset=utf-8", "the node's executor is stuck", 28);
    leave(h);
}

static int add_handler(httpd *h, const char *path, void (*fn)(nng_aio *))
{
    nng_http_handler *hh;
    int rv = nng_http_handler_alloc(&hh, path, fn);
    if (rv != 0)
        return rv;
    if ((rv = nng_http_handler_set_method(hh, "GET")) != 0 || (rv = nng_http_handler_set_data(hh, h, NULL)) != 0 ||
        (rv = nng_http_server_add_handler(h->server, hh)) != 0)
        nng_http_handler_free(hh);
    return rv;
}

/* "host:port" or "http://host:port" as a URL nng parses. */
static void to_url(const char *addr, char *out, size_t cap)
{
    if (strncmp(addr, "http://", 7) == 0)
        snprintf(out, cap, "%s", addr);
    else
        snprintf(out, cap, "http://%s", addr);
}

httpd *httpd_start(const char *addr, void (*metrics)(void *ctx, FILE *f), bool (*healthy)(void *ctx), void *ctx)
{
    httpd *h = xcalloc(1, sizeof(*h));
    h->metrics = metrics;
    h->healthy = healthy;
    h->ctx = ctx;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->idle, NULL);
    char url[300];
    to_url(addr, url, sizeof(url));
    const char *step = "address";
    int rv;
    if ((rv = nng_url_parse(&h->url, url)) != 0 || strcmp(h->url->u_scheme, "http") != 0 ||
        h->url->u_port[0] == '\0' || strcmp(h->url->u_path, "") != 0) {
        if (rv == 0)
            rv = NNG_EADDRINVAL;
        goto fail;
    }
    step = "server";
    if ((rv = nng_http_server_hold(&h->server, h->url)) != 0)
        goto fail;
    step = "handler";
    if ((rv = add_handler(h, "/metrics", serve_metrics)) != 0 || (rv = add_handler(h, "/health-check", serve_health)) != 0)
        goto fail;
    step = "listen";
    if ((rv = nng_http_server_start(h->server)) != 0)
        goto fail;
    nng_sockaddr sa;
    int port = atoi(h->url->u_port);
    if (nng_http_server_get_addr(h->server, &sa) == 0) {
        if (sa.s_family == NNG_AF_INET)
            port = ntohs(sa.s_in.sa_port);
        else if (sa.s_family == NNG_AF_INET6)
            port = ntohs(sa.s_in6.sa_port);
    }
    const char *host = h->url->u_hostname;
    snprintf(h->bound, sizeof(h->bound), strchr(host, ':') != NULL ? "http://[%s]:%d" : "http://%s:%d", host, port);
    return h;
fail:
    log_error("node-metrics-listen-failed", "address=%s at=%s error=%s", addr, step, nng_strerror(rv));
    if (h->server != NULL)
        nng_http_server_release(h->server);
    if (h->url != NULL)
        nng_url_free(h->url);
    pthread_cond_destroy(&h->idle);
    pthread_mutex_destroy(&h->lock);
    xfree(h);
    return NULL;
}

const char *httpd_url(const httpd *h)
{
    return h->bound;
}

void httpd_stop(httpd *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->lock);
    h->stopping = true;
    while (h->active > 0)
        pthread_cond_wait(&h->idle, &h->lock);
    pthread_mutex_unlock(&h->lock);
    nng_http_server_stop(h->server);
    nng_http_server_release(h->server); /* frees the handlers */
    nng_url_free(h->url);
    pthread_cond_destroy(&h->idle);
    pthread_mutex_destroy(&h->lock);
    xfree(h);
}
