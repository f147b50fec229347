/* mb_list.h: an intrusive doubly linked list: a member embeds one mb_link per list it can
 * be on, and is found back from its link with MB_LIST_OWNER.  No allocation. */
#ifndef MB_LIST_H
#define MB_LIST_H

#include <stddef.h>

typedef struct mb_link {
    struct mb_link *prev, *next;
} mb_link;

typedef struct mb_list {
    mb_link *head, *tail;
    size_t n; /* members on the list */
} mb_list;

/* The member of type `type` holding link k in its field f; NULL for NULL. */
#define MB_LIST_OWNER(k, type, f) \
    ((k) ? (type *)(void *)((char *)(k)-offsetof(type, f)) : (type *)NULL)

static inline void mb_list_push_tail(mb_list *l, mb_link *k)
{
    k->next = NULL;
    k->prev = l->tail;
    if (l->tail)
        l->tail->next = k;
    else
        l->head = k;
    l->tail = k;
    l->n++;
}

static inline void mb_list_push_head(mb_list *l, mb_link *k)
{
    k->prev = NULL;
    k->next = l->head;
    if (l->head)
        l->head->prev = k;
    else
        l->tail = k;
    l->head = k;
    l->n++;
}

/* Takes k off l (k must be on l). */
static inline void mb_list_del(mb_list *l, mb_link *k)
{
    if (k->prev)
        k->prev->next = k->next;
    else
        l->head = k->next;
    if (k->next)
        k->next->prev = k->prev;
    else
        l->tail = k->prev;
    k->prev = k->next = NULL;
    l->n--;
}

#endif
