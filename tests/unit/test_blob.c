/*
 * Unit tests for blob.c: the fields of the upgrade's state.
 */
#include <stdlib.h>

#include "../../gatewayd/blob.c"

#include "check.h"

static void
test_round_trip(void)
{
	struct blob w = { 0 }, r;
	const uint8_t *p;
	size_t len;
	char *s;

	blob_put_u8(&w, 0xab);
	blob_put_u32(&w, 0xdeadbeef);
	blob_put_u64(&w, 0x0102030405060708ULL);
	blob_put_bytes(&w, "abc", 3);
	blob_put_bytes(&w, NULL, 0);
	blob_put_str(&w, "room");
	blob_put_str(&w, NULL);
	blob_put_str(&w, "");
	blob_put_u8(&w, 1);
	CHECK(!w.failed);
	/* Little-endian and fixed-width, whatever the machine. */
	CHECK_EQ_INT(w.data[1], 0xef);
	CHECK_EQ_INT(w.data[5], 0x08);

	blob_reader(&r, w.data, w.len);
	CHECK_EQ_INT(blob_get_u8(&r), 0xab);
	CHECK_EQ_INT(blob_get_u32(&r), 0xdeadbeef);
	CHECK(blob_get_u64(&r) == 0x0102030405060708ULL);
	p = blob_get_bytes(&r, &len, 100);
	CHECK_EQ_MEM(p, len, "abc", 3);
	p = blob_get_bytes(&r, &len, 100);
	CHECK_EQ_INT(len, 0);
	s = blob_get_str(&r, 100);
	CHECK_EQ_STR(s, "room");
	free(s);
	CHECK(blob_get_str(&r, 100) == NULL);
	CHECK(!r.failed);
	s = blob_get_str(&r, 100);
	CHECK_EQ_STR(s, "");
	free(s);
	CHECK(blob_get_bool(&r));
	CHECK(!r.failed && r.pos == r.len);
	/* Past the end: zero, and failed from then on. */
	CHECK_EQ_INT(blob_get_u32(&r), 0);
	CHECK(r.failed);
	blob_free(&w);
}

static void
test_bad_input(void)
{
	struct blob w = { 0 }, r;
	size_t len;

	/* A length past the end, or over the caller's bound. */
	blob_put_u64(&w, 1000);
	blob_put_u8(&w, 'x');
	blob_reader(&r, w.data, w.len);
	CHECK(blob_get_bytes(&r, &len, SIZE_MAX) == NULL && r.failed);
	blob_free(&w);
	blob_put_bytes(&w, "abcdef", 6);
	blob_reader(&r, w.data, w.len);
	CHECK(blob_get_bytes(&r, &len, 5) == NULL && r.failed);
	/* A string with a NUL inside, and a bool that is not one. */
	blob_free(&w);
	blob_put_u8(&w, 1);
	blob_put_bytes(&w, "a\0b", 3);
	blob_reader(&r, w.data, w.len);
	CHECK(blob_get_str(&r, 10) == NULL && r.failed);
	blob_free(&w);
	blob_put_u8(&w, 2);
	blob_reader(&r, w.data, w.len);
	(void)blob_get_bool(&r);
	CHECK(r.failed);
	/* A huge length does not wrap the position. */
	blob_free(&w);
	blob_put_u64(&w, UINT64_MAX);
	blob_reader(&r, w.data, w.len);
	CHECK(blob_get_bytes(&r, &len, SIZE_MAX) == NULL && r.failed);
	blob_free(&w);
}

int
main(void)
{
	RUN(test_round_trip);
	RUN(test_bad_input);
	return check_summary();
}
