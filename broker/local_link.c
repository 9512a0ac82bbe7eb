/* local_link.c - the broker's link to a node in the same process
 * (standalone): the direct-call path. Operations gather in a batch that is
 * applied by one direct call at the start of the next service-loop round (a
 * zero-delay timer), so everything read from clients in one round travels
 * together, and the node's deliveries are taken from its outbox on this
 * thread. The bytes are those a remote node would exchange; links.c handles
 * the replies and deliveries as it does a remote node's. Not for anything
 * that interprets them. */
#include <string.h>

#include "internal.h"
#include "mem.h"

#define LOCAL_BATCH_MAX 4096 /* operations gathered before a local batch is due at once */

struct local_link {
    const local_node *ln;
    uint64_t broker_id;
    op_batch filling;      /* operations for the next batch */
    uint64_t next_seq;     /* the number that batch will carry */
    msgpack_sbuffer wire;  /* the batch as sent: header, then the operations */
    struct lws_context *ctx; /* while the loop runs */
    bool flush_due;        /* flush_timer is scheduled */
    lws_sorted_usec_list_t flush_timer;
    void (*flush)(void *ctx);
    void *flush_ctx;
};

local_link *local_link_open(const local_node *ln, uint64_t broker_id, const op *hello,
                            void (*flush)(void *ctx), void *flush_ctx, void (*wake)(void *ctx), void *wake_ctx)
{
    local_link *l = xcalloc(1, sizeof(*l));
    l->ln = ln;
    l->broker_id = broker_id;
    l->next_seq = 1;
    l->flush = flush;
    l->flush_ctx = flush_ctx;
    op_batch_init(&l->filling);
    msgpack_sbuffer_init(&l->wire);
    ln->attach(ln->node, broker_id, wake, wake_ctx);
    op_batch_add(&l->filling, hello);
    return l;
}

static void flush_due(lws_sorted_usec_list_t *sul)
{
    local_link *l = lws_container_of(sul, local_link, flush_timer);
    l->flush_due = false;
    l->flush(l->flush_ctx);
}

uint64_t local_link_submit(local_link *l, const op *o)
{
    if (l->filling.count >= LOCAL_BATCH_MAX)
        l->flush(l->flush_ctx);
    op_batch_add(&l->filling, o);
    if (!l->flush_due && l->ctx != NULL) {
        l->flush_due = true;
        lws_sul_schedule(l->ctx, 0, &l->flush_timer, flush_due, 0);
    }
    return l->next_seq;
}

nng_msg *local_link_apply(local_link *l, uint64_t *seq)
{
    if (l->filling.count == 0) {
        *seq = 0;
        return NULL;
    }
    uint8_t hdr[OP_BATCH_HEADER_MAX];
    *seq = l->next_seq++;
    size_t h = op_batch_header(hdr, l->broker_id, *seq, l->filling.count);
    l->wire.size = 0;
    msgpack_sbuffer_write(&l->wire, (const char *)hdr, h);
    if (l->filling.buf.size > 0)
        msgpack_sbuffer_write(&l->wire, l->filling.buf.data, l->filling.buf.size);
    op_batch_reset(&l->filling);
    return l->ln->request(l->ln->node, l->wire.data, l->wire.size);
}

nng_msg *local_link_take(local_link *l, uint64_t *published)
{
    return l->ln->take(l->ln->node, published);
}

void local_link_start(local_link *l, struct lws_context *ctx)
{
    l->ctx = ctx;
}

void local_link_stop(local_link *l)
{
    if (l->flush_due) /* what it would flush goes in local_link_close */
        lws_sul_cancel(&l->flush_timer);
    l->flush_due = false;
    l->ctx = NULL;
}

void local_link_close(local_link *l)
{
    if (l == NULL)
        return;
    /* the uninterests the closes queued reach the node; what it answers is dropped */
    uint64_t seq, published;
    nng_msg *msg = local_link_apply(l, &seq);
    if (msg != NULL)
        nng_msg_free(msg);
    while ((msg = l->ln->take(l->ln->node, &published)) != NULL)
        nng_msg_free(msg);
    l->ln->detach(l->ln->node); /* the broker is about to be freed: no more wake-ups */
    op_batch_destroy(&l->filling);
    msgpack_sbuffer_destroy(&l->wire);
    xfree(l);
}
