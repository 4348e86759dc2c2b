/*
 * env: see env.h.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "env.h"
#include "version.h"

#define ENV_SOFTWARE	"gatewayd/" GATEWAYD_VERSION

/* The entries gathered so far, each a malloc'd "NAME=VALUE". */
struct env_list {
	char **v;
	size_t n, cap;
	bool oom;
};

/* The length of NAME in "NAME=VALUE". */
static size_t
env_name_len(const char *entry)
{
	const char *eq = strchr(entry, '=');

	return eq != NULL ? (size_t)(eq - entry) : strlen(entry);
}

/* Add entry (taken), replacing an entry of the same name: the last
 * setting wins, at the place of the first. */
static void
env_put(struct env_list *l, char *entry)
{
	size_t i, n;
	char **v;

	if (entry == NULL) {
		l->oom = true;
		return;
	}
	n = env_name_len(entry);
	for (i = 0; i < l->n; i++) {
		if (env_name_len(l->v[i]) == n &&
		    memcmp(l->v[i], entry, n) == 0) {
			free(l->v[i]);
			l->v[i] = entry;
			return;
		}
	}
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		if ((v = realloc(l->v, l->cap * sizeof(*v))) == NULL) {
			free(entry);
			l->oom = true;
			return;
		}
		l->v = v;
	}
	l->v[l->n++] = entry;
}

static void
env_set(struct env_list *l, const char *name, const char *value, size_t len)
{
	char *e;

	if (asprintf(&e, "%s=%.*s", name, (int)len, value) == -1)
		e = NULL;
	env_put(l, e);
}

static void
env_set_str(struct env_list *l, const char *name, const char *value)
{
	env_set(l, name, value, strlen(value));
}

static int
env_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* NAME=VALUE with the %XX escapes of value decoded; a malformed escape,
 * and one that would decode to NUL, stay as they are. */
static void
env_set_decoded(struct env_list *l, const char *name, const char *value,
    size_t len)
{
	char *e, *o;
	size_t i, n = strlen(name);
	int hi, lo;

	if ((e = malloc(n + 1 + len + 1)) == NULL) {
		l->oom = true;
		return;
	}
	memcpy(e, name, n);
	e[n] = '=';
	for (o = e + n + 1, i = 0; i < len; i++) {
		if (value[i] == '%' && i + 2 < len &&
		    (hi = env_hex(value[i + 1])) >= 0 &&
		    (lo = env_hex(value[i + 2])) >= 0 && (hi | lo) != 0) {
			*o++ = (char)(hi << 4 | lo);
			i += 2;
		} else {
			*o++ = value[i];
		}
	}
	*o = '\0';
	env_put(l, e);
}

const char *
env_get(char *const *env, const char *name)
{
	size_t n = strlen(name);

	for (; env != NULL && *env != NULL; env++)
		if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
			return *env + n + 1;
	return NULL;
}

static void
env_pass(struct env_list *l, char *const *daemon_env, const char *name)
{
	const char *v = env_get(daemon_env, name);

	if (v != NULL)
		env_set_str(l, name, v);
}

/* SERVER_NAME and SERVER_PORT from the Host header, as websocketd takes
 * them: the port after the host, else the scheme's. */
static void
env_host(struct env_list *l, const struct env_request *rq)
{
	const struct http_req_header *h = http_req_header(rq->req, "host");
	const char *v = h != NULL ? h->value : "", *colon = NULL, *p;
	size_t len = h != NULL ? h->value_len : 0, host_len;

	for (p = v + len; p > v; p--) {
		if (p[-1] == ':') {
			colon = p - 1;
			break;
		}
		if (p[-1] == ']')
			break;
	}
	host_len = colon != NULL ? (size_t)(colon - v) : len;
	if (host_len >= 2 && v[0] == '[' && v[host_len - 1] == ']')
		env_set(l, "SERVER_NAME", v + 1, host_len - 2);
	else
		env_set(l, "SERVER_NAME", v, host_len);
	if (colon != NULL)
		env_set(l, "SERVER_PORT", colon + 1, (size_t)(v + len - colon - 1));
	else if (h != NULL)
		env_set_str(l, "SERVER_PORT", rq->tls ? "443" : "80");
	else
		env_set_str(l, "SERVER_PORT", rq->local_port);
}

/* HTTP_NAME for each header, repeated ones joined with ", ". */
static void
env_headers(struct env_list *l, const struct http_req *req)
{
	const struct http_req_header *h, *g;
	size_t i, j, k, size;
	char *e, *o;

	for (i = 0; i < req->n_headers; i++) {
		h = &req->headers[i];
		/* Counted at its first occurrence only. */
		for (j = 0; j < i; j++)
			if (req->headers[j].name_len == h->name_len &&
			    strncasecmp(req->headers[j].name, h->name,
			    h->name_len) == 0)
				break;
		if (j < i)
			continue;
		size = 5 + h->name_len + 1;
		for (j = i; j < req->n_headers; j++) {
			g = &req->headers[j];
			if (g->name_len == h->name_len &&
			    strncasecmp(g->name, h->name, h->name_len) == 0)
				size += g->value_len + 2;
		}
		if ((e = malloc(size + 1)) == NULL) {
			l->oom = true;
			return;
		}
		o = e + sprintf(e, "HTTP_");
		for (k = 0; k < h->name_len; k++) {
			unsigned char c = (unsigned char)h->name[k];

			*o++ = isalnum(c) ? (char)toupper(c) : '_';
		}
		*o++ = '=';
		for (j = i; j < req->n_headers; j++) {
			g = &req->headers[j];
			if (g->name_len != h->name_len ||
			    strncasecmp(g->name, h->name, h->name_len) != 0)
				continue;
			if (j != i) {
				*o++ = ',';
				*o++ = ' ';
			}
			for (k = 0; k < g->value_len; k++) {
				char c = g->value[k];

				*o++ = c == '\r' || c == '\n' ? ' ' : c;
			}
		}
		*o = '\0';
		env_put(l, e);
	}
}

static void
env_cgi(struct env_list *l, const struct env_request *rq)
{
	const struct http_req *req = rq->req;
	size_t script = strlen(rq->script_name);
	char proto[16];
	char *uri;

	env_set_str(l, "REMOTE_ADDR", rq->remote_addr);
	env_set_str(l, "REMOTE_HOST", rq->remote_addr);	/* no DNS lookup */
	env_set_str(l, "REMOTE_PORT", rq->remote_port);
	env_host(l, rq);
	snprintf(proto, sizeof(proto), "HTTP/1.%d", req->version_minor);
	env_set_str(l, "SERVER_PROTOCOL", proto);
	env_set_str(l, "SERVER_SOFTWARE", ENV_SOFTWARE);
	/* websocketd's value: scripts written for it test for it. */
	env_set_str(l, "GATEWAY_INTERFACE", "websocketd-CGI/0.1");
	env_set(l, "REQUEST_METHOD", req->method, req->method_len);
	if (asprintf(&uri, "REQUEST_URI=%.*s%s%.*s", (int)req->path_len,
	    req->path, req->query_len > 0 ? "?" : "", (int)req->query_len,
	    req->query) == -1)
		uri = NULL;
	env_put(l, uri);
	env_set_str(l, "SCRIPT_NAME", rq->script_name);
	/* The root resource of websocketd's one-command mode: the whole
	 * path is PATH_INFO.  Decoded, as CGI and websocketd give it. */
	if (strcmp(rq->script_name, "/") == 0 || script > req->path_len)
		env_set_decoded(l, "PATH_INFO", req->path, req->path_len);
	else
		env_set_decoded(l, "PATH_INFO", req->path + script,
		    req->path_len - script);
	env_set_decoded(l, "PATH_TRANSLATED", req->path, req->path_len);
	env_set(l, "QUERY_STRING", req->query, req->query_len);
	/* Unset in CGI terms, and cleared so that nothing leaks in. */
	env_set_str(l, "AUTH_TYPE", "");
	env_set_str(l, "CONTENT_LENGTH", "");
	env_set_str(l, "CONTENT_TYPE", "");
	env_set_str(l, "REMOTE_IDENT", "");
	env_set_str(l, "REMOTE_USER", "");
	env_set_str(l, "UNIQUE_ID", rq->client);
	env_set_str(l, "GATEWAYD_CLIENT", rq->client);
	if (rq->tls)
		env_set_str(l, "HTTPS", "on");
	env_headers(l, req);
}

char **
env_build(const struct cfg_room_opts *opts, const char *room,
    const struct env_request *request, char *const *daemon_env)
{
	struct env_list l = { 0 };
	size_t i, size;
	char **out = NULL, *s;

	env_pass(&l, daemon_env, "PATH");
	env_pass(&l, daemon_env, "LANG");
	for (i = 0; opts->passenv != NULL && opts->passenv[i] != NULL; i++)
		env_pass(&l, daemon_env, opts->passenv[i]);
	env_set_str(&l, "GATEWAYD_ROOM", room);
	if (request != NULL)
		env_cgi(&l, request);
	for (i = 0; opts->env != NULL && opts->env[i] != NULL; i++)
		env_put(&l, strdup(opts->env[i]));
	if (l.oom)
		goto done;
	size = (l.n + 1) * sizeof(char *);
	for (i = 0; i < l.n; i++)
		size += strlen(l.v[i]) + 1;
	if ((out = malloc(size)) == NULL)
		goto done;
	s = (char *)(out + l.n + 1);
	for (i = 0; i < l.n; i++) {
		out[i] = s;
		s = stpcpy(s, l.v[i]) + 1;
	}
	out[l.n] = NULL;
done:
	for (i = 0; i < l.n; i++)
		free(l.v[i]);
	free(l.v);
	return out;
}
