/* restart.c: step 8: restart existing workloads so their pods get the sidecar. */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "mb_step.h"

/* Where an execution stands (j->pc). */
enum {
    RUN_LIST,    /* fix the job's timestamp (once), list the namespaces' workloads */
    RUN_PATCH,   /* listed: restart those not restarted at that timestamp yet */
    RUN_PATCHED, /* the restarts were sent */
};

typedef struct restart {
    mb_workload_list lists[MB_ORDER_MAX_NAMESPACES];
} restart;

static void restart_clear(void *p)
{
    restart *s = p;

    for (size_t i = 0; i < MB_ORDER_MAX_NAMESPACES; i++)
        mb_workload_list_clear(&s->lists[i]);
}

/* Patches every workload not yet restarted at this job's timestamp; paused
 * Deployments are skipped (kubectl refuses them too) and reported. */
static void patch_all(mb_sjob *j, restart *s, const char *ts)
{
    json_t *restarted = json_array(), *skipped = json_array();
    char what[256];

    json_object_set_new(j->ck, "restarted", restarted);
    json_object_set_new(j->ck, "skipped", skipped);
    for (size_t i = 0; i < j->order->n_namespaces; i++) {
        const char *ns = j->order->namespaces[i];
        for (size_t k = 0; k < s->lists[i].n; k++) {
            const mb_workload *w = &s->lists[i].items[k];
            snprintf(what, sizeof(what), "%s/%s/%s", ns, mb_workload_kind_name(w->kind), w->name);
            if (w->kind == MB_WL_DEPLOYMENT && w->paused) {
                json_array_append_new(skipped, json_string(what));
                continue;
            }
            json_array_append_new(restarted, json_string(what));
            if (w->restarted_at && strcmp(w->restarted_at, ts) == 0)
                continue; /* this job restarted it already */
            mb_step_call(j,
                         mb_cloud_k8s_workload_restart(j->cloud, &j->target, ns, w->kind, w->name,
                                                       ts, mb_step_done, mb_step_io(j)));
        }
    }
}

static mb_step_rc restart_run(mb_sjob *j)
{
    restart *s = j->scratch;
    const char *ts = json_string_value(json_object_get(j->ck, "restarted_at"));

    if (!j->order->restart_existing || j->order->n_namespaces == 0) {
        json_object_set_new(j->ck, "requested", json_false());
        return MB_STEP_DONE;
    }
    switch (j->pc) {
    case RUN_LIST:
        if (ts == NULL) { /* fixed once per job, so a replay does not restart twice */
            char buf[32];
            time_t now = time(NULL);
            struct tm tm;
            gmtime_r(&now, &tm);
            strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
            json_object_set_new(j->ck, "restarted_at", json_string(buf));
            return MB_STEP_SAVE;
        }
        for (size_t i = 0; i < j->order->n_namespaces; i++)
            mb_step_call(j,
                         mb_cloud_k8s_workloads_list(j->cloud, &j->target, j->order->namespaces[i],
                                                     &s->lists[i], mb_step_done, mb_step_io(j)));
        j->pc = RUN_PATCH;
        return MB_STEP_WAIT;
    case RUN_PATCH:
        if (j->err.status != MB_OK)
            return MB_STEP_ERROR;
        patch_all(j, s, ts);
        j->pc = RUN_PATCHED;
        return MB_STEP_WAIT;
    case RUN_PATCHED: return j->err.status != MB_OK ? MB_STEP_ERROR : MB_STEP_DONE;
    default: return mb_step_fail(j, "Internal", "restart: no state %d", j->pc);
    }
}

/* Read-only face: the namespaces' workloads now, and which run() would restart. */
enum {
    CHECK_LIST,  /* list the namespaces' workloads */
    CHECK_JUDGE, /* listed: say which would be restarted */
};

static void check_judge(mb_sjob *j, const restart *s, const char *ts)
{
    size_t total = 0;

    for (size_t i = 0; i < j->order->n_namespaces; i++) {
        const char *ns = j->order->namespaces[i];
        for (size_t k = 0; k < s->lists[i].n; k++) {
            const mb_workload *w = &s->lists[i].items[k];
            const char *kind = mb_workload_kind_name(w->kind);
            total++;
            if (w->kind == MB_WL_DEPLOYMENT && w->paused)
                mb_step_seen(j, "%s/%s/%s is paused: skipped, no call", ns, kind, w->name);
            else if (ts && w->restarted_at && strcmp(w->restarted_at, ts) == 0)
                mb_step_seen(j, "%s/%s/%s already restarted by this order at %s: no call", ns, kind,
                             w->name, ts);
            else
                mb_step_would(j,
                              "PATCH %s/%s/%s restartedAt annotation (rolls its pods; "
                              "irreversible)",
                              ns, kind, w->name);
        }
    }
    if (total == 0)
        mb_step_seen(j, "no workloads in the order's namespaces: no call");
}

static mb_step_rc restart_check(mb_sjob *j)
{
    restart *s = j->scratch;

    if (!j->order->restart_existing || j->order->n_namespaces == 0) {
        mb_step_seen(j, "no restart asked in the order: no call");
        return MB_STEP_DONE;
    }
    if (j->pc == CHECK_LIST) {
        for (size_t i = 0; i < j->order->n_namespaces; i++)
            mb_step_call(j,
                         mb_cloud_k8s_workloads_list(j->cloud, &j->target, j->order->namespaces[i],
                                                     &s->lists[i], mb_step_done, mb_step_io(j)));
        j->pc = CHECK_JUDGE;
        return MB_STEP_WAIT;
    }
    if (j->err.status != MB_OK)
        return MB_STEP_ERROR;
    check_judge(j, s, json_string_value(json_object_get(j->ck, "restarted_at")));
    return MB_STEP_DONE;
}

const mb_step mb_step_restart = {
    .name = "restart",
    .run = restart_run,
    .check = restart_check,
    .clear = restart_clear,
    .scratch_size = sizeof(restart),
    .deadline_ms = 300000,
    /* Asked, its first execution saves the job's timestamp before any call (RUN_LIST); not
     * asked, it reaches nothing at all.  Either way the checkpoint before it may ride with
     * the next one: a buy without restarts writes inject's, restart's and finish's as one. */
    .saves_first = 1,
};
