/* validate.c: step 1: the product rules an order must meet beyond its schema. */
#include "mb_catalog.h"
#include "mb_step.h"

/* The schema already bounds names and the version enum (checked at intake);
 * what is left needs the catalog: the version must be one the product ships
 * now, with a chart to install it. */
static mb_step_rc validate_run(mb_sjob *j)
{
    const mb_istio_release *r = mb_catalog_lookup(j->catalog, j->order->istio_version);

    if (r == NULL)
        return mb_step_fail(j, "UnsupportedVersion", "Istio %s is not offered (catalog %s)",
                            j->order->istio_version, mb_catalog_path(j->catalog));
    if (j->order->n_nodes == 0)
        return mb_step_fail(j, "InvalidOrder", "no control-plane node chosen");
    json_object_set_new(j->ck, "build", json_string(r->build));
    json_object_set_new(j->ck, "chart_id", json_string(r->chart_id));
    json_object_set_new(j->ck, "chart_version", json_string(r->chart_version));
    return MB_STEP_DONE;
}

/* Read-only face: the same rules, against the catalog the caller loaded. */
static mb_step_rc validate_check(mb_sjob *j)
{
    const mb_istio_release *r;

    if (j->catalog == NULL)
        return mb_step_fail(j, "NoCatalog", "no catalog loaded: Istio %s not checked",
                            j->order->istio_version);
    r = mb_catalog_lookup(j->catalog, j->order->istio_version);
    if (r == NULL)
        mb_step_would_fail(j, "UnsupportedVersion", "Istio %s is not offered (catalog %s)",
                           j->order->istio_version, mb_catalog_path(j->catalog));
    else if (j->order->n_nodes == 0)
        mb_step_would_fail(j, "InvalidOrder", "no control-plane node chosen");
    else
        mb_step_seen(j, "Istio %s is offered: build %s, chart %s %s (no cloud call)",
                     j->order->istio_version, r->build, r->chart_id, r->chart_version);
    return MB_STEP_DONE;
}

const mb_step mb_step_validate = {
    .name = "validate",
    .run = validate_run,
    .check = validate_check,
    .deadline_ms = 60000,
    .local = 1,
};
