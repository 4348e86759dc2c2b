/*
 * Unit tests for ws_deflate.c: negotiation (a table of offers and the
 * answers RFC 7692 calls for), the codec against the RFC 7692 7.2.3
 * examples, round trips at the frame-length boundaries and beyond, the
 * max_out bound against a 1 GiB zip bomb, bad data, allocation failures,
 * and the memory a stream holds at each window size.
 */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "check.h"

/* Allocation failure injection for ws_deflate.c's malloc (zlib's blocks
 * come through it) and realloc (output buffers). */
static int fail_malloc_in = -1;		/* fail the n-th next call; -1: never */
static int fail_realloc_in = -1;

static void *
test_malloc(size_t size)
{
	if (fail_malloc_in >= 0 && fail_malloc_in-- == 0)
		return NULL;
	return malloc(size);
}

static void *
test_realloc(void *ptr, size_t size)
{
	if (fail_realloc_in >= 0 && fail_realloc_in-- == 0)
		return NULL;
	return realloc(ptr, size);
}

/* zlib's inflate, counting the work done: bytes taken and written. */
#include <zlib.h>
static uint64_t inflate_in_total, inflate_out_total;

static int
test_inflate(z_streamp z, int flush)
{
	uInt in = z->avail_in, out = z->avail_out;
	int rc = inflate(z, flush);

	inflate_in_total += in - z->avail_in;
	inflate_out_total += out - z->avail_out;
	return rc;
}

#define malloc test_malloc
#define realloc test_realloc
#define inflate test_inflate
#include "../../gatewayd/ws_deflate.c"
#undef malloc
#undef realloc
#undef inflate

#include "utf8.h"
#include "ws_frame.h"

#define B(...) (const uint8_t[]){ __VA_ARGS__ }, \
	sizeof((const uint8_t[]){ __VA_ARGS__ })

/* --- negotiation ------------------------------------------------------- */

static const struct ws_deflate_policy policies[] = {
	/* 0: gatewayd's default: no context takeover either way */
	{ .level = 6, .window_bits = 15, .context_takeover = false },
	/* 1: context takeover allowed */
	{ .level = 6, .window_bits = 15, .context_takeover = true },
	/* 2: a 1 KiB compression window */
	{ .level = 6, .window_bits = 10, .context_takeover = true },
	/* 3: ask clients for a 1 KiB window when they allow it */
	{ .level = 6, .window_bits = 15, .context_takeover = true,
	    .client_window_bits = 10 },
	/* 4: a 4 KiB window, no context takeover */
	{ .level = 6, .window_bits = 12, .context_takeover = false },
};

#define R0 "permessage-deflate; server_no_context_takeover; " \
	"client_no_context_takeover"
#define SNCT 1
#define CNCT 2

struct neg_case {
	int pol;
	const char *hdrs[4];		/* NULL-terminated */
	int rc;
	const char *resp;		/* "" unless rc is 1 */
	int nct;			/* SNCT | CNCT agreed */
	unsigned swb, cwb;		/* agreed window bits */
};

static const struct neg_case neg_cases[] = {
	/* plain offers */
	{ 0, { "permessage-deflate" }, 1, R0, SNCT | CNCT, 15, 15 },
	{ 1, { "permessage-deflate" }, 1, "permessage-deflate", 0, 15, 15 },
	/* each parameter */
	{ 1, { "permessage-deflate; server_no_context_takeover" }, 1,
	    "permessage-deflate; server_no_context_takeover", SNCT, 15, 15 },
	{ 1, { "permessage-deflate; client_no_context_takeover" }, 1,
	    "permessage-deflate; client_no_context_takeover", CNCT, 15, 15 },
	{ 1, { "permessage-deflate; server_no_context_takeover; "
	    "client_no_context_takeover" }, 1, R0, SNCT | CNCT, 15, 15 },
	{ 1, { "permessage-deflate; server_max_window_bits=10" }, 1,
	    "permessage-deflate; server_max_window_bits=10", 0, 10, 15 },
	{ 2, { "permessage-deflate; server_max_window_bits=12" }, 1,
	    "permessage-deflate; server_max_window_bits=10", 0, 10, 15 },
	{ 2, { "permessage-deflate; server_max_window_bits=9" }, 1,
	    "permessage-deflate; server_max_window_bits=9", 0, 9, 15 },
	{ 2, { "permessage-deflate" }, 1,
	    "permessage-deflate; server_max_window_bits=10", 0, 10, 15 },
	{ 1, { "permessage-deflate; server_max_window_bits=8" }, 1,
	    "permessage-deflate; server_max_window_bits=8", 0, 8, 15 },
	{ 1, { "permessage-deflate; server_max_window_bits=15" }, 1,
	    "permessage-deflate; server_max_window_bits=15", 0, 15, 15 },
	{ 1, { "permessage-deflate; client_max_window_bits" }, 1,
	    "permessage-deflate", 0, 15, 15 },
	{ 3, { "permessage-deflate; client_max_window_bits" }, 1,
	    "permessage-deflate; client_max_window_bits=10", 0, 15, 10 },
	{ 1, { "permessage-deflate; client_max_window_bits=9" }, 1,
	    "permessage-deflate; client_max_window_bits=9", 0, 15, 9 },
	{ 3, { "permessage-deflate; client_max_window_bits=12" }, 1,
	    "permessage-deflate; client_max_window_bits=10", 0, 15, 10 },
	{ 3, { "permessage-deflate; client_max_window_bits=8" }, 1,
	    "permessage-deflate; client_max_window_bits=8", 0, 15, 8 },
	/* not offered: never in the response */
	{ 3, { "permessage-deflate" }, 1, "permessage-deflate", 0, 15, 15 },
	{ 1, { "permessage-deflate; client_max_window_bits=15" }, 1,
	    "permessage-deflate", 0, 15, 15 },
	/* bad values decline the offer */
	{ 0, { "permessage-deflate; server_max_window_bits=7" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; server_max_window_bits=16" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; server_max_window_bits=08" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; server_max_window_bits=010" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; server_max_window_bits=0" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; server_max_window_bits" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; client_max_window_bits=7" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; client_max_window_bits=16" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; client_max_window_bits=09" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; client_max_window_bits=x" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; client_max_window_bits=1x" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; server_no_context_takeover=1" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; client_no_context_takeover=\"true\"" },
	    0, "", 0, 0, 0 },
	/* repeated parameters, whatever their case */
	{ 0, { "permessage-deflate; server_no_context_takeover; "
	    "server_no_context_takeover" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; client_no_context_takeover; "
	    "Client_No_Context_Takeover" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; server_max_window_bits=10; "
	    "server_max_window_bits=10" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; client_max_window_bits; "
	    "client_max_window_bits=10" }, 0, "", 0, 0, 0 },
	/* unknown parameters */
	{ 0, { "permessage-deflate; foo" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; foo=bar" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; x-server_max_window_bits=10" }, 0, "", 0, 0, 0 },
	/* several offers: the first acceptable one */
	{ 1, { "permessage-deflate; foo, permessage-deflate; "
	    "server_max_window_bits=10" }, 1,
	    "permessage-deflate; server_max_window_bits=10", 0, 10, 15 },
	{ 1, { "permessage-deflate; server_max_window_bits=10, "
	    "permessage-deflate" }, 1,
	    "permessage-deflate; server_max_window_bits=10", 0, 10, 15 },
	{ 1, { "permessage-deflate; server_max_window_bits=7, "
	    "permessage-deflate; client_max_window_bits=16, "
	    "permessage-deflate; client_no_context_takeover" }, 1,
	    "permessage-deflate; client_no_context_takeover", CNCT, 15, 15 },
	/* several headers */
	{ 1, { "x-webkit-deflate-frame",
	    "permessage-deflate; client_max_window_bits" }, 1,
	    "permessage-deflate", 0, 15, 15 },
	{ 1, { "permessage-deflate; server_max_window_bits=7",
	    "permessage-deflate; server_max_window_bits=9" }, 1,
	    "permessage-deflate; server_max_window_bits=9", 0, 9, 15 },
	{ 1, { "permessage-deflate; server_max_window_bits=11",
	    "permessage-deflate; server_max_window_bits=9" }, 1,
	    "permessage-deflate; server_max_window_bits=11", 0, 11, 15 },
	{ 0, { "foo", "bar; baz=1", "" }, 0, "", 0, 0, 0 },
	/* quoted values */
	{ 1, { "permessage-deflate; server_max_window_bits=\"10\"" }, 1,
	    "permessage-deflate; server_max_window_bits=10", 0, 10, 15 },
	{ 1, { "permessage-deflate; client_max_window_bits=\"9\"" }, 1,
	    "permessage-deflate; client_max_window_bits=9", 0, 15, 9 },
	{ 1, { "permessage-deflate; server_max_window_bits=\"1\\0\"" }, 1,
	    "permessage-deflate; server_max_window_bits=10", 0, 10, 15 },
	{ 1, { "permessage-deflate; server_max_window_bits=\"\\1\\1\"" }, 1,
	    "permessage-deflate; server_max_window_bits=11", 0, 11, 15 },
	{ 0, { "permessage-deflate; server_max_window_bits=\"08\"" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; client_max_window_bits=\"8\"; "
	    "server_no_context_takeover" }, 1,
	    R0 "; client_max_window_bits=8", SNCT | CNCT, 15, 8 },
	{ 0, { "x-foo; bar=\"baz\", permessage-deflate" }, 1, R0,
	    SNCT | CNCT, 15, 15 },
	/* blanks around the separators */
	{ 1, { "  permessage-deflate ;  server_max_window_bits = 10 ,  " }, 1,
	    "permessage-deflate; server_max_window_bits=10", 0, 10, 15 },
	{ 1, { "permessage-deflate\t;\tclient_no_context_takeover\t" }, 1,
	    "permessage-deflate; client_no_context_takeover", CNCT, 15, 15 },
	{ 1, { ",, permessage-deflate ,," }, 1, "permessage-deflate", 0,
	    15, 15 },
	/* tokens compare without regard to case */
	{ 0, { "PerMessage-Deflate" }, 1, R0, SNCT | CNCT, 15, 15 },
	{ 1, { "PERMESSAGE-DEFLATE; SERVER_NO_CONTEXT_TAKEOVER; "
	    "Server_Max_Window_Bits=9" }, 1,
	    "permessage-deflate; server_no_context_takeover; "
	    "server_max_window_bits=9", SNCT, 9, 15 },
	/* other extensions, nothing at all */
	{ 0, { "permessage-deflate-x" }, 0, "", 0, 0, 0 },
	{ 0, { "x-webkit-deflate-frame; no_context_takeover" }, 0, "", 0, 0, 0 },
	{ 0, { "" }, 0, "", 0, 0, 0 },
	{ 0, { " , ,\t" }, 0, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; server_max_window_bits=1,0" }, 0, "", 0, 0, 0 },
	/* the policy's window, without context takeover */
	{ 4, { "permessage-deflate; client_max_window_bits; "
	    "server_max_window_bits=15" }, 1,
	    R0 "; server_max_window_bits=12", SNCT | CNCT, 12, 15 },
	{ 4, { "permessage-deflate" }, 1, R0 "; server_max_window_bits=12",
	    SNCT | CNCT, 12, 15 },
	/* the longest answer */
	{ 0, { "permessage-deflate; server_max_window_bits=15; "
	    "client_max_window_bits=14" }, 1,
	    R0 "; server_max_window_bits=15; client_max_window_bits=14",
	    SNCT | CNCT, 15, 14 },
	/* broken grammar: -1, wherever it is */
	{ 0, { "permessage-deflate; server_max_window_bits=\"\"" }, -1, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; server_max_window_bits=\"1 0\"" }, -1,
	    "", 0, 0, 0 },
	{ 0, { "permessage-deflate; server_max_window_bits=\"10" }, -1, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; server_max_window_bits=\"10\\" }, -1,
	    "", 0, 0, 0 },
	{ 0, { "permessage-deflate; foo=\"a,b\"" }, -1, "", 0, 0, 0 },
	{ 0, { "permessage-deflate;" }, -1, "", 0, 0, 0 },
	{ 0, { "; server_no_context_takeover" }, -1, "", 0, 0, 0 },
	{ 0, { "permessage-deflate server_no_context_takeover" }, -1, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; =10" }, -1, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; server_max_window_bits=" }, -1, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; a=b=c" }, -1, "", 0, 0, 0 },
	{ 0, { "permessage-deflate;; client_no_context_takeover" }, -1, "", 0, 0, 0 },
	{ 0, { "permessage deflate" }, -1, "", 0, 0, 0 },
	{ 0, { "permessage-deflate", "x; y=\"z" }, -1, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; server_max_window_bits=10;" }, -1, "", 0, 0, 0 },
	{ 0, { "perm@ssage-deflate" }, -1, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; server_max_window_bits=10 10" }, -1, "", 0, 0, 0 },
	{ 0, { "permessage-deflate; server_max_window_bits=10\"" }, -1, "", 0, 0, 0 },
};

static int
negotiate(const struct ws_deflate_policy *pol, const char *const *hdrs,
    struct ws_deflate_params *pa, char *resp)
{
	size_t lens[4], n;

	for (n = 0; hdrs[n] != NULL; n++)
		lens[n] = strlen(hdrs[n]);
	return ws_deflate_negotiate(pol, hdrs, lens, n, pa, resp,
	    WS_DEFLATE_RESPONSE_SIZE);
}

static void
test_negotiate_table(void)
{
	struct ws_deflate_params pa, back_pa;
	char resp[WS_DEFLATE_RESPONSE_SIZE], back[WS_DEFLATE_RESPONSE_SIZE];
	size_t i;
	int rc;

	for (i = 0; i < sizeof(neg_cases) / sizeof(neg_cases[0]); i++) {
		const struct neg_case *c = &neg_cases[i];
		const char *hdrs[2] = { resp, NULL };
		int failures = check_failures_in_test;

		memset(resp, 'x', sizeof(resp));
		memset(&pa, 0xa5, sizeof(pa));
		rc = negotiate(&policies[c->pol], c->hdrs, &pa, resp);
		CHECK_EQ_INT(rc, c->rc);
		CHECK_EQ_STR(resp, c->resp);
		if (rc == 1) {
			CHECK_EQ_INT(pa.server_no_context_takeover,
			    (c->nct & SNCT) != 0);
			CHECK_EQ_INT(pa.client_no_context_takeover,
			    (c->nct & CNCT) != 0);
			CHECK_EQ_INT(pa.server_max_window_bits, c->swb);
			CHECK_EQ_INT(pa.client_max_window_bits, c->cwb);
			CHECK(strlen(resp) < WS_DEFLATE_RESPONSE_SIZE);
			/* the answer is itself an acceptable offer, and
			 * agrees to the same */
			rc = negotiate(&policies[1], hdrs, &back_pa, back);
			CHECK_EQ_INT(rc, 1);
			CHECK_EQ_INT(back_pa.server_max_window_bits,
			    pa.server_max_window_bits);
			CHECK_EQ_INT(back_pa.server_no_context_takeover,
			    pa.server_no_context_takeover);
		} else {
			CHECK_EQ_INT(pa.server_max_window_bits, 0);
			CHECK(!pa.server_no_context_takeover);
		}
		if (check_failures_in_test != failures)
			fprintf(stderr, "  in case %zu: %s\n", i, c->hdrs[0]);
	}
	CHECK(sizeof(neg_cases) / sizeof(neg_cases[0]) >= 30);
}

/* Lengths, not NULs, end the values; odd bytes break the grammar. */
static void
test_negotiate_bytes(void)
{
	static const struct ws_deflate_policy *pol = &policies[0];
	struct ws_deflate_params pa;
	char resp[WS_DEFLATE_RESPONSE_SIZE];
	const char *v[2];
	size_t lens[2];

	/* no header at all */
	CHECK_EQ_INT(ws_deflate_negotiate(pol, NULL, NULL, 0, &pa, resp,
	    sizeof(resp)), 0);
	CHECK_EQ_STR(resp, "");
	/* a value that runs on past its length */
	v[0] = "permessage-deflate; foo";
	lens[0] = 18;
	CHECK_EQ_INT(ws_deflate_negotiate(pol, v, lens, 1, &pa, resp,
	    sizeof(resp)), 1);
	CHECK_EQ_STR(resp, R0);
	/* an empty value with a NULL pointer */
	v[0] = NULL;
	lens[0] = 0;
	v[1] = "permessage-deflate";
	lens[1] = 18;
	CHECK_EQ_INT(ws_deflate_negotiate(pol, v, lens, 2, &pa, resp,
	    sizeof(resp)), 1);
	/* a NUL inside a value */
	v[0] = "permessage-deflate\0; foo";
	lens[0] = 24;
	CHECK_EQ_INT(ws_deflate_negotiate(pol, v, lens, 1, &pa, resp,
	    sizeof(resp)), -1);
	CHECK_EQ_STR(resp, "");
	v[0] = "permessage-deflate; server_max_window_bits=\"1\0\"";
	lens[0] = 47;
	CHECK_EQ_INT(ws_deflate_negotiate(pol, v, lens, 1, &pa, resp,
	    sizeof(resp)), -1);
	/* bytes over 0x7f, and controls */
	v[0] = "permessage-deflate; f\xc3\xa9=1";
	lens[0] = strlen(v[0]);
	CHECK_EQ_INT(ws_deflate_negotiate(pol, v, lens, 1, &pa, resp,
	    sizeof(resp)), -1);
	v[0] = "permessage-deflate;\r\n server_no_context_takeover";
	lens[0] = strlen(v[0]);
	CHECK_EQ_INT(ws_deflate_negotiate(pol, v, lens, 1, &pa, resp,
	    sizeof(resp)), -1);
	/* a response buffer too small: declined, not overrun */
	v[0] = "permessage-deflate";
	lens[0] = 18;
	memset(resp, 'x', sizeof(resp));
	CHECK_EQ_INT(ws_deflate_negotiate(pol, v, lens, 1, &pa, resp,
	    WS_DEFLATE_RESPONSE_SIZE - 1), 0);
	CHECK_EQ_STR(resp, "");
	CHECK_EQ_INT(ws_deflate_negotiate(pol, v, lens, 1, &pa, NULL, 0), 0);
	/* out-of-range policy windows are brought into 9..15 */
	{
		struct ws_deflate_policy odd = { 6, 4, true, 3 };
		const char *h[] = { "permessage-deflate; "
		    "client_max_window_bits", NULL };

		CHECK_EQ_INT(negotiate(&odd, h, &pa, resp), 1);
		CHECK_EQ_STR(resp, "permessage-deflate; "
		    "server_max_window_bits=9; client_max_window_bits=9");
		odd.window_bits = 99;
		odd.client_window_bits = 99;
		CHECK_EQ_INT(negotiate(&odd, h, &pa, resp), 1);
		CHECK_EQ_STR(resp, "permessage-deflate");
	}
}

/* --- the codec --------------------------------------------------------- */

static int
inflate_all(struct ws_deflate_stream *s, const uint8_t *in, size_t len,
    bool reset, size_t max_out, struct ws_deflate_buf *out)
{
	out->len = 0;
	return ws_deflate_inflate(s, in, len, reset, max_out, out);
}

/* RFC 7692 7.2.3.1 and 7.2.3.2: "Hello" compressed, alone and after a
 * first "Hello", with and without context takeover: zlib writes the
 * RFC's bytes exactly. */
static void
test_rfc_compress(void)
{
	static const uint8_t hello[] = { 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07,
	    0x00 };
	static const uint8_t again[] = { 0xf2, 0x00, 0x11, 0x00, 0x00 };
	struct ws_deflate_stream s;
	struct ws_deflate_buf out = { 0 };
	int level;

	for (level = 1; level <= 9; level++) {
		CHECK_EQ_INT(ws_deflate_stream_init_deflate(&s, level, 15), 0);
		CHECK_EQ_INT(ws_deflate_compress(&s, (const uint8_t *)"Hello",
		    5, false, &out), 0);
		CHECK_EQ_MEM(out.data, out.len, hello, sizeof(hello));
		out.len = 0;
		CHECK_EQ_INT(ws_deflate_compress(&s, (const uint8_t *)"Hello",
		    5, true, &out), 0);
		CHECK_EQ_MEM(out.data, out.len, again, sizeof(again));
		/* after a reset, the same bytes as the first time */
		out.len = 0;
		CHECK_EQ_INT(ws_deflate_compress(&s, (const uint8_t *)"Hello",
		    5, true, &out), 0);
		CHECK_EQ_MEM(out.data, out.len, hello, sizeof(hello));
		out.len = 0;
		CHECK_EQ_INT(ws_deflate_compress(&s, (const uint8_t *)"Hello",
		    5, true, &out), 0);
		CHECK_EQ_MEM(out.data, out.len, hello, sizeof(hello));
		ws_deflate_stream_free(&s);
		out.len = 0;
	}
	/* output is appended */
	CHECK_EQ_INT(ws_deflate_stream_init_deflate(&s, 6, 15), 0);
	memcpy(out.data, "ab", 2);
	out.len = 2;
	CHECK_EQ_INT(ws_deflate_compress(&s, (const uint8_t *)"Hello", 5,
	    true, &out), 0);
	CHECK_EQ_INT(out.len, 2 + sizeof(hello));
	CHECK_EQ_MEM(out.data, 2, "ab", 2);
	CHECK_EQ_MEM(out.data + 2, out.len - 2, hello, sizeof(hello));
	/* an empty message is one byte, 0x00 (an empty stored block's
	 * header and padding) */
	out.len = 0;
	CHECK_EQ_INT(ws_deflate_compress(&s, NULL, 0, true, &out), 0);
	CHECK_EQ_MEM(out.data, out.len, "\x00", 1);
	ws_deflate_stream_free(&s);
	ws_deflate_buf_free(&out);
}

/* RFC 7692 7.2.3: every example payload inflates to "Hello". */
static void
test_rfc_inflate(void)
{
	static const struct {
		const char *what;
		uint8_t data[16];
		size_t len;
	} ex[] = {
		{ "7.2.3.1 one compressed block",
		    { 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00 }, 7 },
		{ "7.2.3.3 a block with no compression",
		    { 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c,
		    0x6f, 0x00 }, 11 },
		{ "7.2.3.4 a block with BFINAL set",
		    { 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00 }, 8 },
		{ "7.2.3.4 BFINAL, without the byte after it",
		    { 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00 }, 7 },
		{ "7.2.3.5 two blocks",
		    { 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca,
		    0xc9, 0xc9, 0x07, 0x00 }, 13 },
		{ "two stored blocks",
		    { 0x00, 0x02, 0x00, 0xfd, 0xff, 0x48, 0x65, 0x00, 0x03,
		    0x00, 0xfc, 0xff, 0x6c, 0x6c, 0x6f, 0x00 }, 16 },
	};
	static const uint8_t again[] = { 0xf2, 0x00, 0x11, 0x00, 0x00 };
	struct ws_deflate_stream s;
	struct ws_deflate_buf out = { 0 };
	size_t i;
	int reset;

	for (reset = 0; reset < 2; reset++) {
		CHECK_EQ_INT(ws_deflate_stream_init_inflate(&s, 15), 0);
		for (i = 0; i < sizeof(ex) / sizeof(ex[0]); i++) {
			CHECK_EQ_INT(inflate_all(&s, ex[i].data, ex[i].len,
			    reset, 1024, &out), 0);
			CHECK_EQ_MEM(out.data, out.len, "Hello", 5);
			if (out.len != 5 || memcmp(out.data, "Hello", 5))
				fprintf(stderr, "  in %s\n", ex[i].what);
			/* 7.2.3.2: the next "Hello" refers back to this
			 * one, with context takeover (a BFINAL block's
			 * window is kept too) */
			if (!reset) {
				CHECK_EQ_INT(inflate_all(&s, again,
				    sizeof(again), false, 1024, &out), 0);
				CHECK_EQ_MEM(out.data, out.len, "Hello", 5);
			}
		}
		ws_deflate_stream_free(&s);
	}
	/* without the history, the reference back is bad data */
	CHECK_EQ_INT(ws_deflate_stream_init_inflate(&s, 15), 0);
	CHECK_EQ_INT(inflate_all(&s, again, sizeof(again), true, 1024, &out),
	    WS_DEFLATE_BAD_DATA);
	CHECK_EQ_INT(out.len, 0);
	ws_deflate_stream_free(&s);
	ws_deflate_buf_free(&out);
}

/* The RFC's fragmented example through the frame parser and the codec,
 * as the glue will do it: RSV1 on the first frame, inflate the whole
 * message, then validate the text. */
static void
test_rfc_frames(void)
{
	static const uint8_t wire[] = { 0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80,
	    0x04, 0xc9, 0xc9, 0x07, 0x00, 0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00,
	    0x00 };
	struct ws_frame_parser p;
	struct ws_frame_event ev;
	struct ws_deflate_stream s;
	struct ws_deflate_buf out = { 0 };
	size_t off = 0, n, messages = 0;

	ws_frame_parser_init(&p, 1024, 0, false);
	ws_frame_parser_allow_rsv1(&p, true);
	CHECK_EQ_INT(ws_deflate_stream_init_inflate(&s, 15), 0);
	while (off < sizeof(wire)) {
		n = ws_frame_parse(&p, wire + off, 1, &ev);
		off += n;
		if (n == 0 || ev.type == WS_EV_ERROR)
			break;
		if (ev.type != WS_EV_MESSAGE)
			continue;
		CHECK(ev.compressed);
		CHECK_EQ_INT(ev.opcode, WS_OP_TEXT);
		CHECK_EQ_INT(inflate_all(&s, ev.data, ev.len, false, 1024,
		    &out), 0);
		CHECK_EQ_MEM(out.data, out.len, "Hello", 5);
		CHECK(utf8_valid(out.data, out.len));
		messages++;
	}
	CHECK_EQ_INT(off, sizeof(wire));
	CHECK_EQ_INT(messages, 2);
	ws_frame_parser_free(&p);
	ws_deflate_stream_free(&s);
	ws_deflate_buf_free(&out);
}

/* Fill buf: kind 0 random, 1 repetitive text, 2 zeros, 3 runs. */
static void
fill(uint8_t *buf, size_t len, int kind, uint32_t seed)
{
	static const char text[] = "{\"room\":\"lobby\",\"from\":42,\"text\":"
	    "\"hello, world\"}\n";
	uint32_t x = seed * 2654435761u + 1;
	size_t i;

	for (i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		switch (kind) {
		case 0:
			buf[i] = (uint8_t)(x >> 16);
			break;
		case 1:
			buf[i] = (uint8_t)text[i % (sizeof(text) - 1)];
			break;
		case 2:
			buf[i] = 0;
			break;
		default:
			buf[i] = (uint8_t)((i >> 7) * 31 + (x >> 29));
			break;
		}
	}
}

/* Compress and inflate back: sizes at and around the frame-length
 * boundaries and beyond, several kinds of data, with and without context
 * takeover, each window and some levels. */
static void
test_round_trip(void)
{
	static const size_t sizes[] = { 0, 1, 2, 125, 126, 127, 1000, 65535,
	    65536, 65537, 1 << 20 };
	static const unsigned windows[] = { 8, 9, 12, 15 };
	static const int levels[] = { 1, 6, 9 };
	struct ws_deflate_stream d, in;
	struct ws_deflate_buf z = { 0 }, out = { 0 };
	uint8_t *buf = malloc(1 << 20);
	size_t si, wi, li, round_trips = 0;
	int kind, reset;

	if (buf == NULL)
		return;
	for (wi = 0; wi < sizeof(windows) / sizeof(windows[0]); wi++)
	for (li = 0; li < sizeof(levels) / sizeof(levels[0]); li++)
	for (reset = 0; reset < 2; reset++) {
		CHECK_EQ_INT(ws_deflate_stream_init_deflate(&d, levels[li],
		    windows[wi]), 0);
		CHECK_EQ_INT(ws_deflate_stream_init_inflate(&in, windows[wi]),
		    0);
		/* one stream pair carries every message in turn, so with
		 * context takeover each refers back to those before */
		for (si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++)
		for (kind = 0; kind < 4; kind++) {
			size_t len = sizes[si];

			if (len == 1 << 20 && (li != 1 || wi % 2))
				continue;	/* enough of the big ones */
			fill(buf, len, kind, (uint32_t)(si * 4 + kind));
			z.len = 0;
			CHECK_EQ_INT(ws_deflate_compress(&d, buf, len, reset,
			    &z), 0);
			if (kind == 2 && len >= 1000)
				CHECK(z.len < len / 64 + 16);
			CHECK_EQ_INT(inflate_all(&in, z.data, z.len, reset,
			    len, &out), 0);
			/* out.data is NULL until a message fills it */
			CHECK_EQ_INT(out.len, len);
			CHECK(len == 0 || memcmp(out.data, buf, len) == 0);
			round_trips++;
		}
		ws_deflate_stream_free(&d);
		ws_deflate_stream_free(&in);
	}
	printf("  %zu round trips\n", round_trips);
	ws_deflate_buf_free(&z);
	ws_deflate_buf_free(&out);
	free(buf);
}

/* Streams shared between connections, as the glue may do without context
 * takeover: messages of two "connections" interleave on one pair, each
 * reset after its message. */
static void
test_shared_stream(void)
{
	struct ws_deflate_stream d, in;
	struct ws_deflate_buf z = { 0 }, out = { 0 }, first = { 0 };
	uint8_t a[3000], b[3000];
	int i;

	fill(a, sizeof(a), 1, 1);
	fill(b, sizeof(b), 3, 2);
	CHECK_EQ_INT(ws_deflate_stream_init_deflate(&d, 6, 15), 0);
	CHECK_EQ_INT(ws_deflate_stream_init_inflate(&in, 15), 0);
	CHECK_EQ_INT(ws_deflate_compress(&d, a, sizeof(a), true, &first), 0);
	for (i = 0; i < 10; i++) {
		const uint8_t *m = i % 2 ? b : a;

		z.len = 0;
		CHECK_EQ_INT(ws_deflate_compress(&d, m, 3000, true, &z), 0);
		/* no history: the same message compresses the same */
		if (m == a)
			CHECK_EQ_MEM(z.data, z.len, first.data, first.len);
		CHECK_EQ_INT(inflate_all(&in, z.data, z.len, true, 3000, &out),
		    0);
		CHECK_EQ_MEM(out.data, out.len, m, 3000);
	}
	/* an error on a shared stream leaves it usable for the next one */
	CHECK_EQ_INT(inflate_all(&in, B(0x06, 0x00), true, 100, &out),
	    WS_DEFLATE_BAD_DATA);
	CHECK_EQ_INT(inflate_all(&in, first.data, first.len, true, 3000,
	    &out), 0);
	CHECK_EQ_MEM(out.data, out.len, a, 3000);
	ws_deflate_stream_free(&d);
	ws_deflate_stream_free(&in);
	ws_deflate_buf_free(&z);
	ws_deflate_buf_free(&out);
	ws_deflate_buf_free(&first);
}

/*
 * A window of 8 bits agreed: zlib compresses with 9 but never refers
 * further back than 250 bytes, so a peer that keeps 256 bytes of history
 * reads every message.  A 15-bit stream of the same messages refers 300
 * bytes back, into the message before, and is bad data to it.  (Within
 * one message zlib inflates from its output, whatever its window, so
 * only references across messages show the window.)
 */
static void
test_window_8(void)
{
	struct ws_deflate_stream d, in;
	struct ws_deflate_buf z = { 0 }, out = { 0 };
	uint8_t buf[300];
	int i, rc;

	/* the same 300 random bytes, message after message */
	fill(buf, sizeof(buf), 0, 7);
	CHECK_EQ_INT(ws_deflate_stream_init_deflate(&d, 9, 8), 0);
	CHECK_EQ_INT(d.window_bits, 9);
	CHECK_EQ_INT(ws_deflate_stream_init_inflate(&in, 8), 0);
	for (i = 0; i < 5; i++) {
		z.len = 0;
		CHECK_EQ_INT(ws_deflate_compress(&d, buf, sizeof(buf), false,
		    &z), 0);
		CHECK_EQ_INT(inflate_all(&in, z.data, z.len, false,
		    sizeof(buf), &out), 0);
		CHECK_EQ_MEM(out.data, out.len, buf, sizeof(buf));
	}
	ws_deflate_stream_free(&d);
	ws_deflate_stream_free(&in);

	CHECK_EQ_INT(ws_deflate_stream_init_deflate(&d, 9, 15), 0);
	CHECK_EQ_INT(ws_deflate_stream_init_inflate(&in, 8), 0);
	for (i = 0; i < 2; i++) {
		z.len = 0;
		CHECK_EQ_INT(ws_deflate_compress(&d, buf, sizeof(buf), false,
		    &z), 0);
		rc = inflate_all(&in, z.data, z.len, false, sizeof(buf), &out);
		CHECK_EQ_INT(rc, i == 0 ? 0 : WS_DEFLATE_BAD_DATA);
	}
	/* the second one was a reference back */
	CHECK(z.len < 10);
	ws_deflate_stream_free(&d);
	ws_deflate_stream_free(&in);
	ws_deflate_buf_free(&z);
	ws_deflate_buf_free(&out);
}

/* max_out is exact: a message of n bytes passes with max_out n and is too
 * big with n - 1; out never grows past max_out. */
static void
test_max_out(void)
{
	static const size_t sizes[] = { 1, 2, 100, 1023, 1024, 1025, 5000,
	    70000 };
	struct ws_deflate_stream d, in;
	struct ws_deflate_buf z = { 0 }, out = { 0 };
	uint8_t *buf = malloc(70000);
	size_t i;
	int kind;

	if (buf == NULL)
		return;
	CHECK_EQ_INT(ws_deflate_stream_init_deflate(&d, 6, 15), 0);
	CHECK_EQ_INT(ws_deflate_stream_init_inflate(&in, 15), 0);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
	for (kind = 0; kind < 3; kind++) {
		size_t n = sizes[i];

		fill(buf, n, kind, (uint32_t)i);
		z.len = 0;
		CHECK_EQ_INT(ws_deflate_compress(&d, buf, n, true, &z), 0);
		ws_deflate_buf_free(&out);
		CHECK_EQ_INT(inflate_all(&in, z.data, z.len, true, n - 1,
		    &out), WS_DEFLATE_TOO_BIG);
		CHECK_EQ_INT(out.len, 0);
		CHECK(out.cap <= n - 1);
		ws_deflate_buf_free(&out);
		CHECK_EQ_INT(inflate_all(&in, z.data, z.len, true, n, &out),
		    0);
		CHECK_EQ_MEM(out.data, out.len, buf, n);
		CHECK(out.cap <= n);
		/* the growth rule: at most twice the length, or the first
		 * allocation */
		CHECK(out.cap <= WS_DEFLATE_BUF_MIN || out.cap <= 2 * n);
	}
	/* max_out 0: only empty messages */
	z.len = 0;
	CHECK_EQ_INT(ws_deflate_compress(&d, NULL, 0, true, &z), 0);
	CHECK_EQ_INT(inflate_all(&in, z.data, z.len, true, 0, &out), 0);
	CHECK_EQ_INT(out.len, 0);
	CHECK_EQ_INT(inflate_all(&in, B(0x00), true, 0, &out), 0);
	CHECK_EQ_INT(inflate_all(&in, NULL, 0, true, 0, &out), 0);
	CHECK_EQ_INT(inflate_all(&in, B(0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07,
	    0x00), true, 0, &out), WS_DEFLATE_TOO_BIG);
	CHECK_EQ_INT(inflate_all(&in, B(0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07,
	    0x00), true, 4, &out), WS_DEFLATE_TOO_BIG);
	/* max_out counts from the buffer's length at the call */
	memcpy(out.data, "xyz", 3);
	out.len = 3;
	CHECK_EQ_INT(ws_deflate_inflate(&in, B(0xf2, 0x48, 0xcd, 0xc9, 0xc9,
	    0x07, 0x00), true, 5, &out), 0);
	CHECK_EQ_MEM(out.data, out.len, "xyzHello", 8);
	ws_deflate_stream_free(&d);
	ws_deflate_stream_free(&in);
	ws_deflate_buf_free(&z);
	ws_deflate_buf_free(&out);
	free(buf);
}

/*
 * A zip bomb: 1 GiB of zeros, deflated a piece at a time (about 1 MB of
 * payload).  Inflating it with max_out 1 MiB stops there: the output
 * buffer stays within 1 MiB, zlib writes at most 1 MiB and one byte, and
 * reads about a thousandth of the input.
 */
static void
test_zip_bomb(void)
{
	const size_t total = (size_t)1 << 30, piece = 1 << 20;
	const size_t max_out = 1 << 20;
	struct ws_deflate_stream d, in;
	struct ws_deflate_buf z = { 0 }, out = { 0 };
	uint8_t *zeros = calloc(1, piece);
	size_t done;
	clock_t t0;
	double secs;

	if (zeros == NULL)
		return;
	/* the bomb, made with the stream's own pieces: deflate without a
	 * flush between them, then the last piece with the flush */
	CHECK_EQ_INT(ws_deflate_stream_init_deflate(&d, 9, 15), 0);
	for (done = 0; done < total; done += piece) {
		size_t room;

		d.z.next_in = zeros;
		d.z.avail_in = (uInt)piece;
		do {
			if (z.cap - z.len < 65536) {
				z.cap = z.cap ? 2 * z.cap : 1 << 20;
				z.data = realloc(z.data, z.cap);
				if (z.data == NULL)
					return;
			}
			room = z.cap - z.len;
			d.z.next_out = z.data + z.len;
			d.z.avail_out = (uInt)room;
			CHECK(deflate(&d.z, done + piece == total ?
			    Z_SYNC_FLUSH : Z_NO_FLUSH) != Z_STREAM_ERROR);
			z.len += room - d.z.avail_out;
		} while (d.z.avail_out == 0 || d.z.avail_in != 0);
	}
	CHECK_EQ_MEM(z.data + z.len - 4, 4, ws_deflate_tail, 4);
	z.len -= 4;
	printf("  1 GiB of zeros deflates to %zu bytes\n", z.len);
	CHECK(z.len < total / 500);
	ws_deflate_stream_free(&d);

	CHECK_EQ_INT(ws_deflate_stream_init_inflate(&in, 15), 0);
	inflate_in_total = inflate_out_total = 0;
	t0 = clock();
	CHECK_EQ_INT(inflate_all(&in, z.data, z.len, true, max_out, &out),
	    WS_DEFLATE_TOO_BIG);
	secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
	printf("  stopped after %llu bytes out, %llu in, %.3f s\n",
	    (unsigned long long)inflate_out_total,
	    (unsigned long long)inflate_in_total, secs);
	CHECK_EQ_INT(out.len, 0);
	CHECK(out.cap <= max_out);
	CHECK_EQ_INT(inflate_out_total, max_out + 1);
	CHECK(inflate_in_total < z.len / 100);
	/* and the stream is ready for the next message */
	CHECK_EQ_INT(inflate_all(&in, B(0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07,
	    0x00), true, 5, &out), 0);
	CHECK_EQ_MEM(out.data, out.len, "Hello", 5);
	ws_deflate_stream_free(&in);
	ws_deflate_buf_free(&z);
	ws_deflate_buf_free(&out);
	free(zeros);
}

/* Data that is not a deflate stream, or one cut short. */
static void
test_bad_data(void)
{
	static const uint8_t good[] = { 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07,
	    0x00 };
	struct ws_deflate_stream in;
	struct ws_deflate_buf out = { 0 };
	size_t i;

	CHECK_EQ_INT(ws_deflate_stream_init_inflate(&in, 15), 0);
	/* BTYPE 11 is reserved */
	CHECK_EQ_INT(inflate_all(&in, B(0x06), false, 100, &out),
	    WS_DEFLATE_BAD_DATA);
	CHECK_EQ_INT(inflate_all(&in, B(0x07, 0x00), false, 100, &out),
	    WS_DEFLATE_BAD_DATA);
	/* a stored block whose NLEN does not match */
	CHECK_EQ_INT(inflate_all(&in, B(0x00, 0x05, 0x00, 0x00, 0x00, 'H',
	    'e', 'l', 'l', 'o', 0x00), false, 100, &out),
	    WS_DEFLATE_BAD_DATA);
	/* a distance before the start, in a fresh stream */
	CHECK_EQ_INT(inflate_all(&in, B(0xf2, 0x00, 0x11, 0x00, 0x00), false,
	    100, &out), WS_DEFLATE_BAD_DATA);
	/* the payload cut anywhere: never the message, never a crash */
	for (i = 1; i < sizeof(good); i++) {
		int rc = inflate_all(&in, good, i, true, 100, &out);

		CHECK(rc == WS_DEFLATE_BAD_DATA ||
		    (rc == 0 && out.len < 5));
	}
	/* the flush marker left on (RFC 7692 7.2.1 says strip it) */
	CHECK_EQ_INT(inflate_all(&in, B(0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07,
	    0x00, 0x00, 0x00, 0xff, 0xff), false, 100, &out),
	    WS_DEFLATE_BAD_DATA);
	/* data after a final block that is no block */
	CHECK_EQ_INT(inflate_all(&in, B(0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07,
	    0x00, 0xff, 0xff), false, 100, &out), WS_DEFLATE_BAD_DATA);
	/* on error out->len is kept */
	memcpy(out.data, "keep", 4);
	out.len = 4;
	CHECK_EQ_INT(ws_deflate_inflate(&in, B(0x06), false, 100, &out),
	    WS_DEFLATE_BAD_DATA);
	CHECK_EQ_INT(out.len, 4);
	/* after all that, the stream works */
	CHECK_EQ_INT(inflate_all(&in, good, sizeof(good), false, 100, &out),
	    0);
	CHECK_EQ_MEM(out.data, out.len, "Hello", 5);
	/* compressed text is the caller's to validate once inflated */
	{
		struct ws_deflate_stream d;
		struct ws_deflate_buf z = { 0 };

		CHECK_EQ_INT(ws_deflate_stream_init_deflate(&d, 6, 15), 0);
		CHECK_EQ_INT(ws_deflate_compress(&d, B('a', 0xff, 'b'), true,
		    &z), 0);
		CHECK_EQ_INT(inflate_all(&in, z.data, z.len, true, 100, &out),
		    0);
		CHECK_EQ_MEM(out.data, out.len, "a\xff" "b", 3);
		CHECK(!utf8_valid(out.data, out.len));
		ws_deflate_stream_free(&d);
		ws_deflate_buf_free(&z);
	}
	ws_deflate_stream_free(&in);
	ws_deflate_buf_free(&out);
}

/* Streams used the wrong way round, or not set up. */
static void
test_misuse(void)
{
	struct ws_deflate_stream s, zeroed;
	struct ws_deflate_buf out = { 0 };

	memset(&zeroed, 0, sizeof(zeroed));
	CHECK_EQ_INT(ws_deflate_compress(&zeroed, B('a'), true, &out),
	    WS_DEFLATE_ERROR);
	CHECK_EQ_INT(ws_deflate_inflate(&zeroed, B(0x00), true, 10, &out),
	    WS_DEFLATE_ERROR);
	CHECK_EQ_INT(ws_deflate_stream_reset(&zeroed), -1);
	CHECK_EQ_INT(ws_deflate_stream_memory(&zeroed), 0);
	ws_deflate_stream_free(&zeroed);
	ws_deflate_stream_free(&zeroed);

	CHECK_EQ_INT(ws_deflate_stream_init_deflate(&s, 10, 15), -1);
	CHECK(!s.ready);
	CHECK_EQ_INT(ws_deflate_stream_init_deflate(&s, -1, 15), -1);
	CHECK_EQ_INT(ws_deflate_stream_init_deflate(&s, 6, 7), -1);
	CHECK_EQ_INT(ws_deflate_stream_init_deflate(&s, 6, 16), -1);
	CHECK_EQ_INT(ws_deflate_stream_init_inflate(&s, 7), -1);
	CHECK_EQ_INT(ws_deflate_stream_init_inflate(&s, 16), -1);
	ws_deflate_stream_free(&s);

	CHECK_EQ_INT(ws_deflate_stream_init_inflate(&s, 15), 0);
	CHECK_EQ_INT(ws_deflate_compress(&s, B('a'), true, &out),
	    WS_DEFLATE_ERROR);
	CHECK_EQ_INT(ws_deflate_stream_reset(&s), 0);
	ws_deflate_stream_free(&s);
	CHECK_EQ_INT(ws_deflate_stream_init_deflate(&s, 0, 15), 0);
	CHECK_EQ_INT(ws_deflate_inflate(&s, B(0x00), true, 10, &out),
	    WS_DEFLATE_ERROR);
	/* level 0 stores */
	CHECK_EQ_INT(ws_deflate_compress(&s, (const uint8_t *)"Hello", 5,
	    true, &out), 0);
	CHECK_EQ_MEM(out.data, out.len, "\x00\x05\x00\xfa\xff" "Hello\x00", 11);
	ws_deflate_stream_free(&s);
	CHECK_EQ_INT(ws_deflate_stream_memory(&s), 0);
	CHECK_EQ_INT(ws_deflate_compress(&s, B('a'), true, &out),
	    WS_DEFLATE_ERROR);
	ws_deflate_buf_free(&out);
}

/* Allocation failures: init fails cleanly, a failed message leaves the
 * buffer as it was and the stream usable. */
static void
test_out_of_memory(void)
{
	struct ws_deflate_stream d, in;
	struct ws_deflate_buf z = { 0 }, out = { 0 };
	uint8_t buf[5000];
	int i, fails = 0;

	fill(buf, sizeof(buf), 0, 3);
	/* each of zlib's allocations in deflateInit2 and inflateInit2 */
	for (i = 0; i < 8; i++) {
		fail_malloc_in = i;
		if (ws_deflate_stream_init_deflate(&d, 6, 15) == -1) {
			CHECK(!d.ready);
			CHECK_EQ_INT(d.mem, 0);
			fails++;
		} else {
			ws_deflate_stream_free(&d);
			CHECK_EQ_INT(d.mem, 0);
		}
	}
	CHECK(fails >= 4);
	fail_malloc_in = 0;
	CHECK_EQ_INT(ws_deflate_stream_init_inflate(&in, 15), -1);
	CHECK_EQ_INT(in.mem, 0);
	fail_malloc_in = -1;

	CHECK_EQ_INT(ws_deflate_stream_init_deflate(&d, 6, 15), 0);
	CHECK_EQ_INT(ws_deflate_stream_init_inflate(&in, 15), 0);
	/* the output buffer cannot grow */
	memcpy(z.data = malloc(4), "abcd", 4);
	z.len = z.cap = 4;
	fail_realloc_in = 0;
	CHECK_EQ_INT(ws_deflate_compress(&d, buf, sizeof(buf), false, &z),
	    WS_DEFLATE_ERROR);
	CHECK_EQ_INT(z.len, 4);
	CHECK_EQ_MEM(z.data, 4, "abcd", 4);
	CHECK_EQ_INT(ws_deflate_compress(&d, buf, sizeof(buf), false, &z), 0);
	fail_realloc_in = 1;
	CHECK_EQ_INT(ws_deflate_inflate(&in, z.data + 4, z.len - 4, false,
	    sizeof(buf), &out), WS_DEFLATE_ERROR);
	CHECK_EQ_INT(out.len, 0);
	fail_realloc_in = -1;
	/* the failure reset both streams: start both afresh */
	CHECK_EQ_INT(ws_deflate_stream_reset(&d), 0);
	z.len = 0;
	CHECK_EQ_INT(ws_deflate_compress(&d, buf, sizeof(buf), false, &z), 0);
	CHECK_EQ_INT(inflate_all(&in, z.data, z.len, false, sizeof(buf),
	    &out), 0);
	CHECK_EQ_MEM(out.data, out.len, buf, sizeof(buf));
	/* the inflate window is allocated at the first message: a failure
	 * there is WS_DEFLATE_ERROR too */
	ws_deflate_stream_free(&in);
	CHECK_EQ_INT(ws_deflate_stream_init_inflate(&in, 15), 0);
	fail_malloc_in = 0;
	CHECK_EQ_INT(inflate_all(&in, z.data, z.len, false, sizeof(buf),
	    &out), WS_DEFLATE_ERROR);
	fail_malloc_in = -1;
	CHECK_EQ_INT(inflate_all(&in, z.data, z.len, false, sizeof(buf),
	    &out), 0);
	ws_deflate_stream_free(&d);
	ws_deflate_stream_free(&in);
	CHECK_EQ_INT(d.mem, 0);
	CHECK_EQ_INT(in.mem, 0);
	ws_deflate_buf_free(&z);
	ws_deflate_buf_free(&out);
}

/*
 * The memory one stream holds at each window, as the header documents:
 * measured through the counting allocator, deflate right after init (it
 * allocates everything then) and inflate after a message (its window
 * comes with the first one).  Every byte is given back on free.
 */
static void
test_memory(void)
{
	struct ws_deflate_stream d, in;
	struct ws_deflate_buf z = { 0 }, out = { 0 };
	uint8_t buf[4096];
	size_t dm[16], im[16], im0;
	unsigned w;

	fill(buf, sizeof(buf), 1, 0);
	printf("  window  deflate  inflate (before, after a message)\n");
	for (w = 8; w <= 15; w++) {
		CHECK_EQ_INT(ws_deflate_stream_init_deflate(&d, 6, w), 0);
		CHECK_EQ_INT(ws_deflate_stream_init_inflate(&in, w), 0);
		dm[w] = ws_deflate_stream_memory(&d);
		im0 = ws_deflate_stream_memory(&in);
		z.len = 0;
		CHECK_EQ_INT(ws_deflate_compress(&d, buf, sizeof(buf), false,
		    &z), 0);
		CHECK_EQ_INT(ws_deflate_stream_memory(&d), dm[w]);
		CHECK_EQ_INT(inflate_all(&in, z.data, z.len, false,
		    sizeof(buf), &out), 0);
		im[w] = ws_deflate_stream_memory(&in);
		printf("  %6u  %7zu  %7zu %7zu\n", w, dm[w], im0, im[w]);
		/* the inflate window is 2^w bytes, allocated by the first
		 * message */
		CHECK_EQ_INT(im[w] - im0, (size_t)1 << w);
		ws_deflate_stream_free(&d);
		ws_deflate_stream_free(&in);
		CHECK_EQ_INT(d.mem, 0);
		CHECK_EQ_INT(in.mem, 0);
	}
	/* what the header says, within a few percent */
	CHECK(dm[15] > 260000 && dm[15] < 280000);
	CHECK(dm[9] > 130000 && dm[9] < 145000);
	CHECK(im[15] > 38000 && im[15] < 42000);
	CHECK(im[9] < 8500);
	ws_deflate_buf_free(&z);
	ws_deflate_buf_free(&out);
}

int
main(void)
{
	RUN(test_negotiate_table);
	RUN(test_negotiate_bytes);
	RUN(test_rfc_compress);
	RUN(test_rfc_inflate);
	RUN(test_rfc_frames);
	RUN(test_round_trip);
	RUN(test_shared_stream);
	RUN(test_window_8);
	RUN(test_max_out);
	RUN(test_zip_bomb);
	RUN(test_bad_data);
	RUN(test_misuse);
	RUN(test_out_of_memory);
	RUN(test_memory);
	return check_summary();
}
