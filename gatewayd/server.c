/*
 * server: the listeners, the signals and the graceful stop.
 *
 * A stop (SIGTERM, SIGINT) closes the listeners, closes every client with
 * 1001, lets each room's backend read the close records and then its EOF,
 * and ends the loop once every client and backend is gone, or when
 * shutdown_timeout passes, killing what is left.  A second signal stops at
 * once.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <systemd/sd-daemon.h>

#include "gatewayd.h"
#include "log.h"
#include "stats.h"
#include "tls.h"

struct server server;

/* Memory is given back to the system after a spike of queued output of
 * at least this much. */
#define SERVER_TRIM_MIN (32 * 1024 * 1024)

static void
server_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *addr, int len, void *arg)
{
	const struct cfg_listen *ln = arg;

	client_accept(fd, addr, ln->tls);
}

static void
server_listen_retry_cb(evutil_socket_t fd, short events, void *arg)
{
	size_t i;

	for (i = 0; i < server.n_listeners; i++)
		evconnlistener_enable(server.listeners[i]);
}

/* A descriptor held in reserve, for answering a client when the others
 * have run out (the technique of libev's and nginx's authors): without
 * it, clients past the open-file limit wait in the backlog unanswered. */
static int server_spare_fd = -1;

static void
server_spare_open(void)
{
	if (server_spare_fd == -1)
		server_spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Out of descriptors: spend the spare one on each waiting client, to
 * answer it 503 and close it. */
static void
server_shed(struct evconnlistener *l)
{
	int fd, n = 0;

	while (server_spare_fd != -1 && n < 64) {
		close(server_spare_fd);
		server_spare_fd = -1;
		fd = accept4(evconnlistener_get_fd(l), NULL, NULL,
		    SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd != -1) {
			stats.connections_accepted++;
			client_refuse(fd, 503, "out of file descriptors");
			n++;
		}
		server_spare_open();
		if (fd == -1)
			break;
	}
}

/* accept failed, most likely for want of file descriptors: answer the
 * clients waiting with 503 if it is that, and pause the listeners for a
 * moment instead of spinning on the error.  Logged once a second at
 * most. */
static void
server_accept_error_cb(struct evconnlistener *l, void *arg)
{
	static time_t logged;
	int err = EVUTIL_SOCKET_ERROR();
	size_t i;

	if (time(NULL) != logged) {
		logged = time(NULL);
		log_warn("accept: %s (%zu connections, %zu processes); "
		    "refusing new clients with 503 and pausing for 100 ms",
		    strerror(err), server.n_clients, server.n_processes);
	}
	if (err == EMFILE || err == ENFILE)
		server_shed(l);
	for (i = 0; i < server.n_listeners; i++)
		evconnlistener_disable(server.listeners[i]);
	server_timer_set(server.listen_retry, 100);
}

/*
 * Raise the soft open-file limit to the hard one, resolve the "auto"
 * limits from it, and warn when the configured ones may not fit: every
 * connection takes a descriptor, a spawned backend two, a unix: backend
 * one.
 */
static void
server_fit_limits(const struct cfg *cfg)
{
	struct rlimit rl;
	uint64_t nofile = 1024, need, fit;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		if (rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			(void)setrlimit(RLIMIT_NOFILE, &rl);
			(void)getrlimit(RLIMIT_NOFILE, &rl);
		}
		nofile = rl.rlim_cur == RLIM_INFINITY ? 1048576 : rl.rlim_cur;
	}
	/* auto: what the descriptors left by max_connections allow, and
	 * at most a quarter of them. */
	fit = nofile > cfg->max_connections + 64 ?
	    (nofile - cfg->max_connections - 64) / 2 : 0;
	if (fit > nofile / 4)
		fit = nofile / 4;
	if (fit < 16)
		fit = 16;
	server.max_processes = cfg->max_processes != CFG_AUTO ?
	    cfg->max_processes : fit;
	server.max_rooms = cfg->max_rooms != CFG_AUTO ? cfg->max_rooms : fit;
	need = cfg->max_connections + 2 * server.max_processes + 64;
	if (need > nofile)
		log_warn("max_connections (%llu) and max_processes (%llu) may "
		    "need %llu descriptors, more than the open-file limit "
		    "(%llu): clients past it are answered 503",
		    (unsigned long long)cfg->max_connections,
		    (unsigned long long)server.max_processes,
		    (unsigned long long)need, (unsigned long long)nofile);
}

static int
server_listen(const struct cfg_listen *ln)
{
	struct evconnlistener *l;
	int fd, one = 1;

	fd = socket(ln->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1)
		goto fail;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* [::]:port and 0.0.0.0:port are two listeners, not one. */
	if (ln->addr.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	/* Accepted sockets inherit it (on Linux): no call per connection.
	 * Frames are written whole, so Nagle would only delay them. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* Inherited too: the kernel's share of a client that does not read
	 * (its autotuning lets it grow to tcp_wmem's 4 MiB). */
	if (server.cfg->send_buffer > 0) {
		int size = (int)(server.cfg->send_buffer / 2);	/* it doubles */

		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	}
	if (bind(fd, (const struct sockaddr *)&ln->addr, ln->addr_len) == -1 ||
	    listen(fd, SOMAXCONN) == -1)
		goto fail;
	l = evconnlistener_new(server.base, server_accept_cb, (void *)ln,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (l == NULL)
		goto fail;
	evconnlistener_set_error_cb(l, server_accept_error_cb);
	server.listeners[server.n_listeners++] = l;
	log_info("listening on %s%s", ln->text, ln->tls ? " (tls)" : "");
	return 0;
fail:
	log_error("%s:%d: cannot listen on %s: %s", server.cfg->file, ln->line,
	    ln->text, strerror(errno));
	if (fd != -1)
		close(fd);
	return -1;
}

static void
server_stop_listening(void)
{
	size_t i;

	for (i = 0; i < server.n_listeners; i++)
		evconnlistener_free(server.listeners[i]);
	server.n_listeners = 0;
}

void
server_check_stopped(void)
{
	if (server.stopping && server.n_clients == 0 &&
	    LIST_EMPTY(&server.backends))
		event_base_loopexit(server.base, NULL);
}

static void
server_shutdown_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
	log_warn("shutdown_timeout passed with %zu clients left; killing the "
	    "remaining backends", server.n_clients);
	backend_kill_all();
	event_base_loopexit(server.base, NULL);
}

uint64_t
server_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
server_timer_set(struct event *ev, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	evtimer_add(ev, &tv);
}

/* SIGHUP: read the certificates and keys again.  One that does not load
 * is reported with its key's line, and the ones in use stay; connections
 * keep the context they began with either way. */
static void
server_reload_tls(void)
{
	char *errors = NULL;

	if (!server.cfg->has_tls) {
		log_info("SIGHUP: nothing to reload");
		return;
	}
	if (tls_load(server.cfg, &errors) == 0) {
		log_info("SIGHUP: certificates and keys read again");
		return;
	}
	log_error("SIGHUP: certificates not reloaded, the old ones stay in "
	    "use:\n%s", errors != NULL ? errors : "out of memory");
	free(errors);
}

/*
 * Started as root with user set: become that user, with its groups (or
 * group's), for good.  Started as root without it: say so, once.
 */
static int
server_drop_privileges(const struct cfg *cfg)
{
	const struct cfg_text *u = &cfg->user, *g = &cfg->group;
	struct passwd *pw;
	struct group *gr;
	gid_t gid;
	uid_t uid;
	char *end;

	if (u->value == NULL) {
		if (geteuid() == 0)
			log_warn("running as root: set user in [gateway] to drop "
			    "privileges once the listeners are bound");
		return 0;
	}
	errno = 0;
	uid = (uid_t)strtoul(u->value, &end, 10);
	pw = *end == '\0' && end != u->value ? getpwuid(uid) :
	    getpwnam(u->value);
	if (pw == NULL) {
		log_error("%s:%d: user: no user '%s'", cfg->file, u->line,
		    u->value);
		return -1;
	}
	uid = pw->pw_uid;
	gid = pw->pw_gid;
	if (g->value != NULL) {
		gid = (gid_t)strtoul(g->value, &end, 10);
		gr = *end == '\0' && end != g->value ? getgrgid(gid) :
		    getgrnam(g->value);
		if (gr == NULL) {
			log_error("%s:%d: group: no group '%s'", cfg->file,
			    g->line, g->value);
			return -1;
		}
		gid = gr->gr_gid;
	}
	if (geteuid() != 0) {
		if (geteuid() == uid)
			return 0;
		log_error("%s:%d: user: cannot become '%s': gatewayd was not "
		    "started as root", cfg->file, u->line, u->value);
		return -1;
	}
	if ((g->value != NULL ? setgroups(1, &gid) :
	    initgroups(pw->pw_name, gid)) == -1 || setgid(gid) == -1 ||
	    setuid(uid) == -1) {
		log_error("%s:%d: user: cannot become '%s': %s", cfg->file,
		    u->line, u->value, strerror(errno));
		return -1;
	}
	/* For good: root must not come back. */
	if (setuid(0) == 0) {
		log_error("user: privileges could be regained; stopping");
		return -1;
	}
	log_info("running as user %s (uid %d, gid %d)", pw->pw_name, (int)uid,
	    (int)gid);
	return 0;
}

static void
server_stop(int sig)
{
	struct room *r;
	struct client *c, *next;
	uint64_t ms = server.cfg->shutdown_timeout_ms;

	if (server.stopping) {
		log_warn("%s again: stopping now", strsignal(sig));
		backend_kill_all();
		event_base_loopexit(server.base, NULL);
		return;
	}
	server.stopping = true;
	sd_notify(0, "STOPPING=1");
	log_info("%s: stopping (%zu clients, waiting up to %llu ms)",
	    strsignal(sig), server.n_clients, (unsigned long long)ms);
	server_stop_listening();
	while ((r = LIST_FIRST(&server.rooms)) != NULL)
		room_shutdown(r);
	/* Clients still in their handshake belong to no room. */
	for (c = LIST_FIRST(&server.clients); c != NULL; c = next) {
		next = LIST_NEXT(c, entry);
		client_shutdown(c);
	}
	server.shutdown_timer = evtimer_new(server.base,
	    server_shutdown_timeout_cb, NULL);
	if (server.shutdown_timer != NULL)
		server_timer_set(server.shutdown_timer, ms);
	server_check_stopped();
}

static void
server_signal_cb(evutil_socket_t sig, short events, void *arg)
{
	switch (sig) {
	case SIGTERM:
	case SIGINT:
		server_stop((int)sig);
		break;
	case SIGCHLD:
		backend_reap();
		break;
	case SIGHUP:
		server_reload_tls();
		break;
	}
}

static void
server_output_check_cb(evutil_socket_t fd, short events, void *arg)
{
	client_shed_output();
}

void
server_output_over(void)
{
	if (server.output_check != NULL)
		event_active(server.output_check, EV_TIMEOUT, 0);
}

/*
 * Once a second: give memory back to the system after a spike of queued
 * output (glibc keeps freed memory in its arenas, so RSS would stay at
 * the spike's height with no client left).
 */
static void
server_housekeeping_cb(evutil_socket_t fd, short events, void *arg)
{
	if (server.output_peak >= SERVER_TRIM_MIN &&
	    server.output_bytes < server.output_peak / 4) {
		malloc_trim(0);
		server.output_peak = server.output_bytes;
	}
	server_timer_set(server.housekeeping, 1000);
}

int
server_start(struct cfg *cfg)
{
	static const int signals[] = { SIGTERM, SIGINT, SIGCHLD, SIGHUP };
	struct event_config *evcfg;
	size_t i;

	server.cfg = cfg;
	server_fit_limits(cfg);
	server_spare_open();
	idmap_init(&server.client_index, offsetof(struct client, id));
	idmap_init(&server.processes, offsetof(struct backend, pid));
	server.resource_rooms = calloc(cfg->n_resources + 1,
	    sizeof(*server.resource_rooms));
	server.static_fds = calloc(cfg->n_statics + 1,
	    sizeof(*server.static_fds));
	if (server.resource_rooms == NULL || server.static_fds == NULL ||
	    http_open_statics(cfg, server.static_fds) == -1)
		return -1;
	LIST_INIT(&server.clients);
	LIST_INIT(&server.rooms);
	LIST_INIT(&server.backends);
	/* epoll's changelist folds the EV_WRITE on and off of a busy socket
	 * within a loop turn into at most one epoll_ctl.  Its one hazard,
	 * descriptors shared through dup(), does not arise here. */
	evcfg = event_config_new();
	if (evcfg != NULL)
		event_config_set_flag(evcfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	server.base = evcfg != NULL ? event_base_new_with_config(evcfg) : NULL;
	if (evcfg != NULL)
		event_config_free(evcfg);
	if (server.base == NULL) {
		log_error("cannot create the event loop");
		return -1;
	}
	/* A peer that hangs up must cost an EPIPE, not the process. */
	signal(SIGPIPE, SIG_IGN);
	for (i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
		server.signals[i] = evsignal_new(server.base, signals[i],
		    server_signal_cb, NULL);
		if (server.signals[i] == NULL ||
		    evsignal_add(server.signals[i], NULL) == -1) {
			log_error("cannot handle signal %d", signals[i]);
			return -1;
		}
	}
	server.listen_retry = evtimer_new(server.base, server_listen_retry_cb,
	    NULL);
	server.output_check = evtimer_new(server.base, server_output_check_cb,
	    NULL);
	server.housekeeping = evtimer_new(server.base, server_housekeeping_cb,
	    NULL);
	if (server.output_check == NULL || server.housekeeping == NULL)
		return -1;
	server_timer_set(server.housekeeping, 1000);
	server.listeners = calloc(cfg->n_listens, sizeof(*server.listeners));
	if (server.listen_retry == NULL || server.listeners == NULL)
		return -1;
	for (i = 0; i < cfg->n_listens; i++) {
		if (server_listen(&cfg->listens[i]) == -1)
			return -1;
	}
	/* Everything that needs root is done: the listeners are bound,
	 * the keys read and the static directories open.  Nothing is
	 * spawned or connected before this. */
	if (server_drop_privileges(cfg) == -1)
		return -1;
	if (room_start_exact() == -1)
		return -1;
	return 0;
}

int
server_run(void)
{
	sd_notify(0, "READY=1");
	log_info("ready");
	event_base_dispatch(server.base);
	log_info("stopped");
	return 0;
}

void
server_free(void)
{
	size_t i;

	server_stop_listening();
	free(server.listeners);
	idmap_free(&server.client_index);
	idmap_free(&server.processes);
	free(server.resource_rooms);
	for (i = 0; server.static_fds != NULL && i < server.cfg->n_statics; i++)
		close(server.static_fds[i]);
	free(server.static_fds);
	tls_free();
	client_deflate_free();
	if (server_spare_fd != -1)
		close(server_spare_fd);
	for (i = 0; i < sizeof(server.signals) / sizeof(server.signals[0]); i++) {
		if (server.signals[i] != NULL)
			event_free(server.signals[i]);
	}
	if (server.listen_retry != NULL)
		event_free(server.listen_retry);
	if (server.output_check != NULL)
		event_free(server.output_check);
	if (server.housekeeping != NULL)
		event_free(server.housekeeping);
	if (server.shutdown_timer != NULL)
		event_free(server.shutdown_timer);
	/* After a forced stop some objects may be left: the process exits
	 * now, and the kernel closes their descriptors. */
	if (server.base != NULL && server.n_clients == 0 &&
	    LIST_EMPTY(&server.backends) && LIST_EMPTY(&server.rooms))
		event_base_free(server.base);
}
