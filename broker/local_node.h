/* local_node.h - how a broker reaches a node in the same process
 * (standalone): the node's entry points (node_attach_local and friends in
 * node/node.h) as function pointers, so that broker/ does not include node/.
 * cmd/main.c fills one in. */
#ifndef EDDY_LOCAL_NODE_H
#define EDDY_LOCAL_NODE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <nng/nng.h>

/* Called on the broker's service thread. */
typedef struct local_node {
    void *node;
    void (*attach)(void *node, uint64_t peer_id, void (*wake)(void *ctx), void *ctx);
    nng_msg *(*request)(void *node, const void *body, size_t len); /* reply owned by the caller */
    nng_msg *(*take)(void *node, uint64_t *published);            /* owned by the caller; NULL: none */
    void (*detach)(void *node); /* no wake-up reaches the broker after this returns */
    void (*metrics)(void *node, FILE *f); /* the node's /metrics families (Prometheus text) */
} local_node;

#endif
