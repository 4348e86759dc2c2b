/*
 * ws_frame: the RFC 6455 frame codec.
 *
 * The parser gathers a frame's header (2 bytes, then 2 or 8 of extended
 * length, then 4 of mask) into p->header, checks each part as soon as it is
 * whole, and then copies the payload into the message buffer (data frames)
 * or p->control (control frames), unmasking it as it arrives.  Every
 * decision that can be made from the header is made there: a frame over
 * max_frame_size, or one that would overflow max_message_size, is refused
 * before any of its payload is read.  Text is validated as each chunk is
 * unmasked, and the error is reported at the byte that makes it invalid.
 *
 * The message buffer follows the bytes that have arrived, not the length
 * a header announces: a peer that announces 16 MiB and sends one byte
 * costs WS_FRAME_FIRST_BUFFER, not 16 MiB.
 *
 * With permessage-deflate agreed (ws_frame_parser_allow_rsv1), RSV1 on a
 * message's first frame marks it compressed: the payload is reassembled
 * as binary would be (no UTF-8 check: it is deflate data) and delivered
 * with compressed set, for the caller to inflate and validate.
 *
 * On an error the parser frees its buffer and keeps refusing input; the
 * number of bytes it reports consumed runs up to and including the byte
 * that revealed the error.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "utf8.h"
#include "ws_frame.h"

/* A message buffer larger than this is freed once its message has been
 * delivered, so that idle connections hold no big buffers. */
#define WS_FRAME_KEEP_BUFFER	4096

/* Header bits. */
#define WS_FIN		0x80
#define WS_RSV		0x70
#define WS_RSV1		0x40
#define WS_OPCODE	0x0f
#define WS_MASK		0x80
#define WS_LEN7		0x7f

/* MESSAGE events with no payload point here rather than at NULL. */
static const uint8_t ws_frame_empty[1];

static bool
ws_frame_is_control(unsigned opcode)
{
	return (opcode & 0x08) != 0;
}

static bool
ws_frame_opcode_known(unsigned opcode)
{
	switch (opcode) {
	case WS_OP_CONTINUATION:
	case WS_OP_TEXT:
	case WS_OP_BINARY:
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		return true;
	default:
		return false;
	}
}

static void
ws_frame_buffer_free(struct ws_frame_parser *p)
{
	free(p->message);
	p->message = NULL;
	p->message_cap = 0;
}

void
ws_frame_parser_init(struct ws_frame_parser *p, uint64_t max_message_size,
    uint64_t max_frame_size, bool expect_masked)
{
	memset(p, 0, sizeof(*p));
	/* Sizes are computed in size_t; keep them far from overflow. */
	if (max_message_size > SIZE_MAX / 2)
		max_message_size = SIZE_MAX / 2;
	p->max_message_size = max_message_size;
	p->max_frame_size = max_frame_size;
	p->expect_masked = expect_masked;
	p->state = WS_FRAME_HEADER;
	p->header_need = 2;
	p->message = NULL;
	p->error = NULL;
	utf8_init(&p->utf8);
}

void
ws_frame_parser_allow_rsv1(struct ws_frame_parser *p, bool allow)
{
	p->allow_rsv1 = allow;
}

void
ws_frame_parser_free(struct ws_frame_parser *p)
{
	ws_frame_buffer_free(p);
	p->message_len = 0;
	free(p->control);
	p->control = NULL;
}

/* Enter the failed state and describe the error in ev.  Returns -1. */
static int
ws_frame_fail(struct ws_frame_parser *p, struct ws_frame_event *ev,
    uint16_t code, const char *error)
{
	p->state = WS_FRAME_FAILED;
	p->error_code = code;
	p->error = error;
	p->in_message = false;
	p->message_len = 0;
	ws_frame_buffer_free(p);
	ev->type = WS_EV_ERROR;
	ev->code = code;
	ev->error = error;
	return -1;
}

/* Forget the message that was delivered by the previous call. */
static void
ws_frame_message_reset(struct ws_frame_parser *p)
{
	p->deliver_pending = false;
	p->in_message = false;
	p->message_compressed = false;
	p->message_len = 0;
	utf8_init(&p->utf8);
	if (p->message_cap > WS_FRAME_KEEP_BUFFER)
		ws_frame_buffer_free(p);
}

/*
 * Make room for need bytes of message (need counts bytes that have
 * arrived).  The buffer grows geometrically with them: it starts at the
 * smaller of WS_FRAME_FIRST_BUFFER and the message's size at the end of
 * this frame, at least doubles on each growth, and never passes what the
 * message can still become: its exact size in its final frame, else
 * max_message_size.  So it holds at most twice the bytes received, or
 * WS_FRAME_FIRST_BUFFER, whatever length the header announced.
 */
static int
ws_frame_reserve(struct ws_frame_parser *p, size_t need)
{
	size_t cap, frame_end, limit;
	uint8_t *m;

	if (need <= p->message_cap)
		return 0;
	/* The header check bounded these by max_message_size. */
	frame_end = p->message_len - (size_t)p->payload_have +
	    (size_t)p->payload_len;
	limit = p->fin ? frame_end : (size_t)p->max_message_size;
	cap = frame_end < WS_FRAME_FIRST_BUFFER ? frame_end :
	    WS_FRAME_FIRST_BUFFER;
	if (cap < 2 * p->message_cap)
		cap = 2 * p->message_cap;
	if (cap < need)
		cap = need;
	if (cap > limit)
		cap = limit;
	if (cap < need)	/* not reached: need <= frame_end <= limit */
		cap = need;
	if ((m = realloc(p->message, cap)) == NULL)
		return -1;
	p->message = m;
	p->message_cap = cap;
	return 0;
}

/* The first two bytes of a header are in: check everything they say. */
static int
ws_frame_header_first(struct ws_frame_parser *p, struct ws_frame_event *ev)
{
	uint8_t b0 = p->header[0], b1 = p->header[1];
	unsigned opcode = b0 & WS_OPCODE, len7 = b1 & WS_LEN7;

	/* RSV1 is permessage-deflate's "compressed" bit when agreed; RSV2
	 * and RSV3 belong to no extension we speak. */
	if ((b0 & WS_RSV) & ~(p->allow_rsv1 ? WS_RSV1 : 0))
		return ws_frame_fail(p, ev, WS_CLOSE_PROTOCOL_ERROR,
		    "reserved bit set without an extension");
	if (!ws_frame_opcode_known(opcode))
		return ws_frame_fail(p, ev, WS_CLOSE_PROTOCOL_ERROR,
		    "reserved opcode");
	p->rsv1 = (b0 & WS_RSV1) != 0;
	/* RFC 7692 6: RSV1 is on the first frame of a message alone; a
	 * control frame is never compressed. */
	if (p->rsv1 && ws_frame_is_control(opcode))
		return ws_frame_fail(p, ev, WS_CLOSE_PROTOCOL_ERROR,
		    "RSV1 set on a control frame");
	if (p->rsv1 && opcode == WS_OP_CONTINUATION)
		return ws_frame_fail(p, ev, WS_CLOSE_PROTOCOL_ERROR,
		    "RSV1 set on a continuation frame");
	p->fin = (b0 & WS_FIN) != 0;
	p->opcode = (enum ws_frame_opcode)opcode;
	p->masked = (b1 & WS_MASK) != 0;
	if (p->masked != p->expect_masked)
		return ws_frame_fail(p, ev, WS_CLOSE_PROTOCOL_ERROR,
		    p->expect_masked ? "client frame not masked" :
		    "server frame masked");
	if (ws_frame_is_control(opcode)) {
		if (!p->fin)
			return ws_frame_fail(p, ev, WS_CLOSE_PROTOCOL_ERROR,
			    "fragmented control frame");
		if (len7 > WS_FRAME_MAX_CONTROL)
			return ws_frame_fail(p, ev, WS_CLOSE_PROTOCOL_ERROR,
			    "control frame payload over 125 bytes");
		if (opcode == WS_OP_CLOSE && len7 == 1)
			return ws_frame_fail(p, ev, WS_CLOSE_PROTOCOL_ERROR,
			    "close payload of one byte");
		/* Made on the first control frame and kept: most clients
		 * never send one, and every open client has a parser. */
		if (p->control == NULL &&
		    (p->control = malloc(WS_FRAME_MAX_CONTROL)) == NULL)
			return ws_frame_fail(p, ev, WS_CLOSE_INTERNAL_ERROR,
			    "out of memory");
	} else if (opcode == WS_OP_CONTINUATION) {
		if (!p->in_message)
			return ws_frame_fail(p, ev, WS_CLOSE_PROTOCOL_ERROR,
			    "continuation frame with no message open");
	} else if (p->in_message) {
		return ws_frame_fail(p, ev, WS_CLOSE_PROTOCOL_ERROR,
		    "new message inside a fragmented message");
	}
	if (len7 == 126) {
		p->header_need = 4;
		p->state = WS_FRAME_LENGTH;
	} else if (len7 == 127) {
		p->header_need = 10;
		p->state = WS_FRAME_LENGTH;
	} else {
		p->payload_len = len7;
	}
	return 0;
}

/* The extended length is in: it must be minimal and fit in 63 bits. */
static int
ws_frame_header_length(struct ws_frame_parser *p, struct ws_frame_event *ev)
{
	uint64_t n = 0;
	size_t i;

	for (i = 2; i < p->header_need; i++)
		n = n << 8 | p->header[i];
	if (p->header_need == 4) {
		if (n < 126)
			return ws_frame_fail(p, ev, WS_CLOSE_PROTOCOL_ERROR,
			    "16-bit length not minimal");
	} else {
		if (n >> 63)
			return ws_frame_fail(p, ev, WS_CLOSE_PROTOCOL_ERROR,
			    "64-bit length with its top bit set");
		if (n <= 0xffff)
			return ws_frame_fail(p, ev, WS_CLOSE_PROTOCOL_ERROR,
			    "64-bit length not minimal");
	}
	p->payload_len = n;
	return 0;
}

/*
 * A header part is whole in p->header[0..header_need): check it and move
 * to the next part, or to the payload.
 */
static int
ws_frame_header_step(struct ws_frame_parser *p, struct ws_frame_event *ev)
{
	uint64_t max_frame, max_message;
	bool compressed;

	switch (p->state) {
	case WS_FRAME_HEADER:
		if (ws_frame_header_first(p, ev) == -1)
			return -1;
		if (p->state == WS_FRAME_LENGTH)
			return 0;
		break;
	case WS_FRAME_LENGTH:
		if (ws_frame_header_length(p, ev) == -1)
			return -1;
		break;
	case WS_FRAME_MASK:
		memcpy(p->mask, p->header + p->header_need - 4, 4);
		goto payload;
	default:
		return 0;
	}

	/* The length is known: the frame and message sizes are decided
	 * here.  Control frames are bounded by 125 bytes instead.  A
	 * compressed message may be a little longer than the limit, which
	 * bounds what it inflates to: deflate grows data that does not
	 * compress by a few bytes per block. */
	compressed = p->opcode == WS_OP_CONTINUATION ? p->message_compressed :
	    p->rsv1;
	max_frame = p->max_frame_size;
	max_message = p->max_message_size;
	if (compressed) {
		max_frame += max_frame == 0 ? 0 : WS_FRAME_DEFLATE_SLACK(max_frame);
		max_message += WS_FRAME_DEFLATE_SLACK(max_message);
	}
	if (!ws_frame_is_control(p->opcode) && max_frame != 0 &&
	    p->payload_len > max_frame)
		return ws_frame_fail(p, ev, WS_CLOSE_TOO_BIG,
		    "frame over max_frame_size");
	if (!ws_frame_is_control(p->opcode) &&
	    p->payload_len > max_message - p->message_len)
		return ws_frame_fail(p, ev, WS_CLOSE_TOO_BIG,
		    "message over max_message_size");
	if (p->masked) {
		p->header_need += 4;
		p->state = WS_FRAME_MASK;
		return 0;
	}

payload:
	if (p->opcode == WS_OP_TEXT || p->opcode == WS_OP_BINARY) {
		p->in_message = true;
		p->message_opcode = p->opcode;
		p->message_compressed = p->rsv1;
		p->message_len = 0;
		utf8_init(&p->utf8);
	}
	p->payload_have = 0;
	p->state = WS_FRAME_PAYLOAD;
	return 0;
}

/*
 * Take n payload bytes (n does not run past the frame).  On a UTF-8 error
 * *used is the count up to and including the bad byte.
 */
static int
ws_frame_payload(struct ws_frame_parser *p, const uint8_t *data, size_t n,
    size_t *used, struct ws_frame_event *ev)
{
	uint8_t *dst;

	*used = 0;
	if (ws_frame_is_control(p->opcode)) {
		dst = p->control + p->payload_have;
		memcpy(dst, data, n);
		if (p->masked)
			ws_frame_mask(dst, n, p->mask, p->payload_have);
		p->payload_have += n;
		*used = n;
		return 0;
	}

	if (ws_frame_reserve(p, p->message_len + n) == -1)
		return ws_frame_fail(p, ev, WS_CLOSE_INTERNAL_ERROR,
		    "out of memory for a message");
	dst = p->message + p->message_len;
	memcpy(dst, data, n);
	if (p->masked)
		ws_frame_mask(dst, n, p->mask, p->payload_have);
	/* Compressed text is deflate data: the caller checks it inflated. */
	if (p->message_opcode == WS_OP_TEXT && !p->message_compressed) {
		struct utf8 before = p->utf8;

		if (utf8_feed(&p->utf8, dst, n) == -1) {
			/* Rare: find the bad byte to report it exactly. */
			size_t i;

			for (i = 0; i < n - 1; i++)
				if (utf8_feed(&before, dst + i, 1) == -1)
					break;
			*used = i + 1;
			return ws_frame_fail(p, ev, WS_CLOSE_INVALID_DATA,
			    "text message is not valid UTF-8");
		}
	}
	p->message_len += n;
	p->payload_have += n;
	*used = n;
	return 0;
}

/* A frame's payload is whole.  Returns 1 when it makes an event (or an
 * error), 0 when parsing goes on. */
static int
ws_frame_end(struct ws_frame_parser *p, struct ws_frame_event *ev)
{
	size_t n = (size_t)p->payload_len;

	switch (p->opcode) {
	case WS_OP_CONTINUATION:
	case WS_OP_TEXT:
	case WS_OP_BINARY:
		if (!p->fin)
			return 0;
		if (p->message_opcode == WS_OP_TEXT &&
		    !p->message_compressed && !utf8_complete(&p->utf8)) {
			ws_frame_fail(p, ev, WS_CLOSE_INVALID_DATA,
			    "text message ends inside a character");
			return 1;
		}
		ev->type = WS_EV_MESSAGE;
		ev->opcode = p->message_opcode;
		ev->compressed = p->message_compressed;
		ev->data = p->message_len ? p->message : ws_frame_empty;
		ev->len = p->message_len;
		p->deliver_pending = true;
		return 1;
	case WS_OP_PING:
	case WS_OP_PONG:
		ev->type = p->opcode == WS_OP_PING ? WS_EV_PING : WS_EV_PONG;
		ev->opcode = p->opcode;
		ev->data = p->control;
		ev->len = n;
		return 1;
	case WS_OP_CLOSE:
		ev->opcode = WS_OP_CLOSE;
		if (n == 0) {
			ev->type = WS_EV_CLOSE;
			ev->code = WS_CLOSE_NO_STATUS;
			ev->data = p->control;
			ev->len = 0;
			return 1;
		}
		/* n == 1 was refused with the header */
		ev->code = (uint16_t)(p->control[0] << 8 | p->control[1]);
		if (!ws_frame_close_code_valid(ev->code)) {
			ws_frame_fail(p, ev, WS_CLOSE_PROTOCOL_ERROR,
			    "close code not allowed on the wire");
			return 1;
		}
		if (!utf8_valid(p->control + 2, n - 2)) {
			ws_frame_fail(p, ev, WS_CLOSE_INVALID_DATA,
			    "close reason is not valid UTF-8");
			return 1;
		}
		ev->type = WS_EV_CLOSE;
		ev->data = p->control + 2;
		ev->len = n - 2;
		return 1;
	}
	return 0;
}

size_t
ws_frame_parse(struct ws_frame_parser *p, const uint8_t *data, size_t len,
    struct ws_frame_event *ev)
{
	size_t off = 0, n, used;

	memset(ev, 0, sizeof(*ev));
	ev->type = WS_EV_NONE;
	if (p->state == WS_FRAME_FAILED) {
		ev->type = WS_EV_ERROR;
		ev->code = p->error_code;
		ev->error = p->error;
		return 0;
	}
	if (p->deliver_pending)
		ws_frame_message_reset(p);

	for (;;) {
		switch (p->state) {
		case WS_FRAME_HEADER:
		case WS_FRAME_LENGTH:
		case WS_FRAME_MASK:
			if (off == len)
				return off;
			n = p->header_need - p->header_have;
			if (n > len - off)
				n = len - off;
			memcpy(p->header + p->header_have, data + off, n);
			p->header_have += n;
			off += n;
			if (p->header_have < p->header_need)
				return off;
			if (ws_frame_header_step(p, ev) == -1)
				return off;
			break;
		case WS_FRAME_PAYLOAD:
			n = len - off;
			if (n > p->payload_len - p->payload_have)
				n = (size_t)(p->payload_len - p->payload_have);
			if (n > 0) {
				if (ws_frame_payload(p, data + off, n, &used,
				    ev) == -1)
					return off + used;
				off += used;
			}
			if (p->payload_have < p->payload_len)
				return off;
			p->state = WS_FRAME_HEADER;
			p->header_have = 0;
			p->header_need = 2;
			if (ws_frame_end(p, ev))
				return off;
			break;
		case WS_FRAME_FAILED:
		default:
			return off;
		}
	}
}

size_t
ws_frame_header_encode(uint8_t out[WS_FRAME_MAX_HEADER],
    enum ws_frame_opcode opcode, bool fin, uint64_t payload_len,
    const uint8_t *mask)
{
	return ws_frame_header_encode_rsv1(out, opcode, fin, false,
	    payload_len, mask);
}

size_t
ws_frame_header_encode_rsv1(uint8_t out[WS_FRAME_MAX_HEADER],
    enum ws_frame_opcode opcode, bool fin, bool rsv1, uint64_t payload_len,
    const uint8_t *mask)
{
	size_t n = 2;
	int i;

	out[0] = (uint8_t)((fin ? WS_FIN : 0) | (rsv1 ? WS_RSV1 : 0) |
	    (opcode & WS_OPCODE));
	if (payload_len < 126) {
		out[1] = (uint8_t)payload_len;
	} else if (payload_len <= 0xffff) {
		out[1] = 126;
		out[2] = (uint8_t)(payload_len >> 8);
		out[3] = (uint8_t)payload_len;
		n = 4;
	} else {
		out[1] = 127;
		for (i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
		n = 10;
	}
	if (mask != NULL) {
		out[1] |= WS_MASK;
		memcpy(out + n, mask, 4);
		n += 4;
	}
	return n;
}

/*
 * The key repeats every four bytes, so eight bytes of it, rotated to the
 * offset, mask any eight consecutive bytes: XOR a word at a time, then the
 * tail a byte at a time.
 */
void
ws_frame_mask(uint8_t *data, size_t len, const uint8_t mask[4],
    uint64_t offset)
{
	uint8_t k[8];
	uint64_t kw, w;
	size_t i;

	for (i = 0; i < 8; i++)
		k[i] = mask[(offset + i) & 3];
	memcpy(&kw, k, sizeof(kw));
	for (i = 0; len - i >= 8; i += 8) {
		memcpy(&w, data + i, sizeof(w));
		w ^= kw;
		memcpy(data + i, &w, sizeof(w));
	}
	for (; i < len; i++)
		data[i] ^= k[i & 7];
}

size_t
ws_frame_close_payload(uint8_t out[WS_FRAME_MAX_CONTROL], uint16_t code,
    const char *reason, size_t reason_len)
{
	size_t n;

	/* 1005, 1006 and 1015 only report what happened and must never be
	 * sent: echoing a peer's "no status" is an empty close. */
	if (code == 0 || code == WS_CLOSE_NO_STATUS ||
	    code == WS_CLOSE_ABNORMAL || code == 1015)
		return 0;
	out[0] = (uint8_t)(code >> 8);
	out[1] = (uint8_t)code;
	if (reason == NULL || reason_len == 0)
		return 2;
	/* utf8_truncate also stops before any invalid byte, so the reason
	 * sent is always valid UTF-8 even if the caller's was not. */
	n = utf8_truncate((const uint8_t *)reason, reason_len,
	    WS_FRAME_MAX_REASON);
	memcpy(out + 2, reason, n);
	return 2 + n;
}

bool
ws_frame_close_code_valid(unsigned code)
{
	if (code >= 1000 && code <= 1003)
		return true;
	if (code >= 1007 && code <= 1014)
		return true;
	return code >= 3000 && code <= 4999;
}

/*
 * The state is saved as input rather than as fields: the message so far,
 * the header bytes of the frame at hand, and the payload of it received
 * so far (unmasked).  Loading feeds the header and payload to the parser
 * again, so that every check applies to them as to any input, and no
 * field can come back in a state the parser could not reach.
 */
void
ws_frame_parser_save(const struct ws_frame_parser *p, struct blob *b)
{
	bool in_payload = p->state == WS_FRAME_PAYLOAD;
	bool control = in_payload && ws_frame_is_control(p->opcode);
	/* A message's first frame opens it again as it is fed. */
	bool first = in_payload && (p->opcode == WS_OP_TEXT ||
	    p->opcode == WS_OP_BINARY);
	bool in_message = p->in_message && !p->deliver_pending && !first;
	size_t frame_have = in_payload ? (size_t)p->payload_have : 0;
	size_t before = in_message ? p->message_len - (control ? 0 :
	    frame_have) : 0;

	blob_put_u8(b, in_message);
	blob_put_u8(b, (uint8_t)p->message_opcode);
	blob_put_u8(b, in_message && p->message_compressed);
	blob_put_bytes(b, p->message, before);
	blob_put_bytes(b, p->header, in_payload ? p->header_need :
	    p->header_have);
	if (control)
		blob_put_bytes(b, p->control, frame_have);
	else
		blob_put_bytes(b, frame_have > 0 ? p->message + before : NULL,
		    frame_have);
}

int
ws_frame_parser_load(struct ws_frame_parser *p, struct blob *b)
{
	struct ws_frame_event ev;
	const uint8_t *message, *header, *payload;
	size_t message_len, header_len, payload_len, n;
	uint64_t max_message = p->max_message_size;
	uint8_t *masked;
	bool in_message, compressed;
	unsigned opcode;

	in_message = blob_get_bool(b);
	opcode = blob_get_u8(b);
	compressed = blob_get_bool(b);
	message = blob_get_bytes(b, &message_len, SIZE_MAX / 2);
	header = blob_get_bytes(b, &header_len, WS_FRAME_MAX_HEADER);
	payload = blob_get_bytes(b, &payload_len, SIZE_MAX / 2);
	if (b->failed)
		return -1;
	if (compressed)
		max_message += WS_FRAME_DEFLATE_SLACK(max_message);
	if (in_message) {
		if ((opcode != WS_OP_TEXT && opcode != WS_OP_BINARY) ||
		    (compressed && !p->allow_rsv1) || message_len > max_message)
			return -1;
		p->in_message = true;
		p->message_opcode = (enum ws_frame_opcode)opcode;
		p->message_compressed = compressed;
		if (message_len > 0) {
			if ((p->message = malloc(message_len)) == NULL)
				return -1;
			memcpy(p->message, message, message_len);
			p->message_cap = p->message_len = message_len;
		}
		if (opcode == WS_OP_TEXT && !compressed &&
		    utf8_feed(&p->utf8, message, message_len) == -1)
			return -1;
	} else if (message_len > 0 || compressed) {
		return -1;
	}
	/* The header: it must leave the parser waiting for more. */
	if (header_len > 0 && (ws_frame_parse(p, header, header_len, &ev) !=
	    header_len || ev.type != WS_EV_NONE))
		return -1;
	if (payload_len == 0)
		return 0;
	if (p->state != WS_FRAME_PAYLOAD || payload_len >= p->payload_len)
		return -1;
	/* The payload as it came: masked again with the frame's key. */
	if ((masked = malloc(payload_len)) == NULL)
		return -1;
	memcpy(masked, payload, payload_len);
	if (p->masked)
		ws_frame_mask(masked, payload_len, p->mask, 0);
	n = ws_frame_parse(p, masked, payload_len, &ev);
	free(masked);
	return n == payload_len && ev.type == WS_EV_NONE ? 0 : -1;
}
