/*
 * http_static: serving plain files, the decisions (see http_static.h).
 *
 * The target is decoded in one pass that refuses as it goes, so that no
 * second pass can disagree with the first about what a segment was; the
 * output is only ever written, never read back, and its length is
 * counted past out_size so that a 400 further on still wins over 414.
 *
 * Dates are converted with days-from-civil arithmetic of our own rather
 * than gmtime_r and timegm: timegm quietly normalizes "31 Feb" into
 * March, and neither is needed for a calendar this plain.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "handshake.h"
#include "http_req.h"
#include "http_static.h"

#define HTTP_STATIC_OPEN_FLAGS \
	(O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
/* openat2 says EAGAIN when a rename raced a ".." in a symlink's target */
#define HTTP_STATIC_OPEN_TRIES	8
/* days from 0000-03-01 to 1970-01-01, and per 400 years */
#define HTTP_DATE_EPOCH_DAYS	719468
#define HTTP_DATE_ERA_DAYS	146097
/* 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z */
#define HTTP_DATE_MIN		(-62167219200LL)
#define HTTP_DATE_MAX		253402300799LL

/* A buffer that a response is appended to; len counts what did not fit. */
struct http_resp_buf {
	char *buf;
	size_t size;
	size_t len;
};

/* Set once openat2 said ENOSYS: from then on, walk (tests set it too). */
static bool http_static_walk_only;

static const char *const http_date_days[7] = {
	"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
};
static const char *const http_date_days_long[7] = {
	"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
	"Saturday"
};
static const char *const http_date_months[12] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
};

static const struct {
	const char *ext;
	const char *type;
} http_static_types[] = {
	{ "html", "text/html; charset=utf-8" },
	{ "htm", "text/html; charset=utf-8" },
	{ "css", "text/css; charset=utf-8" },
	{ "js", "text/javascript; charset=utf-8" },
	{ "mjs", "text/javascript; charset=utf-8" },
	{ "json", "application/json" },
	{ "map", "application/json" },
	{ "txt", "text/plain; charset=utf-8" },
	{ "xml", "application/xml" },
	{ "svg", "image/svg+xml" },
	{ "png", "image/png" },
	{ "jpg", "image/jpeg" },
	{ "jpeg", "image/jpeg" },
	{ "gif", "image/gif" },
	{ "webp", "image/webp" },
	{ "ico", "image/vnd.microsoft.icon" },
	{ "wasm", "application/wasm" },
	{ "pdf", "application/pdf" },
	{ "woff", "font/woff" },
	{ "woff2", "font/woff2" },
};

static int	http_static_hex(unsigned char);
static int	http_static_decode(const char **, const char *, const char **);
static bool	http_static_dots_only(const char *, size_t);
static bool	http_static_pchar(unsigned char);
static int	http_static_errno_status(int);
static int	http_static_openat2(int, const char *);
static int	http_static_open_walk(int, const char *);
static int	http_static_openat(int, const char *);
static bool	http_static_method_is(const struct http_req *, const char *);
static int	http_static_etag_list(const char *, size_t, const char *,
		    size_t, size_t *, bool *);
static int64_t	http_date_days_from_civil(int64_t, int, int);
static void	http_date_civil_from_days(int64_t, int64_t *, int *, int *);
static int	http_date_days_in_month(int64_t, int);
static int	http_date_digits(const char *, size_t);
static int	http_date_name(const char *, size_t, const char *const *,
		    size_t);
static int	http_date_hms(const char *, int *);
static int	http_date_make(int64_t, int, int, int, time_t *);
static int	http_date_parse_at(const char *, size_t, time_t, time_t *);
static bool	http_resp_field_ok(const char *);
static void	http_resp_add(struct http_resp_buf *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

static int
http_static_hex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * The byte at *p, percent-decoded, and move *p past it; or -1 with *why
 * set when it is refused whichever segment it is in.
 */
static int
http_static_decode(const char **p, const char *end, const char **why)
{
	const char *q = *p;
	int c = (unsigned char)*q, hi, lo;

	if (c != '%') {
		if (c <= 0x20 || c >= 0x7f) {
			*why = "a byte that must be percent-encoded";
			return -1;
		}
		*p = q + 1;
	} else {
		if (end - q < 3 ||
		    (hi = http_static_hex((unsigned char)q[1])) < 0 ||
		    (lo = http_static_hex((unsigned char)q[2])) < 0) {
			*why = "a bad percent escape";
			return -1;
		}
		c = hi << 4 | lo;
		*p = q + 3;
	}
	if (c == '/' && q[0] == '%')
		*why = "an encoded slash";
	else if (c == '\0')
		*why = "a NUL byte";
	else if (c < 0x20 || c == 0x7f)
		*why = "a control character";
	else if (c == '\\')
		*why = "a backslash";
	return *why != NULL ? -1 : c;
}

static bool
http_static_dots_only(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] != '.')
			return false;
	return true;
}

int
http_static_target(const char *path, size_t len, const char *prefix,
    size_t prefix_len, char *out, size_t out_size, const char **why)
{
	const char *p, *end, *dummy;
	size_t seg, start, o = 0;
	bool dots;
	int c;

	if (why == NULL)
		why = &dummy;
	*why = NULL;
	if (out_size > 0)
		out[0] = '\0';
	if (len == 0 || path[0] != '/') {
		*why = "not an origin-form path";
		return 400;
	}
	if (prefix_len > 0 && prefix[prefix_len - 1] == '/')
		prefix_len--;
	if (len < prefix_len || memcmp(path, prefix, prefix_len) != 0 ||
	    (len > prefix_len && path[prefix_len] != '/')) {
		*why = "not under the prefix";
		return 404;
	}
	if (len == prefix_len) {
		*why = "a directory without its trailing slash";
		return HTTP_STATIC_REDIRECT;
	}

	/* p is at a '/' each time round: one segment follows it */
	p = path + prefix_len;
	end = path + len;
	while (p < end) {
		p++;
		start = o;
		if (o > 0) {
			if (o < out_size)
				out[o] = '/';
			o++;
		}
		seg = o;
		dots = true;
		while (p < end && *p != '/') {
			if ((c = http_static_decode(&p, end, why)) == -1)
				goto refuse;
			if (c != '.')
				dots = false;
			if (o < out_size)
				out[o] = (char)c;
			o++;
		}
		if (o == seg) {
			o = start;	/* an empty segment: collapse it */
			continue;
		}
		if (dots) {
			*why = "a dot segment";
			goto refuse;
		}
	}
	if (o > 0 && end[-1] == '/') {
		if (o < out_size)
			out[o] = '/';
		o++;
	}
	if (o >= out_size) {
		if (out_size > 0)
			out[0] = '\0';
		*why = "the path is too long";
		return 414;
	}
	out[o] = '\0';
	return 0;

refuse:
	if (out_size > 0)
		out[0] = '\0';
	return 400;
}

int
http_static_prefix_check(const char *prefix, const char **why)
{
	const char *p, *seg;
	unsigned char c;

	if (prefix[0] != '/') {
		*why = "a prefix starts with '/'";
		return -1;
	}
	for (p = prefix; *p != '\0'; p++) {
		c = (unsigned char)*p;
		if (c <= 0x20 || c >= 0x7f || strchr("%?#\\", c) != NULL) {
			*why = "a prefix holds printable ASCII without "
			    "'%', '?', '#' or '\\'";
			return -1;
		}
	}
	for (p = prefix + 1; *p != '\0'; p++) {
		for (seg = p; *p != '\0' && *p != '/'; p++)
			;
		if (p == seg) {
			*why = "a prefix has no empty segment";
			return -1;
		}
		if (http_static_dots_only(seg, (size_t)(p - seg))) {
			*why = "a prefix has no \".\" or \"..\" segment";
			return -1;
		}
		if (*p == '\0')
			break;
	}
	return 0;
}

int
http_static_index_check(const char *index, const char **why)
{
	const char *p;
	unsigned char c;

	if (index[0] == '\0' || http_static_dots_only(index, strlen(index))) {
		*why = "an index is a file name";
		return -1;
	}
	for (p = index; *p != '\0'; p++) {
		c = (unsigned char)*p;
		if (c <= 0x20 || c >= 0x7f || c == '/' || c == '\\') {
			*why = "an index is one name of printable ASCII, "
			    "without '/' or '\\'";
			return -1;
		}
	}
	return 0;
}

/* RFC 3986 pchar and '/', less '%' (which always escapes here) and the
 * sub-delims a reader could take for more than a path byte. */
static bool
http_static_pchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z'))
		return true;
	return c != '\0' && strchr("-._~!$&'()*+,;=:@/", c) != NULL;
}

size_t
http_static_location(char *buf, size_t size, const char *prefix,
    size_t prefix_len, const char *rel, const char *query, size_t query_len)
{
	static const char hex[] = "0123456789ABCDEF";
	struct http_resp_buf b = { buf, size, 0 };
	size_t i;
	unsigned char c;

	if (prefix_len > 0 && prefix[prefix_len - 1] == '/')
		prefix_len--;
	if (prefix_len > INT_MAX || query_len > INT_MAX)
		return 0;
	for (i = 0; i < query_len; i++)
		if ((unsigned char)query[i] <= 0x20 ||
		    (unsigned char)query[i] >= 0x7f)
			return 0;
	http_resp_add(&b, "%.*s/", (int)prefix_len, prefix);
	while (*rel == '/')
		rel++;
	for (i = 0; rel[i] != '\0'; i++) {
		c = (unsigned char)rel[i];
		if (http_static_pchar(c))
			http_resp_add(&b, "%c", c);
		else
			http_resp_add(&b, "%%%c%c", hex[c >> 4], hex[c & 15]);
	}
	if (i > 0 && rel[i - 1] != '/')
		http_resp_add(&b, "/");
	if (query_len > 0)
		http_resp_add(&b, "?%.*s", (int)query_len, query);
	if (b.len >= size)
		return 0;
	return b.len;
}

const char *
http_static_mime(const char *name)
{
	const char *base, *dot;
	size_t i;

	base = strrchr(name, '/');
	base = base == NULL ? name : base + 1;
	dot = strrchr(base, '.');
	if (dot == NULL || dot == base)
		return "application/octet-stream";
	for (i = 0; i < sizeof(http_static_types) /
	    sizeof(http_static_types[0]); i++)
		if (http_req_name_eq(dot + 1, strlen(dot + 1),
		    http_static_types[i].ext))
			return http_static_types[i].type;
	return "application/octet-stream";
}

static int
http_static_errno_status(int err)
{
	switch (err) {
	case ENOENT:
	case ENOTDIR:
	case EXDEV:
	case ELOOP:
	case ENAMETOOLONG:
	case ENXIO:		/* a socket; a device without its driver */
	case ENODEV:
		return 404;
	case EACCES:
	case EPERM:
		return 403;
	case EMFILE:
	case ENFILE:
		return 503;
	default:
		return 500;
	}
}

static int
http_static_openat2(int dirfd, const char *path)
{
	struct open_how how;
	int fd, tries = 0;

	memset(&how, 0, sizeof(how));
	how.flags = HTTP_STATIC_OPEN_FLAGS;
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
	do
		fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
	while (fd == -1 && (errno == EAGAIN || errno == EINTR) &&
	    ++tries < HTTP_STATIC_OPEN_TRIES);
	return fd;
}

/*
 * Without openat2: one component at a time, each with O_NOFOLLOW, so that
 * a symlink anywhere fails (ELOOP, or ENOTDIR for a directory's).  The
 * directories on the way are opened with O_PATH, which needs only search
 * permission, as a path lookup does.
 */
static int
http_static_open_walk(int dirfd, const char *path)
{
	char name[NAME_MAX + 1];
	const char *p = path, *seg;
	size_t n;
	int cur = dirfd, next, err;
	bool last;

	if (*p == '/') {
		errno = EXDEV;
		return -1;
	}
	for (;;) {
		while (*p == '/')
			p++;
		for (seg = p; *p != '\0' && *p != '/'; p++)
			;
		n = (size_t)(p - seg);
		if (n == 0) {
			err = ENOENT;	/* "" */
			break;
		}
		if (n > NAME_MAX) {
			err = ENAMETOOLONG;
			break;
		}
		if (http_static_dots_only(seg, n)) {
			err = EXDEV;
			break;
		}
		memcpy(name, seg, n);
		name[n] = '\0';
		while (*p == '/')
			p++;
		last = *p == '\0';
		if (last)
			next = openat(cur, name, HTTP_STATIC_OPEN_FLAGS |
			    O_NOFOLLOW | (p > seg + n ? O_DIRECTORY : 0));
		else
			next = openat(cur, name, O_PATH | O_DIRECTORY |
			    O_NOFOLLOW | O_CLOEXEC);
		err = errno;
		if (cur != dirfd)
			close(cur);
		if (next == -1 || last) {
			errno = err;
			return next;
		}
		cur = next;
	}
	if (cur != dirfd)
		close(cur);
	errno = err;
	return -1;
}

static int
http_static_openat(int dirfd, const char *path)
{
	int fd;

	if (!http_static_walk_only) {
		fd = http_static_openat2(dirfd, path);
		if (fd != -1 || errno != ENOSYS)
			return fd;
		http_static_walk_only = true;
	}
	return http_static_open_walk(dirfd, path);
}

int
http_static_open(int dirfd, const char *rel, const char *index, int *fd,
    struct stat *st)
{
	char path[HTTP_STATIC_PATH_MAX + NAME_MAX + 1];
	size_t n = strlen(rel);
	bool dir_wanted;
	int f, n_out;

	*fd = -1;
	dir_wanted = n == 0 || rel[n - 1] == '/';
	if (dir_wanted) {
		if (index == NULL || index[0] == '\0')
			return 404;
		n_out = snprintf(path, sizeof(path), "%s%s", rel, index);
		if (n_out < 0 || (size_t)n_out >= sizeof(path))
			return 404;
		rel = path;
	}
	if ((f = http_static_openat(dirfd, rel)) == -1)
		return http_static_errno_status(errno);
	if (fstat(f, st) == -1) {
		close(f);
		return 500;
	}
	if (S_ISREG(st->st_mode)) {
		*fd = f;
		return 0;
	}
	close(f);
	if (S_ISDIR(st->st_mode) && !dir_wanted)
		return HTTP_STATIC_REDIRECT;
	return 404;
}

size_t
http_static_etag(const struct stat *st, char out[HTTP_STATIC_ETAG_SIZE])
{
	uint64_t ns;
	int n;

	ns = (uint64_t)st->st_mtim.tv_sec * 1000000000u +
	    (uint64_t)st->st_mtim.tv_nsec;
	n = snprintf(out, HTTP_STATIC_ETAG_SIZE, "\"%jx-%jx-%jx\"",
	    (uintmax_t)st->st_ino, (uintmax_t)(uint64_t)st->st_size,
	    (uintmax_t)ns);
	return n < 0 ? 0 : (size_t)n;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t
http_date_days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * HTTP_DATE_ERA_DAYS + doe - HTTP_DATE_EPOCH_DAYS;
}

static void
http_date_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	int64_t era, doe, yoe, doy, mp;

	z += HTTP_DATE_EPOCH_DAYS;
	era = (z >= 0 ? z : z - (HTTP_DATE_ERA_DAYS - 1)) / HTTP_DATE_ERA_DAYS;
	doe = z - era * HTTP_DATE_ERA_DAYS;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static int
http_date_days_in_month(int64_t y, int m)
{
	static const int days[12] = {
		31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
	};

	if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))
		return 29;
	return days[m - 1];
}

size_t
http_date_format(time_t t, char out[HTTP_DATE_SIZE])
{
	int64_t days, secs, y;
	int m, d, wday;

	out[0] = '\0';
	if ((int64_t)t < HTTP_DATE_MIN || (int64_t)t > HTTP_DATE_MAX)
		return 0;
	days = (int64_t)t / 86400;
	secs = (int64_t)t % 86400;
	if (secs < 0) {
		secs += 86400;
		days--;
	}
	http_date_civil_from_days(days, &y, &m, &d);
	/* 1970-01-01 was a Thursday */
	wday = (int)(((days % 7) + 11) % 7);
	snprintf(out, HTTP_DATE_SIZE, "%s, %02d %s %04d %02d:%02d:%02d GMT",
	    http_date_days[wday], d, http_date_months[m - 1], (int)y,
	    (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
	return 29;
}

/* The value of n decimal digits at s, or -1. */
static int
http_date_digits(const char *s, size_t n)
{
	size_t i;
	int v = 0;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* The index in names[0..n) of s[0..len), compared case-sensitively. */
static int
http_date_name(const char *s, size_t len, const char *const *names, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strlen(names[i]) == len && memcmp(s, names[i], len) == 0)
			return (int)i;
	return -1;
}

/* "hh:mm:ss" at s into seconds of the day (up to 86400 with a leap
 * second), or -1. */
static int
http_date_hms(const char *s, int *secs)
{
	int h, m, sec;

	if (s[2] != ':' || s[5] != ':' || (h = http_date_digits(s, 2)) < 0 ||
	    (m = http_date_digits(s + 3, 2)) < 0 ||
	    (sec = http_date_digits(s + 6, 2)) < 0 || h > 23 || m > 59 ||
	    sec > 60)
		return -1;
	*secs = h * 3600 + m * 60 + sec;
	return 0;
}

static int
http_date_make(int64_t y, int m, int d, int secs, time_t *out)
{
	if (m < 1 || m > 12 || d < 1 || d > http_date_days_in_month(y, m))
		return -1;
	*out = (time_t)(http_date_days_from_civil(y, m, d) * 86400 + secs);
	return 0;
}

/* http_date_parse, with now deciding the century of an rfc850-date. */
static int
http_date_parse_at(const char *s, size_t len, time_t now, time_t *out)
{
	const char *comma;
	int64_t y, now_y, now_days, now_secs, limit;
	int m, d, secs, now_m, now_d;

	if (len < 24)
		return -1;
	if (s[3] == ',') {
		/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
		if (len != 29 || http_date_name(s, 3, http_date_days, 7) < 0 ||
		    s[4] != ' ' || s[7] != ' ' || s[11] != ' ' ||
		    s[16] != ' ' || memcmp(s + 25, " GMT", 4) != 0 ||
		    (d = http_date_digits(s + 5, 2)) < 0 ||
		    (m = http_date_name(s + 8, 3, http_date_months, 12)) < 0 ||
		    (y = http_date_digits(s + 12, 4)) < 0 ||
		    http_date_hms(s + 17, &secs) == -1)
			return -1;
		return http_date_make(y, m + 1, d, secs, out);
	}
	if (s[3] == ' ') {
		/* asctime-date: "Sun Nov  6 08:49:37 1994" */
		if (len != 24 || http_date_name(s, 3, http_date_days, 7) < 0 ||
		    (m = http_date_name(s + 4, 3, http_date_months, 12)) < 0 ||
		    s[7] != ' ' || s[10] != ' ' || s[19] != ' ' ||
		    (d = s[8] == ' ' ? http_date_digits(s + 9, 1) :
		    http_date_digits(s + 8, 2)) < 0 ||
		    http_date_hms(s + 11, &secs) == -1 ||
		    (y = http_date_digits(s + 20, 4)) < 0)
			return -1;
		return http_date_make(y, m + 1, d, secs, out);
	}
	/* rfc850-date: "Sunday, 06-Nov-94 08:49:37 GMT" */
	if ((comma = memchr(s, ',', len)) == NULL ||
	    http_date_name(s, (size_t)(comma - s), http_date_days_long, 7) < 0)
		return -1;
	len -= (size_t)(comma - s);
	s = comma;
	if (len != 24 || s[1] != ' ' || s[4] != '-' || s[8] != '-' ||
	    s[11] != ' ' || memcmp(s + 20, " GMT", 4) != 0 ||
	    (d = http_date_digits(s + 2, 2)) < 0 ||
	    (m = http_date_name(s + 5, 3, http_date_months, 12)) < 0 ||
	    (y = http_date_digits(s + 9, 2)) < 0 ||
	    http_date_hms(s + 12, &secs) == -1)
		return -1;
	/*
	 * RFC 9110 5.6.7: a timestamp that appears to be more than 50 years
	 * in the future is in the century before.  50 years from 29 Feb is
	 * taken to be 1 Mar.
	 */
	if ((int64_t)now < HTTP_DATE_MIN || (int64_t)now > HTTP_DATE_MAX)
		now = 0;
	now_days = (int64_t)now / 86400;
	now_secs = (int64_t)now % 86400;
	if (now_secs < 0) {
		now_secs += 86400;
		now_days--;
	}
	http_date_civil_from_days(now_days, &now_y, &now_m, &now_d);
	limit = http_date_days_from_civil(now_y + 50, now_m, now_d) * 86400 +
	    now_secs;
	y += now_y - now_y % 100;
	if (http_date_make(y, m + 1, d, secs, out) == -1)
		return -1;
	if ((int64_t)*out <= limit)
		return 0;
	if (y < 100)
		return -1;
	return http_date_make(y - 100, m + 1, d, secs, out);
}

int
http_date_parse(const char *s, size_t len, time_t *out)
{
	return http_date_parse_at(s, len, time(NULL), out);
}

/*
 * Walk an If-None-Match list: count its members in *n, note a "*" in
 * *star, and return 1 when one of its entity-tags matches etag[0..len)
 * by the weak comparison, 0 when none does, -1 when it is malformed.
 * entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc may be a comma, so
 * http_req_next_element can not split this list.
 */
static int
http_static_etag_list(const char *v, size_t v_len, const char *etag,
    size_t len, size_t *n, bool *star)
{
	const char *p = v, *end = v + v_len, *tag;
	int match = 0;
	unsigned char c;

	for (;;) {
		while (p < end && (*p == ',' || *p == ' ' || *p == '\t'))
			p++;
		if (p == end)
			return match;
		(*n)++;
		if (*p == '*') {
			*star = true;
			p++;
		} else {
			if (end - p >= 2 && p[0] == 'W' && p[1] == '/')
				p += 2;
			if (p == end || *p != '"')
				return -1;
			tag = p++;
			while (p < end && *p != '"') {
				c = (unsigned char)*p++;
				if (c < 0x21 || c == 0x7f)
					return -1;
			}
			if (p == end)
				return -1;
			p++;
			if (etag != NULL && (size_t)(p - tag) == len &&
			    memcmp(tag, etag, len) == 0)
				match = 1;
		}
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p < end && *p != ',')
			return -1;
	}
}

static bool
http_static_method_is(const struct http_req *req, const char *method)
{
	return req->method != NULL && req->method_len == strlen(method) &&
	    memcmp(req->method, method, req->method_len) == 0;
}

bool
http_static_not_modified(const struct http_req *req, const char *etag,
    time_t mtime)
{
	const struct http_req_header *h;
	const char *tag = etag;
	size_t i, n = 0, len = 0;
	bool star = false, match = false;
	time_t since;
	int r;

	if (!http_static_method_is(req, "GET") &&
	    !http_static_method_is(req, "HEAD"))
		return false;
	if (tag != NULL) {
		if (strncmp(tag, "W/", 2) == 0)
			tag += 2;
		len = strlen(tag);
	}
	if (http_req_header_count(req, "If-None-Match") > 0) {
		for (i = 0; i < req->n_headers; i++) {
			h = &req->headers[i];
			if (!http_req_name_eq(h->name, h->name_len,
			    "If-None-Match"))
				continue;
			r = http_static_etag_list(h->value, h->value_len, tag,
			    len, &n, &star);
			if (r == -1)
				return false;
			if (r == 1)
				match = true;
		}
		if (star)
			return n == 1;
		return match;
	}
	if (http_req_header_count(req, "If-Modified-Since") != 1)
		return false;
	h = http_req_header(req, "If-Modified-Since");
	if (http_date_parse(h->value, h->value_len, &since) == -1)
		return false;
	return mtime <= since;
}

int
http_static_method(const struct http_req *req, bool *head)
{
	bool is_head = http_static_method_is(req, "HEAD");

	if (head != NULL)
		*head = is_head;
	if (is_head || http_static_method_is(req, "GET"))
		return 0;
	return 405;
}

bool
http_static_keep_alive(const struct http_req *req)
{
	const struct http_req_header *h;
	size_t i;

	if (http_req_header_has_token(req, "Connection", "close"))
		return false;
	if (req->version_minor == 0 &&
	    !http_req_header_has_token(req, "Connection", "keep-alive"))
		return false;
	if (http_req_header(req, "Transfer-Encoding") != NULL)
		return false;
	if (http_req_header_count(req, "Content-Length") > 1)
		return false;
	if ((h = http_req_header(req, "Content-Length")) != NULL) {
		if (h->value_len == 0)
			return false;
		for (i = 0; i < h->value_len; i++)
			if (h->value[i] != '0')
				return false;
	}
	return true;
}

/* No control character, so no field can end early or start another. */
static bool
http_resp_field_ok(const char *v)
{
	for (; *v != '\0'; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return false;
	return true;
}

static void
http_resp_add(struct http_resp_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(b->len < b->size ? b->buf + b->len : NULL,
	    b->len < b->size ? b->size - b->len : 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		b->len = SIZE_MAX / 2;	/* cannot fit */
	else
		b->len += (size_t)n;
}

size_t
http_resp_head(char *buf, size_t size, const struct http_resp *r)
{
	struct http_resp_buf b = { buf, size, 0 };
	char date[HTTP_DATE_SIZE], modified[HTTP_DATE_SIZE];
	int st = r->status;

	if (size > 0)
		buf[0] = '\0';
	if (st < 200 || st > 599 || http_date_format(r->date, date) == 0)
		return 0;
	if ((r->content_type != NULL && !http_resp_field_ok(r->content_type)) ||
	    (r->etag != NULL && !http_resp_field_ok(r->etag)) ||
	    (r->location != NULL && !http_resp_field_ok(r->location)))
		return 0;

	http_resp_add(&b, "HTTP/1.1 %d %s\r\n", st, handshake_status_text(st));
	http_resp_add(&b, "Date: %s\r\n", date);
	http_resp_add(&b, "Server: gatewayd\r\n");
	if (st != 304) {
		if (r->content_type != NULL)
			http_resp_add(&b, "Content-Type: %s\r\n",
			    r->content_type);
		http_resp_add(&b, "Content-Length: %ju\r\n",
		    (uintmax_t)r->content_length);
	}
	if (r->last_modified != 0 && http_date_format(r->last_modified >
	    r->date ? r->date : r->last_modified, modified) != 0)
		http_resp_add(&b, "Last-Modified: %s\r\n", modified);
	if (r->etag != NULL)
		http_resp_add(&b, "ETag: %s\r\n", r->etag);
	if (st == 200)
		http_resp_add(&b, "Accept-Ranges: none\r\n");
	if (st == 200 || st == 304)
		http_resp_add(&b, "Cache-Control: no-cache\r\n");
	if (st != 304)
		http_resp_add(&b, "X-Content-Type-Options: nosniff\r\n");
	if (st == 405)
		http_resp_add(&b, "Allow: GET, HEAD\r\n");
	if (st >= 300 && st <= 399 && r->location != NULL)
		http_resp_add(&b, "Location: %s\r\n", r->location);
	if (r->keep_alive) {
		http_resp_add(&b, "Connection: keep-alive\r\n");
		if (r->keep_alive_timeout > 0)
			http_resp_add(&b, "Keep-Alive: timeout=%u, max=%u\r\n",
			    r->keep_alive_timeout, r->keep_alive_max);
	} else
		http_resp_add(&b, "Connection: close\r\n");
	http_resp_add(&b, "\r\n");
	if (b.len >= size) {
		if (size > 0)
			buf[0] = '\0';
		return 0;
	}
	return b.len;
}

size_t
http_resp_error(char *buf, size_t size, const struct http_resp *r, bool head)
{
	struct http_resp e = *r;
	const char *body;
	size_t n, body_len;

	if (e.status < 300 || e.status > 599 || e.status == 304)
		e.status = 500;
	body = r->body != NULL ? r->body : handshake_status_text(e.status);
	body_len = strlen(body);
	e.content_type = "text/plain; charset=utf-8";
	e.content_length = body_len + 1;
	e.last_modified = 0;
	e.etag = NULL;
	if ((n = http_resp_head(buf, size, &e)) == 0)
		return 0;
	if (head)
		return n;
	if (size - n <= body_len + 1) {
		buf[0] = '\0';
		return 0;
	}
	memcpy(buf + n, body, body_len);
	buf[n + body_len] = '\n';
	buf[n + body_len + 1] = '\0';
	return n + body_len + 1;
}
