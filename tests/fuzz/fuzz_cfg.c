/*
 * libFuzzer target for cfg: parse the input as a configuration file and
 * check what comes back.  Either a model or errors, never both; every
 * error line is "fuzz.ini:LINE: message"; a model holds what the parser
 * promises (a listen address, resources with a backend, values within
 * their bounds, lists that are never NULL and hold only valid items,
 * restart_max_delay >= restart_delay, patterns that cfg_match finds).  The input is also split
 * as a command line.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "handshake.h"
#include "http_req.h"

#define FILE_NAME	"fuzz.ini"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_errors(const char *errors)
{
	const char *s = errors, *nl;
	size_t n = strlen(FILE_NAME);

	if (*s == '\0')
		abort();
	for (; *s != '\0'; s = nl + 1) {
		if ((nl = strchr(s, '\n')) == NULL)
			abort();		/* every line ends in LF */
		if (strncmp(s, FILE_NAME ":", n + 1) != 0)
			abort();
		s += n + 1;
		if (*s < '0' || *s > '9')
			abort();
		while (*s >= '0' && *s <= '9')
			s++;
		if (s[0] != ':' || s[1] != ' ' || s + 2 >= nl)
			abort();
	}
}

static void
check_opts(const struct cfg_room_opts *o)
{
	const char *why;
	size_t i, j;

	if (o->max_message_size < 1 || o->max_message_size > (1 << 30) ||
	    o->authorize_timeout_ms < 100 ||
	    o->authorize_timeout_ms > 3600000 ||
	    o->linger_ms > 24 * 3600000 ||
	    o->close_timeout_ms < 100 || o->close_timeout_ms > 3600000 ||
	    o->stop_timeout_ms > 3600000)
		abort();
	if (o->max_frame_size > (1 << 30) || o->max_clients > 1000000 ||
	    o->ping_interval_ms > 24 * 3600000 ||
	    o->pong_timeout_ms < 100 || o->pong_timeout_ms > 3600000 ||
	    o->idle_timeout_ms > 24 * 3600000 ||
	    o->max_client_buffer < 1024 || o->max_client_buffer > (1 << 30) ||
	    o->backend_buffer < 4096 || o->backend_buffer > (1 << 30) ||
	    (o->on_backend_down != CFG_BACKEND_DOWN_HOLD &&
	    o->on_backend_down != CFG_BACKEND_DOWN_CLOSE) ||
	    o->hold_buffer > (1 << 30) || o->hold_timeout_ms > 24 * 3600000 ||
	    o->restart_delay_ms > 3600000 ||
	    o->restart_max_delay_ms > 24 * 3600000 ||
	    o->restart_max_delay_ms < o->restart_delay_ms)
		abort();
	if (o->origins == NULL || o->subprotocols == NULL)
		abort();
	for (i = 0; o->origins[i] != NULL; i++) {
		if (handshake_origin_check(o->origins[i], &why) != 0)
			abort();
		/* an entry, but "*" and wildcards, lets itself in */
		if (strcmp(o->origins[i], "*") != 0 &&
		    strstr(o->origins[i], "://*.") == NULL &&
		    !handshake_origin_allowed(o->origins + i, o->origins[i],
		    strlen(o->origins[i])))
			abort();
	}
	for (i = 0; o->subprotocols[i] != NULL; i++) {
		if (!http_req_is_token(o->subprotocols[i],
		    strlen(o->subprotocols[i])))
			abort();
		for (j = 0; j < i; j++)
			if (strcmp(o->subprotocols[i], o->subprotocols[j]) == 0)
				abort();
	}
}

static void
check_cfg(const struct cfg *cfg)
{
	const struct cfg_resource *r;
	char path[512];
	size_t i, len;

	if (strcmp(cfg->file, FILE_NAME) != 0 || cfg->n_listens == 0 ||
	    cfg->n_resources == 0)
		abort();
	if (cfg->max_connections < 1 || cfg->max_connections > 1000000 ||
	    cfg->max_connections_per_ip > 1000000 ||
	    cfg->max_header_size < 1024 || cfg->max_header_size > (1 << 20) ||
	    cfg->max_headers < 1 || cfg->max_headers > 128 ||
	    cfg->handshake_timeout_ms < 100 ||
	    cfg->handshake_timeout_ms > 3600000 ||
	    cfg->shutdown_timeout_ms > 3600000 ||
	    cfg->log_level > CFG_LOG_DEBUG)
		abort();
	check_opts(&cfg->defaults);
	for (i = 0; i < cfg->n_listens; i++)
		if (cfg->listens[i].text == NULL || cfg->listens[i].line < 1 ||
		    (cfg->listens[i].addr.ss_family != AF_INET &&
		    cfg->listens[i].addr.ss_family != AF_INET6))
			abort();
	for (i = 0; i < cfg->n_resources; i++) {
		r = &cfg->resources[i];
		check_opts(&r->opts);
		if (r->pattern == NULL || r->pattern[0] != '/' ||
		    r->backend == NULL || r->line < 1)
			abort();
		if (r->backend_kind == CFG_BACKEND_UNIX &&
		    (r->unix_path == NULL || r->unix_path[0] == '\0' ||
		    r->argv != NULL))
			abort();
		if (r->backend_kind == CFG_BACKEND_EXEC &&
		    (r->argv == NULL || r->argv[0] == NULL ||
		    r->argv[0][0] == '\0' || r->unix_path != NULL))
			abort();
		len = strlen(r->pattern);
		if (len + 2 > sizeof(path))
			abort();		/* longer than a line */
		if (!r->is_prefix) {
			/* An exact path finds itself or an earlier pattern. */
			const struct cfg_resource *m;

			m = cfg_match(cfg, r->pattern, len);
			if (m == NULL || m > r)
				abort();
			continue;
		}
		if (r->prefix_len != len - 1 ||
		    r->pattern[r->prefix_len - 1] != '/')
			abort();
		if (cfg_match(cfg, r->pattern, r->prefix_len) == r)
			abort();		/* "/a/" is not below "/a/" */
		memcpy(path, r->pattern, r->prefix_len);
		path[r->prefix_len] = 'x';
		if (cfg_match(cfg, path, r->prefix_len + 1) == NULL)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfg *cfg;
	char *errors = NULL, *cmd, **argv;
	const char *why;
	size_t i;

	cfg = cfg_parse(FILE_NAME, (const char *)data, size, &errors);
	if ((cfg == NULL) == (errors == NULL))
		abort();	/* both, or neither (out of memory) */
	if (errors != NULL)
		check_errors(errors);
	else
		check_cfg(cfg);
	cfg_free(cfg);
	free(errors);

	if (size > 4096 || (cmd = malloc(size + 1)) == NULL)
		return 0;
	memcpy(cmd, data, size);
	cmd[size] = '\0';
	why = NULL;
	if ((argv = cfg_split_argv(cmd, &why)) != NULL) {
		if (why != NULL || argv[0] == NULL || argv[0][0] == '\0')
			abort();
		for (i = 0; argv[i] != NULL; i++)
			if (strlen(argv[i]) > size)
				abort();
		cfg_argv_free(argv);
	} else if (why == NULL)
		abort();
	free(cmd);
	return 0;
}
