/* mb_steps.c: the create saga: its steps in the order they run, and how it reports.
 * Adding a step is its file in this folder and one line in the table below. */
#include "mb_sagadef.h"

extern const mb_step mb_step_validate, mb_step_reserve, mb_step_precheck, mb_step_label_nodes,
    mb_step_install_release, mb_step_open_port, mb_step_inject, mb_step_restart, mb_step_finish;

const mb_step *const mb_steps[] = {
    &mb_step_validate,    &mb_step_reserve,         &mb_step_precheck,
    &mb_step_label_nodes, &mb_step_install_release, &mb_step_open_port,
    &mb_step_inject,      &mb_step_restart,         &mb_step_finish,
};
const int mb_steps_count = sizeof(mb_steps) / sizeof(mb_steps[0]);

const mb_saga_def mb_saga_create = {
    .name = "create",
    .order_type = MB_TYPE_ORDER_BUY,
    .parse = mb_order_from_json,
    .steps = mb_steps,
    .nsteps = sizeof(mb_steps) / sizeof(mb_steps[0]),
    .active = "Installing",
    .active_event = MB_MESH_INSTALLING,
    .done = "Running",
    .done_event = MB_MESH_RUNNING,
    .start_message = "installing",
    .done_message = "the service mesh is running",
};
