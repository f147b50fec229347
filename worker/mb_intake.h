/* mb_intake.h: order intake: the orders consumer, acceptance into Redis, the DLQ. */
#ifndef MB_INTAKE_H
#define MB_INTAKE_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "mb_loop.h"

struct event_base;
struct mb_store;

typedef struct mb_intake mb_intake;

typedef struct mb_intake_opts {
    const char *group;        /* consumer group, borrowed */
    const char *orders_topic; /* borrowed */
    const char *dlq_topic;    /* borrowed */
    const char *client_id;    /* borrowed */
    size_t max_pending;       /* messages held in memory (waiting for Redis or the DLQ) */
    size_t batch;             /* orders accepted per Redis round trip */
} mb_intake_opts;

/* New intake: a consumer subscribed to the orders topic, woken through a pipe on base (the
 * consumer queue's io event); DLQ messages go through producer (borrowed, idempotent).
 * NULL with the reason in err (bad KAFKA_* settings). */
mb_intake *mb_intake_new(struct event_base *base, struct mb_store *st, rd_kafka_t *producer,
                         const mb_intake_opts *o, mb_worker_metrics *m, char *err, size_t errlen);

/* Bounded work: retries what waits for Redis (with backoff), re-sends DLQ copies refused
 * for a transient reason (with a per-message backoff), records copies refused for good as
 * undeliverable, consumes what is queued, stores offsets of what is done. */
void mb_intake_tick(mb_intake *in, long long now_ms);

/* Stops taking messages (drain).  What is already taken still completes. */
void mb_intake_stop(mb_intake *in);

/* Sends intake's Redis work (accepts, cancels, rejects, DLQ records) through
 * fn(submitter, ...) from now on (the loop's Redis thread); until then it runs on the store
 * given at creation.  One request is out at a time; an order's offset is stored only after
 * its request's completion saw it in Redis. */
void mb_intake_set_submit(mb_intake *in, mb_submit_fn *fn, void *submitter);

/* fn(ctx, key) runs on the loop thread for each mesh key whose status event (Accepted,
 * NameConflict, InvalidOrder) this intake has seen queued in Redis: the worker's relay looks
 * at that outbox now instead of at its next read of the wake counters. */
void mb_intake_set_on_events(mb_intake *in, void (*fn)(void *ctx, const char *key), void *ctx);

/* The DLQ producer from now on (borrowed); NULL while the loop replaces a failed one (DLQ
 * copies wait).  Reports of the old one must all have been served. */
void mb_intake_set_producer(mb_intake *in, rd_kafka_t *producer);

/* The old producer is destroyed: DLQ copies whose report never came are sent again. */
void mb_intake_producer_lost(mb_intake *in);

/* Messages taken and not yet done (waiting for Redis or a DLQ delivery report). */
size_t mb_intake_pending(const mb_intake *in);

/* 1 once the consumer has been through a rebalance (joined its group). */
int mb_intake_joined(const mb_intake *in);

/* Stores what is done, closes the consumer (commits stored offsets, leaves the group),
 * frees.  Messages not done are not committed: another member gets them again. */
void mb_intake_free(mb_intake *in);

/* Consumer lag of each assigned partition from what librdkafka knows locally (the high
 * watermark its last fetch saw, minus the position): no broker round trip, cheap enough for
 * every scrape.  fn(arg, topic, partition, lag) for each partition whose figures are known. */
void mb_intake_lag(mb_intake *in,
                   void (*fn)(void *arg, const char *topic, int partition, long long lag),
                   void *arg);

#endif
