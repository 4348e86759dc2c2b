/*
 * listener: the listening sockets, each with its role: WebSocket and HTTP
 * (plain or TLS) or admin.
 *
 * A listen line is served by a socket systemd passed in (socket
 * activation: matched to the line by its address), or one bound here.
 * On reload the sockets are matched to the new lines by address and
 * role: a socket that stays keeps accepting throughout, new ones are
 * bound first (one that cannot be bound fails the reload as a whole,
 * leaving everything as it was), and the ones no line names any more are
 * closed.
 *
 * Out of descriptors, accept fails: a spare descriptor kept in reserve is
 * spent on answering each waiting client 503 (the technique of libev's
 * and nginx's authors), and the listeners pause for a moment instead of
 * spinning on the error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/listener.h>
#include <systemd/sd-daemon.h>

#include "gatewayd.h"
#include "log.h"
#include "stats.h"

struct listener {
	LIST_ENTRY(listener) entry;
	struct evconnlistener *evl;
	const struct cfg_listen *ln;	/* the line it serves, in server.cfg
					 * (or the cfg being applied) */
	struct sockaddr_storage addr;	/* as bound */
	socklen_t addr_len;
	bool inherited;			/* from systemd or an upgrade */
	bool from_systemd;		/* a socket unit's: systemd keeps it */
	bool keep;			/* reload: a new line names it */
	bool fresh;			/* reload: bound for the new cfg */
};

static LIST_HEAD(, listener) listeners = LIST_HEAD_INITIALIZER(listeners);
static struct event *listener_retry;
static int listener_spare_fd = -1;

static void
listener_spare_open(void)
{
	if (listener_spare_fd == -1)
		listener_spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void
listener_accept_cb(struct evconnlistener *evl, evutil_socket_t fd,
    struct sockaddr *addr, int len, void *arg)
{
	const struct listener *l = arg;

	client_accept(fd, addr, l->ln->tls, l->ln->proxy, l->ln->admin);
}

/* A listen line's role, for the log: "", " (tls)", " (tls, proxy)"... */
static const char *
listener_role(const struct cfg_listen *ln)
{
	if (ln->admin)
		return " (admin)";
	if (ln->tls)
		return ln->proxy ? " (tls, proxy)" : " (tls)";
	return ln->proxy ? " (proxy)" : "";
}

static void
listener_enable_all(evutil_socket_t fd, short events, void *arg)
{
	struct listener *l;

	LIST_FOREACH(l, &listeners, entry)
		evconnlistener_enable(l->evl);
}

/* Out of descriptors: spend the spare one on each waiting client, to
 * answer it 503 and close it; on a tls or proxy listener, where the peer
 * does not read plain HTTP first, just to close it. */
static void
listener_shed(struct evconnlistener *evl, const struct listener *l)
{
	bool answer = !l->ln->tls && !l->ln->proxy;
	int fd, n = 0;

	while (listener_spare_fd != -1 && n < 64) {
		close(listener_spare_fd);
		listener_spare_fd = -1;
		fd = accept4(evconnlistener_get_fd(evl), NULL, NULL,
		    SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd != -1) {
			stats.connections_accepted++;
			if (answer) {
				client_refuse(fd, 503, "out of file descriptors");
			} else {
				stats.connections_refused++;
				close(fd);
			}
			n++;
		}
		listener_spare_open();
		if (fd == -1)
			break;
	}
}

/* accept failed, most likely for want of file descriptors: answer the
 * clients waiting with 503 if it is that, and pause the listeners for a
 * moment instead of spinning on the error.  Logged once a second at
 * most. */
static void
listener_error_cb(struct evconnlistener *evl, void *arg)
{
	const struct listener *self = arg;
	static time_t logged;
	int err = EVUTIL_SOCKET_ERROR();
	struct listener *l;

	if (time(NULL) != logged) {
		logged = time(NULL);
		log_warn("accept: %s (%zu connections, %zu processes); "
		    "refusing new clients with 503 and pausing for 100 ms",
		    strerror(err), server.n_clients, server.n_processes);
	}
	if (err == EMFILE || err == ENFILE)
		listener_shed(evl, self);
	LIST_FOREACH(l, &listeners, entry)
		evconnlistener_disable(l->evl);
	server_timer_set(listener_retry, 100);
}

/* The socket options every client socket inherits from its listener (on
 * Linux): no call per connection. */
static void
listener_options(int fd, const struct cfg *cfg, int family)
{
	int one = 1, size;

	if (family == AF_UNIX)
		return;
	/* Frames are written whole, so Nagle would only delay them. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* The kernel's share of a client that does not read (its
	 * autotuning lets it grow to tcp_wmem's 4 MiB). */
	if (cfg->send_buffer > 0) {
		size = (int)(cfg->send_buffer / 2);	/* the kernel doubles it */
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	}
}

/* Bind a socket for ln: its descriptor, or -1 (errno set). */
static int
listener_bind(const struct cfg_listen *ln)
{
	int fd, one = 1, e;

	fd = socket(ln->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	if (ln->addr.ss_family == AF_UNIX) {
		/* A socket file left by an earlier run is in the way. */
		const struct sockaddr_un *sun = (const void *)&ln->addr;
		struct stat st;

		if (stat(sun->sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(sun->sun_path);
	} else {
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
		    sizeof(one));
	}
	/* [::]:port and 0.0.0.0:port are two listeners, not one. */
	if (ln->addr.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&ln->addr, ln->addr_len) == -1 ||
	    listen(fd, SOMAXCONN) == -1) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static struct listener *
listener_new(int fd, const struct cfg_listen *ln, bool inherited)
{
	struct listener *l;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->ln = ln;
	l->inherited = inherited;
	l->addr = ln->addr;
	l->addr_len = ln->addr_len;
	l->evl = evconnlistener_new(server.base, listener_accept_cb, l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (l->evl == NULL) {
		free(l);
		return NULL;
	}
	evconnlistener_set_error_cb(l->evl, listener_error_cb);
	LIST_INSERT_HEAD(&listeners, l, entry);
	return l;
}

static void
listener_free(struct listener *l)
{
	LIST_REMOVE(l, entry);
	evconnlistener_free(l->evl);
	free(l);
}

/* The same address (and for TCP, port), whatever the text said. */
static bool
listener_same_addr(const struct sockaddr_storage *a, socklen_t alen,
    const struct sockaddr_storage *b, socklen_t blen)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_UNIX)
		return strcmp(((const struct sockaddr_un *)a)->sun_path,
		    ((const struct sockaddr_un *)b)->sun_path) == 0;
	return alen == blen && memcmp(a, b, alen) == 0;
}

/* Describe an address for a message. */
static const char *
listener_addr_text(const struct sockaddr_storage *ss, char *buf, size_t size)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)ss;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, size, "%s:%u", host, ntohs(in->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, size, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else if (ss->ss_family == AF_UNIX) {
		snprintf(buf, size, "%s", ((const struct sockaddr_un *)ss)->sun_path);
	} else {
		snprintf(buf, size, "family %d", ss->ss_family);
	}
	return buf;
}

/*
 * Inherited sockets (systemd's LISTEN_FDS, or an upgrade's, from says
 * which): each must serve a listen line of cfg, matched by address;
 * used[i] marks the lines served.  Returns 0, or -1 (logged) for a socket
 * no line names.
 */
static int
listener_inherit(const struct cfg *cfg, const int *fds, size_t n_fds,
    const char *from, bool *used)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char text[sizeof(struct sockaddr_un) + 16];
	struct listener *l;
	int fd, bad = 0;
	size_t i, k;

	for (k = 0; k < n_fds; k++) {
		fd = fds[k];
		len = sizeof(ss);
		memset(&ss, 0, sizeof(ss));
		if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1) {
			log_error("inherited descriptor %d is not a socket: %s",
			    fd, strerror(errno));
			bad = -1;
			continue;
		}
		for (i = 0; i < cfg->n_listens; i++)
			if (!used[i] && listener_same_addr(&ss, len,
			    &cfg->listens[i].addr, cfg->listens[i].addr_len))
				break;
		if (i == cfg->n_listens) {
			for (i = 0; i < cfg->n_listens; i++)
				if (listener_same_addr(&ss, len,
				    &cfg->listens[i].addr,
				    cfg->listens[i].addr_len))
					break;
			if (i < cfg->n_listens) {
				/* The same socket twice (a socket unit's, and
				 * the fd store's copy of it): one will do. */
				close(fd);
				continue;
			}
			log_error("inherited socket %s (descriptor %d) matches "
			    "no listen line of %s", listener_addr_text(&ss,
			    text, sizeof(text)), fd, cfg->file);
			bad = -1;
			continue;
		}
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		evutil_make_socket_nonblocking(fd);
		listener_options(fd, cfg, ss.ss_family);
		if ((l = listener_new(fd, &cfg->listens[i], true)) == NULL) {
			bad = -1;
			continue;
		}
		l->from_systemd = strcmp(from, "systemd") == 0;
		used[i] = true;
		log_info("listening on %s%s (from %s)", cfg->listens[i].text,
		    listener_role(&cfg->listens[i]), from);
	}
	return bad;
}

static int
listener_open(const struct cfg *cfg, const struct cfg_listen *ln)
{
	int fd = listener_bind(ln);

	if (fd == -1) {
		log_error("%s:%d: cannot listen on %s: %s", cfg->file, ln->line,
		    ln->text, strerror(errno));
		return -1;
	}
	listener_options(fd, cfg, ln->addr.ss_family);
	if (listener_new(fd, ln, false) == NULL) {
		close(fd);
		return -1;
	}
	log_info("listening on %s%s", ln->text, listener_role(ln));
	return 0;
}

int
listener_start(const struct cfg *cfg, const int *fds, size_t n_fds,
    const char *from)
{
	int *systemd;
	bool *used;
	size_t i;
	int r = 0, n;

	listener_spare_open();
	listener_retry = evtimer_new(server.base, listener_enable_all, NULL);
	used = calloc(cfg->n_listens + 1, sizeof(*used));
	if (listener_retry == NULL || used == NULL) {
		free(used);
		return -1;
	}
	if (fds != NULL) {
		if (listener_inherit(cfg, fds, n_fds, from,
		    used) == -1)
			r = -1;
	} else if ((n = sd_listen_fds(1)) > 0) {
		if ((systemd = calloc((size_t)n, sizeof(*systemd))) == NULL) {
			free(used);
			return -1;
		}
		for (i = 0; i < (size_t)n; i++)
			systemd[i] = SD_LISTEN_FDS_START + (int)i;
		if (listener_inherit(cfg, systemd, (size_t)n, "systemd",
		    used) == -1)
			r = -1;
		free(systemd);
	}
	for (i = 0; i < cfg->n_listens && r == 0; i++)
		if (!used[i] && listener_open(cfg, &cfg->listens[i]) == -1)
			r = -1;
	free(used);
	return r;
}

int
listener_reload(const struct cfg *cfg)
{
	struct listener *l, *next;
	size_t i;
	bool found;

	LIST_FOREACH(l, &listeners, entry)
		l->keep = l->fresh = false;
	for (i = 0; i < cfg->n_listens; i++) {
		const struct cfg_listen *ln = &cfg->listens[i];

		found = false;
		LIST_FOREACH(l, &listeners, entry) {
			if (!l->keep && !l->fresh && l->ln->admin == ln->admin &&
			    listener_same_addr(&l->addr, l->addr_len, &ln->addr,
			    ln->addr_len)) {
				found = l->keep = true;
				break;
			}
		}
		if (found)
			continue;
		if (listener_open(cfg, ln) == -1)
			goto undo;
		LIST_FIRST(&listeners)->fresh = true;
	}
	/* Every line has its socket: apply.  The kept ones serve the new
	 * lines (a tls flag may have changed). */
	for (l = LIST_FIRST(&listeners); l != NULL; l = next) {
		next = LIST_NEXT(l, entry);
		if (l->fresh)
			continue;
		if (!l->keep) {
			log_info("no longer listening on %s", l->ln->text);
			listener_free(l);
			continue;
		}
		for (i = 0; i < cfg->n_listens; i++)
			if (cfg->listens[i].admin == l->ln->admin &&
			    listener_same_addr(&l->addr, l->addr_len,
			    &cfg->listens[i].addr, cfg->listens[i].addr_len))
				l->ln = &cfg->listens[i];
	}
	return 0;
undo:
	for (l = LIST_FIRST(&listeners); l != NULL; l = next) {
		next = LIST_NEXT(l, entry);
		if (l->fresh)
			listener_free(l);
	}
	return -1;
}

void
listener_stop_clients(void)
{
	struct listener *l, *next;

	for (l = LIST_FIRST(&listeners); l != NULL; l = next) {
		next = LIST_NEXT(l, entry);
		if (!l->ln->admin)
			listener_free(l);
	}
}

bool
listener_all_up(void)
{
	struct listener *l;
	size_t n = 0;

	LIST_FOREACH(l, &listeners, entry)
		n += !l->ln->admin;
	return n > 0;
}

size_t
listener_fds(int *fds, size_t max, bool own)
{
	struct listener *l;
	size_t n = 0;

	LIST_FOREACH(l, &listeners, entry)
		if (n < max && !(own && l->from_systemd))
			fds[n++] = evconnlistener_get_fd(l->evl);
	return n;
}

void
listener_free_all(void)
{
	struct listener *l;

	while ((l = LIST_FIRST(&listeners)) != NULL)
		listener_free(l);
	if (listener_retry != NULL)
		event_free(listener_retry);
	listener_retry = NULL;
	if (listener_spare_fd != -1)
		close(listener_spare_fd);
	listener_spare_fd = -1;
}
