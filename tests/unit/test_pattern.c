/* test_pattern.c - listen patterns (common/pattern.c): JavaScript-like
 * matching, and the bounds that keep a hostile pattern from holding a thread:
 * catastrophic backtracking ends at the match limit as "no match", quickly,
 * logged once per pattern; honest patterns still match names of the longest
 * size (4096 bytes); every thread that matches gets its own JIT stack. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mem.h"
#include "pattern.h"

#define NAME_MAX_LEN 4096 /* OP_NAME_MAX */

static double now_ms_f(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static pattern *compile(const char *text)
{
    pattern *p = pattern_compile(text, strlen(text));
    if (p == NULL)
        fail_msg("'%s' does not compile", text);
    return p;
}

static bool matches(const char *text, const char *name)
{
    pattern *p = compile(text);
    bool m = pattern_match(p, name, strlen(name));
    pattern_free(p);
    return m;
}

static void test_javascript_like(void **state)
{
    (void)state;
    assert_true(matches("news/.*", "news/sports"));
    assert_true(matches("sports", "news/sports/today")); /* unanchored, as RegExp.test */
    assert_false(matches("^sports", "news/sports"));
    assert_true(matches("^user/[^/]+/status$", "user/alice/status"));
    assert_false(matches("^user/[^/]+/status$", "user/alice/x/status"));
    assert_true(matches("\\u0041", "A")); /* PCRE2_ALT_BSUX: \uXXXX */
    assert_true(matches("[]|x", "x"));     /* an empty class matches nothing, as in JavaScript */
    assert_true(matches("é.", "éa"));      /* UTF-8: . is one character */
    assert_null(pattern_compile("(", 1));
    assert_null(pattern_compile("", 0));
    assert_false(pattern_valid("a[", 2));
    assert_true(pattern_valid("a[b]", 4));
    char *big = xmalloc(PATTERN_MAX + 2);
    memset(big, 'a', PATTERN_MAX + 1);
    assert_true(pattern_valid(big, PATTERN_MAX));
    assert_false(pattern_valid(big, PATTERN_MAX + 1));
    assert_null(pattern_compile(big, PATTERN_MAX + 1));
    xfree(big);
    /* a name that is not UTF-8 is no match, and no limit */
    pattern *p = compile("a");
    assert_false(pattern_match(p, "a\xff", 2));
    assert_int_equal(pattern_limit_hits(p), 0);
    pattern_free(p);
}

/* The case: 40 a's and a '!' against catastrophic patterns took about
 * 200 ms per match (PCRE2's default limit of 10 million, no JIT). */
static const char *const catastrophic[] = {
    "^(a+)+$", "(a|a)*$", "^(a|aa)+$", "^(\\w+\\s?)*$", "(a*)*(a*)*(a*)*$", "^((a+)+)+$", "(a|aa|aaa)*$",
};
#define N_CATASTROPHIC (sizeof(catastrophic) / sizeof(catastrophic[0]))

static void test_catastrophic_is_bounded(void **state)
{
    (void)state;
    char name[64];
    memset(name, 'a', 40);
    strcpy(name + 40, "!");
    double worst = 0, total = 0;
    for (size_t i = 0; i < N_CATASTROPHIC; i++) {
        pattern *p = compile(catastrophic[i]);
        for (int round = 0; round < 50; round++) { /* 50 subscribed names */
            double t0 = now_ms_f();
            bool m = pattern_match(p, name, strlen(name));
            double took = now_ms_f() - t0;
            assert_false(m);
            total += took;
            if (took > worst)
                worst = took;
        }
        assert_int_equal(pattern_limit_hits(p), 50);
        pattern_free(p);
    }
    printf("# catastrophic: %zu patterns x 50 names: worst match %.3f ms, all %.1f ms\n", N_CATASTROPHIC, worst,
           total);
    /* about 0.05 ms a match with JIT, 0.3 ms without; the bounds leave room for sanitizers */
    assert_true(worst < 20.0);
    assert_true(total < 1000.0);
}

/* Honest patterns on the longest names stay under the limits. */
static void test_honest_long_names(void **state)
{
    (void)state;
    char *name = xmalloc(NAME_MAX_LEN + 1);
    memset(name, 'a', NAME_MAX_LEN);
    name[NAME_MAX_LEN] = '\0';
    const char *const yes[] = {"^(\\w)+$", "^(?:a)*$", "^(a|b)*$", "a+$", "[ab].*a$", ".*a.*a.*a$"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        pattern *p = compile(yes[i]);
        if (!pattern_match(p, name, NAME_MAX_LEN))
            fail_msg("'%s' does not match 4096 a's (limit hits %llu)", yes[i],
                     (unsigned long long)pattern_limit_hits(p));
        pattern_free(p);
    }
    /* a linear scan that fails at the very end: no limit reached either */
    pattern *p = compile("[ab].*[cd]");
    assert_false(pattern_match(p, name, NAME_MAX_LEN));
    assert_int_equal(pattern_limit_hits(p), 0);
    name[NAME_MAX_LEN - 1] = 'c';
    assert_true(pattern_match(p, name, NAME_MAX_LEN));
    pattern_free(p);
    memcpy(name, "news/", 5);
    memcpy(name + NAME_MAX_LEN - 7, "/sports", 7);
    assert_true(matches("^news/.*/sports$", name));
    xfree(name);
}

/* The first match of a pattern that reaches a limit is logged, later ones are not. */
static void test_logged_once(void **state)
{
    (void)state;
    char path[] = "/tmp/eddy-test-pattern-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(2);
    fflush(stderr);
    dup2(fd, 2);
    pattern *p = compile("^(a+)+$"), *q = compile("^(a|a)+$");
    for (int i = 0; i < 20; i++) {
        assert_false(pattern_match(p, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", 41));
        assert_false(pattern_match(q, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", 41));
    }
    assert_true(pattern_match(p, "aaaa", 4)); /* still matches where it can */
    pattern_free(p);
    pattern_free(q);
    dup2(saved, 2);
    close(saved);
    char buf[4096];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    buf[n] = '\0';
    int lines = 0;
    for (const char *s = buf; (s = strstr(s, "listen-pattern-limit")) != NULL; s++)
        lines++;
    assert_int_equal(lines, 2); /* one per pattern */
    assert_non_null(strstr(buf, "pattern=\"^(a+)+$\""));
    assert_non_null(strstr(buf, "limit="));
}

static void *match_in_thread(void *arg)
{
    char *name = arg;
    pattern *p = pattern_compile("^(\\w)+$", 7);
    bool m = pattern_match(p, name, NAME_MAX_LEN); /* needs more than PCRE2's default JIT stack */
    pattern_free(p);
    return m ? name : NULL;
}

/* Each thread has a JIT stack of its own, freed when it ends (the sanitizer build checks). */
static void test_threads(void **state)
{
    (void)state;
    char *name = xmalloc(NAME_MAX_LEN + 1);
    memset(name, 'b', NAME_MAX_LEN);
    name[NAME_MAX_LEN] = '\0';
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, match_in_thread, name), 0);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        assert_ptr_equal(r, name);
    }
    xfree(name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_javascript_like),   cmocka_unit_test(test_catastrophic_is_bounded),
        cmocka_unit_test(test_honest_long_names), cmocka_unit_test(test_logged_once),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests_name("pattern", tests, NULL, NULL);
}
