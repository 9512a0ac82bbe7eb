/* util.h - small helpers shared by every role: monotonic and wall time, random ids,
 * nng address formatting and a close that cannot hang shutdown. */
#ifndef EDDY_UTIL_H
#define EDDY_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <nng/nng.h>

/* Milliseconds on the monotonic clock. */
int64_t now_ms(void);
/* Milliseconds since the Unix epoch (the wall clock: a rule's `now`). */
int64_t wall_ms(void);
/* True when deadline is at or before now; otherwise *next becomes the
 * earlier of itself and deadline (the next time to look). */
static inline bool deadline_passed(int64_t deadline, int64_t now, int64_t *next)
{
    if (deadline <= now)
        return true;
    if (deadline < *next)
        *next = deadline;
    return false;
}
/* *ts becomes ms milliseconds from now on clock (an absolute time for
 * pthread_cond_timedwait on a condition of that clock). */
void timespec_after(struct timespec *ts, clockid_t clock, int ms);
/* A random non-zero 64-bit id (getrandom). */
uint64_t random_id(void);
/* Writes the address a listener is really bound to (tcp and tls+tcp port 0 resolved) into
 * out; for other transports the configured url is copied. */
void nng_bound_url(nng_listener l, const char *url, char *out, size_t out_len);
/* Closes sock, giving up after timeout_ms: nng 1.5.2 can hang forever in
 * nng_close (DEPENDENCIES.md pitfall 1). Callers quiesce first; this is the
 * last line of defence so that SIGTERM always ends the process. Returns 0 when
 * closed, -1 when abandoned (logged). */
int nng_close_bounded(nng_socket sock, const char *what, int timeout_ms);
/* Big-endian 64-bit store/load, used for delivery topic prefixes. */
void put_be64(uint8_t *p, uint64_t v);
uint64_t get_be64(const uint8_t *p);

#endif
