/*
 * handshake: the WebSocket opening handshake (see handshake.h).
 *
 * The checks run in a fixed order, so that a request with several faults
 * always gets the same answer: the method, then the Upgrade token (without
 * it the request is plain HTTP and 426 tells the client what this port
 * speaks), then the HTTP version, Host, Connection, Sec-WebSocket-Version,
 * Sec-WebSocket-Key and Sec-WebSocket-Protocol.
 *
 * Subprotocols: RFC 6455 4.1 requires a client's offers to be tokens and
 * unique, so a malformed or repeated one (compared case-sensitively, as
 * subprotocol names are) is answered with 400.  An empty
 * Sec-WebSocket-Protocol field offers nothing and is not an error.
 */
#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "handshake.h"

#define HANDSHAKE_GUID		"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define HANDSHAKE_KEY_LEN	24	/* base64 of 16 bytes, with "==" */
#define HANDSHAKE_SHA1_LEN	20

/* A serialized origin, split; pointers into the text parsed. */
struct handshake_origin {
	const char *scheme, *host, *port;
	size_t scheme_len, host_len, port_len;	/* port_len 0: no port */
	bool wildcard;		/* host is "*." and a domain */
};

static int	handshake_b64_value(unsigned char);
static bool	handshake_key_valid(const char *, size_t);
static int	handshake_subprotocols(const struct http_req *,
		    struct handshake *, const char **);
static int	handshake_origin_parse(const char *, size_t, bool,
		    struct handshake_origin *, const char **);

/* The value of a base64 digit (RFC 4648 table 1), or -1. */
static int
handshake_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * A Sec-WebSocket-Key must be the base64 of 16 bytes (RFC 6455 4.2.1),
 * which is 22 digits and "==".  EVP_DecodeBlock alone is too lax for that
 * (it skips blanks and takes '=' anywhere), so the digits are checked
 * first, including that the 4 bits past the 16th byte are zero as a
 * canonical encoder leaves them.
 */
static bool
handshake_key_valid(const char *key, size_t len)
{
	unsigned char out[HANDSHAKE_KEY_LEN];
	size_t i;

	if (len != HANDSHAKE_KEY_LEN || key[22] != '=' || key[23] != '=')
		return false;
	for (i = 0; i < 22; i++)
		if (handshake_b64_value((unsigned char)key[i]) < 0)
			return false;
	if (handshake_b64_value((unsigned char)key[21]) & 0x0f)
		return false;
	/* 24 digits decode to 18 bytes, the last two from the padding */
	return EVP_DecodeBlock(out, (const unsigned char *)key,
	    HANDSHAKE_KEY_LEN) == 18;
}

/* Collect the offered subprotocols, in order, from every such header. */
static int
handshake_subprotocols(const struct http_req *req, struct handshake *hs,
    const char **why)
{
	const struct http_req_header *h;
	const char *pos, *elem;
	size_t i, j, elem_len;

	for (i = 0; i < req->n_headers; i++) {
		h = &req->headers[i];
		if (!http_req_name_eq(h->name, h->name_len,
		    "Sec-WebSocket-Protocol"))
			continue;
		pos = h->value;
		while (http_req_next_element(&pos, h->value + h->value_len,
		    &elem, &elem_len)) {
			if (!http_req_is_token(elem, elem_len)) {
				*why = "malformed Sec-WebSocket-Protocol";
				return 400;
			}
			for (j = 0; j < hs->n_subprotocols; j++)
				if (hs->subprotocol_lens[j] == elem_len &&
				    memcmp(hs->subprotocols[j], elem,
				    elem_len) == 0) {
					*why = "repeated subprotocol";
					return 400;
				}
			if (hs->n_subprotocols == HANDSHAKE_MAX_SUBPROTOCOLS) {
				*why = "too many subprotocols";
				return 400;
			}
			hs->subprotocols[hs->n_subprotocols] = elem;
			hs->subprotocol_lens[hs->n_subprotocols] = elem_len;
			hs->n_subprotocols++;
		}
	}
	return 0;
}

/*
 * Besides the statuses handshake.h lists, this returns 500 in the unlikely
 * case that libcrypto fails to compute the accept value (it allocates).
 */
int
handshake_check(const struct http_req *req, struct handshake *hs,
    const char **why)
{
	const struct http_req_header *h;
	const char *unused;
	size_t n;
	int status;

	if (why == NULL)
		why = &unused;
	*why = NULL;
	hs->accept[0] = '\0';
	hs->n_subprotocols = 0;
	hs->extensions = NULL;

	if (req->method_len != 3 || memcmp(req->method, "GET", 3) != 0) {
		*why = "method is not GET";
		return 405;
	}
	if (!http_req_header_has_token(req, "Upgrade", "websocket")) {
		*why = "not a WebSocket upgrade";
		return 426;
	}
	if (req->version_minor < 1) {
		*why = "HTTP/1.0 cannot upgrade";
		return 400;
	}

	n = http_req_header_count(req, "Host");
	h = http_req_header(req, "Host");
	if (n == 0) {
		*why = "no Host";
		return 400;
	}
	if (n > 1) {
		*why = "more than one Host";
		return 400;
	}
	if (h->value_len == 0) {
		*why = "empty Host";
		return 400;
	}

	if (!http_req_header_has_token(req, "Connection", "upgrade")) {
		*why = "no upgrade in Connection";
		return 400;
	}

	n = http_req_header_count(req, "Sec-WebSocket-Version");
	h = http_req_header(req, "Sec-WebSocket-Version");
	if (n != 1 || h->value_len != 2 || memcmp(h->value, "13", 2) != 0) {
		*why = "Sec-WebSocket-Version is not 13";
		return 426;
	}

	n = http_req_header_count(req, "Sec-WebSocket-Key");
	h = http_req_header(req, "Sec-WebSocket-Key");
	if (n == 0) {
		*why = "no Sec-WebSocket-Key";
		return 400;
	}
	if (n > 1) {
		*why = "more than one Sec-WebSocket-Key";
		return 400;
	}
	if (!handshake_key_valid(h->value, h->value_len)) {
		*why = "Sec-WebSocket-Key is not 16 bytes in base64";
		return 400;
	}

	if ((status = handshake_subprotocols(req, hs, why)) != 0) {
		hs->n_subprotocols = 0;
		return status;
	}

	handshake_accept_key(h->value, h->value_len, hs->accept);
	if (hs->accept[0] == '\0') {
		*why = "cannot compute Sec-WebSocket-Accept";
		return 500;
	}
	return 0;
}

/*
 * out is the empty string if libcrypto fails, which it can only do by
 * running out of memory.
 */
void
handshake_accept_key(const char *key, size_t key_len,
    char out[HANDSHAKE_ACCEPT_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	EVP_MD_CTX *ctx;
	int ok;

	out[0] = '\0';
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return;
	ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) &&
	    EVP_DigestUpdate(ctx, key, key_len) &&
	    EVP_DigestUpdate(ctx, HANDSHAKE_GUID, sizeof(HANDSHAKE_GUID) - 1) &&
	    EVP_DigestFinal_ex(ctx, md, &md_len);
	EVP_MD_CTX_free(ctx);
	if (!ok || md_len != HANDSHAKE_SHA1_LEN)
		return;
	EVP_EncodeBlock((unsigned char *)out, md, HANDSHAKE_SHA1_LEN);
}

int
handshake_find_subprotocol(const struct handshake *hs, const char *name,
    size_t name_len)
{
	size_t i;

	for (i = 0; i < hs->n_subprotocols; i++)
		if (hs->subprotocol_lens[i] == name_len &&
		    memcmp(hs->subprotocols[i], name, name_len) == 0)
			return (int)i;
	return -1;
}

int
handshake_select_subprotocol(const struct handshake *hs,
    const char *const *server_list)
{
	size_t i;

	if (server_list == NULL)
		return -1;
	for (i = 0; server_list[i] != NULL && i < INT_MAX; i++)
		if (handshake_find_subprotocol(hs, server_list[i],
		    strlen(server_list[i])) >= 0)
			return (int)i;
	return -1;
}

static bool
handshake_is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
handshake_is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* A host name: dot-separated non-empty labels of letters, digits, '-'
 * and '_' (browsers let '_' through), no dot at either end. */
static bool
handshake_host_valid(const char *s, size_t len)
{
	size_t i, label = 0;
	unsigned char c;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (handshake_is_alpha(c) || handshake_is_digit(c) ||
		    c == '-' || c == '_')
			label++;
		else
			return false;
	}
	return label > 0;
}

/* An IPv6 literal in brackets, loosely: hex digits, ':' and '.'. */
static bool
handshake_ipv6_valid(const char *s, size_t len)
{
	size_t i;

	if (len < 4 || s[0] != '[' || s[len - 1] != ']')
		return false;
	for (i = 1; i < len - 1; i++)
		if (!isxdigit((unsigned char)s[i]) && s[i] != ':' &&
		    s[i] != '.')
			return false;
	return memchr(s + 1, ':', len - 2) != NULL;
}

static bool
handshake_scheme_is(const struct handshake_origin *o, const char *name)
{
	return strlen(name) == o->scheme_len &&
	    strncasecmp(o->scheme, name, o->scheme_len) == 0;
}

/*
 * Split s[0..len) as "scheme://host[:port]", with "*.domain" for host when
 * wildcard is allowed.  Returns 0, or -1 with *why set.
 */
static int
handshake_origin_parse(const char *s, size_t len, bool wildcard,
    struct handshake_origin *o, const char **why)
{
	const char *end = s + len, *p, *colon;
	unsigned long port = 0;
	size_t i;

	memset(o, 0, sizeof(*o));
	for (p = s; p < end && (handshake_is_alpha((unsigned char)*p) ||
	    (p > s && (handshake_is_digit((unsigned char)*p) ||
	    *p == '+' || *p == '-' || *p == '.'))); p++)
		;
	if (p == s || end - p < 3 || memcmp(p, "://", 3) != 0) {
		*why = "expected '*' or scheme://host[:port]";
		return -1;
	}
	o->scheme = s;
	o->scheme_len = (size_t)(p - s);
	o->host = p += 3;
	for (; p < end; p++)
		if (*p == '/' || *p == '?' || *p == '#' || *p == '@') {
			*why = *p == '@' ? "an origin has no user part" :
			    "an origin has no path, query or fragment";
			return -1;
		}
	/* The port: digits after the last ':', outside an IPv6 literal. */
	colon = NULL;
	for (p = end; p > o->host; p--) {
		if (p[-1] == ':') {
			colon = p - 1;
			break;
		}
		if (p[-1] == ']')
			break;
	}
	if (colon != NULL) {
		o->port = colon + 1;
		o->port_len = (size_t)(end - o->port);
		if (o->port_len == 0 || o->port_len > 5 || o->port[0] == '0') {
			*why = "the port must be 1..65535, without leading "
			    "zeros";
			return -1;
		}
		for (i = 0; i < o->port_len; i++) {
			if (!handshake_is_digit((unsigned char)o->port[i])) {
				*why = "the port must be 1..65535, without "
				    "leading zeros";
				return -1;
			}
			port = port * 10 + (unsigned long)(o->port[i] - '0');
		}
		if (port > 65535) {
			*why = "the port must be 1..65535, without leading "
			    "zeros";
			return -1;
		}
		o->host_len = (size_t)(colon - o->host);
	} else
		o->host_len = (size_t)(end - o->host);

	if (o->host_len >= 2 && o->host[0] == '*' && o->host[1] == '.') {
		if (!wildcard) {
			*why = "a wildcard host";
			return -1;
		}
		if (!handshake_host_valid(o->host + 2, o->host_len - 2)) {
			*why = "expected a domain name after '*.'";
			return -1;
		}
		o->wildcard = true;
	} else if (o->host_len > 0 && o->host[0] == '[') {
		if (!handshake_ipv6_valid(o->host, o->host_len)) {
			*why = "not a host name or bracketed IPv6 address";
			return -1;
		}
	} else if (!handshake_host_valid(o->host, o->host_len)) {
		*why = o->host_len == 0 ? "no host" : memchr(o->host, '*',
		    o->host_len) != NULL ? "'*' is only allowed as a whole "
		    "first label, as in https://*.example.com" :
		    "not a host name or bracketed IPv6 address";
		return -1;
	}
	if ((port == 80 && (handshake_scheme_is(o, "http") ||
	    handshake_scheme_is(o, "ws"))) ||
	    (port == 443 && (handshake_scheme_is(o, "https") ||
	    handshake_scheme_is(o, "wss")))) {
		*why = "browsers never send the scheme's default port: "
		    "leave it out";
		return -1;
	}
	return 0;
}

int
handshake_origin_check(const char *entry, const char **why)
{
	struct handshake_origin o;

	if (strcmp(entry, "*") == 0)
		return 0;
	return handshake_origin_parse(entry, strlen(entry), true, &o, why);
}

bool
handshake_origin_allowed(const char *const *origins, const char *origin,
    size_t len)
{
	struct handshake_origin have, want;
	const char *why;
	bool valid;
	size_t i, suffix;

	if (origins == NULL || origins[0] == NULL || origin == NULL)
		return true;
	valid = handshake_origin_parse(origin, len, false, &have, &why) == 0;
	for (i = 0; origins[i] != NULL; i++) {
		if (strcmp(origins[i], "*") == 0)
			return true;
		if (!valid || handshake_origin_parse(origins[i],
		    strlen(origins[i]), true, &want, &why) == -1)
			continue;
		if (!want.wildcard) {
			if (strlen(origins[i]) == len &&
			    strncasecmp(origins[i], origin, len) == 0)
				return true;
			continue;
		}
		/* want.host is "*.domain": match ".domain" at the end of a
		 * longer host of the same scheme and port. */
		suffix = want.host_len - 1;
		if (have.scheme_len == want.scheme_len &&
		    strncasecmp(have.scheme, want.scheme,
		    want.scheme_len) == 0 &&
		    have.port_len == want.port_len && (want.port_len == 0 ||
		    memcmp(have.port, want.port, want.port_len) == 0) &&
		    have.host_len > suffix &&
		    strncasecmp(have.host + have.host_len - suffix,
		    want.host + 1, suffix) == 0)
			return true;
	}
	return false;
}

/*
 * The response is NUL-terminated as well, and the terminator must fit.
 * Returns 0 too when hs holds no accept value or subprotocol is not a
 * token, rather than write a broken or forged header.
 */
size_t
handshake_response_101(char *buf, size_t size, const struct handshake *hs,
    const char *subprotocol, size_t subprotocol_len)
{
	const char *ext = hs->extensions;
	int n;

	if (strnlen(hs->accept, sizeof(hs->accept)) != HANDSHAKE_ACCEPT_LEN)
		return 0;
	if (subprotocol != NULL && (subprotocol_len > INT_MAX ||
	    !http_req_is_token(subprotocol, subprotocol_len)))
		return 0;
	if (ext != NULL && strpbrk(ext, "\r\n") != NULL)
		return 0;
	n = snprintf(buf, size,
	    "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n"
	    "%s%.*s%s"
	    "%s%s%s"
	    "\r\n", hs->accept,
	    subprotocol != NULL ? "Sec-WebSocket-Protocol: " : "",
	    subprotocol != NULL ? (int)subprotocol_len : 0,
	    subprotocol != NULL ? subprotocol : "",
	    subprotocol != NULL ? "\r\n" : "",
	    ext != NULL ? "Sec-WebSocket-Extensions: " : "",
	    ext != NULL ? ext : "", ext != NULL ? "\r\n" : "");
	if (n < 0 || (size_t)n >= size)
		return 0;
	return (size_t)n;
}

/*
 * The response is NUL-terminated as well, and the terminator must fit.  A
 * status that is no error (outside 400..599) is sent as 500, since a 1xx,
 * 2xx or 3xx with these headers would mislead the client; a NULL body is
 * the reason phrase.  The body goes after the empty line with an exact Content-Length,
 * so whatever it holds (a backend's words, CR LF included) stays body.
 */
size_t
handshake_response_error(char *buf, size_t size, int status,
    const char *body)
{
	const char *extra = "";
	int n;

	if (status < 400 || status > 599)
		status = 500;
	if (body == NULL)
		body = handshake_status_text(status);
	if (status == 405)
		extra = "Allow: GET\r\n";
	else if (status == 426)
		extra = "Upgrade: websocket\r\n"
		    "Sec-WebSocket-Version: 13\r\n";
	n = snprintf(buf, size,
	    "HTTP/1.1 %d %s\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: %zu\r\n"
	    "Connection: close\r\n"
	    "%s"
	    "\r\n"
	    "%s\n", status, handshake_status_text(status), strlen(body) + 1,
	    extra, body);
	if (n < 0 || (size_t)n >= size)
		return 0;
	return (size_t)n;
}

const char *
handshake_status_text(int status)
{
	switch (status) {
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 421: return "Misdirected Request";
	case 422: return "Unprocessable Content";
	case 425: return "Too Early";
	case 426: return "Upgrade Required";
	case 428: return "Precondition Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 451: return "Unavailable For Legal Reasons";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	case 507: return "Insufficient Storage";
	case 511: return "Network Authentication Required";
	default: return "Error";
	}
}
