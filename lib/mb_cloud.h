/* mb_cloud.h: typed async clients for the CCE, VPC and Kubernetes calls listed in docs/reference.md. */
#ifndef MB_CLOUD_H
#define MB_CLOUD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "mb_err.h"
#include "mb_http.h"

/*
 * Every call has the same face:
 *
 *   mb_cloud_op *mb_cloud_<call>(mb_cloud *c, const mb_cloud_target *t, <inputs>,
 *                                <out>, mb_cloud_done *done, void *arg);
 *
 * - done is called exactly once, always from the event loop and never from
 *   inside the call itself (immediate failures such as a bad target are
 *   scheduled on the loop).  err->status is MB_OK on success, else the
 *   classification of mb_http.h, with err->code the cloud's error_code
 *   ("VPC.9902"), a Kubernetes Status reason ("NotFound", "Conflict",
 *   "Expired") or a transport code ("Timeout", "ConnectFailed", "HTTP503").
 * - The one exception: the call returns NULL when it cannot even allocate
 *   its operation (out of memory), or when c or done is NULL (a programming
 *   error); then done is never called and the caller treats it as MB_FATAL.
 * - <out> is written before done is called; it is borrowed by the call
 *   until done (do not touch it meanwhile).  Strings in it are owned by the
 *   struct: free with the matching _clear, which also accepts a struct the
 *   call left partly filled (error, cancel) and a zeroed one.  Initialise
 *   outs with {0} before the first call; a call clears its out first.
 * - Inputs (target, names, specs) are borrowed for the call only: copied.
 * - mb_cloud_cancel(op): done is never called; the op handle is valid until
 *   done returns or cancel.  Cancelling an op from inside its own done is a
 *   no-op.
 * - Paging (SG rules, pods, workloads) happens inside one op.
 * - Retries happen per request, inside the op: each HTTP request of an op
 *   (each page of a listing on its own) is sent again after a transient
 *   failure (transport error, timeout, 5xx, 408, 429) with capped
 *   exponential backoff and full jitter, waiting at least Retry-After (up to
 *   retry_after_max_ms).  Pages already read are kept.  409 and the other
 *   4xx are never retried here: callers observe them.  No retry starts when
 *   it could not end by the op's deadline (target deadline_ms, else now +
 *   call_budget_ms): the request's timeout must fit before it.  The op then
 *   fails with the last transient error, still MB_AGAIN, its text ending
 *   "(gave up after N attempts)".  The first request always goes out.
 * - Mutating requests (POST, PUT, PATCH, DELETE) pass the target's guard
 *   right before every attempt goes on the wire (see mb_cloud_guard).
 */

typedef struct mb_cloud mb_cloud;
typedef struct mb_cloud_op mb_cloud_op;

typedef struct mb_cloud_opts {
    /* URL templates; {region}, {project_id} and {cluster_id} are replaced by
     * the target's values (percent-encoded).  k8s_url must name the cluster,
     * e.g. "https://{cluster_id}.cce.{region}.example" or
     * "http://127.0.0.1:P/k8s/{cluster_id}".  Copied. */
    const char *cce_url;
    const char *vpc_url;
    const char *k8s_url;
    /* Per-request retries (0 = the default in parentheses). */
    long retry_base_ms;      /* backoff before the first retry is drawn in [0, base] (100) */
    long retry_max_ms;       /* cap of the doubling backoff (5000) */
    long retry_after_max_ms; /* a longer Retry-After is cut to this (30000) */
    long call_budget_ms;     /* an op's budget when its target has no deadline (60000) */
} mb_cloud_opts;

/* Consulted right before every attempt of a mutating request (POST, PUT,
 * PATCH, DELETE) goes on the wire: after any wait in mb_http's queue and
 * before each retry.  timeout_ms is that request's timeout.  Returns 0 to
 * send it, or -1 with err set (an err left MB_OK becomes MB_AGAIN
 * "Refused"): the op then completes with that error, asynchronously as
 * usual, no request is sent and it is not retried.  Runs on the loop; it
 * must not start or cancel ops of this client. */
typedef int mb_cloud_guard(void *arg, long timeout_ms, mb_error *err);

/* Borrowed for the call (the strings are copied; guard_arg and owner are
 * kept as given).  traceparent may be NULL. */
typedef struct mb_cloud_target {
    const char *project_id;
    const char *region;
    const char *cluster_id;
    const char *traceparent;
    long long deadline_ms; /* wall clock (CLOCK_REALTIME) ms: no retry starts unless it can
                              end by then; 0 = now + the client's call_budget_ms */
    mb_cloud_guard *guard; /* NULL = always go */
    void *guard_arg;
    const void *owner; /* a tag for mb_cloud_cancel_owner; NULL = none */
} mb_cloud_target;

typedef void mb_cloud_done(void *arg, const mb_error *err);

/* New client over http (borrowed; must outlive it; its event_base is used
 * for deferred completions).  NULL with the reason in err when a URL
 * template is missing or names an unknown {placeholder}. */
mb_cloud *mb_cloud_new(mb_http *http, const mb_cloud_opts *o, char *err, size_t errlen);

/* Cancels every op in flight (no done calls) and frees.  NULL is accepted.
 * Not from inside a done callback of this client. */
void mb_cloud_free(mb_cloud *c);

void mb_cloud_cancel(mb_cloud_op *op);

/* Cancels every op in flight whose target named owner (done never called,
 * as with mb_cloud_cancel; an op inside its own done is left alone).
 * Returns how many.  owner NULL matches nothing. */
size_t mb_cloud_cancel_owner(mb_cloud *c, const void *owner);

/* Ops started and not yet done or cancelled. */
size_t mb_cloud_inflight(const mb_cloud *c);

typedef struct mb_cloud_counters {
    uint64_t retries; /* requests sent again after a transient failure */
    uint64_t gave_up; /* ops failed with a transient error after their budget ran out */
    uint64_t refused; /* attempts the guard stopped */
    uint64_t absent;  /* 404s the caller expected (an observe-before-act read of something
                         not there yet, a delete of something already gone): not errors */
} mb_cloud_counters;

/* Counters since mb_cloud_new, for metrics. */
void mb_cloud_stats(const mb_cloud *c, mb_cloud_counters *out);

/* ------------------------------------------------------------------ */
/* CCE                                                                */
/* ------------------------------------------------------------------ */

typedef struct mb_cluster {
    char *id;                /* metadata.uid */
    char *name;              /* metadata.name */
    char *version;           /* spec.version, "v1.25" */
    char *phase;             /* status.phase, "Available" */
    char *security_group_id; /* spec.hostNetwork.SecurityGroup: node security group */
} mb_cluster;
void mb_cluster_clear(mb_cluster *c);

/* GET /api/v3/projects/{project_id}/clusters/{cluster_id}.  404: MB_PERM
 * with the body's code (or "NotFound"). */
mb_cloud_op *mb_cloud_cluster_get(mb_cloud *c, const mb_cloud_target *t, mb_cluster *out,
                                  mb_cloud_done *done, void *arg);

typedef struct mb_node {
    char *uid;   /* metadata.uid */
    char *name;  /* metadata.name (the Kubernetes node name) */
    char *az;    /* spec.az */
    char *phase; /* status.phase, "Active" */
} mb_node;
typedef struct mb_node_list {
    mb_node *items;
    size_t n;
} mb_node_list;
void mb_node_list_clear(mb_node_list *l);

/* GET /api/v3/projects/{project_id}/clusters/{cluster_id}/nodes */
mb_cloud_op *mb_cloud_nodes_list(mb_cloud *c, const mb_cloud_target *t, mb_node_list *out,
                                 mb_cloud_done *done, void *arg);

typedef struct mb_release_spec {
    const char *chart_id;
    const char *name;
    const char *namespace;
    const char *version;
    json_t *values;          /* borrowed; NULL = {} */
    const char *description; /* NULL = none */
} mb_release_spec;

/* POST /cce/cam/v3/clusters/{cluster_id}/releases (201).  A 409 (release
 * exists) stays MB_AGAIN with the body's code: observe with release_get. */
mb_cloud_op *mb_cloud_release_create(mb_cloud *c, const mb_cloud_target *t,
                                     const mb_release_spec *spec, mb_cloud_done *done, void *arg);

typedef struct mb_release {
    int exists;   /* 0 after a 404 (then MB_OK and the strings NULL) */
    char *status; /* PENDING_INSTALL, DEPLOYED, FAILED, UNKNOWN, DELETING, ... */
    char *status_description;
    char *description;
    char *chart_version;
} mb_release;
void mb_release_clear(mb_release *r);

/* GET /cce/cam/v3/clusters/{cluster_id}/namespace/{ns}/releases/{name} */
mb_cloud_op *mb_cloud_release_get(mb_cloud *c, const mb_cloud_target *t, const char *ns,
                                  const char *name, mb_release *out, mb_cloud_done *done,
                                  void *arg);

/* DELETE same path.  404 = MB_OK (already gone).  Deletion is asynchronous
 * on the server: poll release_get until exists == 0. */
mb_cloud_op *mb_cloud_release_delete(mb_cloud *c, const mb_cloud_target *t, const char *ns,
                                     const char *name, mb_cloud_done *done, void *arg);

/* ------------------------------------------------------------------ */
/* VPC security-group rules (v3)                                      */
/* ------------------------------------------------------------------ */

typedef struct mb_sg_rule {
    char *id;
    char *security_group_id;
    char *direction;        /* ingress | egress */
    char *ethertype;        /* IPv4 | IPv6 */
    char *protocol;         /* tcp, udp, icmp, ...; NULL or "" = any */
    char *multiport;        /* "7443", "7000-8000", "22,7443"; NULL or "" = all ports */
    char *remote_ip_prefix; /* NULL = any */
    char *remote_group_id;
    char *action; /* allow | deny; NULL = allow */
    int priority;
    char *description; /* NULL when none */
} mb_sg_rule;
typedef struct mb_sg_rule_list {
    mb_sg_rule *items;
    size_t n;
} mb_sg_rule_list;
void mb_sg_rule_list_clear(mb_sg_rule_list *l);

/* GET /v3/{project_id}/vpc/security-group-rules?security_group_id=..
 * [&direction=..][&protocol=..], following page_info.next_marker.
 * direction, protocol: NULL = no filter. */
mb_cloud_op *mb_cloud_sg_rules_list(mb_cloud *c, const mb_cloud_target *t, const char *sg_id,
                                    const char *direction, const char *protocol,
                                    mb_sg_rule_list *out, mb_cloud_done *done, void *arg);

typedef struct mb_sg_rule_spec {
    const char *security_group_id;
    const char *direction;        /* NULL = "ingress" */
    const char *ethertype;        /* NULL = "IPv4" */
    const char *protocol;         /* NULL = "tcp" */
    const char *multiport;        /* "7443" */
    const char *remote_ip_prefix; /* NULL = not sent (all) */
    const char *action;           /* NULL = "allow" */
    int priority;                 /* 0 = 1 */
    const char *description;      /* NULL = not sent */
} mb_sg_rule_spec;

typedef struct mb_sg_rule_created {
    char *id;
    int existed; /* 1: 409 VPC.9902, the id parsed from "Rule id is <id>." */
} mb_sg_rule_created;
void mb_sg_rule_created_clear(mb_sg_rule_created *r);

/* POST /v3/{project_id}/vpc/security-group-rules (201).  409 VPC.9902 is
 * MB_OK with existed = 1; 409 VPC.9905 (quota) is MB_PERM "VPC.9905". */
mb_cloud_op *mb_cloud_sg_rule_create(mb_cloud *c, const mb_cloud_target *t,
                                     const mb_sg_rule_spec *spec, mb_sg_rule_created *out,
                                     mb_cloud_done *done, void *arg);

/* DELETE /v3/{project_id}/vpc/security-group-rules/{rule_id} (204).
 * 404 = MB_OK (already gone). */
mb_cloud_op *mb_cloud_sg_rule_delete(mb_cloud *c, const mb_cloud_target *t, const char *rule_id,
                                     mb_cloud_done *done, void *arg);

/* 1 if the multiport text ("7443", "7000-8000", "22,7443", "22, 7000-8000")
 * names port; 0 if not or if the text is malformed.  NULL or "" = 0 (the
 * caller decides what an empty multiport means). */
int mb_sg_multiport_covers(const char *multiport, int port);

/* 1 if r lets inbound TCP to port in from IPv4: ingress, protocol tcp or any,
 * action allow, ethertype IPv4, multiport covers port or is empty (all). */
int mb_sg_rule_allows(const mb_sg_rule *r, int port);

/* ------------------------------------------------------------------ */
/* Kubernetes (through MESHBUY_K8S_URL)                               */
/* ------------------------------------------------------------------ */

/* GET /version -> gitVersion.  *git_version: new, free(). */
mb_cloud_op *mb_cloud_k8s_version(mb_cloud *c, const mb_cloud_target *t, char **git_version,
                                  mb_cloud_done *done, void *arg);

typedef enum mb_k8s_kind { MB_K8S_NODE, MB_K8S_NAMESPACE } mb_k8s_kind;

typedef struct mb_k8s_meta {
    int exists; /* 0 after a 404 (then MB_OK) */
    char *name;
    char *resource_version;
    json_t *labels;      /* new reference (json_decref via _clear); {} when none */
    json_t *annotations; /* idem */
} mb_k8s_meta;
void mb_k8s_meta_clear(mb_k8s_meta *m);

/* GET /api/v1/nodes/{name} or /api/v1/namespaces/{name}, metadata only
 * (Accept MB_HTTP_ACCEPT_META; a server that answers the whole object is
 * read the same way). */
mb_cloud_op *mb_cloud_k8s_get(mb_cloud *c, const mb_cloud_target *t, mb_k8s_kind kind,
                              const char *name, mb_k8s_meta *out, mb_cloud_done *done, void *arg);

/* PATCH application/merge-patch+json {"metadata":{"labels":{key:value}}};
 * value NULL sends JSON null (deletes the label). */
mb_cloud_op *mb_cloud_k8s_label_patch(mb_cloud *c, const mb_cloud_target *t, mb_k8s_kind kind,
                                      const char *name, const char *key, const char *value,
                                      mb_cloud_done *done, void *arg);

/* Counts pods in all namespaces: GET /api/v1/pods?limit=500 following
 * metadata.continue; a 410 (expired continue token) restarts the listing
 * from scratch, at most 3 times (then MB_AGAIN "Expired").  Asks for
 * metadata only (Accept MB_HTTP_ACCEPT_META_LIST, as kubectl does) and
 * counts with mb_k8s_list_count, so a full PodList counts the same. */
mb_cloud_op *mb_cloud_k8s_pods_count(mb_cloud *c, const mb_cloud_target *t, long *out,
                                     mb_cloud_done *done, void *arg);

#define MB_K8S_CONTINUE_MAX 4096 /* continue tokens longer than this are refused */

/* Reads one page of a Kubernetes list without building a tree: the number
 * of elements of the top-level "items" (null counts 0) and the string
 * metadata.continue ("" when absent or not a string) into cont (room for
 * contlen bytes, NUL included).  The whole body must be valid JSON (RFC
 * 8259: UTF-8, escapes, numbers, nesting up to 512) with an object at the
 * top.  Returns 0, or -1 (not valid, items neither array nor null, or the
 * token does not fit or holds a NUL) with *items 0 and cont "". */
int mb_k8s_list_count(const char *body, size_t len, long *items, char *cont, size_t contlen);

typedef struct mb_coredns {
    int ready;
    char reason[256]; /* why not ready; "" when ready */
} mb_coredns;

/* GET /apis/apps/v1/namespaces/kube-system/deployments/coredns; ready by
 * kubectl's rollout-status rule (cloud-apis.md 7) plus at least one
 * available replica.  404 = MB_OK, not ready, "coredns deployment not found". */
mb_cloud_op *mb_cloud_k8s_coredns_ready(mb_cloud *c, const mb_cloud_target *t, mb_coredns *out,
                                        mb_cloud_done *done, void *arg);

/* Pure form of the rule above on a Deployment's JSON text (len bytes): 1 ready, 0 not (the
 * reason written), -1 when the text is not a JSON object. */
int mb_k8s_deployment_ready(const char *text, size_t len, char *reason, size_t reasonlen);

typedef enum mb_workload_kind {
    MB_WL_DEPLOYMENT,
    MB_WL_STATEFULSET,
    MB_WL_DAEMONSET,
} mb_workload_kind;

/* "Deployment", "StatefulSet", "DaemonSet".  Static. */
const char *mb_workload_kind_name(mb_workload_kind k);

typedef struct mb_workload {
    mb_workload_kind kind;
    char *name;
    int paused;         /* spec.paused (Deployments only) */
    char *restarted_at; /* spec.template.metadata.annotations
                           ["kubectl.kubernetes.io/restartedAt"], NULL if absent */
} mb_workload;
typedef struct mb_workload_list {
    mb_workload *items;
    size_t n;
} mb_workload_list;
void mb_workload_list_clear(mb_workload_list *l);

/* Deployments, then StatefulSets, then DaemonSets of ns (each list paged). */
mb_cloud_op *mb_cloud_k8s_workloads_list(mb_cloud *c, const mb_cloud_target *t, const char *ns,
                                         mb_workload_list *out, mb_cloud_done *done, void *arg);

/* PATCH application/strategic-merge-patch+json
 * {"spec":{"template":{"metadata":{"annotations":
 *   {"kubectl.kubernetes.io/restartedAt":timestamp}}}}} as kubectl rollout restart. */
mb_cloud_op *mb_cloud_k8s_workload_restart(mb_cloud *c, const mb_cloud_target *t, const char *ns,
                                           mb_workload_kind kind, const char *name,
                                           const char *timestamp, mb_cloud_done *done, void *arg);

#endif
