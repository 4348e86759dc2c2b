/*
 * http_req: the HTTP/1.x request-head parser (see http_req.h).
 *
 * A line ends with LF, optionally preceded by one CR: RFC 9112 2.2 lets a
 * recipient accept a bare LF.  http_req_head_end and http_req_parse split
 * lines the same way, so the head one measures is the head the other
 * parses.  A CR anywhere else is a control character and makes the head
 * malformed.
 *
 * Empty lines before the request line, which RFC 9112 2.2 says a server
 * SHOULD ignore, are rejected with 400: a WebSocket client sends its
 * handshake first thing on a fresh connection, so they only ever come from
 * something that is not one.
 *
 * Comma-separated lists are split without regard to quoted strings: none of
 * the fields the handshake reads (Connection, Upgrade,
 * Sec-WebSocket-Protocol) may contain one.
 */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "http_req.h"

static bool	http_req_is_tchar(unsigned char);
static bool	http_req_is_ows(char);
static bool	http_req_next_line(const char **, const char *, const char **,
		    size_t *);
static int	http_req_parse_request_line(struct http_req *, const char *,
		    size_t);
static int	http_req_parse_header(struct http_req_header *, const char *,
		    size_t);

/* RFC 9110 5.6.2: tchar, the characters of a token. */
static bool
http_req_is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 9110 5.6.3: OWS is spaces and horizontal tabs. */
static bool
http_req_is_ows(char c)
{
	return c == ' ' || c == '\t';
}

bool
http_req_is_token(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (!http_req_is_tchar((unsigned char)s[i]))
			return false;
	}
	return len > 0;
}

bool
http_req_name_eq(const char *a, size_t a_len, const char *b)
{
	size_t i;
	unsigned char ca, cb;

	if (strlen(b) != a_len)
		return false;
	for (i = 0; i < a_len; i++) {
		ca = (unsigned char)a[i];
		cb = (unsigned char)b[i];
		if (ca >= 'A' && ca <= 'Z')
			ca += 'a' - 'A';
		if (cb >= 'A' && cb <= 'Z')
			cb += 'a' - 'A';
		if (ca != cb)
			return false;
	}
	return true;
}

size_t
http_req_head_end(const char *buf, size_t len)
{
	const char *p = buf, *end, *nl;

	if (len == 0)
		return 0;
	end = buf + len;
	while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		p = nl + 1;
		/* an empty line: LF, or CR LF, right after a line's LF */
		if (p < end && p[0] == '\n')
			return (size_t)(p + 1 - buf);
		if (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
			return (size_t)(p + 2 - buf);
	}
	return 0;
}

/*
 * Take the line at *pos: store it, without its CR LF or LF, in *line and
 * *line_len, and move *pos past it.  False when no LF ends it.
 */
static bool
http_req_next_line(const char **pos, const char *end, const char **line,
    size_t *line_len)
{
	const char *p = *pos, *nl;
	size_t n;

	if (p >= end || (nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
		return false;
	n = (size_t)(nl - p);
	if (n > 0 && p[n - 1] == '\r')
		n--;
	*line = p;
	*line_len = n;
	*pos = nl + 1;
	return true;
}

/* method SP origin-form SP HTTP/1.x, with exactly one space each time. */
static int
http_req_parse_request_line(struct http_req *req, const char *line,
    size_t len)
{
	const char *p = line, *end = line + len, *target, *query = NULL;
	unsigned char c;

	while (p < end && http_req_is_tchar((unsigned char)*p))
		p++;
	if (p == line || p == end || *p != ' ')
		return 400;
	req->method = line;
	req->method_len = (size_t)(p - line);

	/*
	 * origin-form = absolute-path [ "?" query ] (RFC 9112 3.2.1): no
	 * authority, no "*", no fragment.  Bytes outside printable ASCII
	 * must be percent-encoded.
	 */
	target = ++p;
	if (p == end || *p != '/')
		return 400;
	for (; p < end && *p != ' '; p++) {
		c = (unsigned char)*p;
		if (c <= 0x20 || c >= 0x7f || c == '#')
			return 400;
		if (c == '?' && query == NULL)
			query = p;
	}
	if (p == end)
		return 400;
	req->path = target;
	if (query != NULL) {
		req->path_len = (size_t)(query - target);
		req->query = query + 1;
		req->query_len = (size_t)(p - query - 1);
	} else {
		req->path_len = (size_t)(p - target);
		req->query = "";
		req->query_len = 0;
	}

	/* HTTP-version = "HTTP" "/" DIGIT "." DIGIT, case-sensitive */
	p++;
	if (end - p != 8 || memcmp(p, "HTTP/", 5) != 0 ||
	    p[5] < '0' || p[5] > '9' || p[6] != '.' || p[7] < '0' || p[7] > '9')
		return 400;
	if (p[5] != '1')
		return 505;
	req->version_minor = p[7] - '0';
	return 0;
}

/* field-name ":" OWS field-value OWS; -1 when malformed. */
static int
http_req_parse_header(struct http_req_header *h, const char *line,
    size_t len)
{
	const char *p = line, *end = line + len, *q;
	unsigned char c;

	while (p < end && http_req_is_tchar((unsigned char)*p))
		p++;
	if (p == line || p == end || *p != ':')
		return -1;
	h->name = line;
	h->name_len = (size_t)(p - line);

	p++;
	for (q = p; q < end; q++) {
		c = (unsigned char)*q;
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return -1;
	}
	while (p < end && http_req_is_ows(*p))
		p++;
	while (end > p && http_req_is_ows(end[-1]))
		end--;
	h->value = p;
	h->value_len = (size_t)(end - p);
	return 0;
}

/*
 * Bytes after the empty line that ends the head are not looked at.  On an
 * error, the fields parsed before it stay set (the method and path may be
 * worth logging) and the others are unspecified.
 */
int
http_req_parse(struct http_req *req, const char *buf, size_t len,
    size_t max_headers)
{
	const char *p = buf, *end, *line;
	size_t line_len;
	int status;

	req->method = NULL;
	req->method_len = 0;
	req->path = NULL;
	req->path_len = 0;
	req->query = "";
	req->query_len = 0;
	req->version_minor = 0;
	req->n_headers = 0;
	if (max_headers > HTTP_REQ_HEADERS_MAX)
		max_headers = HTTP_REQ_HEADERS_MAX;

	if (len == 0)
		return 400;
	end = buf + len;
	if (!http_req_next_line(&p, end, &line, &line_len))
		return 400;
	if ((status = http_req_parse_request_line(req, line, line_len)) != 0)
		return status;
	for (;;) {
		if (!http_req_next_line(&p, end, &line, &line_len))
			return 400;	/* no empty line ends the head */
		if (line_len == 0)
			return 0;
		/* obs-fold, or whitespace before the first header */
		if (http_req_is_ows(line[0]))
			return 400;
		if (req->n_headers >= max_headers)
			return 431;
		if (http_req_parse_header(&req->headers[req->n_headers], line,
		    line_len) == -1)
			return 400;
		req->n_headers++;
	}
}

const struct http_req_header *
http_req_header(const struct http_req *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->n_headers; i++)
		if (http_req_name_eq(req->headers[i].name,
		    req->headers[i].name_len, name))
			return &req->headers[i];
	return NULL;
}

size_t
http_req_header_count(const struct http_req *req, const char *name)
{
	size_t i, n = 0;

	for (i = 0; i < req->n_headers; i++)
		if (http_req_name_eq(req->headers[i].name,
		    req->headers[i].name_len, name))
			n++;
	return n;
}

bool
http_req_header_has_token(const struct http_req *req, const char *name,
    const char *token)
{
	const struct http_req_header *h;
	const char *pos, *elem;
	size_t i, elem_len;

	for (i = 0; i < req->n_headers; i++) {
		h = &req->headers[i];
		if (!http_req_name_eq(h->name, h->name_len, name))
			continue;
		pos = h->value;
		while (http_req_next_element(&pos, h->value + h->value_len,
		    &elem, &elem_len))
			if (http_req_name_eq(elem, elem_len, token))
				return true;
	}
	return false;
}

bool
http_req_next_element(const char **pos, const char *end, const char **elem,
    size_t *elem_len)
{
	const char *p = *pos, *e;

	/* RFC 9110 5.6.1: empty elements are skipped */
	while (p < end && (*p == ',' || http_req_is_ows(*p)))
		p++;
	if (p >= end) {
		*pos = end;
		return false;
	}
	for (e = p; e < end && *e != ','; e++)
		;
	*pos = e;
	while (e > p && http_req_is_ows(e[-1]))
		e--;
	*elem = p;
	*elem_len = (size_t)(e - p);
	return true;
}
