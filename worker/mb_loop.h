/* mb_loop.h: the worker's one event loop: Kafka intake, outbox relay, the saga tick, drain. */
#ifndef MB_LOOP_H
#define MB_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "mb_conf.h"

struct event_base;
struct evbuffer;
struct mb_store;
struct mb_rq;

typedef struct mb_loop mb_loop;

/* Counters the modules of the worker bump and /metrics prints.  Only the loop thread
 * touches them (librdkafka callbacks run from rd_kafka_poll on the loop thread). */
typedef struct mb_worker_metrics {
    uint64_t orders_consumed;   /* messages taken from the orders topic */
    uint64_t orders_accepted;   /* new jobs */
    uint64_t orders_duplicate;  /* redelivered orders joined to their job */
    uint64_t orders_conflict;   /* NameConflict */
    uint64_t orders_dlq;        /* messages delivered to the DLQ topic */
    uint64_t dlq_undeliverable; /* DLQ copies refused for good: recorded, offset moved on */
    uint64_t dlq_retries;       /* DLQ copies refused for a transient reason (retried) */
    uint64_t cancels;           /* cancel orders applied to a job */
    uint64_t cancels_unknown;   /* cancel orders for no known job */
    uint64_t redis_retries;     /* intake waits for Redis */
    uint64_t events_relayed;    /* status events delivered to Kafka */
    uint64_t relay_failures;    /* deliveries that failed (retried later) */
    uint64_t ticks;
    uint64_t tick_overruns; /* ticks that took longer than the tick period */
} mb_worker_metrics;

/* What the saga engine plugs into the loop (the loop knows nothing else of it).  Every
 * function is called on the loop thread; ctx is the engine, borrowed.  Any may be NULL. */
typedef struct mb_loop_saga {
    void *ctx;
    void (*tick)(void *ctx);                          /* each tick: renew leases, claim, advance */
    void (*drain)(void *ctx);                         /* once, on SIGTERM: stop claiming */
    size_t (*inflight)(void *ctx);                    /* jobs still held: the drain waits for 0 */
    void (*metrics)(void *ctx, struct evbuffer *out); /* extra Prometheus lines */
} mb_loop_saga;

/* The worker's configuration table (mb_conf keys); ends with a NULL name. */
extern const mb_conf_key mb_loop_conf_keys[];

/* Builds the loop from a loaded configuration (borrowed; must outlive the loop): event
 * base, store, producer, consumer, relay, admin HTTP.  Redis and Kafka being unreachable
 * is not an error here (the loop retries); bad settings are.  Returns a new loop
 * (mb_loop_free) or NULL with the reason in err. */
mb_loop *mb_loop_new(const mb_conf *conf, char *err, size_t errlen);

/* Registers the saga engine (copied).  Call before mb_loop_run. */
void mb_loop_set_saga(mb_loop *l, const mb_loop_saga *saga);

/* Runs until drained after SIGTERM/SIGINT (returns 0), or a second signal (returns 1),
 * or a fatal error (returns 2).  Before returning it stops the Redis queue (mb_rq_stop):
 * every request's done has run, and later submits are refused. */
int mb_loop_run(mb_loop *l);

/* Borrowed accessors for the saga engine's set-up (valid until mb_loop_free). */
struct event_base *mb_loop_base(mb_loop *l);
struct mb_store *mb_loop_store(mb_loop *l); /* synchronous: blocks the loop; prefer the queue */
struct mb_rq *mb_loop_rq(mb_loop *l);       /* the Redis queue (its own thread and connection) */
const char *mb_loop_worker_id(const mb_loop *l);
/* 1 once the heartbeat found every live worker on this build's job record layout
 * (mb_beat_peers_current). */
int mb_loop_peers_current(const mb_loop *l);
mb_worker_metrics *mb_loop_metrics(mb_loop *l);

/* Grows each time the loop saw a shard's wake counter move (mb_store_stirs, read every
 * 250 ms): work queued by any worker.  The saga engine claims when it changes. */
unsigned long long mb_loop_stirred(const mb_loop *l);

/* This worker's status events for a mesh key are in Redis (a confirmed acceptance or
 * checkpoint): if it relays that key's shard, it looks at the outbox at the next tick rather
 * than at the next read of the wake counters (up to 250 ms later).  ctx is the loop
 * (mb_saga_set_on_events). */
void mb_loop_events_queued(void *ctx, const char *key);

/* 1 when Redis answered the Redis thread within the last 5 s, the consumer has joined its
 * group and the worker is not draining (/readyz). */
int mb_loop_ready(mb_loop *l);

/* Appends the Prometheus text of every counter to out (/metrics). */
void mb_loop_metrics_text(mb_loop *l, struct evbuffer *out);

void mb_loop_free(mb_loop *l);

/* ---- shared by the loop's modules: delivery reports of our producer are dispatched on
 * the message opaque, whose first member is this header. */
typedef struct mb_dr_hdr {
    void (*on_dr)(struct mb_dr_hdr *h, const rd_kafka_message_t *m);
} mb_dr_hdr;

long long mb_loop_now_ms(void); /* wall clock, epoch ms */

/* ---- Redis work of the loop's modules, as requests: fn runs with a store (on the Redis
 * thread when there is one: it touches only ctx), then done runs on the loop thread.
 * A submitter returns 0 (done will run exactly once) or -1 (not queued; done never runs).
 * Without a submitter a module runs fn on its own store and then done, at once. */
typedef void mb_req_fn(struct mb_store *st, void *ctx);
typedef void mb_req_done(void *ctx);
typedef int mb_submit_fn(void *submitter, mb_req_fn *fn, mb_req_done *done, void *ctx);

#endif
