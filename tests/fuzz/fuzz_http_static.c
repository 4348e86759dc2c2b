/*
 * libFuzzer target for http_static.
 *
 * Input: one byte that picks the prefix (its low two bits) and the size of
 * a second, small output buffer (the others: 1..63 bytes), then bytes that
 * are used as a request path, as a configured prefix, as an HTTP-date,
 * and as a request head.
 *
 * A mapped path never holds a dot segment, NUL, control or backslash,
 * never starts with '/' nor holds "//", and always fits; a smaller buffer
 * changes nothing but 0 into 414; the Location of a path maps back to the
 * same path.  Dates round-trip through the formatter and the parser.
 * Response heads always fit the buffer they say they fit, and end where
 * their first empty line is.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handshake.h"
#include "http_req.h"
#include "http_static.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: assertion failed: %s\n", \
		    __FILE__, __LINE__, #cond); \
		abort(); \
	} \
} while (0)

#define HTTP_DATE_MAX 253402300799LL

static const char *const prefixes[4] = { "/", "/static", "/static/", "/a/b" };

static char out[HTTP_STATIC_PATH_MAX], small[64], again[HTTP_STATIC_PATH_MAX];
static char loc[3 * HTTP_STATIC_PATH_MAX + 64];
static struct http_req req;

/* What a mapped path may be. */
static void
check_mapped(const char *p, size_t n, const char *path, size_t len)
{
	const char *seg, *end = p + n;
	size_t i;
	unsigned char c;

	FUZZ_ASSERT(n <= len);
	FUZZ_ASSERT(n == 0 || p[0] != '/');
	FUZZ_ASSERT(strstr(p, "//") == NULL);
	FUZZ_ASSERT((n > 0 && p[n - 1] == '/') <= (path[len - 1] == '/'));
	for (i = 0; i < n; i++) {
		c = (unsigned char)p[i];
		FUZZ_ASSERT(c >= 0x20 && c != 0x7f && c != '\\');
	}
	for (seg = p; seg < end; ) {
		const char *e = memchr(seg, '/', (size_t)(end - seg));
		size_t k, seg_len;
		int dots = 1;

		if (e == NULL)
			e = end;
		seg_len = (size_t)(e - seg);
		FUZZ_ASSERT(seg_len > 0);
		for (k = 0; k < seg_len; k++)
			if (seg[k] != '.')
				dots = 0;
		FUZZ_ASSERT(!dots);
		seg = e + 1;
	}
}

static void
check_target(const char *path, size_t len, const char *prefix,
    size_t small_size)
{
	const char *why = "unset", *why2;
	size_t n, ln;
	int st, st2;

	st = http_static_target(path, len, prefix, strlen(prefix), out,
	    sizeof(out), &why);
	FUZZ_ASSERT(st == 0 || st == 301 || st == 400 || st == 404 ||
	    st == 414);
	FUZZ_ASSERT((why == NULL) == (st == 0));
	n = strlen(out);
	if (st != 0) {
		FUZZ_ASSERT(n == 0);
	} else {
		FUZZ_ASSERT(n < sizeof(out));
		check_mapped(out, n, path, len);
	}

	/* a smaller buffer: the same answer, or 414 for one that fits no
	 * more */
	memset(small, 'x', sizeof(small));
	st2 = http_static_target(path, len, prefix, strlen(prefix), small,
	    small_size, &why2);
	if (st == 0 && n >= small_size) {
		FUZZ_ASSERT(st2 == 414);
		FUZZ_ASSERT(small[0] == '\0');
	} else {
		FUZZ_ASSERT(st2 == st);
		if (st == 0)
			FUZZ_ASSERT(strcmp(small, out) == 0);
		else
			FUZZ_ASSERT(small[0] == '\0');
	}

	/* the slash form's Location maps back to the same directory */
	if (st != 0 && st != 301)
		return;
	ln = http_static_location(loc, sizeof(loc), prefix, strlen(prefix),
	    out, "q=1", 3);
	FUZZ_ASSERT(ln > 0 && ln == strlen(loc));
	FUZZ_ASSERT(loc[0] == '/' && loc[1] != '/');
	FUZZ_ASSERT(ln >= 5 && memcmp(loc + ln - 5, "/?q=1", 5) == 0);
	ln -= 4;
	st2 = http_static_target(loc, ln, prefix, strlen(prefix), again,
	    sizeof(again), &why2);
	if (st2 == 414)
		return;
	FUZZ_ASSERT(st2 == 0);
	if (n == 0 || out[n - 1] == '/')
		FUZZ_ASSERT(strcmp(again, out) == 0);
	else
		FUZZ_ASSERT(strlen(again) == n + 1 &&
		    memcmp(again, out, n) == 0 && again[n] == '/');
}

/* A prefix that checks out takes the paths under it. */
static void
check_prefix(const uint8_t *data, size_t size)
{
	char prefix[128], path[160];
	const char *why;
	size_t n, plen;

	n = size < sizeof(prefix) - 1 ? size : sizeof(prefix) - 1;
	memcpy(prefix, data, n);
	prefix[n] = '\0';
	if (http_static_prefix_check(prefix, &why) == -1)
		return;
	plen = strlen(prefix);
	if (prefix[plen - 1] == '/')
		plen--;
	snprintf(path, sizeof(path), "%.*s/x", (int)plen, prefix);
	FUZZ_ASSERT(http_static_target(path, strlen(path), prefix,
	    strlen(prefix), out, sizeof(out), &why) == 0);
	FUZZ_ASSERT(strcmp(out, "x") == 0);
	FUZZ_ASSERT(http_static_target(path, plen, prefix, strlen(prefix),
	    out, sizeof(out), &why) == (plen == 0 ? 400 : 301));
}

static void
check_dates(const uint8_t *data, size_t size)
{
	char d[HTTP_DATE_SIZE];
	time_t t, back;
	int64_t v;

	if (http_date_parse((const char *)data, size, &t) == 0) {
		if (http_date_format(t, d) == 0) {
			/* 9999-12-31T23:59:60 is in year 10000 */
			FUZZ_ASSERT((int64_t)t == HTTP_DATE_MAX + 1);
		} else {
			FUZZ_ASSERT(strlen(d) == 29);
			FUZZ_ASSERT(http_date_parse(d, 29, &back) == 0);
			FUZZ_ASSERT(back == t);
		}
	}
	if (size >= 8) {
		memcpy(&v, data, 8);
		/* half the time, a time in range */
		if (v & 1)
			v %= HTTP_DATE_MAX;
		if (http_date_format((time_t)v, d) == 29) {
			FUZZ_ASSERT(strlen(d) == 29);
			FUZZ_ASSERT(http_date_parse(d, 29, &back) == 0);
			FUZZ_ASSERT((int64_t)back == v);
		} else {
			FUZZ_ASSERT(d[0] == '\0');
			FUZZ_ASSERT(v < -62167219200LL || v > HTTP_DATE_MAX);
		}
	}
}

static void
check_head(const char *buf, size_t n, size_t size)
{
	const char *end;

	FUZZ_ASSERT(n < size && buf[n] == '\0');
	FUZZ_ASSERT(memcmp(buf, "HTTP/1.1 ", 9) == 0);
	end = strstr(buf, "\r\n\r\n");
	FUZZ_ASSERT(end != NULL && (size_t)(end - buf) + 4 <= n);
}

static void
check_request(const uint8_t *data, size_t size)
{
	static char buf[2048];
	static const char *const tags[] = { NULL, "\"1-2-3\"", "W/\"x\"" };
	const char *head = (const char *)data;
	struct http_resp r;
	size_t len, n, i;
	bool is_head;
	int st;

	len = http_req_head_end(head, size);
	if (len == 0 || http_req_parse(&req, head, len, 64) != 0)
		return;
	st = http_static_method(&req, &is_head);
	FUZZ_ASSERT(st == 0 || st == 405);
	(void)http_static_keep_alive(&req);
	for (i = 0; i < 3; i++)
		if (http_static_not_modified(&req, tags[i], 784111777))
			FUZZ_ASSERT(st == 0);

	memset(&r, 0, sizeof(r));
	r.status = st == 0 ? 200 : 405;
	r.date = 784111777;
	r.keep_alive = http_static_keep_alive(&req);
	r.keep_alive_timeout = 5;
	r.keep_alive_max = 100;
	n = req.path_len < sizeof(small) ? req.path_len : sizeof(small) - 1;
	memcpy(small, req.path, n);
	small[n] = '\0';
	r.content_type = http_static_mime(small);
	r.etag = "\"1-2-3\"";
	r.last_modified = 784111000;
	n = http_resp_head(buf, sizeof(buf), &r);
	FUZZ_ASSERT(n > 0 && n < HTTP_RESP_HEAD_MAX);
	check_head(buf, n, sizeof(buf));
	FUZZ_ASSERT(strstr(buf, "\r\n\r\n") == buf + n - 4);
	FUZZ_ASSERT(http_resp_head(buf, n, &r) == 0);

	/* the query as a Location, when it can be one */
	r.status = 301;
	r.location = loc;
	if (http_static_location(loc, sizeof(loc), "/", 1, "d", req.query,
	    req.query_len) == 0)
		r.location = NULL;
	n = http_resp_error(buf, sizeof(buf), &r, is_head);
	FUZZ_ASSERT(n > 0 || r.location != NULL);
	if (n > 0)
		check_head(buf, n, sizeof(buf));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[65536];
	size_t small_size;

	if (size < 2 || size - 1 > sizeof(path))
		return 0;
	small_size = (size_t)(data[0] >> 2);
	if (small_size == 0)
		small_size = 1;
	memcpy(path, data + 1, size - 1);
	check_target(path, size - 1, prefixes[data[0] & 3], small_size);
	check_prefix(data + 1, size - 1);
	check_dates(data + 1, size - 1);
	check_request(data + 1, size - 1);
	return 0;
}
