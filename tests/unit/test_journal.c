/*
 * Unit tests for journal.c: the records on their way to a backend.
 */
#include <stdlib.h>

#include "../../gatewayd/journal.c"

#include "check.h"

static struct journal_entry *
add(struct journal *j, const char *text, enum journal_kind kind,
    uint64_t client, uint64_t seq)
{
	return journal_append(j, strdup(text), strlen(text), kind, client, seq);
}

static size_t
count(const struct journal *j)
{
	const struct journal_entry *e;
	size_t n = 0;

	for (e = j->head; e != NULL; e = e->next)
		n++;
	return n;
}

static void
test_sent_and_trim(void)
{
	struct journal j;

	journal_init(&j);
	add(&j, "aaaa\n", JOURNAL_OPEN, 1, 0);		/* 5 bytes */
	add(&j, "bbbbbbbbb\n", JOURNAL_MESSAGE, 1, 0);	/* 10 */
	add(&j, "cc\n", JOURNAL_CLOSE, 1, 0);		/* 3 */
	CHECK_EQ_INT(j.bytes, 18);
	CHECK_EQ_INT(journal_unsent_bytes(&j), 18);

	/* Nothing sent: nothing can have been read. */
	CHECK_EQ_INT(journal_trim(&j, 0), 0);

	journal_sent(&j, 7);		/* "aaaa\n" and 2 bytes of b */
	CHECK_EQ_INT(j.sent_bytes, 7);
	CHECK_EQ_INT(journal_unsent_bytes(&j), 11);
	/* 3 unread: "aaaa\n" wholly read (2 bytes sent after it). */
	CHECK_EQ_INT(journal_trim(&j, 3), 0);
	CHECK_EQ_INT(journal_trim(&j, 2), 1);
	CHECK_EQ_INT(count(&j), 2);
	CHECK_EQ_INT(j.sent_bytes, 2);
	/* A line sent in part is never dropped by a trim. */
	CHECK_EQ_INT(journal_trim(&j, 0), 0);
	journal_sent(&j, 11);
	CHECK(j.unsent == NULL);
	CHECK_EQ_INT(journal_unsent_bytes(&j), 0);
	CHECK_EQ_INT(journal_trim(&j, 0), 2);
	CHECK(j.head == NULL && j.bytes == 0 && j.n == 0);
	/* The tail is still good after emptying. */
	add(&j, "d\n", JOURNAL_MESSAGE, 2, 0);
	CHECK_EQ_INT(count(&j), 1);
	CHECK(j.unsent == j.head);
	journal_clear(&j);
}

static void
test_rewind(void)
{
	struct journal j;
	struct journal_entry *a, *b, *c;

	journal_init(&j);
	a = add(&j, "a\n", JOURNAL_MESSAGE, 1, 0);
	b = add(&j, "bb\n", JOURNAL_MESSAGE, 1, 0);
	c = add(&j, "ccc\n", JOURNAL_MESSAGE, 1, 0);
	journal_sent(&j, 3);		/* a, and one byte of b */
	journal_rewind(&j);
	CHECK(a->maybe_read);
	CHECK(b->maybe_read);		/* in part: perhaps read in part */
	CHECK(!c->maybe_read);
	CHECK(j.unsent == a && j.unsent_off == 0 && j.sent_bytes == 0);
	CHECK_EQ_INT(journal_unsent_bytes(&j), 9);
	/* Nothing sent: a rewind changes nothing more. */
	journal_rewind(&j);
	CHECK(!c->maybe_read);
	CHECK_EQ_INT(journal_clear(&j), 3);
}

static void
test_ack(void)
{
	struct journal j;

	journal_init(&j);
	add(&j, "old\n", JOURNAL_MESSAGE, 1, 0);	/* before numbering */
	add(&j, "one\n", JOURNAL_MESSAGE, 1, 1);
	add(&j, "two\n", JOURNAL_MESSAGE, 1, 2);
	add(&j, "six\n", JOURNAL_MESSAGE, 1, 3);
	/* Not sent: an ack cannot cover it, whatever it says. */
	CHECK_EQ_INT(journal_ack(&j, 99), 0);
	journal_sent(&j, 12);
	CHECK_EQ_INT(journal_ack(&j, 1), 2);		/* old and one */
	CHECK_EQ_INT(journal_ack(&j, 1), 0);		/* again: nothing */
	CHECK_EQ_INT(journal_ack(&j, 99), 1);		/* two; six unsent */
	CHECK_EQ_INT(count(&j), 1);
	CHECK_EQ_INT(j.n, 1);
	journal_clear(&j);
}

static bool
keep_messages(const struct journal_entry *e, void *arg)
{
	(void)arg;
	return e->kind == JOURNAL_MESSAGE;
}

static void
test_filter_replace_clear(void)
{
	struct journal j;
	struct journal_entry *e;
	char *line;

	journal_init(&j);
	add(&j, "o\n", JOURNAL_OPEN, 1, 0);
	e = add(&j, "m\n", JOURNAL_MESSAGE, 1, 0);
	add(&j, "c\n", JOURNAL_CLOSE, 1, 0);
	add(&j, "o2\n", JOURNAL_OPEN, 2, 0);
	CHECK_EQ_INT(journal_filter(&j, keep_messages, NULL), 3);
	CHECK(j.head == e && e->next == NULL && j.unsent == e);
	CHECK_EQ_INT(j.bytes, 2);
	CHECK_EQ_INT(j.n, 1);
	add(&j, "m2\n", JOURNAL_MESSAGE, 1, 0);		/* the tail is right */
	CHECK_EQ_INT(count(&j), 2);

	line = strdup("mmmm\n");
	journal_replace(&j, e, line, 5);
	CHECK_EQ_INT(j.bytes, 8);
	CHECK(e->line == line);

	/* Filtering everything away leaves a journal one can append to. */
	CHECK_EQ_INT(journal_filter(&j, keep_messages, NULL), 0);
	j.next_seq = 7;
	CHECK_EQ_INT(journal_clear(&j), 2);
	CHECK(j.head == NULL && j.bytes == 0);
	CHECK_EQ_INT(j.next_seq, 7);	/* numbers are never reused */
	add(&j, "x\n", JOURNAL_MESSAGE, 1, 0);
	CHECK(j.unsent == j.head);
	journal_clear(&j);
}

/*
 * Against a model of the socket: random lines, writes of random sizes,
 * a reader consuming random amounts, trims told the unread bytes exactly
 * or over-estimated (as SIOCOUTQ does), and failures.  A record the
 * reader has not wholly consumed is never dropped, and after a failure
 * exactly the records written (in whole or in part) are marked.
 */
static void
test_model(void)
{
	struct journal j;
	struct journal_entry *e;
	uint64_t next_id = 0, first_kept;
	size_t written = 0, consumed = 0, unread, off, round;
	char *line;

	srand(1);
	journal_init(&j);
	for (round = 0; round < 20000; round++) {
		switch (rand() % 6) {
		case 0:
		case 1:
			/* A line; its id in its first bytes. */
			if (asprintf(&line, "%llu %.*s\n",
			    (unsigned long long)next_id, rand() % 40,
			    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx") == -1)
				abort();
			add(&j, line, JOURNAL_MESSAGE, next_id++, 0);
			free(line);
			break;
		case 2:
			off = journal_unsent_bytes(&j);
			off = off > 0 ? (size_t)rand() % (off + 1) : 0;
			journal_sent(&j, off);
			written += off;
			break;
		case 3:
			off = written - consumed;
			consumed += off > 0 ? (size_t)rand() % (off + 1) : 0;
			break;
		case 4:
			unread = written - consumed;
			if (rand() % 2) {
				unread += (size_t)rand() % 700;
				journal_trim(&j, unread);
				break;
			}
			/* Told exactly: what was wholly read is gone. */
			journal_trim(&j, unread);
			CHECK(j.head == NULL || j.head == j.unsent ||
			    j.sent_bytes - j.head->len < unread);
			break;
		case 5:
			if (rand() % 8 != 0)
				break;
			journal_rewind(&j);
			/* What was written but not consumed is in the
			 * journal, from its first entry on. */
			for (e = j.head, off = 0; e != NULL; e = e->next)
				off += e->len;
			CHECK_EQ_INT(off, j.bytes);
			written = consumed = 0;
			break;
		}
		/* The bytes the journal still says were sent cover at least
		 * the unread ones: nothing unread was dropped. */
		CHECK(j.sent_bytes >= written - consumed);
		if (check_failures_in_test)
			break;
	}
	/* The ids kept are consecutive: the journal drops from its head
	 * only. */
	first_kept = j.head != NULL ? j.head->client : next_id;
	for (e = j.head; e != NULL; e = e->next)
		CHECK_EQ_INT(e->client, first_kept++);
	CHECK_EQ_INT(first_kept, next_id);
	journal_clear(&j);
}

int
main(void)
{
	RUN(test_sent_and_trim);
	RUN(test_rewind);
	RUN(test_ack);
	RUN(test_filter_replace_clear);
	RUN(test_model);
	return check_summary();
}
