/*
 * log: one line per event on stderr, where journald picks it up.
 *
 * Under systemd (JOURNAL_STREAM set) each line starts with a "<N>" syslog
 * priority that journald turns into the entry's level; on a terminal it
 * starts with the level's name instead.
 */
#ifndef GATEWAYD_LOG_H
#define GATEWAYD_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/* The longest line written; longer ones are cut.  Room paths can be
 * long, and a backend's stderr is logged in pieces of 2 KiB that may
 * quadruple when escaped. */
#define LOG_LINE_MAX 16384

/* Lines above level are not written; decides whether to use priorities. */
void log_init(enum log_level level);
/* Change the level (a reload). */
void log_set_level(enum log_level level);
int log_enabled(enum log_level level);

#define LOG_PRINTF __attribute__((format(printf, 1, 2)))
void log_error(const char *fmt, ...) LOG_PRINTF;
void log_warn(const char *fmt, ...) LOG_PRINTF;
void log_info(const char *fmt, ...) LOG_PRINTF;
void log_debug(const char *fmt, ...) LOG_PRINTF;

/* Copy at most max bytes of data into out (size >= 4 * max + 4) for
 * quoting what a peer sent in a log line: valid UTF-8 and printable ASCII
 * as they are, other bytes and backslashes as \xNN, and "..." when cut. */
const char *log_quote(char *out, const void *data, size_t len, size_t max);

/* A budget of lines per second, so that a peer flooding the gateway with
 * bad input cannot flood the log too. */
struct log_ratelimit {
	time_t second;
	unsigned lines;			/* logged in this second */
	unsigned long suppressed;	/* since the last line logged */
};

#define LOG_RATELIMIT_LINES 10	/* per second */

/* True when one more line may be logged now; *suppressed is then the count
 * of lines dropped since the last one, for the caller to mention. */
bool log_ratelimit(struct log_ratelimit *rl, unsigned long *suppressed);

#endif
