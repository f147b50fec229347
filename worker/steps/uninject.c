/* uninject.c: delete step 3: istio-injection back to what it was before the create. */
#include "mb_labels.h"
#include "mb_target.h"

static mb_step_rc uninject_run(mb_sjob *j)
{
    mb_labels_spec spec = {MB_K8S_NAMESPACE, "istio-injection", "enabled", NULL, 0};

    return mb_labels_restore(j, &spec, json_object_get(mb_target_ck(j, "inject"), "prior"));
}

/* Read-only face: which namespaces would get their prior label back. */
static mb_step_rc uninject_check(mb_sjob *j)
{
    mb_labels_spec spec = {MB_K8S_NAMESPACE, "istio-injection", "enabled", NULL, 0};

    return mb_labels_restore_check(j, &spec, json_object_get(mb_target_ck(j, "inject"), "prior"));
}

const mb_step mb_step_uninject = {
    .name = "uninject",
    .run = uninject_run,
    .check = uninject_check,
    .clear = mb_labels_clear,
    .scratch_size = sizeof(mb_labels_scratch),
    .deadline_ms = 120000,
};
