/* ctl.c - `eddy ctl`: the cluster from a shell, through the backend library
 * (client/eddy.h) exactly as any backend would use it.
 *
 * Exit codes (for scripts): 0 ok, 1 unavailable / timeout / other failure,
 * 2 usage, 3 record not found, 4 version conflict, 5 RPC: no provider or the
 * provider's error, 6 a validator refused the write. Results go to stdout, diagnostics to stderr. */
#include "ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "changeset.h"
#include "clustermap.h"
#include "eddy.h"
#include "jsonpath.h"
#include "linktls.h"
#include "log.h"
#include "mem.h"

#define DEFAULT_CLUSTER "tcp://127.0.0.1:6021"
#define DEFAULT_TLS_CLUSTER "tls+tcp://127.0.0.1:6021"
#define COMMAND_OUTPUT_MAX (16u << 20)

static volatile sig_atomic_t *stopping;

static void ctl_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy ctl [--cluster ADDR] [--timeout MS] [--cluster-tls-cert FILE --cluster-tls-key FILE\n"
            "                [--cluster-tls-ca FILE]] COMMAND ...\n\n"
            "  emit NAME [JSON]                 publish an event\n"
            "  subscribe NAME                   print events as JSON lines until interrupted\n"
            "  subscribe NAME --from N [--history H]\n"
            "                                   the same, resumable (events.history): events held from offset N\n"
            "                                   (0: all held; 'now': none) of history H, then live; lines carry\n"
            "                                   \"history\" and \"offset\", and a \"gap\" line for events never delivered\n"
            "  get NAME [--with-version]        print the record's document\n"
            "  watch NAME                       print {\"version\",\"data\"} lines on every change\n"
            "  set NAME [PATH] JSON [--expect N]  write (a path); print the new version\n"
            "  delete NAME                      delete a record\n"
            "  txn                              apply the changeset on stdin all or none; print each result\n"
            "                                   (JSON: [{\"op\":\"set\",\"name\":\"{t}/a\",\"data\":{..},\"version\":N},\n"
            "                                   {\"op\":\"erase\",\"name\",\"path\"}, {\"op\":\"delete\",\"name\"}, ...])\n"
            "  call NAME [JSON]                 make an RPC; print its result\n"
            "  provide NAME -- COMMAND [ARG..]  answer each call with COMMAND's output (request on stdin)\n"
            "  validate PATTERN -- COMMAND [ARG..]\n"
            "                                   validate each write to records matching PATTERN with COMMAND:\n"
            "                                   the request on stdin (one JSON line); it prints accept,\n"
            "                                   reject [REASON], or {\"verdict\":...} (README: Validating writes)\n"
            "  status                           the cluster map and each node's health\n"
            "  reload                           every node and broker reads its permission rules again\n\n"
            "  --cluster ADDR  any node's request address (default " DEFAULT_CLUSTER ";\n"
            "                  a standalone server prints its address in backends-listening)\n"
            "  --timeout MS    per call (default 5000)\n"
            "  --cluster-tls-cert FILE, --cluster-tls-key FILE, --cluster-tls-ca FILE\n"
            "                  a cluster on tls+tcp:// addresses: a backend certificate (OU=eddy-backend),\n"
            "                  its key and the cluster's CA (or EDDY_CLUSTER_TLS_CERT, _KEY, _CA; then the\n"
            "                  default address is tls+tcp://127.0.0.1:6021)\n\n"
            "exit codes: 0 ok, 1 failure (unavailable, timeout), 2 usage, 3 not found,\n"
            "            4 version conflict, 5 RPC without provider or answered with an error,\n"
            "            6 refused: by a validator, or a changeset (an operation refused, or records\n"
            "              of different shards)\n");
}

/* The TLS credentials eddy ctl was given (options, else the environment), as
 * libeddy reads them; NULL when none (or they do not load: eddy_connect said why). */
static linktls *ctl_tls(const eddy_options *o)
{
    char err[512];
    const char *cert = o->tls_cert ? o->tls_cert : getenv("EDDY_CLUSTER_TLS_CERT");
    const char *key = o->tls_key ? o->tls_key : getenv("EDDY_CLUSTER_TLS_KEY");
    const char *ca = o->tls_ca ? o->tls_ca : getenv("EDDY_CLUSTER_TLS_CA");
    return linktls_open(cert, key, ca, LINK_ROLE_BACKEND, err, sizeof(err));
}

/* eddy ctl reload: each node reads its permission rules again and has every
 * broker it serves do so (RELOAD). Prints a line per node; exit 1 when one
 * did not answer or its file failed to compile (its log says why). */
static int reload_all(eddy *e, const eddy_options *opts)
{
    linktls *tls = ctl_tls(opts);
    char *status;
    if (eddy_cluster_status(e, &status) != EDDY_OK)
        return 1;
    json_t *root = json_loads(status, 0, NULL);
    eddy_free(status);
    int rc = 0;
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(root, "nodes"), i, n) {
        const char *id = json_string_value(json_object_get(n, "id"));
        const char *url = json_string_value(json_object_get(n, "request"));
        char *answer = url != NULL ? clustermap_node_reload(url, tls, 5000) : NULL;
        bool ok = answer != NULL && strstr(answer, "\"reloaded\":true") != NULL;
        printf("%s %s: %s\n", id ? id : "?", url ? url : "?",
               answer == NULL ? "no answer" : ok ? "reloaded" : "failed (its log says why; the rules in force stay)");
        rc |= !ok;
        xfree(answer);
    }
    json_decref(root);
    linktls_close(tls);
    return rc;
}

static int exit_code(eddy_status st)
{
    switch (st) {
    case EDDY_OK: return 0;
    case EDDY_ERR_INVALID:
    case EDDY_ERR_NO_HISTORY:
    case EDDY_ERR_CREDENTIALS: return 2;
    case EDDY_ERR_NOT_FOUND: return 3;
    case EDDY_ERR_VERSION: return 4;
    case EDDY_ERR_NO_PROVIDER:
    case EDDY_ERR_RPC: return 5;
    case EDDY_ERR_REJECTED: return 6;
    default: return 1;
    }
}

static int fail(const char *what, const char *name, eddy_status st)
{
    fprintf(stderr, "eddy ctl: %s %s: %s\n", what, name ? name : "", eddy_strerror(st));
    return exit_code(st);
}

/* text as a JSON string (xmalloc'd). */
static char *json_quote(const char *text)
{
    json_t *s = json_string(text);
    char *dumped = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    json_decref(s);
    char *out = xstrdup(dumped ? dumped : "\"\""); /* not UTF-8: an empty string */
    free(dumped); /* jansson's malloc */
    return out;
}

static void json_print_string(FILE *f, const char *text)
{
    char *q = json_quote(text);
    fputs(q, f);
    xfree(q);
}

static bool is_json(const char *text)
{
    return json_check(text, strlen(text)) != JSON_KIND_INVALID;
}

/* Waits for SIGINT/SIGTERM. */
static void wait_for_stop(void)
{
    while (!*stopping)
        usleep(50 * 1000);
}

/* ---- subscribe / watch ---- */

static void print_event(void *arg, const char *name, const char *json)
{
    (void)arg;
    printf("{\"name\":");
    json_print_string(stdout, name);
    printf(",\"data\":%s}\n", json ? json : "null");
    fflush(stdout);
}

/* ---- subscribe --from: an event stream ---- */

static void print_stream_event(void *arg, const char *name, uint64_t history, uint64_t offset, const char *json)
{
    (void)arg;
    printf("{\"name\":");
    json_print_string(stdout, name);
    /* the history as a string: a 64-bit number is beyond a JSON reader's exact integers */
    printf(",\"history\":\"%llu\",\"offset\":%llu,\"data\":%s}\n", (unsigned long long)history,
           (unsigned long long)offset, json ? json : "null");
    fflush(stdout);
}

static void print_stream_gap(void *arg, const char *name, uint64_t history, uint64_t from, uint64_t to, bool reset)
{
    (void)arg;
    printf("{\"name\":");
    json_print_string(stdout, name);
    printf(",\"gap\":{\"history\":\"%llu\",\"from\":%llu,\"to\":%llu,\"reset\":%s}}\n",
           (unsigned long long)history, (unsigned long long)from, (unsigned long long)to, reset ? "true" : "false");
    fflush(stdout);
}

/* A decimal uint64 (or "now" when allow_now: EDDY_OFFSET_NOW) into *out; false when not one. */
static bool parse_u64(const char *text, bool allow_now, uint64_t *out)
{
    if (allow_now && strcmp(text, "now") == 0) {
        *out = EDDY_OFFSET_NOW;
        return true;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (text[0] == '\0' || text[0] == '-' || *end != '\0' || errno != 0)
        return false;
    *out = v;
    return true;
}

/* subscribe NAME --from N [--history H] (argv[0] is "subscribe"). */
static int subscribe_from(eddy *e, int argc, char **argv)
{
    uint64_t offset = 0, history = 0;
    bool from_given = false;
    for (int i = 2; i < argc; i += 2) {
        bool ok = i + 1 < argc;
        if (ok && strcmp(argv[i], "--from") == 0)
            ok = from_given = parse_u64(argv[i + 1], true, &offset);
        else if (ok && strcmp(argv[i], "--history") == 0)
            ok = parse_u64(argv[i + 1], false, &history);
        else
            ok = false;
        if (!ok) {
            fprintf(stderr, "eddy ctl: subscribe NAME --from N|now [--history H] (decimal numbers)\n");
            return 2;
        }
    }
    if (!from_given) {
        fprintf(stderr, "eddy ctl: subscribe NAME --from N|now [--history H]: --from is required with --history\n");
        return 2;
    }
    eddy_status st = eddy_subscribe_from(e, argv[1], history, offset, print_stream_event, print_stream_gap, NULL);
    if (st != EDDY_OK)
        return fail("subscribe", argv[1], st);
    wait_for_stop();
    return 0;
}

static void print_record(void *arg, const char *name, int64_t version, const char *json)
{
    (void)arg;
    printf("{\"name\":");
    json_print_string(stdout, name);
    printf(",\"version\":%lld,\"data\":%s}\n", (long long)version, json ? json : "null");
    fflush(stdout);
}

/* ---- provide: one child process per call ---- */

typedef struct provide_ctx {
    char **argv;
} provide_ctx;

/* Runs argv with input on stdin; returns its exit status (-1: not run) and its
 * stdout in *out (xmalloc'd, at most COMMAND_OUTPUT_MAX bytes). */
static int run_command(char **argv, const char *input, char **out)
{
    int in[2], outp[2];
    *out = NULL;
    if (pipe(in) != 0)
        return -1;
    if (pipe(outp) != 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(outp[1], 1);
        close(in[0]);
        close(in[1]);
        close(outp[0]);
        close(outp[1]);
        execvp(argv[0], argv);
        fprintf(stderr, "eddy ctl: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(in[0]);
    close(outp[1]);
    size_t len = strlen(input), off = 0;
    while (off < len) {
        ssize_t n = write(in[1], input + off, len - off);
        if (n <= 0)
            break; /* the command does not read its input: fine */
        off += (size_t)n;
    }
    close(in[1]);
    size_t cap = 4096, used = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (used + 1 == cap) {
            if (cap >= COMMAND_OUTPUT_MAX)
                break;
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        ssize_t n = read(outp[0], buf + used, cap - used - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        used += (size_t)n;
    }
    close(outp[0]);
    buf[used] = '\0';
    while (used > 0 && (buf[used - 1] == '\n' || buf[used - 1] == '\r'))
        buf[--used] = '\0';
    *out = buf;
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void serve_call(void *arg, eddy_rpc *call, const char *name, const char *json, const char *user)
{
    provide_ctx *c = arg;
    char *output;
    int rc = run_command(c->argv, json ? json : "null", &output);
    if (rc == 0 && output[0] != '\0' && is_json(output))
        eddy_rpc_respond(call, output);
    else if (rc == 0) {
        /* not JSON: answered as a JSON string */
        char *quoted = json_quote(output);
        eddy_rpc_respond(call, quoted);
        xfree(quoted);
    } else {
        char msg[128];
        snprintf(msg, sizeof(msg), "%s exited with %d", c->argv[0], rc);
        eddy_rpc_error(call, output != NULL && output[0] ? output : msg);
    }
    xfree(output);
}

/* ---- validate: one child process per write ---- */

/* Answers v from a validator command's exit status and output: exit 0 with
 * `accept`, `reject [REASON]`, or a JSON object {"verdict": "accept" |
 * "reject" | "replace", "reason": TEXT, "data": DOCUMENT}; anything else (a
 * failed command, other output) rejects, saying why. */
static void answer_from_output(eddy_validation *v, const char *cmd, int rc, const char *output)
{
    char why[256];
    if (rc != 0) {
        snprintf(why, sizeof(why), "the validator command %s %s %d", cmd, rc < 0 ? "could not run:" : "exited with",
                 rc);
        eddy_validation_reject(v, why);
        return;
    }
    if (strcmp(output, "accept") == 0) {
        eddy_validation_accept(v);
        return;
    }
    if (strncmp(output, "reject", 6) == 0 && (output[6] == '\0' || output[6] == ' ' || output[6] == ':')) {
        const char *reason = output + 6;
        while (*reason == ' ' || *reason == ':')
            reason++;
        eddy_validation_reject(v, reason[0] ? reason : NULL);
        return;
    }
    json_t *root = json_loads(output, JSON_DECODE_ANY, NULL);
    const char *verdict = json_string_value(json_object_get(root, "verdict"));
    if (verdict != NULL && strcmp(verdict, "accept") == 0) {
        eddy_validation_accept(v);
    } else if (verdict != NULL && strcmp(verdict, "reject") == 0) {
        eddy_validation_reject(v, json_string_value(json_object_get(root, "reason")));
    } else if (verdict != NULL && strcmp(verdict, "replace") == 0 && json_is_object(json_object_get(root, "data"))) {
        char *doc = json_dumps(json_object_get(root, "data"), JSON_COMPACT);
        eddy_validation_replace(v, doc);
        free(doc); /* jansson's malloc */
    } else if (verdict != NULL && strcmp(verdict, "replace") == 0 && json_is_array(json_object_get(root, "data"))) {
        char *doc = json_dumps(json_object_get(root, "data"), JSON_COMPACT);
        eddy_validation_replace(v, doc);
        free(doc);
    } else {
        snprintf(why, sizeof(why), "the validator command %s answered neither accept, reject nor a verdict", cmd);
        eddy_validation_reject(v, why);
    }
    json_decref(root);
}

static void serve_validation(void *arg, eddy_validation *v, const char *name, const char *request)
{
    provide_ctx *c = arg;
    (void)name;
    size_t len = strlen(request);
    char *line = xmalloc(len + 2); /* one JSON line */
    memcpy(line, request, len);
    line[len] = '\n';
    line[len + 1] = '\0';
    char *output;
    int rc = run_command(c->argv, line, &output);
    answer_from_output(v, c->argv[0], rc, output ? output : "");
    xfree(output);
    xfree(line);
}

/* ---- commands ---- */

/* Prints a changeset's outcome as JSON: {"ok", ["failed", "error", "reason",] "results": [...]}. */
static void print_outcome(const eddy_changeset_outcome *out)
{
    json_t *body = json_pack("{s:b}", "ok", out->ok);
    if (!out->ok) {
        if (out->failed >= 0)
            json_object_set_new(body, "failed", json_integer(out->failed));
        json_object_set_new(body, "error", json_string(out->error ? out->error : "UNKNOWN"));
        json_object_set_new(body, "reason", json_string(out->reason ? out->reason : ""));
    }
    json_t *results = json_array();
    for (size_t i = 0; i < out->count; i++) {
        const eddy_changeset_result *r = &out->results[i];
        json_t *one = json_pack("{s:b}", "ok", r->ok);
        if (r->ok || (r->error && strcmp(r->error, "VERSION_EXISTS") == 0) ||
            (r->error && strcmp(r->error, "INVALID_VERSION") == 0))
            json_object_set_new(one, "version", json_integer(r->version));
        if (!r->ok) {
            json_object_set_new(one, "error", json_string(r->error ? r->error : "UNKNOWN"));
            json_object_set_new(one, "reason", json_string(r->reason ? r->reason : ""));
        }
        json_array_append_new(results, one);
    }
    json_object_set_new(body, "results", results);
    char *text = json_dumps(body, JSON_COMPACT);
    printf("%s\n", text);
    free(text);
    json_decref(body);
}

/* eddy ctl txn: the changeset on stdin (changeset.h's JSON form), applied all
 * or none. Exit 0 applied, 4 a version conflict, 6 refused, 2 bad input (or
 * records of different shards: nothing sent), 1 unavailable/timeout. */
static int txn(eddy *e)
{
    /* stdin, bounded: a changeset larger than COMMAND_OUTPUT_MAX is refused */
    size_t cap = 65536, len = 0;
    char *text = xmalloc(cap);
    size_t got;
    while ((got = fread(text + len, 1, cap - len, stdin)) > 0) {
        len += got;
        if (len == cap && cap < COMMAND_OUTPUT_MAX + 1) {
            cap = cap * 2 > COMMAND_OUTPUT_MAX + 1 ? COMMAND_OUTPUT_MAX + 1 : cap * 2;
            text = xrealloc(text, cap);
        } else if (len == cap)
            break;
    }
    if (len > COMMAND_OUTPUT_MAX) {
        xfree(text);
        fprintf(stderr, "eddy ctl: txn: stdin holds more than %u bytes\n", COMMAND_OUTPUT_MAX);
        return 2;
    }
    json_error_t jerr;
    json_t *ops = json_loadb(text, len, 0, &jerr);
    xfree(text);
    if (ops == NULL) {
        fprintf(stderr, "eddy ctl: txn: stdin is not JSON: %s (line %d)\n", jerr.text, jerr.line);
        return 2;
    }
    cs_item *items;
    size_t n;
    char why[640];
    int rc = cs_parse(ops, EDDY_CHANGESET_MAX, EDDY_NAME_MAX, &items, &n, why, sizeof(why));
    json_decref(ops);
    if (rc != 0) {
        fprintf(stderr, "eddy ctl: txn: %s\n", why);
        return 2;
    }
    eddy_changeset *cs = eddy_changeset_new();
    for (size_t i = 0; i < n; i++) {
        const cs_item *it = &items[i];
        eddy_status st = it->op == CS_SET     ? eddy_changeset_set(cs, it->name, it->path, it->data, it->version)
                         : it->op == CS_ERASE ? eddy_changeset_erase(cs, it->name, it->path, it->version)
                                              : eddy_changeset_delete(cs, it->name, it->version);
        if (st != EDDY_OK) {
            fprintf(stderr, "eddy ctl: txn: operation %zu: %s\n", i, eddy_strerror(st));
            cs_items_free(items, n);
            eddy_changeset_free(cs);
            return 2;
        }
    }
    cs_items_free(items, n);
    const eddy_changeset_outcome *out;
    eddy_status st = eddy_changeset_commit(e, cs, &out);
    print_outcome(out);
    if (st != EDDY_OK)
        fprintf(stderr, "eddy ctl: txn: %s%s%s\n", eddy_strerror(st), out->reason ? ": " : "",
                out->reason ? out->reason : "");
    eddy_changeset_free(cs);
    switch (st) {
    case EDDY_OK: return 0;
    case EDDY_ERR_VERSION: return 4;
    case EDDY_ERR_REFUSED:
    case EDDY_ERR_CROSS_SHARD: return 6;
    case EDDY_ERR_INVALID: return 2;
    default: return 1;
    }
}

static int run(eddy *e, const eddy_options *opts, int argc, char **argv)
{
    const char *cmd = argv[0];
    eddy_status st;
    if (strcmp(cmd, "emit") == 0 && (argc == 2 || argc == 3)) {
        if ((st = eddy_emit(e, argv[1], argc == 3 ? argv[2] : NULL)) != EDDY_OK)
            return fail("emit", argv[1], st);
        return 0;
    }
    if (strcmp(cmd, "subscribe") == 0 && argc >= 4)
        return subscribe_from(e, argc, argv);
    if (strcmp(cmd, "subscribe") == 0 && argc == 2) {
        if ((st = eddy_subscribe(e, argv[1], print_event, NULL)) != EDDY_OK)
            return fail("subscribe", argv[1], st);
        wait_for_stop();
        return 0;
    }
    if (strcmp(cmd, "watch") == 0 && argc == 2) {
        if ((st = eddy_record_subscribe(e, argv[1], print_record, NULL)) != EDDY_OK)
            return fail("watch", argv[1], st);
        wait_for_stop();
        return 0;
    }
    if (strcmp(cmd, "get") == 0 && (argc == 2 || (argc == 3 && strcmp(argv[2], "--with-version") == 0))) {
        char *json;
        int64_t version;
        if ((st = eddy_get(e, argv[1], &json, &version)) != EDDY_OK)
            return fail("get", argv[1], st);
        if (argc == 3)
            printf("{\"version\":%lld,\"data\":%s}\n", (long long)version, json);
        else
            printf("%s\n", json);
        eddy_free(json);
        return 0;
    }
    if (strcmp(cmd, "set") == 0 && argc >= 3) {
        int64_t version = EDDY_VERSION_ANY;
        if (argc >= 5 && strcmp(argv[argc - 2], "--expect") == 0) {
            char *end;
            long long cur = strtoll(argv[argc - 1], &end, 10);
            if (*end != '\0' || cur < 0) {
                fprintf(stderr, "eddy ctl: --expect wants a version number\n");
                return 2;
            }
            version = cur + 1; /* the version this write creates */
            argc -= 2;
        }
        if (argc != 3 && argc != 4) {
            ctl_usage(stderr);
            return 2;
        }
        const char *path = argc == 4 ? argv[2] : NULL, *json = argv[argc - 1];
        if (!is_json(json)) {
            fprintf(stderr, "eddy ctl: set %s: the value is not JSON (quote strings: '\"text\"')\n", argv[1]);
            return 2;
        }
        int64_t written;
        char *reason = NULL;
        if ((st = eddy_write(e, argv[1], path, json, version, &written, &reason)) != EDDY_OK) {
            if (st == EDDY_ERR_VERSION)
                fprintf(stderr, "eddy ctl: set %s: version conflict (the record is at version %lld)\n",
                        argv[1], (long long)written);
            else if (st == EDDY_ERR_REJECTED)
                fprintf(stderr, "eddy ctl: set %s: refused by a validator: %s\n", argv[1], reason ? reason : "");
            else
                fail("set", argv[1], st);
            eddy_free(reason);
            return exit_code(st);
        }
        printf("%lld\n", (long long)written);
        return 0;
    }
    if (strcmp(cmd, "delete") == 0 && argc == 2) {
        if ((st = eddy_delete(e, argv[1])) != EDDY_OK)
            return fail("delete", argv[1], st);
        return 0;
    }
    if (strcmp(cmd, "txn") == 0 && argc == 1)
        return txn(e);
    if (strcmp(cmd, "call") == 0 && (argc == 2 || argc == 3)) {
        char *result = NULL;
        st = eddy_call(e, argv[1], argc == 3 ? argv[2] : NULL, &result);
        if (st == EDDY_ERR_RPC)
            fprintf(stderr, "eddy ctl: call %s: the provider answered an error: %s\n", argv[1],
                    result ? result : "null");
        else if (st != EDDY_OK)
            fail("call", argv[1], st);
        else
            printf("%s\n", result ? result : "null");
        eddy_free(result);
        return exit_code(st);
    }
    if (strcmp(cmd, "provide") == 0 && argc >= 4 && strcmp(argv[2], "--") == 0) {
        provide_ctx c = {.argv = argv + 3};
        if ((st = eddy_provide(e, argv[1], serve_call, &c)) != EDDY_OK)
            return fail("provide", argv[1], st);
        fprintf(stderr, "eddy ctl: providing %s (interrupt to stop)\n", argv[1]);
        wait_for_stop();
        return 0;
    }
    if (strcmp(cmd, "validate") == 0 && argc >= 4 && strcmp(argv[2], "--") == 0) {
        provide_ctx c = {.argv = argv + 3};
        if ((st = eddy_validate(e, argv[1], serve_validation, &c)) != EDDY_OK)
            return fail("validate", argv[1], st);
        fprintf(stderr, "eddy ctl: validating %s (interrupt to stop)\n", argv[1]);
        wait_for_stop();
        return 0;
    }
    if (strcmp(cmd, "status") == 0 && argc == 1) {
        char *json;
        if ((st = eddy_cluster_status(e, &json)) != EDDY_OK)
            return fail("status", NULL, st);
        printf("%s\n", json);
        int rc = strstr(json, "\"delivering\":false") == NULL ? 0 : 1;
        eddy_free(json);
        return rc;
    }
    if (strcmp(cmd, "reload") == 0 && argc == 1)
        return reload_all(e, opts);
    ctl_usage(stderr);
    return 2;
}

int cmd_ctl(int argc, char **argv, volatile sig_atomic_t *stop)
{
    stopping = stop;
    const char *cluster = NULL;
    eddy_options opts = {.timeout_ms = 5000};
    int i = 2; /* argv[0] eddy, argv[1] ctl */
    for (; i < argc && argv[i][0] == '-'; i += 2) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            ctl_usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            ctl_usage(stderr);
            return 2;
        }
        if (strcmp(argv[i], "--cluster") == 0)
            cluster = argv[i + 1];
        else if (strcmp(argv[i], "--cluster-tls-cert") == 0)
            opts.tls_cert = argv[i + 1];
        else if (strcmp(argv[i], "--cluster-tls-key") == 0)
            opts.tls_key = argv[i + 1];
        else if (strcmp(argv[i], "--cluster-tls-ca") == 0)
            opts.tls_ca = argv[i + 1];
        else if (strcmp(argv[i], "--timeout") == 0) {
            char *end;
            long ms = strtol(argv[i + 1], &end, 10);
            if (*end != '\0' || ms < 1 || ms > 3600000) {
                fprintf(stderr, "eddy ctl: --timeout wants milliseconds (1..3600000)\n");
                return 2;
            }
            opts.timeout_ms = (int)ms;
        } else {
            fprintf(stderr, "eddy ctl: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (i >= argc) {
        ctl_usage(stderr);
        return 2;
    }
    if (getenv("EDDY_LOG_LEVEL") == NULL)
        log_threshold = LOG_WARN; /* the library's link chatter is not a shell user's business */
    if (cluster == NULL)
        cluster = opts.tls_cert != NULL || getenv("EDDY_CLUSTER_TLS_CERT") != NULL ? DEFAULT_TLS_CLUSTER
                                                                                 : DEFAULT_CLUSTER;
    eddy *e;
    eddy_status st = eddy_connect(cluster, &opts, &e);
    if (st != EDDY_OK) {
        fprintf(stderr, "eddy ctl: cannot reach the cluster at %s: %s\n", cluster, eddy_strerror(st));
        return exit_code(st) == 2 ? 2 : 1;
    }
    int rc = run(e, &opts, argc - i, argv + i);
    eddy_close(e);
    return rc;
}
