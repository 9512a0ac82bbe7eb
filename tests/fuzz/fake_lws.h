/* fake_lws.h - the dozen libwebsockets calls broker/session.c and
 * broker/local_link.c make, faked for fuzz_frame so that the real broker
 * modules run without a socket or an lws context: timers go on a list the
 * harness fires by hand (one "loop turn" at a time), writes are checked and
 * dropped, and a connection's close requests are remembered for the harness
 * to carry out as lws would (the CLOSED callback). Not for anything else:
 * the harness links no libwebsockets at all, so a new lws call in those files
 * shows up as a link error here. */
#ifndef EDDY_FUZZ_FAKE_LWS_H
#define EDDY_FUZZ_FAKE_LWS_H

#include <stdbool.h>
#include <stddef.h>

#include <libwebsockets.h>

/* One fake connection: what session.c calls `struct lws *`. */
typedef struct fake_wsi {
    void *session;      /* the harness's session for it */
    bool first, final;  /* the fragment being received */
    bool binary;
    bool writable;      /* lws_callback_on_writable was asked */
    bool kill;          /* lws_set_timeout(..., LWS_TO_KILL_ASYNC) */
    int close_status;   /* lws_close_reason or a close frame written, 0: none */
} fake_wsi;

/* The fake context every connection belongs to. */
struct lws_context *fake_context(void);
/* Fires, once each, the timers due now (delay 0) until none is left; returns
 * how many ran. With `all`, the timers with a delay fire too (once each). */
int fake_fire_timers(bool all);
/* True when a zero-delay timer is waiting. */
bool fake_timers_due(void);
/* Frames written so far, and the bytes. */
extern unsigned long fake_frames_written;
extern unsigned long long fake_bytes_written;

#endif
