/* test_yaml.c - the one YAML loader (common/yamljson.c) against hostile files:
 * a "billion laughs" alias bomb is refused at once, naming the file, as are
 * aliases copying too many values or bytes, an alias cycle and nesting that
 * is too deep; a file using a few aliases still loads, each alias a copy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mem.h"
#include "yamljson.h"

static char err[512];
static char path[64];

static const char *write_file(const char *text)
{
    strcpy(path, "/tmp/eddy-test-yaml-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Loads text; expects a refusal whose message names the file and has `part`. */
static void refused(const char *text, const char *part)
{
    const char *p = write_file(text);
    err[0] = '\0';
    json_t *v = yaml_load_file(p, err, sizeof(err));
    unlink(p);
    if (v != NULL) {
        json_decref(v);
        fail_msg("loaded; expected a refusal with '%s'", part);
    }
    if (strstr(err, p) == NULL || strstr(err, part) == NULL)
        fail_msg("error '%s' does not name the file and '%s'", err, part);
}

static json_t *loads(const char *text)
{
    const char *p = write_file(text);
    json_t *v = yaml_load_file(p, err, sizeof(err));
    unlink(p);
    if (v == NULL)
        fail_msg("refused: %s", err);
    return v;
}

/* 342 bytes that expand to 9^9 (387 million) strings: 68 s and 24 GB before. */
static const char *const bomb =
    "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";

static void test_billion_laughs(void **state)
{
    (void)state;
    size_t before = mem_used();
    double t0 = now_s();
    refused(bomb, "alias");
    double took = now_s() - t0;
    assert_true(took < 2.0); /* about a millisecond; generous for sanitizers */
    assert_int_equal(mem_used(), before);
}

/* n uses of an anchored 9-item list: each copies 10 values (the list and its items). */
static char *uses(int n)
{
    size_t cap = 64 + (size_t)n * 8;
    char *text = xmalloc(cap);
    size_t len = (size_t)snprintf(text, cap, "base: &b [1, 2, 3, 4, 5, 6, 7, 8, 9]\ncopies:\n");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, cap - len, "  - *b\n");
    return text;
}

static void test_alias_bound(void **state)
{
    (void)state;
    char *text = uses(YAML_MAX_ALIAS_VALUES / 10); /* exactly at the bound: loads */
    json_t *v = loads(text);
    assert_int_equal(json_array_size(json_object_get(v, "copies")), YAML_MAX_ALIAS_VALUES / 10);
    json_decref(v);
    xfree(text);
    text = uses(YAML_MAX_ALIAS_VALUES / 10 + 1); /* one more: refused */
    refused(text, "alias");
    xfree(text);

    /* a long scalar copied by aliases counts its bytes */
    size_t big = 4096, n = YAML_MAX_ALIAS_BYTES / big + 1;
    size_t cap = big + 64 + n * 16;
    text = xmalloc(cap);
    size_t len = (size_t)snprintf(text, cap, "s: &s ");
    memset(text + len, 'x', big);
    len += big;
    len += (size_t)snprintf(text + len, cap - len, "\nl:\n");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, cap - len, "  - *s\n");
    refused(text, "bytes");
    xfree(text);
}

static void test_few_aliases_load(void **state)
{
    (void)state;
    json_t *v = loads("defaults: &d\n  timeout: 500\n  tags: [a, b]\n"
                      "one: *d\n"
                      "two:\n  inner: *d\n  name: &n 'x'\n  again: *n\n");
    json_t *one = json_object_get(v, "one");
    assert_int_equal(json_integer_value(json_object_get(one, "timeout")), 500);
    assert_int_equal(json_array_size(json_object_get(one, "tags")), 2);
    json_t *inner = json_object_get(json_object_get(v, "two"), "inner");
    assert_true(json_equal(inner, json_object_get(v, "defaults")));
    assert_true(inner != json_object_get(v, "defaults")); /* a copy, not a shared reference */
    assert_string_equal(json_string_value(json_object_get(json_object_get(v, "two"), "again")), "x");
    json_decref(v);
}

static void test_cycles_and_depth(void **state)
{
    (void)state;
    refused("a: &a [1, *a]\n", "line"); /* an alias inside its own anchor */
    char text[1024] = "v: ";
    for (int i = 0; i < YAML_MAX_DEPTH + 2; i++)
        strcat(text, "[");
    for (int i = 0; i < YAML_MAX_DEPTH + 2; i++)
        strcat(text, "]");
    strcat(text, "\n");
    refused(text, "nesting deeper");
    json_t *v = loads("");
    assert_true(json_is_object(v));
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_billion_laughs),
        cmocka_unit_test(test_alias_bound),
        cmocka_unit_test(test_few_aliases_load),
        cmocka_unit_test(test_cycles_and_depth),
    };
    return cmocka_run_group_tests_name("yaml", tests, NULL, NULL);
}
