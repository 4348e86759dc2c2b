/*
 * Unit tests for record.c: the lines between gatewayd and a backend.
 */
#include "../../gatewayd/record.c"

#include "check.h"
#include "../fuzz/record_agree.h"

/* Decode a line, expecting success. */
static int
decode(const char *line, struct record_cmd *cmd)
{
	char err[160];
	int rc = record_decode(line, strlen(line), cmd, err, sizeof(err));

	if (rc != 0)
		fprintf(stderr, "decode %s: %s\n", line, err);
	return rc;
}

/* Decode a line, expecting failure with err containing want. */
static void
check_rejected(const char *line, const char *want)
{
	struct record_cmd cmd;
	char err[160] = "";

	CHECK_EQ_INT(record_decode(line, strlen(line), &cmd, err, sizeof(err)), -1);
	if (strstr(err, want) == NULL) {
		fprintf(stderr, "%s: error \"%s\" lacks \"%s\"\n", line, err, want);
		check_failures_in_test++;
	}
	record_cmd_free(&cmd);
}

static void
test_hello(void)
{
	size_t len;
	char *line = record_hello("/rooms/42", false, false, &len);

	CHECK_EQ_STR(line, "{\"type\":\"hello\",\"room\":\"/rooms/42\",\"version\":1}\n");
	CHECK_EQ_INT(len, strlen(line));
	free(line);
	line = record_hello("/a", true, false, &len);
	CHECK_EQ_STR(line, "{\"type\":\"hello\",\"room\":\"/a\",\"version\":1,"
	    "\"resumed\":true}\n");
	free(line);
}

static void
test_open_resumed(void)
{
	static const char open[] = "{\"type\":\"open\",\"client\":\"c1\"}\n";
	size_t len;
	char *line = record_open_resumed(open, sizeof(open) - 1, &len);

	CHECK_EQ_MEM(line, len, "{\"resumed\":true,\"type\":\"open\",\"client\":\"c1\"}\n",
	    strlen("{\"resumed\":true,\"type\":\"open\",\"client\":\"c1\"}\n"));
	free(line);
	CHECK(record_open_resumed("x", 1, &len) == NULL);
}

static void
test_add_field(void)
{
	static const char open[] = "{\"type\":\"open\",\"client\":\"c1\"}\n";
	size_t len;
	char *line = record_add_field(open, sizeof(open) - 1,
	    "\"redelivered\":true", &len);

	CHECK_EQ_MEM(line, len, "{\"type\":\"open\",\"client\":\"c1\","
	    "\"redelivered\":true}\n", strlen("{\"type\":\"open\",\"client\":"
	    "\"c1\",\"redelivered\":true}\n"));
	free(line);
	/* What the encoders write only: an object and its newline. */
	CHECK(record_add_field("x\n", 2, "\"seq\":1", &len) == NULL);
	CHECK(record_add_field("\n", 1, "\"seq\":1", &len) == NULL);
	CHECK(record_add_field("{\"a\":1]\n", 8, "\"seq\":1", &len) == NULL);
}

static void
test_hello_ack(void)
{
	size_t len;
	char *line = record_hello("/a", true, true, &len);

	CHECK_EQ_STR(line, "{\"type\":\"hello\",\"room\":\"/a\",\"version\":1,"
	    "\"resumed\":true,\"delivery\":\"ack\"}\n");
	free(line);
}

static void
test_decode_ack(void)
{
	struct record_cmd cmd;

	CHECK_EQ_INT(decode("{\"type\":\"ack\",\"seq\":42}", &cmd), 0);
	CHECK_EQ_INT(cmd.command, RECORD_ACK);
	CHECK_EQ_INT(cmd.seq, 42);
	record_cmd_free(&cmd);
	CHECK_EQ_INT(decode("{\"seq\":9007199254740993,\"type\":\"ack\"}",
	    &cmd), 0);
	CHECK(cmd.seq == 9007199254740993ULL);
	record_cmd_free(&cmd);
	check_rejected("{\"type\":\"ack\"}", "\"seq\" must be");
	check_rejected("{\"type\":\"ack\",\"seq\":0}", "\"seq\" must be");
	check_rejected("{\"type\":\"ack\",\"seq\":-3}", "\"seq\" must be");
	check_rejected("{\"type\":\"ack\",\"seq\":\"7\"}", "\"seq\" must be");
	check_rejected("{\"type\":\"ack\",\"seq\":1.5}", "\"seq\" must be");
}

static void
test_message_text_escapes(void)
{
	static const uint8_t text[] = "a\"b\\c\nd\x01\x7f\xc3\xa9";
	size_t len;
	char *line = record_message("c7", false, text, sizeof(text) - 1, &len);

	CHECK_EQ_STR(line, "{\"type\":\"message\",\"client\":\"c7\",\"text\":"
	    "\"a\\\"b\\\\c\\nd\\u0001\x7f\xc3\xa9\"}\n");
	CHECK_EQ_INT(len, strlen(line));
	free(line);
}

static void
test_message_nul_survives(void)
{
	static const uint8_t text[] = { 'a', 0, 'b' };
	json_error_t jerr;
	json_t *obj, *t;
	size_t len;
	char *line = record_message("c1", false, text, 3, &len);

	obj = json_loadb(line, len, JSON_ALLOW_NUL, &jerr);
	CHECK(obj != NULL);
	t = json_object_get(obj, "text");
	CHECK_EQ_MEM(json_string_value(t), json_string_length(t), text, 3);
	json_decref(obj);
	free(line);
}

static void
test_message_binary(void)
{
	static const uint8_t data[] = { 0, 1, 2, 0xff, 0xfe };
	size_t len;
	char *line = record_message("c1", true, data, sizeof(data), &len);

	CHECK_EQ_STR(line, "{\"type\":\"message\",\"client\":\"c1\","
	    "\"binary\":\"AAEC//4=\"}\n");
	free(line);
	line = record_message("c1", true, data, 0, &len);
	CHECK_EQ_STR(line, "{\"type\":\"message\",\"client\":\"c1\",\"binary\":\"\"}\n");
	free(line);
}

static void
test_close(void)
{
	size_t len;
	char *line = record_close("c3", 1006, "", 0, &len);

	CHECK_EQ_STR(line, "{\"type\":\"close\",\"client\":\"c3\",\"code\":1006,"
	    "\"reason\":\"\"}\n");
	free(line);
}

static void
test_open_headers_joined_and_cleaned(void)
{
	static const struct record_header headers[] = {
		{ "User-Agent", 10, "x", 1 },
		{ "Cookie", 6, "a=1", 3 },
		{ "cookie", 6, "b=2", 3 },
		{ "X-Many", 6, "1", 1 },
		{ "x-many", 6, "2", 1 },
		{ "X-Bad", 5, "\xff" "ok", 3 },
	};
	static const char *const protocols[] = { "chat", "v2" };
	static const size_t protocol_lens[] = { 4, 2 };
	struct record_open o = {
		.client = "c9", .path = "/a", .path_len = 2,
		.query = "q=1", .query_len = 3, .remote = "127.0.0.1:5",
		.subprotocols = protocols, .subprotocol_lens = protocol_lens,
		.n_subprotocols = 2, .authorize = true,
		.headers = headers, .n_headers = 6,
	};
	json_error_t jerr;
	json_t *obj, *h;
	size_t len;
	char *line = record_open(&o, &len);

	CHECK(line != NULL && line[len - 1] == '\n');
	obj = json_loadb(line, len, 0, &jerr);
	CHECK(obj != NULL);
	CHECK_EQ_STR(json_string_value(json_object_get(obj, "type")), "open");
	CHECK_EQ_STR(json_string_value(json_object_get(obj, "query")), "q=1");
	CHECK(json_is_null(json_object_get(obj, "subprotocol")));
	CHECK(json_is_true(json_object_get(obj, "authorize")));
	CHECK_EQ_INT(json_array_size(json_object_get(obj, "subprotocols")), 2);
	h = json_object_get(obj, "headers");
	CHECK_EQ_STR(json_string_value(json_object_get(h, "user-agent")), "x");
	CHECK_EQ_STR(json_string_value(json_object_get(h, "cookie")), "a=1; b=2");
	CHECK_EQ_STR(json_string_value(json_object_get(h, "x-many")), "1, 2");
	CHECK_EQ_STR(json_string_value(json_object_get(h, "x-bad")),
	    "\xef\xbf\xbd" "ok");
	json_decref(obj);
	free(line);
}

static void
test_open_exact_line(void)
{
	static const struct record_header headers[] = {
		{ "Host", 4, "a\"b\\c\td\x01", 8 },
		{ "X-Cut", 5, "\xe2\x82", 2 },
		{ "x-cut", 5, "\xac", 1 },
	};
	static const char *const protocols[] = { "chat" };
	static const size_t protocol_lens[] = { 4 };
	struct record_open o = {
		.client = "c1", .path = "/p", .path_len = 2,
		.query = "", .query_len = 0, .remote = "[::1]:9",
		.subprotocol = "chat", .subprotocols = protocols,
		.subprotocol_lens = protocol_lens, .n_subprotocols = 1,
		.headers = headers, .n_headers = 3,
	};
	size_t len;
	char *line = record_open(&o, &len);

	/* A character cut by a repeated header stays two bad bytes and one
	 * good comma: the parts are not glued into a valid character. */
	CHECK_EQ_STR(line, "{\"type\":\"open\",\"client\":\"c1\","
	    "\"path\":\"/p\",\"query\":\"\",\"remote\":\"[::1]:9\","
	    "\"subprotocol\":\"chat\",\"subprotocols\":[\"chat\"],"
	    "\"authorize\":false,\"tls\":false,\"server_name\":null,"
	    "\"headers\":{\"host\":"
	    "\"a\\\"b\\\\c\\td\\u0001\",\"x-cut\":"
	    "\"\xef\xbf\xbd\xef\xbf\xbd, \xef\xbf\xbd\"}}\n");
	CHECK_EQ_INT(len, strlen(line));
	free(line);
	o.headers = NULL;
	o.n_headers = 0;
	o.n_subprotocols = 0;
	o.subprotocol = NULL;
	line = record_open(&o, &len);
	CHECK_EQ_STR(line, "{\"type\":\"open\",\"client\":\"c1\","
	    "\"path\":\"/p\",\"query\":\"\",\"remote\":\"[::1]:9\","
	    "\"subprotocol\":null,\"subprotocols\":[],"
	    "\"authorize\":false,\"tls\":false,\"server_name\":null,"
	    "\"headers\":{}}\n");
	free(line);
	/* Over TLS, with the name the client asked for. */
	o.tls = true;
	o.server_name = "chat.example.com";
	line = record_open(&o, &len);
	CHECK_EQ_STR(line, "{\"type\":\"open\",\"client\":\"c1\","
	    "\"path\":\"/p\",\"query\":\"\",\"remote\":\"[::1]:9\","
	    "\"subprotocol\":null,\"subprotocols\":[],"
	    "\"authorize\":false,\"tls\":true,"
	    "\"server_name\":\"chat.example.com\",\"headers\":{}}\n");
	free(line);
}

static void
test_close_reason_cleaned(void)
{
	size_t len;
	char *line = record_close("c2", 4000, "bye\xff\n", 5, &len);

	CHECK_EQ_STR(line, "{\"type\":\"close\",\"client\":\"c2\","
	    "\"code\":4000,\"reason\":\"bye\xef\xbf\xbd\\n\"}\n");
	free(line);
}

static void
test_decode_send(void)
{
	struct record_cmd cmd;

	CHECK_EQ_INT(decode("{\"type\":\"send\",\"client\":\"c1\",\"text\":\"hi\"}",
	    &cmd), 0);
	CHECK_EQ_INT(cmd.command, RECORD_SEND);
	CHECK_EQ_INT(cmd.n_clients, 1);
	CHECK_EQ_STR(cmd.clients[0], "c1");
	CHECK(!cmd.binary);
	CHECK_EQ_MEM(cmd.payload, cmd.payload_len, "hi", 2);
	record_cmd_free(&cmd);

	CHECK_EQ_INT(decode("{\"type\":\"send\",\"client\":[\"c1\",\"c2\"],"
	    "\"binary\":\"AAEC//4=\",\"extra\":1}", &cmd), 0);
	CHECK_EQ_INT(cmd.n_clients, 2);
	CHECK_EQ_STR(cmd.clients[1], "c2");
	CHECK(cmd.binary);
	CHECK_EQ_MEM(cmd.payload, cmd.payload_len, "\0\1\2\xff\xfe", 5);
	record_cmd_free(&cmd);
}

static void
test_decode_broadcast(void)
{
	struct record_cmd cmd;

	CHECK_EQ_INT(decode("{\"type\":\"broadcast\",\"text\":\"x\"}", &cmd), 0);
	CHECK_EQ_INT(cmd.command, RECORD_BROADCAST);
	CHECK_EQ_INT(cmd.n_except, 0);
	record_cmd_free(&cmd);
	CHECK_EQ_INT(decode("{\"type\":\"broadcast\",\"text\":\"x\",\"except\":\"c4\"}",
	    &cmd), 0);
	CHECK_EQ_INT(cmd.n_except, 1);
	CHECK_EQ_STR(cmd.except[0], "c4");
	record_cmd_free(&cmd);
	CHECK_EQ_INT(decode("{\"type\":\"broadcast\",\"binary\":\"\","
	    "\"except\":[\"c4\",\"c5\"]}", &cmd), 0);
	CHECK_EQ_INT(cmd.n_except, 2);
	CHECK(cmd.binary);
	CHECK_EQ_INT(cmd.payload_len, 0);
	record_cmd_free(&cmd);
}

static void
test_decode_close_accept_reject(void)
{
	struct record_cmd cmd;

	CHECK_EQ_INT(decode("{\"type\":\"close\",\"client\":\"c1\"}", &cmd), 0);
	CHECK_EQ_INT(cmd.code, 1000);
	CHECK_EQ_INT(cmd.reason_len, 0);
	record_cmd_free(&cmd);
	CHECK_EQ_INT(decode("{\"type\":\"close\",\"client\":\"c1\",\"code\":4000,"
	    "\"reason\":\"kicked\"}", &cmd), 0);
	CHECK_EQ_INT(cmd.code, 4000);
	CHECK_EQ_MEM(cmd.reason, cmd.reason_len, "kicked", 6);
	record_cmd_free(&cmd);
	CHECK_EQ_INT(decode("{\"type\":\"accept\",\"client\":\"c1\","
	    "\"subprotocol\":\"chat\"}", &cmd), 0);
	CHECK_EQ_INT(cmd.command, RECORD_ACCEPT);
	CHECK_EQ_STR(cmd.subprotocol, "chat");
	record_cmd_free(&cmd);
	CHECK_EQ_INT(decode("{\"type\":\"reject\",\"client\":\"c1\"}", &cmd), 0);
	CHECK_EQ_INT(cmd.status, 403);
	record_cmd_free(&cmd);
	CHECK_EQ_INT(decode("{\"type\":\"reject\",\"client\":\"c1\",\"status\":429,"
	    "\"reason\":\"slow down\"}", &cmd), 0);
	CHECK_EQ_INT(cmd.status, 429);
	record_cmd_free(&cmd);
}

static void
test_decode_rejects(void)
{
	check_rejected("", "not JSON");
	check_rejected("hello", "not JSON");
	check_rejected("[1,2]", "not a JSON object");
	check_rejected("{}", "no \"type\"");
	check_rejected("{\"type\":7}", "no \"type\"");
	check_rejected("{\"type\":\"dance\"}", "unknown type");
	check_rejected("{\"type\":\"send\",\"text\":\"x\"}", "no \"client\"");
	check_rejected("{\"type\":\"send\",\"client\":5,\"text\":\"x\"}", "client id");
	check_rejected("{\"type\":\"send\",\"client\":[\"c1\",2],\"text\":\"x\"}",
	    "client id");
	check_rejected("{\"type\":\"send\",\"client\":\"c1\\u0000c2\",\"text\":\"x\"}",
	    "holds a NUL");
	check_rejected("{\"type\":\"send\",\"client\":[\"c2\",\"c1\\u0000\"],"
	    "\"text\":\"x\"}", "holds a NUL");
	check_rejected("{\"type\":\"broadcast\",\"except\":\"c1\\u0000\",\"text\":\"x\"}",
	    "holds a NUL");
	check_rejected("{\"type\":\"send\",\"client\":\"c1\"}", "exactly one");
	check_rejected("{\"type\":\"send\",\"client\":\"c1\",\"text\":\"a\","
	    "\"binary\":\"\"}", "exactly one");
	check_rejected("{\"type\":\"send\",\"client\":\"c1\",\"text\":1}",
	    "must be a string");
	check_rejected("{\"type\":\"send\",\"client\":\"c1\",\"binary\":\"abc\"}",
	    "base64");
	check_rejected("{\"type\":\"send\",\"client\":\"c1\",\"binary\":\"a=bc\"}",
	    "base64");
	check_rejected("{\"type\":\"send\",\"client\":\"c1\",\"binary\":\" AAA\"}",
	    "base64");
	check_rejected("{\"type\":\"send\",\"client\":\"c1\",\"binary\":\"!!!!\"}",
	    "base64");
	check_rejected("{\"type\":\"close\",\"client\":\"c1\",\"code\":1005}",
	    "may not be sent");
	check_rejected("{\"type\":\"close\",\"client\":\"c1\",\"code\":999}",
	    "out of range");
	check_rejected("{\"type\":\"close\",\"client\":\"c1\",\"code\":\"x\"}",
	    "integer");
	check_rejected("{\"type\":\"reject\",\"client\":\"c1\",\"status\":200}",
	    "out of range");
	check_rejected("{\"type\":\"accept\",\"client\":\"c1\",\"subprotocol\":1}",
	    "must be a string");
	check_rejected("{\"type\":\"send\",\"type\":\"send\",\"client\":\"c1\","
	    "\"text\":\"x\"}", "not JSON");
	check_rejected("{\"type\":\"send\",\"client\":\"c1\",\"text\":\"\xff\"}",
	    "not JSON");
}

/* Decode line both ways; they must agree.  Returns which reader took it:
 * 1 the fast one, 0 jansson. */
static int
check_agree(const char *line, size_t len)
{
	struct record_cmd cmd, ref;
	char err[160] = "", ref_err[160] = "";
	int rc, ref_rc, fast;

	rc = record_decode(line, len, &cmd, err, sizeof(err));
	ref_rc = record_decode_json(line, len, &ref, ref_err, sizeof(ref_err));
	if (!record_agree(rc, err, &cmd, ref_rc, ref_err, &ref)) {
		fprintf(stderr, "readers disagree on %.*s: %d \"%s\" vs %d \"%s\"\n",
		    (int)len, line, rc, err, ref_rc, ref_err);
		check_failures_in_test++;
	}
	fast = cmd.text != NULL;
	record_cmd_free(&cmd);
	record_cmd_free(&ref);
	return fast;
}

#define AGREE(line) check_agree(line, sizeof(line) - 1)

static void
test_decode_fast_reader(void)
{
	/* The shapes backends write take the fast reader ... */
	CHECK_EQ_INT(AGREE("{\"type\":\"send\",\"client\":\"c1\",\"text\":\"hi\"}"), 1);
	CHECK_EQ_INT(AGREE(" { \"text\" : \"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\" ,"
	    "\"client\":[ \"c1\" , \"c2\" ], \"type\":\"send\" }\r"), 1);
	CHECK_EQ_INT(AGREE("{\"type\":\"send\",\"client\":\"c1\","
	    "\"text\":\"\\u00e9\\u20AC\\ud83d\\ude00\\u0000x\"}"), 1);
	CHECK_EQ_INT(AGREE("{\"type\":\"broadcast\",\"text\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\","
	    "\"except\":[],\"x\":null,\"y\":true,\"z\":-12}"), 1);
	CHECK_EQ_INT(AGREE("{\"type\":\"close\",\"client\":\"c1\",\"code\":4000,"
	    "\"reason\":\"bye\"}"), 1);
	CHECK_EQ_INT(AGREE("{\"type\":\"accept\",\"client\":\"c1\",\"subprotocol\":null}"), 1);
	/* ... and so do its mistakes that it can judge, */
	CHECK_EQ_INT(AGREE("{\"type\":\"send\",\"client\":\"c1\",\"text\":7}"), 1);
	CHECK_EQ_INT(AGREE("{\"type\":\"close\",\"client\":\"c1\",\"code\":-0}"), 1);
	CHECK_EQ_INT(AGREE("{}"), 1);
	/* while anything else goes to jansson. */
	CHECK_EQ_INT(AGREE("{\"type\":\"send\",\"client\":\"c1\",\"text\":\"x\","
	    "\"meta\":{\"a\":1}}"), 0);
	CHECK_EQ_INT(AGREE("{\"type\":\"close\",\"client\":\"c1\",\"code\":1000.0}"), 0);
	CHECK_EQ_INT(AGREE("{\"type\":\"close\",\"client\":\"c1\",\"code\":1e3}"), 0);
	CHECK_EQ_INT(AGREE("{\"type\":\"close\",\"client\":\"c1\","
	    "\"code\":1234567890123456789}"), 0);
	CHECK_EQ_INT(AGREE("{\"type\":\"close\",\"client\":\"c1\",\"code\":0123}"), 0);
	CHECK_EQ_INT(AGREE("{\"type\":\"send\",\"type\":\"send\"}"), 0);
	CHECK_EQ_INT(AGREE("{\"a\":1,\"a\":2}"), 0);
	CHECK_EQ_INT(AGREE("{\"t\\u0079pe\":\"send\"}"), 0);
	CHECK_EQ_INT(AGREE("{\"type\":\"send\",\"text\":\"\\ud800\"}"), 0);
	CHECK_EQ_INT(AGREE("{\"type\":\"send\",\"text\":\"\\udc00\\ud800\"}"), 0);
	CHECK_EQ_INT(AGREE("{\"type\":\"send\",\"text\":\"\\x\"}"), 0);
	CHECK_EQ_INT(AGREE("{\"type\":\"send\",\"text\":\"\xc3\"}"), 0);
	CHECK_EQ_INT(AGREE("{\"type\":\"send\",\"text\":\"\xed\xa0\x80\"}"), 0);
	CHECK_EQ_INT(AGREE("{\"type\":\"send\",\"text\":\"tab\there\"}"), 0);
	CHECK_EQ_INT(AGREE("{\"type\":\"send\",\"client\":[\"c1\\u0000\"]}"), 0);
	CHECK_EQ_INT(AGREE("{\"type\":\"send\",\"client\":[1]}"), 0);
	CHECK_EQ_INT(AGREE("{\"type\":\"send\"} x"), 0);
	CHECK_EQ_INT(AGREE("{\"type\":\"send\",}"), 0);
	CHECK_EQ_INT(AGREE("{\"type\":\"send\""), 0);
	CHECK_EQ_INT(AGREE("{\"type\":tru}"), 0);
	CHECK_EQ_INT(AGREE("[\"type\"]"), 0);
	CHECK_EQ_INT(AGREE("{\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,"
	    "\"g\":1,\"h\":1,\"i\":1}"), 0);
	/* Every prefix of a record: the fast reader never takes a cut one. */
	{
		static const char whole[] = "{\"type\":\"send\",\"client\":[\"c1\"],"
		    "\"text\":\"\\u00e9\\ud83d\\ude00\xc3\xa9\",\"n\":-5}";
		size_t n;

		for (n = 0; n < sizeof(whole) - 1; n++)
			CHECK_EQ_INT(check_agree(whole, n), 0);
	}
}

static void
test_line_max(void)
{
	/* A message of the limit in \u escapes fits the line limit. */
	CHECK(RECORD_LINE_MAX(1000) >= 1000 * 6 + 100);
}

int
main(void)
{
	RUN(test_hello);
	RUN(test_open_resumed);
	RUN(test_add_field);
	RUN(test_hello_ack);
	RUN(test_decode_ack);
	RUN(test_message_text_escapes);
	RUN(test_message_nul_survives);
	RUN(test_message_binary);
	RUN(test_close);
	RUN(test_open_headers_joined_and_cleaned);
	RUN(test_open_exact_line);
	RUN(test_close_reason_cleaned);
	RUN(test_decode_send);
	RUN(test_decode_broadcast);
	RUN(test_decode_close_accept_reject);
	RUN(test_decode_rejects);
	RUN(test_decode_fast_reader);
	RUN(test_line_max);
	return check_summary();
}
