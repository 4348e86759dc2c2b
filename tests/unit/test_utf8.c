/*
 * Unit tests for utf8.c: Markus Kuhn's UTF-8 decoder stress test, each case
 * fed whole, in two pieces at every split, and a byte at a time, with the
 * index of the byte that must fail; an exhaustive comparison with a naive
 * decoder over every string of up to three bytes; the ASCII fast path.
 */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "../../gatewayd/utf8.c"

#define B(...) (const uint8_t[]){ __VA_ARGS__ }, \
	sizeof((const uint8_t[]){ __VA_ARGS__ })

/* The outcome of feeding a string: the index of the failing byte (n when
 * none fails) and whether it ended on a character boundary. */
struct outcome {
	size_t bad;
	bool complete;
};

/* Feed a byte at a time; also check that the error is sticky. */
static struct outcome
feed_bytewise(const uint8_t *p, size_t n)
{
	struct outcome o = { n, false };
	struct utf8 u;
	size_t i;

	utf8_init(&u);
	for (i = 0; i < n; i++) {
		if (utf8_feed(&u, p + i, 1) == -1) {
			if (o.bad == n)
				o.bad = i;
		} else if (o.bad != n) {
			o.bad = (size_t)-1;	/* recovered: must not happen */
			return o;
		}
	}
	o.complete = utf8_complete(&u);
	return o;
}

/* Feed whole; the index comes from the static utf8_run. */
static struct outcome
feed_whole(const uint8_t *p, size_t n)
{
	struct outcome o;
	uint32_t s = 0;
	struct utf8 u;
	int rc;

	o.bad = utf8_run(&s, p, n);
	utf8_init(&u);
	rc = utf8_feed(&u, p, n);
	if ((rc == -1) != (o.bad < n))
		o.bad = (size_t)-2;
	o.complete = utf8_complete(&u);
	if (o.complete != utf8_valid(p, n))
		o.bad = (size_t)-3;
	return o;
}

/* Feed in two pieces split at every point; all must agree with whole. */
static bool
split_agrees(const uint8_t *p, size_t n)
{
	struct outcome whole = feed_whole(p, n);
	size_t k;

	for (k = 0; k <= n; k++) {
		struct utf8 u;
		int a, b;

		utf8_init(&u);
		a = utf8_feed(&u, p, k);
		b = utf8_feed(&u, p + k, n - k);
		if ((whole.bad < n) != (b == -1))
			return false;
		if (a == -1 && whole.bad >= k)
			return false;
		if (utf8_complete(&u) != whole.complete)
			return false;
	}
	return true;
}

/* Valid and complete, every way it is fed. */
static bool
valid_all_ways(const uint8_t *p, size_t n)
{
	struct outcome w = feed_whole(p, n), b = feed_bytewise(p, n);

	return w.bad == n && w.complete && b.bad == n && b.complete &&
	    utf8_valid(p, n) && split_agrees(p, n);
}

/* The index of the failing byte; the same every way it is fed, and the
 * prefix before it valid so far. */
static long
bad_at(const uint8_t *p, size_t n)
{
	struct outcome w = feed_whole(p, n), b = feed_bytewise(p, n);
	struct utf8 u;

	if (w.bad != b.bad || !split_agrees(p, n) || utf8_valid(p, n))
		return -100;
	if (w.bad >= n)
		return -1;
	utf8_init(&u);
	if (utf8_feed(&u, p, w.bad) != 0)
		return -101;
	return (long)w.bad;
}

/* A valid prefix that stops inside a character. */
static bool
truncated_all_ways(const uint8_t *p, size_t n)
{
	struct outcome w = feed_whole(p, n), b = feed_bytewise(p, n);

	return w.bad == n && !w.complete && b.bad == n && !b.complete &&
	    !utf8_valid(p, n) && split_agrees(p, n);
}

/* Kuhn 1: some correct UTF-8 text. */
static void
test_correct_text(void)
{
	CHECK(valid_all_ways(B(0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83,
	    0xce, 0xbc, 0xce, 0xb5)));		/* "kosme" in Greek */
	CHECK(valid_all_ways((const uint8_t *)"", 0));
	CHECK(valid_all_ways(B('H', 'e', 'l', 'l', 'o')));
	CHECK(valid_all_ways(B(0x00)));
}

/* Kuhn 2: boundary conditions. */
static void
test_boundaries(void)
{
	/* 2.1 first code point of each length */
	CHECK(valid_all_ways(B(0x00)));
	CHECK(valid_all_ways(B(0xc2, 0x80)));			/* U+0080 */
	CHECK(valid_all_ways(B(0xe0, 0xa0, 0x80)));		/* U+0800 */
	CHECK(valid_all_ways(B(0xf0, 0x90, 0x80, 0x80)));	/* U+10000 */
	CHECK_EQ_INT(bad_at(B(0xf8, 0x88, 0x80, 0x80, 0x80)), 0);
	CHECK_EQ_INT(bad_at(B(0xfc, 0x84, 0x80, 0x80, 0x80, 0x80)), 0);
	/* 2.2 last code point of each length */
	CHECK(valid_all_ways(B(0x7f)));				/* U+007F */
	CHECK(valid_all_ways(B(0xdf, 0xbf)));			/* U+07FF */
	CHECK(valid_all_ways(B(0xef, 0xbf, 0xbf)));		/* U+FFFF */
	CHECK(valid_all_ways(B(0xf4, 0x8f, 0xbf, 0xbf)));	/* U+10FFFF */
	CHECK_EQ_INT(bad_at(B(0xf7, 0xbf, 0xbf, 0xbf)), 0);
	CHECK_EQ_INT(bad_at(B(0xfb, 0xbf, 0xbf, 0xbf, 0xbf)), 0);
	CHECK_EQ_INT(bad_at(B(0xfd, 0xbf, 0xbf, 0xbf, 0xbf, 0xbf)), 0);
	/* 2.3 other boundaries */
	CHECK(valid_all_ways(B(0xed, 0x9f, 0xbf)));		/* U+D7FF */
	CHECK(valid_all_ways(B(0xee, 0x80, 0x80)));		/* U+E000 */
	CHECK(valid_all_ways(B(0xef, 0xbf, 0xbd)));		/* U+FFFD */
	/* the first code point above U+10FFFF fails at its second byte */
	CHECK_EQ_INT(bad_at(B(0xf4, 0x90, 0x80, 0x80)), 1);
	CHECK_EQ_INT(bad_at(B('a', 0xf4, 0x90, 0x80, 0x80)), 2);
	CHECK_EQ_INT(bad_at(B(0xf4, 0xbf, 0xbf, 0xbf)), 1);
	/* 5.3 noncharacters are valid UTF-8 */
	CHECK(valid_all_ways(B(0xef, 0xbf, 0xbe)));		/* U+FFFE */
	CHECK(valid_all_ways(B(0xf4, 0x8f, 0xbf, 0xbe)));	/* U+10FFFE */
}

/* Kuhn 3.1: unexpected continuation bytes. */
static void
test_unexpected_continuation(void)
{
	unsigned b;

	for (b = 0x80; b <= 0xbf; b++) {
		uint8_t s[3] = { (uint8_t)b, 'x', 'y' };
		uint8_t t[3] = { 'x', (uint8_t)b, 'y' };

		CHECK_EQ_INT(bad_at(s, 1), 0);
		CHECK_EQ_INT(bad_at(s, 3), 0);
		CHECK_EQ_INT(bad_at(t, 3), 1);
	}
	CHECK_EQ_INT(bad_at(B(0x80, 0xbf)), 0);
	CHECK_EQ_INT(bad_at(B(0x80, 0xbf, 0x80, 0xbf, 0x80, 0xbf, 0x80)), 0);
	/* one continuation too many */
	CHECK_EQ_INT(bad_at(B(0xc2, 0x80, 0x80)), 2);
	CHECK_EQ_INT(bad_at(B(0xe2, 0x82, 0xac, 0xac)), 3);
	CHECK_EQ_INT(bad_at(B(0xf0, 0x9f, 0x98, 0x80, 0x80)), 4);
}

/* Kuhn 3.2: lonely start bytes, each followed by a space. */
static void
test_lonely_start(void)
{
	unsigned b;

	for (b = 0xc0; b <= 0xff; b++) {
		uint8_t s[2] = { (uint8_t)b, ' ' };
		long want;

		/* C0, C1 and F5-FF never start anything: they fail at once;
		 * real start bytes fail at the space */
		want = (b <= 0xc1 || b >= 0xf5) ? 0 : 1;
		CHECK_EQ_INT(bad_at(s, 2), want);
		if (want == 1)
			CHECK(truncated_all_ways(s, 1));
		else
			CHECK_EQ_INT(bad_at(s, 1), 0);
	}
}

/* Kuhn 3.3 and 3.4: sequences with the last byte missing, alone (a valid
 * prefix) and concatenated (invalid at the next sequence's first byte). */
static void
test_last_byte_missing(void)
{
	/* 3.3: each alone */
	CHECK(truncated_all_ways(B(0xc0 | 0x02)));
	CHECK(truncated_all_ways(B(0xe0, 0xa0)));
	CHECK(truncated_all_ways(B(0xf0, 0x90, 0x80)));
	CHECK(truncated_all_ways(B(0xdf)));
	CHECK(truncated_all_ways(B(0xef, 0xbf)));
	CHECK(truncated_all_ways(B(0xf4, 0x8f, 0xbf)));
	CHECK(truncated_all_ways(B(0xe1)));
	CHECK(truncated_all_ways(B(0xf1, 0x80)));
	CHECK(truncated_all_ways(B('a', 'b', 'c', 0xe2, 0x82)));
	/* overlong and 5/6-byte forms fail instead */
	CHECK_EQ_INT(bad_at(B(0xc0)), 0);
	CHECK_EQ_INT(bad_at(B(0xf8, 0x80, 0x80, 0x80)), 0);
	CHECK_EQ_INT(bad_at(B(0xfc, 0x80, 0x80, 0x80, 0x80)), 0);
	/* 3.4: concatenated */
	CHECK_EQ_INT(bad_at(B(0xc2, 0xe0, 0xa0, 0xf0, 0x90, 0x80)), 1);
	CHECK_EQ_INT(bad_at(B(0xe0, 0xa0, 0xf0, 0x90, 0x80, 0xdf)), 2);
	CHECK_EQ_INT(bad_at(B(0xf0, 0x90, 0x80, 0xdf, 0xef, 0xbf)), 3);
	CHECK_EQ_INT(bad_at(B(0xe2, 0x82, 'a')), 2);
}

/* Kuhn 3.5: impossible bytes. */
static void
test_impossible_bytes(void)
{
	CHECK_EQ_INT(bad_at(B(0xfe)), 0);
	CHECK_EQ_INT(bad_at(B(0xff)), 0);
	CHECK_EQ_INT(bad_at(B(0xfe, 0xfe, 0xff, 0xff)), 0);
	CHECK_EQ_INT(bad_at(B('o', 'k', 0xff)), 2);
	CHECK_EQ_INT(bad_at(B(0xc2, 0xff)), 1);
	CHECK_EQ_INT(bad_at(B(0xe2, 0x82, 0xfe)), 2);
}

/* Kuhn 4: overlong sequences. */
static void
test_overlong(void)
{
	/* 4.1 '/' (U+002F) in every longer form */
	CHECK_EQ_INT(bad_at(B(0xc0, 0xaf)), 0);
	CHECK_EQ_INT(bad_at(B(0xe0, 0x80, 0xaf)), 1);
	CHECK_EQ_INT(bad_at(B(0xf0, 0x80, 0x80, 0xaf)), 1);
	CHECK_EQ_INT(bad_at(B(0xf8, 0x80, 0x80, 0x80, 0xaf)), 0);
	CHECK_EQ_INT(bad_at(B(0xfc, 0x80, 0x80, 0x80, 0x80, 0xaf)), 0);
	/* 4.2 the largest overlong of each length */
	CHECK_EQ_INT(bad_at(B(0xc1, 0xbf)), 0);
	CHECK_EQ_INT(bad_at(B(0xe0, 0x9f, 0xbf)), 1);
	CHECK_EQ_INT(bad_at(B(0xf0, 0x8f, 0xbf, 0xbf)), 1);
	CHECK_EQ_INT(bad_at(B(0xf8, 0x87, 0xbf, 0xbf, 0xbf)), 0);
	CHECK_EQ_INT(bad_at(B(0xfc, 0x83, 0xbf, 0xbf, 0xbf, 0xbf)), 0);
	/* 4.3 overlong NUL */
	CHECK_EQ_INT(bad_at(B(0xc0, 0x80)), 0);
	CHECK_EQ_INT(bad_at(B(0xe0, 0x80, 0x80)), 1);
	CHECK_EQ_INT(bad_at(B(0xf0, 0x80, 0x80, 0x80)), 1);
	CHECK_EQ_INT(bad_at(B(0xf8, 0x80, 0x80, 0x80, 0x80)), 0);
	CHECK_EQ_INT(bad_at(B(0xfc, 0x80, 0x80, 0x80, 0x80, 0x80)), 0);
}

/* Kuhn 5.1 and 5.2: UTF-16 surrogates, single and paired. */
static void
test_surrogates(void)
{
	static const uint8_t single[][3] = {
		{ 0xed, 0xa0, 0x80 }, { 0xed, 0xad, 0xbf },
		{ 0xed, 0xae, 0x80 }, { 0xed, 0xaf, 0xbf },
		{ 0xed, 0xb0, 0x80 }, { 0xed, 0xbe, 0x80 },
		{ 0xed, 0xbf, 0xbf },
	};
	static const uint8_t high[][3] = {
		{ 0xed, 0xa0, 0x80 }, { 0xed, 0xad, 0xbf },
		{ 0xed, 0xae, 0x80 }, { 0xed, 0xaf, 0xbf },
	};
	static const uint8_t low[][3] = {
		{ 0xed, 0xb0, 0x80 }, { 0xed, 0xbf, 0xbf },
	};
	size_t i, j;

	for (i = 0; i < sizeof(single) / sizeof(single[0]); i++)
		CHECK_EQ_INT(bad_at(single[i], 3), 1);
	for (i = 0; i < sizeof(high) / sizeof(high[0]); i++) {
		for (j = 0; j < sizeof(low) / sizeof(low[0]); j++) {
			uint8_t pair[6];

			memcpy(pair, high[i], 3);
			memcpy(pair + 3, low[j], 3);
			CHECK_EQ_INT(bad_at(pair, 6), 1);
		}
	}
	/* the valid neighbours */
	CHECK(valid_all_ways(B(0xed, 0x9f, 0xbf)));
	CHECK(valid_all_ways(B(0xee, 0x80, 0x80)));
}

/* A naive decoder: the reference for the exhaustive test.  Returns the
 * number of bytes of the valid character at p, or 0. */
static size_t
naive_char(const uint8_t *p, size_t n)
{
	uint32_t cp;
	size_t len, i;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static bool
naive_valid(const uint8_t *p, size_t n)
{
	size_t i = 0, k;

	while (i < n) {
		if ((k = naive_char(p + i, n - i)) == 0)
			return false;
		i += k;
	}
	return true;
}

/* Every string of one to three bytes, and every four-byte string with a
 * four-byte start byte, against the naive decoder. */
static void
test_exhaustive(void)
{
	uint8_t s[4];
	uint32_t v;
	unsigned mismatches = 0;

	for (v = 0; v < 0x100; v++) {
		s[0] = (uint8_t)v;
		mismatches += utf8_valid(s, 1) != naive_valid(s, 1);
	}
	for (v = 0; v < 0x10000; v++) {
		s[0] = (uint8_t)(v >> 8);
		s[1] = (uint8_t)v;
		mismatches += utf8_valid(s, 2) != naive_valid(s, 2);
	}
	for (v = 0; v < 0x1000000; v++) {
		s[0] = (uint8_t)(v >> 16);
		s[1] = (uint8_t)(v >> 8);
		s[2] = (uint8_t)v;
		mismatches += utf8_valid(s, 3) != naive_valid(s, 3);
	}
	for (v = 0; v < 0x1000000; v++) {
		s[0] = (uint8_t)(0xf0 | (v >> 20 & 0x07));
		s[1] = (uint8_t)(0x80 | (v >> 14 & 0x3f));
		s[2] = (uint8_t)(v >> 6 & 0xff);
		s[3] = (uint8_t)(0x80 | (v & 0x3f));
		mismatches += utf8_valid(s, 4) != naive_valid(s, 4);
	}
	CHECK_EQ_INT(mismatches, 0);
}

/* Every code point encodes to something valid, except the surrogates. */
static void
test_every_code_point(void)
{
	uint32_t cp;
	unsigned wrong = 0;

	for (cp = 0; cp <= 0x10ffff; cp++) {
		uint8_t s[4];
		size_t n;

		if (cp < 0x80) {
			s[0] = (uint8_t)cp;
			n = 1;
		} else if (cp < 0x800) {
			s[0] = (uint8_t)(0xc0 | cp >> 6);
			s[1] = (uint8_t)(0x80 | (cp & 0x3f));
			n = 2;
		} else if (cp < 0x10000) {
			s[0] = (uint8_t)(0xe0 | cp >> 12);
			s[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
			s[2] = (uint8_t)(0x80 | (cp & 0x3f));
			n = 3;
		} else {
			s[0] = (uint8_t)(0xf0 | cp >> 18);
			s[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
			s[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
			s[3] = (uint8_t)(0x80 | (cp & 0x3f));
			n = 4;
		}
		if (utf8_valid(s, n) != !(cp >= 0xd800 && cp <= 0xdfff))
			wrong++;
	}
	CHECK_EQ_INT(wrong, 0);
}

/* The eight-byte ASCII path: a bad byte at every position and alignment,
 * and a multi-byte character across every word boundary. */
static void
test_ascii_fast_path(void)
{
	uint8_t buf[80];
	size_t pos, start;

	for (start = 0; start < 8; start++) {
		for (pos = start; pos < 64; pos++) {
			memset(buf, 'a', sizeof(buf));
			buf[pos] = 0xff;
			CHECK_EQ_INT(bad_at(buf + start, 64 - start),
			    (long)(pos - start));
			memset(buf, 'a', sizeof(buf));
			buf[pos] = 0xe2;
			buf[pos + 1] = 0x82;
			buf[pos + 2] = 0xac;
			CHECK(valid_all_ways(buf + start, 70 - start));
			buf[pos + 2] = 'a';
			CHECK_EQ_INT(bad_at(buf + start, 70 - start),
			    (long)(pos + 2 - start));
		}
	}
	/* a NUL and DEL are ASCII */
	memset(buf, 0, sizeof(buf));
	buf[40] = 0x7f;
	CHECK(valid_all_ways(buf, sizeof(buf)));
}

static void
test_sticky_and_state(void)
{
	struct utf8 u = { 0 };		/* zeroed: at a boundary */

	CHECK(utf8_complete(&u));
	CHECK_EQ_INT(utf8_feed(&u, (const uint8_t *)"\xe2\x82", 2), 0);
	CHECK(!utf8_complete(&u));
	CHECK_EQ_INT(utf8_feed(&u, (const uint8_t *)"\xac", 1), 0);
	CHECK(utf8_complete(&u));
	CHECK_EQ_INT(utf8_feed(&u, (const uint8_t *)"\xc0", 1), -1);
	CHECK_EQ_INT(utf8_feed(&u, (const uint8_t *)"abc", 3), -1);
	CHECK_EQ_INT(utf8_feed(&u, NULL, 0), -1);
	CHECK(!utf8_complete(&u));
	utf8_init(&u);
	CHECK_EQ_INT(utf8_feed(&u, NULL, 0), 0);
	CHECK(utf8_complete(&u));
	u.state = 0xdead;		/* corrupted state: refused */
	CHECK_EQ_INT(utf8_feed(&u, (const uint8_t *)"a", 1), -1);
}

static void
test_truncate(void)
{
	/* "a" U+00E9 U+20AC U+1F600: 1 + 2 + 3 + 4 bytes */
	static const uint8_t s[] = { 'a', 0xc3, 0xa9, 0xe2, 0x82, 0xac,
	    0xf0, 0x9f, 0x98, 0x80 };
	static const size_t want[] = { 0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10, 10 };
	size_t max;
	uint8_t big[300];

	for (max = 0; max < sizeof(want) / sizeof(want[0]); max++)
		CHECK_EQ_INT(utf8_truncate(s, sizeof(s), max), want[max]);
	CHECK_EQ_INT(utf8_truncate(s, 3, 100), 3);
	CHECK_EQ_INT(utf8_truncate(s, 0, 100), 0);
	/* a whole string shorter than max is kept */
	CHECK_EQ_INT(utf8_truncate((const uint8_t *)"hello", 5, 5), 5);
	/* 123 of ASCII, then a character across the cut */
	memset(big, 'x', sizeof(big));
	CHECK_EQ_INT(utf8_truncate(big, sizeof(big), 123), 123);
	big[122] = 0xc3;
	big[123] = 0xa9;
	CHECK_EQ_INT(utf8_truncate(big, sizeof(big), 123), 122);
	CHECK_EQ_INT(utf8_truncate(big, sizeof(big), 124), 124);
	big[121] = 0xe2;
	big[122] = 0x82;
	big[123] = 0xac;
	CHECK_EQ_INT(utf8_truncate(big, sizeof(big), 123), 121);
	/* invalid input: never past the first bad byte */
	CHECK_EQ_INT(utf8_truncate(B('a', 'b', 0xff, 'c'), 10), 2);
	CHECK_EQ_INT(utf8_truncate(B('a', 0xe2, 0x82, 'c'), 10), 1);
	CHECK_EQ_INT(utf8_truncate(B(0xed, 0xa0, 0x80), 10), 0);
	/* an incomplete tail is dropped */
	CHECK_EQ_INT(utf8_truncate(B('a', 'b', 0xe2, 0x82), 10), 2);
}

static void
test_char(void)
{
	CHECK_EQ_INT(utf8_char((const uint8_t *)"ab", 2), 1);
	CHECK_EQ_INT(utf8_char((const uint8_t *)"\xc3\xa9x", 3), 2);
	CHECK_EQ_INT(utf8_char((const uint8_t *)"\xe2\x82\xac", 3), 3);
	CHECK_EQ_INT(utf8_char((const uint8_t *)"\xf0\x9f\x98\x80", 4), 4);
	CHECK_EQ_INT(utf8_char((const uint8_t *)"\xf0\x9f\x98", 3), 0);
	CHECK_EQ_INT(utf8_char((const uint8_t *)"\xc3", 1), 0);
	CHECK_EQ_INT(utf8_char((const uint8_t *)"\xff", 1), 0);
	CHECK_EQ_INT(utf8_char((const uint8_t *)"\x80", 1), 0);
	CHECK_EQ_INT(utf8_char((const uint8_t *)"\xc0\xaf", 2), 0);
	CHECK_EQ_INT(utf8_char((const uint8_t *)"\xed\xa0\x80", 3), 0);
	CHECK_EQ_INT(utf8_char((const uint8_t *)"", 0), 0);
}

int
main(void)
{
	RUN(test_correct_text);
	RUN(test_boundaries);
	RUN(test_unexpected_continuation);
	RUN(test_lonely_start);
	RUN(test_last_byte_missing);
	RUN(test_impossible_bytes);
	RUN(test_overlong);
	RUN(test_surrogates);
	RUN(test_exhaustive);
	RUN(test_every_code_point);
	RUN(test_ascii_fast_path);
	RUN(test_sticky_and_state);
	RUN(test_truncate);
	RUN(test_char);
	return check_summary();
}
