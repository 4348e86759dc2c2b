/*
 * ws_deflate: permessage-deflate (RFC 7692), negotiation and codec.
 *
 * Pure: header values in, a response value and agreed parameters out;
 * whole messages in, whole messages out.  No sockets, no libevent; zlib
 * does the compression.  The zlib streams are the caller's, so the glue
 * may give each connection its own or, where no context is taken over
 * between messages, share one among many connections.
 *
 * Memory zlib holds for one stream (memLevel 8, zlib 1.2.13, amd64),
 * measured by the unit test through ws_deflate_stream_memory, which
 * counts every block zlib allocates:
 *
 *   window_bits   deflate          inflate (after its first message)
 *     8, 9        139072 (136 KiB)   7416 /   7672
 *     10          141120             8184
 *     11          145216             9208
 *     12          153408            11256
 *     13          169792            15352
 *     14          202560            23544
 *     15          268096 (262 KiB)  39928 (39 KiB)
 *
 * A deflate stream allocates it all at init; an inflate stream holds
 * 7160 bytes until its first message brings the 2^window_bits window.
 * Each message costs the caller its output buffer on top.
 */
#ifndef GATEWAYD_WS_DEFLATE_H
#define GATEWAYD_WS_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

/* The extension's name in Sec-WebSocket-Extensions. */
#define WS_DEFLATE_NAME "permessage-deflate"

/* A response buffer of this size always holds the longest answer
 * ("permessage-deflate; server_no_context_takeover;
 * client_no_context_takeover; server_max_window_bits=15;
 * client_max_window_bits=15", 128 characters) and its NUL. */
#define WS_DEFLATE_RESPONSE_SIZE 160

/* deflateInit2's memLevel: zlib's default.  It sizes the hash table and
 * the literal buffer (64 KiB each at 8), which dominate a deflate
 * stream's memory at small windows. */
#define WS_DEFLATE_MEM_LEVEL 8

/* A ws_deflate_buf's first allocation. */
#define WS_DEFLATE_BUF_MIN 1024

/* ws_deflate_inflate's results besides 0; ws_deflate_compress returns 0 or
 * WS_DEFLATE_ERROR. */
enum ws_deflate_result {
	WS_DEFLATE_OK = 0,
	WS_DEFLATE_ERROR = -1,		/* out of memory, a zlib failure, or a
					 * stream not set up for this use:
					 * close with 1011 */
	WS_DEFLATE_BAD_DATA = -2,	/* not a valid deflate stream: 1007 */
	WS_DEFLATE_TOO_BIG = -3,	/* inflates past max_out: 1009 */
};

/* The server's configuration. */
struct ws_deflate_policy {
	int level;			/* zlib level 1..9 */
	unsigned window_bits;		/* 9..15: the largest LZ77 window the
					 * server compresses with */
	bool context_takeover;		/* false (gatewayd's default): answer
					 * with server_no_context_takeover AND
					 * client_no_context_takeover whatever
					 * the client offered */
	unsigned client_window_bits;	/* 0: leave the client's window alone;
					 * 9..15: when the client offers
					 * client_max_window_bits, ask it to
					 * compress with at most this (a
					 * smaller inflate window here) */
};

/* What was agreed for one connection. */
struct ws_deflate_params {
	bool server_no_context_takeover;	/* reset our deflate stream
						 * after each message */
	bool client_no_context_takeover;	/* reset our inflate stream
						 * after each message */
	unsigned server_max_window_bits;	/* 8..15: the window we
						 * compress with (8 is
						 * compressed with 9: see
						 * ws_deflate_stream_init_deflate) */
	unsigned client_max_window_bits;	/* 8..15: the window the
						 * client compresses with; 15
						 * when not limited */
};

/*
 * Negotiate permessage-deflate.  values[0..n) are the request's
 * Sec-WebSocket-Extensions header values in order (lens their lengths;
 * they need not be NUL-terminated), each a comma-separated list of
 * offers (RFC 6455 9.1 grammar, with blanks around the separators and
 * quoted-string parameter values, which must unquote to a token).
 * Offers of other extensions are skipped.
 *
 * The first permessage-deflate offer the server can accept is taken; an
 * offer is declined (and the next one tried) when it has an unknown
 * parameter, a repeated one, a value on a no_context_takeover parameter,
 * a server_max_window_bits without a value, or a window-bits value that
 * is not 8..15 written without leading zeros (RFC 7692 5, 7.1).
 *
 * The answer (RFC 7692 7.1): server_no_context_takeover and
 * client_no_context_takeover both when pol->context_takeover is false;
 * otherwise each only when the client offered it.
 * server_max_window_bits=N when the client limited it (N its value, or
 * pol->window_bits when smaller) or when pol->window_bits is below 15.
 * client_max_window_bits=N only when the client offered the parameter,
 * and only when N (its value, or pol->client_window_bits when smaller)
 * is below 15.
 *
 * Returns 1 when an offer was accepted: *out holds the agreement and resp
 * the value of the response's Sec-WebSocket-Extensions, NUL-terminated.
 * Returns 0 when no offer was acceptable, or there was none: the
 * connection goes on without the extension (no header in the 101).
 * Returns -1 when a header value breaks the grammar (an unterminated
 * quote, a missing token, a quoted value that is not a token, stray
 * bytes), wherever the break is: RFC 6455 4.2.1 makes that a bad
 * handshake, and the caller answers 400.  On 0 and -1, *out is zeroed
 * and resp is "".  resp_size must be at least WS_DEFLATE_RESPONSE_SIZE;
 * a smaller buffer (checked first) makes it return 0.
 */
int ws_deflate_negotiate(const struct ws_deflate_policy *pol,
    const char *const *values, const size_t *lens, size_t n,
    struct ws_deflate_params *out, char *resp, size_t resp_size);

/*
 * A growable byte buffer owned by the caller; zero-initialised is empty.
 * The codec appends to it, so data may move.  Growth rule: when full it
 * grows to twice its capacity (WS_DEFLATE_BUF_MIN the first time), never
 * past a limit (in ws_deflate_inflate: its length at the call plus
 * max_out); so, filled from empty, it holds at most twice its length or
 * WS_DEFLATE_BUF_MIN.  The caller may set len to 0 to reuse it (keeping
 * its capacity), and frees it with ws_deflate_buf_free.
 */
struct ws_deflate_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

void ws_deflate_buf_free(struct ws_deflate_buf *b);

/*
 * One zlib stream, deflating or inflating raw deflate data.  It must not
 * be moved or copied once initialised (zlib and the counting allocator
 * point back at it).  mem counts the bytes zlib holds for it.
 */
struct ws_deflate_stream {
	z_stream z;
	size_t mem;		/* bytes zlib holds (its blocks as asked
				 * for, without malloc's overhead) */
	unsigned window_bits;	/* the window zlib works with */
	int level;		/* a compressor's zlib level */
	bool ready;		/* initialised and not freed */
	bool deflating;		/* a compressor, else a decompressor */
};

/*
 * Set up s (zeroed or freed; a ready one would leak) as a compressor
 * with zlib level 0..9 and a window of 2^window_bits bytes, 8..15.  zlib
 * refuses a raw window of 8 bits; 9 is used then, which stays within the
 * 256 bytes a peer that agreed to 8 keeps: zlib never emits a distance
 * over the window size less 262 (MIN_LOOKAHEAD), 250 bytes for a
 * 512-byte window.  Returns 0, or -1 (out of memory, bad arguments) with
 * s left not ready.
 */
int ws_deflate_stream_init_deflate(struct ws_deflate_stream *s, int level,
    unsigned window_bits);

/* Set up s (zeroed or freed) as a decompressor with a window of
 * 2^window_bits bytes, 8..15 (a larger window than the peer's is always
 * safe: a shared stream may use 15).  Returns 0 or -1. */
int ws_deflate_stream_init_inflate(struct ws_deflate_stream *s,
    unsigned window_bits);

/* Forget the stream's history (deflateReset or inflateReset): the state
 * of a new stream, its memory kept.  Returns 0, or -1 when s is not
 * ready. */
int ws_deflate_stream_reset(struct ws_deflate_stream *s);

/* Release what zlib holds for s.  Safe on a zeroed, failed or already
 * freed stream. */
void ws_deflate_stream_free(struct ws_deflate_stream *s);

/* The bytes zlib holds for s now (0 when not ready). */
size_t ws_deflate_stream_memory(const struct ws_deflate_stream *s);

/*
 * Compress one whole message in[0..len) and append the payload to out
 * (RFC 7692 7.2.1: deflate, Z_SYNC_FLUSH, strip the trailing 00 00 ff
 * ff); an empty message is the single byte 0x00.  reset: forget the
 * history afterwards (this side's no_context_takeover); a stream shared
 * between connections must always reset.  Returns 0, or WS_DEFLATE_ERROR
 * (out of memory, a zlib error, s not a compressor).  On error out->len
 * is as it was, and the stream has been reset: its history is gone, so a
 * connection that takes context over must be closed; a shared stream
 * serves the next message as it is.  (Should zlib refuse even the reset,
 * the stream is freed, and every later call returns WS_DEFLATE_ERROR.)
 */
int ws_deflate_compress(struct ws_deflate_stream *s, const uint8_t *in,
    size_t len, bool reset, struct ws_deflate_buf *out);

/*
 * Inflate one whole message payload in[0..len) (RFC 7692 7.2.2: append
 * 00 00 ff ff, inflate) and append the result to out.  A message ending
 * with a BFINAL block (7.2.3.4), with or without the byte after it, is
 * accepted and its history kept for the next one (this costs a
 * temporary 2^window_bits copy of the window).  The data must end on a
 * block boundary, as every sender's does: data cut short is
 * WS_DEFLATE_BAD_DATA.  An empty payload is an empty message.  reset:
 * forget the history afterwards (the peer's no_context_takeover).
 *
 * Hard bound: at most max_out bytes are written to out (and out grows by
 * at most that much); once max_out bytes are out, the next byte zlib
 * would produce makes it stop with WS_DEFLATE_TOO_BIG.  So a message that
 * would inflate to 1 GB costs max_out bytes of memory and about max_out
 * bytes of work.
 *
 * Returns 0, WS_DEFLATE_TOO_BIG, WS_DEFLATE_BAD_DATA or WS_DEFLATE_ERROR;
 * on error out->len is as it was and the stream has been reset, as for
 * ws_deflate_compress.  Text is not validated: the caller checks the
 * inflated message with utf8_valid.
 */
int ws_deflate_inflate(struct ws_deflate_stream *s, const uint8_t *in,
    size_t len, bool reset, size_t max_out, struct ws_deflate_buf *out);

#endif
