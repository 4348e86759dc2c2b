/*
 * blob: a byte string of typed fields, written in order and read back in
 * the same order: the state one gatewayd process hands to the next on an
 * upgrade (docs/OPERATIONS.md).
 *
 * Pure.  Integers are little-endian and fixed-width, byte strings are
 * a u64 length then the bytes, so that processes built from different
 * versions of the code read the same fields the same way (the structs in
 * memory may differ).  Writing past an allocation failure, and reading
 * past the end or a length that does not fit, set failed and are
 * otherwise harmless: a caller checks failed once at the end.
 */
#ifndef GATEWAYD_BLOB_H
#define GATEWAYD_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct blob {
	uint8_t *data;		/* writing: malloc'd; reading: the caller's */
	size_t len;		/* bytes written, or bytes there are */
	size_t cap;		/* writing: allocated */
	size_t pos;		/* reading: the next byte */
	bool failed;
};

/* Writing, into a blob that starts zeroed. */
void blob_put_u8(struct blob *b, uint8_t v);
void blob_put_u32(struct blob *b, uint32_t v);
void blob_put_u64(struct blob *b, uint64_t v);
void blob_put_bytes(struct blob *b, const void *data, size_t len);
/* A string, or NULL (told apart from ""). */
void blob_put_str(struct blob *b, const char *s);
/* Free what was written. */
void blob_free(struct blob *b);

/* Reading data[0..len): a blob set up with blob_reader. */
void blob_reader(struct blob *b, const void *data, size_t len);
uint8_t blob_get_u8(struct blob *b);
uint32_t blob_get_u32(struct blob *b);
uint64_t blob_get_u64(struct blob *b);
/* A bool, failing on anything but 0 and 1. */
bool blob_get_bool(struct blob *b);
/* A byte string: points into the data (its length in *len), at most max
 * bytes long; NULL with failed set when it does not fit. */
const uint8_t *blob_get_bytes(struct blob *b, size_t *len, size_t max);
/* A string written by blob_put_str, as a malloc'd copy (no NUL inside),
 * at most max bytes; NULL for a NULL one, or with failed set. */
char *blob_get_str(struct blob *b, size_t max);

#endif
