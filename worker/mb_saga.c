/* mb_saga.c: the saga engine.
 *
 * The engine knows a saga only through its definition (mb_sagadef.h), chosen by
 * the job record's "saga" field: its steps, its status words and its messages.
 * Below, the create saga's words: Installing is the definition's "active" word,
 * Running its "done" word; the rest are the engine's own.
 *
 * States of a job (the store's "status" field; the saga state document keeps
 * the detail):
 *
 *   Accepted --claim--> Installing --last step--> Running            (terminal)
 *                          |  \--cancel at a step boundary--+
 *                          |                                v
 *                          +--permanent error--------> RollingBack --all undone--> Failed | Cancelled
 *                          |  (or deadline passed)          |
 *                          |                                +--an undo gives up--> NeedsAttention
 *                          +--permanent error, park mode--> Failed (effects kept, state.parked)
 *
 * The state document (json, opaque to the store):
 *   { "step": i, "phase": "run"|"compensate", "attempt": n, "step_started_ms": t,
 *     "outcome": "Failed"|"Cancelled", "outcome_step": name, "parked": bool,
 *     "error": {"step","code","message","retryable"},
 *     "replays": [...], "announce": {"status","message"} (written by meshctl),
 *     "steps": { "<name>": {"status": "running"|"done"|"failed"|"compensating"|"compensated",
 *                           "attempts": n, "started_ms": t, "ended_ms": t,
 *                           "poll_since_ms": t, "poll_last_ms": t (its effect's first
 *                           poll, and the last that saw it under way; mb_pace.h),
 *                           "last_error": {...}, "ck": {...what the step changed...}} } }
 *
 * Invariants:
 * - A job is worked on only under its lease; every write carries the fencing
 *   token, and a refused write (StaleFence) drops the job from memory at once.
 * - The engine reaches Redis only through the Redis queue (mb_rq: one thread,
 *   its own connection): the loop never waits on Redis, so a stalled Redis
 *   stops no cloud callback and no /healthz.
 * - The state is written (with the events that report it, atomically) after
 *   every step, before any step whose undo needs what was observed (SAVE), and
 *   before the job leaves memory (retry, long poll, terminal).  A crash loses at
 *   most the current execution of one step, which steps re-run safely because
 *   they observe before they act.
 * - A short poll (a quarter lease at most) is waited out in memory, lease held
 *   and renewed; a drain wakes it so the job is handed back at the boundary.  While
 *   it waits, its state document is kept as text, not as a tree.
 * - Between executions, the records of the steps not at the saga's position are
 *   kept as text once a split checkpoint has written them, and parsed back when read
 *   (seal, unseal): a job's tree holds little more than the record it works on.
 * - Compensation undoes, in reverse order, every step that started (the failed
 *   one included: it may have half-acted), using only what its ck records.
 * - Checkpoints queued during one loop turn are sent at its end, up to 256 per
 *   pipelined round trip; a job does nothing while its checkpoint is out (the
 *   Redis thread reads its state document meanwhile).
 * - A checkpoint whose outcome is unknown (MB_AGAIN: it may have landed) is
 *   re-sent unchanged, with backoff: its ck number makes a second write a
 *   no-op ("already applied"), its fence refuses it once another worker holds
 *   the job.  It ends written, refused (the job is dropped), or with the lease
 *   run out on this worker's clock (the job is dropped: lost).
 * - Leases are tracked on the monotonic clock from the moment the request that
 *   granted or extended them was sent, never later than Redis starts them.
 *   Each tick, every held job past half its lease is renewed, all in one
 *   pipelined request (one renewal out at a time).  When a lease end passes
 *   without a renewal or checkpoint confirmed, the lease is lost: the job's
 *   cloud calls are cancelled and it leaves memory.
 * - One claim is out at a time.  A claimed job still in memory (an old copy
 *   whose lease ran out) is not run twice: the old copy is dropped, and the new
 *   claim runs only if nothing of the old one is still out.
 * - Side effects are fenced in time: no cloud change starts unless the job's
 *   lease has more than the call's timeout + a margin left (lease_guard).
 */
#include "mb_saga.h"

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <event2/event.h>

#include "mb_catalog.h"
#include "mb_event.h"
#include "mb_jscan.h"
#include "mb_json.h"
#include "mb_log.h"
#include "mb_pace.h"
#include "mb_rq.h"
#include "mb_sagadef.h"
#include "mb_sagadoc.h"
#include "mb_step.h"
#include "mb_store.h"

#define FLUSH_BATCH    256  /* checkpoints per pipelined round trip */
#define MAX_EVENTS     4    /* status events one checkpoint carries at most */
#define RESEND_MIN_MS  100  /* first pause before re-sending an unconfirmed checkpoint */
#define RESEND_MAX_MS  1000 /* its cap */
#define CLAIM_PAUSE_MS 500  /* after a failed claim */
#define HANDBACK_MAX   4096 /* given-up jobs waiting to be handed back; beyond, leases end */
#define RENEW_PAUSE_MS 100  /* after a renewal that did not reach Redis */
/* The jobs' leases are looked at this often at most (and at least 20 times a lease): a
 * lease is renewed at half its life, so a look a little late costs nothing, while a walk
 * over thousands of jobs at every tick cost 1.7% of the worker's time.  Neither fencing
 * nor the start hook's lease check depends on this walk. */
#define LEASE_WALK_MS 250
#define CLAIM_MAX     256 /* jobs per claim: bounded work per completion */
/* An idle worker claims again when the next job is due (as its last claim saw it), when woken
 * (mb_saga_wake), or after this at the latest: a safety net, every shard costs a script. */
#define CLAIM_IDLE_MAX_MS 30000
/* A job that waits in memory at least this long keeps its state document as compact text
 * meanwhile.  With the other steps' records sealed, what is left while its release installs
 * (the top-level members and the step's own record) is still 2.1 kB of allocations as a
 * tree against 0.2 kB of text; a shorter wait is not worth a dump and a parse. */
#define TEXT_WAIT_MIN_MS 100

typedef struct sjob {
    mb_sjob pub; /* first: steps see only this */
    struct mb_saga *saga;
    const mb_saga_def *def;            /* the job's saga (borrowed from the engine's set) */
    int hist_base;                     /* its first step's histogram in saga->hist */
    mb_job *job;                       /* store record: fence, key, status (owned) */
    mb_order *order;                   /* parsed from job->order (owned) */
    const mb_step *step;               /* executing, or NULL between executions */
    int compensating;                  /* step runs its compensate() */
    int pending;                       /* cloud calls in flight */
    int lost;                          /* lease lost: drop once calls return */
    int leave;                         /* checkpointed for later (or ended): leaves memory */
    long long lease_until;             /* ms, monotonic (mono_ms): conservative end of our lease */
    mb_event_parts events[MAX_EVENTS]; /* status events queued for the next checkpoint */
    int nevents;
    char mesh_id[32];  /* stable per order: "mesh-" + hash of key and order id */
    long long exec_us; /* when the current execution started (monotonic) */
    int ck_pending;    /* a checkpoint is queued, out, or waiting to be re-sent */
    int ck_keep;
    long long ck_next_run;
    const char *ck_status;
    int ck_resends;        /* re-sends of the current checkpoint so far */
    long long ck_first_ms; /* monotonic ms the current checkpoint was first sent */
    long long ck_retry_ms; /* monotonic ms of its next re-send */
    long long queued_us;   /* monotonic us the checkpoint was queued (sent or re-sent) */
    int renew_out;         /* in the renewal out: not freed before it is back */
    struct event *wake_ev; /* a short poll's wait in memory (made at the first one) */
    long long sleep_ms;    /* > 0: wait that long once the queued checkpoint is back */
    int sleeping;          /* waiting for wake_ev */
    char *state_text;      /* while sleeping: the state document as text, the tree freed */
    int text_step;         /* with state_text: the saga's position (for /metrics) */
    char **sealed;         /* def->nsteps: a record's text, unchanged since written (seal) */
    int nsealed;           /* records held only as that text, out of the tree */
    uint64_t dirty;        /* step records changed since the last confirmed checkpoint
                              (bit = the step's place): what a split checkpoint rewrites */
    int ck_whole;          /* the next checkpoint rewrites every record (the claim's first) */
#ifdef MB_CHECK_SPLIT
    json_t *written; /* the document as last sent: records left out must still equal it */
#endif
    struct sjob *prev, *next;
    struct sjob *hnext; /* chain in mb_saga.held, by order id */
} sjob;

struct mb_saga {
    struct event_base *base;
    struct event *flush_ev;  /* end of a loop turn: write the queued checkpoints */
    sjob **ckq;              /* jobs waiting for their checkpoint */
    struct ck_req *ck_spare; /* a checkpoint request back from Redis, for the next batch */
    int split;               /* checkpoints may be split (mb_saga_set_split) */
    size_t nq, capq;
    sjob **rsq; /* jobs whose checkpoint waits to be re-sent */
    size_t nrs, caprs;
    int flush_armed;
    void (*on_events)(void *ctx, const char *key); /* mb_saga_set_on_events; NULL: none */
    void *on_events_ctx;
    int ck_out;                   /* checkpoint requests submitted whose completion has not run */
    int claim_out;                /* a claim request is out */
    unsigned long long claim_seq; /* the next claim's number */
    int claim_resend;             /* the last claim's outcome is unknown: send it again */
    long long claim_nonce;        /* wall ms at start: claim ids differ between lives */
    int renew_out;                /* a renewal request is out */
    mb_lease_ref *hb;             /* given-up jobs to hand back (strings owned) */
    size_t nhb, caphb;
    int hb_out;                             /* a handback request is out */
    long long next_hb_ms;                   /* monotonic: after a failed handback, not before */
    long long next_claim_ms, next_renew_ms; /* monotonic: pauses after failures; an idle
                                               worker's next claim (claim_pace) */
    long long next_lease_walk_ms;           /* monotonic: renew_leases walks then */
    int claim_failing;                      /* the last claim failed (logged once) */
    mb_rq *rq;
    mb_cloud *cloud;
    const mb_catalog *catalog;
    mb_saga_opts o;
    char *worker_id;
    sjob *jobs;
    size_t njobs;
    int draining;
    mb_saga_stats stats;
    /* a checkpoint's time by phase (mb_saga_ck_phases) */
    mb_saga_hist ckh[MB_SAGA_CK_PHASES];
    const mb_saga_def *const *defs; /* the sagas this engine runs (borrowed) */
    size_t ndefs;
    int nhist;          /* steps of every definition, in order */
    mb_saga_hist *hist; /* per step of every definition */
    mb_saga_hist *dur;  /* saga durations: ndefs x MB_SAGA_OUTCOMES */
    mb_pace *pace;      /* per step of every definition: 2 x nhist, its run then its undo */
    sjob **held;        /* jobs in memory by order id: hmask + 1 chains */
    size_t hmask;
};

const double mb_saga_bucket_le[MB_SAGA_BUCKETS] = {0.001, 0.005, 0.01, 0.05, 0.1,
                                                   0.5,   1,     5,    30,   300};
const double mb_saga_duration_le[MB_SAGA_BUCKETS] = {1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600};
/* From a tenth of a millisecond: an idle worker's checkpoint phases take 10-200 us. */
const double mb_saga_checkpoint_le[MB_SAGA_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.002,
                                                       0.005,  0.01,    0.05,   0.25,  1};
const char *const mb_saga_ck_phases[MB_SAGA_CK_PHASES] = {"held", "queue", "redis", "back"};
const char *const mb_saga_outcomes[MB_SAGA_OUTCOMES] = {"Running", "Deleted", "Failed", "Cancelled",
                                                        "NeedsAttention"};

static void advance(sjob *j);
static void sleep_for(sjob *j, long long ms);
static void state_to_text(sjob *j);
static void hand_back_later(mb_saga *s, const sjob *j);
static int step_index(const sjob *j, const mb_step *st);

/* The chain of mb_saga.held for order_id: FNV-1a. */
static size_t held_slot(const struct mb_saga *s, const char *order_id)
{
    uint32_t h = 2166136261u;

    for (const unsigned char *p = (const unsigned char *)order_id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h & s->hmask;
}

static long long mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One observation of secs into h, whose bucket bounds are le. */
static void hist_add(mb_saga_hist *h, const double *le, double secs)
{
    int i = 0;

    while (i < MB_SAGA_BUCKETS && secs > le[i])
        i++;
    for (; i <= MB_SAGA_BUCKETS; i++)
        h->bucket[i]++;
    h->sum += secs;
}

/* One execution of st ended (DONE or POLL). */
static void observe(sjob *j, const mb_step *st, long long started_us)
{
    hist_add(&j->saga->hist[j->hist_base + step_index(j, st)], mb_saga_bucket_le,
             (double)(mono_us() - started_us) / 1e6);
}

static long long mono_ms(void)
{
    return mono_us() / 1000;
}

static long long now_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static mb_log_ctx log_ctx(const sjob *j)
{
    mb_log_ctx c = {j->job->order_id, j->job->order_id, j->order ? j->order->traceparent : NULL};
    return c;
}

#define jlog(lvl, j, ...)                         \
    do {                                          \
        mb_log_ctx lc_ = log_ctx(j);              \
        mb_log((lvl), "saga", &lc_, __VA_ARGS__); \
    } while (0)

/* ---- small state-document accessors -------------------------------------------- */

static long long st_int(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

static const char *st_str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void st_set_int(json_t *o, const char *k, long long v)
{
    json_object_set_new(o, k, json_integer(v));
}

static void st_set_str(json_t *o, const char *k, const char *v)
{
    json_object_set_new(o, k, json_string(v));
}

/* The object of key k in o, created if absent.  Borrowed. */
static json_t *st_obj(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);

    if (!json_is_object(v)) {
        v = json_object();
        json_object_set_new(o, k, v);
    }
    return v;
}

static int step_index(const sjob *j, const mb_step *st)
{
    for (int i = 0; i < j->def->nsteps; i++) {
        if (j->def->steps[i] == st)
            return i;
    }
    return 0;
}

/* The saga's position, clamped to its steps. */
static int st_step(const sjob *j)
{
    long long i = st_int(j->pub.state, "step");
    int n = j->def->nsteps;
    return i < 0 ? 0 : i >= n ? n - 1 : (int)i;
}

/* The compact text of v in an allocation of its size (mb_json_dumps doubles its buffer
 * from 256 bytes: a third of it unused on average, for thousands of texts held), or NULL
 * out of memory. */
static char *held_text(const json_t *v)
{
    char *text = mb_json_dumps(v), *fit;

    if (text == NULL)
        return NULL;
    fit = realloc(text, strlen(text) + 1);
    return fit ? fit : text;
}

/* Records of the steps a job is not executing, as text out of the tree.  Held in memory
 * for thousands of jobs at once (10,000 orders in flight), a record weighs about 1 kB of
 * small allocations as a tree and 100-250 bytes as text; steps read few of the others'.  A
 * record is sealed between executions once a checkpoint has written it (seal), and parsed
 * back into the tree when something reads it (unseal).  A record read back keeps its text
 * while it is not changed (step_rec marks it dirty and drops the text), so sealing it again
 * costs no dump.  Only split checkpoints, which rewrite the records they are given and keep
 * the others, go out with records sealed. */
static void seal(sjob *j)
{
    json_t *steps = json_object_get(j->pub.state, "steps");
    int at = st_step(j);

    if (!j->saga->split || j->ck_whole || j->step != NULL || json_object_size(steps) < 2)
        return;
    if (j->sealed == NULL && (j->sealed = calloc((size_t)j->def->nsteps, sizeof(char *))) == NULL)
        return;
    for (int i = 0; i < j->def->nsteps; i++) {
        const char *name = j->def->steps[i]->name;
        json_t *rec = json_object_get(steps, name);
        if (i == at || rec == NULL || (j->dirty >> i & 1))
            continue;
        if (j->sealed[i] == NULL && (j->sealed[i] = held_text(rec)) == NULL)
            return; /* out of memory: it stays a tree */
        j->nsealed++;
        json_object_del(steps, name);
    }
}

/* Step i's record in the tree, parsed back if it was sealed: borrowed, or NULL when it has
 * none.  Out of memory, NULL and the job is lost (the lease runs out; this or another worker
 * resumes it from the last checkpoint, which holds the record): a missing record would read
 * as a step that never ran. */
static json_t *unseal(sjob *j, int i)
{
    const char *name = j->def->steps[i]->name;
    json_t *rec = json_object_get(json_object_get(j->pub.state, "steps"), name);

    if (rec != NULL || j->sealed == NULL || j->sealed[i] == NULL)
        return rec;
    rec = mb_jscan_tree(j->sealed[i], strlen(j->sealed[i]));
    if (rec == NULL || json_object_set_new(st_obj(j->pub.state, "steps"), name, rec) < 0) {
        jlog(MB_LOG_ERROR, j, "out of memory reading record %s back; leaving the job to its lease",
             name);
        j->lost = 1;
        return NULL;
    }
    j->nsealed--;
    return rec;
}

/* Every record back in the tree.  -1 out of memory (the job is lost). */
static int unseal_all(sjob *j)
{
    for (int i = 0; i < j->def->nsteps && j->nsealed > 0; i++) {
        if (j->sealed[i] != NULL && unseal(j, i) == NULL)
            return -1;
    }
    return 0;
}

/* The step's record, to change: the next checkpoint rewrites it.  NULL when it could not
 * be read back (the job is lost). */
static json_t *step_rec(sjob *j, const mb_step *st)
{
    int i = step_index(j, st);

    j->dirty |= UINT64_C(1) << i;
    if (unseal(j, i) == NULL && j->lost)
        return NULL;
    if (j->sealed != NULL) { /* its text no longer says what the record will be */
        free(j->sealed[i]);
        j->sealed[i] = NULL;
    }
    return st_obj(st_obj(j->pub.state, "steps"), st->name);
}

static const char *step_name(const sjob *j, int i)
{
    int n = j->def->nsteps;
    return j->def->steps[i < 0 ? 0 : i >= n ? n - 1 : i]->name;
}

/* The store's status word while steps run (or are undone). */
static const char *active_word(const sjob *j, int compensating)
{
    return compensating ? "RollingBack" : j->def->active;
}

static json_t *error_json(const char *step, const mb_error *e, int retryable)
{
    return json_pack("{s:s, s:s, s:s, s:b}", "step", step, "code", e->code[0] ? e->code : "Error",
                     "message", e->msg, "retryable", retryable);
}

/* ---- the step-facing helpers (mb_step.h) ---------------------------------------- */

/* The engine as the steps' host (mb_step.h): counts a job's calls in flight and resumes
 * it when the last of a batch is back. */
static void eng_done(mb_sjob *pub, const mb_error *err)
{
    sjob *j = (sjob *)pub;

    if (err && err->status != MB_OK && j->pub.err.status == MB_OK)
        j->pub.err = *err;
    if (--j->pending > 0)
        return;
    advance(j);
}

static void eng_io(mb_sjob *pub)
{
    sjob *j = (sjob *)pub;

    if (j->pending++ == 0) /* a new batch: its first error is what the step sees next */
        mb_error_clear(&j->pub.err);
}

static void eng_lost(mb_sjob *pub)
{
    sjob *j = (sjob *)pub;

    j->pending--;
    mb_error_set(&j->pub.err, MB_FATAL, "OutOfMemory", "cloud call not started: out of memory");
}

static json_t *eng_record(mb_sjob *pub, const char *name)
{
    sjob *j = (sjob *)pub;
    int i = mb_saga_def_step(j->def, name);

    return i < 0 ? NULL : unseal(j, i);
}

static const mb_step_host engine_host = {eng_io, eng_done, eng_lost, eng_record};

/* ---- events and checkpoints ------------------------------------------------------ */

/* Queues a status event about the job; ev brings who it is about (account,
 * mesh name, cluster, traceparent), the rest is filled here. */
static void queue_ev(sjob *j, mb_status_event *ev, mb_mesh_status status, const char *step,
                     const char *msg, const json_t *error)
{
    int i = mb_saga_def_step(j->def, step);
    char err[256];

    ev->order_id = j->job->order_id;
    ev->mesh_id = j->mesh_id;
    ev->status = status;
    ev->step = step;
    ev->step_index = (i < 0 ? 0 : i) + 1;
    ev->step_total = j->def->nsteps;
    ev->message = msg;
    ev->attempt = st_int(j->pub.state, "attempt") > 0 ? st_int(j->pub.state, "attempt") : 1;
    ev->seq = 1; /* stamped by the store, in the same atomic step as the checkpoint */
    if (error) {
        ev->error_code = st_str(error, "code");
        ev->error_message = st_str(error, "message");
        ev->error_retryable = json_is_true(json_object_get(error, "retryable"));
    }
    if (j->nevents == MAX_EVENTS) { /* no path queues that many between checkpoints */
        jlog(MB_LOG_ERROR, j, "status event %s not queued: %d already wait", step, MAX_EVENTS);
        return;
    }
    if (mb_event_build_parts(ev, &j->events[j->nevents], err, sizeof(err)) < 0) {
        jlog(MB_LOG_ERROR, j, "status event not built: %s", err);
        return;
    }
    j->nevents++;
}

static void queue_event(sjob *j, mb_mesh_status status, const char *step, const char *msg,
                        const json_t *error)
{
    const mb_order *o = j->order;
    mb_status_event ev = {
        .account_id = o->account_id,
        .mesh_name = o->mesh_name,
        .cluster_id = o->cluster_id,
        .traceparent = o->traceparent,
    };

    queue_ev(j, &ev, status, step, msg, error);
}

static void drop(sjob *j);
static void lease_lost(sjob *j, const char *why);

static void clear_events(sjob *j)
{
    for (int i = 0; i < j->nevents; i++)
        mb_event_parts_free(&j->events[i]);
    j->nevents = 0;
}

/* The flush runs at the end of this loop turn (once, however often it is armed). */
static void arm_flush(mb_saga *s)
{
    if (!s->flush_armed) {
        s->flush_armed = 1;
        event_active(s->flush_ev, 0, 0);
    }
}

/* Puts a job whose checkpoint is pending on the queue the next flush sends. */
static void enqueue_ckpt(sjob *j)
{
    mb_saga *s = j->saga;

    /* A whole document carries every record (a split one keeps those it leaves out). */
    if ((!s->split || j->ck_whole) && unseal_all(j) < 0) {
        j->ck_pending = 0;
        return;
    }
    if (s->nq == s->capq) {
        size_t cap = s->capq ? s->capq * 2 : 256;
        sjob **q = realloc(s->ckq, cap * sizeof(*q));
        if (q == NULL) { /* the lease runs out; this or another worker resumes */
            j->ck_pending = 0;
            j->lost = 1;
            return;
        }
        s->ckq = q;
        s->capq = cap;
    }
    s->ckq[s->nq++] = j;
    j->queued_us = mono_us();
    arm_flush(s);
}

/* Queues the job's checkpoint: the state, the status and the queued events,
 * written in one atomic store call.  next_run_ms 0 = terminal; keep: the job
 * stays leased to us (we go on working it), else the lease is given back and
 * it is due at next_run_ms.  The job waits (ck_pending) until the write is
 * confirmed: the flush at the end of this loop turn hands every queued
 * checkpoint to the Redis thread, and the completion resumes each job, or
 * drops it (leave, or lost: the write was refused because the job is no
 * longer ours), or re-sends it later (outcome unknown). */
static long long mono_ms(void);

static void checkpoint(sjob *j, const char *status, long long next_run_ms, int keep)
{
    /* A job handed back for later (retry backoff, a drain): claim no later than it is due,
     * whatever the last idle claim planned. */
    if (!keep && next_run_ms > 0 && j->saga->next_claim_ms > 0) {
        long long due = mono_ms() + (next_run_ms - now_ms());
        if (due < j->saga->next_claim_ms)
            j->saga->next_claim_ms = due;
    }
    j->ck_status = status;
    j->ck_next_run = next_run_ms;
    j->ck_keep = keep;
    j->ck_resends = 0;
    j->ck_first_ms = 0;
    j->ck_pending = 1;
    enqueue_ckpt(j);
}

/* The store takes a delay, counted on its own clock: < 0 terminal, 0 "the
 * caller keeps the lease", > 0 due that much later.  A job leaving memory asks
 * for at least 1 ms, however late the write is sent after the checkpoint was
 * queued. */
static long long run_in(int keep, long long next_run, long long now)
{
    if (next_run == 0)
        return -1;
    if (keep)
        return 0;
    return next_run > now ? next_run - now : 1;
}

/* One pipelined round trip of checkpoints, out on the Redis thread.  Its jobs
 * are frozen (ck_pending) while it is out: the thread reads their state
 * documents, events, ids and fences through cks. */
typedef struct ck_req {
    mb_saga *saga;
    size_t n;
    long long sent_ms; /* monotonic, stamped by the Redis thread just before sending */
    size_t cap;        /* entries there is room for: n rounded up to a power of two */
    size_t cap_recs;   /* records there is room for: cap x the longest saga's steps */
    /* cap of each, in the same allocation (ck_req_new), which is kept for the next batch
     * (mb_saga.ck_spare): a new one was fresh pages to fault in at every flush.  Sized to
     * the batch, not to FLUSH_BATCH: when Redis lags, loop turns send batches of a few
     * checkpoints each, and at 300 kB apiece (256 mb_error alone are 154 kB) the batches
     * out held 22 MB in the 10,000-order bench run with every poll handed back to Redis. */
    sjob **jobs;
    mb_checkpoint *cks;
    long long *next_run; /* as asked: stamped against the send time */
    uint64_t *sent;      /* the records each rewrites (bit = the step's place) */
    mb_checkpoint_result *res;
    mb_error *errs;
    mb_ck_record *recs; /* their records, def->nsteps a job */
    int *keep;
    mb_status *sts;
    /* monotonic us: handed to the Redis thread, sent by it, answered (mb_saga_ck_phases) */
    long long handed_us, sent_us, answered_us;
} ck_req;

/* Room for n items of size bytes, rounded up so what follows stays aligned for any type. */
static size_t room(size_t n, size_t size)
{
    const size_t a = _Alignof(max_align_t);

    return (n * size + a - 1) / a * a;
}

/* Hands out the next room(n, size) bytes of *p. */
static void *carve(char **p, size_t n, size_t size)
{
    void *at = *p;

    *p += room(n, size);
    return at;
}

/* A new request with room for m entries and cap records, or NULL. */
static ck_req *ck_req_alloc(size_t m, size_t cap)
{
    size_t size = room(1, sizeof(ck_req)) + room(m, sizeof(sjob *)) +
                  room(m, sizeof(mb_checkpoint)) + room(m, sizeof(long long)) +
                  room(m, sizeof(uint64_t)) + room(m, sizeof(mb_checkpoint_result)) +
                  room(m, sizeof(mb_error)) + room(cap, sizeof(mb_ck_record)) +
                  room(m, sizeof(int)) + room(m, sizeof(mb_status));
    char *p = malloc(size);
    ck_req *r;

    if (p == NULL)
        return NULL;
    r = carve(&p, 1, sizeof(*r));
    r->cap = m;
    r->cap_recs = cap;
    r->jobs = carve(&p, m, sizeof(*r->jobs));
    r->cks = carve(&p, m, sizeof(*r->cks));
    r->next_run = carve(&p, m, sizeof(*r->next_run));
    r->sent = carve(&p, m, sizeof(*r->sent));
    r->res = carve(&p, m, sizeof(*r->res));
    r->errs = carve(&p, m, sizeof(*r->errs));
    r->recs = carve(&p, cap, sizeof(*r->recs));
    r->keep = carve(&p, m, sizeof(*r->keep));
    r->sts = carve(&p, m, sizeof(*r->sts));
    return r;
}

/* A request for the batch (n <= FLUSH_BATCH): the spare if it has room, else a new one.
 * flush_batch fills every entry but res and sts, cleared here.  NULL when out of memory. */
static ck_req *ck_req_new(mb_saga *s, size_t n)
{
    size_t m = 8, steps = 0;
    ck_req *r = s->ck_spare;

    if (r != NULL && r->cap >= n) {
        s->ck_spare = NULL;
    } else {
        while (m < n)
            m *= 2;
        for (size_t d = 0; d < s->ndefs; d++)
            if ((size_t)s->defs[d]->nsteps > steps)
                steps = (size_t)s->defs[d]->nsteps;
        r = ck_req_alloc(m, m * steps);
        if (r == NULL)
            return NULL;
    }
    r->saga = s;
    r->n = n;
    r->sent_ms = 0;
    memset(r->res, 0, n * sizeof(*r->res));
    memset(r->sts, 0, n * sizeof(*r->sts));
    return r;
}

/* Keeps r as the spare for the next batch if it is the larger, else frees it. */
static void ck_req_done(ck_req *r)
{
    mb_saga *s = r->saga;

    if (s->ck_spare != NULL && s->ck_spare->cap >= r->cap) {
        free(r);
        return;
    }
    free(s->ck_spare);
    s->ck_spare = r;
}

/* The step the record names: where the saga stands, or, once it has ended after a
 * compensation, where it stopped (compensation leaves the position before the first step,
 * which would read as if the order had failed at validate). */
static const char *ckpt_step(const sjob *j)
{
    const char *stopped = mb_sagadoc_stopped_at(j->pub.state);

    if (j->ck_next_run == 0 && stopped != NULL) /* terminal */
        return stopped;
    return step_name(j, st_step(j));
}

static uint64_t all_steps(const sjob *j)
{
    return j->def->nsteps >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << j->def->nsteps) - 1;
}

#ifdef MB_CHECK_SPLIT
/* Sanitized builds prove the dirty marks: every record a split checkpoint leaves out
 * must equal what was sent before, or Redis would keep a stale one.  Aborts if not. */
static void check_split(sjob *j, uint64_t sent)
{
    json_t *full = json_deep_copy(j->pub.state); /* with the sealed records */
    const json_t *now, *was = json_object_get(j->written, "steps");

    for (int i = 0; i < j->def->nsteps && j->nsealed > 0; i++) {
        const char *name = j->def->steps[i]->name;
        if (j->sealed[i] != NULL && json_object_get(json_object_get(full, "steps"), name) == NULL)
            json_object_set_new(st_obj(full, "steps"), name, json_loads(j->sealed[i], 0, NULL));
    }
    now = json_object_get(full, "steps");

    for (int i = 0; i < j->def->nsteps && j->written; i++) {
        const char *name = j->def->steps[i]->name;
        const json_t *a = json_object_get(now, name), *b = json_object_get(was, name);
        if (!(sent >> i & 1) && (a || b) && !json_equal(a, b)) {
            jlog(MB_LOG_ERROR, j, "split checkpoint leaves out record %s, which changed", name);
            abort();
        }
    }
    json_decref(j->written);
    j->written = full;
}
#endif

/* The records a split checkpoint rewrites (mb_checkpoint): those changed since the last
 * confirmed one, the executing step's (its ck changes in place), or every record on the
 * claim's first.  Fills out (def->nsteps) and *sent; returns the count, or -1 to write the
 * whole document: while a worker of an older layout is alive (mb_saga_set_split), or for a
 * record under a name this saga does not know, or not an object. */
static int ckpt_records(sjob *j, mb_ck_record *out, uint64_t *sent)
{
    json_t *steps = json_object_get(j->pub.state, "steps");
    uint64_t want = j->dirty;
    int n = 0;

    /* Records still sealed (split turned off since enqueue_ckpt) went out in split form
     * already: so does this one, with them left as written. */
    if (!j->saga->split && j->nsealed == 0)
        return -1;
    if (j->ck_whole) {
        const char *k;
        json_t *v;
        json_object_foreach(steps, k, v)
        {
            if (mb_saga_def_step(j->def, k) < 0 || !json_is_object(v))
                return -1;
        }
        want = all_steps(j);
    }
    if (j->step)
        want |= UINT64_C(1) << step_index(j, j->step);
    *sent = want;
    for (int i = 0; i < j->def->nsteps; i++) {
        json_t *rec = want >> i & 1 ? json_object_get(steps, j->def->steps[i]->name) : NULL;
        if (json_is_object(rec))
            out[n++] = (mb_ck_record){i, j->def->steps[i]->name, rec};
    }
    return n;
}

/* Fills everything but the times, which the Redis thread stamps when it sends. */
static void fill_ckpt(sjob *j, mb_checkpoint *ck, mb_ck_record *recs, uint64_t *sent)
{
    int nrec = ckpt_records(j, recs, sent);
    json_t *error = json_object_get(j->pub.state, "error");

    *ck = (mb_checkpoint){
        .order_id = j->job->order_id,
        .key = j->job->key,
        .fence = j->job->fence,
        .ck = j->job->checkpoints + 1,
        .state = j->pub.state,
        .status = j->ck_status,
        .step = ckpt_step(j),
        .attempt = (int)st_int(j->pub.state, "attempt"),
        .error_code = error ? st_str(error, "code") : "",
        .error_msg = error ? st_str(error, "message") : "",
        .lease_ms = j->saga->o.lease_ms,
        .release_name = j->pub.release_name,
        .release_name_of = j->pub.release_name_of,
        .parts = j->events,
        .n_parts = (size_t)j->nevents,
        .split = nrec >= 0,
        .records = recs,
        .n_records = nrec > 0 ? (size_t)nrec : 0,
    };
    if (nrec < 0)
        *sent = all_steps(j);
#ifdef MB_CHECK_SPLIT
    check_split(j, *sent);
#endif
}

/* Redis thread: stamps the send time and writes the batch. */
static void ck_run(mb_store *st, void *ctx)
{
    ck_req *r = ctx;
    long long now;

    r->sent_us = mono_us();
    r->sent_ms = r->sent_us / 1000;
    now = now_ms();
    for (size_t i = 0; i < r->n; i++)
        r->cks[i].run_in_ms = run_in(r->keep[i], r->next_run[i], now);
    mb_store_checkpoint(st, r->cks, r->n, r->res, r->sts, r->errs);
    r->answered_us = mono_us();
}

/* The phases of the job's checkpoint, back on the loop at back_us. */
static void observe_ck(mb_saga *s, const sjob *j, const ck_req *r, long long back_us)
{
    long long us[MB_SAGA_CK_PHASES] = {r->handed_us - j->queued_us, r->sent_us - r->handed_us,
                                       r->answered_us - r->sent_us, back_us - r->answered_us};

    for (int p = 0; p < MB_SAGA_CK_PHASES; p++)
        hist_add(&s->ckh[p], mb_saga_checkpoint_le, us[p] > 0 ? (double)us[p] / 1e6 : 0);
}

/* The pause before the next re-send of an unconfirmed checkpoint. */
static long resend_delay(const sjob *j)
{
    long d = RESEND_MIN_MS;

    for (int i = 1; i < j->ck_resends && d < RESEND_MAX_MS; i++)
        d *= 2;
    return d < RESEND_MAX_MS ? d : RESEND_MAX_MS;
}

/* An unconfirmed checkpoint (it may or may not have landed): re-sent as it is
 * until confirmed or refused, while the lease lasts. */
static void ckpt_again(sjob *j, const mb_error *e)
{
    mb_saga *s = j->saga;
    long long now = mono_ms();

    if (j->lost) { /* dropped meanwhile: nothing to re-send */
        j->ck_pending = 0;
        drop(j);
        return;
    }
    if (now >= j->lease_until) {
        j->ck_pending = 0;
        lease_lost(j, "checkpoint not confirmed before the lease ran out");
        return;
    }
    if (s->nrs == s->caprs) {
        size_t cap = s->caprs ? s->caprs * 2 : 64;
        sjob **q = realloc(s->rsq, cap * sizeof(*q));
        if (q == NULL) {
            j->ck_pending = 0;
            lease_lost(j, "out of memory");
            return;
        }
        s->rsq = q;
        s->caprs = cap;
    }
    j->ck_resends++;
    s->stats.resends++;
    j->ck_retry_ms = now + resend_delay(j);
    if (j->ck_resends == 1)
        jlog(MB_LOG_WARN, j,
             "checkpoint not confirmed (%s): re-sending until it is, "
             "while the lease lasts",
             e->msg);
    s->rsq[s->nrs++] = j;
}

/* What a written (or refused, or unconfirmed) checkpoint means for its job. */
static void ckpt_done(sjob *j, mb_status st, const mb_checkpoint_result *res, const mb_error *e,
                      long long sent_ms)
{
    if (st == MB_AGAIN) {
        ckpt_again(j, e);
        return;
    }
    j->ck_pending = 0;
    clear_events(j);
    if (st != MB_OK) {
        jlog(MB_LOG_WARN, j, "checkpoint refused, dropping the job: %s", e->msg);
        j->saga->stats.lost++;
        j->lost = 1;
    } else {
        if (j->ck_resends > 0)
            jlog(MB_LOG_INFO, j, "checkpoint confirmed after %d re-send(s)%s", j->ck_resends,
                 res->already_applied ? " (an earlier send had landed)" : "");
        j->job->checkpoints++;
        j->pub.release_name = 0;
        j->pub.release_name_of = NULL;
        j->job->cancel_requested = res->cancel_requested;
        /* An earlier send that landed started the lease then: count from the first. */
        if (j->ck_keep)
            j->lease_until =
                (res->already_applied ? j->ck_first_ms : sent_ms) + j->saga->o.lease_ms;
    }
    if (j->lost || j->leave) {
        drop(j);
        return;
    }
    seal(j);
    if (j->sleep_ms > 0) {
        long long ms = j->sleep_ms;
        j->sleep_ms = 0;
        sleep_for(j, ms);
        if (!j->leave)
            return;
    }
    advance(j);
}

/* Loop thread: the batch is back. */
static void ck_back(void *ctx)
{
    ck_req *r = ctx;
    mb_saga *s = r->saga;
    long long back_us = mono_us();

    for (size_t i = 0; i < r->n; i++) {
        sjob *j = r->jobs[i];
        observe_ck(s, j, r, back_us);
        if (j->ck_first_ms == 0)
            j->ck_first_ms = r->sent_ms;
        if (r->sts[i] == MB_OK) { /* before ckpt_done: the job goes on from there */
            j->dirty &= ~r->sent[i];
            j->ck_whole = !r->cks[i].split;
            if (r->res[i].last_seq > 0 && s->on_events)
                s->on_events(s->on_events_ctx, r->cks[i].key);
        }
        ckpt_done(j, r->sts[i], &r->res[i], &r->errs[i], r->sent_ms);
    }
    s->ck_out--;
    ck_req_done(r);
    if (s->nq > 0) /* held back while MB_SAGA_CK_OUT_MAX were out */
        arm_flush(s);
}

/* Hands a batch of queued checkpoints to the Redis thread (one round trip). */
static void flush_batch(mb_saga *s, sjob **batch, size_t n)
{
    ck_req *r = ck_req_new(s, n);
    size_t nrecs = 0;

    if (r != NULL) {
        for (size_t i = 0; i < n; i++) {
            r->jobs[i] = batch[i];
            r->keep[i] = batch[i]->ck_keep;
            r->next_run[i] = batch[i]->ck_next_run;
            fill_ckpt(batch[i], &r->cks[i], r->recs + nrecs, &r->sent[i]);
            nrecs += (size_t)batch[i]->def->nsteps;
            mb_error_clear(&r->errs[i]);
        }
        r->handed_us = mono_us();
        if (mb_rq_submit(s->rq, ck_run, ck_back, r) == 0) {
            s->ck_out++;
            return;
        }
        ck_req_done(r);
    }
    /* Out of memory or shutting down: nothing was sent; the leases run out. */
    for (size_t i = 0; i < n; i++) {
        batch[i]->ck_pending = 0;
        lease_lost(batch[i], "checkpoint not sent (out of memory or shutting down)");
    }
}

/* Runs once per loop turn in which checkpoints were queued, and when a request comes back
 * with checkpoints held: sends them, oldest first, while fewer than MB_SAGA_CK_OUT_MAX
 * requests are out.  Jobs resumed later queue their next checkpoints for a later turn.
 * Without the bound, when Redis lagged, a batch per loop turn piled up hundreds of small
 * requests (1,282 of them, 3.6 MB, in the 10,000-order bench run), each with its texts
 * built.  Two out held that run's peak RSS lowest (53-57 MB against 56-58 with four) but
 * took 5% longer; four took the time of no bound. */
static void flush(evutil_socket_t fd, short what, void *arg)
{
    mb_saga *s = arg;

    (void)fd;
    (void)what;
    s->flush_armed = 0;
    while (s->nq > 0 && s->ck_out < MB_SAGA_CK_OUT_MAX) {
        sjob *batch[FLUSH_BATCH]; /* off the queue first: a failed send drops jobs */
        size_t n = s->nq < FLUSH_BATCH ? s->nq : FLUSH_BATCH;

        memcpy(batch, s->ckq, n * sizeof(*batch));
        s->nq -= n;
        memmove(s->ckq, s->ckq + n, s->nq * sizeof(*s->ckq));
        flush_batch(s, batch, n);
    }
}

/* Each tick: unconfirmed checkpoints whose pause is over go out again; those
 * whose lease has run out meanwhile are lost. */
static void resend_due(mb_saga *s)
{
    long long now = mono_ms();
    size_t keep = 0, n = s->nrs;
    sjob **q = s->rsq;

    for (size_t i = 0; i < n; i++) {
        sjob *j = q[i];
        if (j->lost) {
            j->ck_pending = 0;
            drop(j);
        } else if (now >= j->lease_until) {
            j->ck_pending = 0;
            lease_lost(j, "checkpoint not confirmed before the lease ran out");
        } else if (now >= j->ck_retry_ms) {
            enqueue_ckpt(j);
            if (j->lost) /* could not queue */
                drop(j);
        } else {
            q[keep++] = j;
        }
    }
    s->nrs = keep;
}

/* ---- executions ------------------------------------------------------------------- */

static void end_exec(sjob *j)
{
    if (j->step && j->step->clear && j->pub.scratch)
        j->step->clear(j->pub.scratch);
    free(j->pub.scratch);
    j->pub.scratch = NULL;
    j->pub.ck = NULL; /* its record may be sealed before the next execution */
    j->step = NULL;
    j->pub.pc = 0;
}

/* When st's current execution sequence (its run, or its undo) must be over: wall ms. */
static long long step_deadline(const sjob *j, const mb_step *st)
{
    long deadline = j->compensating            ? j->saga->o.compensate_deadline_ms
                    : st->deadline_ms          ? st->deadline_ms
                    : j->def->step_deadline_ms ? j->def->step_deadline_ms
                                               : j->saga->o.step_deadline_ms;

    return st_int(j->pub.state, "step_started_ms") + deadline;
}

static int begin_exec(sjob *j, const mb_step *st, int compensating)
{
    json_t *rec = step_rec(j, st);

    if (rec == NULL)
        return -1;
    end_exec(j);
    j->step = st;
    j->compensating = compensating;
    j->exec_us = mono_us();
    j->pub.message[0] = '\0';
    mb_error_clear(&j->pub.err);
    j->pub.ck = st_obj(rec, "ck");
    if (st->scratch_size) {
        j->pub.scratch = calloc(1, st->scratch_size);
        if (j->pub.scratch == NULL)
            return -1;
    }
    if (st_int(j->pub.state, "step_started_ms") == 0)
        st_set_int(j->pub.state, "step_started_ms", now_ms());
    /* each cloud call retries on its own within the step's deadline (as retry_later) */
    j->pub.target.deadline_ms = step_deadline(j, st);
    st_set_int(j->pub.state, "attempt", st_int(j->pub.state, "attempt") + 1);
    st_set_int(rec, "attempts", st_int(rec, "attempts") + 1);
    if (st_int(rec, "started_ms") == 0)
        st_set_int(rec, "started_ms", now_ms());
    st_set_str(rec, "status", compensating ? "compensating" : "running");
    return 0;
}

/* The next step (or compensation) starts from scratch: fresh attempt count
 * and deadline. */
static void next_position(sjob *j, int step)
{
    mb_sagadoc_position(j->pub.state, step);
}

static long backoff_ms(const sjob *j, long retry_after_ms)
{
    long long attempt = st_int(j->pub.state, "attempt");
    long cap = j->saga->o.backoff_base_ms;
    long delay;

    for (long long i = 1; i < attempt && cap < j->saga->o.backoff_max_ms; i++)
        cap *= 2;
    if (cap > j->saga->o.backoff_max_ms)
        cap = j->saga->o.backoff_max_ms;
    delay = (long)(random() % (cap + 1)); /* full jitter */
    if (retry_after_ms > delay)
        delay = retry_after_ms;
    return delay;
}

static const char *phase(const sjob *j)
{
    const char *p = st_str(j->pub.state, "phase");
    return p ? p : "run";
}

static long long now_ms(void);

/* A saga ended with status: its duration from acceptance (the job's created time, Redis's
 * clock) to now (this worker's clock; the skew between the two is noise at this scale). */
static void observe_end(sjob *j, const char *status)
{
    mb_saga *s = j->saga;
    size_t d = 0;
    int o = 0;
    double secs;

    while (d < s->ndefs && s->defs[d] != j->def)
        d++;
    while (o < MB_SAGA_OUTCOMES && strcmp(mb_saga_outcomes[o], status) != 0)
        o++;
    if (d == s->ndefs || o == MB_SAGA_OUTCOMES || s->dur == NULL)
        return;
    secs = (double)(now_ms() - j->job->created_ms) / 1e3;
    hist_add(&s->dur[d * MB_SAGA_OUTCOMES + (size_t)o], mb_saga_duration_le, secs < 0 ? 0 : secs);
}

static void finish_terminal(sjob *j, const char *status, mb_mesh_status ev_status, const char *step,
                            const char *msg, const json_t *error)
{
    observe_end(j, status);
    queue_event(j, ev_status, step, msg, error);
    jlog(MB_LOG_INFO, j, "saga ends %s at %s: %s", status, step, msg);
    checkpoint(j, status, 0, 0);
    j->leave = 1;
}

static void begin_compensation(sjob *j, const char *outcome, const json_t *error)
{
    int from = (int)st_int(j->pub.state, "step");
    const char *step = step_name(j, from);

    /* From the current step: it may have acted already (a cancel can land while a
     * release installs, between two polls); a step that never started has no
     * record and is skipped.  The same rewrite as meshctl's rollback (mb_sagadoc). */
    mb_sagadoc_compensate(j->def, j->pub.state, from, outcome, error);
    queue_event(j, MB_MESH_ROLLING_BACK, step,
                strcmp(outcome, "Cancelled") == 0 ? "cancel requested: undoing what was done"
                                                  : "a step failed: undoing what was done",
                error);
    checkpoint(j, "RollingBack", now_ms(), 1);
}

static void compensation_done(sjob *j)
{
    const char *outcome = st_str(j->pub.state, "outcome");
    json_t *error = json_object_get(j->pub.state, "error");
    const char *step = error ? st_str(error, "step") : st_str(j->pub.state, "outcome_step");
    int cancelled = outcome && strcmp(outcome, "Cancelled") == 0;

    if (cancelled)
        j->saga->stats.cancelled++;
    else
        j->saga->stats.failed++;
    /* The name was claimed at acceptance, not by a step: give it back even when no step
     * that stands for it started (a cancel before the first step).  The checkpoint frees
     * it only while this order holds it. */
    j->pub.release_name = 1;
    finish_terminal(j, cancelled ? "Cancelled" : "Failed",
                    cancelled ? MB_MESH_CANCELLED : MB_MESH_FAILED, step ? step : step_name(j, 0),
                    cancelled ? "cancelled; everything this order changed was undone"
                              : "failed; everything this order changed was undone",
                    cancelled ? NULL : error);
}

/* The learnt pace of the effect of step i (of every definition, as hist) in a phase. */
static mb_pace *pace_at(const mb_saga *s, int i, int compensating)
{
    return &s->pace[2 * i + (compensating != 0)];
}

/* The learnt pace of st's effect, in the phase j is in. */
static mb_pace *pace_of(const sjob *j, const mb_step *st)
{
    return pace_at(j->saga, j->hist_base + step_index(j, st), j->compensating);
}

/* st saw its effect under way (it polls): the wait before its next look.  The first poll of an
 * execution sequence and the latest are stamped in the record (saved with the state, so a
 * worker that takes the job over counts from them too); every MESHBUY_POLL_MS from there,
 * except for the looks that would come before most of the usual time (mb_pace_wait): a Helm
 * install of minutes, looked at every two seconds, is tens of calls a saga against a
 * throttled cloud. */
static long long poll_wait(sjob *j, const mb_step *st)
{
    json_t *rec = step_rec(j, st);
    long long floor_ms = j->pub.poll_ms > 0 ? j->pub.poll_ms : j->saga->o.poll_ms;
    long long now = now_ms(), since = st_int(rec, "poll_since_ms");

    if (since == 0) {
        since = now;
        st_set_int(rec, "poll_since_ms", since);
    }
    st_set_int(rec, "poll_last_ms", now);
    if (!j->saga->o.poll_learn)
        return floor_ms;
    return mb_pace_wait(pace_of(j, st), now - since, floor_ms, step_deadline(j, st) - now);
}

/* st's execution sequence ended (done, or failed).  A polled effect that ended teaches the
 * pace how long it was last seen under way, not when it was seen ended: that look came after
 * a wait the pace itself chose, and after a call's latency, so learning from it would feed
 * both back (an effect that ends at once, looked at through 100 ms calls, would settle at
 * 500 ms). */
static void poll_end(sjob *j, const mb_step *st, json_t *rec, int ended)
{
    long long since = st_int(rec, "poll_since_ms");

    if (since == 0)
        return;
    if (ended)
        mb_pace_note(pace_of(j, st), st_int(rec, "poll_last_ms") - since);
    json_object_del(rec, "poll_since_ms");
    json_object_del(rec, "poll_last_ms");
}

/* A transient error: reschedule with backoff inside the deadline.  Returns 1
 * if rescheduled (the job has left memory), 0 if the deadline has passed. */
static int retry_later(sjob *j, const mb_step *st)
{
    long delay = backoff_ms(j, j->pub.err.retry_after_ms);
    long long now = now_ms();

    if (now + delay > step_deadline(j, st))
        return 0;
    json_object_set_new(step_rec(j, st), "last_error", error_json(st->name, &j->pub.err, 1));
    jlog(MB_LOG_INFO, j, "%s: %s; retrying in %ld ms", st->name, j->pub.err.msg, delay);
    j->saga->stats.retries++;
    end_exec(j);
    checkpoint(j, active_word(j, j->compensating), now + delay, 0);
    j->leave = 1;
    return 1;
}

static void step_failed(sjob *j, const mb_step *st)
{
    int transient = j->pub.err.status == MB_AGAIN;
    json_t *rec = step_rec(j, st);
    json_t *error;

    if (transient) {
        size_t used = strlen(j->pub.err.msg);
        if (used + 48 < sizeof(j->pub.err.msg))
            snprintf(j->pub.err.msg + used, 48, " (gave up after %lld attempts)",
                     st_int(j->pub.state, "attempt"));
    }
    error = error_json(st->name, &j->pub.err, transient);
    json_object_set(rec, "last_error", error);
    st_set_str(rec, "status", j->compensating ? "compensation_failed" : "failed");
    st_set_int(rec, "ended_ms", now_ms());
    poll_end(j, st, rec, 0);
    end_exec(j);
    jlog(MB_LOG_WARN, j, "%s failed: %s", st->name, j->pub.err.msg);

    if (j->compensating) {
        json_t *ae = json_pack("{s:s, s:s, s:s, s:b}", "step", st->name, "code",
                               "CompensationFailed", "message", "", "retryable", 0);
        char m[700];
        snprintf(m, sizeof(m),
                 "undoing %s failed: %s; the order needs an operator "
                 "(meshctl show / rollback)",
                 st->name, j->pub.err.msg);
        json_object_set_new(ae, "message", json_string(m));
        json_object_set(j->pub.state, "error", ae);
        j->saga->stats.attention++;
        finish_terminal(j, "NeedsAttention", MB_MESH_FAILED, st->name, m, ae);
        json_decref(ae);
    } else if (j->def->keep_effects) { /* no undo: the saga stops here, replayable */
        json_object_set(j->pub.state, "error", error);
        json_object_set_new(j->pub.state, "parked", json_true());
        j->saga->stats.failed++;
        finish_terminal(j, "Failed", MB_MESH_FAILED, st->name, j->def->failed_message, error);
    } else if (j->saga->o.park_on_failure) {
        json_object_set(j->pub.state, "error", error);
        json_object_set_new(j->pub.state, "parked", json_true());
        j->saga->stats.failed++;
        finish_terminal(j, "Failed", MB_MESH_FAILED, st->name,
                        "failed; effects kept for investigation (MESHBUY_ON_FAILURE=park)", error);
    } else {
        begin_compensation(j, "Failed", error);
    }
    json_decref(error);
}

/* st's effect is still under way at the step's deadline (a release stuck installing): the
 * step fails, as one out of retries does; the state machine's "deadline passed". */
static void poll_timeout(sjob *j, const mb_step *st)
{
    long long started = st_int(j->pub.state, "step_started_ms");

    mb_error_clear(&j->pub.err);
    mb_error_set(&j->pub.err, MB_PERM, "Timeout",
                 "%s: still under way at the step's deadline, %lld s after it started", st->name,
                 (now_ms() - started) / 1000);
    step_failed(j, st);
}

/* Whether the checkpoint due before next may wait for the next one: next is local or
 * saves first, so nothing but this worker's memory happens in between (a crash only runs
 * the steps since the last checkpoint again), and the events queued meanwhile, with the two
 * next may add (its own, and a failure's or a rollback's), still fit one checkpoint.  Saves
 * a Redis script call at each such boundary. */
static int defer_ck(const sjob *j, const mb_step *next)
{
    return (next->local || next->saves_first) && !j->compensating && j->nevents + 2 <= MAX_EVENTS;
}

/* A step (or its compensation) completed. */
static void step_completed(sjob *j, const mb_step *st)
{
    json_t *rec = step_rec(j, st);
    int i = step_index(j, st);
    char msg[sizeof(j->pub.message)];

    memcpy(msg, j->pub.message, sizeof(msg));
    st_set_str(rec, "status", j->compensating ? "compensated" : "done");
    st_set_int(rec, "ended_ms", now_ms());
    json_object_del(rec, "last_error");
    poll_end(j, st, rec, 1);
    end_exec(j);
    j->saga->stats.steps_done++;
    if (j->compensating) {
        next_position(j, i - 1);
        checkpoint(j, "RollingBack", now_ms(), 1);
        return;
    }
    next_position(j, i + 1);
    if (i + 1 >= j->def->nsteps) {
        if (j->def->done_event == MB_MESH_DELETED)
            j->saga->stats.deleted++;
        else
            j->saga->stats.running++;
        finish_terminal(j, j->def->done, j->def->done_event, st->name,
                        msg[0] ? msg : j->def->done_message, NULL);
        return;
    }
    if (msg[0] == '\0')
        snprintf(msg, sizeof(msg), "%s done", st->name);
    queue_event(j, j->def->active_event, st->name, msg, NULL);
    if (!defer_ck(j, j->def->steps[i + 1]))
        checkpoint(j, j->def->active, now_ms(), 1);
}

/* Whether st has anything to undo: it started, and was not already undone. */
static int needs_undo(sjob *j, const mb_step *st)
{
    const char *s = st_str(step_rec(j, st), "status");

    if (st->compensate == NULL || s == NULL)
        return 0;
    return strcmp(s, "compensated") != 0;
}

/* Picks what runs next.  Returns the step, or NULL when the job has left
 * memory or compensation is over. */
static const mb_step *position(sjob *j)
{
    int i = (int)st_int(j->pub.state, "step");

    if (strcmp(phase(j), "compensate") == 0) {
        if (i >= j->def->nsteps)
            i = j->def->nsteps - 1;
        while (i >= 0 && !needs_undo(j, j->def->steps[i])) {
            if (j->lost) /* a record could not be read back */
                return NULL;
            next_position(j, --i);
        }
        if (i < 0) {
            compensation_done(j);
            return NULL;
        }
        return j->def->steps[i];
    }
    if (j->job->cancel_requested && j->def->keep_effects) {
        st_set_str(j->pub.state, "outcome", "Cancelled");
        st_set_str(j->pub.state, "outcome_step", step_name(j, i));
        j->saga->stats.cancelled++;
        finish_terminal(j, "Cancelled", MB_MESH_CANCELLED, step_name(j, i),
                        j->def->cancelled_message, NULL);
        return NULL;
    }
    if (j->job->cancel_requested) {
        begin_compensation(j, "Cancelled", NULL);
        return NULL; /* resumed after the checkpoint, in the compensate phase */
    }
    if (i >= j->def->nsteps)
        i = j->def->nsteps - 1;
    return j->def->steps[i < 0 ? 0 : i];
}

/* A sleeping job's state as text: nothing reads the tree until it wakes (its step ended,
 * its checkpoint is confirmed, no call is out).  Out of memory, it stays a tree. */
static void state_to_text(sjob *j)
{
    char *text = held_text(j->pub.state);

    if (text == NULL)
        return;
    j->text_step = st_step(j);
    j->state_text = text;
    json_decref(j->job->state);
    j->job->state = j->pub.state = NULL;
}

/* The tree back.  -1 out of memory (the text is kept, to be freed with the job). */
static int state_from_text(sjob *j)
{
    json_t *state;

    if (j->state_text == NULL)
        return 0;
    state = mb_jscan_tree(j->state_text, strlen(j->state_text));
    if (state == NULL)
        return -1;
    free(j->state_text);
    j->state_text = NULL;
    j->job->state = j->pub.state = state;
    return 0;
}

static void on_wake_job(evutil_socket_t fd, short what, void *arg)
{
    sjob *j = arg;

    (void)fd;
    (void)what;
    j->sleeping = 0;
    if (state_from_text(j) < 0) {
        jlog(MB_LOG_ERROR, j, "out of memory reading its state back; leaving the job to its lease");
        j->lost = 1; /* handed back when dropped: this or another worker resumes */
    }
    advance(j);
}

/* Waits ms in memory, lease held; without a timer the job is handed back instead. */
static void sleep_for(sjob *j, long long ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

    if (j->wake_ev == NULL)
        j->wake_ev = evtimer_new(j->saga->base, on_wake_job, j);
    if (j->wake_ev == NULL || evtimer_add(j->wake_ev, &tv) < 0) {
        checkpoint(j, active_word(j, j->compensating), now_ms() + ms, 0);
        j->leave = 1;
        return;
    }
    j->sleeping = 1;
    if (ms >= TEXT_WAIT_MIN_MS)
        state_to_text(j);
}

/* A step waits for the cloud (a release installing).  A short wait is spent in
 * memory with the lease held: handing the job back and claiming it again cost a
 * checkpoint, a claim and a parse of the order and state per poll, most of the
 * worker's and Redis's work while releases install.  Nothing is written unless
 * events are queued: as after a crash mid-step, a worker that takes the job over
 * re-runs the step from the last checkpoint, and steps observe before they act.
 * The price: a worker that dies mid-wait leaves the job to its lease rather than to
 * the wait.  A long wait (over MESHBUY_POLL_IN_MEMORY_MS or a quarter lease), one
 * during a drain, or one while the worker holds more jobs than it keeps calls going for
 * (poll_in_memory_jobs: with 10,000 sagas in flight, thousands of jobs waited for their
 * releases in memory) hands the job back, due when the wait ends. */
static void poll_later(sjob *j, long long ms)
{
    const mb_saga_opts *o = &j->saga->o;

    if (j->saga->draining || ms > o->poll_in_memory_ms || ms > o->lease_ms / 4 ||
        (o->poll_in_memory_jobs && j->saga->njobs > o->poll_in_memory_jobs)) {
        checkpoint(j, active_word(j, j->compensating), now_ms() + ms, 0);
        j->leave = 1;
        return;
    }
    if (j->nevents > 0) {
        checkpoint(j, active_word(j, j->compensating), now_ms(), 1);
        j->sleep_ms = ms;
        return;
    }
    sleep_for(j, ms);
}

static void advance(sjob *j)
{
    while (!j->lost && !j->leave && !j->ck_pending && !j->sleeping && j->pending == 0) {
        const mb_step *st = j->step;
        mb_step_rc rc;

        if (st == NULL) {
            int comp = strcmp(phase(j), "compensate") == 0;
            st = position(j);
            if (st == NULL)
                break;
            if (j->saga->draining) { /* stop at a boundary, due again at once */
                checkpoint(j, active_word(j, comp), now_ms() + 1, 0);
                j->leave = 1;
                break;
            }
            if (begin_exec(j, st, comp) < 0) {
                j->lost = 1; /* out of memory: the lease expires, another worker resumes */
                break;
            }
        }
        rc = j->compensating ? st->compensate(&j->pub) : st->run(&j->pub);
        if (j->lost) /* a record it read could not be read back (eng_record) */
            break;
        if (rc == MB_STEP_WAIT && j->pending > 0)
            return;
        if (rc == MB_STEP_WAIT)
            continue;
        if (rc == MB_STEP_ERROR && j->pub.err.status == MB_OK)
            mb_error_set(&j->pub.err, MB_PERM, "Internal", "%s: error without a cause", st->name);
        switch (rc) {
        case MB_STEP_WAIT: break;
        case MB_STEP_SAVE: checkpoint(j, active_word(j, j->compensating), now_ms(), 1); break;
        case MB_STEP_DONE:
            if (!j->compensating)
                observe(j, st, j->exec_us);
            step_completed(j, st);
            break;
        case MB_STEP_POLL:
            if (!j->compensating)
                observe(j, st, j->exec_us);
            if (now_ms() >= step_deadline(j, st)) {
                poll_timeout(j, st);
                break;
            }
            end_exec(j);
            st_set_int(j->pub.state, "attempt", st_int(j->pub.state, "attempt") - 1);
            poll_later(j, poll_wait(j, st));
            break;
        case MB_STEP_ERROR:
            if (j->pub.err.status == MB_FATAL) {
                /* Our own trouble (out of memory), not the order's: let the lease
                 * run out so this or another worker resumes it. */
                jlog(MB_LOG_ERROR, j, "%s: %s; leaving the job to its lease", st->name,
                     j->pub.err.msg);
                j->lost = 1;
                break;
            }
            if (j->pub.err.status == MB_AGAIN && retry_later(j, st))
                break;
            step_failed(j, st);
            break;
        }
    }
    if ((j->lost || j->leave) && j->pending == 0 && !j->ck_pending && !j->renew_out)
        drop(j);
}

/* The lease is gone (or about to be, with no way to extend it): stop acting for
 * the job at once.  Its cloud calls in flight are cancelled (their dones never
 * come: the count of calls out drops by as many), so nothing more is sent for
 * it; the job leaves memory when nothing of it is out any more.  Never called
 * from a cloud callback. */
static void lease_lost(sjob *j, const char *why)
{
    if (!j->lost) {
        jlog(MB_LOG_WARN, j, "lease lost: %s", why);
        j->saga->stats.lost++;
        j->lost = 1;
    }
    if (j->saga->cloud != NULL && j->pending > 0) {
        size_t n = mb_cloud_cancel_owner(j->saga->cloud, j);
        j->pending = n >= (size_t)j->pending ? 0 : j->pending - (int)n;
    }
    drop(j);
}

/* ---- job lifetime ------------------------------------------------------------------ */

static void drop(sjob *j)
{
    mb_saga *s = j->saga;

    if (j->pending > 0 || j->ck_pending || j->renew_out) {
        j->lost = 1; /* freed when the calls, the write or the renewal are back */
        return;
    }
    end_exec(j);
    if (j->lost)
        hand_back_later(s, j);
    for (sjob **pp = &s->held[held_slot(s, j->job->order_id)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == j) {
            *pp = j->hnext;
            break;
        }
    }
    if (j->prev)
        j->prev->next = j->next;
    else if (s->jobs == j)
        s->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    s->njobs--;
    if (j->wake_ev)
        event_free(j->wake_ev);
    free(j->state_text);
    for (int i = 0; j->sealed != NULL && i < j->def->nsteps; i++)
        free(j->sealed[i]);
    free(j->sealed);
    clear_events(j);
#ifdef MB_CHECK_SPLIT
    json_decref(j->written);
#endif
    mb_order_free(j->order);
    mb_job_free(j->job);
    free(j);
}

/* An operator's rewrite (meshctl replay, rollback) leaves an "announce" in the
 * state: the worker that picks the job up publishes it first, so the console
 * sees the action.  Returns 1 if a checkpoint was queued for it. */
static int announce(sjob *j)
{
    json_t *ann = json_object_get(j->pub.state, "announce");
    mb_mesh_status status;

    if (!json_is_object(ann))
        return 0;
    if (mb_mesh_status_parse(st_str(ann, "status"), &status) == 0) {
        int comp = status == MB_MESH_ROLLING_BACK;
        if (status == MB_MESH_INSTALLING) /* "active again", in the job's saga's word */
            status = j->def->active_event;
        queue_event(j, status, step_name(j, st_step(j)), st_str(ann, "message"),
                    comp ? json_object_get(j->pub.state, "error") : NULL);
    }
    json_object_del(j->pub.state, "announce");
    checkpoint(j, j->job->status, now_ms(), 1);
    return 1;
}

/* The mesh is named by the order that created it: a delete reports its create's mesh. */
static void mesh_id_of(const mb_job *job, const mb_saga_def *def, char *out, size_t len)
{
    const char *of = def->mesh_of ? def->mesh_of(job->state) : NULL;

    mb_order_mesh_id(job->key, of ? of : job->order_id, out, len);
}

/* Refuses a cloud change unless the job is still ours with room to spare: its
 * lease must outlast the call's timeout plus the margin (mb_cloud_guard). */
static int lease_guard(void *arg, long timeout_ms, mb_error *err)
{
    sjob *j = arg;
    long long left = j->lease_until - mono_ms();

    if (j->lost) {
        mb_error_set(err, MB_AGAIN, "LeaseLost", "lease lost: cloud change not sent");
    } else if (left > timeout_ms + j->saga->o.lease_margin_ms) {
        return 0;
    } else {
        mb_error_set(err, MB_AGAIN, "LeaseShort",
                     "lease has %lld ms left, under the call's timeout %ld ms + margin %ld ms: "
                     "cloud change not sent",
                     left, timeout_ms, j->saga->o.lease_margin_ms);
    }
    jlog(MB_LOG_WARN, j, "%s", err->msg); /* rare, and worth seeing: a fenced side effect */
    return -1;
}

/* The job of this order in memory, or NULL.  The claim script never hands back
 * a job whose lease we hold; this guards against a lease that expired in Redis
 * while we still work the job (its writes are refused, it leaves memory soon). */
static sjob *find_held(const mb_saga *s, const char *order_id)
{
    for (sjob *j = s->held[held_slot(s, order_id)]; j; j = j->hnext) {
        if (strcmp(j->job->order_id, order_id) == 0)
            return j;
    }
    return NULL;
}

/* Accepted orders were checked; a record that no longer parses was changed by
 * hand.  Fail it visibly rather than guess: Failed InvalidOrder in the store
 * and on the status stream, with what the record still tells (order id, the
 * key's account and mesh name, its traceparent, the cluster if it was read). */
static void invalid_order(sjob *j, const mb_order_err *oe)
{
    mb_job *job = j->job;
    const char *slash = strchr(job->key, '/');
    char account[MB_ORDER_ID_MAX + 1] = "", mesh[MB_MESH_NAME_MAX + 1] = "";
    json_t *error = json_pack("{s:s, s:s, s:s, s:b}", "step", step_name(j, 0), "code",
                              "InvalidOrder", "message", oe->reason, "retryable", 0);
    mb_status_event ev = {
        .account_id = account,
        .mesh_name = mesh,
        .cluster_id = oe->cluster_id[0] ? oe->cluster_id : NULL,
        .traceparent = job->traceparent[0] ? job->traceparent : NULL,
    };

    jlog(MB_LOG_ERROR, j, "stored order does not parse: %s", oe->reason);
    if (slash) {
        snprintf(account, sizeof(account), "%.*s", (int)(slash - job->key), job->key);
        snprintf(mesh, sizeof(mesh), "%s", slash + 1);
    }
    json_object_set(job->state, "error", error);
    queue_ev(j, &ev, MB_MESH_FAILED, step_name(j, 0),
             "the stored order no longer parses; nothing was changed", error);
    json_decref(error);
    j->saga->stats.failed++;
    j->leave = 1;
    checkpoint(j, "Failed", 0, 0);
    if (!j->ck_pending)
        drop(j);
}

/* A job (job taken over) whose lease was granted by a request sent at
 * granted_ms (monotonic). */
static void start(mb_saga *s, mb_job *job, long long granted_ms)
{
    const mb_saga_def *def = mb_saga_def_find(s->defs, s->ndefs, job->saga);
    sjob *j;
    mb_order_err oe;

    if (find_held(s, job->order_id) != NULL) {
        mb_warn("saga", "claim returned job %s, already in memory: left to its lease",
                job->order_id);
        mb_job_free(job);
        return;
    }
    if (def == NULL) {
        /* Written by a newer worker (a rolling upgrade): leave it to its lease,
         * after which a worker that knows the saga can take it. */
        mb_log_ctx lc = {job->order_id, job->order_id, NULL};
        mb_log(MB_LOG_WARN, "saga", &lc, "saga \"%s\" unknown to this worker; left to its lease",
               job->saga);
        mb_job_free(job);
        return;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        mb_job_free(job);
        return;
    }
    j->saga = s;
    j->def = def;
    for (size_t d = 0; d < s->ndefs && s->defs[d] != def; d++)
        j->hist_base += s->defs[d]->nsteps;
    j->job = job;
    j->ck_whole = 1;
    /* A claim sent again after a lost reply returns leases already running: count what is
     * left of them, from when the re-sent claim went out. */
    j->lease_until = granted_ms + (job->lease_left_ms > 0 && job->lease_left_ms < s->o.lease_ms
                                       ? job->lease_left_ms
                                       : s->o.lease_ms);
    j->hnext = s->held[held_slot(s, job->order_id)];
    s->held[held_slot(s, job->order_id)] = j;
    j->next = s->jobs;
    if (s->jobs)
        s->jobs->prev = j;
    s->jobs = j;
    s->njobs++;
    s->stats.claimed++;
    j->pub.state = job->state;
    j->pub.host = &engine_host;
    j->pub.cloud = s->cloud;
    j->pub.catalog = s->catalog;
    j->pub.store = NULL; /* steps never reach Redis: the engine does, off the loop */
    j->pub.job = job;
    mesh_id_of(job, def, j->mesh_id, sizeof(j->mesh_id));
    memset(&oe, 0, sizeof(oe));
    if (def->parse(job->order, &j->order, &oe) < 0) {
        invalid_order(j, &oe);
        return;
    }
    if (def->resolve && def->resolve(j->order, job->state) < 0) {
        j->lost = 1; /* out of memory: the lease expires, another worker resumes */
        drop(j);
        return;
    }
    j->pub.order = j->order;
    j->pub.target.project_id = j->order->project_id;
    j->pub.target.region = j->order->region;
    j->pub.target.cluster_id = j->order->cluster_id;
    j->pub.target.traceparent = j->order->traceparent;
    j->pub.target.guard = lease_guard;
    j->pub.target.guard_arg = j;
    j->pub.target.owner = j; /* lease_lost cancels the job's calls by it */
    /* The order is parsed: its JSON copy is not needed while the job runs. */
    json_decref(job->order);
    job->order = NULL;
    if (announce(j))
        return;
    if (strcmp(job->status, "Accepted") == 0) {
        queue_event(j, def->active_event, step_name(j, 0), def->start_message, NULL);
        if (!defer_ck(j, def->steps[0])) {
            checkpoint(j, def->active, now_ms(), 1);
            return;
        }
    }
    advance(j);
}

static unsigned engines_made; /* claim ids: engines made in this process (loop thread) */

mb_saga *mb_saga_new(struct event_base *base, mb_rq *rq, mb_cloud *cloud, const mb_catalog *catalog,
                     const mb_saga_opts *o, char *err, size_t errlen)
{
    mb_saga *s = calloc(1, sizeof(*s));

    if (s == NULL)
        goto err;
    s->base = base;
    /* Another life of this worker id, or another engine in this process, must not send a
     * claim id this one used: the wall clock at start, and a count of engines made. */
    s->claim_nonce = now_ms() * 256 + (long long)(engines_made++ % 256);
    if (o->defs == NULL || o->ndefs == 0) {
        snprintf(err, errlen, "no saga definitions");
        free(s);
        return NULL;
    }
    s->defs = o->defs;
    s->ndefs = o->ndefs;
    for (size_t d = 0; d < s->ndefs; d++)
        s->nhist += s->defs[d]->nsteps;
    s->hist = calloc((size_t)s->nhist, sizeof(*s->hist));
    s->dur = calloc(s->ndefs * MB_SAGA_OUTCOMES, sizeof(*s->dur));
    s->pace = calloc(2 * (size_t)s->nhist, sizeof(*s->pace));
    if (s->hist == NULL || s->dur == NULL || s->pace == NULL)
        goto err;
    s->hmask = 255; /* chains: the next power of two at or above max_inflight */
    while (s->hmask < o->max_inflight && s->hmask < (1u << 20) - 1)
        s->hmask = s->hmask * 2 + 1;
    s->held = calloc(s->hmask + 1, sizeof(*s->held));
    if (s->held == NULL)
        goto err;
    s->flush_ev = event_new(base, -1, 0, flush, s);
    if (s->flush_ev == NULL)
        goto err;
    s->rq = rq;
    s->cloud = cloud;
    s->catalog = catalog;
    s->o = *o;
    s->worker_id = strdup(o->worker_id ? o->worker_id : "meshworker");
    if (s->worker_id == NULL)
        goto err;
    s->o.worker_id = s->worker_id;
    srandom((unsigned)now_ms());
    return s;
err:
    snprintf(err, errlen, "out of memory");
    mb_saga_free(s);
    return NULL;
}

/* ---- leases and claims (requests on the Redis thread) ------------------------------ */

/* One renewal of every lease that needs it, in one pipelined round trip.  Its
 * jobs are kept in memory (renew_out) until it is back; the thread reads only
 * the ids, keys and fences copied into refs' borrowed strings, which do not
 * change while the job lives. */
typedef struct renew_req {
    mb_saga *saga;
    size_t n;
    sjob **jobs;
    mb_lease_ref *refs;
    mb_status *sts;
    int *cancel;
    mb_error *errs;
    long long lease_ms;
    long long sent_ms; /* monotonic, stamped by the Redis thread */
} renew_req;

static void renew_req_free(renew_req *r)
{
    if (r == NULL)
        return;
    free(r->jobs);
    free(r->refs);
    free(r->sts);
    free(r->cancel);
    free(r->errs);
    free(r);
}

static renew_req *renew_req_new(mb_saga *s, size_t n)
{
    renew_req *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->saga = s;
    r->lease_ms = s->o.lease_ms;
    r->jobs = calloc(n, sizeof(*r->jobs));
    r->refs = calloc(n, sizeof(*r->refs));
    r->sts = calloc(n, sizeof(*r->sts));
    r->cancel = calloc(n, sizeof(*r->cancel));
    r->errs = calloc(n, sizeof(*r->errs));
    if (r->jobs == NULL || r->refs == NULL || r->sts == NULL || r->cancel == NULL ||
        r->errs == NULL) {
        renew_req_free(r);
        return NULL;
    }
    return r;
}

static void renew_run(mb_store *st, void *ctx)
{
    renew_req *r = ctx;

    r->sent_ms = mono_ms();
    mb_store_renew(st, r->refs, r->n, r->lease_ms, r->sts, r->cancel, r->errs);
}

static void renew_back(void *ctx)
{
    renew_req *r = ctx;
    mb_saga *s = r->saga;
    long long now = mono_ms();
    int failed = 0;

    s->renew_out = 0;
    for (size_t i = 0; i < r->n; i++) {
        sjob *j = r->jobs[i];
        j->renew_out = 0;
        if (j->lost || j->leave) {
            /* It waited for the renewal to be back, unless something else is out. */
            if (j->pending == 0 && !j->ck_pending)
                drop(j);
            continue;
        }
        if (r->sts[i] == MB_OK) {
            /* A checkpoint confirmed meanwhile may have set a later end. */
            if (r->sent_ms + s->o.lease_ms > j->lease_until)
                j->lease_until = r->sent_ms + s->o.lease_ms;
            j->job->cancel_requested = r->cancel[i];
        } else if (r->sts[i] == MB_AGAIN) {
            /* Redis away: the lease may hold yet.  Renewed again shortly; lost by the
             * tick once its end passes. */
            failed = 1;
        } else {
            lease_lost(j, r->errs[i].msg);
        }
    }
    if (failed)
        s->next_renew_ms = now + RENEW_PAUSE_MS;
    renew_req_free(r);
}

/* Does the job's lease need extending now? */
static int needs_renewal(const mb_saga *s, const sjob *j, long long now)
{
    return !j->lost && !j->leave && !j->ck_pending && j->lease_until - now <= s->o.lease_ms / 2;
}

/* ---- handing back jobs given up ----------------------------------------------------
 * A job leaves memory as lost when its lease ran out on this worker's clock (or its
 * checkpoint could not be confirmed in time).  A renewal or checkpoint may still have
 * landed with its reply lost: Redis then keeps the job leased to this worker, idle, until
 * that lease ends.  The job is handed back: if the lease is still ours under its fence, it
 * is due now for any worker.  A handback whose lease is gone does nothing, so it is sent
 * for every job lost, and again while Redis cannot be reached. */
/* Queues ref (its strings taken over, or freed when there is no room: the lease ends by
 * itself then). */
static void hb_push(mb_saga *s, mb_lease_ref ref)
{
    if (s->nhb == s->caphb) {
        size_t cap = s->caphb ? s->caphb * 2 : 16;
        mb_lease_ref *grown = cap <= HANDBACK_MAX ? realloc(s->hb, cap * sizeof(*grown)) : NULL;
        if (grown == NULL) {
            free((char *)ref.order_id);
            free((char *)ref.key);
            return;
        }
        s->hb = grown;
        s->caphb = cap;
    }
    s->hb[s->nhb++] = ref;
}

static void hand_back_later(mb_saga *s, const sjob *j)
{
    mb_lease_ref ref = {strdup(j->job->order_id), strdup(j->job->key), j->job->fence};

    if (ref.order_id == NULL || ref.key == NULL) {
        free((char *)ref.order_id);
        free((char *)ref.key);
        return;
    }
    hb_push(s, ref);
}

/* A request's refs back in the queue (their strings taken over), tried again later. */
static void hb_again(mb_saga *s, mb_lease_ref *refs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        hb_push(s, refs[i]);
        refs[i].order_id = refs[i].key = NULL;
    }
    s->next_hb_ms = mono_ms() + CLAIM_PAUSE_MS;
}

static void refs_free(mb_lease_ref *refs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)refs[i].order_id);
        free((char *)refs[i].key);
    }
    free(refs);
}

typedef struct handback_req {
    mb_saga *saga;
    mb_lease_ref *refs; /* taken over from saga->hb */
    size_t n;
    mb_status *sts;
    int *back;
    mb_error *errs;
    mb_status st;
} handback_req;

static void handback_req_free(handback_req *r)
{
    refs_free(r->refs, r->n);
    free(r->sts);
    free(r->back);
    free(r->errs);
    free(r);
}

static void handback_run(mb_store *st, void *ctx)
{
    handback_req *r = ctx;

    for (size_t i = 0; i < r->n; i++)
        mb_error_clear(&r->errs[i]);
    r->st = mb_store_handback(st, r->refs, r->n, r->sts, r->back, r->errs);
}

static void handback_back(void *ctx)
{
    handback_req *r = ctx;
    mb_saga *s = r->saga;
    size_t handed = 0;

    s->hb_out = 0;
    if (r->st == MB_AGAIN) { /* unreachable: all of them again, later */
        hb_again(s, r->refs, r->n);
    } else {
        for (size_t i = 0; i < r->n; i++)
            handed += r->back[i] != 0;
    }
    if (handed > 0)
        mb_info("saga", "%zu job(s) given up were still leased to this worker: handed back",
                handed);
    handback_req_free(r);
}

static void hand_back(mb_saga *s)
{
    handback_req *r;

    if (s->nhb == 0 || s->hb_out || mono_ms() < s->next_hb_ms)
        return;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return;
    r->saga = s;
    r->n = s->nhb;
    r->sts = calloc(r->n, sizeof(*r->sts));
    r->back = calloc(r->n, sizeof(*r->back));
    r->errs = calloc(r->n, sizeof(*r->errs));
    if (r->sts == NULL || r->back == NULL || r->errs == NULL) {
        r->n = 0;
        handback_req_free(r);
        return;
    }
    r->refs = s->hb; /* the array goes with the request; a fresh one fills meanwhile */
    s->hb = NULL;
    s->nhb = s->caphb = 0;
    if (mb_rq_submit(s->rq, handback_run, handback_back, r) < 0) {
        hb_again(s, r->refs, r->n);
        handback_req_free(r);
        return;
    }
    s->hb_out = 1;
}

/* Every LEASE_WALK_MS (or twentieth of a lease): a lease past its end on our clock is
 * lost; every lease past half its life is renewed, all in one request, one request out at
 * a time.  Checkpoints extend leases as jobs move, so most jobs never need one. */
static void renew_leases(mb_saga *s)
{
    long long now = mono_ms();
    long long every = s->o.lease_ms / 20 < LEASE_WALK_MS ? s->o.lease_ms / 20 : LEASE_WALK_MS;
    size_t n = 0, k = 0;
    renew_req *r;

    if (now < s->next_lease_walk_ms)
        return;
    s->next_lease_walk_ms = now + every;
    for (sjob *j = s->jobs, *next; j; j = next) {
        next = j->next;
        if (!j->lost && !j->ck_pending && now >= j->lease_until) {
            lease_lost(j, "not renewed before it ran out");
            continue;
        }
        if (needs_renewal(s, j, now))
            n++;
    }
    if (n == 0 || s->renew_out || now < s->next_renew_ms)
        return;
    r = renew_req_new(s, n);
    if (r == NULL)
        return; /* tried again at the next walk */
    for (sjob *j = s->jobs; j && k < n; j = j->next) {
        if (!needs_renewal(s, j, now))
            continue;
        r->refs[k] = (mb_lease_ref){j->job->order_id, j->job->key, j->job->fence};
        mb_error_clear(&r->errs[k]);
        r->jobs[k++] = j;
    }
    r->n = k;
    if (mb_rq_submit(s->rq, renew_run, renew_back, r) < 0) {
        renew_req_free(r);
        return;
    }
    s->renew_out = 1;
    for (size_t i = 0; i < k; i++)
        r->jobs[i]->renew_out = 1;
}

/* A claim out on the Redis thread. */
typedef struct claim_req {
    mb_saga *saga;
    size_t room;
    long long lease_ms;
    char id[48]; /* the claim's id; the same again when resent */
    int resend;
    mb_job **jobs; /* new, filled by the thread; taken over by start() */
    size_t n;
    mb_status st;
    mb_error err;
    long long sent_ms;
    long long next_in; /* ms until the next job is due, as the claim saw it (-1: none) */
} claim_req;

/* After a claim sent at sent (monotonic) that took n jobs: claim again next tick while
 * there is work, else when the next job is due (leases' ends included: a dead worker's jobs
 * come back then), or after CLAIM_IDLE_MAX_MS; mb_saga_wake cuts the wait short. */
static void claim_pace(mb_saga *s, size_t n, long long in, long long sent)
{
    if (n > 0 || in == 0)
        s->next_claim_ms = 0;
    else
        s->next_claim_ms = sent + (in > 0 && in < CLAIM_IDLE_MAX_MS ? in : CLAIM_IDLE_MAX_MS);
}

static void claim_run(mb_store *st, void *ctx)
{
    claim_req *r = ctx;

    r->sent_ms = mono_ms();
    mb_error_clear(&r->err);
    r->st = mb_store_claim(st, r->lease_ms, r->room, r->id, r->resend, &r->jobs, &r->n, &r->err);
    r->next_in = mb_store_next_due_in_ms(st);
}

static void claim_back(void *ctx)
{
    claim_req *r = ctx;
    mb_saga *s = r->saga;

    s->claim_out = 0;
    /* A failed claim may have landed in some shards (its reply lost, or an error part-way):
     * the next one goes out under the same id and gets those jobs back. */
    s->claim_resend = r->st != MB_OK;
    if (r->st == MB_OK)
        s->claim_seq++;
    if (r->st != MB_OK) {
        if (!s->claim_failing)
            mb_warn("saga", "claim failed (retrying every %d ms, logged once): %s", CLAIM_PAUSE_MS,
                    r->err.msg);
        s->claim_failing = 1;
        s->next_claim_ms = mono_ms() + CLAIM_PAUSE_MS;
    } else {
        if (s->claim_failing)
            mb_info("saga", "claims work again");
        s->claim_failing = 0;
        claim_pace(s, r->n, r->next_in, r->sent_ms);
    }
    for (size_t i = 0; i < r->n; i++) {
        sjob *old = find_held(s, r->jobs[i]->order_id);
        /* Our copy's lease ran out in Redis before we let go of it: the new claim (a
         * higher fence) wins, but never beside a copy still acting: start() leaves it to
         * its lease while the old copy is still in memory. */
        if (old != NULL)
            lease_lost(old, "claimed again: this copy's lease ran out");
        start(s, r->jobs[i], r->sent_ms);
    }
    free(r->jobs);
    free(r);
}

static void claim(mb_saga *s)
{
    claim_req *r;
    size_t room;

    if (s->claim_out || s->draining || s->njobs >= s->o.max_inflight ||
        mono_ms() < s->next_claim_ms)
        return;
    /* Claim no more than the cloud client can carry: a job claimed while its
     * calls would only queue holds memory and a lease for nothing. */
    if (s->o.max_cloud_backlog && mb_cloud_inflight(s->cloud) >= s->o.max_cloud_backlog)
        return;
    /* Nor more than Redis takes: checkpoints held back beyond a batch (MB_SAGA_CK_OUT_MAX
     * requests out) say it is behind, and a claim then only brings in jobs to wait for it. */
    if (s->nq >= FLUSH_BATCH)
        return;
    room = s->o.max_inflight - s->njobs;
    if (room > CLAIM_MAX)
        room = CLAIM_MAX; /* bounded work per completion */
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return;
    r->saga = s;
    r->room = room;
    r->lease_ms = s->o.lease_ms;
    snprintf(r->id, sizeof(r->id), "%llx-%llu", (unsigned long long)s->claim_nonce, s->claim_seq);
    r->resend = s->claim_resend;
    if (mb_rq_submit(s->rq, claim_run, claim_back, r) < 0) {
        free(r);
        return;
    }
    s->claim_out = 1;
}

void mb_saga_set_split(mb_saga *s, int on)
{
    s->split = on;
}

void mb_saga_tick(mb_saga *s)
{
    resend_due(s);
    renew_leases(s);
    hand_back(s);
    claim(s);
}

void mb_saga_wake(mb_saga *s)
{
    s->next_claim_ms = 0;
}

void mb_saga_set_on_events(mb_saga *s, void (*fn)(void *ctx, const char *key), void *ctx)
{
    s->on_events = fn;
    s->on_events_ctx = ctx;
}

void mb_saga_drain(mb_saga *s)
{
    s->draining = 1;
    /* Sleepers wake now, in the loop, and hand their jobs back at the boundary. */
    for (sjob *j = s->jobs; j; j = j->next) {
        if (j->sleeping)
            event_active(j->wake_ev, EV_TIMEOUT, 0);
    }
}

size_t mb_saga_inflight(const mb_saga *s)
{
    return s->njobs;
}

int mb_saga_steps(const mb_saga *s)
{
    return s->nhist;
}

const char *mb_saga_step_name(const mb_saga *s, int i)
{
    for (size_t d = 0; d < s->ndefs; d++) {
        if (i < s->defs[d]->nsteps)
            return s->defs[d]->steps[i]->name;
        i -= s->defs[d]->nsteps;
    }
    return "";
}

void mb_saga_step_hist(const mb_saga *s, int i, mb_saga_hist *out)
{
    *out = s->hist[i];
}

long long mb_saga_poll_usual_ms(const mb_saga *s, int i, int compensating)
{
    const mb_pace *p = i >= 0 && i < s->nhist ? pace_at(s, i, compensating) : NULL;

    return p && p->n > 0 ? p->usual : -1;
}

void mb_saga_duration_hist(const mb_saga *s, size_t def, int outcome, mb_saga_hist *out)
{
    memset(out, 0, sizeof(*out));
    if (def < s->ndefs && outcome >= 0 && outcome < MB_SAGA_OUTCOMES)
        *out = s->dur[def * MB_SAGA_OUTCOMES + (size_t)outcome];
}

void mb_saga_checkpoint_hist(const mb_saga *s, int phase, mb_saga_hist *out)
{
    memset(out, 0, sizeof(*out));
    if (phase >= 0 && phase < MB_SAGA_CK_PHASES)
        *out = s->ckh[phase];
}

void mb_saga_inflight_steps(const mb_saga *s, uint64_t *counts)
{
    memset(counts, 0, (size_t)s->nhist * sizeof(*counts));
    for (const sjob *j = s->jobs; j; j = j->next) {
        long long i = j->state_text ? j->text_step : st_int(j->pub.state, "step");
        if (i < 0)
            i = 0;
        if (i >= j->def->nsteps)
            i = j->def->nsteps - 1;
        if (j->hist_base + i < s->nhist)
            counts[j->hist_base + i]++;
    }
}

void mb_saga_stats_get(const mb_saga *s, mb_saga_stats *out)
{
    *out = s->stats;
    out->ck_held = s->nq;
}

void mb_saga_free(mb_saga *s)
{
    if (s == NULL)
        return;
    while (s->jobs) {
        sjob *j = s->jobs;
        j->pending = 0;
        j->ck_pending = 0;
        j->renew_out = 0;
        drop(j);
    }
    refs_free(s->hb, s->nhb);
    if (s->flush_ev)
        event_free(s->flush_ev);
    free(s->ck_spare);
    free(s->ckq);
    free(s->rsq);
    free(s->hist);
    free(s->dur);
    free(s->pace);
    free(s->held);
    free(s->worker_id);
    free(s);
}
