/* bench_backend.c - backend round trips through libeddy against a running
 * server: sequential and from several threads at once, for durable record
 * writes (eddy_set), reads (eddy_get) and RPCs (eddy_call to a provider that
 * is itself a backend, on a second connection). Prints calls per second and
 * latency percentiles; a benchmark, not a test (it fails only on errors).
 *
 * usage: bench_backend NODE_URL [seconds per phase] [threads]
 * (make bench starts a standalone server for it) */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eddy.h"

static eddy *client;
static double seconds;
static atomic_int failures;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void echo(void *arg, eddy_rpc *call, const char *name, const char *json, const char *user)
{
    (void)arg;
    (void)name;
    (void)user;
    eddy_rpc_respond(call, json);
}

typedef struct worker {
    pthread_t t;
    int id, kind;
    long count;
    double *lat;
    long cap;
} worker;

enum { SET = 0, GET = 1, CALL = 2 };

static void *run(void *arg)
{
    worker *w = arg;
    char name[64], value[64];
    snprintf(name, sizeof(name), "bench/backend/%d", w->id);
    double end = now_s() + seconds;
    while (now_s() < end) {
        double t0 = now_s();
        eddy_status st;
        snprintf(value, sizeof(value), "{\"n\":%ld}", w->count);
        if (w->kind == SET)
            st = eddy_set(client, name, NULL, value, EDDY_VERSION_ANY, NULL);
        else if (w->kind == GET) {
            char *json;
            st = eddy_get(client, name, &json, NULL);
            eddy_free(json);
        } else {
            char *json;
            st = eddy_call(client, "bench/echo", value, &json);
            eddy_free(json);
        }
        if (st != EDDY_OK) {
            fprintf(stderr, "bench_backend: %s\n", eddy_strerror(st));
            atomic_fetch_add(&failures, 1);
            break;
        }
        if (w->count == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 4096;
            w->lat = realloc(w->lat, (size_t)w->cap * sizeof(double));
        }
        w->lat[w->count++] = (now_s() - t0) * 1000.0;
    }
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void phase(const char *what, int kind, int threads)
{
    worker *w = calloc((size_t)threads, sizeof(*w));
    for (int i = 0; i < threads; i++) {
        w[i].id = i;
        w[i].kind = kind;
        pthread_create(&w[i].t, NULL, run, &w[i]);
    }
    long total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(w[i].t, NULL);
        total += w[i].count;
    }
    double *all = malloc((size_t)(total ? total : 1) * sizeof(double));
    long n = 0;
    for (int i = 0; i < threads; i++) {
        memcpy(all + n, w[i].lat, (size_t)w[i].count * sizeof(double));
        n += w[i].count;
        free(w[i].lat);
    }
    qsort(all, (size_t)n, sizeof(double), cmp);
    if (n > 0)
        printf("%-28s %2d thread(s): %8.0f round trips/s  p50 %.2f ms  p99 %.2f ms\n", what, threads,
               (double)n / seconds, all[n / 2], all[(long)((double)n * 0.99)]);
    free(all);
    free(w);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_backend NODE_URL [seconds] [threads]\n");
        return 2;
    }
    seconds = argc > 2 ? atof(argv[2]) : 3;
    int threads = argc > 3 ? atoi(argv[3]) : 8;
    eddy *provider;
    if (eddy_connect(argv[1], NULL, &client) != EDDY_OK || eddy_connect(argv[1], NULL, &provider) != EDDY_OK ||
        eddy_provide(provider, "bench/echo", echo, NULL) != EDDY_OK) {
        fprintf(stderr, "bench_backend: cannot connect to %s\n", argv[1]);
        return 1;
    }
    phase("eddy_set (durable)", SET, 1);
    phase("eddy_set (durable)", SET, threads);
    phase("eddy_get", GET, 1);
    phase("eddy_get", GET, threads);
    phase("eddy_call (backend provider)", CALL, 1);
    phase("eddy_call (backend provider)", CALL, threads);
    eddy_close(provider);
    eddy_close(client);
    return atomic_load(&failures) ? 1 : 0;
}
