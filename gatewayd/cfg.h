/*
 * cfg: the configuration model and the ini reader.
 *
 * Pure: parses a configuration held in memory (inih does the ini syntax)
 * into a struct cfg, resolving [gateway] defaults into every resource, and
 * reports every error as "FILE:LINE: message".  It starts nothing and
 * connects to nothing, so "gatewayd -t" is exactly cfg_load.
 *
 * Options are rows of one table (cfg.c): name, where it may appear, type,
 * bounds and default.  Keys marked "room" may be set in [gateway] as the
 * default and overridden in any [resource ...] section.
 */
#ifndef GATEWAYD_CFG_H
#define GATEWAYD_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum cfg_backend_kind {
	CFG_BACKEND_UNIX,	/* unix:PATH, a stream socket to connect to */
	CFG_BACKEND_EXEC,	/* exec:COMMAND ARGS, a program to spawn */
	CFG_BACKEND_TCP,	/* tcp:ADDR:PORT, a program on another host */
};

enum cfg_log_level {
	CFG_LOG_ERROR,
	CFG_LOG_WARN,
	CFG_LOG_INFO,
	CFG_LOG_DEBUG,
};

/* Who a resource's backend serves. */
enum cfg_mode {
	CFG_MODE_ROOM,		/* one backend for every client of a path */
	CFG_MODE_CLIENT,	/* one backend per client, websocketd's way */
};

/* What travels between the gateway and a backend. */
enum cfg_format {
	CFG_FORMAT_DEFAULT,	/* unset: json for rooms, lines for clients */
	CFG_FORMAT_JSON,	/* the records of docs/PROTOCOL.md */
	CFG_FORMAT_LINES,	/* a message is a line (mode = client only) */
};

/* What a room does with its clients when its backend goes away. */
enum cfg_backend_down {
	CFG_BACKEND_DOWN_HOLD,	/* keep them, buffer their messages, restart */
	CFG_BACKEND_DOWN_CLOSE,	/* close them with 1011 */
};

/* How a room knows what its backend has read (docs/PROTOCOL.md). */
enum cfg_delivery {
	CFG_DELIVERY_SOCKET,	/* from the socket: what it took */
	CFG_DELIVERY_ACK,	/* from its acks: what it handled */
};

/*
 * The options a room takes from [gateway] unless its resource sets them.
 * docs/POLICY.md tells what each produces (statuses, close codes).
 *
 * The lists are NULL-terminated arrays, never NULL themselves in a parsed
 * cfg (an empty list is { NULL }); they belong to the cfg, and a resource
 * that does not set one shares [gateway]'s array (cfg_free knows).
 */
struct cfg_room_opts {
	const char *const *origins;	/* allowed Origin values (see
					 * handshake_origin_allowed); empty:
					 * any origin -> else 403 */
	const char *const *subprotocols; /* the server's, in its order of
					 * preference */
	bool subprotocol_required;	/* none of them offered -> 400 */
	uint64_t max_message_size;	/* bytes after reassembly -> 1009 */
	uint64_t max_frame_size;	/* bytes of one frame -> 1009; 0: only
					 * max_message_size */
	uint64_t max_clients;		/* in one room, 0: no limit -> 503 */
	bool authorize;			/* the backend accepts each client */
	uint64_t authorize_timeout_ms;	/* then 504 */
	uint64_t ping_interval_ms;	/* ping a client idle this long; 0: no */
	uint64_t pong_timeout_ms;	/* no pong in time: drop, report 1006 */
	uint64_t idle_timeout_ms;	/* no message this long: 1001; 0: off */
	uint64_t linger_ms;		/* a pattern room outlives its last client */
	uint64_t close_timeout_ms;	/* wait for the peer's close frame */
	uint64_t stop_timeout_ms;	/* stdin closed -> SIGTERM -> SIGKILL */
	uint64_t max_client_buffer;	/* a client's queued output -> 1008 */
	uint64_t backend_buffer;	/* queued to the backend: stop reading
					 * the room's clients; resume at half */
	enum cfg_backend_down on_backend_down;
	uint64_t hold_buffer;		/* HOLD: bytes kept for the backend */
	uint64_t hold_timeout_ms;	/* HOLD: then close with 1012 */
	enum cfg_delivery delivery;	/* mode = room only */
	uint64_t restart_delay_ms;	/* first backend restart delay */
	uint64_t restart_max_delay_ms;	/* the delay doubles up to this;
					 * >= restart_delay_ms */
	enum cfg_mode mode;
	enum cfg_format format;		/* never CFG_FORMAT_DEFAULT once parsed */
	bool compression;		/* permessage-deflate offered */
	bool compression_no_context_takeover; /* no: per-connection zlib
					 * streams, better ratio, more memory */
	uint64_t compression_level;	/* zlib 1..9 */
	uint64_t compression_min_size;	/* shorter messages go plain */
	uint64_t compression_window_bits; /* 9..15 */
	bool binary;			/* lines: raw bytes both ways instead */
	const char *const *env;		/* "NAME=VALUE" for the backend, in
					 * order ([gateway]'s first) */
	const char *const *passenv;	/* names passed from gatewayd's own
					 * environment besides PATH and LANG */
};

struct cfg_listen {
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char *text;		/* the address as written, for messages */
	int line;
	bool tls;		/* "ADDR:PORT tls": wss:// and https:// */
	bool proxy;		/* "ADDR:PORT proxy": a PROXY protocol header
				 * (v1 or v2) comes first, before TLS */
	bool admin;		/* admin_listen: /metrics, /healthz, the tap */
};

/* A text value and the line it was set on, for messages about what it
 * names (a certificate that does not load). */
struct cfg_text {
	char *value;		/* NULL: not set */
	int line;
};

/* TLS protocol versions, oldest first. */
enum cfg_tls_version {
	CFG_TLS_1_0,
	CFG_TLS_1_1,
	CFG_TLS_1_2,
	CFG_TLS_1_3,
};

/* [tls NAME]: the certificate for clients that ask for NAME (SNI). */
struct cfg_tls {
	char *name;		/* "example.com" or "*.example.com" */
	int line;		/* of the section header */
	struct cfg_text certificate;
	struct cfg_text key;
};

/* [cluster]: rooms shared with the other nodes of one Redis
 * (docs/CLUSTER.md). */
struct cfg_cluster {
	int line;		/* of the section header; 0: no [cluster] */
	struct cfg_text redis;	/* "HOST:PORT" or "unix:PATH" */
	struct cfg_text node;	/* NULL: host name and first listen port */
	struct cfg_text password;	/* AUTH, when set */
	uint64_t db;		/* SELECT */
	uint64_t lease_ms;	/* how long a dead node holds its rooms */
	uint64_t stream_max;	/* records waiting in a room's stream */
};

struct cfg_resource {
	char *pattern;		/* as written: "/chat", or "/rooms/" and '*' */
	bool is_prefix;		/* ends in '/' and '*': matches below it */
	size_t prefix_len;	/* with is_prefix: length up to and with '/' */
	enum cfg_backend_kind backend_kind;
	char *backend;		/* the backend value as written */
	char *unix_path;	/* CFG_BACKEND_UNIX */
	struct sockaddr_storage tcp_addr;	/* CFG_BACKEND_TCP */
	socklen_t tcp_addr_len;
	char **argv;		/* CFG_BACKEND_EXEC: NULL-terminated */
	int backend_line;	/* of the backend key */
	uint64_t max_rooms;	/* pattern rooms of this resource, 0: only
				 * the global bound */
	bool cluster;		/* shared across the cluster (cluster = yes,
				 * the default; mode = client never is) */
	struct cfg_room_opts opts;
	int line;		/* of the section header */
};

/* A URL prefix served from a directory ([static PREFIX], static_dir). */
struct cfg_static {
	char *prefix;		/* starts and ends with '/' */
	char *dir;
	int line;		/* of the section header or the static_dir key */
};

/* A count option that may say "auto": resolved at start (server.c). */
#define CFG_AUTO UINT64_MAX

struct cfg {
	char *file;
	struct cfg_listen *listens;	/* admin_listen's last, when set */
	size_t n_listens;
	uint64_t max_connections;
	uint64_t max_connections_per_ip;	/* 0: no limit -> 429 */
	uint64_t max_header_size;
	uint64_t max_headers;
	uint64_t handshake_timeout_ms;
	uint64_t shutdown_timeout_ms;
	uint64_t max_processes;			/* spawned, alive; CFG_AUTO */
	uint64_t max_rooms;			/* rooms at once; CFG_AUTO */
	uint64_t max_output_memory;		/* queued to all clients -> 1008 */
	uint64_t send_buffer;			/* SO_SNDBUF of clients; 0: auto */
	uint64_t keepalive_timeout_ms;		/* plain HTTP between requests */
	uint64_t keepalive_requests;		/* per connection */
	char *static_dir;			/* [gateway]'s, also in statics */
	int static_dir_line;
	struct cfg_text tls_certificate;	/* the default certificate */
	struct cfg_text tls_key;
	enum cfg_tls_version tls_min_version;
	struct cfg_text user;			/* drop privileges to it */
	struct cfg_text group;
	enum cfg_log_level log_level;
	struct cfg_room_opts defaults;	/* [gateway]'s room options */
	struct cfg_resource *resources;	/* in file order */
	size_t n_resources;
	struct cfg_resource **by_pattern;	/* sorted, for cfg_find_resource */
	struct cfg_static *statics;	/* longest prefix first */
	size_t n_statics;
	struct cfg_tls *tls;		/* [tls NAME] sections, in file order */
	size_t n_tls;
	bool has_tls;			/* a tls listener */
	struct cfg_cluster cluster;
};

/*
 * Parse the configuration text[0..len), naming it file in messages.
 * Returns the model, or NULL with *errors set to a malloc'd string of one
 * "FILE:LINE: message\n" line per error (every error found, not only the
 * first; LINE is 0 for an error of the file as a whole).  The caller frees
 * *errors.  NULL with *errors NULL means out of memory.
 */
struct cfg *cfg_parse(const char *file, const char *text, size_t len,
    char **errors);

/* Read file and cfg_parse it.  An unreadable file is reported in *errors
 * as "FILE: strerror". */
struct cfg *cfg_load(const char *file, char **errors);

void cfg_free(struct cfg *cfg);

/* The first resource, in file order, that path[0..len) matches: an exact
 * resource equal to it, or a prefix resource ("/a/" and '*') with a
 * non-empty rest ("/a/b", "/a/b/c"; not "/a/" or "/a").  NULL when none
 * does. */
const struct cfg_resource *cfg_match(const struct cfg *cfg, const char *path,
    size_t len);

/*
 * The one-line start: what gatewayd's command-line flags say, made into
 * configuration text by cfg_from_command, so that the flags build the
 * same model as an ini file and "-t" can print it as one.
 */
struct cfg_command {
	const char *const *listens;	/* NULL-terminated, ADDR:PORT */
	char *const *argv;		/* the program and its arguments, or
					 * NULL for static files alone */
	bool room;			/* a room backend, not one per client */
	bool binary;
	const char *static_dir;
	const char *const *env;		/* NAME=VALUE, NULL-terminated */
	const char *passenv;		/* a list, or NULL */
	const char *origins;		/* a list, or NULL */
	const char *max_processes;	/* or NULL */
	const char *log_level;		/* or NULL */
};

/* The ini text of cmd (malloc'd), or NULL with *why set (or NULL when
 * out of memory): a value no ini line can hold. */
char *cfg_from_command(const struct cfg_command *cmd, const char **why);

/* The resource whose pattern is pattern, as written, or NULL. */
const struct cfg_resource *cfg_find_resource(const struct cfg *cfg,
    const char *pattern);

/* The static mapping whose prefix is the longest one path starts with
 * (a path equal to a prefix without its final '/' matches it too), or
 * NULL. */
const struct cfg_static *cfg_match_static(const struct cfg *cfg,
    const char *path, size_t len);

/*
 * Check what the configuration names on this machine: every exec:
 * program exists and may be executed (resolved on the PATH its backend
 * gets, as the spawn resolves it) and every static directory is one.
 * Returns 0, or -1 with *errors set as cfg_parse sets it.
 */
int cfg_check_system(const struct cfg *cfg, char **errors);

/*
 * Resolve a program name as the spawn does: a name with a '/' as it is
 * (relative to the working directory), another on path (a colon-separated
 * list; an empty entry is the working directory).  Writes the file into
 * out and returns 0, or returns an errno value: ENOENT (nowhere), EACCES
 * (not executable), EISDIR, ENAMETOOLONG.
 */
int cfg_resolve_program(const char *name, const char *path, char *out,
    size_t size);

/* The PATH a backend of opts gets: its env's PATH=, else gatewayd's own,
 * else a default. */
const char *cfg_backend_path(const struct cfg_room_opts *opts);

/* Value parsers, exposed for tests.  Each returns 0, or -1 with *why set. */
int cfg_parse_size(const char *s, uint64_t *out, const char **why);
int cfg_parse_duration(const char *s, uint64_t *ms, const char **why);
int cfg_parse_bool(const char *s, bool *out, const char **why);
int cfg_parse_listen(const char *s, struct sockaddr_storage *addr,
    socklen_t *addr_len, const char **why);

/* Split a command line with POSIX shell quoting ('...', "...", backslash;
 * no expansion of any kind) into a malloc'd NULL-terminated argv, freed
 * with cfg_argv_free.  Returns NULL with *why set on unbalanced quotes or
 * an empty command (and with *why NULL when out of memory). */
char **cfg_split_argv(const char *cmd, const char **why);
void cfg_argv_free(char **argv);

#endif
