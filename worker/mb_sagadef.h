/* mb_sagadef.h: a saga as a value: its steps in order, its status words and messages, its
 * order type and parser.  The engine knows a saga only through its definition. */
#ifndef MB_SAGADEF_H
#define MB_SAGADEF_H

#include <stddef.h>

#include <jansson.h>

#include "mb_event.h"
#include "mb_order.h"
#include "mb_step.h"

/* The saga of a job record written before records named their saga. */
#define MB_SAGA_DEFAULT "create"

typedef struct mb_saga_def {
    const char *name;       /* the job record's "saga" field: "create" */
    const char *order_type; /* CloudEvents type of the order that starts it */
    /* Parses the order as stored in the job record (the envelope intake accepted):
     * 0 and *out (new), or -1 with err filled. */
    int (*parse)(const json_t *env, mb_order **out, mb_order_err *err);
    const mb_step *const *steps; /* in the order they run (static) */
    int nsteps;                  /* 1..64 (a status event's step_total) */
    /* While steps run, and at the end of the last: the store's status word and the status
     * event's status it is reported with. */
    const char *active; /* "Installing" */
    mb_mesh_status active_event;
    const char *done; /* "Running" */
    mb_mesh_status done_event;
    const char *start_message; /* first event when a worker takes the job: "installing" */
    const char *done_message;  /* when the last step leaves no line of its own */
    long step_deadline_ms;     /* a step without its own deadline; 0 = the worker's setting */
    /* 1: a failure does not compensate: the job ends Failed at the failed step with what
     * was done so far kept (as MESHBUY_ON_FAILURE=park does for every saga), replayable
     * from there; a cancel ends it Cancelled at the next step boundary, nothing undone. */
    int keep_effects;
    const char *failed_message;    /* with keep_effects: the Failed event's message */
    const char *cancelled_message; /* with keep_effects: the Cancelled event's message */
    /* Optional: completes the parsed order from the job's state before any step runs (a
     * delete takes the cluster, nodes and namespaces from the create it undoes).  0, or -1
     * out of memory. */
    int (*resolve)(mb_order *o, const json_t *state);
    /* Optional: the order whose mesh this job acts on, for the events' mesh_id (borrowed
     * from state); NULL or absent = the job's own order. */
    const char *(*mesh_of)(const json_t *state);
} mb_saga_def;

/* The deadlines' settings as mb_conf table rows (mb_conf.h), one definition for the
 * worker's table and meshctl's (which flags a step past its deadline as stuck): a step
 * without a deadline of its own or of its saga's, and each compensation. */
/* clang-format off */
#define MB_SAGA_CONF_DEADLINES                                                               \
    {"MESHBUY_STEP_DEADLINE_MS", MB_CONF_INT, "600000", 1000, 86400000, NULL,               \
     "deadline of a step that sets none (nor its saga), retries included"},                 \
    {"MESHBUY_COMPENSATE_DEADLINE_MS", MB_CONF_INT, "600000", 1000, 86400000, NULL,         \
     "per-compensation deadline, retries included"}
/* clang-format on */

/* The sagas this build knows (worker/mb_sagadef.c), the create saga
 * (worker/steps/mb_steps.c) and the delete saga (worker/steps/mb_steps_delete.c).  Adding
 * a saga is its definition and one line there. */
extern const mb_saga_def mb_saga_create;
extern const mb_saga_def mb_saga_delete;
extern const mb_saga_def *const mb_saga_defs[];
extern const size_t mb_saga_defs_count;

/* The definition named name among n defs; NULL or "" is MB_SAGA_DEFAULT.  NULL when
 * none has that name. */
const mb_saga_def *mb_saga_def_find(const mb_saga_def *const *defs, size_t n, const char *name);

/* Index of the step called name in d, or -1. */
int mb_saga_def_step(const mb_saga_def *d, const char *name);

#endif
