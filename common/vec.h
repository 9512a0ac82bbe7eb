/* vec.h - the one small growable array. VEC(T) declares {v, n, cap}; a zeroed
 * VEC is empty and owns nothing. vec_push appends (the capacity doubles, from
 * 4; out of memory aborts, as xrealloc does), vec_free releases. Elements are
 * values: a VEC of pointers does not own what they point to.
 *
 * Used for every "hand-grown" array of eddy (holders of a name, names
 * collected while walking a dict, listeners, RPC attempts). Not for rings or
 * byte buffers that have their own bound (session queues, reassembly). */
#ifndef EDDY_VEC_H
#define EDDY_VEC_H

#include <stddef.h>
#include <stdint.h>

#include "mem.h"

#define VEC(T)                                                                                     \
    struct {                                                                                       \
        T *v;                                                                                      \
        uint32_t n, cap;                                                                           \
    }

/* Returns items (owned; may be NULL) grown to hold at least `need` elements of
 * elem bytes; *cap is updated. The caller keeps the returned pointer. */
void *vec_grow(void *items, uint32_t *cap, size_t need, size_t elem);

/* Makes room for `want` elements in all. */
#define vec_reserve(vp, want)                                                                      \
    ((vp)->cap < (want) ? (void)((vp)->v = vec_grow((vp)->v, &(vp)->cap, (want), sizeof(*(vp)->v)))  \
                        : (void)0)
/* Appends x. */
#define vec_push(vp, x) (vec_reserve((vp), (size_t)(vp)->n + 1), (vp)->v[(vp)->n++] = (x))
/* Removes element i by moving the last one into its place (order not kept). */
#define vec_swap_remove(vp, i) ((vp)->v[(i)] = (vp)->v[--(vp)->n])
/* Frees the elements' storage; the VEC is empty again. */
#define vec_free(vp) (xfree((vp)->v), (vp)->v = NULL, (vp)->n = (vp)->cap = 0)

#endif
