/* test_converge.c - the broker's table of record copies to correct
 * (broker/converge.c): a correction goes out once per burst of refusals and
 * again after another refusal or an applied write; names lost while their node
 * was down are handed over once it is back, per node; the per-session bound
 * evicts what is not pending, and past it the session overflows to "every
 * record it holds from that node"; a closed session leaves nothing; a
 * correction read raced by the session's own write is held back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

static strview name_n(char *buf, int i)
{
    snprintf(buf, 32, "rec/%d", i);
    return sv_of(buf);
}

/* Takes what is due for li, frees it, returns how many there were. */
static size_t take_all(converge *c, int li)
{
    size_t n;
    converge_due *due = converge_take(c, li, &n);
    converge_due_free(due, n);
    return n;
}

static void test_correct_once_per_burst(void **state)
{
    converge *c = converge_new();
    strview a = sv_of("a");
    assert_true(converge_correct(c, 7, a, 0));   /* the first refusal: corrected */
    assert_false(converge_correct(c, 7, a, 0));  /* the rest of its burst: not again */
    assert_true(converge_correct(c, 8, a, 0));   /* another session is another copy */
    converge_rearm(c, 7, a);                     /* a write of it applied, or was refused otherwise */
    assert_true(converge_correct(c, 7, a, 0));
    assert_int_equal(converge_sessions(c), 2);
    converge_forget(c, 7);
    converge_forget(c, 8);
    assert_int_equal(converge_sessions(c), 0);
    converge_rearm(c, 9, a); /* unknown: nothing kept */
    assert_int_equal(converge_sessions(c), 0);
    converge_free(c);
}

static void test_lost_taken_per_link(void **state)
{
    converge *c = converge_new();
    converge_lost(c, 1, sv_of("on0"), 0);
    converge_lost(c, 1, sv_of("on2"), 2);
    converge_lost(c, 2, sv_of("on2"), 2);
    assert_true(converge_correct(c, 1, sv_of("x"), 2)); /* a corrected name of link 2 */
    size_t n;
    converge_due *due = converge_take(c, 2, &n);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(due[i].name, "on2");
        assert_true(due[i].session == 1 || due[i].session == 2);
    }
    converge_due_free(due, n);
    assert_null(converge_take(c, 2, &n)); /* taken: nothing twice */
    assert_int_equal(n, 0);
    /* what link 2 had corrected went with its return: corrected again */
    assert_true(converge_correct(c, 1, sv_of("x"), 2));
    due = converge_take(c, 0, &n);
    assert_int_equal(n, 1);
    assert_string_equal(due[0].name, "on0");
    converge_due_free(due, n);
    /* a lost name corrected before its node is back is still read then */
    converge_lost(c, 3, sv_of("p"), 1);
    assert_true(converge_correct(c, 3, sv_of("p"), 1));
    due = converge_take(c, 1, &n);
    assert_int_equal(n, 1);
    converge_due_free(due, n);
    converge_lost(c, 4, sv_of("bad"), 64); /* no such link: ignored */
    assert_null(converge_take(c, 64, &n));
    converge_free(c);
}

static void test_bound_and_overflow(void **state)
{
    converge *c = converge_new();
    char buf[32];
    /* corrected names past the bound: the least recently used goes */
    for (int i = 0; i < CONVERGE_NAMES + 4; i++)
        assert_true(converge_correct(c, 1, name_n(buf, i), 0));
    assert_true(converge_correct(c, 1, name_n(buf, 0), 0)); /* evicted: corrected again */
    assert_false(converge_correct(c, 1, name_n(buf, CONVERGE_NAMES + 3), 0));
    /* pending names evict the corrected ones, then overflow for their link */
    for (int i = 0; i < CONVERGE_NAMES + 3; i++)
        converge_lost(c, 1, name_n(buf, 100 + i), 1);
    assert_int_equal(converge_overflows(c), 1);
    size_t n;
    converge_due *due = converge_take(c, 1, &n);
    assert_int_equal(n, CONVERGE_NAMES + 1); /* each kept name, and "everything" once */
    size_t all = 0;
    for (size_t i = 0; i < n; i++)
        all += due[i].name == NULL;
    assert_int_equal(all, 1);
    converge_due_free(due, n);
    assert_int_equal(converge_sessions(c), 0);
    /* a session closed with names pending leaves nothing */
    converge_lost(c, 5, sv_of("q"), 3);
    converge_forget(c, 5);
    assert_null(converge_take(c, 3, &n));
    converge_free(c);
    converge_free(NULL);
}

static void test_read_raced_by_write(void **state)
{
    converge *c = converge_new();
    strview a = sv_of("a"), b = sv_of("b");
    /* a read nobody raced: pushed, and nothing is kept */
    converge_reading(c, 1, a, 0);
    assert_int_equal(converge_sessions(c), 1);
    assert_true(converge_read_done(c, 1, a));
    assert_int_equal(converge_sessions(c), 0);
    /* a write before the read went out does not hold it back */
    converge_wrote(c, 1, a);
    converge_reading(c, 1, a, 0);
    assert_true(converge_read_done(c, 1, a));
    /* the session wrote while the read was out: its state is older, held back */
    converge_reading(c, 1, a, 0);
    converge_wrote(c, 1, a);
    assert_false(converge_read_done(c, 1, a));
    assert_int_equal(converge_held(c), 1);
    assert_int_equal(converge_sessions(c), 0);
    /* its own write applied while the read was out: held back too */
    converge_reading(c, 1, a, 0);
    converge_applied(c, 1, a);
    assert_false(converge_read_done(c, 1, a));
    assert_int_equal(converge_held(c), 2);
    /* two reads out, a write between them: both are held (each was sent before it) */
    converge_reading(c, 1, a, 0);
    converge_reading(c, 1, a, 0);
    converge_wrote(c, 1, a);
    assert_false(converge_read_done(c, 1, a));
    assert_false(converge_read_done(c, 1, a));
    assert_true(converge_read_done(c, 1, a)); /* none out any more: nothing to say */
    /* another session's or name's write does not count */
    converge_reading(c, 1, a, 0);
    converge_wrote(c, 2, a);
    converge_wrote(c, 1, b);
    assert_true(converge_read_done(c, 1, a));
    assert_int_equal(converge_sessions(c), 0);
    converge_free(c);
}

static void test_applied_settles(void **state)
{
    converge *c = converge_new();
    strview a = sv_of("a");
    /* lost while its node was down, then a write of it applied (another route): nothing to read */
    converge_lost(c, 1, a, 2);
    converge_applied(c, 1, a);
    assert_int_equal(take_all(c, 2), 0);
    assert_int_equal(converge_sessions(c), 0);
    /* a corrected name: the next refusal is corrected again */
    assert_true(converge_correct(c, 1, a, 2));
    converge_applied(c, 1, a);
    assert_true(converge_correct(c, 1, a, 2));
    converge_forget(c, 1);
    /* pending with a read out: handed over once, the entry stays for the read */
    converge_reading(c, 3, a, 1);
    converge_lost(c, 3, a, 1);
    assert_int_equal(take_all(c, 1), 1);
    assert_int_equal(take_all(c, 1), 0);
    assert_int_equal(converge_sessions(c), 1);
    converge_wrote(c, 3, a);
    assert_false(converge_read_done(c, 3, a));
    assert_int_equal(converge_sessions(c), 0);
    converge_free(c);
}

static void test_reads_not_evicted(void **state)
{
    converge *c = converge_new();
    char buf[32];
    for (int i = 0; i < CONVERGE_NAMES; i++)
        converge_reading(c, 1, name_n(buf, i), 0);
    /* no room: the lost name overflows instead of evicting a name being read */
    converge_lost(c, 1, sv_of("x"), 0);
    assert_int_equal(converge_overflows(c), 1);
    converge_reading(c, 1, sv_of("y"), 0); /* no room either: pushed as it comes */
    assert_true(converge_read_done(c, 1, sv_of("y")));
    converge_wrote(c, 1, name_n(buf, 3));
    for (int i = 0; i < CONVERGE_NAMES; i++)
        assert_int_equal(converge_read_done(c, 1, name_n(buf, i)), i != 3);
    assert_int_equal(take_all(c, 0), 1); /* the overflow: everything it holds from link 0 */
    assert_int_equal(converge_sessions(c), 0);
    converge_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_correct_once_per_burst),
        cmocka_unit_test(test_lost_taken_per_link),
        cmocka_unit_test(test_bound_and_overflow),
        cmocka_unit_test(test_read_raced_by_write),
        cmocka_unit_test(test_applied_settles),
        cmocka_unit_test(test_reads_not_evicted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
