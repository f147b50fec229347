/* inject.c: step 7: istio-injection=enabled on each chosen namespace. */
#include "mb_labels.h"

static mb_step_rc inject_run(mb_sjob *j)
{
    mb_labels_spec spec = {MB_K8S_NAMESPACE, "istio-injection", "enabled",
                           (const char *const *)j->order->namespaces, j->order->n_namespaces};

    if (spec.n == 0)
        return MB_STEP_DONE;
    return mb_labels_run(j, &spec);
}

static mb_step_rc inject_compensate(mb_sjob *j)
{
    mb_labels_spec spec = {MB_K8S_NAMESPACE, "istio-injection", "enabled", NULL, 0};

    return mb_labels_compensate(j, &spec);
}

/* Read-only face: the namespaces' labels now. */
static mb_step_rc inject_check(mb_sjob *j)
{
    mb_labels_spec spec = {MB_K8S_NAMESPACE, "istio-injection", "enabled",
                           (const char *const *)j->order->namespaces, j->order->n_namespaces};

    if (spec.n == 0) {
        mb_step_seen(j, "no namespaces in the order: no call");
        return MB_STEP_DONE;
    }
    return mb_labels_check(j, &spec);
}

const mb_step mb_step_inject = {
    .name = "inject",
    .run = inject_run,
    .check = inject_check,
    .compensate = inject_compensate,
    .clear = mb_labels_clear,
    .scratch_size = sizeof(mb_labels_scratch),
    .deadline_ms = 120000,
};
