/* crash.h - a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) in a
 * server process writes one line and a backtrace to stderr before the process
 * dies of it as it would have, so a crash in production or CI says where. */
#ifndef EDDY_CRASH_H
#define EDDY_CRASH_H

/* Installs the handlers (once, at start, before any thread). Does nothing in
 * a sanitizer build: ASan, UBSan and TSan report crashes themselves. */
void crash_report_install(void);

#endif
