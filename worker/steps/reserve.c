/* reserve.c: step 2: the (account, mesh name) claim. */
#include "mb_step.h"

/* The claim itself is taken at acceptance, in the same atomic script that
 * records the order id (a second order for the name is refused there with
 * NameConflict, a redelivery joins its job), so that no two jobs can ever
 * race for a name.  The step stands in the table for its compensation: a
 * failed order gives its name back so the customer can buy again (an SRE's
 * replay from this step takes it back atomically, or is refused with
 * NameConflict if another order took it meanwhile: mb_store_rewrite). */
static mb_step_rc reserve_run(mb_sjob *j)
{
    json_object_set_new(j->ck, "name", json_string(j->order->mesh_name));
    return MB_STEP_DONE;
}

static mb_step_rc reserve_compensate(mb_sjob *j)
{
    j->release_name = 1; /* freed by the checkpoint that records this */
    return MB_STEP_DONE;
}

/* Read-only face: nothing in the cloud; the name is the store's business. */
static mb_step_rc reserve_check(mb_sjob *j)
{
    mb_step_seen(j,
                 "no cloud call: records mesh name %s as this order's (claimed at acceptance; "
                 "a replay from here takes it back, refused with NameConflict if another order "
                 "holds it)",
                 j->order->mesh_name);
    return MB_STEP_DONE;
}

const mb_step mb_step_reserve = {
    .name = "reserve",
    .run = reserve_run,
    .compensate = reserve_compensate,
    .check = reserve_check,
    .releases_name = 1,
    .deadline_ms = 60000,
    .local = 1,
};
