/*
 * client: one TCP connection, from its request head to its close.
 *
 * A client reads its request head (CLIENT_HANDSHAKE), is matched to a room
 * and, when the room authorizes, waits for the backend's verdict
 * (CLIENT_AUTHORIZING).  Open clients (CLIENT_OPEN) relay messages to the
 * room's backend and take frames from it.  Whoever closes first, the
 * client ends CLIENT_LINGERING: its last bytes are written, the write side
 * is shut down and input is read and dropped until the peer closes too or
 * close_timeout passes.  Closing a socket with unread input sends a reset
 * that can destroy the close frame or error response still in flight.
 * Once both close frames have gone, though, the peer has nothing more to
 * send, and the socket is closed as soon as the last bytes are written,
 * as RFC 6455 5.5.1 asks of a server.
 *
 * A client is freed only from its own callbacks (client_free), never by
 * the room or backend code, which only change its state.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "gatewayd.h"
#include "http_req.h"
#include "log.h"
#include "proxy_header.h"
#include "stats.h"
#include "tls.h"

static void client_read_cb(evutil_socket_t fd, short events, void *arg);
static void client_write_cb(evutil_socket_t fd, short events, void *arg);
static void client_timer_cb(evutil_socket_t fd, short events, void *arg);
static void client_set_read_event(struct client *c, bool reading);
static void client_tls_handshake(struct client *c);
static void client_admin_leave(struct client *c);
static int client_send_file(struct client *c);
static void client_http_done(struct client *c);
static void client_read_head(struct client *c);
static void client_check_http_input(struct client *c);
static void client_proxy_read(struct client *c);

/* Bytes read from a client at a time, into one buffer for all of them:
 * the frame parser keeps what it needs, so an open client has no input
 * buffer (c->in holds only a request head and what comes with it). */
#define CLIENT_READ_MAX 65536

/* The zlib streams of a client that takes context over (compression_
 * no_context_takeover = no): its own, for the life of the connection. */
struct client_zlib {
	struct ws_deflate_stream deflate;
	struct ws_deflate_stream inflate;
};

/* Clients with output queued in the current batch (client_batch_begin). */
static LIST_HEAD(, client) client_flush_list =
    LIST_HEAD_INITIALIZER(client_flush_list);
static unsigned client_batch_depth;

struct client *
client_find_id(uint64_t id)
{
	return idmap_get(&server.client_index, id);
}

struct client *
client_find(const char *name)
{
	unsigned long long id;
	char *end;

	if (name[0] != 'c' || name[1] < '1' || name[1] > '9')
		return NULL;
	errno = 0;
	id = strtoull(name + 1, &end, 10);
	/* In a cluster, only this node's ids are found here. */
	if (errno != 0 || strcmp(end, cluster_suffix()) != 0)
		return NULL;
	return client_find_id(id);
}

/* The options of the client's room, or the defaults before it has one. */
static const struct cfg_room_opts *
client_opts(const struct client *c)
{
	return c->opts != NULL ? c->opts : &server.cfg->defaults;
}

#define CLIENT_REMOTE_MAX 64	/* "[v6 address]:port" */

static void
client_format_remote(char *out, size_t size, const struct sockaddr *sa)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(out, size, "%s:%u", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(out, size, "[%s]:%u", host, port);
	} else {
		snprintf(out, size, "unknown");
	}
}

/*
 * Refuse a new connection with an HTTP status, costing no state: the socket
 * buffer of a new connection has room for the answer.  Input already here
 * is read first, as closing on unread input sends a reset that can destroy
 * the answer in flight.
 */
void
client_refuse(int fd, int status, const char *body)
{
	char discard[4096], answer[256];
	size_t n;

	stats.connections_refused++;
	stats.http_status[status]++;
	while (recv(fd, discard, sizeof(discard), MSG_DONTWAIT) > 0)
		;
	n = handshake_response_error(answer, sizeof(answer), status, body);
	if (send(fd, answer, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("refused connection: %s", strerror(errno));
	shutdown(fd, SHUT_WR);
	close(fd);
}

static int
client_ip_cmp(const void *a, const void *b)
{
	const struct ip_count *x = a, *y = b;

	if (x->family != y->family)
		return x->family < y->family ? -1 : 1;
	return memcmp(x->addr, y->addr, sizeof(x->addr));
}

/* Count one more connection from addr; NULL when it has too many (and
 * refused is not NULL: else it is counted all the same). */
static struct ip_count *
client_ip_acquire(const struct sockaddr *addr, bool *refused)
{
	struct ip_count key;
	const uint8_t *a = NULL;

	memset(&key, 0, sizeof(key));
	if (addr->sa_family == AF_INET)
		a = (const uint8_t *)&((const struct sockaddr_in *)addr)->sin_addr;
	else if (addr->sa_family == AF_INET6)
		a = (const uint8_t *)&((const struct sockaddr_in6 *)addr)->sin6_addr;
	return client_ip_count(addr->sa_family, a, refused);
}

struct ip_count *
client_ip_count(int family, const uint8_t *addr, bool *refused)
{
	struct ip_count key, *ip, **found;

	if (refused != NULL)
		*refused = false;
	memset(&key, 0, sizeof(key));
	key.family = family;
	if (addr != NULL)
		memcpy(key.addr, addr, family == AF_INET ? 4 : 16);
	found = tfind(&key, &server.ip_index, client_ip_cmp);
	if (found != NULL) {
		ip = *found;
		if (refused != NULL &&
		    ip->count >= server.cfg->max_connections_per_ip) {
			*refused = true;
			return NULL;
		}
		ip->count++;
		return ip;
	}
	ip = malloc(sizeof(*ip));
	if (ip == NULL)
		return NULL;
	*ip = key;
	ip->count = 1;
	if (tsearch(ip, &server.ip_index, client_ip_cmp) == NULL) {
		free(ip);
		return NULL;
	}
	return ip;
}

void
client_ip_release(struct ip_count *ip)
{
	if (ip == NULL || --ip->count > 0)
		return;
	tdelete(ip, &server.ip_index, client_ip_cmp);
	free(ip);
}

/* The room for one struct event after a client, kept aligned. */
static size_t
client_event_size(void)
{
	static size_t size;

	if (size == 0)
		size = (event_get_struct_event_size() + _Alignof(max_align_t) - 1) &
		    ~(_Alignof(max_align_t) - 1);
	return size;
}

/* The statuses a connection may be refused with at accept, and why. */
static const char *
client_refusal_why(int status)
{
	if (server.stopping)
		return "shutting down";
	return status == 429 ? "too many connections from your address" :
	    "too many connections";
}

/*
 * A connection refused at accept on a TLS listener cannot be answered
 * before the TLS handshake; it is taken in as a client that answers its
 * first request with the status (within handshake_timeout), so that the
 * client reads the same answer as on a plain listener.  At most this many
 * at once: past them, a refused TLS connection is just closed, so that a
 * flood of them costs bounded memory and handshakes.
 */
#define CLIENT_TLS_REFUSALS_MAX 64

/* Connections to the admin listener at once: they do not count against
 * max_connections, so that a full gateway can still be looked at. */
#define CLIENT_ADMIN_MAX 64

/* The events of c's socket fd, in the room after c (event_space). */
static void
client_events_assign(struct client *c, int fd)
{
	c->read_event = (struct event *)c->event_space;
	c->write_event = (struct event *)(c->event_space + client_event_size());
	c->timer = (struct event *)(c->event_space + 2 * client_event_size());
	event_assign(c->read_event, server.base, fd, EV_READ | EV_PERSIST,
	    client_read_cb, c);
	event_assign(c->write_event, server.base, fd, EV_WRITE | EV_PERSIST,
	    client_write_cb, c);
	evtimer_assign(c->timer, server.base, client_timer_cb, c);
}

void
client_accept(int fd, const struct sockaddr *addr, bool tls, bool proxy,
    bool admin)
{
	char remote[CLIENT_REMOTE_MAX];
	struct ip_count *ip = NULL;
	struct client *c;
	bool refused;
	int refusal = 0;

	stats.connections_accepted++;
	if (admin) {
		/* The operator's view of a full or stopping gateway: not
		 * counted with the clients, bounded on its own. */
		if (server.n_admin >= CLIENT_ADMIN_MAX)
			refusal = 503;
	} else if (server.stopping || server.n_clients - server.n_refusing -
	    server.n_admin >= server.cfg->max_connections)
		refusal = 503;
	else if (server.cfg->max_connections_per_ip > 0 && !proxy) {
		/* (behind a proxy, the header's address counts:
		 * client_proxy_take) */
		ip = client_ip_acquire(addr, &refused);
		if (refused)
			refusal = 429;
	}
	if (refusal != 0 && (!tls ||
	    server.n_refusing >= CLIENT_TLS_REFUSALS_MAX)) {
		if (tls) {
			/* Unanswered: not an HTTP error. */
			stats.connections_refused++;
			close(fd);
		} else {
			client_refuse(fd, refusal, client_refusal_why(refusal));
		}
		return;
	}
	c = calloc(1, sizeof(*c) + 3 * client_event_size());
	if (c == NULL) {
		client_ip_release(ip);
		close(fd);
		return;
	}
	c->ip = ip;
	c->file_fd = -1;
	c->id = ++server.next_client_id;
	snprintf(c->name, sizeof(c->name), "c%llu%s", (unsigned long long)c->id,
	    cluster_suffix());
	/* TCP_NODELAY comes from the listener (server_listen).  The address
	 * is kept as text until the open record, which reports it. */
	c->conn.fd = fd;
	client_format_remote(remote, sizeof(remote), addr);
	c->remote = strdup(remote);
	client_events_assign(c, fd);
	c->out = evbuffer_new();
	if (c->remote == NULL || c->out == NULL ||
	    idmap_put(&server.client_index, c) == -1) {
		free(c->remote);
		if (c->out != NULL)
			evbuffer_free(c->out);
		close(fd);
		client_ip_release(ip);
		free(c);
		return;
	}
	if (tls && (c->conn.ssl = tls_new(fd)) == NULL) {
		free(c->remote);
		evbuffer_free(c->out);
		idmap_del(&server.client_index, c->id);
		close(fd);
		client_ip_release(ip);
		free(c);
		return;
	}
	LIST_INSERT_HEAD(&server.clients, c, entry);
	server.n_clients++;
	if (refusal != 0) {
		stats.connections_refused++;
		c->refusal = (short)refusal;
		server.n_refusing++;
	}
	c->state = proxy ? CLIENT_PROXY : tls ? CLIENT_TLS : CLIENT_HANDSHAKE;
	c->admin = admin;
	server.n_admin += admin;
	client_set_read_event(c, true);
	server_timer_set(c->timer, server.cfg->handshake_timeout_ms);
	log_debug("%s: connected from %s", c->name, remote);
}

/* Leave the room, telling the backend why when it knows of the client. */
static void
client_leave(struct client *c, unsigned code, const char *reason,
    size_t reason_len)
{
	struct room *r = c->room;
	size_t len;
	char *line;

	if (r == NULL)
		return;
	if (c->state == CLIENT_OPEN) {
		/* The access log's second line, and the closes by code. */
		stats.close_codes[stats_close_index(code)]++;
		log_info("%s: closed %u after %.1f s, %llu bytes in, %llu out",
		    c->name, code, (double)(server_now_ms() - c->opened_ms) /
		    1000, (unsigned long long)c->bytes_in,
		    (unsigned long long)c->bytes_out);
	}
	if (c->announced) {
		line = record_close(c->name, code, reason, reason_len, &len);
		if (line != NULL)
			room_write(r, c, false, line, len);
		c->announced = false;
	}
	room_remove(r, c);
}

static void
client_free_pending(struct client *c)
{
	size_t i;

	if (c->pending == NULL)
		return;
	for (i = 0; i < c->pending->n_subprotocols; i++)
		free(c->pending->subprotocols[i]);
	free(c->pending);
	c->pending = NULL;
}

static void
client_free(struct client *c)
{
	client_admin_leave(c);
	client_leave(c, WS_CLOSE_ABNORMAL, "", 0);
	client_free_pending(c);
	free(c->open_line);
	free(c->remote);
	if (c->file_fd != -1)
		close(c->file_fd);
	if (c->zlib != NULL) {
		ws_deflate_stream_free(&c->zlib->deflate);
		ws_deflate_stream_free(&c->zlib->inflate);
		free(c->zlib);
	}
	client_ip_release(c->ip);
	idmap_del(&server.client_index, c->id);
	LIST_REMOVE(c, entry);
	if (c->flush_listed)
		LIST_REMOVE(c, flush_entry);
	server.output_bytes -= c->out_counted;
	server.n_clients--;
	server.n_admin -= c->admin;
	server.n_refusing -= c->refusal != 0;
	stats.clients_closed++;
	event_del(c->timer);
	event_del(c->read_event);
	event_del(c->write_event);
	evbuffer_free(c->out);
	if (c->in != NULL)
		evbuffer_free(c->in);
	conn_close(&c->conn);
	ws_frame_parser_free(&c->parser);
	log_debug("%s: gone", c->name);
	free(c);
	server_check_stopped();
}

/*
 * Arm read_event for what the client needs now: reading its socket while
 * c->reading, and a run of client_read_cb at once for work that waits on
 * it (a client to free; input that waited for the verdict, which a paused
 * room leaves waiting).  This is done in one place because event_del also
 * cancels a pending event_active, and event_add does not watch the socket
 * of an event that is active.
 */
static void
client_update_read_event(struct client *c)
{
	event_del(c->read_event);
	if (c->reading)
		event_add(c->read_event, NULL);
	if (c->gone || (c->reading && ((c->in != NULL &&
	    (c->state == CLIENT_OPEN || c->state == CLIENT_CLOSING)) ||
	    conn_pending(&c->conn))))
		event_active(c->read_event, EV_READ, 0);
}

static void
client_set_read_event(struct client *c, bool reading)
{
	if (reading == c->reading)
		return;
	c->reading = reading;
	client_update_read_event(c);
}

/*
 * Keep server.output_bytes, the output queued to all clients, in step
 * with c's queue: called wherever the queue grows or shrinks.  Past
 * max_output_memory, the clients with the most queued are closed (at the
 * end of the loop turn, not in the middle of a broadcast).
 */
static void
client_account(struct client *c)
{
	size_t len = evbuffer_get_length(c->out);

	server.output_bytes += len;
	server.output_bytes -= c->out_counted;
	c->out_counted = len;
	if (server.output_bytes > server.output_peak)
		server.output_peak = server.output_bytes;
	if (server.output_bytes > server.cfg->max_output_memory)
		server_output_over();
}

/* The connection is over: client_read_cb frees the client, as whoever
 * found out may still hold it. */
static void
client_end(struct client *c)
{
	c->gone = true;
	evbuffer_drain(c->out, evbuffer_get_length(c->out));
	client_account(c);
	client_update_read_event(c);
}

/* All output is written: a client that exchanged close frames is done
 * with, and so is a closing one whose peer has closed already; another
 * lingering client shuts its write side. */
static void
client_output_drained(struct client *c)
{
	if (c->close_exchanged || c->peer_closed)
		client_end(c);
	else if (c->state == CLIENT_LINGERING)
		conn_shutdown(&c->conn);
}

/* Write the output now, as much as the socket takes; write_event takes
 * over the rest. */
static void
client_flush(struct client *c)
{
	size_t before;

	if (c->gone || event_pending(c->write_event, EV_WRITE, NULL))
		return;
	before = evbuffer_get_length(c->out);
	if (before == 0) {
		if (c->state != CLIENT_HTTP)
			return;
	} else if (conn_write(&c->conn, c->out, c->close_exchanged) == -1 &&
	    errno != EAGAIN && errno != EINTR) {
		log_debug("%s: write failed: %s", c->name, strerror(errno));
		client_end(c);
		return;
	}
	c->bytes_out += before - evbuffer_get_length(c->out);
	stats.bytes_out += before - evbuffer_get_length(c->out);
	client_account(c);
	if (c->room != NULL && c->room->is_solo)
		room_solo_drained(c->room);
	if (evbuffer_get_length(c->out) > 0) {
		event_add(c->write_event, NULL);
		return;
	}
	if (c->state == CLIENT_HTTP) {
		/* Progress: the send timeout starts again. */
		server_timer_set(c->timer, server.cfg->handshake_timeout_ms);
		switch (c->file_fd != -1 ? client_send_file(c) : 1) {
		case 0:
			event_add(c->write_event, NULL);
			return;
		case -1:
			log_debug("%s: sending a file failed: %s", c->name,
			    strerror(errno));
			client_end(c);
			return;
		}
		client_http_done(c);
		return;
	}
	client_output_drained(c);
}

size_t
client_queued(const struct client *c)
{
	return evbuffer_get_length(c->out);
}

/* Output was queued: write it now, or at the end of the batch. */
static void
client_output_added(struct client *c)
{
	client_account(c);
	if (client_batch_depth == 0) {
		client_flush(c);
		return;
	}
	if (!c->flush_listed) {
		c->flush_listed = true;
		LIST_INSERT_HEAD(&client_flush_list, c, flush_entry);
	}
	/* A long batch (many broadcasts read at once) writes as it goes
	 * once a client has a socket's worth: its queue stays small. */
	if (evbuffer_get_length(c->out) >= CLIENT_BATCH_WRITE)
		client_flush(c);
}

void
client_batch_begin(void)
{
	client_batch_depth++;
}

void
client_batch_end(void)
{
	struct client *c;

	if (--client_batch_depth > 0)
		return;
	while ((c = LIST_FIRST(&client_flush_list)) != NULL) {
		LIST_REMOVE(c, flush_entry);
		c->flush_listed = false;
		client_flush(c);
	}
}

static void
client_drop_input(struct client *c)
{
	if (c->in != NULL) {
		evbuffer_free(c->in);
		c->in = NULL;
	}
}

/* Stop talking: send what is queued, shut the write side down, then drop
 * input until the peer closes or close_timeout passes. */
static void
client_linger(struct client *c)
{
	c->state = CLIENT_LINGERING;
	server_timer_set(c->timer, client_opts(c)->close_timeout_ms);
	client_drop_input(c);
	client_set_read_event(c, true);
	if (evbuffer_get_length(c->out) == 0)
		client_output_drained(c);
	/* else once the output is written */
}

/* Answer the handshake with an HTTP error and linger. */
static void
client_http_error(struct client *c, int status, const char *body)
{
	char buf[1024], *end;
	size_t n;

	stats.handshakes_failed++;
	if (status >= 400 && status <= 599)
		stats.http_status[status]++;
	log_debug("%s: %d %s", c->name, status, body);
	n = handshake_response_error(buf, sizeof(buf), status, body);
	if (n == 0) {
		/* A long body (a backend's reject reason) is cut, at a
		 * character's end, to what the response holds. */
		char cut[sizeof(buf) / 2];
		size_t len = utf8_truncate((const uint8_t *)body, strlen(body),
		    sizeof(cut) - 1);

		memcpy(cut, body, len);
		cut[len] = '\0';
		n = handshake_response_error(buf, sizeof(buf), status, cut);
	}
	/* An answer to HEAD has no body (RFC 9110 9.3.2). */
	if (c->head_request && (end = memmem(buf, n, "\r\n\r\n", 4)) != NULL)
		n = (size_t)(end - buf) + 4;
	if (evbuffer_add(c->out, buf, n) == 0)
		client_output_added(c);
	client_linger(c);
}

/* Queue a frame, copying its payload: control frames (close, ping, pong)
 * and small messages.  Returns 0, or -1 when out of memory. */
static int
client_queue_frame(struct client *c, enum ws_frame_opcode opcode,
    const uint8_t *payload, size_t len)
{
	uint8_t header[WS_FRAME_MAX_HEADER];
	size_t n;

	n = ws_frame_header_encode(header, opcode, true, len, NULL);
	if (evbuffer_add(c->out, header, n) == -1 ||
	    (len > 0 && evbuffer_add(c->out, payload, len) == -1))
		return -1;
	client_output_added(c);
	return 0;
}

/*
 * A client that does not read what its room sends would make the gateway
 * hold ever more for it.  When more than max_client_buffer bytes still
 * wait for it as another frame comes, it is closed instead, and nobody
 * else waits for it; so it holds at most that plus one message.  (A
 * message bigger than the limit is no sign of a slow client: what counts
 * is what it has not read yet.)  The close frame queues behind what it has
 * not read, and close_timeout bounds how long that stays.  Returns -1 when
 * the client was closed.
 */
static int
client_check_backlog(struct client *c)
{
	static const char why[] = "slow consumer";

	if (evbuffer_get_length(c->out) <= client_opts(c)->max_client_buffer)
		return 0;
	stats.slow_consumers++;
	log_info("%s: closing a slow consumer: more than %llu bytes unread",
	    c->name, (unsigned long long)client_opts(c)->max_client_buffer);
	client_close(c, WS_CLOSE_POLICY, why, sizeof(why) - 1);
	return -1;
}

static void
client_send_close(struct client *c, unsigned code, const char *reason,
    size_t reason_len)
{
	uint8_t payload[WS_FRAME_MAX_CONTROL];
	size_t n;

	n = ws_frame_close_payload(payload, (uint16_t)code, reason, reason_len);
	client_queue_frame(c, WS_OP_CLOSE, payload, n);
}

static void
shared_frame_cleanup(const void *data, size_t len, void *arg)
{
	shared_frame_release(arg);
}

/* A frame of payload[0..len) to share between output buffers; rsv1 marks
 * a compressed payload. */
static struct shared_frame *
shared_frame_new(enum ws_frame_opcode opcode, bool rsv1, const uint8_t *payload,
    size_t len)
{
	struct shared_frame *f;
	size_t n;

	f = malloc(sizeof(*f) + WS_FRAME_MAX_HEADER + len);
	if (f == NULL)
		return NULL;
	n = ws_frame_header_encode_rsv1(f->data, opcode, true, rsv1, len, NULL);
	memcpy(f->data + n, payload, len);
	f->len = n + len;
	f->refs = 1;
	return f;
}

void
shared_frame_release(struct shared_frame *f)
{
	if (f != NULL && --f->refs == 0)
		free(f);
}

/* Queue a shared frame to c. */
static void
client_send_frame(struct client *c, struct shared_frame *f)
{
	/* A small frame is cheaper copied, into the free end of the last
	 * chain, than referenced through a chain of its own per member;
	 * a large one is shared, so that N members cost one copy.  So is a
	 * middling one for a member that is behind: its copies would pile
	 * up, where a reference costs a chain's header. */
	if (f->len <= CLIENT_COPY_MAX && (f->len < CLIENT_SHARE_MIN ||
	    evbuffer_get_length(c->out) < CLIENT_BEHIND)) {
		if (evbuffer_add(c->out, f->data, f->len) == -1)
			return;
	} else {
		f->refs++;
		if (evbuffer_add_reference(c->out, f->data, f->len,
		    shared_frame_cleanup, f) == -1) {
			f->refs--;
			return;
		}
	}
	stats.messages_out += !c->admin;	/* a tap's lines are not */
	client_output_added(c);
}

/* Queue a frame whose payload is copied (it is c's alone). */
static void
client_send_copy(struct client *c, enum ws_frame_opcode opcode, bool rsv1,
    const uint8_t *payload, size_t len)
{
	uint8_t header[WS_FRAME_MAX_HEADER];
	size_t n;

	n = ws_frame_header_encode_rsv1(header, opcode, true, rsv1, len, NULL);
	if (evbuffer_add(c->out, header, n) == -1 ||
	    (len > 0 && evbuffer_add(c->out, payload, len) == -1))
		return;
	stats.messages_out += !c->admin;
	client_output_added(c);
}

/* permessage-deflate */

/* The streams shared by every client without context takeover: reset
 * after each message, so that an idle connection holds no zlib state.
 * Compressors by level and window, one decompressor (a 2^15 window takes
 * any client's).  One loop: no locking. */
static struct ws_deflate_stream *client_deflaters[10][16];
static struct ws_deflate_stream client_inflater;
/* Output of the codec, reused message after message. */
static struct ws_deflate_buf client_zbuf;

/* Give back a scratch buffer that a big message grew. */
static void
client_zbuf_done(void)
{
	if (client_zbuf.cap > 65536)
		ws_deflate_buf_free(&client_zbuf);
	client_zbuf.len = 0;
}

/* c's compressor, or NULL (out of memory). */
static struct ws_deflate_stream *
client_deflater(struct client *c)
{
	unsigned level = (unsigned)c->opts->compression_level;
	unsigned bits = c->deflate_bits;
	struct ws_deflate_stream **shared;

	if (!(c->deflate & CLIENT_DEFLATE_SERVER_RESET)) {
		if (c->zlib == NULL)
			return NULL;
		if (!c->zlib->deflate.ready &&
		    ws_deflate_stream_init_deflate(&c->zlib->deflate, (int)level,
		    bits) == -1)
			return NULL;
		return &c->zlib->deflate;
	}
	shared = &client_deflaters[level][bits];
	if (*shared == NULL && (*shared = calloc(1, sizeof(**shared))) == NULL)
		return NULL;
	if (!(*shared)->ready &&
	    ws_deflate_stream_init_deflate(*shared, (int)level, bits) == -1)
		return NULL;
	return *shared;
}

/* c's decompressor, or NULL (out of memory). */
static struct ws_deflate_stream *
client_inflater_of(struct client *c)
{
	struct ws_deflate_stream *s = (c->deflate & CLIENT_DEFLATE_CLIENT_RESET) ?
	    &client_inflater : c->zlib != NULL ? &c->zlib->inflate : NULL;

	if (s != NULL && !s->ready && ws_deflate_stream_init_inflate(s,
	    s == &client_inflater ? 15 : c->inflate_bits) == -1)
		return NULL;
	return s;
}

void
client_deflate_free(void)
{
	size_t i, j;

	for (i = 0; i < 10; i++) {
		for (j = 0; j < 16; j++) {
			if (client_deflaters[i][j] != NULL) {
				ws_deflate_stream_free(client_deflaters[i][j]);
				free(client_deflaters[i][j]);
				client_deflaters[i][j] = NULL;
			}
		}
	}
	ws_deflate_stream_free(&client_inflater);
	ws_deflate_buf_free(&client_zbuf);
}

void
client_msg_init(struct client_msg *m, enum ws_frame_opcode opcode,
    const uint8_t *payload, size_t len)
{
	memset(m, 0, sizeof(*m));
	m->opcode = opcode;
	m->payload = payload;
	m->len = len;
}

void
client_msg_done(struct client_msg *m)
{
	size_t i;

	shared_frame_release(m->plain);
	for (i = 0; i < sizeof(m->deflated) / sizeof(m->deflated[0]); i++)
		shared_frame_release(m->deflated[i]);
	memset(m, 0, sizeof(*m));
}

/*
 * Send m compressed to c, which agreed to permessage-deflate: the frame
 * made once for every client whose compressor is shared (so a broadcast
 * is compressed once), or a frame of its own.  Returns -1 when it could
 * not be compressed: it goes plain then.
 */
static int
client_msg_send_deflated(struct client *c, struct client_msg *m)
{
	struct ws_deflate_stream *z;
	struct shared_frame **f;
	bool shared = c->deflate & CLIENT_DEFLATE_SERVER_RESET;

	f = &m->deflated[c->deflate_bits];
	if (shared && *f != NULL) {
		client_send_frame(c, *f);
		return 0;
	}
	if ((z = client_deflater(c)) == NULL ||
	    ws_deflate_compress(z, m->payload, m->len, shared,
	    &client_zbuf) != 0) {
		client_zbuf_done();
		if (!shared) {
			/* Its history is lost with the error: so is it. */
			client_close(c, WS_CLOSE_INTERNAL_ERROR,
			    "compression failed", 18);
			return 0;
		}
		return -1;
	}
	if (shared) {
		*f = shared_frame_new(m->opcode, true, client_zbuf.data,
		    client_zbuf.len);
		if (*f != NULL)
			client_send_frame(c, *f);
	} else {
		client_send_copy(c, m->opcode, true, client_zbuf.data,
		    client_zbuf.len);
	}
	client_zbuf_done();
	return 0;
}

void
client_msg_send(struct client *c, struct client_msg *m)
{
	if (c->state != CLIENT_OPEN || client_check_backlog(c) == -1)
		return;
	if ((c->deflate & CLIENT_DEFLATE_ON) &&
	    m->len >= c->opts->compression_min_size &&
	    client_msg_send_deflated(c, m) == 0)
		return;
	/* Plain.  A small message is copied straight into c's buffer: no
	 * shared frame is made for it unless a member is behind. */
	if (m->len + WS_FRAME_MAX_HEADER <= CLIENT_COPY_MAX &&
	    (m->len < CLIENT_SHARE_MIN ||
	    evbuffer_get_length(c->out) < CLIENT_BEHIND)) {
		client_send_copy(c, m->opcode, false, m->payload, m->len);
		return;
	}
	if (m->plain == NULL &&
	    (m->plain = shared_frame_new(m->opcode, false, m->payload,
	    m->len)) == NULL)
		return;
	client_send_frame(c, m->plain);
}

void
client_set_reading(struct client *c, bool reading)
{
	uint64_t now = server_now_ms();

	if (c->state != CLIENT_OPEN || reading == c->reading)
		return;
	client_set_read_event(c, reading);
	/* Not read, it is looked at once a second (client_liveness), and
	 * the time it is not read does not count as idleness: the gateway
	 * is the one not listening. */
	if (!reading) {
		c->unread_since_ms = now;
		server_timer_set(c->timer, 1000);
	} else {
		c->last_message_ms += now - c->unread_since_ms;
	}
}

void
client_close(struct client *c, unsigned code, const char *reason,
    size_t reason_len)
{
	if (c->state != CLIENT_OPEN)
		return;
	client_admin_leave(c);
	client_send_close(c, code, reason, reason_len);
	client_leave(c, code, reason, reason_len);
	c->state = CLIENT_CLOSING;
	/* Out of its room, paused or not: the peer's close is read. */
	client_set_read_event(c, true);
	server_timer_set(c->timer, client_opts(c)->close_timeout_ms);
}

/* Fail the connection on a protocol error (RFC 6455 7.1.7). */
static void
client_fail(struct client *c, unsigned code, const char *why)
{
	stats.protocol_errors++;
	log_debug("%s: failing with %u: %s", c->name, code, why);
	if (c->state == CLIENT_OPEN) {
		client_send_close(c, code, why, strlen(why));
		client_leave(c, code, why, strlen(why));
	}
	client_linger(c);
}

/*
 * A compressed message: inflate it, at most max_message_size of it (a zip
 * bomb costs no more), check text as UTF-8 only now, and pass it on.
 * Returns -1 when the client was failed.
 */
static int
client_inflate_message(struct client *c, const struct ws_frame_event *ev)
{
	struct ws_deflate_stream *z = client_inflater_of(c);
	int r;

	if (z == NULL) {
		client_fail(c, WS_CLOSE_INTERNAL_ERROR, "out of memory");
		return -1;
	}
	r = ws_deflate_inflate(z, ev->data, ev->len,
	    (c->deflate & CLIENT_DEFLATE_CLIENT_RESET) != 0,
	    c->opts->max_message_size, &client_zbuf);
	if (r == 0 && ev->opcode == WS_OP_TEXT &&
	    !utf8_valid(client_zbuf.data, client_zbuf.len))
		r = WS_DEFLATE_BAD_DATA + 100;	/* not UTF-8: 1007 too */
	if (r != 0) {
		client_zbuf_done();
		client_fail(c, r == WS_DEFLATE_TOO_BIG ? WS_CLOSE_TOO_BIG :
		    r == WS_DEFLATE_ERROR ? WS_CLOSE_INTERNAL_ERROR :
		    WS_CLOSE_INVALID_DATA, r == WS_DEFLATE_TOO_BIG ?
		    "message too big" : r == WS_DEFLATE_BAD_DATA ?
		    "invalid compressed data" : r == WS_DEFLATE_ERROR ?
		    "inflate failed" : "invalid UTF-8 text");
		return -1;
	}
	stats.messages_in++;
	c->last_message_ms = c->last_frame_ms;
	r = room_write_message(c->room, c, ev->opcode == WS_OP_BINARY,
	    client_zbuf.data, client_zbuf.len);
	client_zbuf_done();
	if (r == -1) {
		client_fail(c, WS_CLOSE_INTERNAL_ERROR, "out of memory");
		return -1;
	}
	return 0;
}

/* Handle one parser event.  Returns -1 when the client stops reading. */
static int
client_frame_event(struct client *c, const struct ws_frame_event *ev)
{
	switch (ev->type) {
	case WS_EV_NONE:
		return 0;
	case WS_EV_MESSAGE:
		if (c->state != CLIENT_OPEN)
			return 0;	/* after our close: discarded */
		if (c->admin) {
			/* A tap's messages are not read; an inject's are
			 * commands for its room. */
			if (!c->tap && c->admin_room != NULL)
				admin_inject(c, c->admin_room, ev->data,
				    ev->len);
			return 0;
		}
		if (ev->compressed)
			return client_inflate_message(c, ev);
		if (room_write_message(c->room, c, ev->opcode == WS_OP_BINARY,
		    ev->data, ev->len) == -1) {
			client_fail(c, WS_CLOSE_INTERNAL_ERROR, "out of memory");
			return -1;
		}
		stats.messages_in++;
		c->last_message_ms = c->last_frame_ms;
		return 0;
	case WS_EV_PING:
		if (c->state == CLIENT_OPEN) {
			/* A client pinging without reading is slow too. */
			if (client_check_backlog(c) == -1)
				return 0;
			client_queue_frame(c, WS_OP_PONG, ev->data, ev->len);
		}
		return 0;
	case WS_EV_PONG:
		return 0;
	case WS_EV_CLOSE:
		if (c->state == CLIENT_OPEN) {
			/* Echo the code (RFC 6455 5.5.1); none gets none. */
			client_send_close(c, ev->code == WS_CLOSE_NO_STATUS ?
			    0 : ev->code, "", 0);
			client_leave(c, ev->code, (const char *)ev->data, ev->len);
		}
		c->close_exchanged = true;
		client_linger(c);
		return -1;
	case WS_EV_ERROR:
		client_fail(c, ev->code, ev->error);
		return -1;
	}
	return 0;
}

/* Whether the peer of a client that is not read has closed or reset the
 * connection. */
static bool
client_peer_gone(const struct client *c)
{
	struct tcp_info ti;
	socklen_t len = sizeof(int);
	int err = 0;

	if (getsockopt(c->conn.fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
	    err != 0)
		return true;
	len = sizeof(ti);
	return getsockopt(c->conn.fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
	    (ti.tcpi_state == TCP_CLOSE_WAIT || ti.tcpi_state == TCP_CLOSE);
}

/*
 * An open client's timer: ping a client silent for ping_interval, drop one
 * that then stays silent for pong_timeout, close one that sent no message
 * for idle_timeout.  Traffic only updates timestamps; the timer checks
 * them when it fires and sets itself for the next deadline.
 */
static void
client_liveness(struct client *c)
{
	static const char idle[] = "idle timeout";
	const struct cfg_room_opts *o = client_opts(c);
	uint64_t now = server_now_ms(), next = UINT64_MAX, due;

	/* A client the room does not read cannot be heard answering; but
	 * it may have gone, which the socket tells (and nothing else would
	 * while it is not read): looked at once a second. */
	if (!c->reading) {
		if (client_peer_gone(c)) {
			log_debug("%s: gone while not read", c->name);
			client_free(c);
			return;
		}
		c->last_frame_ms = now;
		c->ping_sent = false;
		next = now + 1000;
	}
	if (o->idle_timeout_ms > 0) {
		due = c->last_message_ms + o->idle_timeout_ms;
		if (!c->reading)
			due += now - c->unread_since_ms;
		if (now >= due) {
			log_debug("%s: idle for %llu ms", c->name,
			    (unsigned long long)o->idle_timeout_ms);
			client_close(c, WS_CLOSE_GOING_AWAY, idle, sizeof(idle) - 1);
			return;
		}
		if (due < next)
			next = due;
	}
	if (o->ping_interval_ms > 0) {
		if (c->ping_sent) {
			due = c->ping_sent_ms + o->pong_timeout_ms;
			if (now >= due) {
				log_info("%s: no answer to a ping in %llu ms: "
				    "dropping it", c->name,
				    (unsigned long long)o->pong_timeout_ms);
				client_leave(c, WS_CLOSE_ABNORMAL, "pong timeout",
				    strlen("pong timeout"));
				client_free(c);
				return;
			}
		} else {
			due = c->last_frame_ms + o->ping_interval_ms;
			if (now >= due) {
				client_queue_frame(c, WS_OP_PING, NULL, 0);
				c->ping_sent = true;
				c->ping_sent_ms = now;
				due = now + o->pong_timeout_ms;
			}
		}
		if (due < next)
			next = due;
	}
	if (next != UINT64_MAX)
		server_timer_set(c->timer, next - now);
}

/* The client is open: start its liveness timer. */
static void
client_opened(struct client *c)
{
	c->state = CLIENT_OPEN;
	c->opened_ms = c->last_frame_ms = c->last_message_ms = server_now_ms();
	evtimer_del(c->timer);
	client_liveness(c);
}

/* Parse and act on the frames in data; the parser keeps partial ones. */
static void
client_read_frames(struct client *c, const uint8_t *data, size_t len)
{
	struct ws_frame_event ev;
	size_t used;

	/* Anything heard from the client answers a ping; the timer, set
	 * for the pong's deadline, is set again for the next ping. */
	c->last_frame_ms = server_now_ms();
	if (c->ping_sent && c->state == CLIENT_OPEN) {
		c->ping_sent = false;
		client_liveness(c);
	}
	while (len > 0) {
		used = ws_frame_parse(&c->parser, data, len, &ev);
		data += used;
		len -= used;
		if (client_frame_event(c, &ev) == -1)
			return;
	}
	/* An empty call lets the parser release a large message buffer now
	 * rather than when the client next sends something. */
	ws_frame_parse(&c->parser, NULL, 0, &ev);
}

/* Frames that arrived with the request head or during authorization. */
static void
client_read_buffered(struct client *c)
{
	struct evbuffer *in = c->in;
	size_t len = evbuffer_get_length(in);

	c->in = NULL;		/* a close on the way drops input */
	client_read_frames(c, evbuffer_pullup(in, (ev_ssize_t)len), len);
	evbuffer_free(in);
}

static void
client_write_101(struct client *c, const char *accept, const char *subprotocol,
    const char *extensions)
{
	size_t len = subprotocol != NULL ? strlen(subprotocol) : 0;
	/* A subprotocol may be long; extensions are at most
	 * WS_DEFLATE_RESPONSE_SIZE. */
	size_t size = 256 + WS_DEFLATE_RESPONSE_SIZE + len;
	struct evbuffer_iovec vec;
	struct handshake hs;

	/* Written straight into the output buffer. */
	memcpy(hs.accept, accept, sizeof(hs.accept));
	hs.extensions = extensions != NULL && extensions[0] != '\0' ?
	    extensions : NULL;
	if (evbuffer_reserve_space(c->out, (ev_ssize_t)size, &vec, 1) == 1) {
		vec.iov_len = handshake_response_101(vec.iov_base, size, &hs,
		    subprotocol, len);
		if (evbuffer_commit_space(c->out, &vec, 1) == 0 &&
		    vec.iov_len > 0)
			client_output_added(c);
	}
	stats.clients_opened++;
}

/*
 * permessage-deflate: agree to the client's first acceptable offer when
 * the room compresses, writing the 101's Sec-WebSocket-Extensions value
 * into ext (WS_DEFLATE_RESPONSE_SIZE bytes; "" for none).  Returns -1 for
 * a header that breaks the grammar (a bad handshake: 400).
 */
static int
client_negotiate_deflate(struct client *c, const struct http_req *req,
    const struct cfg_room_opts *o, char *ext)
{
	const char *values[HTTP_REQ_HEADERS_MAX];
	size_t lens[HTTP_REQ_HEADERS_MAX], i, n = 0;
	struct ws_deflate_policy pol;
	struct ws_deflate_params params;
	int r;

	ext[0] = '\0';
	if (!o->compression)
		return 0;
	for (i = 0; i < req->n_headers; i++) {
		if (http_req_name_eq(req->headers[i].name,
		    req->headers[i].name_len, "sec-websocket-extensions")) {
			values[n] = req->headers[i].value;
			lens[n++] = req->headers[i].value_len;
		}
	}
	if (n == 0)
		return 0;
	memset(&pol, 0, sizeof(pol));
	pol.level = (int)o->compression_level;
	pol.window_bits = (unsigned)o->compression_window_bits;
	pol.context_takeover = !o->compression_no_context_takeover;
	r = ws_deflate_negotiate(&pol, values, lens, n, &params, ext,
	    WS_DEFLATE_RESPONSE_SIZE);
	if (r != 1)
		return r;
	if (!params.server_no_context_takeover ||
	    !params.client_no_context_takeover) {
		/* Streams of its own, for the life of the connection. */
		if ((c->zlib = calloc(1, sizeof(*c->zlib))) == NULL) {
			ext[0] = '\0';
			return 0;
		}
	}
	c->deflate = CLIENT_DEFLATE_ON |
	    (params.server_no_context_takeover ? CLIENT_DEFLATE_SERVER_RESET : 0) |
	    (params.client_no_context_takeover ? CLIENT_DEFLATE_CLIENT_RESET : 0);
	/* zlib cannot deflate with a window of 8: 9 is as safe for a peer
	 * that keeps 256 bytes (ws_deflate.h). */
	c->deflate_bits = (uint8_t)(params.server_max_window_bits < 9 ? 9 :
	    params.server_max_window_bits);
	c->inflate_bits = (uint8_t)params.client_max_window_bits;
	ws_frame_parser_allow_rsv1(&c->parser, true);
	return 0;
}

/* The client's own copy of the subprotocol the room chose (one it
 * offered), so that a reload freeing the room's options frees nothing of
 * the client's. */
static const char *
client_pending_offer(const struct client *c, const char *subprotocol)
{
	size_t i;

	for (i = 0; subprotocol != NULL && i < c->pending->n_subprotocols; i++)
		if (strcmp(c->pending->subprotocols[i], subprotocol) == 0)
			return c->pending->subprotocols[i];
	return NULL;
}

/* Remember what an authorizing client needs for its 101 later. */
static int
client_keep_pending(struct client *c, const struct handshake *hs,
    const char *extensions)
{
	size_t i;

	c->pending = calloc(1, sizeof(*c->pending) +
	    hs->n_subprotocols * sizeof(char *));
	if (c->pending == NULL)
		return -1;
	memcpy(c->pending->accept, hs->accept, sizeof(hs->accept));
	snprintf(c->pending->extensions, sizeof(c->pending->extensions), "%s",
	    extensions);
	for (i = 0; i < hs->n_subprotocols; i++) {
		c->pending->subprotocols[i] = strndup(hs->subprotocols[i],
		    hs->subprotocol_lens[i]);
		if (c->pending->subprotocols[i] == NULL)
			return -1;
		c->pending->n_subprotocols++;
	}
	return 0;
}

/* Write c's open record into c->open_line.  Returns 0 or -1 (out of
 * memory). */
static int
client_make_open(struct client *c, const struct http_req *req,
    const struct handshake *hs, const char *subprotocol)
{
	struct record_header headers[HTTP_REQ_HEADERS_MAX];
	struct record_open open;
	size_t i;

	for (i = 0; i < req->n_headers; i++) {
		headers[i].name = req->headers[i].name;
		headers[i].name_len = req->headers[i].name_len;
		headers[i].value = req->headers[i].value;
		headers[i].value_len = req->headers[i].value_len;
	}
	memset(&open, 0, sizeof(open));
	open.client = c->name;
	open.path = req->path;
	open.path_len = req->path_len;
	open.query = req->query;
	open.query_len = req->query_len;
	open.remote = c->remote;
	open.subprotocol = subprotocol;
	open.subprotocols = hs->subprotocols;
	open.subprotocol_lens = hs->subprotocol_lens;
	open.n_subprotocols = hs->n_subprotocols;
	open.authorize = c->opts->authorize;
	open.tls = c->conn.ssl != NULL;
	open.server_name = c->conn.ssl != NULL ?
	    tls_server_name(c->conn.ssl) : NULL;
	open.headers = headers;
	open.n_headers = req->n_headers;
	c->open_line = record_open(&open, &c->open_len);
	return c->open_line != NULL ? 0 : -1;
}

static void
client_forget_open(struct client *c)
{
	free(c->open_line);
	c->open_line = NULL;
	c->open_len = 0;
}

/* The environment of a per-connection program: its request, as CGI and
 * websocketd give it.  NULL when out of memory. */
static char **
client_env(struct client *c, const struct http_req *req,
    const struct cfg_resource *res)
{
	char addr[CLIENT_REMOTE_MAX], port[8] = "", local[8] = "", *colon;
	char *script, *room, **envp;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct env_request rq;
	size_t n;

	/* c->remote is "address:port" or "[v6 address]:port". */
	snprintf(addr, sizeof(addr), "%s", c->remote);
	if ((colon = strrchr(addr, ':')) != NULL) {
		snprintf(port, sizeof(port), "%s", colon + 1);
		*colon = '\0';
	}
	if (addr[0] == '[') {
		memmove(addr, addr + 1, strlen(addr));
		addr[strcspn(addr, "]")] = '\0';
	}
	if (getsockname(c->conn.fd, (struct sockaddr *)&ss, &sl) == 0)
		snprintf(local, sizeof(local), "%u", ss.ss_family == AF_INET6 ?
		    ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) :
		    ntohs(((struct sockaddr_in *)&ss)->sin_port));
	/* SCRIPT_NAME: the resource's part of the path: "/x" of "/x/" and "*". */
	n = res->is_prefix ? res->prefix_len - 1 : strlen(res->pattern);
	script = n > 0 ? strndup(res->pattern, n) : strdup("/");
	room = strndup(req->path, req->path_len);
	memset(&rq, 0, sizeof(rq));
	rq.req = req;
	rq.client = c->name;
	rq.remote_addr = addr;
	rq.remote_port = port;
	rq.local_port = local;
	rq.script_name = script;
	rq.tls = c->conn.ssl != NULL;
	envp = script != NULL && room != NULL ?
	    env_build(&res->opts, room, &rq, environ) : NULL;
	free(script);
	free(room);
	return envp;
}

/*
 * The request head is complete: check it, find the room, and open the
 * client or ask the backend.  Returns -1 when the client was answered
 * with an error.
 */
static int
client_handshake(struct client *c, const struct http_req *req)
{
	struct handshake hs;
	const struct cfg_resource *res;
	const struct http_req_header *origin;
	const char *why, *subprotocol;
	struct room *r;
	char **envp, *line, extensions[WS_DEFLATE_RESPONSE_SIZE] = "";
	struct refusal rf;
	int chosen, status;

	res = cfg_match(server.cfg, req->path, req->path_len);
	if (res == NULL) {
		client_http_error(c, 404, "no room at this path");
		return -1;
	}
	c->opts = &res->opts;
	status = handshake_check(req, &hs, &why);
	if (status != 0) {
		client_http_error(c, status, why);
		return -1;
	}
	/* A request without Origin is no browser's: the check protects
	 * browsers, so it passes. */
	if (http_req_header_count(req, "origin") > 1) {
		client_http_error(c, 400, "more than one Origin");
		return -1;
	}
	origin = http_req_header(req, "origin");
	if (!handshake_origin_allowed(res->opts.origins,
	    origin != NULL ? origin->value : NULL,
	    origin != NULL ? origin->value_len : 0)) {
		client_http_error(c, 403, "origin not allowed");
		return -1;
	}
	chosen = handshake_select_subprotocol(&hs, res->opts.subprotocols);
	subprotocol = chosen >= 0 ? res->opts.subprotocols[chosen] : NULL;
	if (subprotocol == NULL && res->opts.subprotocol_required) {
		client_http_error(c, 400, "no supported subprotocol offered");
		return -1;
	}
	if (server.stopping) {
		client_http_error(c, 503, "shutting down");
		return -1;
	}
	/* Pattern room names are chosen by clients: bounded. */
	if (res->is_prefix && req->path_len > ROOM_NAME_MAX) {
		client_http_error(c, 414, "room name too long");
		return -1;
	}
	ws_frame_parser_init(&c->parser, res->opts.max_message_size,
	    res->opts.max_frame_size, true);
	if (client_negotiate_deflate(c, req, &res->opts, extensions) == -1) {
		client_http_error(c, 400, "malformed Sec-WebSocket-Extensions");
		return -1;
	}
	if (res->opts.format == CFG_FORMAT_JSON &&
	    client_make_open(c, req, &hs, subprotocol) == -1) {
		client_http_error(c, 500, "out of memory");
		return -1;
	}
	if (res->opts.authorize && client_keep_pending(c, &hs, extensions) == -1) {
		client_free_pending(c);
		client_forget_open(c);
		client_http_error(c, 500, "out of memory");
		return -1;
	}
	envp = NULL;
	if (res->opts.mode == CFG_MODE_CLIENT &&
	    res->backend_kind == CFG_BACKEND_EXEC &&
	    (envp = client_env(c, req, res)) == NULL) {
		client_free_pending(c);
		client_forget_open(c);
		client_http_error(c, 500, "out of memory");
		return -1;
	}
	r = room_get(req->path, req->path_len, res, c, envp, &rf);
	free(envp);
	if (r == NULL) {
		client_free_pending(c);
		client_forget_open(c);
		client_http_error(c, rf.status, rf.why);
		return -1;
	}
	/* (A solo room is new and empty: neither applies.) */
	if (res->opts.max_clients > 0 &&
	    r->n_members + r->n_pending >= res->opts.max_clients) {
		client_free_pending(c);
		client_forget_open(c);
		client_http_error(c, 503, "the room is full");
		return -1;
	}
	if (room_turns_away(r)) {
		client_free_pending(c);
		client_forget_open(c);
		client_http_error(c, 503, "the room is busy");
		return -1;
	}
	/* The access log's first line. */
	log_info("%s: %s %s from %s, room %s", c->name, c->conn.ssl != NULL ?
	    "wss" : "ws", res->opts.authorize ? "authorizing" : "open",
	    c->remote, r->path);
	free(c->remote);	/* an idle client costs less without it */
	c->remote = NULL;

	if (res->opts.authorize) {
		c->pending->chosen = client_pending_offer(c, subprotocol);
		c->state = CLIENT_AUTHORIZING;
		room_add_pending(r, c);
		server_timer_set(c->timer, res->opts.authorize_timeout_ms);
	} else {
		client_write_101(c, hs.accept, subprotocol, extensions);
		client_opened(c);
		room_add_member(r, c);
	}
	if (c->open_line != NULL) {
		/* The room keeps the original for a backend that takes over
		 * later. */
		line = malloc(c->open_len);
		if (line != NULL) {
			memcpy(line, c->open_line, c->open_len);
			c->announced = true;
			room_write(r, c, true, line, c->open_len);
		}
	}
	return 0;
}

/* A pipelined request waits for the answer to the one before: bound
 * what may wait. */
static void
client_check_http_input(struct client *c)
{
	if (c->in != NULL &&
	    evbuffer_get_length(c->in) >= server.cfg->max_header_size)
		client_set_read_event(c, false);
}

unsigned
client_http_requests_left(const struct client *c)
{
	uint64_t max = server.cfg->keepalive_requests;

	return c->http_requests < max && !server.stopping ?
	    (unsigned)(max - c->http_requests) : 0;
}

void
client_respond(struct client *c, const char *head, size_t head_len,
    int file_fd, uint64_t file_len, bool keep_alive)
{
	c->state = CLIENT_HTTP;
	c->keep_alive = keep_alive;
	c->file_fd = file_fd;
	c->file_left = file_len;
	c->file_off = 0;
	server_timer_set(c->timer, server.cfg->handshake_timeout_ms);
	if (evbuffer_add(c->out, head, head_len) == 0)
		client_output_added(c);
	else
		client_free(c);
}

/*
 * The answer is out: close its file; wait for the next request of a kept
 * connection (the one that came meanwhile first), else linger.
 */
static void
client_http_done(struct client *c)
{
	if (c->file_fd != -1) {
		close(c->file_fd);
		c->file_fd = -1;
	}
	if (!c->keep_alive) {
		client_linger(c);
		return;
	}
	c->state = CLIENT_HANDSHAKE;
	server_timer_set(c->timer, server.cfg->keepalive_timeout_ms);
	client_set_read_event(c, true);
	/* A request that came meanwhile is taken from client_read_cb, not
	 * from here: this may run inside client_read_head, whose buffer is
	 * out of c->in until it returns, and a long pipeline must not
	 * recurse. */
	event_active(c->read_event, EV_READ, 0);
}

/*
 * Send the file of the answer, from the kernel's page cache into the
 * socket, as much as the socket takes: the file costs no memory, and a
 * client that stops reading holds only its socket buffer.  Returns 1
 * when all of it is sent, 0 when the socket is full, -1 on an error.
 */
static int
client_send_file(struct client *c)
{
	ssize_t n;

	while (c->file_left > 0) {
		n = conn_sendfile(&c->conn, c->file_fd, &c->file_off,
		    c->file_left < (1 << 20) ? (size_t)c->file_left : 1 << 20);
		if (n > 0) {
			c->file_left -= (uint64_t)n;
			c->bytes_out += (uint64_t)n;
			stats.bytes_out += (uint64_t)n;
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n == 0)
			errno = EIO;	/* the file shrank under us */
		return -1;
	}
	return 1;
}

/* Nothing is used until the verdict: bound what may wait. */
static void
client_check_authorizing_input(struct client *c)
{
	if (c->in != NULL &&
	    evbuffer_get_length(c->in) >= server.cfg->max_header_size)
		client_set_read_event(c, false);
}

/*
 * A request head is complete: parse it, then serve it as a plain HTTP
 * request (http_serve) or take it as a WebSocket handshake.  Returns -1
 * when the connection is done with (answered with an error).
 */
static int
client_request(struct client *c, char *head, size_t head_len)
{
	struct http_req req;
	int status;

	c->head_scan = 0;
	c->http_requests++;
	if (c->refusal != 0) {
		client_http_error(c, c->refusal, client_refusal_why(c->refusal));
		return -1;
	}
	status = http_req_parse(&req, head, head_len, server.cfg->max_headers);
	if (status != 0) {
		client_http_error(c, status, status == 431 ?
		    "too many header fields" : status == 505 ?
		    "HTTP/1.1 required" : "malformed request");
		return -1;
	}
	c->head_request = req.method_len == 4 &&
	    memcmp(req.method, "HEAD", 4) == 0;
	if (c->admin) {
		admin_serve(c, &req);
		return c->state == CLIENT_HTTP || c->state == CLIENT_OPEN ? 0 : -1;
	}
	if (!http_req_header_has_token(&req, "upgrade", "websocket") &&
	    http_serve(c, &req))
		return c->state == CLIENT_HTTP ? 0 : -1;
	return client_handshake(c, &req);
}

void
client_admin_refuse(struct client *c, int status, const char *why)
{
	client_http_error(c, status, why);
}

void
client_admin_open(struct client *c, const struct http_req *req,
    struct room *r, bool tap)
{
	const char *why;
	struct handshake hs;

	if (handshake_check(req, &hs, &why) != 0) {
		client_http_error(c, 400, why);
		return;
	}
	ws_frame_parser_init(&c->parser, server.cfg->defaults.max_message_size,
	    0, true);
	client_write_101(c, hs.accept, NULL, NULL);
	client_opened(c);
	c->admin_room = r;
	c->tap = tap;
	if (tap) {
		LIST_INSERT_HEAD(&r->taps, c, tap_entry);
		r->n_taps++;
	}
	log_info("%s: %s of room %s", c->name, tap ? "tap" : "inject",
	    r->path);
}

/* A tap or inject client is done with its room. */
static void
client_admin_leave(struct client *c)
{
	if (c->admin_room == NULL)
		return;
	if (c->tap) {
		LIST_REMOVE(c, tap_entry);
		c->admin_room->n_taps--;
	}
	c->admin_room = NULL;
}

void
client_admin_drop(struct client *c, const char *why)
{
	static const char *const gone = "room gone";

	/* What it has not read stays queued, bounded (ADMIN_TAP_MAX) and
	 * whole: the first frame may be written in part already, and the
	 * close frame must come after it for the reader to see why.  No
	 * more lines come to it, and close_timeout ends it. */
	client_admin_leave(c);
	client_close(c, strcmp(why, gone) == 0 ? WS_CLOSE_GOING_AWAY :
	    WS_CLOSE_POLICY, why, strlen(why));
}

static void
client_read_head(struct client *c)
{
	struct evbuffer *in = c->in;
	size_t avail = evbuffer_get_length(in);
	size_t max = server.cfg->max_header_size;
	size_t n = avail < max ? avail : max;
	size_t head_len, scan = c->head_scan;
	const char *nl;
	char *head;

	head = (char *)evbuffer_pullup(in, (ev_ssize_t)n);
	/* From the last line end seen: a head sent in many pieces is
	 * scanned once. */
	head_len = scan < n ? http_req_head_end(head + scan, n - scan) : 0;
	if (head_len == 0) {
		if (avail >= max) {
			client_http_error(c, 431, "request head too large");
			return;
		}
		nl = memrchr(head + scan, '\n', n - scan);
		if (nl != NULL)
			c->head_scan = (uint32_t)(nl - head);
		return;
	}
	head_len += scan;
	c->in = NULL;		/* the head is in use until handshaken */
	if (client_request(c, head, head_len) == -1) {
		evbuffer_free(in);
		return;
	}
	evbuffer_drain(in, head_len);
	if (evbuffer_get_length(in) == 0) {
		evbuffer_free(in);
		return;
	}
	/* Frames a client sends right behind its request head; an
	 * authorizing client's wait for the verdict; the next request of
	 * a plain HTTP client. */
	c->in = in;
	if (c->state == CLIENT_OPEN)
		client_read_buffered(c);
	else if (c->state == CLIENT_AUTHORIZING)
		client_check_authorizing_input(c);
	else if (c->state == CLIENT_HTTP)
		client_check_http_input(c);
}

/* Keep input for later: the request head, or an authorizing client's
 * frames.  Returns -1 when out of memory. */
static int
client_keep_input(struct client *c, const uint8_t *data, size_t len)
{
	if (c->in == NULL)
		c->in = evbuffer_new();
	return c->in == NULL || evbuffer_add(c->in, data, len) == -1 ? -1 : 0;
}

static void
client_input(struct client *c, const uint8_t *data, size_t len)
{
	switch (c->state) {
	case CLIENT_HANDSHAKE:
		if (client_keep_input(c, data, len) == -1)
			client_http_error(c, 500, "out of memory");
		/* The head can only have ended in a line end just read: a
		 * head sent in pieces is not scanned again for each. */
		else if (memchr(data, '\n', len) != NULL ||
		    evbuffer_get_length(c->in) >= server.cfg->max_header_size)
			client_read_head(c);
		break;
	case CLIENT_AUTHORIZING:
		if (client_keep_input(c, data, len) == -1)
			client_fail_handshake(c, 500, "out of memory");
		else
			client_check_authorizing_input(c);
		break;
	case CLIENT_HTTP:
		/* The next request, while this one's answer goes out. */
		if (client_keep_input(c, data, len) == -1)
			client_free(c);
		else
			client_check_http_input(c);
		break;
	case CLIENT_OPEN:
	case CLIENT_CLOSING:
		/* What waited for the verdict went first (client_read_cb). */
		client_read_frames(c, data, len);
		break;
	case CLIENT_PROXY:	/* never: client_read_cb reads the header */
	case CLIENT_TLS:	/* never: client_read_cb does the handshake */
	case CLIENT_LINGERING:
		break;		/* dropped */
	}
}

static void
client_read_cb(evutil_socket_t fd, short events, void *arg)
{
	static uint8_t buf[CLIENT_READ_MAX];
	struct client *c = arg;
	ssize_t n;
	int err;

	if (c->gone) {
		client_free(c);
		return;
	}
	if (c->state == CLIENT_PROXY) {
		client_proxy_read(c);
		return;
	}
	if (c->state == CLIENT_TLS) {
		client_tls_handshake(c);
		return;
	}
	if (c->conn.write_wants_read) {
		/* A TLS write waited for this. */
		c->conn.write_wants_read = false;
		client_flush(c);
		if (c->gone)
			return;
	}
	client_batch_begin();
	/* Input that waited for the verdict goes first (the accept, or the
	 * room's resuming, makes this callback run); so does a request
	 * that waited for the answer to the one before. */
	if (c->in != NULL &&
	    (c->state == CLIENT_OPEN || c->state == CLIENT_CLOSING))
		client_read_buffered(c);
	else if (c->in != NULL && c->state == CLIENT_HANDSHAKE &&
	    c->http_requests > 0 && evbuffer_get_length(c->in) > 0)
		client_read_head(c);
	n = conn_read(&c->conn, buf, sizeof(buf));
	err = errno;
	if (n > 0) {
		c->bytes_in += (uint64_t)n;
		stats.bytes_in += (uint64_t)n;
		client_input(c, buf, (size_t)n);
	}
	client_batch_end();
	if (n > 0) {
		/* Bytes OpenSSL decrypted already: epoll does not see them. */
		if (!c->gone && c->reading && conn_pending(&c->conn))
			event_active(c->read_event, EV_READ, 0);
		return;
	}
	if (n == -1 && (err == EAGAIN || err == EINTR)) {
		/* A TLS read that must write first comes back from
		 * client_write_cb. */
		if (c->conn.read_wants_write)
			event_add(c->write_event, NULL);
		return;
	}
	if (n == 0 && (c->state == CLIENT_CLOSING ||
	    c->state == CLIENT_LINGERING) && evbuffer_get_length(c->out) > 0) {
		/* A peer that shut its side may still read our last bytes,
		 * our close frame among them: they go first, within
		 * close_timeout (client_output_drained ends it). */
		c->peer_closed = true;
		client_set_read_event(c, false);
		return;
	}
	if (c->state == CLIENT_OPEN || c->state == CLIENT_AUTHORIZING)
		log_debug("%s: connection dropped", c->name);
	/* client_free reports 1006 to the backend if it knew the client. */
	client_free(c);
}

/* The socket takes output again after a write that did not finish (or
 * a TLS read or handshake that had to write). */
static void
client_write_cb(evutil_socket_t fd, short events, void *arg)
{
	struct client *c = arg;

	event_del(c->write_event);
	if (c->state == CLIENT_TLS) {
		client_tls_handshake(c);
		return;
	}
	if (c->conn.read_wants_write) {
		c->conn.read_wants_write = false;
		event_active(c->read_event, EV_READ, 0);
	}
	client_flush(c);
}

/*
 * The PROXY protocol, on a proxy listener: the load balancer in front
 * sends a header naming the client before anything else, and nothing else
 * is read until a valid one has come whole.  The socket is peeked at and
 * only the header's bytes are taken off it, so that what follows (the
 * request head, or the ClientHello that OpenSSL reads from the socket
 * itself) stays there for the next state.  The part of a header that came
 * in pieces waits in c->in.  The header, the TLS handshake and the
 * request head share handshake_timeout.
 */

/* No valid header: the connection is closed without an answer, as its
 * peer speaks no HTTP to us yet (or nothing we serve), and counted as
 * refused. */
static void
client_proxy_fail(struct client *c, const char *why)
{
	stats.connections_refused++;
	log_debug("%s: no valid PROXY header: %s", c->name, why);
	client_free(c);
}

/* Over max_connections_per_ip by the header's address: 429, as a plain
 * listener answers at accept (and a tls one after its handshake).
 * Returns 0 when the client goes on to answer its request over TLS. */
static int
client_proxy_refuse(struct client *c)
{
	char answer[256];
	size_t n;

	stats.connections_refused++;
	if (c->conn.ssl != NULL &&
	    server.n_refusing < CLIENT_TLS_REFUSALS_MAX) {
		c->refusal = 429;
		server.n_refusing++;
		return 0;
	}
	stats.http_status[429]++;
	log_debug("%s: 429 %s", c->name, client_refusal_why(429));
	if (c->conn.ssl != NULL) {
		client_free(c);
		return -1;
	}
	n = handshake_response_error(answer, sizeof(answer), 429,
	    client_refusal_why(429));
	if (evbuffer_add(c->out, answer, n) == 0)
		client_output_added(c);
	client_linger(c);
	return -1;
}

/* A valid header is in: the client is whom it names (or, for a LOCAL
 * header and the like, the connection's own peer), for the log, the open
 * record, the CGI variables and max_connections_per_ip.  Returns -1 when
 * the client was closed or refused. */
static int
client_proxy_take(struct client *c, const struct proxy_header *ph)
{
	char remote[CLIENT_REMOTE_MAX], *copy;
	struct sockaddr_storage peer;
	socklen_t peer_len = sizeof(peer);
	const struct sockaddr *addr;
	bool refused;

	if (ph->proxied) {
		addr = (const struct sockaddr *)&ph->src;
		client_format_remote(remote, sizeof(remote), addr);
		if ((copy = strdup(remote)) == NULL) {
			client_proxy_fail(c, "out of memory");
			return -1;
		}
		log_debug("%s: PROXY v%d header: from %s", c->name,
		    ph->version, remote);
		free(c->remote);
		c->remote = copy;
	} else {
		addr = (const struct sockaddr *)&peer;
		log_debug("%s: PROXY %s header: keeping %s", c->name, ph->why,
		    c->remote);
	}
	c->state = c->conn.ssl != NULL ? CLIENT_TLS : CLIENT_HANDSHAKE;
	if (c->refusal != 0 || server.cfg->max_connections_per_ip == 0)
		return 0;
	/* A health check may have closed (with a reset) right after its
	 * header: then the socket has no peer any more, and is let go. */
	if (!ph->proxied && getpeername(c->conn.fd, (struct sockaddr *)&peer,
	    &peer_len) == -1) {
		log_debug("%s: gone after its PROXY header: %s", c->name,
		    strerror(errno));
		client_free(c);
		return -1;
	}
	c->ip = client_ip_acquire(addr, &refused);
	if (refused)
		return client_proxy_refuse(c);
	return 0;
}

/* Read on at the header.  Its end leaves what came behind it in the
 * socket, which stays readable: the next state reads it on the next
 * turn. */
static void
client_proxy_read(struct client *c)
{
	static uint8_t buf[PROXY_HEADER_MAX];
	enum proxy_header_status st;
	struct proxy_header ph;
	size_t have = c->in != NULL ? evbuffer_get_length(c->in) : 0, take;
	ssize_t n;

	/* (MORE only below PROXY_HEADER_MAX: there is room) */
	if (have > 0)
		evbuffer_copyout(c->in, buf, have);
	n = recv(c->conn.fd, buf + have, sizeof(buf) - have, MSG_PEEK);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		client_proxy_fail(c, n == 0 ? "connection closed" :
		    strerror(errno));
		return;
	}
	st = proxy_header_parse(&ph, buf, have + (size_t)n);
	if (st == PROXY_HEADER_INVALID) {
		client_proxy_fail(c, ph.why);
		return;
	}
	/* MORE: all of it is the header's; DONE: up to its end. */
	take = st == PROXY_HEADER_MORE ? (size_t)n : ph.len - have;
	if (recv(c->conn.fd, buf + have, take, 0) != (ssize_t)take) {
		client_proxy_fail(c, "the socket took back what it had");
		return;
	}
	c->bytes_in += take;
	stats.bytes_in += take;
	if (st == PROXY_HEADER_MORE) {
		if (client_keep_input(c, buf + have, take) == -1)
			client_proxy_fail(c, "out of memory");
		return;
	}
	client_drop_input(c);
	client_proxy_take(c, &ph);
}

/* A step of the TLS handshake of a client of a tls listener. */
static void
client_tls_handshake(struct client *c)
{
	const char *why = "";

	switch (conn_handshake(&c->conn, &why)) {
	case 1:
		stats.tls_handshakes++;
		if (SSL_session_reused(c->conn.ssl))
			stats.tls_resumed++;
		c->state = CLIENT_HANDSHAKE;
		/* The request may have come with the handshake's end. */
		event_active(c->read_event, EV_READ, 0);
		return;
	case 0:
		if (c->conn.read_wants_write)
			event_add(c->write_event, NULL);
		return;
	default:
		/* Port scanners, plain HTTP on the TLS port, old clients:
		 * counted, and logged only for debugging. */
		stats.tls_failures++;
		log_debug("%s: TLS handshake failed: %s", c->name, why);
		client_free(c);
	}
}

static void
client_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct client *c = arg;

	switch (c->state) {
	case CLIENT_PROXY:
		client_proxy_fail(c, "timed out");
		break;
	case CLIENT_TLS:
		stats.tls_failures++;
		log_debug("%s: TLS handshake timed out", c->name);
		client_free(c);
		break;
	case CLIENT_HANDSHAKE:
		/* A kept connection waiting for its next request just
		 * closes; a request begun gets its 408. */
		if (c->http_requests > 0 &&
		    (c->in == NULL || evbuffer_get_length(c->in) == 0))
			client_free(c);
		else
			client_http_error(c, 408, "request head timed out");
		break;
	case CLIENT_HTTP:
		log_debug("%s: the answer made no progress in %llu ms",
		    c->name, (unsigned long long)server.cfg->handshake_timeout_ms);
		client_free(c);
		break;
	case CLIENT_AUTHORIZING:
		stats.authorize_timeouts++;
		log_info("%s: the backend of %s did not authorize in time",
		    c->name, c->room->path);
		client_fail_handshake(c, 504, "authorization timed out");
		break;
	case CLIENT_OPEN:
		client_liveness(c);
		break;
	case CLIENT_CLOSING:
	case CLIENT_LINGERING:
		client_free(c);
		break;
	}
}

void
client_accept_handshake(struct client *c, const char *subprotocol)
{
	/* The backend's choice, else the room's. */
	client_write_101(c, c->pending->accept, subprotocol != NULL ?
	    subprotocol : c->pending->chosen, c->pending->extensions);
	client_free_pending(c);
	client_opened(c);
	/* Reading stopped if much input waited.  Frames that arrived early
	 * are read once the records that follow this accept in the
	 * backend's batch are done: client_update_read_event has
	 * client_read_cb run next, or when a paused room resumes. */
	client_set_read_event(c, true);
	client_update_read_event(c);
	room_promote(c->room, c);	/* which may pause it */
}

bool
client_offers(const struct client *c, const char *subprotocol, size_t len)
{
	size_t i;

	for (i = 0; c->pending != NULL && i < c->pending->n_subprotocols; i++) {
		if (strlen(c->pending->subprotocols[i]) == len &&
		    memcmp(c->pending->subprotocols[i], subprotocol, len) == 0)
			return true;
	}
	return false;
}

void
client_reject_handshake(struct client *c, int status, const char *body)
{
	c->announced = false;	/* a rejected client gets no close record */
	client_fail_handshake(c, status, body);
}

/* End an authorizing client's handshake with an HTTP status; its backend
 * gets a close record (code, reason) if it is to hear of it. */
static void
client_end_handshake(struct client *c, unsigned code, const char *reason,
    int status, const char *body)
{
	client_leave(c, code, reason, strlen(reason));
	client_free_pending(c);
	client_http_error(c, status, body);
}

void
client_fail_handshake(struct client *c, int status, const char *body)
{
	client_end_handshake(c, WS_CLOSE_ABNORMAL, body, status, body);
}

void
client_backend_lost(struct client *c, unsigned code)
{
	const char *why = code == WS_CLOSE_SERVICE_RESTART ?
	    "backend restarting" : code == WS_CLOSE_NORMAL ? "" :
	    "backend unavailable";

	c->announced = false;	/* nobody to tell */
	if (c->state == CLIENT_AUTHORIZING)
		client_fail_handshake(c, code == WS_CLOSE_SERVICE_RESTART ?
		    503 : 502, "the room's backend is unavailable");

	else if (c->state == CLIENT_OPEN)
		client_close(c, code, why, strlen(why));
}

/* Order clients by queued output, most first. */
static int
client_queued_cmp(const void *a, const void *b)
{
	size_t x = (*(struct client *const *)a)->out_counted;
	size_t y = (*(struct client *const *)b)->out_counted;

	return x > y ? -1 : x < y;
}

void
client_shed_output(void)
{
	static const char why[] = "output memory limit";
	struct client *c, **list;
	size_t n = 0, i, target = server.cfg->max_output_memory / 10 * 9;
	size_t before = server.output_bytes, closed = 0;

	if (server.output_bytes <= server.cfg->max_output_memory)
		return;
	list = malloc(server.n_clients * sizeof(*list));
	if (list == NULL)
		return;
	LIST_FOREACH(c, &server.clients, entry)
		if (c->out_counted > 0 && !c->gone)
			list[n++] = c;
	qsort(list, n, sizeof(*list), client_queued_cmp);
	/* The most behind go first, their backlog dropped, so that the
	 * memory comes back now rather than after close_timeout. */
	for (i = 0; i < n && server.output_bytes > target; i++) {
		c = list[i];
		stats.slow_consumers++;
		closed++;
		evbuffer_drain(c->out, evbuffer_get_length(c->out));
		client_account(c);
		if (c->state == CLIENT_OPEN)
			client_close(c, WS_CLOSE_POLICY, why, sizeof(why) - 1);
		else
			client_end(c);
	}
	free(list);
	log_warn("max_output_memory (%llu bytes) passed: %zu bytes queued to "
	    "clients; closed the %zu most behind (1008)",
	    (unsigned long long)server.cfg->max_output_memory, before, closed);
}

void
client_reload(struct client *c)
{
	/* Its room's resource was re-pointed already (room_reload); a
	 * client in no room is closing and needs only the defaults. */
	c->opts = c->room != NULL ? &c->room->res->opts : NULL;
	/* Its timeouts may have changed: looked at again (client_liveness,
	 * from the loop, since it may close the client). */
	if (c->state == CLIENT_OPEN)
		server_timer_set(c->timer, 0);
}

void
client_shutdown(struct client *c)
{
	client_go_away(c, "server shutting down");
}

void
client_go_away(struct client *c, const char *why)
{
	switch (c->state) {
	case CLIENT_PROXY:
	case CLIENT_TLS:
		client_end(c);
		break;
	case CLIENT_HANDSHAKE:
		/* A kept HTTP connection between requests just closes. */
		if (c->http_requests > 0 &&
		    (c->in == NULL || evbuffer_get_length(c->in) == 0))
			client_end(c);
		else
			client_http_error(c, 503, "shutting down");
		break;
	case CLIENT_AUTHORIZING:
		client_end_handshake(c, WS_CLOSE_GOING_AWAY, why, 503, why);
		break;
	case CLIENT_OPEN:
		client_close(c, WS_CLOSE_GOING_AWAY, why, strlen(why));
		break;
	case CLIENT_HTTP:
		c->keep_alive = false;	/* the answer finishes, then it closes */
		break;
	case CLIENT_CLOSING:
	case CLIENT_LINGERING:
		break;
	}
}

/* The upgrade (upgrade.c): handing open clients to a new process. */

bool
client_transferable(const struct client *c)
{
	/* TLS keeps its keys in this process, and a client's own zlib
	 * streams cannot be written out: those go as a stop has them go. */
	return c->state == CLIENT_OPEN && !c->gone && !c->admin &&
	    c->conn.ssl == NULL && c->zlib == NULL && c->room != NULL &&
	    c->parser.state != WS_FRAME_FAILED;
}

/* The bytes of an output or input buffer, into b. */
static void
client_save_buffer(struct evbuffer *buf, struct blob *b)
{
	size_t len = buf != NULL ? evbuffer_get_length(buf) : 0;

	blob_put_bytes(b, len > 0 ? evbuffer_pullup(buf, -1) : NULL, len);
}

void
client_save(const struct client *c, struct blob *b)
{
	upgrade_pass(c->conn.fd);
	blob_put_u32(b, (uint32_t)c->conn.fd);
	blob_put_u64(b, c->id);
	blob_put_str(b, c->remote);
	blob_put_bytes(b, c->open_line, c->open_len);
	blob_put_u8(b, c->announced);
	blob_put_u8(b, c->deflate);
	blob_put_u8(b, c->deflate_bits);
	blob_put_u8(b, c->inflate_bits);
	ws_frame_parser_save(&c->parser, b);
	client_save_buffer(c->in, b);
	client_save_buffer(c->out, b);
	blob_put_u8(b, c->ping_sent);
	blob_put_u64(b, c->ping_sent_ms);
	blob_put_u64(b, c->last_frame_ms);
	blob_put_u64(b, c->last_message_ms + (c->reading ? 0 :
	    server_now_ms() - c->unread_since_ms));
	blob_put_u64(b, c->opened_ms);
	blob_put_u64(b, c->bytes_in);
	blob_put_u64(b, c->bytes_out);
	/* The address it is counted against: a PROXY header's, maybe. */
	blob_put_u8(b, c->ip != NULL);
	if (c->ip != NULL) {
		blob_put_u32(b, (uint32_t)c->ip->family);
		blob_put_bytes(b, c->ip->addr, sizeof(c->ip->addr));
	}
}

/* A buffer of the bytes read from b; false when they cannot be had. */
static bool
client_load_buffer(struct evbuffer **buf, struct blob *b, size_t max)
{
	const uint8_t *p;
	size_t len;

	p = blob_get_bytes(b, &len, max);
	if (b->failed)
		return false;
	if (len == 0)
		return true;
	if (*buf == NULL && (*buf = evbuffer_new()) == NULL)
		return false;
	return evbuffer_add(*buf, p, len) == 0;
}

struct client *
client_load(struct blob *b, struct room *r, uint64_t *gone)
{
	const struct cfg_room_opts *o = &r->res->opts;
	const uint8_t *open, *addr = NULL;
	size_t addr_len;
	uint32_t family = 0;
	struct client *c;
	int fd;

	*gone = 0;
	fd = upgrade_fd(blob_get_u32(b));
	c = calloc(1, sizeof(*c) + 3 * client_event_size());
	if (c == NULL)
		return NULL;
	c->conn.fd = fd;
	c->file_fd = -1;
	c->state = CLIENT_OPEN;
	c->opts = o;
	client_events_assign(c, fd);
	c->id = blob_get_u64(b);
	snprintf(c->name, sizeof(c->name), "c%llu%s", (unsigned long long)c->id,
	    cluster_suffix());
	c->remote = blob_get_str(b, CLIENT_REMOTE_MAX);
	open = blob_get_bytes(b, &c->open_len, SIZE_MAX);
	if (c->open_len > 0 && (c->open_line = malloc(c->open_len)) != NULL)
		memcpy(c->open_line, open, c->open_len);
	c->announced = blob_get_bool(b);
	c->deflate = blob_get_u8(b);
	c->deflate_bits = blob_get_u8(b);
	c->inflate_bits = blob_get_u8(b);
	ws_frame_parser_init(&c->parser, o->max_message_size,
	    o->max_frame_size, true);
	ws_frame_parser_allow_rsv1(&c->parser, c->deflate & CLIENT_DEFLATE_ON);
	c->out = evbuffer_new();
	if (b->failed || (c->open_len > 0 && c->open_line == NULL) ||
	    c->out == NULL || c->deflate_bits > 15 || c->inflate_bits > 15 ||
	    ws_frame_parser_load(&c->parser, b) == -1 ||
	    !client_load_buffer(&c->in, b, SIZE_MAX) ||
	    !client_load_buffer(&c->out, b, SIZE_MAX))
		goto fail;
	c->ping_sent = blob_get_bool(b);
	c->ping_sent_ms = blob_get_u64(b);
	c->last_frame_ms = blob_get_u64(b);
	c->last_message_ms = blob_get_u64(b);
	c->opened_ms = blob_get_u64(b);
	c->bytes_in = blob_get_u64(b);
	c->bytes_out = blob_get_u64(b);
	if (blob_get_bool(b)) {
		family = blob_get_u32(b);
		addr = blob_get_bytes(b, &addr_len, 16);
		if (addr_len != 16)
			b->failed = true;
	}
	if (b->failed)
		goto fail;
	if (fd == -1) {
		/* It went while no process held its connection (the fd
		 * store drops one that hangs up): gone, for its backend. */
		*gone = c->id;
		goto fail;
	}
	if (idmap_put(&server.client_index, c) == -1)
		goto fail;
	/* Counted as at accept, but never refused: it is here already. */
	if (addr != NULL && server.cfg->max_connections_per_ip > 0)
		c->ip = client_ip_count((int)family, addr, NULL);
	LIST_INSERT_HEAD(&server.clients, c, entry);
	server.n_clients++;
	if (c->id > server.next_client_id)
		server.next_client_id = c->id;
	c->reading = true;
	event_add(c->read_event, NULL);
	if (c->in != NULL)
		event_active(c->read_event, EV_READ, 0);
	/* Written once the loop runs: nothing goes out before the old
	 * process has let go. */
	client_account(c);
	if (evbuffer_get_length(c->out) > 0)
		event_add(c->write_event, NULL);
	server_timer_set(c->timer, 0);		/* client_liveness */
	return c;
fail:
	ws_frame_parser_free(&c->parser);
	if (c->out != NULL)
		evbuffer_free(c->out);
	if (c->in != NULL)
		evbuffer_free(c->in);
	free(c->open_line);
	free(c->remote);
	free(c);
	return NULL;
}

void
client_abandon(struct client *c)
{
	/* Another process carries it on: no record, no frame, no FIN
	 * (close only drops this process's reference to the socket). */
	c->announced = false;
	if (c->room != NULL) {
		if (c->state == CLIENT_AUTHORIZING) {
			TAILQ_REMOVE(&c->room->pending, c, room_entry);
			c->room->n_pending--;
		} else {
			TAILQ_REMOVE(&c->room->members, c, room_entry);
			c->room->n_members--;
		}
		if (c->room->solo == c)
			c->room->solo = NULL;
		c->room = NULL;
	}
	stats.clients_closed--;		/* it is not closed: client_free
					 * counts it all the same */
	client_free(c);
}
