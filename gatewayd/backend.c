/*
 * backend: a room's program, over a Unix socket or as a spawned process.
 *
 * Both kinds come down to one stream socket carrying record lines both
 * ways: for unix: backends the connection, for exec: backends one end of a
 * socketpair whose other end is the process's stdin and stdout.  Its stderr
 * is a pipe whose lines go to the log, tagged with the room.
 *
 * A backend is attached to its room until it fails or the room stops;
 * then backend_stop detaches it and winds it down, and it is freed once
 * its connection is closed and its process reaped.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "gatewayd.h"
#include "log.h"
#include "stats.h"

#define BACKEND_STDERR_LINE_MAX 2048	/* a longer stderr line is logged cut */

static void backend_read_cb(struct bufferevent *bev, void *arg);
static void backend_write_cb(struct bufferevent *bev, void *arg);
static void backend_event_cb(struct bufferevent *bev, short events, void *arg);
static void backend_stderr_cb(struct bufferevent *bev, void *arg);
static void backend_stderr_event_cb(struct bufferevent *bev, short events,
    void *arg);
static void backend_stop_cb(evutil_socket_t fd, short events, void *arg);

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
		log_error("room %s: socket: %s", b->label, strerror(errno));
		return -1;
	}
	/* A Unix socket connects at once or not at all (EAGAIN: its
	 * backlog is full, which is a failure like any other). */
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		log_warn("room %s: cannot connect to backend unix:%s: %s",
		    b->label, path, strerror(errno));
		close(fd);
		return -1;
	}
	log_info("room %s: connected to backend unix:%s", b->label, path);
	return fd;
}

/* The child's side of backend_spawn: never returns. */
static void
backend_child(char **argv, const char *room, int sock, int err, int report)
{
	sigset_t none;
	int e;

	/* Signal dispositions set to "ignore" survive exec; the mask too. */
	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Its own process group, so that a terminal's ^C reaches gatewayd
	 * alone, which then stops its rooms in order; and it dies with
	 * gatewayd if gatewayd is killed outright. */
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (dup2(sock, 0) == -1 || dup2(sock, 1) == -1 || dup2(err, 2) == -1)
		goto fail;
	setenv("GATEWAYD_ROOM", room, 1);
	execvp(argv[0], argv);
fail:
	e = errno;
	/* The parent learns why from the report; if it cannot be written,
	 * there is nothing else to do. */
	(void)!write(report, &e, sizeof(e));
	_exit(127);
}

/* Spawn the room's program; returns the socket to it, or -1. */
static int
backend_spawn(struct backend *b, char **argv)
{
	int sv[2] = { -1, -1 }, err[2] = { -1, -1 }, report[2] = { -1, -1 };
	ssize_t n;
	int e = 0;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1 ||
	    pipe2(err, O_CLOEXEC) == -1 || pipe2(report, O_CLOEXEC) == -1) {
		log_error("room %s: cannot spawn backend: %s", b->label,
		    strerror(errno));
		goto fail;
	}
	pid = fork();
	if (pid == -1) {
		log_error("room %s: fork: %s", b->label, strerror(errno));
		goto fail;
	}
	if (pid == 0)
		backend_child(argv, b->label, sv[1], err[1], report[1]);
	close(sv[1]);
	close(err[1]);
	close(report[1]);
	/* The report pipe closes on a successful exec; before that the
	 * child writes why exec failed. */
	do
		n = read(report[0], &e, sizeof(e));
	while (n == -1 && errno == EINTR);
	close(report[0]);
	if (n == sizeof(e)) {
		log_warn("room %s: cannot run backend %s: %s", b->label,
		    argv[0], strerror(e));
		while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
			;
		close(sv[0]);
		close(err[0]);
		return -1;
	}
	b->pid = pid;
	evutil_make_socket_nonblocking(sv[0]);
	evutil_make_socket_nonblocking(err[0]);
	b->err_bev = bufferevent_socket_new(server.base, err[0],
	    BEV_OPT_CLOSE_ON_FREE);
	if (b->err_bev == NULL) {
		close(err[0]);
	} else {
		bufferevent_setcb(b->err_bev, backend_stderr_cb, NULL,
		    backend_stderr_event_cb, b);
		bufferevent_enable(b->err_bev, EV_READ);
	}
	log_info("room %s: started backend %s (pid %d)", b->label, argv[0],
	    (int)pid);
	return sv[0];
fail:
	for (int i = 0; i < 2; i++) {
		if (sv[i] != -1)
			close(sv[i]);
		if (err[i] != -1)
			close(err[i]);
		if (report[i] != -1)
			close(report[i]);
	}
	return -1;
}

static void
backend_free(struct backend *b)
{
	LIST_REMOVE(b, entry);
	if (b->bev != NULL)
		bufferevent_free(b->bev);
	if (b->err_bev != NULL)
		bufferevent_free(b->err_bev);
	if (b->stop_timer != NULL)
		event_free(b->stop_timer);
	free(b->label);
	free(b);
	server_check_stopped();
}

struct backend *
backend_start(struct room *r, bool resumed)
{
	const struct cfg_resource *res = r->res;
	struct backend *b;
	char *hello;
	size_t len;
	int fd;

	b = calloc(1, sizeof(*b));
	if (b == NULL)
		return NULL;
	b->label = strdup(r->path);
	b->stop_timer = evtimer_new(server.base, backend_stop_cb, b);
	if (b->label == NULL || b->stop_timer == NULL) {
		if (b->stop_timer != NULL)
			event_free(b->stop_timer);
		free(b->label);
		free(b);
		return NULL;
	}
	LIST_INSERT_HEAD(&server.backends, b, entry);
	b->kind = res->backend_kind;
	b->line_max = RECORD_LINE_MAX(res->opts.max_message_size);
	b->stop_timeout_ms = res->opts.stop_timeout_ms;
	fd = b->kind == CFG_BACKEND_UNIX ? backend_connect(b, res->unix_path) :
	    backend_spawn(b, res->argv);
	if (fd != -1) {
		b->bev = bufferevent_socket_new(server.base, fd,
		    BEV_OPT_CLOSE_ON_FREE);
		if (b->bev == NULL)
			close(fd);
	}
	hello = record_hello(r->path, resumed, &len);
	if (fd == -1 || b->bev == NULL || hello == NULL) {
		free(hello);
		stats.backends_failed++;
		backend_stop(b);
		return NULL;
	}
	bufferevent_setcb(b->bev, backend_read_cb, backend_write_cb,
	    backend_event_cb, b);
	/* The write callback says when the queue is down to half, for the
	 * room to read its clients again. */
	bufferevent_setwatermark(b->bev, EV_WRITE, res->opts.backend_buffer / 2, 0);
	bufferevent_enable(b->bev, EV_READ);
	b->room = r;
	stats.backends_started++;
	backend_write(b, hello, len);
	return b;
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
	struct evbuffer *out;

	if (b->bev == NULL) {
		free(line);
		return;
	}
	out = bufferevent_get_output(b->bev);
	if (len <= BACKEND_COPY_MAX) {
		evbuffer_add(out, line, len);
		free(line);
	} else if (evbuffer_add_reference(out, line, len, backend_line_free,
	    line) == -1) {
		free(line);
	}
}

static void
backend_line(struct backend *b, const char *line, size_t len)
{
	struct record_cmd cmd;
	unsigned long suppressed;
	char err[160], quoted[4 * 200 + 4];

	if (len == 0 || (len == 1 && line[0] == '\r'))
		return;		/* blank lines are harmless */
	if (record_decode(line, len, &cmd, err, sizeof(err)) == 0) {
		room_command(b->room, &cmd);
	} else {
		stats.records_malformed++;
		if (log_ratelimit(&b->log_budget, &suppressed))
			log_warn("room %s: bad record from backend (%s): %s%s",
			    b->label, err, log_quote(quoted, line, len, 200),
			    suppressed ? " (more suppressed)" : "");
	}
	record_cmd_free(&cmd);
}

static void
backend_too_long(struct backend *b)
{
	unsigned long suppressed;

	stats.records_too_long++;
	if (log_ratelimit(&b->log_budget, &suppressed))
		log_warn("room %s: record line longer than %llu bytes from "
		    "backend: discarded", b->label,
		    (unsigned long long)b->line_max);
}

static void
backend_read_lines(struct backend *b, struct evbuffer *in)
{
	struct evbuffer_ptr start, eol;
	size_t avail, len;
	char *line;

	while ((avail = evbuffer_get_length(in)) > 0) {
		if (b->room == NULL) {
			/* Stopping: nobody to apply commands to. */
			evbuffer_drain(in, avail);
			return;
		}
		/* Search on from where the last read stopped, so that a
		 * long line arriving in pieces is scanned once. */
		evbuffer_ptr_set(in, &start, b->scanned, EVBUFFER_PTR_SET);
		eol = evbuffer_search(in, "\n", 1, &start);
		if (eol.pos == -1) {
			b->scanned = avail;
			if (b->skipping || avail > b->line_max) {
				if (!b->skipping)
					backend_too_long(b);
				b->skipping = true;
				evbuffer_drain(in, avail);
				b->scanned = 0;
			}
			return;
		}
		len = (size_t)eol.pos;
		b->scanned = 0;
		if (b->skipping || len > b->line_max) {
			if (!b->skipping)
				backend_too_long(b);
			b->skipping = false;
			evbuffer_drain(in, len + 1);
			continue;
		}
		line = (char *)evbuffer_pullup(in, (ev_ssize_t)len + 1);
		backend_line(b, line, len);
		evbuffer_drain(in, len + 1);
	}
}

static void
backend_read_cb(struct bufferevent *bev, void *arg)
{
	/* Whatever the records send is written once per client, after
	 * all of them. */
	client_batch_begin();
	backend_read_lines(arg, bufferevent_get_input(bev));
	client_batch_end();
}

/* Stopping backends finish here once their output has drained. */
static void
backend_write_cb(struct bufferevent *bev, void *arg)
{
	struct backend *b = arg;

	if (b->room != NULL) {
		room_backend_drained(b->room);
		return;
	}
	if (backend_queued(b) > 0)
		return;		/* a stopping backend waits for all of it */
	if (b->kind == CFG_BACKEND_UNIX) {
		backend_free(b);
		return;
	}
	/* exec: EOF on stdin asks the program to finish. */
	shutdown(bufferevent_getfd(bev), SHUT_WR);
}

/* The backend is gone: a line it did not finish is not a record, but
 * the backend meant it as one, so it counts as a bad one. */
static void
backend_drop_partial_line(struct backend *b)
{
	size_t left = evbuffer_get_length(bufferevent_get_input(b->bev));

	if (left == 0 || b->skipping)
		return;
	stats.records_malformed++;
	log_warn("room %s: backend ended in the middle of a line: %zu bytes "
	    "discarded", b->label, left);
}

static void
backend_event_cb(struct bufferevent *bev, short events, void *arg)
{
	struct backend *b = arg;
	struct room *r = b->room;

	if (!(events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	if (r != NULL) {
		stats.backends_failed++;
		if (events & BEV_EVENT_EOF)
			log_warn("room %s: backend closed its %s", b->label,
			    b->kind == CFG_BACKEND_UNIX ? "connection" : "output");
		else
			log_warn("room %s: backend connection failed: %s",
			    b->label, strerror(EVUTIL_SOCKET_ERROR()));
		backend_drop_partial_line(b);
		room_backend_lost(r);	/* calls backend_stop(b) */
		return;
	}
	/* Stopping: the connection is done with. */
	bufferevent_free(b->bev);
	b->bev = NULL;
	if (b->pid == 0)
		backend_free(b);
}

static void
backend_stderr_flush(struct backend *b, struct evbuffer *in, bool all)
{
	char buf[BACKEND_STDERR_LINE_MAX];
	char quoted[4 * BACKEND_STDERR_LINE_MAX + 4];
	struct evbuffer_ptr eol;
	size_t len;

	for (;;) {
		eol = evbuffer_search(in, "\n", 1, NULL);
		if (eol.pos == -1) {
			len = evbuffer_get_length(in);
			if (len == 0 || (!all && len < sizeof(buf)))
				return;
		} else {
			len = (size_t)eol.pos;
		}
		if (len > sizeof(buf))
			len = sizeof(buf);
		evbuffer_remove(in, buf, len);
		if (eol.pos != -1 && (size_t)eol.pos == len)
			evbuffer_drain(in, 1);
		log_info("room %s: backend: %s", b->label,
		    log_quote(quoted, buf, len, sizeof(buf)));
	}
}

static void
backend_stderr_cb(struct bufferevent *bev, void *arg)
{
	backend_stderr_flush(arg, bufferevent_get_input(bev), false);
}

static void
backend_stderr_event_cb(struct bufferevent *bev, short events, void *arg)
{
	struct backend *b = arg;

	if (!(events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	backend_stderr_flush(b, bufferevent_get_input(bev), true);
	bufferevent_free(b->err_bev);
	b->err_bev = NULL;
}

size_t
backend_queued(const struct backend *b)
{
	return b->bev != NULL ?
	    evbuffer_get_length(bufferevent_get_output(b->bev)) : 0;
}

void
backend_requeue_unsent(struct backend *b, struct room *r)
{
	struct evbuffer *out;
	struct evbuffer_ptr eol;
	struct client *c;
	char id[24], *line;
	size_t len;

	if (b->bev == NULL)
		return;
	out = bufferevent_get_output(b->bev);
	/*
	 * Whole lines only: the first may have been written in part, and so
	 * have been read by the backend.  Message records are recognised by
	 * the prefix record_message writes, which cannot occur inside a JSON
	 * string, so a partial line never passes for one.  Open and close
	 * records are not kept: the restarted backend gets fresh opens.
	 */
	/* A socket bufferevent freezes the start of its output buffer to
	 * all but its own writes: thaw it to take the lines back. */
	evbuffer_unfreeze(out, 1);
	while ((eol = evbuffer_search(out, "\n", 1, NULL)).pos != -1) {
		len = (size_t)eol.pos + 1;
		line = malloc(len);
		if (line == NULL ||
		    evbuffer_remove(out, line, len) != (ev_ssize_t)len) {
			free(line);
			break;
		}
		c = record_message_client(line, len, id, sizeof(id)) != NULL ?
		    client_find(id) : NULL;
		if (c != NULL && c->room == r && c->state == CLIENT_OPEN)
			room_write_message(r, c, line, len);
		else
			free(line);
	}
	evbuffer_freeze(out, 1);
}

void
backend_stop(struct backend *b)
{
	if (b->room != NULL) {
		b->room->backend = NULL;
		b->room = NULL;
	}
	if (b->kind == CFG_BACKEND_UNIX || b->pid == 0) {
		/* Flush what is queued, within stop_timeout, then close. */
		if (backend_queued(b) == 0) {
			backend_free(b);
			return;
		}
		b->stop_signal = 0;
		server_timer_set(b->stop_timer, b->stop_timeout_ms);
		return;
	}
	if (b->bev != NULL && backend_queued(b) == 0)
		shutdown(bufferevent_getfd(b->bev), SHUT_WR);
	/* else backend_write_cb shuts stdin once the output drains */
	b->stop_signal = SIGTERM;
	server_timer_set(b->stop_timer, b->stop_timeout_ms);
}

static void
backend_stop_cb(evutil_socket_t fd, short events, void *arg)
{
	struct backend *b = arg;

	if (b->stop_signal == 0 || b->pid == 0) {
		backend_free(b);
		return;
	}
	log_info("room %s: backend (pid %d) still running after %llu ms; "
	    "sending %s", b->label, (int)b->pid,
	    (unsigned long long)b->stop_timeout_ms,
	    b->stop_signal == SIGTERM ? "SIGTERM" : "SIGKILL");
	kill(-b->pid, b->stop_signal);
	if (b->stop_signal == SIGTERM) {
		b->stop_signal = SIGKILL;
		server_timer_set(b->stop_timer, b->stop_timeout_ms);
	}
}

static void
backend_log_exit(struct backend *b, pid_t pid, int status)
{
	void (*say)(const char *, ...) = b->room != NULL ? log_warn : log_info;

	if (WIFEXITED(status))
		say("room %s: backend (pid %d) exited with status %d",
		    b->label, (int)pid, WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		say("room %s: backend (pid %d) killed by signal %d (%s)",
		    b->label, (int)pid, WTERMSIG(status),
		    strsignal(WTERMSIG(status)));
}

/*
 * The process is gone: read what it left in the socket, up to what a
 * socket holds (the limit keeps a child that inherited the socket and
 * writes on from holding the loop), and apply it.
 */
#define BACKEND_REST_MAX (4 * 1024 * 1024)

static void
backend_read_rest(struct backend *b)
{
	struct evbuffer *in = bufferevent_get_input(b->bev);
	int fd = bufferevent_getfd(b->bev), n;
	size_t got = 0;

	/* The bufferevent freezes its input's end between its own reads. */
	evbuffer_unfreeze(in, 0);
	while (got < BACKEND_REST_MAX && (n = evbuffer_read(in, fd, -1)) > 0)
		got += (size_t)n;
	evbuffer_freeze(in, 0);
	backend_read_cb(b->bev, b);
}

void
backend_reap(void)
{
	struct backend *b;
	struct room *r;
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		LIST_FOREACH(b, &server.backends, entry) {
			if (b->pid == pid)
				break;
		}
		if (b == NULL)
			continue;
		backend_log_exit(b, pid, status);
		b->pid = 0;
		if (b->err_bev != NULL)
			backend_stderr_flush(b, bufferevent_get_input(b->err_bev),
			    true);
		if ((r = b->room) != NULL) {
			/* Apply what it wrote before it died, then fail the
			 * room: its socket may be held open by a child of
			 * its own, so EOF cannot be waited for. */
			if (b->bev != NULL)
				backend_read_rest(b);
			if (b->room != NULL) {
				if (b->bev != NULL)
					backend_drop_partial_line(b);
				stats.backends_failed++;
				room_backend_lost(r);
			}
		} else {
			backend_free(b);
		}
	}
}

void
backend_kill_all(void)
{
	struct backend *b;

	LIST_FOREACH(b, &server.backends, entry) {
		if (b->pid != 0)
			kill(-b->pid, SIGKILL);
	}
}
