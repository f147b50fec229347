/* precheck.c: step 3: everything that must hold before the cloud is touched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_catalog.h"
#include "mb_step.h"

#define MAX_PODS 200

/* Where an execution stands (j->pc). */
enum {
    RUN_READ,     /* read the cluster, nodes, CoreDNS, pods and namespaces at once */
    RUN_EVALUATE, /* all read: judge */
};

typedef struct precheck {
    mb_cluster cluster;
    mb_node_list nodes;
    mb_coredns coredns;
    long pods;
    mb_k8s_meta istio_ns;
    mb_k8s_meta *ns; /* the order's namespaces: as many as it names (held jobs are many) */
    size_t nns;
} precheck;

static void precheck_clear(void *p)
{
    precheck *s = p;

    mb_cluster_clear(&s->cluster);
    mb_node_list_clear(&s->nodes);
    mb_k8s_meta_clear(&s->istio_ns);
    for (size_t i = 0; i < s->nns; i++)
        mb_k8s_meta_clear(&s->ns[i]);
    free(s->ns);
}

static mb_step_rc issue(mb_sjob *j, precheck *s)
{
    const mb_order *o = j->order;
    const mb_cloud_target *t = &j->target;

    s->ns = calloc(o->n_namespaces ? o->n_namespaces : 1, sizeof(*s->ns));
    if (s->ns == NULL)
        return mb_step_oom(j, "precheck");
    s->nns = o->n_namespaces;
    mb_step_call(j, mb_cloud_cluster_get(j->cloud, t, &s->cluster, mb_step_done, mb_step_io(j)));
    mb_step_call(j, mb_cloud_nodes_list(j->cloud, t, &s->nodes, mb_step_done, mb_step_io(j)));
    mb_step_call(j,
                 mb_cloud_k8s_coredns_ready(j->cloud, t, &s->coredns, mb_step_done, mb_step_io(j)));
    mb_step_call(j, mb_cloud_k8s_pods_count(j->cloud, t, &s->pods, mb_step_done, mb_step_io(j)));
    mb_step_call(j, mb_cloud_k8s_get(j->cloud, t, MB_K8S_NAMESPACE, "istio-system", &s->istio_ns,
                                     mb_step_done, mb_step_io(j)));
    for (size_t i = 0; i < o->n_namespaces; i++)
        mb_step_call(j, mb_cloud_k8s_get(j->cloud, t, MB_K8S_NAMESPACE, o->namespaces[i], &s->ns[i],
                                         mb_step_done, mb_step_io(j)));
    return MB_STEP_WAIT;
}

static const mb_node *find_node(const mb_node_list *l, const char *uid)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].uid, uid) == 0)
            return &l->items[i];
    }
    return NULL;
}

/* The chosen nodes: each exists and is Active; two or more span two AZs.
 * Records uid -> name for the labelling step. */
static mb_step_rc check_nodes(mb_sjob *j, const precheck *s)
{
    const mb_order *o = j->order;
    json_t *names = json_object();
    const char *first_az = NULL;
    int spread = 0;

    json_object_set_new(j->ck, "nodes", names);
    for (size_t i = 0; i < o->n_nodes; i++) {
        const mb_node *n = find_node(&s->nodes, o->nodes[i]);
        if (n == NULL)
            return mb_step_fail(j, "NodeNotFound", "node %s is not in cluster %s", o->nodes[i],
                                o->cluster_id);
        if (strcmp(n->phase ? n->phase : "", "Active") != 0)
            return mb_step_fail(j, "NodeNotActive", "node %s (%s) is %s, not Active", n->name,
                                n->uid, n->phase ? n->phase : "in no phase");
        json_object_set_new(names, n->uid, json_string(n->name));
        if (first_az == NULL)
            first_az = n->az ? n->az : "";
        else if (strcmp(first_az, n->az ? n->az : "") != 0)
            spread = 1;
    }
    if (o->n_nodes >= 2 && !spread)
        return mb_step_fail(j, "HANeedsTwoAZs",
                            "%zu control-plane nodes are all in AZ %s; high availability needs "
                            "nodes in two or more AZs",
                            o->n_nodes, first_az);
    return MB_STEP_DONE;
}

/* istio-system may exist only because this very order installed it (a
 * replay from the start): anything else is a leftover of an earlier install,
 * which leaves a mesh stuck in Installing. */
static int istio_system_ours(mb_sjob *j)
{
    json_t *ck = mb_step_ck_of(j, "install_release");

    return json_is_true(json_object_get(ck, "created"));
}

static mb_step_rc evaluate(mb_sjob *j, precheck *s)
{
    const mb_order *o = j->order;
    mb_step_rc rc;

    if (j->err.status != MB_OK) {
        if (j->err.status == MB_PERM && (j->err.http_status == 404 || j->err.http_status == 403))
            return mb_step_fail(j, "ClusterNotFound", "cluster %s not found in project %s (%s)",
                                o->cluster_id, o->project_id, j->err.msg);
        return MB_STEP_ERROR; /* transient ones are retried */
    }
    if (strcmp(s->cluster.phase ? s->cluster.phase : "", "Available") != 0)
        return mb_step_fail(j, "ClusterNotAvailable", "cluster %s is %s, not Available",
                            o->cluster_id, s->cluster.phase ? s->cluster.phase : "in no phase");
    if (!mb_catalog_supports(j->catalog, o->istio_version, s->cluster.version))
        return mb_step_fail(j, "UnsupportedClusterVersion",
                            "Istio %s does not support cluster version %s", o->istio_version,
                            s->cluster.version ? s->cluster.version : "(unknown)");
    if (!s->coredns.ready)
        return mb_step_fail(j, "CoreDNSNotReady", "CoreDNS is not ready: %s",
                            s->coredns.reason[0] ? s->coredns.reason : "not rolled out");
    if (s->pods > MAX_PODS)
        return mb_step_fail(j, "TooManyPods",
                            "the cluster runs %ld pods; a Basic mesh supports at most %d", s->pods,
                            MAX_PODS);
    if (s->istio_ns.exists && !istio_system_ours(j))
        return mb_step_fail(j, "IstioSystemExists",
                            "namespace istio-system is left over from an earlier install; "
                            "delete it and order again");
    for (size_t i = 0; i < o->n_namespaces; i++) {
        if (!s->ns[i].exists)
            return mb_step_fail(j, "NamespaceNotFound", "namespace %s does not exist",
                                o->namespaces[i]);
    }
    rc = check_nodes(j, s);
    if (rc != MB_STEP_DONE)
        return rc;
    json_object_set_new(j->ck, "cluster_version", json_string(s->cluster.version));
    json_object_set_new(
        j->ck, "security_group_id",
        json_string(s->cluster.security_group_id ? s->cluster.security_group_id : ""));
    json_object_set_new(j->ck, "pods", json_integer(s->pods));
    return MB_STEP_DONE;
}

static mb_step_rc precheck_run(mb_sjob *j)
{
    precheck *s = j->scratch;

    switch (j->pc) {
    case RUN_READ: j->pc = RUN_EVALUATE; return issue(j, s);
    case RUN_EVALUATE: return evaluate(j, s);
    default: return mb_step_fail(j, "Internal", "precheck: no state %d", j->pc);
    }
}

/* Read-only face: the same reads and judgement; what run() would fail with is reported,
 * not returned (j->ck is the driver's copy, so what evaluate records there is dropped). */
static mb_step_rc precheck_check(mb_sjob *j)
{
    precheck *s = j->scratch;
    mb_step_rc rc;

    if (j->pc == RUN_READ) {
        j->pc = RUN_EVALUATE;
        return issue(j, s);
    }
    rc = evaluate(j, s);
    if (rc == MB_STEP_ERROR && j->err.status == MB_PERM) {
        mb_step_would_fail(j, j->err.code, "%s", j->err.msg);
        return MB_STEP_DONE;
    }
    if (rc != MB_STEP_DONE)
        return rc; /* not read: the caller reports why */
    mb_step_seen(j,
                 "cluster %s is Available (%s), CoreDNS ready, %ld pods, %zu node(s) Active, "
                 "%zu namespace(s) found: precheck passes (reads only)",
                 j->order->cluster_id, s->cluster.version ? s->cluster.version : "?", s->pods,
                 j->order->n_nodes, j->order->n_namespaces);
    return MB_STEP_DONE;
}

const mb_step mb_step_precheck = {
    .name = "precheck",
    .run = precheck_run,
    .check = precheck_check,
    .clear = precheck_clear,
    .scratch_size = sizeof(precheck),
    .deadline_ms = 120000,
};
