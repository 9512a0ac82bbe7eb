/* test_history.c - the event history rings (node/history.c): offsets count
 * 1, 2, 3 per name under an epoch of their own; a ring keeps its last `size`
 * events, each for `ttl`; all rings together stay under historyMaxBytes
 * (empty rings go first, then the oldest events of any name); a ring freed
 * comes back with a new epoch; names matching no rule get no ring; the
 * configuration's events.history list and flag form are checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "../../node/internal.h" /* (-I puts broker/internal.h first) */

static strview sv(const char *s)
{
    return (strview){s, (uint32_t)strlen(s)};
}

/* A config with one rule (pattern, size, ttl) and max bytes. */
static void config_one(eddy_config *cfg, const char *pattern, int64_t size, int64_t ttl, int64_t max_bytes)
{
    config_defaults(cfg);
    char flag[256], err[256];
    snprintf(flag, sizeof(flag), "%lld,%lld,%s", (long long)size, (long long)ttl, pattern);
    assert_int_equal(config_set_flag(cfg, "--events-history", flag, err, sizeof(err)), 0);
    cfg->history_max_bytes = max_bytes;
}

static uint64_t emit(history *h, const char *name, const char *data, int64_t now, uint64_t *epoch)
{
    history_ring *r = history_find(h, sv(name), true, NULL);
    assert_non_null(r);
    op o = {.kind = OP_EVENT_EMIT, .name = sv(name), .has_data = data != NULL, .data = sv(data ? data : "")};
    return history_append(h, r, 7, 1, &o, now, epoch);
}

static void test_no_rules_no_history(void **state)
{
    eddy_config cfg;
    config_defaults(&cfg);
    assert_null(history_new(&cfg, 1)); /* events.c then does no work per emit */
    config_free(&cfg);
}

static void test_offsets_and_size(void **state)
{
    eddy_config cfg;
    config_one(&cfg, "^hist/", 3, 0, 1 << 20);
    history *h = history_new(&cfg, 1000);
    uint64_t epoch = 0, epoch_b = 0;
    bool kept = true;
    assert_null(history_find(h, sv("other/x"), true, &kept)); /* matches no rule */
    assert_false(kept);
    assert_null(history_find(h, sv("other/x"), true, &kept)); /* (from the cache of misses) */
    assert_false(kept);
    assert_null(history_find(h, sv("hist/a"), false, &kept)); /* matches, no ring yet */
    assert_true(kept);
    history_span s = history_span_of(h, NULL, 0);
    assert_int_equal(s.epoch, 0);
    assert_int_equal(s.first, 1);
    assert_int_equal(s.next, 1);
    for (int i = 1; i <= 5; i++) {
        char data[16];
        snprintf(data, sizeof(data), "%d", i);
        assert_int_equal(emit(h, "hist/a", data, 0, &epoch), (uint64_t)i);
    }
    assert_int_equal(emit(h, "hist/b", "\"b\"", 0, &epoch_b), 1); /* a ring, and offsets, per name */
    assert_true(epoch != 0 && epoch_b != 0 && epoch != epoch_b);
    history_ring *r = history_find(h, sv("hist/a"), false, NULL);
    s = history_span_of(h, r, 0);
    assert_int_equal(s.epoch, epoch);
    assert_int_equal(s.first, 3); /* size 3: 3, 4, 5 */
    assert_int_equal(s.next, 6);
    assert_null(history_at(r, 2));
    assert_null(history_at(r, 6));
    const history_event *ev = history_at(r, 4);
    assert_non_null(ev);
    assert_int_equal(ev->len, 1);
    assert_memory_equal(ev->data, "4", 1);
    assert_int_equal(ev->broker, 7);
    /* an event without data */
    assert_int_equal(emit(h, "hist/a", NULL, 0, &epoch), 6);
    assert_false(history_at(r, 6)->has_data);
    size_t bytes, rings, events;
    history_usage(h, &bytes, &rings, &events);
    assert_int_equal(rings, 2);
    assert_int_equal(events, 4); /* 4, 5, 6 of hist/a, 1 of hist/b */
    history_free(h);
    config_free(&cfg);
}

static void test_ring_wraps_and_grows(void **state)
{
    eddy_config cfg;
    config_one(&cfg, "^w$", 100, 0, 1 << 20);
    history *h = history_new(&cfg, 5);
    uint64_t epoch;
    for (int i = 1; i <= 1000; i++) {
        char data[16];
        snprintf(data, sizeof(data), "%d", i);
        assert_int_equal(emit(h, "w", data, 0, &epoch), (uint64_t)i);
    }
    history_ring *r = history_find(h, sv("w"), false, NULL);
    history_span s = history_span_of(h, r, 0);
    assert_int_equal(s.first, 901);
    assert_int_equal(s.next, 1001);
    for (uint64_t off = s.first; off < s.next; off++) { /* every offset held, in order, with its data */
        char data[16];
        int n = snprintf(data, sizeof(data), "%llu", (unsigned long long)off);
        const history_event *ev = history_at(r, off);
        assert_int_equal(ev->len, (uint32_t)n);
        assert_memory_equal(ev->data, data, (size_t)n);
    }
    history_free(h);
    config_free(&cfg);
}

static void test_ttl(void **state)
{
    eddy_config cfg;
    config_one(&cfg, "^t/", 100, 1000, 1 << 20);
    history *h = history_new(&cfg, 5);
    uint64_t epoch, epoch2;
    emit(h, "t/a", "1", 0, &epoch);
    emit(h, "t/b", "1", 400, &epoch);
    emit(h, "t/a", "2", 500, &epoch);
    history_expire(h, 999);
    history_ring *a = history_find(h, sv("t/a"), false, NULL);
    assert_int_equal(history_span_of(h, a, 999).first, 1);
    history_expire(h, 1000); /* t/a 1 is 1000 ms old */
    history_span s = history_span_of(h, a, 1000);
    assert_int_equal(s.first, 2);
    assert_int_equal(s.next, 3);
    s = history_span_of(h, a, 1600); /* all gone: the ring is empty but keeps its numbering */
    assert_int_equal(s.first, 3);
    assert_int_equal(s.next, 3);
    assert_int_equal(emit(h, "t/a", "3", 1700, &epoch2), 3);
    assert_int_equal(epoch2, epoch);
    history_free(h);
    config_free(&cfg);
}

static void test_max_bytes(void **state)
{
    eddy_config cfg;
    config_one(&cfg, "^m/", 1000000, 0, 1 << 20);
    history *h = history_new(&cfg, 5);
    char big[10001];
    memset(big, 'x', sizeof(big) - 1);
    big[0] = big[sizeof(big) - 2] = '"';
    big[sizeof(big) - 1] = '\0';
    uint64_t epoch_a, epoch;
    emit(h, "m/a", big, 0, &epoch_a);
    emit(h, "m/empty", "1", 0, &epoch);
    for (int i = 0; i < 300; i++) /* 3 MB into 1 MiB */
        emit(h, "m/b", big, 0, &epoch);
    size_t bytes, rings, events;
    history_usage(h, &bytes, &rings, &events);
    assert_true(bytes <= (1u << 20));
    assert_true(events >= 90 && events <= 104);
    /* the oldest went first: m/a and m/empty lost their only event, then their rings */
    bool kept;
    assert_null(history_find(h, sv("m/a"), false, &kept));
    assert_true(kept);
    history_ring *b = history_find(h, sv("m/b"), false, NULL);
    history_span s = history_span_of(h, b, 0);
    assert_int_equal(s.next, 301);
    assert_int_equal(s.next - s.first, events);
    /* a ring freed comes back with a new epoch, from offset 1 */
    assert_int_equal(emit(h, "m/a", "1", 0, &epoch), 1);
    assert_true(epoch != epoch_a && epoch != 0);
    /* an event larger than the whole bound is numbered, not kept */
    char *huge = malloc((2u << 20) + 3);
    memset(huge, 'y', (2u << 20) + 2);
    huge[0] = huge[(2u << 20) + 1] = '"';
    huge[(2u << 20) + 2] = '\0';
    assert_int_equal(emit(h, "m/b", huge, 0, &epoch), 301);
    free(huge);
    history_usage(h, &bytes, &rings, &events);
    assert_true(bytes <= (1u << 20));
    history_free(h);
    config_free(&cfg);
}

static void test_config(void **state)
{
    eddy_config cfg;
    char err[512];
    config_defaults(&cfg);
    assert_int_equal(cfg.history_count, 0);
    assert_int_equal(cfg.history_max_bytes, 64 << 20);
    assert_int_equal(config_set_flag(&cfg, "--events-history", "10,500,^a/(x|y),z", err, sizeof(err)), 0);
    assert_int_equal(cfg.history_count, 1);
    assert_string_equal(cfg.history[0].pattern, "^a/(x|y),z"); /* the pattern is the rest, commas and all */
    assert_int_equal(cfg.history[0].size, 10);
    assert_int_equal(cfg.history[0].ttl_ms, 500);
    assert_int_equal(config_set_flag(&cfg, "--events-history", "0,0,^a", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "size must be from 1"));
    assert_int_equal(config_set_flag(&cfg, "--events-history", "10,0,(", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a valid regular expression"));
    assert_int_equal(config_set_flag(&cfg, "--events-history", "10,x", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "SIZE,TTL,PATTERN"));
    assert_int_equal(config_set_flag(&cfg, "--events-history", "10,-1,^a", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "ttl must be"));
    config_free(&cfg);

    /* the YAML list replaces what was there; bad entries are named */
    char path[] = "/tmp/eddy-history-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("events:\n  history:\n    - {pattern: '^orders/', size: 100000, ttl: 60000}\n"
          "    - {pattern: '^audit/', size: 10}\n  historyMaxBytes: 2097152\n", f);
    fclose(f);
    config_defaults(&cfg);
    assert_int_equal(config_load_file(&cfg, path, err, sizeof(err)), 0);
    assert_int_equal(cfg.history_count, 2);
    assert_string_equal(cfg.history[1].pattern, "^audit/");
    assert_int_equal(cfg.history[1].ttl_ms, 0);
    assert_int_equal(cfg.history[0].size, 100000);
    assert_int_equal(cfg.history_max_bytes, 2097152);
    config_free(&cfg);
    const char *bad[][2] = {
        {"events:\n  history: {pattern: a, size: 1}\n", "want a list"},
        {"events:\n  history:\n    - {pattern: a}\n", "events.history[0]: size: missing"},
        {"events:\n  history:\n    - {pattern: a, size: 1, tll: 5}\n", "events.history[0].tll: unknown key"},
        {"events:\n  history:\n    - {pattern: a, size: 1}\n    - {pattern: '[', size: 1}\n",
         "events.history[1]: pattern '[' is not a valid"},
        {"events:\n  history:\n    - {pattern: 5, size: 1}\n", "pattern: missing, or not a string"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        f = fopen(path, "w");
        fputs(bad[i][0], f);
        fclose(f);
        config_defaults(&cfg);
        assert_int_equal(config_load_file(&cfg, path, err, sizeof(err)), -1);
        if (strstr(err, bad[i][1]) == NULL)
            fail_msg("case %zu: '%s' does not say '%s'", i, err, bad[i][1]);
        config_free(&cfg);
    }
    unlink(path);
}

/* The new fields travel (ops.c): offset and history on a delivery and a state. */
static void test_ops_fields(void **state)
{
    op_batch b;
    op_batch_init(&b);
    op d = {.kind = OP_EVENT_DELIVERY, .name = sv("hist/a"), .offset = 42, .history = UINT64_MAX - 1,
            .has_data = true, .data = sv("{}")};
    op st = {.kind = OP_STREAM_STATE, .name = sv("hist/a"), .offset = 1, .history = 9, .has_version = true,
             .version = 0, .flags = OP_FLAG_MORE, .corr = 3};
    op_batch_add(&b, &d);
    op_batch_add(&b, &st);
    uint8_t hdr[OP_BATCH_HEADER_MAX];
    size_t h = op_batch_header(hdr, 1, 2, b.count);
    char *msg = malloc(h + b.buf.size);
    memcpy(msg, hdr, h);
    memcpy(msg + h, b.buf.data, b.buf.size);
    mp_reader r;
    uint64_t origin, seq;
    uint32_t count;
    assert_int_equal(op_batch_open(&r, msg, h + b.buf.size, &origin, &seq, &count), 0);
    op o;
    assert_int_equal(op_decode(&r, &o), 0);
    assert_int_equal(o.offset, 42);
    assert_int_equal(o.history, UINT64_MAX - 1);
    assert_int_equal(op_decode(&r, &o), 0);
    assert_int_equal(o.kind, OP_STREAM_STATE);
    assert_int_equal(o.offset, 1);
    assert_int_equal(o.history, 9);
    assert_int_equal(o.flags, OP_FLAG_MORE);
    assert_true(o.has_version && o.version == 0);
    assert_string_equal(op_kind_name(OP_STREAM_SUBSCRIBE), "STREAM_SUBSCRIBE");
    assert_string_equal(op_kind_name(OP_STREAM_STATE), "STREAM_STATE");
    free(msg);
    op_batch_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_rules_no_history),
        cmocka_unit_test(test_offsets_and_size),
        cmocka_unit_test(test_ring_wraps_and_grows),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_max_bytes),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_ops_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
