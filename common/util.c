/* util.c - see util.h. */
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "log.h"
#include "mem.h"

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t random_id(void)
{
    uint64_t v = 0;
    while (v == 0)
        if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
            v = (uint64_t)now_ms() ^ ((uint64_t)rand() << 32);
    return v;
}

void nng_bound_url(nng_listener l, const char *url, char *out, size_t out_len)
{
    int port;
    const char *colon = strrchr(url, ':');
    if ((strncmp(url, "tcp://", 6) == 0 || strncmp(url, "tls+tcp://", 10) == 0) && colon != NULL &&
        nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port) == 0)
        snprintf(out, out_len, "%.*s:%d", (int)(colon - url), url, port);
    else
        snprintf(out, out_len, "%s", url);
}

struct closer {
    nng_socket sock;
    pthread_mutex_t lock;
    pthread_cond_t done_cv;
    int done;
    int abandoned;
};

static void *close_thread(void *arg)
{
    struct closer *c = arg;
    nng_close(c->sock);
    pthread_mutex_lock(&c->lock);
    c->done = 1;
    int abandoned = c->abandoned;
    pthread_cond_signal(&c->done_cv);
    pthread_mutex_unlock(&c->lock);
    if (abandoned) {
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->done_cv);
        free(c);
    }
    return NULL;
}

void timespec_after(struct timespec *ts, clockid_t clock, int ms)
{
    clock_gettime(clock, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int nng_close_bounded(nng_socket sock, const char *what, int timeout_ms)
{
    struct closer *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return nng_close(sock) == 0 ? 0 : -1;
    c->sock = sock;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->done_cv, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, close_thread, c) != 0) {
        nng_close(sock);
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->done_cv);
        free(c);
        return 0;
    }
    pthread_detach(t);
    struct timespec ts;
    timespec_after(&ts, CLOCK_REALTIME, timeout_ms);
    pthread_mutex_lock(&c->lock);
    while (!c->done)
        if (pthread_cond_timedwait(&c->done_cv, &c->lock, &ts) == ETIMEDOUT)
            break;
    int done = c->done;
    if (!done)
        c->abandoned = 1; /* the close thread frees c when (if) nng_close returns */
    pthread_mutex_unlock(&c->lock);
    if (done) {
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->done_cv);
        free(c);
        return 0;
    }
    log_warn("nng-close-timeout", "socket=%s after_ms=%d (nng close hang; abandoned)", what,
             timeout_ms);
    return -1;
}

void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}
