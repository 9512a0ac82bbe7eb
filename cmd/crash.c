/* crash.c - the fatal-signal report (see crash.h). The handler writes with
 * write(2) and backtrace_symbols_fd only (no stdio, no malloc: the heap may be
 * what broke), on an alternate stack (a stack overflow is a SIGSEGV too), then
 * restores the default action and raises the signal again, so the exit status
 * and any core dump are the signal's. Frames are printed as
 * `eddy(+0xOFFSET)`: `addr2line -f -e eddy 0xOFFSET` names the function. */
#include "crash.h"

#include <execinfo.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CRASH_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CRASH_SANITIZED 1
#endif
#endif

#ifndef CRASH_SANITIZED
#define CRASH_FRAMES 64

static const struct {
    int sig;
    const char *line; /* what the report starts with */
} fatal_signals[] = {
    {SIGSEGV, "eddy: fatal signal SIGSEGV (segmentation fault)"},
    {SIGBUS, "eddy: fatal signal SIGBUS (bus error)"},
    {SIGFPE, "eddy: fatal signal SIGFPE (arithmetic exception)"},
    {SIGILL, "eddy: fatal signal SIGILL (illegal instruction)"},
    {SIGABRT, "eddy: fatal signal SIGABRT (aborted)"},
};
#define FATAL_SIGNALS (sizeof(fatal_signals) / sizeof(fatal_signals[0]))

static void put(const char *s)
{
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, s, len);
        if (n <= 0)
            return;
        s += n;
        len -= (size_t)n;
    }
}

static void on_fatal(int sig)
{
    for (size_t i = 0; i < FATAL_SIGNALS; i++)
        if (fatal_signals[i].sig == sig)
            put(fatal_signals[i].line);
    put("; backtrace follows (decode a frame with addr2line -f -e eddy 0xOFFSET)\n");
    void *frames[CRASH_FRAMES];
    int n = backtrace(frames, CRASH_FRAMES);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    signal(sig, SIG_DFL);
    raise(sig);
}
#endif

void crash_report_install(void)
{
#ifndef CRASH_SANITIZED
    static char alt_stack[64 * 1024];
    stack_t ss = {.ss_sp = alt_stack, .ss_size = sizeof(alt_stack)};
    sigaltstack(&ss, NULL);
    void *warm[1];
    backtrace(warm, 1); /* loads libgcc's unwinder now: the handler cannot */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_fatal;
    sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < FATAL_SIGNALS; i++)
        sigaction(fatal_signals[i].sig, &sa, NULL);
#endif
}
