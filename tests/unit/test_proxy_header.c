/*
 * Unit tests for gatewayd/proxy_header.c, #included to reach its statics:
 * the examples of HAProxy's proxy-protocol.txt, v1 and v2 headers of every
 * kind HAProxy sends, each fed whole, a byte at a time and with the
 * client's bytes behind it, and every malformed header we could think of,
 * each refused on the byte that makes it so.
 */
#include "check.h"

#include "../../gatewayd/proxy_header.c"

#include <stdio.h>
#include <stdlib.h>

static struct proxy_header ph;

static const uint8_t sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

static enum proxy_header_status
parse_str(const char *s)
{
	return proxy_header_parse(&ph, (const uint8_t *)s, strlen(s));
}

/* "ADDR:PORT" or "[ADDR]:PORT" of an address the parser filled. */
static const char *
text_of(const struct sockaddr_storage *ss, socklen_t len)
{
	static char out[2][80];
	static int k;
	char host[INET6_ADDRSTRLEN];
	char *o = out[k++ % 2];

	if (ss->ss_family == AF_INET && len == sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const void *)ss;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(o, sizeof(out[0]), "%s:%u", host, ntohs(in->sin_port));
	} else if (ss->ss_family == AF_INET6 &&
	    len == sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const void *)ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(o, sizeof(out[0]), "[%s]:%u", host,
		    ntohs(in6->sin6_port));
	} else {
		snprintf(o, sizeof(out[0]), "family %d, length %u",
		    ss->ss_family, (unsigned)len);
	}
	return o;
}

/* A v2 header: the signature, ver_cmd, fam, and body as the rest. */
static size_t
v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body,
    size_t body_len)
{
	memcpy(out, sig, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (uint8_t)(body_len >> 8);
	out[15] = (uint8_t)body_len;
	if (body_len > 0)
		memcpy(out + 16, body, body_len);
	return 16 + body_len;
}

/*
 * The whole contract on one header buf[0..len) that must parse to want:
 * every shorter prefix is MORE (the header trickling in a byte at a
 * time), the whole is want, and so is the whole with a client's bytes
 * behind it (a DONE with the same length).  ph is left as the whole's.
 */
static void
check_header(const uint8_t *buf, size_t len, enum proxy_header_status want)
{
	static uint8_t more[PROXY_HEADER_MAX + 64];
	struct proxy_header whole;
	size_t i;
	int bad = 0;

	for (i = 0; i < len; i++)
		if (proxy_header_parse(&ph, buf, i) != PROXY_HEADER_MORE &&
		    bad++ == 0)
			fprintf(stderr, "prefix of %zu bytes of %zu: %s\n", i,
			    len, ph.why != NULL ? ph.why : "not MORE");
	CHECK_EQ_INT(bad, 0);
	CHECK_EQ_INT(proxy_header_parse(&whole, buf, len), want);
	if (want == PROXY_HEADER_DONE) {
		CHECK_EQ_INT(whole.len, len);
		CHECK(whole.version == 1 || whole.version == 2);
		CHECK(whole.proxied ? whole.why == NULL && whole.src_len > 0 :
		    whole.why != NULL && whole.src_len == 0);
		memcpy(more, buf, len);
		memcpy(more + len, "GET / HTTP/1.1\r\n\r\n\x16\x03\x01", 21);
		CHECK_EQ_INT(proxy_header_parse(&ph, more, len + 21),
		    PROXY_HEADER_DONE);
		CHECK_EQ_INT(ph.len, len);
		CHECK(memcmp(&ph, &whole, sizeof(ph)) == 0);
	} else if (want == PROXY_HEADER_INVALID) {
		CHECK(whole.why != NULL && whole.why[0] != '\0');
	}
	ph = whole;
}

static void
check_str(const char *s, enum proxy_header_status want)
{
	check_header((const uint8_t *)s, strlen(s), want);
}

/* s must be refused once its first bad bytes are there: every prefix
 * shorter than at is MORE, and the one of at bytes is INVALID (so is
 * every longer one). */
static void
check_refused_at(const uint8_t *s, size_t len, size_t at)
{
	size_t i;

	for (i = 0; i < at; i++) {
		if (proxy_header_parse(&ph, s, i) != PROXY_HEADER_MORE) {
			fprintf(stderr, "refused at %zu, before %zu: %s\n", i,
			    at, ph.why != NULL ? ph.why : "?");
			CHECK(0);
			return;
		}
	}
	for (i = at; i <= len; i++) {
		if (proxy_header_parse(&ph, s, i) != PROXY_HEADER_INVALID) {
			fprintf(stderr, "%zu bytes of \"%.*s\" not refused "
			    "(refused at %zu expected)\n", i, (int)len,
			    (const char *)s, at);
			CHECK(0);
			return;
		}
		CHECK(ph.why != NULL && ph.why[0] != '\0');
	}
}

static void
check_str_refused_at(const char *s, size_t at)
{
	check_refused_at((const uint8_t *)s, strlen(s), at);
}

/* Refused once whole, not before. */
static void
check_str_refused(const char *s)
{
	check_str_refused_at(s, strlen(s));
}

/* ---------------------------------------------------------------- v1 */

static void
test_v1_tcp4(void)
{
	/* the specification's example, before an HTTP request */
	check_str("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
	    PROXY_HEADER_DONE);
	CHECK_EQ_INT(ph.version, 1);
	CHECK(ph.proxied);
	CHECK_EQ_STR(text_of(&ph.src, ph.src_len), "192.168.0.1:56324");
	CHECK_EQ_STR(text_of(&ph.dst, ph.dst_len), "192.168.0.11:443");

	check_str("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
	    PROXY_HEADER_DONE);
	CHECK_EQ_INT(ph.len, 56);
	CHECK_EQ_STR(text_of(&ph.src, ph.src_len), "255.255.255.255:65535");

	check_str("PROXY TCP4 0.0.0.0 10.0.0.1 0 1\r\n", PROXY_HEADER_DONE);
	CHECK_EQ_STR(text_of(&ph.src, ph.src_len), "0.0.0.0:0");
	CHECK_EQ_STR(text_of(&ph.dst, ph.dst_len), "10.0.0.1:1");
}

static void
test_v1_tcp6(void)
{
	check_str("PROXY TCP6 2001:db8::1 ::1 50000 8080\r\n",
	    PROXY_HEADER_DONE);
	CHECK(ph.proxied);
	CHECK_EQ_STR(text_of(&ph.src, ph.src_len), "[2001:db8::1]:50000");
	CHECK_EQ_STR(text_of(&ph.dst, ph.dst_len), "[::1]:8080");

	/* the longest TCP6 line: 104 bytes */
	check_str("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF 65535 65535\r\n",
	    PROXY_HEADER_DONE);
	CHECK_EQ_INT(ph.len, 104);
	CHECK_EQ_STR(text_of(&ph.dst, ph.dst_len),
	    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");

	/* HAProxy's form of an IPv4 client on an IPv6 server connection */
	check_str("PROXY TCP6 ::ffff:192.0.2.7 ::1 4242 443\r\n",
	    PROXY_HEADER_DONE);
	CHECK_EQ_STR(text_of(&ph.src, ph.src_len), "[::ffff:192.0.2.7]:4242");
}

static void
test_v1_unknown(void)
{
	check_str("PROXY UNKNOWN\r\n", PROXY_HEADER_DONE);
	CHECK_EQ_INT(ph.len, 15);
	CHECK(!ph.proxied);
	CHECK_EQ_STR(ph.why, "v1 UNKNOWN");

	/* anything up to the CRLF is ignored: the worst case is 107 */
	check_str("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
	    PROXY_HEADER_DONE);
	CHECK_EQ_INT(ph.len, 107);
	CHECK(!ph.proxied);
	check_str("PROXY UNKNOWN what ever ~!@#$%^&*()\r\n", PROXY_HEADER_DONE);
	check_str("PROXY UNKNOWN \r\n", PROXY_HEADER_DONE);
	CHECK(!ph.proxied);
}

static void
test_v1_length_bound(void)
{
	char line[200];
	size_t n;

	/* 107 bytes with the CRLF: taken; 108: refused, as soon as 106
	 * bytes without a CR are there */
	memset(line, 0, sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	memset(line + 14, 'x', 105 - 14);
	memcpy(line + 105, "\r\n", 3);
	CHECK_EQ_INT(strlen(line), 107);
	check_str(line, PROXY_HEADER_DONE);

	memset(line + 14, 'x', 106 - 14);
	memcpy(line + 106, "\r\n", 3);
	CHECK_EQ_INT(strlen(line), 108);
	check_str_refused_at(line, 106);
	CHECK_EQ_STR(ph.why, "v1: no CRLF in the first 107 bytes");

	/* no line end at all */
	memset(line, 0, sizeof(line));
	memcpy(line, "PROXY TCP4 ", 11);
	for (n = 11; n < 150; n++)
		line[n] = n % 2 ? '1' : ' ';
	check_str_refused_at(line, 106);
}

static void
test_v1_not_proxy(void)
{
	static const uint8_t hello[] = { 0x16, 0x03, 0x01, 0x02, 0x00 };

	/* a client speaking HTTP or TLS to a proxy listener: refused on
	 * its first byte */
	check_str_refused_at("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1);
	CHECK_EQ_STR(ph.why, "not a PROXY protocol header");
	check_refused_at(hello, sizeof(hello), 1);
	check_str_refused_at("\n", 1);
	check_str_refused_at(" PROXY TCP4", 1);
	check_refused_at((const uint8_t *)"\0", 1, 1);
	/* on the first byte that differs */
	check_str_refused_at("PUT / HTTP/1.1\r\n", 2);
	check_str_refused_at("PROXX TCP4", 5);
	check_str_refused_at("proxy TCP4", 1);
	check_str_refused_at("PROXY\tTCP4", 6);
	check_str_refused_at("PROXY\r\n", 6);
	check_str_refused_at("PROXYTCP4", 6);
}

static void
test_v1_protocol(void)
{
	check_str_refused_at("PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", 10);
	CHECK_EQ_STR(ph.why, "v1: unknown protocol (not TCP4, TCP6 or "
	    "UNKNOWN)");
	check_str_refused_at("PROXY tcp4 1.2.3.4 1.2.3.4 1 2\r\n", 7);
	check_str_refused_at("PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n", 8);
	check_str_refused_at("PROXY  TCP4 1.2.3.4 1.2.3.4 1 2\r\n", 7);
	check_str_refused_at("PROXY TCP4\t1.2.3.4 1.2.3.4 1 2\r\n", 11);
	check_str_refused_at("PROXY UNKNOWNX\r\n", 14);
	check_str_refused_at("PROXY UNKNOWN\tx\r\n", 14);
	check_str_refused_at("PROXY UNKNOWN x\x01\r\n", 16);
	/* too short to name one */
	check_str_refused("PROXY \r\n");
	check_str_refused("PROXY TCP\r\n");
	check_str_refused("PROXY TCP4\r\n");
	check_str_refused("PROXY TCP4 \r\n");
	check_str_refused("PROXY UNKNOW\r\n");
}

static void
test_v1_fields(void)
{
	/* one space between fields, no more, none at the end */
	check_str_refused("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n");
	CHECK_EQ_STR(ph.why, "v1: an empty field (two spaces, or one at the "
	    "end)");
	check_str_refused("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n");
	check_str_refused("PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n");
	/* five and seven fields */
	check_str_refused("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n");
	CHECK_EQ_STR(ph.why, "v1: fewer than six fields");
	check_str_refused("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n");
	CHECK_EQ_STR(ph.why, "v1: more than six fields");
	check_str_refused("PROXY TCP4 1.2.3.4 1 2\r\n");
}

static void
test_v1_ipv4(void)
{
	static const char *const bad[] = {
	    "01.2.3.4", "1.02.3.4", "1.2.3.00", "256.1.1.1", "1.2.3.4444",
	    "1.2.3", "1.2.3.4.5", "1..2.3", ".1.2.3", "1.2.3.", "",
	    "1.2.3.4.", "4294967297.1.1.1", "0x1.2.3.4",
	};
	static const char *const good[] = {
	    "0.0.0.0", "1.2.3.4", "10.0.0.255", "100.200.250.199",
	};
	struct in_addr a;
	char line[160];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (proxy_header_ipv4(bad[i], strlen(bad[i]), &a)) {
			fprintf(stderr, "IPv4 '%s' taken\n", bad[i]);
			CHECK(0);
		}
		snprintf(line, sizeof(line), "PROXY TCP4 %s 1.2.3.4 1 2\r\n",
		    bad[i]);
		CHECK_EQ_INT(parse_str(line), PROXY_HEADER_INVALID);
		snprintf(line, sizeof(line), "PROXY TCP4 1.2.3.4 %s 1 2\r\n",
		    bad[i]);
		CHECK_EQ_INT(parse_str(line), PROXY_HEADER_INVALID);
	}
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK(proxy_header_ipv4(good[i], strlen(good[i]), &a));
	/* the family must match the protocol */
	check_str_refused_at("PROXY TCP4 ::1 ::1 1 2\r\n", 12);
	check_str_refused("PROXY TCP6 1.2.3.4 ::1 1 2\r\n");
	CHECK_EQ_STR(ph.why, "v1: a TCP6 address that is not IPv6");
	check_str_refused("PROXY TCP6 ::1 1.2.3.4 1 2\r\n");
}

static void
test_v1_ipv6(void)
{
	check_str_refused_at("PROXY TCP6 g::1 ::1 1 2\r\n", 12);
	CHECK_EQ_STR(ph.why, "v1: a character no address or port has");
	check_str_refused("PROXY TCP6 ::: ::1 1 2\r\n");
	check_str_refused("PROXY TCP6 1::2::3 ::1 1 2\r\n");
	check_str_refused("PROXY TCP6 12345::1 ::1 1 2\r\n");
	check_str_refused("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n");
	check_str_refused("PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n");
	/* longer than any address */
	check_str_refused("PROXY TCP6 0000:0000:0000:0000:0000:0000:0000:"
	    "0000:0 ::1 1 2\r\n");
	check_str_refused_at("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", 19);
	check_str_refused_at("PROXY TCP6 [::1] ::1 1 2\r\n", 12);
}

static void
test_v1_ports(void)
{
	static const char *const bad[] = {
	    "", "00", "01", "065535", "65536", "99999", "100000", "-1", "+1",
	    "1a", "0x10",
	};
	static const char *const good[] = { "0", "1", "80", "65535", "10000" };
	char line[120];
	uint16_t port;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (proxy_header_port(bad[i], strlen(bad[i]), &port)) {
			fprintf(stderr, "port '%s' taken\n", bad[i]);
			CHECK(0);
		}
		snprintf(line, sizeof(line), "PROXY TCP4 1.2.3.4 5.6.7.8 %s "
		    "80\r\n", bad[i]);
		CHECK_EQ_INT(parse_str(line), PROXY_HEADER_INVALID);
		snprintf(line, sizeof(line), "PROXY TCP6 ::1 ::2 80 %s\r\n",
		    bad[i]);
		CHECK_EQ_INT(parse_str(line), PROXY_HEADER_INVALID);
	}
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		CHECK(proxy_header_port(good[i], strlen(good[i]), &port));
		CHECK_EQ_INT(ntohs(port), atoi(good[i]));
	}
}

static void
test_v1_line_end(void)
{
	/* CRLF and nothing else ends the line */
	check_str_refused_at("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 31);
	CHECK_EQ_STR(ph.why, "v1: a control character, or a line end that "
	    "is not CRLF");
	check_str_refused_at("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", 32);
	CHECK_EQ_STR(ph.why, "v1: a CR without LF");
	check_str_refused_at("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", 32);
	check_str_refused_at("PROXY UNKNOWN\n\r\n", 14);
	check_str_refused_at("PROXY UNKNOWN\r\r\n", 15);
	/* the bytes a v1 line may not hold */
	check_refused_at((const uint8_t *)"PROXY UNKNOWN a\0b\r\n", 19, 16);
	check_str_refused_at("PROXY UNKNOWN a\x7f\r\n", 16);
	check_str_refused_at("PROXY UNKNOWN a\x80\r\n", 16);
	check_str_refused_at("PROXY UNKNOWN a\xff\r\n", 16);
	check_str_refused_at("PROXY UNKNOWN a\tb\r\n", 16);
}

/* ---------------------------------------------------------------- v2 */

static const uint8_t tcp4_block[12] = {
	192, 0, 2, 1,		/* source */
	198, 51, 100, 7,	/* destination */
	0xc3, 0x50,		/* 50000 */
	0x01, 0xbb,		/* 443 */
};

static const uint8_t tcp6_block[36] = {
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
	0xff, 0xff,		/* 65535 */
	0x1f, 0x90,		/* 8080 */
};

static void
test_v2_tcp4(void)
{
	uint8_t buf[64];
	size_t n = v2(buf, 0x21, 0x11, tcp4_block, sizeof(tcp4_block));

	check_header(buf, n, PROXY_HEADER_DONE);
	CHECK_EQ_INT(ph.len, 28);
	CHECK_EQ_INT(ph.version, 2);
	CHECK(ph.proxied);
	CHECK_EQ_STR(text_of(&ph.src, ph.src_len), "192.0.2.1:50000");
	CHECK_EQ_STR(text_of(&ph.dst, ph.dst_len), "198.51.100.7:443");
}

static void
test_v2_tcp6(void)
{
	uint8_t buf[64];
	size_t n = v2(buf, 0x21, 0x21, tcp6_block, sizeof(tcp6_block));

	check_header(buf, n, PROXY_HEADER_DONE);
	CHECK_EQ_INT(ph.len, 52);
	CHECK(ph.proxied);
	CHECK_EQ_STR(text_of(&ph.src, ph.src_len), "[2001:db8::1]:65535");
	CHECK_EQ_STR(text_of(&ph.dst, ph.dst_len), "[::1]:8080");
}

static void
test_v2_tlvs(void)
{
	uint8_t body[PROXY_HEADER_V2_LEN_MAX + 16], buf[PROXY_HEADER_MAX + 16];
	size_t n, k;

	/* what HAProxy may append: ALPN, authority, a NOOP of nothing, a
	 * unique id, and SSL with its sub-TLVs (whose insides are not
	 * looked at) */
	memcpy(body, tcp4_block, 12);
	k = 12;
	memcpy(body + k, "\x01\x00\x08http/1.1", 11);
	k += 11;
	memcpy(body + k, "\x02\x00\x0b""example.com", 14);
	k += 14;
	memcpy(body + k, "\x04\x00\x00", 3);
	k += 3;
	memcpy(body + k, "\x05\x00\x04""abcd", 7);
	k += 7;
	memcpy(body + k, "\x20\x00\x0d\x01\x00\x00\x00\x00\x21\x00\x05TLSv1", 16);
	k += 16;
	n = v2(buf, 0x21, 0x11, body, k);
	check_header(buf, n, PROXY_HEADER_DONE);
	CHECK(ph.proxied);
	CHECK_EQ_STR(text_of(&ph.src, ph.src_len), "192.0.2.1:50000");

	/* the longest header taken: one NOOP fills 4096 bytes */
	memset(body, 0, sizeof(body));
	memcpy(body, tcp6_block, 36);
	body[36] = 0x04;
	body[37] = (uint8_t)((PROXY_HEADER_V2_LEN_MAX - 39) >> 8);
	body[38] = (uint8_t)(PROXY_HEADER_V2_LEN_MAX - 39);
	n = v2(buf, 0x21, 0x21, body, PROXY_HEADER_V2_LEN_MAX);
	CHECK_EQ_INT(n, PROXY_HEADER_MAX);
	check_header(buf, n, PROXY_HEADER_DONE);
	CHECK_EQ_INT(ph.len, PROXY_HEADER_MAX);
	CHECK_EQ_STR(text_of(&ph.src, ph.src_len), "[2001:db8::1]:65535");

	/* TLVs that do not fill the header exactly */
	memcpy(body, tcp4_block, 12);
	memcpy(body + 12, "\x04\x00\x02xy", 5);
	for (k = 13; k < 17; k++) {
		n = v2(buf, 0x21, 0x11, body, k);
		check_header(buf, n, PROXY_HEADER_INVALID);
	}
	n = v2(buf, 0x21, 0x11, body, 13);
	CHECK_EQ_INT(proxy_header_parse(&ph, buf, n), PROXY_HEADER_INVALID);
	CHECK_EQ_STR(ph.why, "v2: a TLV cut short");
	n = v2(buf, 0x21, 0x11, body, 16);
	CHECK_EQ_INT(proxy_header_parse(&ph, buf, n), PROXY_HEADER_INVALID);
	CHECK_EQ_STR(ph.why, "v2: a TLV past the header's end");
	n = v2(buf, 0x21, 0x11, body, 17);
	check_header(buf, n, PROXY_HEADER_DONE);
}

static void
test_v2_local(void)
{
	uint8_t body[64], buf[128];
	size_t n;

	/* HAProxy's health checks: LOCAL, AF_UNSPEC, no addresses */
	n = v2(buf, 0x20, 0x00, NULL, 0);
	check_header(buf, n, PROXY_HEADER_DONE);
	CHECK_EQ_INT(ph.len, 16);
	CHECK(!ph.proxied);
	CHECK_EQ_STR(ph.why, "v2 LOCAL");

	/* the family and whatever follows are ignored, however odd */
	n = v2(buf, 0x20, 0x11, tcp4_block, sizeof(tcp4_block));
	check_header(buf, n, PROXY_HEADER_DONE);
	CHECK(!ph.proxied);
	CHECK_EQ_INT(ph.src_len, 0);
	memset(body, 0xee, sizeof(body));
	n = v2(buf, 0x20, 0xff, body, 5);
	check_header(buf, n, PROXY_HEADER_DONE);
	CHECK(!ph.proxied);
	CHECK_EQ_INT(ph.len, 21);
}

static void
test_v2_kept_families(void)
{
	uint8_t body[300], buf[400];
	size_t n;

	/* PROXY with AF_UNSPEC: the addresses, if any, are ignored */
	n = v2(buf, 0x21, 0x00, NULL, 0);
	check_header(buf, n, PROXY_HEADER_DONE);
	CHECK(!ph.proxied);
	CHECK_EQ_STR(ph.why, "v2 AF_UNSPEC");
	n = v2(buf, 0x21, 0x00, tcp4_block, 7);
	check_header(buf, n, PROXY_HEADER_DONE);
	CHECK_EQ_INT(ph.len, 23);

	/* AF_UNIX: 216 bytes of paths, kept */
	memset(body, 0, sizeof(body));
	memcpy(body, "/run/haproxy.sock", 17);
	n = v2(buf, 0x21, 0x31, body, 216);
	check_header(buf, n, PROXY_HEADER_DONE);
	CHECK(!ph.proxied);
	CHECK_EQ_STR(ph.why, "v2 AF_UNIX");
	n = v2(buf, 0x21, 0x32, body, 216 + 3);
	check_header(buf, n, PROXY_HEADER_DONE);
	CHECK(!ph.proxied);

	/* UDP over IPv4 and IPv6: falls back to the connection's */
	n = v2(buf, 0x21, 0x12, tcp4_block, sizeof(tcp4_block));
	check_header(buf, n, PROXY_HEADER_DONE);
	CHECK(!ph.proxied);
	CHECK_EQ_STR(ph.why, "v2 datagrams");
	n = v2(buf, 0x21, 0x22, tcp6_block, sizeof(tcp6_block));
	check_header(buf, n, PROXY_HEADER_DONE);
	CHECK(!ph.proxied);
}

static void
test_v2_signature(void)
{
	uint8_t buf[64];
	size_t n, i;

	/* every byte of the signature, wrong: refused on that byte */
	for (i = 0; i < 12; i++) {
		n = v2(buf, 0x21, 0x11, tcp4_block, sizeof(tcp4_block));
		buf[i] ^= 0x20;
		check_refused_at(buf, n, i + 1);
		CHECK_EQ_STR(ph.why, "not a PROXY protocol header");
	}
}

static void
test_v2_fixed_part(void)
{
	static const uint8_t bad_fams[] = {
	    0x01, 0x02, 0x10, 0x13, 0x1f, 0x20, 0x23, 0x30, 0x33, 0x40, 0x41,
	    0xff,
	};
	uint8_t buf[64];
	size_t n, i;

	/* version: 2 and nothing else */
	for (i = 0; i < 16; i++) {
		if (i == 2)
			continue;
		n = v2(buf, (uint8_t)(i << 4 | 1), 0x11, tcp4_block, 12);
		check_refused_at(buf, n, 13);
		CHECK_EQ_STR(ph.why, "v2: a version other than 2");
	}
	/* commands: LOCAL and PROXY only */
	for (i = 2; i < 16; i++) {
		n = v2(buf, (uint8_t)(0x20 | i), 0x11, tcp4_block, 12);
		check_refused_at(buf, n, 13);
		CHECK_EQ_STR(ph.why, "v2: a command other than LOCAL or "
		    "PROXY");
	}
	/* families and transports: the seven assigned pairs only */
	for (i = 0; i < sizeof(bad_fams); i++) {
		n = v2(buf, 0x21, bad_fams[i], tcp4_block, 12);
		check_refused_at(buf, n, 14);
		CHECK_EQ_STR(ph.why, "v2: an unassigned address family or "
		    "transport");
	}
}

static void
test_v2_length(void)
{
	uint8_t buf[PROXY_HEADER_MAX + 64], paths[216];
	size_t n;

	/* over the bound: refused on the length's second byte, without
	 * waiting for what it announces */
	memset(buf, 0, sizeof(buf));
	n = v2(buf, 0x21, 0x11, tcp4_block, 12);
	buf[14] = 0x10;
	buf[15] = 0x01;		/* 4097 */
	check_refused_at(buf, n, 16);
	CHECK_EQ_STR(ph.why, "v2: longer than 4096 bytes after the fixed "
	    "part");
	buf[14] = buf[15] = 0xff;
	check_refused_at(buf, sizeof(buf), 16);
	n = v2(buf, 0x20, 0x00, NULL, 0);
	buf[14] = 0x80;
	check_refused_at(buf, n, 16);

	/* under the address block of the family */
	n = v2(buf, 0x21, 0x11, tcp4_block, 11);
	check_refused_at(buf, n, 16);
	CHECK_EQ_STR(ph.why, "v2: too short for its addresses");
	n = v2(buf, 0x21, 0x21, tcp6_block, 35);
	check_refused_at(buf, n, 16);
	n = v2(buf, 0x21, 0x12, tcp4_block, 0);
	check_refused_at(buf, n, 16);
	memset(paths, 0, sizeof(paths));
	n = v2(buf, 0x21, 0x31, paths, 215);
	check_refused_at(buf, n, 16);

	/* a header still arriving is MORE to its last byte */
	n = v2(buf, 0x21, 0x21, tcp6_block, sizeof(tcp6_block));
	CHECK_EQ_INT(proxy_header_parse(&ph, buf, n - 1), PROXY_HEADER_MORE);
	CHECK_EQ_INT(proxy_header_parse(&ph, buf, n), PROXY_HEADER_DONE);
}

/* Whatever the bytes, MORE comes only below PROXY_HEADER_MAX, and DONE
 * claims no more bytes than it was given. */
static void
test_contract_random(void)
{
	static uint8_t buf[PROXY_HEADER_MAX + 8];
	enum proxy_header_status st;
	uint32_t x = 12345;
	size_t i, round, n;

	for (round = 0; round < 20000; round++) {
		n = round % 300;
		for (i = 0; i < n; i++) {
			x = x * 1103515245 + 12345;
			buf[i] = (uint8_t)(x >> 16);
		}
		/* half the time, a valid start */
		if (round % 2 && n >= 16) {
			memcpy(buf, sig, 12);
			buf[12] = 0x21;
			buf[13] = round % 4 ? 0x11 : 0x21;
			buf[14] = 0;
			buf[15] = (uint8_t)(n - 16);
		} else if (round % 3 == 0 && n >= 6) {
			memcpy(buf, "PROXY ", 6);
		}
		st = proxy_header_parse(&ph, buf, n);
		if (st == PROXY_HEADER_DONE)
			CHECK(ph.len > 0 && ph.len <= n);
		if (st == PROXY_HEADER_INVALID)
			CHECK(ph.why != NULL);
	}
	memset(buf, 'x', sizeof(buf));
	memcpy(buf, "PROXY UNKNOWN ", 14);
	CHECK_EQ_INT(proxy_header_parse(&ph, buf, sizeof(buf)),
	    PROXY_HEADER_INVALID);
	CHECK_EQ_INT(proxy_header_parse(&ph, NULL, 0), PROXY_HEADER_MORE);
	CHECK_EQ_INT(ph.version, 0);
}

int
main(void)
{
	RUN(test_v1_tcp4);
	RUN(test_v1_tcp6);
	RUN(test_v1_unknown);
	RUN(test_v1_length_bound);
	RUN(test_v1_not_proxy);
	RUN(test_v1_protocol);
	RUN(test_v1_fields);
	RUN(test_v1_ipv4);
	RUN(test_v1_ipv6);
	RUN(test_v1_ports);
	RUN(test_v1_line_end);
	RUN(test_v2_tcp4);
	RUN(test_v2_tcp6);
	RUN(test_v2_tlvs);
	RUN(test_v2_local);
	RUN(test_v2_kept_families);
	RUN(test_v2_signature);
	RUN(test_v2_fixed_part);
	RUN(test_v2_length);
	RUN(test_contract_random);
	return check_summary();
}
