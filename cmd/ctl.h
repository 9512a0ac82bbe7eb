/* ctl.h - `eddy ctl`, the shell's way into a cluster (see ctl.c). */
#ifndef EDDY_CTL_H
#define EDDY_CTL_H

#include <signal.h>

/* Runs `eddy ctl ...` (argv[1] is "ctl"); returns the process exit code.
 * *stop becomes non-zero on SIGINT/SIGTERM (subscribe and provide end then). */
int cmd_ctl(int argc, char **argv, volatile sig_atomic_t *stop);

#endif
