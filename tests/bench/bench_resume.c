/* bench_resume.c - how long a backend takes to resume an event stream after
 * missing N events (eddy_subscribe_from replaying them from the node's ring,
 * in bounded batches it asks for one after the other), beside the baseline:
 * the time the same backend takes to receive N events live, emitted while it
 * listens. A benchmark, not a test (it fails only on errors or lost events).
 *
 * usage: bench_resume NODE_URL [events]   (tests/bench/resume.sh starts a
 * standalone server whose events.history keeps at least that many on bench/) */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eddy.h"

static atomic_ullong received, gaps;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_event(void *arg, const char *name, uint64_t history, uint64_t offset, const char *json)
{
    atomic_fetch_add(&received, 1);
}

static void on_gap(void *arg, const char *name, uint64_t history, uint64_t from, uint64_t to, bool reset)
{
    atomic_fetch_add(&gaps, 1);
    fprintf(stderr, "bench_resume: gap %llu..%llu reset=%d\n", (unsigned long long)from, (unsigned long long)to, reset);
}

/* Emits n events (a small JSON object each) on name, then waits until the node applied them. */
static void emit_all(eddy *e, const char *name, unsigned long long n)
{
    for (unsigned long long i = 1; i <= n; i++) {
        char json[64];
        snprintf(json, sizeof(json), "{\"n\":%llu,\"price\":101.25}", i);
        while (eddy_emit(e, name, json) != EDDY_OK) { /* the link's queue is full: let it drain */
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    char *doc = NULL;
    eddy_get(e, name, &doc, NULL); /* travels after the emits on the same link */
    eddy_free(doc);
}

static double wait_for(unsigned long long n, double started)
{
    while (atomic_load(&received) < n) {
        if (now_s() - started > 120) {
            fprintf(stderr, "bench_resume: only %llu of %llu events after 120 s\n", atomic_load(&received), n);
            exit(1);
        }
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return now_s() - started;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_resume NODE_URL [events]\n");
        return 2;
    }
    unsigned long long n = argc > 2 ? strtoull(argv[2], NULL, 10) : 100000;
    eddy_options o = {.timeout_ms = 10000};
    eddy *emitter, *reader;
    if (eddy_connect(argv[1], &o, &emitter) != EDDY_OK || eddy_connect(argv[1], &o, &reader) != EDDY_OK) {
        fprintf(stderr, "bench_resume: cannot connect to %s\n", argv[1]);
        return 1;
    }
    /* baseline: n events received live */
    if (eddy_subscribe_from(reader, "bench/live", 0, EDDY_OFFSET_NOW, on_event, on_gap, NULL) != EDDY_OK)
        return 1;
    double started = now_s();
    emit_all(emitter, "bench/live", n);
    double live = wait_for(n, started);
    eddy_unsubscribe(reader, "bench/live");
    /* resume: n events missed, then asked for from offset 1 */
    emit_all(emitter, "bench/resume", n);
    atomic_store(&received, 0);
    started = now_s();
    if (eddy_subscribe_from(reader, "bench/resume", 0, 1, on_event, on_gap, NULL) != EDDY_OK)
        return 1;
    double resume = wait_for(n, started);
    printf("bench_resume: events=%llu live_s=%.3f (%.0f events/s) resume_s=%.3f (%.0f events/s) "
           "resume/live=%.2f gaps=%llu\n", n, live, (double)n / live, resume, (double)n / resume, resume / live,
           atomic_load(&gaps));
    eddy_close(reader);
    eddy_close(emitter);
    return atomic_load(&gaps) == 0 ? 0 : 1;
}
