/* mb_steps_delete.c: the delete saga: its steps in the order they run, and how it reports.
 * Adding a step is its file in this folder and one line in the table below. */
#include "mb_sagadef.h"
#include "mb_target.h"

extern const mb_step mb_step_del_validate, mb_step_del_precheck, mb_step_uninject, mb_step_restart,
    mb_step_uninstall_release, mb_step_close_port, mb_step_unlabel_nodes, mb_step_release_name,
    mb_step_del_finish;

static const mb_step *const delete_steps[] = {
    &mb_step_del_validate,  &mb_step_del_precheck,      &mb_step_uninject,
    &mb_step_restart,       &mb_step_uninstall_release, &mb_step_close_port,
    &mb_step_unlabel_nodes, &mb_step_release_name,      &mb_step_del_finish,
};

const mb_saga_def mb_saga_delete = {
    .name = "delete",
    .order_type = MB_TYPE_ORDER_DELETE,
    .parse = mb_order_from_json,
    .steps = delete_steps,
    .nsteps = sizeof(delete_steps) / sizeof(delete_steps[0]),
    .active = "Deleting",
    .active_event = MB_MESH_DELETING,
    .done = "Deleted",
    .done_event = MB_MESH_DELETED,
    .start_message = "deleting",
    .done_message = "the service mesh is deleted",
    /* Undoing a delete would mean installing the mesh again: never.  A failure stops
     * here, what was removed stays removed, and an SRE replays from the failed step. */
    .keep_effects = 1,
    .failed_message = "delete failed; what was removed so far stays removed (replay with "
                      "meshctl)",
    .cancelled_message = "delete cancelled; what was removed so far stays removed",
    .resolve = mb_target_resolve,
    .mesh_of = mb_target_mesh_of,
};
