/* test_limits.c - the arithmetic under the limits for untrusted clients: the
 * token bucket of a connection's message rate (common/bucket.h: a full first
 * burst, exact refills at any rate, the cap, no overflow over long idle
 * times, a clock that does not move or goes back) and the rate-limited log
 * line (log_every_due: the first at once, then one a period, with the count
 * of those held back). The limits themselves run against a real server in
 * tests/e2e/hostile-rate.test.mjs and hostile-connections.test.mjs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "bucket.h"
#include "log.h"

/* How many of n takes at now succeed. */
static int takes(bucket *b, int64_t now, int64_t rate, int64_t burst, int n)
{
    int ok = 0;
    for (int i = 0; i < n; i++)
        ok += bucket_take(b, now, rate, burst);
    return ok;
}

static void test_burst_then_rate(void **state)
{
    (void)state;
    bucket b = {0};
    int64_t t = 1000;
    assert_int_equal(takes(&b, t, 100, 20, 25), 20); /* a zeroed bucket starts full */
    assert_false(bucket_take(&b, t, 100, 20));
    assert_int_equal(takes(&b, t + 10, 100, 20, 5), 1);  /* 100 a second: one every 10 ms */
    assert_int_equal(takes(&b, t + 15, 100, 20, 5), 0);  /* half a token is not one */
    assert_int_equal(takes(&b, t + 20, 100, 20, 5), 1);  /* ... and is kept */
    assert_int_equal(takes(&b, t + 1020, 100, 20, 200), 20); /* a long pause fills it to the burst, no more */
}

static void test_exact_rates(void **state)
{
    (void)state;
    /* over one simulated second in 1 ms steps, rate r lets r through after the burst */
    const int64_t rates[] = {1, 3, 7, 333, 1000, 10000, 123457};
    for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
        int64_t r = rates[i];
        bucket b = {0};
        int64_t t = 5;
        int64_t burst = 1;
        takes(&b, t, r, burst, 1); /* empties it */
        int64_t got = 0;
        for (int ms = 1; ms <= 1000; ms++)
            got += takes(&b, t + ms, r, r + 1, (int)(r / 500 + 2)); /* a burst large enough to keep what refills */
        assert_int_equal(got, r);
    }
}

static void test_clock_and_overflow(void **state)
{
    (void)state;
    bucket b = {0};
    int64_t rate = 10000000, burst = 10000000; /* the largest the configuration allows */
    assert_true(bucket_take(&b, 1, rate, burst));
    b.milli = 0;
    /* a clock that stands still or goes back adds nothing */
    assert_false(bucket_take(&b, 1, rate, burst));
    assert_false(bucket_take(&b, 0 + 1, rate, burst));
    /* a century idle: full, not overflowed */
    int64_t century = 100LL * 365 * 24 * 3600 * 1000;
    assert_true(bucket_take(&b, century, rate, burst));
    assert_int_equal(b.milli, burst * BUCKET_ONE - BUCKET_ONE);
    assert_true(b.milli > 0);
}

static void test_log_every(void **state)
{
    (void)state;
    log_every e = {0};
    uint64_t held = 99;
    assert_true(log_every_due(&e, 1000, 1000, &held)); /* the first at once */
    assert_int_equal(held, 0);
    for (int i = 0; i < 5; i++)
        assert_false(log_every_due(&e, 1500, 1000, &held));
    assert_true(log_every_due(&e, 2000, 1000, &held)); /* a period later, saying how many it stands for */
    assert_int_equal(held, 5);
    assert_false(log_every_due(&e, 2999, 1000, &held));
    assert_true(log_every_due(&e, 3000, 1000, &held));
    assert_int_equal(held, 1);
    log_every z = {0};
    assert_true(log_every_due(&z, 0, 1000, &held)); /* a clock at 0 still counts as written */
    assert_false(log_every_due(&z, 10, 1000, &held));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_rate), cmocka_unit_test(test_exact_rates),
        cmocka_unit_test(test_clock_and_overflow), cmocka_unit_test(test_log_every),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
