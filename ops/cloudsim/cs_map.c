/* cs_map.c: chained hash table plus a doubly linked list that keeps insertion order. */
#include "cs_map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mb_list.h"

struct cs_map_ent {
    char *key;
    void *value;
    uint64_t hash;
    struct cs_map_ent *chain; /* next in bucket */
    mb_link order;            /* on cs_map.order */
};

struct cs_map {
    struct cs_map_ent **buckets;
    size_t nbuckets;
    mb_list order; /* every entry, in insertion order; its length is the count */
    cs_map_free_fn free_fn;
};

static struct cs_map_ent *ent_of(const mb_link *k)
{
    return MB_LIST_OWNER(k, struct cs_map_ent, order);
}

/* FNV-1a: short keys, no adversary. */
static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

cs_map *cs_map_new(cs_map_free_fn free_fn)
{
    cs_map *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return NULL;
    m->nbuckets = 16;
    m->buckets = calloc(m->nbuckets, sizeof(*m->buckets));
    if (m->buckets == NULL) {
        free(m);
        return NULL;
    }
    m->free_fn = free_fn;
    return m;
}

void cs_map_free(cs_map *m)
{
    if (m == NULL)
        return;
    struct cs_map_ent *e = ent_of(m->order.head);
    while (e) {
        struct cs_map_ent *n = ent_of(e->order.next);
        if (m->free_fn)
            m->free_fn(e->value);
        free(e->key);
        free(e);
        e = n;
    }
    free(m->buckets);
    free(m);
}

static struct cs_map_ent *find(const cs_map *m, const char *key, uint64_t h)
{
    struct cs_map_ent *e = m->buckets[h & (m->nbuckets - 1)];

    for (; e; e = e->chain) {
        if (e->hash == h && strcmp(e->key, key) == 0)
            return e;
    }
    return NULL;
}

void *cs_map_get(const cs_map *m, const char *key)
{
    struct cs_map_ent *e = find(m, key, hash_str(key));

    return e ? e->value : NULL;
}

static void grow(cs_map *m)
{
    size_t nb = m->nbuckets * 2;
    struct cs_map_ent **b = calloc(nb, sizeof(*b));

    if (b == NULL)
        return; /* keep the longer chains; still correct */
    for (struct cs_map_ent *e = ent_of(m->order.head); e; e = ent_of(e->order.next)) {
        size_t i = e->hash & (nb - 1);
        e->chain = b[i];
        b[i] = e;
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = nb;
}

int cs_map_put(cs_map *m, const char *key, void *value)
{
    uint64_t h = hash_str(key);
    struct cs_map_ent *e = find(m, key, h);

    if (e) {
        if (m->free_fn && e->value != value)
            m->free_fn(e->value);
        e->value = value;
        return 0;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -1;
    e->key = strdup(key);
    if (e->key == NULL) {
        free(e);
        return -1;
    }
    e->value = value;
    e->hash = h;
    if (m->order.n + 1 > m->nbuckets)
        grow(m);
    size_t i = h & (m->nbuckets - 1);
    e->chain = m->buckets[i];
    m->buckets[i] = e;
    mb_list_push_tail(&m->order, &e->order);
    return 0;
}

int cs_map_del(cs_map *m, const char *key)
{
    uint64_t h = hash_str(key);
    struct cs_map_ent **pp = &m->buckets[h & (m->nbuckets - 1)];

    for (; *pp; pp = &(*pp)->chain) {
        struct cs_map_ent *e = *pp;
        if (e->hash != h || strcmp(e->key, key) != 0)
            continue;
        *pp = e->chain;
        mb_list_del(&m->order, &e->order);
        if (m->free_fn)
            m->free_fn(e->value);
        free(e->key);
        free(e);
        return 1;
    }
    return 0;
}

size_t cs_map_count(const cs_map *m)
{
    return m->order.n;
}

cs_map_it *cs_map_first(const cs_map *m)
{
    return ent_of(m->order.head);
}

cs_map_it *cs_map_next(const cs_map_it *it)
{
    return ent_of(it->order.next);
}

const char *cs_map_key(const cs_map_it *it)
{
    return it->key;
}

void *cs_map_value(const cs_map_it *it)
{
    return it->value;
}
