/*
 * idmap: a hash table from 64-bit ids to the objects that carry them.
 *
 * Pure: no I/O.  Open addressing with linear probing over a power-of-two
 * array of object pointers; each object holds its own id at the offset
 * given to idmap_init, so a slot costs one pointer.  It grows past 70%
 * full and shrinks below 1/8, so its memory follows the number of
 * objects both ways.  Used for clients, looked up by id on every command
 * a backend writes.
 */
#ifndef GATEWAYD_IDMAP_H
#define GATEWAYD_IDMAP_H

#include <stddef.h>
#include <stdint.h>

struct idmap {
	void **slots;		/* NULL: empty */
	size_t cap;		/* a power of two, or 0 before the first put */
	size_t n;
	size_t id_offset;	/* of the uint64_t id inside each object */
};

void idmap_init(struct idmap *m, size_t id_offset);
void idmap_free(struct idmap *m);

/* The object with this id, or NULL. */
void *idmap_get(const struct idmap *m, uint64_t id);

/* Add obj, whose id must not be in the map yet.  Returns 0, or -1 when
 * out of memory (the map is unchanged). */
int idmap_put(struct idmap *m, void *obj);

/* Remove the object with this id, if any. */
void idmap_del(struct idmap *m, uint64_t id);

#endif
