/* linktls.h - who may talk on the nng links: TLS with certificates on every
 * link between brokers, nodes and backends (tls+tcp:// addresses), and the
 * role a certificate proves.
 *
 * Every process of a secured cluster holds a certificate and key signed by the
 * cluster's CA (cluster.tls.cert, key, ca). The certificate's subject names its
 * role with one organizational unit: OU=eddy-node, OU=eddy-broker or
 * OU=eddy-backend (the CN is free: it names the process in log lines). A node
 * listens with its node certificate and requires from every peer a
 * certificate of the CA, valid now, carrying one role: anything else (no
 * certificate, another CA, expired, no role, a peer that does not speak TLS)
 * is refused during the handshake, before nng makes a pipe of it, so nothing
 * it sent is read. Brokers and backends dial with theirs and refuse a server
 * whose certificate is not a node's. What a role may do once connected is the
 * node's to decide (node.c); linktls_pipe_role tells it who a pipe is.
 *
 * nng 1.5.2 reports neither the peer's certificate nor why a handshake failed.
 * So TLS here runs on OpenSSL behind nng's TLS engine interface, registered
 * once per process by the first linktls_open (it then serves every nng TLS
 * endpoint of the process): it checks the role during the handshake, logs
 * each refusal with its reason (rate limited), and answers linktls_pipe_role.
 * Not for the websocket port's TLS (libwebsockets). */
#ifndef EDDY_LINKTLS_H
#define EDDY_LINKTLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

/* What a certificate (or a HELLO, on a link without TLS) says a peer is. */
enum link_role {
    LINK_ROLE_NONE = 0,    /* nothing proven: a link without TLS, or the in-process broker */
    LINK_ROLE_NODE = 1,    /* OU=eddy-node */
    LINK_ROLE_BROKER = 2,  /* OU=eddy-broker */
    LINK_ROLE_BACKEND = 3, /* OU=eddy-backend (libeddy, eddy ctl) */
    LINK_ROLE_MAX
};

/* "node", "broker", "backend", or "none". */
const char *link_role_name(int role);

typedef struct linktls linktls;

/* Loads a process's credentials: cert (PEM: the certificate, then any
 * intermediates), key (PEM, unencrypted) and ca (PEM: the CA certificates
 * peers' certificates must chain to, and optionally CRLs, which are then
 * checked). Checks that every file reads, that the key is the certificate's,
 * that the certificate chains to ca and is valid now, and that it carries one
 * role, which must be want (LINK_ROLE_NONE: any). Logs a warning when it
 * expires within 30 days. Returns the credentials (owned by the caller,
 * linktls_close; any thread), or NULL with a one-line reason
 * naming the file in err; NULL with err "" when all three are NULL or empty
 * (no TLS: plain tcp:// links). */
linktls *linktls_open(const char *cert, const char *key, const char *ca, int want, char *err, size_t err_len);
/* Reads t's three files again (SIGHUP): when they pass linktls_open's checks
 * and the certificate carries the same role, links made from now on (dialed,
 * redialed or accepted by the endpoints using t) use them; links up keep their
 * sessions. Else nothing changes. Returns 0 (logged: link-certificates-reloaded),
 * or -1 with the reason in err. NULL t: 0. Any thread. */
int linktls_reload(linktls *t, char *err, size_t err_len);
/* Frees t; endpoints that use it keep their own reference. NULL is fine. */
void linktls_close(linktls *t);
/* The role t's certificate carries. */
int linktls_role(const linktls *t);
/* The certificate's subject CN ("" when none). */
const char *linktls_name(const linktls *t);

/* True for a tls+tcp:// address (also tls+tcp4://, tls+tcp6://). */
bool linktls_url_is_tls(const char *url);
/* True when url can only be reached from this machine: ipc://, inproc://, or
 * a tcp host that is a loopback address or localhost. */
bool linktls_url_local(const char *url);
/* Whether url suits t: a tls+tcp:// address needs credentials, and with
 * credentials every address must be tls+tcp://. Returns 0, or -1 with the
 * reason in err. */
int linktls_check_url(const linktls *t, const char *url, char *err, size_t err_len);

/* Dials a node at url on s in the background (nng retries until it answers),
 * over TLS with t's credentials when url is tls+tcp:// (t may be NULL
 * otherwise); the server must prove a node's role. *d (d may be NULL) gets
 * the dialer, for a caller that may have to replace it (nodelink.c). Returns
 * 0 or an nng error (NNG_EINVAL when url does not suit t, see
 * linktls_check_url). */
int linktls_dial(const linktls *t, nng_socket s, const char *url, nng_dialer *d);
/* Listens on url on s, over TLS when url is tls+tcp:// (then every peer must
 * show a certificate with a role). *l is the listener. Returns 0 or an nng
 * error (NNG_EINVAL when url does not suit t). */
int linktls_listen(const linktls *t, nng_socket s, const char *url, nng_listener *l);

/* Peers this process's TLS listeners refused during the handshake, since start. Any thread. */
uint64_t linktls_refused(void);

/* The role the certificate of pipe p proves: LINK_ROLE_NONE when p has no
 * TLS; -1 when p is gone or unverified. cn (may be NULL) gets its subject CN.
 * Any thread; not from inside an nng TLS callback. */
int linktls_pipe_role(nng_pipe p, char *cn, size_t cn_len);

#endif
