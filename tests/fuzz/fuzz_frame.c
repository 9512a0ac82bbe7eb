/* fuzz_frame.c - libFuzzer target for the client frame dispatcher
 * (dispatch_frame, broker/dispatch.c) with everything behind it real: the
 * per-connection limits in front of it (limits.c: the message rate is 1 a
 * second over a burst of 256, so a long input is refused and closed for it;
 * 64 names per topic), the
 * sessions, acks, auth, the topic table and its modules, the links, and an
 * in-process node (node_start with no sockets, RocksDB in a temporary folder)
 * reached through local_link exactly as `eddy standalone` does. Only
 * libwebsockets is replaced (fake_lws.c): connections are fake, the loop turn
 * is run by hand. Not for the node's socket side (backends) nor the HTTP port.
 *
 * Input: flags, then steps.
 *   flags (1 byte)  bit0: log each connection in first (CHALLENGE, AUTH {"username":...})
 *                   bit1: a second connection (user "bob"; the first is "alice")
 *                   bit2: at the end, fire every pending timer once (the
 *                         unauthenticated-client timeout, the heartbeat sweep)
 *   step: ctl (1 byte), len (2 bytes, big-endian), len bytes
 *     ctl bit0: to the second connection (when there is one)
 *         bit1: the bytes are the whole frame (varint length first, as on the
 *               wire); otherwise the harness puts the varint length in front
 *         bit2: received in two websocket fragments (split in the middle)
 *         bit3: a text frame (the server must refuse it)
 *         bit4: end the loop turn after this step (the gathered operations go
 *               to the node, its answers come back); otherwise the next step
 *               joins the same batch
 *         bit5: the connection closes after this step; the next step to it
 *               opens a new one (logged in again with bit0)
 * At the end every connection closes; the node keeps its state from one input
 * to the next, as a server does from one client to the next.
 *
 * Oracles besides ASan/UBSan: every batch the broker hands the node, and every
 * reply and delivery the node hands back, decodes completely (ops.h); every
 * frame written to a client decodes (fake_lws.c). */
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fake_lws.h"
#include "../../broker/internal.h"
#include "log.h"
#include "mem.h"
#include "node.h"
#include "ops.h"
#include "persist.h"
#include "util.h"

enum { F_LOGIN = 1, F_SECOND = 2, F_TIMERS = 4 };
enum { S_SECOND = 1, S_RAW = 2, S_FRAGMENTS = 4, S_TEXT = 8, S_TURN = 16, S_CLOSE = 32 };

typedef struct conn {
    fake_wsi w; /* first: the session's `struct lws *` points here */
    session s;
} conn;

static eddy_config cfg;
static node *nd;
static local_node ln;
static sessions *set;
static acks *ak;
static auth *au;
static topics *tp;
static link_set *ls;
static edge eg;
static limits *lm;
static permit *pm;
static char data_dir[256];
static conn *conns[2];

/* ---------------- the node's storage thread: how much is outstanding ---------------- */

/* Counted through -Wl,--wrap (see the Makefile): records.c's loads and writes,
 * node.c's polls of their completions. */
persist_done *__real_persist_poll(persist *p);
int __real_persist_load(persist *p, const char *name, size_t len, void *cookie);
int __real_persist_write(persist *p, const char *name, size_t len, int64_t version, const char *data,
                         size_t data_len, uint64_t ticket);

static atomic_ulong loads_queued, loads_done, ticket_queued, ticket_done;

int __wrap_persist_load(persist *p, const char *name, size_t len, void *cookie)
{
    int rc = __real_persist_load(p, name, len, cookie);
    if (rc == 0)
        atomic_fetch_add(&loads_queued, 1);
    return rc;
}

int __wrap_persist_write(persist *p, const char *name, size_t len, int64_t version, const char *data,
                         size_t data_len, uint64_t ticket)
{
    int rc = __real_persist_write(p, name, len, version, data, data_len, ticket);
    if (rc == 0 && ticket > atomic_load(&ticket_queued))
        atomic_store(&ticket_queued, ticket);
    return rc;
}

persist_done *__wrap_persist_poll(persist *p)
{
    persist_done *d = __real_persist_poll(p);
    if (d != NULL && d->kind == PERSIST_LOADED)
        atomic_fetch_add(&loads_done, 1);
    else if (d != NULL && d->kind == PERSIST_COMMITTED && d->ticket > atomic_load(&ticket_done))
        atomic_store(&ticket_done, d->ticket);
    return d;
}

static bool storage_pending(void)
{
    return atomic_load(&loads_done) != atomic_load(&loads_queued) ||
           atomic_load(&ticket_done) < atomic_load(&ticket_queued);
}

/* ---------------- the node's wake-up (any thread) ---------------- */

static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cond = PTHREAD_COND_INITIALIZER;
static bool woken;

static void wake(void *ctx)
{
    pthread_mutex_lock(&wake_lock);
    woken = true;
    pthread_cond_signal(&wake_cond);
    pthread_mutex_unlock(&wake_lock);
}

static bool take_woken(void)
{
    pthread_mutex_lock(&wake_lock);
    bool w = woken;
    woken = false;
    pthread_mutex_unlock(&wake_lock);
    return w;
}

static void wait_woken(int ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_nsec += (long)ms * 1000000L;
    t.tv_sec += t.tv_nsec / 1000000000L;
    t.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&wake_lock);
    if (!woken)
        pthread_cond_timedwait(&wake_cond, &wake_lock, &t);
    pthread_mutex_unlock(&wake_lock);
}

/* ---------------- the in-process node, checked ---------------- */

static int count_op(void *arg, const op *o)
{
    ++*(uint32_t *)arg;
    return 0;
}

/* A batch (header, then operations) must decode whole. */
static void check_batch(const char *what, const uint8_t *p, size_t len)
{
    mp_reader r;
    uint64_t origin, seq;
    uint32_t count, seen = 0;
    if (op_batch_open(&r, p, len, &origin, &seq, &count) != 0 || op_batch_each(p, len, count_op, &seen) != 0 ||
        seen != count) {
        fprintf(stderr, "fuzz_frame: %s does not decode (%zu bytes, %u of the operations)\n", what, len, seen);
        abort();
    }
}

/* FUZZ_DUMP_OPS=DIR: every batch (requests, replies, deliveries without their
 * peer id) is also written to DIR, for fuzz_ops's seeds (tests/fuzz/README.md). */
static void dump(const char *kind, const void *p, size_t len)
{
    static const char *dir;
    static bool looked;
    static unsigned long n;
    if (!looked) {
        dir = getenv("FUZZ_DUMP_OPS");
        looked = true;
    }
    if (dir == NULL)
        return;
    char name[512];
    snprintf(name, sizeof(name), "%s/%s-%06lu", dir, kind, n++);
    FILE *f = fopen(name, "wb");
    if (f != NULL) {
        fwrite(p, 1, len, f);
        fclose(f);
    }
}

static void node_attach(void *n, uint64_t peer_id, void (*w)(void *ctx), void *ctx)
{
    node_attach_local(n, peer_id, w, ctx);
}

static nng_msg *node_request(void *n, const void *body, size_t len)
{
    check_batch("a batch the broker sent its node", body, len);
    dump("request", body, len);
    nng_msg *reply = node_local_request(n, body, len);
    if (reply != NULL) {
        check_batch("the node's reply", nng_msg_body(reply), nng_msg_len(reply));
        dump("reply", nng_msg_body(reply), nng_msg_len(reply));
    }
    return reply;
}

static nng_msg *node_take(void *n, uint64_t *published)
{
    nng_msg *m = node_local_take(n, published);
    if (m != NULL) {
        if (nng_msg_len(m) < 8) {
            fprintf(stderr, "fuzz_frame: a delivery without its peer id\n");
            abort();
        }
        check_batch("a delivery from the node", (const uint8_t *)nng_msg_body(m) + 8, nng_msg_len(m) - 8);
        dump("delivery", (const uint8_t *)nng_msg_body(m) + 8, nng_msg_len(m) - 8);
    }
    return m;
}

static void node_detach(void *n)
{
    node_detach_local(n);
}

/* ---------------- the broker's hooks (broker.c's, minus the loop) ---------------- */

static int post(void *ctx, int kind, int li, uint64_t seq, void *item)
{
    return -1; /* only links to remote nodes post: none runs here */
}

/* gate.c: a message waited for the records its rules read (broker.c's hook). */
static void resume(void *ctx, session *s)
{
    (void)ctx;
    topics_resume(tp, s);
}

/* The rules every input runs under: everything allowed but a few prefixes,
 * whose rules deny, read the record, or read other records through the gate. */
static const char rules_yml[] =
    "presence:\n  \"*\":\n    allow: true\n  hidden:\n    allow: false\n"
    "record:\n  \"*\":\n    create: true\n    write: true\n    read: true\n    delete: true\n"
    "    listen: true\n    notify: true\n"
    "  \"ro/*\":\n    write: false\n    delete: false\n"
    "  \"x/$id\":\n    write: \"oldData === null || data.n > oldData.n\"\n"
    "  \"ref/$id\":\n    read: \"_('gate/' + $id) !== null\"\n    write: \"data.q <= _('stock/' + $id).left\"\n"
    "event:\n  \"*\":\n    publish: true\n    subscribe: true\n    listen: true\n"
    "  \"secret/*\":\n    publish: false\n    subscribe: false\n"
    "  \"gated/*\":\n    publish: \"_('gate/config').open === true\"\n"
    "rpc:\n  \"*\":\n    provide: true\n    request: true\n  \"no\":\n    request: \"data < 3\"\n";

static void deliver(void *ctx, const op *o)
{
    topics_deliver(tp, o);
}

static int fail(void *ctx, const op *o)
{
    return topics_fail(tp, o);
}

static void resync(void *ctx, int li)
{
    topics_resync(tp, li);
}

static void recover(void *ctx, int li)
{
    topics_recover(tp, li);
}

static void login(void *ctx, session *s)
{
    topics_login(tp, s);
}

/* ---------------- connections and the loop turn ---------------- */

static void conn_close(int i)
{
    conn *c = conns[i];
    if (c == NULL)
        return;
    conns[i] = NULL;
    topics_session_closed(tp, &c->s); /* broker.c's closed hook */
    session_closed(&c->s);
    free(c);
}

/* One received websocket fragment, as broker.c's received hook takes it;
 * false when the connection closed. */
static bool receive(int i, const uint8_t *p, size_t len, bool first, bool final, bool binary)
{
    conn *c = conns[i];
    c->w.first = first;
    c->w.final = final;
    c->w.binary = binary;
    if (c->s.closing)
        return true;
    const uint8_t *msg;
    size_t msg_len;
    int rc = session_receive(&c->s, p, len, &msg, &msg_len);
    if (rc > 0 && limits_message(lm, &c->s, msg, msg_len)) /* broker.c's received hook */
        dispatch_frame(tp, au, &c->s, msg, msg_len);
    if (rc < 0) { /* lws closes the connection when the callback says so */
        conn_close(i);
        return false;
    }
    return true;
}

static void send_frame(int i, int topic, const ProtobufCMessage *m)
{
    frame *f = frame_encode(topic, m);
    receive(i, frame_payload(f), f->len, true, true, true);
    frame_unref(f);
}

static void conn_open(int i, bool log_in)
{
    conn *c = calloc(1, sizeof(*c));
    c->w.session = &c->s;
    conns[i] = c;
    session_open(set, &c->s, (struct lws *)&c->w);
    if (!log_in)
        return;
    ConnectionMessage cm = CONNECTION_MESSAGE__INIT;
    cm.has_action = 1;
    cm.action = CONNECTION__ACTION__CONNECTION_CHALLENGE;
    cm.url = "ws://fuzz/deepstream";
    send_frame(i, TOPIC__TOPIC_CONNECTION, &cm.base);
    AuthMessage am = AUTH_MESSAGE__INIT;
    am.has_action = 1;
    am.action = AUTH__ACTION__AUTH_REQUEST;
    am.data = i == 0 ? "{\"username\":\"alice\"}" : "{\"username\":\"bob\"}";
    if (conns[i] != NULL)
        send_frame(i, TOPIC__TOPIC_AUTH, &am.base);
}

/* One turn of the service loop: what the node delivered (broker.c's woken
 * hook), the timers due (the local batch, then the end-of-turn flushes), then
 * writable callbacks and the closes lws was asked for. */
static void turn(void)
{
    take_woken();
    links_poll_local(ls);
    fake_fire_timers(false);
    for (int i = 0; i < 2; i++) {
        conn *c = conns[i];
        if (c == NULL)
            continue;
        if (c->w.kill) {
            conn_close(i);
            continue;
        }
        if (c->w.writable) {
            c->w.writable = false;
            if (session_writeable(&c->s) < 0)
                conn_close(i);
        }
    }
}

static bool busy(void)
{
    if (storage_pending() || fake_timers_due())
        return true;
    for (int i = 0; i < 2; i++)
        if (conns[i] != NULL && (conns[i]->w.kill || conns[i]->w.writable))
            return true;
    pthread_mutex_lock(&wake_lock);
    bool w = woken;
    pthread_mutex_unlock(&wake_lock);
    return w;
}

/* Turns until nothing is outstanding: storage done, its answers delivered. */
static void settle(void)
{
    int64_t start = now_ms();
    for (;;) {
        turn();
        if (!busy() || now_ms() - start > 2000)
            return;
        if (storage_pending())
            wait_woken(1);
    }
}

/* ---------------- libFuzzer ---------------- */

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    for (int i = 0; i < 2; i++)
        conn_close(i);
    sessions_stop(set); /* broker_destroy's order: the loop's stopping hook first */
    links_stop(ls);
    links_destroy(ls);
    auth_destroy(au);
    topics_destroy(tp);
    limits_free(lm);
    permit_free(pm);
    acks_free(ak);
    sessions_free(set);
    node_stop(nd);
    config_free(&cfg);
    if (data_dir[0] != '\0')
        nftw(data_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *level = getenv("FUZZ_LOG");
    log_threshold = level != NULL ? (enum log_level)log_level_parse(level) : LOG_NONE;
    const char *tmp = getenv("TMPDIR");
    snprintf(data_dir, sizeof(data_dir), "%s/eddy-fuzz-frame-XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(data_dir) == NULL) {
        perror("fuzz_frame: mkdtemp");
        exit(1);
    }
    config_defaults(&cfg);
    char err[512], rules_path[300];
    snprintf(rules_path, sizeof(rules_path), "%s/permissions.yml", data_dir);
    FILE *rf = fopen(rules_path, "w");
    if (rf == NULL || fputs(rules_yml, rf) < 0 || fclose(rf) != 0) {
        perror("fuzz_frame: permissions.yml");
        exit(1);
    }
    if (config_set_flag(&cfg, "--permission", "config", err, sizeof(err)) != 0 ||
        config_set_flag(&cfg, "--permissions", rules_path, err, sizeof(err)) != 0 ||
        config_set_flag(&cfg, "--data", data_dir, err, sizeof(err)) != 0 ||
        config_set_flag(&cfg, "--sync", "never", err, sizeof(err)) != 0 ||
        config_set_flag(&cfg, "--max-message-size", "65536", err, sizeof(err)) != 0 ||
        config_set_flag(&cfg, "--rpc-requestor-name", "true", err, sizeof(err)) != 0 ||
        /* a long input goes over the message rate: the refusals (limits.c) are fuzzed too */
        config_set_flag(&cfg, "--message-rate", "1", err, sizeof(err)) != 0 ||
        config_set_flag(&cfg, "--message-burst", "256", err, sizeof(err)) != 0 ||
        config_set_flag(&cfg, "--max-refused-messages", "64", err, sizeof(err)) != 0 ||
        config_set_flag(&cfg, "--max-subscriptions", "64", err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_frame: %s\n", err);
        exit(1);
    }
    /* standalone, as cmd/main.c sets it up: the node owns every shard, the
     * broker's one node entry is the in-process node */
    shardmap map;
    if (clustermap_shards(&cfg.cluster, &map, err, sizeof(err)) != 0 ||
        (nd = node_start(&cfg, NULL, NULL, &map, 0)) == NULL) {
        fprintf(stderr, "fuzz_frame: no node: %s\n", err);
        exit(1);
    }
    clustermap_clear(&cfg.cluster);
    clustermap_add(&cfg.cluster, cfg.node_id, "in-process", "in-process", NULL, err, sizeof(err));
    ln = (local_node){.node = nd, .attach = node_attach, .request = node_request, .take = node_take,
                      .detach = node_detach};
    /* broker_create's order, without the loop */
    bool config_error = false;
    set = sessions_new(&cfg);
    ak = acks_new(set, fail, NULL);
    auth_hooks ah = {.wake = wake, .login = login, .ctx = NULL};
    au = auth_create(&cfg, set, &ah, &config_error);
    uint64_t id = random_id();
    link_hooks hooks = {.post = post, .wake = wake, .deliver = deliver, .fail = fail, .resync = resync,
                        .recover = recover, .ctx = NULL};
    lm = limits_new(&cfg);
    pm = permit_new(&cfg, err, sizeof(err)); /* the rules above, as broker_create makes them */
    eg = (edge){.cfg = &cfg, .broker_id = id, .sessions = set, .acks = ak, .permit = pm, .limits = lm,
                .resume = resume};
    tp = topics_create(&eg);
    ls = links_create(&cfg, id, &ln, ak, &hooks);
    if (au == NULL || ls == NULL || pm == NULL) {
        fprintf(stderr, "fuzz_frame: broker set-up failed\n");
        exit(1);
    }
    eg.links = ls;
    /* the loop starts (broker.c's started hook) */
    sessions_start(set, fake_context());
    links_start(ls, fake_context());
    settle();
    atexit(teardown);
    return 0;
}

static void put_varint(uint8_t *p, size_t *n, size_t v)
{
    while (v >= 0x80) {
        p[(*n)++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[(*n)++] = (uint8_t)v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    bool log_in = flags & F_LOGIN, second = flags & F_SECOND;
    conn_open(0, log_in);
    if (second)
        conn_open(1, log_in);
    size_t off = 1;
    static uint8_t buf[10 + 65536];
    while (size - off >= 3) {
        uint8_t ctl = data[off];
        size_t len = (size_t)data[off + 1] << 8 | data[off + 2];
        off += 3;
        if (len > size - off)
            len = size - off;
        const uint8_t *p = data + off;
        off += len;
        int i = (ctl & S_SECOND) && second ? 1 : 0;
        if (conns[i] == NULL)
            conn_open(i, log_in);
        if (conns[i] != NULL) {
            size_t n = 0;
            if (!(ctl & S_RAW))
                put_varint(buf, &n, len);
            memcpy(buf + n, p, len);
            n += len;
            bool binary = !(ctl & S_TEXT);
            if ((ctl & S_FRAGMENTS) && n >= 2) {
                if (receive(i, buf, n / 2, true, false, binary))
                    receive(i, buf + n / 2, n - n / 2, false, true, binary);
            } else
                receive(i, buf, n, true, true, binary);
        }
        if (ctl & S_TURN)
            settle();
        if (ctl & S_CLOSE) {
            settle(); /* what it was owed first, as a client that waits a moment before closing */
            conn_close(i);
        }
    }
    settle();
    if (flags & F_TIMERS) {
        fake_fire_timers(true);
        settle();
    }
    for (int i = 0; i < 2; i++)
        conn_close(i);
    settle(); /* the closes' uninterests reach the node */
    return 0;
}
