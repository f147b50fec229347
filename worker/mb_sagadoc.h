/* mb_sagadoc.h: the saga state document's rewrites, shared by the engine and meshctl:
 * where a saga stands and stopped, a replay from a step, a roll back.  The document is
 * described at the top of worker/mb_saga.c; the saga's definition gives the steps. */
#ifndef MB_SAGADOC_H
#define MB_SAGADOC_H

#include <stddef.h>

#include <jansson.h>

#include "mb_sagadef.h"

/* Moves the document to step (in its current phase) with a fresh attempt count and
 * deadline.  In place. */
void mb_sagadoc_position(json_t *state, int step);

/* The name of the step where the saga stopped (failed, was cancelled, or was rolled
 * back from): error.step, else outcome_step; NULL when it has not stopped.  Borrowed. */
const char *mb_sagadoc_stopped_at(const json_t *state);

/* Index in d of the last step that started, or -1 when none did. */
int mb_sagadoc_last_started(const mb_saga_def *d, const json_t *state);

/* Where a replay starts when the operator does not say: a parked job, or one of a saga
 * that keeps its effects, at the step where it stopped (its effects are in place); a
 * compensated one (Failed, Cancelled, NeedsAttention) at the
 * first step with something to undo (the earlier ones changed nothing); else the start. */
int mb_sagadoc_default_from(const mb_saga_def *d, const json_t *state, const char *status);

/* 0, or -1 with why: a replay from `from` would skip a step whose effect compensation
 * removed (the later steps rely on it). */
int mb_sagadoc_check_skipped(const mb_saga_def *d, const json_t *state, int from, char *why,
                             size_t len);

/* 1 if a replay from `from` runs a step whose compensation gave the mesh name back (the
 * rewrite then takes the name again). */
int mb_sagadoc_claims_name(const mb_saga_def *d, int from);

/* The phase "compensate" from step `from`, remembering the outcome ("Failed",
 * "Cancelled") and where the saga stopped; error (borrowed, may be NULL) becomes the
 * document's error.  In place: the engine's begin of compensation and a roll back. */
void mb_sagadoc_compensate(const mb_saga_def *d, json_t *state, int from, const char *outcome,
                           const json_t *error);

/* Asks the worker that next takes the job to publish a status event first (status: a
 * status event's word), so the console sees an operator's action.  In place. */
void mb_sagadoc_announce(json_t *state, const char *status, const char *message);

/* The document a replay from `from` writes (new): the run phase at that step with a
 * fresh attempt count and deadline, the failure forgotten, the steps' records (and what
 * their ck says they changed) kept since steps observe before they act, the replay
 * recorded (by, from, at_ms, status_was) and announced with the saga's active status. */
json_t *mb_sagadoc_replay(const mb_saga_def *d, const json_t *state, int from, const char *who,
                          const char *status_was, long long now_ms);

/* The document a roll back from `from` writes (new): compensation from that step,
 * outcome Failed with error RolledBack (message msg), parked forgotten, announced as
 * RollingBack. */
json_t *mb_sagadoc_rollback(const mb_saga_def *d, const json_t *state, int from, const char *msg);

#endif
