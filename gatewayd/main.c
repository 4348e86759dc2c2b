/*
 * gatewayd: a WebSocket gateway whose rooms are backend programs.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cfg.h"
#include "gatewayd.h"
#include "log.h"

#include "version.h"
#define GATEWAYD_DEFAULT_CONFIG "/etc/gatewayd/gatewayd.ini"

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: gatewayd [-t] [-c FILE]\n"
	    "  -c FILE  the configuration (default " GATEWAYD_DEFAULT_CONFIG ")\n"
	    "  -t       check the configuration and exit: 0 if it is valid\n"
	    "  -V       print the version and exit\n"
	    "  -h       this help\n");
}

int
main(int argc, char **argv)
{
	const char *file = GATEWAYD_DEFAULT_CONFIG;
	bool check_only = false;
	struct cfg *cfg;
	char *errors;
	int opt, status;

	while ((opt = getopt(argc, argv, "c:thV")) != -1) {
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
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	cfg = cfg_load(file, &errors);
	if (cfg != NULL && cfg_check_system(cfg, &errors) == -1) {
		cfg_free(cfg);
		cfg = NULL;
	}
	if (cfg == NULL) {
		fputs(errors != NULL ? errors : "gatewayd: out of memory\n", stderr);
		fprintf(stderr, "gatewayd: %s: configuration is invalid\n", file);
		free(errors);
		return 1;
	}
	if (check_only) {
		printf("gatewayd: %s: configuration is valid\n", file);
		cfg_free(cfg);
		return 0;
	}

	log_init((enum log_level)cfg->log_level);
	if (server_start(cfg) == -1) {
		server_free();
		cfg_free(cfg);
		return 1;
	}
	status = server_run();
	server_free();
	cfg_free(cfg);
	return status;
}
