/* mb_target.h: what a delete saga's steps know of the create they undo.
 *
 * The accept script snapshots the mesh's create into the delete job's state as "target":
 * {"order_id", "status", "saga", "deleted_by", "order": its envelope, "state": its saga
 * state, checkpoints included}, or null when no order holds the mesh name.  Steps read it
 * here and never call Redis. */
#ifndef MB_TARGET_H
#define MB_TARGET_H

#include "mb_step.h"

/* state.target, or NULL when the mesh had no holder.  Borrowed. */
const json_t *mb_target(const mb_sjob *j);

/* The create's order id, or NULL.  Borrowed. */
const char *mb_target_order_id(const mb_sjob *j);

/* What the create's step recorded (its ck), or NULL if it recorded nothing.  Borrowed. */
const json_t *mb_target_ck(const mb_sjob *j, const char *create_step);

/* mb_saga_def.resolve of the delete saga: the cluster the create used (the cloud target),
 * and as the order's namespaces those the create labeled istio-injection=enabled (the
 * restart step's).  0, or -1 out of memory. */
int mb_target_resolve(mb_order *o, const json_t *state);

/* mb_saga_def.mesh_of of the delete saga: the create's order id. */
const char *mb_target_mesh_of(const json_t *state);

#endif
