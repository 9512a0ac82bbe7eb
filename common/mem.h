/* mem.h - the one allocation wrapper: byte accounting, abort on out-of-memory.
 *
 * Internal structures use these and abort when the system is out of memory
 * (there is no useful recovery for a server's own bookkeeping). Anything a
 * client can make us allocate is checked against a configured limit *before*
 * calling these (see config.h: maxMessageSize, session queue bounds).
 * Not for memory owned by other libraries (nng_msg, protobuf-c, jansson). */
#ifndef EDDY_MEM_H
#define EDDY_MEM_H

#include <stddef.h>
#include <stdint.h>

/* Returns new memory owned by the caller; never NULL. */
void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
/* Takes ownership of ptr (may be NULL) and returns the resized block. */
void *xrealloc(void *ptr, size_t size);
/* Returns a NUL-terminated copy owned by the caller. */
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t len);
/* Frees memory from the functions above; NULL is fine. */
void xfree(void *ptr);
/* Bytes currently allocated through this wrapper (all threads). */
size_t mem_used(void);

#endif
