/* test_metaraft.c - the shard map replicated by Raft.
 *
 * With libraft's raft_fixture (deterministic, in memory) and the real FSM
 * (node/metafsm.c): 3 voters elect a leader and every FSM ends with the same
 * map bytes; a leader cut off from the others cannot commit (its proposal
 * fails and never applies anywhere) while the majority elects a new leader
 * and commits; with 2 of 3 down nothing commits; the minority rejoins and
 * converges to the majority's map; FAIL_NODE proposed by a cut-off leader
 * never commits, and once by the new leader commits exactly once (its copy
 * with the same expect_version refused); a snapshot taken by the FSM is what a
 * restarted-from-snapshot server restores.
 *
 * With the real wrapper (node/metaraft.c): 3 servers in this process on
 * 127.0.0.1 with temporary data folders bootstrap, elect, commit commands
 * proposed through the queue, all see the same committed map, refuse a
 * proposal on a follower, stop cleanly, and come back from their data
 * folders with the map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <raft.h>
#include <raft/fixture.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mem.h"
#include "metacmd.h"
#include "metamap.h"
#include "metaraft.h"
#include "util.h"

#define N 3

/* ---- commands ---- */

/* An encoded command (owned by the caller, msgpack_sbuffer_destroy). */
static msgpack_sbuffer encode(const meta_cmd *c)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(metacmd_encode(c, &sb), 0);
    return sb;
}

static msgpack_sbuffer add_node(uint16_t id)
{
    static char name[16], raft[32];
    snprintf(name, sizeof(name), "node%u", id);
    snprintf(raft, sizeof(raft), "127.0.0.1:%u", 7000 + id);
    meta_cmd c = {.kind = META_ADD_NODE, .node = id, .name = name, .name_len = (uint32_t)strlen(name),
                  .raft = raft, .raft_len = (uint32_t)strlen(raft)};
    return encode(&c);
}

static msgpack_sbuffer spread(unsigned copies)
{
    meta_cmd c = {.kind = META_SPREAD, .ncopies = (uint8_t)copies, .epoch = 1};
    return encode(&c);
}

static bool maps_equal(const metamap *a, const metamap *b)
{
    msgpack_sbuffer x, y;
    msgpack_sbuffer_init(&x);
    msgpack_sbuffer_init(&y);
    metamap_encode(a, &x);
    metamap_encode(b, &y);
    bool eq = x.size == y.size && memcmp(x.data, y.data, x.size) == 0;
    msgpack_sbuffer_destroy(&x);
    msgpack_sbuffer_destroy(&y);
    return eq;
}

/* ---- the fixture ---- */

typedef struct fx {
    struct raft_fixture f;
    struct raft_fsm fsms[N];
    meta_fsm st[N];
} fx;

static fx *fx_start(void)
{
    fx *x = xcalloc(1, sizeof(*x));
    assert_int_equal(raft_fixture_initialize(&x->f), 0);
    for (unsigned i = 0; i < N; i++) {
        meta_fsm_init(&x->fsms[i], &x->st[i]);
        assert_int_equal(raft_fixture_grow(&x->f, &x->fsms[i]), 0);
        raft_set_pre_vote(raft_fixture_get(&x->f, i), true); /* as metaraft runs it */
    }
    struct raft_configuration conf;
    assert_int_equal(raft_fixture_configuration(&x->f, N, &conf), 0);
    assert_int_equal(raft_fixture_bootstrap(&x->f, &conf), 0);
    raft_configuration_close(&conf);
    assert_int_equal(raft_fixture_start(&x->f), 0);
    return x;
}

static void fx_close(fx *x)
{
    raft_fixture_close(&x->f);
    for (unsigned i = 0; i < N; i++)
        meta_fsm_close(&x->st[i]);
    xfree(x);
}

/* A proposal's outcome. */
typedef struct outcome {
    struct raft_apply req;
    bool fired;
    int err, status;
} outcome;

static void outcome_cb(struct raft_apply *req, int status, void *result)
{
    outcome *o = req->data;
    o->fired = true;
    o->err = status;
    o->status = status == 0 ? meta_fsm_result(result) : -1;
}

/* Proposes cmd on server i (the buffer is copied into raft's memory). */
static int propose_on(fx *x, unsigned i, msgpack_sbuffer cmd, outcome *o)
{
    memset(o, 0, sizeof(*o));
    o->req.data = o;
    struct raft_buffer buf;
    assert_int_equal(meta_fsm_entry(cmd.data, cmd.size, &buf), 0);
    assert_int_equal(buf.len % 8, 0);
    msgpack_sbuffer_destroy(&cmd);
    int rv = raft_apply(raft_fixture_get(&x->f, i), &o->req, &buf, 1, outcome_cb);
    if (rv != 0)
        raft_free(buf.base);
    return rv;
}

/* Commits cmd through the current leader and waits until every live server applied it. */
static void commit(fx *x, msgpack_sbuffer cmd, int want_status)
{
    unsigned l = raft_fixture_leader_index(&x->f);
    assert_true(l < N);
    outcome o;
    assert_int_equal(propose_on(x, l, cmd, &o), 0);
    raft_index index = raft_last_index(raft_fixture_get(&x->f, l));
    for (unsigned i = 0; i < N; i++)
        if (raft_fixture_alive(&x->f, i))
            assert_true(raft_fixture_step_until_applied(&x->f, i, index, 5000));
    assert_true(o.fired);
    assert_int_equal(o.err, 0);
    assert_int_equal(o.status, want_status);
}

/* every server's map (but except's; N: none excluded) has the same bytes */
static bool all_equal(fx *x, unsigned except)
{
    unsigned first = except == 0 ? 1 : 0;
    for (unsigned i = 0; i < N; i++)
        if (i != except && !maps_equal(x->st[first].map, x->st[i].map))
            return false;
    return true;
}

static void test_fixture_elect_and_commit(void **state)
{
    (void)state;
    fx *x = fx_start();
    assert_true(raft_fixture_step_until_has_leader(&x->f, 10000));
    for (uint16_t id = 1; id <= N; id++)
        commit(x, add_node(id), META_OK);
    commit(x, spread(2), META_OK);
    commit(x, add_node(2), META_EEXISTS); /* refused the same way everywhere, and committed */
    for (unsigned i = 0; i < N; i++) {
        assert_true(x->st[i].map->version == N + 1);
        assert_int_equal(x->st[i].map->nmembers, N);
        assert_true(x->st[i].refused == 1);
    }
    assert_true(all_equal(x, N));
    assert_true(x->st[0].map->shards[4095].ncopies == 2);
    fx_close(x);
}

typedef struct other_leader {
    unsigned not;
} other_leader;

/* stops when a server other than arg->not is leader */
static bool has_other_leader(struct raft_fixture *f, void *arg)
{
    other_leader *o = arg;
    for (unsigned i = 0; i < N; i++)
        if (i != o->not && raft_state(raft_fixture_get(f, i)) == RAFT_LEADER)
            return true;
    return false;
}

static bool stepped_down(struct raft_fixture *f, void *arg)
{
    return raft_state(raft_fixture_get(f, *(unsigned *)arg)) != RAFT_LEADER;
}

static void test_fixture_partitioned_leader(void **state)
{
    (void)state;
    fx *x = fx_start();
    assert_true(raft_fixture_step_until_has_leader(&x->f, 10000));
    for (uint16_t id = 1; id <= N; id++)
        commit(x, add_node(id), META_OK);
    commit(x, spread(2), META_OK);
    uint64_t v = x->st[0].map->version;

    unsigned old = raft_fixture_leader_index(&x->f);
    for (unsigned j = 0; j < N; j++)
        if (j != old) {
            raft_fixture_disconnect(&x->f, old, j);
            raft_fixture_disconnect(&x->f, j, old);
        }
    /* the old leader still thinks it leads for a moment: its proposal is taken but cannot commit */
    outcome stale;
    meta_cmd c = {.kind = META_NODE_DOWN, .node = 1};
    int rv = propose_on(x, old, encode(&c), &stale);
    assert_true(rv == 0 || rv == RAFT_NOTLEADER);

    other_leader ol = {.not = old};
    assert_true(raft_fixture_step_until(&x->f, has_other_leader, &ol, 10000));
    unsigned fresh = N;
    for (unsigned i = 0; i < N; i++)
        if (i != old && raft_state(raft_fixture_get(&x->f, i)) == RAFT_LEADER)
            fresh = i;
    assert_true(fresh < N);
    /* the majority commits */
    outcome o;
    meta_cmd c2 = {.kind = META_NODE_DOWN, .node = 3};
    assert_int_equal(propose_on(x, fresh, encode(&c2), &o), 0);
    raft_index index = raft_last_index(raft_fixture_get(&x->f, fresh));
    for (unsigned i = 0; i < N; i++)
        if (i != old)
            assert_true(raft_fixture_step_until_applied(&x->f, i, index, 5000));
    assert_true(o.fired && o.err == 0 && o.status == META_OK);
    /* the old leader steps down (it lost the majority) without having applied anything */
    assert_true(raft_fixture_step_until(&x->f, stepped_down, &old, 10000));
    assert_true(x->st[old].map->version == v);
    assert_false(metamap_member(x->st[old].map, 1)->down);
    if (rv == 0) {
        assert_true(stale.fired);
        assert_int_not_equal(stale.err, 0); /* leadership lost: not committed by it */
    }
    for (unsigned i = 0; i < N; i++)
        if (i != old) {
            assert_true(metamap_member(x->st[i].map, 3)->down);
            assert_false(metamap_member(x->st[i].map, 1)->down);
        }

    /* the minority rejoins and converges to the majority's map */
    for (unsigned j = 0; j < N; j++)
        if (j != old) {
            raft_fixture_reconnect(&x->f, old, j);
            raft_fixture_reconnect(&x->f, j, old);
        }
    assert_true(raft_fixture_step_until_applied(&x->f, old, index, 10000));
    raft_fixture_step_until_elapsed(&x->f, 2000);
    assert_true(all_equal(x, N));
    assert_true(x->st[old].map->version == v + 1);
    assert_false(metamap_member(x->st[old].map, 1)->down); /* the stale proposal never applied anywhere */
    assert_true(metamap_member(x->st[old].map, 3)->down);
    /* and the group goes on committing */
    assert_true(raft_fixture_step_until_has_leader(&x->f, 10000));
    meta_cmd up = {.kind = META_NODE_UP, .node = 3};
    commit(x, encode(&up), META_OK);
    assert_true(all_equal(x, N));
    fx_close(x);
}

static void test_fixture_no_majority(void **state)
{
    (void)state;
    fx *x = fx_start();
    assert_true(raft_fixture_step_until_has_leader(&x->f, 10000));
    commit(x, add_node(1), META_OK);
    unsigned l = raft_fixture_leader_index(&x->f);
    for (unsigned i = 0; i < N; i++)
        if (i != l)
            raft_fixture_kill(&x->f, i);
    outcome o;
    int rv = propose_on(x, l, add_node(2), &o);
    assert_true(rv == 0 || rv == RAFT_NOTLEADER);
    raft_fixture_step_until_elapsed(&x->f, 5000);
    assert_true(x->st[l].map->version == 1); /* nothing committed without a majority */
    assert_null(metamap_member(x->st[l].map, 2));
    assert_int_not_equal(raft_state(raft_fixture_get(&x->f, l)), RAFT_LEADER); /* and it stepped down */
    if (rv == 0)
        assert_true(o.fired && o.err != 0);
    /* the others come back: a leader again, and the log goes on from the committed state */
    for (unsigned i = 0; i < N; i++)
        if (i != l)
            raft_fixture_revive(&x->f, i);
    assert_true(raft_fixture_step_until_has_leader(&x->f, 20000));
    commit(x, add_node(3), META_OK);
    raft_fixture_step_until_elapsed(&x->f, 1000);
    assert_true(all_equal(x, N));
    /* The proposal made without a majority was never reported committed, but it
     * is in the old leader's log: if that server leads again, Raft commits it
     * with the next entry of its term (why commands carry expect_version).
     * Either way every server holds the same map. */
    assert_non_null(metamap_member(x->st[0].map, 3));
    fx_close(x);
}


/* FAIL_NODE through Raft: the leader cut off from the others proposes
 * FAIL_NODE and nothing commits (a minority decides nothing); the majority
 * elects a new leader, whose FAIL_NODE of the same member, computed on the
 * same map version, commits once; the old leader's copy, retried by anyone
 * with the same expect_version, is committed but refused (stale): the member
 * is failed over exactly once (its shards' epochs raised by one). */
static void test_fixture_fail_node_once(void **state)
{
    (void)state;
    fx *x = fx_start();
    assert_true(raft_fixture_step_until_has_leader(&x->f, 10000));
    for (uint16_t id = 1; id <= N; id++)
        commit(x, add_node(id), META_OK);
    commit(x, spread(2), META_OK);
    uint64_t v = x->st[0].map->version;
    unsigned old = raft_fixture_leader_index(&x->f);
    uint16_t victim = (uint16_t)(old + 1) % N + 1; /* a member other than the old leader */
    uint64_t primaries = metamap_primaries_of(x->st[0].map, victim);
    assert_true(primaries > 0);

    for (unsigned j = 0; j < N; j++)
        if (j != old) {
            raft_fixture_disconnect(&x->f, old, j);
            raft_fixture_disconnect(&x->f, j, old);
        }
    meta_cmd fail = {.kind = META_FAIL_NODE, .node = victim, .expect_version = v};
    outcome minority;
    int rv = propose_on(x, old, encode(&fail), &minority);
    assert_true(rv == 0 || rv == RAFT_NOTLEADER);
    other_leader ol = {.not = old};
    assert_true(raft_fixture_step_until(&x->f, has_other_leader, &ol, 10000));
    assert_true(raft_fixture_step_until(&x->f, stepped_down, &old, 10000));
    if (rv == 0)
        assert_true(minority.fired && minority.err != 0); /* never reported committed */
    for (unsigned i = 0; i < N; i++)
        assert_true(x->st[i].map->version == v); /* nothing committed anywhere meanwhile */

    unsigned fresh = N;
    for (unsigned i = 0; i < N; i++)
        if (i != old && raft_state(raft_fixture_get(&x->f, i)) == RAFT_LEADER)
            fresh = i;
    assert_true(fresh < N);
    /* the new leader fails the member, once; the same decision again (the
     * old leader's, or a retry): committed, refused */
    static const int want[2] = {META_OK, META_ESTALE};
    raft_index index = 0;
    for (unsigned k = 0; k < 2; k++) {
        outcome o;
        assert_int_equal(propose_on(x, fresh, encode(&fail), &o), 0);
        index = raft_last_index(raft_fixture_get(&x->f, fresh));
        for (unsigned i = 0; i < N; i++)
            if (i != old)
                assert_true(raft_fixture_step_until_applied(&x->f, i, index, 5000));
        assert_true(o.fired && o.err == 0);
        assert_int_equal(o.status, want[k]);
    }
    for (uint16_t j = 0; j < N; j++)
        if (j != old) {
            raft_fixture_reconnect(&x->f, old, j);
            raft_fixture_reconnect(&x->f, j, old);
        }
    assert_true(raft_fixture_step_until_applied(&x->f, old, index, 10000));
    raft_fixture_step_until_elapsed(&x->f, 2000);
    assert_true(all_equal(x, N));
    for (unsigned i = 0; i < N; i++) {
        const metamap *m = x->st[i].map;
        assert_true(m->version == v + 1);
        assert_true(metamap_member(m, victim)->down);
        assert_int_equal(metamap_copies_of(m, victim), 0);
        unsigned raised = 0;
        for (uint32_t s = 0; s < SHARD_COUNT; s++) {
            assert_true(m->shards[s].epoch == 1 || m->shards[s].epoch == 2); /* raised once at most */
            raised += m->shards[s].epoch == 2;
        }
        assert_true(raised == primaries);
        assert_int_equal(metamap_check(m), 0);
    }
    fx_close(x);
}

/* The FSM's own snapshot, restored into a fresh FSM, and a corrupt one refused. */
static void test_fsm_snapshot_restore(void **state)
{
    (void)state;
    struct raft_fsm a, b;
    meta_fsm sa, sb;
    meta_fsm_init(&a, &sa);
    meta_fsm_init(&b, &sb);
    void *result;
    for (uint16_t id = 1; id <= 4; id++) {
        msgpack_sbuffer c = add_node(id);
        struct raft_buffer buf;
        assert_int_equal(meta_fsm_entry(c.data, c.size, &buf), 0);
        assert_int_equal(a.apply(&a, &buf, &result), 0);
        assert_int_equal(meta_fsm_result(result), META_OK);
        raft_free(buf.base);
        msgpack_sbuffer_destroy(&c);
    }
    struct raft_buffer junk = {.base = "\x93\x01", .len = 2};
    assert_int_equal(a.apply(&a, &junk, &result), 0); /* refused, but not an error for raft */
    assert_int_equal(meta_fsm_result(result), META_EMALFORMED);
    /* padding that is not zeros, or 8 bytes of it, is refused too */
    msgpack_sbuffer c = add_node(9);
    struct raft_buffer padded;
    assert_int_equal(meta_fsm_entry(c.data, c.size, &padded), 0);
    if (padded.len > c.size) {
        ((char *)padded.base)[padded.len - 1] = 1;
        assert_int_equal(a.apply(&a, &padded, &result), 0);
        assert_int_equal(meta_fsm_result(result), META_EMALFORMED);
    }
    raft_free(padded.base);
    char eight[METACMD_MAX + 8] = {0};
    memcpy(eight, c.data, c.size);
    struct raft_buffer over = {.base = eight, .len = c.size + 8};
    assert_int_equal(a.apply(&a, &over, &result), 0);
    assert_int_equal(meta_fsm_result(result), META_EMALFORMED);
    msgpack_sbuffer_destroy(&c);
    assert_null(metamap_member(sa.map, 9));
    assert_true(sa.refused >= 2 && sa.applied == 4);

    struct raft_buffer *bufs;
    unsigned n;
    assert_int_equal(a.snapshot(&a, &bufs, &n), 0);
    assert_int_equal(n, 1);
    /* a truncated copy is refused and leaves b as it was */
    struct raft_buffer cut = {.base = raft_malloc(bufs[0].len - 1), .len = bufs[0].len - 1};
    memcpy(cut.base, bufs[0].base, cut.len);
    assert_int_equal(b.restore(&b, &cut), RAFT_MALFORMED);
    raft_free(cut.base); /* refused: still ours */
    assert_int_equal(sb.map->nmembers, 0);
    /* the whole one restores (and b owns the buffer then) */
    assert_int_equal(b.restore(&b, &bufs[0]), 0);
    assert_true(maps_equal(sa.map, sb.map));
    raft_free(bufs);
    meta_fsm_close(&sa);
    meta_fsm_close(&sb);
}

/* ---- the real wrapper ---- */

/* n free tcp ports below 32768 (DEPENDENCIES.md pitfall 12), found by binding */
static void free_ports(unsigned *ports, unsigned n)
{
    unsigned base = 20000 + (unsigned)(getpid() * 7 % 10000);
    unsigned found = 0;
    for (unsigned p = base; found < n && p < 32000; p++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0)
            ports[found++] = p;
        close(fd);
    }
    assert_int_equal(found, n);
}

typedef struct done_box {
    atomic_int fired, err, status;
} done_box;

static void done_cb(void *arg, int err, int status)
{
    done_box *d = arg;
    atomic_store(&d->err, err);
    atomic_store(&d->status, status);
    atomic_store(&d->fired, 1);
}

typedef struct cluster {
    char root[64];
    char dirs[N][96];
    char addrs[N][32];
    metaraft_voter voters[N];
    metaraft *mr[N];
} cluster;

static atomic_int changes;
static void count_change(void *arg, const metamap *map, bool leader)
{
    (void)arg;
    (void)map;
    (void)leader;
    atomic_fetch_add(&changes, 1);
}

static void cluster_start(cluster *c)
{
    for (unsigned i = 0; i < N; i++) {
        metaraft_config cfg = {.id = i + 1, .address = c->addrs[i], .dir = c->dirs[i], .voters = c->voters,
                               .nvoters = N, .election_timeout_ms = 300, .heartbeat_ms = 50,
                               .on_change = count_change};
        char err[256] = "";
        c->mr[i] = metaraft_start(&cfg, err, sizeof(err));
        if (c->mr[i] == NULL)
            fail_msg("metaraft_start: %s", err);
    }
}

static void cluster_stop(cluster *c)
{
    int64_t t0 = now_ms();
    for (unsigned i = 0; i < N; i++) {
        metaraft_stop(c->mr[i]);
        c->mr[i] = NULL;
    }
    assert_true(now_ms() - t0 < 5000); /* no hang */
}

/* the leader's index, waiting up to ms */
static int wait_leader(cluster *c, int ms)
{
    for (int64_t end = now_ms() + ms; now_ms() < end; usleep(20000))
        for (unsigned i = 0; i < N; i++)
            if (c->mr[i] && metaraft_is_leader(c->mr[i], NULL))
                return (int)i;
    return -1;
}

static bool wait_version(cluster *c, uint64_t v, int ms)
{
    for (int64_t end = now_ms() + ms; now_ms() < end; usleep(20000)) {
        unsigned at = 0;
        for (unsigned i = 0; i < N; i++)
            at += metaraft_version(c->mr[i]) == v;
        if (at == N)
            return true;
    }
    return false;
}

static void propose_wait(metaraft *mr, msgpack_sbuffer cmd, done_box *d)
{
    memset(d, 0, sizeof(*d));
    assert_int_equal(metaraft_propose(mr, cmd.data, cmd.size, done_cb, d), 0);
    msgpack_sbuffer_destroy(&cmd);
    for (int64_t end = now_ms() + 10000; now_ms() < end && !atomic_load(&d->fired);)
        usleep(5000);
    assert_true(atomic_load(&d->fired));
}

static void test_wrapper_three_servers(void **state)
{
    (void)state;
    cluster *c = xcalloc(1, sizeof(*c));
    snprintf(c->root, sizeof(c->root), "/tmp/eddy-metaraft-XXXXXX");
    assert_non_null(mkdtemp(c->root));
    unsigned ports[N];
    free_ports(ports, N);
    for (unsigned i = 0; i < N; i++) {
        snprintf(c->dirs[i], sizeof(c->dirs[i]), "%s/node%u/raft", c->root, i + 1); /* created by start */
        snprintf(c->addrs[i], sizeof(c->addrs[i]), "127.0.0.1:%u", ports[i]);
        c->voters[i] = (metaraft_voter){.id = i + 1, .address = c->addrs[i]};
    }
    cluster_start(c);
    int l = wait_leader(c, 10000);
    assert_true(l >= 0);

    done_box d;
    for (uint16_t id = 1; id <= N; id++) {
        propose_wait(c->mr[l], add_node(id), &d);
        if (atomic_load(&d.err) == RAFT_NOTLEADER || atomic_load(&d.err) == RAFT_LEADERSHIPLOST) {
            l = wait_leader(c, 10000); /* an election happened meanwhile: once more on the new leader */
            propose_wait(c->mr[l], add_node(id), &d);
        }
        assert_int_equal(atomic_load(&d.err), 0);
        assert_int_equal(atomic_load(&d.status), META_OK);
    }
    propose_wait(c->mr[l], spread(2), &d);
    assert_int_equal(atomic_load(&d.err), 0);
    assert_int_equal(atomic_load(&d.status), META_OK);
    propose_wait(c->mr[l], add_node(1), &d); /* committed, refused by the map */
    assert_int_equal(atomic_load(&d.err), 0);
    assert_int_equal(atomic_load(&d.status), META_EEXISTS);
    /* a follower does not propose */
    int f = (l + 1) % N;
    propose_wait(c->mr[f], add_node(9), &d);
    assert_int_equal(atomic_load(&d.err), RAFT_NOTLEADER);
    /* bad input never reaches the log */
    assert_int_equal(metaraft_propose(c->mr[l], "", 0, NULL, NULL), -1);
    char big[METACMD_MAX + 1] = {0};
    assert_int_equal(metaraft_propose(c->mr[l], big, sizeof(big), NULL, NULL), -1);

    /* every server sees the committed map */
    assert_true(wait_version(c, N + 1, 10000));
    metamap *maps[N];
    for (unsigned i = 0; i < N; i++) {
        maps[i] = xmalloc(sizeof(metamap));
        metaraft_map(c->mr[i], maps[i]);
        assert_int_equal(maps[i]->nmembers, N);
        assert_int_equal(maps[i]->shards[0].ncopies, 2);
    }
    assert_true(maps_equal(maps[0], maps[1]) && maps_equal(maps[0], maps[2]));
    uint64_t leader_id = 0;
    metaraft_is_leader(c->mr[f], &leader_id);
    assert_true(leader_id == (uint64_t)l + 1); /* followers know the leader */
    assert_true(atomic_load(&changes) > 0);
    cluster_stop(c);

    /* back from their data folders (no bootstrap again): the same map, and a leader */
    cluster_start(c);
    if (!wait_version(c, N + 1, 10000))
        fail_msg("after restart: versions %llu %llu %llu",
                 (unsigned long long)metaraft_version(c->mr[0]), (unsigned long long)metaraft_version(c->mr[1]),
                 (unsigned long long)metaraft_version(c->mr[2]));
    assert_true(wait_leader(c, 10000) >= 0);
    metamap *again = xmalloc(sizeof(metamap));
    for (unsigned i = 0; i < N; i++) {
        metaraft_map(c->mr[i], again);
        assert_true(maps_equal(maps[0], again));
    }
    /* a proposal queued while stopping ends with RAFT_SHUTDOWN or commits; never both, never neither */
    l = wait_leader(c, 10000);
    memset(&d, 0, sizeof(d));
    msgpack_sbuffer last = add_node(7);
    assert_int_equal(metaraft_propose(c->mr[l], last.data, last.size, done_cb, &d), 0);
    msgpack_sbuffer_destroy(&last);
    cluster_stop(c);
    assert_true(atomic_load(&d.fired));

    xfree(again);
    for (unsigned i = 0; i < N; i++)
        xfree(maps[i]);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->root);
    assert_int_equal(system(cmd), 0);
    xfree(c);
}

int main(void)
{
    /* libuv writes to its sockets with write(2), not MSG_NOSIGNAL: a peer
     * server stopped by a test must not kill this process (eddy's main
     * ignores SIGPIPE for the same reason). */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fsm_snapshot_restore),
        cmocka_unit_test(test_fixture_elect_and_commit),
        cmocka_unit_test(test_fixture_partitioned_leader),
        cmocka_unit_test(test_fixture_no_majority),
        cmocka_unit_test(test_fixture_fail_node_once),
        cmocka_unit_test(test_wrapper_three_servers),
    };
    return cmocka_run_group_tests_name("metaraft", tests, NULL, NULL);
}
