/*
 * libFuzzer target for proxy_header.
 *
 * Input: the bytes a peer sends first on a proxy listener.  Every prefix
 * of them is parsed, as a reader that gets them a byte at a time would:
 * the verdicts must run MORE, ..., MORE and then stay DONE (with one
 * length and one result) or stay INVALID.  A DONE header reads back: a
 * v1 TCP4 line is exactly what its addresses print as, a TCP6 line's
 * addresses parse the same once printed, a v2 header holds its address
 * block at byte 16.  Any breach aborts.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: assertion failed: %s\n", \
		    __FILE__, __LINE__, #cond); \
		abort(); \
	} \
} while (0)

/* Prefixes checked one by one up to this length; beyond it, a few. */
#define FUZZ_EVERY_PREFIX 600

static void
check_addr(const struct sockaddr_storage *ss, socklen_t len)
{
	FUZZ_ASSERT(ss->ss_family == AF_INET || ss->ss_family == AF_INET6);
	FUZZ_ASSERT(len == (ss->ss_family == AF_INET ?
	    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)));
}

static unsigned
port_of(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET ?
	    ((const struct sockaddr_in *)ss)->sin_port :
	    ((const struct sockaddr_in6 *)ss)->sin6_port);
}

static void
host_of(const struct sockaddr_storage *ss, char *out, size_t size)
{
	FUZZ_ASSERT(inet_ntop(ss->ss_family, ss->ss_family == AF_INET ?
	    (const void *)&((const struct sockaddr_in *)ss)->sin_addr :
	    (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr,
	    out, (socklen_t)size) != NULL);
}

/* A DONE header read back. */
static void
check_done(const struct proxy_header *ph, const uint8_t *buf)
{
	char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN], line[160];
	struct proxy_header again;
	int n;

	FUZZ_ASSERT(ph->version == 1 || ph->version == 2);
	if (!ph->proxied) {
		FUZZ_ASSERT(ph->why != NULL && ph->why[0] != '\0');
		FUZZ_ASSERT(ph->src_len == 0 && ph->dst_len == 0);
	} else {
		FUZZ_ASSERT(ph->why == NULL);
		check_addr(&ph->src, ph->src_len);
		check_addr(&ph->dst, ph->dst_len);
		FUZZ_ASSERT(ph->src.ss_family == ph->dst.ss_family);
	}
	if (ph->version == 1) {
		FUZZ_ASSERT(ph->len >= 15 && ph->len <= PROXY_HEADER_V1_MAX);
		FUZZ_ASSERT(memcmp(buf, "PROXY ", 6) == 0);
		FUZZ_ASSERT(buf[ph->len - 2] == '\r' &&
		    buf[ph->len - 1] == '\n');
		FUZZ_ASSERT(memchr(buf, '\n', ph->len - 1) == NULL);
		if (!ph->proxied) {
			FUZZ_ASSERT(memcmp(buf + 6, "UNKNOWN", 7) == 0);
			return;
		}
		host_of(&ph->src, src, sizeof(src));
		host_of(&ph->dst, dst, sizeof(dst));
		n = snprintf(line, sizeof(line), "PROXY TCP%c %s %s %u %u\r\n",
		    ph->src.ss_family == AF_INET ? '4' : '6', src, dst,
		    port_of(&ph->src), port_of(&ph->dst));
		FUZZ_ASSERT(n > 0 && (size_t)n < sizeof(line));
		if (ph->src.ss_family == AF_INET) {
			/* TCP4 has one spelling */
			FUZZ_ASSERT((size_t)n == ph->len &&
			    memcmp(line, buf, ph->len) == 0);
		} else {
			FUZZ_ASSERT(proxy_header_parse(&again,
			    (const uint8_t *)line, (size_t)n) ==
			    PROXY_HEADER_DONE);
			FUZZ_ASSERT(again.proxied && again.len == (size_t)n);
			FUZZ_ASSERT(memcmp(&again.src, &ph->src,
			    sizeof(again.src)) == 0);
			FUZZ_ASSERT(memcmp(&again.dst, &ph->dst,
			    sizeof(again.dst)) == 0);
		}
		return;
	}
	FUZZ_ASSERT(ph->len >= PROXY_HEADER_V2_FIXED &&
	    ph->len <= PROXY_HEADER_MAX);
	FUZZ_ASSERT(ph->len == PROXY_HEADER_V2_FIXED +
	    ((size_t)buf[14] << 8 | buf[15]));
	FUZZ_ASSERT((buf[12] & 0xf0) == 0x20);
	if (!ph->proxied)
		return;
	FUZZ_ASSERT(buf[12] == 0x21);
	if (ph->src.ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)&ph->src;
		const struct sockaddr_in *d = (const void *)&ph->dst;

		FUZZ_ASSERT(buf[13] == 0x11 && ph->len >= 28);
		FUZZ_ASSERT(memcmp(buf + 16, &s->sin_addr, 4) == 0);
		FUZZ_ASSERT(memcmp(buf + 20, &d->sin_addr, 4) == 0);
		FUZZ_ASSERT(memcmp(buf + 24, &s->sin_port, 2) == 0);
		FUZZ_ASSERT(memcmp(buf + 26, &d->sin_port, 2) == 0);
	} else {
		const struct sockaddr_in6 *s = (const void *)&ph->src;
		const struct sockaddr_in6 *d = (const void *)&ph->dst;

		FUZZ_ASSERT(buf[13] == 0x21 && ph->len >= 52);
		FUZZ_ASSERT(memcmp(buf + 16, &s->sin6_addr, 16) == 0);
		FUZZ_ASSERT(memcmp(buf + 32, &d->sin6_addr, 16) == 0);
		FUZZ_ASSERT(memcmp(buf + 48, &s->sin6_port, 2) == 0);
		FUZZ_ASSERT(memcmp(buf + 50, &d->sin6_port, 2) == 0);
	}
}

/* The verdict on n bytes, against the one on the bytes before (all of
 * them when next, else some). */
static void
check_prefix(const uint8_t *data, size_t n, bool next,
    struct proxy_header *prev, enum proxy_header_status *prev_st)
{
	struct proxy_header ph;
	enum proxy_header_status st;

	st = proxy_header_parse(&ph, n > 0 ? data : NULL, n);
	switch (st) {
	case PROXY_HEADER_MORE:
		FUZZ_ASSERT(*prev_st == PROXY_HEADER_MORE);
		FUZZ_ASSERT(n < PROXY_HEADER_MAX);
		break;
	case PROXY_HEADER_DONE:
		FUZZ_ASSERT(*prev_st != PROXY_HEADER_INVALID);
		FUZZ_ASSERT(ph.len > 0 && ph.len <= n);
		if (*prev_st == PROXY_HEADER_DONE)
			FUZZ_ASSERT(memcmp(&ph, prev, sizeof(ph)) == 0);
		else if (next)
			FUZZ_ASSERT(ph.len == n);	/* done on its last byte */
		check_done(&ph, data);
		break;
	case PROXY_HEADER_INVALID:
		FUZZ_ASSERT(*prev_st != PROXY_HEADER_DONE);
		FUZZ_ASSERT(ph.why != NULL && ph.why[0] != '\0');
		FUZZ_ASSERT(n > 0);
		break;
	default:
		FUZZ_ASSERT(0);
	}
	*prev = ph;
	*prev_st = st;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_header prev;
	enum proxy_header_status prev_st = PROXY_HEADER_MORE;
	size_t n, step;

	memset(&prev, 0, sizeof(prev));
	for (n = 0; n <= size && n <= FUZZ_EVERY_PREFIX; n++)
		check_prefix(data, n, true, &prev, &prev_st);
	if (size <= FUZZ_EVERY_PREFIX)
		return 0;
	/* Longer: the verdict cannot go back on itself at a few more
	 * lengths, and at the whole. */
	step = (size - FUZZ_EVERY_PREFIX) / 8 + 1;
	for (n = FUZZ_EVERY_PREFIX + step; n < size; n += step)
		check_prefix(data, n, false, &prev, &prev_st);
	check_prefix(data, size, false, &prev, &prev_st);
	return 0;
}
