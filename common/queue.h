/* queue.h - a bounded multi-producer multi-consumer FIFO of pointers, for
 * handing work between threads (nng link callbacks -> broker loop, broker loop ->
 * auth worker). Capacity is fixed at creation; the overflow policy belongs to
 * the producer: queue_push waits at most timeout_ms and then reports full, and
 * the caller drops (and counts) or backs off. Items are owned by the queue
 * between push and pop. */
#ifndef EDDY_QUEUE_H
#define EDDY_QUEUE_H

#include <stddef.h>

typedef struct queue queue;

queue *queue_new(size_t capacity);
/* Frees the queue; items still inside are passed to free_item (may be NULL). */
void queue_free(queue *q, void (*free_item)(void *));
/* Returns 0, or -1 when still full after timeout_ms (0 = do not wait). */
int queue_push(queue *q, void *item, int timeout_ms);
/* The same, and sets *before to how many items were queued ahead of this one
 * (0: the consumer may be idle and needs waking; otherwise it has yet to see
 * the earlier items and will see this one in the same pass). */
int queue_push_counted(queue *q, void *item, int timeout_ms, size_t *before);
/* Returns the oldest item, or NULL when empty after timeout_ms (0 = do not wait). */
void *queue_pop(queue *q, int timeout_ms);
size_t queue_len(queue *q);

#endif
