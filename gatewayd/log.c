/*
 * log: see log.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "utf8.h"

static enum log_level log_threshold = LOG_LEVEL_INFO;
static int log_journal;		/* stderr is journald's stream */

void
log_init(enum log_level level)
{
	log_threshold = level;
	log_journal = getenv("JOURNAL_STREAM") != NULL;
}

void
log_set_level(enum log_level level)
{
	log_threshold = level;
}

int
log_enabled(enum log_level level)
{
	return level <= log_threshold;
}

static void
log_write(enum log_level level, const char *fmt, va_list ap)
{
	/* syslog priorities: err, warning, info, debug */
	static const int priority[] = { 3, 4, 6, 7 };
	static const char *const name[] = { "error", "warn", "info", "debug" };
	char line[LOG_LINE_MAX];
	int n;

	if (!log_enabled(level))
		return;
	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n < 0)
		return;
	/* One fprintf per line keeps lines whole on a shared stderr.  The
	 * journal stamps its lines itself; a file needs the time. */
	if (log_journal) {
		fprintf(stderr, "<%d>%s\n", priority[level], line);
	} else {
		struct timespec now;
		struct tm tm;
		char stamp[32];

		clock_gettime(CLOCK_REALTIME, &now);
		gmtime_r(&now.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ldZ gatewayd: %s: %s\n", stamp,
		    now.tv_nsec / 1000000, name[level], line);
	}
}

#define LOG_FUNCTION(fn, level) \
void \
fn(const char *fmt, ...) \
{ \
	va_list ap; \
	va_start(ap, fmt); \
	log_write(level, fmt, ap); \
	va_end(ap); \
}

LOG_FUNCTION(log_error, LOG_LEVEL_ERROR)
LOG_FUNCTION(log_warn, LOG_LEVEL_WARN)
LOG_FUNCTION(log_info, LOG_LEVEL_INFO)
LOG_FUNCTION(log_debug, LOG_LEVEL_DEBUG)

const char *
log_quote(char *out, const void *data, size_t len, size_t max)
{
	const unsigned char *p = data;
	size_t n = len < max ? len : max;
	size_t i = 0, o = 0, seq;

	while (i < n) {
		/* Valid UTF-8 is kept as it is: logs are read by people. */
		seq = utf8_char(p + i, n - i);
		if (seq > 1) {
			memcpy(out + o, p + i, seq);
			o += seq;
			i += seq;
			continue;
		}
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
			out[o++] = (char)p[i];
		else
			o += (size_t)sprintf(out + o, "\\x%02x", p[i]);
		i++;
	}
	if (len > max) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

bool
log_ratelimit(struct log_ratelimit *rl, unsigned long *suppressed)
{
	time_t now = time(NULL);

	if (now != rl->second) {
		rl->second = now;
		rl->lines = 0;
	}
	if (rl->lines >= LOG_RATELIMIT_LINES) {
		rl->suppressed++;
		return false;
	}
	rl->lines++;
	*suppressed = rl->suppressed;
	rl->suppressed = 0;
	return true;
}
