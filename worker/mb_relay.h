/* mb_relay.h: the outbox relay: status events from Redis to Kafka, in order, none lost. */
#ifndef MB_RELAY_H
#define MB_RELAY_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "mb_loop.h"

struct mb_store;

typedef struct mb_relay mb_relay;

typedef struct mb_relay_opts {
    const char *topic;     /* status topic, borrowed for the relay's life */
    const char *worker_id; /* borrowed; names the relay lease tokens */
    long lease_ms;         /* relay lease of a shard */
    size_t batch;          /* entries read per shard per round */
    long idle_ms;          /* how often an empty shard is looked at again */
} mb_relay_opts;

/* New relay over a store and an idempotent producer (both borrowed; the producer's
 * message.timeout.ms must be below o->lease_ms), counting into m
 * (borrowed).  NULL on out-of-memory. */
mb_relay *mb_relay_new(struct mb_store *st, rd_kafka_t *producer, const mb_relay_opts *o,
                       mb_worker_metrics *m);

/* Sends the relay's Redis work through fn(submitter, ...) from now on (the loop's Redis
 * thread); until then (and after mb_relay_release) it runs on the store given at creation. */
void mb_relay_set_submit(mb_relay *r, mb_submit_fn *fn, void *submitter);

/* One bounded round: renews the leases of shards with a batch out (every lease/3); for
 * shards with no batch in flight, takes/renews their relay lease and reads their next entries (one pipelined round trip), produces them keyed by mesh key with
 * the traceparent header; trims the entries of batches fully reported (the delivered
 * prefix only: a failed delivery is retried from that entry, never reordered). */
void mb_relay_tick(mb_relay *r, long long now_ms);

/* Entries produced whose delivery report has not come yet. */
size_t mb_relay_inflight(const mb_relay *r);

/* The producer to send with from now on (borrowed).  NULL while the loop replaces a dead
 * one: nothing new is sent (reports of the old one are still served). */
void mb_relay_set_producer(mb_relay *r, rd_kafka_t *producer);

/* The old producer is destroyed: its missing reports never come.  Counts them as failed
 * (sent again: at-least-once), trims what was delivered, gives up every relay lease (so
 * another worker can go on at once) and takes fresh tokens. */
void mb_relay_producer_lost(mb_relay *r);

/* Gives up every relay lease this worker holds (at shutdown, once nothing is in flight and
 * the Redis queue has stopped: synchronous, on the store given at creation), so another
 * worker takes over at once instead of after the lease. */
void mb_relay_release(mb_relay *r);

void mb_relay_free(mb_relay *r);

/* Looks at the shard's outbox at the next tick (unless a batch is out): the loop calls it
 * when the shard's wake counter moved (mb_store_stirs), so an empty shard need not be polled
 * often (idle_ms). */
void mb_relay_wake(mb_relay *r, int shard);

/* The same for events this worker queued itself, but only on a shard whose relay lease it
 * held at its last look: another worker's relay sees them at its next read of the wake
 * counters, and looking at a shard it does not hold would only cost a peek per event. */
void mb_relay_wake_own(mb_relay *r, int shard);

/* Shards whose relay lease this worker held at its last look (metrics). */
int mb_relay_held(const mb_relay *r);

#endif
