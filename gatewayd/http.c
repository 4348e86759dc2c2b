/*
 * http: plain HTTP requests on the WebSocket listeners: static files.
 *
 * A request that is not a WebSocket upgrade comes here.  Under a
 * [static PREFIX] mapping (or static_dir), GET and HEAD get the file
 * (http_static decides everything: the path, the validators, the
 * response head); the file itself is sent by the client with sendfile,
 * so a large one costs no memory.  A path of no mapping, or one whose
 * file does not exist but that names a resource, goes on to the
 * handshake, which answers 426 (or 404 when nothing is there) as a
 * gateway without files would.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gatewayd.h"
#include "http_static.h"
#include "log.h"

#define HTTP_INDEX "index.html"

int
http_open_statics(const struct cfg *cfg, int *fds)
{
	size_t i;

	for (i = 0; i < cfg->n_statics; i++) {
		fds[i] = open(cfg->statics[i].dir,
		    O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (fds[i] == -1) {
			log_error("%s:%d: static directory '%s': %s", cfg->file,
			    cfg->statics[i].line, cfg->statics[i].dir,
			    strerror(errno));
			while (i-- > 0)
				close(fds[i]);
			return -1;
		}
	}
	return 0;
}

/* Answer with a short response of status (an error, 301, 405), kept
 * alive when keep_alive. */
static void
http_answer(struct client *c, const struct http_req *req, int status,
    const char *location, bool head, bool keep_alive)
{
	char buf[HTTP_RESP_HEAD_MAX + HTTP_STATIC_PATH_MAX * 3 + 64];
	struct http_resp r;
	size_t n;

	memset(&r, 0, sizeof(r));
	r.status = status;
	r.date = time(NULL);
	r.location = location;
	r.keep_alive = keep_alive;
	r.keep_alive_timeout = (unsigned)(server.cfg->keepalive_timeout_ms /
	    1000);
	r.keep_alive_max = client_http_requests_left(c);
	n = http_resp_error(buf, sizeof(buf), &r, head);
	if (n == 0) {
		r.location = NULL;
		r.status = 500;
		r.keep_alive = false;
		n = http_resp_error(buf, sizeof(buf), &r, head);
	}
	log_debug("%s: %d for %.*s", c->name, r.status, (int)req->path_len,
	    req->path);
	client_respond(c, buf, n, -1, 0, r.keep_alive);
}

/*
 * What RFC 9112 asks of every request a server answers, beyond what
 * http_req checks: exactly one Host in HTTP/1.1 (at most one in 1.0),
 * and Content-Length fields that are numbers and agree (3.2, 6.3).
 */
static bool
http_head_valid(const struct http_req *req)
{
	const struct http_req_header *h, *first = NULL;
	size_t hosts = http_req_header_count(req, "host"), i, k;

	if (hosts > 1 || (hosts == 0 && req->version_minor >= 1))
		return false;
	for (i = 0; i < req->n_headers; i++) {
		h = &req->headers[i];
		if (!http_req_name_eq(h->name, h->name_len, "content-length"))
			continue;
		if (h->value_len == 0)
			return false;
		for (k = 0; k < h->value_len; k++)
			if (h->value[k] < '0' || h->value[k] > '9')
				return false;
		if (first != NULL && (first->value_len != h->value_len ||
		    memcmp(first->value, h->value, h->value_len) != 0))
			return false;
		first = h;
	}
	return true;
}

bool
http_serve(struct client *c, const struct http_req *req)
{
	const struct cfg *cfg = server.cfg;
	const struct cfg_static *st;
	char rel[HTTP_STATIC_PATH_MAX], etag[HTTP_STATIC_ETAG_SIZE];
	char loc[HTTP_STATIC_PATH_MAX * 3 + 64];
	char buf[HTTP_RESP_HEAD_MAX];
	struct http_resp r;
	struct stat sb;
	bool head, keep;
	int status, fd = -1;
	size_t n, prefix_len;

	st = cfg_match_static(cfg, req->path, req->path_len);
	if (st == NULL)
		return false;
	keep = http_static_keep_alive(req) && client_http_requests_left(c) > 0;
	if (!http_head_valid(req)) {
		http_answer(c, req, 400, NULL, false, false);
		return true;
	}
	if (http_static_method(req, &head) != 0) {
		http_answer(c, req, 405, NULL, false, keep);
		return true;
	}
	prefix_len = strlen(st->prefix);
	status = http_static_target(req->path, req->path_len, st->prefix,
	    prefix_len, rel, sizeof(rel), NULL);
	if (status == 0)
		status = http_static_open(server.static_fds[st - cfg->statics],
		    rel, HTTP_INDEX, &fd, &sb);
	/* No file: a resource's path is the handshake's to answer. */
	if (status == 404 && cfg_match(cfg, req->path, req->path_len) != NULL)
		return false;
	if (status == HTTP_STATIC_REDIRECT) {
		n = http_static_location(loc, sizeof(loc), st->prefix,
		    prefix_len, rel, req->query, req->query_len);
		http_answer(c, req, n > 0 ? 301 : 414, n > 0 ? loc : NULL,
		    head, keep);
		return true;
	}
	if (status != 0) {
		/* Malformed targets close: what follows them is suspect. */
		http_answer(c, req, status, NULL, head, keep &&
		    (status == 404 || status == 403));
		return true;
	}
	memset(&r, 0, sizeof(r));
	http_static_etag(&sb, etag);
	r.date = time(NULL);
	r.etag = etag;
	r.last_modified = sb.st_mtime;
	r.keep_alive = keep;
	r.keep_alive_timeout = (unsigned)(cfg->keepalive_timeout_ms / 1000);
	r.keep_alive_max = client_http_requests_left(c);
	if (http_static_not_modified(req, etag, sb.st_mtime)) {
		r.status = 304;
		head = true;
	} else {
		r.status = 200;
		r.content_type = http_static_mime(rel[0] == '\0' ||
		    rel[strlen(rel) - 1] == '/' ? HTTP_INDEX : rel);
		r.content_length = (uint64_t)sb.st_size;
	}
	n = http_resp_head(buf, sizeof(buf), &r);
	if (n == 0) {
		close(fd);
		http_answer(c, req, 500, NULL, head, false);
		return true;
	}
	log_debug("%s: %d for %.*s (%llu bytes)", c->name, r.status,
	    (int)req->path_len, req->path, (unsigned long long)sb.st_size);
	if (head) {
		close(fd);
		fd = -1;
	}
	client_respond(c, buf, n, fd, head ? 0 : (uint64_t)sb.st_size, keep);
	return true;
}
