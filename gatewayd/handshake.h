/*
 * handshake: the WebSocket opening handshake (RFC 6455 section 4.2).
 *
 * Pure: it checks a parsed request and writes responses into caller
 * buffers.  SHA-1 and base64 come from OpenSSL's libcrypto.
 */
#ifndef GATEWAYD_HANDSHAKE_H
#define GATEWAYD_HANDSHAKE_H

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
