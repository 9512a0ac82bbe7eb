/* test_streams.c - resumable event streams (eddy_subscribe_from) against a
 * real eddy process this test starts, stops (SIGSTOP past the broker
 * timeout) and kills (SIGKILL, then a restart on the same ports and data).
 * It proves: a subscription from offset 0 gets the whole
 * ring in order, then live events; one from an offset the ring no longer holds
 * hears the exact gap (from A to B) and then everything held; one whose links
 * are dropped misses nothing and gets nothing twice; one whose node is killed
 * and restarted (the ring is memory-only) hears an explicit reset and then
 * every event of the new history, none twice; one whose node stalls misses
 * nothing; `eddy ctl subscribe --from`, stopped past the broker timeout (the
 * node drops it), prints every offset exactly once when it runs again.
 *
 * Environment: EDDY_BIN (build/eddy). */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "eddy.h"

#define MAX_SEEN 4096

static const char *bin;
static char dir[256], url[128], log_path[300];
static int request_port, delivery_port, ws_port;
static pid_t server;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    getsockname(s, (struct sockaddr *)&a, &len);
    close(s);
    return ntohs(a.sin_port);
}

/* How many lines of the server's log hold needle. */
static int log_count(const char *needle)
{
    FILE *f = fopen(log_path, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* Starts eddy standalone on the test's ports and data (again after a kill),
 * and waits for its broker-listening line. */
static void server_start(void)
{
    int before = log_count("broker-listening");
    char req[64], del[64], port[16], data[300];
    snprintf(req, sizeof(req), "tcp://127.0.0.1:%d", request_port);
    snprintf(del, sizeof(del), "tcp://127.0.0.1:%d", delivery_port);
    snprintf(port, sizeof(port), "%d", ws_port);
    snprintf(data, sizeof(data), "%s/data", dir);
    server = fork();
    assert_true(server >= 0);
    if (server == 0) {
        FILE *f = freopen(log_path, "a", stderr);
        (void)f;
        execl(bin, bin, "standalone", "--host", "127.0.0.1", "--port", port, "--request", req, "--delivery", del,
              "--data", data, "--broker-timeout", "2000", "--events-history", "1000,0,^s/", "--events-history",
              "100,0,^small/", (char *)NULL);
        _exit(127);
    }
    long long deadline = now_ms() + 10000;
    while (log_count("broker-listening") == before) {
        if (now_ms() > deadline)
            fail_msg("eddy did not start (log: %s)", log_path);
        sleep_ms(50);
    }
}

static void server_signal(int sig)
{
    assert_int_equal(kill(server, sig), 0);
    if (sig == SIGKILL || sig == SIGTERM) {
        int status;
        waitpid(server, &status, 0);
        if (sig == SIGTERM)
            assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
}

/* ---------------- what a stream's callbacks saw ---------------- */

typedef struct seen {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int count;
    uint64_t history[MAX_SEEN], offset[MAX_SEEN];
    int value[MAX_SEEN]; /* the event's data: a number */
    int gaps;
    uint64_t gap_from[16], gap_to[16];
    bool gap_reset[16];
} seen;

static void seen_init(seen *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
}

static void on_event(void *arg, const char *name, uint64_t history, uint64_t offset, const char *json)
{
    seen *s = arg;
    pthread_mutex_lock(&s->lock);
    if (s->count < MAX_SEEN) {
        s->history[s->count] = history;
        s->offset[s->count] = offset;
        s->value[s->count] = json ? atoi(json) : -1;
        s->count++;
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void on_gap(void *arg, const char *name, uint64_t history, uint64_t from, uint64_t to, bool reset)
{
    seen *s = arg;
    pthread_mutex_lock(&s->lock);
    if (s->gaps < 16) {
        s->gap_from[s->gaps] = from;
        s->gap_to[s->gaps] = to;
        s->gap_reset[s->gaps] = reset;
        s->gaps++;
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* Waits until s holds n events. */
static void wait_events(seen *s, int n, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    pthread_mutex_lock(&s->lock);
    while (s->count < n && now_ms() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&s->cond, &s->lock, &ts);
    }
    int got = s->count;
    pthread_mutex_unlock(&s->lock);
    if (got < n)
        fail_msg("got %d events of %d within %d ms", got, n, timeout_ms);
}

static eddy *connect_backend(void)
{
    eddy_options o = {.timeout_ms = 5000};
    eddy *e;
    assert_int_equal(eddy_connect(url, &o, &e), EDDY_OK);
    return e;
}

/* Emits the numbers from..to on name, retrying while the node is away; then
 * waits until the node has applied them (a read of the same name travels
 * after them on the same link). */
static void emit_range(eddy *e, const char *name, int from, int to)
{
    for (int i = from; i <= to; i++) {
        char json[16];
        snprintf(json, sizeof(json), "%d", i);
        long long deadline = now_ms() + 15000;
        eddy_status st;
        while ((st = eddy_emit(e, name, json)) != EDDY_OK && now_ms() < deadline)
            sleep_ms(50);
        assert_int_equal(st, EDDY_OK);
    }
    char *doc = NULL;
    long long deadline = now_ms() + 15000;
    eddy_status st;
    while ((st = eddy_get(e, name, &doc, NULL)) != EDDY_ERR_NOT_FOUND && st != EDDY_OK && now_ms() < deadline)
        sleep_ms(50);
    assert_int_equal(st, EDDY_ERR_NOT_FOUND); /* (an event name: no such record) */
}

/* ---------------- the tests ---------------- */

static void test_from_zero_gets_the_whole_ring(void **state)
{
    eddy *emitter = connect_backend(), *reader = connect_backend();
    emit_range(emitter, "s/whole", 1, 50);
    seen s;
    seen_init(&s);
    assert_int_equal(eddy_subscribe_from(reader, "s/whole", 0, EDDY_OFFSET_OLDEST, on_event, on_gap, &s), EDDY_OK);
    wait_events(&s, 50, 5000);
    emit_range(emitter, "s/whole", 51, 51); /* then live */
    wait_events(&s, 51, 5000);
    sleep_ms(200); /* (nothing more may come) */
    assert_int_equal(s.count, 51);
    assert_int_equal(s.gaps, 0);
    for (int i = 0; i < 51; i++) {
        assert_int_equal(s.offset[i], (uint64_t)i + 1);
        assert_int_equal(s.value[i], i + 1);
        assert_int_equal(s.history[i], s.history[0]);
    }
    assert_true(s.history[0] != 0);
    /* from an offset in the middle, of the history the callbacks named */
    seen mid;
    seen_init(&mid);
    eddy *other = connect_backend();
    assert_int_equal(eddy_subscribe_from(other, "s/whole", s.history[0], 40, on_event, on_gap, &mid), EDDY_OK);
    wait_events(&mid, 12, 5000);
    assert_int_equal(mid.offset[0], 40);
    assert_int_equal(mid.value[11], 51);
    assert_int_equal(mid.gaps, 0);
    /* a name without history is refused */
    assert_int_equal(eddy_subscribe_from(other, "plain/x", 0, 0, on_event, on_gap, &mid), EDDY_ERR_NO_HISTORY);
    assert_int_equal(eddy_subscribe_from(other, "s/whole", 0, 0, on_event, on_gap, &mid), EDDY_ERR_EXISTS);
    assert_int_equal(eddy_subscribe_from(other, "s/y", 0, 0, on_event, NULL, &mid), EDDY_ERR_INVALID);
    eddy_close(other);
    eddy_close(reader);
    eddy_close(emitter);
}

static void test_gap_past_the_ring(void **state)
{
    eddy *emitter = connect_backend(), *reader = connect_backend();
    emit_range(emitter, "small/g", 1, 150); /* the ring keeps 100: 51..150 */
    seen s;
    seen_init(&s);
    assert_int_equal(eddy_subscribe_from(reader, "small/g", 0, 1, on_event, on_gap, &s), EDDY_OK);
    wait_events(&s, 100, 5000);
    assert_int_equal(s.gaps, 1);
    assert_int_equal(s.gap_from[0], 1);
    assert_int_equal(s.gap_to[0], 50);
    assert_false(s.gap_reset[0]);
    assert_int_equal(s.offset[0], 51);
    assert_int_equal(s.value[0], 51);
    assert_int_equal(s.offset[99], 150);
    /* from now on: nothing of the past */
    seen now;
    seen_init(&now);
    eddy *late = connect_backend();
    assert_int_equal(eddy_subscribe_from(late, "small/g", 0, EDDY_OFFSET_NOW, on_event, on_gap, &now), EDDY_OK);
    emit_range(emitter, "small/g", 151, 151);
    wait_events(&now, 1, 5000);
    assert_int_equal(now.offset[0], 151);
    assert_int_equal(now.gaps, 0);
    wait_events(&s, 101, 5000);
    eddy_close(late);
    eddy_close(reader);
    eddy_close(emitter);
}

/* Every event 1..n seen exactly once, in order, with offsets counting on
 * within each history. */
static void assert_each_once(seen *s, int n)
{
    assert_int_equal(s->count, n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(s->value[i], i + 1);
        if (i > 0 && s->history[i] == s->history[i - 1])
            assert_int_equal(s->offset[i], s->offset[i - 1] + 1);
    }
}

/* An emitter emits before, during and after the node is stopped for longer
 * than the broker timeout (its links stall; what the emitter queued meanwhile
 * arrives at once, and the reader's link may be dropped, depending on what the
 * node sees first when it runs again): the reader gets every event once.
 * test_ctl_subscribe_from drops a reader's link for certain. */
static void test_node_stalled(void **state)
{
    eddy *emitter = connect_backend(), *reader = connect_backend();
    seen s;
    seen_init(&s);
    assert_int_equal(eddy_subscribe_from(reader, "s/drop", 0, EDDY_OFFSET_NOW, on_event, on_gap, &s), EDDY_OK);
    emit_range(emitter, "s/drop", 1, 30);
    server_signal(SIGSTOP);
    for (int i = 31; i <= 60; i++) { /* queued by the emitter's link meanwhile */
        char json[16];
        snprintf(json, sizeof(json), "%d", i);
        assert_int_equal(eddy_emit(emitter, "s/drop", json), EDDY_OK);
        sleep_ms(10);
    }
    sleep_ms(3000); /* past cluster.brokerTimeout (2000) */
    server_signal(SIGCONT);
    emit_range(emitter, "s/drop", 61, 90);
    wait_events(&s, 90, 15000);
    sleep_ms(300);
    assert_each_once(&s, 90);
    assert_int_equal(s.gaps, 0);
    eddy_close(reader);
    eddy_close(emitter);
}

/* The node is killed and restarted: its memory-only ring is gone, which the
 * reader hears as a reset with the first offset it did not get; every event
 * of the new history (also those emitted before it resubscribed) follows once. */
static void test_node_killed_and_restarted(void **state)
{
    eddy *emitter = connect_backend(), *reader = connect_backend();
    seen s;
    seen_init(&s);
    assert_int_equal(eddy_subscribe_from(reader, "s/restart", 0, EDDY_OFFSET_OLDEST, on_event, on_gap, &s), EDDY_OK);
    emit_range(emitter, "s/restart", 1, 20);
    wait_events(&s, 20, 5000);
    uint64_t old_history = s.history[0];
    server_signal(SIGKILL);
    server_start();
    emit_range(emitter, "s/restart", 21, 40); /* as soon as the emitter is back: maybe before the reader is */
    wait_events(&s, 40, 15000);
    sleep_ms(300);
    assert_each_once(&s, 40);
    assert_int_equal(s.gaps, 1);
    assert_true(s.gap_reset[0]);
    assert_int_equal(s.gap_from[0], 21); /* the first offset of the old history not delivered */
    assert_true(s.history[20] != old_history);
    assert_int_equal(s.offset[20], 1); /* the new history, from its beginning */
    assert_int_equal(s.offset[39], 20);
    eddy_close(reader);
    eddy_close(emitter);
}

/* eddy ctl subscribe --from, stopped past the broker timeout while events
 * come: once it runs again, it prints every offset exactly once. */
static void test_ctl_subscribe_from(void **state)
{
    char out_path[300];
    snprintf(out_path, sizeof(out_path), "%s/ctl.out", dir);
    eddy *emitter = connect_backend();
    emit_range(emitter, "s/ctl", 1, 10);
    pid_t ctl = fork();
    assert_true(ctl >= 0);
    if (ctl == 0) {
        FILE *f = freopen(out_path, "w", stdout);
        (void)f;
        execl(bin, bin, "ctl", "--cluster", url, "subscribe", "s/ctl", "--from", "3", (char *)NULL);
        _exit(127);
    }
    long long deadline = now_ms() + 10000;
    char line[512];
    int lines = 0;
    while (lines < 8 && now_ms() < deadline) { /* 3..10 */
        sleep_ms(50);
        FILE *f = fopen(out_path, "r");
        for (lines = 0; f != NULL && fgets(line, sizeof(line), f) != NULL;)
            lines++;
        if (f)
            fclose(f);
    }
    assert_int_equal(lines, 8);
    int expired = log_count("peer-expired");
    kill(ctl, SIGSTOP);
    emit_range(emitter, "s/ctl", 11, 20);
    sleep_ms(3000);
    kill(ctl, SIGCONT);
    emit_range(emitter, "s/ctl", 21, 30);
    deadline = now_ms() + 15000;
    int next = 3;
    while (next <= 30 && now_ms() < deadline) {
        sleep_ms(100);
        FILE *f = fopen(out_path, "r");
        next = 3;
        while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
            char want[128];
            snprintf(want, sizeof(want), "\"offset\":%d,\"data\":%d}", next, next);
            if (strstr(line, want) == NULL)
                fail_msg("line %d of eddy ctl: %s (wanted %s)", next - 2, line, want);
            assert_non_null(strstr(line, "{\"name\":\"s/ctl\",\"history\":\""));
            next++;
        }
        if (f)
            fclose(f);
    }
    assert_int_equal(next, 31);
    assert_true(log_count("peer-expired") > expired); /* the node dropped it indeed */
    kill(ctl, SIGTERM);
    int status;
    waitpid(ctl, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    eddy_close(emitter);
}

static int setup(void **state)
{
    bin = getenv("EDDY_BIN") ? getenv("EDDY_BIN") : "build/eddy";
    snprintf(dir, sizeof(dir), "/tmp/eddy-streams-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(log_path, sizeof(log_path), "%s/eddy.log", dir);
    request_port = free_port();
    delivery_port = free_port();
    ws_port = free_port();
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", request_port);
    server_start();
    return 0;
}

static int teardown(void **state)
{
    kill(server, SIGCONT);
    server_signal(SIGTERM);
    const char *bad[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "WARNING: ThreadSanitizer"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (log_count(bad[i]) > 0)
            fail_msg("sanitizer report in %s", log_path);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_from_zero_gets_the_whole_ring),
        cmocka_unit_test(test_gap_past_the_ring),
        cmocka_unit_test(test_node_stalled),
        cmocka_unit_test(test_node_killed_and_restarted),
        cmocka_unit_test(test_ctl_subscribe_from),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
