/* mb_steps.c: the saga's table of steps, in the order they run (DESIGN.md section 3). */
#include "mb_step.h"

extern const mb_step mb_step_validate, mb_step_reserve, mb_step_precheck, mb_step_label_nodes,
    mb_step_install_release, mb_step_open_port, mb_step_inject, mb_step_restart, mb_step_finish;

const mb_step *const mb_steps[] = {
    &mb_step_validate,    &mb_step_reserve,         &mb_step_precheck,
    &mb_step_label_nodes, &mb_step_install_release, &mb_step_open_port,
    &mb_step_inject,      &mb_step_restart,         &mb_step_finish,
};
const int mb_steps_count = sizeof(mb_steps) / sizeof(mb_steps[0]);
