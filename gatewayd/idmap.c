/*
 * idmap: see idmap.h.
 */
#include <stdlib.h>
#include <string.h>

#include "idmap.h"

#define IDMAP_MIN_CAP 64

static uint64_t
idmap_id(const struct idmap *m, const void *obj)
{
	uint64_t id;

	memcpy(&id, (const char *)obj + m->id_offset, sizeof(id));
	return id;
}

/* Fibonacci hashing spreads sequential ids over the whole table. */
static size_t
idmap_home(const struct idmap *m, uint64_t id)
{
	return (size_t)((id * UINT64_C(11400714819323198485)) >> 32) & (m->cap - 1);
}

void
idmap_init(struct idmap *m, size_t id_offset)
{
	memset(m, 0, sizeof(*m));
	m->id_offset = id_offset;
}

void
idmap_free(struct idmap *m)
{
	free(m->slots);
	idmap_init(m, m->id_offset);
}

void *
idmap_get(const struct idmap *m, uint64_t id)
{
	size_t i;

	if (m->cap == 0)
		return NULL;
	for (i = idmap_home(m, id); m->slots[i] != NULL; i = (i + 1) & (m->cap - 1)) {
		if (idmap_id(m, m->slots[i]) == id)
			return m->slots[i];
	}
	return NULL;
}

static void
idmap_insert(struct idmap *m, void *obj)
{
	size_t i = idmap_home(m, idmap_id(m, obj));

	while (m->slots[i] != NULL)
		i = (i + 1) & (m->cap - 1);
	m->slots[i] = obj;
}

static int
idmap_resize(struct idmap *m, size_t cap)
{
	void **old = m->slots;
	size_t old_cap = m->cap, i;

	m->slots = calloc(cap, sizeof(*m->slots));
	if (m->slots == NULL) {
		m->slots = old;
		return -1;
	}
	m->cap = cap;
	for (i = 0; i < old_cap; i++) {
		if (old[i] != NULL)
			idmap_insert(m, old[i]);
	}
	free(old);
	return 0;
}

int
idmap_put(struct idmap *m, void *obj)
{
	if ((m->n + 1) * 10 > m->cap * 7 &&
	    idmap_resize(m, m->cap ? m->cap * 2 : IDMAP_MIN_CAP) == -1)
		return -1;
	idmap_insert(m, obj);
	m->n++;
	return 0;
}

void
idmap_del(struct idmap *m, uint64_t id)
{
	size_t i, j, home;

	if (m->cap == 0)
		return;
	for (i = idmap_home(m, id); m->slots[i] != NULL; i = (i + 1) & (m->cap - 1)) {
		if (idmap_id(m, m->slots[i]) == id)
			break;
	}
	if (m->slots[i] == NULL)
		return;
	/* Shift later members of the probe run back into the hole, so that
	 * lookups never stop at it (no tombstones). */
	for (j = (i + 1) & (m->cap - 1); m->slots[j] != NULL;
	    j = (j + 1) & (m->cap - 1)) {
		home = idmap_home(m, idmap_id(m, m->slots[j]));
		/* j's entry may move to i when its home is not in (i, j]. */
		if (((j - home) & (m->cap - 1)) >= ((j - i) & (m->cap - 1))) {
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	m->slots[i] = NULL;
	m->n--;
	if (m->cap > IDMAP_MIN_CAP && m->n < m->cap / 8)
		(void)idmap_resize(m, m->cap / 2);	/* failing is harmless */
}
