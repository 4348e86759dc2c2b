/*
 * backend: a room's program, over a Unix socket or as a spawned process.
 *
 * Both kinds come down to one stream socket carrying lines both ways: for
 * unix: backends the connection, for exec: backends one end of a
 * socketpair whose other end is the process's stdin and stdout.  Its
 * stderr is a pipe whose lines go to the log, tagged with the room or the
 * client, no faster than a few lines a second: past that the pipe is not
 * read, and a program that floods it blocks on its own writes instead of
 * costing the daemon a core.
 *
 * The socket is read and written directly, as clients are: a read takes
 * up to BACKEND_READ_MAX bytes into one buffer shared by every backend,
 * and only an unfinished line is kept per backend.  What the lines say
 * is carried out by the room, within a budget of deliveries per loop
 * turn, so that one backend's burst to a big room cannot hold up the
 * others.
 *
 * Processes are spawned with posix_spawn, which does not copy the daemon
 * (glibc uses CLONE_VM | CLONE_VFORK) and reports a failed exec as its
 * result.  Each is the leader of its own process group: stopping signals
 * the group, so that a child the program forked stops with it, whether
 * or not the leader itself is still there.  Exited processes are found
 * by pid in a hash table.
 *
 * A backend is attached to its room until it fails or the room stops;
 * then backend_stop detaches it and winds it down, and it is freed once
 * its connection is closed and its process group gone.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "gatewayd.h"
#include "log.h"
#include "stats.h"

/* Bytes read from a backend at a time, into one buffer for all of them. */
#define BACKEND_READ_MAX 65536

/* Deliveries (frames queued to clients) one backend may cause in one loop
 * turn before the rest of its input waits for the next turn, so that a
 * burst to a big room keeps other rooms' latency: about 10 to 25 ms of
 * work.  Less makes each client's write carry fewer frames, and
 * broadcasts of small messages cost twice the CPU (docs/PERFORMANCE.md);
 * a client's queue stays small all the same (CLIENT_BATCH_WRITE). */
#define BACKEND_WORK_MAX 65536

/* The process is gone: what it left in the socket is read up to this,
 * which bounds what a child that inherited the socket can make us read. */
#define BACKEND_REST_MAX (4 * 1024 * 1024)

/* How long an exec backend that closed its output has to exit, so that
 * the log and the close code can say how it ended. */
#define BACKEND_EXIT_WAIT_MS 200

/* stderr: lines longer than this are logged cut; at most this many lines
 * a second per backend are logged. */
#define BACKEND_STDERR_LINE_MAX 2048
#define BACKEND_STDERR_LINES 10

enum backend_timer {
	BACKEND_TIMER_NONE,
	BACKEND_TIMER_EXIT_WAIT,	/* EOF seen: the exit should follow */
	BACKEND_TIMER_FLUSH,		/* stopping unix: the flush deadline */
	BACKEND_TIMER_TERM,		/* stopping exec: send SIGTERM */
	BACKEND_TIMER_KILL,		/* then SIGKILL */
	BACKEND_TIMER_CONNECT,		/* tcp: the connect deadline */
};

/* How long a tcp: backend may take to connect (the kernel would try for
 * two minutes): the room then tries again after its backoff. */
#define BACKEND_CONNECT_TIMEOUT_MS 5000

static void backend_read_cb(evutil_socket_t fd, short events, void *arg);
static void backend_write_cb(evutil_socket_t fd, short events, void *arg);
static void backend_timer_cb(evutil_socket_t fd, short events, void *arg);
static void backend_more_cb(evutil_socket_t fd, short events, void *arg);
static void backend_continue(struct backend *b);
static void backend_stderr_cb(evutil_socket_t fd, short events, void *arg);
static void backend_stderr_timer_cb(evutil_socket_t fd, short events,
    void *arg);
static void backend_stderr_drain(struct backend *b);
static void backend_check_done(struct backend *b);
static void backend_ended(struct backend *b, int err);
static void backend_wrote(struct backend *b, size_t n);
static bool backend_group_alive(pid_t pgid);

static uint8_t backend_read_buf[BACKEND_READ_MAX];

static void
backend_timer_set(struct backend *b, enum backend_timer what, uint64_t ms)
{
	b->timer_does = what;
	server_timer_set(b->timer, ms);
}

static int
backend_connect(struct backend *b, const char *path)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	/* cfg checked that the path fits. */
	memcpy(sun.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_error("%s: socket: %s", b->label, strerror(errno));
		return -1;
	}
	/* A Unix socket connects at once or not at all (EAGAIN: its
	 * backlog is full, which is a failure like any other). */
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		log_warn("%s: cannot connect to backend unix:%s: %s",
		    b->label, path, strerror(errno));
		close(fd);
		return -1;
	}
	log_debug("%s: connected to backend unix:%s", b->label, path);
	return fd;
}

/* A tcp: backend: the connect goes on in the background; records queue
 * meanwhile, and the first write (the hello) tells how it went. */
static int
backend_connect_tcp(struct backend *b, const struct cfg_resource *res)
{
	int fd, one = 1;

	fd = socket(res->tcp_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_error("%s: socket: %s", b->label, strerror(errno));
		return -1;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&res->tcp_addr,
	    res->tcp_addr_len) == -1 && errno != EINPROGRESS) {
		log_warn("%s: cannot connect to backend %s: %s", b->label,
		    res->backend, strerror(errno));
		close(fd);
		return -1;
	}
	b->connecting = true;
	backend_timer_set(b, BACKEND_TIMER_CONNECT, BACKEND_CONNECT_TIMEOUT_MS);
	return fd;
}

/*
 * Spawn the program; returns the socket to it, or with pipes the pipe
 * from its stdout (*wfd the one to its stdin), or -1 with *rf set: 503
 * at max_processes, 500 when it cannot be run.  A client's own program
 * gets pipes, as websocketd gives it: a program reading and writing
 * pipes costs less than one on a socket.  A room's backend gets a
 * socket, whose unread bytes the journal asks for (backend_unread).
 */
static int
backend_spawn(struct backend *b, char **argv, char **envp,
    const char *search_path, bool pipes, int *wfd, struct refusal *rf)
{
	static struct log_ratelimit budget;
	int sv[2] = { -1, -1 }, err[2] = { -1, -1 }, in[2] = { -1, -1 }, e;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	unsigned long suppressed;
	char file[4096];
	sigset_t set;
	pid_t pid;

	refuse(rf, 500, "the room's program cannot be run");
	if (server.n_processes >= server.max_processes) {
		refuse(rf, 503, "too many backend processes");
		if (log_ratelimit(&budget, &suppressed))
			log_warn("%s: not starting backend: max_processes (%llu) "
			    "reached%s", b->label,
			    (unsigned long long)server.max_processes,
			    suppressed ? " (more suppressed)" : "");
		return -1;
	}
	/* Resolved as execvp would, on the PATH the program gets. */
	e = cfg_resolve_program(argv[0], search_path, file, sizeof(file));
	if (e != 0) {
		log_warn("%s: cannot run backend %s: %s", b->label, argv[0],
		    strerror(e));
		return -1;
	}
	/* sv[0] is ours to read (and write, a socket), sv[1] the child's
	 * stdout (and stdin); with pipes, in[1] ours to write, in[0] its
	 * stdin. */
	if ((pipes ? pipe2(sv, O_CLOEXEC) == -1 || pipe2(in, O_CLOEXEC) == -1 :
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) ||
	    pipe2(err, O_CLOEXEC) == -1) {
		log_error("%s: cannot spawn backend: %s", b->label,
		    strerror(errno));
		refuse(rf, 503, "out of resources");
		goto fail;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pipes ? in[0] : sv[1], 0);
	posix_spawn_file_actions_adddup2(&fa, sv[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err[1], 2);
	/* Nothing else: not what gatewayd itself inherited without
	 * close-on-exec, nor what an upgrade is handing over. */
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	posix_spawnattr_init(&attr);
	/* Its own process group: a terminal's ^C reaches gatewayd alone,
	 * which then stops its rooms in order, and stopping signals the
	 * program and whatever it forked.  No signal of the daemon's is
	 * blocked or handled in it (ignoring SIGPIPE would survive exec). */
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
	    POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setpgroup(&attr, 0);
	sigemptyset(&set);
	posix_spawnattr_setsigmask(&attr, &set);
	sigfillset(&set);
	posix_spawnattr_setsigdefault(&attr, &set);
	e = posix_spawn(&pid, file, &fa, &attr, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(sv[1]);
	close(err[1]);
	sv[1] = err[1] = -1;
	if (in[0] != -1) {
		close(in[0]);
		in[0] = -1;
	}
	if (e != 0) {
		log_warn("%s: cannot run backend %s: %s", b->label, file,
		    strerror(e));
		if (e == EAGAIN || e == ENOMEM)
			refuse(rf, 503, "out of resources");
		goto fail;
	}
	b->pid = (uint64_t)pid;
	if (idmap_put(&server.processes, b) == -1) {
		/* Not found by its exit: stop it now. */
		kill(-pid, SIGKILL);
		b->pid = 0;
		refuse(rf, 503, "out of resources");
		goto fail;
	}
	server.n_processes++;
	b->pgid = pid;
	/* Only our ends: the child's stay blocking, so that a full pipe
	 * makes it wait rather than fail. */
	evutil_make_socket_nonblocking(sv[0]);
	evutil_make_socket_nonblocking(err[0]);
	*wfd = sv[0];
	if (in[1] != -1) {
		evutil_make_socket_nonblocking(in[1]);
		*wfd = in[1];
	}
	b->err_fd = err[0];
	b->err_event = event_new(server.base, err[0], EV_READ | EV_PERSIST,
	    backend_stderr_cb, b);
	b->err_timer = evtimer_new(server.base, backend_stderr_timer_cb, b);
	if (b->err_event != NULL)
		event_add(b->err_event, NULL);
	log_info("%s: started backend %s (pid %d)", b->label, argv[0],
	    (int)pid);
	return sv[0];
fail:
	for (int i = 0; i < 2; i++) {
		if (sv[i] != -1)
			close(sv[i]);
		if (err[i] != -1)
			close(err[i]);
		if (in[i] != -1)
			close(in[i]);
	}
	return -1;
}

static void
backend_close_fd(struct backend *b)
{
	if (b->fd == -1)
		return;
	event_del(b->read_event);
	event_del(b->write_event);
	if (b->wfd != b->fd && b->wfd != -1)
		close(b->wfd);
	close(b->fd);
	b->fd = b->wfd = -1;
}

/* EOF to the backend: its socket's write side, or its stdin pipe. */
static void
backend_shut_write(struct backend *b)
{
	b->write_shut = true;
	if (b->wfd == b->fd) {
		shutdown(b->fd, SHUT_WR);
		return;
	}
	event_del(b->write_event);
	close(b->wfd);
	b->wfd = -1;
}

static void
backend_close_stderr(struct backend *b)
{
	if (b->err_fd == -1)
		return;
	backend_stderr_drain(b);
	if (b->err_event != NULL)
		event_free(b->err_event);
	if (b->err_timer != NULL)
		event_free(b->err_timer);
	b->err_event = b->err_timer = NULL;
	close(b->err_fd);
	b->err_fd = -1;
}

static void
backend_free(struct backend *b)
{
	if (b->former != NULL)
		room_former_ended(b->former);
	LIST_REMOVE(b, entry);
	backend_close_fd(b);
	backend_close_stderr(b);
	if (b->pid != 0) {
		idmap_del(&server.processes, b->pid);
		server.n_processes--;
	}
	if (b->pid_event != NULL)
		event_free(b->pid_event);
	if (b->pidfd != -1)
		close(b->pidfd);
	if (b->read_event != NULL)
		event_free(b->read_event);
	if (b->write_event != NULL)
		event_free(b->write_event);
	if (b->timer != NULL)
		event_free(b->timer);
	if (b->more != NULL)
		event_free(b->more);
	if (b->out != NULL)
		evbuffer_free(b->out);
	free(b->in);
	free(b->label);
	free(b);
	server_check_stopped();
}

/* What b takes from its room's resource, its label, timers and queue
 * (checked by the caller). */
static void
backend_prepare(struct backend *b, struct room *r)
{
	const struct cfg_resource *res = r->res;

	b->kind = res->backend_kind;
	b->format = res->opts.format;
	b->binary = res->opts.binary;
	b->line_max = b->format == CFG_FORMAT_JSON ?
	    RECORD_LINE_MAX(res->opts.max_message_size) :
	    res->opts.max_message_size;
	b->stop_timeout_ms = res->opts.stop_timeout_ms;
	if (r->solo != NULL)
		b->label = strdup(r->solo->name);
	else if (asprintf(&b->label, "room %s", r->path) == -1)
		b->label = NULL;
	b->timer = evtimer_new(server.base, backend_timer_cb, b);
	b->more = evtimer_new(server.base, backend_more_cb, b);
	b->out = evbuffer_new();
}

struct backend *
backend_start(struct room *r, bool resumed, char **envp, struct refusal *rf)
{
	const struct cfg_resource *res = r->res;
	struct backend *b;
	char *hello = NULL;
	size_t len;
	int fd, wfd = -1;

	refuse(rf, 503, "out of resources");
	b = calloc(1, sizeof(*b));
	if (b == NULL)
		return NULL;
	LIST_INSERT_HEAD(&server.backends, b, entry);
	b->fd = b->wfd = b->err_fd = b->pidfd = -1;
	b->started_ms = server_now_ms();
	backend_prepare(b, r);
	if (b->label == NULL || b->timer == NULL || b->more == NULL ||
	    b->out == NULL) {
		backend_free(b);
		return NULL;
	}
	if (b->kind == CFG_BACKEND_UNIX) {
		fd = wfd = backend_connect(b, res->unix_path);
		refuse(rf, 502, "the room's backend is unavailable");
	} else if (b->kind == CFG_BACKEND_TCP) {
		fd = wfd = backend_connect_tcp(b, res);
		refuse(rf, 502, "the room's backend is unavailable");
	} else {
		fd = backend_spawn(b, res->argv, envp,
		    cfg_backend_path(&res->opts), r->is_solo, &wfd, rf);
	}
	if (fd != -1) {
		b->fd = fd;
		b->wfd = wfd;
		b->read_event = event_new(server.base, fd, EV_READ | EV_PERSIST,
		    backend_read_cb, b);
		b->write_event = event_new(server.base, wfd,
		    EV_WRITE | EV_PERSIST, backend_write_cb, b);
	}
	if (b->format == CFG_FORMAT_JSON)
		hello = record_hello(r->path, resumed,
		    res->opts.delivery == CFG_DELIVERY_ACK, &len);
	if (fd == -1 || b->read_event == NULL || b->write_event == NULL ||
	    (b->format == CFG_FORMAT_JSON && hello == NULL)) {
		free(hello);
		stats.backends_failed++;
		backend_stop(b);
		return NULL;
	}
	event_add(b->read_event, NULL);
	b->reading = true;
	b->room = r;
	stats.backends_started++;
	if (hello != NULL)
		backend_write(b, hello, len);
	return b;
}

/* Output was queued: it is written when the loop next finds the socket
 * writable, so that what many clients sent in one turn goes in one
 * write.  A client's own program has one client: written now, which
 * saves turning the write event on and off for every message. */
static void
backend_output_added(struct backend *b)
{
	int n;

	if (b->wfd == -1 || b->writing || b->write_shut)
		return;
	if (b->room != NULL && b->room->is_solo) {
		n = evbuffer_write(b->out, b->wfd);
		if (n > 0)
			backend_wrote(b, (size_t)n);
		if (evbuffer_get_length(b->out) == 0)
			return;
		/* The rest, or the error, in backend_write_cb. */
	}
	b->writing = true;
	event_add(b->write_event, NULL);
}

static void
backend_line_free(const void *data, size_t len, void *arg)
{
	free(arg);
}

/* Lines up to this size are copied into the output buffer's last chain,
 * which costs less than a chain of their own; bigger ones are handed
 * over as they are. */
#define BACKEND_COPY_MAX 2048

void
backend_write(struct backend *b, char *line, size_t len)
{
	if (b->fd == -1) {
		free(line);
		return;
	}
	if (b->room != NULL && b->room->n_taps > 0)
		admin_tap(b->room, '<', line, len, false);
	if (len <= BACKEND_COPY_MAX) {
		if (evbuffer_add(b->out, line, len) == 0)
			b->unjournaled += len;
		free(line);
	} else if (evbuffer_add_reference(b->out, line, len,
	    backend_line_free, line) == -1) {
		free(line);
	} else {
		b->unjournaled += len;
	}
	backend_output_added(b);
}

/* The journal keeps the line until it is reported written, and the
 * output buffer is copied when the backend is detached (backend_stop),
 * so a big line can be referenced rather than copied. */
void
backend_write_journal(struct backend *b, const char *line, size_t len)
{
	if (b->fd == -1)
		return;
	if (b->room != NULL && b->room->n_taps > 0)
		admin_tap(b->room, '<', line, len, false);
	if (len <= BACKEND_COPY_MAX)
		evbuffer_add(b->out, line, len);
	else
		evbuffer_add_reference(b->out, line, len, NULL, NULL);
	backend_output_added(b);
}

void
backend_write_data(struct backend *b, const uint8_t *data, size_t len,
    bool newline)
{
	if (b->fd == -1)
		return;
	if (b->room != NULL && b->room->n_taps > 0)
		admin_tap(b->room, '<', data, len, b->binary);
	if (evbuffer_add(b->out, data, len) == -1)
		return;
	b->unjournaled += len;
	if (newline && evbuffer_add(b->out, "\n", 1) == 0)
		b->unjournaled++;
	backend_output_added(b);
}

size_t
backend_queued(const struct backend *b)
{
	return evbuffer_get_length(b->out);
}

void
backend_forget_queued(struct backend *b)
{
	evbuffer_drain(b->out, evbuffer_get_length(b->out));
	b->unjournaled = 0;
	if (b->writing) {
		event_del(b->write_event);
		b->writing = false;
	}
}

/*
 * SIOCOUTQ on an AF_UNIX stream socket counts the buffers the peer has
 * not wholly read, by their allocated size: never less than the unread
 * payload, so a safe bound; 0 only when all is read, or when the peer
 * has closed and dropped what it had not read (shared/NOTES.md).  The
 * poll after it tells the two apart: a peer still there after the ioctl
 * was there during it, and its count was true.
 */
int
backend_unread(const struct backend *b, size_t *unread)
{
	struct pollfd p = { .fd = b->fd, .events = POLLRDHUP };
	int queued;

	if (b->fd == -1 || ioctl(b->fd, SIOCOUTQ, &queued) == -1)
		return -1;
	/* After, always: a peer that dies hangs up first, then frees its
	 * unread buffers, so any count read meanwhile may be too small. */
	if (poll(&p, 1, 0) != 0)
		return -1;	/* hung up (or poll failed): unknown */
	*unread = queued > 0 ? (size_t)queued : 0;
	return 0;
}

/* The rest of the input in the next loop turn, after the loop has polled
 * (a zero timer: an event made active runs in the same pass, before any
 * other socket is looked at). */
static void
backend_continue(struct backend *b)
{
	server_timer_set(b->more, 0);
}

static void
backend_more_cb(evutil_socket_t fd, short events, void *arg)
{
	struct backend *b = arg;

	if (b->fd != -1)
		backend_read_cb(b->fd, EV_READ, b);
}

void
backend_set_reading(struct backend *b, bool reading)
{
	b->paused = !reading;
	if (b->fd == -1 || b->eof || reading == b->reading)
		return;
	b->reading = reading;
	if (reading) {
		event_add(b->read_event, NULL);
		/* Input that waited for the budget or the pause. */
		if (b->in_len > 0)
			backend_continue(b);
	} else {
		event_del(b->read_event);
	}
}

/* The backend is gone for its room: code is 1000 when it ended well
 * (exit status 0, or its connection closed), 1011 otherwise. */
static void
backend_lost(struct backend *b, unsigned code)
{
	struct room *r = b->room;

	if (r == NULL)
		return;
	stats.backends_failed++;
	/* A line it did not finish is not a record, but the backend meant
	 * it as one, so it counts as a bad one. */
	if (b->in_len > 0 && !b->skipping) {
		stats.records_malformed++;
		log_warn("%s: backend ended in the middle of a line: %zu bytes "
		    "discarded", b->label, b->in_len);
	}
	b->in_len = 0;
	room_backend_lost(r, code);	/* calls backend_stop(b) */
}

/* One line of a json backend: a command for room r. */
static void
backend_record(struct backend *b, struct room *r, const char *line,
    size_t len)
{
	struct record_cmd cmd;
	unsigned long suppressed;
	char err[160], quoted[4 * 200 + 4];

	if (len == 0 || (len == 1 && line[0] == '\r'))
		return;		/* blank lines are harmless */
	if (record_decode(line, len, &cmd, err, sizeof(err)) == 0) {
		/* A shared room's command goes to every node of the room;
		 * an ack stays with the journal here. */
		if (r->cl != NULL && cmd.command != RECORD_ACK)
			cluster_command(r, line, len);
		else
			room_command(r, &cmd);
	} else {
		stats.records_malformed++;
		if (log_ratelimit(&b->log_budget, &suppressed))
			log_warn("%s: bad record from backend (%s): %s%s",
			    b->label, err, log_quote(quoted, line, len, 200),
			    suppressed ? " (more suppressed)" : "");
	}
	record_cmd_free(&cmd);
}

/* One line of a lines backend, or a chunk of a binary one: a message to
 * its client, sent as a send command would be.  Text must be UTF-8 on
 * the wire, so bytes that are not become U+FFFD. */
static void
backend_message(struct backend *b, const uint8_t *data, size_t len,
    bool binary)
{
	struct record_cmd cmd;
	const char *client;
	uint8_t *fixed = NULL;

	if (b->room->solo == NULL)
		return;		/* its client went: the room stops */
	client = b->room->solo->name;
	if (!binary && len > 0 && data[len - 1] == '\r')
		len--;		/* CRLF line ends, as websocketd takes them */
	if (!binary && !utf8_valid(data, len)) {
		if ((fixed = malloc(3 * len)) == NULL)
			return;
		len = utf8_sanitize(data, len, fixed);
		data = fixed;
	}
	memset(&cmd, 0, sizeof(cmd));
	cmd.command = RECORD_SEND;
	cmd.clients = &client;
	cmd.n_clients = 1;
	cmd.binary = binary;
	cmd.payload = data;
	cmd.payload_len = len;
	room_command(b->room, &cmd);
	free(fixed);
}

static void
backend_line(struct backend *b, const uint8_t *line, size_t len)
{
	if (b->room->n_taps > 0)
		admin_tap(b->room, '>', line, len, false);
	if (b->format == CFG_FORMAT_JSON)
		backend_record(b, b->room, (const char *)line, len);
	else
		backend_message(b, line, len, false);
}

static void
backend_too_long(struct backend *b)
{
	unsigned long suppressed;

	stats.records_too_long++;
	if (log_ratelimit(&b->log_budget, &suppressed))
		log_warn("%s: %s longer than %llu bytes from backend: "
		    "discarded%s", b->label, b->format == CFG_FORMAT_JSON ?
		    "record line" : "line", (unsigned long long)b->line_max,
		    suppressed ? " (more suppressed)" : "");
}

/* Keep data[0..len) in b->in, for a later turn.  Returns -1 when out of
 * memory (the bytes are lost, and the line with them). */
static int
backend_keep(struct backend *b, const uint8_t *data, size_t len)
{
	size_t need = b->in_len + len, cap;
	uint8_t *in;

	if (len == 0)
		return 0;
	if (need > b->in_cap) {
		cap = b->in_cap ? b->in_cap : 4096;
		while (cap < need)
			cap *= 2;
		if ((in = realloc(b->in, cap)) == NULL)
			return -1;
		b->in = in;
		b->in_cap = cap;
	}
	memcpy(b->in + b->in_len, data, len);
	b->in_len = need;
	return 0;
}

/* The room does not read the backend now (its client is behind); the
 * last words of a program that exited go out all the same. */
static bool
backend_held(const struct backend *b)
{
	return b->paused && !b->exited;
}

/* The rest of the input waits for a later turn: this turn's budget is
 * spent, or the room no longer reads the backend (its client is behind). */
static bool
backend_must_wait(const struct backend *b, uint64_t start)
{
	return backend_held(b) || stats.messages_out - start >= BACKEND_WORK_MAX;
}

/*
 * Carry out the complete lines of data[0..len) (all of it for a binary
 * backend), within the budget; keep an unfinished line, and whatever the
 * budget left, in b->in.  Returns false when input was left for lack of
 * budget.  The room may detach the backend on the way (a command can
 * close the last client of a solo room).
 */
static bool
backend_take(struct backend *b, const uint8_t *data, size_t len,
    uint64_t start)
{
	const uint8_t *nl;
	size_t n;

	while (len > 0 && b->room != NULL) {
		if (backend_must_wait(b, start)) {
			if (backend_keep(b, data, len) == -1)
				b->skipping = true;
			return false;
		}
		nl = memchr(data, '\n', len);
		if (nl == NULL) {
			if (b->skipping)
				return true;
			if (len > b->line_max) {
				backend_too_long(b);
				b->skipping = true;
				return true;
			}
			if (backend_keep(b, data, len) == -1)
				b->skipping = true;
			return true;
		}
		n = (size_t)(nl - data);
		if (b->skipping) {
			b->skipping = false;
		} else if (n > b->line_max) {
			backend_too_long(b);
		} else {
			backend_line(b, data, n);
		}
		data += n + 1;
		len -= n + 1;
	}
	return true;
}

/* Input kept from an earlier turn, then newly read data[0..len): carry
 * out what the budget allows.  Returns false when input is left. */
static bool
backend_input(struct backend *b, const uint8_t *data, size_t len)
{
	uint64_t start = stats.messages_out;
	const uint8_t *nl;
	uint8_t *kept;
	size_t kept_len, n = len;
	bool done;

	if (b->binary) {
		/* No budget: one message per read, for one client.  What
		 * comes while the client is behind waits. */
		if (b->in_len > 0 && !backend_held(b)) {
			backend_message(b, b->in, b->in_len, true);
			b->in_len = 0;
		}
		if (len > 0 && (backend_held(b) || b->in_len > 0)) {
			if (backend_keep(b, data, len) == -1)
				b->in_len = 0;
		} else if (len > 0) {
			backend_message(b, data, len, true);
		}
		return true;
	}
	if (b->in_len == 0)
		return backend_take(b, data, len, start);
	if (memchr(b->in, '\n', b->in_len) == NULL) {
		/* A line begun in an earlier read ends at data's first
		 * '\n': only that much is copied. */
		nl = len > 0 ? memchr(data, '\n', len) : NULL;
		if (nl == NULL) {
			if (b->in_len + len > b->line_max) {
				backend_too_long(b);
				b->skipping = true;
				b->in_len = 0;
			} else if (backend_keep(b, data, len) == -1) {
				b->skipping = true;
				b->in_len = 0;
			}
			return true;
		}
		n = (size_t)(nl - data) + 1;
	}
	if (n > 0 && backend_keep(b, data, n) == -1) {
		b->skipping = true;
		b->in_len = 0;
		return true;
	}
	data += n;
	len -= n;
	kept = b->in;
	kept_len = b->in_len;
	b->in = NULL;
	b->in_len = b->in_cap = 0;
	done = backend_take(b, kept, kept_len, start);
	free(kept);
	if (!done || b->room == NULL) {
		if (len > 0 && b->room != NULL && backend_keep(b, data, len) == -1)
			b->skipping = true;
		return done;
	}
	return backend_take(b, data, len, start);
}

/*
 * The connection ended (err 0: EOF, else the error).  An exec backend's
 * exit is likely to follow: it is waited for a moment, so that the log
 * and the client hear how the program ended rather than only that its
 * output did.
 */
static void
backend_ended(struct backend *b, int err)
{
	b->eof = true;
	b->reading = false;
	event_del(b->read_event);
	if (b->kind == CFG_BACKEND_EXEC && b->pid != 0) {
		if (b->timer_does != BACKEND_TIMER_EXIT_WAIT)
			backend_timer_set(b, BACKEND_TIMER_EXIT_WAIT,
			    BACKEND_EXIT_WAIT_MS);
		return;
	}
	if (err == 0) {
		log_warn("%s: backend closed its %s", b->label,
		    b->kind != CFG_BACKEND_EXEC ? "connection" : "output");
		backend_lost(b, WS_CLOSE_NORMAL);
	} else {
		log_warn("%s: backend connection failed: %s", b->label,
		    strerror(err));
		backend_lost(b, WS_CLOSE_INTERNAL_ERROR);
	}
}

/* The complete lines of a replaced backend: commands for its former
 * room, which it still speaks for until it ends. */
static void
backend_former_lines(struct backend *b, const uint8_t *data, size_t len)
{
	const uint8_t *nl;
	size_t start = 0, n;

	if (backend_keep(b, data, len) == -1) {
		b->in_len = 0;
		return;
	}
	client_batch_begin();
	while (b->former != NULL && (nl = memchr(b->in + start, '\n',
	    b->in_len - start)) != NULL) {
		n = (size_t)(nl - (b->in + start));
		if (n <= b->line_max)
			backend_record(b, b->former, (const char *)b->in + start,
			    n);
		start += n + 1;
	}
	client_batch_end();
	memmove(b->in, b->in + start, b->in_len - start);
	b->in_len -= start;
	if (b->in_len > b->line_max)
		b->in_len = 0;
}

/* A stopping backend's output is read, so that it is not blocked
 * writing while it should be reading its last records: carried out if
 * it was replaced in a reload (its room is still there), else dropped. */
static void
backend_read_detached(struct backend *b)
{
	ssize_t n = read(b->fd, backend_read_buf, sizeof(backend_read_buf));

	if (n > 0 && b->former != NULL && b->format == CFG_FORMAT_JSON)
		backend_former_lines(b, backend_read_buf, (size_t)n);
	if (n > 0 || (n == -1 && (errno == EAGAIN || errno == EINTR)))
		return;
	/* EOF or an error: the connection is done with. */
	backend_close_fd(b);
	backend_check_done(b);
}

static void
backend_read_cb(evutil_socket_t fd, short events, void *arg)
{
	struct backend *b = arg;
	ssize_t n = 0;
	int err = 0;

	if (b->room == NULL) {
		backend_read_detached(b);
		return;
	}
	if (b->paused)
		return;		/* backend_set_reading wakes it */
	/* Whatever the records send is written once per client, after
	 * all of them. */
	client_batch_begin();
	if (b->in_len > 0 &&
	    (b->binary || memchr(b->in, '\n', b->in_len) != NULL)) {
		/* Input the budget left: no new read until it is done. */
		if (!backend_input(b, NULL, 0) && b->room != NULL &&
		    !b->paused)
			backend_continue(b);
		client_batch_end();
		return;
	}
	n = read(fd, backend_read_buf, sizeof(backend_read_buf));
	err = errno;
	/* It answers: it has likely read what it answers, which the
	 * journal need not keep any more. */
	if (n > 0 && b->room != NULL)
		room_backend_trim(b->room);
	if (n > 0 && !backend_input(b, backend_read_buf, (size_t)n) &&
	    b->room != NULL && !b->paused)
		backend_continue(b);
	client_batch_end();
	if (n > 0 || (n == -1 && (err == EAGAIN || err == EINTR)) ||
	    b->room == NULL)
		return;
	backend_ended(b, n == 0 ? 0 : err);
}

/* n bytes went into the socket: the unjournaled ones first (they head
 * the buffer), then the journal's. */
static void
backend_wrote(struct backend *b, size_t n)
{
	size_t own = n < b->unjournaled ? n : b->unjournaled;

	b->unjournaled -= own;
	if (n > own && b->room != NULL)
		room_backend_wrote(b->room, n - own);
}

static void
backend_write_cb(evutil_socket_t fd, short events, void *arg)
{
	struct backend *b = arg;
	int n;

	/* The queue may have been forgotten since (backend_forget_queued):
	 * evbuffer_write says -1 for an empty one. */
	n = evbuffer_get_length(b->out) > 0 ? evbuffer_write(b->out, fd) : 0;
	if (n > 0)
		backend_wrote(b, (size_t)n);
	if (n > 0 && b->connecting) {
		b->connecting = false;
		if (b->timer_does == BACKEND_TIMER_CONNECT) {
			b->timer_does = BACKEND_TIMER_NONE;
			evtimer_del(b->timer);
		}
		log_debug("%s: connected to backend", b->label);
		if (b->room != NULL)
			b->room->ever_up = true;
	}
	if (n == -1 && errno != EAGAIN && errno != EINTR) {
		/* It stopped reading for good.  What it did not read stays
		 * queued, for the room to give to the next backend. */
		log_debug("%s: write to backend failed: %s", b->label,
		    strerror(errno));
		event_del(b->write_event);
		b->write_shut = true;
		if (b->room == NULL) {
			evbuffer_drain(b->out, evbuffer_get_length(b->out));
			backend_close_fd(b);
			backend_check_done(b);
		} else {
			backend_ended(b, errno);
		}
		return;
	}
	if (evbuffer_get_length(b->out) > 0) {
		if (b->room != NULL)
			room_backend_drained(b->room);
		return;
	}
	event_del(b->write_event);
	b->writing = false;
	if (b->room != NULL) {
		room_backend_drained(b->room);
		return;
	}
	/* Stopping: all is written. */
	if (b->kind != CFG_BACKEND_EXEC && b->former == NULL) {
		backend_close_fd(b);
		backend_check_done(b);
	} else if (!b->write_shut) {
		/* EOF on stdin asks the program to finish. */
		backend_shut_write(b);
	}
}

/* Read what the exited process left in the socket, up to what a socket
 * holds, and carry it out (all of it: the budget does not apply to a
 * program's last words). */
static void
backend_read_rest(struct backend *b)
{
	size_t got = 0;
	ssize_t n;

	if (b->fd == -1)
		return;
	/* Its last words go out even to a client that is behind (within
	 * BACKEND_REST_MAX and the client's own bound): see backend_held. */
	client_batch_begin();
	while (b->in_len > 0 && b->room != NULL && !backend_input(b, NULL, 0))
		;
	while (got < BACKEND_REST_MAX && b->room != NULL &&
	    (n = read(b->fd, backend_read_buf, sizeof(backend_read_buf)))
	    > 0) {
		got += (size_t)n;
		if (!backend_input(b, backend_read_buf, (size_t)n))
			while (b->room != NULL && !backend_input(b, NULL, 0))
				;
	}
	client_batch_end();
}

/* Signal the program's process group; false when no process is left in
 * it (the leader reaped and its children gone too). */
static bool
backend_signal_group(struct backend *b, int sig)
{
	if (b->pgid <= 0)
		return false;
	/* A group taken over in an upgrade may hold dead processes nobody
	 * has reaped yet (we are not their parent): they answer kill(0),
	 * and do not count. */
	if (sig == 0 && b->adopted && !backend_group_alive(b->pgid)) {
		b->pgid = 0;
		return false;
	}
	if (kill(-b->pgid, sig) == 0)
		return true;
	b->pgid = 0;	/* ESRCH: nobody left */
	return false;
}

/* Whether a process of group pgid lives (is not a zombie), from /proc. */
static bool
backend_group_alive(pid_t pgid)
{
	char path[300], buf[512], *p, state;
	struct dirent *d;
	long pgrp, ppid;
	bool alive = false;
	DIR *dir;
	FILE *f;

	if ((dir = opendir("/proc")) == NULL)
		return true;	/* cannot tell: as kill says */
	while (!alive && (d = readdir(dir)) != NULL) {
		if (d->d_name[0] < '1' || d->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", d->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		/* "pid (comm) state ppid pgrp ...": comm may hold anything,
		 * so the fields after its last ')'. */
		if (fgets(buf, sizeof(buf), f) != NULL &&
		    (p = strrchr(buf, ')')) != NULL &&
		    sscanf(p + 1, " %c %ld %ld", &state, &ppid, &pgrp) == 3 &&
		    pgrp == pgid && state != 'Z' && state != 'X')
			alive = true;
		fclose(f);
	}
	closedir(dir);
	return alive;
}

/* A detached backend is done when its connection is closed and nothing
 * of its process group is left. */
static void
backend_check_done(struct backend *b)
{
	if (b->room != NULL || b->fd != -1 || b->pid != 0)
		return;
	if (b->pgid > 0 && backend_signal_group(b, 0)) {
		/* The leader is gone, a child of its is not: it has until
		 * the timer's next step. */
		if (b->timer_does != BACKEND_TIMER_KILL) {
			backend_signal_group(b, SIGTERM);
			backend_timer_set(b, BACKEND_TIMER_KILL,
			    b->stop_timeout_ms);
		}
		return;
	}
	backend_free(b);
}

void
backend_stop(struct backend *b)
{
	if (b->room != NULL) {
		b->room->backend = NULL;
		b->room = NULL;
		/* What is still queued is flushed: copy the journal's lines
		 * it references, which may go before it is written. */
		if (evbuffer_get_length(b->out) > 0)
			evbuffer_pullup(b->out, -1);
	}
	b->in_len = 0;
	if (b->fd != -1 && !b->reading && !b->eof) {
		/* Paused by its room: read now, to drain it. */
		b->reading = true;
		event_add(b->read_event, NULL);
	}
	if (b->kind != CFG_BACKEND_EXEC || b->pid == 0) {
		/* Flush what is queued, within stop_timeout, then close.  A
		 * process already reaped has no reader left but its children,
		 * which backend_check_done stops. */
		if (b->pid == 0 && b->kind == CFG_BACKEND_EXEC)
			evbuffer_drain(b->out, evbuffer_get_length(b->out));
		if (backend_queued(b) == 0 && b->former == NULL) {
			backend_close_fd(b);
			backend_check_done(b);
			return;
		}
		/* A replaced one gets EOF instead, and is read until it
		 * hangs up, since it still answers for its room. */
		if (backend_queued(b) == 0 && b->fd != -1) {
			backend_shut_write(b);
		}
		backend_timer_set(b, BACKEND_TIMER_FLUSH, b->stop_timeout_ms);
		return;
	}
	if (b->fd != -1 && backend_queued(b) == 0 && !b->write_shut) {
		backend_shut_write(b);
	}
	/* else backend_write_cb shuts stdin once the output drains */
	backend_timer_set(b, BACKEND_TIMER_TERM, b->stop_timeout_ms);
}

static void
backend_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct backend *b = arg;
	enum backend_timer what = b->timer_does;

	b->timer_does = BACKEND_TIMER_NONE;
	switch (what) {
	case BACKEND_TIMER_NONE:
		break;
	case BACKEND_TIMER_CONNECT:
		log_warn("%s: cannot connect to backend: no answer in %d ms",
		    b->label, BACKEND_CONNECT_TIMEOUT_MS);
		backend_ended(b, ETIMEDOUT);
		break;
	case BACKEND_TIMER_EXIT_WAIT:
		/* It closed its output and still runs. */
		log_warn("%s: backend closed its output (pid %d still runs)",
		    b->label, (int)b->pid);
		backend_lost(b, WS_CLOSE_NORMAL);
		break;
	case BACKEND_TIMER_FLUSH:
		backend_close_fd(b);
		backend_check_done(b);
		break;
	case BACKEND_TIMER_TERM:
		if (b->pid != 0)
			log_info("%s: backend (pid %d) still running after %llu "
			    "ms; sending SIGTERM", b->label, (int)b->pid,
			    (unsigned long long)b->stop_timeout_ms);
		backend_signal_group(b, SIGTERM);
		backend_timer_set(b, BACKEND_TIMER_KILL, b->stop_timeout_ms);
		break;
	case BACKEND_TIMER_KILL:
		if (backend_signal_group(b, 0)) {
			log_info("%s: backend (pid %d) still running after %llu "
			    "ms; sending SIGKILL", b->label, (int)b->pgid,
			    (unsigned long long)b->stop_timeout_ms);
			backend_signal_group(b, SIGKILL);
		}
		/* The leader's reaping ends it; a group with no leader
		 * left is done now. */
		b->pgid = 0;
		if (b->pid == 0) {
			backend_close_fd(b);
			backend_check_done(b);
		}
		break;
	}
}

static void
backend_log_exit(struct backend *b, int status)
{
	void (*say)(const char *, ...) = b->room != NULL ? log_warn : log_info;
	unsigned long long ms = server_now_ms() - b->started_ms;

	if (b->room != NULL && b->room->solo != NULL)
		say = log_info;		/* a program's exit is its client's end */
	if (WIFEXITED(status))
		say("%s: backend (pid %llu) exited with status %d after %llu ms",
		    b->label, (unsigned long long)b->pid, WEXITSTATUS(status),
		    ms);
	else if (WIFSIGNALED(status))
		say("%s: backend (pid %llu) killed by signal %d (%s) after %llu "
		    "ms", b->label, (unsigned long long)b->pid, WTERMSIG(status),
		    strsignal(WTERMSIG(status)), ms);
}

/*
 * The process exited, with status (waitpid's) when known: a process
 * taken over from the process before an upgrade is not our child, and
 * only its pidfd tells that it ended.
 */
static void
backend_exited(struct backend *b, int status, bool known)
{
	if (known)
		backend_log_exit(b, status);
	else
		(b->room != NULL ? log_warn : log_info)("%s: backend (pid %llu) "
		    "exited; its status is unknown (it was started before "
		    "the upgrade)", b->label, (unsigned long long)b->pid);
	idmap_del(&server.processes, b->pid);
	server.n_processes--;
	b->pid = 0;
	b->exited = true;
	b->exit_status = status;
	if (b->pid_event != NULL) {
		event_free(b->pid_event);
		b->pid_event = NULL;
	}
	if (b->pidfd != -1) {
		close(b->pidfd);
		b->pidfd = -1;
	}
	if (b->timer_does == BACKEND_TIMER_EXIT_WAIT)
		evtimer_del(b->timer);
	backend_stderr_drain(b);
	if (b->room != NULL) {
		/* Carry out what it wrote before it died, then fail the
		 * room: its socket may be held open by a child of its own,
		 * so EOF cannot be waited for. */
		backend_read_rest(b);
		backend_lost(b, !known || (WIFEXITED(status) &&
		    WEXITSTATUS(status) == 0) ? WS_CLOSE_NORMAL :
		    WS_CLOSE_INTERNAL_ERROR);
	} else {
		/* Stopping: its children go with it. */
		if (b->timer_does != BACKEND_TIMER_KILL)
			evtimer_del(b->timer);
		backend_close_fd(b);
		backend_check_done(b);
	}
}

void
backend_reap(void)
{
	struct backend *b;
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		b = idmap_get(&server.processes, (uint64_t)pid);
		if (b != NULL)
			backend_exited(b, status, true);
	}
}

static void
backend_pidfd_cb(evutil_socket_t fd, short events, void *arg)
{
	backend_exited(arg, 0, false);
}

void
backend_kill_all(void)
{
	struct backend *b;

	LIST_FOREACH(b, &server.backends, entry)
		backend_signal_group(b, SIGKILL);
}

/* stderr */

/* Log one stderr line, if this second's budget allows: false when not. */
static bool
backend_stderr_line(struct backend *b, const char *line, size_t len)
{
	char quoted[4 * BACKEND_STDERR_LINE_MAX + 4];
	time_t now = time(NULL);

	if (now != b->err_second) {
		b->err_second = now;
		b->err_lines = 0;
	}
	if (b->err_lines >= BACKEND_STDERR_LINES)
		return false;
	b->err_lines++;
	log_info("%s: backend: %s", b->label,
	    log_quote(quoted, line, len, BACKEND_STDERR_LINE_MAX));
	return true;
}

/*
 * Log the whole lines buffered, within the budget; a line longer than
 * BACKEND_STDERR_LINE_MAX is logged in pieces of that size, each counted
 * as a line.  Returns false when the budget ran out with lines left.
 */
static bool
backend_stderr_lines(struct backend *b)
{
	char *nl;
	size_t n;

	while (b->err_len > 0) {
		nl = memchr(b->err_buf, '\n', b->err_len);
		n = nl != NULL ? (size_t)(nl - b->err_buf) : b->err_len;
		if (n > BACKEND_STDERR_LINE_MAX) {
			n = BACKEND_STDERR_LINE_MAX;
			nl = NULL;
		} else if (nl == NULL && n < BACKEND_STDERR_LINE_MAX) {
			return true;	/* wait for the line's end */
		}
		if (!backend_stderr_line(b, b->err_buf, n))
			return false;
		n += nl != NULL;
		memmove(b->err_buf, b->err_buf + n, b->err_len - n);
		b->err_len -= n;
	}
	return true;
}

static void
backend_stderr_cb(evutil_socket_t fd, short events, void *arg)
{
	struct backend *b = arg;
	struct timespec ts;
	ssize_t n;

	n = read(fd, b->err_buf + b->err_len, sizeof(b->err_buf) - b->err_len);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		backend_close_stderr(b);
		return;
	}
	b->err_len += (size_t)n;
	if (backend_stderr_lines(b))
		return;
	/* Over budget: stop reading until the next second; the program
	 * blocks on its full pipe meanwhile. */
	event_del(b->err_event);
	clock_gettime(CLOCK_REALTIME, &ts);
	server_timer_set(b->err_timer, 1000 - (uint64_t)ts.tv_nsec / 1000000);
}

static void
backend_stderr_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct backend *b = arg;

	if (backend_stderr_lines(b))
		event_add(b->err_event, NULL);
	else
		server_timer_set(b->err_timer, 1000);
}

/* The process is gone: log what it left on stderr, within the budget,
 * and count the rest. */
static void
backend_stderr_drain(struct backend *b)
{
	unsigned long dropped = 0;
	ssize_t n;
	size_t total = 0;
	char *p;

	if (b->err_fd == -1)
		return;
	for (;;) {
		if (!backend_stderr_lines(b)) {
			for (p = b->err_buf; p < b->err_buf + b->err_len; p++)
				dropped += *p == '\n';
			b->err_len = 0;
		}
		if (total >= BACKEND_REST_MAX)
			break;
		n = read(b->err_fd, b->err_buf + b->err_len,
		    sizeof(b->err_buf) - b->err_len);
		if (n <= 0)
			break;
		b->err_len += (size_t)n;
		total += (size_t)n;
	}
	if (b->err_len > 0 &&
	    !backend_stderr_line(b, b->err_buf, b->err_len))
		dropped++;
	b->err_len = 0;
	if (dropped > 0)
		log_info("%s: backend: %lu more lines of stderr not logged",
		    b->label, dropped);
}

/* The upgrade (upgrade.c): handing a room's backend to a new process. */

bool
backend_transferable(const struct backend *b)
{
	/* Up and doing nothing but its work: not failing or stopping; and
	 * a process only to a process we start, since systemd kills the
	 * unit's processes when it keeps the descriptors. */
	if (b->kind == CFG_BACKEND_EXEC && upgrade_storing())
		return false;
	return b->room != NULL && b->fd != -1 && !b->eof && !b->exited &&
	    !b->write_shut && b->timer_does == BACKEND_TIMER_NONE &&
	    (b->kind != CFG_BACKEND_EXEC || b->pid != 0);
}

void
backend_save(struct backend *b, struct blob *w)
{
	size_t out = evbuffer_get_length(b->out);
	int pidfd = -1;

	/* A pidfd made while the process is our unreaped child names it
	 * and no other, whatever becomes of its pid. */
	if (b->pid != 0)
		pidfd = (int)syscall(SYS_pidfd_open, (pid_t)b->pid, 0);
	blob_put_u32(w, (uint32_t)b->fd);
	blob_put_u32(w, (uint32_t)b->wfd);
	blob_put_u64(w, b->pid);
	blob_put_u64(w, (uint64_t)b->pgid);
	blob_put_u32(w, (uint32_t)b->err_fd);
	blob_put_u32(w, (uint32_t)pidfd);
	blob_put_u64(w, b->started_ms);
	blob_put_u8(w, b->paused);
	blob_put_u8(w, b->skipping);
	blob_put_bytes(w, b->in, b->in_len);
	blob_put_bytes(w, out > 0 ? evbuffer_pullup(b->out, -1) : NULL, out);
	blob_put_u64(w, b->unjournaled);
	blob_put_bytes(w, b->err_buf, b->err_len);
	upgrade_pass(b->fd);
	if (b->wfd != b->fd)
		upgrade_pass(b->wfd);
	if (b->err_fd != -1)
		upgrade_pass(b->err_fd);
	if (pidfd != -1)
		upgrade_pass_owned(pidfd);
}

struct backend *
backend_load(struct room *r, struct blob *blob, bool *gone)
{
	const uint8_t *in, *out, *err;
	size_t in_len, out_len, err_len;
	struct backend *b;

	if ((b = calloc(1, sizeof(*b))) == NULL)
		return NULL;
	LIST_INSERT_HEAD(&server.backends, b, entry);
	b->adopted = true;
	backend_prepare(b, r);
	*gone = false;
	b->fd = upgrade_fd(blob_get_u32(blob));
	b->wfd = upgrade_fd(blob_get_u32(blob));
	b->pid = blob_get_u64(blob);
	b->pgid = (pid_t)blob_get_u64(blob);
	b->err_fd = upgrade_fd(blob_get_u32(blob));
	b->pidfd = upgrade_fd(blob_get_u32(blob));
	b->started_ms = blob_get_u64(blob);
	b->paused = blob_get_bool(blob);
	b->skipping = blob_get_bool(blob);
	in = blob_get_bytes(blob, &in_len, b->line_max + BACKEND_READ_MAX);
	out = blob_get_bytes(blob, &out_len, SIZE_MAX);
	b->unjournaled = blob_get_u64(blob);
	err = blob_get_bytes(blob, &err_len, sizeof(b->err_buf));
	if (!blob->failed && (b->fd == -1 || b->wfd == -1)) {
		/* Its connection went while nobody held it: the room
		 * starts another. */
		*gone = true;
		goto fail;
	}
	if (blob->failed || b->label == NULL || b->timer == NULL ||
	    b->more == NULL || b->out == NULL || b->unjournaled > out_len ||
	    evbuffer_add(b->out, out, out_len) == -1)
		goto fail;
	if (in_len > 0) {
		if ((b->in = malloc(in_len)) == NULL)
			goto fail;
		memcpy(b->in, in, in_len);
		b->in_len = b->in_cap = in_len;
	}
	memcpy(b->err_buf, err, err_len);
	b->err_len = err_len;
	/* Ours now: not to leak into the programs we spawn. */
	(void)fcntl(b->fd, F_SETFD, FD_CLOEXEC);
	(void)fcntl(b->wfd, F_SETFD, FD_CLOEXEC);
	if (b->err_fd != -1)
		(void)fcntl(b->err_fd, F_SETFD, FD_CLOEXEC);
	if (b->pidfd != -1)
		(void)fcntl(b->pidfd, F_SETFD, FD_CLOEXEC);
	b->read_event = event_new(server.base, b->fd, EV_READ | EV_PERSIST,
	    backend_read_cb, b);
	b->write_event = event_new(server.base, b->wfd, EV_WRITE | EV_PERSIST,
	    backend_write_cb, b);
	if (b->read_event == NULL || b->write_event == NULL)
		goto fail;
	if (b->pid != 0) {
		if (b->pidfd == -1 || idmap_put(&server.processes, b) == -1)
			goto fail;
		server.n_processes++;
		b->pid_event = event_new(server.base, b->pidfd, EV_READ,
		    backend_pidfd_cb, b);
		if (b->pid_event == NULL)
			goto fail;
		event_add(b->pid_event, NULL);
	}
	if (b->err_fd != -1) {
		b->err_event = event_new(server.base, b->err_fd,
		    EV_READ | EV_PERSIST, backend_stderr_cb, b);
		b->err_timer = evtimer_new(server.base,
		    backend_stderr_timer_cb, b);
		if (b->err_event == NULL || b->err_timer == NULL)
			goto fail;
		event_add(b->err_event, NULL);
	}
	b->room = r;
	if (!b->paused) {
		b->reading = true;
		event_add(b->read_event, NULL);
		if (b->in_len > 0)
			backend_continue(b);
	}
	if (out_len > 0) {
		b->writing = true;
		event_add(b->write_event, NULL);
	}
	return b;
fail:
	/* Nothing of it is closed: the process may still give up, and
	 * the old one then carries on with these descriptors. */
	if (b->pid != 0 && idmap_get(&server.processes, b->pid) == b) {
		idmap_del(&server.processes, b->pid);
		server.n_processes--;
	}
	b->pid = 0;
	b->fd = b->wfd = b->err_fd = b->pidfd = -1;
	backend_free(b);
	return NULL;
}

void
backend_abandon(struct backend *b)
{
	/* The new process has it: its process keeps running, its socket
	 * stays open there, and what it writes to stderr is read there. */
	if (b->room != NULL) {
		b->room->backend = NULL;
		b->room = NULL;
	}
	if (b->pid != 0) {
		idmap_del(&server.processes, b->pid);
		server.n_processes--;
		b->pid = 0;
	}
	if (b->err_fd != -1) {
		if (b->err_event != NULL)
			event_free(b->err_event);
		if (b->err_timer != NULL)
			event_free(b->err_timer);
		b->err_event = b->err_timer = NULL;
		close(b->err_fd);
		b->err_fd = -1;
	}
	backend_free(b);
}
