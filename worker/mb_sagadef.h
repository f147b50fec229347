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
} mb_saga_def;

/* The sagas this build knows (worker/mb_sagadef.c), and the create saga
 * (worker/steps/mb_steps.c).  Adding a saga is its definition and one line there. */
extern const mb_saga_def mb_saga_create;
extern const mb_saga_def *const mb_saga_defs[];
extern const size_t mb_saga_defs_count;

/* The definition named name among n defs; NULL or "" is MB_SAGA_DEFAULT.  NULL when
 * none has that name. */
const mb_saga_def *mb_saga_def_find(const mb_saga_def *const *defs, size_t n, const char *name);

/* Index of the step called name in d, or -1. */
int mb_saga_def_step(const mb_saga_def *d, const char *name);

#endif
