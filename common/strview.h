/* strview.h - a borrowed byte string: a pointer and a length, not
 * NUL-terminated. Decoded operations and table lookups pass names this way so
 * that nothing is copied on the hot path; the owner of the bytes outlives the view. */
#ifndef EDDY_STRVIEW_H
#define EDDY_STRVIEW_H

#include <stdint.h>
#include <string.h>

typedef struct strview {
    const char *ptr;
    uint32_t len;
} strview;

/* A view of a C string (NULL gives the empty view). */
static inline strview sv_of(const char *s)
{
    return (strview){s, s != NULL ? (uint32_t)strlen(s) : 0};
}

static inline int sv_eq(strview a, strview b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

#endif
