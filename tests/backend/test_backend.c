/* test_backend.c - the backend library (client/eddy.h) against a real server:
 * a standalone one or a cluster (tests/backend/run.sh starts them), with real
 * @deepstream/client websocket clients (tests/backend/ws_peer.mjs) on the
 * other side: events both ways, records written by the backend seen by
 * websocket subscribers with their versions and the reverse, version
 * conflicts, a backend RPC provider balanced with a websocket provider and
 * failing over when the backend closes or is killed, listening, and errors.
 *
 * Environment: EDDY_CLUSTER (a node's request address), EDDY_WS (websocket
 * URLs, space separated: peers are spread over them), EDDY_BIN (build/eddy,
 * whose `ctl provide` plays the backend that gets killed). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "eddy.h"

static const char *cluster;
static char *ws_urls[8];
static int ws_count;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------- a websocket peer (ws_peer.mjs) ---------------- */

typedef struct peer {
    pid_t pid;
    FILE *in;
    int out;
    char buf[65536];
    size_t len;
    int next_id;
} peer;

/* Reads lines until one contains needle; returns it (static buffer) or fails the test. */
static const char *peer_wait(peer *p, const char *needle, int timeout_ms)
{
    static char line[65536];
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        char *nl = memchr(p->buf, '\n', p->len);
        if (nl != NULL) {
            size_t n = (size_t)(nl - p->buf);
            memcpy(line, p->buf, n);
            line[n] = '\0';
            memmove(p->buf, nl + 1, p->len - n - 1);
            p->len -= n + 1;
            if (strstr(line, needle) != NULL)
                return line;
            continue;
        }
        long long left = deadline - now_ms();
        if (left <= 0)
            fail_msg("websocket peer: no line with %s within %d ms", needle, timeout_ms);
        struct pollfd pfd = {.fd = p->out, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        ssize_t r = read(p->out, p->buf + p->len, sizeof(p->buf) - p->len - 1);
        if (r <= 0)
            fail_msg("websocket peer exited while waiting for %s", needle);
        p->len += (size_t)r;
    }
}

static peer *peer_start(int which)
{
    int in[2], out[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    peer *p = calloc(1, sizeof(*p));
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execlp("node", "node", "tests/backend/ws_peer.mjs", ws_urls[which % ws_count], (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    p->in = fdopen(in[1], "w");
    p->out = out[0];
    peer_wait(p, "\"event\":\"ready\"", 10000);
    return p;
}

/* Sends a command (a JSON object without its "id") and waits for its ok. */
static void peer_cmd(peer *p, const char *fmt, ...)
{
    char body[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    int id = ++p->next_id;
    fprintf(p->in, "{\"id\":%d,%s}\n", id, body);
    fflush(p->in);
    if (strstr(body, "\"op\":\"call\"") != NULL)
        return; /* answered with a result line */
    char ok[64];
    snprintf(ok, sizeof(ok), "\"event\":\"ok\",\"id\":%d}", id);
    peer_wait(p, ok, 10000);
}

static void peer_stop(peer *p)
{
    fprintf(p->in, "{\"op\":\"exit\"}\n");
    fclose(p->in);
    int status;
    waitpid(p->pid, &status, 0);
    close(p->out);
    free(p);
}

/* ---------------- what the backend's callbacks saw ---------------- */

static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t seen_cond = PTHREAD_COND_INITIALIZER;
static char seen[1 << 16];

static void note(const char *fmt, ...)
{
    pthread_mutex_lock(&seen_lock);
    size_t used = strlen(seen);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(seen + used, sizeof(seen) - used, fmt, ap);
    va_end(ap);
    pthread_cond_broadcast(&seen_cond);
    pthread_mutex_unlock(&seen_lock);
}

static void expect_seen(const char *needle, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    pthread_mutex_lock(&seen_lock);
    while (strstr(seen, needle) == NULL) {
        if (now_ms() > deadline) {
            pthread_mutex_unlock(&seen_lock);
            fail_msg("the backend never saw %s (saw: %s)", needle, seen);
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&seen_cond, &seen_lock, &ts);
    }
    pthread_mutex_unlock(&seen_lock);
}

static void on_event(void *arg, const char *name, const char *json)
{
    note("[event %s %s]", name, json ? json : "null");
}

static void on_record(void *arg, const char *name, int64_t version, const char *json)
{
    note("[record %s v%lld %s]", name, (long long)version, json ? json : "null");
}

static void provide_backend(void *arg, eddy_rpc *call, const char *name, const char *json, const char *user)
{
    char out[256];
    snprintf(out, sizeof(out), "{\"by\":\"%s\",\"data\":%s}", (const char *)arg, json ? json : "null");
    assert_int_equal(eddy_rpc_respond(call, out), EDDY_OK);
}

static bool on_listen(void *arg, const char *pattern, const char *name, bool found)
{
    note("[listen %s %s %s]", pattern, name, found ? "found" : "removed");
    return true;
}

static eddy *connect_backend(void)
{
    eddy_options o = {.timeout_ms = 5000, .user = "backend"};
    eddy *e;
    eddy_status st = eddy_connect(cluster, &o, &e);
    if (st != EDDY_OK)
        fail_msg("eddy_connect(%s): %s", cluster, eddy_strerror(st));
    return e;
}

/* ---------------- tests ---------------- */

static void test_events_both_ways(void **state)
{
    eddy *e = connect_backend();
    peer *ws = peer_start(0);
    /* backend -> websocket */
    peer_cmd(ws, "\"op\":\"subscribe\",\"name\":\"be/ev/a\"");
    usleep(200 * 1000);
    assert_int_equal(eddy_emit(e, "be/ev/a", "{\"price\":101.5}"), EDDY_OK);
    peer_wait(ws, "\"name\":\"be/ev/a\",\"data\":{\"price\":101.5}", 5000);
    /* websocket -> backend */
    assert_int_equal(eddy_subscribe(e, "be/ev/b", on_event, NULL), EDDY_OK);
    assert_int_equal(eddy_subscribe(e, "be/ev/b", on_event, NULL), EDDY_ERR_EXISTS);
    peer_cmd(ws, "\"op\":\"emit\",\"name\":\"be/ev/b\",\"data\":[1,\"two\"]");
    expect_seen("[event be/ev/b [1,\"two\"]]", 5000);
    assert_int_equal(eddy_unsubscribe(e, "be/ev/b"), EDDY_OK);
    assert_int_equal(eddy_unsubscribe(e, "be/ev/b"), EDDY_ERR_NOT_REGISTERED);
    peer_stop(ws);
    eddy_close(e);
}

static void test_records_and_versions(void **state)
{
    eddy *e = connect_backend();
    peer *ws = peer_start(1);
    eddy_delete(e, "be/rec");
    peer_cmd(ws, "\"op\":\"record\",\"name\":\"be/rec\"");
    int64_t v = 0;
    assert_int_equal(eddy_set(e, "be/rec", NULL, "{\"a\":1}", EDDY_VERSION_ANY, &v), EDDY_OK);
    assert_int_equal(v, 1);
    peer_wait(ws, "\"name\":\"be/rec\",\"version\":1,\"data\":{\"a\":1}", 5000);
    assert_int_equal(eddy_set(e, "be/rec", "b.c", "[true]", 2, &v), EDDY_OK); /* exactly version 2 */
    assert_int_equal(v, 2);
    peer_wait(ws, "\"version\":2,\"data\":{\"a\":1,\"b\":{\"c\":[true]}}", 5000);
    /* a write expecting an older version conflicts and says where the record is */
    assert_int_equal(eddy_set(e, "be/rec", NULL, "{\"stale\":1}", 2, &v), EDDY_ERR_VERSION);
    assert_int_equal(v, 2);
    /* the backend's own subscription: the current state first, then websocket writes */
    assert_int_equal(eddy_record_subscribe(e, "be/rec", on_record, NULL), EDDY_OK);
    expect_seen("[record be/rec v2 {\"a\":1,\"b\":{\"c\":[true]}}]", 5000);
    peer_cmd(ws, "\"op\":\"set\",\"name\":\"be/rec\",\"path\":\"a\",\"data\":5");
    expect_seen("[record be/rec v3 {\"a\":5,\"b\":{\"c\":[true]}}]", 5000);
    char *json;
    assert_int_equal(eddy_get(e, "be/rec", &json, &v), EDDY_OK);
    assert_string_equal(json, "{\"a\":5,\"b\":{\"c\":[true]}}");
    assert_int_equal(v, 3);
    eddy_free(json);
    /* erase a path, then delete */
    assert_int_equal(eddy_set(e, "be/rec", "b", NULL, EDDY_VERSION_ANY, &v), EDDY_OK);
    expect_seen("[record be/rec v4 {\"a\":5}]", 5000);
    assert_int_equal(eddy_delete(e, "be/rec"), EDDY_OK);
    expect_seen("[record be/rec v-1 null]", 5000);
    assert_int_equal(eddy_get(e, "be/rec", &json, &v), EDDY_ERR_NOT_FOUND);
    assert_int_equal(eddy_record_unsubscribe(e, "be/rec"), EDDY_OK);
    peer_stop(ws);
    eddy_close(e);
}

/* Makes n calls from a websocket client; counts answers by provider tag. */
static void count_answers(peer *caller, int n, int *ws, int *backend, int *errors)
{
    *ws = *backend = *errors = 0;
    for (int i = 0; i < n; i++) {
        peer_cmd(caller, "\"op\":\"call\",\"name\":\"be/rpc\",\"data\":%d", i);
        const char *line = peer_wait(caller, "\"event\":\"result\"", 10000);
        if (strstr(line, "\"by\":\"ws\"") != NULL)
            (*ws)++;
        else if (strstr(line, "\"by\":\"backend") != NULL)
            (*backend)++;
        else
            (*errors)++;
    }
}

static void test_rpc_balance_and_failover(void **state)
{
    peer *provider = peer_start(0), *caller = peer_start(1);
    peer_cmd(provider, "\"op\":\"provide\",\"name\":\"be/rpc\",\"tag\":\"ws\"");
    eddy *e = connect_backend();
    assert_int_equal(eddy_provide(e, "be/rpc", provide_backend, "backend"), EDDY_OK);
    int ws, backend, errors;
    count_answers(caller, 10, &ws, &backend, &errors);
    if (errors != 0 || ws < 3 || backend < 3) /* balanced over both kinds of provider */
        fail_msg("10 calls: %d by the websocket provider, %d by the backend, %d errors", ws, backend, errors);
    /* the backend calls the websocket provider too */
    char *result;
    assert_int_equal(eddy_unprovide(e, "be/rpc"), EDDY_OK);
    assert_int_equal(eddy_call(e, "be/rpc", "\"x\"", &result), EDDY_OK);
    assert_string_equal(result, "{\"by\":\"ws\",\"data\":\"x\"}");
    eddy_free(result);
    assert_int_equal(eddy_provide(e, "be/rpc", provide_backend, "backend"), EDDY_OK);
    /* a backend that exits: its provider is withdrawn at once */
    eddy_close(e);
    count_answers(caller, 6, &ws, &backend, &errors);
    assert_int_equal(ws, 6);

    /* a backend that is killed: once the node drops it (cluster.brokerTimeout),
     * every call goes to the websocket provider */
    /* (another process: nng does not survive fork, so the child is `eddy ctl
     * provide`, itself a backend built on this library) */
    pid_t child = fork();
    if (child == 0) {
        execl(getenv("EDDY_BIN"), "eddy", "ctl", "--cluster", cluster, "provide", "be/rpc", "--", "sh", "-c",
              "cat >/dev/null; echo '{\"by\":\"backend-child\"}'", (char *)NULL);
        _exit(127);
    }
    assert_true(child > 0);
    sleep(1); /* it connects and provides */
    count_answers(caller, 6, &ws, &backend, &errors);
    assert_true(backend >= 1); /* the child served some */
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    sleep(3); /* run.sh starts the servers with --broker-timeout 2000 */
    count_answers(caller, 6, &ws, &backend, &errors);
    assert_int_equal(ws, 6);
    peer_stop(provider);
    peer_stop(caller);
}

static void test_listening(void **state)
{
    eddy *e = connect_backend();
    assert_int_equal(eddy_listen(e, EDDY_EVENTS, "be/listen/.*", on_listen, NULL), EDDY_OK);
    peer *ws = peer_start(1);
    peer_cmd(ws, "\"op\":\"subscribe\",\"name\":\"be/listen/x\"");
    expect_seen("[listen be/listen/.* be/listen/x found]", 5000);
    peer_cmd(ws, "\"op\":\"unsubscribe\",\"name\":\"be/listen/x\"");
    expect_seen("[listen be/listen/.* be/listen/x removed]", 5000);
    assert_int_equal(eddy_unlisten(e, EDDY_EVENTS, "be/listen/.*"), EDDY_OK);
    peer_stop(ws);
    eddy_close(e);
}

/* Several threads share one client: every write lands once, in order per record. */
static eddy *shared;

static void *writer_thread(void *arg)
{
    long id = (long)arg;
    char name[64], value[64];
    snprintf(name, sizeof(name), "be/threads/%ld", id);
    eddy_delete(shared, name);
    for (int i = 1; i <= 50; i++) {
        snprintf(value, sizeof(value), "{\"i\":%d}", i);
        int64_t v;
        if (eddy_set(shared, name, NULL, value, i, &v) != EDDY_OK || v != i) /* exactly version i */
            return (void *)1;
        if (i % 10 == 0) {
            char *json;
            if (eddy_get(shared, name, &json, &v) != EDDY_OK || v != i || strcmp(json, value) != 0)
                return (void *)1;
            eddy_free(json);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    shared = connect_backend();
    pthread_t t[6];
    for (long i = 0; i < 6; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer_thread, (void *)i), 0);
    for (int i = 0; i < 6; i++) {
        void *rc;
        pthread_join(t[i], &rc);
        assert_null(rc);
    }
    eddy_close(shared);
}

static void test_errors(void **state)
{
    eddy *e = connect_backend();
    char *json = NULL;
    assert_int_equal(eddy_emit(e, "", NULL), EDDY_ERR_INVALID);
    assert_int_equal(eddy_emit(e, "be/x", "{not json"), EDDY_ERR_INVALID);
    assert_int_equal(eddy_set(e, "be/x", NULL, "3", EDDY_VERSION_ANY, NULL), EDDY_ERR_INVALID);
    assert_int_equal(eddy_get(e, "be/never-written", &json, NULL), EDDY_ERR_NOT_FOUND);
    assert_null(json);
    assert_int_equal(eddy_call(e, "be/nobody-provides", NULL, &json), EDDY_ERR_NO_PROVIDER);
    assert_string_equal(eddy_strerror(EDDY_ERR_VERSION), "version conflict");
    char *status;
    assert_int_equal(eddy_cluster_status(e, &status), EDDY_OK);
    assert_non_null(strstr(status, "\"delivering\":true"));
    assert_null(strstr(status, "\"delivering\":false"));
    eddy_free(status);
    eddy_close(e);
    /* nothing listens there: a clear timeout, not a hang (in the cluster's scheme, tcp or tls+tcp) */
    eddy_options o = {.timeout_ms = 300};
    eddy *none;
    char nowhere[64];
    snprintf(nowhere, sizeof(nowhere), "%.*s://127.0.0.1:1", (int)(strstr(cluster, "://") - cluster), cluster);
    assert_int_equal(eddy_connect(nowhere, &o, &none), EDDY_ERR_TIMEOUT);
    assert_int_equal(eddy_connect(NULL, &o, &none), EDDY_ERR_INVALID);
    /* TLS credentials that do not load: refused at once, named in the log */
    eddy_options bad = {.timeout_ms = 300, .tls_cert = "/nonexistent.crt", .tls_key = "/nonexistent.key",
                        .tls_ca = "/nonexistent-ca.crt"};
    assert_int_equal(eddy_connect(cluster, &bad, &none), EDDY_ERR_CREDENTIALS);
    assert_string_equal(eddy_strerror(EDDY_ERR_CREDENTIALS), "the TLS certificate, key or CA could not be used");
}

int main(void)
{
    cluster = getenv("EDDY_CLUSTER");
    char *urls = getenv("EDDY_WS");
    if (cluster == NULL || urls == NULL || getenv("EDDY_BIN") == NULL) {
        fprintf(stderr, "test_backend: set EDDY_CLUSTER, EDDY_WS and EDDY_BIN (tests/backend/run.sh does)\n");
        return 2;
    }
    for (char *tok = strtok(urls, " "); tok != NULL && ws_count < 8; tok = strtok(NULL, " "))
        ws_urls[ws_count++] = tok;
    signal(SIGPIPE, SIG_IGN);
    if (getenv("TEST_FILTER") != NULL) /* e.g. TEST_FILTER='test_rpc*' */
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events_both_ways),
        cmocka_unit_test(test_records_and_versions),
        cmocka_unit_test(test_rpc_balance_and_failover),
        cmocka_unit_test(test_listening),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("backend", tests, NULL, NULL);
}
