/*
 * libFuzzer target for http_req and handshake.
 *
 * Input: one byte that sets max_headers (1 + byte % 128), then the bytes a
 * client sends.  When they hold a request head, it is parsed, checked as a
 * handshake, and answered; every step's contract is checked, and any
 * breach aborts.  Every Origin header goes through the origin allow-list
 * matcher, and the offered subprotocols through the server's choice.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "handshake.h"
#include "http_req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: assertion failed: %s\n", \
		    __FILE__, __LINE__, #cond); \
		abort(); \
	} \
} while (0)

static struct http_req req;
static struct handshake hs;

/* [p, p + len) lies within [lo, hi). */
static int
inside(const char *p, size_t len, const char *lo, const char *hi)
{
	return p != NULL && p >= lo && p <= hi && len <= (size_t)(hi - p);
}

static int
has_ctl(const char *p, size_t len, int tab_ok)
{
	size_t i;
	unsigned char c;

	for (i = 0; i < len; i++) {
		c = (unsigned char)p[i];
		if ((c < 0x20 && !(tab_ok && c == '\t')) || c == 0x7f)
			return 1;
	}
	return 0;
}

static void
check_elements(const struct http_req_header *h)
{
	const char *pos = h->value, *end = h->value + h->value_len, *elem;
	size_t elem_len, n = 0;

	while (http_req_next_element(&pos, end, &elem, &elem_len)) {
		FUZZ_ASSERT(inside(elem, elem_len, h->value, end));
		FUZZ_ASSERT(elem_len > 0);
		FUZZ_ASSERT(memchr(elem, ',', elem_len) == NULL);
		FUZZ_ASSERT(elem[0] != ' ' && elem[0] != '\t');
		FUZZ_ASSERT(elem[elem_len - 1] != ' ' &&
		    elem[elem_len - 1] != '\t');
		FUZZ_ASSERT(pos <= end);
		FUZZ_ASSERT(++n <= h->value_len);
	}
	FUZZ_ASSERT(pos == end);
}

static void
check_request(const char *buf, size_t head, size_t max_headers)
{
	const char *end = buf + head;
	const struct http_req_header *h;
	size_t i;
	unsigned char c;

	FUZZ_ASSERT(inside(req.method, req.method_len, buf, end));
	FUZZ_ASSERT(req.method_len > 0);
	FUZZ_ASSERT(inside(req.path, req.path_len, buf, end));
	FUZZ_ASSERT(req.path_len > 0 && req.path[0] == '/');
	FUZZ_ASSERT(memchr(req.path, '?', req.path_len) == NULL);
	FUZZ_ASSERT(req.query != NULL);
	if (req.query_len > 0) {
		FUZZ_ASSERT(inside(req.query, req.query_len, buf, end));
		FUZZ_ASSERT(req.query[-1] == '?');
	}
	for (i = 0; i < req.path_len + req.query_len; i++) {
		c = (unsigned char)(i < req.path_len ? req.path[i] :
		    req.query[i - req.path_len]);
		FUZZ_ASSERT(c > 0x20 && c < 0x7f && c != '#');
	}
	FUZZ_ASSERT(req.version_minor >= 0 && req.version_minor <= 9);
	FUZZ_ASSERT(req.n_headers <= max_headers);
	FUZZ_ASSERT(req.n_headers <= HTTP_REQ_HEADERS_MAX);
	for (i = 0; i < req.n_headers; i++) {
		h = &req.headers[i];
		FUZZ_ASSERT(inside(h->name, h->name_len, buf, end));
		FUZZ_ASSERT(inside(h->value, h->value_len, buf, end));
		FUZZ_ASSERT(h->name_len > 0);
		FUZZ_ASSERT(memchr(h->name, ':', h->name_len) == NULL);
		FUZZ_ASSERT(!has_ctl(h->value, h->value_len, 1));
		if (h->value_len > 0) {
			FUZZ_ASSERT(h->value[0] != ' ' && h->value[0] != '\t');
			FUZZ_ASSERT(h->value[h->value_len - 1] != ' ' &&
			    h->value[h->value_len - 1] != '\t');
		}
		check_elements(h);
	}
}

/* What a wildcard may let in: "https://" LABELS ".example.com". */
static int
wild_shape(const char *v, size_t len)
{
	static const char pre[] = "https://", suf[] = ".example.com";
	size_t i, np = sizeof(pre) - 1, ns = sizeof(suf) - 1;

	if (len <= np + ns || strncasecmp(v, pre, np) != 0 ||
	    strncasecmp(v + len - ns, suf, ns) != 0 || v[np] == '.')
		return 0;
	for (i = np; i < len; i++)
		if (strchr("/?#@:*[] \t", v[i]) != NULL)
			return 0;
	return 1;
}

static void
check_origins(void)
{
	static const char *const none[] = { NULL };
	static const char *const any[] = { "https://x.org", "*", NULL };
	static const char *const wild[] = { "https://*.example.com", NULL };
	static const char *const exact[] = { "https://example.com",
	    "http://[::1]:8080", NULL };
	static char copy[1024];
	const char *self[2] = { copy, NULL }, *why;
	const struct http_req_header *h;
	size_t i;

	FUZZ_ASSERT(handshake_origin_allowed(wild, NULL, 0));
	for (i = 0; i < req.n_headers; i++) {
		h = &req.headers[i];
		if (h->name_len != 6 || strncasecmp(h->name, "Origin", 6) != 0)
			continue;
		FUZZ_ASSERT(handshake_origin_allowed(NULL, h->value,
		    h->value_len));
		FUZZ_ASSERT(handshake_origin_allowed(none, h->value,
		    h->value_len));
		FUZZ_ASSERT(handshake_origin_allowed(any, h->value,
		    h->value_len));
		if (handshake_origin_allowed(wild, h->value, h->value_len))
			FUZZ_ASSERT(wild_shape(h->value, h->value_len));
		if (handshake_origin_allowed(exact, h->value, h->value_len))
			FUZZ_ASSERT((h->value_len == 19 && strncasecmp(h->value,
			    exact[0], 19) == 0) || (h->value_len == 17 &&
			    strncasecmp(h->value, exact[1], 17) == 0));
		/* a valid entry without wildcard lets itself in */
		if (h->value_len < sizeof(copy) &&
		    memchr(h->value, '\0', h->value_len) == NULL) {
			memcpy(copy, h->value, h->value_len);
			copy[h->value_len] = '\0';
			if (handshake_origin_check(copy, &why) == 0 &&
			    strchr(copy, '*') == NULL)
				FUZZ_ASSERT(handshake_origin_allowed(self,
				    h->value, h->value_len));
		}
	}
}

static void
check_select(void)
{
	static char names[HANDSHAKE_MAX_SUBPROTOCOLS][1024];
	const char *list[HANDSHAKE_MAX_SUBPROTOCOLS + 2];
	static const char *const other[] = { "\x01never", NULL };
	size_t i, n = 0;
	int k;

	FUZZ_ASSERT(handshake_select_subprotocol(&hs, NULL) == -1);
	FUZZ_ASSERT(handshake_select_subprotocol(&hs, other) == -1);
	/* the server's list: the offers, last first, after one never
	 * offered: its choice is the client's last offer */
	list[n++] = "\x01never";
	for (i = hs.n_subprotocols; i-- > 0; ) {
		if (hs.subprotocol_lens[i] >= sizeof(names[0]))
			return;
		memcpy(names[i], hs.subprotocols[i], hs.subprotocol_lens[i]);
		names[i][hs.subprotocol_lens[i]] = '\0';
		list[n++] = names[i];
	}
	list[n] = NULL;
	k = handshake_select_subprotocol(&hs, list);
	FUZZ_ASSERT(hs.n_subprotocols == 0 ? k == -1 : k == 1);
}

static void
check_handshake(const char *buf, size_t head)
{
	static char out[4096];
	const char *why = NULL;
	size_t i, n, n2;
	int status;

	status = handshake_check(&req, &hs, &why);
	if (status != 0) {
		FUZZ_ASSERT(status == 400 || status == 405 || status == 426 ||
		    status == 500);
		FUZZ_ASSERT(why != NULL && why[0] != '\0');
		FUZZ_ASSERT(hs.n_subprotocols == 0);
		n = handshake_response_error(out, sizeof(out), status, why);
		FUZZ_ASSERT(n > 0 && n < sizeof(out));
		FUZZ_ASSERT(memcmp(out, "HTTP/1.1 ", 9) == 0);
		FUZZ_ASSERT(atoi(out + 9) == status);
		FUZZ_ASSERT(handshake_response_error(out, n, status, why) == 0);
		return;
	}

	FUZZ_ASSERT(why == NULL);
	check_select();
	FUZZ_ASSERT(strlen(hs.accept) == HANDSHAKE_ACCEPT_LEN);
	FUZZ_ASSERT(req.method_len == 3 && memcmp(req.method, "GET", 3) == 0);
	FUZZ_ASSERT(req.version_minor >= 1);
	FUZZ_ASSERT(http_req_header_count(&req, "Host") == 1);
	FUZZ_ASSERT(http_req_header_count(&req, "Sec-WebSocket-Key") == 1);
	FUZZ_ASSERT(hs.n_subprotocols <= HANDSHAKE_MAX_SUBPROTOCOLS);
	for (i = 0; i < hs.n_subprotocols; i++) {
		FUZZ_ASSERT(inside(hs.subprotocols[i], hs.subprotocol_lens[i],
		    buf, buf + head));
		FUZZ_ASSERT(hs.subprotocol_lens[i] > 0);
		FUZZ_ASSERT(handshake_find_subprotocol(&hs, hs.subprotocols[i],
		    hs.subprotocol_lens[i]) == (int)i);
	}

	n = handshake_response_101(out, sizeof(out), &hs, NULL, 0);
	FUZZ_ASSERT(n > 0 && n == strlen(out));
	FUZZ_ASSERT(n >= 4 && memcmp(out + n - 4, "\r\n\r\n", 4) == 0);
	FUZZ_ASSERT(strstr(out, "\r\n\r\n") == out + n - 4);
	FUZZ_ASSERT(handshake_response_101(out, n, &hs, NULL, 0) == 0);
	if (hs.n_subprotocols > 0) {
		i = hs.n_subprotocols - 1;
		n2 = handshake_response_101(out, sizeof(out), &hs,
		    hs.subprotocols[i], hs.subprotocol_lens[i]);
		FUZZ_ASSERT(n2 == n + strlen("Sec-WebSocket-Protocol: \r\n") +
		    hs.subprotocol_lens[i]);
		FUZZ_ASSERT(strstr(out, "\r\n\r\n") == out + n2 - 4);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf;
	size_t len, head, max_headers;
	int status;

	if (size < 1)
		return 0;
	max_headers = 1 + data[0] % HTTP_REQ_HEADERS_MAX;
	buf = (const char *)data + 1;
	len = size - 1;

	head = http_req_head_end(buf, len);
	FUZZ_ASSERT(head <= len);
	if (head == 0)
		return 0;
	/* the head is the first one: no shorter prefix holds one */
	FUZZ_ASSERT(http_req_head_end(buf, head - 1) == 0);
	FUZZ_ASSERT(head >= 2 && buf[head - 1] == '\n');

	status = http_req_parse(&req, buf, head, max_headers);
	FUZZ_ASSERT(status == 0 || status == 400 || status == 431 ||
	    status == 505);
	if (status != 0) {
		static char out[512];

		FUZZ_ASSERT(handshake_response_error(out, sizeof(out), status,
		    handshake_status_text(status)) > 0);
		return 0;
	}
	check_request(buf, head, max_headers);
	/* what follows the head changes nothing */
	FUZZ_ASSERT(http_req_parse(&req, buf, len, max_headers) == 0);
	check_request(buf, head, max_headers);
	check_origins();
	check_handshake(buf, head);
	return 0;
}
