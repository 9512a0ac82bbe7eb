/* test_metrics.c - what /metrics is made of: the latency histogram's text
 * (cumulative buckets, +Inf, _sum, _count), the broker's client message
 * counters (a frame's topic and action slots, read from the packed message;
 * the labels written from the protobuf enums), and a node's families, read
 * in process and over its own HTTP listener (node.metrics), checked to be
 * valid Prometheus text after writes went through it. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "internal.h"
#include "log.h"
#include "mem.h"
#include "node.h"
#include "ops.h"
#include "prom.h"
#include "shardmap.h"
#include "util.h"

/* ---------------- a Prometheus text checker ---------------- */

/* Fails the test unless text is valid as eddy writes it: one # TYPE per
 * family, before its samples, which stay together; no series twice; a
 * histogram's buckets increase in le and count, end at +Inf, and are
 * followed by _sum and a _count equal to the +Inf bucket. */
static void check_text(const char *text)
{
    char families[512][128];
    int nf = 0;
    char current[128] = "", current_type[16] = "";
    double last_le = -1, last_bucket = -1;
    bool saw_inf = false, saw_sum = false;
    char *copy = xstrdup(text), *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char name[128], type[16];
        if (strncmp(line, "# HELP ", 7) == 0)
            continue;
        if (sscanf(line, "# TYPE %127s %15s", name, type) == 2) {
            for (int i = 0; i < nf; i++)
                if (strcmp(families[i], name) == 0)
                    fail_msg("a second # TYPE for %s", name);
            if (strcmp(current_type, "histogram") == 0 && !saw_sum)
                fail_msg("histogram %s without _sum", current);
            assert_true(nf < 512);
            snprintf(families[nf++], sizeof(families[0]), "%s", name);
            snprintf(current, sizeof(current), "%s", name);
            snprintf(current_type, sizeof(current_type), "%s", type);
            last_le = last_bucket = -1;
            saw_inf = saw_sum = false;
            continue;
        }
        assert_true(line[0] != '#');
        size_t n = strcspn(line, "{ ");
        assert_true(n < sizeof(name));
        memcpy(name, line, n);
        name[n] = '\0';
        const char *value = strrchr(line, ' ');
        assert_non_null(value);
        char *end;
        double v = strtod(value + 1, &end);
        if (*end != '\0')
            fail_msg("not a number: %s", line);
        if (strcmp(current_type, "histogram") != 0) {
            if (strcmp(name, current) != 0)
                fail_msg("%s away from its family (%s)", line, current);
            continue;
        }
        size_t cl = strlen(current);
        if (strncmp(name, current, cl) != 0)
            fail_msg("%s away from its family (%s)", line, current);
        const char *suffix = name + cl;
        if (strcmp(suffix, "_bucket") == 0) {
            const char *le = strstr(line, "le=\"");
            assert_non_null(le);
            double bound = strncmp(le + 4, "+Inf", 4) == 0 ? 1e300 : strtod(le + 4, NULL);
            if (bound <= last_le || v < last_bucket)
                fail_msg("bucket not increasing: %s", line);
            last_le = bound;
            last_bucket = v;
            saw_inf = bound == 1e300;
        } else if (strcmp(suffix, "_sum") == 0) {
            assert_true(saw_inf);
            saw_sum = true;
        } else if (strcmp(suffix, "_count") == 0) {
            assert_true(saw_sum);
            if (v != last_bucket)
                fail_msg("_count %s is not the +Inf bucket (%g)", line, last_bucket);
        } else
            fail_msg("%s in histogram %s", line, current);
    }
    xfree(copy);
}

/* The value of the series that starts line (name, or name{labels}); -1 when absent. */
static double value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; (p = strstr(p, series)) != NULL; p += n)
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static char *written(void (*fn)(void *ctx, FILE *f), void *ctx)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    fn(ctx, f);
    fclose(f);
    return text; /* malloc'd: free() */
}

/* ---------------- histograms ---------------- */

static void write_histogram(void *ctx, FILE *f)
{
    prom_write_histogram(f, "t_seconds", "a test", ctx);
}

static void test_histogram(void **state)
{
    (void)state;
    prom_histogram h = {0};
    prom_observe(&h, 5000);        /* 5 us */
    prom_observe(&h, 10000);       /* on the first bound: in it */
    prom_observe(&h, 30000);       /* 30 us: le 5e-05 */
    prom_observe(&h, 3000000000u); /* 3 s: above every bound */
    char *text = written(write_histogram, &h);
    check_text(text);
    assert_non_null(strstr(text, "# HELP t_seconds a test\n# TYPE t_seconds histogram\n"));
    assert_true(value_of(text, "t_seconds_bucket{le=\"1e-05\"}") == 2);
    assert_true(value_of(text, "t_seconds_bucket{le=\"2.5e-05\"}") == 2);
    assert_true(value_of(text, "t_seconds_bucket{le=\"5e-05\"}") == 3);
    assert_true(value_of(text, "t_seconds_bucket{le=\"2.5\"}") == 3);
    assert_true(value_of(text, "t_seconds_bucket{le=\"+Inf\"}") == 4);
    assert_true(value_of(text, "t_seconds_count") == 4);
    assert_true(value_of(text, "t_seconds_sum") > 3.0000449 && value_of(text, "t_seconds_sum") < 3.0000451);
    free(text);
}

/* ---------------- the broker's client message counters ---------------- */

static void test_frame_slots(void **state)
{
    (void)state;
    RecordMessage r = RECORD_MESSAGE__INIT;
    r.has_action = 1;
    r.action = RECORD__ACTION__RECORD_CREATEANDUPDATE;
    r.name = "a/b";
    frame *f = frame_encode(TOPIC__TOPIC_RECORD, &r.base);
    assert_int_equal(f->topic_ix, TOPIC__TOPIC_RECORD);
    assert_int_equal(f->action_ix, RECORD__ACTION__RECORD_CREATEANDUPDATE);
    frame_unref(f);
    r.action = RECORD__ACTION__RECORD_MESSAGE_DENIED; /* 115: an error action */
    f = frame_encode(TOPIC__TOPIC_RECORD, &r.base);
    assert_int_equal(f->action_ix, 115 - 36);
    frame_unref(f);
    r.action = 300; /* no slot of its own */
    f = frame_encode(TOPIC__TOPIC_RECORD, &r.base);
    assert_int_equal(f->action_ix, TRAFFIC_ACTIONS - 1);
    frame_unref(f);
    ConnectionMessage c = CONNECTION_MESSAGE__INIT; /* no action at all: 0 */
    c.data = "x";
    f = frame_encode(TOPIC__TOPIC_CONNECTION, &c.base);
    assert_int_equal(f->topic_ix, TOPIC__TOPIC_CONNECTION);
    assert_int_equal(f->action_ix, 0);
    frame_unref(f);
    assert_int_equal(traffic_topic(100), 12);
    assert_int_equal(traffic_topic(55), TRAFFIC_TOPICS - 1);
    assert_int_equal(traffic_topic(-1), TRAFFIC_TOPICS - 1);
    assert_int_equal(traffic_action(-1), TRAFFIC_ACTIONS - 1);
    const uint8_t cut[] = {0x08, 0x80}, big[] = {0x08, 0xe4, 0x00}; /* a varint cut short; 100 in two bytes */
    assert_int_equal(traffic_peek_action(cut, sizeof(cut)), -1);
    assert_int_equal(traffic_peek_action(big, sizeof(big)), 100);
    assert_int_equal(traffic_peek_action(big, 0), 0);
}

static void write_traffic(void *ctx, FILE *f)
{
    traffic_metrics(ctx, f);
}

static void test_traffic_names(void **state)
{
    (void)state;
    traffic *t = xcalloc(1, sizeof(*t));
    t->received[traffic_topic(TOPIC__TOPIC_RECORD)][traffic_action(RECORD__ACTION__RECORD_CREATEANDUPDATE)] = 3;
    t->sent[traffic_topic(TOPIC__TOPIC_RECORD)][traffic_action(RECORD__ACTION__RECORD_MESSAGE_DENIED)] = 2;
    t->sent[traffic_topic(TOPIC__TOPIC_AUTH)][traffic_action(AUTH__ACTION__AUTH_AUTH_SUCCESSFUL)] = 1;
    t->sent[traffic_topic(TOPIC__TOPIC_PRESENCE)][traffic_action(PRESENCE__ACTION__PRESENCE_PRESENCE_JOIN)] = 4;
    t->received[traffic_topic(TOPIC__TOPIC_MONITORING)][traffic_action(2)] = 1; /* a topic without an enum */
    t->received[traffic_topic(77)][traffic_action(999)] = 5;
    t->received[traffic_topic(TOPIC__TOPIC_EVENT)][traffic_action(60)] = 6; /* not an EVENT action */
    char *text = written(write_traffic, t);
    check_text(text);
    assert_true(value_of(text, "eddy_client_messages_received_total{topic=\"record\",action=\"CREATEANDUPDATE\"}") == 3);
    assert_true(value_of(text, "eddy_client_messages_sent_total{topic=\"record\",action=\"MESSAGE_DENIED\"}") == 2);
    assert_true(value_of(text, "eddy_client_messages_sent_total{topic=\"auth\",action=\"AUTH_SUCCESSFUL\"}") == 1);
    assert_true(value_of(text, "eddy_client_messages_sent_total{topic=\"presence\",action=\"PRESENCE_JOIN\"}") == 4);
    assert_true(value_of(text, "eddy_client_messages_received_total{topic=\"monitoring\",action=\"2\"}") == 1);
    assert_true(value_of(text, "eddy_client_messages_received_total{topic=\"other\",action=\"other\"}") == 5);
    assert_true(value_of(text, "eddy_client_messages_received_total{topic=\"event\",action=\"60\"}") == 6);
    /* only what counted something */
    assert_null(strstr(text, "action=\"READ\""));
    free(text);
    xfree(t);
}

/* ---------------- a node's families ---------------- */

static eddy_config cfg;
static char dir[64];

static int node_setup(void **state)
{
    (void)state;
    log_threshold = LOG_ERROR;
    strcpy(dir, "/tmp/eddy-test-metrics-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    config_defaults(&cfg);
    xfree(cfg.data_dir);
    cfg.data_dir = xstrdup(dir);
    return 0;
}

static int node_teardown(void **state)
{
    (void)state;
    config_free(&cfg);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

static uint64_t seq;

/* Sends ops (routed to map) from peer 0xA1 in one batch; frees the reply. */
static void send_ops(node *n, const shardmap *map, op *ops, int count)
{
    op_batch b;
    op_batch_init(&b);
    for (int i = 0; i < count; i++) {
        ops[i].epoch = map->epoch;
        ops[i].shard = shard_of(ops[i].name.ptr, ops[i].name.len);
        op_batch_add(&b, &ops[i]);
    }
    uint8_t hdr[OP_BATCH_HEADER_MAX];
    size_t h = op_batch_header(hdr, 0xA1, ++seq, b.count);
    uint8_t *body = xmalloc(h + b.buf.size);
    memcpy(body, hdr, h);
    memcpy(body + h, b.buf.data, b.buf.size);
    nng_msg *reply = node_local_request(n, body, h + b.buf.size);
    assert_non_null(reply);
    nng_msg_free(reply);
    xfree(body);
    op_batch_destroy(&b);
}

static void write_node(void *ctx, FILE *f)
{
    node_metrics(ctx, f);
}

/* GET path from url ("http://127.0.0.1:PORT"): the whole answer (xmalloc'd). */
static char *http_get(const char *url, const char *path)
{
    int port = atoi(strrchr(url, ':') + 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char req[256];
    int len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", path);
    assert_int_equal(write(fd, req, (size_t)len), len);
    size_t cap = 1 << 16, used = 0;
    char *out = xmalloc(cap);
    ssize_t r;
    while ((r = read(fd, out + used, cap - used - 1)) > 0) {
        used += (size_t)r;
        if (cap - used < 4096)
            out = xrealloc(out, cap *= 2);
    }
    out[used] = '\0';
    close(fd);
    return out;
}

static void test_node_metrics(void **state)
{
    (void)state;
    shardmap map = {0};
    assert_int_equal(shardmap_init_even(&map, 1, 7), 0);
    node *n = node_start(&cfg, NULL, NULL, &map, 0);
    assert_non_null(n);
    op hello = {.kind = OP_HELLO};
    send_ops(n, &map, &hello, 1);
    op writes[5];
    for (int i = 0; i < 5; i++)
        writes[i] = (op){.kind = OP_RECORD_WRITE, .name = {i % 2 ? "m/1" : "m/2", 3}, .session = 1,
                         .action = RECORD__ACTION__RECORD_UPDATE, .has_version = true, .version = -1,
                         .has_data = true, .data = {"{\"a\":1}", 7}};
    send_ops(n, &map, writes, 3);
    send_ops(n, &map, writes + 3, 2);
    /* the storage thread commits, then reads the sizes within a second */
    char *text = NULL;
    for (int tries = 0; tries < 300; tries++) {
        free(text);
        text = written(write_node, n);
        if (value_of(text, "eddy_node_persisted_writes_total") == 5 && value_of(text, "eddy_node_storage_wal_bytes") > 0 &&
            value_of(text, "eddy_node_records_cached") == 2)
            break;
        usleep(10 * 1000);
    }
    check_text(text);
    assert_true(value_of(text, "eddy_node_operations_total{kind=\"HELLO\"}") == 1);
    assert_true(value_of(text, "eddy_node_operations_total{kind=\"RECORD_WRITE\"}") == 5);
    assert_true(value_of(text, "eddy_node_batch_apply_seconds_count") == 3);
    assert_true(value_of(text, "eddy_node_persisted_writes_total") == 5);
    assert_true(value_of(text, "eddy_node_persist_seconds_count") >= 1);
    assert_true(value_of(text, "eddy_node_storage_wal_bytes") > 0);
    assert_true(value_of(text, "eddy_node_records_cached") == 2);
    assert_true(value_of(text, "eddy_node_peers") == 1);
    assert_true(value_of(text, "eddy_node_deliveries_published_total") >= 1); /* HELLO back */
    assert_null(strstr(text, "eddy_build_info")); /* the process's lines are the caller's */
    free(text);

    /* the same over its own listener, with the process's lines first */
    assert_int_equal(node_serve_metrics(n, "127.0.0.1:0"), 0);
    assert_true(strncmp(node_metrics_url(n), "http://127.0.0.1:", 17) == 0);
    char *got = http_get(node_metrics_url(n), "/metrics");
    assert_true(strncmp(got, "HTTP/1.1 200", 12) == 0);
    assert_non_null(strstr(got, "Content-Type: text/plain; version=0.0.4"));
    char *body = strstr(got, "\r\n\r\n");
    assert_non_null(body);
    check_text(body + 4);
    assert_non_null(strstr(body, "eddy_build_info{version=\"" EDDY_VERSION "\",role=\"node\"} 1\n"));
    assert_true(value_of(body + 4, "eddy_node_operations_total{kind=\"RECORD_WRITE\"}") == 5);
    xfree(got);
    got = http_get(node_metrics_url(n), "/health-check");
    assert_true(strncmp(got, "HTTP/1.1 200", 12) == 0);
    xfree(got);
    got = http_get(node_metrics_url(n), "/nothing-here");
    assert_true(strncmp(got, "HTTP/1.1 404", 12) == 0);
    xfree(got);
    node_stop(n); /* stops the listener first */
}

/* A taken port, or an address that is not host:port, fails (logged), and the node runs on. */
static void test_listen_failure(void **state)
{
    (void)state;
    shardmap map = {0};
    assert_int_equal(shardmap_init_even(&map, 1, 7), 0);
    node *n = node_start(&cfg, NULL, NULL, &map, 0);
    assert_non_null(n);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    char taken[64];
    snprintf(taken, sizeof(taken), "127.0.0.1:%d", ntohs(a.sin_port));
    assert_int_equal(node_serve_metrics(n, taken), -1);
    assert_int_equal(node_serve_metrics(n, "http://127.0.0.1:0/metrics"), -1);
    assert_int_equal(node_serve_metrics(n, "no-port-here"), -1);
    assert_string_equal(node_metrics_url(n), "");
    close(fd);
    node_stop(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_frame_slots),
        cmocka_unit_test(test_traffic_names),
        cmocka_unit_test_setup_teardown(test_node_metrics, node_setup, node_teardown),
        cmocka_unit_test_setup_teardown(test_listen_failure, node_setup, node_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
