/* bench_validate.c - durable record writes (eddy_set, from several threads,
 * each on records of its own) through validators that accept every write,
 * against the same writes with no validator: the cost of having each write
 * validated by a backend. Validators are libeddy clients of their own (one
 * peer each), in this process, accepting at once from their callback
 * thread. A benchmark, not a test (it fails only on errors).
 *
 * usage: bench_validate NODE_URL [seconds per phase (3)] [threads (8)] */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eddy.h"

#define MAX_VALIDATORS 4

static eddy *writer;
static double seconds;
static atomic_int failures;
static atomic_long validated;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void accept_all(void *arg, eddy_validation *v, const char *name, const char *request)
{
    (void)arg;
    (void)name;
    (void)request;
    atomic_fetch_add(&validated, 1);
    eddy_validation_accept(v);
}

typedef struct worker {
    pthread_t t;
    int id, phase;
    long count;
} worker;

static void *run(void *arg)
{
    worker *w = arg;
    char name[64], value[64];
    double end = now_s() + seconds;
    while (now_s() < end) {
        /* 16 records per thread, new ones each phase: writes to different records validate concurrently */
        snprintf(name, sizeof(name), "bench/validate/%d/%d/%ld", w->phase, w->id, w->count % 16);
        snprintf(value, sizeof(value), "{\"qty\":%ld}", w->count);
        eddy_status st = eddy_set(writer, name, NULL, value, EDDY_VERSION_ANY, NULL);
        if (st != EDDY_OK) {
            fprintf(stderr, "bench_validate: %s\n", eddy_strerror(st));
            atomic_fetch_add(&failures, 1);
            break;
        }
        w->count++;
    }
    return NULL;
}

/* Writes for `seconds` from `threads` threads; returns writes per second. */
static double phase(int number, const char *what, int threads)
{
    worker *w = calloc((size_t)threads, sizeof(*w));
    long before = atomic_load(&validated);
    for (int i = 0; i < threads; i++) {
        w[i].id = i;
        w[i].phase = number;
        pthread_create(&w[i].t, NULL, run, &w[i]);
    }
    long total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(w[i].t, NULL);
        total += w[i].count;
    }
    free(w);
    double rate = (double)total / seconds;
    printf("%-24s %2d threads: %8.0f writes/s  (validated %ld)\n", what, threads, rate,
           atomic_load(&validated) - before);
    fflush(stdout);
    return rate;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_validate NODE_URL [seconds] [threads]\n");
        return 2;
    }
    seconds = argc > 2 ? atof(argv[2]) : 3;
    int threads = argc > 3 ? atoi(argv[3]) : 8;
    if (eddy_connect(argv[1], NULL, &writer) != EDDY_OK) {
        fprintf(stderr, "bench_validate: cannot connect to %s\n", argv[1]);
        return 1;
    }
    double plain = phase(0, "unvalidated", threads);
    eddy *v[MAX_VALIDATORS] = {0};
    double one = 0, four = 0;
    for (int i = 0; i < MAX_VALIDATORS; i++) {
        if (eddy_connect(argv[1], NULL, &v[i]) != EDDY_OK || eddy_validate(v[i], "^bench/validate/", accept_all, NULL) !=
                                                                   EDDY_OK) {
            fprintf(stderr, "bench_validate: cannot start validator %d\n", i);
            return 1;
        }
        if (i == 0)
            one = phase(1, "1 validator", threads);
    }
    four = phase(2, "4 validators", threads);
    printf("validated / unvalidated writes per second: 1 validator %.2f, 4 validators %.2f\n", one / plain,
           four / plain);
    for (int i = 0; i < MAX_VALIDATORS; i++)
        eddy_close(v[i]);
    eddy_close(writer);
    return atomic_load(&failures) ? 1 : 0;
}
