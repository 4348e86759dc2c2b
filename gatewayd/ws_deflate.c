/*
 * ws_deflate: permessage-deflate (RFC 7692), negotiation and codec.
 *
 * Negotiation reads every header value to its end before answering, so
 * that a broken header is refused wherever the break is, even after an
 * acceptable offer.  Each list element is an offer; a permessage-deflate
 * offer is read into a struct ws_deflate_offer that records whether it
 * must be declined, and the first one that need not be is answered.
 *
 * The codec drives zlib in raw mode (negative windowBits: no zlib header
 * or checksum), one whole message per call.  zlib allocates through a
 * counting allocator, so the memory a stream holds is measured rather
 * than estimated.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_req.h"
#include "ws_deflate.h"

/* What RFC 7692 7.2.1 strips from each compressed message and 7.2.2
 * appends again: the empty stored block that Z_SYNC_FLUSH ends with. */
static const uint8_t ws_deflate_tail[4] = { 0x00, 0x00, 0xff, 0xff };

/* zlib counts in uInt: longer inputs and outputs go in pieces. */
#define WS_DEFLATE_CHUNK ((size_t)1 << 30)

/* A parameter value is kept up to this many bytes; a longer one is only
 * known to be too long, as no valid value is. */
#define WS_DEFLATE_VALUE_MAX 8

/* One permessage-deflate offer as read. */
struct ws_deflate_offer {
	bool decline;		/* a reason to decline it was seen */
	bool server_no_context_takeover;
	bool client_no_context_takeover;
	bool has_server_bits;
	bool has_client_bits;
	unsigned server_bits;	/* 8..15 when has_server_bits */
	unsigned client_bits;	/* 8..15, or 0 for no value */
};

/* One extension-param as read: the name points into the header, the
 * value is unquoted into value. */
struct ws_deflate_param {
	const char *name;
	size_t name_len;
	bool has_value;
	char value[WS_DEFLATE_VALUE_MAX];
	size_t value_len;	/* may pass WS_DEFLATE_VALUE_MAX: cut */
};

/* --- negotiation ------------------------------------------------------ */

/* RFC 9110 tchar. */
static bool
ws_deflate_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static const char *
ws_deflate_blanks(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	return p;
}

/* Skip the token at *pp and return its length (0: there is none). */
static size_t
ws_deflate_token(const char **pp, const char *end)
{
	const char *start = *pp, *p = *pp;

	while (p < end && ws_deflate_tchar((unsigned char)*p))
		p++;
	*pp = p;
	return (size_t)(p - start);
}

static void
ws_deflate_value_add(struct ws_deflate_param *pa, char c)
{
	if (pa->value_len < WS_DEFLATE_VALUE_MAX)
		pa->value[pa->value_len] = c;
	pa->value_len++;
}

/*
 * Read the quoted-string at *pp (at its opening quote) into pa->value.
 * RFC 6455 9.1: the unquoted value must be a token, so every character,
 * escaped or not, must be a tchar; that also keeps out what a
 * quoted-string itself refuses (controls, DEL).  Returns 0, or -1 for an
 * unterminated string or a value that is not a token.
 */
static int
ws_deflate_quoted(const char **pp, const char *end, struct ws_deflate_param *pa)
{
	const char *p = *pp + 1;
	unsigned char c;

	for (;;) {
		if (p == end)
			return -1;
		c = (unsigned char)*p++;
		if (c == '"')
			break;
		if (c == '\\') {
			if (p == end)
				return -1;
			c = (unsigned char)*p++;
		}
		if (!ws_deflate_tchar(c))
			return -1;
		ws_deflate_value_add(pa, (char)c);
	}
	if (pa->value_len == 0)
		return -1;
	*pp = p;
	return 0;
}

/* A window-bits value, 8..15 in decimal without leading zeros (RFC 7692
 * 7.1.2), or 0 when it is not one. */
static unsigned
ws_deflate_bits(const struct ws_deflate_param *pa)
{
	unsigned n;

	if (!pa->has_value || pa->value_len < 1 || pa->value_len > 2)
		return 0;
	if (pa->value[0] < '1' || pa->value[0] > '9')
		return 0;
	n = (unsigned)(pa->value[0] - '0');
	if (pa->value_len == 2) {
		if (pa->value[1] < '0' || pa->value[1] > '9')
			return 0;
		n = n * 10 + (unsigned)(pa->value[1] - '0');
	}
	return n >= 8 && n <= 15 ? n : 0;
}

/* Apply one parameter to a permessage-deflate offer (RFC 7692 5, 7.1):
 * an unknown, repeated or badly valued one declines it. */
static void
ws_deflate_offer_param(struct ws_deflate_offer *o,
    const struct ws_deflate_param *pa)
{
	if (http_req_name_eq(pa->name, pa->name_len,
	    "server_no_context_takeover")) {
		if (o->server_no_context_takeover || pa->has_value)
			o->decline = true;
		o->server_no_context_takeover = true;
	} else if (http_req_name_eq(pa->name, pa->name_len,
	    "client_no_context_takeover")) {
		if (o->client_no_context_takeover || pa->has_value)
			o->decline = true;
		o->client_no_context_takeover = true;
	} else if (http_req_name_eq(pa->name, pa->name_len,
	    "server_max_window_bits")) {
		/* a value is required here, unlike for the client's */
		if (o->has_server_bits || (o->server_bits =
		    ws_deflate_bits(pa)) == 0)
			o->decline = true;
		o->has_server_bits = true;
	} else if (http_req_name_eq(pa->name, pa->name_len,
	    "client_max_window_bits")) {
		if (o->has_client_bits)
			o->decline = true;
		o->has_client_bits = true;
		if (pa->has_value && (o->client_bits =
		    ws_deflate_bits(pa)) == 0)
			o->decline = true;
	} else {
		o->decline = true;
	}
}

/*
 * Read one list element at *pp, which is at a non-blank, non-comma byte:
 * the extension token and its parameters, up to the next comma or the
 * end.  Returns 1 for a permessage-deflate offer (read into *o), 0 for
 * another extension, -1 when the grammar is broken.
 */
static int
ws_deflate_element(const char **pp, const char *end, struct ws_deflate_offer *o)
{
	struct ws_deflate_param pa;
	const char *p = *pp, *name = *pp, *v;
	size_t name_len;
	bool ours;

	if ((name_len = ws_deflate_token(&p, end)) == 0)
		return -1;
	/* tokens compare without regard to case */
	ours = http_req_name_eq(name, name_len, WS_DEFLATE_NAME);
	memset(o, 0, sizeof(*o));
	for (;;) {
		p = ws_deflate_blanks(p, end);
		if (p == end || *p == ',')
			break;
		if (*p != ';')
			return -1;
		p = ws_deflate_blanks(p + 1, end);
		memset(&pa, 0, sizeof(pa));
		pa.name = p;
		if ((pa.name_len = ws_deflate_token(&p, end)) == 0)
			return -1;
		p = ws_deflate_blanks(p, end);
		if (p < end && *p == '=') {
			pa.has_value = true;
			p = ws_deflate_blanks(p + 1, end);
			if (p < end && *p == '"') {
				if (ws_deflate_quoted(&p, end, &pa) == -1)
					return -1;
			} else {
				v = p;
				if (ws_deflate_token(&p, end) == 0)
					return -1;
				for (; v < p; v++)
					ws_deflate_value_add(&pa, *v);
			}
		}
		if (ours)
			ws_deflate_offer_param(o, &pa);
	}
	*pp = p;
	return ours ? 1 : 0;
}

static unsigned
ws_deflate_clamp_bits(unsigned bits)
{
	return bits < 9 ? 9 : bits > 15 ? 15 : bits;
}

/* Accept offer o: fill *out and write the response value into resp
 * (resp_size >= WS_DEFLATE_RESPONSE_SIZE). */
static void
ws_deflate_accept(const struct ws_deflate_policy *pol,
    const struct ws_deflate_offer *o, struct ws_deflate_params *out,
    char *resp, size_t resp_size)
{
	char sbits[48] = "", cbits[48] = "";
	unsigned swb = ws_deflate_clamp_bits(pol->window_bits), cwb = 15;

	/* RFC 7692 7.1.1: the server may always add either
	 * no_context_takeover; it must echo server_no_context_takeover. */
	out->server_no_context_takeover = !pol->context_takeover ||
	    o->server_no_context_takeover;
	out->client_no_context_takeover = !pol->context_takeover ||
	    o->client_no_context_takeover;

	/* 7.1.2.1: answer a limit with the same or a smaller value; say our
	 * own smaller window unasked, so the client can keep less. */
	if (o->has_server_bits && o->server_bits < swb)
		swb = o->server_bits;
	if (o->has_server_bits || swb < 15)
		snprintf(sbits, sizeof(sbits), "; server_max_window_bits=%u",
		    swb);

	/* 7.1.2.2: only when offered; the client's value is a hint we may
	 * take to keep a smaller inflate window.  Never ask for 8 unasked:
	 * zlib cannot compress raw with 8, so a zlib client would fail. */
	if (o->has_client_bits) {
		if (o->client_bits != 0)
			cwb = o->client_bits;
		if (pol->client_window_bits != 0 &&
		    ws_deflate_clamp_bits(pol->client_window_bits) < cwb)
			cwb = ws_deflate_clamp_bits(pol->client_window_bits);
		if (cwb < 15)
			snprintf(cbits, sizeof(cbits),
			    "; client_max_window_bits=%u", cwb);
	}
	out->server_max_window_bits = swb;
	out->client_max_window_bits = cwb;
	snprintf(resp, resp_size, "%s%s%s%s%s", WS_DEFLATE_NAME,
	    out->server_no_context_takeover ?
	    "; server_no_context_takeover" : "",
	    out->client_no_context_takeover ?
	    "; client_no_context_takeover" : "", sbits, cbits);
}

int
ws_deflate_negotiate(const struct ws_deflate_policy *pol,
    const char *const *values, const size_t *lens, size_t n,
    struct ws_deflate_params *out, char *resp, size_t resp_size)
{
	struct ws_deflate_offer o;
	const char *p, *end;
	bool agreed = false;
	size_t i;
	int rc;

	memset(out, 0, sizeof(*out));
	if (resp != NULL && resp_size > 0)
		resp[0] = '\0';
	if (resp == NULL || resp_size < WS_DEFLATE_RESPONSE_SIZE)
		return 0;
	for (i = 0; i < n; i++) {
		if (lens[i] == 0)
			continue;
		p = values[i];
		end = p + lens[i];
		for (;;) {
			p = ws_deflate_blanks(p, end);
			if (p == end)
				break;
			/* RFC 9110 5.6.1: empty list elements are ignored */
			if (*p == ',') {
				p++;
				continue;
			}
			if ((rc = ws_deflate_element(&p, end, &o)) == -1)
				goto malformed;
			if (rc == 1 && !agreed && !o.decline) {
				ws_deflate_accept(pol, &o, out, resp,
				    resp_size);
				agreed = true;
			}
		}
	}
	return agreed ? 1 : 0;

malformed:
	memset(out, 0, sizeof(*out));
	resp[0] = '\0';
	return -1;
}

/* --- streams ----------------------------------------------------------- */

/* zlib's blocks carry their size in front, so zfree can count them off;
 * the union keeps the block after it aligned for anything. */
union ws_deflate_block {
	size_t size;
	max_align_t align;
};

static voidpf
ws_deflate_zalloc(voidpf opaque, uInt items, uInt size)
{
	struct ws_deflate_stream *s = opaque;
	union ws_deflate_block *b;
	size_t n;

	if (size != 0 && items > (SIZE_MAX - sizeof(*b)) / size)
		return Z_NULL;
	n = (size_t)items * size;
	if ((b = malloc(sizeof(*b) + n)) == NULL)
		return Z_NULL;
	b->size = n;
	s->mem += n;
	return b + 1;
}

static void
ws_deflate_zfree(voidpf opaque, voidpf ptr)
{
	struct ws_deflate_stream *s = opaque;
	union ws_deflate_block *b;

	if (ptr == NULL)
		return;
	b = (union ws_deflate_block *)ptr - 1;
	s->mem -= b->size;
	free(b);
}

static void
ws_deflate_stream_setup(struct ws_deflate_stream *s)
{
	memset(s, 0, sizeof(*s));
	s->z.zalloc = ws_deflate_zalloc;
	s->z.zfree = ws_deflate_zfree;
	s->z.opaque = s;
}

int
ws_deflate_stream_init_deflate(struct ws_deflate_stream *s, int level,
    unsigned window_bits)
{
	ws_deflate_stream_setup(s);
	if (level < 0 || level > 9 || window_bits < 8 || window_bits > 15)
		return -1;
	/* zlib refuses a raw window of 8 bits (its 256-byte window was
	 * broken); with 9 it still never emits a distance over
	 * w_size - MIN_LOOKAHEAD = 512 - 262 = 250 bytes, so a peer that
	 * inflates with the 256-byte window it agreed to reads it all. */
	if (window_bits == 8)
		window_bits = 9;
	/* deflateInit2 frees what it allocated when it fails */
	if (deflateInit2(&s->z, level, Z_DEFLATED, -(int)window_bits,
	    WS_DEFLATE_MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	s->window_bits = window_bits;
	s->level = level;
	s->deflating = true;
	s->ready = true;
	return 0;
}

int
ws_deflate_stream_init_inflate(struct ws_deflate_stream *s,
    unsigned window_bits)
{
	ws_deflate_stream_setup(s);
	if (window_bits < 8 || window_bits > 15)
		return -1;
	if (inflateInit2(&s->z, -(int)window_bits) != Z_OK)
		return -1;
	s->window_bits = window_bits;
	s->deflating = false;
	s->ready = true;
	return 0;
}

void
ws_deflate_stream_free(struct ws_deflate_stream *s)
{
	if (!s->ready)
		return;
	/* either reports Z_DATA_ERROR when freed mid-stream, and frees
	 * everything all the same */
	if (s->deflating)
		(void)deflateEnd(&s->z);
	else
		(void)inflateEnd(&s->z);
	s->ready = false;
}

int
ws_deflate_stream_reset(struct ws_deflate_stream *s)
{
	int rc;

	if (!s->ready)
		return -1;
	rc = s->deflating ? deflateReset(&s->z) : inflateReset(&s->z);
	if (rc != Z_OK) {
		/* only a damaged state gets here: make the stream unusable
		 * rather than trust it */
		ws_deflate_stream_free(s);
		return -1;
	}
	return 0;
}

size_t
ws_deflate_stream_memory(const struct ws_deflate_stream *s)
{
	return s->ready ? s->mem : 0;
}

/* --- buffers and the codec ------------------------------------------- */

void
ws_deflate_buf_free(struct ws_deflate_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

/* Make room for one byte more, by the growth rule in the header, without
 * passing limit (> b->len). */
static int
ws_deflate_buf_grow(struct ws_deflate_buf *b, size_t limit)
{
	uint8_t *d;
	size_t cap;

	if (b->len < b->cap)
		return 0;
	if (b->cap < WS_DEFLATE_BUF_MIN)
		cap = WS_DEFLATE_BUF_MIN;
	else
		cap = b->cap > SIZE_MAX / 2 ? SIZE_MAX : 2 * b->cap;
	if (cap > limit)
		cap = limit;
	if (cap <= b->len)
		return -1;
	if ((d = realloc(b->data, cap)) == NULL)
		return -1;
	b->data = d;
	b->cap = cap;
	return 0;
}

int
ws_deflate_compress(struct ws_deflate_stream *s, const uint8_t *in,
    size_t len, bool reset, struct ws_deflate_buf *out)
{
	size_t start = out->len, off = 0, chunk, room;
	int flush, rc;

	if (!s->ready || !s->deflating)
		return WS_DEFLATE_ERROR;
	/*
	 * An empty message is 0x00, the first byte of an empty stored block
	 * (the receiver's tail completes it), as zlib writes it on a fresh
	 * stream.  After a flush zlib would write nothing at all, having
	 * nothing to flush; and every message ends on a byte boundary, so
	 * the byte leaves the stream as it was.
	 */
	if (len == 0) {
		if (ws_deflate_buf_grow(out, SIZE_MAX) == -1)
			return WS_DEFLATE_ERROR;
		out->data[out->len++] = 0x00;
		if (reset && ws_deflate_stream_reset(s) == -1) {
			out->len = start;
			return WS_DEFLATE_ERROR;
		}
		return WS_DEFLATE_OK;
	}
	do {
		chunk = len - off < WS_DEFLATE_CHUNK ? len - off :
		    WS_DEFLATE_CHUNK;
		/* zlib's next_in is not const unless ZLIB_CONST, which
		 * every includer of ws_deflate.h would need alike */
		s->z.next_in = (Bytef *)(uintptr_t)(in + off);
		s->z.avail_in = (uInt)chunk;
		off += chunk;
		flush = off == len ? Z_SYNC_FLUSH : Z_NO_FLUSH;
		/* Until the chunk is taken and, on the last, everything
		 * written out: deflate then stops with room to spare. */
		do {
			if (ws_deflate_buf_grow(out, SIZE_MAX) == -1)
				goto fail;
			room = out->cap - out->len;
			if (room > WS_DEFLATE_CHUNK)
				room = WS_DEFLATE_CHUNK;
			s->z.next_out = out->data + out->len;
			s->z.avail_out = (uInt)room;
			rc = deflate(&s->z, flush);
			out->len += room - s->z.avail_out;
			if (rc != Z_OK && rc != Z_BUF_ERROR)
				goto fail;
			/* Z_BUF_ERROR: nothing was left to do */
			if (rc == Z_BUF_ERROR && s->z.avail_out == room)
				break;
		} while (s->z.avail_out == 0 || s->z.avail_in != 0);
		if (s->z.avail_in != 0)
			goto fail;
	} while (off < len);

	/* Z_SYNC_FLUSH always ends with the empty stored block */
	if (out->len - start < sizeof(ws_deflate_tail) ||
	    memcmp(out->data + out->len - sizeof(ws_deflate_tail),
	    ws_deflate_tail, sizeof(ws_deflate_tail)) != 0)
		goto fail;
	out->len -= sizeof(ws_deflate_tail);
	if (reset && ws_deflate_stream_reset(s) == -1) {
		out->len = start;
		return WS_DEFLATE_ERROR;
	}
	return WS_DEFLATE_OK;

fail:
	out->len = start;
	(void)ws_deflate_stream_reset(s);
	return WS_DEFLATE_ERROR;
}

/*
 * The final block of a deflate stream has ended (zlib returns
 * Z_STREAM_END and decodes nothing after it): start a new stream that
 * keeps the window, so that what follows (the rest of the message, or
 * the next message under context takeover) may refer back to it.
 */
static int
ws_deflate_inflate_restart(struct ws_deflate_stream *s)
{
	uInt have = 0;
	Bytef *dict;

	if ((dict = malloc((size_t)1 << s->window_bits)) == NULL)
		return -1;
	if (inflateGetDictionary(&s->z, dict, &have) != Z_OK ||
	    inflateReset(&s->z) != Z_OK ||
	    (have > 0 && inflateSetDictionary(&s->z, dict, have) != Z_OK)) {
		free(dict);
		return -1;
	}
	free(dict);
	return 0;
}

int
ws_deflate_inflate(struct ws_deflate_stream *s, const uint8_t *in,
    size_t len, bool reset, size_t max_out, struct ws_deflate_buf *out)
{
	const uint8_t *src;
	size_t start = out->len, limit, src_len, off, room, chunk, wrote;
	int part, rc, result = WS_DEFLATE_ERROR;
	bool probing, at_end = false, boundary = false;
	uint8_t probe;

	if (!s->ready || s->deflating)
		return WS_DEFLATE_ERROR;
	/* An empty payload is an empty message: senders write 0x00 for
	 * one, but appending the tail to nothing would leave the stream
	 * inside a stored block's header. */
	if (len == 0)
		return reset && ws_deflate_stream_reset(s) == -1 ?
		    WS_DEFLATE_ERROR : WS_DEFLATE_OK;
	limit = max_out > SIZE_MAX - start ? SIZE_MAX : start + max_out;
	s->z.avail_in = 0;

	/* part 0: the payload; part 1: the tail that 7.2.2 appends */
	for (part = 0; part < 2 && !at_end; part++) {
		src = part == 0 ? in : ws_deflate_tail;
		src_len = part == 0 ? len : sizeof(ws_deflate_tail);
		off = 0;
		for (;;) {
			if (s->z.avail_in == 0 && off < src_len) {
				chunk = src_len - off < WS_DEFLATE_CHUNK ?
				    src_len - off : WS_DEFLATE_CHUNK;
				s->z.next_in = (Bytef *)(uintptr_t)(src + off);
				s->z.avail_in = (uInt)chunk;
				off += chunk;
			}
			/* Within max_out, write into out; at it, let zlib
			 * write one byte aside: if it can, the message is
			 * too big, and no more work is done. */
			probing = out->len >= limit;
			if (!probing) {
				if (ws_deflate_buf_grow(out, limit) == -1)
					goto fail;
				room = (out->cap < limit ? out->cap : limit) -
				    out->len;
				if (room > WS_DEFLATE_CHUNK)
					room = WS_DEFLATE_CHUNK;
				s->z.next_out = out->data + out->len;
			} else {
				room = 1;
				s->z.next_out = &probe;
			}
			s->z.avail_out = (uInt)room;
			rc = inflate(&s->z, Z_NO_FLUSH);
			wrote = room - s->z.avail_out;
			if (probing && wrote > 0) {
				result = WS_DEFLATE_TOO_BIG;
				goto fail;
			}
			if (!probing)
				out->len += wrote;
			switch (rc) {
			case Z_OK:
			case Z_BUF_ERROR:	/* input ran out: not an error */
				/* 128: stopped between blocks */
				boundary = (s->z.data_type & 128) != 0;
				break;
			case Z_STREAM_END:
				boundary = true;
				/* Nothing follows the final block (in part
				 * 0: the payload ended with it, as 7.2.3.4's
				 * would without its last byte; the tail then
				 * belongs to nothing). */
				if (s->z.avail_in == 0 && off == src_len) {
					at_end = true;
					break;
				}
				/* More follows, as in 7.2.3.4's example: read
				 * it as a new stream on the same window. */
				if (ws_deflate_inflate_restart(s) == -1)
					goto fail;
				break;
			case Z_MEM_ERROR:
				goto fail;
			default:	/* Z_DATA_ERROR, Z_NEED_DICT */
				result = rc == Z_STREAM_ERROR ?
				    WS_DEFLATE_ERROR : WS_DEFLATE_BAD_DATA;
				goto fail;
			}
			if (at_end)
				break;
			/* All input taken and room left: nothing more will
			 * come out of this part. */
			if (s->z.avail_in == 0 && off == src_len &&
			    s->z.avail_out != 0)
				break;
		}
	}

	/* Every sender's message ends between blocks: a stream stopped
	 * inside one is truncated or garbage, and would corrupt the next
	 * message under context takeover. */
	if (!boundary) {
		result = WS_DEFLATE_BAD_DATA;
		goto fail;
	}
	if (reset) {
		if (ws_deflate_stream_reset(s) == -1)
			goto fail;
	} else if (at_end && ws_deflate_inflate_restart(s) == -1) {
		goto fail;
	}
	return WS_DEFLATE_OK;

fail:
	out->len = start;
	(void)ws_deflate_stream_reset(s);
	return result;
}
