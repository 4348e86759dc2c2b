/*
 * handshake: the WebSocket opening handshake (RFC 6455 section 4.2).
 *
 * Pure: it checks a parsed request and writes responses into caller
 * buffers.  SHA-1 and base64 come from OpenSSL's libcrypto.
 */
#ifndef GATEWAYD_HANDSHAKE_H
#define GATEWAYD_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

#include "http_req.h"

#define HANDSHAKE_ACCEPT_LEN 28		/* base64 of a SHA-1 digest */
#define HANDSHAKE_MAX_SUBPROTOCOLS 32

struct handshake {
	char accept[HANDSHAKE_ACCEPT_LEN + 1];	/* Sec-WebSocket-Accept */
	/* the subprotocols the client offers, in its order, pointing into
	 * the request */
	const char *subprotocols[HANDSHAKE_MAX_SUBPROTOCOLS];
	size_t subprotocol_lens[HANDSHAKE_MAX_SUBPROTOCOLS];
	size_t n_subprotocols;
	/* the Sec-WebSocket-Extensions value of the 101 (NUL-terminated,
	 * one line), or NULL for none: set by the caller, never by
	 * handshake_check */
	const char *extensions;
};

/*
 * Check that req is a valid WebSocket opening handshake and fill hs.
 * Returns 0, or the status to answer with *why set to a short reason:
 *   405  the method is not GET
 *   426  no "Upgrade: websocket" (a plain HTTP request), or a
 *        Sec-WebSocket-Version other than 13
 *   400  HTTP/1.0, no Host, no "upgrade" token in Connection, a
 *        Sec-WebSocket-Key that is not 16 bytes in base64, more than
 *        HANDSHAKE_MAX_SUBPROTOCOLS subprotocols, or a malformed one
 * The path is not looked at: matching it to a room is the caller's job.
 */
int handshake_check(const struct http_req *req, struct handshake *hs,
    const char **why);

/* Compute Sec-WebSocket-Accept for a Sec-WebSocket-Key value. */
void handshake_accept_key(const char *key, size_t key_len,
    char out[HANDSHAKE_ACCEPT_LEN + 1]);

/* The index of name among the offered subprotocols, or -1. */
int handshake_find_subprotocol(const struct handshake *hs, const char *name,
    size_t name_len);

/*
 * The index in server_list (NULL-terminated, in the server's order of
 * preference) of the first name the client offered, or -1 when it offered
 * none of them (or server_list is NULL or empty).  Names compare
 * case-sensitively, as subprotocols do.
 */
int handshake_select_subprotocol(const struct handshake *hs,
    const char *const *server_list);

/*
 * Origins (RFC 6454): an allow-list holds entries of three kinds:
 *   "*"                          any origin, "null" included
 *   "scheme://host[:port]"       exactly that origin, compared without
 *                                regard to case
 *   "scheme://" then "*.domain[:port]"
 *                                any origin of that scheme and port whose
 *                                host is one or more labels followed by
 *                                ".domain" (not "domain" itself)
 * No path, query, fragment or user; the port is 1..65535 without leading
 * zeros, and not the default port of http/ws (80) or https/wss (443),
 * which browsers never send.
 */

/* Check one allow-list entry (NUL-terminated): 0, or -1 with *why set. */
int handshake_origin_check(const char *entry, const char **why);

/*
 * Whether the Origin header value origin[0..len) passes the NULL-terminated
 * allow-list origins.  origin NULL means the request had no Origin header:
 * allowed, since only browsers send one and the check protects browsers.
 * An empty (or NULL) list allows every origin.  A value that is not a
 * serialized origin ("null", one with a path) matches "*" alone.  Invalid
 * entries in the list match nothing.
 */
bool handshake_origin_allowed(const char *const *origins, const char *origin,
    size_t len);

/* Write the 101 response into buf; subprotocol may be NULL.  Returns the
 * length, or 0 when it does not fit. */
size_t handshake_response_101(char *buf, size_t size, const struct handshake *hs,
    const char *subprotocol, size_t subprotocol_len);

/*
 * Write an error response with status, its standard reason phrase, a
 * text/plain body made of body and a newline, and "Connection: close".
 * 426 adds "Upgrade: websocket" and "Sec-WebSocket-Version: 13"; 405 adds
 * "Allow: GET".  Returns the length, or 0 when it does not fit.
 */
size_t handshake_response_error(char *buf, size_t size, int status,
    const char *body);

/* The standard reason phrase of an HTTP status ("Forbidden"), or
 * "Error" for one it does not know. */
const char *handshake_status_text(int status);

#endif
