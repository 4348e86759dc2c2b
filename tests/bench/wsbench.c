/*
 * wsbench: the load generator of gatewayd's benchmark suite.
 *
 * One process, one libevent loop, loopback only.  It opens --connections
 * WebSocket connections, at most --max-pending handshakes in flight at a
 * time (a burst of thousands of SYNs would overflow the server's listen
 * backlog and measure TCP retransmission timers instead of the server),
 * runs one scenario on them and prints one JSON object (--json) or a short
 * report for a human:
 *
 *   echo       every connection keeps --inflight text messages of --size
 *              bytes in flight, a new one sent as each reply comes back,
 *              and checks every reply byte for byte
 *   broadcast  --connections receivers and one sender share a room; the
 *              sender sends --messages sequence-numbered, timestamped
 *              messages, at most --window of them not yet delivered to
 *              every receiver (or --rate per second), and every receiver
 *              checks that it gets each exactly once and in order
 *   idle       the connections are opened and held for --duration; the
 *              server's memory is sampled before and after
 *   connect    --connections workers each open a connection, complete the
 *              handshake (with --first-echo: and one echoed message), close
 *              it (close frame, the peer's close frame, then a reset so
 *              that no TIME_WAIT state piles up) and start over, for
 *              --duration
 *
 * --tls speaks TLS (OpenSSL, non-blocking, on the same loop) under every
 * connection; with --tls-resume each handshake resumes the session of a
 * ticket an earlier connection got.  --deflate offers permessage-deflate
 * with both no_context_takeover parameters, requires the server to agree,
 * compresses every data message it sends and inflates every compressed
 * message it gets (zlib).  --payload json makes the messages chat-like
 * JSON objects instead of a letter pattern, so that compression has
 * something realistic to work on.
 *
 * With --server-pid the server's CPU time (utime + stime) and its
 * descendants' (the backends) are read from /proc over the measured
 * interval, and for idle their memory as well; the generator's own CPU time
 * comes from getrusage.
 *
 * --port takes a list: several servers (the nodes of a cluster) share the
 * load, connection i going to the (i mod n)th, the broadcast sender to the
 * last; --server-pid then takes one PID per port, and the report gives
 * each server's CPU time and the operations of its own connections besides
 * the totals.  --watch-pid NAME=PID samples another process's own CPU time
 * over the same interval (a Redis the servers share).
 *
 * Every phase has a deadline and so has the whole run.  Errors (a failed
 * connect or handshake, an unexpected close, a wrong echo, a lost,
 * duplicated or reordered broadcast message, a timeout) are counted and
 * reported, and make the exit status 1; bad usage exits 2.
 *
 * The frame codec is the gateway's own (gatewayd/ws_frame.c): frames we
 * send are masked, frames we receive must not be; the expected
 * Sec-WebSocket-Accept comes from gatewayd/handshake.c.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <zlib.h>

#include "handshake.h"
#include "ws_frame.h"

/* Limits and defaults, in one place. */
#define WSB_MAX_PENDING		500	/* handshakes in flight, default */
#define WSB_OP_TIMEOUT_NS	(10 * NS_PER_S)	/* one connect, handshake
						 * or close */
#define WSB_TICK_MS		5	/* deadlines, rates, probes */
#define WSB_PROBE_NS		(20 * NS_PER_MS)	/* broadcast: probe period */
#define WSB_READ_SIZE		(256 * 1024)	/* one recv() */
#define WSB_HEAD_MAX		8192	/* the longest response head read */
#define WSB_MAX_MESSAGE		((uint64_t)64 << 20)	/* parser limit */
#define WSB_MAX_CONNECTIONS	1000000
#define WSB_MAX_SERVERS		8	/* --port and --server-pid lists */
#define WSB_MAX_WATCH		4	/* --watch-pid */
#define WSB_WATCH_NAME		32	/* the longest --watch-pid NAME */
#define WSB_ERR_KEEP		10	/* error texts kept for the report */
#define WSB_HISTORY		4096	/* broadcast: sequence numbers a
					 * receiver remembers behind its
					 * highest, to tell duplicates from
					 * late arrivals */
#define WSB_BCAST_HEAD		36	/* "#B" seq ' ' ts '|': 2+16+1+16+1 */
#define WSB_TLS_WRITE_CHUNK	65536	/* queued bytes handed to one
					 * SSL_write: at least the record a
					 * retry must repeat (16 KiB) */
#define WSB_ZLIB_LEVEL		1	/* our compressor: the cheapest, so
					 * that the generator keeps up */
#define WSB_DEFLATE_OFFER	"permessage-deflate; " \
	"client_no_context_takeover; server_no_context_takeover"

#define NS_PER_S		1000000000ULL
#define NS_PER_MS		1000000ULL

/* Options */

enum scenario {
	SC_ECHO,
	SC_BROADCAST,
	SC_IDLE,
	SC_CONNECT,
};

/* What the messages hold besides their identity. */
enum payload {
	PAYLOAD_PATTERN,	/* letters in a shifting pattern */
	PAYLOAD_JSON,		/* a chat-like JSON object (json_fill) */
};

struct opts {
	const char *host;
	unsigned ports[WSB_MAX_SERVERS];	/* --port P[,P...] */
	unsigned n_ports;
	const char *path;		/* NULL: the scenario's default */
	enum scenario scenario;
	unsigned connections;
	size_t size;
	unsigned inflight;
	uint64_t messages;
	unsigned window;		/* 0: 64, or 65536 with --rate */
	double rate;			/* broadcast messages per second; 0:
					 * as fast as the window allows */
	double duration;		/* seconds */
	double warmup;
	double settle;			/* idle: before sampling memory;
					 * broadcast: the probe deadline */
	double drain_timeout;
	double connect_timeout;
	double timeout;			/* the whole run; 0: computed */
	unsigned max_pending;
	pid_t server_pids[WSB_MAX_SERVERS];	/* one per port, or none:
						 * no /proc sampling */
	unsigned n_pids;
	struct {
		char name[WSB_WATCH_NAME];
		pid_t pid;
	} watch[WSB_MAX_WATCH];		/* --watch-pid NAME=PID */
	unsigned n_watch;
	bool allow_foreign;		/* broadcast: ignore messages that are
					 * not ours (a chat room's joins) */
	bool first_echo;		/* connect: one echoed message on
					 * every connection before its close */
	bool tls;			/* TLS under every connection */
	bool tls_resume;		/* resume sessions (implies tls) */
	bool deflate;			/* offer and require
					 * permessage-deflate */
	enum payload payload;
	bool json;
};

/* Errors, each counted; the first few texts are kept. */
enum err_kind {
	E_CONNECT,
	E_HANDSHAKE,
	E_TIMEOUT,
	E_CLOSED,
	E_PROTOCOL,
	E_MISMATCH,
	E_UNEXPECTED,
	E_LOST,
	E_DUPLICATED,
	E_REORDERED,
	E_INTERRUPTED,
	E_COUNT
};

static const char *const err_names[E_COUNT] = {
	"connect_failed", "handshake_failed", "timeout", "unexpected_close",
	"protocol_error", "mismatch", "unexpected_message", "lost",
	"duplicated", "reordered", "interrupted",
};

/* The run's phases, in order; a scenario skips those it has no use for. */
enum phase {
	PH_CONNECT,	/* opening the connections */
	PH_SETTLE,	/* idle: letting the server settle; broadcast:
			 * probing until every receiver is in the room */
	PH_WARMUP,	/* load on, not counted */
	PH_MEASURE,	/* load on, counted */
	PH_DRAIN,	/* no new load; waiting for what is in flight */
	PH_DONE,
};

static const char *const phase_names[] = {
	"connect", "settle", "warmup", "measure", "drain", "done",
};

enum conn_state {
	CONN_FREE,		/* no socket (not yet opened, or closed) */
	CONN_CONNECTING,	/* TCP connect in progress */
	CONN_TLS,		/* TLS handshake in progress */
	CONN_HANDSHAKE,		/* request sent, reading the 101 */
	CONN_OPEN,		/* frames both ways */
	CONN_CLOSING,		/* our close frame sent, awaiting the peer's */
	CONN_DEAD,		/* failed; never reopened */
};

/* One WebSocket connection. */
struct conn {
	unsigned idx;
	unsigned srv;			/* its server: an index of B.srv */
	enum conn_state state;
	unsigned gen;			/* bumped by every close: callbacks
					 * check it to stop touching a
					 * connection closed under them */
	int fd;
	SSL *ssl;			/* --tls: the connection's TLS */
	bool deflate;			/* permessage-deflate agreed */
	struct event *rev;		/* persistent EV_READ */
	struct event *wev;		/* EV_WRITE, added when output waits
					 * or the connect is in progress */
	struct evbuffer *out;		/* bytes the socket did not take */
	char *head;			/* the response head being read */
	size_t head_len;
	char accept[HANDSHAKE_ACCEPT_LEN + 1];	/* what the 101 must say */
	uint64_t t_open;		/* when the connect started */
	uint64_t deadline;		/* CONNECTING, HANDSHAKE, CLOSING */
	bool waiting;			/* on bench.waiting */
	TAILQ_ENTRY(conn) wait_entry;
	struct ws_frame_parser parser;
	bool parser_ready;

	/* echo */
	uint64_t sent;			/* messages sent */
	uint64_t rcvd;			/* replies received */
	uint64_t *sent_at;		/* ring of --inflight send times */

	/* broadcast */
	bool probed;			/* a probe arrived: in the room */
	bool any;			/* a sequenced message arrived */
	uint64_t high;			/* the highest sequence number seen */
	uint64_t distinct;		/* sequence numbers seen at least once */
	uint64_t dup, reord, foreign;
	uint8_t *seen;			/* WSB_HISTORY bits, by seq % size */
};

TAILQ_HEAD(conn_list, conn);

/* Log-linear latency histogram: 64 sub-buckets per power of two, 1.6%
 * resolution from 128 ns to the full uint64_t range, fixed size. */
#define HIST_SUB_BITS	6
#define HIST_SUB	(1u << HIST_SUB_BITS)
#define HIST_BUCKETS	((64 - HIST_SUB_BITS) * HIST_SUB + 2 * HIST_SUB)

struct hist {
	uint64_t count[HIST_BUCKETS];
	uint64_t n;
	uint64_t max;
	double sum;
};

/* What /proc says about the server and its descendants. */
struct usage {
	bool ok;
	double server_cpu;		/* seconds, utime + stime */
	double backends_cpu;		/* live descendants' utime + stime +
					 * reaped ones' (cutime + cstime) */
	uint64_t server_rss;		/* KiB */
	uint64_t backends_rss;		/* KiB, summed over descendants */
	uint64_t total_pss;		/* KiB, server and descendants */
	unsigned n_backends;
};

/* One server of --port, with its --server-pid. */
struct server {
	unsigned port;
	pid_t pid;			/* 0: not sampled */
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char host_header[80];
	unsigned conns;			/* connections that go to it */
	uint64_t ops;			/* B.ops of those connections */
	struct usage u0, u1;		/* measure start and end */
};

/* A process of --watch-pid: its own CPU time, seconds. */
struct watched {
	bool ok;
	double cpu0, cpu1;
};

struct bench;

/* A scenario: what it does at each point of a run. */
struct driver {
	const char *name;
	const char *default_path;
	/* Called once the options are known; -1 refuses them. */
	int (*init)(void);
	/* Start the run (the connect phase, usually). */
	void (*start)(void);
	/* The connect phase is over: every connection is open or failed. */
	void (*all_open)(void);
	/* c finished its handshake (NULL: nothing to do). */
	void (*opened)(struct conn *c);
	/* A data message arrived on c. */
	void (*message)(struct conn *c, const struct ws_frame_event *ev);
	/* c finished its close handshake (connect). */
	void (*closed)(struct conn *c);
	/* An open c died unexpectedly (the error is already counted). */
	void (*lost)(struct conn *c);
	/* Every WSB_TICK_MS: phase deadlines. */
	void (*tick)(uint64_t now);
	/* Count the errors only the end can tell (NULL: none). */
	void (*account)(void);
	/* Write the scenario's part of the report. */
	void (*report)(void);
};

struct bench {
	struct opts o;
	const struct driver *drv;
	struct event_base *base;
	struct event *tick;
	struct event *sig[2];
	struct server srv[WSB_MAX_SERVERS];
	unsigned n_srv;
	struct watched watch[WSB_MAX_WATCH];
	const char *path;

	struct conn *conns;
	unsigned n_conns;
	unsigned next_open;		/* connect phase: the next to open */
	unsigned pending;		/* handshakes in flight */
	unsigned n_open;		/* connections in CONN_OPEN */
	unsigned n_resolved;		/* connect phase: open or failed */
	unsigned n_active;		/* connections with a socket */
	bool in_open_more;
	struct conn_list waiting;	/* by deadline (all are equally long) */

	enum phase phase;
	uint64_t phase_end;		/* deadline of the current phase */
	uint64_t t_start;		/* the run */
	uint64_t deadline;		/* the whole run */
	uint64_t t_connect_start, t_connect_end;
	uint64_t t_measure_start, t_measure_end;
	bool measuring, measured;
	struct usage u_base, u0, u1;	/* before connecting, measure start
					 * and end, summed over the servers */
	double gen_cpu0, gen_cpu1;
	bool finished;

	uint64_t errors[E_COUNT];
	char errtext[WSB_ERR_KEEP][200];
	unsigned n_errtext;

	struct hist lat;		/* per round trip, delivery or
					 * handshake, in the measured phase */
	uint64_t ops;			/* the same, counted */
	uint64_t rng;			/* xorshift64 state */
	uint8_t *tx;			/* the frame being sent: its payload
					 * at WS_FRAME_MAX_HEADER, the header
					 * written just before it */
	size_t tx_cap, tx_len;
	enum ws_frame_opcode tx_op;
	uint8_t tx_mask[4];
	uint8_t *expect;		/* echo: the reply expected */
	size_t mark_off;		/* broadcast: where the mark starts in
					 * the payload (json_fill's "id") */
	uint8_t rbuf[WSB_READ_SIZE];

	/* --tls */
	SSL_CTX *ssl_ctx;
	SSL_SESSION *session;		/* --tls-resume: the latest ticket */
	uint64_t tls_handshakes;	/* measured: completed TLS handshakes */
	uint64_t tls_resumed;		/* of which resumed a session */
	uint64_t tls_tickets;		/* session tickets received */
	char tls_version[16];		/* of the first connection */
	char tls_cipher[64];
	char tls_group[32];

	/* --deflate: one stream each way, reset for every message, as
	 * neither side takes context over */
	z_stream zd, zi;
	bool zd_ready, zi_ready;
	uint8_t *ztx;			/* a compressed frame, as B.tx */
	size_t ztx_cap, ztx_len;
	uint8_t *zrx;			/* an inflated message */
	size_t zrx_cap;
	uint64_t z_tx_msgs, z_tx_plain, z_tx_wire;
	uint64_t z_rx_msgs, z_rx_plain, z_rx_wire, z_rx_uncompressed;

	/* echo */
	uint64_t outstanding;		/* messages sent and not echoed */

	/* broadcast */
	struct conn *sender;
	unsigned receivers;		/* open receivers when it started */
	unsigned n_probed;
	uint64_t last_probe;
	uint64_t sent;			/* sequenced messages sent */
	uint64_t complete;		/* the lowest seq not yet delivered to
					 * every receiver */
	uint32_t *cnt;			/* receivers that have seq, by
					 * seq % window */
	uint64_t deliveries;		/* first receipts by receivers */
	uint64_t sender_copies;
	uint64_t foreign;
	uint64_t lost_max, dup_max, reord_max;	/* per receiver */
	unsigned bad_receivers;
};

static struct bench B;

/* Clock */

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t
secs_to_ns(double s)
{
	return s <= 0 ? 0 : (uint64_t)(s * 1e9);
}

static double
cpu_self(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static uint64_t
rng_next(void)
{
	uint64_t x = B.rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return B.rng = x;
}

/* Histogram */

static unsigned
hist_index(uint64_t v)
{
	unsigned msb, shift;

	if (v < 2 * HIST_SUB)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	shift = msb - HIST_SUB_BITS;
	return (shift + 1) * HIST_SUB + (unsigned)((v >> shift) - HIST_SUB);
}

/* The middle of bucket i. */
static uint64_t
hist_value(unsigned i)
{
	unsigned shift;

	if (i < 2 * HIST_SUB)
		return i;
	shift = i / HIST_SUB - 1;
	return ((uint64_t)(i % HIST_SUB + HIST_SUB) << shift) +
	    ((uint64_t)1 << shift) / 2;
}

static void
hist_add(struct hist *h, uint64_t v)
{
	h->count[hist_index(v)]++;
	h->n++;
	h->sum += (double)v;
	if (v > h->max)
		h->max = v;
}

/* The q-quantile (0 < q <= 1), in the same unit as the samples. */
static uint64_t
hist_quantile(const struct hist *h, double q)
{
	uint64_t rank, seen = 0;
	unsigned i;

	if (h->n == 0)
		return 0;
	rank = (uint64_t)ceil(q * (double)h->n);
	if (rank == 0)
		rank = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += h->count[i];
		if (seen >= rank) {
			uint64_t v = hist_value(i);

			return v < h->max ? v : h->max;
		}
	}
	return h->max;
}

/* /proc sampling */

struct proc_stat {
	pid_t pid;
	pid_t ppid;
	uint64_t ticks;		/* utime + stime */
	uint64_t child_ticks;	/* cutime + cstime: reaped children */
	uint64_t rss_pages;
};

/* Read /proc/PID/stat; -1 when the process is gone. */
static int
proc_read_stat(pid_t pid, struct proc_stat *st)
{
	char path[64], buf[1024], *p, *save = NULL, *tok;
	unsigned long long v[22];
	ssize_t n;
	int fd, i;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* The command name may hold blanks and parentheses: skip to the
	 * last ')'.  Fields from the state on, numbered from 0. */
	p = strrchr(buf, ')');
	if (p == NULL)
		return -1;
	for (i = 0, tok = strtok_r(p + 1, " ", &save); tok != NULL && i < 22;
	    i++, tok = strtok_r(NULL, " ", &save))
		v[i] = strtoull(tok, NULL, 10);
	if (i < 22)
		return -1;
	st->pid = pid;
	st->ppid = (pid_t)v[1];
	st->ticks = v[11] + v[12];
	st->child_ticks = v[13] + v[14];
	st->rss_pages = v[21];
	return 0;
}

/* Pss of a process in KiB from smaps_rollup, 0 when unknown. */
static uint64_t
proc_pss(pid_t pid)
{
	char path[64], line[256];
	uint64_t kib = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "Pss:", 4) == 0) {
			kib = strtoull(line + 4, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kib;
}

static int
proc_stat_cmp(const void *a, const void *b)
{
	const struct proc_stat *x = a, *y = b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

/*
 * Sample the server and every process descending from it.  A backend that
 * exited and was reaped lives on in its parent's cutime + cstime, so the
 * backends' CPU time stays continuous across exits.  With memory, RSS and
 * PSS are summed as well (PSS splits shared pages fairly among the
 * processes, which matters for a process per connection).
 */
static void
usage_sample(pid_t pid, bool memory, struct usage *u)
{
	double tick = (double)sysconf(_SC_CLK_TCK);
	long page_kib = sysconf(_SC_PAGESIZE) / 1024;
	struct proc_stat root, *all = NULL, key, *parent;
	size_t n = 0, cap = 0, i;
	bool *mine = NULL, changed;
	struct dirent *de;
	DIR *dir;

	memset(u, 0, sizeof(*u));
	if (pid <= 0 || proc_read_stat(pid, &root) == -1)
		return;
	dir = opendir("/proc");
	if (dir == NULL)
		return;
	while ((de = readdir(dir)) != NULL) {
		struct proc_stat st;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		if (proc_read_stat((pid_t)atoi(de->d_name), &st) == -1)
			continue;
		if (n == cap) {
			struct proc_stat *grown;

			cap = cap ? cap * 2 : 256;
			grown = realloc(all, cap * sizeof(*all));
			if (grown == NULL)
				break;
			all = grown;
		}
		all[n++] = st;
	}
	closedir(dir);
	qsort(all, n, sizeof(*all), proc_stat_cmp);
	mine = calloc(n ? n : 1, sizeof(*mine));
	if (mine == NULL) {
		free(all);
		return;
	}
	/* Mark the descendants, a generation per pass. */
	do {
		changed = false;
		for (i = 0; i < n; i++) {
			if (mine[i])
				continue;
			key.pid = all[i].ppid;
			parent = all[i].ppid == pid ? &root :
			    bsearch(&key, all, n, sizeof(*all), proc_stat_cmp);
			if (parent != NULL && (parent == &root ||
			    mine[parent - all])) {
				mine[i] = true;
				changed = true;
			}
		}
	} while (changed);

	u->ok = true;
	u->server_cpu = (double)root.ticks / tick;
	u->backends_cpu = (double)root.child_ticks / tick;
	u->server_rss = root.rss_pages * (uint64_t)page_kib;
	if (memory)
		u->total_pss = proc_pss(pid);
	for (i = 0; i < n; i++) {
		if (!mine[i])
			continue;
		u->n_backends++;
		u->backends_cpu += (double)(all[i].ticks + all[i].child_ticks) /
		    tick;
		u->backends_rss += all[i].rss_pages * (uint64_t)page_kib;
		if (memory)
			u->total_pss += proc_pss(all[i].pid);
	}
	free(mine);
	free(all);
}

/* Sample every server into its u0 (its u1 at_end) and their sum into
 * sum; the sum is ok when every server's sample is. */
static void
usage_sample_all(bool memory, struct usage *sum, bool at_end)
{
	struct usage one, *u;
	unsigned i;

	memset(sum, 0, sizeof(*sum));
	sum->ok = B.n_srv > 0 && B.srv[0].pid > 0;
	for (i = 0; i < B.n_srv; i++) {
		u = at_end ? &B.srv[i].u1 : &B.srv[i].u0;
		usage_sample(B.srv[i].pid, memory, &one);
		*u = one;
		sum->ok = sum->ok && one.ok;
		sum->server_cpu += one.server_cpu;
		sum->backends_cpu += one.backends_cpu;
		sum->server_rss += one.server_rss;
		sum->backends_rss += one.backends_rss;
		sum->total_pss += one.total_pss;
		sum->n_backends += one.n_backends;
	}
}

/* The own CPU time of the --watch-pid processes. */
static void
watch_sample(bool at_end)
{
	double tick = (double)sysconf(_SC_CLK_TCK);
	struct proc_stat st;
	unsigned i;

	for (i = 0; i < B.o.n_watch; i++) {
		struct watched *w = &B.watch[i];
		bool ok = proc_read_stat(B.o.watch[i].pid, &st) == 0;

		if (at_end) {
			w->ok = w->ok && ok;
			w->cpu1 = ok ? (double)st.ticks / tick : 0;
		} else {
			w->ok = ok;
			w->cpu0 = ok ? (double)st.ticks / tick : 0;
		}
	}
}

/* Errors */

static void bench_finish(void);

static void __attribute__((format(printf, 3, 4)))
bench_error(enum err_kind kind, const struct conn *c, const char *fmt, ...)
{
	char text[160];
	va_list ap;

	B.errors[kind]++;
	if (B.n_errtext >= WSB_ERR_KEEP)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (c != NULL)
		snprintf(B.errtext[B.n_errtext], sizeof(B.errtext[0]),
		    "conn %u: %s: %s", c->idx, err_names[kind], text);
	else
		snprintf(B.errtext[B.n_errtext], sizeof(B.errtext[0]),
		    "%s: %s", err_names[kind], text);
	fprintf(stderr, "wsbench: %s\n", B.errtext[B.n_errtext]);
	B.n_errtext++;
}

static uint64_t
bench_error_total(void)
{
	uint64_t total = 0;
	int i;

	for (i = 0; i < E_COUNT; i++)
		total += B.errors[i];
	return total;
}

/* Phases and measurement */

static void
phase_set(enum phase ph, double seconds)
{
	B.phase = ph;
	B.phase_end = now_ns() + secs_to_ns(seconds);
	if (!B.o.json || ph == PH_MEASURE)
		fprintf(stderr, "wsbench: phase %s\n", phase_names[ph]);
}

static void
measure_begin(void)
{
	unsigned i;

	watch_sample(false);
	usage_sample_all(B.o.scenario == SC_IDLE, &B.u0, false);
	B.gen_cpu0 = cpu_self();
	memset(&B.lat, 0, sizeof(B.lat));
	B.ops = 0;
	for (i = 0; i < B.n_srv; i++)
		B.srv[i].ops = 0;
	B.measuring = true;
	B.t_measure_start = now_ns();
}

static void
measure_end(void)
{
	if (!B.measuring)
		return;
	B.t_measure_end = now_ns();
	B.gen_cpu1 = cpu_self();
	usage_sample_all(B.o.scenario == SC_IDLE, &B.u1, true);
	watch_sample(true);
	B.measuring = false;
	B.measured = true;
}

/* One measured operation (round trip, delivery, handshake) on c. */
static void
op_count(const struct conn *c, uint64_t latency_ns)
{
	B.ops++;
	B.srv[c->srv].ops++;
	hist_add(&B.lat, latency_ns);
}

/* Connections: sockets and I/O */

static void conn_read_cb(evutil_socket_t fd, short what, void *arg);
static void conn_write_cb(evutil_socket_t fd, short what, void *arg);
static void conn_frames(struct conn *c, const uint8_t *data, size_t len);

static void
wait_add(struct conn *c)
{
	if (c->waiting)
		TAILQ_REMOVE(&B.waiting, c, wait_entry);
	c->deadline = now_ns() + WSB_OP_TIMEOUT_NS;
	TAILQ_INSERT_TAIL(&B.waiting, c, wait_entry);
	c->waiting = true;
}

static void
wait_remove(struct conn *c)
{
	if (!c->waiting)
		return;
	TAILQ_REMOVE(&B.waiting, c, wait_entry);
	c->waiting = false;
}

/* Close the socket with a reset (no TIME_WAIT), whatever the state, and
 * free what belongs to it.  The struct stays, to be reopened or reported. */
static void
conn_close(struct conn *c, enum conn_state next)
{
	struct linger lg = { 1, 0 };

	if (c->ssl != NULL) {
		/* No close_notify: the socket is reset below anyway.  Marked
		 * as shut down all the same, or SSL_free would make the
		 * session it holds (the latest ticket) unresumable. */
		SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN |
		    SSL_RECEIVED_SHUTDOWN);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	c->deflate = false;
	if (c->fd != -1) {
		(void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(c->fd);
		c->fd = -1;
		B.n_active--;
	}
	if (c->rev != NULL)
		event_free(c->rev);
	if (c->wev != NULL)
		event_free(c->wev);
	c->rev = c->wev = NULL;
	if (c->out != NULL)
		evbuffer_drain(c->out, evbuffer_get_length(c->out));
	free(c->head);
	c->head = NULL;
	c->head_len = 0;
	if (c->parser_ready)
		ws_frame_parser_free(&c->parser);
	c->parser_ready = false;
	wait_remove(c);
	if (c->state == CONN_OPEN)
		B.n_open--;
	c->state = next;
	c->gen++;
}

static void bench_open_more(void);
static void bench_connect_done(void);

/* A connection of the connect phase is open or failed. */
static void
conn_resolved(void)
{
	B.pending--;
	if (B.phase != PH_CONNECT)
		return;
	B.n_resolved++;
	if (!B.in_open_more)
		bench_open_more();
}

/* Fail c: count the error and close it for good. */
static void __attribute__((format(printf, 3, 4)))
conn_fail(struct conn *c, enum err_kind kind, const char *fmt, ...)
{
	enum conn_state was = c->state;
	char text[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	bench_error(kind, c, "%s", text);
	conn_close(c, CONN_DEAD);
	if (was == CONN_CONNECTING || was == CONN_TLS || was == CONN_HANDSHAKE)
		conn_resolved();
	else if (was == CONN_OPEN && B.drv->lost != NULL && !B.finished)
		B.drv->lost(c);
	else if (was == CONN_CLOSING && B.drv->closed != NULL)
		B.drv->closed(c);
}

/* What OpenSSL says went wrong, for an error text. */
static const char *
tls_error(int err)
{
	static char text[160];
	unsigned long e = ERR_peek_last_error();

	if (e != 0) {
		ERR_error_string_n(e, text, sizeof(text));
		ERR_clear_error();
		return text;
	}
	if (err == SSL_ERROR_SYSCALL)
		return errno != 0 ? strerror(errno) : "EOF";
	if (err == SSL_ERROR_ZERO_RETURN)
		return "EOF (close_notify)";
	snprintf(text, sizeof(text), "SSL error %d", err);
	return text;
}

/* Send what the socket (or TLS) takes of len bytes: how many, 0 when none
 * would go without blocking, -1 when c failed (and was closed). */
static ssize_t
conn_send(struct conn *c, const void *data, size_t len)
{
	size_t done = 0;
	ssize_t n;
	int r, err;

	if (c->ssl == NULL) {
		n = send(c->fd, data, len, MSG_NOSIGNAL);
		if (n >= 0)
			return n;
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		conn_fail(c, E_CLOSED, "send: %s", strerror(errno));
		return -1;
	}
	/* SSL_MODE_ENABLE_PARTIAL_WRITE: SSL_write returns after each
	 * record; go on while the socket takes them. */
	while (done < len) {
		ERR_clear_error();
		r = SSL_write(c->ssl, (const uint8_t *)data + done,
		    (int)(len - done > INT32_MAX ? INT32_MAX : len - done));
		if (r > 0) {
			done += (size_t)r;
			continue;
		}
		err = SSL_get_error(c->ssl, r);
		if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
			break;
		conn_fail(c, E_CLOSED, "SSL_write: %s", tls_error(err));
		return -1;
	}
	return (ssize_t)done;
}

/* Write len bytes to c: at once if nothing is queued, the rest queued for
 * the write event.  Returns -1 when c failed (and was closed). */
static int
conn_write(struct conn *c, const void *data, size_t len)
{
	ssize_t n = 0;

	if (evbuffer_get_length(c->out) == 0) {
		n = conn_send(c, data, len);
		if (n == -1)
			return -1;
		if ((size_t)n == len)
			return 0;
	}
	/* TLS: what SSL_write did not take starts with the record it must be
	 * given again (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER lets it move). */
	evbuffer_add(c->out, (const uint8_t *)data + n, len - (size_t)n);
	event_add(c->wev, NULL);
	return 0;
}

/* Make *buf hold at least need bytes; a benchmark out of memory exits. */
static void
buf_reserve(uint8_t **buf, size_t *cap, size_t need)
{
	if (*cap >= need)
		return;
	free(*buf);
	*cap = need;
	*buf = malloc(need);
	if (*buf == NULL) {
		fprintf(stderr, "wsbench: out of memory\n");
		exit(2);
	}
}

/* Compress a message (RFC 7692 7.2.1): a fresh stream, a sync flush, and
 * its final 00 00 ff ff taken off.  The result is in B.ztx at
 * WS_FRAME_MAX_HEADER; -1 when zlib fails. */
static int
deflate_message(const uint8_t *in, size_t len)
{
	size_t bound = deflateBound(&B.zd, len) + 16;
	uint8_t *out;
	int r;

	buf_reserve(&B.ztx, &B.ztx_cap, bound + WS_FRAME_MAX_HEADER);
	out = B.ztx + WS_FRAME_MAX_HEADER;
	if (deflateReset(&B.zd) != Z_OK)
		return -1;
	B.zd.next_in = (Bytef *)(uintptr_t)in;
	B.zd.avail_in = (uInt)len;
	B.zd.next_out = out;
	B.zd.avail_out = (uInt)bound;
	r = deflate(&B.zd, Z_SYNC_FLUSH);
	if ((r != Z_OK && r != Z_BUF_ERROR) || B.zd.avail_in != 0)
		return -1;
	B.ztx_len = bound - B.zd.avail_out;
	if (B.ztx_len >= 4 && memcmp(out + B.ztx_len - 4, "\0\0\xff\xff",
	    4) == 0)
		B.ztx_len -= 4;
	B.z_tx_msgs++;
	B.z_tx_plain += len;
	B.z_tx_wire += B.ztx_len;
	return 0;
}

/* Inflate a compressed message (its 00 00 ff ff put back) into B.zrx;
 * -1 when it is not valid deflate data or inflates past the limit. */
static int
inflate_message(const uint8_t *in, size_t len, size_t *out_len)
{
	static const uint8_t tail[4] = { 0, 0, 0xff, 0xff };
	size_t have = 0;
	int r, pass;

	if (B.zrx_cap == 0)
		buf_reserve(&B.zrx, &B.zrx_cap, 65536);
	if (inflateReset(&B.zi) != Z_OK)
		return -1;
	for (pass = 0; pass < 2; pass++) {
		B.zi.next_in = (Bytef *)(uintptr_t)(pass == 0 ? in : tail);
		B.zi.avail_in = (uInt)(pass == 0 ? len : sizeof(tail));
		do {
			if (have == B.zrx_cap) {
				uint8_t *grown;

				if (B.zrx_cap >= WSB_MAX_MESSAGE)
					return -1;
				grown = realloc(B.zrx, B.zrx_cap * 2);
				if (grown == NULL)
					return -1;
				B.zrx = grown;
				B.zrx_cap *= 2;
			}
			B.zi.next_out = B.zrx + have;
			B.zi.avail_out = (uInt)(B.zrx_cap - have);
			r = inflate(&B.zi, Z_SYNC_FLUSH);
			have = B.zrx_cap - B.zi.avail_out;
			if (r != Z_OK && r != Z_BUF_ERROR && r != Z_STREAM_END)
				return -1;
		} while (B.zi.avail_out == 0);
	}
	*out_len = have;
	B.z_rx_msgs++;
	B.z_rx_plain += have;
	B.z_rx_wire += len;
	return 0;
}

/* Start a masked frame of len payload bytes; returns where the payload
 * goes.  frame_send compresses (when c agreed to), masks and writes it. */
static uint8_t *
frame_start(enum ws_frame_opcode opcode, size_t len)
{
	uint64_t r = rng_next();

	buf_reserve(&B.tx, &B.tx_cap, len + WS_FRAME_MAX_HEADER);
	memcpy(B.tx_mask, &r, sizeof(B.tx_mask));
	B.tx_op = opcode;
	B.tx_len = len;
	return B.tx + WS_FRAME_MAX_HEADER;
}

static int
frame_send(struct conn *c)
{
	uint8_t hdr[WS_FRAME_MAX_HEADER], *payload = B.tx + WS_FRAME_MAX_HEADER;
	size_t len = B.tx_len, hlen;
	bool rsv1 = false;

	if (c->deflate && (B.tx_op == WS_OP_TEXT || B.tx_op == WS_OP_BINARY)) {
		if (deflate_message(payload, len) == -1) {
			conn_fail(c, E_PROTOCOL, "deflate failed");
			return -1;
		}
		payload = B.ztx + WS_FRAME_MAX_HEADER;
		len = B.ztx_len;
		rsv1 = true;
	}
	hlen = ws_frame_header_encode_rsv1(hdr, B.tx_op, true, rsv1, len,
	    B.tx_mask);
	memcpy(payload - hlen, hdr, hlen);
	ws_frame_mask(payload, len, B.tx_mask, 0);
	return conn_write(c, payload - hlen, hlen + len);
}

static int
conn_send_message(struct conn *c, enum ws_frame_opcode opcode,
    const void *payload, size_t len)
{
	memcpy(frame_start(opcode, len), payload, len);
	return frame_send(c);
}

/* Open c: a non-blocking connect; the write event reports its end. */
static void
conn_open(struct conn *c)
{
	int one = 1, fd;

	c->state = CONN_CONNECTING;
	c->t_open = now_ns();
	B.pending++;
	B.n_active++;
	fd = socket(B.srv[c->srv].addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	c->fd = fd;
	if (fd == -1) {
		B.n_active--;
		conn_fail(c, E_CONNECT, "socket: %s", strerror(errno));
		return;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->rev = event_new(B.base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
	c->wev = event_new(B.base, fd, EV_WRITE, conn_write_cb, c);
	if (c->out == NULL)
		c->out = evbuffer_new();
	if (c->rev == NULL || c->wev == NULL || c->out == NULL) {
		conn_fail(c, E_CONNECT, "out of memory");
		return;
	}
	wait_add(c);
	if (connect(fd, (struct sockaddr *)&B.srv[c->srv].addr,
	    B.srv[c->srv].addr_len) == -1 &&
	    errno != EINPROGRESS) {
		conn_fail(c, E_CONNECT, "connect: %s", strerror(errno));
		return;
	}
	event_add(c->wev, NULL);
}

/* Send the opening handshake. */
static void
conn_send_request(struct conn *c)
{
	uint8_t raw[16];
	char key[32], req[1024];
	uint64_t r1 = rng_next(), r2 = rng_next();
	int n;

	memcpy(raw, &r1, 8);
	memcpy(raw + 8, &r2, 8);
	EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
	handshake_accept_key(key, strlen(key), c->accept);
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
	    B.path, B.srv[c->srv].host_header, key, B.o.deflate ?
	    "Sec-WebSocket-Extensions: " WSB_DEFLATE_OFFER "\r\n" : "");
	c->state = CONN_HANDSHAKE;
	event_add(c->rev, NULL);
	conn_write(c, req, (size_t)n);
}

/* --tls-resume: keep the latest ticket the server sent.  TLS 1.3 sends
 * them after the handshake, so they arrive with the first data read;
 * until the first does, connections make full handshakes (the warm-up's
 * first). */
static int
tls_new_session_cb(SSL *ssl, SSL_SESSION *session)
{
	B.tls_tickets++;
	if (!B.o.tls_resume)
		return 0;		/* not kept: OpenSSL frees it */
	if (B.session != NULL)
		SSL_SESSION_free(B.session);
	B.session = session;
	return 1;			/* ours now */
}

/* Drive the TLS handshake; once it is done, send the opening handshake. */
static void
conn_tls_step(struct conn *c)
{
	int r, err;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r != 1) {
		err = SSL_get_error(c->ssl, r);
		if (err == SSL_ERROR_WANT_READ)
			return;		/* the read event is on */
		if (err == SSL_ERROR_WANT_WRITE) {
			event_add(c->wev, NULL);
			return;
		}
		conn_fail(c, E_HANDSHAKE, "TLS: %s", tls_error(err));
		return;
	}
	if (B.tls_version[0] == '\0') {
		snprintf(B.tls_version, sizeof(B.tls_version), "%s",
		    SSL_get_version(c->ssl));
		snprintf(B.tls_cipher, sizeof(B.tls_cipher), "%s",
		    SSL_get_cipher_name(c->ssl));
		snprintf(B.tls_group, sizeof(B.tls_group), "%s",
		    OBJ_nid2sn(SSL_get_negotiated_group(c->ssl)));
	}
	if (B.measuring) {
		B.tls_handshakes++;
		B.tls_resumed += SSL_session_reused(c->ssl) == 1;
	}
	conn_send_request(c);
}

/* The TCP connection is up: start TLS, or the opening handshake. */
static void
conn_connected(struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		conn_fail(c, E_CONNECT, "connect: %s", strerror(err));
		return;
	}
	if (!B.o.tls) {
		conn_send_request(c);
		return;
	}
	c->ssl = SSL_new(B.ssl_ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		conn_fail(c, E_CONNECT, "SSL_new: %s", tls_error(0));
		return;
	}
	SSL_set_connect_state(c->ssl);
	if (B.o.tls_resume && B.session != NULL) {
		/* A copy: OpenSSL makes the session a client resumed
		 * unresumable (it encourages single use of TLS 1.3 tickets),
		 * and the servers take a ticket again and again. */
		SSL_SESSION *copy = SSL_SESSION_dup(B.session);

		if (copy != NULL) {
			SSL_set_session(c->ssl, copy);
			SSL_SESSION_free(copy);
		}
	}
	c->state = CONN_TLS;
	event_add(c->rev, NULL);
	conn_tls_step(c);
}

/* Check a complete response head: a 101 with the right accept key.
 * Returns NULL or what is wrong with it. */
static const char *
conn_check_head(struct conn *c, char *head)
{
	static const char name[] = "sec-websocket-accept:";
	static const char ext[] = "sec-websocket-extensions:";
	char *line, *save = NULL, *v, *end;
	bool first = true, accepted = false;

	for (line = strtok_r(head, "\r\n", &save); line != NULL;
	    line = strtok_r(NULL, "\r\n", &save)) {
		if (first) {
			if (strncmp(line, "HTTP/1.1 101", 12) != 0)
				return line;	/* the status line says why */
			first = false;
			continue;
		}
		if (strncasecmp(line, ext, sizeof(ext) - 1) == 0) {
			/* We offer one thing: it comes back or nothing does. */
			v = line + sizeof(ext) - 1;
			if (!B.o.deflate)
				return "an extension nobody offered";
			if (strstr(v, "permessage-deflate") == NULL ||
			    strstr(v, "server_no_context_takeover") == NULL ||
			    strstr(v, "client_max_window_bits") != NULL)
				return "not the permessage-deflate offered";
			c->deflate = true;
			continue;
		}
		if (strncasecmp(line, name, sizeof(name) - 1) != 0)
			continue;
		v = line + sizeof(name) - 1;
		while (*v == ' ' || *v == '\t')
			v++;
		end = v + strlen(v);
		while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (strcmp(v, c->accept) != 0)
			return "wrong Sec-WebSocket-Accept";
		accepted = true;
	}
	if (first)
		return "empty response";
	if (B.o.deflate && !c->deflate)
		return "permessage-deflate not agreed";
	return accepted ? NULL : "no Sec-WebSocket-Accept";
}

/* Response bytes during the handshake. */
static void
conn_head(struct conn *c, const uint8_t *data, size_t len)
{
	const char *why;
	char *end, *grown;
	size_t head_len, rest;
	unsigned gen = c->gen;

	grown = realloc(c->head, c->head_len + len + 1);
	if (grown == NULL) {
		conn_fail(c, E_HANDSHAKE, "out of memory");
		return;
	}
	c->head = grown;
	memcpy(c->head + c->head_len, data, len);
	c->head_len += len;
	c->head[c->head_len] = '\0';
	end = memmem(c->head, c->head_len, "\r\n\r\n", 4);
	if (end == NULL) {
		if (c->head_len > WSB_HEAD_MAX)
			conn_fail(c, E_HANDSHAKE, "response head too long");
		return;
	}
	head_len = (size_t)(end - c->head) + 4;
	rest = c->head_len - head_len;
	*end = '\0';
	if ((why = conn_check_head(c, c->head)) != NULL) {
		conn_fail(c, E_HANDSHAKE, "%.100s", why);
		return;
	}
	/* Frames sent right behind the 101 are kept for the parser. */
	if (rest > 0)
		memmove(c->head, c->head + head_len, rest);
	c->head_len = rest;
	ws_frame_parser_init(&c->parser, WSB_MAX_MESSAGE, 0, false);
	ws_frame_parser_allow_rsv1(&c->parser, c->deflate);
	c->parser_ready = true;
	wait_remove(c);
	c->state = CONN_OPEN;
	B.n_open++;
	conn_resolved();
	if (c->gen != gen || c->state != CONN_OPEN)
		return;
	if (B.drv->opened != NULL)
		B.drv->opened(c);
	if (c->gen != gen || c->head == NULL)
		return;
	if (rest > 0) {
		uint8_t *early = (uint8_t *)c->head;

		c->head = NULL;
		c->head_len = 0;
		conn_frames(c, early, rest);
		free(early);
	} else {
		free(c->head);
		c->head = NULL;
	}
}

/* The peer closed (EOF, a reset or its close frame). */
static void
conn_peer_closed(struct conn *c, const char *how)
{
	if (c->state == CONN_CLOSING) {
		conn_close(c, CONN_FREE);
		if (B.drv->closed != NULL)
			B.drv->closed(c);
		return;
	}
	if (B.finished) {
		conn_close(c, CONN_FREE);
		return;
	}
	if (c->state == CONN_CONNECTING || c->state == CONN_TLS ||
	    c->state == CONN_HANDSHAKE)
		conn_fail(c, E_HANDSHAKE, "%s during the handshake", how);
	else
		conn_fail(c, E_CLOSED, "%s", how);
}

/* Handle one frame event.  Returns -1 when c was closed under us. */
static int
conn_frame_event(struct conn *c, const struct ws_frame_event *ev)
{
	unsigned gen = c->gen;
	char how[64];

	switch (ev->type) {
	case WS_EV_NONE:
	case WS_EV_PONG:
		return 0;
	case WS_EV_MESSAGE:
		if (c->state != CONN_OPEN)
			break;
		if (ev->compressed) {
			struct ws_frame_event plain = *ev;

			if (inflate_message(ev->data, ev->len, &plain.len) == -1) {
				conn_fail(c, E_PROTOCOL, "a compressed message "
				    "that does not inflate");
				return -1;
			}
			plain.data = B.zrx;
			plain.compressed = false;
			B.drv->message(c, &plain);
		} else {
			B.z_rx_uncompressed += c->deflate;
			B.drv->message(c, ev);
		}
		break;
	case WS_EV_PING:
		conn_send_message(c, WS_OP_PONG, ev->data, ev->len);
		break;
	case WS_EV_CLOSE:
		snprintf(how, sizeof(how), "close frame, code %u", ev->code);
		conn_peer_closed(c, how);
		return -1;
	case WS_EV_ERROR:
		conn_fail(c, E_PROTOCOL, "%u %s", ev->code, ev->error);
		return -1;
	}
	return c->gen == gen ? 0 : -1;
}

static void
conn_frames(struct conn *c, const uint8_t *data, size_t len)
{
	struct ws_frame_event ev;
	size_t used;

	while (len > 0) {
		used = ws_frame_parse(&c->parser, data, len, &ev);
		data += used;
		len -= used;
		if (ev.type == WS_EV_NONE)
			break;
		if (conn_frame_event(c, &ev) == -1)
			return;
	}
}

static void
conn_input(struct conn *c, const uint8_t *data, size_t len)
{
	if (c->state == CONN_HANDSHAKE)
		conn_head(c, data, len);
	else if (c->state == CONN_OPEN || c->state == CONN_CLOSING)
		conn_frames(c, data, len);
}

/* Read what TLS has: record after record, until the socket is empty or
 * the buffer full.  Decrypted bytes OpenSSL still holds are invisible to
 * epoll, so the read event is made active again for them. */
static void
conn_tls_read(struct conn *c)
{
	unsigned gen = c->gen;
	size_t have = 0;
	const char *how = NULL;
	int r, err;

	while (have < sizeof(B.rbuf)) {
		ERR_clear_error();
		errno = 0;
		r = SSL_read(c->ssl, B.rbuf + have, (int)(sizeof(B.rbuf) - have));
		if (r > 0) {
			have += (size_t)r;
			continue;
		}
		err = SSL_get_error(c->ssl, r);
		if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
			how = tls_error(err);
		break;
	}
	if (have > 0) {
		conn_input(c, B.rbuf, have);
		if (c->gen != gen)
			return;
	}
	if (how != NULL)
		conn_peer_closed(c, how);
	else if (c->ssl != NULL && SSL_has_pending(c->ssl))
		event_active(c->rev, EV_READ, 1);
}

static void
conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	ssize_t n;

	if (c->state == CONN_TLS) {
		conn_tls_step(c);
		return;
	}
	if (c->ssl != NULL) {
		conn_tls_read(c);
		return;
	}
	n = recv(fd, B.rbuf, sizeof(B.rbuf), 0);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_peer_closed(c, n == 0 ? "EOF" : strerror(errno));
		return;
	}
	conn_input(c, B.rbuf, (size_t)n);
}

static void
conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	size_t len;
	ssize_t n;

	if (c->state == CONN_CONNECTING) {
		conn_connected(c);
		return;
	}
	if (c->state == CONN_TLS) {
		conn_tls_step(c);
		return;
	}
	if (c->ssl == NULL) {
		if (evbuffer_write(c->out, fd) == -1 && errno != EAGAIN &&
		    errno != EINTR) {
			conn_fail(c, E_CLOSED, "send: %s", strerror(errno));
			return;
		}
	} else {
		while ((len = evbuffer_get_length(c->out)) > 0) {
			if (len > WSB_TLS_WRITE_CHUNK)
				len = WSB_TLS_WRITE_CHUNK;
			n = conn_send(c, evbuffer_pullup(c->out, (ssize_t)len),
			    len);
			if (n == -1)
				return;
			if (n == 0)
				break;
			evbuffer_drain(c->out, (size_t)n);
		}
	}
	if (evbuffer_get_length(c->out) > 0)
		event_add(c->wev, NULL);
}

/* Send our close frame (1000) and wait for the peer's. */
static void
conn_start_close(struct conn *c)
{
	uint8_t payload[2] = { 1000 >> 8, 1000 & 0xff };

	if (conn_send_message(c, WS_OP_CLOSE, payload, sizeof(payload)) == -1)
		return;
	B.n_open--;
	c->state = CONN_CLOSING;
	wait_add(c);
}

/* The connect phase */

/* Open connections while fewer than max_pending handshakes are in
 * flight. */
static void
bench_open_more(void)
{
	B.in_open_more = true;
	while (B.phase == PH_CONNECT && B.pending < B.o.max_pending &&
	    B.next_open < B.n_conns)
		conn_open(&B.conns[B.next_open++]);
	B.in_open_more = false;
	if (B.phase == PH_CONNECT && B.n_resolved == B.n_conns)
		bench_connect_done();
}

static void
bench_connect_begin(void)
{
	B.t_connect_start = now_ns();
	phase_set(PH_CONNECT, B.o.connect_timeout);
	bench_open_more();
}

static void
bench_connect_done(void)
{
	B.t_connect_end = now_ns();
	B.phase = PH_SETTLE;	/* the driver sets the real next phase */
	if (!B.o.json)
		fprintf(stderr, "wsbench: %u of %u connections open in %.2f s\n",
		    B.n_open, B.n_conns,
		    (double)(B.t_connect_end - B.t_connect_start) / 1e9);
	B.drv->all_open();
}

/* The connect phase ran out of time: fail what is left. */
static void
bench_connect_timeout(void)
{
	unsigned i;

	bench_error(E_TIMEOUT, NULL, "connect phase: %u of %u open after "
	    "%.0f s", B.n_open, B.n_conns, B.o.connect_timeout);
	B.in_open_more = true;
	for (i = 0; i < B.n_conns; i++) {
		struct conn *c = &B.conns[i];

		if (c->state == CONN_CONNECTING || c->state == CONN_TLS ||
		    c->state == CONN_HANDSHAKE) {
			conn_close(c, CONN_DEAD);
			B.pending--;
		} else if (c->state == CONN_FREE) {
			c->state = CONN_DEAD;
		}
	}
	B.in_open_more = false;
	B.n_resolved = B.n_conns;
	bench_connect_done();
}

/* The end */

static void
bench_finish(void)
{
	if (B.finished)
		return;
	measure_end();
	B.finished = true;
	B.phase = PH_DONE;
	event_base_loopbreak(B.base);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = now_ns();
	struct conn *c;

	if (now >= B.deadline) {
		bench_error(E_TIMEOUT, NULL, "the run took longer than %.0f s",
		    B.o.timeout);
		bench_finish();
		return;
	}
	/* Connects, handshakes and closes that take too long. */
	while ((c = TAILQ_FIRST(&B.waiting)) != NULL && c->deadline <= now) {
		static const char *const what_state[] = {
			"", "connect", "TLS handshake", "handshake", "",
			"close", "",
		};

		conn_fail(c, E_TIMEOUT, "%s took longer than %llu s",
		    what_state[c->state],
		    (unsigned long long)(WSB_OP_TIMEOUT_NS / NS_PER_S));
	}
	if (B.finished)
		return;
	if (B.phase == PH_CONNECT) {
		if (now >= B.phase_end)
			bench_connect_timeout();
		return;
	}
	B.drv->tick(now);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	bench_error(E_INTERRUPTED, NULL, "signal %d", (int)sig);
	bench_finish();
}

/* Payloads */

static uint64_t
splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

#define PICK(list, s)	((list)[splitmix(s) % (sizeof(list) / sizeof((list)[0]))])

static const char *const json_words[] = {
	"the", "a", "to", "and", "is", "it", "we", "you", "I", "that", "for",
	"on", "this", "with", "but", "not", "just", "can", "will", "be", "at",
	"deploy", "build", "merge", "review", "branch", "ticket", "release",
	"today", "tomorrow", "tonight", "later", "now", "again", "maybe",
	"thanks!", "lol", "ok", "sure,", "great", "sounds good", "agreed.",
	"meeting", "standup", "lunch", "coffee", "demo", "customer", "server",
	"latency", "dashboard", "alert", "rollback", "hotfix", "staging",
	"production", "cache", "database", "query", "timeout", "retry",
	"websocket", "gateway", "backend", "frontend", "mobile", "browser",
	"https://example.com/pr/1234", "#general", "@alice", "@bob", "@carol",
	"42", "3.14", "v2.7.1", "10:30", "Friday", "Q3", "p99", "1.2 ms",
	"could", "should", "would", "did", "does", "has", "have", "had",
	"looks", "works", "broke", "fixed", "shipped", "tested", "checked",
	"please", "anyone", "everyone", "who", "what", "when", "why", "how",
};
static const char *const json_names[] = {
	"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
	"ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert",
	"sybil", "trent", "victor", "walter", "yolanda",
};
static const char *const json_rooms[] = {
	"general", "random", "engineering", "ops", "design", "sales",
	"support", "incidents",
};
static const char *const json_status[] = {
	"online", "away", "busy", "offline",
};
static const char *const json_emoji[] = {
	"thumbsup", "heart", "joy", "tada", "eyes", "rocket", "fire", "100",
};

/*
 * A chat-like JSON object of exactly size bytes whose first field is
 * {"id":"ID", and whose other fields (names, room, status, reactions,
 * numbers, and a "text" of words last) are drawn from (a, b): the same
 * arguments make the same bytes.  Short sizes drop the optional fields.
 * Returns -1 when size cannot hold even {"id":"ID","text":""}.
 */
static int
json_fill(uint8_t *p, size_t size, const char *id, uint64_t a, uint64_t b)
{
	uint64_t s = a * 0x2545f4914f6cdd1dULL ^ (b + 1) * 0x9e3779b97f4a7c15ULL;
	char head[640];
	size_t n, pos, end, w;
	const char *word;
	int k;

	k = snprintf(head, sizeof(head), "{\"id\":\"%s\",\"type\":\"message\","
	    "\"room\":\"%s\",\"ts\":%" PRIu64 ",\"user\":{\"id\":%u,"
	    "\"name\":\"%s\",\"status\":\"%s\"},\"reactions\":{\"%s\":%u,"
	    "\"%s\":%u},\"reply_to\":%s,\"edited\":%s,\"text\":\"", id,
	    PICK(json_rooms, &s),
	    (uint64_t)1700000000000 + splitmix(&s) % (uint64_t)100000000000,
	    (unsigned)(splitmix(&s) % 100000), PICK(json_names, &s),
	    PICK(json_status, &s), PICK(json_emoji, &s),
	    (unsigned)(splitmix(&s) % 20), PICK(json_emoji, &s),
	    (unsigned)(splitmix(&s) % 5), splitmix(&s) % 3 ? "null" : "\"m17\"",
	    splitmix(&s) % 4 ? "false" : "true");
	if (k < 0 || (size_t)k + 2 + 16 > size)
		k = snprintf(head, sizeof(head), "{\"id\":\"%s\",\"user\":\"%s\","
		    "\"text\":\"", id, PICK(json_names, &s));
	if (k < 0 || (size_t)k + 2 + 8 > size)
		k = snprintf(head, sizeof(head), "{\"id\":\"%s\",\"text\":\"", id);
	if (k < 0 || (size_t)k + 2 > size)
		return -1;
	n = (size_t)k;
	memcpy(p, head, n);
	end = size - 2;
	for (pos = n; pos < end; pos += w) {
		word = PICK(json_words, &s);
		if (pos > n)
			p[pos++] = ' ';
		w = strlen(word);
		if (w > end - pos)
			w = end - pos;
		memcpy(p + pos, word, w);
	}
	/* A word cut off may leave a trailing blank: fine in a string. */
	p[end] = '"';
	p[end + 1] = '}';
	return 0;
}

/* Scenario: echo */

/* The payload of message seq on connection idx: its identity, then a
 * pattern that shifts with both, so that no two messages are alike (or,
 * with --payload json, a JSON object drawn from both). */
static void
echo_fill(uint8_t *p, size_t size, unsigned idx, uint64_t seq)
{
	char id[48];
	size_t i, n;

	n = (size_t)snprintf(id, sizeof(id), "%u:%" PRIu64 ":", idx, seq);
	if (B.o.payload == PAYLOAD_JSON && json_fill(p, size, id, idx,
	    seq) == 0)
		return;
	if (n > size)
		n = size;
	memcpy(p, id, n);
	for (i = n; i < size; i++)
		p[i] = (uint8_t)('a' + (i + seq * 7 + idx) % 26);
}

static int
echo_init(void)
{
	unsigned i;

	if (B.o.inflight == 0) {
		fprintf(stderr, "wsbench: --inflight must be at least 1\n");
		return -1;
	}
	B.expect = malloc(B.o.size ? B.o.size : 1);
	if (B.expect == NULL)
		return -1;
	for (i = 0; i < B.n_conns; i++) {
		B.conns[i].sent_at = calloc(B.o.inflight, sizeof(uint64_t));
		if (B.conns[i].sent_at == NULL)
			return -1;
	}
	return 0;
}

static void
echo_send(struct conn *c)
{
	uint64_t seq = c->sent;

	echo_fill(frame_start(WS_OP_TEXT, B.o.size), B.o.size, c->idx, seq);
	c->sent_at[seq % B.o.inflight] = now_ns();
	c->sent++;
	B.outstanding++;
	frame_send(c);
}

static void
echo_all_open(void)
{
	unsigned i, k;

	if (B.n_open == 0) {
		bench_finish();
		return;
	}
	if (B.o.warmup > 0) {
		phase_set(PH_WARMUP, B.o.warmup);
	} else {
		measure_begin();
		phase_set(PH_MEASURE, B.o.duration);
	}
	for (i = 0; i < B.n_conns; i++) {
		for (k = 0; k < B.o.inflight; k++) {
			if (B.conns[i].state != CONN_OPEN)
				break;
			echo_send(&B.conns[i]);
		}
	}
}

static void
echo_message(struct conn *c, const struct ws_frame_event *ev)
{
	uint64_t seq, now = now_ns();

	if (c->rcvd == c->sent) {
		bench_error(E_UNEXPECTED, c, "a message with none in flight");
		return;
	}
	seq = c->rcvd++;
	B.outstanding--;
	echo_fill(B.expect, B.o.size, c->idx, seq);
	if (ev->opcode != WS_OP_TEXT || ev->len != B.o.size ||
	    memcmp(ev->data, B.expect, B.o.size) != 0)
		bench_error(E_MISMATCH, c, "reply %" PRIu64 " differs from the "
		    "message sent (%zu bytes, %zu expected)", seq, ev->len,
		    B.o.size);
	if (B.phase == PH_MEASURE)
		op_count(c, now - c->sent_at[seq % B.o.inflight]);
	if (B.phase == PH_WARMUP || B.phase == PH_MEASURE)
		echo_send(c);
	else if (B.phase == PH_DRAIN && B.outstanding == 0)
		bench_finish();
}

static void
echo_lost(struct conn *c)
{
	B.outstanding -= c->sent - c->rcvd;
	if (B.phase == PH_DRAIN && B.outstanding == 0)
		bench_finish();
}

static void
echo_tick(uint64_t now)
{
	if (now < B.phase_end)
		return;
	switch (B.phase) {
	case PH_WARMUP:
		measure_begin();
		phase_set(PH_MEASURE, B.o.duration);
		break;
	case PH_MEASURE:
		measure_end();
		phase_set(PH_DRAIN, B.o.drain_timeout);
		if (B.outstanding == 0)
			bench_finish();
		break;
	case PH_DRAIN:
		bench_error(E_LOST, NULL, "%" PRIu64 " messages not echoed "
		    "within %.0f s", B.outstanding, B.o.drain_timeout);
		B.errors[E_LOST] += B.outstanding - 1;
		bench_finish();
		break;
	default:
		break;
	}
}

/* Scenario: broadcast */

static bool
bit_get(const uint8_t *bits, uint64_t seq)
{
	seq %= WSB_HISTORY;
	return (bits[seq / 8] >> (seq % 8)) & 1;
}

static void
bit_put(uint8_t *bits, uint64_t seq, bool on)
{
	seq %= WSB_HISTORY;
	if (on)
		bits[seq / 8] |= (uint8_t)(1u << (seq % 8));
	else
		bits[seq / 8] &= (uint8_t)~(1u << (seq % 8));
}

static int
bcast_init(void)
{
	unsigned i;

	if (B.o.size < WSB_BCAST_HEAD) {
		fprintf(stderr, "wsbench: broadcast needs --size %d or more\n",
		    WSB_BCAST_HEAD);
		return -1;
	}
	if (B.o.payload == PAYLOAD_JSON) {
		char mark[WSB_BCAST_HEAD + 1];
		uint8_t *probe = malloc(B.o.size);

		memset(mark, '#', WSB_BCAST_HEAD);
		mark[WSB_BCAST_HEAD] = '\0';
		if (probe == NULL || json_fill(probe, B.o.size, mark, 0, 0)) {
			fprintf(stderr, "wsbench: --payload json needs --size "
			    "%d or more for broadcast\n", WSB_BCAST_HEAD + 17);
			free(probe);
			return -1;
		}
		B.mark_off = (size_t)((uint8_t *)memchr(probe, '#', B.o.size) -
		    probe);
		free(probe);
	}
	if (B.o.window == 0)
		B.o.window = B.o.rate > 0 ? 65536 : 64;
	B.cnt = calloc(B.o.window, sizeof(*B.cnt));
	if (B.cnt == NULL)
		return -1;
	for (i = 0; i < B.n_conns; i++) {
		B.conns[i].seen = calloc(WSB_HISTORY / 8, 1);
		if (B.conns[i].seen == NULL)
			return -1;
	}
	B.sender = &B.conns[B.n_conns - 1];
	/* Its messages go in at the last server, reach every one. */
	B.srv[B.sender->srv].conns--;
	B.sender->srv = B.n_srv - 1;
	B.srv[B.sender->srv].conns++;
	return 0;
}

static void
bcast_probe(void)
{
	B.last_probe = now_ns();
	conn_send_message(B.sender, WS_OP_TEXT, "#P", 2);
}

static void
bcast_all_open(void)
{
	unsigned i;

	if (B.sender->state != CONN_OPEN) {
		bench_error(E_CONNECT, B.sender, "the sender is not connected");
		bench_finish();
		return;
	}
	for (i = 0; i + 1 < B.n_conns; i++)
		B.receivers += B.conns[i].state == CONN_OPEN;
	if (B.receivers == 0) {
		bench_finish();
		return;
	}
	/* Probe until every receiver has one: then all are in the room. */
	phase_set(PH_SETTLE, B.o.settle);
	bcast_probe();
}

/* Send what the window (and the rate) allows. */
static void
bcast_pump(void)
{
	uint64_t now, allowed = UINT64_MAX;
	uint8_t *p;

	if (B.o.rate > 0)
		allowed = (uint64_t)((double)(now_ns() - B.t_measure_start) /
		    1e9 * B.o.rate) + 1;
	while (B.phase == PH_MEASURE && B.sent < B.o.messages &&
	    B.sent - B.complete < B.o.window && B.sent < allowed &&
	    B.sender->state == CONN_OPEN) {
		p = frame_start(WS_OP_TEXT, B.o.size);
		now = now_ns();
		if (B.o.payload == PAYLOAD_JSON) {
			char mark[WSB_BCAST_HEAD + 1];

			snprintf(mark, sizeof(mark), "#B%016" PRIx64 " %016"
			    PRIx64 "|", B.sent, now);
			(void)json_fill(p, B.o.size, mark, B.sent, 1);
		} else {
			snprintf((char *)p, WSB_BCAST_HEAD + 1, "#B%016" PRIx64
			    " %016" PRIx64 "|", B.sent, now);
			memset(p + WSB_BCAST_HEAD, 'x', B.o.size -
			    WSB_BCAST_HEAD);
		}
		B.sent++;
		if (frame_send(B.sender) == -1)
			return;
	}
	if (B.phase == PH_MEASURE && B.sent == B.o.messages)
		phase_set(PH_DRAIN, B.o.drain_timeout);
}

/* Every sent message has reached every receiver? */
static void
bcast_check_done(void)
{
	if (B.phase == PH_DRAIN && B.complete == B.sent)
		bench_finish();
}

/* Note seq on c; returns true on its first arrival. */
static bool
bcast_note(struct conn *c, uint64_t seq)
{
	uint64_t s, from;

	if (!c->any || seq > c->high) {
		/* A new highest: forget what the history window drops. */
		from = c->any ? c->high + 1 : 0;
		if (seq - from >= WSB_HISTORY)
			memset(c->seen, 0, WSB_HISTORY / 8);
		else
			for (s = from; s < seq; s++)
				bit_put(c->seen, s, false);
		bit_put(c->seen, seq, true);
		c->high = seq;
		c->any = true;
		return true;
	}
	if (c->high - seq >= WSB_HISTORY) {
		c->reord++;
		bench_error(E_REORDERED, c, "message %" PRIu64 " arrived after "
		    "%" PRIu64, seq, c->high);
		return false;	/* too old to tell a duplicate */
	}
	if (bit_get(c->seen, seq)) {
		c->dup++;
		bench_error(E_DUPLICATED, c, "message %" PRIu64 " again", seq);
		return false;
	}
	bit_put(c->seen, seq, true);
	c->reord++;
	bench_error(E_REORDERED, c, "message %" PRIu64 " arrived after %"
	    PRIu64, seq, c->high);
	return true;
}

static void
bcast_message(struct conn *c, const struct ws_frame_event *ev)
{
	const uint8_t *m = memmem(ev->data, ev->len, "#", 1);
	uint64_t seq, ts, now = now_ns();
	size_t rest;
	char num[17];

	/* A probe, a sequenced message, or something else (a chat room's
	 * "has joined", when --allow-foreign). */
	rest = m != NULL ? ev->len - (size_t)(m - ev->data) : 0;
	if (rest >= 2 && m[1] == 'P') {
		if (!c->probed && c != B.sender) {
			c->probed = true;
			if (++B.n_probed == B.receivers &&
			    B.phase == PH_SETTLE) {
				measure_begin();
				phase_set(PH_MEASURE, B.o.duration);
				bcast_pump();
			}
		}
		return;
	}
	if (rest < 2 || m[1] != 'B') {
		c->foreign++;
		B.foreign++;
		if (!B.o.allow_foreign)
			bench_error(E_UNEXPECTED, c, "not a benchmark message: "
			    "%.40s", (const char *)ev->data);
		return;
	}
	if (rest != B.o.size - B.mark_off || m[18] != ' ' || m[35] != '|') {
		bench_error(E_MISMATCH, c, "malformed message (%zu bytes "
		    "from its mark, %zu expected)", rest, B.o.size - B.mark_off);
		return;
	}
	memcpy(num, m + 2, 16);
	num[16] = '\0';
	seq = strtoull(num, NULL, 16);
	memcpy(num, m + 19, 16);
	ts = strtoull(num, NULL, 16);
	if (seq >= B.sent) {
		bench_error(E_MISMATCH, c, "message %" PRIu64 " was never sent",
		    seq);
		return;
	}
	if (!bcast_note(c, seq))
		return;
	c->distinct++;
	if (c == B.sender) {
		B.sender_copies++;
		return;
	}
	B.deliveries++;
	if (B.measuring)
		op_count(c, now - ts);
	/* Advance the window over messages every receiver has. */
	if (++B.cnt[seq % B.o.window] == B.receivers && seq == B.complete) {
		while (B.complete < B.sent &&
		    B.cnt[B.complete % B.o.window] == B.receivers)
			B.cnt[B.complete++ % B.o.window] = 0;
		bcast_pump();
		bcast_check_done();
	}
}

static void
bcast_lost(struct conn *c)
{
	/* The window would wait for it forever. */
	bench_finish();
}

static void
bcast_tick(uint64_t now)
{
	switch (B.phase) {
	case PH_SETTLE:
		if (now >= B.phase_end) {
			bench_error(E_TIMEOUT, NULL, "%u of %u receivers joined "
			    "the room within %.0f s", B.n_probed, B.receivers,
			    B.o.settle);
			bench_finish();
		} else if (now - B.last_probe >= WSB_PROBE_NS) {
			bcast_probe();
		}
		break;
	case PH_MEASURE:
		if (now >= B.phase_end)
			phase_set(PH_DRAIN, B.o.drain_timeout);
		else
			bcast_pump();
		bcast_check_done();
		break;
	case PH_DRAIN:
		if (now >= B.phase_end) {
			bench_error(E_TIMEOUT, NULL, "messages not delivered "
			    "to every receiver within %.0f s",
			    B.o.drain_timeout);
			bench_finish();
		}
		break;
	default:
		break;
	}
}

/* Scenario: idle */

static int
idle_init(void)
{
	usage_sample_all(true, &B.u_base, false);
	return 0;
}

static void
idle_all_open(void)
{
	phase_set(PH_SETTLE, B.o.settle);
}

static void
idle_message(struct conn *c, const struct ws_frame_event *ev)
{
	bench_error(E_UNEXPECTED, c, "a message on an idle connection");
}

static void
idle_tick(uint64_t now)
{
	if (now < B.phase_end)
		return;
	if (B.phase == PH_SETTLE) {
		measure_begin();
		phase_set(PH_MEASURE, B.o.duration);
	} else if (B.phase == PH_MEASURE) {
		bench_finish();
	}
}

/* Scenario: connect */

static int
connect_init(void)
{
	if (B.o.connections > B.o.max_pending) {
		fprintf(stderr, "wsbench: connect runs at most --max-pending "
		    "(%u) connections in parallel\n", B.o.max_pending);
		return -1;
	}
	if (B.o.first_echo && (B.expect = malloc(B.o.size ? B.o.size : 1)) ==
	    NULL)
		return -1;
	return 0;
}

static void
connect_start(void)
{
	unsigned i;

	if (B.o.warmup > 0) {
		phase_set(PH_WARMUP, B.o.warmup);
	} else {
		measure_begin();
		phase_set(PH_MEASURE, B.o.duration);
	}
	for (i = 0; i < B.n_conns; i++)
		conn_open(&B.conns[i]);
}

static void
connect_opened(struct conn *c)
{
	if (B.o.first_echo) {
		/* Its echo ends the cycle (connect_message). */
		echo_fill(frame_start(WS_OP_TEXT, B.o.size), B.o.size, c->idx,
		    c->sent++);
		frame_send(c);
		return;
	}
	if (B.measuring)
		op_count(c, now_ns() - c->t_open);
	conn_start_close(c);
}

static void
connect_closed(struct conn *c)
{
	if (c->state == CONN_DEAD)
		return;
	if (B.phase == PH_WARMUP || B.phase == PH_MEASURE)
		conn_open(c);
	else if (B.phase == PH_DRAIN && B.n_active == 0)
		bench_finish();
}

static void
connect_message(struct conn *c, const struct ws_frame_event *ev)
{
	uint64_t seq;

	if (!B.o.first_echo || c->rcvd == c->sent) {
		bench_error(E_UNEXPECTED, c, "a message on a new connection");
		return;
	}
	seq = c->rcvd++;
	echo_fill(B.expect, B.o.size, c->idx, seq);
	if (ev->opcode != WS_OP_TEXT || ev->len != B.o.size ||
	    memcmp(ev->data, B.expect, B.o.size) != 0)
		bench_error(E_MISMATCH, c, "first echo differs from the "
		    "message sent (%zu bytes, %zu expected)", ev->len,
		    B.o.size);
	if (B.measuring)
		op_count(c, now_ns() - c->t_open);
	conn_start_close(c);
}

static void
connect_tick(uint64_t now)
{
	if (B.phase == PH_DRAIN && B.n_active == 0) {
		bench_finish();
		return;
	}
	if (now < B.phase_end)
		return;
	switch (B.phase) {
	case PH_WARMUP:
		measure_begin();
		phase_set(PH_MEASURE, B.o.duration);
		break;
	case PH_MEASURE:
		measure_end();
		phase_set(PH_DRAIN, B.o.drain_timeout);
		break;
	case PH_DRAIN:
		bench_finish();	/* stragglers time out on their own */
		break;
	default:
		break;
	}
}

/* Report */

/* A minimal JSON writer for flat and nested objects. */
static bool json_first = true;

static void
json_key(const char *key)
{
	printf("%s\"%s\":", json_first ? "" : ",", key);
	json_first = false;
}

static void
json_begin(const char *key)
{
	if (key != NULL)
		json_key(key);
	else if (!json_first)
		putchar(',');
	putchar('{');
	json_first = true;
}

static void
json_end(void)
{
	putchar('}');
	json_first = false;
}

static void
json_u64(const char *key, uint64_t v)
{
	json_key(key);
	printf("%" PRIu64, v);
}

static void
json_num(const char *key, double v)
{
	json_key(key);
	if (isfinite(v))
		printf("%.6g", v);
	else
		printf("null");
}

static void
json_str(const char *key, const char *s)
{
	json_key(key);
	putchar('"');
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static double
measured_seconds(void)
{
	return B.measured ?
	    (double)(B.t_measure_end - B.t_measure_start) / 1e9 : 0;
}

/* Per operation, in microseconds; NaN (null) when there was none. */
static double
per_op_us(double seconds)
{
	return B.ops ? seconds / (double)B.ops * 1e6 : NAN;
}

static void
report_latency(void)
{
	json_begin("latency_us");
	json_u64("samples", B.lat.n);
	json_num("p50", (double)hist_quantile(&B.lat, 0.50) / 1e3);
	json_num("p99", (double)hist_quantile(&B.lat, 0.99) / 1e3);
	json_num("max", (double)B.lat.max / 1e3);
	json_num("mean", B.lat.n ? B.lat.sum / (double)B.lat.n / 1e3 : NAN);
	json_end();
}

/* Per server of several: its connections, their operations, its CPU
 * time, and that over its own operations ("per_op_us") and over all of
 * them ("per_all_ops_us", which sum to cpu_per_op_us.server). */
static void
report_servers(double secs, bool have)
{
	char key[16];
	unsigned i;

	json_begin("servers");
	for (i = 0; i < B.n_srv; i++) {
		const struct server *v = &B.srv[i];
		double cpu = v->u1.server_cpu - v->u0.server_cpu;
		double bk = v->u1.backends_cpu - v->u0.backends_cpu;
		bool ok = have && v->u0.ok && v->u1.ok;

		snprintf(key, sizeof(key), "%u", i);
		json_begin(key);
		json_u64("port", v->port);
		json_u64("pid", (uint64_t)v->pid);
		json_u64("connections", v->conns);
		json_u64("ops", v->ops);
		json_num("server_s", ok ? cpu : NAN);
		json_num("server_util", ok && secs > 0 ? cpu / secs : NAN);
		json_num("backends_s", ok ? bk : NAN);
		json_u64("backends", v->u1.n_backends);
		json_num("per_op_us", ok && v->ops ? cpu / (double)v->ops * 1e6 :
		    NAN);
		json_num("backends_per_op_us", ok && v->ops ?
		    bk / (double)v->ops * 1e6 : NAN);
		json_num("per_all_ops_us", ok ? per_op_us(cpu) : NAN);
		json_end();
	}
	json_end();
}

/* The --watch-pid processes: their own CPU time, per operation, and for
 * broadcast per message sent as well. */
static void
report_watched(double secs)
{
	unsigned i;

	json_begin("watched");
	for (i = 0; i < B.o.n_watch; i++) {
		const struct watched *w = &B.watch[i];
		double cpu = w->cpu1 - w->cpu0;
		bool ok = B.measured && w->ok;

		json_begin(B.o.watch[i].name);
		json_u64("pid", (uint64_t)B.o.watch[i].pid);
		json_num("cpu_s", ok ? cpu : NAN);
		json_num("util", ok && secs > 0 ? cpu / secs : NAN);
		json_num("per_op_us", ok ? per_op_us(cpu) : NAN);
		if (B.o.scenario == SC_BROADCAST)
			json_num("per_message_us", ok && B.sent ?
			    cpu / (double)B.sent * 1e6 : NAN);
		json_end();
	}
	json_end();
}

static void
report_cpu(void)
{
	double secs = measured_seconds();
	double server = B.u1.server_cpu - B.u0.server_cpu;
	double backends = B.u1.backends_cpu - B.u0.backends_cpu;
	double gen = B.gen_cpu1 - B.gen_cpu0;
	bool have = B.measured && B.u0.ok && B.u1.ok;

	json_begin("cpu");
	json_num("interval_s", secs);
	json_num("generator_s", B.measured ? gen : NAN);
	json_num("generator_util", B.measured && secs > 0 ? gen / secs : NAN);
	json_num("server_s", have ? server : NAN);
	json_num("server_util", have && secs > 0 ? server / secs : NAN);
	json_num("backends_s", have ? backends : NAN);
	json_num("backends_util", have && secs > 0 ? backends / secs : NAN);
	json_u64("backends", B.u1.n_backends);
	json_end();
	/* CPU per counted operation: round trip, delivery or handshake. */
	json_begin("cpu_per_op_us");
	json_num("server", have ? per_op_us(server) : NAN);
	json_num("backends", have ? per_op_us(backends) : NAN);
	json_num("generator", B.measured ? per_op_us(gen) : NAN);
	json_end();
	if (B.n_srv > 1)
		report_servers(secs, have);
	if (B.o.n_watch > 0)
		report_watched(secs);
}

/* The report of a scenario that counts operations: echo's round trips,
 * connect's handshakes. */
static void
report_ops(const char *scenario, const char *ops)
{
	double secs = measured_seconds();

	json_begin(scenario);
	json_u64(ops, B.ops);
	json_num("per_second", secs > 0 ? (double)B.ops / secs : 0);
	json_end();
	report_latency();
	report_cpu();
}

static void
echo_report(void)
{
	report_ops("echo", "round_trips");
}

/* Lost: what a receiver never got of what was sent; the end alone can
 * tell. */
static void
bcast_account(void)
{
	uint64_t lost = 0, l;
	unsigned i;

	for (i = 0; i + 1 < B.n_conns; i++) {
		struct conn *c = &B.conns[i];

		if (!c->probed)
			continue;	/* never in the room */
		l = B.sent - c->distinct;
		lost += l;
		if (l > B.lost_max)
			B.lost_max = l;
		if (c->dup > B.dup_max)
			B.dup_max = c->dup;
		if (c->reord > B.reord_max)
			B.reord_max = c->reord;
		B.bad_receivers += l > 0 || c->dup > 0 || c->reord > 0;
	}
	if (lost > 0) {
		bench_error(E_LOST, NULL, "%" PRIu64 " deliveries missing, "
		    "%u receivers short", lost, B.bad_receivers);
		B.errors[E_LOST] = lost;
	}
}

static void
bcast_report(void)
{
	double secs = measured_seconds();

	json_begin("broadcast");
	json_u64("receivers", B.receivers);
	json_u64("messages_sent", B.sent);
	json_u64("deliveries", B.deliveries);
	json_num("deliveries_per_second", secs > 0 ?
	    (double)B.deliveries / secs : 0);
	json_num("messages_per_second", secs > 0 ? (double)B.sent / secs : 0);
	json_u64("sender_copies", B.sender_copies);
	json_u64("foreign", B.foreign);
	json_u64("window", B.o.window);
	json_num("rate", B.o.rate);
	json_u64("receivers_with_errors", B.bad_receivers);
	json_u64("lost_max_per_receiver", B.lost_max);
	json_u64("duplicated_max_per_receiver", B.dup_max);
	json_u64("reordered_max_per_receiver", B.reord_max);
	json_end();
	report_latency();
	report_cpu();
}

static void
idle_report(void)
{
	double n = B.n_open ? (double)B.n_open : NAN;
	bool have = B.u_base.ok && B.u1.ok;

	json_begin("idle");
	json_u64("held", B.n_open);
	json_num("held_s", measured_seconds());
	json_u64("server_rss_kib_before", B.u_base.server_rss);
	json_u64("server_rss_kib", B.u1.server_rss);
	json_u64("backends_rss_kib_before", B.u_base.backends_rss);
	json_u64("backends_rss_kib", B.u1.backends_rss);
	json_u64("total_pss_kib_before", B.u_base.total_pss);
	json_u64("total_pss_kib", B.u1.total_pss);
	json_u64("backends", B.u1.n_backends);
	/* Bytes per connection: the growth over the empty server. */
	json_num("server_bytes_per_conn", have ? ((double)B.u1.server_rss -
	    (double)B.u_base.server_rss) * 1024 / n : NAN);
	json_num("with_backends_bytes_per_conn", have ?
	    ((double)(B.u1.server_rss + B.u1.backends_rss) -
	    (double)(B.u_base.server_rss + B.u_base.backends_rss)) * 1024 / n :
	    NAN);
	json_num("pss_bytes_per_conn", have ? ((double)B.u1.total_pss -
	    (double)B.u_base.total_pss) * 1024 / n : NAN);
	json_end();
	report_cpu();
}

/* --tls-resume measures resumed handshakes: say so when they were not. */
static void
connect_account(void)
{
	uint64_t full = B.tls_handshakes - B.tls_resumed;

	if (B.o.tls_resume && full * 100 > B.tls_handshakes)
		bench_error(E_HANDSHAKE, NULL, "%" PRIu64 " of %" PRIu64
		    " measured TLS handshakes did not resume a session", full,
		    B.tls_handshakes);
}

static void
connect_report(void)
{
	report_ops("connect", "handshakes");
}

static const struct driver drivers[] = {
	[SC_ECHO] = {
		.name = "echo", .default_path = "/echo",
		.init = echo_init, .start = bench_connect_begin,
		.all_open = echo_all_open, .message = echo_message,
		.lost = echo_lost, .tick = echo_tick, .report = echo_report,
	},
	[SC_BROADCAST] = {
		.name = "broadcast", .default_path = "/broadcast",
		.init = bcast_init, .start = bench_connect_begin,
		.all_open = bcast_all_open, .message = bcast_message,
		.lost = bcast_lost, .tick = bcast_tick,
		.account = bcast_account, .report = bcast_report,
	},
	[SC_IDLE] = {
		.name = "idle", .default_path = "/echo",
		.init = idle_init, .start = bench_connect_begin,
		.all_open = idle_all_open, .message = idle_message,
		.tick = idle_tick, .report = idle_report,
	},
	[SC_CONNECT] = {
		.name = "connect", .default_path = "/echo",
		.init = connect_init, .start = connect_start,
		.opened = connect_opened, .message = connect_message,
		.closed = connect_closed, .tick = connect_tick,
		.account = connect_account, .report = connect_report,
	},
};

static void
json_strings(const char *key, const char (*list)[200], unsigned n)
{
	unsigned i;

	json_key(key);
	putchar('[');
	for (i = 0; i < n; i++) {
		if (i > 0)
			putchar(',');
		putchar('"');
		for (const char *s = list[i]; *s != '\0'; s++) {
			if (*s == '"' || *s == '\\')
				putchar('\\');
			putchar((unsigned char)*s < 0x20 ? ' ' : *s);
		}
		putchar('"');
	}
	putchar(']');
}

/* The whole run as one JSON object on one line of stdout. */
static void
report(void)
{
	unsigned i;

	json_first = true;
	json_begin(NULL);
	json_str("scenario", B.drv->name);
	json_str("host", B.o.host);
	json_u64("port", B.srv[0].port);
	json_str("path", B.path);
	json_u64("connections", B.o.connections);
	json_u64("size", B.o.size);
	json_u64("inflight", B.o.inflight);
	json_u64("messages", B.o.messages);
	json_num("duration", B.o.duration);
	json_u64("server_pid", (uint64_t)B.srv[0].pid);
	json_u64("servers_n", B.n_srv);
	json_begin("setup");
	json_u64("opened", B.o.scenario == SC_CONNECT ? 0 : B.n_open);
	json_num("connect_s", B.t_connect_end ?
	    (double)(B.t_connect_end - B.t_connect_start) / 1e9 : NAN);
	json_num("connects_per_second", B.t_connect_end > B.t_connect_start ?
	    (double)B.n_conns / ((double)(B.t_connect_end -
	    B.t_connect_start) / 1e9) : NAN);
	json_num("run_s", (double)(now_ns() - B.t_start) / 1e9);
	json_end();
	B.drv->report();
	if (B.o.tls) {
		json_begin("tls");
		json_str("version", B.tls_version);
		json_str("cipher", B.tls_cipher);
		json_str("group", B.tls_group);
		json_key("resume");
		printf(B.o.tls_resume ? "true" : "false");
		json_u64("handshakes", B.tls_handshakes);
		json_u64("resumed", B.tls_resumed);
		json_u64("tickets", B.tls_tickets);
		json_end();
	}
	if (B.o.deflate) {
		json_begin("deflate");
		json_u64("sent_messages", B.z_tx_msgs);
		json_num("sent_ratio", B.z_tx_wire ?
		    (double)B.z_tx_plain / (double)B.z_tx_wire : NAN);
		json_u64("received_compressed", B.z_rx_msgs);
		json_u64("received_uncompressed", B.z_rx_uncompressed);
		json_num("received_ratio", B.z_rx_wire ?
		    (double)B.z_rx_plain / (double)B.z_rx_wire : NAN);
		json_end();
	}
	json_begin("errors");
	for (i = 0; i < E_COUNT; i++)
		json_u64(err_names[i], B.errors[i]);
	json_end();
	json_strings("error_messages", B.errtext, B.n_errtext);
	json_key("ok");
	printf(bench_error_total() == 0 ? "true" : "false");
	json_end();
	putchar('\n');
	fflush(stdout);
}

/* Options */

static void
usage(FILE *f)
{
	fprintf(f,
"usage: wsbench --port PORT --scenario echo|broadcast|idle|connect [options]\n"
"  --host ADDR          numeric loopback address (127.0.0.1)\n"
"  --port PORT[,PORT]   the server's port, or several servers' ports:\n"
"                       connection i goes to the (i mod n)th, the\n"
"                       broadcast sender to the last (required)\n"
"  --path PATH          request path (/echo; /broadcast for broadcast)\n"
"  --connections N      connections; broadcast: receivers; connect: in\n"
"                       parallel (100)\n"
"  --size S             message size in bytes (64)\n"
"  --inflight W         echo: messages in flight per connection (1)\n"
"  --messages M         broadcast: messages to send (10000)\n"
"  --window K           broadcast: messages not yet delivered to all (64)\n"
"  --rate R             broadcast: messages per second (0: window only)\n"
"  --duration D         seconds measured; broadcast: the most (5)\n"
"  --warmup D           echo, connect: seconds before measuring (1)\n"
"  --settle D           idle: seconds before sampling (1); broadcast:\n"
"                       seconds for every receiver to join (10)\n"
"  --drain-timeout D    seconds for messages in flight at the end (10)\n"
"  --connect-timeout D  seconds to open all connections (60)\n"
"  --timeout D          seconds for the whole run (0: the sum of the above\n"
"                       plus 30)\n"
"  --max-pending N      handshakes in flight at once (%d)\n"
"  --server-pid PID[,PID]  sample the server's and its children's CPU\n"
"                       time and memory from /proc; one PID per port\n"
"  --watch-pid NAME=PID another process whose own CPU time to report\n"
"                       (up to %d)\n"
"  --allow-foreign      broadcast: ignore messages without our mark\n"
"  --first-echo         connect: send one message and wait for its echo\n"
"                       before closing each connection\n"
"  --payload KIND       pattern (letters) or json (a chat-like JSON\n"
"                       object) (pattern)\n"
"  --tls                connect with TLS (no certificate check)\n"
"  --tls-resume         --tls, resuming the session of the latest ticket\n"
"  --deflate            offer permessage-deflate (no context takeover\n"
"                       either way) and require it\n"
"  --json               print one JSON object\n", WSB_MAX_PENDING,
	    WSB_MAX_WATCH);
}

static int
opt_double(const char *name, const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi)) {
		fprintf(stderr, "wsbench: --%s: %s is not a number in [%g, %g]\n",
		    name, s, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

static int
opt_u64(const char *name, const char *s, uint64_t lo, uint64_t hi,
    uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < lo ||
	    v > hi) {
		fprintf(stderr, "wsbench: --%s: %s is not a whole number in "
		    "[%" PRIu64 ", %" PRIu64 "]\n", name, s, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

/* "A,B,C": whole numbers in [lo, hi] into out[], at most max of them. */
static int
opt_list(const char *name, const char *s, uint64_t lo, uint64_t hi,
    uint64_t *out, unsigned max, unsigned *n)
{
	char item[32];
	const char *comma;
	size_t len;

	*n = 0;
	for (;;) {
		comma = strchr(s, ',');
		len = comma != NULL ? (size_t)(comma - s) : strlen(s);
		if (*n == max || len >= sizeof(item)) {
			fprintf(stderr, "wsbench: --%s: at most %u numbers\n",
			    name, max);
			return -1;
		}
		memcpy(item, s, len);
		item[len] = '\0';
		if (opt_u64(name, item, lo, hi, &out[(*n)++]) == -1)
			return -1;
		if (comma == NULL)
			return 0;
		s = comma + 1;
	}
}

/* NAME=PID */
static int
opt_watch(const char *s, struct opts *o)
{
	const char *eq = strchr(s, '=');
	uint64_t pid;

	if (o->n_watch == WSB_MAX_WATCH || eq == NULL || eq == s ||
	    (size_t)(eq - s) >= WSB_WATCH_NAME ||
	    strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") !=
	    (size_t)(eq - s)) {
		fprintf(stderr, "wsbench: --watch-pid is NAME=PID, NAME in "
		    "[a-z0-9_-], at most %d of them\n", WSB_MAX_WATCH);
		return -1;
	}
	if (opt_u64("watch-pid", eq + 1, 1, INT32_MAX, &pid) == -1)
		return -1;
	memcpy(o->watch[o->n_watch].name, s, (size_t)(eq - s));
	o->watch[o->n_watch].name[eq - s] = '\0';
	o->watch[o->n_watch++].pid = (pid_t)pid;
	return 0;
}

static int
parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "host", required_argument, NULL, 'h' },
		{ "port", required_argument, NULL, 'p' },
		{ "path", required_argument, NULL, 'P' },
		{ "scenario", required_argument, NULL, 's' },
		{ "connections", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 'S' },
		{ "inflight", required_argument, NULL, 'W' },
		{ "messages", required_argument, NULL, 'M' },
		{ "window", required_argument, NULL, 'K' },
		{ "rate", required_argument, NULL, 'R' },
		{ "duration", required_argument, NULL, 'd' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "settle", required_argument, NULL, 'e' },
		{ "drain-timeout", required_argument, NULL, 'D' },
		{ "connect-timeout", required_argument, NULL, 'C' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "max-pending", required_argument, NULL, 'm' },
		{ "server-pid", required_argument, NULL, 'x' },
		{ "watch-pid", required_argument, NULL, 'X' },
		{ "allow-foreign", no_argument, NULL, 'f' },
		{ "first-echo", no_argument, NULL, 'F' },
		{ "payload", required_argument, NULL, 'y' },
		{ "tls", no_argument, NULL, 't' },
		{ "tls-resume", no_argument, NULL, 'r' },
		{ "deflate", no_argument, NULL, 'z' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, '?' },
		{ NULL, 0, NULL, 0 },
	};
	bool have_port = false, have_scenario = false, have_settle = false;
	uint64_t u, list[WSB_MAX_SERVERS];
	unsigned i;
	int ch, r = 0;

	*o = (struct opts){
		.host = "127.0.0.1", .connections = 100, .size = 64,
		.inflight = 1, .messages = 10000, .duration = 5, .warmup = 1,
		.settle = 1, .drain_timeout = 10, .connect_timeout = 60,
		.max_pending = WSB_MAX_PENDING,
	};
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			o->host = optarg;
			break;
		case 'p':
			r = opt_list("port", optarg, 1, 65535, list,
			    WSB_MAX_SERVERS, &o->n_ports);
			for (i = 0; i < o->n_ports; i++)
				o->ports[i] = (unsigned)list[i];
			have_port = true;
			break;
		case 'P':
			o->path = optarg;
			if (optarg[0] != '/' || strpbrk(optarg, " \r\n") != NULL) {
				fprintf(stderr, "wsbench: --path must start with "
				    "'/' and hold no blanks\n");
				r = -1;
			}
			break;
		case 's':
			have_scenario = true;
			if (strcmp(optarg, "echo") == 0)
				o->scenario = SC_ECHO;
			else if (strcmp(optarg, "broadcast") == 0)
				o->scenario = SC_BROADCAST;
			else if (strcmp(optarg, "idle") == 0)
				o->scenario = SC_IDLE;
			else if (strcmp(optarg, "connect") == 0)
				o->scenario = SC_CONNECT;
			else {
				fprintf(stderr, "wsbench: unknown scenario %s\n",
				    optarg);
				r = -1;
			}
			break;
		case 'n':
			r = opt_u64("connections", optarg, 1,
			    WSB_MAX_CONNECTIONS, &u);
			o->connections = (unsigned)u;
			break;
		case 'S':
			r = opt_u64("size", optarg, 0, WSB_MAX_MESSAGE, &u);
			o->size = (size_t)u;
			break;
		case 'W':
			r = opt_u64("inflight", optarg, 1, 1u << 16, &u);
			o->inflight = (unsigned)u;
			break;
		case 'M':
			r = opt_u64("messages", optarg, 1, UINT64_MAX / 2, &u);
			o->messages = u;
			break;
		case 'K':
			r = opt_u64("window", optarg, 1, 1u << 24, &u);
			o->window = (unsigned)u;
			break;
		case 'R':
			r = opt_double("rate", optarg, 0, 1e9, &o->rate);
			break;
		case 'd':
			r = opt_double("duration", optarg, 0.01, 86400,
			    &o->duration);
			break;
		case 'w':
			r = opt_double("warmup", optarg, 0, 3600, &o->warmup);
			break;
		case 'e':
			r = opt_double("settle", optarg, 0, 3600, &o->settle);
			have_settle = true;
			break;
		case 'D':
			r = opt_double("drain-timeout", optarg, 0.1, 3600,
			    &o->drain_timeout);
			break;
		case 'C':
			r = opt_double("connect-timeout", optarg, 0.1, 3600,
			    &o->connect_timeout);
			break;
		case 'T':
			r = opt_double("timeout", optarg, 0, 86400, &o->timeout);
			break;
		case 'm':
			r = opt_u64("max-pending", optarg, 1, 100000, &u);
			o->max_pending = (unsigned)u;
			break;
		case 'x':
			r = opt_list("server-pid", optarg, 1, INT32_MAX, list,
			    WSB_MAX_SERVERS, &o->n_pids);
			for (i = 0; i < o->n_pids; i++)
				o->server_pids[i] = (pid_t)list[i];
			break;
		case 'X':
			r = opt_watch(optarg, o);
			break;
		case 'f':
			o->allow_foreign = true;
			break;
		case 'F':
			o->first_echo = true;
			break;
		case 'y':
			if (strcmp(optarg, "pattern") == 0)
				o->payload = PAYLOAD_PATTERN;
			else if (strcmp(optarg, "json") == 0)
				o->payload = PAYLOAD_JSON;
			else {
				fprintf(stderr, "wsbench: --payload is pattern "
				    "or json\n");
				r = -1;
			}
			break;
		case 't':
			o->tls = true;
			break;
		case 'r':
			o->tls = o->tls_resume = true;
			break;
		case 'z':
			o->deflate = true;
			break;
		case 'j':
			o->json = true;
			break;
		default:
			usage(stderr);
			return -1;
		}
		if (r == -1)
			return -1;
	}
	if (optind != argc || !have_port || !have_scenario) {
		usage(stderr);
		return -1;
	}
	if (o->n_pids != 0 && o->n_pids != o->n_ports) {
		fprintf(stderr, "wsbench: --server-pid needs one PID per "
		    "port (%u ports)\n", o->n_ports);
		return -1;
	}
	if (o->first_echo && o->scenario != SC_CONNECT) {
		fprintf(stderr, "wsbench: --first-echo is for connect\n");
		return -1;
	}
	if (o->scenario == SC_BROADCAST && !have_settle)
		o->settle = 10;
	if (o->timeout == 0)
		o->timeout = o->connect_timeout + o->settle + o->warmup +
		    o->duration + o->drain_timeout + 30;
	return 0;
}

/* Loopback only: a numeric 127/8 or ::1 address; one server per port. */
static int
resolve(const struct opts *o)
{
	struct sockaddr_storage addr;
	struct sockaddr_in *in = (struct sockaddr_in *)&addr;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&addr;
	socklen_t len;
	bool v6;
	unsigned i;

	memset(&addr, 0, sizeof(addr));
	if (inet_pton(AF_INET, o->host, &in->sin_addr) == 1) {
		if ((ntohl(in->sin_addr.s_addr) >> 24) != 127)
			goto remote;
		in->sin_family = AF_INET;
		len = sizeof(*in);
		v6 = false;
	} else if (inet_pton(AF_INET6, o->host, &in6->sin6_addr) == 1) {
		if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			goto remote;
		in6->sin6_family = AF_INET6;
		len = sizeof(*in6);
		v6 = true;
	} else {
		fprintf(stderr, "wsbench: --host %s is not a numeric address\n",
		    o->host);
		return -1;
	}
	B.n_srv = o->n_ports;
	for (i = 0; i < o->n_ports; i++) {
		struct server *v = &B.srv[i];

		v->port = o->ports[i];
		v->pid = o->n_pids ? o->server_pids[i] : 0;
		v->addr = addr;
		v->addr_len = len;
		if (v6)
			((struct sockaddr_in6 *)&v->addr)->sin6_port =
			    htons((uint16_t)v->port);
		else
			((struct sockaddr_in *)&v->addr)->sin_port =
			    htons((uint16_t)v->port);
		snprintf(v->host_header, sizeof(v->host_header),
		    v6 ? "[%s]:%u" : "%s:%u", o->host, v->port);
	}
	return 0;
remote:
	fprintf(stderr, "wsbench: --host %s is not a loopback address: "
	    "wsbench only loads this machine\n", o->host);
	return -1;
}

/* The TLS context and the zlib streams the options ask for. */
static int
transport_init(void)
{
	if (B.o.deflate) {
		/* Raw deflate (negative bits), a window of 32 KiB both ways:
		 * we offered no client_max_window_bits. */
		B.zd_ready = deflateInit2(&B.zd, WSB_ZLIB_LEVEL, Z_DEFLATED,
		    -15, 8, Z_DEFAULT_STRATEGY) == Z_OK;
		B.zi_ready = inflateInit2(&B.zi, -15) == Z_OK;
		if (!B.zd_ready || !B.zi_ready) {
			fprintf(stderr, "wsbench: zlib: out of memory\n");
			return -1;
		}
	}
	if (!B.o.tls)
		return 0;
	B.ssl_ctx = SSL_CTX_new(TLS_client_method());
	if (B.ssl_ctx == NULL) {
		fprintf(stderr, "wsbench: SSL_CTX_new: %s\n", tls_error(0));
		return -1;
	}
	/* A benchmark against our own certificate: nothing to verify. */
	SSL_CTX_set_verify(B.ssl_ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_mode(B.ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* A reset after the close frames is no error, and an error would
	 * make the session it used unresumable. */
	SSL_CTX_set_options(B.ssl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_session_cache_mode(B.ssl_ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(B.ssl_ctx, tls_new_session_cb);
	return 0;
}

/* A human summary of the JSON, on stderr. */
static void
human_summary(void)
{
	double secs = measured_seconds();
	double server = B.u1.server_cpu - B.u0.server_cpu;

	fprintf(stderr, "wsbench: %s, %u connections, %.2f s measured, "
	    "%" PRIu64 " operations (%.0f/s)\n", B.drv->name, B.o.connections,
	    secs, B.ops, secs > 0 ? (double)B.ops / secs : 0.0);
	if (B.lat.n > 0)
		fprintf(stderr, "wsbench: latency p50 %.1f us, p99 %.1f us, "
		    "max %.1f us\n", (double)hist_quantile(&B.lat, 0.5) / 1e3,
		    (double)hist_quantile(&B.lat, 0.99) / 1e3,
		    (double)B.lat.max / 1e3);
	if (B.u0.ok && B.u1.ok && B.ops > 0)
		fprintf(stderr, "wsbench: server CPU %.2f us per operation\n",
		    server / (double)B.ops * 1e6);
	fprintf(stderr, "wsbench: %" PRIu64 " errors\n", bench_error_total());
}

int
main(int argc, char **argv)
{
	unsigned i;
	int status;

	if (parse_opts(argc, argv, &B.o) == -1 || resolve(&B.o) == -1)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	B.drv = &drivers[B.o.scenario];
	B.path = B.o.path != NULL ? B.o.path : B.drv->default_path;
	B.t_start = now_ns();
	B.deadline = B.t_start + secs_to_ns(B.o.timeout);
	B.rng = B.t_start | 1;
	TAILQ_INIT(&B.waiting);
	B.n_conns = B.o.connections + (B.o.scenario == SC_BROADCAST);
	B.conns = calloc(B.n_conns, sizeof(*B.conns));
	if (B.conns == NULL)
		return 2;
	for (i = 0; i < B.n_conns; i++) {
		B.conns[i].idx = i;
		B.conns[i].fd = -1;
		B.conns[i].srv = i % B.n_srv;
		B.srv[B.conns[i].srv].conns++;
	}
	if (B.drv->init() == -1 || transport_init() == -1)
		return 2;
	B.base = event_base_new();
	if (B.base == NULL)
		return 2;
	B.tick = event_new(B.base, -1, EV_PERSIST, tick_cb, NULL);
	B.sig[0] = evsignal_new(B.base, SIGINT, signal_cb, NULL);
	B.sig[1] = evsignal_new(B.base, SIGTERM, signal_cb, NULL);
	if (B.tick == NULL || B.sig[0] == NULL || B.sig[1] == NULL)
		return 2;
	event_add(B.tick, &(struct timeval){ 0, WSB_TICK_MS * 1000 });
	event_add(B.sig[0], NULL);
	event_add(B.sig[1], NULL);

	B.drv->start();
	if (!B.finished)
		event_base_dispatch(B.base);
	measure_end();

	if (B.drv->account != NULL)
		B.drv->account();
	if (B.o.json)
		report();
	else
		human_summary();
	status = bench_error_total() == 0 ? 0 : 1;

	/* Reset every connection: the run is over. */
	for (i = 0; i < B.n_conns; i++) {
		conn_close(&B.conns[i], CONN_FREE);
		if (B.conns[i].out != NULL)
			evbuffer_free(B.conns[i].out);
		free(B.conns[i].sent_at);
		free(B.conns[i].seen);
	}
	free(B.conns);
	free(B.cnt);
	free(B.tx);
	free(B.expect);
	free(B.ztx);
	free(B.zrx);
	if (B.zd_ready)
		deflateEnd(&B.zd);
	if (B.zi_ready)
		inflateEnd(&B.zi);
	if (B.session != NULL)
		SSL_SESSION_free(B.session);
	SSL_CTX_free(B.ssl_ctx);
	event_free(B.tick);
	event_free(B.sig[0]);
	event_free(B.sig[1]);
	event_base_free(B.base);
	return status;
}
