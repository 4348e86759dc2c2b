/*
 * Fuzz the record codec: decode the input as a backend line, both with
 * record_decode (whose fast reader must agree with jansson) and with
 * jansson alone; and encode it as a client message (text when valid
 * UTF-8, else binary), which jansson must read back to the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "record.h"
#include "utf8.h"
#include "record_agree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct record_cmd cmd, ref;
	char err[160] = "", ref_err[160] = "";
	int rc, ref_rc;
	json_error_t jerr;
	json_t *obj, *field;
	bool binary;
	size_t len;
	char *line;

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

	binary = !utf8_valid(data, size);
	line = record_message("c1", binary, data, size, &len);
	if (line == NULL)
		return 0;
	if (line[len - 1] != '\n' || memchr(line, '\n', len - 1) != NULL)
		abort();
	obj = json_loadb(line, len, JSON_ALLOW_NUL, &jerr);
	if (obj == NULL)
		abort();
	field = json_object_get(obj, binary ? "binary" : "text");
	if (!json_is_string(field))
		abort();
	if (!binary && (json_string_length(field) != size ||
	    memcmp(json_string_value(field), data, size) != 0))
		abort();
	json_decref(obj);
	free(line);
	return 0;
}
