/*
 * record: the line protocol between the gateway and a room's backend
 * (docs/PROTOCOL.md is its normative description).
 *
 * Pure: encoders return malloc'd lines, the decoder turns one line into a
 * command.  JSON comes from jansson, base64 from OpenSSL's libcrypto; the
 * decoder reads the common shape of a command itself, without a tree, as
 * that is on the path of every message (it agrees with jansson, which
 * reads every other line: see record_decode_json).
 */
#ifndef GATEWAYD_RECORD_H
#define GATEWAYD_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RECORD_VERSION 1

/* The longest line a backend may write for a room whose messages are at
 * most max_message_size bytes: a message of that size written entirely in
 * six-byte \uXXXX escapes, plus room for the rest of the record. */
#define RECORD_LINE_MAX(max_message_size) \
	((uint64_t)(max_message_size) * 6 + 65536)

struct record_header {
	const char *name;	/* any case; the record lower-cases it */
	size_t name_len;
	const char *value;
	size_t value_len;
};

/* What an open record says about a client. */
struct record_open {
	const char *client;
	const char *path;
	size_t path_len;
	const char *query;
	size_t query_len;
	const char *remote;
	const char *subprotocol;	/* NULL: none chosen */
	const char *const *subprotocols;	/* offered, in order */
	const size_t *subprotocol_lens;
	size_t n_subprotocols;
	bool authorize;		/* the client waits for accept or reject */
	bool tls;		/* it came over TLS (wss://) */
	const char *server_name;	/* the name it asked for (SNI), or NULL */
	const struct record_header *headers;
	size_t n_headers;
};

/*
 * Encoders.  Each returns a malloc'd line ending in "\n" and stores its
 * length in *len, or returns NULL when out of memory.  Strings are taken
 * as UTF-8; bytes that are not valid UTF-8 (possible in request headers)
 * are replaced by U+FFFD so that every line is valid JSON.
 */
char *record_hello(const char *room, bool resumed, bool ack, size_t *len);
char *record_open(const struct record_open *open, size_t *len);
char *record_message(const char *client, bool binary, const uint8_t *data,
    size_t data_len, size_t *len);
char *record_close(const char *client, unsigned code, const char *reason,
    size_t reason_len, size_t *len);

/* The open line open[0..open_len) (as record_open wrote it) again, with
 * "resumed":true added: what a restarted backend gets for a client that
 * was already connected.  NULL when out of memory. */
char *record_open_resumed(const char *open, size_t open_len, size_t *len);

enum record_command {
	RECORD_SEND,
	RECORD_BROADCAST,
	RECORD_CLOSE,
	RECORD_ACCEPT,
	RECORD_REJECT,
	RECORD_ACK,		/* delivery = ack: records up to seq handled */
};

/* A decoded command.  Strings point into the decoder's storage and live
 * until record_cmd_free. */
struct record_cmd {
	enum record_command command;
	const char **clients;	/* send, close, accept, reject: none or more */
	size_t n_clients;
	const char **except;	/* broadcast: none or more */
	size_t n_except;
	bool binary;		/* send, broadcast: payload is binary */
	const uint8_t *payload;	/* send, broadcast */
	size_t payload_len;
	unsigned code;		/* close: default 1000 */
	unsigned status;	/* reject: default 403 */
	const char *reason;	/* close, reject: default "" */
	size_t reason_len;
	const char *subprotocol;	/* accept: NULL when absent */
	size_t subprotocol_len;
	uint64_t seq;		/* ack */

	void *json;		/* private: the jansson tree, or */
	char *text;		/* private: the fast reader's strings */
	uint8_t *decoded;	/* private: a decoded base64 payload */
	const char *one_client;	/* private: storage for a single id */
	const char *one_except;
};

/*
 * Decode one line (without its "\n") into cmd.  Returns 0, or -1 with a
 * short reason written into err (the record is malformed, of an unknown
 * type, or out of memory).  cmd needs record_cmd_free either way.
 */
int record_decode(const char *line, size_t len, struct record_cmd *cmd,
    char *err, size_t err_size);

/* record_decode with jansson alone: the reference that record_decode's
 * fast reader must agree with (tests/fuzz/fuzz_record.c checks). */
int record_decode_json(const char *line, size_t len, struct record_cmd *cmd,
    char *err, size_t err_size);

void record_cmd_free(struct record_cmd *cmd);

/* The line line[0..len) (a record the encoders wrote) with field, a
 * '"name":value' text, added as its last field: "redelivered":true, or
 * "seq":N.  A malloc'd line (its length in *out_len), or NULL. */
char *record_add_field(const char *line, size_t len, const char *field,
    size_t *out_len);

/* The client a record the encoders wrote is about: its "client" field's
 * value, not NUL-terminated (its length in *len), or NULL. */
const char *record_client(const char *line, size_t len, size_t *out_len);

/* The record type of a command: "send", "broadcast", ... */
const char *record_command_name(enum record_command command);

#endif
