/*
 * fuzz_ws_deflate: libFuzzer driver for permessage-deflate.
 *
 * Input layout: byte 0 picks the mode (mod 3), byte 1 the settings, the
 * rest is the data.
 *
 *   0  negotiate: the data is header text, one header value per line.
 *      Byte 1 picks the policy.  Checks: the result is -1, 0 or 1; on 1
 *      the response starts with "permessage-deflate", fits, parses back
 *      as an acceptable offer that agrees to the same server window and
 *      no_context_takeover, and the agreed windows are in range (the
 *      server's within the policy's, both no_context_takeover when the
 *      policy takes no context over); otherwise the response is empty
 *      and the parameters zero.  The values joined with commas into one
 *      header give the same answer (RFC 9110 5.3).
 *   1  inflate: the data, cut into messages at 0xff 0xfe pairs, is
 *      inflated with a small max_out (byte 1: max_out 0..63, the window,
 *      reset or not).  Checks: never more than max_out bytes out, the
 *      buffer never grown past max_out, out->len unchanged on an error,
 *      a known result code, and the stream usable after every error.
 *   2  round trip: the data, cut into messages the same way, is
 *      compressed and inflated back (byte 1: level, window, reset).
 *      Checks: the same bytes come back; with max_out one byte short, a
 *      non-empty message is WS_DEFLATE_TOO_BIG.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_deflate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_VALUES 16

static void
require(bool cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_ws_deflate: invariant failed: %s\n", what);
		abort();
	}
}

/* The next message of data[*off..len): up to a 0xff 0xfe pair. */
static bool
next_message(const uint8_t *data, size_t len, size_t *off,
    const uint8_t **msg, size_t *msg_len)
{
	size_t i;

	if (*off > len)
		return false;
	*msg = data + *off;
	for (i = *off; i + 1 < len; i++)
		if (data[i] == 0xff && data[i + 1] == 0xfe)
			break;
	if (i + 1 >= len)
		i = len;
	*msg_len = i - *off;
	*off = i + 2;
	return true;
}

static void
check_agreement(const struct ws_deflate_policy *pol, int rc,
    const struct ws_deflate_params *pa, const char *resp)
{
	static const struct ws_deflate_policy lenient = { 6, 15, true, 0 };
	struct ws_deflate_params back;
	char again[WS_DEFLATE_RESPONSE_SIZE];
	const char *v[1] = { resp };
	size_t lens[1];
	unsigned pw = pol->window_bits < 9 ? 9 : pol->window_bits > 15 ? 15 :
	    pol->window_bits;

	require(rc >= -1 && rc <= 1, "negotiate returns -1, 0 or 1");
	require(memchr(resp, '\0', WS_DEFLATE_RESPONSE_SIZE) != NULL,
	    "response is NUL-terminated");
	if (rc != 1) {
		require(resp[0] == '\0', "no response unless agreed");
		require(!pa->server_no_context_takeover &&
		    !pa->client_no_context_takeover &&
		    pa->server_max_window_bits == 0 &&
		    pa->client_max_window_bits == 0, "params zero unless agreed");
		return;
	}
	require(strncmp(resp, "permessage-deflate", 18) == 0,
	    "response names the extension");
	require(pa->server_max_window_bits >= 8 &&
	    pa->server_max_window_bits <= pw, "server window in range");
	require(pa->client_max_window_bits >= 8 &&
	    pa->client_max_window_bits <= 15, "client window in range");
	if (!pol->context_takeover)
		require(pa->server_no_context_takeover &&
		    pa->client_no_context_takeover,
		    "no context takeover when the policy says so");
	lens[0] = strlen(resp);
	require(ws_deflate_negotiate(&lenient, v, lens, 1, &back, again,
	    sizeof(again)) == 1, "the response parses back");
	require(back.server_max_window_bits == pa->server_max_window_bits,
	    "the response says the server window");
	require(back.server_no_context_takeover ==
	    pa->server_no_context_takeover,
	    "the response says server_no_context_takeover");
	require(back.client_no_context_takeover ==
	    pa->client_no_context_takeover,
	    "the response says client_no_context_takeover");
}

static void
fuzz_negotiate(uint8_t settings, const uint8_t *data, size_t len)
{
	struct ws_deflate_policy pol;
	struct ws_deflate_params pa, pa_joined;
	char resp[WS_DEFLATE_RESPONSE_SIZE], joined_resp[WS_DEFLATE_RESPONSE_SIZE];
	const char *values[FUZZ_MAX_VALUES];
	size_t lens[FUZZ_MAX_VALUES], n = 0, off = 0, i;
	const char *text = (const char *)data, *nl;
	char *joined;
	int rc, rc_joined;

	pol.level = 6;
	pol.context_takeover = settings & 1;
	pol.window_bits = 8 + (settings >> 1 & 7);	/* 8 (clamped) .. 15 */
	pol.client_window_bits = (settings >> 4) == 0 ? 0 :
	    6 + (settings >> 4);			/* 0, 7 .. 21 */
	while (off <= len && n < FUZZ_MAX_VALUES) {
		nl = memchr(text + off, '\n', len - off);
		values[n] = text + off;
		lens[n] = nl ? (size_t)(nl - (text + off)) : len - off;
		n++;
		off += lens[n - 1] + 1;
		if (nl == NULL)
			break;
	}
	rc = ws_deflate_negotiate(&pol, values, lens, n, &pa, resp,
	    sizeof(resp));
	check_agreement(&pol, rc, &pa, resp);

	/* the same list in one header */
	joined = malloc(len + n + 1);
	require(joined != NULL, "malloc");
	for (i = 0, off = 0; i < n; i++) {
		if (i > 0)
			joined[off++] = ',';
		memcpy(joined + off, values[i], lens[i]);
		off += lens[i];
	}
	values[0] = joined;
	lens[0] = off;
	rc_joined = ws_deflate_negotiate(&pol, values, lens, 1, &pa_joined,
	    joined_resp, sizeof(joined_resp));
	require(rc_joined == rc, "one header or several: the same result");
	require(strcmp(joined_resp, resp) == 0,
	    "one header or several: the same response");
	free(joined);
}

static void
fuzz_inflate(uint8_t settings, const uint8_t *data, size_t len)
{
	static const uint8_t hello[] = { 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07,
	    0x00 };
	struct ws_deflate_stream s;
	struct ws_deflate_buf out = { 0 };
	size_t max_out = settings & 63, off = 0, msg_len, before, cap;
	unsigned window = settings & 64 ? 15 : 8 + (settings & 7);
	bool reset = settings & 128;
	const uint8_t *msg;
	int rc;

	require(ws_deflate_stream_init_inflate(&s, window) == 0, "init");
	while (next_message(data, len, &off, &msg, &msg_len)) {
		/* something already in the buffer: it is kept */
		out.len = 0;
		if (msg_len & 1) {
			require(ws_deflate_inflate(&s, hello, sizeof(hello), true,
			    5, &out) == 0, "hello inflates");
			require(out.len == 5 && memcmp(out.data, "Hello", 5) == 0,
			    "hello is Hello");
		}
		before = out.len;
		cap = out.cap;
		rc = ws_deflate_inflate(&s, msg, msg_len, reset, max_out, &out);
		require(rc == WS_DEFLATE_OK || rc == WS_DEFLATE_BAD_DATA ||
		    rc == WS_DEFLATE_TOO_BIG, "a known result");
		require(out.len - before <= max_out, "within max_out");
		require(out.cap <= cap || out.cap <= before + max_out,
		    "the buffer grows within max_out");
		if (rc != WS_DEFLATE_OK)
			require(out.len == before, "out->len kept on error");
		require(s.ready, "the stream stays usable");
	}
	/* after whatever happened, a fresh message inflates */
	require(ws_deflate_stream_reset(&s) == 0, "reset");
	out.len = 0;
	require(ws_deflate_inflate(&s, hello, sizeof(hello), true, 5, &out) ==
	    0 && out.len == 5, "the stream works at the end");
	ws_deflate_stream_free(&s);
	require(s.mem == 0, "every zlib block freed");
	ws_deflate_buf_free(&out);
}

static void
fuzz_round_trip(uint8_t settings, const uint8_t *data, size_t len)
{
	struct ws_deflate_stream d, in;
	struct ws_deflate_buf z = { 0 }, out = { 0 };
	int level = settings % 10;
	unsigned window = 8 + (settings >> 4 & 7);
	bool reset = settings & 128;
	size_t off = 0, msg_len;
	const uint8_t *msg;
	int rc;

	require(ws_deflate_stream_init_deflate(&d, level, window) == 0,
	    "init deflate");
	require(ws_deflate_stream_init_inflate(&in, window) == 0,
	    "init inflate");
	while (next_message(data, len, &off, &msg, &msg_len)) {
		z.len = 0;
		out.len = 0;
		require(ws_deflate_compress(&d, msg, msg_len, reset, &z) == 0,
		    "compress");
		if (reset && msg_len > 0) {
			/* no history: one byte short is too big, and the
			 * stream goes on */
			rc = ws_deflate_inflate(&in, z.data, z.len, true,
			    msg_len - 1, &out);
			require(rc == WS_DEFLATE_TOO_BIG, "one byte short");
			require(out.len == 0, "nothing out when too big");
		}
		rc = ws_deflate_inflate(&in, z.data, z.len, reset, msg_len,
		    &out);
		require(rc == WS_DEFLATE_OK, "inflate what was compressed");
		require(out.len == msg_len && (msg_len == 0 ||
		    memcmp(out.data, msg, msg_len) == 0), "the same bytes back");
	}
	ws_deflate_stream_free(&d);
	ws_deflate_stream_free(&in);
	require(d.mem == 0 && in.mem == 0, "every zlib block freed");
	ws_deflate_buf_free(&z);
	ws_deflate_buf_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	switch (data[0] % 3) {
	case 0:
		fuzz_negotiate(data[1], data + 2, size - 2);
		break;
	case 1:
		fuzz_inflate(data[1], data + 2, size - 2);
		break;
	default:
		fuzz_round_trip(data[1], data + 2, size - 2);
		break;
	}
	return 0;
}
