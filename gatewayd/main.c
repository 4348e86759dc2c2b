/*
 * gatewayd: a WebSocket gateway whose rooms are backend programs.
 *
 * Run with a configuration file (-c), or with the one-line start: flags
 * and a command, as websocketd is run.  The flags are made into the text
 * of a configuration (cfg_from_command), so that both ways build the
 * same model and "-t" shows the file the flags stand for.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "ctl.h"
#include "gatewayd.h"
#include "log.h"
#include "tls.h"
#include "version.h"

#define GATEWAYD_DEFAULT_CONFIG "/etc/gatewayd/gatewayd.ini"

/* The most --listen, --address and --env flags taken. */
#define MAIN_MAX_REPEATS 64

static void
usage(FILE *out)
{
	fprintf(out,
"usage: gatewayd [-t] [-c FILE]\n"
"       gatewayd [-t] --listen ADDR:PORT [OPTIONS] [--] COMMAND [ARG...]\n"
"       gatewayd [-t] --listen ADDR:PORT --static DIR\n"
"       gatewayd tap [-c FILE | -a ADMIN] ROOM\n"
"       gatewayd inject [-c FILE | -a ADMIN] ROOM RECORD\n"
"\n"
"Run a WebSocket gateway with the configuration in FILE, or serve every\n"
"path with COMMAND, one process per connection whose lines are messages,\n"
"as websocketd does (docs/WEBSOCKETD.md).\n"
"\n"
"  -c, --config FILE     the configuration (default " GATEWAYD_DEFAULT_CONFIG ")\n"
"  -t, --check           check the configuration and exit, 0 if it is valid;\n"
"                        with the flags of the one-line start, print the\n"
"                        configuration they make, as an ini file\n"
"  -V, --version         print the version and exit\n"
"  -h, --help            this help\n"
"\n"
"The one-line start (no configuration file):\n"
"  -l, --listen ADDR:PORT  accept clients there; repeatable.  IPv6 as\n"
"                        [::1]:8080, every address as *:8080\n"
"      --port PORT       websocketd's: listen on *:PORT (every IPv4\n"
"                        address), or on each --address\n"
"      --address ADDR    websocketd's: an address for --port; repeatable\n"
"      --room            COMMAND speaks the records of docs/PROTOCOL.md and\n"
"                        serves a room: one process per path, shared by the\n"
"                        path's clients (default: one per connection, lines)\n"
"      --binary          relay bytes as they are: each read of the program's\n"
"                        output is a binary message (websocketd's --binary)\n"
"      --static DIR      serve the files in DIR over HTTP on the same port\n"
"                        (websocketd's --staticdir, also accepted)\n"
"      --passenv LIST    variables of gatewayd's environment the program\n"
"                        gets, besides PATH and LANG (commas or blanks)\n"
"      --env NAME=VALUE  a variable for the program; repeatable\n"
"      --origins LIST    allowed Origin values (scheme://host[:port])\n"
"      --max-processes N at most N programs at once; more clients get 503\n"
"                        (websocketd's --maxforks, also accepted)\n"
"      --log-level LEVEL error, warn, info or debug\n"
"\n"
"The room tap, through the admin listener (admin_listen):\n"
"  tap ROOM              print the room's records as they flow: \"< \" to its\n"
"                        backend, \"> \" from it\n"
"  inject ROOM RECORD    carry out a command record in the room as if its\n"
"                        backend had written it\n"
"  -a ADMIN              the admin listener, HOST:PORT or a socket path\n"
"                        (default: admin_listen of -c FILE)\n"
"\n"
"Signals: TERM and INT stop gracefully (clients get 1001; a second one\n"
"stops at once); HUP reloads the configuration.\n");
}

enum main_flag {
	MAIN_PORT = 256,
	MAIN_ADDRESS,
	MAIN_ROOM,
	MAIN_BINARY,
	MAIN_STATIC,
	MAIN_PASSENV,
	MAIN_ENV,
	MAIN_ORIGINS,
	MAIN_MAX_PROCESSES,
	MAIN_LOG_LEVEL,
};

static const struct option main_options[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "check", no_argument, NULL, 't' },
	{ "version", no_argument, NULL, 'V' },
	{ "help", no_argument, NULL, 'h' },
	{ "listen", required_argument, NULL, 'l' },
	{ "port", required_argument, NULL, MAIN_PORT },
	{ "address", required_argument, NULL, MAIN_ADDRESS },
	{ "room", no_argument, NULL, MAIN_ROOM },
	{ "binary", no_argument, NULL, MAIN_BINARY },
	{ "static", required_argument, NULL, MAIN_STATIC },
	{ "staticdir", required_argument, NULL, MAIN_STATIC },
	{ "passenv", required_argument, NULL, MAIN_PASSENV },
	{ "env", required_argument, NULL, MAIN_ENV },
	{ "origins", required_argument, NULL, MAIN_ORIGINS },
	{ "max-processes", required_argument, NULL, MAIN_MAX_PROCESSES },
	{ "maxforks", required_argument, NULL, MAIN_MAX_PROCESSES },
	{ "log-level", required_argument, NULL, MAIN_LOG_LEVEL },
	{ NULL, 0, NULL, 0 },
};

/* Append a string to a NULL-terminated array of at most
 * MAIN_MAX_REPEATS; false when full. */
static bool
main_push(const char **list, size_t *n, const char *s)
{
	if (*n >= MAIN_MAX_REPEATS)
		return false;
	list[(*n)++] = s;
	list[*n] = NULL;
	return true;
}

/* --port and --address, as websocketd takes them, into listen values. */
static int
main_port_listens(const char *port, const char **addresses, size_t n,
    const char **listens, size_t *n_listens, char **owned)
{
	size_t i;
	int r;

	if (n == 0) {
		if (asprintf(&owned[0], "*:%s", port) == -1)
			return -1;
		return main_push(listens, n_listens, owned[0]) ? 0 : -1;
	}
	for (i = 0; i < n; i++) {
		r = strchr(addresses[i], ':') != NULL &&
		    addresses[i][0] != '[' ?
		    asprintf(&owned[i], "[%s]:%s", addresses[i], port) :
		    asprintf(&owned[i], "%s:%s", addresses[i], port);
		if (r == -1 || !main_push(listens, n_listens, owned[i]))
			return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	const char *file = NULL, *listens[MAIN_MAX_REPEATS + 1] = { NULL };
	const char *env[MAIN_MAX_REPEATS + 1] = { NULL };
	const char *addresses[MAIN_MAX_REPEATS + 1] = { NULL };
	char *owned[MAIN_MAX_REPEATS + 2] = { NULL };
	size_t n_listens = 0, n_env = 0, n_addresses = 0, i;
	const char *port = NULL, *why;
	struct cfg_command cmd;
	bool check_only = false, one_line = false;
	struct cfg *cfg;
	char *errors = NULL, *text = NULL;
	int opt, status = 2;

	memset(&cmd, 0, sizeof(cmd));
	if (argc > 1 && (strcmp(argv[1], "tap") == 0 ||
	    strcmp(argv[1], "inject") == 0 || strcmp(argv[1], "upgrade") == 0))
		return ctl_main(argc - 1, argv + 1);
	/* An upgrade starts the binary found at this path now (it may
	 * have been replaced meanwhile) with these arguments. */
	server.argv = argv;
	server.exe = realpath("/proc/self/exe", NULL);
	/* '+': options end at the first operand, the command. */
	while ((opt = getopt_long(argc, argv, "+c:thVl:", main_options,
	    NULL)) != -1) {
		if (opt >= MAIN_PORT || opt == 'l')
			one_line = true;
		switch (opt) {
		case 'c':
			file = optarg;
			break;
		case 't':
			check_only = true;
			break;
		case 'V':
			printf("gatewayd %s\n", GATEWAYD_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case 'l':
			if (!main_push(listens, &n_listens, optarg))
				goto too_many;
			break;
		case MAIN_PORT:
			port = optarg;
			break;
		case MAIN_ADDRESS:
			if (!main_push(addresses, &n_addresses, optarg))
				goto too_many;
			break;
		case MAIN_ROOM:
			cmd.room = true;
			break;
		case MAIN_BINARY:
			cmd.binary = true;
			break;
		case MAIN_STATIC:
			cmd.static_dir = optarg;
			break;
		case MAIN_PASSENV:
			cmd.passenv = optarg;
			break;
		case MAIN_ENV:
			if (!main_push(env, &n_env, optarg))
				goto too_many;
			break;
		case MAIN_ORIGINS:
			cmd.origins = optarg;
			break;
		case MAIN_MAX_PROCESSES:
			cmd.max_processes = optarg;
			break;
		case MAIN_LOG_LEVEL:
			cmd.log_level = optarg;
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc)
		one_line = true;
	if (one_line && file != NULL) {
		fprintf(stderr, "gatewayd: -c and the one-line start's flags "
		    "and command do not go together\n");
		return 2;
	}
	if (!one_line) {
		if (file == NULL)
			file = GATEWAYD_DEFAULT_CONFIG;
		cfg = cfg_load(file, &errors);
	} else {
		if (port != NULL && main_port_listens(port, addresses,
		    n_addresses, listens, &n_listens, owned) == -1)
			goto too_many;
		if (n_listens == 0) {
			fprintf(stderr, "gatewayd: the one-line start needs "
			    "--listen ADDR:PORT (or --port)\n");
			goto out;
		}
		if (optind == argc && cmd.static_dir == NULL) {
			fprintf(stderr, "gatewayd: no command to run (and no "
			    "--static directory to serve)\n");
			goto out;
		}
		cmd.listens = listens;
		cmd.env = env;
		cmd.argv = optind < argc ? argv + optind : NULL;
		file = "(command line)";
		if ((text = cfg_from_command(&cmd, &why)) == NULL) {
			fprintf(stderr, "gatewayd: %s\n", why != NULL ? why :
			    "out of memory");
			goto out;
		}
		cfg = cfg_parse(file, text, strlen(text), &errors);
	}
	/* What the file names on this machine: programs, directories,
	 * certificates and keys (loaded for good here, before any
	 * privilege drop). */
	if (cfg != NULL && (cfg_check_system(cfg, &errors) == -1 ||
	    tls_load(cfg, &errors) == -1)) {
		cfg_free(cfg);
		cfg = NULL;
	}
	status = 1;
	if (cfg == NULL) {
		fputs(errors != NULL ? errors : "gatewayd: out of memory\n",
		    stderr);
		fprintf(stderr, "gatewayd: %s: configuration is invalid\n", file);
		goto out;
	}
	if (check_only) {
		if (text != NULL)
			fputs(text, stdout);
		else
			printf("gatewayd: %s: configuration is valid\n", file);
		tls_free();
		cfg_free(cfg);
		status = 0;
		goto out;
	}

	log_init((enum log_level)cfg->log_level);
	if (server_start(cfg) == -1) {
		server_free();
		cfg_free(cfg);
		goto out;
	}
	status = server_run();
	/* A reload may have replaced it. */
	cfg = server.cfg;
	server_free();
	cfg_free(cfg);
out:
	free(server.exe);
	free(errors);
	free(text);
	for (i = 0; i < sizeof(owned) / sizeof(owned[0]); i++)
		free(owned[i]);
	return status;
too_many:
	fprintf(stderr, "gatewayd: too many --listen, --address or --env "
	    "flags (at most %d each)\n", MAIN_MAX_REPEATS);
	status = 2;
	goto out;
}
