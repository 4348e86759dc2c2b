/*
 * journal: see journal.h.
 */
#include <stdlib.h>

#include "journal.h"

void
journal_init(struct journal *j)
{
	j->head = NULL;
	j->tail = &j->head;
	j->unsent = NULL;
	j->unsent_off = 0;
	j->bytes = j->sent_bytes = j->n = 0;
	j->next_seq = 1;
}

struct journal_entry *
journal_append(struct journal *j, char *line, size_t len,
    enum journal_kind kind, uint64_t client, uint64_t seq)
{
	struct journal_entry *e;

	if ((e = malloc(sizeof(*e))) == NULL) {
		free(line);
		return NULL;
	}
	e->next = NULL;
	e->line = line;
	e->len = len;
	e->client = client;
	e->seq = seq;
	e->stream_ms = e->stream_seq = 0;
	e->kind = kind;
	e->maybe_read = e->marked = false;
	*j->tail = e;
	j->tail = &e->next;
	if (j->unsent == NULL)
		j->unsent = e;		/* all before it went */
	j->bytes += len;
	j->n++;
	return e;
}

void
journal_sent(struct journal *j, size_t n)
{
	size_t left;

	while (n > 0 && j->unsent != NULL) {
		left = j->unsent->len - j->unsent_off;
		if (n < left) {
			j->unsent_off += n;
			j->sent_bytes += n;
			return;
		}
		n -= left;
		j->sent_bytes += left;
		j->unsent = j->unsent->next;
		j->unsent_off = 0;
	}
}

static void
journal_drop_head(struct journal *j)
{
	struct journal_entry *e = j->head;

	j->head = e->next;
	if (j->head == NULL)
		j->tail = &j->head;
	j->bytes -= e->len;
	j->sent_bytes -= e->len;
	j->n--;
	free(e->line);
	free(e);
}

size_t
journal_trim(struct journal *j, size_t unread)
{
	size_t dropped = 0;

	/* An entry is wholly read when the bytes sent after it cover
	 * every byte the socket still holds. */
	while (j->head != NULL && j->head != j->unsent &&
	    j->sent_bytes - j->head->len >= unread) {
		journal_drop_head(j);
		dropped++;
	}
	return dropped;
}

size_t
journal_ack(struct journal *j, uint64_t seq)
{
	size_t dropped = 0;

	/* In order, sent ones only: a backend cannot have handled what it
	 * was not sent, whatever it says.  An unnumbered entry (journaled
	 * before the room was told to number them) precedes the numbered
	 * ones: an ack covers it. */
	while (j->head != NULL && j->head != j->unsent &&
	    j->head->seq <= seq) {
		journal_drop_head(j);
		dropped++;
	}
	return dropped;
}

void
journal_rewind(struct journal *j)
{
	struct journal_entry *e;

	for (e = j->head; e != NULL && e != j->unsent; e = e->next)
		e->maybe_read = true;
	/* A line sent in part was read in part, maybe: it counts too. */
	if (j->unsent != NULL && j->unsent_off > 0)
		j->unsent->maybe_read = true;
	j->unsent = j->head;
	j->unsent_off = 0;
	j->sent_bytes = 0;
}

size_t
journal_unsent_bytes(const struct journal *j)
{
	return j->bytes - j->sent_bytes;
}

size_t
journal_clear(struct journal *j)
{
	struct journal_entry *e, *next;
	size_t n = j->n;
	uint64_t next_seq = j->next_seq;

	for (e = j->head; e != NULL; e = next) {
		next = e->next;
		free(e->line);
		free(e);
	}
	/* Numbers are never given twice in a room's life. */
	journal_init(j);
	j->next_seq = next_seq;
	return n;
}

void
journal_replace(struct journal *j, struct journal_entry *e, char *line,
    size_t len)
{
	j->bytes += len;
	j->bytes -= e->len;
	free(e->line);
	e->line = line;
	e->len = len;
}

size_t
journal_filter(struct journal *j, bool (*keep)(const struct journal_entry *,
    void *), void *arg)
{
	struct journal_entry **pp = &j->head, *e;
	size_t dropped = 0;

	j->tail = &j->head;
	while ((e = *pp) != NULL) {
		if (keep(e, arg)) {
			j->tail = &e->next;
			pp = &e->next;
			continue;
		}
		*pp = e->next;
		j->bytes -= e->len;
		j->n--;
		free(e->line);
		free(e);
		dropped++;
	}
	j->unsent = j->head;
	return dropped;
}
