/* version.h: the one place gatewayd's version is written. */
#ifndef GATEWAYD_VERSION_H
#define GATEWAYD_VERSION_H

#define GATEWAYD_VERSION "0.2.0"

#endif
