/* mb_rq.h: the Redis request queue: one thread that owns a store connection runs the loop's
 * Redis work in order, so a slow or stalled Redis never blocks the event loop. */
#ifndef MB_RQ_H
#define MB_RQ_H

#include <stddef.h>

struct event_base;
struct mb_store;

typedef struct mb_rq mb_rq;

/* A request, run on the Redis thread; it may block (each store call is bounded by the
 * store's timeout, and a Redis that does not answer costs one timeout per reconnect backoff
 * period, later calls failing fast with MB_AGAIN meanwhile).  st is the thread's store
 * (borrowed for the call).  fn reads its input from ctx and writes its results (statuses
 * included) into ctx; it must touch nothing else the loop owns.  Objects reachable from ctx
 * (jansson values too) must not be touched by the loop while the request is out. */
typedef void mb_rq_fn(struct mb_store *st, void *ctx);

/* The request's completion, run on the loop thread exactly once, after fn (in submission
 * order, several per wake-up).  ctx is the caller's again from here on. */
typedef void mb_rq_done(void *ctx);

typedef struct mb_rq_opts {
    const char *url;       /* REDIS_URL (borrowed for the call) */
    int shards;            /* as for mb_store_new */
    int timeout_ms;        /* connect and round-trip bound of the thread's store */
    const char *worker_id; /* lease owner name (copied by the store) */
    long idle_ping_ms;     /* PING when idle this long, so health stays current (0: 1000) */
} mb_rq_opts;

/* Starts the Redis thread with a store of its own (connecting lazily, on the thread) and
 * watches its completions on base (borrowed; must outlive the queue).  Returns a new queue
 * (mb_rq_free) or NULL with the reason in err (bad URL or arguments, no thread). */
mb_rq *mb_rq_new(struct event_base *base, const mb_rq_opts *o, char *err, size_t errlen);

/* Queues fn(st, ctx), then done(ctx) on the loop.  Requests run one at a time in the order
 * submitted.  ctx stays the caller's (never freed here).  Returns 0, or -1 (nothing queued,
 * done never called) when out of memory or once the queue is stopping. */
int mb_rq_submit(mb_rq *q, mb_rq_fn *fn, mb_rq_done *done, void *ctx);

/* A snapshot of the queue's health, readable from the loop at any time. */
typedef struct mb_rq_health {
    int connected;                  /* the thread's store is connected now */
    long long last_ok_ms;           /* monotonic ms of the last exchange Redis answered (0: none) */
    long long age_ms;               /* ms since then (-1: never) */
    size_t depth;                   /* requests submitted whose done has not run yet */
    unsigned long long requests;    /* requests run */
    unsigned long long commands;    /* Redis commands sent by the thread's store */
    unsigned long long round_trips; /* and round trips */
} mb_rq_health;

void mb_rq_health_get(const mb_rq *q, mb_rq_health *out);

/* 1 when Redis answered within the last max_age_ms (and the store is connected). */
int mb_rq_ready(const mb_rq *q, long long max_age_ms);

/* Stops taking requests (submit returns -1 from now on), lets the thread run what is queued
 * without opening a new connection (a request that needs one fails fast with MB_AGAIN,
 * "shutting down"), joins it, and calls every remaining done on the calling thread (the loop
 * thread, its loop no longer running).  A done that submits again gets -1.  Idempotent. */
void mb_rq_stop(mb_rq *q);

/* mb_rq_stop, then frees.  Accepts NULL. */
void mb_rq_free(mb_rq *q);

#endif
