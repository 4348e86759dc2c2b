/*
 * env: the environment a backend program is started with.
 *
 * Pure: builds an execve() environment from the configuration and, for a
 * per-connection backend, from the client's request, as websocketd and
 * CGI do (RFC 3875).  Nothing of gatewayd's own environment reaches a
 * backend but PATH, LANG and the names its resource lists in passenv: a
 * backend must not work only because the shell that started the daemon
 * happened to set something.
 */
#ifndef GATEWAYD_ENV_H
#define GATEWAYD_ENV_H

#include <stdbool.h>
#include <stddef.h>

#include "cfg.h"
#include "http_req.h"

/* What a per-connection backend learns of its client. */
struct env_request {
	const struct http_req *req;	/* the request head, parsed */
	const char *client;		/* the client id, "c42" */
	const char *remote_addr;	/* "127.0.0.1", "::1" */
	const char *remote_port;
	const char *local_port;		/* the listener's, when Host has none */
	const char *script_name;	/* the resource's part of the path */
	bool tls;
};

/* The variables a per-connection backend gets from its request, besides
 * the HTTP_* headers. */
#define ENV_CGI_VARS \
	"REMOTE_ADDR", "REMOTE_HOST", "REMOTE_PORT", "SERVER_NAME", \
	"SERVER_PORT", "SERVER_PROTOCOL", "SERVER_SOFTWARE", \
	"GATEWAY_INTERFACE", "REQUEST_METHOD", "REQUEST_URI", "SCRIPT_NAME", \
	"PATH_INFO", "PATH_TRANSLATED", "QUERY_STRING", "UNIQUE_ID", \
	"AUTH_TYPE", "CONTENT_LENGTH", "CONTENT_TYPE", "REMOTE_IDENT", \
	"REMOTE_USER", "GATEWAYD_CLIENT", "HTTPS"

/*
 * Build a backend's environment, in this order (a later NAME replaces an
 * earlier one): PATH and LANG and the passenv names, from daemon_env
 * (gatewayd's own, NULL-terminated); GATEWAYD_ROOM=room; the request's
 * CGI variables and HTTP_* headers when request is not NULL; the
 * resource's env entries.  Returns one malloc'd block (free it alone)
 * holding the NULL-terminated array and its strings, or NULL when out of
 * memory.  Header values have CR and LF replaced by blanks.
 */
char **env_build(const struct cfg_room_opts *opts, const char *room,
    const struct env_request *request, char *const *daemon_env);

/* The value of name in env, or NULL. */
const char *env_get(char *const *env, const char *name);

#endif
