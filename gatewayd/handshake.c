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
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "handshake.h"

#define HANDSHAKE_GUID		"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define HANDSHAKE_KEY_LEN	24	/* base64 of 16 bytes, with "==" */
#define HANDSHAKE_SHA1_LEN	20

static bool	handshake_is_token(const char *, size_t);
static bool	handshake_name_eq(const char *, size_t, const char *);
static int	handshake_b64_value(unsigned char);
static bool	handshake_key_valid(const char *, size_t);
static int	handshake_subprotocols(const struct http_req *,
		    struct handshake *, const char **);

/* A non-empty run of RFC 9110 tchar. */
static bool
handshake_is_token(const char *s, size_t len)
{
	size_t i;
	unsigned char c;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		    (c >= 'A' && c <= 'Z'))
			continue;
		if (c == '\0' || strchr("!#$%&'*+-.^_`|~", c) == NULL)
			return false;
	}
	return true;
}

/* ASCII case-insensitive comparison of a header name. */
static bool
handshake_name_eq(const char *a, size_t a_len, const char *b)
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
		if (!handshake_name_eq(h->name, h->name_len,
		    "Sec-WebSocket-Protocol"))
			continue;
		pos = h->value;
		while (http_req_next_element(&pos, h->value + h->value_len,
		    &elem, &elem_len)) {
			if (!handshake_is_token(elem, elem_len)) {
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

/*
 * The response is NUL-terminated as well, and the terminator must fit.
 * Returns 0 too when hs holds no accept value or subprotocol is not a
 * token, rather than write a broken or forged header.
 */
size_t
handshake_response_101(char *buf, size_t size, const struct handshake *hs,
    const char *subprotocol, size_t subprotocol_len)
{
	int n;

	if (strnlen(hs->accept, sizeof(hs->accept)) != HANDSHAKE_ACCEPT_LEN)
		return 0;
	if (subprotocol == NULL)
		n = snprintf(buf, size,
		    "HTTP/1.1 101 Switching Protocols\r\n"
		    "Upgrade: websocket\r\n"
		    "Connection: Upgrade\r\n"
		    "Sec-WebSocket-Accept: %s\r\n"
		    "\r\n", hs->accept);
	else {
		if (subprotocol_len > INT_MAX ||
		    !handshake_is_token(subprotocol, subprotocol_len))
			return 0;
		n = snprintf(buf, size,
		    "HTTP/1.1 101 Switching Protocols\r\n"
		    "Upgrade: websocket\r\n"
		    "Connection: Upgrade\r\n"
		    "Sec-WebSocket-Accept: %s\r\n"
		    "Sec-WebSocket-Protocol: %.*s\r\n"
		    "\r\n", hs->accept, (int)subprotocol_len, subprotocol);
	}
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
