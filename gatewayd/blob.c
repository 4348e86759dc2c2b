/*
 * blob: see blob.h.
 */
#include <stdlib.h>
#include <string.h>

#include "blob.h"

/* Room for n more bytes; false (failed set) when there is none. */
static bool
blob_reserve(struct blob *b, size_t n)
{
	size_t cap;
	uint8_t *data;

	if (b->failed)
		return false;
	if (n <= b->cap - b->len)
		return true;
	cap = b->cap > 0 ? b->cap : 4096;
	while (cap - b->len < n) {
		if (cap > SIZE_MAX / 2) {
			b->failed = true;
			return false;
		}
		cap *= 2;
	}
	if ((data = realloc(b->data, cap)) == NULL) {
		b->failed = true;
		return false;
	}
	b->data = data;
	b->cap = cap;
	return true;
}

static void
blob_put_le(struct blob *b, uint64_t v, size_t width)
{
	size_t i;

	if (!blob_reserve(b, width))
		return;
	for (i = 0; i < width; i++)
		b->data[b->len++] = (uint8_t)(v >> (8 * i));
}

void
blob_put_u8(struct blob *b, uint8_t v)
{
	blob_put_le(b, v, 1);
}

void
blob_put_u32(struct blob *b, uint32_t v)
{
	blob_put_le(b, v, 4);
}

void
blob_put_u64(struct blob *b, uint64_t v)
{
	blob_put_le(b, v, 8);
}

void
blob_put_bytes(struct blob *b, const void *data, size_t len)
{
	blob_put_u64(b, len);
	if (len == 0 || !blob_reserve(b, len))
		return;
	memcpy(b->data + b->len, data, len);
	b->len += len;
}

void
blob_put_str(struct blob *b, const char *s)
{
	/* NULL is told from "" by a flag before the bytes. */
	blob_put_u8(b, s != NULL);
	if (s != NULL)
		blob_put_bytes(b, s, strlen(s));
}

void
blob_free(struct blob *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
blob_reader(struct blob *b, const void *data, size_t len)
{
	memset(b, 0, sizeof(*b));
	b->data = (uint8_t *)(uintptr_t)data;
	b->len = len;
}

static uint64_t
blob_get_le(struct blob *b, size_t width)
{
	uint64_t v = 0;
	size_t i;

	if (b->failed || b->len - b->pos < width) {
		b->failed = true;
		return 0;
	}
	for (i = 0; i < width; i++)
		v |= (uint64_t)b->data[b->pos++] << (8 * i);
	return v;
}

uint8_t
blob_get_u8(struct blob *b)
{
	return (uint8_t)blob_get_le(b, 1);
}

uint32_t
blob_get_u32(struct blob *b)
{
	return (uint32_t)blob_get_le(b, 4);
}

uint64_t
blob_get_u64(struct blob *b)
{
	return blob_get_le(b, 8);
}

bool
blob_get_bool(struct blob *b)
{
	uint8_t v = blob_get_u8(b);

	if (v > 1)
		b->failed = true;
	return v == 1;
}

const uint8_t *
blob_get_bytes(struct blob *b, size_t *len, size_t max)
{
	uint64_t n = blob_get_u64(b);
	const uint8_t *p;

	*len = 0;
	if (b->failed || n > max || n > b->len - b->pos) {
		b->failed = true;
		return NULL;
	}
	p = b->data + b->pos;
	b->pos += (size_t)n;
	*len = (size_t)n;
	return p;
}

char *
blob_get_str(struct blob *b, size_t max)
{
	const uint8_t *p;
	size_t len;
	char *s;

	if (!blob_get_bool(b))
		return NULL;
	p = blob_get_bytes(b, &len, max);
	if (p == NULL || memchr(p, '\0', len) != NULL) {
		b->failed = true;
		return NULL;
	}
	if ((s = malloc(len + 1)) == NULL) {
		b->failed = true;
		return NULL;
	}
	memcpy(s, p, len);
	s[len] = '\0';
	return s;
}
