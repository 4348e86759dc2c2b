/*
 * tls: the TLS contexts of the tls listeners: [gateway]'s certificate and
 * one for each [tls NAME] section, picked by the name a client asks for
 * (SNI); TLS 1.2 and 1.3 (tls_min_version), Mozilla's "intermediate"
 * ciphers in the server's order, ALPN http/1.1, session resumption by
 * tickets and a cache.
 *
 * The contexts are built anew from the files on start and on reload; a
 * connection keeps the context it began with (OpenSSL counts references),
 * so a reload drops nobody.  Ticket keys are new with every build, so a
 * reload rotates them.
 */
#ifndef GATEWAYD_TLS_H
#define GATEWAYD_TLS_H

#include <stdbool.h>

#include <openssl/ssl.h>

#include "cfg.h"

struct tls_set;

/* Build the contexts of cfg (none when it has no tls listener), without
 * using them yet.  NULL when a file does not load, with *errors set to
 * "FILE:LINE: message\n" lines, of the key that names each (or NULL
 * when out of memory). */
struct tls_set *tls_build(const struct cfg *cfg, char **errors);
/* Use set for new connections from now on (and free the ones in use:
 * connections keep theirs). */
void tls_use(struct tls_set *set);
void tls_discard(struct tls_set *set);
/* tls_build and tls_use: 0, or -1 with *errors. */
int tls_load(const struct cfg *cfg, char **errors);

/* A new server-side TLS connection on fd, or NULL (out of memory). */
SSL *tls_new(int fd);

/* The server name the client asked for (SNI), or NULL. */
const char *tls_server_name(SSL *ssl);

/* Free the contexts. */
void tls_free(void);

#endif
