/*
 * http_req: the HTTP/1.x request-head parser used for the opening handshake.
 *
 * Pure: it reads a complete request head from a buffer and points into it;
 * it copies nothing and allocates nothing.  It is strict where RFC 9112
 * allows it to be (no whitespace before a header's colon, no obsolete line
 * folding, tokens in the method and header names) because a handshake has
 * no business being lenient.
 */
#ifndef GATEWAYD_HTTP_REQ_H
#define GATEWAYD_HTTP_REQ_H

#include <stdbool.h>
#include <stddef.h>

/* The largest header count any configuration may allow; max_headers in the
 * ini is bounded by it. */
#define HTTP_REQ_HEADERS_MAX 128

struct http_req_header {
	const char *name;	/* as sent; compare case-insensitively */
	size_t name_len;
	const char *value;	/* leading and trailing blanks stripped */
	size_t value_len;
};

struct http_req {
	const char *method;
	size_t method_len;
	const char *path;	/* request target up to '?', starts with '/' */
	size_t path_len;
	const char *query;	/* after '?', without it; "" when none */
	size_t query_len;
	int version_minor;	/* HTTP/1.<minor>; the major must be 1 */
	struct http_req_header headers[HTTP_REQ_HEADERS_MAX];
	size_t n_headers;
};

/* Return the length of the request head at the start of buf (up to and
 * including the empty line that ends it: CRLF CRLF, or LF LF), or 0 when
 * buf does not hold a whole head yet. */
size_t http_req_head_end(const char *buf, size_t len);

/*
 * Parse the whole request head buf[0..len) (as measured by
 * http_req_head_end) into req, whose pointers then point into buf.
 * Returns 0, or the HTTP status to answer: 400 for a malformed head
 * (including a request target that is not an origin-form path), 431 when
 * there are more than max_headers header lines, 505 for an HTTP major
 * version other than 1.
 */
int http_req_parse(struct http_req *req, const char *buf, size_t len,
    size_t max_headers);

/* The first header named name (case-insensitive), or NULL. */
const struct http_req_header *http_req_header(const struct http_req *req,
    const char *name);

/* How many headers are named name (case-insensitive). */
size_t http_req_header_count(const struct http_req *req, const char *name);

/* True when token appears (case-insensitive) in the comma-separated list
 * of any header named name, as in "Connection: keep-alive, Upgrade". */
bool http_req_header_has_token(const struct http_req *req, const char *name,
    const char *token);

/*
 * Iterate the comma-separated elements of a header value: *pos starts at
 * value and is advanced; each call stores the next non-empty element,
 * blanks trimmed, in *elem and *elem_len and returns true, or returns false
 * at the end.
 */
bool http_req_next_element(const char **pos, const char *end,
    const char **elem, size_t *elem_len);

/* True when s[0..len) is a non-empty RFC 9110 token (a header name, a
 * subprotocol name). */
bool http_req_is_token(const char *s, size_t len);

/* ASCII case-insensitive comparison of a[0..a_len) with the string b,
 * independent of the locale. */
bool http_req_name_eq(const char *a, size_t a_len, const char *b);

#endif
