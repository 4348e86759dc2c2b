/*
 * tls: see tls.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>

#include "tls.h"

/* Mozilla's "intermediate" TLS 1.2 ciphers (TLS 1.3's are OpenSSL's
 * defaults, all of them in the profile), AES-GCM first: it is the
 * cheapest where the CPU has AES instructions. */
#define TLS_CIPHERS \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:" \
	"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:" \
	"DHE-RSA-CHACHA20-POLY1305"

/* With tls_min_version 1.0 or 1.1, Mozilla's "old" profile: its clients
 * know only CBC suites, and some only RSA key exchange. */
#define TLS_CIPHERS_OLD TLS_CIPHERS ":" \
	"ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:" \
	"ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:" \
	"ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:" \
	"ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA:" \
	"DHE-RSA-AES128-SHA256:DHE-RSA-AES256-SHA256:" \
	"AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA256:AES256-SHA256:" \
	"AES128-SHA:AES256-SHA:DES-CBC3-SHA"

struct tls_name {
	char *name;		/* "example.com" or "*.example.com" */
	SSL_CTX *ctx;
};

/* Contexts: the default and one per [tls NAME]. */
struct tls_set {
	SSL_CTX *def;			/* NULL: no tls listener */
	struct tls_name *names;
	size_t n;
};

/* The contexts in use. */
static struct tls_set tls_current;

static void
tls_set_free(struct tls_set *set)
{
	size_t i;

	for (i = 0; i < set->n; i++) {
		SSL_CTX_free(set->names[i].ctx);
		free(set->names[i].name);
	}
	free(set->names);
	SSL_CTX_free(set->def);
	memset(set, 0, sizeof(*set));
}

/* ALPN: http/1.1 when offered; a client that offers only others (h2)
 * goes on without ALPN, and its HTTP/1.1 request says the rest. */
static int
tls_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char want[] = "\x08http/1.1";
	unsigned int i;

	for (i = 0; i < inlen; i += 1u + in[i]) {
		if (in[i] == 8 && i + 9 <= inlen &&
		    memcmp(in + i, want, 9) == 0) {
			*out = in + i + 1;
			*outlen = 8;
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_NOACK;
}

/* Whether the server name matches a section's name: equal without regard
 * to case, or "*.domain" with one more label in front. */
static bool
tls_name_matches(const char *pattern, const char *name)
{
	const char *dot;

	if (strncmp(pattern, "*.", 2) != 0)
		return strcasecmp(pattern, name) == 0;
	dot = strchr(name, '.');
	return dot != NULL && dot > name && strcasecmp(dot + 1, pattern + 2) == 0;
}

/* SNI: switch to the section's context; exact names before wildcards;
 * an unknown name keeps the default. */
static int
tls_servername_cb(SSL *ssl, int *alert, void *arg)
{
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	SSL_CTX *ctx = NULL;
	size_t i;
	int pass;

	if (name == NULL)
		return SSL_TLSEXT_ERR_OK;
	for (pass = 0; pass < 2 && ctx == NULL; pass++) {
		for (i = 0; i < tls_current.n && ctx == NULL; i++) {
			bool wild = tls_current.names[i].name[0] == '*';

			if (wild == (pass == 1) &&
			    tls_name_matches(tls_current.names[i].name, name))
				ctx = tls_current.names[i].ctx;
		}
	}
	if (ctx != NULL)
		SSL_set_SSL_CTX(ssl, ctx);
	return SSL_TLSEXT_ERR_OK;
}

/* The last OpenSSL error as text. */
static const char *
tls_error(char *buf, size_t size)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		snprintf(buf, size, "unknown error");
	else
		ERR_error_string_n(e, buf, size);
	ERR_clear_error();
	return buf;
}

/* Add "FILE:LINE: what 'path': why" to the error text *out. */
static void
tls_report(char **out, const char *file, int line, const char *what,
    const char *path, const char *why)
{
	char *s;

	if (asprintf(&s, "%s%s:%d: %s '%s': %s\n", *out != NULL ? *out : "",
	    file, line, what, path, why) == -1)
		return;
	free(*out);
	*out = s;
}

/* A context with cert and key, or NULL with the errors reported. */
static SSL_CTX *
tls_ctx_new(const struct cfg *cfg, const struct cfg_text *cert,
    const struct cfg_text *key, char **errors)
{
	static const int versions[] = {
		[CFG_TLS_1_0] = TLS1_VERSION,
		[CFG_TLS_1_1] = TLS1_1_VERSION,
		[CFG_TLS_1_2] = TLS1_2_VERSION,
		[CFG_TLS_1_3] = TLS1_3_VERSION,
	};
	static const unsigned char sid[] = "gatewayd";
	char why[256];
	SSL_CTX *ctx;

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		tls_report(errors, cfg->file, cert->line, "tls_certificate",
		    cert->value, tls_error(why, sizeof(why)));
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, versions[cfg->tls_min_version]);
	/* The oldest versions need OpenSSL's lowest security level. */
	if (cfg->tls_min_version < CFG_TLS_1_2)
		SSL_CTX_set_security_level(ctx, 0);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* Idle connections hold no record buffers; writes may stop after
	 * any record, and may be retried from a buffer that moved. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
	    SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_cipher_list(ctx, cfg->tls_min_version < CFG_TLS_1_2 ?
	    TLS_CIPHERS_OLD : TLS_CIPHERS);
	SSL_CTX_set_dh_auto(ctx, 1);
	SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_cb, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert->value) != 1) {
		tls_report(errors, cfg->file, cert->line, "tls_certificate",
		    cert->value, tls_error(why, sizeof(why)));
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key->value, SSL_FILETYPE_PEM) != 1) {
		tls_report(errors, cfg->file, key->line, "tls_key", key->value,
		    tls_error(why, sizeof(why)));
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		tls_report(errors, cfg->file, key->line, "tls_key", key->value,
		    "does not match tls_certificate");
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

struct tls_set *
tls_build(const struct cfg *cfg, char **errors)
{
	struct tls_set *set;
	size_t i;

	*errors = NULL;
	if ((set = calloc(1, sizeof(*set))) == NULL)
		return NULL;
	if (!cfg->has_tls)
		return set;
	set->def = tls_ctx_new(cfg, &cfg->tls_certificate, &cfg->tls_key,
	    errors);
	set->names = calloc(cfg->n_tls + 1, sizeof(*set->names));
	if (set->names == NULL)
		goto fail;
	for (i = 0; i < cfg->n_tls; i++) {
		set->names[i].name = strdup(cfg->tls[i].name);
		set->names[i].ctx = tls_ctx_new(cfg, &cfg->tls[i].certificate,
		    &cfg->tls[i].key, errors);
		set->n++;
		if (set->names[i].name == NULL)
			goto fail;
	}
	if (*errors != NULL || set->def == NULL)
		goto fail;
	SSL_CTX_set_tlsext_servername_callback(set->def, tls_servername_cb);
	return set;
fail:
	tls_discard(set);
	return NULL;
}

void
tls_use(struct tls_set *set)
{
	tls_set_free(&tls_current);
	tls_current = *set;
	free(set);
}

void
tls_discard(struct tls_set *set)
{
	if (set == NULL)
		return;
	tls_set_free(set);
	free(set);
}

int
tls_load(const struct cfg *cfg, char **errors)
{
	struct tls_set *set = tls_build(cfg, errors);

	if (set == NULL)
		return -1;
	tls_use(set);
	return 0;
}

SSL *
tls_new(int fd)
{
	SSL *ssl;

	if (tls_current.def == NULL || (ssl = SSL_new(tls_current.def)) == NULL)
		return NULL;
	if (SSL_set_fd(ssl, fd) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_accept_state(ssl);
	return ssl;
}

const char *
tls_server_name(SSL *ssl)
{
	return SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
}

void
tls_free(void)
{
	tls_set_free(&tls_current);
}
