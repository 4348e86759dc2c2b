/*
 * fuzz_ws_frame: libFuzzer driver for the frame parser.
 *
 * Input layout: byte 0 picks how the stream is cut into pieces with its
 * low three bits (whole, 1, 2, 3, 7 or 64 bytes, sizes read from the
 * stream itself, or 1000) and, with its top bit, whether RSV1 is allowed
 * (permessage-deflate agreed), byte 1
 * picks max_message_size with its low two bits (64 KiB most of the time,
 * sometimes 0 or 200) and max_frame_size with the next two (0, i.e. none,
 * most of the time, sometimes 100 or 20000), the rest is the byte stream.  The stream goes to a server parser (frames
 * must be masked) and to a client parser (they must not be), each fed
 * whole and in pieces, and checks:
 *   - consumed <= the piece; a piece is used up when no event comes; any
 *     event but an error consumes something;
 *   - MESSAGE: TEXT or BINARY, non-NULL data, within max_message_size
 *     (and the deflate slack for a compressed one),
 *     uncompressed text is valid UTF-8, compressed only when RSV1 is
 *     allowed; the buffer never outgrows the limit nor twice
 *     the bytes received (beyond WS_FRAME_FIRST_BUFFER), and is released
 *     after delivery when big; no data frame passes max_frame_size;
 *   - PING/PONG within 125 bytes; CLOSE with a valid code or 1005 (and
 *     then no reason), the reason valid UTF-8 within 123 bytes;
 *   - ERROR with 1002, 1007, 1009 or 1011, after which parse returns 0
 *     and the same error;
 *   - the events (and the offsets where they come) do not depend on how
 *     the input was cut;
 *   - each message and close re-encoded with the encoder (RSV1 set again
 *     on a compressed message) parses back to the same event.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "ws_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_MESSAGE	(1 << 16)

struct outcome {
	uint64_t hash;		/* over every event and where it came */
	size_t events;
	size_t consumed;
	enum ws_frame_event_type last;
	uint16_t last_code;
};

static void
require(bool cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_ws_frame: invariant failed: %s\n", what);
		abort();
	}
}

static uint64_t
fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t
fnv_u64(uint64_t h, uint64_t v)
{
	return fnv(h, &v, sizeof(v));
}

/* The size of the next piece. */
static size_t
piece_size(unsigned mode, const uint8_t *in, size_t off, size_t len)
{
	static const size_t fixed[] = { 0, 1, 2, 3, 7, 64, 0, 1000 };
	size_t n = len - off;
	size_t want;

	if (mode == 6)
		want = (size_t)(in[off] % 17) + 1;
	else
		want = fixed[mode];
	if (want != 0 && want < n)
		n = want;
	return n;
}

static void
check_event(const struct ws_frame_parser *p, const struct ws_frame_event *ev,
    uint64_t max)
{
	require(!ev->compressed || ev->type == WS_EV_MESSAGE,
	    "only a message is compressed");
	switch (ev->type) {
	case WS_EV_MESSAGE:
		require(ev->opcode == WS_OP_TEXT || ev->opcode == WS_OP_BINARY,
		    "message opcode is text or binary");
		require(ev->data != NULL, "message data is not NULL");
		/* A compressed message may pass the limit by the slack
		 * deflate needs (ws_frame.h): it bounds the inflated size. */
		require(ev->len <= (ev->compressed ? max +
		    WS_FRAME_DEFLATE_SLACK(max) : max),
		    "message within max_message_size");
		require(!ev->compressed || p->allow_rsv1,
		    "compressed only when RSV1 is allowed");
		if (ev->opcode == WS_OP_TEXT && !ev->compressed)
			require(utf8_valid(ev->data, ev->len),
			    "text message is valid UTF-8");
		break;
	case WS_EV_PING:
	case WS_EV_PONG:
		require(ev->len <= WS_FRAME_MAX_CONTROL, "control payload <= 125");
		require(ev->len == 0 || ev->data != NULL, "ping data");
		break;
	case WS_EV_CLOSE:
		require(ws_frame_close_code_valid(ev->code) ||
		    ev->code == WS_CLOSE_NO_STATUS, "close code valid or 1005");
		require(ev->code != WS_CLOSE_NO_STATUS || ev->len == 0,
		    "no reason without a code");
		require(ev->len <= WS_FRAME_MAX_REASON, "reason <= 123");
		require(ev->len == 0 || ev->data != NULL, "reason data");
		require(utf8_valid(ev->data, ev->len), "reason is valid UTF-8");
		break;
	case WS_EV_ERROR:
		require(ev->code == WS_CLOSE_PROTOCOL_ERROR ||
		    ev->code == WS_CLOSE_INVALID_DATA ||
		    ev->code == WS_CLOSE_TOO_BIG ||
		    ev->code == WS_CLOSE_INTERNAL_ERROR, "error close code");
		require(ev->error != NULL, "error text");
		break;
	case WS_EV_NONE:
		break;
	}
	require(p->message_cap <= (p->allow_rsv1 ? max +
	    WS_FRAME_DEFLATE_SLACK(max) : max),
	    "buffer within max_message_size");
	require(p->message_len <= p->message_cap, "message within buffer");
	require(p->message_cap <= WS_FRAME_FIRST_BUFFER ||
	    p->message_cap <= 2 * p->message_len,
	    "buffer within twice the bytes received");
	if (p->state == WS_FRAME_PAYLOAD && !(p->opcode & 0x08) &&
	    p->max_frame_size != 0)
		require(p->payload_len <= p->max_frame_size +
		    (p->allow_rsv1 ? WS_FRAME_DEFLATE_SLACK(p->max_frame_size) :
		    0), "data frame within max_frame_size");
}

/* Encode a delivered event again and parse it back. */
static void
round_trip(const struct ws_frame_event *ev, uint64_t max)
{
	static const uint8_t key[4] = { 0xde, 0xad, 0xbe, 0xef };
	struct ws_frame_parser p;
	struct ws_frame_event back;
	uint8_t *buf, close[WS_FRAME_MAX_CONTROL];
	const uint8_t *payload = ev->data;
	size_t len = ev->len, h, n;
	enum ws_frame_opcode op = ev->opcode;

	if (ev->type == WS_EV_CLOSE) {
		op = WS_OP_CLOSE;
		len = 0;
		if (ev->code != WS_CLOSE_NO_STATUS)
			len = ws_frame_close_payload(close, ev->code,
			    (const char *)ev->data, ev->len);
		require(len == (ev->code == WS_CLOSE_NO_STATUS ? 0 : 2 + ev->len),
		    "close payload keeps a valid reason");
		payload = close;
	} else if (ev->type != WS_EV_MESSAGE) {
		return;
	}
	buf = malloc(WS_FRAME_MAX_HEADER + len);
	require(buf != NULL, "malloc");
	h = ws_frame_header_encode_rsv1(buf, op, true, ev->compressed, len,
	    key);
	memcpy(buf + h, payload, len);
	ws_frame_mask(buf + h, len, key, 0);
	ws_frame_parser_init(&p, max, 0, true);
	ws_frame_parser_allow_rsv1(&p, ev->compressed);
	n = ws_frame_parse(&p, buf, h + len, &back);
	require(n == h + len, "re-encoded frame consumed whole");
	require(back.type == ev->type, "re-encoded frame, same event");
	require(back.compressed == ev->compressed,
	    "re-encoded frame, same RSV1");
	require(back.code == ev->code, "re-encoded close, same code");
	require(back.len == ev->len &&
	    (ev->len == 0 || memcmp(back.data, ev->data, ev->len) == 0),
	    "re-encoded frame, same payload");
	ws_frame_parser_free(&p);
	free(buf);
}

static void
run(const uint8_t *in, size_t len, unsigned mode, uint64_t max,
    uint64_t frame_max, bool expect_masked, bool rsv1, bool encode,
    struct outcome *o)
{
	struct ws_frame_parser p;
	struct ws_frame_event ev, again;
	size_t off = 0, piece, n;

	memset(o, 0, sizeof(*o));
	o->hash = 0xcbf29ce484222325ULL;
	ws_frame_parser_init(&p, max, frame_max, expect_masked);
	ws_frame_parser_allow_rsv1(&p, rsv1);
	while (off < len) {
		piece = piece_size(mode, in, off, len);
		n = ws_frame_parse(&p, in + off, piece, &ev);
		require(n <= piece, "consumed <= len");
		off += n;
		check_event(&p, &ev, max);
		if (ev.type == WS_EV_NONE) {
			require(n == piece, "no event: the piece is used up");
			continue;
		}
		require(n > 0 || ev.type == WS_EV_ERROR,
		    "an event consumes input");
		o->events++;
		o->last = ev.type;
		o->last_code = ev.code;
		o->hash = fnv_u64(o->hash, ev.type);
		o->hash = fnv_u64(o->hash, ev.opcode);
		o->hash = fnv_u64(o->hash, ev.compressed);
		o->hash = fnv_u64(o->hash, ev.code);
		o->hash = fnv_u64(o->hash, ev.len);
		o->hash = fnv_u64(o->hash, off);
		if (ev.len)
			o->hash = fnv(o->hash, ev.data, ev.len);
		if (ev.type == WS_EV_ERROR) {
			n = ws_frame_parse(&p, in + off, len - off, &again);
			require(n == 0, "after ERROR, parse returns 0");
			require(again.type == WS_EV_ERROR &&
			    again.code == ev.code, "after ERROR, the same ERROR");
			break;
		}
		if (encode)
			round_trip(&ev, max);
		if (ev.type == WS_EV_MESSAGE) {
			/* an empty call releases a big buffer */
			n = ws_frame_parse(&p, NULL, 0, &again);
			require(n == 0 && again.type == WS_EV_NONE,
			    "empty call after a message");
			require(p.message_cap <= 4096,
			    "big buffer released after its message");
		}
	}
	o->consumed = off;
	ws_frame_parser_free(&p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t maxes[] = { FUZZ_MAX_MESSAGE, FUZZ_MAX_MESSAGE,
	    200, 0 };
	static const uint64_t frame_maxes[] = { 0, 0, 100, 20000 };
	struct outcome whole, cut;
	unsigned mode;
	uint64_t max, frame_max;
	bool rsv1;
	int side;

	if (size < 2)
		return 0;
	mode = data[0] % 8;
	rsv1 = (data[0] & 0x80) != 0;
	max = maxes[data[1] % 4];
	frame_max = frame_maxes[(data[1] >> 2) % 4];
	data += 2;
	size -= 2;

	for (side = 0; side < 2; side++) {
		bool masked = side == 0;

		run(data, size, 0, max, frame_max, masked, rsv1, true, &whole);
		require(whole.consumed <= size, "consumed <= input");
		if (whole.last != WS_EV_ERROR)
			require(whole.consumed == size, "all input consumed");
		if (mode != 0) {
			run(data, size, mode, max, frame_max, masked, rsv1, false,
			    &cut);
			require(cut.hash == whole.hash &&
			    cut.events == whole.events &&
			    cut.consumed == whole.consumed,
			    "same events whole and in pieces");
		}
	}
	return 0;
}
