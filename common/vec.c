/* vec.c - the growth step of VEC (see vec.h). */
#include "vec.h"

#include <stdio.h>
#include <stdlib.h>

void *vec_grow(void *items, uint32_t *cap, size_t need, size_t elem)
{
    size_t c = *cap ? *cap : 4;
    while (c < need)
        c *= 2;
    if (c > UINT32_MAX) {
        fprintf(stderr, "FATAL vec-too-large elements=%zu\n", need);
        abort();
    }
    *cap = (uint32_t)c;
    return xrealloc(items, c * elem);
}
