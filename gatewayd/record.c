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

/* Append the line terminator to a jansson dump and hand it over. */
static char *
record_dump(json_t *obj, size_t *len)
{
	char *text, *line;
	size_t n;

	if (obj == NULL)
		return NULL;
	text = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (text == NULL)
		return NULL;
	n = strlen(text);
	line = realloc(text, n + 2);
	if (line == NULL) {
		free(text);
		return NULL;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	*len = n + 1;
	return line;
}

/*
 * A JSON string of bytes that should be UTF-8 but come from the network
 * unchecked (request headers, paths): invalid bytes become U+FFFD, so that
 * the backend always gets valid JSON and sees where the damage was.
 */
static json_t *
record_string(const char *s, size_t len)
{
	static const uint8_t replacement[] = { 0xef, 0xbf, 0xbd };
	const uint8_t *p = (const uint8_t *)s;
	uint8_t *clean;
	size_t i, o, seq;
	json_t *str;

	if (utf8_valid(p, len))
		return json_stringn_nocheck(s, len);
	clean = malloc(len * 3);
	if (clean == NULL)
		return NULL;
	for (i = 0, o = 0; i < len; i += seq) {
		seq = p[i] < 0x80 ? 1 : p[i] < 0xe0 ? 2 : p[i] < 0xf0 ? 3 : 4;
		if (seq <= len - i && utf8_valid(p + i, seq)) {
			memcpy(clean + o, p + i, seq);
			o += seq;
		} else {
			memcpy(clean + o, replacement, sizeof(replacement));
			o += sizeof(replacement);
			seq = 1;
		}
	}
	str = json_stringn_nocheck((const char *)clean, o);
	free(clean);
	return str;
}

char *
record_hello(const char *room, bool resumed, size_t *len)
{
	json_t *obj = json_pack("{s:s, s:o, s:i}", "type", "hello",
	    "room", record_string(room, strlen(room)),
	    "version", RECORD_VERSION);

	if (obj != NULL && resumed &&
	    json_object_set_new(obj, "resumed", json_true()) == -1) {
		json_decref(obj);
		return NULL;
	}
	return record_dump(obj, len);
}

char *
record_open(const struct record_open *o, size_t *len)
{
	json_t *obj, *headers, *protocols, *value, *old;
	size_t i;

	headers = json_object();
	protocols = json_array();
	if (headers == NULL || protocols == NULL)
		goto fail;
	for (i = 0; i < o->n_subprotocols; i++) {
		if (json_array_append_new(protocols, record_string(
		    o->subprotocols[i], o->subprotocol_lens[i])) == -1)
			goto fail;
	}
	for (i = 0; i < o->n_headers; i++) {
		const struct record_header *h = &o->headers[i];
		char name[256];

		if (h->name_len >= sizeof(name))
			continue;	/* longer than any real header name */
		for (size_t k = 0; k < h->name_len; k++)
			name[k] = (char)tolower((unsigned char)h->name[k]);
		name[h->name_len] = '\0';
		old = json_object_get(headers, name);
		if (old != NULL) {
			/* A repeated header joins the earlier one, as RFC
			 * 9110 5.3 allows; cookies join with "; ". */
			const char *sep = strcmp(name, "cookie") == 0 ? "; " : ", ";
			size_t old_len = json_string_length(old);
			size_t n = old_len + strlen(sep) + h->value_len;
			char *joined = malloc(n);

			if (joined == NULL)
				goto fail;
			memcpy(joined, json_string_value(old), old_len);
			memcpy(joined + old_len, sep, strlen(sep));
			memcpy(joined + old_len + strlen(sep), h->value, h->value_len);
			value = record_string(joined, n);
			free(joined);
		} else {
			value = record_string(h->value, h->value_len);
		}
		if (json_object_set_new(headers, name, value) == -1)
			goto fail;
	}
	obj = json_pack("{s:s, s:s, s:o, s:o, s:s, s:o, s:o, s:b, s:o}",
	    "type", "open",
	    "client", o->client,
	    "path", record_string(o->path, o->path_len),
	    "query", record_string(o->query, o->query_len),
	    "remote", o->remote,
	    "subprotocol", o->subprotocol != NULL ?
		json_string(o->subprotocol) : json_null(),
	    "subprotocols", protocols,
	    "authorize", o->authorize,
	    "headers", headers);
	return record_dump(obj, len);
fail:
	json_decref(headers);
	json_decref(protocols);
	return NULL;
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
	static const char hex[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		uint8_t c = p[i];

		if (c >= 0x20 && c != '"' && c != '\\') {
			*out++ = (char)c;
			continue;
		}
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
	return record_dump(json_pack("{s:s, s:s, s:i, s:o}",
	    "type", "close",
	    "client", client,
	    "code", (int)code,
	    "reason", record_string(reason, reason_len)), len);
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

const char *
record_message_client(const char *line, size_t len, char *id, size_t id_size)
{
	static const char head[] = "{\"type\":\"message\",\"client\":\"";
	const char *start = line + sizeof(head) - 1, *end;

	if (len < sizeof(head) || memcmp(line, head, sizeof(head) - 1) != 0)
		return NULL;
	end = memchr(start, '"', len - (sizeof(head) - 1));
	if (end == NULL || (size_t)(end - start) >= id_size)
		return NULL;
	memcpy(id, start, (size_t)(end - start));
	id[end - start] = '\0';
	return id;
}

/* Decoding */

static int
record_fail(char *err, size_t err_size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, err_size, fmt, ap);
	va_end(ap);
	return -1;
}

/* A field that holds one client id or a list of them. */
static int
record_ids(json_t *value, const char ***ids, size_t *n, const char **one,
    const char *field, char *err, size_t err_size)
{
	size_t i;

	if (json_is_string(value)) {
		*one = json_string_value(value);
		*ids = one;
		*n = 1;
		return 0;
	}
	if (!json_is_array(value))
		return record_fail(err, err_size,
		    "\"%s\" must be a client id or a list of them", field);
	*n = json_array_size(value);
	*ids = calloc(*n ? *n : 1, sizeof(**ids));
	if (*ids == NULL)
		return record_fail(err, err_size, "out of memory");
	for (i = 0; i < *n; i++) {
		json_t *id = json_array_get(value, i);

		if (!json_is_string(id))
			return record_fail(err, err_size,
			    "\"%s\" must be a client id or a list of them", field);
		(*ids)[i] = json_string_value(id);
	}
	return 0;
}

/* The text or binary payload of send and broadcast. */
static int
record_payload(json_t *root, struct record_cmd *cmd, char *err, size_t err_size)
{
	json_t *text = json_object_get(root, "text");
	json_t *binary = json_object_get(root, "binary");
	const char *b64;
	size_t b64_len, pad = 0;
	int n;

	if ((text == NULL) == (binary == NULL))
		return record_fail(err, err_size,
		    "needs exactly one of \"text\" and \"binary\"");
	if (text != NULL) {
		if (!json_is_string(text))
			return record_fail(err, err_size, "\"text\" must be a string");
		cmd->payload = (const uint8_t *)json_string_value(text);
		cmd->payload_len = json_string_length(text);
		return 0;
	}
	if (!json_is_string(binary))
		return record_fail(err, err_size, "\"binary\" must be a base64 string");
	b64 = json_string_value(binary);
	b64_len = json_string_length(binary);
	if (b64_len % 4 != 0 || b64_len > (size_t)INT32_MAX)
		return record_fail(err, err_size, "\"binary\" is not valid base64");
	cmd->binary = true;
	if (b64_len == 0) {
		cmd->payload = (const uint8_t *)"";
		return 0;
	}
	cmd->decoded = malloc(b64_len / 4 * 3);
	if (cmd->decoded == NULL)
		return record_fail(err, err_size, "out of memory");
	/* EVP_DecodeBlock skips surrounding blanks; strict base64 has none. */
	if (strspn(b64, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789+/=") != b64_len)
		return record_fail(err, err_size, "\"binary\" is not valid base64");
	if (b64[b64_len - 1] == '=')
		pad = b64[b64_len - 2] == '=' ? 2 : 1;
	if (memchr(b64, '=', b64_len - pad) != NULL)
		return record_fail(err, err_size, "\"binary\" is not valid base64");
	n = EVP_DecodeBlock(cmd->decoded, (const unsigned char *)b64, (int)b64_len);
	if (n < 0)
		return record_fail(err, err_size, "\"binary\" is not valid base64");
	cmd->payload = cmd->decoded;
	cmd->payload_len = (size_t)n - pad;
	return 0;
}

/* An optional integer field within [min, max]. */
static int
record_uint(json_t *root, const char *field, unsigned dflt, unsigned min,
    unsigned max, unsigned *out, char *err, size_t err_size)
{
	json_t *v = json_object_get(root, field);
	json_int_t i;

	if (v == NULL) {
		*out = dflt;
		return 0;
	}
	if (!json_is_integer(v))
		return record_fail(err, err_size, "\"%s\" must be an integer", field);
	i = json_integer_value(v);
	if (i < min || i > max)
		return record_fail(err, err_size, "\"%s\" %lld is out of range",
		    field, (long long)i);
	*out = (unsigned)i;
	return 0;
}

static int
record_reason(json_t *root, struct record_cmd *cmd, char *err, size_t err_size)
{
	json_t *v = json_object_get(root, "reason");

	if (v == NULL) {
		cmd->reason = "";
		return 0;
	}
	if (!json_is_string(v))
		return record_fail(err, err_size, "\"reason\" must be a string");
	cmd->reason = json_string_value(v);
	cmd->reason_len = json_string_length(v);
	return 0;
}

/* The codes a backend may close a client with: those a peer may send
 * (RFC 6455 7.4), 1005 and 1006 excluded as they are never sent. */
static bool
record_close_code_valid(unsigned code)
{
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
	    (code >= 3000 && code <= 4999);
}

int
record_decode(const char *line, size_t len, struct record_cmd *cmd, char *err,
    size_t err_size)
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
	};
	json_error_t jerr;
	json_t *root, *type, *v;
	const char *name;
	size_t i;

	memset(cmd, 0, sizeof(*cmd));
	root = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
	    &jerr);
	if (root == NULL)
		return record_fail(err, err_size, "not JSON: %s", jerr.text);
	cmd->json = root;
	if (!json_is_object(root))
		return record_fail(err, err_size, "not a JSON object");
	type = json_object_get(root, "type");
	if (!json_is_string(type))
		return record_fail(err, err_size, "no \"type\"");
	name = json_string_value(type);
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcmp(name, types[i].name) == 0)
			break;
	}
	if (i == sizeof(types) / sizeof(types[0]))
		return record_fail(err, err_size, "unknown type");
	cmd->command = types[i].command;

	if (cmd->command != RECORD_BROADCAST) {
		v = json_object_get(root, "client");
		if (v == NULL)
			return record_fail(err, err_size, "no \"client\"");
		if (record_ids(v, &cmd->clients, &cmd->n_clients,
		    &cmd->one_client, "client", err, err_size) == -1)
			return -1;
	}
	switch (cmd->command) {
	case RECORD_BROADCAST:
		v = json_object_get(root, "except");
		if (v != NULL && record_ids(v, &cmd->except, &cmd->n_except,
		    &cmd->one_except, "except", err, err_size) == -1)
			return -1;
		/* FALLTHROUGH */
	case RECORD_SEND:
		return record_payload(root, cmd, err, err_size);
	case RECORD_CLOSE:
		if (record_uint(root, "code", 1000, 1000, 4999, &cmd->code,
		    err, err_size) == -1)
			return -1;
		if (!record_close_code_valid(cmd->code))
			return record_fail(err, err_size,
			    "\"code\" %u may not be sent", cmd->code);
		return record_reason(root, cmd, err, err_size);
	case RECORD_REJECT:
		if (record_uint(root, "status", 403, 400, 599, &cmd->status,
		    err, err_size) == -1)
			return -1;
		return record_reason(root, cmd, err, err_size);
	case RECORD_ACCEPT:
		v = json_object_get(root, "subprotocol");
		if (v != NULL && !json_is_null(v)) {
			if (!json_is_string(v))
				return record_fail(err, err_size,
				    "\"subprotocol\" must be a string");
			cmd->subprotocol = json_string_value(v);
			cmd->subprotocol_len = json_string_length(v);
		}
		return 0;
	}
	return 0;
}

void
record_cmd_free(struct record_cmd *cmd)
{
	if (cmd->clients != &cmd->one_client)
		free(cmd->clients);
	if (cmd->except != &cmd->one_except)
		free(cmd->except);
	free(cmd->decoded);
	json_decref(cmd->json);
	memset(cmd, 0, sizeof(*cmd));
}
