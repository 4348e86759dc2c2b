/*
 * metrics: the Prometheus text exposition format (version 0.0.4).
 *
 * Pure: a writer that appends families and samples to a growing buffer,
 * with the HELP and TYPE lines and the escaping the format asks for.  It
 * knows nothing of what is measured; admin.c gathers the figures.
 */
#ifndef GATEWAYD_METRICS_H
#define GATEWAYD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics {
	char *buf;		/* malloc'd, NUL-terminated */
	size_t len, cap;
	bool failed;		/* out of memory, or a bad name: the text is
				 * not to be served */
};

/* Start a family: "# HELP name help" and "# TYPE name type" (type is
 * "counter" or "gauge").  A counter's name must end in "_total". */
void metrics_family(struct metrics *m, const char *name, const char *type,
    const char *help);

/* A sample of the family just started: name{label="value"} v, or name v
 * when label is NULL.  Label values are escaped (backslash, double quote,
 * line feed). */
void metrics_uint(struct metrics *m, const char *name, const char *label,
    const char *value, uint64_t v);
void metrics_double(struct metrics *m, const char *name, const char *label,
    const char *value, double v);

/* A whole family of one sample without labels. */
void metrics_one(struct metrics *m, const char *name, const char *type,
    const char *help, uint64_t v);

/* True when name is a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*). */
bool metrics_name_valid(const char *name);

void metrics_free(struct metrics *m);

#endif
