/* prom.h - what /metrics is made of, for every role: counters a thread
 * publishes for another to read, latency histograms, the Prometheus text
 * format (version 0.0.4) they are written in, and the lines every process
 * has (build, memory, CPU, file descriptors). Not for deciding what a
 * module counts: each module keeps and names its own.
 *
 * A prom_counter is written by one thread at a time (its owner, or whoever
 * holds the lock that guards the owner's state) and read by any thread: a
 * relaxed load and store, no locked instruction on the hot path. A counter
 * written by several threads at once uses atomic_fetch_add instead. */
#ifndef EDDY_PROM_H
#define EDDY_PROM_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

typedef _Atomic uint64_t prom_counter;

/* Adds n; one writer at a time (see above). */
static inline void prom_add(prom_counter *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

/* Sets a gauge; one writer at a time. */
static inline void prom_set(prom_counter *c, uint64_t v)
{
    atomic_store_explicit(c, v, memory_order_relaxed);
}

/* Any thread. */
static inline uint64_t prom_get(const prom_counter *c)
{
    return atomic_load_explicit((prom_counter *)c, memory_order_relaxed);
}

/* Upper bounds of a latency histogram's buckets, in seconds: 10 us to 2.5 s
 * (PROM_BUCKETS of them, then +Inf). */
#define PROM_BUCKETS 17
extern const double prom_bucket_seconds[PROM_BUCKETS];

/* A latency histogram: counts per bucket (not cumulative: the writer adds to
 * one bucket) and the sum in ns. One writer at a time; any thread writes it
 * out. _count is the sum of the buckets, so it always equals the +Inf bucket. */
typedef struct prom_histogram {
    prom_counter bucket[PROM_BUCKETS + 1]; /* the last: above every bound */
    prom_counter sum_ns;
} prom_histogram;

/* Records one observation of ns nanoseconds. */
void prom_observe(prom_histogram *h, uint64_t ns);
/* Nanoseconds on the monotonic clock (for timing what prom_observe records). */
uint64_t prom_now_ns(void);

/* Writes the family header: "# HELP name help" (when help is not NULL) and
 * "# TYPE name type". */
void prom_family(FILE *f, const char *name, const char *type, const char *help);
/* Writes h as the histogram family name (header, cumulative _bucket lines
 * with le="+Inf", _sum in seconds, _count). */
void prom_write_histogram(FILE *f, const char *name, const char *help, const prom_histogram *h);
/* The lines of the process as a whole, once per /metrics body: eddy_build_info
 * {version, role}, eddy_memory_allocated_bytes (mem.h), and the standard
 * process_* families (CPU seconds, resident memory, open and maximum file
 * descriptors, start time). */
void prom_write_process(FILE *f, const char *role);

#endif
