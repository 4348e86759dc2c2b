/*
 * stats: the daemon's counters, kept in one place so that operations
 * tooling has a single thing to expose.  Plain integers: one thread.
 */
#ifndef GATEWAYD_STATS_H
#define GATEWAYD_STATS_H

#include <stdint.h>

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
	uint64_t clients_held;		/* now: clients waiting for a backend */
	uint64_t clients_resumed;	/* handed to a restarted backend */
	uint64_t bytes_held;		/* now: messages waiting for a backend */
	uint64_t records_held;		/* messages that ever waited */
	uint64_t records_discarded;	/* held messages dropped: hold_timeout, or
					 * their client left before the resume */
	uint64_t hold_timeouts;
	uint64_t rooms_paused;		/* now: rooms whose clients are not read */
	uint64_t room_pauses;		/* times a room was paused */
	uint64_t slow_consumers;	/* clients closed with 1008 */
	uint64_t tls_handshakes;	/* done */
	uint64_t tls_resumed;		/* of which resumed sessions */
	uint64_t tls_failures;		/* failed or timed out */
};

extern struct stats stats;

#endif
