/* mb_store.h: the durable job store in Redis: jobs, leases with fencing, the status outbox. */
#ifndef MB_STORE_H
#define MB_STORE_H

#include <stddef.h>

#include <jansson.h>

#include "mb_err.h"
#include "mb_event.h"

/* The key layout, the Lua scripts and the Redis Cluster story are described at the
 * top of mb_store.c; nothing outside that file knows a key name. */

typedef struct mb_store mb_store;

#define MB_STORE_DEFAULT_SHARDS 16
#define MB_STORE_MAX_SHARDS     1024

/* Opens a store over REDIS_URL-style url (borrowed for the call).  Connecting is lazy:
 * the first call (or mb_store_ping) connects, loads the scripts, and checks that the
 * shard count matches the one the data was written with.  timeout_ms bounds connecting
 * and each round trip.  worker_id (copied) names lease owners.
 * Returns a new store (mb_store_free), or NULL with err set (MB_FATAL: bad URL or args).
 * The process must ignore SIGPIPE (hiredis writes to a socket the server may have closed).
 * Not thread-safe: one store per thread. */
mb_store *mb_store_new(const char *url, int shards, int timeout_ms, const char *worker_id,
                       mb_error *err);
void mb_store_free(mb_store *st);

/* Connects if needed and PINGs.  MB_OK, MB_AGAIN (unreachable: the caller retries later;
 * after a failed connection attempt or a lost connection, no new attempt is made for a
 * pause that grows from 50 ms to 2 s, counted from the failure: calls meanwhile fail at once
 * with MB_AGAIN), MB_FATAL (credentials refused, shard count mismatch). */
mb_status mb_store_ping(mb_store *st, mb_error *err);

/* Retention of finished jobs (see mb_store.c): records and histories of jobs that ended
 * Failed, Cancelled or Deleted, and rejected orders' records with their raw bytes, expire
 * retain_ms after they finished; a finished order's order-id index entry (which keeps a
 * redelivery from starting it again) expires tombstone_ms after.  0 = never (the default
 * of a new store).  Applies to the scripts this store runs from now on. */
void mb_store_set_retention(mb_store *st, long long retain_ms, long long tombstone_ms);

/* 1 while the last exchange with Redis succeeded. */
int mb_store_connected(const mb_store *st);

/* Monotonic ms (CLOCK_MONOTONIC) of the last exchange Redis answered completely, 0 if none. */
long long mb_store_last_ok_ms(const mb_store *st);

/* offline = 1: keep using the current connection but never open a new one; a call that
 * needs one fails at once with MB_AGAIN ("shutting down").  For a bounded shutdown. */
void mb_store_set_offline(mb_store *st, int offline);

int mb_store_shards(const mb_store *st);
const char *mb_store_worker_id(const mb_store *st); /* borrowed until mb_store_free */

/* The shard of a mesh key "<account_id>/<mesh_name>": FNV-1a 32 % shards. */
int mb_store_shard_of(const mb_store *st, const char *mesh_key);

/* Commands sent to Redis since mb_store_new (EVALSHA counts one), and round trips. */
unsigned long long mb_store_commands(const mb_store *st);
unsigned long long mb_store_round_trips(const mb_store *st);

/* The Redis server's clock (TIME), in ms since the epoch: the clock of every lease end,
 * due time and timestamp the store writes.  Compare a job's times with this, not with the
 * local clock. */
mb_status mb_store_time_ms(mb_store *st, long long *now_ms, mb_error *err);

/* ------------------------------------------------------------------ jobs */

/* One job as stored.  Everything is owned by the struct (mb_job_free). */
typedef struct mb_job {
    char *order_id; /* the job id */
    char *key;      /* "<account_id>/<mesh_name>": Kafka key, seq scope */
    int shard;
    json_t *order;     /* the order envelope as accepted; NULL for rejected orders */
    json_t *state;     /* the saga's checkpoint document; {} at first */
    char *status;      /* Accepted, Installing, Running, RollingBack, Failed, Cancelled */
    char *step;        /* "" before the first step */
    char *traceparent; /* "" when the order had none */
    char *error_code;  /* "" when none */
    char *error_msg;   /* "" when none */
    char *lease_owner; /* "" when not leased */
    char *saga;        /* the saga that runs it: "create" (also for records written before
                            the field) */
    long long fence;   /* bumped by every claim: proves the lease in checkpoints */
    long long lease_until_ms;
    long long lease_left_ms; /* from a claim: the lease's time left when the claim ran */
    long long created_ms, updated_ms;
    long long next_run_ms; /* 0 when terminal */
    long long claims;      /* how many times the job was claimed (crash loops show here) */
    long long checkpoints; /* checkpoints written so far (see mb_checkpoint.ck) */
    int attempt;
    int cancel_requested;
} mb_job;

void mb_job_free(mb_job *j);
void mb_job_free_array(mb_job **jobs, size_t n); /* frees each and the array */

/* Status events: the caller builds the CloudEvent (type com.meshbuy.mesh.status.v1) with
 * any id and data.seq; the store replaces "id" with "<key>#<seq>" and data.seq with the
 * next number of the key's counter inside the same atomic script that writes the state,
 * so every event ever queued under a key has a gapless seq.  The event's "traceparent"
 * attribute becomes the Kafka header.  Events are borrowed for the call. */

/* ---- accept (intake) */
typedef struct mb_accept {
    const char *order_id; /* borrowed for the call, as every field */
    const char *account_id;
    const char *mesh_name;
    const char *order_json;       /* the envelope to store (NUL-terminated) */
    const char *traceparent;      /* NULL or "" when none */
    const json_t *accepted_event; /* queued when the order is new */
    const json_t *conflict_event; /* queued when the name belongs to another order */
    const char *saga;             /* the saga the job runs; NULL = "create".  "delete" claims no
                         name: it snapshots the mesh's create (mb_store.c) */
    const char *mesh_id;          /* the order's mesh id (mb_order_mesh_id), kept on the record; a
                            delete's accepted_event gets its target's instead (NULL: none) */
} mb_accept;

typedef enum mb_accept_verdict {
    MB_ACCEPT_NEW = 1,       /* job created, due now, Accepted queued */
    MB_ACCEPT_DUPLICATE = 2, /* order id known: nothing written */
    MB_ACCEPT_CONFLICT = 3,  /* name taken: a Failed record kept, Failed queued */
} mb_accept_verdict;

typedef struct mb_accept_result {
    mb_accept_verdict verdict;
    long long seq;  /* seq of the event queued (0 for duplicates) */
    char other[80]; /* conflict: the order holding the name; duplicate: its status */
} mb_accept_result;

/* Runs n accepts in one round trip.  Each request gets st[i] (MB_OK with res[i], or its
 * error in errs[i] when errs is not NULL).  Returns MB_OK when every one is MB_OK, else
 * the first non-OK status (MB_AGAIN: Redis unreachable, nothing can be assumed about
 * requests whose status is MB_AGAIN: retrying them is safe). */
mb_status mb_store_accept(mb_store *st, const mb_accept *reqs, size_t n, mb_accept_result *res,
                          mb_status *sts, mb_error *errs);

/* ---- reject: an invalid order whose identity could be read */
typedef struct mb_reject {
    const char *order_id, *account_id, *mesh_name; /* valid per mb_order rules */
    const char *traceparent;                       /* NULL or "" */
    const char *reason;                            /* why it was refused */
    const void *raw;                               /* the message bytes (kept up to 64 KiB) */
    size_t raw_len;
    const json_t *failed_event; /* queued unless the order id is known */
} mb_reject;

/* Keeps a Failed record (status Failed, error InvalidOrder, the raw bytes) and queues the
 * event, unless the order id is already known (then *queued = 0, nothing written).
 * MB_OK / MB_AGAIN / MB_PERM / MB_FATAL. */
mb_status mb_store_reject(mb_store *st, const mb_reject *r, int *queued, mb_error *err);

/* ---- claim */
/* Leases up to max due jobs (score <= now, Redis's clock) over all shards in one round
 * trip: each gets fence+1, lease_owner = this worker, lease_until = now + lease_ms, and its
 * due score moves to lease_until, so a dead worker's job becomes due again by itself.  A
 * job whose unexpired lease this worker already holds is never returned.  The lease ends
 * lease_ms after the script ran, so a caller that counts lease_ms from before it sent the
 * claim (on its own monotonic clock) never believes it holds a lease longer than it does.
 * claim_id (copied) names the claim: a claim whose outcome is unknown (MB_AGAIN: it may have
 * landed, its reply lost) is sent again with the same id and resend = 1, and returns the jobs
 * the lost one took (in each shard where it landed; elsewhere it claims afresh), each with
 * lease_left_ms as its lease stands.  Ids must differ between a worker's claims (and its
 * lives, under one worker id).  *jobs is a new array of n new jobs (mb_job_free_array); *n
 * may be 0 (then *jobs NULL). */
mb_status mb_store_claim(mb_store *st, long long lease_ms, size_t max, const char *claim_id,
                         int resend, mb_job ***jobs, size_t *n, mb_error *err);

/* After the last successful claim: in how many ms (Redis's clock, counted when the claim
 * ran) the earliest job of any shard is due, leases' ends included; -1 when every due set
 * was empty.  A worker that claimed nothing need not claim again before then, unless
 * mb_store_stirs changes. */
long long mb_store_next_due_in_ms(const mb_store *st);

/* Each shard's wake counter into wake[0..shards-1], in one command (MGET).  Every script
 * that queues a status event or makes a job due for any worker (accept, reject, checkpoints
 * that queue events or hand a job back, cancel, requeue, rewrite) bumps its shard's counter:
 * while a shard's counter stays the same, an idle worker has nothing new to claim or relay
 * there. */
mb_status mb_store_stirs(mb_store *st, unsigned long long *wake, mb_error *err);

/* ---- checkpoint */

/* One step record of a split checkpoint (below). */
typedef struct mb_ck_record {
    int index;         /* the step's place in its saga, 0..99: records read back in this order */
    const char *name;  /* the step: state.steps.<name> */
    const json_t *rec; /* the record (borrowed) */
} mb_ck_record;

typedef struct mb_checkpoint {
    const char *order_id;               /* the job, borrowed */
    const char *key;                    /* its mesh key */
    long long fence;                    /* the fence of the caller's lease */
    const json_t *state;                /* new checkpoint document, or NULL = unchanged */
    const char *status;                 /* NULL = unchanged */
    const char *step;                   /* NULL = unchanged */
    int attempt;                        /* < 0 = unchanged */
    const char *error_code, *error_msg; /* NULL = unchanged, "" = clear */
    /* < 0: terminal (off the due set, lease cleared).  0: the caller goes on with the job:
     * the lease is kept and extended to lease_ms from now.  > 0: the lease is released and
     * the job is due that many ms from now, for any worker.  "Now" is Redis's clock. */
    long long run_in_ms;
    long long lease_ms;
    int release_name; /* free the mesh name if this order holds it (compensated reserve) */
    const char *release_name_of; /* with release_name: free it only if that order holds it
                                    (a delete frees its create's); NULL = this order */
    const char *history;         /* a line for the job's history (capped list), NULL = none */
    /* Makes a retry after a lost reply safe: when > 0 it must be the job's checkpoints + 1
     * (the job's count as claimed, plus one per checkpoint since).  A checkpoint whose ck
     * is already written is not applied twice: it succeeds with already_applied = 1 (so
     * its events are not queued twice).  0 = no such check. */
    long long ck;
    json_t *const *events; /* status events to queue, in order (borrowed) */
    size_t n_events;
    /* More status events, already written out (mb_event_build_parts): queued after events,
     * in order (borrowed).  The worker's way: it builds no event objects. */
    const mb_event_parts *parts;
    size_t n_parts;
    /* Split form: state is written without its "steps" member, and only the step records
     * listed here are (re)written, each on its own; the others keep what was written
     * before, so a step's checkpoint costs its own record, not the whole document.  The
     * first split checkpoint of a claim lists every record of state.steps: one written
     * whole (accept, rewrite, a checkpoint without split) has them inside the document.
     * Readers always get the whole document back (mb_job.state). */
    int split;
    const mb_ck_record *records;
    size_t n_records;
} mb_checkpoint;

typedef struct mb_checkpoint_result {
    long long last_seq;   /* seq of the last event queued, 0 if none */
    int cancel_requested; /* the job's cancel flag as it is now */
    int already_applied;  /* ck was written before: nothing done now */
} mb_checkpoint_result;

/* Writes n checkpoints in one round trip, each atomic.  sts[i]: MB_OK; MB_PERM with code
 * "StaleFence" (another worker holds the job now: drop it, write nothing more) or
 * "NoSuchJob"; MB_AGAIN (unreachable: unknown whether it was written; the fence makes a
 * retry safe); MB_FATAL (script error).  res and errs may be NULL.  Returns the first
 * non-OK status, or MB_OK. */
mb_status mb_store_checkpoint(mb_store *st, const mb_checkpoint *cks, size_t n,
                              mb_checkpoint_result *res, mb_status *sts, mb_error *errs);

/* ---- renew */
typedef struct mb_lease_ref {
    const char *order_id; /* borrowed */
    const char *key;
    long long fence;
} mb_lease_ref;

/* Extends n leases to now + lease_ms (Redis's clock; and their due scores) in one round
 * trip.  sts[i]
 * as for checkpoints (StaleFence when lost); cancel[i] (may be NULL) gets the job's
 * cancel flag so a worker sees a cancel while it holds the job. */
mb_status mb_store_renew(mb_store *st, const mb_lease_ref *refs, size_t n, long long lease_ms,
                         mb_status *sts, int *cancel, mb_error *errs);

/* Hands back n jobs this worker gave up (their leases ran out on its own clock): each
 * whose lease is still this worker's under refs[i].fence (a renewal or checkpoint landed,
 * its reply lost) becomes due now, lease cleared, instead of waiting out that lease.  One
 * round trip.  back[i] (may be NULL): 1 if handed back, 0 if the lease was no longer ours
 * (ended, or another worker's).  sts/errs as for renewals. */
mb_status mb_store_handback(mb_store *st, const mb_lease_ref *refs, size_t n, mb_status *sts,
                            int *back, mb_error *errs);

/* ---- cancel */
/* Sets the cancel flag of the job for order_id (mesh_key may be NULL: the order index is
 * used).  An unleased job that is not terminal (mb_store_status_terminal) becomes due
 * now; a leased one is told through renew/checkpoint replies; a terminal one stays as it
 * is.  *found = 0 when no such job; status (may be NULL) gets the job's status. */
mb_status mb_store_cancel(mb_store *st, const char *order_id, const char *mesh_key, int *found,
                          char *status, size_t status_len, mb_error *err);

/* The statuses after which a job never runs again; the store's scripts use the same list. */
#define MB_STORE_TERMINAL(X) X(Running) X(Failed) X(Cancelled) X(NeedsAttention) X(Deleted)

/* 1 if status is one of MB_STORE_TERMINAL. */
int mb_store_status_terminal(const char *status);

/* ---- reading (meshctl) */
/* The job of order_id (via the order index), as a new job, or *out NULL when unknown. */
mb_status mb_store_get(mb_store *st, const char *order_id, mb_job **out, mb_error *err);

/* The job's history lines, oldest first: a new JSON array of strings (json_decref). */
mb_status mb_store_history(mb_store *st, const mb_job *job, json_t **out, mb_error *err);

/* Calls fn for every job whose status is status (NULL = all), shard by shard, from the
 * status index (oldest status change first, pages of 200 records a round trip): no
 * keyspace walk.  Not a snapshot: a job changing status meanwhile may be missed or seen
 * twice.  The first listing over data written before the index existed walks the keyspace
 * once instead (SCAN), indexing every job it meets.
 * fn gets a borrowed job; returning non-zero stops the walk. */
mb_status mb_store_list(mb_store *st, const char *status, int (*fn)(void *arg, const mb_job *job),
                        void *arg, mb_error *err);

/* Like mb_store_list but walks the keyspace with SCAN and one HGETALL a job: slow, for
 * records written before the status index.  Calls fn for every job whose status matches
 * status (NULL = all), shard by shard with SCAN (no blocking KEYS).  fn gets a borrowed job; returning non-zero stops the walk. */
mb_status mb_store_scan(mb_store *st, const char *status, int (*fn)(void *arg, const mb_job *job),
                        void *arg, mb_error *err);

/* Makes a job due now, lease cleared (an SRE replay, after the caller reset its state
 * with a checkpoint if needed).  Bumps the fence so a worker still running it stops. */
mb_status mb_store_requeue(mb_store *st, const char *order_id, mb_error *err);

/* ---- the DLQ record (what was sent to the DLQ topic, for meshctl) */
typedef struct mb_dlq_record {
    const char *reason, *error_class; /* borrowed */
    const char *topic;
    int partition;
    long long offset;
    const char *key;      /* may be NULL */
    const char *order_id; /* may be NULL or "" */
    size_t size;
    long long now_ms;
    /* NULL or "": the copy is on the DLQ topic.  Else why the producer refused the copy for
     * good (too large for the broker, DLQ topic missing or not authorized): the message is
     * only at its origin (topic/partition/offset), which meshctl dlq show/redrive read. */
    const char *undeliverable;
} mb_dlq_record;

/* Appends to a capped stream (the last 10,000 records).  Fields: reason, class, topic,
 * partition, offset, key, order_id, size, at, and dlq ("delivered" or "undeliverable") with
 * dlq_error (the producer's refusal) when undeliverable. */
mb_status mb_store_dlq_record(mb_store *st, const mb_dlq_record *r, mb_error *err);

/* Reads the newest max DLQ records as a new JSON array of objects (json_decref). */
mb_status mb_store_dlq_list(mb_store *st, size_t max, json_t **out, mb_error *err);

/* ---- SRE operations (meshctl) */

/* A rewrite of a job by an operator (replay, rollback).  Strings borrowed; NULL = unchanged
 * ("" clears), attempt < 0 = unchanged. */
typedef struct mb_rewrite {
    const char *order_id, *key;
    const json_t *state;
    const char *status, *step;
    int attempt;
    const char *error_code, *error_msg;
    const char *history;    /* a history line, NULL = none */
    int clear_cancel;       /* drop the cancel flag */
    long long expect_fence; /* the job as the caller read it: refused if it moved since */
    long long expect_ck;
    int claim_name; /* take the mesh name back (a replay after compensation gave it
                                up); refused with "NameConflict" if another order holds it */
} mb_rewrite;

/* Rewrites the job atomically and makes it due now for any worker, lease cleared; bumps the
 * fence (a worker still running it stops at its next checkpoint).  MB_PERM with code
 * "Changed" (fence or checkpoint count differ from expect_*: read again), "Leased" (a worker
 * holds an unexpired lease), "NoSuchJob", "NameConflict" (claim_name, taken meanwhile). */
mb_status mb_store_rewrite(mb_store *st, const mb_rewrite *w, mb_error *err);

/* Before an SRE re-publishes a DLQ'd order: deletes the Failed InvalidOrder record of
 * order_id (so the corrected order is accepted, not joined as a duplicate), noting line in
 * its history.  *forgotten = 1 if deleted, 0 if there was no record.  MB_PERM "Exists" when
 * the order id belongs to a real job. */
mb_status mb_store_forget_rejected(mb_store *st, const char *order_id, const char *line,
                                   int *forgotten, mb_error *err);

/* Appends a line to the job's history (capped at 200 lines). */
mb_status mb_store_history_add(mb_store *st, const char *key, const char *order_id,
                               const char *line, mb_error *err);

/* A DLQ record re-published by an SRE.  Strings borrowed. */
typedef struct mb_dlq_redrive {
    const char *dlq_id; /* the mb:dlq record id */
    const char *by;     /* who */
    const char *topic;  /* where it was published */
    int partition;
    long long offset;
    const char *key;
    const char *order_id; /* "" when the message did not parse */
    int edited;           /* a corrected order, not the original bytes */
    long long now_ms;
} mb_dlq_redrive;

/* Appends to a capped stream (the last 10,000). */
mb_status mb_store_dlq_redrive_record(mb_store *st, const mb_dlq_redrive *d, mb_error *err);

/* The newest max redrive records, newest first, as a new JSON array of objects of strings
 * (dlq_id, by, topic, partition, offset, key, order_id, edited, at, and the stream "id"). */
mb_status mb_store_dlq_redrives(mb_store *st, size_t max, json_t **out, mb_error *err);

/* ------------------------------------------------------------------ outbox (relay) */

/* One queued status event.  Strings point into the entry (borrowed until the batch is
 * freed). */
typedef struct mb_outbox_entry {
    const char *key;         /* Kafka key */
    const char *traceparent; /* "" when none */
    const char *event;       /* the CloudEvent JSON */
    size_t event_len;
} mb_outbox_entry;

typedef struct mb_outbox_batch {
    int shard;
    int lease_only; /* in: take or renew the lease, read no entries (a shard the caller does
                       not hold yet: its outbox is another worker's to relay) */
    int held;       /* 1 if this worker holds the shard's relay lease */
    size_t n;
    mb_outbox_entry *entries;
    void *priv;
} mb_outbox_batch;

/* For each of n shards: takes or renews the shard's relay lease (token identifies this
 * holder, lease_ms its life) and, if it holds it and the batch is not lease_only, reads the
 * first max entries (max 0: none), in one round trip.
 * batches[i].shard must be set by the caller; the rest is filled.  Free each batch with
 * mb_outbox_batch_clear. */
mb_status mb_store_outbox_peek(mb_store *st, const char *const *tokens, mb_outbox_batch *batches,
                               size_t n, long long lease_ms, size_t max, mb_error *err);
void mb_outbox_batch_clear(mb_outbox_batch *b);

/* Removes the first count entries of the shard's outbox if token still holds its relay
 * lease.  *removed = 1 if done, 0 if the lease was lost (nothing removed). */
mb_status mb_store_outbox_ack(mb_store *st, int shard, const char *token, size_t count,
                              int *removed, mb_error *err);

/* Gives up the shard's relay lease if token holds it. */
mb_status mb_store_outbox_release(mb_store *st, int shard, const char *token, mb_error *err);

/* Per-shard depths for metrics, read in one round trip (4 commands a shard: run it at a
 * bounded rate).  due: jobs due by now_ms (the caller's clock: a gauge needs no more) and not
 * held by a live lease; delayed: due later, leased jobs included (a lease's end is its due
 * score); attention: jobs in NeedsAttention (from the status index). */
typedef struct mb_store_depth {
    long long outbox, due, delayed, attention;
} mb_store_depth;

/* Fills depth[0..shards-1] (the caller's array of mb_store_shards entries). */
mb_status mb_store_depths(mb_store *st, long long now_ms, mb_store_depth *depth, mb_error *err);

/* Entries waiting in all outboxes (one pipelined LLEN per shard). */
mb_status mb_store_outbox_len(mb_store *st, long long *total, mb_error *err);

/* ------------------------------------------------------------------ workers (meshctl workers) */

/* What a worker says of itself in its heartbeat.  Strings borrowed for the call. */
typedef struct mb_worker_info {
    const char *host;
    const char *version;
    const char *admin; /* "addr:port" of /healthz /metrics, NULL or "" when off */
    long pid;
    long long started_ms; /* wall clock of the worker's start */
    long long every_ms;   /* the beat period: a record not refreshed for a few is late */
    long long ttl_ms;     /* the record expires this long after the last beat */
    long long lease_ms;   /* the worker's job lease */
    int sagas;            /* 1 if it runs sagas (0: intake and relay only) */
} mb_worker_info;

/* The job record layout this build writes and reads: 2 = split checkpoints (mb_checkpoint).
 * Workers say theirs in the heartbeat. */
#define MB_STORE_LAYOUT 2

/* Writes this worker's heartbeat (its id: the store's worker id): the record, expiring
 * ttl_ms from now, with its layout, and its entry in the index of workers (entries of
 * workers not seen for a day are dropped).  "seen" is Redis's clock.  *peers_current (may
 * be NULL): 1 when every live worker's layout is MB_STORE_LAYOUT or later, 0 while one of
 * an older build (which says none) is alive.  One script, one round trip. */
mb_status mb_store_worker_beat(mb_store *st, const mb_worker_info *w, int *peers_current,
                               mb_error *err);

/* Removes this worker's heartbeat record (a clean exit: it is not late, it is gone); its
 * index entry stays, with when it last beat. */
mb_status mb_store_worker_gone(mb_store *st, mb_error *err);

/* Every worker of the index (seen within a day, newest first, at most 1000), as a new JSON
 * array of objects: id, seen_ms (its last beat, Redis's clock), ttl_ms (the record's time
 * left, -1 when it has expired) and record (an object of the heartbeat's fields as strings,
 * null when it expired).  One round trip for the index and one for the records. */
mb_status mb_store_workers(mb_store *st, json_t **out, mb_error *err);

/* The jobs that name a lease owner (leased now, or whose lease ran out and nobody claimed
 * them since), read from the due sets (every unfinished job is there; a leased one with its
 * lease end as score): at most max_per_shard a shard, all shards in one round trip.  A new
 * JSON array of objects: order_id, key, shard, owner, lease_until_ms, status, step, saga.
 * *truncated (may be NULL) = jobs of due sets larger than max_per_shard that were not read. */
mb_status mb_store_leases(mb_store *st, size_t max_per_shard, json_t **out, long long *truncated,
                          mb_error *err);

/* The outboxes and their relay leases, one round trip: a new JSON array, a shard an object:
 * shard, backlog (entries waiting), oldest (the first entry's CloudEvent as an object, null
 * when empty or unreadable), relay_token (the lease holder's token "<worker id>:<n>", null
 * when no worker holds it), relay_worker (the worker id of the token), relay_ttl_ms (-1 when
 * not held). */
mb_status mb_store_outbox_shards(mb_store *st, json_t **out, mb_error *err);

#endif
