/*
 * cluster: rooms shared by the gatewayd nodes of one Redis.
 *
 * With [cluster], a shared room exists on every node that has clients in
 * it (and every exact room on every node); one node, the holder of the
 * room's lease, runs its backend.  Everything between them goes through
 * two Redis streams per room, read by one blocking connection per node:
 *
 *   gw:{PATH}:in       the records of every member, on any node, to the
 *                      backend (XADD by the member's node, read by the
 *                      holder), trimmed by the holder to what its
 *                      backend may not have read yet
 *   gw:{PATH}:out      the backend's commands (XADD by the holder, once
 *                      per command; read by every node with members,
 *                      each carrying out the command for its own)
 *   gw:{PATH}:lease    the holder's instance name, with a TTL of lease
 *   gw:{PATH}:members  client id -> its open record, for a new holder
 *   gw:{PATH}:epoch    how many times the room was taken: 1, fresh
 *   gw:node:NODE.BOOT  a live node, with a TTL of lease
 *
 * Streams, not pub/sub: a node that loses its connection to Redis reads
 * on from where it was when it is back, so it misses no command.  A new
 * holder of a room that had a backend before starts the backend resumed,
 * gives it a resumed open for every member (members), then every record
 * of the in stream (what the last holder's backend may not have read,
 * marked redelivered), then the live ones.  The holder trims the in
 * stream as its backend reads (its journal's first record), so what a
 * new holder redelivers is what arrived since.  A holder lets its lease
 * go no later than Redis would (its last confirmed renewal's send time
 * plus the lease), so two backends of one room never run at once.
 *
 * docs/CLUSTER.md states the guarantees; nothing here runs without
 * [cluster].
 */
#include <sys/queue.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>
#include <jansson.h>

#include "gatewayd.h"
#include "record.h"
#include "stats.h"

/* "1712345678901-123": a stream entry's id. */
#define CL_ID_MAX	48
/* How many entries one read takes from each stream. */
#define CL_READ_COUNT	"1024"
/* How long a read blocks: a bound on a lost CLIENT UNBLOCK. */
#define CL_READ_BLOCK	"2000"
#define CL_READ_BLOCK_MS 2000
/* Check a stream's length after this many records into it. */
#define CL_XLEN_EVERY	64
/* The commands of a room's out stream that Redis keeps: a node further
 * behind than this (a long lost connection) has missed commands. */
#define CL_OUT_MAX	"100000"
#define CL_RETRY_MIN_MS	100
/* An UNBLOCK that found no read blocked is sent again after this. */
#define CL_REKICK_MS	2
/* How long a read that found records waits before the next one. */
#ifndef CL_GATHER_MS
#define CL_GATHER_MS	1
#endif
#define CL_RETRY_MAX_MS	5000

struct cluster_room {
	struct room *room;		/* NULL once detached */
	char *path;
	char *k_in, *k_out, *k_lease, *k_members, *k_epoch;
	unsigned refs;			/* attached, and each command in
					 * flight that names it */
	bool holder;			/* holds the lease, runs the backend */
	bool renewing;			/* a renewal is on its way */
	uint64_t asked_ms;		/* when the lease was last asked for
					 * or renewed */
	uint64_t lease_until_ms;	/* holder: the lease is ours until
					 * then at least (Redis counts from
					 * later), unless renewed */
	bool fresh;			/* taken with no backend before it:
					 * nothing to resume or redeliver */
	bool taking;			/* a takeover is under way */
	bool out_known;			/* out_id is where to read from */
	char out_id[CL_ID_MAX];		/* the last command read */
	char in_id[CL_ID_MAX];		/* holder: the last record read */
	char redeliver_to[CL_ID_MAX];	/* holder: records up to it may
					 * have been read by the last one */
	json_t *members;		/* holder: client id -> open record */
	json_t *resumed;		/* holder: ids whose open went
					 * resumed to this backend */
	size_t pending_bytes;		/* records not yet in Redis */
	unsigned xadds;			/* since the last XLEN */
	uint64_t len_est;		/* its in stream's length, at least:
					 * the last XLEN and the records sent
					 * after it */
	uint64_t after_len;		/* records sent after that XLEN */
	bool full;			/* its in stream has stream_max */
	bool len_asked;
	bool gated;			/* holder: not read, its backend full */
	unsigned fed;			/* holder: records fed since the last
					 * trim */
	uint64_t attached_ms;
	LIST_ENTRY(cluster_room) entry;
};

/* A record on its way into a room's in stream, until Redis has it. */
struct cluster_rec {
	TAILQ_ENTRY(cluster_rec) entry;
	struct cluster_room *cr;
	char *line;
	size_t len;
	bool sent;			/* written to a connection since lost,
					 * or to the live one */
	bool is_open;			/* through cl_rejoin_lua: a member once
					 * and its open written once, however
					 * often it is sent */
};

static struct {
	bool on;
	char *host;			/* NULL: unix_path */
	int port;
	char *unix_path;
	char *password;
	char *where;			/* the redis value, for the log */
	uint64_t db;
	uint64_t lease_ms;
	uint64_t ttl_ms;		/* of a lease or node key in Redis: a
					 * tick (lease/5) short of lease, so
					 * that a room moves, and a dead node's
					 * clients are closed, within lease */
	uint64_t stream_max;
	char instance[96];		/* "NODE.BOOT" */
	char suffix[100];		/* "@NODE.BOOT", ends every client id */
	char node_key[128];

	redisAsyncContext *cmd;		/* commands */
	redisAsyncContext *rd;		/* the blocking XREAD */
	bool cmd_up, rd_up, up;
	long long rd_id;		/* rd's CLIENT ID, for CLIENT UNBLOCK */
	bool reading, unblocking;
	uint64_t read_seq;		/* reads issued */
	uint64_t unblock_seq;		/* the read an UNBLOCK was for */
	uint64_t read_since_ms;		/* when the read was issued */
	bool ever_up, said_down, said_setup;
	uint64_t down_since_ms;
	uint64_t up_since_ms;
	bool alive_pending;		/* the node key's renewal is out */
	uint64_t alive_asked_ms;
	uint64_t retry_ms;

	struct event *tick, *retry, *kick, *rekick, *poll;
	LIST_HEAD(, cluster_room) rooms;
	void *by_path;			/* tsearch tree of cluster_room */
	TAILQ_HEAD(cluster_rec_q, cluster_rec) outbox;
	size_t outbox_n;
} cl;

/* A client of this node back in its room after Redis was away: if the
 * holder took it for gone meanwhile (a close record went to the
 * backend), its open goes again, after that close. */
static const char cl_rejoin_lua[] =
    "if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then "
    "redis.call('XADD', KEYS[2], '*', 'r', ARGV[2]) return 1 end return 0";
/* The holder leaves a pattern room that has no client on any node: the
 * lease goes, and the room's keys too unless a client joined meanwhile,
 * so that a room made again later starts afresh. */
static const char cl_end_lua[] =
    "if redis.call('GET', KEYS[2]) == ARGV[1] then "
    "redis.call('DEL', KEYS[2]) end "
    "if redis.call('HLEN', KEYS[1]) > 0 then return 0 end "
    "redis.call('DEL', KEYS[1], KEYS[3], KEYS[4], KEYS[5]) return 1";
/* Lua, run in Redis: renew the lease if it is still ours. */
static const char cl_renew_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";
/* Give the lease up if it is ours. */
static const char cl_release_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('DEL', KEYS[1]) end return 0";
/* The members of nodes that are gone: out of the room, and a close record
 * (1006) for each into its in stream.  A client id ends in "@NODE.BOOT",
 * the node's key's last part. */
static const char cl_reap_lua[] =
    "local gone, live = 0, {} "
    "for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do "
    "  local at = string.find(id, '@', 1, true) "
    "  if at then "
    "    local node = string.sub(id, at + 1) "
    "    if live[node] == nil then "
    "      live[node] = redis.call('EXISTS', ARGV[1] .. node) == 1 end "
    "    if not live[node] then "
    "      redis.call('HDEL', KEYS[1], id) "
    "      redis.call('XADD', KEYS[2], '*', 'r', "
    "        '{\"type\":\"close\",\"client\":\"' .. id .. "
    "        '\",\"code\":1006,\"reason\":\"\"}\\n') "
    "      gone = gone + 1 end end end "
    "return gone";

static void	cl_connect(void);
static void	cl_read(void);
static void	cl_kick(void);
static void	cl_flush(void);
static void	cl_take(struct cluster_room *c);
static void	cl_trim(struct cluster_room *c);
static void	cl_poll_soon(void);
static bool	cl_lease_ours(const struct cluster_room *c, uint64_t now);

bool
cluster_on(void)
{
	return cl.on;
}

const char *
cluster_suffix(void)
{
	return cl.suffix;
}

bool
cluster_applies(const struct cfg_resource *res)
{
	return cl.on && res->cluster && res->opts.mode != CFG_MODE_CLIENT;
}

/* Ids and keys */

static int
cl_id_parse(const char *id, uint64_t *ms, uint64_t *seq)
{
	char *end;

	errno = 0;
	*ms = strtoull(id, &end, 10);
	if (*end != '-' || errno != 0)
		return -1;
	*seq = strtoull(end + 1, &end, 10);
	return *end == '\0' && errno == 0 ? 0 : -1;
}

static int
cl_id_cmp(const char *a, const char *b)
{
	uint64_t am = 0, as = 0, bm = 0, bs = 0;

	cl_id_parse(a, &am, &as);
	cl_id_parse(b, &bm, &bs);
	if (am != bm)
		return am < bm ? -1 : 1;
	return as < bs ? -1 : as > bs;
}

static char *
cl_key(const char *path, const char *what)
{
	char *k;

	return asprintf(&k, "gw:{%s}:%s", path, what) < 0 ? NULL : k;
}

static int
cl_room_cmp(const void *a, const void *b)
{
	return strcmp(((const struct cluster_room *)a)->path,
	    ((const struct cluster_room *)b)->path);
}

/* The attached room whose stream is key ("gw:{PATH}:in"), or NULL. */
static struct cluster_room *
cl_room_by_key(const char *key, size_t len)
{
	struct cluster_room k, **found;
	const char *end;
	char *path;

	if (len < 6 || strncmp(key, "gw:{", 4) != 0)
		return NULL;
	for (end = key + len; end > key + 4 && end[-1] != '}'; end--)
		;
	if (end <= key + 5)
		return NULL;
	if ((path = strndup(key + 4, (size_t)(end - 1 - (key + 4)))) == NULL)
		return NULL;
	k.path = path;
	found = tfind(&k, &cl.by_path, cl_room_cmp);
	free(path);
	return found != NULL ? *found : NULL;
}

static void
cl_room_unref(struct cluster_room *c)
{
	if (--c->refs > 0)
		return;
	json_decref(c->members);
	json_decref(c->resumed);
	free(c->path);
	free(c->k_in);
	free(c->k_out);
	free(c->k_lease);
	free(c->k_members);
	free(c->k_epoch);
	free(c);
}

/* Commands */

struct cl_call {
	redisCallbackFn *fn;
	struct cluster_room *cr;	/* referenced while in flight */
};

static void
cl_call_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct cl_call *call = priv;
	struct cluster_room *c = call->cr;

	/* A reply to a room that is gone, or NULL: the connection went. */
	if (call->fn != NULL && (c == NULL || c->room != NULL))
		call->fn(ac, reply, c);
	if (c != NULL)
		cl_room_unref(c);
	free(call);
}

/* Send a command on ac; fn (may be NULL) gets its reply, or NULL when
 * the connection is lost first, with cr, unless cr has been detached. */
static int
cl_send(redisAsyncContext *ac, redisCallbackFn *fn, struct cluster_room *cr,
    int argc, const char **argv, const size_t *lens)
{
	struct cl_call *call;
	size_t own[16];
	int i;

	if (ac == NULL)
		return -1;
	if (lens == NULL) {
		for (i = 0; i < argc && i < 16; i++)
			own[i] = strlen(argv[i]);
		lens = own;
	}
	if ((call = malloc(sizeof(*call))) == NULL)
		return -1;
	call->fn = fn;
	call->cr = cr;
	if (redisAsyncCommandArgv(ac, cl_call_cb, call, argc, argv,
	    lens) != REDIS_OK) {
		free(call);
		return -1;
	}
	if (cr != NULL)
		cr->refs++;
	return 0;
}

#define CL_ARGC(a)	((int)(sizeof(a) / sizeof((a)[0])))

static bool
cl_reply_ok(const redisReply *r)
{
	return r != NULL && r->type != REDIS_REPLY_ERROR;
}

static void
cl_reply_error(const char *what, const redisReply *r)
{
	static struct log_ratelimit budget;
	unsigned long suppressed;

	if (r != NULL && r->type == REDIS_REPLY_ERROR &&
	    log_ratelimit(&budget, &suppressed))
		log_warn("cluster: %s: redis answered %s%s", what, r->str,
		    suppressed ? " (more suppressed)" : "");
}

/* The connection */

static void
cl_schedule_retry(void)
{
	if (evtimer_pending(cl.retry, NULL) || server.stopping)
		return;
	{
	uint64_t max = cl.lease_ms / 2 < CL_RETRY_MAX_MS ? cl.lease_ms / 2 :
	    CL_RETRY_MAX_MS;

	server_timer_set(cl.retry, cl.retry_ms);
	/* Back within half a lease at most, so that a node that lost Redis
	 * briefly is back before its clients count as gone. */
	cl.retry_ms = cl.retry_ms * 2 > max ? max : cl.retry_ms * 2;
	}
}

static void cl_relinquish(struct cluster_room *c, const char *why);

/* Redis is gone (or never came): shared rooms hold their clients. */
/* Forget both connections and free them: their pending callbacks get
 * NULL replies, and their disconnect callbacks find them forgotten. */
static void
cl_free_links(void)
{
	redisAsyncContext *cmd = cl.cmd, *rd = cl.rd;

	cl.cmd = cl.rd = NULL;
	cl.cmd_up = cl.rd_up = false;
	if (cmd != NULL)
		redisAsyncFree(cmd);
	if (rd != NULL)
		redisAsyncFree(rd);
}

static void
cl_down(const char *why)
{
	struct cluster_room *c;
	bool was_up = cl.up;

	cl.up = false;
	cl.reading = cl.unblocking = false;
	cl.alive_pending = false;
	if (was_up || !cl.said_down) {
		log_warn("cluster: redis at %s unreachable (%s): shared rooms "
		    "hold their clients until it is back", cl.where, why);
		cl.said_down = true;
		cl.down_since_ms = server_now_ms();
	}
	LIST_FOREACH(c, &cl.rooms, entry) {
		if (was_up && (c->holder || c->taking))
			cl_relinquish(c, "redis unreachable");
		/* What waits for Redis is held now: hold_buffer. */
		if (c->room != NULL)
			room_recheck_pause(c->room);
	}
	/* Drop the other connection too, now (whatever it waits for: the
	 * reader always waits for its XREAD), so that both come back
	 * together and new.  hiredis defers a free asked for inside the
	 * context's own callback. */
	cl_free_links();
	cl_schedule_retry();
}

/* Both connections, now, whatever they wait for. */
static void
cl_drop(const char *why)
{
	cl_free_links();
	cl_down(why);
}

static void
cl_disconnect_cb(const redisAsyncContext *ac, int status)
{
	if (ac != cl.cmd && ac != cl.rd)
		return;		/* freed by cluster_free */
	if (ac == cl.cmd) {
		cl.cmd = NULL;
		cl.cmd_up = false;
	} else if (ac == cl.rd) {
		cl.rd = NULL;
		cl.rd_up = false;
	}
	if (!server.stopping)
		cl_down(ac->errstr[0] != '\0' ? ac->errstr : "connection closed");
	else
		server_check_stopped();
}

static void cl_up(void);

static void
cl_rd_id_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	const redisReply *r = reply;

	if (r != NULL && r->type == REDIS_REPLY_INTEGER)
		cl.rd_id = r->integer;
}

static void
cl_connect_cb(const redisAsyncContext *ac, int status)
{
	if (status != REDIS_OK) {
		/* hiredis frees the context after this. */
		if (ac == cl.cmd)
			cl.cmd = NULL;
		else if (ac == cl.rd)
			cl.rd = NULL;
		cl_down(ac->errstr[0] != '\0' ? ac->errstr : "cannot connect");
		return;
	}
	/* Up once Redis has answered the PING after AUTH and SELECT
	 * (cl_ready_cb). */
}

/* AUTH or SELECT refused: said once until Redis is up again, and the
 * connection made again after the backoff. */
static void
cl_setup_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	const redisReply *r = reply;

	if (r == NULL || r->type != REDIS_REPLY_ERROR)
		return;
	if (!cl.said_setup)
		log_warn("cluster: redis at %s refused %s: %s", cl.where,
		    ac == cl.cmd || ac == cl.rd ? "this node's setup" : "it",
		    r->str);
	cl.said_setup = true;
	redisAsyncDisconnect(ac);
}

static void
cl_ready_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	const redisReply *r = reply;

	if (r == NULL || r->type == REDIS_REPLY_ERROR)
		return;		/* cl_setup_cb disconnects it */
	if (ac == cl.cmd)
		cl.cmd_up = true;
	else if (ac == cl.rd)
		cl.rd_up = true;
	if (cl.cmd_up && cl.rd_up && !cl.up)
		cl_up();
}

static redisAsyncContext *
cl_open(void)
{
	redisAsyncContext *ac;
	char db[24];
	const char *argv[2];

	ac = cl.host != NULL ? redisAsyncConnect(cl.host, cl.port) :
	    redisAsyncConnectUnix(cl.unix_path);
	if (ac == NULL)
		return NULL;
	if (ac->err) {
		log_warn("cluster: redis: %s", ac->errstr);
		redisAsyncFree(ac);
		return NULL;
	}
	if (redisLibeventAttach(ac, server.base) != REDIS_OK) {
		redisAsyncFree(ac);
		return NULL;
	}
	redisAsyncSetConnectCallback(ac, cl_connect_cb);
	redisAsyncSetDisconnectCallback(ac, cl_disconnect_cb);
	/* Queued before anything else: Redis reads them first. */
	if (cl.password != NULL) {
		argv[0] = "AUTH";
		argv[1] = cl.password;
		cl_send(ac, cl_setup_cb, NULL, 2, argv, NULL);
	}
	if (cl.db != 0) {
		snprintf(db, sizeof(db), "%" PRIu64, cl.db);
		argv[0] = "SELECT";
		argv[1] = db;
		cl_send(ac, cl_setup_cb, NULL, 2, argv, NULL);
	}
	argv[0] = "PING";
	cl_send(ac, cl_ready_cb, NULL, 1, argv, NULL);
	return ac;
}

static void
cl_connect(void)
{
	const char *argv[] = { "CLIENT", "ID" };

	if (cl.cmd == NULL)
		cl.cmd = cl_open();
	if (cl.rd == NULL && (cl.rd = cl_open()) != NULL)
		cl_send(cl.rd, cl_rd_id_cb, NULL, CL_ARGC(argv), argv, NULL);
	if (cl.cmd == NULL || cl.rd == NULL)
		cl_down("cannot connect");
}

static void
cl_retry_cb(evutil_socket_t fd, short events, void *arg)
{
	cl_connect();
}

static void cl_out_position(struct cluster_room *c);
static void cl_hset_members(struct cluster_room *c);
static void cl_try_lease(struct cluster_room *c);

static void
cl_alive_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	const redisReply *r = reply;
	struct cluster_room *c;

	if (r == NULL)
		return;
	cl.alive_pending = false;
	cl_reply_error("renewing this node's key", r);
	/* The key had expired: the holders may have taken this node's
	 * clients for gone.  Those they did come back (cl_rejoin_lua). */
	if (r->type == REDIS_REPLY_NIL && cl.up)
		LIST_FOREACH(c, &cl.rooms, entry)
			cl_hset_members(c);
}

/* This node's key, renewed; one renewal on its way at a time, and one
 * unanswered for a lease means a stalled link (cl_tick_cb). */
static void
cl_node_alive(void)
{
	char ms[24];
	const char *argv[] = { "SET", cl.node_key, "1", "PX", ms, "GET" };

	if (cl.alive_pending)
		return;
	snprintf(ms, sizeof(ms), "%" PRIu64, cl.ttl_ms);
	if (cl_send(cl.cmd, cl_alive_cb, NULL, CL_ARGC(argv), argv,
	    NULL) == 0) {
		cl.alive_pending = true;
		cl.alive_asked_ms = server_now_ms();
	}
}

static void
cl_up(void)
{
	struct cluster_room *c;

	cl.up = true;
	cl.retry_ms = CL_RETRY_MIN_MS;
	if (cl.said_down || !cl.ever_up)
		log_info("cluster: connected to redis at %s as node %s",
		    cl.where, cl.instance);
	cl.ever_up = true;
	cl.said_down = false;
	cl.said_setup = false;
	cl.down_since_ms = 0;
	cl.up_since_ms = server_now_ms();
	cl_node_alive();
	LIST_FOREACH(c, &cl.rooms, entry) {
		if (!c->out_known)
			cl_out_position(c);
		cl_hset_members(c);
	}
	/* What waited, in order, before anything new. */
	cl_flush();
	LIST_FOREACH(c, &cl.rooms, entry)
		if (c->room != NULL)
			room_recheck_pause(c->room);
	LIST_FOREACH(c, &cl.rooms, entry)
		cl_try_lease(c);
	cl_kick();
}

/* The outbox: records into in streams */

static void cl_len_check(struct cluster_room *c);

static void
cl_xadd_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct cluster_rec *rec = TAILQ_FIRST(&cl.outbox);
	struct cluster_room *c;

	if (reply == NULL || rec == NULL)
		return;		/* lost: sent again once Redis is back */
	cl_reply_error("a record into a room's stream", reply);
	TAILQ_REMOVE(&cl.outbox, rec, entry);
	cl.outbox_n--;
	c = rec->cr;
	if (c != NULL) {
		c->pending_bytes -= rec->len;
		if (c->room != NULL && c->room->paused)
			room_recheck_pause(c->room);
		cl_room_unref(c);
	}
	free(rec->line);
	free(rec);
	if (cl.outbox_n == 0 && server.stopping)
		server_check_stopped();
}

static void
cl_xadd(struct cluster_rec *rec)
{
	const char *argv[] = { "XADD", rec->cr->k_in, "*", "r", rec->line };
	size_t lens[] = { 4, strlen(rec->cr->k_in), 1, 1, rec->len };
	const char *open[] = { "EVAL", cl_rejoin_lua, "2", rec->cr->k_members,
	    rec->cr->k_in, "", rec->line };
	size_t open_lens[] = { 4, sizeof(cl_rejoin_lua) - 1, 1,
	    strlen(rec->cr->k_members), strlen(rec->cr->k_in), 0, rec->len };
	struct cluster_room *c = rec->cr;
	char *marked;
	size_t len;
	int ok;

	if (rec->is_open) {
		/* A member and its open, both or neither: sent again, or
		 * after the node's rejoin (cl_hset_members), nothing. */
		if ((open[5] = record_client(rec->line, rec->len,
		    &open_lens[5])) == NULL)
			open[5] = "";
		ok = redisAsyncCommandArgv(cl.cmd, cl_xadd_cb, NULL,
		    CL_ARGC(open), open, open_lens);
	} else {
		if (rec->sent && (marked = record_add_field(rec->line,
		    rec->len, "\"redelivered\":true", &len)) != NULL) {
			/* Perhaps in the stream already: say so. */
			c->pending_bytes += len - rec->len;
			free(rec->line);
			rec->line = marked;
			rec->len = len;
			argv[4] = marked;
			lens[4] = len;
		}
		ok = redisAsyncCommandArgv(cl.cmd, cl_xadd_cb, NULL,
		    CL_ARGC(argv), argv, lens);
	}
	/* Not sent (the connection is going): sent with the rest once it
	 * is back, in order, so that replies still match records. */
	if (ok != REDIS_OK)
		return;
	rec->sent = true;
	c->after_len++;
	/* Paused at once, on the estimate; the XLEN that follows says
	 * whether the holder had taken some meanwhile. */
	if (++c->len_est >= cl.stream_max && !c->full && c->room != NULL) {
		c->full = true;
		room_recheck_pause(c->room);
		cl_poll_soon();
	}
	if (++c->xadds >= CL_XLEN_EVERY || c->full) {
		c->xadds = 0;
		cl_len_check(c);
	}
}

static void
cl_flush(void)
{
	struct cluster_rec *rec, *next;

	/* Those of rooms gone meanwhile too: their close records. */
	for (rec = TAILQ_FIRST(&cl.outbox); rec != NULL; rec = next) {
		next = TAILQ_NEXT(rec, entry);
		cl_xadd(rec);
		if (!rec->sent)
			break;
	}
}

static void
cl_len_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct cluster_room *c = arg;
	const redisReply *r = reply;
	bool full;

	c->len_asked = false;
	if (r == NULL || r->type != REDIS_REPLY_INTEGER)
		return;
	c->len_est = (uint64_t)r->integer + c->after_len;
	full = c->len_est >= (c->full ? cl.stream_max / 2 : cl.stream_max);
	if (full != c->full) {
		c->full = full;
		log_info("room %s: %s its clients: %lld records wait in its "
		    "stream", c->path, full ? "pausing" : "reading",
		    r->integer);
		room_recheck_pause(c->room);
	}
	if (c->full)
		cl_poll_soon();
}

static void
cl_len_check(struct cluster_room *c)
{
	const char *argv[] = { "XLEN", c->k_in };

	if (c->len_asked || !cl.up)
		return;
	if (cl_send(cl.cmd, cl_len_cb, c, CL_ARGC(argv), argv, NULL) == 0) {
		c->len_asked = true;
		c->after_len = 0;
	}
}

/* How soon a holder asks its backend's socket again what it has read,
 * while records are on their way: the room's stream is trimmed by that,
 * and the nodes pause their clients on the stream's length. */
#define CL_POLL_MS	20

static void
cl_poll_cb(evutil_socket_t fd, short events, void *arg)
{
	const struct journal_entry *head;
	struct cluster_room *c;
	bool again = false;

	LIST_FOREACH(c, &cl.rooms, entry) {
		if (c->full) {
			cl_len_check(c);
			again = true;
		}
		if (!c->holder || c->room == NULL || c->room->journal.n == 0)
			continue;
		head = c->room->journal.head;
		room_backend_trim(c->room);
		if (c->room->journal.head != head && cl.up)
			cl_trim(c);
		again |= c->room->journal.n > 0;
	}
	if (again)
		server_timer_set(cl.poll, CL_POLL_MS);
}

static void
cl_poll_soon(void)
{
	if (!evtimer_pending(cl.poll, NULL))
		server_timer_set(cl.poll, CL_POLL_MS);
}

/* Members */

static void
cl_rejoin_member(struct cluster_room *c, struct client *cli)
{
	const char *argv[] = { "EVAL", cl_rejoin_lua, "2", c->k_members,
	    c->k_in, cli->name, cli->open_line };
	size_t lens[] = { 4, sizeof(cl_rejoin_lua) - 1, 1,
	    strlen(c->k_members), strlen(c->k_in), strlen(cli->name),
	    cli->open_len };

	if (cli->open_line != NULL)
		cl_send(cl.cmd, NULL, NULL, CL_ARGC(argv), argv, lens);
}

/* Every local client back into the room's members, Redis back: what it
 * had may be lost (a restart without persistence), or the holder may
 * have taken this node for gone (cl_rejoin_lua). */
static void
cl_hset_members(struct cluster_room *c)
{
	struct client *cli;

	if (c->room == NULL)
		return;
	TAILQ_FOREACH(cli, &c->room->members, room_entry)
		cl_rejoin_member(c, cli);
	TAILQ_FOREACH(cli, &c->room->pending, room_entry)
		cl_rejoin_member(c, cli);
}

static void
cl_hdel_member(struct cluster_room *c, const char *name, size_t len)
{
	const char *argv[] = { "HDEL", c->k_members, name };
	size_t lens[] = { 4, strlen(c->k_members), len };

	cl_send(cl.cmd, NULL, NULL, CL_ARGC(argv), argv, lens);
}

/* A record of room r from its clients here: into its in stream (taken).
 * Its open also makes the client a member in Redis. */
void
cluster_record(struct room *r, enum journal_kind kind, char *line,
    size_t len)
{
	struct cluster_room *c = r->cl;
	struct cluster_rec *rec;
	const char *name;
	size_t name_len;

	/* An open makes its client a member as it goes into the stream
	 * (cl_xadd); a close ends it. */
	if (cl.up && kind == JOURNAL_CLOSE &&
	    (name = record_client(line, len, &name_len)) != NULL)
		cl_hdel_member(c, name, name_len);
	if ((rec = calloc(1, sizeof(*rec))) == NULL) {
		free(line);
		return;
	}
	rec->cr = c;
	rec->line = line;
	rec->len = len;
	rec->is_open = kind == JOURNAL_OPEN;
	c->refs++;
	c->pending_bytes += len;
	TAILQ_INSERT_TAIL(&cl.outbox, rec, entry);
	cl.outbox_n++;
	if (cl.up && (TAILQ_PREV(rec, cluster_rec_q, entry) == NULL ||
	    TAILQ_PREV(rec, cluster_rec_q, entry)->sent))
		cl_xadd(rec);
	else
		stats.records_held += kind == JOURNAL_MESSAGE;
}

size_t
cluster_room_backlog(const struct room *r, size_t *held)
{
	const struct cluster_room *c = r->cl;

	/* While Redis is away the records wait for it as a backend's do
	 * while it is down: held, up to hold_buffer.  A full stream pauses
	 * the room as a full backend_buffer does. */
	*held = cl.up ? 0 : c->pending_bytes;
	if (c->full)
		return SIZE_MAX / 2;
	return cl.up ? c->pending_bytes : 0;
}

/* A stop waits for this: the records of the clients that went, then our
 * goodbye (the holders close our clients' records at once), then the
 * connection's end. */
bool
cluster_flushed(void)
{
	static bool goodbye;
	const char *argv[] = { "DEL", cl.node_key };

	if (!cl.on || !cl.up || cl.cmd == NULL)
		return true;
	if (cl.outbox_n > 0 || goodbye)
		return false;
	goodbye = true;
	cl_send(cl.cmd, NULL, NULL, CL_ARGC(argv), argv, NULL);
	if (cl.rd != NULL)
		redisAsyncDisconnect(cl.rd);
	redisAsyncDisconnect(cl.cmd);
	return false;
}

/* Commands out of a holder's backend */

void
cluster_command(struct room *r, const char *line, size_t len)
{
	static struct log_ratelimit budget;
	unsigned long suppressed;

	const char *argv[] = { "XADD", r->cl->k_out, "MAXLEN", "~", CL_OUT_MAX,
	    "*", "c", line };
	size_t lens[] = { 4, strlen(r->cl->k_out), 6, 1, strlen(CL_OUT_MAX),
	    1, 1, len };

	if (!cl.up) {
		/* The holder gives its backend up when Redis goes: only a
		 * tap's command can come now. */
		stats.commands_dropped++;
		return;
	}
	/* A backend whose lease may have passed (its node's loop stalled
	 * past it) is silenced at once, not at the next tick. */
	if (r->cl->holder && !cl_lease_ours(r->cl, server_now_ms())) {
		stats.commands_dropped++;
		if (log_ratelimit(&budget, &suppressed))
			log_warn("room %s: a command of a backend whose lease may "
			    "have passed dropped%s", r->path,
			    suppressed ? " (more suppressed)" : "");
		return;
	}
	if (cl_send(cl.cmd, NULL, NULL, CL_ARGC(argv), argv, lens) != 0)
		stats.commands_dropped++;
}

/* Reading the streams */

static void
cl_unblock_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	const redisReply *r = reply;

	/* Unblocked: the read returns, empty, and is issued again.  Not: the
	 * read had not reached Redis yet (it goes on another connection),
	 * or had just returned; if it is still the same read, again. */
	if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 0 &&
	    cl.reading && cl.read_seq == cl.unblock_seq) {
		cl.unblocking = false;
		/* Soon, not at once: a read on its way takes a moment. */
		server_timer_set(cl.rekick, CL_REKICK_MS);
	}
}

static void
cl_kick_cb(evutil_socket_t fd, short events, void *arg)
{
	char id[24];
	const char *argv[] = { "CLIENT", "UNBLOCK", id };

	if (!cl.up)
		return;
	if (!cl.reading) {
		cl_read();
		return;
	}
	if (cl.unblocking || cl.rd_id == 0)
		return;
	snprintf(id, sizeof(id), "%lld", cl.rd_id);
	if (cl_send(cl.cmd, cl_unblock_cb, NULL, CL_ARGC(argv), argv,
	    NULL) == 0) {
		cl.unblocking = true;
		cl.unblock_seq = cl.read_seq;
	}
}

/* The streams to read changed: read them anew, once this callback is
 * done. */
static void
cl_kick(void)
{
	if (cl.kick != NULL)
		event_active(cl.kick, EV_TIMEOUT, 0);
}

static bool
cl_feeding(struct cluster_room *c)
{
	if (!c->holder || c->room == NULL)
		return false;
	/* A backend with backend_buffer queued is fed no more until it
	 * drains (cluster_room_drained): the records wait in Redis. */
	if (room_backend_busy(c->room) != c->gated) {
		c->gated = !c->gated;
		log_debug("room %s: %s its stream", c->path, c->gated ?
		    "backend full: not reading" : "reading");
	}
	return !c->gated;
}

/* Trim at least this often under traffic, not only at the tick: the
 * nodes pause their clients on the stream's length. */
#define CL_TRIM_EVERY	256

void
cluster_room_drained(struct room *r)
{
	struct cluster_room *c = r->cl;

	if (c->holder && c->fed >= CL_TRIM_EVERY && cl.up)
		cl_trim(c);

	if (c->gated && !room_backend_busy(r))
		cl_kick();
}

static void cl_read_cb(redisAsyncContext *ac, void *reply, void *arg);

static void
cl_read(void)
{
	struct cluster_room *c;
	const char **argv;
	size_t *lens, n = 0, i, k;
	int argc;

	if (!cl.up || cl.reading)
		return;
	LIST_FOREACH(c, &cl.rooms, entry)
		n += c->out_known + cl_feeding(c);
	if (n == 0)
		return;
	argc = 6 + 2 * (int)n;
	argv = calloc((size_t)argc, sizeof(*argv));
	lens = calloc((size_t)argc, sizeof(*lens));
	if (argv == NULL || lens == NULL)
		goto out;
	argv[0] = "XREAD";
	argv[1] = "COUNT";
	argv[2] = CL_READ_COUNT;
	argv[3] = "BLOCK";
	argv[4] = CL_READ_BLOCK;
	argv[5] = "STREAMS";
	k = 6;
	LIST_FOREACH(c, &cl.rooms, entry) {
		if (c->out_known) {
			argv[k] = c->k_out;
			argv[k + n] = c->out_id;
			k++;
		}
		if (cl_feeding(c)) {
			argv[k] = c->k_in;
			argv[k + n] = c->in_id;
			k++;
		}
	}
	for (i = 0; i < (size_t)argc; i++)
		lens[i] = strlen(argv[i]);
	if (redisAsyncCommandArgv(cl.rd, cl_read_cb, NULL, argc, argv,
	    lens) == REDIS_OK) {
		cl.reading = true;
		cl.read_seq++;
		cl.read_since_ms = server_now_ms();
	}
out:
	free(argv);
	free(lens);
}

/* A field of an entry ([id, [f1, v1, ...]]) by name, or NULL. */
static const redisReply *
cl_entry_field(const redisReply *entry, const char *field)
{
	const redisReply *kv;
	size_t i;

	if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
	    entry->element[0]->type != REDIS_REPLY_STRING ||
	    (kv = entry->element[1])->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (i = 0; i + 1 < kv->elements; i += 2)
		if (kv->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(kv->element[i]->str, field) == 0 &&
		    kv->element[i + 1]->type == REDIS_REPLY_STRING)
			return kv->element[i + 1];
	return NULL;
}

/* A command of the room's backend: carried out for the clients here. */
/* An entry of a room's stream that no node wrote: counted, said at a
 * bounded rate, and skipped. */
static void
cl_bad_entry(const struct cluster_room *c, const char *stream,
    const char *why)
{
	static struct log_ratelimit budget;
	unsigned long suppressed;

	stats.records_malformed++;
	if (log_ratelimit(&budget, &suppressed))
		log_warn("room %s: an entry of its %s stream skipped: %s%s",
		    c->path, stream, why, suppressed ? " (more suppressed)" : "");
}

static void
cl_command_in(struct cluster_room *c, const redisReply *v)
{
	struct record_cmd cmd;
	char err[160];

	if (record_decode(v->str, v->len, &cmd, err, sizeof(err)) != 0)
		cl_bad_entry(c, "out", err);
	else if (cmd.command == RECORD_ACK)
		/* The holder keeps its backend's acks: one from the stream
		 * would drop records its backend never acknowledged. */
		cl_bad_entry(c, "out", "an ack");
	else
		room_command(c->room, &cmd);
	record_cmd_free(&cmd);
}

static enum journal_kind
cl_kind(const char *line, size_t len)
{
	if (len > 15 && strncmp(line, "{\"type\":\"open\"", 14) == 0)
		return JOURNAL_OPEN;
	if (len > 16 && strncmp(line, "{\"type\":\"close\"", 15) == 0)
		return JOURNAL_CLOSE;
	return JOURNAL_MESSAGE;
}

/* A record for the backend this node runs. */
static void
cl_feed(struct cluster_room *c, const char *id, const redisReply *v)
{
	enum journal_kind kind = cl_kind(v->str, v->len);
	bool old = cl_id_cmp(id, c->redeliver_to) <= 0;
	struct journal_entry *e;
	const char *name;
	size_t name_len, len;
	char *key = NULL, *line;
	uint64_t ms = 0, seq = 0;

	/* One whole line, as every node writes it: another would run into
	 * the next record at the backend. */
	if (v->len == 0 || v->str[v->len - 1] != '\n' ||
	    memchr(v->str, '\n', v->len - 1) != NULL) {
		cl_bad_entry(c, "in", "not one line");
		return;
	}
	/* Opens and closes change who the members are; a message does not,
	 * and costs no lookup. */
	if (kind != JOURNAL_MESSAGE &&
	    (name = record_client(v->str, v->len, &name_len)) != NULL &&
	    (key = strndup(name, name_len)) == NULL)
		return;
	if (kind == JOURNAL_OPEN && key != NULL) {
		/* Its open went resumed already. */
		if (old && json_object_get(c->resumed, key) != NULL) {
			free(key);
			return;
		}
		json_object_set_new(c->members, key, json_stringn(v->str,
		    v->len));
	} else if (kind == JOURNAL_CLOSE && key != NULL) {
		json_object_del(c->members, key);
		json_object_del(c->resumed, key);
		cl_hdel_member(c, name, name_len);
	}
	free(key);
	if (old)
		line = record_add_field(v->str, v->len, "\"redelivered\":true",
		    &len);
	else
		line = strndup(v->str, len = v->len);
	if (line == NULL)
		return;
	if (old)
		stats.records_redelivered++;
	c->fed++;
	cl_poll_soon();
	e = room_feed(c->room, kind, line, len);
	if (e != NULL) {
		cl_id_parse(id, &ms, &seq);
		e->stream_ms = ms;
		e->stream_seq = seq;
		e->marked = old;
	}
	if (kind == JOURNAL_CLOSE && json_object_size(c->members) == 0)
		room_consider_linger(c->room);
}

static void
cl_read_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	const redisReply *r = reply, *s, *entries, *id, *v;
	struct cluster_room *c;
	size_t i, j, n_entries = 0;
	bool is_out;

	cl.reading = false;
	cl.unblocking = false;
	if (r == NULL)
		return;		/* the connection went: cl_down */
	if (r->type == REDIS_REPLY_ERROR)
		cl_reply_error("reading the rooms' streams", r);
	/* The commands of a read are written to each client at once. */
	client_batch_begin();
	for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		s = r->element[i];
		if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 ||
		    s->element[0]->type != REDIS_REPLY_STRING)
			continue;
		c = cl_room_by_key(s->element[0]->str, s->element[0]->len);
		if (c == NULL)
			continue;
		is_out = s->element[0]->len == strlen(c->k_out) &&
		    strcmp(s->element[0]->str, c->k_out) == 0;
		entries = s->element[1];
		for (j = 0; entries->type == REDIS_REPLY_ARRAY &&
		    j < entries->elements && c->room != NULL; j++) {
			if ((v = cl_entry_field(entries->element[j],
			    is_out ? "c" : "r")) == NULL)
				continue;
			id = entries->element[j]->element[0];
			if (id->len >= CL_ID_MAX)
				continue;
			n_entries++;
			if (is_out) {
				memcpy(c->out_id, id->str, id->len + 1);
				cl_command_in(c, v);
			} else if (c->holder) {
				memcpy(c->in_id, id->str, id->len + 1);
				cl_feed(c, id->str, v);
			}
		}
	}
	client_batch_end();
	/* Under traffic, let the next read gather for a moment: a node
	 * then writes each client once for many commands (CL_GATHER_MS). */
	if (n_entries > 0 && CL_GATHER_MS > 0)
		server_timer_set(cl.rekick, CL_GATHER_MS);
	else
		cl_read();
}

/* Where a room's commands are read from: the end of its out stream now,
 * before any record of this node's can reach the backend (the XREVRANGE
 * goes before them on the same connection). */
/* The id of an XREVRANGE ... COUNT 1's entry into id, or "0-0" for an
 * empty stream. */
static void
cl_last_id(const redisReply *r, char id[CL_ID_MAX])
{
	const redisReply *e;

	if (r->elements > 0 && r->element[0]->type == REDIS_REPLY_ARRAY &&
	    r->element[0]->elements == 2 &&
	    (e = r->element[0]->element[0])->type == REDIS_REPLY_STRING &&
	    e->len < CL_ID_MAX)
		memcpy(id, e->str, e->len + 1);
	else
		strcpy(id, "0-0");
}

static void
cl_out_last_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct cluster_room *c = arg;
	const redisReply *r = reply;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		return;
	cl_last_id(r, c->out_id);
	c->out_known = true;
	cl_kick();
}

static void
cl_out_position(struct cluster_room *c)
{
	const char *argv[] = { "XREVRANGE", c->k_out, "+", "-", "COUNT", "1" };

	cl_send(cl.cmd, cl_out_last_cb, c, CL_ARGC(argv), argv, NULL);
}

/* The lease */

static void
cl_relinquish(struct cluster_room *c, const char *why)
{
	if (c->holder)
		log_warn("room %s: giving its backend up: %s", c->path, why);
	c->holder = false;
	c->taking = false;
	c->renewing = false;
	json_object_clear(c->members);
	json_object_clear(c->resumed);
	if (c->room != NULL)
		room_backend_release(c->room);
	cl_kick();
}

static void
cl_last_in_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct cluster_room *c = arg;
	const redisReply *r = reply;

	if (!c->taking || !cl_reply_ok(r) || r->type != REDIS_REPLY_ARRAY)
		return;
	/* A fresh room's records were read by no backend before. */
	if (c->fresh)
		strcpy(c->redeliver_to, "0-0");
	else
		cl_last_id(r, c->redeliver_to);
	strcpy(c->in_id, "0-0");
	c->taking = false;
	c->holder = true;
	c->lease_until_ms = c->asked_ms + cl.ttl_ms;
	log_info("room %s: this node runs its backend now (%zu members, "
	    "records up to %s may be redelivered)", c->path,
	    json_object_size(c->members), c->redeliver_to);
	room_cluster_start(c->room);
	cl_kick();
}

static void
cl_members_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct cluster_room *c = arg;
	const redisReply *r = reply, *k, *v;
	size_t i;
	char *key;

	if (!c->taking || !cl_reply_ok(r) || r->type != REDIS_REPLY_ARRAY)
		return;
	json_object_clear(c->members);
	json_object_clear(c->resumed);
	if (c->fresh)
		return;	/* their opens come from the stream */
	for (i = 0; i + 1 < r->elements; i += 2) {
		k = r->element[i];
		v = r->element[i + 1];
		if (k->type != REDIS_REPLY_STRING ||
		    v->type != REDIS_REPLY_STRING ||
		    (key = strndup(k->str, k->len)) == NULL)
			continue;
		json_object_set_new(c->members, key, json_stringn(v->str,
		    v->len));
		free(key);
	}
}

static void
cl_epoch_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct cluster_room *c = arg;
	const redisReply *r = reply;

	/* The room's first backend: its members' opens are in the stream,
	 * none read by anyone. */
	if (c->taking && r != NULL && r->type == REDIS_REPLY_INTEGER)
		c->fresh = r->integer == 1;
}

static void
cl_take(struct cluster_room *c)
{
	const char *epoch[] = { "INCR", c->k_epoch };
	const char *members[] = { "HGETALL", c->k_members };
	const char *last[] = { "XREVRANGE", c->k_in, "+", "-", "COUNT", "1" };

	c->taking = true;
	c->fresh = false;
	cl_send(cl.cmd, cl_epoch_cb, c, CL_ARGC(epoch), epoch, NULL);
	cl_send(cl.cmd, cl_members_cb, c, CL_ARGC(members), members, NULL);
	cl_send(cl.cmd, cl_last_in_cb, c, CL_ARGC(last), last, NULL);
}

static void
cl_lease_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct cluster_room *c = arg;
	const redisReply *r = reply;

	c->taking = false;
	if (r == NULL || !cl.up || c->holder)
		return;
	cl_reply_error("taking a room's lease", r);
	if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0)
		cl_take(c);
}

static void
cl_try_lease(struct cluster_room *c)
{
	char ms[24];
	const char *argv[] = { "SET", c->k_lease, cl.instance, "NX", "PX", ms };

	if (!cl.up || c->holder || c->taking || c->room == NULL)
		return;
	snprintf(ms, sizeof(ms), "%" PRIu64, cl.ttl_ms);
	if (cl_send(cl.cmd, cl_lease_cb, c, CL_ARGC(argv), argv, NULL) == 0) {
		c->taking = true;
		c->asked_ms = server_now_ms();
	}
}

static void
cl_renew_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct cluster_room *c = arg;
	const redisReply *r = reply;

	c->renewing = false;
	if (r == NULL || !c->holder)
		return;
	cl_reply_error("renewing a room's lease", r);
	if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
		cl_relinquish(c, "its lease passed to another node");
	else if (r->type == REDIS_REPLY_INTEGER)
		c->lease_until_ms = c->asked_ms + cl.ttl_ms;
}

static void
cl_reap_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct cluster_room *c = arg;
	const redisReply *r = reply;

	cl_reply_error("closing the clients of nodes that are gone", r);
	if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer > 0)
		log_info("room %s: %lld clients of nodes that are gone are "
		    "closed (1006)", c->path, r->integer);
}

/* Drop what the holder's backend has certainly read from the room's
 * stream: everything before its journal's first record, or with an empty
 * journal everything fed.  What stays is what a new holder redelivers,
 * and what counts against stream_max. */
static void
cl_trim(struct cluster_room *c)
{
	char minid[CL_ID_MAX];
	const char *trim[] = { "XTRIM", c->k_in, "MINID", minid };
	const struct journal_entry *head = c->room->journal.head;
	uint64_t m = 0, s = 0;

	c->fed = 0;
	if (head != NULL && head->stream_ms != 0)
		snprintf(minid, sizeof(minid), "%" PRIu64 "-%" PRIu64,
		    head->stream_ms, head->stream_seq);
	else if (head == NULL && cl_id_parse(c->in_id, &m, &s) == 0 && m != 0)
		snprintf(minid, sizeof(minid), "%" PRIu64 "-%" PRIu64, m,
		    s + 1);
	else
		return;
	cl_send(cl.cmd, NULL, NULL, CL_ARGC(trim), trim, NULL);
}

/* Whether the holder's lease is still its own at now: a tenth of a lease
 * short of when Redis may let it expire, for the coarse clock and the
 * tick's lateness. */
static bool
cl_lease_ours(const struct cluster_room *c, uint64_t now)
{
	return now + cl.lease_ms / 10 < c->lease_until_ms;
}

/* The holder's round: renew, trim what its backend has read, close the
 * clients of dead nodes. */
static void
cl_hold_tick(struct cluster_room *c)
{
	char ms[24];
	const char *renew[] = { "EVAL", cl_renew_lua, "1", c->k_lease,
	    cl.instance, ms };
	const char *reap[] = { "EVAL", cl_reap_lua, "2", c->k_members, c->k_in,
	    "gw:node:" };

	snprintf(ms, sizeof(ms), "%" PRIu64, cl.ttl_ms);
	if (!c->renewing && cl_send(cl.cmd, cl_renew_cb, c, CL_ARGC(renew),
	    renew, NULL) == 0) {
		c->renewing = true;
		c->asked_ms = server_now_ms();
	}
	/* Nodes back from a Redis outage get a lease to say so first. */
	if (server_now_ms() - cl.up_since_ms >= cl.lease_ms)
		cl_send(cl.cmd, cl_reap_cb, c, CL_ARGC(reap), reap, NULL);
	cl_trim(c);
}

static void
cl_tick_cb(evutil_socket_t fd, short events, void *arg)
{
	struct cluster_room *c, *next;
	uint64_t now = server_now_ms();
	bool stalled = false;

	server_timer_set(cl.tick, cl.lease_ms / 5);
	if (!cl.up) {
		/* Rooms hold their clients up to hold_timeout. */
		for (c = LIST_FIRST(&cl.rooms); c != NULL; c = next) {
			uint64_t since;

			next = LIST_NEXT(c, entry);
			since = c->attached_ms > cl.down_since_ms ?
			    c->attached_ms : cl.down_since_ms;
			if (c->room != NULL && since != 0 &&
			    now - since >= c->room->res->opts.hold_timeout_ms &&
			    c->room->n_members + c->room->n_pending > 0) {
				c->attached_ms = now;
				room_cluster_outage(c->room);
			}
		}
		return;
	}
	/* A holder whose lease may have passed (its renewals unanswered: a
	 * stalled link) gives its backend up before another node can take
	 * the room, and the link is dropped and made again. */
	LIST_FOREACH(c, &cl.rooms, entry) {
		if (c->holder && !cl_lease_ours(c, now)) {
			cl_relinquish(c, "its lease was not renewed in time");
			stalled = true;
		}
	}
	/* A node whose renewals go unanswered for a lease is taken for
	 * gone by the others: made again, the link finds out whether its
	 * clients were (cl_rejoin_lua). */
	if (cl.alive_pending && now - cl.alive_asked_ms >= cl.lease_ms)
		stalled = true;
	/* So does a read that outlasts its BLOCK by a lease. */
	if (cl.reading && now - cl.read_since_ms >= CL_READ_BLOCK_MS +
	    cl.lease_ms)
		stalled = true;
	if (stalled) {
		cl_drop("redis does not answer");
		return;
	}
	cl_node_alive();
	LIST_FOREACH(c, &cl.rooms, entry) {
		if (c->holder)
			cl_hold_tick(c);
		else
			cl_try_lease(c);
	}
}

/* Rooms */

int
cluster_room_attach(struct room *r)
{
	struct cluster_room *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return -1;
	c->refs = 1;
	c->room = r;
	c->attached_ms = server_now_ms();
	if ((c->path = strdup(r->path)) == NULL ||
	    (c->k_in = cl_key(r->path, "in")) == NULL ||
	    (c->k_out = cl_key(r->path, "out")) == NULL ||
	    (c->k_lease = cl_key(r->path, "lease")) == NULL ||
	    (c->k_members = cl_key(r->path, "members")) == NULL ||
	    (c->k_epoch = cl_key(r->path, "epoch")) == NULL ||
	    (c->members = json_object()) == NULL ||
	    (c->resumed = json_object()) == NULL ||
	    tsearch(c, &cl.by_path, cl_room_cmp) == NULL) {
		cl_room_unref(c);
		return -1;
	}
	strcpy(c->redeliver_to, "0-0");
	strcpy(c->in_id, "0-0");
	LIST_INSERT_HEAD(&cl.rooms, c, entry);
	r->cl = c;
	if (cl.up) {
		cl_out_position(c);
		cl_try_lease(c);
	}
	return 0;
}

void
cluster_room_detach(struct room *r)
{
	struct cluster_room *c = r->cl;
	const char *argv[] = { "EVAL", cl_release_lua, "1", c->k_lease,
	    cl.instance };
	const char *end[] = { "EVAL", cl_end_lua, "5", c->k_members,
	    c->k_lease, c->k_in, c->k_out, c->k_epoch, cl.instance };

	/* Another node may take the room at once; a pattern room that
	 * ended everywhere leaves nothing behind. */
	if (c->holder && cl.up && r->res->is_prefix &&
	    json_object_size(c->members) == 0 && !server.stopping)
		cl_send(cl.cmd, NULL, NULL, CL_ARGC(end), end, NULL);
	else if (c->holder && cl.up)
		cl_send(cl.cmd, NULL, NULL, CL_ARGC(argv), argv, NULL);
	tdelete(c, &cl.by_path, cl_room_cmp);
	LIST_REMOVE(c, entry);
	c->room = NULL;
	c->holder = false;
	r->cl = NULL;
	cl_room_unref(c);
	cl_kick();
}

void
cluster_gauges(bool *up, size_t *held, size_t *waiting)
{
	const struct cluster_room *c;

	*up = cl.up;
	*held = 0;
	LIST_FOREACH(c, &cl.rooms, entry)
		*held += c->holder;
	*waiting = cl.outbox_n;
}

bool
cluster_name_remote(const char *name)
{
	size_t n = strlen(name), k = strlen(cl.suffix);

	return cl.on && (n < k || strcmp(name + n - k, cl.suffix) != 0);
}

bool
cluster_room_holds(const struct room *r)
{
	return r->cl->holder;
}

bool
cluster_room_busy(const struct room *r)
{
	return r->cl->holder && json_object_size(r->cl->members) > 0;
}

bool
cluster_room_resuming(const struct room *r)
{
	return json_object_size(r->cl->members) > 0 ||
	    strcmp(r->cl->redeliver_to, "0-0") != 0;
}

size_t
cluster_room_resume(struct room *r, struct backend *b)
{
	struct cluster_room *c = r->cl;
	const char *key;
	json_t *v;
	char *line;
	size_t len, n = 0;

	json_object_foreach(c->members, key, v) {
		/* A client that was waiting for its verdict, or got it since
		 * (Redis does not say which), asks again: a verdict for a
		 * client already in is dropped. */
		if (memmem(json_string_value(v), json_string_length(v),
		    "\"authorize\":true", 17) != NULL)
			line = strndup(json_string_value(v),
			    len = json_string_length(v));
		else
			line = record_open_resumed(json_string_value(v),
			    json_string_length(v), &len);
		if (line == NULL)
			continue;
		backend_write(b, line, len);
		json_object_set(c->resumed, key, json_true());
		n++;
	}
	return n;
}

bool
cluster_room_keep_open(const struct room *r, const char *line, size_t len)
{
	const char *name;
	size_t n;
	char *key;
	bool resumed;

	if ((name = record_client(line, len, &n)) == NULL ||
	    (key = strndup(name, n)) == NULL)
		return true;
	resumed = json_object_get(r->cl->members, key) != NULL;
	free(key);
	return !resumed;
}

/* Start and stop */

/* Split "HOST:PORT" (HOST perhaps in brackets) or take "unix:PATH". */
static int
cl_address(const char *v)
{
	const char *colon;

	if (strncmp(v, "unix:", 5) == 0)
		return (cl.unix_path = strdup(v + 5)) != NULL ? 0 : -1;
	colon = strrchr(v, ':');
	cl.port = atoi(colon + 1);
	if (v[0] == '[')
		cl.host = strndup(v + 1, (size_t)(colon - 1 - (v + 1)));
	else
		cl.host = strndup(v, (size_t)(colon - v));
	return cl.host != NULL ? 0 : -1;
}

/* base 36: short, for the boot part of every client id */
static void
cl_base36(char *out, size_t size, uint64_t v)
{
	char tmp[16];
	size_t n = 0, i;

	do {
		tmp[n++] = "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36];
		v /= 36;
	} while (v > 0 && n < sizeof(tmp));
	for (i = 0; i < n && i + 1 < size; i++)
		out[i] = tmp[n - 1 - i];
	out[i] = '\0';
}

int
cluster_start(const struct cfg *cfg)
{
	const struct cfg_cluster *cc = &cfg->cluster;
	char host[64], boot[16], node[64];
	const char *port = "";
	struct timespec ts;
	size_t i;

	if (cc->line == 0)
		return 0;
	cl.on = true;
	cl.lease_ms = cc->lease_ms;
	cl.ttl_ms = cc->lease_ms - cc->lease_ms / 5;
	cl.stream_max = cc->stream_max;
	cl.db = cc->db;
	cl.retry_ms = CL_RETRY_MIN_MS;
	LIST_INIT(&cl.rooms);
	TAILQ_INIT(&cl.outbox);
	if (cl_address(cc->redis.value) == -1 ||
	    (cl.where = strdup(cc->redis.value)) == NULL)
		return -1;
	if (cc->password.value != NULL &&
	    (cl.password = strdup(cc->password.value)) == NULL)
		return -1;
	if (cc->node.value != NULL) {
		snprintf(node, sizeof(node), "%s", cc->node.value);
	} else {
		/* The host name and the first listen port. */
		if (gethostname(host, sizeof(host)) == -1)
			strcpy(host, "gatewayd");
		host[sizeof(host) - 1] = '\0';
		for (i = 0; i < cfg->n_listens; i++)
			if (!cfg->listens[i].admin) {
				port = strrchr(cfg->listens[i].text, ':');
				port = port != NULL ? port + 1 : "";
				break;
			}
		snprintf(node, sizeof(node), "%.40s-%.5s", host, port);
		for (i = 0; node[i] != '\0'; i++)
			if (!isalnum((unsigned char)node[i]) && node[i] != '-')
				node[i] = '_';
	}
	/* The boot time makes a restarted node's ids new ones. */
	clock_gettime(CLOCK_REALTIME, &ts);
	cl_base36(boot, sizeof(boot), (uint64_t)ts.tv_sec * 1000 +
	    (uint64_t)ts.tv_nsec / 1000000);
	snprintf(cl.instance, sizeof(cl.instance), "%s.%s", node, boot);
	snprintf(cl.suffix, sizeof(cl.suffix), "@%s", cl.instance);
	snprintf(cl.node_key, sizeof(cl.node_key), "gw:node:%s", cl.instance);
	cl.tick = evtimer_new(server.base, cl_tick_cb, NULL);
	cl.retry = evtimer_new(server.base, cl_retry_cb, NULL);
	cl.poll = evtimer_new(server.base, cl_poll_cb, NULL);
	cl.kick = event_new(server.base, -1, 0, cl_kick_cb, NULL);
	cl.rekick = evtimer_new(server.base, cl_kick_cb, NULL);
	if (cl.tick == NULL || cl.retry == NULL || cl.poll == NULL ||
	    cl.kick == NULL || cl.rekick == NULL)
		return -1;
	server_timer_set(cl.tick, cl.lease_ms / 5);
	log_info("cluster: node %s, redis at %s, lease %" PRIu64 " ms",
	    cl.instance, cc->redis.value, cl.lease_ms);
	cl_connect();
	return 0;
}

void
cluster_free(void)
{
	struct cluster_rec *rec;
	redisAsyncContext *ac;

	if (!cl.on)
		return;
	if ((ac = cl.cmd) != NULL) {
		cl.cmd = NULL;
		redisAsyncFree(ac);
	}
	if ((ac = cl.rd) != NULL) {
		cl.rd = NULL;
		redisAsyncFree(ac);
	}
	while ((rec = TAILQ_FIRST(&cl.outbox)) != NULL) {
		TAILQ_REMOVE(&cl.outbox, rec, entry);
		if (rec->cr != NULL)
			cl_room_unref(rec->cr);
		free(rec->line);
		free(rec);
	}
	cl.outbox_n = 0;

	if (cl.tick != NULL)
		event_free(cl.tick);
	if (cl.retry != NULL)
		event_free(cl.retry);
	if (cl.poll != NULL)
		event_free(cl.poll);
	if (cl.kick != NULL)
		event_free(cl.kick);
	if (cl.rekick != NULL)
		event_free(cl.rekick);
	free(cl.host);
	free(cl.where);
	free(cl.unix_path);
	free(cl.password);
	cl.on = false;
}
