/* mem.c - allocation wrapper with byte accounting (see mem.h).
 * Each block carries a 16-byte header holding its size so that frees can be
 * accounted; the counter is a relaxed atomic, cheap enough for the hot path. */
#include "mem.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER 16

static atomic_size_t used_bytes;

static void oom(size_t size)
{
    fprintf(stderr, "FATAL out-of-memory size=%zu\n", size);
    abort();
}

void *xmalloc(size_t size)
{
    unsigned char *p = malloc(size + HEADER);
    if (p == NULL)
        oom(size);
    memcpy(p, &size, sizeof(size));
    atomic_fetch_add_explicit(&used_bytes, size, memory_order_relaxed);
    return p + HEADER;
}

void *xcalloc(size_t count, size_t size)
{
    if (size != 0 && count > (SIZE_MAX - HEADER) / size)
        oom(SIZE_MAX);
    void *p = xmalloc(count * size);
    memset(p, 0, count * size);
    return p;
}

void *xrealloc(void *ptr, size_t size)
{
    if (ptr == NULL)
        return xmalloc(size);
    unsigned char *base = (unsigned char *)ptr - HEADER;
    size_t old;
    memcpy(&old, base, sizeof(old));
    unsigned char *p = realloc(base, size + HEADER);
    if (p == NULL)
        oom(size);
    memcpy(p, &size, sizeof(size));
    atomic_fetch_add_explicit(&used_bytes, size, memory_order_relaxed);
    atomic_fetch_sub_explicit(&used_bytes, old, memory_order_relaxed);
    return p + HEADER;
}

char *xstrndup(const char *s, size_t len)
{
    char *p = xmalloc(len + 1);
    if (len > 0) /* s may be NULL when len is 0 */
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

void xfree(void *ptr)
{
    if (ptr == NULL)
        return;
    unsigned char *base = (unsigned char *)ptr - HEADER;
    size_t size;
    memcpy(&size, base, sizeof(size));
    atomic_fetch_sub_explicit(&used_bytes, size, memory_order_relaxed);
    free(base);
}

size_t mem_used(void)
{
    return atomic_load_explicit(&used_bytes, memory_order_relaxed);
}
