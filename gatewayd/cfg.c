/*
 * cfg: the configuration model and the ini reader (see cfg.h).
 *
 * inih does the ini syntax, but Debian's build neither passes line numbers
 * to the handler nor calls it for a section without keys, truncates section
 * names to 49 bytes, and treats an indented line as the continuation of the
 * previous value.  So the text is fed to ini_parse_stream through our own
 * reader (cfg_reader), which is called once per line: it counts lines,
 * strips indentation, parses section headers itself (the handler ignores
 * inih's idea of the section), and replaces every line it rejects (too
 * long, a NUL byte, a syntax error) with an empty one after reporting it.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <search.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cfg.h"
#include "handshake.h"
#include "http_req.h"

#define CFG_KIB		((uint64_t)1 << 10)
#define CFG_MIB		((uint64_t)1 << 20)
#define CFG_GIB		((uint64_t)1 << 30)
#define CFG_SEC		((uint64_t)1000)
#define CFG_MIN		(60 * CFG_SEC)
#define CFG_HOUR	(60 * CFG_MIN)

/* The room for a unix socket path, with its NUL (108 on Linux). */
#define CFG_SUN_PATH	sizeof(((struct sockaddr_un *)0)->sun_path)

/* The largest file cfg_load reads. */
#define CFG_FILE_MAX	(16 * CFG_MIB)

/* Where an option may appear. */
#define CFG_IN_GATEWAY	0x1
#define CFG_IN_RESOURCE	0x2
/* A room option: a default in [gateway], overridden in [resource]. */
#define CFG_IN_BOTH	(CFG_IN_GATEWAY | CFG_IN_RESOURCE)
#define CFG_IN_STATIC	0x4
#define CFG_IN_TLS	0x8
#define CFG_IN_CLUSTER	0x10

enum cfg_type {
	CFG_T_LISTEN,		/* address:port, repeatable */
	CFG_T_COUNT,		/* uint64_t, a plain number */
	CFG_T_SIZE,		/* uint64_t bytes, K/M/G suffixes */
	CFG_T_DURATION,		/* uint64_t ms, ms/s/m/h suffixes */
	CFG_T_BOOL,		/* bool */
	CFG_T_ENUM,		/* an enum, one of the row's names */
	CFG_T_LIST,		/* const char *const *, NULL-terminated: items
				 * split at blanks and commas, each checked */
	CFG_T_BACKEND,		/* unix:PATH or exec:COMMAND ARGS */
	CFG_T_ENV,		/* NAME=VALUE, repeatable; a resource's add
				 * to [gateway]'s */
	CFG_T_PATH,		/* char *, a file system path */
	CFG_T_TEXT,		/* struct cfg_text: a value and its line */
};

/* Enums are stored as unsigned int. */
_Static_assert(sizeof(enum cfg_log_level) == sizeof(unsigned int),
    "enum size");
_Static_assert(sizeof(enum cfg_backend_down) == sizeof(unsigned int),
    "enum size");
_Static_assert(sizeof(enum cfg_mode) == sizeof(unsigned int), "enum size");
_Static_assert(sizeof(enum cfg_format) == sizeof(unsigned int), "enum size");
_Static_assert(sizeof(enum cfg_tls_version) == sizeof(unsigned int),
    "enum size");

/* What separates the items of a list. */
#define CFG_LIST_SEP	" \t\v\f\r,"

/* A list's items compare without regard to case (for duplicates). */
#define CFG_F_NOCASE	0x1
/* A count that may be "auto" (stored as CFG_AUTO). */
#define CFG_F_AUTO	0x2
/* The admin listener's row of CFG_T_LISTEN. */
#define CFG_F_ADMIN	0x4

/*
 * One row per option, in the order of the reference config.  Offsets are
 * into struct cfg for [gateway]-only options and into struct cfg_room_opts
 * for room options; the default is text, parsed and bounds-checked like a
 * value from the file, so the reference config can quote it verbatim (a
 * list's default is "", the empty list).
 */
struct cfg_option {
	const char *name;
	int scope;
	enum cfg_type type;
	uint64_t min, max;
	const char *def;	/* NULL: no default */
	size_t offset;
	/* CFG_T_ENUM: the values, NULL-terminated, in the enum's order */
	const char *const *names;
	/* CFG_T_ENUM: what a value is ("a log level"); CFG_T_LIST: what an
	 * item is ("origin"); for messages */
	const char *what;
	/* CFG_T_LIST: check one item: 0, or -1 with *why set */
	int (*check)(const char *item, const char **why);
	int flags;		/* CFG_F_* */
};

#define CFG_GW(f)	offsetof(struct cfg, f)
#define CFG_ROOM(f)	offsetof(struct cfg_room_opts, f)
#define CFG_CL(f)	offsetof(struct cfg_cluster, f)

static const char *const cfg_log_levels[] = {
	[CFG_LOG_ERROR] = "error",
	[CFG_LOG_WARN] = "warn",
	[CFG_LOG_INFO] = "info",
	[CFG_LOG_DEBUG] = "debug",
	NULL
};

static const char *const cfg_backend_down_names[] = {
	[CFG_BACKEND_DOWN_HOLD] = "hold",
	[CFG_BACKEND_DOWN_CLOSE] = "close",
	NULL
};

static const char *const cfg_delivery_names[] = {
	[CFG_DELIVERY_SOCKET] = "socket",
	[CFG_DELIVERY_ACK] = "ack",
	NULL
};

static const char *const cfg_mode_names[] = {
	[CFG_MODE_ROOM] = "room",
	[CFG_MODE_CLIENT] = "client",
	NULL
};

/* "default" is not a value a user writes: it is the unset state. */
static const char *const cfg_format_names[] = {
	[CFG_FORMAT_DEFAULT] = "",
	[CFG_FORMAT_JSON] = "json",
	[CFG_FORMAT_LINES] = "lines",
	NULL
};

static const char *const cfg_tls_versions[] = {
	[CFG_TLS_1_0] = "1.0",
	[CFG_TLS_1_1] = "1.1",
	[CFG_TLS_1_2] = "1.2",
	[CFG_TLS_1_3] = "1.3",
	NULL
};

static int	cfg_check_subprotocol(const char *, const char **);
static int	cfg_check_env_name(const char *, const char **);

/* A row: CFG_ROW for most, CFG_ROW_FIELDS inside braces with the extra
 * fields of an enum or a list. */
#define CFG_ROW_FIELDS(n, sc, t, lo, hi, d, off) \
	.name = (n), .scope = (sc), .type = (t), .min = (lo), .max = (hi), \
	.def = (d), .offset = (off)
#define CFG_ROW(n, sc, t, lo, hi, d, off) \
	{ CFG_ROW_FIELDS(n, sc, t, lo, hi, d, off) }

static const struct cfg_option cfg_options[] = {
	CFG_ROW("listen", CFG_IN_GATEWAY, CFG_T_LISTEN, 0, 0, NULL, 0),
	{ CFG_ROW_FIELDS("admin_listen", CFG_IN_GATEWAY, CFG_T_LISTEN,
	    0, 0, NULL, 0), .flags = CFG_F_ADMIN },
	CFG_ROW("max_connections", CFG_IN_GATEWAY, CFG_T_COUNT,
	    1, 1000000, "10000", CFG_GW(max_connections)),
	CFG_ROW("max_connections_per_ip", CFG_IN_GATEWAY, CFG_T_COUNT,
	    0, 1000000, "0", CFG_GW(max_connections_per_ip)),
	CFG_ROW("max_header_size", CFG_IN_GATEWAY, CFG_T_SIZE,
	    CFG_KIB, CFG_MIB, "16K", CFG_GW(max_header_size)),
	CFG_ROW("max_headers", CFG_IN_GATEWAY, CFG_T_COUNT,
	    1, HTTP_REQ_HEADERS_MAX, "64", CFG_GW(max_headers)),
	CFG_ROW("handshake_timeout", CFG_IN_GATEWAY, CFG_T_DURATION,
	    100, CFG_HOUR, "10s", CFG_GW(handshake_timeout_ms)),
	CFG_ROW("shutdown_timeout", CFG_IN_GATEWAY, CFG_T_DURATION,
	    0, CFG_HOUR, "10s", CFG_GW(shutdown_timeout_ms)),
	{ CFG_ROW_FIELDS("max_processes", CFG_IN_GATEWAY, CFG_T_COUNT,
	    1, 1000000, "auto", CFG_GW(max_processes)), .flags = CFG_F_AUTO },
	{ CFG_ROW_FIELDS("max_rooms", CFG_IN_GATEWAY, CFG_T_COUNT,
	    1, 1000000, "auto", CFG_GW(max_rooms)), .flags = CFG_F_AUTO },
	CFG_ROW("max_output_memory", CFG_IN_GATEWAY, CFG_T_SIZE,
	    CFG_MIB, 1024 * CFG_GIB, "256M", CFG_GW(max_output_memory)),
	CFG_ROW("send_buffer", CFG_IN_GATEWAY, CFG_T_SIZE,
	    0, 64 * CFG_MIB, "0", CFG_GW(send_buffer)),
	CFG_ROW("keepalive_timeout", CFG_IN_GATEWAY, CFG_T_DURATION,
	    100, CFG_HOUR, "5s", CFG_GW(keepalive_timeout_ms)),
	CFG_ROW("keepalive_requests", CFG_IN_GATEWAY, CFG_T_COUNT,
	    1, 1000000, "100", CFG_GW(keepalive_requests)),
	CFG_ROW("static_dir", CFG_IN_GATEWAY, CFG_T_PATH,
	    0, 0, NULL, CFG_GW(static_dir)),
	CFG_ROW("tls_certificate", CFG_IN_GATEWAY, CFG_T_TEXT,
	    0, 0, NULL, CFG_GW(tls_certificate)),
	CFG_ROW("tls_key", CFG_IN_GATEWAY, CFG_T_TEXT,
	    0, 0, NULL, CFG_GW(tls_key)),
	{ CFG_ROW_FIELDS("tls_min_version", CFG_IN_GATEWAY, CFG_T_ENUM,
	    0, 0, "1.2", CFG_GW(tls_min_version)),
	    .names = cfg_tls_versions, .what = "a TLS version" },
	CFG_ROW("user", CFG_IN_GATEWAY, CFG_T_TEXT, 0, 0, NULL, CFG_GW(user)),
	CFG_ROW("group", CFG_IN_GATEWAY, CFG_T_TEXT, 0, 0, NULL, CFG_GW(group)),
	{ CFG_ROW_FIELDS("log_level", CFG_IN_GATEWAY, CFG_T_ENUM,
	    0, 0, "info", CFG_GW(log_level)),
	    .names = cfg_log_levels, .what = "a log level" },
	{ CFG_ROW_FIELDS("origins", CFG_IN_BOTH, CFG_T_LIST,
	    0, 0, "", CFG_ROOM(origins)),
	    .what = "origin", .check = handshake_origin_check,
	    .flags = CFG_F_NOCASE },
	{ CFG_ROW_FIELDS("subprotocols", CFG_IN_BOTH, CFG_T_LIST,
	    0, 0, "", CFG_ROOM(subprotocols)),
	    .what = "subprotocol", .check = cfg_check_subprotocol },
	CFG_ROW("subprotocol_required", CFG_IN_BOTH, CFG_T_BOOL,
	    0, 0, "no", CFG_ROOM(subprotocol_required)),
	CFG_ROW("max_message_size", CFG_IN_BOTH, CFG_T_SIZE,
	    1, CFG_GIB, "1M", CFG_ROOM(max_message_size)),
	CFG_ROW("max_frame_size", CFG_IN_BOTH, CFG_T_SIZE,
	    0, CFG_GIB, "0", CFG_ROOM(max_frame_size)),
	CFG_ROW("max_clients", CFG_IN_BOTH, CFG_T_COUNT,
	    0, 1000000, "0", CFG_ROOM(max_clients)),
	CFG_ROW("authorize", CFG_IN_BOTH, CFG_T_BOOL,
	    0, 0, "no", CFG_ROOM(authorize)),
	CFG_ROW("authorize_timeout", CFG_IN_BOTH, CFG_T_DURATION,
	    100, CFG_HOUR, "10s", CFG_ROOM(authorize_timeout_ms)),
	CFG_ROW("ping_interval", CFG_IN_BOTH, CFG_T_DURATION,
	    0, 24 * CFG_HOUR, "30s", CFG_ROOM(ping_interval_ms)),
	CFG_ROW("pong_timeout", CFG_IN_BOTH, CFG_T_DURATION,
	    100, CFG_HOUR, "10s", CFG_ROOM(pong_timeout_ms)),
	CFG_ROW("idle_timeout", CFG_IN_BOTH, CFG_T_DURATION,
	    0, 24 * CFG_HOUR, "0", CFG_ROOM(idle_timeout_ms)),
	CFG_ROW("linger", CFG_IN_BOTH, CFG_T_DURATION,
	    0, 24 * CFG_HOUR, "10s", CFG_ROOM(linger_ms)),
	CFG_ROW("close_timeout", CFG_IN_BOTH, CFG_T_DURATION,
	    100, CFG_HOUR, "5s", CFG_ROOM(close_timeout_ms)),
	CFG_ROW("stop_timeout", CFG_IN_BOTH, CFG_T_DURATION,
	    0, CFG_HOUR, "5s", CFG_ROOM(stop_timeout_ms)),
	CFG_ROW("max_client_buffer", CFG_IN_BOTH, CFG_T_SIZE,
	    CFG_KIB, CFG_GIB, "1M", CFG_ROOM(max_client_buffer)),
	CFG_ROW("backend_buffer", CFG_IN_BOTH, CFG_T_SIZE,
	    4 * CFG_KIB, CFG_GIB, "1M", CFG_ROOM(backend_buffer)),
	{ CFG_ROW_FIELDS("on_backend_down", CFG_IN_BOTH, CFG_T_ENUM,
	    0, 0, "hold", CFG_ROOM(on_backend_down)),
	    .names = cfg_backend_down_names, .what = "a policy" },
	CFG_ROW("hold_buffer", CFG_IN_BOTH, CFG_T_SIZE,
	    0, CFG_GIB, "1M", CFG_ROOM(hold_buffer)),
	CFG_ROW("hold_timeout", CFG_IN_BOTH, CFG_T_DURATION,
	    0, 24 * CFG_HOUR, "30s", CFG_ROOM(hold_timeout_ms)),
	{ CFG_ROW_FIELDS("delivery", CFG_IN_BOTH, CFG_T_ENUM,
	    0, 0, "socket", CFG_ROOM(delivery)),
	    .names = cfg_delivery_names, .what = "a delivery" },
	CFG_ROW("restart_delay", CFG_IN_BOTH, CFG_T_DURATION,
	    0, CFG_HOUR, "100ms", CFG_ROOM(restart_delay_ms)),
	CFG_ROW("restart_max_delay", CFG_IN_BOTH, CFG_T_DURATION,
	    0, 24 * CFG_HOUR, "10s", CFG_ROOM(restart_max_delay_ms)),
	CFG_ROW("compression", CFG_IN_BOTH, CFG_T_BOOL,
	    0, 0, "yes", CFG_ROOM(compression)),
	CFG_ROW("compression_level", CFG_IN_BOTH, CFG_T_COUNT,
	    1, 9, "1", CFG_ROOM(compression_level)),
	CFG_ROW("compression_min_size", CFG_IN_BOTH, CFG_T_SIZE,
	    0, CFG_GIB, "128", CFG_ROOM(compression_min_size)),
	CFG_ROW("compression_window_bits", CFG_IN_BOTH, CFG_T_COUNT,
	    9, 15, "15", CFG_ROOM(compression_window_bits)),
	CFG_ROW("compression_no_context_takeover", CFG_IN_BOTH, CFG_T_BOOL,
	    0, 0, "yes", CFG_ROOM(compression_no_context_takeover)),
	CFG_ROW("backend", CFG_IN_RESOURCE, CFG_T_BACKEND, 0, 0, NULL, 0),
	{ CFG_ROW_FIELDS("mode", CFG_IN_BOTH, CFG_T_ENUM,
	    0, 0, "room", CFG_ROOM(mode)),
	    .names = cfg_mode_names, .what = "a mode" },
	{ CFG_ROW_FIELDS("format", CFG_IN_BOTH, CFG_T_ENUM,
	    0, 0, NULL, CFG_ROOM(format)),
	    .names = cfg_format_names, .what = "a format" },
	CFG_ROW("binary", CFG_IN_BOTH, CFG_T_BOOL,
	    0, 0, "no", CFG_ROOM(binary)),
	CFG_ROW("env", CFG_IN_BOTH, CFG_T_ENV, 0, 0, "", CFG_ROOM(env)),
	{ CFG_ROW_FIELDS("passenv", CFG_IN_BOTH, CFG_T_LIST,
	    0, 0, "", CFG_ROOM(passenv)),
	    .what = "variable name", .check = cfg_check_env_name },
	CFG_ROW("max_rooms", CFG_IN_RESOURCE, CFG_T_COUNT,
	    0, 1000000, NULL, offsetof(struct cfg_resource, max_rooms)),
	CFG_ROW("cluster", CFG_IN_RESOURCE, CFG_T_BOOL,
	    0, 0, NULL, offsetof(struct cfg_resource, cluster)),
	CFG_ROW("dir", CFG_IN_STATIC, CFG_T_PATH,
	    0, 0, NULL, offsetof(struct cfg_static, dir)),
	CFG_ROW("tls_certificate", CFG_IN_TLS, CFG_T_TEXT,
	    0, 0, NULL, offsetof(struct cfg_tls, certificate)),
	CFG_ROW("tls_key", CFG_IN_TLS, CFG_T_TEXT,
	    0, 0, NULL, offsetof(struct cfg_tls, key)),
	CFG_ROW("redis", CFG_IN_CLUSTER, CFG_T_TEXT,
	    0, 0, NULL, CFG_CL(redis)),
	CFG_ROW("password", CFG_IN_CLUSTER, CFG_T_TEXT,
	    0, 0, NULL, CFG_CL(password)),
	CFG_ROW("db", CFG_IN_CLUSTER, CFG_T_COUNT,
	    0, 1000000, "0", CFG_CL(db)),
	CFG_ROW("node", CFG_IN_CLUSTER, CFG_T_TEXT,
	    0, 0, NULL, CFG_CL(node)),
	CFG_ROW("lease", CFG_IN_CLUSTER, CFG_T_DURATION,
	    500, CFG_HOUR, "5s", CFG_CL(lease_ms)),
	CFG_ROW("stream_max", CFG_IN_CLUSTER, CFG_T_COUNT,
	    100, 100000000, "100000", CFG_CL(stream_max)),
};

#define CFG_NOPTIONS	(sizeof(cfg_options) / sizeof(cfg_options[0]))

#define CFG_SYNTAX	"syntax error: expected [section] or key = value"

struct cfg_error {
	int line;		/* 0: the file as a whole */
	size_t seq;		/* order found, to keep the sort stable */
	char *msg;
};

/* Per section: the line where each option was first set, 0 when unset,
 * and whether its value there was refused. */
struct cfg_setlines {
	int line[CFG_NOPTIONS];
	bool bad[CFG_NOPTIONS];
};

enum cfg_section {
	CFG_SEC_NONE,		/* before the first section header */
	CFG_SEC_GATEWAY,
	CFG_SEC_RESOURCE,	/* cfg->resources[res_idx] */
	CFG_SEC_STATIC,		/* cfg->statics[static_idx] */
	CFG_SEC_TLS,		/* cfg->tls[tls_idx] */
	CFG_SEC_CLUSTER,	/* cfg->cluster */
	CFG_SEC_SKIP,		/* after a rejected header: keys ignored */
};

/* The longest line read (inih's own limit is 199 characters). */
#define CFG_LINE_MAX	65536

struct cfg_parser {
	struct cfg *cfg;
	const char *file;

	/* The reader's position in the text. */
	const char *pos, *end;
	int line;

	enum cfg_section sec;
	size_t res_idx;
	int gateway_line;		/* of the first [gateway], or 0 */
	struct cfg_setlines gw_set;
	struct cfg_setlines *res_set;	/* parallel to cfg->resources */
	size_t res_cap;
	void *res_index;		/* tsearch tree of patterns */
	size_t static_idx;
	struct cfg_setlines *static_set;	/* parallel to cfg->statics */
	size_t tls_idx;
	struct cfg_setlines *tls_set;	/* parallel to cfg->tls */
	struct cfg_setlines cluster_set;
	/* A value too long for inih's line buffer waits here: inih is
	 * handed the key alone, and the handler of that line takes it. */
	char **long_values;
	size_t n_long_values;
	int long_line;			/* the line of the last one */
	bool listen_seen;		/* any listen key, valid or not */
	bool resource_seen;		/* any [resource ...] header */

	struct cfg_error *errs;
	size_t n_errs, cap_errs;
	bool oom;
};

static void cfg_error(struct cfg_parser *, int, const char *, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Record "message" for line.  Bytes that could break the one-error-a-line
 * output (control characters from the file) are shown as '?'.
 */
static void
cfg_error(struct cfg_parser *p, int line, const char *fmt, ...)
{
	struct cfg_error *e;
	va_list ap;
	char *msg, *s;
	int r;

	if (p->oom)
		return;
	if (p->n_errs == p->cap_errs) {
		size_t cap = p->cap_errs ? 2 * p->cap_errs : 8;

		e = realloc(p->errs, cap * sizeof(*e));
		if (e == NULL) {
			p->oom = true;
			return;
		}
		p->errs = e;
		p->cap_errs = cap;
	}
	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r == -1) {
		p->oom = true;
		return;
	}
	for (s = msg; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
	e = &p->errs[p->n_errs];
	e->line = line;
	e->seq = p->n_errs;
	e->msg = msg;
	p->n_errs++;
}

/* By line, whole-file errors (line 0) last, then in the order found. */
static int
cfg_error_cmp(const void *a, const void *b)
{
	const struct cfg_error *x = a, *y = b;
	unsigned int lx = (unsigned int)x->line - 1;
	unsigned int ly = (unsigned int)y->line - 1;

	if (lx != ly)
		return lx < ly ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The collected errors as "FILE:LINE: message\n" lines, or NULL. */
static char *
cfg_errors_join(struct cfg_parser *p)
{
	char *buf = NULL;
	size_t size = 0, i;
	FILE *f;

	qsort(p->errs, p->n_errs, sizeof(*p->errs), cfg_error_cmp);
	if ((f = open_memstream(&buf, &size)) == NULL)
		return NULL;
	for (i = 0; i < p->n_errs; i++)
		fprintf(f, "%s:%d: %s\n", p->file, p->errs[i].line,
		    p->errs[i].msg);
	if (ferror(f)) {
		fclose(f);
		free(buf);
		return NULL;
	}
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static void
cfg_parser_free(struct cfg_parser *p)
{
	size_t i;

	for (i = 0; i < p->n_errs; i++)
		free(p->errs[i].msg);
	free(p->errs);
	free(p->res_set);
	free(p->static_set);
	free(p->tls_set);
	tdestroy(p->res_index, free);
	for (i = 0; i < p->n_long_values; i++)
		free(p->long_values[i]);
	free(p->long_values);
}

/* Value parsers. */

/* Parse leading decimal digits at *sp into *v.  -1: no digit; -2: too
 * large for uint64_t. */
static int
cfg_parse_digits(const char **sp, uint64_t *v)
{
	const char *s = *sp;
	uint64_t n = 0;

	if (!isdigit((unsigned char)*s))
		return -1;
	for (; isdigit((unsigned char)*s); s++) {
		unsigned int d = (unsigned int)(*s - '0');

		if (n > (UINT64_MAX - d) / 10)
			return -2;
		n = n * 10 + d;
	}
	*sp = s;
	*v = n;
	return 0;
}

static int cfg_parse_number(const char *, uint64_t *, const char **);

static int
cfg_parse_count(const char *s, uint64_t *out, const char **why)
{
	if (strcasecmp(s, "auto") == 0) {
		*out = CFG_AUTO;	/* refused by the caller unless allowed */
		return 0;
	}
	return cfg_parse_number(s, out, why);
}

static int
cfg_parse_number(const char *s, uint64_t *out, const char **why)
{
	uint64_t v;
	int r;

	if (*s == '\0') {
		*why = "empty value";
		return -1;
	}
	if ((r = cfg_parse_digits(&s, &v)) == -2) {
		*why = "too large";
		return -1;
	}
	if (r == -1 || *s != '\0') {
		*why = "not a number";
		return -1;
	}
	*out = v;
	return 0;
}

int
cfg_parse_size(const char *s, uint64_t *out, const char **why)
{
	uint64_t v, mul = 1;
	int r;

	if (*s == '\0') {
		*why = "empty value";
		return -1;
	}
	if ((r = cfg_parse_digits(&s, &v)) == -2) {
		*why = "too large";
		return -1;
	}
	if (r == 0) {
		switch (*s) {
		case '\0':
			break;
		case 'k':
		case 'K':
			mul = CFG_KIB;
			s++;
			break;
		case 'm':
		case 'M':
			mul = CFG_MIB;
			s++;
			break;
		case 'g':
		case 'G':
			mul = CFG_GIB;
			s++;
			break;
		default:
			r = -1;
		}
	}
	if (r == -1 || *s != '\0') {
		*why = "not a size (a number with an optional K, M or G "
		    "suffix)";
		return -1;
	}
	if (v > UINT64_MAX / mul) {
		*why = "too large";
		return -1;
	}
	*out = v * mul;
	return 0;
}

int
cfg_parse_duration(const char *s, uint64_t *ms, const char **why)
{
	uint64_t v, mul;
	int r;

	if (*s == '\0') {
		*why = "empty value";
		return -1;
	}
	if ((r = cfg_parse_digits(&s, &v)) == -2) {
		*why = "too large";
		return -1;
	}
	if (r == 0 && strcmp(s, "ms") == 0)
		mul = 1;
	else if (r == 0 && (strcmp(s, "s") == 0 || *s == '\0'))
		mul = CFG_SEC;
	else if (r == 0 && strcmp(s, "m") == 0)
		mul = CFG_MIN;
	else if (r == 0 && strcmp(s, "h") == 0)
		mul = CFG_HOUR;
	else {
		*why = "not a duration (a number with an optional ms, s, m "
		    "or h suffix)";
		return -1;
	}
	if (v > UINT64_MAX / mul) {
		*why = "too large";
		return -1;
	}
	*ms = v * mul;
	return 0;
}

int
cfg_parse_bool(const char *s, bool *out, const char **why)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	*why = *s == '\0' ? "empty value" :
	    "not a boolean (yes, no, true, false, on, off, 1 or 0)";
	return -1;
}

/* One of names, without regard to case: its index into *out. */
static int
cfg_parse_enum(const char *s, const char *const *names, unsigned int *out)
{
	unsigned int i;

	for (i = 0; names[i] != NULL; i++) {
		if (names[i][0] != '\0' && strcasecmp(s, names[i]) == 0) {
			*out = i;
			return 0;
		}
	}
	return -1;
}

/* An environment variable's name: a letter or '_', then letters, digits
 * and '_' (what a shell can name). */
static int
cfg_check_env_name(const char *item, const char **why)
{
	const char *s = item;
	bool ok = isalpha((unsigned char)*s) || *s == '_';

	for (; ok && *s != '\0'; s++)
		ok = isalnum((unsigned char)*s) || *s == '_';
	if (!ok) {
		*why = "not a variable name (a letter or '_', then letters, "
		    "digits and '_')";
		return -1;
	}
	return 0;
}

static int
cfg_check_subprotocol(const char *item, const char **why)
{
	if (!http_req_is_token(item, strlen(item))) {
		*why = "not a token (letters, digits and !#$%&'*+-.^_`|~)";
		return -1;
	}
	return 0;
}

/* A port: 1 to 5 digits, 1..65535. */
static int
cfg_parse_port(const char *s, in_port_t *port, const char **why)
{
	uint64_t v;

	if (strlen(s) > 5 || cfg_parse_digits(&s, &v) != 0 || *s != '\0') {
		*why = "not a port number";
		return -1;
	}
	if (v < 1 || v > 65535) {
		*why = "port out of range 1..65535";
		return -1;
	}
	*port = (in_port_t)v;
	return 0;
}

int
cfg_parse_listen(const char *s, struct sockaddr_storage *addr,
    socklen_t *addr_len, const char **why)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)addr;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)addr;
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon, *rb;
	in_port_t port;
	size_t hlen;

	memset(addr, 0, sizeof(*addr));
	if (*s == '\0') {
		*why = "empty value";
		return -1;
	}
	if (*s == '[') {
		if ((rb = strchr(s, ']')) == NULL || rb[1] != ':') {
			*why = "expected [IPV6]:PORT";
			return -1;
		}
		hlen = (size_t)(rb - s - 1);
		if (hlen >= sizeof(host)) {
			*why = "not a numeric IPv6 address";
			return -1;
		}
		memcpy(host, s + 1, hlen);
		host[hlen] = '\0';
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
			*why = "not a numeric IPv6 address";
			return -1;
		}
		if (cfg_parse_port(rb + 2, &port, why) == -1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*addr_len = sizeof(*sin6);
		return 0;
	}
	if ((colon = strrchr(s, ':')) == NULL) {
		*why = "expected IPV4:PORT, [IPV6]:PORT or *:PORT";
		return -1;
	}
	hlen = (size_t)(colon - s);
	if (memchr(s, ':', hlen) != NULL) {
		*why = "an IPv6 address needs brackets, as in [::1]:8080";
		return -1;
	}
	if (hlen == 0) {
		*why = "missing address (*:PORT listens on every IPv4 address)";
		return -1;
	}
	if (hlen >= sizeof(host)) {
		*why = "not a numeric IPv4 address";
		return -1;
	}
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (strcmp(host, "*") == 0)
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
	else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
		*why = "not a numeric IPv4 address";
		return -1;
	}
	if (cfg_parse_port(colon + 1, &port, why) == -1)
		return -1;
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	*addr_len = sizeof(*sin);
	return 0;
}

void
cfg_argv_free(char **argv)
{
	size_t i;

	if (argv == NULL)
		return;
	for (i = 0; argv[i] != NULL; i++)
		free(argv[i]);
	free(argv);
}

static bool
cfg_is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n';
}

char **
cfg_split_argv(const char *cmd, const char **why)
{
	const char *s = cmd, *q;
	char **argv = NULL, **nargv, *word;
	size_t argc = 0, wl;
	bool any;

	*why = NULL;
	/* A word is never longer than the command. */
	if ((word = malloc(strlen(cmd) + 1)) == NULL)
		return NULL;
	for (;;) {
		while (cfg_is_blank(*s))
			s++;
		if (*s == '\0')
			break;
		wl = 0;
		any = false;	/* an empty quoted word ('') still counts */
		while (*s != '\0' && !cfg_is_blank(*s)) {
			if (*s == '\\') {
				if (s[1] == '\n') {	/* continuation */
					s += 2;
					continue;
				}
				if (s[1] == '\0')		/* literal */
					word[wl++] = *s++;
				else {
					word[wl++] = s[1];
					s += 2;
				}
			} else if (*s == '\'') {
				if ((q = strchr(s + 1, '\'')) == NULL) {
					*why = "unbalanced single quote";
					goto fail;
				}
				memcpy(word + wl, s + 1, (size_t)(q - s - 1));
				wl += (size_t)(q - s - 1);
				s = q + 1;
			} else if (*s == '"') {
				for (s++; *s != '"'; ) {
					if (*s == '\0') {
						*why = "unbalanced double "
						    "quote";
						goto fail;
					}
					if (*s == '\\' && s[1] == '\n')
						s += 2;
					else if (*s == '\\' && s[1] != '\0' &&
					    strchr("\"\\$`", s[1]) != NULL) {
						word[wl++] = s[1];
						s += 2;
					} else
						word[wl++] = *s++;
				}
				s++;
			} else
				word[wl++] = *s++;
			any = true;
		}
		if (!any && wl == 0)
			continue;
		word[wl] = '\0';
		nargv = realloc(argv, (argc + 2) * sizeof(*argv));
		if (nargv == NULL)
			goto fail;
		argv = nargv;
		if ((argv[argc] = strdup(word)) == NULL)
			goto fail;
		argv[++argc] = NULL;
	}
	if (argc == 0 || argv[0][0] == '\0') {
		*why = "empty command";
		goto fail;
	}
	free(word);
	return argv;

fail:
	if (argv != NULL) {
		argv[argc] = NULL;	/* a failed strdup left a hole */
		cfg_argv_free(argv);
	}
	free(word);
	return NULL;
}

/* Bounds, for messages: "16K", "1h", "100ms", "0". */
static void
cfg_format(enum cfg_type type, uint64_t v, char *buf, size_t size)
{
	static const struct {
		enum cfg_type type;
		uint64_t unit;
		const char *suffix;
	} units[] = {
		{ CFG_T_SIZE, CFG_GIB, "G" },
		{ CFG_T_SIZE, CFG_MIB, "M" },
		{ CFG_T_SIZE, CFG_KIB, "K" },
		{ CFG_T_DURATION, CFG_HOUR, "h" },
		{ CFG_T_DURATION, CFG_MIN, "m" },
		{ CFG_T_DURATION, CFG_SEC, "s" },
		{ CFG_T_DURATION, 1, "ms" },
	};
	size_t i;

	if (v != 0) {
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			if (units[i].type == type && v % units[i].unit == 0) {
				snprintf(buf, size, "%llu%s",
				    (unsigned long long)(v / units[i].unit),
				    units[i].suffix);
				return;
			}
		}
	}
	snprintf(buf, size, "%llu", (unsigned long long)v);
}

/* The model. */

/* The list field of option o (a CFG_T_LIST row) in base. */
static const char *const **
cfg_list_field(const struct cfg_option *o, void *base)
{
	return (const char *const **)(void *)((char *)base + o->offset);
}

static void
cfg_list_free(const char *const *list)
{
	size_t i;

	if (list == NULL)
		return;
	for (i = 0; list[i] != NULL; i++)
		free((void *)list[i]);
	free((void *)list);
}

/* Free the lists of opts, but those it shares with shared (NULL: none). */
static void
cfg_room_opts_free(struct cfg_room_opts *opts,
    struct cfg_room_opts *shared)
{
	const char *const **f;
	size_t i;

	for (i = 0; i < CFG_NOPTIONS; i++) {
		if (cfg_options[i].type != CFG_T_LIST &&
		    cfg_options[i].type != CFG_T_ENV)
			continue;
		f = cfg_list_field(&cfg_options[i], opts);
		if (shared == NULL ||
		    *f != *cfg_list_field(&cfg_options[i], shared))
			cfg_list_free(*f);
		*f = NULL;
	}
}

void
cfg_free(struct cfg *cfg)
{
	size_t i;

	if (cfg == NULL)
		return;
	for (i = 0; i < cfg->n_listens; i++)
		free(cfg->listens[i].text);
	free(cfg->listens);
	for (i = 0; i < cfg->n_resources; i++) {
		free(cfg->resources[i].pattern);
		free(cfg->resources[i].backend);
		free(cfg->resources[i].unix_path);
		cfg_argv_free(cfg->resources[i].argv);
		cfg_room_opts_free(&cfg->resources[i].opts, &cfg->defaults);
	}
	free(cfg->resources);
	free(cfg->by_pattern);
	for (i = 0; i < cfg->n_statics; i++) {
		free(cfg->statics[i].prefix);
		free(cfg->statics[i].dir);
	}
	free(cfg->statics);
	free(cfg->static_dir);
	for (i = 0; i < cfg->n_tls; i++) {
		free(cfg->tls[i].name);
		free(cfg->tls[i].certificate.value);
		free(cfg->tls[i].key.value);
	}
	free(cfg->tls);
	free(cfg->tls_certificate.value);
	free(cfg->tls_key.value);
	free(cfg->user.value);
	free(cfg->group.value);
	free(cfg->cluster.redis.value);
	free(cfg->cluster.node.value);
	free(cfg->cluster.password.value);
	cfg_room_opts_free(&cfg->defaults, NULL);
	free(cfg->file);
	free(cfg);
}

const struct cfg_resource *
cfg_match(const struct cfg *cfg, const char *path, size_t len)
{
	const struct cfg_resource *r;
	size_t i;

	for (i = 0; i < cfg->n_resources; i++) {
		r = &cfg->resources[i];
		if (r->is_prefix) {
			if (len > r->prefix_len &&
			    memcmp(path, r->pattern, r->prefix_len) == 0)
				return r;
		} else if (strlen(r->pattern) == len &&
		    memcmp(path, r->pattern, len) == 0)
			return r;
	}
	return NULL;
}

/*
 * Split value into a list at blanks and commas, check each item, and store
 * it in place of the field's list.  Every bad or repeated item is
 * reported; then the field keeps its list.  Returns 0 or -1.
 */
static int
cfg_set_list(struct cfg_parser *p, const struct cfg_option *o, void *base,
    const char *value, int line)
{
	const char *const **field = cfg_list_field(o, base);
	const char *s = value, *why;
	char **list, **nlist, *item;
	size_t n = 0, i, len;
	bool bad = false, dup;

	if ((list = calloc(1, sizeof(*list))) == NULL) {
		p->oom = true;
		return -1;
	}
	for (;;) {
		s += strspn(s, CFG_LIST_SEP);
		if (*s == '\0')
			break;
		len = strcspn(s, CFG_LIST_SEP);
		if ((item = strndup(s, len)) == NULL)
			goto oom;
		s += len;
		why = NULL;
		if (o->check(item, &why) == -1) {
			cfg_error(p, line, "%s: invalid %s '%s': %s", o->name,
			    o->what, item, why);
			bad = true;
			free(item);
			continue;
		}
		for (dup = false, i = 0; i < n && !dup; i++)
			dup = (o->flags & CFG_F_NOCASE) ?
			    strcasecmp(list[i], item) == 0 :
			    strcmp(list[i], item) == 0;
		if (dup) {
			cfg_error(p, line, "%s: duplicate %s '%s'", o->name,
			    o->what, item);
			bad = true;
			free(item);
			continue;
		}
		if ((nlist = realloc(list, (n + 2) * sizeof(*list))) == NULL) {
			free(item);
			goto oom;
		}
		list = nlist;
		list[n++] = item;
		list[n] = NULL;
	}
	if (bad) {
		cfg_list_free((const char *const *)list);
		return -1;
	}
	cfg_list_free(*field);
	*field = (const char *const *)list;
	return 0;

oom:
	p->oom = true;
	cfg_list_free((const char *const *)list);
	return -1;
}

/* "a, b, c or d" for a NULL-terminated list of names. */
static void
cfg_join_names(const char *const *names, char *buf, size_t size)
{
	size_t i, n = 0;
	bool first = true;

	buf[0] = '\0';
	for (i = 0; names[i] != NULL && n < size; i++) {
		if (names[i][0] == '\0')
			continue;	/* the unset state of an enum */
		n += (size_t)snprintf(buf + n, size - n, "%s%s",
		    first ? "" : names[i + 1] == NULL ? " or " : ", ",
		    names[i]);
		first = false;
	}
}

/* Add one NAME=VALUE to an env list.  Returns 0, or -1 when refused. */
static int
cfg_add_env(struct cfg_parser *p, const char *const **field,
    const char *value, int line)
{
	const char *eq = strchr(value, '='), *why = NULL;
	const char **list;
	char *name;
	size_t n;

	if (eq == NULL) {
		cfg_error(p, line, "env: invalid value '%s': expected "
		    "NAME=VALUE", value);
		return -1;
	}
	if ((name = strndup(value, (size_t)(eq - value))) == NULL) {
		p->oom = true;
		return -1;
	}
	if (cfg_check_env_name(name, &why) == -1) {
		cfg_error(p, line, "env: invalid name '%s': %s", name, why);
		free(name);
		return -1;
	}
	free(name);
	for (n = 0; *field != NULL && (*field)[n] != NULL; n++)
		;
	if ((list = realloc((void *)*field, (n + 2) * sizeof(*list))) == NULL) {
		p->oom = true;
		return -1;
	}
	*field = list;
	if ((list[n] = strdup(value)) == NULL) {
		p->oom = true;
		return -1;
	}
	list[n + 1] = NULL;
	return 0;
}

/* Store value, as option o, at base + o->offset.  Returns 0, or -1 when
 * the value was refused (and reported). */
static int
cfg_set_value(struct cfg_parser *p, const struct cfg_option *o, void *base,
    const char *value, int line)
{
	char *field = (char *)base + o->offset, lo[32], hi[32], names[128];
	const char *why = NULL;
	unsigned int e;
	uint64_t v = 0;
	bool b;
	int r = -1;

	switch (o->type) {
	case CFG_T_COUNT:
		r = cfg_parse_count(value, &v, &why);
		if (r == 0 && v == CFG_AUTO) {
			if (o->flags & CFG_F_AUTO) {
				*(uint64_t *)field = v;
				return 0;
			}
			r = -1;
			why = "not a number";
		}
		break;
	case CFG_T_SIZE:
		r = cfg_parse_size(value, &v, &why);
		break;
	case CFG_T_DURATION:
		r = cfg_parse_duration(value, &v, &why);
		break;
	case CFG_T_BOOL:
		if ((r = cfg_parse_bool(value, &b, &why)) == 0) {
			*(bool *)field = b;
			return 0;
		}
		break;
	case CFG_T_ENUM:
		if (cfg_parse_enum(value, o->names, &e) == 0) {
			memcpy(field, &e, sizeof(e));
			return 0;
		}
		cfg_join_names(o->names, names, sizeof(names));
		cfg_error(p, line, "%s: invalid value '%s': not %s (%s)",
		    o->name, value, o->what, names);
		return -1;
	case CFG_T_LIST:
		return cfg_set_list(p, o, base, value, line);
	case CFG_T_ENV:
		if (*value == '\0') {	/* the default: no variables */
			cfg_list_free(*cfg_list_field(o, base));
			*cfg_list_field(o, base) = calloc(1, sizeof(char *));
			if (*cfg_list_field(o, base) == NULL)
				p->oom = true;
			return 0;
		}
		return cfg_add_env(p, cfg_list_field(o, base), value, line);
	case CFG_T_PATH:
		free(*(char **)(void *)field);
		if ((*(char **)(void *)field = strdup(value)) == NULL)
			p->oom = true;
		return 0;
	case CFG_T_TEXT: {
		struct cfg_text *t = (struct cfg_text *)(void *)field;

		free(t->value);
		t->line = line;
		if ((t->value = strdup(value)) == NULL)
			p->oom = true;
		return 0;
	}
	case CFG_T_LISTEN:
	case CFG_T_BACKEND:
		return 0;	/* not stored through an offset */
	}
	if (r == -1) {
		cfg_error(p, line, "%s: invalid value '%s': %s", o->name,
		    value, why);
		return -1;
	}
	if (v < o->min || v > o->max) {
		cfg_format(o->type, o->min, lo, sizeof(lo));
		cfg_format(o->type, o->max, hi, sizeof(hi));
		cfg_error(p, line, "%s: %s is out of range %s..%s", o->name,
		    value, lo, hi);
		return -1;
	}
	*(uint64_t *)field = v;
	return 0;
}

/* Two listen addresses of one family and port, one of them the wildcard:
 * the second bind would fail with EADDRINUSE. */
static bool
cfg_listen_overlap(const struct sockaddr_storage *a,
    const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

		return x->sin_port == y->sin_port &&
		    (x->sin_addr.s_addr == htonl(INADDR_ANY) ||
		    y->sin_addr.s_addr == htonl(INADDR_ANY));
	} else {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		    (IN6_IS_ADDR_UNSPECIFIED(&x->sin6_addr) ||
		    IN6_IS_ADDR_UNSPECIFIED(&y->sin6_addr));
	}
}

static void
cfg_add_listen(struct cfg_parser *p, const char *value, int line, bool admin)
{
	struct cfg *cfg = p->cfg;
	struct cfg_listen *l;
	struct sockaddr_storage ss;
	socklen_t len;
	const char *why = NULL, *flags;
	char *addr;
	bool tls = false, proxy = false;
	size_t i, n;

	if (!admin)
		p->listen_seen = true;
	/* The address, then flags: "127.0.0.1:8443 tls proxy". */
	n = strcspn(value, CFG_LIST_SEP);
	if ((addr = strndup(value, n)) == NULL) {
		p->oom = true;
		return;
	}
	for (flags = value + n; *(flags += strspn(flags, CFG_LIST_SEP)) != '\0';
	    flags += n) {
		n = strcspn(flags, CFG_LIST_SEP);
		if (!admin && n == 3 && strncmp(flags, "tls", 3) == 0) {
			tls = true;
		} else if (!admin && n == 5 && strncmp(flags, "proxy", 5) == 0) {
			proxy = true;
		} else {
			cfg_error(p, line, "%s: unknown flag '%.*s'%s", admin ?
			    "admin_listen" : "listen", (int)n, flags, admin ?
			    "" : " (expected tls or proxy)");
			free(addr);
			return;
		}
	}
	/* The admin listener may be a Unix socket, which file modes
	 * protect better than a port. */
	if (admin && (addr[0] == '/' || strncmp(addr, "unix:", 5) == 0)) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
		const char *path = addr[0] == '/' ? addr : addr + 5;

		memset(&ss, 0, sizeof(ss));
		if (*path == '\0' || strlen(path) >= sizeof(sun->sun_path)) {
			cfg_error(p, line, "admin_listen: invalid Unix socket "
			    "path '%s' (1 to %zu bytes)", path,
			    sizeof(sun->sun_path) - 1);
			free(addr);
			return;
		}
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, path, strlen(path));
		len = (socklen_t)sizeof(*sun);
	} else if (cfg_parse_listen(addr, &ss, &len, &why) == -1) {
		cfg_error(p, line, "%s: invalid value '%s': %s", admin ?
		    "admin_listen" : "listen", addr, why);
		free(addr);
		return;
	}
	for (i = 0; i < cfg->n_listens; i++) {
		l = &cfg->listens[i];
		if (l->addr_len == len && memcmp(&l->addr, &ss, len) == 0) {
			cfg_error(p, line, "duplicate listen address '%s' "
			    "(first at line %d as '%s')", addr, l->line,
			    l->text);
			free(addr);
			return;
		}
		if (cfg_listen_overlap(&l->addr, &ss)) {
			cfg_error(p, line, "listen address '%s' overlaps '%s' "
			    "(line %d): a wildcard address and another one of "
			    "the same family cannot both be bound to one port",
			    addr, l->text, l->line);
			free(addr);
			return;
		}
	}
	l = realloc(cfg->listens, (cfg->n_listens + 1) * sizeof(*l));
	if (l == NULL) {
		p->oom = true;
		free(addr);
		return;
	}
	cfg->listens = l;
	l = &cfg->listens[cfg->n_listens++];
	memset(l, 0, sizeof(*l));
	l->addr = ss;
	l->addr_len = len;
	l->line = line;
	l->tls = tls;
	l->proxy = proxy;
	l->admin = admin;
	l->text = addr;
	cfg->has_tls |= tls;
}

/* *:PORT listens on every address; it names no host to connect to. */
static bool
cfg_tcp_unspecified(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr ==
		    htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(
	    &((const struct sockaddr_in6 *)ss)->sin6_addr);
}

static void
cfg_set_backend(struct cfg_parser *p, struct cfg_resource *r,
    const char *value, int line)
{
	const char *why = NULL;

	if (strncmp(value, "unix:", 5) == 0) {
		const char *path = value + 5;

		if (*path == '\0') {
			cfg_error(p, line, "backend: empty unix socket path");
			return;
		}
		if (strlen(path) >= CFG_SUN_PATH) {
			cfg_error(p, line, "backend: unix socket path longer "
			    "than %zu bytes", CFG_SUN_PATH - 1);
			return;
		}
		r->backend_kind = CFG_BACKEND_UNIX;
		if ((r->unix_path = strdup(path)) == NULL) {
			p->oom = true;
			return;
		}
	} else if (strncmp(value, "tcp:", 4) == 0) {
		/* Numeric, as listen is: no name resolution on the loop. */
		if (cfg_parse_listen(value + 4, &r->tcp_addr, &r->tcp_addr_len,
		    &why) == -1 || cfg_tcp_unspecified(&r->tcp_addr)) {
			cfg_error(p, line, "backend: '%s': %s", value,
			    why != NULL ? why : "the address is unspecified");
			return;
		}
		r->backend_kind = CFG_BACKEND_TCP;
	} else if (strncmp(value, "exec:", 5) == 0) {
		r->backend_kind = CFG_BACKEND_EXEC;
		if ((r->argv = cfg_split_argv(value + 5, &why)) == NULL) {
			if (why == NULL)
				p->oom = true;
			else
				cfg_error(p, line, "backend: %s in '%s'", why,
				    value);
			return;
		}
	} else {
		cfg_error(p, line, "backend: invalid value '%s': expected "
		    "unix:PATH, tcp:ADDR:PORT or exec:COMMAND [ARGS]", value);
		return;
	}
	if ((r->backend = strdup(value)) == NULL)
		p->oom = true;
}

/* The row of name for a section of kind scope (max_rooms has two rows:
 * the global bound in [gateway], a resource's own in [resource]); else
 * the first row of that name, for the message that it is misplaced. */
static const struct cfg_option *
cfg_option_find(const char *name, int scope)
{
	const struct cfg_option *first = NULL;
	size_t i;

	for (i = 0; i < CFG_NOPTIONS; i++) {
		if (strcmp(cfg_options[i].name, name) != 0)
			continue;
		if (cfg_options[i].scope & scope)
			return &cfg_options[i];
		if (first == NULL)
			first = &cfg_options[i];
	}
	return first;
}

/* A resource pattern seen, for duplicates in one look-up each. */
struct cfg_seen {
	const char *pattern;
	int line;
};

static int
cfg_seen_cmp(const void *a, const void *b)
{
	return strcmp(((const struct cfg_seen *)a)->pattern,
	    ((const struct cfg_seen *)b)->pattern);
}

/* The text after "[resource": why path is not a resource path, or NULL. */
static const char *
cfg_check_path(const char *path)
{
	const char *s;

	if (*path != '/')
		return "must start with '/'";
	for (s = path; *s != '\0'; s++) {
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return "must not contain whitespace or control "
			    "characters";
		if (*s == '?' || *s == '#')
			return "must not contain '?' or '#'";
		if (*s == '*' && (s[-1] != '/' || s[1] != '\0'))
			return "'*' is only allowed as a final '/*'";
	}
	return NULL;
}

static void
cfg_begin_resource(struct cfg_parser *p, const char *path, int line)
{
	struct cfg *cfg = p->cfg;
	struct cfg_resource *r;
	struct cfg_setlines *sl;
	struct cfg_seen key, *seen, **found;
	const char *why;
	size_t n;

	p->resource_seen = true;
	if ((why = cfg_check_path(path)) != NULL) {
		cfg_error(p, line, "resource path '%s' %s", path, why);
		return;
	}
	key.pattern = path;
	if ((found = tfind(&key, &p->res_index, cfg_seen_cmp)) != NULL) {
		cfg_error(p, line, "duplicate [resource %s] (first at line %d)",
		    path, (*found)->line);
		return;
	}
	if (cfg->n_resources == p->res_cap) {
		n = p->res_cap ? 2 * p->res_cap : 4;
		if ((r = realloc(cfg->resources, n * sizeof(*r))) == NULL) {
			p->oom = true;
			return;
		}
		cfg->resources = r;
		if ((sl = realloc(p->res_set, n * sizeof(*sl))) == NULL) {
			p->oom = true;
			return;
		}
		p->res_set = sl;
		p->res_cap = n;
	}
	p->res_idx = cfg->n_resources++;
	r = &cfg->resources[p->res_idx];
	memset(r, 0, sizeof(*r));
	memset(&p->res_set[p->res_idx], 0, sizeof(p->res_set[0]));
	r->line = line;
	r->cluster = true;
	if ((r->pattern = strdup(path)) == NULL ||
	    (seen = malloc(sizeof(*seen))) == NULL) {
		p->oom = true;
		return;
	}
	seen->pattern = r->pattern;
	seen->line = line;
	if (tsearch(seen, &p->res_index, cfg_seen_cmp) == NULL) {
		free(seen);
		p->oom = true;
		return;
	}
	n = strlen(path);
	if (n >= 2 && strcmp(path + n - 2, "/*") == 0) {
		r->is_prefix = true;
		r->prefix_len = n - 1;
	}
	p->sec = CFG_SEC_RESOURCE;
}

/* [static PREFIX]: PREFIX is a path; a final '/' is implied. */
static void
cfg_begin_static(struct cfg_parser *p, const char *prefix, int line)
{
	struct cfg *cfg = p->cfg;
	struct cfg_static *st;
	struct cfg_setlines *sl;
	const char *why;
	size_t i, n = strlen(prefix);

	if ((why = cfg_check_path(prefix)) != NULL || strchr(prefix, '*')) {
		cfg_error(p, line, "static prefix '%s' %s", prefix,
		    why != NULL ? why : "must not contain '*'");
		return;
	}
	for (i = 0; i < cfg->n_statics; i++) {
		const char *q = cfg->statics[i].prefix;

		if (strncmp(q, prefix, n) == 0 && (q[n] == '\0' ||
		    (q[n] == '/' && q[n + 1] == '\0'))) {
			cfg_error(p, line, "duplicate [static %s] (first at "
			    "line %d)", prefix, cfg->statics[i].line);
			return;
		}
	}
	if ((st = realloc(cfg->statics, (cfg->n_statics + 1) *
	    sizeof(*st))) == NULL) {
		p->oom = true;
		return;
	}
	cfg->statics = st;
	if ((sl = realloc(p->static_set, (cfg->n_statics + 1) *
	    sizeof(*sl))) == NULL) {
		p->oom = true;
		return;
	}
	p->static_set = sl;
	p->static_idx = cfg->n_statics++;
	st = &cfg->statics[p->static_idx];
	memset(st, 0, sizeof(*st));
	memset(&p->static_set[p->static_idx], 0, sizeof(*sl));
	st->line = line;
	if (asprintf(&st->prefix, "%s%s", prefix,
	    prefix[n - 1] == '/' ? "" : "/") == -1) {
		st->prefix = NULL;
		p->oom = true;
		return;
	}
	p->sec = CFG_SEC_STATIC;
}

/* A host name for SNI: labels of letters, digits and '-', the first of
 * them may be "*" (any one label). */
static const char *
cfg_check_server_name(const char *name)
{
	const char *s = name;
	size_t label = 0;

	if (strncmp(s, "*.", 2) == 0)
		s += 2;
	if (*s == '\0' || strlen(name) > 253)
		return "is not a host name";
	for (; *s != '\0'; s++) {
		if (*s == '.') {
			if (label == 0)
				return "has an empty label";
			label = 0;
		} else if (isalnum((unsigned char)*s) || *s == '-') {
			if (++label > 63)
				return "has a label longer than 63 characters";
		} else {
			return "is not a host name (letters, digits, '-' and "
			    "'.', or \"*.\" and a domain)";
		}
	}
	return label == 0 ? "ends in a dot" : NULL;
}

/* [tls NAME]: the certificate for a server name. */
static void
cfg_begin_tls(struct cfg_parser *p, const char *name, int line)
{
	struct cfg *cfg = p->cfg;
	struct cfg_tls *t;
	struct cfg_setlines *sl;
	const char *why;
	size_t i;

	if ((why = cfg_check_server_name(name)) != NULL) {
		cfg_error(p, line, "[tls %s]: the name %s", name, why);
		return;
	}
	for (i = 0; i < cfg->n_tls; i++) {
		if (strcasecmp(cfg->tls[i].name, name) == 0) {
			cfg_error(p, line, "duplicate [tls %s] (first at line "
			    "%d)", name, cfg->tls[i].line);
			return;
		}
	}
	if ((t = realloc(cfg->tls, (cfg->n_tls + 1) * sizeof(*t))) == NULL) {
		p->oom = true;
		return;
	}
	cfg->tls = t;
	if ((sl = realloc(p->tls_set, (cfg->n_tls + 1) * sizeof(*sl))) == NULL) {
		p->oom = true;
		return;
	}
	p->tls_set = sl;
	p->tls_idx = cfg->n_tls++;
	t = &cfg->tls[p->tls_idx];
	memset(t, 0, sizeof(*t));
	memset(&p->tls_set[p->tls_idx], 0, sizeof(*sl));
	t->line = line;
	if ((t->name = strdup(name)) == NULL) {
		p->oom = true;
		return;
	}
	p->sec = CFG_SEC_TLS;
}

/* "[word ARG]": ARG when name is that, else NULL; "" when ARG is
 * missing. */
static const char *
cfg_section_arg(const char *name, const char *word)
{
	size_t n = strlen(word);

	if (strncmp(name, word, n) != 0 ||
	    (name[n] != '\0' && !isspace((unsigned char)name[n])))
		return NULL;
	for (name += n; isspace((unsigned char)*name); name++)
		;
	return name;
}

/* A section header: name is what stands between the brackets, trimmed. */
static void
cfg_begin_section(struct cfg_parser *p, const char *name, int line)
{
	const char *path;

	p->sec = CFG_SEC_SKIP;
	if (strcmp(name, "gateway") == 0) {
		if (p->gateway_line != 0) {
			cfg_error(p, line, "duplicate [gateway] section (first "
			    "at line %d)", p->gateway_line);
			return;
		}
		p->gateway_line = line;
		p->sec = CFG_SEC_GATEWAY;
	} else if ((path = cfg_section_arg(name, "resource")) != NULL) {
		if (*path == '\0') {
			p->resource_seen = true;
			cfg_error(p, line, "missing path in [resource PATH]");
			return;
		}
		cfg_begin_resource(p, path, line);
	} else if ((path = cfg_section_arg(name, "static")) != NULL) {
		if (*path == '\0') {
			cfg_error(p, line, "missing prefix in [static PREFIX]");
			return;
		}
		cfg_begin_static(p, path, line);
	} else if ((path = cfg_section_arg(name, "tls")) != NULL) {
		if (*path == '\0') {
			cfg_error(p, line, "missing name in [tls NAME]");
			return;
		}
		cfg_begin_tls(p, path, line);
	} else if (strcmp(name, "cluster") == 0) {
		if (p->cfg->cluster.line != 0) {
			cfg_error(p, line, "duplicate [cluster] section (first "
			    "at line %d)", p->cfg->cluster.line);
			return;
		}
		p->cfg->cluster.line = line;
		p->sec = CFG_SEC_CLUSTER;
	} else
		cfg_error(p, line, "unknown section [%s] (expected [gateway], "
		    "[resource PATH], [static PREFIX], [tls NAME] or "
		    "[cluster])", name);
}

/*
 * Where inih's ini_find_chars_or_comment stops: at one of chars, at an
 * inline comment (';' after whitespace), or at the end.
 */
static const char *
cfg_find_chars_or_comment(const char *s, const char *end, const char *chars)
{
	bool was_space = false;

	for (; s < end; s++) {
		if (strchr(chars, *s) != NULL || (was_space && *s == ';'))
			break;
		was_space = isspace((unsigned char)*s);
	}
	return s;
}

/*
 * Handle one line, s[0..n) (indentation stripped): section headers are
 * parsed here; returns false for a line to hide from inih.
 */
static bool
cfg_read_line(struct cfg_parser *p, const char *s, size_t n)
{
	const char *end = s + n, *e, *a, *b;
	char *name;

	if (n == 0 || *s == ';' || *s == '#')
		return false;
	if (*s != '[') {
		e = cfg_find_chars_or_comment(s, end, "=:");
		/* No '=' (before a comment), or no key before it. */
		if (e == end || *e == ';' || e == s) {
			cfg_error(p, p->line, CFG_SYNTAX);
			return false;
		}
		return true;
	}
	e = cfg_find_chars_or_comment(s + 1, end, "]");
	for (b = e + (e < end); b < end && isspace((unsigned char)*b); b++)
		;
	if (e == end || *e != ']' || (b < end && *b != ';')) {
		cfg_error(p, p->line, CFG_SYNTAX);
		p->sec = CFG_SEC_SKIP;
		return false;
	}
	for (a = s + 1; a < e && isspace((unsigned char)*a); a++)
		;
	for (b = e; b > a && isspace((unsigned char)b[-1]); b--)
		;
	if ((name = strndup(a, (size_t)(b - a))) == NULL) {
		p->oom = true;
		return false;
	}
	cfg_begin_section(p, name, p->line);
	free(name);
	return true;
}

/*
 * A key = value line longer than inih's buffer: the value waits in
 * long_values and inih gets "key=" and a reference to it.  The value is
 * cut as inih cuts one: at an inline comment, blanks trimmed.
 */
static void
cfg_reader_long(struct cfg_parser *p, const char *s, size_t n, char *str,
    size_t size)
{
	const char *end = s + n, *eq, *k, *v, *ve;
	char **nv;

	eq = cfg_find_chars_or_comment(s, end, "=:");
	for (k = eq; k > s && isspace((unsigned char)k[-1]); k--)
		;
	for (v = eq + 1; v < end && isspace((unsigned char)*v); v++)
		;
	ve = cfg_find_chars_or_comment(v, end, "");
	while (ve > v && isspace((unsigned char)ve[-1]))
		ve--;
	if ((size_t)(k - s) + 24 > size) {
		cfg_error(p, p->line, "key too long");
		return;
	}
	nv = realloc(p->long_values, (p->n_long_values + 1) * sizeof(*nv));
	if (nv == NULL) {
		p->oom = true;
		return;
	}
	p->long_values = nv;
	if ((nv[p->n_long_values] = strndup(v, (size_t)(ve - v))) == NULL) {
		p->oom = true;
		return;
	}
	snprintf(str, size, "%.*s=", (int)(k - s), s);
	p->n_long_values++;
	p->long_line = p->line;
}

/*
 * The ini_reader: inih calls it once per line, with a buffer of num bytes.
 * Copies the next line of the text without its LF or CRLF and without its
 * indentation, or an empty line in place of one it rejects.
 */
static char *
cfg_reader(char *str, int num, void *stream)
{
	struct cfg_parser *p = stream;
	const char *s = p->pos, *nl, *e;
	size_t n, full;

	if (s == p->end || num < 2)
		return NULL;
	nl = memchr(s, '\n', (size_t)(p->end - s));
	e = nl != NULL ? nl : p->end;
	p->pos = nl != NULL ? nl + 1 : p->end;
	p->line++;
	if (e > s && e[-1] == '\r')
		e--;
	if (p->line == 1 && e - s >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
		s += 3;		/* a UTF-8 byte order mark */
	full = (size_t)(e - s);
	while (s < e && isspace((unsigned char)*s))
		s++;
	n = (size_t)(e - s);
	str[0] = '\0';
	if (p->oom)
		return str;
	if (memchr(s, '\0', n) != NULL) {
		cfg_error(p, p->line, "line contains a NUL byte");
		if (n > 0 && *s == '[')
			p->sec = CFG_SEC_SKIP;
		return str;
	}
	if (full > CFG_LINE_MAX) {
		cfg_error(p, p->line, "line too long (max %d characters)",
		    CFG_LINE_MAX);
		if (n > 0 && *s == '[')
			p->sec = CFG_SEC_SKIP;
		return str;
	}
	if (!cfg_read_line(p, s, n))
		return str;
	if (n <= (size_t)num - 1) {
		memcpy(str, s, n);
		str[n] = '\0';
	} else if (*s == '[') {
		/* cfg_read_line took the header; inih needs only one. */
		snprintf(str, (size_t)num, "[long]");
	} else {
		cfg_reader_long(p, s, n, str, (size_t)num);
	}
	return str;
}

/* The ini_handler: one key = value of the current section. */
static int
cfg_handler(void *user, const char *section, const char *name,
    const char *value)
{
	struct cfg_parser *p = user;
	const struct cfg_option *o;
	struct cfg_resource *r = NULL;
	char where[256];
	int *set, line = p->line, scope;
	bool *bad;
	void *base;

	(void)section;		/* inih's, truncated: see cfg_read_line */
	if (p->oom || p->sec == CFG_SEC_SKIP)
		return 1;
	if (p->long_line == line && p->n_long_values > 0)
		value = p->long_values[p->n_long_values - 1];
	if (*name == '\0') {
		cfg_error(p, line, CFG_SYNTAX);
		return 1;
	}
	if (p->sec == CFG_SEC_NONE) {
		cfg_error(p, line, "key '%s' outside any section", name);
		return 1;
	}
	if (p->sec == CFG_SEC_GATEWAY) {
		snprintf(where, sizeof(where), "[gateway]");
		set = p->gw_set.line;
		bad = p->gw_set.bad;
		base = p->cfg;
		scope = CFG_IN_GATEWAY;
	} else if (p->sec == CFG_SEC_TLS) {
		base = &p->cfg->tls[p->tls_idx];
		snprintf(where, sizeof(where), "[tls %s]",
		    p->cfg->tls[p->tls_idx].name);
		set = p->tls_set[p->tls_idx].line;
		bad = p->tls_set[p->tls_idx].bad;
		scope = CFG_IN_TLS;
	} else if (p->sec == CFG_SEC_CLUSTER) {
		base = &p->cfg->cluster;
		snprintf(where, sizeof(where), "[cluster]");
		set = p->cluster_set.line;
		bad = p->cluster_set.bad;
		scope = CFG_IN_CLUSTER;
	} else if (p->sec == CFG_SEC_STATIC) {
		base = &p->cfg->statics[p->static_idx];
		snprintf(where, sizeof(where), "[static %s]",
		    p->cfg->statics[p->static_idx].prefix);
		set = p->static_set[p->static_idx].line;
		bad = p->static_set[p->static_idx].bad;
		scope = CFG_IN_STATIC;
	} else {
		r = &p->cfg->resources[p->res_idx];
		snprintf(where, sizeof(where), "[resource %s]", r->pattern);
		set = p->res_set[p->res_idx].line;
		bad = p->res_set[p->res_idx].bad;
		base = &r->opts;
		scope = CFG_IN_RESOURCE;
	}
	if ((o = cfg_option_find(name, scope)) == NULL) {
		cfg_error(p, line, "unknown key '%s' in %s", name, where);
		return 1;
	}
	if (!(o->scope & scope)) {
		cfg_error(p, line, "'%s' is not allowed in %s, only in %s",
		    name, where, o->scope & CFG_IN_GATEWAY ? "[gateway]" :
		    o->scope & CFG_IN_RESOURCE ? "[resource PATH]" :
		    o->scope & CFG_IN_TLS ? "[tls NAME]" :
		    o->scope & CFG_IN_CLUSTER ? "[cluster]" : "[static PREFIX]");
		return 1;
	}
	/* A resource's own fields (not room options) live in it. */
	if (r != NULL && o->scope == CFG_IN_RESOURCE)
		base = r;
	if (set[o - cfg_options] != 0 && (o->type != CFG_T_LISTEN ||
	    (o->flags & CFG_F_ADMIN)) && o->type != CFG_T_ENV) {
		cfg_error(p, line, "duplicate key '%s' in %s (first at line "
		    "%d)", name, where, set[o - cfg_options]);
		return 1;
	}
	if (set[o - cfg_options] == 0)
		set[o - cfg_options] = line;
	/* An empty list is a value: it clears [gateway]'s. */
	if (*value == '\0' && o->type != CFG_T_LIST) {
		if (o->type == CFG_T_LISTEN)
			p->listen_seen = true;
		cfg_error(p, line, "%s: missing value", name);
		bad[o - cfg_options] = true;
		return 1;
	}
	if (r == NULL && o->scope == CFG_IN_BOTH)
		base = &p->cfg->defaults;
	if (o->type == CFG_T_LISTEN)
		cfg_add_listen(p, value, line, o->flags & CFG_F_ADMIN);
	else if (o->type == CFG_T_BACKEND) {
		r->backend_line = line;
		cfg_set_backend(p, r, value, line);
	} else if (cfg_set_value(p, o, base, value, line) == -1)
		bad[o - cfg_options] = true;
	return 1;
}

/* The bytes a value of type takes in a struct. */
static size_t
cfg_type_size(enum cfg_type type)
{
	switch (type) {
	case CFG_T_BOOL:
		return sizeof(bool);
	case CFG_T_ENUM:
		return sizeof(unsigned int);
	case CFG_T_LIST:
	case CFG_T_ENV:
		return sizeof(const char *const *);
	default:
		return sizeof(uint64_t);
	}
}

/*
 * restart_max_delay must not be less than restart_delay.  The pair is
 * checked, once resolved, in each section that sets either of them (a
 * resource that sets neither has [gateway]'s pair, checked there), and an
 * error names the line of the one this section sets, restart_max_delay if
 * it sets both, and says where the other value comes from.  A refused
 * value is not checked again.
 */
static void
cfg_check_restart(struct cfg_parser *p, const struct cfg_room_opts *opts,
    const struct cfg_setlines *set, bool is_gateway)
{
	size_t d = (size_t)(cfg_option_find("restart_delay", CFG_IN_BOTH) -
	    cfg_options);
	size_t m = (size_t)(cfg_option_find("restart_max_delay", CFG_IN_BOTH) -
	    cfg_options);
	char dv[32], mv[32];
	const char *from;

	if ((set->line[d] == 0 && set->line[m] == 0) || set->bad[d] ||
	    set->bad[m])
		return;
	if (!is_gateway && ((set->line[d] == 0 && p->gw_set.bad[d]) ||
	    (set->line[m] == 0 && p->gw_set.bad[m])))
		return;
	if (opts->restart_max_delay_ms >= opts->restart_delay_ms)
		return;
	cfg_format(CFG_T_DURATION, opts->restart_delay_ms, dv, sizeof(dv));
	cfg_format(CFG_T_DURATION, opts->restart_max_delay_ms, mv, sizeof(mv));
	if (set->line[d] != 0 && set->line[m] != 0) {
		cfg_error(p, set->line[m], "restart_max_delay: %s is less than "
		    "restart_delay (%s)", mv, dv);
		return;
	}
	if (set->line[m] != 0) {
		from = !is_gateway && p->gw_set.line[d] != 0 ?
		    "from [gateway]" : "the default";
		cfg_error(p, set->line[m], "restart_max_delay: %s is less than "
		    "restart_delay (%s, %s)", mv, dv, from);
	} else {
		from = !is_gateway && p->gw_set.line[m] != 0 ?
		    "from [gateway]" : "the default";
		cfg_error(p, set->line[d], "restart_delay: %s is more than "
		    "restart_max_delay (%s, %s)", dv, mv, from);
	}
}

/* A resource's env: [gateway]'s variables, then its own. */
static void
cfg_merge_env(struct cfg_parser *p, const char *const **env,
    const char *const *defaults)
{
	const char **list;
	size_t n = 0, m = 0, i;

	while (defaults != NULL && defaults[n] != NULL)
		n++;
	while ((*env)[m] != NULL)
		m++;
	if (n == 0)
		return;
	if ((list = calloc(n + m + 1, sizeof(*list))) == NULL) {
		p->oom = true;
		return;
	}
	for (i = 0; i < n; i++) {
		if ((list[i] = strdup(defaults[i])) == NULL) {
			cfg_list_free(list);
			p->oom = true;
			return;
		}
	}
	memcpy(list + n, *env, m * sizeof(*list));
	free((void *)*env);	/* its strings moved to list */
	*env = list;
}

/* The line where a resource's option comes from: its own key, else
 * [gateway]'s, else the section header. */
static int
cfg_option_line(const struct cfg_parser *p, const struct cfg_resource *r,
    const struct cfg_setlines *set, const char *name)
{
	size_t j = (size_t)(cfg_option_find(name, CFG_IN_BOTH) - cfg_options);

	if (set->line[j] != 0)
		return set->line[j];
	return p->gw_set.line[j] != 0 ? p->gw_set.line[j] : r->line;
}

/* mode, format and binary agree; the default format is the mode's. */
static void
cfg_check_mode(struct cfg_parser *p, struct cfg_resource *r,
    const struct cfg_setlines *set)
{
	struct cfg_room_opts *o = &r->opts;

	if (o->format == CFG_FORMAT_DEFAULT)
		o->format = o->mode == CFG_MODE_CLIENT ? CFG_FORMAT_LINES :
		    CFG_FORMAT_JSON;
	if (o->mode == CFG_MODE_ROOM && o->format == CFG_FORMAT_LINES)
		cfg_error(p, cfg_option_line(p, r, set, "format"),
		    "[resource %s]: format = lines needs mode = client (a "
		    "room's backend speaks the records)", r->pattern);
	if (o->authorize && o->format == CFG_FORMAT_LINES)
		cfg_error(p, cfg_option_line(p, r, set, "authorize"),
		    "[resource %s]: authorize = yes needs format = json (a "
		    "lines program cannot accept or reject)", r->pattern);
	if (o->binary && o->format != CFG_FORMAT_LINES)
		cfg_error(p, cfg_option_line(p, r, set, "binary"),
		    "[resource %s]: binary = yes needs mode = client and "
		    "format = lines", r->pattern);
	if (o->delivery == CFG_DELIVERY_ACK && o->mode != CFG_MODE_ROOM)
		cfg_error(p, cfg_option_line(p, r, set, "delivery"),
		    "[resource %s]: delivery = ack needs mode = room (a "
		    "client's own program is not restarted)", r->pattern);
}

static int
cfg_static_cmp(const void *a, const void *b)
{
	size_t x = strlen(((const struct cfg_static *)a)->prefix);
	size_t y = strlen(((const struct cfg_static *)b)->prefix);

	return x > y ? -1 : x < y;
}

/* static_dir joins the [static] sections as "/"; each has a dir; the
 * longest prefixes come first, for cfg_match_static. */
static void
cfg_finish_statics(struct cfg_parser *p)
{
	struct cfg *cfg = p->cfg;
	struct cfg_static *st;
	size_t i, j = (size_t)(cfg_option_find("dir", CFG_IN_STATIC) -
	    cfg_options);

	for (i = 0; i < cfg->n_statics; i++) {
		if (p->static_set[i].line[j] == 0)
			cfg_error(p, cfg->statics[i].line, "[static %s] has no "
			    "dir", cfg->statics[i].prefix);
		if (cfg->static_dir != NULL &&
		    strcmp(cfg->statics[i].prefix, "/") == 0)
			cfg_error(p, cfg->statics[i].line, "[static /] and "
			    "static_dir (line %d) map the same prefix",
			    p->gw_set.line[cfg_option_find("static_dir",
			    CFG_IN_GATEWAY) - cfg_options]);
	}
	if (cfg->static_dir != NULL) {
		st = realloc(cfg->statics, (cfg->n_statics + 1) * sizeof(*st));
		if (st == NULL) {
			p->oom = true;
			return;
		}
		cfg->statics = st;
		st = &cfg->statics[cfg->n_statics++];
		memset(st, 0, sizeof(*st));
		st->line = p->gw_set.line[cfg_option_find("static_dir",
		    CFG_IN_GATEWAY) - cfg_options];
		cfg->static_dir_line = st->line;
		if ((st->prefix = strdup("/")) == NULL ||
		    (st->dir = strdup(cfg->static_dir)) == NULL)
			p->oom = true;
	}
	if (cfg->n_statics > 1)
		qsort(cfg->statics, cfg->n_statics, sizeof(*cfg->statics),
		    cfg_static_cmp);
}

static int cfg_resource_cmp(const void *, const void *);

/* A certificate goes with its key; a tls listener needs [gateway]'s. */
static void
cfg_finish_tls(struct cfg_parser *p)
{
	struct cfg *cfg = p->cfg;
	size_t i;

	if ((cfg->tls_certificate.value == NULL) != (cfg->tls_key.value == NULL))
		cfg_error(p, cfg->tls_certificate.value != NULL ?
		    cfg->tls_certificate.line : cfg->tls_key.line,
		    "tls_certificate and tls_key go together");
	for (i = 0; i < cfg->n_listens; i++)
		if (cfg->listens[i].tls && cfg->tls_certificate.value == NULL)
			cfg_error(p, cfg->listens[i].line, "listen %s tls needs "
			    "tls_certificate and tls_key in [gateway]",
			    cfg->listens[i].text);
	for (i = 0; i < cfg->n_tls; i++)
		if (cfg->tls[i].certificate.value == NULL ||
		    cfg->tls[i].key.value == NULL)
			cfg_error(p, cfg->tls[i].line, "[tls %s] needs "
			    "tls_certificate and tls_key", cfg->tls[i].name);
	if (cfg->group.value != NULL && cfg->user.value == NULL)
		cfg_error(p, cfg->group.line, "group needs user");
}

/* A Redis address: "HOST:PORT" (HOST a name, an IPv4 address or an
 * IPv6 one in brackets) or "unix:PATH".  NULL, or what is wrong. */
static const char *
cfg_check_redis(const char *v)
{
	const char *colon;
	char *end;
	unsigned long port;

	if (strncmp(v, "unix:", 5) == 0)
		return v[5] == '/' ? NULL : "needs an absolute path after unix:";
	if ((colon = strrchr(v, ':')) == NULL || colon == v)
		return "is not HOST:PORT or unix:PATH";
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno != 0 || port == 0 ||
	    port > 65535)
		return "has no port from 1 to 65535";
	if (v[0] == '[' && colon[-1] != ']')
		return "has an unclosed [";
	return NULL;
}

/* A node name is part of every client id: letters, digits, '-' and '_',
 * and short. */
#define CFG_NODE_MAX 40

static void
cfg_finish_cluster(struct cfg_parser *p)
{
	struct cfg_cluster *cl = &p->cfg->cluster;
	const char *why, *s;

	if (cl->line == 0)
		return;
	if (cl->redis.value == NULL) {
		cfg_error(p, cl->line, "[cluster] needs redis = HOST:PORT or "
		    "redis = unix:PATH");
		return;
	}
	if ((why = cfg_check_redis(cl->redis.value)) != NULL)
		cfg_error(p, cl->redis.line, "redis = %s %s", cl->redis.value,
		    why);
	if (cl->node.value == NULL)
		return;
	for (s = cl->node.value; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
			break;
	if (*s != '\0' || s - cl->node.value > CFG_NODE_MAX)
		cfg_error(p, cl->node.line, "node = %s: a node name is up to "
		    "%d letters, digits, '-' and '_'", cl->node.value,
		    CFG_NODE_MAX);
}

/* Whole-file checks, and [gateway]'s room options into every resource
 * that does not set them. */
static void
cfg_finish(struct cfg_parser *p)
{
	struct cfg *cfg = p->cfg;
	const struct cfg_option *o;
	struct cfg_resource *r;
	size_t i, j;

	for (i = 0, j = 0; i < cfg->n_listens; i++)
		j += !cfg->listens[i].admin;
	if (j == 0 && !p->listen_seen)
		cfg_error(p, p->gateway_line, "no listen address");
	if (!p->resource_seen && cfg->n_statics == 0 && cfg->static_dir == NULL)
		cfg_error(p, 0, "no [resource PATH] section and no static files");
	for (i = 0; i < cfg->n_resources; i++) {
		r = &cfg->resources[i];
		for (j = 0; j < CFG_NOPTIONS; j++) {
			o = &cfg_options[j];
			if (o->type == CFG_T_BACKEND &&
			    p->res_set[i].line[j] == 0)
				cfg_error(p, r->line, "[resource %s] has no "
				    "backend", r->pattern);
			if (o->type == CFG_T_ENV && p->res_set[i].line[j] &&
			    r->opts.env != NULL) {
				cfg_merge_env(p, &r->opts.env, cfg->defaults.env);
				continue;
			}
			if (o->scope != CFG_IN_BOTH ||
			    (p->res_set[i].line[j] && !(o->type == CFG_T_LIST &&
			    p->res_set[i].bad[j])))
				continue;
			/* A list is shared, not copied: see cfg_free.  A
			 * refused one (reported) shares too, for a model
			 * with no NULL lists even on the error path. */
			memcpy((char *)&r->opts + o->offset,
			    (char *)&cfg->defaults + o->offset,
			    cfg_type_size(o->type));
		}
		cfg_check_restart(p, &r->opts, &p->res_set[i], false);
		cfg_check_mode(p, r, &p->res_set[i]);
	}
	cfg_check_restart(p, &cfg->defaults, &p->gw_set, true);
	if (cfg->defaults.format == CFG_FORMAT_DEFAULT)
		cfg->defaults.format = cfg->defaults.mode == CFG_MODE_CLIENT ?
		    CFG_FORMAT_LINES : CFG_FORMAT_JSON;
	cfg_finish_statics(p);
	cfg_finish_tls(p);
	cfg_finish_cluster(p);
	/* An index by pattern, for reloads (cfg_find_resource). */
	if ((cfg->by_pattern = calloc(cfg->n_resources + 1,
	    sizeof(*cfg->by_pattern))) == NULL) {
		p->oom = true;
		return;
	}
	for (i = 0; i < cfg->n_resources; i++)
		cfg->by_pattern[i] = &cfg->resources[i];
	if (cfg->n_resources > 1)
		qsort(cfg->by_pattern, cfg->n_resources,
		    sizeof(*cfg->by_pattern), cfg_resource_cmp);
}

struct cfg *
cfg_parse(const char *file, const char *text, size_t len, char **errors)
{
	struct cfg_parser p;
	struct cfg *cfg;
	size_t i;
	int r;

	*errors = NULL;
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL)
		return NULL;
	if ((cfg->file = strdup(file)) == NULL) {
		free(cfg);
		return NULL;
	}
	memset(&p, 0, sizeof(p));
	p.cfg = cfg;
	p.file = file;
	p.pos = text != NULL ? text : "";
	p.end = p.pos + (text != NULL ? len : 0);

	for (i = 0; i < CFG_NOPTIONS; i++) {
		const struct cfg_option *o = &cfg_options[i];

		/* Resource and static rows default to zero, by calloc. */
		if (o->def != NULL && (o->scope & CFG_IN_GATEWAY))
			cfg_set_value(&p, o, o->scope == CFG_IN_BOTH ?
			    (void *)&cfg->defaults : (void *)cfg, o->def, 0);
		else if (o->def != NULL && o->scope == CFG_IN_CLUSTER)
			cfg_set_value(&p, o, &cfg->cluster, o->def, 0);
	}

	r = ini_parse_stream(cfg_reader, &p, cfg_handler, &p);
	if (r < 0)
		p.oom = true;
	else if (r > 0)		/* a line the reader let through */
		cfg_error(&p, r, CFG_SYNTAX);
	if (!p.oom)
		cfg_finish(&p);

	if (p.oom || p.n_errs > 0) {
		if (!p.oom)
			*errors = cfg_errors_join(&p);
		cfg_parser_free(&p);
		cfg_free(cfg);
		return NULL;
	}
	cfg_parser_free(&p);
	return cfg;
}

struct cfg *
cfg_load(const char *file, char **errors)
{
	struct cfg *cfg;
	struct stat st;
	char *buf = NULL, *nbuf;
	size_t len = 0, cap = 0;
	ssize_t n;
	int fd, saved;

	*errors = NULL;
	if ((fd = open(file, O_RDONLY | O_CLOEXEC)) == -1)
		goto fail;
	if (fstat(fd, &st) == -1)
		goto fail;
	if (S_ISDIR(st.st_mode)) {
		errno = EISDIR;
		goto fail;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= CFG_FILE_MAX) {
				errno = EFBIG;
				goto fail;
			}
			cap = cap ? 2 * cap : 8192;
			if ((nbuf = realloc(buf, cap)) == NULL) {
				close(fd);
				free(buf);
				return NULL;
			}
			buf = nbuf;
		}
		n = read(fd, buf + len, cap - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			goto fail;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	cfg = cfg_parse(file, buf, len, errors);
	free(buf);
	return cfg;

fail:
	saved = errno;
	if (fd != -1)
		close(fd);
	free(buf);
	if (asprintf(errors, "%s: %s\n", file, strerror(saved)) == -1)
		*errors = NULL;
	return NULL;
}

const struct cfg_static *
cfg_match_static(const struct cfg *cfg, const char *path, size_t len)
{
	const struct cfg_static *st;
	size_t i, n;

	for (i = 0; i < cfg->n_statics; i++) {
		st = &cfg->statics[i];
		n = strlen(st->prefix);
		if ((len >= n && memcmp(path, st->prefix, n) == 0) ||
		    (len == n - 1 && memcmp(path, st->prefix, len) == 0))
			return st;
	}
	return NULL;
}

/* The default search path when neither gatewayd nor env sets one. */
#define CFG_DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

const char *
cfg_backend_path(const struct cfg_room_opts *opts)
{
	const char *path = NULL;
	size_t i;

	for (i = 0; opts->env != NULL && opts->env[i] != NULL; i++)
		if (strncmp(opts->env[i], "PATH=", 5) == 0)
			path = opts->env[i] + 5;	/* the last one wins */
	if (path == NULL)
		path = getenv("PATH");
	return path != NULL ? path : CFG_DEFAULT_PATH;
}

/* 0 when file is a regular file we may execute, else an errno value. */
static int
cfg_executable(const char *file)
{
	struct stat st;

	if (stat(file, &st) == -1)
		return errno;
	if (S_ISDIR(st.st_mode))
		return EISDIR;
	if (!S_ISREG(st.st_mode) || access(file, X_OK) == -1)
		return EACCES;
	return 0;
}

int
cfg_resolve_program(const char *name, const char *path, char *out,
    size_t size)
{
	const char *dir, *end;
	int e, found = ENOENT;
	size_t n;

	if (strchr(name, '/') != NULL) {
		if (strlen(name) >= size)
			return ENAMETOOLONG;
		strcpy(out, name);
		return cfg_executable(out);
	}
	/* As execvp searches: the first executable file wins, and a file
	 * found but not executable is remembered as EACCES. */
	for (dir = path;; dir = end + 1) {
		end = strchr(dir, ':');
		if (end == NULL)
			end = dir + strlen(dir);
		n = (size_t)(end - dir);
		if (n + strlen(name) + 2 > size)
			return ENAMETOOLONG;
		if (n == 0)
			snprintf(out, size, "%s", name);
		else
			snprintf(out, size, "%.*s/%s", (int)n, dir, name);
		e = cfg_executable(out);
		if (e == 0)
			return 0;
		if (e != ENOENT && e != ENOTDIR)
			found = e;
		if (*end == '\0')
			return found;
	}
}

int
cfg_check_system(const struct cfg *cfg, char **errors)
{
	struct cfg_parser p;
	const struct cfg_resource *r;
	char file[4096];
	struct stat st;
	size_t i;
	int e;

	*errors = NULL;
	memset(&p, 0, sizeof(p));
	p.file = cfg->file;
	for (i = 0; i < cfg->n_resources; i++) {
		r = &cfg->resources[i];
		if (r->backend_kind != CFG_BACKEND_EXEC)
			continue;
		e = cfg_resolve_program(r->argv[0], cfg_backend_path(&r->opts),
		    file, sizeof(file));
		if (e == ENOENT && strchr(r->argv[0], '/') == NULL)
			cfg_error(&p, r->backend_line, "backend: program '%s' "
			    "not found on PATH (%s)", r->argv[0],
			    cfg_backend_path(&r->opts));
		else if (e != 0)
			cfg_error(&p, r->backend_line, "backend: cannot run "
			    "'%s': %s", e == ENOENT ? r->argv[0] : file,
			    strerror(e));
	}
	for (i = 0; i < cfg->n_statics; i++) {
		if (stat(cfg->statics[i].dir, &st) == -1)
			cfg_error(&p, cfg->statics[i].line, "static directory "
			    "'%s': %s", cfg->statics[i].dir, strerror(errno));
		else if (!S_ISDIR(st.st_mode))
			cfg_error(&p, cfg->statics[i].line, "static directory "
			    "'%s': not a directory", cfg->statics[i].dir);
	}
	if (p.oom || p.n_errs > 0) {
		if (!p.oom)
			*errors = cfg_errors_join(&p);
		cfg_parser_free(&p);
		return -1;
	}
	cfg_parser_free(&p);
	return 0;
}

/* True when s can stand as an ini value as it is: one line, and no ';'
 * after a blank (an inline comment). */
static bool
cfg_ini_safe(const char *s)
{
	const char *p;

	if (strchr(s, '\n') != NULL || strchr(s, '\r') != NULL)
		return false;
	for (p = s; *p != '\0'; p++)
		if (*p == ';' && p > s && isspace((unsigned char)p[-1]))
			return false;
	return !isspace((unsigned char)*s) &&
	    (*s == '\0' || !isspace((unsigned char)s[strlen(s) - 1]));
}

/* Write word to f quoted for cfg_split_argv: a backslash before every
 * character but the plainest, so that no blank ever precedes a ';'.
 * Returns -1 for a word no line can hold. */
static int
cfg_put_word(FILE *f, const char *word)
{
	const char *p;

	if (strchr(word, '\n') != NULL || strchr(word, '\r') != NULL)
		return -1;
	if (*word == '\0') {
		fputs("''", f);
		return 0;
	}
	for (p = word; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && strchr("/._-=:,+@%", *p) == NULL)
			fputc('\\', f);
		fputc(*p, f);
	}
	return 0;
}

char *
cfg_from_command(const struct cfg_command *cmd, const char **why)
{
	static const char *const paths[] = { "/", "/*" };
	char *text = NULL;
	size_t size = 0, i, j;
	FILE *f;

	*why = NULL;
	if ((f = open_memstream(&text, &size)) == NULL)
		return NULL;
	fputs("; Made by gatewayd from its command line.\n[gateway]\n", f);
	for (i = 0; cmd->listens != NULL && cmd->listens[i] != NULL; i++) {
		if (!cfg_ini_safe(cmd->listens[i]))
			goto bad;
		fprintf(f, "listen = %s\n", cmd->listens[i]);
	}
	if (cmd->static_dir != NULL) {
		if (!cfg_ini_safe(cmd->static_dir))
			goto bad;
		fprintf(f, "static_dir = %s\n", cmd->static_dir);
	}
	if (cmd->max_processes != NULL)
		fprintf(f, "max_processes = %s\n", cmd->max_processes);
	if (cmd->log_level != NULL)
		fprintf(f, "log_level = %s\n", cmd->log_level);
	if (cmd->origins != NULL)
		fprintf(f, "origins = %s\n", cmd->origins);
	if (cmd->passenv != NULL)
		fprintf(f, "passenv = %s\n", cmd->passenv);
	for (i = 0; cmd->env != NULL && cmd->env[i] != NULL; i++) {
		if (!cfg_ini_safe(cmd->env[i]))
			goto bad;
		fprintf(f, "env = %s\n", cmd->env[i]);
	}
	/* Every path: "/" itself, and every path below it. */
	for (j = 0; cmd->argv != NULL && j < 2; j++) {
		fprintf(f, "\n[resource %s]\n", paths[j]);
		if (!cmd->room)
			fputs("mode = client\n", f);
		if (cmd->binary)
			fputs("binary = yes\n", f);
		fputs("backend = exec:", f);
		for (i = 0; cmd->argv[i] != NULL; i++) {
			if (i > 0)
				fputc(' ', f);
			if (cfg_put_word(f, cmd->argv[i]) == -1)
				goto bad;
		}
		fputc('\n', f);
	}
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
bad:
	fclose(f);
	free(text);
	*why = "a value holds a line break, blanks at its ends, or a ';' "
	    "after a blank, which no ini line can hold";
	return NULL;
}

static int
cfg_resource_cmp(const void *a, const void *b)
{
	return strcmp((*(const struct cfg_resource *const *)a)->pattern,
	    (*(const struct cfg_resource *const *)b)->pattern);
}

const struct cfg_resource *
cfg_find_resource(const struct cfg *cfg, const char *pattern)
{
	struct cfg_resource key, *kp = &key, **found;

	key.pattern = (char *)pattern;
	found = bsearch(&kp, cfg->by_pattern, cfg->n_resources,
	    sizeof(*cfg->by_pattern), cfg_resource_cmp);
	return found != NULL ? *found : NULL;
}
