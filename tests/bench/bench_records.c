/* bench_records.c - eddy-bench's `records` scenario: W writer and S subscriber
 * connections on R records bench/rec/<i>. Every connection gets its records
 * with RECORD SUBSCRIBECREATEANDREAD (protocol §8.2) and learns each current
 * version from the READ_RESPONSE: subscribers every record, a writer the
 * records it writes (record i is written only by writer i % W, so writes never
 * conflict). Writers send UPDATE (the whole data) or, every K-th write, PATCH
 * on path "p", with version = last + 1 (§8.3), round robin over their records,
 * at a total rate N per second (open loop, paced by the millisecond tick) or
 * as fast as the server delivers (N = 0: a closed loop keeping at most WINDOW
 * deliveries outstanding). With --ack every write asks for a write
 * acknowledgement (§8.4) and the ack latency is reported too.
 *
 * The data carries the version written and a send timestamp (CLOCK_MONOTONIC),
 * so subscribers measure latency and check that the data is the version's.
 * Subscribers track each record's version: one that does not go forward is
 * reordered, a jump counts the skipped versions as lost, and at the end every
 * subscriber must hold each record's final version (any shortfall is lost).
 * A VERSION_EXISTS or INVALID_VERSION (§8.5) counts as bad and the writer
 * re-reads the record (READ) to carry on.
 *
 * Not for the connection handling (bench.c). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "mem.h"

#define ACK_RING 65536 /* per writer: send times of outstanding write acks, by correlation id */

enum { WRITER, SUBSCRIBER };

static struct {
    int writers, subscribers, records, payload, rate, patch_every;
    bool ack;
} opt = {2, 4, 8, 64, 0, 2, false};

typedef struct rec_conn {
    int32_t *ver;      /* per record: the last version seen (subscriber) or written (writer) */
    bool *have;        /* per record: its READ_RESPONSE arrived */
    int next;          /* writer: position of the round robin over its records */
    uint64_t writes;   /* writer: writes sent */
    uint64_t acks_due; /* writer, --ack: correlation ids given out (1, 2, ...) */
    uint64_t acks_done;
    int64_t *ack_ns; /* writer, --ack: send time by correlation id % ACK_RING */
} rec_conn;

static struct {
    bench *b;
    conn **writers;
    conn **subs;
    int reads_missing; /* READ_RESPONSEs still expected before the run starts */
    bool stalled;      /* max rate: the writers wait for deliveries to catch up */
    uint64_t writes, patches, delivered, reordered, gap_lost, conflicts;
    uint64_t acks;
    hist lat, ack_lat;
} R;

static void rec_name(char *out, size_t len, int r)
{
    snprintf(out, len, "bench/rec/%d", r);
}

static int rec_index(const char *name)
{
    int r, n = 0;
    if (name == NULL || sscanf(name, "bench/rec/%d%n", &r, &n) != 1 || name[n] != '\0' || r < 0 || r >= opt.records)
        return -1;
    return r;
}

/* The records writer w owns: w, w + W, w + 2W, ... */
static int owned(int w)
{
    return (opt.records - w + opt.writers - 1) / opt.writers;
}

static bool writer_has_room(const rec_conn *rc)
{
    return !opt.ack || rc->acks_due - rc->acks_done < ACK_RING / 2;
}

/* Max rate: true while fewer than WINDOW deliveries are outstanding. */
static bool in_window(void)
{
    return R.writes * (uint64_t)opt.subscribers < R.delivered + R.gap_lost + WINDOW;
}

static void write_one(conn *c)
{
    rec_conn *rc = c->data;
    int r = c->index + (rc->next++ % owned(c->index)) * opt.writers;
    int32_t version = ++rc->ver[r];
    bool patch = opt.patch_every > 0 && rc->writes % (uint64_t)opt.patch_every == (uint64_t)opt.patch_every - 1;
    rc->writes++;
    char name[64], data[4200], cid[24];
    rec_name(name, sizeof(name), r);
    /* UPDATE: {"p":{...}}; PATCH: path "p", {...}: either way the value at p */
    int n = snprintf(data, sizeof(data), "%s{\"w\":%d,\"s\":%" PRId32 ",\"ns\":%" PRId64 ",\"x\":\"",
                     patch ? "" : "{\"p\":", c->index, version, now_ns());
    int pad = opt.payload - n - (patch ? 2 : 3);
    for (int i = 0; i < pad && n < (int)sizeof(data) - 4; i++)
        data[n++] = 'x';
    n += snprintf(data + n, sizeof(data) - (size_t)n, patch ? "\"}" : "\"}}");
    RecordMessage m = RECORD_MESSAGE__INIT;
    m.has_action = 1;
    m.action = patch ? RECORD__ACTION__RECORD_PATCH : RECORD__ACTION__RECORD_UPDATE;
    m.name = name;
    m.has_version = 1;
    m.version = version;
    m.data = data;
    if (patch)
        m.path = "p";
    if (opt.ack) {
        uint64_t k = ++rc->acks_due;
        snprintf(cid, sizeof(cid), "%" PRIu64, k);
        m.correlationid = cid;
        m.has_iswriteack = 1;
        m.iswriteack = 1;
        rc->ack_ns[k % ACK_RING] = now_ns();
    }
    conn_send(c, TOPIC__TOPIC_RECORD, &m.base);
    R.writes++;
    R.patches += patch;
}

static void subscribe_records(conn *c)
{
    /* subscribers: every record; a writer: its own (it never gets its own writes back, §8.1) */
    int n = c->role == WRITER ? owned(c->index) : opt.records;
    char **names = xcalloc((size_t)n, sizeof(char *));
    for (int k = 0; k < n; k++) {
        names[k] = xmalloc(32);
        rec_name(names[k], 32, c->role == WRITER ? c->index + k * opt.writers : k);
    }
    RecordMessage m = RECORD_MESSAGE__INIT;
    m.has_action = 1;
    m.action = RECORD__ACTION__RECORD_SUBSCRIBECREATEANDREAD;
    m.names = names;
    m.n_names = (size_t)n;
    m.correlationid = "0";
    conn_send(c, TOPIC__TOPIC_RECORD, &m.base);
    for (int k = 0; k < n; k++)
        xfree(names[k]);
    xfree(names);
}

static void reread(conn *c, const char *name)
{
    RecordMessage m = RECORD_MESSAGE__INIT;
    m.has_action = 1;
    m.action = RECORD__ACTION__RECORD_READ;
    m.name = (char *)name;
    conn_send(c, TOPIC__TOPIC_RECORD, &m.base);
}

/* A closed loop: a delivery or an ack made room, the stalled writers go on. */
static void wake_writers(void)
{
    if (!R.stalled || !R.b->running || !in_window())
        return;
    R.stalled = false;
    for (int i = 0; i < opt.writers; i++)
        if (R.writers[i]->wsi != NULL)
            lws_callback_on_writable(R.writers[i]->wsi);
}

static void write_acked(conn *c, const RecordMessage *m, bool ok)
{
    rec_conn *rc = c->data;
    char *end;
    uint64_t k = m->correlationid ? strtoull(m->correlationid, &end, 10) : 0;
    if (c->role != WRITER || !opt.ack || k == 0 || *end != '\0' || k > rc->acks_due || rc->acks_due - k >= ACK_RING) {
        R.b->bad++; /* an ack nobody asked for */
        return;
    }
    rc->acks_done++;
    if (ok) { /* (an error in its place is counted bad by the caller) */
        R.acks++;
        hist_add_ns(&R.ack_lat, now_ns() - rc->ack_ns[k % ACK_RING]);
    }
    wake_writers();
}

/* A subscriber's UPDATE or PATCH broadcast. */
static void on_change(conn *c, const RecordMessage *m, int r)
{
    rec_conn *rc = c->data;
    if (c->role != SUBSCRIBER || !m->has_version || m->data == NULL) {
        R.b->bad++; /* someone else writing a writer's record, or a change without version or data */
        if (c->role == WRITER && m->has_version && m->version > rc->ver[r])
            rc->ver[r] = m->version; /* carry on from there */
        return;
    }
    int32_t *v = &rc->ver[r];
    if (m->version <= *v) {
        R.reordered++;
    } else {
        if (m->version > *v + 1)
            R.gap_lost += (uint64_t)(m->version - *v - 1);
        *v = m->version;
    }
    R.delivered++;
    const char *s = strstr(m->data, "\"s\":"), *ns = strstr(m->data, "\"ns\":");
    if (s == NULL || ns == NULL || strtol(s + 4, NULL, 10) != m->version) {
        R.b->bad++; /* not the data of this version */
        return;
    }
    hist_add_ns(&R.lat, now_ns() - strtoll(ns + 5, NULL, 10));
    wake_writers();
}

static void on_record(conn *c, const RecordMessage *m)
{
    rec_conn *rc = c->data;
    int r = rec_index(m->name);
    switch (m->action) {
    case RECORD__ACTION__RECORD_SUBSCRIBECREATEANDREAD:
        if (!m->isack)
            R.b->bad++;
        return; /* the subscription's ack */
    case RECORD__ACTION__RECORD_READ_RESPONSE:
        if (r < 0 || !m->has_version) {
            R.b->bad++;
            return;
        }
        rc->ver[r] = m->version;
        if (!rc->have[r]) {
            rc->have[r] = true;
            R.reads_missing--;
        }
        return;
    case RECORD__ACTION__RECORD_UPDATE:
    case RECORD__ACTION__RECORD_PATCH:
        if (r < 0)
            R.b->bad++;
        else
            on_change(c, m, r);
        return;
    case RECORD__ACTION__RECORD_WRITE_ACKNOWLEDGEMENT:
        write_acked(c, m, true);
        return;
    case RECORD__ACTION__RECORD_SUBSCRIPTION_HAS_PROVIDER:
    case RECORD__ACTION__RECORD_SUBSCRIPTION_HAS_NO_PROVIDER:
        return;
    case RECORD__ACTION__RECORD_VERSION_EXISTS:
    case RECORD__ACTION__RECORD_INVALID_VERSION:
        R.conflicts++; /* should not happen: every record has one writer */
        if (c->role == WRITER && r >= 0) {
            rc->ver[r] = m->has_version ? m->version : rc->ver[r];
            reread(c, m->name); /* and carry on from what the server holds */
        }
        break;
    default:
        break;
    }
    R.b->bad++; /* a conflict, an error or an action this scenario never causes */
    if (m->iswriteack)
        write_acked(c, m, false);
    if (R.b->bad <= 10)
        fprintf(stderr, "eddy-bench: records: connection %d/%d got RECORD action %d for %s (original action %d)\n",
                c->role, c->index, m->action, m->name ? m->name : "-", m->originalaction);
}

static void on_message(conn *c, const ProtobufCMessage *m)
{
    on_record(c, (const RecordMessage *)m);
}

/* The closed loop: a writer writes whenever its socket is free and the window has room. */
static bool on_writable(conn *c)
{
    if (c->role != WRITER || !R.b->running || opt.rate != 0)
        return false;
    if (c->out_len == 0 && in_window() && writer_has_room(c->data))
        write_one(c);
    if (!in_window() || !writer_has_room(c->data)) {
        R.stalled = true; /* on_change asks for writable again */
        return false;
    }
    return true;
}

/* The open loop: the writers send what is due by now. */
static void on_tick(bench *b)
{
    bench_send_due(b, opt.rate, &R.writes, R.writers, opt.writers, write_one);
}

static bool reads_done(bench *b)
{
    return bench_all_settled(b) && (b->failed > 0 || R.reads_missing == 0);
}

static bool all_in(bench *b)
{
    (void)b;
    bool acks = true;
    for (int i = 0; opt.ack && i < opt.writers; i++) {
        rec_conn *rc = R.writers[i]->data;
        acks = acks && rc->acks_done == rc->acks_due;
    }
    return acks && R.delivered + R.gap_lost >= R.writes * (uint64_t)opt.subscribers;
}

static const bench_hooks hooks = {subscribe_records, TOPIC__TOPIC_RECORD, &record_message__descriptor, on_message,
                                   on_writable, on_tick};

static void report(bench *b, double elapsed, uint64_t lost, uint64_t acks_missing, double cpu_per_m, long rss)
{
    double rate = (double)R.delivered / elapsed;
    printf("%-10s records: %d writers, %d subscribers, %d records: %" PRIu64 " writes (%" PRIu64 " patches), %" PRIu64
           " delivered in %.2f s = %.0f deliveries/s; latency p50 %.2f ms p99 %.2f ms p99.9 %.2f ms; ",
           b->label, opt.writers, opt.subscribers, opt.records, R.writes, R.patches, R.delivered, elapsed, rate,
           hist_ms(&R.lat, 0.5), hist_ms(&R.lat, 0.99), hist_ms(&R.lat, 0.999));
    if (opt.ack)
        printf("write acks p50 %.2f ms p99 %.2f ms, %" PRIu64 " missing; ", hist_ms(&R.ack_lat, 0.5),
               hist_ms(&R.ack_lat, 0.99), acks_missing);
    printf("lost %" PRIu64 ", reordered %" PRIu64 ", bad %" PRIu64 " (conflicts %" PRIu64 ")", lost, R.reordered,
           b->bad, R.conflicts);
    if (cpu_per_m >= 0)
        printf("; server %.2f CPU s per million deliveries, RSS %ld KiB", cpu_per_m, rss);
    printf("\n");
    if (b->json_path == NULL)
        return;
    json_line j;
    json_begin(&j, b->label, "records");
    json_int(&j, "writers", opt.writers);
    json_int(&j, "subscribers", opt.subscribers);
    json_int(&j, "records", opt.records);
    json_int(&j, "payload", opt.payload);
    json_int(&j, "rate", opt.rate);
    json_int(&j, "patch_every", opt.patch_every);
    json_int(&j, "ack", opt.ack);
    json_int(&j, "writes", (long long)R.writes);
    json_int(&j, "patches", (long long)R.patches);
    json_int(&j, "delivered", (long long)R.delivered);
    json_num(&j, "seconds", elapsed, 3);
    json_num(&j, "deliveries_per_s", rate, 0);
    json_num(&j, "p50_ms", hist_ms(&R.lat, 0.5), 3);
    json_num(&j, "p99_ms", hist_ms(&R.lat, 0.99), 3);
    json_num(&j, "p999_ms", hist_ms(&R.lat, 0.999), 3);
    if (opt.ack) {
        json_int(&j, "acks", (long long)R.acks);
        json_num(&j, "ack_p50_ms", hist_ms(&R.ack_lat, 0.5), 3);
        json_num(&j, "ack_p99_ms", hist_ms(&R.ack_lat, 0.99), 3);
        json_int(&j, "acks_missing", (long long)acks_missing);
    }
    json_int(&j, "lost", (long long)lost);
    json_int(&j, "reordered", (long long)R.reordered);
    json_int(&j, "bad", (long long)b->bad);
    json_int(&j, "conflicts", (long long)R.conflicts);
    json_num(&j, "cpu_s_per_million", cpu_per_m, 3);
    json_int(&j, "rss_kib", rss);
    json_append(&j, b->json_path);
}

static int run(bench *b)
{
    if (opt.records < opt.writers) {
        fprintf(stderr, "eddy-bench: records wants --records >= --writers (each writer owns records)\n");
        return BENCH_USAGE;
    }
    R.b = b;
    if (bench_start(b, &hooks) != 0)
        return BENCH_SETUP_FAILED;
    hist_init(&R.lat);
    hist_init(&R.ack_lat);
    int total = opt.writers + opt.subscribers;
    rec_conn *rcs = xcalloc((size_t)total, sizeof(rec_conn));
    R.writers = xcalloc((size_t)opt.writers, sizeof(conn *));
    R.subs = xcalloc((size_t)opt.subscribers, sizeof(conn *));
    for (int i = 0; i < total; i++) {
        bool writer = i < opt.writers;
        rcs[i].ver = xcalloc((size_t)opt.records, sizeof(int32_t));
        rcs[i].have = xcalloc((size_t)opt.records, sizeof(bool));
        if (writer && opt.ack)
            rcs[i].ack_ns = xcalloc(ACK_RING, sizeof(int64_t));
        R.reads_missing += writer ? owned(i) : opt.records;
        conn *c = bench_connect(b, writer ? WRITER : SUBSCRIBER, writer ? i : i - opt.writers, OUT_QUEUE, NULL);
        c->data = &rcs[i];
        if (writer)
            R.writers[i] = c;
        else
            R.subs[i - opt.writers] = c;
    }
    int rc = BENCH_SETUP_FAILED;
    bench_service(b, now_ns() + 20000000000LL, reads_done);
    if (b->failed > 0 || b->ready < total || R.reads_missing > 0) {
        fprintf(stderr, "eddy-bench: %d of %d connections logged in, %d record reads missing\n", b->ready, total,
                R.reads_missing);
        goto out;
    }
    for (int r = 0; r < opt.records; r++) /* every reader starts where the writer does */
        for (int s = 0; s < opt.subscribers; s++)
            if (((rec_conn *)R.subs[s]->data)->ver[r] != ((rec_conn *)R.writers[r % opt.writers]->data)->ver[r]) {
                fprintf(stderr, "eddy-bench: bench/rec/%d read at different versions; is something else writing?\n",
                        r);
                goto out;
            }
    double cpu0 = b->pid ? server_cpu_seconds(b) : -1;
    b->start_ns = now_ns();
    b->running = true;
    for (int i = 0; i < opt.writers; i++)
        lws_callback_on_writable(R.writers[i]->wsi);
    bench_service(b, b->start_ns + (int64_t)(b->seconds * 1e9), NULL);
    b->running = false;
    /* drain: until everything is in, or nothing has arrived for half a second (at most 10 s) */
    int64_t end_ns = bench_drain(b, &R.delivered, 500000000LL, 10000000000LL, all_in);
    if (all_in(b))
        end_ns = now_ns();
    double cpu1 = b->pid ? server_cpu_seconds(b) : -1;
    long rss = b->pid ? server_rss_kib(b) : -1;
    /* every subscriber must hold each record's final version */
    uint64_t lost = R.gap_lost, acks_missing = 0;
    for (int r = 0; r < opt.records; r++) {
        int32_t final = ((rec_conn *)R.writers[r % opt.writers]->data)->ver[r];
        for (int s = 0; s < opt.subscribers; s++) {
            int32_t got = ((rec_conn *)R.subs[s]->data)->ver[r];
            if (got < final)
                lost += (uint64_t)(final - got);
            else if (got > final)
                b->bad++; /* a version its writer never wrote */
        }
    }
    for (int i = 0; opt.ack && i < opt.writers; i++)
        acks_missing += rcs[i].acks_due - rcs[i].acks_done;
    b->bad += acks_missing;
    double elapsed = (double)(end_ns - b->start_ns) / 1e9;
    double cpu_per_m = cpu0 >= 0 && R.delivered > 0 ? (cpu1 - cpu0) / ((double)R.delivered / 1e6) : -1;
    report(b, elapsed, lost, acks_missing, cpu_per_m, rss);
    rc = lost == 0 && R.reordered == 0 && b->bad == 0 ? BENCH_OK : BENCH_FAILED;
out:
    bench_destroy(b);
    for (int i = 0; i < total; i++) {
        xfree(rcs[i].ver);
        xfree(rcs[i].have);
        xfree(rcs[i].ack_ns);
    }
    xfree(rcs);
    xfree(R.writers);
    xfree(R.subs);
    hist_free(&R.lat);
    hist_free(&R.ack_lat);
    return rc;
}

static const bench_opt opts[] = {
    {"--writers", OPT_INT, &opt.writers, 1, 10000, "writer connections; record i is written by writer i % W"},
    {"--subscribers", OPT_INT, &opt.subscribers, 1, 100000, "subscriber connections, each on every record"},
    {"--records", OPT_INT, &opt.records, 1, 100000, "records bench/rec/<i>"},
    {"--payload", OPT_INT, &opt.payload, 64, 4000, "bytes of record data per write"},
    {"--rate", OPT_INT, &opt.rate, 0, 100000000, "writes per second in all, 0: as fast as delivered (closed loop)"},
    {"--patch-every", OPT_INT, &opt.patch_every, 0, 1000000, "every K-th write is a PATCH of path p (0: none)"},
    {"--ack", OPT_FLAG, &opt.ack, 0, 0, "writes ask for write acknowledgements; reports their latency"},
};

const bench_scenario bench_records = {"records", "writers update and patch records; subscribers follow the versions",
                                      opts, sizeof(opts) / sizeof(opts[0]), run};
