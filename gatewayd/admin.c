/*
 * admin: what the admin listener serves to operators and their tools.
 *
 *   GET /healthz      200 "ok" while every client listener is up and the
 *                     daemon is not stopping, else 503: a load balancer's
 *                     check, which turns away from a draining node
 *   GET /metrics      the Prometheus text format: counters from struct
 *                     stats, gauges counted from the live state now
 *   GET /rooms        JSON: every room, its clients, backend and queues
 *   WS  /tap/ROOM     a room tap: every record between the room and its
 *                     backend, as it flows ("< " towards the backend,
 *                     "> " from it); a tap that falls behind is closed
 *   WS  /inject/ROOM  each text message is a command record carried out
 *                     in the room as if its backend had written it;
 *                     answered "ok" or "error: why"
 *
 * Per-room series go to exact rooms only, so that the number of series
 * stays bounded whatever paths clients choose.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "gatewayd.h"
#include "http_static.h"
#include "log.h"
#include "metrics.h"
#include "stats.h"

/* Output a tap may have queued before it is dropped: it must never hold
 * the room up. */
#define ADMIN_TAP_MAX (256 * 1024)

static time_t admin_started;

void
admin_init(void)
{
	admin_started = time(NULL);
}

/* Answer with a whole body of type, kept alive as the request allows. */
static void
admin_answer(struct client *c, const struct http_req *req, int status,
    const char *type, const char *body, size_t len)
{
	char head[HTTP_RESP_HEAD_MAX];
	struct http_resp r;
	char *buf;
	size_t n;

	memset(&r, 0, sizeof(r));
	r.status = status;
	r.date = time(NULL);
	r.content_type = type;
	r.content_length = len;
	r.keep_alive = http_static_keep_alive(req) &&
	    client_http_requests_left(c) > 0;
	r.keep_alive_timeout = (unsigned)(server.cfg->keepalive_timeout_ms /
	    1000);
	r.keep_alive_max = client_http_requests_left(c);
	n = http_resp_head(head, sizeof(head), &r);
	if (n == 0 || (buf = malloc(n + len)) == NULL) {
		client_respond(c, "", 0, -1, 0, false);
		return;
	}
	memcpy(buf, head, n);
	if (!c->head_request)
		memcpy(buf + n, body, len);
	client_respond(c, buf, n + (c->head_request ? 0 : len), -1, 0,
	    r.keep_alive);
	free(buf);
}

/* Process figures, the way exporters name them. */
static void
admin_process_metrics(struct metrics *m)
{
	struct rusage ru;
	long pages = 0;
	size_t fds = 0;
	struct dirent *d;
	FILE *f;
	DIR *dir;

	if ((dir = opendir("/proc/self/fd")) != NULL) {
		while ((d = readdir(dir)) != NULL)
			fds += d->d_name[0] != '.';
		closedir(dir);
		fds--;		/* the one opendir holds */
	}
	if ((f = fopen("/proc/self/statm", "r")) != NULL) {
		long size;

		if (fscanf(f, "%ld %ld", &size, &pages) != 2)
			pages = 0;
		fclose(f);
	}
	getrusage(RUSAGE_SELF, &ru);
	metrics_one(m, "process_open_fds", "gauge",
	    "Open file descriptors.", fds);
	metrics_one(m, "process_resident_memory_bytes", "gauge",
	    "Resident memory size in bytes.",
	    (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE));
	metrics_family(m, "process_cpu_seconds_total", "counter",
	    "Total user and system CPU time spent in seconds.");
	metrics_double(m, "process_cpu_seconds_total", NULL, NULL,
	    (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
	metrics_one(m, "process_start_time_seconds", "gauge",
	    "Start time of the process since unix epoch in seconds.",
	    (uint64_t)admin_started);
}

static void
admin_metrics(struct client *c, const struct http_req *req)
{
	static const char *const states[] = {
		[CLIENT_PROXY] = "proxy", [CLIENT_TLS] = "tls",
		[CLIENT_HANDSHAKE] = "handshake",
		[CLIENT_HTTP] = "http", [CLIENT_AUTHORIZING] = "authorizing",
		[CLIENT_OPEN] = "open", [CLIENT_CLOSING] = "closing",
		[CLIENT_LINGERING] = "lingering",
	};
	uint64_t by_state[CLIENT_LINGERING + 1] = { 0 };
	uint64_t held = 0, held_bytes = 0, paused = 0, up = 0, queued = 0;
	uint64_t unconfirmed = 0;
	struct metrics m = { 0 };
	struct client *k;
	struct room *r;
	char label[32];
	size_t i;

	LIST_FOREACH(k, &server.clients, entry)
		if (!k->admin)
			by_state[k->state]++;
	LIST_FOREACH(r, &server.rooms, entry) {
		if (room_is_holding(r))
			held += r->n_members + r->n_pending;
		held_bytes += room_held_bytes(r);
		paused += r->paused;
		up += r->backend != NULL;
		if (r->backend != NULL) {
			queued += backend_queued(r->backend);
			unconfirmed += r->journal.sent_bytes;
		}
	}

	metrics_one(&m, "gatewayd_connections_accepted_total", "counter",
	    "Connections accepted.", stats.connections_accepted);
	metrics_one(&m, "gatewayd_connections_refused_total", "counter",
	    "Connections answered with an HTTP error before any state (503 "
	    "at max_connections, 429 at max_connections_per_ip).",
	    stats.connections_refused);
	metrics_family(&m, "gatewayd_clients", "gauge",
	    "Connections now, by state (the admin listener's left out).");
	for (i = 0; i <= CLIENT_LINGERING; i++)
		metrics_uint(&m, "gatewayd_clients", "state", states[i],
		    by_state[i]);
	metrics_one(&m, "gatewayd_rooms", "gauge",
	    "Rooms now (exact and pattern rooms; not per-connection ones).",
	    server.n_rooms);
	metrics_one(&m, "gatewayd_rooms_paused", "gauge",
	    "Rooms whose clients are not read: their backend is behind, or "
	    "their held messages fill hold_buffer.", paused);
	metrics_one(&m, "gatewayd_backends_up", "gauge",
	    "Rooms whose backend is connected or running (per-connection "
	    "ones included).", up);
	metrics_one(&m, "gatewayd_backend_queued_bytes", "gauge",
	    "Bytes queued towards backends and not yet written.", queued);
	metrics_one(&m, "gatewayd_processes", "gauge",
	    "Backend processes spawned and not yet reaped.", server.n_processes);
	metrics_one(&m, "gatewayd_clients_opened_total", "counter",
	    "WebSocket handshakes completed (101 sent).", stats.clients_opened);
	metrics_one(&m, "gatewayd_messages_received_total", "counter",
	    "Messages received from clients (to backends).", stats.messages_in);
	metrics_one(&m, "gatewayd_messages_sent_total", "counter",
	    "Messages queued to clients (one per recipient).",
	    stats.messages_out);
	metrics_one(&m, "gatewayd_received_bytes_total", "counter",
	    "Bytes read from clients' connections.", stats.bytes_in);
	metrics_one(&m, "gatewayd_sent_bytes_total", "counter",
	    "Bytes written to clients' connections.", stats.bytes_out);
	metrics_family(&m, "gatewayd_http_errors_total", "counter",
	    "Handshakes and requests answered with an HTTP error, by "
	    "status.");
	for (i = 400; i < 600; i++) {
		if (stats.http_status[i] == 0)
			continue;
		snprintf(label, sizeof(label), "%zu", i);
		metrics_uint(&m, "gatewayd_http_errors_total", "status", label,
		    stats.http_status[i]);
	}
	metrics_family(&m, "gatewayd_closes_total", "counter",
	    "Clients closed, by the code of their close record (3xxx and "
	    "4xxx counted together).");
	for (i = 0; i < STATS_CLOSE_CODES; i++) {
		if (stats.close_codes[i] == 0)
			continue;
		if (i == STATS_CLOSE_3XXX)
			snprintf(label, sizeof(label), "3xxx");
		else if (i == STATS_CLOSE_4XXX)
			snprintf(label, sizeof(label), "4xxx");
		else if (i == STATS_CLOSE_OTHER)
			snprintf(label, sizeof(label), "other");
		else
			snprintf(label, sizeof(label), "%zu", 1000 + i);
		metrics_uint(&m, "gatewayd_closes_total", "code", label,
		    stats.close_codes[i]);
	}
	metrics_one(&m, "gatewayd_protocol_errors_total", "counter",
	    "Clients failed for breaking the protocol (1002, 1007, 1009).",
	    stats.protocol_errors);
	metrics_one(&m, "gatewayd_slow_consumer_closes_total", "counter",
	    "Clients closed with 1008 for not reading (max_client_buffer, "
	    "max_output_memory).", stats.slow_consumers);
	metrics_one(&m, "gatewayd_backend_starts_total", "counter",
	    "Backends connected or spawned.", stats.backends_started);
	metrics_one(&m, "gatewayd_backend_restarts_total", "counter",
	    "Backends started again after a failure.", stats.backend_restarts);
	metrics_one(&m, "gatewayd_backend_failures_total", "counter",
	    "Backends that were unreachable, hung up or exited.",
	    stats.backends_failed);
	metrics_one(&m, "gatewayd_clients_held", "gauge",
	    "Clients held while their room's backend is down.", held);
	metrics_one(&m, "gatewayd_held_bytes", "gauge",
	    "Bytes of messages held for a backend that is down.", held_bytes);
	metrics_one(&m, "gatewayd_held_messages_total", "counter",
	    "Messages that ever waited for a backend.", stats.records_held);
	metrics_one(&m, "gatewayd_hold_timeouts_total", "counter",
	    "Times a room's hold_timeout passed with no backend up.",
	    stats.hold_timeouts);
	metrics_one(&m, "gatewayd_authorize_timeouts_total", "counter",
	    "Clients whose backend gave no verdict within authorize_timeout.",
	    stats.authorize_timeouts);
	metrics_one(&m, "gatewayd_held_messages_discarded_total", "counter",
	    "Held records dropped by hold_timeout.", stats.records_discarded);
	metrics_one(&m, "gatewayd_backend_unconfirmed_bytes", "gauge",
	    "Bytes written to backends not yet known to be read (acked).",
	    unconfirmed);
	metrics_one(&m, "gatewayd_records_redelivered_total", "counter",
	    "Records given again to a new backend, marked redelivered.",
	    stats.records_redelivered);
	metrics_one(&m, "gatewayd_backpressure_pauses_total", "counter",
	    "Times a room stopped reading its clients.", stats.room_pauses);
	metrics_one(&m, "gatewayd_records_malformed_total", "counter",
	    "Backend lines that were not valid commands.",
	    stats.records_malformed);
	metrics_one(&m, "gatewayd_records_too_long_total", "counter",
	    "Backend lines over the longest a line may be.",
	    stats.records_too_long);
	metrics_one(&m, "gatewayd_records_dropped_total", "counter",
	    "Commands that named a client that was gone or not in the state "
	    "they need.", stats.commands_dropped);
	metrics_one(&m, "gatewayd_tls_handshakes_total", "counter",
	    "TLS handshakes completed.", stats.tls_handshakes);
	metrics_one(&m, "gatewayd_tls_resumed_total", "counter",
	    "TLS handshakes that resumed a session.", stats.tls_resumed);
	metrics_one(&m, "gatewayd_tls_failures_total", "counter",
	    "TLS handshakes that failed or timed out.", stats.tls_failures);
	metrics_one(&m, "gatewayd_output_bytes", "gauge",
	    "Bytes queued to clients now (max_output_memory bounds it).",
	    server.output_bytes);
	if (cluster_on()) {
		bool redis_up;
		size_t held_rooms, waiting;

		cluster_gauges(&redis_up, &held_rooms, &waiting);
		metrics_one(&m, "gatewayd_cluster_redis_up", "gauge",
		    "1 while this node's connections to Redis are up.",
		    redis_up);
		metrics_one(&m, "gatewayd_cluster_rooms_held", "gauge",
		    "Shared rooms whose backend this node runs.", held_rooms);
		metrics_one(&m, "gatewayd_cluster_records_waiting", "gauge",
		    "Records of this node's clients not yet in Redis.",
		    waiting);
	}
	/* Exact rooms only: their number is the configuration's. */
	metrics_family(&m, "gatewayd_room_clients", "gauge",
	    "Clients of an exact room now, open or authorizing.");
	LIST_FOREACH(r, &server.rooms, entry)
		if (!r->is_solo && !r->res->is_prefix)
			metrics_uint(&m, "gatewayd_room_clients", "room", r->path,
			    r->n_members + r->n_pending);
	metrics_family(&m, "gatewayd_room_backend_up", "gauge",
	    "1 when the exact room's backend is up.");
	LIST_FOREACH(r, &server.rooms, entry)
		if (!r->is_solo && !r->res->is_prefix)
			metrics_uint(&m, "gatewayd_room_backend_up", "room",
			    r->path, r->backend != NULL);
	admin_process_metrics(&m);
	if (m.failed) {
		metrics_free(&m);
		admin_answer(c, req, 500, "text/plain; charset=utf-8",
		    "out of memory\n", 14);
		return;
	}
	admin_answer(c, req, 200, "text/plain; version=0.0.4; charset=utf-8",
	    m.buf, m.len);
	metrics_free(&m);
}

static const char *
admin_state_name(enum client_state s)
{
	switch (s) {
	case CLIENT_PROXY:
		return "proxy";
	case CLIENT_TLS:
		return "tls";
	case CLIENT_HANDSHAKE:
		return "handshake";
	case CLIENT_HTTP:
		return "http";
	case CLIENT_AUTHORIZING:
		return "authorizing";
	case CLIENT_OPEN:
		return "open";
	case CLIENT_CLOSING:
		return "closing";
	case CLIENT_LINGERING:
		return "lingering";
	}
	return "?";
}

static json_t *
admin_room_json(const struct room *r)
{
	json_t *o = json_object(), *clients = json_array(), *b;
	const struct client *c;

	json_object_set_new(o, "path", json_string(r->path));
	json_object_set_new(o, "resource", json_string(r->res->pattern));
	json_object_set_new(o, "mode", json_string(r->is_solo ? "client" :
	    "room"));
	TAILQ_FOREACH(c, &r->members, room_entry) {
		json_array_append_new(clients, json_pack("{s:s, s:s, s:I, s:I}",
		    "id", c->name, "state", admin_state_name(c->state),
		    "bytes_in", (json_int_t)c->bytes_in,
		    "bytes_out", (json_int_t)c->bytes_out));
	}
	TAILQ_FOREACH(c, &r->pending, room_entry)
		json_array_append_new(clients, json_pack("{s:s, s:s}", "id",
		    c->name, "state", "authorizing"));
	json_object_set_new(o, "clients", clients);
	if (r->backend != NULL) {
		b = json_pack("{s:s, s:s, s:I, s:I, s:b}", "state", "up",
		    "kind", r->res->backend_kind == CFG_BACKEND_EXEC ?
		    "exec" : r->res->backend_kind == CFG_BACKEND_TCP ? "tcp" :
		    "unix",
		    "queued", (json_int_t)backend_queued(r->backend),
		    "unconfirmed", (json_int_t)r->journal.sent_bytes,
		    "paused", r->paused);
		if (r->backend->pid != 0)
			json_object_set_new(b, "pid",
			    json_integer((json_int_t)r->backend->pid));
	} else {
		b = json_pack("{s:s, s:I}", "state", room_is_holding(r) ?
		    "down, holding" : "down", "failures",
		    (json_int_t)r->failures);
	}
	json_object_set_new(o, "backend", b);
	json_object_set_new(o, "held_messages", json_integer(
	    (json_int_t)(r->backend == NULL ? r->journal.n : 0)));
	json_object_set_new(o, "held_bytes", json_integer(
	    (json_int_t)room_held_bytes(r)));
	json_object_set_new(o, "taps", json_integer((json_int_t)r->n_taps));
	return o;
}

static void
admin_rooms(struct client *c, const struct http_req *req)
{
	json_t *root = json_object(), *rooms = json_array();
	struct room *r;
	char *text;

	LIST_FOREACH(r, &server.rooms, entry)
		json_array_append_new(rooms, admin_room_json(r));
	json_object_set_new(root, "rooms", rooms);
	json_object_set_new(root, "clients", json_integer(
	    (json_int_t)(server.n_clients - server.n_admin)));
	json_object_set_new(root, "stopping", json_boolean(server.stopping));
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (text == NULL) {
		admin_answer(c, req, 500, "text/plain; charset=utf-8",
		    "out of memory\n", 14);
		return;
	}
	admin_answer(c, req, 200, "application/json", text, strlen(text));
	free(text);
}

/* The live room at path (a room's name), or NULL. */
static struct room *
admin_room(const char *path, size_t len)
{
	struct room *r;

	LIST_FOREACH(r, &server.rooms, entry)
		if (!r->is_solo && strlen(r->path) == len &&
		    memcmp(r->path, path, len) == 0)
			return r;
	return NULL;
}

/*
 * POST /upgrade: hand everything to a new process (upgrade.c), and say
 * how it went.  This connection stays with the old process, which
 * answers it and then stops.
 */
static void
admin_upgrade(struct client *c, const struct http_req *req)
{
	char body[256];
	const char *why;
	bool ok;
	int n;

	if (req->method_len != 4 || memcmp(req->method, "POST", 4) != 0) {
		admin_answer(c, req, 405, "text/plain; charset=utf-8",
		    "POST /upgrade\n", 14);
		return;
	}
	ok = upgrade_start(&why) == 0;
	if (ok)
		n = snprintf(body, sizeof(body), "upgraded: pid %d handed "
		    "over to a new process\n", (int)getpid());
	else
		n = snprintf(body, sizeof(body), "upgrade failed: %s\n", why);
	admin_answer(c, req, ok ? 200 : 500, "text/plain; charset=utf-8",
	    body, (size_t)n);
}

void
admin_serve(struct client *c, const struct http_req *req)
{
	bool upgrade = http_req_header_has_token(req, "upgrade", "websocket");
	const char *p = req->path;
	size_t n = req->path_len;
	struct room *r;
	bool tap;

	if (n == 8 && memcmp(p, "/healthz", 8) == 0 && !upgrade) {
		if (!server.stopping && listener_all_up())
			admin_answer(c, req, 200, "text/plain; charset=utf-8",
			    "ok\n", 3);
		else
			admin_answer(c, req, 503, "text/plain; charset=utf-8",
			    server.stopping ? "stopping\n" : "no listener\n",
			    server.stopping ? 9 : 12);
		return;
	}
	if (n == 8 && memcmp(p, "/metrics", 8) == 0 && !upgrade) {
		admin_metrics(c, req);
		return;
	}
	if (n == 6 && memcmp(p, "/rooms", 6) == 0 && !upgrade) {
		admin_rooms(c, req);
		return;
	}
	if (n == 8 && memcmp(p, "/upgrade", 8) == 0 && !upgrade) {
		admin_upgrade(c, req);
		return;
	}
	tap = n > 5 && memcmp(p, "/tap/", 5) == 0;
	if (tap || (n > 8 && memcmp(p, "/inject/", 8) == 0)) {
		if (!upgrade) {
			admin_answer(c, req, 426, "text/plain; charset=utf-8",
			    "a WebSocket endpoint\n", 21);
			return;
		}
		/* "/tap/chat" is the tap of the room "/chat". */
		r = admin_room(p + (tap ? 4 : 7), n - (tap ? 4 : 7));
		if (r == NULL) {
			client_admin_refuse(c, 404, "no such room");
			return;
		}
		client_admin_open(c, req, r, tap);
		return;
	}
	admin_answer(c, req, 404, "text/plain; charset=utf-8",
	    "not found: /healthz, /metrics, /rooms, /upgrade, /tap/ROOM, "
	    "/inject/ROOM\n", 73);
}

/*
 * A line between a room and its backend, to every tap of the room: dir
 * '<' towards the backend, '>' from it.  A tap that has more than
 * ADMIN_TAP_MAX unread is closed rather than let grow or slow the room.
 */
void
admin_tap(struct room *r, char dir, const void *line, size_t len,
    bool binary)
{
	struct client *c, *next;
	struct client_msg m;
	size_t n, out;
	char *text;

	while (len > 0 && ((const char *)line)[len - 1] == '\n')
		len--;
	/* "< " and the line; binary data (a binary = yes backend's) in
	 * base64. */
	n = binary ? 4 * ((len + 2) / 3) : len;
	if ((text = malloc(n + 16)) == NULL)
		return;
	out = (size_t)snprintf(text, 16, "%c %s", dir, binary ? "base64:" : "");
	if (binary) {
		out += (size_t)EVP_EncodeBlock((unsigned char *)text + out, line,
		    (int)len);
	} else {
		memcpy(text + out, line, len);
		out += len;
	}
	client_msg_init(&m, WS_OP_TEXT, (const uint8_t *)text, out);
	for (c = LIST_FIRST(&r->taps); c != NULL; c = next) {
		next = LIST_NEXT(c, tap_entry);
		if (client_queued(c) > ADMIN_TAP_MAX) {
			client_admin_drop(c, "tap too slow");
			continue;
		}
		client_msg_send(c, &m);
	}
	client_msg_done(&m);
	free(text);
}

/* A message from an inject client: a command record for its room. */
void
admin_inject(struct client *c, struct room *r, const uint8_t *data,
    size_t len)
{
	struct record_cmd cmd;
	struct client_msg m;
	char err[160], reply[200];
	int n;

	if (record_decode((const char *)data, len, &cmd, err, sizeof(err)) == 0) {
		log_info("room %s: %s injected a %s record", r->path, c->name,
		    record_command_name(cmd.command));
		admin_tap(r, '>', data, len, false);
		client_batch_begin();
		if (r->cl != NULL && cmd.command != RECORD_ACK)
			cluster_command(r, (const char *)data, len);
		else
			room_command(r, &cmd);
		client_batch_end();
		n = snprintf(reply, sizeof(reply), "ok");
	} else {
		n = snprintf(reply, sizeof(reply), "error: %s", err);
	}
	record_cmd_free(&cmd);
	client_msg_init(&m, WS_OP_TEXT, (const uint8_t *)reply, (size_t)n);
	client_msg_send(c, &m);
	client_msg_done(&m);
}
