/* test_subs.c - the subscription table and the growable array: first/last
 * hooks fire exactly on the transitions (holders, pins, quiet removals), both
 * indexes stay in step (by name and by holder), tags tell one peer's sessions
 * apart, and a holder's departure releases every name it held. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "subs.h"
#include "vec.h"

typedef struct counts {
    int first, last;
    char last_name[64];
} counts;

typedef struct data {
    int value;
} data;

static void on_first(void *ctx, strview name, void *d)
{
    counts *c = ctx;
    assert_int_equal(((data *)d)->value, 0); /* zeroed */
    c->first++;
}

static void on_last(void *ctx, strview name, void *d)
{
    counts *c = ctx;
    c->last++;
    snprintf(c->last_name, sizeof(c->last_name), "%.*s", (int)name.len, name.ptr);
}

/* Each test gets a fresh table t whose hooks count into *c. */
static counts hook_counts, *c = &hook_counts;
static subs *t;

static int setup(void **state)
{
    memset(c, 0, sizeof(*c));
    t = subs_new(sizeof(data), (subs_hooks){on_first, on_last}, c);
    return 0;
}

static int teardown(void **state)
{
    subs_free(t);
    t = NULL;
    return 0;
}

static void test_first_and_last(void **state)
{
    (void)state;
    int a, b;
    assert_true(subs_add(t, sv_of("x"), &a, 0));
    assert_false(subs_add(t, sv_of("x"), &a, 0)); /* already holds it */
    assert_true(subs_add(t, sv_of("x"), &b, 0));
    assert_int_equal(c->first, 1);
    ((data *)subs_data(t, sv_of("x")))->value = 7;
    uint32_t n;
    subs_holder *h = subs_holders(t, sv_of("x"), &n);
    assert_int_equal(n, 2);
    assert_true((h[0].ptr == &a && h[1].ptr == &b) || (h[0].ptr == &b && h[1].ptr == &a));
    assert_true(subs_holds(t, sv_of("x"), &a, 0));
    assert_true(subs_remove(t, sv_of("x"), &a, 0, false));
    assert_false(subs_remove(t, sv_of("x"), &a, 0, false));
    assert_false(subs_holds(t, sv_of("x"), &a, 0));
    assert_int_equal(c->last, 0);
    assert_int_equal(((data *)subs_data(t, sv_of("x")))->value, 7); /* kept while held */
    assert_true(subs_remove(t, sv_of("x"), &b, 0, false));
    assert_int_equal(c->last, 1);
    assert_string_equal(c->last_name, "x");
    assert_null(subs_data(t, sv_of("x")));
    assert_null(subs_holders(t, sv_of("x"), &n));
    assert_int_equal(n, 0);
    assert_int_equal(subs_count(t), 0);
}

/* subs_find: the one holder's entry, its counter kept in place; NULL for a
 * holder of another name or of another tag. */
static void test_find(void **state)
{
    (void)state;
    int a, b;
    assert_true(subs_add(t, sv_of("x"), &a, 0));
    assert_true(subs_add(t, sv_of("x"), &b, 0));
    assert_true(subs_add(t, sv_of("y"), &b, 5));
    subs_holder *h = subs_find(t, sv_of("x"), &b, 0);
    assert_non_null(h);
    assert_ptr_equal(h->ptr, &b);
    assert_int_equal(h->count, 0);
    h->count = 42;
    assert_int_equal(subs_find(t, sv_of("x"), &b, 0)->count, 42);
    assert_int_equal(subs_find(t, sv_of("x"), &a, 0)->count, 0);
    assert_null(subs_find(t, sv_of("y"), &a, 0));
    assert_null(subs_find(t, sv_of("y"), &b, 0)); /* it holds y under tag 5 */
    assert_non_null(subs_find(t, sv_of("y"), &b, 5));
    assert_null(subs_find(t, sv_of("z"), &a, 0));
}

static void test_pins_and_quiet(void **state)
{
    (void)state;
    int a;
    data *d = subs_pin(t, sv_of("r"));
    d->value = 3;
    assert_int_equal(c->first, 1);
    assert_true(subs_add(t, sv_of("r"), &a, 0));
    subs_unpin(t, sv_of("r"), false);
    assert_int_equal(c->last, 0); /* still held */
    assert_int_equal(((data *)subs_data(t, sv_of("r")))->value, 3);
    assert_true(subs_remove(t, sv_of("r"), &a, 0, true)); /* quiet: no hook */
    assert_int_equal(c->last, 0);
    assert_null(subs_data(t, sv_of("r")));
    subs_pin(t, sv_of("s"));
    subs_pin(t, sv_of("s"));
    subs_unpin(t, sv_of("s"), false);
    assert_non_null(subs_data(t, sv_of("s")));
    subs_unpin(t, sv_of("s"), false);
    assert_int_equal(c->last, 1);
    subs_unpin(t, sv_of("s"), false); /* nothing left: a no-op */
    assert_int_equal(c->last, 1);
}

static void test_tags(void **state)
{
    (void)state;
    int peer;
    assert_true(subs_add(t, sv_of("rpc"), &peer, 1));
    assert_true(subs_add(t, sv_of("rpc"), &peer, 2));
    assert_false(subs_add(t, sv_of("rpc"), &peer, 2));
    assert_true(subs_holds(t, sv_of("rpc"), &peer, 1));
    assert_false(subs_holds(t, sv_of("rpc"), &peer, 3));
    assert_int_equal(subs_held(t, &peer), 1); /* one name, two tags */
    assert_true(subs_remove(t, sv_of("rpc"), &peer, 1, false));
    assert_true(subs_holds(t, sv_of("rpc"), &peer, 2));
    assert_int_equal(subs_held(t, &peer), 1);
    assert_int_equal(c->last, 0);
    assert_true(subs_remove(t, sv_of("rpc"), &peer, 2, false));
    assert_int_equal(subs_held(t, &peer), 0);
    assert_int_equal(c->last, 1);
}

static int count_names(void *arg, strview name)
{
    (*(int *)arg)++;
    return 0;
}

static int sum_holders(void *arg, strview name, subs_holder *h, uint32_t n, void *d)
{
    *(uint32_t *)arg += n;
    return 0;
}

static void test_remove_holder(void **state)
{
    (void)state;
    int a, b;
    char name[32];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        subs_add(t, sv_of(name), &a, 0);
        if (i % 2 == 0)
            subs_add(t, sv_of(name), &b, 0);
    }
    subs_add(t, (strview){"with\0nul", 8}, &a, 0); /* names are bytes, not C strings */
    int held = 0;
    subs_foreach_held(t, &a, count_names, &held);
    assert_int_equal(held, 101);
    uint32_t total = 0;
    subs_foreach(t, sum_holders, &total);
    assert_int_equal(total, 151);
    assert_int_equal(subs_remove_holder(t, &a), 101);
    assert_int_equal(c->last, 51); /* the odd names and the NUL one had only a */
    assert_int_equal(subs_count(t), 50);
    assert_int_equal(subs_held(t, &a), 0);
    assert_int_equal(subs_remove_holder(t, &a), 0);
    subs_clear(t, sv_of("n0")); /* quiet */
    assert_int_equal(c->last, 51);
    assert_int_equal(subs_held(t, &b), 49);
}

static void test_vec(void **state)
{
    (void)state;
    VEC(int) v = {0};
    for (int i = 0; i < 1000; i++)
        vec_push(&v, i);
    assert_int_equal(v.n, 1000);
    assert_true(v.cap >= 1000);
    assert_int_equal(v.v[999], 999);
    vec_swap_remove(&v, 0);
    assert_int_equal(v.n, 999);
    assert_int_equal(v.v[0], 999);
    vec_free(&v);
    assert_null(v.v);
    assert_int_equal(v.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_and_last, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pins_and_quiet, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_holder, setup, teardown),
        cmocka_unit_test(test_vec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
