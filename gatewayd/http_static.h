/*
 * http_static: the decisions of serving plain files over HTTP/1.1 on the
 * gateway's port, from a directory mapped to a URL prefix.
 *
 * No libevent: the connection layer reads the request and writes the
 * response; this module maps the request target to a file, opens it
 * without ever leaving the directory, evaluates the validators and writes
 * the response head.  http_static_open is the only function that makes
 * system calls.  For one GET or HEAD request the connection layer does:
 *
 *   http_static_method         405 (with Allow) for any other method
 *   http_static_target         per prefix: 404 means "not this prefix"
 *   http_static_open           beneath the prefix's directory fd
 *   http_static_not_modified   304 when the client's copy is current
 *   http_resp_head             then the file (none for HEAD or 304)
 *   http_resp_error            for every other status, 301 included,
 *                              with the Location of http_static_location
 *   http_static_keep_alive     whether the connection may stay open
 *
 * Decisions made here:
 *   - The prefix is compared with the path as sent, byte for byte, before
 *     any decoding: "/st%61tic/a" is not under "/static".
 *   - Empty segments collapse, as nginx's merge_slashes does: "//a///b"
 *     is "a/b".  The result never starts with '/' and is relative.
 *   - A directory named without its trailing slash is answered with 301
 *     to the slash form (http_static_target for the prefix itself,
 *     http_static_open for the others), so that relative links in its
 *     index resolve inside it, as nginx and Apache do.  The Location is
 *     rebuilt from the decoded path, never copied from the request, so
 *     "//evil.example" can not become a redirect to another host.
 *   - A directory serves its index file; without one it is 404: there
 *     are no listings.
 *   - Only regular files are served.  A FIFO, socket or device is 404;
 *     the open is non-blocking, so a FIFO never stalls the loop.
 *   - Names that begin with a dot (".well-known", ".git") are served like
 *     any other: keep only public files in a served directory.
 *   - No ranges: "Accept-Ranges: none", and a Range header is ignored
 *     (RFC 9110 14.2 lets a server send the whole 200 instead).
 *   - "Cache-Control: no-cache": caches keep the file but ask every time;
 *     the answer is a 304 without content while the file is unchanged.
 *     The files of a directory change in place on every deployment under
 *     the same names, so a max-age would serve stale copies.
 *   - If-Match and If-Unmodified-Since are ignored: they guard
 *     state-changing methods and ranges, and neither exists here.
 */
#ifndef GATEWAYD_HTTP_STATIC_H
#define GATEWAYD_HTTP_STATIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "http_req.h"

/* The size of an out buffer for http_static_target that takes any path
 * the kernel can open (PATH_MAX); longer is 414. */
#define HTTP_STATIC_PATH_MAX 4096
/* "301": a directory named without its trailing slash. */
#define HTTP_STATIC_REDIRECT 301
/* An ETag: two quotes, three 16-digit hex numbers, two dashes, a NUL. */
#define HTTP_STATIC_ETAG_SIZE 56
/* An IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT", and its NUL. */
#define HTTP_DATE_SIZE 30
/* The longest head http_resp_head writes, without its Location. */
#define HTTP_RESP_HEAD_MAX 640

/*
 * Map the request path path[0..len) (http_req's path: origin-form, before
 * any '?') to a path relative to the directory mapped to prefix
 * (prefix[0..prefix_len), such as "/static" or "/static/", or "/" for
 * everything; see http_static_prefix_check).  Returns:
 *   0    out holds the NUL-terminated relative path: "" for the directory
 *        itself, "a/b.css" for a file, "a/b/" (the trailing slash kept)
 *        for a directory named with one
 *   301  path is the prefix without its trailing slash ("/static"): out
 *        is "", redirect to the slash form
 *   404  path is not under prefix
 *   400  path is unsafe or malformed
 *   414  path is fine but out_size can not hold it and its NUL
 * and sets *why (when why is not NULL) to a short reason, or to NULL on 0.
 * On any status but 0, out is "" (when out_size is not 0).  A 400
 * outranks a 414, so only out_size decides between 0 and 414.
 *
 * Each segment is percent-decoded once (%XX, hex digits in either case).
 * Refused with 400, so that no spelling of these reaches the file system:
 *   - a path that does not start with '/' (absolute-form, authority-form,
 *     "*": http_req refuses them already)
 *   - a '%' not followed by two hex digits: "%", "%2", "%zz", "%%2e"
 *   - a byte outside printable ASCII as sent (' ', controls, 0x7f, 8-bit):
 *     it must be percent-encoded
 *   - a '/' that came from %2f or %2F: "..%2fetc", "a%2Fb"
 *   - a backslash, sent or decoded: "..\", "%5c..", "%5C"
 *   - NUL and control characters, decoded: "%00", "%0a", "%0D", "%7f"
 *   - a segment made only of dots, as sent, decoded or mixed: ".", "..",
 *     "...", "%2e", "%2e%2e", ".%2e", "%2E.", "%2e%2E%2e"
 * Accepted as harmless literals: "%252e%252e" decodes (once) to the name
 * "%2e%2e", which is not a dot segment and is looked up as those six
 * bytes; names that contain dots besides other bytes ("..a", "a..",
 * ".hidden"); decoded spaces, '%', and bytes 0x80-0xff (UTF-8 names).
 */
int http_static_target(const char *path, size_t len, const char *prefix,
    size_t prefix_len, char *out, size_t out_size, const char **why);

/*
 * Check a configured prefix (NUL-terminated): it starts with '/', holds
 * printable ASCII without '%', '?', '#' or '\', no empty segment but an
 * optional trailing slash, no segment made only of dots.  0, or -1 with
 * *why set.
 */
int http_static_prefix_check(const char *prefix, const char **why);

/* Check a configured index file name: one segment of printable ASCII
 * without '/' or '\', not made only of dots.  0, or -1 with *why set. */
int http_static_index_check(const char *index, const char **why);

/*
 * Write into buf the Location of the slash form of a directory: prefix
 * (its trailing slash dropped), '/', rel percent-encoded where it is not
 * a path character, a trailing '/', then '?' and query when query_len is
 * not 0.  It always starts with exactly one '/'.  Returns the length
 * (NUL-terminated), or 0 when it does not fit or query holds a byte
 * outside printable ASCII.
 */
size_t http_static_location(char *buf, size_t size, const char *prefix,
    size_t prefix_len, const char *rel, const char *query, size_t query_len);

/*
 * The Content-Type for a file name (the part after the last '/' counts;
 * its extension after the last '.' that does not start it), case
 * insensitive; "application/octet-stream" for any other.  For a directory
 * ("" or "a/"), ask with the index file's name.
 */
const char *http_static_mime(const char *name);

/*
 * Open rel (as http_static_target made it) beneath the directory dirfd:
 * with openat2(2), RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS, so that
 * relative symlinks that stay inside are followed and any that lead out,
 * absolute ones included, fail; on a kernel without openat2 (ENOSYS), by
 * opening one component at a time with O_NOFOLLOW, which refuses every
 * symlink.  "" or a path ending in '/' opens its index file (a single
 * name; NULL or "" for none).  Returns:
 *   0    *fd is a regular file, O_RDONLY | O_CLOEXEC | O_NONBLOCK (which
 *        changes nothing for reading one), and *st its fstat; the caller
 *        closes *fd
 *   301  rel is a directory without its trailing slash
 *   404  missing, not a regular file (a directory's index included), a
 *        directory without an index, a symlink that leaves (ENOENT,
 *        ENOTDIR, EXDEV, ELOOP, ENAMETOOLONG, ENXIO, ENODEV alike: which
 *        one is not told)
 *   403  permission denied (EACCES, EPERM)
 *   503  out of descriptors (EMFILE, ENFILE): worth retrying
 *   500  anything else
 * On any status but 0, *fd is -1 and *st unspecified.
 */
int http_static_open(int dirfd, const char *rel, const char *index, int *fd,
    struct stat *st);

/* Write a strong ETag, '"' ino '-' size '-' mtime in ns '"' (in hex), into
 * out; returns its length. */
size_t http_static_etag(const struct stat *st,
    char out[HTTP_STATIC_ETAG_SIZE]);

/* Write t as an IMF-fixdate into out; returns 29, or 0 (and "") when its
 * year is outside 0000..9999. */
size_t http_date_format(time_t t, char out[HTTP_DATE_SIZE]);

/*
 * Parse s[0..len) as an HTTP-date (RFC 9110 5.6.7): IMF-fixdate
 * ("Sun, 06 Nov 1994 08:49:37 GMT") or one of the obsolete forms,
 * rfc850-date ("Sunday, 06-Nov-94 08:49:37 GMT", its two-digit year taken
 * in the century that puts the date at most 50 years after now: the
 * only call that reads the clock) and asctime-date ("Sun Nov  6 08:49:37 1994").  Names are
 * case-sensitive, as the grammar says; the day name must be one but need
 * not be the date's; the day must exist in its month; a second of 60 (a
 * leap second) is the next minute's first.  0 with *out set, or -1.
 */
int http_date_parse(const char *s, size_t len, time_t *out);

/*
 * Whether to answer a GET or HEAD with 304 (RFC 9110 13.2.2), for the
 * representation whose strong ETag is etag (NULL: none) and whose
 * modification time is mtime:
 *   - If-None-Match, when present (all its fields as one list), decides
 *     alone: true when "*" is its only member or one of its entity-tags
 *     equals etag by the weak comparison (W/ ignored).  A malformed list
 *     is false: a 200 is always a safe answer.
 *   - Otherwise one If-Modified-Since that is a valid HTTP-date: true when
 *     mtime (to the second) is not later.  Several of them, or an invalid
 *     one, are ignored.
 * False for any other method.
 */
bool http_static_not_modified(const struct http_req *req, const char *etag,
    time_t mtime);

/* 0 for GET and HEAD (*head, when not NULL, tells which), else 405: the
 * method token is case-sensitive, so "get" is 405 too. */
int http_static_method(const struct http_req *req, bool *head);

/*
 * Whether the connection may carry another request after this one: not
 * when the client sent "Connection: close", not for HTTP/1.0 without
 * "Connection: keep-alive", and not when the request announces content
 * (Transfer-Encoding, or a Content-Length other than 0), which nothing
 * here reads.  After a head http_req_parse refused, always close.
 */
bool http_static_keep_alive(const struct http_req *req);

/* What http_resp_head writes.  Zero fields are left out. */
struct http_resp {
	int status;			/* 200..599 */
	time_t date;			/* now */
	const char *content_type;	/* NULL: none */
	uint64_t content_length;	/* always sent, but with 304 */
	time_t last_modified;		/* 0: none; sent as at most date */
	const char *etag;		/* NULL: none */
	const char *location;		/* 3xx only; NULL: none */
	const char *body;		/* http_resp_error; NULL: the reason */
	bool keep_alive;		/* Connection: keep-alive, else close */
	unsigned keep_alive_timeout;	/* seconds: Keep-Alive when not 0 */
	unsigned keep_alive_max;	/* requests left, in Keep-Alive */
};

/*
 * Write the response head (status line, fields, empty line) for r into
 * buf, NUL-terminated.  Fields, in this order: Date, Server, Content-Type,
 * Content-Length, Last-Modified, ETag, Accept-Ranges (200), Cache-Control
 * (200, 304), X-Content-Type-Options (all but 304), Allow (405), Location
 * (3xx), Connection, Keep-Alive.  A 304 has neither Content-Type nor
 * Content-Length.  Returns the length, or 0 when it does not fit, when
 * the status is outside 200..599, r->date outside years 0..9999, or a
 * field value holds a control character.
 */
size_t http_resp_head(char *buf, size_t size, const struct http_resp *r);

/*
 * Write a whole response with a short text/plain body: r->body (NULL: the
 * reason phrase) and a newline; without the body for a HEAD request.
 * Meant for 301 and the errors (400, 403, 404, 405, 414, 500, 503, ...);
 * r's content fields and validators are ignored, and a status outside
 * 300..599, or 304, is sent as 500.  Returns the length, or 0.
 */
size_t http_resp_error(char *buf, size_t size, const struct http_resp *r,
    bool head);

#endif
