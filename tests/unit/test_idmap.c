/*
 * Unit tests for idmap.c, checked against a plain array as the model.
 */
#include <stdbool.h>

#include "../../gatewayd/idmap.c"

#include "check.h"

struct obj {
	int payload;
	uint64_t id;
};

static void
test_empty(void)
{
	struct idmap m;

	idmap_init(&m, offsetof(struct obj, id));
	CHECK(idmap_get(&m, 1) == NULL);
	idmap_del(&m, 1);
	CHECK_EQ_INT(m.n, 0);
	idmap_free(&m);
}

/* Random puts and deletes of ids from a small range, so that probe runs
 * collide and wrap; after every step each id is found iff present. */
static void
test_against_model(void)
{
	enum { RANGE = 5000, STEPS = 200000 };
	static struct obj objs[RANGE];
	static bool present[RANGE];
	struct idmap m;
	uint64_t seed = 42;
	size_t i, step, n = 0;
	int bad = 0;

	idmap_init(&m, offsetof(struct obj, id));
	for (i = 0; i < RANGE; i++)
		objs[i].id = i * 7919 + 1;	/* spread, but not sequential */
	for (step = 0; step < STEPS; step++) {
		seed = seed * 6364136223846793005u + 1442695040888963407u;
		i = (size_t)(seed >> 33) % RANGE;
		/* Grow towards RANGE, then shrink, to resize both ways. */
		if ((step < STEPS / 2) == ((seed >> 20) % 4 != 0)) {
			if (!present[i]) {
				CHECK_EQ_INT(idmap_put(&m, &objs[i]), 0);
				present[i] = true;
				n++;
			}
		} else if (present[i]) {
			idmap_del(&m, objs[i].id);
			present[i] = false;
			n--;
		}
		if (step % 997 == 0) {
			for (size_t k = 0; k < RANGE; k++) {
				void *got = idmap_get(&m, objs[k].id);

				if (got != (present[k] ? &objs[k] : NULL))
					bad++;
			}
		}
	}
	CHECK_EQ_INT(bad, 0);
	CHECK_EQ_INT(m.n, n);
	CHECK(m.cap >= IDMAP_MIN_CAP && m.n * 10 <= m.cap * 7);
	CHECK(idmap_get(&m, 2) == NULL);	/* never put */
	idmap_free(&m);
}

static void
test_sequential_ids_shrink(void)
{
	enum { N = 100000 };
	static struct obj objs[N];
	struct idmap m;
	size_t i;

	idmap_init(&m, offsetof(struct obj, id));
	for (i = 0; i < N; i++) {
		objs[i].id = i + 1;
		CHECK_EQ_INT(idmap_put(&m, &objs[i]), 0);
	}
	CHECK(idmap_get(&m, N) == &objs[N - 1]);
	for (i = 0; i < N - 10; i++)
		idmap_del(&m, objs[i].id);
	CHECK_EQ_INT(m.n, 10);
	CHECK(m.cap <= 256);	/* it shrank with the contents */
	for (i = N - 10; i < N; i++)
		CHECK(idmap_get(&m, objs[i].id) == &objs[i]);
	idmap_free(&m);
}

int
main(void)
{
	RUN(test_empty);
	RUN(test_against_model);
	RUN(test_sequential_ids_shrink);
	return check_summary();
}
