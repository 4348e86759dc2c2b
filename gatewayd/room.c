/*
 * room: a matched request path, its clients and its backend.
 *
 * Exact rooms live as long as the daemon; their backend starts with it.
 * Pattern rooms (a resource whose path ends in a slash and a star) are
 * made by their first client and stopped `linger` after their last one
 * leaves.  The room owns the order of records in both directions: what its
 * backend writes is applied in order, and what its clients do is written
 * to the backend in the order it happened.
 *
 * A room outlives its backend.  When the backend fails, the room starts it
 * again after a backoff (restart_delay, doubling up to restart_max_delay)
 * and, with on_backend_down = hold, keeps its clients meanwhile: their
 * messages wait in the room's hold queue (up to hold_buffer bytes, then the
 * clients are no longer read), and the new backend gets a resumed hello,
 * an open for every client, then the held messages in order.  After
 * hold_timeout without a backend the clients are closed with 1012.
 *
 * Backpressure: past backend_buffer bytes queued towards the backend, or
 * hold_buffer bytes held, the room stops reading its clients; it reads
 * them again once the queue is down to half.
 *
 * A resource with mode = client gives each client a *solo* room of its
 * own: the same machinery (backpressure, the backend's stop, its stderr),
 * with one member and no restart.  Its backend's end ends its client
 * (1000 after a clean exit, 1011 otherwise), and its client's end stops
 * its backend.  The other way too, the backend is not read while its
 * client has much unread: a program feeding a slow reader waits, as it
 * would writing to a terminal.
 */
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "gatewayd.h"
#include "log.h"
#include "stats.h"

static void room_linger_cb(evutil_socket_t fd, short events, void *arg);
static void room_restart_cb(evutil_socket_t fd, short events, void *arg);
static void room_hold_timeout_cb(evutil_socket_t fd, short events, void *arg);
static bool room_journal_keep(const struct journal_entry *e, void *arg);
static struct journal_entry *room_journal_record(struct room *r,
    enum journal_kind kind, uint64_t client, char *line, size_t len);
static void room_record(struct room *r, enum journal_kind kind,
    uint64_t client, char *line, size_t len);

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

/* The index of a resource, for the per-resource room counts. */
static size_t
room_res_index(const struct cfg_resource *res)
{
	return (size_t)(res - server.cfg->resources);
}

static struct room *
room_new(const char *path, size_t len, const struct cfg_resource *res,
    bool is_solo)
{
	struct room *r;

	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->path = strndup(path, len);
	r->res = res;
	r->is_solo = is_solo;
	TAILQ_INIT(&r->members);
	TAILQ_INIT(&r->pending);
	LIST_INIT(&r->taps);
	journal_init(&r->journal);
	r->restart_delay_ms = res->opts.restart_delay_ms;
	r->linger_timer = evtimer_new(server.base, room_linger_cb, r);
	r->restart_timer = evtimer_new(server.base, room_restart_cb, r);
	r->hold_timer = evtimer_new(server.base, room_hold_timeout_cb, r);
	if (r->path == NULL || r->linger_timer == NULL ||
	    r->restart_timer == NULL || r->hold_timer == NULL ||
	    (!r->is_solo && tsearch(r, &server.room_index, room_cmp) == NULL)) {
		if (r->linger_timer != NULL)
			event_free(r->linger_timer);
		if (r->restart_timer != NULL)
			event_free(r->restart_timer);
		if (r->hold_timer != NULL)
			event_free(r->hold_timer);
		free(r->path);
		free(r);
		return NULL;
	}
	LIST_INSERT_HEAD(&server.rooms, r, entry);
	if (!r->is_solo && cluster_applies(res) && cluster_room_attach(r) != 0)
		log_warn("room %s: out of memory: not shared", r->path);
	if (!r->is_solo) {
		r->indexed = true;
		server.n_rooms++;
		server.resource_rooms[room_res_index(res)]++;
	}
	/* A pattern room stops once empty for linger.  The timer runs from
	 * the start, so that a room whose first client is turned away goes
	 * too; it does nothing while the room has clients. */
	if (res->is_prefix && !r->is_solo)
		server_timer_set(r->linger_timer, res->opts.linger_ms);
	return r;
}

static bool
room_holding(const struct room *r)
{
	return evtimer_pending(r->hold_timer, NULL);
}

/* Drop every record of the journal; returns how many client messages
 * were among them (the opens and closes are moot: the clients go). */
static size_t
room_discard_held(struct room *r)
{
	const struct journal_entry *e;
	size_t n = 0;

	for (e = r->journal.head; e != NULL; e = e->next)
		n += e->kind == JOURNAL_MESSAGE;
	journal_clear(&r->journal);
	stats.records_discarded += n;
	return n;
}

size_t
room_held_bytes(const struct room *r)
{
	return r->backend == NULL ? r->journal.bytes : 0;
}

/* What waits for the backend: written to it (delivery = ack: not yet
 * acknowledged either). */
static size_t
room_queued(const struct room *r)
{
	if (r->backend == NULL)
		return 0;
	if (r->res->opts.delivery == CFG_DELIVERY_ACK)
		return backend_queued(r->backend) + r->journal.sent_bytes;
	return backend_queued(r->backend);
}

/* Read the clients again, or stop reading them, as the queues say. */
static void
room_update_pause(struct room *r)
{
	const struct cfg_room_opts *o = &r->res->opts;
	struct client *c;
	size_t queued, held;
	bool pause;

	/* A shared room's clients wait on Redis, not on the backend (the
	 * holder stops reading the stream instead: cluster_room_drained);
	 * while Redis is away, what waits for it is held. */
	if (r->cl != NULL) {
		queued = cluster_room_backlog(r, &held);
	} else {
		queued = room_queued(r);
		held = room_held_bytes(r);
	}

	if (r->paused)
		pause = queued > o->backend_buffer / 2 || held > o->hold_buffer / 2;
	else
		pause = queued > o->backend_buffer || held > o->hold_buffer;
	if (pause == r->paused)
		return;
	r->paused = pause;
	if (pause) {
		stats.room_pauses++;
		log_debug("room %s: pausing its clients (%zu bytes queued, %zu "
		    "held)", r->path, queued, held);
	} else {
		log_debug("room %s: reading its clients again", r->path);
	}
	TAILQ_FOREACH(c, &r->members, room_entry)
		client_set_reading(c, !pause);
}

/* The room must be empty (of clients: its taps are closed). */
static void
room_free(struct room *r)
{
	while (!LIST_EMPTY(&r->taps))
		client_admin_drop(LIST_FIRST(&r->taps), "room gone");
	if (r->cl != NULL)
		cluster_room_detach(r);
	if (r->backend != NULL)
		backend_stop(r->backend);
	if (r->former != NULL)
		r->former->former = NULL;
	journal_clear(&r->journal);
	if (r->indexed) {
		tdelete(r, &server.room_index, room_cmp);
		server.n_rooms--;
		server.resource_rooms[room_res_index(r->res)]--;
	}
	client_ip_release(r->ip);
	LIST_REMOVE(r, entry);
	event_free(r->linger_timer);
	event_free(r->restart_timer);
	event_free(r->hold_timer);
	log_debug("room %s: stopped", r->path);
	free(r->path);
	free(r);
}

/*
 * Start the backend.  A backend that takes over from a failed one gets a
 * resumed hello, the open record of every client (members marked
 * resumed; authorizing clients as they were, for their verdict), then the
 * held messages of clients still here, in order.  Returns 0, or -1 with
 * *rf what a client that would wait on it is answered (backend_start).
 */
static int
room_start_backend(struct room *r, char **envp, struct refusal *rf)
{
	bool resumed;
	struct journal_entry *e;
	struct client *c;
	size_t len, resumed_clients = 0, redelivered = 0;
	char **own = NULL;
	char *line;

	/* A shared room's backend runs where its lease is (cluster.c). */
	if (r->cl != NULL && !cluster_room_holds(r))
		return 0;
	resumed = r->cl != NULL ? cluster_room_resuming(r) :
	    r->n_members + r->n_pending > 0;
	if (envp == NULL && r->res->backend_kind == CFG_BACKEND_EXEC) {
		own = env_build(&r->res->opts, r->path, NULL, environ);
		if (own == NULL)
			return refuse(rf, 503, "out of memory");
		envp = own;
	}
	r->backend = backend_start(r, resumed, envp, rf);
	free(own);
	if (r->backend == NULL)
		return -1;
	/* Up: a tcp: backend once it has connected (backend_write_cb). */
	if (!r->backend->connecting)
		r->ever_up = true;
	r->backend_since_ms = server_now_ms();
	if (r->cl != NULL)
		resumed_clients = cluster_room_resume(r, r->backend);
	else TAILQ_FOREACH(c, &r->members, room_entry) {
		line = record_open_resumed(c->open_line, c->open_len, &len);
		if (line != NULL) {
			backend_write(r->backend, line, len);
			resumed_clients++;
		}
	}
	TAILQ_FOREACH(c, &r->pending, room_entry) {
		if (r->cl != NULL)
			break;	/* among the members above */
		line = strndup(c->open_line, c->open_len);
		if (line != NULL)
			backend_write(r->backend, line, c->open_len);
	}
	/* Then the journal: what the last backend may not have read
	 * (marked redelivered) and what waited for this one, in order.
	 * The opens of clients still here went just now. */
	journal_filter(&r->journal, room_journal_keep, r);
	for (e = r->journal.head; e != NULL; e = e->next) {
		if (e->maybe_read) {
			redelivered++;
			stats.records_redelivered++;
			if (!e->marked && (line = record_add_field(e->line,
			    e->len, "\"redelivered\":true", &len)) != NULL) {
				journal_replace(&r->journal, e, line, len);
				e->marked = true;
			}
			e->maybe_read = false;
		}
		backend_write_journal(r->backend, e->line, e->len);
	}
	evtimer_del(r->hold_timer);
	if (resumed || r->journal.n > 0) {
		stats.clients_resumed += resumed_clients;
		log_info("room %s: backend resumed %zu clients and %zu held "
		    "messages (%zu redelivered)", r->path, resumed_clients,
		    r->journal.n, redelivered);
	}
	room_update_pause(r);
	return 0;
}

/* A journal entry goes to a new backend unless it is the open of a client
 * still here, which went already as a resumed or pending open. */
static bool
room_journal_keep(const struct journal_entry *e, void *arg)
{
	const struct room *r = arg;
	const struct client *c;

	if (e->kind != JOURNAL_OPEN)
		return true;
	if (r->cl != NULL)
		return cluster_room_keep_open(r, e->line, e->len);
	c = client_find_id(e->client);
	return c == NULL || c->room != r;
}

void
room_backend_wrote(struct room *r, size_t n)
{
	if (r->is_solo)
		return;
	journal_sent(&r->journal, n);
	room_backend_trim(r);
}

void
room_backend_trim(struct room *r)
{
	size_t unread;

	/* With delivery = ack, only acknowledgements drop records. */
	if (r->is_solo || r->backend == NULL || r->journal.sent_bytes == 0 ||
	    r->res->opts.delivery == CFG_DELIVERY_ACK)
		return;
	if (backend_unread(r->backend, &unread) == 0)
		journal_trim(&r->journal, unread);
}

/* The longest backoff: restart_max_delay, and ROOM_RESTART_FLOOR_MS at
 * least, whatever it says, so that a backend that fails at once is not
 * started more than a few times a second. */
static uint64_t
room_max_delay(const struct cfg_room_opts *o)
{
	return o->restart_max_delay_ms > ROOM_RESTART_FLOOR_MS ?
	    o->restart_max_delay_ms : ROOM_RESTART_FLOOR_MS;
}

/* Schedule the next start after a backoff. */
static void
room_schedule_restart(struct room *r)
{
	const struct cfg_room_opts *o = &r->res->opts;
	uint64_t delay = r->restart_delay_ms, next, max;

	server_timer_set(r->restart_timer, delay);
	/* From a restart_delay of 0 the backoff grows from 1 ms, up to
	 * room_max_delay. */
	next = delay > 0 ? delay * 2 : 1;
	max = room_max_delay(o);
	r->restart_delay_ms = next > max ? max : next;
	log_info("room %s: starting the backend again in %llu ms (failure %u)",
	    r->path, (unsigned long long)delay, r->failures);
}

static void
room_restart_cb(evutil_socket_t fd, short events, void *arg)
{
	struct room *r = arg;
	struct refusal rf;

	if (room_start_backend(r, NULL, &rf) == 0) {
		stats.backend_restarts++;
		return;
	}
	r->failures++;
	room_schedule_restart(r);
}

void
room_former_ended(struct room *r)
{
	r->former = NULL;
	/* Its successor now (room_replace_backend). */
	if (r->backend == NULL && !evtimer_pending(r->restart_timer, NULL))
		server_timer_set(r->restart_timer, 0);
}

/* Hold the room's clients while its backend is down, until hold_timeout
 * after the outage began. */
static void
room_hold(struct room *r)
{
	uint64_t now = server_now_ms(), deadline;

	if (room_holding(r))
		return;
	if (r->outage_since_ms == 0)
		r->outage_since_ms = now;
	deadline = r->outage_since_ms + r->res->opts.hold_timeout_ms;
	server_timer_set(r->hold_timer, deadline > now ? deadline - now : 0);
	if (r->n_members + r->n_pending > 0)
		log_warn("room %s: holding %zu clients for up to %llu ms until "
		    "the backend is back", r->path, r->n_members + r->n_pending,
		    (unsigned long long)r->res->opts.hold_timeout_ms);
}

/* Close every client: the backend is gone and will not be waited for. */
static void
room_close_clients(struct room *r, unsigned code)
{
	struct client *c;

	while ((c = TAILQ_FIRST(&r->members)) != NULL)
		client_backend_lost(c, code);
	while ((c = TAILQ_FIRST(&r->pending)) != NULL)
		client_backend_lost(c, code);
}

static void
room_hold_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
	struct room *r = arg;
	size_t clients = r->n_members + r->n_pending, dropped;

	stats.hold_timeouts++;
	r->outage_since_ms = 0;		/* the next clients wait afresh */
	/* A shared room's held records are also other nodes' clients',
	 * which stay: they wait for the backend still. */
	dropped = r->cl != NULL ? 0 : room_discard_held(r);
	log_warn("room %s: no backend after %llu ms: closing %zu clients "
	    "(1012) and discarding %zu held messages", r->path,
	    (unsigned long long)r->res->opts.hold_timeout_ms, clients, dropped);
	room_close_clients(r, WS_CLOSE_SERVICE_RESTART);
	room_update_pause(r);
	if (r->res->is_prefix)
		room_free(r);	/* with no clients, not started again */
}

/* A new pattern room may be made for c: 0, or -1 with *rf what to refuse
 * c with.  The room is charged to c's address, if addresses are counted,
 * until it stops: see docs/POLICY.md. */
/* The shared room of res at path, or NULL. */
static struct room *
room_find(const struct cfg_resource *res, const char *path)
{
	struct room key, **found;

	key.res = res;
	key.path = (char *)(uintptr_t)path;
	found = tfind(&key, &server.room_index, room_cmp);
	return found != NULL ? *found : NULL;
}

static int
room_may_create(const struct cfg_resource *res, struct client *c,
    struct refusal *rf)
{
	static struct log_ratelimit budget;
	unsigned long suppressed;
	size_t n = server.resource_rooms[room_res_index(res)];

	if (server.n_rooms >= server.max_rooms ||
	    (res->max_rooms > 0 && n >= res->max_rooms)) {
		if (log_ratelimit(&budget, &suppressed))
			log_warn("%s: no new room at %s: %s reached%s", c->name,
			    res->pattern, server.n_rooms >= server.max_rooms ?
			    "max_rooms" : "the resource's max_rooms",
			    suppressed ? " (more suppressed)" : "");
		return refuse(rf, 503, "too many rooms");
	}
	if (c->ip != NULL && c->ip->count >= server.cfg->max_connections_per_ip)
		return refuse(rf, 429, "too many rooms made from your address");
	return 0;
}

struct room *
room_get(const char *path, size_t len, const struct cfg_resource *res,
    struct client *c, char **envp, struct refusal *rf)
{
	struct room key, *r, **found;
	bool created = false, start_failed = false;

	refuse(rf, 503, "out of memory");
	if (res->opts.mode == CFG_MODE_CLIENT) {
		/* Its own room, with its own backend, started now. */
		if ((r = room_new(path, len, res, true)) == NULL)
			return NULL;
		r->solo = c;
		if (room_start_backend(r, envp, rf) != 0) {
			room_free(r);
			return NULL;
		}
		return r;
	}
	key.res = res;
	key.path = strndup(path, len);
	if (key.path == NULL)
		return NULL;
	found = tfind(&key, &server.room_index, room_cmp);
	free(key.path);
	if (found != NULL) {
		r = *found;
	} else {
		if (room_may_create(res, c, rf) != 0)
			return NULL;
		if ((r = room_new(path, len, res, false)) == NULL)
			return NULL;
		created = true;
		if (c->ip != NULL) {
			r->ip = c->ip;
			r->ip->count++;
		}
	}
	/* Shared: the cluster runs its backend somewhere, and a Redis that
	 * is away holds the room's clients (cluster.c). */
	if (r->cl != NULL)
		return r;
	if (r->backend == NULL && !evtimer_pending(r->restart_timer, NULL) &&
	    r->former == NULL && room_start_backend(r, NULL, rf) != 0) {
		r->failures++;
		room_schedule_restart(r);
		start_failed = true;	/* *rf says why */
	}
	if (r->backend == NULL) {
		/* Down.  A room whose backend was never up turns clients
		 * away, as does one that closes its clients when its backend
		 * fails; a held room takes the client in, to wait with the
		 * others. */
		if (r->former == NULL && (!r->ever_up ||
		    res->opts.on_backend_down != CFG_BACKEND_DOWN_HOLD)) {
			if (created || (res->is_prefix &&
			    r->n_members + r->n_pending == 0))
				room_free(r);
			if (start_failed && rf->status == 503)
				;	/* max_processes, out of resources: the
					 * start's own reason */
			else if (res->opts.on_backend_down ==
			    CFG_BACKEND_DOWN_HOLD)
				refuse(rf, 503, "the room's backend is not "
				    "running");
			else
				refuse(rf, 502, "the room's backend is "
				    "unavailable");
			return NULL;
		}
		room_hold(r);
	}
	return r;
}

int
room_start_exact(void)
{
	const struct cfg *cfg = server.cfg;
	struct refusal rf;
	struct room *r;
	size_t i;

	for (i = 0; i < cfg->n_resources; i++) {
		const struct cfg_resource *res = &cfg->resources[i];

		if (res->is_prefix || res->opts.mode == CFG_MODE_CLIENT)
			continue;
		if (room_find(res, res->pattern) != NULL)
			continue;	/* taken over in an upgrade */
		r = room_new(res->pattern, strlen(res->pattern), res, false);
		if (r == NULL)
			return -1;
		if (r->cl != NULL)
			continue;	/* started where its lease is */
		/* An unreachable backend is no reason not to start: the
		 * room tries again after a backoff. */
		if (room_start_backend(r, NULL, &rf) != 0) {
			r->failures++;
			room_schedule_restart(r);
		}
	}
	return 0;
}

void
room_add_pending(struct room *r, struct client *c)
{
	TAILQ_INSERT_TAIL(&r->pending, c, room_entry);
	r->n_pending++;
	c->room = r;
}

void
room_add_member(struct room *r, struct client *c)
{
	TAILQ_INSERT_TAIL(&r->members, c, room_entry);
	r->n_members++;
	c->room = r;
	if (r->paused)
		client_set_reading(c, false);
}

void
room_promote(struct room *r, struct client *c)
{
	TAILQ_REMOVE(&r->pending, c, room_entry);
	r->n_pending--;
	TAILQ_INSERT_TAIL(&r->members, c, room_entry);
	r->n_members++;
	if (r->paused)
		client_set_reading(c, false);
}

static void
room_linger_cb(evutil_socket_t fd, short events, void *arg)
{
	struct room *r = arg;

	/* The holder of a shared room keeps it while other nodes have
	 * clients in it. */
	if (r->n_members == 0 && r->n_pending == 0 &&
	    (r->cl == NULL || !cluster_room_busy(r)))
		room_free(r);
}

void
room_consider_linger(struct room *r)
{
	if (r->res->is_prefix && r->n_members == 0 && r->n_pending == 0 &&
	    !server.stopping)
		server_timer_set(r->linger_timer, r->res->opts.linger_ms);
}

void
room_remove(struct room *r, struct client *c)
{
	if (c->state == CLIENT_AUTHORIZING) {
		TAILQ_REMOVE(&r->pending, c, room_entry);
		r->n_pending--;
	} else {
		TAILQ_REMOVE(&r->members, c, room_entry);
		r->n_members--;
	}
	c->room = NULL;
	if (r->is_solo) {
		/* Its backend goes with it, from the timer: the room may be
		 * in use further up the stack. */
		r->solo = NULL;
		server_timer_set(r->linger_timer, 0);
		return;
	}
	if (!r->res->is_prefix || r->n_members > 0 || r->n_pending > 0 ||
	    server.stopping)
		return;
	/* Even a linger of 0 goes through the timer: the room may be in
	 * use further up the stack. */
	server_timer_set(r->linger_timer, r->res->opts.linger_ms);
}

bool
room_is_holding(const struct room *r)
{
	return room_holding(r);
}

bool
room_turns_away(const struct room *r)
{
	const struct cfg_room_opts *o = &r->res->opts;

	/* A shared room's queue is what waits to go to Redis, or all of a
	 * full stream (cluster_room_backlog). */
	if (r->cl != NULL) {
		size_t held, queued = cluster_room_backlog(r, &held);

		return queued > ROOM_TURN_AWAY * o->backend_buffer ||
		    held > ROOM_TURN_AWAY * (o->hold_buffer + o->backend_buffer);
	}
	return room_queued(r) > ROOM_TURN_AWAY * o->backend_buffer ||
	    room_held_bytes(r) > ROOM_TURN_AWAY * (o->hold_buffer +
	    o->backend_buffer);
}

void
room_write(struct room *r, struct client *c, bool open, char *line,
    size_t len)
{
	/* Opens and closes count against backend_buffer too: clients that
	 * come and go could otherwise grow the queue of a backend that does
	 * not read without bound. */
	room_record(r, open ? JOURNAL_OPEN : JOURNAL_CLOSE, c->id, line, len);
	room_update_pause(r);
}

/*
 * A record for the backend: journaled (it stays until the backend has
 * read it, and a backend that fails before has it again in the next
 * one), then written if a backend is up.  Takes line.  A solo room has
 * no journal: its backend does not come back.
 */
static void
room_record(struct room *r, enum journal_kind kind, uint64_t client,
    char *line, size_t len)
{
	if (r->is_solo) {
		if (r->backend != NULL)
			backend_write(r->backend, line, len);
		else
			free(line);
		return;
	}
	if (r->cl != NULL) {
		cluster_record(r, kind, line, len);
		return;
	}
	room_journal_record(r, kind, client, line, len);
}

/* Into the journal, and to the backend if it is up: the record's entry,
 * or NULL. */
static struct journal_entry *
room_journal_record(struct room *r, enum journal_kind kind, uint64_t client,
    char *line, size_t len)
{
	struct journal_entry *e;
	char field[32], *numbered;
	uint64_t seq = 0;

	if (r->res->opts.delivery == CFG_DELIVERY_ACK) {
		seq = r->journal.next_seq++;
		snprintf(field, sizeof(field), "\"seq\":%llu",
		    (unsigned long long)seq);
		numbered = record_add_field(line, len, field, &len);
		free(line);
		if ((line = numbered) == NULL)
			return NULL;
	}
	if ((e = journal_append(&r->journal, line, len, kind, client,
	    seq)) == NULL)
		return NULL;
	if (r->backend != NULL)
		backend_write_journal(r->backend, e->line, e->len);
	else
		stats.records_held++;
	return e;
}

struct journal_entry *
room_feed(struct room *r, enum journal_kind kind, char *line, size_t len)
{
	return room_journal_record(r, kind, 0, line, len);
}

bool
room_backend_busy(const struct room *r)
{
	const struct cfg_room_opts *o = &r->res->opts;

	return room_queued(r) > o->backend_buffer ||
	    room_held_bytes(r) > o->hold_buffer;
}

void
room_recheck_pause(struct room *r)
{
	room_update_pause(r);
}

void
room_cluster_start(struct room *r)
{
	struct refusal rf;

	evtimer_del(r->restart_timer);
	r->restart_delay_ms = r->res->opts.restart_delay_ms;
	r->failures = 0;
	if (room_start_backend(r, NULL, &rf) == 0)
		return;
	r->failures++;
	room_schedule_restart(r);
}

void
room_backend_release(struct room *r)
{
	struct backend *b = r->backend;

	r->backend = NULL;
	evtimer_del(r->restart_timer);
	evtimer_del(r->hold_timer);
	r->outage_since_ms = 0;
	if (b != NULL) {
		backend_forget_queued(b);
		backend_stop(b);
	}
	/* What it had not read is in the room's stream still. */
	journal_clear(&r->journal);
	if (r->res->is_prefix && r->n_members == 0 && r->n_pending == 0)
		room_consider_linger(r);
}

void
room_cluster_outage(struct room *r)
{
	size_t clients = r->n_members + r->n_pending;

	stats.hold_timeouts++;
	log_warn("room %s: redis away for hold_timeout (%llu ms): closing "
	    "%zu clients (1012)", r->path,
	    (unsigned long long)r->res->opts.hold_timeout_ms, clients);
	room_close_clients(r, WS_CLOSE_SERVICE_RESTART);
	room_update_pause(r);
}

int
room_write_message(struct room *r, struct client *c, bool binary,
    const uint8_t *data, size_t len)
{
	const struct cfg_room_opts *o = &r->res->opts;
	size_t line_len;
	char *line;

	if (o->format == CFG_FORMAT_LINES) {
		/* The message as it is; a text message holding newlines is
		 * several lines, as websocketd writes it. */
		if (r->backend != NULL)
			backend_write_data(r->backend, data, len, !o->binary);
	} else {
		line = record_message(c->name, binary, data, len, &line_len);
		if (line == NULL)
			return -1;
		room_record(r, JOURNAL_MESSAGE, c->id, line, line_len);
	}
	room_update_pause(r);
	return 0;
}

void
room_solo_drained(struct room *r)
{
	struct client *c = r->solo;

	if (c != NULL && r->backend != NULL && r->backend->paused &&
	    client_queued(c) <= r->res->opts.max_client_buffer / 4)
		backend_set_reading(r->backend, true);
}

/* A solo room's program is not read while its client has much unread:
 * it waits, as it would writing to a slow terminal. */
static void
room_solo_check(struct room *r)
{
	struct client *c = r->solo;

	if (c != NULL && r->backend != NULL && !r->backend->paused &&
	    client_queued(c) > r->res->opts.max_client_buffer / 2)
		backend_set_reading(r->backend, false);
}

void
room_backend_drained(struct room *r)
{
	if (r->cl != NULL)
		cluster_room_drained(r);	/* its stream is read again */
	if (r->paused)
		room_update_pause(r);
}

/* The client a command names, if it is in this room in the given state. */
static struct client *
room_target(struct room *r, const char *name, enum client_state state,
    const char *command)
{
	struct client *c = client_find(name);

	if (c != NULL && c->room == r && c->state == state)
		return c;
	/* Another node's client: that node carries the command out. */
	if (r->cl != NULL && cluster_name_remote(name))
		return NULL;
	stats.commands_dropped++;
	log_debug("room %s: %s for %s dropped: no such client %s", r->path,
	    command, name, state == CLIENT_OPEN ? "open" : "authorizing");
	return NULL;
}

static void
room_send(struct room *r, const struct record_cmd *cmd)
{
	struct client_msg m;
	struct client *c;
	size_t i;

	client_msg_init(&m, cmd->binary ? WS_OP_BINARY : WS_OP_TEXT,
	    cmd->payload, cmd->payload_len);
	for (i = 0; i < cmd->n_clients; i++) {
		c = room_target(r, cmd->clients[i], CLIENT_OPEN, "send");
		if (c != NULL)
			client_msg_send(c, &m);
	}
	client_msg_done(&m);
}

static void
room_broadcast(struct room *r, const struct record_cmd *cmd)
{
	struct client_msg m;
	struct client *c, *next;
	size_t i;

	if (r->n_members == 0)
		return;
	client_msg_init(&m, cmd->binary ? WS_OP_BINARY : WS_OP_TEXT,
	    cmd->payload, cmd->payload_len);
	/* The members to leave out are marked first, each found by its id
	 * in constant time, so that a command costs members plus ids, not
	 * their product.  A marked member is never sent to, and so never
	 * closed here: the loop finds and unmarks every one. */
	for (i = 0; i < cmd->n_except; i++) {
		c = client_find(cmd->except[i]);
		if (c != NULL && c->room == r && c->state == CLIENT_OPEN)
			c->excepted = true;
	}
	/* A slow member is closed, and so leaves the list, as it is sent
	 * to. */
	for (c = TAILQ_FIRST(&r->members); c != NULL; c = next) {
		next = TAILQ_NEXT(c, room_entry);
		if (c->excepted)
			c->excepted = false;
		else
			client_msg_send(c, &m);
	}
	client_msg_done(&m);
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
	case RECORD_ACK:
		if (r->res->opts.delivery != CFG_DELIVERY_ACK) {
			static struct log_ratelimit budget;
			unsigned long suppressed;

			stats.records_malformed++;
			if (log_ratelimit(&budget, &suppressed))
				log_warn("room %s: ack ignored: the resource "
				    "has delivery = socket%s", r->path,
				    suppressed ? " (more suppressed)" : "");
			break;
		}
		if (journal_ack(&r->journal, cmd->seq) > 0)
			room_update_pause(r);
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
	if (r->is_solo)
		room_solo_check(r);
}

void
room_backend_lost(struct room *r, unsigned code)
{
	const struct cfg_room_opts *o = &r->res->opts;
	struct backend *b = r->backend;
	size_t clients = r->n_members + r->n_pending;

	r->backend = NULL;
	if (r->is_solo) {
		/* Its client ends with it, once what it sent has gone. */
		if (b != NULL)
			backend_stop(b);
		if (r->solo != NULL)
			client_backend_lost(r->solo, code);
		else
			server_timer_set(r->linger_timer, 0);
		return;
	}
	if (b != NULL) {
		/* The journal has what was queued: the next backend gets it,
		 * or (on_backend_down = close) nobody, as its clients go. */
		backend_forget_queued(b);
		backend_stop(b);
	}
	/* A shared room keeps what its stream gave it: other nodes'
	 * clients stay whatever the policy, and the stream no longer has
	 * it. */
	if (o->on_backend_down == CFG_BACKEND_DOWN_HOLD || r->cl != NULL)
		journal_rewind(&r->journal);
	else
		journal_clear(&r->journal);
	/* A backend that ran a good while failed on its own, not in a
	 * crash loop: start the backoff, and the outage, afresh. */
	if (server_now_ms() - r->backend_since_ms >= room_max_delay(o)) {
		r->restart_delay_ms = o->restart_delay_ms;
		r->failures = 0;
		r->outage_since_ms = 0;
	}
	r->failures++;
	if (clients == 0 && r->res->is_prefix &&
	    (r->cl == NULL || !cluster_room_busy(r))) {
		room_free(r);
		return;
	}
	if (o->on_backend_down == CFG_BACKEND_DOWN_HOLD) {
		room_hold(r);
	} else {
		if (clients > 0)
			log_warn("room %s: closing %zu clients (1011) and failing "
			    "%zu handshakes (502)", r->path, r->n_members,
			    r->n_pending);
		room_close_clients(r, WS_CLOSE_INTERNAL_ERROR);
		if (r->res->is_prefix) {
			room_free(r);
			return;
		}
	}
	room_schedule_restart(r);
	room_update_pause(r);
}

/* Close every client of the room with 1001 and why (503 for those in
 * their handshake), let the backend read their close records, and stop
 * it: the room is gone. */
static void
room_retire(struct room *r, const char *why)
{
	struct client *c;

	evtimer_del(r->hold_timer);
	while ((c = TAILQ_FIRST(&r->members)) != NULL)
		client_go_away(c, why);
	while ((c = TAILQ_FIRST(&r->pending)) != NULL)
		client_go_away(c, why);
	room_free(r);
}

void
room_shutdown(struct room *r)
{
	room_retire(r, "server shutting down");
}

/*
 * The room's backend changed (a reload).  The old one ends as a room's
 * backend does when the room stops: it gets what was queued for it, then
 * EOF, and what it answers meanwhile is carried out.  The new one starts
 * once the old one has ended (backend_free), through the resume path, so
 * that it learns of every client and gets what came meanwhile, held as
 * during a restart: the answers of the two never interleave, and clients
 * notice nothing but the pause.
 */
static void
room_replace_backend(struct room *r)
{
	const struct cfg_room_opts *o = &r->res->opts;
	struct backend *b = r->backend;
	struct refusal rf;

	evtimer_del(r->restart_timer);
	r->restart_delay_ms = o->restart_delay_ms;
	r->failures = 0;
	if (b != NULL) {
		log_info("room %s: backend is now %s: starting it once the "
		    "old one has ended", r->path, r->res->backend);
		if (r->former != NULL)
			r->former->former = NULL;
		r->former = b;
		b->former = r;
		backend_stop(b);
		journal_clear(&r->journal);
		if (r->n_members + r->n_pending > 0)
			room_hold(r);
		room_update_pause(r);
		return;
	}
	log_info("room %s: backend is now %s: starting it", r->path,
	    r->res->backend);
	if (room_start_backend(r, NULL, &rf) == 0)
		return;
	r->failures++;
	if (o->on_backend_down == CFG_BACKEND_DOWN_HOLD)
		room_hold(r);
	room_schedule_restart(r);
	room_update_pause(r);
}

/* Whether a room of resource a must be served by another backend when its
 * resource becomes b. */
static bool
room_backend_changed(const struct cfg_resource *a, const struct cfg_resource *b)
{
	size_t i;

	if (strcmp(a->backend, b->backend) != 0 ||
	    a->opts.format != b->opts.format || a->opts.binary != b->opts.binary ||
	    a->opts.delivery != b->opts.delivery)
		return true;
	for (i = 0; a->opts.env[i] != NULL || b->opts.env[i] != NULL; i++)
		if (a->opts.env[i] == NULL || b->opts.env[i] == NULL ||
		    strcmp(a->opts.env[i], b->opts.env[i]) != 0)
			return true;
	for (i = 0; a->opts.passenv[i] != NULL || b->opts.passenv[i] != NULL;
	    i++)
		if (a->opts.passenv[i] == NULL || b->opts.passenv[i] == NULL ||
		    strcmp(a->opts.passenv[i], b->opts.passenv[i]) != 0)
			return true;
	return false;
}

static void
room_index_nofree(void *node)
{
	(void)node;
}

void
room_reload(const struct cfg *cfg)
{
	const struct cfg_resource *nr;
	struct room *r, *next;
	struct refusal rf;
	size_t i;
	bool changed;

	/* The index is keyed by resource: it is rebuilt for the new ones. */
	tdestroy(server.room_index, room_index_nofree);
	server.room_index = NULL;
	memset(server.resource_rooms, 0, (cfg->n_resources + 1) *
	    sizeof(*server.resource_rooms));
	server.n_rooms = 0;
	LIST_FOREACH(r, &server.rooms, entry)
		r->indexed = false;
	for (r = LIST_FIRST(&server.rooms); r != NULL; r = next) {
		next = LIST_NEXT(r, entry);
		nr = cfg_find_resource(cfg, r->res->pattern);
		if (nr == NULL || nr->opts.mode != r->res->opts.mode) {
			/* Gone (or no longer the same kind of thing).  Its
			 * old resource serves it while it closes: the old
			 * configuration is freed after. */
			log_info("room %s: its resource %s is gone: closing it",
			    r->path, r->res->pattern);
			room_retire(r, "room removed");
			continue;
		}
		changed = room_backend_changed(r->res, nr);
		r->res = nr;
		if (!r->is_solo) {
			r->indexed = true;
			tsearch(r, &server.room_index, room_cmp);
			server.n_rooms++;
			server.resource_rooms[room_res_index(nr)]++;
			if (changed)
				room_replace_backend(r);
		}
	}
	/* New exact rooms start now; old ones kept their backends. */
	for (i = 0; i < cfg->n_resources; i++) {
		struct room key;

		nr = &cfg->resources[i];
		if (nr->is_prefix || nr->opts.mode == CFG_MODE_CLIENT)
			continue;
		key.res = nr;
		key.path = nr->pattern;
		if (tfind(&key, &server.room_index, room_cmp) != NULL)
			continue;
		if ((r = room_new(nr->pattern, strlen(nr->pattern), nr,
		    NULL)) == NULL)
			continue;
		log_info("room %s: new", r->path);
		if (room_start_backend(r, NULL, &rf) != 0) {
			r->failures++;
			room_schedule_restart(r);
		}
	}
}

/* The upgrade (upgrade.c): handing rooms to a new process. */

bool
room_transferable(const struct room *r)
{
	/* A shared room always goes (its clients that cannot are reported
	 * gone to its backend there); a solo room goes with its client. */
	if (!r->is_solo)
		return true;
	return r->solo != NULL && client_transferable(r->solo) &&
	    r->backend != NULL && backend_transferable(r->backend);
}

size_t
room_save(struct room *r, struct blob *w)
{
	const struct journal_entry *e;
	bool up = r->backend != NULL && backend_transferable(r->backend);
	bool reached = false, sent;
	struct client *c;
	uint32_t n;
	size_t moved;

	blob_put_str(w, r->path);
	blob_put_str(w, r->res->pattern);
	blob_put_str(w, r->res->backend);
	blob_put_u8(w, r->is_solo);
	blob_put_u8(w, r->ever_up);
	blob_put_u32(w, r->failures);
	blob_put_u8(w, r->ip != NULL);
	if (r->ip != NULL) {
		blob_put_u32(w, (uint32_t)r->ip->family);
		blob_put_bytes(w, r->ip->addr, sizeof(r->ip->addr));
	}
	/* The journal; without a backend to take over, as a failure would
	 * leave it: whatever was sent may have been read. */
	blob_put_u64(w, r->journal.next_seq);
	blob_put_u32(w, (uint32_t)r->journal.n);
	for (e = r->journal.head; e != NULL; e = e->next) {
		if (e == r->journal.unsent)
			reached = true;
		/* Written, in whole or in part. */
		sent = !reached || (e == r->journal.unsent &&
		    r->journal.unsent_off > 0);
		blob_put_bytes(w, e->line, e->len);
		blob_put_u64(w, e->client);
		blob_put_u64(w, e->seq);
		blob_put_u8(w, (uint8_t)e->kind);
		blob_put_u8(w, e->maybe_read || (!up && sent));
		blob_put_u8(w, e->marked);
	}
	blob_put_u64(w, up ? r->journal.sent_bytes : 0);
	blob_put_u8(w, up);
	if (up)
		backend_save(r->backend, w);
	n = 0;
	TAILQ_FOREACH(c, &r->members, room_entry)
		n += client_transferable(c);
	moved = n;
	blob_put_u32(w, n);
	TAILQ_FOREACH(c, &r->members, room_entry)
		if (client_transferable(c))
			client_save(c, w);
	/* The rest leave as the new process starts: its backend learns. */
	n = (uint32_t)r->n_pending;
	TAILQ_FOREACH(c, &r->members, room_entry)
		n += !client_transferable(c) && c->announced;
	blob_put_u32(w, n);
	TAILQ_FOREACH(c, &r->members, room_entry)
		if (!client_transferable(c) && c->announced)
			blob_put_str(w, c->name);
	TAILQ_FOREACH(c, &r->pending, room_entry)
		blob_put_str(w, c->name);
	return moved;
}

/* Client id left while no process held its connection: its backend
 * learns it as a close record (code, reason). */
static void
room_gone_while_away(struct room *r, uint64_t id, unsigned code,
    const char *reason)
{
	char name[24];
	size_t len;
	char *line;

	snprintf(name, sizeof(name), "c%llu", (unsigned long long)id);
	line = record_close(name, code, reason, strlen(reason), &len);
	if (line != NULL)
		room_record(r, JOURNAL_CLOSE, id, line, len);
}

/*
 * Take over a room written by room_save, with its backend and clients.
 * NULL, with *why set, when it cannot be; the process then gives up the
 * upgrade as it stands (and exits without freeing: nothing of what it
 * took is closed).
 */
struct room *
room_load(struct blob *w, const char **why)
{
	const struct cfg_resource *res;
	struct journal_entry *e;
	const uint8_t *line, *addr = NULL;
	char *path, *pattern, *backend, *copy, *name;
	bool is_solo, ever_up, up, maybe_read, marked, gone;
	uint32_t failures, n, i, family = 0;
	uint64_t client, seq, sent, gone_id;
	size_t len, addr_len;
	struct client *c;
	struct room *r;
	uint8_t kind;

	*why = "the state is damaged";
	path = blob_get_str(w, 1 << 20);
	pattern = blob_get_str(w, 1 << 20);
	backend = blob_get_str(w, 1 << 20);
	is_solo = blob_get_bool(w);
	ever_up = blob_get_bool(w);
	failures = blob_get_u32(w);
	if (blob_get_bool(w)) {
		family = blob_get_u32(w);
		addr = blob_get_bytes(w, &addr_len, 16);
		if (addr_len != 16)
			w->failed = true;
	}
	if (w->failed || path == NULL || pattern == NULL || backend == NULL)
		return NULL;
	res = cfg_find_resource(server.cfg, pattern);
	if (res == NULL || (res->opts.mode == CFG_MODE_CLIENT) != is_solo ||
	    strcmp(res->backend, backend) != 0) {
		log_error("upgrade: room %s: its resource %s is not the same in "
		    "%s", path, pattern, server.cfg->file);
		*why = "the configuration changed: reload it (SIGHUP) first";
		return NULL;
	}
	*why = "out of memory";
	if ((r = room_new(path, strlen(path), res, is_solo)) == NULL)
		return NULL;
	r->ever_up = ever_up;
	r->failures = failures;
	if (addr != NULL)
		r->ip = client_ip_count((int)family, addr, NULL);
	*why = "the state is damaged";
	r->journal.next_seq = blob_get_u64(w);
	n = blob_get_u32(w);
	for (i = 0; i < n && !w->failed; i++) {
		line = blob_get_bytes(w, &len, SIZE_MAX);
		client = blob_get_u64(w);
		seq = blob_get_u64(w);
		kind = blob_get_u8(w);
		maybe_read = blob_get_bool(w);
		marked = blob_get_bool(w);
		if (w->failed || kind > JOURNAL_CLOSE || len == 0 ||
		    (copy = malloc(len)) == NULL)
			return NULL;
		memcpy(copy, line, len);
		e = journal_append(&r->journal, copy, len,
		    (enum journal_kind)kind, client, seq);
		if (e == NULL)
			return NULL;
		e->maybe_read = maybe_read;
		e->marked = marked;
	}
	sent = blob_get_u64(w);
	up = blob_get_bool(w);
	if (w->failed || sent > r->journal.bytes || (sent > 0 && !up))
		return NULL;
	journal_sent(&r->journal, sent);
	if (up) {
		if ((r->backend = backend_load(r, w, &gone)) == NULL && !gone)
			return NULL;
		if (r->backend == NULL)
			journal_rewind(&r->journal);	/* as after a failure */
		r->backend_since_ms = server_now_ms();
	}
	n = blob_get_u32(w);
	for (i = 0; i < n && !w->failed; i++) {
		if ((c = client_load(w, r, &gone_id)) == NULL && gone_id == 0)
			return NULL;
		if (c == NULL) {
			room_gone_while_away(r, gone_id, WS_CLOSE_ABNORMAL, "");
			continue;
		}
		TAILQ_INSERT_TAIL(&r->members, c, room_entry);
		r->n_members++;
		c->room = r;
		if (is_solo)
			r->solo = c;
	}
	/* A solo room goes only with both (backend_transferable: never to
	 * the fd store, whose keeper kills the programs); its client may
	 * have gone meanwhile, and its program goes with it, from the
	 * loop (nothing is done before). */
	if (w->failed || (is_solo && r->backend == NULL))
		return NULL;
	if (is_solo && r->solo == NULL)
		server_timer_set(r->linger_timer, 0);
	if (r->backend != NULL && is_solo) {
		free(r->backend->label);
		r->backend->label = strdup(r->solo->name);
	}
	/* The clients the old process could not hand over: gone, for the
	 * backend, as the upgrade closes them (1001). */
	n = blob_get_u32(w);
	for (i = 0; i < n && !w->failed; i++) {
		name = blob_get_str(w, 64);
		if (name == NULL || name[0] != 'c')
			return NULL;
		room_gone_while_away(r, strtoull(name + 1, NULL, 10),
		    WS_CLOSE_GOING_AWAY, "server upgrading");
		free(name);
	}
	if (w->failed)
		return NULL;
	free(path);
	free(pattern);
	free(backend);
	if (r->backend == NULL) {
		/* Its backend was failing or stopping: a new one, resumed,
		 * after the usual backoff. */
		if (r->res->opts.on_backend_down == CFG_BACKEND_DOWN_HOLD &&
		    r->n_members > 0)
			room_hold(r);
		room_schedule_restart(r);
	}
	room_update_pause(r);
	return r;
}

void
room_abandon(struct room *r)
{
	struct client *c, *next;
	struct backend *b = r->backend;

	if (b != NULL) {
		if (backend_transferable(b)) {
			backend_abandon(b);
		} else {
			/* Another one starts in the new process. */
			r->backend = NULL;
			backend_forget_queued(b);
			backend_stop(b);
		}
	}
	for (c = TAILQ_FIRST(&r->members); c != NULL; c = next) {
		next = TAILQ_NEXT(c, room_entry);
		if (client_transferable(c)) {
			client_abandon(c);
			continue;
		}
		/* Closed by this process's stop; its close record went. */
		c->announced = false;
		TAILQ_REMOVE(&r->members, c, room_entry);
		r->n_members--;
		c->room = NULL;
	}
	while ((c = TAILQ_FIRST(&r->pending)) != NULL) {
		c->announced = false;
		TAILQ_REMOVE(&r->pending, c, room_entry);
		r->n_pending--;
		c->room = NULL;
	}
	r->solo = NULL;
	room_free(r);
}
