/*
 * floor_server: the benchmark's floor, a yardstick and not a competitor.
 * It makes the system calls any WebSocket server on Linux must make, as
 * few of them as it can, and does next to nothing else: the CPU it spends
 * per handshake or per round trip is what the kernel costs every server,
 * and gatewayd's cost above it is gatewayd's own.
 *
 *   floor_server --port PORT      listens on 127.0.0.1:PORT
 *
 * One thread, one level-triggered epoll loop:
 *
 *   - accept4() until EAGAIN; TCP_NODELAY is set once, on the listening
 *     socket, whose accepted sockets inherit it on Linux;
 *   - one recv() per readiness into a static buffer; only a partial head
 *     or frame is kept in the connection's own buffer, so that an idle
 *     connection holds no buffer at all;
 *   - the replies to one read go out in one send(); what the socket does
 *     not take waits for EPOLLOUT, and the input waits with it;
 *   - the 101 answers the Sec-WebSocket-Key; text, binary and continuation
 *     frames come back unmasked with the same first byte; a ping gets a
 *     pong; a close frame gets a close frame with its code, sent with
 *     MSG_MORE and followed at once by close(), so that the frame and the
 *     FIN share a segment, as gatewayd does.
 *
 * What it deliberately omits: any check of the request beyond finding the
 * key (method, path, version, Upgrade, Connection, Sec-WebSocket-Version),
 * UTF-8 validation, the rules on control frames, limits on connections or
 * output, timeouts, logging.  What it cannot parse closes the connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

/* Sizes and limits, in one place: past a limit the connection closes. */
#define FLOOR_READ_SIZE	(256 * 1024)	/* one recv() */
#define FLOOR_HEAD_MAX	4096		/* the longest request head */
#define FLOOR_FRAME_MAX	((uint64_t)16 << 20)	/* the longest payload */
#define FLOOR_KEY_MAX	64		/* the longest key; a valid one: 24 */
#define FLOOR_EVENTS	256		/* events per epoll_wait() */
#define FLOOR_GUID		"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct floor_buf {
	unsigned char *data;
	size_t len;
	size_t cap;
};

struct floor_conn {
	int fd;
	int upgraded;		/* the 101 is written */
	int closing;		/* close answered: close once written */
	struct floor_buf in;	/* a partial head or frame */
	struct floor_buf out;	/* what the socket did not take */
};

static unsigned char floor_input[FLOOR_READ_SIZE];
static struct floor_buf floor_reply;	/* the replies to one read */
static int floor_epoll;

static int
floor_append(struct floor_buf *b, const void *data, size_t n)
{
	size_t cap = b->cap ? b->cap : 4096;
	unsigned char *p;

	while (cap - b->len < n)
		cap *= 2;
	if (cap != b->cap) {
		if ((p = realloc(b->data, cap)) == NULL)
			return -1;
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, n);
	b->len += n;
	return 0;
}

static void
floor_release(struct floor_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* close() also takes the socket out of the epoll set. */
static void
floor_close(struct floor_conn *c)
{
	close(c->fd);
	floor_release(&c->in);
	floor_release(&c->out);
	free(c);
}

/* Wait for EPOLLIN or for EPOLLOUT, never both: input waits while
 * output does. */
static int
floor_watch(struct floor_conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	return epoll_ctl(floor_epoll, EPOLL_CTL_MOD, c->fd, &ev);
}

/*
 * Answer a complete request head at p with the 101.  Returns the head's
 * length, 0 while it is incomplete, -1 when it has no usable key or is
 * too long.
 */
static ssize_t
floor_handshake(struct floor_conn *c, const char *p, size_t len)
{
	static const char name[] = "Sec-WebSocket-Key:";
	char text[FLOOR_KEY_MAX + sizeof(FLOOR_GUID)], reply[160];
	unsigned char md[SHA_DIGEST_LENGTH], value[29];	/* base64: 28 */
	const char *end, *line, *eol, *key = NULL, *key_end = NULL;
	int n;

	if ((end = memmem(p, len, "\r\n\r\n", 4)) == NULL)
		return len > FLOOR_HEAD_MAX ? -1 : 0;
	for (line = p; line < end; line = eol + 2) {
		eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
		if ((size_t)(eol - line) >= sizeof(name) - 1 &&
		    strncasecmp(line, name, sizeof(name) - 1) == 0) {
			key = line + sizeof(name) - 1;
			key_end = eol;
		}
	}
	if (key == NULL)
		return -1;
	while (key < key_end && (*key == ' ' || *key == '\t'))
		key++;
	while (key_end > key && (key_end[-1] == ' ' || key_end[-1] == '\t'))
		key_end--;
	if (key == key_end || key_end - key > FLOOR_KEY_MAX)
		return -1;
	memcpy(text, key, (size_t)(key_end - key));
	memcpy(text + (key_end - key), FLOOR_GUID, sizeof(FLOOR_GUID) - 1);
	SHA1((unsigned char *)text,
	    (size_t)(key_end - key) + sizeof(FLOOR_GUID) - 1, md);
	EVP_EncodeBlock(value, md, sizeof(md));
	n = snprintf(reply, sizeof(reply),
	    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
	    (char *)value);
	if (floor_append(&floor_reply, reply, (size_t)n) == -1)
		return -1;
	c->upgraded = 1;
	return end + 4 - p;
}

/*
 * Answer one client frame at p.  Returns its length, 0 while it is
 * incomplete, -1 when it is unmasked, too long or of an unknown opcode.
 */
static ssize_t
floor_frame(struct floor_conn *c, const unsigned char *p, size_t len)
{
	unsigned char head[10], first, *dst;
	const unsigned char *mask;
	uint64_t plen;
	size_t hlen = 2, n, i;

	if (len < 2)
		return 0;
	if ((p[1] & 0x80) == 0)
		return -1;		/* clients must mask */
	plen = p[1] & 0x7f;
	if (plen == 126) {
		if (len < 4)
			return 0;
		plen = (uint64_t)p[2] << 8 | p[3];
		hlen = 4;
	} else if (plen == 127) {
		if (len < 10)
			return 0;
		for (plen = 0, i = 2; i < 10; i++)
			plen = plen << 8 | p[i];
		hlen = 10;
	}
	if (plen > FLOOR_FRAME_MAX)
		return -1;
	if (len < hlen + 4 + plen)
		return 0;
	mask = p + hlen;
	n = (size_t)plen;
	switch (p[0] & 0x0f) {
	case 0x0: case 0x1: case 0x2:	/* continuation, text, binary */
		first = p[0] & 0x8f;
		break;
	case 0x8:			/* close: the code back, or nothing */
		if (n == 1)
			return -1;
		first = 0x88;
		n = n > 2 ? 2 : n;
		c->closing = 1;
		break;
	case 0x9:			/* ping */
		first = 0x8a;
		break;
	case 0xa:			/* pong */
		return (ssize_t)(hlen + 4 + plen);
	default:
		return -1;
	}

	/* The reply: an unmasked frame, the payload unmasked into it. */
	head[0] = first;
	if (n < 126) {
		head[1] = (unsigned char)n;
		i = 2;
	} else if (n <= 0xffff) {
		head[1] = 126;
		head[2] = (unsigned char)(n >> 8);
		head[3] = (unsigned char)n;
		i = 4;
	} else {
		head[1] = 127;
		for (i = 2; i < 10; i++)
			head[i] = (unsigned char)((uint64_t)n >> 8 * (9 - i));
	}
	if (floor_append(&floor_reply, head, i) == -1 ||
	    floor_append(&floor_reply, mask + 4, n) == -1)
		return -1;
	dst = floor_reply.data + floor_reply.len - n;
	for (i = 0; i < n; i++)
		dst[i] ^= mask[i & 3];
	return (ssize_t)(hlen + 4 + plen);
}

/* Answer what p holds, up to a close frame.  Returns the bytes used. */
static ssize_t
floor_answer(struct floor_conn *c, const unsigned char *p, size_t len)
{
	size_t used = 0;
	ssize_t n;

	while (!c->closing) {
		n = c->upgraded ? floor_frame(c, p + used, len - used) :
		    floor_handshake(c, (const char *)p + used, len - used);
		if (n == -1)
			return -1;
		if (n == 0)
			break;
		used += (size_t)n;
	}
	return (ssize_t)used;
}

/* Returns the bytes the socket took (0 when it took none), or -1.  After
 * the close frame, MSG_MORE holds a short tail for the close() to send
 * with the FIN. */
static ssize_t
floor_send(struct floor_conn *c, const unsigned char *p, size_t len)
{
	ssize_t n;

	if (len == 0)
		return 0;
	do
		n = send(c->fd, p, len,
		    MSG_NOSIGNAL | (c->closing ? MSG_MORE : 0));
	while (n == -1 && errno == EINTR);
	if (n == -1 && errno == EAGAIN)
		return 0;
	return n;
}

static void
floor_readable(struct floor_conn *c)
{
	const unsigned char *p;
	size_t len, rest;
	ssize_t n, used;
	int kept = c->in.len > 0;

	n = recv(c->fd, floor_input, sizeof(floor_input), 0);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		floor_close(c);
		return;
	}
	/* A partial head or frame is completed in the connection's buffer;
	 * anything else is answered where it was read. */
	if (kept) {
		if (floor_append(&c->in, floor_input, (size_t)n) == -1) {
			floor_close(c);
			return;
		}
		p = c->in.data;
		len = c->in.len;
	} else {
		p = floor_input;
		len = (size_t)n;
	}
	floor_reply.len = 0;
	if ((used = floor_answer(c, p, len)) == -1) {
		floor_close(c);
		return;
	}
	rest = len - (size_t)used;
	if (kept) {
		memmove(c->in.data, c->in.data + used, rest);
		if ((c->in.len = rest) == 0)
			floor_release(&c->in);
	} else if (rest > 0 && floor_append(&c->in, p + used, rest) == -1) {
		floor_close(c);
		return;
	}

	n = floor_send(c, floor_reply.data, floor_reply.len);
	if (n == -1) {
		floor_close(c);
	} else if ((size_t)n < floor_reply.len) {
		if (floor_append(&c->out, floor_reply.data + n,
		    floor_reply.len - (size_t)n) == -1 ||
		    floor_watch(c, EPOLLOUT) == -1)
			floor_close(c);
	} else if (c->closing) {
		floor_close(c);
	}
}

static void
floor_writable(struct floor_conn *c)
{
	ssize_t n;

	if ((n = floor_send(c, c->out.data, c->out.len)) == -1) {
		floor_close(c);
		return;
	}
	memmove(c->out.data, c->out.data + n, c->out.len - (size_t)n);
	if ((c->out.len -= (size_t)n) > 0)
		return;
	floor_release(&c->out);
	if (c->closing || floor_watch(c, EPOLLIN) == -1)
		floor_close(c);
}

static void
floor_accept(int lfd)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct floor_conn *c;
	int fd;

	for (;;) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				perror("floor_server: accept4");
			return;
		}
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			close(fd);
			continue;
		}
		c->fd = fd;
		ev.data.ptr = c;
		if (epoll_ctl(floor_epoll, EPOLL_CTL_ADD, fd, &ev) == -1)
			floor_close(c);
	}
}

int
main(int argc, char **argv)
{
	struct epoll_event events[FLOOR_EVENTS];
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct floor_conn *c;
	unsigned char md[SHA_DIGEST_LENGTH];
	char *end = NULL;
	long port = 0;
	int lfd, one = 1, i, n;

	if (argc == 3 && strcmp(argv[1], "--port") == 0)
		port = strtol(argv[2], &end, 10);
	if (port < 1 || port > 65535 || *end != '\0') {
		fprintf(stderr, "usage: floor_server --port PORT\n");
		return 2;
	}
	/* OpenSSL sets up its providers at the first digest, some 2 MB:
	 * before listening, so that the idle scenario does not count them
	 * as the connections' memory. */
	SHA1((const unsigned char *)FLOOR_GUID, sizeof(FLOOR_GUID) - 1, md);
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd == -1 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(lfd, SOMAXCONN) == -1 ||
	    (floor_epoll = epoll_create1(EPOLL_CLOEXEC)) == -1 ||
	    epoll_ctl(floor_epoll, EPOLL_CTL_ADD, lfd, &ev) == -1) {
		perror("floor_server: listen");
		return 1;
	}
	for (;;) {
		n = epoll_wait(floor_epoll, events, FLOOR_EVENTS, -1);
		if (n == -1 && errno != EINTR) {
			perror("floor_server: epoll_wait");
			return 1;
		}
		/* epoll_wait() reports a socket once per call, so a connection
		 * freed while handling its event is not met again below. */
		for (i = 0; i < n; i++) {
			if ((c = events[i].data.ptr) == NULL)
				floor_accept(lfd);
			else if (c->out.len > 0)
				floor_writable(c);
			else
				floor_readable(c);
		}
	}
}
