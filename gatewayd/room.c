/*
 * room: a matched request path, its clients and its backend.
 *
 * Exact rooms live as long as the daemon; their backend starts with it and,
 * after a failure, again with the next client.  Pattern rooms (a resource
 * whose path ends in a slash and a star) are made by their first client
 * and stopped `linger` after their last one leaves.  The room owns the order of records in both directions: what its
 * backend writes is applied in order, and what its clients do is written
 * to the backend in the order it happened.
 */
#include <search.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "gatewayd.h"
#include "log.h"
#include "stats.h"

/* Rooms are told apart by resource and path: "/a/b" matched by a "/a/" pattern
 * is not the room of an exact "/a/b" resource further down the file. */
static int
room_cmp(const void *a, const void *b)
{
	const struct room *x = a, *y = b;

	if (x->res != y->res)
		return x->res < y->res ? -1 : 1;
	return strcmp(x->path, y->path);
}

static void
room_linger_cb(evutil_socket_t fd, short events, void *arg);

static struct room *
room_new(const char *path, size_t len, const struct cfg_resource *res)
{
	struct room *r;

	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->path = strndup(path, len);
	r->res = res;
	LIST_INIT(&r->members);
	LIST_INIT(&r->pending);
	r->linger_timer = evtimer_new(server.base, room_linger_cb, r);
	if (r->path == NULL || r->linger_timer == NULL ||
	    tsearch(r, &server.room_index, room_cmp) == NULL) {
		if (r->linger_timer != NULL)
			event_free(r->linger_timer);
		free(r->path);
		free(r);
		return NULL;
	}
	LIST_INSERT_HEAD(&server.rooms, r, entry);
	return r;
}

/* The room must be empty. */
static void
room_free(struct room *r)
{
	if (r->backend != NULL)
		backend_stop(r->backend);
	tdelete(r, &server.room_index, room_cmp);
	LIST_REMOVE(r, entry);
	event_free(r->linger_timer);
	log_debug("room %s: stopped", r->path);
	free(r->path);
	free(r);
}

struct room *
room_get(const char *path, size_t len, const struct cfg_resource *res)
{
	struct room key, *r, **found;

	key.res = res;
	key.path = strndup(path, len);
	if (key.path == NULL)
		return NULL;
	found = tfind(&key, &server.room_index, room_cmp);
	free(key.path);
	r = found != NULL ? *found : room_new(path, len, res);
	if (r == NULL)
		return NULL;
	if (r->backend == NULL) {
		r->backend = backend_start(r);
		if (r->backend == NULL) {
			if (res->is_prefix && r->n_members == 0 && r->n_pending == 0)
				room_free(r);
			return NULL;
		}
	}
	evtimer_del(r->linger_timer);	/* a client is coming in */
	return r;
}

int
room_start_exact(void)
{
	const struct cfg *cfg = server.cfg;
	struct room *r;
	size_t i;

	for (i = 0; i < cfg->n_resources; i++) {
		const struct cfg_resource *res = &cfg->resources[i];

		if (res->is_prefix)
			continue;
		r = room_new(res->pattern, strlen(res->pattern), res);
		if (r == NULL)
			return -1;
		/* An unreachable backend is no reason not to start: the
		 * room tries again when its first client comes. */
		r->backend = backend_start(r);
	}
	return 0;
}

void
room_add_pending(struct room *r, struct client *c)
{
	LIST_INSERT_HEAD(&r->pending, c, room_entry);
	r->n_pending++;
	c->room = r;
}

void
room_add_member(struct room *r, struct client *c)
{
	LIST_INSERT_HEAD(&r->members, c, room_entry);
	r->n_members++;
	c->room = r;
}

void
room_promote(struct room *r, struct client *c)
{
	LIST_REMOVE(c, room_entry);
	r->n_pending--;
	room_add_member(r, c);
}

static void
room_linger_cb(evutil_socket_t fd, short events, void *arg)
{
	struct room *r = arg;

	if (r->n_members == 0 && r->n_pending == 0)
		room_free(r);
}

void
room_remove(struct room *r, struct client *c)
{
	struct timeval tv;

	LIST_REMOVE(c, room_entry);
	if (c->state == CLIENT_AUTHORIZING)
		r->n_pending--;
	else
		r->n_members--;
	c->room = NULL;
	if (!r->res->is_prefix || r->n_members > 0 || r->n_pending > 0 ||
	    server.stopping)
		return;
	/* Even a linger of 0 goes through the timer: the room may be in
	 * use further up the stack. */
	tv.tv_sec = (time_t)(r->res->opts.linger_ms / 1000);
	tv.tv_usec = (suseconds_t)(r->res->opts.linger_ms % 1000) * 1000;
	evtimer_add(r->linger_timer, &tv);
}

void
room_write(struct room *r, char *line, size_t len)
{
	if (r->backend != NULL)
		backend_write(r->backend, line, len);
	else
		free(line);
}

/* True when name is one of the ids in list. */
static bool
room_listed(const char *name, const char *const *list, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(list[i], name) == 0)
			return true;
	}
	return false;
}

/* The client a command names, if it is in this room in the given state. */
static struct client *
room_target(struct room *r, const char *name, enum client_state state,
    const char *command)
{
	struct client *c = client_find(name);

	if (c != NULL && c->room == r && c->state == state)
		return c;
	stats.commands_dropped++;
	log_debug("room %s: %s for %s dropped: no such client %s", r->path,
	    command, name, state == CLIENT_OPEN ? "open" : "authorizing");
	return NULL;
}

static void
room_send(struct room *r, const struct record_cmd *cmd)
{
	enum ws_frame_opcode op = cmd->binary ? WS_OP_BINARY : WS_OP_TEXT;
	struct shared_frame *frame = NULL;
	struct client *c;
	size_t i;

	for (i = 0; i < cmd->n_clients; i++) {
		c = room_target(r, cmd->clients[i], CLIENT_OPEN, "send");
		if (c == NULL)
			continue;
		if (frame == NULL)
			frame = shared_frame_new(op, cmd->payload, cmd->payload_len);
		if (frame == NULL) {
			log_warn("room %s: out of memory for a send", r->path);
			return;
		}
		client_send(c, frame);
	}
	shared_frame_release(frame);
}

static void
room_broadcast(struct room *r, const struct record_cmd *cmd)
{
	enum ws_frame_opcode op = cmd->binary ? WS_OP_BINARY : WS_OP_TEXT;
	struct shared_frame *frame;
	struct client *c;

	if (r->n_members == 0)
		return;
	/* One frame, referenced by every member's output buffer. */
	frame = shared_frame_new(op, cmd->payload, cmd->payload_len);
	if (frame == NULL) {
		log_warn("room %s: out of memory for a broadcast", r->path);
		return;
	}
	LIST_FOREACH(c, &r->members, room_entry) {
		if (!room_listed(c->name, cmd->except, cmd->n_except))
			client_send(c, frame);
	}
	shared_frame_release(frame);
}

void
room_command(struct room *r, const struct record_cmd *cmd)
{
	struct client *c;
	size_t i;

	switch (cmd->command) {
	case RECORD_SEND:
		room_send(r, cmd);
		break;
	case RECORD_BROADCAST:
		room_broadcast(r, cmd);
		break;
	case RECORD_CLOSE:
		for (i = 0; i < cmd->n_clients; i++) {
			c = client_find(cmd->clients[i]);
			/* A client still in its handshake is refused. */
			if (c != NULL && c->room == r &&
			    c->state == CLIENT_AUTHORIZING)
				client_reject_handshake(c, 403, cmd->reason_len ?
				    cmd->reason : "forbidden");
			else if ((c = room_target(r, cmd->clients[i],
			    CLIENT_OPEN, "close")) != NULL)
				client_close(c, cmd->code, cmd->reason,
				    cmd->reason_len);
		}
		break;
	case RECORD_ACCEPT:
		for (i = 0; i < cmd->n_clients; i++) {
			c = room_target(r, cmd->clients[i], CLIENT_AUTHORIZING,
			    "accept");
			if (c == NULL)
				continue;
			if (cmd->subprotocol != NULL && !client_offers(c,
			    cmd->subprotocol, cmd->subprotocol_len)) {
				stats.records_malformed++;
				log_warn("room %s: accept of %s names subprotocol "
				    "\"%s\", which the client did not offer; "
				    "rejecting it with 500", r->path, c->name,
				    cmd->subprotocol);
				client_fail_handshake(c, 500,
				    "the room chose a subprotocol not offered");
				continue;
			}
			client_accept_handshake(c, cmd->subprotocol);
		}
		break;
	case RECORD_REJECT:
		for (i = 0; i < cmd->n_clients; i++) {
			c = room_target(r, cmd->clients[i], CLIENT_AUTHORIZING,
			    "reject");
			if (c != NULL)
				client_reject_handshake(c, (int)cmd->status,
				    cmd->reason_len ? cmd->reason :
				    handshake_status_text((int)cmd->status));
		}
		break;
	}
}

void
room_backend_lost(struct room *r)
{
	struct backend *b = r->backend;
	struct client *c;

	r->backend = NULL;
	if (b != NULL)
		backend_stop(b);
	if (r->n_members + r->n_pending > 0)
		log_warn("room %s: closing %zu clients (1011) and failing %zu "
		    "handshakes (502)", r->path, r->n_members, r->n_pending);
	while ((c = LIST_FIRST(&r->members)) != NULL)
		client_backend_lost(c);
	while ((c = LIST_FIRST(&r->pending)) != NULL)
		client_backend_lost(c);
	if (r->res->is_prefix)
		room_free(r);
}

void
room_shutdown(struct room *r)
{
	struct client *c;

	while ((c = LIST_FIRST(&r->members)) != NULL)
		client_shutdown(c);
	while ((c = LIST_FIRST(&r->pending)) != NULL)
		client_shutdown(c);
	room_free(r);
}
