/*
 * Fuzz the record codec: decode the input as a backend line, both with
 * record_decode (whose fast reader must agree with jansson) and with
 * jansson alone; encode it as a client message (text when valid UTF-8,
 * else binary), which must read back to the same bytes; as a close
 * reason, which must come out valid UTF-8 whatever went in; and as the
 * headers, path and query of an open record, which must read back to what
 * a jansson tree built from them holds.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "record.h"
#include "utf8.h"
#include "record_agree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A line the gateway wrote: one line, valid JSON; its string field. */
static json_t *
parsed_line(const char *line, size_t len, const char *name, json_t **field)
{
	json_error_t jerr;
	json_t *obj;

	if (line[len - 1] != '\n' || memchr(line, '\n', len - 1) != NULL)
		abort();
	obj = json_loadb(line, len, JSON_ALLOW_NUL, &jerr);
	if (obj == NULL)
		abort();
	*field = json_object_get(obj, name);
	if (!json_is_string(*field))
		abort();
	return obj;
}

/* The input as a client message: text comes back byte for byte, binary
 * through its base64. */
static void
check_message(const uint8_t *data, size_t size)
{
	bool binary = !utf8_valid(data, size);
	json_t *obj, *field;
	unsigned char *decoded;
	size_t len, b64_len;
	char *line;
	int n;

	line = record_message("c1", binary, data, size, &len);
	if (line == NULL)
		return;
	obj = parsed_line(line, len, binary ? "binary" : "text", &field);
	if (!binary) {
		if (json_string_length(field) != size ||
		    memcmp(json_string_value(field), data, size) != 0)
			abort();
	} else {
		b64_len = json_string_length(field);
		decoded = malloc(b64_len / 4 * 3 + 1);
		if (decoded == NULL)
			abort();
		n = EVP_DecodeBlock(decoded,
		    (const unsigned char *)json_string_value(field), (int)b64_len);
		/* EVP_DecodeBlock keeps the padding's zero bytes. */
		if (n < 0 || (size_t)n < size || (size_t)n > size + 2 ||
		    memcmp(decoded, data, size) != 0)
			abort();
		free(decoded);
	}
	json_decref(obj);
	free(line);
}

/* The input as a close reason (bytes from the network): valid JSON whose
 * reason is valid UTF-8, the input itself when it was valid. */
static void
check_close_reason(const uint8_t *data, size_t size)
{
	json_t *obj, *field;
	size_t len;
	char *line;

	line = record_close("c1", 1000, (const char *)data, size, &len);
	if (line == NULL)
		return;
	obj = parsed_line(line, len, "reason", &field);
	if (!utf8_valid((const uint8_t *)json_string_value(field),
	    json_string_length(field)))
		abort();
	if (utf8_valid(data, size) && (json_string_length(field) != size ||
	    memcmp(json_string_value(field), data, size) != 0))
		abort();
	json_decref(obj);
	free(line);
}

/* The string a record should hold for the bytes s[0..n): invalid UTF-8
 * replaced, byte by byte, by U+FFFD. */
static json_t *
expected_string(const char *s, size_t n)
{
	const uint8_t *p = (const uint8_t *)s;
	char *clean = malloc(3 * n + 1);
	size_t i, o = 0, seq;
	json_t *str;

	if (clean == NULL)
		abort();
	for (i = 0; i < n; i += seq) {
		seq = utf8_char(p + i, n - i);
		if (seq > 0) {
			memcpy(clean + o, p + i, seq);
			o += seq;
		} else {
			memcpy(clean + o, "\xef\xbf\xbd", 3);
			o += 3;
			seq = 1;
		}
	}
	str = json_stringn(clean, o);
	free(clean);
	if (str == NULL)
		abort();
	return str;
}

/* True when name[0..n) is ASCII without NUL: a wider set than the tokens
 * the daemon passes as header names, which stretches the escaping. */
static bool
ascii_name(const char *name, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (name[i] == '\0' || (unsigned char)name[i] >= 0x80)
			return false;
	}
	return true;
}

/* The input as the path of an open record, and as its headers, one per
 * line, "name:value" (values of any bytes): the headers come out with
 * lower-cased names, the values of repeated names joined in order. */
static void
check_open(const uint8_t *data, size_t size)
{
	struct record_header headers[64];
	struct record_open o;
	json_t *want, *obj, *got, *old, *value;
	const char *p = (const char *)data, *end = p + size, *nl, *colon;
	size_t n = 0, i, k, len;
	char *line, *joined, *name;

	while (p < end && n < 64) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		colon = memchr(p, ':', (size_t)(nl - p));
		if (colon != NULL && ascii_name(p, (size_t)(colon - p))) {
			headers[n].name = p;
			headers[n].name_len = (size_t)(colon - p);
			headers[n].value = colon + 1;
			headers[n].value_len = (size_t)(nl - colon - 1);
			n++;
		}
		p = nl + 1;
	}
	memset(&o, 0, sizeof(o));
	o.client = "c1";
	o.path = (const char *)data;
	o.path_len = size;
	o.query = "";
	o.remote = "127.0.0.1:1";
	o.headers = headers;
	o.n_headers = n;
	line = record_open(&o, &len);
	if (line == NULL)
		return;
	obj = parsed_line(line, len, "path", &got);
	want = expected_string(o.path, o.path_len);
	if (!json_equal(got, want))
		abort();
	json_decref(want);

	want = json_object();
	/* Every name is kept, however long. */
	name = malloc(size + 1);
	if (name == NULL)
		abort();
	for (i = 0; i < n; i++) {
		for (k = 0; k < headers[i].name_len; k++)
			name[k] = (char)tolower((unsigned char)headers[i].name[k]);
		/* The name as a key: what reads back from the record. */
		value = expected_string(name, headers[i].name_len);
		old = json_object_get(want, json_string_value(value));
		if (old != NULL) {
			const char *sep = strcmp(json_string_value(value),
			    "cookie") == 0 ? "; " : ", ";
			size_t old_len = json_string_length(old);

			joined = malloc(old_len + 2 + headers[i].value_len);
			if (joined == NULL)
				abort();
			memcpy(joined, json_string_value(old), old_len);
			memcpy(joined + old_len, sep, 2);
			memcpy(joined + old_len + 2, headers[i].value,
			    headers[i].value_len);
			json_object_set_new(want, json_string_value(value),
			    expected_string(joined, old_len + 2 +
			    headers[i].value_len));
			free(joined);
		} else {
			json_object_set_new(want, json_string_value(value),
			    expected_string(headers[i].value,
			    headers[i].value_len));
		}
		json_decref(value);
	}
	free(name);
	if (!json_equal(json_object_get(obj, "headers"), want))
		abort();
	json_decref(want);
	json_decref(obj);
	free(line);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct record_cmd cmd, ref;
	char err[160] = "", ref_err[160] = "";
	int rc, ref_rc;

	rc = record_decode((const char *)data, size, &cmd, err, sizeof(err));
	ref_rc = record_decode_json((const char *)data, size, &ref, ref_err,
	    sizeof(ref_err));
	if (!record_agree(rc, err, &cmd, ref_rc, ref_err, &ref))
		abort();
	record_cmd_free(&ref);
	if (rc == 0) {
		/* A decoded command's fields are within their bounds. */
		if (cmd.command == RECORD_CLOSE &&
		    (cmd.code < 1000 || cmd.code > 4999))
			abort();
		if (cmd.command == RECORD_REJECT &&
		    (cmd.status < 400 || cmd.status > 599))
			abort();
		if ((cmd.command == RECORD_SEND || cmd.command == RECORD_BROADCAST) &&
		    cmd.payload == NULL)
			abort();
		if (cmd.command != RECORD_BROADCAST && cmd.clients == NULL)
			abort();
	}
	record_cmd_free(&cmd);

	check_message(data, size);
	check_close_reason(data, size);
	check_open(data, size);
	return 0;
}
