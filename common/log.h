/* log.h - one line per event on stderr: "<ISO time> <LEVEL> <event> key=value ...".
 * The level is checked before any formatting happens, so a disabled debug line
 * costs one comparison. Event names are stable (tests and operators grep them). */
#ifndef EDDY_LOG_H
#define EDDY_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_NONE };

extern enum log_level log_threshold;

/* Parses "debug|info|warn|error"; returns -1 when unknown. */
int log_level_parse(const char *s);
void log_emit(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOG_AT(level, event, ...)                                              \
    do {                                                                       \
        if ((level) >= log_threshold)                                          \
            log_emit((level), (event), __VA_ARGS__);                           \
    } while (0)
#define log_debug(event, ...) LOG_AT(LOG_DEBUG, event, __VA_ARGS__)
#define log_info(event, ...) LOG_AT(LOG_INFO, event, __VA_ARGS__)
#define log_warn(event, ...) LOG_AT(LOG_WARN, event, __VA_ARGS__)
#define log_error(event, ...) LOG_AT(LOG_ERROR, event, __VA_ARGS__)

/* A line a client can make repeat without end (a refused connection, message
 * or subscription): written the first time, then at most once per period,
 * each saying how many it stood for. Not thread-safe (one per thread). */
typedef struct log_every {
    int64_t last_ms; /* when the last line was written; 0: never */
    uint64_t held;   /* events since then that wrote no line */
} log_every;

/* Counts one event at now_ms: true when its line is due now, with *held the
 * events since the last line that wrote none (the caller writes the line). */
bool log_every_due(log_every *e, int64_t now_ms, int64_t period_ms, uint64_t *held);

#endif
