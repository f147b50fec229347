/* mb_event.h: the status-event contract: building and parsing mesh.status CloudEvents. */
#ifndef MB_EVENT_H
#define MB_EVENT_H

#include <jansson.h>
#include <stddef.h>

#define MB_TYPE_MESH_STATUS "com.meshbuy.mesh.status.v1"
#define MB_EVENT_SOURCE     "/meshbuy/worker"

typedef enum mb_mesh_status {
    MB_MESH_ACCEPTED = 0,
    MB_MESH_INSTALLING,
    MB_MESH_RUNNING,
    MB_MESH_ROLLING_BACK,
    MB_MESH_FAILED,
    MB_MESH_CANCELLED,
    MB_MESH_DELETING, /* the delete saga, while its steps run */
    MB_MESH_DELETED,  /* the delete saga's end */
} mb_mesh_status;

/* One status event.  All strings are borrowed for the call (build) or until
 * the parsed json_t is released (mb_event_view).  NULL = absent. */
typedef struct mb_status_event {
    const char *order_id;   /* required */
    const char *mesh_id;    /* required: mb_order_mesh_id of the order */
    const char *account_id; /* required */
    const char *mesh_name;  /* required */
    const char *cluster_id; /* optional: absent when the order only parsed partly */
    mb_mesh_status status;
    const char *step;          /* required, "precheck" */
    int step_index;            /* 1..64 */
    int step_total;            /* 1..64 */
    const char *message;       /* required, may be ""; NULL is taken as "" */
    const char *error_code;    /* non-NULL = an "error" object; required when FAILED,
                               allowed when ROLLING_BACK, refused otherwise */
    const char *error_message; /* NULL is taken as "" */
    int error_retryable;
    long attempt;            /* >= 1 */
    long long seq;           /* >= 1, per key */
    long long occurred_ms;   /* epoch ms; 0 = now */
    const char *traceparent; /* the order's; optional */
    const char *source;      /* NULL = MB_EVENT_SOURCE */
} mb_status_event;

/* "Accepted", "Installing", "Running", "RollingBack", "Failed", "Cancelled", "Deleting",
 * "Deleted".  Static. */
const char *mb_mesh_status_name(mb_mesh_status s);

/* Parses a status name.  0, or -1 if it names none. */
int mb_mesh_status_parse(const char *name, mb_mesh_status *out);

/* Builds the structured CloudEvent (compact JSON, NUL-terminated, new: free()).
 * id "<account_id>/<mesh_name>#<seq>" (a re-relayed duplicate carries the same
 * id), subject "<account_id>/<mesh_name>", time = occurred_at.  Nothing that
 * mb_event_check would refuse is built: the caller's fields go through the same
 * rules first (what is not the caller's is fixed by the builder), and on a field
 * that breaks them, NULL with "data.<field>: reason" (or "event.<attr>: ...") in
 * err, the first error mb_event_check would report. */
char *mb_event_build(const mb_status_event *ev, char *err, size_t errlen);

/* Same, as a JSON object (new reference). */
json_t *mb_event_build_json(const mb_status_event *ev, char *err, size_t errlen);

/* A status event as the store queues it (mb_checkpoint): the members of the envelope but
 * "id" and "data", and the members of data but "seq", each without braces, in the order
 * and bytes mb_event_build_json's object would dump them; the store stamps id and seq
 * when it queues the event.  text holds head_len bytes of head, then data_len of data. */
typedef struct mb_event_parts {
    char *text; /* owned */
    size_t head_len, data_len;
    char traceparent[56]; /* the envelope's traceparent (MB_TRACEPARENT_LEN), "" when none */
} mb_event_parts;

/* Builds ev's parts into out, under the same rules as mb_event_build_json, without
 * building the object: the worker queues a few events at every step.  0, or -1 with err
 * as mb_event_build_json (out then holds nothing to free). */
int mb_event_build_parts(const mb_status_event *ev, mb_event_parts *out, char *err, size_t errlen);

void mb_event_parts_free(mb_event_parts *p);

/* Parses and checks one status event (len bytes, need not be NUL-terminated)
 * per schemas/mesh-status.schema.json.  Returns the envelope (new reference)
 * or NULL with the reason in err. */
json_t *mb_event_parse(const void *buf, size_t len, char *err, size_t errlen);

/* Checks an envelope already decoded.  env borrowed.  0 or -1 with err. */
int mb_event_check(const json_t *env, char *err, size_t errlen);

/* Fills out from a checked envelope; strings borrowed from env.
 * occurred_ms is 0 (occurred_at is kept as text in env).  0 or -1. */
int mb_event_view(const json_t *env, mb_status_event *out);

#endif
