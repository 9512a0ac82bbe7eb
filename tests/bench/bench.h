/* bench.h - what the modules of eddy-bench share: the load generator's
 * connections (libwebsockets clients on one thread, each with a bounded queue
 * of outgoing frames, logged in with the deepstream handshake of protocol
 * §5), the service loop and its millisecond tick, latency histograms, the
 * server's CPU and RSS read from /proc, one-line JSON results and the option
 * tables of the scenarios.
 *
 * Not for scenario logic: what a connection does once logged in, what it
 * measures and how it reports live in bench_<scenario>.c, behind the hooks
 * below. Everything here runs on the one service thread. */
#ifndef EDDY_BENCH_H
#define EDDY_BENCH_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libwebsockets.h>

#include "frames.h" /* frame: an encoded, refcounted client frame (broker/frames.c) */
#include "deepstream.pb-c.h"

#define HIST_US 200000 /* latency histogram: 1 us buckets up to 200 ms, */
#define HIST_MS 60000  /* then 1 ms buckets up to 60 s, then one overflow bucket */
#define OUT_QUEUE 4096  /* default bound of the frames queued per connection */
#define WINDOW 8192     /* max rate: deliveries sent but not yet received */

typedef struct bench bench;
typedef struct conn conn;

enum conn_state { CONN_CONNECTING = 0, CONN_CHALLENGED, CONN_AUTHENTICATING, CONN_READY, CONN_FAILED };

/* One client connection. Owned by its bench (freed by bench_destroy). */
struct conn {
    bench *b;
    struct lws *wsi; /* NULL once closed or failed */
    int role;        /* the scenario's: publisher, subscriber, writer, ... */
    int index;       /* the scenario's number for it within its role */
    int state;       /* enum conn_state */
    frame **out;     /* ring of queued frames, bounded by out_cap; overflow counts as bad */
    unsigned out_cap, out_head, out_len;
    uint8_t *rx; /* a message being reassembled from websocket fragments */
    size_t rx_len, rx_cap;
    void *data; /* the scenario's per-connection state, owned by the scenario */
};

/* What a scenario plugs into the shared connection handling; any may be NULL. */
typedef struct bench_hooks {
    /* c got AUTH_SUCCESSFUL (b->ready already counts it). */
    void (*logged_in)(conn *c);
    /* A message on the scenario's topic, decoded with its descriptor (an
     * undecodable one counts as bad); m is valid for the call only. */
    int topic;
    const ProtobufCMessageDescriptor *descriptor;
    void (*message)(conn *c, const ProtobufCMessage *m);
    /* c's socket can take a frame: the scenario may queue more (a closed loop).
     * Returns true to be asked again after this write. */
    bool (*writable)(conn *c);
    /* Every millisecond while the service loop runs. */
    void (*tick)(bench *b);
} bench_hooks;

struct bench {
    struct lws_context *ctx;
    const bench_hooks *hooks;
    /* common options */
    const char *url, *label, *json_path;
    const char *user; /* --user: log in as this username (NULL: "{}", deepstream's anonymous login) */
    /* --url may list several servers (a cluster's brokers), comma-separated:
     * connection i goes to server i % nservers */
#define BENCH_MAX_SERVERS 16
    char host[BENCH_MAX_SERVERS][256], path[BENCH_MAX_SERVERS][256];
    int port[BENCH_MAX_SERVERS];
    bool tls[BENCH_MAX_SERVERS]; /* wss:// (the server's certificate is not checked: a load generator) */
    int nservers;
    double seconds;
    pid_t pid; /* the server's (the first of pids), 0 when unknown */
    const char *pid_list; /* --pid: one pid, or a cluster's processes, comma-separated */
    pid_t pids[BENCH_MAX_SERVERS * 2];
    int npids;
    /* connections */
    conn **conns; /* every connection opened, in order */
    int nconns, conns_cap;
    int ready;  /* logged in */
    int failed; /* refused, failed to connect or log in, or closed by the server */
    bool running; /* the measured phase */
    bool done;    /* closing down: closes are expected */
    int64_t start_ns;
    int64_t last_ping_ns;
    uint64_t bad; /* protocol surprises: queue overflow, undecodable payloads, errors */
    lws_sorted_usec_list_t tick;
};

extern volatile sig_atomic_t bench_interrupted; /* SIGINT */

int64_t now_ns(void); /* CLOCK_MONOTONIC */
/* Open loop: how many sends are due by now since the measured phase began, at rate per second. */
uint64_t bench_due(const bench *b, int rate);
/* Open loop: sends (send(c), which counts in *sent) from the ready ones of
 * conns[0..n) in turn until *sent is what is due at rate per second. */
void bench_send_due(bench *b, int rate, const uint64_t *sent, conn **conns, int n, void (*send)(conn *c));
/* Queues an EVENT EMIT of name with data (JSON text) on c. */
void bench_emit(conn *c, char *name, char *data);

/* Creates the lws context (sized by the process's open files limit at this
 * moment) and starts the millisecond tick. Returns 0, or -1 after a message. */
int bench_start(bench *b, const bench_hooks *hooks);
/* Closes every connection and frees them and the context. NULL is fine. */
void bench_destroy(bench *b);

/* Opens a connection that logs in by itself; out_cap bounds its queue; iface,
 * if not NULL, is the local address to bind (the string must outlive the
 * connect). Returns the connection, owned by b; a failure shows in c->state
 * and b->failed. */
conn *bench_connect(bench *b, int role, int index, unsigned out_cap, const char *iface);
/* Encodes m and queues it on c (a full queue drops it and counts bad). */
void conn_send(conn *c, int topic, const ProtobufCMessage *m);

/* Runs the service loop until deadline_ns, SIGINT or done(b) (NULL: never). */
void bench_service(bench *b, int64_t deadline_ns, bool (*done)(bench *));
/* Every connection opened so far has logged in or failed. */
bool bench_all_settled(bench *b);
/* Runs the loop until the counter *watched has not moved for quiet_ns (or
 * max_ns passed, or settled(b) holds); returns the time it last moved. */
int64_t bench_drain(bench *b, const uint64_t *watched, int64_t quiet_ns, int64_t max_ns, bool (*settled)(bench *));

/* A latency histogram: 1 us buckets, then 1 ms buckets. */
typedef struct hist {
    uint32_t *us; /* HIST_US buckets, owned */
    uint32_t *ms; /* HIST_MS buckets from HIST_US us on, owned */
    uint64_t over, count;
} hist;

void hist_init(hist *h);
void hist_free(hist *h); /* NULL is fine */
void hist_add_ns(hist *h, int64_t ns);
double hist_ms(const hist *h, double q); /* the q quantile in milliseconds (0 when empty) */

/* The server's CPU seconds (user + system) or -1; its VmRSS in KiB or -1. */
double proc_cpu_seconds(pid_t pid);
long proc_rss_kib(pid_t pid);
/* The same summed over every process of --pid (-1 when one cannot be read). */
double server_cpu_seconds(const bench *b);
long server_rss_kib(const bench *b);

/* One result as a JSON object on one line, built key by key. */
typedef struct json_line {
    char buf[4096];
    size_t len;
} json_line;

void json_begin(json_line *j, const char *label, const char *scenario);
void json_int(json_line *j, const char *key, long long v);
void json_num(json_line *j, const char *key, double v, int decimals);
/* Closes the object and appends it as one line to path; 0 or -1. */
int json_append(json_line *j, const char *path);

/* A scenario's option table: every option takes a value except OPT_FLAG. */
typedef enum { OPT_INT, OPT_DOUBLE, OPT_STRING, OPT_FLAG } opt_type;

typedef struct bench_opt {
    const char *name; /* "--writers" */
    opt_type type;
    void *field; /* int, double, const char * or bool */
    double min, max;
    const char *doc;
} bench_opt;

typedef struct bench_scenario {
    const char *name;
    const char *summary;
    const bench_opt *opts;
    size_t nopts;
    int (*run)(bench *b); /* the exit code: 0 when nothing was lost, reordered or bad */
} bench_scenario;

extern const bench_scenario bench_events, bench_records, bench_rpc, bench_connections;

/* Exit codes of run(). */
#define BENCH_OK 0
#define BENCH_SETUP_FAILED 1
#define BENCH_USAGE 2
#define BENCH_FAILED 3

#endif
