/*
 * fuzz_ws_frame_state: libFuzzer driver for the frame parser's saved
 * state (ws_frame_parser_save and _load, gatewayd's upgrade).
 *
 * Input layout: byte 0's low bit allows RSV1, its next bits pick
 * max_message_size (64 KiB, 200 or 0); bytes 1-2 are a cut point; the
 * rest is a byte stream.  Two checks:
 *   - the stream read as a saved state: loading it never crashes, and a
 *     parser that loaded it parses whatever follows as any parser does
 *     (the sanitizers watch);
 *   - the stream read as frames, cut at the cut point: a parser fed the
 *     first part, saved and loaded into a fresh one, gives the same
 *     events on the rest as the original.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "ws_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A hash of the events of parsing data whole, up to an error. */
static uint64_t
fuzz_events(struct ws_frame_parser *p, const uint8_t *data, size_t len)
{
	struct ws_frame_event ev;
	uint64_t h = 1469598103934665603ULL;
	size_t off = 0, n, i;

	while (off < len) {
		n = ws_frame_parse(p, data + off, len - off, &ev);
		off += n;
		if (ev.type == WS_EV_NONE)
			break;
		h = (h ^ (uint64_t)ev.type ^ (uint64_t)ev.code << 8 ^
		    (uint64_t)off << 24 ^ ev.len << 40) * 1099511628211ULL;
		for (i = 0; i < ev.len && ev.data != NULL; i++)
			h = (h ^ ev.data[i]) * 1099511628211ULL;
		if (ev.type == WS_EV_ERROR)
			break;
	}
	return h;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t maxes[] = { 1 << 16, 200, 0, 1 << 16 };
	struct ws_frame_parser a, b;
	struct ws_frame_event ev;
	struct blob blob;
	uint64_t max;
	size_t cut, n;
	bool rsv1;

	if (size < 3)
		return 0;
	rsv1 = data[0] & 1;
	max = maxes[(data[0] >> 1) & 3];
	cut = (size_t)(data[1] | data[2] << 8);
	data += 3;
	size -= 3;

	/* The bytes as a state. */
	ws_frame_parser_init(&b, max, 0, true);
	ws_frame_parser_allow_rsv1(&b, rsv1);
	blob_reader(&blob, data, size);
	if (ws_frame_parser_load(&b, &blob) == 0)
		(void)fuzz_events(&b, data + blob.pos, size - blob.pos);
	ws_frame_parser_free(&b);

	/* The bytes as frames, cut. */
	if (cut > size)
		cut = size;
	ws_frame_parser_init(&a, max, 0, true);
	ws_frame_parser_allow_rsv1(&a, rsv1);
	n = 0;
	while (n < cut) {
		size_t used = ws_frame_parse(&a, data + n, cut - n, &ev);

		n += used;
		if (ev.type == WS_EV_ERROR || (ev.type == WS_EV_NONE &&
		    used == 0))
			break;
	}
	if (n == cut && ev.type != WS_EV_ERROR) {
		memset(&blob, 0, sizeof(blob));
		ws_frame_parser_save(&a, &blob);
		if (!blob.failed) {
			blob_reader(&blob, blob.data, blob.len);
			ws_frame_parser_init(&b, max, 0, true);
			ws_frame_parser_allow_rsv1(&b, rsv1);
			if (ws_frame_parser_load(&b, &blob) != 0 ||
			    blob.pos != blob.len)
				abort();	/* a real state must load */
			if (fuzz_events(&a, data + cut, size - cut) !=
			    fuzz_events(&b, data + cut, size - cut))
				abort();
			ws_frame_parser_free(&b);
		}
		free(blob.data);
	}
	ws_frame_parser_free(&a);
	return 0;
}
