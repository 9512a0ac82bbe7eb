/* broker.h - the broker (edge) role, as the `eddy` command starts it:
 * terminates deepstream websocket clients with libwebsockets, keeps sessions
 * and local subscriber tables, translates client messages into operations for
 * the node that owns each name, and fans deliveries from nodes out to local
 * subscribers. Holds no records. The files of broker/ share internal.h; this
 * header is all the rest of eddy sees.
 *
 * Threads: one libwebsockets service thread owns every session, topic and
 * frame. Per node, a link (common/nodelink.h: one batch and one pull in
 * flight, driven by nng's callbacks, and a control thread for HELLOs and
 * heartbeats) hands results to the service thread through one bounded inbound
 * queue and a wake-up. Password and token checks run on a pool of auth
 * workers, webhooks on one thread of their own (libcurl's multi interface). */
#ifndef EDDY_BROKER_H
#define EDDY_BROKER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "local_node.h"

typedef struct broker broker;

/* Creates a broker for cfg (borrowed; must outlive it) connecting to every node
 * in cfg->nodes; with `local` (borrowed; NULL for none), cfg names one node and
 * it is that in-process node. Returns NULL (logged) on failure; *config_error
 * is set when the failure is the configuration's (exit code 2) rather than the
 * system's. */
broker *broker_create(const eddy_config *cfg, const local_node *local, bool *config_error);
/* Waits until every node link delivers, starts listening, and serves until
 * *stop becomes non-zero. Returns 0, or -1 when it could not start. */
int broker_run(broker *b, volatile sig_atomic_t *stop);
/* While serving, a non-zero *flag (set by a SIGHUP handler) is noticed
 * within 200 ms on the service thread: the flag is cleared, the permission
 * rules are compiled again (a file that fails leaves the old ones, logged),
 * then also(ctx) runs (may be NULL: standalone reloads its node there). */
void broker_watch_reload(broker *b, volatile sig_atomic_t *flag, void (*also)(void *ctx), void *ctx);
/* Closes every connection, quiesces the links, frees b. NULL is fine. */
void broker_destroy(broker *b);

/* Hashes password with Argon2id at a cost of ops passes over mem_kib KiB (the
 * file strategy's argon2OpsLimit, argon2MemLimit) into out (at least 128
 * bytes), as `eddy hash` does. Returns 0, or -1 when out of memory. */
int auth_hash_password(const char *password, int64_t ops, int64_t mem_kib, char *out, size_t out_len);

#endif
