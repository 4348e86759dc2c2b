/*
 * Unit tests for gatewayd/http_req.c, #included to reach its statics.
 */
#include "check.h"

#include "../../gatewayd/http_req.c"

/* The handshake of RFC 6455 1.3 (the "Origin" example of section 1.2). */
static const char rfc_request[] =
    "GET /chat HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

static struct http_req req;

/* Parse a NUL-terminated head with room for 64 headers. */
static int
parse(const char *s)
{
	return http_req_parse(&req, s, strlen(s), 64);
}

static size_t
head_end_of(const char *s)
{
	return http_req_head_end(s, strlen(s));
}

static bool
mem_is(const char *p, size_t len, const char *s)
{
	return p != NULL && len == strlen(s) && memcmp(p, s, len) == 0;
}

static void
test_head_end_crlf(void)
{
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

	CHECK_EQ_INT(http_req_head_end(rfc_request, strlen(rfc_request)),
	    strlen(rfc_request));
	CHECK_EQ_INT(http_req_head_end(s, strlen(s)), strlen(s));
	CHECK_EQ_INT(http_req_head_end("", 0), 0);
	CHECK_EQ_INT(http_req_head_end(NULL, 0), 0);
	CHECK_EQ_INT(http_req_head_end("\r\n\r\n", 4), 4);
	CHECK_EQ_INT(http_req_head_end("\n\n", 2), 2);
}

static void
test_head_end_lf_and_mixed(void)
{
	const char *lf = "GET / HTTP/1.1\nHost: a\n\n";
	const char *crlf_lf = "GET / HTTP/1.1\r\nHost: a\r\n\n";
	const char *lf_crlf = "GET / HTTP/1.1\nHost: a\n\r\n";

	CHECK_EQ_INT(http_req_head_end(lf, strlen(lf)), strlen(lf));
	CHECK_EQ_INT(http_req_head_end(crlf_lf, strlen(crlf_lf)),
	    strlen(crlf_lf));
	CHECK_EQ_INT(http_req_head_end(lf_crlf, strlen(lf_crlf)),
	    strlen(lf_crlf));
	/* a CR that ends no line ends no head either */
	CHECK_EQ_INT(head_end_of("GET / HTTP/1.1\r\r\r\r"), 0);
	CHECK_EQ_INT(head_end_of("GET / HTTP/1.1\n\r\r\n"), 0);
	CHECK_EQ_INT(head_end_of("GET / HTTP/1.1\n\r"), 0);
	CHECK_EQ_INT(head_end_of("GET / HTTP/1.1\n\rX\n\n"), 19);
}

static void
test_head_end_every_prefix(void)
{
	size_t i, len = strlen(rfc_request);

	for (i = 0; i < len; i++)
		CHECK_EQ_INT(http_req_head_end(rfc_request, i), 0);
	CHECK_EQ_INT(http_req_head_end(rfc_request, len), len);
}

/* The head arrives in pieces of every size from 1 to 13 bytes. */
static void
test_head_end_split_buffers(void)
{
	char buf[sizeof(rfc_request)];
	size_t len = strlen(rfc_request), have, piece, n, found;

	for (piece = 1; piece <= 13; piece++) {
		have = 0;
		found = 0;
		while (have < len) {
			n = len - have < piece ? len - have : piece;
			memcpy(buf + have, rfc_request + have, n);
			have += n;
			found = http_req_head_end(buf, have);
			if (have < len)
				CHECK_EQ_INT(found, 0);
		}
		CHECK_EQ_INT(found, len);
		CHECK_EQ_INT(http_req_parse(&req, buf, found, 64), 0);
		CHECK_EQ_INT(req.n_headers, 7);
	}
}

/* Bytes after the head (a pipelined frame) are not part of it. */
static void
test_head_end_pipelined(void)
{
	char buf[512];
	size_t len = strlen(rfc_request);

	memcpy(buf, rfc_request, len);
	memcpy(buf + len, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11);
	CHECK_EQ_INT(http_req_head_end(buf, len + 11), len);
	memcpy(buf + len, "GET / HTTP/1.1\r\n\r\n", 18);
	CHECK_EQ_INT(http_req_head_end(buf, len + 18), len);
	CHECK_EQ_INT(http_req_parse(&req, buf, len + 18, 64), 0);
	CHECK_EQ_INT(req.n_headers, 7);
}

static void
test_parse_rfc_example(void)
{
	CHECK_EQ_INT(parse(rfc_request), 0);
	CHECK(mem_is(req.method, req.method_len, "GET"));
	CHECK(mem_is(req.path, req.path_len, "/chat"));
	CHECK_EQ_STR(req.query, "");
	CHECK_EQ_INT(req.query_len, 0);
	CHECK_EQ_INT(req.version_minor, 1);
	CHECK_EQ_INT(req.n_headers, 7);
	CHECK(mem_is(req.headers[0].name, req.headers[0].name_len, "Host"));
	CHECK(mem_is(req.headers[0].value, req.headers[0].value_len,
	    "server.example.com"));
	CHECK(mem_is(req.headers[6].name, req.headers[6].name_len,
	    "Sec-WebSocket-Version"));
	CHECK(mem_is(req.headers[6].value, req.headers[6].value_len, "13"));
}

static void
test_parse_lf_lines(void)
{
	CHECK_EQ_INT(parse("GET /a?b HTTP/1.1\nHost: x\nUpgrade: websocket\n\n"),
	    0);
	CHECK_EQ_INT(req.n_headers, 2);
	CHECK(mem_is(req.headers[1].value, req.headers[1].value_len,
	    "websocket"));
	CHECK_EQ_INT(parse("GET /a HTTP/1.1\r\nHost: x\nA: b\r\n\n"), 0);
	CHECK_EQ_INT(req.n_headers, 2);
	CHECK(mem_is(req.headers[0].value, req.headers[0].value_len, "x"));
	CHECK(mem_is(req.headers[1].value, req.headers[1].value_len, "b"));
}

static void
test_parse_query(void)
{
	CHECK_EQ_INT(parse("GET /chat?room=1&x=?y HTTP/1.1\r\n\r\n"), 0);
	CHECK(mem_is(req.path, req.path_len, "/chat"));
	CHECK(mem_is(req.query, req.query_len, "room=1&x=?y"));
	CHECK_EQ_INT(parse("GET /? HTTP/1.1\r\n\r\n"), 0);
	CHECK(mem_is(req.path, req.path_len, "/"));
	CHECK(req.query != NULL);
	CHECK_EQ_INT(req.query_len, 0);
	CHECK_EQ_INT(parse("GET /?x HTTP/1.1\r\n\r\n"), 0);
	CHECK(mem_is(req.query, req.query_len, "x"));
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\n\r\n"), 0);
	CHECK(mem_is(req.path, req.path_len, "/"));
	CHECK_EQ_STR(req.query, "");
	CHECK_EQ_INT(parse("GET /a%20b/c;d=e HTTP/1.1\r\n\r\n"), 0);
	CHECK(mem_is(req.path, req.path_len, "/a%20b/c;d=e"));
}

static void
test_parse_bad_request_line(void)
{
	static const char *bad[] = {
		"\r\n\r\n",
		"\n\n",
		"\r\nGET / HTTP/1.1\r\n\r\n",	/* a leading empty line */
		"\nGET / HTTP/1.1\r\n\r\n",
		" GET / HTTP/1.1\r\n\r\n",
		"GET\t/ HTTP/1.1\r\n\r\n",
		"GET  / HTTP/1.1\r\n\r\n",
		"GET /  HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1 \r\n\r\n",
		"GET /\r\n\r\n",
		"GET / \r\n\r\n",
		"GET\r\n\r\n",
		"G@T / HTTP/1.1\r\n\r\n",
		"GET * HTTP/1.1\r\n\r\n",
		"GET http://a/ HTTP/1.1\r\n\r\n",
		"GET chat HTTP/1.1\r\n\r\n",
		"GET /a b HTTP/1.1\r\n\r\n",
		"GET /a\x01 HTTP/1.1\r\n\r\n",
		"GET /a\x7f HTTP/1.1\r\n\r\n",
		"GET /\xc3\xa9 HTTP/1.1\r\n\r\n",
		"GET /a#frag HTTP/1.1\r\n\r\n",
		"GET /a\rb HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\r\n\r\n",
		"GET / http/1.1\r\n\r\n",
		"GET / HTTP/1\r\n\r\n",
		"GET / HTTP/1.\r\n\r\n",
		"GET / HTTP/11.1\r\n\r\n",
		"GET / HTTP/1.10\r\n\r\n",
		"GET / HTTP/x.1\r\n\r\n",
		"GET / HTTP/1.x\r\n\r\n",
		"GET / HTTPS/1.1\r\n\r\n",
		"\x16\x03\x01\x02\x05\x01\xfc\x03\x03\r\n\r\n",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i]) != 400)
			fprintf(stderr, "bad[%zu] not rejected\n", i);
		CHECK_EQ_INT(parse(bad[i]), 400);
	}
	/* a NUL is a control character like any other */
	CHECK_EQ_INT(http_req_parse(&req, "GET /\0 HTTP/1.1\r\n\r\n",
	    sizeof("GET /\0 HTTP/1.1\r\n\r\n") - 1, 64), 400);
}

static void
test_parse_version(void)
{
	CHECK_EQ_INT(parse("GET / HTTP/1.0\r\n\r\n"), 0);
	CHECK_EQ_INT(req.version_minor, 0);
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\n\r\n"), 0);
	CHECK_EQ_INT(req.version_minor, 1);
	/* a later 1.x is 1.1-compatible (RFC 9110 2.5) */
	CHECK_EQ_INT(parse("GET / HTTP/1.9\r\n\r\n"), 0);
	CHECK_EQ_INT(req.version_minor, 9);
	CHECK_EQ_INT(parse("GET / HTTP/2.0\r\n\r\n"), 505);
	CHECK_EQ_INT(parse("GET / HTTP/3.0\r\n\r\n"), 505);
	CHECK_EQ_INT(parse("GET / HTTP/0.9\r\n\r\n"), 505);
	CHECK_EQ_INT(parse("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 400);
}

static void
test_parse_methods(void)
{
	CHECK_EQ_INT(parse("POST / HTTP/1.1\r\n\r\n"), 0);
	CHECK(mem_is(req.method, req.method_len, "POST"));
	/* methods are case-sensitive tokens: "get" parses, the handshake
	 * refuses it */
	CHECK_EQ_INT(parse("get / HTTP/1.1\r\n\r\n"), 0);
	CHECK(mem_is(req.method, req.method_len, "get"));
	CHECK_EQ_INT(parse("M-SEARCH! / HTTP/1.1\r\n\r\n"), 0);
}

static void
test_parse_header_values(void)
{
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\n"
	    "A: \t x y \t \r\n"
	    "B:\r\n"
	    "C:   \r\n"
	    "D:z\r\n"
	    "E: \xc3\xa9t\xe9\r\n"
	    "F: a\tb\r\n"
	    "\r\n"), 0);
	CHECK_EQ_INT(req.n_headers, 6);
	CHECK(mem_is(req.headers[0].value, req.headers[0].value_len, "x y"));
	CHECK_EQ_INT(req.headers[1].value_len, 0);
	CHECK_EQ_INT(req.headers[2].value_len, 0);
	CHECK(mem_is(req.headers[3].value, req.headers[3].value_len, "z"));
	CHECK(mem_is(req.headers[4].value, req.headers[4].value_len,
	    "\xc3\xa9t\xe9"));
	CHECK(mem_is(req.headers[5].value, req.headers[5].value_len, "a\tb"));
	/* the pointers of empty values stay inside the head */
	CHECK(req.headers[1].value > req.headers[1].name);
}

static void
test_parse_bad_headers(void)
{
	static const char *bad[] = {
		"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",
		"GET / HTTP/1.1\r\n: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost\r\n\r\n",
		"GET / HTTP/1.1\r\nHo(st: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHo\xc3\xa9st: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",	/* obs-fold */
		"GET / HTTP/1.1\r\nHost: a\r\n\tb\r\n\r\n",
		"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\x1b[2J\r\n\r\n",
		"GET / HTTP/1.1\r\n\rHost: a\r\n\r\n",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i]) != 400)
			fprintf(stderr, "bad[%zu] not rejected\n", i);
		CHECK_EQ_INT(parse(bad[i]), 400);
	}
	CHECK_EQ_INT(http_req_parse(&req, "GET / HTTP/1.1\r\nA: \0\r\n\r\n",
	    sizeof("GET / HTTP/1.1\r\nA: \0\r\n\r\n") - 1, 64), 400);
}

/* Without its empty line, a head is incomplete, hence malformed. */
static void
test_parse_unterminated(void)
{
	CHECK_EQ_INT(http_req_parse(&req, "", 0, 64), 400);
	CHECK_EQ_INT(parse("GET / HTTP/1.1"), 400);
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\n"), 400);
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nHost: a\r\n"), 400);
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nHost: a"), 400);
}

static void
test_parse_max_headers(void)
{
	char buf[HTTP_REQ_HEADERS_MAX * 16 + 64];
	size_t i, len;
	const char *three = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
	const char *four =
	    "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
	const char *none = "GET / HTTP/1.1\r\n\r\n";
	const char *one = "GET / HTTP/1.1\r\nA: 1\r\n\r\n";

	CHECK_EQ_INT(http_req_parse(&req, three, strlen(three), 3), 0);
	CHECK_EQ_INT(req.n_headers, 3);
	CHECK_EQ_INT(http_req_parse(&req, four, strlen(four), 3), 431);
	CHECK(req.n_headers <= 3);
	CHECK_EQ_INT(http_req_parse(&req, four, strlen(four), 4), 0);
	CHECK_EQ_INT(http_req_parse(&req, none, strlen(none), 0), 0);
	CHECK_EQ_INT(http_req_parse(&req, one, strlen(one), 0), 431);

	/* whatever max_headers says, HTTP_REQ_HEADERS_MAX bounds the array */
	len = (size_t)sprintf(buf, "GET / HTTP/1.1\r\n");
	for (i = 0; i < HTTP_REQ_HEADERS_MAX; i++)
		len += (size_t)sprintf(buf + len, "X-%zu: %zu\r\n", i, i);
	memcpy(buf + len, "\r\n", 2);
	CHECK_EQ_INT(http_req_parse(&req, buf, len + 2, (size_t)-1), 0);
	CHECK_EQ_INT(req.n_headers, HTTP_REQ_HEADERS_MAX);
	len += (size_t)sprintf(buf + len, "Y: y\r\n\r\n");
	CHECK_EQ_INT(http_req_parse(&req, buf, len, (size_t)-1), 431);
	CHECK_EQ_INT(req.n_headers, HTTP_REQ_HEADERS_MAX);
	CHECK_EQ_INT(http_req_parse(&req, buf, len, 1000), 431);
	CHECK_EQ_INT(http_req_parse(&req, buf, len, HTTP_REQ_HEADERS_MAX), 431);
}

static void
test_header_lookup(void)
{
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\n"
	    "host: one\r\n"
	    "X-Thing: a\r\n"
	    "HOST: two\r\n"
	    "\r\n"), 0);
	CHECK(http_req_header(&req, "Host") == &req.headers[0]);
	CHECK(http_req_header(&req, "hOsT") == &req.headers[0]);
	CHECK(http_req_header(&req, "x-thing") == &req.headers[1]);
	CHECK(http_req_header(&req, "X-Thin") == NULL);
	CHECK(http_req_header(&req, "X-Things") == NULL);
	CHECK(http_req_header(&req, "") == NULL);
	CHECK_EQ_INT(http_req_header_count(&req, "HOST"), 2);
	CHECK_EQ_INT(http_req_header_count(&req, "x-THING"), 1);
	CHECK_EQ_INT(http_req_header_count(&req, "Origin"), 0);
}

static void
test_header_has_token(void)
{
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\n"
	    "Connection: keep-alive, Upgrade\r\n"
	    "Upgrade: h2c\r\n"
	    "upgrade: , ,WebSocket ,\r\n"
	    "X-A: NotUpgrade, upgrades, up grade\r\n"
	    "X-B:\r\n"
	    "\r\n"), 0);
	CHECK(http_req_header_has_token(&req, "Connection", "upgrade"));
	CHECK(http_req_header_has_token(&req, "connection", "KEEP-ALIVE"));
	CHECK(!http_req_header_has_token(&req, "Connection", "close"));
	CHECK(!http_req_header_has_token(&req, "Connection", "keep"));
	/* across every header of that name */
	CHECK(http_req_header_has_token(&req, "Upgrade", "websocket"));
	CHECK(http_req_header_has_token(&req, "Upgrade", "h2c"));
	CHECK(!http_req_header_has_token(&req, "X-A", "upgrade"));
	CHECK(http_req_header_has_token(&req, "X-A", "up grade"));
	CHECK(!http_req_header_has_token(&req, "X-B", ""));
	CHECK(!http_req_header_has_token(&req, "Origin", "upgrade"));
}

static void
test_next_element(void)
{
	const char *v = " a , b\t,, c d ,\t", *pos = v, *end = v + strlen(v);
	const char *elem = NULL;
	size_t elem_len = 0;

	CHECK(http_req_next_element(&pos, end, &elem, &elem_len));
	CHECK(mem_is(elem, elem_len, "a"));
	CHECK(http_req_next_element(&pos, end, &elem, &elem_len));
	CHECK(mem_is(elem, elem_len, "b"));
	CHECK(http_req_next_element(&pos, end, &elem, &elem_len));
	CHECK(mem_is(elem, elem_len, "c d"));
	CHECK(!http_req_next_element(&pos, end, &elem, &elem_len));
	CHECK(pos == end);
	CHECK(!http_req_next_element(&pos, end, &elem, &elem_len));

	v = "";
	pos = v;
	CHECK(!http_req_next_element(&pos, v, &elem, &elem_len));
	v = " ,\t, ";
	pos = v;
	CHECK(!http_req_next_element(&pos, v + 5, &elem, &elem_len));
	v = "solo";
	pos = v;
	CHECK(http_req_next_element(&pos, v + 4, &elem, &elem_len));
	CHECK(mem_is(elem, elem_len, "solo"));
	CHECK(!http_req_next_element(&pos, v + 4, &elem, &elem_len));
	/* the end bounds the scan even when the string goes on */
	v = "ab,cd";
	pos = v;
	CHECK(http_req_next_element(&pos, v + 1, &elem, &elem_len));
	CHECK(mem_is(elem, elem_len, "a"));
	CHECK(!http_req_next_element(&pos, v + 1, &elem, &elem_len));
}

/* Feed the head a byte at a time, as a slow client would. */
static void
test_byte_at_a_time(void)
{
	static const char *heads[] = {
		"GET /x?y HTTP/1.1\nHost: a\nB:  c \n\n",
		"GET /x HTTP/1.1\r\nHost: a\r\nB: c\r\n\n",
		"GET /x HTTP/1.1\nHost: a\nB: c\n\r\n",
	};
	char buf[128];
	size_t h, i, len, found;

	for (h = 0; h < sizeof(heads) / sizeof(heads[0]); h++) {
		len = strlen(heads[h]);
		found = 0;
		for (i = 0; i < len && found == 0; i++) {
			buf[i] = heads[h][i];
			found = http_req_head_end(buf, i + 1);
		}
		CHECK_EQ_INT(found, len);
		CHECK_EQ_INT(http_req_parse(&req, buf, found, 8), 0);
		CHECK_EQ_INT(req.n_headers, 2);
		CHECK(mem_is(req.headers[0].value, req.headers[0].value_len,
		    "a"));
	}
}

static void
test_tchar(void)
{
	const char *t = "!#$%&'*+-.^_`|~09azAZ";
	int c;

	for (; *t != '\0'; t++)
		CHECK(http_req_is_tchar((unsigned char)*t));
	for (c = 0; c < 256; c++)
		if (strchr("\"(),/:;<=>?@[\\]{} \t", c) != NULL || c < 0x21 ||
		    c > 0x7e)
			CHECK(!http_req_is_tchar((unsigned char)c));
}

static void
test_is_token(void)
{
	CHECK(http_req_is_token("chat", 4));
	CHECK(http_req_is_token("v2.chat+json_x~!#$%&'*^`|-", 26));
	CHECK(!http_req_is_token("", 0));
	CHECK(!http_req_is_token("a b", 3));
	CHECK(!http_req_is_token("a,b", 3));
	CHECK(!http_req_is_token("a/b", 3));
	CHECK(!http_req_is_token("a\0b", 3));
	CHECK(!http_req_is_token("\"a\"", 3));
	CHECK(!http_req_is_token("\xc3\xa9", 2));
}

int
main(void)
{
	RUN(test_head_end_crlf);
	RUN(test_head_end_lf_and_mixed);
	RUN(test_head_end_every_prefix);
	RUN(test_head_end_split_buffers);
	RUN(test_head_end_pipelined);
	RUN(test_parse_rfc_example);
	RUN(test_parse_lf_lines);
	RUN(test_parse_query);
	RUN(test_parse_bad_request_line);
	RUN(test_parse_version);
	RUN(test_parse_methods);
	RUN(test_parse_header_values);
	RUN(test_parse_bad_headers);
	RUN(test_parse_unterminated);
	RUN(test_parse_max_headers);
	RUN(test_header_lookup);
	RUN(test_header_has_token);
	RUN(test_next_element);
	RUN(test_byte_at_a_time);
	RUN(test_tchar);
	RUN(test_is_token);
	return check_summary();
}
