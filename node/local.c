/* local.c - the node's side of standalone: the broker in the same process is
 * the local peer. It applies its batches by calling node_local_request on its
 * own thread, and its deliveries wait in an outbox (peers.c) it takes them
 * from, so its operations cross no thread and no socket. Storage completions
 * wake it, and it applies them itself when it takes its deliveries (one
 * thread hop less per durable write). The node's lock serializes its thread
 * and the executor. */
#include "internal.h"

static void storage_done(void *n)
{
    peers_wake_local(node_peers(n));
}

void node_attach_local(node *n, uint64_t peer_id, void (*wake)(void *ctx), void *ctx)
{
    node_lock(n);
    peers_attach_local(node_peers(n), peer_id, wake, ctx);
    persist_set_notify(node_persist(n), storage_done, n);
    node_unlock(n);
}

void node_detach_local(node *n)
{
    peers_detach_local(node_peers(n));
}

nng_msg *node_local_request(node *n, const void *body, size_t len)
{
    node_lock(n);
    peers_local_busy(node_peers(n), true);
    node_settle(n, false); /* completions waiting for the executor go out with this batch's deliveries */
    nng_msg *out = node_apply_batch(n, body, len, 0);
    peers_local_busy(node_peers(n), false);
    node_unlock(n);
    return out;
}

nng_msg *node_local_take(node *n, uint64_t *published)
{
    peers *ps = node_peers(n);
    node_lock(n); /* the outbox and the count move together */
    nng_msg *msg = peers_take_local(ps);
    if (msg == NULL) { /* what storage completions release (writes become visible once durable) */
        peers_local_busy(ps, true);
        node_settle(n, true);
        peers_local_busy(ps, false);
        msg = peers_take_local(ps);
    }
    if (msg == NULL)
        *published = peers_local_published(ps);
    node_unlock(n);
    return msg;
}

void node_tap_deliveries(node *n, void (*tap)(void *ctx, nng_msg *msg), void *ctx)
{
    node_lock(n);
    peers_set_tap(node_peers(n), tap, ctx);
    node_unlock(n);
}
