/* test_nodelink.c - the delivery numbering check (delivery_stream): in-order
 * batches, gaps with their exact loss, a lost tail revealed only by heartbeat
 * answers, late batches after a declared loss, and a node restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "nodelink.h"

static void test_in_order_and_gap(void **state)
{
    (void)state;
    delivery_stream s = {0};
    uint64_t lost;
    assert_int_equal(stream_accept(&s, 1, 1, true, &lost), STREAM_IN_ORDER); /* the HELLO */
    assert_int_equal(stream_accept(&s, 4, 3, false, &lost), STREAM_IN_ORDER);
    assert_int_equal(stream_accept(&s, 6, 2, false, &lost), STREAM_IN_ORDER);
    /* ops 7..11 never arrived: a batch of 2 ending at 13 reveals 5 lost */
    assert_int_equal(stream_accept(&s, 13, 2, false, &lost), STREAM_GAP);
    assert_int_equal(lost, 5);
    assert_int_equal(s.gaps, 1);
    assert_int_equal(s.lost, 5);
    assert_int_equal(s.received, 13);
    assert_int_equal(stream_accept(&s, 14, 1, false, &lost), STREAM_IN_ORDER);
    /* a batch counted lost that arrives after all is applied and uncounted */
    assert_int_equal(stream_accept(&s, 12, 2, false, &lost), STREAM_LATE);
    assert_int_equal(s.late, 1);
    assert_int_equal(s.lost, 3);
    assert_int_equal(s.received, 14);
    /* malformed numbering (seq below count) is never applied */
    assert_int_equal(stream_accept(&s, 2, 3, false, &lost), STREAM_BAD);
}

static void test_tail_loss(void **state)
{
    (void)state;
    delivery_stream s = {0};
    uint64_t lost;
    assert_int_equal(stream_accept(&s, 5, 5, false, &lost), STREAM_IN_ORDER);
    assert_int_equal(stream_heartbeat(&s, 5), 0); /* all there */
    /* the node published 3 more (ops 6..8) that never came */
    assert_int_equal(stream_heartbeat(&s, 8), 0); /* may still be in flight */
    assert_int_equal(stream_heartbeat(&s, 8), 3); /* a period later, nothing moved: lost */
    assert_int_equal(s.received, 8);
    assert_int_equal(s.gaps, 1);
    assert_int_equal(stream_heartbeat(&s, 8), 0);
    /* in flight at one heartbeat, arrived before the next: no loss */
    assert_int_equal(stream_heartbeat(&s, 10), 0);
    assert_int_equal(stream_accept(&s, 10, 2, false, &lost), STREAM_IN_ORDER);
    assert_int_equal(stream_heartbeat(&s, 10), 0);
    /* progress while still behind a mark: not declared (the stream is draining) */
    assert_int_equal(stream_heartbeat(&s, 20), 0);
    assert_int_equal(stream_accept(&s, 12, 2, false, &lost), STREAM_IN_ORDER);
    assert_int_equal(stream_heartbeat(&s, 20), 0);
    assert_int_equal(s.gaps, 1);
    /* a mark forgotten (the node went down) declares nothing */
    stream_forget_mark(&s);
    assert_int_equal(stream_heartbeat(&s, 30), 0);
}

static void test_settle(void **state)
{
    (void)state;
    delivery_stream s = {0};
    uint64_t lost;
    assert_int_equal(stream_settle(&s, 0), 0); /* nothing published yet */
    assert_int_equal(stream_accept(&s, 4, 4, false, &lost), STREAM_IN_ORDER);
    assert_int_equal(stream_settle(&s, 4), 0); /* all received */
    assert_int_equal(stream_settle(&s, 7), 3); /* nothing in flight: the tail was dropped */
    assert_int_equal(s.received, 7);
    assert_int_equal(s.lost, 3);
    assert_int_equal(s.gaps, 1);
    assert_int_equal(stream_settle(&s, 7), 0); /* counted once */
    assert_int_equal(stream_accept(&s, 9, 2, false, &lost), STREAM_IN_ORDER);
    assert_int_equal(s.gaps, 1);
}

static void test_restart(void **state)
{
    (void)state;
    delivery_stream s = {0};
    uint64_t lost;
    assert_int_equal(stream_accept(&s, 100, 4, false, &lost), STREAM_IN_ORDER);
    assert_int_equal(stream_heartbeat(&s, 100), 0);
    /* the node restarted: its numbering starts over with the HELLO */
    assert_int_equal(stream_accept(&s, 1, 1, true, &lost), STREAM_RESTARTED);
    assert_int_equal(s.received, 1);
    assert_false(s.mark_set);
    assert_int_equal(stream_accept(&s, 3, 2, false, &lost), STREAM_IN_ORDER);
    assert_int_equal(s.gaps, 0);
    /* restarted again, and its first HELLOs were published before our
     * subscription was up: the first one we see is number 5, still a restart */
    assert_int_equal(stream_accept(&s, 9, 1, false, &lost), STREAM_GAP);
    assert_int_equal(stream_accept(&s, 5, 1, true, &lost), STREAM_RESTARTED);
    assert_int_equal(stream_accept(&s, 6, 1, false, &lost), STREAM_IN_ORDER);
    /* a HELLO after a reconnect, the node still running: numbers go on, a
     * jump is a gap as for any batch */
    assert_int_equal(stream_accept(&s, 9, 1, true, &lost), STREAM_GAP);
    assert_int_equal(lost, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order_and_gap),
        cmocka_unit_test(test_tail_loss),
        cmocka_unit_test(test_settle),
        cmocka_unit_test(test_restart),
    };
    return cmocka_run_group_tests_name("nodelink", tests, NULL, NULL);
}
