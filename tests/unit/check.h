/*
 * check.h: the unit tests' harness.  A test file defines test functions,
 * lists them in main with RUN, and ends with check_summary(), which prints
 * the closing line "N passed, N failed" and returns the exit status.
 */
#ifndef GATEWAYD_CHECK_H
#define GATEWAYD_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures_in_test;
static int check_passed, check_failed;

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: CHECK failed: %s\n", \
		    __FILE__, __LINE__, #cond); \
		check_failures_in_test++; \
	} \
} while (0)

#define CHECK_EQ_INT(a, b) do { \
	long long check_a_ = (long long)(a), check_b_ = (long long)(b); \
	if (check_a_ != check_b_) { \
		fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", \
		    __FILE__, __LINE__, #a, #b, check_a_, check_b_); \
		check_failures_in_test++; \
	} \
} while (0)

#define CHECK_EQ_STR(a, b) do { \
	const char *check_a_ = (a), *check_b_ = (b); \
	if (check_a_ == NULL || check_b_ == NULL || strcmp(check_a_, check_b_) != 0) { \
		fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", \
		    __FILE__, __LINE__, #a, #b, check_a_ ? check_a_ : "(null)", \
		    check_b_ ? check_b_ : "(null)"); \
		check_failures_in_test++; \
	} \
} while (0)

#define CHECK_EQ_MEM(a, alen, b, blen) do { \
	if ((size_t)(alen) != (size_t)(blen) || memcmp((a), (b), (alen)) != 0) { \
		fprintf(stderr, "%s:%d: CHECK failed: %s equals %s\n", \
		    __FILE__, __LINE__, #a, #b); \
		check_failures_in_test++; \
	} \
} while (0)

#define RUN(test) do { \
	check_failures_in_test = 0; \
	test(); \
	if (check_failures_in_test) { \
		check_failed++; \
		fprintf(stderr, "FAIL %s\n", #test); \
	} else { \
		check_passed++; \
	} \
} while (0)

static inline int check_summary(void)
{
	printf("%d passed, %d failed\n", check_passed, check_failed);
	return check_failed ? 1 : 0;
}

#endif
