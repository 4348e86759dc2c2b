/*
 * utf8: incremental UTF-8 validation as a small deterministic automaton.
 *
 * Every byte is mapped to a class, and (state, class) to the next state.
 * The states remember exactly what the next byte may be, so that the
 * automaton rejects the first byte that cannot continue a valid string:
 * E0 80 fails at the 80 (overlong), ED A0 at the A0 (surrogate), F4 90 at
 * the 90 (above U+10FFFF), and C0, C1, F5-FF at once (they never start a
 * valid sequence).  Runs of ASCII are skipped eight bytes at a time while
 * the automaton is at a character boundary.
 */
#include <string.h>

#include "utf8.h"

/* Byte classes. */
enum {
	A_,	/* 00-7F ASCII */
	LO,	/* 80-8F continuation */
	MI,	/* 90-9F continuation */
	HI,	/* A0-BF continuation */
	XX,	/* C0-C1 (overlong for U+0000-U+007F), F5-FF: never valid */
	L2,	/* C2-DF: one continuation byte follows */
	E0,	/* E0: two follow, the first A0-BF, or it is overlong */
	L3,	/* E1-EC, EE-EF: two follow */
	ED,	/* ED: two follow, the first 80-9F, or it is a surrogate */
	F0,	/* F0: three follow, the first 90-BF, or it is overlong */
	L4,	/* F1-F3: three follow */
	F4,	/* F4: three follow, the first 80-8F, or it is above U+10FFFF */
	N_CLASSES
};

static const uint8_t utf8_class[256] = {
	A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_,	/* 00-0F */
	A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_,	/* 10-1F */
	A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_,	/* 20-2F */
	A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_,	/* 30-3F */
	A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_,	/* 40-4F */
	A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_,	/* 50-5F */
	A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_,	/* 60-6F */
	A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_, A_,	/* 70-7F */
	LO, LO, LO, LO, LO, LO, LO, LO, LO, LO, LO, LO, LO, LO, LO, LO,	/* 80-8F */
	MI, MI, MI, MI, MI, MI, MI, MI, MI, MI, MI, MI, MI, MI, MI, MI,	/* 90-9F */
	HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI,	/* A0-AF */
	HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI,	/* B0-BF */
	XX, XX, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2,	/* C0-CF */
	L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2,	/* D0-DF */
	E0, L3, L3, L3, L3, L3, L3, L3, L3, L3, L3, L3, L3, ED, L3, L3,	/* E0-EF */
	F0, L4, L4, L4, F4, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,	/* F0-FF */
};

/* States.  ACCEPT is 0 so that a zeroed struct utf8 is at a boundary;
 * REJECT is sticky. */
enum {
	ACC,	/* at a character boundary */
	REJ,	/* invalid, for good */
	C1,	/* one continuation byte to go, 80-BF */
	C2,	/* two to go, 80-BF */
	CE0,	/* two to go, the first A0-BF */
	CED,	/* two to go, the first 80-9F */
	C3,	/* three to go, 80-BF */
	CF0,	/* three to go, the first 90-BF */
	CF4,	/* three to go, the first 80-8F */
	N_STATES
};

static const uint8_t utf8_next[N_STATES][N_CLASSES] = {
	/*	  A_   LO   MI   HI   XX   L2   E0   L3   ED   F0   L4   F4 */
	[ACC] =	{ ACC, REJ, REJ, REJ, REJ, C1,  CE0, C2,  CED, CF0, C3,  CF4 },
	[REJ] =	{ REJ, REJ, REJ, REJ, REJ, REJ, REJ, REJ, REJ, REJ, REJ, REJ },
	[C1] =	{ REJ, ACC, ACC, ACC, REJ, REJ, REJ, REJ, REJ, REJ, REJ, REJ },
	[C2] =	{ REJ, C1,  C1,  C1,  REJ, REJ, REJ, REJ, REJ, REJ, REJ, REJ },
	[CE0] =	{ REJ, REJ, REJ, C1,  REJ, REJ, REJ, REJ, REJ, REJ, REJ, REJ },
	[CED] =	{ REJ, C1,  C1,  REJ, REJ, REJ, REJ, REJ, REJ, REJ, REJ, REJ },
	[C3] =	{ REJ, C2,  C2,  C2,  REJ, REJ, REJ, REJ, REJ, REJ, REJ, REJ },
	[CF0] =	{ REJ, REJ, C2,  C2,  REJ, REJ, REJ, REJ, REJ, REJ, REJ, REJ },
	[CF4] =	{ REJ, C2,  REJ, REJ, REJ, REJ, REJ, REJ, REJ, REJ, REJ, REJ },
};

#define UTF8_HIGH_BITS 0x8080808080808080ULL

/*
 * Run the automaton from *state over p[0..n).  Returns the number of bytes
 * accepted: n when the whole input is valid (or a valid prefix), else the
 * index of the first invalid byte, with *state left at REJ.
 */
static size_t
utf8_run(uint32_t *state, const uint8_t *p, size_t n)
{
	uint32_t s = *state;
	size_t i = 0;

	if (s == REJ)
		return 0;
	while (i < n) {
		if (s == ACC) {
			/* ASCII fast path: eight bytes with no high bit. */
			while (n - i >= 8) {
				uint64_t w;

				memcpy(&w, p + i, sizeof(w));
				if (w & UTF8_HIGH_BITS)
					break;
				i += 8;
			}
			while (i < n && p[i] < 0x80)
				i++;
			if (i == n)
				break;
		}
		s = utf8_next[s][utf8_class[p[i]]];
		if (s == REJ) {
			*state = s;
			return i;
		}
		i++;
	}
	*state = s;
	return n;
}

void
utf8_init(struct utf8 *u)
{
	u->state = ACC;
}

int
utf8_feed(struct utf8 *u, const uint8_t *p, size_t n)
{
	if (u->state >= N_STATES)	/* corrupted: refuse, never index */
		u->state = REJ;
	utf8_run(&u->state, p, n);
	return u->state == REJ ? -1 : 0;
}

bool
utf8_complete(const struct utf8 *u)
{
	return u->state == ACC;
}

bool
utf8_valid(const uint8_t *p, size_t n)
{
	uint32_t s = ACC;

	utf8_run(&s, p, n);
	return s == ACC;
}

/*
 * Walk at most max bytes and remember the last character boundary.  For
 * valid input this is the longest prefix that does not split a character;
 * for invalid input it also stops before the first invalid byte, so the
 * result is always whole, valid UTF-8 (a close reason cut this way never
 * makes the peer fail the connection).
 */
size_t
utf8_truncate(const uint8_t *p, size_t n, size_t max)
{
	uint32_t s = ACC;
	size_t i, boundary = 0;

	if (n > max)
		n = max;
	for (i = 0; i < n; i++) {
		s = utf8_next[s][utf8_class[p[i]]];
		if (s == REJ)
			break;
		if (s == ACC)
			boundary = i + 1;
	}
	return boundary;
}

size_t
utf8_char(const uint8_t *p, size_t n)
{
	uint32_t s = ACC;
	size_t i;

	for (i = 0; i < n && i < 4; i++) {
		s = utf8_next[s][utf8_class[p[i]]];
		if (s == REJ)
			return 0;
		if (s == ACC)
			return i + 1;
	}
	return 0;
}

size_t
utf8_sanitize(const uint8_t *p, size_t n, uint8_t *out)
{
	size_t i = 0, o = 0, seq;

	while (i < n) {
		seq = utf8_char(p + i, n - i);
		if (seq > 0) {
			memcpy(out + o, p + i, seq);
			o += seq;
			i += seq;
		} else {
			/* One U+FFFD per byte that starts no character. */
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	return o;
}
