/*
 * upgrade: hand the running daemon's connections to a new one, so that
 * a new binary takes over without a client noticing (docs/OPERATIONS.md).
 *
 * On SIGUSR2 or POST /upgrade, the old process writes its state into a
 * memfd (blob.h: the listeners, every room with its journal and its
 * backend, every client that can go with its frame parser and queues,
 * the id counter), leaves the descriptors they name open across exec,
 * starts the binary at its own path with its own arguments and
 * GATEWAYD_UPGRADE=STATE_FD,READY_FD in the environment, and waits for
 * one byte on the ready pipe.  The old process does nothing else while
 * it waits (it blocks), so the state it wrote stays true; the new one
 * does no I/O before it says ready.  Then the old one lets go of what
 * went (closing its copies of the descriptors: no FIN, no frame) and
 * stops as on SIGTERM with what could not go: TLS connections, whose
 * keys are in this process, and handshakes in progress.
 *
 * Spawned backends keep running: the new process is not their parent,
 * so it learns of their exit from a pidfd, without the status.
 *
 * If the new process fails before it is ready (a bad configuration, a
 * state it cannot read, UPGRADE_TIMEOUT_MS passing), the old one carries
 * on as if nothing had happened, and logs why.
 *
 * Under systemd, "systemctl restart" goes the same way through the fd
 * store: on SIGTERM, when the unit sets GATEWAYD_FDSTORE and systemd says
 * the unit is restarting, the state and every descriptor it names go to
 * systemd (FDSTORE=1, each named "gw" and its number here, the state
 * "gatewayd-state"), and the next process finds them in LISTEN_FDS by
 * name.  Spawned backends do not survive that (systemd kills the unit's
 * processes): their rooms start new ones, resumed.  A connection that
 * hangs up meanwhile is dropped from the store: its client is reported
 * gone (1006).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>

#include "gatewayd.h"
#include "log.h"

#define UPGRADE_MAGIC	0x50555747u	/* "GWUP" */
/* The layout of the state: a process reads only its own version. */
#define UPGRADE_VERSION	1
#define UPGRADE_ENV	"GATEWAYD_UPGRADE"
#define UPGRADE_FDSTORE_ENV "GATEWAYD_FDSTORE"
#define UPGRADE_STATE_NAME "gatewayd-state"
#define UPGRADE_LISTENERS_MAX 256

/* The old process: descriptors going to the new one. */
static struct {
	int *fds;
	bool *owned;		/* made for it: closed once it has them */
	size_t n, cap;
	bool failed;
} upgrade_out;

/* The new process: the state it takes over. */
static struct {
	uint8_t *map;
	size_t len;
	struct blob blob;
	int ready_fd;
	pid_t old;
	int listeners[UPGRADE_LISTENERS_MAX];
	size_t n_listeners;
	/* From the fd store: the old numbers and what they are now. */
	bool from_store;
	uint32_t *store_old;
	int *store_fd;
	size_t store_n;
} upgrade_in = { .ready_fd = -1 };

/* Saving for the fd store rather than for a process we start. */
static bool upgrade_saving_for_store;

bool
upgrade_storing(void)
{
	return upgrade_saving_for_store;
}

int
upgrade_fd(uint32_t old)
{
	size_t i;

	if (old == UINT32_MAX || old > INT32_MAX)
		return -1;
	if (!upgrade_in.from_store)
		return (int)old;
	for (i = 0; i < upgrade_in.store_n; i++)
		if (upgrade_in.store_old[i] == old)
			return upgrade_in.store_fd[i];
	return -1;
}

extern char **environ;

static void upgrade_store_clear(void);

static void
upgrade_push(int fd, bool owned)
{
	void *fds, *own;
	size_t cap;

	if (upgrade_out.n == upgrade_out.cap) {
		cap = upgrade_out.cap > 0 ? 2 * upgrade_out.cap : 256;
		fds = realloc(upgrade_out.fds, cap * sizeof(int));
		if (fds != NULL)
			upgrade_out.fds = fds;
		own = realloc(upgrade_out.owned, cap * sizeof(bool));
		if (own != NULL)
			upgrade_out.owned = own;
		if (fds == NULL || own == NULL) {
			upgrade_out.failed = true;
			if (owned)
				close(fd);
			return;
		}
		upgrade_out.cap = cap;
	}
	upgrade_out.fds[upgrade_out.n] = fd;
	upgrade_out.owned[upgrade_out.n++] = owned;
}

void
upgrade_pass(int fd)
{
	upgrade_push(fd, false);
}

void
upgrade_pass_owned(int fd)
{
	upgrade_push(fd, true);
}

/* Close the descriptors made for the new process, and forget them all. */
static void
upgrade_out_clear(void)
{
	size_t i;

	for (i = 0; i < upgrade_out.n; i++)
		if (upgrade_out.owned[i])
			close(upgrade_out.fds[i]);
	free(upgrade_out.fds);
	free(upgrade_out.owned);
	memset(&upgrade_out, 0, sizeof(upgrade_out));
}

/* Mark the passed descriptors to survive exec (inherit) or not. */
static void
upgrade_inherit(bool inherit)
{
	size_t i;

	for (i = 0; i < upgrade_out.n; i++)
		(void)fcntl(upgrade_out.fds[i], F_SETFD, inherit ? 0 :
		    FD_CLOEXEC);
}

/* The whole state; false when it could not be made. */
static bool
upgrade_save(struct blob *b, size_t *n_rooms, size_t *n_clients)
{
	int fds[UPGRADE_LISTENERS_MAX];
	struct room *r;
	size_t n, i;

	blob_put_u32(b, UPGRADE_MAGIC);
	blob_put_u32(b, UPGRADE_VERSION);
	blob_put_u64(b, (uint64_t)getpid());
	blob_put_u64(b, server.next_client_id);
	/* Those of a socket unit stay with systemd anyway: not stored. */
	n = listener_fds(fds, UPGRADE_LISTENERS_MAX, upgrade_saving_for_store);
	blob_put_u32(b, (uint32_t)n);
	for (i = 0; i < n; i++) {
		blob_put_u32(b, (uint32_t)fds[i]);
		upgrade_pass(fds[i]);
	}
	*n_rooms = *n_clients = 0;
	LIST_FOREACH(r, &server.rooms, entry)
		*n_rooms += room_transferable(r);
	blob_put_u32(b, (uint32_t)*n_rooms);
	LIST_FOREACH(r, &server.rooms, entry)
		if (room_transferable(r))
			*n_clients += room_save(r, b);
	return !b->failed && !upgrade_out.failed;
}

/* The state into a memfd the new process inherits; -1 on failure. */
static int
upgrade_memfd(const struct blob *b)
{
	size_t off = 0;
	ssize_t n;
	int fd;

	if ((fd = memfd_create("gatewayd-state", 0)) == -1)
		return -1;
	while (off < b->len) {
		n = write(fd, b->data + off, b->len - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	return fd;
}

/* Wait for the new process's byte, at most UPGRADE_TIMEOUT_MS: true
 * when it came; else *why says what happened (and the process is gone). */
static bool
upgrade_wait(pid_t pid, int ready, const char **why)
{
	static char text[160];
	struct pollfd p = { .fd = ready, .events = POLLIN };
	struct timespec start, now;
	long left = UPGRADE_TIMEOUT_MS;
	char byte;
	int status, n;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		n = poll(&p, 1, (int)left);
		if (n == -1 && errno != EINTR)
			break;
		if (n > 0) {
			if (read(ready, &byte, 1) == 1 && byte == 'R')
				return true;
			break;		/* it exited (EOF) */
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		left = UPGRADE_TIMEOUT_MS - ((now.tv_sec - start.tv_sec) *
		    1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
		if (left <= 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			snprintf(text, sizeof(text), "the new process was not "
			    "ready in %d ms: killed", UPGRADE_TIMEOUT_MS);
			*why = text;
			return false;
		}
	}
	if (waitpid(pid, &status, 0) == pid && WIFEXITED(status))
		snprintf(text, sizeof(text), "the new process exited with "
		    "status %d (its log says why)", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(text, sizeof(text), "the new process was killed by "
		    "signal %d", WTERMSIG(status));
	else
		snprintf(text, sizeof(text), "the new process failed");
	*why = text;
	return false;
}

/* The environment of the new process: ours, and the state's place in
 * *var (malloc'd, as the array is). */
static char **
upgrade_env(int state, int ready, char **var)
{
	size_t n = 0, i, k = 0;
	char **env;

	while (environ[n] != NULL)
		n++;
	if ((env = calloc(n + 2, sizeof(*env))) == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		if (strncmp(environ[i], UPGRADE_ENV "=",
		    sizeof(UPGRADE_ENV)) != 0)
			env[k++] = environ[i];
	if (asprintf(var, UPGRADE_ENV "=%d,%d", state, ready) == -1) {
		*var = NULL;
		free(env);
		return NULL;
	}
	env[k] = *var;
	return env;
}

int
upgrade_start(const char **why)
{
	struct blob b = { 0 };
	size_t n_rooms, n_clients;
	int state = -1, ready[2] = { -1, -1 }, e;
	char **env = NULL, *var = NULL;
	struct room *r, *next;
	pid_t pid;

	*why = "out of memory";
	if (server.stopping) {
		*why = "the server is stopping";
		return -1;
	}
	if (server.exe == NULL) {
		*why = "the path of the binary is not known";
		return -1;
	}
	if (cluster_on()) {
		/* A node's client ids and leases are its own: restart the
		 * nodes one at a time behind the balancer instead. */
		*why = "not available with [cluster] (docs/CLUSTER.md)";
		log_error("upgrade refused: %s", *why);
		return -1;
	}
	log_info("upgrade: starting %s", server.exe);
	if (!upgrade_save(&b, &n_rooms, &n_clients))
		goto fail;
	if ((state = upgrade_memfd(&b)) == -1 ||
	    pipe2(ready, O_CLOEXEC) == -1 ||
	    (env = upgrade_env(state, ready[1], &var)) == NULL) {
		*why = strerror(errno);
		goto fail;
	}
	(void)fcntl(ready[1], F_SETFD, 0);
	upgrade_inherit(true);
	e = posix_spawn(&pid, server.exe, NULL, NULL, server.argv, env);
	upgrade_inherit(false);
	close(ready[1]);
	ready[1] = -1;
	close(state);
	state = -1;
	if (e != 0) {
		*why = strerror(e);
		goto fail;
	}
	if (!upgrade_wait(pid, ready[0], why))
		goto fail;
	close(ready[0]);
	free(var);
	free(env);
	blob_free(&b);
	log_info("upgrade: pid %d took over %zu clients in %zu rooms; "
	    "stopping with the rest", (int)pid, n_clients, n_rooms);
	(void)sd_notifyf(0, "MAINPID=%d", (int)pid);
	/* Let go of what went: nothing is said to any of it. */
	for (r = LIST_FIRST(&server.rooms); r != NULL; r = next) {
		next = LIST_NEXT(r, entry);
		if (room_transferable(r))
			room_abandon(r);
	}
	listener_free_all();
	upgrade_out_clear();
	server_stop_after_upgrade();
	return 0;
fail:
	log_error("upgrade failed: %s; carrying on", *why);
	if (state != -1)
		close(state);
	for (e = 0; e < 2; e++)
		if (ready[e] != -1)
			close(ready[e]);
	free(var);
	free(env);
	upgrade_out_clear();
	blob_free(&b);
	/* Children that exited while we waited were not reaped. */
	backend_reap();
	return -1;
}

/*
 * A start by systemd after a restart that went through the fd store:
 * LISTEN_FDS holds the state (by its name), the descriptors it names
 * ("gwN"), and the sockets of a socket unit, if any (other names; they
 * go to the listeners).  Returns the state's descriptor, or -1 when
 * there is none (a plain start).
 */
static int
upgrade_open_store(void)
{
	char **names = NULL;
	int n, i, state = -1;
	unsigned long old;
	char *end;

	if ((n = sd_listen_fds_with_names(0, &names)) <= 0)
		return -1;
	for (i = 0; i < n; i++)
		if (strcmp(names[i], UPGRADE_STATE_NAME) == 0)
			state = SD_LISTEN_FDS_START + i;
	if (state != -1) {
		upgrade_in.store_old = calloc((size_t)n, sizeof(uint32_t));
		upgrade_in.store_fd = calloc((size_t)n, sizeof(int));
	}
	for (i = 0; i < n && state != -1; i++) {
		int fd = SD_LISTEN_FDS_START + i;

		if (strncmp(names[i], "gw", 2) == 0 &&
		    (old = strtoul(names[i] + 2, &end, 10), *end == '\0') &&
		    upgrade_in.store_fd != NULL && upgrade_in.store_old != NULL) {
			upgrade_in.store_old[upgrade_in.store_n] = (uint32_t)old;
			upgrade_in.store_fd[upgrade_in.store_n++] = fd;
		} else if (fd != state &&
		    upgrade_in.n_listeners < UPGRADE_LISTENERS_MAX) {
			upgrade_in.listeners[upgrade_in.n_listeners++] = fd;
		}
	}
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (state != -1) {
		upgrade_in.from_store = true;
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_PID");
		unsetenv("LISTEN_FDNAMES");
	}
	return state;
}

int
upgrade_open(bool *upgrading)
{
	const char *env = getenv(UPGRADE_ENV);
	struct blob *b = &upgrade_in.blob;
	int state, ready;
	uint32_t magic, version, n, i;
	struct stat st;

	*upgrading = false;
	if (env == NULL) {
		if ((state = upgrade_open_store()) == -1)
			return 0;	/* a plain start */
		ready = -1;
	} else if (sscanf(env, "%d,%d", &state, &ready) != 2 || state < 0 ||
	    ready < 0) {
		log_error("upgrade: %s=%s is not STATE_FD,READY_FD",
		    UPGRADE_ENV, env);
		return -1;
	}
	unsetenv(UPGRADE_ENV);
	*upgrading = true;
	if (ready != -1)
		(void)fcntl(ready, F_SETFD, FD_CLOEXEC);
	upgrade_in.ready_fd = ready;
	if (fstat(state, &st) == -1 || st.st_size <= 0 ||
	    (upgrade_in.map = mmap(NULL, (size_t)st.st_size, PROT_READ,
	    MAP_PRIVATE, state, 0)) == MAP_FAILED) {
		log_error("upgrade: cannot read the state: %s",
		    strerror(errno));
		close(state);
		return -1;
	}
	close(state);
	upgrade_in.len = (size_t)st.st_size;
	blob_reader(b, upgrade_in.map, upgrade_in.len);
	magic = blob_get_u32(b);
	version = blob_get_u32(b);
	if (magic != UPGRADE_MAGIC || version != UPGRADE_VERSION) {
		log_error("upgrade: the old process's state is version %u, "
		    "this binary reads version %u: restart instead", version,
		    UPGRADE_VERSION);
		return -1;
	}
	upgrade_in.old = (pid_t)blob_get_u64(b);
	server.next_client_id = blob_get_u64(b);
	n = blob_get_u32(b);
	if (n > UPGRADE_LISTENERS_MAX)
		b->failed = true;
	for (i = 0; i < n && !b->failed; i++) {
		int fd = upgrade_fd(blob_get_u32(b));

		if (fd == -1 || upgrade_in.n_listeners == UPGRADE_LISTENERS_MAX)
			continue;
		/* Ours now: not to leak into what we spawn. */
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		upgrade_in.listeners[upgrade_in.n_listeners++] = fd;
	}
	if (b->failed) {
		log_error("upgrade: the state is damaged");
		return -1;
	}
	if (upgrade_in.from_store)
		log_info("restart: taking over from systemd's fd store (pid %d "
		    "before)", (int)upgrade_in.old);
	else
		log_info("upgrade: taking over from pid %d",
		    (int)upgrade_in.old);
	return 0;
}

const int *
upgrade_listeners(size_t *n, const char **from)
{
	*n = upgrade_in.n_listeners;
	*from = upgrade_in.from_store ? "systemd's fd store" : "the old process";
	return upgrade_in.listeners;
}

int
upgrade_take(void)
{
	struct blob *b = &upgrade_in.blob;
	size_t n_clients = 0;
	uint32_t n, i;
	const char *why = "the state is damaged";
	struct room *r;
	struct client *c;
	uint64_t next_id = server.next_client_id;

	n = blob_get_u32(b);
	for (i = 0; i < n && !b->failed; i++) {
		if ((r = room_load(b, &why)) == NULL)
			break;
		n_clients += r->n_members;
	}
	if (i < n || b->failed || b->pos != b->len) {
		log_error("upgrade: cannot take over: %s", why);
		/* From the store, nobody carries on: empty it, so that the
		 * next start (Restart=) is a plain one. */
		if (upgrade_in.from_store)
			upgrade_store_clear();
		return -1;
	}
	/* Descriptors taken over are ours: not to leak into programs. */
	LIST_FOREACH(c, &server.clients, entry)
		(void)fcntl(c->conn.fd, F_SETFD, FD_CLOEXEC);
	if (server.next_client_id < next_id)
		server.next_client_id = next_id;
	if (upgrade_in.ready_fd != -1) {
		if (write(upgrade_in.ready_fd, "R", 1) != 1)
			log_warn("upgrade: the old process did not hear that "
			    "we are ready: %s", strerror(errno));
		close(upgrade_in.ready_fd);
		upgrade_in.ready_fd = -1;
	}
	munmap(upgrade_in.map, upgrade_in.len);
	upgrade_in.map = NULL;
	if (upgrade_in.from_store) {
		/* systemd would keep its copies: a connection we close
		 * would stay open there. */
		upgrade_store_clear();
		log_info("restart: took over %zu clients in %u rooms from "
		    "systemd's fd store", n_clients, n);
		return 0;
	}
	log_info("upgrade: took over %zu clients in %u rooms from pid %d",
	    n_clients, n, (int)upgrade_in.old);
	return 0;
}

/* Whether fd is one a taken-over object holds. */
static bool
upgrade_fd_used(int fd)
{
	int fds[UPGRADE_LISTENERS_MAX];
	struct client *c;
	struct backend *b;
	size_t i, n;

	LIST_FOREACH(c, &server.clients, entry)
		if (c->conn.fd == fd)
			return true;
	LIST_FOREACH(b, &server.backends, entry)
		if (b->fd == fd || b->wfd == fd || b->err_fd == fd ||
		    b->pidfd == fd)
			return true;
	n = listener_fds(fds, UPGRADE_LISTENERS_MAX, false);
	for (i = 0; i < n; i++)
		if (fds[i] == fd)
			return true;
	return false;
}

/* Take everything out of systemd's fd store, and close what nothing
 * took (a backend's stderr whose socket went, say). */
static void
upgrade_store_clear(void)
{
	char msg[64];
	size_t i;

	for (i = 0; i < upgrade_in.store_n; i++) {
		snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=gw%u",
		    upgrade_in.store_old[i]);
		(void)sd_notify(0, msg);
		if (!upgrade_fd_used(upgrade_in.store_fd[i]))
			close(upgrade_in.store_fd[i]);
	}
	(void)sd_notify(0, "FDSTOREREMOVE=1\nFDNAME=" UPGRADE_STATE_NAME);
	free(upgrade_in.store_old);
	free(upgrade_in.store_fd);
	upgrade_in.store_old = NULL;
	upgrade_in.store_fd = NULL;
	upgrade_in.store_n = 0;
	upgrade_in.from_store = false;
}

/* Whether systemd is restarting our unit (rather than stopping it): the
 * type of the unit's job, asked on the system bus (a second at most). */
static bool
upgrade_restarting(void)
{
	sd_bus_error err = SD_BUS_ERROR_NULL;
	sd_bus_message *unit_reply = NULL, *job_reply = NULL;
	const char *unit, *job;
	char *type = NULL;
	bool restarting = false;
	uint32_t id;
	sd_bus *bus;

	if (sd_bus_open_system(&bus) < 0)
		return false;
	(void)sd_bus_set_method_call_timeout(bus, 1000000);
	if (sd_bus_call_method(bus, "org.freedesktop.systemd1",
	    "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
	    "GetUnitByPID", &err, &unit_reply, "u", (uint32_t)getpid()) < 0 ||
	    sd_bus_message_read(unit_reply, "o", &unit) < 0 ||
	    sd_bus_get_property(bus, "org.freedesktop.systemd1", unit,
	    "org.freedesktop.systemd1.Unit", "Job", &err, &job_reply,
	    "(uo)") < 0 ||
	    sd_bus_message_read(job_reply, "(uo)", &id, &job) < 0 || id == 0 ||
	    sd_bus_get_property_string(bus, "org.freedesktop.systemd1", job,
	    "org.freedesktop.systemd1.Job", "JobType", &err, &type) < 0) {
		if (sd_bus_error_is_set(&err))
			log_info("restart: cannot ask systemd what it is doing "
			    "(%s): stopping", err.message);
		goto out;
	}
	restarting = strstr(type, "restart") != NULL;
out:
	free(type);
	sd_bus_error_free(&err);
	sd_bus_message_unref(unit_reply);
	sd_bus_message_unref(job_reply);
	sd_bus_flush_close_unref(bus);
	return restarting;
}

/* Take back what went to the store, by name: a store left half made. */
static void
upgrade_unstore(size_t n)
{
	char msg[64];
	size_t i;

	for (i = 0; i < n; i++) {
		snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=gw%d",
		    upgrade_out.fds[i]);
		(void)sd_notify(0, msg);
	}
}

int
upgrade_store(void)
{
	const char *mode = getenv(UPGRADE_FDSTORE_ENV);
	struct blob b = { 0 };
	size_t n_rooms, n_clients, i;
	struct room *r, *next;
	char msg[64];
	int state = -1;

	if (cluster_on())
		return -1;	/* a plain stop: see upgrade_start */
	if (mode == NULL || getenv("NOTIFY_SOCKET") == NULL ||
	    (strcmp(mode, "always") != 0 && !upgrade_restarting()))
		return -1;
	upgrade_saving_for_store = true;
	if (!upgrade_save(&b, &n_rooms, &n_clients) ||
	    (state = upgrade_memfd(&b)) == -1) {
		log_error("restart: cannot save the state: %s; stopping",
		    strerror(errno));
		goto fail;
	}
	/* One message per descriptor: FDNAME names them all alike. */
	for (i = 0; i < upgrade_out.n; i++) {
		snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=gw%d",
		    upgrade_out.fds[i]);
		if (sd_pid_notify_with_fds(0, 0, msg, &upgrade_out.fds[i],
		    1) <= 0) {
			log_error("restart: systemd does not keep descriptors "
			    "(FileDescriptorStoreMax=?); stopping");
			upgrade_unstore(i);
			goto fail;
		}
	}
	if (sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME="
	    UPGRADE_STATE_NAME, &state, 1) <= 0) {
		log_error("restart: systemd does not keep the state; stopping");
		upgrade_unstore(upgrade_out.n);
		goto fail;
	}
	close(state);
	blob_free(&b);
	log_info("restart: %zu clients in %zu rooms wait in systemd's fd "
	    "store for the next process", n_clients, n_rooms);
	for (r = LIST_FIRST(&server.rooms); r != NULL; r = next) {
		next = LIST_NEXT(r, entry);
		if (room_transferable(r))
			room_abandon(r);
	}
	listener_free_all();
	upgrade_out_clear();
	upgrade_saving_for_store = false;
	return 0;
fail:
	if (state != -1)
		close(state);
	blob_free(&b);
	upgrade_out_clear();
	upgrade_saving_for_store = false;
	return -1;
}
