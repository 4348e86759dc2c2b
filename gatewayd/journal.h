/*
 * journal: a room's records on their way to its backend.
 *
 * Pure: a queue of record lines in the order the room wrote them, which
 * knows how much of it has been written to the backend's socket, and so
 * which records the backend may have read.  It replaces both the hold
 * queue of a room whose backend is down and the requeue of what a failed
 * backend was never sent:
 *
 *   unsent    appended, not yet written (all of it while the backend is
 *             down): a new backend gets these as they are
 *   sent      written to the socket, perhaps read: dropped once known to
 *             be read (the socket's unread bytes no longer cover them:
 *             journal_trim; or the backend acknowledged them:
 *             journal_ack), else given to the next backend again, marked
 *             maybe_read (docs/PROTOCOL.md: "redelivered")
 *
 * The lines are the journal's (malloc'd), kept until dropped; a writer
 * may reference them until journal_sent has been told they went.
 */
#ifndef GATEWAYD_JOURNAL_H
#define GATEWAYD_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum journal_kind {
	JOURNAL_OPEN,
	JOURNAL_MESSAGE,
	JOURNAL_CLOSE,
};

struct journal_entry {
	struct journal_entry *next;
	char *line;			/* ends in '\n' */
	size_t len;
	uint64_t client;		/* the client it is about */
	uint64_t seq;			/* 0 unless numbered (delivery = ack) */
	uint64_t stream_ms, stream_seq;	/* a cluster's record: its id in the
					 * room's Redis stream, else 0 */
	enum journal_kind kind;
	bool maybe_read;		/* sent to a backend that then failed */
	bool marked;			/* its line says "redelivered" */
};

struct journal {
	struct journal_entry *head, **tail;
	struct journal_entry *unsent;	/* the first entry not wholly sent,
					 * or NULL */
	size_t unsent_off;		/* bytes of it sent */
	size_t bytes;			/* of every entry */
	size_t sent_bytes;		/* of the entries before unsent, and
					 * unsent_off */
	size_t n;
	uint64_t next_seq;		/* the last seq given, then one more */
};

void journal_init(struct journal *j);

/* Append a line (taken: the journal frees it); seq is 0, or the number
 * it carries.  Returns the entry, or NULL (out of memory: the line is
 * freed). */
struct journal_entry *journal_append(struct journal *j, char *line,
    size_t len, enum journal_kind kind, uint64_t client, uint64_t seq);

/* n more bytes of the queue went into the backend's socket. */
void journal_sent(struct journal *j, size_t n);

/* The socket holds at most unread bytes not read yet: drop the sent
 * entries wholly before them.  Returns how many were dropped. */
size_t journal_trim(struct journal *j, size_t unread);

/* The backend has read and handled every record numbered up to seq:
 * drop the sent ones among them, and the unnumbered ones before. */
size_t journal_ack(struct journal *j, uint64_t seq);

/* The backend failed: every sent entry is marked maybe_read and the
 * whole journal is unsent again, for the next backend. */
void journal_rewind(struct journal *j);

/* Give an unsent entry another line (the same record, marked: taken). */
void journal_replace(struct journal *j, struct journal_entry *e, char *line,
    size_t len);

/* Drop the entries keep refuses; only on a journal with nothing sent
 * (after journal_rewind, or with no backend).  Returns how many. */
size_t journal_filter(struct journal *j,
    bool (*keep)(const struct journal_entry *, void *), void *arg);

/* Unsent bytes (what waits to be written). */
size_t journal_unsent_bytes(const struct journal *j);

/* Drop every entry (the numbering goes on); returns how many there
 * were. */
size_t journal_clear(struct journal *j);

#endif
