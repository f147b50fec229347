/* release_name.c: delete step 8: the mesh name is free for a new buy. */
#include "mb_step.h"
#include "mb_target.h"

/* The checkpoint that records this step frees (account, mesh name) in the same atomic
 * write, and only if the name still points at the create this delete undoes (mb_store):
 * a re-run, or a new buy that took the name meanwhile, is left alone.  The create's job
 * record and history stay. */
static mb_step_rc release_name_run(mb_sjob *j)
{
    const char *of = mb_target_order_id(j);

    if (of == NULL)
        return mb_step_fail(j, "MeshNotFound", "no create order to release the name of");
    json_object_set_new(j->ck, "released_from", json_string(of));
    j->release_name = 1;
    j->release_name_of = of;
    return MB_STEP_DONE;
}

/* Read-only face: the store's business, no cloud call. */
static mb_step_rc release_name_check(mb_sjob *j)
{
    const char *of = mb_target_order_id(j);

    if (of == NULL)
        mb_step_would_fail(j, "MeshNotFound", "no create order to release the name of");
    else
        mb_step_would(j,
                      "free mesh name %s from order %s in the store (if it still points "
                      "there; no cloud call)",
                      j->order->mesh_name, of);
    return MB_STEP_DONE;
}

const mb_step mb_step_release_name = {
    .name = "release_name",
    .run = release_name_run,
    .check = release_name_check,
    .deadline_ms = 60000,
};
