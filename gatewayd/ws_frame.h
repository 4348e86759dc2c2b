/*
 * ws_frame: the RFC 6455 frame codec.
 *
 * Pure: bytes in, events out; no sockets, no libevent.  The parser is an
 * explicit state machine that accepts its input in pieces of any size (a
 * byte at a time included), reassembles fragmented messages, validates text
 * as UTF-8 as it arrives, and reports the close code a protocol error calls
 * for.  The encoder writes frame headers and close payloads.
 *
 * Extensions: with ws_frame_parser_allow_rsv1 the parser accepts RSV1 on
 * the first frame of a data message, as permessage-deflate (RFC 7692)
 * uses it, and reports the message as compressed; inflating it is the
 * caller's job (ws_deflate).
 */
#ifndef GATEWAYD_WS_FRAME_H
#define GATEWAYD_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "utf8.h"

#define WS_FRAME_MAX_HEADER 14		/* 2 + 8 (length) + 4 (mask) */
#define WS_FRAME_MAX_CONTROL 125	/* largest control frame payload */
#define WS_FRAME_MAX_REASON 123		/* close reason after the 2-byte code */
/* The message buffer's first size at most; it then grows with the bytes
 * that arrive (to at most twice them), never with an announced length. */
#define WS_FRAME_FIRST_BUFFER 16384

/* What a compressed message may have beyond max_message_size (and a
 * compressed frame beyond max_frame_size): deflate's growth of data that
 * does not compress, 5 bytes per stored block, whose size follows the
 * sender's memLevel: 3.9% at memLevel 1, 0.24% at 5 (python websockets'
 * default), 0.03% at zlib's 8. */
#define WS_FRAME_DEFLATE_SLACK(max) ((max) / 16 + 64)

enum ws_frame_opcode {
	WS_OP_CONTINUATION = 0x0,
	WS_OP_TEXT = 0x1,
	WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8,
	WS_OP_PING = 0x9,
	WS_OP_PONG = 0xA,
};

/* Close codes the gateway itself sends or reports (RFC 6455 7.4.1). */
enum ws_close_code {
	WS_CLOSE_NORMAL = 1000,
	WS_CLOSE_GOING_AWAY = 1001,
	WS_CLOSE_PROTOCOL_ERROR = 1002,
	WS_CLOSE_NO_STATUS = 1005,	/* reported, never sent */
	WS_CLOSE_ABNORMAL = 1006,	/* reported, never sent */
	WS_CLOSE_INVALID_DATA = 1007,
	WS_CLOSE_POLICY = 1008,
	WS_CLOSE_TOO_BIG = 1009,
	WS_CLOSE_INTERNAL_ERROR = 1011,
	WS_CLOSE_SERVICE_RESTART = 1012,
};

enum ws_frame_event_type {
	WS_EV_NONE,		/* the input ran out before an event completed */
	WS_EV_MESSAGE,		/* a whole (reassembled) text or binary message */
	WS_EV_PING,
	WS_EV_PONG,
	WS_EV_CLOSE,		/* a valid close frame */
	WS_EV_ERROR,		/* a protocol error: fail the connection */
};

struct ws_frame_event {
	enum ws_frame_event_type type;
	enum ws_frame_opcode opcode;	/* MESSAGE: WS_OP_TEXT or WS_OP_BINARY */
	bool compressed;		/* MESSAGE: RSV1 was set on its first
					 * frame; data is then the compressed
					 * payload, and text was not validated */
	const uint8_t *data;		/* MESSAGE: the payload; PING, PONG:
					 * the payload; CLOSE: the reason */
	size_t len;
	uint16_t code;			/* CLOSE: the peer's code, 1005 when the
					 * frame had none; ERROR: the code to
					 * close with (1002, 1007 or 1009) */
	const char *error;		/* ERROR: a short text for the log */
};

/* Parser states, one per part of a frame. */
enum ws_frame_state {
	WS_FRAME_HEADER,	/* first two bytes */
	WS_FRAME_LENGTH,	/* 2 or 8 bytes of extended length */
	WS_FRAME_MASK,		/* 4 bytes of masking key */
	WS_FRAME_PAYLOAD,	/* payload bytes, unmasked as they arrive */
	WS_FRAME_FAILED,	/* an error was reported; input is refused */
};

struct ws_frame_parser {
	/* Fields are ordered by size: every open connection has one. */

	/* limits, set by ws_frame_parser_init */
	uint64_t max_message_size;	/* payload bytes of a whole message */
	uint64_t max_frame_size;	/* of one data frame; 0: no own limit */

	/* the frame being read */
	uint64_t payload_len;
	uint64_t payload_have;

	/* the data message being reassembled across fragments */
	uint8_t *message;		/* owned; grows with the bytes received,
					 * kept small between messages */
	size_t message_len;
	size_t message_cap;

	/* WS_FRAME_FAILED: the error, repeated on every later call */
	const char *error;

	enum ws_frame_state state;
	enum ws_frame_opcode opcode;
	enum ws_frame_opcode message_opcode;
	struct utf8 utf8;		/* text validation across fragments */
	uint16_t error_code;
	uint8_t header[WS_FRAME_MAX_HEADER];	/* header bytes gathered */
	uint8_t header_have;
	uint8_t header_need;
	uint8_t mask[4];
	bool expect_masked;		/* server side: frames must be masked */
	bool fin;
	bool masked;
	bool in_message;		/* a fragmented message is open */
	bool deliver_pending;	/* a message was returned; reset on next feed */
	bool allow_rsv1;		/* an extension (permessage-deflate) was
					 * agreed: RSV1 may start a message */
	bool rsv1;			/* the frame being read has RSV1 */
	bool message_compressed;	/* the open message began with RSV1 */

	/* a control frame's payload (they may interleave with fragments):
	 * WS_FRAME_MAX_CONTROL bytes, made on the first control frame */
	uint8_t *control;
};

/*
 * Set up a parser.  expect_masked is true for a server (client frames must
 * be masked) and false for a client.  max_message_size bounds a message's
 * payload after reassembly; max_frame_size bounds the payload of each data
 * frame (0: no limit of its own, max_message_size alone applies).  A data
 * frame over either is refused with 1009 as soon as its length is read.
 * Control frames are bounded by WS_FRAME_MAX_CONTROL alone.
 */
void ws_frame_parser_init(struct ws_frame_parser *p, uint64_t max_message_size,
    uint64_t max_frame_size, bool expect_masked);

/*
 * Let RSV1 mark a data message as compressed (RFC 7692 6): call after
 * ws_frame_parser_init, before the first ws_frame_parse, when
 * permessage-deflate was agreed.  Default (false): any RSV bit is a
 * protocol error (1002).  When allowed, RSV1 is accepted on the first
 * frame of a text or binary message only; on a continuation or a control
 * frame it is still 1002, and so are RSV2 and RSV3.
 *
 * A compressed message is reported with compressed set and its payload
 * as received: max_message_size bounds those compressed bytes (the
 * caller bounds the inflated size, e.g. with ws_deflate_inflate's
 * max_out).  Compressed text is not validated as UTF-8 here, since it is
 * deflate data: the caller validates the inflated text whole and fails
 * with 1007.  Uncompressed text is validated as it arrives, as before.
 */
void ws_frame_parser_allow_rsv1(struct ws_frame_parser *p, bool allow);

/* Release the parser's message buffer.  The parser may be reused after
 * ws_frame_parser_init. */
void ws_frame_parser_free(struct ws_frame_parser *p);

struct blob;

/*
 * Write where the parser is in its input (a frame begun, a fragmented
 * message being reassembled) to b, for another process that carries the
 * connection on: gatewayd's upgrade.  A failed parser is not saved.
 */
void ws_frame_parser_save(const struct ws_frame_parser *p, struct blob *b);

/*
 * Read what ws_frame_parser_save wrote into p, a parser fresh from
 * ws_frame_parser_init (and ws_frame_parser_allow_rsv1), whose limits
 * the state does not carry.  The saved bytes go through the parser again,
 * checked as any input is.  0, or -1 when they are not a state the
 * parser can be in (over p's limits, say): then free p.
 */
int ws_frame_parser_load(struct ws_frame_parser *p, struct blob *b);

/*
 * Consume input from data[0..len) until one event completes or the input
 * runs out, and return how many bytes were consumed.  *ev tells which event
 * (WS_EV_NONE when the input ran out first).  Pointers in *ev stay valid
 * until the next call.  After WS_EV_ERROR every call returns 0 and the same
 * error.  A close frame does not stop the parser; the caller stops feeding.
 * Allocation failure is reported as WS_EV_ERROR with code 1011.
 */
size_t ws_frame_parse(struct ws_frame_parser *p, const uint8_t *data, size_t len,
    struct ws_frame_event *ev);

/* Write a frame header into out and return its length (2 to 14 bytes).
 * A NULL mask writes an unmasked (server) frame; otherwise the mask key is
 * written and the caller masks the payload with ws_frame_mask. */
size_t ws_frame_header_encode(uint8_t out[WS_FRAME_MAX_HEADER],
    enum ws_frame_opcode opcode, bool fin, uint64_t payload_len,
    const uint8_t *mask);

/* The same, with RSV1 set when rsv1 is true: the caller sets it on the
 * first frame of a compressed message only (RFC 7692 6), never on a
 * continuation or control frame.  ws_frame_header_encode is this with
 * rsv1 false. */
size_t ws_frame_header_encode_rsv1(uint8_t out[WS_FRAME_MAX_HEADER],
    enum ws_frame_opcode opcode, bool fin, bool rsv1, uint64_t payload_len,
    const uint8_t *mask);

/* XOR data with the 4-byte key, starting at key position offset % 4. */
void ws_frame_mask(uint8_t *data, size_t len, const uint8_t mask[4],
    uint64_t offset);

/* Write a close payload into out: the code in network order and the reason
 * cut to WS_FRAME_MAX_REASON bytes without splitting a UTF-8 character
 * (and before any invalid UTF-8, so the peer never refuses it).  Code 0
 * writes an empty payload, and so do 1005, 1006 and 1015, which are never
 * sent (so a CLOSE event's code may be echoed as it is).  Returns the
 * payload length. */
size_t ws_frame_close_payload(uint8_t out[WS_FRAME_MAX_CONTROL], uint16_t code,
    const char *reason, size_t reason_len);

/* True when a peer may send code in a close frame (RFC 6455 7.4):
 * 1000-1003, 1007-1011 (and the IANA-registered 1012-1014), 3000-4999. */
bool ws_frame_close_code_valid(unsigned code);

#endif
