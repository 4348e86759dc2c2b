/*
 * Fuzz the record codec: decode the input as a backend line, both with
 * record_decode (whose fast reader must agree with jansson) and with
 * jansson alone; encode it as a client message (text when valid UTF-8,
 * else binary), which must read back to the same bytes; and as a close
 * reason, which must come out valid UTF-8 whatever went in.
 */
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
	return 0;
}
