/*
 * bench_room: the room backend the benchmark runs behind gatewayd, so that
 * the numbers show the gateway's own cost rather than a slow backend's.
 *
 *   bench_room echo        every message goes back to its sender
 *   bench_room broadcast   every message goes to every member of the room,
 *                          its sender included
 *
 * Records come on stdin, commands go to stdout (docs/PROTOCOL.md).  Only
 * message records get an answer.  Their layout is fixed by the gateway's
 * record_message():
 *
 *   {"type":"message","client":"c12","text":"..."}
 *   {"type":"message","client":"c12","binary":"BASE64"}
 *
 * so the client id and the payload are found by position, not by a JSON
 * parser, and the payload is copied as the JSON string it already is
 * (escapes and all) into
 *
 *   {"type":"send","client":"c12","text":"..."}
 *   {"type":"broadcast","text":"..."}
 *
 * Every other line (hello, open, close, a line of another shape) is
 * ignored.  Output is written when the input read so far is used up, just
 * before the next read could block: the gateway gets each answer no later
 * than a backend flushing every line would give it, in fewer writes.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ROOM_READ_CHUNK	(256 * 1024)	/* the least room left for a read */
#define ROOM_LINE_MAX	((size_t)1 << 30)	/* longer input lines: exit */

enum room_mode {
	ROOM_ECHO,
	ROOM_BROADCAST,
};

/* A growable byte buffer. */
struct room_buf {
	char *data;
	size_t len;
	size_t cap;
};

static const char room_head[] = "{\"type\":\"message\",\"client\":\"";
static const char room_text[] = "\",\"text\":\"";
static const char room_binary[] = "\",\"binary\":\"";

/* Make room for at least need more bytes; exits when memory runs out (a
 * benchmark helper has nobody else to serve). */
static void
room_reserve(struct room_buf *b, size_t need)
{
	size_t cap = b->cap ? b->cap : ROOM_READ_CHUNK;

	if (b->cap - b->len >= need)
		return;
	while (cap - b->len < need)
		cap *= 2;
	b->data = realloc(b->data, cap);
	if (b->data == NULL) {
		fprintf(stderr, "bench_room: out of memory\n");
		exit(1);
	}
	b->cap = cap;
}

static void
room_append(struct room_buf *b, const char *s, size_t n)
{
	room_reserve(b, n);
	memcpy(b->data + b->len, s, n);
	b->len += n;
}

#define ROOM_APPEND_LIT(b, s)	room_append((b), (s), sizeof(s) - 1)

/* Write all of b to stdout and empty it.  Returns -1 when the gateway has
 * gone away. */
static int
room_flush(struct room_buf *b)
{
	size_t done = 0;
	ssize_t n;

	while (done < b->len) {
		n = write(STDOUT_FILENO, b->data + done, b->len - done);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	b->len = 0;
	return 0;
}

/* Answer one line (without its newline). */
static void
room_line(enum room_mode mode, const char *line, size_t len,
    struct room_buf *out)
{
	const char *client, *end, *payload;
	size_t head = sizeof(room_head) - 1, client_len;
	bool binary;

	if (len < head + 4 || memcmp(line, room_head, head) != 0 ||
	    line[len - 2] != '"' || line[len - 1] != '}')
		return;
	client = line + head;
	end = memchr(client, '"', len - head);
	if (end == NULL)
		return;
	client_len = (size_t)(end - client);
	if ((size_t)(line + len - end) >= sizeof(room_text) - 1 + 2 &&
	    memcmp(end, room_text, sizeof(room_text) - 1) == 0) {
		binary = false;
		payload = end + sizeof(room_text) - 1;
	} else if ((size_t)(line + len - end) >= sizeof(room_binary) - 1 + 2 &&
	    memcmp(end, room_binary, sizeof(room_binary) - 1) == 0) {
		binary = true;
		payload = end + sizeof(room_binary) - 1;
	} else {
		return;
	}
	if (mode == ROOM_ECHO) {
		ROOM_APPEND_LIT(out, "{\"type\":\"send\",\"client\":\"");
		room_append(out, client, client_len);
		ROOM_APPEND_LIT(out, "\",\"");
	} else {
		ROOM_APPEND_LIT(out, "{\"type\":\"broadcast\",\"");
	}
	if (binary)
		ROOM_APPEND_LIT(out, "binary\":\"");
	else
		ROOM_APPEND_LIT(out, "text\":\"");
	/* The payload up to the closing quote, then the same ending. */
	room_append(out, payload, (size_t)(line + len - payload));
	ROOM_APPEND_LIT(out, "\n");
}

static int
room_run(enum room_mode mode)
{
	struct room_buf in = { 0 }, out = { 0 };
	size_t start, scanned = 0;
	char *nl;
	ssize_t n;

	for (;;) {
		room_reserve(&in, ROOM_READ_CHUNK / 2);
		n = read(STDIN_FILENO, in.data + in.len, in.cap - in.len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return 0;	/* the room is over */
		in.len += (size_t)n;
		start = 0;
		while ((nl = memchr(in.data + scanned, '\n',
		    in.len - scanned)) != NULL) {
			room_line(mode, in.data + start,
			    (size_t)(nl - in.data) - start, &out);
			start = (size_t)(nl - in.data) + 1;
			scanned = start;
		}
		/* Keep the partial line for the next read. */
		memmove(in.data, in.data + start, in.len - start);
		in.len -= start;
		scanned = in.len;
		if (in.len > ROOM_LINE_MAX) {
			fprintf(stderr, "bench_room: input line too long\n");
			return 1;
		}
		if (out.len > 0 && room_flush(&out) == -1)
			return 0;
	}
}

int
main(int argc, char **argv)
{
	enum room_mode mode;

	if (argc == 2 && strcmp(argv[1], "echo") == 0) {
		mode = ROOM_ECHO;
	} else if (argc == 2 && strcmp(argv[1], "broadcast") == 0) {
		mode = ROOM_BROADCAST;
	} else {
		fprintf(stderr, "usage: bench_room echo|broadcast\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	return room_run(mode);
}
