/*
 * proxy_header: the PROXY protocol header (HAProxy's proxy-protocol.txt),
 * version 1 (text) and 2 (binary), as a load balancer sends it at the
 * start of a connection ("send-proxy", "send-proxy-v2") to tell the
 * server whom the connection is for.
 *
 * Pure: it looks at the bytes a connection has sent so far and says
 * whether they are a whole header, the valid beginning of one, or not a
 * header at all; no sockets, no allocation.  It is strict where the
 * specification is (one space between v1 fields, no leading zeros, a
 * CRLF and nothing else to end the line, only the assigned v2 versions,
 * commands and families), and it rejects a mismatch as soon as the byte
 * that makes it one is there: a client that speaks HTTP or TLS to a
 * proxy listener is refused on its first byte.
 */
#ifndef GATEWAYD_PROXY_HEADER_H
#define GATEWAYD_PROXY_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest v1 line, CRLF included (the specification's worst case,
 * "PROXY UNKNOWN" and two full IPv6 addresses and ports). */
#define PROXY_HEADER_V1_MAX 107
/* The fixed part of a v2 header: signature, version and command,
 * family, length. */
#define PROXY_HEADER_V2_FIXED 16
/* The largest v2 length field taken: addresses (216 bytes for AF_UNIX)
 * and TLVs (ALPN, authority, SSL details, a unique id: a few hundred
 * bytes in practice).  A longer header is refused. */
#define PROXY_HEADER_V2_LEN_MAX 4096
/* The longest header of either version: a reader that has this many
 * bytes has a verdict. */
#define PROXY_HEADER_MAX (PROXY_HEADER_V2_FIXED + PROXY_HEADER_V2_LEN_MAX)

enum proxy_header_status {
	PROXY_HEADER_DONE,	/* a whole, valid header */
	PROXY_HEADER_MORE,	/* a valid beginning: every byte of it is
				 * the header's, and more are needed */
	PROXY_HEADER_INVALID,	/* not a valid header: close the
				 * connection */
};

struct proxy_header {
	size_t len;		/* DONE: the header's length, the bytes to
				 * consume; what follows is the client's */
	int version;		/* 1 or 2; 0 until the first byte says */
	bool proxied;		/* DONE: src and dst are the client's and
				 * the proxy's; false: keep the connection's
				 * own addresses (v1 UNKNOWN, v2 LOCAL, v2
				 * AF_UNSPEC, AF_UNIX or datagrams) */
	struct sockaddr_storage src;	/* proxied: AF_INET or AF_INET6 */
	socklen_t src_len;		/* 0 unless proxied */
	struct sockaddr_storage dst;
	socklen_t dst_len;
	const char *why;	/* INVALID: what is wrong; DONE and not
				 * proxied: why the addresses are kept (a
				 * short text for the log, static) */
};

/*
 * Look at the len bytes a connection has sent so far, buf (which may be
 * NULL when len is 0), and fill ph.  MORE is returned only while len is
 * below PROXY_HEADER_MAX, and only when all len bytes belong to the
 * header: a reader may consume them and read on.  DONE sets ph->len
 * (at most len, at most PROXY_HEADER_MAX); bytes after it are not looked
 * at.
 */
enum proxy_header_status proxy_header_parse(struct proxy_header *ph,
    const uint8_t *buf, size_t len);

#endif
