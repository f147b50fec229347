/* mb_saga.h: the saga engine: claims due jobs, runs their sagas' steps, checkpoints. */
#ifndef MB_SAGA_H
#define MB_SAGA_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct mb_rq;
struct mb_cloud;
struct mb_catalog;
struct mb_saga_def;

typedef struct mb_saga mb_saga;

typedef struct mb_saga_opts {
    const char *worker_id;       /* lease owner name; copied */
    long lease_ms;               /* lease on a claimed job */
    long lease_margin_ms;        /* a cloud change starts only with its timeout + this left */
    size_t max_inflight;         /* jobs held in memory at once */
    size_t max_cloud_backlog;    /* no claims while this many cloud calls are out (0 = no cap) */
    int park_on_failure;         /* MESHBUY_ON_FAILURE=park: keep effects, stop at Failed */
    long backoff_base_ms;        /* first retry delay cap; doubles per attempt */
    long backoff_max_ms;         /* retry delay cap */
    long poll_ms;                /* how often a waiting step (release install) looks again */
    int poll_learn;              /* skip the looks before most of the effect's usual time
                                    (mb_pace.h, learnt per step from those that ended) */
    long poll_in_memory_ms;      /* a poll's wait up to this long (and a quarter lease) is spent
                                    in memory, lease held; 0 = every wait hands the job back */
    size_t poll_in_memory_jobs;  /* ... while at most this many jobs are held (0 = no cap) */
    long step_deadline_ms;       /* default per-step deadline, retries included */
    long compensate_deadline_ms; /* per compensation of one step, retries included */
    /* The sagas this engine runs (borrowed; must outlive it; mb_saga_defs in the worker, a
     * fake one in a test); a job is run by the one its record names.  At least one. */
    const struct mb_saga_def *const *defs;
    size_t ndefs;
} mb_saga_opts;

#define MB_SAGA_CK_OUT_MAX 4 /* checkpoint requests out at Redis at once */

typedef struct mb_saga_stats {
    uint64_t claimed;    /* job claims taken */
    uint64_t steps_done; /* steps completed */
    uint64_t running;    /* sagas that reached Running */
    uint64_t deleted;    /* sagas that reached Deleted (the delete saga's end) */
    uint64_t failed;     /* sagas that ended Failed (compensated or parked) */
    uint64_t cancelled;  /* sagas that ended Cancelled */
    uint64_t attention;  /* compensations that gave up: NeedsAttention */
    uint64_t retries;    /* transient errors rescheduled with backoff */
    uint64_t lost;       /* jobs dropped: stale fence, refused write, lease ran out */
    uint64_t resends;    /* checkpoints re-sent after an unknown outcome */
    uint64_t ck_held;    /* now: checkpoints waiting for a request out at Redis to return */
} mb_saga_stats;

/* New engine on a loop, over the Redis queue, a cloud client and the catalog
 * (all borrowed; they must outlive it; the queue must be stopped, every
 * request's done run, before mb_saga_free).  Checkpoints queued during a loop
 * turn are sent together at its end, in one pipelined round trip, while fewer than
 * MB_SAGA_CK_OUT_MAX such requests are out; those queued meanwhile wait and go together.
 * NULL with the reason in err. */
mb_saga *mb_saga_new(struct event_base *base, struct mb_rq *rq, struct mb_cloud *cloud,
                     const struct mb_catalog *catalog, const mb_saga_opts *o, char *err,
                     size_t errlen);

/* One turn of the loop's tick: re-sends unconfirmed checkpoints, drops jobs
 * whose lease ran out, renews leases that are getting old, and claims due jobs
 * up to max_inflight (one claim out at a time).  Never waits on Redis. */
void mb_saga_tick(mb_saga *s);

/* Whether checkpoints may be written split (mb_checkpoint): only while every live worker
 * reads that layout (mb_beat_peers_current).  Off at first: whole documents, as before. */
void mb_saga_set_split(mb_saga *s, int on);

/* Claims at the next tick: an idle worker otherwise waits until its next job is due (as its
 * last claim saw it) or 30 s.  The engine calls it when this worker accepted an order or a
 * cancel, or when the loop saw another worker's scripts stir a shard (mb_store_stirs). */
void mb_saga_wake(mb_saga *s);

/* fn(ctx, key) runs on the loop thread with a job's mesh key each time a checkpoint that
 * queued status events is confirmed: the worker's relay can look at that outbox now. */
void mb_saga_set_on_events(mb_saga *s, void (*fn)(void *ctx, const char *key), void *ctx);

/* Stops claiming.  Jobs in flight finish their current step execution and are
 * released at the next boundary (checkpointed, due again for any worker). */
void mb_saga_drain(mb_saga *s);

size_t mb_saga_inflight(const mb_saga *s);
void mb_saga_stats_get(const mb_saga *s, mb_saga_stats *out);

/* How long one execution of a step takes in the worker, from its start to
 * DONE or POLL (cloud calls included, waits between polls not): a Prometheus
 * histogram per step. */
#define MB_SAGA_BUCKETS 10
extern const double mb_saga_bucket_le[MB_SAGA_BUCKETS]; /* seconds; +Inf implied */

typedef struct mb_saga_hist {
    uint64_t bucket[MB_SAGA_BUCKETS + 1]; /* cumulative counts per le, then +Inf */
    double sum;                           /* seconds */
} mb_saga_hist;

/* Number of steps (of every definition, in order), a step's name (static), and a copy of
 * its histogram. */
int mb_saga_steps(const mb_saga *s);
const char *mb_saga_step_name(const mb_saga *s, int i);
void mb_saga_step_hist(const mb_saga *s, int i, mb_saga_hist *out);

/* The usual time of step i's polled effect as learnt (mb_pace.h), in its run or its
 * compensation: ms, -1 while nothing is learnt. */
long long mb_saga_poll_usual_ms(const mb_saga *s, int i, int compensating);

/* How long sagas took, acceptance to end, by definition (mb_saga_defs order) and final
 * status (mb_saga_outcomes): a copy of the histogram (bounds mb_saga_duration_le). */
#define MB_SAGA_OUTCOMES 5
extern const char *const mb_saga_outcomes[MB_SAGA_OUTCOMES];
extern const double mb_saga_duration_le[MB_SAGA_BUCKETS]; /* seconds; +Inf implied */
void mb_saga_duration_hist(const mb_saga *s, size_t def, int outcome, mb_saga_hist *out);

/* Where a checkpoint's time went, one observation per checkpoint a phase: "held" in the
 * engine until its batch went to the Redis thread (the loop turn's end, or longer while
 * MB_SAGA_CK_OUT_MAX requests are out), "queue" behind the thread's earlier requests,
 * "redis" the batch's pipelined round trip, "back" from its end until the batch's completion
 * starts on the loop.  A copy of phase's histogram (bounds mb_saga_checkpoint_le). */
#define MB_SAGA_CK_PHASES 4
extern const char *const mb_saga_ck_phases[MB_SAGA_CK_PHASES];
extern const double mb_saga_checkpoint_le[MB_SAGA_BUCKETS]; /* seconds; +Inf implied */
void mb_saga_checkpoint_hist(const mb_saga *s, int phase, mb_saga_hist *out);

/* Jobs in memory now by the step they are at (compensations at the step they undo):
 * counts has mb_saga_steps entries, indexed as mb_saga_step_hist. */
void mb_saga_inflight_steps(const mb_saga *s, uint64_t *counts);

/* Drops every job still in memory without checkpointing (their leases expire
 * and another worker resumes them), then frees.  Accepts NULL. */
void mb_saga_free(mb_saga *s);

#endif
