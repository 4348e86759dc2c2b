/*
 * utf8: incremental UTF-8 validation (RFC 3629).
 *
 * Pure: no I/O, no allocation.  Rejects overlong forms, UTF-16 surrogates
 * and code points above U+10FFFF, and fails on the first byte that makes the
 * input invalid (RFC 6455 asks a receiver to fail fast on bad text, so a
 * fragmented message is refused as soon as its bad byte arrives).
 */
#ifndef GATEWAYD_UTF8_H
#define GATEWAYD_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Validation state carried across calls; zero-initialised means "at a
 * character boundary, nothing seen". */
struct utf8 {
	uint32_t state;
};

void utf8_init(struct utf8 *u);

/* Feed n bytes.  Returns 0 while the input so far is valid or a valid
 * prefix (a sequence may be left open), -1 at the first invalid byte; once
 * invalid, every later call returns -1. */
int utf8_feed(struct utf8 *u, const uint8_t *p, size_t n);

/* True when the input fed so far ends on a character boundary. */
bool utf8_complete(const struct utf8 *u);

/* True when p[0..n) is whole, valid UTF-8. */
bool utf8_valid(const uint8_t *p, size_t n);

/* The length of the longest prefix of the valid UTF-8 string p[0..n) that
 * is at most max bytes long and does not split a character. */
size_t utf8_truncate(const uint8_t *p, size_t n, size_t max);

/* The length of the whole, valid character p[0..n) starts with, or 0
 * when it starts with none (an invalid byte, or a cut sequence). */
size_t utf8_char(const uint8_t *p, size_t n);

/* Copy p[0..n) into out (room for 3 * n bytes), each byte that starts
 * no valid character replaced by U+FFFD, and return the length written:
 * text from a program that must go out as a text message. */
size_t utf8_sanitize(const uint8_t *p, size_t n, uint8_t *out);

#endif
