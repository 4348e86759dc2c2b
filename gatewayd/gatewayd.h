/*
 * gatewayd.h: the I/O glue's objects and the functions they call on each
 * other.  Everything here runs on one libevent loop.
 *
 *   server   the listeners, signals, the tables of rooms and clients
 *   client   one TCP connection: handshake, frames, close handshake
 *   room     one matched path: its members and its backend
 *   backend  a room's program: a Unix socket connection or a process
 *
 * A room outlives its backend (the backend may fail and be started again)
 * and a backend may outlive its room (a stopping process is reaped later),
 * so each points to the other only while both are attached.
 */
#ifndef GATEWAYD_GATEWAYD_H
#define GATEWAYD_GATEWAYD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include <event2/event.h>
#include <event2/bufferevent.h>

#include "blob.h"
#include "cfg.h"
#include "conn.h"
#include "env.h"
#include "handshake.h"
#include "idmap.h"
#include "journal.h"
#include "log.h"
#include "record.h"
#include "ws_deflate.h"
#include "ws_frame.h"

struct room;
struct backend;

/* Why a client cannot have its room: the HTTP status it is answered, and
 * the body. */
struct refusal {
	int status;
	const char *why;
};

/* Fill rf; returns -1, for "return refuse(...)". */
static inline int
refuse(struct refusal *rf, int status, const char *why)
{
	rf->status = status;
	rf->why = why;
	return -1;
}

/* server.c */

struct server {
	struct event_base *base;
	struct cfg *cfg;
	struct event *signals[5];	/* TERM, INT, CHLD, HUP, USR2 */
	char **argv;			/* as started: an upgrade starts the
					 * binary at exe with them again */
	char *exe;			/* the binary's path at start */
	struct event *shutdown_timer;
	bool stopping;

	uint64_t next_client_id;
	size_t n_clients;		/* every connection, any state */
	size_t n_admin;			/* of which on the admin listener */
	size_t n_refusing;		/* of which refused, answered over TLS */
	LIST_HEAD(, client) clients;
	struct idmap client_index;	/* clients by id */
	void *ip_index;			/* tsearch tree of struct ip_count */
	void *room_index;		/* tsearch tree by path (not solo rooms) */
	LIST_HEAD(, room) rooms;	/* every room, solo rooms too */
	size_t n_rooms;			/* shared rooms: not solo ones */
	size_t *resource_rooms;		/* shared rooms per resource */
	uint64_t max_rooms;		/* cfg's, "auto" resolved */
	LIST_HEAD(, backend) backends;	/* every backend, attached or not */
	struct idmap processes;		/* spawned backends by pid */
	size_t n_processes;		/* spawned and not yet reaped */
	uint64_t max_processes;		/* cfg's, "auto" resolved */
	int *static_fds;		/* parallel to cfg->statics */
	size_t output_bytes;		/* queued to every client */
	size_t output_peak;		/* since memory was last given back */
	struct event *housekeeping;	/* once a second */
	struct event *watchdog;		/* WATCHDOG=1, with WatchdogSec */
	uint64_t watchdog_ms;
	struct event *output_check;	/* max_output_memory passed */
};

extern struct server server;

/* Start the listeners and the exact rooms; returns 0 or -1 (logged). */
int server_start(struct cfg *cfg);
/* Run the loop until a graceful stop has finished; returns the exit code. */
int server_run(void);
/* An upgrade handed everything it could over: stop with the rest. */
void server_stop_after_upgrade(void);
void server_free(void);
/* Called whenever a client or backend goes away during a stop, to end the
 * loop once nothing is left. */
void server_check_stopped(void);
/* Milliseconds on a monotonic clock, coarse (a few ms): the daemon's
 * timeouts and backoffs are counted in ms to hours. */
uint64_t server_now_ms(void);
/* (Re)arm the timer ev to fire in ms milliseconds. */
void server_timer_set(struct event *ev, uint64_t ms);
/* The output queued to clients passed max_output_memory: shed it once
 * the current callback is done (client_shed_output). */
void server_output_over(void);

/* cluster.c: rooms shared through Redis (docs/CLUSTER.md) */

struct cluster_room;

/* Connect to [cluster]'s Redis, if cfg has one: 0, or -1 (logged). */
int cluster_start(const struct cfg *cfg);
void cluster_free(void);
bool cluster_on(void);
/* What ends every client id of this node: "" without a cluster. */
const char *cluster_suffix(void);
/* For /metrics: Redis is up; rooms whose backend this node runs;
 * records of its clients not yet in Redis. */
void cluster_gauges(bool *up, size_t *held, size_t *waiting);
/* A client id of another node's. */
bool cluster_name_remote(const char *name);
/* Whether rooms of res are shared. */
bool cluster_applies(const struct cfg_resource *res);
int cluster_room_attach(struct room *r);
void cluster_room_detach(struct room *r);
/* This node runs the room's backend. */
bool cluster_room_holds(const struct room *r);
/* The holder of a room that other nodes have clients in. */
bool cluster_room_busy(const struct room *r);
/* The next backend of the room gets a resumed hello. */
bool cluster_room_resuming(const struct room *r);
/* Write a resumed open of every member of the room, on any node, to b;
 * returns how many. */
size_t cluster_room_resume(struct room *r, struct backend *b);
/* Whether a journaled open still goes to a new backend (its client's
 * resumed open did not). */
bool cluster_room_keep_open(const struct room *r, const char *line,
    size_t len);
/* A record of this node's clients, into the room's stream (taken). */
void cluster_record(struct room *r, enum journal_kind kind, char *line,
    size_t len);
/* A command of the holder's backend, to every node of the room. */
void cluster_command(struct room *r, const char *line, size_t len);
/* Bytes on their way to Redis (SIZE_MAX / 2 with a full stream), and
 * in *held those that wait for it while it is away. */
size_t cluster_room_backlog(const struct room *r, size_t *held);
/* The holder's backend has room again. */
void cluster_room_drained(struct room *r);
/* Nothing waits to go to Redis: a stop may end. */
bool cluster_flushed(void);

/* listener.c */

/* Bind (or take from systemd, or from fds[0..n_fds) when not NULL: an
 * upgrade's, from where from says) a socket for every listen line of
 * cfg.  Returns 0, or -1 (logged). */
int listener_start(const struct cfg *cfg, const int *fds, size_t n_fds,
    const char *from);
/* The listening sockets, at most max of them, into fds (own: not those
 * a socket unit of systemd's holds); their count. */
size_t listener_fds(int *fds, size_t max, bool own);
/* Match the sockets to cfg's lines: keep those it names, bind the new
 * ones, close the rest; all or nothing.  Returns 0, or -1 (logged) with
 * nothing changed. */
int listener_reload(const struct cfg *cfg);
/* Stop accepting clients (a stop): the admin listener stays. */
void listener_stop_clients(void);
/* True while the client listeners are up (not stopping). */
bool listener_all_up(void);
void listener_free_all(void);

/* client.c */

/* permessage-deflate, as agreed in the handshake (client.deflate). */
/* "c<id>@NODE.BOOT": a node name is at most 40 characters. */
#define CLIENT_NAME_MAX 72

#define CLIENT_DEFLATE_ON		0x1
#define CLIENT_DEFLATE_SERVER_RESET	0x2	/* server_no_context_takeover */
#define CLIENT_DEFLATE_CLIENT_RESET	0x4	/* client_no_context_takeover */

enum client_state {
	CLIENT_PROXY,		/* reading its PROXY protocol header (a proxy
				 * listener); nothing else is read before */
	CLIENT_TLS,		/* in its TLS handshake (a tls listener) */
	CLIENT_HANDSHAKE,	/* reading the request head */
	CLIENT_HTTP,		/* a plain HTTP answer going out (a file) */
	CLIENT_AUTHORIZING,	/* open sent; the backend must accept or reject */
	CLIENT_OPEN,		/* 101 sent; a member of its room */
	CLIENT_CLOSING,		/* our close frame sent; awaiting the peer's */
	CLIENT_LINGERING,	/* last bytes queued; reading until EOF, then
				 * closing, so that unread input cannot turn
				 * the close into a reset that loses them */
};

/* Connections from one address, for max_connections_per_ip. */
struct ip_count {
	int family;
	uint8_t addr[16];
	size_t count;
};

/* What a client waiting for authorization needs to finish its handshake. */
struct client_pending {
	char accept[HANDSHAKE_ACCEPT_LEN + 1];
	char extensions[WS_DEFLATE_RESPONSE_SIZE];	/* for the 101 */
	const char *chosen;		/* the room's choice of subprotocol:
					 * one of subprotocols[], or NULL */
	size_t n_subprotocols;
	char *subprotocols[];	/* offered, NUL-terminated copies */
};

struct client {
	uint64_t id;
	char name[CLIENT_NAME_MAX];	/* "c<id>", the id in records; in a
					 * cluster "c<id>@NODE.BOOT" */
	enum client_state state;
	bool announced;			/* open record sent, close not yet */
	bool ping_sent;			/* awaiting its pong */
	bool reading;			/* read_event watches the socket */
	bool gone;			/* to be freed by client_read_cb */
	bool peer_closed;		/* EOF while closing, output queued */
	bool close_exchanged;		/* both close frames went: the socket
					 * closes once the output is written */
	bool flush_listed;		/* in the batch's flush list */
	bool keep_alive;		/* CLIENT_HTTP: another request may
					 * follow the answer */
	bool excepted;			/* left out of the broadcast at hand */
	bool head_request;		/* the request at hand is a HEAD */
	bool admin;			/* came to the admin listener */
	short refusal;			/* refused at accept on a TLS listener:
					 * the status its request gets */
	bool tap;			/* admin: a tap of admin_room */
	struct room *admin_room;	/* admin: the room it taps or injects
					 * into, while open */
	LIST_ENTRY(client) tap_entry;	/* room.taps */
	uint8_t deflate;		/* CLIENT_DEFLATE_*: what was agreed */
	uint8_t deflate_bits;		/* the window we compress with */
	uint8_t inflate_bits;		/* the client's */
	struct client_zlib *zlib;	/* context takeover: its own streams */
	size_t out_counted;		/* out's length in server.output_bytes */
	struct conn conn;		/* its socket, and TLS over it */
	uint32_t head_scan;		/* request head: where to look for its
					 * end (the last line end seen) */
	uint32_t http_requests;		/* plain HTTP requests taken */
	int file_fd;			/* CLIENT_HTTP: the file to send, or -1 */
	uint64_t file_left;
	off_t file_off;
	struct event *read_event;
	struct event *write_event;	/* pending while the socket is full */
	struct evbuffer *out;		/* output not yet written */
	struct evbuffer *in;		/* input read but not yet used (the
					 * request head, frames that came with
					 * it or during authorization), or NULL */
	char *remote;			/* "address:port" until the open record */
	struct event *timer;		/* handshake, authorize, close, linger */
	LIST_ENTRY(client) entry;	/* server.clients */
	LIST_ENTRY(client) flush_entry;	/* client_batch_end's list */

	struct room *room;		/* while a member or pending */
	TAILQ_ENTRY(client) room_entry;	/* room.members or room.pending */
	const struct cfg_room_opts *opts;	/* its resource's, once matched */
	char *open_line;		/* its open record, sent again to a
					 * restarted backend */
	size_t open_len;
	struct client_pending *pending;	/* CLIENT_AUTHORIZING */
	struct ip_count *ip;		/* its address's connection count */

	/* Liveness (CLIENT_OPEN): the timer runs lazily, checking these
	 * when it fires, so that traffic costs no timer updates. */
	uint64_t last_frame_ms;		/* any frame from the client */
	uint64_t last_message_ms;	/* a data message from the client,
					 * moved on by the time it was not
					 * read (client_set_reading) */
	uint64_t unread_since_ms;	/* !reading: since when */
	uint64_t ping_sent_ms;		/* when the unanswered ping went */
	uint64_t opened_ms;		/* its 101 went: for the access log */
	uint64_t bytes_in, bytes_out;	/* through its socket */

	struct ws_frame_parser parser;

	/* read_event, write_event and timer live here, after the client:
	 * one allocation, and the events a busy loop touches sit next to
	 * the client it then works on.  (libevent says their size only at
	 * run time: event_get_struct_event_size.) */
	_Alignas(max_align_t) unsigned char event_space[];
};

/* Answer a new connection with an HTTP status and close it, costing no
 * state. */
void client_refuse(int fd, int status, const char *body);

/* Take a freshly accepted connection: from a tls listener, a proxy
 * listener (a PROXY protocol header first), the admin listener. */
void client_accept(int fd, const struct sockaddr *addr, bool tls, bool proxy,
    bool admin);

/* Bytes queued to the client and not yet written. */
size_t client_queued(const struct client *c);

/* Drop one count of an address (a connection or a room it made). */
void client_ip_release(struct ip_count *ip);

/* The client with the record id name ("c42"), or with the id 42, or NULL. */
struct client *client_find(const char *name);
struct client *client_find_id(uint64_t id);

/* A frame shared by the output buffers of many clients (a broadcast). */
struct shared_frame {
	size_t refs;
	size_t len;
	uint8_t data[];
};

void shared_frame_release(struct shared_frame *frame);

/*
 * A message to send to one or more open clients.  Its frames are made as
 * the recipients need them, once each, and shared between their output
 * buffers: plain, and compressed for each window of the clients that
 * agreed to permessage-deflate without context takeover (so a broadcast
 * is compressed once, not once per client).  The payload is the caller's
 * and must live until client_msg_done.
 */
struct client_msg {
	enum ws_frame_opcode opcode;
	const uint8_t *payload;
	size_t len;
	struct shared_frame *plain;
	struct shared_frame *deflated[16];	/* by window bits */
};

void client_msg_init(struct client_msg *m, enum ws_frame_opcode opcode,
    const uint8_t *payload, size_t len);
/* Queue m to c, if c is open (and not closed on the way as a slow
 * consumer). */
void client_msg_send(struct client *c, struct client_msg *m);
void client_msg_done(struct client_msg *m);
/* Free the zlib streams shared between clients (at exit). */
void client_deflate_free(void);

/* Messages up to this size are copied into each client's output buffer;
 * bigger ones are shared between recipients (see client_send), and so
 * are those of CLIENT_SHARE_MIN bytes or more to a client with
 * CLIENT_BEHIND bytes queued already. */
#define CLIENT_COPY_MAX 512
#define CLIENT_SHARE_MIN 256
#define CLIENT_BEHIND 65536

/* In a batch, a client's output is written once this much is queued,
 * rather than at the batch's end. */
#define CLIENT_BATCH_WRITE 65536

/* Close the clients with the most queued output until it is below 90% of
 * max_output_memory. */
void client_shed_output(void);

/*
 * Output queued to clients between client_batch_begin and client_batch_end
 * is written at the end, a write per client, however many frames each
 * got: a backend's read of many records costs one write per recipient.
 * Output queued outside a batch is written at once.  Batches nest.
 */
void client_batch_begin(void);
void client_batch_end(void);

/* Stop or resume reading an open client (its room's backend is behind). */
void client_set_reading(struct client *c, bool reading);

/* Answer a plain HTTP request: queue head and then file_len bytes of
 * file_fd (taken; -1 for none), and wait for the next request when
 * keep_alive, else close once all is sent. */
void client_respond(struct client *c, const char *head, size_t head_len,
    int file_fd, uint64_t file_len, bool keep_alive);
/* How many more plain HTTP requests the connection may carry. */
unsigned client_http_requests_left(const struct client *c);

/* For admin.c: answer an admin request with an error; open a tap of
 * room r (tap) or an inject client; close a tap that falls behind (its
 * backlog dropped) or whose room is gone (why "room gone"). */
void client_admin_refuse(struct client *c, int status, const char *why);
void client_admin_open(struct client *c, const struct http_req *req,
    struct room *r, bool tap);
void client_admin_drop(struct client *c, const char *why);

/* admin.c */

void admin_init(void);
/* Answer a request on the admin listener. */
void admin_serve(struct client *c, const struct http_req *req);
/* A line between room r and its backend, to its taps: dir '<' towards
 * the backend, '>' from it. */
void admin_tap(struct room *r, char dir, const void *line, size_t len,
    bool binary);
/* A command record from an inject client, carried out in room r. */
void admin_inject(struct client *c, struct room *r, const uint8_t *data,
    size_t len);

/* http.c */

/* Open the static directories of cfg into fds (parallel to
 * cfg->statics): 0, or -1 (logged). */
int http_open_statics(const struct cfg *cfg, int *fds);
/* Answer a plain HTTP request from the static files: false when it is
 * not theirs (no mapping, or a resource's path with no file there): then
 * the handshake answers it. */
bool http_serve(struct client *c, const struct http_req *req);

/* The upgrade: an open client on plain TCP (not TLS) without zlib streams
 * of its own can be handed to the new process: saved, loaded there as a
 * member of r, and let go of here without a word. */
bool client_transferable(const struct client *c);
void client_save(const struct client *c, struct blob *b);
struct client *client_load(struct blob *b, struct room *r, uint64_t *gone);
void client_abandon(struct client *c);
/* Count one more connection or room from an address (family, and the
 * address's 4 or 16 bytes); refused, when not NULL, applies
 * max_connections_per_ip and tells whether it did. */
struct ip_count *client_ip_count(int family, const uint8_t *addr,
    bool *refused);

/* Close an open client with a close frame (code, reason) and report the
 * close to its room's backend. */
void client_close(struct client *c, unsigned code, const char *reason,
    size_t reason_len);

/* Finish a pending handshake: 101 and membership, or an HTTP status. */
void client_accept_handshake(struct client *c, const char *subprotocol);
void client_reject_handshake(struct client *c, int status, const char *body);
/* Fail a pending handshake on the gateway's decision: the backend gets a
 * close record (1006, body as the reason), the client the status. */
void client_fail_handshake(struct client *c, int status, const char *body);
/* True when an authorizing client offered the subprotocol. */
bool client_offers(const struct client *c, const char *subprotocol,
    size_t len);

/* The backend of c's room is gone for good: close c with code (1011 or
 * 1012) or fail its handshake (502, 503), reporting nothing to the dead
 * backend. */
void client_backend_lost(struct client *c, unsigned code);

/* Server stop: close every client with 1001 or 503. */
void client_shutdown(struct client *c);
/* The same for one client, with why as the reason (its room is gone). */
void client_go_away(struct client *c, const char *why);
/* A reload: point c at the options of its room's new resource. */
void client_reload(struct client *c);

/* room.c */

struct room {
	char *path;			/* the matched path: the room's name */
	const struct cfg_resource *res;
	bool is_solo;			/* mode = client: one client's own */
	bool indexed;			/* in server.room_index and counted */
	bool ever_up;			/* a backend of its has started: worth
					 * holding clients for when it fails */
	struct client *solo;		/* is_solo: its client, until it goes */
	struct ip_count *ip;		/* a pattern room: its creator's
					 * address, charged while it lives */
	LIST_ENTRY(room) entry;		/* server.rooms */
	/* In the order they joined: a restarted backend learns of them so. */
	TAILQ_HEAD(, client) members;	/* open clients */
	TAILQ_HEAD(, client) pending;	/* authorizing clients */
	size_t n_members;
	size_t n_pending;
	struct event *linger_timer;	/* pattern rooms: stop when empty */

	/* The backend and its supervision.  While the backend is down the
	 * room holds its clients (on_backend_down = hold): their records
	 * wait in the journal, and the backend is started again after a
	 * backoff. */
	struct backend *backend;	/* NULL while down */
	struct event *restart_timer;	/* pending: a restart is scheduled */
	uint64_t restart_delay_ms;	/* the next backoff */
	unsigned failures;		/* consecutive, for the log */
	uint64_t backend_since_ms;	/* when the backend last started */
	struct event *hold_timer;	/* pending: clients are held */
	uint64_t outage_since_ms;	/* when the backend went down; a
					 * backend that fails before it has run
					 * restart_max_delay does not end the
					 * outage, so a crash loop cannot hold
					 * clients past hold_timeout */
	/* Shared rooms: every record written to the backend that it may
	 * not have read yet, and every record that waits for a backend. */
	struct journal journal;
	bool paused;			/* the clients are not read */
	LIST_HEAD(, client) taps;	/* admin clients tapping it */
	size_t n_taps;
	struct backend *former;		/* the backend a reload replaced,
					 * while it ends */
	struct cluster_room *cl;	/* shared across the cluster */
};

/* The longest backoff between restarts is at least this, so that a
 * backend that fails at once is started at most 20 times a second. */
#define ROOM_RESTART_FLOOR_MS 50

/* The longest room name (request path) a pattern resource takes: its
 * clients choose it, and it reaches the backend and the log. */
#define ROOM_NAME_MAX 1024

/*
 * Find the room for client c at path, creating it (pattern rooms, and a
 * solo room for each client of a mode = client resource) and starting its
 * backend as needed; envp is a solo room's backend environment.  NULL
 * with *rf what to answer c with when it cannot be had:
 * 429 (its address has made too many rooms), 500 (the program cannot
 * run), 502 (unreachable with on_backend_down = close), 503 (max_rooms,
 * max_processes, or a backend that was never up).
 */
struct room *room_get(const char *path, size_t path_len,
    const struct cfg_resource *res, struct client *c, char **envp,
    struct refusal *rf);
/* Start the exact rooms with the daemon. */
int room_start_exact(void);

void room_add_pending(struct room *r, struct client *c);
void room_add_member(struct room *r, struct client *c);
/* An authorizing client was accepted: pending becomes member. */
void room_promote(struct room *r, struct client *c);
/* c leaves its room: a pattern room may then linger and stop. */
void room_remove(struct room *r, struct client *c);

/*
 * True when the room's backend is so far behind that newcomers are turned
 * away (503): each would queue an open record, and clients that come and
 * go while the backend reads nothing would queue without bound.  The
 * bound is well above backend_buffer, so that a burst of connections to
 * a live backend is let in and merely pauses the room.
 */
#define ROOM_TURN_AWAY 8	/* times backend_buffer */
bool room_turns_away(const struct room *r);
/* True while the room holds its clients for a backend that is down. */
bool room_is_holding(const struct room *r);

/* Queue client c's open (open) or close record line (malloc'd; the room
 * takes it) to the backend, journaled as its messages are. */
void room_write(struct room *r, struct client *c, bool open, char *line,
    size_t len);
/* A client's message, written in the room's format: a record (held
 * while the backend is down), or the bytes and a newline.  Returns -1
 * when out of memory. */
int room_write_message(struct room *r, struct client *c, bool binary,
    const uint8_t *data, size_t len);
/* Bytes of records waiting for a backend that is down. */
size_t room_held_bytes(const struct room *r);
/* The backend's socket took n more bytes of the journal. */
void room_backend_wrote(struct room *r, size_t n);
/* Drop from the journal what the backend has certainly read. */
void room_backend_trim(struct room *r);
/* The backend's output drained below its low watermark. */
void room_backend_drained(struct room *r);
/* Shared rooms (cluster.c): a record for the backend this node runs
 * (taken; its journal entry, or NULL); whether that backend has all it
 * should queue; pause or read the clients as the queues now say; a
 * pattern room with no clients left lingers; start the backend now that
 * the lease is ours; stop it, the lease lost; close the clients, Redis
 * away for hold_timeout. */
struct journal_entry *room_feed(struct room *r, enum journal_kind kind,
    char *line, size_t len);
bool room_backend_busy(const struct room *r);
void room_recheck_pause(struct room *r);
void room_consider_linger(struct room *r);
void room_cluster_start(struct room *r);
void room_backend_release(struct room *r);
void room_cluster_outage(struct room *r);
/* A solo room's client has read most of what waited for it. */
void room_solo_drained(struct room *r);
/* A command from the backend. */
void room_command(struct room *r, const struct record_cmd *cmd);
/* The backend failed, or ended (code 1000 for a clean end, else 1011):
 * hold or close the clients, schedule a restart, or stop a pattern room
 * that has no clients; a solo room's client is closed with code. */
void room_backend_lost(struct room *r, unsigned code);
/* The backend a reload replaced has ended: start its successor. */
void room_former_ended(struct room *r);
/* Server stop: close clients, stop the backend, free the room. */
void room_shutdown(struct room *r);
/* The upgrade: whether r goes to the new process; write it (its journal,
 * backend and the clients that go) to b; take over such a room (NULL
 * with *why); let go of one that went, closing nothing it handed over. */
bool room_transferable(const struct room *r);
size_t room_save(struct room *r, struct blob *b);	/* clients that go */
struct room *room_load(struct blob *b, const char **why);
void room_abandon(struct room *r);
/* A reload: serve every room from cfg's resource of the same pattern,
 * restarting (through the resume path) the backends that changed;
 * close the rooms whose resource is gone (1001); start the new exact
 * rooms.  The old configuration must live until this returns. */
void room_reload(const struct cfg *cfg);

/* backend.c */

struct backend {
	struct room *room;		/* NULL once detached */
	struct room *former;		/* replaced in a reload: the room it
					 * still speaks for while it ends */
	LIST_ENTRY(backend) entry;	/* server.backends */
	uint64_t pid;			/* exec: its key in server.processes;
					 * 0 once reaped (or never spawned) */
	char *label;			/* "room /path" or "c42", for the log */
	enum cfg_backend_kind kind;
	enum cfg_format format;
	bool binary;			/* lines: raw chunks both ways */
	bool reading;			/* read_event is added */
	bool paused;			/* its solo room's client is behind */
	bool writing;			/* write_event is added */
	bool write_shut;		/* stopping: EOF sent */
	bool eof;			/* its output ended */
	bool skipping;			/* discarding an over-long line */
	bool exited;
	int exit_status;		/* waitpid's, once exited */
	int fd;				/* the socket, or the pipe from a
					 * client's own program; -1 once
					 * closed */
	int wfd;			/* where records go: fd, or the pipe
					 * to the program's stdin; -1 once
					 * shut */
	bool connecting;		/* tcp: not connected yet */
	bool adopted;			/* taken over in an upgrade: its
					 * process is not our child */
	int pidfd;			/* exec, taken over in an upgrade: it
					 * tells the exit of a process that is
					 * not our child; else -1 */
	struct event *pid_event;
	struct event *read_event;
	struct event *write_event;
	struct evbuffer *out;		/* records not yet written */
	size_t unjournaled;		/* bytes at the head of out that are
					 * not the journal's: hello, the
					 * opens of a resumed start */
	uint8_t *in;			/* an unfinished line, or input left
					 * for the next turn by the budget */
	size_t in_len, in_cap;
	uint64_t line_max;		/* longest line accepted */
	uint64_t stop_timeout_ms;
	uint64_t started_ms;
	pid_t pgid;			/* exec: its process group, until it
					 * is known to be empty */
	struct event *timer;		/* see enum backend_timer */
	struct event *more;		/* input left for the next turn */
	int timer_does;
	struct log_ratelimit log_budget;	/* for bad records */

	/* exec: its stderr, logged a few lines a second */
	int err_fd;
	struct event *err_event;
	struct event *err_timer;	/* the budget's next second */
	time_t err_second;
	unsigned err_lines;		/* logged in err_second */
	size_t err_len;
	char err_buf[4096];
};

/*
 * Connect or spawn the room's backend and send hello (json format), with
 * "resumed" when it takes over clients from a failed one.  envp is the
 * environment of an exec backend (env_build).  NULL on failure (logged),
 * with *rf what a client that waits on it is answered: 500 (the
 * program cannot be run), 502 (unreachable), 503 (max_processes, or out
 * of resources).
 */
struct backend *backend_start(struct room *r, bool resumed, char **envp,
    struct refusal *rf);
/* Bytes queued towards the backend and not yet written. */
size_t backend_queued(const struct backend *b);
/* Forget what is queued and not yet written (the room's journal has it:
 * the backend failed, or is being replaced). */
void backend_forget_queued(struct backend *b);
/* How many bytes written to the backend it has not read at most: 0 when
 * it has read everything.  -1 when it cannot be told (the backend is
 * gone). */
int backend_unread(const struct backend *b, size_t *unread);
/* Detach from the room and wind down: flush, close the connection or the
 * process's stdin, then TERM and KILL its process group after
 * stop_timeout each.  Freed once finished. */
void backend_stop(struct backend *b);
/* Queue a line; the backend takes ownership of the malloc'd line. */
void backend_write(struct backend *b, char *line, size_t len);
/* Queue a line of the room's journal, which keeps it until it is sent;
 * what is written of these is reported with room_backend_wrote. */
void backend_write_journal(struct backend *b, const char *line, size_t len);
/* Queue a copy of data, and a '\n' after it when newline. */
void backend_write_data(struct backend *b, const uint8_t *data, size_t len,
    bool newline);
/* Stop or resume reading the backend (its solo room's client is behind). */
void backend_set_reading(struct backend *b, bool reading);
/* SIGCHLD: reap exited processes. */
void backend_reap(void);
/* The upgrade: whether b (up and working) can be handed over; write it
 * to w; take one over for room r; let go of one handed over (its process
 * keeps running). */
bool backend_transferable(const struct backend *b);
void backend_save(struct backend *b, struct blob *w);
struct backend *backend_load(struct room *r, struct blob *w, bool *gone);
void backend_abandon(struct backend *b);

/* upgrade.c */

/*
 * Hand every listener, client and backend that can go to a new gatewayd
 * started from server.exe with server.argv, and wait (blocking, at most
 * UPGRADE_TIMEOUT_MS) until it has taken them.  0: it has, and this
 * process stops with what could not go (TLS clients, handshakes); -1:
 * nothing changed (*why says why, logged).
 */
#define UPGRADE_TIMEOUT_MS 10000
int upgrade_start(const char **why);
/* While saving: fd goes to the new process (kept open across its exec);
 * an owned one is closed here once it has gone. */
void upgrade_pass(int fd);
void upgrade_pass_owned(int fd);
/* In the new process: true when started by upgrade_start (reads the
 * state's header: -1 on a bad one, logged). */
int upgrade_open(bool *upgrading);
/* The listening sockets handed over, and where they came from. */
const int *upgrade_listeners(size_t *n, const char **from);
/* The descriptor that was old in the old process: the same (SIGUSR2), or
 * the one systemd gave back for it (the fd store); -1 when it is gone. */
int upgrade_fd(uint32_t old);
/* True while saving for systemd's fd store, where spawned backends do not
 * survive (systemd kills the unit's processes). */
bool upgrade_storing(void);
/* SIGTERM under systemd with GATEWAYD_FDSTORE set: when systemd is
 * restarting the unit, put every listener, client and backend connection
 * and the state in its fd store for the next process, and stop with the
 * rest.  0 when done; -1 to stop as usual. */
int upgrade_store(void);
/* Take over the rooms and clients, then tell the old process: 0, or -1
 * (logged), when the process must _exit at once. */
int upgrade_take(void);
/* Server stop deadline: kill every process group still running. */
void backend_kill_all(void);

#endif
