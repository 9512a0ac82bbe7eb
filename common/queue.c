/* queue.c - bounded pointer FIFO with a mutex and two condition variables. */
#include "queue.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "mem.h"
#include "util.h"

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    size_t cap, head, len;
    void **items;
};

queue *queue_new(size_t capacity)
{
    queue *q = xcalloc(1, sizeof(*q));
    pthread_mutex_init(&q->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&q->not_empty, &attr);
    pthread_cond_init(&q->not_full, &attr);
    pthread_condattr_destroy(&attr);
    q->cap = capacity;
    q->items = xcalloc(capacity, sizeof(void *));
    return q;
}

void queue_free(queue *q, void (*free_item)(void *))
{
    if (q == NULL)
        return;
    for (size_t i = 0; i < q->len; i++)
        if (free_item != NULL)
            free_item(q->items[(q->head + i) % q->cap]);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    xfree(q->items);
    xfree(q);
}

int queue_push(queue *q, void *item, int timeout_ms)
{
    return queue_push_counted(q, item, timeout_ms, NULL);
}

int queue_push_counted(queue *q, void *item, int timeout_ms, size_t *before)
{
    struct timespec ts;
    timespec_after(&ts, CLOCK_MONOTONIC, timeout_ms);
    pthread_mutex_lock(&q->lock);
    while (q->len == q->cap) {
        if (timeout_ms <= 0 || pthread_cond_timedwait(&q->not_full, &q->lock, &ts) == ETIMEDOUT) {
            if (q->len < q->cap)
                break;
            pthread_mutex_unlock(&q->lock);
            return -1;
        }
    }
    if (before != NULL)
        *before = q->len;
    q->items[(q->head + q->len) % q->cap] = item;
    q->len++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

void *queue_pop(queue *q, int timeout_ms)
{
    struct timespec ts;
    timespec_after(&ts, CLOCK_MONOTONIC, timeout_ms);
    pthread_mutex_lock(&q->lock);
    while (q->len == 0) {
        if (timeout_ms <= 0 || pthread_cond_timedwait(&q->not_empty, &q->lock, &ts) == ETIMEDOUT) {
            if (q->len > 0)
                break;
            pthread_mutex_unlock(&q->lock);
            return NULL;
        }
    }
    void *item = q->items[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->lock);
    return item;
}

size_t queue_len(queue *q)
{
    pthread_mutex_lock(&q->lock);
    size_t n = q->len;
    pthread_mutex_unlock(&q->lock);
    return n;
}
