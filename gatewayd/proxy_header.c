/*
 * proxy_header: the PROXY protocol header parser (see proxy_header.h).
 *
 * Each call parses from the first byte again rather than keeping its
 * place: a header is short, and senders send it in one segment (the
 * specification asks them to), so only a peer that trickles it makes
 * more than one call see it.  The v1 line is checked as it arrives
 * (the protocol name, the characters its fields may hold) and parsed
 * once its CRLF is there; the v2 fixed part is checked a byte at a
 * time, the address block and the TLVs once the whole header is there.
 *
 * v1 IPv6 addresses are taken in any form inet_pton reads, the dotted
 * tail of "::ffff:192.0.2.1" included: HAProxy sends a client's IPv4
 * address so when the server side of the connection is IPv6.  The v2
 * TLVs are walked to check that they fill the header exactly, and
 * skipped: the CRC32C one is not verified, which the specification
 * allows a receiver that does not implement it.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "proxy_header.h"

static const uint8_t proxy_header_v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};
#define PROXY_HEADER_V1_SIG	"PROXY "
#define PROXY_HEADER_V1_SIG_LEN	6

/* v2: the command (low nibble of byte 13) and the family byte (14). */
#define PROXY_HEADER_V2_LOCAL	0x0
#define PROXY_HEADER_V2_PROXY	0x1
#define PROXY_HEADER_V2_UNSPEC	0x00
#define PROXY_HEADER_V2_TCP4	0x11
#define PROXY_HEADER_V2_UDP4	0x12
#define PROXY_HEADER_V2_TCP6	0x21
#define PROXY_HEADER_V2_UDP6	0x22
#define PROXY_HEADER_V2_STREAM	0x31	/* AF_UNIX, SOCK_STREAM */
#define PROXY_HEADER_V2_DGRAM	0x32	/* AF_UNIX, SOCK_DGRAM */

static enum proxy_header_status
		proxy_header_invalid(struct proxy_header *, const char *);
static enum proxy_header_status
		proxy_header_kept(struct proxy_header *, size_t, const char *);
static bool	proxy_header_ipv4(const char *, size_t, struct in_addr *);
static bool	proxy_header_ipv6(const char *, size_t, struct in6_addr *);
static bool	proxy_header_port(const char *, size_t, uint16_t *);
static bool	proxy_header_v1_plausible(struct proxy_header *,
		    const uint8_t *, size_t);
static enum proxy_header_status
		proxy_header_v1_fields(struct proxy_header *, const char *,
		    size_t);
static enum proxy_header_status
		proxy_header_v1(struct proxy_header *, const uint8_t *, size_t);
static enum proxy_header_status
		proxy_header_v2(struct proxy_header *, const uint8_t *, size_t);

static enum proxy_header_status
proxy_header_invalid(struct proxy_header *ph, const char *why)
{
	ph->why = why;
	return PROXY_HEADER_INVALID;
}

/* A whole header whose addresses are not taken: the connection's stay. */
static enum proxy_header_status
proxy_header_kept(struct proxy_header *ph, size_t len, const char *why)
{
	ph->len = len;
	ph->proxied = false;
	ph->why = why;
	return PROXY_HEADER_DONE;
}

/* Four decimal numbers 0..255 separated by dots, without leading
 * zeros ("in order to avoid any possible confusion with octal"). */
static bool
proxy_header_ipv4(const char *s, size_t len, struct in_addr *out)
{
	uint8_t b[4];
	size_t i = 0, part, digits;
	unsigned v;

	for (part = 0; part < 4; part++) {
		if (part > 0) {
			if (i >= len || s[i] != '.')
				return false;
			i++;
		}
		for (v = 0, digits = 0; i < len && s[i] >= '0' && s[i] <= '9';
		    i++, digits++) {
			if (digits > 0 && v == 0)
				return false;
			v = v * 10 + (unsigned)(s[i] - '0');
			if (v > 255)
				return false;
		}
		if (digits == 0)
			return false;
		b[part] = (uint8_t)v;
	}
	if (i != len)
		return false;
	memcpy(out, b, sizeof(b));
	return true;
}

static bool
proxy_header_ipv6(const char *s, size_t len, struct in6_addr *out)
{
	char text[INET6_ADDRSTRLEN];

	if (len == 0 || len >= sizeof(text))
		return false;
	memcpy(text, s, len);
	text[len] = '\0';
	return inet_pton(AF_INET6, text, out) == 1;
}

/* A decimal port 0..65535 without leading zeros; *out in network order. */
static bool
proxy_header_port(const char *s, size_t len, uint16_t *out)
{
	unsigned v = 0;
	size_t i;

	if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
		return false;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*out = htons((uint16_t)v);
	return true;
}

/*
 * The n bytes of a v1 line after "PROXY " that came before its CR (or
 * all so far): false when they cannot begin a valid line.  The protocol
 * must be, or begin, "TCP4 ", "TCP6 " or "UNKNOWN" (then a space or the
 * end); TCP4 and TCP6 fields hold digits, dots, colons and hex digits.
 */
static bool
proxy_header_v1_plausible(struct proxy_header *ph, const uint8_t *p,
    size_t n)
{
	static const char *const protos[] = { "TCP4 ", "TCP6 ", "UNKNOWN" };
	const char *proto = NULL, *allowed;
	size_t i, m;

	for (i = 0; i < sizeof(protos) / sizeof(protos[0]); i++) {
		m = strlen(protos[i]);
		if (memcmp(p, protos[i], n < m ? n : m) == 0) {
			proto = protos[i];
			break;
		}
	}
	if (proto == NULL) {
		ph->why = "v1: unknown protocol (not TCP4, TCP6 or UNKNOWN)";
		return false;
	}
	if (proto[0] == 'U') {
		if (n > 7 && p[7] != ' ') {
			ph->why = "v1: unknown protocol (not TCP4, TCP6 or "
			    "UNKNOWN)";
			return false;
		}
		return true;		/* anything may follow */
	}
	allowed = proto[3] == '4' ? "0123456789. " :
	    "0123456789abcdefABCDEF:. ";
	for (i = 5; i < n; i++) {
		if (strchr(allowed, p[i]) == NULL) {
			ph->why = "v1: a character no address or port has";
			return false;
		}
	}
	return true;
}

/* The line after "PROXY ", without its CRLF: len bytes at s. */
static enum proxy_header_status
proxy_header_v1_fields(struct proxy_header *ph, const char *s, size_t len)
{
	struct sockaddr_in *src4 = (struct sockaddr_in *)&ph->src;
	struct sockaddr_in *dst4 = (struct sockaddr_in *)&ph->dst;
	struct sockaddr_in6 *src6 = (struct sockaddr_in6 *)&ph->src;
	struct sockaddr_in6 *dst6 = (struct sockaddr_in6 *)&ph->dst;
	const char *f[5], *end = s + len, *p = s, *sp;
	size_t fl[5], n = 0;
	bool v6;

	/* UNKNOWN: what follows it is ignored (proxy_header_v1_plausible
	 * saw a space after it, if anything) */
	if (len >= 7 && memcmp(s, "UNKNOWN", 7) == 0)
		return proxy_header_kept(ph, ph->len, "v1 UNKNOWN");
	/* exactly one space between the fields: an empty one is an error */
	for (;;) {
		sp = memchr(p, ' ', (size_t)(end - p));
		if (n == 5)
			return proxy_header_invalid(ph, "v1: more than six "
			    "fields");
		f[n] = p;
		fl[n] = (size_t)((sp != NULL ? sp : end) - p);
		if (fl[n++] == 0)
			return proxy_header_invalid(ph, "v1: an empty field "
			    "(two spaces, or one at the end)");
		if (sp == NULL)
			break;
		p = sp + 1;
	}
	if (n != 5)
		return proxy_header_invalid(ph, "v1: fewer than six fields");
	if (fl[0] != 4 || memcmp(f[0], "TCP", 3) != 0 ||
	    (f[0][3] != '4' && f[0][3] != '6'))
		return proxy_header_invalid(ph, "v1: unknown protocol");
	v6 = f[0][3] == '6';
	if (v6) {
		if (!proxy_header_ipv6(f[1], fl[1], &src6->sin6_addr) ||
		    !proxy_header_ipv6(f[2], fl[2], &dst6->sin6_addr))
			return proxy_header_invalid(ph, "v1: a TCP6 address "
			    "that is not IPv6");
		if (!proxy_header_port(f[3], fl[3], &src6->sin6_port) ||
		    !proxy_header_port(f[4], fl[4], &dst6->sin6_port))
			return proxy_header_invalid(ph, "v1: a port that is "
			    "not 0..65535 without leading zeros");
		src6->sin6_family = dst6->sin6_family = AF_INET6;
		ph->src_len = ph->dst_len = sizeof(struct sockaddr_in6);
	} else {
		if (!proxy_header_ipv4(f[1], fl[1], &src4->sin_addr) ||
		    !proxy_header_ipv4(f[2], fl[2], &dst4->sin_addr))
			return proxy_header_invalid(ph, "v1: a TCP4 address "
			    "that is not dotted-quad IPv4");
		if (!proxy_header_port(f[3], fl[3], &src4->sin_port) ||
		    !proxy_header_port(f[4], fl[4], &dst4->sin_port))
			return proxy_header_invalid(ph, "v1: a port that is "
			    "not 0..65535 without leading zeros");
		src4->sin_family = dst4->sin_family = AF_INET;
		ph->src_len = ph->dst_len = sizeof(struct sockaddr_in);
	}
	ph->proxied = true;
	return PROXY_HEADER_DONE;
}

/* buf starts with 'P'. */
static enum proxy_header_status
proxy_header_v1(struct proxy_header *ph, const uint8_t *buf, size_t len)
{
	size_t n = len < PROXY_HEADER_V1_MAX ? len : PROXY_HEADER_V1_MAX, i;

	if (memcmp(buf, PROXY_HEADER_V1_SIG, n < PROXY_HEADER_V1_SIG_LEN ?
	    n : PROXY_HEADER_V1_SIG_LEN) != 0)
		return proxy_header_invalid(ph, "not a PROXY protocol header");
	if (n <= PROXY_HEADER_V1_SIG_LEN)
		return PROXY_HEADER_MORE;
	/* Printable US-ASCII up to the CR: a bare LF, a NUL, a byte
	 * above 0x7e end it at once. */
	for (i = PROXY_HEADER_V1_SIG_LEN; i < n && buf[i] != '\r'; i++)
		if (buf[i] < 0x20 || buf[i] > 0x7e)
			return proxy_header_invalid(ph, "v1: a control "
			    "character, or a line end that is not CRLF");
	if (!proxy_header_v1_plausible(ph, buf + PROXY_HEADER_V1_SIG_LEN,
	    i - PROXY_HEADER_V1_SIG_LEN))
		return PROXY_HEADER_INVALID;
	if (i + 2 > PROXY_HEADER_V1_MAX)
		return proxy_header_invalid(ph, "v1: no CRLF in the first 107 "
		    "bytes");
	if (i == n || i + 1 == n)
		return PROXY_HEADER_MORE;	/* up to the CR, or CR only */
	if (buf[i + 1] != '\n')
		return proxy_header_invalid(ph, "v1: a CR without LF");
	ph->len = i + 2;
	return proxy_header_v1_fields(ph, (const char *)buf +
	    PROXY_HEADER_V1_SIG_LEN, i - PROXY_HEADER_V1_SIG_LEN);
}

/* buf starts with CR. */
static enum proxy_header_status
proxy_header_v2(struct proxy_header *ph, const uint8_t *buf, size_t len)
{
	struct sockaddr_in *src4 = (struct sockaddr_in *)&ph->src;
	struct sockaddr_in *dst4 = (struct sockaddr_in *)&ph->dst;
	struct sockaddr_in6 *src6 = (struct sockaddr_in6 *)&ph->src;
	struct sockaddr_in6 *dst6 = (struct sockaddr_in6 *)&ph->dst;
	const uint8_t *a = buf + PROXY_HEADER_V2_FIXED;
	size_t n = len < sizeof(proxy_header_v2_sig) ? len :
	    sizeof(proxy_header_v2_sig), alen = 0, hlen, off, tlv = 0;
	unsigned cmd;
	uint8_t fam = 0;

	if (memcmp(buf, proxy_header_v2_sig, n) != 0)
		return proxy_header_invalid(ph, "not a PROXY protocol header");
	if (len <= sizeof(proxy_header_v2_sig))
		return PROXY_HEADER_MORE;
	if (buf[12] >> 4 != 2)
		return proxy_header_invalid(ph, "v2: a version other than 2");
	cmd = buf[12] & 0x0f;
	if (cmd != PROXY_HEADER_V2_LOCAL && cmd != PROXY_HEADER_V2_PROXY)
		return proxy_header_invalid(ph, "v2: a command other than "
		    "LOCAL or PROXY");
	if (len < 14)
		return PROXY_HEADER_MORE;
	/* LOCAL ignores the family, whatever it is. */
	if (cmd == PROXY_HEADER_V2_PROXY) {
		fam = buf[13];
		switch (fam) {
		case PROXY_HEADER_V2_UNSPEC:
			alen = 0;
			break;
		case PROXY_HEADER_V2_TCP4:
		case PROXY_HEADER_V2_UDP4:
			alen = 2 * 4 + 2 * 2;
			break;
		case PROXY_HEADER_V2_TCP6:
		case PROXY_HEADER_V2_UDP6:
			alen = 2 * 16 + 2 * 2;
			break;
		case PROXY_HEADER_V2_STREAM:
		case PROXY_HEADER_V2_DGRAM:
			alen = 2 * 108;
			break;
		default:
			return proxy_header_invalid(ph, "v2: an unassigned "
			    "address family or transport");
		}
	}
	if (len < PROXY_HEADER_V2_FIXED)
		return PROXY_HEADER_MORE;
	hlen = (size_t)buf[14] << 8 | buf[15];
	if (hlen > PROXY_HEADER_V2_LEN_MAX)
		return proxy_header_invalid(ph, "v2: longer than 4096 bytes "
		    "after the fixed part");
	if (hlen < alen)
		return proxy_header_invalid(ph, "v2: too short for its "
		    "addresses");
	if (len < PROXY_HEADER_V2_FIXED + hlen)
		return PROXY_HEADER_MORE;
	ph->len = PROXY_HEADER_V2_FIXED + hlen;
	if (cmd == PROXY_HEADER_V2_LOCAL)
		return proxy_header_kept(ph, ph->len, "v2 LOCAL");
	if (fam == PROXY_HEADER_V2_UNSPEC)
		return proxy_header_kept(ph, ph->len, "v2 AF_UNSPEC");

	/* TLVs fill what follows the addresses, exactly. */
	for (off = alen; off < hlen; off += 3 + tlv) {
		if (hlen - off < 3)
			return proxy_header_invalid(ph, "v2: a TLV cut short");
		tlv = (size_t)a[off + 1] << 8 | a[off + 2];
		if (tlv > hlen - off - 3)
			return proxy_header_invalid(ph, "v2: a TLV past the "
			    "header's end");
	}

	switch (fam) {
	case PROXY_HEADER_V2_TCP4:
		src4->sin_family = dst4->sin_family = AF_INET;
		memcpy(&src4->sin_addr, a, 4);
		memcpy(&dst4->sin_addr, a + 4, 4);
		memcpy(&src4->sin_port, a + 8, 2);
		memcpy(&dst4->sin_port, a + 10, 2);
		ph->src_len = ph->dst_len = sizeof(struct sockaddr_in);
		break;
	case PROXY_HEADER_V2_TCP6:
		src6->sin6_family = dst6->sin6_family = AF_INET6;
		memcpy(&src6->sin6_addr, a, 16);
		memcpy(&dst6->sin6_addr, a + 16, 16);
		memcpy(&src6->sin6_port, a + 32, 2);
		memcpy(&dst6->sin6_port, a + 34, 2);
		ph->src_len = ph->dst_len = sizeof(struct sockaddr_in6);
		break;
	case PROXY_HEADER_V2_STREAM:
	case PROXY_HEADER_V2_DGRAM:
		return proxy_header_kept(ph, ph->len, "v2 AF_UNIX");
	default:
		/* The specification lets a receiver fall back to the
		 * connection's addresses for what it does not support. */
		return proxy_header_kept(ph, ph->len, "v2 datagrams");
	}
	ph->proxied = true;
	return PROXY_HEADER_DONE;
}

enum proxy_header_status
proxy_header_parse(struct proxy_header *ph, const uint8_t *buf, size_t len)
{
	memset(ph, 0, sizeof(*ph));
	if (len == 0)
		return PROXY_HEADER_MORE;
	if (buf[0] == PROXY_HEADER_V1_SIG[0]) {
		ph->version = 1;
		return proxy_header_v1(ph, buf, len);
	}
	if (buf[0] == proxy_header_v2_sig[0]) {
		ph->version = 2;
		return proxy_header_v2(ph, buf, len);
	}
	return proxy_header_invalid(ph, "not a PROXY protocol header");
}
