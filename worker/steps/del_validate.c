/* del_validate.c: delete step 1: the delete order, as the engine parsed it. */
#include "mb_step.h"

/* The schema was checked at intake and again when the job was loaded; what is left is to
 * record what the order asks, for the steps and for an SRE reading the job. */
static mb_step_rc del_validate_run(mb_sjob *j)
{
    if (j->order->kind != MB_ORDER_DELETE)
        return mb_step_fail(j, "InvalidOrder", "the delete saga runs a %s order",
                            mb_order_kind_name(j->order->kind));
    json_object_set_new(j->ck, "mesh", json_string(j->order->mesh_name));
    json_object_set_new(j->ck, "restart_existing", json_boolean(j->order->restart_existing));
    return MB_STEP_DONE;
}

/* Read-only face: the same test, reported. */
static mb_step_rc del_validate_check(mb_sjob *j)
{
    if (j->order->kind != MB_ORDER_DELETE)
        mb_step_would_fail(j, "InvalidOrder", "the delete saga runs a %s order",
                           mb_order_kind_name(j->order->kind));
    else
        mb_step_seen(j, "no cloud call: records the delete of mesh %s", j->order->mesh_name);
    return MB_STEP_DONE;
}

const mb_step mb_step_del_validate = {
    .name = "validate",
    .run = del_validate_run,
    .check = del_validate_check,
    .deadline_ms = 60000,
    .local = 1,
};
