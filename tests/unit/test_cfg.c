/*
 * Unit tests for cfg.c: the ini reader, the option table, defaults, every
 * error with its line, the value parsers, argv splitting and cfg_match.
 * Run from the project root (the reference config is conf/gatewayd.ini).
 */
#include "../../gatewayd/cfg.c"

#include "check.h"

#define MINIMAL \
	"[gateway]\n" \
	"listen = 127.0.0.1:8080\n" \
	"[resource /echo]\n" \
	"backend = exec:room.sh\n"

/* The same, [gateway] last: a key appended to it is on line 5. */
#define RES_FIRST \
	"[resource /echo]\n" \
	"backend = exec:room.sh\n" \
	"[gateway]\n" \
	"listen = 127.0.0.1:8080\n"

static struct cfg *
parse(const char *text, char **errors)
{
	return cfg_parse("t.ini", text, strlen(text), errors);
}

/* The errors of a config that must fail; "" when it parsed (a failure). */
static char *
errors_of(const char *text)
{
	struct cfg *cfg;
	char *errors = NULL;

	cfg = cfg_parse("t.ini", text, strlen(text), &errors);
	if (cfg != NULL) {
		fprintf(stderr, "parsed, but should not have:\n%s\n", text);
		cfg_free(cfg);
		return strdup("");
	}
	return errors != NULL ? errors : strdup("(out of memory)");
}

static size_t
count_lines(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		if (*s == '\n')
			n++;
	return n;
}

/* True when line is one whole line of text. */
static bool
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *s;

	for (s = text; (s = strstr(s, line)) != NULL; s++)
		if ((s == text || s[-1] == '\n') && s[n] == '\n')
			return true;
	return false;
}

/* errors_of(text) is exactly the one line want (without its newline). */
#define CHECK_ONE_ERROR(text, want) do { \
	char *e_ = errors_of(text); \
	char w_[512]; \
	snprintf(w_, sizeof(w_), "%s\n", (want)); \
	CHECK_EQ_STR(e_, w_); \
	free(e_); \
} while (0)

static uint32_t
ipv4_of(const struct cfg_listen *l)
{
	return ntohl(((const struct sockaddr_in *)&l->addr)->sin_addr.s_addr);
}

static unsigned int
port_of(const struct cfg_listen *l)
{
	const struct sockaddr_in6 *sin6 = (const void *)&l->addr;
	const struct sockaddr_in *sin = (const void *)&l->addr;

	return ntohs(l->addr.ss_family == AF_INET6 ? sin6->sin6_port :
	    sin->sin_port);
}

static const char example[] =
	"[gateway]\n"
	"listen = 127.0.0.1:8080          ; repeatable; IPv6 as [::1]:8080\n"
	"max_message_size = 1M            ; bytes after reassembly of fragments\n"
	"max_connections = 10000\n"
	"\n"
	"[resource /bongo]\n"
	"backend = unix:/run/chat/bongo.sock\n"
	"\n"
	"[resource /fury]\n"
	"backend = exec:/usr/bin/python3 examples/chat/room.py\n"
	"authorize = yes                  ; the backend accepts or rejects each client\n"
	"\n"
	"[resource /rooms/*]\n"
	"backend = exec:examples/echo/room.sh\n"
	"linger = 5s\n";

static void
check_example(struct cfg *cfg)
{
	const struct cfg_resource *r;

	CHECK_EQ_STR(cfg->file, "t.ini");
	CHECK_EQ_INT(cfg->n_listens, 1);
	CHECK_EQ_INT(cfg->listens[0].addr.ss_family, AF_INET);
	CHECK_EQ_INT(cfg->listens[0].addr_len, sizeof(struct sockaddr_in));
	CHECK_EQ_INT(ipv4_of(&cfg->listens[0]), 0x7f000001);
	CHECK_EQ_INT(port_of(&cfg->listens[0]), 8080);
	CHECK_EQ_STR(cfg->listens[0].text, "127.0.0.1:8080");
	CHECK_EQ_INT(cfg->listens[0].line, 2);
	CHECK_EQ_INT(cfg->max_connections, 10000);
	CHECK_EQ_INT(cfg->defaults.max_message_size, 1 << 20);
	CHECK_EQ_INT(cfg->n_resources, 3);

	r = &cfg->resources[0];
	CHECK_EQ_STR(r->pattern, "/bongo");
	CHECK(!r->is_prefix);
	CHECK_EQ_INT(r->line, 6);
	CHECK_EQ_INT(r->backend_kind, CFG_BACKEND_UNIX);
	CHECK_EQ_STR(r->backend, "unix:/run/chat/bongo.sock");
	CHECK_EQ_STR(r->unix_path, "/run/chat/bongo.sock");
	CHECK(r->argv == NULL);
	CHECK_EQ_INT(r->opts.max_message_size, 1 << 20);	/* inherited */
	CHECK(!r->opts.authorize);
	CHECK_EQ_INT(r->opts.authorize_timeout_ms, 10000);
	CHECK_EQ_INT(r->opts.linger_ms, 10000);
	CHECK_EQ_INT(r->opts.close_timeout_ms, 5000);
	CHECK_EQ_INT(r->opts.stop_timeout_ms, 5000);

	r = &cfg->resources[1];
	CHECK_EQ_STR(r->pattern, "/fury");
	CHECK_EQ_INT(r->line, 9);
	CHECK_EQ_INT(r->backend_kind, CFG_BACKEND_EXEC);
	CHECK_EQ_STR(r->backend, "exec:/usr/bin/python3 examples/chat/room.py");
	CHECK(r->unix_path == NULL);
	CHECK(r->argv != NULL);
	if (r->argv != NULL) {
		CHECK_EQ_STR(r->argv[0], "/usr/bin/python3");
		CHECK_EQ_STR(r->argv[1], "examples/chat/room.py");
		CHECK(r->argv[2] == NULL);
	}
	CHECK(r->opts.authorize);				/* its own */
	CHECK_EQ_INT(r->opts.max_message_size, 1 << 20);
	CHECK_EQ_INT(r->opts.linger_ms, 10000);

	r = &cfg->resources[2];
	CHECK_EQ_STR(r->pattern, "/rooms/*");
	CHECK(r->is_prefix);
	CHECK_EQ_INT(r->prefix_len, 7);
	CHECK_EQ_INT(r->line, 13);
	CHECK(r->argv != NULL);
	if (r->argv != NULL) {
		CHECK_EQ_STR(r->argv[0], "examples/echo/room.sh");
		CHECK(r->argv[1] == NULL);
	}
	CHECK_EQ_INT(r->opts.linger_ms, 5000);
	CHECK(!r->opts.authorize);
	CHECK_EQ_INT(r->opts.max_message_size, 1 << 20);
}

static void
test_example(void)
{
	struct cfg *cfg;
	char *errors = (char *)"untouched";

	cfg = parse(example, &errors);
	CHECK(cfg != NULL);
	CHECK(errors == NULL);
	if (cfg != NULL)
		check_example(cfg);
	cfg_free(cfg);
}

static void
test_crlf(void)
{
	char text[sizeof(example) * 2], *d = text, *errors;
	const char *s;
	struct cfg *cfg;

	for (s = example; *s != '\0'; s++) {
		if (*s == '\n')
			*d++ = '\r';
		*d++ = *s;
	}
	*d = '\0';
	cfg = parse(text, &errors);
	CHECK(cfg != NULL);
	if (cfg != NULL)
		check_example(cfg);
	cfg_free(cfg);

	/* Line numbers count CRLF lines, and a last line needs no newline. */
	CHECK_ONE_ERROR("[gateway]\r\nlisten = *:1\r\n\r\n"
	    "[resource /a]\r\nbackend = exec:a\r\nlinger = x",
	    "t.ini:6: linger: invalid value 'x': not a duration (a number "
	    "with an optional ms, s, m or h suffix)");
}

/* The options added for policy and backend supervision, at their
 * defaults, in [gateway] and (inherited) in the first resource. */
static void
check_new_defaults(const struct cfg *cfg)
{
	const struct cfg_room_opts *o[2];
	size_t i;

	CHECK_EQ_INT(cfg->max_connections_per_ip, 0);
	o[0] = &cfg->defaults;
	o[1] = &cfg->resources[0].opts;
	for (i = 0; i < 2; i++) {
		CHECK(o[i]->origins != NULL && o[i]->origins[0] == NULL);
		CHECK(o[i]->subprotocols != NULL &&
		    o[i]->subprotocols[0] == NULL);
		CHECK(!o[i]->subprotocol_required);
		CHECK_EQ_INT(o[i]->max_frame_size, 0);
		CHECK_EQ_INT(o[i]->max_clients, 0);
		CHECK_EQ_INT(o[i]->ping_interval_ms, 30000);
		CHECK_EQ_INT(o[i]->pong_timeout_ms, 10000);
		CHECK_EQ_INT(o[i]->idle_timeout_ms, 0);
		CHECK_EQ_INT(o[i]->max_client_buffer, 1 << 20);
		CHECK_EQ_INT(o[i]->backend_buffer, 1 << 20);
		CHECK_EQ_INT(o[i]->on_backend_down, CFG_BACKEND_DOWN_HOLD);
		CHECK_EQ_INT(o[i]->hold_buffer, 1 << 20);
		CHECK_EQ_INT(o[i]->hold_timeout_ms, 30000);
		CHECK_EQ_INT(o[i]->restart_delay_ms, 100);
		CHECK_EQ_INT(o[i]->restart_max_delay_ms, 10000);
	}
	/* an inherited list is [gateway]'s own array */
	CHECK(o[1]->origins == o[0]->origins);
	CHECK(o[1]->subprotocols == o[0]->subprotocols);
}

static void
test_defaults(void)
{
	struct cfg *cfg;
	char *errors;

	cfg = parse(MINIMAL, &errors);
	CHECK(cfg != NULL);
	if (cfg == NULL)
		return;
	CHECK_EQ_INT(cfg->max_connections, 10000);
	CHECK_EQ_INT(cfg->max_header_size, 16384);
	CHECK_EQ_INT(cfg->max_headers, 64);
	CHECK_EQ_INT(cfg->handshake_timeout_ms, 10000);
	CHECK_EQ_INT(cfg->shutdown_timeout_ms, 10000);
	CHECK_EQ_INT(cfg->log_level, CFG_LOG_INFO);
	CHECK_EQ_INT(cfg->defaults.max_message_size, 1 << 20);
	CHECK(!cfg->defaults.authorize);
	CHECK_EQ_INT(cfg->defaults.authorize_timeout_ms, 10000);
	CHECK_EQ_INT(cfg->defaults.linger_ms, 10000);
	CHECK_EQ_INT(cfg->defaults.close_timeout_ms, 5000);
	CHECK_EQ_INT(cfg->defaults.stop_timeout_ms, 5000);
	check_new_defaults(cfg);
	CHECK(memcmp(&cfg->resources[0].opts, &cfg->defaults,
	    sizeof(cfg->defaults)) == 0);
	cfg_free(cfg);
}

/* Every default of the table parses and lies within its bounds. */
static void
test_table(void)
{
	struct cfg_parser p;
	struct cfg cfg;
	size_t i, j;

	memset(&p, 0, sizeof(p));
	memset(&cfg, 0, sizeof(cfg));
	p.cfg = &cfg;
	p.file = "table";
	for (i = 0; i < CFG_NOPTIONS; i++) {
		const struct cfg_option *o = &cfg_options[i];

		/* No default: the repeatable or required keys, paths, the
		 * rows of [resource] and [static] (zero by calloc), and
		 * format (resolved from mode). */
		CHECK((o->def == NULL) ==
		    (o->type == CFG_T_LISTEN || o->type == CFG_T_BACKEND ||
		    o->type == CFG_T_PATH || o->type == CFG_T_TEXT ||
		    (!(o->scope & CFG_IN_GATEWAY) &&
		    o->scope != CFG_IN_CLUSTER) ||
		    strcmp(o->name, "format") == 0));
		if (o->def != NULL)
			CHECK_EQ_INT(cfg_set_value(&p, o,
			    o->scope == CFG_IN_BOTH ? (void *)&cfg.defaults :
			    o->scope == CFG_IN_CLUSTER ? (void *)&cfg.cluster :
			    (void *)&cfg, o->def, 0), 0);
		CHECK(o->min <= o->max);
		/* enums and lists have what their messages need */
		CHECK((o->names != NULL) == (o->type == CFG_T_ENUM));
		CHECK((o->check != NULL) == (o->type == CFG_T_LIST));
		CHECK((o->what != NULL) ==
		    (o->type == CFG_T_ENUM || o->type == CFG_T_LIST));
		/* lists are room options (cfg_free knows only those) */
		CHECK(o->type != CFG_T_LIST || o->scope == CFG_IN_BOTH);
		CHECK(o->type != CFG_T_LIST || *o->def == '\0');
		/* a name has one row per section kind */
		for (j = 0; j < i; j++)
			CHECK(strcmp(cfg_options[j].name, o->name) != 0 ||
			    (cfg_options[j].scope & o->scope) == 0);
	}
	CHECK_EQ_INT(p.n_errs, 0);
	CHECK(cfg.defaults.origins != NULL && cfg.defaults.origins[0] == NULL);
	CHECK(cfg.defaults.subprotocols != NULL &&
	    cfg.defaults.subprotocols[0] == NULL);
	cfg_room_opts_free(&cfg.defaults, NULL);
	cfg_parser_free(&p);
}

static void
test_gateway_last(void)
{
	struct cfg *cfg;
	char *errors;

	cfg = parse(
	    "[resource /a]\n"
	    "backend = unix:/a.sock\n"
	    "linger = 0\n"
	    "[resource /b/*]\n"
	    "backend = unix:/b.sock\n"
	    "max_message_size = 2K\n"
	    "[gateway]\n"
	    "max_message_size = 64k\n"
	    "linger = 1m\n"
	    "authorize = on\n"
	    "stop_timeout = 250ms\n"
	    "listen = [::1]:9000\n"
	    "listen = *:9001\n", &errors);
	CHECK(cfg != NULL);
	if (cfg == NULL)
		return;
	CHECK_EQ_INT(cfg->resources[0].opts.linger_ms, 0);
	CHECK_EQ_INT(cfg->resources[0].opts.max_message_size, 65536);
	CHECK(cfg->resources[0].opts.authorize);
	CHECK_EQ_INT(cfg->resources[0].opts.stop_timeout_ms, 250);
	CHECK_EQ_INT(cfg->resources[0].opts.close_timeout_ms, 5000);
	CHECK_EQ_INT(cfg->resources[1].opts.linger_ms, 60000);
	CHECK_EQ_INT(cfg->resources[1].opts.max_message_size, 2048);
	CHECK(cfg->resources[1].opts.authorize);
	CHECK_EQ_INT(cfg->n_listens, 2);
	CHECK_EQ_INT(cfg->listens[0].addr.ss_family, AF_INET6);
	CHECK_EQ_INT(cfg->listens[0].addr_len, sizeof(struct sockaddr_in6));
	CHECK_EQ_INT(port_of(&cfg->listens[0]), 9000);
	CHECK_EQ_INT(cfg->listens[0].line, 12);
	CHECK_EQ_INT(cfg->listens[1].addr.ss_family, AF_INET);
	CHECK_EQ_INT(ipv4_of(&cfg->listens[1]), 0);
	CHECK_EQ_INT(port_of(&cfg->listens[1]), 9001);
	CHECK_EQ_STR(cfg->listens[1].text, "*:9001");
	cfg_free(cfg);
}

/* inih quirks the reader irons out. */
static void
test_reader(void)
{
	char path[80], text[512], *errors;
	struct cfg *cfg;

	/* Indented lines are lines, not continuations of the previous value;
	 * a BOM, "key: value" and comments are fine. */
	cfg = parse(
	    "\xef\xbb\xbf[gateway]\n"
	    "  listen = 127.0.0.1:8080\n"
	    "\tmax_connections = 5\n"
	    "# a comment\n"
	    "  ; an indented comment\n"
	    "log_level: debug\n"
	    "   [resource /echo]   ; its header\n"
	    "    backend = exec:room.sh a;b ; a comment\n", &errors);
	CHECK(cfg != NULL);
	if (cfg != NULL) {
		CHECK_EQ_INT(cfg->max_connections, 5);
		CHECK_EQ_INT(cfg->log_level, CFG_LOG_DEBUG);
		CHECK_EQ_STR(cfg->resources[0].backend, "exec:room.sh a;b");
		CHECK_EQ_STR(cfg->resources[0].argv[1], "a;b");
		CHECK_EQ_INT(cfg->resources[0].line, 7);
	}
	cfg_free(cfg);

	/* inih truncates section names to 49 bytes; we do not. */
	memset(path, 'x', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	snprintf(text, sizeof(text), "[gateway]\nlisten = *:80\n"
	    "[resource %s]\nbackend = unix:/s\n", path);
	cfg = parse(text, &errors);
	CHECK(cfg != NULL);
	if (cfg != NULL)
		CHECK_EQ_STR(cfg->resources[0].pattern, path);
	cfg_free(cfg);

	/* A ';' after a blank starts a comment, even inside quotes. */
	CHECK_ONE_ERROR("[gateway]\nlisten = *:80\n[resource /a]\n"
	    "backend = exec:sh -c 'a ; b'\n",
	    "t.ini:4: backend: unbalanced single quote in 'exec:sh -c 'a'");
}

static void
test_line_too_long(void)
{
	static char text[3 * CFG_LINE_MAX], line[CFG_LINE_MAX + 2];
	struct cfg *cfg;
	char *errors;

	/* CFG_LINE_MAX characters is the most: far past inih's own 199.
	 * Long values, long headers and long comments all read whole. */
	memset(line, 'x', CFG_LINE_MAX);
	line[0] = ';';
	line[CFG_LINE_MAX] = '\0';
	snprintf(text, sizeof(text), "%s\n" MINIMAL "%s\r\n", line, line);
	cfg = parse(text, &errors);
	CHECK(cfg != NULL);
	cfg_free(cfg);
	memcpy(line, "env = A=", 8);
	line[CFG_LINE_MAX - 20] = '\0';	/* and a comment after it */
	snprintf(text, sizeof(text), MINIMAL "%s ; a comment\n"
	    "[resource /%.*s]\nbackend = exec:b %.*s\n", line, 300, line + 8,
	    400, line + 8);
	cfg = parse(text, &errors);
	CHECK(cfg != NULL);
	if (cfg != NULL) {
		CHECK_EQ_INT(cfg->n_resources, 2);
		CHECK_EQ_INT(strlen(cfg->resources[0].opts.env[0]),
		    CFG_LINE_MAX - 20 - 6);
		CHECK_EQ_INT(strlen(cfg->resources[1].pattern), 301);
		CHECK_EQ_INT(strlen(cfg->resources[1].argv[1]), 400);
	}
	cfg_free(cfg);

	/* One more is too long, whatever the line is: it is reported, and
	 * ignored; a too long header hides its section's keys. */
	memset(line, 'x', CFG_LINE_MAX + 1);
	line[CFG_LINE_MAX + 1] = '\0';
	snprintf(text, sizeof(text), MINIMAL "%s\n"
	    "[resource /%s]\nbackend = nonsense\n", line, line);
	errors = errors_of(text);
	CHECK_EQ_STR(errors,
	    "t.ini:5: line too long (max 65536 characters)\n"
	    "t.ini:6: line too long (max 65536 characters)\n");
	free(errors);

	/* A long value in a resource is reported, and so is the missing
	 * backend it was meant to set. */
	snprintf(text, sizeof(text), "[gateway]\nlisten = *:80\n"
	    "[resource /a]\nbackend = exec:%s\n", line);
	errors = errors_of(text);
	CHECK_EQ_STR(errors,
	    "t.ini:3: [resource /a] has no backend\n"
	    "t.ini:4: line too long (max 65536 characters)\n");
	free(errors);
}

static void
test_nul_byte(void)
{
	static const char text[] = "[gateway]\nlisten = *:80\nmax_connections"
	    " = 5\0 junk\n[resource /a]\nbackend = unix:/a\n";
	struct cfg *cfg;
	char *errors = NULL;

	cfg = cfg_parse("t.ini", text, sizeof(text) - 1, &errors);
	CHECK(cfg == NULL);
	CHECK_EQ_STR(errors, "t.ini:3: line contains a NUL byte\n");
	free(errors);
	cfg_free(cfg);
}

static void
test_syntax_errors(void)
{
	CHECK_ONE_ERROR(MINIMAL "just words\n",
	    "t.ini:5: syntax error: expected [section] or key = value");
	CHECK_ONE_ERROR(MINIMAL "= value\n",
	    "t.ini:5: syntax error: expected [section] or key = value");
	CHECK_ONE_ERROR(MINIMAL "linger ; = 5\n",
	    "t.ini:5: syntax error: expected [section] or key = value");
	CHECK_ONE_ERROR(MINIMAL "[resource /b\nbackend = exec:x\n",
	    "t.ini:5: syntax error: expected [section] or key = value");
	CHECK_ONE_ERROR(MINIMAL "[resource /b] junk\nbackend = exec:x\n",
	    "t.ini:5: syntax error: expected [section] or key = value");
	CHECK_ONE_ERROR("listen = *:80\n" MINIMAL,
	    "t.ini:1: key 'listen' outside any section");
}

static void
test_section_errors(void)
{
	CHECK_ONE_ERROR(MINIMAL "[server]\nport = 80\n",
	    "t.ini:5: unknown section [server] (expected [gateway], "
	    "[resource PATH], [static PREFIX], [tls NAME] or [cluster])");
	CHECK_ONE_ERROR(MINIMAL "[resource]\nbackend = exec:x\n",
	    "t.ini:5: missing path in [resource PATH]");
	CHECK_ONE_ERROR(MINIMAL "[resourcex /a]\n",
	    "t.ini:5: unknown section [resourcex /a] (expected [gateway], "
	    "[resource PATH], [static PREFIX], [tls NAME] or [cluster])");
	CHECK_ONE_ERROR(MINIMAL "[resource chat]\nbackend = exec:x\n",
	    "t.ini:5: resource path 'chat' must start with '/'");
	CHECK_ONE_ERROR(MINIMAL "[resource /a b]\nbackend = exec:x\n",
	    "t.ini:5: resource path '/a b' must not contain whitespace or "
	    "control characters");
	CHECK_ONE_ERROR(MINIMAL "[resource /a\x01]\nbackend = exec:x\n",
	    "t.ini:5: resource path '/a?' must not contain whitespace or "
	    "control characters");
	CHECK_ONE_ERROR(MINIMAL "[resource /a?b]\nbackend = exec:x\n",
	    "t.ini:5: resource path '/a?b' must not contain '?' or '#'");
	CHECK_ONE_ERROR(MINIMAL "[resource /a#b]\nbackend = exec:x\n",
	    "t.ini:5: resource path '/a#b' must not contain '?' or '#'");
	CHECK_ONE_ERROR(MINIMAL "[resource /a*]\nbackend = exec:x\n",
	    "t.ini:5: resource path '/a*' '*' is only allowed as a final "
	    "'/*'");
	CHECK_ONE_ERROR(MINIMAL "[resource /a/*/b]\nbackend = exec:x\n",
	    "t.ini:5: resource path '/a/*/b' '*' is only allowed as a final "
	    "'/*'");
	CHECK_ONE_ERROR(MINIMAL "[resource /a/*x]\nbackend = exec:x\n",
	    "t.ini:5: resource path '/a/*x' '*' is only allowed as a final "
	    "'/*'");
	CHECK_ONE_ERROR(MINIMAL "\n[resource /echo]\nbackend = exec:x\n",
	    "t.ini:6: duplicate [resource /echo] (first at line 3)");
	CHECK_ONE_ERROR(MINIMAL "[gateway]\nmax_connections = 5\n",
	    "t.ini:5: duplicate [gateway] section (first at line 1)");
	/* Sections without keys are known too. */
	CHECK_ONE_ERROR(MINIMAL "[resource /b]\n",
	    "t.ini:5: [resource /b] has no backend");
	CHECK_ONE_ERROR(MINIMAL "[resource /b]\n[resource /c]\n"
	    "backend = exec:c\n",
	    "t.ini:5: [resource /b] has no backend");
	CHECK_ONE_ERROR(MINIMAL "[resource /b]\nlinger = 1s\n",
	    "t.ini:5: [resource /b] has no backend");
	CHECK_ONE_ERROR("[resource /b]\nbackend = exec:b\n",
	    "t.ini:0: no listen address");
	CHECK_ONE_ERROR("\n[gateway]\n[resource /b]\nbackend = exec:b\n",
	    "t.ini:2: no listen address");
	CHECK_ONE_ERROR("[gateway]\nlisten = *:80\n",
	    "t.ini:0: no [resource PATH] section and no static files");
	CHECK_ONE_ERROR("", "t.ini:0: no listen address\n"
	    "t.ini:0: no [resource PATH] section and no static files");
}

static void
test_key_errors(void)
{
	CHECK_ONE_ERROR(MINIMAL "foo = 1\n",
	    "t.ini:5: unknown key 'foo' in [resource /echo]");
	CHECK_ONE_ERROR(RES_FIRST "foo = 1\n",
	    "t.ini:5: unknown key 'foo' in [gateway]");
	CHECK_ONE_ERROR(RES_FIRST "LISTEN = *:80\n",
	    "t.ini:5: unknown key 'LISTEN' in [gateway]");
	CHECK_ONE_ERROR(RES_FIRST "backend = exec:x\n",
	    "t.ini:5: 'backend' is not allowed in [gateway], only in "
	    "[resource PATH]");
	CHECK_ONE_ERROR(MINIMAL "listen = *:81\n",
	    "t.ini:5: 'listen' is not allowed in [resource /echo], only in "
	    "[gateway]");
	CHECK_ONE_ERROR(MINIMAL "max_connections = 5\n",
	    "t.ini:5: 'max_connections' is not allowed in [resource /echo], "
	    "only in [gateway]");
	CHECK_ONE_ERROR(MINIMAL "linger = 1s\n\nlinger = 2s\n",
	    "t.ini:7: duplicate key 'linger' in [resource /echo] (first at "
	    "line 5)");
	CHECK_ONE_ERROR(MINIMAL "backend = exec:y\n",
	    "t.ini:5: duplicate key 'backend' in [resource /echo] (first at "
	    "line 4)");
	CHECK_ONE_ERROR("[gateway]\nlog_level = info\nlog_level = warn\n"
	    "listen = *:80\n[resource /a]\nbackend = exec:a\n",
	    "t.ini:3: duplicate key 'log_level' in [gateway] (first at "
	    "line 2)");
	CHECK_ONE_ERROR("[gateway]\nlisten = *:80\nlisten = 0.0.0.0:80\n"
	    "[resource /a]\nbackend = exec:a\n",
	    "t.ini:3: duplicate listen address '0.0.0.0:80' (first at line 2 "
	    "as '*:80')");
	CHECK_ONE_ERROR("[gateway]\nlisten = [::1]:80\nlisten = [0::1]:80\n"
	    "[resource /a]\nbackend = exec:a\n",
	    "t.ini:3: duplicate listen address '[0::1]:80' (first at line 2 "
	    "as '[::1]:80')");
	CHECK_ONE_ERROR(MINIMAL "linger =\n", "t.ini:5: linger: missing value");
	CHECK_ONE_ERROR(RES_FIRST "listen =\n",
	    "t.ini:5: listen: missing value");
	/* A bad listen is its own error, not also "no listen address". */
	CHECK_ONE_ERROR("[gateway]\nlisten = localhost:80\n[resource /a]\n"
	    "backend = exec:a\n",
	    "t.ini:2: listen: invalid value 'localhost:80': not a numeric "
	    "IPv4 address");
}

static void
test_value_errors(void)
{
	CHECK_ONE_ERROR(RES_FIRST "max_connections = 0\n",
	    "t.ini:5: max_connections: 0 is out of range 1..1000000");
	CHECK_ONE_ERROR(RES_FIRST "max_connections = 1000001\n",
	    "t.ini:5: max_connections: 1000001 is out of range 1..1000000");
	CHECK_ONE_ERROR(RES_FIRST "max_connections = lots\n",
	    "t.ini:5: max_connections: invalid value 'lots': not a number");
	CHECK_ONE_ERROR(RES_FIRST "max_connections = 1K\n",
	    "t.ini:5: max_connections: invalid value '1K': not a number");
	CHECK_ONE_ERROR(RES_FIRST "max_connections = 99999999999999999999\n",
	    "t.ini:5: max_connections: invalid value "
	    "'99999999999999999999': too large");
	CHECK_ONE_ERROR(RES_FIRST "max_header_size = 1023\n",
	    "t.ini:5: max_header_size: 1023 is out of range 1K..1M");
	CHECK_ONE_ERROR(RES_FIRST "max_header_size = 1025K\n",
	    "t.ini:5: max_header_size: 1025K is out of range 1K..1M");
	CHECK_ONE_ERROR(RES_FIRST "max_headers = 129\n",
	    "t.ini:5: max_headers: 129 is out of range 1..128");
	CHECK_ONE_ERROR(RES_FIRST "handshake_timeout = 99ms\n",
	    "t.ini:5: handshake_timeout: 99ms is out of range 100ms..1h");
	CHECK_ONE_ERROR(RES_FIRST "shutdown_timeout = 61m\n",
	    "t.ini:5: shutdown_timeout: 61m is out of range 0..1h");
	CHECK_ONE_ERROR(RES_FIRST "log_level = loud\n",
	    "t.ini:5: log_level: invalid value 'loud': not a log level "
	    "(error, warn, info or debug)");
	CHECK_ONE_ERROR(MINIMAL "max_message_size = 2G\n",
	    "t.ini:5: max_message_size: 2G is out of range 1..1G");
	CHECK_ONE_ERROR(MINIMAL "max_message_size = 0\n",
	    "t.ini:5: max_message_size: 0 is out of range 1..1G");
	CHECK_ONE_ERROR(MINIMAL "max_message_size = 16777216T\n",
	    "t.ini:5: max_message_size: invalid value '16777216T': not a size "
	    "(a number with an optional K, M or G suffix)");
	CHECK_ONE_ERROR(MINIMAL "max_message_size = 17179869184G\n",
	    "t.ini:5: max_message_size: invalid value '17179869184G': too "
	    "large");
	CHECK_ONE_ERROR(MINIMAL "authorize = maybe\n",
	    "t.ini:5: authorize: invalid value 'maybe': not a boolean (yes, "
	    "no, true, false, on, off, 1 or 0)");
	CHECK_ONE_ERROR(MINIMAL "authorize_timeout = 0\n",
	    "t.ini:5: authorize_timeout: 0 is out of range 100ms..1h");
	CHECK_ONE_ERROR(MINIMAL "linger = 25h\n",
	    "t.ini:5: linger: 25h is out of range 0..24h");
	CHECK_ONE_ERROR(MINIMAL "linger = 5124095576030432h\n",
	    "t.ini:5: linger: invalid value '5124095576030432h': too large");
	CHECK_ONE_ERROR(MINIMAL "close_timeout = 1.5s\n",
	    "t.ini:5: close_timeout: invalid value '1.5s': not a duration (a "
	    "number with an optional ms, s, m or h suffix)");
	CHECK_ONE_ERROR(MINIMAL "stop_timeout = -1\n",
	    "t.ini:5: stop_timeout: invalid value '-1': not a duration (a "
	    "number with an optional ms, s, m or h suffix)");
}

/* The new [gateway] and room options, set, overridden and inherited. */
static void
test_new_options(void)
{
	const struct cfg_room_opts *g, *a, *b;
	struct cfg *cfg;
	char *errors = NULL;

	cfg = parse(
	    "[gateway]\n"
	    "listen = 127.0.0.1:8080\n"
	    "max_connections_per_ip = 20\n"
	    "origins = https://example.com, https://*.example.com:8443\n"
	    "subprotocols = chat.v2 chat\n"
	    "subprotocol_required = yes\n"
	    "max_frame_size = 64K\n"
	    "max_clients = 500\n"
	    "ping_interval = 20s\n"
	    "pong_timeout = 5s\n"
	    "idle_timeout = 10m\n"
	    "max_client_buffer = 256K\n"
	    "backend_buffer = 8K\n"
	    "on_backend_down = close\n"
	    "hold_buffer = 0\n"
	    "hold_timeout = 1m\n"
	    "restart_delay = 250ms\n"
	    "restart_max_delay = 1m\n"
	    "[resource /a]\n"
	    "backend = exec:a\n"
	    "origins = *\n"
	    "subprotocols =\n"
	    "subprotocol_required = no\n"
	    "max_frame_size = 0\n"
	    "max_clients = 2\n"
	    "ping_interval = 0\n"
	    "pong_timeout = 100ms\n"
	    "idle_timeout = 0\n"
	    "max_client_buffer = 1K\n"
	    "backend_buffer = 1G\n"
	    "on_backend_down = HOLD\n"
	    "hold_buffer = 1G\n"
	    "hold_timeout = 0\n"
	    "restart_delay = 0\n"
	    "restart_max_delay = 0\n"
	    "[resource /b]\n"
	    "backend = exec:b\n", &errors);
	CHECK(cfg != NULL);
	if (cfg == NULL) {
		fprintf(stderr, "%s", errors ? errors : "(oom)\n");
		free(errors);
		return;
	}
	g = &cfg->defaults;
	a = &cfg->resources[0].opts;
	b = &cfg->resources[1].opts;
	CHECK_EQ_INT(cfg->max_connections_per_ip, 20);

	CHECK_EQ_STR(g->origins[0], "https://example.com");
	CHECK_EQ_STR(g->origins[1], "https://*.example.com:8443");
	CHECK(g->origins[2] == NULL);
	CHECK_EQ_STR(g->subprotocols[0], "chat.v2");
	CHECK_EQ_STR(g->subprotocols[1], "chat");
	CHECK(g->subprotocols[2] == NULL);
	CHECK(g->subprotocol_required);
	CHECK_EQ_INT(g->max_frame_size, 65536);
	CHECK_EQ_INT(g->max_clients, 500);
	CHECK_EQ_INT(g->ping_interval_ms, 20000);
	CHECK_EQ_INT(g->pong_timeout_ms, 5000);
	CHECK_EQ_INT(g->idle_timeout_ms, 600000);
	CHECK_EQ_INT(g->max_client_buffer, 262144);
	CHECK_EQ_INT(g->backend_buffer, 8192);
	CHECK_EQ_INT(g->on_backend_down, CFG_BACKEND_DOWN_CLOSE);
	CHECK_EQ_INT(g->hold_buffer, 0);
	CHECK_EQ_INT(g->hold_timeout_ms, 60000);
	CHECK_EQ_INT(g->restart_delay_ms, 250);
	CHECK_EQ_INT(g->restart_max_delay_ms, 60000);

	/* /a overrides every one, with its bounds */
	CHECK_EQ_STR(a->origins[0], "*");
	CHECK(a->origins[1] == NULL);
	CHECK(a->subprotocols != NULL && a->subprotocols[0] == NULL);
	CHECK(a->subprotocols != g->subprotocols);
	CHECK(!a->subprotocol_required);
	CHECK_EQ_INT(a->max_frame_size, 0);
	CHECK_EQ_INT(a->max_clients, 2);
	CHECK_EQ_INT(a->ping_interval_ms, 0);
	CHECK_EQ_INT(a->pong_timeout_ms, 100);
	CHECK_EQ_INT(a->idle_timeout_ms, 0);
	CHECK_EQ_INT(a->max_client_buffer, 1024);
	CHECK_EQ_INT(a->backend_buffer, 1 << 30);
	CHECK_EQ_INT(a->on_backend_down, CFG_BACKEND_DOWN_HOLD);
	CHECK_EQ_INT(a->hold_buffer, 1 << 30);
	CHECK_EQ_INT(a->hold_timeout_ms, 0);
	CHECK_EQ_INT(a->restart_delay_ms, 0);
	CHECK_EQ_INT(a->restart_max_delay_ms, 0);
	/* the older options are still [gateway]'s */
	CHECK_EQ_INT(a->max_message_size, 1 << 20);
	CHECK_EQ_INT(a->linger_ms, 10000);

	/* /b inherits all of [gateway]'s, lists shared */
	CHECK(memcmp(b, g, sizeof(*g)) == 0);
	CHECK(b->origins == g->origins);
	CHECK(b->subprotocols == g->subprotocols);
	cfg_free(cfg);

	/* [gateway] after the resources gives them its values all the same */
	cfg = parse(
	    "[resource /a]\n"
	    "backend = exec:a\n"
	    "[gateway]\n"
	    "listen = *:80\n"
	    "origins = https://x.org\n"
	    "on_backend_down = close\n"
	    "pong_timeout = 1h\n", &errors);
	CHECK(cfg != NULL);
	if (cfg == NULL)
		return;
	a = &cfg->resources[0].opts;
	CHECK_EQ_STR(a->origins[0], "https://x.org");
	CHECK(a->origins == cfg->defaults.origins);
	CHECK_EQ_INT(a->on_backend_down, CFG_BACKEND_DOWN_CLOSE);
	CHECK_EQ_INT(a->pong_timeout_ms, 3600000);
	cfg_free(cfg);
}

static void
test_lists(void)
{
	struct cfg *cfg;
	char *errors;

	/* blanks, tabs and commas separate; a comment ends the value; only
	 * separators is the empty list */
	cfg = parse(MINIMAL
	    "origins = ,https://a.example,\thttps://B.example:8080 ,, * ; x\n"
	    "subprotocols = , ,\n", &errors);
	CHECK(cfg != NULL);
	if (cfg != NULL) {
		const struct cfg_room_opts *o = &cfg->resources[0].opts;

		CHECK_EQ_STR(o->origins[0], "https://a.example");
		CHECK_EQ_STR(o->origins[1], "https://B.example:8080");
		CHECK_EQ_STR(o->origins[2], "*");
		CHECK(o->origins[3] == NULL);
		CHECK(o->subprotocols[0] == NULL);
		CHECK(o->origins != cfg->defaults.origins);
		CHECK(cfg->defaults.origins[0] == NULL);
	}
	cfg_free(cfg);

	/* subprotocols are case-sensitive, origins are not */
	cfg = parse(MINIMAL "subprotocols = chat Chat\n", &errors);
	CHECK(cfg != NULL);
	if (cfg != NULL)
		CHECK_EQ_STR(cfg->resources[0].opts.subprotocols[1], "Chat");
	cfg_free(cfg);
	CHECK_ONE_ERROR(MINIMAL "subprotocols = chat json chat\n",
	    "t.ini:5: subprotocols: duplicate subprotocol 'chat'");
	CHECK_ONE_ERROR(MINIMAL "origins = https://a.org, HTTPS://A.ORG\n",
	    "t.ini:5: origins: duplicate origin 'HTTPS://A.ORG'");

	/* every bad item is reported, on the line of the key */
	errors = errors_of(MINIMAL
	    "origins = https://a.org/ x https://ok.org null "
	    "https://a.org:443\n");
	CHECK_EQ_STR(errors,
	    "t.ini:5: origins: invalid origin 'https://a.org/': an origin has "
	    "no path, query or fragment\n"
	    "t.ini:5: origins: invalid origin 'x': expected '*' or "
	    "scheme://host[:port]\n"
	    "t.ini:5: origins: invalid origin 'null': expected '*' or "
	    "scheme://host[:port]\n"
	    "t.ini:5: origins: invalid origin 'https://a.org:443': browsers "
	    "never send the scheme's default port: leave it out\n");
	free(errors);
	CHECK_ONE_ERROR(RES_FIRST "origins = https://*\n",
	    "t.ini:5: origins: invalid origin 'https://*': '*' is only allowed "
	    "as a whole first label, as in https://*.example.com");
	CHECK_ONE_ERROR(MINIMAL "subprotocols = chat a/b\n",
	    "t.ini:5: subprotocols: invalid subprotocol 'a/b': not a token "
	    "(letters, digits and !#$%&'*+-.^_`|~)");
	CHECK_ONE_ERROR(MINIMAL "subprotocols = chat \"x\"\n",
	    "t.ini:5: subprotocols: invalid subprotocol '\"x\"': not a token "
	    "(letters, digits and !#$%&'*+-.^_`|~)");
	CHECK_ONE_ERROR(MINIMAL "origins = *\norigins = *\n",
	    "t.ini:6: duplicate key 'origins' in [resource /echo] (first at "
	    "line 5)");

	/* a bad list in [gateway] is reported once, and the resources that
	 * would inherit it still have a list (the error path frees it) */
	CHECK_ONE_ERROR("[gateway]\nlisten = *:80\norigins = nope\n"
	    "[resource /a]\nbackend = exec:a\n[resource /b]\n"
	    "backend = exec:b\norigins = https://ok.org\n",
	    "t.ini:3: origins: invalid origin 'nope': expected '*' or "
	    "scheme://host[:port]");
	/* and a bad one in a resource too */
	CHECK_ONE_ERROR("[gateway]\nlisten = *:80\norigins = https://g.org\n"
	    "[resource /a]\nbackend = exec:a\norigins = https://ok.org nope\n",
	    "t.ini:6: origins: invalid origin 'nope': expected '*' or "
	    "scheme://host[:port]");
}

static void
test_enum(void)
{
	struct cfg *cfg;
	char *errors;

	cfg = parse(MINIMAL "on_backend_down = Close\n", &errors);
	CHECK(cfg != NULL);
	if (cfg != NULL) {
		CHECK_EQ_INT(cfg->resources[0].opts.on_backend_down,
		    CFG_BACKEND_DOWN_CLOSE);
		CHECK_EQ_INT(cfg->defaults.on_backend_down,
		    CFG_BACKEND_DOWN_HOLD);
	}
	cfg_free(cfg);
	CHECK_ONE_ERROR(MINIMAL "on_backend_down = drop\n",
	    "t.ini:5: on_backend_down: invalid value 'drop': not a policy "
	    "(hold or close)");
	CHECK_ONE_ERROR(MINIMAL "on_backend_down =\n",
	    "t.ini:5: on_backend_down: missing value");
	CHECK_ONE_ERROR(RES_FIRST "log_level = warning\n",
	    "t.ini:5: log_level: invalid value 'warning': not a log level "
	    "(error, warn, info or debug)");
}

/* Bounds and placement of the new options, with their exact messages. */
static void
test_new_value_errors(void)
{
	CHECK_ONE_ERROR(RES_FIRST "max_connections_per_ip = 1000001\n",
	    "t.ini:5: max_connections_per_ip: 1000001 is out of range "
	    "0..1000000");
	CHECK_ONE_ERROR(RES_FIRST "max_connections_per_ip = -1\n",
	    "t.ini:5: max_connections_per_ip: invalid value '-1': not a "
	    "number");
	CHECK_ONE_ERROR(MINIMAL "max_connections_per_ip = 5\n",
	    "t.ini:5: 'max_connections_per_ip' is not allowed in [resource "
	    "/echo], only in [gateway]");
	CHECK_ONE_ERROR(MINIMAL "subprotocol_required = sometimes\n",
	    "t.ini:5: subprotocol_required: invalid value 'sometimes': not a "
	    "boolean (yes, no, true, false, on, off, 1 or 0)");
	CHECK_ONE_ERROR(MINIMAL "max_frame_size = 1025M\n",
	    "t.ini:5: max_frame_size: 1025M is out of range 0..1G");
	CHECK_ONE_ERROR(MINIMAL "max_frame_size = 1k5\n",
	    "t.ini:5: max_frame_size: invalid value '1k5': not a size (a "
	    "number with an optional K, M or G suffix)");
	CHECK_ONE_ERROR(MINIMAL "max_clients = 1000001\n",
	    "t.ini:5: max_clients: 1000001 is out of range 0..1000000");
	CHECK_ONE_ERROR(RES_FIRST "ping_interval = 25h\n",
	    "t.ini:5: ping_interval: 25h is out of range 0..24h");
	CHECK_ONE_ERROR(MINIMAL "pong_timeout = 99ms\n",
	    "t.ini:5: pong_timeout: 99ms is out of range 100ms..1h");
	CHECK_ONE_ERROR(MINIMAL "pong_timeout = 0\n",
	    "t.ini:5: pong_timeout: 0 is out of range 100ms..1h");
	CHECK_ONE_ERROR(MINIMAL "pong_timeout = 61m\n",
	    "t.ini:5: pong_timeout: 61m is out of range 100ms..1h");
	CHECK_ONE_ERROR(MINIMAL "idle_timeout = 1441m\n",
	    "t.ini:5: idle_timeout: 1441m is out of range 0..24h");
	CHECK_ONE_ERROR(MINIMAL "max_client_buffer = 1023\n",
	    "t.ini:5: max_client_buffer: 1023 is out of range 1K..1G");
	CHECK_ONE_ERROR(MINIMAL "max_client_buffer = 2G\n",
	    "t.ini:5: max_client_buffer: 2G is out of range 1K..1G");
	CHECK_ONE_ERROR(MINIMAL "backend_buffer = 4095\n",
	    "t.ini:5: backend_buffer: 4095 is out of range 4K..1G");
	CHECK_ONE_ERROR(MINIMAL "backend_buffer = 3K\n",
	    "t.ini:5: backend_buffer: 3K is out of range 4K..1G");
	CHECK_ONE_ERROR(MINIMAL "hold_buffer = 1048577K\n",
	    "t.ini:5: hold_buffer: 1048577K is out of range 0..1G");
	CHECK_ONE_ERROR(MINIMAL "hold_timeout = 25h\n",
	    "t.ini:5: hold_timeout: 25h is out of range 0..24h");
	CHECK_ONE_ERROR(MINIMAL "restart_delay = 2h\n",
	    "t.ini:5: restart_delay: 2h is out of range 0..1h");
	CHECK_ONE_ERROR(MINIMAL "restart_max_delay = 25h\n",
	    "t.ini:5: restart_max_delay: 25h is out of range 0..24h");
	CHECK_ONE_ERROR(MINIMAL "restart_max_delay = soon\n",
	    "t.ini:5: restart_max_delay: invalid value 'soon': not a duration "
	    "(a number with an optional ms, s, m or h suffix)");
	CHECK_ONE_ERROR(MINIMAL "idle_timeout =\n",
	    "t.ini:5: idle_timeout: missing value");
}

/* restart_max_delay >= restart_delay, as resolved for each section. */
static void
test_restart_delays(void)
{
	struct cfg *cfg;
	char *errors;

	/* both in one section: at restart_max_delay's line */
	CHECK_ONE_ERROR(RES_FIRST "restart_max_delay = 5s\n"
	    "restart_delay = 10s\n",
	    "t.ini:5: restart_max_delay: 5s is less than restart_delay (10s)");
	CHECK_ONE_ERROR(MINIMAL "restart_delay = 10s\n"
	    "restart_max_delay = 9999ms\n",
	    "t.ini:6: restart_max_delay: 9999ms is less than restart_delay "
	    "(10s)");
	/* one of them, the other the default */
	CHECK_ONE_ERROR(RES_FIRST "restart_delay = 20s\n",
	    "t.ini:5: restart_delay: 20s is more than restart_max_delay (10s, "
	    "the default)");
	CHECK_ONE_ERROR(MINIMAL "restart_max_delay = 50ms\n",
	    "t.ini:5: restart_max_delay: 50ms is less than restart_delay "
	    "(100ms, the default)");
	/* one in a resource, the other from [gateway] */
	CHECK_ONE_ERROR("[gateway]\nlisten = *:80\nrestart_delay = 2s\n"
	    "[resource /a]\nbackend = exec:a\nrestart_max_delay = 1s\n",
	    "t.ini:6: restart_max_delay: 1s is less than restart_delay (2s, "
	    "from [gateway])");
	CHECK_ONE_ERROR("[resource /a]\nbackend = exec:a\nrestart_delay = 1m\n"
	    "[gateway]\nlisten = *:80\nrestart_max_delay = 30s\n",
	    "t.ini:3: restart_delay: 1m is more than restart_max_delay (30s, "
	    "from [gateway])");
	/* [gateway]'s pair is wrong: reported there, not again in every
	 * resource that inherits it */
	CHECK_ONE_ERROR("[gateway]\nlisten = *:80\nrestart_delay = 1m\n"
	    "[resource /a]\nbackend = exec:a\n[resource /b]\n"
	    "backend = exec:b\n",
	    "t.ini:3: restart_delay: 1m is more than restart_max_delay (10s, "
	    "the default)");
	/* a refused value is not compared as well */
	CHECK_ONE_ERROR(MINIMAL "restart_delay = 2h\nrestart_max_delay = 1s\n",
	    "t.ini:5: restart_delay: 2h is out of range 0..1h");
	CHECK_ONE_ERROR("[gateway]\nlisten = *:80\nrestart_delay = x\n"
	    "[resource /a]\nbackend = exec:a\nrestart_max_delay = 50ms\n",
	    "t.ini:3: restart_delay: invalid value 'x': not a duration (a "
	    "number with an optional ms, s, m or h suffix)");

	/* equal is fine; so is a resource that mends [gateway]'s default */
	cfg = parse(MINIMAL "restart_delay = 5s\nrestart_max_delay = 5s\n",
	    &errors);
	CHECK(cfg != NULL);
	cfg_free(cfg);
	cfg = parse("[gateway]\nlisten = *:80\nrestart_max_delay = 30s\n"
	    "[resource /a]\nbackend = exec:a\nrestart_delay = 20s\n", &errors);
	CHECK(cfg != NULL);
	if (cfg != NULL) {
		CHECK_EQ_INT(cfg->resources[0].opts.restart_delay_ms, 20000);
		CHECK_EQ_INT(cfg->resources[0].opts.restart_max_delay_ms,
		    30000);
	}
	cfg_free(cfg);
}

static void
test_backend_tcp(void)
{
	static const char text[] = "[gateway]\nlisten = *:80\n"
	    "[resource /a]\nbackend = tcp:10.0.0.7:9000\n"
	    "[resource /b]\nbackend = tcp:[::1]:9001\n";
	char *errors = NULL;
	struct cfg *cfg = cfg_parse("t.ini", text, sizeof(text) - 1, &errors);

	CHECK(cfg != NULL);
	if (cfg != NULL) {
		const struct sockaddr_in *a =
		    (const void *)&cfg->resources[0].tcp_addr;
		const struct sockaddr_in6 *b =
		    (const void *)&cfg->resources[1].tcp_addr;

		CHECK_EQ_INT(cfg->resources[0].backend_kind, CFG_BACKEND_TCP);
		CHECK_EQ_INT(a->sin_family, AF_INET);
		CHECK_EQ_INT(ntohs(a->sin_port), 9000);
		CHECK_EQ_INT(ntohl(a->sin_addr.s_addr), 0x0a000007);
		CHECK_EQ_INT(b->sin6_family, AF_INET6);
		CHECK_EQ_INT(ntohs(b->sin6_port), 9001);
		CHECK_EQ_STR(cfg->resources[1].backend, "tcp:[::1]:9001");
	}
	free(errors);
	cfg_free(cfg);
}

static void
test_backend_errors(void)
{
	char text[512], path[120];

	CHECK_ONE_ERROR("[gateway]\nlisten = *:80\n[resource /a]\n"
	    "backend = udp:127.0.0.1:9000\n",
	    "t.ini:4: backend: invalid value 'udp:127.0.0.1:9000': expected "
	    "unix:PATH, tcp:ADDR:PORT or exec:COMMAND [ARGS]");
	CHECK_ONE_ERROR("[gateway]\nlisten = *:80\n[resource /a]\n"
	    "backend = tcp:example.com:9000\n",
	    "t.ini:4: backend: 'tcp:example.com:9000': not a numeric IPv4 "
	    "address");
	CHECK_ONE_ERROR("[gateway]\nlisten = *:80\n[resource /a]\n"
	    "backend = tcp:*:9000\n",
	    "t.ini:4: backend: 'tcp:*:9000': the address is unspecified");
	CHECK_ONE_ERROR("[gateway]\nlisten = *:80\n[resource /a]\n"
	    "backend = tcp:127.0.0.1:0\n",
	    "t.ini:4: backend: 'tcp:127.0.0.1:0': port out of range 1..65535");
	CHECK_ONE_ERROR("[gateway]\nlisten = *:80\n[resource /a]\n"
	    "backend = unix:\n",
	    "t.ini:4: backend: empty unix socket path");
	CHECK_ONE_ERROR("[gateway]\nlisten = *:80\n[resource /a]\n"
	    "backend = exec:\n",
	    "t.ini:4: backend: empty command in 'exec:'");
	CHECK_ONE_ERROR("[gateway]\nlisten = *:80\n[resource /a]\n"
	    "backend = exec:a \"b\n",
	    "t.ini:4: backend: unbalanced double quote in 'exec:a \"b'");

	/* sun_path holds 107 bytes and the NUL. */
	memset(path, 'p', sizeof(path));
	path[0] = '/';
	path[107] = '\0';
	snprintf(text, sizeof(text), "[gateway]\nlisten = *:80\n"
	    "[resource /a]\nbackend = unix:%s\n", path);
	{
		struct cfg *cfg;
		char *errors;

		cfg = parse(text, &errors);
		CHECK(cfg != NULL);
		if (cfg != NULL)
			CHECK_EQ_STR(cfg->resources[0].unix_path, path);
		cfg_free(cfg);
	}
	path[107] = 'p';
	path[108] = '\0';
	snprintf(text, sizeof(text), "[gateway]\nlisten = *:80\n"
	    "[resource /a]\nbackend = unix:%s\n", path);
	CHECK_ONE_ERROR(text,
	    "t.ini:4: backend: unix socket path longer than 107 bytes");
}

static void
test_many_errors(void)
{
	char *errors;

	errors = errors_of(
	    "[resource /a]\n"			/* 1: no backend */
	    "linger = forever\n"		/* 2 */
	    "[gateway]\n"			/* 3: no listen */
	    "max_connections = 0\n"		/* 4 */
	    "bogus = 1\n"			/* 5 */
	    "[resource /b]\n"
	    "backend = exec:b\n"
	    "max_connections = 5\n"		/* 8 */
	    "[resource /b]\n"			/* 9 */
	    "backend = exec:b\n"		/* ignored */
	    "[nonsense\n");			/* 11 */
	CHECK_EQ_STR(errors,
	    "t.ini:1: [resource /a] has no backend\n"
	    "t.ini:2: linger: invalid value 'forever': not a duration (a "
	    "number with an optional ms, s, m or h suffix)\n"
	    "t.ini:3: no listen address\n"
	    "t.ini:4: max_connections: 0 is out of range 1..1000000\n"
	    "t.ini:5: unknown key 'bogus' in [gateway]\n"
	    "t.ini:8: 'max_connections' is not allowed in [resource /b], only "
	    "in [gateway]\n"
	    "t.ini:9: duplicate [resource /b] (first at line 6)\n"
	    "t.ini:11: syntax error: expected [section] or key = value\n");
	CHECK_EQ_INT(count_lines(errors), 8);
	free(errors);

	/* Control characters never split an error over two lines. */
	errors = errors_of(MINIMAL "fo\ro = 1\n");
	CHECK_EQ_STR(errors,
	    "t.ini:5: unknown key 'fo?o' in [resource /echo]\n");
	free(errors);
}

static void
test_parse_size(void)
{
	const char *why;
	uint64_t v;

	CHECK(cfg_parse_size("0", &v, &why) == 0 && v == 0);
	CHECK(cfg_parse_size("65536", &v, &why) == 0 && v == 65536);
	CHECK(cfg_parse_size("16K", &v, &why) == 0 && v == 16384);
	CHECK(cfg_parse_size("16k", &v, &why) == 0 && v == 16384);
	CHECK(cfg_parse_size("3M", &v, &why) == 0 && v == 3 << 20);
	CHECK(cfg_parse_size("3m", &v, &why) == 0 && v == 3 << 20);
	CHECK(cfg_parse_size("1G", &v, &why) == 0 && v == 1 << 30);
	CHECK(cfg_parse_size("007", &v, &why) == 0 && v == 7);
	CHECK(cfg_parse_size("18446744073709551615", &v, &why) == 0 &&
	    v == UINT64_MAX);
	CHECK(cfg_parse_size("18446744073709551616", &v, &why) == -1);
	CHECK_EQ_STR(why, "too large");
	CHECK(cfg_parse_size("17179869183G", &v, &why) == 0 &&
	    v == 17179869183ULL << 30);
	CHECK(cfg_parse_size("17179869184G", &v, &why) == -1);
	CHECK_EQ_STR(why, "too large");
	CHECK(cfg_parse_size("18014398509481984K", &v, &why) == -1);
	CHECK(cfg_parse_size("", &v, &why) == -1);
	CHECK_EQ_STR(why, "empty value");
	CHECK(cfg_parse_size("K", &v, &why) == -1);
	CHECK(cfg_parse_size("1KB", &v, &why) == -1);
	CHECK(cfg_parse_size("1KiB", &v, &why) == -1);
	CHECK(cfg_parse_size("1 K", &v, &why) == -1);
	CHECK(cfg_parse_size("+1", &v, &why) == -1);
	CHECK(cfg_parse_size("-1", &v, &why) == -1);
	CHECK(cfg_parse_size("1T", &v, &why) == -1);
	CHECK(cfg_parse_size("0x10", &v, &why) == -1);
}

static void
test_parse_duration(void)
{
	const char *why;
	uint64_t v;

	CHECK(cfg_parse_duration("0", &v, &why) == 0 && v == 0);
	CHECK(cfg_parse_duration("30", &v, &why) == 0 && v == 30000);
	CHECK(cfg_parse_duration("250ms", &v, &why) == 0 && v == 250);
	CHECK(cfg_parse_duration("10s", &v, &why) == 0 && v == 10000);
	CHECK(cfg_parse_duration("5m", &v, &why) == 0 && v == 300000);
	CHECK(cfg_parse_duration("2h", &v, &why) == 0 && v == 7200000);
	CHECK(cfg_parse_duration("18446744073709551615ms", &v, &why) == 0 &&
	    v == UINT64_MAX);
	CHECK(cfg_parse_duration("18446744073709551616ms", &v, &why) == -1);
	CHECK_EQ_STR(why, "too large");
	CHECK(cfg_parse_duration("18446744073709551", &v, &why) == 0);
	CHECK(cfg_parse_duration("18446744073709552", &v, &why) == -1);
	CHECK_EQ_STR(why, "too large");
	CHECK(cfg_parse_duration("5124095576030h", &v, &why) == 0);
	CHECK(cfg_parse_duration("5124095576031h", &v, &why) == -1);
	CHECK(cfg_parse_duration("", &v, &why) == -1);
	CHECK_EQ_STR(why, "empty value");
	CHECK(cfg_parse_duration("s", &v, &why) == -1);
	CHECK(cfg_parse_duration("1.5s", &v, &why) == -1);
	CHECK(cfg_parse_duration("1d", &v, &why) == -1);
	CHECK(cfg_parse_duration("1S", &v, &why) == -1);
	CHECK(cfg_parse_duration("1sec", &v, &why) == -1);
	CHECK(cfg_parse_duration("1 s", &v, &why) == -1);
	CHECK(cfg_parse_duration("1mss", &v, &why) == -1);
	CHECK(cfg_parse_duration("-1s", &v, &why) == -1);
}

static void
test_parse_bool(void)
{
	static const char *const yes[] = { "yes", "true", "on", "1", "YES",
	    "True" };
	static const char *const no[] = { "no", "false", "off", "0", "No",
	    "OFF" };
	static const char *const bad[] = { "", "y", "n", "2", "yess",
	    "enabled", " yes" };
	const char *why;
	size_t i;
	bool b;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		b = false;
		CHECK(cfg_parse_bool(yes[i], &b, &why) == 0 && b);
	}
	for (i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		b = true;
		CHECK(cfg_parse_bool(no[i], &b, &why) == 0 && !b);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		CHECK(cfg_parse_bool(bad[i], &b, &why) == -1 && why != NULL);
	}
}

static void
test_parse_listen(void)
{
	static const char *const bad[] = {
	    "", "8080", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0",
	    "127.0.0.1:65536", "127.0.0.1:123456", "127.0.0.1:80x",
	    "127.0.0.1:+80", "127.0.0.1:-1", ":80", "localhost:80",
	    "127.1:80", "256.0.0.1:80", "::1:80", "[::1]", "[::1]80",
	    "[::1:80", "[]:80", "[127.0.0.1]:80", "[fe80::1%eth0]:80",
	    "[::1]:0", "**:80", " 1.2.3.4:80",
	    "[0000:0000:0000:0000:0000:0000:0000:0000:0000]:80",
	};
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	const char *why;
	socklen_t len;
	size_t i;

	CHECK(cfg_parse_listen("127.0.0.1:8080", &ss, &len, &why) == 0);
	CHECK_EQ_INT(ss.ss_family, AF_INET);
	CHECK_EQ_INT(len, sizeof(*sin));
	CHECK_EQ_INT(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	CHECK_EQ_INT(ntohs(sin->sin_port), 8080);

	CHECK(cfg_parse_listen("*:1", &ss, &len, &why) == 0);
	CHECK_EQ_INT(ss.ss_family, AF_INET);
	CHECK_EQ_INT(sin->sin_addr.s_addr, 0);
	CHECK_EQ_INT(ntohs(sin->sin_port), 1);

	CHECK(cfg_parse_listen("10.1.2.3:65535", &ss, &len, &why) == 0);
	CHECK_EQ_INT(ntohl(sin->sin_addr.s_addr), 0x0a010203);
	CHECK_EQ_INT(ntohs(sin->sin_port), 65535);

	CHECK(cfg_parse_listen("[::1]:8080", &ss, &len, &why) == 0);
	CHECK_EQ_INT(ss.ss_family, AF_INET6);
	CHECK_EQ_INT(len, sizeof(*sin6));
	CHECK(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	CHECK_EQ_INT(ntohs(sin6->sin6_port), 8080);

	CHECK(cfg_parse_listen("[::]:443", &ss, &len, &why) == 0);
	CHECK(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
	CHECK(cfg_parse_listen("[::ffff:10.0.0.1]:80", &ss, &len, &why) == 0);
	CHECK(IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr));

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		if (cfg_parse_listen(bad[i], &ss, &len, &why) != -1 ||
		    why == NULL) {
			fprintf(stderr, "listen '%s' accepted\n", bad[i]);
			CHECK(0);
		}
	}
	cfg_parse_listen("::1:80", &ss, &len, &why);
	CHECK_EQ_STR(why, "an IPv6 address needs brackets, as in [::1]:8080");
	cfg_parse_listen("127.0.0.1:0", &ss, &len, &why);
	CHECK_EQ_STR(why, "port out of range 1..65535");
}

/* The flags after a listen address: tls and proxy, in any order,
 * separated as list items are; nothing else, and none on admin_listen. */
static void
test_listen_flags(void)
{
	struct cfg *cfg;
	char *errors = NULL;

	cfg = parse(
	    "[gateway]\n"
	    "listen = 127.0.0.1:8080\n"
	    "listen = 127.0.0.1:8081 proxy\n"
	    "listen = 127.0.0.1:8443 tls proxy\n"
	    "listen = [::1]:8443 proxy\ttls\n"
	    "listen = 127.0.0.1:8444 tls\n"
	    "admin_listen = 127.0.0.1:9090\n"
	    "tls_certificate = /etc/gatewayd/cert.pem\n"
	    "tls_key = /etc/gatewayd/key.pem\n"
	    "[resource /echo]\n"
	    "backend = exec:room.sh\n", &errors);
	CHECK(cfg != NULL);
	if (errors != NULL)
		fprintf(stderr, "%s", errors);
	free(errors);
	if (cfg != NULL) {
		CHECK_EQ_INT(cfg->n_listens, 6);
		CHECK(!cfg->listens[0].tls && !cfg->listens[0].proxy);
		CHECK(!cfg->listens[1].tls && cfg->listens[1].proxy);
		CHECK_EQ_INT(port_of(&cfg->listens[1]), 8081);
		CHECK_EQ_STR(cfg->listens[1].text, "127.0.0.1:8081");
		CHECK(cfg->listens[2].tls && cfg->listens[2].proxy);
		CHECK(cfg->listens[3].tls && cfg->listens[3].proxy);
		CHECK_EQ_INT(cfg->listens[3].addr.ss_family, AF_INET6);
		CHECK(cfg->listens[4].tls && !cfg->listens[4].proxy);
		CHECK(cfg->listens[5].admin && !cfg->listens[5].proxy);
		CHECK(cfg->has_tls);
	}
	cfg_free(cfg);

	/* a proxy listener alone needs no certificate */
	errors = NULL;
	cfg = parse("[gateway]\nlisten = 127.0.0.1:8080 proxy\n"
	    "[resource /echo]\nbackend = exec:room.sh\n", &errors);
	CHECK(cfg != NULL);
	if (cfg != NULL)
		CHECK(cfg->listens[0].proxy && !cfg->has_tls);
	free(errors);
	cfg_free(cfg);

	/* anything else is an error, with its line */
	CHECK_ONE_ERROR("[gateway]\nlisten = 127.0.0.1:8080 proxyx\n"
	    "[resource /echo]\nbackend = exec:room.sh\n",
	    "t.ini:2: listen: unknown flag 'proxyx' (expected tls or proxy)");
	CHECK_ONE_ERROR("[gateway]\nlisten = 127.0.0.1:8080 PROXY\n"
	    "[resource /echo]\nbackend = exec:room.sh\n",
	    "t.ini:2: listen: unknown flag 'PROXY' (expected tls or proxy)");
	CHECK_ONE_ERROR(RES_FIRST "listen = 127.0.0.1:8081 proxy send-proxy\n",
	    "t.ini:5: listen: unknown flag 'send-proxy' (expected tls or "
	    "proxy)");
	CHECK_ONE_ERROR(RES_FIRST "admin_listen = 127.0.0.1:9090 proxy\n",
	    "t.ini:5: admin_listen: unknown flag 'proxy'");
	/* tls proxy is still tls: it needs the certificate */
	CHECK_ONE_ERROR(RES_FIRST "listen = 127.0.0.1:8443 proxy tls\n",
	    "t.ini:5: listen 127.0.0.1:8443 tls needs tls_certificate and "
	    "tls_key in [gateway]");
}

/* Split cmd and compare with the NULL-terminated want. */
static void
check_argv(const char *cmd, const char *const *want)
{
	const char *why = "untouched";
	char **argv;
	size_t i;

	argv = cfg_split_argv(cmd, &why);
	CHECK(argv != NULL);
	CHECK(why == NULL);
	if (argv == NULL) {
		fprintf(stderr, "split '%s' failed\n", cmd);
		return;
	}
	for (i = 0; want[i] != NULL && argv[i] != NULL; i++)
		CHECK_EQ_STR(argv[i], want[i]);
	if (want[i] != NULL || argv[i] != NULL)
		fprintf(stderr, "split '%s': wrong word count\n", cmd);
	CHECK(want[i] == NULL && argv[i] == NULL);
	cfg_argv_free(argv);
}

#define ARGV(...)	((const char *const []){ __VA_ARGS__, NULL })

static void
test_split_argv(void)
{
	const char *why;

	check_argv("a", ARGV("a"));
	check_argv("  a  b\tc \n d  ", ARGV("a", "b", "c", "d"));
	check_argv("/usr/bin/python3 examples/chat/room.py",
	    ARGV("/usr/bin/python3", "examples/chat/room.py"));
	check_argv("sh -c 'echo $HOME; ls *'",
	    ARGV("sh", "-c", "echo $HOME; ls *"));
	check_argv("'a b' c", ARGV("a b", "c"));
	check_argv("'a\\b' '\"'", ARGV("a\\b", "\""));
	check_argv("a'b'c\"d\"e", ARGV("abcde"));
	check_argv("a '' b \"\"", ARGV("a", "", "b", ""));
	check_argv("\"a \\\" b\"", ARGV("a \" b"));
	check_argv("\"\\\\ \\$ \\` \\x \\'\"", ARGV("\\ $ ` \\x \\'"));
	check_argv("\"$HOME\" ~ `id` $(id) a|b >c", ARGV("$HOME", "~",
	    "`id`", "$(id)", "a|b", ">c"));
	check_argv("a\\ b \\'c\\\" \\\\", ARGV("a b", "'c\"", "\\"));
	check_argv("a\\", ARGV("a\\"));
	check_argv("a \\\n b", ARGV("a", "b"));
	check_argv("\"a\\\nb\"", ARGV("ab"));
	check_argv("'a\\\nb'", ARGV("a\\\nb"));
	check_argv("'a\"b' \"c'd\"", ARGV("a\"b", "c'd"));

	why = NULL;
	CHECK(cfg_split_argv("", &why) == NULL);
	CHECK_EQ_STR(why, "empty command");
	CHECK(cfg_split_argv(" \t ", &why) == NULL);
	CHECK_EQ_STR(why, "empty command");
	CHECK(cfg_split_argv("'' a", &why) == NULL);
	CHECK_EQ_STR(why, "empty command");
	CHECK(cfg_split_argv("a 'b", &why) == NULL);
	CHECK_EQ_STR(why, "unbalanced single quote");
	CHECK(cfg_split_argv("a \"b", &why) == NULL);
	CHECK_EQ_STR(why, "unbalanced double quote");
	CHECK(cfg_split_argv("a \"b\\\"", &why) == NULL);
	CHECK_EQ_STR(why, "unbalanced double quote");
	CHECK(cfg_split_argv("a \"b\\", &why) == NULL);
	CHECK_EQ_STR(why, "unbalanced double quote");
	CHECK(cfg_split_argv("a b c 'd", &why) == NULL);
	CHECK_EQ_STR(why, "unbalanced single quote");
}

static void
test_match(void)
{
	const struct cfg_resource *r;
	struct cfg *cfg;
	char *errors;

#define MATCH(path)	cfg_match(cfg, (path), strlen(path))
	cfg = parse(
	    "[gateway]\nlisten = *:80\n"
	    "[resource /rooms/special]\nbackend = exec:a\n"
	    "[resource /rooms/*]\nbackend = exec:b\n"
	    "[resource /rooms/special/x]\nbackend = exec:c\n"
	    "[resource /chat]\nbackend = exec:d\n", &errors);
	CHECK(cfg != NULL);
	if (cfg == NULL)
		return;
	CHECK(MATCH("/rooms/special") == &cfg->resources[0]);
	CHECK(MATCH("/rooms/42") == &cfg->resources[1]);
	CHECK(MATCH("/rooms/a/b") == &cfg->resources[1]);
	/* First match in file order wins over a longer exact one. */
	CHECK(MATCH("/rooms/special/x") == &cfg->resources[1]);
	CHECK(MATCH("/rooms/") == NULL);
	CHECK(MATCH("/rooms") == NULL);
	CHECK(MATCH("/roomsx") == NULL);
	CHECK(MATCH("/chat") == &cfg->resources[3]);
	CHECK(MATCH("/chat/") == NULL);
	CHECK(MATCH("/cha") == NULL);
	CHECK(MATCH("/chatter") == NULL);
	CHECK(MATCH("/") == NULL);
	CHECK(MATCH("") == NULL);
	/* The length counts, not a NUL. */
	r = cfg_match(cfg, "/chat/more", 5);
	CHECK(r == &cfg->resources[3]);
	cfg_free(cfg);

	cfg = parse(
	    "[gateway]\nlisten = *:80\n"
	    "[resource /]\nbackend = exec:root\n"
	    "[resource /*]\nbackend = exec:all\n"
	    "[resource /never]\nbackend = exec:never\n", &errors);
	CHECK(cfg != NULL);
	if (cfg == NULL)
		return;
	CHECK(cfg->resources[1].is_prefix);
	CHECK_EQ_INT(cfg->resources[1].prefix_len, 1);
	CHECK(MATCH("/") == &cfg->resources[0]);
	CHECK(MATCH("/a") == &cfg->resources[1]);
	CHECK(MATCH("/a/b/") == &cfg->resources[1]);
	CHECK(MATCH("/never") == &cfg->resources[1]);
	CHECK(MATCH("") == NULL);
	cfg_free(cfg);
#undef MATCH
}

/* The reference config parses, and documents every row of the table in
 * the table's order, with its default and bounds. */
static void
test_reference_config(void)
{
	struct cfg *cfg;
	char *errors = NULL, *text = NULL, *s, *line, want[128];
	char lo[32], hi[32];
	size_t i, len = 0;
	const char *pos;
	FILE *f;

	cfg = cfg_load("conf/gatewayd.ini", &errors);
	CHECK(cfg != NULL);
	if (errors != NULL)
		fprintf(stderr, "%s", errors);
	free(errors);
	if (cfg != NULL) {
		CHECK_EQ_INT(cfg->n_listens, 1);
		CHECK_EQ_INT(cfg->n_resources, 1);
		CHECK_EQ_INT(cfg->resources[0].backend_kind, CFG_BACKEND_EXEC);
	}
	cfg_free(cfg);

	if ((f = fopen("conf/gatewayd.ini", "r")) == NULL) {
		CHECK(0);
		return;
	}
	/* The lines, each with its leading ';' removed. */
	{
		FILE *out = open_memstream(&text, &len);
		char buf[512];

		while (fgets(buf, sizeof(buf), f) != NULL) {
			CHECK(strlen(buf) <= 200);
			fputs(buf[0] == ';' ? buf + 1 : buf, out);
		}
		fclose(out);
	}
	fclose(f);

	pos = text;
	for (i = 0; i < CFG_NOPTIONS; i++) {
		const struct cfg_option *o = &cfg_options[i];

		/* The heading "name: type, min..max, default DEF". */
		snprintf(want, sizeof(want), "\n %s: ", o->name);
		if ((s = strstr(pos, want)) == NULL) {
			fprintf(stderr, "%s: no heading, or out of order\n",
			    o->name);
			CHECK(0);
			continue;
		}
		line = strndup(s + 1, strcspn(s + 1, "\n"));
		if (o->type == CFG_T_COUNT || o->type == CFG_T_SIZE ||
		    o->type == CFG_T_DURATION) {
			cfg_format(o->type, o->min, lo, sizeof(lo));
			cfg_format(o->type, o->max, hi, sizeof(hi));
			snprintf(want, sizeof(want), ", %s..%s,", lo, hi);
			if (strstr(line, want) == NULL)
				fprintf(stderr, "'%s': no '%s'\n", line, want);
			CHECK(strstr(line, want) != NULL);
		}
		if (o->def != NULL) {
			/* A list's default, "", is the empty list. */
			snprintf(want, sizeof(want), "default %s",
			    *o->def != '\0' ? o->def : "empty");
			if (strstr(line, want) == NULL)
				fprintf(stderr, "'%s': no '%s'\n", line, want);
			CHECK(strstr(line, want) != NULL);
		}
		if (o->type == CFG_T_LIST) {
			snprintf(want, sizeof(want), " %s: list of ", o->name);
			CHECK(strncmp(line, want, strlen(want)) == 0);
		}
		free(line);
		pos = s + 1;

		/* Then the setting itself (for a list, an example). */
		if (o->def != NULL && *o->def != '\0')
			snprintf(want, sizeof(want), "\n%s = %s\n", o->name,
			    o->def);
		else
			snprintf(want, sizeof(want), "\n%s = ", o->name);
		if ((s = strstr(pos, want)) == NULL) {
			fprintf(stderr, "no '%s' after its heading\n",
			    want + 1);
			CHECK(0);
			continue;
		}
		pos = s + 1;
	}
	free(text);
}

/* The text of a file, or NULL. */
static char *
slurp(const char *path)
{
	char *text = NULL, buf[4096];
	size_t len = 0, n;
	FILE *in, *out;

	if ((in = fopen(path, "r")) == NULL)
		return NULL;
	if ((out = open_memstream(&text, &len)) == NULL) {
		fclose(in);
		return NULL;
	}
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		fwrite(buf, 1, n, out);
	fclose(in);
	fclose(out);
	return text;
}

/*
 * gatewayd.ini(5) has a key heading for every row of the table: ".TP",
 * ".B NAME", ".br", then a line that gives the type, and the bounds and
 * the default as the reference config does.  A name the table holds
 * twice (one row per section: max_rooms, tls_certificate, tls_key) needs
 * a heading that fits each of its rows.
 */
static void
test_man_page_keys(void)
{
	char *text, *s, *line, head[128], bounds[80], def[80];
	char lo[32], hi[32];
	size_t i;
	bool found;

	if ((text = slurp("man/gatewayd.ini.5")) == NULL) {
		perror("man/gatewayd.ini.5");
		CHECK(0);
		return;
	}
	for (i = 0; i < CFG_NOPTIONS; i++) {
		const struct cfg_option *o = &cfg_options[i];

		snprintf(head, sizeof(head), "\n.TP\n.B %s\n.br\n", o->name);
		bounds[0] = def[0] = '\0';
		if (o->type == CFG_T_COUNT || o->type == CFG_T_SIZE ||
		    o->type == CFG_T_DURATION) {
			cfg_format(o->type, o->min, lo, sizeof(lo));
			cfg_format(o->type, o->max, hi, sizeof(hi));
			snprintf(bounds, sizeof(bounds), ", %s..%s,", lo, hi);
		}
		if (o->def != NULL)
			snprintf(def, sizeof(def), "default %s",
			    *o->def != '\0' ? o->def : "empty");
		found = false;
		for (s = strstr(text, head); s != NULL && !found;
		    s = strstr(s + 1, head)) {
			s += strlen(head);
			line = strndup(s, strcspn(s, "\n"));
			found = line != NULL && strstr(line, bounds) != NULL &&
			    strstr(line, def) != NULL &&
			    (o->type != CFG_T_LIST ||
			    strncmp(line, "list of ", 8) == 0);
			free(line);
		}
		if (!found)
			fprintf(stderr, "man/gatewayd.ini.5: no heading "
			    "\".TP\", \".B %s\", \".br\" followed by a line "
			    "with '%s'%s%s%s\n", o->name, o->type == CFG_T_LIST ?
			    "list of" : bounds, *def != '\0' ? " and '" : "", def,
			    *def != '\0' ? "'" : "");
		CHECK(found);
	}
	free(text);
}

static void
test_load(void)
{
	struct cfg *cfg;
	char *errors = NULL;

	cfg = cfg_load("/nonexistent/gatewayd.ini", &errors);
	CHECK(cfg == NULL);
	CHECK_EQ_STR(errors,
	    "/nonexistent/gatewayd.ini: No such file or directory\n");
	free(errors);

	errors = NULL;
	cfg = cfg_load("conf", &errors);
	CHECK(cfg == NULL);
	CHECK_EQ_STR(errors, "conf: Is a directory\n");
	free(errors);

	errors = NULL;
	cfg = cfg_load("/dev/null", &errors);
	CHECK(cfg == NULL);
	CHECK(has_line(errors, "/dev/null:0: no listen address"));
	free(errors);
	cfg_free(NULL);
}

int
main(void)
{
	RUN(test_example);
	RUN(test_crlf);
	RUN(test_defaults);
	RUN(test_table);
	RUN(test_gateway_last);
	RUN(test_reader);
	RUN(test_line_too_long);
	RUN(test_nul_byte);
	RUN(test_syntax_errors);
	RUN(test_section_errors);
	RUN(test_key_errors);
	RUN(test_value_errors);
	RUN(test_new_options);
	RUN(test_lists);
	RUN(test_enum);
	RUN(test_new_value_errors);
	RUN(test_restart_delays);
	RUN(test_backend_errors);
	RUN(test_backend_tcp);
	RUN(test_many_errors);
	RUN(test_parse_size);
	RUN(test_parse_duration);
	RUN(test_parse_bool);
	RUN(test_parse_listen);
	RUN(test_listen_flags);
	RUN(test_split_argv);
	RUN(test_match);
	RUN(test_reference_config);
	RUN(test_man_page_keys);
	RUN(test_load);
	return check_summary();
}
