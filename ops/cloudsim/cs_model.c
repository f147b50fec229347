/* cs_model.c: scenario loading and the simulated cloud's state.
 *
 * Objects that Kubernetes serves (nodes, namespaces, workloads) are kept as
 * jansson objects in their API shape, so a GET serializes one object and a
 * PATCH edits it in place.  Releases and security groups are C structs whose
 * API shape is built on demand.  Clusters of a cluster_set exist virtually
 * until first looked up, so a benchmark can address 20,000 clusters without
 * paying for them up front. */
#include "cs_model.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- helpers */

static const char *jstr(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

static char *dup_or(const json_t *o, const char *key, const char *def)
{
    const char *s = jstr(o, key);

    if (s == NULL)
        s = def;
    return s ? strdup(s) : NULL;
}

char *cs_time_text(long long ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

void cs_model_uuid(cs_model *m, char buf[37])
{
    unsigned long long n = ++m->id_seq;

    snprintf(buf, 37, "%08llx-%04llx-4%03llx-8%03llx-%012llx", (n * 2654435761ULL) & 0xffffffffULL,
             (n >> 4) & 0xffff, n & 0xfff, (n >> 12) & 0xfff, n & 0xffffffffffffULL);
}

const char *cs_cluster_next_rv(cs_cluster *cl, char *buf, size_t len)
{
    snprintf(buf, len, "%lld", ++cl->rv);
    return buf;
}

/* ---------------------------------------------------------------- frees */

static void cred_free(void *p)
{
    cs_cred *c = p;

    if (c == NULL)
        return;
    free(c->ak);
    free(c->sk);
    json_decref(c->projects);
    free(c);
}

static void chart_free(void *p)
{
    cs_chart *c = p;

    if (c == NULL)
        return;
    free(c->id);
    free(c->name);
    free(c->version);
    free(c);
}

static void node_free(void *p)
{
    cs_node *n = p;

    if (n == NULL)
        return;
    free(n->uid);
    free(n->name);
    free(n->az);
    free(n->phase);
    free(n->flavor);
    free(n->private_ip);
    json_decref(n->obj);
    free(n);
}

static void release_free(void *p)
{
    cs_release *r = p;

    if (r == NULL)
        return;
    free(r->ns);
    free(r->name);
    free(r->chart_id);
    free(r->chart_name);
    free(r->chart_version);
    free(r->description);
    json_decref(r->values);
    free(r);
}

static void json_free(void *p)
{
    json_decref(p);
}

static void cluster_free(void *p)
{
    cs_cluster *c = p;

    if (c == NULL)
        return;
    cs_map_free(c->node_names);
    cs_map_free(c->nodes);
    cs_map_free(c->namespaces);
    cs_map_free(c->workloads);
    cs_map_free(c->releases);
    free(c->id);
    free(c->uid);
    free(c->project_id);
    free(c->name);
    free(c->version);
    free(c->git_version);
    free(c->phase);
    free(c->sg_id);
    free(c);
}

static void sg_free(void *p)
{
    cs_sg *s = p;

    if (s == NULL)
        return;
    free(s->id);
    free(s->project_id);
    free(s->name);
    json_decref(s->rules);
    free(s);
}

void cs_model_free(cs_model *m)
{
    if (m == NULL)
        return;
    cs_map_free(m->rules);
    cs_map_free(m->clusters);
    cs_map_free(m->sgs);
    cs_map_free(m->creds);
    cs_map_free(m->charts);
    json_decref(m->sets);
    json_decref(m->doc);
    free(m);
}

/* ---------------------------------------------------------------- Kubernetes objects */

static json_t *meta_new(cs_model *m, cs_cluster *cl, const char *name, const char *ns)
{
    char uid[37], rv[24];

    cs_model_uuid(m, uid);
    json_t *meta =
        json_pack("{s:s, s:s, s:s, s:s}", "name", name, "uid", uid, "resourceVersion",
                  cs_cluster_next_rv(cl, rv, sizeof(rv)), "creationTimestamp", m->created);
    if (meta && ns)
        json_object_set_new(meta, "namespace", json_string(ns));
    return meta;
}

/* Copies string-valued labels of src into dst; 0, or -1 on a non-string. */
static int copy_labels(json_t *dst, const json_t *src)
{
    const char *k;
    json_t *v;

    if (src == NULL || json_is_null(src))
        return 0;
    if (!json_is_object(src))
        return -1;
    json_object_foreach((json_t *)src, k, v)
    {
        if (!json_is_string(v))
            return -1;
        json_object_set(dst, k, v);
    }
    return 0;
}

json_t *cs_cluster_add_namespace(cs_model *m, cs_cluster *cl, const char *name,
                                 const json_t *labels)
{
    json_t *ns = cs_map_get(cl->namespaces, name);

    if (ns)
        return ns;
    json_t *meta = meta_new(m, cl, name, NULL);
    json_t *lab = json_pack("{s:s}", "kubernetes.io/metadata.name", name);
    if (copy_labels(lab, labels) < 0) {
        json_decref(meta);
        json_decref(lab);
        return NULL;
    }
    json_object_set_new(meta, "labels", lab);
    ns = json_pack("{s:s, s:s, s:o, s:{s:[s]}, s:{s:s}}", "apiVersion", "v1", "kind", "Namespace",
                   "metadata", meta, "spec", "finalizers", "kubernetes", "status", "phase",
                   "Active");
    if (ns == NULL || cs_map_put(cl->namespaces, name, ns) < 0) {
        json_decref(ns);
        return NULL;
    }
    return ns;
}

static json_t *node_object(cs_model *m, cs_cluster *cl, const cs_node *n, const json_t *labels)
{
    json_t *meta = meta_new(m, cl, n->name, NULL);
    json_t *lab = json_pack("{s:s, s:s, s:s}", "kubernetes.io/hostname", n->name,
                            "topology.kubernetes.io/zone", n->az, "kubernetes.io/os", "linux");

    if (meta == NULL || lab == NULL || copy_labels(lab, labels) < 0) {
        json_decref(meta);
        json_decref(lab);
        return NULL;
    }
    json_object_set_new(meta, "labels", lab);
    const char *ready = strcmp(n->phase, "Active") == 0 ? "True" : "Unknown";
    return json_pack("{s:s, s:s, s:o, s:{s:s}, s:{s:[{s:s, s:s, s:s, s:s}],"
                     " s:[{s:s, s:s}, {s:s, s:s}], s:{s:s, s:s, s:s, s:s}}}",
                     "apiVersion", "v1", "kind", "Node", "metadata", meta, "spec", "providerID",
                     n->uid, "status", "conditions", "type", "Ready", "status", ready, "reason",
                     ready[0] == 'T' ? "KubeletReady" : "NodeStatusUnknown", "lastTransitionTime",
                     m->created, "addresses", "type", "InternalIP", "address", n->private_ip,
                     "type", "Hostname", "address", n->name, "nodeInfo", "kubeletVersion",
                     cl->git_version, "osImage", "EulerOS 2.0 (SP10)", "containerRuntimeVersion",
                     "containerd://1.6.14", "architecture", "amd64");
}

static const char *kind_plural(const char *kind)
{
    if (strcmp(kind, "deployment") == 0 || strcmp(kind, "Deployment") == 0 ||
        strcmp(kind, "deployments") == 0)
        return "deployments";
    if (strcmp(kind, "statefulset") == 0 || strcmp(kind, "StatefulSet") == 0 ||
        strcmp(kind, "statefulsets") == 0)
        return "statefulsets";
    if (strcmp(kind, "daemonset") == 0 || strcmp(kind, "DaemonSet") == 0 ||
        strcmp(kind, "daemonsets") == 0)
        return "daemonsets";
    return NULL;
}

static const char *kind_name(const char *plural)
{
    if (strcmp(plural, "deployments") == 0)
        return "Deployment";
    if (strcmp(plural, "statefulsets") == 0)
        return "StatefulSet";
    return "DaemonSet";
}

/* A workload object.  ready_replicas < 0 means all replicas ready. */
static json_t *workload_object(cs_model *m, cs_cluster *cl, const char *plural, const char *ns,
                               const char *name, const json_t *spec_in)
{
    long long replicas = json_integer_value(json_object_get(spec_in, "replicas"));
    long long gen = 1, obs, upd, avail;

    if (!json_is_integer(json_object_get(spec_in, "replicas")))
        replicas = 2;
    if (json_is_integer(json_object_get(spec_in, "generation")))
        gen = json_integer_value(json_object_get(spec_in, "generation"));
    obs = gen;
    upd = avail = replicas;
    if (json_is_integer(json_object_get(spec_in, "observed_generation")))
        obs = json_integer_value(json_object_get(spec_in, "observed_generation"));
    if (json_is_integer(json_object_get(spec_in, "updated_replicas")))
        upd = json_integer_value(json_object_get(spec_in, "updated_replicas"));
    if (json_is_integer(json_object_get(spec_in, "available_replicas")))
        avail = json_integer_value(json_object_get(spec_in, "available_replicas"));

    json_t *meta = meta_new(m, cl, name, ns);
    json_object_set_new(meta, "generation", json_integer(gen));
    json_object_set_new(meta, "labels", json_pack("{s:s}", "app", name));
    json_t *tmeta = json_pack("{s:{s:s}}", "labels", "app", name);
    json_t *ann = json_object();
    copy_labels(ann, json_object_get(spec_in, "annotations"));
    json_object_set_new(tmeta, "annotations", ann);
    json_t *spec = json_pack("{s:{s:{s:s}}, s:{s:o, s:{s:[{s:s, s:s}]}}}", "selector",
                             "matchLabels", "app", name, "template", "metadata", tmeta, "spec",
                             "containers", "name", name, "image", "registry.example/app:1.0");
    json_t *status;
    if (strcmp(plural, "daemonsets") == 0) {
        status = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "observedGeneration", obs,
                           "desiredNumberScheduled", replicas, "currentNumberScheduled", replicas,
                           "numberReady", avail, "updatedNumberScheduled", upd, "numberAvailable",
                           avail);
    } else {
        json_object_set_new(spec, "replicas", json_integer(replicas));
        status =
            json_pack("{s:I, s:I, s:I, s:I, s:I}", "observedGeneration", obs, "replicas", replicas,
                      "updatedReplicas", upd, "readyReplicas", avail,
                      strcmp(plural, "deployments") == 0 ? "availableReplicas" : "currentReplicas",
                      strcmp(plural, "deployments") == 0 ? avail : replicas);
    }
    if (strcmp(plural, "statefulsets") == 0)
        json_object_set_new(spec, "serviceName", json_string(name));
    if (strcmp(plural, "deployments") == 0 && json_is_true(json_object_get(spec_in, "paused")))
        json_object_set_new(spec, "paused", json_true());
    return json_pack("{s:s, s:s, s:o, s:o, s:o}", "apiVersion", "apps/v1", "kind",
                     kind_name(plural), "metadata", meta, "spec", spec, "status", status);
}

/* ---------------------------------------------------------------- security groups */

static int valid_multiport(const char *s)
{
    int items = 0;

    if (*s == '\0')
        return 1;
    while (*s) {
        char *end;
        long a = strtol(s, &end, 10), b;
        if (end == s || a < 1 || a > 65535 || !isdigit((unsigned char)*s))
            return 0;
        b = a;
        s = end;
        if (*s == '-') {
            s++;
            if (!isdigit((unsigned char)*s))
                return 0;
            b = strtol(s, &end, 10);
            if (b < a || b > 65535)
                return 0;
            s = end;
        }
        if (++items > 20)
            return 0;
        if (*s == ',')
            s++;
        else if (*s != '\0')
            return 0;
        else
            break;
    }
    return 1;
}

static int one_of(const char *s, const char *const *set)
{
    for (; *set; set++) {
        if (strcmp(s, *set) == 0)
            return 1;
    }
    return 0;
}

json_t *cs_sg_rule_build(cs_model *m, const cs_sg *sg, const json_t *in, long long now_ms,
                         char *err, size_t errlen)
{
    static const char *const dirs[] = {"ingress", "egress", NULL};
    static const char *const eths[] = {"IPv4", "IPv6", NULL};
    static const char *const protos[] = {"tcp", "udp", "icmp", "icmpv6", "any", NULL};
    static const char *const actions[] = {"allow", "deny", NULL};
    static const char *const strs[] = {"direction",
                                       "ethertype",
                                       "protocol",
                                       "multiport",
                                       "action",
                                       "remote_ip_prefix",
                                       "remote_group_id",
                                       "remote_address_group_id",
                                       "description",
                                       "id",
                                       "security_group_id",
                                       NULL};
    char id[37], ts[32];

    if (!json_is_object(in)) {
        snprintf(err, errlen, "security_group_rule must be an object");
        return NULL;
    }
    for (const char *const *k = strs; *k; k++) {
        const json_t *v = json_object_get(in, *k);
        if (v && !json_is_string(v) && !json_is_null(v)) {
            snprintf(err, errlen, "Invalid value for %s, must be a string", *k);
            return NULL;
        }
    }
    const char *dir = jstr(in, "direction");
    const char *eth = jstr(in, "ethertype") ? jstr(in, "ethertype") : "IPv4";
    const char *proto = jstr(in, "protocol") ? jstr(in, "protocol") : "any";
    const char *mport = jstr(in, "multiport") ? jstr(in, "multiport") : "";
    const char *action = jstr(in, "action") ? jstr(in, "action") : "allow";
    const json_t *prio = json_object_get(in, "priority");
    long long priority = 1;

    if (dir == NULL || !one_of(dir, dirs)) {
        snprintf(err, errlen, "Invalid value for direction: must be ingress or egress");
        return NULL;
    }
    if (!one_of(eth, eths)) {
        snprintf(err, errlen, "Invalid value for ethertype: %s", eth);
        return NULL;
    }
    if (!one_of(proto, protos)) {
        snprintf(err, errlen, "Invalid value for protocol: %s", proto);
        return NULL;
    }
    if (!one_of(action, actions)) {
        snprintf(err, errlen, "Invalid value for action: %s", action);
        return NULL;
    }
    if (!valid_multiport(mport) ||
        (*mport && strcmp(proto, "tcp") != 0 && strcmp(proto, "udp") != 0)) {
        snprintf(err, errlen, "Invalid value for multiport: %s", mport);
        return NULL;
    }
    if (prio && !json_is_null(prio)) {
        if (!json_is_integer(prio) || json_integer_value(prio) < 1 ||
            json_integer_value(prio) > 100) {
            snprintf(err, errlen, "Invalid value for priority: must be an integer 1-100");
            return NULL;
        }
        priority = json_integer_value(prio);
    }
    int remotes = 0;
    const char *rip = jstr(in, "remote_ip_prefix") ? jstr(in, "remote_ip_prefix") : "";
    const char *rgid = jstr(in, "remote_group_id") ? jstr(in, "remote_group_id") : "";
    const char *ragid =
        jstr(in, "remote_address_group_id") ? jstr(in, "remote_address_group_id") : "";
    remotes = (*rip != '\0') + (*rgid != '\0') + (*ragid != '\0');
    if (remotes > 1) {
        snprintf(err, errlen,
                 "remote_ip_prefix, remote_group_id and remote_address_group_id "
                 "are mutually exclusive");
        return NULL;
    }
    if (jstr(in, "id"))
        snprintf(id, sizeof(id), "%s", jstr(in, "id"));
    else
        cs_model_uuid(m, id);
    cs_time_text(now_ms, ts, sizeof(ts));
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:s,"
                     " s:s}",
                     "id", id, "project_id", sg->project_id, "security_group_id", sg->id,
                     "direction", dir, "ethertype", eth, "protocol", proto, "multiport", mport,
                     "action", action, "priority", priority, "remote_ip_prefix", rip,
                     "remote_group_id", rgid, "remote_address_group_id", ragid, "description",
                     jstr(in, "description") ? jstr(in, "description") : "", "created_at", ts,
                     "updated_at", ts);
}

static cs_sg *sg_add(cs_model *m, const char *id, const char *project, const char *name)
{
    cs_sg *sg = calloc(1, sizeof(*sg));

    if (sg == NULL)
        return NULL;
    sg->id = strdup(id);
    sg->project_id = strdup(project);
    sg->name = strdup(name ? name : id);
    sg->rules = json_array();
    if (!sg->id || !sg->project_id || !sg->name || !sg->rules || cs_map_put(m->sgs, id, sg) < 0) {
        sg_free(sg);
        return NULL;
    }
    return sg;
}

static int sg_add_rules(cs_model *m, cs_sg *sg, const json_t *rules, char *err, size_t errlen)
{
    size_t i;
    json_t *r;

    if (rules && !json_is_array(rules)) {
        snprintf(err, errlen, "security group %s: rules must be an array", sg->id);
        return -1;
    }
    json_array_foreach((json_t *)rules, i, r)
    {
        char why[256];
        json_t *rule = cs_sg_rule_build(m, sg, r, 0, why, sizeof(why));
        if (rule == NULL) {
            snprintf(err, errlen, "security group %s rule %zu: %s", sg->id, i, why);
            return -1;
        }
        json_object_set_new(rule, "created_at", json_string(m->created));
        json_object_set_new(rule, "updated_at", json_string(m->created));
        json_array_append_new(sg->rules, rule);
        cs_map_put(m->rules, jstr(rule, "id"), sg);
    }
    return 0;
}

/* ---------------------------------------------------------------- clusters */

#define NEED(obj, key, what)                                                   \
    do {                                                                       \
        if (jstr((obj), (key)) == NULL) {                                      \
            snprintf(err, errlen, "%s: missing string \"%s\"", (what), (key)); \
            goto err;                                                          \
        }                                                                      \
    } while (0)

static int add_nodes(cs_model *m, cs_cluster *cl, const json_t *nodes, char *err, size_t errlen)
{
    size_t i;
    json_t *jn;

    json_array_foreach((json_t *)nodes, i, jn)
    {
        char what[160], ip[32];
        cs_node *n = calloc(1, sizeof(*n));
        if (n == NULL)
            return -1;
        snprintf(what, sizeof(what), "cluster %s node %zu", cl->id, i);
        snprintf(ip, sizeof(ip), "192.168.%zu.%zu", (i / 200) % 256, 10 + i % 200);
        if (jstr(jn, "uid") == NULL || jstr(jn, "name") == NULL) {
            snprintf(err, errlen, "%s: needs uid and name", what);
            node_free(n);
            return -1;
        }
        n->uid = dup_or(jn, "uid", NULL);
        n->name = dup_or(jn, "name", NULL);
        n->az = dup_or(jn, "az", "az1");
        n->phase = dup_or(jn, "phase", "Active");
        n->flavor = dup_or(jn, "flavor", "c7.xlarge.2");
        n->private_ip = dup_or(jn, "private_ip", ip);
        n->obj = node_object(m, cl, n, json_object_get(jn, "labels"));
        if (n->obj == NULL || cs_map_get(cl->nodes, n->uid) ||
            cs_map_get(cl->node_names, n->name)) {
            snprintf(err, errlen, "%s: bad labels or duplicate uid/name", what);
            node_free(n);
            return -1;
        }
        cs_map_put(cl->nodes, n->uid, n);
        cs_map_put(cl->node_names, n->name, n);
    }
    return 0;
}

static int add_workloads(cs_model *m, cs_cluster *cl, const json_t *wls, char *err, size_t errlen)
{
    size_t i;
    json_t *w;

    json_array_foreach((json_t *)wls, i, w)
    {
        const char *ns = jstr(w, "namespace"), *name = jstr(w, "name");
        const char *plural = jstr(w, "kind") ? kind_plural(jstr(w, "kind")) : NULL;
        char key[512];
        if (ns == NULL || name == NULL || plural == NULL) {
            snprintf(err, errlen,
                     "cluster %s workload %zu: needs namespace, name and kind "
                     "deployment|statefulset|daemonset",
                     cl->id, i);
            return -1;
        }
        if (cs_cluster_add_namespace(m, cl, ns, NULL) == NULL)
            return -1;
        snprintf(key, sizeof(key), "%s/%s/%s", plural, ns, name);
        json_t *obj = workload_object(m, cl, plural, ns, name, w);
        if (obj == NULL || cs_map_put(cl->workloads, key, obj) < 0) {
            json_decref(obj);
            return -1;
        }
    }
    return 0;
}

static int add_coredns(cs_model *m, cs_cluster *cl, const json_t *cd)
{
    json_t *spec;

    if (json_is_false(cd) || (cd && json_is_null(cd)))
        return 0; /* the scenario says CoreDNS is not installed at all */
    if (cd == NULL || json_is_true(json_object_get(cd, "ready")) || json_is_true(cd)) {
        spec = json_pack("{s:i}", "replicas", 2);
    } else if (json_is_false(json_object_get(cd, "ready"))) {
        /* Rolled out but nothing available: kubectl rollout status waits. */
        spec = json_pack("{s:i, s:i, s:i, s:i, s:i}", "replicas", 2, "generation", 2,
                         "observed_generation", 2, "updated_replicas", 2, "available_replicas", 0);
    } else {
        spec = json_deep_copy(cd);
    }
    json_t *obj = workload_object(m, cl, "deployments", "kube-system", "coredns", spec);
    json_decref(spec);
    if (obj == NULL)
        return -1;
    json_object_set_new(json_object_get(obj, "metadata"), "labels",
                        json_pack("{s:s}", "k8s-app", "coredns"));
    return cs_map_put(cl->workloads, "deployments/kube-system/coredns", obj);
}

static cs_cluster *cluster_new(cs_model *m, const json_t *jc, char *err, size_t errlen)
{
    cs_cluster *cl = calloc(1, sizeof(*cl));
    char uid[37], what[160];
    size_t i;
    json_t *v;

    if (cl == NULL)
        return NULL;
    snprintf(what, sizeof(what), "cluster %s", jstr(jc, "id") ? jstr(jc, "id") : "?");
    NEED(jc, "id", what);
    NEED(jc, "project_id", what);
    cs_model_uuid(m, uid);
    cl->id = dup_or(jc, "id", NULL);
    cl->uid = dup_or(jc, "uid", cl->id);
    cl->project_id = dup_or(jc, "project_id", NULL);
    cl->name = dup_or(jc, "name", cl->id);
    cl->version = dup_or(jc, "version", "v1.25");
    cl->phase = dup_or(jc, "phase", "Available");
    cl->sg_id = dup_or(jc, "security_group_id", NULL);
    if (cl->sg_id == NULL) {
        char sg[300];
        snprintf(sg, sizeof(sg), "%s-sg", cl->id);
        cl->sg_id = strdup(sg);
    }
    if (jstr(jc, "git_version")) {
        cl->git_version = dup_or(jc, "git_version", NULL);
    } else {
        char gv[64];
        snprintf(gv, sizeof(gv), "%s.5-r0", cl->version);
        cl->git_version = strdup(gv);
    }
    cl->pods = (long)json_integer_value(json_object_get(jc, "pods"));
    cl->release_fail = json_is_true(json_object_get(jc, "release_fail"));
    cl->nodes = cs_map_new(node_free);
    cl->node_names = cs_map_new(NULL);
    cl->namespaces = cs_map_new(json_free);
    cl->workloads = cs_map_new(json_free);
    cl->releases = cs_map_new(release_free);
    if (!cl->id || !cl->uid || !cl->project_id || !cl->name || !cl->version || !cl->phase ||
        !cl->sg_id || !cl->git_version || !cl->nodes || !cl->node_names || !cl->namespaces ||
        !cl->workloads || !cl->releases) {
        snprintf(err, errlen, "%s: out of memory", what);
        goto err;
    }
    if (add_nodes(m, cl, json_object_get(jc, "nodes"), err, errlen) < 0)
        goto err;
    const json_t *nss = json_object_get(jc, "namespaces");
    if (nss == NULL) {
        static const char *const defs[] = {"default", "kube-system", "kube-public",
                                           "kube-node-lease", NULL};
        for (const char *const *d = defs; *d; d++)
            cs_cluster_add_namespace(m, cl, *d, NULL);
    }
    json_array_foreach((json_t *)nss, i, v)
    {
        const char *name = json_is_string(v) ? json_string_value(v) : jstr(v, "name");
        if (name == NULL ||
            cs_cluster_add_namespace(m, cl, name, json_object_get(v, "labels")) == NULL) {
            snprintf(err, errlen, "%s namespace %zu: needs a name and string labels", what, i);
            goto err;
        }
    }
    cs_cluster_add_namespace(m, cl, "default", NULL);
    cs_cluster_add_namespace(m, cl, "kube-system", NULL);
    if (json_is_true(json_object_get(jc, "leftover_istio_system")))
        cs_cluster_add_namespace(m, cl, "istio-system", NULL);
    if (add_coredns(m, cl, json_object_get(jc, "coredns")) < 0) {
        snprintf(err, errlen, "%s: bad coredns", what);
        goto err;
    }
    if (add_workloads(m, cl, json_object_get(jc, "workloads"), err, errlen) < 0)
        goto err;
    if (cs_map_get(m->sgs, cl->sg_id) == NULL && sg_add(m, cl->sg_id, cl->project_id, NULL) == NULL)
        goto err;
    return cl;
err:
    if (err[0] == '\0')
        snprintf(err, errlen, "%s: invalid", what);
    cluster_free(cl);
    return NULL;
}

/* ---------------------------------------------------------------- cluster sets */

/* Index of id in a set with this prefix and count, or -1. */
static long set_index(const char *id, const char *prefix, long count)
{
    size_t pl = strlen(prefix);
    const char *d = id + pl;
    char *end;

    if (strncmp(id, prefix, pl) != 0 || !isdigit((unsigned char)*d))
        return -1;
    if (d[0] == '0' && d[1] != '\0')
        return -1; /* one spelling per cluster */
    long i = strtol(d, &end, 10);
    if (*end != '\0' || i < 0 || i >= count)
        return -1;
    return i;
}

static cs_cluster *materialize(cs_model *m, const char *id)
{
    size_t k;
    json_t *set;

    json_array_foreach(m->sets, k, set)
    {
        const char *prefix = jstr(set, "prefix");
        long count = (long)json_integer_value(json_object_get(set, "count"));
        if (prefix == NULL || set_index(id, prefix, count) < 0)
            continue;
        json_t *jc = json_deep_copy(json_object_get(set, "template"));
        char sg[300], err[256] = "";
        size_t i;
        json_t *n;
        snprintf(sg, sizeof(sg), "%s-sg", id);
        json_object_set_new(jc, "id", json_string(id));
        json_object_set_new(jc, "security_group_id", json_string(sg));
        json_array_foreach(json_object_get(jc, "nodes"), i, n)
        {
            char uid[400];
            snprintf(uid, sizeof(uid), "%s-%s", id, jstr(n, "uid") ? jstr(n, "uid") : "node");
            json_object_set_new(n, "uid", json_string(uid));
        }
        cs_cluster *cl = cluster_new(m, jc, err, sizeof(err));
        json_decref(jc);
        if (cl == NULL || cs_map_put(m->clusters, id, cl) < 0) {
            cluster_free(cl);
            return NULL;
        }
        cs_sg *s = cs_map_get(m->sgs, sg);
        if (s && json_array_size(s->rules) == 0)
            sg_add_rules(m, s, json_object_get(set, "security_group_rules"), err, sizeof(err));
        return cl;
    }
    return NULL;
}

cs_cluster *cs_model_cluster(cs_model *m, const char *id)
{
    cs_cluster *cl = cs_map_get(m->clusters, id);

    if (cl || json_array_size(m->sets) == 0)
        return cl;
    return materialize(m, id);
}

long cs_model_warm(cs_model *m, long count)
{
    size_t k;
    json_t *set;
    long built = 0;

    json_array_foreach(m->sets, k, set)
    {
        const char *prefix = jstr(set, "prefix");
        long n = (long)json_integer_value(json_object_get(set, "count"));
        char id[300];
        if (prefix == NULL)
            continue;
        for (long i = 0; i < n && i < count; i++) {
            snprintf(id, sizeof(id), "%s%ld", prefix, i);
            if (cs_map_get(m->clusters, id))
                continue;
            if (materialize(m, id) == NULL)
                return -1;
            built++;
        }
    }
    return built;
}

cs_sg *cs_model_sg(cs_model *m, const char *id)
{
    cs_sg *sg = cs_map_get(m->sgs, id);
    size_t n = strlen(id);

    if (sg || json_array_size(m->sets) == 0 || n < 4 || strcmp(id + n - 3, "-sg") != 0)
        return sg;
    char cid[300];
    snprintf(cid, sizeof(cid), "%.*s", (int)(n - 3), id);
    if (cs_model_cluster(m, cid) == NULL)
        return NULL;
    return cs_map_get(m->sgs, id);
}

/* ---------------------------------------------------------------- releases */

const char *cs_release_status(const cs_model *m, const cs_release *r, long long now_ms)
{
    if (r->deleting_ms)
        return "DELETING";
    if (now_ms < r->created_ms + m->install_ms)
        return "PENDING_INSTALL";
    return r->final_status;
}

json_t *cs_release_json(const cs_model *m, const cs_cluster *cl, const cs_release *r,
                        long long now_ms)
{
    const char *st = cs_release_status(m, r, now_ms);
    long long upd = r->created_ms;
    char c[32], u[32];
    const char *desc;

    if (r->deleting_ms)
        upd = r->deleting_ms;
    else if (strcmp(st, "PENDING_INSTALL") != 0)
        upd = r->created_ms + m->install_ms;
    if (strcmp(st, "PENDING_INSTALL") == 0)
        desc = "Install in progress";
    else if (strcmp(st, "DEPLOYED") == 0)
        desc = "Install complete";
    else if (strcmp(st, "DELETING") == 0)
        desc = "Deletion in progress";
    else
        desc = "Install failed: timed out waiting for the condition (pods of istiod not ready)";
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:O, s:i, s:s}",
                     "chart_name", r->chart_name, "chart_version", r->chart_version, "cluster_id",
                     cl->id, "cluster_name", cl->name, "create_at",
                     cs_time_text(r->created_ms, c, sizeof(c)), "update_at",
                     cs_time_text(upd, u, sizeof(u)), "name", r->name, "namespace", r->ns, "status",
                     st, "status_description", desc, "values", r->values, "version", 1,
                     "description", r->description ? r->description : "");
}

static int ns_has_release(cs_cluster *cl, const char *ns)
{
    for (cs_map_it *it = cs_map_first(cl->releases); it; it = cs_map_next(it)) {
        const cs_release *r = cs_map_value(it);
        if (strcmp(r->ns, ns) == 0)
            return 1;
    }
    return 0;
}

void cs_cluster_settle(cs_model *m, cs_cluster *cl, long long now_ms)
{
    cs_map_it *it = cs_map_first(cl->releases);

    while (it) {
        cs_map_it *next = cs_map_next(it);
        cs_release *r = cs_map_value(it);
        if (r->deleting_ms && now_ms >= r->deleting_ms + m->delete_ms) {
            char ns[256];
            int drop_ns = r->created_ns;
            snprintf(ns, sizeof(ns), "%s", r->ns);
            cs_map_del(cl->releases, cs_map_key(it));
            if (drop_ns && !ns_has_release(cl, ns))
                cs_map_del(cl->namespaces, ns);
        }
        it = next;
    }
}

/* ---------------------------------------------------------------- loading */

static int load_creds(cs_model *m, const json_t *doc, char *err, size_t errlen)
{
    size_t i;
    json_t *c;

    json_array_foreach(json_object_get(doc, "credentials"), i, c)
    {
        const json_t *pr = json_object_get(c, "projects");
        if (jstr(c, "ak") == NULL || jstr(c, "sk") == NULL || (pr && !json_is_array(pr))) {
            snprintf(err, errlen, "credentials[%zu]: needs ak, sk and optional projects[]", i);
            return -1;
        }
        cs_cred *cr = calloc(1, sizeof(*cr));
        if (cr == NULL)
            return -1;
        cr->ak = dup_or(c, "ak", NULL);
        cr->sk = dup_or(c, "sk", NULL);
        cr->projects = pr ? json_deep_copy(pr) : json_array();
        if (cs_map_put(m->creds, cr->ak, cr) < 0) {
            cred_free(cr);
            return -1;
        }
    }
    return 0;
}

static int load_charts(cs_model *m, const json_t *doc, char *err, size_t errlen)
{
    size_t i;
    json_t *c;

    json_array_foreach(json_object_get(doc, "charts"), i, c)
    {
        if (jstr(c, "id") == NULL || jstr(c, "version") == NULL) {
            snprintf(err, errlen, "charts[%zu]: needs id and version", i);
            return -1;
        }
        cs_chart *ch = calloc(1, sizeof(*ch));
        if (ch == NULL)
            return -1;
        ch->id = dup_or(c, "id", NULL);
        ch->name = dup_or(c, "name", ch->id);
        ch->version = dup_or(c, "version", NULL);
        if (cs_map_put(m->charts, ch->id, ch) < 0) {
            chart_free(ch);
            return -1;
        }
    }
    return 0;
}

static int load_sgs(cs_model *m, const json_t *doc, char *err, size_t errlen)
{
    size_t i;
    json_t *s;

    json_array_foreach(json_object_get(doc, "security_groups"), i, s)
    {
        if (jstr(s, "id") == NULL || jstr(s, "project_id") == NULL) {
            snprintf(err, errlen, "security_groups[%zu]: needs id and project_id", i);
            return -1;
        }
        cs_sg *sg = sg_add(m, jstr(s, "id"), jstr(s, "project_id"), jstr(s, "name"));
        if (sg == NULL || sg_add_rules(m, sg, json_object_get(s, "rules"), err, errlen) < 0)
            return -1;
    }
    return 0;
}

static int load_clusters(cs_model *m, const json_t *doc, char *err, size_t errlen)
{
    size_t i;
    json_t *c;

    json_array_foreach(json_object_get(doc, "clusters"), i, c)
    {
        cs_cluster *cl = cluster_new(m, c, err, errlen);
        if (cl == NULL)
            return -1;
        if (cs_map_get(m->clusters, cl->id)) {
            snprintf(err, errlen, "cluster %s: duplicate id", cl->id);
            cluster_free(cl);
            return -1;
        }
        cs_map_put(m->clusters, cl->id, cl);
    }
    json_array_foreach(json_object_get(doc, "cluster_sets"), i, c)
    {
        if (jstr(c, "prefix") == NULL || !json_is_integer(json_object_get(c, "count")) ||
            !json_is_object(json_object_get(c, "template"))) {
            snprintf(err, errlen, "cluster_sets[%zu]: needs prefix, count and template", i);
            return -1;
        }
        if (jstr(json_object_get(c, "template"), "project_id") == NULL) {
            snprintf(err, errlen, "cluster_sets[%zu]: template needs project_id", i);
            return -1;
        }
    }
    return 0;
}

cs_model *cs_model_new(const json_t *scenario, long long install_ms, long long delete_ms, char *err,
                       size_t errlen)
{
    cs_model *m = calloc(1, sizeof(*m));

    err[0] = '\0';
    if (m == NULL)
        return NULL;
    if (!json_is_object(scenario)) {
        snprintf(err, errlen, "scenario must be a JSON object");
        goto err;
    }
    m->doc = json_deep_copy(scenario);
    m->install_ms = install_ms;
    m->delete_ms = delete_ms;
    m->creds = cs_map_new(cred_free);
    m->charts = cs_map_new(chart_free);
    m->clusters = cs_map_new(cluster_free);
    m->sgs = cs_map_new(sg_free);
    m->rules = cs_map_new(NULL);
    m->sets = json_deep_copy(json_object_get(scenario, "cluster_sets"));
    if (m->sets == NULL)
        m->sets = json_array();
    m->sg_rule_quota = 50;
    if (json_is_integer(json_object_get(scenario, "sg_rule_quota")))
        m->sg_rule_quota = (long)json_integer_value(json_object_get(scenario, "sg_rule_quota"));
    m->kubectl_read = json_is_true(json_object_get(scenario, "kubectl_read"));
    snprintf(m->created, sizeof(m->created), "%s",
             jstr(scenario, "created") ? jstr(scenario, "created") : "2024-01-15T08:00:00Z");
    if (!m->doc || !m->creds || !m->charts || !m->clusters || !m->sgs || !m->rules) {
        snprintf(err, errlen, "out of memory");
        goto err;
    }
    if (load_creds(m, scenario, err, errlen) < 0 || load_charts(m, scenario, err, errlen) < 0 ||
        load_sgs(m, scenario, err, errlen) < 0 || load_clusters(m, scenario, err, errlen) < 0)
        goto err;
    return m;
err:
    if (err[0] == '\0')
        snprintf(err, errlen, "out of memory");
    cs_model_free(m);
    return NULL;
}

/* ---------------------------------------------------------------- state dump */

static json_t *cluster_state(cs_model *m, cs_cluster *cl, long long now_ms)
{
    json_t *nodes = json_array(), *nss = json_array(), *wls = json_array(), *rels = json_array();

    cs_cluster_settle(m, cl, now_ms);
    for (cs_map_it *it = cs_map_first(cl->nodes); it; it = cs_map_next(it)) {
        const cs_node *n = cs_map_value(it);
        json_array_append_new(
            nodes, json_pack("{s:s, s:s, s:s, s:s, s:s, s:O}", "uid", n->uid, "name", n->name, "az",
                             n->az, "phase", n->phase, "private_ip", n->private_ip, "labels",
                             json_object_get(json_object_get(n->obj, "metadata"), "labels")));
    }
    for (cs_map_it *it = cs_map_first(cl->namespaces); it; it = cs_map_next(it)) {
        json_t *meta = json_object_get(cs_map_value(it), "metadata");
        json_array_append_new(nss, json_pack("{s:s, s:O}", "name", cs_map_key(it), "labels",
                                             json_object_get(meta, "labels")));
    }
    for (cs_map_it *it = cs_map_first(cl->workloads); it; it = cs_map_next(it)) {
        json_t *o = cs_map_value(it), *meta = json_object_get(o, "metadata");
        json_t *spec = json_object_get(o, "spec");
        json_t *ann = json_object_get(
            json_object_get(json_object_get(spec, "template"), "metadata"), "annotations");
        json_array_append_new(
            wls, json_pack("{s:s, s:s, s:s, s:b, s:O, s:O, s:O}", "kind", jstr(o, "kind"),
                           "namespace", jstr(meta, "namespace"), "name", jstr(meta, "name"),
                           "paused", json_is_true(json_object_get(spec, "paused")), "generation",
                           json_object_get(meta, "generation"), "template_annotations", ann,
                           "status", json_object_get(o, "status")));
    }
    for (cs_map_it *it = cs_map_first(cl->releases); it; it = cs_map_next(it))
        json_array_append_new(rels, cs_release_json(m, cl, cs_map_value(it), now_ms));
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:b, s:o, s:o, s:o, s:o}", "id", cl->id,
                     "project_id", cl->project_id, "name", cl->name, "version", cl->version,
                     "phase", cl->phase, "security_group_id", cl->sg_id, "pods", (int)cl->pods,
                     "release_fail", cl->release_fail, "nodes", nodes, "namespaces", nss,
                     "workloads", wls, "releases", rels);
}

static json_t *sg_state(const cs_sg *sg)
{
    return json_pack("{s:s, s:s, s:s, s:O}", "id", sg->id, "project_id", sg->project_id, "name",
                     sg->name, "rules", sg->rules);
}

json_t *cs_model_state(cs_model *m, const char *cluster_id, long long now_ms)
{
    json_t *cls = json_array(), *sgs = json_array();

    if (cluster_id) {
        cs_cluster *cl = cs_model_cluster(m, cluster_id);
        if (cl == NULL) {
            json_decref(cls);
            json_decref(sgs);
            return NULL;
        }
        json_array_append_new(cls, cluster_state(m, cl, now_ms));
        cs_sg *sg = cs_model_sg(m, cl->sg_id);
        if (sg)
            json_array_append_new(sgs, sg_state(sg));
    } else {
        for (cs_map_it *it = cs_map_first(m->clusters); it; it = cs_map_next(it))
            json_array_append_new(cls, cluster_state(m, cs_map_value(it), now_ms));
        for (cs_map_it *it = cs_map_first(m->sgs); it; it = cs_map_next(it))
            json_array_append_new(sgs, sg_state(cs_map_value(it)));
    }
    return json_pack("{s:o, s:o, s:I, s:i}", "clusters", cls, "security_groups", sgs,
                     "sg_rule_quota", (json_int_t)m->sg_rule_quota, "kubectl_read",
                     m->kubectl_read);
}
