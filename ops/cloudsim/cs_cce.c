/* cs_cce.c: CCE cluster/node reads and the CCE release API (CAM): create, get, list, delete. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs_api.h"

static int is(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

static void not_found_cluster(cs_call *c, const char *id)
{
    cs_reply_cloud(c, 404, "CCE.01404001", "Resource not found: cluster %s does not exist", id);
}

static void method_not_allowed(cs_call *c)
{
    cs_reply_cloud(c, 405, "CCE.01405001", "Method %s is not allowed on %s", c->method, c->path);
}

/* ---------------------------------------------------------------- CCE */

static json_t *cluster_json(const cs_model *m, const cs_cluster *cl)
{
    char url[320];

    snprintf(url, sizeof(url), "https://%s.cce.example:5443", cl->id);
    return json_pack("{s:s, s:s, s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s, s:{s:s, s:s, s:s},"
                     " s:{s:s}}, s:{s:s, s:[{s:s, s:s}]}}",
                     "kind", "Cluster", "apiVersion", "v3", "metadata", "uid", cl->id, "name",
                     cl->name, "creationTimestamp", m->created, "spec", "type", "VirtualMachine",
                     "flavor", "cce.s1.small", "version", cl->version, "hostNetwork", "vpc",
                     "vpc-0a1b2c3d", "subnet", "subnet-0a1b2c3d", "SecurityGroup", cl->sg_id,
                     "containerNetwork", "mode", "overlay_l2", "status", "phase", cl->phase,
                     "endpoints", "url", url, "type", "Internal");
}

static json_t *cce_node_json(const cs_model *m, const cs_node *n)
{
    return json_pack("{s:s, s:s, s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s}}", "kind",
                     "Node", "apiVersion", "v3", "metadata", "uid", n->uid, "name", n->name,
                     "creationTimestamp", m->created, "spec", "flavor", n->flavor, "az", n->az,
                     "os", "EulerOS 2.9", "status", "phase", n->phase, "privateIP", n->private_ip,
                     "serverId", n->uid);
}

/* /api/v3/projects/{project}/clusters/{cluster}[/nodes[/{uid}]] */
void cs_cce_handle(cs_call *c)
{
    cs_model *m = c->srv->m;

    if (c->nseg < 6 || !is(c->seg[4], "clusters") || c->nseg > 8 ||
        (c->nseg >= 7 && !is(c->seg[6], "nodes"))) {
        cs_reply_cloud(c, 404, "APIGW.0101",
                       "The API does not exist or has not been published in the environment");
        return;
    }
    if (!is(c->method, "GET")) {
        method_not_allowed(c);
        return;
    }
    cs_cluster *cl = cs_model_cluster(m, c->seg[5]);
    if (cl == NULL || !is(cl->project_id, c->seg[3])) {
        not_found_cluster(c, c->seg[5]);
        return;
    }
    if (c->nseg == 6) {
        cs_reply_json(c, 200, cluster_json(m, cl));
        return;
    }
    if (c->nseg == 8) {
        cs_node *n = cs_map_get(cl->nodes, c->seg[7]);
        if (n == NULL)
            cs_reply_cloud(c, 404, "CCE.01404001", "Resource not found: node %s does not exist",
                           c->seg[7]);
        else
            cs_reply_json(c, 200, cce_node_json(m, n));
        return;
    }
    json_t *items = json_array();
    for (cs_map_it *it = cs_map_first(cl->nodes); it; it = cs_map_next(it))
        json_array_append_new(items, cce_node_json(m, cs_map_value(it)));
    cs_reply_json(c, 200,
                  json_pack("{s:s, s:s, s:o}", "kind", "List", "apiVersion", "v3", "items", items));
}

/* ---------------------------------------------------------------- CAM releases */

/* Helm release names: DNS-1123 label, at most 53 characters. */
static int valid_release_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 53 || !islower((unsigned char)s[0]) || s[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '-')
            return 0;
    }
    return 1;
}

static void bad_request(cs_call *c, const char *msg)
{
    cs_reply_cloud(c, 400, "CCE.01400001", "Invalid request: %s", msg);
}

static void release_create(cs_call *c, cs_cluster *cl)
{
    cs_server *s = c->srv;
    char err[512], key[512];
    json_t *body = cs_body_json(c, err, sizeof(err));

    if (body == NULL) {
        bad_request(c, err);
        return;
    }
    const char *chart_id = json_string_value(json_object_get(body, "chart_id"));
    const char *name = json_string_value(json_object_get(body, "name"));
    const char *ns = json_string_value(json_object_get(body, "namespace"));
    const char *version = json_string_value(json_object_get(body, "version"));
    const json_t *values = json_object_get(body, "values");
    const json_t *desc = json_object_get(body, "description");
    const cs_chart *chart = chart_id ? cs_map_get(s->m->charts, chart_id) : NULL;

    if (!chart_id || !name || !ns || !version) {
        bad_request(c, "chart_id, name, namespace and version are required strings");
    } else if (!json_is_object(values)) {
        bad_request(c, "values is required and must be an object");
    } else if (desc && !json_is_string(desc)) {
        bad_request(c, "description must be a string");
    } else if (!valid_release_name(name) || !valid_release_name(ns)) {
        bad_request(c, "name and namespace must be DNS-1123 labels of at most 53 characters");
    } else if (cs_map_count(s->m->charts) && chart == NULL) {
        cs_reply_cloud(c, 400, "CCE.01400001", "Invalid request: chart %s not found", chart_id);
    } else if (chart && !is(chart->version, version)) {
        cs_reply_cloud(c, 400, "CCE.01400001",
                       "Invalid request: chart %s has no version %s (it has %s)", chart_id, version,
                       chart->version);
    } else if (!is(cl->phase, "Available")) {
        cs_reply_cloud(c, 400, "CCE.01400013", "Invalid request: cluster %s is %s, not Available",
                       cl->id, cl->phase);
    } else {
        snprintf(key, sizeof(key), "%s/%s", ns, name);
        if (cs_map_get(cl->releases, key)) {
            cs_reply_cloud(c, 409, "CCE.01409001",
                           "release %s already exists in namespace %s of cluster %s", name, ns,
                           cl->id);
            json_decref(body);
            return;
        }
        cs_release *r = calloc(1, sizeof(*r));
        if (r == NULL) {
            cs_reply_cloud(c, 500, "CCE.01500001", "out of memory");
            json_decref(body);
            return;
        }
        r->ns = strdup(ns);
        r->name = strdup(name);
        r->chart_id = strdup(chart_id);
        r->chart_name = strdup(chart ? chart->name : chart_id);
        r->chart_version = strdup(version);
        r->description = strdup(desc ? json_string_value(desc) : "");
        r->values = json_deep_copy(values);
        r->created_ms = c->now_ms;
        const char *fail = cs_faults_release_fail(s->faults, cl->id);
        r->final_status = cl->release_fail ? "FAILED" : fail ? fail : "DEPLOYED";
        r->created_ns = cs_map_get(cl->namespaces, ns) == NULL;
        if (r->created_ns)
            cs_cluster_add_namespace(s->m, cl, ns, NULL);
        cs_map_put(cl->releases, key, r);
        cs_mutation(c, CS_MUT_RELEASE_CREATE, cl->id, key, 1);
        cs_reply_json(c, 201, cs_release_json(s->m, cl, r, c->now_ms));
    }
    json_decref(body);
}

static void release_list(cs_call *c, cs_cluster *cl)
{
    const char *ns = cs_query(c, "namespace"), *chart = cs_query(c, "chart_id");
    json_t *arr = json_array();

    for (cs_map_it *it = cs_map_first(cl->releases); it; it = cs_map_next(it)) {
        const cs_release *r = cs_map_value(it);
        if ((ns && !is(ns, r->ns)) || (chart && !is(chart, r->chart_id)))
            continue;
        json_array_append_new(arr, cs_release_json(c->srv->m, cl, r, c->now_ms));
    }
    cs_reply_json(c, 200, arr);
}

static void release_one(cs_call *c, cs_cluster *cl, const char *ns, const char *name)
{
    char key[512];

    snprintf(key, sizeof(key), "%s/%s", ns, name);
    cs_release *r = cs_map_get(cl->releases, key);
    if (r == NULL) {
        cs_reply_cloud(c, 404, "CCE.01404001", "Resource not found: release %s in namespace %s",
                       name, ns);
        return;
    }
    if (is(c->method, "GET")) {
        cs_reply_json(c, 200, cs_release_json(c->srv->m, cl, r, c->now_ms));
        return;
    }
    if (!is(c->method, "DELETE")) {
        method_not_allowed(c);
        return;
    }
    int changed = r->deleting_ms == 0;
    if (changed)
        r->deleting_ms = c->now_ms;
    cs_mutation(c, CS_MUT_RELEASE_DELETE, cl->id, key, changed);
    cs_reply_empty(c, 204);
}

/* /cce/cam/v3/clusters/{cluster}/releases
 * /cce/cam/v3/clusters/{cluster}/namespace/{ns}/releases/{name} */
void cs_cam_handle(cs_call *c)
{
    if (c->nseg < 6 || !is(c->seg[3], "clusters")) {
        cs_reply_cloud(c, 404, "APIGW.0101",
                       "The API does not exist or has not been published in the environment");
        return;
    }
    cs_cluster *cl = cs_model_cluster(c->srv->m, c->seg[4]);
    if (cl == NULL) {
        not_found_cluster(c, c->seg[4]);
        return;
    }
    cs_cluster_settle(c->srv->m, cl, c->now_ms);
    if (c->nseg == 6 && is(c->seg[5], "releases")) {
        if (is(c->method, "POST"))
            release_create(c, cl);
        else if (is(c->method, "GET"))
            release_list(c, cl);
        else
            method_not_allowed(c);
        return;
    }
    if (c->nseg == 9 && is(c->seg[5], "namespace") && is(c->seg[7], "releases")) {
        release_one(c, cl, c->seg[6], c->seg[8]);
        return;
    }
    cs_reply_cloud(c, 404, "APIGW.0101",
                   "The API does not exist or has not been published in the environment");
}
