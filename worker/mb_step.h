/* mb_step.h: the one face every saga step shows the engine, and what a step may use. */
#ifndef MB_STEP_H
#define MB_STEP_H

#include <jansson.h>

#include "mb_cloud.h"
#include "mb_err.h"
#include "mb_order.h"

/*
 * A step is a small state machine over one job.  The engine calls run() (or
 * compensate()) with j->pc == 0 at the start of every execution; the step
 * issues cloud calls, moves j->pc on and returns MB_STEP_WAIT; when every call it
 * issued has completed, the engine calls it again, with the first error (if
 * any) in j->err.  Steps observe before they act, so an execution cut short by
 * a crash is simply run again from pc 0 by whichever worker claims the job.
 *
 * What a step changed goes into its checkpoint object, j->ck (state.steps.<name>.ck),
 * which the engine persists with every checkpoint; compensation undoes exactly
 * what it records.  In-memory helpers live in j->scratch (zeroed per execution,
 * released through the step's clear hook).
 */

typedef enum mb_step_rc {
    MB_STEP_DONE,  /* effect in place: go to the next step */
    MB_STEP_WAIT,  /* cloud calls in flight: call me again when all have completed */
    MB_STEP_SAVE,  /* persist j->ck now, then call me again (before a side effect whose
                      undo needs what was just observed) */
    MB_STEP_POLL,  /* effect under way (a release installing): check again in j->poll_ms */
    MB_STEP_ERROR, /* j->err says why; MB_AGAIN is retried with backoff, MB_PERM fails */
} mb_step_rc;

typedef struct mb_sjob mb_sjob;

typedef struct mb_step {
    const char *name;
    mb_step_rc (*run)(mb_sjob *j);
    mb_step_rc (*compensate)(mb_sjob *j); /* NULL: nothing to undo */
    void (*clear)(void *scratch);         /* frees what scratch points to; NULL if nothing */
    size_t scratch_size;
    long deadline_ms; /* per execution of the step, retries included */
    /* The read-only face: observes what run() would look at (GET calls only; a driver
     * refuses any write) and says, through mb_step_would / mb_step_seen / mb_step_would_fail,
     * what run() would change and what is already in place.  j->ck is a copy: what it
     * writes there is dropped.  Returns MB_STEP_DONE, MB_STEP_WAIT, or MB_STEP_ERROR when
     * it could not observe (j->err).  NULL: the planner reports the step as unknown. */
    mb_step_rc (*check)(mb_sjob *j);
    /* Its compensation gives the mesh name back: a replay from this step or an earlier one
     * takes the name again. */
    int releases_name;
    /* It reaches nothing outside the worker's memory (no cloud call, no save, no wait), so
     * a crash before its record is written only runs it again: the engine writes no
     * checkpoint between it and the step before it (mb_saga.c, defer_ck). */
    int local;
    /* Its first execution saves before anything else (a write-ahead intent), or reaches
     * nothing at all (restart when not asked): the checkpoint before it may ride with the
     * next one, as before a local step. */
    int saves_first;
} mb_step;

/* Who drives a step and hears about its cloud calls: the engine, or the check driver
 * (mb_check.h).  mb_step_io / mb_step_done / mb_step_call forward to it. */
typedef struct mb_step_host {
    void (*io)(mb_sjob *j);                        /* a call is about to be issued: count it */
    void (*done)(mb_sjob *j, const mb_error *err); /* a counted call completed */
    void (*lost)(mb_sjob *j); /* a counted call never started (out of memory) */
    /* The named step's record in j->state, or NULL when it has none (or, the job then
     * lost, could not be read back).  NULL hook: looked up in the tree.  The engine keeps
     * the records of steps it is not executing as text and parses one back when read. */
    json_t *(*record)(mb_sjob *j, const char *name);
} mb_step_host;

/* The job as a step sees it.  Everything here is owned by the engine (or the driver). */
struct mb_sjob {
    int pc;                /* step-local program counter, 0 at each execution; each step
                              names its values in an enum whose first (0) is the start */
    mb_error err;          /* first error of the last batch of calls */
    long poll_ms;          /* with MB_STEP_POLL */
    void *scratch;         /* step_size bytes, zeroed per execution */
    json_t *ck;            /* this step's checkpoint object (borrowed, mutable) */
    json_t *state;         /* the whole saga state (borrowed; read other steps' ck) */
    const mb_order *order; /* the job's order, completed by its saga's resolve (borrowed) */
    mb_cloud *cloud;
    mb_cloud_target target; /* project, region, cluster, traceparent of this order */
    const struct mb_catalog *catalog;
    struct mb_store *store;
    const struct mb_job *job;    /* the store's record (fence, key) */
    int release_name;            /* set by a compensation: the next checkpoint frees the name */
    const char *release_name_of; /* with release_name: only if this order holds it (a delete
                                    frees its create's; borrowed from state); NULL = ours */
    char message[256];           /* optional line for the status event that reports this step */
    const mb_step_host *host;    /* set by whoever drives the step (static) */
    json_t *plan;                /* check(): where it reports (borrowed); NULL otherwise */
};

/* Where a step's cloud calls report back: pass mb_step_done and mb_step_io(j)
 * as the (done, arg) pair of every mb_cloud call.  mb_step_io counts the call. */
void mb_step_done(void *arg, const mb_error *err);
void *mb_step_io(mb_sjob *j);

/* Wraps every mb_cloud call: an op that could not even start (out of memory)
 * never calls back, so it is uncounted here and fails the step. */
void mb_step_call(mb_sjob *j, mb_cloud_op *op);

/* Sets j->err (permanent) and returns MB_STEP_ERROR. */
mb_step_rc mb_step_fail(mb_sjob *j, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets j->err to "OutOfMemory" (fatal: "<what>: out of memory") and returns MB_STEP_ERROR. */
mb_step_rc mb_step_oom(mb_sjob *j, const char *what);

/* Another step's checkpoint object, or NULL if that step has not recorded one. Borrowed. */
json_t *mb_step_ck_of(mb_sjob *j, const char *step_name);

/* For check faces: a line saying what run() would change ("changes"), what it found
 * already in place ("in_place"), and the error run() would fail with ("fails": code and
 * message; the last one wins).  No-ops when j->plan is NULL. */
void mb_step_would(mb_sjob *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mb_step_seen(mb_sjob *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mb_step_would_fail(mb_sjob *j, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The create saga's table, in order (worker/steps/mb_steps.c).  The engine and meshctl
 * read it only through the saga's definition (mb_saga_create, mb_sagadef.h). */
extern const mb_step *const mb_steps[];
extern const int mb_steps_count;

#endif
