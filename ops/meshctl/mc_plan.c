/* mc_plan.c: replay --dry-run: what a replay would run and call, against what is in place
 * in the cloud now.  Reads only (GETs through lib/mb_cloud on a private libevent loop). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "mb_cloud.h"
#include "mb_http.h"
#include "mb_order.h"
#include "mb_step.h"
#include "mc.h"

#define WEBHOOK_PORT 7443

typedef struct plan plan;

/* One read in flight: its outcome. */
typedef struct slot {
    plan *p;
    mb_error err;
    int done;
} slot;

struct plan {
    struct event_base *base;
    mb_http *http;
    mb_cloud *cloud;
    int pending;
    mb_cloud_target t;
    mb_cluster cluster;
    slot s_cluster;
    mb_node_list nodes;
    slot s_nodes;
    const char *node_name[MB_ORDER_MAX_NODES]; /* borrowed: the job's ck or nodes */
    mb_k8s_meta node_meta[MB_ORDER_MAX_NODES];
    slot s_node[MB_ORDER_MAX_NODES];
    mb_release rel;
    slot s_rel;
    const char *sg; /* borrowed */
    mb_sg_rule_list rules;
    slot s_rules;
    mb_k8s_meta ns_meta[MB_ORDER_MAX_NAMESPACES];
    slot s_ns[MB_ORDER_MAX_NAMESPACES];
};

static void read_done(void *arg, const mb_error *err)
{
    slot *s = arg;

    s->done = 1;
    if (err)
        s->err = *err;
    if (--s->p->pending == 0)
        event_base_loopbreak(s->p->base);
}

static void *track(plan *p, slot *s)
{
    s->p = p;
    mb_error_clear(&s->err);
    p->pending++;
    return s;
}

static void untrack(plan *p, mb_cloud_op *op)
{
    if (op == NULL)
        p->pending--; /* out of memory: never calls back */
}

/* Runs the loop until every read is back or timeout_ms passes.  0 or -1 (timed out). */
static int wait_all(plan *p, long timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

    if (p->pending == 0)
        return 0;
    event_base_loopexit(p->base, &tv);
    event_base_dispatch(p->base);
    return p->pending == 0 ? 0 : -1;
}

static void plan_free(plan *p)
{
    mb_cloud_free(p->cloud);
    mb_http_free(p->http);
    if (p->base)
        event_base_free(p->base);
    mb_cluster_clear(&p->cluster);
    mb_node_list_clear(&p->nodes);
    for (size_t i = 0; i < MB_ORDER_MAX_NODES; i++)
        mb_k8s_meta_clear(&p->node_meta[i]);
    mb_release_clear(&p->rel);
    mb_sg_rule_list_clear(&p->rules);
    for (size_t i = 0; i < MB_ORDER_MAX_NAMESPACES; i++)
        mb_k8s_meta_clear(&p->ns_meta[i]);
}

static int plan_open(mc_ctx *c, plan *p, char *err, size_t errlen)
{
    mb_http_opts ho = {0};
    mb_cloud_opts co = {mb_conf_str(c->conf, "MESHBUY_CCE_URL"),
                        mb_conf_str(c->conf, "MESHBUY_VPC_URL"),
                        mb_conf_str(c->conf, "MESHBUY_K8S_URL")};

    if (!co.cce_url || !co.vpc_url || !co.k8s_url) {
        snprintf(err, errlen, "MESHBUY_CCE_URL, MESHBUY_VPC_URL and MESHBUY_K8S_URL are not all "
                 "set: the cloud was not read");
        return -1;
    }
    ho.timeout_ms = mb_conf_int(c->conf, "MESHBUY_HTTP_TIMEOUT_MS");
    ho.ca_file = mb_conf_str(c->conf, "MESHBUY_CA_FILE");
    ho.ak = mb_conf_str(c->conf, "MESHBUY_AK");
    ho.sk = mb_conf_str(c->conf, "MESHBUY_SK");
    p->base = event_base_new();
    if (p->base == NULL) {
        snprintf(err, errlen, "event_base_new failed");
        return -1;
    }
    p->http = mb_http_new(p->base, &ho, err, errlen);
    if (p->http == NULL)
        return -1;
    p->cloud = mb_cloud_new(p->http, &co, err, errlen);
    return p->cloud ? 0 : -1;
}

static json_t *step_ck(const mb_job *j, const char *name)
{
    return json_object_get(json_object_get(json_object_get(j->state, "steps"), name), "ck");
}

/* Reads what a replay's steps would look at.  0, or -1 with err (then nothing observed). */
static int observe(mc_ctx *c, plan *p, const mb_job *j, const mb_order *o, char *err,
                   size_t errlen)
{
    json_t *pre = step_ck(j, "precheck");
    json_t *names = json_object_get(pre, "nodes");
    long tmo = mb_conf_int(c->conf, "MESHBUY_HTTP_TIMEOUT_MS") + 1000;

    if (plan_open(c, p, err, errlen) != 0)
        return -1;
    p->t.project_id = o->project_id;
    p->t.region = o->region;
    p->t.cluster_id = o->cluster_id;
    untrack(p, mb_cloud_cluster_get(p->cloud, &p->t, &p->cluster, read_done,
                                    track(p, &p->s_cluster)));
    untrack(p, mb_cloud_nodes_list(p->cloud, &p->t, &p->nodes, read_done, track(p, &p->s_nodes)));
    if (wait_all(p, tmo) != 0) {
        snprintf(err, errlen, "cloud reads did not complete within %ld ms", tmo);
        return -1;
    }
    if (p->s_cluster.err.status != MB_OK) {
        snprintf(err, errlen, "cluster %s: %s", o->cluster_id, p->s_cluster.err.msg);
        return -1;
    }
    p->sg = json_string_value(json_object_get(pre, "security_group_id"));
    if (p->sg == NULL)
        p->sg = p->cluster.security_group_id;
    for (size_t i = 0; i < o->n_nodes && i < MB_ORDER_MAX_NODES; i++) {
        p->node_name[i] = json_string_value(json_object_get(names, o->nodes[i]));
        for (size_t k = 0; p->node_name[i] == NULL && k < p->nodes.n; k++) {
            if (p->nodes.items[k].uid && strcmp(p->nodes.items[k].uid, o->nodes[i]) == 0)
                p->node_name[i] = p->nodes.items[k].name;
        }
        if (p->node_name[i])
            untrack(p, mb_cloud_k8s_get(p->cloud, &p->t, MB_K8S_NODE, p->node_name[i],
                                        &p->node_meta[i], read_done, track(p, &p->s_node[i])));
    }
    untrack(p, mb_cloud_release_get(p->cloud, &p->t, "istio-system", "istio-master", &p->rel,
                                    read_done, track(p, &p->s_rel)));
    if (p->sg)
        untrack(p, mb_cloud_sg_rules_list(p->cloud, &p->t, p->sg, "ingress", NULL, &p->rules,
                                          read_done, track(p, &p->s_rules)));
    for (size_t i = 0; i < o->n_namespaces && i < MB_ORDER_MAX_NAMESPACES; i++)
        untrack(p, mb_cloud_k8s_get(p->cloud, &p->t, MB_K8S_NAMESPACE, o->namespaces[i],
                                    &p->ns_meta[i], read_done, track(p, &p->s_ns[i])));
    if (wait_all(p, tmo) != 0) {
        snprintf(err, errlen, "cloud reads did not complete within %ld ms", tmo);
        return -1;
    }
    return 0;
}

/* ================================================================ the plan document */

static void add(json_t *arr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(json_t *arr, const char *fmt, ...)
{
    char buf[600];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    json_array_append_new(arr, json_string(buf));
}

/* The value of label key on a read object: "" absent, NULL not observed. */
static const char *label_of(const slot *s, const mb_k8s_meta *m, const char *key, int observed)
{
    const char *v;

    if (!observed || !s->done || s->err.status != MB_OK)
        return NULL;
    if (!m->exists)
        return "(object not found)";
    v = json_string_value(json_object_get(m->labels, key));
    return v ? v : "";
}

static void plan_labels(json_t *calls, json_t *ok, const char *what, const char *path,
                        const char *name, const char *key, const char *want, const char *now)
{
    if (now && strcmp(now, want) == 0)
        add(ok, "%s %s already has %s=%s", what, name, key, want);
    else if (now)
        add(calls, "PATCH %s/%s labels %s=%s (now: %s)", path, name, key, want,
            *now ? now : "absent");
    else
        add(calls, "PATCH %s/%s labels %s=%s (not observed)", path, name, key, want);
}

static void plan_release(json_t *calls, json_t *ok, const plan *p, int observed,
                         const mb_job *j)
{
    char desc[200];

    if (!observed || p->s_rel.err.status != MB_OK) {
        add(calls, "POST release istio-master in istio-system unless it exists (not observed)");
        return;
    }
    if (!p->rel.exists) {
        add(calls, "POST release istio-master in istio-system, then poll until DEPLOYED");
        return;
    }
    snprintf(desc, sizeof(desc), "meshbuy order %s: mesh ", j->order_id);
    if (p->rel.description && strncmp(p->rel.description, desc, strlen(desc)) == 0) {
        if (strcmp(p->rel.status ? p->rel.status : "", "DEPLOYED") == 0)
            add(ok, "release istio-master is DEPLOYED (this order's): adopted, no call");
        else
            add(calls, "release istio-master exists (this order's), status %s: polled; "
                "FAILED/UNKNOWN fails the step again", p->rel.status ? p->rel.status : "?");
        return;
    }
    add(calls, "release istio-master exists but is NOT this order's (%s, status %s): the "
        "step will refuse to touch it", p->rel.description ? p->rel.description : "no "
        "description", p->rel.status ? p->rel.status : "?");
}

static void plan_port(json_t *calls, json_t *ok, const plan *p, int observed)
{
    if (!observed || p->sg == NULL || p->s_rules.err.status != MB_OK) {
        add(calls, "POST security-group rule ingress tcp 7443 unless one covers it (not "
            "observed)");
        return;
    }
    for (size_t i = 0; i < p->rules.n; i++) {
        const mb_sg_rule *r = &p->rules.items[i];
        if (mb_sg_rule_allows(r, WEBHOOK_PORT)) {
            add(ok, "security group %s: rule %s (%s) already allows tcp 7443: no call", p->sg,
                r->id ? r->id : "?", r->multiport && *r->multiport ? r->multiport : "all ports");
            return;
        }
    }
    add(calls, "POST security-group rule ingress tcp 7443 on %s (no rule covers it now)", p->sg);
}

static json_t *plan_doc(const mb_job *j, const mb_order *o, int from, const plan *p,
                        int observed, const char *why)
{
    json_t *doc = json_pack("{s:s, s:s, s:s, s:b, s:[]}", "order_id", j->order_id, "from_step",
                            mb_steps[from]->name, "status", j->status, "observed", observed,
                            "steps");
    json_t *steps = json_object_get(doc, "steps");
    json_t *restart_ck = step_ck(j, "restart");

    if (!observed)
        json_object_set_new(doc, "not_observed", json_string(why));
    for (int i = 0; i < mb_steps_count; i++) {
        const char *name = mb_steps[i]->name;
        json_t *st = json_pack("{s:s, s:b, s:[], s:[]}", "step", name, "runs", i >= from,
                               "calls", "in_place");
        json_t *calls = json_object_get(st, "calls"), *ok = json_object_get(st, "in_place");

        json_array_append_new(steps, st);
        if (i < from)
            continue;
        if (strcmp(name, "reserve") == 0) {
            add(calls, "claims mesh name %s in Redis (no cloud call)", j->key);
        } else if (strcmp(name, "label_nodes") == 0) {
            for (size_t k = 0; k < o->n_nodes && k < MB_ORDER_MAX_NODES; k++)
                plan_labels(calls, ok, "node", "/api/v1/nodes",
                            p->node_name[k] ? p->node_name[k] : o->nodes[k], "istio", "master",
                            label_of(&p->s_node[k], &p->node_meta[k], "istio",
                                     observed && p->node_name[k]));
        } else if (strcmp(name, "install_release") == 0) {
            plan_release(calls, ok, p, observed, j);
        } else if (strcmp(name, "open_port") == 0) {
            plan_port(calls, ok, p, observed);
        } else if (strcmp(name, "inject") == 0) {
            for (size_t k = 0; k < o->n_namespaces && k < MB_ORDER_MAX_NAMESPACES; k++)
                plan_labels(calls, ok, "namespace", "/api/v1/namespaces", o->namespaces[k],
                            "istio-injection", "enabled",
                            label_of(&p->s_ns[k], &p->ns_meta[k], "istio-injection", observed));
            if (o->n_namespaces == 0)
                add(ok, "no namespaces to inject in the order");
        } else if (strcmp(name, "restart") == 0) {
            const char *at = json_string_value(json_object_get(restart_ck, "restarted_at"));
            if (!o->restart_existing || o->n_namespaces == 0) {
                add(ok, "no restart asked in the order");
                continue;
            }
            for (size_t k = 0; k < o->n_namespaces; k++)
                add(calls, "PATCH restartedAt annotation on Deployments, StatefulSets, "
                    "DaemonSets of namespace %s (irreversible)%s%s%s", o->namespaces[k],
                    at ? "; workloads already restarted at " : "", at ? at : "",
                    at ? " are skipped" : "");
        } else {
            add(ok, "reads only, no side effect");
        }
    }
    return doc;
}

static void print_plan(const json_t *doc)
{
    json_t *steps = json_object_get(doc, "steps");
    size_t i, k;
    json_t *st, *v;

    printf("replay plan for %s (status %s), from %s; nothing has been changed\n",
           json_string_value(json_object_get(doc, "order_id")),
           json_string_value(json_object_get(doc, "status")),
           json_string_value(json_object_get(doc, "from_step")));
    if (json_object_get(doc, "not_observed"))
        printf("cloud NOT read: %s\n",
               json_string_value(json_object_get(doc, "not_observed")));
    json_array_foreach(steps, i, st) {
        int runs = json_is_true(json_object_get(st, "runs"));
        printf("  %zu %-16s %s\n", i + 1, json_string_value(json_object_get(st, "step")),
               runs ? "runs" : "skipped (before the replay step)");
        json_array_foreach(json_object_get(st, "calls"), k, v)
            printf("      may call: %s\n", json_string_value(v));
        json_array_foreach(json_object_get(st, "in_place"), k, v)
            printf("      in place: %s\n", json_string_value(v));
    }
}

int mc_plan_show(mc_ctx *c, const mb_job *j, int from, int json)
{
    plan p;
    mb_order *o = NULL;
    mb_order_err oe;
    char why[600] = "";
    int observed;
    json_t *doc;

    memset(&p, 0, sizeof(p));
    if (mb_order_from_json(j->order, &o, &oe) != 0)
        return mc_fail(MC_EXIT_FAILED, "the stored order of %s does not parse (%s): it cannot "
                       "be replayed", j->order_id, oe.reason);
    observed = observe(c, &p, j, o, why, sizeof(why)) == 0;
    doc = plan_doc(j, o, from, &p, observed, why);
    if (json) {
        json_dumpf(doc, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    } else {
        print_plan(doc);
    }
    json_decref(doc);
    plan_free(&p);
    mb_order_free(o);
    return MC_EXIT_OK;
}
