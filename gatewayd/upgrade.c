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

#include <systemd/sd-daemon.h>

#include "gatewayd.h"
#include "log.h"

#define UPGRADE_MAGIC	0x50555747u	/* "GWUP" */
/* The layout of the state: a process reads only its own version. */
#define UPGRADE_VERSION	1
#define UPGRADE_ENV	"GATEWAYD_UPGRADE"
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
} upgrade_in = { .ready_fd = -1 };

extern char **environ;

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
	n = listener_fds(fds, UPGRADE_LISTENERS_MAX);
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

int
upgrade_open(bool *upgrading)
{
	const char *env = getenv(UPGRADE_ENV);
	struct blob *b = &upgrade_in.blob;
	int state, ready;
	uint32_t magic, version, n, i;
	struct stat st;

	*upgrading = false;
	if (env == NULL)
		return 0;
	if (sscanf(env, "%d,%d", &state, &ready) != 2 || state < 0 ||
	    ready < 0) {
		log_error("upgrade: %s=%s is not STATE_FD,READY_FD",
		    UPGRADE_ENV, env);
		return -1;
	}
	unsetenv(UPGRADE_ENV);
	*upgrading = true;
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
		upgrade_in.listeners[i] = (int)blob_get_u32(b);
		/* Ours now: not to leak into what we spawn. */
		(void)fcntl(upgrade_in.listeners[i], F_SETFD, FD_CLOEXEC);
	}
	upgrade_in.n_listeners = n;
	if (b->failed) {
		log_error("upgrade: the state is damaged");
		return -1;
	}
	log_info("upgrade: taking over from pid %d", (int)upgrade_in.old);
	return 0;
}

const int *
upgrade_listeners(size_t *n)
{
	*n = upgrade_in.n_listeners;
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
		return -1;
	}
	/* Descriptors taken over are ours: not to leak into programs. */
	LIST_FOREACH(c, &server.clients, entry)
		(void)fcntl(c->conn.fd, F_SETFD, FD_CLOEXEC);
	if (server.next_client_id < next_id)
		server.next_client_id = next_id;
	if (write(upgrade_in.ready_fd, "R", 1) != 1)
		log_warn("upgrade: the old process did not hear that we are "
		    "ready: %s", strerror(errno));
	close(upgrade_in.ready_fd);
	upgrade_in.ready_fd = -1;
	munmap(upgrade_in.map, upgrade_in.len);
	upgrade_in.map = NULL;
	log_info("upgrade: took over %zu clients in %u rooms from pid %d",
	    n_clients, n, (int)upgrade_in.old);
	return 0;
}
