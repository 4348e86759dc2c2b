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

void
server_check_stopped(void)
{
	/* The admin listener's connections (a scraper's, kept alive) do
	 * not hold a stop: they answer /healthz 503 while it runs. */
	if (server.stopping && server.n_clients == server.n_admin &&
	    LIST_EMPTY(&server.backends) && cluster_flushed())
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

/* Tell systemd (sd_notify) a state change, with the monotonic clock in
 * microseconds where it asks for it (reloads: systemd 253 checks it). */
static void
server_notify(const char *state)
{
	struct timespec ts;

	if (strcmp(state, "RELOADING=1") == 0) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
		    (unsigned long long)ts.tv_sec * 1000000ULL +
		    (unsigned long long)ts.tv_nsec / 1000);
	} else {
		sd_notify(0, state);
	}
}

/* STATUS= for systemctl status: what is live now, when it changed. */
static void
server_status(void)
{
	static size_t clients = (size_t)-1, rooms = (size_t)-1;

	if (clients == server.n_clients - server.n_admin &&
	    rooms == server.n_rooms)
		return;
	clients = server.n_clients - server.n_admin;
	rooms = server.n_rooms;
	sd_notifyf(0, "STATUS=%zu clients, %zu rooms%s", clients, rooms,
	    server.stopping ? ", stopping" : "");
}

static bool
server_same_text(const struct cfg_text *a, const struct cfg_text *b)
{
	if (a->value == NULL || b->value == NULL)
		return a->value == b->value;
	return strcmp(a->value, b->value) == 0;
}

static bool
server_same_cluster(const struct cfg_cluster *a, const struct cfg_cluster *b)
{
	return (a->line == 0) == (b->line == 0) &&
	    server_same_text(&a->redis, &b->redis) &&
	    server_same_text(&a->node, &b->node) &&
	    server_same_text(&a->password, &b->password) &&
	    a->db == b->db && a->lease_ms == b->lease_ms &&
	    a->stream_max == b->stream_max;
}

/*
 * SIGHUP: read the configuration again and apply it, or change nothing
 * at all.  Everything that can fail comes first (parsing, the programs
 * and directories it names, the certificates, the static directories,
 * the new listeners); then it is applied: rooms are served by the new
 * resources of the same pattern (restarting the backends that changed,
 * closing the rooms that are gone, starting new exact ones), clients
 * point at their room's new options, and the old configuration is
 * freed once nothing points into it.
 */
static void
server_reload(void)
{
	struct cfg *cfg, *old = server.cfg;
	struct tls_set *tls = NULL;
	struct client *c;
	char *errors = NULL;
	size_t *counts = NULL;
	int *fds = NULL;
	size_t i;

	server_notify("RELOADING=1");
	log_info("SIGHUP: reloading %s", old->file);
	cfg = cfg_load(old->file, &errors);
	if (cfg != NULL && cfg_check_system(cfg, &errors) == -1) {
		cfg_free(cfg);
		cfg = NULL;
	}
	if (cfg != NULL && (tls = tls_build(cfg, &errors)) == NULL) {
		cfg_free(cfg);
		cfg = NULL;
	}
	if (cfg == NULL) {
		log_error("reload: %s is invalid; nothing changed:\n%s",
		    old->file, errors != NULL ? errors : "out of memory");
		free(errors);
		goto done;
	}
	counts = calloc(cfg->n_resources + 1, sizeof(*counts));
	fds = calloc(cfg->n_statics + 1, sizeof(*fds));
	if (counts == NULL || fds == NULL ||
	    http_open_statics(cfg, fds) == -1) {
		log_error("reload: nothing changed");
		goto fail;
	}
	if (listener_reload(cfg) == -1) {
		log_error("reload: a listener cannot be bound; nothing changed");
		for (i = 0; i < cfg->n_statics; i++)
			close(fds[i]);
		goto fail;
	}
	/* From here on, nothing fails. */
	if (!server_same_text(&old->user, &cfg->user) ||
	    !server_same_text(&old->group, &cfg->group))
		log_warn("reload: user and group apply at the next start, not "
		    "now: this process stays who it is");
	if (!server_same_cluster(&old->cluster, &cfg->cluster))
		log_warn("reload: [cluster] applies at the next start, not now");
	tls_use(tls);
	for (i = 0; i < old->n_statics; i++)
		close(server.static_fds[i]);
	free(server.static_fds);
	server.static_fds = fds;
	free(server.resource_rooms);
	server.resource_rooms = counts;
	log_set_level((enum log_level)cfg->log_level);
	server_fit_limits(cfg);
	server.cfg = cfg;
	room_reload(cfg);
	LIST_FOREACH(c, &server.clients, entry)
		client_reload(c);
	cfg_free(old);
	log_info("reload: %s applied", cfg->file);
	goto done;
fail:
	free(counts);
	free(fds);
	tls_discard(tls);
	cfg_free(cfg);
done:
	server_notify("READY=1");
	server_status();
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

/* Close every room and client (1001, or 503 in a handshake, with why),
 * and wait for them and the backends, at most shutdown_timeout. */
static void
server_wind_down(const char *why)
{
	struct room *r;
	struct client *c, *next;
	uint64_t ms = server.cfg->shutdown_timeout_ms;

	server.stopping = true;
	listener_stop_clients();
	while ((r = LIST_FIRST(&server.rooms)) != NULL)
		room_shutdown(r);
	/* Clients still in their handshake belong to no room. */
	for (c = LIST_FIRST(&server.clients); c != NULL; c = next) {
		next = LIST_NEXT(c, entry);
		client_go_away(c, why);
	}
	server.shutdown_timer = evtimer_new(server.base,
	    server_shutdown_timeout_cb, NULL);
	if (server.shutdown_timer != NULL)
		server_timer_set(server.shutdown_timer, ms);
	server_check_stopped();
}

static void
server_stop(int sig)
{
	if (server.stopping) {
		log_warn("%s again: stopping now", strsignal(sig));
		backend_kill_all();
		event_base_loopexit(server.base, NULL);
		return;
	}
	server_notify("STOPPING=1");
	/* systemd restarting us, with the fd store: clients wait there. */
	if (sig == SIGTERM && upgrade_store() == 0) {
		server_wind_down("server restarting");
		return;
	}
	log_info("%s: stopping (%zu clients, waiting up to %llu ms)",
	    strsignal(sig), server.n_clients,
	    (unsigned long long)server.cfg->shutdown_timeout_ms);
	server_wind_down("server shutting down");
}

static void
server_upgraded_cb(evutil_socket_t fd, short events, void *arg)
{
	log_info("upgrade: closing the %zu connections that stayed",
	    server.n_clients);
	server_wind_down("server upgrading");
}

void
server_stop_after_upgrade(void)
{
	static const struct timeval now = { 0, 0 };

	/* Not inside the caller (an admin request being answered): the
	 * stop closes connections. */
	server.stopping = true;
	if (event_base_once(server.base, -1, EV_TIMEOUT, server_upgraded_cb,
	    NULL, &now) == -1)
		server_upgraded_cb(-1, 0, NULL);
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
		if (!server.stopping)
			server_reload();
		break;
	case SIGUSR2:
		if (!server.stopping) {
			const char *why;

			(void)upgrade_start(&why);
		}
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
 * the spike's height with no client left); let go of the journal records
 * that backends have read since they last wrote or were written to.
 */
static void
server_housekeeping_cb(evutil_socket_t fd, short events, void *arg)
{
	struct room *r;

	LIST_FOREACH(r, &server.rooms, entry)
		room_backend_trim(r);
	if (server.output_peak >= SERVER_TRIM_MIN &&
	    server.output_bytes < server.output_peak / 4) {
		malloc_trim(0);
		server.output_peak = server.output_bytes;
	}
	server_status();
	server_timer_set(server.housekeeping, 1000);
}

/* WatchdogSec: WATCHDOG=1 from the loop itself, at half the interval,
 * so that a loop that is stuck gets the daemon restarted. */
static void
server_watchdog_cb(evutil_socket_t fd, short events, void *arg)
{
	sd_notify(0, "WATCHDOG=1");
	server_timer_set(server.watchdog, server.watchdog_ms);
}

int
server_start(struct cfg *cfg)
{
	static const int signals[] = { SIGTERM, SIGINT, SIGCHLD, SIGHUP,
	    SIGUSR2 };
	struct event_config *evcfg;
	uint64_t watchdog_usec;
	const int *listeners;
	const char *from = NULL;
	size_t i, n_listeners = 0;
	bool upgrading;

	server.cfg = cfg;
	/* Output buffers come and go by the thousand in a broadcast: from
	 * the heap, not from mmap, and not given back on every free (the
	 * housekeeping trims after a spike), else the page faults cost
	 * more than the copies. */
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	admin_init();
	server_fit_limits(cfg);
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
	server.output_check = evtimer_new(server.base, server_output_check_cb,
	    NULL);
	server.housekeeping = evtimer_new(server.base, server_housekeeping_cb,
	    NULL);
	if (server.output_check == NULL || server.housekeeping == NULL)
		return -1;
	server_timer_set(server.housekeeping, 1000);
	if (sd_watchdog_enabled(0, &watchdog_usec) > 0) {
		server.watchdog_ms = watchdog_usec / 2000 > 0 ?
		    watchdog_usec / 2000 : 1;
		server.watchdog = evtimer_new(server.base, server_watchdog_cb,
		    NULL);
		if (server.watchdog == NULL)
			return -1;
		server_timer_set(server.watchdog, server.watchdog_ms);
		log_info("watchdog: WATCHDOG=1 every %llu ms",
		    (unsigned long long)server.watchdog_ms);
	}
	if (upgrade_open(&upgrading) == -1)
		return -1;
	listeners = upgrading ? upgrade_listeners(&n_listeners, &from) : NULL;
	if (listener_start(cfg, listeners, n_listeners, from) == -1)
		return -1;
	/* Everything that needs root is done: the listeners are bound,
	 * the keys read and the static directories open.  Nothing is
	 * spawned or connected before this. */
	if (server_drop_privileges(cfg) == -1)
		return -1;
	/* Taken over, the rooms must not be touched by a failure: the old
	 * process carries on with them. */
	if (upgrading && upgrade_take() == -1)
		_exit(1);
	if (cluster_start(cfg) == -1 || room_start_exact() == -1)
		return -1;
	return 0;
}

int
server_run(void)
{
	server_notify("READY=1");
	server_status();
	log_info("ready");
	event_base_dispatch(server.base);
	log_info("stopped");
	return 0;
}

void
server_free(void)
{
	size_t i;

	listener_free_all();
	cluster_free();
	idmap_free(&server.client_index);
	idmap_free(&server.processes);
	free(server.resource_rooms);
	for (i = 0; server.static_fds != NULL && i < server.cfg->n_statics; i++)
		close(server.static_fds[i]);
	free(server.static_fds);
	tls_free();
	client_deflate_free();
	for (i = 0; i < sizeof(server.signals) / sizeof(server.signals[0]); i++) {
		if (server.signals[i] != NULL)
			event_free(server.signals[i]);
	}
	if (server.output_check != NULL)
		event_free(server.output_check);
	if (server.housekeeping != NULL)
		event_free(server.housekeeping);
	if (server.watchdog != NULL)
		event_free(server.watchdog);
	if (server.shutdown_timer != NULL)
		event_free(server.shutdown_timer);
	/* After a forced stop some objects may be left: the process exits
	 * now, and the kernel closes their descriptors. */
	if (server.base != NULL && server.n_clients == 0 &&
	    LIST_EMPTY(&server.backends) && LIST_EMPTY(&server.rooms))
		event_base_free(server.base);
}
