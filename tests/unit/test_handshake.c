/*
 * Unit tests for gatewayd/handshake.c, #included to reach its statics;
 * http_req.o is linked beside it.
 */
#include <strings.h>

#include "check.h"

#include "../../gatewayd/handshake.c"

#define RFC_KEY		"dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT	"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/* RFC 6455 1.3 */
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

/* The headers of a minimal valid handshake. */
static const char *std_headers[] = {
	"Host: server.example.com\r\n",
	"Upgrade: websocket\r\n",
	"Connection: Upgrade\r\n",
	"Sec-WebSocket-Key: " RFC_KEY "\r\n",
	"Sec-WebSocket-Version: 13\r\n",
};

static char reqbuf[16384];
static size_t reqlen;
static struct http_req req;
static struct handshake hs;
static const char *why;

/* Parse and check a head; 1000 + the status when it does not parse. */
static int
check_head(const char *head, size_t len)
{
	int status;

	CHECK_EQ_INT(http_req_head_end(head, len), len);
	if ((status = http_req_parse(&req, head, len, 64)) != 0) {
		CHECK_EQ_INT(status, 0);
		return 1000 + status;
	}
	why = "unset";
	status = handshake_check(&req, &hs, &why);
	if (status == 0) {
		CHECK(why == NULL);
		CHECK_EQ_INT(strlen(hs.accept), HANDSHAKE_ACCEPT_LEN);
	} else {
		CHECK(why != NULL && why[0] != '\0' && strcmp(why, "unset"));
		CHECK_EQ_INT(hs.n_subprotocols, 0);
	}
	return status;
}

/*
 * Try a handshake made of request_line, the standard headers but the one
 * named drop (NULL: none), then the lines in add (NULL: none).
 */
static int
try(const char *request_line, const char *drop, const char *add)
{
	size_t i, n;

	reqlen = (size_t)snprintf(reqbuf, sizeof(reqbuf), "%s\r\n",
	    request_line);
	for (i = 0; i < sizeof(std_headers) / sizeof(std_headers[0]); i++) {
		n = drop != NULL ? strlen(drop) : 0;
		if (drop != NULL && strncasecmp(std_headers[i], drop, n) == 0 &&
		    std_headers[i][n] == ':')
			continue;
		reqlen += (size_t)snprintf(reqbuf + reqlen,
		    sizeof(reqbuf) - reqlen, "%s", std_headers[i]);
	}
	reqlen += (size_t)snprintf(reqbuf + reqlen, sizeof(reqbuf) - reqlen,
	    "%s\r\n", add != NULL ? add : "");
	CHECK(reqlen < sizeof(reqbuf));
	return check_head(reqbuf, reqlen);
}

static int
try_get(const char *drop, const char *add)
{
	return try("GET /chat HTTP/1.1", drop, add);
}

static bool
subprotocol_is(size_t i, const char *s)
{
	return i < hs.n_subprotocols && hs.subprotocol_lens[i] == strlen(s) &&
	    memcmp(hs.subprotocols[i], s, strlen(s)) == 0;
}

static void
test_accept_key(void)
{
	char out[HANDSHAKE_ACCEPT_LEN + 1];

	handshake_accept_key(RFC_KEY, strlen(RFC_KEY), out);
	CHECK_EQ_STR(out, RFC_ACCEPT);
	handshake_accept_key("x3JJHMbDL1EzLkh9GBhXDw==", 24, out);
	CHECK_EQ_STR(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
	/* only key_len bytes count */
	handshake_accept_key(RFC_KEY "trailing", strlen(RFC_KEY), out);
	CHECK_EQ_STR(out, RFC_ACCEPT);
}

static void
test_rfc_example(void)
{
	CHECK_EQ_INT(check_head(rfc_request, strlen(rfc_request)), 0);
	CHECK_EQ_STR(hs.accept, RFC_ACCEPT);
	CHECK_EQ_INT(hs.n_subprotocols, 2);
	CHECK(subprotocol_is(0, "chat"));
	CHECK(subprotocol_is(1, "superchat"));
	CHECK_EQ_INT(handshake_find_subprotocol(&hs, "chat", 4), 0);
	CHECK_EQ_INT(handshake_find_subprotocol(&hs, "superchat", 9), 1);
	CHECK_EQ_INT(handshake_find_subprotocol(&hs, "Chat", 4), -1);
	CHECK_EQ_INT(handshake_find_subprotocol(&hs, "cha", 3), -1);
	CHECK_EQ_INT(handshake_find_subprotocol(&hs, "superchat!", 10), -1);
	CHECK_EQ_INT(handshake_find_subprotocol(&hs, "", 0), -1);
	/* the offers point into the request */
	CHECK(hs.subprotocols[0] > rfc_request &&
	    hs.subprotocols[1] + 9 < rfc_request + sizeof(rfc_request));
}

static void
test_minimal(void)
{
	CHECK_EQ_INT(try_get(NULL, NULL), 0);
	CHECK_EQ_STR(hs.accept, RFC_ACCEPT);
	CHECK_EQ_INT(hs.n_subprotocols, 0);
	/* the path is the caller's business */
	CHECK_EQ_INT(try("GET /any/where?x=1 HTTP/1.1", NULL, NULL), 0);
	/* a why pointer is optional */
	CHECK_EQ_INT(handshake_check(&req, &hs, NULL), 0);
}

static void
test_lowercase_headers(void)
{
	static const char head[] =
	    "GET /chat HTTP/1.1\n"
	    "host: a\n"
	    "upgrade: WebSocket\n"
	    "connection: UPGRADE\n"
	    "sec-websocket-key: " RFC_KEY "\n"
	    "SEC-WEBSOCKET-VERSION: 13\n"
	    "sec-websocket-protocol: x\n"
	    "\n";

	CHECK_EQ_INT(check_head(head, strlen(head)), 0);
	CHECK_EQ_STR(hs.accept, RFC_ACCEPT);
	CHECK_EQ_INT(hs.n_subprotocols, 1);
	CHECK(subprotocol_is(0, "x"));
}

static void
test_method(void)
{
	CHECK_EQ_INT(try("POST /chat HTTP/1.1", NULL, NULL), 405);
	CHECK_EQ_INT(try("get /chat HTTP/1.1", NULL, NULL), 405);
	CHECK_EQ_INT(try("HEAD /chat HTTP/1.1", NULL, NULL), 405);
	CHECK_EQ_INT(try("GETS /chat HTTP/1.1", NULL, NULL), 405);
	CHECK_EQ_INT(try("CONNECT /chat HTTP/1.1", NULL, NULL), 405);
	CHECK_EQ_INT(handshake_check(&req, &hs, NULL), 405);
	/* the method is checked first */
	CHECK_EQ_INT(try("POST /chat HTTP/1.0", "Upgrade", NULL), 405);
}

static void
test_plain_http(void)
{
	CHECK_EQ_INT(try_get("Upgrade", NULL), 426);
	CHECK_EQ_INT(try_get("Upgrade", "Upgrade: h2c\r\n"), 426);
	CHECK_EQ_INT(try_get("Upgrade", "Upgrade: websocket2\r\n"), 426);
	CHECK_EQ_INT(try_get("Upgrade", "Upgrade: websocket/13\r\n"), 426);
	CHECK_EQ_INT(try_get("Upgrade", "Upgrade:\r\n"), 426);
	CHECK_EQ_INT(try_get("Upgrade", "X-Upgrade: websocket\r\n"), 426);
	CHECK_EQ_INT(try_get("Upgrade", "Upgrade: WebSocket\r\n"), 0);
	CHECK_EQ_INT(try_get("Upgrade", "Upgrade: h2c, websocket\r\n"), 0);
	CHECK_EQ_INT(try_get("Upgrade",
	    "Upgrade: h2c\r\nUPGRADE: WEBSOCKET\r\n"), 0);
	/* a plain HTTP/1.0 request is plain HTTP before it is HTTP/1.0 */
	CHECK_EQ_INT(try("GET / HTTP/1.0", "Upgrade", NULL), 426);
	/* and comes before every other fault */
	reqlen = strlen("GET / HTTP/1.1\r\n\r\n");
	CHECK_EQ_INT(check_head("GET / HTTP/1.1\r\n\r\n", reqlen), 426);
}

static void
test_http10(void)
{
	CHECK_EQ_INT(try("GET /chat HTTP/1.0", NULL, NULL), 400);
	CHECK_EQ_INT(try("GET /chat HTTP/1.2", NULL, NULL), 0);
}

static void
test_host(void)
{
	CHECK_EQ_INT(try_get("Host", NULL), 400);
	CHECK_EQ_INT(try_get(NULL, "host: other.example.com\r\n"), 400);
	CHECK_EQ_INT(try_get("Host", "Host:\r\n"), 400);
	CHECK_EQ_INT(try_get("Host", "Host: \t \r\n"), 400);
	CHECK_EQ_INT(try_get("Host", "HOST: [::1]:8080\r\n"), 0);
	/* Host comes before Connection, Version and Key */
	CHECK_EQ_INT(try_get("Host", "Sec-WebSocket-Version: 8\r\n"), 400);
	CHECK(strstr(why, "Host") != NULL);
}

static void
test_connection(void)
{
	CHECK_EQ_INT(try_get("Connection", NULL), 400);
	CHECK_EQ_INT(try_get("Connection", "Connection: keep-alive\r\n"), 400);
	CHECK_EQ_INT(try_get("Connection", "Connection: Upgraded\r\n"), 400);
	CHECK_EQ_INT(try_get("Connection", "Connection: close\r\n"), 400);
	CHECK_EQ_INT(try_get("Connection", "Connection: up grade\r\n"), 400);
	CHECK_EQ_INT(try_get("Connection",
	    "Connection: keep-alive, Upgrade\r\n"), 0);
	CHECK_EQ_INT(try_get("Connection",
	    "Connection: keep-alive,upgrade , close\r\n"), 0);
	CHECK_EQ_INT(try_get("Connection",
	    "connection: keep-alive\r\nCONNECTION: UPGRADE\r\n"), 0);
	/* Connection comes before the version */
	CHECK_EQ_INT(try_get("Connection", "Sec-WebSocket-Version: 8\r\n"),
	    400);
}

static void
test_version(void)
{
	CHECK_EQ_INT(try_get("Sec-WebSocket-Version", NULL), 426);
	CHECK_EQ_INT(try_get("Sec-WebSocket-Version",
	    "Sec-WebSocket-Version: 8\r\n"), 426);
	CHECK_EQ_INT(try_get("Sec-WebSocket-Version",
	    "Sec-WebSocket-Version: 013\r\n"), 426);
	CHECK_EQ_INT(try_get("Sec-WebSocket-Version",
	    "Sec-WebSocket-Version: 13, 8\r\n"), 426);
	CHECK_EQ_INT(try_get("Sec-WebSocket-Version",
	    "Sec-WebSocket-Version:\r\n"), 426);
	CHECK_EQ_INT(try_get(NULL, "Sec-WebSocket-Version: 13\r\n"), 426);
	CHECK_EQ_INT(try_get("Sec-WebSocket-Version",
	    "sec-websocket-version: \t13 \r\n"), 0);
	/* the version comes before the key */
	CHECK_EQ_INT(try("GET / HTTP/1.1", "Sec-WebSocket-Version",
	    "Sec-WebSocket-Key: short\r\n"), 426);
}

static void
test_key(void)
{
	static const char *bad[] = {
		"",
		"MDEyMzQ1Njc4OWFiY2Rl",		/* 15 bytes */
		"MDEyMzQ1Njc4OWFiY2RlZmc=",	/* 17 bytes, 24 digits */
		"AAAAAAAAAAAAAAAAAAAAAAA=",	/* 17 zero bytes */
		"dGhlIHNhbXBsZSBub25jZQ$=",
		"MDEyMzQ1Njc4OWFiY2RlZmdo",	/* 18 bytes */
		"dGhlIHNhbXBsZSBub25jZQ=",	/* 23 */
		"dGhlIHNhbXBsZSBub25jZQ===",	/* 25 */
		"AdGhlIHNhbXBsZSBub25jZQ==",	/* 25 */
		"dGhlIHNhbXBsZSBub25jZQ",	/* 22, no padding */
		"dGhlIHNhbXBsZSBub25j$Q==",
		"dGhlIHNhbXBsZSBub25j-Q==",	/* base64url is not base64 */
		"dGhlIHNhbXBsZSBub25j_Q==",
		"dGhlIHNhbXBs=SBub25jZQ==",
		"dGhlIHNhbXBsZSBub25jZ===",
		"dGhlIHNhbXBs ZSBub25jZQ=",
		"dGhlIHNhbXBsZSBub25jZR==",	/* non-canonical last digit */
		"dGhlIHNhbXBsZSBub25jZf==",
		"dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ==",
		"\xc3\xa9GhlIHNhbXBsZSBub25jZQ==",
	};
	char add[128];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(add, sizeof(add), "Sec-WebSocket-Key: %s\r\n", bad[i]);
		if (try_get("Sec-WebSocket-Key", add) != 400)
			fprintf(stderr, "key \"%s\" accepted\n", bad[i]);
		CHECK_EQ_INT(try_get("Sec-WebSocket-Key", add), 400);
	}
	CHECK_EQ_INT(try_get("Sec-WebSocket-Key", NULL), 400);
	CHECK(strstr(why, "no Sec-WebSocket-Key") != NULL);
	CHECK_EQ_INT(try_get(NULL, "Sec-WebSocket-Key: " RFC_KEY "\r\n"), 400);
	CHECK(strstr(why, "more than one") != NULL);
	CHECK_EQ_INT(try_get(NULL,
	    "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"), 400);

	CHECK_EQ_INT(try_get("Sec-WebSocket-Key",
	    "Sec-WebSocket-Key:  x3JJHMbDL1EzLkh9GBhXDw== \t\r\n"), 0);
	CHECK_EQ_STR(hs.accept, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
	CHECK_EQ_INT(try_get("Sec-WebSocket-Key",
	    "Sec-WebSocket-Key: /////////////////////w==\r\n"), 0);
	CHECK_EQ_STR(hs.accept, "XXpj4jYzLM2yUE0C7TIgMwTQh2g=");
	CHECK_EQ_INT(try_get("Sec-WebSocket-Key",
	    "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"), 0);
	CHECK_EQ_STR(hs.accept, "ICX+Yqv66kxgM0FcWaLWlFLwTAI=");
}

static void
test_key_valid(void)
{
	CHECK(handshake_key_valid(RFC_KEY, 24));
	CHECK(!handshake_key_valid(RFC_KEY, 23));
	CHECK(!handshake_key_valid("", 0));
	/* every digit is good in the first 21 places... */
	CHECK(handshake_key_valid("ABCDEFGHIJKLMNOPQRSTUA==", 24));
	CHECK(handshake_key_valid("VWXYZabcdefghijklmnopQ==", 24));
	CHECK(handshake_key_valid("qrstuvwxyz0123456789+g==", 24));
	/* ...but only those with four low zero bits in the 22nd */
	CHECK(handshake_key_valid("AAAAAAAAAAAAAAAAAAAAAw==", 24));
	CHECK(!handshake_key_valid("AAAAAAAAAAAAAAAAAAAAAB==", 24));
	CHECK(!handshake_key_valid("AAAAAAAAAAAAAAAAAAAAA/==", 24));
}

static void
test_subprotocols(void)
{
	char add[1024];
	size_t i, n;

	CHECK_EQ_INT(try_get(NULL, "Sec-WebSocket-Protocol: chat, superchat\r\n"),
	    0);
	CHECK_EQ_INT(hs.n_subprotocols, 2);
	CHECK(subprotocol_is(0, "chat"));
	CHECK(subprotocol_is(1, "superchat"));

	/* several headers, in the client's order */
	CHECK_EQ_INT(try_get(NULL,
	    "Sec-WebSocket-Protocol: b.v2 ,a\r\n"
	    "Origin: https://example.com\r\n"
	    "sec-websocket-protocol: ,c ,\r\n"), 0);
	CHECK_EQ_INT(hs.n_subprotocols, 3);
	CHECK(subprotocol_is(0, "b.v2"));
	CHECK(subprotocol_is(1, "a"));
	CHECK(subprotocol_is(2, "c"));
	CHECK_EQ_INT(handshake_find_subprotocol(&hs, "c", 1), 2);

	/* an empty field offers nothing */
	CHECK_EQ_INT(try_get(NULL, "Sec-WebSocket-Protocol:\r\n"), 0);
	CHECK_EQ_INT(hs.n_subprotocols, 0);
	/* names are case-sensitive */
	CHECK_EQ_INT(try_get(NULL, "Sec-WebSocket-Protocol: Chat, chat\r\n"),
	    0);
	CHECK_EQ_INT(hs.n_subprotocols, 2);

	CHECK_EQ_INT(try_get(NULL, "Sec-WebSocket-Protocol: a b\r\n"), 400);
	CHECK_EQ_INT(try_get(NULL, "Sec-WebSocket-Protocol: chat/1\r\n"), 400);
	CHECK_EQ_INT(try_get(NULL, "Sec-WebSocket-Protocol: \"chat\"\r\n"),
	    400);
	CHECK_EQ_INT(try_get(NULL, "Sec-WebSocket-Protocol: a;q=1\r\n"), 400);
	CHECK_EQ_INT(try_get(NULL,
	    "Sec-WebSocket-Protocol: ok, \xc3\xa9\r\n"), 400);
	CHECK_EQ_INT(try_get(NULL, "Sec-WebSocket-Protocol: chat, chat\r\n"),
	    400);
	CHECK(strstr(why, "repeated") != NULL);
	CHECK_EQ_INT(try_get(NULL, "Sec-WebSocket-Protocol: chat\r\n"
	    "Sec-WebSocket-Protocol: x, chat\r\n"), 400);

	/* HANDSHAKE_MAX_SUBPROTOCOLS fit, one more does not */
	n = (size_t)snprintf(add, sizeof(add), "Sec-WebSocket-Protocol: p0");
	for (i = 1; i < HANDSHAKE_MAX_SUBPROTOCOLS; i++)
		n += (size_t)snprintf(add + n, sizeof(add) - n, ",p%zu", i);
	snprintf(add + n, sizeof(add) - n, "\r\n");
	CHECK_EQ_INT(try_get(NULL, add), 0);
	CHECK_EQ_INT(hs.n_subprotocols, HANDSHAKE_MAX_SUBPROTOCOLS);
	CHECK(subprotocol_is(HANDSHAKE_MAX_SUBPROTOCOLS - 1, "p31"));
	snprintf(add + n, sizeof(add) - n,
	    "\r\nSec-WebSocket-Protocol: more\r\n");
	CHECK_EQ_INT(try_get(NULL, add), 400);
	CHECK(strstr(why, "too many") != NULL);
}

/* The server's order of preference wins over the client's. */
static void
test_select_subprotocol(void)
{
	static const char *const server[] = { "v2.chat", "chat", NULL };
	static const char *const other[] = { "mqtt", NULL };
	static const char *const empty[] = { NULL };
	static const char *const cased[] = { "Chat", "chat", NULL };

	CHECK_EQ_INT(try_get(NULL,
	    "Sec-WebSocket-Protocol: chat, v2.chat\r\n"), 0);
	CHECK_EQ_INT(handshake_select_subprotocol(&hs, server), 0);
	CHECK_EQ_INT(handshake_select_subprotocol(&hs, server + 1), 0);
	CHECK_EQ_INT(handshake_select_subprotocol(&hs, other), -1);
	CHECK_EQ_INT(handshake_select_subprotocol(&hs, empty), -1);
	CHECK_EQ_INT(handshake_select_subprotocol(&hs, NULL), -1);
	/* case-sensitive */
	CHECK_EQ_INT(handshake_select_subprotocol(&hs, cased), 1);

	CHECK_EQ_INT(try_get(NULL, "Sec-WebSocket-Protocol: chat\r\n"), 0);
	CHECK_EQ_INT(handshake_select_subprotocol(&hs, server), 1);
	/* a client offering nothing gets nothing */
	CHECK_EQ_INT(try_get(NULL, NULL), 0);
	CHECK_EQ_INT(handshake_select_subprotocol(&hs, server), -1);
	/* a prefix is not a match */
	CHECK_EQ_INT(try_get(NULL, "Sec-WebSocket-Protocol: cha, chat2\r\n"),
	    0);
	CHECK_EQ_INT(handshake_select_subprotocol(&hs, server), -1);
}

/* Allow-list entries: what the config accepts, and why not. */
static void
test_origin_check(void)
{
	static const char *const good[] = {
	    "*", "https://example.com", "http://example.com:8080",
	    "HTTPS://EXAMPLE.COM", "https://*.example.com",
	    "https://*.example.com:8443", "https://a.b-c.d_e.example",
	    "http://localhost", "http://localhost:3000",
	    "http://127.0.0.1:8080", "http://[::1]:8080", "https://[::1]",
	    "chrome-extension://abcdefghijklmnop", "app+x.y-z://host",
	    "https://*.com", "https://example.com:65535",
	    "https://example.com:80", "http://example.com:443",
	};
	static const struct {
		const char *entry, *why;
	} bad[] = {
	    { "", "expected '*' or scheme://host[:port]" },
	    { "**", "expected '*' or scheme://host[:port]" },
	    { "null", "expected '*' or scheme://host[:port]" },
	    { "example.com", "expected '*' or scheme://host[:port]" },
	    { "https:/example.com", "expected '*' or scheme://host[:port]" },
	    { "1http://example.com", "expected '*' or scheme://host[:port]" },
	    { "://example.com", "expected '*' or scheme://host[:port]" },
	    { "https://", "no host" },
	    { "https://example.com/", "an origin has no path, query or "
		"fragment" },
	    { "https://example.com/app", "an origin has no path, query or "
		"fragment" },
	    { "https://example.com?x", "an origin has no path, query or "
		"fragment" },
	    { "https://example.com#x", "an origin has no path, query or "
		"fragment" },
	    { "https://u@example.com", "an origin has no user part" },
	    { "https://example.com:", "the port must be 1..65535, without "
		"leading zeros" },
	    { "https://example.com:0", "the port must be 1..65535, without "
		"leading zeros" },
	    { "https://example.com:08080", "the port must be 1..65535, "
		"without leading zeros" },
	    { "https://example.com:65536", "the port must be 1..65535, "
		"without leading zeros" },
	    { "https://example.com:123456", "the port must be 1..65535, "
		"without leading zeros" },
	    { "https://example.com:8o", "the port must be 1..65535, "
		"without leading zeros" },
	    { "https://x:443x", "the port must be 1..65535, without leading "
		"zeros" },
	    { "https://example.com:443", "browsers never send the scheme's "
		"default port: leave it out" },
	    { "wss://example.com:443", "browsers never send the scheme's "
		"default port: leave it out" },
	    { "http://example.com:80", "browsers never send the scheme's "
		"default port: leave it out" },
	    { "https://*", "'*' is only allowed as a whole first label, as "
		"in https://*.example.com" },
	    { "https://*example.com", "'*' is only allowed as a whole first "
		"label, as in https://*.example.com" },
	    { "https://a.*.example.com", "'*' is only allowed as a whole "
		"first label, as in https://*.example.com" },
	    { "https://*.", "expected a domain name after '*.'" },
	    { "https://*.*.example.com", "expected a domain name after '*.'" },
	    { "https://*..com", "expected a domain name after '*.'" },
	    { "https://example..com", "not a host name or bracketed IPv6 "
		"address" },
	    { "https://.example.com", "not a host name or bracketed IPv6 "
		"address" },
	    { "https://example.com.", "not a host name or bracketed IPv6 "
		"address" },
	    { "https://ex ample.com", "not a host name or bracketed IPv6 "
		"address" },
	    { "https://[::1", "not a host name or bracketed IPv6 address" },
	    { "https://[xyz]", "not a host name or bracketed IPv6 address" },
	    { "https://*.[::1]", "expected a domain name after '*.'" },
	};
	const char *w;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		w = NULL;
		if (handshake_origin_check(good[i], &w) != 0)
			fprintf(stderr, "'%s' refused: %s\n", good[i], w);
		CHECK_EQ_INT(handshake_origin_check(good[i], &w), 0);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		w = NULL;
		CHECK_EQ_INT(handshake_origin_check(bad[i].entry, &w), -1);
		if (w == NULL || strcmp(w, bad[i].why) != 0)
			fprintf(stderr, "'%s': got '%s'\n", bad[i].entry,
			    w ? w : "(null)");
		CHECK_EQ_STR(w, bad[i].why);
	}
}

static bool
allowed(const char *const *list, const char *origin)
{
	return handshake_origin_allowed(list, origin,
	    origin != NULL ? strlen(origin) : 0);
}

#define ALLOWED(list, o)	allowed((list), (o))

static void
test_origin_allowed(void)
{
	static const char *const exact[] = { "https://example.com",
	    "http://localhost:3000", NULL };
	static const char *const wild[] = { "https://*.example.com", NULL };
	static const char *const wild_port[] = { "https://*.example.com:8443",
	    NULL };
	static const char *const any[] = { "https://example.com", "*", NULL };
	static const char *const empty[] = { NULL };
	static const char *const v6[] = { "http://[::1]:8080", NULL };
	static const char *const broken[] = { "https://example.com/", NULL };

	/* an empty list, and no Origin header at all, pass */
	CHECK(ALLOWED(NULL, "https://evil.example"));
	CHECK(ALLOWED(empty, "https://evil.example"));
	CHECK(ALLOWED(empty, "null"));
	CHECK(ALLOWED(exact, NULL));
	CHECK(ALLOWED(wild, NULL));

	/* exact entries, without regard to case, and nothing else */
	CHECK(ALLOWED(exact, "https://example.com"));
	CHECK(ALLOWED(exact, "HTTPS://Example.COM"));
	CHECK(ALLOWED(exact, "http://localhost:3000"));
	CHECK(!ALLOWED(exact, "http://example.com"));
	CHECK(!ALLOWED(exact, "https://example.com:8443"));
	CHECK(!ALLOWED(exact, "https://www.example.com"));
	CHECK(!ALLOWED(exact, "https://example.com.evil.net"));
	CHECK(!ALLOWED(exact, "https://example.co"));
	CHECK(!ALLOWED(exact, "https://example.com/"));
	CHECK(!ALLOWED(exact, "http://localhost"));
	CHECK(!ALLOWED(exact, "http://localhost:30000"));
	CHECK(!ALLOWED(exact, "null"));
	CHECK(!ALLOWED(exact, ""));
	/* the length counts, not a NUL */
	CHECK(handshake_origin_allowed(exact, "https://example.com.evil", 19));
	CHECK(!handshake_origin_allowed(exact, "https://example.com", 18));

	/* wildcards: one label or more, the same scheme and port */
	CHECK(ALLOWED(wild, "https://a.example.com"));
	CHECK(ALLOWED(wild, "https://A.Example.Com"));
	CHECK(ALLOWED(wild, "https://a.b.example.com"));
	CHECK(ALLOWED(wild, "https://x-1.example.com"));
	CHECK(!ALLOWED(wild, "https://example.com"));
	CHECK(!ALLOWED(wild, "https://.example.com"));
	CHECK(!ALLOWED(wild, "https://a..example.com"));
	CHECK(!ALLOWED(wild, "https://aexample.com"));
	CHECK(!ALLOWED(wild, "https://a.example.com.evil.net"));
	CHECK(!ALLOWED(wild, "https://evil.net/.example.com"));
	CHECK(!ALLOWED(wild, "https://evil.net?.example.com"));
	CHECK(!ALLOWED(wild, "https://a.example.com@evil.net"));
	CHECK(!ALLOWED(wild, "https://evil.net#.example.com"));
	CHECK(!ALLOWED(wild, "http://a.example.com"));
	CHECK(!ALLOWED(wild, "https://a.example.com:8443"));
	CHECK(!ALLOWED(wild, "https://*.example.com"));
	CHECK(!ALLOWED(wild, "https://a.example.com/"));
	CHECK(!ALLOWED(wild, "null"));
	CHECK(!ALLOWED(wild, "https://a b.example.com"));
	CHECK(ALLOWED(wild_port, "https://a.example.com:8443"));
	CHECK(!ALLOWED(wild_port, "https://a.example.com"));
	CHECK(!ALLOWED(wild_port, "https://a.example.com:443"));
	CHECK(!ALLOWED(wild_port, "https://a.example.com:84430"));

	/* "*" lets everything in, "null" and malformed values too */
	CHECK(ALLOWED(any, "https://evil.net"));
	CHECK(ALLOWED(any, "null"));
	CHECK(ALLOWED(any, "garbage"));

	CHECK(ALLOWED(v6, "http://[::1]:8080"));
	CHECK(!ALLOWED(v6, "http://[::2]:8080"));
	/* an invalid entry matches nothing, not even itself */
	CHECK(!ALLOWED(broken, "https://example.com/"));
	CHECK(!ALLOWED(broken, "https://example.com"));
}

/* A failed check leaves no subprotocols from an earlier one. */
static void
test_reuse(void)
{
	CHECK_EQ_INT(check_head(rfc_request, strlen(rfc_request)), 0);
	CHECK_EQ_INT(hs.n_subprotocols, 2);
	CHECK_EQ_INT(try_get("Host", NULL), 400);
	CHECK_EQ_INT(hs.n_subprotocols, 0);
	CHECK_EQ_STR(hs.accept, "");
}

static const char resp_101[] =
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    "\r\n";

static const char resp_101_chat[] =
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    "Sec-WebSocket-Protocol: chat\r\n"
    "\r\n";

static void
test_response_101(void)
{
	char buf[512];
	size_t n;
	int i;

	CHECK_EQ_INT(check_head(rfc_request, strlen(rfc_request)), 0);
	n = handshake_response_101(buf, sizeof(buf), &hs, NULL, 0);
	CHECK_EQ_MEM(buf, n, resp_101, strlen(resp_101));
	i = handshake_find_subprotocol(&hs, "chat", 4);
	CHECK_EQ_INT(i, 0);
	n = handshake_response_101(buf, sizeof(buf), &hs, hs.subprotocols[i],
	    hs.subprotocol_lens[i]);
	CHECK_EQ_MEM(buf, n, resp_101_chat, strlen(resp_101_chat));
	/* the length bounds the name */
	n = handshake_response_101(buf, sizeof(buf), &hs, "chatty", 4);
	CHECK_EQ_MEM(buf, n, resp_101_chat, strlen(resp_101_chat));
}

/* No header can be forged through the subprotocol or a failed check. */
static void
test_response_101_refuses(void)
{
	static const char evil[] = "chat\r\nSet-Cookie: a=b";
	char buf[512];
	struct handshake empty;

	CHECK_EQ_INT(check_head(rfc_request, strlen(rfc_request)), 0);
	CHECK_EQ_INT(handshake_response_101(buf, sizeof(buf), &hs, evil,
	    strlen(evil)), 0);
	CHECK_EQ_INT(handshake_response_101(buf, sizeof(buf), &hs, "", 0), 0);
	CHECK_EQ_INT(handshake_response_101(buf, sizeof(buf), &hs, "a b", 3),
	    0);
	memset(&empty, 0, sizeof(empty));
	CHECK_EQ_INT(handshake_response_101(buf, sizeof(buf), &empty, NULL, 0),
	    0);
	CHECK_EQ_INT(try_get("Host", NULL), 400);
	CHECK_EQ_INT(handshake_response_101(buf, sizeof(buf), &hs, NULL, 0),
	    0);
}

/*
 * Every buffer too small for the response gets 0 and is not written past
 * its end; one byte more than the response fits it.
 */
static void
test_response_101_small(void)
{
	char buf[512];
	size_t len = strlen(resp_101_chat), size, i;
	bool intact;

	CHECK_EQ_INT(check_head(rfc_request, strlen(rfc_request)), 0);
	CHECK_EQ_INT(handshake_response_101(NULL, 0, &hs, "chat", 4), 0);
	for (size = 0; size <= len + 1; size++) {
		memset(buf, 'Z', sizeof(buf));
		if (size <= len)
			CHECK_EQ_INT(handshake_response_101(buf, size, &hs,
			    "chat", 4), 0);
		else
			CHECK_EQ_INT(handshake_response_101(buf, size, &hs,
			    "chat", 4), len);
		intact = true;
		for (i = size; i < sizeof(buf); i++)
			if (buf[i] != 'Z')
				intact = false;
		CHECK(intact);
	}
}

static void
test_response_error_exact(void)
{
	static const char r400[] =
	    "HTTP/1.1 400 Bad Request\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: 8\r\n"
	    "Connection: close\r\n"
	    "\r\n"
	    "bad key\n";
	static const char r405[] =
	    "HTTP/1.1 405 Method Not Allowed\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: 18\r\n"
	    "Connection: close\r\n"
	    "Allow: GET\r\n"
	    "\r\n"
	    "method is not GET\n";
	static const char r426[] =
	    "HTTP/1.1 426 Upgrade Required\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: 24\r\n"
	    "Connection: close\r\n"
	    "Upgrade: websocket\r\n"
	    "Sec-WebSocket-Version: 13\r\n"
	    "\r\n"
	    "not a WebSocket upgrade\n";
	static const char r431[] =
	    "HTTP/1.1 431 Request Header Fields Too Large\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: 1\r\n"
	    "Connection: close\r\n"
	    "\r\n"
	    "\n";
	static const char r503_null[] =
	    "HTTP/1.1 503 Service Unavailable\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: 20\r\n"
	    "Connection: close\r\n"
	    "\r\n"
	    "Service Unavailable\n";
	char buf[1024];
	size_t n;

	n = handshake_response_error(buf, sizeof(buf), 400, "bad key");
	CHECK_EQ_MEM(buf, n, r400, strlen(r400));
	n = handshake_response_error(buf, sizeof(buf), 405,
	    "method is not GET");
	CHECK_EQ_MEM(buf, n, r405, strlen(r405));
	n = handshake_response_error(buf, sizeof(buf), 426,
	    "not a WebSocket upgrade");
	CHECK_EQ_MEM(buf, n, r426, strlen(r426));
	n = handshake_response_error(buf, sizeof(buf), 431, "");
	CHECK_EQ_MEM(buf, n, r431, strlen(r431));
	n = handshake_response_error(buf, sizeof(buf), 503, NULL);
	CHECK_EQ_MEM(buf, n, r503_null, strlen(r503_null));
	CHECK_EQ_INT(buf[n], '\0');
}

/* What handshake_check answers, the error response can say. */
static void
test_response_error_from_check(void)
{
	char buf[1024], expect[1024];
	size_t n;

	CHECK_EQ_INT(try_get("Upgrade", NULL), 426);
	n = handshake_response_error(buf, sizeof(buf), 426, why);
	snprintf(expect, sizeof(expect), "Content-Length: %zu\r\n",
	    strlen(why) + 1);
	CHECK(n > 0 && strstr(buf, expect) != NULL);
	CHECK(strstr(buf, "\r\nUpgrade: websocket\r\n") != NULL);
	CHECK(strstr(buf, "\r\nSec-WebSocket-Version: 13\r\n") != NULL);
}

static void
test_response_error_status_range(void)
{
	char buf[256];

	CHECK(handshake_response_error(buf, sizeof(buf), 599, "x") > 0);
	CHECK(strncmp(buf, "HTTP/1.1 599 Error\r\n", 20) == 0);
	CHECK(handshake_response_error(buf, sizeof(buf), 418, "x") > 0);
	CHECK(strncmp(buf, "HTTP/1.1 418 Error\r\n", 20) == 0);
	CHECK(handshake_response_error(buf, sizeof(buf), 42, "x") > 0);
	CHECK(strncmp(buf, "HTTP/1.1 500 Internal Server Error\r\n", 36) == 0);
	CHECK(handshake_response_error(buf, sizeof(buf), 1000, "x") > 0);
	CHECK(strncmp(buf, "HTTP/1.1 500 ", 13) == 0);
	CHECK(handshake_response_error(buf, sizeof(buf), -404, "x") > 0);
	CHECK(strncmp(buf, "HTTP/1.1 500 ", 13) == 0);
	/* only errors: no 101, 200 or 302 can be forged through a status */
	CHECK(handshake_response_error(buf, sizeof(buf), 101, "x") > 0);
	CHECK(strncmp(buf, "HTTP/1.1 500 ", 13) == 0);
	CHECK(handshake_response_error(buf, sizeof(buf), 200, "x") > 0);
	CHECK(strncmp(buf, "HTTP/1.1 500 ", 13) == 0);
	CHECK(handshake_response_error(buf, sizeof(buf), 302, "x") > 0);
	CHECK(strncmp(buf, "HTTP/1.1 500 ", 13) == 0);
	CHECK(handshake_response_error(buf, sizeof(buf), 399, "x") > 0);
	CHECK(strncmp(buf, "HTTP/1.1 500 ", 13) == 0);
	CHECK(handshake_response_error(buf, sizeof(buf), 400, "x") > 0);
	CHECK(strncmp(buf, "HTTP/1.1 400 ", 13) == 0);
}

/*
 * A backend's message with CR LF in it stays in the body: the head ends
 * at the first empty line, and Content-Length covers the whole body.
 */
static void
test_response_error_no_injection(void)
{
	static const char body[] =
	    "room full\r\nSet-Cookie: a=b\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
	static const char head[] =
	    "HTTP/1.1 503 Service Unavailable\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: 50\r\n"
	    "Connection: close\r\n"
	    "\r\n";
	char buf[1024];
	const char *end;
	size_t n;

	CHECK_EQ_INT(sizeof(body), 50);	/* strlen + the newline */
	n = handshake_response_error(buf, sizeof(buf), 503, body);
	CHECK_EQ_INT(n, strlen(head) + strlen(body) + 1);
	end = strstr(buf, "\r\n\r\n");
	CHECK(end != NULL && (size_t)(end + 4 - buf) == strlen(head));
	CHECK_EQ_MEM(buf, strlen(head), head, strlen(head));
	CHECK_EQ_MEM(buf + strlen(head), n - strlen(head) - 1, body,
	    strlen(body));
	CHECK_EQ_INT(buf[n - 1], '\n');
}

static void
test_response_error_small(void)
{
	char buf[512];
	size_t len, size, i;
	bool intact;

	len = handshake_response_error(buf, sizeof(buf), 426, "upgrade");
	CHECK(len > 0);
	CHECK_EQ_INT(handshake_response_error(NULL, 0, 426, "upgrade"), 0);
	for (size = 0; size <= len + 1; size++) {
		memset(buf, 'Z', sizeof(buf));
		if (size <= len)
			CHECK_EQ_INT(handshake_response_error(buf, size, 426,
			    "upgrade"), 0);
		else
			CHECK_EQ_INT(handshake_response_error(buf, size, 426,
			    "upgrade"), len);
		intact = true;
		for (i = size; i < sizeof(buf); i++)
			if (buf[i] != 'Z')
				intact = false;
		CHECK(intact);
	}
}

static void
test_status_text(void)
{
	static const struct {
		int status;
		const char *text;
	} known[] = {
		{ 101, "Switching Protocols" },
		{ 200, "OK" },
		{ 301, "Moved Permanently" },
		{ 304, "Not Modified" },
		{ 308, "Permanent Redirect" },
		{ 400, "Bad Request" },
		{ 401, "Unauthorized" },
		{ 403, "Forbidden" },
		{ 404, "Not Found" },
		{ 405, "Method Not Allowed" },
		{ 408, "Request Timeout" },
		{ 409, "Conflict" },
		{ 410, "Gone" },
		{ 413, "Content Too Large" },
		{ 414, "URI Too Long" },
		{ 426, "Upgrade Required" },
		{ 429, "Too Many Requests" },
		{ 431, "Request Header Fields Too Large" },
		{ 451, "Unavailable For Legal Reasons" },
		{ 500, "Internal Server Error" },
		{ 502, "Bad Gateway" },
		{ 503, "Service Unavailable" },
		{ 504, "Gateway Timeout" },
		{ 505, "HTTP Version Not Supported" },
		{ 0, "Error" },
		{ 418, "Error" },
		{ 999, "Error" },
		{ -1, "Error" },
	};
	size_t i;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		CHECK_EQ_STR(handshake_status_text(known[i].status),
		    known[i].text);
}

int
main(void)
{
	RUN(test_accept_key);
	RUN(test_rfc_example);
	RUN(test_minimal);
	RUN(test_lowercase_headers);
	RUN(test_method);
	RUN(test_plain_http);
	RUN(test_http10);
	RUN(test_host);
	RUN(test_connection);
	RUN(test_version);
	RUN(test_key);
	RUN(test_key_valid);
	RUN(test_subprotocols);
	RUN(test_select_subprotocol);
	RUN(test_origin_check);
	RUN(test_origin_allowed);
	RUN(test_reuse);
	RUN(test_response_101);
	RUN(test_response_101_refuses);
	RUN(test_response_101_small);
	RUN(test_response_error_exact);
	RUN(test_response_error_from_check);
	RUN(test_response_error_status_range);
	RUN(test_response_error_no_injection);
	RUN(test_response_error_small);
	RUN(test_status_text);
	return check_summary();
}
