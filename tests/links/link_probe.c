/* link_probe.c - a stranger on a node's nng ports, for the link security
 * tests (cluster-tests/links.test.mjs): it does what anyone who reaches the
 * ports could try, with whatever credentials it is given, through nng's own
 * TLS (not eddy's: an attacker brings their own stack).
 *
 *   link_probe [TLS] [--as node|broker|backend] [--wait MS] REQUEST_URL write NAME JSON
 *       HELLO as the role (default broker), then a RECORD_WRITE of NAME (the
 *       whole document JSON, any version) and a PRESENCE_JOIN of user NAME.
 *       Prints "hello <answer>", "write <answer>" and "presence <answer>", each
 *       answer being "ok", "error=<op error code>" or "no-answer".
 *   link_probe [TLS] [--as ROLE] [--hello REQUEST_URL] [--wait MS] DELIVERY_URL listen
 *       Pulls deliveries on the node's delivery port for MS (default 3000)
 *       as a random peer id, after saying HELLO with it on REQUEST_URL when
 *       --hello is given: prints "received <N>" (answers holding deliveries).
 *   link_probe [TLS] [--wait MS] REQUEST_URL flood N
 *       A peer that asks and never reads: up to N map queries (each answered
 *       with the whole cluster map), as fast as nng takes them, none of the
 *       answers read, until the node takes no more for a second (it stopped
 *       reading, or closed the connection) or 20 s pass; then holds the
 *       socket MS more (default 3000) and prints "sent <N>".
 *
 * TLS (for tls+tcp:// addresses): --cert FILE --key FILE (the certificate
 * shown; none: TLS without one) and --ca FILE (the node's certificate is
 * checked against it; none: not checked). Exit 0 once it has printed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>

#include "deepstream.pb-c.h"
#include "ops.h"
#include "shardmap.h"
#include "util.h"

static const char *cert, *key, *ca;
static int wait_ms = 3000;
static const char *hello_url; /* --hello */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    static char bufs[2][65536];
    static int next;
    char *buf = bufs[next++ % 2];
    size_t n = fread(buf, 1, sizeof(bufs[0]) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Dials url on s: over nng's TLS with the files given when url is tls+tcp://. */
static void dial(nng_socket s, const char *url)
{
    nng_dialer d;
    if (nng_dialer_create(&d, s, url) != 0) {
        fprintf(stderr, "link_probe: bad address %s\n", url);
        exit(2);
    }
    if (strncmp(url, "tls+", 4) == 0) {
        nng_tls_config *cfg;
        nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT);
        if (ca != NULL)
            nng_tls_config_ca_file(cfg, ca);
        nng_tls_config_auth_mode(cfg, ca != NULL ? NNG_TLS_AUTH_MODE_REQUIRED : NNG_TLS_AUTH_MODE_NONE);
        if (cert != NULL && nng_tls_config_own_cert(cfg, slurp(cert), slurp(key), NULL) != 0) {
            fprintf(stderr, "link_probe: nng refused %s / %s\n", cert, key);
            exit(2);
        }
        nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg);
        nng_tls_config_free(cfg);
    }
    nng_dialer_start(d, NNG_FLAG_NONBLOCK);
}

/* One operation as a batch from peer numbered seq: a message (owned by the
 * caller), or NULL without memory. */
static nng_msg *op_message(uint64_t peer, uint64_t seq, const op *o)
{
    op_batch b;
    op_batch_init(&b);
    op_batch_add(&b, o);
    uint8_t hdr[OP_BATCH_HEADER_MAX];
    size_t h = op_batch_header(hdr, peer, seq, b.count);
    nng_msg *m = NULL;
    if (nng_msg_alloc(&m, h + b.buf.size) == 0) {
        memcpy(nng_msg_body(m), hdr, h);
        memcpy((uint8_t *)nng_msg_body(m) + h, b.buf.data, b.buf.size);
    }
    op_batch_destroy(&b);
    return m;
}

/* Sends one operation in a batch from peer and prints what the node answered. */
static void send_op(nng_socket req, const char *step, uint64_t peer, uint64_t seq, const op *o)
{
    nng_msg *m = op_message(peer, seq, o);
    if (m == NULL || nng_sendmsg(req, m, 0) != 0) {
        nng_msg_free(m);
        printf("%s no-answer\n", step);
        return;
    }
    if (nng_recvmsg(req, &m, 0) != 0) {
        printf("%s no-answer\n", step);
        return;
    }
    mp_reader r;
    uint64_t origin, rseq;
    uint32_t count, error = 0;
    if (op_batch_open(&r, nng_msg_body(m), nng_msg_len(m), &origin, &rseq, &count) == 0)
        for (uint32_t i = 0; i < count; i++) {
            op a;
            if (op_decode(&r, &a) == 0 && a.kind == OP_ERROR && error == 0)
                error = a.error;
        }
    nng_msg_free(m);
    if (error != 0)
        printf("%s error=%u\n", step, error);
    else
        printf("%s ok\n", step);
    fflush(stdout);
}

/* The flood mode (see the top): a raw REQ socket, whose requests need no
 * answer before the next, with room for one unread answer. */
static int flood(const char *url, int count)
{
    nng_socket req;
    if (nng_req0_open_raw(&req) != 0)
        return 2;
    nng_socket_set_int(req, NNG_OPT_RECVBUF, 1);
    nng_socket_set_ms(req, NNG_OPT_SENDTIMEO, 1000);
    dial(req, url);
    op q = {.kind = OP_MAP_QUERY};
    uint64_t peer = random_id();
    int sent = 0;
    for (int64_t give_up = now_ms() + 20000; sent < count && now_ms() < give_up;) {
        nng_msg *m = op_message(peer, 0, &q);
        if (m == NULL)
            break;
        nng_msg_header_append_u32(m, 0x80000000u | (uint32_t)(sent + 1)); /* the request id raw REQ wants */
        if (nng_sendmsg(req, m, 0) != 0) {
            nng_msg_free(m);
            if (sent > 0)
                break; /* the node pushes back, or hung up */
            continue;  /* not connected yet */
        }
        sent++;
    }
    printf("sent %d\n", sent);
    fflush(stdout);
    usleep((useconds_t)wait_ms * 1000);
    return 0;
}

static int role_of(const char *name)
{
    return strcmp(name, "node") == 0 ? 1 : strcmp(name, "broker") == 0 ? 2 : strcmp(name, "backend") == 0 ? 3 : 0;
}

int main(int argc, char **argv)
{
    int role = 2, i = 1;
    for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
        if (strcmp(argv[i], "--cert") == 0)
            cert = argv[i + 1];
        else if (strcmp(argv[i], "--key") == 0)
            key = argv[i + 1];
        else if (strcmp(argv[i], "--ca") == 0)
            ca = argv[i + 1];
        else if (strcmp(argv[i], "--as") == 0)
            role = role_of(argv[i + 1]);
        else if (strcmp(argv[i], "--wait") == 0)
            wait_ms = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--hello") == 0)
            hello_url = argv[i + 1];
        else
            break;
    }
    if (argc - i < 2 || (cert != NULL) != (key != NULL)) {
        fprintf(stderr, "usage: see tests/links/link_probe.c\n");
        return 2;
    }
    const char *url = argv[i], *cmd = argv[i + 1];
    if (strcmp(cmd, "flood") == 0 && argc - i == 3)
        return flood(url, atoi(argv[i + 2]));
    if (strcmp(cmd, "listen") == 0) {
        uint64_t peer = random_id();
        if (hello_url != NULL) {
            nng_socket req;
            nng_req0_open(&req);
            nng_socket_set_ms(req, NNG_OPT_RECVTIMEO, wait_ms);
            nng_socket_set_ms(req, NNG_OPT_SENDTIMEO, wait_ms);
            dial(req, hello_url);
            op hello = {.kind = OP_HELLO, .epoch = 1, .action = (uint32_t)role};
            send_op(req, "hello", peer, 0, &hello);
        }
        nng_socket dlv;
        nng_req0_open(&dlv);
        nng_socket_set_ms(dlv, NNG_OPT_RECVTIMEO, 700); /* the node answers an idle pull within 500 ms */
        nng_socket_set_ms(dlv, NNG_OPT_SENDTIMEO, 200);
        dial(dlv, url);
        int got = 0;
        for (int64_t end = now_ms() + wait_ms; now_ms() < end;) {
            nng_msg *m;
            if (nng_msg_alloc(&m, 8) != 0)
                break;
            put_be64(nng_msg_body(m), peer);
            if (nng_sendmsg(dlv, m, 0) != 0) {
                nng_msg_free(m);
                usleep(20 * 1000);
                continue;
            }
            if (nng_recvmsg(dlv, &m, 0) == 0) {
                got += nng_msg_len(m) > 8;
                nng_msg_free(m);
            }
        }
        printf("received %d\n", got);
        return 0;
    }
    if (strcmp(cmd, "write") != 0 || argc - i != 4) {
        fprintf(stderr, "usage: see tests/links/link_probe.c\n");
        return 2;
    }
    const char *name = argv[i + 2], *json = argv[i + 3];
    nng_socket req;
    nng_req0_open(&req);
    nng_socket_set_ms(req, NNG_OPT_RECVTIMEO, wait_ms);
    nng_socket_set_ms(req, NNG_OPT_SENDTIMEO, wait_ms);
    dial(req, url);
    uint64_t peer = random_id();
    op hello = {.kind = OP_HELLO, .epoch = 1, .action = (uint32_t)role};
    send_op(req, "hello", peer, 0, &hello);
    strview n = {name, (uint32_t)strlen(name)};
    op write = {.kind = OP_RECORD_WRITE, .name = n, .shard = shard_of(name, strlen(name)), .epoch = 1,
                .session = 1, .has_version = true, .version = -1, .has_data = true,
                .data = {json, (uint32_t)strlen(json)}, .action = RECORD__ACTION__RECORD_CREATEANDUPDATE};
    send_op(req, "write", peer, 1, &write);
    op join = {.kind = OP_PRESENCE_JOIN, .name = n, .shard = shard_of(name, strlen(name)), .epoch = 1};
    send_op(req, "presence", peer, 2, &join);
    nng_close(req);
    return 0;
}
