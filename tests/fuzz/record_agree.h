/*
 * record_agree: whether record_decode (its fast reader, or jansson after
 * it) and record_decode_json, the reference, decoded a line alike.  Shared
 * by the fuzz target fuzz_record and the unit tests of record.c.
 */
#ifndef GATEWAYD_TESTS_RECORD_AGREE_H
#define GATEWAYD_TESTS_RECORD_AGREE_H

#include <stdbool.h>
#include <string.h>

#include "../../gatewayd/record.h"

static bool
record_agree_mem(const void *a, size_t a_len, const void *b, size_t b_len)
{
	if (a == NULL || b == NULL)
		return a == b;
	return a_len == b_len && memcmp(a, b, a_len) == 0;
}

static bool
record_agree_ids(const char **a, size_t n_a, const char **b, size_t n_b)
{
	size_t i;

	if (n_a != n_b)
		return false;
	for (i = 0; i < n_a; i++) {
		if (strcmp(a[i], b[i]) != 0)
			return false;
	}
	return true;
}

static bool
record_agree(int rc_a, const char *err_a, const struct record_cmd *a,
    int rc_b, const char *err_b, const struct record_cmd *b)
{
	if (rc_a != rc_b)
		return false;
	if (rc_a != 0)
		return strcmp(err_a, err_b) == 0;
	return a->command == b->command &&
	    record_agree_ids(a->clients, a->n_clients, b->clients, b->n_clients) &&
	    record_agree_ids(a->except, a->n_except, b->except, b->n_except) &&
	    a->binary == b->binary &&
	    record_agree_mem(a->payload, a->payload_len, b->payload,
	    b->payload_len) &&
	    a->code == b->code && a->status == b->status &&
	    record_agree_mem(a->reason, a->reason_len, b->reason, b->reason_len) &&
	    record_agree_mem(a->subprotocol, a->subprotocol_len, b->subprotocol,
	    b->subprotocol_len);
}

#endif
