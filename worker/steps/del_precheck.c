/* del_precheck.c: delete step 2: there is a mesh to delete, and its cluster is reachable. */
#include <stdio.h>
#include <string.h>

#include "mb_step.h"
#include "mb_target.h"

/* Where an execution stands (j->pc). */
enum {
    RUN_JUDGE,   /* the snapshot decides; then read the cluster */
    RUN_CLUSTER, /* the cluster was read */
};

typedef struct del_precheck {
    mb_cluster cluster;
} del_precheck;

static void del_precheck_clear(void *p)
{
    mb_cluster_clear(&((del_precheck *)p)->cluster);
}

static int is(const char *s, const char *want)
{
    return s && strcmp(s, want) == 0;
}

/* From the snapshot of the create taken at acceptance: no cloud call, so a refusal changes
 * nothing.  MB_STEP_DONE when the mesh may be deleted. */
static mb_step_rc judge_target(mb_sjob *j)
{
    const json_t *t = mb_target(j);
    const char *st = json_string_value(json_object_get(t, "status"));
    const char *other = json_string_value(json_object_get(t, "deleted_by"));
    int parked = json_is_true(json_object_get(json_object_get(t, "state"), "parked"));

    if (t == NULL || !is(json_string_value(json_object_get(t, "saga")), "create"))
        return mb_step_fail(j, "MeshNotFound",
                            "no mesh %s in account %s (never bought, or "
                            "already deleted)",
                            j->order->mesh_name, j->order->account_id);
    if (other && *other)
        return mb_step_fail(j, "MeshBusy", "mesh %s is being deleted by order %s",
                            j->order->mesh_name, other);
    if (is(st, "Accepted") || is(st, "Installing") || is(st, "RollingBack"))
        return mb_step_fail(j, "MeshBusy", "mesh %s is still %s (order %s): cancel it instead",
                            j->order->mesh_name, st, mb_target_order_id(j));
    if (is(st, "Running") || (is(st, "Failed") && parked))
        return MB_STEP_DONE;
    if (is(st, "NeedsAttention"))
        return mb_step_fail(j, "MeshBusy",
                            "mesh %s needs an operator (order %s, "
                            "NeedsAttention): roll it back with meshctl",
                            j->order->mesh_name, mb_target_order_id(j));
    return mb_step_fail(j, "MeshNotFound",
                        "mesh %s was never completed (order %s ended %s, "
                        "everything it changed was undone)",
                        j->order->mesh_name, mb_target_order_id(j), st ? st : "in no state");
}

static mb_step_rc evaluate(mb_sjob *j, const del_precheck *s)
{
    const char *cluster = j->order->cluster_id;

    if (j->err.status != MB_OK) {
        if (j->err.status == MB_PERM && (j->err.http_status == 404 || j->err.http_status == 403))
            return mb_step_fail(j, "ClusterNotFound", "cluster %s not found in project %s (%s)",
                                cluster, j->order->project_id, j->err.msg);
        return MB_STEP_ERROR;
    }
    if (!is(s->cluster.phase, "Available"))
        return mb_step_fail(j, "ClusterNotAvailable", "cluster %s is %s, not Available", cluster,
                            s->cluster.phase ? s->cluster.phase : "in no phase");
    json_object_set_new(j->ck, "target", json_string(mb_target_order_id(j)));
    json_object_set_new(j->ck, "cluster_id", json_string(cluster));
    return MB_STEP_DONE;
}

static mb_step_rc del_precheck_run(mb_sjob *j)
{
    del_precheck *s = j->scratch;
    mb_step_rc rc;

    switch (j->pc) {
    case RUN_JUDGE:
        rc = judge_target(j);
        if (rc != MB_STEP_DONE)
            return rc;
        if (j->order->cluster_id == NULL)
            return mb_step_fail(j, "MeshNotFound", "the order of mesh %s names no cluster",
                                j->order->mesh_name);
        mb_step_call(j, mb_cloud_cluster_get(j->cloud, &j->target, &s->cluster, mb_step_done,
                                             mb_step_io(j)));
        j->pc = RUN_CLUSTER;
        return MB_STEP_WAIT;
    case RUN_CLUSTER: return evaluate(j, s);
    default: return mb_step_fail(j, "Internal", "precheck: no state %d", j->pc);
    }
}

/* Read-only face: the same judgement (the snapshot, then the cluster), what run() would
 * fail with reported rather than returned. */
static mb_step_rc del_precheck_check(mb_sjob *j)
{
    del_precheck *s = j->scratch;
    mb_step_rc rc;

    if (j->pc == RUN_JUDGE) {
        rc = judge_target(j);
        if (rc == MB_STEP_DONE && j->order->cluster_id == NULL)
            rc = mb_step_fail(j, "MeshNotFound", "the order of mesh %s names no cluster",
                              j->order->mesh_name);
        if (rc != MB_STEP_DONE) {
            mb_step_would_fail(j, j->err.code, "%s", j->err.msg);
            return MB_STEP_DONE;
        }
        mb_step_call(j, mb_cloud_cluster_get(j->cloud, &j->target, &s->cluster, mb_step_done,
                                             mb_step_io(j)));
        j->pc = RUN_CLUSTER;
        return MB_STEP_WAIT;
    }
    rc = evaluate(j, s);
    if (rc == MB_STEP_ERROR && j->err.status == MB_PERM) {
        mb_step_would_fail(j, j->err.code, "%s", j->err.msg);
        return MB_STEP_DONE;
    }
    if (rc != MB_STEP_DONE)
        return rc; /* not read: the caller reports why */
    mb_step_seen(j,
                 "the create %s may be deleted; cluster %s is Available: precheck passes "
                 "(reads only)",
                 mb_target_order_id(j), j->order->cluster_id);
    return MB_STEP_DONE;
}

const mb_step mb_step_del_precheck = {
    .name = "precheck",
    .run = del_precheck_run,
    .check = del_precheck_check,
    .clear = del_precheck_clear,
    .scratch_size = sizeof(del_precheck),
    .deadline_ms = 120000,
};
