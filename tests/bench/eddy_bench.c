/* eddy_bench.c - a native load generator speaking the deepstream protocol over
 * libwebsockets client connections (many per thread), so that the server, not
 * the load generator, is what a run measures. Works against eddy and against
 * deepstream alike: it only uses behaviour of the protocol reference.
 *
 * This file is the command line: the common options, each scenario's option
 * table, and the dispatch. The scenarios are in bench_<name>.c, the shared
 * machinery in bench.c. Every scenario prints one line and, with --json FILE,
 * appends one JSON line with "label" and "scenario" keys; it exits 0 only when
 * nothing was lost, reordered or bad (3 otherwise, 1 on a setup failure, 2 on
 * a usage error).
 *
 *   events       publishers emit to topics, subscribers count and time them
 *   records      writers update/patch records, subscribers follow versions
 *   rpc          callers make RPCs to echo providers
 *   connections  many connections logged in and subscribed: cost and delivery
 *
 * usage: eddy-bench SCENARIO --url ws://127.0.0.1:6020/deepstream [options]
 *        (eddy-bench with no arguments lists every option) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "mem.h"

static const bench_scenario *const scenarios[] = {&bench_events, &bench_records, &bench_rpc, &bench_connections};
#define NSCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

static bench the_bench_options; /* the common options' fields */

static const bench_opt common_opts[] = {
    {"--url", OPT_STRING, &the_bench_options.url, 0, 0, "the server, ws://HOST:PORT/PATH or wss:// (several, comma-separated: connections round robin)"},
    {"--seconds", OPT_DOUBLE, &the_bench_options.seconds, 0.1, 86400, "length of the measured phase"},
    {"--pid", OPT_STRING, &the_bench_options.pid_list, 0, 0, "the server's pid (several, comma-separated: summed): its CPU and memory are reported"},
    {"--label", OPT_STRING, &the_bench_options.label, 0, 0, "the server's name in the results"},
    {"--json", OPT_STRING, &the_bench_options.json_path, 0, 0, "append one JSON line with the results"},
    {"--user", OPT_STRING, &the_bench_options.user, 0, 0, "log every connection in as this username (permission rules on user.id)"},
};

static void print_opt(const bench_opt *o)
{
    char def[64] = "";
    switch (o->type) {
    case OPT_INT: snprintf(def, sizeof(def), " %d", *(int *)o->field); break;
    case OPT_DOUBLE: snprintf(def, sizeof(def), " %g", *(double *)o->field); break;
    case OPT_STRING: snprintf(def, sizeof(def), " %s", *(const char **)o->field ? *(const char **)o->field : "-"); break;
    case OPT_FLAG: break;
    }
    fprintf(stderr, "    %-16s %s (default%s)\n", o->name, o->doc, o->type == OPT_FLAG ? " off" : def);
}

static void usage(void)
{
    fprintf(stderr, "usage: eddy-bench SCENARIO [options]\n  common options:\n");
    for (size_t i = 0; i < sizeof(common_opts) / sizeof(common_opts[0]); i++)
        print_opt(&common_opts[i]);
    for (size_t s = 0; s < NSCENARIOS; s++) {
        fprintf(stderr, "  %s: %s\n", scenarios[s]->name, scenarios[s]->summary);
        for (size_t i = 0; i < scenarios[s]->nopts; i++)
            print_opt(&scenarios[s]->opts[i]);
    }
}

static const bench_opt *find_opt(const bench_opt *opts, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(opts[i].name, name) == 0)
            return &opts[i];
    return NULL;
}

/* Stores v in o's field; 0, or -1 after a message. */
static int set_opt(const bench_opt *o, const char *v)
{
    char *end;
    double x;
    switch (o->type) {
    case OPT_STRING:
        *(const char **)o->field = v;
        return 0;
    case OPT_FLAG:
        *(bool *)o->field = true;
        return 0;
    case OPT_INT:
    case OPT_DOUBLE:
        x = strtod(v, &end);
        if (end == v || *end != '\0' || x < o->min || x > o->max || (o->type == OPT_INT && x != (double)(int)x)) {
            fprintf(stderr, "eddy-bench: %s wants %s from %g to %g, not %s\n", o->name,
                    o->type == OPT_INT ? "an integer" : "a number", o->min, o->max, v);
            return -1;
        }
        if (o->type == OPT_INT)
            *(int *)o->field = (int)x;
        else
            *(double *)o->field = x;
        return 0;
    }
    return -1;
}

/* --url: one or more ws:// or wss://HOST:PORT/PATH, comma-separated. 0, or -1 after a message. */
static int parse_urls(bench *b)
{
    const char *p = b->url;
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        char one[600];
        snprintf(one, sizeof(one), "%.*s", (int)len, p);
        int i = b->nservers;
        b->tls[i] = i < BENCH_MAX_SERVERS && strncmp(one, "wss://", 6) == 0;
        if (i == BENCH_MAX_SERVERS ||
            sscanf(one, b->tls[i] ? "wss://%255[^:/]:%d%255s" : "ws://%255[^:/]:%d%255s", b->host[i], &b->port[i],
                   b->path[i]) != 3) {
            fprintf(stderr, "eddy-bench: --url wants ws://HOST:PORT/PATH or wss:// (at most %d, comma-separated), not %s\n",
                    BENCH_MAX_SERVERS, one);
            return -1;
        }
        b->nservers++;
        p += len + (p[len] == ',');
    }
    if (b->nservers == 0) {
        fprintf(stderr, "eddy-bench: --url is empty\n");
        return -1;
    }
    return 0;
}

/* --pid: pids, comma-separated. 0, or -1 after a message. */
static int parse_pids(bench *b)
{
    for (const char *p = b->pid_list; p != NULL && *p != '\0';) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v <= 0 || (*end != ',' && *end != '\0') ||
            b->npids == (int)(sizeof(b->pids) / sizeof(b->pids[0]))) {
            fprintf(stderr, "eddy-bench: --pid wants pids, comma-separated, not %s\n", b->pid_list);
            return -1;
        }
        b->pids[b->npids++] = (pid_t)v;
        p = *end == ',' ? end + 1 : end;
    }
    b->pid = b->npids > 0 ? b->pids[0] : 0;
    return 0;
}

static void on_sigint(int sig)
{
    (void)sig;
    bench_interrupted = 1;
}

int main(int argc, char **argv)
{
    bench *b = &the_bench_options;
    b->url = "ws://127.0.0.1:6020/deepstream";
    b->label = "server";
    b->seconds = 5;
    const bench_scenario *sc = NULL;
    for (size_t s = 0; argc >= 2 && s < NSCENARIOS; s++)
        if (strcmp(argv[1], scenarios[s]->name) == 0)
            sc = scenarios[s];
    if (sc == NULL) {
        usage();
        return BENCH_USAGE;
    }
    for (int i = 2; i < argc; i++) {
        const bench_opt *o = find_opt(common_opts, sizeof(common_opts) / sizeof(common_opts[0]), argv[i]);
        if (o == NULL)
            o = find_opt(sc->opts, sc->nopts, argv[i]);
        if (o == NULL) {
            fprintf(stderr, "eddy-bench: unknown option %s for %s (eddy-bench alone lists them)\n", argv[i], sc->name);
            return BENCH_USAGE;
        }
        if (o->type != OPT_FLAG && i + 1 == argc) {
            fprintf(stderr, "eddy-bench: %s wants a value\n", argv[i]);
            return BENCH_USAGE;
        }
        if (set_opt(o, o->type == OPT_FLAG ? NULL : argv[++i]) != 0)
            return BENCH_USAGE;
    }
    if (parse_urls(b) != 0 || parse_pids(b) != 0)
        return BENCH_USAGE;
    signal(SIGINT, on_sigint);
    signal(SIGPIPE, SIG_IGN);
    int rc = sc->run(b);
    bench_destroy(b);
    return rc;
}
