/*
 * record: see record.h and docs/PROTOCOL.md.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "record.h"
#include "utf8.h"
#include "ws_frame.h"

/*
 * Encoding.  The gateway's records are written by hand rather than through
 * a jansson tree, which cost a tenth of the CPU of each connection: a line
 * is built in one growing buffer, with every string escaped on the way.
 */
struct record_writer {
	char *buf;
	size_t len, size;
	bool failed;		/* out of memory: the line is lost */
};

/* Room for n more bytes; false (and failed set) when there is none. */
static bool
record_reserve(struct record_writer *w, size_t n)
{
	size_t size;
	char *buf;

	if (w->failed)
		return false;
	if (w->size - w->len >= n)
		return true;
	size = w->size > 0 ? w->size : 256;
	while (size - w->len < n)
		size *= 2;
	buf = realloc(w->buf, size);
	if (buf == NULL) {
		w->failed = true;
		return false;
	}
	w->buf = buf;
	w->size = size;
	return true;
}

static void
record_put(struct record_writer *w, const char *s, size_t n)
{
	if (record_reserve(w, n)) {
		memcpy(w->buf + w->len, s, n);
		w->len += n;
	}
}

static void
record_put_str(struct record_writer *w, const char *s)
{
	record_put(w, s, strlen(s));
}

/* The JSON escape of an ASCII character that needs one. */
static char *
record_escape_char(char *out, uint8_t c)
{
	static const char hex[] = "0123456789abcdef";

	*out++ = '\\';
	switch (c) {
	case '"': *out++ = '"'; break;
	case '\\': *out++ = '\\'; break;
	case '\n': *out++ = 'n'; break;
	case '\r': *out++ = 'r'; break;
	case '\t': *out++ = 't'; break;
	default:
		*out++ = 'u';
		*out++ = '0';
		*out++ = '0';
		*out++ = hex[c >> 4];
		*out++ = hex[c & 15];
	}
	return out;
}

/*
 * The escaped text of bytes that should be UTF-8 but may come from the
 * network unchecked (request headers, paths): invalid bytes become U+FFFD,
 * so that the backend always gets valid JSON and sees where the damage was.
 */
static void
record_put_escaped(struct record_writer *w, const char *s, size_t n)
{
	static const char replacement[] = "\xef\xbf\xbd";
	const uint8_t *p = (const uint8_t *)s;
	size_t i, seq;
	char *out;

	/* At most six bytes out for one in (\u00XX). */
	if (n > SIZE_MAX / 6 || !record_reserve(w, 6 * n)) {
		w->failed = true;
		return;
	}
	out = w->buf + w->len;
	for (i = 0; i < n; i += seq) {
		seq = 1;
		if (p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\') {
			*out++ = (char)p[i];
		} else if (p[i] < 0x80) {
			out = record_escape_char(out, p[i]);
		} else if ((seq = utf8_char(p + i, n - i)) > 0) {
			memcpy(out, p + i, seq);
			out += seq;
		} else {
			memcpy(out, replacement, 3);
			out += 3;
			seq = 1;
		}
	}
	w->len = (size_t)(out - w->buf);
}

static void
record_put_string(struct record_writer *w, const char *s, size_t n)
{
	record_put(w, "\"", 1);
	record_put_escaped(w, s, n);
	record_put(w, "\"", 1);
}

/* ,"key":"value": every record starts with its type, so a comma comes
 * before any other field. */
static void
record_put_field(struct record_writer *w, const char *key, const char *value,
    size_t value_len)
{
	record_put(w, ",\"", 2);
	record_put_str(w, key);
	record_put(w, "\":", 2);
	record_put_string(w, value, value_len);
}

static void
record_put_uint(struct record_writer *w, unsigned long long v)
{
	char digits[24], *p = digits + sizeof(digits);

	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	record_put(w, p, (size_t)(digits + sizeof(digits) - p));
}

/* Close the object and the line, and hand the line over (with a NUL
 * after it that *len does not count, as for every record).  Escaping
 * reserves six bytes for each one in, so a line with long strings is
 * cut to its size: it may wait in a slow backend's queue, which counts
 * its length, not what it holds. */
static char *
record_finish(struct record_writer *w, size_t *len)
{
	char *buf;

	record_put(w, "}\n", 3);
	if (w->failed) {
		free(w->buf);
		return NULL;
	}
	if (w->size - w->len > 1024 && (buf = realloc(w->buf, w->len)) != NULL)
		w->buf = buf;
	*len = w->len - 1;
	return w->buf;
}

char *
record_hello(const char *room, bool resumed, bool ack, size_t *len)
{
	struct record_writer w = { 0 };

	record_put_str(&w, "{\"type\":\"hello\"");
	record_put_field(&w, "room", room, strlen(room));
	record_put_str(&w, ",\"version\":");
	record_put_uint(&w, RECORD_VERSION);
	if (resumed)
		record_put_str(&w, ",\"resumed\":true");
	if (ack)
		record_put_str(&w, ",\"delivery\":\"ack\"");
	return record_finish(&w, len);
}

/* Header names compare without case (RFC 9110 5.1). */
static bool
record_same_name(const struct record_header *a, const struct record_header *b)
{
	size_t i;

	if (a->name_len != b->name_len)
		return false;
	for (i = 0; i < a->name_len; i++) {
		if (tolower((unsigned char)a->name[i]) !=
		    tolower((unsigned char)b->name[i]))
			return false;
	}
	return true;
}

/*
 * The headers object: names in lower case, in the order they first came;
 * a repeated header joins the earlier one, as RFC 9110 5.3 allows, and
 * cookies join with "; ".  (A request has at most HTTP_REQ_HEADERS_MAX
 * headers, so looking back for repeats stays cheap.)
 */
static void
record_put_headers(struct record_writer *w, const struct record_header *h,
    size_t n)
{
	size_t i, j, k;
	char small[256], *name;
	bool first = true;

	record_put(w, "{", 1);
	for (i = 0; i < n; i++) {
		for (j = 0; j < i && !record_same_name(&h[j], &h[i]); j++)
			;
		if (j < i)
			continue;	/* joined to the first of its name */
		/* Names are short, but a client may send a long one: it is
		 * kept, as the backend is told of every header. */
		name = h[i].name_len <= sizeof(small) ? small :
		    malloc(h[i].name_len);
		if (name == NULL) {
			w->failed = true;
			return;
		}
		for (k = 0; k < h[i].name_len; k++)
			name[k] = (char)tolower((unsigned char)h[i].name[k]);
		if (!first)
			record_put(w, ",", 1);
		first = false;
		record_put_string(w, name, h[i].name_len);
		if (name != small)
			free(name);
		record_put(w, ":\"", 2);
		/* The values in order, escaped as one string: the separators
		 * are ASCII, so this is the escape of the joined text. */
		record_put_escaped(w, h[i].value, h[i].value_len);
		for (j = i + 1; j < n; j++) {
			if (!record_same_name(&h[j], &h[i]))
				continue;
			record_put_str(w, h[i].name_len == 6 &&
			    memcmp(name, "cookie", 6) == 0 ? "; " : ", ");
			record_put_escaped(w, h[j].value, h[j].value_len);
		}
		record_put(w, "\"", 1);
	}
	record_put(w, "}", 1);
}

char *
record_open(const struct record_open *o, size_t *len)
{
	struct record_writer w = { 0 };
	size_t i;

	record_put_str(&w, "{\"type\":\"open\"");
	record_put_field(&w, "client", o->client, strlen(o->client));
	record_put_field(&w, "path", o->path, o->path_len);
	record_put_field(&w, "query", o->query, o->query_len);
	record_put_field(&w, "remote", o->remote, strlen(o->remote));
	if (o->subprotocol != NULL)
		record_put_field(&w, "subprotocol", o->subprotocol,
		    strlen(o->subprotocol));
	else
		record_put_str(&w, ",\"subprotocol\":null");
	record_put_str(&w, ",\"subprotocols\":[");
	for (i = 0; i < o->n_subprotocols; i++) {
		if (i > 0)
			record_put(&w, ",", 1);
		record_put_string(&w, o->subprotocols[i],
		    o->subprotocol_lens[i]);
	}
	record_put_str(&w, o->authorize ? "],\"authorize\":true" :
	    "],\"authorize\":false");
	record_put_str(&w, o->tls ? ",\"tls\":true" : ",\"tls\":false");
	if (o->server_name != NULL)
		record_put_field(&w, "server_name", o->server_name,
		    strlen(o->server_name));
	else
		record_put_str(&w, ",\"server_name\":null");
	record_put_str(&w, ",\"headers\":");
	record_put_headers(&w, o->headers, o->n_headers);
	return record_finish(&w, len);
}

/*
 * Message records carry every byte clients send, so they are written
 * directly rather than through a jansson tree (which would copy the
 * payload twice more).  Text has been validated as UTF-8 by the frame
 * parser; only quotes, backslashes and control characters need escapes.
 */
static size_t
record_escaped_len(const uint8_t *p, size_t n)
{
	size_t i, len = n;

	for (i = 0; i < n; i++) {
		if (p[i] == '"' || p[i] == '\\' || p[i] == '\n' ||
		    p[i] == '\r' || p[i] == '\t')
			len += 1;
		else if (p[i] < 0x20)
			len += 5;
	}
	return len;
}

static char *
record_escape(char *out, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] >= 0x20 && p[i] != '"' && p[i] != '\\')
			*out++ = (char)p[i];
		else
			out = record_escape_char(out, p[i]);
	}
	return out;
}

char *
record_message(const char *client, bool binary, const uint8_t *data,
    size_t data_len, size_t *len)
{
	static const char head[] = "{\"type\":\"message\",\"client\":\"";
	const char *field = binary ? "\",\"binary\":\"" : "\",\"text\":\"";
	size_t client_len = strlen(client), field_len = strlen(field);
	size_t body_len, total;
	char *line, *p;

	/* Client ids are the gateway's own ("c123"): nothing to escape. */
	body_len = binary ? 4 * ((data_len + 2) / 3) :
	    record_escaped_len(data, data_len);
	total = sizeof(head) - 1 + client_len + field_len + body_len + 3;
	line = malloc(total + 1);
	if (line == NULL)
		return NULL;
	p = line;
	memcpy(p, head, sizeof(head) - 1);
	p += sizeof(head) - 1;
	memcpy(p, client, client_len);
	p += client_len;
	memcpy(p, field, field_len);
	p += field_len;
	if (binary) {
		/* EVP_EncodeBlock takes an int length: go in slices. */
		size_t done = 0;

		while (done < data_len) {
			size_t slice = data_len - done;

			if (slice > 3u << 20)
				slice = 3u << 20;	/* a multiple of 3 */
			p += EVP_EncodeBlock((unsigned char *)p, data + done,
			    (int)slice);
			done += slice;
		}
	} else {
		p = record_escape(p, data, data_len);
	}
	memcpy(p, "\"}\n", 4);
	*len = total;
	return line;
}

char *
record_close(const char *client, unsigned code, const char *reason,
    size_t reason_len, size_t *len)
{
	struct record_writer w = { 0 };

	record_put_str(&w, "{\"type\":\"close\"");
	record_put_field(&w, "client", client, strlen(client));
	record_put_str(&w, ",\"code\":");
	record_put_uint(&w, code);
	record_put_field(&w, "reason", reason, reason_len);
	return record_finish(&w, len);
}

char *
record_open_resumed(const char *open, size_t open_len, size_t *len)
{
	static const char field[] = "\"resumed\":true,";
	char *line;

	/* Every open line starts with '{' and has fields after it. */
	if (open_len < 2 || open[0] != '{')
		return NULL;
	line = malloc(open_len + sizeof(field) - 1);
	if (line == NULL)
		return NULL;
	line[0] = '{';
	memcpy(line + 1, field, sizeof(field) - 1);
	memcpy(line + sizeof(field), open + 1, open_len - 1);
	*len = open_len + sizeof(field) - 1;
	return line;
}

/* Decoding */

/*
 * Decoding goes through two readers that fill the same table of the known
 * fields, so that one set of rules below applies to both.  The fast reader
 * takes the common shape of a command (a flat object of strings, integers,
 * literals and lists of strings) without building a tree, and hands
 * anything else, including every malformed line, to jansson, whose answer
 * is the reference: the fuzz target fuzz_record checks that the two agree.
 */

enum record_key {
	RECORD_KEY_TYPE,
	RECORD_KEY_CLIENT,
	RECORD_KEY_EXCEPT,
	RECORD_KEY_TEXT,
	RECORD_KEY_BINARY,
	RECORD_KEY_CODE,
	RECORD_KEY_STATUS,
	RECORD_KEY_REASON,
	RECORD_KEY_SUBPROTOCOL,
	RECORD_KEY_SEQ,
	RECORD_KEYS
};

static const char *const record_key_names[RECORD_KEYS] = {
	"type", "client", "except", "text", "binary", "code", "status",
	"reason", "subprotocol", "seq",
};

enum record_kind {
	RECORD_ABSENT,
	RECORD_NULL,
	RECORD_STRING,
	RECORD_INTEGER,
	RECORD_STRINGS,		/* a list of strings */
	RECORD_OTHER,		/* anything else: never what a field wants */
};

struct record_value {
	enum record_kind kind;
	const char *str;	/* STRING: NUL-terminated (and may hold NULs) */
	size_t len;
	json_int_t integer;
	/* STRINGS: from jansson, the array; from the fast reader, n_items
	 * NUL-terminated strings one after the other from str. */
	json_t *array;
	size_t n_items;
};

struct record_fields {
	struct record_value v[RECORD_KEYS];
};

static int
record_fail(char *err, size_t err_size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, err_size, fmt, ap);
	va_end(ap);
	return -1;
}

static enum record_key
record_key_find(const char *key, size_t len)
{
	size_t i;

	/* Keys hold no NUL (record_read_key), so strncmp stops at the
	 * name's end and no strlen is needed per name. */
	for (i = 0; i < RECORD_KEYS; i++) {
		if (strncmp(record_key_names[i], key, len) == 0 &&
		    record_key_names[i][len] == '\0')
			return (enum record_key)i;
	}
	return RECORD_KEYS;
}

/* The fast reader.  Each function returns false when the line is not of
 * the shape it takes, and jansson reads it instead. */

struct record_reader {
	const char *p, *end;
	char *out;		/* where the next decoded string goes */
};

static void
record_skip_space(struct record_reader *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' ||
	    *r->p == '\r' || *r->p == '\n'))
		r->p++;
}

static bool
record_read_hex4(struct record_reader *r, unsigned *cp)
{
	int i, d;

	if (r->end - r->p < 4)
		return false;
	*cp = 0;
	for (i = 0; i < 4; i++) {
		char ch = *r->p++;

		if (ch >= '0' && ch <= '9')
			d = ch - '0';
		else if (ch >= 'a' && ch <= 'f')
			d = ch - 'a' + 10;
		else if (ch >= 'A' && ch <= 'F')
			d = ch - 'A' + 10;
		else
			return false;
		*cp = *cp << 4 | (unsigned)d;
	}
	return true;
}

/* A \uXXXX escape (the "\u" already read), a surrogate pair whole. */
static bool
record_read_unicode(struct record_reader *r)
{
	unsigned cp, low;
	uint8_t *o = (uint8_t *)r->out;

	if (!record_read_hex4(r, &cp) || (cp >= 0xDC00 && cp <= 0xDFFF))
		return false;
	if (cp >= 0xD800 && cp <= 0xDBFF) {
		if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u')
			return false;
		r->p += 2;
		if (!record_read_hex4(r, &low) || low < 0xDC00 || low > 0xDFFF)
			return false;
		cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
	}
	if (cp < 0x80) {
		*o++ = (uint8_t)cp;
	} else if (cp < 0x800) {
		*o++ = (uint8_t)(0xC0 | cp >> 6);
		*o++ = (uint8_t)(0x80 | (cp & 0x3F));
	} else if (cp < 0x10000) {
		*o++ = (uint8_t)(0xE0 | cp >> 12);
		*o++ = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
		*o++ = (uint8_t)(0x80 | (cp & 0x3F));
	} else {
		*o++ = (uint8_t)(0xF0 | cp >> 18);
		*o++ = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
		*o++ = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
		*o++ = (uint8_t)(0x80 | (cp & 0x3F));
	}
	r->out = (char *)o;
	return true;
}

/*
 * A string, decoded to r->out and NUL-terminated there.  Decoding never
 * lengthens a string and the quotes make room for the NUL, so the output
 * fits in as many bytes as the line.
 */
static bool
record_read_string(struct record_reader *r, const char **str, size_t *len)
{
	const char *run;

	r->p++;			/* the opening quote */
	*str = r->out;
	while (r->p < r->end) {
		unsigned char ch = (unsigned char)*r->p;

		if (ch == '"') {
			r->p++;
			*len = (size_t)(r->out - *str);
			*r->out++ = '\0';
			return true;
		}
		if (ch < 0x20)
			return false;
		if (ch >= 0x80) {
			/* Multi-byte characters are made of such bytes only:
			 * each run of them must be whole, valid UTF-8. */
			run = r->p;
			while (r->p < r->end && (unsigned char)*r->p >= 0x80)
				r->p++;
			if (!utf8_valid((const uint8_t *)run, (size_t)(r->p - run)))
				return false;
			memcpy(r->out, run, (size_t)(r->p - run));
			r->out += r->p - run;
			continue;
		}
		r->p++;
		if (ch != '\\') {
			*r->out++ = (char)ch;
			continue;
		}
		if (r->p == r->end)
			return false;
		switch (*r->p++) {
		case '"':  *r->out++ = '"'; break;
		case '\\': *r->out++ = '\\'; break;
		case '/':  *r->out++ = '/'; break;
		case 'b':  *r->out++ = '\b'; break;
		case 'f':  *r->out++ = '\f'; break;
		case 'n':  *r->out++ = '\n'; break;
		case 'r':  *r->out++ = '\r'; break;
		case 't':  *r->out++ = '\t'; break;
		case 'u':
			if (!record_read_unicode(r))
				return false;
			break;
		default:
			return false;
		}
	}
	return false;
}

/* An integer of at most 18 digits: no fraction, no exponent. */
static bool
record_read_integer(struct record_reader *r, json_int_t *out)
{
	bool negative = false;
	json_int_t v = 0;
	int digits = 0;

	if (*r->p == '-') {
		negative = true;
		r->p++;
	}
	if (r->p < r->end && *r->p == '0') {
		r->p++;
		digits = 1;
	} else {
		while (r->p < r->end && *r->p >= '0' && *r->p <= '9' &&
		    digits < 18) {
			v = v * 10 + (*r->p++ - '0');
			digits++;
		}
	}
	/* A 19th digit is left to jansson, as it may not fit. */
	if (digits == 0 || (r->p < r->end &&
	    (*r->p == '.' || *r->p == 'e' || *r->p == 'E' ||
	    (*r->p >= '0' && *r->p <= '9'))))
		return false;
	*out = negative ? -v : v;
	return true;
}

static bool
record_read_literal(struct record_reader *r, const char *word,
    struct record_value *v, enum record_kind kind)
{
	size_t n = strlen(word);

	if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
		return false;
	r->p += n;
	v->kind = kind;
	return true;
}

/* A list of strings, none holding a NUL (client ids never do). */
static bool
record_read_strings(struct record_reader *r, struct record_value *v)
{
	const char *item;
	size_t len;

	r->p++;			/* [ */
	v->kind = RECORD_STRINGS;
	v->str = r->out;
	v->n_items = 0;
	record_skip_space(r);
	if (r->p < r->end && *r->p == ']') {
		r->p++;
		return true;
	}
	for (;;) {
		if (r->p == r->end || *r->p != '"' ||
		    !record_read_string(r, &item, &len) ||
		    memchr(item, '\0', len) != NULL)
			return false;
		v->n_items++;
		record_skip_space(r);
		if (r->p == r->end)
			return false;
		if (*r->p == ']') {
			r->p++;
			return true;
		}
		if (*r->p++ != ',')
			return false;
		record_skip_space(r);
	}
}

static bool
record_read_value(struct record_reader *r, struct record_value *v)
{
	if (r->p == r->end)
		return false;
	switch (*r->p) {
	case '"':
		v->kind = RECORD_STRING;
		return record_read_string(r, &v->str, &v->len);
	case '[':
		return record_read_strings(r, v);
	case 'n':
		return record_read_literal(r, "null", v, RECORD_NULL);
	case 't':
		return record_read_literal(r, "true", v, RECORD_OTHER);
	case 'f':
		return record_read_literal(r, "false", v, RECORD_OTHER);
	default:
		v->kind = RECORD_INTEGER;
		return record_read_integer(r, &v->integer);
	}
}

/* Keys the fast reader takes: plain printable ASCII, no escapes. */
static bool
record_read_key(struct record_reader *r, const char **key, size_t *len)
{
	const char *start = ++r->p;

	while (r->p < r->end && *r->p != '"') {
		unsigned char ch = (unsigned char)*r->p;

		if (ch < 0x20 || ch > 0x7E || ch == '\\')
			return false;
		r->p++;
	}
	if (r->p == r->end)
		return false;
	*key = start;
	*len = (size_t)(r->p++ - start);
	return true;
}

#define RECORD_FAST_UNKNOWN 8	/* other keys kept to find duplicates */

static bool
record_read_fast(const char *line, size_t len, char *out,
    struct record_fields *f)
{
	struct record_reader r = { line, line + len, out };
	const char *unknown[RECORD_FAST_UNKNOWN], *key;
	size_t unknown_len[RECORD_FAST_UNKNOWN], n_unknown = 0, key_len, i;
	struct record_value other, *v;
	enum record_key k;

	record_skip_space(&r);
	if (r.p == r.end || *r.p++ != '{')
		return false;
	record_skip_space(&r);
	if (r.p < r.end && *r.p == '}') {
		r.p++;
		goto end;
	}
	for (;;) {
		if (r.p == r.end || *r.p != '"' ||
		    !record_read_key(&r, &key, &key_len))
			return false;
		k = record_key_find(key, key_len);
		if (k < RECORD_KEYS) {
			v = &f->v[k];
			if (v->kind != RECORD_ABSENT)
				return false;	/* a duplicate */
		} else {
			for (i = 0; i < n_unknown; i++) {
				if (unknown_len[i] == key_len &&
				    memcmp(unknown[i], key, key_len) == 0)
					return false;
			}
			if (n_unknown == RECORD_FAST_UNKNOWN)
				return false;
			unknown[n_unknown] = key;
			unknown_len[n_unknown++] = key_len;
			v = &other;
		}
		record_skip_space(&r);
		if (r.p == r.end || *r.p++ != ':')
			return false;
		record_skip_space(&r);
		if (!record_read_value(&r, v))
			return false;
		record_skip_space(&r);
		if (r.p == r.end)
			return false;
		if (*r.p == '}') {
			r.p++;
			break;
		}
		if (*r.p++ != ',')
			return false;
		record_skip_space(&r);
	}
end:
	record_skip_space(&r);
	return r.p == r.end;
}

/* The same table from jansson's tree. */
static void
record_fields_from_json(json_t *root, struct record_fields *f)
{
	struct record_value *v;
	json_t *j;
	size_t i, k;

	for (k = 0; k < RECORD_KEYS; k++) {
		v = &f->v[k];
		j = json_object_get(root, record_key_names[k]);
		if (j == NULL) {
			v->kind = RECORD_ABSENT;
		} else if (json_is_null(j)) {
			v->kind = RECORD_NULL;
		} else if (json_is_string(j)) {
			v->kind = RECORD_STRING;
			v->str = json_string_value(j);
			v->len = json_string_length(j);
		} else if (json_is_integer(j)) {
			v->kind = RECORD_INTEGER;
			v->integer = json_integer_value(j);
		} else if (json_is_array(j)) {
			v->kind = RECORD_STRINGS;
			v->array = j;
			v->n_items = json_array_size(j);
			for (i = 0; i < v->n_items; i++) {
				if (!json_is_string(json_array_get(j, i)))
					v->kind = RECORD_OTHER;
			}
		} else {
			v->kind = RECORD_OTHER;
		}
	}
}

/* A field that holds one client id or a list of them. */
static int
record_ids(const struct record_value *v, const char ***ids, size_t *n,
    const char **one, const char *field, char *err, size_t err_size)
{
	const char *item;
	size_t i;

	if (v->kind == RECORD_STRING) {
		/* Ids are C strings: one with a NUL would name another. */
		if (memchr(v->str, '\0', v->len) != NULL)
			return record_fail(err, err_size,
			    "\"%s\" holds a NUL", field);
		*one = v->str;
		*ids = one;
		*n = 1;
		return 0;
	}
	if (v->kind != RECORD_STRINGS)
		return record_fail(err, err_size,
		    "\"%s\" must be a client id or a list of them", field);
	*n = v->n_items;
	*ids = calloc(*n ? *n : 1, sizeof(**ids));
	if (*ids == NULL)
		return record_fail(err, err_size, "out of memory");
	item = v->str;
	for (i = 0; i < *n; i++) {
		if (v->array != NULL) {
			json_t *id = json_array_get(v->array, i);

			(*ids)[i] = json_string_value(id);
			if (strlen((*ids)[i]) != json_string_length(id))
				return record_fail(err, err_size,
				    "\"%s\" holds a NUL", field);
		} else {
			(*ids)[i] = item;
			item += strlen(item) + 1;
		}
	}
	return 0;
}

/* The text or binary payload of send and broadcast. */
static int
record_payload(const struct record_fields *f, struct record_cmd *cmd,
    char *err, size_t err_size)
{
	const struct record_value *text = &f->v[RECORD_KEY_TEXT];
	const struct record_value *binary = &f->v[RECORD_KEY_BINARY];
	const char *b64;
	size_t b64_len, pad = 0;
	int n;

	if ((text->kind == RECORD_ABSENT) == (binary->kind == RECORD_ABSENT))
		return record_fail(err, err_size,
		    "needs exactly one of \"text\" and \"binary\"");
	if (text->kind != RECORD_ABSENT) {
		if (text->kind != RECORD_STRING)
			return record_fail(err, err_size, "\"text\" must be a string");
		cmd->payload = (const uint8_t *)text->str;
		cmd->payload_len = text->len;
		return 0;
	}
	if (binary->kind != RECORD_STRING)
		return record_fail(err, err_size, "\"binary\" must be a base64 string");
	b64 = binary->str;
	b64_len = binary->len;
	if (b64_len % 4 != 0 || b64_len > (size_t)INT32_MAX)
		return record_fail(err, err_size, "\"binary\" is not valid base64");
	cmd->binary = true;
	if (b64_len == 0) {
		cmd->payload = (const uint8_t *)"";
		return 0;
	}
	/* EVP_DecodeBlock skips surrounding blanks; strict base64 has none. */
	if (strspn(b64, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789+/=") != b64_len)
		return record_fail(err, err_size, "\"binary\" is not valid base64");
	if (b64[b64_len - 1] == '=')
		pad = b64[b64_len - 2] == '=' ? 2 : 1;
	if (memchr(b64, '=', b64_len - pad) != NULL)
		return record_fail(err, err_size, "\"binary\" is not valid base64");
	cmd->decoded = malloc(b64_len / 4 * 3);
	if (cmd->decoded == NULL)
		return record_fail(err, err_size, "out of memory");
	n = EVP_DecodeBlock(cmd->decoded, (const unsigned char *)b64, (int)b64_len);
	if (n < 0)
		return record_fail(err, err_size, "\"binary\" is not valid base64");
	cmd->payload = cmd->decoded;
	cmd->payload_len = (size_t)n - pad;
	return 0;
}

/* An optional integer field within [min, max]. */
static int
record_uint(const struct record_fields *f, enum record_key k, unsigned dflt,
    unsigned min, unsigned max, unsigned *out, char *err, size_t err_size)
{
	const struct record_value *v = &f->v[k];

	if (v->kind == RECORD_ABSENT) {
		*out = dflt;
		return 0;
	}
	if (v->kind != RECORD_INTEGER)
		return record_fail(err, err_size, "\"%s\" must be an integer",
		    record_key_names[k]);
	if (v->integer < min || v->integer > max)
		return record_fail(err, err_size, "\"%s\" %lld is out of range",
		    record_key_names[k], (long long)v->integer);
	*out = (unsigned)v->integer;
	return 0;
}

static int
record_reason(const struct record_fields *f, struct record_cmd *cmd,
    char *err, size_t err_size)
{
	const struct record_value *v = &f->v[RECORD_KEY_REASON];

	if (v->kind == RECORD_ABSENT) {
		cmd->reason = "";
		return 0;
	}
	if (v->kind != RECORD_STRING)
		return record_fail(err, err_size, "\"reason\" must be a string");
	cmd->reason = v->str;
	cmd->reason_len = v->len;
	return 0;
}

/* The rules, on the fields either reader found. */
static int
record_decode_fields(const struct record_fields *f, struct record_cmd *cmd,
    char *err, size_t err_size)
{
	static const struct {
		const char *name;
		enum record_command command;
	} types[] = {
		{ "send", RECORD_SEND },
		{ "broadcast", RECORD_BROADCAST },
		{ "close", RECORD_CLOSE },
		{ "accept", RECORD_ACCEPT },
		{ "reject", RECORD_REJECT },
		{ "ack", RECORD_ACK },
	};
	const struct record_value *type = &f->v[RECORD_KEY_TYPE], *v;
	size_t i;

	if (type->kind != RECORD_STRING)
		return record_fail(err, err_size, "no \"type\"");
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (strlen(types[i].name) == type->len &&
		    memcmp(type->str, types[i].name, type->len) == 0)
			break;
	}
	if (i == sizeof(types) / sizeof(types[0]))
		return record_fail(err, err_size, "unknown type");
	cmd->command = types[i].command;

	if (cmd->command == RECORD_ACK) {
		v = &f->v[RECORD_KEY_SEQ];
		if (v->kind != RECORD_INTEGER || v->integer < 1)
			return record_fail(err, err_size,
			    "\"seq\" must be a positive integer");
		cmd->seq = (uint64_t)v->integer;
		return 0;
	}
	if (cmd->command != RECORD_BROADCAST) {
		v = &f->v[RECORD_KEY_CLIENT];
		if (v->kind == RECORD_ABSENT)
			return record_fail(err, err_size, "no \"client\"");
		if (record_ids(v, &cmd->clients, &cmd->n_clients,
		    &cmd->one_client, "client", err, err_size) == -1)
			return -1;
	}
	switch (cmd->command) {
	case RECORD_BROADCAST:
		v = &f->v[RECORD_KEY_EXCEPT];
		if (v->kind != RECORD_ABSENT && record_ids(v, &cmd->except,
		    &cmd->n_except, &cmd->one_except, "except", err,
		    err_size) == -1)
			return -1;
		/* FALLTHROUGH */
	case RECORD_SEND:
		return record_payload(f, cmd, err, err_size);
	case RECORD_CLOSE:
		if (record_uint(f, RECORD_KEY_CODE, 1000, 1000, 4999, &cmd->code,
		    err, err_size) == -1)
			return -1;
		/* A backend may close with what a peer may send. */
		if (!ws_frame_close_code_valid(cmd->code))
			return record_fail(err, err_size,
			    "\"code\" %u may not be sent", cmd->code);
		return record_reason(f, cmd, err, err_size);
	case RECORD_REJECT:
		if (record_uint(f, RECORD_KEY_STATUS, 403, 400, 599, &cmd->status,
		    err, err_size) == -1)
			return -1;
		return record_reason(f, cmd, err, err_size);
	case RECORD_ACK:
		return 0;
	case RECORD_ACCEPT:
		v = &f->v[RECORD_KEY_SUBPROTOCOL];
		if (v->kind != RECORD_ABSENT && v->kind != RECORD_NULL) {
			if (v->kind != RECORD_STRING)
				return record_fail(err, err_size,
				    "\"subprotocol\" must be a string");
			cmd->subprotocol = v->str;
			cmd->subprotocol_len = v->len;
		}
		return 0;
	}
	return 0;
}

int
record_decode_json(const char *line, size_t len, struct record_cmd *cmd,
    char *err, size_t err_size)
{
	struct record_fields f;
	json_error_t jerr;
	json_t *root;

	memset(cmd, 0, sizeof(*cmd));
	root = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
	    &jerr);
	if (root == NULL)
		return record_fail(err, err_size, "not JSON: %s", jerr.text);
	cmd->json = root;
	if (!json_is_object(root))
		return record_fail(err, err_size, "not a JSON object");
	memset(&f, 0, sizeof(f));
	record_fields_from_json(root, &f);
	return record_decode_fields(&f, cmd, err, err_size);
}

int
record_decode(const char *line, size_t len, struct record_cmd *cmd, char *err,
    size_t err_size)
{
	struct record_fields f;

	memset(cmd, 0, sizeof(*cmd));
	cmd->text = malloc(len + 1);
	if (cmd->text == NULL)
		return record_fail(err, err_size, "out of memory");
	memset(&f, 0, sizeof(f));
	if (record_read_fast(line, len, cmd->text, &f))
		return record_decode_fields(&f, cmd, err, err_size);
	free(cmd->text);
	return record_decode_json(line, len, cmd, err, err_size);
}

void
record_cmd_free(struct record_cmd *cmd)
{
	if (cmd->clients != &cmd->one_client)
		free(cmd->clients);
	if (cmd->except != &cmd->one_except)
		free(cmd->except);
	free(cmd->decoded);
	free(cmd->text);
	json_decref(cmd->json);
	memset(cmd, 0, sizeof(*cmd));
}

const char *
record_command_name(enum record_command command)
{
	switch (command) {
	case RECORD_SEND:
		return "send";
	case RECORD_BROADCAST:
		return "broadcast";
	case RECORD_CLOSE:
		return "close";
	case RECORD_ACCEPT:
		return "accept";
	case RECORD_REJECT:
		return "reject";
	case RECORD_ACK:
		return "ack";
	}
	return "?";
}

const char *
record_client(const char *line, size_t len, size_t *out_len)
{
	static const char field[] = "\"client\":\"";
	const char *p, *end;

	p = memmem(line, len, field, sizeof(field) - 1);
	if (p == NULL)
		return NULL;
	p += sizeof(field) - 1;
	/* A client id has no character that needs escaping. */
	end = memchr(p, '"', (size_t)(line + len - p));
	if (end == NULL)
		return NULL;
	*out_len = (size_t)(end - p);
	return p;
}

char *
record_add_field(const char *line, size_t len, const char *field,
    size_t *out_len)
{
	size_t n = strlen(field), end = len;
	char *out;

	/* A line the encoders wrote: "{...}\n". */
	while (end > 0 && line[end - 1] == '\n')
		end--;
	if (end < 2 || line[0] != '{' || line[end - 1] != '}')
		return NULL;
	if ((out = malloc(len + n + 1)) == NULL)
		return NULL;
	memcpy(out, line, end - 1);
	out[end - 1] = ',';
	memcpy(out + end, field, n);
	memcpy(out + end + n, line + end - 1, len - end + 1);
	*out_len = len + n + 1;
	return out;
}
