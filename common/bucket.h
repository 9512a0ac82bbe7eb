/* bucket.h - a token bucket in integer arithmetic: `rate` tokens a second,
 * holding at most `burst`. A connection's message rate is one (broker/limits.c):
 * each message takes a token, and a message that finds none is refused. The
 * check is a few integer operations on two fields, with no clock call of its
 * own (the caller passes the time it already has) and no allocation.
 *
 * Tokens are counted in thousandths, so that `rate` tokens a second is `rate`
 * thousandths a millisecond: exact for every integer rate, with no division.
 * Not thread-safe (a bucket belongs to its connection's thread). */
#ifndef EDDY_BUCKET_H
#define EDDY_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

#define BUCKET_ONE 1000 /* one token, in thousandths */

/* A zeroed bucket is full at its first use. */
typedef struct bucket {
    int64_t milli; /* tokens, in thousandths */
    int64_t at_ms; /* when milli was brought up to date; 0: never used */
} bucket;

/* Refills b up to now_ms (monotonic milliseconds, greater than 0) and takes a
 * token: true when there was one. rate: tokens a second, 1 to 10^7; burst: the
 * most b holds, 1 to 10^7 (with those bounds no product below overflows, after
 * any idle time). */
static inline bool bucket_take(bucket *b, int64_t now_ms, int64_t rate, int64_t burst)
{
    int64_t cap = burst * BUCKET_ONE;
    if (b->at_ms == 0) {
        b->milli = cap;
        b->at_ms = now_ms;
    } else if (now_ms > b->at_ms) {
        int64_t dt = now_ms - b->at_ms;
        if (dt > cap) /* (rate >= 1: that long fills it) keeps dt * rate far from overflowing */
            dt = cap;
        int64_t add = dt * rate; /* rate a second = rate thousandths a millisecond */
        b->milli = add >= cap - b->milli ? cap : b->milli + add;
        b->at_ms = now_ms;
    }
    if (b->milli < BUCKET_ONE)
        return false;
    b->milli -= BUCKET_ONE;
    return true;
}

#endif
