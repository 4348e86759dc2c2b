/*
 * metrics: see metrics.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static void
metrics_put(struct metrics *m, const char *s, size_t n)
{
	size_t cap;
	char *b;

	if (m->failed)
		return;
	if (m->len + n + 1 > m->cap) {
		cap = m->cap ? m->cap : 4096;
		while (cap < m->len + n + 1)
			cap *= 2;
		if ((b = realloc(m->buf, cap)) == NULL) {
			m->failed = true;
			return;
		}
		m->buf = b;
		m->cap = cap;
	}
	memcpy(m->buf + m->len, s, n);
	m->len += n;
	m->buf[m->len] = '\0';
}

static void
metrics_str(struct metrics *m, const char *s)
{
	metrics_put(m, s, strlen(s));
}

bool
metrics_name_valid(const char *name)
{
	const char *p = name;

	if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
	    *p == '_' || *p == ':'))
		return false;
	for (p++; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '_' || *p == ':'))
			return false;
	return true;
}

/* HELP text escapes backslash and line feed. */
static void
metrics_help(struct metrics *m, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			metrics_str(m, "\\\\");
		else if (*s == '\n')
			metrics_str(m, "\\n");
		else
			metrics_put(m, s, 1);
	}
}

void
metrics_family(struct metrics *m, const char *name, const char *type,
    const char *help)
{
	size_t n = strlen(name);

	if (!metrics_name_valid(name) || (strcmp(type, "counter") == 0 &&
	    (n < 6 || strcmp(name + n - 6, "_total") != 0))) {
		m->failed = true;
		return;
	}
	metrics_str(m, "# HELP ");
	metrics_str(m, name);
	metrics_put(m, " ", 1);
	metrics_help(m, help);
	metrics_str(m, "\n# TYPE ");
	metrics_str(m, name);
	metrics_put(m, " ", 1);
	metrics_str(m, type);
	metrics_put(m, "\n", 1);
}

/* name, and {label="value"} when label is not NULL. */
static void
metrics_series(struct metrics *m, const char *name, const char *label,
    const char *value)
{
	const char *s;

	if (!metrics_name_valid(name) ||
	    (label != NULL && !metrics_name_valid(label))) {
		m->failed = true;
		return;
	}
	metrics_str(m, name);
	if (label == NULL)
		return;
	metrics_put(m, "{", 1);
	metrics_str(m, label);
	metrics_str(m, "=\"");
	for (s = value; *s != '\0'; s++) {
		if (*s == '\\')
			metrics_str(m, "\\\\");
		else if (*s == '"')
			metrics_str(m, "\\\"");
		else if (*s == '\n')
			metrics_str(m, "\\n");
		else
			metrics_put(m, s, 1);
	}
	metrics_str(m, "\"}");
}

void
metrics_uint(struct metrics *m, const char *name, const char *label,
    const char *value, uint64_t v)
{
	char num[32];
	int n;

	metrics_series(m, name, label, value);
	n = snprintf(num, sizeof(num), " %llu\n", (unsigned long long)v);
	metrics_put(m, num, (size_t)n);
}

void
metrics_double(struct metrics *m, const char *name, const char *label,
    const char *value, double v)
{
	char num[64];
	int n;

	metrics_series(m, name, label, value);
	n = snprintf(num, sizeof(num), " %.17g\n", v);
	metrics_put(m, num, (size_t)n);
}

void
metrics_one(struct metrics *m, const char *name, const char *type,
    const char *help, uint64_t v)
{
	metrics_family(m, name, type, help);
	metrics_uint(m, name, NULL, NULL, v);
}

void
metrics_free(struct metrics *m)
{
	free(m->buf);
	memset(m, 0, sizeof(*m));
}
