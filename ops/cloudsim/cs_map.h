/* cs_map.h: string-keyed hash map with insertion-order iteration, for cloudsim's indices. */
#ifndef CS_MAP_H
#define CS_MAP_H

#include <stddef.h>

typedef struct cs_map cs_map;

/* Called on each value when the map is freed or a value is replaced. */
typedef void (*cs_map_free_fn)(void *value);

/* New map (cs_map_free).  free_fn may be NULL: values are then borrowed. */
cs_map *cs_map_new(cs_map_free_fn free_fn);
void cs_map_free(cs_map *m);

/* Borrowed value, or NULL. */
void *cs_map_get(const cs_map *m, const char *key);

/* Stores value under key (copied), freeing any value it replaces.  The value
 * is taken over when the map has a free_fn.  Returns 0, or -1 (out of memory;
 * value not taken). */
int cs_map_put(cs_map *m, const char *key, void *value);

/* Removes key, freeing its value when the map owns values.  Returns 1 if it
 * was there. */
int cs_map_del(cs_map *m, const char *key);

size_t cs_map_count(const cs_map *m);

/* Iteration in insertion order; the map must not change meanwhile, except
 * cs_map_del of the current key after cs_map_next has been taken.
 * for (cs_map_it *it = cs_map_first(m); it; it = cs_map_next(it)) */
typedef struct cs_map_ent cs_map_it;
cs_map_it *cs_map_first(const cs_map *m);
cs_map_it *cs_map_next(const cs_map_it *it);
const char *cs_map_key(const cs_map_it *it);
void *cs_map_value(const cs_map_it *it);

#endif
