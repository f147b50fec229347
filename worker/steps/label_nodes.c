/* label_nodes.c: step 4: istio=master on each chosen control-plane node. */
#include "mb_labels.h"

/* Node names by the order's node UIDs, as precheck found them. */
static size_t node_names(mb_sjob *j, const char **names, size_t max)
{
    json_t *map = json_object_get(mb_step_ck_of(j, "precheck"), "nodes");
    size_t n = 0;

    for (size_t i = 0; i < j->order->n_nodes && n < max; i++) {
        const char *name = json_string_value(json_object_get(map, j->order->nodes[i]));
        if (name)
            names[n++] = name;
    }
    return n;
}

static mb_step_rc label_nodes_run(mb_sjob *j)
{
    const char *names[MB_ORDER_MAX_NODES];
    mb_labels_spec spec = {MB_K8S_NODE, "istio", "master", names, 0};

    spec.n = node_names(j, names, MB_ORDER_MAX_NODES);
    if (spec.n != j->order->n_nodes)
        return mb_step_fail(j, "Internal", "precheck did not record every node's name");
    return mb_labels_run(j, &spec);
}

static mb_step_rc label_nodes_compensate(mb_sjob *j)
{
    mb_labels_spec spec = {MB_K8S_NODE, "istio", "master", NULL, 0};

    return mb_labels_compensate(j, &spec);
}

/* Read-only face: the nodes' labels now, by the names precheck recorded. */
static mb_step_rc label_nodes_check(mb_sjob *j)
{
    const char *names[MB_ORDER_MAX_NODES];
    mb_labels_spec spec = {MB_K8S_NODE, "istio", "master", names, 0};

    spec.n = node_names(j, names, MB_ORDER_MAX_NODES);
    if (spec.n != j->order->n_nodes)
        return mb_step_fail(j, "NotRecorded",
                            "precheck has not recorded the nodes' names: it reads them when it "
                            "runs, then %zu node(s) get istio=master",
                            j->order->n_nodes);
    return mb_labels_check(j, &spec);
}

const mb_step mb_step_label_nodes = {
    .name = "label_nodes",
    .run = label_nodes_run,
    .check = label_nodes_check,
    .compensate = label_nodes_compensate,
    .clear = mb_labels_clear,
    .scratch_size = sizeof(mb_labels_scratch),
    .deadline_ms = 120000,
};
