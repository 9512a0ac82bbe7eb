/* metaraft.c - one server of the metadata group (see metaraft.h): libraft 0.15
 * on a libuv loop of its own thread, with raft_uv (log and snapshots under
 * cfg->dir) and raft_uv_tcp. Other threads talk to it only through the lock:
 * proposals go into a bounded queue and a uv_async wakes the loop; the
 * committed map and the leadership come back as a lock-protected copy (and
 * the on_change callback, on the loop's thread).
 *
 * Shutdown: metaraft_stop sets `stopping` and wakes the loop; the wake-up
 * (a libuv callback, never a raft one: raft_close from inside a raft callback
 * aborts) fails the queued proposals, closes the timer and the wake-up handle
 * and calls raft_close; once every handle is closed the loop ends, the thread
 * releases raft_uv and the transport, and stop joins it.
 *
 * Leadership confirmation (cfg->confirm_ms): while leading, the loop proposes
 * a barrier every confirm_ms (one in flight at a time); each one that commits
 * proves that no other leader was elected before it was proposed, and
 * metaraft_confirmed gives the newest such time (node/meta.c grants leases
 * only shortly after one: its timing argument needs it).
 *
 * Not here yet: Raft membership changes, leadership transfer, anything that
 * acts on the map (routing, failover). */
#include "metaraft.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"
#include "mem.h"
#include "metacmd.h"
#include "util.h"

#define TICK_MS 50 /* how often the loop looks at the leadership */

typedef struct proposal {
    uint8_t *data; /* xmalloc'd copy of the command */
    size_t len;
    metaraft_done_cb done;
    void *arg;
} proposal;

/* One raft_apply in flight: freed by apply_done. */
typedef struct apply_req {
    struct raft_apply req;
    metaraft_done_cb done;
    void *arg;
} apply_req;

struct metaraft {
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t tick;
    struct raft_uv_transport transport;
    struct raft_io io;
    struct raft_fsm fsm;
    meta_fsm fsm_state;
    struct raft raft;
    char *address, *dir;
    void (*on_change)(void *arg, const metamap *map, bool leader);
    void *arg;
    bool closing;          /* loop thread only */
    bool was_leader;       /* loop thread only */
    uint64_t last_leader;  /* loop thread only */
    unsigned confirm_ms;   /* a confirming barrier this often while leading (0: none) */
    bool confirming;       /* loop thread only: a confirming barrier is in flight */
    int64_t confirm_started; /* loop thread only: when the last one was proposed */
    atomic_int_fast64_t confirmed; /* now_ms() when the newest barrier that committed was proposed */

    pthread_mutex_t lock;  /* guards what follows */
    bool stopping;
    /* Bounded: METARAFT_QUEUE proposals; overflow policy: refuse (propose
     * returns -1, counted in dropped), the caller retries or gives up. */
    proposal queue[METARAFT_QUEUE];
    unsigned head, count;
    metamap *published;    /* the committed map, copied after every change */
    bool leader;
    uint64_t leader_id;
    uint64_t term;         /* the current term when leadership was last published */
    uint64_t ready_term;   /* the term whose leader barrier was applied here */
    atomic_uint_fast64_t dropped;
};

/* ---- on the loop's thread ---- */

/* A new leader's barrier, in flight (freed by barrier_done). */
typedef struct barrier_req {
    struct raft_barrier req;
    metaraft *mr;
    uint64_t term;   /* the term it was proposed in */
    int64_t started; /* now_ms() when proposed */
    bool confirm;    /* a confirming barrier (else the term's first) */
} barrier_req;

/* A barrier committed: a majority appended it in its term after it was
 * proposed, so no other leader was elected before `started` (metaraft_confirmed).
 * The barrier of a new leader's term also makes the leader's map current
 * (metaraft_leader_ready). */
static void barrier_done(struct raft_barrier *req, int status)
{
    barrier_req *b = req->data;
    if (status == 0) {
        if (!b->confirm) {
            pthread_mutex_lock(&b->mr->lock);
            b->mr->ready_term = b->term;
            pthread_mutex_unlock(&b->mr->lock);
        }
        int64_t seen = atomic_load(&b->mr->confirmed);
        while (seen < b->started && !atomic_compare_exchange_weak(&b->mr->confirmed, &seen, b->started))
            ;
    }
    if (b->confirm)
        b->mr->confirming = false;
    xfree(b);
}

/* Proposes a barrier (on the loop's thread); false when raft refused it. */
static bool propose_barrier(metaraft *mr, bool confirm)
{
    barrier_req *b = xcalloc(1, sizeof(*b));
    b->req.data = b;
    b->mr = mr;
    b->term = mr->raft.current_term;
    b->started = now_ms();
    b->confirm = confirm;
    if (raft_barrier(&mr->raft, &b->req, barrier_done) != 0) {
        xfree(b);
        return false;
    }
    return true;
}

/* While leading: a barrier every confirm_ms, one at a time (metaraft_confirmed). */
static void confirm_leadership(metaraft *mr)
{
    if (mr->confirm_ms == 0 || mr->confirming || mr->closing || raft_state(&mr->raft) != RAFT_LEADER)
        return;
    int64_t now = now_ms();
    if (now - mr->confirm_started < (int64_t)mr->confirm_ms)
        return;
    mr->confirm_started = now;
    mr->confirming = propose_barrier(mr, true);
}

static void publish_leadership(metaraft *mr)
{
    raft_id id = 0;
    const char *addr = NULL;
    bool leader = raft_state(&mr->raft) == RAFT_LEADER;
    raft_leader(&mr->raft, &id, &addr);
    if (leader == mr->was_leader && id == mr->last_leader)
        return;
    if (leader && !mr->was_leader) {
        /* A new leader commits an entry of its own term at once (Raft's no-op):
         * until then nothing from earlier terms is known committed, and after a
         * restart of the whole group no server would apply its log. */
        (void)propose_barrier(mr, false);
    }
    bool was = mr->was_leader;
    mr->was_leader = leader;
    mr->last_leader = id;
    uint64_t term = mr->raft.current_term;
    pthread_mutex_lock(&mr->lock);
    mr->leader = leader;
    mr->leader_id = id;
    mr->term = term;
    pthread_mutex_unlock(&mr->lock);
    /* one line per change of leader: rare (pre-vote keeps a flapping node from forcing elections) */
    log_info("meta-leader", "self=%llu leader=%llu term=%llu%s", (unsigned long long)mr->raft.id,
             (unsigned long long)id, (unsigned long long)term,
             leader && !was ? " (this node became the leader)" : !leader && was ? " (this node lost leadership)"
             : id == 0 ? " (none known)" : "");
    if (mr->on_change)
        mr->on_change(mr->arg, mr->fsm_state.map, leader);
}

static void map_changed(void *arg, const metamap *map)
{
    metaraft *mr = arg;
    pthread_mutex_lock(&mr->lock);
    *mr->published = *map;
    pthread_mutex_unlock(&mr->lock);
    if (mr->on_change)
        mr->on_change(mr->arg, map, mr->was_leader);
}

static void apply_done(struct raft_apply *req, int status, void *result)
{
    apply_req *a = req->data;
    if (a->done)
        a->done(a->arg, status, status == 0 ? meta_fsm_result(result) : 0);
    xfree(a);
}

static void propose_one(metaraft *mr, proposal *p)
{
    if (raft_state(&mr->raft) != RAFT_LEADER) {
        if (p->done)
            p->done(p->arg, RAFT_NOTLEADER, 0);
        return;
    }
    struct raft_buffer buf;
    if (meta_fsm_entry(p->data, p->len, &buf) != 0) {
        if (p->done)
            p->done(p->arg, RAFT_NOMEM, 0);
        return;
    }
    apply_req *a = xcalloc(1, sizeof(*a));
    a->req.data = a;
    a->done = p->done;
    a->arg = p->arg;
    int rv = raft_apply(&mr->raft, &a->req, &buf, 1, apply_done);
    if (rv != 0) {
        /* Not the leader: the buffer is still ours. Other failures may have
         * handed it to raft's log already (0.15 discards it there): leave it. */
        if (rv == RAFT_NOTLEADER)
            raft_free(buf.base);
        xfree(a);
        if (p->done)
            p->done(p->arg, rv, 0);
    }
}

/* Takes every queued proposal out under the lock; proposes (or fails) them outside it. */
static void drain(metaraft *mr, int fail_with)
{
    proposal batch[METARAFT_QUEUE];
    pthread_mutex_lock(&mr->lock);
    unsigned n = mr->count;
    for (unsigned i = 0; i < n; i++)
        batch[i] = mr->queue[(mr->head + i) % METARAFT_QUEUE];
    mr->head = (mr->head + n) % METARAFT_QUEUE;
    mr->count = 0;
    pthread_mutex_unlock(&mr->lock);
    for (unsigned i = 0; i < n; i++) {
        if (fail_with != 0) {
            if (batch[i].done)
                batch[i].done(batch[i].arg, fail_with, 0);
        } else
            propose_one(mr, &batch[i]);
        xfree(batch[i].data);
    }
}

static void on_tick(uv_timer_t *t)
{
    publish_leadership(t->data);
    confirm_leadership(t->data);
}

static void on_wake(uv_async_t *h)
{
    metaraft *mr = h->data;
    if (mr->closing)
        return;
    pthread_mutex_lock(&mr->lock);
    bool stop = mr->stopping;
    pthread_mutex_unlock(&mr->lock);
    if (!stop) {
        publish_leadership(mr);
        drain(mr, 0);
        return;
    }
    /* stopping: no propose() sends a wake-up any more (it checks stopping
     * under the lock), so the handle can close */
    mr->closing = true;
    drain(mr, RAFT_SHUTDOWN);
    uv_timer_stop(&mr->tick);
    uv_close((uv_handle_t *)&mr->tick, NULL);
    uv_close((uv_handle_t *)&mr->wake, NULL);
    raft_close(&mr->raft, NULL);
}

static void *loop_main(void *arg)
{
    metaraft *mr = arg;
    uv_run(&mr->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* ---- any thread ---- */

static int mkdir_p(const char *dir)
{
    char path[1024];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(path))
        return -1;
    memcpy(path, dir, len + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(path, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

/* Releases what metaraft_start set up, from the step it reached. raft_close
 * needs the loop to run to finish (its handles close asynchronously). */
static void teardown(metaraft *mr, int reached)
{
    if (reached >= 4) {
        raft_close(&mr->raft, NULL);
        uv_run(&mr->loop, UV_RUN_DEFAULT);
    }
    if (reached >= 3)
        raft_uv_close(&mr->io);
    if (reached >= 2)
        raft_uv_tcp_close(&mr->transport);
    if (reached >= 1) {
        uv_run(&mr->loop, UV_RUN_DEFAULT);
        uv_loop_close(&mr->loop);
    }
    meta_fsm_close(&mr->fsm_state);
    pthread_mutex_destroy(&mr->lock);
    xfree(mr->published);
    xfree(mr->address);
    xfree(mr->dir);
    xfree(mr);
}

/* After raft_start: a data folder bootstrapped with other voters (or other
 * addresses) keeps its logged configuration, since membership changes are not
 * wired; say so, or a cluster whose raft addresses changed waits for an
 * election that never comes without a word. */
static void check_configuration(metaraft *mr, const metaraft_config *cfg)
{
    const struct raft_configuration *c = &mr->raft.configuration;
    bool same = c->n == cfg->nvoters;
    for (unsigned i = 0; same && i < cfg->nvoters; i++) {
        bool found = false;
        for (unsigned k = 0; k < c->n; k++)
            if (c->servers[k].id == cfg->voters[i].id && strcmp(c->servers[k].address, cfg->voters[i].address) == 0)
                found = true;
        same = found;
    }
    if (same)
        return;
    char logged[512] = "";
    size_t used = 0;
    for (unsigned k = 0; k < c->n && used < sizeof(logged); k++) {
        int w = snprintf(logged + used, sizeof(logged) - used, "%s%llu=%s", k ? "," : "",
                         (unsigned long long)c->servers[k].id, c->servers[k].address);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    log_error("meta-config-mismatch", "dir=%s logged_voters=%s configured=%u (the Raft log in this folder was "
              "bootstrapped with other voters or addresses; it keeps them: changing the group is not supported yet. "
              "Restore cluster.nodes' raft addresses, or move the raft folders of every node away to bootstrap "
              "again)", cfg->dir, logged[0] ? logged : "none", cfg->nvoters);
}

/* Whether IPv4:PORT cannot be bound because another socket holds it (what a
 * failed start says: libraft's transport keeps the cause to itself). */
static bool port_busy(const char *ipv4_port)
{
    char host[64];
    const char *colon = strrchr(ipv4_port, ':');
    if (colon == NULL || (size_t)(colon - ipv4_port) >= sizeof(host))
        return false;
    memcpy(host, ipv4_port, (size_t)(colon - ipv4_port));
    host[colon - ipv4_port] = '\0';
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
        return false;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    bool busy = bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno == EADDRINUSE;
    close(fd);
    return busy;
}

metaraft *metaraft_start(const metaraft_config *cfg, char *err, size_t err_len)
{
    const char *listen_on;
    bool busy;
    if (cfg->id == 0 || cfg->address == NULL || cfg->dir == NULL || cfg->nvoters == 0 ||
        cfg->nvoters > METARAFT_MAX_VOTERS) {
        snprintf(err, err_len, "metaraft: needs an id, an address, a data folder and 1-%d voters",
                 METARAFT_MAX_VOTERS);
        return NULL;
    }
    if (mkdir_p(cfg->dir) != 0) {
        snprintf(err, err_len, "metaraft: cannot create %s: %s", cfg->dir, strerror(errno));
        return NULL;
    }
    metaraft *mr = xcalloc(1, sizeof(*mr));
    pthread_mutex_init(&mr->lock, NULL);
    mr->address = xstrdup(cfg->address);
    mr->dir = xstrdup(cfg->dir);
    mr->on_change = cfg->on_change;
    mr->arg = cfg->arg;
    mr->confirm_ms = cfg->confirm_ms;
    mr->published = xmalloc(sizeof(*mr->published));
    metamap_init(mr->published);
    meta_fsm_init(&mr->fsm, &mr->fsm_state);
    mr->fsm_state.on_change = map_changed;
    mr->fsm_state.arg = mr;

    int reached = 0, rv;
    const char *what = "uv_loop_init";
    if ((rv = uv_loop_init(&mr->loop)) != 0)
        goto fail;
    reached = 1;
    what = "raft_uv_tcp_init";
    if ((rv = raft_uv_tcp_init(&mr->transport, &mr->loop)) != 0)
        goto fail;
    reached = 2;
    what = "raft_uv_tcp_set_bind_address";
    if (cfg->bind != NULL && cfg->bind[0] != '\0' &&
        (rv = raft_uv_tcp_set_bind_address(&mr->transport, cfg->bind)) != 0)
        goto fail;
    what = "raft_uv_init";
    if ((rv = raft_uv_init(&mr->io, &mr->loop, mr->dir, &mr->transport)) != 0)
        goto fail;
    reached = 3;
    /* A log segment that does not load stops the server: libraft's default
     * renames it aside and starts without it, forgetting entries this server
     * acknowledged (a committed entry could then be lost by the group). */
    raft_uv_set_auto_recovery(&mr->io, false);
    what = "raft_init";
    if ((rv = raft_init(&mr->raft, &mr->io, &mr->fsm, cfg->id, mr->address)) != 0)
        goto fail;
    reached = 4;
    mr->raft.data = mr;
    raft_set_pre_vote(&mr->raft, true); /* a flapping node cannot force elections (FAILOVER.md) */
    raft_set_election_timeout(&mr->raft, cfg->election_timeout_ms ? cfg->election_timeout_ms : 1000);
    raft_set_heartbeat_timeout(&mr->raft, cfg->heartbeat_ms ? cfg->heartbeat_ms : 100);
    if (cfg->snapshot_threshold)
        raft_set_snapshot_threshold(&mr->raft, cfg->snapshot_threshold);

    struct raft_configuration conf;
    raft_configuration_init(&conf);
    for (unsigned i = 0; i < cfg->nvoters && rv == 0; i++)
        rv = raft_configuration_add(&conf, cfg->voters[i].id, cfg->voters[i].address, RAFT_VOTER);
    what = "the voter list";
    if (rv == 0) {
        what = "raft_bootstrap";
        rv = raft_bootstrap(&mr->raft, &conf); /* a data folder that has a log already: CANTBOOTSTRAP */
        if (rv == RAFT_CANTBOOTSTRAP)
            rv = 0;
    }
    raft_configuration_close(&conf);
    if (rv != 0)
        goto fail;
    what = "raft_start";
    if ((rv = raft_start(&mr->raft)) != 0)
        goto fail;
    check_configuration(mr, cfg);
    what = "uv handles";
    if ((rv = uv_async_init(&mr->loop, &mr->wake, on_wake)) != 0)
        goto fail;
    mr->wake.data = mr;
    if ((rv = uv_timer_init(&mr->loop, &mr->tick)) != 0) {
        uv_close((uv_handle_t *)&mr->wake, NULL);
        goto fail;
    }
    mr->tick.data = mr;
    uv_timer_start(&mr->tick, on_tick, TICK_MS, TICK_MS);
    if ((rv = pthread_create(&mr->thread, NULL, loop_main, mr)) != 0) {
        uv_close((uv_handle_t *)&mr->wake, NULL);
        uv_close((uv_handle_t *)&mr->tick, NULL);
        goto fail;
    }
    log_info("meta-started", "id=%llu address=%s voters=%u dir=%s", (unsigned long long)cfg->id, cfg->address,
             cfg->nvoters, cfg->dir);
    return mr;

fail:
    /* libraft's own message is often just "I/O error": its disk and network
     * layers keep the cause (a busy port, an unwritable folder) */
    snprintf(err, err_len, "metaraft: %s: %s%s%s%s%s (address %s, folder %s)", what,
             reached >= 4 && raft_errmsg(&mr->raft)[0] ? raft_errmsg(&mr->raft)
             : rv < 0                                 ? uv_strerror(rv)
                                                      : raft_strerror(rv),
             reached >= 3 && mr->io.errmsg[0] ? "; storage: " : "", reached >= 3 ? mr->io.errmsg : "",
             reached >= 2 && mr->transport.errmsg[0] ? "; transport: " : "",
             reached >= 2 ? mr->transport.errmsg : "", cfg->address, mr->dir);
    teardown(mr, reached); /* our own listener, if any, is closed: a port still busy is another's */
    listen_on = cfg->bind != NULL && cfg->bind[0] != '\0' ? cfg->bind : cfg->address;
    busy = port_busy(listen_on);
    size_t used = strlen(err);
    if (busy && used < err_len)
        snprintf(err + used, err_len - used, "; listen on %s: Address in use (another process holds the port)",
                 listen_on);
    return NULL;
}

void metaraft_stop(metaraft *mr)
{
    if (mr == NULL)
        return;
    pthread_mutex_lock(&mr->lock);
    mr->stopping = true;
    uv_async_send(&mr->wake);
    pthread_mutex_unlock(&mr->lock);
    pthread_join(mr->thread, NULL);
    /* the loop has ended: every handle is closed, raft is closed */
    raft_uv_close(&mr->io);
    raft_uv_tcp_close(&mr->transport);
    uv_run(&mr->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&mr->loop) != 0)
        log_warn("meta-loop-busy", "handles still open at stop");
    meta_fsm_close(&mr->fsm_state);
    pthread_mutex_destroy(&mr->lock);
    xfree(mr->published);
    xfree(mr->address);
    xfree(mr->dir);
    xfree(mr);
}

int metaraft_propose(metaraft *mr, const void *cmd, size_t len, metaraft_done_cb done, void *arg)
{
    if (len == 0 || len > METACMD_MAX)
        return -1;
    uint8_t *copy = xmalloc(len);
    memcpy(copy, cmd, len);
    pthread_mutex_lock(&mr->lock);
    if (mr->stopping || mr->count == METARAFT_QUEUE) {
        bool full = !mr->stopping;
        pthread_mutex_unlock(&mr->lock);
        if (full)
            atomic_fetch_add(&mr->dropped, 1);
        xfree(copy);
        return -1;
    }
    mr->queue[(mr->head + mr->count) % METARAFT_QUEUE] =
        (proposal){.data = copy, .len = len, .done = done, .arg = arg};
    mr->count++;
    uv_async_send(&mr->wake); /* under the lock: never after the loop closed the handle */
    pthread_mutex_unlock(&mr->lock);
    return 0;
}

bool metaraft_is_leader(metaraft *mr, uint64_t *leader_id)
{
    pthread_mutex_lock(&mr->lock);
    bool leader = mr->leader;
    if (leader_id)
        *leader_id = mr->leader_id;
    pthread_mutex_unlock(&mr->lock);
    return leader;
}

void metaraft_map(metaraft *mr, metamap *out)
{
    pthread_mutex_lock(&mr->lock);
    *out = *mr->published;
    pthread_mutex_unlock(&mr->lock);
}

uint64_t metaraft_version(metaraft *mr)
{
    pthread_mutex_lock(&mr->lock);
    uint64_t v = mr->published->version;
    pthread_mutex_unlock(&mr->lock);
    return v;
}

bool metaraft_leader_ready(metaraft *mr)
{
    pthread_mutex_lock(&mr->lock);
    bool ready = mr->leader && mr->ready_term == mr->term && mr->term != 0;
    pthread_mutex_unlock(&mr->lock);
    return ready;
}

uint64_t metaraft_term(metaraft *mr)
{
    pthread_mutex_lock(&mr->lock);
    uint64_t t = mr->term;
    pthread_mutex_unlock(&mr->lock);
    return t;
}

int64_t metaraft_confirmed(metaraft *mr)
{
    return atomic_load(&mr->confirmed);
}

uint64_t metaraft_dropped(metaraft *mr)
{
    return atomic_load(&mr->dropped);
}
