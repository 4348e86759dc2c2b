/*
 * conn: a client connection's transport, plain TCP or TLS.
 *
 * The WebSocket and HTTP state machine of client.c reads, writes, shuts
 * down and closes through these functions alone (as nginx's c->recv and
 * c->send), and does not know which transport it has.  Over TLS they call
 * OpenSSL, non-blocking on the same loop: a read may need the socket to be
 * writable (and a write, readable), which conn_wants says, and OpenSSL
 * may hold decrypted bytes that epoll cannot see, which conn_pending
 * says.  Writes gather the queued output into TLS records of up to 16 KiB
 * rather than one record per frame.
 */
#ifndef GATEWAYD_CONN_H
#define GATEWAYD_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <event2/buffer.h>
#include <openssl/ssl.h>

struct conn {
	int fd;
	SSL *ssl;		/* NULL: plain TCP */
	bool read_wants_write;	/* TLS: the last read waits for writability */
	bool write_wants_read;	/* TLS: the last write waits for readability */
};

/*
 * Read up to len bytes into buf: the count, 0 at the end of the stream
 * (EOF, or TLS's close_notify), or -1 with errno set (EAGAIN: nothing to
 * read now; EPROTO: a TLS error).
 */
ssize_t conn_read(struct conn *c, void *buf, size_t len);

/* True when bytes the peer sent wait inside the transport, where the
 * socket's readiness does not show them. */
bool conn_pending(const struct conn *c);

/*
 * Write the start of out, as much as the socket takes, and drain what
 * went.  last: these are the connection's final bytes (plain TCP sends
 * them with MSG_MORE, so that the FIN that follows shares their
 * segment).  Returns 0, or -1 with errno (EAGAIN: the socket is full).
 */
int conn_write(struct conn *c, struct evbuffer *out, bool last);

/* Send up to len bytes of the file fd from *off (advanced): the count, or
 * -1 with errno (EAGAIN: the socket is full). */
ssize_t conn_sendfile(struct conn *c, int fd, off_t *off, size_t len);

/*
 * Go on with the TLS handshake: 1 when done, 0 when it waits for the
 * socket (read_wants_write says which way), -1 when it failed (*why, a
 * short text for the log).
 */
int conn_handshake(struct conn *c, const char **why);

/* Shut the sending side down (after TLS's close_notify). */
void conn_shutdown(struct conn *c);

/* Close the connection and free its TLS state. */
void conn_close(struct conn *c);

#endif
