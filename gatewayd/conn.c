/*
 * conn: see conn.h.
 */
#include <errno.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/err.h>

#include "conn.h"

/* The most plaintext one TLS record carries. */
#define CONN_RECORD_MAX 16384

/* Output gathered into one record when the queue's start is in pieces. */
static unsigned char conn_record[CONN_RECORD_MAX];

/* Map an OpenSSL result to errno; returns -1, or 0 for a clean end. */
static int
conn_tls_error(struct conn *c, int ret, bool reading)
{
	int err = SSL_get_error(c->ssl, ret);

	switch (err) {
	case SSL_ERROR_WANT_READ:
		if (reading)
			c->read_wants_write = false;
		else
			c->write_wants_read = true;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		if (reading)
			c->read_wants_write = true;
		else
			c->write_wants_read = false;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		/* errno says what the socket did; none is an EOF that
		 * SSL_OP_IGNORE_UNEXPECTED_EOF did not catch. */
		if (errno == 0)
			return 0;
		ERR_clear_error();
		return -1;
	default:
		ERR_clear_error();
		errno = EPROTO;
		return -1;
	}
}

ssize_t
conn_read(struct conn *c, void *buf, size_t len)
{
	size_t got = 0, n;
	int ret;

	if (c->ssl == NULL)
		return recv(c->fd, buf, len, 0);
	/* Record by record until buf is full or nothing is left: one
	 * callback reads what one plain recv would. */
	while (got < len) {
		errno = 0;
		ret = SSL_read_ex(c->ssl, (char *)buf + got, len - got, &n);
		if (ret <= 0) {
			if (got > 0) {
				/* The error, if any, comes again next time. */
				if (SSL_get_error(c->ssl, ret) == SSL_ERROR_WANT_WRITE)
					c->read_wants_write = true;
				ERR_clear_error();
				break;
			}
			return conn_tls_error(c, ret, true);
		}
		c->read_wants_write = false;
		got += n;
	}
	return (ssize_t)got;
}

bool
conn_pending(const struct conn *c)
{
	return c->ssl != NULL && SSL_has_pending(c->ssl);
}

static int
conn_write_plain(struct conn *c, struct evbuffer *out, bool last)
{
	struct evbuffer_iovec vec[16];
	struct iovec iov[16];
	struct msghdr msg;
	ssize_t n;
	int i, count;

	if (!last)
		return evbuffer_write(out, c->fd) == -1 ? -1 : 0;
	count = evbuffer_peek(out, -1, NULL, vec, 16);
	if (count > 16)
		count = 16;
	for (i = 0; i < count; i++) {
		iov[i].iov_base = vec[i].iov_base;
		iov[i].iov_len = vec[i].iov_len;
	}
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = (size_t)count;
	n = sendmsg(c->fd, &msg, MSG_MORE | MSG_NOSIGNAL);
	if (n > 0)
		evbuffer_drain(out, (size_t)n);
	return n < 0 ? -1 : 0;
}

/* Write records of up to CONN_RECORD_MAX bytes until the queue is empty
 * or the socket full.  A record is gathered from the queue's first
 * chains; a retried write passes at least the bytes of the one before,
 * as OpenSSL asks (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER lets them move). */
static int
conn_write_tls(struct conn *c, struct evbuffer *out)
{
	struct evbuffer_iovec vec[32];
	size_t len, n, written;
	const void *data;
	int count, i, ret;

	while ((len = evbuffer_get_length(out)) > 0) {
		if (len > CONN_RECORD_MAX)
			len = CONN_RECORD_MAX;
		count = evbuffer_peek(out, (ev_ssize_t)len, NULL, vec, 32);
		if (count >= 1 && vec[0].iov_len >= len) {
			data = vec[0].iov_base;
		} else {
			for (i = 0, n = 0; i < count && i < 32 && n < len; i++) {
				size_t k = vec[i].iov_len < len - n ?
				    vec[i].iov_len : len - n;

				memcpy(conn_record + n, vec[i].iov_base, k);
				n += k;
			}
			len = n;
			data = conn_record;
		}
		errno = 0;
		ret = SSL_write_ex(c->ssl, data, len, &written);
		if (ret <= 0) {
			if (conn_tls_error(c, ret, false) == 0)
				errno = EPIPE;
			return -1;
		}
		c->write_wants_read = false;
		evbuffer_drain(out, written);
	}
	return 0;
}

int
conn_write(struct conn *c, struct evbuffer *out, bool last)
{
	return c->ssl == NULL ? conn_write_plain(c, out, last) :
	    conn_write_tls(c, out);
}

ssize_t
conn_sendfile(struct conn *c, int fd, off_t *off, size_t len)
{
	size_t written;
	ssize_t n;
	int ret;

	if (c->ssl == NULL)
		return sendfile(c->fd, fd, off, len);
	/* No kernel TLS here: a record at a time through OpenSSL. */
	if (len > CONN_RECORD_MAX)
		len = CONN_RECORD_MAX;
	n = pread(fd, conn_record, len, *off);
	if (n <= 0)
		return n == 0 ? (errno = EIO, -1) : -1;
	errno = 0;
	ret = SSL_write_ex(c->ssl, conn_record, (size_t)n, &written);
	if (ret <= 0) {
		if (conn_tls_error(c, ret, false) == 0)
			errno = EPIPE;
		return -1;
	}
	*off += (off_t)written;
	return (ssize_t)written;
}

int
conn_handshake(struct conn *c, const char **why)
{
	unsigned long e;
	int ret;

	errno = 0;
	ret = SSL_do_handshake(c->ssl);
	if (ret == 1)
		return 1;
	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		c->read_wants_write = false;
		return 0;
	case SSL_ERROR_WANT_WRITE:
		c->read_wants_write = true;
		return 0;
	case SSL_ERROR_SYSCALL:
		*why = errno != 0 ? strerror(errno) : "connection closed";
		break;
	default:
		e = ERR_peek_last_error();
		*why = e != 0 ? ERR_reason_error_string(e) : "TLS error";
		if (*why == NULL)
			*why = "TLS error";
		break;
	}
	ERR_clear_error();
	return -1;
}

void
conn_shutdown(struct conn *c)
{
	if (c->ssl != NULL && SSL_is_init_finished(c->ssl)) {
		/* close_notify, best effort: the socket may be full. */
		(void)SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	shutdown(c->fd, SHUT_WR);
}

void
conn_close(struct conn *c)
{
	if (c->ssl != NULL) {
		/* SSL_free drops the session from the cache of resumable
		 * ones unless the connection was shut down: but a client
		 * that closes first (most do) has ended it orderly too.  A
		 * connection that failed was dropped from the cache when
		 * its fatal alert went. */
		if (SSL_is_init_finished(c->ssl))
			SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN |
			    SSL_RECEIVED_SHUTDOWN);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd != -1) {
		close(c->fd);
		c->fd = -1;
	}
}
