/* unlabel_nodes.c: delete step 7: each node's istio label back to what it was before. */
#include "mb_labels.h"
#include "mb_target.h"

static mb_step_rc unlabel_nodes_run(mb_sjob *j)
{
    mb_labels_spec spec = {MB_K8S_NODE, "istio", "master", NULL, 0};

    return mb_labels_restore(j, &spec, json_object_get(mb_target_ck(j, "label_nodes"), "prior"));
}

/* Read-only face: which nodes would get their prior label back. */
static mb_step_rc unlabel_nodes_check(mb_sjob *j)
{
    mb_labels_spec spec = {MB_K8S_NODE, "istio", "master", NULL, 0};

    return mb_labels_restore_check(j, &spec,
                                   json_object_get(mb_target_ck(j, "label_nodes"), "prior"));
}

const mb_step mb_step_unlabel_nodes = {
    .name = "unlabel_nodes",
    .run = unlabel_nodes_run,
    .check = unlabel_nodes_check,
    .clear = mb_labels_clear,
    .scratch_size = sizeof(mb_labels_scratch),
    .deadline_ms = 120000,
};
