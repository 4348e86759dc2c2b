/*
 * stats: the daemon's counters, kept in one place so that operations
 * tooling has a single thing to expose.  Plain integers: one thread.
 * Only counters live here: what is now (clients, rooms, held messages)
 * is counted from the live state when asked (admin.c).
 */
#ifndef GATEWAYD_STATS_H
#define GATEWAYD_STATS_H

#include <stdint.h>

/* close_codes: 1000..1015 as themselves, then three buckets. */
#define STATS_CLOSE_CODES 19
#define STATS_CLOSE_3XXX 16
#define STATS_CLOSE_4XXX 17
#define STATS_CLOSE_OTHER 18

/* The index of a close code in close_codes. */
static inline unsigned
stats_close_index(unsigned code)
{
	if (code >= 1000 && code <= 1015)
		return code - 1000;
	if (code >= 3000 && code <= 3999)
		return STATS_CLOSE_3XXX;
	if (code >= 4000 && code <= 4999)
		return STATS_CLOSE_4XXX;
	return STATS_CLOSE_OTHER;
}

struct stats {
	uint64_t connections_accepted;
	uint64_t connections_refused;	/* 503 or 429 before any state */
	uint64_t handshakes_failed;	/* answered with an HTTP error */
	uint64_t clients_opened;	/* 101 sent */
	uint64_t clients_closed;
	uint64_t messages_in;		/* client -> backend */
	uint64_t messages_out;		/* frames queued to clients */
	uint64_t protocol_errors;	/* clients failed with 1002/1007/1009 */
	uint64_t backends_started;
	uint64_t backends_failed;	/* unreachable, exited, hung up */
	uint64_t records_malformed;	/* backend lines that were not commands */
	uint64_t records_too_long;
	uint64_t commands_dropped;	/* naming a client that is gone */
	uint64_t authorize_timeouts;
	uint64_t backend_restarts;	/* backends started again after a failure */
	uint64_t clients_resumed;	/* handed to a restarted backend */
	uint64_t records_held;		/* messages that ever waited */
	uint64_t records_discarded;	/* held records dropped: hold_timeout */
	uint64_t records_redelivered;	/* given again to a new backend */
	uint64_t hold_timeouts;
	uint64_t room_pauses;		/* times a room was paused */
	uint64_t slow_consumers;	/* clients closed with 1008 */
	uint64_t tls_handshakes;	/* done */
	uint64_t tls_resumed;		/* of which resumed sessions */
	uint64_t tls_failures;		/* failed or timed out */
	uint64_t bytes_in;		/* read from clients' sockets */
	uint64_t bytes_out;		/* written to them */
	uint64_t http_status[600];	/* error answers, by status (400..599) */
	uint64_t close_codes[STATS_CLOSE_CODES];	/* closes, by code:
					 * 1000..1015, then 3000-3999, 4000-4999
					 * and anything else */
};

extern struct stats stats;

#endif
