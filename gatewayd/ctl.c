/*
 * ctl: "gatewayd tap", "gatewayd inject" and "gatewayd upgrade": the
 * admin listener from a shell.
 *
 *   gatewayd tap [-c FILE | -a ADMIN] ROOM
 *   gatewayd inject [-c FILE | -a ADMIN] ROOM RECORD
 *   gatewayd upgrade [-c FILE | -a ADMIN]
 *
 * A small blocking WebSocket client (the gateway's own frame codec): tap
 * prints each record of the room as it flows, one per line ("< " towards
 * the backend, "> " from it), until the room or the daemon goes; inject
 * writes one command record into the room as if its backend had, and
 * prints the daemon's answer ("ok", or "error: why"); upgrade asks the
 * daemon to hand its connections to a new process started from its
 * binary (POST /upgrade) and prints how it went.  ADMIN is the
 * admin listener's address, HOST:PORT or a Unix socket path; by default
 * it is admin_listen of the configuration file.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "cfg.h"
#include "ctl.h"
#include "handshake.h"
#include "ws_frame.h"

/* The longest message the tap takes (a record may be long). */
#define CTL_MESSAGE_MAX (64 * 1024 * 1024)

static void
ctl_usage(FILE *out)
{
	fprintf(out,
	    "usage: gatewayd tap [-c FILE | -a ADMIN] ROOM\n"
	    "       gatewayd inject [-c FILE | -a ADMIN] ROOM RECORD\n"
	    "       gatewayd upgrade [-c FILE | -a ADMIN]\n"
	    "  ROOM      a room's path, e.g. /chat\n"
	    "  RECORD    a command record, e.g. "
	    "'{\"type\":\"broadcast\",\"text\":\"hi\"}'\n"
	    "  -a ADMIN  the admin listener: HOST:PORT or a Unix socket path\n"
	    "  -c FILE   take admin_listen from FILE (default "
	    "/etc/gatewayd/gatewayd.ini)\n");
}

/* A connection to the admin listener of cfg, or to text; -1 on error. */
static int
ctl_connect(const struct cfg_listen *ln)
{
	int fd = socket(ln->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd == -1 || connect(fd, (const struct sockaddr *)&ln->addr,
	    ln->addr_len) == -1) {
		fprintf(stderr, "gatewayd: cannot connect to the admin "
		    "listener %s: %s\n", ln->text, strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	return fd;
}

static int
ctl_send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Send a masked frame (a client's must be). */
static int
ctl_send_frame(int fd, enum ws_frame_opcode op, const void *payload,
    size_t len)
{
	uint8_t header[WS_FRAME_MAX_HEADER], mask[4];
	uint8_t *copy;
	size_t n;
	int r;

	if (RAND_bytes(mask, 4) != 1)
		return -1;
	n = ws_frame_header_encode(header, op, true, len, mask);
	if ((copy = malloc(len + 1)) == NULL)
		return -1;
	memcpy(copy, payload, len);
	ws_frame_mask(copy, len, mask, 0);
	r = ctl_send_all(fd, header, n) == 0 && ctl_send_all(fd, copy, len) == 0 ?
	    0 : -1;
	free(copy);
	return r;
}

/* The opening handshake for path; leaves in buf[0..*left) what came
 * after the 101.  Returns 0 or -1 (said why). */
static int
ctl_handshake(int fd, const char *path, uint8_t *buf, size_t size,
    size_t *left)
{
	unsigned char raw[16];
	char key[32], accept[HANDSHAKE_ACCEPT_LEN + 1], req[1024];
	size_t have = 0;
	char *end, *line;
	ssize_t n;
	int len;

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -1;
	EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
	handshake_accept_key(key, strlen(key), accept);
	len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: gatewayd\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
	    path, key);
	if (len < 0 || (size_t)len >= sizeof(req) ||
	    ctl_send_all(fd, req, (size_t)len) == -1)
		return -1;
	for (;;) {
		n = recv(fd, buf + have, size - have - 1, 0);
		if (n <= 0) {
			fprintf(stderr, "gatewayd: the admin listener closed the "
			    "connection\n");
			return -1;
		}
		have += (size_t)n;
		buf[have] = '\0';
		if ((end = strstr((char *)buf, "\r\n\r\n")) != NULL)
			break;
		if (have + 1 >= size)
			return -1;
	}
	end += 4;
	if (strncmp((char *)buf, "HTTP/1.1 101", 12) != 0) {
		/* The daemon's answer says why: 404 for no such room. */
		line = strstr(end, "\n");
		fprintf(stderr, "gatewayd: %.*s%s%.*s\n",
		    (int)strcspn((char *)buf, "\r\n"), (char *)buf,
		    *end != '\0' ? ": " : "",
		    (int)(line != NULL ? line - end : (long)strlen(end)), end);
		return -1;
	}
	if (strstr((char *)buf, accept) == NULL) {
		fprintf(stderr, "gatewayd: bad Sec-WebSocket-Accept\n");
		return -1;
	}
	*left = have - (size_t)(end - (char *)buf);
	memmove(buf, end, *left);
	return 0;
}

/*
 * Read frames and hand each message to fn; answer pings; return at the
 * peer's close (0) or an error (-1).  fn returns false to stop.
 */
static int
ctl_messages(int fd, uint8_t *buf, size_t size, size_t have,
    bool (*fn)(const struct ws_frame_event *, void *), void *arg)
{
	struct ws_frame_parser p;
	struct ws_frame_event ev;
	size_t off, used;
	ssize_t n;
	int r = -1;

	ws_frame_parser_init(&p, CTL_MESSAGE_MAX, 0, false);
	for (;;) {
		for (off = 0; off < have;) {
			used = ws_frame_parse(&p, buf + off, have - off, &ev);
			off += used;
			switch (ev.type) {
			case WS_EV_NONE:
			case WS_EV_PONG:
				break;
			case WS_EV_PING:
				ctl_send_frame(fd, WS_OP_PONG, ev.data, ev.len);
				break;
			case WS_EV_MESSAGE:
				if (!fn(&ev, arg)) {
					r = 0;
					goto done;
				}
				break;
			case WS_EV_CLOSE:
				if (ev.len > 0)
					fprintf(stderr, "gatewayd: closed: %.*s\n",
					    (int)ev.len, (const char *)ev.data);
				ctl_send_frame(fd, WS_OP_CLOSE, "\x03\xe8", 2);
				r = 0;
				goto done;
			case WS_EV_ERROR:
				fprintf(stderr, "gatewayd: %s\n", ev.error);
				goto done;
			}
			if (used == 0)
				break;
		}
		n = recv(fd, buf, size, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n == 0 ? 0 : -1;
			goto done;
		}
		have = (size_t)n;
	}
done:
	ws_frame_parser_free(&p);
	return r;
}

static bool
ctl_print(const struct ws_frame_event *ev, void *arg)
{
	fwrite(ev->data, 1, ev->len, stdout);
	fputc('\n', stdout);
	fflush(stdout);
	return true;
}

static bool
ctl_answer(const struct ws_frame_event *ev, void *arg)
{
	int *status = arg;

	printf("%.*s\n", (int)ev->len, (const char *)ev->data);
	*status = ev->len == 2 && memcmp(ev->data, "ok", 2) == 0 ? 0 : 1;
	return false;
}

/* The admin listener to reach: -a's, or the configuration's. */
static int
ctl_admin(const char *addr, const char *file, struct cfg_listen *out,
    struct cfg **cfgp)
{
	struct cfg *cfg;
	char *errors = NULL, *text;
	size_t i;

	if (addr != NULL) {
		/* Parsed as an admin_listen line would be. */
		if (asprintf(&text, "[gateway]\nlisten = 127.0.0.1:1\n"
		    "admin_listen = %s\n[static /]\ndir = /\n", addr) == -1)
			return -1;
		cfg = cfg_parse("-a", text, strlen(text), &errors);
		free(text);
	} else {
		cfg = cfg_load(file, &errors);
	}
	if (cfg == NULL) {
		fputs(errors != NULL ? errors : "gatewayd: out of memory\n",
		    stderr);
		free(errors);
		return -1;
	}
	for (i = 0; i < cfg->n_listens; i++) {
		if (cfg->listens[i].admin) {
			*out = cfg->listens[i];
			*cfgp = cfg;
			return 0;
		}
	}
	fprintf(stderr, "gatewayd: %s has no admin_listen (or give -a "
	    "ADMIN)\n", file);
	cfg_free(cfg);
	return -1;
}

/* POST /upgrade, and print the answer's body: 0 when it says 200. */
static int
ctl_upgrade(int fd)
{
	static const char req[] = "POST /upgrade HTTP/1.1\r\nHost: gatewayd\r\n"
	    "Content-Length: 0\r\nConnection: close\r\n\r\n";
	char buf[4096], *body;
	size_t have = 0;
	ssize_t n;

	if (ctl_send_all(fd, req, sizeof(req) - 1) == -1) {
		fprintf(stderr, "gatewayd: cannot send the request: %s\n",
		    strerror(errno));
		return 1;
	}
	/* The answer comes once the new process is ready, or has failed. */
	while (have < sizeof(buf) - 1 &&
	    (n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0)) != 0) {
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			break;
		have += (size_t)n;
	}
	buf[have] = '\0';
	if ((body = strstr(buf, "\r\n\r\n")) == NULL) {
		fprintf(stderr, "gatewayd: no answer from the daemon\n");
		return 1;
	}
	fputs(body + 4, stdout);
	return strncmp(buf, "HTTP/1.1 200 ", 13) == 0 ? 0 : 1;
}

int
ctl_main(int argc, char **argv)
{
	static uint8_t buf[65536];
	const char *admin = NULL, *file = "/etc/gatewayd/gatewayd.ini";
	bool tap = strcmp(argv[0], "tap") == 0;
	bool upgrade = strcmp(argv[0], "upgrade") == 0;
	struct cfg_listen ln;
	struct cfg *cfg = NULL;
	char path[4096];
	size_t left;
	int i, fd, status = 1;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-a") == 0 && i + 1 < argc)
			admin = argv[++i];
		else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			file = argv[++i];
		else if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0) {
			ctl_usage(stdout);
			return 0;
		} else {
			ctl_usage(stderr);
			return 2;
		}
	}
	if (upgrade ? argc != i : argc - i != (tap ? 1 : 2) ||
	    argv[i][0] != '/') {
		ctl_usage(stderr);
		return 2;
	}
	if (ctl_admin(admin, file, &ln, &cfg) == -1)
		return 1;
	fd = ctl_connect(&ln);
	cfg_free(cfg);
	if (fd == -1)
		return 1;
	if (upgrade) {
		status = ctl_upgrade(fd);
		close(fd);
		return status;
	}
	snprintf(path, sizeof(path), "/%s%s", tap ? "tap" : "inject", argv[i]);
	if (ctl_handshake(fd, path, buf, sizeof(buf), &left) == 0) {
		if (tap) {
			status = ctl_messages(fd, buf, sizeof(buf), left,
			    ctl_print, NULL) == 0 ? 0 : 1;
		} else if (ctl_send_frame(fd, WS_OP_TEXT, argv[i + 1],
		    strlen(argv[i + 1])) == 0) {
			ctl_messages(fd, buf, sizeof(buf), left, ctl_answer,
			    &status);
			ctl_send_frame(fd, WS_OP_CLOSE, "\x03\xe8", 2);
		}
	}
	close(fd);
	return status;
}
