/* cs_k8s.c: the Kubernetes API of each simulated cluster, served under /k8s/{cluster_id}:
 * version, discovery (enough for kubectl), nodes, namespaces, pods (paged), and apps/v1
 * workloads, with merge / strategic-merge patches and Status errors as a real API server. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs_api.h"
#include "mb_buf.h"
#include "mb_json.h"

static int is(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

/* ---------------------------------------------------------------- discovery */

static const char api_v1_resources[] =
    "{\"kind\":\"APIResourceList\",\"groupVersion\":\"v1\",\"resources\":["
    "{\"name\":\"namespaces\",\"singularName\":\"namespace\",\"namespaced\":false,"
    "\"kind\":\"Namespace\",\"verbs\":[\"get\",\"list\",\"patch\"],\"shortNames\":[\"ns\"]},"
    "{\"name\":\"nodes\",\"singularName\":\"node\",\"namespaced\":false,\"kind\":\"Node\","
    "\"verbs\":[\"get\",\"list\",\"patch\"],\"shortNames\":[\"no\"]},"
    "{\"name\":\"pods\",\"singularName\":\"pod\",\"namespaced\":true,\"kind\":\"Pod\","
    "\"verbs\":[\"get\",\"list\"],\"shortNames\":[\"po\"],\"categories\":[\"all\"]}]}";

static const char apps_v1_resources[] =
    "{\"kind\":\"APIResourceList\",\"apiVersion\":\"v1\",\"groupVersion\":\"apps/v1\","
    "\"resources\":["
    "{\"name\":\"daemonsets\",\"singularName\":\"daemonset\",\"namespaced\":true,"
    "\"kind\":\"DaemonSet\",\"verbs\":[\"get\",\"list\",\"patch\"],\"shortNames\":[\"ds\"],"
    "\"categories\":[\"all\"]},"
    "{\"name\":\"deployments\",\"singularName\":\"deployment\",\"namespaced\":true,"
    "\"kind\":\"Deployment\",\"verbs\":[\"get\",\"list\",\"patch\"],\"shortNames\":[\"deploy\"],"
    "\"categories\":[\"all\"]},"
    "{\"name\":\"statefulsets\",\"singularName\":\"statefulset\",\"namespaced\":true,"
    "\"kind\":\"StatefulSet\",\"verbs\":[\"get\",\"list\",\"patch\"],\"shortNames\":[\"sts\"],"
    "\"categories\":[\"all\"]}]}";

static const char apps_group[] =
    "{\"name\":\"apps\",\"versions\":[{\"groupVersion\":\"apps/v1\",\"version\":\"v1\"}],"
    "\"preferredVersion\":{\"groupVersion\":\"apps/v1\",\"version\":\"v1\"}}";

static void reply_text(cs_call *c, const char *text)
{
    cs_reply_json(c, 200, json_loads(text, 0, NULL));
}

static int discovery(cs_call *c, char **s, int n)
{
    if (n == 1 && is(s[0], "api")) {
        cs_reply_json(c, 200,
                      json_pack("{s:s, s:[s], s:[{s:s, s:s}]}", "kind", "APIVersions", "versions",
                                "v1", "serverAddressByClientCIDRs", "clientCIDR", "0.0.0.0/0",
                                "serverAddress", "127.0.0.1:5443"));
    } else if (n == 1 && is(s[0], "apis")) {
        json_t *g = json_loads(apps_group, 0, NULL);
        cs_reply_json(c, 200,
                      json_pack("{s:s, s:s, s:[o]}", "kind", "APIGroupList", "apiVersion", "v1",
                                "groups", g));
    } else if (n == 2 && is(s[0], "api") && is(s[1], "v1")) {
        reply_text(c, api_v1_resources);
    } else if (n == 2 && is(s[0], "apis") && is(s[1], "apps")) {
        json_t *g = json_loads(apps_group, 0, NULL);
        json_object_set_new(g, "kind", json_string("APIGroup"));
        json_object_set_new(g, "apiVersion", json_string("v1"));
        cs_reply_json(c, 200, g);
    } else if (n == 3 && is(s[0], "apis") && is(s[1], "apps") && is(s[2], "v1")) {
        reply_text(c, apps_v1_resources);
    } else {
        return 0;
    }
    return 1;
}

static void version(cs_call *c, const cs_cluster *cl)
{
    int major = 1, minor = 0;

    sscanf(cl->version, "v%d.%d", &major, &minor);
    char maj[8], min[8];
    snprintf(maj, sizeof(maj), "%d", major);
    snprintf(min, sizeof(min), "%d", minor);
    cs_reply_json(c, 200,
                  json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "major", maj, "minor",
                            min, "gitVersion", cl->git_version, "gitCommit",
                            "9c1fb6c2a1a8e0b05bb2b6bd01c59f5d4bd8ed31", "gitTreeState", "clean",
                            "buildDate", "2023-08-01T10:00:00Z", "goVersion", "go1.20.6",
                            "compiler", "gc", "platform", "linux/amd64"));
}

/* ---------------------------------------------------------------- label selectors */

/* 1 if labels satisfy the selector: terms k=v, k==v, k!=v, k, !k joined by ','. */
static int selector_matches(const char *sel, const json_t *labels)
{
    char term[512];

    while (sel && *sel) {
        size_t n = strcspn(sel, ",");
        snprintf(term, sizeof(term), "%.*s", (int)n, sel);
        sel += n + (sel[n] == ',');
        char *op = strstr(term, "!=");
        int neg = 0;
        const char *val = NULL;
        if (op) {
            *op = '\0';
            val = op + 2;
            neg = 1;
        } else if ((op = strchr(term, '='))) {
            *op = '\0';
            val = op + 1 + (op[1] == '=');
        }
        const char *key = term;
        if (val == NULL && key[0] == '!') {
            if (json_object_get(labels, key + 1))
                return 0;
            continue;
        }
        const char *have = json_string_value(json_object_get(labels, key));
        if (val == NULL) {
            if (have == NULL)
                return 0;
        } else if (neg ? (have && is(have, val)) : (have == NULL || !is(have, val))) {
            return 0;
        }
    }
    return 1;
}

static int selected(const cs_call *c, const json_t *obj)
{
    const char *sel = cs_query(c, "labelSelector");

    if (sel == NULL || *sel == '\0')
        return 1;
    return selector_matches(sel, json_object_get(json_object_get(obj, "metadata"), "labels"));
}

static json_t *list_of(const cs_cluster *cl, const char *kind, const char *api_version,
                       json_t *items)
{
    char rv[24];

    snprintf(rv, sizeof(rv), "%lld", cl->rv);
    return json_pack("{s:s, s:s, s:{s:s}, s:o}", "kind", kind, "apiVersion", api_version,
                     "metadata", "resourceVersion", rv, "items", items);
}

/* ---------------------------------------------------------------- patch */

/* RFC 7386 merge of patch into a copy of target.  New reference. */
static json_t *merge_patch(const json_t *target, const json_t *patch)
{
    const char *k;
    json_t *v;

    if (!json_is_object(patch))
        return json_deep_copy(patch);
    json_t *out = json_is_object(target) ? json_deep_copy(target) : json_object();
    json_object_foreach((json_t *)patch, k, v)
    {
        if (json_is_null(v)) {
            json_object_del(out, k);
            continue;
        }
        json_object_set_new(out, k, merge_patch(json_object_get(out, k), v));
    }
    return out;
}

static int string_map(const json_t *m)
{
    const char *k;
    json_t *v;

    if (m == NULL)
        return 1;
    if (!json_is_object(m))
        return 0;
    json_object_foreach((json_t *)m, k, v)
    {
        if (!json_is_string(v) || *k == '\0' || strlen(k) > 316)
            return 0;
    }
    return 1;
}

/* Copies a field the client may not change back from old into new. */
static void keep(json_t *new_obj, const json_t *old_obj, const char *key)
{
    json_t *v = json_object_get(old_obj, key);

    if (v)
        json_object_set(new_obj, key, v);
    else
        json_object_del(new_obj, key);
}

static int patch_type_ok(cs_call *c)
{
    char ct[128];

    cs_content_type(c, ct, sizeof(ct));
    if (is(ct, "application/merge-patch+json") || is(ct, "application/strategic-merge-patch+json"))
        return 1;
    cs_reply_k8s(c, 415, "UnsupportedMediaType", NULL, NULL,
                 "the body of the request was in an unknown format - accepted media types "
                 "include: application/merge-patch+json, application/strategic-merge-patch+json");
    return 0;
}

/* Applies the request's patch to *slot (replaced on change).  Answers in every
 * case; returns 1 if the patch was accepted (changed or not) and sets *changed. */
static int patch(cs_call *c, cs_cluster *cl, json_t **slot, const char *resource, const char *name,
                 int *changed)
{
    char err[512];
    json_t *old_obj = *slot;

    if (!patch_type_ok(c))
        return 0;
    json_t *p = cs_body_json(c, err, sizeof(err));
    if (p == NULL) {
        cs_reply_k8s(c, 400, "BadRequest", NULL, NULL, "error decoding patch: %s", err);
        return 0;
    }
    json_t *nu = merge_patch(old_obj, p);
    json_decref(p);
    json_t *nmeta = json_object_get(nu, "metadata");
    const json_t *ometa = json_object_get(old_obj, "metadata");
    if (!json_is_object(nmeta)) {
        json_decref(nu);
        cs_reply_k8s(c, 422, "Invalid", resource, name, "%s \"%s\" is invalid: metadata", resource,
                     name);
        return 0;
    }
    static const char *const fixed_meta[] = {
        "name", "namespace", "uid", "resourceVersion", "creationTimestamp", "generation", NULL};
    for (const char *const *k = fixed_meta; *k; k++)
        keep(nmeta, ometa, *k);
    keep(nu, old_obj, "apiVersion");
    keep(nu, old_obj, "kind");
    keep(nu, old_obj, "status");
    const json_t *tmeta =
        json_object_get(json_object_get(json_object_get(nu, "spec"), "template"), "metadata");
    if (!string_map(json_object_get(nmeta, "labels")) ||
        !string_map(json_object_get(nmeta, "annotations")) ||
        !string_map(json_object_get(tmeta, "labels")) ||
        !string_map(json_object_get(tmeta, "annotations"))) {
        json_decref(nu);
        cs_reply_k8s(c, 422, "Invalid", resource, name,
                     "%s \"%s\" is invalid: labels and annotations must map names to strings",
                     resource, name);
        return 0;
    }
    *changed = !json_equal(nu, old_obj);
    if (!*changed) {
        json_decref(nu);
        cs_reply_json(c, 200, json_incref(old_obj));
        return 1;
    }
    char rv[24];
    json_object_set_new(nmeta, "resourceVersion",
                        json_string(cs_cluster_next_rv(cl, rv, sizeof(rv))));
    json_t *gen = json_object_get(nmeta, "generation");
    if (gen && !json_equal(json_object_get(nu, "spec"), json_object_get(old_obj, "spec"))) {
        /* A spec change is a new generation; the simulated controller rolls it
         * out at once. */
        json_int_t g = json_integer_value(gen) + 1;
        json_object_set_new(nmeta, "generation", json_integer(g));
        json_t *st = json_deep_copy(json_object_get(nu, "status"));
        json_object_set_new(st, "observedGeneration", json_integer(g));
        json_object_set_new(nu, "status", st);
    }
    json_decref(*slot);
    *slot = nu;
    cs_reply_json(c, 200, json_incref(nu));
    return 1;
}

/* ---------------------------------------------------------------- media types */

/* One media range of an Accept header, s[0..n): its type and whether its
 * parameters ask for the meta.k8s.io/v1 kind `as` (PartialObjectMetadata for
 * one object, PartialObjectMetadataList for a list). */
static void media_range(const char *s, size_t n, const char *as_kind, char *type, size_t tlen,
                        int *meta)
{
    char buf[512], *save = NULL;
    int as = 0, g = 0, v = 0;

    snprintf(buf, sizeof(buf), "%.*s", (int)(n < sizeof(buf) ? n : sizeof(buf) - 1), s);
    char *tok = strtok_r(buf, ";", &save);
    snprintf(type, tlen, "%s", tok ? tok + strspn(tok, " \t") : "");
    type[strcspn(type, " \t")] = '\0';
    for (tok = strtok_r(NULL, ";", &save); tok != NULL; tok = strtok_r(NULL, ";", &save)) {
        tok += strspn(tok, " \t");
        tok[strcspn(tok, " \t")] = '\0';
        as |= strncmp(tok, "as=", 3) == 0 && is(tok + 3, as_kind);
        g |= is(tok, "g=meta.k8s.io");
        v |= is(tok, "v=v1");
    }
    *meta = as && g && v;
}

#define META_MEDIA(kind) "application/json;as=" kind ";g=meta.k8s.io;v=v1"

/* The form a reply is given in, by the first media range of Accept that
 * cloudsim serves: 1 metadata only (as_kind: PartialObjectMetadata or
 * PartialObjectMetadataList), 0 the full object or list (also when no Accept
 * came), -1 none acceptable (the reply, 406, is built). */
static int meta_form(cs_call *c, const char *as_kind)
{
    const char *acc = cs_header(c, "Accept");
    char type[128];
    int meta;

    if (acc == NULL || *acc == '\0')
        return 0;
    for (const char *p = acc; *p;) {
        size_t n = strcspn(p, ",");
        media_range(p, n, as_kind, type, sizeof(type), &meta);
        if (is(type, "application/json") && meta)
            return 1;
        if (is(type, "application/json") || is(type, "*/*") || is(type, "application/*"))
            return 0;
        p += n + (p[n] == ',');
    }
    cs_reply_k8s(c, 406, "NotAcceptable", NULL, NULL,
                 "only the following media types are accepted: application/json, "
                 "application/json;as=%s;g=meta.k8s.io;v=v1",
                 as_kind);
    return -1;
}

static int list_form(cs_call *c)
{
    return meta_form(c, "PartialObjectMetadataList");
}

/* GET of one object: the object, or its PartialObjectMetadata when Accept
 * asks for it first (kubectl's metadata client, meshbuy's node and namespace
 * reads), as the API server answers. */
static void reply_object(cs_call *c, json_t *obj)
{
    int form = meta_form(c, "PartialObjectMetadata");

    if (form < 0)
        return;
    if (form == 0) {
        cs_reply_json(c, 200, json_incref(obj));
        return;
    }
    cs_reply_json(c, 200,
                  json_pack("{s:s, s:s, s:O}", "kind", "PartialObjectMetadata", "apiVersion",
                            "meta.k8s.io/v1", "metadata", json_object_get(obj, "metadata")));
    c->out_ctype = META_MEDIA("PartialObjectMetadata");
}

/* ---------------------------------------------------------------- nodes, namespaces */

static void not_found(cs_call *c, const char *resource, const char *name)
{
    cs_reply_k8s(c, 404, "NotFound", resource, name, "%s \"%s\" not found", resource, name);
}

static void method_not_allowed(cs_call *c)
{
    cs_reply_k8s(c, 405, "MethodNotAllowed", NULL, NULL,
                 "the server does not allow this method on the requested resource");
}

static void nodes(cs_call *c, cs_cluster *cl, const char *name)
{
    if (name == NULL) {
        if (!is(c->method, "GET")) {
            method_not_allowed(c);
            return;
        }
        json_t *items = json_array();
        for (cs_map_it *it = cs_map_first(cl->nodes); it; it = cs_map_next(it)) {
            cs_node *n = cs_map_value(it);
            if (selected(c, n->obj))
                json_array_append(items, n->obj);
        }
        cs_reply_json(c, 200, list_of(cl, "NodeList", "v1", items));
        return;
    }
    cs_node *n = cs_map_get(cl->node_names, name);
    int changed = 0;
    if (n == NULL) {
        not_found(c, "nodes", name);
    } else if (is(c->method, "GET")) {
        reply_object(c, n->obj);
    } else if (!is(c->method, "PATCH")) {
        method_not_allowed(c);
    } else if (patch(c, cl, &n->obj, "nodes", name, &changed)) {
        cs_mutation(c, CS_MUT_NODE_LABEL, cl->id, name, changed);
    }
}

static void namespaces(cs_call *c, cs_cluster *cl, const char *name)
{
    if (name == NULL) {
        if (!is(c->method, "GET")) {
            method_not_allowed(c);
            return;
        }
        json_t *items = json_array();
        for (cs_map_it *it = cs_map_first(cl->namespaces); it; it = cs_map_next(it)) {
            if (selected(c, cs_map_value(it)))
                json_array_append(items, cs_map_value(it));
        }
        cs_reply_json(c, 200, list_of(cl, "NamespaceList", "v1", items));
        return;
    }
    json_t *ns = cs_map_get(cl->namespaces, name);
    int changed = 0;
    if (ns == NULL) {
        not_found(c, "namespaces", name);
    } else if (is(c->method, "GET")) {
        reply_object(c, ns);
    } else if (!is(c->method, "PATCH")) {
        method_not_allowed(c);
    } else {
        json_t *slot = json_incref(ns);
        if (patch(c, cl, &slot, "namespaces", name, &changed)) {
            if (changed)
                cs_map_put(cl->namespaces, name, json_incref(slot));
            cs_mutation(c, CS_MUT_NAMESPACE_LABEL, cl->id, name, changed);
        }
        json_decref(slot);
    }
}

/* ---------------------------------------------------------------- pods */

/* Pods are synthesized: pod i belongs to workload i mod W (or "default"). */
typedef struct pod_owner {
    const char *ns, *name;
} pod_owner;

/* Pods are written as text, not built as jansson trees: a pod list is a cluster's
 * largest reply, and building and dumping its tree was the largest single cost in
 * cloudsim's profile on the benchmark.  The bytes are those json_dumps(JSON_COMPACT)
 * wrote of that tree. */
static void put_str(mb_buf *b, const char *s, int *bad)
{
    if (mb_json_put_str(b, s, strlen(s)) != 0)
        *bad = 1; /* not UTF-8 (names come from parsed JSON, so never in practice) */
}

static void pod_meta(mb_buf *b, const cs_model *m, const cs_cluster *cl, long i, const pod_owner *o,
                     int *bad)
{
    char name[300], uid[64];

    snprintf(name, sizeof(name), "%s-%05ld", o->name, i);
    snprintf(uid, sizeof(uid), "0000%04lx-pod0-4000-8000-%012lx", (unsigned long)(cl->rv & 0xffff),
             (unsigned long)i);
    mb_buf_puts(b, "{\"name\":");
    put_str(b, name, bad);
    mb_buf_puts(b, ",\"namespace\":");
    put_str(b, o->ns, bad);
    mb_buf_puts(b, ",\"uid\":");
    put_str(b, uid, bad);
    mb_buf_puts(b, ",\"resourceVersion\":\"1\",\"creationTimestamp\":");
    put_str(b, m->created, bad);
    mb_buf_puts(b, ",\"labels\":{\"app\":");
    put_str(b, o->name, bad);
    mb_buf_puts(b, "}}");
}

/* A Pod, or with meta only its PartialObjectMetadata (what the API server
 * sends for a list read with Accept ...;as=PartialObjectMetadataList...). */
static void pod_text(mb_buf *b, const cs_model *m, const cs_cluster *cl, long i, const pod_owner *o,
                     const char *node, int meta, int *bad)
{
    char ip[32];

    if (meta) {
        mb_buf_puts(b, "{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"meta.k8s.io/v1\","
                       "\"metadata\":");
        pod_meta(b, m, cl, i, o, bad);
        mb_buf_puts(b, "}");
        return;
    }
    snprintf(ip, sizeof(ip), "10.0.%ld.%ld", (i / 250) % 256, 2 + i % 250);
    mb_buf_puts(b, "{\"metadata\":");
    pod_meta(b, m, cl, i, o, bad);
    mb_buf_puts(b, ",\"spec\":{\"nodeName\":");
    put_str(b, node, bad);
    mb_buf_puts(b, ",\"containers\":[{\"name\":");
    put_str(b, o->name, bad);
    mb_buf_puts(b, ",\"image\":\"registry.example/app:1.0\"}]},\"status\":{\"phase\":\"Running\","
                   "\"podIP\":");
    put_str(b, ip, bad);
    mb_buf_puts(b, "}}");
}

static unsigned long token_hash(const char *s)
{
    unsigned long h = 5381;

    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h & 0xffffffUL;
}

static void expired(cs_call *c)
{
    cs_reply_k8s(c, 410, "Expired", NULL, NULL,
                 "The provided continue parameter is too old to display a consistent list "
                 "result. You can start a new list without the continue parameter, or use the "
                 "continue token in this response to retrieve the remainder of the results. "
                 "Continuing with the provided token results in an inconsistent list - objects "
                 "that were created, modified, or deleted between the time the first chunk was "
                 "returned and now may show up in the list.");
}

static void pods(cs_call *c, cs_cluster *cl, const char *ns)
{
    const cs_model *m = c->srv->m;
    const char *lim = cs_query(c, "limit"), *cont = cs_query(c, "continue");
    long limit = lim ? strtol(lim, NULL, 10) : 0, start = 0;
    pod_owner owners[256];
    const char *node_names[256];
    int nown = 0, nnodes = 0, meta;

    if (!is(c->method, "GET")) {
        method_not_allowed(c);
        return;
    }
    meta = list_form(c);
    if (meta < 0)
        return;
    if (cont && *cont) {
        long long epoch;
        unsigned long h;
        int used = 0;
        if (sscanf(cont, "c1.%lld.%ld.%lx%n", &epoch, &start, &h, &used) != 3 ||
            cont[used] != '\0' || epoch != m->pods_epoch || h != token_hash(cl->id) || start < 0 ||
            start > cl->pods) {
            expired(c);
            return;
        }
    }
    for (cs_map_it *it = cs_map_first(cl->workloads); it && nown < 256; it = cs_map_next(it)) {
        const json_t *meta = json_object_get(cs_map_value(it), "metadata");
        const char *wns = json_string_value(json_object_get(meta, "namespace"));
        if (is(wns, "kube-system"))
            continue;
        owners[nown].ns = wns;
        owners[nown++].name = json_string_value(json_object_get(meta, "name"));
    }
    if (nown == 0) {
        owners[0].ns = "default";
        owners[nown++].name = "app";
    }
    for (cs_map_it *it = cs_map_first(cl->nodes); it && nnodes < 256; it = cs_map_next(it))
        node_names[nnodes++] = ((cs_node *)cs_map_value(it))->name;
    mb_buf b = {0};
    char head[160];
    long i = start, n = 0;
    int bad = 0;

    snprintf(head, sizeof(head),
             "{\"kind\":\"%s\",\"apiVersion\":\"%s\",\"metadata\":{"
             "\"resourceVersion\":\"%lld\"",
             meta ? "PartialObjectMetadataList" : "PodList", meta ? "meta.k8s.io/v1" : "v1",
             cl->rv);
    mb_buf_puts(&b, head);
    /* the items go after the metadata, whose continue token needs where they end */
    mb_buf items = {0};
    for (; i < cl->pods; i++) {
        if (limit > 0 && n >= limit)
            break;
        const pod_owner *o = &owners[i % nown];
        if (ns && !is(ns, o->ns))
            continue;
        if (n++ > 0)
            mb_buf_add(&items, ",", 1);
        pod_text(&items, m, cl, i, o, nnodes ? node_names[i % nnodes] : "node", meta, &bad);
    }
    if (i < cl->pods && limit > 0) {
        char tok[96];
        snprintf(tok, sizeof(tok), "c1.%lld.%ld.%lx", m->pods_epoch, i, token_hash(cl->id));
        mb_buf_puts(&b, ",\"continue\":");
        put_str(&b, tok, &bad);
        if (ns == NULL) {
            snprintf(head, sizeof(head), ",\"remainingItemCount\":%ld", cl->pods - i);
            mb_buf_puts(&b, head);
        }
    }
    mb_buf_puts(&b, "},\"items\":[");
    if (items.len > 0)
        mb_buf_add(&b, items.p, items.len);
    mb_buf_puts(&b, "]}");
    bad |= items.oom;
    mb_buf_free(&items);
    if (bad || b.oom) {
        mb_buf_free(&b);
        cs_reply_k8s(c, 500, "InternalError", NULL, NULL, "cannot write the pod list");
        return;
    }
    size_t len = b.len;
    cs_reply_text(c, 200, mb_buf_take(&b), len);
    if (meta)
        c->out_ctype = META_MEDIA("PartialObjectMetadataList");
}

/* ---------------------------------------------------------------- workloads */

static const char *workload_kind(const char *plural)
{
    if (is(plural, "deployments"))
        return "DeploymentList";
    if (is(plural, "statefulsets"))
        return "StatefulSetList";
    if (is(plural, "daemonsets"))
        return "DaemonSetList";
    return NULL;
}

static void workloads(cs_call *c, cs_cluster *cl, const char *ns, const char *plural,
                      const char *name)
{
    char key[700];

    if (workload_kind(plural) == NULL) {
        cs_reply_k8s(c, 404, "NotFound", NULL, NULL,
                     "the server could not find the requested resource");
        return;
    }
    if (name == NULL) {
        if (!is(c->method, "GET")) {
            method_not_allowed(c);
            return;
        }
        size_t pl = strlen(plural);
        json_t *items = json_array();
        for (cs_map_it *it = cs_map_first(cl->workloads); it; it = cs_map_next(it)) {
            const char *k = cs_map_key(it);
            json_t *o = cs_map_value(it);
            const char *ons =
                json_string_value(json_object_get(json_object_get(o, "metadata"), "namespace"));
            if (strncmp(k, plural, pl) != 0 || k[pl] != '/' || (ns && !is(ns, ons)))
                continue;
            if (selected(c, o))
                json_array_append(items, o);
        }
        cs_reply_json(c, 200, list_of(cl, workload_kind(plural), "apps/v1", items));
        return;
    }
    snprintf(key, sizeof(key), "%s/%s/%s", plural, ns, name);
    json_t *o = cs_map_get(cl->workloads, key);
    int changed = 0;
    if (o == NULL) {
        cs_reply_k8s(c, 404, "NotFound", plural, name, "%s.apps \"%s\" not found", plural, name);
    } else if (is(c->method, "GET")) {
        cs_reply_json(c, 200, json_incref(o));
    } else if (!is(c->method, "PATCH")) {
        method_not_allowed(c);
    } else {
        json_t *slot = json_incref(o);
        if (patch(c, cl, &slot, plural, name, &changed)) {
            if (changed)
                cs_map_put(cl->workloads, key, json_incref(slot));
            cs_mutation(c, CS_MUT_WORKLOAD_PATCH, cl->id, key, changed);
        }
        json_decref(slot);
    }
}

/* ---------------------------------------------------------------- routing */

void cs_k8s_handle(cs_call *c)
{
    cs_cluster *cl = cs_model_cluster(c->srv->m, c->seg[1]);
    char **s = c->seg + 2;
    int n = c->nseg - 2;

    if (cl == NULL) {
        cs_reply_k8s(c, 404, "NotFound", "clusters", c->seg[1], "cluster \"%s\" not found",
                     c->seg[1]);
        return;
    }
    cs_cluster_settle(c->srv->m, cl, c->now_ms);
    if (n >= 1 && !is(c->method, "GET") && !is(c->method, "PATCH")) {
        method_not_allowed(c);
        return;
    }
    if (n == 1 && is(s[0], "version")) {
        version(c, cl);
    } else if (is(c->method, "GET") && discovery(c, s, n)) {
        return;
    } else if (n >= 3 && is(s[0], "api") && is(s[1], "v1")) {
        if (is(s[2], "nodes") && n <= 4)
            nodes(c, cl, n == 4 ? s[3] : NULL);
        else if (is(s[2], "namespaces") && n <= 4)
            namespaces(c, cl, n == 4 ? s[3] : NULL);
        else if (is(s[2], "pods") && n == 3)
            pods(c, cl, NULL);
        else if (is(s[2], "namespaces") && n == 5 && is(s[4], "pods"))
            pods(c, cl, s[3]);
        else
            cs_reply_k8s(c, 404, "NotFound", NULL, NULL,
                         "the server could not find the requested resource");
    } else if (n >= 4 && is(s[0], "apis") && is(s[1], "apps") && is(s[2], "v1")) {
        if (n == 4)
            workloads(c, cl, NULL, s[3], NULL);
        else if (n >= 6 && n <= 7 && is(s[3], "namespaces"))
            workloads(c, cl, s[4], s[5], n == 7 ? s[6] : NULL);
        else
            cs_reply_k8s(c, 404, "NotFound", NULL, NULL,
                         "the server could not find the requested resource");
    } else {
        cs_reply_k8s(c, 404, "NotFound", NULL, NULL,
                     "the server could not find the requested resource");
    }
}
