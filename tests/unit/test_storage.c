/* test_storage.c - the RocksDB record store: write, read, overwrite, delete,
 * values of every size, and reopening the folder keeps what was committed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mem.h"
#include "storage.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/eddy-test-storage-XXXXXX");
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

static void expect(storage *s, const char *name, int64_t version, const char *data)
{
    int64_t v;
    char *d = NULL;
    size_t len;
    int rc = storage_get(s, name, strlen(name), &v, &d, &len);
    if (data == NULL) {
        assert_int_equal(rc, 0);
        return;
    }
    assert_int_equal(rc, 1);
    assert_int_equal(v, version);
    assert_int_equal(len, strlen(data));
    assert_string_equal(d, data);
    xfree(d);
}

static void test_write_read_delete_reopen(void **state)
{
    (void)state;
    char err[256];
    storage *s = storage_open(dir, err, sizeof(err));
    assert_non_null(s);
    expect(s, "rec/1", 0, NULL);
    storage_batch *b = storage_batch_new();
    storage_batch_put(b, "rec/1", 5, 0, "{}", 2);
    storage_batch_put(b, "rec/2", 5, 7, "[1,2]", 5);
    storage_batch_put(b, "rec/1", 5, 1, "{\"a\":1}", 7); /* later put in the batch wins */
    assert_int_equal(storage_batch_count(b), 3);
    assert_int_equal(storage_batch_commit(s, b, true, err, sizeof(err)), 0);
    assert_int_equal(storage_batch_count(b), 0);
    expect(s, "rec/1", 1, "{\"a\":1}");
    expect(s, "rec/2", 7, "[1,2]");
    storage_batch_delete(b, "rec/2", 5);
    assert_int_equal(storage_batch_commit(s, b, false, err, sizeof(err)), 0);
    expect(s, "rec/2", 0, NULL);
    /* a large value and a long name */
    size_t big = 1 << 20;
    char *data = xmalloc(big + 1);
    memset(data, 'x', big);
    data[0] = '"';
    data[big - 1] = '"';
    data[big] = '\0';
    char name[600];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    storage_batch_put(b, name, strlen(name), INT32_MAX, data, big);
    assert_int_equal(storage_batch_commit(s, b, true, err, sizeof(err)), 0);
    storage_batch_free(b);
    storage_close(s);

    s = storage_open(dir, err, sizeof(err));
    assert_non_null(s);
    expect(s, "rec/1", 1, "{\"a\":1}");
    expect(s, "rec/2", 0, NULL);
    expect(s, name, INT32_MAX, data);
    xfree(data);
    storage_close(s);
}

static void test_open_errors(void **state)
{
    (void)state;
    char err[256];
    assert_null(storage_open("/proc/eddy-cannot-create-here", err, sizeof(err)));
    assert_non_null(strstr(err, "rocksdb open"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_read_delete_reopen, setup, teardown),
        cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests_name("storage", tests, NULL, NULL);
}
