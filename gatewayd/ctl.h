/*
 * ctl: the "tap" and "inject" subcommands of gatewayd (see ctl.c).
 */
#ifndef GATEWAYD_CTL_H
#define GATEWAYD_CTL_H

/* Run a subcommand: argv[0] is "tap" or "inject".  Returns the exit
 * status. */
int ctl_main(int argc, char **argv);

#endif
