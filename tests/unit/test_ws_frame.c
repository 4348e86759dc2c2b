/*
 * Unit tests for ws_frame.c: the RFC 6455 5.7 examples, every protocol
 * error with its close code, fragmentation with interleaved control frames,
 * the message and frame size limits, fail-fast UTF-8, close frames, the encoder, and
 * the parser's memory use, and RSV1 for permessage-deflate.  Inputs are
 * fed whole, a byte at a time and in odd-sized pieces, and all three must
 * produce the same events at the same input offsets.
 */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"

/* Allocation failure injection: ws_frame.c's realloc comes here. */
static int fail_next_realloc;
static size_t largest_realloc;

static void *
test_realloc(void *ptr, size_t size)
{
	if (fail_next_realloc) {
		fail_next_realloc = 0;
		return NULL;
	}
	if (size > largest_realloc)
		largest_realloc = size;
	return realloc(ptr, size);
}

#define realloc test_realloc
#include "../../gatewayd/ws_frame.c"
#undef realloc

#define B(...) (const uint8_t[]){ __VA_ARGS__ }, \
	sizeof((const uint8_t[]){ __VA_ARGS__ })

#define MAX_EVENTS 16

struct rec {
	enum ws_frame_event_type type;
	enum ws_frame_opcode opcode;
	uint16_t code;
	uint8_t *data;
	size_t len;
	size_t at;		/* input consumed when the event came */
	bool data_null;
	bool compressed;
};

struct run {
	struct rec ev[MAX_EVENTS];
	size_t n;
	size_t consumed;
};

static void
run_free(struct run *r)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		free(r->ev[i].data);
	r->n = 0;
}

/*
 * Parse buf in pieces of at most chunk bytes (0: all at once), recording
 * each event, until the input is consumed or an error comes.  Checks the
 * general contract on the way: NONE only when a piece is used up, progress
 * on every call, the error repeated afterwards.
 */
static bool
run_parse(struct ws_frame_parser *p, const uint8_t *buf, size_t len,
    size_t chunk, struct run *r)
{
	struct ws_frame_event ev;
	size_t off = 0, n, piece;
	bool ok = true;

	memset(r, 0, sizeof(*r));
	while (off < len) {
		piece = len - off;
		if (chunk && piece > chunk)
			piece = chunk;
		n = ws_frame_parse(p, buf + off, piece, &ev);
		if (n > piece)
			return false;
		off += n;
		if (ev.type == WS_EV_NONE) {
			if (n != piece)
				ok = false;
			continue;
		}
		if (n == 0 && ev.type != WS_EV_ERROR)
			ok = false;
		if (r->n < MAX_EVENTS) {
			struct rec *e = &r->ev[r->n++];

			e->type = ev.type;
			e->opcode = ev.opcode;
			e->code = ev.code;
			e->len = ev.len;
			e->at = off;
			e->data_null = ev.data == NULL;
			e->compressed = ev.compressed;
			e->data = malloc(ev.len ? ev.len : 1);
			if (ev.len)
				memcpy(e->data, ev.data, ev.len);
		}
		if (ev.type == WS_EV_ERROR) {
			struct ws_frame_event again;

			if (ev.error == NULL || ev.code == 0)
				ok = false;
			if (ws_frame_parse(p, buf + off, len - off, &again) != 0 ||
			    again.type != WS_EV_ERROR || again.code != ev.code)
				ok = false;
			break;
		}
	}
	r->consumed = off;
	return ok;
}

static bool
runs_equal(const struct run *a, const struct run *b)
{
	size_t i;

	if (a->n != b->n || a->consumed != b->consumed)
		return false;
	for (i = 0; i < a->n; i++) {
		const struct rec *x = &a->ev[i], *y = &b->ev[i];

		if (x->type != y->type || x->code != y->code ||
		    x->len != y->len || x->at != y->at ||
		    memcmp(x->data, y->data, x->len) != 0)
			return false;
		if ((x->type == WS_EV_MESSAGE) &&
		    (x->opcode != y->opcode || x->data_null || y->data_null ||
		    x->compressed != y->compressed))
			return false;
	}
	return true;
}

/* Whether the parsers made by parse_all_ways_f accept RSV1 (the
 * permessage-deflate tests set it, and clear it when done). */
static bool allow_rsv1;

/* Parse buf whole into *r, and check that byte-at-a-time and 3- and 7-byte
 * pieces give the same events at the same offsets.  frame_max is the
 * parser's max_frame_size. */
static bool
parse_all_ways_f(uint64_t max, uint64_t frame_max, bool expect_masked,
    const uint8_t *buf, size_t len, struct run *r)
{
	static const size_t chunks[] = { 1, 3, 7 };
	struct ws_frame_parser p;
	struct run other;
	bool ok;
	size_t i;

	ws_frame_parser_init(&p, max, frame_max, expect_masked);
	ws_frame_parser_allow_rsv1(&p, allow_rsv1);
	ok = run_parse(&p, buf, len, 0, r);
	ws_frame_parser_free(&p);
	for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		ws_frame_parser_init(&p, max, frame_max, expect_masked);
		ws_frame_parser_allow_rsv1(&p, allow_rsv1);
		ok = run_parse(&p, buf, len, chunks[i], &other) && ok;
		ws_frame_parser_free(&p);
		if (!runs_equal(r, &other)) {
			fprintf(stderr, "  pieces of %zu differ from whole\n",
			    chunks[i]);
			ok = false;
		}
		run_free(&other);
	}
	return ok;
}

static bool
parse_all_ways(uint64_t max, bool expect_masked, const uint8_t *buf,
    size_t len, struct run *r)
{
	return parse_all_ways_f(max, 0, expect_masked, buf, len, r);
}

/* The error code a server (masked) or client parser with max_frame_size
 * frame_max reports for buf, or 0 when there is none; *at is where it
 * came. */
static int
error_of_f(bool expect_masked, uint64_t max, uint64_t frame_max,
    const uint8_t *buf, size_t len, size_t *at)
{
	struct run r;
	int code = 0;

	if (!parse_all_ways_f(max, frame_max, expect_masked, buf, len, &r))
		return -1;
	if (r.n > 0 && r.ev[r.n - 1].type == WS_EV_ERROR) {
		code = r.ev[r.n - 1].code;
		if (at)
			*at = r.ev[r.n - 1].at;
	}
	run_free(&r);
	return code;
}

static int
error_of(bool expect_masked, uint64_t max, const uint8_t *buf, size_t len,
    size_t *at)
{
	return error_of_f(expect_masked, max, 0, buf, len, at);
}

#define SERVER_ERROR(...) error_of(true, 1 << 20, B(__VA_ARGS__), NULL)
#define CLIENT_ERROR(...) error_of(false, 1 << 20, B(__VA_ARGS__), NULL)

static bool
is_message(const struct rec *e, enum ws_frame_opcode op, const void *data,
    size_t len)
{
	return e->type == WS_EV_MESSAGE && e->opcode == op && e->len == len &&
	    !e->data_null && memcmp(e->data, data, len) == 0;
}

/* Frame builder: header plus payload, masked when key is non-NULL. */
static size_t
frame(uint8_t *out, enum ws_frame_opcode op, bool fin, const void *payload,
    size_t len, const uint8_t *key)
{
	size_t h = ws_frame_header_encode(out, op, fin, len, key);

	memcpy(out + h, payload, len);
	if (key)
		ws_frame_mask(out + h, len, key, 0);
	return h + len;
}

static const uint8_t key[4] = { 0x37, 0xfa, 0x21, 0x3d };

/* RFC 6455 5.7: a single-frame unmasked text message. */
static void
test_rfc_unmasked_text(void)
{
	struct run r;

	CHECK(parse_all_ways(1024, false,
	    B(0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f), &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK(is_message(&r.ev[0], WS_OP_TEXT, "Hello", 5));
	CHECK_EQ_INT(r.ev[0].at, 7);
	run_free(&r);
	/* a server refuses it: client frames must be masked */
	CHECK_EQ_INT(SERVER_ERROR(0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f),
	    1002);
}

/* RFC 6455 5.7: a single-frame masked text message. */
static void
test_rfc_masked_text(void)
{
	struct run r;

	CHECK(parse_all_ways(1024, true, B(0x81, 0x85, 0x37, 0xfa, 0x21,
	    0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58), &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK(is_message(&r.ev[0], WS_OP_TEXT, "Hello", 5));
	run_free(&r);
	/* a client refuses it: server frames must not be masked */
	CHECK_EQ_INT(CLIENT_ERROR(0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f,
	    0x9f, 0x4d, 0x51, 0x58), 1002);
}

/* RFC 6455 5.7: a fragmented unmasked text message. */
static void
test_rfc_fragmented(void)
{
	struct run r;

	CHECK(parse_all_ways(1024, false, B(0x01, 0x03, 0x48, 0x65, 0x6c,
	    0x80, 0x02, 0x6c, 0x6f), &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK(is_message(&r.ev[0], WS_OP_TEXT, "Hello", 5));
	CHECK_EQ_INT(r.ev[0].at, 9);
	run_free(&r);
}

/* RFC 6455 5.7: unmasked ping, masked pong. */
static void
test_rfc_ping_pong(void)
{
	struct run r;

	CHECK(parse_all_ways(1024, false,
	    B(0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f), &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK_EQ_INT(r.ev[0].type, WS_EV_PING);
	CHECK_EQ_MEM(r.ev[0].data, r.ev[0].len, "Hello", 5);
	run_free(&r);

	CHECK(parse_all_ways(1024, true, B(0x8a, 0x85, 0x37, 0xfa, 0x21,
	    0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58), &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK_EQ_INT(r.ev[0].type, WS_EV_PONG);
	CHECK_EQ_MEM(r.ev[0].data, r.ev[0].len, "Hello", 5);
	run_free(&r);

	/* empty ping */
	CHECK(parse_all_ways(1024, false, B(0x89, 0x00), &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK_EQ_INT(r.ev[0].type, WS_EV_PING);
	CHECK_EQ_INT(r.ev[0].len, 0);
	run_free(&r);
}

/* RFC 6455 5.7: 256 bytes with a 16-bit length, 64 KiB with a 64-bit one. */
static void
test_rfc_long_binary(void)
{
	static uint8_t buf[10 + 65536];
	struct run r;
	size_t i;

	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7);
	memcpy(buf, (const uint8_t[]){ 0x82, 0x7e, 0x01, 0x00 }, 4);
	CHECK(parse_all_ways(1 << 20, false, buf, 4 + 256, &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK(is_message(&r.ev[0], WS_OP_BINARY, buf + 4, 256));
	run_free(&r);

	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 13);
	memcpy(buf, (const uint8_t[]){ 0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0 },
	    10);
	CHECK(parse_all_ways(1 << 20, false, buf, sizeof(buf), &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK(is_message(&r.ev[0], WS_OP_BINARY, buf + 10, 65536));
	run_free(&r);
}

static void
test_reserved_bits(void)
{
	CHECK_EQ_INT(CLIENT_ERROR(0xc1, 0x00), 1002);	/* RSV1 */
	CHECK_EQ_INT(CLIENT_ERROR(0xa1, 0x00), 1002);	/* RSV2 */
	CHECK_EQ_INT(CLIENT_ERROR(0x91, 0x00), 1002);	/* RSV3 */
	CHECK_EQ_INT(CLIENT_ERROR(0xf2, 0x00), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0xc9, 0x00), 1002);	/* on a ping */
	CHECK_EQ_INT(SERVER_ERROR(0xc1, 0x80, 1, 2, 3, 4), 1002);
	/* after a valid message */
	CHECK_EQ_INT(CLIENT_ERROR(0x81, 0x01, 'a', 0xc1, 0x00), 1002);
}

static void
test_reserved_opcodes(void)
{
	unsigned op;

	for (op = 0; op < 16; op++) {
		uint8_t f[2] = { (uint8_t)(0x80 | op), 0x00 };
		bool reserved = (op >= 3 && op <= 7) || op >= 0xb;

		if (reserved)
			CHECK_EQ_INT(error_of(false, 1024, f, 2, NULL), 1002);
	}
	CHECK_EQ_INT(CLIENT_ERROR(0x83, 0x00), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0x87, 0x00), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0x8b, 0x00), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0x8f, 0x00), 1002);
	/* reserved opcode between fragments */
	CHECK_EQ_INT(CLIENT_ERROR(0x01, 0x01, 'a', 0x85, 0x00), 1002);
}

static void
test_masking_role(void)
{
	size_t at = 99;

	CHECK_EQ_INT(SERVER_ERROR(0x82, 0x00), 1002);
	CHECK_EQ_INT(SERVER_ERROR(0x89, 0x00), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0x82, 0x80, 1, 2, 3, 4), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0x88, 0x80, 1, 2, 3, 4), 1002);
	/* decided on the second byte */
	CHECK_EQ_INT(error_of(true, 1024, B(0x81, 0x05, 'H', 'e', 'l', 'l',
	    'o'), &at), 1002);
	CHECK_EQ_INT(at, 2);
}

static void
test_control_frames(void)
{
	size_t at = 99;

	/* not FIN */
	CHECK_EQ_INT(CLIENT_ERROR(0x09, 0x00), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0x0a, 0x00), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0x08, 0x02, 0x03, 0xe8), 1002);
	/* payload over 125, by 16- or 64-bit length: refused at byte 2 */
	CHECK_EQ_INT(error_of(false, 1024, B(0x89, 0x7e, 0x00, 0x7e),
	    &at), 1002);
	CHECK_EQ_INT(at, 2);
	CHECK_EQ_INT(CLIENT_ERROR(0x8a, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0x7e),
	    1002);
	CHECK_EQ_INT(CLIENT_ERROR(0x88, 0x7e, 0x00, 0x80), 1002);
	/* 125 is fine */
	{
		uint8_t f[2 + 125];
		struct run r;

		memset(f, 'p', sizeof(f));
		f[0] = 0x89;
		f[1] = 125;
		CHECK(parse_all_ways(1024, false, f, sizeof(f), &r));
		CHECK_EQ_INT(r.n, 1);
		CHECK_EQ_INT(r.ev[0].type, WS_EV_PING);
		CHECK_EQ_INT(r.ev[0].len, 125);
		run_free(&r);
	}
}

static void
test_length_encoding(void)
{
	struct run r;
	uint8_t f[10 + 65536];

	/* 64-bit length with the top bit set */
	CHECK_EQ_INT(CLIENT_ERROR(0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0),
	    1002);
	CHECK_EQ_INT(CLIENT_ERROR(0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0xff, 0xff, 0xff), 1002);
	/* non-minimal 16-bit and 64-bit lengths */
	CHECK_EQ_INT(CLIENT_ERROR(0x82, 0x7e, 0x00, 0x00), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0x82, 0x7e, 0x00, 0x7d), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0x05),
	    1002);
	CHECK_EQ_INT(CLIENT_ERROR(0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff),
	    1002);
	CHECK_EQ_INT(SERVER_ERROR(0x82, 0xfe, 0x00, 0x7d, 1, 2, 3, 4), 1002);
	/* the smallest minimal ones */
	memset(f, 0, sizeof(f));
	memcpy(f, (const uint8_t[]){ 0x82, 0x7e, 0x00, 0x7e }, 4);
	CHECK(parse_all_ways(1 << 20, false, f, 4 + 126, &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK_EQ_INT(r.ev[0].type, WS_EV_MESSAGE);
	CHECK_EQ_INT(r.ev[0].len, 126);
	run_free(&r);
	memcpy(f, (const uint8_t[]){ 0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0 }, 10);
	CHECK(parse_all_ways(1 << 20, false, f, 10 + 65536, &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK_EQ_INT(r.ev[0].type, WS_EV_MESSAGE);
	CHECK_EQ_INT(r.ev[0].len, 65536);
	run_free(&r);
}

static void
test_fragment_sequence(void)
{
	/* continuation with no message open */
	CHECK_EQ_INT(CLIENT_ERROR(0x80, 0x01, 'a'), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0x00, 0x01, 'a'), 1002);
	/* ... also right after a complete message */
	CHECK_EQ_INT(CLIENT_ERROR(0x81, 0x01, 'a', 0x80, 0x01, 'b'), 1002);
	/* a new TEXT or BINARY while a message is open */
	CHECK_EQ_INT(CLIENT_ERROR(0x01, 0x01, 'a', 0x81, 0x01, 'b'), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0x01, 0x01, 'a', 0x02, 0x01, 'b'), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0x02, 0x00, 0x00, 0x00, 0x82, 0x00), 1002);
}

/* A control frame between fragments leaves the reassembly alone. */
static void
test_control_between_fragments(void)
{
	struct run r;

	CHECK(parse_all_ways(1024, false, B(
	    0x01, 0x03, 'H', 'e', 'l',
	    0x89, 0x02, 'p', '1',
	    0x00, 0x00,				/* empty continuation */
	    0x8a, 0x00,
	    0x00, 0x01, 'l',
	    0x88, 0x02, 0x03, 0xe8,		/* close, 1000 */
	    0x80, 0x01, 'o',
	    0x82, 0x01, 0xff), &r));
	CHECK_EQ_INT(r.n, 5);
	CHECK_EQ_INT(r.ev[0].type, WS_EV_PING);
	CHECK_EQ_MEM(r.ev[0].data, r.ev[0].len, "p1", 2);
	CHECK_EQ_INT(r.ev[1].type, WS_EV_PONG);
	CHECK_EQ_INT(r.ev[2].type, WS_EV_CLOSE);
	CHECK_EQ_INT(r.ev[2].code, 1000);
	CHECK(is_message(&r.ev[3], WS_OP_TEXT, "Hello", 5));
	CHECK(is_message(&r.ev[4], WS_OP_BINARY, "\xff", 1));
	run_free(&r);

	/* masked, with a text character split across fragments and a ping
	 * in the middle of the character */
	{
		uint8_t buf[64];
		size_t n = 0;

		n += frame(buf + n, WS_OP_TEXT, false, "\xe2\x82", 2, key);
		n += frame(buf + n, WS_OP_PING, true, "x", 1, key);
		n += frame(buf + n, WS_OP_CONTINUATION, true, "\xac", 1, key);
		CHECK(parse_all_ways(1024, true, buf, n, &r));
		CHECK_EQ_INT(r.n, 2);
		CHECK_EQ_INT(r.ev[0].type, WS_EV_PING);
		CHECK(is_message(&r.ev[1], WS_OP_TEXT, "\xe2\x82\xac", 3));
		run_free(&r);
	}
}

static void
test_empty_messages(void)
{
	struct run r;

	CHECK(parse_all_ways(1024, false, B(0x81, 0x00, 0x82, 0x00,
	    0x01, 0x00, 0x80, 0x00), &r));
	CHECK_EQ_INT(r.n, 3);
	CHECK(is_message(&r.ev[0], WS_OP_TEXT, "", 0));
	CHECK(is_message(&r.ev[1], WS_OP_BINARY, "", 0));
	CHECK(is_message(&r.ev[2], WS_OP_TEXT, "", 0));
	run_free(&r);
	/* with max_message_size 0, empty messages still pass */
	CHECK(parse_all_ways(0, true, B(0x81, 0x80, 1, 2, 3, 4), &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK(is_message(&r.ev[0], WS_OP_TEXT, "", 0));
	run_free(&r);
	CHECK_EQ_INT(error_of(false, 0, B(0x81, 0x01, 'a'), NULL), 1009);
}

static void
test_max_message_size(void)
{
	static uint8_t buf[3 * (14 + 300)];
	uint8_t payload[300];
	struct ws_frame_parser p;
	struct ws_frame_event ev;
	struct run r;
	size_t n, h, at = 0;

	memset(payload, 'z', sizeof(payload));

	/* exactly at the limit: one frame, and three fragments */
	n = frame(buf, WS_OP_BINARY, true, payload, 300, key);
	CHECK(parse_all_ways(300, true, buf, n, &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK(is_message(&r.ev[0], WS_OP_BINARY, payload, 300));
	run_free(&r);
	n = frame(buf, WS_OP_TEXT, false, payload, 100, key);
	n += frame(buf + n, WS_OP_CONTINUATION, false, payload, 150, key);
	n += frame(buf + n, WS_OP_CONTINUATION, true, payload, 50, key);
	CHECK(parse_all_ways(300, true, buf, n, &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK(is_message(&r.ev[0], WS_OP_TEXT, payload, 300));
	run_free(&r);

	/* one over: refused as soon as the length is read, before the mask
	 * key and any payload */
	n = frame(buf, WS_OP_BINARY, true, payload, 300, key);
	h = n - 300 - 4;
	CHECK_EQ_INT(error_of(true, 299, buf, n, &at), 1009);
	CHECK_EQ_INT(at, h);
	ws_frame_parser_init(&p, 299, 0, true);
	CHECK_EQ_INT(ws_frame_parse(&p, buf, n - 300, &ev), h);
	CHECK_EQ_INT(ev.type, WS_EV_ERROR);
	CHECK_EQ_INT(ev.code, 1009);
	CHECK(p.message == NULL);
	ws_frame_parser_free(&p);

	/* one over across fragments: refused at the last fragment's header */
	n = frame(buf, WS_OP_TEXT, false, payload, 100, key);
	n += frame(buf + n, WS_OP_CONTINUATION, false, payload, 150, key);
	h = n;
	n += frame(buf + n, WS_OP_CONTINUATION, true, payload, 51, key);
	CHECK_EQ_INT(error_of(true, 300, buf, n, &at), 1009);
	CHECK_EQ_INT(at, h + 2);

	/* a huge announced length is refused without allocating */
	largest_realloc = 0;
	CHECK_EQ_INT(CLIENT_ERROR(0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff,
	    0xff, 0xff, 0xff), 1009);
	CHECK_EQ_INT(largest_realloc, 0);
	CHECK_EQ_INT(CLIENT_ERROR(0x02, 0x01, 'x', 0x80, 0x7f, 0x7f, 0xff,
	    0xff, 0xff, 0xff, 0xff, 0xff, 0xff), 1009);
	CHECK(largest_realloc <= WS_FRAME_FIRST_BUFFER);
	/* the limit covers control-free messages only: a ping is fine */
	CHECK_EQ_INT(error_of(false, 0, B(0x89, 0x01, 'a'), NULL), 0);
}

/* Bad UTF-8 fails at its byte, not at the end of the frame. */
static void
test_utf8_fail_fast(void)
{
	uint8_t buf[128], text[40];
	struct ws_frame_parser p;
	struct ws_frame_event ev;
	size_t n, second, at = 0;

	/* bad byte in the second fragment, masked, with bytes after it */
	memset(text, 'x', sizeof(text));
	text[2] = 0xff;
	n = frame(buf, WS_OP_TEXT, false, "Hel", 3, key);
	second = n;
	n += frame(buf + n, WS_OP_CONTINUATION, true, text, sizeof(text), key);
	CHECK_EQ_INT(error_of(true, 1024, buf, n, &at), 1007);
	CHECK_EQ_INT(at, second + 6 + 3);
	CHECK(at < n);

	/* the whole input at once: consumed stops at the bad byte */
	ws_frame_parser_init(&p, 1024, 0, true);
	CHECK_EQ_INT(ws_frame_parse(&p, buf, n, &ev), second + 6 + 3);
	CHECK_EQ_INT(ev.type, WS_EV_ERROR);
	CHECK_EQ_INT(ev.code, 1007);
	CHECK_EQ_INT(ws_frame_parse(&p, buf + at, n - at, &ev), 0);
	CHECK_EQ_INT(ev.type, WS_EV_ERROR);
	CHECK_EQ_INT(ev.code, 1007);
	ws_frame_parser_free(&p);

	/* only part of the frame has arrived: the error comes already */
	ws_frame_parser_init(&p, 1024, 0, true);
	CHECK_EQ_INT(ws_frame_parse(&p, buf, second + 6 + 5, &ev),
	    second + 6 + 3);
	CHECK_EQ_INT(ev.type, WS_EV_ERROR);
	CHECK_EQ_INT(ev.code, 1007);
	ws_frame_parser_free(&p);

	/* surrogate in a first, non-final fragment */
	CHECK_EQ_INT(CLIENT_ERROR(0x01, 0x05, 'a', 0xed, 0xa0, 0x80, 'b',
	    0x80, 0x01, 'c'), 1007);
	CHECK_EQ_INT(error_of(false, 1024, B(0x01, 0x05, 'a', 0xed, 0xa0,
	    0x80, 'b', 0x80, 0x01, 'c'), &at), 1007);
	CHECK_EQ_INT(at, 5);
	/* over U+10FFFF, split across fragments: fails at the first byte
	 * of the second fragment */
	CHECK_EQ_INT(error_of(false, 1024, B(0x01, 0x01, 0xf4, 0x80, 0x02,
	    0x90, 0x80, 0x80, 0x01, 0x80), &at), 1007);
	CHECK_EQ_INT(at, 6);
	/* incomplete at the end of the message */
	CHECK_EQ_INT(error_of(false, 1024, B(0x81, 0x02, 'a', 0xce), &at),
	    1007);
	CHECK_EQ_INT(at, 4);
	CHECK_EQ_INT(CLIENT_ERROR(0x01, 0x01, 0xe2, 0x80, 0x01, 0x82), 1007);
	CHECK_EQ_INT(error_of(false, 1024, B(0x01, 0x01, 0xe2, 0x00, 0x01,
	    0x82, 0x80, 0x00), &at), 1007);
	CHECK_EQ_INT(at, 8);
	/* binary is not validated */
	CHECK_EQ_INT(CLIENT_ERROR(0x82, 0x02, 0xff, 0xfe), 0);
	CHECK_EQ_INT(CLIENT_ERROR(0x02, 0x01, 0xff, 0x80, 0x01, 0xc0), 0);
}

static void
test_close(void)
{
	static const unsigned bad[] = { 0, 1, 999, 1004, 1005, 1006, 1015,
	    1016, 1100, 2000, 2999, 5000, 65535 };
	static const unsigned good[] = { 1000, 1001, 1002, 1003, 1007, 1008,
	    1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999 };
	struct run r;
	size_t i, at = 0;

	/* with no payload: 1005 and an empty reason */
	CHECK(parse_all_ways(1024, true, B(0x88, 0x80, 1, 2, 3, 4), &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK_EQ_INT(r.ev[0].type, WS_EV_CLOSE);
	CHECK_EQ_INT(r.ev[0].code, 1005);
	CHECK_EQ_INT(r.ev[0].len, 0);
	CHECK(!r.ev[0].data_null);
	run_free(&r);
	/* with a code, with and without a reason */
	CHECK(parse_all_ways(1024, false, B(0x88, 0x02, 0x03, 0xe8), &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK_EQ_INT(r.ev[0].type, WS_EV_CLOSE);
	CHECK_EQ_INT(r.ev[0].code, 1000);
	CHECK_EQ_INT(r.ev[0].len, 0);
	run_free(&r);
	CHECK(parse_all_ways(1024, false, B(0x88, 0x06, 0x0f, 0xa0, 'b',
	    'y', 0xc3, 0xa9), &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK_EQ_INT(r.ev[0].type, WS_EV_CLOSE);
	CHECK_EQ_INT(r.ev[0].code, 4000);
	CHECK_EQ_MEM(r.ev[0].data, r.ev[0].len, "by\xc3\xa9", 4);
	run_free(&r);
	/* a close does not stop the parser */
	CHECK(parse_all_ways(1024, false, B(0x88, 0x00, 0x89, 0x00), &r));
	CHECK_EQ_INT(r.n, 2);
	CHECK_EQ_INT(r.ev[1].type, WS_EV_PING);
	run_free(&r);

	/* one byte of payload: refused with the header */
	CHECK_EQ_INT(CLIENT_ERROR(0x88, 0x01, 0x03), 1002);
	CHECK_EQ_INT(error_of(false, 1024, B(0x88, 0x01, 0x03), &at), 1002);
	CHECK_EQ_INT(at, 2);
	CHECK_EQ_INT(SERVER_ERROR(0x88, 0x81, 1, 2, 3, 4, 5), 1002);
	/* codes */
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t f[4] = { 0x88, 0x02, (uint8_t)(bad[i] >> 8),
		    (uint8_t)bad[i] };

		CHECK_EQ_INT(error_of(false, 1024, f, 4, NULL), 1002);
		CHECK(!ws_frame_close_code_valid(bad[i]));
	}
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		uint8_t f[4] = { 0x88, 0x02, (uint8_t)(good[i] >> 8),
		    (uint8_t)good[i] };

		CHECK_EQ_INT(error_of(false, 1024, f, 4, NULL), 0);
		CHECK(ws_frame_close_code_valid(good[i]));
	}
	/* the reason must be valid UTF-8 */
	CHECK_EQ_INT(CLIENT_ERROR(0x88, 0x04, 0x03, 0xe8, 'a', 0xff), 1007);
	CHECK_EQ_INT(CLIENT_ERROR(0x88, 0x04, 0x03, 0xe8, 'a', 0xc3), 1007);
	/* a bad code wins over a bad reason */
	CHECK_EQ_INT(CLIENT_ERROR(0x88, 0x03, 0x03, 0xed, 0xff), 1002);
}

static void
test_close_code_valid(void)
{
	unsigned c, valid = 0;

	for (c = 0; c < 70000; c++) {
		bool want = (c >= 1000 && c <= 1003) ||
		    (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);

		if (ws_frame_close_code_valid(c) != want)
			CHECK_EQ_INT(c, -1);
		valid += want;
	}
	CHECK_EQ_INT(valid, 4 + 8 + 2000);
}

static void
test_close_payload(void)
{
	uint8_t out[WS_FRAME_MAX_CONTROL];
	char reason[300];
	size_t n;

	CHECK_EQ_INT(ws_frame_close_payload(out, 0, "ignored", 7), 0);
	/* codes that are never sent: an empty close */
	CHECK_EQ_INT(ws_frame_close_payload(out, 1005, NULL, 0), 0);
	CHECK_EQ_INT(ws_frame_close_payload(out, 1006, "x", 1), 0);
	CHECK_EQ_INT(ws_frame_close_payload(out, 1015, NULL, 0), 0);
	CHECK_EQ_INT(ws_frame_close_payload(out, 1000, NULL, 0), 2);
	CHECK_EQ_MEM(out, 2, "\x03\xe8", 2);
	n = ws_frame_close_payload(out, 1001, "bye", 3);
	CHECK_EQ_MEM(out, n, "\x03\xe9" "bye", 5);
	/* long reasons are cut to 123 bytes */
	memset(reason, 'r', sizeof(reason));
	n = ws_frame_close_payload(out, 1008, reason, sizeof(reason));
	CHECK_EQ_INT(n, 125);
	CHECK_EQ_INT(out[0] << 8 | out[1], 1008);
	CHECK(utf8_valid(out + 2, n - 2));
	/* ... without splitting a character: a 3-byte one at 121..123 */
	memcpy(reason + 121, "\xe2\x82\xac", 3);
	n = ws_frame_close_payload(out, 1008, reason, sizeof(reason));
	CHECK_EQ_INT(n, 2 + 121);
	/* a 2-byte one ending at 123 fits */
	memset(reason, 'r', sizeof(reason));
	memcpy(reason + 121, "\xc3\xa9", 2);
	n = ws_frame_close_payload(out, 1008, reason, sizeof(reason));
	CHECK_EQ_INT(n, 125);
	/* invalid input: what is sent is still valid UTF-8 */
	memset(reason, 'r', sizeof(reason));
	reason[50] = (char)0xff;
	n = ws_frame_close_payload(out, 1011, reason, sizeof(reason));
	CHECK(n <= 125);
	CHECK(utf8_valid(out + 2, n - 2));
	CHECK_EQ_INT(n, 2 + 50);
	memset(reason, 'r', sizeof(reason));
	memcpy(reason + 120, "\xf0\x9f\x98", 3);	/* incomplete at 123 */
	n = ws_frame_close_payload(out, 1011, reason, 123);
	CHECK_EQ_INT(n, 2 + 120);
	/* the result parses back */
	{
		uint8_t f[2 + WS_FRAME_MAX_CONTROL];
		struct run r;
		size_t len;

		memcpy(reason + 100, "\xc3\xa9", 2);
		n = ws_frame_close_payload(out, 4321, reason, 200);
		len = frame(f, WS_OP_CLOSE, true, out, n, NULL);
		CHECK(parse_all_ways(1024, false, f, len, &r));
		CHECK_EQ_INT(r.n, 1);
		CHECK_EQ_INT(r.ev[0].type, WS_EV_CLOSE);
		CHECK_EQ_INT(r.ev[0].code, 4321);
		CHECK_EQ_MEM(r.ev[0].data, r.ev[0].len, reason, n - 2);
		run_free(&r);
	}
}

static void
test_header_encode(void)
{
	uint8_t h[WS_FRAME_MAX_HEADER];
	static const uint8_t k[4] = { 0xaa, 0xbb, 0xcc, 0xdd };

	CHECK_EQ_INT(ws_frame_header_encode(h, WS_OP_TEXT, true, 5, NULL), 2);
	CHECK_EQ_MEM(h, 2, "\x81\x05", 2);
	CHECK_EQ_INT(ws_frame_header_encode(h, WS_OP_TEXT, false, 0, NULL), 2);
	CHECK_EQ_MEM(h, 2, "\x01\x00", 2);
	CHECK_EQ_INT(ws_frame_header_encode(h, WS_OP_CONTINUATION, true, 125,
	    k), 6);
	CHECK_EQ_MEM(h, 6, "\x80\xfd\xaa\xbb\xcc\xdd", 6);
	CHECK_EQ_INT(ws_frame_header_encode(h, WS_OP_BINARY, true, 126,
	    NULL), 4);
	CHECK_EQ_MEM(h, 4, "\x82\x7e\x00\x7e", 4);
	CHECK_EQ_INT(ws_frame_header_encode(h, WS_OP_BINARY, true, 65535,
	    k), 8);
	CHECK_EQ_MEM(h, 8, "\x82\xfe\xff\xff\xaa\xbb\xcc\xdd", 8);
	CHECK_EQ_INT(ws_frame_header_encode(h, WS_OP_PING, true, 65536,
	    NULL), 10);
	CHECK_EQ_MEM(h, 10, "\x89\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
	CHECK_EQ_INT(ws_frame_header_encode(h, WS_OP_BINARY, true,
	    0x0102030405060708ULL, k), 14);
	CHECK_EQ_MEM(h, 14, "\x82\xff\x01\x02\x03\x04\x05\x06\x07\x08"
	    "\xaa\xbb\xcc\xdd", 14);
}

/* Encode, parse back: every length boundary, masked and not. */
static void
test_round_trip(void)
{
	static const size_t lens[] = { 0, 1, 125, 126, 127, 128, 65535, 65536,
	    1 << 20 };
	static const uint8_t k[4] = { 0x01, 0x80, 0xfe, 0x7f };
	size_t i, j, n;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t len = lens[i];
		uint8_t *payload = malloc(len + 1), *buf = malloc(len + 14);
		struct ws_frame_parser p;
		struct ws_frame_event ev;
		int masked;

		for (j = 0; j < len; j++)
			payload[j] = (uint8_t)(j * 31 + (j >> 8));
		for (masked = 0; masked < 2; masked++) {
			n = frame(buf, WS_OP_BINARY, true, payload, len,
			    masked ? k : NULL);
			CHECK_EQ_INT(n - len, (len < 126 ? 2 : len < 65536 ?
			    4 : 10) + (masked ? 4 : 0));
			/* whole */
			ws_frame_parser_init(&p, 1 << 20, 0, masked);
			CHECK_EQ_INT(ws_frame_parse(&p, buf, n, &ev), n);
			CHECK_EQ_INT(ev.type, WS_EV_MESSAGE);
			CHECK_EQ_INT(ev.opcode, WS_OP_BINARY);
			CHECK(ev.data != NULL);
			CHECK_EQ_MEM(ev.data, ev.len, payload, len);
			/* a single frame is sized once, to its length */
			CHECK_EQ_INT(p.message_cap, len);
			ws_frame_parser_free(&p);
			/* in pieces of 1000 bytes, then byte-wise for the
			 * smaller ones */
			for (j = 0; j < 2; j++) {
				size_t chunk = j ? 1 : 1000, off = 0, got;

				if (j && len > 65536)
					break;
				ws_frame_parser_init(&p, 1 << 20, 0, masked);
				ev.type = WS_EV_NONE;
				while (off < n) {
					got = ws_frame_parse(&p, buf + off,
					    n - off < chunk ? n - off : chunk,
					    &ev);
					off += got;
					if (ev.type != WS_EV_NONE)
						break;
				}
				CHECK_EQ_INT(off, n);
				CHECK_EQ_INT(ev.type, WS_EV_MESSAGE);
				CHECK_EQ_MEM(ev.data, ev.len, payload, len);
				ws_frame_parser_free(&p);
			}
		}
		/* text of the same length round trips too */
		memset(payload, 'T', len);
		n = frame(buf, WS_OP_TEXT, true, payload, len, k);
		ws_frame_parser_init(&p, 1 << 20, 0, true);
		CHECK_EQ_INT(ws_frame_parse(&p, buf, n, &ev), n);
		CHECK_EQ_INT(ev.type, WS_EV_MESSAGE);
		CHECK_EQ_INT(ev.opcode, WS_OP_TEXT);
		CHECK_EQ_MEM(ev.data, ev.len, payload, len);
		ws_frame_parser_free(&p);
		free(payload);
		free(buf);
	}
}

/* Masking in pieces at any offset equals masking whole. */
static void
test_mask(void)
{
	static const uint8_t k[4] = { 0x12, 0x34, 0x56, 0x78 };
	uint8_t a[64], b[64];
	size_t len, split, i;

	for (len = 0; len <= 40; len++) {
		for (split = 0; split <= len; split++) {
			for (i = 0; i < len; i++)
				a[i] = b[i] = (uint8_t)(i * 3 + len);
			ws_frame_mask(a, len, k, 0);
			ws_frame_mask(b, split, k, 0);
			ws_frame_mask(b + split, len - split, k, split);
			CHECK_EQ_MEM(a, len, b, len);
			for (i = 0; i < len; i++)
				if (a[i] != (uint8_t)((i * 3 + len) ^
				    k[i % 4]))
					CHECK_EQ_INT(i, -1);
		}
	}
	/* an offset past 4 GiB still picks the right key byte */
	a[0] = 0;
	ws_frame_mask(a, 1, k, (1ULL << 32) + 2);
	CHECK_EQ_INT(a[0], 0x56);
	/* unaligned */
	memset(a, 0, sizeof(a));
	ws_frame_mask(a + 1, 17, k, 3);
	CHECK_EQ_INT(a[0], 0);
	CHECK_EQ_INT(a[1], 0x78);
	CHECK_EQ_INT(a[2], 0x12);
	CHECK_EQ_INT(a[16], 0x56);
	CHECK_EQ_INT(a[17], 0x78);
	CHECK_EQ_INT(a[18], 0);
}

/* The buffer grows geometrically within the limit, and a big one is freed
 * once its message has been delivered. */
static void
test_memory(void)
{
	static uint8_t buf[40000];
	uint8_t payload[9000];
	struct ws_frame_parser p;
	struct ws_frame_event ev;
	size_t n = 0, i, off, max_cap = 0;

	memset(payload, 'm', sizeof(payload));
	/* 1000 + 4 x 2000 = 9000 bytes in five fragments, limit 9000 */
	n += frame(buf + n, WS_OP_BINARY, false, payload, 1000, NULL);
	for (i = 0; i < 4; i++)
		n += frame(buf + n, WS_OP_CONTINUATION, i == 3, payload, 2000,
		    NULL);
	ws_frame_parser_init(&p, 9000, 0, false);
	for (off = 0; off < n; off++) {
		CHECK_EQ_INT(ws_frame_parse(&p, buf + off, 1, &ev), 1);
		if (p.message_cap > max_cap)
			max_cap = p.message_cap;
		if (ev.type != WS_EV_NONE)
			break;
	}
	CHECK_EQ_INT(off + 1, n);
	CHECK_EQ_INT(ev.type, WS_EV_MESSAGE);
	CHECK_EQ_INT(ev.len, 9000);
	CHECK_EQ_INT(max_cap, 9000);
	/* the next call, even with no input, frees the big buffer */
	CHECK_EQ_INT(ws_frame_parse(&p, NULL, 0, &ev), 0);
	CHECK_EQ_INT(ev.type, WS_EV_NONE);
	CHECK(p.message == NULL);
	CHECK_EQ_INT(p.message_cap, 0);
	/* a small buffer is kept for the next message */
	n = frame(buf, WS_OP_TEXT, true, payload, 100, NULL);
	CHECK_EQ_INT(ws_frame_parse(&p, buf, n, &ev), n);
	CHECK_EQ_INT(ev.type, WS_EV_MESSAGE);
	CHECK_EQ_INT(ws_frame_parse(&p, NULL, 0, &ev), 0);
	CHECK_EQ_INT(p.message_cap, 100);
	ws_frame_parser_free(&p);
	CHECK(p.message == NULL);

	/* allocation failure is an error with 1011 */
	ws_frame_parser_init(&p, 1 << 20, 0, false);
	n = frame(buf, WS_OP_BINARY, true, payload, 5000, NULL);
	fail_next_realloc = 1;
	CHECK_EQ_INT(ws_frame_parse(&p, buf, n, &ev), 4);
	CHECK_EQ_INT(ev.type, WS_EV_ERROR);
	CHECK_EQ_INT(ev.code, 1011);
	CHECK_EQ_INT(ws_frame_parse(&p, buf + 4, n - 4, &ev), 0);
	CHECK_EQ_INT(ev.code, 1011);
	ws_frame_parser_free(&p);
	fail_next_realloc = 0;
}

/* max_frame_size bounds each data frame, checked at its header; control
 * frames and the message limit are unaffected. */
static void
test_max_frame_size(void)
{
	static uint8_t buf[4096];
	uint8_t payload[1000];
	struct ws_frame_parser p;
	struct ws_frame_event ev;
	struct run r;
	size_t n, h, at = 0;

	memset(payload, 'f', sizeof(payload));

	/* exactly at the limit is fine, one over is 1009 at the header,
	 * before the mask key and any payload */
	n = frame(buf, WS_OP_BINARY, true, payload, 200, key);
	CHECK(parse_all_ways_f(1 << 20, 200, true, buf, n, &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK(is_message(&r.ev[0], WS_OP_BINARY, payload, 200));
	run_free(&r);
	h = n - 200 - 4;
	CHECK_EQ_INT(error_of_f(true, 1 << 20, 199, buf, n, &at), 1009);
	CHECK_EQ_INT(at, h);
	largest_realloc = 0;
	ws_frame_parser_init(&p, 1 << 20, 199, true);
	CHECK_EQ_INT(ws_frame_parse(&p, buf, n, &ev), h);
	CHECK_EQ_INT(ev.type, WS_EV_ERROR);
	CHECK_EQ_INT(ev.code, 1009);
	CHECK_EQ_STR(ev.error, "frame over max_frame_size");
	CHECK(p.message == NULL);
	CHECK_EQ_INT(largest_realloc, 0);
	ws_frame_parser_free(&p);

	/* 7-bit lengths too: a frame of 11 bytes over a limit of 10 */
	CHECK_EQ_INT(error_of_f(false, 1 << 20, 10, B(0x81, 0x0b, 'h', 'e',
	    'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'), &at), 1009);
	CHECK_EQ_INT(at, 2);
	/* a huge announced length, with a frame limit below the message
	 * limit */
	CHECK_EQ_INT(error_of_f(false, (uint64_t)1 << 30, 1 << 20, B(0x82,
	    0x7f, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00), &at), 1009);
	CHECK_EQ_INT(at, 10);

	/* a message of frames each within the limit may exceed it */
	n = frame(buf, WS_OP_TEXT, false, payload, 100, key);
	n += frame(buf + n, WS_OP_CONTINUATION, false, payload, 100, key);
	n += frame(buf + n, WS_OP_CONTINUATION, true, payload, 100, key);
	CHECK(parse_all_ways_f(1 << 20, 100, true, buf, n, &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK(is_message(&r.ev[0], WS_OP_TEXT, payload, 300));
	run_free(&r);
	/* a continuation over it fails at its own header */
	n = frame(buf, WS_OP_TEXT, false, payload, 100, key);
	h = n;
	n += frame(buf + n, WS_OP_CONTINUATION, true, payload, 101, key);
	CHECK_EQ_INT(error_of_f(true, 1 << 20, 100, buf, n, &at), 1009);
	CHECK_EQ_INT(at, h + 2);

	/* control frames are bounded by 125 alone: a 125-byte ping and a
	 * close with a 30-byte reason pass a limit of 10 */
	n = frame(buf, WS_OP_PING, true, payload, 125, key);
	buf[n] = 0x88;
	buf[n + 1] = 0x80 | 32;
	memcpy(buf + n + 2, key, 4);
	buf[n + 6] = 0x03;
	buf[n + 7] = 0xe8;
	memset(buf + n + 8, 'r', 30);
	ws_frame_mask(buf + n + 6, 32, key, 0);
	n += 6 + 32;
	CHECK(parse_all_ways_f(1 << 20, 10, true, buf, n, &r));
	CHECK_EQ_INT(r.n, 2);
	CHECK_EQ_INT(r.ev[0].type, WS_EV_PING);
	CHECK_EQ_INT(r.ev[0].len, 125);
	CHECK_EQ_INT(r.ev[1].type, WS_EV_CLOSE);
	CHECK_EQ_INT(r.ev[1].code, 1000);
	CHECK_EQ_INT(r.ev[1].len, 30);
	run_free(&r);

	/* a frame limit above the message limit: the message limit says */
	n = frame(buf, WS_OP_BINARY, true, payload, 300, key);
	ws_frame_parser_init(&p, 299, 1000, true);
	ws_frame_parse(&p, buf, n, &ev);
	CHECK_EQ_INT(ev.type, WS_EV_ERROR);
	CHECK_EQ_INT(ev.code, 1009);
	CHECK_EQ_STR(ev.error, "message over max_message_size");
	ws_frame_parser_free(&p);
	/* and 0 is no frame limit at all */
	CHECK(parse_all_ways_f(300, 0, true, buf, n, &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK(is_message(&r.ev[0], WS_OP_BINARY, payload, 300));
	run_free(&r);
}

/* The buffer follows the bytes received, not the announced length. */
static void
test_memory_announced(void)
{
	const size_t big = 10000000;	/* not a power of two */
	uint8_t hdr[WS_FRAME_MAX_HEADER], *payload, piece[1000];
	struct ws_frame_parser p;
	struct ws_frame_event ev;
	size_t h, off, got, chunk, max_ratio_bad = 0;

	/* 16 MiB announced, one byte sent: the first buffer, no more */
	largest_realloc = 0;
	h = ws_frame_header_encode(hdr, WS_OP_BINARY, true, 16 << 20, NULL);
	ws_frame_parser_init(&p, 32 << 20, 0, false);
	CHECK_EQ_INT(ws_frame_parse(&p, hdr, h, &ev), h);
	CHECK_EQ_INT(ev.type, WS_EV_NONE);
	CHECK(p.message == NULL);
	CHECK_EQ_INT(ws_frame_parse(&p, (const uint8_t *)"x", 1, &ev), 1);
	CHECK_EQ_INT(ev.type, WS_EV_NONE);
	CHECK_EQ_INT(p.message_cap, WS_FRAME_FIRST_BUFFER);
	CHECK_EQ_INT(largest_realloc, WS_FRAME_FIRST_BUFFER);
	/* 100 KB more, in pieces: at most twice what arrived */
	memset(piece, 'y', sizeof(piece));
	for (off = 0; off < 100; off++) {
		CHECK_EQ_INT(ws_frame_parse(&p, piece, sizeof(piece), &ev),
		    sizeof(piece));
		if (p.message_cap > WS_FRAME_FIRST_BUFFER &&
		    p.message_cap > 2 * p.message_len)
			max_ratio_bad++;
	}
	CHECK_EQ_INT(max_ratio_bad, 0);
	CHECK_EQ_INT(p.message_len, 100001);
	CHECK(p.message_cap < 2 * 100001);
	ws_frame_parser_free(&p);

	/* the same for the first, non-final fragment of a message */
	largest_realloc = 0;
	h = ws_frame_header_encode(hdr, WS_OP_TEXT, false, 1 << 20, NULL);
	ws_frame_parser_init(&p, 32 << 20, 0, false);
	CHECK_EQ_INT(ws_frame_parse(&p, hdr, h, &ev), h);
	CHECK_EQ_INT(ws_frame_parse(&p, (const uint8_t *)"x", 1, &ev), 1);
	CHECK_EQ_INT(ev.type, WS_EV_NONE);
	CHECK_EQ_INT(p.message_cap, WS_FRAME_FIRST_BUFFER);
	CHECK_EQ_INT(largest_realloc, WS_FRAME_FIRST_BUFFER);
	ws_frame_parser_free(&p);

	/* a small frame gets its size, not the first buffer */
	ws_frame_parser_init(&p, 32 << 20, 0, false);
	CHECK_EQ_INT(ws_frame_parse(&p, B(0x82, 0x03, 'a'), &ev), 3);
	CHECK_EQ_INT(p.message_cap, 3);
	ws_frame_parser_free(&p);

	/* a big frame, fed in pieces of odd sizes, ends in a buffer of its
	 * exact size, never more than twice what had arrived on the way,
	 * and is released after delivery */
	payload = malloc(big);
	CHECK(payload != NULL);
	if (payload == NULL)
		return;
	for (off = 0; off < big; off++)
		payload[off] = (uint8_t)(off * 7 + (off >> 12));
	h = ws_frame_header_encode(hdr, WS_OP_BINARY, true, big, NULL);
	ws_frame_parser_init(&p, 16 << 20, 0, false);
	CHECK_EQ_INT(ws_frame_parse(&p, hdr, h, &ev), h);
	max_ratio_bad = 0;
	for (off = 0, chunk = 1; off < big; off += got) {
		chunk = chunk * 3 % 65521 + 1;
		got = ws_frame_parse(&p, payload + off,
		    big - off < chunk ? big - off : chunk, &ev);
		CHECK(got > 0);
		if (got == 0)
			break;
		if (p.message_cap > WS_FRAME_FIRST_BUFFER &&
		    p.message_cap > 2 * p.message_len)
			max_ratio_bad++;
	}
	CHECK_EQ_INT(max_ratio_bad, 0);
	CHECK_EQ_INT(ev.type, WS_EV_MESSAGE);
	CHECK_EQ_MEM(ev.data, ev.len, payload, big);
	CHECK_EQ_INT(p.message_cap, big);
	CHECK_EQ_INT(ws_frame_parse(&p, NULL, 0, &ev), 0);
	CHECK(p.message == NULL);
	ws_frame_parser_free(&p);
	free(payload);
}

/* Pointers in an event stay valid until the next call, and the message
 * after a big one is whole. */
static void
test_consecutive_messages(void)
{
	static uint8_t buf[3 * (14 + 5000)];
	uint8_t payload[5000];
	struct run r;
	size_t n = 0;

	memset(payload, 'a', sizeof(payload));
	n += frame(buf + n, WS_OP_BINARY, true, payload, 5000, key);
	payload[0] = 'b';
	n += frame(buf + n, WS_OP_TEXT, false, payload, 10, key);
	n += frame(buf + n, WS_OP_CONTINUATION, true, payload, 10, key);
	n += frame(buf + n, WS_OP_BINARY, true, payload, 3, key);
	CHECK(parse_all_ways(5000, true, buf, n, &r));
	CHECK_EQ_INT(r.n, 3);
	CHECK_EQ_INT(r.ev[0].len, 5000);
	CHECK_EQ_INT(r.ev[0].data[0], 'a');
	CHECK_EQ_INT(r.ev[1].len, 20);
	CHECK_EQ_INT(r.ev[1].data[0], 'b');
	CHECK_EQ_INT(r.ev[1].data[10], 'b');
	CHECK(is_message(&r.ev[2], WS_OP_BINARY, "baa", 3));
	CHECK_EQ_INT(r.consumed, n);
	run_free(&r);
}

/* Frame builder with RSV1. */
static size_t
frame_rsv1(uint8_t *out, enum ws_frame_opcode op, bool fin, bool rsv1,
    const void *payload, size_t len, const uint8_t *k)
{
	size_t h = ws_frame_header_encode_rsv1(out, op, fin, rsv1, len, k);

	memcpy(out + h, payload, len);
	if (k)
		ws_frame_mask(out + h, len, k, 0);
	return h + len;
}

static bool
is_compressed(const struct rec *e, enum ws_frame_opcode op, const void *data,
    size_t len)
{
	return is_message(e, op, data, len) && e->compressed;
}

/* RSV1 stays an error unless an extension allows it, and the setter can
 * turn it back off. */
static void
test_rsv1_not_allowed(void)
{
	struct ws_frame_parser p;
	struct ws_frame_event ev;

	allow_rsv1 = false;
	CHECK_EQ_INT(CLIENT_ERROR(0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9,
	    0x07, 0x00), 1002);
	ws_frame_parser_init(&p, 1024, 0, false);
	CHECK(!p.allow_rsv1);
	ws_frame_parser_allow_rsv1(&p, true);
	ws_frame_parser_allow_rsv1(&p, false);
	CHECK_EQ_INT(ws_frame_parse(&p, B(0xc2, 0x00), &ev), 2);
	CHECK_EQ_INT(ev.type, WS_EV_ERROR);
	CHECK_EQ_INT(ev.code, 1002);
	CHECK_EQ_STR(ev.error, "reserved bit set without an extension");
	ws_frame_parser_free(&p);
	/* an uncompressed message reports compressed false */
	ws_frame_parser_init(&p, 1024, 0, false);
	CHECK_EQ_INT(ws_frame_parse(&p, B(0x81, 0x01, 'a'), &ev), 3);
	CHECK_EQ_INT(ev.type, WS_EV_MESSAGE);
	CHECK(!ev.compressed);
	ws_frame_parser_free(&p);
}

/* RFC 7692 7.2.3.1: "Hello" in one compressed DEFLATE block, whole and in
 * two fragments (RSV1 on the first only), unmasked and masked.  The
 * payload is delivered as received, and it is not UTF-8 (0xf2 0x48 is an
 * invalid sequence): compressed text is not validated by the parser. */
static void
test_rsv1_rfc7692(void)
{
	static const uint8_t hello[] = { 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07,
	    0x00 };
	uint8_t buf[64];
	struct run r;
	size_t n;

	allow_rsv1 = true;
	CHECK(!utf8_valid(hello, sizeof(hello)));
	CHECK(parse_all_ways(1024, false, B(0xc1, 0x07, 0xf2, 0x48, 0xcd,
	    0xc9, 0xc9, 0x07, 0x00), &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK(is_compressed(&r.ev[0], WS_OP_TEXT, hello, sizeof(hello)));
	CHECK_EQ_INT(r.ev[0].at, 9);
	run_free(&r);
	/* the RFC's fragments of 3 and 4 bytes */
	CHECK(parse_all_ways(1024, false, B(0x41, 0x03, 0xf2, 0x48, 0xcd,
	    0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00), &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK(is_compressed(&r.ev[0], WS_OP_TEXT, hello, sizeof(hello)));
	CHECK_EQ_INT(r.ev[0].at, 11);
	run_free(&r);
	/* masked, as a client sends it, with a ping between the fragments */
	n = frame_rsv1(buf, WS_OP_TEXT, false, true, hello, 3, key);
	n += frame(buf + n, WS_OP_PING, true, "p", 1, key);
	n += frame(buf + n, WS_OP_CONTINUATION, true, hello + 3, 4, key);
	CHECK(parse_all_ways(1024, true, buf, n, &r));
	CHECK_EQ_INT(r.n, 2);
	CHECK_EQ_INT(r.ev[0].type, WS_EV_PING);
	CHECK(is_compressed(&r.ev[1], WS_OP_TEXT, hello, sizeof(hello)));
	run_free(&r);
	allow_rsv1 = false;
}

/* Where RSV1 is still a protocol error when allowed. */
static void
test_rsv1_misplaced(void)
{
	size_t at = 99;

	allow_rsv1 = true;
	/* on control frames */
	CHECK_EQ_INT(CLIENT_ERROR(0xc9, 0x00), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0xca, 0x00), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0xc8, 0x02, 0x03, 0xe8), 1002);
	CHECK_EQ_INT(SERVER_ERROR(0xc9, 0x80, 1, 2, 3, 4), 1002);
	/* on a continuation, of an uncompressed or a compressed message,
	 * final or not: refused at its first two bytes */
	CHECK_EQ_INT(error_of(false, 1024, B(0x01, 0x01, 'a', 0xc0, 0x01,
	    'b'), &at), 1002);
	CHECK_EQ_INT(at, 5);
	CHECK_EQ_INT(CLIENT_ERROR(0x41, 0x01, 'a', 0xc0, 0x01, 'b'), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0x41, 0x01, 'a', 0x40, 0x01, 'b', 0x80,
	    0x00), 1002);
	/* ... and with no message open */
	CHECK_EQ_INT(CLIENT_ERROR(0xc0, 0x00), 1002);
	/* RSV2 and RSV3 remain errors, alone or with RSV1 */
	CHECK_EQ_INT(CLIENT_ERROR(0xa1, 0x00), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0x91, 0x00), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0xe1, 0x00), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0xd2, 0x00), 1002);
	CHECK_EQ_INT(CLIENT_ERROR(0xf2, 0x00), 1002);
	/* a reserved opcode with RSV1 */
	CHECK_EQ_INT(CLIENT_ERROR(0xc3, 0x00), 1002);
	/* a new compressed message inside an open one */
	CHECK_EQ_INT(CLIENT_ERROR(0x01, 0x01, 'a', 0xc1, 0x01, 'b'), 1002);
	allow_rsv1 = false;
}

/* Allowing RSV1 leaves uncompressed messages as they were: text is still
 * validated as it arrives; only compressed messages skip it. */
static void
test_rsv1_utf8(void)
{
	struct run r;
	size_t at = 99;

	allow_rsv1 = true;
	CHECK_EQ_INT(error_of(false, 1024, B(0x81, 0x03, 'a', 0xff, 'b'),
	    &at), 1007);
	CHECK_EQ_INT(at, 4);
	CHECK_EQ_INT(CLIENT_ERROR(0x81, 0x02, 'a', 0xce), 1007);
	/* compressed text: bad bytes and a cut character pass */
	CHECK(parse_all_ways(1024, false, B(0xc1, 0x03, 'a', 0xff, 'b',
	    0x41, 0x02, 'a', 0xce, 0x80, 0x01, 0xed), &r));
	CHECK_EQ_INT(r.n, 2);
	CHECK(is_compressed(&r.ev[0], WS_OP_TEXT, "a\xff" "b", 3));
	CHECK(is_compressed(&r.ev[1], WS_OP_TEXT, "a\xce\xed", 3));
	run_free(&r);
	/* the flag belongs to one message: compressed, plain, compressed
	 * binary, plain fragmented, empty compressed */
	CHECK(parse_all_ways(1024, false, B(0xc1, 0x01, 0xff,
	    0x81, 0x01, 'x',
	    0xc2, 0x02, 0x00, 0x01,
	    0x02, 0x01, 'y', 0x80, 0x01, 'z',
	    0xc1, 0x00), &r));
	CHECK_EQ_INT(r.n, 5);
	CHECK(is_compressed(&r.ev[0], WS_OP_TEXT, "\xff", 1));
	CHECK(is_message(&r.ev[1], WS_OP_TEXT, "x", 1));
	CHECK(!r.ev[1].compressed);
	CHECK(is_compressed(&r.ev[2], WS_OP_BINARY, "\x00\x01", 2));
	CHECK(is_message(&r.ev[3], WS_OP_BINARY, "yz", 2));
	CHECK(!r.ev[3].compressed);
	CHECK(is_compressed(&r.ev[4], WS_OP_TEXT, "", 0));
	run_free(&r);
	/* an uncompressed text message after a compressed one that ended
	 * inside a "character" starts clean */
	CHECK(parse_all_ways(1024, false, B(0xc1, 0x01, 0xe2, 0x81, 0x01,
	    0x80), &r));
	CHECK_EQ_INT(r.n, 2);
	CHECK_EQ_INT(r.ev[1].type, WS_EV_ERROR);
	CHECK_EQ_INT(r.ev[1].code, 1007);
	run_free(&r);
	allow_rsv1 = false;
}

/* The compressed payload is bounded by max_message_size and
 * max_frame_size like any other, with WS_FRAME_DEFLATE_SLACK more: what
 * inflates to the limit may be a little longer compressed. */
static void
test_rsv1_limits(void)
{
	static uint8_t buf[3 * (14 + 400)];
	uint8_t payload[400];
	struct run r;
	size_t n, h, at = 0;
	size_t max = 200, big = max + WS_FRAME_DEFLATE_SLACK(max); /* just in */

	allow_rsv1 = true;
	memset(payload, 0xfe, sizeof(payload));
	n = frame_rsv1(buf, WS_OP_TEXT, true, true, payload, big, key);
	CHECK(parse_all_ways(max, true, buf, n, &r));
	CHECK_EQ_INT(r.n, 1);
	CHECK(is_compressed(&r.ev[0], WS_OP_TEXT, payload, big));
	run_free(&r);
	h = n - big - 4;
	CHECK_EQ_INT(error_of(true, max - 1, buf, n, &at), 1009);
	CHECK_EQ_INT(at, h);
	CHECK_EQ_INT(error_of_f(true, 1 << 20, max - 1, buf, n, &at), 1009);
	CHECK_EQ_INT(at, h);
	/* across fragments */
	n = frame_rsv1(buf, WS_OP_BINARY, false, true, payload, 200, key);
	h = n;
	n += frame(buf + n, WS_OP_CONTINUATION, true, payload, big - 199, key);
	CHECK_EQ_INT(error_of(true, max, buf, n, &at), 1009);
	CHECK_EQ_INT(at, h + 2);
	/* uncompressed, the limit is the limit */
	n = frame(buf, WS_OP_TEXT, true, payload, max + 1, key);
	CHECK_EQ_INT(error_of(true, max, buf, n, &at), 1009);
	allow_rsv1 = false;
}

static void
test_header_encode_rsv1(void)
{
	uint8_t h[WS_FRAME_MAX_HEADER];
	static const uint8_t k[4] = { 0xaa, 0xbb, 0xcc, 0xdd };

	CHECK_EQ_INT(ws_frame_header_encode_rsv1(h, WS_OP_TEXT, true, true, 7,
	    NULL), 2);
	CHECK_EQ_MEM(h, 2, "\xc1\x07", 2);
	CHECK_EQ_INT(ws_frame_header_encode_rsv1(h, WS_OP_TEXT, false, true, 3,
	    NULL), 2);
	CHECK_EQ_MEM(h, 2, "\x41\x03", 2);
	CHECK_EQ_INT(ws_frame_header_encode_rsv1(h, WS_OP_BINARY, true, true,
	    65536, k), 14);
	CHECK_EQ_MEM(h, 14, "\xc2\xff\x00\x00\x00\x00\x00\x01\x00\x00"
	    "\xaa\xbb\xcc\xdd", 14);
	CHECK_EQ_INT(ws_frame_header_encode_rsv1(h, WS_OP_TEXT, true, false, 5,
	    NULL), 2);
	CHECK_EQ_MEM(h, 2, "\x81\x05", 2);
	CHECK_EQ_INT(ws_frame_header_encode_rsv1(h, WS_OP_BINARY, true, false,
	    126, NULL), 4);
	CHECK_EQ_MEM(h, 4, "\x82\x7e\x00\x7e", 4);
}

/* Encode with RSV1, parse back with RSV1 allowed: every length boundary,
 * masked and not, whole and byte by byte. */
static void
test_round_trip_rsv1(void)
{
	static const size_t lens[] = { 0, 1, 125, 126, 65535, 65536 };
	static const uint8_t k[4] = { 0x01, 0x80, 0xfe, 0x7f };
	size_t i, j, n;

	allow_rsv1 = true;
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t len = lens[i];
		uint8_t *payload = malloc(len + 1), *buf = malloc(len + 14);
		struct run r;
		int masked;

		for (j = 0; j < len; j++)
			payload[j] = (uint8_t)(j * 37 + (j >> 9));
		for (masked = 0; masked < 2; masked++) {
			n = frame_rsv1(buf, WS_OP_TEXT, true, true, payload,
			    len, masked ? k : NULL);
			CHECK(parse_all_ways(1 << 20, masked, buf, n, &r));
			CHECK_EQ_INT(r.n, 1);
			CHECK(is_compressed(&r.ev[0], WS_OP_TEXT, payload,
			    len));
			run_free(&r);
		}
		free(payload);
		free(buf);
	}
	allow_rsv1 = false;
}

/*
 * Save a parser cut anywhere in a stream (inside a header, a payload, a
 * fragmented message with a ping inside it) and load the state into a
 * fresh one: fed the rest, both give the same events.
 */
static void
test_save_load(void)
{
	static const char part1[] = "h\xc3\xa9llo \xe2\x82", part2[] =
	    "\xac w\xc3\xb6rld";
	uint8_t stream[1024], big[300];
	struct ws_frame_parser a, b;
	struct run ra, rb, prefix;
	struct blob blob;
	size_t len = 0, k;

	memset(big, 'x', sizeof(big));
	len += frame(stream + len, WS_OP_TEXT, false, part1,
	    sizeof(part1) - 1, key);
	len += frame(stream + len, WS_OP_PING, true, "p", 1, key);
	len += frame(stream + len, WS_OP_CONTINUATION, true, part2,
	    sizeof(part2) - 1, key);
	len += frame(stream + len, WS_OP_BINARY, true, big, sizeof(big), key);
	len += frame(stream + len, WS_OP_TEXT, true, "", 0, key);
	for (k = 0; k <= len; k++) {
		ws_frame_parser_init(&a, 1 << 20, 0, true);
		CHECK(run_parse(&a, stream, k, 0, &prefix));
		run_free(&prefix);
		memset(&blob, 0, sizeof(blob));
		ws_frame_parser_save(&a, &blob);
		CHECK(!blob.failed);
		blob_reader(&blob, blob.data, blob.len);
		ws_frame_parser_init(&b, 1 << 20, 0, true);
		CHECK_EQ_INT(ws_frame_parser_load(&b, &blob), 0);
		CHECK(!blob.failed && blob.pos == blob.len);
		free(blob.data);
		CHECK(run_parse(&a, stream + k, len - k, 0, &ra));
		CHECK(run_parse(&b, stream + k, len - k, 0, &rb));
		if (!runs_equal(&ra, &rb))
			fprintf(stderr, "  cut at %zu: loaded parser differs\n",
			    k);
		CHECK(runs_equal(&ra, &rb));
		run_free(&ra);
		run_free(&rb);
		ws_frame_parser_free(&a);
		ws_frame_parser_free(&b);
	}

	/* A state over the new parser's limits is refused. */
	ws_frame_parser_init(&a, 1 << 20, 0, true);
	k = frame(stream, WS_OP_BINARY, false, big, sizeof(big), key);
	CHECK(run_parse(&a, stream, k, 0, &prefix));
	run_free(&prefix);
	memset(&blob, 0, sizeof(blob));
	ws_frame_parser_save(&a, &blob);
	blob_reader(&blob, blob.data, blob.len);
	ws_frame_parser_init(&b, 100, 0, true);
	CHECK_EQ_INT(ws_frame_parser_load(&b, &blob), -1);
	ws_frame_parser_free(&b);
	/* And so is a truncated one. */
	blob_reader(&blob, blob.data, blob.len - 1);
	ws_frame_parser_init(&b, 1 << 20, 0, true);
	CHECK_EQ_INT(ws_frame_parser_load(&b, &blob), -1);
	ws_frame_parser_free(&b);
	free(blob.data);
	ws_frame_parser_free(&a);
}

int
main(void)
{
	RUN(test_rfc_unmasked_text);
	RUN(test_rfc_masked_text);
	RUN(test_rfc_fragmented);
	RUN(test_rfc_ping_pong);
	RUN(test_rfc_long_binary);
	RUN(test_reserved_bits);
	RUN(test_reserved_opcodes);
	RUN(test_masking_role);
	RUN(test_control_frames);
	RUN(test_length_encoding);
	RUN(test_fragment_sequence);
	RUN(test_control_between_fragments);
	RUN(test_empty_messages);
	RUN(test_max_message_size);
	RUN(test_max_frame_size);
	RUN(test_utf8_fail_fast);
	RUN(test_close);
	RUN(test_close_code_valid);
	RUN(test_close_payload);
	RUN(test_header_encode);
	RUN(test_round_trip);
	RUN(test_mask);
	RUN(test_memory);
	RUN(test_memory_announced);
	RUN(test_consecutive_messages);
	RUN(test_rsv1_not_allowed);
	RUN(test_rsv1_rfc7692);
	RUN(test_rsv1_misplaced);
	RUN(test_rsv1_utf8);
	RUN(test_rsv1_limits);
	RUN(test_header_encode_rsv1);
	RUN(test_round_trip_rsv1);
	RUN(test_save_load);
	return check_summary();
}
